"""The benchmark's test cases, all made from the validation volume (never trained on).

Denoising: Rician noise at each level, stationary and coil-like varying, on the 1 mm head and on
two clinical-looking copies (2 mm; 2x2x3 mm quantised to 8 bit). The quality tables use a central
axial slab of the head (SLAB_MM) so that slow baselines such as ANTs fit in one sitting on a
2-core machine; seconds and memory are measured separately on the whole 1 mm head.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..volume import Volume

SLAB_MM = 64.0
DENOISE_LEVELS = (1, 3, 5, 7, 9)
COARSE_COPIES = {"1mm": None, "2mm": ((2.0, 2.0, 2.0), None), "2x2x3mm-8bit": ((2.0, 2.0, 3.0), 8)}
BENCH_SEED = 1234


@dataclass
class DenoiseCase:
    copy: str
    level: float
    varying: bool
    clean: Volume
    noisy: Volume
    mask: np.ndarray


def validation_volume() -> Volume:
    from ..data.fetch import fetch_volume
    from ..data.sources import SOURCES
    from ..io import read_volume

    (source,) = [s for s in SOURCES if s.role == "validate"]
    return read_volume(fetch_volume(source.id))


def central_slab(volume: Volume, slab_mm: float = SLAB_MM) -> Volume:
    """The central `slab_mm` of the head along k (axial for the validation volume)."""
    from ..masks import head_mask

    mask = head_mask(volume.array)
    ks = np.nonzero(mask.any(axis=(1, 2)))[0]
    centre = (ks[0] + ks[-1]) // 2
    half = int(round(slab_mm / volume.spacing[2] / 2))
    k0, k1 = max(centre - half, 0), min(centre + half, volume.array.shape[0])
    origin = np.asarray(volume.origin) + volume.direction[:, 2] * k0 * volume.spacing[2]
    return Volume(volume.array[k0:k1].copy(), volume.spacing, tuple(origin), volume.direction, volume.name + "-slab")


def clinical_copies(volume: Volume) -> dict[str, Volume]:
    from ..degrade.resolution import coarse_copy

    copies = {}
    for name, recipe in COARSE_COPIES.items():
        if recipe is None:
            copies[name] = volume
        else:
            spacing, bits = recipe
            copies[name] = coarse_copy(volume, spacing, quantise_bits=bits)
    return copies


def denoise_cases(levels=DENOISE_LEVELS, copies=tuple(COARSE_COPIES), varying=(False, True)):
    from ..degrade.noise import add_rician
    from ..masks import head_mask

    slab = central_slab(validation_volume())
    all_copies = clinical_copies(slab)
    for copy in copies:
        clean = all_copies[copy]
        mask = head_mask(clean.array)
        for level in levels:
            for is_varying in varying:
                seed = BENCH_SEED + int(level * 10) + (1000 if is_varying else 0)
                noisy, _ = add_rician(clean, level, seed=seed, varying=is_varying)
                yield DenoiseCase(copy, level, is_varying, clean, noisy, mask)
