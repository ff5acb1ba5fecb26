"""The IBSI engine: preprocessing, optional chapter 2 filter, discretisation and every feature family.

``compute_features(image, mask, settings)`` returns IBSI-tagged values (``morph_volume``,
``cm_contrast_3D_avg``, ...), the preprocessing diagnostics and notes on undefined features;
``feature_registry()`` describes every feature the families compute (name, unit, description, IBSI ids).
"""

import concurrent.futures
import functools
import importlib
import time
from dataclasses import dataclass, field

import SimpleITK as sitk

from ..limits import check_texture_memory, compute_threads
from .config import IbsiSettings
from .discretisation import discretise
from .roi import Roi

#: Feature families in IBSI 1 chapter 3 order; each is ``RadiomicsLabLib.ibsi.features.<name>``.
FAMILIES = ("morphology", "local_intensity", "statistics", "histogram", "ivh",
            "glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm")
#: Families computed on discretised grey levels.
_NEEDS_LEVELS = {"histogram", "glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm"}
#: Families holding N_g x N_g (or N_g x size) matrices per direction: their size is checked before they are made.
_TEXTURE = _NEEDS_LEVELS - {"histogram"}


@dataclass
class EngineResult:
    """IBSI tag -> value for one ROI, tag -> family, the preprocessing diagnostics, and why any value is NaN.

    ``timings``: seconds spent per step (``preprocessing``, ``filter``, ``discretisation`` and each family), for
    benchmarks and profiling; not part of the results.
    """

    values: dict = field(default_factory=dict)
    families: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


def family_module(name: str):
    """The module of one feature family (``compute`` and ``FEATURES``)."""
    if name not in FAMILIES:
        raise ValueError(f"Unknown IBSI feature family '{name}'; choose from {', '.join(FAMILIES)}.")
    return importlib.import_module(f".features.{name}", __package__)


@functools.cache
def feature_registry() -> dict:
    """Every family's feature registry in one dict: IBSI tag -> name, unit, description, ibsi_id, aggregation, ...

    The one place that merges the families' ``FEATURES`` (the DICOM SR writer and the Segment Statistics plugin
    describe features with it); cached, so treat it as read-only.
    """
    registry = {}
    for family in FAMILIES:
        registry.update(family_module(family).FEATURES)
    return registry


def compute_features(image: sitk.Image, mask: sitk.Image, settings: IbsiSettings | None = None,
                     families=FAMILIES) -> EngineResult:
    """IBSI features of the ROI ``mask != 0`` of ``image`` (preprocessing, then :func:`features_of_roi`).

    The families read only the ROI and, for local intensity, the voxels within its sphere's radius of it, so the
    preprocessing keeps only that part of the grid (``crop_mm``); an IBSI chapter 2 filter needs the whole image.
    The whole interpolated image's diagnostics are then computed beside the features (:func:`.preprocessing.start_roi`),
    or not at all without ``settings.diagnostics``.
    """
    from .features.local_intensity import RADIUS_MM
    from .preprocessing import start_roi

    settings = settings or IbsiSettings()
    start = time.perf_counter()
    roi, finish = start_roi(image, mask, settings, crop_mm=RADIUS_MM if settings.image_filter is None else None)
    preprocessing = time.perf_counter() - start
    try:
        result = features_of_roi(roi, settings, families)
    except BaseException:
        finish(cancel=True)     # the diagnostics' parts not started yet are not needed
        raise
    start = time.perf_counter()
    diagnostics = finish()
    preprocessing += time.perf_counter() - start
    result.diagnostics = diagnostics
    result.timings = {"preprocessing": preprocessing, **result.timings}
    return result


def features_of_roi(roi: Roi, settings: IbsiSettings, families=FAMILIES) -> EngineResult:
    """Feature families of a preprocessed Roi.

    ``settings.image_filter`` (an IBSI chapter 2 filter) is applied to the interpolated image first,
    as IBSI 2 prescribes: the ROI masks, re-segmented on the unfiltered image, stay as they are.
    The Roi itself is not modified, so one preprocessing can serve several filters. Where the process may use more
    than one thread (:func:`~RadiomicsLabLib.limits.compute_threads`), a large ROI's sums of Moran's I and Geary's C
    run on the background thread while the other families are computed
    (:func:`.features.morphology.start_autocorrelation_sums`) and morphology is computed last; else a 3D
    extraction's texture tables run there (:func:`.features.texture_tables.start`; counted at once otherwise, their
    time under ``timings["texture_tables"]``). Values, notes and the families' timings come in ``families`` order,
    the same as one by one.
    """
    timings = {}
    if settings.image_filter is not None:
        from .filters import filtered_roi

        start = time.perf_counter()
        roi = filtered_roi(roi, settings.image_filter)
        timings["filter"] = time.perf_counter() - start
    if _NEEDS_LEVELS & set(families):
        start = time.perf_counter()
        roi = discretise(roi, settings)
        if _TEXTURE & set(families):
            check_texture_memory(roi.n_levels, 13)
        timings["discretisation"] = time.perf_counter() - start
    result = EngineResult(notes=roi.notes, timings=timings)
    families = tuple(dict.fromkeys(families))           # each family once, in the order given
    # with two threads or more: a large ROI's Moran's I / Geary's C sums on the background thread, morphology computed
    # last; else the 3D texture tables there (a second long task behind the sums would keep the caller waiting for the
    # tables while the sums run); both beside the other families, the results in ``families`` order either way
    started, order = [], list(families)
    if "morphology" in families and compute_threads() > 1:
        from .features.morphology import start_autocorrelation_sums

        started.append(start_autocorrelation_sums(roi))
        if started[-1] is not None:
            order = [name for name in families if name != "morphology"] + ["morphology"]
    if _TEXTURE & set(families):
        from .features import texture_tables

        start = time.perf_counter()
        started.append(texture_tables.start(roi, settings, families, here=any(started)))
        timings["texture_tables"] = time.perf_counter() - start    # counted here: the counting itself
    started = [future for future in started if future is not None]
    computed, notes, first_note = {}, {}, len(roi.notes)
    try:
        for name in order:
            start, before = time.perf_counter(), len(roi.notes)
            computed[name] = family_module(name).compute(roi, settings)
            timings[name] = time.perf_counter() - start
            notes[name] = roi.notes[before:]
    finally:   # what has not started yet is not needed any more (a family failed, or computed it itself)
        concurrent.futures.wait([future for future in started if not future.cancel()])
    for name in families:
        result.values.update(computed[name])
        result.families.update(dict.fromkeys(computed[name], name))
        timings[name] = timings.pop(name)
    roi.notes[first_note:] = [note for name in families for note in notes[name]]
    return result
