"""Runs a method in a background Python process, so the front end stays responsive and Cancel can stop it.

The input Volume goes to a temporary .nrrd, `worker.py` runs the method in a child process and
writes JSON lines to its stdout (protocol in worker.py), and the result volumes and metadata come
back as files. There are no threads: the child's stdout and stderr go to files that `poll()` reads
from where it stopped, so the Slicer panel polls from a `qt.QTimer`, the web demo from an asyncio
task and a test in a loop. (A pipe could not be read without blocking on Windows, and a full pipe
would stall the child.) Cancel stops the child's whole process tree and deletes the temporary
folder; nothing was added to the scene, because result nodes are written only after success.

Process tree: on POSIX the child leads a process group of its own, so SIGTERM (SIGKILL a second
later) reaches the helper processes a method starts. On Windows Slicer's `PythonSlicer.exe` is a
launcher that starts the real Python as its child: terminating the launcher alone would leave
that Python running (and the temporary folder locked), so Cancel runs `taskkill /F /T /PID`,
which ends the launcher and every process below it, as Slicer's MONAIAuto3DSeg does.
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
from pathlib import Path

from .. import errors
from ..methods.base import MethodResult
from ..progress import no_progress
from .protocol import (LOG, WARNING, RunCallbacks, RunEvent, WorkerError, WorkerState, error_from_message, load_result,
                       method_source, read_events)

log = logging.getLogger(__name__)

WORKER_MODULE = "moemri.background.worker"
CORE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the `moemri` package
TERMINATE_GRACE_S = 1.0  # after this, a child that ignores the polite request is killed
_DETAIL_LINES = 40  # how much of the child's output an unexpected failure shows


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
        self.reported = WorkerState()  # what the protocol lines said: progress, the end, a failure
        self.warnings: list[str] = []
        self.result: MethodResult | None = None
        self.error: Exception | None = None
        self.seconds = 0.0
        self.folder: Path | None = None
        self._process = None
        self._outputs: dict[str, _Tail] = {}
        self._chatter: list[str] = []
        self._started = 0.0

    @property
    def fraction(self) -> float:
        return self.reported.fraction

    @property
    def stage(self) -> str:
        return self.reported.stage

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
                    worker_command(self.python, request_path), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    cwd=str(self.folder), env=worker_environment(self.request.get("method_source")), **_own_process_group(),
                )
            self._outputs = {name: _Tail(self.folder / f"{name}.log") for name in ("stdout", "stderr")}
        except Exception:
            self._remove_folder()
            raise
        self._started = time.perf_counter()
        self.state = "running"
        return self

    def poll(self) -> list[RunEvent]:
        """New progress, warning and log events since the last call; notices the end of the child."""
        if not self.running:
            return []
        exit_code = self._process.poll()  # first: all lines written before the exit are on disk now
        events = self._read_events()
        if exit_code is not None:
            self._finish(exit_code)
        return events

    def pump(self, callbacks: RunCallbacks) -> bool:
        """Poll and hand the new events to `callbacks`; True while the run goes on."""
        callbacks.deliver(self.poll())
        return self.running

    def cancel(self) -> None:
        """Stop the child's process tree (politely, then by force a second later; at once on
        Windows) and delete the temporary files."""
        if not self.running:
            return
        stop_process_tree(self._process, force=False)
        try:
            self._process.wait(TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            stop_process_tree(self._process, force=True)
            self._process.kill()
            self._process.wait()
        self.seconds = time.perf_counter() - self._started
        self.state = "cancelled"
        self.error = errors.Cancelled(f"{self.method.info.name} was cancelled")
        self._close()

    def wait(self, progress=no_progress, interval_s: float = 0.05, callbacks: RunCallbacks | None = None) -> MethodResult:
        """Block until the run ends (console, self-tests); `progress` may raise Cancelled.
        Without `callbacks`, warnings go to the log as warnings and the child's output as debug lines."""
        name = self.method.info.name
        callbacks = callbacks or RunCallbacks(progress, lambda text: log.warning("%s: %s", name, text),
                                              lambda line: log.debug("%s: %s", name, line))
        try:
            while self.pump(callbacks):
                time.sleep(interval_s)
        except BaseException:
            self.cancel()
            raise
        if self.error is not None:
            raise self.error
        return self.result

    # The child's output ---------------------------------------------------------------------

    def _read_events(self) -> list[RunEvent]:
        events = []
        for source, tail in self._outputs.items():
            events += read_events(tail.new_lines(), self.reported, source)
        for event in events:
            if event.kind == WARNING:
                self.warnings.append(event.text)
            elif event.kind == LOG:
                self._chatter = (self._chatter + [event.text])[-_DETAIL_LINES:]
        return events

    def _finish(self, exit_code: int) -> None:
        self.seconds = time.perf_counter() - self._started
        try:
            if self.reported.failure is not None:
                self.error = error_from_message(self.reported.failure)
            elif self.reported.done and exit_code == 0:
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
        return "\n".join(self._chatter)  # stdout chatter and stderr, in the order they were read

    def _close(self) -> None:
        for tail in self._outputs.values():
            tail.close()
        self._outputs = {}
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


def worker_command(python: str, request_path) -> list[str]:
    return [python, "-m", WORKER_MODULE, str(request_path)]


def worker_environment(source: dict | None = None, environ=None) -> dict[str, str]:
    """The child's environment: the core's folder (and that of a method registered from outside
    it) first on PYTHONPATH, so the worker imports the same code as the parent in a source tree,
    a pip install and Slicer's qt-scripted-modules folder alike; UTF-8, unbuffered output."""
    environ = dict(os.environ if environ is None else environ)
    paths = [str(CORE_ROOT)] + ([str(source["path"])] if source and source.get("path") else [])
    if environ.get("PYTHONPATH"):
        paths.append(environ["PYTHONPATH"])
    return {**environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}


class _Tail:
    """Reads the lines a child appends to a file, from where the last call stopped."""

    def __init__(self, path: Path):
        self._file = open(path, "rb")
        self._pending = b""

    def new_lines(self) -> list[str]:
        if self._file is None:
            return []
        data = self._pending + self._file.read()
        *lines, self._pending = data.split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in lines]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _own_process_group() -> dict:
    # Its own group, so Cancel also stops the helper processes a method may start.
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


def kill_tree_command(pid: int) -> list[str]:
    """Windows: the command that ends process `pid` and every process it started (/T), at once (/F)."""
    return ["taskkill", "/F", "/T", "/PID", str(int(pid))]


def stop_process_tree(process, force: bool, os_name: str | None = None, run=subprocess.run) -> None:
    """End `process` and what it started: on Windows with taskkill (the launcher's child is the
    real worker), elsewhere by signalling its process group (SIGTERM, or SIGKILL with `force`)."""
    os_name = os_name or os.name
    try:
        if os_name == "nt":
            run(kill_tree_command(process.pid), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=10, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
            if process.poll() is None:
                process.kill()  # taskkill missing or refused: at least the launcher
        else:
            os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
    except (ProcessLookupError, PermissionError, OSError, subprocess.SubprocessError):
        pass  # already gone
