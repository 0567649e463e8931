"""REMIx's expert network: a volumetric U-Net (Ronneberger et al., 2015, in 3-D) whose output is
added to its input, so it learns only the detail the interpolated image lacks.

The paper gives no widths or depth; these are small enough to train on two CPU cores in minutes.
There is no normalisation layer: batch statistics are meaningless with two patches, and instance
or group statistics would differ from tile to tile at inference and leave seams.
"""
from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv3d(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
    )


class UNet3d(nn.Module):
    """(B, C, Z, Y, X) -> (B, 1, Z, Y, X), with Z, Y, X divisible by 2 ** (levels - 1).

    `widths` are the channels per level, finest first: (12, 24, 48) is three levels. Channel 0 is
    the B-spline image, the output is channel 0 plus the predicted detail; any further channels
    are conditioning (the input's spacing, see canonical.py).
    """

    def __init__(self, widths: tuple[int, ...] = (12, 24, 48), in_channels: int = 1):
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        self.in_channels = int(in_channels)
        w = self.widths
        self.down = nn.ModuleList([_block(self.in_channels, w[0])] + [_block(w[i - 1], w[i]) for i in range(1, len(w))])
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList([nn.ConvTranspose3d(w[i], w[i - 1], 2, stride=2) for i in range(len(w) - 1, 0, -1)])
        self.merge = nn.ModuleList([_block(2 * w[i - 1], w[i - 1]) for i in range(len(w) - 1, 0, -1)])
        self.head = nn.Conv3d(w[0], 1, 1)
        nn.init.zeros_(self.head.weight)  # start as the identity: the residual is 0 before training
        nn.init.zeros_(self.head.bias)

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else self.pool(h))
            skips.append(h)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            h = merge(torch.cat([up(h), skip], dim=1))
        return x[:, :1] + self.head(h)  # the paper's residual connection at the output


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
