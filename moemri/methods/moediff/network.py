"""MoEDiff-SR as one module: the token features and gate read the upsampled slice once; the E
expert denoisers run at every diffusion step and their estimates are mixed by the gate.

Residual learning: the diffusion variable is x0 = RESIDUAL_SCALE * (high-resolution slice -
B-spline-upsampled slice), so the model only adds what interpolation misses, and the sampler
starts close to the answer: few steps suffice. The scale brings the residual (a few percent of
the brightest tissue) up to the order of the unit-variance noise.

Preconditioning (Karras et al., NeurIPS 2022, "EDM", written for the variance-preserving
x_t = sqrt(a) x0 + sqrt(1 - a) noise): an expert's x0 estimate is c_skip x_t + c_out F(c_in x_t),
with c_skip the best linear estimate of x0 from x_t alone for an x0 of spread SIGMA_DATA, c_in
making the network's input unit-variance and c_out its target. Without it a network first
learned to pass noise from x_t through at every t (measured: worse than B-spline after 300 steps).
"""
from __future__ import annotations

import torch
from torch import nn

from .experts import ConditionalUNet
from .features import MultiScaleTokens
from .gate import Gate, pixel_weights

RESIDUAL_SCALE = 8.0
SIGMA_DATA = 0.25  # spread of the scaled residual in the head (measured on training slices: 0.26)
PAD_MULTIPLE = 16  # slices are padded to this (tokens of 8, the context patch of 16, U-Net /4)


class MoEDiff(nn.Module):
    def __init__(self, experts: int, widths=(8, 16, 32), feature_dim: int = 32):
        super().__init__()
        self.features = MultiScaleTokens(feature_dim)
        self.gate = Gate(feature_dim, experts)
        self.experts = nn.ModuleList(ConditionalUNet(widths) for _ in range(experts))
        from .sampler import make_scheduler

        # The schedule's cumulative alphas, for the preconditioning; not part of the weights.
        self.register_buffer("alphas_cumprod", make_scheduler().alphas_cumprod.float().clone(), persistent=False)

    @property
    def expert_count(self) -> int:
        return len(self.experts)

    def token_weights(self, low: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) upsampled slices -> (N, E, H / 8, W / 8) gate weights."""
        return self.gate(self.features(low))

    def weights(self, low: torch.Tensor, mixing: str = "soft") -> tuple[torch.Tensor, torch.Tensor]:
        """(token weights, pixel weights (N, E, H, W))."""
        tokens = self.token_weights(low)
        return tokens, pixel_weights(tokens, low.shape[-2:], mixing)

    def expert_estimates(self, x_t, low, t, ratios) -> torch.Tensor:
        """(N, E, H, W): every expert's estimate of x0."""
        steps = t.expand(x_t.shape[0]) if t.dim() == 0 else t
        a = self.alphas_cumprod.to(x_t.device)[steps.long()].view(-1, 1, 1, 1)
        spread = torch.sqrt(a * SIGMA_DATA**2 + 1 - a)  # of x_t
        c_skip = torch.sqrt(a) * SIGMA_DATA**2 / spread**2
        c_out = SIGMA_DATA * torch.sqrt(1 - a) / spread
        x_in = x_t / spread
        return torch.cat([c_skip * x_t + c_out * expert(x_in, low, steps, ratios) for expert in self.experts], dim=1)
