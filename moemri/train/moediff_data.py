"""MoEDiff-SR's training and validation slices, simulated on the fly from crops of the heads.

One pair is one simulated scan of a head crop, brought back onto the crop's 1 mm grid with cubic
B-spline (as `moediff-sr` does at inference, on the whole volume), then cut into 2-D slices along
one array axis with the interpolated slice, its target and the input's voxel-size ratio along
the slice's two axes. Two kinds, the benchmark's: thick slices (a box profile, x2..x5) along one
axis, the slices cut so that the thick axis lies in their plane; in-plane reduction (Gaussian
blur and decimation of two axes, x2..x4), cut along any axis (inference averages the plane of
both reduced axes with a plane holding one of them). Noise-free, as the benchmark's cases.
Heads come from train/remix_data.py (normalised, tissue centres); crops from its `_crop`.
"""
from __future__ import annotations

import math

import numpy as np

from .remix_data import Head, _crop

KINDS = ("thick", "in-plane")
THICK_FACTORS = (2, 3, 4, 5)
IN_PLANE_FACTORS = (2, 3, 4)
MARGIN = 4  # pixels dropped at the crop's in-plane faces (B-spline's border) from each slice
SLICES_PER_CROP = 4


def simulate_slices(head: Head, rng: np.random.Generator, patch: int = 64, kind: str | None = None, factor: int | None = None,
                    slice_axis: int | None = None, reduced: tuple[int, ...] | None = None):
    """(low (n, patch, patch), target (n, patch, patch), ratios (n, 2)) of SLICES_PER_CROP
    central slices of one simulated scan of a random crop of `head`; `reduced`: the array axes
    made coarse (random where not given)."""
    from ..degrade.resolution import blur_decimate, resample_to_grid, thick_slices

    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    crop = patch + 2 * MARGIN
    slice_axis = int(rng.integers(3)) if slice_axis is None else slice_axis
    plane = [a for a in range(3) if a != slice_axis]
    if kind == "thick":
        factor = factor or int(rng.choice(THICK_FACTORS))
        reduced = reduced or (plane[int(rng.integers(2))],)  # the thick axis lies in the plane
    else:
        factor = factor or int(rng.choice(IN_PLANE_FACTORS))
        # Both reduced axes in the plane, or one of them along the slice axis (half the time each).
        reduced = reduced or (tuple(plane) if rng.random() < 0.5 else (slice_axis, plane[int(rng.integers(2))]))
    shape = [crop] * 3
    shape[slice_axis] = 4 * factor + SLICES_PER_CROP  # enough neighbours for B-spline across the slices
    for a in reduced:
        shape[a] = factor * math.ceil(shape[a] / factor)  # whole coarse voxels: nothing dropped
    part = _crop(head, shape, rng)
    if kind == "thick":
        low = thick_slices(part, factor, axis=2 - reduced[0])
    else:
        low = blur_decimate(part, factor, axes=tuple(2 - a for a in reduced))
    degraded = resample_to_grid(low, part, "bspline").array
    ratios_zyx = np.asarray(low.spacing[::-1]) / np.asarray(part.spacing[::-1])
    centre = shape[slice_axis] // 2 - SLICES_PER_CROP // 2
    index = [slice(MARGIN, MARGIN + patch)] * 3
    index[slice_axis] = slice(centre, centre + SLICES_PER_CROP)
    x = np.moveaxis(degraded[tuple(index)], slice_axis, 0)
    y = np.moveaxis(part.array[tuple(index)], slice_axis, 0)
    x, y = x[:, : patch, : patch], y[:, : patch, : patch]
    ratios = np.tile(np.log2(ratios_zyx[plane]).astype(np.float32), (SLICES_PER_CROP, 1))
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.float32), ratios


def sample_batch(heads: list[Head], rng: np.random.Generator, batch: int, patch: int = 64):
    """(low (B, 1, p, p), target (B, 1, p, p), ratios (B, 2)): random heads, kinds and factors,
    random in-plane flips and transposition, intensity gain 0.9-1.1."""
    lows, targets, ratios = [], [], []
    while len(lows) < batch:
        x, y, r = simulate_slices(heads[int(rng.integers(len(heads)))], rng, patch)
        for i in range(x.shape[0]):
            a, b, q = x[i], y[i], r[i]
            if rng.random() < 0.5:
                a, b = a[::-1], b[::-1]
            if rng.random() < 0.5:
                a, b = a[:, ::-1], b[:, ::-1]
            if rng.random() < 0.5:
                a, b, q = a.T, b.T, q[::-1]
            gain = np.float32(rng.uniform(0.9, 1.1))
            lows.append(a * gain)
            targets.append(b * gain)
            ratios.append(np.ascontiguousarray(q))
    stack = lambda items: np.ascontiguousarray(np.stack(items[:batch])[:, None], np.float32)  # noqa: E731
    return stack(lows), stack(targets), np.stack(ratios[:batch]).astype(np.float32)


# The benchmark's cases in the planes inference uses: (kind, factor, slice axis, reduced axes).
# In-plane reduction of y and x, cut along z (both in the plane) and along y (x in the plane);
# thick slices along z, cut along y and along x.
VALIDATION_CASES = (
    ("in-plane", 2, 0, (1, 2)), ("in-plane", 4, 0, (1, 2)), ("in-plane", 4, 1, (1, 2)),
    ("thick", 4, 1, (0,)), ("thick", 4, 2, (0,)), ("thick", 2, 1, (0,)),
)


def validation_slices(head: Head, seed: int, per_case: int = 2, patch: int = 96):
    """Fixed held-back slices of the validation head: [(name, low, target, ratios)] with arrays
    (n, patch, patch); the same for every validation of a run."""
    out = []
    for c, (kind, factor, axis, reduced) in enumerate(VALIDATION_CASES):
        rng = np.random.default_rng([seed, c])
        lows, targets, ratios = [], [], []
        for _ in range(per_case):
            x, y, r = simulate_slices(head, rng, patch, kind=kind, factor=factor, slice_axis=axis, reduced=reduced)
            lows.append(x[:1]), targets.append(y[:1]), ratios.append(r[:1])
        out.append((f"{kind} x{factor} axis {axis}", np.concatenate(lows), np.concatenate(targets), np.concatenate(ratios)))
    return out
