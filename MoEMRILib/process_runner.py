"""Runs a method in a background Python process, so Slicer stays responsive and Cancel can stop it.

The input Volume goes to a temporary .nrrd, `worker.py` runs the method in a child process and
writes JSON lines to its stdout (protocol in worker.py), and the result volumes and metadata come
back as files. There are no threads: the child's stdout goes to a file that `poll()` reads from
where it stopped, so the panel polls from a `qt.QTimer` and a test polls in a loop. (A pipe could
not be read without blocking on Windows, and a full pipe would stall the child.) Cancel
terminates the child, kills it if it is still alive a second later, and deletes the temporary
folder; nothing was added to the scene, because result nodes are written only after success.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from moemri import errors
from moemri.methods.base import MethodResult, no_progress

from .worker_protocol import WorkerError, error_from_message, json_line, load_result, method_source

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).resolve().parent / "worker.py"
TERMINATE_GRACE_S = 1.0  # after this, a child that ignores the polite request is killed
_DETAIL_LINES = 40  # how much of the child's stderr an unexpected failure shows


@dataclass(frozen=True)
class RunnerEvent:
    kind: str  # "progress" or "warning"
    fraction: float = 0.0
    stage: str = ""
    text: str = ""


def default_python() -> str:
    """PythonSlicer where it is on the PATH (inside Slicer: the Python that sees Slicer's packages;
    there sys.executable is the Slicer application itself), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


class BackgroundRun:
    """One method run in a child process. `start()`, then `poll()` until `running` is False; then
    `result` (state "finished") or `error` (states "failed", "cancelled") is set."""

    def __init__(self, method, volume, *, experts=None, device="auto", options=None, python=None, temp_root=None):
        self.method = method
        self.volume = volume
        self.request = {
            "task": method.info.task, "method": method.info.name, "experts": experts, "device": device,
            "options": _jsonable(options or {}), "method_source": method_source(method),
        }
        self.python = python or default_python()
        self.temp_root = temp_root
        self.state = "new"
        self.fraction, self.stage = 0.0, "starting"
        self.warnings: list[str] = []
        self.result: MethodResult | None = None
        self.error: Exception | None = None
        self.seconds = 0.0
        self.folder: Path | None = None
        self._process = None
        self._stdout = None
        self._pending = b""
        self._done = False
        self._failure: dict | None = None
        self._chatter: list[str] = []
        self._started = 0.0

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has ended (negative: stopped by that signal)."""
        return self._process.poll() if self._process is not None else None

    def start(self) -> "BackgroundRun":
        from moemri.io import write_volume

        self.folder = Path(tempfile.mkdtemp(prefix="moemri-", dir=self.temp_root))
        try:
            array = self.volume.array
            write_volume(self.volume, self.folder / "input.nrrd", dtype="uint8" if array.dtype == bool else array.dtype)
            request_path = self.folder / "request.json"
            request_path.write_text(json.dumps({**self.request, "input": str(self.folder / "input.nrrd"), "output_dir": str(self.folder)}))
            with open(self.folder / "stdout.log", "wb") as out, open(self.folder / "stderr.log", "wb") as err:
                self._process = subprocess.Popen(
                    [self.python, str(WORKER_SCRIPT), str(request_path)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=str(self.folder),
                    env={**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}, **_own_process_group(),
                )
            self._stdout = open(self.folder / "stdout.log", "rb")
        except Exception:
            self._remove_folder()
            raise
        self._started = time.perf_counter()
        self.state = "running"
        return self

    def poll(self) -> list[RunnerEvent]:
        """New progress and warning events since the last call; notices the end of the child."""
        if not self.running:
            return []
        exit_code = self._process.poll()  # first: all lines written before the exit are on disk now
        events = self._read_events()
        if exit_code is not None:
            self._finish(exit_code)
        return events

    def cancel(self) -> None:
        """Stop the child (terminate, kill after a second) and delete the temporary files."""
        if not self.running:
            return
        _signal_group(self._process, signal.SIGTERM)
        try:
            self._process.wait(TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(self._process, getattr(signal, "SIGKILL", signal.SIGTERM))
            self._process.kill()
            self._process.wait()
        self.seconds = time.perf_counter() - self._started
        self.state = "cancelled"
        self.error = errors.Cancelled(f"{self.method.info.name} was cancelled")
        self._close()

    def wait(self, progress=no_progress, interval_s: float = 0.05) -> MethodResult:
        """Block until the run ends (console, self-tests); `progress` may raise Cancelled."""
        try:
            while self.running:
                for event in self.poll():
                    if event.kind == "progress":
                        progress(event.fraction, event.stage)
                    else:
                        log.warning("%s: %s", self.method.info.name, event.text)
                if self.running:
                    time.sleep(interval_s)
        except BaseException:
            self.cancel()
            raise
        if self.error is not None:
            raise self.error
        return self.result

    # The child's output ---------------------------------------------------------------------

    def _read_events(self) -> list[RunnerEvent]:
        data = self._pending + self._stdout.read()
        *lines, self._pending = data.split(b"\n")
        events = []
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").strip()
            message = json_line(line)
            if message is None:
                if line:
                    self._chatter = (self._chatter + [line])[-_DETAIL_LINES:]
                continue
            if "progress" in message:
                self.fraction, self.stage = float(message["progress"]), str(message.get("stage", ""))
                events.append(RunnerEvent("progress", self.fraction, self.stage))
            elif "warning" in message:
                self.warnings.append(str(message["warning"]))
                events.append(RunnerEvent("warning", self.fraction, self.stage, str(message["warning"])))
            elif "error" in message:
                self._failure = message
            elif message.get("done"):
                self._done = True
        return events

    def _finish(self, exit_code: int) -> None:
        self.seconds = time.perf_counter() - self._started
        try:
            if self._failure is not None:
                self.error = error_from_message(self._failure)
            elif self._done and exit_code == 0:
                self.result = load_result(self.folder)
            else:
                self.error = WorkerError(self._crash_message(exit_code), self._stderr_tail())
        except Exception as error:  # an unreadable result file
            self.error = WorkerError(f"could not read the result of {self.method.info.name}: {error}")
        self.state = "finished" if self.error is None else "failed"
        self._close()

    def _crash_message(self, exit_code: int) -> str:
        name = self.method.info.name
        if exit_code < 0:
            hint = " (the computer may have run out of memory)" if -exit_code == getattr(signal, "SIGKILL", 9) else ""
            return f"the {name} process was stopped by signal {-exit_code}{hint}"
        return f"the {name} process stopped unexpectedly (exit code {exit_code})"

    def _stderr_tail(self) -> str:
        try:
            lines = (self.folder / "stderr.log").read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        return "\n".join(self._chatter + lines[-_DETAIL_LINES:])

    def _close(self) -> None:
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None
        self._remove_folder()

    def _remove_folder(self) -> None:
        if self.folder is None:
            return
        for _ in range(10):  # Windows may hold a just-killed child's files for a moment
            shutil.rmtree(self.folder, ignore_errors=True)
            if not self.folder.exists():
                return
            time.sleep(0.05)
        log.warning("could not delete the temporary folder %s", self.folder)


class BackgroundProcessRunner:
    """A `MethodRunner` (see processing_logic) that runs each call in a child process and waits."""

    def __init__(self, python: str | None = None, temp_root=None):
        self.python = python
        self.temp_root = temp_root

    def __call__(self, method, volume, *, experts, device, progress, options) -> MethodResult:
        run = BackgroundRun(method, volume, experts=experts, device=device, options=options, python=self.python, temp_root=self.temp_root)
        return run.start().wait(progress)


def _jsonable(options: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def _own_process_group() -> dict:
    # Its own group, so Cancel also stops the helper processes a method may start.
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


def _signal_group(process, signum) -> None:
    try:
        if os.name == "nt":
            process.terminate()  # TerminateProcess: immediate, there is no polite request on Windows
        else:
            os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError, OSError):
        pass  # already gone
