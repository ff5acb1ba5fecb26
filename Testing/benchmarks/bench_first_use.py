"""First use of the feature maps: compile wait before and after the install-time warm-up (issue #21, item 3).

Target: a first map run in a NEW process on a fresh install, after the warm-up that `make venv` (and desktop
Slicer at start-up) runs, is within 2x of a warm run. Per definition (``ibsi``, ``pyradiomics``), every family
(``all``), radius 1, on a real ROI (default: the pyradiomics sample case brain1's label, 4137 voxels):

1. cold: a new process with an empty numba cache (``NUMBA_CACHE_DIR`` a fresh folder): its first map run,
   compilation included (what every fresh install paid before the warm-up);
2. warm-up: ``python -m RadiomicsLabLib.warmup`` into another fresh cache folder (what the install runs);
3. cached: a new process using that cache: its first map run (kernels loaded from the cache; the count of numba
   compilations is printed and should be 0), then the warm runs in the same process (median of ``--repeats``).

4. numba's floor: a new process using that cache that imports numba and calls one cached kernel (the scan the maps
   start with, :func:`RadiomicsLabLib.ibsi._preprocessing_kernels.nonzero_box` on a 3 x 3 x 3 mask): what any
   numba program pays in a new process before its own work. (floor + warm) / warm is the least cached-first / warm
   ratio that kernels loaded from numba's cache allow.

Printed: seconds of each, and the ratios cold-first / warm and cached-first / warm (target <= 2). "first" is the
``feature_maps`` call itself (the lazily imported engine modules, numba and the cache loads included);
"process" adds the interpreter's imports of SimpleITK and RadiomicsLabLib and the image reading, for reference.

What a cached first run still pays is not compilation (0 compilations) but numba's start in every new process:
importing numba (0.3-0.4 s), initialising its CPU target on the first kernel loaded from the cache (0.3-0.4 s:
registries, the BLAS check importing scipy.linalg), both timed on their own by item 4, then ~0.02 s per kernel loaded
(the 2-core development machine), plus the engine modules the maps import lazily. Where a warm run takes well under a
second (a few thousand voxels) numba's start alone keeps the ratio above 2; removing it needs kernels that do not
need numba at run time (ahead-of-time compiled extension) or a worker process kept alive. The first run's clock
starts before the compile counter's listener imports numba (rounds before 2026-12-06 started it after, leaving the
import out).

Desktop Slicer (``--desktop``): there every map run is a job in a worker process (:mod:`RadiomicsLabLib.background`),
so every run is a first run in a new process unless a worker was started ahead. Timed from ``BackgroundRun(job)``
to the landed nodes (headless MRML scene, the job polled every 10 ms), with the worker's own process started for the
job, and with the worker kept ready (``keep_worker_ready(load_kernels)``, as the desktop module does once the
kernels are compiled; each job starts 6 s after the last, the user's pause, in which the next ready worker
prepares), against the same job computed and landed in this process, warm (``job.run()``). The main thread's
share (landing the nodes) is printed too. Uses the installation's own numba cache (warm after ``make venv``).

  .venv/bin/python Testing/benchmarks/bench_first_use.py [--case brain1] [--repeats 3] [--definitions ibsi,pyradiomics]
  .venv/bin/python Testing/benchmarks/bench_first_use.py --case sts/STS_001/CT --features glcm,firstorder
  .venv/bin/python Testing/benchmarks/bench_first_use.py --desktop [--case brain1] [--repeats 3]
"""

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def inputs(case: str) -> tuple[str, str]:
    """Image and mask paths: a pyradiomics sample case (``brain1``), or ``sts/STS_001/CT`` style (``<path>_image`` and
    ``<path>_mask`` NIfTI in the reference data folder)."""
    from RadiomicsLabLib.data import data_dir, sample_case

    if "/" not in case:
        return tuple(str(p) for p in sample_case(case))
    return str(data_dir() / f"{case}_image.nii.gz"), str(data_dir() / f"{case}_mask.nii.gz")


def child(case: str, definition: str, features: str, repeats: int) -> dict:
    """In the new process: time the imports, the first map run and the warm runs."""
    started = time.perf_counter()
    import SimpleITK as sitk

    from RadiomicsLabLib.featuremaps import feature_maps
    from RadiomicsLabLib.warmup import CompileCounter

    image_path, label_path = inputs(case)
    image, mask = sitk.ReadImage(image_path), sitk.ReadImage(label_path)
    imports = time.perf_counter() - started
    t = time.perf_counter()
    with CompileCounter() as counter:   # its listener imports numba: part of the first run, as without it
        maps = feature_maps(image, mask, features, radius=1, definition=definition)
    first = time.perf_counter() - t
    warm = []
    for _ in range(repeats):
        t = time.perf_counter()
        feature_maps(image, mask, features, radius=1, definition=definition)
        warm.append(time.perf_counter() - t)
    return {"imports": imports, "first": first, "warm": statistics.median(warm), "warm_all": warm,
            "compiled": len(counter.compiled), "maps": len(maps), "voxels": int(maps.values.shape[0])}


def numba_floor() -> dict:
    """In the new process: seconds to import numba, then to call the first kernel loaded from the cache (numba
    initialises its CPU target there: registries, the BLAS check that imports scipy.linalg), and its compilations."""
    started = time.perf_counter()
    importlib.import_module("numba")
    imported = time.perf_counter() - started
    import numpy as np

    from RadiomicsLabLib.ibsi._preprocessing_kernels import nonzero_box
    from RadiomicsLabLib.warmup import CompileCounter

    mask = np.zeros((3, 3, 3), dtype=np.uint8)
    mask[1, 1, 1] = 1
    with CompileCounter() as counter:
        started = time.perf_counter()
        nonzero_box(mask)
        first_kernel = time.perf_counter() - started
    return {"import": imported, "first_kernel": first_kernel, "compiled": len(counter.compiled)}


def run_child(cache: Path, stamps: Path, args, definition: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), XDG_CACHE_HOME=str(stamps), LOCALAPPDATA=str(stamps))
    command = [sys.executable, __file__, "--child", definition, "--case", args.case, "--features", args.features,
               "--repeats", str(args.repeats)]
    t = time.perf_counter()
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - t
    return result


def warm_up(cache: Path, stamps: Path) -> tuple[float, dict]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), XDG_CACHE_HOME=str(stamps), LOCALAPPDATA=str(stamps))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "RadiomicsLabLib.warmup", "--json"], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t, json.loads(out)


def desktop_jobs(args, definitions) -> None:
    """Map jobs as desktop Slicer runs them: a new worker per job, a worker kept ready, and in this process."""
    from RadiomicsLabLib.background import BackgroundRun, keep_worker_ready, stop_keeping_worker_ready
    from RadiomicsLabLib.mrml import ExtractionLogic
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.featuremaps import FeatureMapLogic
    from RadiomicsLabLib.warmup import is_warm, load_kernels

    if not is_warm():
        raise SystemExit("The installation's kernels are not compiled: run `radiomicslab warmup` first.")
    scene = new_headless_app().scene
    loader = ExtractionLogic(scene)
    image_path, label_path = inputs(args.case)
    volume = loader.load_volume(image_path)
    segmentation = loader.load_segmentation(label_path, volume)
    maps = FeatureMapLogic(scene)

    def job(definition):
        return maps.compute_job(volume, segmentation, None, features=args.features, radius=1, definition=definition)

    def remove(result) -> None:
        """The landed nodes leave the scene again (each map is a whole-grid volume: runs would pile up memory)."""
        for node in [*result.maps.values(), result.table]:
            scene.RemoveNode(node)

    def in_process(definition) -> float:
        started = time.perf_counter()
        result = job(definition).run()
        seconds = time.perf_counter() - started
        remove(result)
        return seconds

    def in_background(definition) -> tuple[float, float]:
        run, started, landing = BackgroundRun(job(definition)), time.perf_counter(), 0.0
        while True:
            t = time.perf_counter()
            running = run.poll()
            if not running:
                landing = time.perf_counter() - t
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        remove(run.result())
        return seconds, landing

    print(f"desktop map jobs '{args.features}', radius 1, case {args.case}: seconds from BackgroundRun(job) to the "
          f"landed nodes (median of {args.repeats}; the main thread's landing in brackets)", flush=True)
    print(f"{'definition':<12} {'in process':>11} {'new worker':>17} {'worker kept ready':>18} {'ready / in process':>19}")
    for definition in definitions:
        in_process(definition)   # warm: imports and kernels in this process
        here = statistics.median(in_process(definition) for _ in range(args.repeats))
        stop_keeping_worker_ready()
        fresh = [in_background(definition) for _ in range(args.repeats)]
        keep_worker_ready(load_kernels)
        ready = []
        for _ in range(args.repeats):
            time.sleep(6.0)
            ready.append(in_background(definition))
        stop_keeping_worker_ready()
        f, r = (statistics.median(t for t, _ in runs) for runs in (fresh, ready))
        fl, rl = (statistics.median(land for _, land in runs) for runs in (fresh, ready))
        print(f"{definition:<12} {here:>10.2f}s {f:>9.2f}s ({fl:.2f}) {r:>10.2f}s ({rl:.2f}) {r / here:>18.2f}x",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="brain1", help="pyradiomics sample case (image + label), or a path in the "
                        "reference data such as sts/STS_001/CT (its _image and _mask NIfTI)")
    parser.add_argument("--features", default="all")
    parser.add_argument("--definitions", default="ibsi,pyradiomics")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs (median)")
    parser.add_argument("--desktop", action="store_true", help="time map jobs as desktop Slicer runs them instead")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = numba_floor() if args.child == "numba-floor" else child(args.case, args.child, args.features,
                                                                         args.repeats)
        print(json.dumps(result))
        return

    definitions = [d.strip() for d in args.definitions.split(",") if d.strip()]
    if args.desktop:
        desktop_jobs(args, definitions)
        return
    with tempfile.TemporaryDirectory(prefix="bench-first-use-") as folder:
        folder = Path(folder)
        print(f"feature maps '{args.features}', radius 1, case {args.case}; numba caches under {folder}", flush=True)
        cold = {}
        for definition in definitions:   # each in its own fresh cache: nothing compiled before
            cold[definition] = run_child(folder / f"cold-{definition}", folder / "stamps-cold", args, definition)
            print(f"  cold {definition}: first run {cold[definition]['first']:.2f} s "
                  f"({cold[definition]['compiled']} compilations)", flush=True)
        warmup_s, report = warm_up(folder / "warm", folder / "stamps-warm")
        print(f"  warm-up (python -m RadiomicsLabLib.warmup, fresh cache): {warmup_s:.1f} s, "
              f"{report['compiled']} compilations, {len(report['kernels'])} kernels", flush=True)
        cached = {d: run_child(folder / "warm", folder / "stamps-warm", args, d) for d in definitions}
        floor = run_child(folder / "warm", folder / "stamps-warm", args, "numba-floor")

    print()
    print(f"{'definition':<12} {'voxels':>7} {'maps':>5} {'cold first':>11} {'cached first':>13} {'warm':>7} "
          f"{'cold/warm':>10} {'cached/warm':>12} {'compiled':>9} {'process cached':>15}")
    ratios = []
    for d in definitions:
        c, k = cold[d], cached[d]
        ratio = k["first"] / k["warm"]
        ratios.append(ratio)
        print(f"{d:<12} {k['voxels']:>7} {k['maps']:>5} {c['first']:>10.2f}s {k['first']:>12.2f}s {k['warm']:>6.2f}s "
              f"{c['first'] / c['warm']:>9.1f}x {ratio:>11.2f}x {k['compiled']:>9} "
              f"{k['imports'] + k['first']:>14.2f}s")
    start = floor["import"] + floor["first_kernel"]
    print()
    print(f"numba's own start in a new process (cached kernels, {floor['compiled']} compilations): import "
          f"{floor['import']:.2f} s + first cached kernel (CPU target initialised) {floor['first_kernel']:.2f} s = "
          f"{start:.2f} s; the least cached first / warm it allows: "
          + ", ".join(f"{d} {(start + cached[d]['warm']) / cached[d]['warm']:.2f}x" for d in definitions))
    print(f"warm-up at install: {warmup_s:.1f} s (once). Target cached first / warm <= 2: "
          f"{'met' if max(ratios) <= 2 else 'NOT met'} (worst {max(ratios):.2f}x); compilations in the cached "
          f"processes: {sum(cached[d]['compiled'] for d in definitions)} (should be 0).")


if __name__ == "__main__":
    main()
