"""Every method of the registry, run through the modules' logic on real MRML volume nodes cut from
the real sample head: output geometry, the input node untouched, summary attributes, and for
methods that give one, the expert map as a label map whose colour table names every expert.

The list is read from the registry when the tests are collected, so a method a colleague adds is
tested here without a change. Crops are small (3 mm, 30 x 30 x 20 voxels; ANTs, the slowest, gets
a 6 mm one): this checks the Slicer side, not the methods' quality.
"""
from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from MoEMRILib.processing_logic import MoEProcessingLogic, expert_map_node_of  # noqa: E402
from moemri.methods.registry import all_methods, get_method  # noqa: E402
from test_slicer_fixtures import crop_node, matrix, sample_loaded, sample_node, scene, small_crop  # noqa: E402,F401

SLOW = {"ants-denoise"}  # gets the tiny crop
OPTIONAL = {"ants-denoise"}  # needs the optional antspyx; every other method must run here
SUPERRES_SPACING_MM = (2.0, 2.0, 2.0)  # from the 3 mm crop


def _registry_names(task):
    return [m.info.name for m in all_methods(task)]  # an import error here is a failure, not a skip


def _input_node(sample_node, small_crop, name):
    if name in SLOW:
        return crop_node(sample_node, (60, 78, 56), (138, 156, 104), 6, "tiny crop")  # 13 x 13 x 8
    return small_crop


def _checked_run(scene, input_node, task, name, options):
    method = get_method(name, task)
    if method.availability():
        if name not in OPTIONAL:
            pytest.fail(f"{name}: {method.availability()}")
        pytest.skip(f"{name}: {method.availability()}")
    array_before = slicer.util.arrayFromVolume(input_node).copy()
    matrix_before = matrix(input_node)
    expert_map = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "experts")
    result = MoEProcessingLogic().process(input_node, None, task, name, device="cpu", options=options, expertMapNode=expert_map)
    output = scene.GetFirstNodeByName(f"{input_node.GetName()} {'denoised' if task == 'denoise' else 'super-resolved'}")
    assert output is not None
    out = slicer.util.arrayFromVolume(output)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(input_node), array_before)
    np.testing.assert_array_equal(matrix(input_node), matrix_before)
    assert output.GetAttribute("MoEMRI.method") == name
    assert output.GetAttribute("MoEMRI.experts") == str(method.info.default_experts)
    assert output.GetAttribute("MoEMRI.summary").startswith(name)
    _check_expert_map(result, expert_map, output)
    return output, result


def _check_expert_map(result, expert_map, output):
    if result.expert_map is None:
        assert expert_map.GetImageData() is None  # left alone
        return
    assert expert_map_node_of(output) is expert_map
    labels = slicer.util.arrayFromVolume(expert_map)
    np.testing.assert_allclose(matrix(expert_map), matrix(output), atol=1e-9)
    color = expert_map.GetDisplayNode().GetColorNode()
    assert color.GetColorName(0) == "background"
    for expert in result.experts:
        assert color.GetColorName(expert.label) == expert.name
    assert set(np.unique(labels)) <= {0} | {e.label for e in result.experts}


@pytest.mark.parametrize("name", _registry_names("denoise"))
def test_every_denoiser_on_mrml_nodes(scene, sample_node, small_crop, name):
    input_node = _input_node(sample_node, small_crop, name)
    output, _ = _checked_run(scene, input_node, "denoise", name, {})
    assert slicer.util.arrayFromVolume(output).shape == slicer.util.arrayFromVolume(input_node).shape
    np.testing.assert_allclose(matrix(output), matrix(input_node), atol=1e-9)


@pytest.mark.parametrize("name", _registry_names("superres"))
def test_every_super_resolution_method_on_mrml_nodes(scene, sample_node, small_crop, name):
    input_node = _input_node(sample_node, small_crop, name)
    takes_spacing = "spacing" in {o.name for o in get_method(name).info.options}
    output, _ = _checked_run(scene, input_node, "superres", name, {"spacing": SUPERRES_SPACING_MM} if takes_spacing else {})
    if takes_spacing:
        np.testing.assert_allclose(output.GetSpacing(), SUPERRES_SPACING_MM, atol=1e-9)
    # Same physical extent, centre and axis directions: nothing shifted or flipped.
    in_extent = np.array(input_node.GetImageData().GetDimensions()) * np.array(input_node.GetSpacing())
    out_extent = np.array(output.GetImageData().GetDimensions()) * np.array(output.GetSpacing())
    np.testing.assert_allclose(out_extent, in_extent, atol=max(output.GetSpacing()))
    centre = lambda node: (matrix(node) @ np.append((np.array(node.GetImageData().GetDimensions()) - 1) / 2.0, 1))[:3]  # noqa: E731
    np.testing.assert_allclose(centre(output), centre(input_node), atol=1e-6)
    unit = lambda node: matrix(node)[:3, :3] / np.linalg.norm(matrix(node)[:3, :3], axis=0)  # noqa: E731
    np.testing.assert_allclose(unit(output), unit(input_node), atol=1e-9)
