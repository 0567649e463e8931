"""The gate's soft assignment as scalar volumes: one probability map per expert.

A method may return `MethodResult.expert_probabilities`, the gate's weight of every expert at
every voxel: a 4-D (expert, z, y, x) array on the output grid. Slicer shows 3-D scalar volumes, so
each expert's map becomes its own vtkMRMLScalarVolumeNode, coloured by a ramp from transparent to
the expert's legend colour: picked as the foreground layer, it shows where that expert dominates.

Both forms of the stack (a list of 3-D Volumes, or a 4-D array) are read by the core's
`moemri.methods.expert_probabilities.probability_volumes`.
"""
from __future__ import annotations

import numpy as np

from moemri.methods.base import Expert, MethodResult
from moemri.methods.expert_probabilities import probability_volumes

from .volume_nodes import update_node_from_volume

PROBABILITY_REFERENCE = "MoEMRIExpertProbability"  # output node -> probability nodes, in expert order
EXPERT_LABEL_ATTRIBUTE = "MoEMRI.expertLabel"
RAMP_COLOR_ATTRIBUTE = "MoEMRI.probabilityColors"
RAMP_STEPS = 256


def probability_color_table(expert: Expert, scene, colorNode=None):
    """A ramp from transparent black (p = 0) to the expert's colour, opaque (p = 1)."""
    if colorNode is None:
        colorNode = scene.AddNewNodeByClass("vtkMRMLColorTableNode", f"p({expert.name}) colours")
    was_modifying = colorNode.StartModify()
    try:
        colorNode.SetTypeToUser()
        colorNode.SetNumberOfColors(RAMP_STEPS)
        r, g, b = (channel / 255.0 for channel in expert.color)
        for index in range(RAMP_STEPS):
            p = index / (RAMP_STEPS - 1)
            # Opacity follows p, so voxels the expert barely touches leave the image below visible.
            colorNode.SetColor(index, f"{p:.2f}", p * r, p * g, p * b, p)
        colorNode.SetAttribute(RAMP_COLOR_ATTRIBUTE, "1")
    finally:
        colorNode.EndModify(was_modifying)
    return colorNode


def show_expert_probabilities(result: MethodResult, outputNode, labels=None) -> dict[int, object]:
    """Write each expert's probability map (or only those of `labels`) into a scalar volume node.

    Nodes made by an earlier run for the same output node are reused (found through the output
    node's references), so a rerun does not pile up volumes. Returns {expert label: node}.
    """
    volumes = probability_volumes(result)
    if not volumes:
        return {}
    scene = outputNode.GetScene()
    wanted = set(labels) if labels is not None else {e.label for e in result.experts}
    previous = _referenced_nodes(outputNode)
    nodes = {}
    for expert, volume in zip(result.experts, volumes):
        if expert.label not in wanted:
            continue
        node = previous.pop(expert.label, None)
        if node is None:
            name = scene.GenerateUniqueName(f"{outputNode.GetName()} p({expert.name})")
            node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        update_node_from_volume(node, volume.with_array(np.asarray(volume.array, dtype=np.float32)))
        node.SetAttribute(EXPERT_LABEL_ATTRIBUTE, str(expert.label))
        _show_as_probability(node, expert)
        nodes[expert.label] = node
    for stale in previous.values():  # experts the new run does not have
        scene.RemoveNode(stale)
    outputNode.RemoveNodeReferenceIDs(PROBABILITY_REFERENCE)
    for index, node in enumerate(nodes.values()):
        outputNode.SetNthNodeReferenceID(PROBABILITY_REFERENCE, index, node.GetID())
    return nodes


def probability_nodes(outputNode) -> dict[int, object]:
    """The probability nodes a run attached to `outputNode` (also after a scene reload)."""
    return _referenced_nodes(outputNode) if outputNode is not None else {}


def _referenced_nodes(outputNode) -> dict[int, object]:
    nodes = {}
    for index in range(outputNode.GetNumberOfNodeReferences(PROBABILITY_REFERENCE)):
        node = outputNode.GetNthNodeReference(PROBABILITY_REFERENCE, index)
        label = node.GetAttribute(EXPERT_LABEL_ATTRIBUTE) if node is not None else None
        if label is not None:
            nodes[int(label)] = node
    return nodes


def _show_as_probability(node, expert: Expert) -> None:
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    current = display.GetColorNode()
    reusable = current is not None and current.GetAttribute(RAMP_COLOR_ATTRIBUTE) == "1"
    colorNode = probability_color_table(expert, node.GetScene(), current if reusable else None)
    display.SetAndObserveColorNodeID(colorNode.GetID())
    # A fixed 0..1 window: automatic window/level would stretch a weak expert to look strong.
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
