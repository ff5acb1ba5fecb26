"""Cohort batch extraction: resumable runs on a real LocalCluster, killed and resumed, and bad cohort files.

The cohort is built from the real cases in ``../shared/data``: the pyradiomics cases brain1, brain2,
breast1 and prostate_phantom (whose label map has 4 labels: 1, 7, 8, 9) and the four sarcoma
patients' CT and PET (``channel`` CT / PET), 12 cases and 16 segments. brain1 gets a two-label
mask built from its real one: tumour voxels in the upper half of the slices relabelled 2
(``test_cli.two_label_mask_file``). Settings are fast on purpose: first order + GLCM, 16 bins.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk

from RadiomicsLabLib.batch import CaseOutput, CaseTask, cohort_status, run_batch, status_counts
from RadiomicsLabLib.cohort import read_cohort
from RadiomicsLabLib.errors import RadiomicsLabError, RadiomicsLabWarning
from RadiomicsLabLib.extraction import extract
from RadiomicsLabLib.results import format_value

from conftest import CLI, read_csv, run_cli
from test_cli import assert_user_error, two_label_mask_file

FAST = "featureClass:\n  firstorder: []\n  glcm: []\nsetting:\n  binCount: 16\n"
SEGMENTS = 2 + 1 + 1 + 4 + 8  # brain1 (two labels), brain2, breast1, prostate_phantom (4 labels), 4 x CT + 4 x PET


@pytest.fixture(scope="module")
def cohort_files(data, tmp_path_factory):
    """(cohort.csv, fast.yaml) in a folder of their own; image paths relative to the cohort file."""
    folder = tmp_path_factory.mktemp("cohort")
    two = two_label_mask_file(data / "pyradiomics_cases" / "brain1_label.nrrd", folder)
    cases = Path(os.path.relpath(data / "pyradiomics_cases", folder))
    sts = Path(os.path.relpath(data / "sts", folder))
    rows = [("brain1", cases / "brain1_image.nrrd", two.name, "")]
    for i in range(1, 5):
        rows += [(f"STS_00{i}", sts / f"STS_00{i}" / f"{m}_image.nii.gz", sts / f"STS_00{i}" / f"{m}_mask.nii.gz", m)
                 for m in ("CT", "PET")]
        if i < 4:
            name = ("brain2", "breast1", "prostate_phantom")[i - 1]
            rows.append((name, cases / f"{name}_image.nrrd", cases / f"{name}_label.nrrd", ""))
    write_cohort(folder / "cohort.csv", ["id", "image", "mask", "channel"], rows)
    (folder / "fast.yaml").write_text(FAST)
    return folder / "cohort.csv", folder / "fast.yaml"


def write_cohort(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def finished_cases(out) -> dict:
    """File name -> bytes of every case result renamed into place (temporary files are hidden ``.*.tmp``)."""
    return {p.name: p.read_bytes() for p in (Path(out) / "cases").glob("*.json")}


def cli_stopped_after(cohort, params, out, cases, how, workers):
    """Run ``radiomicslab batch`` as a subprocess; once ``cases`` results are on disk send ``how``:
    SIGKILL to the process, or SIGINT to its process group (a terminal's Ctrl-C)."""
    return command_stopped_after(["batch", cohort, "-o", out, "--params", params, "--workers", workers],
                                 Path(out) / "cases", cases, how)


def _ctrl_c_as_in_a_terminal() -> None:
    """In the CLI's process before it starts: SIGINT at its default, as in a terminal's foreground command, also where
    this test session itself was started with SIGINT ignored (``pytest &`` in a shell without job control: the ignore
    is inherited, and Python keeps an inherited ignore, so the CLI would never see the Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def command_stopped_after(args, cases_dir, cases, how=signal.SIGKILL):
    """Run ``radiomicslab ARGS`` as a subprocess; once ``cases`` case files (``*.json``) are in ``cases_dir``
    send ``how``: SIGKILL to the process, or SIGINT to its process group (a terminal's Ctrl-C). Returns
    (exit status, stderr) once the process and its worker processes are gone."""
    process = subprocess.Popen([str(CLI), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=_ctrl_c_as_in_a_terminal)
    children = []
    try:
        deadline = time.monotonic() + 120
        while not Path(cases_dir).is_dir() or len(list(Path(cases_dir).glob("*.json"))) < cases:
            assert process.poll() is None, f"the run ended before it could be stopped: {process.communicate()}"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        children = psutil.Process(process.pid).children(recursive=True)
        if how == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)
        else:
            os.kill(process.pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
        # Worker processes end with their parent: nothing is left computing or writing.
        _, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"worker processes outlived the killed run: {alive}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        for child in children:
            if child.is_running():
                child.kill()
    return process.returncode, stderr


def test_killed_runs_resume_to_the_clean_single_process_table(cohort_files, data, tmp_path):
    cohort, params = cohort_files
    clean = run_batch(cohort, tmp_path / "clean", settings=params, workers=0)
    assert (clean.total, clean.computed, clean.failed) == (12, 12, 0)
    out = tmp_path / "run"

    # 1. kill -9 of the whole process (LocalCluster, 2 worker processes) after 3 cases.
    code, stderr = cli_stopped_after(cohort, params, out, 3, signal.SIGKILL, workers=2)
    assert code == -signal.SIGKILL, stderr
    first = finished_cases(out)
    assert 3 <= len(first) < 12 and not (out / "features.csv").exists()
    assert all(json.loads(text)["status"] == "done" for text in first.values())

    # 2. Ctrl-C of the resumed run (one worker): exit 130, what finished is kept, nothing recomputed.
    code, stderr = cli_stopped_after(cohort, params, out, len(first) + 2, signal.SIGINT, workers=1)
    assert code == 130 and "interrupted" in stderr and "run the same command again to resume" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    second = finished_cases(out)
    assert len(first) + 2 <= len(second) <= 9
    assert all(second[name] == text for name, text in first.items())  # kept byte for byte, not redone

    # 3. Resume on a real LocalCluster and kill -9 a worker process while it runs a case.
    client_box, pids, killed = [], {}, []

    def on_client(client):
        client_box.append(client)
        pids.update(client.run(os.getpid))
        assert len(pids) == 2 and all(pid != os.getpid() for pid in pids.values())  # processes, not threads
        listening = {(p.pid, c.laddr.ip) for p in [psutil.Process(), *map(psutil.Process, pids.values())]
                     for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN}
        assert listening and {ip for _, ip in listening} == {"127.0.0.1"}, listening  # loopback only

    def progress(done, total, message):
        if done >= 1 and not killed:  # at the first result that leaves a worker running a case
            busy = {address: keys for address, keys in client_box[0].processing().items() if keys}
            if busy:
                address = next(iter(busy))
                os.kill(pids[address], signal.SIGKILL)
                killed.append(busy[address])
        return True

    resumed = run_batch(cohort, out, settings=params, workers=2, on_client=on_client, progress=progress)
    assert killed and killed[0], "no worker was holding a case when it was killed"
    assert (resumed.skipped, resumed.computed, resumed.failed) == (len(second), 12 - len(second), 0)
    third = finished_cases(out)
    assert len(third) == 12 and all(third[name] == text for name, text in second.items())

    # 4. A rerun finds every case done and computes nothing.
    again = run_batch(cohort, out, settings=params, workers=2)
    assert (again.skipped, again.computed) == (12, 0) and "cluster_start" not in again.phases

    # The final table equals the clean single-process run exactly: same bytes, no case lost or duplicated.
    assert (out / "features.csv").read_bytes() == (tmp_path / "clean" / "features.csv").read_bytes()
    assert pq.read_table(out / "features.parquet").equals(pq.read_table(tmp_path / "clean" / "features.parquet"))
    rows = read_csv(out / "features.csv")
    keys = [(r["id"], r["channel"], r["segment"]) for r in rows]
    assert len(keys) == len(set(keys)) == SEGMENTS
    assert list(rows[0])[:3] == ["id", "channel", "segment"] and len(rows[0]) == 3 + 18 + 24
    assert [(r["id"], r["segment"]) for r in rows[:2]] == [("brain1", "Label_1"), ("brain1", "Label_2")]
    assert [r["segment"] for r in rows if r["id"] == "prostate_phantom"] == ["Label_1", "Label_7", "Label_8", "Label_9"]
    assert read_csv(out / "errors.csv") == []
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["run"]["done"] == 12 and set(provenance["cases"]) == {json.loads(t)["key"] for t in third.values()}

    # And the clean run equals plain extractions of the same cases (exact text of each double).
    for case in read_cohort(cohort).cases:
        if case.key in ("brain1", "STS_002__channel-PET", "prostate_phantom"):
            result = extract(sitk.ReadImage(str(case.image)), sitk.ReadImage(str(case.mask)), settings=str(params))
            ours = {r["segment"]: r for r in rows if r["id"] == case.id and r["channel"] == case.channel}
            assert list(ours) == result.segments()
            for value in result.values:
                assert ours[value.segment][value.feature] == format_value(value.value), (case.key, value.feature)


# Failures, reruns and the status API ----------------------------------------------------------
def one_voxel_mask(data, folder):
    """breast1's mask reduced to its first tumour voxel (pyradiomics refuses a one-voxel ROI)."""
    mask = sitk.ReadImage(str(data / "pyradiomics_cases" / "breast1_label.nrrd"))
    array = sitk.GetArrayFromImage(mask)
    first = tuple(np.argwhere(array == 1)[0])
    array[:] = 0
    array[first] = 1
    tiny = sitk.GetImageFromArray(array)
    tiny.CopyInformation(mask)
    sitk.WriteImage(tiny, str(folder / "tiny.nrrd"))
    return folder / "tiny.nrrd"


def test_failed_case_is_recorded_skipped_then_retried_and_changes_are_redone(data, tmp_path):
    cases = data / "pyradiomics_cases"
    tiny = one_voxel_mask(data, tmp_path)
    cohort = write_cohort(tmp_path / "cohort.csv", ["id", "image", "mask"], [
        ("breast1", cases / "breast1_image.nrrd", cases / "breast1_label.nrrd"),
        ("tiny", cases / "breast1_image.nrrd", tiny.name),
        ("brain2", cases / "brain2_image.nrrd", cases / "brain2_label.nrrd")])
    params = tmp_path / "fast.yaml"
    params.write_text(FAST)
    out = tmp_path / "out"
    assert [s.status for s in cohort_status(out, cohort)] == ["pending"] * 3

    first = run_batch(cohort, out, settings=params, workers=0)
    assert (first.computed, first.failed) == (3, 1)
    errors = read_csv(out / "errors.csv")
    assert [(e["id"], e["where"], e["stage"]) for e in errors] == [("tiny", "row 3", "extract")]
    assert "pyradiomics could not process segment 'Label_1'" in errors[0]["error"]
    assert [r["id"] for r in read_csv(out / "features.csv")] == ["breast1", "brain2"]
    statuses = cohort_status(out, cohort)
    assert [(s.key, s.status, s.attempts) for s in statuses] == [("breast1", "done", 1), ("tiny", "failed", 1), ("brain2", "done", 1)]

    # A rerun skips the failed case; --retry-failed runs it again (and it fails again: attempt 2).
    assert run_batch(cohort, out, settings=params, workers=0).computed == 0
    retried = run_batch(cohort, out, settings=params, workers=0, retry_failed=True)
    assert (retried.computed, retried.failed) == (1, 1)
    assert [s.attempts for s in cohort_status(out, cohort) if s.key == "tiny"] == [2]

    # The mask is fixed (replaced by breast1's real mask): only that case is redone, and it now
    # equals breast1 exactly (same image, same mask).
    shutil.copy(cases / "breast1_label.nrrd", tiny)
    assert [s.status for s in cohort_status(out, read_cohort(cohort))] == ["done", "pending", "done"]
    fixed = run_batch(cohort, out, settings=params, workers=0)
    assert (fixed.computed, fixed.failed) == (1, 0) and read_csv(out / "errors.csv") == []
    rows = {r["id"]: r for r in read_csv(out / "features.csv")}
    assert {k: v for k, v in rows["tiny"].items() if k != "id"} == {k: v for k, v in rows["breast1"].items() if k != "id"}

    # Other settings invalidate every case (hash of inputs + settings).
    params.write_text(FAST.replace("binCount: 16", "binCount: 8"))
    stale = cohort_status(out, cohort, None)  # the latest run's settings: still the 16 bins, all done
    assert status_counts(stale)["done"] == 3
    assert run_batch(cohort, out, settings=params, workers=0).computed == 3


def voxel_statistics(case, params):
    """A second workflow on the batch layer: voxel count and mean intensity of each label (numpy)."""
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(case.image))).astype(np.float64)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(case.mask)))
    rows = [{"segment": f"Label_{label}", "voxels": float(np.count_nonzero(mask == label)),
             "mean": float(image[mask == label].mean())} for label in case.labels or params["labels"]]
    return CaseOutput(rows, {"what": "voxel statistics"})


def test_other_workflows_reuse_the_batch_layer(data, tmp_path):
    """Voxel count and mean of brain1, brain2, breast1 through a custom task equal pyradiomics' baselines."""
    baseline = {row[0]: row[1:] for row in csv.reader(open(data / "pyradiomics_cases" / "baseline" / "baseline_firstorder.csv"))}
    columns = baseline["featureName"]
    cases = data / "pyradiomics_cases"
    cohort = write_cohort(tmp_path / "cohort.csv", ["id", "image", "mask", "label"],
                          [(n, cases / f"{n}_image.nrrd", cases / f"{n}_label.nrrd", "1") for n in ("brain1", "brain2", "breast1")])
    task = CaseTask("voxel-statistics", voxel_statistics, {"labels": [1]}, {"labels": [1]})
    summary = run_batch(cohort, tmp_path / "out", task, workers=0)
    assert (summary.computed, summary.failed) == (3, 0)
    for row in read_csv(tmp_path / "out" / "features.csv"):
        column = columns.index(row["id"])
        assert float(row["voxels"]) == float(baseline["diagnostics_Mask-original_VoxelNum"][column])
        assert float(row["mean"]) == pytest.approx(float(baseline["original_firstorder_Mean"][column]), rel=1e-12)
    assert [s.status for s in cohort_status(tmp_path / "out", cohort, task)] == ["done"] * 3
    # Results of one task never count as done for another.
    assert [s.status for s in cohort_status(tmp_path / "out", cohort, CaseTask("other", voxel_statistics))] == ["pending"] * 3


def crash_or_count(case, crashing_ids):
    """Kills its own worker process (as a segfault or the out-of-memory killer would) for ``crashing_ids``."""
    if case.id in crashing_ids:
        os._exit(70)
    return voxel_statistics(case, {"labels": [1]})


def test_a_case_that_kills_its_worker_is_recorded_and_the_run_goes_on(data, tmp_path):
    import dask
    import distributed  # noqa: F401 - its defaults in Dask's config first: a config.set of a "distributed." key made
    # before them inserts the whole "distributed" section, and its exit removes every default the import added inside
    # (KeyError: 'comm' in every later cluster of this test session)

    cases = data / "pyradiomics_cases"
    cohort = write_cohort(tmp_path / "cohort.csv", ["id", "image", "mask"], [
        (n, cases / f"{n}_image.nrrd", cases / f"{n}_label.nrrd") for n in ("breast1", "brain2")])
    task = CaseTask("crash-test", crash_or_count, ["brain2"], ["brain2"])
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # give up at the first death (default: 3 retries)
        summary = run_batch(cohort, tmp_path / "out", task, workers=1, memory_limit="2GiB")
    assert (summary.computed, summary.failed) == (2, 1)
    errors = read_csv(tmp_path / "out" / "errors.csv")
    assert [e["id"] for e in errors] == ["brain2"] and "worker process running this case died" in errors[0]["error"]
    assert [r["id"] for r in read_csv(tmp_path / "out" / "features.csv")] == ["breast1"]


def library_threads(case, params):
    """The thread counts SimpleITK, numba, the BLAS / OpenMP libraries and the engine's FFTs
    (:func:`~RadiomicsLabLib.limits.compute_threads`) use in the process running the case."""
    import numba
    from threadpoolctl import threadpool_info

    from RadiomicsLabLib.limits import compute_threads

    return CaseOutput([{"segment": "threads", "itk": float(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()),
                        "numba": float(numba.get_num_threads()), "fft": float(compute_threads()),
                        "blas": float(max([pool["num_threads"] for pool in threadpool_info()], default=1)),
                        "pid": float(os.getpid())}])


def test_local_workers_run_single_threaded_libraries(data, tmp_path, monkeypatch):
    """Parallelism comes from the workers: SimpleITK and numba run 1 thread in each worker process (so
    2 workers use 2 cores, not 2 x cores threads); a thread count the user set in the environment is kept. The
    caller's own environment is left as it was (Dask's nannies set their variables, thread counts among them, in the
    process that starts them, where Slicer's or a notebook's later processes would take them)."""
    cases = data / "pyradiomics_cases"
    cohort = write_cohort(tmp_path / "cohort.csv", ["id", "image", "mask"], [
        (n, cases / f"{n}_image.nrrd", cases / f"{n}_label.nrrd") for n in ("breast1", "brain2")])
    task = CaseTask("threads", library_threads)
    monkeypatch.delenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", raising=False)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
    environment = dict(os.environ)
    run_batch(cohort, tmp_path / "out", task, workers=2)
    rows = read_csv(tmp_path / "out" / "features.csv")
    assert [(float(row["itk"]), float(row["numba"]), float(row["fft"])) for row in rows] == [(1, 2, 1)] * 2
    assert dict(os.environ) == environment


def test_a_memory_limit_no_worker_fits_in_is_refused_before_the_run(data, tmp_path, monkeypatch):
    """A memory limit below what a worker needs (here 2 bytes: "2" meant 2 GiB) is refused at once; one no worker can
    run in (the check lowered for the test) ends the run with that said once the cluster has had no worker for a
    while, instead of a run that waits for ever after Dask restarted its workers and gave up."""
    from RadiomicsLabLib import batch

    cases = data / "pyradiomics_cases"
    cohort = write_cohort(tmp_path / "cohort.csv", ["id", "image", "mask"], [
        ("breast1", cases / "breast1_image.nrrd", cases / "breast1_label.nrrd")])
    with pytest.raises(RadiomicsLabError, match="memory limit '2' .* too small for a worker.*like 4GiB"):
        run_batch(cohort, tmp_path / "out", workers=1, memory_limit="2")
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(batch, "MIN_WORKER_MEMORY", 0)
    monkeypatch.setattr(batch, "LOCAL_WORKERLESS_TIMEOUT", 10.0)
    with pytest.raises(RadiomicsLabError, match="has had no worker for 10 s: each worker went over its memory limit "
                                                "'20MB'.*finished cases are kept"):
        run_batch(cohort, tmp_path / "out", workers=1, memory_limit="20MB")


def test_a_case_the_cluster_cancelled_is_not_recorded_as_failed():
    """A task the cluster cancelled (its scheduler restarted) has no error of its own: the run stops saying what
    happened and that the finished cases are kept, rather than recording the case as failed ("NoneType: None")."""
    from distributed import Client, LocalCluster

    from RadiomicsLabLib.batch import _lost_case_record

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        future = client.submit(time.sleep, 30)
        client.cancel(future)
        with pytest.raises(RadiomicsLabError, match="lost this run's tasks .* finished cases are kept"):
            _lost_case_record(future, "auto")


def test_an_existing_cluster_runs_the_cases_on_its_own_workers_single_threaded(data, tmp_path, monkeypatch):
    """``scheduler=``: the cases run on that cluster's workers (never on a local cluster started instead), and
    each of its workers, started with the libraries' default thread counts (all cores), runs them single-threaded;
    Dask's default MALLOC_TRIM_THRESHOLD_ in those workers is named in a warning (see batch.WORKER_MALLOC)."""
    import logging

    from distributed import Client, LocalCluster

    cases = data / "pyradiomics_cases"
    cohort = write_cohort(tmp_path / "cohort.csv", ["id", "image", "mask"], [
        (n, cases / f"{n}_image.nrrd", cases / f"{n}_label.nrrd") for n in ("breast1", "brain2", "brain1")])
    for name in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(1)
        pids = set(client.run(os.getpid).values())
        defaults = client.run(lambda: sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
        with pytest.warns(RadiomicsLabWarning, match="run with MALLOC_TRIM_THRESHOLD_=65536 .*start them with it unset"):
            summary = run_batch(cohort, tmp_path / "out", CaseTask("threads", library_threads),
                                scheduler=cluster.scheduler_address)
    assert summary.computed == 3 and len(pids) == 1
    assert list(defaults.values()) == [sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()]  # started with ITK's default
    rows = read_csv(tmp_path / "out" / "features.csv")
    assert {int(float(row["pid"])) for row in rows} == pids  # run on the existing cluster's worker
    assert [(float(row["itk"]), float(row["numba"]), float(row["blas"]), float(row["fft"])) for row in rows] == \
        [(1, 1, 1, 1)] * 3


@pytest.mark.parametrize("ours", [None, "131072"])
def test_local_workers_keep_glibc_malloc_thresholds(monkeypatch, ours):
    """The local cluster's worker processes start without Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` (which makes glibc
    map every array of 128 KiB or more anew and fault its pages in again: see ``batch.WORKER_MALLOC``), while a plain
    LocalCluster's workers get it; a value set in this environment is passed on. The workers run with
    ``batch.LOCAL_CLUSTER_CONFIG`` (no statistical profiler); Dask's configuration here is as before."""
    import dask
    from distributed import Client, LocalCluster

    from RadiomicsLabLib.batch import LOCAL_CLUSTER_CONFIG, dask_client

    if ours is None:
        monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    else:
        monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", ours)
    before = dask.config.get("distributed.nanny.pre-spawn-environ")
    with dask_client(workers=1) as client:
        seen = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        threads = client.run(os.environ.get, "OMP_NUM_THREADS")
        profiled = client.run(lambda dask_worker: dask_worker.periodic_callbacks.get("profile") is not None)
        config = client.run(lambda: {key: dask.config.get(key) for key in LOCAL_CLUSTER_CONFIG})
    assert list(seen.values()) == [ours] and list(threads.values()) == ["1"]
    # the worker runs without the statistical profiler, with the local cluster's settings
    assert list(profiled.values()) == [False] and list(config.values()) == [LOCAL_CLUSTER_CONFIG]
    assert dask.config.get("distributed.nanny.pre-spawn-environ") == before
    assert dask.config.get("distributed.worker.profile.enabled") is True   # Dask's default again
    if ours is None:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                          ) as cluster, Client(cluster, set_as_default=False) as client:
            assert list(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == ["65536"]
            assert list(client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks).values()) == [True]


def tumour_volumes(cases, params):
    """A per-patient workflow: the tumour volume (mL, voxel count x voxel volume) in each channel."""
    row = {"segment": "GTV"}
    for case in cases:
        mask = sitk.ReadImage(str(case.mask))
        row[f"{case.channel}_ml"] = np.count_nonzero(sitk.GetArrayViewFromImage(mask)) * np.prod(mask.GetSpacing()) / 1000
    return CaseOutput([row], {"channels": [case.channel for case in cases]})


def test_per_patient_tasks_get_every_row_of_a_patient(data, tmp_path):
    """The sarcoma folder (CT, MR T1, PET per patient) by patient: volumes equal SimpleITK's label statistics."""
    cohort = read_cohort(data / "sts")
    task = CaseTask("tumour-volumes", tumour_volumes, None, {"version": 1}, per_patient=True)
    summary = run_batch(cohort, tmp_path / "out", task, workers=0)
    assert (summary.total, summary.computed) == (4, 4)
    statuses = cohort_status(tmp_path / "out", cohort)  # the latest run's task, per patient
    assert [(s.key, s.where, s.status) for s in statuses] == [(f"STS_00{i}", f"folder 'STS_00{i}'", "done") for i in range(1, 5)]
    rows = read_csv(tmp_path / "out" / "features.csv")
    assert list(rows[0]) == ["id", "segment", "CT_ml", "MR_T1_ml", "PET_ml"]
    statistics = sitk.LabelShapeStatisticsImageFilter()
    for row in rows:
        for channel in ("CT", "MR_T1", "PET"):
            statistics.Execute(sitk.ReadImage(str(data / "sts" / row["id"] / f"{channel}_mask.nii.gz")))
            assert float(row[f"{channel}_ml"]) == pytest.approx(statistics.GetPhysicalSize(1) / 1000, rel=1e-12)


def test_folder_discovery(data):
    sts = read_cohort(data / "sts")
    assert sts.problems == [] and sts.key_columns == ("channel",)
    assert [c.key for c in sts.cases[:3]] == ["STS_001__channel-CT", "STS_001__channel-MR_T1", "STS_001__channel-PET"]
    assert len(sts.cases) == 12 and sts.cases[0].mask.name == "CT_mask.nii.gz"
    ct = read_cohort(data / "sts", channels=["CT"])
    assert [c.id for c in ct.cases] == ["STS_001", "STS_002", "STS_003", "STS_004"]
    flat = read_cohort(data / "pyradiomics_cases")
    assert [(c.id, c.image.name, c.mask.name) for c in flat.cases][:2] == [
        ("brain1", "brain1_image.nrrd", "brain1_label.nrrd"), ("brain2", "brain2_image.nrrd", "brain2_label.nrrd")]
    assert len(flat.cases) == 4 and flat.problems == []


def test_label_column_and_semicolon_separated_files(data, tmp_path):
    """``label`` may name several labels (``7;9``, or ``7+9`` where ``;`` separates the cells, as in
    European Excel's CSV, which is read the same as a comma-separated file)."""
    cases = data / "pyradiomics_cases"
    (tmp_path / "cohort.csv").write_text(f"id;image;mask;label\nprostate;{cases / 'prostate_phantom_image.nrrd'};"
                                         f"{cases / 'prostate_phantom_label.nrrd'};7;9\n".replace(";7;9", ";7+9"))
    cohort = read_cohort(tmp_path / "cohort.csv")
    assert cohort.problems == [] and cohort.cases[0].labels == (7, 9)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(cases / "prostate_phantom_label.nrrd")))
    assert cohort.cases[0].roi_voxels == np.count_nonzero((mask == 7) | (mask == 9)) > 0


def test_files_outside_a_data_folder_are_problems_and_are_not_read(data, tmp_path):
    """``inside`` (the web server's data folder): a row naming a file elsewhere, even through ``..``, is refused."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("brain1_image.nrrd", "brain1_label.nrrd"):
        shutil.copy(data / "pyradiomics_cases" / name, folder / name)
    secret = tmp_path / "secret.nrrd"                       # not an image: reading it would be another problem
    secret.write_text("not for the browser")
    (folder / "cohort.csv").write_text("id,image,mask\nok,brain1_image.nrrd,brain1_label.nrrd\n"
                                       "escape,../secret.nrrd,brain1_label.nrrd\n")
    cohort = read_cohort(folder / "cohort.csv", inside=folder)
    assert [c.id for c in cohort.cases] == ["ok"]
    assert [(p.where, p.case_id) for p in cohort.problems] == [("row 3", "escape")]
    assert "the image '../secret.nrrd' is outside the data folder" in cohort.problems[0].message
    assert [c.id for c in read_cohort(folder / "cohort.csv").cases] == ["ok"]   # without inside: unreadable image
    assert "is not an image RadiomicsLab can read" in read_cohort(folder / "cohort.csv").problems[0].message


# Bad input ------------------------------------------------------------------------------------
def test_every_problem_of_a_cohort_file_is_listed_with_its_row(data, tmp_path):
    cases = data / "pyradiomics_cases"
    truncated = tmp_path / "truncated.nrrd"
    truncated.write_bytes((cases / "brain2_image.nrrd").read_bytes()[:5000])
    rows = [("breast1", cases / "breast1_image.nrrd", cases / "breast1_label.nrrd", ""),       # row 2: fine
            ("lost", "nowhere/image.nrrd", cases / "brain1_label.nrrd", ""),                   # row 3
            ("corrupt", truncated.name, cases / "brain2_label.nrrd", ""),                      # row 4
            ("mismatch", cases / "brain1_image.nrrd", cases / "breast1_label.nrrd", ""),       # row 5
            ("breast1", cases / "breast1_image.nrrd", cases / "breast1_label.nrrd", ""),       # row 6
            ("nolabel", cases / "brain2_image.nrrd", cases / "brain2_label.nrrd", "7"),        # row 7
            ("", cases / "brain2_image.nrrd", cases / "brain2_label.nrrd", ""),                # row 8
            ("badlabel", cases / "brain2_image.nrrd", cases / "brain2_label.nrrd", "one")]     # row 9
    cohort = write_cohort(tmp_path / "cohort.csv", ["id", "image", "mask", "label"], rows)
    out = tmp_path / "out"
    done = run_cli("batch", cohort, "-o", out, "--workers", "0")
    assert_user_error(done, "has 7 problems", "--keep-going")
    expected = {"row 3 (id 'lost')": "no such file", "row 4 (id 'corrupt')": "not an image",
                "row 5 (id 'mismatch')": "different grids: size (image (256, 256, 25), mask (45, 120, 21))",
                "row 6 (id 'breast1')": "duplicate case: id 'breast1' is also on row 2",
                "row 7 (id 'nolabel')": "no voxels with label 7; labels present: 1",
                "row 8": "the id is empty", "row 9 (id 'badlabel')": "label 'one' is not a positive whole number"}
    listed = [line.strip() for line in done.stderr.splitlines() if line.startswith("  row")]
    assert len(listed) == 7, done.stderr
    for line, (where, fragment) in zip(listed, expected.items()):
        assert line.startswith(where + ":") and fragment in line, (line, where, fragment)
    assert not out.exists()  # nothing written before the cohort is valid
    # With workers, the cluster starts while the cohort is checked: the same report, and no worker process left.
    with pytest.raises(RadiomicsLabError, match="has 7 problems") as raised:
        run_batch(cohort, out, workers=2)
    assert [line.strip() for line in str(raised.value).splitlines()[1:]] == listed
    assert not out.exists() and not worker_processes()

    going = run_cli("batch", cohort, "-o", out, "--workers", "0", "--params", "pyradiomics-default", "--keep-going")
    assert going.returncode == 1 and "Traceback" not in going.stderr, going.stderr
    assert [r["id"] for r in read_csv(out / "features.csv")] == ["breast1"]
    errors = read_csv(out / "errors.csv")
    assert [(e["where"], e["stage"]) for e in errors] == [(w.split(" (")[0], "validation") for w in expected]
    assert all(fragment in e["error"] for e, fragment in zip(errors, expected.values()))


def test_missing_columns_bad_options_and_unreachable_scheduler(data, tmp_path):
    cases = data / "pyradiomics_cases"
    cohort = write_cohort(tmp_path / "cohort.csv", ["id", "img", "mask"], [("breast1", cases / "breast1_image.nrrd", cases / "breast1_label.nrrd")])
    done = run_cli("batch", cohort, "-o", tmp_path / "out")
    assert_user_error(done, "has 2 problems")
    assert "row 1: missing column image" in done.stderr and "row 1: unknown column 'img'; did you mean 'image'?" in done.stderr
    good = write_cohort(tmp_path / "good.csv", ["id", "image", "mask"], [("breast1", cases / "breast1_image.nrrd", cases / "breast1_label.nrrd")])
    with socket_bound() as port:  # a port nobody listens on
        assert_user_error(run_cli("batch", good, "-o", tmp_path / "out", "--scheduler", f"tcp://127.0.0.1:{port}"),
                          f"Cannot reach the Dask scheduler at 'tcp://127.0.0.1:{port}'", "leave out --scheduler")
    for options, message in [({"scheduler": "my-cluster"}, "Invalid scheduler address 'my-cluster'"),
                             ({"memory_limit": "lots"}, "Invalid memory limit 'lots'"),
                             ({"workers": -1}, "workers must be 0"),
                             ({"workers": 2, "scheduler": "tcp://127.0.0.1:8786"}, "not both")]:
        with pytest.raises(RadiomicsLabError, match=message):
            run_batch(good, tmp_path / "out", **options)
    with pytest.raises(RadiomicsLabError, match="no such file"):
        run_batch(tmp_path / "none.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # the library's callers too (desktop, web): no table replaces the cohort file, here one named as a table
    (tmp_path / "out").mkdir()
    named_as_table = tmp_path / "out" / "errors.csv"
    shutil.copy(good, named_as_table)
    with pytest.raises(RadiomicsLabError, match="it is the cohort this command reads"):
        run_batch(named_as_table, tmp_path / "out", workers=0)
    assert named_as_table.read_bytes() == good.read_bytes()


def worker_processes() -> list:
    """This process's children that are spawned worker processes (not multiprocessing's resource tracker)."""
    return [child for child in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(child.cmdline())]


class socket_bound:
    """A free TCP port on 127.0.0.1, held (bound, not listening) so connections to it are refused."""

    def __enter__(self):
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        return self.socket.getsockname()[1]

    def __exit__(self, *exc):
        self.socket.close()


# The MRML Logic a GUI uses --------------------------------------------------------------------
def test_cohort_logic_runs_in_background_and_shows_status_and_results_as_tables(data, scene, tmp_path):
    from RadiomicsLabLib.mrml.cohort import CohortLogic

    cases = data / "pyradiomics_cases"
    cohort_path = write_cohort(tmp_path / "cohort.csv", ["id", "image", "mask"], [
        ("breast1", cases / "breast1_image.nrrd", cases / "breast1_label.nrrd"),
        ("brain2", cases / "brain2_image.nrrd", cases / "brain2_label.nrrd"),
        ("missing", "missing.nrrd", cases / "brain2_label.nrrd")])
    (tmp_path / "fast.yaml").write_text(FAST)
    logic = CohortLogic(scene)
    cohort = logic.load_cohort(cohort_path)
    assert len(cohort.cases) == 2 and [p.where for p in cohort.problems] == ["row 4"]
    with pytest.raises(RadiomicsLabError, match="1 problem"):
        logic.start(cohort, tmp_path / "out", settings=tmp_path / "fast.yaml", workers=0)
    logic.start(cohort, tmp_path / "out", settings=tmp_path / "fast.yaml", workers=0, keep_going=True)
    table = logic.status_table(cohort, tmp_path / "out")  # polled while running, as a GUI timer would
    while logic.is_running():
        logic.status_table(cohort, tmp_path / "out", table)
        time.sleep(0.05)
    summary = logic.wait()
    assert (summary.computed, summary.invalid) == (2, 1) and logic.progress_state[:2] == (2, 2)
    logic.status_table(cohort, tmp_path / "out", table)
    assert table.IsA("vtkMRMLTableNode") and table.GetAttribute("RadiomicsLab.Kind") == "cohort-status"
    column = {table.GetColumnName(c): c for c in range(table.GetNumberOfColumns())}
    assert list(column) == ["id", "where", "status", "seconds", "error"]
    assert [(table.GetCellText(r, column["id"]), table.GetCellText(r, column["status"])) for r in range(3)] == [
        ("breast1", "done"), ("brain2", "done"), ("missing", "invalid")]
    assert "no such file" in table.GetCellText(2, column["error"])
    results = logic.results_table(cohort, tmp_path / "out")
    csv_rows = read_csv(tmp_path / "out" / "features.csv")
    assert results.GetNumberOfRows() == 2 and results.GetNumberOfColumns() == len(csv_rows[0])
    for r, row in enumerate(csv_rows):
        for c, (name, text) in enumerate(row.items()):
            assert results.GetColumnName(c) == name and results.GetCellText(r, c) == text
