"""The N-SMoE network: encoder -> K steered kernels per block -> residual rendered on any grid.

The rendered mixture is the RESIDUAL over the input's cubic B-spline interpolation at the output
positions (for denoising, over the noisy input itself): the mixture spends its kernels on the
detail B-spline misses and on the noise, not on re-drawing the whole image. An earlier attempt
that rendered the image itself stayed within 0.2 dB of B-spline.

Input channels of the encoder, per slice: the slice and its CONTEXT neighbours either side
(normalised intensities), the noise sigma in those units (x SIGMA_GAIN), and log2 of the scale
along rows and along columns (output pixels per input pixel): one model serves x1 (denoising),
thick-slice (one axis) and in-plane (both axes) super-resolution at any factor.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from .encoder import Encoder
from .renderer import KERNEL_PARAMETERS, KernelSet, Rendering, kernels_from_raw, render

CONTEXT = 1  # neighbour slices either side
IN_CHANNELS = 2 * CONTEXT + 1 + 3  # slices, sigma, log2 row scale, log2 column scale
SIGMA_GAIN = 10.0  # sigma 0.1 (10 % of the normalised range) -> 1
BLOCK = 2


class NSMoE(nn.Module):
    def __init__(self, kernels: int, block: int = BLOCK, channels: int = 32, stem: int = 24, heads: int = 2, window: int = 8):
        super().__init__()
        self.kernels, self.block = kernels, block
        self.architecture = {"kernels": kernels, "block": block, "channels": channels, "stem": stem, "heads": heads, "window": window}
        self.encoder = Encoder(IN_CHANNELS, kernels * KERNEL_PARAMETERS, block, channels, stem, heads, window)

    def kernel_set(self, inputs: torch.Tensor) -> KernelSet:
        """inputs [n, IN_CHANNELS, h, w] -> kernels on the block grid of the (padded) slice."""
        m = self.encoder.multiple
        h, w = inputs.shape[2:]
        padded = F.pad(inputs, (0, (-w) % m, 0, (-h) % m), mode="replicate")
        return kernels_from_raw(self.encoder(padded), self.kernels, self.block)

    def forward(self, inputs: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, base: torch.Tensor, **how) -> Rendering:
        """base [n, H, W] (B-spline of the slice at rows x cols) + the rendered residual."""
        kernels = self.kernel_set(inputs)
        out = render(kernels, rows, cols, self.block, **how)
        out.image = base + out.image
        return out


def network_inputs(slices: np.ndarray, sigma: float, scale_rows: float, scale_cols: float) -> np.ndarray:
    """[n, 2 CONTEXT + 1, h, w] normalised slices -> [n, IN_CHANNELS, h, w] float32."""
    n, _, h, w = slices.shape
    constant = np.empty((n, 3, h, w), np.float32)
    constant[:, 0] = SIGMA_GAIN * sigma
    constant[:, 1] = np.log2(scale_rows)
    constant[:, 2] = np.log2(scale_cols)
    return np.concatenate([slices.astype(np.float32), constant], axis=1)


def scale_of(positions: np.ndarray) -> float:
    """Output pixels per input pixel along one axis, from the output positions."""
    if positions.shape[0] < 2:
        return 1.0
    return float(1.0 / np.mean(np.diff(positions)))


def bspline_at(slices: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Cubic B-spline (interpolating, as ITK's and Slicer's) of each [h, w] slice at rows x cols."""
    out = np.empty((slices.shape[0], rows.shape[0], cols.shape[0]), np.float32)
    same = rows.shape[0] == slices.shape[1] and cols.shape[0] == slices.shape[2]
    if same and np.allclose(rows, np.arange(slices.shape[1])) and np.allclose(cols, np.arange(slices.shape[2])):
        out[:] = slices  # same grid: interpolation is the identity
        return out
    grid = np.meshgrid(rows, cols, indexing="ij")
    for i, s in enumerate(slices):
        out[i] = ndimage.map_coordinates(s.astype(np.float64), grid, order=3, mode="nearest")
    return out
