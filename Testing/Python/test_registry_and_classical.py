import numpy as np
import pytest

from moemri import api
from moemri.errors import InputError
from moemri.masks import head_mask
from moemri.methods.registry import all_methods, get_method
from moemri.metrics import psnr
from moemri.volume import Volume


def test_registry_lists_classical_baselines_by_task():
    denoise = {m.info.name for m in all_methods("denoise")}
    superres = {m.info.name for m in all_methods("superres")}
    assert {"nlmeans-rician", "curvature-diffusion", "ants-denoise"} <= denoise
    assert {"linear", "bspline", "windowed-sinc"} <= superres
    for m in all_methods():
        assert m.info.expert_counts and m.info.default_experts in m.info.expert_counts
        assert m.info.title and m.info.description and m.info.reference


def test_unknown_method_and_wrong_expert_count_are_clear_errors(small_head):
    with pytest.raises(InputError, match="no denoise method 'nope'.*nlmeans-rician"):
        get_method("nope", "denoise")
    with pytest.raises(InputError, match="offers 1 experts, not 4"):
        api.denoise(small_head, "curvature-diffusion", experts=4)
    with pytest.raises(InputError, match="has no option itrations"):
        api.denoise(small_head, "curvature-diffusion", options={"itrations": 3})


@pytest.mark.parametrize("name", ["nlmeans-rician", "curvature-diffusion"])
def test_classical_denoisers_improve_a_real_noisy_head(small_head, name):
    from moemri.degrade.noise import add_rician

    noisy, _ = add_rician(small_head, 5, seed=3, varying=False)
    result = api.denoise(noisy, name)
    mask = head_mask(small_head.array)
    assert result.image.same_geometry(noisy)
    gain = psnr(small_head.array, result.image.array, mask) - psnr(small_head.array, noisy.array, mask)
    assert gain > 1.0, f"{name} gained only {gain:.2f} dB"
    assert result.metadata["method"] == name and result.metadata["seconds"] > 0


def test_ants_denoise_runs_when_installed(small_head):
    method = get_method("ants-denoise")
    if method.availability() is not None:
        pytest.skip(method.availability())
    from moemri.degrade.noise import add_rician

    crop = Volume(small_head.array[20:40], small_head.spacing, small_head.origin, small_head.direction)
    noisy, _ = add_rician(crop, 5, seed=4, varying=False)
    out = api.denoise(noisy, "ants-denoise").image
    mask = head_mask(crop.array)
    assert psnr(crop.array, out.array, mask) > psnr(crop.array, noisy.array, mask) + 1.0


@pytest.mark.parametrize("name", ["linear", "bspline", "windowed-sinc"])
def test_resamplers_restore_thick_slices_on_the_reference_grid(sample_volume, name):
    from moemri.bench.superres import make_case

    # A central block of the real head keeps windowed sinc (the slow one) to a few seconds.
    head = Volume(sample_volume.array[60:108, 50:170, 40:160], sample_volume.spacing, sample_volume.origin, sample_volume.direction)
    reference, low = make_case(head, "thick", 4)
    result = api.superres(low, name, options={"spacing": (1.0, 1.0, 1.0)}).image
    # Same extent, no shift: the restored grid is exactly the reference grid.
    assert result.same_geometry(reference, atol=1e-6)
    mask = head_mask(reference.array)
    nearest = np.repeat(low.array, 4, axis=0)  # what a viewer shows without interpolation
    assert psnr(reference.array, result.array, mask) > psnr(reference.array, nearest, mask) + 0.5


def test_superres_grid_keeps_oblique_orientation_and_centre():
    from moemri.volume import grid_with_spacing

    angle = np.deg2rad(25)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) @ np.diag([1, -1, 1])
    low = Volume(np.zeros((10, 40, 30), np.float32), (0.9, 0.9, 5.0), (12.0, -30.0, 4.0), direction)
    grid = grid_with_spacing(low, (1.0, 1.0, 1.0))
    assert grid.array.shape == (50, 36, 27)
    np.testing.assert_allclose(grid.direction, direction)
    np.testing.assert_allclose(grid.physical_extent_corners().mean(0), low.physical_extent_corners().mean(0), atol=1e-9)
