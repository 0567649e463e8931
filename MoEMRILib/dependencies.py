"""Python packages the methods need, installed only after the user agrees.

PyTorch comes through the PyTorch extension (SlicerPyTorch's `PyTorchUtilsLogic`), which picks
the build that fits the computer's GPU driver; the other packages (dipy, scikit-learn, antspyx,
...) through `slicer.util.pip_install` behind a confirmation dialog. Nothing is installed at
import time: the panel asks when a method the user chose reports a missing package (its
`availability()` text) or when the background worker stops on a missing module. Slicer's own
numpy, SimpleITK and VTK are never replaced.
"""
from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

# import name -> pip requirement, for the packages the core's methods import
PIP_REQUIREMENTS = {
    "dipy": "dipy",
    "sklearn": "scikit-learn",
    "ants": "antspyx",
    "scipy": "scipy",
    "nibabel": "nibabel",
    "skimage": "scikit-image",
    "tqdm": "tqdm",
    "einops": "einops",
    "safetensors": "safetensors",
}
TORCH_MODULES = ("torch", "torchvision")
SLICER_BUNDLED = ("numpy", "SimpleITK", "vtk", "slicer", "qt", "ctk")  # never pip-installed from here


@dataclass(frozen=True)
class InstallPlan:
    kind: str  # "pytorch" (through the PyTorch extension) or "pip"
    requirement: str  # what pip installs; "torch" for the PyTorch extension
    module: str  # what must become importable

    def describe(self) -> str:
        if self.kind == "pytorch":
            return "PyTorch, installed by the PyTorch extension (the build that fits this computer's GPU)"
        return f"the Python package '{self.requirement}' (pip install {self.requirement})"


def plan_for_module(module: str) -> InstallPlan | None:
    """How to install a missing import `module`, or None for what must not be installed from here."""
    top = module.split(".")[0]
    if top in TORCH_MODULES:
        return InstallPlan("pytorch", "torch", "torch")
    if top in SLICER_BUNDLED:
        return None
    return InstallPlan("pip", PIP_REQUIREMENTS.get(top, top), top)


def plan_for_reason(reason: str | None) -> InstallPlan | None:
    """Read what a method's `availability()` text says is missing (a package the core knows)."""
    if not reason:
        return None
    text = reason.lower()
    if re.search(r"\b(py)?torch\b", text):
        return InstallPlan("pytorch", "torch", "torch")
    for module, requirement in PIP_REQUIREMENTS.items():
        if re.search(rf"\b({re.escape(module)}|{re.escape(requirement)})\b", text, re.IGNORECASE):
            return InstallPlan("pip", requirement, module)
    return None


def is_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def offer_install(plan: InstallPlan, why: str) -> bool:
    """Ask the user, then install (needs the Slicer application). True if it is importable now.

    `why` says which method needs it. Errors reach the user in a dialog and the log.
    """
    import slicer

    if is_installed(plan.module):
        return True
    question = f"{why} needs {plan.describe()}.\n\nInstall it now? This downloads from the internet and may take minutes."
    if not slicer.util.confirmOkCancelDisplay(question, windowTitle="MoE-MRI: install a Python package"):
        log.info("installation of %s declined", plan.requirement)
        return False
    try:
        with slicer.util.WaitCursor():
            if plan.kind == "pytorch":
                _install_torch()
            else:
                slicer.util.pip_install(plan.requirement)
    except Exception as error:  # pip and network failures: show the cause, keep the module usable
        log.exception("installing %s failed", plan.requirement)
        slicer.util.errorDisplay(f"Installing {plan.requirement} failed: {error}", detailedText=str(error))
        return False
    importlib.invalidate_caches()
    return is_installed(plan.module)


def _install_torch() -> None:
    try:
        import PyTorchUtils  # the PyTorch extension's module
    except ImportError:
        raise RuntimeError(
            "the PyTorch extension is not installed: install 'PyTorch' from the Extensions Manager, restart Slicer, "
            "then run the method again"
        ) from None
    logic = PyTorchUtils.PyTorchUtilsLogic()
    if not logic.torchInstalled() and logic.installTorch(askConfirmation=False) is None:
        raise RuntimeError("PyTorch was not installed")
