"""`moemri batch denoise|superres INPUT OUTPUT`: one method over a folder or a BIDS dataset, on Dask."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ..methods.base import NOISE_LEVEL_OPTION, SPACING_OPTION

EXAMPLE = """examples:
  moemri batch denoise ds001 ds001/derivatives/moemri --method smoe-patch --suffix T1w --workers 2
  moemri batch denoise scans/ clean/ --method nlmeans-rician --glob '**/*.nii.gz'
  moemri batch superres ds001 sr/ --method remix --scale 2 --subject 01 02
  moemri batch denoise ds001 out/ --method smoe-patch --scheduler tcp://head-node:8786
  moemri batch denoise ds001 out/ --method smoe-patch --jobqueue slurm --jobs 20 \\
      --jobqueue-option queue=short --jobqueue-option walltime=01:00:00 --jobqueue-option memory=8GiB

A BIDS dataset (INPUT holds dataset_description.json) gives a BIDS derivative dataset at OUTPUT;
a plain folder is mirrored into OUTPUT. Volumes already made with the same method, options and
weights are skipped (--overwrite redoes them). OUTPUT/batch-report.tsv and .html list every
volume. Exit status: 0 when every volume is done or skipped, 1 when any failed."""


def add_batch_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "batch",
        help="run a method over a folder or a BIDS dataset on Dask (resumable)",
        description="Run one method over a cohort: a folder of volumes or a BIDS dataset, on a local Dask cluster, "
        "a running Dask scheduler or a batch queue.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", choices=["denoise", "superres"])
    p.add_argument("input", help="a folder of volumes, or a BIDS dataset")
    p.add_argument("output", help="output folder (for a BIDS input: the derivative dataset, e.g. ds/derivatives/moemri)")
    p.add_argument("--method", required=True, help="a method name from `moemri methods`")
    p.add_argument("--experts", type=int, help="number of experts (one the method offers)")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="a method option (repeatable)")
    p.add_argument("--noise-level", type=float, metavar="PERCENT", help="denoise: known noise level (%% of brightest tissue)")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="superres: output voxel size in mm")
    grid.add_argument("--scale", type=float, metavar="S", help="superres: output voxel size = input voxel size / S")
    p.add_argument("--no-expert-map", action="store_true", help="do not write the expert label maps")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (on every worker)")
    sel = p.add_argument_group("which volumes")
    sel.add_argument("--layout", choices=["auto", "bids", "folder"], default="auto", help="auto: BIDS when INPUT has dataset_description.json")
    sel.add_argument("--glob", default="**/*", help="folder input: which files (default every volume below INPUT)")
    sel.add_argument("--subject", nargs="+", help="BIDS: subject labels (without sub-)")
    sel.add_argument("--session", nargs="+", help="BIDS: session labels (without ses-)")
    sel.add_argument("--suffix", nargs="+", default=["T1w"], help="BIDS: suffixes (default T1w)")
    sel.add_argument("--filter", action="append", default=[], metavar="ENTITY=VALUE", help="BIDS: any other entity, e.g. acq=mprage (repeatable)")
    dask = p.add_argument_group("where it runs (Dask)")
    dask.add_argument("--workers", type=int, help="local cluster: worker processes (default one per core)")
    dask.add_argument("--memory-per-worker", metavar="SIZE", help="local cluster: memory limit per worker, e.g. 6GiB (default memory / workers)")
    dask.add_argument("--threads-per-worker", type=int, help="torch threads per worker (default 1)")
    dask.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler, e.g. tcp://host:8786")
    dask.add_argument("--jobqueue", choices=["slurm", "pbs", "sge", "lsf", "htcondor"], help="start workers through the site's queue (pip install 'moemri[cluster]')")
    dask.add_argument("--jobqueue-option", action="append", default=[], metavar="NAME=VALUE", help="a dask-jobqueue cluster setting: queue, account, walltime, memory, cores ...")
    dask.add_argument("--jobs", type=int, default=1, help="with --jobqueue: queue jobs (one worker each)")
    dask.add_argument("--retries", type=int, default=2, help="times a volume is rescheduled after its worker died (default 2)")
    p.add_argument("--overwrite", action="store_true", help="redo volumes whose results exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def cmd_batch(args) -> int:
    from ..batch import report
    from .main import _parse_options  # one NAME=VALUE parser for every flag that takes them
    from ..batch.cohort import run_cohort

    task = args.task
    options = _parse_options(args.option, "--option")
    if args.noise_level is not None:
        if task != "denoise":
            raise InputError("--noise-level is for denoise")
        options[NOISE_LEVEL_OPTION] = args.noise_level
    if (args.spacing or args.scale) and task != "superres":
        raise InputError("--spacing and --scale are for superres")
    if args.scale is not None:
        if args.scale <= 0:
            raise InputError("--scale must be positive")
        options["scale"] = args.scale
    elif args.spacing is not None:
        options[SPACING_OPTION] = list(args.spacing)
    records = run_cohort(
        task, args.input, args.output, args.method, experts=args.experts, options=options, layout=args.layout,
        pattern=args.glob, subjects=args.subject, sessions=args.session, suffixes=args.suffix,
        filters=_parse_options(args.filter, "--filter"), with_map=not args.no_expert_map, device=args.device,
        overwrite=args.overwrite, workers=args.workers, torch_threads=args.threads_per_worker, scheduler=args.scheduler,
        jobqueue=args.jobqueue, jobqueue_options=_parse_options(args.jobqueue_option, "--jobqueue-option"), jobs=args.jobs,
        worker_retries=args.retries, memory_per_worker=args.memory_per_worker, show_progress=not args.no_progress,
    )
    for r in records:
        if r["status"] == "failed":
            print(f"  failed {r['key']}: {r.get('reason', '')}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(report.counts(records).items()))
    print(f"{summary}; report {Path(args.output) / 'batch-report.tsv'} and .html")
    return 1 if any(r["status"] == "failed" for r in records) else 0
