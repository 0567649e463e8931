"""The SMoE denoisers' shipped weights in Resources/Weights/smoe/ (or $MOEMRI_WEIGHTS/smoe): the
backbone (its front is shared by every expert) and one file of expert tails (and gate) per expert count, through
the shared loader in moemri.weights (sha256 checked against manifest.json on every load)."""
from __future__ import annotations

from pathlib import Path

from ... import weights as shared

REBUILD = "make train-smoe"  # python -m moemri.train.smoe
BACKBONE = "backbone.pt"


def expert_file(kind: str, experts: int) -> str:
    """The expert tails (and gate) of one gate kind and expert count; K = 1 is the one-expert
    control: the backbone's tail fine-tuned with the same budget as the mixtures' experts."""
    return f"experts-{kind}-k{experts}.pt"


def weights_dir() -> Path:
    return shared.weights_root() / "smoe"


def missing_reason(files, directory: Path | None = None) -> str | None:
    reason = shared.missing_reason(files, Path(directory or weights_dir()), REBUILD)
    return f"SMoE {reason}" if reason else None


def load(name: str, directory: Path | None = None) -> tuple[dict, dict]:
    """(tensors, manifest entry) of one file, after its sha256 check."""
    return shared.load_checked(name, Path(directory or weights_dir()), REBUILD)


def save(tensors: dict, name: str, entry: dict, directory: Path | None = None) -> str:
    return shared.save_with_entry(tensors, name, entry, Path(directory or weights_dir()))
