"""Scores of the classical baselines, kept between benchmark runs.

The baselines are deterministic for a given case and library version, and ANTs alone takes about
half an hour over the denoising cases on two cores; a rerun that adds a learned method reuses
their rows. Learned methods are always run afresh. `--fresh` ignores the cache.
"""
from __future__ import annotations

import datetime
import json
import os
from importlib import metadata
from pathlib import Path

from .. import __version__

_LIBRARIES = ("dipy", "antspyx", "SimpleITK", "numpy")


def _library_versions() -> str:
    versions = []
    for name in _LIBRARIES:
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}=none")
    return ",".join(versions)


def bench_cache_dir() -> Path:
    root = os.environ.get("MOEMRI_BENCH_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "moemri" / "bench"


class ScoreCache:
    def __init__(self, task: str, enabled: bool = True):
        self.enabled = enabled
        self.path = bench_cache_dir() / f"{task}-classical-scores.json"
        self.stamp = f"moemri={__version__},{_library_versions()}"
        self.entries: dict = {}
        if enabled and self.path.exists():
            stored = json.loads(self.path.read_text())
            if stored.get("stamp") == self.stamp:
                self.entries = stored.get("entries", {})

    def get(self, key: str):
        return self.entries.get(key) if self.enabled else None

    def put(self, key: str, value) -> None:
        if not self.enabled:
            return
        self.entries[key] = {"value": value, "date": datetime.date.today().isoformat()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stamp": self.stamp, "entries": self.entries}, indent=1))
        tmp.replace(self.path)
