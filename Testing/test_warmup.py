"""The install-time warm-up of the numba kernels (RadiomicsLabLib/warmup.py, issue #21 item 3).

After ``python -m RadiomicsLabLib.warmup`` into a fresh numba cache (``NUMBA_CACHE_DIR`` a temporary folder), a new
process computing maps of every family of both definitions on a small real ROI, and extracting its features
with the IBSI engine (the presets the warm-up runs), compiles nothing (numba's
``numba:compile`` event never fires, every kernel called counts cache hits and no miss), and its values equal the
maps computed here without that warm-up. No timing asserts (the benchmark is Testing/benchmarks/bench_first_use.py).
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The new process: small real ROI (a crop of brain1 around its label), maps of every family of both
#: definitions at radius 1, the observers' compiled distance transform through observers.distance_to.
CHILD = r'''
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from test_warmup import small_roi, small_ct_roi, every_map, sarcoma_ct
from RadiomicsLabLib import observers, warmup

image, mask = small_roi()
with warmup.CompileCounter() as counter:
    maps = every_map(image, mask)
    observers.COMPILED_EDT_VOXELS = 0    # the compiled transform, as for boxes of millions of voxels
    feature = np.zeros((4, 5, 6), dtype=bool)
    feature[1, 2, 3] = True
    distances = observers.distance_to(feature, (2.0, 1.0, 1.0))
    import warnings
    from RadiomicsLabLib.extraction import extract
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ct, gtv = small_ct_roi()
        engine = {preset: extract(ct, gtv, None, preset).values for preset in warmup.IBSI_PRESETS}
        # a GTV within a larger CT (the features read a part of the grid, the diagnostics the whole), as read and
        # as int16
        import SimpleITK as sitk
        ct, gtv = sarcoma_ct()
        for image in (ct, sitk.Cast(ct, sitk.sitkInt16)):
            extract(image, gtv, None, warmup.IBSI_PRESETS[-1])
np.savez(sys.argv[1], distances=distances,
         **{f"engine|{preset}": np.array([v.value for v in values]) for preset, values in engine.items()},
         **{f"{d}|{f}|{'|'.join(m.names)}": m.values for (d, f), m in maps.items()})
print(json.dumps({"compiled": counter.compiled, "stats": warmup.cache_stats(), "cache_dirs": warmup.cache_dirs(),
                  "warm": warmup.is_warm()}))
'''


def small_roi():
    """A 14 x 14 x 5 voxel crop of the pyradiomics sample case brain1 (real MR) around the centre of its label, and
    the label inside it."""
    import SimpleITK as sitk

    from RadiomicsLabLib.data import sample_case

    image_path, label_path = sample_case("brain1")
    image, label = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(label_path))
    z, y, x = (int(round(c.mean())) for c in np.nonzero(sitk.GetArrayViewFromImage(label)))
    size = (14, 14, 5)
    index = (x - 7, y - 7, z - 2)
    return sitk.RegionOfInterest(image, size, index), sitk.RegionOfInterest(label, size, index) == 1


def small_ct_roi():
    """A 24 x 24 x 6 voxel crop of a real sarcoma CT (shared data, STS_002) around the centre of its GTV, and the GTV
    inside it: the IBSI presets' HU re-segmentation keeps most of it."""
    import SimpleITK as sitk

    image, gtv = sarcoma_ct()
    z, y, x = (int(round(c.mean())) for c in np.nonzero(sitk.GetArrayViewFromImage(gtv)))
    size, index = (24, 24, 6), (x - 12, y - 12, z - 3)
    return sitk.RegionOfInterest(image, size, index), sitk.RegionOfInterest(gtv, size, index) > 0


def sarcoma_ct():
    """A real sarcoma CT (shared data, STS_002: 161 x 143 x 48 voxels, float32) and its GTV."""
    import SimpleITK as sitk

    from RadiomicsLabLib.data import data_dir

    folder = data_dir() / "sts" / "STS_002"
    return sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))


def every_map(image, mask) -> dict:
    """{(definition, family): FeatureMaps} of every family of both definitions, radius 1."""
    from RadiomicsLabLib.featuremaps import IBSI_FAMILIES, PYRADIOMICS_FAMILIES, feature_maps

    return {(definition, family): feature_maps(image, mask, [family], radius=1, definition=definition)
            for definition, families in (("ibsi", IBSI_FAMILIES), ("pyradiomics", PYRADIOMICS_FAMILIES))
            for family in families}


@pytest.fixture(scope="module")
def warmed(tmp_path_factory):
    """Warm-up into a fresh numba cache, compiling in two worker processes (whatever the machine's cores), then the
    maps in a new process using it: (warm-up report, child report, child values, environment)."""
    folder = tmp_path_factory.mktemp("numba-cache")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(folder / "numba"), XDG_CACHE_HOME=str(folder / "user-cache"),
               LOCALAPPDATA=str(folder / "user-cache"))
    env.pop("NUMBA_DISABLE_JIT", None)
    warm = subprocess.run([sys.executable, "-m", "RadiomicsLabLib.warmup", "--json", "--workers", "2"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert warm.returncode == 0, warm.stderr
    values = folder / "values.npz"
    child = subprocess.run([sys.executable, "-c", CHILD, str(values), str(Path(__file__).parent)], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
    assert child.returncode == 0, child.stderr
    with np.load(values) as arrays:
        stored = dict(arrays)
    return json.loads(warm.stdout), json.loads(child.stdout.strip().splitlines()[-1]), stored, env, folder


def test_warm_up_compiles_every_kernel_into_the_given_cache(warmed):
    from RadiomicsLabLib.jit import LOCK_NAME

    report, _child, _values, _env, folder = warmed
    assert report["compiled"] > 0   # a fresh cache: everything was compiled by the warm-up
    # ... in the two workers: the warm-up process itself then loaded every kernel and had nothing left to compile
    assert report["workers"] == 2 and "workers_failed" not in report
    assert report["compiled_here"] == 0, report["compiled_here"]
    assert list((folder / "numba").rglob(LOCK_NAME)), "the cache was written without the lock"
    assert report["cache_dirs"] and all(Path(d).is_relative_to(folder / "numba") for d in report["cache_dirs"])
    called = set(report["kernels"])
    for kernel in ("_first_order_block", "_local_intensity_block", "_pyradiomics_block", "_ngtdm_block",
                   "_ibsi_block"):
        assert f"featuremap_kernels.{kernel}" in called
    assert "observers.squared_edt" in called
    for kernel in ("_preprocessing_kernels.nonzero_box", "_preprocessing_kernels.trilinear",
                   "_texture_kernels.texture_tables", "_morphology_kernels.hull_boxes", "_texture_kernels.runs",
                   "_texture_kernels.zone_labels"):
        assert kernel in called, kernel  # the IBSI engine's compiled steps
    assert list((folder / "numba").rglob("*.nbi")) and list((folder / "numba").rglob("*.nbc"))


def test_new_process_after_warm_up_compiles_nothing(warmed):
    _report, child, _values, _env, _folder = warmed
    assert child["compiled"] == [], f"compiled in the new process: {child['compiled']}"
    stats = child["stats"]
    assert stats, "no kernel was called"
    for name, s in stats.items():
        assert s["misses"] == 0, f"{name} was compiled: {s}"
        assert s["hits"] >= 1, f"{name} was not loaded from the cache: {s}"
    for kernel in ("_first_order_block", "_local_intensity_block", "_pyradiomics_block", "_ngtdm_block",
                   "_ibsi_block"):
        assert stats[f"featuremap_kernels.{kernel}"]["hits"] >= 1
    assert stats["observers.squared_edt"]["hits"] == 1
    assert child["warm"] is True


def test_values_equal_the_maps_computed_without_the_warm_up(warmed):
    from scipy import ndimage

    _report, _child, values, _env, _folder = warmed
    import warnings

    from RadiomicsLabLib.extraction import extract
    from RadiomicsLabLib.warmup import IBSI_PRESETS

    image, mask = small_roi()
    here = every_map(image, mask)
    assert len(values) == len(here) + 1 + len(IBSI_PRESETS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ct, gtv = small_ct_roi()
        for preset in IBSI_PRESETS:
            expected = np.array([v.value for v in extract(ct, gtv, None, preset).values])
            assert expected.size > 100
            np.testing.assert_array_equal(values[f"engine|{preset}"], expected, err_msg=preset)
    for (definition, family), maps in here.items():
        key = f"{definition}|{family}|{'|'.join(maps.names)}"
        assert key in values, f"{definition} {family}: other features in the new process"
        assert maps.values.shape[0] > 20
        np.testing.assert_array_equal(values[key], maps.values, err_msg=f"{definition} {family}")
    feature = np.zeros((4, 5, 6), dtype=bool)
    feature[1, 2, 3] = True
    np.testing.assert_allclose(values["distances"], ndimage.distance_transform_edt(~feature, sampling=(2.0, 1.0, 1.0)))


def test_warmup_command_does_nothing_when_the_cache_is_current(warmed):
    _report, _child, _values, env, _folder = warmed
    run = subprocess.run([str(Path(sys.executable).parent / "radiomicslab"), "warmup", "--if-needed"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "already compiled" in run.stderr


def test_warm_up_whose_workers_fail_compiles_in_its_own_process(tmp_path, monkeypatch):
    """Where no worker process can do its part (here: starting them fails), the warm-up process runs every task
    itself and says so; the stamp is written either way."""
    from RadiomicsLabLib import warmup

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))

    def no_processes(workers, progress=None):
        raise OSError("cannot start a process here")

    monkeypatch.setattr(warmup, "compile_in_workers", no_processes)
    steps = []
    report = warmup.warm_up(progress=lambda done, total, text: steps.append((done, total, text)), workers=2)
    assert report["workers_failed"] == "OSError: cannot start a process here"
    assert report["compiled"] == report["compiled_here"]
    called = set(report["kernels"])
    assert {"featuremap_kernels._ibsi_block", "observers.squared_edt", "_texture_kernels.zone_labels"} <= called
    tasks = warmup.warm_up_tasks()
    assert [text for _, _, text in steps] == [warmup.describe_task(t) for t in tasks] + ["done"]
    assert "the worker processes failed (OSError: cannot start a process here)" in warmup.describe(report)
    assert warmup.is_warm()


@pytest.mark.skipif(os.name == "nt", reason="POSIX process tree")
def test_desktop_warm_up_compiles_at_a_lower_priority_and_cancelling_it_ends_its_processes(tmp_path, monkeypatch):
    """Desktop Slicer runs the warm-up in a worker process (a BackgroundRun, as start_in_background makes it), which
    compiles in worker processes of its own, at a lower priority than the rest (Slicer's window stays responsive while
    they take every core). Cancel (or Slicer's exit) terminates the warm-up's process; its compiling processes end
    too, within seconds, instead of compiling on and then waiting for work forever (as they did before they watched
    it)."""
    import time

    import psutil

    from RadiomicsLabLib import warmup
    from RadiomicsLabLib.background import BackgroundRun, Job

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))      # a fresh cache: seconds of compiling
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "stamp"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "stamp"))
    run = BackgroundRun(Job("Compiling RadiomicsLab's feature map kernels", warmup.warm_up, kwargs={"workers": 2}))
    descendants, compilers = [], []
    try:
        deadline = time.monotonic() + 120
        while len(compilers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            run.poll()
            descendants = psutil.Process(run._process.pid).children(recursive=True)
            compilers = [p for p in descendants if "spawn_main" in " ".join(p.cmdline())]
        assert len(compilers) == 2, "no compiling processes"
        lowered = psutil.Process().nice() + warmup.WORKER_NICENESS
        while time.monotonic() < deadline and not all(p.nice() >= lowered for p in compilers):
            time.sleep(0.1)     # until each has started (imports, then its initializer)
        assert all(p.nice() >= lowered for p in compilers), [p.nice() for p in compilers]
        time.sleep(2.0)     # compiling now
        run.cancel()
        gone, alive = psutil.wait_procs(descendants, timeout=15)
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        for process in descendants:
            if process.is_running():
                process.kill()


def test_every_kernel_reads_and_writes_its_cache_under_the_lock():
    from RadiomicsLabLib import warmup

    kernels = warmup.dispatchers()
    assert len(kernels) > 50
    for name, dispatcher in kernels.items():
        files = dispatcher._cache._cache_file
        for method in (files.save, files.load):
            assert getattr(method, "__wrapped__", None) is not None, f"{name}: its cache is not locked"


#: A process that saves 200 entries of its own into one kernel cache's index at a given time (a kernel compiled with
#: many signatures at once by several processes, at its worst).
SAVING_CHILD = r'''
import sys, time
from numba.core.caching import IndexDataCacheFile
from RadiomicsLabLib.jit import lock_cache_file

folder, tag, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
files = IndexDataCacheFile(folder, "kernel-1.py311", (0, 0))
lock_cache_file(files)
while time.time() < start:
    pass
for i in range(200):
    files.save(f"{tag}-{i}", f"data of {tag}-{i}")
'''


def test_processes_saving_entries_of_one_kernel_at_once_lose_none_and_mix_none(tmp_path):
    """numba's index of a kernel's cache is read, extended and written back by each process that compiles the kernel,
    with nothing between processes: without the lock, three processes saving 200 entries each at once kept about
    half of the 600 and a third of those named another entry's data (measured). Under the lock every entry is kept
    and names its own data."""
    import time

    from numba.core.caching import IndexDataCacheFile

    start = time.time() + 3.0
    children = [subprocess.Popen([sys.executable, "-c", SAVING_CHILD, str(tmp_path), tag, str(start)], cwd=ROOT)
                for tag in "ABC"]
    assert all(child.wait(timeout=300) == 0 for child in children)
    files = IndexDataCacheFile(str(tmp_path), "kernel-1.py311", (0, 0))
    index = files._load_index()
    assert sorted(index) == sorted(f"{tag}-{i}" for tag in "ABC" for i in range(200))
    assert all(files.load(key) == f"data of {key}" for key in index)


def test_a_cache_folder_that_cannot_hold_the_lock_is_used_unlocked(tmp_path):
    from RadiomicsLabLib.jit import _file_lock

    ran = []
    with _file_lock(str(tmp_path / "missing" / "radiomicslab-numba.lock")):
        ran.append(True)
    assert ran and not (tmp_path / "missing").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_process_forked_while_the_lock_is_held_does_not_keep_it(tmp_path):
    """A process forked while this one holds a cache lock (a cohort worker started by another thread while a kernel
    loads) gets a copy of the lock file's descriptor; an ``flock`` lock lasts while any copy is open, so were the lock
    only closed, not released, the child would hold it after the parent let go and every other process would wait."""
    import multiprocessing
    import time

    from RadiomicsLabLib.jit import LOCK_NAME, _file_lock

    lock = tmp_path / LOCK_NAME
    probe = ("import fcntl, os, sys\n"
             "descriptor = os.open(sys.argv[1], os.O_RDWR)\n"
             "fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)   # raises where another process holds it")
    with _file_lock(str(lock)):
        child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        child.start()
        held = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True)
    try:
        assert held.returncode != 0 and "BlockingIOError" in held.stderr     # the probe sees the lock held ...
        free = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True)
        assert free.returncode == 0, free.stderr                                 # ... and free once released
        assert child.is_alive()
    finally:
        child.terminate()
        child.join()


def test_stamp_follows_numba_cache_and_sources(tmp_path, monkeypatch):
    from RadiomicsLabLib import warmup

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "a"))
    assert not warmup.is_warm()
    warmup._write_stamp()
    assert warmup.is_warm() and warmup.stamp_path().is_relative_to(tmp_path)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "b"))   # another cache: warm up again
    assert not warmup.is_warm()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "a"))
    stamp = warmup.stamp()
    # every module of the package: the kernels' and their callers' (which choose the signatures compiled)
    assert set(stamp["sources"]) == {str(path) for path in (ROOT / "RadiomicsLabLib").rglob("*.py")}
    kernels = {str(ROOT.joinpath(*m.split(".")).with_suffix(".py")) for m in warmup.KERNEL_MODULES}
    assert kernels < set(stamp["sources"])
    original = warmup.stamp_path().read_text()
    for source in (sorted(kernels)[0], str(ROOT / "RadiomicsLabLib" / "ibsi" / "preprocessing.py")):
        edited = json.loads(original)
        edited["sources"][source][1] += 1   # a kernel source, or a caller's, changed
        warmup.stamp_path().write_text(json.dumps(edited))
        assert not warmup.is_warm()
    warmup.stamp_path().write_text(original)
    assert warmup.is_warm()


def test_desktop_module_compiles_the_kernels_in_a_worker_after_installing():
    """ensureDependencies() (after pip) and onStartupCompleted() (packages present) start the warm-up through
    RadiomicsLabLib.warmup.start_in_background (a BackgroundRun worker process) and poll it with a Qt timer."""
    source = (ROOT / "RadiomicsLab" / "RadiomicsLab.py").read_text(encoding="utf-8")
    functions = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    for name in ("ensureDependencies", "onStartupCompleted"):
        calls = [ast.unparse(c.func) for c in ast.walk(functions[name]) if isinstance(c, ast.Call)]
        assert "compileKernelsInBackground" in calls, name
    body = ast.unparse(functions["compileKernelsInBackground"])
    assert "start_in_background()" in body and "qt.QTimer()" in body and "testingEnabled()" in body
    assert "processEvents" not in body
    from RadiomicsLabLib import warmup

    assert "BackgroundRun(Job(" in Path(warmup.__file__).read_text(encoding="utf-8")


def test_desktop_module_keeps_a_worker_ready_and_loads_the_planning_once_the_kernels_are_compiled():
    """Both ends of compileKernelsInBackground (already compiled, or the warm-up worker done) call kernelsReady(),
    which keeps a worker ready with every kernel loaded and loads the maps' planning on a background thread."""
    source = (ROOT / "RadiomicsLab" / "RadiomicsLab.py").read_text(encoding="utf-8")
    functions = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    calls = [ast.unparse(c.func) for c in ast.walk(functions["compileKernelsInBackground"]) if isinstance(c, ast.Call)]
    assert calls.count("kernelsReady") == 2
    body = ast.unparse(functions["kernelsReady"])
    assert "keep_worker_ready(load_kernels)" in body and "threading.Thread(target=load_planning" in body


#: A new process: the maps' planning of brain1 (int16 MR, like the warm-up's sample) on the main thread, after
#: warmup.load_planning on a background thread (argument "preload") or without it; prints the kernel signatures the
#: main thread's planning loaded.
PLANNING_CHILD = r'''
import json, sys, threading
import SimpleITK as sitk
from RadiomicsLabLib import warmup
from RadiomicsLabLib.data import sample_case
if sys.argv[1] == "preload":
    thread = threading.Thread(target=warmup.load_planning)
    thread.start()
    thread.join()
image, mask = (sitk.ReadImage(str(path)) for path in sample_case("brain1"))
def loaded():
    return {name: len(d.overloads) for name, d in warmup.dispatchers().items()}
before = loaded()
from RadiomicsLabLib.featuremaps import plan_feature_maps
with warmup.CompileCounter() as counter:
    for definition in ("ibsi", "pyradiomics"):
        plan_feature_maps(image, mask, "glcm,firstorder", radius=1, definition=definition)
after = loaded()
print(json.dumps({"loaded": sorted(n for n in after if after[n] > before.get(n, 0)), "compiled": counter.compiled}))
'''


def test_planning_loaded_on_a_background_thread_leaves_the_main_thread_nothing_to_load():
    """After warmup.load_planning (desktop Slicer runs it on a background thread once the kernels are compiled), the
    first map's planning on the main thread loads no kernel signature (without it, it loads some: the check is not
    empty) and compiles nothing."""
    results = {}
    for mode in ("preload", "none"):
        run = subprocess.run([sys.executable, "-c", PLANNING_CHILD, mode], capture_output=True, text=True, cwd=ROOT,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        results[mode] = json.loads(run.stdout.strip().splitlines()[-1])
    assert results["none"]["loaded"], "the planning loads kernels: without the preload the main thread loads them"
    assert results["preload"] == {"loaded": [], "compiled": []}


#: A new process that imports every kernel module and calls one kernel; prints where numba cached it and its counters.
LOCKED_DOWN_CHILD = r'''
import json, warnings
import numba
import numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from RadiomicsLabLib import warmup
    warmup.dispatchers()                    # imports every kernel module
    from RadiomicsLabLib.ibsi._preprocessing_kernels import nonzero_box
mask = np.zeros((3, 4, 5), dtype=np.uint8)
mask[1, 2, 3] = 1
low, high = nonzero_box(mask)
print(json.dumps({"box": [low.tolist(), high.tolist()], "cache_dir": numba.config.CACHE_DIR,
                  "hits": sum(nonzero_box.stats.cache_hits.values()),
                  "misses": sum(nonzero_box.stats.cache_misses.values()),
                  "stamp_cache_dir": warmup.stamp()["NUMBA_CACHE_DIR"], "warnings": [str(w.message) for w in caught]}))
'''


def locked_down_copy(tmp_path) -> Path:
    """A copy of the package where no ``__pycache__`` can be made (a file of that name in every folder: refused to
    root too), so that numba finds no cache beside the sources."""
    import shutil

    copy = tmp_path / "install"
    shutil.copytree(ROOT / "RadiomicsLabLib", copy / "RadiomicsLabLib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    for folder in [copy / "RadiomicsLabLib", *(copy / "RadiomicsLabLib").rglob("*")]:
        if folder.is_dir():
            (folder / "__pycache__").write_text("")
    return copy


def run_locked_down(copy: Path, tmp_path, numba_cache_dir=None) -> dict:
    """LOCKED_DOWN_CHILD on ``copy`` with numba's user-wide cache folder unusable (under a file) and the temporary
    directory ``tmp_path / "tmp"``; ``$NUMBA_CACHE_DIR`` only when given."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(copy), XDG_CACHE_HOME=str(blocker / "cache"), HOME=str(blocker / "home"),
               TMPDIR=str(tmp_path / "tmp"))
    if numba_cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache_dir)
    done = subprocess.run([sys.executable, "-c", LOCKED_DOWN_CHILD], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kernels_are_cached_in_a_private_temporary_folder_where_numba_finds_no_writable_one(tmp_path):
    """No writable ``__pycache__`` beside the sources, no writable user cache, no ``$NUMBA_CACHE_DIR`` (a read-only
    installation in a locked-down container): numba used to raise "no locator available" on import, so every
    workflow failed. The kernels are now cached in ``<tmp>/radiomicslab-numba-<uid>`` (mode 0700; the same one in
    every process of the user, worker processes included), with a warning that says how to choose the folder: compiled
    by the first process, loaded from there by the next; the warm-up's stamp still reads ``$NUMBA_CACHE_DIR`` as unset,
    as a new process does before importing the kernels. A folder of that name that others may write to is not used
    (they could have planted compiled code): a new private one is."""
    copy = locked_down_copy(tmp_path)
    (tmp_path / "tmp").mkdir()
    folder = tmp_path / "tmp" / f"radiomicslab-numba-{os.getuid()}"
    first = run_locked_down(copy, tmp_path)
    assert first["box"] == [[1, 2, 3], [2, 3, 4]]
    assert first["cache_dir"] == str(folder) and (first["hits"], first["misses"]) == (0, 1)
    assert first["stamp_cache_dir"] == ""
    assert any("cached in" in w and "NUMBA_CACHE_DIR" in w for w in first["warnings"]), first["warnings"]
    assert folder.stat().st_mode & 0o777 == 0o700
    assert list(folder.rglob("*.nbi")), "nothing cached"
    second = run_locked_down(copy, tmp_path)
    assert (second["cache_dir"], second["hits"], second["misses"]) == (str(folder), 1, 0)

    folder.chmod(0o777)      # writable by others: not used
    third = run_locked_down(copy, tmp_path)
    assert third["cache_dir"] != str(folder) and Path(third["cache_dir"]).parent == tmp_path / "tmp"
    assert Path(third["cache_dir"]).stat().st_mode & 0o777 == 0o700 and third["box"] == first["box"]


def test_kernels_compile_uncached_where_numba_cache_dir_is_unusable(tmp_path):
    """``$NUMBA_CACHE_DIR`` set to a folder that cannot be made, and nowhere else to cache: the kernels still work,
    compiled in the process, with a warning that names the variable; no other folder is chosen behind the user's
    back."""
    copy = locked_down_copy(tmp_path)
    (tmp_path / "tmp").mkdir()
    found = run_locked_down(copy, tmp_path, numba_cache_dir=tmp_path / "a-file" / "numba")
    assert found["box"] == [[1, 2, 3], [2, 3, 4]]
    assert any("NUMBA_CACHE_DIR" in w and "compiled in every process" in w for w in found["warnings"]), \
        found["warnings"]
    assert not list((tmp_path / "tmp").iterdir())
