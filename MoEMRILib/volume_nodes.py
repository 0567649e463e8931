"""Volume nodes <-> `moemri.volume.Volume`, and the checks an input node must pass.

Slicer keeps a volume's geometry as spacing, origin and IJK-to-RAS directions; `Volume` keeps the
same three in LPS (ITK's convention). RAS and LPS differ by the sign of the first two physical
axes, so the conversion only flips signs: no matrix is inverted or re-normalised, and a
node -> Volume -> node round trip gives back the IJK-to-RAS matrix bit for bit.
"""
from __future__ import annotations

import logging

import numpy as np
import vtk

import slicer
from moemri.errors import InputError
from moemri.volume import Volume

log = logging.getLogger(__name__)

# RAS <-> LPS: negate the first two physical axes (the same matrix both ways).
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _describe(node) -> str:
    return f"'{node.GetName()}'" if node is not None and node.GetName() else "the selected volume"


def volume_from_node(node) -> Volume:
    """The node's voxels (copied: never a view into the node) and its geometry in LPS."""
    if node is None or node.GetImageData() is None:
        raise InputError(f"{_describe(node)} has no image data")
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)  # (k, j, i) = (z, y, x)
    return volume_from_node_geometry(node, array)


def volume_view_from_node(node) -> Volume:
    """The node's geometry with a read-only view of its voxels (no copy): for a quick look at
    the input, such as a method's `describe_selection`, never for processing."""
    view = slicer.util.arrayFromVolume(node).view()
    view.flags.writeable = False
    return volume_from_node_geometry(node, view)


def volume_from_node_geometry(node, array) -> Volume:
    directions = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(directions)
    direction_ras = np.array([[directions.GetElement(r, c) for c in range(3)] for r in range(3)])
    return Volume(
        array=array,
        spacing=tuple(node.GetSpacing()),
        origin=tuple(_RAS_TO_LPS @ np.array(node.GetOrigin())),
        direction=_RAS_TO_LPS @ direction_ras,
        name=node.GetName() or "",
    )


def ijk_to_ras_matrix(volume: Volume) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a volume's grid (what Slicer's GetIJKToRASMatrix returns)."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ volume.ijk_to_lps()


def set_node_geometry(node, volume: Volume) -> None:
    """Give the node the volume's grid: spacing, origin of voxel 0 and axis directions, in RAS."""
    directions = vtk.vtkMatrix4x4()
    direction_ras = _RAS_TO_LPS @ np.asarray(volume.direction, dtype=float)
    for r in range(3):
        for c in range(3):
            directions.SetElement(r, c, float(direction_ras[r, c]))
    node.SetIJKToRASDirectionMatrix(directions)
    node.SetSpacing(*(float(s) for s in volume.spacing))
    node.SetOrigin(*(float(o) for o in _RAS_TO_LPS @ np.asarray(volume.origin, dtype=float)))


def update_node_from_volume(node, volume: Volume) -> None:
    """Write the volume's voxels and grid into a scalar or label map volume node.

    The grid may differ from the node's current one (a super-resolution output has more voxels).
    """
    if volume.array.ndim != 3:
        raise InputError(f"cannot write a {volume.array.ndim}-D array into volume node {_describe(node)}")
    array = volume.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype in (np.int64, np.uint64):
        # updateVolumeFromArray refuses 64-bit integers ("long long" does not display).
        fits = array.size == 0 or (array.min() >= np.iinfo(np.int32).min and array.max() <= np.iinfo(np.int32).max)
        array = array.astype(np.int32 if fits else np.float64)
    was_modifying = node.StartModify()
    try:
        set_node_geometry(node, volume)
        slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    finally:
        node.EndModify(was_modifying)


def _sequence_proxy_owner(node):
    """The sequence browser that shows `node` as one frame of a 4-D sequence, else None."""
    scene = node.GetScene()
    if scene is None:
        return None
    browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
    for index in range(browsers.GetNumberOfItems()):
        browser = browsers.GetItemAsObject(index)
        if browser.IsProxyNodeID(node.GetID()):
            return browser
    return None


def input_node_problem(node) -> str | None:
    """Why `node` cannot be processed, from its type alone (cheap: no voxels are read), or None.

    Refused: no node, label maps, vector/RGB, tensor and diffusion volumes, multi-volumes, frames
    of 4-D sequences and nodes without image data.
    """
    if node is None:
        return "no input volume is selected"
    name = _describe(node)
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        return f"{name} is a label map (a segmentation), not an MR image; select the grey-level image instead"
    if node.IsA("vtkMRMLVectorVolumeNode"):
        return f"{name} is a vector or RGB volume (several values per voxel); a scalar grey-level MR image is needed"
    if node.IsA("vtkMRMLTensorVolumeNode"):
        # Diffusion-weighted and tensor volumes: several values per voxel by construction.
        kind = node.GetClassName().replace("vtkMRML", "").replace("Node", "")
        return f"{name} is a {kind} (several values per voxel); a scalar grey-level MR image is needed"
    if node.IsA("vtkMRMLMultiVolumeNode") or node.GetAttribute("MultiVolume.NumberOfFrames"):
        return f"{name} is a multi-volume (several 3-D frames); pick one frame as a scalar volume first"
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        return f"{name} is a {node.GetClassName()}, not a scalar volume"
    image = node.GetImageData()
    if image is None:
        return f"{name} has no image data (is it still loading?)"
    components = image.GetNumberOfScalarComponents()
    if components != 1:
        return f"{name} has {components} values per voxel; a scalar grey-level MR image is needed"
    browser = _sequence_proxy_owner(node)
    if browser is not None:
        return (
            f"{name} is one frame of the 4-D sequence shown by '{browser.GetName()}'; "
            "save the frame to process as its own volume (Sequences module) and select that"
        )
    return None


def check_input_node(node) -> Volume:
    """Refuse what the methods cannot process; return the node's voxels and geometry as a Volume.

    After the node checks of `input_node_problem`, `moemri.io.validate_volume` refuses empty,
    single-slice, constant, NaN-holding and label-like images with its own messages.
    """
    problem = input_node_problem(node)
    if problem:
        raise InputError(problem)
    volume = volume_from_node(node)
    validate = _validator()
    if validate is not None:
        checked = validate(volume, source=f"Volume {_describe(node)}")
        volume = getattr(checked, "volume", volume)
        for warning in getattr(checked, "warnings", ()):
            log.warning(warning)
    return volume


def _validator():
    try:
        from moemri import io
    except ImportError:  # SimpleITK missing: the node checks above still hold
        return None
    return getattr(io, "validate_volume", None)
