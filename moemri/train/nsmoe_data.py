"""N-SMoE's training and validation pairs: 2-D slices (with their neighbours) of the heads, put
through the stochastic degradation model (moemri/degrade/stochastic.py) per sample.

One batch shares one task draw, so that its output positions are shared:
- `denoise` (x1): Rician (60 %) or the model's draw of Rician, Gaussian or no noise, 0-10 % of the brightest tissue, stationary or
  coil-like;
- `in-plane`: both axes of the slice blurred and reduced by one factor in 1.5-4.2;
- `thick`: one axis of the slice blurred and reduced by 1.5-5 (a thick-slice scan cut across its
  slices, the plane slice-wise inference restores it in);
super-resolution draws keep the noise at 0-2 %. Blur (isotropic or axis-aligned, sigma 0.2-2
high-resolution pixels) and interpolation are drawn by the model. Every sample's crop comes from a
random head, slice orientation and tissue position, with random flips and transposition. The
network gets the noise sigma the model drew and the scale the reduction actually had.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..methods.nsmoe.model import CONTEXT, bspline_at, network_inputs

TASKS = ("denoise", "in-plane", "thick")
TASK_SHARES = (0.35, 0.35, 0.30)
DENOISE_LEVELS = (0.0, 10.0)
SR_LEVELS = (0.0, 2.0)
IN_PLANE_SCALES = (1.5, 4.2)
THICK_SCALES = (1.5, 5.0)
PATCH = 48  # high-resolution pixels per side
DENOISE_RICIAN_SHARE = 0.6


@dataclass
class Head:
    name: str
    array: np.ndarray  # normalised (z, y, x)
    centres: np.ndarray  # (n, 3) tissue voxels a crop may centre on
    reference: float  # brightest tissue, normalised units ("100 %")


def prepare_head(volume, name: str) -> Head:
    from ..degrade.noise import brightest_tissue_intensity
    from ..intensity import normalise
    from ..masks import head_mask

    mask = head_mask(volume.array)
    array, _ = normalise(volume.array, mask)
    return Head(name, np.ascontiguousarray(array, np.float32), np.argwhere(mask & (array > 0.1))[::5], brightest_tissue_intensity(array, mask))


@dataclass
class Batch:
    inputs: np.ndarray  # [n, IN_CHANNELS, h, w]
    base: np.ndarray  # [n, H, W] B-spline of the centre slice at the output positions
    target: np.ndarray  # [n, H, W]
    rows: np.ndarray  # [H] output positions in input pixels
    cols: np.ndarray  # [W]
    task: str


def _crop(head: Head, rng, patch: int) -> np.ndarray:
    """[2 CONTEXT + 1, patch, patch] neighbouring slices around a tissue voxel, random orientation."""
    axis = int(rng.integers(3))
    centre = head.centres[rng.integers(len(head.centres))]
    moved = np.moveaxis(head.array, axis, 0)
    c = np.delete(centre, axis)
    z = int(np.clip(centre[axis], CONTEXT, moved.shape[0] - 1 - CONTEXT))
    lo = [int(np.clip(ci - rng.integers(patch), 0, n - patch)) for ci, n in zip(c, moved.shape[1:])]
    crop = moved[z - CONTEXT : z + CONTEXT + 1, lo[0] : lo[0] + patch, lo[1] : lo[1] + patch]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[:, :, ::-1]
    if rng.random() < 0.5:
        crop = np.swapaxes(crop, 1, 2)
    if rng.random() < 0.5:
        crop = crop[::-1]
    return np.ascontiguousarray(crop)


def draw_task(rng) -> tuple[str, tuple[int, ...], float, tuple[float, float]]:
    """(task, reduced in-plane axes of the [c, h, w] crop, scale, noise level range %)."""
    task = TASKS[rng.choice(len(TASKS), p=TASK_SHARES)]
    if task == "denoise":
        return task, (), 1.0, DENOISE_LEVELS
    if task == "in-plane":
        return task, (1, 2), float(rng.uniform(*IN_PLANE_SCALES)), SR_LEVELS
    return task, (int(rng.integers(1, 3)),), float(rng.uniform(*THICK_SCALES)), SR_LEVELS


def degrade_crop(crop: np.ndarray, reference: float, axes, scale: float, levels, rng, noise: str | None = None):
    """(low [c, h, w], noise sigma) of one stochastic-degradation draw on a stack of slices;
    x1 (no `axes`) keeps only the model's noise (its blur and resize are for super-resolution)."""
    from ..degrade.stochastic import stochastic_degradation

    low, params = stochastic_degradation(crop, rng, reference, axes=axes, scale=scale, level_range=levels, noise=noise)
    return np.maximum(low, 0.0).astype(np.float32), float(params["noise_sigma"])


def output_positions(low: int, high: int) -> np.ndarray:
    """Centres of `high` output pixels in the coordinates of `low` input pixels sharing the extent."""
    return (np.arange(high) + 0.5) * low / high - 0.5


def sample_batch(heads: list[Head], rng, n: int, patch: int = PATCH, task=None, noise: str | None = None) -> Batch:
    name, axes, scale, levels = draw_task(rng) if task is None else task
    low_shape = [patch if a not in axes else max(1, int(round(patch / scale))) for a in (1, 2)]
    rows, cols = output_positions(low_shape[0], patch), output_positions(low_shape[1], patch)
    inputs, bases, targets = [], [], []
    for _ in range(n):
        head = heads[rng.integers(len(heads))]
        crop = _crop(head, rng, patch)
        # Denoising mostly sees Rician noise (MR magnitude): a third of the model's own draws are noise-free.
        kind = noise or ("rician" if name == "denoise" and rng.random() < DENOISE_RICIAN_SHARE else None)
        low, sigma = degrade_crop(crop, head.reference, axes, scale, levels, rng, kind)
        assert low.shape[1:] == tuple(low_shape), (low.shape, low_shape)
        inputs.append(network_inputs(low[None], sigma, patch / low_shape[0], patch / low_shape[1])[0])
        bases.append(bspline_at(low[CONTEXT : CONTEXT + 1], rows, cols)[0])
        targets.append(crop[CONTEXT])
    return Batch(np.stack(inputs), np.stack(bases), np.stack(targets), rows, cols, name)


def validation_batches(head: Head, seed: int = 7, per_task: int = 4, patch: int = 96) -> list[Batch]:
    """Fixed cases of the validation head, Rician noise in all: in-plane x2 and x4 (1 %), thick x2.5
    and x4 (1 %), denoising at 3, 5, 7 and 9 %; drawn once with `seed`."""
    rng = np.random.default_rng(seed)
    tasks = [
        ("in-plane", (1, 2), 2.0, (1.0, 1.0)),
        ("in-plane", (1, 2), 4.0, (1.0, 1.0)),
        ("thick", (1,), 2.5, (1.0, 1.0)),
        ("thick", (2,), 4.0, (1.0, 1.0)),
    ] + [("denoise", (), 1.0, (level, level)) for level in (3.0, 5.0, 7.0, 9.0)]
    return [sample_batch([head], rng, per_task, patch, task, noise="rician") for task in tasks]
