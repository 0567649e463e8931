"""MoEDiff-SR's sampler: deterministic DDIM (eta = 0) with MONAI's scheduler on a cosine noise
schedule, seeded.

The starting noise is drawn on the CPU from a torch.Generator seeded by (seed, orientation,
slice index), then moved to the device, so the same seed gives the same noise on a CPU and a GPU
and a slice's result does not depend on how slices are batched. With eta = 0 nothing else is
random. The model predicts x0 ("sample"); the mix of the experts' x0 estimates by weights that
sum to one is the same as the mix of their noise estimates (the noise estimate is affine in x0
with the same coefficients for every expert), so this is the paper's mixing of noise estimates.

Time steps: MONAI's `set_timesteps` spaces them by linspace(999, 0, n) but its `step` takes the
previous step to be t - 1000 // n; with few steps the two disagree (5 steps: the model is asked at
749 for a sample made for 799, and the last call, at t = 0, gets a sample with noise left from
t = 50, which the model then passes through as if clean). `timesteps` below are the ones `step`
assumes, "trailing" from 999 (Lin et al., WACV 2024): 999, 799, ..., 199 for 5 steps; the last
step's x0 estimate is the result.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .experts import TRAIN_TIMESTEPS

PREDICTION = "sample"


def make_scheduler(prediction_type: str = PREDICTION):
    from monai.networks.schedulers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=TRAIN_TIMESTEPS, schedule="cosine", clip_sample=False, set_alpha_to_one=True, prediction_type=prediction_type
    )


def slice_noise(shape, seed: int, orientation: int, first_slice: int) -> torch.Tensor:
    """(n, 1, H, W) standard normal noise, slice i from its own generator (seed, orientation, i)."""
    n, h, w = shape
    out = torch.empty((n, 1, h, w), dtype=torch.float32)
    for i in range(n):
        g = torch.Generator(device="cpu")
        g.manual_seed(int(np.random.SeedSequence([seed, orientation, first_slice + i]).generate_state(1)[0]))
        out[i, 0] = torch.randn((h, w), generator=g, dtype=torch.float32)
    return out


def timesteps(steps: int, train_timesteps: int = TRAIN_TIMESTEPS) -> torch.Tensor:
    """The DDIM time steps, trailing from the last training step, `train_timesteps // steps` apart."""
    stride = train_timesteps // int(steps)
    return (train_timesteps - 1 - stride * torch.arange(int(steps))).long()


@dataclass
class Sample:
    residual: torch.Tensor  # (N, 1, H, W) mixed x0 estimate after the last step (scaled residual)
    weights: torch.Tensor  # (N, E, H, W) pixel gate weights
    token_weights: torch.Tensor  # (N, E, h, w)
    expert_residuals: torch.Tensor  # (N, E, H, W) each expert's own x0 estimate at the last step


@torch.no_grad()
def sample(model, low, ratios, noise, steps: int, mixing: str = "soft", scheduler=None) -> Sample:
    """DDIM from `noise` (N, 1, H, W) in `steps` steps, conditioned on `low` (N, 1, H, W)."""
    scheduler = scheduler or make_scheduler()
    scheduler.set_timesteps(int(steps))
    scheduler.timesteps = timesteps(steps, scheduler.num_train_timesteps)
    tokens, weights = model.weights(low, mixing)
    x = noise.to(low.device)
    if low.dim() == 4 and low.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)  # the model's layout: ~25 % faster on a CPU
    estimates = mixed = None
    for t in scheduler.timesteps:
        t = t.to(low.device)
        estimates = model.expert_estimates(x, low, t, ratios)
        mixed = (weights * estimates).sum(dim=1, keepdim=True)
        x, _ = scheduler.step(mixed, int(t), x)
    assert estimates is not None
    return Sample(mixed, weights, tokens, estimates)
