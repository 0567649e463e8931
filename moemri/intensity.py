"""Robust intensity normalisation to roughly [0, 1], and its exact inverse.

Choice: 0 stays 0 and the 99.5th percentile of the head (foreground) maps to 1. Keeping 0 fixed
makes the map a pure scale for magnitude images, so Rician noise keeps its shape and the noise
level scales with it. Taking the percentile over the head, not the whole field of view, stops the
air around the head from pulling it down; the 99.5th, not the maximum, keeps a bright tail of fat
or vessels from squashing the brain into the bottom of the range. That tail ends up above 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UPPER_PERCENTILE = 99.5


@dataclass(frozen=True)
class Scale:
    """normalised = (input - offset) / width; `undo` maps back to the input's units."""

    offset: float  # input units that map to 0
    width: float  # input units between 0 and 1 after normalising

    def apply(self, array: np.ndarray) -> np.ndarray:
        return ((np.asarray(array, dtype=np.float64) - self.offset) / self.width).astype(np.float32)

    def undo(self, array: np.ndarray) -> np.ndarray:
        return (np.asarray(array, dtype=np.float64) * self.width + self.offset).astype(np.float32)


def normalise(array: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, Scale]:
    """Map `array` so 0 -> 0 and the 99.5th percentile of the foreground -> 1 (float32).

    `mask` marks the head; without one the foreground is every voxel brighter than the volume's
    mean, a crude but robust head/air split for MR. Images with negative values (already shifted
    by some earlier step) have their minimum mapped to 0 instead of 0 itself.
    """
    values = np.asarray(array, dtype=np.float64)
    offset = min(float(values.min()), 0.0)
    foreground = values[mask.astype(bool)] if mask is not None else values[values > values.mean()]
    if foreground.size == 0:
        foreground = values.ravel()
    top = float(np.percentile(foreground, UPPER_PERCENTILE))
    if top <= offset:
        top = float(values.max())  # a mostly empty head: fall back to the brightest voxel
    width = top - offset if top > offset else 1.0  # constant image: nothing to scale
    scale = Scale(offset=offset, width=width)
    return scale.apply(values), scale
