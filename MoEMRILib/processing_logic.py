"""Run a registry method on a Slicer volume node: the work behind both modules' Apply button.

The logic takes nodes and plain values and can be called from Slicer's Python console or a test.
How the method is run is injected (`runner`): in-process by default; a background-process runner
(so the GUI stays responsive and Cancel can kill the work) plugs in later without touching the
node handling here.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

import slicer
from moemri.errors import InputError, MethodUnavailable
from moemri.methods.base import NOISE_LEVEL_OPTION, Method, MethodInfo, MethodResult, Progress, no_progress, resolve_experts, resolve_options
from moemri.methods.registry import all_methods, get_method
from moemri.volume import Volume

from .expert_overlay import show_expert_map
from .volume_nodes import check_input_node, input_node_problem, update_node_from_volume

log = logging.getLogger(__name__)

TASKS = ("denoise", "superres")
ATTRIBUTE_PREFIX = "MoEMRI."
_MAX_ATTRIBUTE_CHARS = 500  # metadata can hold long lists; a node attribute is for reading


class MethodRunner(Protocol):
    """Runs a method on a volume and returns its result; may raise `Cancelled` via `progress`."""

    def __call__(
        self,
        method: Method,
        volume: Volume,
        *,
        experts: int | None,
        device: str,
        progress: Progress,
        options: dict[str, Any],
    ) -> MethodResult: ...


def run_in_process(method, volume, *, experts, device, progress, options) -> MethodResult:
    """The default runner: call the method here, blocking until it returns."""
    return method.run(volume, experts=experts, device=device, progress=progress, options=options)


@dataclass(frozen=True)
class MethodChoice:
    """One entry of a module's method picker."""

    name: str  # registry name, what the parameter node stores
    label: str  # what the picker shows
    tooltip: str
    expert_counts: tuple[int, ...]
    default_experts: int
    unavailable: str | None  # why it cannot run here, or None
    info: MethodInfo


def picker_label(info: MethodInfo) -> str:
    """The method's title, with classical methods marked "(classical)" (once, if the title lacks it)."""
    if info.classical and "(classical" not in info.title:
        return f"{info.title} (classical)"
    return info.title


def methods_for_task(task: str) -> list[MethodChoice]:
    """The registry's methods for `task`, mixture-of-experts methods first, then classical ones."""
    _check_task(task)
    choices = []
    for method in all_methods(task):
        info = method.info
        unavailable = method.availability()
        tooltip = f"{info.description}\nReference: {info.reference}"
        if unavailable:
            tooltip += f"\nNot available here: {unavailable}"
        choices.append(
            MethodChoice(info.name, picker_label(info), tooltip, tuple(info.expert_counts), info.default_experts, unavailable, info)
        )
    # Stable sort: the registry order is kept within each group.
    return sorted(choices, key=lambda c: c.info.classical)


def expert_counts_for(method_name: str) -> tuple[int, ...]:
    """What the expert-count picker offers for a method (a classical method offers 1)."""
    return tuple(get_method(method_name).info.expert_counts)


def declared_options(method_name: str) -> dict[str, Any]:
    """The method's options by name (`OptionSpec`s), to pass a module control's value only to a
    method that has a matching option."""
    return {spec.name: spec for spec in get_method(method_name).info.options}


def noise_option_name(method_name: str) -> str | None:
    """The option through which the method takes a user-given noise level (percent of the
    brightest tissue, `NOISE_LEVEL_OPTION`), or None when it always estimates the noise itself."""
    if not method_name or method_name not in {m.info.name for m in all_methods()}:
        return None  # no method chosen yet, or one a saved scene names that is not installed
    return NOISE_LEVEL_OPTION if NOISE_LEVEL_OPTION in declared_options(method_name) else None


def available_devices() -> list[str]:
    """'auto', then the devices torch can see here ('cuda:N', 'mps'), then 'cpu'."""
    devices = ["auto"]
    try:
        import torch
    except ImportError:  # no PyTorch yet: classical methods still run on the CPU
        return devices + ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def resolve_device(device: str) -> str:
    """The device to ask for: a device this machine lacks falls back to the CPU with a warning."""
    device = device or "auto"
    if device in ("auto", "cpu"):
        return device
    if device not in available_devices():
        log.warning("device %s is not available here; running on the CPU instead", device)
        return "cpu"
    return device


def new_output_node(inputNode, task: str, scene=None):
    """A new scalar volume node named after the input, for when the user chose no output."""
    _check_task(task)
    scene = scene if scene is not None else inputNode.GetScene()
    suffix = {"denoise": "denoised", "superres": "super-resolved"}[task]
    name = scene.GenerateUniqueName(f"{inputNode.GetName()} {suffix}")
    return scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)


def new_expert_map_node(outputNode, scene=None):
    scene = scene if scene is not None else outputNode.GetScene()
    name = scene.GenerateUniqueName(f"{outputNode.GetName()} experts")
    return scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)


class MoEProcessingLogic:
    """Checks the nodes, runs one registry method and writes the result nodes."""

    def __init__(self, runner: MethodRunner | None = None):
        self.runner: MethodRunner = runner or run_in_process

    methods_for_task = staticmethod(methods_for_task)
    expert_counts_for = staticmethod(expert_counts_for)
    available_devices = staticmethod(available_devices)

    def process(
        self,
        inputNode,
        outputNode,
        task: str,
        method: str,
        experts: int | None = None,
        device: str = "auto",
        options: dict[str, Any] | None = None,
        expertMapNode=None,
        progress: Progress | None = None,
    ) -> MethodResult:
        """Run `method` (a registry name for `task`) on `inputNode` and write `outputNode`.

        The input node is only read. For super-resolution the output node gets the result's
        finer grid. `expertMapNode` (a label map node) receives the expert map when the method
        makes one. Errors a user can act on are `moemri.errors.MoEMRIError`s.
        """
        _check_task(task)
        problem = input_node_problem(inputNode)  # cheap checks first: no voxels are copied yet
        if problem:
            raise InputError(problem)
        if outputNode is None:
            raise InputError("no output volume is selected")
        if outputNode is inputNode or (outputNode.GetID() is not None and outputNode.GetID() == inputNode.GetID()):
            raise InputError("the output volume is the input volume; choose or create a different output volume")
        if not outputNode.IsA("vtkMRMLScalarVolumeNode") or outputNode.IsA("vtkMRMLLabelMapVolumeNode"):
            raise InputError(f"the output must be a scalar volume, not a {outputNode.GetClassName()}")
        if expertMapNode is not None:
            if expertMapNode is inputNode or expertMapNode is outputNode:
                raise InputError("the expert map needs its own label map node, not the input or output volume")
            if not expertMapNode.IsA("vtkMRMLLabelMapVolumeNode"):
                raise InputError(f"the expert map goes into a label map volume, not a {expertMapNode.GetClassName()}")

        volume = check_input_node(inputNode)
        chosen = get_method(method, task)
        unavailable = chosen.availability()
        if unavailable:
            raise MethodUnavailable(f"{picker_label(chosen.info)} cannot run here: {unavailable}")
        # Refuse a wrong expert count or option name before any work, with the method's words.
        experts = resolve_experts(chosen.info, experts)
        options = resolve_options(chosen.info, options)
        device = resolve_device(device)

        started = time.perf_counter()
        result = self.runner(
            chosen, volume, experts=experts, device=device, progress=progress or no_progress, options=options
        )
        seconds = time.perf_counter() - started
        if task == "denoise" and not result.image.same_geometry(volume):
            # A denoiser that moves or resamples the image is a bug, not a user error.
            raise RuntimeError(f"{chosen.info.name} returned a different grid than its input")

        update_node_from_volume(outputNode, result.image)
        # The grids are in the input's local frame: results go under the input's transform too.
        outputNode.SetAndObserveTransformNodeID(inputNode.GetTransformNodeID())
        if outputNode.GetDisplayNode() is None:
            outputNode.CreateDefaultDisplayNodes()
        if expertMapNode is not None:
            if result.expert_map is not None:
                show_expert_map(result, expertMapNode)
                expertMapNode.SetAndObserveTransformNodeID(inputNode.GetTransformNodeID())
            else:
                log.info("%s makes no expert map; %s is left as it was", chosen.info.name, expertMapNode.GetName())
        self._store_summary(outputNode, inputNode, task, chosen.info, experts, device, seconds, result)
        log.info("%s on %s took %.2f s", chosen.info.name, inputNode.GetName(), seconds)
        return result

    @staticmethod
    def _store_summary(outputNode, inputNode, task, info, experts, device, seconds, result) -> None:
        for name in list(outputNode.GetAttributeNames() or ()):
            if name.startswith(ATTRIBUTE_PREFIX):
                outputNode.RemoveAttribute(name)
        summary = {
            "task": task,
            "method": info.name,
            "experts": str(experts),
            "device": str(result.metadata.get("device", device)),
            "seconds": f"{seconds:.3f}",
            "input": inputNode.GetID() or "",
        }
        for key, value in result.metadata.items():
            summary.setdefault(str(key), _attribute_text(value))
        for key, value in summary.items():
            outputNode.SetAttribute(ATTRIBUTE_PREFIX + key, value)


def result_summary(outputNode) -> str:
    """One line for the panel from the attributes `process` stored on the output node."""
    method = outputNode.GetAttribute(ATTRIBUTE_PREFIX + "method") if outputNode is not None else None
    if not method:
        return ""
    experts = outputNode.GetAttribute(ATTRIBUTE_PREFIX + "experts")
    device = outputNode.GetAttribute(ATTRIBUTE_PREFIX + "device")
    seconds = float(outputNode.GetAttribute(ATTRIBUTE_PREFIX + "seconds") or 0.0)
    size = "x".join(str(d) for d in outputNode.GetImageData().GetDimensions()) if outputNode.GetImageData() else "?"
    spacing = "x".join(f"{s:g}" for s in outputNode.GetSpacing())
    plural = "" if experts == "1" else "s"
    return f"{method}, {experts} expert{plural} on {device}: {seconds:.1f} s; {size} voxels of {spacing} mm"


def _attribute_text(value) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bool, int, float, np.integer, np.floating)):
        text = str(value.item() if isinstance(value, np.generic) else value)
    else:
        try:
            text = json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
        except (TypeError, ValueError):
            text = str(value)
    return text if len(text) <= _MAX_ATTRIBUTE_CHARS else text[: _MAX_ATTRIBUTE_CHARS - 3] + "..."


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
