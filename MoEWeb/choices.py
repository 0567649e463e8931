"""What the pickers offer, as plain data for the page: tasks, methods, expert counts and the
method options as generic fields. Everything comes from the registry through the core's
moemri.methods.choices and moemri.methods.options, so a method added to the core (or registered by a
plugin) appears here without a change.
"""
from __future__ import annotations

from typing import Any

from moemri.methods.choices import TASKS, methods_for_task, selection_text
from moemri.methods.options import coerce, format_value, generic_options

TASK_TITLES = {"denoise": "Denoising", "superres": "Super-resolution"}


def task_items() -> list[dict[str, str]]:
    return [{"title": TASK_TITLES.get(task, task), "value": task} for task in TASKS]


def method_items(task: str) -> list[dict[str, Any]]:
    """The task's methods, mixture-of-experts first; one that cannot run here is disabled and
    says why."""
    items = []
    for choice in methods_for_task(task):
        items.append({
            "title": choice.label,
            "value": choice.name,
            "props": {"disabled": bool(choice.unavailable), "subtitle": choice.unavailable or choice.info.description},
        })
    return items


def default_method(task: str, preferred: str | None = None) -> str | None:
    """`preferred` if the task offers it and it runs here, else the first method that runs here."""
    choices = methods_for_task(task)
    runnable = [c.name for c in choices if not c.unavailable]
    if preferred in runnable:
        return preferred
    return runnable[0] if runnable else (choices[0].name if choices else None)


def method_note(task: str, method: str | None, volume=None) -> str:
    """The method's description, why it cannot run here, and what it says about this input."""
    for choice in methods_for_task(task):
        if choice.name == method:
            lines = [choice.tooltip]
            described = selection_text(method, volume) if volume is not None else ""
            if described:
                lines.append(described)
            return "\n".join(lines)
    return ""


def expert_items(task: str, method: str | None) -> tuple[list[int], int]:
    """(the expert counts the method offers, its default)."""
    for choice in methods_for_task(task):
        if choice.name == method:
            return list(choice.expert_counts), choice.default_experts
    return [1], 1


def option_fields(method: str | None) -> list[dict[str, Any]]:
    """One field per declared option of the method: name, kind, help, choices, range."""
    if not method:
        return []
    fields = []
    for spec in generic_options(method):
        fields.append({
            "name": spec.name,
            "label": spec.name.replace("_", " "),
            "kind": spec.kind,
            "help": spec.help,
            "choices": list(spec.choices),
            "min": spec.minimum,
            "max": spec.maximum,
        })
    return fields


def default_option_values(method: str | None) -> dict[str, Any]:
    """The fields' values as the page edits them (a list of numbers is text: "1, 1, 2")."""
    if not method:
        return {}
    return {spec.name: to_field(spec, spec.default) for spec in generic_options(method)}


def to_field(spec, value) -> Any:
    if spec.kind == "floats":
        return format_value(spec, value)
    return value


def options_from_fields(method: str, values: dict[str, Any]) -> dict[str, Any]:
    """The page's field values checked and converted to the method's kinds (clamped to range);
    ValueError names the option that does not fit."""
    options = {}
    for spec in generic_options(method):
        if spec.name not in values:
            continue
        value = values[spec.name]
        if value is None or (isinstance(value, str) and not value.strip() and spec.kind != "choice"):
            raise ValueError(f"{spec.name}: no value given")
        try:
            options[spec.name] = coerce(spec, value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{spec.name}: {error}") from None
    return options
