"""One-dimensional k-means of intensities on their histogram: the classical tissue classes that
the metrics (CSF / GM / WM Dice) and the SMoE's segmentation gate both use.

Lloyd's iterations on the histogram's bin centres weighted by their counts: milliseconds for a
whole head, deterministic (started from fixed percentiles), and plain NumPy, so that it also runs
inside a stock 3D Slicer, which has no scikit-learn.
"""
from __future__ import annotations

import numpy as np

BINS = 1024
ITERATIONS = 100


def histogram_kmeans(values: np.ndarray, classes: int, start_percentiles=None) -> np.ndarray:
    """Sorted centroids of `classes` intensity clusters of `values` (1-D)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if start_percentiles is None:
        start_percentiles = np.linspace(10, 90, classes)
    centroids = np.sort(np.percentile(values, start_percentiles))
    counts, edges = np.histogram(values, bins=BINS)
    keep = counts > 0
    centres, weights = ((edges[:-1] + edges[1:]) / 2)[keep], counts[keep].astype(np.float64)
    if len(centres) < classes:  # a (nearly) constant image has no such classes to find
        return centroids
    for _ in range(ITERATIONS):
        thresholds = (centroids[:-1] + centroids[1:]) / 2
        label = np.searchsorted(thresholds, centres)
        totals = np.bincount(label, weights=weights, minlength=classes)
        sums = np.bincount(label, weights=weights * centres, minlength=classes)
        updated = np.where(totals > 0, sums / np.maximum(totals, 1e-12), centroids)
        if np.allclose(updated, centroids, rtol=0, atol=1e-9 * max(1.0, float(np.abs(centres).max()))):
            break
        centroids = np.sort(updated)
    return np.sort(centroids)
