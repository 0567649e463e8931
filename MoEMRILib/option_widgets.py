"""Controls built from a method's `OptionSpec`s: what the panel shows for the options the module
does not handle itself (diffusion steps and seed, patch radius, ...). Needs qt (Slicer).

One control per kind: int -> QSpinBox, float -> QDoubleSpinBox, bool -> QCheckBox, choice ->
QComboBox, floats -> QLineEdit ("1, 1, 2.5"). Each reports a new value through `on_change(spec,
value)`; the panel stores it in the parameter node (see method_options).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import qt

from moemri.methods.base import OptionSpec

from moemri.methods.options import coerce, format_value

log = logging.getLogger(__name__)

_LARGE = 2**31 - 1  # a QSpinBox range where the spec gives none


def option_label(spec: OptionSpec) -> str:
    return spec.name.replace("_", " ").capitalize() + ":"


class OptionControls:
    def __init__(self, container, on_change: Callable[[OptionSpec, Any], None]):
        self.container = container
        self.on_change = on_change
        self.layout = container.layout() or qt.QFormLayout(container)
        self.controls: dict[str, tuple[OptionSpec, Any]] = {}

    def show(self, specs: list[OptionSpec], values: dict[str, Any]) -> None:
        """Replace the controls by one per spec, showing `values` (else the spec's default)."""
        self.clear()
        for spec in specs:
            control = self._make(spec)
            control.toolTip = spec.help
            self.layout.addRow(option_label(spec), control)
            self.controls[spec.name] = (spec, control)
        self.set_values(values)
        self.container.visible = bool(specs)

    def clear(self) -> None:
        while self.layout.rowCount() > 0:
            self.layout.removeRow(0)  # deletes the label and the control
        self.controls = {}

    def set_values(self, values: dict[str, Any]) -> None:
        """Show values without reporting them back as changes."""
        for name, (spec, control) in self.controls.items():
            value = values.get(name, spec.default)
            blocked = control.blockSignals(True)
            try:
                self._set(spec, control, value)
            finally:
                control.blockSignals(blocked)

    def _make(self, spec: OptionSpec):
        report = lambda value, spec=spec: self._report(spec, value)  # noqa: E731
        if spec.kind == "int":
            control = qt.QSpinBox()
            control.setRange(int(spec.minimum) if spec.minimum is not None else -_LARGE, int(spec.maximum) if spec.maximum is not None else _LARGE)
            control.connect("valueChanged(int)", report)
        elif spec.kind == "float":
            control = qt.QDoubleSpinBox()
            control.decimals = 4
            control.setRange(spec.minimum if spec.minimum is not None else -1e9, spec.maximum if spec.maximum is not None else 1e9)
            control.singleStep = _step(spec)
            control.connect("valueChanged(double)", report)
        elif spec.kind == "bool":
            control = qt.QCheckBox()
            control.connect("toggled(bool)", report)
        elif spec.kind == "choice":
            control = qt.QComboBox()
            for choice in spec.choices:
                control.addItem(str(choice), choice)
            control.connect("currentIndexChanged(int)", lambda index, c=control: report(c.itemData(index)))
        else:  # "floats"
            control = qt.QLineEdit()
            control.connect("editingFinished()", lambda c=control: report(c.text))
        return control

    def _set(self, spec: OptionSpec, control, value) -> None:
        if spec.kind in ("int", "float"):
            control.value = value
        elif spec.kind == "bool":
            control.checked = bool(value)
        elif spec.kind == "choice":
            control.currentIndex = max(0, control.findData(value))
        else:
            control.text = format_value(spec, value)

    def _report(self, spec: OptionSpec, value) -> None:
        try:
            value = coerce(spec, value)
        except (TypeError, ValueError) as error:
            # A mistyped list of numbers: show the stored value again rather than a wrong one.
            log.warning("%s", error)
            return
        self.on_change(spec, value)


def _step(spec: OptionSpec) -> float:
    if spec.minimum is not None and spec.maximum is not None and spec.maximum > spec.minimum:
        return max((spec.maximum - spec.minimum) / 100.0, 1e-4)
    return 0.1
