"""MoEDiff-SR (issue 14): gate normalisation, seeded determinism, exact geometry on an oblique grid,
the CLI's gate maps, and that the shipped model beats B-spline on a crop of the validation head."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from moemri.methods.base import SPACING_OPTION
from moemri.methods.moediff.gate import load_balancing_loss, pixel_weights
from moemri.methods.registry import get_method
from moemri.volume import Volume, grid_with_spacing

# The shipped E = 3 model measured +2.29 dB on this in-plane x4 crop (12000 steps, best at 8200;
# the 3000-step model it replaced: +1.07 dB).
MIN_GAIN_OVER_BSPLINE_DB = 1.5

method = get_method("moediff-sr")
needs_weights = pytest.mark.skipif(method.availability() is not None, reason=str(method.availability()))


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("mixing", ["soft", "top1"])
def test_gate_weights_sum_to_one_at_every_pixel(mixing):
    logits = torch.randn(2, 3, 5, 7)
    weights = pixel_weights(torch.softmax(logits, 1), (40, 56), mixing)
    assert weights.shape == (2, 3, 40, 56)
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 40, 56))
    assert float(weights.min()) >= 0.0
    if mixing == "top1":
        assert set(torch.unique(weights).tolist()) <= {0.0, 1.0}


def test_load_balancing_term_is_one_when_balanced_and_larger_when_collapsed():
    balanced = torch.full((1, 4, 8, 8), 0.25)
    balanced[0, :, 0, :4] = torch.eye(4) * 0.5 + 0.125  # tie-breaking: each expert wins some tokens
    collapsed = torch.zeros(1, 4, 8, 8)
    collapsed[:, 0] = 1.0
    assert float(load_balancing_loss(collapsed)) == pytest.approx(4.0)
    assert float(load_balancing_loss(balanced)) < 1.5


def _slab(sample_volume, k0=70, k1=102, box=(48, 176, 36, 164)):
    j0, j1, i0, i1 = box
    a = np.ascontiguousarray(sample_volume.array[k0:k1, j0:j1, i0:i1], np.float32)
    origin = np.asarray(sample_volume.origin) + sample_volume.direction @ (np.array([i0, j0, k0]) * np.asarray(sample_volume.spacing))
    return Volume(a, sample_volume.spacing, tuple(origin), sample_volume.direction, "slab")


def _oblique(volume: Volume, degrees: float = 17.0) -> Volume:
    t = np.radians(degrees)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]) @ np.array(
        [[1, 0, 0], [0, np.cos(t / 2), -np.sin(t / 2)], [0, np.sin(t / 2), np.cos(t / 2)]]
    )
    return Volume(volume.array, volume.spacing, volume.origin, rotation @ volume.direction, volume.name)


@needs_weights
def test_same_seed_same_volume_and_exact_oblique_geometry(sample_volume):
    from moemri.degrade.resolution import thick_slices

    low = thick_slices(_oblique(_slab(sample_volume, 72, 96, (64, 160, 52, 148))), 4, axis="z")
    spacing = (1.0, 1.0, 1.25)  # a non-integer step along the thick axis
    options = {SPACING_OPTION: spacing, "steps": 2, "orientations": 1, "temperature": 1.0}
    first = method.run(low, experts=3, device="cpu", options=options)
    again = method.run(low, experts=3, device="cpu", options=options)
    np.testing.assert_array_equal(first.image.array, again.image.array)
    np.testing.assert_array_equal(first.expert_map.array, again.expert_map.array)
    other = method.run(low, experts=3, device="cpu", options={**options, "seed": 7})
    assert not np.array_equal(first.image.array, other.image.array)

    grid = grid_with_spacing(low, spacing)
    assert first.image.same_geometry(grid, atol=1e-9)
    for volume in [first.expert_map, *first.expert_probabilities, *first.expert_differences]:
        assert volume.same_geometry(grid, atol=1e-9)
    probabilities = np.stack([p.array for p in first.expert_probabilities])
    inside = first.expert_map.array > 0
    np.testing.assert_allclose(probabilities.sum(0)[inside], 1.0, atol=1e-4)
    assert set(np.unique(first.expert_map.array)) <= {0, 1, 2, 3}
    assert len(first.metadata["expert_tissue_shares"]) == 3


@needs_weights
def test_cli_writes_the_gate_maps(tmp_path, sample_volume):
    from moemri.degrade.resolution import blur_decimate
    from moemri.io import read_volume, write_volume

    low = blur_decimate(_slab(sample_volume, 78, 94, (64, 160, 52, 148)), 2)
    src, dst, gate = tmp_path / "low.nii.gz", tmp_path / "sr.nii.gz", tmp_path / "gate.nii.gz"
    write_volume(low, src)
    out = subprocess.run(
        [sys.executable, "-m", "moemri.cli.main", "superres", str(src), str(dst), "--method", "moediff-sr", "--experts", "3",
         "--spacing", "1", "1", "1", "--expert-map", str(gate), "--option", "steps=2", "--option", "orientations=1"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    image = read_volume(dst)
    for path in [gate, *(tmp_path / f"gate_expert{e}.nii.gz" for e in (1, 2, 3)), *(tmp_path / f"gate_expert{e}_difference.nii.gz" for e in (1, 2, 3))]:
        assert path.is_file(), path
        assert read_volume(path, allow_label_map=True).same_geometry(image, atol=1e-5)
    assert (tmp_path / "gate.ctbl").is_file() and (tmp_path / "gate.json").is_file()
    assert "Expert_1" in (tmp_path / "gate.ctbl").read_text()


@needs_weights
def test_trained_model_beats_bspline_on_the_validation_head(fetched):
    from moemri.degrade.resolution import blur_decimate
    from moemri.io import read_volume
    from moemri.masks import head_mask
    from moemri.metrics import psnr

    head = read_volume(fetched("mni152-2009"))
    reference = _slab(head, 80, 96, (40, 200, 28, 172))  # a 16-slice axial crop through the ventricles
    low = blur_decimate(reference, 4)
    options = {SPACING_OPTION: reference.spacing, "orientations": 1}
    restored = method.run(low, experts=3, device="cpu", options=options).image
    bspline = get_method("bspline").run(low, options={SPACING_OPTION: reference.spacing}).image
    mask = head_mask(reference.array)
    peak = float(reference.array[mask].max())
    gain = psnr(reference.array, restored.array, mask, peak) - psnr(reference.array, bspline.array, mask, peak)
    print("gain over B-spline", gain)
    assert gain > MIN_GAIN_OVER_BSPLINE_DB, gain
