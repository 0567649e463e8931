"""Rebuild REMIx's networks on the shared loop (moemri/train/loop.py): `python -m moemri.train.remix`.

1. Pairs are simulated on the fly from crops of the four training heads (train/remix_data.py:
   sharp axis-aligned thick slices, REMIx-style oblique grids and in-plane reduction, mild noise),
   brought back with B-spline as at inference, in the networks' canonical frame (slice axis first,
   native spacing as three conditioning channels, methods/remix/canonical.py).
2. Stages, each a loop `Task` with its own checkpoint: `base` on every bin 1..7; then the seven
   experts (`bin1`..`bin7`) and the one-network baseline (`one_network`, all bins) fine-tuned from
   the base's best weights, each for the same number of steps so that the comparison is fair.
   Validation: fixed noise-free scans of crops of the validation head mni152-2009 in the stage's
   bins; `score` is the mean PSNR gain over B-spline (dB), and the best-scoring weights are kept.
3. Loss, as in the paper: MAE + (1 - SSIM) + gradient MAE + (1 - correlation), equal weights.

Resume: the same command continues where it stopped (`--minutes`, SIGTERM or Ctrl-C stop it at a
checkpoint). A finished stage leaves only its best weights (float16, ~0.4 MB) and its validation
curve in `--checkpoints`; the running stage keeps the loop's full checkpoint (~3 MB). With
`--export`, once every stage is done, the eight networks and their manifest go to `--out`.

Departures from the paper, for one CPU thread and public data: four training heads instead of 75
HCP subjects, random grids instead of volBrain's registrations, 32^3 patches, a small U-Net.
robex-atlas (1.5 mm) is used as if it were 1 mm: a larger head with smoother detail. mni152-2009
is the validation head and is refused as a training head.
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

TRAINING_IDS = ("colin27", "colin27-hr", "pydeface-mean", "robex-atlas")
BINS = tuple(range(1, 8))
WIDTHS = (12, 24, 48)
PATCH = 32
CROP = 48  # simulated crop; the patch is its centre, away from the crop's faces
BATCH = 2
LOSS_CROP = 4  # voxels left out of MAE/gradient/correlation at each patch face (zero-padding edge)
HEAD_MARGIN = 6  # voxels kept around the head when cropping training heads
IN_CHANNELS = 4  # the B-spline image and the native spacing (canonical.py)
VALIDATION_BINS = (2, 3, 4, 5, 6, 7)
VALIDATION_MSE_FLOOR = 1e-6  # (normalised intensity)^2: 60 dB, far below any simulated error

log = logging.getLogger("moemri.train.remix")


# ---------------------------------------------------------------------------------- heads


def training_head(volume_id: str):
    """A training head on a ~1 mm grid, cropped to the head: float32 Volume."""
    from ..data.fetch import fetch_volume
    from ..data.sources import source_by_id
    from ..io import read_volume
    from ..masks import head_mask
    from ..volume import Volume

    if source_by_id(volume_id).role != "train":
        raise ValueError(f"{volume_id} is not a training volume; REMIx never trains on the validation head")
    v = read_volume(fetch_volume(volume_id))
    array = np.asarray(v.array, np.float32)
    spacing, origin = np.asarray(v.spacing), np.asarray(v.origin)
    if np.allclose(spacing, 0.5):
        # colin27-hr: 2x2x2 block means are exact 1 mm voxels (sharper than resampling); the first
        # block's centre is half a fine voxel in from the first fine centre.
        z, y, x = (n - n % 2 for n in array.shape)
        array = array[:z, :y, :x].reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean(axis=(1, 3, 5))
        origin = origin + v.direction @ (spacing / 2)
        spacing = spacing * 2
    elif np.allclose(spacing, 1.5):
        spacing = np.ones(3)  # robex-atlas: taken as 1 mm, see the module docstring
    mask = head_mask(array)
    lo = [max(int(np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0][0]) - HEAD_MARGIN, 0) for ax in range(3)]
    hi = [
        min(int(np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0][-1]) + HEAD_MARGIN + 1, n)
        for ax, n in enumerate(array.shape)
    ]
    crop = array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    origin = origin + v.direction @ (np.asarray(lo[::-1]) * spacing)
    return Volume(np.ascontiguousarray(crop), tuple(spacing), tuple(origin), v.direction, volume_id)


# ----------------------------------------------------------------------------------- loss


def _gaussian_window(sigma: float = 1.5, radius: int = 5):
    import torch

    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim(x, y, window):
    """Mean 3-D SSIM of (B, 1, Z, Y, X) tensors in [0, ~1] (Wang et al. 2004, Gaussian window,
    K1 = 0.01, K2 = 0.03, range 1), over the voxels where the window fits; of (B, 1, Y, X)
    tensors, the 2-D SSIM (the slice-wise N-SMoE trains on it).

    The same value as MONAI's SSIMLoss with these settings (a test checks it), which is not used
    because it convolves with the full 11^3 kernel: 0.75 s against 0.04 s per training step of two
    32^3 patches on one CPU thread, separable here, and the training step itself is ~0.25 s."""
    import torch.nn.functional as F

    dims = x.ndim - 2
    conv = F.conv3d if dims == 3 else F.conv2d

    def blur(a):
        n = window.numel()
        for axis in range(dims):
            shape = [1] * (2 + dims)
            shape[2 + axis] = n
            a = conv(a, window.view(shape))
        return a

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean()


def remix_loss(prediction, target, window):
    """MAE + (1 - SSIM) + gradient MAE + (1 - correlation), the paper's four terms."""
    c = LOSS_CROP
    p, t = prediction[..., c:-c, c:-c, c:-c], target[..., c:-c, c:-c, c:-c]
    mae = (p - t).abs().mean()
    gradient = sum((p.diff(dim=d) - t.diff(dim=d)).abs().mean() for d in (2, 3, 4))
    pc = p.flatten(1) - p.flatten(1).mean(dim=1, keepdim=True)
    tc = t.flatten(1) - t.flatten(1).mean(dim=1, keepdim=True)
    correlation = ((pc * tc).sum(1) / (pc.norm(dim=1) * tc.norm(dim=1) + 1e-8)).mean()
    structure = 1 - ssim(prediction, target, window)
    return mae + structure + gradient + (1 - correlation), (mae, structure, gradient, 1 - correlation)




# ------------------------------------------------------------------------------- training


class RemixTask:
    """One stage on the shared loop: fresh simulated pairs of `bins` per step; validation = mean
    PSNR gain over B-spline on fixed cases of the validation head."""

    def __init__(self, name, model, heads, bins, validation, batch=BATCH, crop=CROP, patch=PATCH):
        self.name, self.model, self.heads, self.bins = f"remix-{name}", model, heads, tuple(bins)
        self.validation, self.batch, self.crop, self.patch = validation, batch, crop, patch
        self.window = _gaussian_window()

    def modules(self):
        return {"model": self.model}

    def parameters(self):
        return list(self.model.parameters())

    def step(self, step, rng):
        import torch

        from .remix_data import sample_batch

        x, y = sample_batch(self.heads, self.bins, rng, self.batch, self.crop, self.patch)
        loss, terms = remix_loss(self.model(torch.from_numpy(x)), torch.from_numpy(y), self.window)
        return loss, dict(zip(("mae", "1-ssim", "grad", "1-corr"), (float(t.detach()) for t in terms)))

    def validate(self):
        import torch

        gains = []
        for _, x, y in self.validation:
            c = LOSS_CROP
            inner = (slice(c, -c),) * 3
            target, bspline = y[0][inner], x[0][inner]
            restored = self.model(torch.from_numpy(x[None]))[0, 0].numpy()[inner]
            mask = target > 0.05
            # PSNR gain over B-spline, with a floor under both errors: in bin 1 B-spline can be
            # exact (input = target), where a plain PSNR is infinite and any change must score < 0.
            errors = [float(np.mean((a[mask] - target[mask]) ** 2)) + VALIDATION_MSE_FLOOR for a in (bspline, restored)]
            gains.append(10 * np.log10(errors[0] / errors[1]))
        return {"score": float(np.mean(gains)), "worst_gain_db": float(np.min(gains))}


def stages(base_steps: int, finetune_steps: int):
    """(name, training bins, steps, peak learning rate, initialised from)."""
    out = [("base", BINS, base_steps, 1e-3, None)]
    out += [(f"bin{b}", (b,), finetune_steps, 3e-4, "base") for b in BINS]
    out.append(("one_network", BINS, finetune_steps, 3e-4, "base"))
    return out


def _finished_path(directory: Path, stage: str) -> Path:
    return directory / f"{stage}.pt"


def run_stages(args, heads, validation_head, deadline: float | None) -> bool:
    """Train every stage not yet finished; True when all are."""
    import torch

    from ..methods.remix.unet3d import UNet3d
    from .loop import Schedule, train
    from .remix_data import validation_cases

    for index, (stage, bins, steps, lr, parent) in enumerate(stages(args.base_steps, args.finetune_steps)):
        done = _finished_path(args.checkpoints, stage)
        if done.is_file():
            continue
        model = UNet3d(WIDTHS, IN_CHANNELS)
        if parent is not None:
            # Always from the stored float16 parent, so a resumed run starts each fine-tune from
            # the same weights as an uninterrupted one.
            model.load_state_dict({k: v.float() for k, v in torch.load(_finished_path(args.checkpoints, parent))["state"].items()})
        val_bins = VALIDATION_BINS if len(bins) > 1 else bins
        cases = validation_cases(validation_head, val_bins, args.validation_per_bin, seed=args.seed, crop=args.crop + 16, out=args.patch + 16)
        task = RemixTask(stage, model, heads, bins, cases, crop=args.crop, patch=args.patch)
        schedule = Schedule(steps=steps, learning_rate=lr, validate_every=args.validate_every, seed=args.seed * 100 + index)
        minutes = None if deadline is None else max(1e-9, (deadline - time.monotonic()) / 60)  # past: stop at the next validation
        checkpoint = args.checkpoints / f"{stage}.ckpt"
        outcome = train(task, schedule, checkpoint, minutes=minutes, progress=False)
        if not outcome.finished:
            return False
        half = {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()}  # the best weights
        torch.save({"state": half, "best_step": outcome.best_step, "best": outcome.best, "history": outcome.history, "steps": steps, "bins": list(bins)}, done)
        (args.checkpoints / f"{stage}.history.json").write_text(json.dumps(outcome.history, indent=1))
        checkpoint.unlink()
        log.info("%s finished: best validation gain %.3f dB at step %d of %d", stage, outcome.best["score"], outcome.best_step, steps)
    return True


def export(args, command: str) -> None:
    """The eight finished networks into `args.out` with their manifest entries."""
    import torch

    from ..methods.remix.canonical import CONDITION_CHANNELS
    from ..methods.remix.unet3d import UNet3d, parameter_count
    from ..methods.remix.weights import save_network

    for stage, bins, steps, _, parent in stages(args.base_steps, args.finetune_steps)[1:]:
        saved = torch.load(_finished_path(args.checkpoints, stage))
        model = UNet3d(WIDTHS, IN_CHANNELS)
        model.load_state_dict({k: v.float() for k, v in saved["state"].items()})
        entry = {
            "training_data": list(args.heads),
            "command": command,
            "date": datetime.date.today().isoformat(),
            "seed": args.seed,
            "patch": args.patch,
            "batch": BATCH,
            "training_bins_mm3": "bins 1-7" if len(bins) > 1 else f"bin {bins[0]}",
            "iterations": args.base_steps + steps,
            "iterations_note": f"{args.base_steps} on bins 1-7 (shared base), then {steps} on this network's bins; best validated step {saved['best_step']}",
            "validation_gain_db": round(saved["best"]["score"], 3),
            "parameters": parameter_count(model),
            "widths": list(WIDTHS),
            "in_channels": IN_CHANNELS,
            "conditioning": f"canonical frame, {CONDITION_CHANNELS} log2 spacing channels",
        }
        save_network(model.state_dict(), stage, entry, args.out)
        log.info("exported %s", stage)


def main(argv=None) -> int:
    from ..methods.remix.weights import weights_dir
    from .loop import start_log
    from .remix_data import prepare_head

    parser = argparse.ArgumentParser(prog="python -m moemri.train.remix", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base-steps", type=int, default=4000, help="steps of the base network on bins 1-7")
    parser.add_argument("--finetune-steps", type=int, default=800, help="steps of each expert and of the one network")
    parser.add_argument("--validate-every", type=int, default=100)
    parser.add_argument("--validation-per-bin", type=int, default=3)
    parser.add_argument("--patch", type=int, default=PATCH)
    parser.add_argument("--heads", nargs="+", default=list(TRAINING_IDS))
    parser.add_argument("--minutes", type=float, default=None, help="stop cleanly at a checkpoint after this long")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves room for other jobs)")
    parser.add_argument("--checkpoints", type=Path, default=None, help="default: Resources/Weights/remix/checkpoints")
    parser.add_argument("--export", action="store_true", help="when every stage is done, write the networks to --out")
    parser.add_argument("--out", type=Path, default=None, help="default: Resources/Weights/remix")
    args = parser.parse_args(argv)
    args.out = args.out or weights_dir()
    args.checkpoints = args.checkpoints or weights_dir() / "checkpoints"
    args.crop = args.patch + 16

    import torch

    from ..bench.cases import validation_volume

    start_log(args.checkpoints / "train.log")
    logging.getLogger("moemri.train.remix").setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    command = ("python -m moemri.train.remix " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    log.info("%s (torch %s, %d thread(s))", command, torch.__version__, args.threads)
    deadline = None if args.minutes is None else time.monotonic() + 60 * args.minutes
    heads = [prepare_head(training_head(i), args.crop) for i in args.heads]
    validation_head = prepare_head(validation_volume(), args.crop + 16)
    if not run_stages(args, heads, validation_head, deadline):
        log.info("stopped; run the same command again to continue")
        return 3
    if args.export:
        export(args, command)
    log.info("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
