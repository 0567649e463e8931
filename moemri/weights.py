"""Shipped model weights: Resources/Weights/<method>/ (or $MOEMRI_WEIGHTS/<method>), torch
tensors saved with torch.save and loaded with `weights_only=True`, each listed in the folder's
manifest.json with its sha256 and how it was made (data ids, command, date, seed, seconds).
A file whose sha256 differs from its entry is refused; nothing is ever downloaded.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .data.fetch import sha256_of  # one checksum routine for data and weights
from .errors import MethodUnavailable

MANIFEST = "manifest.json"


def weights_root() -> Path:
    root = os.environ.get("MOEMRI_WEIGHTS")
    return Path(root) if root else Path(__file__).resolve().parents[1] / "Resources" / "Weights"


class ManifestError(Exception):
    """manifest.json is missing, not JSON, or not shaped as {"files": {name: {"sha256": ...}}}."""


def read_manifest(directory: Path, *, required: bool = True) -> dict:
    """The folder's manifest. A missing one is a ManifestError when `required`, else empty."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        if required:
            raise ManifestError(f"{path} is missing (it lists every weights file with its sha256)")
        return {"files": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path} is not valid JSON ({error})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in files.values()):
        raise ManifestError(f'{path} is damaged: it needs {{"files": {{name: {{"sha256": ...}}}}}}')
    return manifest


def missing_reason(files, directory: Path, rebuild: str) -> str | None:
    """None when every file and its manifest entry is there (cheap: no hashing), else why not."""
    directory = Path(directory)
    try:
        entries = read_manifest(directory)["files"]
    except ManifestError as error:
        return f"weights manifest {error}; restore it or rebuild the weights with `{rebuild}`"
    absent = [f for f in files if not (directory / f).is_file()]
    if absent:
        return f"weights {', '.join(absent)} are not in {directory}; rebuild them with `{rebuild}`"
    unlisted = [f for f in files if f not in entries]
    if unlisted:
        return f"weights {', '.join(unlisted)} are not listed in {directory / MANIFEST}; restore it or rebuild with `{rebuild}`"
    return None


def load_checked(name: str, directory: Path, rebuild: str) -> tuple[dict, dict]:
    """(tensors, manifest entry) of one weights file, after checking its sha256."""
    import torch

    directory = Path(directory)
    reason = missing_reason([name], directory, rebuild)
    if reason:
        raise MethodUnavailable(reason)
    entry = read_manifest(directory)["files"][name]
    path = directory / name
    found = sha256_of(path)
    if found != entry["sha256"]:
        raise MethodUnavailable(
            f"weights file {path} does not match its sha256 in {MANIFEST} (expected {entry['sha256'][:12]}..., "
            f"found {found[:12]}...): it is damaged or was replaced; restore it or rebuild with `{rebuild}`"
        )
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and weights_only refusals all end here
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MethodUnavailable(f"weights file {path} could not be loaded ({reason[:200]}); restore it or rebuild with `{rebuild}`") from None
    if not isinstance(tensors, dict):
        raise MethodUnavailable(f"weights file {path} holds a {type(tensors).__name__}, not named tensors; rebuild with `{rebuild}`")
    return tensors, entry


def save_with_entry(tensors: dict, name: str, entry: dict, directory: Path) -> str:
    """Write one weights file and its manifest entry (sha256 added); returns the sha256."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path)
    manifest = read_manifest(directory, required=False)
    # The computed hash last: an entry copied from an older manifest must not carry its stale sha256 in.
    manifest.setdefault("files", {})[name] = {**entry, "sha256": sha256_of(path)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest["files"][name]["sha256"]
