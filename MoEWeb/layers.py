"""What each view shows: the input alone before a run; after it, the input on the left and, on the
right, the input under the result at the fade opacity, with the expert map as a label layer.
The layer work is MoEMRILib.compare_views'; the label layer is set on each view's slice composite
node because trame-slicer has no helper for it.
"""
from __future__ import annotations

import numpy as np

from MoEMRILib import compare_views
from MoEMRILib.expert_overlay import expert_legend

from .views import AFTER

# Grey levels of both views from the input's 0.5th..99.5th percentile: the same window on input
# and result, so a change in brightness is the method's, not the display's.
WINDOW_PERCENTILES = (0.5, 99.5)
EXPERT_VIEWS = ("result", "both")


def show_input(scene, input_node) -> None:
    """Before a run (or when the input changed): the input in both views, nothing over it."""
    input_id = input_node.GetID() if input_node is not None else None
    for node in compare_views.slice_composite_nodes(scene).values():
        node.SetBackgroundVolumeID(input_id)
        node.SetForegroundVolumeID(None)
        node.SetLabelVolumeID(None)


def show_result(scene, input_node, result_node, fade: float) -> None:
    """Input | input under the result at `fade` (0 = input, 1 = result), views matched and linked."""
    compare_views.show_before_after(scene, input_node, result_node, fade=fade, side_by_side=True)


def set_fade(scene, fade: float) -> None:
    compare_views.set_fade(scene, fade)


def set_expert_layer(scene, label_node, opacity: float, where: str = "result") -> None:
    """The expert map over the result view (`where="result"`) or both views; None hides it."""
    if where not in EXPERT_VIEWS:
        raise ValueError(f"the expert map goes over one of {EXPERT_VIEWS}, not {where!r}")
    label_id = label_node.GetID() if label_node is not None else None
    opacity = min(1.0, max(0.0, float(opacity)))
    for name, node in compare_views.slice_composite_nodes(scene).items():
        shown = label_id if (where == "both" or name == AFTER) else None
        node.SetLabelVolumeID(shown)
        node.SetLabelOpacity(opacity)


def grey_display(reference_volume, nodes) -> tuple[float, float]:
    """Give every node's display the grey window of `reference_volume` (the input), and show the
    voxels as they are, without the viewer's interpolation: otherwise the slice view's own linear
    reslicing smooths thick slices and hides what a super-resolution method changed. Returns the
    window (min, max)."""
    array = np.asarray(reference_volume.array, dtype=np.float32)
    low, high = (float(v) for v in np.percentile(array, WINDOW_PERCENTILES))
    if high <= low:
        high = low + 1.0
    for node in nodes:
        if node is None:
            continue
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(low, high)
        display.SetInterpolate(0)
    return low, high


def legend_rows(result) -> list[dict]:
    """One row per expert: label, name, colour (hex and 0-255 RGB), description, share of voxels."""
    rows = []
    for label, name, rgb, description, share in expert_legend(result):
        rows.append({
            "label": int(label), "name": str(name), "rgb": [int(c) for c in rgb],
            "color": "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb)),
            "description": str(description), "share": float(share), "percent": f"{100.0 * share:.1f} %",
        })
    return rows
