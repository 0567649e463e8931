"""The background run's plain parts, without a child process: the protocol decoded once into
events for a front end's callbacks, the child's environment, and how Cancel stops a process tree."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from moemri.background import run as background_run
from moemri.background.protocol import LOG, PROGRESS, WARNING, RunCallbacks, RunEvent, WorkerState, read_events

REPO = Path(__file__).resolve().parents[2]


def test_worker_lines_become_events_and_state():
    state = WorkerState()
    lines = ['{"progress": 0.25, "stage": "denoising"}', "Downloading weights... 10%", "",
             '{"warning": "CUDA out of memory: retrying with 64-voxel tiles"}', '{"done": true}']
    events = read_events(lines, state)
    assert [e.kind for e in events] == [PROGRESS, LOG, WARNING]
    assert events[0] == RunEvent(PROGRESS, 0.25, "denoising", "denoising: 25 %")
    assert events[1].text == "Downloading weights... 10%" and events[1].stage == "denoising"
    assert state.done and state.failure is None and state.fraction == 0.25
    # stderr carries no protocol: a JSON-looking line there is only a log line.
    assert [e.kind for e in read_events(['{"done": true}'], state, source="stderr")] == [LOG]
    failed = WorkerState()
    assert read_events(['{"error": "too small", "kind": "InputError"}'], failed) == []
    assert failed.failure == {"error": "too small", "kind": "InputError"}


def test_callbacks_get_each_kind_of_event():
    seen = []
    callbacks = RunCallbacks(lambda f, s: seen.append(("progress", f, s)), lambda t: seen.append(("warning", t)),
                             lambda t: seen.append(("log", t)))
    callbacks.deliver([RunEvent(PROGRESS, 0.5, "half"), RunEvent(WARNING, text="careful"), RunEvent(LOG, text="chatter")])
    assert seen == [("progress", 0.5, "half"), ("warning", "careful"), ("log", "chatter")]
    RunCallbacks().deliver([RunEvent(LOG, text="nobody listens")])  # defaults ignore everything


def test_worker_environment_puts_the_core_first():
    env = background_run.worker_environment({"path": "/plugins"}, environ={"PYTHONPATH": "/elsewhere", "HOME": "/h"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/plugins", "/elsewhere"]
    assert env["HOME"] == "/h" and env["PYTHONUNBUFFERED"] == "1" and env["PYTHONIOENCODING"] == "utf-8"
    assert background_run.worker_command("PythonSlicer", "r.json") == ["PythonSlicer", "-m", "moemri.background.worker", "r.json"]


class FakeProcess:
    pid = 4242

    def __init__(self, alive_after_taskkill=False):
        self.alive, self.killed = alive_after_taskkill, False

    def poll(self):
        return None if self.alive else 1

    def kill(self):
        self.killed = True


def test_cancel_on_windows_kills_the_launcher_and_its_children():
    calls = []
    process = FakeProcess()
    background_run.stop_process_tree(process, force=False, os_name="nt", run=lambda argv, **kw: calls.append(argv))
    assert calls == [["taskkill", "/F", "/T", "/PID", "4242"]] and not process.killed
    stubborn = FakeProcess(alive_after_taskkill=True)  # taskkill refused: at least the launcher goes
    background_run.stop_process_tree(stubborn, force=True, os_name="nt", run=lambda argv, **kw: calls.append(argv))
    assert stubborn.killed

    def missing(argv, **kw):
        raise FileNotFoundError("taskkill")

    background_run.stop_process_tree(FakeProcess(), force=False, os_name="nt", run=missing)  # no exception


def test_cancel_elsewhere_signals_the_process_group(monkeypatch):
    sent = []
    monkeypatch.setattr(os, "killpg", lambda pid, signum: sent.append((pid, signum)), raising=False)
    background_run.stop_process_tree(FakeProcess(), force=False, os_name="posix")
    background_run.stop_process_tree(FakeProcess(), force=True, os_name="posix")
    assert sent == [(4242, signal.SIGTERM), (4242, signal.SIGKILL)]
    monkeypatch.setattr(os, "killpg", lambda pid, signum: (_ for _ in ()).throw(ProcessLookupError()), raising=False)
    background_run.stop_process_tree(FakeProcess(), force=True, os_name="posix")  # already gone: no exception


def test_a_real_process_group_is_stopped():
    if os.name == "nt":
        return
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    background_run.stop_process_tree(child, force=False)
    assert child.wait(5) == -signal.SIGTERM
