"""The Slicer-side logic (MoEMRILib) on real MRML from PyPI's slicer-core, with the real sample head:
node <-> Volume geometry, input refusals, classical and mixture-of-experts runs, expert map colour
tables, pickers and the compare views. Fixtures: test_slicer_fixtures; test doubles: test_slicer_fakes.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

# MoEMRILib is not an installed package: in Slicer it sits beside the modules, here at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from MoEMRILib import compare_views  # noqa: E402
from MoEMRILib.expert_overlay import COLOR_TABLE_ATTRIBUTE, expert_legend, make_expert_color_table, show_expert_map  # noqa: E402
from moemri.methods.choices import expert_counts_for, methods_for_task, noise_option_name, picker_label  # noqa: E402
from MoEMRILib.processing_logic import MoEProcessingLogic, new_output_node, result_summary, result_warnings, run_in_process  # noqa: E402
from MoEMRILib.volume_nodes import (  # noqa: E402
    check_input_node,
    ijk_to_ras_matrix,
    input_node_problem,
    update_node_from_volume,
    volume_from_node,
)
from moemri.errors import InputError  # noqa: E402
from moemri.methods.base import Expert, MethodInfo, MethodResult  # noqa: E402
from moemri.volume import Volume, crop_volume  # noqa: E402
from test_slicer_fakes import EXPERT_COLORS  # noqa: E402
from test_slicer_fixtures import crop_node as _crop_node  # noqa: E402
from test_slicer_fixtures import fake_methods, head_crop, sample_loaded, sample_node, scene  # noqa: E402,F401  (fixtures, by name)
from test_slicer_fixtures import load_with_slicer_reader as _load_with_slicer_reader  # noqa: E402
from test_slicer_fixtures import matrix as _matrix  # noqa: E402
from test_slicer_fixtures import registered as _registered  # noqa: E402

# The fastest registered classical method of each task (the modules themselves never name one).
DENOISE_METHOD = "curvature-diffusion"
SUPERRES_METHOD = "linear"


def _centre_ras(node) -> np.ndarray:
    centre_ijk = (np.array(node.GetImageData().GetDimensions()) - 1) / 2.0
    return (_matrix(node) @ np.append(centre_ijk, 1.0))[:3]


@pytest.fixture
def fake_moe(fake_methods):
    return fake_methods["FakeGatedDenoiser"]


# Loading and geometry -------------------------------------------------------------------------


def test_slicer_reader_and_moemri_reader_agree_on_the_sample(scene, sample_path):
    from moemri.io import read_volume

    node = _load_with_slicer_reader(scene, sample_path)
    from_node = volume_from_node(node)
    from_file = read_volume(sample_path, keep_dtype=True)
    np.testing.assert_array_equal(from_node.array, from_file.array)
    np.testing.assert_allclose(from_node.spacing, from_file.spacing, atol=1e-6)
    np.testing.assert_allclose(from_node.origin, from_file.origin, atol=1e-5)  # NIfTI stores float32
    np.testing.assert_allclose(from_node.direction, from_file.direction, atol=1e-6)
    # Slicer's RAS matrix is the LPS one with the first two rows negated.
    np.testing.assert_allclose(_matrix(node), ijk_to_ras_matrix(from_file), atol=1e-5)


def _oblique_matrix() -> np.ndarray:
    angle = np.deg2rad(17.0)
    axis = np.array([0.3, -0.5, 0.8])
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    m = np.eye(4)
    m[:3, :3] = rotation @ np.diag([0.9, 1.1, 3.3])
    m[:3, 3] = (-81.25, 17.5, -42.125)
    return m


def _flipped_matrix() -> np.ndarray:
    # i runs right-to-left, k inferior-to-superior reversed: a left-handed, flipped grid.
    m = np.diag([-1.2, 1.0, -2.5, 1.0])
    m[:3, 3] = (60.0, -90.0, 75.0)
    return m


@pytest.mark.parametrize("which", ["sample", "oblique", "flipped"])
def test_node_volume_node_round_trip_keeps_matrix_exactly(scene, sample_loaded, which):
    array, sample_matrix = sample_loaded
    array = array[60:100, 80:130, 70:120]
    matrix = {"sample": sample_matrix, "oblique": _oblique_matrix(), "flipped": _flipped_matrix()}[which]
    node = slicer.util.addVolumeFromArray(array, ijkToRAS=matrix, name=which)

    volume = volume_from_node(node)
    np.testing.assert_allclose(ijk_to_ras_matrix(volume), matrix, atol=1e-12)
    # LPS semantics: voxel (i, j, k) of the Volume lies where Slicer puts it, with x and y negated.
    ijk = np.array([3.0, 7.0, 11.0, 1.0])
    ras = _matrix(node) @ ijk
    np.testing.assert_allclose(volume.ijk_to_lps() @ ijk, ras * np.array([-1, -1, 1, 1]), atol=1e-12)

    copy = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "copy")
    update_node_from_volume(copy, volume)
    np.testing.assert_array_equal(_matrix(copy), _matrix(node))  # bit for bit
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(copy), array)
    assert slicer.util.arrayFromVolume(copy).dtype == array.dtype


def test_sample_and_weights_are_found_beside_the_package(sample_path):
    from MoEMRILib.sample_data import sample_volume_path, weights_dir

    assert sample_volume_path() == sample_path
    assert weights_dir() == sample_path.parents[1] / "Weights"


def test_volume_from_node_copies_the_voxels(sample_node):
    before = slicer.util.arrayFromVolume(sample_node).copy()
    volume = volume_from_node(sample_node)
    volume.array[...] = 0
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(sample_node), before)


def test_label_map_node_takes_a_volume_and_its_grid(scene):
    labels = Volume(np.arange(4 * 5 * 6).reshape(4, 5, 6) % 3, spacing=(0.5, 0.7, 2.0), origin=(10.0, -4.0, 3.0),
                    direction=np.diag([-1.0, 1.0, 1.0]))
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    update_node_from_volume(node, labels)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), labels.array)
    np.testing.assert_allclose(_matrix(node), ijk_to_ras_matrix(labels), atol=1e-12)
    assert volume_from_node(node).same_geometry(labels)


def test_crop_keeps_every_voxel_in_place(sample_node):
    volume = volume_from_node(sample_node)
    crop = crop_volume(volume, (10, 20, 40), (186, 212, 168), step=2)
    assert crop.spacing == (2.0, 2.0, 2.0)
    # Voxel (1, 2, 3) of the crop is voxel (12, 24, 46) of the head, at the same place.
    np.testing.assert_allclose(crop.ijk_to_lps() @ [1, 2, 3, 1], volume.ijk_to_lps() @ [12, 24, 46, 1])
    assert crop.array[3, 2, 1] == volume.array[46, 24, 12]


# Input checks ---------------------------------------------------------------------------------


def test_refuses_a_label_map_node(scene, head_crop):
    labels = slicer.util.addVolumeFromArray(
        (slicer.util.arrayFromVolume(head_crop) > 50).astype(np.uint8), ijkToRAS=_matrix(head_crop),
        name="brain mask", nodeClassName="vtkMRMLLabelMapVolumeNode",
    )
    with pytest.raises(InputError, match="label map"):
        check_input_node(labels)
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "out")
    with pytest.raises(InputError, match="label map"):
        MoEProcessingLogic().process(labels, output, "denoise", _any_method("denoise"))


def test_refuses_a_vector_volume_node(scene):
    rgb = slicer.util.addVolumeFromArray(np.random.default_rng(0).random((8, 9, 10, 3)).astype(np.float32),
                                         name="rgb", nodeClassName="vtkMRMLVectorVolumeNode")
    with pytest.raises(InputError, match="vector or RGB"):
        check_input_node(rgb)


def test_refuses_output_node_that_is_the_input(head_crop):
    with pytest.raises(InputError, match="output volume is the input"):
        MoEProcessingLogic().process(head_crop, head_crop, "denoise", _any_method("denoise"))


def test_refuses_nodes_without_voxels_constant_volumes_and_sequence_frames(scene):
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no image data"):
        check_input_node(empty)
    with pytest.raises(InputError, match="no input volume"):
        check_input_node(None)
    constant = slicer.util.addVolumeFromArray(np.full((6, 7, 8), 3.0, np.float32), name="flat")
    with pytest.raises(InputError, match="constant"):
        check_input_node(constant)

    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "fMRI")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "fMRI browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    frame = slicer.util.addVolumeFromArray(np.random.default_rng(1).random((6, 7, 8)).astype(np.float32), name="frame")
    browser.AddProxyNode(frame, sequence, False)
    assert "4-D sequence" in input_node_problem(frame)

    multi = slicer.util.addVolumeFromArray(np.random.default_rng(2).random((6, 7, 8)).astype(np.float32), name="DCE")
    multi.SetAttribute("MultiVolume.NumberOfFrames", "12")  # what the MultiVolume importer leaves on a 4-D series
    with pytest.raises(InputError, match="multi-volume"):
        check_input_node(multi)


def test_volume_view_is_read_only_and_not_a_copy(head_crop):
    from MoEMRILib.volume_nodes import volume_view_from_node

    view = volume_view_from_node(head_crop)
    assert np.shares_memory(view.array, slicer.util.arrayFromVolume(head_crop))
    assert view.same_geometry(volume_from_node(head_crop), atol=0)
    with pytest.raises(ValueError):
        view.array[0, 0, 0] = 1


def test_refuses_a_label_map_as_output_and_a_wrong_expert_count_before_running(scene, head_crop):
    calls = []

    def recording_runner(method, volume, **kwargs):
        calls.append(method.info.name)
        return run_in_process(method, volume, **kwargs)

    logic = MoEProcessingLogic(runner=recording_runner)
    method = _any_method("denoise")
    label_output = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    with pytest.raises(InputError, match="scalar volume"):
        logic.process(head_crop, label_output, "denoise", method)
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "out")
    with pytest.raises(InputError, match="experts"):
        logic.process(head_crop, output, "denoise", method, experts=7)
    with pytest.raises(InputError, match="no option"):
        logic.process(head_crop, output, "denoise", method, options={"no_such_option": 1})
    assert calls == []


def _any_method(task: str) -> str:
    return methods_for_task(task)[0].name


# Running the registry's classical methods ---------------------------------------------------------


def test_denoise_classical_method_on_real_crop(scene, head_crop):
    _registered(DENOISE_METHOD)
    array_before = slicer.util.arrayFromVolume(head_crop).copy()
    matrix_before = _matrix(head_crop)
    output = new_output_node(head_crop, "denoise")
    progress = []

    result = MoEProcessingLogic().process(
        head_crop, output, "denoise", DENOISE_METHOD, progress=lambda f, s: progress.append((f, s))
    )

    out = slicer.util.arrayFromVolume(output)
    assert out.shape == array_before.shape
    assert np.isfinite(out).all()
    np.testing.assert_allclose(_matrix(output), matrix_before, atol=1e-12)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(head_crop), array_before)
    np.testing.assert_array_equal(_matrix(head_crop), matrix_before)
    # It smoothed: neighbouring voxels differ less than in the input.
    assert np.abs(np.diff(out, axis=2)).mean() < np.abs(np.diff(array_before.astype(float), axis=2)).mean()
    assert progress and progress[-1][0] == 1.0
    assert output.GetName() == "head crop denoised"
    assert output.GetDisplayNode() is not None
    assert output.GetAttribute("MoEMRI.method") == DENOISE_METHOD
    assert output.GetAttribute("MoEMRI.experts") == "1"
    assert output.GetAttribute("MoEMRI.device") == "cpu"
    assert float(output.GetAttribute("MoEMRI.seconds")) > 0
    assert output.GetAttribute("MoEMRI.task") == "denoise"
    assert result.expert_map is None
    assert DENOISE_METHOD in result_summary(output)


def test_superres_classical_method_on_real_crop(scene, sample_node):
    _registered(SUPERRES_METHOD)
    low_res = _crop_node(sample_node, (50, 60, 60), (150, 160, 140), 2, "2 mm head")  # 50 x 50 x 40
    array_before = slicer.util.arrayFromVolume(low_res).copy()
    matrix_before = _matrix(low_res)
    spacing = (1.0, 1.25, 0.8)
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "fine")

    MoEProcessingLogic().process(low_res, output, "superres", SUPERRES_METHOD, options={"spacing": spacing})

    np.testing.assert_allclose(output.GetSpacing(), spacing, atol=1e-12)
    in_dims = np.array(low_res.GetImageData().GetDimensions())
    out_dims = np.array(output.GetImageData().GetDimensions())
    extent = in_dims * np.array(low_res.GetSpacing())
    np.testing.assert_array_equal(out_dims, np.round(extent / spacing))
    np.testing.assert_allclose(_centre_ras(output), _centre_ras(low_res), atol=1e-6)
    directions_in = matrix_before[:3, :3] / np.linalg.norm(matrix_before[:3, :3], axis=0)
    directions_out = _matrix(output)[:3, :3] / np.linalg.norm(_matrix(output)[:3, :3], axis=0)
    np.testing.assert_allclose(directions_out, directions_in, atol=1e-12)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(low_res), array_before)
    np.testing.assert_array_equal(_matrix(low_res), matrix_before)
    # Interpolation keeps the intensities in the input's range and the head where it was.
    out = slicer.util.arrayFromVolume(output)
    assert out.min() >= array_before.min() - 1e-3 and out.max() <= array_before.max() + 1e-3
    assert abs(float(out.mean()) - float(array_before.mean())) < 0.05 * float(array_before.mean())
    assert output.GetAttribute("MoEMRI.method") == SUPERRES_METHOD


# Mixture of experts: expert map, colour table, legend -------------------------------------------


def test_fake_moe_method_writes_expert_map_with_named_colours(scene, head_crop, fake_moe):
    calls = []

    def recording_runner(method, volume, **kwargs):
        calls.append(kwargs)
        return run_in_process(method, volume, **kwargs)

    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "denoised")
    expert_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "experts")
    array_before = slicer.util.arrayFromVolume(head_crop).copy()

    result = MoEProcessingLogic(runner=recording_runner).process(
        head_crop, output, "denoise", fake_moe.info.name, experts=3, device="cpu",
        options={"strength": 0.25}, expertMapNode=expert_node,
    )

    assert len(calls) == 1 and calls[0]["experts"] == 3 and calls[0]["options"] == {"strength": 0.25}
    assert fake_moe.calls[0]["experts"] == 3
    labels = slicer.util.arrayFromVolume(expert_node)
    np.testing.assert_array_equal(labels, result.expert_map.array)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    np.testing.assert_allclose(_matrix(expert_node), _matrix(output), atol=1e-12)
    np.testing.assert_allclose(_matrix(expert_node), _matrix(head_crop), atol=1e-12)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(head_crop), array_before)

    color = expert_node.GetDisplayNode().GetColorNode()
    assert color is not None and color.IsA("vtkMRMLColorTableNode")
    assert color.GetType() == slicer.vtkMRMLColorTableNode.User
    assert color.GetNumberOfColors() == 4
    assert [color.GetColorName(i) for i in range(4)] == ["background", "tercile 1", "tercile 2", "tercile 3"]
    rgba = [0.0] * 4
    color.GetColor(0, rgba)
    assert rgba[3] == 0.0  # background is transparent
    for label, expected in enumerate(EXPERT_COLORS, start=1):
        color.GetColor(label, rgba)
        np.testing.assert_allclose(rgba, [c / 255 for c in expected] + [1.0], atol=1e-6)

    legend = expert_legend(result)
    assert [row[0] for row in legend] == [1, 2, 3]
    assert [row[1] for row in legend] == ["tercile 1", "tercile 2", "tercile 3"]
    assert legend[0][2] == EXPERT_COLORS[0]
    assert sum(row[4] for row in legend) == pytest.approx(1.0)
    counts = [(labels == label).sum() for label in (1, 2, 3)]
    assert [row[4] for row in legend] == pytest.approx([c / sum(counts) for c in counts])

    assert output.GetAttribute("MoEMRI.experts") == "3"
    assert output.GetAttribute("MoEMRI.gate_temperature") == "0.5"
    assert json.loads(output.GetAttribute("MoEMRI.per_expert_voxels")) == [int(c) for c in counts]
    assert "3 experts" in result_summary(output)

    # A second run refills the same colour table instead of adding one more to the scene.
    tables_before = scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")
    MoEProcessingLogic().process(head_crop, output, "denoise", fake_moe.info.name, experts=2, expertMapNode=expert_node)
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == tables_before
    assert expert_node.GetDisplayNode().GetColorNode() is color
    assert color.GetNumberOfColors() == 3
    assert output.GetAttribute("MoEMRI.gate_temperature") == "0.5"
    assert output.GetAttribute("MoEMRI.experts") == "2"


def test_color_table_and_overlay_refusals(scene):
    table = make_expert_color_table([Expert(2, "wm", (255, 255, 255)), Expert(1, "gm", (128, 128, 128))], "t")
    assert table.GetAttribute(COLOR_TABLE_ATTRIBUTE) == "1"
    assert [table.GetColorName(i) for i in range(3)] == ["background", "gm", "wm"]
    with pytest.raises(InputError):
        make_expert_color_table([Expert(0, "bad", (0, 0, 0))], "t2")
    scalar = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "not a label map")
    result = MethodResult(image=Volume(np.zeros((2, 2, 2))), expert_map=Volume(np.ones((2, 2, 2), np.uint8)),
                          experts=[Expert(1, "one", (1, 2, 3))])
    with pytest.raises(InputError, match="label map"):
        show_expert_map(result, scalar)
    with pytest.raises(InputError, match="no expert map"):
        show_expert_map(MethodResult(image=Volume(np.zeros((2, 2, 2)))), scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode"))


def test_results_follow_the_input_under_its_transform(scene, head_crop, fake_moe):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    head_crop.SetAndObserveTransformNodeID(transform.GetID())
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "out")
    expert_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "experts")
    MoEProcessingLogic().process(head_crop, output, "denoise", fake_moe.info.name, expertMapNode=expert_node)
    assert output.GetTransformNodeID() == transform.GetID()
    assert expert_node.GetTransformNodeID() == transform.GetID()


def test_classical_method_leaves_an_expert_map_node_alone(scene, head_crop):
    _registered(DENOISE_METHOD)
    expert_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "experts")
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "out")
    result = MoEProcessingLogic().process(head_crop, output, "denoise", DENOISE_METHOD, expertMapNode=expert_node)
    assert result.expert_map is None
    assert expert_node.GetImageData() is None


# Pickers ------------------------------------------------------------------------------------


def test_pickers_list_moe_methods_first_and_mark_classical_ones_once(fake_moe):
    choices = methods_for_task("denoise")
    names = [c.name for c in choices]
    moe = [c.name for c in choices if not c.info.classical]
    assert fake_moe.info.name in moe and "smoe-patch" in moe
    assert names[: len(moe)] == moe and all(c.info.classical for c in choices[len(moe) :])
    for choice in choices:
        assert choice.label.count("(classical") == (1 if choice.info.classical else 0)
        assert choice.info.reference in choice.tooltip
        assert choice.info.task == "denoise"
    assert expert_counts_for(fake_moe.info.name) == (2, 3)
    assert {c.info.task for c in methods_for_task("superres")} == {"superres"}
    marked = MethodInfo("x", "denoise", "Plain", "d", "r", classical=True)
    assert picker_label(marked) == "Plain (classical)"
    with pytest.raises(ValueError):
        methods_for_task("segment")


def test_noise_level_goes_only_to_methods_that_take_one(scene, head_crop):
    takes_noise = [c.name for c in methods_for_task("denoise") if noise_option_name(c.name)]
    assert takes_noise, "no registered denoiser takes a noise level any more (non-local means and the SMoE did)"
    assert noise_option_name(takes_noise[0]) is not None
    _registered(DENOISE_METHOD)
    # Curvature diffusion has no noise option: the module leaves the level out.
    assert noise_option_name(DENOISE_METHOD) is None
    assert noise_option_name(takes_noise[0]) == "noise_level_percent"


# Compare views ------------------------------------------------------------------------------------


def slice_views(scene):
    """The layout node, with a slice logic (and so a composite node) per slice view, as the
    layout manager makes them in Slicer. Returns (layout node, slice logics to keep alive)."""
    layout_logic = slicer.vtkMRMLLayoutLogic()
    layout_logic.SetMRMLScene(scene)
    slice_nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    slice_logics = [layout_logic]
    for index in range(slice_nodes.GetNumberOfItems()):
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        logic.SetSliceNode(slice_nodes.GetItemAsObject(index))
        slice_logics.append(logic)
    return layout_logic.GetLayoutNode(), slice_logics


def test_compare_views_link_the_slice_views_and_set_layers(scene, head_crop):
    layout_node, keep = slice_views(scene)
    composites = compare_views.slice_composite_nodes(scene)
    views = compare_views.slice_nodes(scene)
    assert {"Red", "Yellow", "Green"} <= set(composites) and {"Red", "Yellow"} <= set(views)

    result_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "result")
    update_node_from_volume(result_node, volume_from_node(head_crop))
    label_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "experts")

    previous = compare_views.set_compare_layout(layout_node)
    assert layout_node.GetViewArrangement() == compare_views.SIDE_BY_SIDE_LAYOUT
    assert compare_views.set_compare_layout(layout_node, previous) == compare_views.SIDE_BY_SIDE_LAYOUT
    compare_views.set_compare_layout(layout_node)

    # The left view was moved, zoomed and panned; the right one is sagittal, as in the conventional layout.
    red_view, yellow_view = views["Red"], views["Yellow"]
    red_view.GetSliceToRAS().DeepCopy(slicer.util.vtkMatrixFromArray(np.array(
        [[-1, 0, 0, 12.5], [0, 1, 0, -30.0], [0, 0, 1, 17.0], [0, 0, 0, 1]], dtype=float)))
    red_view.SetFieldOfView(180.0, 150.0, 2.0)
    red_view.SetXYZOrigin(4.0, -6.0, 0.0)
    red_view.UpdateMatrices()
    yellow_view.GetSliceToRAS().DeepCopy(slicer.util.vtkMatrixFromArray(np.array(
        [[0, 0, 1, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)))
    yellow_view.UpdateMatrices()

    compare_views.show_before_after(scene, head_crop, result_node, fade=0.3)
    red, yellow, green = composites["Red"], composites["Yellow"], composites["Green"]
    assert all(node.GetLinkedControl() == 1 and node.GetHotLinkedControl() == 1 for node in composites.values())
    # Left: the input alone. Right: the input under the result, at the fade opacity.
    assert red.GetBackgroundVolumeID() == head_crop.GetID() and red.GetForegroundVolumeID() is None
    assert yellow.GetBackgroundVolumeID() == head_crop.GetID() and yellow.GetForegroundVolumeID() == result_node.GetID()
    assert yellow.GetForegroundOpacity() == pytest.approx(0.3)
    assert green.GetForegroundVolumeID() == result_node.GetID()
    # Same slice, zoom and pan in both views.
    np.testing.assert_array_equal(slicer.util.arrayFromVTKMatrix(yellow_view.GetSliceToRAS()),
                                  slicer.util.arrayFromVTKMatrix(red_view.GetSliceToRAS()))
    assert yellow_view.GetFieldOfView() == pytest.approx((180.0, 150.0, 2.0))
    assert yellow_view.GetXYZOrigin() == pytest.approx((4.0, -6.0, 0.0))

    compare_views.set_fade(scene, 0.8)
    assert yellow.GetForegroundOpacity() == pytest.approx(0.8) and red.GetForegroundVolumeID() is None
    compare_views.set_fade(scene, 7)  # clamped
    assert yellow.GetForegroundOpacity() == 1.0

    compare_views.set_label_layer(scene, label_node, 0.4)
    assert all(n.GetLabelVolumeID() == label_node.GetID() for n in composites.values())
    assert red.GetLabelOpacity() == pytest.approx(0.4)
    compare_views.set_label_layer(scene, None)
    assert all(n.GetLabelVolumeID() is None for n in composites.values())

    # Not side by side: every view fades.
    compare_views.show_before_after(scene, head_crop, result_node, fade=0.6, side_by_side=False)
    assert red.GetForegroundVolumeID() == result_node.GetID() and red.GetForegroundOpacity() == pytest.approx(0.6)

    compare_views.link_slice_views(scene, False)
    assert all(node.GetLinkedControl() == 0 and node.GetHotLinkedControl() == 0 for node in composites.values())
    # Only the slice views moved: the input is as it was.
    assert slicer.util.arrayFromVolume(head_crop).shape == (64, 96, 88)
    assert compare_views.match_slice_views(scene, "Red", "NoSuchView") is False
    del keep


def test_summary_names_the_selected_expert_noise_and_warnings(scene, head_crop):
    _registered(DENOISE_METHOD)
    metadata = {"device": "cpu", "selected_expert": "bin 5 (4.5-5.5 mm3)", "noise_level_percent": 3.25,
                "warnings": ["the input's spacing is outside the trained bins"], "fallback": "cuda:0 ran out of memory; ran on the CPU"}

    def staged_runner(method, volume, **kwargs):
        return MethodResult(volume.with_array(volume.array.astype(np.float32)), metadata=dict(metadata))

    logic = MoEProcessingLogic(runner=staged_runner)
    nodes_before = scene.GetNumberOfNodes()
    request = logic.prepare(head_crop, None, "denoise", DENOISE_METHOD)
    assert scene.GetNumberOfNodes() == nodes_before  # prepare changes nothing
    result, seconds = logic.run(request)
    logic.finish(request, result, seconds)
    output = request.outputNode
    summary = result_summary(output)
    assert summary.startswith(f"{DENOISE_METHOD}, 1 expert on cpu")
    assert "expert bin 5 (4.5-5.5 mm3)" in summary and "noise 3.2 %" in summary
    assert output.GetAttribute("MoEMRI.summary") == summary
    assert result_warnings(output) == metadata["warnings"] + [metadata["fallback"]]
