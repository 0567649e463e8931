"""The frame REMIx's networks see: the thick (slice) axis first, then the coarser in-plane axis,
then the finer one, and the input's spacing in that order as constant conditioning channels.

Why: a 3-D U-Net given only the B-spline image cannot tell a 1x1x5 mm scan from a 2.2x2.2x1 mm one
of the same voxel volume, nor along which axis the detail is missing; with the spacing as input and
the slice axis always in the same place, one network can learn what each acquisition lacks.
"""
from __future__ import annotations

import math

import numpy as np

CONDITION_CHANNELS = 3


def canonical_order(spacing_zyx) -> tuple[int, int, int]:
    """Array axes (of a (z, y, x) array) ordered thickest first; ties keep the array order."""
    spacing = [float(s) for s in spacing_zyx]
    return tuple(sorted(range(3), key=lambda a: (-round(spacing[a], 3), a)))


def to_canonical(array: np.ndarray, order) -> np.ndarray:
    return np.transpose(array, tuple(order))


def from_canonical(array: np.ndarray, order) -> np.ndarray:
    return np.transpose(array, tuple(np.argsort(order)))


def condition_values(native_spacing_zyx, order) -> np.ndarray:
    """The native spacing in canonical order, as log2(mm): 0 for 1 mm, 2.8 for 7 mm."""
    return np.array([math.log2(max(float(native_spacing_zyx[a]), 0.25)) for a in order], np.float32)


def with_condition(block: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(1 + 3, z, y, x): the image and one constant channel per conditioning value."""
    out = np.empty((1 + len(values),) + block.shape, np.float32)
    out[0] = block
    for c, v in enumerate(values):
        out[1 + c] = v
    return out
