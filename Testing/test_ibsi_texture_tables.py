"""A 3D extraction's texture tables counted in one call (RadiomicsLabLib.ibsi.features.texture_tables) and the Roi's
started values (Roi.start_derived): the same tables and features as each family counting its own, on the background
thread, at once, or where the thread has not started them."""

import threading

import numpy as np
import pytest

from RadiomicsLabLib import limits
from RadiomicsLabLib.ibsi import engine
from RadiomicsLabLib.ibsi.config import IbsiSettings
from RadiomicsLabLib.ibsi.discretisation import discretise
from RadiomicsLabLib.ibsi.engine import features_of_roi
from RadiomicsLabLib.ibsi.features import _texture_kernels, texture_tables, zones
from RadiomicsLabLib.ibsi.features import morphology
from RadiomicsLabLib.ibsi.roi import Roi

TEXTURE = ("glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm")


def _roi(size=16, **settings):
    """A discretised sarcoma-like ROI (a noisy gradient in an ellipsoid, re-segmented) and its settings."""
    rng = np.random.default_rng(7)
    z, y, x = np.mgrid[:size, :size + 3, :size + 1]
    mask = ((z - size / 2) ** 2 + (y - size / 2 - 1) ** 2 + (x - size / 2) ** 2) <= ((size - 2) / 2.0) ** 2
    image = np.rint(rng.normal(size=mask.shape) * 25.0 + x * 10.0)
    roi = Roi.from_arrays(image, mask, (2.0, 2.0, 2.0))
    roi.intensity_mask &= image < np.percentile(image[mask], 92)
    settings = IbsiSettings(discretisation="FBS", bin_width=20.0, **settings)
    return discretise(roi, settings), settings


def _own_tables(roi, settings):
    """Each table as its family counts it without start (a fresh Roi: nothing cached)."""
    return {"cooccurrence": texture_tables.cooccurrence(roi, settings.glcm_distance),
            "runs": texture_tables.run_lengths(roi),
            "zones": zones.roi_zone_labels(roi, False),
            "neighbourhood": zones.neighbourhood_counts(roi, settings, settings.ngtdm_distance, False)}


def _assert_same(a, b):
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        np.testing.assert_array_equal(a, b)
        assert np.asarray(a).dtype == np.asarray(b).dtype


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("settings", [{}, {"glcm_distance": 2, "ngtdm_distance": 2, "ngldm_distance": 2,
                                           "ngldm_coarseness": 1}])
def test_tables_counted_in_one_call_equal_each_familys_own(monkeypatch, threads, settings):
    """start counts the GLCM's co-occurrences, the GLRLM's runs, the zones and the neighbourhoods (at the settings'
    distances and coarseness) in one call, on the background thread or at once, or here: each the table its
    family counts itself."""
    monkeypatch.setattr(limits, "compute_threads", lambda: threads)
    own = _own_tables(*_roi(**settings))
    for here in (False, True):
        roi, settings_ = _roi(**settings)
        future = texture_tables.start(roi, settings_, TEXTURE, here=here)
        assert (future is None) == here
        started = _own_tables(roi, settings_)
        for name in own:
            _assert_same(started[name], own[name])


def test_only_the_tables_the_families_read_are_started_and_none_without_3d(monkeypatch):
    """Tables of families not requested are not kept (their arguments are an empty grid); the NGLDM's neighbourhood
    where there is no NGTDM; nothing for in-plane dimensions only, a GLCM distance the GLCM refuses, or no texture
    family."""
    monkeypatch.setattr(limits, "compute_threads", lambda: 1)
    roi, settings = _roi(ngldm_distance=2)
    texture_tables.start(roi, settings, ("glszm", "ngldm", "statistics"))
    assert zones.zone_labels_key(False) in roi.cache and ("cooccurrence_counts", 1) not in roi.cache
    assert "run_length_counts" not in roi.cache
    coarseness = zones.dependence_coarseness(settings)
    assert zones.neighbourhood_key(2, False, coarseness) in roi.cache
    assert zones.neighbourhood_key(1, False, coarseness) not in roi.cache
    for families, changes in (((*TEXTURE,), {"dimensions": ("2D", "2.5D")}), (("glcm",), {"glcm_distance": 0}),
                              (("statistics", "morphology"), {})):
        roi, settings = _roi(**changes)
        assert texture_tables.start(roi, settings, families) is None
        assert not any(isinstance(key, tuple) and key[0] in ("cooccurrence_counts", "zone_labels", "neighbourhood")
                       for key in roi.cache)


def test_a_call_not_started_by_the_background_thread_is_computed_once_by_the_caller(monkeypatch):
    """Roi.start_derived: the thread busy with an earlier task, the first key read cancels the call and computes it in
    the caller's thread, once for every key; the values are the call's; a key of None is not kept."""
    monkeypatch.setattr(limits, "compute_threads", lambda: 2)
    calls = []

    def tables(a, b):
        calls.append(threading.current_thread().name)
        return a * 2, b + 1, "dropped"

    release = threading.Event()
    busy = limits.run_in_background(release.wait, 30)
    try:
        roi = _roi()[0]
        future = roi.start_derived(["a", "b", None], tables, np.arange(3), 5)
        assert roi.derived("a", lambda: pytest.fail("made instead of read")).tolist() == [0, 2, 4]
        assert future.cancelled()
        assert roi.derived("b", lambda: pytest.fail("made instead of read")) == 6
        assert calls == [threading.current_thread().name] and None not in roi.cache
    finally:
        release.set()
    assert busy.result(timeout=30) is True
    # started on the background thread: its result
    roi = _roi()[0]
    future = roi.start_derived(["a", "b", None], tables, np.arange(3), 5)
    assert future.result(timeout=30)[1] == 6 and roi.derived("b", lambda: None) == 6
    assert calls[-1].startswith("radiomicslab-background")


def test_texture_kernel_errors_reach_the_family(monkeypatch):
    """An error of the counting call comes from the family that reads its table, as it would from its own count."""
    monkeypatch.setattr(limits, "compute_threads", lambda: 2)

    def failing(*args):
        raise MemoryError("no room for the tables")

    monkeypatch.setattr(_texture_kernels, "texture_tables", failing)
    roi, settings = _roi()
    with pytest.raises(MemoryError, match="no room"):
        features_of_roi(roi, settings, ("statistics", "glcm"))


@pytest.mark.parametrize("size, background", [(16, True), (44, False)])
def test_the_engine_counts_the_tables_beside_the_other_families_with_the_same_features(monkeypatch, size,
                                                                                       background):
    """With two threads, features_of_roi starts the tables on the background thread for a small ROI and counts them
    at once for a large one (whose Moran's sums have the thread); every value and note equals one thread's, and
    equals each family computed on its own."""
    starts = []
    start = texture_tables.start

    def recording(roi, settings, families, here=False):
        starts.append(here)
        return start(roi, settings, families, here=here)
    monkeypatch.setattr(texture_tables, "start", recording)
    families = ("morphology", "statistics", *TEXTURE)
    results = {}
    for threads in (1, 2):
        for module in (limits, engine, morphology):
            monkeypatch.setattr(module, "compute_threads", lambda threads=threads: threads)
        roi, settings = _roi(size)
        results[threads] = features_of_roi(roi, settings, families)
    assert starts == [False, not background]
    separate, notes = {}, []
    for name in families:
        roi, settings = _roi(size)
        separate.update(engine.family_module(name).compute(roi, settings))
        notes += roi.notes
    for result in results.values():
        assert list(result.values) == list(separate) and result.notes == notes
        np.testing.assert_array_equal(list(result.values.values()), list(separate.values()))
