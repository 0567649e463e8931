"""Cohort throughput: `python -m moemri.bench.batch [--heads 8] [--runs 1x2 2x1 1x1] [--out table.md]`.

The same whole heads (the four fetched 1-1.5 mm training/validation heads, each clean and with
3 % Rician noise: 8 volumes) are denoised three ways: a shell loop over `moemri denoise` (one
process per volume, torch on every core), and `moemri batch` on local Dask clusters given as
workers x torch threads each (1x2, 2x1; 1x1 for the scaling from one worker to two). Every way writes the image and the expert map. Prints
volumes per minute, the scheduler's overhead per volume and the peak memory per worker process.
colin27-hr (0.5 mm, 35 M voxels) is left out: it alone would take as long as the other eight.
"""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .table import markdown_table

HEADS = ("mni152-2009", "colin27", "pydeface-mean", "robex-atlas")


def make_heads(folder: Path, count: int) -> list[Path]:
    from ..data.fetch import fetch_volume
    from ..degrade.noise import rician_noise
    from ..io import read_volume, write_volume

    paths = []
    rng = np.random.default_rng(0)
    for level in (0.0, 3.0):
        for head in HEADS:
            if len(paths) == count:
                return paths
            volume = read_volume(fetch_volume(head))
            if level:
                volume = rician_noise(volume, level, rng)
            paths.append(write_volume(volume, folder / f"{head}_noise{level:g}.nii.gz"))
    return paths


def shell_loop(paths: list[Path], out: Path, method: list[str], with_map: bool) -> tuple[float, float]:
    """(seconds, peak RSS MB of the largest `moemri denoise` process)."""
    out.mkdir(parents=True)
    lines = []
    for p in paths:
        line = f"{shlex.quote(sys.executable)} -m moemri.cli.main denoise {shlex.quote(str(p))} {shlex.quote(str(out / p.name))} {' '.join(method)}"
        if with_map:
            line += f" --expert-map {shlex.quote(str(out / p.name.replace('.nii.gz', '_experts.nii.gz')))}"
        lines.append(line + " >/dev/null")
    start = time.perf_counter()
    subprocess.run(["bash", "-c", "set -e\n" + "\n".join(lines)], check=True)
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def noop(x):
    return x


def batch_run(folder: Path, out: Path, method: str, experts: int | None, workers: int, threads: int) -> dict:
    from distributed import wait

    from ..batch import engine
    from ..batch.cohort import run_cohort

    start = time.perf_counter()
    with engine.dask_client(workers=workers, torch_threads=threads, echo=lambda s: None) as client:
        client.wait_for_workers(workers)
        started = time.perf_counter() - start
        t0 = time.perf_counter()
        wait([client.submit(noop, i, pure=False) for i in range(200)])
        noop_ms = (time.perf_counter() - t0) / 200 * 1000 * workers  # per task and worker
        t1 = time.perf_counter()
        records = run_cohort("denoise", folder, out, method, experts=experts, client=client, show_progress=False,
                             torch_threads=threads, echo=lambda s: None)
        run_s = time.perf_counter() - t1
    failed = [r for r in records if r["status"] != "done"]
    if failed:
        raise RuntimeError(f"batch benchmark: {failed}")
    busy = sum(r["seconds"] for r in records) / workers
    peaks: dict[str, float] = {}
    for r in records:
        peaks[r["worker"]] = max(peaks.get(r["worker"], 0.0), r["peak_rss_mb"] or 0.0)
    return {"startup_s": started, "run_s": run_s, "noop_ms": noop_ms, "overhead_s": (run_s - busy) / len(records),
            "peak_mb": max(peaks.values()), "task_s": sum(r["seconds"] for r in records) / len(records),
            "cpu_s": sum(r["cpu_seconds"] for r in records) / len(records), "total_s": started + run_s}  # the no-op probe is not counted


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moemri.bench.batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=8, help="whole heads to denoise (at most 8)")
    parser.add_argument("--runs", nargs="+", default=["1x2", "2x1"], metavar="WxT",
                        help="batch runs as workers x torch threads each (default 1x2 2x1: the cores shared out; 1x1 shows the scaling)")
    parser.add_argument("--method", default="smoe-patch")
    parser.add_argument("--experts", type=int)
    parser.add_argument("--no-shell-loop", action="store_true")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    method = ["--method", args.method] + (["--experts", str(args.experts)] if args.experts else [])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="moemri-bench-batch-") as tmp:
        tmp = Path(tmp)
        paths = make_heads(tmp / "heads", args.heads)
        n = len(paths)
        rows = []
        if not args.no_shell_loop:
            from ..methods.registry import get_method

            with_map = get_method(args.method, "denoise").info.has_expert_map
            seconds, peak = shell_loop(paths, tmp / "loop", method, with_map)
            rows.append(["shell loop over `moemri denoise`", 1, os.cpu_count(), f"{seconds:.0f}", f"{60 * n / seconds:.2f}", "-", "-", "-", "-", "-", f"{peak:.0f}"])
            print(f"shell loop: {seconds:.0f} s", file=sys.stderr)
        for run in args.runs:
            w, t = (int(v) for v in run.split("x"))
            r = batch_run(tmp / "heads", tmp / f"batch{run}", args.method, args.experts, w, t)
            rows.append([f"`moemri batch`, {w} worker(s)", w, t, f"{r['total_s']:.0f}",
                         f"{60 * n / r['total_s']:.2f}", f"{r['task_s']:.1f}", f"{r['cpu_s']:.1f}", f"{r['startup_s']:.1f}", f"{r['overhead_s']:.2f}", f"{r['noop_ms']:.1f}", f"{r['peak_mb']:.0f}"])
            print(f"batch {run}: {r}", file=sys.stderr)
    load_after = os.getloadavg()
    header = ["run", "workers", "torch threads each", "seconds", "volumes/min", "s per volume (in its worker)", "CPU s per volume", "cluster start s",
              "overhead s/volume", "no-op task ms", "peak MB per worker"]
    text = (
        f"{n} whole heads, {args.method}{f' K={args.experts}' if args.experts else ''}, {os.cpu_count()} cores; "
        f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}\n\n" + markdown_table(header, rows)
        + "\n\nseconds include the cluster's start; overhead = (run time - summed task time / workers) per volume;"
        + " CPU s per volume below the wall seconds times the threads used means other jobs had the cores."
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
