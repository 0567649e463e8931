"""Shared fixtures: the shipped sample head and the fetched real volumes."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "Resources" / "SampleData" / "MNI152-2009a-T1.nii.gz"
ARTIFACTS = REPO / "Testing" / "artifacts"


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def sample_volume():
    from moemri.io import read_volume

    return read_volume(SAMPLE)


@pytest.fixture(scope="session")
def small_head(sample_volume):
    """A 64-slab of the real sample at 2 mm: real anatomy, small enough for fast tests."""
    from moemri.volume import Volume

    a = sample_volume.array[40:168:2, 20:212:2, 10:186:2].astype("float32")
    return Volume(a, spacing=(2.0, 2.0, 2.0), origin=sample_volume.origin, direction=sample_volume.direction, name="small_head")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def fetched():
    """fetched('colin27') -> Path of the checked file in the data cache (fetched on first use)."""
    from moemri.data.fetch import fetch_volume

    return lambda volume_id: fetch_volume(volume_id)
