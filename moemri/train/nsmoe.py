"""Train N-SMoE on the shared loop (moemri/train/loop.py): `python -m moemri.train.nsmoe`.

Stages, each a loop `Task` with its own checkpoint in `--checkpoints` (resumable: the same command
continues where it stopped; `--minutes`, SIGTERM or Ctrl-C stop at a checkpoint):
- `k8`, `k1`, `k16`: the reconstruction-only model with 8 (1, 16) kernels per block,
  each with the same steps and batches (K = 1 is the one-kernel-per-block ablation);
- `k8-adversarial`: `k8`'s best weights fine-tuned with the paper's adversarial loss added (a
  patch discriminator, least-squares GAN), ADVERSARIAL_WEIGHT x its generator term.
Pairs: nsmoe_data.py (stochastic degradation of 2-D slices of the four training heads). Loss:
L1 + SSIM_WEIGHT x (1 - SSIM) (the core's SSIM, train/remix.py). Validation: fixed cases of the
validation head mni152-2009 (in-plane x2/x4, thick x2.5/x4, denoising 3-9 %), `score` = the mean
PSNR gain over the starting image (B-spline, or the noisy input) in dB; the best-scoring weights
are kept and exported to Resources/Weights/nsmoe with `--export`.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import sys
import time
from pathlib import Path

import numpy as np

BATCH = 8
SSIM_WEIGHT = 0.1  # PSNR is what the benchmark scores; SSIM keeps structure from washing out
ADVERSARIAL_WEIGHT = 0.005
# Measured: on denoising alone a peak of 3e-3 learned far faster than 1e-3 (+7.3 against +0.3 dB
# over the noisy input after 150 steps), but on the mixed tasks it diverged at step 700; 1.5e-3 did not.
PEAK_LEARNING_RATE = 1.5e-3
VALIDATION_MSE_FLOOR = 1e-6

log = logging.getLogger("moemri.train.nsmoe")


class PatchDiscriminator:
    """A small PatchGAN (Isola et al. 2017): one real/fake score per ~22-pixel receptive field."""

    @staticmethod
    def build():
        from torch import nn

        return nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(32, 32, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(32, 1, 3, padding=1),
        )


class NSMoETask:
    def __init__(self, name, model, heads, validation, adversarial: bool = False, batch: int = BATCH):
        from .remix import _gaussian_window

        self.name, self.model, self.heads, self.validation, self.batch = f"nsmoe-{name}", model, heads, validation, batch
        self.window = _gaussian_window()
        self.discriminator = PatchDiscriminator.build() if adversarial else None

    def modules(self):
        out = {"model": self.model}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator
        return out

    def parameters(self):
        return [p for m in self.modules().values() for p in m.parameters()]

    def _run(self, batch):
        import torch

        out = self.model(torch.from_numpy(batch.inputs), torch.from_numpy(batch.rows), torch.from_numpy(batch.cols), torch.from_numpy(batch.base))
        return out.image

    def step(self, step, rng):
        import torch

        from .nsmoe_data import sample_batch
        from .remix import ssim

        batch = sample_batch(self.heads, rng, self.batch)
        prediction = self._run(batch)
        target = torch.from_numpy(batch.target)
        l1 = (prediction - target).abs().mean()
        structure = 1 - ssim(prediction[:, None], target[:, None], self.window)
        loss = l1 + SSIM_WEIGHT * structure
        terms = {"l1": float(l1.detach()), "1-ssim": float(structure.detach())}
        if self.discriminator is not None:
            d = self.discriminator
            # Generator term through a frozen discriminator; the discriminator's own term on a
            # detached output: one backward pass of the shared loop updates each by its own loss.
            for p in d.parameters():
                p.requires_grad_(False)
            generator = ((d(prediction[:, None]) - 1) ** 2).mean()
            for p in d.parameters():
                p.requires_grad_(True)
            critic = 0.5 * (((d(target[:, None]) - 1) ** 2).mean() + (d(prediction.detach()[:, None]) ** 2).mean())
            loss = loss + ADVERSARIAL_WEIGHT * generator + critic
            terms.update({"g_adv": float(generator.detach()), "d": float(critic.detach())})
        return loss, terms

    def validate(self):
        gains = {}
        for batch in self.validation:
            restored = self._run(batch).numpy()
            mask = batch.target > 0.05
            errors = [float(np.mean((a[mask] - batch.target[mask]) ** 2)) + VALIDATION_MSE_FLOOR for a in (batch.base, restored)]
            gains.setdefault(batch.task, []).append(10 * np.log10(errors[0] / errors[1]))
        scores = {f"{task}_gain_db": float(np.mean(v)) for task, v in gains.items()}
        scores["score"] = float(np.mean([g for v in gains.values() for g in v]))
        return scores


STAGES = {  # name: (kernels, adversarial, initialised from)
    "k8": (8, False, None),
    "k1": (1, False, None),
    "k16": (16, False, None),
    "k8-adversarial": (8, True, "k8"),
}


def _finished(directory: Path, stage: str) -> Path:
    return directory / f"{stage}.pt"


def run_stage(args, stage, heads, validation, deadline) -> bool:
    import torch

    from ..methods.nsmoe.model import NSMoE
    from .loop import Schedule, train

    done = _finished(args.checkpoints, stage)
    if done.is_file():
        return True
    kernels, adversarial, parent = STAGES[stage]
    seed = args.seed * 100 + list(STAGES).index(stage)
    torch.manual_seed(seed)  # the initial weights too (the loop seeds only what follows)
    model = NSMoE(kernels)
    steps, lr = (args.adversarial_steps, 3e-4) if adversarial else (args.steps, PEAK_LEARNING_RATE)
    if parent is not None:
        model.load_state_dict(torch.load(_finished(args.checkpoints, parent))["state"])
    task = NSMoETask(stage, model, heads, validation, adversarial)
    # The adversarial fine-tune is scored from its first validation on, not against its starting
    # weights: a PSNR score alone would keep the reconstruction model and ship it under that name.
    schedule = Schedule(steps=steps, learning_rate=lr, validate_every=args.validate_every, seed=seed, validate_first=not adversarial)
    minutes = None if deadline is None else max(1e-9, (deadline - time.monotonic()) / 60)
    checkpoint = args.checkpoints / f"{stage}.ckpt"
    outcome = train(task, schedule, checkpoint, minutes=minutes, progress=False)
    if not outcome.finished:
        return False
    torch.save({"state": model.state_dict(), "best_step": outcome.best_step, "best": outcome.best, "history": outcome.history, "steps": steps,
                "architecture": model.architecture, "seconds": outcome.seconds}, done)
    checkpoint.unlink()
    log.info("%s finished: best validation gain %.3f dB at step %d of %d", stage, outcome.best["score"], outcome.best_step, steps)
    return True


def export(args, stages, command: str) -> None:
    import torch

    from ..methods.nsmoe.weights import filename, save_model

    for stage in stages:
        if not _finished(args.checkpoints, stage).is_file():
            continue
        saved = torch.load(_finished(args.checkpoints, stage))
        kernels, adversarial, parent = STAGES[stage]
        entry = {
            "training_data": list(args.heads),
            "command": command,
            "date": datetime.date.today().isoformat(),
            "seed": args.seed,
            "batch": BATCH,
            "iterations": saved["steps"] + (args.steps if parent else 0),
            "best_step": saved["best_step"],
            "validation": {k: round(v, 3) for k, v in saved["best"].items()},
            "train_seconds": round(saved.get("seconds", 0.0)),
            "architecture": saved["architecture"],
            "loss": f"L1 + {SSIM_WEIGHT} (1 - SSIM)" + (f" + {ADVERSARIAL_WEIGHT} LSGAN (patch discriminator), fine-tuned from {parent}" if adversarial else ""),
        }
        save_model(saved["state"], filename(kernels, adversarial), entry, args.out)
        log.info("exported %s", stage)


def main(argv=None) -> int:
    import torch

    from ..bench.cases import validation_volume
    from ..methods.nsmoe.weights import weights_dir
    from .loop import start_log
    from .nsmoe_data import prepare_head, validation_batches
    from .remix import TRAINING_IDS, training_head

    parser = argparse.ArgumentParser(prog="python -m moemri.train.nsmoe", description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=["k8", "k1", "k16", "k8-adversarial"], choices=list(STAGES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--adversarial-steps", type=int, default=200)
    parser.add_argument("--validate-every", type=int, default=100)
    parser.add_argument("--heads", nargs="+", default=list(TRAINING_IDS))
    parser.add_argument("--minutes", type=float, default=None, help="stop cleanly at a checkpoint after this long")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoints", type=Path, default=None, help="default: Resources/Weights/nsmoe/checkpoints")
    parser.add_argument("--export", action="store_true", help="write every finished stage's best weights to --out")
    parser.add_argument("--out", type=Path, default=None, help="default: Resources/Weights/nsmoe")
    args = parser.parse_args(argv)
    args.out = args.out or weights_dir()
    args.checkpoints = args.checkpoints or weights_dir() / "checkpoints"

    start_log(args.checkpoints / "train.log")
    log.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    command = ("python -m moemri.train.nsmoe " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    log.info("%s (torch %s, %d thread(s))", command, torch.__version__, args.threads)
    deadline = None if args.minutes is None else time.monotonic() + 60 * args.minutes
    heads = [prepare_head(training_head(i), i) for i in args.heads]
    validation = validation_batches(prepare_head(validation_volume(), "mni152-2009"))
    finished = True
    for stage in args.stages:
        if not run_stage(args, stage, heads, validation, deadline):
            finished = False
            break
        if args.export:
            export(args, [stage], command)
    log.info("done" if finished else "stopped; run the same command again to continue")
    return 0 if finished else 3


if __name__ == "__main__":
    sys.exit(main())
