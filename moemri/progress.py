"""How a run reports progress: a callback taking (fraction in [0, 1], stage text).

At the bottom of the package (it imports nothing from it), so methods, the tiler, the background
worker, the CLI and the Slicer logic all share it without importing one another.
"""
from __future__ import annotations

from typing import Callable

# progress(fraction in [0, 1], stage text). It may raise errors.Cancelled to stop the run.
Progress = Callable[[float, str], None]


def no_progress(fraction: float, stage: str) -> None:
    pass
