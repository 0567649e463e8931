import numpy as np
from scipy import ndimage

from moemri.tiling import TilePlan, plan_for_budget, tiled_apply


def _mean3(a):
    return ndimage.uniform_filter(a, size=3, mode="reflect")


def test_tiled_local_filter_equals_untiled_away_from_borders(small_head):
    a = small_head.array.astype(np.float32)
    plan = TilePlan(tile=(20, 24, 28), halo=(1, 1, 1), overlap=(6, 6, 6))
    assert plan.count(a.shape) > 8  # really tiled
    tiled = tiled_apply(a, _mean3, plan)
    whole = _mean3(a)
    inner = (slice(1, -1),) * 3
    np.testing.assert_allclose(tiled[inner], whole[inner], rtol=1e-5, atol=1e-3)


def test_blending_is_a_partition_of_unity():
    a = np.random.default_rng(0).normal(size=(33, 40, 47)).astype(np.float32)
    plan = TilePlan(tile=(16, 16, 16), halo=(2, 2, 2), overlap=(5, 5, 5))
    # An identity model must give the input back exactly: the weights sum to one everywhere.
    np.testing.assert_allclose(tiled_apply(a, lambda t: t, plan), a, atol=1e-5)


def test_a_model_without_enough_halo_shows_seams():
    # The test above must be able to fail: a 5x5x5 filter with a halo of 1 differs inside.
    a = np.random.default_rng(1).normal(size=(40, 40, 40)).astype(np.float32)
    plan = TilePlan(tile=(16, 16, 16), halo=(1, 1, 1), overlap=(0, 0, 0))
    tiled = tiled_apply(a, lambda t: ndimage.uniform_filter(t, 5), plan)
    whole = ndimage.uniform_filter(a, 5)
    assert np.abs(tiled[3:-3, 3:-3, 3:-3] - whole[3:-3, 3:-3, 3:-3]).max() > 1e-2


def test_slicewise_with_channels_and_scale():
    a = np.random.default_rng(2).normal(size=(2, 5, 30, 31)).astype(np.float32)  # 2 input channels
    plan = TilePlan(tile=(1, 12, 12), halo=(0, 0, 0), overlap=(0, 4, 4), scale=(1, 2, 2))

    def upsample_sum(t):  # (2, 1, y, x) -> (3, 1, 2y, 2x): three output channels
        s = t.sum(axis=0).repeat(2, axis=-1).repeat(2, axis=-2)
        return np.stack([s, 2 * s, 3 * s])

    out = tiled_apply(a, upsample_sum, plan)
    expected = a.sum(axis=0).repeat(2, axis=-1).repeat(2, axis=-2)
    assert out.shape == (3, 5, 60, 62)
    np.testing.assert_allclose(out[2], 3 * expected, atol=1e-4)


def test_plan_for_budget_fits_a_large_clinical_volume():
    shape = (300, 512, 512)
    budget = 512 * 2**20  # 512 MiB of activations
    plan = plan_for_budget(shape, bytes_per_voxel=64 * 4, budget_bytes=budget, halo=8, overlap=8)
    working = np.prod([t + 2 * h for t, h in zip(plan.tile, plan.halo)]) * 64 * 4
    assert working <= budget
    assert all(t >= 24 for t in plan.tile)
    slices = plan_for_budget(shape, 64 * 4, budget, halo=8, overlap=8, slice_axis=0)
    assert slices.tile[0] == 1 and slices.halo[0] == 0


def test_even_tiles_run_fewer_voxels_than_halving():
    """The even planner (REMIx's 3-D tiles) covers a head with less work than repeated halving."""
    import math

    from moemri.tiling import plan_even_tiles, plan_for_budget

    shape, per_voxel, budget, halo, overlap = (189, 233, 197), 4000.0, 2e9, 8, 8

    def work(plan):
        per_tile = math.prod(t + 2 * h for t, h in zip(plan.tile, plan.halo))
        return per_tile * math.prod(len(s) for s in plan.starts(shape))

    even, halved = plan_even_tiles(shape, per_voxel, budget, halo, overlap), plan_for_budget(shape, per_voxel, budget, halo=halo, overlap=overlap)
    assert math.prod(t + 2 * halo for t in even.tile) * per_voxel <= budget
    assert work(even) < work(halved)
