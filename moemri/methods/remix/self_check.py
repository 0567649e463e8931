"""REMIx's per-scan check against B-spline, with no ground truth (beyond the paper; after SMORE,
Remedios et al. 2023): the scan's own finest in-plane axis is sharp, so degrade it to the slice
thickness, let the chosen expert restore it, and see how much of the expert's correction helps.

On a central block of the head (at most BLOCK^3 voxels of the output grid):
- R: the scan brought onto the output grid with B-spline (what `bspline` returns there);
- D: the same, after the finest in-plane axis u was cut into thick slices as thick as the real
  ones (box profile, round(thickness / spacing_u) voxels), so D lacks the detail along u that R has;
- the expert restores D with u as its slice axis: correction C = E(D) - D.
The blend weight `alpha` minimises || D + alpha C - R ||^2 along u's detail (both sides band-passed
along u, so that what the expert adds along the real slice axis, which R lacks too, and the
in-plane deblurring it does on blurred scans, which R cannot show, count least), clipped to [0, 1]. The output is then B-spline + alpha x (the expert's correction):
alpha near 0 means the expert would not have helped this scan, and REMIx stays at B-spline.

`adapt_steps` > 0 first fine-tunes a copy of the expert on (D, R) patches of one half of the block
(loss: MAE of the detail along u), then fits alpha on the other half.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

BLOCK = 96
MIN_RATIO = 1.5  # slice thickness / finest in-plane spacing below which there is nothing to check
ADAPT_PATCH = 32
ADAPT_LR = 1e-4


@dataclass
class Check:
    alpha: float
    note: str
    model: object = None  # the adapted copy, when adapt_steps > 0


def _block_window(array: np.ndarray, block: int) -> tuple[slice, ...]:
    """A window of at most block^3 voxels centred on the head's centre of intensity."""
    centre = ndimage.center_of_mass(np.clip(array, 0, None) > 0.2)
    window = []
    for c, n in zip(centre, array.shape):
        size = min(n, block) - min(n, block) % 4
        lo = int(min(max(round(c) - size // 2, 0), n - size))
        window.append(slice(lo, lo + size))
    return tuple(window)


def _detail(a: np.ndarray, axis: int, ratio: float) -> np.ndarray:
    """Band-pass along `axis`: the band that cutting into slices `ratio` voxels thick removes,
    without its finest end (FWHM under 2 voxels, or 0.75 x ratio for thin slices), where a scan
    blurred in-plane has lost its own detail and the expert's deblurring would count against it."""
    fine = min(2.0, 0.75 * ratio)
    smooth = lambda fwhm: ndimage.gaussian_filter1d(a, fwhm / 2.3548, axis=axis, mode="nearest")  # noqa: E731
    return smooth(fine) - smooth(ratio)


def check_scan(low, grid, scale, bspline: np.ndarray, order, apply, adapt_steps: int = 0, rng_seed: int = 0) -> Check:
    """`low`: the native scan; `grid`: the output grid; `bspline`: the normalised B-spline image on
    it (array axes); `order`: the canonical order of the native spacing; `apply(block, spacing_zyx,
    model=None)` runs the expert on a block (array axes) whose native spacing is `spacing_zyx`."""
    from ...degrade.resolution import resample_to_grid, thick_slices
    from ...volume import Volume

    spacing_zyx = np.asarray(low.spacing[::-1])
    thick, u = order[0], order[2]
    ratio = spacing_zyx[thick] / spacing_zyx[u]
    if ratio < MIN_RATIO:
        return Check(1.0, f"not checked: no in-plane axis finer than the slices by {MIN_RATIO}x")
    factor = int(min(max(round(ratio), 2), 7))
    window = _block_window(bspline, BLOCK)
    lo = [w.start for w in window]
    origin = np.asarray(grid.origin) + grid.direction @ (np.asarray(lo[::-1]) * np.asarray(grid.spacing))
    block_grid = Volume(np.zeros(tuple(w.stop - w.start for w in window), np.float32), grid.spacing, tuple(origin), grid.direction)
    degraded_native = thick_slices(low, factor, axis=2 - u)
    d = scale.apply(resample_to_grid(degraded_native, block_grid, "bspline").array)
    r = bspline[window]
    d_spacing = spacing_zyx.copy()
    d_spacing[u] = degraded_native.spacing[2 - u]

    model, note = None, ""
    fit = (slice(None),) * 3
    if adapt_steps > 0:
        model, fit = _adapt(d, r, d_spacing, u, ratio, apply, adapt_steps, rng_seed)
        note = f", after {adapt_steps} adaptation steps on half the block"
    correction = apply(d, d_spacing, model) - d
    mask = (r > 0.05)[fit]
    c = _detail(correction, u, ratio)[fit][mask]
    target = _detail(r - d, u, ratio)[fit][mask]
    denominator = float(np.dot(c, c))
    alpha = float(np.clip(np.dot(c, target) / denominator, 0.0, 1.0)) if denominator > 0 else 0.0
    sizes = "x".join(f"{s:.2g}" for s in spacing_zyx[::-1])
    text = (
        f"self-check on the scan's own {spacing_zyx[u]:.2g} mm axis cut to {d_spacing[u]:.2g} mm slices "
        f"(input {sizes} mm): the expert's correction is kept at {alpha:.2f}{note}"
    )
    return Check(alpha, text, model)


def _adapt(d, r, d_spacing, u, ratio, apply, steps, seed):
    """Fine-tune a copy of the expert on patches of the first half of the block (along the axis
    that is neither u nor longest-is-fine); returns (model, the other half's window)."""
    import torch

    split_axis = next(a for a in range(3) if a != u)
    half = d.shape[split_axis] // 2
    train = [slice(None)] * 3
    train[split_axis] = slice(0, half)
    fit = [slice(None)] * 3
    fit[split_axis] = slice(half, None)
    base = apply.model
    model = copy.deepcopy(base).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=ADAPT_LR)
    rng = np.random.default_rng(seed)
    dt, rt = d[tuple(train)], r[tuple(train)]
    p = [min(ADAPT_PATCH, n - n % 4) for n in dt.shape]
    for _ in range(steps):
        corner = [int(rng.integers(0, n - q + 1)) for n, q in zip(dt.shape, p)]
        window = tuple(slice(c, c + q) for c, q in zip(corner, p))
        x = apply.network_input(dt[window], d_spacing, base.in_channels > 1)
        target = torch.from_numpy(np.ascontiguousarray(apply.to_frame(rt[window], d_spacing)))[None, None]
        y = model(torch.from_numpy(x[None]))
        axis = 2 + apply.frame_axis(u, d_spacing)
        loss = (y.diff(dim=axis) - target.diff(dim=axis)).abs().mean() + (y - target).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval(), tuple(fit)
