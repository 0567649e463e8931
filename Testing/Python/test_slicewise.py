"""The shared 2-D slice runner: which axis it holds, and exact output geometry for any scale."""
import numpy as np
import pytest

from moemri.errors import Cancelled, InputError
from moemri.slicewise import SlicePass, plan_passes, planes_containing_thick_axis, run_slicewise
from moemri.volume import Volume, grid_with_spacing

RAMP = np.array([0.7, -1.3, 2.1])  # value per index step along (i, j, k)


def _rotation(deg_x, deg_z):
    ax, az = np.radians(deg_x), np.radians(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


def _ramp_volume(shape_zyx, spacing_xyz, direction):
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape_zyx), indexing="ij")
    array = (RAMP[0] * i + RAMP[1] * j + RAMP[2] * k).astype(np.float32)
    return Volume(array, spacing_xyz, (12.0, -30.5, 7.25), direction)


def _linear(values, positions, axis):
    # Linear interpolation that extrapolates, so a ramp is reproduced exactly everywhere.
    lo = np.clip(np.floor(positions).astype(int), 0, values.shape[axis] - 2)
    t = positions - lo
    a, b = np.take(values, lo, axis=axis), np.take(values, lo + 1, axis=axis)
    shape = [1] * values.ndim
    shape[axis] = -1
    return a + (b - a) * t.reshape(shape)


def _linear_slices(slices, rows, cols):
    return _linear(_linear(slices, rows, 1), cols, 2)[:, None]


def _expected_ramp(volume, grid):
    # Independent of the runner: each grid voxel's physical point, mapped into the volume's index space.
    k, j, i = np.meshgrid(*(np.arange(n) for n in grid.array.shape), indexing="ij")
    ijk = np.stack([i, j, k], -1).reshape(-1, 3).astype(float)
    lps = ijk @ grid.ijk_to_lps()[:3, :3].T + grid.ijk_to_lps()[:3, 3]
    to_index = np.linalg.inv(volume.ijk_to_lps())
    index = lps @ to_index[:3, :3].T + to_index[:3, 3]
    return (index @ RAMP).reshape(grid.array.shape)


@pytest.mark.parametrize(
    "spacing, out_spacing",
    [
        ((1.0, 1.0, 3.0), (1.0, 1.0, 1.2)),  # through-plane x2.5: one pass, plane holds k
        ((2.0, 2.0, 1.0), (0.8, 0.8, 1.0)),  # in-plane x2.5
        ((2.0, 1.5, 3.0), (1.0, 1.0, 1.0)),  # all three change: two passes
        ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),  # denoising: identity
    ],
)
def test_output_is_exact_on_an_oblique_grid_for_any_scale(spacing, out_spacing):
    volume = _ramp_volume((9, 11, 10), spacing, _rotation(23, -37))
    grid = grid_with_spacing(volume, out_spacing)
    out = run_slicewise(volume, grid, _linear_slices, batch=3)
    assert out.shape == (1, *grid.array.shape)
    np.testing.assert_allclose(out[0], _expected_ramp(volume, grid), atol=2e-4)


def test_plans_put_the_thick_axis_in_the_plane():
    thick = _ramp_volume((8, 10, 10), (1.0, 1.0, 4.0), np.eye(3))
    assert plan_passes(thick, grid_with_spacing(thick, (1, 1, 1))) == [SlicePass(1, (0,))]  # coronal planes hold k
    assert planes_containing_thick_axis(thick, grid_with_spacing(thick, (1, 1, 1))) == ["j", "i"]
    assert plan_passes(thick, thick) == [SlicePass(0, ())]  # denoising: the acquired slices
    in_plane = _ramp_volume((8, 10, 10), (2.0, 2.0, 1.0), np.eye(3))
    assert plan_passes(in_plane, grid_with_spacing(in_plane, (1, 1, 1))) == [SlicePass(0, (1, 2))]
    assert planes_containing_thick_axis(in_plane, grid_with_spacing(in_plane, (1, 1, 1)))[0] == "k"
    # A picked axis that changes gets a second pass along an axis already on the output grid.
    assert plan_passes(thick, grid_with_spacing(thick, (1, 1, 1)), "k") == [SlicePass(0, ()), SlicePass(1, (0,))]
    both = _ramp_volume((8, 10, 10), (2.0, 2.0, 4.0), np.eye(3))
    # All three change: hold an axis that changes least (j), then bring it over in the axial planes.
    assert plan_passes(both, grid_with_spacing(both, (1, 1, 1))) == [SlicePass(1, (0, 2)), SlicePass(0, (1,))]


def test_extra_channels_come_back_on_the_grid_and_batches_do_not_matter():
    volume = _ramp_volume((6, 7, 8), (1.0, 1.0, 2.0), _rotation(10, 5))
    grid = grid_with_spacing(volume, (1.0, 1.0, 1.0))

    def with_row_map(slices, rows, cols):
        image = _linear_slices(slices, rows, cols)
        return np.concatenate([image, np.broadcast_to(rows[None, None, :, None], image.shape)], 1)

    one = run_slicewise(volume, grid, with_row_map, channels=2, batch=1)
    many = run_slicewise(volume, grid, with_row_map, channels=2, batch=64)
    np.testing.assert_array_equal(one, many)
    # The plane holds k (rows) and i: channel 1 is each voxel's k position in the input.
    assert one[1, :, 0, 0] == pytest.approx(np.arange(grid.array.shape[0]) * 0.5 + one[1, 0, 0, 0])


def test_bad_requests_are_refused_and_cancel_stops():
    volume = _ramp_volume((4, 5, 6), (1.0, 1.0, 1.0), np.eye(3))
    with pytest.raises(InputError, match="slice_axis"):
        run_slicewise(volume, volume, _linear_slices, slice_axis="z")
    with pytest.raises(ValueError, match="expected"):
        run_slicewise(volume, volume, lambda s, r, c: s)

    def cancel(fraction, stage):
        if fraction > 0:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        run_slicewise(volume, volume, _linear_slices, batch=1, progress=cancel)


def test_context_gives_each_slice_its_neighbours_with_the_ends_repeated():
    volume = _ramp_volume((5, 6, 7), (1.0, 1.0, 1.0), np.eye(3))
    seen = []

    def centre_of_context(slices, rows, cols):
        assert slices.ndim == 4 and slices.shape[1] == 3
        seen.append(slices.copy())
        return slices[:, 1:2]  # the slice itself, at index `context`

    out = run_slicewise(volume, volume, centre_of_context, batch=2, context=1)
    np.testing.assert_array_equal(out[0], volume.array)
    stacked = np.concatenate(seen)  # denoising holds k: slice n between n - 1 and n + 1
    np.testing.assert_array_equal(stacked[0, 0], volume.array[0])  # repeated at the first end
    np.testing.assert_array_equal(stacked[2, 0], volume.array[1])
    np.testing.assert_array_equal(stacked[2, 2], volume.array[3])
    np.testing.assert_array_equal(stacked[4, 2], volume.array[4])  # and at the last
