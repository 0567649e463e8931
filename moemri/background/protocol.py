"""The parent's half of the worker protocol (the child's half and the protocol itself: worker.py):
what a line of the worker's output means, where the worker finds a method registered outside
moemri, what an error line becomes, and the result files read back into a MethodResult.

Every front end (the Slicer panel, `BackgroundRun.wait`, the web demo) receives the run's
progress, warnings and log lines the same way: `RunEvent`s from `read_events`, handed to a
`RunCallbacks` by `RunCallbacks.deliver`. Nothing else decodes the worker's output.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import errors
from ..methods.base import Expert, LabelMap, MethodResult
from ..progress import Progress, no_progress

PROGRESS, WARNING, LOG = "progress", "warning", "log"


@dataclass(frozen=True)
class RunEvent:
    """What a running worker reported: its progress, a warning for the user, or a line of its
    output (a library's chatter, the stderr of the child) for the log panel."""

    kind: str  # PROGRESS, WARNING or LOG
    fraction: float = 0.0
    stage: str = ""
    text: str = ""


def _ignore(text: str) -> None:
    pass


@dataclass
class RunCallbacks:
    """Where a front end wants the events of a run: progress(fraction, stage), warning(text), log(line)."""

    progress: Progress = no_progress
    warning: Callable[[str], None] = _ignore
    log: Callable[[str], None] = _ignore

    def deliver(self, events) -> None:
        for event in events:
            if event.kind == PROGRESS:
                self.progress(event.fraction, event.stage)
            elif event.kind == WARNING:
                self.warning(event.text)
            else:
                self.log(event.text)


@dataclass
class WorkerState:
    """What the worker's protocol lines said so far, beyond the events: the end, or a failure."""

    fraction: float = 0.0
    stage: str = "starting"
    done: bool = False
    failure: dict | None = None


def read_events(lines, state: WorkerState, source: str = "stdout") -> list[RunEvent]:
    """The events of the worker's new output `lines` (stdout: protocol lines and chatter; stderr:
    log lines only); updates `state` with the progress, the end or the failure they report."""
    events = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        message = json_line(line.strip()) if source == "stdout" else None
        if message is None:
            if line.strip():
                events.append(RunEvent(LOG, state.fraction, state.stage, line))
        elif "progress" in message:
            state.fraction, state.stage = float(message["progress"]), str(message.get("stage", ""))
            events.append(RunEvent(PROGRESS, state.fraction, state.stage, f"{state.stage}: {100 * state.fraction:.0f} %"))
        elif "warning" in message:
            events.append(RunEvent(WARNING, state.fraction, state.stage, str(message["warning"])))
        elif "error" in message:
            state.failure = message
        elif message.get("done"):
            state.done = True
    return events


class WorkerError(RuntimeError):
    """The worker failed for a reason that is not the user's (a bug, a crash); `details` has the
    traceback or the end of the child's stderr, for the log and the dialog's details."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


class MissingPackage(errors.MethodUnavailable):
    """The method needs a Python package (`module`) that is not installed where it runs."""

    def __init__(self, message: str, module: str):
        super().__init__(message)
        self.module = module


def load_result(folder: Path) -> MethodResult:
    """The MethodResult the worker left in `folder` (volumes read without the input checks:
    an expert map is a label map, and a probability map may be constant)."""
    import SimpleITK as sitk

    from ..io import volume_from_sitk

    folder = Path(folder)
    description = json.loads((folder / "result.json").read_text())

    def read(name):
        return volume_from_sitk(sitk.ReadImage(str(folder / name)), source=name, name=Path(name).stem.split(".")[0])

    return MethodResult(
        image=read(description["image"]),
        expert_map=read(description["expert_map"]) if description.get("expert_map") else None,
        expert_probabilities=[read(name) for name in description.get("probabilities", [])] or None,
        experts=legend(description["experts"]),
        expert_differences=[read(name) for name in description.get("differences", [])] or None,
        label_maps=[LabelMap(m["name"], m["title"], read(m["file"]), legend(m["labels"])) for m in description.get("label_maps", [])],
        metadata=description.get("metadata", {}),
    )


def legend(rows: list[dict]) -> list[Expert]:
    return [Expert(int(e["label"]), e["name"], tuple(e["color"]), e.get("description", "")) for e in rows]


def error_from_message(message: dict) -> Exception:
    """The exception a worker's error line stands for: a user error keeps its class and message."""
    text, kind = str(message.get("error", "unknown error")), str(message.get("kind", ""))
    if message.get("missing_module"):
        module = message["missing_module"]
        return MissingPackage(f"the Python package '{module}' is not installed ({text})", module)
    user_error = getattr(errors, kind, None)
    if isinstance(user_error, type) and issubclass(user_error, errors.MoEMRIError):
        return user_error(text)
    return WorkerError(f"{kind}: {text}" if kind else text, message.get("details", ""))


def method_source(method) -> dict | None:
    """Where the worker can re-create a method registered from outside moemri (a plugin or a test
    double), or None for the core's own methods, which register when the core is imported."""
    cls = type(method)
    module = cls.__module__
    if module == "moemri" or module.startswith("moemri.") or "<locals>" in cls.__qualname__:
        return None
    file = getattr(sys.modules.get(module), "__file__", None)
    if module == "__main__" or not file:
        return None
    root = Path(file).resolve().parent
    for _ in range(module.count(".") + (Path(file).name == "__init__.py")):
        root = root.parent
    return {"module": module, "qualname": cls.__qualname__, "path": str(root)}


def json_line(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
