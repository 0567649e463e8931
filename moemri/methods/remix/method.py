"""REMIx: Resolution Enhancement through Mixture of Experts (Morell-Ortega, Ruiz-Perez, Coupé,
Manjón; MIDL 2024 short paper).

As published: seven 3-D U-Nets with a residual connection at the output, one per voxel-volume bin
(1..7 mm3), the 1 mm3 one trained first and the others fine-tuned from it; the loss is MAE + SSIM
+ gradient MAE + correlation; one expert is picked for the whole volume from the product of the
input's spacings; experts=1 runs the paper's comparison, one network trained on every bin.

Departures: the input is first interpolated (cubic B-spline) onto the isotropic output grid in the
input's own orientation, not registered to MNI space (a user's scan keeps its position and
orientation); training pairs come from random acquisition grids on four public heads, not from
volBrain's registrations on HCP (see moemri/train/remix.py); the networks are small enough for a
CPU. B-spline is used both to make the training pairs and at inference, so the network always
restores the kind of image it was trained on. Beyond the paper (issue 12): the networks see the
input in a canonical frame (slice axis first) with its spacing as conditioning (canonical.py;
the older single-channel networks still load); between two bin centres the two nearest experts
are blended; with the older networks only the detail the scan could not measure is added
(`missing_detail`), which keeps them level with B-spline or above it on sharp thick slices; `self_check` and
`adapt_steps` (self_check.py) check and adapt the expert on the scan's own in-plane detail.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...volume import Volume, grid_with_spacing
from ...palette import expert_colour
from ..base import Expert, MethodInfo, MethodResult, OptionSpec, no_progress, resolve_experts, resolve_options
from ..classical_resample import SPACING_SPEC, check_spacing
from ..registry import register
from . import weights
from .canonical import canonical_order, condition_values, from_canonical, to_canonical, with_condition
from .selection import Selection, select_expert

INTERPOLATOR = "bspline"  # the same as the training pairs (moemri/train/remix.py)
TRAINED_SPACING_MM = 1.0
HALO = 8  # context voxels around each tile; the blended overlap hides what differs beyond it
OVERLAP = 8
# Activation memory of the (12, 24, 48) U-Net in float32, channels-last: 300-310 B per tile voxel
# measured (VmHWM, 96^3 and 128^3 tiles); the margin covers the allocator.
BYTES_PER_VOXEL = 360
TILE_BUDGET_BYTES = {"cpu": 1.5e9, "cuda": 4.0e9}
CORRECTION_OPTION = OptionSpec(
    "correction", "choice", "auto",
    "what of the expert's correction to add to B-spline: 'missing-detail' (only detail finer than the input's voxels "
    "along its coarse axes), 'full', or 'auto' (missing-detail for the networks trained without the input's spacing, "
    "which over-sharpen sharp thick slices; full for those trained in the canonical frame)",
    choices=("auto", "missing-detail", "full"),
)
SELF_CHECK_OPTION = OptionSpec(
    "self_check", "bool", False,
    "check the expert on the scan's own in-plane detail and keep only the share of its correction that helps there",
)
COARSE_RATIO = 1.25  # an input axis this much coarser than the output grid is missing detail
ADAPT_OPTION = OptionSpec(
    "adapt_steps", "int", 0,
    "fine-tune the expert for this many steps on the scan itself before applying it (0 = off)", minimum=0, maximum=500,
)


def tile_plan(shape, budget_bytes: float):
    """REMIx's 3-D tiles: evenly sized, the fewest voxels run (the shared tiler's planner)."""
    from ...tiling import plan_even_tiles

    return plan_even_tiles(shape, BYTES_PER_VOXEL, budget_bytes, halo=HALO, overlap=OVERLAP)


def missing_detail(correction: np.ndarray, native_zyx, output_zyx) -> np.ndarray:
    """The part of the expert's correction the scan could not have measured: what a Gaussian of
    FWHM one native voxel along every coarse axis removes (nothing, where no axis is coarse).

    Why: measured on the validation head (issue 12), the expert's correction split this way is
    +0.16 to +0.39 dB over B-spline on every case tried, sharp thick slices and REMIx's oblique
    scans alike, while the rest (a change of what the scan did measure: deblurring in-plane)
    is -0.1 to -0.5 dB on sharp thick slices and +0.5 to +1.7 dB only on scans simulated with a
    Gaussian in-plane blur. Real thick-slice scans are sharp in-plane, so for those networks the
    measured band stays as B-spline has it ('auto'), and REMIx stays level with B-spline or above.
    The networks trained in the canonical frame with the spacing do not over-sharpen (the base
    network, mid-training: +0.13 to +0.35 dB with its whole correction on the same sharp slices).
    """
    from scipy import ndimage

    ratios = [n / o for n, o in zip(native_zyx, output_zyx)]
    if not any(r >= COARSE_RATIO for r in ratios):
        return np.zeros_like(correction)
    smooth = correction
    for axis, ratio in enumerate(ratios):
        if ratio >= COARSE_RATIO:
            smooth = ndimage.gaussian_filter1d(smooth, ratio / 2.3548, axis=axis, mode="nearest")
    return correction - smooth


class Applier:
    """Runs one expert, or a weighted blend of two, on a block in the networks' frame: the
    canonical axis order of the block's native spacing and, for networks trained with it, the
    spacing as conditioning channels (canonical.py). The shipped networks from before that
    frame take the image alone; the frame is harmless for them (they saw every axis order)."""

    def __init__(self, networks, device):
        self.networks = networks  # [(model, conditioned, weight)]
        self.device = device

    @property
    def model(self):
        return max(self.networks, key=lambda n: n[2])[0]

    def _conditioned(self, model) -> bool:
        return model.in_channels > 1

    def to_frame(self, block: np.ndarray, spacing_zyx) -> np.ndarray:
        return to_canonical(block, canonical_order(spacing_zyx))

    def frame_axis(self, axis: int, spacing_zyx) -> int:
        return canonical_order(spacing_zyx).index(axis)

    def network_input(self, block: np.ndarray, spacing_zyx, conditioned: bool = True) -> np.ndarray:
        order = canonical_order(spacing_zyx)
        framed = to_canonical(block, order)
        if not conditioned:
            return np.ascontiguousarray(framed[None], np.float32)
        return with_condition(framed, condition_values(spacing_zyx, order))

    def __call__(self, block: np.ndarray, spacing_zyx, model=None) -> np.ndarray:
        import torch

        networks = [(model, self._conditioned(model), 1.0)] if model is not None else self.networks
        order = canonical_order(spacing_zyx)
        pad = [(0, (-n) % 4) for n in to_canonical(block, order).shape]
        out = np.zeros(to_canonical(block, order).shape, np.float32)
        for net, conditioned, weight in networks:
            x = self.network_input(block, spacing_zyx, conditioned)
            if any(p for _, p in pad):
                x = np.pad(x, [(0, 0)] + pad, mode="edge")
            with torch.inference_mode():
                t = torch.from_numpy(np.ascontiguousarray(x))[None].to(self.device, memory_format=torch.channels_last_3d)
                y = net(t)[0, 0].float().cpu().numpy()
            out += weight * y[: out.shape[0], : out.shape[1], : out.shape[2]]
        return from_canonical(out, order)


class Remix:
    def __init__(self, weights_dir: Path | None = None):
        self._weights_dir = weights_dir
        self._models: dict[tuple[str, str, str], object] = {}
        self.info = MethodInfo(
            name="remix",
            task="superres",
            title="REMIx (resolution experts, 3-D U-Net)",
            description="Seven 3-D U-Nets, one per voxel volume 1-7 mm3; the input's spacing picks one.",
            reference="Morell-Ortega, Ruiz-Perez, Coupé, Manjón: REMIx, MIDL 2024",
            expert_counts=(7, 1),
            default_experts=7,
            spatial_dims=3,
            has_expert_map=False,  # one expert for the whole volume: metadata names it
            options=(SPACING_SPEC, CORRECTION_OPTION, SELF_CHECK_OPTION, ADAPT_OPTION),
        )
    @property
    def weights_dir(self) -> Path:
        return Path(self._weights_dir or weights.weights_dir())  # read late: $MOEMRI_WEIGHTS may change

    def availability(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "REMIx needs PyTorch (pip install torch)"
        return weights.missing_reason(self.weights_dir)

    def selection(self, volume: Volume, experts: int | None = None) -> Selection:
        return select_expert(volume.spacing, resolve_experts(self.info, experts))

    def describe_selection(self, volume: Volume, experts: int | None = None) -> str:
        """What `run` will pick for `volume` and why, for the user to read before running."""
        chosen = self.selection(volume, experts)
        return " ".join([chosen.reason + "."] + [w[0].upper() + w[1:] + "." for w in chosen.warnings])

    def _model(self, network: str, device):
        key = (network, str(device), str(self.weights_dir))
        if key not in self._models:
            import torch

            from .unet3d import UNet3d

            state, entry = weights.load_network(network, self.weights_dir)
            model = UNet3d(tuple(entry["widths"]), int(entry.get("in_channels", 1)))
            model.load_state_dict(state)
            # Channels-last runs oneDNN's 3-D convolutions ~30 % faster on the CPU, same numbers.
            self._models[key] = model.to(device, memory_format=torch.channels_last_3d).eval()
        return self._models[key]

    def run(self, volume: Volume, *, experts=None, device="auto", progress=no_progress, options=None) -> MethodResult:
        from ...degrade.resolution import resample_to_grid
        from ...devices import resolve_device, run_with_memory_fallback
        from ...intensity import normalise
        from ...tiling import tiled_apply
        from .self_check import check_scan

        start = time.perf_counter()
        chosen = self.selection(volume, experts)
        opts = resolve_options(self.info, options)
        spacing = check_spacing(opts[SPACING_SPEC.name])
        warnings = list(chosen.warnings)
        if not np.allclose(spacing, TRAINED_SPACING_MM, atol=0.05):
            warnings.append(
                f"the networks were trained to restore a {TRAINED_SPACING_MM:g} mm grid; at "
                f"{'x'.join(f'{s:g}' for s in spacing)} mm their output is untested"
            )
        torch_device = resolve_device(device)
        for network, _ in chosen.blend:
            self._model(network, torch_device)  # check the weights before any work

        progress(0.0, f"{INTERPOLATOR} onto the {'x'.join(f'{s:g}' for s in spacing)} mm grid")
        grid = grid_with_spacing(volume, spacing)
        interpolated = resample_to_grid(volume, grid, interpolator=INTERPOLATOR)
        array, scale = normalise(interpolated.array)  # the training pairs' scale, from the input alone
        del interpolated
        native_zyx = tuple(volume.spacing[::-1])
        order = canonical_order(native_zyx)

        def applier(device):
            return Applier([(self._model(n, device), self._model(n, device).in_channels > 1, w) for n, w in chosen.blend], device)

        check = None
        if opts["self_check"] or opts["adapt_steps"] > 0:
            progress(0.02, "self-check on the scan's own in-plane detail")
            check = check_scan(volume, grid, scale, array, order, applier(torch_device), int(opts["adapt_steps"]))

        def restore_all(device, budget_bytes):
            apply = applier(device)
            model = check.model if check is not None and check.model is not None else None

            def restore(block: np.ndarray) -> np.ndarray:
                return apply(block, native_zyx, model)

            plan = tile_plan(array.shape, budget_bytes)

            def tile_progress(fraction: float, stage: str) -> None:
                progress(0.05 + 0.95 * fraction, f"{chosen.expert_name}: {stage}")

            return tiled_apply(array, restore, plan, progress=tile_progress), plan.count(array.shape)

        budget = TILE_BUDGET_BYTES["cpu" if torch_device.type == "cpu" else "cuda"]
        (restored, tiles), notes = run_with_memory_fallback(restore_all, torch_device, budget)
        alpha = 1.0 if check is None else check.alpha
        correction = restored - array
        conditioned = all(self._model(n, torch_device).in_channels > 1 for n, _ in chosen.blend)
        kept = opts["correction"] if opts["correction"] != "auto" else ("full" if conditioned else "missing-detail")
        if kept == "missing-detail":
            correction = missing_detail(correction, native_zyx, tuple(grid.spacing[::-1]))
        restored = array + np.float32(alpha) * correction  # B-spline plus the kept correction
        image = grid.with_array(scale.undo(restored), name=f"{volume.name}_remix" if volume.name else "remix")
        progress(1.0, "done")
        expert = Expert(label=chosen.bin, name=chosen.expert_name, color=expert_colour(chosen.bin), description=chosen.reason)
        metadata = {
            **notes,
            "spacing": list(grid.spacing),
            "selected_expert": chosen.expert_name,
            "blend": {n: round(w, 3) for n, w in chosen.blend},
            "voxel_volume_mm3": chosen.voxel_volume_mm3,
            "selection_reason": chosen.reason,
            "warnings": warnings,
            "weights": [weights.filename(n) for n, _ in chosen.blend],
            "interpolation": INTERPOLATOR,
            "correction_kept": round(alpha, 3),
            "correction": kept,
            "self_check": None if check is None else check.note,
            "adapt_steps": int(opts["adapt_steps"]),
            "tiles": tiles,
            "seconds": round(time.perf_counter() - start, 2),
        }
        return MethodResult(image, experts=[expert], metadata=metadata)


REMIX = register(Remix())
