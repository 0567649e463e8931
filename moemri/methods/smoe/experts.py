"""The mixture at inference: one shared front per slice, K expert tails, a gate that weighs them.

Deng and Campbell (2025) denoise every 48x48 patch (stride 20) with the expert its gate picks and averages the
patch outputs where they overlap (eq. 7). Here every expert is the shared front with its own tail
(tails.py), so the front runs once per slice and the overlap average becomes, per pixel,
sum_k (share of the covering patches routed to k) x tail_k, each tail run only where its share is
non-zero. The gate sees anatomy, not noise (anatomy.py). Departure: the front sees the whole slice
instead of each patch cut out with zero padding, so patch borders carry no padding artefacts.

For the benchmark's gate ablation (Deng and Campbell 2025, Table 4) the same mixture can route every patch to
one expert, to a random expert, or to the best expert in hindsight (the oracle, which reads the
clean image): `ablation`.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from .anatomy import GateNet, patch_anatomy
from .dncnn import DnCNN
from .gate import PatchGate, patch_weights, pooled_features
from .tails import ExpertTails

GateKind = Literal["single", "patch", "segment"]
Output = Literal["image", "labels", "weights"]
# Channels of a tile: the noisy image, the sigma map, the segmentation class, the depth below the
# head's surface (mm), and for the oracle only, the clean image.
IMAGE, SIGMA, CLASSES, DEPTH, CLEAN = range(5)


def majority(weights: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) -> (N, H, W) label 1..K of the largest weight, ties to the lower label (a loop
    over K is several times faster than torch.argmax along a middle axis on the CPU)."""
    best, label = weights[:, 0], torch.ones_like(weights[:, 0], dtype=torch.int64)
    for k in range(1, weights.shape[1]):
        better = weights[:, k] > best
        best = torch.where(better, weights[:, k], best)
        label = torch.where(better, k + 1, label)
    return label


class SliceMixture:
    """Denoises stacks of normalised slices: `denoise_tile` is the shared tiler's tile function."""

    def __init__(self, front, tails: ExpertTails, kind: GateKind, gate: GateNet | PatchGate | None, radius: int, device: torch.device):
        self.kind, self.gate, self.device, self.radius = kind, gate, device, radius
        self.output: Output = "labels"
        self.ablation: None | tuple = None  # ("expert", k) | ("random", seed) | ("oracle",)
        self.front = front.to(device).eval()
        self.tails = tails.to(device).eval()
        self.experts = tails.experts
        self.channels_last = device.type == "cpu"  # oneDNN's fast path on CPUs
        if self.channels_last:
            self.front = self.front.to(memory_format=torch.channels_last)
        self._random = None

    @torch.inference_mode()
    def denoise_tile(self, tile: np.ndarray) -> np.ndarray:
        """tile (4 or 5, T + 2r, H, W), channels IMAGE..CLEAN along T slices and r neighbours
        either side. Returns (C, T + 2r, H, W) with the r outer slices either side zero (the tiler
        crops them off as halo); C depends on `output`: "image": the denoised slices; "labels":
        and the label (1..K) of the expert with the largest weight; "weights": and each expert's
        weight (what tiles that overlap in-plane need, to blend)."""
        r = self.radius
        t = tile.shape[1] - 2 * r
        centre = slice(r, r + t)
        x = torch.from_numpy(np.ascontiguousarray(tile[IMAGE], dtype=np.float32)).to(self.device)
        stacked = torch.stack([x[i : i + t] for i in range(2 * r + 1)], dim=1)  # (T, 2r + 1, H, W)
        s = torch.from_numpy(np.ascontiguousarray(tile[SIGMA, centre, None], dtype=np.float32)).to(self.device)
        inputs = DnCNN.inputs(stacked, s)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        features = self.front(inputs)
        weights = self.weights(features, x[centre], tile[:, centre])  # (T, K, H, W)
        residual = self.tails.routed(features, weights)
        channels = {"image": 1, "labels": 2, "weights": 1 + self.experts}[self.output]
        out = np.zeros((channels,) + tile.shape[1:], np.float32)
        out[0, centre] = (x[centre] - residual).float().cpu().numpy()
        if self.output == "labels":
            out[1, centre] = majority(weights).float().cpu().numpy()
        elif self.output == "weights":
            out[1:, centre] = weights.float().cpu().numpy().transpose(1, 0, 2, 3)
        return out

    def weights(self, features: torch.Tensor, centre: torch.Tensor, channels: np.ndarray) -> torch.Tensor:
        n, _, h, w = features.shape
        k = self.experts
        ablation = self.ablation
        if k == 1 or self.kind == "single" or (ablation and ablation[0] == "expert"):
            chosen = ablation[1] if ablation and ablation[0] == "expert" else 0
            out = torch.zeros((n, k, h, w), device=features.device, dtype=features.dtype)
            out[:, chosen] = 1.0
            return out
        if self.kind == "segment" and not ablation:
            labels = torch.from_numpy(np.asarray(channels[CLASSES], dtype=np.int64) - 1).clamp(0, k - 1).to(features.device)
            return torch.nn.functional.one_hot(labels, k).permute(0, 3, 1, 2).to(features.dtype)
        depth = torch.from_numpy(np.ascontiguousarray(channels[DEPTH], dtype=np.float32)).to(features.device)
        descriptors, ys, xs, extent = patch_anatomy(centre, depth)
        if ablation and ablation[0] == "random":
            if self._random is None:
                self._random = np.random.default_rng(ablation[1])
            labels = torch.from_numpy(self._random.integers(0, k, descriptors.shape[:3]))
        elif ablation and ablation[0] == "oracle":
            clean = torch.from_numpy(np.ascontiguousarray(channels[CLEAN], dtype=np.float32)).to(features.device)
            error = (self.tails.all(features) - (centre - clean)[:, None]) ** 2  # (N, K, H, W)
            patch_error, _, _, _ = pooled_features(error, step=1)  # mean error of each expert per patch
            labels = patch_error[..., :k].argmin(-1).cpu()
        else:
            labels = torch.from_numpy(self.gate.assign(descriptors.cpu().numpy()))
        return patch_weights(labels.to(features.device), ys, xs, extent, (h, w), k).to(features.dtype)
