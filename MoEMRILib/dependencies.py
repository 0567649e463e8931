"""Python packages the methods need, installed only after the user agrees, without freezing Slicer.

PyTorch comes through the PyTorch extension (SlicerPyTorch's `PyTorchUtilsLogic`), which picks
the build that fits the computer's GPU driver; the other packages (dipy, scikit-learn, antspyx,
...) through pip, behind a confirmation dialog, in a background process (`PipInstall`) that the
panel polls like a method run, its output in the log panel. Nothing is installed at import time:
the panel asks when a method the user chose reports a missing package (its `availability()`
text) or when the background worker stops on a missing module.

Slicer's own numpy, SciPy, SimpleITK and VTK are never replaced: every pip install runs with a
constraints file that pins the versions installed now (`constraints_text`), so pip picks a
release of dipy or scikit-learn that works with them, or refuses, rather than upgrading them.

What a stock Slicer has (numpy, SciPy, SimpleITK, VTK; PyTorch with the PyTorch extension) is
also what the self-tests may use: `stock_classical_method`.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

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
SLICER_BUNDLED = ("numpy", "scipy", "SimpleITK", "vtk", "slicer", "qt", "ctk")  # never pip-installed from here
# What pip must leave as it is (distribution names, as `importlib.metadata` knows them).
PINNED_DISTRIBUTIONS = ("numpy", "scipy", "SimpleITK", "vtk")
# Imported by some methods, not bundled with Slicer: a stock Slicer lacks them.
NOT_IN_STOCK_SLICER = ("dipy", "sklearn", "ants", "nibabel", "skimage")


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
        if module in SLICER_BUNDLED:
            continue
        if re.search(rf"\b({re.escape(module)}|{re.escape(requirement)})\b", text, re.IGNORECASE):
            return InstallPlan("pip", requirement, module)
    return None


def is_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# Installing ---------------------------------------------------------------------------------


def constraints_text(distributions=PINNED_DISTRIBUTIONS) -> str:
    """pip constraints that keep the installed versions of `distributions` ("numpy==1.26.4")."""
    lines = []
    for name in distributions:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: nothing to protect
    return "\n".join(lines) + "\n"


def pip_command(python: str, requirement: str, constraints_path) -> list[str]:
    return [python, "-m", "pip", "install", requirement, "--constraint", str(constraints_path)]


class PipInstall:
    """`pip install REQUIREMENT` with the constraints, in a child process polled like a method run."""

    def __init__(self, plan: InstallPlan, python: str | None = None):
        from moemri.background.run import default_python

        self.plan = plan
        self.python = python or default_python()
        self.lines: list[str] = []
        self.returncode: int | None = None
        self._process = None
        self._folder: Path | None = None
        self._output = None
        self._pending = b""

    @property
    def running(self) -> bool:
        return self._process is not None and self.returncode is None

    @property
    def succeeded(self) -> bool:
        importlib.invalidate_caches()
        return self.returncode == 0 and is_installed(self.plan.module)

    def start(self) -> "PipInstall":
        self._folder = Path(tempfile.mkdtemp(prefix="moemri-pip-"))
        constraints = self._folder / "constraints.txt"
        pins = constraints_text()
        constraints.write_text(pins)
        log.info("installing %s, keeping %s", self.plan.requirement, pins.split())
        with open(self._folder / "pip.log", "wb") as out:
            self._process = subprocess.Popen(pip_command(self.python, self.plan.requirement, constraints),
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self._output = open(self._folder / "pip.log", "rb")
        return self

    def poll(self) -> list[str]:
        """pip's new output lines; notices the end of pip."""
        if self._output is None:
            return []
        code = self._process.poll()
        data = self._pending + self._output.read()
        *lines, self._pending = data.split(b"\n")
        new = [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines if line.strip()]
        self.lines += new
        if code is not None:
            self.returncode = code
            self._output.close()
            self._output = None
            shutil.rmtree(self._folder, ignore_errors=True)
        return new


def confirm_install(plan: InstallPlan, why: str) -> bool:
    """Ask the user whether to install `plan` (needs the Slicer application); `why` names the method."""
    import slicer

    question = f"{why} needs {plan.describe()}.\n\nInstall it now? This downloads from the internet and may take minutes."
    if plan.kind == "pip":
        question += "\nSlicer's own numpy, SciPy, SimpleITK and VTK are kept as they are."
    agreed = slicer.util.confirmOkCancelDisplay(question, windowTitle="MoE-MRI: install a Python package")
    if not agreed:
        log.info("installation of %s declined", plan.requirement)
    return bool(agreed)


def install_torch() -> None:
    """PyTorch through the PyTorch extension (its own installer, which waits for pip)."""
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


# What a stock Slicer runs ---------------------------------------------------------------------


@contextlib.contextmanager
def _packages_hidden(modules):
    """`importlib.util.find_spec` answers None for `modules`, as in a Slicer that lacks them."""
    original = importlib.util.find_spec
    hidden = set(modules)

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] in hidden else original(name, *args, **kwargs)

    importlib.util.find_spec = find_spec
    try:
        yield
    finally:
        importlib.util.find_spec = original


def runs_in_stock_slicer(method) -> bool:
    """Whether the method says it can run without the packages a stock Slicer lacks."""
    with _packages_hidden(NOT_IN_STOCK_SLICER):
        return method.availability() is None


def stock_classical_method(task: str) -> str:
    """The registry's first classical method of `task` that a stock Slicer runs (the self-tests'
    method: they name none, and must pass without DIPY, scikit-learn or ANTs)."""
    from moemri.methods.registry import all_methods

    for method in all_methods(task):
        if method.info.classical and method.availability() is None and runs_in_stock_slicer(method):
            return method.info.name
    raise AssertionError(f"no classical {task} method runs in a stock Slicer")
