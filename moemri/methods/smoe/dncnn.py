"""The DnCNN backbone (Zhang et al., IEEE TIP 2017) as Deng and Campbell (arXiv:2501.14198) use it.
Trained once, then split (tails.py) into a shared front and a tail that every expert owns a copy of.

Input (N, in_slices + 1, H, W): the noisy slice between its neighbours (`in_slices` = 2r + 1), then
the noise sigma map (FFDNet-style, Zhang et al. 2018), all in normalised intensity units. Output (N, 1, H, W): the
noise residual of the centre slice; the clean estimate is noisy - residual.

Departures from the paper's 17 x 64 DnCNN: 8 layers of 24 channels (a 181x217x181 head must be
denoised twice, in two slice orientations, within 30 s on two CPU cores, and trained within an
hour on them), the sigma map as an input channel, and two neighbouring slices either side as
extra input channels (the convolutions stay 2-D; the neighbours carry much of what a 3-D denoiser
such as non-local means gains over a 2-D one: +0.7 dB at 5 % over a single slice in a short run).
"""
from __future__ import annotations

import torch
from torch import nn

SLICE_RADIUS = 2  # neighbour slices read either side of the one denoised
# The head predicts residual / OUTPUT_SCALE. Adam moves every weight by about the learning rate
# per step; residuals are only ~0.02 in normalised units, so an unscaled head overshoots several
# fold in its first steps and the trunk can collapse to predicting zero (it did with dilations).
OUTPUT_SCALE = 0.1
SIGMA_GAIN = 10.0  # sigma of a few % is ~0.03 in normalised units; x10 puts it near the image's range


class DnCNN(nn.Module):
    def __init__(self, channels: int = 24, depth: int = 8, in_slices: int = 2 * SLICE_RADIUS + 1, dilations: tuple[int, ...] | None = None):
        super().__init__()
        dilations = tuple(dilations) if dilations else (1,) * (depth - 2)
        if len(dilations) != depth - 2:
            raise ValueError(f"{depth - 2} middle layers need {depth - 2} dilations, got {dilations}")
        self.channels, self.depth, self.in_slices, self.dilations = channels, depth, in_slices, dilations
        layers: list[nn.Module] = [nn.Conv2d(in_slices + 1, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for d in dilations:
            layers += [nn.Conv2d(channels, channels, 3, padding=d, dilation=d, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 1, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(self.head.weight)  # start as the identity denoiser: residual 0
        nn.init.zeros_(self.head.bias)

    @staticmethod
    def inputs(slices: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """(N, in_slices, H, W) noisy slices and (N, 1, H, W) sigma -> the network's input."""
        return torch.cat([slices, sigma * SIGMA_GAIN], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)) * OUTPUT_SCALE

    def config(self) -> dict:
        return {"channels": self.channels, "depth": self.depth, "in_slices": self.in_slices, "dilations": list(self.dilations)}

    @property
    def receptive_radius(self) -> int:
        """Pixels either side of a pixel that reach it: one per 3x3 layer, times its dilation."""
        return 2 + sum(self.dilations)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
