"""Runs one registry method on a volume file, in a process of its own: the far end of run.py.

    python -m moemri.background.worker REQUEST.json        (in Slicer the python is PythonSlicer)

It imports only the core (`moemri`), never Slicer or qt; the parent puts the folder holding the
core (and that of a method registered from outside it) on the child's PYTHONPATH. The request
(written by run.py):
    {"task", "method", "experts", "device", "options", "input": "<.nrrd>", "output_dir": "<folder>",
     "method_source": {"module", "qualname", "path"} or null}
Protocol on stdout, one JSON object per line (anything else on stdout is a library's chatter,
shown in the log panel with the child's stderr; the parent decodes it in protocol.py):
    {"progress": 0.4, "stage": "denoising"}
    {"warning": "CUDA out of memory: retrying with 64-voxel tiles"}    (also kept in the metadata)
    {"done": true}                                   result files are complete in output_dir
    {"error": "<message>", "kind": "InputError"}     a user error (moemri.errors): the message says it all
    {"error": "<message>", "kind": "ValueError", "details": "<traceback>"}     a bug
    {"error": "<message>", "kind": "ModuleNotFoundError", "missing_module": "dipy"}
Result files: result.nrrd, expert_map.nrrd, probability_<label>.nrrd, difference_<label>.nrrd,
labels_<name>.nrrd and result.json
    {"image", "expert_map", "probabilities": [...], "differences": [...],
     "label_maps": [{name, title, file, labels: [...]}], "experts": [{label, name, color, description}],
     "metadata": {...}}
Exit code 0, or the error's exit code (moemri.errors), 1 for a bug.
"""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path

PROTOCOL_VERSION = 1
_THROTTLE_S = 0.05  # a method may report thousands of tiles; the panel needs a few updates a second


def emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return str(value)


class _ProgressLines:
    """The method's progress callback: JSON lines, at most one per `_THROTTLE_S` per stage."""

    def __init__(self):
        self._last = (-1.0, None, 0.0)

    def __call__(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        last_fraction, last_stage, last_time = self._last
        if stage == last_stage and fraction < 1.0 and now - last_time < _THROTTLE_S:
            return
        self._last = (fraction, stage, now)
        emit({"progress": round(float(min(max(fraction, 0.0), 1.0)), 4), "stage": str(stage)})


class _WarningLines(logging.Handler):
    """The core's warnings (device fallbacks, repairs) reach the panel live and in the metadata."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.messages.append(text)
        emit({"warning": text})


def _method_from_source(name: str, source: dict | None):
    """Register a method that lives outside moemri (a plugin, a test double) in this process."""
    import importlib

    from ..methods import registry

    registry.all_methods()  # the built-in methods first
    if source is None or name in {m.info.name for m in registry.all_methods()}:
        return
    module = importlib.import_module(source["module"])  # importing may register it
    if name not in {m.info.name for m in registry.all_methods()}:
        method_class = module
        for part in source["qualname"].split("."):
            method_class = getattr(method_class, part)
        registry.register(method_class())


def _write(volume, path: Path, dtype=None) -> str:
    from ..io import write_volume

    array = volume.array
    if dtype is None:
        dtype = "uint8" if array.dtype == bool else array.dtype
    write_volume(volume, path, dtype=dtype)
    return path.name


def _save(result, output_dir: Path, warnings: list[str]) -> None:
    files = {"image": _write(result.image, output_dir / "result.nrrd"), "expert_map": None, "probabilities": []}
    if result.expert_map is not None:
        files["expert_map"] = _write(result.expert_map, output_dir / "expert_map.nrrd", dtype="int16")
    if result.expert_probabilities is not None:
        from ..methods.expert_probabilities import probability_volumes

        for expert, volume in zip(result.experts, probability_volumes(result)):
            files["probabilities"].append(_write(volume, output_dir / f"probability_{expert.label}.nrrd", dtype="float32"))
    files["differences"] = [
        _write(volume, output_dir / f"difference_{expert.label}.nrrd", dtype="float32")
        for expert, volume in zip(result.experts, result.expert_differences or [])
    ]
    files["label_maps"] = [
        {"name": m.name, "title": m.title, "file": _write(m.volume, output_dir / f"labels_{m.name}.nrrd", dtype="int16"),
         "labels": [{"label": e.label, "name": e.name, "color": list(e.color), "description": e.description} for e in m.labels]}
        for m in result.label_maps
    ]
    metadata = dict(result.metadata)
    if warnings:
        known = list(metadata.get("warnings") or [])
        metadata["warnings"] = known + [w for w in warnings if w not in known]
    description = {
        **files,
        "experts": [{"label": e.label, "name": e.name, "color": list(e.color), "description": e.description} for e in result.experts],
        "metadata": metadata,
        "protocol": PROTOCOL_VERSION,
    }
    # Written last and renamed into place: the parent never reads half a description.
    partial = output_dir / "result.json.partial"
    partial.write_text(json.dumps(description, default=_json_default))
    partial.replace(output_dir / "result.json")


def run(request_path: Path) -> int:
    request = json.loads(Path(request_path).read_text())
    warnings = _WarningLines()
    logging.getLogger("moemri").addHandler(warnings)
    try:
        from .. import api
        from ..io import read_volume

        emit({"progress": 0.0, "stage": "loading the input"})
        _method_from_source(request["method"], request.get("method_source"))
        # The parent checked the node; keep its voxel type so the result equals an in-process run.
        volume = read_volume(request["input"], keep_dtype=True, allow_label_map=False)
        result = api.run(
            request["task"], volume, request["method"], experts=request.get("experts"),
            device=request.get("device", "auto"), options=request.get("options") or {}, progress=_ProgressLines(),
        )
        emit({"progress": 1.0, "stage": "saving the result"})
        _save(result, Path(request["output_dir"]), warnings.messages)
    except Exception as error:  # every failure becomes one line the panel can show
        return _report(error)
    emit({"done": True})
    return 0


def _report(error: Exception) -> int:
    from ..errors import MoEMRIError

    message = {"error": str(error) or type(error).__name__, "kind": type(error).__name__}
    if isinstance(error, MoEMRIError):
        emit(message)
        return int(getattr(error, "exit_code", 1))
    if isinstance(error, ModuleNotFoundError) and error.name:
        message["missing_module"] = error.name.split(".")[0]
    message["details"] = traceback.format_exc()
    emit(message)
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        sys.exit(2)
    sys.exit(run(Path(sys.argv[1])))
