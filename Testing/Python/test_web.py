"""The web demo (`moemri-web`) end to end: the trame-slicer app on localhost, driven by headless Chromium.

One server (a subprocess on a free port, the sample head's 2 mm demo crop, lossless PNG frames)
and one browser serve the end-to-end tests, which run in file order and share the page: a
mixture-of-experts test double with an expert map (registered through MOEMRI_WEB_EXTRA_METHODS,
as a plugin would be), the overlay's colours against the legend, linked scrolling, Cancel, and a
classical super-resolution in the coronal view. The frames are read back from the views' <img>
elements (what the browser shows, without the page's overlays); full-page screenshots of these
runs go to Testing/artifacts/web/ only.

The README's screenshots (Resources/Screenshots/) come from the last test, which runs the shipped
SMoE and REMIx on a 1 mm box of the sample head in its own server; it runs only with
MOEMRI_SCREENSHOTS=1 (`make screenshots`), since it takes minutes on a CPU.

Skipped only when the `web` extra (trame-slicer, playwright) or the system Chromium is missing.
The test doubles below import nothing from the web demo: the app and its background worker
import this module by path to re-create them.
"""
from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from moemri.methods.base import Expert, MethodInfo, MethodResult, OptionSpec, resolve_options
from moemri.progress import no_progress

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ARTIFACTS = REPO / "Testing" / "artifacts" / "web"
SCREENSHOTS = REPO / "Resources" / "Screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
SERVER_START_S = 120
RUN_TIMEOUT_S = 60
SHOWCASE_RUN_TIMEOUT_S = 600  # the shipped networks on a 1 mm box, on a busy two-core CPU
SHOWCASE_BOX_XYZ = (144, 176, 144)  # voxels of 1 mm: the central box of the sample head
SHOWCASE_VIEWPORT = {"width": 1280, "height": 960}  # tall enough for the panel and a 4-row legend

# --- Test doubles (re-created by the app and its worker from this module) -----------------------

STRIPE_COLORS = [(230, 60, 50), (40, 200, 90), (60, 110, 240)]
STRIPE_EDGES = (0.5, 0.8)  # along x: experts 1, 2, 3 take 50, 30 and 20 % of every axial slice


class StripedExperts:
    """A 'mixture of experts' whose gate splits the grid into three stripes along x (the same
    shares in every axial slice, so one view can be checked against the legend) and smooths."""

    info = MethodInfo(
        name="test-web-striped-moe", task="denoise", title="Striped experts (test double)",
        description="test double: three experts in stripes along x, each smoothing a little", reference="none",
        expert_counts=(3,), default_experts=3, has_expert_map=True,
        options=(OptionSpec("strength", "float", 0.8, "blend towards the 3x3x3 mean", minimum=0.0, maximum=1.0),),
    )

    def availability(self):
        return None

    def run(self, volume, *, experts=None, device="auto", progress=no_progress, options=None):
        from scipy import ndimage

        strength = resolve_options(self.info, options)["strength"]
        a = volume.array.astype(np.float32)
        out = (1 - strength) * a + strength * ndimage.uniform_filter(a, 3)
        x = np.arange(a.shape[2]) / a.shape[2]
        stripe = 1 + (x >= STRIPE_EDGES[0]).astype(np.int16) + (x >= STRIPE_EDGES[1]).astype(np.int16)
        labels = np.broadcast_to(stripe, a.shape).astype(np.int16)
        progress(1.0, "done")
        names = ["low-x half", "middle", "high-x fifth"]
        experts_ = [Expert(i + 1, names[i], STRIPE_COLORS[i], f"stripe {i + 1} along x") for i in range(3)]
        return MethodResult(volume.with_array(out), expert_map=volume.with_array(labels), experts=experts_,
                            metadata={"device": "cpu"})


EXTRA_METHODS = "test_web:StripedExperts,test_slicer_fakes:SlowDenoiser"

# --- Unit checks of the web package's plain parts (no browser) --------------------------------


def _needs_web():
    missing = [name for name in ("trame_slicer", "playwright") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the web extra is not installed ({', '.join(missing)}): pip install -e '.[test,web]'")


def test_option_fields_round_trip_through_the_registry_specs():
    pytest.importorskip("slicer")
    from MoEWeb import choices

    fields = {f["name"]: f for f in choices.option_fields("windowed-sinc")}
    assert fields["spacing"]["kind"] == "floats"
    values = choices.default_option_values("windowed-sinc")
    assert values == {"spacing": "1, 1, 1"}
    assert choices.options_from_fields("windowed-sinc", {"spacing": "2, 2 x 3"}) == {"spacing": (2.0, 2.0, 3.0)}
    ceiling = {f["name"]: f for f in choices.option_fields("nlmeans-rician")}["noise_level_percent"]["max"]
    assert choices.options_from_fields("nlmeans-rician", {"patch_radius": "2", "noise_level_percent": "999"}) == {
        "patch_radius": 2, "noise_level_percent": float(ceiling)}  # clamped to the spec's range
    with pytest.raises(ValueError, match="patch_radius"):
        choices.options_from_fields("nlmeans-rician", {"patch_radius": "two"})
    items = choices.method_items("superres")
    assert {"linear", "bspline", "windowed-sinc"} <= {i["value"] for i in items}
    assert choices.default_method("superres", "bspline") == "bspline"
    assert all(not i["props"]["disabled"] for i in items if i["value"] == choices.default_method("superres"))


def test_extra_methods_register_once_and_refuse_a_bad_entry(monkeypatch):
    pytest.importorskip("slicer")
    from moemri.methods import registry
    from MoEWeb.plugins import register_extra_methods

    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS) or {m.info.name: m for m in registry.all_methods()})
    assert register_extra_methods("test_web:StripedExperts") == ["test-web-striped-moe"]
    assert register_extra_methods("test_web:StripedExperts") == ["test-web-striped-moe"]  # no "registered twice"
    assert registry.get_method("test-web-striped-moe").info.has_expert_map
    with pytest.raises(ValueError, match="module:attribute"):
        register_extra_methods("test_web")


def test_demo_input_is_a_small_crop_and_degrades_reproducibly(sample_path):
    pytest.importorskip("slicer")
    from MoEWeb.inputs import InputRecipe, prepare_input

    noisy = prepare_input(InputRecipe(str(sample_path), crop=True, task="denoise", noise_percent=5))
    again = prepare_input(InputRecipe(str(sample_path), crop=True, task="denoise", noise_percent=5))
    clean = prepare_input(InputRecipe(str(sample_path), crop=True, task="denoise"))
    assert noisy.volume.size_xyz == (88, 96, 64) and noisy.volume.spacing == (2.0, 2.0, 2.0)
    np.testing.assert_array_equal(noisy.volume.array, again.volume.array)
    assert np.abs(noisy.volume.array - clean.volume.array).mean() > 0
    thick = prepare_input(InputRecipe(str(sample_path), crop=True, task="superres", slice_factor=3))
    assert thick.volume.spacing == (2.0, 2.0, 6.0) and thick.source_spacing == (2.0, 2.0, 2.0)
    assert "3x thicker slices" in thick.description


def test_run_control_polls_until_the_end_and_cancels():
    import asyncio

    from MoEWeb.run_control import RunControl

    class FakeRun:
        def __init__(self, polls):
            self.state, self.polls, self.cancelled = "running", polls, False

        @property
        def running(self):
            return self.state == "running"

        def poll(self):
            from moemri.background.protocol import RunEvent

            self.polls -= 1
            if self.polls <= 0:
                self.state = "finished"
            return [RunEvent("progress", 0.5, "half way")]

        def pump(self, callbacks):
            callbacks.deliver(self.poll())
            return self.running

        def cancel(self):
            self.state, self.cancelled = "cancelled", True

    class FakeLogic:
        def __init__(self, run):
            self.run = run

        def start(self, request, python=None):
            return self.run

    async def scenario(polls, cancel_after):
        control = RunControl(FakeLogic(FakeRun(polls)), interval_s=0.01)
        seen, ended = [], []
        control.start("request", lambda f, s: seen.append((f, s)), seen.append, ended.append)
        if cancel_after is not None:
            await asyncio.sleep(cancel_after)
            assert control.cancel()
        await control.wait()
        assert not control.running and not control.cancel()
        return seen, ended[0]

    seen, run = asyncio.run(scenario(3, None))
    assert run.state == "finished" and seen[0] == (0.5, "half way")
    _, run = asyncio.run(scenario(10_000, 0.05))
    assert run.state == "cancelled" and run.cancelled


# --- End to end ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def _serving(app_args: list[str], name: str, extra_env: dict[str, str]):
    """The web app in a subprocess on a free port; yields its URL, stops it after."""
    _needs_web()
    if not Path(CHROMIUM).is_file():
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    port = _free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **extra_env,
           "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
    log_path = ARTIFACTS / f"{name}.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "MoEWeb.app", "--port", str(port), *app_args, "--encoder", "png"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/index.html"
    deadline = time.monotonic() + SERVER_START_S
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.close()
            pytest.fail(f"the web app did not start: {log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def server():
    with _serving(["--sample", "--demo-crop"], "server", {"MOEMRI_WEB_EXTRA_METHODS": EXTRA_METHODS}) as url:
        yield url


@contextlib.contextmanager
def _browsing(url: str, viewport: dict = VIEWPORT):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=viewport)
        page.goto(url)
        page.wait_for_selector("#run-button", timeout=60_000)
        _wait_for(lambda: _frame(page, "Red") is not None and _frame(page, "Red").mean() > 10, "the input view's first image")
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(server):
    with _browsing(server) as page:
        yield page


def _wait_for(condition, what: str, timeout_s: float = 30.0, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what}")


_GRAB = """(name) => {
  const marker = document.getElementById('view-marker-' + name);
  const img = marker && marker.parentElement.querySelector('img.image-display-area');
  if (!img || !img.complete || !img.naturalWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  canvas.getContext('2d').drawImage(img, 0, 0);
  return canvas.toDataURL('image/png');
}"""


def _frame(page, view: str):
    """The view's current image as the browser shows it: (rows, cols, 3) uint8, or None."""
    from PIL import Image

    url = page.evaluate(_GRAB, view)
    if not url:
        return None
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _settled_frame(page, view: str, differs_from=None, timeout_s: float = 20.0):
    """The view's image once it has stopped changing (and differs from `differs_from`, if given)."""
    last = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frame = _frame(page, view)
        fresh = frame is not None and (differs_from is None or frame.shape != differs_from.shape
                                       or np.any(frame != differs_from))
        if fresh and last is not None and frame.shape == last.shape and np.array_equal(frame, last):
            return frame
        last = frame if fresh else None
        time.sleep(0.4)
    raise AssertionError(f"the {view} view did not settle on a new image")


def _settled_pair(page, timeout_s: float = 20.0):
    """(input view, result view) once both images are the same size and have stopped changing
    (the result panel appearing under the views resizes them)."""
    last = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pair = (_frame(page, "Red"), _frame(page, "Yellow"))
        if pair[0] is not None and pair[1] is not None and pair[0].shape == pair[1].shape:
            if last is not None and all(np.array_equal(a, b) for a, b in zip(pair, last)):
                return pair
            last = pair
        else:
            last = None
        time.sleep(0.4)
    raise AssertionError("the two views did not settle on images of one size")


def _views_differ(page, at_least: float, what: str):
    """Wait until the result view differs from the input view by a mean of `at_least` grey levels
    (the result arrives a moment after the run ends); returns (input, result, difference)."""
    def differ():
        red, yellow = _frame(page, "Red"), _frame(page, "Yellow")
        if red is None or yellow is None or red.shape != yellow.shape:
            return None
        difference = np.abs(yellow.astype(float) - red.astype(float)).mean()
        return (red, yellow, difference) if difference > at_least else None

    return _wait_for(differ, what, timeout_s=20)


def _text(page, selector: str) -> str:
    return page.locator(selector).text_content() or ""


def _set_state(page, **values):
    for key, value in values.items():
        page.evaluate("([k, v]) => window.trame.state.set(k, v)", [key, value])


def _choose(page, select_id: str, item_text: str):
    page.locator(".v-select", has=page.locator(f"#{select_id}")).first.click()
    page.get_by_role("option", name=item_text).first.click()


def _start_run(page) -> int:
    """Click Run; returns the new run's number once the app has started it."""
    previous = int(_text(page, "#debug-run-id") or 0)
    page.click("#run-button")
    _wait_for(lambda: int(_text(page, "#debug-run-id") or 0) > previous, "the run to start")
    return previous + 1


def _run_and_wait(page, state: str = "finished", timeout_s: float = RUN_TIMEOUT_S):
    _start_run(page)
    _wait_for(lambda: _text(page, "#debug-run-state") in ("finished", "failed", "cancelled"),
              "the run to end", timeout_s=timeout_s, interval_s=0.5)
    assert _text(page, "#debug-run-state") == state, _text(page, "#status") if page.locator("#status").count() else ""


def _save_screenshot(page, name: str, readme: bool = False):
    """The full page to Testing/artifacts/web/NAME.png, and for the README's screenshots also to
    Resources/Screenshots/NAME.png (RGB: a palette would shift the legend's colours)."""
    from PIL import Image

    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    if readme:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").save(SCREENSHOTS / f"{name}.png", optimize=True)
    return path


def _colour_shares(frame, colours, tolerance: int = 12):
    """Share of each colour among the pixels that match one of them (per-channel tolerance)."""
    counts = np.array([np.all(np.abs(frame.astype(int) - np.array(c)) <= tolerance, axis=-1).sum() for c in colours])
    return counts / max(counts.sum(), 1), int(counts.sum())


def test_a_mixture_of_experts_run_shows_result_overlay_and_legend(page):
    _choose(page, "method-select", StripedExperts.info.title)
    _wait_for(lambda: "test double" in _text(page, "#method-note"), "the method's note")
    _run_and_wait(page)
    assert page.locator(".legend-row").count() == 3
    legend = json.loads(_text(page, "#debug-legend"))
    assert [row["name"] for row in legend] == ["low-x half", "middle", "high-x fifth"]
    assert [row["rgb"] for row in legend] == [list(c) for c in STRIPE_COLORS]
    assert "low-x half" in _text(page, "#legend") and legend[0]["percent"] in _text(page, "#legend")

    # The expert map at full opacity: its colours fill the head's slice in the legend's shares.
    _set_state(page, expert_opacity=1.0)

    def overlay_shown():
        frame = _frame(page, "Yellow")
        shares, matched = _colour_shares(frame, STRIPE_COLORS) if frame is not None else (None, 0)
        return (frame, shares) if matched > 0.2 * frame.shape[0] * frame.shape[1] else None

    overlay, shares = _wait_for(overlay_shown, "the expert colours to cover the result view")
    np.testing.assert_allclose(shares, [row["share"] for row in legend], atol=0.03)
    input_frame, _ = _settled_pair(page)
    assert _colour_shares(input_frame, STRIPE_COLORS)[1] < 0.001 * input_frame.size, "the input view is overlaid"

    # Without the overlay the result view shows the (smoothed) result, not the noisy input.
    _set_state(page, show_experts=False)
    _wait_for(lambda: (f := _frame(page, "Yellow")) is not None and _colour_shares(f, STRIPE_COLORS)[1] == 0,
              "the expert map to hide")
    input_frame, _, _ = _views_differ(page, 2.0, "the result view to differ from the noisy input")
    # Fade 0 shows the input under the result: the two views then agree.
    _set_state(page, fade=0.0)

    def faded_to_input():
        red, yellow = _frame(page, "Red"), _frame(page, "Yellow")
        same_size = red is not None and yellow is not None and red.shape == yellow.shape
        return (yellow,) if same_size and np.abs(yellow.astype(float) - red.astype(float)).mean() < 0.5 else None

    faded, = _wait_for(faded_to_input, "fade 0 to show the input in the result view")
    _set_state(page, fade=1.0, show_experts=True, expert_opacity=0.45)
    _settled_frame(page, "Yellow", differs_from=faded)
    _save_screenshot(page, "test-web-denoise")


def test_a_scroll_in_one_view_moves_both(page):
    start = json.loads(_text(page, "#debug-offsets"))
    assert start["Red"] == start["Yellow"]
    box = page.locator("#view-marker-Red").locator("xpath=..").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(3):
        page.mouse.wheel(0, -120)
        time.sleep(0.15)
    moved = _wait_for(lambda: (o := json.loads(_text(page, "#debug-offsets")))["Red"] != start["Red"] and o,
                      "the input view to scroll")
    time.sleep(0.5)
    offsets = json.loads(_text(page, "#debug-offsets"))
    assert offsets["Red"] == offsets["Yellow"] != start["Red"], (start, moved, offsets)
    assert f"{offsets['Yellow']:.1f} mm" in _text(page, "#view-offset-Yellow")
    # The slice slider moves both views too.
    target = offsets["Red"] - 4.0
    _set_state(page, slice_value=target)
    _wait_for(lambda: json.loads(_text(page, "#debug-offsets"))["Red"] == target, "the slider to move the input view")
    assert json.loads(_text(page, "#debug-offsets"))["Yellow"] == target


def test_a_missing_file_is_refused_and_the_sample_comes_back(page):
    page.get_by_role("radio", name="a file").check()
    page.fill("#input-path", "/nonexistent/t1.nii.gz")
    page.keyboard.press("Enter")
    _wait_for(lambda: page.locator("#status").count() and "file not found" in _text(page, "#status"),
              "the missing file to be reported")
    page.click("#run-button")  # refused before any run starts
    _wait_for(lambda: "file not found" in _text(page, "#status"), "the refusal")
    assert _text(page, "#debug-run-state") != "running"
    page.get_by_role("radio", name="sample head").check()
    _wait_for(lambda: page.locator("#status").count() == 0, "the error to clear")
    assert "MNI152" in _text(page, "#input-text")


def test_cancel_stops_a_slow_run(page):
    _choose(page, "method-select", "Slow test method")
    _wait_for(lambda: page.locator("text=how long to run").count() > 0, "the slow method's options")
    _start_run(page)
    _wait_for(lambda: _text(page, "#debug-run-state") == "running" and float(
        page.evaluate("window.trame.state.get('progress')") or 0) > 0, "the slow run to report progress")
    started = time.monotonic()
    page.click("#cancel-button")
    _wait_for(lambda: _text(page, "#debug-run-state") == "cancelled", "the run to stop", timeout_s=10)
    assert time.monotonic() - started < 5
    assert "cancelled" in _text(page, "#status")
    assert page.locator("#run-button").is_enabled() and not page.locator("#cancel-button").is_enabled()


def test_super_resolution_in_the_coronal_view(page):
    _choose(page, "task-select", "Super-resolution")
    _set_state(page, slice_factor=3)
    _wait_for(lambda: "3x thicker slices" in _text(page, "#input-text"), "the thick-slice input")
    from moemri.methods.registry import get_method
    from moemri.methods.choices import picker_label

    _choose(page, "method-select", picker_label(get_method("linear").info))
    _wait_for(lambda: page.evaluate("window.trame.state.get('method')") == "linear", "the linear method")
    assert page.evaluate("window.trame.state.get('option_values')")["spacing"] == "2, 2, 2"
    page.click("#orientation-Coronal")
    _wait_for(lambda: "Coronal" in _text(page, "#view-offset-Yellow"), "the coronal views")
    _run_and_wait(page)
    _views_differ(page, 1.0, "the super-resolved view to differ from the thick slices")
    assert page.locator(".legend-row").count() == 0  # a classical method has no expert map
    offsets = json.loads(_text(page, "#debug-offsets"))
    assert offsets["Red"] == offsets["Yellow"]
    assert "linear" in _text(page, "#summary")
    _save_screenshot(page, "test-web-superres")


# --- The README's screenshots: the shipped mixtures of experts (make screenshots) ---------------


@pytest.fixture(scope="module")
def showcase_page(sample_path):
    if os.environ.get("MOEMRI_SCREENSHOTS") != "1":
        pytest.skip("the README's screenshots: MOEMRI_SCREENSHOTS=1 (make screenshots)")
    from moemri.io import read_volume, write_volume
    from moemri.volume import crop_volume

    sample = read_volume(str(sample_path))
    size = np.asarray(sample.size_xyz)
    box = np.minimum(size, SHOWCASE_BOX_XYZ)
    start = (size - box) // 2
    # In a short folder of its own: the page shows the file's path, and the picture is committed.
    folder = Path(tempfile.gettempdir()) / "moemri-screenshots"
    folder.mkdir(exist_ok=True)
    source = folder / "MNI152-2009a-T1-box1mm.nii.gz"
    write_volume(crop_volume(sample, start, start + box), str(source))
    with _serving(["--input", str(source)], "showcase-server", {}) as url, _browsing(url, SHOWCASE_VIEWPORT) as page:
        yield page


def test_screenshots_of_the_shipped_smoe_and_remix(showcase_page):
    from moemri.methods.choices import picker_label
    from moemri.methods.registry import get_method
    from moemri.palette import expert_colours

    page = showcase_page
    for name in ("smoe-patch", "remix"):
        unavailable = get_method(name).availability()
        if unavailable:
            pytest.fail(f"{name} cannot run, so no screenshot of it: {unavailable}")

    # Denoising: 5 % Rician noise on the 1 mm box, the SMoE with its patch gate and 4 experts.
    _set_state(page, noise_percent=5)
    _wait_for(lambda: "5 % Rician noise" in _text(page, "#input-text"), "the noisy input")
    _choose(page, "method-select", picker_label(get_method("smoe-patch").info))
    _wait_for(lambda: page.evaluate("window.trame.state.get('method')") == "smoe-patch", "the SMoE")
    _set_state(page, experts=4)
    _run_and_wait(page, timeout_s=SHOWCASE_RUN_TIMEOUT_S)
    legend = json.loads(_text(page, "#debug-legend"))
    assert len(legend) == 4 and [row["rgb"] for row in legend] == [list(c) for c in expert_colours(4)]
    _views_differ(page, 1.0, "the denoised view to differ from the noisy input")
    _set_state(page, expert_opacity=0.3)  # the denoised head stays readable under the map
    _fit_again(page, "Axial")
    _save_screenshot(page, "web-denoise", readme=True)

    # Super-resolution: 3 mm axial slices of the box (1 x 1 x 3 mm) back to 1 mm with REMIx.
    _choose(page, "task-select", "Super-resolution")
    _set_state(page, slice_factor=3)
    _wait_for(lambda: "3x thicker slices" in _text(page, "#input-text"), "the thick-slice input")
    _choose(page, "method-select", picker_label(get_method("remix").info))
    _wait_for(lambda: page.evaluate("window.trame.state.get('method')") == "remix", "REMIx")
    _wait_for(lambda: page.evaluate("window.trame.state.get('option_values')").get("spacing") == "1, 1, 1",
              "the 1 mm output spacing")
    page.click("#orientation-Coronal")
    _wait_for(lambda: "Coronal" in _text(page, "#view-offset-Yellow"), "the coronal views")
    _run_and_wait(page, timeout_s=SHOWCASE_RUN_TIMEOUT_S)
    _views_differ(page, 1.0, "the super-resolved view to differ from the thick slices")
    assert "remix" in _text(page, "#summary")
    _fit_again(page, "Coronal")
    _save_screenshot(page, "web-superres", readme=True)


def _fit_again(page, orientation: str):
    """Choose the orientation once more (which fits both views to the head) once the result panel
    has resized them, and wait for the two images to settle."""
    time.sleep(2.0)
    page.click(f"#orientation-{orientation}")
    time.sleep(1.0)
    _settled_pair(page)
