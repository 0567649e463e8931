"""The noise level of a magnitude MR volume, from the image alone: a smooth sigma map.

Convention (as in `degrade.noise`): sigma is the Gaussian standard deviation of the real and
imaginary channels in the volume's units; a level of p % is p/100 x the brightest tissue.

Two classical estimators:
- wavelet MAD (Donoho & Johnstone 1994): the finest diagonal Haar subband (HHH in 3-D) holds almost
  no anatomy, so median(|d|) / 0.6745 is the noise sigma. It is taken in local windows (~12 mm)
  inside the head, only where the tissue is bright enough for Rician noise to be nearly Gaussian
  (the small remaining bias is undone with Koay & Basser's correction factor), and the window
  values are smoothed into a map by normalised convolution, which also fills the air around the
  head. A map whose spread stays within what the window estimates scatter by is called stationary
  and replaced by its median.
- background Rayleigh: in the air a magnitude image is Rayleigh(sigma), median = sigma sqrt(2 ln 2).
  Reported beside the main estimate as a check; not used for the map, because real backgrounds hold
  ghosts, zero-filling and masking, and a coil-like map is lowest at the edge of the field of view.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import i0e, i1e

from .masks import head_mask

WINDOW_MM = 12.0  # local window of the wavelet MAD: many samples, yet finer than coil variation
MAP_SMOOTHING_WINDOWS = 0.6  # Gaussian sigma of the map, in windows (~7 mm)
MIN_WINDOW_VOXELS = 8  # per axis: coarse voxels still give a window hundreds of samples
FLAT_PERCENTILE = 50.0
MIN_SNR = 2.5  # voxels darker than this x sigma are left out (Rician far from Gaussian there)
MIN_VALID_FRACTION = 0.2  # a window with fewer usable voxels does not vote
# Spread (10th..90th percentile over the median) of the window estimates below which the map is
# called stationary: the scatter of a stationary map's window estimates stays under ~0.12 on the
# validation head from 1 to 9 % and on its 2x2x3 mm 8-bit copy; a head coil's map spreads > 0.3.
STATIONARY_SPREAD = 0.2
MAD_TO_SIGMA = 1.0 / 0.6744897501960817  # 1 / Phi^-1(3/4)
RAYLEIGH_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))  # median of Rayleigh(1)


@dataclass
class NoiseEstimate:
    sigma_map: np.ndarray  # (z, y, x) float32, the volume's units
    level_percent: float  # head-mean sigma as % of the brightest tissue
    varying: bool
    source: str  # how it was obtained, for the result's metadata
    reference_intensity: float  # the brightest tissue ("100 %"), the volume's units
    background_sigma: float | None = None  # background Rayleigh check (None: no usable air)

    def metadata(self) -> dict:
        meta = {"noise_level_percent": round(self.level_percent, 2), "noise_estimate": self.source}
        if self.background_sigma is not None:
            meta["noise_background_percent"] = round(100.0 * self.background_sigma / self.reference_intensity, 2)
        return meta


def koay_correction(snr) -> np.ndarray:
    """xi(theta): variance of a Rician magnitude over sigma^2 at signal-to-noise theta (Koay & Basser 2006)."""
    t2 = np.asarray(snr, dtype=np.float64) ** 2
    q = t2 / 4.0
    # exp(-t^2/2) I(t^2/4)^2 = (exp(-t^2/4) I(t^2/4))^2: the scaled Bessel functions do not overflow.
    return 2.0 + t2 - np.pi / 8.0 * ((2.0 + t2) * i0e(q) + t2 * i1e(q)) ** 2


def brightest_tissue(array: np.ndarray, mask: np.ndarray, smooth: np.ndarray | None = None) -> float:
    """The '100 %' intensity of a noisy volume: degrade.noise's 99th percentile in the head, taken
    on a lightly smoothed copy so that the noise itself does not push it up."""
    from .degrade.noise import brightest_tissue_intensity

    if smooth is None:
        smooth = ndimage.gaussian_filter(np.asarray(array, dtype=np.float32), 1.0)
    return brightest_tissue_intensity(smooth, mask)


def estimate_noise(array, spacing_xyz=(1.0, 1.0, 1.0), mask: np.ndarray | None = None) -> NoiseEstimate:
    """Estimate the noise sigma map of a magnitude volume (array (z, y, x), spacing (x, y, z) mm).
    `mask` is the head mask (computed when not given)."""
    a = np.asarray(array, dtype=np.float32)
    mask = head_mask(a) if mask is None else np.asarray(mask, dtype=bool)
    smooth = ndimage.gaussian_filter(a, 1.0)
    reference = brightest_tissue(a, mask, smooth)
    spacing_zyx = np.asarray(spacing_xyz, dtype=float)[::-1]

    detail = np.abs(_finest_diagonal(a))
    inner = _erode(mask, 1) if mask.sum() > 1000 else mask
    # A first guess over the whole head sets the brightness threshold for the real estimate.
    first = MAD_TO_SIGMA * float(np.median(detail[inner])) if inner.any() else 0.0
    valid = inner & (smooth > MIN_SNR * first)
    # Anatomy leaks into the finest subband at edges; at 1 % noise on a 2x2x3 mm copy it adds
    # ~40 %. The flatter half of the tissue (by the gradient of the smoothed image, a low-pass
    # measure nearly independent of the diagonal detail) keeps the estimate on the noise.
    if valid.sum() >= 200:
        gradient = _gradient_magnitude(smooth)
        valid &= gradient <= np.percentile(gradient[valid], FLAT_PERCENTILE)
    if valid.sum() < 100:
        valid = inner if inner.sum() >= 100 else np.ones_like(mask)
    sigma0 = MAD_TO_SIGMA * float(np.median(detail[valid]))
    if sigma0 <= 0:  # a noiseless (e.g. synthetic) image
        return NoiseEstimate(np.zeros(a.shape, np.float32), 0.0, False, "auto: wavelet MAD, no noise found", reference)
    # Undo the Rician shrinkage of the darker voxels kept (at SNR 2.5 the std is 0.93 sigma).
    detail[valid] /= np.sqrt(koay_correction(np.maximum(smooth[valid], 0) / sigma0)).astype(np.float32)

    window = np.maximum(np.round(WINDOW_MM / spacing_zyx), MIN_WINDOW_VOXELS).astype(int)
    window = np.minimum(window, np.maximum(np.asarray(a.shape), 1))
    medians, counts = _window_medians(detail, valid, window)
    votes = counts >= MIN_VALID_FRACTION * np.prod(window)
    if votes.sum() == 0:
        votes = counts > 0
    window_sigma = MAD_TO_SIGMA * medians
    level_of = lambda s: 100.0 * s / reference if reference > 0 else 0.0  # noqa: E731

    smoothed = ndimage.gaussian_filter(np.where(votes, window_sigma, 0.0), MAP_SMOOTHING_WINDOWS, mode="nearest")
    norm = ndimage.gaussian_filter(votes.astype(np.float64), MAP_SMOOTHING_WINDOWS, mode="nearest")
    # Windows far from any vote (deep in the air) take the overall median rather than 0/0.
    grid = np.where(norm > 1e-3, smoothed / np.maximum(norm, 1e-12), np.median(window_sigma[votes]))
    # Judged on the smoothed map: the raw window values scatter by sampling alone.
    spread = _spread(grid[votes]) if votes.sum() >= 8 else 0.0
    background = _background_sigma(a, mask)
    if spread < STATIONARY_SPREAD:
        sigma = float(np.median(window_sigma[votes]))
        sigma_map = np.full(a.shape, sigma, dtype=np.float32)
        return NoiseEstimate(sigma_map, level_of(sigma), False, "auto: wavelet MAD, stationary", reference, background)
    sigma_map = _upsample(grid, window, a.shape)
    return NoiseEstimate(sigma_map, level_of(float(sigma_map[mask].mean())), True, "auto: wavelet MAD, varying", reference, background)


def given_level(array, level_percent: float, mask: np.ndarray | None = None) -> NoiseEstimate:
    """A stationary sigma map for a level the user gives (% of the brightest tissue)."""
    a = np.asarray(array, dtype=np.float32)
    mask = head_mask(a) if mask is None else np.asarray(mask, dtype=bool)
    reference = brightest_tissue(a, mask)
    sigma = float(level_percent) / 100.0 * reference
    return NoiseEstimate(np.full(a.shape, sigma, np.float32), float(level_percent), False, "given, stationary", reference)


def _finest_diagonal(a: np.ndarray) -> np.ndarray:
    """Finest diagonal Haar detail along every axis longer than 1 voxel, normalised so white noise
    of std s gives detail of std s. The detail of voxels i..i+1 is stored at i (the last voxel
    along each axis repeats its neighbour), so it lines up with masks of the input's shape."""
    d = a.astype(np.float32)
    taken = 0
    for axis in range(a.ndim):
        if a.shape[axis] > 1:
            d = np.diff(d, axis=axis)
            taken += 1
    d = np.pad(d, [(0, n - m) for n, m in zip(a.shape, d.shape)], mode="edge")
    return d / np.float32(np.sqrt(2.0**taken))


def _window_medians(values: np.ndarray, valid: np.ndarray, window) -> tuple[np.ndarray, np.ndarray]:
    """Median of `values` over the `valid` voxels of each window (0 where none), and the counts."""
    grid = [int(np.ceil(n / w)) for n, w in zip(values.shape, window)]
    pad = [(0, g * w - n) for g, w, n in zip(grid, window, values.shape)]
    v = np.pad(values, pad, constant_values=np.nan)
    v = np.where(np.pad(valid, pad, constant_values=False), v, np.nan)
    blocks = v.reshape(grid[0], window[0], grid[1], window[1], grid[2], window[2]).transpose(0, 2, 4, 1, 3, 5)
    blocks = blocks.reshape(grid[0], grid[1], grid[2], -1)
    counts = np.sum(~np.isnan(blocks), axis=-1)
    medians = np.zeros(counts.shape)
    has = counts > 0
    medians[has] = np.nanmedian(blocks[has], axis=-1)
    return medians, counts


def _spread(values: np.ndarray) -> float:
    low, mid, high = np.percentile(values, [10, 50, 90])
    return float((high - low) / mid) if mid > 0 else 0.0


def _upsample(grid: np.ndarray, window, shape) -> np.ndarray:
    """Window grid -> voxel grid: window centres sit at (i + 0.5) * w - 0.5 voxels; linear
    interpolation between them, constant beyond the outer centres."""
    coords = []
    for n, w, g in zip(shape, window, grid.shape):
        position = (np.arange(n) + 0.5) / w - 0.5  # voxel index -> window index
        coords.append(np.clip(position, 0, g - 1))
    # Separable linear interpolation, one axis at a time (cheaper than map_coordinates in 3-D).
    out = grid.astype(np.float32)
    for axis, c in enumerate(coords):
        below = np.floor(c).astype(int)
        above = np.minimum(below + 1, out.shape[axis] - 1)
        t = (c - below).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = np.take(out, below, axis=axis) * (1 - t) + np.take(out, above, axis=axis) * t
    return out.astype(np.float32)


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    # A cube minimum filter is separable: ~10x faster than binary_erosion on a whole head.
    return ndimage.minimum_filter(mask.view(np.uint8), size=2 * radius + 1).astype(bool)


def _gradient_magnitude(smooth: np.ndarray) -> np.ndarray:
    squared = np.zeros(smooth.shape, np.float32)
    for axis in range(smooth.ndim):
        if smooth.shape[axis] > 1:
            squared += np.gradient(smooth, axis=axis) ** 2
    return np.sqrt(squared)


def _background_sigma(a: np.ndarray, mask: np.ndarray) -> float | None:
    """Rayleigh sigma of the air well outside the head, or None when there is too little air or it
    is mostly exact zeros (masked, zero-filled or clipped backgrounds)."""
    air = ~ndimage.maximum_filter(mask.view(np.uint8), size=7).astype(bool)
    values = a[air]
    if values.size < 2000 or np.mean(values <= 0) > 0.5:
        return None
    return float(np.median(values)) / RAYLEIGH_MEDIAN
