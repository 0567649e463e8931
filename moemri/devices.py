"""Which torch device a learned method runs on, and what it does when the GPU runs out of memory.

`resolve_device("auto")` takes CUDA when torch sees a GPU, else Apple's GPU (`mps`) where torch has
it, else the CPU. `run_with_memory_fallback`
wraps a tiled run: on CUDA out-of-memory it retries with half the tile memory budget, a few times,
then on the CPU, and says in the result's metadata what it ended up doing.
"""
from __future__ import annotations

import logging
from typing import Callable, TypeVar

from .errors import InputError

log = logging.getLogger(__name__)

T = TypeVar("T")

KNOWN = ("auto", "cpu", "cuda", "cuda:N", "mps")
DEFAULT_GPU_BUDGET_BYTES = 2 << 30
DEFAULT_CPU_BUDGET_BYTES = 1 << 30  # per tile: the activations of a few dozen 2-D slices
OOM_RETRIES = 3  # halvings of the tile budget before giving up on the GPU


def resolve_device(name: str | None = "auto"):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps' -> torch.device; InputError when unknown or absent."""
    import torch

    key = (name or "auto").strip().lower()
    if key == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available(torch) else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "cuda" or key.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"device '{name}' was asked for, but torch sees no CUDA GPU here; use 'auto' or 'cpu'")
        index = key.partition(":")[2]
        if index:
            if not index.isdigit():
                raise InputError(f"device '{name}' is not understood; use one of {', '.join(KNOWN)}")
            count = torch.cuda.device_count()
            if int(index) >= count:
                raise InputError(f"device '{name}' does not exist: torch sees {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
        return torch.device(key)
    if key == "mps":
        if not _mps_available(torch):
            raise InputError("device 'mps' was asked for, but this torch has no Apple GPU support here; use 'auto' or 'cpu'")
        return torch.device("mps")
    raise InputError(f"unknown device '{name}'; use one of {', '.join(KNOWN)}")


def _mps_available(torch) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def default_budget_bytes(device) -> int:
    return DEFAULT_GPU_BUDGET_BYTES if getattr(device, "type", str(device)) != "cpu" else DEFAULT_CPU_BUDGET_BYTES


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return (bool(oom) and isinstance(error, oom)) or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def run_with_memory_fallback(run: Callable[[object, int], T], device, budget_bytes: int | None = None) -> tuple[T, dict]:
    """Call run(device, tile_budget_bytes). On GPU out-of-memory, retry with half the budget up to
    OOM_RETRIES times, then on the CPU. Returns (result, notes for the metadata)."""
    import torch

    budget = int(budget_bytes or default_budget_bytes(device))
    notes: dict = {"device": str(device)}
    if device.type == "cpu":
        return run(device, budget), notes
    for attempt in range(OOM_RETRIES + 1):
        try:
            return run(device, budget), notes
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
            torch.cuda.empty_cache()
            log.warning("%s ran out of memory with a %d MiB tile budget (try %d)", device, budget >> 20, attempt + 1)
            budget //= 2
            notes["out_of_memory_retries"] = attempt + 1
    log.warning("%s keeps running out of memory; running on the CPU instead", device)
    cpu = torch.device("cpu")
    notes.update(device="cpu", fallback=f"{device} ran out of memory; ran on the CPU")
    return run(cpu, default_budget_bytes(cpu)), notes
