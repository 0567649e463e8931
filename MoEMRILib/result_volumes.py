"""A result's further volumes in the scene, beside the output and its expert map: the per-expert
difference maps (`MethodResult.expert_differences`, what each expert changes, as scalar volumes
on a diverging colour map) and further label maps (`MethodResult.label_maps`, e.g. N-SMoE's
kernel orientation, as label map nodes with their own named colour tables).

Each kind hangs off the output node by a node reference, so a rerun into the same output refills
its nodes instead of adding more, and drops those the new run no longer makes.
"""
from __future__ import annotations

import numpy as np

from moemri.methods.base import MethodResult

from .expert_overlay import show_expert_map
from .expert_probabilities import probability_nodes
from .volume_nodes import update_node_from_volume

DIFFERENCE_REFERENCE = "MoEMRIExpertDifference"  # output node -> difference nodes, in expert order
LABEL_MAP_REFERENCE = "MoEMRILabelMap"  # output node -> further label map nodes
KEY_ATTRIBUTE = "MoEMRI.resultVolume"  # which difference (expert label) or label map (name) a node holds


def show_expert_differences(result: MethodResult, outputNode) -> dict[int, object]:
    """One scalar volume per expert: {expert label: node}. Symmetric window around 0, so that
    what an expert adds and what it removes look equally strong."""
    wanted = {str(expert.label): (expert, volume) for expert, volume in zip(result.experts, result.expert_differences or [])}
    nodes = _refill(outputNode, DIFFERENCE_REFERENCE, wanted, "vtkMRMLScalarVolumeNode",
                    lambda item: f"{outputNode.GetName()} {item[0].name} difference")
    for key, node in nodes.items():
        volume = wanted[key][1]
        array = np.asarray(volume.array, dtype=np.float32)
        update_node_from_volume(node, volume.with_array(array))
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeFileDivergingBlueRed.txt")
        display.AutoWindowLevelOff()
        reach = float(np.percentile(np.abs(array), 99.5)) if array.size else 0.0
        display.SetWindowLevelMinMax(-max(reach, 1e-6), max(reach, 1e-6))
    return {int(key): node for key, node in nodes.items()}


def show_label_maps(result: MethodResult, outputNode) -> dict[str, object]:
    """One label map node per `result.label_maps` entry, coloured and named by its legend:
    {name: node}."""
    wanted = {m.name: m for m in result.label_maps}
    nodes = _refill(outputNode, LABEL_MAP_REFERENCE, wanted, "vtkMRMLLabelMapVolumeNode",
                    lambda m: f"{outputNode.GetName()} {m.title}")
    for name, node in nodes.items():
        label_map = wanted[name]
        show_expert_map(MethodResult(result.image, expert_map=label_map.volume, experts=label_map.labels), node)
    return nodes


def result_volume_nodes(outputNode, reference: str) -> dict[str, object]:
    """The nodes of one kind (DIFFERENCE_REFERENCE or LABEL_MAP_REFERENCE) a run attached to
    `outputNode`, by key (also after a scene reload)."""
    nodes = {}
    if outputNode is None:
        return nodes
    for index in range(outputNode.GetNumberOfNodeReferences(reference)):
        node = outputNode.GetNthNodeReference(reference, index)
        key = node.GetAttribute(KEY_ATTRIBUTE) if node is not None else None
        if key is not None:
            nodes[key] = node
    return nodes


def _refill(outputNode, reference: str, wanted: dict, node_class: str, name_of) -> dict[str, object]:
    scene = outputNode.GetScene()
    previous = result_volume_nodes(outputNode, reference)
    nodes = {}
    for key, item in wanted.items():
        node = previous.pop(key, None)
        if node is None:
            node = scene.AddNewNodeByClass(node_class, scene.GenerateUniqueName(name_of(item)))
            node.SetAttribute(KEY_ATTRIBUTE, key)
        node.SetAndObserveTransformNodeID(outputNode.GetTransformNodeID())
        nodes[key] = node
    for stale in previous.values():  # what the new run does not make
        scene.RemoveNode(stale)
    outputNode.RemoveNodeReferenceIDs(reference)
    for index, node in enumerate(nodes.values()):
        outputNode.SetNthNodeReferenceID(reference, index, node.GetID())
    return nodes


LABEL_OVERLAY = ""  # the overlay key of the expert label map


def overlay_choices(outputNode, expertMapNode) -> list[tuple[str, str, object, str]]:
    """What the panel's overlay picker offers for one result, in order: (text, key, node, layer),
    layer "label" (shown as the label layer) or "foreground" (a scalar map over the result).
    Keys, kept in the parameter node: "" the expert map, "<label>" an expert's probability,
    "difference:<label>" what that expert changes, "labels:<name>" a further label map."""
    choices = []
    if expertMapNode is not None:
        choices.append(("Expert map (which expert, per voxel)", LABEL_OVERLAY, expertMapNode, "label"))
    for label, node in probability_nodes(outputNode).items():
        choices.append((f"Probability: {node.GetName()}", str(label), node, "foreground"))
    for key, node in result_volume_nodes(outputNode, DIFFERENCE_REFERENCE).items():
        choices.append((f"Difference: {node.GetName()}", f"difference:{key}", node, "foreground"))
    for key, node in result_volume_nodes(outputNode, LABEL_MAP_REFERENCE).items():
        choices.append((f"Labels: {node.GetName()}", f"labels:{key}", node, "label"))
    return choices
