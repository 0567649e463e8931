"""A scalar 3-D image with its physical geometry.

Arrays are indexed (k, j, i) = (z, y, x), as SimpleITK's GetArrayFromImage and Slicer's
arrayFromVolume give them. Geometry follows ITK (LPS): `origin` is the physical position of the
centre of voxel (0, 0, 0), `spacing` is per (i, j, k) axis in mm, and the columns of `direction`
are the unit vectors of the i, j, k axes. Slicer (RAS) flips the first two physical axes; the
conversion lives at the Slicer boundary, not here.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Volume:
    array: np.ndarray  # (z, y, x)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # mm, (x, y, z)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # LPS mm, centre of voxel 0
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))  # columns: i, j, k axes
    name: str = ""

    def __post_init__(self):
        if self.array.ndim != 3:
            raise ValueError(f"a Volume holds a 3-D array, got shape {self.array.shape}")
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", np.asarray(self.direction, dtype=float).reshape(3, 3))

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        z, y, x = self.array.shape
        return (x, y, z)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix taking (i, j, k, 1) voxel indices to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def physical_extent_corners(self) -> np.ndarray:
        """The 8 outer corners (voxel edges, not centres) in LPS mm, shape (8, 3)."""
        x, y, z = self.size_xyz
        idx = np.array([[a, b, c] for a in (-0.5, x - 0.5) for b in (-0.5, y - 0.5) for c in (-0.5, z - 0.5)])
        m = self.ijk_to_lps()
        return idx @ m[:3, :3].T + m[:3, 3]

    def with_array(self, array: np.ndarray, name: str | None = None) -> "Volume":
        """Same geometry, new voxels (which must have the same shape)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} differs from the volume's {self.array.shape}")
        return replace(self, array=array, name=self.name if name is None else name)

    def same_geometry(self, other: "Volume", atol: float = 1e-5) -> bool:
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )


def grid_with_spacing(volume: Volume, spacing_xyz) -> Volume:
    """An empty grid with the volume's orientation and a new spacing that covers the same
    physical extent (outer voxel edges), so nothing is shifted: the super-resolution output grid."""
    spacing_xyz = np.asarray(spacing_xyz, dtype=float)
    old_spacing = np.asarray(volume.spacing)
    extent = np.asarray(volume.size_xyz) * old_spacing
    size = np.maximum(1, np.round(extent / spacing_xyz)).astype(int)
    # Centre the new grid on the old one: any rounding leftover is split between both ends.
    centre_index_old = (np.asarray(volume.size_xyz) - 1) / 2.0
    centre = volume.direction @ (centre_index_old * old_spacing) + np.asarray(volume.origin)
    origin = centre - volume.direction @ ((size - 1) / 2.0 * spacing_xyz)
    array = np.zeros(tuple(size[::-1]), dtype=np.float32)
    return Volume(array, tuple(spacing_xyz), tuple(origin), volume.direction.copy(), volume.name)


def crop_volume(volume: Volume, start_ijk, stop_ijk, step: int = 1) -> Volume:
    """The sub-grid [start, stop) every `step` voxels, each voxel kept where it was in space.

    For self-tests and demos that need a small piece of the sample head, geometry intact: the
    origin moves to the first kept voxel and the spacing grows by `step`.
    """
    start = np.asarray(start_ijk, dtype=int)
    stop = np.asarray(stop_ijk, dtype=int)
    (i0, j0, k0), (i1, j1, k1) = start, stop
    array = np.array(volume.array[k0:k1:step, j0:j1:step, i0:i1:step], copy=True)
    spacing = np.asarray(volume.spacing)
    origin = np.asarray(volume.origin) + volume.direction @ (spacing * start)
    return Volume(array, tuple(spacing * step), tuple(origin), volume.direction.copy(), volume.name)
