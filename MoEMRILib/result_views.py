"""The Result section of the panel: legend, overlay picker, overlay and fade sliders, compare.
Needs qt and the Slicer application; the MRML work is in expert_overlay, expert_probabilities
and compare_views.

Everything is read from the parameter node and the result nodes (the expert map's colour table,
the output node's references), so the section looks the same after a saved scene is reloaded.
"""
from __future__ import annotations

import qt

import slicer

from . import compare_views
from .expert_overlay import legend_from_nodes
from .result_volumes import overlay_choices


class ResultViews:
    def __init__(self, ui):
        self.ui = ui
        self.parameterNode = None
        self._legendKey = None
        self._overlaysKey = None
        self._updating = False
        self._layoutBefore = None  # the arrangement Compare replaced, restored by a second press or on leaving
        ui.overlayComboBox.connect("currentIndexChanged(int)", self.onOverlayChanged)
        ui.showExpertMapCheckBox.connect("toggled(bool)", self.showOverlay)
        ui.expertMapOpacitySliderWidget.connect("valueChanged(double)", self.showOverlay)
        ui.fadeSliderWidget.connect("valueChanged(double)", self.onFade)
        ui.compareButton.connect("clicked(bool)", self.onCompare)
        table = ui.expertLegendTable
        table.horizontalHeader().setStretchLastSection(True)
        table.verticalHeader().hide()

    def setParameterNode(self, parameterNode) -> None:
        self.parameterNode = parameterNode
        self._legendKey = self._overlaysKey = None
        self.update()

    def update(self) -> None:
        """Refresh the legend and the overlay picker when the result nodes changed."""
        pn = self.parameterNode
        if pn is None or self._updating:
            return
        labelNode = pn.expertMapVolume
        legendKey = (labelNode.GetID(), labelNode.GetImageData().GetMTime()) if labelNode is not None and labelNode.GetImageData() else None
        if legendKey != self._legendKey:  # counting voxels is not free: only when the map changed
            self._legendKey = legendKey
            self.fillLegend(legend_from_nodes(labelNode) if legendKey else [])
        choices = overlay_choices(pn.outputVolume, labelNode)
        overlaysKey = tuple((key, node.GetID()) for _, key, node, _ in choices)
        if overlaysKey != self._overlaysKey:
            self._overlaysKey = overlaysKey
            self.fillOverlays(choices)
        hasOverlay = self.ui.overlayComboBox.count > 0
        self.ui.showExpertMapCheckBox.enabled = hasOverlay
        self.ui.expertMapOpacitySliderWidget.enabled = hasOverlay
        self.ui.overlayComboBox.enabled = self.ui.overlayComboBox.count > 1
        self.ui.compareButton.enabled = pn.inputVolume is not None and pn.outputVolume is not None

    def fillLegend(self, rows) -> None:
        table = self.ui.expertLegendTable
        table.setRowCount(len(rows))
        for row, (label, name, rgb, share) in enumerate(rows):
            swatch = qt.QTableWidgetItem()
            swatch.setBackground(qt.QBrush(qt.QColor(*rgb)))
            swatch.setToolTip(f"label {label}")
            table.setItem(row, 0, swatch)
            table.setItem(row, 1, qt.QTableWidgetItem(name))
            table.setItem(row, 2, qt.QTableWidgetItem(f"{100 * share:.1f} %"))
        table.visible = bool(rows)

    def fillOverlays(self, choices) -> None:
        combo = self.ui.overlayComboBox
        self._updating = True
        try:
            combo.clear()
            for text, key, _, _ in choices:
                combo.addItem(text, key)
            index = combo.findData(self.parameterNode.overlay)
            combo.currentIndex = index if index >= 0 else 0
        finally:
            self._updating = False

    # Views ---------------------------------------------------------------------------------

    def onOverlayChanged(self, index: int) -> None:
        if self._updating or self.parameterNode is None or index < 0:
            return
        self.parameterNode.overlay = self.ui.overlayComboBox.itemData(index)
        self.showOverlay()

    def showOverlay(self, *unused) -> None:
        """The picked overlay (a label map, or a probability or difference map over the result), or
        none when unticked."""
        pn = self.parameterNode
        if pn is None:
            return
        scene = slicer.mrmlScene
        show = self.ui.showExpertMapCheckBox.checked
        opacity = self.ui.expertMapOpacitySliderWidget.value
        choices = overlay_choices(pn.outputVolume, pn.expertMapVolume)
        picked = next(((node, layer) for _, key, node, layer in choices if key == pn.overlay), (None, None))
        if picked[1] == "foreground" and show:
            compare_views.show_probability_overlay(scene, pn.outputVolume, picked[0], opacity)
            return
        if picked[1] == "foreground" or self._showsScalarOverlay(choices):
            # Back from a scalar overlay: input under the result again.
            compare_views.show_before_after(scene, pn.inputVolume, pn.outputVolume, fade=pn.fade, side_by_side=False)
        labelNode = picked[0] if picked[1] == "label" else pn.expertMapVolume
        if labelNode is not None:  # without one, a label map the user shows is left alone
            compare_views.set_label_layer(scene, labelNode if show else None, opacity)

    def _showsScalarOverlay(self, choices) -> bool:
        ids = {node.GetID() for _, _, node, layer in choices if layer == "foreground"}
        return any(c.GetForegroundVolumeID() in ids for c in compare_views.slice_composite_nodes(slicer.mrmlScene).values())

    def showResult(self) -> None:
        """After a run: input under the result at the fade opacity, views fitted, overlay on top."""
        pn = self.parameterNode
        slicer.util.setSliceViewerLayers(background=pn.inputVolume, foreground=pn.outputVolume, foregroundOpacity=pn.fade, fit=True)
        self.update()
        self.showOverlay()

    def onFade(self, value: float) -> None:
        compare_views.set_fade(slicer.mrmlScene, value)

    def onCompare(self, *unused) -> None:
        pn = self.parameterNode
        if pn is None or pn.inputVolume is None or pn.outputVolume is None:
            slicer.util.errorDisplay("Run the method first: there is no result to compare yet.")
            return
        if self._layoutBefore is not None and self.restoreLayout():
            return  # a second press: back to the layout the user had
        self._layoutBefore = compare_views.set_compare_layout(_layoutNode())
        self.ui.compareButton.text = "Restore layout"
        pn.fade = 1.0  # the right view starts on the result; the slider fades it back to the input
        compare_views.show_before_after(slicer.mrmlScene, pn.inputVolume, pn.outputVolume, fade=pn.fade)
        slicer.util.resetSliceViews()
        compare_views.match_slice_views(slicer.mrmlScene)  # fitting may differ per view: start equal
        if self.ui.showExpertMapCheckBox.checked and pn.expertMapVolume is not None:
            compare_views.set_label_layer(slicer.mrmlScene, pn.expertMapVolume, self.ui.expertMapOpacitySliderWidget.value)

    def restoreLayout(self) -> bool:
        """Give back the layout Compare replaced, unless the user has changed it since; True if
        it was restored."""
        before, self._layoutBefore = self._layoutBefore, None
        self.ui.compareButton.text = "Compare before/after"
        if before is None:
            return False
        layoutNode = _layoutNode()
        if layoutNode is None or layoutNode.GetViewArrangement() != compare_views.SIDE_BY_SIDE_LAYOUT:
            return False
        layoutNode.SetViewArrangement(before)
        return True

    def forgetLayout(self) -> None:
        """The scene is closing: its layout is the application's again."""
        self._layoutBefore = None
        self.ui.compareButton.text = "Compare before/after"


def _layoutNode():
    return slicer.app.layoutManager().layoutLogic().GetLayoutNode()
