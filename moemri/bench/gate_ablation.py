"""The SMoE denoisers' gate ablation (Deng and Campbell 2025, Table 4) and what each expert holds.

For every patch-gated expert count K > 1, on each case: the predicted gate next to every patch
sent to one expert (each expert in turn; the best and the worst are reported), a random gate
(seeded), and the oracle bound (per 48x48 patch the expert with the lowest error against the
clean image). The gap predicted - best single expert is what routing earns; oracle - predicted is
what a better gate could still earn; a small oracle gap means the experts themselves are alike.
Then, for the 1 mm head at 5 %, each expert's share of the head's voxels and, among its voxels,
the shares of CSF, grey and white matter (metrics.tissue_classes of the clean image), and of the
head's outer 5 mm rim.
"""
from __future__ import annotations

import sys

import numpy as np

from .table import markdown_table

RIM_MM = 5.0
ABLATION_SEED = 11


def _psnr(case, array) -> float:
    from ..metrics import psnr

    return psnr(case.clean.array, array, case.mask, data_range=float(case.clean.array[case.mask].max()))


def _run(case, experts, ablation=None):
    from ..methods.base import no_progress
    from ..methods.smoe.method import ORIENTATIONS_OPTION, denoise_volume

    return denoise_volume(
        case.noisy, "patch", experts, "auto", no_progress, 0.0, ORIENTATIONS_OPTION.default, ablation=ablation, clean=case.clean.array
    )


def ablation_rows(cases, expert_counts, echo=None) -> tuple[list[str], list[list[str]]]:
    header = ["copy", "noise", "level %", "K", "predicted", "best single", "worst single", "random", "oracle", "predicted - best single", "predicted - random"]
    rows = []
    for case in cases:
        for k in expert_counts:
            predicted = _psnr(case, _run(case, k).image.array)
            singles = [_psnr(case, _run(case, k, ("expert", e)).image.array) for e in range(k)]
            random = _psnr(case, _run(case, k, ("random", ABLATION_SEED)).image.array)
            oracle = _psnr(case, _run(case, k, ("oracle",)).image.array)
            best = int(np.argmax(singles))
            row = [
                case.copy, "varying" if case.varying else "stationary", f"{case.level:g}", str(k), f"{predicted:.2f}",
                f"{singles[best]:.2f} (#{best + 1})", f"{min(singles):.2f} (#{int(np.argmin(singles)) + 1})",
                f"{random:.2f}", f"{oracle:.2f}", f"{predicted - singles[best]:+.2f}", f"{predicted - random:+.2f}",
            ]
            rows.append(row)
            if echo:
                echo(f"  {' | '.join(row)}")
    return header, rows


def expert_content_rows(case, expert_counts, kinds=("patch", "segment")) -> tuple[list[str], list[list[str]]]:
    """Per expert: share of head voxels, and of its voxels CSF / GM / WM / outer rim (%)."""
    from ..methods.base import no_progress
    from ..methods.smoe.anatomy import depth_below_surface
    from ..methods.smoe.method import denoise_volume
    from ..metrics import tissue_classes

    tissue, _ = tissue_classes(case.clean.array, case.mask)
    rim = (depth_below_surface(case.mask, case.clean.spacing) < RIM_MM) & case.mask
    header = ["method", "expert", "name", "voxels %", "CSF %", "GM %", "WM %", "outer rim %"]
    rows = []
    for kind in kinds:
        for k in expert_counts if kind == "patch" else (4,):
            result = denoise_volume(case.noisy, kind, k, "auto", no_progress, 0.0, 1)
            labels = result.expert_map.array
            names = {e.label: e.name for e in result.experts}
            head = labels > 0
            for e in range(1, k + 1):
                own = labels == e
                n = max(int(own.sum()), 1)
                rows.append(
                    [
                        f"smoe-{kind} K={k}", str(e), names.get(e, ""), f"{100 * own.sum() / max(head.sum(), 1):.0f}",
                        *(f"{100 * float((own & (tissue == t)).sum()) / n:.0f}" for t in (1, 2, 3)),
                        f"{100 * float((own & rim).sum()) / n:.0f}",
                    ]
                )
    return header, rows


def run(cases, expert_counts, content_case, echo=print) -> str:
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    header, rows = ablation_rows(cases, expert_counts, echo=progress)
    content_header, content = expert_content_rows(content_case, expert_counts)
    return (
        "## Gate ablation, smoe-patch (Deng and Campbell 2025, Table 4): PSNR (dB) in the head mask\n\n"
        + markdown_table(header, rows)
        + f"\n\n## What each expert holds ({content_case.copy}, {content_case.level:g} % {'varying' if content_case.varying else 'stationary'})\n\n"
        + markdown_table(content_header, content)
        + "\n"
    )
