"""Methods registered from outside moemri for the web demo: a test double or a user's plugin.

`MOEMRI_WEB_EXTRA_METHODS="package.module:Name[,other.module:Name]"`: each `Name` is a method class
(instantiated without arguments) or a method object. The background worker re-creates it in its
own process from the class (moemri.background.protocol.method_source), so the module must be
importable by path: a top-level module in a folder, or a package.
"""
from __future__ import annotations

import importlib
import os

from moemri.methods import registry

ENVIRONMENT_VARIABLE = "MOEMRI_WEB_EXTRA_METHODS"


def register_extra_methods(spec: str | None = None) -> list[str]:
    """Register the methods named in `spec` (default: the environment variable); returns their
    registry names. A method already registered under the same name is left as it is."""
    spec = os.environ.get(ENVIRONMENT_VARIABLE, "") if spec is None else spec
    names = []
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        module_name, _, attribute = entry.partition(":")
        if not module_name or not attribute:
            raise ValueError(f"{ENVIRONMENT_VARIABLE}: '{entry}' is not module:attribute")
        value = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
        method = value() if isinstance(value, type) else value
        name = method.info.name
        if name not in {m.info.name for m in registry.all_methods()}:
            registry.register(method)
        names.append(name)
    return names
