"""Test doubles of registry methods for the Slicer-side tests, and a check of the doubles.

This file imports no Slicer: the background worker re-creates these methods in its own process
from their class (see moemri.background.protocol.method_source), as it would a plugin's method.
Register them with the `fake_methods` fixture of test_slicer_fixtures (monkeypatched, so the
registry is clean again after each test).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from moemri.errors import InputError
from moemri.methods.base import Expert, LabelMap, MethodInfo, MethodResult, OptionSpec, resolve_experts, resolve_options
from moemri.progress import no_progress

EXPERT_COLORS = [(230, 80, 70), (70, 170, 240), (250, 200, 60)]


@dataclass
class StackedVolume:
    """What the core documents for `expert_probabilities`: a 4-D (expert, z, y, x) array with the
    grid of the output (the core's Volume itself holds 3-D arrays only)."""

    array: np.ndarray
    spacing: tuple
    origin: tuple
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))


class FakeGatedDenoiser:
    """Gates by intensity tercile inside the head (0 outside), with soft gate probabilities, and
    smooths a little."""

    info = MethodInfo(
        name="test-fake-moe-denoise", task="denoise", title="Fake gated denoiser", description="test double",
        reference="none", expert_counts=(2, 3), default_experts=2, classical=False, has_expert_map=True,
        options=(OptionSpec("strength", "float", 0.5, "blend towards the local mean", minimum=0.0, maximum=1.0),
                 OptionSpec("warn", "bool", False, "log a warning, as the core does when it falls back to the CPU")),
    )

    def __init__(self):
        self.calls = []

    def availability(self):
        return None

    def run(self, volume, *, experts=None, device="auto", progress=no_progress, options=None):
        k = resolve_experts(self.info, experts)
        opts = resolve_options(self.info, options)
        self.calls.append({"experts": k, "device": device, "options": opts})
        a = volume.array.astype(np.float32)
        foreground = a > a.mean()
        edges = np.quantile(a[foreground], np.linspace(0, 1, k + 1)[1:-1])
        labels = np.where(foreground, 1 + np.searchsorted(edges, a), 0).astype(np.uint8)
        local_mean = (np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 2) + np.roll(a, -1, 2)) / 4
        out = (1 - opts["strength"]) * a + opts["strength"] * local_mean
        if opts["warn"]:
            logging.getLogger("moemri.devices").warning("cuda:0 ran out of memory; ran on the CPU")
        # Soft gate: each expert's weight falls off with the distance from its intensity band.
        centres = np.quantile(a[foreground], (np.arange(k) + 0.5) / k)
        logits = -np.abs(a[None] - centres[:, None, None, None]) / (a.std() + 1e-6)
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
        progress(1.0, "done")
        experts_ = [Expert(i + 1, f"tercile {i + 1}", EXPERT_COLORS[i], f"intensity band {i + 1}") for i in range(k)]
        return MethodResult(
            image=volume.with_array(out),
            expert_map=volume.with_array(labels),
            expert_probabilities=StackedVolume(probabilities.astype(np.float32), volume.spacing, volume.origin, volume.direction),
            experts=experts_,
            # What each expert changes: its smoothing where it is the winner.
            expert_differences=[volume.with_array(np.where(labels == i + 1, out - a, 0).astype(np.float32)) for i in range(k)],
            label_maps=[LabelMap("brightness", "brightness", volume.with_array(np.where(foreground, 1 + (a > np.median(a[foreground])), 0).astype(np.uint8)),
                                 [Expert(1, "darker half", (0, 0, 255)), Expert(2, "brighter half", (255, 255, 0))])],
            metadata={"device": "cpu", "gate_temperature": 0.5, "per_expert_voxels": [int((labels == i + 1).sum()) for i in range(k)]},
        )


class SlowDenoiser:
    """Reports progress for up to `seconds` and returns its input: a run long enough to cancel."""

    info = MethodInfo(name="test-slow-denoise", task="denoise", title="Slow test method", description="test double",
                      reference="none", classical=True,
                      options=(OptionSpec("seconds", "float", 30.0, "how long to run", minimum=0.0, maximum=60.0),))

    def availability(self):
        return None

    def run(self, volume, *, experts=None, device="auto", progress=no_progress, options=None):
        opts = resolve_options(self.info, options)
        # What a library prints: the log panel shows it (stdout chatter and stderr alike).
        print("slow test method: warming up", flush=True)
        print("slow test method: a note on stderr", file=sys.stderr, flush=True)
        started = time.monotonic()
        while time.monotonic() - started < opts["seconds"]:
            progress((time.monotonic() - started) / max(opts["seconds"], 1e-6), "working")
            time.sleep(0.02)
        return MethodResult(volume.with_array(volume.array.astype(np.float32)), metadata={"device": "cpu"})


class FailingDenoiser:
    """Fails the way `failure` says: a user error, a bug, a crash or a missing package."""

    info = MethodInfo(name="test-failing-denoise", task="denoise", title="Failing test method", description="test double",
                      reference="none", classical=True,
                      options=(OptionSpec("failure", "choice", "input", "how to fail", choices=("input", "bug", "crash", "missing")),))

    def availability(self):
        return None

    def run(self, volume, *, experts=None, device="auto", progress=no_progress, options=None):
        failure = resolve_options(self.info, options)["failure"]
        progress(0.5, "about to fail")
        if failure == "input":
            raise InputError("the fake method refuses this volume: it is too small for its 9-voxel patches")
        if failure == "crash":
            os._exit(3)  # what a segfault in a native library looks like from outside
        if failure == "missing":
            import moemri_fake_missing_package  # noqa: F401
        return 1 / 0


class SelectingSuperRes:
    """Picks an 'expert' from the input's slice spacing, as REMIx does, and says so beforehand."""

    info = MethodInfo(
        name="test-selecting-superres", task="superres", title="Selecting test method", description="test double",
        reference="none", classical=False,
        options=(OptionSpec("spacing", "floats", (1.0, 1.0, 1.0), "output voxel size (x, y, z) in mm", minimum=0.1, maximum=10.0),
                 OptionSpec("steps", "int", 20, "diffusion steps", minimum=1, maximum=1000),
                 OptionSpec("seed", "int", 0, "random seed", minimum=0, maximum=2**31 - 1)),
    )

    def availability(self):
        return None

    def describe_selection(self, volume) -> str:
        thickest = max(volume.spacing)
        if thickest > 8:
            raise InputError(f"no expert was trained for {thickest:g} mm slices")
        return f"the expert for {round(thickest):d} mm slices will be used"

    def run(self, volume, *, experts=None, device="auto", progress=no_progress, options=None):
        from moemri.degrade.resolution import resample_to_grid
        from moemri.volume import grid_with_spacing

        opts = resolve_options(self.info, options)
        out = resample_to_grid(volume, grid_with_spacing(volume, opts["spacing"]), interpolator="linear")
        return MethodResult(out, metadata={"device": "cpu", "selected_expert": f"{round(max(volume.spacing))} mm"})


class NeedsPackageDenoiser:
    """Unavailable until its 'package' is installed (PACKAGE_VARIABLE set, in this process and the
    worker's): the panel offers the install, then runs it."""

    PACKAGE_VARIABLE = "MOEMRI_TEST_FAKE_PACKAGE_INSTALLED"
    info = MethodInfo(name="test-needs-package-denoise", task="denoise", title="Needs a package (test double)",
                      description="test double", reference="none", classical=True)

    def availability(self):
        if os.environ.get(self.PACKAGE_VARIABLE):
            return None
        return "needs the optional package dipy, which 3D Slicer does not bundle: pip install dipy"

    def run(self, volume, *, experts=None, device="auto", progress=no_progress, options=None):
        return MethodResult(volume.with_array(volume.array.astype(np.float32)), metadata={"device": "cpu"})


ALL_FAKES = (FakeGatedDenoiser, SlowDenoiser, FailingDenoiser, SelectingSuperRes, NeedsPackageDenoiser)


def test_fakes_follow_the_method_interface():
    from moemri.volume import Volume

    volume = Volume(np.random.default_rng(0).random((6, 7, 8)).astype(np.float32) * 100, spacing=(1, 1, 5))
    result = FakeGatedDenoiser().run(volume, experts=3)
    assert result.expert_probabilities.array.shape == (3, 6, 7, 8)
    np.testing.assert_allclose(result.expert_probabilities.array.sum(axis=0), 1.0, rtol=1e-5)
    assert SelectingSuperRes().describe_selection(volume) == "the expert for 5 mm slices will be used"
    for cls in ALL_FAKES:
        assert cls.info.name.startswith("test-") and (cls().availability() is None) == (cls is not NeedsPackageDenoiser)
