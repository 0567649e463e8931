"""The BIDS derivative dataset's own files: dataset_description.json and .bidsignore."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from . import atomic

BIDS_VERSION = "1.10.0"
PIPELINE = "MoE-MRI"
# Files a Slicer user wants beside the results that BIDS has no name for.
BIDSIGNORE = ["*.ctbl", "*_expert[0-9]*", "batch-report*", "*/batch-report/*"]


def version() -> str:
    try:
        from importlib.metadata import version as package_version

        return package_version("moemri")
    except Exception:
        return "0.1.0"


def generated_by(identity: dict, weights_files: dict) -> dict:
    return {
        "Name": PIPELINE,
        "Version": version(),
        "Description": f"moemri batch {identity['task']} --method {identity['method']} (experts {identity['experts']})",
        "Method": identity["method"],
        "Experts": identity["experts"],
        "Options": identity["options"],
        "WeightsSHA256": identity["weights_sha256"],
        "WeightsFiles": weights_files,
    }


def write_dataset_description(output_root: Path, input_root: Path, identity: dict, weights_files: dict, overwrite: bool) -> Path:
    """One derivative dataset holds one run's settings: a second method goes to another OUTPUT
    (or replaces this one with --overwrite), so GeneratedBy always tells the truth."""
    path = Path(output_root) / "dataset_description.json"
    source_name = input_root.name
    try:
        source_name = json.loads((input_root / "dataset_description.json").read_text()).get("Name", source_name)
    except (OSError, ValueError):
        pass
    description = {
        "Name": f"{source_name}: MoE-MRI {identity['task']} ({identity['method']})",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by(identity, weights_files)],
        "SourceDatasets": [{"URL": Path(input_root).resolve().as_uri()}],
        "DatasetLinks": {"raw": Path(input_root).resolve().as_uri()},
    }
    if path.is_file() and not overwrite:
        try:
            previous = json.loads(path.read_text()).get("GeneratedBy", [{}])[0]
        except (OSError, ValueError, IndexError, AttributeError):
            previous = {}
        mine = description["GeneratedBy"][0]
        keys = ("Name", "Method", "Experts", "Options", "WeightsSHA256")
        if {k: previous.get(k) for k in keys} != {k: mine.get(k) for k in keys}:
            raise InputError(
                f"{output_root} holds a derivative made with other settings ({previous.get('Method')}, "
                f"experts {previous.get('Experts')}, options {previous.get('Options')}); "
                "choose another OUTPUT or pass --overwrite to replace it"
            )
    atomic.write_text(path, json.dumps(description, indent=2) + "\n")
    atomic.write_text(Path(output_root) / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
    return path


def unmatched_files(output_root: Path) -> list[str]:
    """Files of the derivative dataset that no BIDS rule for derivatives (or common files) names,
    after .bidsignore: [] when the naming follows the specification's schema (bidsschematools,
    installed with pybids)."""
    import fnmatch
    import re

    from bidsschematools import rules, schema

    bids_schema = schema.load_schema()
    patterns = []
    for group in (bids_schema.rules.files.common, bids_schema.rules.files.deriv):
        patterns += [re.compile(r["regex"]) for r in rules.regexify_filename_rules(group, bids_schema, level=2)]
    root = Path(output_root)
    ignore = [line.strip() for line in (root / ".bidsignore").read_text().splitlines() if line.strip()] if (root / ".bidsignore").is_file() else []
    unmatched = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if any(fnmatch.fnmatch(path.name, g) or fnmatch.fnmatch(rel, g) or fnmatch.fnmatch("/" + rel, g) for g in ignore):
            continue
        if not any(p.fullmatch(rel) for p in patterns):
            unmatched.append(rel)
    return unmatched
