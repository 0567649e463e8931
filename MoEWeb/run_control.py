"""One background run at a time, polled from the trame event loop.

The method runs in a child process (moemri.background.run.BackgroundRun, started by
MoEProcessingLogic.start); an asyncio task pumps its events into the page's callbacks a few times
a second, so the page stays responsive, progress reaches the browser while it runs, and Cancel
stops the child.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from moemri.background.protocol import RunCallbacks

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.1


class RunControl:
    """Start a prepared request, report its progress, and call `on_end(run)` once it has ended
    (run.state: "finished", "failed" or "cancelled")."""

    def __init__(self, logic, python: str | None = None, interval_s: float = POLL_INTERVAL_S):
        self.logic = logic
        self.python = python
        self.interval_s = interval_s
        self.run = None
        self.request = None
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.running

    def start(self, request, on_progress: Callable[[float, str], None], on_warning: Callable[[str], None],
              on_end: Callable[[object], None]):
        if self.running:
            raise RuntimeError("a run is already in progress; cancel it first")
        self.request = request
        self.run = self.logic.start(request, python=self.python)
        callbacks = RunCallbacks(on_progress, on_warning, lambda line: log.debug("worker: %s", line))
        self._task = asyncio.ensure_future(self._watch(self.run, callbacks, on_end))
        return self.run

    def cancel(self) -> bool:
        """Stop the child process (its temporary files are deleted); False if nothing was running.
        The watcher then reports the end with state "cancelled"."""
        if not self.running:
            return False
        self.run.cancel()
        return True

    async def wait(self) -> None:
        """Until the watcher has reported the end (tests, shutdown)."""
        if self._task is not None:
            await self._task

    async def _watch(self, run, callbacks, on_end) -> None:
        try:
            while run.pump(callbacks):
                await asyncio.sleep(self.interval_s)
        except asyncio.CancelledError:  # the server is shutting down: do not leave the child behind
            run.cancel()
            raise
        except Exception:  # a bug here must not leave the page "running" forever
            log.exception("polling the background run failed")
            run.cancel()
        on_end(run)
