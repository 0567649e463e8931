"""The widget and logic both modules are made of, written once (needs the Slicer application).

A module file declares the module, its `@parameterNodeWrapper` parameter node and its
task-specific controls, and subclasses these two:
- `MoEModuleWidget`: loads `Resources/UI/<Module>.ui`, mounts the shared panel (module_panel),
  keeps the parameter node connected to the GUI through scene close and module enter/exit, and
  calls the module's hooks `setupTaskControls()` and `updateTaskControls()`;
- `MoEModuleLogic`: the module's processing (MoEProcessingLogic) with its parameter node class and
  the method options its own controls give (`optionsFromParameters`); `process(...)` runs a method
  from Slicer's Python console.
"""
from __future__ import annotations

import logging
from typing import Optional

import vtk

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from .processing_logic import MoEProcessingLogic
from .slicer_version import check_slicer_version

log = logging.getLogger(__name__)


class MoEModuleLogic(ScriptedLoadableModuleLogic):
    """Runs the module's task through the shared MoEProcessingLogic; from the Python console:

    logic = slicer.util.getModuleLogic("MoEDenoise")
    logic.process(inputVolume, None, "<a name from moemri.methods.choices.methods_for_task(logic.TASK)>")

    `runner` replaces how the method runs (default: in this process); e.g.
    `MoEDenoiseLogic(moemri.background.run.BackgroundProcessRunner())` runs it in a child process.
    """

    TASK = ""  # "denoise" or "superres"
    parameterNodeClass = None  # the module's @parameterNodeWrapper class

    def __init__(self, runner=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.processing = MoEProcessingLogic(runner)

    def getParameterNode(self):
        return self.parameterNodeClass(super().getParameterNode())

    def optionsFromParameters(self, parameterNode, method: str) -> dict:
        """Method options from the module's own controls (none by default)."""
        return {}

    def process(self, inputVolume, outputVolume, method, experts=None, device="auto", options=None,
                expertMapVolume=None, progress=None):
        """Run a registry method on inputVolume into outputVolume (None: a new volume); returns the MethodResult."""
        return self.processing.process(inputVolume, outputVolume, self.TASK, method, experts=experts, device=device,
                                       options=options or {}, expertMapNode=expertMapVolume, progress=progress)


class MoEModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Slicer's template widget with the shared panel; subclasses set the class attributes."""

    TITLE = ""  # what dialogs and the status bar call the module
    HANDLED_OPTIONS: tuple[str, ...] = ()  # method options shown by the module's own controls
    logicClass = MoEModuleLogic

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from .module_panel import MoEModulePanel  # needs qt: only inside Slicer

        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        check_slicer_version(self.TITLE)

        self.logic = self.logicClass()
        self.panel = MoEModulePanel(self.ui, self.logic.processing, self.logic.TASK, self.logic.optionsFromParameters,
                                    self.TITLE, handled_options=self.HANDLED_OPTIONS)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.setupTaskControls()
        self.initializeParameterNode()

    def setupTaskControls(self) -> None:
        """Connect the module's own controls (hook)."""

    def updateTaskControls(self, *unused) -> None:
        """Enable or show the module's own controls for the parameter node (hook)."""

    def cleanup(self) -> None:
        self.panel.cancel()
        self.panel.results.restoreLayout()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.panel.results.restoreLayout()  # the compare layout belongs to this module
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.panel.cancel()  # its result would go into a closed scene
        self.panel.results.forgetLayout()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[object]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = inputParameterNode
        self.panel.setParameterNode(inputParameterNode)
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        self.panel.updateFromParameterNode()
        self.updateTaskControls()
