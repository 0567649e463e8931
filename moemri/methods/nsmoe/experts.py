"""What N-SMoE's expert maps show: kernels grouped into a few named classes.

A model has K kernels in every block, thousands per slice, so the legend names classes, not
kernels: a kernel is `fine` or `broad` (geometric mean of its two scales below or above
FINE_SCALE input pixels) and `round` or oriented along one of four directions of the slice plane
(its longer axis, when the scales differ by ELONGATED or more). The expert map labels each output
voxel with the class of the kernel that has its largest gate weight; the orientation map with that
kernel's orientation alone; the kernel map with its slot (1..K) in its block.
"""
from __future__ import annotations

import math

import torch

from ...palette import expert_colour
from ...slicewise import AXIS_NAMES
from ..base import Expert
from .renderer import KernelSet

FINE_SCALE = 1.0  # input pixels
ELONGATED = 1.5  # ratio of the two scales
ORIENTATIONS = 5  # round + four directions
CLASSES = 2 * ORIENTATIONS


def orientation_labels(kernels: KernelSet) -> torch.Tensor:
    """[n, K, By, Bx] labels 1..5: round, along the columns' axis, diagonal (+rows +cols), along
    the rows' axis, diagonal (+rows -cols)."""
    a, b = kernels.scale_a, kernels.scale_b
    longer = torch.where(a >= b, kernels.angle, kernels.angle + math.pi / 2)  # direction of the longer axis
    direction = torch.remainder(torch.round(torch.remainder(longer, math.pi) / (math.pi / 4)), 4).long()
    elongated = torch.maximum(a, b) >= ELONGATED * torch.minimum(a, b)
    return torch.where(elongated, direction + 2, torch.ones_like(direction))


def class_labels(kernels: KernelSet) -> torch.Tensor:
    """[n, K, By, Bx] labels 1..10: orientation label, +5 for broad kernels."""
    broad = (kernels.scale_a * kernels.scale_b).sqrt() >= FINE_SCALE
    return orientation_labels(kernels) + ORIENTATIONS * broad.long()


def orientation_names(plane: tuple[int, int]) -> list[tuple[str, str]]:
    """(name, description) of labels 1..5 in a slice plane of array axes (rows, columns)."""
    rows, cols = (AXIS_NAMES[a] for a in plane)
    return [
        ("round", "scales within 1.5x of each other: no preferred direction (flat regions, noise)"),
        (f"along {cols}", f"elongated along the {cols} axis: an edge running along {cols}"),
        (f"diagonal {rows}+{cols}", f"elongated along {rows} and {cols} increasing together"),
        (f"along {rows}", f"elongated along the {rows} axis: an edge running along {rows}"),
        (f"diagonal {rows}-{cols}", f"elongated along {rows} increasing as {cols} decreases"),
    ]


def orientation_legend(plane: tuple[int, int]) -> list[Expert]:
    return [Expert(i + 1, name, expert_colour(i + 1), text) for i, (name, text) in enumerate(orientation_names(plane))]


def class_legend(plane: tuple[int, int]) -> list[Expert]:
    out = []
    for s, (size, what) in enumerate((("fine", f"scales under {FINE_SCALE:g} input pixel: sharp detail"), ("broad", f"scales of {FINE_SCALE:g} input pixel or more: smooth regions"))):
        for i, (name, text) in enumerate(orientation_names(plane)):
            label = s * ORIENTATIONS + i + 1
            out.append(Expert(label, f"{size} {name}", expert_colour(label), f"{what}; {text}"))
    return out


def slot_legend(kernels: int) -> list[Expert]:
    return [Expert(k, f"kernel {k}", expert_colour(k), f"the block's kernel {k} of {kernels} (its home position: {_home(k, kernels)})") for k in range(1, kernels + 1)]


def _home(k: int, kernels: int) -> str:
    from .renderer import home_offsets

    y, x = home_offsets(kernels)[k - 1].tolist()
    return f"{y:+.2f}, {x:+.2f} blocks from the block's centre (rows, columns)"
