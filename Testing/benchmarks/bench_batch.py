"""Batch layer: speed-up of 2 workers over 1 on a 16-case cohort, and its per-case overhead over plain extraction.

Run on purpose: ``.venv/bin/python Testing/benchmarks/bench_batch.py [--repeats N] [--params PRESET]``.

The cohort is 16 real cases from ``../shared/data``: brain1, brain2, breast1, prostate_phantom
(4 labels) and the four sarcoma patients' CT, MR T1 and PET with their masks, discovered from the
folders by :func:`RadiomicsLabLib.cohort.read_cohort`. Settings: ``pyradiomics-default``.
Timed in one run, each a fresh output folder:

  plain     for each case: read image and mask, ``extraction.extract`` (the peer: no batch layer)
  batch 0   ``run_batch(workers=0)``: the same cases in this process through the batch layer
            (validation and hashing of the cohort, per-case JSON, features.csv/parquet, provenance)
  batch 1   ``run_batch(workers=1)``: a LocalCluster with one worker process
  batch 2   ``run_batch(workers=2)``: two worker processes
  pool 1/2  the peer without Dask or the batch layer: ``multiprocessing`` pools of 1 and 2 warm processes
            running the plain extraction, largest case first (what 2 processes give on this machine)
Per-case overhead = (batch 0 - plain) / 16. Speed-up = batch 1 / batch 2 (wall, cluster start
included) and on the compute phase alone; "busy" is the share of the compute phase each worker
spent inside cases (near 100 %: the layer keeps every worker fed, and a speed-up below the bound
means the cores themselves were not free). Target: speed-up >= 1.8. The bound for 2 workers is
``max(sum / 2, longest case)`` of the plain per-case times (cases are indivisible).
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

    largest_first = sorted(cohort.cases, key=lambda case: -case.roi_voxels)
    with multiprocessing.get_context("spawn").Pool(processes) as workers:
        workers.map(_plain_case, [(largest_first[-1], settings)] * processes, chunksize=1)  # imports, caches
        start = time.perf_counter()
        workers.map(_plain_case, [(case, settings) for case in largest_first], chunksize=1)
        return time.perf_counter() - start


def batch(settings, workers, cohort_file, cases):
    """Wall seconds and phases of a batch run of the cohort file into a fresh folder, as the CLI runs it:
    reading and validating the cohort (every image read and hashed) included, the cluster starting meanwhile."""
    from RadiomicsLabLib.batch import read_record, run_batch

    out = Path(tempfile.mkdtemp(dir=cohort_file.parent))
    start = time.perf_counter()
    summary = run_batch(cohort_file, out, settings=settings, workers=workers)
    wall = time.perf_counter() - start
    assert summary.computed == cases and summary.failed == 0, summary
    busy = {}  # worker pid -> seconds spent in cases (from the per-case records)
    for record in map(read_record, (out / "cases").glob("*.json")):
        busy[record["pid"]] = busy.get(record["pid"], 0.0) + record["seconds"]
    shutil.rmtree(out)
    return wall, {**summary.phases, "busy": sum(busy.values()) / max(len(busy), 1) / summary.phases["compute"]}


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
    results = {"plain": [], "batch 0": [], "batch 1": [], "batch 2": [], "pool 1": [], "pool 2": []}
    phases = {name: [] for name in results if name.startswith("batch")}
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
        for processes in (1, 2):
            results[f"pool {processes}"].append(pool(cohort, settings, processes))
    shutil.rmtree(root, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in results.items()}
    times = [statistics.median(t) for t in zip(*per_case)]
    n = len(cohort.cases)
    print(f"\nplain extraction      {median['plain']:7.2f} s  ({median['plain'] / n:.3f} s per case; "
          f"longest case {max(times):.2f} s)")
    for name in ("batch 0", "batch 1", "batch 2"):
        phase = {k: statistics.median(p[k] for p in phases[name]) for k in phases[name][0]}
        detail = ", ".join(f"{k} {v:.2f}" for k, v in phase.items() if k != "busy")
        detail += f"; each worker busy {phase['busy'] * 100:.0f} % of the compute phase"
        print(f"{name:<21} {median[name]:7.2f} s  ({detail})")
    overhead = (median["batch 0"] - median["plain"]) / n
    print(f"\nper-case overhead of the batch layer (batch 0 - plain) / {n}: {overhead * 1000:+.1f} ms "
          f"({overhead / (median['plain'] / n) * 100:+.1f} % of a case)")
    compute = {w: statistics.median(p["compute"] for p in phases[f"batch {w}"]) for w in (1, 2)}
    speedup = median["batch 1"] / median["batch 2"]
    bound = sum(times) / max(sum(times) / 2, max(times))
    print(f"speed-up of 2 workers over 1: {speedup:.2f}x wall (cluster start included), "
          f"{compute[1] / compute[2]:.2f}x compute phase; bound for these 16 cases {bound:.2f}x")
    print(f"peer: plain extraction on 1 and 2 warm processes (no Dask, no batch layer): {median['pool 1']:.2f} s, "
          f"{median['pool 2']:.2f} s, speed-up {median['pool 1'] / median['pool 2']:.2f}x")
    print(f"Target: >= 1.8x -> {'met' if speedup >= 1.8 else 'NOT met'} (load average now {os.getloadavg()[0]:.1f} "
          f"on {available_cores()} cores: other processes share them)")


if __name__ == "__main__":
    main()
