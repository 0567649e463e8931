"""Run a registry method on a Slicer volume node: the work behind both modules' Apply button.

Three steps, so the panel can run the middle one in a background process:
- `prepare` checks the nodes, the method, the expert count and the options, and copies the input
  voxels; it adds nothing to the scene, so a refusal or a Cancel leaves the scene as it was;
- the method runs: `run` (through the injected `runner`, in-process by default) or `start`
  (a `moemri.background.run.BackgroundRun` that the caller polls);
- `finish` writes the result nodes: output volume, expert map (a label map with named colours),
  one probability volume per expert where the method gives them, and a summary in the output
  node's attributes.
`process` does all three, for Slicer's Python console and the tests.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from moemri.errors import InputError, MethodUnavailable
from moemri.methods.base import Method, MethodResult, resolve_experts, resolve_options
from moemri.progress import Progress, no_progress
from moemri.methods.registry import get_method
from moemri.volume import Volume

from .expert_overlay import show_expert_map
from .expert_probabilities import show_expert_probabilities
from .result_volumes import show_expert_differences, show_label_maps
from moemri.methods.choices import check_task, picker_label, resolve_device
from .volume_nodes import check_input_node, input_node_problem, update_node_from_volume

log = logging.getLogger(__name__)

ATTRIBUTE_PREFIX = "MoEMRI."
EXPERT_MAP_REFERENCE = "MoEMRIExpertMap"  # output node -> its expert map, kept in a saved scene
_MAX_ATTRIBUTE_CHARS = 500  # metadata can hold long lists; a node attribute is for reading
# Metadata worth a place in the one-line summary, with how to say it.
_HEADLINES = {
    "selected_expert": "expert {}",
    "noise_level_percent": "noise {:.1f} %",
    "estimated_noise_percent": "estimated noise {:.1f} %",
    "noise_sigma": "noise sigma {:.3g}",
}


class MethodRunner(Protocol):
    """Runs a method on a volume and returns its result; may raise `Cancelled` via `progress`."""

    def __call__(self, method: Method, volume: Volume, *, experts: int | None, device: str,
                 progress: Progress, options: dict[str, Any]) -> MethodResult: ...


def run_in_process(method, volume, *, experts, device, progress, options) -> MethodResult:
    """The default runner: `moemri.api.run` here, blocking until it returns (the background
    worker calls the same function, so both give the same result and metadata)."""
    from moemri import api

    return api.run(method.info.task, volume, method.info.name, experts=experts, device=device, options=options, progress=progress)


@dataclass
class ProcessingRequest:
    """A checked run: what `prepare` found, and the nodes `finish` wrote."""

    inputNode: Any
    task: str
    method: Method
    volume: Volume
    experts: int
    device: str
    options: dict[str, Any]
    outputNode: Any = None  # None: `finish` makes a new volume named after the input
    expertMapNode: Any = None  # None: `finish` makes one if the method gives an expert map
    probabilityNodes: dict[int, Any] = field(default_factory=dict)
    differenceNodes: dict[int, Any] = field(default_factory=dict)  # expert label -> what it changes
    labelMapNodes: dict[str, Any] = field(default_factory=dict)  # further label maps, by name


def new_output_node(inputNode, task: str, scene=None):
    """A new scalar volume node named after the input, for when the user chose no output."""
    check_task(task)
    scene = scene if scene is not None else inputNode.GetScene()
    suffix = {"denoise": "denoised", "superres": "super-resolved"}[task]
    return scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(f"{inputNode.GetName()} {suffix}"))


def new_expert_map_node(outputNode, scene=None):
    scene = scene if scene is not None else outputNode.GetScene()
    return scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName(f"{outputNode.GetName()} experts"))


def expert_map_node_of(outputNode):
    """The expert map an earlier run attached to `outputNode`, or None."""
    return outputNode.GetNodeReference(EXPERT_MAP_REFERENCE) if outputNode is not None else None


class MoEProcessingLogic:
    """Checks the nodes, runs one registry method and writes the result nodes."""

    def __init__(self, runner: MethodRunner | None = None):
        self.runner: MethodRunner = runner or run_in_process

    def prepare(self, inputNode, outputNode, task: str, method: str, experts: int | None = None, device: str = "auto",
                options: dict[str, Any] | None = None, expertMapNode=None) -> ProcessingRequest:
        """Check everything before any work; refusals are `moemri.errors.MoEMRIError`s with the
        user's words. The scene is not changed."""
        check_task(task)
        problem = input_node_problem(inputNode)  # cheap checks first: no voxels are copied yet
        if problem:
            raise InputError(problem)
        if outputNode is not None:
            if outputNode is inputNode or outputNode.GetID() == inputNode.GetID():
                raise InputError("the output volume is the input volume; choose or create a different output volume")
            if not outputNode.IsA("vtkMRMLScalarVolumeNode") or outputNode.IsA("vtkMRMLLabelMapVolumeNode"):
                raise InputError(f"the output must be a scalar volume, not a {outputNode.GetClassName()}")
        if expertMapNode is not None:
            if expertMapNode is inputNode or expertMapNode is outputNode:
                raise InputError("the expert map needs its own label map node, not the input or output volume")
            if not expertMapNode.IsA("vtkMRMLLabelMapVolumeNode"):
                raise InputError(f"the expert map goes into a label map volume, not a {expertMapNode.GetClassName()}")

        chosen = get_method(method, task)
        unavailable = chosen.availability()
        if unavailable:
            raise MethodUnavailable(f"{picker_label(chosen.info)} cannot run here: {unavailable}")
        # Refuse a wrong expert count or option name before any work, with the method's words.
        experts = resolve_experts(chosen.info, experts)
        resolve_options(chosen.info, options)
        volume = check_input_node(inputNode)
        return ProcessingRequest(inputNode, task, chosen, volume, experts, resolve_device(device), dict(options or {}),
                                 outputNode, expertMapNode)

    def run(self, request: ProcessingRequest, progress: Progress | None = None) -> tuple[MethodResult, float]:
        """Run the prepared request through `self.runner`; returns (result, seconds)."""
        started = time.perf_counter()
        result = self.runner(request.method, request.volume, experts=request.experts, device=request.device,
                             progress=progress or no_progress, options=request.options)
        return result, time.perf_counter() - started

    def start(self, request: ProcessingRequest, python: str | None = None, temp_root=None):
        """Start the prepared request in a background process; poll the returned BackgroundRun."""
        from moemri.background.run import BackgroundRun

        return BackgroundRun(request.method, request.volume, experts=request.experts, device=request.device,
                             options=request.options, python=python, temp_root=temp_root).start()

    def finish(self, request: ProcessingRequest, result: MethodResult, seconds: float, probabilities: bool = True) -> MethodResult:
        """Write the result into the scene: output volume (made if none was chosen), expert map,
        probability volumes (unless `probabilities` is False) and the summary attributes."""
        info = request.method.info
        if request.task == "denoise" and not result.image.same_geometry(request.volume):
            # A denoiser that moves or resamples the image is a bug, not a user error.
            raise RuntimeError(f"{info.name} returned a different grid than its input")
        inputNode = request.inputNode
        if request.outputNode is None:
            request.outputNode = new_output_node(inputNode, request.task)
        outputNode = request.outputNode
        update_node_from_volume(outputNode, result.image)
        # The grids are in the input's local frame: results go under the input's transform too.
        transformID = inputNode.GetTransformNodeID()
        outputNode.SetAndObserveTransformNodeID(transformID)
        if outputNode.GetDisplayNode() is None:
            outputNode.CreateDefaultDisplayNodes()
        if result.expert_map is not None:
            if request.expertMapNode is None:
                request.expertMapNode = expert_map_node_of(outputNode) or new_expert_map_node(outputNode)
            show_expert_map(result, request.expertMapNode)
            request.expertMapNode.SetAndObserveTransformNodeID(transformID)
            outputNode.SetNodeReferenceID(EXPERT_MAP_REFERENCE, request.expertMapNode.GetID())
        elif request.expertMapNode is not None:
            log.info("%s makes no expert map; %s is left as it was", info.name, request.expertMapNode.GetName())
        if probabilities and result.expert_probabilities is not None:
            request.probabilityNodes = show_expert_probabilities(result, outputNode)
            for node in request.probabilityNodes.values():
                node.SetAndObserveTransformNodeID(transformID)
        # Refilled (or removed, when the new run makes none) on every run into this output.
        request.differenceNodes = show_expert_differences(result, outputNode)
        request.labelMapNodes = show_label_maps(result, outputNode)
        store_summary(outputNode, inputNode, request, seconds, result)
        log.info("%s on %s took %.2f s", info.name, inputNode.GetName(), seconds)
        for warning in result.metadata.get("warnings", []) or []:
            log.warning("%s: %s", info.name, warning)
        return result

    def process(self, inputNode, outputNode, task: str, method: str, experts: int | None = None, device: str = "auto",
                options: dict[str, Any] | None = None, expertMapNode=None, progress: Progress | None = None) -> MethodResult:
        """Run `method` (a registry name for `task`) on `inputNode` and write `outputNode` (None:
        a new volume). The input node is only read. For super-resolution the output gets the
        result's finer grid. Returns the MethodResult."""
        request = self.prepare(inputNode, outputNode, task, method, experts, device, options, expertMapNode)
        result, seconds = self.run(request, progress)
        return self.finish(request, result, seconds)


def store_summary(outputNode, inputNode, request: ProcessingRequest, seconds: float, result: MethodResult) -> None:
    """How the output was made, as `MoEMRI.*` attributes of the output node (saved with the scene)."""
    for name in list(outputNode.GetAttributeNames() or ()):
        if name.startswith(ATTRIBUTE_PREFIX):
            outputNode.RemoveAttribute(name)
    summary = {
        "task": request.task,
        "method": request.method.info.name,
        "experts": str(request.experts),
        "device": str(result.metadata.get("device", request.device)),
        "seconds": f"{seconds:.3f}",
        "input": inputNode.GetID() or "",
    }
    for key, value in result.metadata.items():
        # "seconds" stays the wall time the user waited (process start included); the method's own is kept too.
        summary.setdefault("method_seconds" if key == "seconds" else str(key), _attribute_text(value))
    for key, value in summary.items():
        outputNode.SetAttribute(ATTRIBUTE_PREFIX + key, value)
    outputNode.SetAttribute(ATTRIBUTE_PREFIX + "summary", result_summary(outputNode))


def result_summary(outputNode) -> str:
    """One line for the panel from the attributes stored on the output node."""
    get = (lambda key: outputNode.GetAttribute(ATTRIBUTE_PREFIX + key)) if outputNode is not None else (lambda key: None)
    method = get("method")
    if not method:
        return ""
    experts = get("experts")
    seconds = float(get("seconds") or 0.0)
    size = "x".join(str(d) for d in outputNode.GetImageData().GetDimensions()) if outputNode.GetImageData() else "?"
    spacing = "x".join(f"{s:g}" for s in outputNode.GetSpacing())
    plural = "" if experts == "1" else "s"
    parts = [f"{method}, {experts} expert{plural} on {get('device')}: {seconds:.1f} s; {size} voxels of {spacing} mm"]
    for key, template in _HEADLINES.items():
        value = get(key)
        if value not in (None, "", "0", "0.0"):
            parts.append(_headline(template, value))
    return "; ".join(parts)


def _headline(template: str, value: str) -> str:
    try:
        return template.format(float(value)) if "{:" in template else template.format(value)
    except ValueError:  # a number template, but the method wrote text
        return f"{template.split(' {')[0]} {value}"


def result_warnings(outputNode) -> list[str]:
    """The warnings of the run that made `outputNode` (device fallbacks, repairs)."""
    if outputNode is None:
        return []
    text = outputNode.GetAttribute(ATTRIBUTE_PREFIX + "warnings")
    try:
        warnings = json.loads(text) if text else []
    except ValueError:  # cut at the attribute length: show it as it is
        warnings = [text]
    warnings = [str(w) for w in warnings] if isinstance(warnings, list) else [str(warnings)]
    fallback = outputNode.GetAttribute(ATTRIBUTE_PREFIX + "fallback")  # the core's device fallback note
    return warnings + ([fallback] if fallback and fallback not in warnings else [])


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
