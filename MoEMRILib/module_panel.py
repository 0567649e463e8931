"""The panel behaviour both modules share: pickers, options, Apply/Cancel with a background
process, progress, result. Needs the Slicer application (qt); the testable work lives in
processing_logic, the core's background run, method choices and options, and the MRML helpers.

Each module's Widget keeps Slicer's template shape (loads its .ui, owns the parameter node) and
hands this class its `ui`, the processing logic, the option names it handles with its own
controls and a function that turns those controls into method options. Both .ui files share the
widget names used here and in result_views.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import qt

import slicer
from moemri.errors import MoEMRIError

from .dependencies import PipInstall, confirm_install, install_torch, plan_for_module, plan_for_reason
from moemri.methods.choices import MethodChoice, available_devices, device_note, method_blurb, methods_for_task, resolve_device, selection_text
from moemri.methods.options import generic_options, stored_options, with_option
from .option_widgets import OptionControls
from .processing_logic import result_summary, result_warnings
from .result_views import ResultViews
from .volume_nodes import input_node_problem, volume_view_from_node
from moemri.background.protocol import MissingPackage, RunCallbacks, WorkerError

log = logging.getLogger(__name__)

POLL_INTERVAL_MS = 100  # progress a few times a second; Cancel reacts within a poll
LOG_LINES = 2000  # the log panel keeps the last lines of the runs and installs
# options_for(parameterNode, methodName) -> method options from the module's own controls
OptionsFromParameters = Callable[[Any, str], dict]


class MoEModulePanel:
    def __init__(self, ui, processing, task: str, options_for: OptionsFromParameters, title: str, handled_options: Iterable[str] = ()):
        self.ui = ui
        self.processing = processing  # a MoEProcessingLogic: prepare / start / finish
        self.task = task
        self.options_for = options_for
        self.title = title
        self.handled_options = tuple(handled_options)
        self.parameterNode = None
        self.job = None  # the BackgroundRun in progress, if any
        self.install = None  # the PipInstall in progress, if any
        self._afterInstall = None  # what to do once it has succeeded
        self.request = None
        self.runParameterNode = None  # the run's settings, even if the user leaves the module meanwhile
        self._choices: dict[str, MethodChoice] = {}
        self._updating = False
        self._shown = {}  # what the method-dependent controls currently show
        self.results = ResultViews(ui)
        self.optionControls = OptionControls(ui.methodOptionsWidget, self.onOptionChanged)
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_INTERVAL_MS)
        self.timer.connect("timeout()", self.onPoll)
        self.runEvents = RunCallbacks(self.onRunProgress, self.onRunWarning, self.onRunLog)

        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.expertsComboBox.connect("currentIndexChanged(int)", self.onExpertsChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyOrCancel)
        self.ui.progressBar.hide()
        self.ui.logTextEdit.setMaximumBlockCount(LOG_LINES)
        self.ui.logTextEdit.setReadOnly(True)
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
            except ImportError as error:  # the core's packages are installed on request, never at import
                self.ui.resultLabel.text = f"MoE-MRI needs Python packages that are not installed yet: {error}"
                choices = []
            self._choices = {c.name: c for c in choices}
            for index, choice in enumerate(choices):
                combo.addItem(choice.label if not choice.unavailable else f"{choice.label} (not available)", choice.name)
                combo.setItemData(index, choice.tooltip, qt.Qt.ToolTipRole)
            self.ui.deviceComboBox.clear()
            for device in available_devices():
                self.ui.deviceComboBox.addItem(device, device)
            self._shown = {}
        finally:
            self._updating = False

    def setParameterNode(self, parameterNode) -> None:
        self.parameterNode = parameterNode
        self._shown = {}
        self.results.setParameterNode(parameterNode)
        if parameterNode is None:
            return
        if parameterNode.method not in self._choices and self._choices:
            parameterNode.method = next(iter(self._choices))
        self.updateFromParameterNode()

    def updateFromParameterNode(self, caller=None, event=None) -> None:
        """Show the parameter node's method, experts, device and options; enable Apply when it can run."""
        pn = self.parameterNode
        if pn is None or self._updating:
            return
        self._updating = True
        try:
            choice = self._choices.get(pn.method)
            self.ui.methodComboBox.currentIndex = self.ui.methodComboBox.findData(pn.method)
            if self._shown.get("method") != pn.method:
                self._showMethod(choice)
            if choice is not None:
                experts = pn.experts if pn.experts in choice.expert_counts else choice.default_experts
                self.ui.expertsComboBox.currentIndex = self.ui.expertsComboBox.findData(experts)
            self._showDevice(pn.device)
            self.ui.deviceComboBox.enabled = choice is not None and not choice.info.classical
            if self._shown.get("options") != pn.methodOptions:
                self._shown["options"] = pn.methodOptions
                self.optionControls.set_values(stored_options(pn.methodOptions, pn.method, self.handled_options))
            self._showSelection()
        finally:
            self._updating = False
        self.results.update()
        self.checkCanApply()

    def _showDevice(self, device: str) -> None:
        """The device that will really run: a saved scene's device this computer lacks shows as
        the CPU it falls back to, with a tooltip that says so (the parameter node keeps the saved
        device, so the scene still asks for the GPU on a computer that has it)."""
        combo = self.ui.deviceComboBox
        index = combo.findData(device)
        note = device_note(device)
        if index < 0:
            index = combo.findData(resolve_device(device))
        combo.currentIndex = index if index >= 0 else 0
        combo.toolTip = note or "Where learned methods run: auto picks a CUDA GPU, else Apple's mps, else the CPU."

    def _showMethod(self, choice: MethodChoice | None) -> None:
        pn = self.parameterNode
        self._shown["method"] = pn.method
        combo = self.ui.expertsComboBox
        combo.clear()
        for count in choice.expert_counts if choice else ():
            combo.addItem("1 (single model)" if count == 1 else f"{count} experts", count)
        combo.enabled = choice is not None and len(choice.expert_counts) > 1
        self.ui.methodDescriptionLabel.text = method_blurb(choice.info) if choice else ""
        self.optionControls.show(generic_options(pn.method, self.handled_options),
                                 stored_options(pn.methodOptions, pn.method, self.handled_options))
        self._shown["options"] = pn.methodOptions

    def _showSelection(self) -> None:
        """The method's `describe_selection` text for this input, recomputed when either changes."""
        pn = self.parameterNode
        node = pn.inputVolume
        key = (pn.method, node.GetID() if node else None, node.GetImageData().GetMTime() if node and node.GetImageData() else 0)
        if self._shown.get("selection") == key:
            return
        self._shown["selection"] = key
        text = selection_text(pn.method, volume_view_from_node(node)) if node and not input_node_problem(node) else ""
        self.ui.selectionLabel.text = text
        self.ui.selectionLabel.visible = bool(text)

    def onMethodChanged(self, index: int) -> None:
        if self._updating or self.parameterNode is None or index < 0:
            return
        name = self.ui.methodComboBox.itemData(index)
        choice = self._choices.get(name)
        if choice is not None and self.parameterNode.experts not in choice.expert_counts:
            self.parameterNode.experts = choice.default_experts
        self.parameterNode.method = name

    def onExpertsChanged(self, index: int) -> None:
        if not self._updating and self.parameterNode is not None and index >= 0:
            self.parameterNode.experts = int(self.ui.expertsComboBox.itemData(index))

    def onDeviceChanged(self, index: int) -> None:
        if not self._updating and self.parameterNode is not None and index >= 0:
            self.parameterNode.device = self.ui.deviceComboBox.itemData(index)

    def onOptionChanged(self, spec, value) -> None:
        pn = self.parameterNode
        if pn is not None and not self._updating:
            self._shown["options"] = text = with_option(pn.methodOptions, pn.method, spec, value)
            pn.methodOptions = text

    def checkCanApply(self) -> None:
        if self.job is not None:
            return  # the button is Cancel while a run is in progress
        if self.install is not None:
            self.ui.applyButton.enabled = False
            self.ui.applyButton.toolTip = f"Installing {self.install.plan.requirement}: see the log."
            return
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

    # Apply / Cancel ------------------------------------------------------------------------

    def onApplyOrCancel(self, *unused) -> None:
        if self.job is not None:
            self.cancel()
        elif self.install is None:
            self.start()

    def start(self) -> None:
        pn = self.parameterNode
        choice = self._choices.get(pn.method)
        if choice is not None and choice.unavailable:
            if not self._installFor(plan_for_reason(choice.unavailable), choice):
                slicer.util.errorDisplay(f"{choice.label} cannot run here: {choice.unavailable}", windowTitle=self.title)
            return  # an install runs in the background; Apply runs again once it has succeeded
        try:
            options = {**stored_options(pn.methodOptions, pn.method, self.handled_options), **self.options_for(pn, pn.method)}
            self.request = self.processing.prepare(pn.inputVolume, pn.outputVolume, self.task, pn.method,
                                                   experts=pn.experts or None, device=pn.device, options=options,
                                                   expertMapNode=pn.expertMapVolume)
            self.job = self.processing.start(self.request)
            self.runParameterNode = pn
        except MoEMRIError as error:
            slicer.util.errorDisplay(str(error), windowTitle=f"{self.title}: cannot run")
            return
        except Exception as error:  # a bug rather than a user error: keep the traceback
            log.exception("%s could not start", self.title)
            slicer.util.errorDisplay(f"{self.title} could not start: {error}", windowTitle=self.title)
            return
        self._setRunning(True)
        self.appendLog(f"--- {self.title}: {pn.method} on {pn.inputVolume.GetName()} ({self.request.device})")
        self.timer.start()

    def cancel(self) -> None:
        """Stop the background process; nothing was written to the scene."""
        if self.job is None:
            return
        self.job.cancel()
        self.appendLog(f"--- cancelled after {self.job.seconds:.1f} s")
        self._ended()
        slicer.util.showStatusMessage(f"{self.title}: cancelled", 3000)

    def onPoll(self) -> None:
        if self.install is not None:
            self._pollInstall()
            return
        job = self.job
        if job is None:
            self.timer.stop()
            return
        if job.pump(self.runEvents):
            return
        request, runParameterNode = self.request, self.runParameterNode
        self._ended()
        if job.state == "finished":
            self._finish(request, job, runParameterNode)
        elif job.state == "failed":
            self._fail(job.error)

    def onRunProgress(self, fraction: float, stage: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.progressBar.format = f"{stage}: %p%"

    def onRunWarning(self, text: str) -> None:
        log.warning("%s: %s", self.title, text)
        self.appendLog(f"Warning: {text}")
        slicer.util.showStatusMessage(f"{self.title}: {text}", 5000)

    def onRunLog(self, line: str) -> None:
        log.debug("%s: %s", self.title, line)
        self.appendLog(line)

    def appendLog(self, text: str) -> None:
        """A line in the log panel (the worker's and pip's output, stages, warnings)."""
        self.ui.logTextEdit.appendPlainText(text)

    def _finish(self, request, job, pn) -> None:
        self.appendLog(f"--- finished in {job.seconds:.1f} s")
        try:
            self.processing.finish(request, job.result, job.seconds)
        except Exception as error:
            log.exception("%s: writing the result failed", self.title)
            slicer.util.errorDisplay(f"{self.title}: writing the result failed: {error}", windowTitle=self.title)
            return
        pn.outputVolume = request.outputNode
        if request.expertMapNode is not None:
            pn.expertMapVolume = request.expertMapNode
        if self.parameterNode is pn:  # the module still shows this run's settings
            self.showSummary()
            self.results.showResult()

    def _fail(self, error) -> None:
        self.appendLog(f"--- failed: {error}")
        if isinstance(error, MissingPackage):
            choice = self._choices.get(self.parameterNode.method) if self.parameterNode else None
            if self._installFor(plan_for_module(error.module), choice):
                return  # the run starts again once the package is installed
        if isinstance(error, WorkerError):
            log.error("%s failed: %s\n%s", self.title, error, error.details)
            slicer.util.errorDisplay(f"{self.title} failed: {error}", windowTitle=self.title, detailedText=error.details)
        else:  # a user error from the method: its message says what to do (errorDisplay logs it too)
            slicer.util.errorDisplay(str(error), windowTitle=f"{self.title}: cannot run")

    def _installFor(self, plan, choice) -> bool:
        """Offer to install what the method misses; True if an install was started (Apply runs
        again once it has succeeded). pip runs in a background process, so Slicer stays usable."""
        if plan is None or not confirm_install(plan, choice.label if choice else self.title):
            return False
        if plan.kind == "pytorch":  # the PyTorch extension's own installer
            try:
                with slicer.util.WaitCursor():
                    install_torch()
            except Exception as error:
                log.exception("installing PyTorch failed")
                slicer.util.errorDisplay(f"Installing PyTorch failed: {error}", windowTitle=self.title, detailedText=str(error))
                return True  # the user was told; nothing more to do
            self._installed()
            return True
        try:
            self.install = PipInstall(plan).start()
        except OSError as error:
            slicer.util.errorDisplay(f"Could not start pip: {error}", windowTitle=self.title)
            return True
        self.appendLog(f"--- installing {plan.requirement} (numpy, SciPy, SimpleITK and VTK are kept)")
        self._setInstalling(True)
        self.timer.start()
        return True

    def _pollInstall(self) -> None:
        install = self.install
        for line in install.poll():
            self.appendLog(line)
        if install.running:
            return
        self.install = None
        self.timer.stop()
        self._setInstalling(False)
        if install.succeeded:
            self.appendLog(f"--- {install.plan.requirement} installed")
            self._installed()
        else:
            tail = "\n".join(install.lines[-20:])
            slicer.util.errorDisplay(f"Installing {install.plan.requirement} failed (pip exit code {install.returncode}); "
                                     "see the log panel.", windowTitle=self.title, detailedText=tail)

    def _installed(self) -> None:
        self.fillPickers()  # availability has changed
        self.updateFromParameterNode()
        pn = self.parameterNode
        choice = self._choices.get(pn.method) if pn is not None else None
        if choice is not None and choice.unavailable:  # installed, yet not enough: say so, do not ask again
            slicer.util.errorDisplay(f"{choice.label} still cannot run here: {choice.unavailable}", windowTitle=self.title)
        elif pn is not None:
            self.start()

    def _setInstalling(self, installing: bool) -> None:
        self.ui.progressBar.visible = installing
        self.ui.progressBar.setRange(0, 0 if installing else 100)  # busy: pip tells no fraction
        self.ui.progressBar.format = f"installing {self.install.plan.requirement}" if installing else "%p%"
        if installing:
            self.ui.logCollapsibleButton.collapsed = False  # pip's output is all there is to see
        self.checkCanApply()

    def _setRunning(self, running: bool) -> None:
        for section in (self.ui.inputsCollapsibleButton, self.ui.optionsCollapsibleButton, self.ui.outputsCollapsibleButton):
            section.enabled = not running
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.applyButton.enabled = True
        self.ui.applyButton.toolTip = "Stop the running method; the scene is left as it was." if running else ""
        self.ui.progressBar.value = 0
        self.ui.progressBar.format = "starting: %p%"
        self.ui.progressBar.visible = running

    def _ended(self) -> None:
        self.timer.stop()
        self.job = None
        self.request = self.runParameterNode = None
        self._setRunning(False)
        self.checkCanApply()

    def showSummary(self) -> None:
        pn = self.parameterNode
        lines = [result_summary(pn.outputVolume)]
        lines += [f'<span style="color:#c06000">Warning: {w}</span>' for w in result_warnings(pn.outputVolume)]
        self.ui.resultLabel.text = "<br>".join(line for line in lines if line) or "No result yet."
