"""The page: controls in the drawer (input, task, method, experts, options, Run/Cancel, progress),
the two views with their titles, slice position and the fade, and under them the expert legend.
Every control is bound to a state name that app.py documents and handles.
"""
from __future__ import annotations

from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3

from .views import AFTER, ORIENTATIONS

_OVERLAY_TEXT = "color: #f0f0f0; font: 13px sans-serif; text-shadow: 0 0 3px #000; pointer-events: none;"
_SET_OPTION = "option_values[field.name] = $event; flushState('option_values')"


def view_overlay(server, view_id, view) -> None:
    """Drawn over each view by trame-slicer: its title and slice position; the fade in the result view."""
    name = view.get_singleton_tag()
    html.Span(id=f"view-marker-{name}", classes="moemri-view-marker", style="display: none;")
    with html.Div(style="position: absolute; top: 0; left: 0; right: 0; padding: 4px 8px; display: flex;" + _OVERLAY_TEXT):
        html.Span(f"{{{{ view_titles.{name} }}}}", id=f"view-title-{name}")
        v3.VSpacer()
        html.Span(f"{{{{ orientation }}}} {{{{ offsets.{name}.toFixed(1) }}}} mm", id=f"view-offset-{name}")
    if name == AFTER:
        with html.Div(v_if=("has_result",), id="fade-control",
                      style="position: absolute; bottom: 4px; left: 8px; right: 8px; display: flex; align-items: center;"
                            "background: rgba(0,0,0,0.45); border-radius: 4px; padding: 0 8px;"):
            html.Span("input", style=_OVERLAY_TEXT)
            v3.VSlider(v_model=("fade",), min=0, max=1, step=0.01, hide_details=True, density="compact",
                       color="white", classes="mx-3", id="fade-slider")
            html.Span("result", style=_OVERLAY_TEXT)


def build_page(server, layout_manager, on_run, on_cancel):
    with SinglePageWithDrawerLayout(server, width=380, theme="dark") as layout:
        layout.title.set_text("MoE-MRI: denoising and super-resolution in the browser")
        with layout.toolbar:
            v3.VSpacer()
            with v3.VBtnToggle(v_model=("orientation",), mandatory=True, density="compact", classes="mx-2",
                               id="orientation-toggle"):
                for orientation in ORIENTATIONS:
                    v3.VBtn(orientation, value=orientation, id=f"orientation-{orientation}", size="small")
            html.Span("slice", classes="text-caption mx-2")
            v3.VSlider(v_model=("slice_value",), min=("slice_min",), max=("slice_max",), step=("slice_step",),
                       hide_details=True, density="compact", style="max-width: 260px;", classes="mr-4",
                       id="slice-slider")

        with layout.drawer:
            _controls(on_run, on_cancel)

        with layout.content:
            with html.Div(style="display: flex; flex-direction: column;"
                                "height: calc(100vh - var(--v-layout-top, 64px) - var(--v-layout-bottom, 24px));"):
                with html.Div(style="flex: 1 1 auto; display: flex; min-height: 300px; position: relative;",
                              id="views"):
                    layout_manager.initialize_layout_grid(layout)
                _result_panel()
    return layout


def _controls(on_run, on_cancel) -> None:
    with v3.VContainer(classes="pa-3"):
        html.Div("Input", classes="text-subtitle-2 mb-1")
        with v3.VRadioGroup(v_model=("source",), inline=True, density="compact", hide_details=True, id="source"):
            v3.VRadio(label="sample head", value="sample", disabled=("!sample_available",))
            v3.VRadio(label="a file", value="file")
        v3.VTextField(v_if="source === 'file'", v_model_lazy=("input_path",), label="file on the server",
                      placeholder="/path/to/t1.nii.gz", density="compact", hide_details="auto", id="input-path")
        v3.VSlider(v_if="task === 'denoise'", v_model=("noise_percent",), min=0, max=15, step=1,
                   label="add noise (%)", thumb_label=True, hide_details=True, density="compact",
                   id="noise-slider")
        v3.VSlider(v_if="task === 'superres'", v_model=("slice_factor",), min=1, max=7, step=1,
                   label="thick slices (x)", thumb_label=True, hide_details=True, density="compact",
                   id="slices-slider")
        html.Div("{{ input_text }}", classes="text-caption text-medium-emphasis mb-3", id="input-text")

        v3.VSelect(v_model=("task",), items=("task_items",), label="task", density="compact", hide_details=True,
                   classes="mb-3", id="task-select")
        v3.VSelect(v_model=("method",), items=("method_items",), label="method", item_props=True,
                   density="compact", hide_details=True, classes="mb-1", id="method-select")
        html.Div("{{ method_note }}", classes="text-caption text-medium-emphasis mb-3",
                 style="white-space: pre-line;", id="method-note")
        v3.VSelect(v_model=("experts",), items=("expert_items",), label="experts", density="compact",
                   hide_details=True, disabled=("expert_items.length < 2",), classes="mb-3", id="experts-select")

        html.Div("Options", v_if="option_fields.length", classes="text-subtitle-2 mb-1")
        with html.Div(v_for="field in option_fields", key="field.name", classes="mb-2"):
            v3.VCheckbox(v_if="field.kind === 'bool'", model_value=("option_values[field.name]",),
                         update_modelValue=_SET_OPTION, label=("field.label",), hint=("field.help",),
                         persistent_hint=True, density="compact")
            v3.VSelect(v_else_if="field.kind === 'choice'", model_value=("option_values[field.name]",),
                       update_modelValue=_SET_OPTION, items=("field.choices",), label=("field.label",),
                       hint=("field.help",), persistent_hint=True, density="compact")
            v3.VTextField(v_else_if="field.kind === 'floats'", model_value=("option_values[field.name]",),
                          update_modelValue=_SET_OPTION, label=("field.label + ' (mm, x y z)'",),
                          hint=("field.help",), persistent_hint=True, density="compact")
            v3.VTextField(v_else=True, type="number", model_value=("option_values[field.name]",),
                          update_modelValue=_SET_OPTION, label=("field.label",), hint=("field.help",),
                          min=("field.min",), max=("field.max",), step=("field.kind === 'int' ? 1 : 'any'",),
                          persistent_hint=True, density="compact")

        with html.Div(classes="d-flex mt-3"):
            v3.VBtn("Run", click=on_run, color="primary", disabled=("running || input_busy",),
                    id="run-button", classes="mr-2")
            v3.VBtn("Cancel", click=on_cancel, disabled=("!running",), id="cancel-button")
        v3.VProgressLinear(v_show="running || input_busy", model_value=("progress",), indeterminate=("input_busy",),
                           height=6, classes="mt-3", id="progress")
        html.Div("{{ stage }}", v_show="running", classes="text-caption", id="stage")
        v3.VAlert(v_if="status", text=("status",), type=("status_kind",), density="compact", variant="tonal",
                  classes="mt-3", id="status", style="white-space: pre-line;")


def _result_panel() -> None:
    with html.Div(v_if="has_result", id="result-panel", classes="pa-2",
                  style="flex: 0 0 auto; max-height: 34vh; overflow-y: auto;"):
        html.Div("{{ summary }}", classes="text-caption mb-1", id="summary")
        with html.Div(v_if="legend.length", id="expert-panel"):
            with html.Div(classes="d-flex align-center flex-wrap"):
                v3.VSwitch(v_model=("show_experts",), label="expert map", density="compact", hide_details=True,
                           color="primary", classes="mr-4", id="experts-switch")
                v3.VSlider(v_model=("expert_opacity",), min=0, max=1, step=0.05, label="opacity",
                           hide_details=True, density="compact", style="max-width: 260px;", classes="mr-4",
                           disabled=("!show_experts",), id="opacity-slider")
                with v3.VBtnToggle(v_model=("expert_views",), mandatory=True, density="compact",
                                   disabled=("!show_experts",)):
                    v3.VBtn("over the result", value="result", size="small")
                    v3.VBtn("over both", value="both", size="small")
            with v3.VTable(density="compact", id="legend"):
                with html.Thead():
                    with html.Tr():
                        for heading in ("", "expert", "what it does", "share of voxels"):
                            html.Th(heading)
                with html.Tbody():
                    with html.Tr(v_for="row in legend", key="row.label", classes="legend-row"):
                        with html.Td():
                            swatch = "{ background: row.color, width: '18px', height: '18px', borderRadius: '3px' }"
                            html.Div(style=(swatch,))
                        html.Td("{{ row.name }}")
                        html.Td("{{ row.description }}")
                        html.Td("{{ row.percent }}", classes="legend-share")
    # Machine-readable copies for the end-to-end test (and anyone scripting the page).
    html.Div("{{ JSON.stringify(offsets) }}", id="debug-offsets", style="display: none;")
    html.Div("{{ JSON.stringify(legend) }}", id="debug-legend", style="display: none;")
    html.Div("{{ run_state }}", id="debug-run-state", style="display: none;")
    html.Div("{{ run_id }}", id="debug-run-id", style="display: none;")
