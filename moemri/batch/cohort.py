"""`run_cohort`: the whole batch as one call, for the CLI and for notebooks.

    from moemri.batch.cohort import run_cohort
    records = run_cohort("denoise", "ds001", "ds001/derivatives/moemri", "smoe-patch", workers=2)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, MethodUnavailable
from . import dataset, engine, inputs, report
from .identity import run_identity, weights_files
from .worker import RunSpec


def find_items(task: str, input_root: Path, output_root: Path, layout: str = "auto", *, pattern: str = inputs.DEFAULT_GLOB,
               subjects=None, sessions=None, suffixes=("T1w",), filters=None, with_map: bool = True) -> tuple[list[inputs.Item], bool]:
    input_root, output_root = Path(input_root), Path(output_root)
    bids = inputs.is_bids(input_root) if layout == "auto" else layout == "bids"
    inputs.check_roots(input_root, output_root, bids)
    if bids:
        items = inputs.bids_items(input_root, output_root, task, subjects=subjects, sessions=sessions, suffixes=suffixes, filters=filters, with_map=with_map)
    else:
        items = inputs.folder_items(input_root, output_root, task, pattern, with_map=with_map)
    if not items:
        what = f"suffix {' '.join(suffixes or [])}" if bids else f"files matching {pattern}"
        raise InputError(f"no volumes in {input_root} ({what})")
    return items, bids


def run_cohort(
    task: str,
    input_root,
    output_root,
    method: str,
    *,
    experts: int | None = None,
    options: dict[str, Any] | None = None,
    layout: str = "auto",
    pattern: str = inputs.DEFAULT_GLOB,
    subjects=None,
    sessions=None,
    suffixes=("T1w",),
    filters: dict | None = None,
    with_map: bool = True,
    device: str = "auto",
    overwrite: bool = False,
    client=None,
    workers: int | None = None,
    torch_threads: int | None = None,
    scheduler: str | None = None,
    jobqueue: str | None = None,
    jobqueue_options: dict | None = None,
    jobs: int = 1,
    worker_retries: int = 2,
    memory_per_worker: str | None = None,
    show_progress: bool = True,
    echo: Callable[[str], None] = print,
) -> list[dict]:
    """Run `method` over every volume of a folder or BIDS dataset; write the results, the BIDS
    derivative files and OUTPUT/batch-report.tsv/.html; return one record per volume. `client`: an
    existing distributed.Client; otherwise one is made from the cluster arguments (engine.dask_client)."""
    from ..methods.registry import get_method

    input_root, output_root = Path(input_root), Path(output_root)
    reason = get_method(method, task).availability()
    if reason:
        raise MethodUnavailable(f"{method}: {reason}")
    identity = run_identity(task, method, experts, options)
    items, bids = find_items(task, input_root, output_root, layout, pattern=pattern, subjects=subjects, sessions=sessions,
                             suffixes=suffixes, filters=filters, with_map=with_map)
    output_root.mkdir(parents=True, exist_ok=True)
    if bids:
        dataset.write_dataset_description(output_root, input_root, identity, weights_files(method, task), overwrite)
    # One torch thread per worker: volumes run side by side, one per core, rather than one volume on
    # all cores (which scales worse, and on shared cores measured slower: README, Cohorts).
    threads = torch_threads or 1
    spec = RunSpec(
        identity=identity,
        device=device,
        torch_threads=threads,
        write_expert_map=with_map,
        report_dir=output_root / report.REPORT_DIR,
        bids=bids,
        sources_prefix="bids:raw:" if bids else str(input_root.resolve()) + "/",
    )
    echo(f"{len(items)} volumes from {input_root} ({'BIDS' if bids else 'folder'}) -> {output_root}; {method}, experts {identity['experts']}")
    if client is not None:
        records = engine.run_batch(client, items, spec, overwrite=overwrite, show_progress=show_progress)
    else:
        with engine.dask_client(workers=workers, torch_threads=threads, scheduler=scheduler, jobqueue=jobqueue,
                                jobqueue_options=jobqueue_options, jobs=jobs, worker_retries=worker_retries,
                                memory_per_worker=memory_per_worker, echo=echo) as made:
            records = engine.run_batch(made, items, spec, overwrite=overwrite, show_progress=show_progress)
    report.write_tsv(records, output_root / "batch-report.tsv")
    report.write_html(records, output_root / "batch-report.html", f"moemri batch {task} {method}: {input_root}")
    return records
