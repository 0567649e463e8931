"""Output files: every path checked before any computation, and a set of files written all or none.

`check_output_paths` runs before a method starts, so that a bad output name costs a one-line
message, not a finished computation: the extension is one we can write (in any letter case), no
output is an input or another output (after resolving links), and each output's folder can be
written and is not in the way of a file.

`StagedOutputs` writes every file of one result under a temporary name in a hidden folder beside
its final name, and renames them all into place (os.replace, atomic within one filesystem) only
once every file is complete. Any exception on the way, KeyboardInterrupt included (the CLI turns
SIGTERM into one), removes what was staged, so an interrupted or failed write never leaves a
partial or 0-byte file at an output's name, and never an expert map without its image.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import InputError, OutputError

SUPPORTED_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
STAGING_PREFIX = ".moemri-staging-"
# What ITK's writers (with compression, as write_volume asks) put beside a detached header.
WRITTEN_DATA_FILES = {".nhdr": ".raw.gz", ".mhd": ".zraw"}
# The header line naming a detached voxel file (one file; lists and patterns are not followed).
_DATA_FILE_LINE = {".nhdr": re.compile(r"data ?file:\s*(\S+)$", re.I), ".mhd": re.compile(r"ElementDataFile\s*=\s*(\S+)$", re.I)}


def image_extension(path) -> str | None:
    """The supported extension of `path` in lower case (".nii.gz", ...), or None."""
    name = Path(path).name.lower()
    return next((e for e in SUPPORTED_EXTENSIONS if name.endswith(e)), None)


def require_supported_extension(path, verb: str) -> str:
    extension = image_extension(path)
    if extension is None:
        raise InputError(f"{path}: cannot {verb} this file type; supported are {', '.join(SUPPORTED_EXTENSIONS)}")
    return extension


def check_output_paths(images: Iterable, inputs: Iterable = (), sidecars: Iterable = ()) -> list[Path]:
    """Refuse, before any work, output paths that cannot be written or would destroy a file in use.

    `images` are volumes to write (their extension is checked), `sidecars` other files written with
    them (colour tables, legends). Returns the images' paths. Raises InputError (exit 65) for an
    output that is an input or another output or has an unknown extension, OutputError (exit 73)
    where the file cannot be created.
    """
    images, sidecars = [Path(p) for p in images], [Path(p) for p in sidecars]
    for path in images:
        extension = require_supported_extension(path, "write")
        if extension in WRITTEN_DATA_FILES:  # a detached header: ITK writes the voxels beside it
            sidecars.append(path.with_name(path.name[: -len(extension)] + WRITTEN_DATA_FILES[extension]))
    inputs = [Path(p) for p in inputs]
    inputs += [data for p in inputs for data in detached_data_files(p)]
    claimed: dict[Path, Path] = {}
    for path in images + sidecars:
        final = Path(os.path.abspath(path)).resolve()
        for source in inputs:
            if final == Path(os.path.abspath(source)).resolve() or _same_file(final, source):
                raise InputError(f"{path} is also the input {source}: writing it would destroy the input; choose another output name")
        if final in claimed:
            what = "given twice" if str(claimed[final]) == str(path) else f"the same file as {claimed[final]}"
            raise InputError(f"output {path} is {what}: two outputs would overwrite each other; give each its own name")
        claimed[final] = path
        _check_creatable(path, final)
    return images


def detached_data_files(header) -> list[Path]:
    """The voxel file a .nhdr or .mhd header names (none for other formats or inline data)."""
    header = Path(header)
    extension = image_extension(header)
    if extension not in WRITTEN_DATA_FILES or not header.is_file():
        return []
    pattern = _DATA_FILE_LINE[extension]
    try:
        lines = header.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        match = pattern.match(line.strip())
        if match and match.group(1).upper() not in ("LOCAL", "LIST"):
            return [header.parent / match.group(1)]
    return []


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_creatable(path: Path, final: Path) -> None:
    if final.is_dir():
        raise OutputError(f"{path} is a folder; give a file name for the output")
    folder = final.parent
    while not folder.exists():  # missing folders are created at write time; the first existing one decides
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{path}: {folder} is a file, not a folder")
    try:
        # os.access says yes to root and ignores read-only mounts; a real file says what the write will meet.
        handle, probe = tempfile.mkstemp(prefix=STAGING_PREFIX, dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"{path}: cannot write in the folder {folder} ({error.strerror or error})") from None


class StagedOutputs:
    """Stage files beside their final names; `commit()` renames them all, leaving the block
    without `commit()` removes them. Use as a context manager:

        with StagedOutputs() as staged:
            write_image(volume, staged.path(final))   # a temporary path in final's folder
            staged.path(legend).write_text(...)
            staged.commit()
    """

    def __init__(self):
        self._files: list[tuple[Path, Path]] = []  # (staged, final)
        self._folders: dict[Path, Path] = {}  # final folder -> staging folder
        self._created: list[Path] = []  # folders made for the outputs, removed again on failure
        self._committed = False

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, *exc_info) -> None:
        if not self._committed:
            self.discard()

    def path(self, final) -> Path:
        """Where to write `final` for now. The staged name keeps the final stem (a detached header
        names its data file by it) with a lower-case extension (ITK picks its writer by the case)."""
        final = Path(final)
        folder = final.parent
        if folder not in self._folders:
            missing = []
            probe = folder
            while not probe.exists():
                missing.append(probe)
                probe = probe.parent
            folder.mkdir(parents=True, exist_ok=True)
            self._created += reversed(missing)
            self._folders[folder] = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
        extension = image_extension(final)
        name = final.name[: -len(extension)] + extension if extension else final.name
        staged = self._folders[folder] / name
        self._files.append((staged, final))
        return staged

    def commit(self) -> list[Path]:
        """Rename every staged file into place; signals wait until all are moved. Returns the finals."""
        blocked = {signal.SIGINT, signal.SIGTERM}
        mask = getattr(signal, "pthread_sigmask", None)
        previous = mask(signal.SIG_BLOCK, blocked) if mask else None
        try:
            staged_names = {staged for staged, _ in self._files}
            for folder, staging in self._folders.items():
                # Files a writer added beside a staged one (the data file of a .nhdr or .mhd) go first.
                for extra in sorted(staging.iterdir()):
                    if extra not in staged_names:
                        os.replace(extra, folder / extra.name)
            for staged, final in self._files:
                os.replace(staged, final)
            self._committed = True
        finally:
            if mask:
                mask(signal.SIG_SETMASK, previous)
            self._remove_staging()
        return [final for _, final in self._files]

    def discard(self) -> None:
        self._remove_staging()
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:
                pass  # something else was put there meanwhile
        self._created.clear()

    def _remove_staging(self) -> None:
        for staging in self._folders.values():
            shutil.rmtree(staging, ignore_errors=True)
        self._folders.clear()
