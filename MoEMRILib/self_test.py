"""Both modules' self-tests (ScriptedLoadableModuleTest, "Reload and Test"), run inside a real
Slicer: `MoEModuleTest` runs the module's own check of its task on the sample head, then the
background process, Cancel, the expert overlay and the compare layout.

The methods are the classical ones a stock Slicer can run (no DIPY, scikit-learn or ANTs: see
dependencies.stock_classical_method). Each check takes the running unittest.TestCase (for its
asserts and delayDisplay), works on a small crop of the sample head and leaves its nodes in the
scene for a look afterwards. The plain
Python tests (Testing/Python/test_slicer_*.py) check the same on slicer-core without the
application; these add what only Slicer has: PythonSlicer as the worker's Python, the layout
manager and the views.
"""
from __future__ import annotations

import time

import numpy as np
import vtk

import slicer
from moemri.background.run import default_python
from moemri.methods.base import Expert, LabelMap, MethodResult
from moemri.volume import crop_volume
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from . import compare_views
from .dependencies import stock_classical_method
from .expert_overlay import legend_from_nodes
from .processing_logic import MoEProcessingLogic
from .result_volumes import overlay_choices
from .sample_data import sample_volume_path
from .volume_nodes import update_node_from_volume, volume_from_node

CANCEL_WITHIN_S = 1.5  # the issue asks for a second; a little slack for a loaded test machine
SMALL_CROP = ((50, 60, 60), (150, 160, 124), 2)  # start, stop (i, j, k voxels of the 1 mm head), step
WHOLE_HEAD = ((0, 0, 0), (197, 233, 189), 1)  # long enough to cancel mid-run


class MoEModuleTest(ScriptedLoadableModuleTest):
    """The module's self-test: `test_task_on_sample` (the module's own check of its task), then
    the shared checks with the module's TASK and method options."""

    TASK = ""
    OPTIONS: dict = {}  # method options of every run (super-resolution: the output grid)
    CANCEL_OPTIONS: dict = {}  # for the whole-head run that is cancelled (default: OPTIONS)

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_task_on_sample, self.test_background_and_cancel, self.test_overlay_and_compare):
            self.setUp()
            test()

    def test_task_on_sample(self):
        raise NotImplementedError("the module's self-test checks its task here (see check_task_on_sample)")

    def test_background_and_cancel(self):
        method = stock_classical_method(self.TASK)
        check_background_run(self, self.TASK, sample_crop(*SMALL_CROP, "small crop"), method, self.OPTIONS)
        check_cancel(self, self.TASK, sample_crop(*WHOLE_HEAD, "whole head"), method, self.CANCEL_OPTIONS or self.OPTIONS)
        self.delayDisplay("Test passed")

    def test_overlay_and_compare(self):
        small = sample_crop(*SMALL_CROP, "small crop")
        check_overlay_and_compare(self, self.TASK, small, stock_classical_method(self.TASK), self.OPTIONS)
        self.delayDisplay("Test passed")


def sample_crop(start, stop, step: int, name: str):
    """A crop of the shipped head as a new volume node, its geometry that of the sample."""
    loaded = slicer.util.loadVolume(str(sample_volume_path()))
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    update_node_from_volume(node, crop_volume(volume_from_node(loaded), start, stop, step))
    node.CreateDefaultDisplayNodes()
    slicer.mrmlScene.RemoveNode(loaded)
    return node


def ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def centre_ras(node) -> np.ndarray:
    """Where the centre of the volume's grid is, in RAS mm."""
    centre_ijk = (np.array(node.GetImageData().GetDimensions()) - 1) / 2.0
    return (ijk_to_ras(node) @ np.append(centre_ijk, 1.0))[:3]


def axis_directions(node) -> np.ndarray:
    """The unit vectors of the i, j, k axes in RAS (columns)."""
    m = ijk_to_ras(node)[:3, :3]
    return m / np.linalg.norm(m, axis=0)


def check_task_on_sample(test, logic, start, stop, step: int = 2, **process_kwargs):
    """The module's logic on a crop of the sample with a stock-Slicer method: a finite result
    that names its method, and the input's voxels and geometry untouched. Returns (input, output)
    nodes for the module's own checks."""
    test.delayDisplay("Loading the sample head")
    inputVolume = sample_crop(start, stop, step, "sample crop")
    inputBefore, matrixBefore = slicer.util.arrayFromVolume(inputVolume).copy(), ijk_to_ras(inputVolume)
    method = stock_classical_method(logic.TASK)
    test.delayDisplay(f"{logic.TASK} with {method}")
    outputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{logic.TASK} result")
    logic.process(inputVolume, outputVolume, method, **process_kwargs)
    test.assertTrue(np.isfinite(slicer.util.arrayFromVolume(outputVolume)).all())
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(inputVolume), inputBefore)
    np.testing.assert_array_equal(ijk_to_ras(inputVolume), matrixBefore)
    test.assertEqual(outputVolume.GetAttribute("MoEMRI.method"), method)
    return inputVolume, outputVolume


def check_background_run(test, task: str, inputNode, method: str, options: dict) -> None:
    """The background process (PythonSlicer running moemri.background.worker) gives the in-process result."""
    logic = MoEProcessingLogic()
    test.delayDisplay(f"{method} in a background process ({default_python()})")
    request = logic.prepare(inputNode, None, task, method, options=options)
    expected, _ = logic.run(request)
    events = []
    job = logic.start(request)
    while job.running:
        events += job.poll()
        slicer.app.processEvents()  # what the panel's timer does: the GUI keeps running
        time.sleep(0.05)
    test.assertEqual(job.state, "finished", f"background run failed: {job.error}")
    test.assertTrue(any(e.kind == "progress" for e in events), "no progress came back from the worker")
    np.testing.assert_allclose(job.result.image.array, expected.image.array, rtol=1e-6, atol=1e-6)
    test.assertFalse(job.folder.exists(), "the worker's temporary folder was left behind")
    logic.finish(request, job.result, job.seconds)
    test.assertEqual(request.outputNode.GetAttribute("MoEMRI.method"), method)


def check_cancel(test, task: str, inputNode, method: str, options: dict) -> None:
    """Cancel stops the process within a second and adds nothing to the scene."""
    logic = MoEProcessingLogic()
    nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
    job = logic.start(logic.prepare(inputNode, None, task, method, options=options))
    deadline = time.monotonic() + 5.0
    while job.running and not job.poll() and time.monotonic() < deadline:
        slicer.app.processEvents()
        time.sleep(0.02)  # until the worker reports (or 5 s): cancel a run that really started
    started = time.monotonic()
    job.cancel()
    test.assertLess(time.monotonic() - started, CANCEL_WITHIN_S)
    test.assertIn(job.state, ("cancelled", "finished"))  # a tiny input may finish first
    test.assertIsNotNone(job.returncode, "the worker is still running")
    test.assertFalse(job.folder.exists(), "the worker's temporary folder was left behind")
    test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore, "Cancel left nodes in the scene")


def check_overlay_and_compare(test, task: str, inputNode, method: str, options: dict) -> None:
    """An expert map (made up from intensity terciles: a classical method has none) becomes a
    label map with a named colour table; Compare sets linked side-by-side views."""
    logic = MoEProcessingLogic()
    request = logic.prepare(inputNode, None, task, method, options=options)
    result, seconds = logic.run(request)
    image = result.image.array
    edges = np.quantile(image[image > image.mean()], [1 / 3, 2 / 3])
    labels = np.where(image > image.mean(), 1 + np.searchsorted(edges, image), 0).astype(np.int16)
    experts = [Expert(1, "dark tissue", (40, 90, 220)), Expert(2, "mid tissue", (60, 200, 90)), Expert(3, "bright tissue", (230, 70, 60))]
    differences = [result.image.with_array(np.where(labels == e.label, image - image.mean(), 0).astype(np.float32)) for e in experts]
    halves_array = np.ones_like(labels)
    halves_array[..., image.shape[2] // 2:] = 2
    halves = LabelMap("halves", "left or right", result.image.with_array(halves_array),
                      [Expert(1, "one half", (200, 200, 0)), Expert(2, "other half", (0, 200, 200))])
    staged = MethodResult(result.image, expert_map=result.image.with_array(labels), experts=experts, metadata=result.metadata,
                          expert_differences=differences, label_maps=[halves])
    logic.finish(request, staged, seconds)
    labelNode = request.expertMapNode
    colorNode = labelNode.GetDisplayNode().GetColorNode()
    test.assertEqual([colorNode.GetColorName(i) for i in range(4)], ["background", "dark tissue", "mid tissue", "bright tissue"])
    test.assertEqual([row[1] for row in legend_from_nodes(labelNode)], ["dark tissue", "mid tissue", "bright tissue"])
    # Difference maps and further label maps are offered as overlays beside the expert map.
    test.assertEqual([key for _, key, _, _ in overlay_choices(request.outputNode, labelNode)],
                     ["", "difference:1", "difference:2", "difference:3", "labels:halves"])
    halvesColors = request.labelMapNodes["halves"].GetDisplayNode().GetColorNode()
    test.assertEqual(halvesColors.GetColorName(2), "other half")

    test.delayDisplay("Compare before/after")
    layoutNode = slicer.app.layoutManager().layoutLogic().GetLayoutNode()
    compare_views.set_compare_layout(layoutNode)
    compare_views.show_before_after(slicer.mrmlScene, inputNode, request.outputNode, fade=1.0)
    compare_views.set_label_layer(slicer.mrmlScene, labelNode, 0.5)
    slicer.util.resetSliceViews()
    compare_views.match_slice_views(slicer.mrmlScene)
    test.assertEqual(layoutNode.GetViewArrangement(), compare_views.SIDE_BY_SIDE_LAYOUT)
    composites = compare_views.slice_composite_nodes(slicer.mrmlScene)
    test.assertTrue(all(c.GetLinkedControl() for c in composites.values()))
    red, yellow = (compare_views.slice_nodes(slicer.mrmlScene)[v] for v in ("Red", "Yellow"))
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(red.GetSliceToRAS()), slicer.util.arrayFromVTKMatrix(yellow.GetSliceToRAS()))
    compare_views.set_fade(slicer.mrmlScene, 0.25)
    test.assertAlmostEqual(composites["Yellow"].GetForegroundOpacity(), 0.25)
    test.delayDisplay("Expert map over the result: hover a voxel to see its expert in the Data Probe")
