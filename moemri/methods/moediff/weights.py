"""MoEDiff-SR's shipped weights in Resources/Weights/moediff/ (or $MOEMRI_WEIGHTS/moediff): one
file per expert count (feature extractor, gate and experts together), through the shared loader
in moemri.weights (sha256 checked against manifest.json on every load)."""
from __future__ import annotations

from pathlib import Path

from ... import weights as shared

REBUILD = "make train-moediff"  # python -m moemri.train.moediff


def filename(experts: int) -> str:
    return f"moediff_e{experts}.pt"


def weights_dir() -> Path:
    return shared.weights_root() / "moediff"


def missing_reason(experts: int, directory: Path | None = None) -> str | None:
    reason = shared.missing_reason([filename(experts)], Path(directory or weights_dir()), REBUILD)
    return f"MoEDiff-SR {reason}" if reason else None


def load(experts: int, directory: Path | None = None) -> tuple[dict, dict]:
    """(float32 state_dict, manifest entry) of the model with `experts` experts."""
    tensors, entry = shared.load_checked(filename(experts), Path(directory or weights_dir()), REBUILD)
    return {k: v.float() for k, v in tensors.items()}, entry


def save(state: dict, experts: int, entry: dict, directory: Path | None = None) -> str:
    """Write one model (as float16: half the size, no measurable change) and its manifest entry."""
    import torch

    half = {k: v.detach().to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}
    return shared.save_with_entry(half, filename(experts), entry, Path(directory or weights_dir()))
