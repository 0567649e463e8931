"""Rebuild Resources/Weights/smoe/ (sparse MoE denoising, Deng and Campbell, arXiv:2501.14198):
`python -m moemri.train.smoe [--experts gate:K,...]`.

Both stages run on the shared loop (loop.py): seeded, validated on held-back slices of the
validation head (never the benchmark's central slab, never training patches), the best checkpoint
kept, resumable (the checkpoints live in Resources/Weights/smoe/checkpoints/; run the same command
again to continue a stopped run).

1. Backbone: the DnCNN on patches of the training heads (train/slices.py), Rician noise 0-5 %.
   Skipped when backbone.pt is already there (`--retrain-backbone` to redo it).
2. Experts, for each gate and K: the backbone is split into a frozen front and a tail (the last
   three convolutions, tails.py); K copies of the tail are the experts. Training is hard EM with
   the gate as the prior: every patch goes to the expert that explains it best,
   argmax_k [log gate_k(anatomy) - squared error_k / (2 s^2)] (s^2: the running per-pixel error),
   with at most twice its fair share of a batch per expert so that none dies; that expert takes a
   gradient step on it, and the gate (a small MLP on anatomy descriptors, anatomy.py) learns to
   predict the choice (cross-entropy plus a load-balancing term). The first fifth of the steps
   route by k-means of the same descriptors (the paper's gate), which starts the experts apart.
   `--routing gate` instead trains each expert on the patches the gate sends it (the gate still
   learns the EM choice); measured, it tracked 0.03-0.13 dB below EM on validation at equal
   steps. `--experts kmeans:K` keeps the k-means partition throughout (the paper's recipe with
   gradient-trained tails); `segment:4` trains one expert per intensity class on its pixels.
   K = 1 is the control: the same tail fine-tuned for the same steps on all patches, so a mixture
   and its one-expert version have had the same budget.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..methods.smoe import weights as weight_files
from ..methods.smoe.anatomy import DESCRIPTORS, GateNet, patch_anatomy
from ..methods.smoe.dncnn import OUTPUT_SCALE, SLICE_RADIUS, DnCNN
from ..methods.smoe.gate import fit_patch_gate
from ..methods.smoe.tails import ExpertTails, split
from .loop import Schedule, start_log, train
from .slices import PATCH, TRAINING_VOLUMES, PatchSampler, load_training_volumes, make_scenes

log = logging.getLogger("moemri.train.smoe")

WARM_SHARE = 0.2  # steps routed by k-means before hard EM
CAPACITY = 2.0  # an expert takes at most this many times its fair share of a batch
BALANCE_WEIGHT = 0.05
VALIDATION_LEVELS = (3.0, 5.0, 9.0)
VALIDATION_SLICES_MM = 16.0


@dataclass
class Settings:
    seed: int = 0
    backbone_steps: int = 10000
    expert_steps: int = 3000
    batch: int = 32
    backbone_learning_rate: float = 2e-3
    expert_learning_rate: float = 5e-4
    channels: int = 24
    depth: int = 8
    scenes_per_volume: int = 6
    validate_every: int = 250
    threads: int = 1


# ------------------------------------------------------------------------------- validation


class ValidationCases:
    """Held-back cases of the validation head: a 16 mm slab above and one below the benchmark's
    central 64 mm slab, on the three clinical copies, at 3, 5 and 9 % stationary and 5 % varying
    noise (fixed seeds). Scored as the shipped method runs, through method.denoise_volume."""

    def __init__(self):
        from ..bench.cases import SLAB_MM, clinical_copies, validation_volume
        from ..degrade.noise import add_rician
        from ..masks import head_mask
        from ..volume import Volume

        head = validation_volume()
        mask = head_mask(head.array)
        ks = np.nonzero(mask.any(axis=(1, 2)))[0]
        centre = (ks[0] + ks[-1]) // 2
        half = int(round(SLAB_MM / head.spacing[2] / 2))
        thick = int(round(VALIDATION_SLICES_MM / head.spacing[2]))
        self.cases = []
        for name, k0 in (("above", centre + half + 2), ("below", centre - half - 2 - thick)):
            origin = np.asarray(head.origin) + head.direction[:, 2] * k0 * head.spacing[2]
            part = Volume(head.array[k0 : k0 + thick].copy(), head.spacing, tuple(origin), head.direction, f"validation-{name}")
            for copy_name, clean in clinical_copies(part).items():
                m = head_mask(clean.array)
                for level, varying in [(lv, False) for lv in VALIDATION_LEVELS] + [(5.0, True)]:
                    seed = 4321 + int(level * 10) + (1000 if varying else 0) + (7 if name == "below" else 0)
                    noisy, _ = add_rician(clean, level, seed=seed, varying=varying)
                    self.cases.append((f"{name} {copy_name} {level:g}%{' varying' if varying else ''}", clean, noisy, m, level))

    def score(self, kind: str, experts: int, parts) -> dict[str, float]:
        from ..methods.base import no_progress
        from ..methods.smoe.method import denoise_volume
        from ..metrics import psnr

        values = []
        for _, clean, noisy, mask, level in self.cases:
            result = denoise_volume(noisy, kind, experts, "cpu", no_progress, level, orientations=1, parts=parts)
            peak = float(clean.array[mask].max())
            values.append(psnr(clean.array, result.image.array, mask, data_range=peak))
        return {"score": float(np.mean(values)), "min": float(np.min(values))}


# ----------------------------------------------------------------------------------- tasks


class BackboneTask:
    """The DnCNN from scratch: MSE of the predicted residual."""

    def __init__(self, model: DnCNN, sampler: PatchSampler, batch: int, validation: ValidationCases):
        self.name, self.model, self.sampler, self.batch, self.validation = "smoe-backbone", model, sampler, batch, validation

    def modules(self):
        return {"model": self.model}

    def parameters(self):
        return list(self.model.parameters())

    def step(self, step, rng):
        self.sampler.rng = rng
        b = self.sampler.batch(self.batch)
        predicted = self.model(DnCNN.inputs(torch.from_numpy(b.slices), torch.from_numpy(b.sigma)))
        loss = torch.mean((predicted - torch.from_numpy(b.residual)) ** 2) / OUTPUT_SCALE**2
        return loss, {}

    def validate(self):
        front, tail = split(self.model)
        return self.validation.score("patch", 1, _parts(self.model, front, ExpertTails([tail]), None, "training"))


def _parts(model: DnCNN, front, tails, gate, gate_kind):
    """What method.load_mixture returns, for weights still in training."""
    entry = {"sha256": "in-training", "parameters": {"gate": gate_kind}}  # (the tails are already split off)
    return front, tails, gate, [], entry, (model.in_slices // 2, model.receptive_radius, model.channels)


class ExpertsTask:
    """K tails over the frozen front, routed by hard EM with a learned gate (see the docstring)."""

    def __init__(self, model: DnCNN, kind: str, experts: int, sampler: PatchSampler, batch: int, steps: int, validation, seed: int, routing: str = "em", tail_layers: int = 3):
        self.kind, self.experts, self.sampler, self.batch, self.steps, self.validation = kind, experts, sampler, batch, steps, validation
        self.routing = routing
        self.name = f"smoe-{kind}-k{experts}" + ("" if routing == "em" or kind != "patch" else f"-{routing}")
        self.model, self.tail_layers = model, tail_layers
        self.front, tail = split(model, tail_layers)
        self.tails = ExpertTails.copies(tail, experts)
        self.gate = GateNet(experts)
        self.error_scale = None  # running per-pixel squared error, the s^2 of the EM posterior
        # Descriptors of a fixed bank of patches: the gate's standardisation and the k-means start.
        bank = PatchSampler(sampler.scenes, np.random.default_rng([seed, 99]), slice_radius=sampler.radius).batch(2048)
        descriptors = self.describe(bank)
        self.gate.standardise_on(descriptors)
        self.kmeans = None
        if kind in ("patch", "kmeans") and experts > 1:
            self.kmeans, _ = fit_patch_gate(descriptors.numpy(), experts, components=8, seed=seed)

    def modules(self):
        return {"tails": self.tails, "gate": self.gate}

    def parameters(self):
        return list(self.tails.parameters()) + list(self.gate.parameters())

    @staticmethod
    def describe(b) -> torch.Tensor:
        centre = torch.from_numpy(b.slices[:, b.slices.shape[1] // 2])
        pooled, _, _, _ = patch_anatomy(centre, torch.from_numpy(b.depth))
        return pooled[:, 0, 0]  # one 48x48 patch: (N, 12)

    def step(self, step, rng):
        self.sampler.rng = rng
        b = self.sampler.batch(self.batch)
        with torch.no_grad():
            features = self.front(DnCNN.inputs(torch.from_numpy(b.slices), torch.from_numpy(b.sigma)))
        target = torch.from_numpy(b.residual)  # (N, 1, P, P)
        n, k = len(target), self.experts
        if k == 1:
            loss = torch.mean((self.tails.one(0, features) - target) ** 2) / OUTPUT_SCALE**2
            return loss, {}
        if self.kind == "segment":
            classes = torch.from_numpy(b.classes.astype(np.int64) - 1).clamp(0, k - 1)[:, None]  # (N, 1, P, P)
            loss = 0.0
            for e in range(k):
                chosen = (classes == e).float()
                loss = loss + torch.sum(((self.tails.one(e, features) - target) ** 2) * chosen)
            return loss / target.numel() / OUTPUT_SCALE**2, {}

        descriptors = self.describe(b)
        logits = self.gate(descriptors)
        with torch.no_grad():
            errors = ((self.tails.all(features) - target) ** 2).mean(dim=(2, 3))  # (N, K) per-pixel MSE
            mean_error = float(errors.min(1).values.mean())
            self.error_scale = mean_error if self.error_scale is None else 0.98 * self.error_scale + 0.02 * mean_error
            capacity = math.ceil(CAPACITY * n / k)
            if self.kind == "kmeans" or step < WARM_SHARE * self.steps:
                labels = gate_target = torch.from_numpy(self.kmeans.assign(descriptors.numpy()))
            else:
                pixels = target.shape[-1] * target.shape[-2]
                posterior = torch.log_softmax(logits, 1) - errors * pixels / (2 * self.error_scale)
                gate_target = balanced_argmax(posterior, capacity)  # the expert that explains the patch best
                # "gate": experts learn the patches the gate will send them at inference, and the
                # gate learns to send each patch where it is explained best (hard EM would train
                # the experts on gate_target, which a gate on anatomy predicts only ~45 % of the time).
                labels = balanced_argmax(logits.detach(), capacity) if self.routing == "gate" else gate_target
        loss = 0.0
        for e in range(k):
            idx = (labels == e).nonzero(as_tuple=True)[0]
            if idx.numel():
                loss = loss + torch.sum((self.tails.one(e, features[idx]) - target[idx]) ** 2)
        mse = loss / target.numel() / OUTPUT_SCALE**2
        probabilities = torch.softmax(logits, 1)
        cross_entropy = torch.nn.functional.cross_entropy(logits, gate_target)
        shares = torch.bincount(labels, minlength=k).float() / n
        balance = k * torch.sum(shares * probabilities.mean(0))  # Switch Transformer's term: 1 when even
        agreement = float((logits.argmax(1) == gate_target).float().mean())
        return mse + cross_entropy + BALANCE_WEIGHT * balance, {"mse": float(mse), "gate_ce": float(cross_entropy), "gate_agrees": agreement}

    def validate(self):
        gate = self.kmeans if self.kind == "kmeans" else self.gate
        kind = "patch" if self.kind == "kmeans" else self.kind
        return self.validation.score(kind, self.experts, _parts(self.model, self.front, self.tails, gate, "kmeans" if self.kind == "kmeans" else "net"))


def balanced_argmax(scores: torch.Tensor, capacity: int) -> torch.Tensor:
    """Each row's best column, no column taking more than `capacity` rows: rows are placed in
    order of how much they prefer their best column, the rest fall to their next best."""
    n, k = scores.shape
    labels = torch.full((n,), -1, dtype=torch.int64)
    load = [0] * k
    top2 = scores.topk(min(2, k), dim=1).values
    margin = top2[:, 0] - (top2[:, 1] if k > 1 else 0)
    for i in torch.argsort(margin, descending=True).tolist():
        for e in torch.argsort(scores[i], descending=True).tolist():
            if load[e] < capacity:
                labels[i], load[e] = e, load[e] + 1
                break
    return labels


# ------------------------------------------------------------------------------- legend


def describe_experts(task: ExpertsTask, sampler: PatchSampler, patches: int = 2048) -> list[dict]:
    """Name and describe each expert from where its gate sends a fixed bank of training patches:
    shares of the dark (CSF-like), grey and white intensity classes, of the head's outer rim
    (within 5 mm of the surface), edge density and the noise level of its patches."""
    names = {"segment": ("dark: air, bone, CSF", "grey-matter-like", "white-matter-like", "bright: fat, vessels")}
    b = sampler.batch(patches)
    if task.kind == "segment":
        labels_pixels = b.classes.astype(int) - 1
        owners = [labels_pixels == k for k in range(task.experts)]
    else:
        descriptors = task.describe(b)
        gate = task.kmeans if task.kind == "kmeans" else task.gate
        labels = gate.assign(descriptors.numpy()) if task.experts > 1 else np.zeros(patches, int)
        owners = [np.broadcast_to((labels == k)[:, None, None], b.classes.shape) for k in range(task.experts)]
    rim = (b.depth > 0) & (b.depth < 5.0)
    gy, gx = np.gradient(b.clean[:, 0], axis=(1, 2))
    edges = np.hypot(gy, gx)
    levels = np.broadcast_to(b.level_percent[:, None, None], b.classes.shape)
    total = sum(int(o.sum()) for o in owners)
    legend = []
    for k, own in enumerate(owners):
        pixels = int(own.sum())
        tissue = own & b.tissue
        n_tissue = max(int(tissue.sum()), 1)
        share = {c: 100.0 * float(((b.classes == c) & tissue).sum()) / n_tissue for c in range(1, 5)}
        rim_share = 100.0 * float((own & rim).sum()) / max(pixels, 1)
        edge = float(edges[own].mean()) if pixels else 0.0
        level = float(levels[own].mean()) if pixels else 0.0
        tissue_share = 100.0 * float(tissue.sum()) / max(pixels, 1)
        if task.kind == "segment":
            name = names["segment"][k]
        else:
            main = max(((share[1], "dark/CSF"), (share[2], "grey"), (share[3], "white"), (rim_share, "rim")), key=lambda t: t[0])[1]
            edge_word = "edges" if edge > np.mean(edges) * 1.15 else "flat" if edge < np.mean(edges) * 0.85 else "mixed"
            name = f"{main}, {edge_word}" if task.experts > 1 else "one expert"
        legend.append(
            {
                "label": k + 1,
                "name": name,
                "description": (
                    f"{100 * pixels / max(total, 1):.0f} % of training pixels; tissue {tissue_share:.0f} %: dark/CSF {share[1]:.0f} %, "
                    f"grey {share[2]:.0f} %, white {share[3]:.0f} %, bright {share[4]:.0f} %; outer 5 mm rim {rim_share:.0f} %; "
                    f"edge density {edge:.3f}; noise {level:.1f} % (training mix)"
                ),
                "shares": {"dark": share[1], "grey": share[2], "white": share[3], "bright": share[4], "rim": rim_share},
                "edge_density": edge,
                "noise_percent": level,
            }
        )
    return legend


# ---------------------------------------------------------------------------------- main


def _tensors(task: ExpertsTask) -> dict:
    out = {f"tails.{k}": v for k, v in task.tails.state_dict().items()}
    if task.experts > 1 and task.kind == "patch":
        out.update({f"gate.{k}": v for k, v in task.gate.state_dict().items()})
    if task.experts > 1 and task.kind == "kmeans":
        out.update(task.kmeans.tensors())
    return out


def main(argv=None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m moemri.train.smoe", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=weight_files.weights_dir(), help="weights folder (default: %(default)s)")
    parser.add_argument("--experts", default="patch:1,patch:4,segment:4,patch:8,patch:2", help="gate:K runs, in order (gate: patch, kmeans or segment)")
    parser.add_argument("--retrain-backbone", action="store_true")
    parser.add_argument("--routing", choices=("em", "gate"), default="em", help="patch gate: train each expert on the patches it explains best (em, shipped) or on those the gate sends it (gate)")
    parser.add_argument("--minutes", type=float, default=None, help="stop cleanly at a checkpoint after this long (resume by running again; 0 only loads)")
    parser.add_argument("--export-unfinished", action="store_true", help="write the best weights of a stopped run so far (the manifest says how many steps it had)")
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    settings = Settings(**{k: getattr(args, k) for k in vars(defaults)})
    out: Path = args.out
    checkpoints = out / "checkpoints"
    start_log(out / "train.log")
    torch.set_num_threads(settings.threads)
    command = "python -m moemri.train.smoe " + " ".join(sys.argv[1:] if argv is None else argv)
    log.info("%s (torch %s, %d thread(s))", command.strip(), torch.__version__, settings.threads)
    started = time.perf_counter()
    deadline = None if args.minutes is None else time.monotonic() + 60 * args.minutes

    def minutes_left():
        return None if deadline is None else max(0.0, (deadline - time.monotonic()) / 60)

    seeds = np.random.SeedSequence(settings.seed).spawn(2)
    scenes = make_scenes(load_training_volumes(), settings.scenes_per_volume, np.random.default_rng(seeds[0]), log=log.info)
    validation = ValidationCases()
    log.info("%d scenes, %d validation cases in %.0f s", len(scenes), len(validation.cases), time.perf_counter() - started)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    common = {"training_data": list(TRAINING_VOLUMES), "validation_data": "mni152-2009 (16 mm slabs beside the benchmark slab)", "command": command.strip(), "date": date, "seed": settings.seed}

    model = DnCNN(settings.channels, settings.depth, 2 * SLICE_RADIUS + 1)
    if args.retrain_backbone or not (out / weight_files.BACKBONE).is_file():
        task = BackboneTask(model, PatchSampler(scenes, None, slice_radius=SLICE_RADIUS), settings.batch, validation)
        schedule = Schedule(settings.backbone_steps, settings.backbone_learning_rate, validate_every=settings.validate_every * 4, seed=settings.seed)
        outcome = train(task, schedule, checkpoints / f"{task.name}.pt", minutes=minutes_left())
        if not outcome.finished:
            return 3
        weight_files.save(
            model.state_dict(),
            weight_files.BACKBONE,
            {
                **common,
                "training_seconds": round(outcome.seconds),
                "parameters": {"architecture": model.config(), "parameter_count": model.parameter_count(), "steps": settings.backbone_steps, "batch": settings.batch, "patch": PATCH, "noise_percent": [0, 5], "best_step": outcome.best_step, "validation_psnr": outcome.best["score"]},
                "experts": [{"label": 1, "name": "DnCNN", "description": "the backbone alone"}],
            },
            out,
        )
    else:
        state, _ = weight_files.load(weight_files.BACKBONE, out)
        model.load_state_dict(state)
        log.info("backbone: %s (kept; --retrain-backbone to redo it)", out / weight_files.BACKBONE)
    model.eval()

    for run in args.experts.split(","):
        kind, k = run.split(":")
        k = int(k)
        task = ExpertsTask(model, kind, k, PatchSampler(scenes, None, slice_radius=SLICE_RADIUS), settings.batch, settings.expert_steps, validation, settings.seed, args.routing)
        schedule = Schedule(settings.expert_steps, settings.expert_learning_rate, validate_every=settings.validate_every, clip_norm=None, seed=settings.seed + k)
        outcome = train(task, schedule, checkpoints / f"{task.name}.pt", minutes=minutes_left())
        if not outcome.finished and not args.export_unfinished:
            log.info("stopped during %s; run the same command again to continue", task.name)
            return 3
        if not outcome.finished:
            from .loop import best_weights

            for name, state in best_weights(checkpoints / f"{task.name}.pt").items():
                task.modules()[name].load_state_dict(state)
            log.info("%s: exporting the best weights so far (step %d of %d steps done)", task.name, outcome.best_step, outcome.step)
        legend = describe_experts(task, PatchSampler(scenes, np.random.default_rng([settings.seed, 7]), slice_radius=SLICE_RADIUS))
        for e in legend:
            log.info("%s expert %d: %s: %s", task.name, e["label"], e["name"], e["description"])
        file_kind = "patch" if kind == "kmeans" else kind
        weight_files.save(
            _tensors(task),
            weight_files.expert_file(file_kind, k),
            {
                **common,
                "training_seconds": round(outcome.seconds),
                "parameters": {
                    "backbone": weight_files.BACKBONE,
                    "experts": k,
                    "gate": {"patch": "net", "kmeans": "kmeans", "segment": "segment"}[kind],
                    "routing": args.routing if kind == "patch" else kind,
                    "gate_descriptors": list(DESCRIPTORS),
                    "expert_layers": "last 3 convolutions of the backbone (tails.py)",
                    "steps": settings.expert_steps if outcome.finished else f"{outcome.step} of {settings.expert_steps} (unfinished; run again to continue)",
                    "batch": settings.batch,
                    "learning_rate": settings.expert_learning_rate,
                    "best_step": outcome.best_step,
                    "validation_psnr": outcome.best["score"],
                    "validation_curve": [(h["step"], round(h["score"], 3)) for h in outcome.history],
                },
                "experts": legend,
            },
            out,
        )
    log.info("done in %.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
