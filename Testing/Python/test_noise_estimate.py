"""The noise estimator against the true sigma maps that degrade.noise.add_rician returns."""
import numpy as np
import pytest

from moemri.degrade.noise import add_rician
from moemri.masks import head_mask
from moemri.noise_estimate import estimate_noise, given_level, koay_correction

LEVELS = (1, 3, 5, 7, 9)


@pytest.fixture(scope="module")
def slab(sample_volume):
    from moemri.bench.cases import central_slab

    return central_slab(sample_volume, 48.0)


@pytest.fixture(scope="module")
def coarse(slab):
    from moemri.degrade.resolution import coarse_copy

    return coarse_copy(slab, (2, 2, 3), quantise_bits=8)


def _ratios(volume, level, varying, seed):
    noisy, true_sigma = add_rician(volume, level, seed=seed, varying=varying)
    before = noisy.array.copy()
    estimate = estimate_noise(noisy.array, noisy.spacing)
    assert np.array_equal(noisy.array, before), "the estimator modified its input"
    assert estimate.sigma_map.shape == noisy.array.shape and estimate.sigma_map.dtype == np.float32
    mask = head_mask(volume.array)
    ratio = estimate.sigma_map[mask] / true_sigma[mask]
    varies = estimate.varying and true_sigma[mask].std() > 0
    correlation = np.corrcoef(estimate.sigma_map[mask], true_sigma[mask])[0, 1] if varies else 1.0
    return estimate, ratio, correlation


@pytest.mark.parametrize("which", ["slab", "coarse"])
def test_stationary_noise_level_is_found(which, request):
    volume = request.getfixturevalue(which)
    for level in LEVELS:
        estimate, ratio, _ = _ratios(volume, level, False, seed=10 + level)
        # Anatomy leaks into the finest subband at low noise, most on the coarse copy.
        low, high = (0.95, 1.35) if level == 1 else (0.93, 1.08)
        assert low < np.median(ratio) < high, f"{which} {level} %: sigma off by x{np.median(ratio):.3f}"
        if level >= 3:
            assert not estimate.varying, f"{which} {level} %: stationary noise called varying"
            assert abs(estimate.level_percent - level) < 0.08 * level
        meta = estimate.metadata()
        assert meta["noise_estimate"].startswith("auto: wavelet MAD") and meta["noise_level_percent"] > 0


@pytest.mark.parametrize("which", ["slab", "coarse"])
def test_varying_noise_map_follows_the_coil_map(which, request):
    volume = request.getfixturevalue(which)
    for level in LEVELS:
        estimate, ratio, correlation = _ratios(volume, level, True, seed=20 + level)
        assert estimate.varying, f"{which} {level} %: a coil-like map called stationary"
        assert "varying" in estimate.source
        if level == 1:  # anatomy is then a large part of the finest subband
            assert 0.9 < np.median(ratio) < 1.5 and correlation > 0.5
            continue
        p5, p50, p95 = np.percentile(ratio, [5, 50, 95])
        assert 0.93 < p50 < 1.12, f"{which} {level} %: median ratio {p50:.3f}"
        # 8x8x8-voxel windows of 2x2x3 mm cannot follow the coil map as closely as 12 mm ones.
        low, high = (0.8, 1.25) if which == "slab" else (0.7, 1.35)
        assert p5 > low and p95 < high, f"{which} {level} %: ratio 5-95 % {p5:.2f}..{p95:.2f}"
        assert correlation > (0.95 if which == "slab" else 0.8), f"{which} {level} %: correlation {correlation:.3f}"


def test_background_rayleigh_check_agrees_on_stationary_noise(slab):
    noisy, true_sigma = add_rician(slab, 4, seed=3)
    estimate = estimate_noise(noisy.array, noisy.spacing)
    assert estimate.background_sigma == pytest.approx(float(true_sigma.flat[0]), rel=0.03)
    assert "noise_background_percent" in estimate.metadata()


def test_given_level_and_noiseless_and_thin_inputs(slab):
    given = given_level(slab.array, 4.0)
    assert not given.varying and given.level_percent == 4.0 and given.source == "given, stationary"
    assert np.allclose(given.sigma_map, 0.04 * given.reference_intensity)
    clean = estimate_noise(np.zeros((8, 40, 40), np.float32))
    assert clean.level_percent == 0.0 and not clean.sigma_map.any()
    noisy, _ = add_rician(slab, 5, seed=1)
    one_slice = estimate_noise(noisy.array[20:21], noisy.spacing)  # a single 2-D slice
    assert one_slice.sigma_map.shape == (1,) + noisy.array.shape[1:]
    assert 4.0 < one_slice.level_percent < 6.0


def test_koay_correction_limits():
    assert koay_correction(0.0) == pytest.approx(2 - np.pi / 2)  # Rayleigh variance / sigma^2
    assert koay_correction(50.0) == pytest.approx(1.0, abs=1e-3)  # Gaussian at high SNR
