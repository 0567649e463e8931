"""Before/after views: side-by-side slice views that move together, and a fade between layers.

Pure MRML (layout node, slice composite nodes), so it runs on PyPI's `slicer-core` as well as in
Slicer. In Slicer the application's layout manager makes one slice composite node per slice view;
`slicer-core` has no layout manager, so there the composite nodes exist only where a
vtkMRMLSliceLogic was made for each slice node (the tests do that). Rendering, fitting the views
(`slicer.util.resetSliceViews`) and the fade slider itself need the application and live in the
module widgets.
"""
from __future__ import annotations

import slicer

SIDE_BY_SIDE_LAYOUT = slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
# The side-by-side layout shows these two axial views, left and right.
BEFORE_VIEW = "Red"
AFTER_VIEW = "Yellow"


def set_compare_layout(layoutNode, arrangement: int = SIDE_BY_SIDE_LAYOUT) -> int:
    """Switch the layout (side by side by default); returns the previous arrangement to restore."""
    previous = layoutNode.GetViewArrangement()
    layoutNode.SetViewArrangement(arrangement)
    return previous


def slice_composite_nodes(scene) -> dict[str, object]:
    """The scene's slice composite nodes by view name ("Red", "Yellow", "Green", ...)."""
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    composites = {}
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        composites[node.GetLayoutName() or node.GetID()] = node
    return composites


def link_slice_views(scene, linked: bool = True) -> list:
    """Link (or unlink) all slice views, so panning, zooming and scrolling move them together."""
    composites = list(slice_composite_nodes(scene).values())
    for node in composites:
        node.SetLinkedControl(1 if linked else 0)
    return composites


def show_before_after(scene, inputNode, resultNode, fade: float = 0.5, side_by_side: bool = True) -> None:
    """Input as background and result as foreground at `fade` opacity, with linked views.

    With `side_by_side`, the left view shows only the input and the right view only the result
    (Slicer's compare idiom); the other views keep the fade. Layers are set before linking: a
    linked view copies layer changes made while the user interacts, not those made here.
    """
    fade = _opacity(fade)
    input_id = inputNode.GetID() if inputNode is not None else None
    result_id = resultNode.GetID() if resultNode is not None else None
    for name, node in slice_composite_nodes(scene).items():
        if side_by_side and name == BEFORE_VIEW:
            node.SetBackgroundVolumeID(input_id)
            node.SetForegroundVolumeID(None)
        elif side_by_side and name == AFTER_VIEW:
            node.SetBackgroundVolumeID(result_id)
            node.SetForegroundVolumeID(None)
        else:
            node.SetBackgroundVolumeID(input_id)
            node.SetForegroundVolumeID(result_id)
            node.SetForegroundOpacity(fade)
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


def _opacity(value: float) -> float:
    return min(1.0, max(0.0, float(value)))
