"""The mixture at inference: one shared trunk per slice, K expert heads, a gate that weighs them.

Paper 002 denoises every 48x48 patch (stride 20) with the expert its cluster picks and averages the
patch outputs where they overlap (eq. 7). Every expert is the same trunk with its own final layer,
so the trunk runs once per slice and each expert's head is a 3x3 convolution of its features; the
overlap average is then, per pixel, sum_k (share of the covering patches routed to k) x head_k.
Departure: the trunk sees the whole slice instead of each patch cut out with zero padding, so
patch borders carry no padding artefacts and no per-patch recomputation is needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .dncnn import OUTPUT_SCALE, DnCNN, fused_trunk
from .gate import PatchGate, patch_weights, pooled_features

GateKind = Literal["single", "patch", "segment"]
Output = Literal["image", "labels", "weights"]


def majority(weights: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) -> (N, H, W) label 1..K of the largest weight, ties to the lower label (a loop
    over K is several times faster than torch.argmax along a middle axis on the CPU)."""
    best, label = weights[:, 0], torch.ones_like(weights[:, 0], dtype=torch.int64)
    for k in range(1, weights.shape[1]):
        better = weights[:, k] > best
        best = torch.where(better, weights[:, k], best)
        label = torch.where(better, k + 1, label)
    return label


@dataclass
class ExpertHeads:
    """K final layers: weight (K, C, 3, 3), bias (K,)."""

    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def experts(self) -> int:
        return int(self.weight.shape[0])

    @classmethod
    def from_model(cls, model: DnCNN, copies: int = 1) -> "ExpertHeads":
        w = model.head.weight.detach()  # (1, C, 3, 3)
        b = model.head.bias.detach()
        return cls(w.repeat(copies, 1, 1, 1).clone(), b.repeat(copies).clone())

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) trunk features -> (N, K, H, W) residuals, one per expert."""
        return torch.nn.functional.conv2d(features, self.weight.to(features), self.bias.to(features), padding=1) * OUTPUT_SCALE

    def tensors(self, prefix: str = "heads.") -> dict[str, torch.Tensor]:
        return {prefix + "weight": self.weight.clone(), prefix + "bias": self.bias.clone()}

    @classmethod
    def from_tensors(cls, state: dict, prefix: str = "heads.") -> "ExpertHeads":
        return cls(state[prefix + "weight"].float(), state[prefix + "bias"].float())


class SliceMixture:
    """Denoises stacks of normalised slices: `denoise_tile` is the shared tiler's tile function."""

    def __init__(self, model: DnCNN, heads: ExpertHeads, kind: GateKind, gate: PatchGate | None, device: torch.device):
        self.kind, self.gate, self.device = kind, gate, device
        self.output: Output = "labels"
        self.trunk = fused_trunk(model).to(device)
        self.heads = ExpertHeads(heads.weight.to(device), heads.bias.to(device))
        self.experts = heads.experts
        self.radius = model.in_slices // 2
        self.channels_last = device.type == "cpu"  # oneDNN's fast path on CPUs
        if self.channels_last:
            self.trunk = self.trunk.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def denoise_tile(self, tile: np.ndarray) -> np.ndarray:
        """tile (3, T + 2r, H, W): [image, sigma map, segment class] along T slices and r neighbours
        either side. Returns (C, T + 2r, H, W) with the r outer slices either side zero (the tiler
        crops them off as halo); C depends on `output`: "image": the denoised slices; "labels":
        and the label (1..K) of the expert with the largest weight; "weights": and each expert's
        weight (what tiles that overlap in-plane need, to blend)."""
        image, sigma, classes = tile
        r = self.radius
        t = image.shape[0] - 2 * r
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(self.device)
        stacked = torch.stack([x[i : i + t] for i in range(2 * r + 1)], dim=1)  # (T, 2r + 1, H, W)
        centre = slice(r, r + t)
        s = torch.from_numpy(np.ascontiguousarray(sigma[centre, None], dtype=np.float32)).to(self.device)
        inputs = DnCNN.inputs(stacked, s)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        features = self.trunk(inputs)
        residuals = self.heads(features)  # (T, K, H, W)
        channels = {"image": 1, "labels": 2, "weights": 1 + self.experts}[self.output]
        out = np.zeros((channels,) + image.shape, np.float32)
        if self.experts == 1:
            out[0, centre] = (x[centre] - residuals[:, 0]).float().cpu().numpy()
            if self.output != "image":
                out[1, centre] = 1.0
            return out
        weights = self.weights(features, classes[centre])  # (T, K, H, W)
        out[0, centre] = (x[centre] - (residuals * weights).sum(1)).float().cpu().numpy()
        if self.output == "labels":
            out[1, centre] = majority(weights).float().cpu().numpy()
        elif self.output == "weights":
            out[1:, centre] = weights.float().cpu().numpy().transpose(1, 0, 2, 3)
        return out

    def weights(self, features: torch.Tensor, classes: np.ndarray) -> torch.Tensor:
        n, _, h, w = features.shape
        if self.kind == "single" or self.experts == 1:
            return torch.ones((n, 1, h, w), device=features.device, dtype=features.dtype)
        if self.kind == "segment":
            labels = torch.from_numpy(np.asarray(classes, dtype=np.int64) - 1).clamp(0, self.experts - 1).to(features.device)
            return torch.nn.functional.one_hot(labels, self.experts).permute(0, 3, 1, 2).to(features.dtype)
        pooled, ys, xs, extent = pooled_features(features)  # on the device; only the pooled values move
        labels = torch.from_numpy(self.gate.assign(pooled.cpu().numpy())).to(features.device)
        return patch_weights(labels, ys, xs, extent, (h, w), self.experts).to(features.dtype)
