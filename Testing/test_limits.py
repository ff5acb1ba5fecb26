"""Sizes guarded before allocation (RadiomicsLabLib.limits): grey levels and texture matrices, on real images.

Before: ``binWidth: 1e-9`` made numpy try to allocate terabytes, and an image spanning the uint32 range made
pyradiomics fail with "IndexError: Calculation of GLCM Failed". Now each engine refuses such settings with one
message naming the setting and a value that works, and images at their type's limits work.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.extraction import extract
from RadiomicsLabLib.limits import MAX_GREY_LEVELS, check_texture_memory
from RadiomicsLabLib.settings import load_settings

ENGINES = ("native", "pyradiomics", "ibsi")


@pytest.fixture(scope="module")
def sarcoma_ct(data):
    folder = data / "sts" / "STS_001"
    return sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("setting, message", [
    ({"binWidth": 1e-9}, r"binWidth 1e-09 gives 234,000,000,001 grey levels .* \(intensities -84 to 150\); at most "
                         r"65,536 are allowed: use a larger binWidth \(e.g. 0.914, about 256 levels"),
    ({"binCount": 10**9}, r"binCount 1000000000 gives 1,000,000,000 grey levels .* use a binCount of 256 or less"),
])
def test_absurd_discretisations_are_refused_before_any_allocation(sarcoma_ct, engine, setting, message):
    with pytest.raises(RadiomicsLabError, match=message):
        extract(*sarcoma_ct, {"GTV": 1}, load_settings({"setting": setting}, engine=engine))


@pytest.mark.parametrize("engine", ENGINES)
def test_texture_matrices_that_do_not_fit_in_memory_are_refused(sarcoma_ct, engine):
    """0.01 HU bins over the GTV's 234 HU: ~23,400 levels, 13 GLCMs of 23,400^2 doubles (265 GiB with temporaries)."""
    with pytest.raises(RadiomicsLabError, match=r"23,[34]\d\d grey levels in .* need about 265 GiB for the texture "
                                                r"matrices \(13 of 23,[34]\d\d x 23,[34]\d\d\)"):
        extract(*sarcoma_ct, {"GTV": 1}, load_settings({"setting": {"binWidth": 0.01}}, engine=engine))


def test_first_order_alone_needs_no_texture_memory(sarcoma_ct):
    """Without texture classes, 0.01 HU bins (23,400 levels, under the level limit) are computed: the histogram is
    small. The CT is in whole HU, so each HU value is a bin of its own: entropy and uniformity of the HU counts."""
    params = {"featureClass": {"firstorder": ["Entropy", "Uniformity"]}, "setting": {"binWidth": 0.01}}
    values = extract(*sarcoma_ct, {"GTV": 1}, load_settings(params, engine="native")).as_dict("GTV")
    image, mask = (sitk.GetArrayFromImage(i) for i in sarcoma_ct)
    _, counts = np.unique(image[mask == 1], return_counts=True)
    p = counts / counts.sum()
    assert values["original_firstorder_Uniformity"] == pytest.approx(np.sum(p**2), rel=1e-12)
    assert values["original_firstorder_Entropy"] == pytest.approx(-np.sum(p * np.log2(p)), rel=1e-9)


def test_memory_rule():
    check_texture_memory(256, 13, limit=256**2 * 13 * 8 * 5)  # exactly fits
    with pytest.raises(RadiomicsLabError, match="256 grey levels in the region of interest need"):
        check_texture_memory(256, 13, limit=256**2 * 13 * 8 * 5 - 1)
    assert MAX_GREY_LEVELS == 2**16


def test_small_texture_matrices_do_not_read_the_available_memory(monkeypatch):
    """Matrices up to TEXTURE_MEMORY_UNCHECKED (a few hundred levels) pass without reading the available memory;
    larger ones are still weighed against it and refused where it is short."""
    import RadiomicsLabLib.limits as limits

    asked = []
    monkeypatch.setattr(limits, "available_memory", lambda: asked.append(1) or 2 * 2**30)
    check_texture_memory(256, 13)
    assert asked == [] and 256**2 * 13 * 8 * 5 <= limits.TEXTURE_MEMORY_UNCHECKED
    with pytest.raises(RadiomicsLabError, match="4,000 grey levels in the region of interest need"):
        check_texture_memory(4000, 13)      # 8.3 GB of matrices against 1 GiB
    assert asked == [1]


def uint32_image(reference: sitk.Image, array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint32))
    image.CopyInformation(reference)
    return image


@pytest.mark.parametrize("engine", ("native", "pyradiomics"))
def test_uint32_images_at_the_top_of_their_range_work(data, engine):
    """brain1's MR moved to the top of the uint32 range (max 2^32 - 1): the same features as the original image
    except those of the absolute intensities (bins of 25 aligned on multiples of 25: the shift is not one)."""
    image = sitk.ReadImage(str(data / "pyradiomics_cases" / "brain1_image.nrrd"))
    mask = sitk.ReadImage(str(data / "pyradiomics_cases" / "brain1_label.nrrd"))
    array = sitk.GetArrayFromImage(image).astype(np.int64)
    shift = 2**32 - 1 - int(array.max())
    shift -= shift % 25  # keep the bins aligned so the texture features must be identical
    moved = uint32_image(image, array + shift)
    assert sitk.GetArrayViewFromImage(moved).max() > 2**32 - 26
    settings = load_settings("pyradiomics-default", engine=engine)
    original = extract(image, mask, {"L": 1}, settings).as_dict("L")
    shifted = extract(moved, mask, {"L": 1}, settings).as_dict("L")
    for name in ("original_glcm_Contrast", "original_glrlm_RunEntropy", "original_glszm_ZoneEntropy",
                 "original_firstorder_Variance", "original_shape_MeshVolume"):
        assert shifted[name] == pytest.approx(original[name], rel=1e-9), name
    assert shifted["original_firstorder_Mean"] == pytest.approx(original["original_firstorder_Mean"] + shift, rel=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_uint32_image_spanning_its_whole_range_gives_the_clear_error(data, engine):
    """Half the ROI at 0, half at 2^32 - 1: 171,798,692 levels of width 25 (pyradiomics used to fail in its C code)."""
    image = sitk.ReadImage(str(data / "pyradiomics_cases" / "brain1_image.nrrd"))
    mask = sitk.ReadImage(str(data / "pyradiomics_cases" / "brain1_label.nrrd"))
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.int64)
    array[::2] = 2**32 - 1
    spec = "pyradiomics-default" if engine != "ibsi" else {"engine": "ibsi", "ibsi": {"bin_width": 25.0}}
    with pytest.raises(RadiomicsLabError, match=r"binWidth 25 gives 171,798,69\d grey levels"):
        extract(uint32_image(image, array), mask, {"L": 1}, load_settings(spec, engine=engine))


def test_command_line_says_it_in_one_line(data, tmp_path):
    params = tmp_path / "tiny_bins.yaml"
    params.write_text("setting:\n  binWidth: 1.0e-9\n")
    case = data / "sts" / "STS_001"
    result = subprocess.run([sys.executable, "-m", "RadiomicsLabLib.cli", "extract", str(case / "CT_image.nii.gz"),
                             str(case / "CT_mask.nii.gz"), "--params", str(params), "-o", str(tmp_path / "f.csv")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "binWidth 1e-09 gives 234,000,000,001" in result.stderr
    assert not (tmp_path / "f.csv").exists()


def test_compute_threads_are_the_cpus_of_the_process_or_fewer_where_the_environment_says(monkeypatch):
    """The engine's FFTs use the process's CPUs, and one thread where OMP_NUM_THREADS / NUMBA_NUM_THREADS say 1
    (a cohort worker's environment)."""
    import os

    from RadiomicsLabLib.limits import compute_threads

    for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert compute_threads() == cpus
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    assert compute_threads() == 1
    monkeypatch.setenv("NUMBA_NUM_THREADS", "not a number")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert compute_threads() == 1


def test_run_in_background_on_the_background_thread_or_at_once(monkeypatch):
    """With two threads allowed, the call runs on the process's background thread and its Future gives the result
    or the exception; with one (a cohort worker), it runs at once in the caller's thread."""
    import threading

    from RadiomicsLabLib.limits import run_in_background

    def where(fail=False):
        if fail:
            raise ValueError("failed in the background")
        return threading.current_thread().name

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    if (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()) >= 2:
        assert run_in_background(where).result().startswith("radiomicslab-background")
        with pytest.raises(ValueError, match="failed in the background"):
            run_in_background(where, True).result()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    future = run_in_background(where)
    assert future.done() and future.result() == threading.current_thread().name
    with pytest.raises(ValueError, match="failed in the background"):
        run_in_background(where, True).result()


def test_parts_in_background_wait_for_their_caller_with_one_thread_and_cancelled_ones_are_dropped(monkeypatch):
    """run_parts_in_background: with one thread no part is computed until the results are asked for (a caller that
    fails first has spent nothing), then all of them in order; with two, a BackgroundTasks block left by an error drops
    the parts not started yet (the one running ends), and results asked for later are still complete (those dropped
    computed by the caller)."""
    import threading

    from RadiomicsLabLib.limits import BackgroundTasks, run_in_background, run_parts_in_background

    calls, running, release = [], threading.Event(), threading.Event()

    def part(index):
        if index == 0 and threading.current_thread().name.startswith("radiomicslab-background"):
            running.set()
            release.wait(30)
        calls.append(index)
        return index * index

    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    results = run_parts_in_background(part, [(k,) for k in range(4)])
    assert calls == [] and results() == [0, 1, 4, 9] and sorted(calls) == [0, 1, 2, 3]
    if (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()) < 2:
        return
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    calls.clear()
    with pytest.raises(ValueError, match="the caller failed"):
        with BackgroundTasks():
            results = run_parts_in_background(part, [(k,) for k in range(4)])
            assert running.wait(30)
            raise ValueError("the caller failed")
    release.set()
    run_in_background(lambda: None).result()
    assert calls == [0]
    assert results() == [0, 1, 4, 9] and sorted(calls) == [0, 1, 2, 3]


def test_run_in_background_in_a_forked_child(monkeypatch):
    """A child forked after the background thread exists (none of the parent's threads run there) gets a thread of
    its own instead of waiting forever on the parent's."""
    import multiprocessing

    from RadiomicsLabLib.limits import run_in_background

    if not hasattr(os, "fork") or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1) < 2:
        pytest.skip("needs fork and two CPUs")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert run_in_background(os.getpid).result() == os.getpid()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_background_pid_in_child).get(timeout=60)
    assert child != os.getpid()


def _background_pid_in_child() -> int:
    from RadiomicsLabLib.limits import run_in_background

    return run_in_background(os.getpid).result(timeout=30)


def test_run_in_background_holds_an_object_until_the_call_ends(monkeypatch):
    """``holding`` (e.g. the SimpleITK image an argument is a view of) lives while the call runs, also when the
    caller has dropped it, and is let go after."""
    import gc
    import threading
    import weakref

    from RadiomicsLabLib.limits import run_in_background

    class Owner:
        pass

    if (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()) < 2:
        pytest.skip("needs two CPUs (with one, the call runs at once)")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    owner, release = Owner(), threading.Event()
    alive = weakref.ref(owner)
    future = run_in_background(release.wait, 30, holding=owner)
    del owner
    gc.collect()
    assert alive() is not None
    release.set()
    assert future.result() is True
    gc.collect()
    assert alive() is None


def test_parts_not_started_in_the_background_are_computed_by_the_caller(monkeypatch):
    """run_parts_in_background: the results in the parts' order; the parts no background thread has started when the
    caller asks (the thread busy with an earlier task here) are computed in the caller's thread, from the last one
    back, and their tasks cancelled; an error in a part reaches the caller."""
    import threading

    from RadiomicsLabLib.limits import run_in_background, run_parts_in_background

    if (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()) < 2:
        pytest.skip("needs two CPUs (with one, every part runs at once)")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")     # one background thread
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    where = []

    def part(k):
        where.append((k, threading.current_thread().name))
        if k == "fail":
            raise ValueError("part failed")
        return k * k

    release = threading.Event()
    busy = run_in_background(release.wait, 30)
    results = run_parts_in_background(part, [(k,) for k in range(5)])
    assert results() == [0, 1, 4, 9, 16]
    assert where == [(k, threading.current_thread().name) for k in (4, 3, 2, 1, 0)]
    release.set()
    assert busy.result() is True
    where.clear()
    assert run_parts_in_background(part, [(k,) for k in range(3)])() == [0, 1, 4]
    assert len(where) == 3
    with pytest.raises(ValueError, match="part failed"):
        run_parts_in_background(part, [(1,), ("fail",)])()


def test_background_threads_run_off_the_callers_cpu(monkeypatch):
    """Linux, two CPUs or more: a task runs on the process's CPUs except the one its caller was on when it submitted
    it (a kernel that puts a woken thread on its waker's CPU would otherwise make the caller wait for the task it
    handed off); the caller's own affinity is left as it is, and tasks from a caller on another CPU follow it. A task
    submitted with ``all_cpus`` (threads of its own) runs on every CPU, and the next task is kept off again."""
    from RadiomicsLabLib import limits

    if not hasattr(os, "sched_setaffinity") or limits._current_cpu() is None or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs Linux's sched_getcpu and two CPUs")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    allowed = os.sched_getaffinity(0)
    limits.run_in_background(lambda: None).result(timeout=30)     # the background thread made on every CPU
    try:
        for cpu in sorted(allowed)[:2]:
            os.sched_setaffinity(0, {cpu})          # the caller on one CPU; a process of 2 CPUs still
            monkeypatch.setattr(limits, "compute_threads", lambda: 2)
            task_cpus, task_cpu = limits.run_in_background(
                lambda: (os.sched_getaffinity(0), limits._current_cpu())).result(timeout=30)
            assert os.sched_getaffinity(0) == {cpu}
            assert task_cpus == allowed - {cpu} and task_cpu in task_cpus
            # a task that runs threads of its own may use every CPU once it has started
            assert limits.run_in_background(lambda: os.sched_getaffinity(0), all_cpus=True).result(30) == allowed
            assert limits.run_in_background(lambda: os.sched_getaffinity(0)).result(30) == allowed - {cpu}
    finally:
        os.sched_setaffinity(0, allowed)
