"""Long work off the main thread (RadiomicsLabLib.background), checked the way desktop Slicer uses it.

Desktop Slicer is not installable here, so its main loop is a Python loop that ticks every 50 ms and calls
``BackgroundRun.poll()`` as the module's Qt timer does; a stall is how late a tick runs plus how long its poll takes.
The jobs are real ones (feature extraction and maps of real images through the scene) in real spawned worker
processes. The worker executable is checked with a launcher-like ``sys.executable`` (a fake Slicer tree whose
``PythonSlicer`` dies when started as a multiprocessing child, as in Slicer issue #7445).
"""

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib.background import (BackgroundRun, Job, JobCancelled, WorkerFailed, worker_info, worker_python)
from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.mrml import ExtractionLogic
from RadiomicsLabLib.mrml.featuremaps import FeatureMapLogic

ROOT = Path(__file__).resolve().parent.parent

TICK_S = 0.05
MAX_STALL_S = 0.5
CANCEL_WITHIN_S = 2.0


def tick_until(run, seconds: float) -> float:
    """Tick like a GUI main loop for ``seconds`` (or until the run ends, the tick that lands the result included);
    the longest stall: how late a tick ran after its due time, plus the time its ``poll()`` held the loop."""
    worst, due, end = 0.0, time.monotonic(), time.monotonic() + seconds
    while True:
        running = run.poll()
        now = time.monotonic()
        worst = max(worst, now - due)
        if not running or now >= end:
            return worst
        time.sleep(TICK_S)
        due = now + TICK_S


def node_ids(scene) -> list:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def sample_in_scene(data, scene, case: str):
    """A pyradiomics sample case's image and label loaded into ``scene``: (loader logic, volume, segmentation)."""
    logic = ExtractionLogic(scene)
    volume = logic.load_volume(data / "pyradiomics_cases" / f"{case}_image.nrrd")
    return logic, volume, logic.load_segmentation(data / "pyradiomics_cases" / f"{case}_label.nrrd", volume)


@pytest.fixture
def sarcoma_ct(data, scene):
    """STS_001's CT and GTV through the scene (the largest ROI of the shared cases)."""
    logic = ExtractionLogic(scene)
    volume = logic.load_volume(data / "sts" / "STS_001" / "CT_image.nii.gz")
    segmentation = logic.load_segmentation(data / "sts" / "STS_001" / "CT_mask.nii.gz", volume)
    return logic, volume, segmentation


def test_long_job_keeps_the_main_loop_ticking_and_cancel_leaves_the_scene_as_it_was(sarcoma_ct, scene):
    """IBSI GLCM + GLRLM maps of radius 3 over a whole sarcoma GTV take minutes on 2 cores (numba compiles first):
    the loop never stalls over 0.5 s for 8 s, progress arrives, Cancel ends the worker within 2 s, and no node
    was added."""
    _, volume, segmentation = sarcoma_ct
    maps = FeatureMapLogic(scene)
    before = node_ids(scene)
    job = maps.compute_job(volume, segmentation, "Label_1", features="glcm,glrlm", radius=3, definition="ibsi")
    run = BackgroundRun(job)
    stall = tick_until(run, 8.0)
    assert run.running, "the job should still be running after 8 s (pick a longer one)"
    assert stall < MAX_STALL_S, f"the main loop stalled {stall:.2f} s"
    assert run.progress[1] > 0, "no progress report came from the worker"
    started = time.monotonic()
    run.cancel()
    while run.worker_alive and time.monotonic() - started < CANCEL_WITHIN_S + 1:
        time.sleep(0.01)
    assert not run.worker_alive and time.monotonic() - started < CANCEL_WITHIN_S
    assert run.state == "cancelled" and not run.poll()
    with pytest.raises(JobCancelled, match="nothing was added"):
        run.result()
    assert node_ids(scene) == before


def test_background_extraction_lands_the_same_table_as_the_console_call(data, scene):
    logic, volume, segmentation = sample_in_scene(data, scene, "brain1")
    in_thread = logic.feature_values(logic.extract(volume, segmentation))
    n_nodes = scene.GetNumberOfNodes()
    run = BackgroundRun(logic.extract_job(volume, segmentation))
    assert scene.GetNumberOfNodes() == n_nodes, "nothing may be added before the job lands"
    table = run.wait(timeout=300)
    assert run.state == "done" and table.IsA("vtkMRMLTableNode") and scene.GetNodeByID(table.GetID()) is table
    assert logic.feature_values(table) == in_thread          # the same doubles as the in-thread call
    assert len(in_thread) == 107


def test_background_maps_equal_the_in_thread_maps(data, scene):
    logic, volume, segmentation = sample_in_scene(data, scene, "brain2")
    maps = FeatureMapLogic(scene)
    options = dict(features="glcm_Contrast,firstorder_Mean", radius=1, definition="pyradiomics")
    direct = maps.compute(volume, segmentation, "Label_1", **options)
    messages = []
    run = BackgroundRun(maps.compute_job(volume, segmentation, "Label_1", **options))
    while run.poll():
        messages.append(run.progress)
        time.sleep(TICK_S)
    result = run.result()
    assert set(result.maps) == set(direct.maps) == {"glcm_Contrast", "firstorder_Mean"}
    for name in direct.maps:
        assert (result.values.array(name).tobytes() == direct.values.array(name).tobytes()), name
    assert any("feature map" in message for _, _, message in messages)  # the plan's description came first


def test_landing_many_maps_keeps_the_main_loop_ticking_and_the_nodes_hold_the_cores_maps(data, scene):
    """Every pyradiomics map of brain1 (93 volumes): the voxels are filled and the summary computed on the
    background thread that receives the result (``Job.before_land``), so landing only adds nodes. Before, the main
    thread built each map through SimpleITK and Slicer's default display node (a histogram of the whole volume):
    a 3 s stall on this case. The nodes hold exactly the core's maps over the mask's bounding box (voxels, NaN outside
    the mask, geometry) and their display shows the defined values."""
    from vtk.util.numpy_support import vtk_to_numpy

    from RadiomicsLabLib.featuremaps import run_plan
    from RadiomicsLabLib.mrml.convert import volume_to_sitk
    from RadiomicsLabLib.mrml.featuremaps import MapLanding

    logic, volume, segmentation = sample_in_scene(data, scene, "brain1")
    maps = FeatureMapLogic(scene)
    options = dict(features="all", radius=1, definition="pyradiomics")
    job = maps.compute_job(volume, segmentation, "Label_1", **options)
    assert job.before_land == MapLanding.of
    core = run_plan(*job.args)
    run = BackgroundRun(maps.compute_job(volume, segmentation, "Label_1", **options))
    stall = tick_until(run, 300.0)
    result = run.result()
    assert stall < MAX_STALL_S, f"the main loop stalled {stall:.2f} s"
    assert len(result.maps) == len(core) == 93
    box = result.values.box
    label = np.nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(data / "pyradiomics_cases" / "brain1_label.nrrd"))))
    assert box == tuple(slice(int(i.min()), int(i.max()) + 1) for i in label)   # the label's bounding box
    for name in ("firstorder_Mean", "glcm_Contrast", "ngtdm_Busyness"):
        node = result.maps[name]
        voxels = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars())
        whole = sitk.GetArrayFromImage(result.values[name])
        expected = whole[box].ravel()
        assert voxels.tobytes() == expected.tobytes(), name     # NaN outside the mask included
        assert np.isnan(np.delete(whole.ravel(), result.values.flat)).all()   # nothing defined outside the box
        np.testing.assert_allclose(result.values.array(name), core.array(name), rtol=1e-12)
        image, cropped = volume_to_sitk(node), result.values[name][tuple(box[::-1])]   # SimpleITK slices (x, y, z)
        assert (image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()) == \
            (cropped.GetSize(), cropped.GetSpacing(), cropped.GetOrigin(), cropped.GetDirection())
        values = core.array(name)
        display = node.GetDisplayNode()
        assert not display.GetAutoWindowLevel() and display.GetApplyThreshold()
        assert (display.GetLowerThreshold(), display.GetUpperThreshold()) == (np.nanmin(values), np.nanmax(values))


def test_user_error_in_the_worker_comes_back_as_the_same_clear_error(scene):
    """A check that only the computation can make (here: a bin width giving too many grey levels would be caught
    up front, so use a settings object the worker rejects) is raised by result() with its message; no node."""
    job = Job("Failing job", _raise_user_error, ("The mask is empty; draw a segment first.",))
    n_nodes = scene.GetNumberOfNodes()
    run = BackgroundRun(job)
    with pytest.raises(RadiomicsLabError, match="^The mask is empty; draw a segment first.$"):
        run.wait(timeout=120)
    assert run.state == "failed" and scene.GetNumberOfNodes() == n_nodes


def _raise_user_error(message, progress=None):
    raise RadiomicsLabError(message)


def _crash(code, progress=None):
    os._exit(code)  # as a worker killed by the system (out of memory) ends: no result, no exception


def test_a_crashing_worker_is_reported_not_waited_for():
    run = BackgroundRun(Job("Crashing job", _crash, (3,)))
    with pytest.raises(WorkerFailed, match="ended without a result"):
        run.wait(timeout=120)
    assert "exit code 3" in str(run.error)


class _Unpicklable(Exception):
    """A job's error that cannot travel back as it is (it holds a lock)."""


def _raise_unpicklable(progress=None):
    error = _Unpicklable("segment 'GTV' has 0 voxels after resampling")
    error.lock = threading.Lock()
    raise error


def test_an_error_that_cannot_be_sent_back_keeps_its_message_and_traceback():
    """A job's error that cannot be pickled comes back as its type, its message and its traceback in the worker,
    not as the pickling error."""
    with pytest.raises(WorkerFailed, match="_Unpicklable: segment 'GTV' has 0 voxels after resampling") as caught:
        BackgroundRun(Job("Failing job", _raise_unpicklable)).wait(timeout=120)
    assert "in _raise_unpicklable" in str(caught.value) and "pickle" not in str(caught.value)


def _parallel_pids(progress=None):
    """(whether this process is a daemon, its pid, the pids joblib's two workers ran the tasks in)."""
    import multiprocessing

    from joblib import Parallel, delayed

    pids = set(Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(8)))
    return multiprocessing.current_process().daemon, os.getpid(), pids


def test_a_job_may_start_processes_of_its_own():
    """A study's cross-validation runs on joblib's worker processes: inside a job's worker too (a daemonic process
    may start none, and joblib then ran every fold in the worker itself, on one core)."""
    daemon, worker, pids = BackgroundRun(Job("Parallel job", _parallel_pids)).wait(timeout=120)
    assert not daemon and worker not in pids and len(pids) >= 1


def _started_then_busy(progress=None):
    progress(0, 1, "started")
    end = time.monotonic() + 120
    while time.monotonic() < end:    # no further progress report, where a cancel would otherwise be noticed
        pass


@pytest.mark.skipif(os.name == "nt", reason="a POSIX shell wrapper")
def test_cancel_ends_a_worker_behind_a_wrapper_of_the_interpreter(tmp_path, monkeypatch):
    """The worker's executable may be a wrapper script that runs the interpreter as its child rather than in its place
    (``exec``): Cancel terminates the wrapper, and the interpreter behind it ends too, within a second or two, instead
    of computing on, orphaned (it watches the process that started it)."""
    import multiprocessing
    import multiprocessing.spawn

    import psutil

    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\n"{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    original = multiprocessing.spawn.get_executable()
    monkeypatch.setenv("RADIOMICSLAB_WORKER_PYTHON", str(wrapper))
    behind = []
    try:
        run = BackgroundRun(Job("Busy job", _started_then_busy))
        deadline = time.monotonic() + 60
        while run.progress[2] != "started" and time.monotonic() < deadline:
            run.poll()
            time.sleep(0.05)
        behind = psutil.Process(run._process.pid).children()
        assert [p.cmdline()[0] for p in behind] == [sys.executable]
        run.cancel()
        gone, alive = psutil.wait_procs(behind, timeout=10)
        assert alive == [], [p.pid for p in alive]
    finally:
        multiprocessing.set_executable(original)
        for process in behind:
            if process.is_running():
                process.kill()


def test_worker_python_is_this_interpreter_outside_slicer():
    assert worker_python() == sys.executable
    assert worker_info()["version"] == "%d.%d" % sys.version_info[:2]


#: Runs with sys.executable set to a fake Slicer's PythonSlicer launcher (what desktop Slicer sets it to).
LAUNCHER_SCRIPT = textwrap.dedent("""
    import sys
    sys.executable = sys.argv[1]
    from RadiomicsLabLib.background import BackgroundRun, Job, worker_info, worker_python
    from RadiomicsLabLib.batch import dask_client
    print("worker_python", worker_python())
    run = BackgroundRun(Job("Which Python", worker_info))
    print("job", run.wait(timeout=120)["started_by"])
    with dask_client(workers=2) as client:
        started = client.run(worker_info)
    print("dask", sorted(info["started_by"] for info in started.values()))
""")


def fake_slicer(tmp_path, with_python_real=True):
    """A Slicer-like installation: bin/PythonSlicer (a launcher that dies when started as a multiprocessing
    child, Slicer issue #7445) and bin/python-real (the interpreter; marks the processes it starts)."""
    bin_dir = tmp_path / "Slicer-5.10.0-linux-amd64" / "bin"
    bin_dir.mkdir(parents=True)
    launcher = bin_dir / "PythonSlicer"
    launcher.write_text("#!/bin/sh\necho 'PythonSlicer: launcher child ended before reading its start-up data' >&2\n"
                        "exit 1\n")
    launcher.chmod(0o755)
    if with_python_real:
        python_real = bin_dir / "python-real"
        python_real.write_text(f"#!/bin/sh\nexport RADIOMICSLAB_STARTED_BY=python-real\nexec '{sys.executable}' \"$@\"\n")
        python_real.chmod(0o755)
    return launcher


def run_with_launcher(launcher):
    env = {k: v for k, v in os.environ.items() if k != "RADIOMICSLAB_WORKER_PYTHON"}
    return subprocess.run([sys.executable, "-c", LAUNCHER_SCRIPT, str(launcher)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_workers_start_with_slicers_python_real_when_sys_executable_is_the_launcher(tmp_path):
    """Both the background jobs and a real Dask LocalCluster's two workers start with python-real."""
    launcher = fake_slicer(tmp_path)
    result = run_with_launcher(launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["worker_python"] == str(launcher.parent / "python-real")
    assert lines["job"] == "python-real"
    assert lines["dask"] == "['python-real', 'python-real']"


def test_without_python_real_the_error_says_what_to_set(tmp_path):
    result = run_with_launcher(fake_slicer(tmp_path, with_python_real=False))
    assert result.returncode != 0
    assert "Set RADIOMICSLAB_WORKER_PYTHON to the Slicer installation's bin/python-real" in result.stderr


def child_processes() -> list[int]:
    """PIDs of this process's children (Linux /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                children.append(int(entry))
    return children


def _prepare_worker():
    """A ready worker's preparation, seen by the jobs it runs."""
    os.environ["RADIOMICSLAB_TEST_PREPARED"] = str(os.getpid())


def _worker_state(progress=None):
    return os.getpid(), os.environ.get("RADIOMICSLAB_TEST_PREPARED"), os.environ.get("RADIOMICSLAB_TEST_MARK")


def _sleep(seconds, progress=None):
    time.sleep(seconds)


def test_a_worker_kept_ready_runs_the_next_job_prepared_and_a_new_one_is_started_after_it(monkeypatch):
    """Desktop Slicer keeps one worker started ahead of the next job (keep_worker_ready): the job runs in it, after
    its preparation; when the job ends (done, or cancelled: the worker is terminated) the next ready worker is
    started for the next job; stopping leaves no worker process behind."""
    from RadiomicsLabLib import background

    before = set(child_processes())
    background.keep_worker_ready(_prepare_worker)
    try:
        used = []
        for job in (Job("Which worker", _worker_state), Job("Long job", _sleep, (60,)), Job("Which worker", _worker_state)):
            ready = background._ready.process.pid
            run = BackgroundRun(job)
            assert run._process.pid == ready and background._ready is None   # taken, not yet replaced
            if job.compute is _sleep:
                time.sleep(0.5)
                run.cancel()
                with pytest.raises(JobCancelled):
                    run.wait(timeout=30)
            else:
                pid, prepared, _ = run.wait(timeout=120)
                assert pid == ready and prepared == str(ready)   # prepared before it read the job
            used.append(ready)
            deadline = time.monotonic() + 30
            while (background._ready is None or background._ready.process.pid == ready) and time.monotonic() < deadline:
                time.sleep(0.01)   # the next one starts once the job's worker is reaped
            assert background._ready.process.is_alive() and background._ready.process.pid not in used
    finally:
        background.stop_keeping_worker_ready()
    def command(pid) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:   # ended meanwhile
            return b""

    def workers_left():   # multiprocessing's resource tracker (started with the first worker) stays, as always
        return {pid for pid in set(child_processes()) - before if b"resource_tracker" not in command(pid)}

    deadline = time.monotonic() + 10
    while workers_left() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workers_left() and background._ready is None
    run = BackgroundRun(Job("Which worker", _worker_state))   # a worker of its own again
    assert run.wait(timeout=120)[1] is None


def test_a_ready_worker_started_under_other_conditions_is_not_used(monkeypatch):
    """A job sees this process's environment as it is when the job starts: a ready worker started before a change
    (here an environment variable; likewise sys.path, the working folder, the executable) is replaced by a new one."""
    from RadiomicsLabLib import background

    background.keep_worker_ready(_prepare_worker)
    try:
        stale = background._ready.process
        monkeypatch.setenv("RADIOMICSLAB_TEST_MARK", "set after the ready worker started")
        pid, prepared, mark = BackgroundRun(Job("Which worker", _worker_state)).wait(timeout=120)
        assert pid != stale.pid and prepared is None and mark == "set after the ready worker started"
        stale.join(5)
        assert not stale.is_alive()
    finally:
        background.stop_keeping_worker_ready()


def test_cohort_with_workers_0_runs_in_this_process_in_the_background(data, scene, tmp_path):
    """The desktop Cohort section's Workers = 0: the cases run in Slicer's own process (no worker process is
    started), on a background thread, while the main loop keeps ticking and polls the status table."""
    from RadiomicsLabLib.mrml.cohort import CohortLogic

    cases = data / "pyradiomics_cases"
    cohort_path = tmp_path / "cohort.csv"
    cohort_path.write_text("id,image,mask\n" + "".join(
        f"{case},{cases / f'{case}_image.nrrd'},{cases / f'{case}_label.nrrd'}\n" for case in ("brain2", "breast1")))
    logic = CohortLogic(scene)
    cohort = logic.load_cohort(cohort_path)
    before = set(child_processes())
    logic.start(cohort, tmp_path / "out", settings={"featureClass": {"firstorder": [], "glcm": []},
                                                    "setting": {"binCount": 16}}, workers=0)
    table = logic.status_table(cohort, tmp_path / "out")
    worst, last, spawned = 0.0, time.monotonic(), set()
    while logic.is_running():
        logic.status_table(cohort, tmp_path / "out", table)
        spawned |= set(child_processes()) - before
        time.sleep(TICK_S)
        now = time.monotonic()
        worst, last = max(worst, now - last - TICK_S), now
    summary = logic.wait()
    assert summary.computed == 2 and not spawned
    assert worst < MAX_STALL_S, f"the main loop stalled {worst:.2f} s"
