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

from moemri.methods.choices import declared_options
from moemri.methods.options import output_spacing_mm
from MoEMRILib.module_widget import MoEModuleLogic, MoEModuleWidget
from MoEMRILib.sample_data import register_sample_data
from MoEMRILib import self_test  # its MoEModuleTest by attribute: unittest would collect an imported TestCase
from moemri.methods.base import SPACING_OPTION  # (x, y, z) mm: the output grid


class MoESuperRes(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MoE Super-Resolution"
        self.parent.categories = ["Filtering.MoE-MRI"]
        self.parent.dependencies = []
        self.parent.contributors = ["MoE-MRI team"]
        self.parent.helpText = """
Raises the resolution of a brain MR volume (thick slices, coarse voxels) with a mixture of experts:
specialised upsamplers and a gate (REMIx: the input's slice spacing) that picks the expert; classical
interpolators, marked so, to compare against. The output covers the input's extent on a grid of the
chosen voxel size or scale factor. Apply runs in a background process (Cancel stops it; the Log shows
its output); the expert map is drawn over the result; Compare shows input and result in linked views
with a fade. Try Sample Data &gt; MoE-MRI. Methods: REMIx (Morell-Ortega et al., MIDL 2024), one 3-D U-Net
per voxel-volume bin; MoEDiff-SR (Wang et al., arXiv:2504.07308), a transformer gate that weighs small
diffusion denoisers per token, slice by slice, with its gate maps (winning expert, each expert's weight
and what it changes) for the overlay; in MoE Denoise, sparse mixture-of-experts denoising with DnCNN experts (Deng and
Campbell, arXiv:2501.14198). Needs Slicer 5.8 or later.
See the <a href="https://github.com/moe-mri/SlicerMoEMRI">documentation</a>.
"""
        self.parent.acknowledgementText = """
By the MoE-MRI team on the Slicer scripted-module template (J-C. Fillion-Robin, Kitware; A. Lasso,
PerkLab; S. Pieper, Isomics), with the methods of the sparse MoE DnCNN (Deng and Campbell, arXiv:2501.14198) and
REMIx (Morell-Ortega et al., MIDL 2024) and MoEDiff-SR (Wang et al., arXiv:2504.07308) papers. Sample head: MNI ICBM 152 2009a nonlinear symmetric T1 (McConnell Brain Imaging Centre).
"""
        icon = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "Icons", "MoESuperRes.png")
        slicer.app.connect("startupCompleted()", lambda: register_sample_data(icon))


@parameterNodeWrapper
class MoESuperResParameterNode:
    """The shared fields (see MoEMRILib.module_widget), then the output grid: "spacing" gives
    spacingX/Y/Z (mm along the image's i, j, k axes), "scale" the input's spacing / scaleFactor."""

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
    resolutionMode: Annotated[str, Choice(["spacing", "scale"])] = "spacing"
    scaleFactor: Annotated[float, WithinRange(1.0, 8.0)] = 2.0
    spacingX: Annotated[float, WithinRange(0.1, 10.0)] = 1.0
    spacingY: Annotated[float, WithinRange(0.1, 10.0)] = 1.0
    spacingZ: Annotated[float, WithinRange(0.1, 10.0)] = 1.0


class MoESuperResLogic(MoEModuleLogic):
    TASK = "superres"
    parameterNodeClass = MoESuperResParameterNode

    def optionsFromParameters(self, parameterNode, method) -> dict:
        if SPACING_OPTION not in declared_options(method) or parameterNode.inputVolume is None:
            return {}
        pn = parameterNode
        return {SPACING_OPTION: output_spacing_mm(pn.inputVolume.GetSpacing(), pn.resolutionMode, pn.scaleFactor,
                                                  (pn.spacingX, pn.spacingY, pn.spacingZ))}

    def process(self, inputVolume, outputVolume, method, experts=None, device="auto", options=None,
                expertMapVolume=None, progress=None, spacing=None):
        """spacing: the output voxel size (x, y, z mm; default the method's), over the input's extent."""
        options = {**(options or {}), **({SPACING_OPTION: tuple(float(s) for s in spacing)} if spacing is not None else {})}
        return super().process(inputVolume, outputVolume, method, experts, device, options, expertMapVolume, progress)


class MoESuperResWidget(MoEModuleWidget):
    TITLE = "MoE Super-Resolution"
    HANDLED_OPTIONS = (SPACING_OPTION,)  # shown by the resolution controls
    logicClass = MoESuperResLogic

    def setupTaskControls(self) -> None:
        self.ui.resolutionModeComboBox.connect("currentIndexChanged(int)", self.updateTaskControls)

    def updateTaskControls(self, *unused) -> None:
        """Spacing boxes in spacing mode, the factor in scale mode."""
        byScale = self.ui.resolutionModeComboBox.currentText == "scale"
        self.ui.scaleFactorSpinBox.enabled = byScale
        for axis in "XYZ":
            getattr(self.ui, f"spacing{axis}SpinBox").enabled = not byScale


class MoESuperResTest(self_test.MoEModuleTest):
    TASK = "superres"
    OPTIONS = {SPACING_OPTION: (1.5, 1.5, 1.5)}
    CANCEL_OPTIONS = {SPACING_OPTION: (0.7, 0.7, 0.7)}  # the whole head on a 0.7 mm grid: long enough to cancel

    def test_task_on_sample(self):
        spacing = self.OPTIONS[SPACING_OPTION]
        inputVolume, outputVolume = self_test.check_task_on_sample(self, MoESuperResLogic(), (50, 60, 60), (150, 160, 140), spacing=spacing)
        np.testing.assert_allclose(outputVolume.GetSpacing(), spacing)
        extent = np.array(inputVolume.GetImageData().GetDimensions()) * np.array(inputVolume.GetSpacing())
        np.testing.assert_array_equal(outputVolume.GetImageData().GetDimensions(), np.round(extent / np.array(spacing)))
        # Same physical centre and axes: nothing shifted or flipped.
        np.testing.assert_allclose(self_test.centre_ras(outputVolume), self_test.centre_ras(inputVolume), atol=1e-6)
        np.testing.assert_allclose(self_test.axis_directions(outputVolume), self_test.axis_directions(inputVolume), atol=1e-12)
        self.delayDisplay("Test passed")
