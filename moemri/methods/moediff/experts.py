"""MoEDiff-SR's experts: small conditional U-Nets, one diffusion denoiser each.

Input: the noisy residual x_t and the upsampled low-resolution slice; conditioning (FiLM, a
scale and shift per block) on the diffusion time step and on the input's voxel size relative to
the output along the slice's two axes (log2: 0 where an axis is already fine), so one network
serves x2, x4 and thick slices. Output: the estimate of the clean residual x_0 ("sample"
prediction). An own U-Net rather than MONAI's DiffusionModelUNet: the smallest configuration of
that one (GroupNorm, two residual blocks per level, attention optional) costs several times the
operations per pixel of this one, and a whole head is ~8 million output pixels per orientation
times E experts times the steps, on a CPU.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TIME_FEATURES = 16
CONDITION = TIME_FEATURES + 2  # time embedding + log2 voxel-size ratio along rows and columns
TRAIN_TIMESTEPS = 1000


def time_features(t: torch.Tensor) -> torch.Tensor:
    """(N,) integer time steps -> (N, TIME_FEATURES) sinusoidal features."""
    half = TIME_FEATURES // 2
    frequencies = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angle = t.float()[:, None] * frequencies[None]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, cond: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.film = nn.Linear(cond, 2 * cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x, c):
        h = F.silu(self.conv1(x))
        scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)
        return F.silu(self.conv2(h * (1 + scale) + shift))


class ConditionalUNet(nn.Module):
    """Three levels (widths[0] at full resolution, then /2 and /4); H, W multiples of 4."""

    def __init__(self, widths=(8, 16, 32), cond_hidden: int = 32):
        super().__init__()
        a, b, c = widths
        self.widths = tuple(widths)
        self.condition = nn.Sequential(nn.Linear(CONDITION, cond_hidden), nn.SiLU(), nn.Linear(cond_hidden, cond_hidden))
        self.enc0 = Block(2, a, cond_hidden)
        self.enc1 = Block(a, b, cond_hidden)
        self.enc2 = Block(b, c, cond_hidden)
        self.up1 = nn.ConvTranspose2d(c, b, 2, stride=2)
        self.dec1 = Block(2 * b, b, cond_hidden)
        self.up0 = nn.ConvTranspose2d(b, a, 2, stride=2)
        self.dec0 = Block(2 * a, a, cond_hidden)
        self.out = nn.Conv2d(a, 1, 1)

    def forward(self, x_t, low, t, ratios):
        """x_t, low: (N, 1, H, W); t: (N,) steps; ratios: (N, 2) log2 input/output voxel size."""
        c = self.condition(torch.cat([time_features(t), ratios], dim=1))
        e0 = self.enc0(torch.cat([x_t, low], dim=1), c)
        e1 = self.enc1(F.avg_pool2d(e0, 2), c)
        e2 = self.enc2(F.avg_pool2d(e1, 2), c)
        d1 = self.dec1(torch.cat([self.up1(e2), e1], dim=1), c)
        d0 = self.dec0(torch.cat([self.up0(d1), e0], dim=1), c)
        return self.out(d0)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
