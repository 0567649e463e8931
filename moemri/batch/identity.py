"""What a result was made with, and the rule that lets a rerun skip it.

The identity is the task, method, resolved expert count, resolved options (defaults filled in, so
`--option orientations=2` and no option are the same run) and a fingerprint of the method's
weights: the sha256 of its weights folder's manifest entries (each file's own sha256, which the
method checks when it loads them). It is stored in every result's JSON sidecar under "MoEMRI".
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..methods.base import resolve_experts, resolve_options
from ..methods.registry import get_method
from ..weights import read_manifest, weights_root

SIDECAR_KEY = "MoEMRI"
IDENTITY_KEYS = ("task", "method", "experts", "options", "weights_sha256")


def weights_files(method_name: str, task: str) -> dict[str, str]:
    """{file: sha256} of the method's shipped weights ({} for a classical method). A method's
    weights live in Resources/Weights/<its package under moemri/methods>."""
    module = type(get_method(method_name, task)).__module__.split(".")
    family = module[2] if len(module) > 3 and module[:2] == ["moemri", "methods"] else None
    if family is None:
        return {}
    directory = weights_root() / family
    return {name: entry["sha256"] for name, entry in sorted(read_manifest(directory).get("files", {}).items())}


def weights_fingerprint(files: dict[str, str]) -> str | None:
    if not files:
        return None
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def run_identity(task: str, method_name: str, experts: int | None, options: dict[str, Any] | None) -> dict[str, Any]:
    """The identity of a run, with options resolved against the method (unknown names refused)."""
    method = get_method(method_name, task)
    info = method.info
    extra = {k: v for k, v in (options or {}).items() if k == "scale"}  # superres --scale, applied per volume
    resolved = resolve_options(info, {k: v for k, v in (options or {}).items() if k != "scale"})
    if "scale" in extra:
        resolved.pop("spacing", None)
        resolved["scale"] = float(extra["scale"])
    return {
        "task": task,
        "method": method_name,
        "experts": resolve_experts(info, experts),
        "options": json.loads(json.dumps(resolved, default=list)),  # tuples -> lists, as JSON reads them back
        "weights_sha256": weights_fingerprint(weights_files(method_name, task)),
    }


def read_identity(sidecar: Path) -> dict[str, Any] | None:
    try:
        stored = json.loads(Path(sidecar).read_text()).get(SIDECAR_KEY, {})
    except (OSError, ValueError, AttributeError):
        return None
    return {k: stored.get(k) for k in IDENTITY_KEYS} if stored else None


def stored_outputs(sidecar: Path) -> list[str]:
    try:
        return list(json.loads(Path(sidecar).read_text()).get(SIDECAR_KEY, {}).get("outputs", []))
    except (OSError, ValueError, AttributeError):
        return []


def previous_state(image: Path, sidecar: Path, identity: dict) -> str:
    """'missing' (never made or interrupted), 'same' (complete, made by an identical run: skip) or
    'different' (complete, made by another method/options/weights)."""
    if not image.is_file() or not sidecar.is_file():
        return "missing"
    stored = read_identity(sidecar)
    if stored is None:
        return "missing"
    if any(not (sidecar.parent / name).is_file() for name in stored_outputs(sidecar)):
        return "missing"
    return "same" if stored == {k: identity[k] for k in IDENTITY_KEYS} else "different"
