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
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode

try:
    import MoEMRILib  # noqa: F401
except ImportError:
    # Run from the source tree (module path pointing at this folder): the shared package and the
    # core sit one folder up, as they sit beside the modules once installed.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from MoEMRILib.processing_logic import MoEProcessingLogic
from MoEMRILib.sample_data import register_sample_data

TASK = "superres"
SPACING_OPTION = "spacing"  # (x, y, z) mm, declared by every super-resolution method

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
specialised upsamplers and a gate that picks, voxel by voxel, which expert reconstructs which
structure; the expert map shows the choice. The output covers the same physical extent as the input
on a grid of the chosen spacing. Classical interpolators, marked (classical), are offered to compare
against.
<br><br>Methods follow:
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
Fillion-Robin (Kitware), Andras Lasso (PerkLab) and Steve Pieper (Isomics). The sample head is the
MNI ICBM 152 2009a nonlinear symmetric T1 template (McConnell Brain Imaging Centre).
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
    outputVolume - receives the volume on the finer grid.
    expertMapVolume - receives which expert handled each output voxel (mixture-of-experts methods).
    method, experts, device - the registry method, its expert count (0: the method's default), where it runs.
    spacingX, spacingY, spacingZ - output voxel size in mm along the image's i, j, k axes.
    showExpertMap, expertMapOpacity, fade - how the result is shown.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    expertMapVolume: vtkMRMLLabelMapVolumeNode
    method: str = ""
    experts: int = 0
    device: str = "auto"
    spacingX: Annotated[float, WithinRange(0.1, 10.0)] = 1.0
    spacingY: Annotated[float, WithinRange(0.1, 10.0)] = 1.0
    spacingZ: Annotated[float, WithinRange(0.1, 10.0)] = 1.0
    showExpertMap: bool = True
    expertMapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
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
        self.panel = MoEModulePanel(self.ui, self.logic, TASK, self.logic.optionsFromParameters, "MoE Super-Resolution")

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)

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

    def onApplyButton(self) -> None:
        self.panel.onApply()


#
# MoESuperResLogic
#


class MoESuperResLogic(ScriptedLoadableModuleLogic):
    """Super-resolution through the shared MoEProcessingLogic; usable from the Python console:

    logic = slicer.util.getModuleLogic("MoESuperRes")
    names = [choice.name for choice in MoEMRILib.processing_logic.methods_for_task("superres")]
    logic.process(inputVolume, outputVolume, names[0], spacing=(1.0, 1.0, 1.0))

    `runner` replaces how the method runs (default: in this process), e.g. by a background process.
    """

    def __init__(self, runner=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.processing = MoEProcessingLogic(runner)

    def getParameterNode(self):
        return MoESuperResParameterNode(super().getParameterNode())

    @staticmethod
    def optionsFromParameters(parameterNode, method) -> dict:
        """Method options from the panel: the output spacing (every super-resolution method takes one)."""
        return {SPACING_OPTION: (parameterNode.spacingX, parameterNode.spacingY, parameterNode.spacingZ)}

    def process(self, inputVolume, outputVolume, method, experts=None, device="auto", options=None,
                expertMapVolume=None, progress=None, spacing=None):
        """Super-resolve inputVolume onto a grid of `spacing` (x, y, z mm, default the method's)
        over the same physical extent; returns the MethodResult."""
        options = dict(options or {})
        if spacing is not None:
            options[SPACING_OPTION] = tuple(float(s) for s in spacing)
        return self.processing.process(
            inputVolume, outputVolume, TASK, method, experts=experts, device=device, options=options,
            expertMapNode=expertMapVolume, progress=progress,
        )


#
# MoESuperResTest
#


class MoESuperResTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_MoESuperRes_classical_on_sample()

    def test_MoESuperRes_classical_on_sample(self):
        import numpy as np

        from MoEMRILib.processing_logic import methods_for_task
        from MoEMRILib.sample_data import sample_volume_path
        from MoEMRILib.volume_nodes import crop_volume, update_node_from_volume, volume_from_node

        self.delayDisplay("Loading the sample head")
        loaded = slicer.util.loadVolume(str(sample_volume_path()))
        # A 2 mm crop, brought back to 1.5 mm: small enough for a quick self-test.
        small = crop_volume(volume_from_node(loaded), (50, 60, 60), (150, 160, 140), step=2)
        inputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "sample crop 2 mm")
        update_node_from_volume(inputVolume, small)
        inputBefore = slicer.util.arrayFromVolume(inputVolume).copy()
        matrixBefore = self._matrix(inputVolume)

        classical = [c for c in methods_for_task(TASK) if c.info.classical and not c.unavailable]
        self.assertTrue(classical, "no classical super-resolution method is available")
        method = classical[0].name
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
        np.testing.assert_allclose(self._centre(outputVolume), self._centre(inputVolume), atol=1e-6)
        np.testing.assert_allclose(self._directions(outputVolume), self._directions(inputVolume), atol=1e-12)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(inputVolume), inputBefore)
        np.testing.assert_array_equal(self._matrix(inputVolume), matrixBefore)
        self.assertTrue(np.isfinite(slicer.util.arrayFromVolume(outputVolume)).all())
        self.assertEqual(outputVolume.GetAttribute("MoEMRI.method"), method)
        self.delayDisplay("Test passed")

    @classmethod
    def _centre(cls, node):
        import numpy as np

        centreIJK = (np.array(node.GetImageData().GetDimensions()) - 1) / 2.0
        return (cls._matrix(node) @ np.append(centreIJK, 1.0))[:3]

    @classmethod
    def _directions(cls, node):
        import numpy as np

        m = cls._matrix(node)[:3, :3]
        return m / np.linalg.norm(m, axis=0)

    @staticmethod
    def _matrix(node):
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        return slicer.util.arrayFromVTKMatrix(matrix)
