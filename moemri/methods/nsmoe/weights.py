"""N-SMoE's shipped weights in Resources/Weights/nsmoe/ (or $MOEMRI_WEIGHTS/nsmoe): one model per
kernel count (and the adversarially fine-tuned one), serving denoising and super-resolution,
through the shared loader in moemri.weights (sha256 checked against manifest.json)."""
from __future__ import annotations

from pathlib import Path

from ... import weights as shared

REBUILD = "make train-nsmoe"  # python -m moemri.train.nsmoe --export


def filename(kernels: int, adversarial: bool = False) -> str:
    return f"nsmoe_k{kernels}{'_adversarial' if adversarial else ''}.pt"


def weights_dir() -> Path:
    return shared.weights_root() / "nsmoe"


def missing_reason(files, directory: Path | None = None) -> str | None:
    reason = shared.missing_reason(files, Path(directory or weights_dir()), REBUILD)
    return f"N-SMoE {reason}" if reason else None


def load_model(kernels: int, adversarial: bool = False, directory: Path | None = None):
    """(NSMoE in eval mode, manifest entry), after the sha256 check."""
    from .model import NSMoE

    state, entry = shared.load_checked(filename(kernels, adversarial), Path(directory or weights_dir()), REBUILD)
    model = NSMoE(**entry["architecture"])
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval(), entry


def save_model(state: dict, name: str, entry: dict, directory: Path | None = None) -> str:
    return shared.save_with_entry(state, name, entry, Path(directory or weights_dir()))
