"""Classical super-resolution baselines: interpolate onto a finer grid over the same extent.

Linear, cubic B-spline and Hamming windowed-sinc interpolation, as Slicer's Resample Scalar
Volume module offers them. They add no detail; every learned method must beat them.
"""
from __future__ import annotations

from ..volume import Volume, grid_with_spacing
from ..progress import no_progress
from .base import SPACING_OPTION, MethodInfo, MethodResult, OptionSpec, resolve_experts, resolve_options
from .registry import register

SPACING_SPEC = OptionSpec(SPACING_OPTION, "floats", (1.0, 1.0, 1.0), "output voxel size (x, y, z) in mm", minimum=0.1, maximum=10.0)


def check_spacing(spacing) -> tuple[float, float, float]:
    from ..errors import InputError

    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"the output spacing must be three positive numbers in mm, got {spacing}")
    return spacing


class Resampler:
    def __init__(self, name: str, interpolator: str, title: str, description: str, reference: str):
        self.interpolator = interpolator
        self.info = MethodInfo(
            name=name,
            task="superres",
            title=title,
            description=description,
            reference=reference,
            classical=True,
            options=(SPACING_SPEC,),
        )

    def availability(self) -> str | None:
        return None

    def run(self, volume: Volume, *, experts=None, device="auto", progress=no_progress, options=None) -> MethodResult:
        from ..degrade.resolution import resample_to_grid

        resolve_experts(self.info, experts)
        opts = resolve_options(self.info, options)
        grid = grid_with_spacing(volume, check_spacing(opts[SPACING_OPTION]))
        progress(0.0, f"{self.interpolator} interpolation")
        out = resample_to_grid(volume, grid, interpolator=self.interpolator)
        progress(1.0, "done")
        return MethodResult(out, metadata={"device": "cpu", "spacing": list(grid.spacing)})


register(Resampler("linear", "linear", "Linear interpolation (classical)", "Trilinear interpolation onto the finer grid.", "SimpleITK / Slicer Resample Scalar Volume"))
register(Resampler("bspline", "bspline", "B-spline interpolation (classical)", "Cubic B-spline interpolation onto the finer grid.", "Unser, IEEE SPM 1999 (SimpleITK)"))
register(Resampler("windowed-sinc", "windowed_sinc", "Windowed-sinc interpolation (classical)", "Hamming-windowed sinc interpolation onto the finer grid.", "Meijering et al., 1999 (SimpleITK)"))
