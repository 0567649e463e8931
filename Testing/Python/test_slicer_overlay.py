"""The expert overlays in MRML: per-expert probability volumes from a 4-D gate, their colour
ramps, the legend read back from the scene, and which layers the views show."""
from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from MoEMRILib import compare_views  # noqa: E402
from MoEMRILib.expert_overlay import expert_legend, legend_from_nodes  # noqa: E402
from MoEMRILib.expert_probabilities import (  # noqa: E402
    PROBABILITY_REFERENCE,
    probability_nodes,
    show_expert_probabilities,
)
from MoEMRILib.processing_logic import MoEProcessingLogic, expert_map_node_of  # noqa: E402
from MoEMRILib.result_volumes import DIFFERENCE_REFERENCE, LABEL_MAP_REFERENCE, overlay_choices, result_volume_nodes  # noqa: E402
from moemri.errors import InputError  # noqa: E402
from moemri.methods.base import Expert, MethodResult  # noqa: E402
from moemri.methods.expert_probabilities import probability_volumes  # noqa: E402
from moemri.volume import Volume  # noqa: E402
from test_slicer_fakes import EXPERT_COLORS, StackedVolume  # noqa: E402
from test_slicer_fixtures import fake_methods, head_crop, matrix, sample_loaded, sample_node, scene, small_crop  # noqa: E402,F401
from test_slicer_logic import slice_views  # noqa: E402


@pytest.fixture
def fake_run(scene, small_crop, fake_methods):
    """The fake mixture of experts run through the logic: (request, result)."""
    logic = MoEProcessingLogic()
    request = logic.prepare(small_crop, None, "denoise", "test-fake-moe-denoise", experts=3)
    result, seconds = logic.run(request)
    logic.finish(request, result, seconds)
    return request, result


def test_probability_volumes_from_a_4d_stack_or_a_list():
    grid = Volume(np.zeros((4, 5, 6), np.float32), spacing=(1, 2, 3), origin=(5, 6, 7))
    stack = np.random.default_rng(0).random((2, 4, 5, 6)).astype(np.float32)
    experts = [Expert(1, "a", (1, 2, 3)), Expert(2, "b", (4, 5, 6))]
    from_stack = probability_volumes(MethodResult(grid, expert_probabilities=StackedVolume(stack, grid.spacing, grid.origin), experts=experts))
    assert [v.array.shape for v in from_stack] == [(4, 5, 6)] * 2 and from_stack[1].same_geometry(grid)
    np.testing.assert_array_equal(from_stack[1].array, stack[1])
    from_list = probability_volumes(MethodResult(grid, expert_probabilities=from_stack, experts=experts))
    assert from_list == from_stack
    assert probability_volumes(MethodResult(grid)) == []
    with pytest.raises(InputError, match="2 expert probability maps for 1 experts"):
        probability_volumes(MethodResult(grid, expert_probabilities=from_stack, experts=experts[:1]))
    with pytest.raises(InputError, match="4-D"):
        probability_volumes(MethodResult(grid, expert_probabilities=StackedVolume(stack[0], grid.spacing, grid.origin), experts=experts))


def test_probability_nodes_are_scalar_volumes_coloured_by_their_expert(scene, fake_run):
    request, result = fake_run
    nodes = request.probabilityNodes
    assert sorted(nodes) == [1, 2, 3] and probability_nodes(request.outputNode) == nodes
    for label, node in nodes.items():
        assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
        assert node.GetName() == f"small crop denoised p(tercile {label})"
        np.testing.assert_allclose(slicer.util.arrayFromVolume(node), result.expert_probabilities.array[label - 1])
        np.testing.assert_allclose(matrix(node), matrix(request.outputNode), atol=1e-9)
        display = node.GetDisplayNode()
        assert not display.GetAutoWindowLevel()
        assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((0.0, 1.0))
        ramp, rgba = display.GetColorNode(), [0.0] * 4
        ramp.GetColor(ramp.GetNumberOfColors() - 1, rgba)  # p = 1: the expert's colour, opaque
        np.testing.assert_allclose(rgba, [c / 255 for c in EXPERT_COLORS[label - 1]] + [1.0], atol=1e-6)
        ramp.GetColor(0, rgba)  # p = 0: transparent
        assert rgba[3] == 0.0


def test_a_rerun_reuses_the_probability_nodes_and_drops_stale_ones(scene, small_crop, fake_run):
    request, _ = fake_run
    first = dict(request.probabilityNodes)
    nodes_before = scene.GetNumberOfNodes()
    logic = MoEProcessingLogic()
    again = logic.prepare(small_crop, request.outputNode, "denoise", "test-fake-moe-denoise", experts=2)
    result, seconds = logic.run(again)
    logic.finish(again, result, seconds)
    assert again.probabilityNodes == {1: first[1], 2: first[2]}
    assert first[3].GetScene() is None  # removed from the scene, with nothing else added
    assert again.expertMapNode is expert_map_node_of(request.outputNode) is request.expertMapNode
    assert request.outputNode.GetNumberOfNodeReferences(PROBABILITY_REFERENCE) == 2
    # expert 3's node, its colour ramp and display node are gone; no new nodes were added
    assert scene.GetNumberOfNodes() < nodes_before
    only_second = show_expert_probabilities(result, request.outputNode, labels=[2])
    assert list(only_second) == [2]


def test_difference_and_further_label_map_nodes_hang_off_the_output(scene, small_crop, fake_run):
    request, result = fake_run
    assert sorted(request.differenceNodes) == [1, 2, 3]
    for label, node in request.differenceNodes.items():
        assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
        assert node.GetName() == f"small crop denoised tercile {label} difference"
        np.testing.assert_allclose(slicer.util.arrayFromVolume(node), result.expert_differences[label - 1].array)
        np.testing.assert_allclose(matrix(node), matrix(request.outputNode), atol=1e-9)
        display = node.GetDisplayNode()
        assert display.GetWindowLevelMin() == pytest.approx(-display.GetWindowLevelMax()) and display.GetWindowLevelMax() > 0
    brightness = request.labelMapNodes["brightness"]
    assert brightness.IsA("vtkMRMLLabelMapVolumeNode") and brightness.GetName() == "small crop denoised brightness"
    color = brightness.GetDisplayNode().GetColorNode()
    assert [color.GetColorName(i) for i in range(3)] == ["background", "darker half", "brighter half"]
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(brightness), result.label_maps[0].volume.array)

    logic = MoEProcessingLogic()  # a rerun with fewer experts refills and drops, adds nothing
    again = logic.prepare(small_crop, request.outputNode, "denoise", "test-fake-moe-denoise", experts=2)
    rerun, seconds = logic.run(again)
    logic.finish(again, rerun, seconds)
    assert again.differenceNodes == {1: request.differenceNodes[1], 2: request.differenceNodes[2]}
    assert request.differenceNodes[3].GetScene() is None
    assert again.labelMapNodes == {"brightness": brightness}
    assert set(result_volume_nodes(request.outputNode, DIFFERENCE_REFERENCE)) == {"1", "2"}
    choices = overlay_choices(request.outputNode, again.expertMapNode)
    assert [(key, layer) for _, key, _, layer in choices] == [
        ("", "label"), ("1", "foreground"), ("2", "foreground"), ("difference:1", "foreground"), ("difference:2", "foreground"), ("labels:brightness", "label")]
    assert choices[-1][2] is brightness and choices[0][2] is again.expertMapNode
    assert list(result_volume_nodes(request.outputNode, LABEL_MAP_REFERENCE)) == ["brightness"]


def test_legend_read_back_from_the_scene_matches_the_result(scene, fake_run):
    request, result = fake_run
    from_scene = legend_from_nodes(request.expertMapNode)
    from_result = expert_legend(result)
    assert [row[:3] for row in from_scene] == [row[:3] for row in from_result]
    assert [row[3] for row in from_scene] == pytest.approx([row[4] for row in from_result])
    assert legend_from_nodes(None) == [] and legend_from_nodes(scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")) == []


def test_data_probe_names_the_expert_under_the_mouse(scene, fake_run):
    # The Data Probe reads the label's name from the label map's colour node: check it is set.
    request, _ = fake_run
    labels = slicer.util.arrayFromVolume(request.expertMapNode)
    k, j, i = np.argwhere(labels == 2)[0]
    color = request.expertMapNode.GetDisplayNode().GetColorNode()
    assert color.GetColorName(int(labels[k, j, i])) == "tercile 2"


def test_views_show_a_probability_overlay_instead_of_the_expert_map(scene, fake_run):
    request, _ = fake_run
    layout_node, keep = slice_views(scene)
    compare_views.set_label_layer(scene, request.expertMapNode, 0.5)
    compare_views.show_probability_overlay(scene, request.outputNode, request.probabilityNodes[2], 0.7)
    for composite in compare_views.slice_composite_nodes(scene).values():
        assert composite.GetBackgroundVolumeID() == request.outputNode.GetID()
        assert composite.GetForegroundVolumeID() == request.probabilityNodes[2].GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.7)
        assert composite.GetLabelVolumeID() is None
    del keep
