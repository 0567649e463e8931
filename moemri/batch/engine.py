"""The Dask side: which cluster, submitting one task per volume, retries and progress.

Dask does the scheduling, the retries and the worker supervision: a worker process that dies
(killed, or stopped by its nanny for exceeding its memory limit) has its volume rescheduled on
another worker, up to `distributed.scheduler.allowed-failures` times, after which the future raises
KilledWorker and the volume is reported as failed. Nothing here reimplements that.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from typing import Any, Callable, Iterator

from ..errors import InputError, MethodUnavailable
from .identity import previous_state
from .inputs import Item
from .worker import RunSpec, process_volume

JOBQUEUE_CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster", "htcondor": "HTCondorCluster"}


@contextlib.contextmanager
def dask_client(
    workers: int | None = None,
    torch_threads: int | None = None,
    scheduler: str | None = None,
    jobqueue: str | None = None,
    jobqueue_options: dict[str, Any] | None = None,
    jobs: int = 1,
    worker_retries: int = 2,
    memory_per_worker: str | None = None,
    echo: Callable[[str], None] = print,
) -> Iterator[Any]:
    """A distributed.Client: on a running scheduler (`scheduler`), on workers started through the
    site's queue (`jobqueue`), or on a local cluster of `workers` processes (default one per core)."""
    import dask
    from distributed import Client, LocalCluster

    threads = torch_threads or 1
    thread_env = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    # Read by a scheduler when it starts: here, the local or jobqueue cluster's; a remote
    # scheduler keeps its own setting.
    with dask.config.set({"distributed.scheduler.allowed-failures": worker_retries}):
        if scheduler:
            client = Client(scheduler, timeout="20s")
            cluster = None
        elif jobqueue:
            cluster = _jobqueue_cluster(jobqueue, jobqueue_options or {}, threads, thread_env)
            cluster.scale(jobs=jobs)
            client = Client(cluster)
        else:
            n = workers or (os.cpu_count() or 1)
            dashboard = ":0"  # any free port: several batches (or test runs) may share a machine
            cluster = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=dashboard, env=thread_env,
                silence_logs=logging.ERROR, memory_limit=memory_per_worker or "auto",  # the nanny restarts a worker past it
            )
            client = Client(cluster)
    try:
        if scheduler:  # a running scheduler serves its dashboard whatever is installed here
            echo(f"Dask scheduler {scheduler}, dashboard {client.dashboard_link}")
        elif _has_bokeh() and client.dashboard_link:
            echo(f"Dask dashboard: {client.dashboard_link}")
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401  (Dask serves its dashboard only with bokeh)

        return True
    except ImportError:
        return False


def _jobqueue_cluster(kind: str, options: dict[str, Any], threads: int, thread_env: dict[str, str]):
    try:
        import dask_jobqueue
    except ImportError:
        raise MethodUnavailable(f"--jobqueue {kind} needs dask-jobqueue: pip install 'moemri[cluster]'") from None
    if kind not in JOBQUEUE_CLUSTERS:
        raise InputError(f"--jobqueue takes one of {', '.join(JOBQUEUE_CLUSTERS)}, got '{kind}'")
    settings = {"cores": threads, "processes": 1, "memory": "8GiB", **options}
    prologue = [f"export {k}={v}" for k, v in thread_env.items()]
    settings["job_script_prologue"] = list(settings.get("job_script_prologue", [])) + prologue
    return getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[kind])(**settings)


def plan(items: list[Item], identity: dict, overwrite: bool) -> tuple[list[Item], list[dict]]:
    """(volumes to run, records of those settled without running: skipped or in conflict)."""
    todo, settled = [], []
    for item in items:
        state = "missing" if overwrite else previous_state(item.image, item.sidecar, identity)
        if state == "same":
            settled.append({"key": item.key, "status": "skipped", "reason": "already made with these settings", **_previous_summary(item)})
        elif state == "different":
            settled.append(
                {"key": item.key, "status": "failed", "reason": f"{item.image.name} exists from a run with other settings; --overwrite replaces it"}
            )
        else:
            todo.append(item)
    return todo, settled


def _previous_summary(item: Item) -> dict:
    import json

    try:
        stored = json.loads(item.sidecar.read_text())["MoEMRI"]
    except (OSError, ValueError, KeyError):
        return {}
    return {**stored.get("summary", {}), "method_seconds": stored.get("metadata", {}).get("seconds")}


def _suspicious(keys, dask_scheduler=None) -> dict[str, int]:
    """On the scheduler: how many worker deaths each task has lived through."""
    return {k: dask_scheduler.tasks[k].suspicious for k in keys if k in dask_scheduler.tasks}


def run_volumes(client, items: list[Item], spec: RunSpec, show_progress: bool = True) -> list[dict]:
    """Submit one task per volume; return one record per volume, in the order of `items`."""
    from distributed import wait

    run_id = uuid.uuid4().hex[:8]
    by_key = {f"moemri-{run_id}-{i}": item for i, item in enumerate(items)}
    futures = {client.submit(process_volume, item, spec, key=key, pure=False): key for key, item in by_key.items()}
    records: dict[str, dict] = {}
    bar = _bar(len(items), show_progress)
    submitted = time.perf_counter()
    pending = set(futures)
    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
            except TimeoutError:  # nothing finished this second
                continue
            deaths = _deaths(client, [futures[f] for f in done])
            for future in done:
                key = futures[future]
                records[key] = _record(future, by_key[key], deaths.get(key, 0))
                records[key]["finished_s"] = round(time.perf_counter() - submitted, 2)
                bar.update(1)
                bar.set_postfix_str(f"{by_key[key].key}: {records[key]['status']}", refresh=True)
    except BaseException:
        client.cancel(list(pending))
        raise
    finally:
        bar.close()
    return [records[k] for k in by_key]


def _deaths(client, keys) -> dict[str, int]:
    try:
        return client.run_on_scheduler(_suspicious, keys)
    except Exception:  # a remote scheduler without moemri installed: counts unknown
        return {}


def _record(future, item: Item, deaths: int) -> dict:
    from distributed import KilledWorker

    if future.status == "finished":
        record = future.result()
    else:
        error = future.exception()
        reason = (
            f"its worker died {deaths} times while processing it (killed or out of memory); Dask gave up"
            if isinstance(error, KilledWorker)
            else f"{type(error).__name__}: {error}"
        )
        record = {"key": item.key, "status": "failed", "reason": reason}
    if deaths:
        record["worker_deaths"] = deaths
        if record["status"] == "done":
            record["reason"] = f"retried by Dask after {deaths} worker death(s)"
    return record


def _bar(total: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="volumes", unit="vol", file=sys.stderr, disable=not show, dynamic_ncols=True)


def run_batch(
    client,
    items: list[Item],
    spec: RunSpec,
    overwrite: bool = False,
    show_progress: bool = True,
) -> list[dict]:
    """Skip what is complete, run the rest, return one record per item in input order."""
    todo, settled = plan(items, spec.identity, overwrite)
    ran = run_volumes(client, todo, spec, show_progress) if todo else []
    by_key = {r["key"]: r for r in settled + ran}
    for item in items:
        if by_key[item.key]["status"] != "failed":
            by_key[item.key].setdefault("output", str(item.image))
    return [by_key[item.key] for item in items]
