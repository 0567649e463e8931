"""The two gates of the sparse MoE denoiser (Deng and Campbell, arXiv:2501.14198): which expert
denoises which part of a slice.

Patch gate (paper section 3.1.1 and 3.2): the slice is cut into 48x48 patches at stride 20, each
patch is described by a feature vector, reduced by PCA and assigned to the nearest of K k-means
centroids found on training patches. Departure: the paper's features are those of an ImageNet
ResNet-18, which cannot be had offline; here they are the backbone's own trunk activations pooled
over the patch (the mean and standard deviation of each channel), so they describe intensity,
texture and noise as the denoiser itself sees them.

Segmentation gate (section 3.1.2): the paper cuts patches into SAM/MedSAM regions. Offline, a
classical segmentation stands in: the volume is smoothed (Gaussian, 1 voxel) and its head voxels
are put in 4 intensity classes by k-means, darkest first (roughly air cavities, bone and CSF; grey
matter; white matter; fat and vessels). The air around the head joins the darkest class. One
expert per class; each voxel is denoised by its class's expert.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

PATCH = 48
STRIDE = 20
SEGMENT_CLASSES = 4
SEGMENT_SMOOTHING_VOXELS = 1.0


def patch_starts(length: int, patch: int = PATCH, stride: int = STRIDE) -> np.ndarray:
    """Patch origins along one axis: every `stride`, the last flush with the end; one patch over
    the whole axis when it is shorter than a patch."""
    if length <= patch:
        return np.array([0])
    starts = list(range(0, length - patch, stride))
    starts.append(length - patch)
    return np.array(starts)


def pooled_features(features: torch.Tensor, patch: int = PATCH, stride: int = STRIDE, step: int = 2):
    """Per-patch mean and std of each channel: (N, C, H, W) -> (N, ny, nx, 2C), the patch origins
    (ys, xs) and the patch extent. The statistics are taken on every `step`-th row and column (a
    48x48 patch still gives 576 samples; a quarter of the memory traffic), as products with 0/1
    patch-membership matrices: a few BLAS calls instead of a pass per patch."""
    n, c, h, w = features.shape
    ys, xs = patch_starts(h, patch, stride), patch_starts(w, patch, stride)
    ph, pw = min(patch, h), min(patch, w)

    def membership(starts, extent, length):
        sampled = np.arange(0, length, step)
        inside = (sampled[None, :] >= starts[:, None]) & (sampled[None, :] < starts[:, None] + extent)
        return torch.from_numpy(inside / inside.sum(1, keepdims=True)).float().to(features.device)

    rows, columns = membership(ys, ph, h), membership(xs, pw, w).T
    # (N, H, W, C) is a free view of channels-last features; rows x (W C) is then one matmul.
    f = features.float().permute(0, 2, 3, 1)[:, ::step, ::step].contiguous()
    hs, ws = f.shape[1:3]
    sums = []
    for values in (f, f * f):
        banded = torch.matmul(rows, values.reshape(n, hs, ws * c)).reshape(n, len(ys), ws, c)
        sums.append(torch.einsum("nywc,wx->ncyx", banded, columns))  # (N, C, ny, nx)
    mean, mean_sq = sums
    std = torch.sqrt(torch.clamp(mean_sq - mean * mean, min=0.0))
    pooled = torch.cat([mean, std], dim=1).permute(0, 2, 3, 1)
    return pooled, ys, xs, (ph, pw)


@dataclass
class PatchGate:
    """Standardise, project on the PCA components, take the nearest centroid (0-based labels)."""

    feature_mean: np.ndarray  # (D,)
    feature_std: np.ndarray  # (D,)
    components: np.ndarray  # (d, D)
    centroids: np.ndarray  # (K, d)

    @property
    def experts(self) -> int:
        return len(self.centroids)

    def project(self, pooled: np.ndarray) -> np.ndarray:
        return ((pooled - self.feature_mean) / self.feature_std) @ self.components.T

    def assign(self, pooled) -> np.ndarray:
        pooled = np.asarray(pooled, dtype=np.float64)
        z = self.project(pooled.reshape(-1, pooled.shape[-1]))
        distances = ((z[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        return distances.argmin(1).reshape(pooled.shape[:-1])

    def tensors(self, prefix: str = "gate.") -> dict[str, torch.Tensor]:
        return {prefix + k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in vars(self).items()}

    @classmethod
    def from_tensors(cls, state: dict, prefix: str = "gate.") -> "PatchGate":
        return cls(**{k: state[prefix + k].numpy() for k in ("feature_mean", "feature_std", "components", "centroids")})


def fit_patch_gate(descriptors: np.ndarray, experts: int, components: int, seed: int) -> tuple[PatchGate, np.ndarray]:
    """PCA + k-means over training patch descriptors (N, D). Returns the gate and the labels."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    descriptors = np.asarray(descriptors, dtype=np.float64)
    mean = descriptors.mean(0)
    std = descriptors.std(0) + 1e-6
    z = (descriptors - mean) / std
    pca = PCA(n_components=min(components, z.shape[1]), random_state=seed).fit(z)
    projected = pca.transform(z)  # PCA centres z again; z is already centred
    kmeans = KMeans(n_clusters=experts, n_init=10, random_state=seed).fit(projected)
    gate = PatchGate(mean, std, pca.components_, kmeans.cluster_centers_)
    return gate, gate.assign(descriptors)


def patch_weights(labels: torch.Tensor, ys, xs, extent, shape, experts: int) -> torch.Tensor:
    """How many of the patches covering each pixel went to each expert, as fractions:
    (N, ny, nx) labels -> (N, K, H, W). Averaging the patches' outputs over their overlap (paper,
    eq. 7) is then sum_k weight_k x expert_k(pixel), since all experts share one trunk. Computed
    as rows x one-hot labels x columns with 0/1 patch-membership matrices."""
    h, w = shape
    ph, pw = extent
    rows = torch.zeros((h, len(ys)), device=labels.device)
    columns = torch.zeros((len(xs), w), device=labels.device)
    for i, y in enumerate(ys):
        rows[y : y + ph, i] = 1.0
    for j, x in enumerate(xs):
        columns[j, x : x + pw] = 1.0
    onehot = torch.nn.functional.one_hot(labels.long(), experts).permute(0, 3, 1, 2).float()  # (N, K, ny, nx)
    counts = rows @ onehot @ columns
    coverage = rows.sum(1)[:, None] * columns.sum(0)[None, :]
    return counts / coverage


def segment_classes(array: np.ndarray, mask: np.ndarray, centroids=None, spacing_xyz=None) -> tuple[np.ndarray, np.ndarray]:
    """(classes uint8 1..SEGMENT_CLASSES, centroids): k-means intensity classes of the smoothed
    image in the head, darkest first; outside the head, class 1. Deterministic (k-means on the
    histogram, started from fixed percentiles)."""
    from ...histogram_kmeans import histogram_kmeans

    del spacing_xyz  # smoothing is in voxels: the classes follow what the network sees per voxel
    smooth = ndimage.gaussian_filter(np.asarray(array, dtype=np.float32), SEGMENT_SMOOTHING_VOXELS)
    mask = np.asarray(mask, dtype=bool)
    values = smooth[mask] if mask.any() else smooth.ravel()
    if centroids is None:
        centroids = histogram_kmeans(values, SEGMENT_CLASSES)
    centroids = np.sort(np.asarray(centroids, dtype=np.float64))
    thresholds = (centroids[:-1] + centroids[1:]) / 2
    classes = np.ones(smooth.shape, np.uint8)
    classes[mask] = 1 + np.searchsorted(thresholds, smooth[mask]).astype(np.uint8)
    return classes, centroids
