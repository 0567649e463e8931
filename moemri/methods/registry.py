"""The list of methods. GUI pickers, the CLI and the benchmarks are filled from here."""
from __future__ import annotations

from ..errors import InputError
from .base import Method, Task

_METHODS: dict[str, Method] = {}
_BUILTINS_LOADED = False


def register(method: Method) -> Method:
    name = method.info.name
    if name in _METHODS:
        raise ValueError(f"method '{name}' is registered twice")
    _METHODS[name] = method
    return method


def _load_builtin_methods() -> None:
    # Importing a method module registers it; the list of modules is the list of methods.
    from . import classical_denoise, classical_resample  # noqa: F401
    from .smoe import method as _smoe  # noqa: F401
    from .remix import method as _remix  # noqa: F401
    from .moediff import method as _moediff  # noqa: F401
    from .nsmoe import method as _nsmoe  # noqa: F401


def all_methods(task: Task | None = None) -> list[Method]:
    global _BUILTINS_LOADED
    # A flag, not "is the list empty": a method module imported first must not hide the others.
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        _load_builtin_methods()
    return [m for m in _METHODS.values() if task is None or m.info.task == task]


def get_method(name: str, task: Task | None = None) -> Method:
    methods = {m.info.name: m for m in all_methods(task)}
    if name not in methods:
        raise InputError(f"no {task + ' ' if task else ''}method '{name}'; available: {', '.join(sorted(methods))}")
    return methods[name]
