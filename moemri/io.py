"""Reading and writing scalar 3-D MR volumes (NIfTI, NRRD, MetaImage) and the input checks.

Every refusal is an `InputError` whose message names the file (or Slicer node) and the problem,
so the CLI and the Slicer modules can show it as it is. The checks live in `validate_volume`, which
`read_volume` uses and which the Slicer modules call on node arrays.

Geometry is kept in float64. NRRD and MetaImage store it as text and round-trip it to ~1e-15;
NIfTI stores it in float32 (the format's qform/sform), so a NIfTI round trip is exact only to
~1e-6 mm.
"""
from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .nifti_check import check_nifti_file
from .outputs import SUPPORTED_EXTENSIONS, StagedOutputs, require_supported_extension
from .volume import Volume

log = logging.getLogger(__name__)

# More distinct integer values than this and an integer image is taken for an intensity image.
# Label maps (segmentations, parcellations, masks) rarely exceed a few dozen labels, while even an
# 8-bit MR head uses well over a hundred grey levels.
LABEL_MAP_MAX_VALUES = 32

Nonfinite = Literal["refuse", "replace"]

_VECTOR_PIXEL_IDS = {
    getattr(sitk, name) for name in dir(sitk) if name.startswith("sitkVector") and isinstance(getattr(sitk, name), int)
}


class CheckedVolume(NamedTuple):
    """A volume that passed the checks, with what was repaired on the way (user-readable lines)."""

    volume: Volume
    warnings: list[str]


def read_volume(
    path,
    *,
    nonfinite: Nonfinite = "refuse",
    allow_label_map: bool = False,
    keep_dtype: bool = False,
) -> Volume:
    """Read a scalar 3-D volume; voxels as float32 in the file's units unless `keep_dtype`.

    Repairs (NaN/Inf replaced when `nonfinite="replace"`) are logged as warnings on the
    `moemri.io` logger; use `read_volume_checked` to get them back as a list.
    """
    checked = read_volume_checked(path, nonfinite=nonfinite, allow_label_map=allow_label_map, keep_dtype=keep_dtype)
    for warning in checked.warnings:
        log.warning(warning)
    return checked.volume


def read_volume_checked(
    path,
    *,
    nonfinite: Nonfinite = "refuse",
    allow_label_map: bool = False,
    keep_dtype: bool = False,
) -> CheckedVolume:
    """`read_volume`, returning the volume together with the warnings about repairs made."""
    path = Path(path)
    require_supported_extension(path, "read")
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        check_nifti_file(path)  # ITK zero-fills truncated files and reads a bad magic as Analyze
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(
            f"{path} could not be read: it is damaged or not in the format its name says ({_itk_reason(error)})"
        ) from None
    volume = volume_from_sitk(image, source=str(path), name=_stem(path))
    if path.name.lower().endswith((".nii", ".nii.gz")) and np.issubdtype(volume.array.dtype, np.floating):
        volume = _restore_nifti_nonfinite(path, volume)
    volume, warnings = validate_volume(volume, source=str(path), nonfinite=nonfinite, allow_label_map=allow_label_map)
    if not keep_dtype:
        volume = volume.with_array(volume.array.astype(np.float32, copy=False))
    return CheckedVolume(volume, warnings)


def write_volume(volume: Volume, path, dtype=np.float32) -> Path:
    """Write `volume` as `dtype` (float32 by default), creating parent folders. Returns the path.

    The file appears at `path` complete or not at all (written under a temporary name beside it,
    then renamed); the extension may be in any letter case."""
    path = Path(path)
    require_supported_extension(path, "write")
    with StagedOutputs() as staged:
        write_image(volume, staged.path(path), dtype=dtype)
        staged.commit()
    return path


def write_image(volume: Volume, path, dtype=np.float32) -> Path:
    """Write straight to `path` (no temporary name): for files staged by `moemri.outputs`."""
    path = Path(path)
    # .nii.gz compresses by its name; NRRD and MetaImage need asking.
    sitk.WriteImage(volume_to_sitk(volume, dtype=dtype), str(path), useCompression=True)
    return path


def volume_from_sitk(image: sitk.Image, source: str = "the image", name: str = "") -> Volume:
    """A `Volume` from a scalar 3-D SimpleITK image (or a 4-D one with a single frame).

    Refuses vector/RGB images, 2-D images and 4-D images with several frames.
    """
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1:
        raise InputError(
            f"{source} has {components} values per voxel (an RGB or vector image); "
            "a scalar grey-level MR image is needed"
        )
    if image.GetPixelID() in _VECTOR_PIXEL_IDS:
        image = sitk.VectorIndexSelectionCast(image, 0)  # one component: a scalar image in disguise
    dimension = image.GetDimension()
    size = image.GetSize()
    if dimension == 2:
        raise InputError(f"{source} is a 2-D image ({size[0]}x{size[1]}); a 3-D volume is needed")
    if dimension == 4 and size[3] > 1:
        raise InputError(
            f"{source} is 4-D with {size[3]} frames (a time series or several volumes in one file); "
            "save the one 3-D frame to process and load that"
        )
    if dimension not in (3, 4):
        raise InputError(f"{source} is a {dimension}-D image; a 3-D volume is needed")

    array = sitk.GetArrayFromImage(image)  # (t, z, y, x) or (z, y, x)
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dimension, dimension)
    if dimension == 4:
        # A single frame (e.g. an atlas saved as x*y*z*1): its spatial part is the 3-D volume.
        array = array[0]
    return Volume(
        array=array,
        spacing=tuple(image.GetSpacing()[:3]),
        origin=tuple(image.GetOrigin()[:3]),
        direction=direction[:3, :3],
        name=name,
    )


def volume_to_sitk(volume: Volume, dtype=None) -> sitk.Image:
    """A SimpleITK image with the volume's voxels (cast to `dtype` if given) and geometry."""
    array = volume.array if dtype is None else _cast(volume.array, np.dtype(dtype))
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.SetSpacing(tuple(float(s) for s in volume.spacing))
    image.SetOrigin(tuple(float(o) for o in volume.origin))
    image.SetDirection(tuple(float(d) for d in np.asarray(volume.direction).ravel()))  # row-major
    return image


def validate_volume(
    volume: Volume,
    source: str = "the volume",
    *,
    nonfinite: Nonfinite = "refuse",
    allow_label_map: bool = False,
) -> CheckedVolume:
    """Refuse what the methods cannot process; with `nonfinite="replace"`, repair NaN/Inf.

    `source` names the file or node in messages. Call it on the voxels as they came (before any
    cast to float), or the label-map check cannot see integer labels.
    """
    if nonfinite not in ("refuse", "replace"):
        raise ValueError(f"nonfinite must be 'refuse' or 'replace', not {nonfinite!r}")
    array = volume.array
    warnings: list[str] = []
    if array.size == 0:
        raise InputError(f"{source} is empty (it has no voxels)")
    if min(array.shape) == 1:
        x, y, z = volume.size_xyz
        raise InputError(f"{source} is a single 2-D slice ({x}x{y}x{z} voxels); a 3-D volume is needed")
    if np.iscomplexobj(array):
        raise InputError(f"{source} has complex voxel values; give the magnitude image instead")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{source} has voxels of type {array.dtype}, not numbers")

    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        bad = int(array.size - np.count_nonzero(finite))
        if bad == array.size:
            raise InputError(f"{source} has no finite voxels (all {bad} are NaN or infinite)")
        if bad and nonfinite != "replace":
            raise InputError(
                f"{source} contains {bad} NaN or infinite voxels (of {array.size}); "
                "fix the image, or have them replaced by the lowest finite value "
                "(moemri --replace-nonfinite; nonfinite='replace' in Python)"
            )
        if bad:
            fill = array[finite].min()
            array = np.where(finite, array, fill).astype(array.dtype, copy=False)
            volume = volume.with_array(array)
            warnings.append(f"{source}: replaced {bad} NaN or infinite voxels by the minimum finite value {fill:g}")

    low, high = array.min(), array.max()
    if low == high:
        raise InputError(f"{source} is constant (every voxel is {low:g}); there is no image to process")
    if not allow_label_map and looks_like_label_map(array):
        count = len(np.unique(array))
        raise InputError(
            f"{source} looks like a label map ({count} distinct integer values), not an MR image; "
            "load the intensity image instead"
        )
    return CheckedVolume(volume, warnings)


def looks_like_label_map(array: np.ndarray) -> bool:
    """True for integer (or boolean) voxels with at most `LABEL_MAP_MAX_VALUES` distinct values."""
    array = np.asarray(array)
    if array.dtype == bool:
        return True
    if not np.issubdtype(array.dtype, np.integer):
        return False
    # A sparse sample settles most intensity images without sorting all voxels.
    sample = array.ravel()[:: max(1, array.size // 100_000)]
    if len(np.unique(sample)) > LABEL_MAP_MAX_VALUES:
        return False
    return len(np.unique(array)) <= LABEL_MAP_MAX_VALUES


def _restore_nifti_nonfinite(path: Path, volume: Volume) -> Volume:
    """Put back the NaN/Inf voxels that ITK 5.4's NIfTI reader silently reads as 0.

    nifti_read_buffer() zeroes every non-finite float (fixed in ITK 6, InsightSoftwareConsortium/
    ITK#6683), so the check could not see them and they would pass as real zeros. nibabel reads
    the same bytes as they are.
    """
    import nibabel  # a dependency of dipy; only float NIfTI files need it

    try:
        on_disk = np.asanyarray(nibabel.load(str(path)).dataobj)
    except (OSError, ValueError, EOFError, zlib.error, nibabel.filebasedimages.ImageFileError):
        return volume  # SimpleITK read it; keep what it read
    if on_disk.ndim > 3 and all(n == 1 for n in on_disk.shape[3:]):
        on_disk = on_disk.reshape(on_disk.shape[:3])
    on_disk = on_disk.transpose()  # nibabel indexes (i, j, k), the Volume (k, j, i)
    if on_disk.shape != volume.array.shape:
        return volume
    nonfinite = ~np.isfinite(on_disk)
    if not nonfinite.any():
        return volume
    array = volume.array.copy()
    array[nonfinite] = on_disk[nonfinite]
    return volume.with_array(array)


def _cast(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(array.dtype, np.integer):
        # Round and clip: a plain cast truncates 254.7 to 254 and wraps 300 to 44 in uint8.
        info = np.iinfo(dtype)
        array = np.clip(np.rint(array), info.min, info.max)
    return array.astype(dtype, copy=False)


def _stem(path: Path) -> str:
    name = path.name
    for extension in SUPPORTED_EXTENSIONS:
        if name.lower().endswith(extension):
            return name[: -len(extension)]
    return path.stem


def _itk_reason(error: Exception) -> str:
    """The last line of an ITK exception, without its prefix: the part a user can read."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(error).__name__
    for prefix in ("sitk::ERROR:", "ITK ERROR:"):
        reason = reason.split(prefix, 1)[-1].strip()
    return reason
