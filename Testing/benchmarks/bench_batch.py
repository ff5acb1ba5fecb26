"""Batch layer: speed-up of 2 workers over 1 on a cohort of real cases, and its per-case overhead over plain extraction.

Run on purpose: ``.venv/bin/python Testing/benchmarks/bench_batch.py [--repeats N] [--params PRESET]
[--image-type TYPE ...]``.

The cohort is 16 real cases from ``../shared/data``: brain1, brain2, breast1, prostate_phantom
(4 labels) and the four sarcoma patients' CT, MR T1 and PET with their masks, discovered from the
folders by :func:`RadiomicsLabLib.cohort.read_cohort`. Settings: ``pyradiomics-default`` (bin width 25,
every feature class) with the image types of pyradiomics' own example CT parameter file (Original, LoG
sigma 1-5, Wavelet): a real radiomics configuration. ``--copies 2`` (default) puts each case in the
cohort twice, the second time under its own id (``brain1-2``, ...): 32 cases, every one real data that
the batch layer reads, checks, hashes and extracts in full (nothing is shared between the copies but the
operating system's file cache), so that the single-worker run lasts over a minute and a run's fixed cost
weighs as it does on a real cohort rather than on a 20 s toy (``--copies 1 --image-type Original``: the
quick check of before). Timed in one run, each a fresh output folder:

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
Per-case overhead = (batch 0 - plain) / cases. Speed-up = batch 1 / batch 2 (the whole run: the
local cluster's start included), cluster 1 / cluster 2, and on the compute phase alone; "busy" is
the share of the compute phase each worker spent inside cases (near 100 %: the layer keeps every
worker fed, and a speed-up below the bound means the cores themselves were not free); "fixed" is a
run's fixed cost, the whole run minus its compute phase (reading and checking the cohort, the part
of the cluster start not hidden behind it, writing the outputs). Target: speed-up >= 1.85 for a whole
run with its own local cluster, on a cohort whose single-worker run takes >= 60 s. The bound for
2 workers is ``max(sum / 2, longest case)`` of the plain per-case times (cases are indivisible).
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

#: The image types of the runs: those of pyradiomics' example CT parameter file (Original, LoG sigma 1-5, Wavelet).
IMAGE_TYPES = ["Original", "LoG:sigma=1,2,3,4,5", "Wavelet"]


def cohort_cases(copies: int = 1):
    """The 16-case cohort: the pyradiomics cases (flat folder) + the sarcoma patients (3 channels each);
    ``copies`` > 1: each case again under the ids ``<id>-2``, ``<id>-3``, ... (separate cases, the same files)."""
    import dataclasses

    from RadiomicsLabLib.cohort import Cohort, read_cohort
    from RadiomicsLabLib.data import data_dir

    flat, sts = read_cohort(data_dir() / "pyradiomics_cases"), read_cohort(data_dir() / "sts")
    cases = flat.cases + sts.cases
    cases += [dataclasses.replace(case, id=f"{case.id}-{copy}") for copy in range(2, copies + 1) for case in cases]
    cohort = Cohort(data_dir(), cases, flat.problems + sts.problems, sts.key_columns)
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

    from RadiomicsLabLib.cohort import cost_estimate

    largest_first = sorted(cohort.cases, key=lambda case: -cost_estimate(case))
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
    shares = sorted((seconds / summary.phases["compute"] for seconds in busy.values()), reverse=True)
    return wall, {**summary.phases, "fixed": wall - summary.phases["compute"],
                  **{f"busy{i}": share for i, share in enumerate(shares)}}


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
    parser.add_argument("--copies", type=int, default=2, help="each real case this many times, under distinct ids")
    parser.add_argument("--image-type", action="append", dest="image_types",
                        help="replaces the image types (repeat it); default: " + " ".join(IMAGE_TYPES))
    args = parser.parse_args()

    import radiomics

    from RadiomicsLabLib.batch import available_cores
    from RadiomicsLabLib.settings import load_settings

    settings = load_settings(args.params, image_types=args.image_types or IMAGE_TYPES)
    cohort = cohort_cases(args.copies)
    root = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    cohort_file = write_cohort_file(cohort, root / "cohort.csv")
    print(f"{len(cohort.cases)} cases, settings {args.params}, image types {' '.join(args.image_types or IMAGE_TYPES)}, "
          f"pyradiomics {radiomics.__version__}, {available_cores()} cores, load average {os.getloadavg()[0]:.1f} at start")
    plain(cohort_cases(), load_settings(args.params, image_types=["Original", "LoG:sigma=1", "Wavelet"]))  # warm-up
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
        detail = ", ".join(f"{k} {v:.2f}" for k, v in phase.items() if not k.startswith("busy"))
        shares = " / ".join(f"{v * 100:.0f} %" for k, v in phase.items() if k.startswith("busy"))
        print(f"{name:<21} {median[name]:7.2f} s  ({detail}; workers busy {shares} of the compute phase)")
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
    fixed = {name: statistics.median(p["fixed"] for p in phases[name]) for name in phases}
    print("fixed per-run cost (whole run - compute phase): " + ", ".join(f"{name} {v:.2f} s" for name, v in fixed.items()))
    single = median["batch 1"]
    print(f"single-worker run (batch 1): {single:.1f} s of real cases ({'>=' if single >= 60 else 'UNDER'} 60 s)")
    for kind, what in (("batch", "local cluster started by the run"), ("cluster", "existing cluster")):
        print(f"Target: >= 1.85x ({what}) -> {'met' if speedup[kind] >= 1.85 else 'NOT met'}", end="; ")
    print(f"load average now {os.getloadavg()[0]:.1f} on {available_cores()} cores (other processes share them)")


if __name__ == "__main__":
    main()
