"""Issue 14's benchmark of MoEDiff-SR: `python -m moemri.bench.moediff [--slab MM] [--out FILE]`.

Quality: in-plane x2 and x4 and through-plane (thick slices) x4 of the validation head, restored
to 1 mm, scored as `moemri bench superres` scores them (its case maker and scorer: PSNR, SSIM,
correlation, tissue Dice in the head mask), for B-spline, windowed sinc, REMIx and N-SMoE where
present, and MoEDiff-SR with E = 1, 3 (and 5) at 5, 10 and 25 DDIM steps. The cases are a central
axial slab of the head (SLAB_MM, as the denoising benchmark does) so that the 25-step runs fit on a
2-core machine; seconds and peak memory are measured on the whole 1 mm head. Last, each expert's
share of head tokens and the CSF/GM/WM shares of its voxels (the core's three-class segmentation).
"""
from __future__ import annotations

import argparse
import sys

from ..methods.base import SPACING_OPTION
from ..methods.registry import all_methods, get_method
from .cases import central_slab, validation_volume
from .measure import timing_table, write_report
from .superres import HEADER, _score_rows, make_case
from .table import markdown_table
from .variants import Variant

SLAB_MM = 24.0
CASES = (("in-plane", 2), ("in-plane", 4), ("thick", 4))
STEPS = (5, 10, 25)
BASELINES = ("bspline", "windowed-sinc", "remix", "nsmoe")


class Kept(Variant):
    """A variant that keeps its last result, so the expert shares come from the scored run."""

    last = None

    def run(self, volume, device: str, options=None):
        result = super().run(volume, device, options)
        object.__setattr__(self, "last", result)
        return result


def moediff_variants(experts=(3, 1), steps=STEPS) -> list[Variant]:
    method = get_method("moediff-sr")
    return [Kept(method, e, (("steps", s),)) for e in experts for s in steps]


def baseline_variants() -> list[Variant]:
    present = {m.info.name: m for m in all_methods("superres") if m.availability() is None}
    return [Variant(present[name], present[name].info.default_experts) for name in BASELINES if name in present]


def expert_rows(result, case: str) -> list[list]:
    rows = []
    shares = result.metadata["expert_token_shares"]
    for e, expert in enumerate(result.experts):
        tissue = result.metadata["expert_tissue_shares"][e]
        rows.append([case, f"E={len(result.experts)}", expert.name, 100 * shares[e], 100 * tissue["CSF"], 100 * tissue["GM"], 100 * tissue["WM"]])
    return rows


def run(slab_mm: float = SLAB_MM, experts=(3, 1), steps=STEPS, out=None, device="auto", echo=print) -> int:
    head = validation_volume()
    slab = central_slab(head, slab_mm)
    chosen = baseline_variants() + moediff_variants(experts, steps)
    rows, experts_table = [], []
    for kind, factor in CASES:
        reference, low = make_case(slab, kind, factor)
        rows += _score_rows(f"{kind} x{factor}", reference, low, chosen, device)
        for variant in chosen:
            if isinstance(variant, Kept) and variant.experts > 1 and dict(variant.options)["steps"] == min(steps):
                experts_table += expert_rows(variant.last, f"{kind} x{factor}")
    quality = markdown_table(HEADER, rows)
    shares = markdown_table(["case", "model", "expert", "% of head tokens", "% CSF", "% GM", "% WM"], experts_table)

    # Whole-head cost of the default setting (E = 3, 5 steps, two orientations) and of E = 1.
    reference, low = make_case(head, "in-plane", 4)
    timed = [v for v in chosen if v.method.info.name in ("bspline", "remix")] + moediff_variants(experts, (5,))
    timing = timing_table(timed, lambda v: v.run(low, device, options={SPACING_OPTION: reference.spacing}), device)
    report = (
        f"## MoEDiff-SR quality in the head mask, central {slab_mm:g} mm axial slab of the validation head, restored to 1 mm\n\n"
        + quality
        + f"\n\n## Experts at {min(steps)} steps: share of head tokens and tissue of their voxels\n\n"
        + shares
        + f"\n\n## Seconds and peak memory, whole head from {'x'.join(f'{s:g}' for s in low.spacing)} mm to 1 mm\n\n"
        + timing
        + "\n"
    )
    write_report(report, out, echo)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moemri.bench.moediff", description=__doc__.splitlines()[0])
    parser.add_argument("--slab", type=float, default=SLAB_MM, help="axial slab of the validation head for the quality table (mm)")
    parser.add_argument("--experts", type=int, nargs="+", default=[3, 1])
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves room for other jobs)")
    parser.add_argument("--out")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    return run(args.slab, tuple(args.experts), tuple(args.steps), args.out, args.device, echo=lambda s: print(s, file=sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
