import os
import sys
from typing import Annotated

import numpy as np

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

try:
    import MoEMRILib  # noqa: F401
except ImportError:  # run from the source tree: the shared package and the core sit one folder up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from moemri.methods.base import NOISE_LEVEL_OPTION
from moemri.methods.choices import noise_option_name
from MoEMRILib.module_widget import MoEModuleLogic, MoEModuleWidget
from MoEMRILib.sample_data import register_sample_data
from MoEMRILib import self_test  # its MoEModuleTest by attribute: unittest would collect an imported TestCase


class MoEDenoise(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MoE Denoise"
        self.parent.categories = ["Filtering.MoE-MRI"]
        self.parent.dependencies = []
        self.parent.contributors = ["MoE-MRI team"]
        self.parent.helpText = """
Removes noise from a brain MR volume with a mixture of experts: specialised denoisers and a gate that
picks which expert handles which tissue (classical filters, marked so, to compare against). The noise
level is estimated unless you set it. Apply runs in a background process (Cancel stops it; the Log
shows its output); the expert map is drawn over the result, named in the Data Probe; Compare shows
input and result in linked views with a fade. Try Sample Data &gt; MoE-MRI. Methods: sparse
mixture-of-experts denoising with DnCNN experts (Deng and Campbell, arXiv:2501.14198; DnCNN: Zhang et
al., IEEE TIP 2017); in MoE Super-Resolution, REMIx (Morell-Ortega et al., MIDL 2024). Needs Slicer 5.8 or later.
See the <a href="https://github.com/moe-mri/SlicerMoEMRI">documentation</a>.
"""
        self.parent.acknowledgementText = """
By the MoE-MRI team on the Slicer scripted-module template (J-C. Fillion-Robin, Kitware; A. Lasso,
PerkLab; S. Pieper, Isomics), with the methods of the sparse MoE DnCNN (Deng and Campbell, arXiv:2501.14198) and
REMIx (Morell-Ortega et al., MIDL 2024) papers. Sample head: MNI ICBM 152 2009a nonlinear symmetric T1 (McConnell Brain Imaging Centre).
"""
        icon = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "Icons", "MoEDenoise.png")
        slicer.app.connect("startupCompleted()", lambda: register_sample_data(icon))


@parameterNodeWrapper
class MoEDenoiseParameterNode:
    """The shared fields (see MoEMRILib.module_widget), then the noise: "auto" lets the method
    estimate it, "manual" gives noiseLevel (the noise SD in % of the brightest tissue)."""

    inputVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    expertMapVolume: vtkMRMLLabelMapVolumeNode
    method: str = ""
    experts: int = 0
    device: str = "auto"
    methodOptions: str = ""  # the methods' other options, JSON by method (moemri.methods.options)
    showExpertMap: bool = True
    expertMapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    overlay: str = ""  # "": the expert map, else the label of the expert whose probability is shown
    fade: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    noiseMode: Annotated[str, Choice(["auto", "manual"])] = "auto"
    noiseLevel: Annotated[float, WithinRange(0.0, 20.0)] = 5.0


class MoEDenoiseLogic(MoEModuleLogic):
    TASK = "denoise"
    parameterNodeClass = MoEDenoiseParameterNode

    def optionsFromParameters(self, parameterNode, method) -> dict:
        return self.noiseOptions(method, parameterNode.noiseLevel if parameterNode.noiseMode == "manual" else None)

    @staticmethod
    def noiseOptions(method, noiseLevelPercent) -> dict:
        name = noise_option_name(method)
        return {} if name is None or noiseLevelPercent is None else {name: float(noiseLevelPercent)}

    def process(self, inputVolume, outputVolume, method, experts=None, device="auto", options=None,
                expertMapVolume=None, progress=None, noiseLevelPercent=None):
        """noiseLevelPercent: the noise SD in % of the brightest tissue (None: the method estimates it)."""
        options = {**self.noiseOptions(method, noiseLevelPercent), **(options or {})}
        return super().process(inputVolume, outputVolume, method, experts, device, options, expertMapVolume, progress)


class MoEDenoiseWidget(MoEModuleWidget):
    TITLE = "MoE Denoise"
    HANDLED_OPTIONS = (NOISE_LEVEL_OPTION,)  # shown by the noise controls
    logicClass = MoEDenoiseLogic

    def setupTaskControls(self) -> None:
        self.ui.noiseModeComboBox.connect("currentIndexChanged(int)", self.updateTaskControls)

    def updateTaskControls(self, *unused) -> None:
        """The noise level is editable only in manual mode and for a method that takes one."""
        takesNoise = self._parameterNode is not None and noise_option_name(self._parameterNode.method) is not None
        self.ui.noiseModeComboBox.enabled = takesNoise
        self.ui.noiseLevelSliderWidget.enabled = takesNoise and self.ui.noiseModeComboBox.currentText == "manual"


class MoEDenoiseTest(self_test.MoEModuleTest):
    TASK = "denoise"

    def test_task_on_sample(self):
        inputVolume, outputVolume = self_test.check_task_on_sample(self, MoEDenoiseLogic(), (10, 20, 40), (186, 212, 168))
        before, after = (slicer.util.arrayFromVolume(node).astype(float) for node in (inputVolume, outputVolume))
        self.assertEqual(after.shape, before.shape)
        np.testing.assert_allclose(self_test.ijk_to_ras(outputVolume), self_test.ijk_to_ras(inputVolume), atol=1e-9)
        # Denoising smooths: neighbouring voxels differ less in the output than in the input.
        self.assertLess(np.abs(np.diff(after, axis=2)).mean(), np.abs(np.diff(before, axis=2)).mean())
        self.delayDisplay("Test passed")
