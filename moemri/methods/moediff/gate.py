"""MoEDiff-SR's gate: token features -> softmax weights over E experts per token, and the
load-balancing term that keeps every expert in use.

Mixing: 'soft' weighs every expert by its softmax weight, bilinearly interpolated from the token
grid to pixels (a convex combination, so the weights still sum to one at every pixel and token
borders do not show); 'top1' gives each token's pixels wholly to its highest-weighted expert.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIXINGS = ("soft", "top1")


class Gate(nn.Module):
    def __init__(self, dim: int, experts: int, hidden: int = 32):
        super().__init__()
        self.experts = experts
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, experts))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, dim, h, w) token features -> (N, E, h, w) softmax weights."""
        logits = self.net(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return torch.softmax(logits, dim=1)


def pixel_weights(token_weights: torch.Tensor, size: tuple[int, int], mixing: str = "soft") -> torch.Tensor:
    """(N, E, h, w) token weights -> (N, E, H, W) pixel weights that sum to one at every pixel."""
    if mixing == "top1":
        winner = F.one_hot(token_weights.argmax(1), token_weights.shape[1]).permute(0, 3, 1, 2).to(token_weights.dtype)
        return F.interpolate(winner, size=size, mode="nearest")
    if mixing != "soft":
        raise ValueError(f"mixing must be one of {', '.join(MIXINGS)}, not {mixing!r}")
    return F.interpolate(token_weights, size=size, mode="bilinear", align_corners=False)


def load_balancing_loss(token_weights: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's auxiliary loss (Fedus et al. 2022): E * sum_e f_e * P_e, with f_e the
    share of tokens whose top expert is e and P_e the mean weight of e; 1 when balanced."""
    experts = token_weights.shape[1]
    flat = token_weights.permute(0, 2, 3, 1).reshape(-1, experts)
    share = F.one_hot(flat.argmax(1), experts).to(flat.dtype).mean(0)
    return experts * (share * flat.mean(0)).sum()
