"""Method options as a front end edits them: checked values, text, and a JSON store by method.

A method declares its options as `OptionSpec`s. A front end handles a few itself (the Slicer
modules: the noise level for denoising, the output spacing for super-resolution) and shows a
generic control for every other one (steps and seed of a diffusion model, patch radius of
non-local means, ...). Slicer's `@parameterNodeWrapper` class has fixed fields, so the modules keep
these values in one string field as JSON, keyed by method (`load_store`, `stored_options`,
`with_option`): switching methods keeps each method's settings, and a saved scene restores them.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Iterable

from .base import OptionSpec
from .choices import declared_options

log = logging.getLogger(__name__)


def generic_options(method_name: str, handled: Iterable[str] = ()) -> list[OptionSpec]:
    """The method's options that the module does not handle itself, in declaration order."""
    handled = set(handled)
    return [spec for name, spec in declared_options(method_name).items() if name not in handled]


def coerce(spec: OptionSpec, value) -> Any:
    """`value` as the option's kind, clamped to its range; ValueError if it cannot be one."""
    if spec.kind == "bool":
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if spec.kind == "choice":
        if value not in spec.choices:
            raise ValueError(f"{spec.name}: {value!r} is not one of {list(spec.choices)}")
        return value
    if spec.kind == "floats":
        numbers = parse_floats(value) if isinstance(value, str) else tuple(float(v) for v in value)
        return tuple(_clamp(spec, v) for v in numbers)
    if spec.kind == "int":
        return int(round(_clamp(spec, float(value))))
    if spec.kind == "float":
        return _clamp(spec, float(value))
    raise ValueError(f"{spec.name}: unknown option kind {spec.kind!r}")


def parse_floats(text: str) -> tuple[float, ...]:
    """'1, 1.5 2' -> (1.0, 1.5, 2.0): commas, spaces or 'x' between the numbers."""
    parts = text.replace("x", " ").replace(",", " ").split()
    if not parts:
        raise ValueError("no numbers given")
    return tuple(float(p) for p in parts)


def format_value(spec: OptionSpec, value) -> str:
    if spec.kind == "floats":
        return ", ".join(f"{float(v):g}" for v in value)
    return str(value)


def load_store(text: str) -> dict[str, dict[str, Any]]:
    """The JSON text of the parameter node as {method: {option: value}}; {} if it is unreadable
    (a hand-edited or truncated scene must not stop the module)."""
    if not text:
        return {}
    try:
        store = json.loads(text)
    except ValueError:
        log.warning("ignoring unreadable method options in the parameter node: %r", text[:80])
        return {}
    return {str(k): dict(v) for k, v in store.items() if isinstance(v, dict)} if isinstance(store, dict) else {}


def stored_options(text: str, method_name: str, handled: Iterable[str] = ()) -> dict[str, Any]:
    """The method's generic option values kept in `text`, each checked against its spec.

    Values for options the method no longer declares, or that no longer fit, are dropped, so the
    method's default applies.
    """
    saved = load_store(text).get(method_name, {})
    options = {}
    for spec in generic_options(method_name, handled):
        if spec.name not in saved:
            continue
        try:
            options[spec.name] = coerce(spec, saved[spec.name])
        except (TypeError, ValueError) as error:
            log.warning("ignoring the saved value of %s for %s: %s", spec.name, method_name, error)
    return options


def current_value(text: str, method_name: str, spec: OptionSpec) -> Any:
    """What a control shows: the stored value, else the method's default."""
    return stored_options(text, method_name).get(spec.name, spec.default)


def with_option(text: str, method_name: str, spec: OptionSpec, value) -> str:
    """`text` with one option value of one method replaced (checked first); the others are kept."""
    store = load_store(text)
    value = coerce(spec, value)
    store.setdefault(method_name, {})[spec.name] = list(value) if isinstance(value, tuple) else value
    return json.dumps(store, sort_keys=True)


def _clamp(spec: OptionSpec, value: float) -> float:
    if value != value:  # NaN
        raise ValueError(f"{spec.name}: not a number")
    if spec.minimum is not None:
        value = max(float(spec.minimum), value)
    if spec.maximum is not None:
        value = min(float(spec.maximum), value)
    return value


def output_spacing_mm(input_spacing, mode: str, scale_factor: float, spacing_xyz) -> tuple[float, float, float]:
    """The super-resolution target grid: `spacing_xyz` as given (mode "spacing"), or the input's
    spacing divided by `scale_factor` along every axis (mode "scale": 2 turns 1x1x5 mm into
    0.5x0.5x2.5 mm)."""
    if mode == "scale":
        if scale_factor <= 0:
            raise ValueError(f"the scale factor must be positive, not {scale_factor}")
        return tuple(float(s) / float(scale_factor) for s in input_spacing)
    if mode != "spacing":
        raise ValueError(f"the output resolution is given as 'spacing' or 'scale', not {mode!r}")
    return tuple(float(s) for s in spacing_xyz)
