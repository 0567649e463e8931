"""Rebuild REMIx's weights: `python -m moemri.train.remix` (seeded; logged to train.log).

1. Training pairs (cached once per seed under ~/.cache/moemri/remix-train): each training head is
   put through `random_acquisition` in every voxel-volume bin 1..7 and the native image brought
   back onto the head's grid with cubic B-spline, as `remix` does at inference. `--sharp` more per
   head and bin are axis-aligned 1 x 1 x bin mm thick slices with no in-plane blur (`thick_slices`):
   without them the networks learned that every input is blurred in-plane and over-sharpened
   such scans (-5.8 dB against B-spline at 1x1x2 mm).
2. The 1 mm3 network is trained from scratch on bin 1; each of the seven experts is then
   fine-tuned from it on its own bin (the paper's transfer learning), and the one network is
   fine-tuned from it on all bins with the same number of steps: every shipped network has seen
   the same number of patches, so the experts-versus-one-network comparison is fair.
3. Loss, as in the paper: MAE + (1 - SSIM) + gradient MAE + (1 - correlation), equal weights (the
   paper gives none).

Departures from the paper, all for a 2-core CPU and public data: four training heads instead of
75 HCP subjects, random acquisition grids instead of volBrain's real ones, 32^3 patches and a
small U-Net, a few thousand steps in all. robex-atlas (1.5 mm) is used as if it were 1 mm: a
larger head with smoother detail, a scale augmentation rather than an interpolated 1 mm target.
mni152-2009 is the validation head and is refused here.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAINING_IDS = ("colin27", "colin27-hr", "pydeface-mean", "robex-atlas")
BINS = tuple(range(1, 8))
WIDTHS = (12, 24, 48)
PATCH = 32
BATCH = 2
LOSS_CROP = 4  # voxels left out of MAE/gradient/correlation at each patch face (zero-padding edge)
HEAD_MARGIN = 6  # voxels kept around the head when cropping training heads
CACHE_VERSION = "v1"

log = logging.getLogger("moemri.train.remix")


# ---------------------------------------------------------------------------------- pairs


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


def pair_cache_dir(seed: int) -> Path:
    root = Path(os.environ.get("MOEMRI_CACHE") or Path.home() / ".cache" / "moemri")
    return root / "remix-train" / f"{CACHE_VERSION}-seed{seed}"


@dataclass
class Pair:
    """A normalised (B-spline-interpolated degraded, clean) array pair (2, z, y, x), float16."""

    name: str
    bin: int
    arrays: np.ndarray


def acquire(head, bin_: int, sharp: bool, rng: np.random.Generator):
    """(native low-resolution Volume, spacing text) of one simulated scan of `head` in `bin_`."""
    from ..degrade.resolution import random_acquisition, thick_slices

    if sharp:  # axis-aligned thick slices, sharp in-plane: a 2-D clinical sequence without obliquity
        axis = int(rng.integers(3))
        native = thick_slices(head, bin_, axis=axis)
        return native, "x".join(f"{s:.2f}" for s in native.spacing)
    acquisition = random_acquisition(head, bin_, rng)
    return acquisition.native, "x".join(f"{s:.2f}" for s in acquisition.spacing)


def build_pairs(seed: int, acquisitions_per_bin: int, sharp_per_bin: int = 0, bins=BINS, ids=TRAINING_IDS) -> tuple[list[Pair], float]:
    """(every (head, bin, acquisition) pair, seconds spent simulating them): made once per seed and
    then read from the cache, which also keeps how long each took to make."""
    from ..degrade.resolution import resample_to_grid
    from ..intensity import normalise

    directory = pair_cache_dir(seed)
    directory.mkdir(parents=True, exist_ok=True)
    seconds_file = directory / "seconds.json"
    seconds = json.loads(seconds_file.read_text()) if seconds_file.is_file() else {}
    pairs = []
    for head_index, volume_id in enumerate(ids):
        head = None
        for bin_ in bins:
            kinds = [(f"{k}", False, k) for k in range(acquisitions_per_bin)]
            kinds += [(f"sharp{k}", True, 100 + k) for k in range(sharp_per_bin)]
            for suffix, sharp, k in kinds:
                name = f"{volume_id}_bin{bin_}_{suffix}"
                path = directory / f"{name}.npy"
                if not path.is_file():
                    start = time.perf_counter()
                    head = head if head is not None else training_head(volume_id)
                    native, spacing = acquire(head, bin_, sharp, np.random.default_rng([seed, head_index, bin_, k]))
                    degraded = resample_to_grid(native, head, "bspline").array
                    # The scale comes from the degraded image alone, as at inference.
                    normalised, scale = normalise(degraded)
                    arrays = np.stack([normalised, scale.apply(head.array)]).astype(np.float16)
                    np.save(directory / f"{name}.tmp.npy", arrays)
                    os.replace(directory / f"{name}.tmp.npy", path)
                    seconds[name] = round(time.perf_counter() - start, 1)
                    seconds_file.write_text(json.dumps(seconds, indent=1))
                    log.info("pair %s: native %s mm, %.1f s", name, spacing, seconds[name])
                pairs.append(Pair(name, bin_, np.load(path, mmap_mode="r")))
    return pairs, sum(seconds.get(p.name, 0.0) for p in pairs)


def sample_batch(pairs: list[Pair], rng: np.random.Generator, patch: int = PATCH, batch: int = BATCH) -> np.ndarray:
    """(batch, 2, p, p, p) float32: random patches mostly inside the head, randomly flipped and
    with their axes permuted (so every axis gets to be the slice axis)."""
    out = np.empty((batch, 2, patch, patch, patch), np.float32)
    for b in range(batch):
        pair = pairs[rng.integers(len(pairs))]
        shape = pair.arrays.shape[1:]
        for _ in range(10):
            corner = [rng.integers(0, max(n - patch, 0) + 1) for n in shape]
            window = tuple(slice(c, c + patch) for c in corner)
            cube = np.asarray(pair.arrays[(slice(None),) + window], np.float32)
            if cube[1].mean() > 0.1:  # not mostly air
                break
        cube = _fit(cube, patch)
        for axis in (1, 2, 3):
            if rng.random() < 0.5:
                cube = np.flip(cube, axis)
        out[b] = np.transpose(cube, (0,) + tuple(1 + rng.permutation(3)))
    return out


def _fit(cube: np.ndarray, patch: int) -> np.ndarray:
    pad = [(0, 0)] + [(0, patch - n) for n in cube.shape[1:]]
    return np.pad(cube, pad) if any(p for _, p in pad) else cube


# ----------------------------------------------------------------------------------- loss


def _gaussian_window(sigma: float = 1.5, radius: int = 5):
    import torch

    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim(x, y, window):
    """Mean 3-D SSIM of (B, 1, Z, Y, X) tensors in [0, ~1] (Wang et al. 2004, Gaussian window,
    K1 = 0.01, K2 = 0.03, range 1), over the voxels where the window fits."""
    import torch.nn.functional as F

    def blur(a):
        n = window.numel()
        for axis in range(3):
            shape = [1, 1, 1, 1, 1]
            shape[2 + axis] = n
            a = F.conv3d(a, window.view(shape))
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


def train_network(model, pairs: list[Pair], steps: int, lr: float, rng: np.random.Generator, stage: str):
    """Adam with a cosine decay to lr/10; returns the model trained in place."""
    import torch

    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    cosine = lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / max(steps, 1)))  # noqa: E731
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, cosine)
    window = _gaussian_window()
    running = np.zeros(5)
    start = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        batch = torch.from_numpy(sample_batch(pairs, rng))
        loss, terms = remix_loss(model(batch[:, :1]), batch[:, 1:], window)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        running += [loss.item()] + [t.item() for t in terms]
        if step % 50 == 0 or step == steps:
            n = 50 if step % 50 == 0 else step % 50
            mean = running / n
            log.info(
                "%s step %d/%d loss %.4f (mae %.4f, 1-ssim %.4f, grad %.4f, 1-corr %.4f) %.0f s",
                stage, step, steps, *mean, time.perf_counter() - start,
            )
            running[:] = 0
    model.eval()
    return model


def save_network(model, directory: Path, network: str, entry: dict) -> None:
    from ..methods.remix.unet3d import parameter_count
    from ..methods.remix.weights import filename
    from ..methods.remix.weights import save_network as save

    save(model.state_dict(), network, {**entry, "parameters": parameter_count(model), "widths": list(WIDTHS)}, directory)
    log.info("wrote %s", directory / filename(network))


def main(argv=None) -> int:
    from ..methods.remix.weights import weights_dir

    parser = argparse.ArgumentParser(prog="python -m moemri.train.remix", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base-steps", type=int, default=400, help="steps of the 1 mm3 network from scratch")
    parser.add_argument("--finetune-steps", type=int, default=250, help="steps of each expert and of the one network from it")
    parser.add_argument("--acquisitions", type=int, default=2, help="simulated acquisitions per head and bin")
    parser.add_argument("--sharp", type=int, default=1, help="axis-aligned sharp thick-slice acquisitions per head and bin")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves room for other jobs)")
    parser.add_argument("--out", type=Path, default=None, help="default: Resources/Weights/remix")
    args = parser.parse_args(argv)
    args.out = args.out or weights_dir()

    import torch

    from ..methods.remix.unet3d import UNet3d

    args.out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(args.out / "train.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.addHandler(logging.StreamHandler(sys.stderr))
    log.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    command = "python -m moemri.train.remix " + " ".join(sys.argv[1:] if argv is None else argv)
    log.info("%s (torch %s, %d thread(s))", command.strip(), torch.__version__, args.threads)
    common = {
        "training_data": list(TRAINING_IDS),
        "command": command.strip(),
        "date": datetime.date.today().isoformat(),
        "seed": args.seed,
        "patch": PATCH,
        "batch": BATCH,
    }

    pairs, data_seconds = build_pairs(args.seed, args.acquisitions, args.sharp)
    log.info("%d training pairs ready (%.0f s to simulate, cached in %s)", len(pairs), data_seconds, pair_cache_dir(args.seed))

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    base = train_network(UNet3d(WIDTHS), [p for p in pairs if p.bin == 1], args.base_steps, 1e-3, rng, "1 mm3 base")
    base_seconds = time.perf_counter() - start

    jobs = [(f"bin{b}", [p for p in pairs if p.bin == b], f"bin {b}") for b in BINS]
    jobs.append(("one_network", pairs, "bins 1-7"))
    for stem, subset, bins_text in jobs:
        start = time.perf_counter()
        model = train_network(copy.deepcopy(base), subset, args.finetune_steps, 5e-4, rng, stem)
        seconds = time.perf_counter() - start
        save_network(
            model,
            args.out,
            stem,
            {
                **common,
                "training_bins_mm3": bins_text,
                "iterations": args.base_steps + args.finetune_steps,
                "iterations_note": f"{args.base_steps} from scratch on bin 1 (shared), then {args.finetune_steps} on {bins_text}",
                "training_seconds": round(base_seconds + seconds, 1),
                "training_seconds_note": "shared 1 mm3 base + this network's fine-tune; the pair simulation "
                f"({data_seconds:.0f} s once, shared by all networks) not included",
            },
        )
    log.info("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
