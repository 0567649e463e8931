"""Reading, writing and refusing volumes (moemri.io), and intensity normalisation (moemri.intensity)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from moemri.errors import InputError
from moemri.intensity import normalise
from moemri.io import (
    looks_like_label_map,
    read_volume,
    read_volume_checked,
    validate_volume,
    volume_from_sitk,
    volume_to_sitk,
    write_volume,
)
from moemri.volume import Volume

# NIfTI keeps geometry in float32 (qform/sform), so it round-trips to ~1e-6 mm only; NRRD and
# MetaImage store it as text at full double precision.
GEOMETRY_ATOL = {".nii.gz": 1e-5, ".nrrd": 1e-9, ".mha": 1e-9}
EXTENSIONS = list(GEOMETRY_ATOL)


def _texture(shape, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 1000).astype(np.float32)


def oblique_volume() -> Volume:
    """20 degrees about an oblique axis, anisotropic voxels, an origin far from zero."""
    direction = Rotation.from_rotvec(np.deg2rad(20) * np.array([1.0, 2.0, 3.0]) / np.sqrt(14)).as_matrix()
    return Volume(_texture((7, 9, 11)), spacing=(0.7, 1.3, 3.1), origin=(-12.3456789, 56.789, 101.1), direction=direction, name="oblique")


def flipped_volume() -> Volume:
    """A left-handed grid (negative determinant): the k axis of an oblique grid reversed."""
    direction = Rotation.from_rotvec([0.1, -0.3, 0.2]).as_matrix() @ np.diag([1.0, 1.0, -1.0])
    return Volume(_texture((6, 8, 10), seed=1), spacing=(1.1, 0.9, 2.5), origin=(40.5, -7.25, 3.0), direction=direction, name="flipped")


def _assert_same(read: Volume, written: Volume, atol: float) -> None:
    assert read.array.shape == written.array.shape
    np.testing.assert_array_equal(read.array, written.array.astype(np.float32))
    np.testing.assert_allclose(read.spacing, written.spacing, rtol=0, atol=atol)
    np.testing.assert_allclose(read.origin, written.origin, rtol=0, atol=atol)
    np.testing.assert_allclose(read.direction, written.direction, rtol=0, atol=atol)


def _write_sitk(image: sitk.Image, path) -> str:
    sitk.WriteImage(image, str(path))
    return str(path)


def _image(shape_zyx=(5, 6, 7), dtype=np.float32) -> sitk.Image:
    return sitk.GetImageFromArray(_texture(shape_zyx).astype(dtype))


# --- the real sample --------------------------------------------------------------------------


def test_sample_reads_with_its_known_geometry(sample_path):
    volume = read_volume(sample_path)
    assert volume.array.shape == (189, 233, 197)  # (z, y, x) of a 197x233x189 file
    assert volume.array.dtype == np.float32
    assert volume.spacing == (1.0, 1.0, 1.0)
    assert volume.origin == (98.0, 134.0, -72.0)
    np.testing.assert_array_equal(volume.direction, np.diag([-1.0, -1.0, 1.0]))
    raw = read_volume(sample_path, keep_dtype=True).array
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(volume.array, raw)  # float32 keeps the input's units
    assert volume.name == "MNI152-2009a-T1"


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_sample_round_trip(sample_volume, tmp_path, extension):
    path = write_volume(sample_volume, tmp_path / "deeper" / f"sample{extension}")
    _assert_same(read_volume(path), sample_volume, atol=1e-9)  # whole-mm geometry: exact in float32 too


def test_write_in_the_input_dtype(sample_volume, tmp_path):
    path = write_volume(sample_volume, tmp_path / "sample_u8.nrrd", dtype=np.uint8)
    assert sitk.ReadImage(str(path)).GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(read_volume(path, keep_dtype=True).array, sample_volume.array.astype(np.uint8))


def test_integer_write_rounds_and_clips(tmp_path):
    volume = oblique_volume().with_array(np.full((7, 9, 11), 254.7, np.float32))
    volume.array[0, 0, :3] = [300.0, -4.0, 1.4]
    path = write_volume(volume, tmp_path / "rounded.mha", dtype=np.uint8)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert array[0, 0, :4].tolist() == [255, 0, 1, 255]


# --- oblique and flipped geometry ------------------------------------------------------------


@pytest.mark.parametrize("extension", EXTENSIONS)
@pytest.mark.parametrize("make", [oblique_volume, flipped_volume], ids=["oblique", "flipped"])
def test_geometry_round_trip(tmp_path, make, extension):
    volume = make()
    assert np.linalg.det(volume.direction) == pytest.approx(1.0 if make is oblique_volume else -1.0)
    path = write_volume(volume, tmp_path / f"{volume.name}{extension}")
    _assert_same(read_volume(path), volume, atol=GEOMETRY_ATOL[extension])


def test_sitk_geometry_matches_volume_convention():
    """A transposed direction or swapped axes would still round-trip; check against ITK itself."""
    volume = oblique_volume()
    image = volume_to_sitk(volume)
    i, j, k = 3, 5, 2
    expected = volume.ijk_to_lps() @ np.array([i, j, k, 1.0])
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((i, j, k)), expected[:3], atol=1e-12)
    assert image.GetPixel(i, j, k) == volume.array[k, j, i]
    back = volume_from_sitk(image)
    np.testing.assert_array_equal(back.direction, volume.direction)


# --- 4-D files ------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_single_frame_4d_is_read_as_3d(tmp_path, extension):
    frame = _image()
    frame.SetOrigin((1.5, -2.0, 3.25))
    frame.SetSpacing((0.5, 0.75, 2.0))
    four_d = sitk.JoinSeries([frame])
    assert four_d.GetDimension() == 4 and four_d.GetSize()[3] == 1
    volume = read_volume(_write_sitk(four_d, tmp_path / f"one_frame{extension}"))
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(frame))
    assert volume.origin == (1.5, -2.0, 3.25)
    np.testing.assert_allclose(volume.spacing, (0.5, 0.75, 2.0))


def test_single_component_vector_image_is_scalar():
    frame = _image()
    volume = volume_from_sitk(sitk.Compose([frame]))
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(frame))


@pytest.mark.parametrize("extension", [".nii.gz", ".nrrd"])
def test_refuses_multi_frame_4d(tmp_path, extension):
    path = _write_sitk(sitk.JoinSeries([_image(), _image(), _image()]), tmp_path / f"fmri{extension}")
    with pytest.raises(InputError, match="4-D with 3 frames") as caught:
        read_volume(path)
    assert f"fmri{extension}" in str(caught.value)


# --- refusals -------------------------------------------------------------------------------


def _refusal(path, *words, **read_options) -> str:
    with pytest.raises(InputError) as caught:
        read_volume(path, **read_options)
    message = str(caught.value)
    assert str(path).rsplit("/", 1)[-1] in message, message
    for word in words:
        assert word in message, message
    return message


def test_refuses_rgb(tmp_path):
    channels = [_image(dtype=np.uint8) for _ in range(3)]
    _refusal(_write_sitk(sitk.Compose(channels), tmp_path / "photo.nrrd"), "3 values per voxel", "RGB")


def test_refuses_2d(tmp_path):
    image = sitk.GetImageFromArray(_texture((6, 7)))
    _refusal(_write_sitk(image, tmp_path / "slice2d.nii.gz"), "2-D image", "7x6")


def test_refuses_single_slice_3d(tmp_path):
    _refusal(_write_sitk(_image((1, 6, 7)), tmp_path / "one_slice.mha"), "single 2-D slice", "7x6x1")


def test_refuses_constant(tmp_path):
    image = sitk.GetImageFromArray(np.full((4, 5, 6), 17, np.int16))
    _refusal(_write_sitk(image, tmp_path / "flat.nii.gz"), "constant", "17")


def test_refuses_complex(tmp_path):
    image = sitk.GetImageFromArray((_texture((4, 5, 6)) + 1j).astype(np.complex64))
    _refusal(_write_sitk(image, tmp_path / "kspace.nii.gz"), "complex")


def test_refuses_label_map_unless_allowed(tmp_path):
    labels = (np.arange(4 * 5 * 6).reshape(4, 5, 6) % 5).astype(np.uint8)
    path = _write_sitk(sitk.GetImageFromArray(labels), tmp_path / "aseg.nii.gz")
    _refusal(path, "looks like a label map (5 distinct integer values)")
    np.testing.assert_array_equal(read_volume(path, allow_label_map=True).array, labels)


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_nonfinite_refused_with_a_count(tmp_path, extension):
    """ITK 5.4 reads NaN/Inf in NIfTI as 0 without a word; the reader must still see them."""
    array = _texture((4, 5, 6))
    array[0, 0, 0], array[1, 2, 3], array[3, 4, 5] = np.nan, np.inf, -np.inf
    path = _write_sitk(sitk.GetImageFromArray(array), tmp_path / f"holes{extension}")
    _refusal(path, "3 NaN or infinite voxels", "of 120")


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_nonfinite_replaced_by_minimum_with_warning(tmp_path, caplog, extension):
    array = _texture((4, 5, 6)) + 50
    array[0, 0, 0], array[3, 4, 5] = np.nan, np.inf
    path = _write_sitk(sitk.GetImageFromArray(array), tmp_path / f"holes{extension}")
    checked = read_volume_checked(path, nonfinite="replace")
    finite_min = np.nanmin(np.where(np.isinf(array), np.nan, array))
    assert checked.volume.array[0, 0, 0] == finite_min == checked.volume.array[3, 4, 5]
    assert np.isfinite(checked.volume.array).all()
    assert len(checked.warnings) == 1 and "replaced 2 NaN" in checked.warnings[0] and f"holes{extension}" in checked.warnings[0]
    with caplog.at_level(logging.WARNING, logger="moemri.io"):
        read_volume(path, nonfinite="replace")
    assert "replaced 2 NaN" in caplog.text


@pytest.mark.parametrize("name", ["scan.png", "scan.dcm", "scan.nii.zip"])
def test_unknown_extension_refused_on_write_and_read(tmp_path, name):
    with pytest.raises(InputError, match=r"\.nii\.gz, \.nii, \.nrrd") as caught:
        write_volume(oblique_volume(), tmp_path / name)
    assert name in str(caught.value)
    assert not (tmp_path / name).exists()
    (tmp_path / name).write_bytes(b"not an image")
    _refusal(tmp_path / name, "supported are")


def test_missing_and_damaged_files(tmp_path):
    _refusal(tmp_path / "absent.nii.gz", "not found")
    (tmp_path / "broken.nii.gz").write_bytes(b"garbage" * 50)
    _refusal(tmp_path / "broken.nii.gz", "could not be read")


def test_validate_volume_checks_in_memory_arrays():
    geometry = oblique_volume()
    with pytest.raises(InputError, match="node 'T1' is empty"):
        validate_volume(Volume(np.zeros((0, 4, 4), np.float32)), source="node 'T1'")
    with pytest.raises(InputError, match="node 'T1' is constant"):
        validate_volume(geometry.with_array(np.zeros((7, 9, 11), np.float32)), source="node 'T1'")
    with pytest.raises(InputError, match="node 'seg' looks like a label map"):
        validate_volume(geometry.with_array(np.indices((7, 9, 11)).sum(0).astype(np.int32) % 3), source="node 'seg'")
    checked, warnings = validate_volume(geometry)
    assert checked is geometry and warnings == []


def test_looks_like_label_map():
    rng = np.random.default_rng(0)
    assert looks_like_label_map(rng.integers(0, 32, (20, 20, 20)).astype(np.int16))
    assert not looks_like_label_map(rng.integers(0, 33, (20, 20, 20)).astype(np.int16))  # 33 values
    assert not looks_like_label_map(rng.integers(0, 5, (20, 20, 20)).astype(np.float32))  # not integer
    assert looks_like_label_map(rng.random((8, 8, 8)) > 0.5)  # a boolean mask
    # Many values that a sparse sample alone might miss: the full check decides.
    rare = np.zeros((50, 50, 50), np.uint8)
    rare.ravel()[1::997][:40] = np.arange(1, 41)
    assert not looks_like_label_map(rare)


def test_sample_is_not_a_label_map(sample_volume, sample_path):
    assert not looks_like_label_map(read_volume(sample_path, keep_dtype=True).array)


# --- intensity normalisation ----------------------------------------------------------------


def test_normalise_undo_round_trip_on_sample(sample_volume):
    head = sample_volume.array
    normalised, scale = normalise(head)
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(scale.undo(normalised), head, rtol=1e-6, atol=1e-4)
    assert (normalised[head == 0] == 0).all()  # air stays exactly 0
    foreground = head > head.mean()
    assert np.percentile(normalised[foreground], 99.5) == pytest.approx(1.0, abs=1e-6)
    above_one = (normalised[foreground] > 1 + 1e-6).mean()
    assert 0 < above_one <= 0.005  # the bright tail sits above 1, not the brain


def test_normalise_uses_the_given_mask(sample_volume):
    head = sample_volume.array
    mask = np.zeros(head.shape, bool)
    mask[60:120, 80:150, 60:140] = True  # a block in the middle of the brain
    normalised, _ = normalise(head, mask=mask)
    assert np.percentile(normalised[mask], 99.5) == pytest.approx(1.0, abs=1e-6)


def test_normalise_ignores_units_and_a_bright_tail(sample_volume):
    """An int16 head in other units normalises the same; a few very bright voxels hardly move it."""
    head_u8 = sample_volume.array.astype(np.uint8)
    head_i16 = head_u8.astype(np.int16) * 12
    reference, _ = normalise(head_u8)
    in_other_units, scale = normalise(head_i16)
    np.testing.assert_allclose(in_other_units, reference, atol=1e-6)
    np.testing.assert_allclose(scale.undo(in_other_units), head_i16, atol=1e-3)

    with_vessels = head_i16.copy()
    bright = np.flatnonzero(head_i16 > head_i16.mean())[::1000]  # 0.1% of the head
    with_vessels.ravel()[bright] = 30000
    _, tail_scale = normalise(with_vessels)
    assert tail_scale.width < 1.1 * scale.width  # normalising by the maximum would be 10x off


def test_normalise_shifts_negative_images():
    array = _texture((8, 8, 8)) - 300
    normalised, scale = normalise(array)
    assert normalised.min() == 0.0 and scale.offset == pytest.approx(array.min())
    np.testing.assert_allclose(scale.undo(normalised), array, atol=1e-3)
