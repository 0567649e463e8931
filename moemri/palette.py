"""The one palette of expert colours: every expert map, legend and colour table takes its colours here.

The first eight are Okabe & Ito's colour-blind-safe palette (their black left out: it vanishes on
an overlay; their grey kept last). Past eight, colours continue along golden-angle hue steps, each
at least a set RGB distance from all before it, so a mixture of 16 or 32 experts still gets
distinct colours. The sequence does not depend on how many experts are asked for: expert 3 has the
same colour at K = 4 and at K = 16.
"""
from __future__ import annotations

import colorsys
from functools import lru_cache

RGB = tuple[int, int, int]

OKABE_ITO: tuple[RGB, ...] = (
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (0, 158, 115),  # bluish green
    (240, 228, 66),  # yellow
    (0, 114, 178),  # blue
    (213, 94, 0),  # vermillion
    (204, 121, 167),  # reddish purple
    (153, 153, 153),  # grey
)
GOLDEN_HUE_STEP = 0.618033988749895  # hue turns per step: consecutive hues as far apart as possible
# (saturation, value) rings the extra hues cycle through: saturated enough to read as a colour
# over a grey-scale head, bright enough to stay away from black.
_RINGS = ((0.80, 0.95), (0.55, 0.80), (0.95, 0.65))
START_MIN_DISTANCE = 60.0  # RGB units; relaxed step by step only once the space runs out


def expert_colours(k: int) -> list[RGB]:
    """K distinct 0-255 RGB colours for experts 1..K, in label order."""
    if k < 0:
        raise ValueError(f"number of experts must be >= 0, not {k}")
    return list(_sequence(k))


def expert_colour(label: int) -> RGB:
    """The colour of expert `label` (1-based, as in expert label maps)."""
    if label < 1:
        raise ValueError(f"expert labels start at 1 (0 is the background), not {label}")
    return _sequence(label)[label - 1]


@lru_cache(maxsize=None)
def _sequence(k: int) -> tuple[RGB, ...]:
    colours = list(OKABE_ITO[:k])
    step, min_distance = 0, START_MIN_DISTANCE
    while len(colours) < k:
        saturation, value = _RINGS[step % len(_RINGS)]
        hue = (step * GOLDEN_HUE_STEP) % 1.0
        candidate = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value))
        step += 1
        if candidate not in colours and all(_distance(candidate, c) >= min_distance for c in colours):
            colours.append(candidate)
        elif step % 256 == 0:
            min_distance *= 0.8
    return tuple(colours)


def _distance(a: RGB, b: RGB) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5
