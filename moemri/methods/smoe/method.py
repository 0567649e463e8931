"""Sparse mixture-of-experts denoising (Deng and Campbell, "Sparse Mixture-of-Experts for Non-Uniform
Noise Reduction in MRI Images", arXiv:2501.14198, 2025).

As published: DnCNN residual learning; experts fine-tuned from one pre-trained backbone on the
patches routed to them; a hard (one-hot) gate per 48x48 patch at stride 20 with overlapping outputs
averaged; PCA + k-means of patch features as one gate choice.
Departures, and why:
- backbone 8 x 24 instead of 17 x 64, with two neighbouring slices either side and an estimated
  sigma map as extra input channels (dncnn.py): the time budgets on two CPU cores, robustness;
- each expert owns the last three convolutions (tails.py), not only the final layer: with the
  final layer alone the experts were interchangeable (an oracle gate gained 0.02 dB over K = 1);
  tails run only where their patches are, so a mixture costs about one network;
- the gate reads anatomy descriptors (intensity, tissue shares, edges, depth below the head's
  surface; anatomy.py) with a small network trained by hard EM, not ImageNet ResNet-18 features
  (unavailable offline, and they would see the noise level the sigma map already gives);
- the segmentation gate uses classical intensity classes, not SAM/MedSAM (gate.py);
- the volume is denoised in two slice orientations and the two results averaged (option
  `orientations`);
- trained on four public template heads made to look like clinical scans (train/slices.py), not
  BrainWeb/IXI, which cannot be fetched here.
Slices are taken across the coarsest axis (axial for isotropic volumes) and run through the shared
tiler, a stack of slices per tile with the neighbour slices the network reads as halo.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...errors import InputError
from ...palette import expert_colour
from ...tiling import TilePlan, plan_for_budget, tiled_apply
from ...volume import Volume
from ..base import NOISE_LEVEL_OPTION, Expert, MethodInfo, MethodResult, OptionSpec, no_progress, resolve_experts, resolve_options
from ..registry import register
from . import weights as weight_files

BYTES_PER_CHANNEL_VOXEL = 4 * 4  # float32 x (input, output, folded temporaries) per trunk channel
MAX_SLICES_PER_TILE = 4  # small tiles: activations stay in reused heap memory (large ones page-faulted ~25 GB per head)
MIN_PLANE = 16  # voxels: a slice narrower than this is not worth a 2-D network pass
HEAD_BOX_MARGIN = 16  # voxels of air kept around the head: more than the network's receptive field
NOISE_OPTION = OptionSpec(
    NOISE_LEVEL_OPTION,
    "float",
    0.0,
    "noise level in % of the brightest tissue (as degrade.noise); 0 estimates a sigma map from the image",
    minimum=0.0,
    maximum=20.0,
)
ORIENTATIONS_OPTION = OptionSpec(
    "orientations",
    "int",
    2,
    "slice orientations denoised and averaged (1: across the coarsest axis only; 2 adds the next; 3 all)",
    minimum=1,
    maximum=3,
)
SHARES_OPTION = OptionSpec(
    "expert_shares",
    "bool",
    False,
    "also return one map per expert: the share (0-1) of the 48x48 patches covering each voxel that were routed to it",
)
REFERENCE = (
    "Deng and Campbell, Sparse Mixture-of-Experts for Non-Uniform Noise Reduction in MRI Images, arXiv:2501.14198 (2025); "
    "DnCNN: Zhang et al., IEEE TIP 2017"
)


class _SMoE:
    info: MethodInfo
    kind: str

    def availability(self) -> str | None:
        return weight_files.missing_reason([weight_files.BACKBONE] + [weight_files.expert_file(self.kind, k) for k in self.info.expert_counts])

    def run(self, volume: Volume, *, experts=None, device="auto", progress=no_progress, options=None) -> MethodResult:
        k = resolve_experts(self.info, experts)
        opts = resolve_options(self.info, options)
        return denoise_volume(
            volume, self.kind, k, device, progress, opts[NOISE_LEVEL_OPTION], opts["orientations"], opts["expert_shares"]
        )


class SMoEPatch(_SMoE):
    kind = "patch"
    info = MethodInfo(
        name="smoe-patch",
        task="denoise",
        title="Sparse MoE denoiser, patch gate (DnCNN experts)",
        description="DnCNN experts (own last three layers) chosen per 48x48 patch by a gate on anatomy (tissue, edges, depth); K = 1 is the one-expert control.",
        reference=REFERENCE,
        expert_counts=(1, 4),  # K = 2 and 8 follow when their runs are trained (make train-smoe resumes)
        default_experts=4,
        spatial_dims=2,
        has_expert_map=True,
        options=(NOISE_OPTION, ORIENTATIONS_OPTION, SHARES_OPTION),
    )


class SMoESegment(_SMoE):
    kind = "segment"
    info = MethodInfo(
        name="smoe-segment",
        task="denoise",
        title="Sparse MoE denoiser, segmentation gate (DnCNN experts)",
        description="One DnCNN expert per intensity class (dark/CSF, grey, white, bright) of a classical segmentation.",
        reference=REFERENCE,
        expert_counts=(4,),
        default_experts=4,
        spatial_dims=2,
        has_expert_map=True,
        options=(NOISE_OPTION, ORIENTATIONS_OPTION, SHARES_OPTION),
    )


def load_mixture(kind: str, experts: int):
    """(front, tails, gate or None, experts legend, manifest entry, (slice radius, receptive
    radius, channels)) for one expert count, after the sha256 checks of its files."""
    from .anatomy import DESCRIPTORS, GateNet
    from .dncnn import DnCNN
    from .gate import PatchGate
    from .tails import ExpertTails, split

    backbone, backbone_entry = weight_files.load(weight_files.BACKBONE)
    model = DnCNN(**backbone_entry["parameters"]["architecture"])
    model.load_state_dict(backbone)
    model.eval()
    state, entry = weight_files.load(weight_files.expert_file(kind, experts))
    front, tail = split(model, int(entry["parameters"].get("tail_layers", 3)))
    tails = ExpertTails.copies(tail, experts)
    tails.load_state_dict({k[len("tails.") :]: v for k, v in state.items() if k.startswith("tails.")})
    gate = None
    if experts > 1 and kind == "patch":
        if entry["parameters"].get("gate") == "kmeans":
            gate = PatchGate.from_tensors(state)
        else:
            gate = GateNet(experts, len(DESCRIPTORS))
            gate.load_state_dict({k[len("gate.") :]: v for k, v in state.items() if k.startswith("gate.")})
            gate.eval()
    legend = entry.get("experts") or [{"label": 1, "name": "DnCNN", "description": "one expert for every patch"}]
    return front, tails.eval(), gate, legend, entry, (model.in_slices // 2, model.receptive_radius, model.channels)


def slice_axes(volume: Volume, count: int) -> list[int]:
    """Array axes (0 = z) across which slices are taken, best first: the coarsest spacing first
    (in-plane pixels are then the finest), ties in array order (z before y before x). An axis is
    left out when its slices would be thinner than MIN_PLANE voxels (a single 2-D slice is only
    denoised in its own plane)."""
    shape = volume.array.shape
    spacing_zyx = np.round(np.asarray(volume.spacing)[::-1] / min(volume.spacing), 2)
    usable = [a for a in range(3) if min(n for b, n in enumerate(shape) if b != a) >= MIN_PLANE]
    usable = usable or [int(np.argmin(shape))]
    return sorted(usable, key=lambda a: (-spacing_zyx[a], a))[:count]


def slice_plan(shape, budget_bytes: float, slice_radius: int, receptive_radius: int, channels: int) -> TilePlan:
    """Whole slices, as many per tile as the budget holds, `slice_radius` neighbour slices of halo
    either side. Only if one slice does not fit is it cut in-plane, with the network's receptive
    field as in-plane halo."""
    bytes_per_voxel = channels * BYTES_PER_CHANNEL_VOXEL
    per_slice = shape[1] * shape[2] * bytes_per_voxel
    if per_slice <= budget_bytes:
        count = int(max(1, min(shape[0], budget_bytes // per_slice, MAX_SLICES_PER_TILE)))
        return TilePlan((count, shape[1], shape[2]), (slice_radius, 0, 0), (0, 0, 0))
    plan = plan_for_budget(shape, bytes_per_voxel, budget_bytes, halo=receptive_radius, overlap=8, slice_axis=0)
    return replace(plan, halo=(slice_radius, receptive_radius, receptive_radius))


def head_box(mask: np.ndarray, margin: int = HEAD_BOX_MARGIN) -> tuple[slice, ...]:
    """The head's bounding box with `margin` voxels of air around it (the whole volume if empty)."""
    box = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        n = mask.shape[axis]
        box.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + margin + 1, n)) if present.size else slice(0, n))
    return tuple(box)


def air_estimate(normalised: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Outside the head's box: the Rician-corrected local mean, sqrt(max(<m^2> - 2 sigma^2, 0))
    (Nowak 1999), ~0 in pure noise as the network's output is, so the box leaves no edge."""
    from scipy import ndimage

    second_moment = ndimage.gaussian_filter(normalised * normalised, 1.0)
    return np.sqrt(np.maximum(second_moment - 2.0 * sigma * sigma, 0.0)).astype(np.float32)


def denoise_volume(
    volume: Volume,
    kind: str,
    experts: int,
    device: str,
    progress,
    noise_level_percent: float,
    orientations: int = 1,
    shares: bool = False,
    ablation: tuple | None = None,
    clean: np.ndarray | None = None,
    parts: tuple | None = None,
) -> MethodResult:
    """The whole pipeline. `ablation` (the benchmark's gate ablation, see experts.SliceMixture)
    overrides the gate; ("oracle",) needs the `clean` array on the input's grid. `parts` (what
    `load_mixture` returns) lets training validate experts that are not yet saved."""
    from ...devices import resolve_device, run_with_memory_fallback
    from ...intensity import normalise
    from ...masks import head_mask
    from ...noise_estimate import estimate_noise, given_level
    from .anatomy import depth_below_surface
    from .experts import SliceMixture
    from .gate import segment_classes

    torch_device = resolve_device(device)
    front, tails, gate, legend, entry, (radius, receptive, channels) = parts or load_mixture(kind, experts)
    array = np.asarray(volume.array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InputError("the input holds NaN or infinite voxels; read it with nonfinite='replace' first")

    progress(0.0, "head mask and noise level")
    mask = head_mask(array)
    if noise_level_percent > 0:
        noise = given_level(array, noise_level_percent, mask)
    else:
        noise = estimate_noise(array, volume.spacing, mask)
    normalised, scale = normalise(array, mask)
    sigma = noise.sigma_map / np.float32(scale.width)
    classes = segment_classes(normalised, mask)[0] if kind == "segment" else np.zeros(array.shape, np.uint8)
    box = head_box(mask)
    # Only the patch gate reads the depth below the surface (a distance transform: seconds per head).
    depth = depth_below_surface(mask, volume.spacing)[box] if kind == "patch" and experts > 1 else np.zeros_like(normalised[box])
    layers = [normalised[box], sigma[box], classes[box].astype(np.float32), depth]
    if ablation and ablation[0] == "oracle":
        layers.append(scale.apply(clean)[box])
    stack = np.stack(layers)
    axes = slice_axes(volume, orientations)
    passes = len(axes)

    want_shares = shares and experts > 1

    def run(dev, budget):
        mixture = SliceMixture(front, tails, "single" if experts == 1 else kind, gate, radius, dev)
        mixture.ablation = ablation
        total, labels, plans, routing = None, None, [], None
        for i, axis in enumerate(axes):
            moved = np.moveaxis(stack, axis + 1, 1)
            plan = slice_plan(moved.shape[1:], budget, radius, receptive, channels)
            # The map shows the routing of the first (finest-plane) slices. Without in-plane tile
            # overlap nothing is blended, so one label channel is enough.
            blended = plan.overlap != (0, 0, 0) or want_shares
            mixture.output = "image" if i else "weights" if blended else "labels"
            stage = f"denoising slices across {'zyx'[axis]} ({i + 1}/{passes})"
            out = tiled_apply(moved, mixture.denoise_tile, plan, progress=lambda f, s: progress(0.05 + 0.9 * (i + f) / passes, f"{stage}: {s}"))
            out = np.moveaxis(out, 1, axis + 1)
            total = out[0] if total is None else total + out[0]
            if labels is None:
                labels = out[1] if mixture.output == "labels" else np.argmax(out[1:], axis=0) + 1
                routing = out[1:].copy() if want_shares else None
            plans.append(plan.count(moved.shape[1:]))
            del out, moved
        return total / passes, labels, plans, routing

    (denoised_box, labels_box, tiles, routing_box), notes = run_with_memory_fallback(run, torch_device)
    del stack
    progress(0.97, "expert map")
    denoised = air_estimate(normalised, sigma) if denoised_box.shape != array.shape else np.empty_like(array)
    denoised[box] = denoised_box
    labels = np.zeros(array.shape, np.uint8)
    labels[box] = np.rint(labels_box).astype(np.uint8)
    labels[~mask] = 0
    image = scale.undo(np.maximum(denoised, float(normalised.min())))
    shares_maps = None
    if routing_box is not None:
        shares_maps = []
        for k in range(experts):
            share = np.zeros(array.shape, np.float32)
            share[box] = routing_box[k]
            share[~mask] = 0.0
            shares_maps.append(volume.with_array(share, name=f"{volume.name or 'input'}_expert{k + 1}_share"))
    legend_experts = [
        Expert(int(e["label"]), e["name"], expert_colour(int(e["label"])), e.get("description", "")) for e in legend
    ]
    first = "zyx"[axes[0]]
    metadata = {
        **noise.metadata(),
        **notes,
        "experts": experts,
        "gate": (
            {"patch": f"{entry['parameters'].get('gate', 'net')} gate on anatomy descriptors per 48x48 patch (stride 20)", "segment": "intensity class"}[kind]
            if experts > 1
            else "none (one expert)"
        ),
        "ablation": " ".join(str(a) for a in ablation) if ablation else "none",
        "expert_map_rule": (
            f"majority of the 48x48 patches (stride 20) covering the voxel in the slices across {first}; 0 outside the head"
            if kind == "patch"
            else "the voxel's intensity class; 0 outside the head"
        ),
        "slice_axis": first,
        "orientations": "".join("zyx"[a] for a in axes),
        "head_box_voxels": int(np.prod([b.stop - b.start for b in box])),
        "tiles": sum(tiles),
        "weights_sha256": entry["sha256"][:12],
    }
    progress(1.0, "done")
    return MethodResult(
        image=volume.with_array(image.astype(np.float32)),
        expert_map=volume.with_array(labels, name=f"{volume.name}_experts" if volume.name else "experts"),
        experts=legend_experts,
        expert_probabilities=shares_maps,
        metadata=metadata,
    )


register(SMoEPatch())
register(SMoESegment())
