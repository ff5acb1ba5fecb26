"""Compile RadiomicsLab's numba kernels once, at install, so that no user waits for a compiler.

The voxel-wise feature maps (:mod:`.featuremap_kernels`) and the observers' distance transform
(:func:`.observers.squared_edt`) are numba kernels with ``cache=True``: numba compiles each one the first
time it is called with a given signature (argument types) and writes the machine code to its cache, where
any later process finds it. Without a warm-up that first call is a user's first map: seconds of compiling
per feature family, in every fresh install. :func:`warm_up` makes every one of those first calls, on a small
synthetic volume, through the same code paths a real run takes (:func:`.featuremaps.feature_maps` for every
family of both definitions, ``ibsi`` and ``pyradiomics``), so the signatures cached are exactly those of real
map runs (``int64`` grey levels, ``float64`` intensities, ``uint8`` ROI, C-contiguous arrays, Python ints,
floats and bools; see :func:`.featuremaps._prepare`) whatever the kernels' arguments become.

Where the cache is (numba's rules): ``$NUMBA_CACHE_DIR`` when set; else ``__pycache__`` beside the kernels'
source when writable (a development checkout, ``pip install -e``); else numba's user-wide cache folder
(e.g. ``~/.cache/numba`` on Linux: a read-only installation such as a Slicer extension); where none of these is
writable, a private folder of the temporary directory (:func:`.jit.fallback_cache_dir`). A cached kernel is
used only for the same source file (path and modification time), numba version, Python version and CPU, so
the warm-up is run again after an update (the Makefile's ``venv`` target, desktop Slicer at start-up when
:func:`is_warm` says the stamp no longer matches).

Run it with ``python -m RadiomicsLabLib.warmup`` or ``radiomicslab warmup``; desktop Slicer runs it in a
worker process (:func:`start_in_background`) so the window never waits. It compiles in one process per core
(:func:`warm_up`; numba's cache is locked for that, :func:`.jit.lock_cache_file`), at a lower priority: 48 s
instead of 83 s on two cores.

Module-level imports are the standard library only: desktop Slicer imports this module before knowing
whether numba is installed.
"""

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

#: Modules whose numba kernels the warm-up compiles.
KERNEL_MODULES = ("RadiomicsLabLib.featuremap_kernels", "RadiomicsLabLib.observers",
                  "RadiomicsLabLib.ibsi._preprocessing_kernels", "RadiomicsLabLib.ibsi.features._morphology_kernels",
                  "RadiomicsLabLib.ibsi.features._texture_kernels")
#: IBSI engine settings whose segment extraction the warm-up runs (2D and 3D texture, trilinear resampling).
IBSI_PRESETS = ("ibsi-B", "ibsi-C")
#: Map definitions and their families (as :mod:`.featuremaps` names them), every one warmed up.
DEFINITIONS = ("ibsi", "pyradiomics")
#: The stamp the warm-up leaves beside the kernels' cache (see :func:`is_warm`).
STAMP_NAME = "radiomicslab-warmup.json"


# Kernels and their cache -----------------------------------------------------------------------------------
def dispatchers() -> dict:
    """{``module.name``: numba dispatcher} of every kernel of :data:`KERNEL_MODULES` (importing them; nothing is
    compiled)."""
    from numba.core.registry import CPUDispatcher

    found = {}
    for name in KERNEL_MODULES:
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and getattr(value.py_func, "__module__", None) == name:
                found[f"{name.rsplit('.', 1)[1]}.{attribute}"] = value
    return found


def cache_dirs() -> list[str]:
    """The folders numba reads and writes these kernels' cache in (one per source folder)."""
    return sorted({str(d._cache.cache_path) for d in dispatchers().values() if hasattr(d._cache, "cache_path")})


def cache_stats() -> dict:
    """Per kernel that this process called: ``{"hits": n, "misses": n, "signatures": [...]}`` (numba's counters;
    a miss is a compilation, a hit an overload loaded from the cache). Kernels called only by other kernels are
    compiled into their callers and keep no counters of their own."""
    stats = {}
    for name, dispatcher in dispatchers().items():
        hits = sum(dispatcher.stats.cache_hits.values())
        misses = sum(dispatcher.stats.cache_misses.values())
        if hits or misses or dispatcher.signatures:
            stats[name] = {"hits": hits, "misses": misses, "signatures": [str(s) for s in dispatcher.signatures]}
    return stats


class CompileCounter:
    """Counts numba compilations (the ``numba:compile`` event, fired only when machine code is made, never for
    an overload loaded from the cache) while in the ``with`` block: ``.compiled`` names what was compiled."""

    def __enter__(self):
        from numba.core import event

        self.compiled = []
        counter = self

        class Listener(event.Listener):
            def on_start(self, ev):
                dispatcher = ev.data.get("dispatcher")
                counter.compiled.append(getattr(getattr(dispatcher, "py_func", None), "__qualname__", str(dispatcher)))

            def on_end(self, ev):
                pass

        self._listener = Listener()
        event.register("numba:compile", self._listener)
        return self

    def __exit__(self, *exc):
        from numba.core import event

        event.unregister("numba:compile", self._listener)
        return False


# The sample every kernel is called on ----------------------------------------------------------------------
def sample_volume():
    """A small synthetic CT-like image (12 x 12 x 8 voxels, 1 x 1 x 2 mm, int16, fixed seed) and a ball-shaped
    label map (label 1) inside it: enough for every family of both definitions (kernels of radius 1, the local
    intensity sphere). The values only need to exercise the code; the kernels' types come from the code path."""
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(20240521)
    array = (rng.normal(40.0, 30.0, size=(8, 12, 12))).round().astype(np.int16)
    z, y, x = np.indices(array.shape)
    ball = ((z - 3.5) * 2.0) ** 2 + (y - 5.5) ** 2 + (x - 5.5) ** 2 <= 4.5 ** 2
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 2.0))
    mask = sitk.GetImageFromArray(ball.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def map_runs():
    """(definition, family) of every map run the warm-up makes: each family of each definition."""
    from .featuremaps import IBSI_FAMILIES, PYRADIOMICS_FAMILIES

    return [(definition, family) for definition in DEFINITIONS
            for family in (IBSI_FAMILIES if definition == "ibsi" else PYRADIOMICS_FAMILIES)]


#: The warm-up's task of the IBSI engine and of the observers' distance transform (:func:`warm_up_tasks`).
ENGINE_TASK, OBSERVERS_TASK = ("IBSI engine",), ("observers distance transform",)


def warm_up_tasks() -> list[tuple]:
    """The warm-up's independent tasks, the longest first (so that workers taking them in order end together):
    :data:`ENGINE_TASK` (segment extraction with every preset of :data:`IBSI_PRESETS` and every voxel type: half of
    the compilation; one task, as its runs share kernels called with other argument types), every map run of
    :func:`map_runs` (``(definition, family)``), and :data:`OBSERVERS_TASK`."""
    return [ENGINE_TASK, *map_runs(), OBSERVERS_TASK]


def run_task(task: tuple, image=None, mask=None):
    """Call the kernels of one task of :func:`warm_up_tasks` through their real code path, on ``image`` in ``mask``
    (default :func:`sample_volume`): a map run's FeatureMaps (radius 1); None for the other tasks."""
    if image is None:
        image, mask = sample_volume()
    if task == OBSERVERS_TASK:
        import numpy as np

        from .observers import squared_edt

        # observers.distance_to: squared_edt(float64 (z, y, x) C-contiguous array, then three Python floats)
        feature = np.zeros((3, 4, 5), dtype=bool)
        feature[1, 2, 2] = True
        squared_edt(np.where(feature, 0.0, np.inf).reshape(feature.shape), *(1.0, 1.0, 2.0))
        return None
    if task == ENGINE_TASK:
        import warnings

        import SimpleITK as sitk

        from .extraction import extract

        # the sample as it is (the region the features read is the whole grid) and padded (a part of it: the whole
        # interpolated grid's diagnostics in a pass of their own, which also takes the image's statistics)
        padding = (16, 16, 6)
        samples = ((image, mask), (sitk.ConstantPad(image, padding, padding, 0),
                                   sitk.ConstantPad(mask, padding, padding, 0)))
        with warnings.catch_warnings():  # e.g. "a CT range on an image without negative values": a sample
            warnings.simplefilter("ignore")
            for sample_image, sample_mask in samples:
                for preset in IBSI_PRESETS:
                    extract(sample_image, sample_mask, None, preset)
                # the voxel types the engine reads as they are (int16 above; float images and float masks, uint16
                # MR) and one that numpy converts first (int32)
                for pixel_type in (sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkUInt16, sitk.sitkInt32):
                    extract(sitk.Cast(sample_image, pixel_type), sitk.Cast(sample_mask, pixel_type), None,
                            IBSI_PRESETS[-1])
        return None
    from .featuremaps import feature_maps

    definition, family = task
    return feature_maps(image, mask, [family], radius=1, definition=definition)


def describe_task(task: tuple) -> str:
    """A task of :func:`warm_up_tasks` as its progress shows it ("ibsi glcm", "IBSI engine")."""
    return " ".join(task)


def run_every_kernel(image=None, mask=None, progress=None) -> dict:
    """Call every kernel through its real code path, in this process: every task of :func:`warm_up_tasks` (the maps
    of every family of both definitions, radius 1, of ``image`` in ``mask``, default :func:`sample_volume`; the
    observers' compiled distance transform with the argument types :func:`.observers.distance_to` gives it; segment
    extraction with the IBSI engine). Returns {(definition, family): FeatureMaps}."""
    if image is None:
        image, mask = sample_volume()
    tasks = warm_up_tasks()
    maps = {}
    for done, task in enumerate(tasks):
        if progress is not None:
            progress(done, len(tasks), describe_task(task))
        result = run_task(task, image, mask)
        if result is not None:
            maps[task] = result
    if progress is not None:
        progress(len(tasks), len(tasks), "done")
    return maps


def load_kernels() -> None:
    """Preparation of a worker kept ready for the next job (:func:`.background.keep_worker_ready`): the imports of
    every workflow's code and, when the cache is warm (:func:`is_warm`), every compiled kernel loaded through
    :func:`run_every_kernel` (about 2 s); a cold cache is left to the warm-up, which is compiling it."""
    from . import extraction, featuremaps, observers  # noqa: F401 - imported for the next job

    if is_warm():
        run_every_kernel()


def load_planning() -> None:
    """Desktop Slicer's own process, on a background thread once the kernels are compiled: import the feature maps'
    planning and load the kernels it calls (numba's start, the mask's bounding box, the discretisation), by planning
    every map of both definitions on :func:`sample_volume`, so that the first map's check and memory estimate on the
    main thread (the module shows it before Apply) does not wait for them: about 0.6 s."""
    from .featuremaps import plan_feature_maps

    image, mask = sample_volume()
    for definition in DEFINITIONS:
        plan_feature_maps(image, mask, "all", radius=1, definition=definition)


# Warm-up ---------------------------------------------------------------------------------------------------
#: Memory a warm-up worker process may take while it compiles (the largest measured: 0.63 GB); where less is available
#: per core, fewer workers compile (:func:`default_workers`).
WORKER_MEMORY = 2 ** 30


def default_workers() -> int:
    """How many processes :func:`warm_up` compiles in at once: one per core this process may use
    (:func:`.limits.compute_threads`), at most one per :data:`WORKER_MEMORY` of the memory available now, and at most
    one per task (:func:`warm_up_tasks`)."""
    from .limits import available_memory, compute_threads

    return max(1, min(compute_threads(), available_memory() // WORKER_MEMORY, len(warm_up_tasks())))


def warm_up(progress=None, workers: int | None = None) -> dict:
    """Compile (or load from the cache) every kernel with the signatures real runs use, and leave the stamp of
    :func:`is_warm`.

    With more than one of ``workers`` (default :func:`default_workers`), the tasks of :func:`warm_up_tasks` are first
    compiled in that many new processes at once (:func:`compile_in_workers`; numba's cache is safe for that:
    :func:`.jit.lock_cache_file`); this process then runs every task itself, which loads every kernel from the cache and
    compiles whatever is still missing (nothing, unless a worker failed: then everything it did not finish). With one,
    this process compiles everything, task after task.

    Returns what was done: ``seconds``, ``compiled`` (numba compilations this warm-up made, in the workers and here;
    0 when everything was already cached), ``compiled_here`` (those made in this process), ``workers``, ``kernels``
    (:func:`cache_stats`), ``cache_dirs``, and ``workers_failed`` (why, where the workers could not do their part)."""
    started = time.perf_counter()
    workers = default_workers() if workers is None else max(1, int(workers))
    in_workers, failure = 0, None
    if workers > 1:
        try:
            in_workers = compile_in_workers(workers, progress)
        except Exception as error:  # noqa: BLE001 - e.g. no process can be started: this process compiles it all
            failure = f"{type(error).__name__}: {error}"
    with CompileCounter() as counter:
        run_every_kernel(progress=progress if workers == 1 or failure else None)
    report = {"seconds": time.perf_counter() - started, "compiled": in_workers + len(counter.compiled),
              "compiled_here": len(counter.compiled), "workers": workers, "kernels": cache_stats(),
              "cache_dirs": cache_dirs()}
    if failure:
        report["workers_failed"] = failure
    _write_stamp()
    return report


def compile_in_workers(workers: int, progress=None) -> int:
    """Run the tasks of :func:`warm_up_tasks` in ``workers`` new processes (spawned, with the interpreter of
    :func:`.background.use_worker_python`) at once, each taking the next task in order when done with one, so that
    the kernels they compile are in numba's cache. Returns the number of compilations they made; raises what a task
    raised (or BrokenProcessPool where a process died). The processes run at a lower priority and end with this one
    (:func:`_start_compiling_worker`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from .background import use_worker_python

    use_worker_python()
    tasks = warm_up_tasks()
    compiled = 0
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_compiling_worker) as pool:
        futures = {pool.submit(_compile_task, task): task for task in tasks}
        for done, future in enumerate(as_completed(futures), start=1):
            compiled += future.result()
            if progress is not None:
                progress(done, len(tasks), describe_task(futures[future]))
    return compiled


#: How much a warm-up worker lowers its scheduling priority (``os.nice``, POSIX), so that desktop Slicer's window stays
#: responsive while the workers take every core.
WORKER_NICENESS = 10


def _start_compiling_worker() -> None:
    """A warm-up worker's start: end with the process that started it (:func:`.background.end_with_parent`: desktop
    Slicer's Cancel or exit terminates the warm-up's process, whose workers would otherwise compile on and then wait
    forever), and yield the cores to every other process of the user (:data:`WORKER_NICENESS`)."""
    from .background import end_with_parent

    end_with_parent()
    if hasattr(os, "nice"):
        try:
            os.nice(WORKER_NICENESS)
        except OSError:
            pass


def _compile_task(task: tuple) -> int:
    """In a warm-up worker: :func:`run_task`, returning the number of numba compilations it made."""
    with CompileCounter() as counter:
        run_task(task)
    return len(counter.compiled)


def describe(report: dict) -> str:
    """:func:`warm_up`'s report in one line."""
    how = (f"{report['compiled']} kernel signature(s) compiled" if report["compiled"]
           else "all already compiled, loaded from numba's cache")
    if report.get("workers", 1) > 1:
        how += (f" in {report['workers']} processes" if "workers_failed" not in report
                else f"; the worker processes failed ({report['workers_failed']}), so this one compiled them")
    return (f"RadiomicsLab feature map kernels ready in {report['seconds']:.1f} s ({len(report['kernels'])} kernels "
            f"called; {how}); cache: {', '.join(report['cache_dirs'])}")


# Stamp: is the cache current? ------------------------------------------------------------------------------
def stamp() -> dict:
    """What the cached kernels depend on, without importing numba: the numba and Python versions, the machine,
    ``$NUMBA_CACHE_DIR`` and the package's sources (path, size, modification time of every module: the kernels'
    own, and their callers', which choose the argument types and so the signatures compiled, e.g. the voxel types
    the preprocessing hands the interpolation)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        numba_version = version("numba")
    except PackageNotFoundError:
        numba_version = None
    package = Path(__file__).resolve().parent
    sources = {}
    for path in sorted(package.rglob("*.py")):
        info = path.stat()
        sources[str(path)] = [info.st_size, info.st_mtime_ns]
    return {"numba": numba_version, "python": sys.version, "machine": platform.machine(),
            "processor": platform.processor(), "sources": sources,
            "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "")}


def stamp_path() -> Path:
    """Where the stamp is kept: RadiomicsLab's folder in the user's cache (``$XDG_CACHE_HOME``, ``~/.cache``;
    ``%LOCALAPPDATA%`` on Windows), one file per installation (named after the package folder)."""
    import hashlib

    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha1(str(Path(__file__).resolve().parent).encode()).hexdigest()[:12]
    return base / "radiomicslab" / f"warmup-{key}.json"


def _write_stamp() -> None:
    path = stamp_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(stamp(), indent=1), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:  # no writable cache folder: the next start warms up again (cheap once cached)
        pass


def is_warm() -> bool:
    """True when a warm-up ran for this installation with the current numba, Python, machine and package sources
    (its stamp matches; the cache itself is numba's). Cheap: imports nothing heavy."""
    try:
        return json.loads(stamp_path().read_text(encoding="utf-8")) == stamp()
    except (OSError, ValueError):
        return False


def warm_up_job(progress=None) -> str:
    """A :class:`~RadiomicsLabLib.background.Job` compute: :func:`warm_up`, described in one line."""
    return describe(warm_up(progress=progress))


def start_in_background():
    """Desktop Slicer: run :func:`warm_up` in a worker process (:class:`~RadiomicsLabLib.background.BackgroundRun`)
    unless :func:`is_warm`; returns the run (poll it from the main thread's event loop) or None."""
    if is_warm():
        return None
    from .background import BackgroundRun, Job

    return BackgroundRun(Job("Compiling RadiomicsLab's feature map kernels", warm_up_job))


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m RadiomicsLabLib.warmup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--if-needed", action="store_true", help="do nothing when the stamp says the cache is current")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes compiling at once (default: one per core, as memory allows; 1: this one only)")
    args = parser.parse_args(argv)
    if args.if_needed and is_warm():
        print("RadiomicsLab kernels already compiled for this installation.", file=sys.stderr)
        return 0
    report = warm_up(workers=args.workers)
    print(json.dumps(report, indent=1) if args.json else describe(report), file=sys.stdout if args.json else sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
