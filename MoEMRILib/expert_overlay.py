"""The expert map as a Slicer label map: which expert handled each voxel, with a named legend.

A mixture-of-experts method returns `MethodResult.expert_map` (integer labels on the output grid)
and `MethodResult.experts` (label, name, colour). Here the labels become a
vtkMRMLLabelMapVolumeNode and the names and colours a user colour table, so Slicer's Data Probe
and the Colors module show the expert's name under the mouse.
"""
from __future__ import annotations

import numpy as np

import slicer
from moemri.errors import InputError
from moemri.methods.base import Expert, MethodResult

from .volume_nodes import update_node_from_volume

# Marks the colour tables this package made, so a rerun refills its own table instead of adding
# one more to the scene (and never overwrites a table the user chose).
COLOR_TABLE_ATTRIBUTE = "MoEMRI.expertColors"
BACKGROUND_NAME = "background"


def make_expert_color_table(experts: list[Expert], name: str, colorNode=None, scene=None):
    """A user colour table: label 0 "background" (transparent), then one named colour per expert.

    Fills `colorNode` if given, else adds a new vtkMRMLColorTableNode to `scene` (default: the
    Slicer scene). Labels that no expert uses stay unnamed and transparent.
    """
    labels = [e.label for e in experts]
    if any(label <= 0 for label in labels):
        raise InputError("expert labels start at 1; 0 is the background")
    if len(set(labels)) != len(labels):
        raise InputError(f"expert labels repeat: {labels}")
    if colorNode is None:
        scene = scene if scene is not None else slicer.mrmlScene
        colorNode = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    else:
        colorNode.SetName(name)
    was_modifying = colorNode.StartModify()
    try:
        colorNode.SetTypeToUser()
        colorNode.SetNumberOfColors(max(labels, default=0) + 1)
        # Unused labels stay unnamed and transparent (SetNamesInitialised/GetNoName are
        # deprecated no-ops in Slicer 5.11+ that log an error).
        for index in range(colorNode.GetNumberOfColors()):
            colorNode.SetColor(index, "", 0.0, 0.0, 0.0, 0.0)
        colorNode.SetColor(0, BACKGROUND_NAME, 0.0, 0.0, 0.0, 0.0)
        for expert in experts:
            r, g, b = (channel / 255.0 for channel in expert.color)
            colorNode.SetColor(expert.label, expert.name, r, g, b, 1.0)
        colorNode.SetAttribute(COLOR_TABLE_ATTRIBUTE, "1")
    finally:
        colorNode.EndModify(was_modifying)
    return colorNode


def show_expert_map(result: MethodResult, labelNode, colorNode=None):
    """Write `result.expert_map` into `labelNode` (geometry included) and colour it by expert.

    Without `colorNode`, the table already on the label node is refilled if this package made
    it, else a new one is made. Returns the colour node used.
    """
    if result.expert_map is None:
        raise InputError("this method produced no expert map (classical methods have a single expert)")
    if not labelNode.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"the expert map goes into a label map volume, not a {labelNode.GetClassName()}")
    labels = np.asarray(result.expert_map.array)
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.int16).max):
        raise InputError(f"expert labels out of range: {labels.min()}..{labels.max()}")
    update_node_from_volume(labelNode, result.expert_map.with_array(labels.astype(np.int16)))
    if labelNode.GetDisplayNode() is None:
        labelNode.CreateDefaultDisplayNodes()
    displayNode = labelNode.GetDisplayNode()
    if colorNode is None:
        current = displayNode.GetColorNode() if displayNode is not None else None
        reusable = current is not None and current.GetAttribute(COLOR_TABLE_ATTRIBUTE) == "1"
        colorNode = make_expert_color_table(
            result.experts,
            f"{labelNode.GetName()} colours",
            colorNode=current if reusable else None,
            scene=labelNode.GetScene(),
        )
    if displayNode is not None:
        displayNode.SetAndObserveColorNodeID(colorNode.GetID())
    return colorNode


def expert_legend(result: MethodResult) -> list[tuple[int, str, tuple[int, int, int], str, float]]:
    """(label, name, rgb 0-255, description, share of labelled voxels) per expert, in label order."""
    shares = result.expert_shares()
    return [
        (e.label, e.name, tuple(e.color), e.description, shares.get(e.label, 0.0))
        for e in sorted(result.experts, key=lambda e: e.label)
    ]



def legend_from_nodes(labelNode) -> list[tuple[int, str, tuple[int, int, int], float]]:
    """(label, name, rgb 0-255, share of labelled voxels) per named label of the expert map's
    colour table: the legend read back from the scene (after a reload there is no MethodResult)."""
    if labelNode is None or labelNode.GetImageData() is None:
        return []
    display = labelNode.GetDisplayNode()
    colorNode = display.GetColorNode() if display is not None else None
    if colorNode is None:
        return []
    labels = np.asarray(slicer.util.arrayFromVolume(labelNode))
    counts = np.bincount(labels[labels > 0].ravel().astype(np.int64), minlength=colorNode.GetNumberOfColors())
    total = max(int(counts.sum()), 1)
    rows = []
    rgba = [0.0] * 4
    for label in range(1, colorNode.GetNumberOfColors()):
        name = colorNode.GetColorName(label)
        if not name or name == "(none)":
            continue
        colorNode.GetColor(label, rgba)
        rgb = tuple(int(round(255 * c)) for c in rgba[:3])
        rows.append((label, name, rgb, float(counts[label]) / total))
    return rows
