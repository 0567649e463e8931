"""A small BIDS cohort from the fetched real heads and degraded copies of them, 64^3 crops so a
whole batch runs in seconds; one corrupt file among them. Used by test_batch.py."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from moemri.degrade.noise import rician_noise
from moemri.io import read_volume, write_volume

CROP = 64


def crop(volume, size: int = CROP):
    """The central size^3 block, geometry kept (the origin moves to the block's first voxel)."""
    a = volume.array
    start = [max(0, (n - size) // 2) for n in a.shape]
    block = a[tuple(slice(s, s + size) for s in start)].astype(np.float32)
    m = volume.ijk_to_lps()
    origin = m[:3, :3] @ np.array(start[::-1], float) + m[:3, 3]
    return type(volume)(block, spacing=volume.spacing, origin=tuple(origin), direction=volume.direction, name=volume.name)


def build_bids(root: Path, fetched) -> dict[str, Path]:
    """sub-01 (two sessions: clean and 5 % noise), sub-02 (colin27 with 3 % noise),
    sub-03 (a truncated, corrupt .nii.gz). Returns {key: path}."""
    root = Path(root)
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "moemri test cohort", "BIDSVersion": "1.10.0"}))
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\nsub-03\n")
    rng = np.random.default_rng(0)
    mni = crop(read_volume(fetched("mni152-2009")))
    colin = crop(read_volume(fetched("colin27")))
    files = {
        "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz": mni,
        "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz": rician_noise(mni, 5.0, rng),
        "sub-02/anat/sub-02_T1w.nii.gz": rician_noise(colin, 3.0, rng),
    }
    paths = {}
    for key, volume in files.items():
        paths[key] = write_volume(volume, root / key)
    corrupt = root / "sub-03/anat/sub-03_T1w.nii.gz"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(gzip.compress((root / "sub-02/anat/sub-02_T1w.nii.gz").read_bytes())[:5000])  # cut mid-stream
    paths["sub-03/anat/sub-03_T1w.nii.gz"] = corrupt
    return paths


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file below root: proof that nothing was written there."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(root).rglob("*")) if p.is_file()}
