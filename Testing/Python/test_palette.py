"""The one expert palette: Okabe-Ito first, then distinct colours for any number of experts."""
from __future__ import annotations

import itertools

import pytest

from moemri.palette import OKABE_ITO, expert_colour, expert_colours


def test_the_first_eight_experts_get_okabe_ito_without_black():
    assert expert_colours(8) == list(OKABE_ITO)
    assert (0, 0, 0) not in OKABE_ITO and len(set(OKABE_ITO)) == 8


def test_the_smoe_palette_is_the_same_tuple():
    # The SMoE's legend takes its colours from this one palette.
    from moemri.methods.smoe import method
    from moemri.palette import expert_colour

    assert method.expert_colour is expert_colour
    PALETTE = [expert_colour(k) for k in range(1, 9)]

    assert tuple(PALETTE) == OKABE_ITO


@pytest.mark.parametrize("k", [9, 16, 32, 64])
def test_more_than_eight_experts_get_distinct_colours(k):
    colours = expert_colours(k)
    assert len(colours) == k and len(set(colours)) == k
    assert all(0 <= c <= 255 for rgb in colours for c in rgb)
    distances = [sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5 for a, b in itertools.combinations(colours, 2)]
    assert min(distances) >= (60 if k <= 32 else 20), "two experts look alike"
    assert min(max(rgb) for rgb in colours) > 100, "a colour near black vanishes on the overlay"


def test_an_experts_colour_does_not_depend_on_how_many_there_are():
    assert expert_colours(40)[:12] == expert_colours(12)
    assert [expert_colour(label) for label in range(1, 41)] == expert_colours(40)
    assert expert_colours(0) == []
    with pytest.raises(ValueError):
        expert_colour(0)
