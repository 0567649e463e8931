"""Before/after views: side-by-side slice views that move together, a fade between input and
result, and the expert overlays (label map or one expert's probability map).

Pure MRML (layout node, slice and slice composite nodes), so it runs on PyPI's `slicer-core` as
well as in Slicer. In Slicer the application's layout manager makes one slice composite node per
slice view; `slicer-core` has no layout manager, so there the composite nodes exist only where a
vtkMRMLSliceLogic was made for each slice node (the tests do that). Rendering, fitting the views
(`slicer.util.resetSliceViews`) and the sliders themselves need the application and live in the
panel.
"""
from __future__ import annotations

import slicer

SIDE_BY_SIDE_LAYOUT = slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
# The side-by-side layout shows these two views, left and right.
BEFORE_VIEW = "Red"
AFTER_VIEW = "Yellow"


def set_compare_layout(layoutNode, arrangement: int = SIDE_BY_SIDE_LAYOUT) -> int:
    """Switch the layout (side by side by default); returns the previous arrangement to restore."""
    previous = layoutNode.GetViewArrangement()
    layoutNode.SetViewArrangement(arrangement)
    return previous


def slice_composite_nodes(scene) -> dict[str, object]:
    """The scene's slice composite nodes by view name ("Red", "Yellow", "Green", ...)."""
    return _by_layout_name(scene, "vtkMRMLSliceCompositeNode")


def slice_nodes(scene) -> dict[str, object]:
    """The scene's slice nodes (orientation, field of view, position) by view name."""
    return _by_layout_name(scene, "vtkMRMLSliceNode")


def link_slice_views(scene, linked: bool = True) -> list:
    """Link (or unlink) all slice views, so panning, zooming and scrolling move them together;
    hot-linked, so the other view follows during the drag rather than after it."""
    composites = list(slice_composite_nodes(scene).values())
    for node in composites:
        node.SetLinkedControl(1 if linked else 0)
        node.SetHotLinkedControl(1 if linked else 0)
    return composites


def match_slice_views(scene, source: str = BEFORE_VIEW, target: str = AFTER_VIEW) -> bool:
    """Give `target` the orientation, slice position, zoom and pan of `source`.

    Linking only passes on later interaction; the views must start equal (in the conventional
    layout the yellow view is sagittal). Returns False if either view does not exist.
    """
    nodes = slice_nodes(scene)
    if source not in nodes or target not in nodes:
        return False
    src, dst = nodes[source], nodes[target]
    was_modifying = dst.StartModify()
    try:
        dst.GetSliceToRAS().DeepCopy(src.GetSliceToRAS())
        dst.SetFieldOfView(*src.GetFieldOfView())
        dst.SetXYZOrigin(*src.GetXYZOrigin())
        dst.UpdateMatrices()
    finally:
        dst.EndModify(was_modifying)
    return True


def show_before_after(scene, inputNode, resultNode, fade: float = 1.0, side_by_side: bool = True) -> None:
    """Input in the left view; in the right view the input under the result at `fade` opacity
    (1 shows the result, 0 the input: the fade slider works in that one view); linked views.

    Without `side_by_side`, every view shows the fade. Layers are set before linking: a linked
    view copies layer changes made while the user interacts, not those made here.
    """
    fade = _opacity(fade)
    input_id = inputNode.GetID() if inputNode is not None else None
    result_id = resultNode.GetID() if resultNode is not None else None
    for name, node in slice_composite_nodes(scene).items():
        node.SetBackgroundVolumeID(input_id)
        if side_by_side and name == BEFORE_VIEW:
            node.SetForegroundVolumeID(None)
        else:
            node.SetForegroundVolumeID(result_id)
            node.SetForegroundOpacity(fade)
    if side_by_side:
        match_slice_views(scene)
    link_slice_views(scene, True)


def set_fade(scene, opacity: float) -> None:
    """Foreground opacity in every view that shows a foreground: 0 = before, 1 = after."""
    opacity = _opacity(opacity)
    for node in slice_composite_nodes(scene).values():
        if node.GetForegroundVolumeID():
            node.SetForegroundOpacity(opacity)


def set_label_layer(scene, labelNode, opacity: float = 0.5) -> None:
    """Show a label map (the expert map) over every slice view, or hide it with `labelNode=None`."""
    label_id = labelNode.GetID() if labelNode is not None else None
    for node in slice_composite_nodes(scene).values():
        node.SetLabelVolumeID(label_id)
        node.SetLabelOpacity(_opacity(opacity))


def show_probability_overlay(scene, resultNode, probabilityNode, opacity: float = 0.5) -> None:
    """One expert's probability map as a coloured foreground over the result in every view
    (instead of the expert label map, which is hidden)."""
    result_id = resultNode.GetID() if resultNode is not None else None
    probability_id = probabilityNode.GetID() if probabilityNode is not None else None
    for node in slice_composite_nodes(scene).values():
        node.SetBackgroundVolumeID(result_id)
        node.SetForegroundVolumeID(probability_id)
        node.SetForegroundOpacity(_opacity(opacity))
        node.SetLabelVolumeID(None)


def _by_layout_name(scene, class_name: str) -> dict[str, object]:
    nodes = scene.GetNodesByClass(class_name)
    found = {}
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        found[node.GetLayoutName() or node.GetID()] = node
    return found


def _opacity(value: float) -> float:
    return min(1.0, max(0.0, float(value)))
