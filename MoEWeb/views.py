"""The two linked slice views, input | result, rendered offscreen by trame-slicer.

The views are named as MoEMRILib.compare_views expects ("Red" left, "Yellow" right), so its
helpers set their layers, match their geometry and link them. Linked, a scroll, zoom or pan in
one view moves the other (Slicer's slice link logic, inside the application logic).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, SliceView, ViewLayoutDefinition
from vtkmodules.vtkCommonCore import vtkCommand

from MoEMRILib import compare_views

BEFORE = compare_views.BEFORE_VIEW
AFTER = compare_views.AFTER_VIEW
VIEW_NAMES = (BEFORE, AFTER)
ORIENTATIONS = ("Axial", "Coronal", "Sagittal")
LAYOUT_ID = "input-result"
RESIZE_SETTLE_S = 0.15
_COLORS = {BEFORE: "#F34A33", AFTER: "#EFD64D"}


def compare_layout(orientation: str = "Axial") -> Layout:
    """Input on the left, result on the right, same orientation."""
    return Layout(LayoutDirection.Horizontal,
                  [ViewLayoutDefinition.slice_view(orientation, label=name, color=_COLORS[name]) for name in VIEW_NAMES])


class CompareViews:
    """Creates the two views in the trame server and keeps them alike."""

    def __init__(self, server, slicer_app: SlicerApp, view_ui: Callable, rca_encoder: str | None = None):
        self.server = server
        self.slicer_app = slicer_app
        self.scene = slicer_app.scene
        register_rca_factories(slicer_app.view_manager, server, slice_view_ui_f=view_ui, rca_encoder=rca_encoder)
        self.layout_manager = LayoutManager(self.scene, slicer_app.view_manager, server)
        self.layout_manager.register_layout(LAYOUT_ID, compare_layout())
        self.layout_manager.set_layout(LAYOUT_ID)
        compare_views.link_slice_views(self.scene, True)
        self._fit_handle = None
        self._after_fit: list[Callable[[], None]] = []
        for view in self.views().values():
            view.interactor().AddObserver(vtkCommand.WindowResizeEvent, self._on_resize)

    def view(self, name: str) -> SliceView:
        return self.slicer_app.view_manager.get_view(name)

    def views(self) -> dict[str, SliceView]:
        return {name: self.view(name) for name in VIEW_NAMES}

    def on_modified(self, callback: Callable[[], None]) -> None:
        """Call `callback()` whenever either view's slice moves (scroll, zoom, pan, orientation)."""
        for view in self.views().values():
            view.modified.connect(lambda *_: callback())

    def on_fit(self, callback: Callable[[], None]) -> None:
        """Call `callback()` after each fit that follows a resize of the views in the browser."""
        self._after_fit.append(callback)

    def _on_resize(self, *_):
        # The browser sizes the views after the page loads (and whenever the window changes);
        # fit again once both views have their new size, so the head fills them.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._fit_handle is not None:
            self._fit_handle.cancel()
        self._fit_handle = loop.call_later(RESIZE_SETTLE_S, self._fit_after_resize)

    def _fit_after_resize(self) -> None:
        self._fit_handle = None
        self.fit()
        for callback in self._after_fit:
            callback()

    def orientation(self) -> str:
        return self.view(BEFORE).get_orientation()

    def set_orientation(self, orientation: str) -> None:
        if orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, not {orientation!r}")
        for view in self.views().values():
            view.set_orientation(orientation)
        self.fit()

    def fit(self) -> None:
        """Fit the input view to its background volume and give the result view the same slice,
        zoom and pan."""
        before = self.view(BEFORE)
        before.fit_view_to_content()
        self.view(AFTER).fit_view_to_content()
        compare_views.match_slice_views(self.scene, BEFORE, AFTER)
        self.render()

    def render(self) -> None:
        for view in self.views().values():
            view.schedule_render()

    def slice_offsets(self) -> dict[str, float]:
        return {name: float(view.get_slice_value()) for name, view in self.views().items()}

    def slice_range(self) -> tuple[float, float, float]:
        """(min, max, step) of the input view's slice offset in mm."""
        view = self.view(BEFORE)
        low, high = view.get_slice_range()
        return float(low), float(high), float(view.get_slice_step())

    def set_slice_offset(self, offset: float) -> None:
        """Move the input view to `offset` mm as an interaction, so the link moves the result view."""
        logic = self.slicer_app.app_logic.GetSliceLogicByLayoutName(BEFORE)
        logic.StartSliceOffsetInteraction()
        logic.SetSliceOffset(float(offset))
        logic.EndSliceOffsetInteraction()
        after = self.view(AFTER)
        if abs(after.get_slice_value() - offset) > 1e-6:  # a view made before linking: follow anyway
            after.set_slice_value(float(offset))
        self.render()
