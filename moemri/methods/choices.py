"""What a front end's pickers offer: methods from the registry, their expert counts, devices, and
the text a method can show about an input before it runs.

Everything comes from `moemri.methods.registry`; no method is named here, so a method added to
the core appears in the Slicer modules and the web demo without a change there.

Optional hook for a method object: `describe_selection(volume) -> str`. A method that picks
something from the input itself (REMIx picks the expert trained for the input's slice spacing)
implements it, and a front end shows the text as soon as the input changes, before Apply. It gets
a `Volume` whose voxels are a read-only view (it must not keep or change them) and should be fast.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..errors import MoEMRIError
from .base import NOISE_LEVEL_OPTION, MethodInfo
from .registry import all_methods, get_method

log = logging.getLogger(__name__)

TASKS = ("denoise", "superres")


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


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")


def picker_label(info: MethodInfo) -> str:
    """The method's title, with classical methods marked "(classical)" (once, if the title lacks it)."""
    if info.classical and "(classical" not in info.title:
        return f"{info.title} (classical)"
    return info.title


def method_blurb(info: MethodInfo) -> str:
    """The one-line description and the paper, for the label under the method picker."""
    return f"{info.description}\nReference: {info.reference}"


def methods_for_task(task: str) -> list[MethodChoice]:
    """The registry's methods for `task`, mixture-of-experts methods first, then classical ones."""
    check_task(task)
    choices = []
    for method in all_methods(task):
        info = method.info
        unavailable = method.availability()
        tooltip = method_blurb(info)
        if unavailable:
            tooltip += f"\nNot available here: {unavailable}"
        choices.append(
            MethodChoice(info.name, picker_label(info), tooltip, tuple(info.expert_counts), info.default_experts, unavailable, info)
        )
    # Stable sort: the registry order is kept within each group.
    return sorted(choices, key=lambda c: c.info.classical)


def is_registered(method_name: str) -> bool:
    return bool(method_name) and method_name in {m.info.name for m in all_methods()}


def expert_counts_for(method_name: str) -> tuple[int, ...]:
    """What the expert-count picker offers for a method (a classical method offers 1)."""
    return tuple(get_method(method_name).info.expert_counts)


def declared_options(method_name: str) -> dict[str, Any]:
    """The method's options by name (`OptionSpec`s); {} for a name the registry does not know
    (a saved scene may name a method that is not installed here)."""
    if not is_registered(method_name):
        return {}
    return {spec.name: spec for spec in get_method(method_name).info.options}


def noise_option_name(method_name: str) -> str | None:
    """The option through which the method takes a user-given noise level (percent of the
    brightest tissue, `NOISE_LEVEL_OPTION`), or None when it always estimates the noise itself."""
    return NOISE_LEVEL_OPTION if NOISE_LEVEL_OPTION in declared_options(method_name) else None


def selection_text(method_name: str, volume) -> str:
    """What the method's optional `describe_selection(volume)` says about this input, or ""."""
    if volume is None or not is_registered(method_name):
        return ""
    describe = getattr(get_method(method_name), "describe_selection", None)
    if not callable(describe):
        return ""
    try:
        return str(describe(volume) or "")
    except MoEMRIError as error:  # e.g. a spacing no expert was trained for: say so before Apply
        return str(error)
    except Exception:  # a bug in the hook must not break the panel
        log.exception("describe_selection of %s failed", method_name)
        return ""


def available_devices() -> list[str]:
    """'auto', then the devices torch can see here ('cuda:N', 'mps'), then 'cpu'.

    torch is imported only if it is installed (never installed from here), so without PyTorch
    the picker offers auto and cpu, and the classical methods still run.
    """
    devices = ["auto"]
    try:
        import torch
    except ImportError:
        return devices + ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def device_note(device: str) -> str | None:
    """What a front end should say when `device` (e.g. from a saved scene) is not on this computer."""
    actual = resolve_device(device, warn=False)
    if actual == (device or "auto"):
        return None
    return f"The scene asks for {device}, which this computer does not have: the method runs on {actual}."


def resolve_device(device: str, warn: bool = True) -> str:
    """The device to ask for: one this machine lacks (a scene saved on a GPU workstation) falls
    back to the CPU with a warning. Out-of-memory fallback happens in the core, during the run."""
    device = device or "auto"
    if device in ("auto", "cpu"):
        return device
    if device not in available_devices():
        if warn:
            log.warning("device %s is not available here; running on the CPU instead", device)
        return "cpu"
    return device
