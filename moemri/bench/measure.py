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


def timing_table(methods, run_one, device: str, cache=None) -> str:
    """Markdown table of seconds, peak memory and the device used, one row per method;
    `run_one(method)` runs the method on the timing case and returns its MethodResult. A
    classical method's row may come from `cache` (a ScoreCache); its date column says when."""
    import datetime

    from .table import markdown_table

    rows = []
    for method in methods:
        name = getattr(method, "label", method.info.name)
        key = f"timing|{name}"
        cached = cache.get(key) if (cache is not None and method.info.classical) else None
        if cached:
            rows.append(cached["value"] + [cached["date"]])
            continue
        result, seconds, peak_mib = measured(lambda: run_one(method))
        peak = f"{peak_mib:.0f}" if peak_mib else "n/a"
        row = [name, f"{seconds:.1f}", peak, result.metadata.get("device", device)]
        if cache is not None and method.info.classical:
            cache.put(key, row)
        rows.append(row + [datetime.date.today().isoformat()])
    return markdown_table(["method", "seconds", "peak MiB", "device", "measured on"], rows)


def write_report(report: str, out, echo) -> None:
    echo(report)
    if out:
        with open(out, "w") as f:
            f.write(report)
