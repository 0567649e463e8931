"""Writes that are either complete or absent: a temporary name in the destination's own folder
(so the rename never crosses a filesystem) and os.replace, which is atomic on POSIX and Windows.
An interrupted run leaves at most hidden `.part-*` files or folders, which the next run for that
volume removes. A result of several files (image, expert map, colour table, legend) is written
whole into a hidden `.part-<tag>/` folder beside its destination, under the final names, so that
every name derived from a stem comes out right, and then moved out file by file.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

PART_PREFIX = ".part-"


def part_name(final: Path, tag: str) -> Path:
    """The hidden temporary sibling of `final`."""
    return final.with_name(f"{PART_PREFIX}{tag}-{final.name}")


def new_tag() -> str:
    return uuid.uuid4().hex[:10]


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = part_name(path, new_tag())
    try:
        part.write_bytes(data)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


def staging_folder(destination: Path, tag: str) -> Path:
    folder = Path(destination) / f"{PART_PREFIX}{tag}"
    folder.mkdir(parents=True)
    return folder


def publish_staged(staged: list[Path], destination: Path) -> list[Path]:
    """Move staged files into `destination` in the given order; returns their final paths."""
    finals = []
    for path in staged:
        final = Path(destination) / path.name
        os.replace(path, final)
        finals.append(final)
    return finals


def remove_folder(folder: Path) -> None:
    if folder.is_dir():
        for p in folder.iterdir():
            p.unlink(missing_ok=True)
        folder.rmdir()


def remove_stale_parts(final: Path) -> list[Path]:
    """Delete leftovers of an interrupted write of `final` or of names derived from its stem."""
    stem = final.name.split(".")[0]
    removed = []
    if final.parent.is_dir():
        for p in final.parent.glob(f"{PART_PREFIX}*"):
            if p.is_dir():
                if any(q.name.split(".")[0] == stem for q in p.iterdir()):
                    remove_folder(p)
                    removed.append(p)
                continue
            rest = p.name[len(PART_PREFIX) :].split("-", 1)
            if len(rest) == 2 and (rest[1].split(".")[0] == stem or rest[1].startswith(stem + "_expert")):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed
