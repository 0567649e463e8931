"""N-SMoE: neural steered mixture of experts for denoising and any-scale super-resolution
(Research Square preprint, doi:10.21203/rs.3.rs-7667284/v1; the classic SMoE: Verhack et al.).

As published: an encoder (Laplacian resizer, convolutional features, multi-head self-attention)
gives one latent per image block; a steered-kernel SMoE decoder turns each latent into K kernels
(centre, steering covariance from two scales and a rotation, expert = constant + linear in
position) and renders the image on any output grid as their gate-normalised mixture; one model
serves x1 (denoising) and every scale; training with a stochastic degradation model, a
reconstruction loss and an adversarial loss with a patch discriminator.
Departures, and why:
- the mixture renders the RESIDUAL over the input's cubic B-spline at the output positions (over
  the noisy slice for denoising), and the encoder reads the noise sigma, the scale along each
  axis and a neighbour slice either side (model.py): a plain render stayed within 0.2 dB of
  B-spline;
- the gate of an output pixel runs over the kernels of the 2 x 2 blocks around it with a bilinear
  tent on the blocks (renderer.py): continuous everywhere, and 4K rather than 9K kernels per
  pixel, which is what keeps a whole head within a minute on a CPU;
- slice-wise 2-D on the shared slice runner (moemri/slicewise.py): through-plane
  super-resolution in planes that hold the thick axis, denoising in the acquisition's slices;
- small (0.1 M parameters) and briefly trained on one CPU thread on four public heads
  (moemri/train/nsmoe.py), not the paper's datasets.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ...errors import InputError
from ...slicewise import SLICE_AXIS_CHOICES, plan_passes, run_slicewise
from ...volume import Volume, grid_with_spacing
from ..base import NOISE_LEVEL_OPTION, LabelMap, MethodInfo, MethodResult, OptionSpec, no_progress, resolve_experts, resolve_options
from ..classical_resample import SPACING_SPEC, check_spacing
from ..registry import register
from . import weights

KERNEL_COUNTS = (8, 16, 1)  # 1: the one-kernel-per-block ablation
DEFAULT_KERNELS = 8
SLICES_PER_CALL = 4
RENDER_ELEMENTS = 6_000_000  # kernel x pixel evaluations per rendered chunk: ~25 MB per live tensor
REFERENCE = "Neural Steered Mixture of Experts for Medical Image Denoising, and Super-Resolution, Research Square doi:10.21203/rs.3.rs-7667284/v1; SMoE: Verhack et al."

NOISE_OPTION = OptionSpec(NOISE_LEVEL_OPTION, "float", 0.0, "noise level in % of the brightest tissue; 0 estimates it from the image", minimum=0.0, maximum=20.0)
SLICE_AXIS_OPTION = OptionSpec(
    "slice_axis", "choice", "auto",
    "voxel axis held fixed for the 2-D slices: auto (super-resolution: an axis that does not change, so the thick axis lies "
    "in the network's plane; denoising: across the thickest axis), or i, j, k",
    choices=SLICE_AXIS_CHOICES,
)
VARIANT_OPTION = OptionSpec(
    "variant", "choice", "reconstruction",
    "which trained model: 'reconstruction' (L1 + SSIM only; the default, chosen on the validation cases: mean gain "
    "3.27 against 3.24 dB) or 'adversarial' (fine-tuned 200 steps with the patch discriminator's loss added; "
    "within 0.15 dB of it in every benchmark case)",
    choices=("reconstruction", "adversarial"),
)
GATE_OPTION = OptionSpec(
    "gate", "choice", "soft",
    "how each output pixel mixes its kernels: 'soft' (the trained, gate-normalised mixture), or the paper's ablations: "
    "'top1' (only the kernel with the largest gate weight) and 'random' (one kernel of the pixel's blocks drawn at random, seed 0)",
    choices=("soft", "top1", "random"),
)
RANDOM_GATE_SEED = 0
GATE_MAPS_OPTION = OptionSpec(
    "gate_maps", "bool", False,
    "also return, per kernel class, its summed gate weight (0-1) and what its experts add to the starting image",
)


class NSMoE:
    def __init__(self, task: str):
        self.task = task
        common = dict(
            reference=REFERENCE,
            expert_counts=KERNEL_COUNTS,
            default_experts=DEFAULT_KERNELS,
            spatial_dims=2,
            has_expert_map=True,
        )
        if task == "denoise":
            self.info = MethodInfo(
                name="nsmoe-denoise", task="denoise", title="N-SMoE denoiser (steered kernels)",
                description="Neural steered mixture of experts: K steered Gaussian kernels per 2x2 block render the noise-free slice; K = 1 is the one-kernel ablation.",
                options=(NOISE_OPTION, SLICE_AXIS_OPTION, VARIANT_OPTION, GATE_OPTION, GATE_MAPS_OPTION), **common,
            )
        else:
            self.info = MethodInfo(
                name="nsmoe-sr", task="superres", title="N-SMoE super-resolution (steered kernels, any scale)",
                description="Neural steered mixture of experts rendered on any output grid (x2, x2.5, x4 ...); slices hold the thick axis; K = 1 is the one-kernel ablation.",
                options=(SPACING_SPEC, NOISE_OPTION, SLICE_AXIS_OPTION, VARIANT_OPTION, GATE_OPTION, GATE_MAPS_OPTION), **common,
            )
        self._models: dict = {}

    def availability(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "N-SMoE needs PyTorch (pip install torch)"
        return weights.missing_reason([weights.filename(k) for k in KERNEL_COUNTS] + [weights.filename(DEFAULT_KERNELS, True)])

    def model(self, kernels: int, adversarial: bool, device):
        key = (kernels, adversarial, str(device), str(weights.weights_dir()))
        if key not in self._models:
            model, entry = weights.load_model(kernels, adversarial)
            self._models[key] = (model.to(device), entry)
        return self._models[key]

    def run(self, volume: Volume, *, experts=None, device="auto", progress=no_progress, options=None, reference: Volume | None = None) -> MethodResult:
        """`reference` (benchmarks only: the clean volume on the output grid) renders the oracle
        gate instead: every pixel from the one kernel of its blocks closest to the clean image."""
        from ...devices import resolve_device

        kernels = resolve_experts(self.info, experts)
        opts = resolve_options(self.info, options)
        adversarial = opts["variant"] == "adversarial"
        if adversarial and kernels != DEFAULT_KERNELS:
            raise InputError(f"the adversarial N-SMoE model is trained with {DEFAULT_KERNELS} kernels per block, not {kernels}")
        torch_device = resolve_device(device)
        model, entry = self.model(kernels, adversarial, torch_device)
        spacing = check_spacing(opts[SPACING_SPEC.name]) if self.task == "superres" else None
        return restore(volume, model, entry, torch_device, progress, spacing, opts, reference)


def restore(volume: Volume, model, entry: dict, device, progress, spacing, opts: dict[str, Any], reference: Volume | None = None) -> MethodResult:
    """The whole pipeline for one volume (denoising when `spacing` is None; the oracle gate when
    `reference` is given)."""
    import torch

    from ...degrade.resolution import resample_to_grid
    from ...intensity import normalise
    from ...masks import head_mask
    from ...noise_estimate import estimate_noise, given_level
    from .experts import CLASSES, class_labels, class_legend, orientation_labels, orientation_legend, slot_legend
    from .model import CONTEXT, bspline_at, network_inputs, scale_of
    from .renderer import render, winner_fields

    start = time.perf_counter()
    array = np.asarray(volume.array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InputError("the input holds NaN or infinite voxels; read it with nonfinite='replace' first")
    progress(0.0, "head mask and noise level")
    mask = head_mask(array)
    level = float(opts[NOISE_LEVEL_OPTION])
    noise = given_level(array, level, mask) if level > 0 else estimate_noise(array, volume.spacing, mask)
    normalised, scale = normalise(array, mask)
    sigma = float(noise.level_percent / 100.0 * noise.reference_intensity / scale.width)
    source = volume.with_array(normalised)
    grid = volume if spacing is None else grid_with_spacing(volume, spacing)
    passes = plan_passes(source, grid, opts["slice_axis"])
    plane = passes[-1].plane
    gate_maps = bool(opts["gate_maps"])
    channels = 4 + (2 * CLASSES if gate_maps else 0)
    k = model.kernels
    gate = str(opts["gate"])
    generator = torch.Generator(device=device).manual_seed(RANDOM_GATE_SEED) if gate == "random" else None
    targets, done = None, [0]
    if reference is not None:
        if len(passes) != 1:
            raise InputError("the oracle gate needs a single slice pass (one resampled plane)")
        gate = "oracle"
        on_grid = resample_to_grid(reference, grid, "linear").array
        targets = np.moveaxis(scale.apply(on_grid), passes[0].slice_axis, 0)

    def slice_fn(slices: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        inputs = network_inputs(slices, sigma, scale_of(rows), scale_of(cols))
        base = bspline_at(slices[:, CONTEXT], rows, cols)
        residual = None
        if targets is not None:  # slices come in order: the clean residual of the same output slices
            residual = torch.from_numpy(targets[done[0] : done[0] + slices.shape[0]] - base).to(device)
            done[0] += slices.shape[0]
        out = np.zeros((slices.shape[0], channels, rows.shape[0], cols.shape[0]), np.float32)
        with torch.inference_mode():
            kernel_set = model.kernel_set(torch.from_numpy(inputs).to(device))
            labels = [class_labels(kernel_set), orientation_labels(kernel_set)]
            labels.append(torch.arange(1, k + 1, device=device).view(1, k, 1, 1).expand_as(labels[0]))
            cols_t = torch.from_numpy(cols).to(device)
            step = max(1, RENDER_ELEMENTS // max(1, slices.shape[0] * 4 * k * cols.shape[0]))
            for r0 in range(0, rows.shape[0], step):
                rows_t = torch.from_numpy(rows[r0 : r0 + step]).to(device)
                drawn = render(
                    kernel_set, rows_t, cols_t, model.block, winner=True, classes=labels[0] if gate_maps else None, class_count=CLASSES,
                    gate=gate, target=None if residual is None else residual[:, r0 : r0 + step], generator=generator,
                )
                out[:, 0, r0 : r0 + step] = base[:, r0 : r0 + step] + drawn.image.float().cpu().numpy()
                for c, field in enumerate(winner_fields(labels, drawn.winner, rows_t, cols_t, model.block)):
                    out[:, 1 + c, r0 : r0 + step] = field.cpu().numpy()
                if gate_maps:
                    out[:, 4 : 4 + CLASSES, r0 : r0 + step] = drawn.class_gates.cpu().numpy()
                    out[:, 4 + CLASSES :, r0 : r0 + step] = drawn.class_parts.cpu().numpy()
        return out

    def slice_progress(fraction: float, stage: str) -> None:
        progress(0.02 + 0.95 * fraction, stage)

    out = run_slicewise(source, grid, slice_fn, channels=channels, slice_axis=opts["slice_axis"], batch=SLICES_PER_CALL, progress=slice_progress, context=CONTEXT)
    restored = out[0]
    if spacing is None:
        restored = np.maximum(restored, float(normalised.min()))  # magnitude images: nothing below the darkest input
        head = mask
    else:
        head = resample_to_grid(volume.with_array(mask.astype(np.uint8)), grid, "nearest").array.astype(bool)
    image = grid.with_array(scale.undo(restored), name=f"{volume.name}_nsmoe" if volume.name else "nsmoe")

    def labels_volume(c: int, name: str) -> Volume:
        labels = np.rint(out[c]).astype(np.uint8)
        labels[~head] = 0
        return grid.with_array(labels, name=f"{volume.name}_{name}" if volume.name else name)

    experts = class_legend(plane)
    label_maps = [LabelMap("orientation", "N-SMoE kernel orientation", labels_volume(2, "orientation"), orientation_legend(plane))]
    if k > 1:
        label_maps.append(LabelMap("kernel", "N-SMoE winning kernel (slot in its block)", labels_volume(3, "kernel"), slot_legend(k)))
    probabilities = differences = None
    if gate_maps:
        probabilities = [grid.with_array(np.where(head, out[4 + c], 0.0).astype(np.float32), name=f"class{c + 1}_gate") for c in range(CLASSES)]
        differences = [grid.with_array((out[4 + CLASSES + c] * np.float32(scale.width)).astype(np.float32), name=f"class{c + 1}_difference") for c in range(CLASSES)]
    progress(1.0, "done")
    metadata = {
        **noise.metadata(),
        "device": str(device),
        "experts": k,
        "kernels_per_block": k,
        "block_pixels": model.block,
        "variant": opts["variant"],
        "gate": gate,
        "passes": [{"slice_axis": "kji"[p.slice_axis], "resampled": "".join("kji"[a] for a in p.resampled)} for p in passes],
        "expert_map_rule": "class (scale x orientation) of the kernel with the largest gate weight; 0 outside the head",
        "weights_sha256": entry["sha256"][:12],
        "seconds": round(time.perf_counter() - start, 2),
    }
    if spacing is not None:
        metadata[SPACING_SPEC.name] = list(grid.spacing)
    return MethodResult(
        image=image, expert_map=labels_volume(1, "experts"), experts=experts, expert_probabilities=probabilities,
        expert_differences=differences, label_maps=label_maps, metadata=metadata,
    )


NSMOE_DENOISE = register(NSMoE("denoise"))
NSMOE_SR = register(NSMoE("superres"))
