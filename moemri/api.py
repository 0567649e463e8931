"""The Python API: what the CLI, the Slicer modules' worker process and notebooks call.

    from moemri import api
    result = api.denoise("t1.nii.gz", method="nlmeans-rician")
    api.save_result(result, "t1_denoised.nii.gz", expert_map_path="experts.nii.gz")
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .methods.base import MethodResult, Progress, Task, no_progress
from .methods.registry import all_methods, get_method
from .volume import Volume


def load(path_or_volume) -> Volume:
    if isinstance(path_or_volume, Volume):
        from .io import validate_volume

        validate_volume(path_or_volume, source=path_or_volume.name or "the input volume")
        return path_or_volume
    from .io import read_volume

    return read_volume(path_or_volume)


def run(
    task: Task,
    volume,
    method: str,
    experts: int | None = None,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    progress: Progress = no_progress,
) -> MethodResult:
    """Run one registered method; the input is never modified and the result records how it ran."""
    chosen = get_method(method, task)
    reason = chosen.availability()
    if reason:
        from .errors import MethodUnavailable

        raise MethodUnavailable(f"{method}: {reason}")
    volume = load(volume)
    original = volume.array.copy()
    start = time.perf_counter()
    result = chosen.run(volume, experts=experts, device=device, progress=progress, options=options)
    seconds = time.perf_counter() - start
    if not np.array_equal(volume.array, original):  # a guarantee the GUI relies on
        raise RuntimeError(f"method {method} modified its input; this is a bug")
    result.metadata.setdefault("method", method)
    result.metadata.setdefault("experts", experts if experts is not None else chosen.info.default_experts)
    result.metadata.setdefault("device", device)
    result.metadata["seconds"] = round(seconds, 3)
    return result


def denoise(volume, method: str, **kwargs) -> MethodResult:
    return run("denoise", volume, method, **kwargs)


def superres(volume, method: str, **kwargs) -> MethodResult:
    return run("superres", volume, method, **kwargs)


def colour_table_lines(result: MethodResult) -> list[str]:
    """Slicer's colour-table file format: `label name R G B A` per line."""
    lines = ["# MoE-MRI expert colour table", "0 background 0 0 0 0"]
    lines += [f"{e.label} {e.name.replace(' ', '_')} {e.color[0]} {e.color[1]} {e.color[2]} 255" for e in result.experts]
    return lines


def save_result(result: MethodResult, path, expert_map_path=None) -> list[Path]:
    """Write the image, and where asked the expert map with a Slicer colour table (.ctbl) and a
    JSON legend (names, descriptions, shares, metadata) beside it, and the per-expert probability
    maps where the method made them (MAP_expert<label>.<ext>). Returns the files written."""
    from .io import write_volume

    written = [Path(path)]
    write_volume(result.image, path)
    if expert_map_path is not None:
        if result.expert_map is None:
            raise InputError(f"method {result.metadata.get('method', '?')} makes no expert map")
        map_path = Path(expert_map_path)
        write_volume(result.expert_map, map_path, dtype=np.uint8 if len(result.experts) < 255 else np.uint16)
        stem = map_path.name.split(".")[0]
        ctbl = map_path.with_name(stem + ".ctbl")
        ctbl.write_text("\n".join(colour_table_lines(result)) + "\n")
        suffix = map_path.name[len(stem) :]
        probability_paths = []
        for expert, probability in zip(result.experts, result.expert_probabilities or []):
            probability_paths.append(map_path.with_name(f"{stem}_expert{expert.label}{suffix}"))
            write_volume(probability, probability_paths[-1])
        shares = result.expert_shares()
        legend = {
            "experts": [
                {"label": e.label, "name": e.name, "color": list(e.color), "description": e.description, "share": shares.get(e.label, 0.0)}
                for e in result.experts
            ],
            "metadata": result.metadata,
        }
        if probability_paths:
            legend["probability_maps"] = {str(e.label): p.name for e, p in zip(result.experts, probability_paths)}
        legend_path = map_path.with_name(stem + ".json")
        legend_path.write_text(json.dumps(legend, indent=2, default=str) + "\n")
        written += [map_path, ctbl, legend_path] + probability_paths
    return written


def list_methods(task: Task | None = None) -> list[dict]:
    rows = []
    for m in all_methods(task):
        i = m.info
        rows.append(
            {
                "name": i.name,
                "task": i.task,
                "title": i.title,
                "description": i.description,
                "reference": i.reference,
                "classical": i.classical,
                "expert_counts": list(i.expert_counts),
                "default_experts": i.default_experts,
                "spatial_dims": i.spatial_dims,
                "has_expert_map": i.has_expert_map,
                "options": [{"name": o.name, "kind": o.kind, "default": o.default, "help": o.help} for o in i.options],
                "available": m.availability() is None,
                "unavailable_reason": m.availability(),
            }
        )
    return rows
