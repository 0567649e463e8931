"""The oldest Slicer the modules run in, and the check the widget makes on opening.

Slicer 5.8 is the first release whose bundled Python (3.12) the core accepts: the core needs
Python 3.10 or later (pyproject.toml), and Slicer 5.0-5.6 bundle Python 3.9. The modules also use
`parameterNodeWrapper` with `connectGui` (Slicer 5.2 and later).
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

MINIMUM_SLICER_VERSION = (5, 8)
MINIMUM_PYTHON = (3, 10)


def version_problem(slicer_version: tuple[int, int], python_version: tuple[int, int] = tuple(sys.version_info[:2])) -> str | None:
    """Why this Slicer is too old for the modules, or None."""
    if tuple(slicer_version) < MINIMUM_SLICER_VERSION or tuple(python_version) < MINIMUM_PYTHON:
        have = ".".join(map(str, slicer_version))
        need = ".".join(map(str, MINIMUM_SLICER_VERSION))
        python = ".".join(map(str, python_version))
        return f"MoE-MRI needs 3D Slicer {need} or later (Python 3.10+); this is Slicer {have} with Python {python}"
    return None


def check_slicer_version(title: str) -> bool:
    """Warn once, in a dialog and the log, when this Slicer is too old; True if it is recent enough."""
    import slicer

    problem = version_problem((int(slicer.app.majorVersion), int(slicer.app.minorVersion)))
    if problem:
        log.warning(problem)
        slicer.util.warningDisplay(problem, windowTitle=title)
    return problem is None
