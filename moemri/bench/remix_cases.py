"""REMIx's benchmark cases: one realistic low-resolution acquisition of the validation head per
voxel-volume bin (REMIx, Morell-Ortega et al. MIDL 2024, Table 1), for every super-resolution method to restore.

Each case is `random_acquisition`'s native image: an anisotropic grid of the bin's voxel volume,
rotated a few degrees, with a thick-slice profile. Bins alternate between thick-slice scans
(in-plane ~1 mm, one thick axis) and mixed ones (the volume shared between in-plane and
through-plane), so both kinds are scored. The draws are previewed from a copy of the seeded
generator, so only the chosen acquisitions are simulated.
"""
from __future__ import annotations

import copy

import numpy as np

from ..volume import Volume

REMIX_BINS = (2, 3, 4, 5, 6, 7)
REMIX_SEED = 1234
MIN_ROTATION_DEG = 3.0  # every case is oblique enough that no method can rely on axis alignment


def _is_thick_slice(spacing) -> bool:
    in_plane = sorted(spacing)[:2]
    return abs(in_plane[0] * in_plane[1] - 1.0) < 1e-6


def _rotation_deg(rotation: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))


def remix_cases(head: Volume, bins=REMIX_BINS, seed: int = REMIX_SEED) -> list[tuple[str, Volume, Volume]]:
    """[(case name, reference = `head`, low-resolution native input)] for each bin in `bins`:
    even positions in `bins` are thick-slice scans, odd ones mixed in-plane/through-plane."""
    from ..degrade.resolution import MAX_ROTATION_DEG, _draw_native_spacing, _draw_rotation, random_acquisition

    cases = []
    for position, bin_ in enumerate(bins):
        want_thick = position % 2 == 0
        for attempt in range(1000):
            rng = np.random.default_rng([seed, int(bin_), attempt])
            preview = copy.deepcopy(rng)  # random_acquisition draws spacing, then rotation
            spacing = _draw_native_spacing(int(bin_), preview)
            rotation = _draw_rotation(MAX_ROTATION_DEG, preview)
            if _is_thick_slice(spacing) == want_thick and _rotation_deg(rotation) >= MIN_ROTATION_DEG:
                break
        else:  # pragma: no cover - the two kinds are drawn half the time each
            raise RuntimeError(f"no {'thick-slice' if want_thick else 'mixed'} draw for bin {bin_}")
        acquisition = random_acquisition(head, int(bin_), rng)
        kind = "thick slices" if want_thick else "mixed"
        sizes = "x".join(f"{s:.2f}" for s in acquisition.spacing)
        name = f"bin {bin_} mm3 ({kind} {sizes} mm, {_rotation_deg(acquisition.rotation):.0f} deg)"
        cases.append((name, head, acquisition.native))
    return cases
