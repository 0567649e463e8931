"""Rician noise at a BrainWeb-style percent level, coil-like noise maps and bias fields.

Convention (BrainWeb's, used by Deng and Campbell, arXiv:2501.14198, for its 1-9 % levels): a noise
level of p % means a Gaussian standard deviation of p/100 times the intensity of the brightest tissue, added
to the real and imaginary channels before taking the magnitude. Levels in the papers run 0-9 %.

Randomness: every function takes `rng`, anything `numpy.random.default_rng` accepts (a seed or a
Generator), so a seed alone reproduces a degradation in training, tests and benchmarks.
"""
from __future__ import annotations

import numpy as np

from ..masks import head_mask
from ..volume import Volume

MAX_LEVEL_PERCENT = 20.0  # the papers stop at 9 %; beyond 20 % an MR head is barely visible
# BrainWeb's reference is the brightest tissue, not the brightest voxel: the maximum is set by a
# handful of vessel, fat or interpolation-overshoot voxels and would make "3 %" mean different
# things on different heads. The 99th percentile inside the head lands on that tissue's plateau.
REFERENCE_PERCENTILE = 99.0
# Far from every element (the corners of the field of view) the coil model's noise grows without
# bound; real head-coil noise maps stay within a factor of ~5, so the map is clipped to this.
COIL_MAP_RANGE = (0.4, 2.0)


def brightest_tissue_intensity(array: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The intensity "100 %" refers to: the 99th percentile inside the head (`mask`, or the head
    mask of `array` when not given). Falls back to the whole array when the mask is empty."""
    array = np.asarray(array)
    mask = head_mask(array) if mask is None else np.asarray(mask, dtype=bool)
    values = array[mask] if mask.any() else array.ravel()
    return float(np.percentile(values, REFERENCE_PERCENTILE))


def rician_magnitude(signal: np.ndarray, sigma, rng) -> np.ndarray:
    """|signal + N(0, sigma) + i N(0, sigma)| as float32; `sigma` a number or an array like `signal`."""
    rng = np.random.default_rng(rng)
    signal = np.asarray(signal, dtype=np.float32)
    sigma = np.asarray(sigma, dtype=np.float32)
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.hypot(real, imaginary)


def check_level(level_percent: float) -> float:
    level = float(level_percent)
    if not 0.0 <= level <= MAX_LEVEL_PERCENT:
        raise ValueError(f"noise level {level_percent} % is outside 0..{MAX_LEVEL_PERCENT:g} %")
    return level


def rician_noise(
    volume_or_array,
    level_percent: float,
    rng,
    noise_map: np.ndarray | None = None,
    reference_intensity: float | None = None,
):
    """Rician noise with sigma = level/100 x brightest tissue (x `noise_map` voxel-wise, if given).

    Returns the same kind it was given (a Volume keeps its geometry), as float32. Pass
    `reference_intensity` to pin "100 %" (e.g. to the clean image's value when degrading a copy).
    """
    level = check_level(level_percent)
    array = volume_or_array.array if isinstance(volume_or_array, Volume) else np.asarray(volume_or_array)
    if reference_intensity is None:
        reference_intensity = brightest_tissue_intensity(array)
    sigma = level / 100.0 * reference_intensity
    if noise_map is not None:
        sigma = sigma * np.asarray(noise_map, dtype=np.float32)
    noisy = rician_magnitude(array, sigma, rng)
    return volume_or_array.with_array(noisy) if isinstance(volume_or_array, Volume) else noisy


def coil_sensitivity_noise_map(
    shape,
    rng,
    coils: int = 8,
    mask: np.ndarray | None = None,
    value_range: tuple[float, float] = COIL_MAP_RANGE,
) -> np.ndarray:
    """A smooth noise-amplification map like that of a phased-array head coil, mean 1 in `mask`
    (the whole array by default), clipped to `value_range` (0.4-2 by default).

    Each coil has a Gaussian sensitivity centred on a ring around the field of view (in the plane
    of the last two axes, at a random height for 3-D shapes). For a root-sum-of-squares combination
    with independent coil noise the image noise scales as 1/sqrt(sum of squared sensitivities), so
    the centre, far from every coil, is noisiest, as in real head-coil images.
    """
    rng = np.random.default_rng(rng)
    shape = tuple(int(n) for n in shape)
    # Normalised coordinates in [-1, 1] along every axis: the map does not depend on voxel size.
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    ring_phase = rng.uniform(0.0, 2 * np.pi)
    widths = rng.uniform(0.45, 0.65, size=coils)
    sum_squares = np.zeros(shape, dtype=np.float32)
    for coil in range(coils):
        angle = ring_phase + 2 * np.pi * coil / coils + rng.uniform(-0.2, 0.2)
        centre = np.zeros(len(shape))
        centre[-1], centre[-2] = 1.1 * np.cos(angle), 1.1 * np.sin(angle)
        if len(shape) == 3:
            centre[0] = rng.uniform(-0.5, 0.5)
        # A Gaussian is separable: the squared sensitivity is an outer product of 1-D profiles.
        squared = np.ones((1,) * len(shape), dtype=np.float32)
        for axis, (coordinate, c) in enumerate(zip(axes, centre)):
            # Head-coil elements are longer along the bore (axis 0 of a 3-D array) than across it.
            width = widths[coil] * (2.0 if len(shape) == 3 and axis == 0 else 1.0)
            profile = np.exp(-((coordinate - c) ** 2) / width**2)
            squared = squared * profile.reshape([-1 if a == axis else 1 for a in range(len(shape))])
        sum_squares += squared
    noise_map = 1.0 / np.sqrt(sum_squares + 1e-6)
    return _normalise_mean_in_range(noise_map, mask, value_range)


def bias_field(shape, rng, strength: float, mask: np.ndarray | None = None) -> np.ndarray:
    """A smooth multiplicative intensity non-uniformity, mean 1 in `mask` (whole array by default).

    A random cubic polynomial of the normalised coordinates, scaled so the field spans about
    1 - strength/2 .. 1 + strength/2: `strength` 0.2 and 0.4 play BrainWeb's 20 % and 40 % RF
    non-uniformity levels.
    """
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"bias strength {strength} is outside [0, 1)")
    rng = np.random.default_rng(rng)
    shape = tuple(int(n) for n in shape)
    if strength == 0.0:
        return np.ones(shape, dtype=np.float32)
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    exponents = [e for e in np.ndindex(*(4,) * len(shape)) if 0 < sum(e) <= 3]
    polynomial = np.zeros(shape, dtype=np.float32)
    for exponent, coefficient in zip(exponents, rng.standard_normal(len(exponents))):
        term = np.ones((1,) * len(shape), dtype=np.float32)
        for axis, (coordinate, power) in enumerate(zip(axes, exponent)):
            term = term * (coordinate**power).reshape([-1 if a == axis else 1 for a in range(len(shape))])
        polynomial += np.float32(coefficient) * term
    low, high = float(polynomial.min()), float(polynomial.max())
    field = 1.0 + strength * ((polynomial - low) / max(high - low, 1e-12) - 0.5)
    inside = field if mask is None else field[np.asarray(mask, dtype=bool)]
    return (field / inside.mean()).astype(np.float32)


def add_rician(
    volume: Volume,
    level_percent: float,
    seed,
    varying: bool = False,
    bias: float = 0.0,
) -> tuple[Volume, np.ndarray]:
    """The benchmarks' one entry: (noisy volume, true sigma map in the volume's units).

    "100 %" is the brightest tissue of the clean `volume`; a `varying` map has mean 1 inside its
    head mask, so the level is the head's average. `bias` (0-1) multiplies the signal by a bias
    field before the noise, as BrainWeb does. The noise, map and field come from separate streams
    of `seed`, so one seed gives the same Gaussian draws with or without `varying` or `bias`.
    """
    level = check_level(level_percent)
    noise_rng, map_rng, bias_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    clean = np.asarray(volume.array, dtype=np.float32)
    mask = head_mask(clean)
    sigma = level / 100.0 * brightest_tissue_intensity(clean, mask)
    noise_map = coil_sensitivity_noise_map(clean.shape, map_rng, mask=mask) if varying else None
    sigma_map = np.full(clean.shape, sigma, dtype=np.float32) if noise_map is None else sigma * noise_map
    signal = clean * bias_field(clean.shape, bias_rng, bias, mask) if bias else clean
    noisy = rician_magnitude(signal, sigma_map, noise_rng)
    name = f"{volume.name}_rician{level:g}{'v' if varying else ''}" if volume.name else ""
    return volume.with_array(noisy, name=name), sigma_map


def _normalise_mean_in_range(field: np.ndarray, mask, value_range) -> np.ndarray:
    # Clipping moves the mean and rescaling moves the ends; a few rounds settle both to ~1e-3.
    low, high = value_range
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    for _ in range(5):
        inside = field if mask is None else field[mask]
        field = np.clip(field / inside.mean(), low, high)
    return field.astype(np.float32)
