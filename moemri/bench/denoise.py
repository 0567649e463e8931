"""`moemri bench denoise`: PSNR/SSIM in the head mask against the noisy input and the classical
denoisers, per clinical copy, noise type and level; then seconds and peak memory per 1 mm head."""
from __future__ import annotations

import sys

from ..methods.registry import all_methods
from .cases import DENOISE_LEVELS, denoise_cases, validation_volume
from .measure import timing_table, write_report
from .table import markdown_table

WHOLE_HEAD_LEVEL = 5.0


def _available(names, device) -> list:
    methods = [m for m in all_methods("denoise") if m.availability() is None]
    if names:
        by_name = {m.info.name: m for m in all_methods("denoise")}
        missing = [n for n in names if n not in by_name]
        if missing:
            from ..errors import InputError

            raise InputError(f"no denoise method {', '.join(missing)}")
        methods = [by_name[n] for n in names if by_name[n].availability() is None]
    return methods


def _score(case, array) -> tuple[float, float]:
    from ..metrics import psnr, ssim3d

    data_range = float(case.clean.array[case.mask].max())
    return psnr(case.clean.array, array, case.mask, data_range=data_range), ssim3d(case.clean.array, array, case.mask, data_range=data_range)


def _scores(cache, case, method, device) -> tuple[float, float]:
    key = f"{case.copy}|{'varying' if case.varying else 'stationary'}|{case.level:g}|{method.label}"
    cached = cache.get(key) if method.info.classical else None
    if cached:
        return tuple(cached["value"])
    p, s = _score(case, method.run(case.noisy, device).image.array)
    if method.info.classical:
        cache.put(key, [p, s])
    return p, s


def run_benchmark(methods=None, quick=False, out=None, device="auto", echo=print, fresh=False) -> int:
    from .score_cache import ScoreCache

    cache = ScoreCache("denoise", enabled=not fresh)
    from .variants import variants

    chosen = variants(_available(methods, device))
    levels = (3, 9) if quick else DENOISE_LEVELS
    copies = ("1mm",) if quick else ("1mm", "2mm", "2x2x3mm-8bit")
    varying = (False,) if quick else (False, True)
    header = ["copy", "noise", "level %", "noisy"] + [v.label for v in chosen]
    rows = []
    for case in denoise_cases(levels=levels, copies=copies, varying=varying):
        p, s = _score(case, case.noisy.array)
        row = [case.copy, "varying" if case.varying else "stationary", f"{case.level:g}", f"{p:.2f} / {s:.3f}"]
        for method in chosen:
            p, s = _scores(cache, case, method, device)
            row.append(f"{p:.2f} / {s:.3f}")
        rows.append(row)
        print(f"  {' | '.join(row)}", file=sys.stderr, flush=True)  # progress while the table grows
    quality = markdown_table(header, rows)

    from ..degrade.noise import add_rician

    head = validation_volume()
    noisy, _ = add_rician(head, WHOLE_HEAD_LEVEL, seed=7, varying=False)
    timing = timing_table(chosen, lambda variant: variant.run(noisy, device), device, cache=cache)
    shape = "x".join(str(n) for n in head.size_xyz)
    report = (
        "## Denoising quality: PSNR (dB) / SSIM in the head mask, validation head (central 64 mm slab)\n\n"
        + quality
        + f"\n\n## Seconds and peak memory, whole 1 mm head ({shape}), {WHOLE_HEAD_LEVEL:g} % Rician\n\n"
        + timing
        + "\n"
    )
    patch = [v for v in chosen if v.method.info.name == "smoe-patch" and (v.experts or 1) > 1]
    if patch:
        from . import gate_ablation

        # Stationary noise only: the ablation runs K + 3 mixtures per case.
        cases = list(denoise_cases(levels=levels, copies=copies, varying=(False,)))
        content_case = next(c for c in cases if c.copy == "1mm" and c.level == (5 if 5 in levels else levels[0]))
        report += "\n" + gate_ablation.run(cases, sorted(v.experts for v in patch), content_case)
    write_report(report, out, echo)
    return 0
