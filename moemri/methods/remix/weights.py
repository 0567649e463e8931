"""REMIx's shipped weights in Resources/Weights/remix/ (or $MOEMRI_WEIGHTS/remix): one U-Net per
voxel-volume bin and the one-network baseline, through the shared loader in moemri.weights."""
from __future__ import annotations

from pathlib import Path

from ... import weights as shared

REBUILD = "make train-remix"  # python -m moemri.train.remix
NETWORKS = tuple(f"bin{b}" for b in range(1, 8)) + ("one_network",)


def filename(network: str) -> str:
    return f"remix_{network}.pt"


def weights_dir() -> Path:
    return shared.weights_root() / "remix"


def missing_reason(directory: Path | None = None) -> str | None:
    reason = shared.missing_reason([filename(n) for n in NETWORKS], Path(directory or weights_dir()), REBUILD)
    return f"REMIx {reason}" if reason else None


def load_network(network: str, directory: Path | None = None) -> tuple[dict, dict]:
    """(float32 state_dict, manifest entry) of one network, after its sha256 check."""
    tensors, entry = shared.load_checked(filename(network), Path(directory or weights_dir()), REBUILD)
    # Shipped as float16 to halve the size; run in float32.
    return {k: v.float() for k, v in tensors.items()}, entry


def save_network(state: dict, network: str, entry: dict, directory: Path | None = None) -> str:
    """Write one network (as float16) and its manifest entry; returns the sha256."""
    import torch

    half = {k: v.detach().to(torch.float16) for k, v in state.items()}
    return shared.save_with_entry(half, filename(network), entry, Path(directory or weights_dir()))
