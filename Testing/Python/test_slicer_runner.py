"""The background process runner for real: a child Python running moemri.background.worker on a small
crop of the real head, polled without threads as the panel's timer does.

Each test starts one child (about half a second of start-up); the test doubles run in the child
because the worker re-creates a method registered from outside moemri from its class.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from moemri.background.run import BackgroundProcessRunner, BackgroundRun  # noqa: E402
from moemri.background.protocol import MissingPackage, WorkerError, method_source  # noqa: E402
from MoEMRILib.processing_logic import MoEProcessingLogic, result_warnings  # noqa: E402
from moemri.errors import Cancelled, InputError  # noqa: E402
from test_slicer_fixtures import fake_methods, registered, sample_loaded, sample_node, scene, small_crop  # noqa: E402,F401

FAST_METHOD = "curvature-diffusion"  # the fastest classical denoiser of the registry


def poll_until_done(job, timeout_s: float = 60.0) -> list:
    events = []
    deadline = time.monotonic() + timeout_s
    while job.running:
        events += job.poll()
        assert time.monotonic() < deadline, "the worker did not finish in time"
        time.sleep(0.02)
    return events


def test_background_run_matches_the_in_process_result(scene, small_crop, tmp_path):
    registered(FAST_METHOD)
    logic = MoEProcessingLogic()
    request = logic.prepare(small_crop, None, "denoise", FAST_METHOD, options={"iterations": 3})
    expected, _ = logic.run(request)
    nodes_before = scene.GetNumberOfNodes()

    job = logic.start(request, temp_root=tmp_path)
    assert job.running and job.folder.parent == tmp_path
    assert scene.GetNumberOfNodes() == nodes_before  # starting adds nothing to the scene
    events = poll_until_done(job)

    assert job.state == "finished", job.error
    progress = [e for e in events if e.kind == "progress"]
    assert progress and progress[0].stage == "loading the input" and progress[-1].fraction == 1.0
    assert all(0.0 <= e.fraction <= 1.0 for e in progress)
    np.testing.assert_array_equal(job.result.image.array, expected.image.array)
    assert job.result.image.same_geometry(expected.image, atol=1e-9)
    for key in ("method", "experts", "device"):
        assert job.result.metadata[key] == expected.metadata[key]
    assert job.returncode == 0 and job.seconds > 0
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone

    logic.finish(request, job.result, job.seconds)
    assert request.outputNode.GetName() == "small crop denoised"
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(request.outputNode), expected.image.array)


def test_background_moe_brings_back_expert_map_and_probabilities(scene, small_crop, fake_methods, tmp_path):
    fake = fake_methods["FakeGatedDenoiser"]
    assert method_source(fake)["module"] == "test_slicer_fakes"
    logic = MoEProcessingLogic()
    options = {"strength": 0.25, "warn": True}
    request = logic.prepare(small_crop, None, "denoise", fake.info.name, experts=3, options=options)
    expected = fake.run(request.volume, experts=3, options=options)

    job = logic.start(request, temp_root=tmp_path)
    events = poll_until_done(job)
    assert job.state == "finished", job.error
    # The core's warnings (a device fallback) come back live and in the metadata.
    assert [e.text for e in events if e.kind == "warning"] == ["cuda:0 ran out of memory; ran on the CPU"]
    assert job.result.metadata["warnings"] == ["cuda:0 ran out of memory; ran on the CPU"]
    np.testing.assert_allclose(job.result.image.array, expected.image.array, rtol=1e-6)
    np.testing.assert_array_equal(job.result.expert_map.array, expected.expert_map.array)
    assert [(e.label, e.name, e.color) for e in job.result.experts] == [(e.label, e.name, e.color) for e in expected.experts]
    assert len(job.result.expert_probabilities) == 3
    np.testing.assert_allclose(job.result.expert_probabilities[1].array, expected.expert_probabilities.array[1], rtol=1e-6)
    assert len(job.result.expert_differences) == 3
    np.testing.assert_allclose(job.result.expert_differences[2].array, expected.expert_differences[2].array, rtol=1e-6)
    assert [(m.name, m.title, [e.name for e in m.labels]) for m in job.result.label_maps] == [("brightness", "brightness", ["darker half", "brighter half"])]
    np.testing.assert_array_equal(job.result.label_maps[0].volume.array, expected.label_maps[0].volume.array)

    logic.finish(request, job.result, job.seconds)
    color = request.expertMapNode.GetDisplayNode().GetColorNode()
    assert [color.GetColorName(i) for i in range(4)] == ["background", "tercile 1", "tercile 2", "tercile 3"]
    assert sorted(request.probabilityNodes) == [1, 2, 3]
    assert sorted(request.differenceNodes) == [1, 2, 3] and list(request.labelMapNodes) == ["brightness"]
    assert request.outputNode.GetAttribute("MoEMRI.gate_temperature") == "0.5"
    assert result_warnings(request.outputNode) == ["cuda:0 ran out of memory; ran on the CPU"]


def test_cancel_stops_the_worker_within_a_second_and_leaves_no_trace(scene, small_crop, fake_methods, tmp_path):
    logic = MoEProcessingLogic()
    nodes_before = scene.GetNumberOfNodes()
    request = logic.prepare(small_crop, None, "denoise", "test-slow-denoise", options={"seconds": 30})
    job = logic.start(request, temp_root=tmp_path)
    deadline, events = time.monotonic() + 20, []
    while not any(e.stage == "working" for e in events):  # the method itself is running
        assert job.running and time.monotonic() < deadline, job.error
        events += job.poll()
        time.sleep(0.02)
    events += job.poll()
    logged = [e.text for e in events if e.kind == "log"]  # the method's prints, for the log panel
    assert "slow test method: warming up" in logged and "slow test method: a note on stderr" in logged

    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 1.0
    assert job.state == "cancelled" and isinstance(job.error, Cancelled)
    assert job.returncode is not None  # the child is gone
    assert list(tmp_path.iterdir()) == []
    assert scene.GetNumberOfNodes() == nodes_before
    assert request.outputNode is None and request.expertMapNode is None
    assert job.poll() == [] and not job.running
    job.cancel()  # a second Cancel does nothing


def test_cancel_from_the_progress_callback_of_a_blocking_run(scene, small_crop, fake_methods, tmp_path):
    logic = MoEProcessingLogic(runner=BackgroundProcessRunner(temp_root=tmp_path))
    nodes_before = scene.GetNumberOfNodes()

    def progress(fraction, stage):
        if stage == "working":
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        logic.process(small_crop, None, "denoise", "test-slow-denoise", options={"seconds": 30}, progress=progress)
    assert scene.GetNumberOfNodes() == nodes_before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", ["input", "bug", "crash", "missing"])
def test_worker_failures_come_back_as_messages(scene, small_crop, fake_methods, tmp_path, failure):
    method = fake_methods["FailingDenoiser"]
    job = BackgroundRun(method, MoEProcessingLogic().prepare(small_crop, None, "denoise", method.info.name).volume,
                        options={"failure": failure}, temp_root=tmp_path).start()
    poll_until_done(job)
    assert job.state == "failed" and job.result is None
    error = job.error
    if failure == "input":  # a user error: its own class and message, no traceback
        assert type(error) is InputError
        assert str(error) == "the fake method refuses this volume: it is too small for its 9-voxel patches"
    elif failure == "bug":
        assert isinstance(error, WorkerError) and str(error) == "ZeroDivisionError: division by zero"
        assert "Traceback" in error.details and "Traceback" not in str(error)
    elif failure == "crash":
        assert isinstance(error, WorkerError) and "stopped unexpectedly (exit code 3)" in str(error)
    else:
        assert isinstance(error, MissingPackage) and error.module == "moemri_fake_missing_package"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(type(error)):
        job.wait()
