"""The sparse mixture-of-experts denoisers (Deng and Campbell, arXiv:2501.14198) with the shipped weights."""
import shutil

import numpy as np
import pytest

from moemri import api
from moemri.degrade.noise import add_rician
from moemri.errors import InputError, MethodUnavailable
from moemri.masks import head_mask
from moemri.methods.registry import get_method
from moemri.metrics import psnr
from moemri.volume import Volume

SHIPPED_COUNTS = (1, 4)  # trained expert counts of smoe-patch
MIXTURE_GAIN_DB = -0.15  # K = 4 over K = 1 on the crop at 5 %: at least this (-0.035 measured)


@pytest.fixture(scope="module")
def crop(sample_volume):
    """A real crop of the validation head (never trained on): 24 central axial slices, 1 mm."""
    from moemri.bench.cases import central_slab

    slab = central_slab(sample_volume, 24.0)
    a = slab.array[:, 30:200, 20:180].copy()
    origin = np.asarray(slab.origin) + slab.direction @ (np.array([20, 30, 0]) * np.asarray(slab.spacing))
    return Volume(a, slab.spacing, tuple(origin), slab.direction, "crop")


@pytest.fixture(scope="module")
def noisy5(crop):
    return add_rician(crop, 5, seed=11)[0]


def test_methods_are_registered_with_their_expert_counts():
    patch, segment = get_method("smoe-patch", "denoise"), get_method("smoe-segment", "denoise")
    assert patch.info.expert_counts == SHIPPED_COUNTS and patch.info.default_experts == 4
    assert segment.info.expert_counts == (4,)
    assert patch.info.has_expert_map and segment.info.has_expert_map
    assert patch.availability() is None and segment.availability() is None, patch.availability()


def test_shipped_model_beats_nonlocal_means_on_the_validation_head(crop, noisy5):
    mask = head_mask(crop.array)
    peak = float(crop.array[mask].max())
    scores = {
        name: psnr(crop.array, api.denoise(noisy5, name, **kw).image.array, mask, peak)
        for name, kw in (("nlmeans-rician", {}), ("smoe-patch", {"experts": 4}))
    }
    noisy = psnr(crop.array, noisy5.array, mask, peak)
    assert scores["smoe-patch"] > scores["nlmeans-rician"] + 1.0, scores  # +1.19 dB measured
    assert scores["smoe-patch"] > noisy + 6.0, (noisy, scores)


def test_holds_back_on_a_nearly_clean_coarse_clinical_scan(crop):
    """The sigma-map input: at 1 % noise on a 2x2x3 mm 8-bit copy, classical denoisers remove
    anatomy (non-local means ends ~6 dB below its input in the benchmark); the SMoE must not."""
    from moemri.degrade.resolution import coarse_copy

    clean = coarse_copy(crop, (2.0, 2.0, 3.0), quantise_bits=8)
    noisy = add_rician(clean, 1, seed=5)[0]
    mask = head_mask(clean.array)
    peak = float(clean.array[mask].max())
    before = psnr(clean.array, noisy.array, mask, peak)
    after = psnr(clean.array, api.denoise(noisy, "smoe-patch", experts=4).image.array, mask, peak)
    nlm = psnr(clean.array, api.denoise(noisy, "nlmeans-rician").image.array, mask, peak)
    assert after > before + 1.0, (before, after)
    assert after > nlm + 3.0, (nlm, after)


@pytest.mark.parametrize("name, experts", [("smoe-patch", 1), ("smoe-patch", 4), ("smoe-segment", 4)])
def test_expert_map_matches_the_experts_and_the_input_grid(noisy5, name, experts):
    result = api.denoise(noisy5, name, experts=experts)
    labels = result.expert_map.array
    assert result.expert_map.same_geometry(noisy5) and result.image.same_geometry(noisy5)
    assert np.issubdtype(labels.dtype, np.integer)
    assert [e.label for e in result.experts] == list(range(1, experts + 1))
    used = set(np.unique(labels)) - {0}
    assert used <= {e.label for e in result.experts}
    assert labels[~head_mask(noisy5.array)].max() == 0  # nothing outside the head
    if experts > 1:
        assert len(used) >= 2, "the gate sent the whole head to one expert"
    colours = [e.color for e in result.experts]
    assert len(set(colours)) == len(colours) and all(e.name and e.description for e in result.experts)
    assert sum(result.expert_shares().values()) == pytest.approx(1.0)
    meta = result.metadata
    assert 3.5 < meta["noise_level_percent"] < 6.5 and meta["noise_estimate"].startswith("auto")
    assert meta["experts"] == experts and meta["device"] == "cpu"


@pytest.mark.parametrize("name", ["smoe-patch", "smoe-segment"])
def test_expert_shares_are_the_routing_behind_the_expert_map(noisy5, name):
    plain = api.denoise(noisy5, name, experts=4)
    result = api.denoise(noisy5, name, experts=4, options={"expert_shares": True})
    assert np.array_equal(result.image.array, plain.image.array)  # the maps change nothing else
    assert np.array_equal(result.expert_map.array, plain.expert_map.array)
    maps = result.expert_probabilities
    assert len(maps) == 4 and all(m.same_geometry(noisy5) for m in maps)
    stack = np.stack([m.array for m in maps])
    inside = result.expert_map.array > 0
    assert stack.min() >= 0.0 and stack.max() <= 1.0 + 1e-6
    assert np.allclose(stack[:, inside].sum(0), 1.0, atol=1e-5) and stack[:, ~inside].max() == 0.0
    # The map's label is the expert with the largest share (ties go to the lower label).
    assert np.mean(np.argmax(stack[:, inside], axis=0) + 1 == result.expert_map.array[inside]) > 0.999
    if name == "smoe-segment":  # one class per voxel: the shares are one-hot
        assert set(np.unique(stack[:, inside])) <= {0.0, 1.0}
    else:  # patches of different clusters overlap: some voxels are shared
        assert ((stack[:, inside] > 0).sum(0) > 1).mean() > 0.05
    assert api.denoise(noisy5, name, experts=4).expert_probabilities is None


def test_cli_writes_the_expert_map_legend_and_shares(tmp_path, noisy5):
    import json
    import subprocess
    import sys

    import nibabel as nib

    from moemri.io import read_volume, write_volume

    source = tmp_path / "noisy.nrrd"
    write_volume(noisy5, source)
    args = [source, tmp_path / "out.nii.gz", "--method", "smoe-patch", "--experts", "4", "--expert-map", tmp_path / "map.nii.gz"]
    args += ["--option", "expert_shares=true"]
    done = subprocess.run([sys.executable, "-m", "moemri.cli.main", "denoise", *map(str, args)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "noise_level_percent=" in done.stdout and "noise_estimate=auto" in done.stdout
    legend = json.loads((tmp_path / "map.json").read_text())
    assert [e["label"] for e in legend["experts"]] == [1, 2, 3, 4]
    assert legend["probability_maps"] == {str(k): f"map_expert{k}.nii.gz" for k in range(1, 5)}
    labels = read_volume(tmp_path / "map.nii.gz", allow_label_map=True).array
    # An expert that got no patch has an all-zero map, which read_volume would refuse as constant.
    shares = [nib.load(tmp_path / f"map_expert{k}.nii.gz").get_fdata().transpose() for k in range(1, 5)]
    assert read_volume(tmp_path / "out.nii.gz").same_geometry(noisy5, atol=1e-5)
    assert np.allclose(sum(shares)[labels > 0], 1.0, atol=1e-5)
    for k, share in enumerate(shares, start=1):
        assert np.all(share[labels == k] >= 0.25 - 1e-6)  # the label holds the largest share
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 4} and labels.max() > 0


def test_shipped_mixture_stays_level_with_its_one_expert_version(noisy5, crop):
    """K = 4 against the K = 1 control trained with the same budget, on the validation head. The
    mixture does not beat it yet (issue: experts that earn their keep): -0.035 dB measured here,
    -0.03 to +0.11 dB in the benchmark. This guards against a mixture that does harm."""
    mask = head_mask(crop.array)
    peak = float(crop.array[mask].max())
    one = api.denoise(noisy5, "smoe-patch", experts=1)
    four = api.denoise(noisy5, "smoe-patch", experts=4)
    assert set(np.unique(one.expert_map.array)) <= {0, 1} and len(one.experts) == 1
    gain = psnr(crop.array, four.image.array, mask, peak) - psnr(crop.array, one.image.array, mask, peak)
    assert gain > MIXTURE_GAIN_DB, gain
    with pytest.raises(InputError, match="offers 1, 4"):
        api.denoise(noisy5, "smoe-patch", experts=3)


def test_gate_ablation_orders_the_gates(noisy5, crop):
    """The oracle (best expert per patch, chosen with the clean image) bounds every single expert;
    the predicted gate beats routing everything to the worst expert."""
    from moemri.progress import no_progress
    from moemri.methods.smoe.method import denoise_volume

    mask = head_mask(crop.array)
    peak = float(crop.array[mask].max())

    def score(ablation):
        image = denoise_volume(noisy5, "patch", 4, "cpu", no_progress, 5.0, 1, ablation=ablation, clean=crop.array).image.array
        return psnr(crop.array, image, mask, peak)

    singles = [score(("expert", k)) for k in range(4)]
    predicted, oracle, random = score(None), score(("oracle",)), score(("random", 3))
    # Measured: singles 36.04 / 36.13 / 35.37 / 36.10, predicted 36.11, random 36.07, oracle 36.16.
    assert oracle > max(singles), (oracle, singles)
    assert predicted > random > min(singles), (predicted, random, singles)
    assert max(singles) - min(singles) > 0.3, singles  # the experts differ: one is much worse everywhere


def test_expert_legend_says_what_each_expert_holds(noisy5):
    result = api.denoise(noisy5, "smoe-patch", experts=4)
    for e in result.experts:
        assert "dark/CSF" in e.description and "rim" in e.description and "noise" in e.description, e.description
    assert len({e.name for e in result.experts}) >= 2


def test_oblique_flipped_anisotropic_input_keeps_its_geometry_and_is_not_modified(noisy5):
    angle = np.deg2rad(17)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    direction = rotation @ np.diag([-1.0, 1.0, 1.0])  # oblique and left-right flipped
    array = noisy5.array[::2].astype(np.int16)  # thick slices, integer voxels
    volume = Volume(array, (1.0, 1.0, 2.0), (12.5, -40.0, 7.0), direction, "oblique")
    before = array.copy()
    result = api.denoise(volume, "smoe-patch", experts=4)
    assert np.array_equal(volume.array, before) and volume.array.dtype == np.int16
    assert result.image.same_geometry(volume) and result.expert_map.same_geometry(volume)
    assert result.image.array.dtype == np.float32
    assert result.metadata["slice_axis"] == "z"  # across the 2 mm axis


def test_output_is_in_the_input_units(noisy5):
    base = api.denoise(noisy5, "smoe-patch", experts=1).image.array
    scaled = api.denoise(noisy5.with_array(noisy5.array * 10.0), "smoe-patch", experts=1).image.array
    assert np.allclose(scaled, base * 10.0, rtol=1e-3, atol=1e-2 * float(base.max()))


def test_given_noise_level_overrides_the_estimate(noisy5):
    result = api.denoise(noisy5, "smoe-segment", options={"noise_level_percent": 3.0})
    assert result.metadata["noise_level_percent"] == 3.0
    assert result.metadata["noise_estimate"] == "given, stationary"


def test_weights_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch, noisy5):
    from moemri.methods.smoe import weights

    copy = tmp_path / "smoe"
    shutil.copytree(weights.weights_dir(), copy)
    with open(copy / "experts-patch-k4.pt", "ab") as f:
        f.write(b"\0")
    monkeypatch.setenv("MOEMRI_WEIGHTS", str(tmp_path))
    with pytest.raises(MethodUnavailable, match="experts-patch-k4.pt does not match its sha256"):
        get_method("smoe-patch").run(noisy5, experts=4)
    (copy / "backbone.pt").unlink()
    assert "backbone.pt" in get_method("smoe-patch").availability()
