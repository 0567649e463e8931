"""The shared panel (module_panel, option_widgets, result_views) driven without Slicer's GUI.

slicer-core has no qt, so `qt` is replaced by small stand-ins that keep widget state and emit the
signals the panel connects to, and the `ui` holds one stand-in per widget of the module's .ui file
(a widget the code uses but the .ui lacks is an AttributeError). The runs are real: background
process, MRML nodes, slice composite nodes. What this cannot show - drawing, the layout manager's
views, the parameter node wrapper's GUI binding - is left to the modules' self-tests in Slicer.
"""
from __future__ import annotations

import sys
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

from moemri.methods.options import stored_options, with_option  # noqa: E402
from MoEMRILib.processing_logic import MoEProcessingLogic  # noqa: E402
from moemri.methods.registry import get_method  # noqa: E402
from test_slicer_fakes import NeedsPackageDenoiser  # noqa: E402
from test_slicer_fixtures import fake_methods, sample_loaded, sample_node, scene, small_crop  # noqa: E402,F401
from test_slicer_logic import slice_views  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


class Widget:
    """A qt widget's state and signals: properties are plain attributes."""

    def __init__(self, *args, **kwargs):
        self.enabled, self.visible, self.toolTip, self.text, self.format, self.value = True, True, "", "", "", 0
        self._slots, self._blocked, self._layout = {}, False, None

    def connect(self, signal, slot):
        self._slots.setdefault(signal, []).append(slot)

    def emit(self, signal, *args):
        if not self._blocked:
            for slot in self._slots.get(signal, []):
                slot(*args)

    def blockSignals(self, block):
        previous, self._blocked = self._blocked, block
        return previous

    def hide(self):
        self.visible = False

    def show(self):
        self.visible = True

    def layout(self):
        return self._layout

    def setRange(self, low, high):
        self.range = (low, high)

    def setStretchLastSection(self, on):
        pass

    def setBackground(self, brush):
        self.background = brush

    def setToolTip(self, text):
        self.toolTip = text


class ValueWidget(Widget):  # QSpinBox, QDoubleSpinBox, ctkSliderWidget
    def __setattr__(self, name, value):
        changed = name == "value" and getattr(self, "value", None) != value
        super().__setattr__(name, value)
        if changed and hasattr(self, "_slots"):
            self.emit("valueChanged(double)", value)
            self.emit("valueChanged(int)", value)


class CheckBox(Widget):
    checked = False

    def __setattr__(self, name, value):
        changed = name == "checked" and self.checked != value
        super().__setattr__(name, value)
        if changed:
            self.emit("toggled(bool)", value)


class ComboBox(Widget):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.items, self._index = [], -1

    count = property(lambda self: len(self.items))
    currentText = property(lambda self: self.items[self._index][0] if 0 <= self._index < len(self.items) else "")

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, index):
        index = index if 0 <= index < len(self.items) else -1
        if index != self._index:
            self._index = index
            self.emit("currentIndexChanged(int)", index)

    def addItem(self, text, data=None):
        self.items.append((text, data))
        if self._index < 0:
            self.currentIndex = 0

    def clear(self):
        self.items = []
        self.currentIndex = -1

    def findData(self, data):
        return next((i for i, (_, d) in enumerate(self.items) if d == data), -1)

    def itemData(self, index):
        return self.items[index][1]

    def setItemData(self, index, value, role):
        pass


class Table(Widget):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.cells, self.rows = {}, 0

    def setRowCount(self, rows):
        self.rows = rows

    def rowCount(self):
        return self.rows

    def setItem(self, row, column, item):
        self.cells[row, column] = item

    def item(self, row, column):
        return self.cells.get((row, column))

    def horizontalHeader(self):
        return Widget()

    verticalHeader = horizontalHeader


class FormLayout:
    def __init__(self, container=None):
        self.rows = []
        if container is not None:
            container._layout = self

    def addRow(self, label, widget):
        self.rows.append((label, widget))

    def rowCount(self):
        return len(self.rows)

    def removeRow(self, row):
        del self.rows[row]


class PlainTextEdit(Widget):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.lines, self.readOnly, self.maximumBlockCount = [], False, 0

    def appendPlainText(self, text):
        self.lines.append(text)

    def setReadOnly(self, on):
        self.readOnly = on

    def setMaximumBlockCount(self, count):
        self.maximumBlockCount = count


class TableItem(Widget):
    def __init__(self, text=""):
        super().__init__()
        self.text = text


class Timer(Widget):
    active = False

    def setInterval(self, ms):
        self.interval = ms

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


FAKE_QT = types.SimpleNamespace(
    QTimer=Timer, QFormLayout=FormLayout, QSpinBox=ValueWidget, QDoubleSpinBox=ValueWidget, QCheckBox=CheckBox,
    QComboBox=ComboBox, QLineEdit=Widget, QTableWidgetItem=TableItem, QBrush=lambda color: color,
    QColor=lambda *rgb: rgb, Qt=types.SimpleNamespace(ToolTipRole=3),
)
WIDGET_CLASSES = {"QComboBox": ComboBox, "QCheckBox": CheckBox, "QTableWidget": Table, "ctkSliderWidget": ValueWidget,
                  "QDoubleSpinBox": ValueWidget, "QSpinBox": ValueWidget, "QPlainTextEdit": PlainTextEdit}


def ui_from_file(module):
    widgets = ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui").getroot().iter("widget")
    return types.SimpleNamespace(**{w.get("name"): WIDGET_CLASSES.get(w.get("class"), Widget)() for w in widgets})


@pytest.fixture
def panel_module(monkeypatch):
    """MoEMRILib.module_panel imported against the stand-in qt, with Slicer's dialogs recorded."""
    monkeypatch.setitem(sys.modules, "qt", FAKE_QT)
    for name in ("MoEMRILib.module_panel", "MoEMRILib.result_views", "MoEMRILib.option_widgets"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import MoEMRILib.module_panel as module_panel

    calls = {"errors": [], "status": [], "layers": []}
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: calls["errors"].append((text, kw)))
    monkeypatch.setattr(slicer.util, "showStatusMessage", lambda text, ms=0: calls["status"].append(text))
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kw: calls["layers"].append(kw))
    monkeypatch.setattr(slicer.util, "resetSliceViews", lambda: None)
    monkeypatch.setattr(module_panel, "confirm_install", lambda plan, why: False)  # the user declines
    module_panel.calls = calls
    yield module_panel
    for name in ("MoEMRILib.module_panel", "MoEMRILib.result_views", "MoEMRILib.option_widgets"):
        sys.modules.pop(name, None)


def parameter_node(**values):
    defaults = dict(inputVolume=None, outputVolume=None, expertMapVolume=None, method="", experts=0, device="auto",
                    noiseMode="auto", noiseLevel=5.0, methodOptions="", showExpertMap=True, expertMapOpacity=0.5,
                    overlay="", fade=0.5)
    return types.SimpleNamespace(**{**defaults, **values})


def make_panel(module_panel, module, task, handled):
    ui = ui_from_file(module)
    ui.showExpertMapCheckBox.checked = True  # as the parameter node's binding would show it
    ui.expertMapOpacitySliderWidget.value = 0.5
    panel = module_panel.MoEModulePanel(ui, MoEProcessingLogic(), task, lambda pn, method: {}, module, handled)
    return panel, ui


def run_to_end(panel, until=lambda: False, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while panel.job is not None and not until():
        assert panel.timer.active and time.monotonic() < deadline
        panel.onPoll()
        time.sleep(0.02)


def test_panel_runs_a_mixture_of_experts_and_shows_its_experts(scene, small_crop, fake_methods, panel_module, monkeypatch):
    keep = slice_views(scene)
    panel, ui = make_panel(panel_module, "MoEDenoise", "denoise", ("noise_level_percent",))
    pn = parameter_node(inputVolume=small_crop, method="test-fake-moe-denoise")
    panel.setParameterNode(pn)
    items = ui.methodComboBox.items
    first_classical = next(i for i, (text, _) in enumerate(items) if text.endswith("(classical)"))
    assert ("Fake gated denoiser", "test-fake-moe-denoise") in items[:first_classical]
    assert [text for text, _ in ui.expertsComboBox.items] == ["2 experts", "3 experts"] and ui.expertsComboBox.enabled
    assert "Reference: none" in ui.methodDescriptionLabel.text
    assert ui.deviceComboBox.items[0][1] == "auto" and ui.deviceComboBox.items[-1][1] == "cpu"
    spec, control = panel.optionControls.controls["strength"]
    assert control.value == 0.5 and control.toolTip == spec.help
    control.value = 0.25  # the user turns the generic option's spin box
    assert stored_options(pn.methodOptions, pn.method) == {"strength": 0.25}
    ui.expertsComboBox.currentIndex = 1
    assert pn.experts == 3
    assert ui.applyButton.enabled and ui.applyButton.text == ""

    ui.applyButton.emit("clicked(bool)", False)
    assert panel.job is not None and ui.applyButton.text == "Cancel" and ui.progressBar.visible
    assert not ui.inputsCollapsibleButton.enabled and not ui.optionsCollapsibleButton.enabled
    run_to_end(panel)

    assert ui.applyButton.text == "Apply" and not ui.progressBar.visible and ui.inputsCollapsibleButton.enabled
    assert panel_module.calls["errors"] == []
    assert pn.outputVolume.GetAttribute("MoEMRI.experts") == "3" and pn.expertMapVolume is not None
    assert ui.resultLabel.text.startswith("test-fake-moe-denoise, 3 experts on cpu")
    assert ui.expertLegendTable.rowCount() == 3 and ui.expertLegendTable.item(2, 1).text == "tercile 3"
    assert [d for _, d in ui.overlayComboBox.items] == ["", "1", "2", "3", "difference:1", "difference:2", "difference:3", "labels:brightness"]
    assert ui.overlayComboBox.enabled
    assert panel_module.calls["layers"][-1]["foreground"] is pn.outputVolume

    from MoEMRILib import compare_views

    composites = compare_views.slice_composite_nodes(scene)
    assert all(c.GetLabelVolumeID() == pn.expertMapVolume.GetID() for c in composites.values())
    ui.overlayComboBox.currentIndex = 2  # the probability of expert 2 as a colour overlay
    assert pn.overlay == "2"
    probability = pn.outputVolume.GetNthNodeReference("MoEMRIExpertProbability", 1)
    assert all(c.GetForegroundVolumeID() == probability.GetID() and c.GetLabelVolumeID() is None for c in composites.values())
    ui.overlayComboBox.currentIndex = 6  # what expert 3 changes, over the result
    difference = pn.outputVolume.GetNthNodeReference("MoEMRIExpertDifference", 2)
    assert pn.overlay == "difference:3" and all(c.GetForegroundVolumeID() == difference.GetID() for c in composites.values())
    ui.overlayComboBox.currentIndex = 7  # the further label map, as the label layer over input under result
    brightness = pn.outputVolume.GetNthNodeReference("MoEMRILabelMap", 0)
    assert all(c.GetLabelVolumeID() == brightness.GetID() and c.GetForegroundVolumeID() == pn.outputVolume.GetID() for c in composites.values())
    ui.overlayComboBox.currentIndex = 2
    ui.showExpertMapCheckBox.checked = False  # hide it: back to the input under the result
    assert all(c.GetForegroundVolumeID() == pn.outputVolume.GetID() for c in composites.values())

    layout_node = keep[0]
    layout_before = layout_node.GetViewArrangement()
    assert layout_before != compare_views.SIDE_BY_SIDE_LAYOUT
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(layoutManager=lambda: types.SimpleNamespace(
        layoutLogic=lambda: types.SimpleNamespace(GetLayoutNode=lambda: layout_node))), raising=False)
    ui.compareButton.emit("clicked(bool)", False)
    assert layout_node.GetViewArrangement() == compare_views.SIDE_BY_SIDE_LAYOUT and pn.fade == 1.0
    assert composites["Red"].GetForegroundVolumeID() is None and composites["Yellow"].GetLinkedControl() == 1
    ui.fadeSliderWidget.value = 0.3
    assert composites["Yellow"].GetForegroundOpacity() == pytest.approx(0.3)
    ui.compareButton.emit("clicked(bool)", False)  # a second press gives back the layout Compare replaced
    assert layout_node.GetViewArrangement() == layout_before and ui.compareButton.text == "Compare before/after"
    ui.compareButton.emit("clicked(bool)", False)
    layout_node.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUp3DView)  # the user moves on
    assert not panel.results.restoreLayout()  # leaving the module keeps the user's own choice
    assert layout_node.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutOneUp3DView


def test_panel_cancel_and_errors(scene, small_crop, fake_methods, panel_module):
    panel, ui = make_panel(panel_module, "MoEDenoise", "denoise", ("noise_level_percent",))
    slow = get_method("test-slow-denoise")
    pn = parameter_node(inputVolume=small_crop, method=slow.info.name,
                        methodOptions=with_option("", slow.info.name, slow.info.options[0], 30))
    panel.setParameterNode(pn)
    nodes_before = scene.GetNumberOfNodes()
    ui.applyButton.emit("clicked(bool)", False)
    run_to_end(panel, until=lambda: ui.progressBar.format.startswith("working"))
    job = panel.job
    started = time.monotonic()
    ui.applyButton.emit("clicked(bool)", False)  # the button is Cancel now
    assert time.monotonic() - started < 1.0
    assert panel.job is None and job.state == "cancelled" and ui.applyButton.text == "Apply"
    assert scene.GetNumberOfNodes() == nodes_before and pn.outputVolume is None
    assert panel_module.calls["status"][-1].endswith("cancelled") and panel_module.calls["errors"] == []
    log_lines = ui.logTextEdit.lines  # the log panel: what the worker printed, and how the run ended
    assert log_lines[0].startswith("--- MoEDenoise: test-slow-denoise on small crop")
    assert "slow test method: warming up" in log_lines and log_lines[-1].startswith("--- cancelled after")

    pn.method = "test-failing-denoise"  # a user error in the worker: its message in a dialog
    panel.updateFromParameterNode()
    ui.applyButton.emit("clicked(bool)", False)
    run_to_end(panel)
    text, options = panel_module.calls["errors"][-1]
    assert text == "the fake method refuses this volume: it is too small for its 9-voxel patches"
    assert "detailedText" not in options and scene.GetNumberOfNodes() == nodes_before

    failing = get_method("test-failing-denoise")
    pn.methodOptions = with_option("", failing.info.name, failing.info.options[0], "bug")
    panel.updateFromParameterNode()
    ui.applyButton.emit("clicked(bool)", False)
    run_to_end(panel)
    text, options = panel_module.calls["errors"][-1]
    assert "ZeroDivisionError" in text and "Traceback" in options["detailedText"]

    pn.inputVolume = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "mask")  # refused before Apply
    panel.updateFromParameterNode()
    assert not ui.applyButton.enabled and "label map" in ui.applyButton.toolTip


def test_panel_shows_what_the_method_selects_for_the_input(scene, small_crop, fake_methods, panel_module):
    panel, ui = make_panel(panel_module, "MoESuperRes", "superres", ("spacing",))
    panel.setParameterNode(parameter_node(inputVolume=small_crop, method="test-selecting-superres"))
    assert ui.selectionLabel.text == "the expert for 3 mm slices will be used" and ui.selectionLabel.visible
    assert sorted(panel.optionControls.controls) == ["seed", "steps"]  # spacing has the module's own controls
    assert [label for label, _ in ui.methodOptionsWidget.layout().rows] == ["Steps:", "Seed:"]


def test_panel_shows_the_device_that_will_really_run(scene, small_crop, fake_methods, panel_module, monkeypatch):
    monkeypatch.setattr(panel_module, "available_devices", lambda: ["auto", "cpu"])
    import moemri.methods.choices as choices

    monkeypatch.setattr(choices, "available_devices", lambda: ["auto", "cpu"])
    panel, ui = make_panel(panel_module, "MoEDenoise", "denoise", ("noise_level_percent",))
    pn = parameter_node(inputVolume=small_crop, method="test-fake-moe-denoise", device="cuda:1")  # saved on a GPU machine
    panel.setParameterNode(pn)
    assert ui.deviceComboBox.currentText == "cpu" and "cuda:1" in ui.deviceComboBox.toolTip
    assert pn.device == "cuda:1"  # the scene still asks for the GPU where there is one
    pn.device = "auto"
    panel.updateFromParameterNode()
    assert ui.deviceComboBox.currentText == "auto" and "mps" in ui.deviceComboBox.toolTip


class FakeInstall:
    """A pip install that prints two lines and 'installs' the test double's package."""

    def __init__(self, plan, install):
        self.plan, self.install, self.lines, self.returncode, self._polls = plan, install, [], None, 0

    def start(self):
        return self

    @property
    def running(self):
        return self.returncode is None

    @property
    def succeeded(self):
        return self.returncode == 0

    def poll(self):
        self._polls += 1
        if self._polls == 1:
            return ["Collecting dipy", "Downloading dipy-1.10.whl"]
        self.install()
        self.returncode = 0
        return ["Successfully installed dipy-1.10"]


def test_panel_installs_a_missing_package_in_the_background_then_runs(scene, small_crop, fake_methods, panel_module, monkeypatch):
    monkeypatch.delenv(NeedsPackageDenoiser.PACKAGE_VARIABLE, raising=False)
    panel, ui = make_panel(panel_module, "MoEDenoise", "denoise", ("noise_level_percent",))
    pn = parameter_node(inputVolume=small_crop, method="test-needs-package-denoise")
    panel.setParameterNode(pn)
    ui.applyButton.emit("clicked(bool)", False)  # the user declines (the fixture's answer): the reason, nothing else
    assert "dipy" in panel_module.calls["errors"][-1][0] and panel.install is None and panel.job is None

    asked = []
    monkeypatch.setattr(panel_module, "confirm_install", lambda plan, why: asked.append(plan) or True)
    installed = lambda: monkeypatch.setenv(NeedsPackageDenoiser.PACKAGE_VARIABLE, "1")  # noqa: E731
    monkeypatch.setattr(panel_module, "PipInstall", lambda plan: FakeInstall(plan, installed))
    ui.applyButton.emit("clicked(bool)", False)
    assert asked[-1].requirement == "dipy" and panel.install is not None and panel.timer.active
    assert not ui.applyButton.enabled and ui.progressBar.visible  # the GUI is not blocked: it polls
    panel.onPoll()
    assert ui.logTextEdit.lines[-1] == "Downloading dipy-1.10.whl"
    panel.onPoll()  # pip has finished: the pickers are refilled and the run starts
    assert panel.install is None and panel.job is not None
    run_to_end(panel)
    assert pn.outputVolume is not None and len(panel_module.calls["errors"]) == 1
    assert "--- dipy installed" in ui.logTextEdit.lines
