"""`moemri bench superres`: thick slices (factor 2..7) and in-plane reduction (x2, x4) of the
validation head, restored onto its 1 mm grid; PSNR, SSIM, correlation and tissue Dice in the head
mask for every super-resolution method; then seconds and peak memory per 1 mm head."""
from __future__ import annotations

import sys

import numpy as np

from ..methods.base import SPACING_OPTION
from ..methods.registry import all_methods
from ..volume import Volume
from .cases import validation_volume
from .measure import timing_table, write_report
from .table import markdown_table

THICK_FACTORS = (2, 3, 4, 5, 6, 7)
IN_PLANE_FACTORS = (2, 4)
TIMING_CASE = ("thick", 5)


def _crop_to_multiple(volume: Volume, factors_zyx) -> Volume:
    """Drop trailing voxels so each axis divides by its factor: the low-resolution grid then
    covers exactly the reference's extent and the restored grid equals the reference grid."""
    shape = volume.array.shape
    keep = tuple(n - n % f for n, f in zip(shape, factors_zyx))
    return Volume(volume.array[: keep[0], : keep[1], : keep[2]].copy(), volume.spacing, volume.origin, volume.direction, volume.name)


def make_case(head: Volume, kind: str, factor: int) -> tuple[Volume, Volume]:
    """(reference on the 1 mm grid, low-resolution input)."""
    from ..degrade.resolution import blur_decimate, thick_slices

    if kind == "thick":
        reference = _crop_to_multiple(head, (factor, 1, 1))
        return reference, thick_slices(reference, factor, axis="z")
    reference = _crop_to_multiple(head, (1, factor, factor))
    return reference, blur_decimate(reference, factor)


def _on_reference_grid(result: Volume, reference: Volume) -> np.ndarray:
    if result.same_geometry(reference, atol=1e-4):
        return result.array
    from ..degrade.resolution import resample_to_grid

    return resample_to_grid(result, reference, interpolator="linear").array


def _score_rows(case_name: str, reference: Volume, low: Volume, chosen, device: str) -> list[list]:
    from ..masks import head_mask
    from ..metrics import pearson, psnr, ssim3d, tissue_dice

    mask = head_mask(reference.array)
    data_range = float(reference.array[mask].max())
    rows = []
    for variant in chosen:
        result = variant.run(low, device, options={SPACING_OPTION: reference.spacing})
        array = _on_reference_grid(result.image, reference)
        rows.append(
            [
                case_name,
                "x".join(f"{s:.2g}" for s in low.spacing),
                variant.label,
                psnr(reference.array, array, mask, data_range=data_range),
                ssim3d(reference.array, array, mask, data_range=data_range),
                pearson(reference.array, array, mask),
                tissue_dice(reference.array, array, mask)["mean"],
            ]
        )
        print("  " + " | ".join(str(v) for v in rows[-1]), file=sys.stderr, flush=True)
    return rows


HEADER = ["case", "input spacing mm", "method", "PSNR dB", "SSIM", "correlation", "tissue Dice"]


def run_benchmark(methods=None, quick=False, out=None, device="auto", echo=print, fresh=False) -> int:
    from .remix_cases import remix_cases
    from .variants import variants

    chosen = variants(m for m in all_methods("superres") if m.availability() is None and (not methods or m.info.name in methods))
    head = validation_volume()
    cases = [("thick", f) for f in ((2, 5) if quick else THICK_FACTORS)] + [("in-plane", f) for f in ((2,) if quick else IN_PLANE_FACTORS)]
    rows = []
    for kind, factor in cases:
        reference, low = make_case(head, kind, factor)
        rows += _score_rows(f"{kind} x{factor}", reference, low, chosen, device)
    quality = markdown_table(HEADER, rows)

    # REMIx's realistic acquisitions: one oblique anisotropic scan per voxel-volume bin.
    realistic = []
    for name, reference, low in remix_cases(head, bins=(3, 5) if quick else (2, 3, 4, 5, 6, 7)):
        realistic += _score_rows(name, reference, low, chosen, device)
    realistic_table = markdown_table(HEADER, realistic)

    reference, low = make_case(head, *TIMING_CASE)
    timing = timing_table(chosen, lambda variant: variant.run(low, device, options={SPACING_OPTION: reference.spacing}), device)
    spacing = "x".join(f"{s:g}" for s in low.spacing)
    report = (
        "## Super-resolution quality in the head mask, validation head restored to 1 mm\n\n"
        + quality
        + "\n\n## Realistic acquisitions (REMIx bins: anisotropic, rotated, slice profile), restored to 1 mm\n\n"
        + realistic_table
        + f"\n\n## Seconds and peak memory, whole head from {spacing} mm to 1 mm\n\n"
        + timing
        + "\n"
    )
    write_report(report, out, echo)
    return 0
