"""Batch layer: speed-up of 2 workers over 1 on a 16-case cohort, and its per-case overhead over plain extraction.

Run on purpose: ``.venv/bin/python Testing/benchmarks/bench_batch.py [--repeats N] [--params PRESET]``.

The cohort is 16 real cases from ``../shared/data``: brain1, brain2, breast1, prostate_phantom
(4 labels) and the four sarcoma patients' CT, MR T1 and PET with their masks, discovered from the
folders by :func:`RadiomicsLabLib.cohort.read_cohort`. Settings: ``pyradiomics-default``.
Timed in one run, each a fresh output folder:

  plain     for each case: read image and mask, ``extraction.extract`` (the peer: no batch layer)
  batch 0   ``run_batch(workers=0)``: the same cases in this process through the batch layer
            (validation and hashing of the cohort, per-case JSON, features.csv/parquet, provenance)
  batch 1   ``run_batch(cohort.csv, workers=1)``: as ``radiomicslab batch``: a LocalCluster with one
            worker process, started while the cohort is read and checked, closed while the outputs are written
  batch 2   ``run_batch(cohort.csv, workers=2)``: the same with two worker processes
  cluster 1/2  ``run_batch(cohort.csv, scheduler=ADDRESS)`` on an existing Dask cluster of 1 and 2 workers
            (started before the timing, as ``--scheduler`` finds a cluster that is already up)
  pool 1/2  the peer without Dask or the batch layer: ``multiprocessing`` pools of 1 and 2 warm processes
            running the plain extraction, largest case first, single-threaded libraries as in the workers
            (what 2 processes give on this machine)
Per-case overhead = (batch 0 - plain) / 16. Speed-up = batch 1 / batch 2 (the whole run: the
local cluster's start included), cluster 1 / cluster 2, and on the compute phase alone; "busy" is
the share of the compute phase each worker spent inside cases (near 100 %: the layer keeps every
worker fed, and a speed-up below the bound means the cores themselves were not free). Target:
speed-up >= 1.8. The bound for 2 workers is ``max(sum / 2, longest case)`` of the plain per-case
times (cases are indivisible).
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def cohort_cases():
    """The 16-case cohort: the pyradiomics cases (flat folder) + the sarcoma patients (3 channels each)."""
    from RadiomicsLabLib.cohort import Cohort, read_cohort
    from RadiomicsLabLib.data import data_dir

    flat, sts = read_cohort(data_dir() / "pyradiomics_cases"), read_cohort(data_dir() / "sts")
    cohort = Cohort(data_dir(), flat.cases + sts.cases, flat.problems + sts.problems, sts.key_columns)
    return cohort.check()


def write_cohort_file(cohort, path: Path) -> Path:
    """The cohort as a CSV file (id,image,mask,channel), as a user gives it to ``radiomicslab batch``."""
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "mask", "channel"])
        writer.writerows([case.id, case.image, case.mask, case.channel] for case in cohort.cases)
    return path


def plain(cohort, settings):
    """Per-case seconds of read + extract, no batch layer."""
    from RadiomicsLabLib.extraction import extract
    from RadiomicsLabLib.imageio import read_image

    times = []
    for case in cohort.cases:
        start = time.perf_counter()
        extract(read_image(case.image), read_image(case.mask, "mask"), settings=settings)
        times.append(time.perf_counter() - start)
    return times


def _plain_case(case_and_settings):
    from RadiomicsLabLib.extraction import extract
    from RadiomicsLabLib.imageio import read_image

    case, settings = case_and_settings
    extract(read_image(case.image), read_image(case.mask, "mask"), settings=settings)


def pool(cohort, settings, processes: int) -> float:
    """Wall seconds of the plain extraction of every case on a pool of warm processes (the peer of ``batch``)."""
    import multiprocessing

    from RadiomicsLabLib.batch import worker_environment

    largest_first = sorted(cohort.cases, key=lambda case: -case.roi_voxels)
    saved = dict(os.environ)
    os.environ.update(worker_environment())  # the pool's processes inherit it: single-threaded ITK, as the workers
    try:
        context = multiprocessing.get_context("spawn").Pool(processes)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with context as workers:
        workers.map(_plain_case, [(largest_first[-1], settings)] * processes, chunksize=1)  # imports, caches
        start = time.perf_counter()
        workers.map(_plain_case, [(case, settings) for case in largest_first], chunksize=1)
        return time.perf_counter() - start


def batch(settings, workers, cohort_file, cases, scheduler=None):
    """Wall seconds and phases of a batch run of the cohort file into a fresh folder, as the CLI runs it:
    reading and validating the cohort (every image read and hashed) included, the cluster starting meanwhile."""
    from RadiomicsLabLib.batch import read_record, run_batch

    out = Path(tempfile.mkdtemp(dir=cohort_file.parent))
    start = time.perf_counter()
    summary = run_batch(cohort_file, out, settings=settings, workers=workers, scheduler=scheduler)
    wall = time.perf_counter() - start
    assert summary.computed == cases and summary.failed == 0, summary
    busy = {}  # worker pid -> seconds spent in cases (from the per-case records)
    for record in map(read_record, (out / "cases").glob("*.json")):
        busy[record["pid"]] = busy.get(record["pid"], 0.0) + record["seconds"]
    shutil.rmtree(out)
    return wall, {**summary.phases, "busy": sum(busy.values()) / max(len(busy), 1) / summary.phases["compute"]}


def batch_on_existing_cluster(settings, workers, cohort_file, cases):
    """:func:`batch` with ``scheduler=`` the address of a Dask cluster of ``workers`` single-threaded worker
    processes that is already running (started, with the workers' environment, before the timing)."""
    import logging

    from distributed import Client, LocalCluster

    from RadiomicsLabLib.batch import worker_environment

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.CRITICAL, env=worker_environment()) as cluster:
        with Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(workers)
        return batch(settings, None, cohort_file, cases, scheduler=cluster.scheduler_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--params", default="pyradiomics-default")
    args = parser.parse_args()

    import radiomics

    from RadiomicsLabLib.batch import available_cores
    from RadiomicsLabLib.settings import load_settings

    settings = load_settings(args.params)
    cohort = cohort_cases()
    root = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    cohort_file = write_cohort_file(cohort, root / "cohort.csv")
    print(f"{len(cohort.cases)} cases, settings {args.params}, pyradiomics {radiomics.__version__}, "
          f"{available_cores()} cores, load average {os.getloadavg()[0]:.1f} at start")
    plain(cohort, settings)  # warm caches and imports
    results = {"plain": [], "batch 0": [], "batch 1": [], "batch 2": [], "cluster 1": [], "cluster 2": [],
               "pool 1": [], "pool 2": []}
    phases = {name: [] for name in results if name.startswith(("batch", "cluster"))}
    per_case = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        times = plain(cohort, settings)
        results["plain"].append(time.perf_counter() - start)
        per_case.append(times)
        for workers in (0, 1, 2):
            wall, phase = batch(settings, workers, cohort_file, len(cohort.cases))
            results[f"batch {workers}"].append(wall)
            phases[f"batch {workers}"].append(phase)
        for workers in (1, 2):
            wall, phase = batch_on_existing_cluster(settings, workers, cohort_file, len(cohort.cases))
            results[f"cluster {workers}"].append(wall)
            phases[f"cluster {workers}"].append(phase)
        for processes in (1, 2):
            results[f"pool {processes}"].append(pool(cohort, settings, processes))
    shutil.rmtree(root, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in results.items()}
    times = [statistics.median(t) for t in zip(*per_case)]
    n = len(cohort.cases)
    print(f"\nplain extraction      {median['plain']:7.2f} s  ({median['plain'] / n:.3f} s per case; "
          f"longest case {max(times):.2f} s)")
    for name in phases:
        phase = {k: statistics.median(p[k] for p in phases[name]) for k in phases[name][0]}
        detail = ", ".join(f"{k} {v:.2f}" for k, v in phase.items() if k != "busy")
        detail += f"; each worker busy {phase['busy'] * 100:.0f} % of the compute phase"
        print(f"{name:<21} {median[name]:7.2f} s  ({detail})")
    overhead = (median["batch 0"] - median["plain"]) / n
    print(f"\nper-case overhead of the batch layer (batch 0 - plain) / {n}: {overhead * 1000:+.1f} ms "
          f"({overhead / (median['plain'] / n) * 100:+.1f} % of a case)")
    compute = {w: statistics.median(p["compute"] for p in phases[f"batch {w}"]) for w in (1, 2)}
    speedup = {kind: median[f"{kind} 1"] / median[f"{kind} 2"] for kind in ("batch", "cluster", "pool")}
    bound = sum(times) / max(sum(times) / 2, max(times))
    print(f"speed-up of 2 workers over 1, whole runs: {speedup['batch']:.2f}x with a local cluster started by the run, "
          f"{speedup['cluster']:.2f}x on an existing cluster; {compute[1] / compute[2]:.2f}x on the compute phase "
          f"(local); bound for these {n} cases {bound:.2f}x")
    print(f"peer: plain extraction on 1 and 2 warm processes (no Dask, no batch layer): {median['pool 1']:.2f} s, "
          f"{median['pool 2']:.2f} s, speed-up {speedup['pool']:.2f}x")
    for kind, what in (("batch", "local cluster started by the run"), ("cluster", "existing cluster")):
        print(f"Target: >= 1.8x ({what}) -> {'met' if speedup[kind] >= 1.8 else 'NOT met'}", end="; ")
    print(f"load average now {os.getloadavg()[0]:.1f} on {available_cores()} cores (other processes share them)")


if __name__ == "__main__":
    main()
