"""Rebuild Resources/Weights/smoe/ (sparse MoE denoising, Deng and Campbell, arXiv:2501.14198):
`python -m moemri.train.smoe`.

1. Backbone: the DnCNN trained on patches of the training heads (train/slices.py), Rician noise
   0-5 %. Its final layer is also the K = 1 model, so K = 1 and K > 1 share the whole backbone
   budget; the experts only add final-layer fine-tuning.
2. A bank of fresh patches (same augmentations, other seeds) through the frozen trunk, kept as
   the least-squares statistics of the final layer per patch (and per intensity class).
3. Patch gate, K = 2, 4, 8: PCA + k-means of the pooled trunk features; per cluster the final
   layer is refitted on that cluster's patches, everything else frozen (the paper's recipe).
4. Segmentation gate, K = 4: the same per intensity class, on that class's pixels.
Departure: the paper fine-tunes the final layer by gradient descent. That layer is linear in the
frozen features, so its squared-error fit has a closed form; it is solved exactly, with a ridge
pull towards the backbone's head whose strength is chosen on a held-out fifth of the patches (the
role early stopping plays), and the backbone's head is kept where no refit beats it there.
The log (train.log beside the weights) ends with a held-out comparison of the backbone, a K = 1
control whose head gets the same refit on all patches, and each mixture. Everything is seeded:
the same command on the same machine rebuilds the same files.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..methods.smoe import weights as weight_files
from ..methods.smoe.dncnn import OUTPUT_SCALE, SLICE_RADIUS, DnCNN
from ..methods.smoe.experts import ExpertHeads
from ..methods.smoe.gate import SEGMENT_CLASSES, fit_patch_gate, patch_descriptor
from .slices import PATCH, TRAINING_VOLUMES, PatchSampler, load_training_volumes, make_scenes

log = logging.getLogger("moemri.train.smoe")

PATCH_EXPERT_COUNTS = (2, 4, 8)
PCA_COMPONENTS = 16
HELD_OUT_SHARE = 0.2
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # x the mean diagonal of the Gram matrix
PIXEL_STEP = 2  # least-squares statistics on every 2nd row and column: 576 pixels per patch


@dataclass
class Settings:
    seed: int = 0
    steps: int = 10000
    batch: int = 32
    learning_rate: float = 2e-3
    channels: int = 24
    depth: int = 8
    slice_radius: int = SLICE_RADIUS
    scenes_per_volume: int = 6
    bank_patches: int = 4000
    threads: int = 2

    def command(self) -> str:
        defaults = Settings()
        flags = [f"--{k.replace('_', '-')} {v}" for k, v in vars(self).items() if v != getattr(defaults, k)]
        return " ".join(["python -m moemri.train.smoe"] + flags)


def train_backbone(model: DnCNN, sampler: PatchSampler, monitor, settings: Settings) -> float:
    """Adam with a one-cycle learning rate; MSE of the predicted residual. Returns seconds."""
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=settings.learning_rate, total_steps=settings.steps, pct_start=0.1)
    start = time.perf_counter()
    running = None
    for step in range(1, settings.steps + 1):
        model.train()
        b = sampler.batch(settings.batch)
        predicted = model(DnCNN.inputs(torch.from_numpy(b.slices), torch.from_numpy(b.sigma)))
        loss = torch.mean((predicted - torch.from_numpy(b.residual)) ** 2)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == settings.steps:
            log.info("step %d/%d: loss %.3g, held-out gain %.2f dB, %.0f s", step, settings.steps, running, monitor(model), time.perf_counter() - start)
    model.eval()
    return time.perf_counter() - start


@dataclass
class LeastSquares:
    """Sufficient statistics of a final-layer fit: Gram = sum phi phi^T, moment = sum phi t,
    energy = sum t^2, over `pixels` pixels; phi = the 3x3xC features around a pixel and a 1 (the
    bias), t = the target residual / OUTPUT_SCALE. Sums of them are the statistics of the union."""

    gram: np.ndarray
    moment: np.ndarray
    energy: float
    pixels: int

    @classmethod
    def zero(cls, size: int) -> "LeastSquares":
        return cls(np.zeros((size, size)), np.zeros(size), 0.0, 0)

    def __add__(self, other: "LeastSquares") -> "LeastSquares":
        return LeastSquares(self.gram + other.gram, self.moment + other.moment, self.energy + other.energy, self.pixels + other.pixels)

    def error(self, w: np.ndarray) -> float:
        """Summed squared error of the head w over these pixels."""
        return float(w @ self.gram @ w - 2 * w @ self.moment + self.energy)


@dataclass
class Bank:
    """Fresh patches through the frozen trunk: descriptors for the gate, least-squares statistics
    for the heads, a few numbers per patch to describe the clusters."""

    descriptors: np.ndarray  # (N, 2C)
    gram: np.ndarray  # (N, D, D) float32, D = 9C + 1
    moment: np.ndarray  # (N, D)
    energy: np.ndarray  # (N,)
    pixels: int  # per patch
    classes: dict = field(default_factory=dict)  # (class, held_out) -> LeastSquares
    class_share: np.ndarray = None
    clean_mean: np.ndarray = None
    tissue_share: np.ndarray = None
    edges: np.ndarray = None
    level_percent: np.ndarray = None
    held_out: np.ndarray = None  # bool (N,)

    def statistics(self, index: np.ndarray) -> LeastSquares:
        return LeastSquares(
            self.gram[index].sum(0, dtype=np.float64),
            self.moment[index].sum(0, dtype=np.float64),
            float(self.energy[index].sum()),
            self.pixels * len(index),
        )


def _design(features: torch.Tensor) -> torch.Tensor:
    """(n, C, P, P) -> (n, 9C + 1, pixels): the 3x3 neighbourhoods (unfold order matches a
    (1, C, 3, 3) head weight flattened) and a 1 for the bias, on every PIXEL_STEP-th pixel."""
    n, c, h, w = features.shape
    columns = torch.nn.functional.unfold(features, 3, padding=1).reshape(n, 9 * c, h, w)
    columns = columns[:, :, ::PIXEL_STEP, ::PIXEL_STEP].reshape(n, 9 * c, -1)
    return torch.cat([columns, torch.ones(n, 1, columns.shape[-1])], dim=1).double()


@torch.no_grad()
def make_bank(model: DnCNN, sampler: PatchSampler, count: int, rng: np.random.Generator) -> Bank:
    held_out = rng.random(count) < HELD_OUT_SHARE
    parts = {k: [] for k in ("descriptors", "gram", "moment", "energy", "clean_mean", "tissue", "edges", "levels")}
    size = 9 * model.channels + 1
    classes = {(k, h): LeastSquares.zero(size) for k in range(1, SEGMENT_CLASSES + 1) for h in (False, True)}
    class_pixels = np.zeros(SEGMENT_CLASSES)
    for start in range(0, count, 64):
        b = sampler.batch(min(64, count - start))
        features = model.features(DnCNN.inputs(torch.from_numpy(b.slices), torch.from_numpy(b.sigma)))
        parts["descriptors"].append(patch_descriptor(features).numpy())
        design = _design(features)  # (n, D, p)
        target = torch.from_numpy(b.residual[:, 0, ::PIXEL_STEP, ::PIXEL_STEP].reshape(len(design), -1)).double() / OUTPUT_SCALE
        parts["gram"].append(torch.bmm(design, design.transpose(1, 2)).float().numpy())
        parts["moment"].append(torch.bmm(design, target[:, :, None])[:, :, 0].float().numpy())
        parts["energy"].append((target**2).sum(1).numpy())
        pixel_class = torch.from_numpy(b.classes[:, ::PIXEL_STEP, ::PIXEL_STEP].reshape(len(design), -1).astype(np.int64))
        patch_held_out = torch.from_numpy(held_out[start : start + len(design)])
        for h in (False, True):
            chosen = patch_held_out == h
            if not chosen.any():
                continue
            d = design[chosen].permute(1, 0, 2).reshape(size, -1)  # (D, pixels of these patches)
            t = target[chosen].reshape(-1)
            c = pixel_class[chosen].reshape(-1)
            for k in range(1, SEGMENT_CLASSES + 1):
                keep = c == k
                if keep.any():
                    dk, tk = d[:, keep], t[keep]
                    classes[(k, h)] = classes[(k, h)] + LeastSquares((dk @ dk.T).numpy(), (dk @ tk).numpy(), float(tk @ tk), int(keep.sum()))
        for k in range(1, SEGMENT_CLASSES + 1):
            class_pixels[k - 1] += int((pixel_class == k).sum())
        parts["clean_mean"].append(b.clean.mean(axis=(1, 2, 3)))
        parts["tissue"].append(b.tissue.mean(axis=(1, 2)))
        gy, gx = np.gradient(b.clean[:, 0], axis=(1, 2))
        parts["edges"].append(np.hypot(gy, gx).mean(axis=(1, 2)))
        parts["levels"].append(b.level_percent)
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    return Bank(
        descriptors=joined["descriptors"],
        gram=joined["gram"],
        moment=joined["moment"],
        energy=joined["energy"],
        pixels=(PATCH // PIXEL_STEP) ** 2,
        classes=classes,
        class_share=class_pixels / class_pixels.sum(),
        clean_mean=joined["clean_mean"],
        tissue_share=joined["tissue"],
        edges=joined["edges"],
        level_percent=joined["levels"],
        held_out=held_out,
    )


def head_vector(heads: ExpertHeads, k: int = 0) -> np.ndarray:
    return np.concatenate([heads.weight[k].reshape(-1).double().numpy(), heads.bias[k : k + 1].double().numpy()])


def heads_from_vectors(vectors: list[np.ndarray], channels: int) -> ExpertHeads:
    w = np.stack(vectors)
    return ExpertHeads(torch.from_numpy(w[:, :-1]).float().reshape(len(w), channels, 3, 3), torch.from_numpy(w[:, -1]).float())


def refit_head(start: np.ndarray, train: LeastSquares, check: LeastSquares) -> tuple[np.ndarray, float, float, float | None]:
    """The final layer refitted on `train` by ridge least squares towards `start`, the strength
    chosen on `check`. Returns (weights, held-out MSE before, after, chosen strength or None when
    `start` stays)."""
    if train.pixels == 0 or check.pixels == 0:
        return start, float("nan"), float("nan"), None
    before = check.error(start) / check.pixels
    scale = float(np.mean(np.diag(train.gram)))
    best, best_error, best_strength = start, before, None
    for strength in RIDGE_GRID:
        regulariser = strength * scale * np.eye(len(start))
        w = np.linalg.solve(train.gram + regulariser, train.moment + regulariser @ start)
        error = check.error(w) / check.pixels
        if error < best_error:
            best, best_error, best_strength = w, error, strength
    return best, before, best_error, best_strength


def gain_db(noise_energy: float, error: float) -> float:
    """PSNR gain over the noisy input: noise power over error power, in dB."""
    return float(10 * np.log10(noise_energy / error))


def _word(value: float, tertiles, words) -> str:
    return words[0] if value < tertiles[0] else words[1] if value < tertiles[1] else words[2]


def describe_patches(bank: Bank, index: np.ndarray) -> tuple[str, str]:
    """(name, description) of a cluster from its training patches; the words are relative to the
    whole bank (tertiles), the numbers absolute. Clusters of the backbone's own features split by
    noise level first (the features see it), then by content."""
    edges = float(np.mean(bank.edges[index]))
    mean = float(np.mean(bank.clean_mean[index]))
    level = float(np.mean(bank.level_percent[index]))
    edge_word = _word(edges, np.percentile(bank.edges, [33.3, 66.7]), ("flat", "textured", "detailed"))
    intensity_word = _word(mean, np.percentile(bank.clean_mean, [33.3, 66.7]), ("dark", "mid-grey", "bright"))
    name = f"noise ~{level:.0f} %, {intensity_word}, {edge_word}"
    description = (
        f"mean intensity {mean:.2f}, {100 * np.mean(bank.tissue_share[index]):.0f} % tissue, edges {edge_word}, "
        f"noise {level:.1f} % in training; {100 * len(index) / len(bank.edges):.0f} % of training patches"
    )
    return name, description


def train_patch_experts(model: DnCNN, bank: Bank, experts: int, seed: int):
    gate, labels = fit_patch_gate(bank.descriptors, experts, PCA_COMPONENTS, seed)
    # Order the experts by the noise level of their patches, lowest first (the main axis of these
    # features), so that labels read the same way from run to run.
    order = np.argsort([np.mean(bank.level_percent[labels == k]) if np.any(labels == k) else 99.0 for k in range(experts)])
    gate.centroids = gate.centroids[order]
    labels = np.argsort(order)[labels]
    start = head_vector(ExpertHeads.from_model(model))
    vectors, legend = [], []
    error, noise = 0.0, 0.0
    for k in range(experts):
        index = np.flatnonzero(labels == k)
        train, check = bank.statistics(index[~bank.held_out[index]]), bank.statistics(index[bank.held_out[index]])
        w, before, after, strength = refit_head(start, train, check)
        vectors.append(w)
        error += check.error(w)
        noise += check.energy
        log.info(
            "patch K=%d expert %d: %d patches, held-out MSE %.4g -> %.4g (%+.3f dB, ridge %s)",
            experts, k + 1, len(index), before, after, gain_db(before, after) if after > 0 else 0.0, strength,
        )
        name, description = describe_patches(bank, index)
        legend.append({"label": k + 1, "name": name, "description": description})
    return heads_from_vectors(vectors, model.channels), gate, legend, gain_db(noise, error)


def train_segment_experts(model: DnCNN, bank: Bank):
    start = head_vector(ExpertHeads.from_model(model))
    names = ("dark: air, bone, CSF", "grey-matter-like", "white-matter-like", "bright: fat, vessels")
    vectors, legend = [], []
    error, noise = 0.0, 0.0
    for k in range(1, SEGMENT_CLASSES + 1):
        train, check = bank.classes[(k, False)], bank.classes[(k, True)]
        w, before, after, strength = refit_head(start, train, check)
        vectors.append(w)
        error += check.error(w)
        noise += check.energy
        share = 100 * float(bank.class_share[k - 1])
        log.info("segment class %d: %.0f %% of pixels, held-out MSE %.4g -> %.4g (ridge %s)", k, share, before, after, strength)
        legend.append({"label": k, "name": names[k - 1], "description": f"intensity class {k} of {SEGMENT_CLASSES}, darkest first; {share:.0f} % of training pixels"})
    return heads_from_vectors(vectors, model.channels), legend, gain_db(noise, error)


def main(argv=None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m moemri.train.smoe", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=weight_files.weights_dir(), help="weights folder (default: %(default)s)")
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    settings = Settings(**{k: getattr(args, k) for k in vars(defaults)})
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    handlers = [logging.FileHandler(out / "train.log", mode="w"), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers, force=True)
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    seeds = np.random.SeedSequence(settings.seed).spawn(4)
    scene_rng, train_rng, monitor_rng, bank_rng = (np.random.default_rng(s) for s in seeds)
    command = settings.command() + (f" --out {out}" if out.resolve() != weight_files.weights_dir().resolve() else "")
    log.info("%s", command)
    started = time.perf_counter()

    scenes = make_scenes(load_training_volumes(), settings.scenes_per_volume, scene_rng, log=log.info)
    log.info("%d scenes in %.0f s", len(scenes), time.perf_counter() - started)
    radius = settings.slice_radius
    monitor_batch = PatchSampler(scenes, monitor_rng, slice_radius=radius).batch(128)

    def monitor(model) -> float:
        model.eval()
        with torch.no_grad():
            predicted = model(DnCNN.inputs(torch.from_numpy(monitor_batch.slices), torch.from_numpy(monitor_batch.sigma)))
        r = torch.from_numpy(monitor_batch.residual)
        return gain_db(float(torch.sum(r**2)), float(torch.sum((predicted - r) ** 2)))

    model = DnCNN(settings.channels, settings.depth, 2 * radius + 1)
    log.info("backbone: %d layers x %d channels, %d input slices, %d parameters", settings.depth, settings.channels, model.in_slices, model.parameter_count())
    backbone_seconds = train_backbone(model, PatchSampler(scenes, train_rng, slice_radius=radius), monitor, settings)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    common = {"training_data": list(TRAINING_VOLUMES), "command": command, "date": date, "seed": settings.seed}
    weight_files.save(
        model.state_dict(),
        weight_files.BACKBONE,
        {
            **common,
            "training_seconds": round(time.perf_counter() - started),
            "parameters": {
                "architecture": model.config(),
                "parameter_count": model.parameter_count(),
                "steps": settings.steps,
                "batch": settings.batch,
                "patch": PATCH,
                "learning_rate": settings.learning_rate,
                "noise_percent": [0, 5],
                "scenes_per_volume": settings.scenes_per_volume,
                "backbone_seconds": round(backbone_seconds),
            },
            "experts": [{"label": 1, "name": "DnCNN", "description": "the backbone alone: one expert for every patch"}],
        },
        out,
    )

    bank_started = time.perf_counter()
    bank = make_bank(model, PatchSampler(scenes, bank_rng, slice_radius=radius), settings.bank_patches, bank_rng)
    log.info("bank of %d patches (%d held out) in %.0f s", len(bank.edges), bank.held_out.sum(), time.perf_counter() - bank_started)
    held_out = np.flatnonzero(bank.held_out)
    check_all = bank.statistics(held_out)
    start = head_vector(ExpertHeads.from_model(model))
    results = {"backbone (K=1)": gain_db(check_all.energy, check_all.error(start))}
    control, _, _, _ = refit_head(start, bank.statistics(np.flatnonzero(~bank.held_out)), check_all)
    results["control: K=1 head refitted on all patches"] = gain_db(check_all.energy, check_all.error(control))
    head_fit = {"head_fit": "ridge least squares towards the backbone head", "ridge_grid": list(RIDGE_GRID), "bank_patches": settings.bank_patches}

    for experts in PATCH_EXPERT_COUNTS:
        t = time.perf_counter()
        heads, gate, legend, gain = train_patch_experts(model, bank, experts, settings.seed)
        results[f"smoe-patch K={experts}"] = gain
        entry = {
            **common,
            "training_seconds": round(time.perf_counter() - t),
            "parameters": {"backbone": weight_files.BACKBONE, "experts": experts, "gate": "patch", "pca_components": PCA_COMPONENTS, **head_fit},
            "experts": legend,
        }
        weight_files.save({**heads.tensors(), **gate.tensors()}, f"experts-patch-k{experts}.pt", entry, out)

    t = time.perf_counter()
    heads, legend, gain = train_segment_experts(model, bank)
    results[f"smoe-segment K={SEGMENT_CLASSES}"] = gain
    entry = {
        **common,
        "training_seconds": round(time.perf_counter() - t),
        "parameters": {"backbone": weight_files.BACKBONE, "experts": SEGMENT_CLASSES, "gate": "segment", **head_fit},
        "experts": legend,
    }
    weight_files.save(heads.tensors(), f"experts-segment-k{SEGMENT_CLASSES}.pt", entry, out)

    log.info("held-out bank patches (%d), PSNR gain over the noisy patch:", len(held_out))
    for name, gain in results.items():
        log.info("  %-45s %.3f dB", name, gain)
    log.info("done in %.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
