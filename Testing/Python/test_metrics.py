"""Metrics on cases whose answer is known by hand."""
from __future__ import annotations

import numpy as np
import pytest

from moemri.degrade.noise import add_rician
from moemri.masks import head_mask
from moemri.metrics import pearson, psnr, reference_peak, ssim3d, tissue_classes, tissue_dice


@pytest.fixture(scope="module")
def head_and_mask(small_head):
    return small_head, head_mask(small_head.array)


def test_psnr_of_a_known_additive_error():
    reference = np.zeros((10, 10, 10), np.float32)
    reference[2:8, 2:8, 2:8] = 200.0
    mask = reference > 0
    result = reference + 5.0
    result[~mask] += 100.0  # errors outside the mask do not count
    assert reference_peak(reference, mask) == 200.0
    assert psnr(reference, result, mask) == pytest.approx(10 * np.log10(200.0**2 / 25.0))  # 32.04 dB
    assert psnr(reference, result, mask, data_range=255.0) == pytest.approx(10 * np.log10(255.0**2 / 25.0))
    assert psnr(reference, reference, mask) == float("inf")


def test_ssim_is_one_for_identical_images_and_drops_with_noise(head_and_mask):
    volume, mask = head_and_mask
    assert ssim3d(volume, volume, mask) == pytest.approx(1.0, abs=1e-6)
    scores = [ssim3d(volume, add_rician(volume, level, seed=0)[0], mask) for level in (1, 3, 5, 9)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > scores[3] > 0.0
    # 5 % Rician noise on the 2 mm head: 0.894 inside the head mask (scikit-image's map and the
    # earlier hand-written Gaussian-window SSIM agree to 1e-5 on the whole 1 mm head).
    assert 0.86 < scores[2] < 0.92


def test_ssim_scores_only_the_masked_voxels(head_and_mask):
    volume, mask = head_and_mask
    noisy = add_rician(volume, 5, seed=0)[0]
    # Air around the head has almost no structure, so it drags the unmasked mean far down.
    assert ssim3d(volume, noisy, None) < ssim3d(volume, noisy, mask) - 0.2


def test_ssim_matches_the_formula_for_constant_images():
    # Constant images: no variance, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1) in units of the range.
    a, b, data_range = 100.0, 80.0, 200.0
    x = np.full((12, 12, 12), a, np.float32)
    y = np.full((12, 12, 12), b, np.float32)
    c1 = (0.01 * data_range) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim3d(x, y, None, data_range) == pytest.approx(expected, rel=1e-5)


def test_pearson_of_linear_maps(head_and_mask):
    volume, mask = head_and_mask
    assert pearson(volume, 3.0 * volume.array + 7.0, mask) == pytest.approx(1.0, abs=1e-9)
    assert pearson(volume, -volume.array, mask) == pytest.approx(-1.0, abs=1e-9)


def test_tissue_classes_recover_three_levels():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 4, size=(20, 20, 20))
    image = np.choose(truth - 1, [60.0, 150.0, 220.0]) + rng.normal(0, 5, truth.shape)
    mask = np.ones(truth.shape, bool)
    mask[0] = False
    labels, centroids = tissue_classes(image, mask)
    assert np.allclose(centroids, [60, 150, 220], atol=1.0)
    assert np.array_equal(labels[mask], truth[mask]) and np.all(labels[~mask] == 0)
    relabelled, same = tissue_classes(image + 1.0, mask, centroids)
    assert np.array_equal(same, centroids)  # given centroids are used, not refitted
    assert np.array_equal(relabelled[mask], truth[mask])


def test_tissue_dice_is_one_for_identical_images_and_drops_with_noise(head_and_mask):
    volume, mask = head_and_mask
    same = tissue_dice(volume, volume, mask)
    assert same == {"CSF": 1.0, "GM": 1.0, "WM": 1.0, "mean": 1.0}
    noisy = tissue_dice(volume, add_rician(volume, 9, seed=0)[0], mask)
    assert 0.3 < noisy["mean"] < 0.95


def test_histogram_kmeans_matches_scikit_learn_on_a_real_head(sample_volume):
    """The NumPy histogram k-means (what runs in a stock Slicer) finds scikit-learn's centroids."""
    from sklearn.cluster import KMeans

    from moemri.histogram_kmeans import histogram_kmeans
    from moemri.masks import head_mask

    values = sample_volume.array[head_mask(sample_volume.array)].astype(np.float64)
    counts, edges = np.histogram(values, bins=1024)
    centres = ((edges[:-1] + edges[1:]) / 2)[counts > 0].reshape(-1, 1)
    for k, start in ((3, [20, 50, 80]), (4, np.linspace(10, 90, 4))):
        ours = histogram_kmeans(values, k, start_percentiles=start)
        fit = KMeans(n_clusters=k, init=np.percentile(values, start).reshape(-1, 1), n_init=1).fit(centres, sample_weight=counts[counts > 0])
        assert np.allclose(ours, np.sort(fit.cluster_centers_.ravel()), rtol=1e-3), (ours, fit.cluster_centers_)
