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


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return {"files": {}}
    return json.loads(path.read_text())


def missing_reason(files, directory: Path, rebuild: str) -> str | None:
    """None when every file and its manifest entry is there (cheap: no hashing), else why not."""
    directory = Path(directory)
    entries = read_manifest(directory).get("files", {})
    absent = [f for f in files if not (directory / f).is_file() or f not in entries]
    if absent:
        return f"weights {', '.join(absent)} are not in {directory}; rebuild them with `{rebuild}`"
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
    return torch.load(path, map_location="cpu", weights_only=True), entry


def save_with_entry(tensors: dict, name: str, entry: dict, directory: Path) -> str:
    """Write one weights file and its manifest entry (sha256 added); returns the sha256."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path)
    manifest = read_manifest(directory)
    manifest.setdefault("files", {})[name] = {"sha256": sha256_of(path), **entry}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest["files"][name]["sha256"]
