"""One tiler for every method: slices, slabs or 3-D tiles, blended where they overlap.

Each tile is cut with `halo` voxels of context on each side, the model runs on it, the halo is
cropped off again (so a network with a receptive field up to the halo sees exactly what it would
see on the whole volume), and neighbouring tiles are cross-faded with a raised-cosine ramp over
`overlap` voxels so no seam shows. A tile of size 1 along an axis makes the run slice-wise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .progress import Progress, no_progress

TileFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TilePlan:
    tile: tuple[int, int, int]  # core size (z, y, x), halo excluded
    halo: tuple[int, int, int]
    overlap: tuple[int, int, int]
    scale: tuple[int, int, int] = (1, 1, 1)  # output voxels per input voxel, per axis

    def starts(self, shape: Sequence[int]) -> list[list[int]]:
        return [_axis_starts(n, t, o) for n, t, o in zip(shape, self.tile, self.overlap)]

    def count(self, shape: Sequence[int]) -> int:
        return math.prod(len(s) for s in self.starts(shape))


def _axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)  # last tile flush with the end, so no voxel is left out
    return starts


def _ramp(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """Weights along one axis of one tile: 1 inside, a raised cosine up over `overlap` voxels at
    each side that has a neighbour. Strictly positive, so every voxel gets a defined average."""
    w = np.ones(length, dtype=np.float64)
    n = min(overlap, length // 2)
    if n > 0:
        up = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
        if ramp_start:
            w[:n] = up
        if ramp_end:
            w[length - n:] = up[::-1]
    return w


def tiled_apply(
    array: np.ndarray,
    fn: TileFn,
    plan: TilePlan,
    progress: Progress = no_progress,
    out_dtype=np.float32,
) -> np.ndarray:
    """Run `fn` over `array` tile by tile. The last three axes are spatial (z, y, x); leading axes
    (input channels such as a noise map) are passed through whole. `fn` gets (..., z+2h, y+2h, x+2h)
    and returns (C..., (z+2h)*s, (y+2h)*s, (x+2h)*s) with any leading output channels."""
    spatial = array.shape[-3:]
    lead = array.shape[:-3]
    halo, scale = plan.halo, plan.scale
    pad = [(0, 0)] * len(lead) + [(h, h) for h in halo]
    # 'reflect' needs the axis longer than the halo; 'edge' is the safe fallback for thin volumes.
    mode = "reflect" if all(n > h for n, h in zip(spatial, halo)) else "edge"
    padded = np.pad(array, pad, mode=mode) if any(halo) else array

    out_shape = tuple(n * s for n, s in zip(spatial, scale))
    out = None
    weight_sum = np.zeros(out_shape, dtype=np.float64)
    starts = plan.starts(spatial)
    total = math.prod(len(s) for s in starts)
    done = 0
    for z0 in starts[0]:
        for y0 in starts[1]:
            for x0 in starts[2]:
                origin = (z0, y0, x0)
                size = tuple(min(t, n) for t, n in zip(plan.tile, spatial))
                window = tuple(slice(o, o + sz + 2 * h) for o, sz, h in zip(origin, size, halo))
                result = np.asarray(fn(padded[(Ellipsis,) + window]))
                crop = tuple(slice(h * s, (h + sz) * s) for h, sz, s in zip(halo, size, scale))
                result = result[(Ellipsis,) + crop]
                if out is None:
                    out = np.zeros(result.shape[:-3] + out_shape, dtype=np.float64)
                w = np.ones(1)
                for axis, (o, sz, n, ov, s) in enumerate(zip(origin, size, spatial, plan.overlap, scale)):
                    w_axis = _ramp(sz * s, ov * s, ramp_start=o > 0, ramp_end=o + sz < n)
                    w = np.multiply.outer(w, w_axis) if axis else w_axis
                target = tuple(slice(o * s, (o + sz) * s) for o, sz, s in zip(origin, size, scale))
                out[(Ellipsis,) + target] += result * w
                weight_sum[target] += w
                done += 1
                progress(done / total, f"tile {done}/{total}")
    return (out / weight_sum).astype(out_dtype)


def plan_for_budget(
    shape: Sequence[int],
    bytes_per_voxel: float,
    budget_bytes: float,
    halo: int | Sequence[int] = 0,
    overlap: int | Sequence[int] = 0,
    slice_axis: int | None = None,
    scale: Sequence[int] = (1, 1, 1),
) -> TilePlan:
    """The largest tile whose working memory (halo included, `bytes_per_voxel` of activations per
    input voxel) fits the budget. With `slice_axis` the tile is one slice thick along that axis
    (2-D models) and as large as allowed in-plane."""
    halo = (halo,) * 3 if isinstance(halo, int) else tuple(halo)
    overlap = (overlap,) * 3 if isinstance(overlap, int) else tuple(overlap)
    if slice_axis is not None:
        halo = tuple(0 if a == slice_axis else h for a, h in enumerate(halo))
        overlap = tuple(0 if a == slice_axis else o for a, o in enumerate(overlap))
    max_voxels = max(budget_bytes / bytes_per_voxel, 1.0)
    tile = list(shape)
    if slice_axis is not None:
        tile[slice_axis] = 1

    def cost(t):
        return math.prod(n + 2 * h for n, h in zip(t, halo))

    # Halve the longest shrinkable axis until the tile fits; never below 2 x overlap + 8.
    while cost(tile) > max_voxels:
        candidates = [a for a in range(3) if a != slice_axis and tile[a] > 2 * overlap[a] + 8]
        if not candidates:
            break
        a = max(candidates, key=lambda a: tile[a])
        tile[a] = max(tile[a] // 2 + overlap[a] // 2, 2 * overlap[a] + 8)
    return TilePlan(tuple(int(t) for t in tile), halo, overlap, tuple(scale))


def plan_even_tiles(shape: Sequence[int], bytes_per_voxel: float, budget_bytes: float, halo: int, overlap: int, max_per_axis: int = 8) -> TilePlan:
    """The 3-D tiling that runs the fewest voxels (halos included) with each tile in the budget.

    `plan_for_budget` halves axes, which can leave a last tile that almost repeats the one before
    it (three 100-voxel tiles over 193 voxels); spreading the same budget over evenly sized tiles
    does a whole head with about a third less work. Falls back to halving for volumes that need
    more than `max_per_axis` tiles along an axis.
    """
    import itertools

    max_voxels = budget_bytes / bytes_per_voxel
    best = None
    for counts in itertools.product(range(1, max_per_axis + 1), repeat=3):
        tile = [min(n, math.ceil((n + (c - 1) * overlap) / c)) for n, c in zip(shape, counts)]
        per_tile = math.prod(t + 2 * halo for t in tile)
        total = per_tile * math.prod(len(s) for s in TilePlan(tuple(tile), (halo,) * 3, (overlap,) * 3).starts(shape))
        small = any(t < min(n, 2 * overlap + 8) for t, n in zip(tile, shape))
        if per_tile <= max_voxels and not small and (best is None or total < best[0]):
            best = (total, tuple(tile))
    if best is None:
        return plan_for_budget(shape, bytes_per_voxel, budget_bytes, halo=halo, overlap=overlap)
    return TilePlan(best[1], (halo,) * 3, (overlap,) * 3)
