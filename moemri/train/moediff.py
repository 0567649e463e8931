"""Train MoEDiff-SR on the shared loop (moemri/train/loop.py): `python -m moemri.train.moediff`.

1. Slices are simulated on the fly from crops of the four training heads (train/moediff_data.py:
   thick slices x2..x5 and in-plane reduction x2..x4, B-spline back as at inference).
2. One diffusion step per batch (DDPM training): a time step t drawn uniformly from the cosine
   schedule's 1000, noise added to the scaled residual x0 by MONAI's scheduler, and the experts'
   x0 estimates mixed by the gate. Loss: squared error of the mixed estimate + COMPETITIVE x the
   gate-weighted squared error of each expert's own estimate (Jacobs et al. 1991: each expert is pulled
   towards the tokens the gate gives it, so the experts specialise, and each expert's own
   estimate is meaningful for its difference map) + BALANCE x the load-balancing term.
3. Validation: fixed slices of the validation head mni152-2009 in the benchmark's cases, sampled
   as the GUI does (DDIM, 5 steps, seed 0, starting-noise temperature 0; until step 500 of the
   first E = 3 run it was temperature 1, whose scores only measured the sampling noise); `score` = mean PSNR gain over B-spline (dB) in the
   head; the best-scoring weights are kept.
4. Runs E = 3, 1 and 5 in turn with the same steps and batch (the same budget of samples), each
   its own loop checkpoint; a finished run is exported to --out at once.

Resume: the same command continues where it stopped (--minutes, SIGTERM or Ctrl-C stop it at a
checkpoint). mni152-2009 is the validation head and is refused as a training head.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from .remix import TRAINING_IDS, training_head

WIDTHS = (8, 16, 32)
FEATURE_DIM = 32
PATCH = 64
BATCH = 8
COMPETITIVE = 0.5
BALANCE = 0.01
VALIDATION_STEPS = 5
VALIDATION_SEED = 0
VALIDATION_TEMPERATURE = 0.0  # the starting noise's scale when validating (see method.TEMPERATURE_OPTION)
EXPERT_RUNS = (3, 1, 5)

log = logging.getLogger("moemri.train.moediff")


def gain_db(low: np.ndarray, restored: np.ndarray, target: np.ndarray) -> float:
    """PSNR gain of `restored` over `low` against `target`, in the head (target > 0.05)."""
    mask = target > 0.05
    errors = [float(np.mean((a[mask] - target[mask]) ** 2)) + 1e-8 for a in (low, restored)]
    return float(10 * np.log10(errors[0] / errors[1]))


class MoEDiffTask:
    def __init__(self, model, heads, validation, batch=BATCH, patch=PATCH, competitive=COMPETITIVE, balance=BALANCE):
        from ..methods.moediff.sampler import make_scheduler

        self.name = f"moediff-e{model.expert_count}"
        self.model, self.heads, self.validation = model, heads, validation
        self.batch, self.patch, self.competitive, self.balance = batch, patch, competitive, balance
        self.scheduler = make_scheduler()

    def modules(self):
        return {"model": self.model}

    def parameters(self):
        return list(self.model.parameters())

    def step(self, step, rng):
        import torch

        from ..methods.moediff.gate import load_balancing_loss
        from ..methods.moediff.network import RESIDUAL_SCALE
        from .moediff_data import sample_batch

        low, target, ratios = (torch.from_numpy(a) for a in sample_batch(self.heads, rng, self.batch, self.patch))
        x0 = (target - low) * RESIDUAL_SCALE
        t = torch.from_numpy(rng.integers(0, self.scheduler.num_train_timesteps, self.batch)).long()
        noise = torch.from_numpy(rng.standard_normal(x0.shape).astype(np.float32))
        x_t = self.scheduler.add_noise(x0, noise, t)
        tokens, weights = self.model.weights(low, "soft")
        estimates = self.model.expert_estimates(x_t, low, t, ratios)
        mixed = (weights * estimates).sum(dim=1, keepdim=True)
        mix_loss = ((mixed - x0) ** 2).mean()
        own_loss = (weights * (estimates - x0) ** 2).sum(dim=1).mean()
        balance = load_balancing_loss(tokens)
        loss = mix_loss + self.competitive * own_loss + self.balance * balance
        return loss, {"mix": float(mix_loss.detach()), "own": float(own_loss.detach()), "balance": float(balance.detach())}

    def validate(self):
        import torch

        from ..methods.moediff.network import RESIDUAL_SCALE
        from ..methods.moediff.sampler import sample, slice_noise

        gains, shares = [], np.zeros(self.model.expert_count)
        for c, (_, low, target, ratios) in enumerate(self.validation):
            noise = slice_noise(low.shape, VALIDATION_SEED, c, 0) * VALIDATION_TEMPERATURE
            out = sample(self.model, torch.from_numpy(low[:, None]), torch.from_numpy(ratios), noise, VALIDATION_STEPS, scheduler=self.scheduler)
            restored = low + out.residual[:, 0].numpy() / RESIDUAL_SCALE
            gains.append(gain_db(low, restored, target))
            shares += np.bincount(out.token_weights.argmax(1).ravel().numpy(), minlength=shares.size)
        shares /= shares.sum()
        scores = {"score": float(np.mean(gains)), "worst_gain_db": float(np.min(gains))}
        scores.update({f"share_e{e + 1}": float(s) for e, s in enumerate(shares)})
        return scores


def export(model, outcome, args, command: str, steps: int) -> None:
    from ..methods.moediff.experts import parameter_count
    from ..methods.moediff.network import RESIDUAL_SCALE
    from ..methods.moediff.sampler import PREDICTION
    from ..methods.moediff.weights import save

    entry = {
        "training_data": list(args.heads),
        "command": command,
        "date": datetime.date.today().isoformat(),
        "seed": args.seed,
        "experts": model.expert_count,
        "widths": list(WIDTHS),
        "feature_dim": FEATURE_DIM,
        "prediction": PREDICTION,
        "residual_scale": RESIDUAL_SCALE,
        "patch": PATCH,
        "batch": BATCH,
        "iterations": steps,
        "best_step": outcome.best_step,
        "validation_gain_db": round(outcome.best["score"], 3),
        "validation": f"mni152-2009 slices, DDIM {VALIDATION_STEPS} steps, seed {VALIDATION_SEED}, temperature {VALIDATION_TEMPERATURE:g}",
        "parameters": parameter_count(model),
        "training_seconds": round(outcome.seconds, 1),
    }
    save(model.state_dict(), model.expert_count, entry, args.out)


def main(argv=None) -> int:
    import torch

    from ..bench.cases import validation_volume
    from ..methods.moediff.network import MoEDiff
    from ..methods.moediff.weights import filename, weights_dir
    from .loop import Schedule, start_log, train
    from .moediff_data import validation_slices
    from .remix_data import prepare_head

    parser = argparse.ArgumentParser(prog="python -m moemri.train.moediff", description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, nargs="+", default=list(EXPERT_RUNS), help="expert counts to train, in turn")
    parser.add_argument("--steps", type=int, default=3000, help="steps of every run (the same budget for each expert count)")
    parser.add_argument("--validate-every", type=int, default=200)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heads", nargs="+", default=list(TRAINING_IDS))
    parser.add_argument("--minutes", type=float, default=None, help="stop cleanly at a checkpoint after this long (all runs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoints", type=Path, default=None, help="default: Resources/Weights/moediff/checkpoints")
    parser.add_argument("--out", type=Path, default=None, help="default: Resources/Weights/moediff")
    args = parser.parse_args(argv)
    args.out = args.out or weights_dir()
    args.checkpoints = args.checkpoints or weights_dir() / "checkpoints"

    start_log(args.checkpoints / "train.log")
    logging.getLogger("moemri.train.moediff").setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    command = ("python -m moemri.train.moediff " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    log.info("%s (torch %s, %d thread(s))", command, torch.__version__, args.threads)
    deadline = None if args.minutes is None else time.monotonic() + 60 * args.minutes
    heads = [prepare_head(training_head(i), PATCH + 8) for i in args.heads]
    validation = validation_slices(prepare_head(validation_volume(), 104), VALIDATION_SEED)
    for experts in args.experts:
        if (args.checkpoints / f"e{experts}.done.json").is_file():
            continue
        torch.manual_seed(args.seed)  # the same initial weights draw for every run of one seed
        model = MoEDiff(experts, WIDTHS, FEATURE_DIM)
        task = MoEDiffTask(model, heads, validation)
        schedule = Schedule(steps=args.steps, learning_rate=args.lr, validate_every=args.validate_every, seed=args.seed)
        minutes = None if deadline is None else max(1e-9, (deadline - time.monotonic()) / 60)
        outcome = train(task, schedule, args.checkpoints / f"e{experts}.ckpt", minutes=minutes, progress=False)
        if not outcome.finished:
            log.info("stopped; run the same command again to continue")
            return 3
        export(model, outcome, args, command, args.steps)
        (args.checkpoints / f"e{experts}.done.json").write_text(json.dumps({"best_step": outcome.best_step, "best": outcome.best, "history": outcome.history}, indent=1))
        (args.checkpoints / f"e{experts}.ckpt").unlink()
        log.info("E = %d finished: best validation gain %.3f dB at step %d; exported %s", experts, outcome.best["score"], outcome.best_step, filename(experts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
