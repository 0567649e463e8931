"""Experts that can differ: each expert owns the last TAIL_LAYERS convolutions of the DnCNN (two
3x3x24 blocks and the output layer, ~10.6k weights, a third of the network), fine-tuned by
gradient on the patches routed to it; the first layers (the front) are shared and frozen.

The paper gives each expert only its own final layer; measured here, that leaves the experts
interchangeable (all within +-0.02 dB of K = 1 even with an oracle gate). A third of the network
per expert is the smallest share that measurably specialised in our runs.

Routing keeps the cost of one network: the front runs once per slice; each expert's tail runs
only on the 64x64 cells where its routing weight is non-zero (with a halo of TAIL_LAYERS pixels of
front features, so a cell's result is exactly what the tail would give on the whole slice away from
the slice border), and the cells' results are summed with the weights (the overlap average of
eq. 7 of Deng and Campbell 2025, as every patch in a cell is routed to one expert).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .dncnn import OUTPUT_SCALE, DnCNN

TAIL_LAYERS = 3  # convolutions per expert: the last two trunk blocks and the head
CELL = 64  # pixels: routed tails run on cells of this size (32 doubled the tails' cost: halo, small images)


def fuse_batch_norm(modules) -> nn.Sequential:
    """An inference copy with each batch norm folded into the convolution before it (the same
    output in eval mode; no batch statistics to go wrong when a tail sees a few routed patches)."""
    layers: list[nn.Module] = []
    modules = list(modules)
    i = 0
    while i < len(modules):
        m = modules[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(modules) and isinstance(modules[i + 1], nn.BatchNorm2d):
            bn = modules[i + 1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, padding=m.padding, dilation=m.dilation, bias=True)
            with torch.no_grad():
                conv.weight.copy_(m.weight * scale.reshape(-1, 1, 1, 1))
                bias = m.bias if m.bias is not None else torch.zeros_like(bn.running_mean)
                conv.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
            layers.append(conv)
            i += 2
        else:
            layers.append(copy.deepcopy(m))
            i += 1
    return nn.Sequential(*layers).eval()


def split(model: DnCNN, tail_layers: int = TAIL_LAYERS) -> tuple[nn.Sequential, nn.Sequential]:
    """(front, tail) of a trained DnCNN, batch norms folded: front(x) -> features; tail(features)
    -> residual / OUTPUT_SCALE, the last `tail_layers` convolutions. front + tail is the whole
    network."""
    blocks = tail_layers - 1
    if not 1 <= tail_layers <= model.depth - 1:
        raise ValueError(f"a {model.depth}-layer DnCNN has 1 to {model.depth - 1} tail layers, not {tail_layers}")
    trunk = list(model.trunk)
    cut = len(trunk) - 3 * blocks  # each middle block is conv, batch norm, ReLU
    front = fuse_batch_norm(trunk[:cut])
    tail = fuse_batch_norm(trunk[cut:] + [model.head])
    for p in front.parameters():
        p.requires_grad_(False)
    return front, tail


class ExpertTails(nn.Module):
    """K tails over one front. `all` runs every tail everywhere (training, the oracle); `routed`
    runs each only where the routing weights need it (inference)."""

    def __init__(self, tails: list[nn.Sequential]):
        super().__init__()
        self.tails = nn.ModuleList(tails)
        self.halo = sum(m.dilation[0] * (m.kernel_size[0] // 2) for m in tails[0] if isinstance(m, nn.Conv2d))

    @classmethod
    def copies(cls, tail: nn.Sequential, experts: int) -> "ExpertTails":
        return cls([copy.deepcopy(tail).train() for _ in range(experts)])

    @property
    def experts(self) -> int:
        return len(self.tails)

    def one(self, k: int, features: torch.Tensor, inside: torch.Tensor | None = None) -> torch.Tensor:
        """Expert k's residual. `inside` (N, 1, H, W), 1 on the slice and 0 beyond it, zeroes every
        layer's activations beyond the slice, as the zero padding of a whole-slice run does."""
        if inside is None:
            return self.tails[k](features) * OUTPUT_SCALE
        x = features
        for layer in self.tails[k]:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                x = x * inside
        return x * OUTPUT_SCALE

    def all(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, K, H, W) residuals of every expert."""
        return torch.cat([self.one(k, features) for k in range(self.experts)], dim=1)

    def routed(self, features: torch.Tensor, weights: torch.Tensor, cell: int = CELL) -> torch.Tensor:
        """sum_k weights_k * expert_k(features), each expert run only on the cells where its weight
        is non-zero: (N, C, H, W), (N, K, H, W) -> (N, H, W). Cells are about `cell` pixels a
        side, sized to tile the slice exactly (no padding to a multiple)."""
        n, c, h, w = features.shape
        if self.experts == 1:
            return self.one(0, features)[:, 0] * weights[:, 0]
        halo = self.halo
        ny, nx = max(1, round(h / cell)), max(1, round(w / cell))
        ch, cw = -(-h // ny), -(-w // nx)
        ph, pw = ny * ch - h, nx * cw - w
        padding = (halo, halo + pw, halo, halo + ph)

        def cells(x, margin):
            return x.unfold(2, ch + 2 * margin, ch).unfold(3, cw + 2 * margin, cw)

        # Gathered as (M, s, s, C) and viewed as (M, C, s, s): channels-last, oneDNN's fast path.
        windows = cells(torch.nn.functional.pad(features, padding), halo).permute(0, 2, 3, 4, 5, 1)  # (N, ny, nx, s, s, C)
        ones = torch.ones((1, 1, h, w), dtype=features.dtype, device=features.device)
        inside = cells(torch.nn.functional.pad(ones, padding), halo)[0, 0]  # (ny, nx, ch + 2h, cw + 2h)
        border = torch.zeros((ny, nx), dtype=torch.bool, device=features.device)
        border[0], border[-1], border[:, 0], border[:, -1] = True, True, True, True
        wcells = cells(torch.nn.functional.pad(weights, (0, pw, 0, ph)), 0)  # (N, K, ny, nx, ch, cw)
        needed = wcells.amax(dim=(-1, -2)) > 0  # (N, K, ny, nx)
        out = torch.zeros((n, ny, nx, ch, cw), dtype=features.dtype, device=features.device)
        for k in range(self.experts):
            for at_border in (False, True):
                idx = (needed[:, k] & (border if at_border else ~border)).nonzero(as_tuple=True)
                if idx[0].numel() == 0:
                    continue
                crops = windows[idx].permute(0, 3, 1, 2)  # (M, C, ch + 2h, cw + 2h)
                mask = inside[idx[1], idx[2]][:, None] if at_border else None  # only border cells reach the padding
                residual = self.one(k, crops, mask)[:, 0, halo : halo + ch, halo : halo + cw]
                out[idx] += residual * wcells[idx[0], k, idx[1], idx[2]]
        return out.permute(0, 1, 3, 2, 4).reshape(n, ny * ch, nx * cw)[:, :h, :w]
