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

from moemri.methods.base import NOISE_LEVEL_OPTION
from moemri.methods.choices import noise_option_name
from MoEMRILib.processing_logic import MoEProcessingLogic
from MoEMRILib.sample_data import register_sample_data

TASK = "denoise"
HANDLED_OPTIONS = (NOISE_LEVEL_OPTION,)  # shown by this module's own noise controls

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
gate that picks, voxel by voxel, which expert handles which tissue. Classical filters, marked
(classical), are offered to compare against.
<ul>
<li>Pick the input (a scalar MR volume), a method (hover it for its paper), the number of experts
and the device. The noise level is estimated from the image unless you set it.</li>
<li>Apply runs in a background process: Slicer stays usable, the bar shows the stage, and Cancel
stops the run and leaves the scene as it was. Out of GPU memory, the method retries with smaller
tiles, then on the CPU; the result panel says so.</li>
<li>The expert map is shown over the result, coloured by expert; the Data Probe names the expert
under the mouse. Compare shows input and result side by side in linked views, with a fade.</li>
<li>Try it on Sample Data &gt; MoE-MRI &gt; MNI152 2009a T1 head.</li>
</ul>
Methods follow:
<ul>
<li>N-SMoE: Neural Steered Mixture of Experts for medical image denoising and super-resolution.</li>
<li>Sparse mixture-of-experts MRI denoising with DnCNN experts.</li>
<li>REMIx: Morell-Ortega, Ruiz-Perez, Coup&eacute;, Manj&oacute;n, MIDL 2024 (a super-resolution method: see the MoE Super-Resolution module).</li>
<li>MoEDiff-SR: Wang et al. 2025, arXiv:2504.07308 (a super-resolution method: see the MoE Super-Resolution module).</li>
</ul>
See the <a href="https://github.com/moe-mri/SlicerMoEMRI">extension's documentation</a>.
"""
        self.parent.acknowledgementText = """
Developed by the MoE-MRI team on the 3D Slicer scripted-module template by Jean-Christophe
Fillion-Robin (Kitware), Andras Lasso (PerkLab) and Steve Pieper (Isomics). It implements the methods
of the N-SMoE, sparse mixture-of-experts DnCNN, REMIx (Morell-Ortega et al., MIDL 2024) and MoEDiff-SR
(Wang et al. 2025, arXiv:2504.07308) papers. The sample head is the MNI ICBM 152 2009a nonlinear
symmetric T1 template (McConnell Brain Imaging Centre).
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
    outputVolume - receives the denoised volume (none: a new one is made).
    expertMapVolume - receives which expert handled each voxel (mixture-of-experts methods).
    method, experts, device - the registry method, its expert count (0: the method's default), where it runs.
    noiseMode - "auto": the method estimates the noise; "manual": use noiseLevel.
    noiseLevel - noise standard deviation in percent of the brightest tissue.
    methodOptions - the chosen methods' other options, JSON by method (see MoEMRILib.method_options).
    showExpertMap, expertMapOpacity, overlay, fade - how the result is shown ("" overlay: the expert map).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    expertMapVolume: vtkMRMLLabelMapVolumeNode
    method: str = ""
    experts: int = 0
    device: str = "auto"
    noiseMode: Annotated[str, Choice(["auto", "manual"])] = "auto"
    noiseLevel: Annotated[float, WithinRange(0.0, 20.0)] = 5.0
    methodOptions: str = ""
    showExpertMap: bool = True
    expertMapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    overlay: str = ""
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

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from MoEMRILib.module_panel import MoEModulePanel  # needs qt: only inside Slicer

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MoEDenoise.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MoEDenoiseLogic()
        self.panel = MoEModulePanel(self.ui, self.logic.processing, TASK, self.logic.optionsFromParameters,
                                    "MoE Denoise", handled_options=HANDLED_OPTIONS)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.noiseModeComboBox.connect("currentIndexChanged(int)", self.updateNoiseControls)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.panel.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.panel.cancel()  # its result would go into a closed scene
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


#
# MoEDenoiseLogic
#


class MoEDenoiseLogic(ScriptedLoadableModuleLogic):
    """Denoising through the shared MoEProcessingLogic; usable from the Python console:

    logic = slicer.util.getModuleLogic("MoEDenoise")
    names = [choice.name for choice in MoEMRILib.method_choices.methods_for_task("denoise")]
    logic.process(inputVolume, outputVolume, names[0])

    `runner` replaces how the method runs (default: in this process); e.g.
    `MoEDenoiseLogic(MoEMRILib.process_runner.BackgroundProcessRunner())` runs it in a child process.
    """

    def __init__(self, runner=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.processing = MoEProcessingLogic(runner)

    def getParameterNode(self):
        return MoEDenoiseParameterNode(super().getParameterNode())

    def optionsFromParameters(self, parameterNode, method) -> dict:
        """Method options from the module's own controls: the manual noise level, for methods that take one."""
        if parameterNode.noiseMode != "manual":
            return {}
        return self.noiseOptions(method, parameterNode.noiseLevel)

    @staticmethod
    def noiseOptions(method, noiseLevelPercent) -> dict:
        name = noise_option_name(method)
        if name is None or noiseLevelPercent is None:
            return {}
        return {name: float(noiseLevelPercent)}

    def process(self, inputVolume, outputVolume, method, experts=None, device="auto", options=None,
                expertMapVolume=None, progress=None, noiseLevelPercent=None):
        """Denoise inputVolume into outputVolume (None: a new volume) with a registry method;
        returns the MethodResult. noiseLevelPercent: the noise standard deviation in percent of
        the brightest tissue, for methods that take one (None: the method estimates it).
        """
        options = {**self.noiseOptions(method, noiseLevelPercent), **(options or {})}
        return self.processing.process(inputVolume, outputVolume, TASK, method, experts=experts, device=device,
                                       options=options, expertMapNode=expertMapVolume, progress=progress)


#
# MoEDenoiseTest
#


class MoEDenoiseTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_MoEDenoise_classical_on_sample, self.test_MoEDenoise_background_and_cancel,
                     self.test_MoEDenoise_overlay_and_compare):
            self.setUp()
            test()

    def test_MoEDenoise_classical_on_sample(self):
        import numpy as np

        from MoEMRILib.self_test import fast_classical_method, ijk_to_ras, sample_crop

        self.delayDisplay("Loading the sample head")
        # A 2 mm crop keeps the self-test to seconds; geometry stays that of the sample.
        inputVolume = sample_crop((10, 20, 40), (186, 212, 168), 2, "sample crop")
        inputBefore = slicer.util.arrayFromVolume(inputVolume).copy()
        matrixBefore = ijk_to_ras(inputVolume)
        method = fast_classical_method(TASK)
        self.delayDisplay(f"Denoising with {method}")
        outputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "denoised")
        MoEDenoiseLogic().process(inputVolume, outputVolume, method)

        output = slicer.util.arrayFromVolume(outputVolume)
        self.assertEqual(output.shape, inputBefore.shape)
        self.assertTrue(np.isfinite(output).all())
        np.testing.assert_allclose(ijk_to_ras(outputVolume), ijk_to_ras(inputVolume), atol=1e-9)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(inputVolume), inputBefore)
        np.testing.assert_array_equal(ijk_to_ras(inputVolume), matrixBefore)
        self.assertEqual(outputVolume.GetAttribute("MoEMRI.method"), method)
        # Denoising smooths: the output varies less between neighbours than the input.
        roughIn = np.abs(np.diff(inputBefore.astype(float), axis=2)).mean()
        roughOut = np.abs(np.diff(output.astype(float), axis=2)).mean()
        self.assertLess(roughOut, roughIn)
        self.delayDisplay("Test passed")

    def test_MoEDenoise_background_and_cancel(self):
        from MoEMRILib.self_test import check_background_run, check_cancel, fast_classical_method, sample_crop

        method = fast_classical_method(TASK)
        small = sample_crop((50, 60, 60), (150, 160, 124), 2, "small crop")
        check_background_run(self, TASK, small, method, {})
        head = sample_crop((0, 0, 0), (197, 233, 189), 1, "whole head")  # long enough to cancel mid-run
        check_cancel(self, TASK, head, method, {})
        self.delayDisplay("Test passed")

    def test_MoEDenoise_overlay_and_compare(self):
        from MoEMRILib.self_test import check_overlay_and_compare, fast_classical_method, sample_crop

        small = sample_crop((50, 60, 60), (150, 160, 124), 2, "small crop")
        check_overlay_and_compare(self, TASK, small, fast_classical_method(TASK), {})
        self.delayDisplay("Test passed")
