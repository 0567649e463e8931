"""The bad-input sweep (issue 16, item 12): each case through the CLI or the API gives a clear
one-line message or a correct result, leaves the input byte-identical and leaves no partial output
(no file at the output's name, no staging folder beside it).

Volumes are small crops of the shipped sample head, so every case runs in about a second.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moemri import api
from moemri.cli.main import main
from moemri.errors import InputError, MethodUnavailable, OutputError
from moemri.io import read_volume, write_volume
from moemri.methods.base import Expert, LabelMap, MethodResult
from moemri.outputs import STAGING_PREFIX
from moemri.volume import Volume

REPO = Path(__file__).resolve().parents[2]


# --- helpers ------------------------------------------------------------------------------------


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def moemri(*args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "moemri.cli.main", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


def one_line(stderr: str) -> str:
    # A run that takes over a second (a loaded machine) draws the terminal progress bar first:
    # its lines are not messages.
    lines = [line for line in stderr.strip().splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and "Traceback" not in stderr and "internal error" not in stderr, stderr
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(STAGING_PREFIX))


@pytest.fixture(scope="module")
def crop(sample_volume) -> Volume:
    """20x40x50 voxels of the real head at 2 mm, in the sample's uint8 units."""
    array = sample_volume.array[60:100:2, 60:140:2, 50:150:2].astype(np.float32)
    return Volume(array, spacing=(2.0, 2.0, 2.0), origin=sample_volume.origin, direction=sample_volume.direction, name="crop")


@pytest.fixture
def head(tmp_path, crop) -> Path:
    """The crop as a uint8 .nii.gz, as scanners and the sample store it."""
    return write_volume(crop, tmp_path / "head.nii.gz", dtype=np.uint8)


def never_run(*args, **kwargs):
    raise AssertionError("the method ran although an output path was bad")


def expert_result(crop: Volume, probabilities: bool = False) -> MethodResult:
    """A result with a two-expert map, as a mixture of experts returns it."""
    labels = np.where(crop.array > crop.array.mean(), 2, 1).astype(np.uint8)
    experts = [Expert(1, "dark", (200, 40, 40), "dark tissue"), Expert(2, "bright", (40, 40, 200), "bright tissue")]
    maps = [crop.with_array((labels == e.label).astype(np.float32)) for e in experts] if probabilities else None
    return MethodResult(image=crop, expert_map=crop.with_array(labels), experts=experts, expert_probabilities=maps, metadata={"method": "test"})


# --- 1. the input is never destroyed -------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        ["denoise", "IN", "IN", "--method", "curvature-diffusion"],
        ["denoise", "IN", "OUT", "--method", "smoe-patch", "--expert-map", "IN"],
        ["denoise", "IN", "OUT", "--method", "smoe-patch", "--expert-map", "OUT"],
        ["superres", "IN", "LINK", "--method", "bspline", "--scale", "2"],
        ["degrade", "IN", "IN", "--noise", "3"],
    ],
    ids=["output-is-input", "map-is-input", "map-is-output", "output-links-to-input", "degrade-in-place"],
)
def test_outputs_that_would_overwrite_an_input_or_each_other_are_refused(tmp_path, head, arguments):
    (tmp_path / "link.nii.gz").symlink_to(head)
    names = {"IN": head, "OUT": tmp_path / "out.nii.gz", "LINK": tmp_path / "link.nii.gz"}
    before = sha256(head)
    out = moemri(*[names.get(a, a) for a in arguments])
    assert out.returncode == 65, out.stderr
    message = one_line(out.stderr)
    assert "overwrite" in message or "destroy the input" in message, message
    assert sha256(head) == before
    assert not (tmp_path / "out.nii.gz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.nii.gz", "link.nii.gz"]


def test_an_output_may_not_overwrite_the_data_file_of_a_detached_header(tmp_path, crop):
    """A header that keeps its voxels in in.raw.gz is the input; an output header in.NHDR beside it
    would have ITK write its own voxels to in.raw.gz, under the input's header."""
    header = write_volume(crop, tmp_path / "in.nhdr")
    data = tmp_path / "in.raw.gz"
    before = sha256(data)
    other = tmp_path / "other"
    other.mkdir()
    out = moemri("denoise", header, other / "in.nhdr", "--method", "curvature-diffusion", "--option", "iterations=1")
    assert out.returncode == 0, out.stderr  # another folder: no clash
    (tmp_path / "in2.nhdr").write_text(header.read_text())  # a second header naming the same data file
    out = moemri("denoise", tmp_path / "in2.nhdr", tmp_path / "in.NHDR", "--method", "curvature-diffusion")
    assert out.returncode == 65 and "in.raw.gz is also the input" in one_line(out.stderr)
    assert sha256(data) == before


def test_save_result_refuses_to_overwrite_an_input(tmp_path, head, crop):
    before = sha256(head)
    with pytest.raises(InputError, match="destroy the input"):
        api.save_result(expert_result(crop), tmp_path / "out.nii.gz", expert_map_path=head, inputs=[head])
    assert sha256(head) == before and not (tmp_path / "out.nii.gz").exists()


def test_an_output_named_like_a_per_expert_map_is_refused(tmp_path, head):
    out = moemri("denoise", head, tmp_path / "experts_expert1.nii.gz", "--method", "smoe-patch", "--expert-map", tmp_path / "experts.nii.gz")
    assert out.returncode == 65 and "per-expert map" in one_line(out.stderr)


# --- 2. truncated or inconsistent NIfTI ----------------------------------------------------------


def _nifti_bytes(crop: Volume, dtype, tmp_path) -> bytes:
    path = write_volume(crop, tmp_path / f"whole_{np.dtype(dtype).name}.nii", dtype=dtype)
    data = path.read_bytes()
    path.unlink()
    return data


def _damage(data: bytes, how: str) -> bytes:
    if how == "half":
        return data[: len(data) // 2]
    header = bytearray(data)
    if how == "more-slices":  # dim[3]: the header promises 3x the slices the file holds
        (slices,) = struct.unpack_from("<h", header, 46)
        struct.pack_into("<h", header, 46, 3 * slices)
    elif how == "vox-offset-past-the-data":
        struct.pack_into("<f", header, 108, float(len(data)))
    elif how == "vox-offset-inside-the-header":
        struct.pack_into("<f", header, 108, 100.0)
    elif how == "bad-magic":
        header[344:348] = b"xy1\0"
    elif how == "nan-pixdim":
        struct.pack_into("<f", header, 80, float("nan"))  # pixdim[1], the x voxel size
    return bytes(header)


@pytest.mark.parametrize(
    "dtype, how, name, words",
    [
        (np.int16, "half", "half_i16.nii.gz", "truncated"),
        (np.uint8, "half", "half_u8.nii.gz", "truncated"),
        (np.uint8, "half", "half_u8.nii", "truncated"),
        (np.int16, "more-slices", "slices.nii.gz", "truncated"),
        (np.uint8, "vox-offset-past-the-data", "offset.nii", "truncated"),
        (np.uint8, "vox-offset-inside-the-header", "offset_low.nii", "vox_offset"),
        (np.int16, "bad-magic", "magic.nii.gz", "magic"),  # 8. read as Analyze it lost its orientation
        (np.float32, "nan-pixdim", "nan_pixdim.nii", "voxel size"),  # 8. silently became 1 mm
    ],
)
def test_damaged_nifti_is_refused_naming_the_file(tmp_path, crop, dtype, how, name, words):
    data = _damage(_nifti_bytes(crop, dtype, tmp_path), how)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    before = sha256(path)
    with pytest.raises(InputError, match=words) as caught:
        read_volume(path)
    assert name in str(caught.value)
    out = moemri("denoise", path, tmp_path / "out.nii.gz", "--method", "curvature-diffusion", "--option", "iterations=1")
    assert out.returncode == 65, out.stderr
    assert name in one_line(out.stderr) and words in out.stderr
    assert sha256(path) == before and not (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_cut_off_gzip_stream_is_refused(tmp_path, crop, dtype):
    """A .nii.gz cut in the middle of its compressed stream: the float32 one gave an EOFError
    ("internal error") from the NaN re-check, the integer one was zero-filled with exit 0."""
    whole = write_volume(crop, tmp_path / "whole.nii.gz", dtype=dtype).read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(whole[: len(whole) // 2])
    out = moemri("denoise", path, tmp_path / "out.nii.gz", "--method", "curvature-diffusion", "--option", "iterations=1")
    assert out.returncode == 65, out.stderr
    assert "cut.nii.gz is truncated or damaged" in one_line(out.stderr)
    assert not (tmp_path / "out.nii.gz").exists()


def test_intact_nifti_still_reads(tmp_path, crop):
    """The checks pass real files: uint8, int16 and float32, .nii and .nii.gz, and the sample."""
    for dtype in (np.uint8, np.int16, np.float32):
        for extension in (".nii", ".nii.gz"):
            path = write_volume(crop, tmp_path / f"ok_{np.dtype(dtype).name}{extension}", dtype=dtype)
            np.testing.assert_array_equal(read_volume(path).array, crop.array)


# --- 3. writes are atomic ----------------------------------------------------------------------

SIGNAL_WHILE_WRITING = """
import os, signal, sys, time
import SimpleITK as sitk
from moemri.cli.main import main

write = sitk.WriteImage

def write_then_signal(*args, **kwargs):
    write(*args, **kwargs)  # the bytes are on disk: a kill now would leave them
    os.kill(os.getpid(), signal.{name})
    time.sleep(30)

sitk.WriteImage = write_then_signal
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("name, code, word", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "cancelled")])
def test_a_signal_while_writing_leaves_no_output(tmp_path, head, name, code, word):
    script = tmp_path / "signal_while_writing.py"
    script.write_text(SIGNAL_WHILE_WRITING.replace("{name}", name))
    output_dir = tmp_path / "results"
    output_dir.mkdir()
    out = subprocess.run(
        [sys.executable, str(script), "superres", str(head), str(output_dir / "iso.nii.gz"), "--method", "bspline", "--scale", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == code, (out.returncode, out.stderr)
    assert word in one_line(out.stderr)
    assert list(output_dir.iterdir()) == []  # neither iso.nii.gz nor a staging folder


def test_a_failing_write_leaves_no_file_and_an_old_file_intact(tmp_path, crop, monkeypatch):
    import SimpleITK as sitk

    target = tmp_path / "out.nrrd"
    target.write_bytes(b"the previous result")

    def write_half_then_fail(image, path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 100)  # what a full disk or a kill leaves
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(sitk, "WriteImage", write_half_then_fail)
    with pytest.raises(RuntimeError):
        write_volume(crop, target)
    assert target.read_bytes() == b"the previous result"
    with pytest.raises(RuntimeError):
        write_volume(crop, tmp_path / "new" / "deeper" / "out.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nrrd"]  # nor the folders made for it


def test_detached_header_formats_keep_their_data_file(tmp_path, crop):
    for name, data in (("vol.nhdr", "vol.raw.gz"), ("vol.mhd", "vol.zraw")):
        path = write_volume(crop, tmp_path / name)
        assert (tmp_path / data).is_file() and data in path.read_text(errors="replace")
        np.testing.assert_array_equal(read_volume(path).array, crop.array)
    assert leftovers(tmp_path) == []


# --- 4. all outputs or none ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["bad-extension", "unwritable-folder"])
def test_an_unwritable_expert_map_writes_nothing(tmp_path, crop, where, read_only_folder):
    map_path = tmp_path / "experts.png" if where == "bad-extension" else read_only_folder / "experts.nii.gz"
    with pytest.raises((InputError, OutputError)):
        api.save_result(expert_result(crop), tmp_path / "out.nii.gz", expert_map_path=map_path)
    assert not (tmp_path / "out.nii.gz").exists() and leftovers(tmp_path) == []


def test_a_failure_midway_writes_nothing(tmp_path, crop, monkeypatch):
    """The image and the map are written, a per-expert map fails: none of them appears."""
    import moemri.io

    real = moemri.io.write_image
    calls = []

    def fail_on_the_third(volume, path, dtype=np.float32):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(volume, path, dtype)

    monkeypatch.setattr(moemri.io, "write_image", fail_on_the_third)
    with pytest.raises(OSError):
        api.save_result(expert_result(crop, probabilities=True), tmp_path / "out.nii.gz", expert_map_path=tmp_path / "experts.nii.gz")
    assert len(calls) == 3 and list(tmp_path.iterdir()) == []


def test_all_outputs_of_a_mixture_appear_together(tmp_path, crop):
    written = api.save_result(expert_result(crop, probabilities=True), tmp_path / "out.nii.gz", expert_map_path=tmp_path / "experts.NII.GZ")
    names = ["out.nii.gz", "experts.NII.GZ", "experts.ctbl", "experts.json", "experts_expert1.NII.GZ", "experts_expert2.NII.GZ"]
    assert [p.name for p in written] == names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert json.loads((tmp_path / "experts.json").read_text())["probability_maps"] == {"1": "experts_expert1.NII.GZ", "2": "experts_expert2.NII.GZ"}
    np.testing.assert_array_equal(read_volume(tmp_path / "experts.NII.GZ", allow_label_map=True).array, expert_result(crop).expert_map.array)


def test_difference_maps_and_further_label_maps_are_written_with_the_expert_map(tmp_path, crop):
    result = expert_result(crop, probabilities=True)
    result.expert_differences = [crop.with_array(np.where(result.expert_map.array == e.label, 1.0, 0.0).astype(np.float32) * e.label) for e in result.experts]
    halves = crop.with_array((crop.array > np.median(crop.array)).astype(np.uint8) + 1)
    result.label_maps = [LabelMap("orientation", "kernel orientation", halves, [Expert(1, "axial", (1, 2, 3)), Expert(2, "sagittal", (4, 5, 6))])]
    written = api.save_result(result, tmp_path / "out.nii.gz", expert_map_path=tmp_path / "experts.nii.gz")
    names = ["out.nii.gz", "experts.nii.gz", "experts.ctbl", "experts.json", "experts_expert1.nii.gz", "experts_expert2.nii.gz",
             "experts_expert1_difference.nii.gz", "experts_expert2_difference.nii.gz", "experts_labels-orientation.nii.gz", "experts_labels-orientation.ctbl"]
    assert sorted(p.name for p in written) == sorted(names) == sorted(p.name for p in tmp_path.iterdir())
    legend = json.loads((tmp_path / "experts.json").read_text())
    assert legend["difference_maps"] == {"1": "experts_expert1_difference.nii.gz", "2": "experts_expert2_difference.nii.gz"}
    entry = legend["label_maps"]["orientation"]
    assert entry["file"] == "experts_labels-orientation.nii.gz" and [e["name"] for e in entry["labels"]] == ["axial", "sagittal"]
    assert (tmp_path / "experts_labels-orientation.ctbl").read_text().splitlines()[2:] == ["1 axial 1 2 3 255", "2 sagittal 4 5 6 255"]
    np.testing.assert_array_equal(read_volume(tmp_path / "experts_expert2_difference.nii.gz", allow_label_map=True).array, result.expert_differences[1].array)
    np.testing.assert_array_equal(read_volume(tmp_path / "experts_labels-orientation.nii.gz", allow_label_map=True).array, halves.array)
    with pytest.raises(ValueError, match="lower-case"):
        LabelMap("Kernel Orientation", "x", halves, [])


@pytest.mark.parametrize("name", ["experts_expert2_difference.nii.gz", "experts_labels-orientation.nii.gz"])
def test_an_output_named_like_a_difference_or_label_map_is_refused_before_the_run(tmp_path, head, name):
    with pytest.raises(InputError, match="per-expert map"):
        api.check_outputs(tmp_path / name, tmp_path / "experts.nii.gz", inputs=[head])


def test_cli_refuses_a_bad_expert_map_before_computing(tmp_path, head, monkeypatch, capsys):
    monkeypatch.setattr(api, "run", never_run)
    code = main(["denoise", str(head), str(tmp_path / "out.nii.gz"), "--method", "smoe-patch", "--expert-map", str(tmp_path / "experts.png")])
    assert code == 65 and "experts.png: cannot write this file type" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.nii.gz"]


# --- 5. every output path checked first ---------------------------------------------------------


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write in, root included (chmod does not stop root: chattr +i does)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if _writable(folder):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0 if shutil.which("chattr") else False
    if _writable(folder):
        folder.chmod(0o755)
        pytest.skip("cannot make a folder read-only here (root without chattr)")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def _writable(folder: Path) -> bool:
    try:
        (folder / "probe").write_bytes(b"")
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


@pytest.mark.parametrize("case", ["unwritable-folder", "parent-is-a-file", "folder-named-like-the-output", "unknown-extension"])
def test_bad_output_paths_are_refused_before_computing(tmp_path, head, case, monkeypatch, capsys, request):
    if case == "unwritable-folder":
        output, code, words = request.getfixturevalue("read_only_folder") / "out.nii.gz", 73, "cannot write in the folder"
    elif case == "parent-is-a-file":
        output, code, words = head / "out.nii.gz", 73, "is a file, not a folder"
    elif case == "folder-named-like-the-output":
        (tmp_path / "out.nii.gz").mkdir()
        output, code, words = tmp_path / "out.nii.gz", 73, "is a folder"
    else:
        output, code, words = tmp_path / "out.nii.zip", 65, "cannot write this file type"
    monkeypatch.setattr(api, "run", never_run)
    assert main(["superres", str(head), str(output), "--method", "bspline", "--spacing", "1", "1", "1"]) == code
    assert words in one_line(capsys.readouterr().err)


def test_upper_case_extension_is_written(tmp_path, head, crop):
    out = moemri("superres", head, tmp_path / "ISO.NII.GZ", "--method", "bspline", "--spacing", 2, 2, 2)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ISO.NII.GZ", "head.nii.gz"]
    result = read_volume(tmp_path / "ISO.NII.GZ")
    assert result.same_geometry(crop, atol=1e-5)
    assert np.abs(result.array - crop.array).max() < 1.0  # B-spline onto the same grid gives the voxels back


# --- 6. NaN/Inf: the hint names an option that exists ------------------------------------------


def test_nonfinite_voxels_refused_with_a_hint_that_works(tmp_path, crop):
    array = crop.array.copy()
    array[5, 10, 10], array[6, 20, 30] = np.nan, np.inf
    path = write_volume(crop.with_array(array), tmp_path / "holes.nii.gz")
    out = moemri("degrade", path, tmp_path / "noisy.nii.gz", "--noise", 3)
    assert out.returncode == 65 and "--replace-nonfinite" in one_line(out.stderr)
    out = moemri("degrade", path, tmp_path / "noisy.nii.gz", "--noise", 3, "--replace-nonfinite")
    assert out.returncode == 0, out.stderr
    assert "warning" in out.stderr and "replaced 2 NaN or infinite voxels" in out.stderr
    assert np.isfinite(read_volume(tmp_path / "noisy.nii.gz").array).all()


# --- 7. the weights folder ------------------------------------------------------------------------


@pytest.fixture
def weights_copy(tmp_path):
    """A copy of the shipped SMoE weights in a folder of its own ($MOEMRI_WEIGHTS)."""
    root = tmp_path / "weights"
    shutil.copytree(REPO / "Resources" / "Weights" / "smoe", root / "smoe")
    return root


def _break(root: Path, how: str) -> None:
    folder = root / "smoe"
    if how == "invalid-manifest":
        (folder / "manifest.json").write_text('{"files": {"backbone.pt": ')
    elif how == "deleted-manifest":
        (folder / "manifest.json").unlink()
    elif how == "unpickles-badly":
        # A file whose checksum matches its (re-made) manifest entry but is no torch file at all.
        (folder / "backbone.pt").write_bytes(b"PK\x03\x04 not a torch archive" * 10)
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["files"]["backbone.pt"]["sha256"] = sha256(folder / "backbone.pt")
        (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "how, words",
    [
        ("invalid-manifest", "manifest.json is not valid JSON"),
        ("deleted-manifest", "manifest.json is missing"),
        ("unpickles-badly", "backbone.pt could not be loaded"),
    ],
)
def test_broken_weights_folder_gives_a_clear_message(tmp_path, head, weights_copy, how, words):
    _break(weights_copy, how)
    env = {**os.environ, "MOEMRI_WEIGHTS": str(weights_copy)}
    out = moemri("denoise", head, tmp_path / "out.nii.gz", "--method", "smoe-patch", "--experts", 1, env=env)
    assert out.returncode == 69, out.stderr
    message = one_line(out.stderr)
    assert words in message and "make train-smoe" in message, message
    if how == "deleted-manifest":
        assert "are not in" not in message  # the files are there; the manifest is not
    assert not (tmp_path / "out.nii.gz").exists()
    listing = moemri("methods", env=env)
    assert listing.returncode == 0 and "unavailable" in listing.stdout


def test_weights_loader_raises_method_unavailable(weights_copy):
    from moemri import weights

    _break(weights_copy, "unpickles-badly")
    with pytest.raises(MethodUnavailable, match="could not be loaded"):
        weights.load_checked("backbone.pt", weights_copy / "smoe", "make train-smoe")


def test_saved_weights_carry_their_own_hash_not_an_old_entrys(tmp_path):
    import torch

    from moemri import weights

    stale = {"sha256": "0" * 64, "steps": 10}  # an entry copied from an older manifest
    digest = weights.save_with_entry({"w": torch.ones(3)}, "w.pt", stale, tmp_path)
    assert digest == weights.sha256_of(tmp_path / "w.pt") != stale["sha256"]
    tensors, entry = weights.load_checked("w.pt", tmp_path, "make train-x")
    assert entry["steps"] == 10 and torch.equal(tensors["w"], torch.ones(3))


# --- 8. orientation-losing headers (cases in the NIfTI sweep above) ----------------------------


def test_big_endian_nifti_still_reads(tmp_path, crop):
    import nibabel

    data = crop.array.transpose().astype(">i2")  # nibabel indexes (i, j, k)
    nibabel.save(nibabel.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "big.nii.gz")
    np.testing.assert_array_equal(read_volume(tmp_path / "big.nii.gz").array, crop.array)
