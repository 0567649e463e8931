import json
import subprocess
import sys

import numpy as np
import pytest

from moemri.cli.main import main
from moemri.io import read_volume, write_volume


def moemri(*args):
    return subprocess.run([sys.executable, "-m", "moemri.cli.main", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_methods_json_lists_both_tasks(capsys):
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["task"] for r in rows} == {"denoise", "superres"}
    assert all("expert_counts" in r and "options" in r for r in rows)


def test_every_command_has_help_with_an_example():
    for command in ["methods", "denoise", "superres", "degrade", "bench", "data", "demo"]:
        out = moemri(command, "--help")
        assert out.returncode == 0 and "example" in out.stdout and f"moemri {command}" in out.stdout


def test_degrade_then_denoise_end_to_end_keeps_geometry(tmp_path, small_head):
    clean = tmp_path / "clean.nrrd"
    write_volume(small_head, clean)
    noisy = tmp_path / "noisy.nii.gz"
    out = moemri("degrade", clean, noisy, "--noise", 5, "--seed", 3)
    assert out.returncode == 0, out.stderr
    assert "5 % stationary Rician" in out.stdout
    result = tmp_path / "denoised.mha"
    out = moemri("denoise", noisy, result, "--method", "curvature-diffusion", "--option", "iterations=3")
    assert out.returncode == 0, out.stderr
    a, b = read_volume(noisy), read_volume(result)
    assert a.same_geometry(b, atol=1e-5)
    assert np.abs(a.array - b.array).mean() > 0.1


def test_superres_scale_and_spacing(tmp_path, small_head):
    src = tmp_path / "thick.nii.gz"
    out = moemri("degrade", _write(tmp_path, small_head), src, "--thick-slices", 3)
    assert out.returncode == 0, out.stderr
    thick = read_volume(src)
    assert thick.spacing[2] == pytest.approx(6.0)
    dst = tmp_path / "iso.nii.gz"
    out = moemri("superres", src, dst, "--method", "bspline", "--spacing", 2, 2, 2)
    assert out.returncode == 0, out.stderr
    iso = read_volume(dst)
    assert iso.spacing == pytest.approx((2.0, 2.0, 2.0))
    np.testing.assert_allclose(iso.physical_extent_corners().mean(0), thick.physical_extent_corners().mean(0), atol=1e-3)
    out = moemri("superres", src, tmp_path / "s.nii.gz", "--method", "linear", "--scale", 2)
    assert out.returncode == 0, out.stderr
    assert read_volume(tmp_path / "s.nii.gz").spacing == pytest.approx((1.0, 1.0, 3.0))


def _write(tmp_path, volume):
    path = tmp_path / "in.nii.gz"
    write_volume(volume, path)
    return path


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["denoise", "missing.nii.gz", "o.nii.gz", "--method", "curvature-diffusion"], 65, "missing.nii.gz"),
        (["denoise", "IN", "o.nii.gz", "--method", "no-such"], 65, "no denoise method 'no-such'"),
        (["superres", "IN", "o.nii.gz", "--method", "linear", "--spacing", 0, 1, 1], 65, "three positive numbers"),
        (["denoise", "IN", "o.nii.gz", "--method", "curvature-diffusion", "--option", "bad"], 65, "NAME=VALUE"),
    ],
)
def test_errors_are_one_line_with_reliable_exit_codes(tmp_path, small_head, args, code, message):
    path = _write(tmp_path, small_head)
    args = [path if a == "IN" else a for a in args]
    if args[1] == "missing.nii.gz":
        args[1] = tmp_path / "missing.nii.gz"
    out = moemri(*args)
    assert out.returncode == code, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_refuses_a_multi_frame_series(tmp_path):
    import SimpleITK as sitk

    frames = [sitk.GetImageFromArray(np.random.default_rng(i).random((8, 9, 10)).astype(np.float32)) for i in range(3)]
    path = tmp_path / "series.nrrd"
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    out = moemri("denoise", path, tmp_path / "o.nii.gz", "--method", "curvature-diffusion")
    assert out.returncode == 65 and "series.nrrd" in out.stderr


def test_expert_map_request_for_a_method_without_one_is_refused(tmp_path, small_head):
    out = moemri("denoise", _write(tmp_path, small_head), tmp_path / "o.nii.gz", "--method", "curvature-diffusion", "--expert-map", tmp_path / "m.nii.gz")
    assert out.returncode == 65 and "makes no expert map" in out.stderr


def test_data_list_names_every_volume_and_its_package():
    import subprocess
    import sys

    from moemri.data.sources import SOURCES

    out = subprocess.run([sys.executable, "-m", "moemri.cli.main", "data", "list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for source in SOURCES:
        assert source.id in out.stdout and f"{source.package}=={source.version}" in out.stdout
