"""Run a 2-D network slice by slice over a 3-D volume, onto any output grid.

N-SMoE and MoEDiff-SR are 2-D methods. This is the one place that decides which voxel-grid axis is
held fixed, cuts the slices, tells the network where the output samples lie in each slice, and
puts the results back together on the output grid:

- the output grid shares the input's direction (`grid_with_spacing`), so every output voxel's
  position in the input's index space is a separate affine map per axis: a row and a column
  position vector per slice are enough, for any scale, non-integer included, and the output
  geometry is that of `grid`, exactly;
- super-resolution slices along an axis that does not change, so the thick axis lies in the
  network's plane (a thick-slice scan is restored in the planes that cross its slices); where all
  three axes change, a first pass restores two of them and a second pass, along an axis already on
  the output grid, the third;
- denoising (nothing changes) slices perpendicular to the thickest axis, the acquisition's slices.

A slice function `fn(slices [n, h, w], rows [H], cols [W]) -> [n, C, H, W]` gets the output
samples' positions in the slice's pixel coordinates (pixel centres at 0 .. h-1). Channel 0 is the
image; further channels (gate probabilities, labels) are reassembled the same way and come from the
last pass. With `context` = c > 0 the function gets each slice between its c neighbours either side
instead, `slices [n, 2c + 1, h, w]` (the slice itself at index c; repeated at the volume's ends): a
2-D network that reads the neighbouring slices (N-SMoE's denoiser) sees them in every pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import InputError
from .progress import Progress, no_progress
from .volume import Volume

SliceFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

# Voxel-grid axis names (as in Slicer's IJK) and their index in a (z, y, x) = (k, j, i) array.
AXIS_NAMES = ("k", "j", "i")
SLICE_AXIS_CHOICES = ("auto", "i", "j", "k")


@dataclass(frozen=True)
class SlicePass:
    slice_axis: int  # array axis held fixed
    resampled: tuple[int, ...]  # array axes brought onto the output grid in this pass

    @property
    def plane(self) -> tuple[int, int]:
        a, b = (axis for axis in range(3) if axis != self.slice_axis)
        return a, b


def axis_positions(volume: Volume, grid: Volume) -> list[np.ndarray]:
    """Per array axis (z, y, x): the grid's sample positions in the volume's index coordinates."""
    if not np.allclose(volume.direction, grid.direction, atol=1e-6):
        raise ValueError("slice-wise runs need an output grid with the input's direction (grid_with_spacing)")
    offset = volume.direction.T @ (np.asarray(grid.origin) - np.asarray(volume.origin))  # mm along i, j, k
    positions = []
    for array_axis in range(3):
        c = 2 - array_axis  # (x, y, z) component of this array axis
        n = grid.array.shape[array_axis]
        positions.append((offset[c] + np.arange(n) * grid.spacing[c]) / volume.spacing[c])
    return positions


def _changed_axes(volume: Volume, positions: list[np.ndarray]) -> list[int]:
    return [
        a for a in range(3)
        if positions[a].shape[0] != volume.array.shape[a] or not np.allclose(positions[a], np.arange(volume.array.shape[a]), atol=1e-6)
    ]


def _axis_index(slice_axis: str) -> int | None:
    if slice_axis == "auto":
        return None
    if slice_axis not in AXIS_NAMES:
        raise InputError(f"slice_axis must be one of {', '.join(SLICE_AXIS_CHOICES)}, not '{slice_axis}'")
    return AXIS_NAMES.index(slice_axis)


def plan_passes(volume: Volume, grid: Volume, slice_axis: str = "auto") -> list[SlicePass]:
    """The one or two slice passes that take `volume` onto `grid`."""
    positions = axis_positions(volume, grid)
    changed = _changed_axes(volume, positions)
    spacing_zyx = np.asarray(volume.spacing)[::-1]
    fixed = _axis_index(slice_axis)
    if fixed is None:
        if not changed:  # denoising: the acquisition's slices, perpendicular to the thickest axis
            fixed = int(np.argmax(spacing_zyx))  # ties: the first, k
        else:
            still = [a for a in range(3) if a not in changed]
            if still:  # the thickest unchanged axis (ties: k, then j), so the plane holds the changed ones
                fixed = max(still, key=lambda a: (spacing_zyx[a], -a))
            else:  # all three change: first hold the axis that changes least, then bring it over
                ratio = spacing_zyx / np.asarray(grid.spacing)[::-1]
                fixed = min(changed, key=lambda a: (ratio[a], a))
    first = SlicePass(fixed, tuple(a for a in changed if a != fixed))
    if fixed not in changed:
        return [first]
    # The held axis changes too: a second pass along an axis already on the output grid.
    second_fixed = next(a for a in range(3) if a != fixed)
    return [first, SlicePass(second_fixed, (fixed,))]


def planes_containing_thick_axis(volume: Volume, grid: Volume) -> list[str]:
    """Slice-axis names whose planes contain the axes that change (or, for denoising, the
    thickest axis), most such axes first: the orientations a 2-D method can average for 3-D
    consistency when it runs on an already-interpolated grid."""
    changed = _changed_axes(volume, axis_positions(volume, grid))
    spacing_zyx = np.asarray(volume.spacing)[::-1]
    if not changed:  # denoising: the acquisition's own slices first, then the others
        return [AXIS_NAMES[f] for f in sorted(range(3), key=lambda f: (-spacing_zyx[f], f))]

    def changed_in_plane(fixed: int) -> int:
        return sum(1 for a in changed if a != fixed)

    order = sorted(range(3), key=lambda f: (-changed_in_plane(f), -spacing_zyx[f], f))
    return [AXIS_NAMES[f] for f in order if changed_in_plane(f) > 0]


def run_slicewise(
    volume: Volume,
    grid: Volume,
    fn: SliceFn,
    *,
    channels: int = 1,
    slice_axis: str = "auto",
    batch: int = 8,
    progress: Progress = no_progress,
    context: int = 0,
) -> np.ndarray:
    """`fn` applied slice by slice; returns float32 [channels, *grid.array.shape]."""
    if context < 0:
        raise ValueError(f"context must be >= 0 slices, not {context}")
    positions = axis_positions(volume, grid)
    passes = plan_passes(volume, grid, slice_axis)
    current = np.asarray(volume.array, dtype=np.float32)
    out = None
    for p, step in enumerate(passes):
        a, b = step.plane
        rows = positions[a] if a in step.resampled else np.arange(current.shape[a], dtype=float)
        cols = positions[b] if b in step.resampled else np.arange(current.shape[b], dtype=float)
        stack = np.moveaxis(current, step.slice_axis, 0)  # [n, h, w], plane axes in array order
        n = stack.shape[0]
        want = channels if p == len(passes) - 1 else 1
        result = np.empty((want, n, rows.shape[0], cols.shape[0]), dtype=np.float32)
        for start in range(0, n, batch):
            progress((p + start / n) / len(passes), f"slice {start + 1} of {n}" + (f", pass {p + 1} of {len(passes)}" if len(passes) > 1 else ""))
            chunk = np.ascontiguousarray(stack[start:start + batch])
            rendered = np.asarray(fn(_with_context(stack, start, chunk.shape[0], context) if context else chunk, rows, cols))
            expected = (chunk.shape[0], channels, rows.shape[0], cols.shape[0])
            if rendered.shape != expected:
                raise ValueError(f"slice function returned {rendered.shape}, expected {expected}")
            result[:, start:start + chunk.shape[0]] = np.moveaxis(rendered[:, :want], 1, 0)
        out = np.moveaxis(result, 1, 1 + step.slice_axis)  # back to [C, z, y, x]
        current = out[0]
    progress(1.0, "slices done")
    assert out is not None and out.shape[1:] == grid.array.shape, (None if out is None else out.shape, grid.array.shape)
    return np.ascontiguousarray(out)


def _with_context(stack: np.ndarray, start: int, count: int, context: int) -> np.ndarray:
    """Slices start .. start + count - 1 of `stack`, each between its `context` neighbours either
    side (the end slices repeated beyond the volume): [count, 2 context + 1, h, w]."""
    index = np.clip(np.arange(start - context, start + count + context), 0, stack.shape[0] - 1)
    windows = np.lib.stride_tricks.sliding_window_view(stack[index], 2 * context + 1, axis=0)  # [count, h, w, 2c + 1]
    return np.ascontiguousarray(np.moveaxis(windows, -1, 1))
