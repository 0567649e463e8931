"""Degradations: determinism, noise levels as documented, and low-resolution geometry that puts
every structure at the right physical position."""
from __future__ import annotations

import numpy as np
import pytest

from moemri.degrade.noise import (
    add_rician,
    bias_field,
    brightest_tissue_intensity,
    coil_sensitivity_noise_map,
    rician_noise,
)
from moemri.degrade.resolution import (
    blur_decimate,
    coarse_copy,
    kspace_truncation,
    random_acquisition,
    resample_to_grid,
    thick_slices,
)
from moemri.degrade.stochastic import stochastic_degradation
from moemri.masks import head_mask
from moemri.volume import Volume, grid_with_spacing

RAYLEIGH_MEAN_PER_SIGMA = np.sqrt(np.pi / 2)


def centre_lps(volume: Volume) -> np.ndarray:
    return volume.ijk_to_lps()[:3] @ np.append((np.asarray(volume.size_xyz) - 1) / 2.0, 1.0)


def lps_of_index(volume: Volume, zyx) -> np.ndarray:
    return volume.ijk_to_lps()[:3] @ np.append(np.asarray(zyx, dtype=float)[::-1], 1.0)


def rotation(axis, degrees) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.deg2rad(degrees)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


@pytest.fixture
def tilted_grid():
    """Anisotropic, oblique, off-centre, LPS-flipped: any axis or sign mix-up shows."""
    direction = rotation((1, 2, 3), 20) @ np.diag([-1.0, -1.0, 1.0])
    return Volume(np.zeros((36, 48, 48), np.float32), (0.9, 1.1, 1.3), (10.0, -20.0, 30.0), direction)


@pytest.fixture
def cube_phantom():
    """A 200-valued cube in air: brightest tissue 200 exactly, and a large zero background."""
    array = np.zeros((60, 60, 60), np.float32)
    array[15:45, 15:45, 15:45] = 200.0
    return Volume(array)


# --- masks ---------------------------------------------------------------------------------


def test_head_mask_covers_the_sample_head(sample_volume):
    mask = head_mask(sample_volume.array)
    litres = mask.sum() * sample_volume.voxel_volume_mm3 * 1e-6
    # The shipped MNI152 2009a sample is skull-stripped: the mask is the intracranial volume,
    # measured 1.84 L (MNI space is ~1.2x larger than an average adult brain).
    assert 1.5 < litres < 2.0
    noisy, _ = add_rician(sample_volume, 9, seed=0)
    noisy_mask = head_mask(noisy.array)
    dice = 2 * (mask & noisy_mask).sum() / (mask.sum() + noisy_mask.sum())
    assert dice > 0.98


# --- noise ---------------------------------------------------------------------------------


def test_add_rician_is_deterministic(small_head):
    a, sigma_a = add_rician(small_head, 3, seed=1, varying=True, bias=0.2)
    b, sigma_b = add_rician(small_head, 3, seed=1, varying=True, bias=0.2)
    c, _ = add_rician(small_head, 3, seed=2, varying=True, bias=0.2)
    assert np.array_equal(a.array, b.array) and np.array_equal(sigma_a, sigma_b)
    assert not np.array_equal(a.array, c.array)
    assert a.same_geometry(small_head)


def test_stationary_rician_level_in_background_and_flat_region(cube_phantom):
    noisy, sigma_map = add_rician(cube_phantom, 5, seed=3)
    sigma = 0.05 * 200.0
    assert np.allclose(sigma_map, sigma)
    air = noisy.array[cube_phantom.array == 0]
    assert air.mean() == pytest.approx(sigma * RAYLEIGH_MEAN_PER_SIGMA, rel=0.02)  # Rayleigh
    flat = noisy.array[20:40, 20:40, 20:40]
    assert flat.std() == pytest.approx(sigma, rel=0.03)  # SNR 20: Rician is close to Gaussian


def test_varying_rician_follows_its_sigma_map(cube_phantom):
    noisy, sigma_map = add_rician(cube_phantom, 5, seed=4, varying=True)
    mask = head_mask(cube_phantom.array)
    assert sigma_map[mask].mean() == pytest.approx(10.0, rel=1e-3)  # level = the head's average
    air = cube_phantom.array == 0
    # Rayleigh samples divided by their own sigma have mean sqrt(pi/2) wherever sigma is.
    assert (noisy.array[air] / sigma_map[air]).mean() == pytest.approx(RAYLEIGH_MEAN_PER_SIGMA, rel=0.02)


@pytest.mark.parametrize("shape", [(40, 48, 44), (64, 64)])
def test_coil_map_mean_range_and_smoothness(shape):
    noise_map = coil_sensitivity_noise_map(shape, rng=5)
    assert noise_map.mean() == pytest.approx(1.0, abs=1e-3)
    assert 0.4 <= noise_map.min() and noise_map.max() <= 2.0
    assert noise_map.max() / noise_map.min() > 1.5  # it does vary
    # Smooth on the scale of the field of view: no voxel step above 12 / (smallest side).
    steepest = max(np.abs(np.diff(noise_map, axis=a)).max() for a in range(len(shape)))
    assert steepest * min(shape) < 12
    assert np.array_equal(noise_map, coil_sensitivity_noise_map(shape, rng=5))
    assert not np.array_equal(noise_map, coil_sensitivity_noise_map(shape, rng=6))


def test_bias_field_mean_and_strength():
    field = bias_field((30, 40, 50), rng=0, strength=0.4)
    assert field.mean() == pytest.approx(1.0, abs=1e-4)
    assert 0.3 < field.max() - field.min() <= 0.41
    assert np.all(bias_field((30, 40, 50), rng=0, strength=0.0) == 1.0)


def test_noise_level_is_refused_outside_its_range(small_head):
    for level in (-1, 25):
        with pytest.raises(ValueError):
            rician_noise(small_head, level, rng=0)
    assert rician_noise(small_head, 0, rng=0).same_geometry(small_head)


def test_brightest_tissue_ignores_a_few_bright_voxels(cube_phantom):
    array = cube_phantom.array.copy()
    array[30, 30, 30:35] = 5000.0  # a vessel or spike
    assert brightest_tissue_intensity(array) == pytest.approx(200.0)


# --- resolution: geometry --------------------------------------------------------------------


@pytest.mark.parametrize("degrade", [kspace_truncation, blur_decimate])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_in_plane_degradations_keep_extent_and_positions(tilted_grid, degrade, factor):
    array = np.zeros(tilted_grid.array.shape, np.float32)
    # A bright block exactly one coarse voxel wide: its centre is the centre of coarse voxel (5, 4).
    block_y, block_x = slice(5 * factor, 6 * factor), slice(4 * factor, 5 * factor)
    array[12, block_y, block_x] = 1000.0
    low = degrade(tilted_grid.with_array(array), factor)

    assert low.spacing[2] == tilted_grid.spacing[2]
    assert low.spacing[0] == pytest.approx(factor * tilted_grid.spacing[0])
    assert np.allclose(centre_lps(low), centre_lps(tilted_grid), atol=1e-9)
    expected_origin = np.asarray(tilted_grid.origin) + tilted_grid.direction @ (
        (np.asarray(low.spacing) - tilted_grid.spacing) / 2
    )
    assert np.allclose(low.origin, expected_origin, atol=1e-9)
    assert grid_with_spacing(low, tilted_grid.spacing).same_geometry(tilted_grid)

    peak = np.unravel_index(np.argmax(low.array), low.array.shape)
    assert peak == (12, 5, 4)
    block_centre = (12, 5 * factor + (factor - 1) / 2, 4 * factor + (factor - 1) / 2)
    assert np.allclose(lps_of_index(low, peak), lps_of_index(tilted_grid, block_centre), atol=1e-6)
    row, column = low.array[12, 5, :], low.array[12, :, 4]
    assert row[3] == pytest.approx(row[5], rel=1e-4, abs=1e-3)  # symmetric about the peak
    assert column[4] == pytest.approx(column[6], rel=1e-4, abs=1e-3)


def test_kspace_truncation_shifts_samples_to_coarse_centres(tilted_grid):
    n = tilted_grid.array.shape[2]
    frequency = 3  # cycles per field of view, well inside the kept band
    i = np.arange(n)
    array = np.broadcast_to(100 + 50 * np.cos(2 * np.pi * frequency * i / n), tilted_grid.array.shape)
    low = kspace_truncation(tilted_grid.with_array(array.astype(np.float32)), 3, axes=("x",))
    m = low.array.shape[2]
    coarse_centres = np.arange(m) * n / m + (n / m - 1) / 2  # in thin-voxel units
    expected = 100 + 50 * np.cos(2 * np.pi * frequency * coarse_centres / n)
    assert np.allclose(low.array[0, 0], expected, atol=1e-3)
    assert low.array.shape[:2] == tilted_grid.array.shape[:2]


@pytest.mark.parametrize("axis", ["z", 0])
def test_thick_slices_position_and_profile(tilted_grid, axis):
    ijk = {"z": 2, 0: 0}[axis]
    array_axis = 2 - ijk
    factor = 3
    array = np.zeros(tilted_grid.array.shape, np.float32)
    index = [7, 8, 9]
    index[array_axis] = 3 * 4 + 1  # the middle thin slice of thick slice 4
    array[tuple(index)] = 900.0
    thick = thick_slices(tilted_grid.with_array(array), factor, axis=axis)

    assert thick.spacing[ijk] == pytest.approx(factor * tilted_grid.spacing[ijk])
    expected_origin = np.asarray(tilted_grid.origin) + tilted_grid.direction[:, ijk] * tilted_grid.spacing[ijk]
    assert np.allclose(thick.origin, expected_origin, atol=1e-9)
    peak = np.unravel_index(np.argmax(thick.array), thick.array.shape)
    assert thick.array[peak] == pytest.approx(300.0)  # box profile: mean of 3 thin slices
    assert np.allclose(lps_of_index(thick, peak), lps_of_index(tilted_grid, index), atol=1e-6)
    assert np.count_nonzero(thick.array) == 1
    if tilted_grid.array.shape[array_axis] % factor == 0:
        assert np.allclose(centre_lps(thick), centre_lps(tilted_grid), atol=1e-9)


def test_thick_slices_with_gap_skip_the_gap(tilted_grid):
    thin = tilted_grid.spacing[2]
    array = np.zeros(tilted_grid.array.shape, np.float32)
    array[6, 5, 5] = 100.0  # first thin slice of thick slice 2 (period 3 thin slices)
    array[8, 5, 5] = 100.0  # in the gap after thick slice 2
    thick = thick_slices(tilted_grid.with_array(array), 2, gap_mm=thin)
    assert thick.spacing[2] == pytest.approx(3 * thin)
    assert thick.array.shape[0] == (36 - 2) // 3 + 1
    assert thick.array[2, 5, 5] == pytest.approx(50.0)
    assert thick.array.sum() == pytest.approx(50.0)


def test_thick_slices_of_a_constant_along_z_image_is_exact(small_head):
    plane = small_head.array[30]
    array = np.broadcast_to(plane, small_head.array.shape).copy()
    for factor in range(1, 8):
        thick = thick_slices(small_head.with_array(array), factor)
        assert thick.array.shape[0] == array.shape[0] // factor
        assert np.abs(thick.array - plane).max() < 1e-4


def test_factors_out_of_range_are_refused(small_head):
    with pytest.raises(ValueError):
        thick_slices(small_head, 8)
    with pytest.raises(ValueError):
        kspace_truncation(small_head, 5)
    with pytest.raises(ValueError):
        blur_decimate(small_head, 1)


def test_kspace_truncation_keeps_units(small_head):
    low = kspace_truncation(small_head, 2)
    assert low.array.mean() == pytest.approx(small_head.array.mean(), rel=1e-4)


# --- resampling and coarse copies -------------------------------------------------------------


def test_resample_to_own_grid_is_identity(small_head):
    for interpolator in ("linear", "bspline", "nearest"):
        same = resample_to_grid(small_head, small_head, interpolator)
        assert same.same_geometry(small_head)
        assert np.allclose(same.array, small_head.array, atol=1e-3)
    labels = small_head.with_array((small_head.array > 100).astype(np.uint8))
    assert resample_to_grid(labels, small_head, "nearest").array.dtype == np.uint8
    with pytest.raises(ValueError):
        resample_to_grid(small_head, small_head, "cubic")


def test_windowed_sinc_resampling_runs(small_head):
    patch = Volume(np.ascontiguousarray(small_head.array[20:36, 30:46, 30:46]), small_head.spacing)
    finer = grid_with_spacing(patch, (1.0, 1.0, 1.0))
    up = resample_to_grid(patch, finer, "windowed_sinc")
    assert up.same_geometry(finer) and np.isfinite(up.array).all()


def test_coarse_copy_geometry_and_quantisation(small_head):
    coarse = coarse_copy(small_head, (4.0, 4.0, 6.0), quantise_bits=8)
    assert coarse.same_geometry(grid_with_spacing(small_head, (4.0, 4.0, 6.0)))
    assert len(np.unique(coarse.array)) <= 256
    assert coarse.array.mean() == pytest.approx(small_head.array.mean(), rel=0.05)


# --- REMIx-style acquisitions -------------------------------------------------------------------


@pytest.fixture(scope="module")
def head_1mm(sample_volume):
    """The central part of the real 1 mm sample: real anatomy at the resolution REMIx degrades."""
    array = np.ascontiguousarray(sample_volume.array[40:140, 50:180, 40:150])
    origin = lps_of_index(sample_volume, (40, 50, 40))
    return Volume(array, sample_volume.spacing, tuple(origin), sample_volume.direction, "head_1mm")


def test_random_acquisition_bins_geometry_and_determinism(head_1mm):
    correlations = []
    for bin_ in (1, 4, 7):
        acquisition = random_acquisition(head_1mm, bin_, rng=11)
        assert bin_ - 0.5 <= acquisition.voxel_volume_mm3 < bin_ + 0.5
        assert np.allclose(acquisition.native.spacing, acquisition.spacing)
        assert np.allclose(acquisition.native.direction, acquisition.rotation @ head_1mm.direction)
        angle = np.degrees(np.arccos(np.clip((np.trace(acquisition.rotation) - 1) / 2, -1, 1)))
        assert angle <= 10.0 + 1e-9
        assert acquisition.on_input_grid.same_geometry(head_1mm)
        head = head_mask(head_1mm.array)
        assert np.mean(acquisition.on_input_grid.array[head] > 0) > 0.999  # the native grid covers it
        r = np.corrcoef(acquisition.on_input_grid.array[head], head_1mm.array[head])[0, 1]
        correlations.append(r)
    # Same seed: the same kind of scan and rotation, only the voxel volume grows.
    assert correlations[0] > correlations[1] > correlations[2]
    again = random_acquisition(head_1mm, 7, rng=11)
    assert np.array_equal(again.on_input_grid.array, acquisition.on_input_grid.array)
    other = random_acquisition(head_1mm, 7, rng=12)
    assert not np.allclose(other.spacing, acquisition.spacing)


def test_random_acquisition_spacing_draws_stay_in_their_bin(small_head):
    tiny = Volume(np.ascontiguousarray(small_head.array[24:40, 40:56, 36:52]), (1.0, 1.0, 1.0))
    rng = np.random.default_rng(0)
    for bin_ in range(1, 8):
        for _ in range(5):
            spacing = random_acquisition(tiny, bin_, rng).spacing
            assert bin_ - 0.5 <= np.prod(spacing) < bin_ + 0.5
    with pytest.raises(ValueError):
        random_acquisition(tiny, 8, rng)


# --- N-SMoE stochastic degradation ------------------------------------------------------------


def test_stochastic_degradation_is_deterministic(small_head):
    slice_2d = small_head.array[32]
    a, params_a = stochastic_degradation(slice_2d, rng=3)
    b, params_b = stochastic_degradation(slice_2d, rng=3)
    c, _ = stochastic_degradation(slice_2d, rng=4)
    assert np.array_equal(a, b) and params_a == params_b
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_stochastic_degradation_params_cover_their_ranges(small_head):
    slice_2d = small_head.array[32]
    rng = np.random.default_rng(0)
    draws = [stochastic_degradation(slice_2d, rng, reference_intensity=200.0)[1] for _ in range(150)]
    assert {d["blur"] for d in draws} == {"isotropic", "anisotropic"}
    sigmas = np.concatenate([d["blur_sigma_pixels"] for d in draws])
    assert 0.2 <= sigmas.min() < 0.4 and 1.8 < sigmas.max() <= 2.0
    scales = np.array([d["scale"] for d in draws])
    assert 1.0 <= scales.min() < 1.3 and 3.7 < scales.max() <= 4.0
    assert {d["noise"] for d in draws} == {"none", "gaussian", "rician"}
    levels = np.array([d["noise_level_percent"] for d in draws if d["noise"] != "none"])
    assert 0.0 <= levels.min() < 1.0 and 8.0 < levels.max() <= 9.0
    assert {d["noise_varying"] for d in draws if d["noise"] != "none"} == {True, False}
    assert {d["interpolation_order"] for d in draws} == {1, 3}
    for d in draws:
        assert d["noise_sigma"] == pytest.approx(d["noise_level_percent"] / 100 * 200.0)
        expected_shape = tuple(max(1, round(n / d["scale"])) for n in slice_2d.shape)
        assert d["output_shape"] == expected_shape


def test_stochastic_degradation_of_a_volume_keeps_its_field_of_view(small_head):
    degraded, params = stochastic_degradation(small_head, rng=7)
    assert isinstance(degraded, Volume) and degraded.array.shape == params["output_shape"]
    assert np.allclose(centre_lps(degraded), centre_lps(small_head), atol=1e-9)
    assert grid_with_spacing(degraded, small_head.spacing).same_geometry(small_head)


def test_separable_windowed_sinc_agrees_with_itk_on_a_real_head(sample_volume):
    # The fast path for same-direction grids uses the same Hamming-windowed sinc (radius 3) one
    # axis at a time, with weights normalised to 1; ITK's 3-D kernel is not normalised, so the two
    # differ slightly at sharp edges but must agree closely overall.
    import SimpleITK as sitk

    from moemri.degrade.resolution import resample_to_grid, thick_slices
    from moemri.io import volume_to_sitk
    from moemri.metrics import pearson
    from moemri.volume import Volume, grid_with_spacing

    head = Volume(sample_volume.array[60:100, 60:140, 50:130], sample_volume.spacing, sample_volume.origin, sample_volume.direction)
    low = thick_slices(head, 4)
    grid = grid_with_spacing(low, (1.0, 1.0, 1.0))
    fast = resample_to_grid(low, grid, interpolator="windowed_sinc").array
    itk = sitk.GetArrayFromImage(
        sitk.Resample(volume_to_sitk(low), volume_to_sitk(grid), sitk.Transform(), sitk.sitkHammingWindowedSinc, 0.0, sitk.sitkFloat32)
    )
    assert pearson(itk, fast) > 0.999
    assert np.abs(itk - fast).mean() < 0.01 * itk.max()
    constant = low.with_array(np.full(low.array.shape, 7.0, np.float32))
    np.testing.assert_allclose(resample_to_grid(constant, grid, interpolator="windowed_sinc").array, 7.0, rtol=1e-5)
