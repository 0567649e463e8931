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
HEAD_INIT_GAIN = 1.0


class LaplacianResizer(nn.Module):
    def __init__(self, in_channels: int, channels: int, block: int, band_channels: int = 16):
        super().__init__()
        self.block = block
        b = torch.tensor(BINOMIAL)
        kernel = torch.outer(b, b) / b.sum() ** 2
        self.register_buffer("smooth", kernel.expand(in_channels, 1, 5, 5).clone(), persistent=False)
        self.base = nn.Conv2d(in_channels, channels, 1)
        # Narrow at full resolution (the encoder's costliest place per pixel), widened after the resize.
        self.band = nn.Sequential(nn.Conv2d(in_channels, band_channels, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(band_channels, band_channels, 3, padding=1))
        self.widen = nn.Conv2d(band_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2] // self.block, x.shape[3] // self.block)
        low = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        band = x - F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.smooth, groups=x.shape[1])
        detail = F.interpolate(self.band(band), size=size, mode="bilinear", align_corners=False, antialias=True)
        return self.base(low) + self.widen(detail)


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
    def __init__(self, in_channels: int, out_channels: int, block: int = 2, channels: int = 32, stem: int = 24, heads: int = 2, window: int = 8, convs: int = 2, attention: int = 2):
        super().__init__()
        self.block, self.window = block, window
        self.resizer = LaplacianResizer(in_channels, channels, block, 16)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(stem, stem, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(stem, stem, 3, padding=1), nn.LeakyReLU(0.1),
        )
        folded = stem * block * block
        self.merge = nn.Conv2d(channels + folded, channels, 1)
        self.convs = nn.Sequential(*[ResidualConv(channels) for _ in range(convs)])
        self.attention = nn.Sequential(*[WindowAttention(channels, heads, window) for _ in range(attention)])
        # The head also reads the full-resolution features folded onto the block grid: a kernel's
        # expert needs the pixels under it (measured: without this skip the model did not learn
        # to denoise in the first hundreds of steps, while a plain full-resolution CNN did).
        self.head = nn.Conv2d(channels + folded, out_channels, 1)
        with torch.no_grad():
            self.head.weight.mul_(HEAD_INIT_GAIN)
            self.head.bias.zero_()
            # Residual branches start at zero (the attention blocks' and convolutions' last layers):
            # measured, with them at their default start the model did not learn to denoise within
            # hundreds of steps, while the stem and head alone did.
            for module in self.modules():
                last = module.out if isinstance(module, WindowAttention) else module.body[2] if isinstance(module, ResidualConv) else None
                if last is not None:
                    last.weight.zero_()
                    last.bias.zero_()
                if isinstance(module, WindowAttention):
                    module.mlp[2].weight.zero_()
                    module.mlp[2].bias.zero_()

    @property
    def multiple(self) -> int:
        """Input pixels the padded input's size must divide by."""
        return self.block * self.window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[n, in, h, w] (h, w multiples of `multiple`) -> [n, out, h / block, w / block]."""
        folded = F.pixel_unshuffle(self.stem(x), self.block)
        latent = self.convs(self.merge(torch.cat([self.resizer(x), folded], 1)))
        return self.head(torch.cat([self.attention(latent), folded], 1))
