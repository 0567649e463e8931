"""What the web demo needs before it starts: its optional packages, offscreen rendering, the sample head."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path


class WebSetupError(RuntimeError):
    """The web demo cannot start here (a missing package or file); the message says what to do."""


def sample_path() -> Path:
    """The shipped MNI152 2009a T1 head (found where MoEMRILib finds it for Sample Data)."""
    from MoEMRILib.sample_data import sample_volume_path

    try:
        return sample_volume_path()
    except FileNotFoundError as error:
        raise WebSetupError(f"{error}; pass --input FILE instead") from None


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
