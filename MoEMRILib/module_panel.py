"""The panel behaviour both modules share: pickers, Apply, progress, result, expert map, compare.

Each module's Widget keeps Slicer's template shape (loads its .ui, owns the parameter node) and
hands this class its `ui`, its logic and a function that turns the module's own option controls
into method options. Needs the Slicer application (qt); the testable work lives in
processing_logic, expert_overlay and compare_views.

Both .ui files therefore share these widget names: methodComboBox, expertsComboBox,
deviceComboBox, applyButton, progressBar, resultLabel, showExpertMapCheckBox,
expertMapOpacitySliderWidget, fadeSliderWidget, compareButton.
"""
from __future__ import annotations

import logging
import traceback
from typing import Any, Callable

import qt

import slicer
from moemri.errors import MoEMRIError

from . import compare_views
from .expert_overlay import expert_legend
from .processing_logic import MethodChoice, available_devices, methods_for_task, new_expert_map_node, new_output_node, result_summary
from .volume_nodes import input_node_problem

log = logging.getLogger(__name__)

# options_for(parameterNode, methodName) -> method options from the module's own controls
OptionsFromParameters = Callable[[Any, str], dict]


class MoEModulePanel:
    def __init__(self, ui, logic, task: str, options_for: OptionsFromParameters, title: str):
        self.ui = ui
        self.logic = logic  # has process(inputVolume, outputVolume, method, ..., options=...)
        self.task = task
        self.options_for = options_for
        self.title = title
        self.parameterNode = None
        self._choices: dict[str, MethodChoice] = {}
        self._updating = False
        self._expertsShownFor = None  # the method whose expert counts the experts picker lists

        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.expertsComboBox.connect("currentIndexChanged(int)", self.onExpertsChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.showExpertMapCheckBox.connect("toggled(bool)", self.onShowExpertMap)
        self.ui.expertMapOpacitySliderWidget.connect("valueChanged(double)", self.onShowExpertMap)
        self.ui.fadeSliderWidget.connect("valueChanged(double)", self.onFade)
        self.ui.compareButton.connect("clicked(bool)", self.onCompare)
        self.ui.progressBar.hide()
        self.fillPickers()

    # Pickers -------------------------------------------------------------------------------

    def fillPickers(self) -> None:
        """Method picker from the registry (classical methods marked), device picker from torch."""
        self._updating = True
        try:
            combo = self.ui.methodComboBox
            combo.clear()
            try:
                choices = methods_for_task(self.task)
            except ImportError as error:
                # The core's packages (scipy, dipy, ...) are installed on request, never at import.
                self.ui.resultLabel.text = f"MoE-MRI needs Python packages that are not installed yet: {error}"
                choices = []
            self._choices = {c.name: c for c in choices}
            for index, choice in enumerate(choices):
                label = choice.label if not choice.unavailable else f"{choice.label} (not available)"
                combo.addItem(label, choice.name)
                combo.setItemData(index, choice.tooltip, qt.Qt.ToolTipRole)
            devices = self.ui.deviceComboBox
            devices.clear()
            for device in available_devices():
                devices.addItem(device, device)
            self._expertsShownFor = None
        finally:
            self._updating = False

    def _fillExperts(self, choice: MethodChoice | None) -> None:
        combo = self.ui.expertsComboBox
        combo.clear()
        if choice is None:
            return
        for count in choice.expert_counts:
            combo.addItem("1 (single model)" if count == 1 else f"{count} experts", count)
        combo.enabled = len(choice.expert_counts) > 1

    def setParameterNode(self, parameterNode) -> None:
        self.parameterNode = parameterNode
        if parameterNode is None:
            return
        if parameterNode.method not in self._choices and self._choices:
            parameterNode.method = next(iter(self._choices))
        self.updateFromParameterNode()

    def updateFromParameterNode(self, caller=None, event=None) -> None:
        """Show the parameter node's method, experts and device; enable Apply when it can run."""
        pn = self.parameterNode
        if pn is None or self._updating:
            return
        self._updating = True
        try:
            choice = self._choices.get(pn.method)
            self.ui.methodComboBox.currentIndex = self.ui.methodComboBox.findData(pn.method)
            if self._expertsShownFor != pn.method:
                self._fillExperts(choice)
                self._expertsShownFor = pn.method
            if choice is not None:
                experts = pn.experts if pn.experts in choice.expert_counts else choice.default_experts
                self.ui.expertsComboBox.currentIndex = self.ui.expertsComboBox.findData(experts)
            deviceIndex = self.ui.deviceComboBox.findData(pn.device)
            self.ui.deviceComboBox.currentIndex = deviceIndex if deviceIndex >= 0 else 0
            self.ui.deviceComboBox.enabled = choice is not None and not choice.info.classical
        finally:
            self._updating = False
        self.checkCanApply()

    def onMethodChanged(self, index: int) -> None:
        if self._updating or self.parameterNode is None or index < 0:
            return
        name = self.ui.methodComboBox.itemData(index)
        choice = self._choices.get(name)
        if choice is not None and self.parameterNode.experts not in choice.expert_counts:
            self.parameterNode.experts = choice.default_experts
        self.parameterNode.method = name

    def onExpertsChanged(self, index: int) -> None:
        if self._updating or self.parameterNode is None or index < 0:
            return
        self.parameterNode.experts = int(self.ui.expertsComboBox.itemData(index))

    def onDeviceChanged(self, index: int) -> None:
        if self._updating or self.parameterNode is None or index < 0:
            return
        self.parameterNode.device = self.ui.deviceComboBox.itemData(index)

    def checkCanApply(self) -> None:
        problem = self.applyProblem()
        self.ui.applyButton.enabled = problem is None
        self.ui.applyButton.toolTip = problem or f"Run the selected method ({self.task}) on the input volume."

    def applyProblem(self) -> str | None:
        pn = self.parameterNode
        if pn is None:
            return "the module has no parameter node yet"
        problem = input_node_problem(pn.inputVolume)
        if problem:
            return problem[0].upper() + problem[1:]
        if pn.method not in self._choices:
            return "Choose a method."
        if pn.outputVolume is not None and pn.outputVolume is pn.inputVolume:
            return "The output volume is the input volume; choose or create another output volume."
        return None

    # Apply ---------------------------------------------------------------------------------

    def onApply(self) -> None:
        pn = self.parameterNode
        choice = self._choices.get(pn.method)
        createdExpertMap = None
        try:
            with slicer.util.WaitCursor():
                if pn.outputVolume is None:
                    pn.outputVolume = new_output_node(pn.inputVolume, self.task)
                if pn.expertMapVolume is None and choice is not None and not choice.info.classical:
                    createdExpertMap = pn.expertMapVolume = new_expert_map_node(pn.outputVolume)
                self.ui.progressBar.value = 0
                self.ui.progressBar.show()
                result = self.logic.process(
                    pn.inputVolume,
                    pn.outputVolume,
                    pn.method,
                    experts=pn.experts or None,
                    device=pn.device,
                    options=self.options_for(pn, pn.method),
                    expertMapVolume=pn.expertMapVolume,
                    progress=self.onProgress,
                )
        except MoEMRIError as error:
            slicer.util.errorDisplay(str(error), windowTitle=f"{self.title}: cannot run")
            return
        except Exception as error:  # a bug rather than a user error: keep the traceback
            log.exception("%s failed", self.title)
            slicer.util.errorDisplay(
                f"{self.title} failed: {error}", windowTitle=self.title, detailedText=traceback.format_exc()
            )
            return
        finally:
            self.ui.progressBar.hide()
        if createdExpertMap is not None and result.expert_map is None:
            slicer.mrmlScene.RemoveNode(createdExpertMap)
            pn.expertMapVolume = None
        self.showResult(result)

    def onProgress(self, fraction: float, stage: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.progressBar.format = f"{stage}: %p%"
        slicer.app.processEvents()

    def showResult(self, result) -> None:
        pn = self.parameterNode
        lines = [result_summary(pn.outputVolume)]
        for _, name, rgb, description, share in expert_legend(result):
            swatch = "#%02x%02x%02x" % tuple(rgb)
            lines.append(f'<span style="color:{swatch}">&#9632;</span> {name}: {100 * share:.1f} % of voxels')
        self.ui.resultLabel.text = "<br>".join(lines)
        self.ui.showExpertMapCheckBox.enabled = result.expert_map is not None
        slicer.util.setSliceViewerLayers(
            background=pn.inputVolume, foreground=pn.outputVolume, foregroundOpacity=pn.fade, fit=True
        )
        self.onShowExpertMap()

    # Views ---------------------------------------------------------------------------------

    def onShowExpertMap(self, *unused) -> None:
        pn = self.parameterNode
        if pn is None:
            return
        show = self.ui.showExpertMapCheckBox.checked and pn.expertMapVolume is not None
        compare_views.set_label_layer(
            slicer.mrmlScene, pn.expertMapVolume if show else None, self.ui.expertMapOpacitySliderWidget.value
        )

    def onFade(self, value: float) -> None:
        compare_views.set_fade(slicer.mrmlScene, value)

    def onCompare(self) -> None:
        pn = self.parameterNode
        if pn is None or pn.inputVolume is None or pn.outputVolume is None:
            slicer.util.errorDisplay("Run the method first: there is no result to compare yet.")
            return
        layoutNode = slicer.app.layoutManager().layoutLogic().GetLayoutNode()
        compare_views.set_compare_layout(layoutNode)
        compare_views.show_before_after(slicer.mrmlScene, pn.inputVolume, pn.outputVolume, fade=self.ui.fadeSliderWidget.value)
        self.onShowExpertMap()
        slicer.util.resetSliceViews()
