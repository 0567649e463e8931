"""What the gate sees: per-patch descriptors of anatomy and structure, not of noise.

The trunk already reads the sigma map, so a gate on the trunk's own activations routes by noise
level and adds nothing the trunk lacks (measured: every expert within +-0.02 dB of K = 1, even with
an oracle choice). These descriptors are computed from the slice smoothed enough that 9 % Rician
noise barely moves them (a Gaussian of 1.5 pixels leaves ~20 % of the noise), and from the head
mask: per 48x48 patch, the mean and spread of

- the smoothed intensity (tissue type: CSF dark, grey matter mid, white matter bright on T1),
- the share of dark and of bright pixels (soft thresholds at CSF-like and WM-like intensities),
- the edge density (gradient magnitude of the smoothed slice),
- the head share and the depth below the head's surface (scalp and skull rim against brain).

The gate network maps these 12 numbers to one logit per expert (`GateNet`); the paper's PCA +
k-means stays available on the same descriptors (gate.PatchGate).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .gate import pooled_features

SMOOTHING_PIXELS = 1.5
DARK_BELOW, BRIGHT_ABOVE, SOFTNESS = 0.3, 0.65, 0.05  # normalised units (head's 99.5th pct = 1)
DEPTH_SCALE_MM = 20.0  # depth below the surface, clipped at this and scaled to 0-1
MAPS = ("intensity", "dark", "bright", "edges", "head", "depth")
DESCRIPTORS = tuple(f"{m} {s}" for s in ("mean", "spread") for m in MAPS)


def _gaussian(sigma: float) -> torch.Tensor:
    radius = int(np.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def anatomy_maps(centre: torch.Tensor, depth_mm: torch.Tensor) -> torch.Tensor:
    """(N, H, W) noisy normalised centre slices and (N, H, W) depth below the head surface (mm,
    0 outside the head) -> (N, 6, H, W) maps, in MAPS order."""
    g = _gaussian(SMOOTHING_PIXELS).to(centre)
    r = len(g) // 2
    x = centre[:, None]
    x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    gy = torch.zeros_like(x)
    gx = torch.zeros_like(x)
    gy[..., 1:-1, :] = (x[..., 2:, :] - x[..., :-2, :]) / 2
    gx[..., :, 1:-1] = (x[..., :, 2:] - x[..., :, :-2]) / 2
    edges = torch.sqrt(gy * gy + gx * gx) * 10.0  # ~0-1 at tissue borders
    dark = torch.sigmoid((DARK_BELOW - x) / SOFTNESS)
    bright = torch.sigmoid((x - BRIGHT_ABOVE) / SOFTNESS)
    d = depth_mm[:, None].to(centre)
    head = (d > 0).to(centre)
    depth = torch.clamp(d / DEPTH_SCALE_MM, 0.0, 1.0)
    return torch.cat([x, dark, bright, edges, head, depth], dim=1)


def patch_anatomy(centre: torch.Tensor, depth_mm: torch.Tensor):
    """Per-patch descriptors (N, ny, nx, 12) over the gate's 48x48 patches at stride 20, with the
    patch origins and extent (as gate.pooled_features)."""
    pooled, ys, xs, extent = pooled_features(anatomy_maps(centre, depth_mm), step=2)
    return pooled, ys, xs, extent


def depth_below_surface(mask: np.ndarray, spacing_xyz) -> np.ndarray:
    """Distance (mm) from each head voxel to the nearest voxel outside the head; 0 outside."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(mask, sampling=tuple(float(s) for s in spacing_xyz[::-1])).astype(np.float32)


class GateNet(nn.Module):
    """Standardised descriptors -> a small MLP -> one logit per expert."""

    def __init__(self, experts: int, inputs: int = len(DESCRIPTORS), hidden: int = 32):
        super().__init__()
        self.experts = experts
        self.register_buffer("mean", torch.zeros(inputs))
        self.register_buffer("std", torch.ones(inputs))
        self.net = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, experts))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def standardise_on(self, descriptors: torch.Tensor) -> None:
        self.mean.copy_(descriptors.mean(0))
        self.std.copy_(descriptors.std(0) + 1e-4)

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        return self.net((descriptors - self.mean) / self.std)

    def assign(self, descriptors) -> np.ndarray:
        """(..., 12) descriptors -> 0-based expert labels of the same leading shape."""
        d = torch.as_tensor(np.asarray(descriptors), dtype=torch.float32)
        with torch.no_grad():
            logits = self(d.reshape(-1, d.shape[-1]))
        return logits.argmax(1).reshape(d.shape[:-1]).numpy()
