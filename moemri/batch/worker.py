"""One volume on one Dask worker. Everything that can go wrong with the file or the method comes
back as a record with status "failed" and the reason, so one bad file never stops the others; only
the death of the worker process itself is left to Dask (which retries the volume elsewhere).
"""
from __future__ import annotations

import json
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MoEMRIError
from ..methods.base import NOISE_LEVEL_OPTION, SPACING_OPTION
from . import atomic
from .identity import SIDECAR_KEY
from .inputs import Item, split_extension

THUMBNAIL_PIXELS = 160


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs besides the volume; pickled to every worker."""

    identity: dict[str, Any]  # task, method, experts, options, weights_sha256
    device: str = "cpu"
    torch_threads: int = 1
    write_expert_map: bool = True
    report_dir: Path | None = None  # thumbnails go here
    bids: bool = False
    sources_prefix: str = ""  # "bids:raw:" for a BIDS input: the sidecars' Sources are BIDS URIs


def thumbnail_stem(key: str) -> str:
    return split_extension(key)[0].replace("/", "__")


def process_volume(item: Item, spec: RunSpec) -> dict[str, Any]:
    start, cpu_start = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {"key": item.key, "status": "failed", "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        record.update(_process(item, spec))
        record["status"] = "done"
    except MoEMRIError as error:
        record["reason"] = str(error)
    except MemoryError:
        record["reason"] = "out of memory while processing this volume"
    except Exception as error:  # a bug or an unforeseen file: reported with the volume, the batch goes on
        frame = traceback.extract_tb(error.__traceback__)[-1]
        record["reason"] = f"internal error: {type(error).__name__}: {error} ({Path(frame.filename).name}:{frame.lineno})"
    record["seconds"] = round(time.perf_counter() - start, 2)
    # CPU seconds of the whole worker process (all its threads): against `seconds`, the share of
    # the machine this volume got, which other jobs on shared cores take away.
    record["cpu_seconds"] = round(time.process_time() - cpu_start, 2)
    record["peak_rss_mb"] = _peak_rss_mb()
    return record


def heap_for_large_arrays() -> bool:
    """Undo Dask's MALLOC_TRIM_THRESHOLD_ for this worker process; True when glibc took it.

    Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536 so that freed memory goes
    back to the OS. Setting it also switches off glibc's sliding mmap threshold: every array over
    128 KiB is then a fresh mmap, page-faulted in and unmapped again. Measured on a whole head with
    smoe-patch K=4 on one thread: 37 s and 8 M page faults in a default worker against 21 s and
    0.6 M in a plain process. The fixed thresholds below are where glibc's sliding ones end up
    (32 MiB, trim at twice that); one volume per task keeps at most that much extra.
    """
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to undo
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
    return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 64 * 2**20))


def _process(item: Item, spec: RunSpec) -> dict[str, Any]:
    import torch

    from .. import api
    from ..io import read_volume

    torch.set_num_threads(spec.torch_threads)
    heap_for_large_arrays()
    identity = spec.identity
    for final in (item.image, item.sidecar, item.expert_map, item.map_sidecar):
        if final is not None:
            atomic.remove_stale_parts(final)
    volume = read_volume(item.source)
    options = dict(identity["options"])
    if "scale" in options:
        options[SPACING_OPTION] = [s / options.pop("scale") for s in volume.spacing]
    result = api.run(identity["task"], volume, identity["method"], experts=identity["experts"], device=spec.device, options=options)
    with_map = spec.write_expert_map and result.expert_map is not None and item.expert_map is not None

    # Everything into a hidden staging folder beside the results first; published in an order that
    # makes the image's sidecar (the proof of a complete result) the last file to appear.
    folder = item.image.parent
    folder.mkdir(parents=True, exist_ok=True)
    staging = atomic.staging_folder(folder, atomic.new_tag())
    try:
        staged_map = staging / item.expert_map.name if with_map else None
        api.save_result(result, staging / item.image.name, expert_map_path=staged_map)
        if with_map:
            _complete_map_sidecar(item, spec, staged_map)
            if spec.bids:
                _write_dseg_lookup(staged_map, result)
        # Every staged file, the voxel files a detached header (.nhdr, .mhd) points to included;
        # the image itself last. An old sidecar would vouch for files about to change: it goes first.
        staged = sorted((p for p in staging.iterdir() if p.is_file()), key=lambda p: (p.name == item.image.name, p.name))
        item.sidecar.unlink(missing_ok=True)
        finals = atomic.publish_staged(staged, folder)
    finally:
        atomic.remove_folder(staging)
    metadata = _jsonable(result.metadata)
    summary = _summary(result)
    sidecar = {
        "Description": f"{identity['task']} by MoE-MRI {identity['method']}",
        "Sources": [spec.sources_prefix + item.key],
        SIDECAR_KEY: {
            **identity,
            "outputs": [f.name for f in finals if f.parent == item.image.parent] + [item.sidecar.name],
            "expert_map": item.expert_map.name if with_map else None,
            "summary": summary,
            "metadata": metadata,
        },
    }
    atomic.write_text(item.sidecar, json.dumps(sidecar, indent=2, default=str) + "\n")
    thumbnails = _thumbnails(item, spec, volume, result) if spec.report_dir else {}
    return {"method_seconds": metadata.get("seconds"), **summary, "outputs": [str(f) for f in finals], "thumbnails": thumbnails}


def _summary(result) -> dict[str, Any]:
    """The report's per-volume numbers: the noise level the denoiser used, or the expert chosen."""
    meta = result.metadata
    out = {}
    if "noise_level_percent" in meta:
        out[NOISE_LEVEL_OPTION] = meta[NOISE_LEVEL_OPTION]
    if "selected_expert" in meta:
        out["selected_expert"] = meta["selected_expert"]
    shares = result.expert_shares()
    if shares and len(shares) > 1:
        top = max(shares, key=shares.get)
        name = next(e.name for e in result.experts if e.label == top)
        out["main_expert"] = f"{name} ({100 * shares[top]:.0f}%)"
    if meta.get("warnings"):
        out["warnings"] = list(meta["warnings"])
    return out


def _complete_map_sidecar(item: Item, spec: RunSpec, staged_map: Path) -> None:
    """save_result's legend JSON becomes the map's sidecar: add what BIDS asks of a derivative."""
    legend_part = staged_map.with_name(split_extension(staged_map.name)[0] + ".json")
    legend = json.loads(legend_part.read_text())
    legend = {
        "Description": f"expert label map of MoE-MRI {spec.identity['method']}: which expert handled each voxel (0: none)",
        "Sources": [spec.sources_prefix + item.key],
        **legend,
    }
    legend_part.write_text(json.dumps(legend, indent=2, default=str) + "\n")


def _dseg_tsv(expert_map: Path) -> Path:
    return expert_map.with_name(split_extension(expert_map.name)[0] + ".tsv")


def _write_dseg_lookup(staged_map: Path, result) -> Path:
    """BIDS's look-up table of a discrete segmentation: index, name, colour."""
    rows = ["index\tname\tcolor"] + [
        f"{e.label}\t{e.name.replace(' ', '_')}\t#{e.color[0]:02x}{e.color[1]:02x}{e.color[2]:02x}" for e in result.experts
    ]
    part = _dseg_tsv(staged_map)
    part.write_text("\n".join(rows) + "\n")
    return part


def _thumbnails(item: Item, spec: RunSpec, volume, result) -> dict[str, str]:
    """Middle axial slice of the input, the result and the expert map over the result (PNG)."""
    import matplotlib.image as mpimg
    import io as _io

    def middle(a):
        return np.asarray(a[a.shape[0] // 2], dtype=np.float32)[::-1]  # LPS rows: anterior at the top

    def grey(s):
        lo, hi = np.percentile(s, [1, 99.5])
        return np.clip((s - lo) / max(hi - lo, 1e-6), 0, 1)

    def shrink(s):
        step = max(1, int(np.ceil(max(s.shape[:2]) / THUMBNAIL_PIXELS)))
        return s[::step, ::step]

    after = grey(middle(result.image.array))
    pictures = {"before": np.repeat(grey(middle(volume.array))[..., None], 3, -1), "after": np.repeat(after[..., None], 3, -1)}
    if result.expert_map is not None:
        labels = middle(result.expert_map.array).astype(int)
        colours = np.zeros((int(labels.max()) + 1, 3), np.float32)
        for e in result.experts:
            if e.label < len(colours):
                colours[e.label] = np.array(e.color) / 255.0
        over = pictures["after"].copy()
        inside = labels > 0
        over[inside] = 0.45 * over[inside] + 0.55 * colours[labels[inside]]
        pictures["experts"] = over
    stem = thumbnail_stem(item.key)
    out = {}
    for name, picture in pictures.items():
        buffer = _io.BytesIO()
        mpimg.imsave(buffer, shrink(picture), format="png")
        path = atomic.write_bytes(Path(spec.report_dir) / f"{stem}_{name}.png", buffer.getvalue())
        out[name] = path.name
    return out


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def _peak_rss_mb() -> float | None:
    try:
        import resource

        # Linux reports kilobytes, macOS bytes; the worker process's peak over its life so far.
        scale = 1024 if os.uname().sysname == "Darwin" else 1
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / scale, 1)
    except (ImportError, AttributeError):
        return None
