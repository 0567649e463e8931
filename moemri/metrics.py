"""Image-quality metrics inside a mask: PSNR, 3-D SSIM, Pearson correlation and tissue-class Dice.

All take arrays or Volumes of the same shape and a boolean mask (None = every voxel). In the
benchmarks the mask is the clean reference's head mask, computed once, so every method is scored
on the same voxels.
"""
from __future__ import annotations

import numpy as np

from .volume import Volume

SSIM_SIGMA_VOXELS = 1.5  # Wang et al. 2004: Gaussian window, sigma 1.5 (scikit-image cuts it at 3.5 sigma: 11 wide)
TISSUES = ("CSF", "GM", "WM")  # labels 1, 2, 3: T1 order, darkest to brightest


def reference_peak(reference, mask=None) -> float:
    """PSNR's default data range: the reference's maximum inside the mask. Print it with the PSNR,
    since the PSNR of the same error changes with it."""
    return float(_inside(reference, mask).max())


def psnr(reference, result, mask=None, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB inside `mask`: 10 log10(data_range^2 / MSE), with
    `data_range` = `reference_peak(reference, mask)` when not given. inf when identical."""
    if data_range is None:
        data_range = reference_peak(reference, mask)
    error = _inside(reference, mask) - _inside(result, mask)
    mse = float(np.mean(error * error))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim3d(reference, result, mask=None, data_range: float | None = None) -> float:
    """Mean structural similarity inside `mask`: scikit-image's SSIM map with Wang et al.'s
    settings (Gaussian window of sigma 1.5 voxels, population covariances, K1 = 0.01,
    K2 = 0.03), in 3-D (or 2-D for slices), averaged over the mask's voxels only.

    `data_range` defaults to `reference_peak`. Images are divided by it first, so float32 holds
    the local variances without cancelling.
    """
    from skimage.metrics import structural_similarity

    if data_range is None:
        data_range = reference_peak(reference, mask)
    x = _array(reference).astype(np.float32) / np.float32(data_range)
    y = _array(result).astype(np.float32) / np.float32(data_range)
    # The full map, not scikit-image's mean: that one drops a window's width at every border
    # and averages air with head; the benchmarks score the head mask's voxels.
    _, ssim_map = structural_similarity(
        x, y, data_range=1.0, gaussian_weights=True, sigma=SSIM_SIGMA_VOXELS, use_sample_covariance=False, full=True
    )
    return float(np.mean(ssim_map if mask is None else ssim_map[_mask(mask)], dtype=np.float64))


def pearson(reference, result, mask=None) -> float:
    """Pearson correlation of the voxel values inside `mask` (REMIx's intensity-free score)."""
    return float(np.corrcoef(_inside(reference, mask), _inside(result, mask))[0, 1])


def tissue_classes(array, mask, centroids=None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, centroids): 0 outside `mask`, 1 CSF, 2 GM, 3 WM by nearest intensity centroid.

    Without `centroids`, three are fitted by k-means on the intensities inside `mask` (on their
    histogram, so it takes milliseconds; started from the 20th/50th/80th percentiles, so it is
    deterministic). Pass a reference's centroids to classify another image by the same rule.
    T1 contrast is assumed (CSF darkest, WM brightest); `mask` should be brain-ish: for a head
    with skull and scalp, those would be put in the three classes too.
    """
    values = _inside(array, mask)
    if centroids is None:
        centroids = _kmeans_centroids(values)
    centroids = np.sort(np.asarray(centroids, dtype=np.float64))
    thresholds = (centroids[:-1] + centroids[1:]) / 2  # nearest centroid in 1-D
    labels = np.zeros(_array(array).shape, dtype=np.uint8)
    inside = np.ones(labels.shape, bool) if mask is None else _mask(mask)
    labels[inside] = 1 + np.searchsorted(thresholds, values)
    return labels, centroids


def tissue_dice(reference, result, mask=None) -> dict[str, float]:
    """Dice of CSF, GM and WM between the reference and the result, both classified with the
    reference's centroids inside the same `mask`; 'mean' averages the three."""
    reference_labels, centroids = tissue_classes(reference, mask)
    result_labels, _ = tissue_classes(result, mask, centroids)
    scores = {}
    for label, tissue in enumerate(TISSUES, start=1):
        a, b = reference_labels == label, result_labels == label
        total = int(a.sum()) + int(b.sum())
        scores[tissue] = 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total
    scores["mean"] = float(np.mean([scores[t] for t in TISSUES]))
    return scores


def _kmeans_centroids(values: np.ndarray) -> np.ndarray:
    from .histogram_kmeans import histogram_kmeans

    return histogram_kmeans(values, 3, start_percentiles=[20, 50, 80])


def _array(x) -> np.ndarray:
    return np.asarray(x.array if isinstance(x, Volume) else x)


def _mask(mask) -> np.ndarray:
    return np.asarray(mask.array if isinstance(mask, Volume) else mask, dtype=bool)


def _inside(x, mask) -> np.ndarray:
    a = _array(x)
    return (a.ravel() if mask is None else a[_mask(mask)]).astype(np.float64)
