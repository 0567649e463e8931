"""The Python API: what the CLI, the Slicer modules' worker process and notebooks call.

    from moemri import api
    result = api.denoise("t1.nii.gz", method="nlmeans-rician")
    api.save_result(result, "t1_denoised.nii.gz", expert_map_path="experts.nii.gz")
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .methods.base import MethodResult, Task
from .progress import Progress, no_progress
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


def colour_table_lines(result: MethodResult, experts=None) -> list[str]:
    """Slicer's colour-table file format: `label name R G B A` per line (the result's experts, or
    the legend `experts` of one of its label maps)."""
    lines = ["# MoE-MRI expert colour table", "0 background 0 0 0 0"]
    lines += [f"{e.label} {e.name.replace(' ', '_')} {e.color[0]} {e.color[1]} {e.color[2]} 255" for e in (result.experts if experts is None else experts)]
    return lines


def expert_map_sidecars(expert_map_path) -> tuple[Path, Path]:
    """The colour table and JSON legend written beside an expert map: MAP.ctbl, MAP.json."""
    map_path = Path(expert_map_path)
    stem = map_path.name.split(".")[0]
    return map_path.with_name(stem + ".ctbl"), map_path.with_name(stem + ".json")


def _beside_map(map_path: Path, suffix: str) -> Path:
    stem = map_path.name.split(".")[0]
    return map_path.with_name(f"{stem}_{suffix}{map_path.name[len(stem):]}")


def _probability_path(map_path: Path, label: int) -> Path:
    return _beside_map(map_path, f"expert{label}")


def _difference_path(map_path: Path, label: int) -> Path:
    return _beside_map(map_path, f"expert{label}_difference")


def _label_map_path(map_path: Path, name: str) -> Path:
    return _beside_map(map_path, f"labels-{name}")


# Every file name save_result may put beside MAP.<ext>: MAP_expert<label>, MAP_expert<label>_difference, MAP_labels-<name>.
_BESIDE_MAP = r"_(expert\d+(_difference)?|labels-[a-z0-9-]+)"


def check_outputs(path, expert_map_path=None, inputs=(), expert_labels=None, difference_labels=(), label_map_names=()) -> None:
    """Refuse, before any work, outputs that cannot be written or would overwrite an input or each
    other (moemri.outputs.check_output_paths), the expert map's colour table, legend, per-expert
    maps and further label maps included. Without `expert_labels` (not known before the run) no
    input or output may be named like a file written beside the expert map (MAP_expert<label>,
    MAP_expert<label>_difference, MAP_labels-<name>)."""
    from .outputs import check_output_paths

    images, sidecars = [Path(path)], []
    if expert_map_path is not None:
        map_path = Path(expert_map_path)
        images.append(map_path)
        sidecars += expert_map_sidecars(map_path)
        if expert_labels is not None:
            images += [_probability_path(map_path, label) for label in expert_labels]
            images += [_difference_path(map_path, label) for label in difference_labels]
            for name in label_map_names:
                images.append(_label_map_path(map_path, name))
                sidecars.append(expert_map_sidecars(images[-1])[0])
        else:
            stem = map_path.name.split(".")[0]
            pattern = re.compile(re.escape(stem) + _BESIDE_MAP + "(" + re.escape(map_path.name[len(stem):]) + "|\\.ctbl)$")
            folder = Path(os.path.abspath(map_path.parent)).resolve()
            for other in [Path(path), *map(Path, inputs)]:
                if pattern.match(other.name) and Path(os.path.abspath(other.parent)).resolve() == folder:
                    raise InputError(f"{other} is named like a per-expert map of {map_path}, which may overwrite it; choose another name")
    check_output_paths(images, inputs=inputs, sidecars=sidecars)


def _label_dtype(count: int):
    return np.uint8 if count < 255 else np.uint16


def save_result(result: MethodResult, path, expert_map_path=None, inputs=()) -> list[Path]:
    """Write the image, and where asked the expert map with a Slicer colour table (.ctbl) and a
    JSON legend (names, descriptions, shares, metadata) beside it, and where the method made them
    the per-expert probability maps (MAP_expert<label>.<ext>), the per-expert difference maps
    (MAP_expert<label>_difference.<ext>) and further label maps with their colour tables
    (MAP_labels-<name>.<ext>, .ctbl). Returns the files written.

    All or nothing: every path is checked first (none may be one of `inputs` or another output),
    then all files are written under temporary names and renamed into place together."""
    from .io import write_image
    from .outputs import StagedOutputs

    if expert_map_path is not None and result.expert_map is None:
        raise InputError(f"method {result.metadata.get('method', '?')} makes no expert map")
    with_maps = expert_map_path is not None
    probabilities = list(zip(result.experts, result.expert_probabilities or [])) if with_maps else []
    differences = list(zip(result.experts, result.expert_differences or [])) if with_maps else []
    label_maps = list(result.label_maps) if with_maps else []
    check_outputs(path, expert_map_path, inputs=inputs, expert_labels=[e.label for e, _ in probabilities],
                  difference_labels=[e.label for e, _ in differences], label_map_names=[m.name for m in label_maps])
    with StagedOutputs() as staged:
        write_image(result.image, staged.path(path))
        if with_maps:
            map_path = Path(expert_map_path)
            ctbl, legend_path = expert_map_sidecars(map_path)
            write_image(result.expert_map, staged.path(map_path), dtype=_label_dtype(len(result.experts)))
            staged.path(ctbl).write_text("\n".join(colour_table_lines(result)) + "\n")
            probability_paths = []
            for expert, probability in probabilities:
                probability_paths.append(_probability_path(map_path, expert.label))
                write_image(probability, staged.path(probability_paths[-1]))
            difference_paths = []
            for expert, difference in differences:
                difference_paths.append(_difference_path(map_path, expert.label))
                write_image(difference, staged.path(difference_paths[-1]))
            label_map_entries = {}
            for label_map in label_maps:
                image_path = _label_map_path(map_path, label_map.name)
                write_image(label_map.volume, staged.path(image_path), dtype=_label_dtype(len(label_map.labels)))
                table = expert_map_sidecars(image_path)[0]
                staged.path(table).write_text("\n".join(colour_table_lines(result, label_map.labels)) + "\n")
                label_map_entries[label_map.name] = {
                    "title": label_map.title, "file": image_path.name, "colour_table": table.name,
                    "labels": [{"label": e.label, "name": e.name, "color": list(e.color), "description": e.description} for e in label_map.labels],
                }
            shares = result.expert_shares()
            legend = {
                "experts": [
                    {"label": e.label, "name": e.name, "color": list(e.color), "description": e.description, "share": shares.get(e.label, 0.0)}
                    for e in result.experts
                ],
                "metadata": result.metadata,
            }
            if probability_paths:
                legend["probability_maps"] = {str(e.label): p.name for (e, _), p in zip(probabilities, probability_paths)}
            if difference_paths:
                legend["difference_maps"] = {str(e.label): p.name for (e, _), p in zip(differences, difference_paths)}
            if label_map_entries:
                legend["label_maps"] = label_map_entries
            staged.path(legend_path).write_text(json.dumps(legend, indent=2, default=str) + "\n")
        written = staged.commit()
    # The order callers print: image, map, colour table, legend, per-expert maps.
    order = [Path(path)]
    if expert_map_path is not None:
        order += [Path(expert_map_path), *expert_map_sidecars(expert_map_path)]
    return order + [p for p in written if p not in order]


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
