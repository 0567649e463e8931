"""Resolution degradations for super-resolution, each with the geometry a scanner would write.

Every low-resolution output keeps the physical positions right: its origin is the centre of its
first voxel and its grid covers the same extent (outer voxel edges) as the input, so
`grid_with_spacing(low_res, input.spacing)` gives back the input's grid. When the input's voxel
count along an axis is not a multiple of the factor, the coarse spacing is extent / round(n /
factor), slightly off factor x spacing, rather than shifting or cropping the field of view.

`random_acquisition` follows REMIx (Morell-Ortega et al., MIDL 2024): an anisotropic native grid
of a given voxel volume, slightly rotated, simulated and brought back to the input's grid. REMIx
takes the grids from real clinical scans through affine registrations; here they are drawn at
random, which the paper's pipeline does not do.

`resample_to_grid` is the one resampler (SimpleITK) shared with the classical baselines.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..io import volume_from_sitk, volume_to_sitk
from ..volume import Volume, grid_with_spacing

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548
MAX_ROTATION_DEG = 10.0

_INTERPOLATORS = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,  # cubic B-spline, with ITK's interpolating prefilter
    "windowed_sinc": sitk.sitkHammingWindowedSinc,  # what Slicer's "Resample Scalar Volume" offers
}
_AXES = {"x": 0, "y": 1, "z": 2, "i": 0, "j": 1, "k": 2, 0: 0, 1: 1, 2: 2}


@dataclass(frozen=True)
class Acquisition:
    """One simulated low-resolution acquisition and its copy on the input's grid (a training pair
    with the input)."""

    native: Volume  # on the rotated, anisotropic scanner grid
    on_input_grid: Volume  # `native` resampled (linear) onto the input's grid
    spacing: tuple[float, float, float]  # native spacing (x, y, z) mm
    rotation: np.ndarray  # 3x3 LPS rotation about the input's centre, native = rotation @ input axes
    bin: int  # REMIx voxel-volume bin: the product of `spacing` is in [bin - 0.5, bin + 0.5)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))


def resample_to_grid(
    volume: Volume, reference_grid: Volume, interpolator: str = "linear", default_value: float = 0.0
) -> Volume:
    """`volume` sampled at the voxel centres of `reference_grid` (float32; 'nearest' keeps the dtype).

    Points outside `volume` get `default_value`. The grids may differ in every respect, including
    direction. A Hamming-windowed sinc between grids of different directions goes through ITK, ~300x
    slower than linear on a full head (minutes); between grids of one direction it is separable.
    """
    if interpolator not in _INTERPOLATORS:
        raise ValueError(f"interpolator '{interpolator}' is not one of {', '.join(_INTERPOLATORS)}")
    if interpolator == "windowed_sinc" and np.allclose(volume.direction, reference_grid.direction, atol=1e-9):
        from .separable_sinc import windowed_sinc_same_direction

        return reference_grid.with_array(windowed_sinc_same_direction(volume, reference_grid, default_value))
    nearest = interpolator == "nearest"
    image = volume_to_sitk(volume, dtype=None if nearest else np.float32)
    reference = volume_to_sitk(reference_grid.with_array(np.zeros(reference_grid.array.shape, np.uint8)))
    output_type = image.GetPixelID() if nearest else sitk.sitkFloat32
    resampled = sitk.Resample(
        image, reference, sitk.Transform(), _INTERPOLATORS[interpolator], float(default_value), output_type
    )
    return volume_from_sitk(resampled, name=volume.name)


def coarse_grid(volume: Volume, factors_xyz) -> Volume:
    """An empty grid with `factors_xyz` times fewer voxels per axis, covering the same extent."""
    factors = np.asarray(factors_xyz, dtype=float)
    size = np.asarray(volume.size_xyz)
    coarse_size = np.maximum(1, np.round(size / factors)).astype(int)
    spacing = size * np.asarray(volume.spacing) / coarse_size
    # First coarse centre: half a coarse voxel in from the shared outer edge.
    offset_mm = (spacing - np.asarray(volume.spacing)) / 2.0
    origin = np.asarray(volume.origin) + volume.direction @ offset_mm
    array = np.zeros(tuple(coarse_size[::-1]), dtype=np.float32)
    return Volume(array, tuple(spacing), tuple(origin), volume.direction.copy(), volume.name)


def thick_slices(volume: Volume, factor: int, axis="z", gap_mm: float = 0.0) -> Volume:
    """Thick slices along `axis` ('x'/'y'/'z' or 0/1/2 for i/j/k): each averages `factor`
    consecutive thin slices (a box slice profile), and slices lie factor x spacing + `gap_mm`
    apart. The output's origin is the centre of the first thick slice; thin slices left over at
    the end are dropped. A gap that is not a whole number of thin slices is averaged exactly over
    the fractional slice (the thin image is taken as constant within each thin voxel).
    """
    factor = _integer_factor(factor, 1, 7)
    if gap_mm < 0:
        raise ValueError(f"slice gap {gap_mm} mm is negative")
    ijk = _axis_index(axis)
    array_axis = 2 - ijk
    thin_mm = volume.spacing[ijk]
    thin_count = volume.array.shape[array_axis]
    if thin_count < factor:
        raise ValueError(f"the volume has {thin_count} slices along {axis}, fewer than the factor {factor}")
    period = factor + gap_mm / thin_mm  # slice spacing in thin slices
    count = int(np.floor((thin_count - factor) / period + 1e-9)) + 1
    # Running integral at thin-slice edges: a box average is a difference of two of its values.
    data = np.moveaxis(np.asarray(volume.array, dtype=np.float64), array_axis, 0)
    integral = np.concatenate([np.zeros((1,) + data.shape[1:]), np.cumsum(data, axis=0)])
    starts = np.arange(count) * period
    thick = (_interpolate_rows(integral, starts + factor) - _interpolate_rows(integral, starts)) / factor
    array = np.moveaxis(thick.astype(np.float32), 0, array_axis)
    spacing = list(volume.spacing)
    spacing[ijk] = period * thin_mm
    origin = np.asarray(volume.origin) + volume.direction[:, ijk] * (factor - 1) / 2.0 * thin_mm
    return Volume(array, tuple(spacing), tuple(origin), volume.direction.copy(), volume.name)


def kspace_truncation(volume: Volume, factor: int, axes=("x", "y")) -> Volume:
    """Keep the central 1/`factor` of k-space along `axes` (in-plane by default), as a scan with a
    smaller matrix over the same field of view. Intensities stay in the input's units; the sharp
    cut gives the Gibbs ringing a real low-matrix scan has.

    An inverse DFT of the kept coefficients samples the image at the old first centre; the shift
    theorem moves the samples by (n/m - 1)/2 old voxels, onto the centres of the coarse grid.
    """
    factor = _integer_factor(factor, 2, 4)
    ijk_axes = sorted({_axis_index(a) for a in axes})
    factors = np.ones(3)
    factors[ijk_axes] = factor
    grid = coarse_grid(volume, factors)
    data = np.asarray(volume.array, dtype=np.float32).astype(np.complex64)
    for ijk in ijk_axes:
        array_axis = 2 - ijk
        n, m = volume.array.shape[array_axis], grid.array.shape[array_axis]
        spectrum = np.fft.fft(data, axis=array_axis)
        frequencies = np.arange(m) - m // 2  # the m lowest, in cycles per field of view
        shift = (n / m - 1.0) / 2.0  # in old voxels
        phase = np.exp(2j * np.pi * frequencies * shift / n).astype(np.complex64)
        kept = np.take(spectrum, frequencies % n, axis=array_axis) * _along(phase, array_axis, 3)
        kept = np.take(kept, np.argsort(frequencies % m), axis=array_axis)  # into size-m FFT order
        data = np.fft.ifft(kept, axis=array_axis) * np.float32(m / n)  # same units: mean is kept
    return grid.with_array(np.ascontiguousarray(data.real, dtype=np.float32))


def blur_decimate(volume: Volume, factor: int, axes=("x", "y")) -> Volume:
    """Gaussian blur with FWHM = factor x spacing along `axes`, then linear sampling at the
    centres of the extent-preserving coarse grid."""
    factor = _integer_factor(factor, 2, 4)
    ijk_axes = sorted({_axis_index(a) for a in axes})
    factors = np.ones(3)
    factors[ijk_axes] = factor
    sigma_zyx = [factors[2 - a] / FWHM_PER_SIGMA if factors[2 - a] > 1 else 0.0 for a in range(3)]
    blurred = ndimage.gaussian_filter(np.asarray(volume.array, np.float32), sigma_zyx, mode="nearest")
    blurred = volume.with_array(blurred)
    return resample_to_grid(blurred, coarse_grid(volume, factors), "linear")


def coarse_copy(volume: Volume, spacing_xyz, quantise_bits: int | None = None) -> Volume:
    """A "clinical-looking" copy at `spacing_xyz` mm (e.g. 2 mm, or 2 x 2 x 3 mm) on
    `grid_with_spacing`'s grid: Gaussian anti-alias blur with FWHM = the new spacing along every
    axis that gets coarser, linear sampling, and optionally `quantise_bits` levels over the
    intensity range (values stay in the input's units, as an 8-bit export read back would be).
    """
    spacing_xyz = np.broadcast_to(np.asarray(spacing_xyz, dtype=float), (3,))
    old = np.asarray(volume.spacing)
    fwhm_voxels = np.where(spacing_xyz > old, spacing_xyz / old, 0.0)
    sigma_zyx = (fwhm_voxels / FWHM_PER_SIGMA)[::-1]
    blurred = ndimage.gaussian_filter(np.asarray(volume.array, np.float32), sigma_zyx, mode="nearest")
    coarse = resample_to_grid(volume.with_array(blurred), grid_with_spacing(volume, spacing_xyz), "linear")
    if quantise_bits is None:
        return coarse
    if not 1 <= int(quantise_bits) <= 16:
        raise ValueError(f"quantise_bits {quantise_bits} is outside 1..16")
    low, high = float(coarse.array.min()), float(coarse.array.max())
    levels = 2 ** int(quantise_bits) - 1
    step = (high - low) / levels if high > low else 1.0
    return coarse.with_array((np.round((coarse.array - low) / step) * step + low).astype(np.float32))


def random_acquisition(
    volume: Volume, voxel_volume_mm3: int, rng, max_rotation_deg: float = MAX_ROTATION_DEG
) -> Acquisition:
    """A REMIx-style low-resolution acquisition of `volume` in voxel-volume bin 1..7.

    Draws the native spacing (product in [bin - 0.5, bin + 0.5)), which axis is the slice axis, and
    a rotation of up to `max_rotation_deg` about a random axis through the volume's centre. The
    scan is simulated on a fine grid aligned with the native one (an integer number of fine samples
    per native voxel, none coarser than the input): a box profile across the slice, a Gaussian
    with FWHM = spacing in-plane. The native image is then brought back onto the input's grid with
    linear interpolation (B-spline would triple the time for a difference far below the
    degradation itself).
    """
    bin_ = _integer_factor(voxel_volume_mm3, 1, 7)
    rng = np.random.default_rng(rng)
    spacing = _draw_native_spacing(bin_, rng)
    rotation = _draw_rotation(max_rotation_deg, rng)
    native_grid = _rotated_grid_covering(volume, spacing, rotation)
    slice_ijk = int(np.argmax(spacing))
    fine_per_native = np.maximum(1, np.ceil(np.asarray(spacing) / min(volume.spacing) - 1e-6)).astype(int)
    fine_grid = _subdivided(native_grid, fine_per_native)
    fine = resample_to_grid(volume, fine_grid, "linear").array
    for ijk in range(3):
        fine = _acquire_axis(fine, 2 - ijk, int(fine_per_native[ijk]), box=ijk == slice_ijk)
    native = native_grid.with_array(fine, name=f"{volume.name}_bin{bin_}" if volume.name else "")
    on_input_grid = resample_to_grid(native, volume, "linear")
    return Acquisition(native, on_input_grid, tuple(float(s) for s in spacing), rotation, bin_)


def _draw_native_spacing(bin_: int, rng: np.random.Generator) -> np.ndarray:
    """Voxel sizes whose product is drawn in [bin - 0.5, bin + 0.5): half the time a thick-slice
    scan (in-plane ~1 mm), otherwise the volume split between in-plane and through-plane on a log
    scale, from thick-slice to isotropic."""
    target = rng.uniform(bin_ - 0.5, bin_ + 0.5)
    # Fraction of log(volume) that goes in-plane: 0 = 1 x 1 x V, 2/3 = isotropic.
    in_plane_share = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 2.0 / 3.0)
    in_plane = target ** (in_plane_share / 2.0)
    aspect = rng.uniform(0.9, 1.1)  # in-plane voxels are rarely exactly square after resizing
    spacing_in_plane = np.array([in_plane * aspect, in_plane / aspect])
    through_plane = target / np.prod(spacing_in_plane)
    slice_ijk = rng.integers(3)  # sagittal, coronal or axial slices
    spacing = np.insert(spacing_in_plane, slice_ijk, through_plane)
    if np.argmax(spacing) != slice_ijk:  # keep "the thickest axis is the slice axis" true
        spacing[[slice_ijk, np.argmax(spacing)]] = spacing[[np.argmax(spacing), slice_ijk]]
    return spacing


def _draw_rotation(max_rotation_deg: float, rng: np.random.Generator) -> np.ndarray:
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross  # Rodrigues


def _rotated_grid_covering(volume: Volume, spacing, rotation: np.ndarray) -> Volume:
    """A grid with axes rotation @ volume.direction, the given spacing, centred on the volume and
    large enough to hold all of its field of view."""
    direction = rotation @ volume.direction
    centre = volume.ijk_to_lps()[:3] @ np.append((np.asarray(volume.size_xyz) - 1) / 2.0, 1.0)
    corners = (volume.physical_extent_corners() - centre) @ direction  # in the native axes
    size = np.ceil((corners.max(axis=0) - corners.min(axis=0)) / spacing - 1e-6).astype(int)
    origin = centre - direction @ ((size - 1) / 2.0 * np.asarray(spacing))
    return Volume(np.zeros(tuple(size[::-1]), np.float32), tuple(spacing), tuple(origin), direction, volume.name)


def _subdivided(grid: Volume, per_voxel: np.ndarray) -> Volume:
    """The grid with each voxel cut into per_voxel[i] x [j] x [k] equal sub-voxels."""
    spacing = np.asarray(grid.spacing) / per_voxel
    origin = np.asarray(grid.origin) - grid.direction @ ((per_voxel - 1) / 2.0 * spacing)
    size = np.asarray(grid.size_xyz) * per_voxel
    return Volume(np.zeros(tuple(size[::-1]), np.float32), tuple(spacing), tuple(origin), grid.direction.copy())


def _acquire_axis(fine: np.ndarray, array_axis: int, per_voxel: int, box: bool) -> np.ndarray:
    """One axis of the slice profile: a box over each native voxel's `per_voxel` fine samples, or
    a Gaussian of FWHM = one native voxel read at the voxel's centre."""
    if not box:
        fine = ndimage.gaussian_filter1d(fine, per_voxel / FWHM_PER_SIGMA, axis=array_axis, mode="nearest")
    moved = np.moveaxis(fine, array_axis, 0)
    grouped = moved.reshape((moved.shape[0] // per_voxel, per_voxel) + moved.shape[1:])
    # The centre of an even group lies between its two middle samples: average those.
    middle = grouped if box else grouped[:, [(per_voxel - 1) // 2, per_voxel // 2]]
    return np.moveaxis(middle.mean(axis=1, dtype=np.float32), 0, array_axis)


def _interpolate_rows(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """values[positions] along axis 0 with linear interpolation between rows."""
    below = np.clip(np.floor(positions).astype(int), 0, values.shape[0] - 2)
    weight = (positions - below).reshape((-1,) + (1,) * (values.ndim - 1))
    return values[below] * (1 - weight) + values[below + 1] * weight


def _along(vector: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    return vector.reshape([-1 if a == axis else 1 for a in range(ndim)])


def _axis_index(axis) -> int:
    key = axis.lower() if isinstance(axis, str) else axis
    if key not in _AXES:
        raise ValueError(f"axis {axis!r} is not one of x, y, z (or 0, 1, 2 for i, j, k)")
    return _AXES[key]


def _integer_factor(value, low: int, high: int) -> int:
    if int(value) != value or not low <= value <= high:
        raise ValueError(f"factor {value} is not a whole number in {low}..{high}")
    return int(value)
