"""The one small interface every method implements, classical or mixture-of-experts.

A method declares what it is (`MethodInfo`) and turns a `Volume` into a `MethodResult`. The
registry, the CLI, the benchmarks and both Slicer modules only ever talk to this interface.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from ..progress import Progress, no_progress  # noqa: F401 (also imported from here by smoe, remix, train, bench)
from ..volume import Volume

Task = Literal["denoise", "superres"]

# The one name every denoiser uses for a user-given noise level, in percent of the brightest
# tissue (the papers' BrainWeb convention); 0 means "estimate it from the image".
NOISE_LEVEL_OPTION = "noise_level_percent"
# The one name every super-resolution method uses for the output voxel size (x, y, z) in mm; the
# CLI (--spacing, --scale), the Slicer module and the web demo set it by this name.
SPACING_OPTION = "spacing"



@dataclass(frozen=True)
class OptionSpec:
    """One user-settable option of a method (number of diffusion steps, seed, noise level, ...)."""

    name: str
    kind: Literal["int", "float", "bool", "choice", "floats"]
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class MethodInfo:
    name: str  # stable identifier used by the CLI, scenes and the registry
    task: Task
    title: str  # what a picker shows
    description: str  # one line
    reference: str  # paper or library the method implements
    expert_counts: tuple[int, ...] = (1,)  # what the expert-count picker offers
    default_experts: int = 1
    classical: bool = False
    spatial_dims: Literal[2, 3] = 3  # 2: runs slice-wise; 3: volumetric
    has_expert_map: bool = False  # whether results carry an expert label map for the overlay
    options: tuple[OptionSpec, ...] = ()


@dataclass(frozen=True)
class Expert:
    """What the overlay legend shows for one label of an expert map."""

    label: int  # value in the expert map (1-based; 0 is "no expert", e.g. background)
    name: str
    color: tuple[int, int, int]  # 0-255 RGB
    description: str = ""


LABEL_MAP_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass
class LabelMap:
    """A label volume beside the expert map, with its own legend: a second reading of the same run
    (N-SMoE's kernel orientation per voxel, say). Saved as MAP_labels-<name>.<ext> with its colour
    table, shown in Slicer as its own label map node."""

    name: str  # lower-case words joined by '-': part of file and node names
    title: str  # what a legend or a node name shows
    volume: Volume  # integer labels on the result image's grid; 0 = none
    labels: list[Expert]  # the legend: label, name, colour, description

    def __post_init__(self):
        if not LABEL_MAP_NAME.match(self.name):
            raise ValueError(f"label map name {self.name!r}: use lower-case letters, digits and '-'")


@dataclass
class MethodResult:
    image: Volume
    expert_map: Volume | None = None  # integer labels on `image`'s grid, see `experts`
    # Optional soft gate: one 3-D Volume per expert, in the order of `experts`, values in [0, 1].
    expert_probabilities: list[Volume] | None = None
    experts: list[Expert] = field(default_factory=list)
    # Optional: what each expert changes, one 3-D Volume per expert in the order of `experts`, on
    # `image`'s grid (that expert's output minus the method's starting image, e.g. the upsampled
    # input): the per-expert difference maps MoEDiff-SR's paper shows.
    expert_differences: list[Volume] | None = None
    # Optional further label volumes with their own legends (see LabelMap).
    label_maps: list[LabelMap] = field(default_factory=list)
    # How the run went, for the CLI, the module's summary and the output node's attributes.
    # Shared keys: "warnings" (list of sentences the user should read: a device fallback, an
    # out-of-range input), "noise_level_percent" (the noise level used, % of brightest tissue),
    # "noise_estimate" (how it was obtained), "selected_expert" and "selection_reason".
    metadata: dict[str, Any] = field(default_factory=dict)

    def expert_shares(self) -> dict[int, float]:
        """Fraction of labelled voxels each expert handled (0 labels excluded)."""
        if self.expert_map is None:
            return {}
        labels = self.expert_map.array
        counts = np.bincount(labels[labels > 0].ravel().astype(np.int64), minlength=len(self.experts) + 1)
        total = max(int(counts.sum()), 1)
        return {e.label: float(counts[e.label]) / total for e in self.experts}


class Method(Protocol):
    info: MethodInfo

    def availability(self) -> str | None:
        """None when the method can run here, else the reason it cannot (a missing package...)."""

    def run(
        self,
        volume: Volume,
        *,
        experts: int | None = None,
        device: str = "auto",
        progress: Progress = no_progress,
        options: dict[str, Any] | None = None,
    ) -> MethodResult:
        ...


def resolve_options(info: MethodInfo, options: dict[str, Any] | None) -> dict[str, Any]:
    """Fill in defaults and refuse unknown names, so a typo is an error rather than ignored."""
    options = dict(options or {})
    known = {o.name: o for o in info.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        from ..errors import InputError

        raise InputError(f"method '{info.name}' has no option {', '.join(unknown)}; it has: {', '.join(known) or 'none'}")
    return {name: options.get(name, spec.default) for name, spec in known.items()}


def resolve_experts(info: MethodInfo, experts: int | None) -> int:
    if experts is None:
        return info.default_experts
    if experts not in info.expert_counts:
        from ..errors import InputError

        offered = ", ".join(str(k) for k in info.expert_counts)
        raise InputError(f"method '{info.name}' offers {offered} experts, not {experts}")
    return experts
