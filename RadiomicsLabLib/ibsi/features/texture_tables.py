"""A 3D extraction's texture tables, counted in one call on the background thread.

The GLCM's co-occurrence counts, the GLRLM's run length counts, the zones of the GLSZM and GLDZM and the
neighbourhood counts of the NGTDM and NGLDM are each one compiled pass over the ROI (:mod:`._texture_kernels`; 0.1 to
0.2 ms each on STS_002's 6,665 voxels at 2 mm). The families read them once per Roi (:meth:`~..roi.Roi.derived`):
:func:`cooccurrence`, :func:`run_lengths`, :func:`.zones.roi_zone_labels`, :func:`.zones.neighbourhood_counts`.

:func:`start` counts the 3D tables that the requested families will read in one GIL-free call
(:func:`._texture_kernels.texture_tables`) on the background thread, as soon as the grey levels are known, under the
keys the families read them by, so that the tables are counted while the caller computes morphology: the same tables
(a family that finds its table not started yet counts it with the others in its own thread).
"""

from concurrent.futures import Future

import numpy as np

from ..roi import Roi
from . import _texture_kernels as _kernels
from . import zones
from .common import padded_levels
from .directions import directions

#: The families that read a table :func:`start` counts.
_READERS = frozenset({"glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm"})
#: A grid without ROI voxels: the arguments of a table that no requested family reads (counted in no time).
_NO_LEVELS = np.zeros((3, 3, 3), dtype=np.int64)


def cooccurrence(roi: Roi, distance: int) -> np.ndarray:
    """The GLCM's 3D co-occurrence counts (13 directions at Chebyshev ``distance``;
    :func:`._texture_kernels.cooccurrence_counts` of the grey levels zero-padded by ``distance``)."""
    return roi.derived(("cooccurrence_counts", int(distance)),
                       lambda: _kernels.cooccurrence_counts(*_cooccurrence_arguments(roi, distance)))


def run_lengths(roi: Roi) -> np.ndarray:
    """The GLRLM's 3D run length counts (13 directions; :func:`._texture_kernels.run_length_counts`)."""
    return roi.derived("run_length_counts", lambda: _kernels.run_length_counts(*_run_arguments(roi)))


def _cooccurrence_arguments(roi: Roi, distance: int) -> tuple:
    return padded_levels(roi, "GLCM", pad=int(distance)), _offsets_3d(distance)


def _run_arguments(roi: Roi) -> tuple:
    return padded_levels(roi, "GLRLM"), _offsets_3d(1)


def _offsets_3d(distance: int) -> np.ndarray:
    return np.asarray(directions("3D", int(distance)), dtype=np.int64)


def start(roi: Roi, settings, families, here: bool = False) -> Future | None:
    """Starts the 3D tables that ``families`` read (``settings.dimensions`` with 3D; the NGTDM's neighbourhood, or
    the NGLDM's where there is no NGTDM) in one call on the background thread, or counts them ``here``
    (:meth:`~..roi.Roi.start_derived`; at once with one thread). Returns its Future (the caller waits for it, or
    cancels it where it has not started, before it returns), or None: counted here, nothing to count, or a setting
    the family itself will refuse (a GLCM distance below 1; a neighbourhood distance below 1 is left to its family).
    Either way a 3D extraction counts its tables in this one kernel (compiled once, at install)."""
    families = set(families)
    if not families & _READERS or "3D" not in settings.dimensions or roi.levels is None:
        return None
    glcm_distance = int(getattr(settings, "glcm_distance", 1))
    if "glcm" in families and glcm_distance < 1:
        return None
    keys, arguments = [], []
    if "glcm" in families:
        keys.append(("cooccurrence_counts", glcm_distance))
        arguments += _cooccurrence_arguments(roi, glcm_distance)
    else:
        keys.append(None)
        arguments += (_NO_LEVELS, _offsets_3d(1))
    keys.append("run_length_counts" if "glrlm" in families else None)
    arguments += _run_arguments(roi) if "glrlm" in families else (_NO_LEVELS, _offsets_3d(1))
    zoned = bool(families & {"glszm", "gldzm"})
    keys.append(zones.zone_labels_key(False) if zoned else None)
    arguments.append(zones.roi_box(roi)[0] if zoned else _NO_LEVELS)
    neighbourhood = "ngtdm" if "ngtdm" in families else "ngldm" if "ngldm" in families else None
    distance = int(getattr(settings, f"{neighbourhood}_distance", 1)) if neighbourhood else 0
    if distance >= 1:
        coarseness = zones.dependence_coarseness(settings)
        keys.append(zones.neighbourhood_key(distance, False, coarseness))
        levels, mask, distance, _, coarseness = zones.neighbourhood_arguments(roi, distance, False, coarseness)
        arguments += (levels, mask, distance, coarseness)
    else:
        keys.append(None)
        arguments += (_NO_LEVELS, _NO_LEVELS != 0, 1, -1)
    return roi.start_derived(keys, _kernels.texture_tables, *arguments, here=here)
