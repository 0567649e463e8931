"""Fixtures of the Slicer-side tests (import them into a test module by name): a fresh MRML scene,
the real sample head as a volume node and small crops of it, the fake methods registered.

slicer-core has no Slicer application: `slicer.util.loadVolume` needs `slicer.app`, so the sample is
loaded with vtkSlicerVolumesLogic, the reader behind it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

# MoEMRILib is not an installed package: in Slicer it sits beside the modules, here at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from MoEMRILib.volume_nodes import update_node_from_volume, volume_from_node  # noqa: E402
from moemri.volume import crop_volume  # noqa: E402
from moemri.methods import registry  # noqa: E402

import test_slicer_fakes  # noqa: E402


@pytest.fixture
def scene():
    """A fresh MRML scene as slicer.mrmlScene (slicer.util's helpers add nodes there)."""
    slicer.mrmlScene = slicer.vtkMRMLScene()
    # Sequence browser nodes come with the Sequences module in Slicer; register the class here.
    slicer.mrmlScene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(1)


def matrix(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def load_with_slicer_reader(scene, path):
    # Without Slicer's Colors module logic it logs "invalid Colors module logic" and loads the
    # volume all the same, only without a default colour table on its display node.
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    node = logic.AddArchetypeVolume(str(path), "MNI152-2009a-T1", 0)
    assert node is not None, f"Slicer's volume reader could not load {path}"
    return node


@pytest.fixture(scope="session")
def sample_loaded(sample_path):
    """(voxels, IJK-to-RAS matrix) of the sample as Slicer's reader loads it (read once)."""
    node = load_with_slicer_reader(slicer.vtkMRMLScene(), sample_path)
    return slicer.util.arrayFromVolume(node).copy(), matrix(node)


@pytest.fixture
def sample_node(scene, sample_loaded):
    array, ijk_to_ras = sample_loaded
    return slicer.util.addVolumeFromArray(array, ijkToRAS=ijk_to_ras, name="MNI152-2009a-T1")


def crop_node(source_node, start, stop, step, name):
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    update_node_from_volume(node, crop_volume(volume_from_node(source_node), start, stop, step))
    node.CreateDefaultDisplayNodes()
    return node


@pytest.fixture
def head_crop(sample_node):
    """A 2 mm piece of the real head (88 x 96 x 64 voxels): anatomy, background and edges."""
    return crop_node(sample_node, (10, 20, 40), (186, 212, 168), 2, "head crop")


@pytest.fixture
def small_crop(sample_node):
    """A 3 mm piece through the middle of the head (30 x 30 x 20 voxels), for the slower methods
    and the background process."""
    return crop_node(sample_node, (54, 72, 50), (144, 162, 110), 3, "small crop")


@pytest.fixture
def fake_methods(monkeypatch):
    """The test doubles registered (and gone again after the test): {class name: instance}."""
    registry.all_methods()  # load the built-in methods first: registering into an empty registry would hide them
    fakes = {}
    for cls in test_slicer_fakes.ALL_FAKES:
        method = cls()
        monkeypatch.setitem(registry._METHODS, method.info.name, method)
        fakes[cls.__name__] = method
    return fakes


def registered(name: str) -> None:
    """Fail (never skip) when a method a test relies on is gone: a rename must not hide the test."""
    if name not in {m.info.name for m in registry.all_methods()}:
        pytest.fail(f"registry has no method '{name}': renamed or removed? update the test")
