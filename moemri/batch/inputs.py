"""What a batch processes and where each result goes.

A BIDS dataset (a folder with dataset_description.json) is queried with pybids; its results form a
BIDS derivative dataset at OUTPUT: the source entities plus `desc-denoised`/`desc-superres`, and
the expert label map as a discrete segmentation (`desc-<task><Suffix>Experts_dseg`, the BIDS suffix
for a label map, with its `_dseg.tsv` look-up table). Any other folder is globbed and mirrored:
OUTPUT/<relative path>, the expert map beside it as `<name>_experts.<ext>`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io import SUPPORTED_EXTENSIONS

DESC = {"denoise": "denoised", "superres": "superres"}
DEFAULT_GLOB = "**/*"


@dataclass(frozen=True)
class Item:
    """One volume: its source, the names of its results, and its BIDS entities (empty for a folder)."""

    key: str  # the source's path relative to INPUT, with / separators: unique, readable
    source: Path
    image: Path
    expert_map: Path | None
    entities: dict = field(default_factory=dict)

    @property
    def sidecar(self) -> Path:
        return sidecar_of(self.image)

    @property
    def map_sidecar(self) -> Path | None:
        return sidecar_of(self.expert_map) if self.expert_map else None


def split_extension(name: str) -> tuple[str, str]:
    for ext in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext):
            return name[: -len(ext)], name[-len(ext) :]
    return name.rsplit(".", 1)[0], "." + name.rsplit(".", 1)[-1]


def sidecar_of(path: Path) -> Path:
    return path.with_name(split_extension(path.name)[0] + ".json")


def is_bids(root: Path) -> bool:
    return (Path(root) / "dataset_description.json").is_file()


def check_roots(input_root: Path, output_root: Path, bids: bool) -> None:
    """The input tree is never written to: OUTPUT may not be INPUT or lie inside it, except in a BIDS
    dataset's own derivatives/ folder, which pybids never reads as raw data."""
    inp, out = Path(input_root).resolve(), Path(output_root).resolve()
    if not inp.is_dir():
        raise InputError(f"{input_root}: not a folder (batch takes a folder or a BIDS dataset)")
    if out == inp:
        raise InputError(f"OUTPUT {output_root} is the input folder; the input tree is never written to")
    if out.is_relative_to(inp):
        if not (bids and out.is_relative_to(inp / "derivatives") and out != inp / "derivatives"):
            raise InputError(
                f"OUTPUT {output_root} lies inside INPUT {input_root}; the input tree is never written to "
                + ("(a BIDS dataset's derivatives/<name> folder is the one exception)" if bids else "(choose a folder outside it)")
            )
    if inp.is_relative_to(out):
        raise InputError(f"INPUT {input_root} lies inside OUTPUT {output_root}; choose a separate output folder")


def folder_items(input_root: Path, output_root: Path, task: str, pattern: str = DEFAULT_GLOB, with_map: bool = True) -> list[Item]:
    input_root, output_root = Path(input_root), Path(output_root)
    items = []
    for path in sorted(input_root.glob(pattern)):
        rel = path.relative_to(input_root)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if not path.name.lower().endswith(SUPPORTED_EXTENSIONS):
            continue
        stem, ext = split_extension(path.name)
        image = output_root / rel
        expert_map = image.with_name(f"{stem}_experts{ext}") if with_map else None
        items.append(Item(rel.as_posix(), path.resolve(), image, expert_map))
    return items


def derivative_name(source_name: str, desc: str, suffix: str | None = None) -> str:
    """Source entities in their order, any desc replaced by `desc`, before the suffix."""
    stem, ext = split_extension(source_name)
    parts = stem.split("_")
    entities, source_suffix = [p for p in parts[:-1] if not p.startswith("desc-")], parts[-1]
    return "_".join(entities + [f"desc-{desc}", suffix or source_suffix]) + ext


def _entity_names(layout, filters: dict) -> dict:
    """pybids names entities in full (acquisition); the file names and users say acq: take both."""
    import re

    short = {}
    for name, entity in layout.get_entities().items():
        found = re.search(r"([A-Za-z]+)-\(", getattr(entity, "pattern", "") or "")
        if found:
            short[found.group(1)] = name
    return {short.get(k, k): v for k, v in filters.items()}


def bids_items(
    input_root: Path,
    output_root: Path,
    task: str,
    *,
    subjects=None,
    sessions=None,
    suffixes=("T1w",),
    filters: dict | None = None,
    with_map: bool = True,
) -> list[Item]:
    from bids import BIDSLayout

    input_root, output_root = Path(input_root), Path(output_root)
    layout = BIDSLayout(str(input_root), validate=False)
    query = _entity_names(layout, filters or {})
    if subjects:
        query["subject"] = list(subjects)
    if sessions:
        query["session"] = list(sessions)
    if suffixes:
        query["suffix"] = list(suffixes)
    try:
        files = layout.get(return_type="object", extension=[".nii", ".nii.gz"], **query)
    except (ValueError, TypeError) as error:  # pybids names an unknown entity this way
        raise InputError(f"the BIDS query {query} is not valid for {input_root}: {error}") from None
    items = []
    for f in sorted(files, key=lambda f: f.path):
        source = Path(f.path)
        rel = source.relative_to(input_root)
        entities = {k: v for k, v in f.get_entities().items() if isinstance(v, (str, int))}
        suffix = entities.get("suffix", split_extension(source.name)[0].split("_")[-1])
        image = output_root / rel.parent / derivative_name(source.name, DESC[task])
        expert_map = None
        if with_map:
            expert_map = output_root / rel.parent / derivative_name(source.name, f"{DESC[task]}{suffix}Experts", "dseg")
        items.append(Item(rel.as_posix(), source.resolve(), image, expert_map, entities))
    return items
