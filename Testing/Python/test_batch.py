"""moemri batch on a small real cohort (64^3 crops of the fetched heads and noisy copies, one
corrupt file): the same results as the one-file command, BIDS derivative naming, resume after a
killed run, a worker killed mid-run, and bad files that fail alone."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from batch_cohort import build_bids, crop, tree_state
from moemri.batch import engine
from moemri.batch.cohort import run_cohort
from moemri.batch.dataset import unmatched_files
from moemri.cli.main import main
from moemri.io import read_volume, write_volume

METHOD = ["--method", "smoe-patch", "--experts", "1"]
GOOD = ["sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz"]
CORRUPT = "sub-03/anat/sub-03_T1w.nii.gz"
REPO = Path(__file__).resolve().parents[2]


def derivative(out: Path, key: str, desc: str = "denoised") -> Path:
    folder, name = key.rsplit("/", 1)
    return out / folder / name.replace("_T1w.nii.gz", f"_desc-{desc}_T1w.nii.gz")


def expert_map(out: Path, key: str) -> Path:
    folder, name = key.rsplit("/", 1)
    return out / folder / name.replace("_T1w.nii.gz", "_desc-denoisedT1wExperts_dseg.nii.gz")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, fetched):
    root = tmp_path_factory.mktemp("cohort") / "ds"
    build_bids(root, fetched)
    return root


@pytest.fixture(scope="module")
def client():
    with engine.dask_client(workers=2, torch_threads=1, echo=lambda s: None) as c:
        yield c


@pytest.fixture(scope="module")
def first_run(cohort, tmp_path_factory):
    """The CLI on its default local cluster of two workers, and the one-file command per volume."""
    base = tmp_path_factory.mktemp("run")
    before = tree_state(cohort)
    out = base / "derivatives" / "moemri"
    code = main(["batch", "denoise", str(cohort), str(out), *METHOD, "--workers", "2", "--no-progress"])
    # The one-file command in its own processes (as a shell loop would run it; side by side to save time).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    singles = {key: (base / "single" / key, base / "single" / key.replace(".nii.gz", "_experts.nii.gz")) for key in GOOD}
    runs = [subprocess.Popen([sys.executable, "-m", "moemri.cli.main", "denoise", str(cohort / key), str(image), *METHOD,
                              "--expert-map", str(labels)], env=env, stdout=subprocess.DEVNULL) for key, (image, labels) in singles.items()]
    assert [r.wait(timeout=300) for r in runs] == [0] * len(runs)
    reference = {key: (read_volume(image), read_volume(labels, allow_label_map=True, keep_dtype=True)) for key, (image, labels) in singles.items()}
    return {"out": out, "code": code, "before": before, "reference": reference}


def test_two_workers_give_the_one_file_commands_results(first_run):
    out = first_run["out"]
    for key, (image, labels) in first_run["reference"].items():
        got = read_volume(derivative(out, key))
        assert got.same_geometry(image)
        np.testing.assert_allclose(got.array, image.array, rtol=1e-5, atol=1e-4 * float(image.array.max()))
        got_labels = read_volume(expert_map(out, key), allow_label_map=True, keep_dtype=True)
        np.testing.assert_array_equal(got_labels.array, labels.array)


def test_the_corrupt_file_fails_alone_with_its_reason(first_run, cohort):
    assert first_run["code"] == 1  # some volume failed
    rows = (first_run["out"] / "batch-report.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    table = {r.split("\t")[0]: dict(zip(header, r.split("\t"))) for r in rows[1:]}
    assert set(table) == set(GOOD) | {CORRUPT}
    assert all(table[k]["status"] == "done" and float(table[k]["seconds"]) > 0 and table[k]["noise_level_percent"] for k in GOOD)
    assert table[CORRUPT]["status"] == "failed" and "damaged" in table[CORRUPT]["reason"]
    assert not derivative(first_run["out"], CORRUPT).exists()
    page = (first_run["out"] / "batch-report.html").read_text()
    assert page.count("<img") == 3 * len(GOOD) and "damaged" in page
    assert tree_state(cohort) == first_run["before"]  # the input tree is never written to


def test_the_derivative_follows_the_bids_derivatives_conventions(first_run, cohort):
    from bids import BIDSLayout

    out = first_run["out"]
    assert unmatched_files(out) == []  # every name is one the BIDS schema's derivative rules allow
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    generated = description["GeneratedBy"][0]
    assert generated["Name"] == "MoE-MRI" and generated["Method"] == "smoe-patch" and generated["Experts"] == 1
    assert len(generated["WeightsSHA256"]) == 64 and "backbone.pt" in generated["WeightsFiles"]
    layout = BIDSLayout(str(cohort), derivatives=str(out), validate=False)
    found = layout.get(scope="derivatives", desc="denoised", suffix="T1w", extension=".nii.gz")
    assert sorted((f.entities["subject"], f.entities.get("session")) for f in found) == [("01", "1"), ("01", "2"), ("02", None)]
    sidecar = json.loads(derivative(out, GOOD[2]).with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Sources"] == ["bids:raw:" + GOOD[2]] and sidecar["MoEMRI"]["weights_sha256"] == generated["WeightsSHA256"]
    lut = expert_map(out, GOOD[2]).with_name(expert_map(out, GOOD[2]).name.replace(".nii.gz", ".tsv")).read_text().splitlines()
    assert lut[0] == "index\tname\tcolor" and lut[1].startswith("1\t")
    assert expert_map(out, GOOD[2]).with_name(expert_map(out, GOOD[2]).name.replace(".nii.gz", ".ctbl")).is_file()


def test_a_killed_run_resumes_and_redoes_only_the_missing_volumes(cohort, first_run, client, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "moemri.cli.main", "batch", "denoise", str(cohort), str(out), *METHOD,
               "--workers", "1", "--threads-per-worker", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sidecars = [derivative(out, k).with_suffix("").with_suffix(".json") for k in GOOD]
    deadline = time.monotonic() + 120
    while not any(s.exists() for s in sidecars) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the CLI, its scheduler and its worker: a power cut
    run.wait()
    finished = {k for k, s in zip(GOOD, sidecars) if s.exists()}
    assert 1 <= len(finished) < len(GOOD), "the kill should land mid-run"
    for path in out.rglob("*.nii.gz"):  # whatever has a final name is whole
        read_volume(path, allow_label_map=True)
    stamps = {k: derivative(out, k).stat().st_mtime_ns for k in finished}

    records = {r["key"]: r for r in run_cohort("denoise", cohort, out, "smoe-patch", experts=1, client=client, show_progress=False, echo=lambda s: None)}
    assert {k for k, r in records.items() if r["status"] == "skipped"} == finished
    assert {k for k, r in records.items() if r["status"] == "done"} == set(GOOD) - finished
    assert records[CORRUPT]["status"] == "failed"
    assert all(derivative(out, k).stat().st_mtime_ns == stamps[k] for k in finished)
    assert not [p for p in out.rglob(".part-*")], "leftovers of the killed write are cleaned up"
    for key, (image, _) in first_run["reference"].items():
        np.testing.assert_allclose(read_volume(derivative(out, key)).array, image.array, rtol=1e-5, atol=1e-4 * float(image.array.max()))

    # Other settings: refused as a whole for a BIDS derivative (--overwrite replaces it).
    with pytest.raises(Exception, match="other settings"):
        run_cohort("denoise", cohort, out, "smoe-patch", experts=4, client=client, show_progress=False, echo=lambda s: None)


def test_a_worker_killed_mid_run_loses_nothing(cohort, first_run, client, tmp_path):
    out = tmp_path / "out"
    pids = client.run(os.getpid)
    result = {}
    thread = threading.Thread(target=lambda: result.update(records=run_cohort(
        "denoise", cohort, out, "smoe-patch", experts=1, client=client, show_progress=False, echo=lambda s: None)))
    thread.start()
    # Kill a worker while the scheduler still counts a volume as processing on it. A fixed wait
    # before the kill is a race: a small volume can finish inside it, and then the kill only
    # loses results Dask recomputes without counting a death.
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        busy = [w for w, keys in client.processing().items() if keys and w in pids]
        if busy:
            time.sleep(0.1)  # into the volume, not past it
            if client.processing().get(busy[0]):
                victim = busy[0]
                os.kill(pids[victim], signal.SIGKILL)
        time.sleep(0.02)
    assert victim is not None, "no worker was seen processing a volume"
    thread.join(timeout=180)
    records = {r["key"]: r for r in result["records"]}
    assert all(records[k]["status"] == "done" for k in GOOD), records
    assert records[CORRUPT]["status"] == "failed"
    assert sum(r.get("worker_deaths", 0) for r in records.values()) >= 1
    assert any("retried by Dask" in r.get("reason", "") for r in records.values())
    for key, (image, _) in first_run["reference"].items():
        np.testing.assert_allclose(read_volume(derivative(out, key)).array, image.array, rtol=1e-5, atol=1e-4 * float(image.array.max()))


def test_a_plain_folder_is_mirrored_and_bad_files_fail_alone(tmp_path, fetched, client):
    import SimpleITK as sitk

    head = crop(read_volume(fetched("robex-atlas")), 48)
    src = tmp_path / "scans"
    write_volume(head, src / "site-a" / "p1.nrrd")
    write_volume(head, src / "site-a" / "p3.nhdr")  # a detached header: its voxel file must travel with it
    write_volume(head.with_array(head.array[::-1].copy()), src / "site-b" / "p2.nii.gz")
    nan = head.array.copy()
    nan[10, 10, 10] = np.nan
    write_volume(head.with_array(nan), src / "site-b" / "nan.nii.gz")
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(head.array)] * 2), str(src / "four_d.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(np.repeat(head.array[..., None], 3, -1).astype(np.uint8), isVector=True), str(src / "rgb.nrrd"))
    out = tmp_path / "clean"
    records = {r["key"]: r for r in run_cohort(
        "denoise", src, out, "curvature-diffusion", options={"iterations": 2}, scheduler=client.scheduler.address,
        show_progress=False, echo=lambda s: None)}
    assert {k for k, r in records.items() if r["status"] == "done"} == {"site-a/p1.nrrd", "site-a/p3.nhdr", "site-b/p2.nii.gz"}
    assert "NaN" in records["site-b/nan.nii.gz"]["reason"]
    assert "4-D" in records["four_d.nii.gz"]["reason"] and "RGB" in records["rgb.nrrd"]["reason"]
    assert (out / "site-a" / "p1.nrrd").is_file() and (out / "site-a" / "p1.json").is_file()
    np.testing.assert_allclose(read_volume(out / "site-a" / "p3.nhdr").array, read_volume(out / "site-a" / "p1.nrrd").array)
    assert not (out / "dataset_description.json").exists()


def _page_faults_of_large_arrays(fix: bool) -> tuple[int, bool]:
    import resource

    from moemri.batch.worker import heap_for_large_arrays

    applied = heap_for_large_arrays() if fix else False
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        a = np.ones(2_000_000, np.float32)  # 8 MB, over glibc's fixed 128 KiB mmap threshold
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, applied


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds")
def test_a_dask_worker_reuses_its_heap_for_large_arrays():
    # Dask's MALLOC_TRIM_THRESHOLD_ makes every large array a fresh mmap (1.8x slower SMoE in a
    # worker). A fresh worker: the module's workers have run volumes, which apply the fix.
    with engine.dask_client(workers=1, torch_threads=1, echo=lambda s: None) as fresh:
        faults_default, _ = fresh.submit(_page_faults_of_large_arrays, False, pure=False).result()
        faults_fixed, applied = fresh.submit(_page_faults_of_large_arrays, True, pure=False).result()
    assert applied
    assert faults_default > 5000 and faults_fixed < faults_default / 5, (faults_default, faults_fixed)


def test_a_jobqueue_cluster_gets_one_torch_thread_per_core_it_asks_for():
    pytest.importorskip("dask_jobqueue")
    cluster = engine._jobqueue_cluster("slurm", {"queue": "short", "walltime": "00:30:00", "scheduler_options": {"dashboard_address": ":0"}}, 1, {"OMP_NUM_THREADS": "1"})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p short" in script and "export OMP_NUM_THREADS=1" in script and "--nthreads 1" in script


def test_input_inside_output_and_output_inside_input_are_refused(cohort, tmp_path):
    assert main(["batch", "denoise", str(cohort), str(cohort / "sub-01"), *METHOD]) == 65
    assert main(["batch", "denoise", str(cohort), str(cohort), *METHOD]) == 65


def test_bids_selection_by_subject_session_and_short_entity_names(cohort, tmp_path):
    from moemri.batch.cohort import find_items

    def keys(**query):
        return [i.key for i in find_items("denoise", cohort, tmp_path / "o", **query)[0]]

    assert keys(subjects=["02"]) == [GOOD[2]]
    assert keys(filters={"ses": "2"}) == keys(sessions=["2"]) == [GOOD[1]]
    with pytest.raises(Exception, match="not a recognized entity"):
        keys(filters={"bogus": "x"})
    with pytest.raises(Exception, match="no volumes"):
        keys(suffixes=["FLAIR"])


def test_a_volume_whose_worker_runs_out_of_memory_is_retried_then_reported(cohort, tmp_path):
    # 400 MiB is less than a worker needs once torch is loaded: Dask's nanny stops it every time.
    records = run_cohort("denoise", cohort, tmp_path / "o", "smoe-patch", experts=1, subjects=["02"], workers=1,
                         memory_per_worker="400MiB", worker_retries=1, show_progress=False, echo=lambda s: None)
    assert [r["status"] for r in records] == ["failed"]
    assert records[0]["worker_deaths"] == 2 and "out of memory" in records[0]["reason"]


def test_batch_help_has_examples_for_a_workstation_and_a_cluster(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["batch", "--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and "examples:" in text and "moemri batch denoise" in text and "--jobqueue slurm" in text
