"""MoEDiff-SR: Mixture of Experts-Guided Diffusion Model for Region-Adaptive MRI Super-Resolution
(Wang et al., arXiv:2504.07308, 2025).

As published: a transformer over multi-scale patch embeddings of the low-resolution input feeds a
gate that weighs E diffusion denoisers per token (softmax, trained with a load-balancing term);
the experts' estimates are mixed by those weights at every step; top-1 or soft mixing; E = 3.
Here (see the README's departures): the input is first brought onto the output grid with cubic
B-spline, and the model restores the residual over it slice by slice (2-D, the thick axis in the
network's plane, `moemri.slicewise`), in two orientations averaged for 3-D consistency; deterministic
DDIM (MONAI's scheduler, cosine schedule) with few steps and a starting-noise temperature (0 by
default: the deterministic mean path, which PSNR rewards); small networks for a CPU.

Gate maps: `expert_map` (the expert with the highest averaged weight per voxel, 0 outside the
head), `expert_probabilities` (each expert's averaged gate weight) and `expert_differences` (each
expert's own final estimate minus the B-spline input, in the input's units). Each expert's share
of tokens and its CSF/GM/WM shares (the core's classical three-class segmentation of the result
in the head mask) are in the metadata and the legend.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...palette import expert_colour
from ...volume import Volume, grid_with_spacing
from ..base import SPACING_OPTION, Expert, MethodInfo, MethodResult, OptionSpec, no_progress, resolve_experts, resolve_options
from ..classical_resample import SPACING_SPEC, check_spacing
from ..registry import register
from . import weights
from .gate import MIXINGS

INTERPOLATOR = "bspline"  # the same as the training slices (moemri/train/moediff_data.py)
EXPERT_COUNTS = (3, 1, 5)
HEAD_MARGIN = 8  # voxels of air kept around the head's box; outside it the result is B-spline
BATCH = 8  # slices per network call
TOKEN_HEAD_THRESHOLD = 0.05  # a token whose slice patch has this mean intensity counts as head
TISSUES = ("CSF", "GM", "WM")

STEPS_OPTION = OptionSpec("steps", "int", 5, "DDIM sampling steps (5 is the GUI's fast default; more costs proportionally)", minimum=1, maximum=50)
SEED_OPTION = OptionSpec("seed", "int", 0, "seed of the starting noise: the same seed gives the same volume", minimum=0, maximum=2**31 - 1)
MIXING_OPTION = OptionSpec(
    "mixing", "choice", "soft", "how the gate mixes the experts: 'soft' (softmax weights) or 'top1' (each token's best expert only)", choices=MIXINGS
)
# Why a temperature: PSNR rewards the posterior mean, and a diffusion sample is a posterior draw
# (twice the mean's squared error at best); with a small model the draw's detail is mostly noise.
# Measured (issue 14), 5 steps: temperature 1 scored 3.3 dB below 0 on the validation slices after
# 500 training steps and 0.4 dB below on an in-plane x4 crop of the validation head after 1250.
TEMPERATURE_OPTION = OptionSpec(
    "temperature", "float", 0.0,
    "scale of the starting noise (1: a plain diffusion sample, textured; 0: the deterministic mean path, best PSNR)",
    minimum=0.0, maximum=1.0,
)
ORIENTATIONS_OPTION = OptionSpec(
    "orientations", "int", 2,
    "slice orientations run and averaged (1: the plane holding the most coarse axes; 2 adds the next plane that holds as many, "
    "for 3-D consistency, at twice the cost: both planes across thick slices; one plane for in-plane reduction)",
    minimum=1, maximum=2,
)


def _ceil(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def consistency_planes(candidates: list[str], ratios_zyx, orientations: int) -> list[str]:
    """The slice planes to run and average: of the candidates (most changed axes first), those
    holding as many coarse axes as the best one, at most `orientations`. Thick slices along z:
    the y-z and x-z planes (both cross the slices); in-plane reduction of x and y: the x-y plane
    alone, because a plane holding only one of the reduced axes restores only that one, and
    averaging it in was measured to cost 0.04 dB (issue 14)."""
    from ...slicewise import AXIS_NAMES

    coarse = np.asarray(ratios_zyx) > 1e-6

    def held_coarse(name: str) -> int:
        held = AXIS_NAMES.index(name)
        return int(sum(coarse[a] for a in range(3) if a != held))

    best = held_coarse(candidates[0])
    return [p for p in candidates if held_coarse(p) == best][:orientations]


def tissue_shares(labels: np.ndarray, tissue: np.ndarray, experts: int) -> list[dict[str, float]]:
    """Per expert (labels 1..E), the share of its voxels in each tissue class (tissue 1..3)."""
    out = []
    for e in range(1, experts + 1):
        counts = np.bincount(tissue[labels == e].ravel(), minlength=4)[1:4].astype(float)
        total = counts.sum()
        out.append({t: round(float(c / total), 4) if total else 0.0 for t, c in zip(TISSUES, counts)})
    return out


class MoEDiffSR:
    def __init__(self, weights_dir: Path | None = None):
        self._weights_dir = weights_dir
        self._models: dict[tuple, object] = {}
        self.info = MethodInfo(
            name="moediff-sr",
            task="superres",
            title="MoEDiff-SR (diffusion experts, gate maps)",
            description="A transformer gate weighs E small diffusion denoisers per token; slice-wise residual over B-spline.",
            reference="Wang et al.: MoEDiff-SR, arXiv:2504.07308 (2025)",
            expert_counts=EXPERT_COUNTS,
            default_experts=3,
            spatial_dims=2,
            has_expert_map=True,
            options=(SPACING_SPEC, STEPS_OPTION, SEED_OPTION, TEMPERATURE_OPTION, MIXING_OPTION, ORIENTATIONS_OPTION),
        )

    @property
    def weights_dir(self) -> Path:
        return Path(self._weights_dir or weights.weights_dir())

    def availability(self) -> str | None:
        try:
            import monai  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            return "MoEDiff-SR needs PyTorch and MONAI (pip install torch monai)"
        return weights.missing_reason(self.info.default_experts, self.weights_dir)

    def model(self, experts: int, device):
        key = (experts, str(device), str(self.weights_dir))
        if key not in self._models:
            import torch

            from .network import MoEDiff

            state, entry = weights.load(experts, self.weights_dir)
            model = MoEDiff(experts, tuple(entry["widths"]), int(entry["feature_dim"]))
            model.load_state_dict(state)
            # Channels-last: oneDNN's 2-D convolutions with few channels run ~1.8x faster on a CPU.
            self._models[key] = (model.to(device, memory_format=torch.channels_last).eval(), entry)
        return self._models[key]

    def run(self, volume: Volume, *, experts=None, device="auto", progress=no_progress, options=None) -> MethodResult:
        from ...degrade.resolution import resample_to_grid
        from ...devices import resolve_device
        from ...intensity import normalise
        from ...masks import head_mask
        from ...metrics import tissue_classes
        from ...slicewise import AXIS_NAMES, planes_containing_thick_axis, run_slicewise
        from ..smoe.method import head_box

        start = time.perf_counter()
        count = resolve_experts(self.info, experts)
        opts = resolve_options(self.info, options)
        spacing = check_spacing(opts[SPACING_OPTION])
        steps, seed, mixing = int(opts["steps"]), int(opts["seed"]), str(opts["mixing"])
        temperature = float(opts[TEMPERATURE_OPTION.name])
        if mixing not in MIXINGS:
            from ...errors import InputError

            raise InputError(f"mixing must be one of {', '.join(MIXINGS)}, not {mixing!r}")
        torch_device = resolve_device(device)
        model, entry = self.model(count, torch_device)

        progress(0.0, f"{INTERPOLATOR} onto the {'x'.join(f'{s:g}' for s in spacing)} mm grid")
        grid = grid_with_spacing(volume, spacing)
        interpolated = resample_to_grid(volume, grid, interpolator=INTERPOLATOR)
        array, scale = normalise(interpolated.array)
        del interpolated
        mask = head_mask(array)
        box = head_box(mask, HEAD_MARGIN)
        block = np.ascontiguousarray(array[box])
        # Log2 of how much coarser the input is than the output along each array axis (0: not coarser).
        ratios_zyx = np.log2(np.maximum(np.asarray(volume.spacing[::-1]) / np.asarray(grid.spacing[::-1]), 1.0))
        planes = consistency_planes(planes_containing_thick_axis(volume, grid) or ["k"], ratios_zyx, int(opts["orientations"]))

        token_counts = np.zeros(count)
        channels = 1 + 2 * count  # residual, E gate weights, E expert residuals
        total = None
        pass_seconds = []
        for o, plane_name in enumerate(planes):
            held = AXIS_NAMES.index(plane_name)
            plane = [a for a in range(3) if a != held]
            condition = np.asarray(ratios_zyx[plane], np.float32)
            first = [0]

            def restore_slices(slices, rows, cols, o=o, condition=condition, first=first):
                import torch

                from .network import PAD_MULTIPLE, RESIDUAL_SCALE
                from .sampler import sample, slice_noise

                n, h, w = slices.shape
                H, W = _ceil(h, PAD_MULTIPLE), _ceil(w, PAD_MULTIPLE)
                # Edge pixels repeated beyond the slice: where the volume ends inside the head (a slab,
                # a thin stack of thick slices) zeros would be an edge the network never saw in training.
                low = torch.nn.functional.pad(torch.from_numpy(slices)[:, None], (0, W - w, 0, H - h), mode="replicate")
                noise = slice_noise((n, H, W), seed, o, first[0]) * temperature
                first[0] += n
                ratios = torch.from_numpy(np.tile(condition, (n, 1))).to(torch_device)
                low_device = low.to(torch_device).contiguous(memory_format=torch.channels_last)
                out = sample(model, low_device, ratios, noise, steps, mixing)
                head_tokens = torch.nn.functional.avg_pool2d(low, 8)[:, 0] > TOKEN_HEAD_THRESHOLD
                winners = out.token_weights.argmax(1).cpu()[head_tokens]
                token_counts[:] += np.bincount(winners.numpy(), minlength=count)
                stacked = torch.cat([out.residual / RESIDUAL_SCALE, out.weights, out.expert_residuals / RESIDUAL_SCALE], dim=1)
                return stacked[:, :, :h, :w].float().cpu().numpy()

            def pass_progress(fraction, stage, o=o):
                progress(0.05 + 0.9 * (o + fraction) / len(planes), f"slices across {plane_name} ({o + 1}/{len(planes)}): {stage}")

            began = time.perf_counter()
            block_volume = Volume(block)
            out = run_slicewise(block_volume, block_volume, restore_slices, channels=channels, slice_axis=plane_name, batch=BATCH, progress=pass_progress)
            pass_seconds.append(round(time.perf_counter() - began, 2))
            total = out if total is None else total + out
            del out
        assert total is not None
        total /= len(planes)

        progress(0.96, "gate maps")
        restored = array.copy()
        restored[box] += total[0]
        probabilities = np.zeros((count,) + array.shape, np.float32)
        probabilities[(slice(None),) + box] = total[1 : 1 + count]
        labels = np.zeros(array.shape, np.uint8)
        labels[box] = (np.argmax(total[1 : 1 + count], axis=0) + 1).astype(np.uint8)
        labels[~mask] = 0
        name = volume.name or "input"
        differences = []
        for e in range(count):
            difference = np.zeros(array.shape, np.float32)
            difference[box] = total[1 + count + e] * np.float32(scale.width)
            differences.append(grid.with_array(difference, name=f"{name}_expert{e + 1}_difference"))
        del total
        tissue, _ = tissue_classes(restored, mask)
        by_tissue = tissue_shares(labels, tissue, count)
        token_share = token_counts / max(token_counts.sum(), 1.0)
        legend = []
        for e in range(count):
            favoured = max(TISSUES, key=lambda t: by_tissue[e][t])
            shares = ", ".join(f"{t} {100 * by_tissue[e][t]:.0f} %" for t in TISSUES)
            legend.append(
                Expert(e + 1, f"Expert {e + 1}", expert_colour(e + 1), f"{100 * token_share[e]:.0f} % of head tokens; its voxels: {shares} (most {favoured})")
            )
        image = grid.with_array(scale.undo(restored), name=f"{volume.name}_moediff" if volume.name else "moediff")
        progress(1.0, "done")
        metadata = {
            "device": str(torch_device),
            "spacing": list(grid.spacing),
            "experts": count,
            "steps": steps,
            "seed": seed,
            "temperature": temperature,
            "mixing": mixing,
            "prediction": entry.get("prediction", "sample"),
            "orientations": "".join(planes),
            "seconds_per_orientation": pass_seconds,
            "consistency": "the slice planes listed in 'orientations' averaged" if len(planes) > 1 else "one slice orientation (no averaging)",
            "interpolation": INTERPOLATOR,
            "expert_token_shares": [round(float(s), 4) for s in token_share],
            "expert_tissue_shares": by_tissue,
            "tissue_classes": "three intensity classes (k-means, CSF/GM/WM on T1) of the result in the head mask",
            "expert_map_rule": "the expert with the highest gate weight (averaged over the orientations); 0 outside the head",
            "weights": weights.filename(count),
            "weights_sha256": entry["sha256"][:12],
            "head_box_voxels": int(block.size),
            "warnings": [],
            "seconds": round(time.perf_counter() - start, 2),
        }
        return MethodResult(
            image,
            expert_map=grid.with_array(labels, name=f"{name}_experts"),
            experts=legend,
            expert_probabilities=[grid.with_array(probabilities[e], name=f"{name}_expert{e + 1}") for e in range(count)],
            expert_differences=differences,
            metadata=metadata,
        )


MOEDIFF = register(MoEDiffSR())
