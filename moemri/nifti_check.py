"""Checks of a NIfTI file's header against its bytes, before ITK reads it.

ITK 5.4's NIfTI reader fills what is missing from a truncated file with zeros, reads a file whose
magic is wrong as Analyze 7.5 (dropping its orientation), and takes a NaN voxel size for 1 mm, all
without an error. Each would pass as a plausible volume and be "denoised", so they are refused here,
with a message naming the file. A .nii.gz is decompressed in full to count its bytes: a cut-off
gzip stream is itself one of the damages looked for.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import InputError

_HEADER_SIZES = {348: 1, 540: 2}  # sizeof_hdr -> NIfTI version
_MAGIC = {1: b"n+1", 2: b"n+2"}  # single-file (.nii) magic; "ni1"/"ni2" are .hdr/.img pairs
_CHUNK = 1 << 20


def check_nifti_file(path) -> None:
    """Raise InputError when the header of the .nii / .nii.gz at `path` does not describe its bytes."""
    import nibabel

    path = Path(path)
    head, size = _read_head_and_size(path)
    version, order = _version(path, head)
    header_class = nibabel.Nifti1Header if version == 1 else nibabel.Nifti2Header
    try:
        header = header_class(head[: header_class.sizeof_hdr], endianness=order, check=False)
    except Exception as error:  # nibabel raises several kinds for a header it cannot parse
        raise InputError(f"{path} has a damaged NIfTI header ({error})") from None

    magic = bytes(header["magic"]).rstrip(b"\0")
    if magic != _MAGIC[version]:
        raise InputError(
            f"{path} is not a valid NIfTI-{version} file: its magic is {magic!r}, not {_MAGIC[version]!r} "
            "(an Analyze 7.5 file or a damaged header; read as Analyze it would lose its orientation)"
        )
    dim = [int(d) for d in header["dim"]]
    if not 1 <= dim[0] <= 7 or any(n < 1 for n in dim[1 : dim[0] + 1]):
        raise InputError(f"{path} has a damaged NIfTI header: its dimensions are {dim[: dim[0] + 1] if 0 <= dim[0] <= 7 else dim}")
    shape = dim[1 : dim[0] + 1]
    spacing = [float(p) for p in header["pixdim"][1 : min(dim[0], 3) + 1]]
    if not all(np.isfinite(spacing)) or any(p == 0 for p in spacing):
        raise InputError(f"{path} has an invalid voxel size (pixdim {', '.join(f'{p:g}' for p in spacing)} mm): the geometry cannot be trusted")
    _check_finite_geometry(path, header)
    try:
        itemsize = header.get_data_dtype().itemsize
    except Exception:
        raise InputError(f"{path} has an unknown NIfTI data type (code {int(header['datatype'])})") from None

    offset = float(header["vox_offset"])
    minimum = {1: 352, 2: 544}[version]
    if not np.isfinite(offset) or offset != int(offset) or offset < minimum:
        raise InputError(f"{path} has an invalid vox_offset {offset:g}: the voxels would start inside the header (at least {minimum})")
    expected = int(np.prod(shape, dtype=np.int64)) * itemsize
    present = size - int(offset)
    if present < expected:
        raise InputError(
            f"{path} is truncated: its header promises {'x'.join(map(str, shape))} voxels ({expected} bytes from byte "
            f"{int(offset)}), the file holds {max(present, 0)} bytes of voxels"
        )


def _read_head_and_size(path: Path) -> tuple[bytes, int]:
    """The first 544 bytes and the full (decompressed) size."""
    compressed = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
            head = stream.read(544)
            size = len(head)
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
    except gzip.BadGzipFile:
        raise InputError(f"{path} could not be read: it is not gzip-compressed, though its name ends in .gz") from None
    except (EOFError, zlib.error) as error:
        raise InputError(f"{path} is truncated or damaged: its compressed data are cut off or corrupt ({error})") from None
    except OSError as error:
        raise InputError(f"{path} could not be read ({error.strerror or error})") from None
    return head, size


def _version(path: Path, head: bytes) -> tuple[int, str]:
    """(NIfTI version, byte order) from the header's first field, its own size."""
    if len(head) >= 4:
        for order in "<>":
            (sizeof_hdr,) = struct.unpack(order + "i", head[:4])
            if sizeof_hdr in _HEADER_SIZES and len(head) >= sizeof_hdr:
                return _HEADER_SIZES[sizeof_hdr], order
    raise InputError(f"{path} is not a NIfTI file: it does not start with a NIfTI-1 or NIfTI-2 header")


def _check_finite_geometry(path: Path, header) -> None:
    fields = []
    if int(header["qform_code"]) > 0:
        fields += ["quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z"]
    if int(header["sform_code"]) > 0:
        fields += ["srow_x", "srow_y", "srow_z"]
    bad = [f for f in fields if not np.all(np.isfinite(np.asarray(header[f], dtype=np.float64)))]
    if bad:
        raise InputError(f"{path} has NaN or infinite orientation fields ({', '.join(bad)}): the geometry cannot be trusted")

