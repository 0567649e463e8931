"""The two module files over the shared widget base, loaded against stand-ins for what only the
Slicer application has (ScriptedLoadableModule, parameterNodeWrapper, qt, loadUI).

The stand-ins keep the template's contract: the widget loads `<Module>.ui`, the parameter node
wrapper keeps typed fields with their defaults and reports changes as ModifiedEvent. The runs,
the MRML nodes and the panel's background process are real (slicer-core). What this cannot show,
the GUI binding of the .ui to the parameter node, is left to the modules' self-tests in Slicer.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from test_slicer_fixtures import fake_methods, sample_loaded, sample_node, scene, small_crop  # noqa: E402,F401
from test_slicer_logic import slice_views  # noqa: E402
from test_slicer_panel import FAKE_QT, run_to_end, ui_from_file  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent
        self.moduleName = type(self).__name__[: -len("Widget")]  # as Slicer names it
        self.layout = types.SimpleNamespace(addWidget=lambda widget: None)

    def setup(self):
        pass

    def resourcePath(self, filename):
        return str(REPO / self.moduleName / "Resources" / filename)


class ScriptedLoadableModuleLogic:
    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(type(self).__name__, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
            node.SetSingletonTag(type(self).__name__)
        return node


_STORED: dict[str, dict] = {}  # node ID -> values: the real wrapper keeps them in the node's parameters


def parameterNodeWrapper(cls):
    """Typed fields with the class's defaults, kept per node; a change is a ModifiedEvent of the node."""
    fields = {name: getattr(cls, name, None) for name in cls.__annotations__}

    class Wrapper:
        def __init__(self, node):
            object.__setattr__(self, "parameterNode", node)
            object.__setattr__(self, "_values", _STORED.setdefault(node.GetID(), dict(fields)))
            object.__setattr__(self, "guiConnections", 0)

        def __getattr__(self, name):
            if name in fields:
                return self._values[name]
            raise AttributeError(name)

        def __setattr__(self, name, value):
            if name not in fields:
                raise AttributeError(f"{cls.__name__} has no parameter {name}")
            self._values[name] = value
            self.parameterNode.Modified()

        def connectGui(self, ui):
            object.__setattr__(self, "guiConnections", self.guiConnections + 1)
            return "tag"

        def disconnectGui(self, tag):
            object.__setattr__(self, "guiConnections", self.guiConnections - 1)

        def AddObserver(self, event, callback, priority=0.0):
            return self.parameterNode.AddObserver(event, callback, priority)

        def RemoveObserver(self, tag):
            self.parameterNode.RemoveObserver(tag)

    Wrapper.__name__ = cls.__name__
    return Wrapper


def _stand_ins(monkeypatch, scene):
    sys.modules.pop("MoEMRILib.module_widget", None)
    sys.modules.pop("MoEMRILib.self_test", None)
    for name in ("MoEMRILib.module_panel", "MoEMRILib.result_views", "MoEMRILib.option_widgets"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "qt", FAKE_QT)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", types.SimpleNamespace(
        ScriptedLoadableModule=ScriptedLoadableModule, ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest=unittest.TestCase))
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", types.SimpleNamespace(
        parameterNodeWrapper=parameterNodeWrapper, Choice=lambda choices: None, WithinRange=lambda low, high: None))
    layout_node = slice_views(scene)[0]
    warnings, errors = [], []
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(
        majorVersion=5, minorVersion=8, connect=lambda *args: None,
        layoutManager=lambda: types.SimpleNamespace(layoutLogic=lambda: types.SimpleNamespace(GetLayoutNode=lambda: layout_node))),
        raising=False)
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: types.SimpleNamespace(path=path, setMRMLScene=lambda s: None), raising=False)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda widget: ui_from_file(Path(widget.path).stem), raising=False)
    monkeypatch.setattr(slicer.util, "warningDisplay", lambda text, **kw: warnings.append(text), raising=False)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: errors.append(text), raising=False)
    monkeypatch.setattr(slicer.util, "showStatusMessage", lambda text, ms=0: None, raising=False)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kw: None, raising=False)
    monkeypatch.setattr(slicer.util, "resetSliceViews", lambda: None, raising=False)
    return layout_node, warnings, errors


def _load_module_file(monkeypatch, module):
    spec = importlib.util.spec_from_file_location(module, REPO / module / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module, loaded)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture
def modules(monkeypatch, scene):
    layout_node, warnings, errors = _stand_ins(monkeypatch, scene)
    loaded = {m: _load_module_file(monkeypatch, m) for m in ("MoEDenoise", "MoESuperRes")}
    yield types.SimpleNamespace(layout_node=layout_node, warnings=warnings, errors=errors, **loaded)
    for name in ("MoEMRILib.module_widget", "MoEMRILib.self_test", "MoEMRILib.module_panel", "MoEMRILib.result_views",
                 "MoEMRILib.option_widgets"):
        sys.modules.pop(name, None)
    _STORED.clear()


def test_denoise_widget_runs_on_the_shared_base(scene, small_crop, fake_methods, modules):
    module = modules.MoEDenoise
    parent = types.SimpleNamespace(isEntered=True, path=str(REPO / "MoEDenoise" / "MoEDenoise.py"))
    declaration = module.MoEDenoise(parent)
    assert parent.title == "MoE Denoise" and declaration.parent is parent
    widget = module.MoEDenoiseWidget(parent)
    widget.setup()
    pn, ui = widget._parameterNode, widget.ui
    assert widget.moduleName == "MoEDenoise" and widget.panel.task == "denoise" and widget.panel.title == "MoE Denoise"
    first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
    assert pn.inputVolume is first and pn.guiConnections == 1  # the scene's first volume, GUI bound once
    pn.inputVolume = small_crop
    assert modules.warnings == []  # Slicer 5.8 is recent enough

    pn.method = "test-fake-moe-denoise"  # takes no noise level: the noise controls are off
    assert not ui.noiseModeComboBox.enabled and not ui.noiseLevelSliderWidget.enabled
    pn.method = "nlmeans-rician"
    assert ui.noiseModeComboBox.enabled and not ui.noiseLevelSliderWidget.enabled
    pn.noiseMode, pn.noiseLevel = "manual", 3.0
    ui.noiseModeComboBox.items, ui.noiseModeComboBox._index = [("auto", None), ("manual", None)], 1
    widget.updateTaskControls()
    assert ui.noiseLevelSliderWidget.enabled
    assert widget.logic.optionsFromParameters(pn, "nlmeans-rician") == {"noise_level_percent": 3.0}
    assert widget.logic.optionsFromParameters(pn, "curvature-diffusion") == {}

    pn.method = "test-fake-moe-denoise"
    ui.applyButton.emit("clicked(bool)", False)
    run_to_end(widget.panel)
    assert pn.outputVolume is not None and pn.expertMapVolume is not None and modules.errors == []

    ui.compareButton.emit("clicked(bool)", False)
    assert modules.layout_node.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    widget.exit()  # leaving the module gives back the layout and lets go of the parameter node
    assert modules.layout_node.GetViewArrangement() != slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert pn.guiConnections == 0 and widget._parameterNode is None
    widget.enter()
    assert widget._parameterNode.outputVolume is pn.outputVolume  # the same singleton parameter node
    widget.onSceneStartClose(None, None)
    assert widget._parameterNode is None
    widget.onSceneEndClose(None, None)
    assert widget._parameterNode is not None
    widget.cleanup()


def test_denoise_logic_takes_a_noise_level_from_the_console(scene, small_crop, modules):
    logic = modules.MoEDenoise.MoEDenoiseLogic()
    result = logic.process(small_crop, None, "curvature-diffusion", noiseLevelPercent=3.0)
    assert result.image.array.shape == slicer.util.arrayFromVolume(small_crop).shape
    assert logic.noiseOptions("curvature-diffusion", 3.0) == {}  # it estimates nothing and takes none


def test_superres_widget_controls_and_output_grid(scene, small_crop, modules):
    module = modules.MoESuperRes
    parent = types.SimpleNamespace(isEntered=False, path=str(REPO / "MoESuperRes" / "MoESuperRes.py"))
    widget = module.MoESuperResWidget(parent)
    widget.setup()
    pn, ui = widget._parameterNode, widget.ui
    ui.resolutionModeComboBox.items, ui.resolutionModeComboBox._index = [("spacing", None), ("scale", None)], 1
    widget.updateTaskControls()
    assert ui.scaleFactorSpinBox.enabled and not ui.spacingXSpinBox.enabled
    pn.inputVolume, pn.resolutionMode, pn.scaleFactor = small_crop, "scale", 2.0
    spacing = widget.logic.optionsFromParameters(pn, "linear")["spacing"]
    assert spacing == tuple(s / 2.0 for s in small_crop.GetSpacing())
    result = widget.logic.process(small_crop, None, "linear", spacing=(4.0, 4.0, 4.0))
    assert result.image.spacing == (4.0, 4.0, 4.0)
    widget.cleanup()


def test_an_old_slicer_is_told_the_minimum_version(scene, modules, monkeypatch):
    monkeypatch.setattr(slicer.app, "minorVersion", 6)
    widget = modules.MoEDenoise.MoEDenoiseWidget(types.SimpleNamespace(isEntered=False))
    widget.setup()
    assert modules.warnings and "5.8" in modules.warnings[0]
    widget.cleanup()  # the widget observes the scene until then


def test_slicers_test_runner_collects_each_modules_own_test_case_only(modules):
    # slicer.testing.runUnitTest loads the module's tests with unittest's loader (the ctest of
    # each module's Testing/Python): the shared base must not be collected and run on its own.
    for name in ("MoEDenoise", "MoESuperRes"):
        suite = unittest.TestLoader().loadTestsFromModule(getattr(modules, name))
        cases = {type(test).__name__: test for group in suite for test in group}
        assert set(cases) == {f"{name}Test"}
        names = sorted(test._testMethodName for group in suite for test in group)
        assert names == ["test_background_and_cancel", "test_overlay_and_compare", "test_task_on_sample"]
