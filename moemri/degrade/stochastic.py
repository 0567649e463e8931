"""N-SMoE's stochastic degradation model ("Neural Steered Mixture of Experts for Medical Image
Denoising, and Super-Resolution", Research Square preprint, doi:10.21203/rs.3.rs-7667284/v1), for
2-D slices and 3-D volumes: blur, then downsample, then noise, each drawn at random.

The abstract names the ingredients (diverse perturbations of downsampled inputs, noise beyond
additive white Gaussian) but not the distributions; the ranges below are ours, BSRGAN-like:
- blur: isotropic or axis-aligned anisotropic Gaussian, sigma 0.2-2.0 input pixels per axis
  (rotated anisotropic kernels are left out: they do not extend simply to 3-D);
- scale factor: uniform 1-4, the same on every axis, with linear or cubic interpolation on the
  extent-preserving grid (for a Volume the output carries the coarse geometry);
- noise: none, Gaussian or Rician with equal odds, level uniform 0-9 % of the brightest tissue,
  stationary or with a coil-like spatially varying map (equal odds).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..volume import Volume
from .noise import brightest_tissue_intensity, coil_sensitivity_noise_map, rician_magnitude
from .resolution import coarse_grid

BLUR_SIGMA_RANGE = (0.2, 2.0)  # input pixels
SCALE_RANGE = (1.0, 4.0)
NOISE_LEVEL_RANGE = (0.0, 9.0)  # percent of the brightest tissue
NOISE_TYPES = ("none", "gaussian", "rician")
BLUR_TYPES = ("isotropic", "anisotropic")
INTERPOLATION_ORDERS = (1, 3)  # linear, cubic spline


def stochastic_degradation(
    volume_or_array, rng, reference_intensity: float | None = None, *, axes=None, scale: float | None = None, level_range=None,
    noise: str | None = None,
):
    """(degraded, params): one random draw of the degradation model.

    Takes a 2-D array, a 3-D array or a Volume and returns the same kind. `params` records every
    draw (and the absolute noise sigma) so a training sample can be labelled or replayed.
    `reference_intensity` pins "100 %" noise; by default it is the input's brightest tissue.
    Training a slice-wise network needs a few draws pinned: `axes` (array axes) are the only ones
    blurred and downsampled (a stack of neighbouring 2-D slices: the in-plane axes; a thick-slice
    scan: one of them), `scale` fixes the factor, `level_range` the noise level's range (percent),
    `noise` the noise type (one of NOISE_TYPES).
    """
    rng = np.random.default_rng(rng)
    is_volume = isinstance(volume_or_array, Volume)
    image = np.asarray(volume_or_array.array if is_volume else volume_or_array, dtype=np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D slice or a 3-D volume, got shape {image.shape}")
    if reference_intensity is None:
        reference_intensity = brightest_tissue_intensity(image)

    axes = tuple(range(image.ndim)) if axes is None else tuple(int(a) for a in axes)
    blur_type = BLUR_TYPES[rng.integers(len(BLUR_TYPES))]
    sigmas = rng.uniform(*BLUR_SIGMA_RANGE, size=1 if blur_type == "isotropic" else image.ndim)
    sigmas = np.where(np.isin(np.arange(image.ndim), axes), np.broadcast_to(sigmas, (image.ndim,)), 0.0)
    drawn_scale = float(rng.uniform(*SCALE_RANGE))
    scale = drawn_scale if scale is None else float(scale)
    order = int(INTERPOLATION_ORDERS[rng.integers(len(INTERPOLATION_ORDERS))])
    noise_type = NOISE_TYPES[rng.integers(len(NOISE_TYPES))]
    if noise is not None:
        if noise not in NOISE_TYPES:
            raise ValueError(f"noise type {noise!r} is not one of {', '.join(NOISE_TYPES)}")
        noise_type = noise
    level = 0.0 if noise_type == "none" else float(rng.uniform(*(level_range or NOISE_LEVEL_RANGE)))
    varying = bool(noise_type != "none" and rng.random() < 0.5)

    blurred = ndimage.gaussian_filter(image, sigmas, mode="nearest")
    out_shape = tuple(max(1, int(round(n / scale))) if a in axes else n for a, n in enumerate(image.shape))
    # grid_mode: pixel edges, not centres, are matched, so the field of view is kept exactly.
    small = ndimage.zoom(blurred, np.divide(out_shape, image.shape), order=order, mode="nearest", grid_mode=True)
    sigma = level / 100.0 * reference_intensity
    if varying:
        sigma = sigma * coil_sensitivity_noise_map(small.shape, rng)
    if noise_type == "gaussian":
        degraded = small + sigma * rng.standard_normal(small.shape, dtype=np.float32)
    elif noise_type == "rician":
        degraded = rician_magnitude(small, sigma, rng)
    else:
        degraded = small
    degraded = np.asarray(degraded, dtype=np.float32)

    params = {
        "blur": blur_type,
        "blur_sigma_pixels": tuple(float(s) for s in sigmas),  # per array axis
        "scale": scale,
        "interpolation_order": order,
        "noise": noise_type,
        "noise_level_percent": level,
        "noise_varying": varying,
        "noise_sigma": level / 100.0 * reference_intensity,  # before the varying map
        "reference_intensity": float(reference_intensity),
        "output_shape": degraded.shape,
    }
    if not is_volume:
        return degraded, params
    # n / (n / m) rounds back to m, so the grid has exactly the zoomed shape.
    grid = coarse_grid(volume_or_array, np.divide(image.shape, out_shape)[::-1])
    return grid.with_array(degraded), params
