import os
import sys
from typing import Annotated, Optional

import vtk

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode

try:
    import MoEMRILib  # noqa: F401
except ImportError:
    # Run from the source tree (module path pointing at this folder): the shared package and the
    # core sit one folder up, as they sit beside the modules once installed.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from MoEMRILib.processing_logic import MoEProcessingLogic, noise_option_name
from MoEMRILib.sample_data import register_sample_data

TASK = "denoise"

#
# MoEDenoise
#


class MoEDenoise(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MoE Denoise"
        self.parent.categories = ["Filtering.MoE-MRI"]
        self.parent.dependencies = []
        self.parent.contributors = ["MoE-MRI team"]
        self.parent.helpText = """
Removes noise from a brain MR volume with a mixture of experts: several specialised denoisers and a
gate that picks, voxel by voxel, which expert handles which tissue. The expert map shows the choice.
Classical filters, marked (classical), are offered to compare against.
<br><br>Methods follow:
<ul>
<li>N-SMoE: Neural Steered Mixture of Experts for medical image denoising and super-resolution.</li>
<li>Sparse mixture-of-experts MRI denoising with DnCNN experts.</li>
<li>REMIx: Morell-Ortega, Ruiz-Perez, Coup&eacute;, Manj&oacute;n, MIDL 2024.</li>
<li>MoEDiff-SR: Wang et al. 2025, arXiv:2504.07308 (a super-resolution method: see the MoE Super-Resolution module).</li>
</ul>
See the <a href="https://github.com/moe-mri/SlicerMoEMRI">extension's documentation</a>.
"""
        self.parent.acknowledgementText = """
Developed by the MoE-MRI team on the 3D Slicer scripted-module template by Jean-Christophe
Fillion-Robin (Kitware), Andras Lasso (PerkLab) and Steve Pieper (Isomics). The sample head is the
MNI ICBM 152 2009a nonlinear symmetric T1 template (McConnell Brain Imaging Centre).
"""
        slicer.app.connect("startupCompleted()", lambda: register_sample_data(self._iconPath()))

    def _iconPath(self):
        return os.path.join(os.path.dirname(self.parent.path), "Resources", "Icons", "MoEDenoise.png")


#
# MoEDenoiseParameterNode
#


@parameterNodeWrapper
class MoEDenoiseParameterNode:
    """
    inputVolume - the noisy MR volume (only read).
    outputVolume - receives the denoised volume.
    expertMapVolume - receives which expert handled each voxel (mixture-of-experts methods).
    method, experts, device - the registry method, its expert count (0: the method's default), where it runs.
    noiseMode - "auto": the method estimates the noise; "manual": use noiseLevel.
    noiseLevel - noise standard deviation in percent of the brightest tissue.
    showExpertMap, expertMapOpacity, fade - how the result is shown.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    expertMapVolume: vtkMRMLLabelMapVolumeNode
    method: str = ""
    experts: int = 0
    device: str = "auto"
    noiseMode: Annotated[str, Choice(["auto", "manual"])] = "auto"
    noiseLevel: Annotated[float, WithinRange(0.0, 20.0)] = 5.0
    showExpertMap: bool = True
    expertMapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    fade: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


#
# MoEDenoiseWidget
#


class MoEDenoiseWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._noiseModeToolTip = ""

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from MoEMRILib.module_panel import MoEModulePanel  # needs qt: only inside Slicer

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MoEDenoise.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MoEDenoiseLogic()
        self.panel = MoEModulePanel(self.ui, self.logic, TASK, self.logic.optionsFromParameters, "MoE Denoise")

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.noiseModeComboBox.connect("currentIndexChanged(int)", self.updateNoiseControls)
        self._noiseModeToolTip = self.ui.noiseModeComboBox.toolTip

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
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

    def setParameterNode(self, inputParameterNode: Optional[MoEDenoiseParameterNode]) -> None:
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
        self.updateNoiseControls()

    def updateNoiseControls(self, *unused) -> None:
        """The noise level is editable only in manual mode and for a method that takes one."""
        pn = self._parameterNode
        takesNoise = pn is not None and noise_option_name(pn.method) is not None
        self.ui.noiseModeComboBox.enabled = takesNoise
        self.ui.noiseLevelSliderWidget.enabled = takesNoise and self.ui.noiseModeComboBox.currentText == "manual"
        self.ui.noiseModeComboBox.toolTip = (
            self._noiseModeToolTip if takesNoise else "The chosen method always estimates the noise level itself."
        )

    def onApplyButton(self) -> None:
        self.panel.onApply()


#
# MoEDenoiseLogic
#


class MoEDenoiseLogic(ScriptedLoadableModuleLogic):
    """Denoising through the shared MoEProcessingLogic; usable from the Python console:

    logic = slicer.util.getModuleLogic("MoEDenoise")
    names = [choice.name for choice in MoEMRILib.processing_logic.methods_for_task("denoise")]
    logic.process(inputVolume, outputVolume, names[0])

    `runner` replaces how the method runs (default: in this process), e.g. by a background process.
    """

    def __init__(self, runner=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.processing = MoEProcessingLogic(runner)

    def getParameterNode(self):
        return MoEDenoiseParameterNode(super().getParameterNode())

    def optionsFromParameters(self, parameterNode, method) -> dict:
        """Method options from the panel: the manual noise level, for methods that take one."""
        if parameterNode.noiseMode != "manual":
            return {}
        return self.noiseOptions(parameterNode.inputVolume, method, parameterNode.noiseLevel)

    @staticmethod
    def noiseOptions(inputVolume, method, noiseLevelPercent) -> dict:
        name = noise_option_name(method)
        if name is None or noiseLevelPercent is None:
            return {}
        return {name: float(noiseLevelPercent)}

    def process(self, inputVolume, outputVolume, method, experts=None, device="auto", options=None,
                expertMapVolume=None, progress=None, noiseLevelPercent=None):
        """Denoise inputVolume into outputVolume with a registry method; returns the MethodResult.

        noiseLevelPercent: the noise standard deviation in percent of the brightest tissue, for
        methods that take one (None: the method estimates it).
        """
        options = {**self.noiseOptions(inputVolume, method, noiseLevelPercent), **(options or {})}
        return self.processing.process(
            inputVolume, outputVolume, TASK, method, experts=experts, device=device, options=options,
            expertMapNode=expertMapVolume, progress=progress,
        )


#
# MoEDenoiseTest
#


class MoEDenoiseTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_MoEDenoise_classical_on_sample()

    def test_MoEDenoise_classical_on_sample(self):
        import numpy as np

        from MoEMRILib.processing_logic import methods_for_task
        from MoEMRILib.sample_data import sample_volume_path
        from MoEMRILib.volume_nodes import crop_volume, update_node_from_volume, volume_from_node

        self.delayDisplay("Loading the sample head")
        loaded = slicer.util.loadVolume(str(sample_volume_path()))
        # A 2 mm crop keeps the self-test to seconds; geometry stays that of the sample.
        small = crop_volume(volume_from_node(loaded), (10, 20, 40), (186, 212, 168), step=2)
        inputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "sample crop")
        update_node_from_volume(inputVolume, small)
        inputBefore = slicer.util.arrayFromVolume(inputVolume).copy()
        matrixBefore = self._matrix(inputVolume)

        classical = [c for c in methods_for_task(TASK) if c.info.classical and not c.unavailable]
        self.assertTrue(classical, "no classical denoising method is available")
        method = classical[0].name
        self.delayDisplay(f"Denoising with {method}")
        outputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "denoised")
        result = MoEDenoiseLogic().process(inputVolume, outputVolume, method)

        output = slicer.util.arrayFromVolume(outputVolume)
        self.assertEqual(output.shape, inputBefore.shape)
        self.assertTrue(np.isfinite(output).all())
        np.testing.assert_allclose(self._matrix(outputVolume), self._matrix(inputVolume), atol=1e-9)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(inputVolume), inputBefore)
        np.testing.assert_array_equal(self._matrix(inputVolume), matrixBefore)
        self.assertEqual(outputVolume.GetAttribute("MoEMRI.method"), method)
        # Denoising smooths: the output varies less between neighbours than the input.
        roughIn = np.abs(np.diff(inputBefore.astype(float), axis=2)).mean()
        roughOut = np.abs(np.diff(output.astype(float), axis=2)).mean()
        self.assertLess(roughOut, roughIn)
        self.assertIsNotNone(result.image)
        self.delayDisplay("Test passed")

    @staticmethod
    def _matrix(node):
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        return slicer.util.arrayFromVTKMatrix(matrix)
