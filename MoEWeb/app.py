"""`moemri-web`: the application object and its command line.

State names the page binds (ui.py) and what changes them:
- input: source ("sample"/"file"), input_path, noise_percent (denoising), slice_factor
  (super-resolution), input_text, input_busy; any change re-makes the input (debounced, the numpy
  work off the event loop) and clears a shown result;
- method: task, task_items, method, method_items, method_note, experts, expert_items,
  option_fields, option_values (all from the registry, see choices.py);
- run: running, progress (0-100), stage, status, status_kind, run_state ("idle", "running",
  "finished", "failed", "cancelled"), run_id (counts the runs started);
- views: orientation, slice_min/max/step/value, offsets ({view: mm}), view_titles;
- result: has_result, summary, fade, show_experts, expert_opacity, expert_views, legend.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from .setup import WebSetupError, check_web_packages, prefer_egl, sample_path

BEFORE, AFTER = "Red", "Yellow"  # the views' names, as MoEMRILib.compare_views calls them

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
INPUT_DEBOUNCE_S = 0.3
_APP = None  # the running application: the scene's Python wrappers must outlive main()'s frame


class MoEWebApp:
    """The scene, the two views, the page and the handlers of its state."""

    def __init__(self, server=None, *, input_path: str | None = None, crop: bool = False,
                 rca_encoder: str | None = None, python: str | None = None):
        import slicer
        from trame.app import get_server
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.core import SlicerApp

        from MoEMRILib.processing_logic import MoEProcessingLogic

        from . import choices, ui
        from .plugins import register_extra_methods
        from .run_control import RunControl
        from .views import VIEW_NAMES, CompareViews

        assert VIEW_NAMES == (BEFORE, AFTER)

        self.server = get_server(server, client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.state, self.ctrl = self.server.state, self.server.controller
        self.slicer_app = SlicerApp()
        self.scene = self.slicer_app.scene
        slicer.mrmlScene = self.scene  # slicer.util's helpers (used by MoEMRILib) look there
        register_extra_methods()

        self.logic = MoEProcessingLogic()
        self.runs = RunControl(self.logic, python=python)
        self.views = CompareViews(self.server, self.slicer_app, ui.view_overlay, rca_encoder=rca_encoder)
        self.crop = crop
        self.input_node = self.output_node = self.expert_map_node = None  # the result shown now
        self._result_nodes: dict[str, tuple] = {}  # task -> (output, expert map): reused by the next run
        self._starting = False
        self.prepared = None  # inputs.PreparedInput shown now
        self.loaded_recipe = None
        self._reload_task: asyncio.Task | None = None
        self._choices = choices

        try:
            sample = str(sample_path())
        except WebSetupError:
            sample = ""
        self.sample = sample
        state = self.state
        state.trame__title = "MoE-MRI"
        task = "denoise"
        state.update({
            "source": "file" if input_path or not sample else "sample", "input_path": input_path or "",
            "sample_available": bool(sample), "noise_percent": 5 if not input_path else 0, "slice_factor": 1,
            "input_text": "", "input_busy": False,
            "task": task, "task_items": choices.task_items(), "method": None, "method_items": [],
            "method_note": "", "experts": 1, "expert_items": [1], "option_fields": [], "option_values": {},
            "running": False, "progress": 0, "stage": "", "status": "", "status_kind": "info", "run_state": "idle",
            "run_id": 0,
            "orientation": "Axial", "slice_min": 0.0, "slice_max": 1.0, "slice_step": 1.0, "slice_value": 0.0,
            "offsets": {BEFORE: 0.0, AFTER: 0.0},
            "view_titles": {BEFORE: "input", AFTER: "result (press Run)"},
            "has_result": False, "summary": "", "fade": 1.0, "show_experts": True, "expert_opacity": 0.5,
            "expert_views": "result", "legend": [],
        })
        self._on_task(task)
        state.change("task")(self._on_task)
        state.change("method")(self._on_method)
        state.change("source", "input_path", "noise_percent", "slice_factor")(self._on_input_settings)
        state.change("fade")(self._on_fade)
        state.change("show_experts", "expert_opacity", "expert_views")(self._on_expert_layer)
        state.change("orientation")(self._on_orientation)
        state.change("slice_value")(self._on_slice_value)
        self.views.on_modified(self._publish_slices)
        self.views.on_fit(self._publish_slices)
        self.page = ui.build_page(self.server, self.views.layout_manager, self.on_run, self.on_cancel)
        self._load_input_now()

    # Input ---------------------------------------------------------------------------------

    def _recipe(self):
        from .inputs import InputRecipe

        state = self.state
        path = self.sample if state.source == "sample" else str(state.input_path or "").strip()
        return InputRecipe(path=path, crop=self.crop, task=state.task,
                           noise_percent=float(state.noise_percent or 0), slice_factor=int(state.slice_factor or 1))

    def _on_input_settings(self, **_):
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_task.cancel()
        self._reload_task = asyncio.ensure_future(self._reload_input(INPUT_DEBOUNCE_S))

    async def _reload_input(self, delay_s: float = 0.0) -> bool:
        from .inputs import prepare_input

        await asyncio.sleep(delay_s)
        recipe = self._recipe()
        if recipe == self.loaded_recipe:
            if self.state.status_kind == "error":  # e.g. back to the sample after a missing file
                with self.state:
                    self._set_status("", "info")
            return True
        if not recipe.path:
            self._set_status("choose an input file", "info")
            return False
        with self.state:
            self.state.input_busy = True
        try:
            prepared = await asyncio.to_thread(prepare_input, recipe)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a missing or unreadable file: say so, keep what is shown
            with self.state:
                self.state.input_busy = False
                self._set_status(_message(error), "error")
            return False
        with self.state:
            self.state.input_busy = False
            self._show_input(recipe, prepared)
        return True

    def _load_input_now(self) -> None:
        from .inputs import prepare_input

        recipe = self._recipe()
        if not recipe.path:
            return
        try:
            self._show_input(recipe, prepare_input(recipe))
        except Exception as error:
            self._set_status(_message(error), "error")

    def _show_input(self, recipe, prepared) -> None:
        from . import layers
        from .inputs import write_input_node

        if self.runs.running:
            self.runs.cancel()
        self.input_node = write_input_node(self.scene, prepared.volume, self.input_node, name=prepared.volume.name or "input")
        layers.grey_display(prepared.volume, [self.input_node])
        self.prepared, self.loaded_recipe = prepared, recipe
        layers.show_input(self.scene, self.input_node)
        self.views.fit()
        state = self.state
        state.input_text = prepared.description + " · " + _grid_text(prepared.volume)
        state.has_result, state.legend, state.summary = False, [], ""
        state.view_titles = {**state.view_titles, AFTER: "result (press Run)"}
        if state.status_kind == "error":
            state.status = ""
        self._set_default_spacing()
        state.method_note = self._choices.method_note(state.task, state.method, prepared.volume)
        self._publish_slices()

    # Method and options ----------------------------------------------------------------------

    def _on_task(self, task, **_):
        state = self.state
        state.method_items = self._choices.method_items(task)
        method = self._choices.default_method(task, state.method)
        state.method = method
        self._on_method(method)  # also when the name stays: the registry's items were re-read
        if self.loaded_recipe is not None:
            self._on_input_settings()

    def _on_method(self, method, **_):
        state = self.state
        counts, default = self._choices.expert_items(state.task, method)
        state.expert_items, state.experts = counts, default
        state.option_fields = self._choices.option_fields(method)
        state.option_values = self._choices.default_option_values(method)
        self._set_default_spacing()
        volume = self.prepared.volume if self.prepared is not None else None
        state.method_note = self._choices.method_note(state.task, method, volume)

    def _set_default_spacing(self) -> None:
        """Super-resolution: the output spacing starts at the input's spacing before the thick
        slices were made (the grid the demo should give back)."""
        state = self.state
        if state.task != "superres" or self.prepared is None:
            return
        from moemri.methods.base import SPACING_OPTION

        if any(field["name"] == SPACING_OPTION and field["kind"] == "floats" for field in state.option_fields):
            spacing = ", ".join(f"{s:g}" for s in self.prepared.source_spacing)
            state.option_values = {**state.option_values, SPACING_OPTION: spacing}

    # Run -------------------------------------------------------------------------------------

    async def on_run(self):
        from moemri.errors import MoEMRIError

        state = self.state
        if self.runs.running or self._starting:
            return
        self._starting = True
        try:
            if self._reload_task is not None and not self._reload_task.done():
                self._reload_task.cancel()
            if not await self._reload_input():
                return
            options = self._choices.options_from_fields(state.method, dict(state.option_values or {}))
            output_node, expert_map_node = self._result_nodes.get(state.task, (None, None))
            request = self.logic.prepare(self.input_node, output_node, state.task, state.method,
                                         int(state.experts), "auto", options, expert_map_node)
            self.runs.start(request, self._on_progress, self._on_warning, self._on_end)
        except (MoEMRIError, ValueError) as error:
            with state:
                self._set_status(_message(error), "error")
            return
        finally:
            self._starting = False
        with state:
            state.running, state.progress, state.stage, state.run_state = True, 0, "starting", "running"
            state.run_id += 1
            self._set_status("", "info")

    def on_cancel(self):
        if self.runs.cancel():
            log.info("run cancelled from the page")

    def _on_progress(self, fraction: float, stage: str) -> None:
        with self.state:
            self.state.progress, self.state.stage = round(100.0 * fraction, 1), stage

    def _on_warning(self, text: str) -> None:
        with self.state:
            self._set_status(text, "warning")

    def _on_end(self, run) -> None:
        from MoEMRILib.processing_logic import result_summary, result_warnings

        state = self.state
        with state:
            state.running, state.run_state = False, run.state
            if run.state == "cancelled":
                self._set_status(f"{run.method.info.name} was cancelled after {run.seconds:.1f} s", "info")
                return
            if run.state != "finished":
                self._set_status(_message(run.error), "error")
                return
            try:
                request = self.runs.request
                result = self.logic.finish(request, run.result, run.seconds, probabilities=False)
                self.output_node, self.expert_map_node = request.outputNode, request.expertMapNode
                self._result_nodes[request.task] = (request.outputNode, request.expertMapNode)
                self._show_result(result)
            except Exception as error:  # a result the scene refuses: report, keep the page alive
                log.exception("showing the result failed")
                self._set_status(_message(error), "error")
                return
            warnings = result_warnings(self.output_node)
            state.summary = result_summary(self.output_node)
            self._set_status("\n".join(warnings), "warning" if warnings else "info")

    def _show_result(self, result) -> None:
        from . import layers

        state = self.state
        layers.grey_display(self.prepared.volume, [self.output_node])
        layers.show_result(self.scene, self.input_node, self.output_node, state.fade)
        has_map = result.expert_map is not None and self.expert_map_node is not None
        state.legend = layers.legend_rows(result) if has_map else []
        self._apply_expert_layer(has_map)
        state.has_result = True
        state.view_titles = {**state.view_titles, AFTER: f"result: {self.runs.request.method.info.title}"}
        self.views.render()

    # View controls ---------------------------------------------------------------------------

    def _on_fade(self, fade, **_):
        from . import layers

        if self.state.has_result:
            layers.set_fade(self.scene, float(fade))
            self.views.render()

    def _on_expert_layer(self, **_):
        self._apply_expert_layer(bool(self.state.legend))
        self.views.render()

    def _apply_expert_layer(self, has_map: bool) -> None:
        from . import layers

        state = self.state
        shown = self.expert_map_node if (has_map and state.show_experts) else None
        layers.set_expert_layer(self.scene, shown, float(state.expert_opacity), state.expert_views)

    def _on_orientation(self, orientation, **_):
        if orientation != self.views.orientation():
            self.views.set_orientation(orientation)
            self._publish_slices()

    def _on_slice_value(self, slice_value, **_):
        offsets = self.views.slice_offsets()
        if abs(offsets[BEFORE] - float(slice_value)) > 1e-6:
            self.views.set_slice_offset(float(slice_value))

    def _publish_slices(self) -> None:
        low, high, step = self.views.slice_range()
        offsets = {name: round(value, 3) for name, value in self.views.slice_offsets().items()}
        with self.state:
            self.state.update({"offsets": offsets, "slice_min": round(low, 3), "slice_max": round(high, 3),
                               "slice_step": round(step, 4) or 1.0, "slice_value": offsets[BEFORE]})

    def _set_status(self, text: str, kind: str) -> None:
        self.state.status, self.state.status_kind = text, kind

    def start(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **kwargs):
        # timeout 0: wait for a browser as long as it takes (wslink stops an idle server after 5 min).
        return self.server.start(host=host, port=port, open_browser=False, timeout=0, **kwargs)


def _grid_text(volume) -> str:
    size = "x".join(str(n) for n in volume.size_xyz)
    spacing = "x".join(f"{s:g}" for s in volume.spacing)
    return f"{size} voxels of {spacing} mm"


def _message(error) -> str:
    return str(error) or type(error).__name__


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="moemri-web",
        description="Try the methods in a browser: the sample head or a file, any registered method, "
                    "input and result side by side with the expert map.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this computer only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--sample", action="store_true", help="start with the shipped MNI152 sample head (the default)")
    source.add_argument("--input", metavar="FILE", help="start with this volume (.nii, .nii.gz, .nrrd, .mha, ...)")
    parser.add_argument("--encoder", default=None, choices=["turbo-jpeg", "jpeg", "png", "webp"],
                        help="how the views' images travel to the browser (default turbo-jpeg; png is lossless)")
    # Hidden: a 2 mm piece of the input, for the tests and slow machines.
    parser.add_argument("--demo-crop", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    global _APP
    args = parse_args(sys.argv[1:] if argv is None else argv)
    prefer_egl()
    # trame reads its own options from sys.argv unless TRAME_ARGS is set; ours are parsed above
    # (set TRAME_ARGS yourself for trame's, e.g. TRAME_ARGS="--authKeyFile key.txt").
    os.environ.setdefault("TRAME_ARGS", "")
    try:
        check_web_packages()
        if args.input and not Path(args.input).is_file():
            raise WebSetupError(f"{args.input}: file not found")
        _APP = MoEWebApp(input_path=str(Path(args.input).resolve()) if args.input else None,
                         crop=args.demo_crop, rca_encoder=args.encoder)
    except WebSetupError as error:
        print(f"moemri-web: {error}", file=sys.stderr)
        return 2
    print("MoE-MRI web demo starting (Ctrl+C stops it); open the address below in a browser", flush=True)
    _APP.start(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
