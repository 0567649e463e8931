"""N-SMoE's decoder: a steered mixture of experts rendered at any continuous positions.

Every block of `block` x `block` input pixels owns K kernels. A kernel has a centre, a steering
covariance (two scales and a rotation: its inverse is R diag(1/a^2, 1/b^2) R^T, positive definite
by construction, whatever the network outputs), a log weight and an expert: a constant plus a
linear function of the offset from the centre. At a position x the image is

    f(x) = sum_k g_k(x) (c_k + grad_k . (x - mu_k)),
    g_k(x) = softmax_k(log w_k - 0.5 (x - mu_k)^T Sigma_k^-1 (x - mu_k)),

the softmax running over the kernels of the block that holds x and of its eight neighbours, so
the gate changes continuously across block edges (Verhack et al.'s SMoE gate, localised).
Positions are in the input slice's pixel coordinates (pixel centres at 0 .. h-1), given per row
and per column: the output grid may have any spacing, a non-integer scale included. Everything is
vectorised over blocks, kernels and output pixels; `render` cuts the output rows into chunks to
bound memory, not to loop over blocks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

KERNEL_PARAMETERS = 9  # centre (2), scales (2), angle, log weight, expert: constant + gradient (2)
SCALE_RANGE = (0.2, 4.0)  # input pixels: a kernel's two standard deviations
SCALE_START = 3.0  # sigmoid offset of the scales: 0.2 + 3.8 sigmoid(-3) = 0.38 pixel
CENTRE_REACH = 0.5  # blocks: how far a kernel's centre may move from its home position
OUTSIDE_LOG_WEIGHT = -1e4  # kernels of blocks beyond the slice take no part in the gate
GATES = ("soft", "top1", "random", "oracle")  # the predicted gate, then the paper's ablations of it


@dataclass
class KernelSet:
    """K kernels per block: every field is [n, K, By, Bx] (n slices, By x Bx blocks)."""

    centre_y: torch.Tensor  # input pixel coordinates
    centre_x: torch.Tensor
    scale_a: torch.Tensor  # standard deviation along the kernel's own axis u = (sin angle, cos angle) in (y, x)
    scale_b: torch.Tensor  # ... and across it
    angle: torch.Tensor  # radians, from the x (column) axis towards the y (row) axis
    log_weight: torch.Tensor
    value: torch.Tensor  # the expert's constant
    slope_y: torch.Tensor  # ... and its gradient (per input pixel)
    slope_x: torch.Tensor

    @property
    def kernels(self) -> int:
        return self.centre_y.shape[1]

    def precision(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(p_yy, p_yx, p_xx) of Sigma^-1 = u u^T / a^2 + v v^T / b^2, v perpendicular to u."""
        s, c = torch.sin(self.angle), torch.cos(self.angle)
        ia, ib = self.scale_a.pow(-2), self.scale_b.pow(-2)
        return s * s * ia + c * c * ib, s * c * (ia - ib), c * c * ia + s * s * ib


def home_offsets(kernels: int) -> torch.Tensor:
    """[K, 2] starting positions of the kernels inside their block, in block units around its
    centre: a grid as square as K allows, so that at the start every kernel has its own patch."""
    rows = int(math.floor(math.sqrt(kernels)))
    while kernels % rows:
        rows -= 1
    cols = kernels // rows
    y = (torch.arange(rows, dtype=torch.float32) + 0.5) / rows - 0.5
    x = (torch.arange(cols, dtype=torch.float32) + 0.5) / cols - 0.5
    return torch.stack(torch.meshgrid(y, x, indexing="ij"), -1).reshape(kernels, 2)


def kernels_from_raw(raw: torch.Tensor, kernels: int, block: int) -> KernelSet:
    """The encoder's output [n, K * 9, By, Bx] as a kernel set: centres near their home positions,
    scales in SCALE_RANGE, any angle, free log weights and experts."""
    n, _, by, bx = raw.shape
    p = raw.view(n, kernels, KERNEL_PARAMETERS, by, bx)
    home = home_offsets(kernels).to(raw)
    grid_y = (torch.arange(by, dtype=raw.dtype, device=raw.device) + 0.5) * block - 0.5
    grid_x = (torch.arange(bx, dtype=raw.dtype, device=raw.device) + 0.5) * block - 0.5
    reach = CENTRE_REACH * block
    cy = grid_y.view(1, 1, by, 1) + block * home[:, 0].view(1, kernels, 1, 1) + reach * torch.tanh(p[:, :, 0])
    cx = grid_x.view(1, 1, 1, bx) + block * home[:, 1].view(1, kernels, 1, 1) + reach * torch.tanh(p[:, :, 1])
    lo, hi = SCALE_RANGE
    # Start near 0.4 pixel: each pixel's gate is then held by the kernels nearest to it, which
    # measured faster learning than broad, overlapping kernels at the start.
    a = lo + (hi - lo) * torch.sigmoid(p[:, :, 2] - SCALE_START)
    b = lo + (hi - lo) * torch.sigmoid(p[:, :, 3] - SCALE_START)
    return KernelSet(cy, cx, a, b, p[:, :, 4], p[:, :, 5], p[:, :, 6], p[:, :, 7], p[:, :, 8])


def cell_coordinates(positions: torch.Tensor, block: int, blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cell, fraction) of each position: it lies between the centres of blocks cell - 1 and cell
    (cells 0 .. blocks), `fraction` of the way from the first to the second."""
    u = ((positions + 0.5) / block - 0.5).clamp(-1.0, float(blocks))  # block-centre coordinates
    first = torch.floor(u).clamp(-1, blocks - 1)
    return (first + 1).long(), u - first


@dataclass
class Grouping:
    """Output positions along one axis grouped by the cell holding them: `grouped` [B + 1, P] (P
    the most any cell holds; short groups repeat their last position), their tent weights
    `tent` [B + 1, P, 2] for the cell's two blocks, and for every output position its flat index
    in (B + 1) x P (`take`). Kernel fields then broadcast over a cell's pixels as views."""

    grouped: torch.Tensor
    tent: torch.Tensor
    take: torch.Tensor


def group_positions(positions: torch.Tensor, block: int, blocks: int) -> Grouping:
    cell, _ = cell_coordinates(positions, block, blocks)
    cells = blocks + 1
    counts = torch.bincount(cell, minlength=cells)
    per = max(int(counts.max()), 1)
    order = torch.argsort(cell, stable=True)
    first = torch.cumsum(counts, 0) - counts  # where each cell's run starts in `order`
    rank = torch.empty_like(cell)
    rank[order] = torch.arange(cell.numel(), device=cell.device) - first[cell[order]]
    slot = torch.arange(per, device=cell.device).view(1, -1)
    # Short (or empty) groups repeat their last member (or a point inside the cell): computed, never read.
    member = (first.view(-1, 1) + torch.minimum(slot, (counts - 1).clamp(min=0).view(-1, 1))).clamp(max=max(cell.numel() - 1, 0))
    inside = (torch.arange(cells, device=cell.device, dtype=positions.dtype) - 0.5) * block - 0.5 + 0.5 * block
    grouped = torch.where(counts.view(-1, 1) > 0, positions[order][member], inside.view(-1, 1).expand(cells, per))
    _, fraction = cell_coordinates(grouped, block, blocks)
    tent = torch.stack([1.0 - fraction, fraction], -1)
    return Grouping(grouped, tent, cell * per + rank)


def cell_neighbours(field: torch.Tensor, pad_value: float) -> torch.Tensor:
    """[n, K, By, Bx] -> [n, K, 2, 2, By + 1, 1, Bx + 1, 1]: the fields of each cell's 2 x 2
    blocks (pad_value beyond the slice), shaped to broadcast over the pixels of the cell."""
    padded = torch.nn.functional.pad(field, (1, 1, 1, 1), value=pad_value)
    by, bx = field.shape[2:]
    shifted = torch.stack([torch.stack([padded[:, :, i : i + by + 1, j : j + bx + 1] for j in range(2)], 2) for i in range(2)], 2)
    n, k = field.shape[:2]
    return shifted.view(n, k, 2, 2, by + 1, 1, bx + 1, 1)


def _log_tent(tent: torch.Tensor) -> torch.Tensor:
    return torch.where(tent > 0, torch.log(tent.clamp_min(1e-30)), torch.full_like(tent, OUTSIDE_LOG_WEIGHT))


@dataclass
class Rendering:
    image: torch.Tensor  # [n, H, W]
    gates: torch.Tensor | None = None  # [n, K * 4, H, W]: gate of (kernel, block row, block column) of the pixel's cell
    winner: torch.Tensor | None = None  # [n, H, W] flat index into (K, 2, 2) of the largest gate
    class_gates: torch.Tensor | None = None  # [n, C, H, W]: summed gate of each kernel class
    class_parts: torch.Tensor | None = None  # [n, C, H, W]: what each class's experts add


def _ungroup(grouped: torch.Tensor, rows: Grouping, cols: Grouping) -> torch.Tensor:
    """[..., Cy, Pr, Cx, Pc] -> [..., H, W]."""
    lead = grouped.shape[:-4]
    cy, pr, cx, pc = grouped.shape[-4:]
    flat = grouped.reshape(*lead, cy * pr, cx * pc)
    return flat.index_select(-2, rows.take).index_select(-1, cols.take)


def _group(values: torch.Tensor, rows: Grouping, cols: Grouping) -> torch.Tensor:
    """[n, H, W] -> [n, 1, 1, 1, Cy, Pr, Cx, Pc]: the inverse of _ungroup (repeated slots stay 0: never read)."""
    n = values.shape[0]
    (cy, pr), (cx, pc) = rows.grouped.shape, cols.grouped.shape
    by_row = values.new_zeros(n, cy * pr, values.shape[2])
    by_row[:, rows.take] = values
    full = values.new_zeros(n, cy * pr, cx * pc)
    full[:, :, cols.take] = by_row
    return full.view(n, 1, 1, 1, cy, pr, cx, pc)


def _hard_gate(logits: torch.Tensor, experts: torch.Tensor, gate: str, target: torch.Tensor | None, generator) -> torch.Tensor:
    """[n, Cy, Pr, Cx, Pc]: every pixel rendered by ONE of the kernels of its 2 x 2 blocks (a
    block whose tent weight is zero there, or that lies beyond the slice, is never chosen):
    'top1' the kernel with the largest gate weight, 'random' one drawn uniformly (the paper's
    random gate), 'oracle' the one whose expert value is closest to `target`, the clean residual
    (the best-per-pixel bound: it needs the clean image, so only a benchmark can draw it)."""
    n, k = logits.shape[:2]
    flat_logits = logits.reshape(n, 4 * k, *logits.shape[4:])
    flat_experts = experts.expand_as(logits).reshape(n, 4 * k, *logits.shape[4:])
    valid = flat_logits > 0.5 * OUTSIDE_LOG_WEIGHT
    if gate == "top1":
        score = flat_logits
    elif gate == "random":
        score = torch.rand(flat_logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    elif gate == "oracle":
        if target is None:
            raise ValueError("the oracle gate needs the clean target")
        score = -(flat_experts - target.reshape(n, 1, *logits.shape[4:])) ** 2
    else:
        raise ValueError(f"gate must be one of {GATES}, not {gate!r}")
    score = torch.where(valid, score, torch.full_like(score, -math.inf))
    return flat_experts.gather(1, score.argmax(dim=1, keepdim=True))[:, 0]


def render(
    kernels: KernelSet, rows: torch.Tensor, cols: torch.Tensor, block: int, *, gates: bool = False, winner: bool = False,
    classes: torch.Tensor | None = None, class_count: int = 0, gate: str = "soft", target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Rendering:
    """The mixture at the positions rows [H] x cols [W] (input pixel coordinates). `classes`
    [n, K, By, Bx] (labels 1..class_count per kernel) asks for the per-class gate and part maps.
    `gate` other than 'soft' renders the gate ablations of _hard_gate (`target` [n, H, W], the
    clean residual, for 'oracle'; `generator` seeds 'random'); gate and class maps stay the soft gate's.

    The gate runs over the kernels of the 2 x 2 blocks around the pixel (the block holding it and
    the neighbours on its side), each block's kernels weighted by a bilinear tent of the pixel's
    distance to that block's centre (its log added to the logits): a block's weight falls to zero
    exactly where it leaves the set, so the rendered image is continuous everywhere, and each
    pixel evaluates 4K kernels rather than the 9K of a full 3 x 3 neighbourhood."""
    by, bx = kernels.centre_y.shape[2:]
    rows, cols = rows.to(kernels.centre_y), cols.to(kernels.centre_y)
    gy, gx = group_positions(rows, block, by), group_positions(cols, block, bx)
    cells_y, cells_x = by + 1, bx + 1
    y = gy.grouped.view(cells_y, -1, 1, 1)  # broadcasts against [n, K, 2, 2, Cy, 1, Cx, 1]
    x = gx.grouped.view(1, 1, cells_x, -1)
    tent_y = _log_tent(gy.tent).permute(2, 0, 1).reshape(1, 1, 2, 1, cells_y, -1, 1, 1)
    tent_x = _log_tent(gx.tent).permute(2, 0, 1).reshape(1, 1, 1, 2, 1, 1, cells_x, -1)
    pyy, pyx, pxx = kernels.precision()
    dy = y - cell_neighbours(kernels.centre_y, 0.0)  # [n, K, 2, 2, Cy, Pr, Cx, 1]
    dx = x - cell_neighbours(kernels.centre_x, 0.0)  # [n, K, 2, 2, Cy, 1, Cx, Pc]
    row_part = (cell_neighbours(kernels.log_weight, OUTSIDE_LOG_WEIGHT) + tent_y) - 0.5 * cell_neighbours(pyy, 1.0) * dy * dy
    col_part = tent_x - 0.5 * cell_neighbours(pxx, 1.0) * dx * dx
    logits = torch.addcmul(row_part + col_part, -cell_neighbours(pyx, 0.0) * dy, dx)
    n, k = logits.shape[:2]
    best = _first_largest(logits.reshape(n, 4 * k, *logits.shape[4:])) if winner else None
    experts = torch.addcmul(cell_neighbours(kernels.value, 0.0) + cell_neighbours(kernels.slope_y, 0.0) * dy, cell_neighbours(kernels.slope_x, 0.0), dx)
    hard = None
    if gate != "soft":
        grouped_target = None if target is None else _group(target.to(logits), gy, gx)
        hard = _ungroup(_hard_gate(logits, experts, gate, grouped_target, generator), gy, gx)
    # Softmax over the kernels and blocks (dims 1-3) of each output pixel; the normalisation is
    # applied after the sums, on one value per pixel (in place where no gradient is wanted).
    inplace = not torch.is_grad_enabled()
    shifted = logits.sub_(logits.amax(dim=(1, 2, 3), keepdim=True)) if inplace else logits - logits.amax(dim=(1, 2, 3), keepdim=True)
    unnormalised = shifted.exp_() if inplace else torch.exp(shifted)
    total = unnormalised.sum(dim=(1, 2, 3))
    parts = experts.mul_(unnormalised) if inplace else unnormalised * experts
    image = _ungroup(parts.sum(dim=(1, 2, 3)) / total, gy, gx)
    out = Rendering(image if hard is None else hard)
    if gates:
        out.gates = _ungroup((unnormalised / total[:, None, None, None]).reshape(n, 4 * k, *logits.shape[4:]), gy, gx)
    if winner:
        out.winner = _ungroup(best, gy, gx)
    if classes is not None:
        near = cell_neighbours(classes.to(logits), 0.0)
        out.class_gates = torch.stack([_ungroup((unnormalised * (near == c)).sum(dim=(1, 2, 3)) / total, gy, gx) for c in range(1, class_count + 1)], 1)
        out.class_parts = torch.stack([_ungroup((parts * (near == c)).sum(dim=(1, 2, 3)) / total, gy, gx) for c in range(1, class_count + 1)], 1)
    return out


def _first_largest(values: torch.Tensor) -> torch.Tensor:
    """argmax along dim 1 (ties: the first): a loop over that short axis is several times faster
    than torch.argmax along a middle axis on the CPU."""
    best, index = values[:, 0], torch.zeros(values[:, 0].shape, dtype=torch.int64, device=values.device)
    for i in range(1, values.shape[1]):
        better = values[:, i] > best
        best = torch.where(better, values[:, i], best)
        index = torch.where(better, i, index)
    return index


def winner_fields(fields: list[torch.Tensor], winner: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, block: int) -> list[torch.Tensor]:
    """Per-kernel fields [n, K, By, Bx] read at each output pixel's winning kernel: [n, H, W] each."""
    by, bx = fields[0].shape[2:]
    cy, _ = cell_coordinates(rows.to(fields[0]), block, by)
    cx, _ = cell_coordinates(cols.to(fields[0]), block, bx)
    k, i, j = winner // 4, (winner % 4) // 2, winner % 2
    y = (cy.view(1, -1, 1) - 1 + i).clamp(0, by - 1)
    x = (cx.view(1, 1, -1) - 1 + j).clamp(0, bx - 1)
    slice_index = torch.arange(winner.shape[0], device=winner.device).view(-1, 1, 1).expand_as(winner)
    return [f[slice_index, k, y, x] for f in fields]
