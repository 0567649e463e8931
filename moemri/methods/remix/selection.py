"""Which REMIx expert a volume gets: the one whose voxel-volume bin holds the product of the
input's spacings (the paper's rule), bins [b - 0.5, b + 0.5) mm3 for b = 1..7.

Departure: an input that falls between two bin centres (at least BLEND_FROM of the way from one to
the next) gets the two nearest experts blended, their corrections weighted linearly by the voxel
volume, and the reason says so. Slice thickness and in-plane size themselves reach the networks
trained in the canonical frame as conditioning (canonical.py), so the product only picks experts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

BINS = tuple(range(1, 8))
BLEND_FROM = 0.25  # nearer than this to a bin centre (in mm3), one expert alone
ONE_NETWORK = "one network"


@dataclass(frozen=True)
class Selection:
    bin: int  # the voxel-volume bin the input falls in, clamped to 1..7
    network: str  # weights file stem: "bin3", or "one_network"
    voxel_volume_mm3: float
    reason: str  # one sentence for the user
    warnings: tuple[str, ...] = ()
    blend: tuple[tuple[str, float], ...] = ()  # (network, weight) pairs, weights summing to 1

    def __post_init__(self):
        if not self.blend:
            object.__setattr__(self, "blend", ((self.network, 1.0),))

    @property
    def expert_name(self) -> str:
        return ONE_NETWORK if self.network == "one_network" else f"{self.bin} mm3 expert"


def voxel_volume_bin(voxel_volume_mm3: float) -> int:
    """Round half up into 1..7, so 2.5 mm3 belongs to bin 3 as in [b - 0.5, b + 0.5)."""
    return int(min(max(math.floor(voxel_volume_mm3 + 0.5), BINS[0]), BINS[-1]))


def select_expert(spacing_xyz, experts: int = 7) -> Selection:
    spacing = tuple(float(s) for s in spacing_xyz)
    volume = float(math.prod(spacing))
    chosen = voxel_volume_bin(volume)
    sizes = " x ".join(f"{s:.3g}" for s in spacing)
    warnings = []
    if volume < BINS[0] - 0.5:
        warnings.append(
            f"the input voxels ({sizes} mm = {volume:.3g} mm3) are finer than the smallest bin "
            f"(0.5-1.5 mm3); it is treated as the nearest bin, 1 mm3, and little detail can be added"
        )
    elif volume >= BINS[-1] + 0.5:
        warnings.append(
            f"the input voxels ({sizes} mm = {volume:.3g} mm3) are coarser than the largest bin "
            f"(6.5-7.5 mm3); it is treated as the nearest bin, 7 mm3, though no network saw voxels this coarse"
        )
    if experts == 1:
        reason = (
            f"voxel volume {sizes} mm = {volume:.3g} mm3 (bin {chosen}); experts=1 runs the one "
            f"network trained on all bins 1-7 mm3"
        )
        return Selection(chosen, "one_network", volume, reason, tuple(warnings))
    if experts != 7:
        raise ValueError(f"REMIx has 7 experts or the one network, not {experts}")
    in_range = "" if not warnings else ", nearest bin"
    reason = (
        f"voxel volume {sizes} mm = {volume:.3g} mm3 -> {chosen} mm3 expert "
        f"(bin {chosen - 0.5:g}-{chosen + 0.5:g} mm3{in_range})"
    )
    lower = int(math.floor(volume))
    upper_weight = volume - lower
    blend = ()
    if BINS[0] <= lower < BINS[-1] and BLEND_FROM <= upper_weight <= 1 - BLEND_FROM:
        blend = ((f"bin{lower}", round(1 - upper_weight, 4)), (f"bin{lower + 1}", round(upper_weight, 4)))
        reason += (
            f"; it lies between the {lower} and {lower + 1} mm3 bin centres, so their experts are blended "
            f"{1 - upper_weight:.2f} : {upper_weight:.2f}"
        )
    return Selection(chosen, f"bin{chosen}", volume, reason, tuple(warnings), blend)
