"""Seconds and peak resident memory of one call, measured in this process.

Linux lets a process reset its high-water mark (write 5 to /proc/self/clear_refs), so the peak
is that of this call alone, whatever earlier cases allocated; elsewhere it is left out.
"""
from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def _read_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_memory() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measured(call: Callable[[], T]) -> tuple[T, float, float | None]:
    """(return value, seconds, peak resident memory in MiB during the call or None)."""
    gc.collect()
    can_reset = reset_peak_memory()
    start = time.perf_counter()
    value = call()
    seconds = time.perf_counter() - start
    peak_kb = _read_status_kb("VmHWM") if can_reset else None
    return value, seconds, (peak_kb / 1024 if peak_kb else None)
