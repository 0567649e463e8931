"""Where the web demo finds MoEMRILib and the shipped sample head.

MoEMRILib is not a package of its own: in the source tree (and an editable install) it sits
beside `moemri/`, as it does in the installed Slicer extension. Importing it here puts that folder
on sys.path once, so `moemri web` reuses the Slicer-side helpers without copying them.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import moemri

SOURCE_ROOT = Path(moemri.__file__).resolve().parent.parent
SAMPLE_FILE_NAME = "MNI152-2009a-T1.nii.gz"


class WebSetupError(RuntimeError):
    """The web demo cannot start here (a missing package or file); the message says what to do."""


def use_moemrilib() -> None:
    """Make `import MoEMRILib` work: already importable, or found beside the installed `moemri`."""
    if importlib.util.find_spec("MoEMRILib") is not None:
        return
    if (SOURCE_ROOT / "MoEMRILib" / "__init__.py").is_file():
        sys.path.insert(0, str(SOURCE_ROOT))
        return
    raise WebSetupError(
        f"MoEMRILib (the Slicer-side helpers the web demo reuses) is not beside {SOURCE_ROOT / 'moemri'}; "
        "run `moemri web` from a source checkout (pip install -e '.[web]')"
    )


def sample_path() -> Path:
    """The shipped MNI152 2009a T1 head."""
    path = SOURCE_ROOT / "Resources" / "SampleData" / SAMPLE_FILE_NAME
    if not path.is_file():
        raise WebSetupError(f"the sample head is missing: {path}; pass --input FILE instead")
    return path


def prefer_egl() -> None:
    """Render offscreen through EGL (no X server needed, and no X warning); set before VTK loads."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def check_web_packages() -> None:
    """Refuse with the install command when the `web` extra is missing."""
    missing = [name for name in ("trame", "trame_slicer", "trame_vuetify", "slicer")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise WebSetupError(
            f"the web demo needs the optional packages {', '.join(missing)}: pip install -e '.[web]'"
        )
