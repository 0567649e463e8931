"""What a stock 3D Slicer has, and what installing more must not change.

A stock Slicer bundles numpy, SciPy, SimpleITK and VTK (PyTorch comes with the PyTorch
extension), not DIPY, scikit-learn, ANTs, nibabel or scikit-image: the self-tests pick methods
that run there, and a method that needs a missing package says so. Installs run pip in a
background process with constraints that keep Slicer's own packages.
"""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

from MoEMRILib import dependencies
from MoEMRILib.slicer_version import MINIMUM_SLICER_VERSION, version_problem
from moemri.methods.registry import get_method

REPO = Path(__file__).resolve().parents[2]


def test_self_tests_use_methods_a_stock_slicer_runs():
    assert dependencies.stock_classical_method("denoise") == "curvature-diffusion"  # not DIPY's non-local means
    assert dependencies.stock_classical_method("superres") in ("linear", "bspline", "windowed-sinc")
    assert not dependencies.runs_in_stock_slicer(get_method("nlmeans-rician"))
    assert dependencies.runs_in_stock_slicer(get_method("curvature-diffusion"))


STOCK_SLICER = textwrap.dedent("""
    import importlib.abc, importlib.util, sys
    MISSING = {"dipy", "sklearn", "ants", "nibabel", "skimage", "matplotlib", "tqdm"}

    class NotInSlicer(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in MISSING:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NotInSlicer())
    original = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a, **k: None if name.split(".")[0] in MISSING else original(name, *a, **k)

    import numpy as np
    from moemri import api
    from moemri.methods.registry import get_method
    from moemri.volume import Volume
    from MoEMRILib.dependencies import plan_for_reason, stock_classical_method

    reason = get_method("nlmeans-rician").availability()
    assert reason and "dipy" in reason and plan_for_reason(reason).requirement == "dipy", reason
    volume = Volume(np.random.default_rng(0).random((12, 14, 16)).astype("float32") * 100, (2.0, 2.0, 2.0))
    for task, options in (("denoise", {}), ("superres", {"spacing": (1.5, 1.5, 1.5)})):
        result = api.run(task, volume, stock_classical_method(task), options=options)
        assert np.isfinite(result.image.array).all()
    import moemri.background.worker  # what the background process imports
    print("stock ok")
""")


def test_a_slicer_without_dipy_or_scikit_learn_runs_the_self_test_methods():
    done = subprocess.run([sys.executable, "-c", STOCK_SLICER], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and "stock ok" in done.stdout, done.stderr[-3000:]


def test_installs_keep_slicers_numpy_scipy_simpleitk_and_vtk():
    text = dependencies.constraints_text()
    assert f"numpy=={importlib.metadata.version('numpy')}" in text.splitlines()
    assert f"scipy=={importlib.metadata.version('scipy')}" in text.splitlines()
    assert dependencies.constraints_text(("no-such-distribution",)) == "\n"
    assert dependencies.pip_command("PythonSlicer", "dipy", "/tmp/c.txt") == [
        "PythonSlicer", "-m", "pip", "install", "dipy", "--constraint", "/tmp/c.txt"]
    assert dependencies.plan_for_module("scipy") is None  # Slicer's own: never from here


def test_pip_runs_in_a_background_process_that_is_polled(monkeypatch):
    script = "import sys, time; print('Collecting json'); sys.stdout.flush(); time.sleep(0.2); print('Successfully installed json')"
    commands = []

    def command(python, requirement, constraints):
        commands.append(Path(constraints).read_text())
        return [sys.executable, "-c", script]

    monkeypatch.setattr(dependencies, "pip_command", command)
    install = dependencies.PipInstall(dependencies.InstallPlan("pip", "json", "json")).start()
    lines = []
    while install.running:
        lines += install.poll()  # returns at once: the GUI's timer calls it
    assert lines == ["Collecting json", "Successfully installed json"] and install.succeeded
    assert "numpy==" in commands[0]
    failing = dependencies.PipInstall(dependencies.InstallPlan("pip", "nothing", "no_such_module_here"))
    monkeypatch.setattr(dependencies, "pip_command", lambda *a: [sys.executable, "-c", "raise SystemExit(1)"])
    failing.start()
    while failing.running:
        failing.poll()
    assert failing.returncode == 1 and not failing.succeeded


def test_minimum_slicer_version_is_stated_and_checked():
    assert MINIMUM_SLICER_VERSION == (5, 8)
    assert version_problem((5, 8), (3, 12)) is None
    assert "5.8" in version_problem((5, 6), (3, 9))
    assert "Slicer 5.8 or later" in (REPO / "README.md").read_text()
    for module in ("MoEDenoise", "MoESuperRes"):
        assert "Needs Slicer 5.8 or later" in (REPO / module / f"{module}.py").read_text()
