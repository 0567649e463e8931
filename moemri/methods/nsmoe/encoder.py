"""N-SMoE's encoder: one latent vector per image block, read by the decoder as K kernels.

- a Laplacian resizer ("learning to resize", Talebi and Milanfar, ICCV 2021): the input resized to
  the block grid (anti-aliased bilinear) plus a learned residual computed from its band-pass
  (input minus a binomial blur), so that the detail a plain resize would average away reaches the
  latents;
- convolutional features: a full-resolution stem folded onto the block grid (pixel unshuffle,
  nothing lost) and residual convolutions there;
- multi-head self-attention over windows of blocks (window x window tokens, as in Swin without the
  shift): the latent of a block sees the structures around it, an edge's continuation included.
The input is padded (edge values) to a whole number of attention windows; the caller crops.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


class LaplacianResizer(nn.Module):
    def __init__(self, in_channels: int, channels: int, block: int):
        super().__init__()
        self.block = block
        b = torch.tensor(BINOMIAL)
        kernel = torch.outer(b, b) / b.sum() ** 2
        self.register_buffer("smooth", kernel.expand(in_channels, 1, 5, 5).clone(), persistent=False)
        self.base = nn.Conv2d(in_channels, channels, 1)
        self.band = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2] // self.block, x.shape[3] // self.block)
        low = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        band = x - F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.smooth, groups=x.shape[1])
        detail = F.interpolate(self.band(band), size=size, mode="bilinear", align_corners=False, antialias=True)
        return self.base(low) + detail


class ResidualConv(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class WindowAttention(nn.Module):
    """Pre-norm transformer block: multi-head self-attention inside window x window tokens, then an MLP."""

    def __init__(self, channels: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, C, H, W], H and W multiples of window
        n, c, h, w = x.shape
        s = self.window
        tokens = x.view(n, c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1).reshape(-1, s * s, c)
        q, k, v = self.qkv(self.norm1(tokens)).view(tokens.shape[0], s * s, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(tokens.shape)
        tokens = tokens + self.out(attended)
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.view(n, h // s, w // s, s, s, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)


class Encoder(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, block: int = 2, channels: int = 32, stem: int = 16, heads: int = 4, window: int = 8, convs: int = 2, attention: int = 2):
        super().__init__()
        self.block, self.window = block, window
        self.resizer = LaplacianResizer(in_channels, channels, block)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(stem, stem, 3, padding=1), nn.LeakyReLU(0.1))
        self.merge = nn.Conv2d(channels + stem * block * block, channels, 1)
        self.convs = nn.Sequential(*[ResidualConv(channels) for _ in range(convs)])
        self.attention = nn.Sequential(*[WindowAttention(channels, heads, window) for _ in range(attention)])
        self.head = nn.Conv2d(channels, out_channels, 3, padding=1)

    @property
    def multiple(self) -> int:
        """Input pixels the padded input's size must divide by."""
        return self.block * self.window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[n, in, h, w] (h, w multiples of `multiple`) -> [n, out, h / block, w / block]."""
        folded = F.pixel_unshuffle(self.stem(x), self.block)
        latent = self.convs(self.merge(torch.cat([self.resizer(x), folded], 1)))
        return self.head(self.attention(latent))
