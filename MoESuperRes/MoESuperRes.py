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

from moemri.methods.choices import declared_options
from moemri.methods.options import output_spacing_mm
from MoEMRILib.processing_logic import MoEProcessingLogic
from MoEMRILib.sample_data import register_sample_data

TASK = "superres"
SPACING_OPTION = "spacing"  # (x, y, z) mm: the output grid, declared by the super-resolution methods
HANDLED_OPTIONS = (SPACING_OPTION,)  # shown by this module's own resolution controls

#
# MoESuperRes
#


class MoESuperRes(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MoE Super-Resolution"
        self.parent.categories = ["Filtering.MoE-MRI"]
        self.parent.dependencies = []
        self.parent.contributors = ["MoE-MRI team"]
        self.parent.helpText = """
Raises the resolution of a brain MR volume (thick slices or coarse voxels) with a mixture of experts:
specialised upsamplers and a gate (or, for REMIx, the input's slice spacing) that picks which expert
reconstructs what. The output covers the same physical extent as the input on a grid of the chosen
spacing. Classical interpolators, marked (classical), are offered to compare against.
<ul>
<li>Pick the input (a scalar MR volume), a method (hover it for its paper), the number of experts,
the device and the output grid: a voxel size in mm, or a scale factor. REMIx shows which expert the
input's slice spacing selects before you press Apply; MoEDiff-SR shows its diffusion steps and seed.</li>
<li>Apply runs in a background process: Slicer stays usable, the bar shows the stage, and Cancel
stops the run and leaves the scene as it was. Out of GPU memory, the method retries with smaller
tiles, then on the CPU; the result panel says so.</li>
<li>The expert map is shown over the result, coloured by expert; the Data Probe names the expert
under the mouse. Compare shows input and result side by side in linked views, with a fade.</li>
<li>Try it on Sample Data &gt; MoE-MRI &gt; MNI152 2009a T1 head.</li>
</ul>
Methods follow:
<ul>
<li>MoEDiff-SR: Wang et al. 2025, arXiv:2504.07308 (mixture-of-experts guided diffusion super-resolution).</li>
<li>N-SMoE: Neural Steered Mixture of Experts for medical image denoising and super-resolution.</li>
<li>REMIx: Morell-Ortega, Ruiz-Perez, Coup&eacute;, Manj&oacute;n, MIDL 2024.</li>
<li>Sparse mixture-of-experts MRI denoising with DnCNN experts (a denoising method: see the MoE Denoise module).</li>
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
        return os.path.join(os.path.dirname(self.parent.path), "Resources", "Icons", "MoESuperRes.png")


#
# MoESuperResParameterNode
#


@parameterNodeWrapper
class MoESuperResParameterNode:
    """
    inputVolume - the low-resolution MR volume (only read).
    outputVolume - receives the volume on the finer grid (none: a new one is made).
    expertMapVolume - receives which expert handled each output voxel (mixture-of-experts methods).
    method, experts, device - the registry method, its expert count (0: the method's default), where it runs.
    resolutionMode - "spacing": the output voxel size is spacingX/Y/Z; "scale": the input's divided by scaleFactor.
    spacingX, spacingY, spacingZ - output voxel size in mm along the image's i, j, k axes.
    methodOptions - the chosen methods' other options, JSON by method (see MoEMRILib.method_options).
    showExpertMap, expertMapOpacity, overlay, fade - how the result is shown ("" overlay: the expert map).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    expertMapVolume: vtkMRMLLabelMapVolumeNode
    method: str = ""
    experts: int = 0
    device: str = "auto"
    resolutionMode: Annotated[str, Choice(["spacing", "scale"])] = "spacing"
    scaleFactor: Annotated[float, WithinRange(1.0, 8.0)] = 2.0
    spacingX: Annotated[float, WithinRange(0.1, 10.0)] = 1.0
    spacingY: Annotated[float, WithinRange(0.1, 10.0)] = 1.0
    spacingZ: Annotated[float, WithinRange(0.1, 10.0)] = 1.0
    methodOptions: str = ""
    showExpertMap: bool = True
    expertMapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    overlay: str = ""
    fade: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


#
# MoESuperResWidget
#


class MoESuperResWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
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

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MoESuperRes.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MoESuperResLogic()
        self.panel = MoEModulePanel(self.ui, self.logic.processing, TASK, self.logic.optionsFromParameters,
                                    "MoE Super-Resolution", handled_options=HANDLED_OPTIONS)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.resolutionModeComboBox.connect("currentIndexChanged(int)", self.updateResolutionControls)
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

    def setParameterNode(self, inputParameterNode: Optional[MoESuperResParameterNode]) -> None:
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
        self.updateResolutionControls()

    def updateResolutionControls(self, *unused) -> None:
        """Spacing boxes in spacing mode, the factor in scale mode."""
        byScale = self.ui.resolutionModeComboBox.currentText == "scale"
        self.ui.scaleFactorSpinBox.enabled = byScale
        for axis in "XYZ":
            getattr(self.ui, f"spacing{axis}SpinBox").enabled = not byScale


#
# MoESuperResLogic
#


class MoESuperResLogic(ScriptedLoadableModuleLogic):
    """Super-resolution through the shared MoEProcessingLogic; usable from the Python console:

    logic = slicer.util.getModuleLogic("MoESuperRes")
    names = [choice.name for choice in MoEMRILib.method_choices.methods_for_task("superres")]
    logic.process(inputVolume, outputVolume, names[0], spacing=(1.0, 1.0, 1.0))

    `runner` replaces how the method runs (default: in this process); e.g.
    `MoESuperResLogic(MoEMRILib.process_runner.BackgroundProcessRunner())` runs it in a child process.
    """

    def __init__(self, runner=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.processing = MoEProcessingLogic(runner)

    def getParameterNode(self):
        return MoESuperResParameterNode(super().getParameterNode())

    @staticmethod
    def optionsFromParameters(parameterNode, method) -> dict:
        """Method options from the module's own controls: the output grid, for methods that take one."""
        if SPACING_OPTION not in declared_options(method) or parameterNode.inputVolume is None:
            return {}
        spacing = output_spacing_mm(parameterNode.inputVolume.GetSpacing(), parameterNode.resolutionMode, parameterNode.scaleFactor,
                                    (parameterNode.spacingX, parameterNode.spacingY, parameterNode.spacingZ))
        return {SPACING_OPTION: spacing}

    def process(self, inputVolume, outputVolume, method, experts=None, device="auto", options=None,
                expertMapVolume=None, progress=None, spacing=None):
        """Super-resolve inputVolume onto a grid of `spacing` (x, y, z mm, default the method's)
        over the same physical extent, into outputVolume (None: a new volume); returns the MethodResult."""
        options = dict(options or {})
        if spacing is not None:
            options[SPACING_OPTION] = tuple(float(s) for s in spacing)
        return self.processing.process(inputVolume, outputVolume, TASK, method, experts=experts, device=device,
                                       options=options, expertMapNode=expertMapVolume, progress=progress)


#
# MoESuperResTest
#


class MoESuperResTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_MoESuperRes_classical_on_sample, self.test_MoESuperRes_background_and_cancel,
                     self.test_MoESuperRes_overlay_and_compare):
            self.setUp()
            test()

    def test_MoESuperRes_classical_on_sample(self):
        import numpy as np

        from MoEMRILib.self_test import axis_directions, centre_ras, fast_classical_method, ijk_to_ras, sample_crop

        self.delayDisplay("Loading the sample head")
        # A 2 mm crop, brought back to 1.5 mm: small enough for a quick self-test.
        inputVolume = sample_crop((50, 60, 60), (150, 160, 140), 2, "sample crop 2 mm")
        inputBefore = slicer.util.arrayFromVolume(inputVolume).copy()
        matrixBefore = ijk_to_ras(inputVolume)
        method = fast_classical_method(TASK)
        spacing = (1.5, 1.5, 1.5)
        self.delayDisplay(f"Super-resolving with {method} to {spacing} mm")
        outputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "super-resolved")
        MoESuperResLogic().process(inputVolume, outputVolume, method, spacing=spacing)

        np.testing.assert_allclose(outputVolume.GetSpacing(), spacing)
        inDims = np.array(inputVolume.GetImageData().GetDimensions())
        outDims = np.array(outputVolume.GetImageData().GetDimensions())
        extent = inDims * np.array(inputVolume.GetSpacing())
        np.testing.assert_array_equal(outDims, np.round(extent / np.array(spacing)))
        # Same physical centre and axes: nothing shifted or flipped.
        np.testing.assert_allclose(centre_ras(outputVolume), centre_ras(inputVolume), atol=1e-6)
        np.testing.assert_allclose(axis_directions(outputVolume), axis_directions(inputVolume), atol=1e-12)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(inputVolume), inputBefore)
        np.testing.assert_array_equal(ijk_to_ras(inputVolume), matrixBefore)
        self.assertTrue(np.isfinite(slicer.util.arrayFromVolume(outputVolume)).all())
        self.assertEqual(outputVolume.GetAttribute("MoEMRI.method"), method)
        self.delayDisplay("Test passed")

    def test_MoESuperRes_background_and_cancel(self):
        from MoEMRILib.self_test import check_background_run, check_cancel, fast_classical_method, sample_crop

        method = fast_classical_method(TASK)
        small = sample_crop((50, 60, 60), (150, 160, 124), 2, "small crop")
        check_background_run(self, TASK, small, method, {SPACING_OPTION: (1.5, 1.5, 1.5)})
        head = sample_crop((0, 0, 0), (197, 233, 189), 1, "whole head")  # 0.7 mm output: long enough to cancel
        check_cancel(self, TASK, head, method, {SPACING_OPTION: (0.7, 0.7, 0.7)})
        self.delayDisplay("Test passed")

    def test_MoESuperRes_overlay_and_compare(self):
        from MoEMRILib.self_test import check_overlay_and_compare, fast_classical_method, sample_crop

        small = sample_crop((50, 60, 60), (150, 160, 124), 2, "small crop")
        check_overlay_and_compare(self, TASK, small, fast_classical_method(TASK), {SPACING_OPTION: (1.5, 1.5, 1.5)})
        self.delayDisplay("Test passed")
