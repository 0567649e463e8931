"""REMIx's training and validation pairs, simulated on the fly from crops of the heads.

Each pair is one simulated scan of a head crop in a voxel-volume bin, brought back onto the crop's
1 mm grid with cubic B-spline (as `remix` does at inference) and turned into the networks' frame
(canonical.py: slice axis first, the native spacing as conditioning). Three kinds of scan:
- `thick`: axis-aligned thick slices with a box profile and sharp in-plane voxels (1 x 1 x bin mm),
  a 2-D clinical sequence without obliquity;
- `oblique`: `random_acquisition`, the REMIx-style grid (thick-slice or mixed anisotropy, rotated up
  to 10 degrees, Gaussian in-plane profile);
- `in-plane`: Gaussian blur and decimation of two axes (x2 in bin 4, x3/x4 in bin 7), one sharp axis.
Mild Gaussian noise (0-2 % of the head's 99.5th percentile) is added to the scan before B-spline.

Simulating a 48^3 crop takes tens of milliseconds, so every step sees fresh acquisitions (no pair
cache) and the three kinds are mixed in every bin, as issue 12 asks: earlier the higher bins mixed
kinds along random axes and the networks learned to "sharpen harder" rather than what a bin lacks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..methods.remix.canonical import canonical_order, condition_values, to_canonical, with_condition
from ..volume import Volume

KINDS = ("thick", "oblique", "in-plane")
IN_PLANE_FACTORS = {4: (2,), 7: (3, 4)}  # in-plane reduction factors whose voxel volume falls in a bin
NOISE_MAX = 0.02


@dataclass
class Head:
    """A normalised head (0 -> 0, 99.5th percentile of the head -> 1) and where its tissue is."""

    volume: Volume
    centres: np.ndarray  # (n, 3) array indices of tissue voxels a crop may centre on


def prepare_head(volume: Volume, crop: int) -> Head:
    from ..intensity import normalise
    from ..masks import head_mask

    array, _ = normalise(volume.array)
    mask = head_mask(array) & (array > 0.2)
    half = crop // 2 + 4
    inner = np.zeros_like(mask)
    inner[half:-half, half:-half, half:-half] = True
    centres = np.argwhere(mask & inner)[::7]
    return Head(volume.with_array(np.ascontiguousarray(array, np.float32)), centres)


def _crop(head: Head, shape, rng) -> Volume:
    v = head.volume
    centre = head.centres[rng.integers(len(head.centres))]
    lo = [int(min(max(c - n // 2, 0), s - n)) for c, n, s in zip(centre, shape, v.array.shape)]
    array = v.array[lo[0] : lo[0] + shape[0], lo[1] : lo[1] + shape[1], lo[2] : lo[2] + shape[2]]
    origin = np.asarray(v.origin) + v.direction @ (np.asarray(lo[::-1]) * np.asarray(v.spacing))
    return Volume(np.ascontiguousarray(array), v.spacing, tuple(origin), v.direction)


def choose_kind(bin_: int, rng) -> str:
    if bin_ in IN_PLANE_FACTORS and rng.random() < 0.2:
        return "in-plane"
    return "thick" if rng.random() < 0.5 else "oblique"


def simulate(head: Head, bin_: int, kind: str, rng, crop: int = 48, out: int = 32, noise: bool = True):
    """(network input (4, out, out, out), target (1, out, out, out), native spacing z, y, x) of one
    simulated scan of a random crop of `head`, in the networks' canonical frame."""
    from ..degrade.resolution import blur_decimate, random_acquisition, resample_to_grid, thick_slices

    shape = [crop] * 3
    if kind == "thick":
        axis = int(rng.integers(3))  # array axis of the slices
        shape[axis] = bin_ * math.ceil(crop / bin_)  # whole slabs: nothing dropped at the end
        part = _crop(head, shape, rng)
        low = thick_slices(part, bin_, axis=2 - axis)
        spacing_zyx = low.spacing[::-1]
    elif kind == "in-plane":
        factor = int(rng.choice(IN_PLANE_FACTORS[bin_]))
        sharp = int(rng.integers(3))
        for a in range(3):
            if a != sharp:
                shape[a] = factor * math.ceil(crop / factor)
        part = _crop(head, shape, rng)
        low = blur_decimate(part, factor, axes=tuple(2 - a for a in range(3) if a != sharp))
        spacing_zyx = low.spacing[::-1]
    else:
        part = _crop(head, shape, rng)
        acquisition = random_acquisition(part, bin_, rng)
        low = acquisition.native
        spacing_zyx = acquisition.spacing[::-1]  # native axes are within 10 degrees of the crop's
    if noise:
        sigma = rng.uniform(0.0, NOISE_MAX)
        low = low.with_array((low.array + sigma * rng.standard_normal(low.array.shape)).astype(np.float32))
    degraded = resample_to_grid(low, part, "bspline").array
    lo = [(n - out) // 2 for n in degraded.shape]
    window = tuple(slice(a, a + out) for a in lo)
    order = canonical_order(spacing_zyx)
    x = to_canonical(degraded[window], order)
    y = to_canonical(part.array[window], order)
    return with_condition(x, condition_values(spacing_zyx, order)), y[None].astype(np.float32), tuple(spacing_zyx)


def sample_batch(heads: list[Head], bins, rng, batch: int, crop: int, out: int):
    """(inputs (B, 4, p, p, p), targets (B, 1, p, p, p)): a bin, a kind and a head per sample,
    random flips and intensity scale (0.9-1.1)."""
    xs, ys = [], []
    for _ in range(batch):
        bin_ = int(rng.choice(bins))
        x, y, _ = simulate(heads[rng.integers(len(heads))], bin_, choose_kind(bin_, rng), rng, crop, out)
        for axis in (1, 2, 3):
            if rng.random() < 0.5:
                x, y = np.flip(x, axis), np.flip(y, axis)
        gain = rng.uniform(0.9, 1.1)
        x = x.copy()
        x[0] *= gain
        xs.append(x)
        ys.append(y * gain)
    return np.stack(xs), np.stack(ys)


def validation_cases(head: Head, bins, per_bin: int, seed: int, crop: int = 64, out: int = 48):
    """Fixed held-back cases of the validation head: for each bin `per_bin` scans cycling through
    thick, oblique and (where the bin has one) in-plane kinds; noise-free, so a score reads as the
    network's own gain over B-spline."""
    cases = []
    for bin_ in bins:
        kinds = ["thick", "oblique"] + (["in-plane"] if bin_ in IN_PLANE_FACTORS else [])
        for k in range(per_bin):
            rng = np.random.default_rng([seed, bin_, k])
            kind = kinds[k % len(kinds)]
            x, y, spacing = simulate(head, bin_, kind, rng, crop, out, noise=False)
            cases.append((f"bin{bin_}-{kind}", x, y))
    return cases
