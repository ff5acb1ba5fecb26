"""What the IBSI feature families share: undefined features, the per-feature registry and runner,
the statistics of a 1D sample, and the machinery of the texture families built on matrices per direction.

- :class:`Undefined`, :func:`registry`, :func:`evaluate`, :func:`run`, :func:`all_nan`: a family is a
  dict of feature functions keyed by IBSI tag; a function raises :class:`Undefined` where its feature
  is not defined, and the runner makes that NaN with a note in ``roi.notes`` (never an exception).
- :class:`Sample`: a 1D sample and the statistics that intensity statistics (``stat_*``, on ``X_gl``)
  and the intensity histogram (``ih_*``, on ``X_d``) both define.
- :func:`describe`: the ``FEATURES`` of a texture family, one entry per base tag and aggregation.
- :class:`CellMatrices`, :func:`matrix_features`, :func:`dense_matrix_features`, :func:`group_sums`,
  :func:`average_over_matrices`, :func:`directional_aggregates` and the helpers around them: GLCM and
  GLRLM matrices (one per direction, slice or both) given by their non-zero cells, their features,
  and their ``_avg`` / ``_comb`` aggregation over 2D, 2.5D and 3D.
"""

from functools import cached_property

import numpy as np

from ...errors import RadiomicsLabError
from .directions import SUFFIX


class Undefined(Exception):
    """Raised by a feature function whose value is not defined here; the runner turns it into NaN plus a note."""


# --- the per-feature registry and runner ----------------------------------------------------------

def registry():
    """A family's ``(FEATURES, FUNCTIONS, feature)``: descriptions and functions keyed by IBSI tag, and the
    decorator filling both."""
    descriptions, functions = {}, {}

    def feature(tag, name, unit, description, pyradiomics=None, ibsi_id=""):
        def register(function):
            descriptions[tag] = {"name": name, "unit": unit, "description": description,
                                 "pyradiomics": pyradiomics, "ibsi_id": ibsi_id}
            functions[tag] = function
            return function
        return register

    return descriptions, functions, feature


def evaluate(functions: dict, data) -> tuple[dict, dict]:
    """(key -> value, key -> why NaN) of every function of ``functions`` on ``data``; :class:`Undefined` gives NaN."""
    values, reasons = {}, {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for key, function in functions.items():
            try:
                value = float(function(data))
            except Undefined as reason:
                value, reasons[key] = float("nan"), str(reason)
            values[key] = value
    return values, reasons


def run(functions: dict, data, roi, family: str) -> dict:
    """Every feature of ``functions`` on ``data``; an :class:`Undefined` one is NaN, its reason in ``roi.notes``."""
    values, reasons = evaluate(functions, data)
    for tag, reason in reasons.items():
        roi.notes.append(f"{family}: {tag} is NaN: {reason}")
    return values


def all_nan(descriptions: dict, roi, family: str, reason: str) -> dict:
    """Every feature of a family NaN, with one note saying why."""
    roi.notes.append(f"{family}: all features are NaN: {reason}")
    return {tag: float("nan") for tag in descriptions}


# --- a 1D sample (statistics on X_gl, intensity histogram on X_d) ---------------------------------

def _counting_sort(x: np.ndarray):
    """``np.sort(x)`` by counting, for a non-empty float sample of integers spanning at most about 4 N values; None
    otherwise. The values ``lowest + k`` are exact (|x| < 2^52): the same array, except that a zero is always +0.0
    (``np.sort`` leaves the order of -0.0 and +0.0, equal values, unspecified; rounded CT intensities hold both)."""
    if x.size == 0:
        return None
    lowest, highest = x.min(), x.max()
    if not (np.isfinite(lowest) and np.isfinite(highest)) or highest - lowest > 4 * x.size + 1024 \
            or max(-lowest, highest) >= 2.0 ** 52:
        return None
    if not np.array_equal(np.trunc(x), x):
        return None
    counts = np.bincount((x - lowest).astype(np.int64))    # integers below 2^52: exact differences
    return np.repeat(lowest + np.arange(counts.size, dtype=np.float64), counts)


class Sample:
    """A non-empty 1D sample ``X`` and its statistics (shared quantities computed once, on demand).

    Percentiles are sample percentiles with linear interpolation between order statistics
    (``numpy.percentile``'s default). The formulas are in the docstrings of the family features using them.
    """

    def __init__(self, values: np.ndarray):
        self.x = np.asarray(values, dtype=np.float64).ravel()
        self.n = self.x.size

    @cached_property
    def sorted(self) -> np.ndarray:
        """``X`` in ascending order. Integer intensities over a range not much wider than the sample (CT in HU)
        are counted instead of sorted: each value repeated as often as it occurs, the same array as ``np.sort``."""
        counted = _counting_sort(self.x)
        return np.sort(self.x) if counted is None else counted

    def percentile(self, q: float) -> float:
        """The ``q``-th sample percentile, linear interpolation between order statistics: with ``h = (N - 1) q / 100``,
        ``x_(floor h) + (h - floor h) (x_(floor h + 1) - x_(floor h))``, in ``numpy.percentile``'s arithmetic (same
        bits) but read off the sorted sample instead of partitioning it again."""
        x = self.sorted
        h = (self.n - 1) * (float(q) / 100)
        low = min(max(int(np.floor(h)), 0), self.n - 1)
        high = min(low + 1, self.n - 1)
        gamma = h - low
        a, b = x[low], x[high]
        if gamma >= 0.5:
            return float(b - (b - a) * (1 - gamma))
        return float(a + (b - a) * gamma)

    @cached_property
    def mean(self) -> float:
        return float(self.x.mean())

    @cached_property
    def centred(self) -> np.ndarray:
        return self.x - self.mean

    @cached_property
    def _centred_squared(self) -> np.ndarray:
        return self.centred * self.centred

    def moment(self, order: int) -> float:
        """Central moment ``1/N sum (X_k - mu)^order`` (powers 2 to 4 by multiplication, not ``pow``)."""
        if order == 2:
            return float(np.mean(self._centred_squared))
        if order == 3:
            return float(np.mean(self._centred_squared * self.centred))
        if order == 4:
            return float(np.mean(self._centred_squared * self._centred_squared))
        return float(np.mean(self.centred ** order))

    @cached_property
    def variance(self) -> float:
        return self.moment(2)

    @cached_property
    def median(self) -> float:
        return self.percentile(50)

    @cached_property
    def p10_p90(self) -> np.ndarray:
        """``X_10-90``: the values with ``P10 <= X <= P90``."""
        return self.x[(self.x >= self.percentile(10)) & (self.x <= self.percentile(90))]

    def skewness(self) -> float:
        """m_3 / m_2^{3/2}; IBSI: 0 when the variance is 0."""
        if self.variance == 0:
            return 0.0
        return self.moment(3) / self.variance ** 1.5

    def kurtosis(self) -> float:
        """m_4 / m_2^2 - 3 (excess); IBSI: 0 when the variance is 0."""
        if self.variance == 0:
            return 0.0
        return self.moment(4) / self.variance ** 2 - 3.0

    def interquartile_range(self) -> float:
        """P75 - P25."""
        return self.percentile(75) - self.percentile(25)

    def mean_absolute_deviation(self) -> float:
        """1/N sum |X_k - mu|."""
        return float(np.mean(np.abs(self.centred)))

    def robust_mean_absolute_deviation(self) -> float:
        """Mean absolute deviation of ``X_10-90`` from its own mean; undefined when ``X_10-90`` is empty."""
        inner = self.p10_p90
        if inner.size == 0:
            raise Undefined("no value lies between P10 and P90 (inclusive)")
        return float(np.mean(np.abs(inner - inner.mean())))

    def median_absolute_deviation(self) -> float:
        """1/N sum |X_k - M|, M the median."""
        return float(np.mean(np.abs(self.x - self.median)))

    def coefficient_of_variation(self) -> float:
        """sigma / mu; undefined when mu = 0."""
        if self.mean == 0:
            raise Undefined("the mean is 0, so sigma / mu is undefined")
        return np.sqrt(self.variance) / self.mean

    def quartile_coefficient_of_dispersion(self) -> float:
        """(P75 - P25) / (P75 + P25); undefined when P75 + P25 = 0."""
        p25, p75 = self.percentile(25), self.percentile(75)
        if p75 + p25 == 0:
            raise Undefined("P75 + P25 = 0, so (P75 - P25) / (P75 + P25) is undefined")
        return (p75 - p25) / (p75 + p25)


# --- texture feature descriptions ------------------------------------------------------------------

#: GLCM / GLRLM (IBSI 1 section 3.6.1): tag suffix -> (dimension, IBSI identifier of the aggregation
#: method, its name, pyradiomics setting computing it or None). pyradiomics averages features over the
#: 13 3D directions (``*_3D_avg``); with ``force2D: true`` over the 4 in-plane directions, each matrix
#: merged over the slices (``*_2_5D_avg``).
AGGREGATIONS = {
    "2D_avg": ("2D", "BTW3", "2D, averaged over slices and directions", None),
    "2D_comb": ("2D", "SUJT", "2D, directions merged per slice, averaged over slices", None),
    "2_5D_avg": ("2.5D", "JJUI", "2.5D, slices merged per direction, averaged over directions", "force2D: true"),
    "2_5D_comb": ("2.5D", "ZW7Z", "2.5D, all merged", None),
    "3D_avg": ("3D", "ITBB", "3D, averaged over directions", ""),
    "3D_comb": ("3D", "IAZD", "3D, directions merged", None),
}


def describe(prefix: str, rows, aggregations: dict, pyradiomics_class: str | None = None) -> dict:
    """``FEATURES`` of a texture family: every output tag -> name, unit, description, pyradiomics, ibsi_id,
    dimension (and aggregation, where the aggregation has an IBSI identifier), aggregation by aggregation.

    ``rows``: (base tag, name, IBSI identifier, description, pyradiomics feature or None);
    ``aggregations``: tag suffix -> (dimension, IBSI aggregation identifier or None, name, pyradiomics
    setting or None) as :data:`AGGREGATIONS`; the pyradiomics name is given where the setting is not None.
    """
    rows = list(rows)
    features = {}
    for suffix, (dimension, aggregation_id, aggregation, setting) in aggregations.items():
        for base, name, ibsi_id, description, pyradiomics in rows:
            radiomics_name = None
            if pyradiomics and pyradiomics_class and setting is not None:
                radiomics_name = f"original_{pyradiomics_class}_{pyradiomics}" + (f" ({setting})" if setting else "")
            info = {"name": f"{name} ({aggregation})", "unit": "", "description": description,
                    "pyradiomics": radiomics_name, "ibsi_id": ibsi_id, "dimension": dimension}
            if aggregation_id:
                info["aggregation"] = aggregation_id
            features[f"{prefix}_{base}_{suffix}"] = info
    return features


def check_dimensions(dimensions) -> None:
    """Raise the project error for a texture dimension other than 2D, 2.5D or 3D."""
    for dimension in dimensions:
        if dimension not in SUFFIX:
            raise RadiomicsLabError(f"Unknown texture dimension '{dimension}'; use 2D, 2.5D or 3D.")


def texture_keys(features: dict, base_tags, dimensions) -> dict:
    """{output tag: description} of an avg / comb texture family for ``dimensions``, in output order."""
    return {f"{tag}_{suffix}": features[f"{tag}_{suffix}"] for d in dimensions
            for suffix in (f"{SUFFIX[d]}_avg", f"{SUFFIX[d]}_comb") for tag in base_tags}


# --- matrices given by their non-zero cells (GLCM, GLRLM) ------------------------------------------

_DENSE_GROUPS = 1 << 24   # largest table of codes counted with one bincount instead of a sort (128 MB of sums)


def unique_counts(codes: np.ndarray, size: int, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_counts=True)`` for non-negative integer codes below ``size``: the same sorted
    distinct codes and counts, by one ``np.bincount`` (no sort) when ``size`` is at most 16 per code (or 4096) and
    at most :data:`_DENSE_GROUPS`: beyond that the sort is faster (a size zone matrix of a few hundred zones, one of
    them large, spans ~10^5 codes) or the table too large. With ``weights``, the sums of the weights of each
    distinct code (added in array order, either way) instead of the counts."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and size <= min(max(4096, 16 * codes.size), _DENSE_GROUPS):
        counts = np.bincount(codes, minlength=size)
        cells = np.flatnonzero(counts)
        if weights is not None:
            counts = np.bincount(codes, weights=weights, minlength=size)
        return cells, counts[cells]
    if weights is None:
        return np.unique(codes, return_counts=True)
    cells, inverse = np.unique(codes, return_inverse=True)
    return cells, np.bincount(inverse.ravel(), weights=weights, minlength=cells.size)


def group_sums(matrix, keys, p):
    """Sums of ``p`` over the cells with equal (matrix, key): (matrix, key, sum) per group, sorted by both.

    Keys that are non-negative integers (grey levels, their sums and differences) are used as codes
    directly; other keys are first numbered by sorting.
    """
    keys = np.asarray(keys)
    if keys.size == 0:
        return matrix[:0], keys[:0].astype(np.float64), np.zeros(0)
    codes = keys.astype(np.int64)
    values = None
    if codes.min() < 0 or not np.array_equal(codes, keys):
        values, codes = np.unique(keys, return_inverse=True)
        codes = codes.ravel()
    n_keys = int(codes.max()) + 1
    groups, sums = unique_counts(matrix * n_keys + codes, (int(matrix.max()) + 1) * n_keys, weights=p)
    key = groups % n_keys
    return groups // n_keys, (key if values is None else values[key]).astype(np.float64), sums


class CellMatrices:
    """``n_matrices`` count matrices given by their non-zero cells: the base of a texture family's formulas.

    Cell ``e`` of matrix ``matrix[e]`` (0..n_matrices-1) has row ``i[e]``, column ``j[e]`` and count
    ``counts[e]``; cells not listed (or with count 0) are zero, and each cell appears at most once per
    matrix. Every sum over a matrix is one ``np.bincount`` over all matrices (:meth:`_msum`).
    """

    def __init__(self, matrix, i, j, counts, n_matrices):
        counts = np.asarray(counts, dtype=np.float64)
        keep = counts > 0
        self.m = np.asarray(matrix, dtype=np.int64)[keep]
        self.i = np.asarray(i, dtype=np.float64)[keep]
        self.j = np.asarray(j, dtype=np.float64)[keep]
        self.count = counts[keep]
        self.n_matrices = int(n_matrices)
        self.total = self._msum(self.count)     # sum of the counts of each matrix
        self.empty = self.total == 0           # matrices without any count

    def _msum(self, values, matrix=None):
        """Per-matrix sum of ``values`` (one value per cell, or per group with ``matrix``)."""
        return np.bincount(self.m if matrix is None else matrix, weights=values, minlength=self.n_matrices)


def matrix_features(features: CellMatrices, base_tags) -> dict:
    """{base tag (``cm_contrast``): array (n_matrices,)}: for every base tag, the method of ``features`` named
    by the tag without its family prefix (``contrast``), evaluated on every matrix; NaN for an empty matrix."""
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for tag in base_tags:
            value = np.array(getattr(features, tag.split("_", 1)[1])(), dtype=np.float64)   # a copy: a method may
            value[features.empty] = np.nan                                                # return a shared array
            out[tag] = value
    return out


def dense_matrix_features(matrices, base_tags, make_features) -> dict:
    """:func:`matrix_features` of dense matrices ``(..., n_rows, n_cols)``: {base tag: array of shape
    ``matrices.shape[:-2]``}. ``make_features(matrix, row, column, count, n_matrices)`` builds the
    :class:`CellMatrices` of the non-zero cells (row and column are indices, to be mapped to grey levels,
    run lengths, ...)."""
    matrices = np.asarray(matrices, dtype=np.float64)
    n_rows, n_cols = matrices.shape[-2:]
    lead = matrices.shape[:-2]
    flat = matrices.reshape(-1, n_rows * n_cols)
    matrix, cell = np.nonzero(flat)
    values = matrix_features(make_features(matrix, cell // n_cols, cell % n_cols, flat[matrix, cell], flat.shape[0]),
                             base_tags)
    return {tag: value.reshape(lead) for tag, value in values.items()}


def dense_cells(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(matrix, row, column, count) of the non-zero cells of dense matrices (m, rows, columns), in C order: the
    cells, in the same order, that :func:`unique_counts` gives for the codes (matrix * rows + row) * columns + column
    (compiled: :func:`._texture_kernels.nonzero_cells`)."""
    from ._texture_kernels import nonzero_cells

    return nonzero_cells(np.ascontiguousarray(dense))


# --- the grid a texture family works on ------------------------------------------------------------

def grey_index(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(grey levels present in the ROI (sorted), index array: 0..n-1 inside the ROI, -1 outside)."""
    present = np.bincount(np.asarray(levels, dtype=np.int64).ravel(), minlength=1) > 0
    present[0] = False
    grey = np.flatnonzero(present)
    lut = np.full(present.size, -1, dtype=np.int64)
    lut[grey] = np.arange(grey.size)
    return grey, lut[levels]


def crop_to_roi(roi) -> np.ndarray:
    """``roi.levels`` cropped to the bounding box of its non-zero grey levels (pairs and runs outside it only meet
    zeros), found in the masks' box (:meth:`~RadiomicsLabLib.ibsi.roi.Roi.bounding_box`)."""
    levels = np.asarray(roi.levels)
    box = roi.bounding_box(levels)
    if box is None:
        return levels[tuple(slice(0, 0) for _ in levels.shape)]
    return levels[box]


def require_levels(roi, family: str) -> None:
    """Raises unless ``roi`` has discretised grey levels (``roi.levels``)."""
    if roi.levels is None:
        raise RadiomicsLabError(f"The {family} needs discretised grey levels; discretise the region of interest first.")


def texture_grid(roi, family: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`grey_index` of ``roi.levels`` cropped to the ROI; an empty ROI gives a one-voxel grid outside it."""
    require_levels(roi, family)
    grey, index = grey_index(crop_to_roi(roi))
    if grey.size == 0:
        index, grey = np.full((1, 1, 1), -1, dtype=np.int64), np.array([1])
    return grey, index


def zero_padded(array: np.ndarray, pad: int, dtype=None) -> np.ndarray:
    """``np.pad(array, pad)`` (zeros on every side), as ``dtype`` if given: one allocation and one copy (``np.pad``'s
    general machinery costs ~50 us a call, more than the copy of a ROI's box)."""
    array = np.asarray(array)
    padded = np.zeros(tuple(n + 2 * pad for n in array.shape), dtype=dtype or array.dtype)
    padded[tuple(slice(pad, pad + n) for n in array.shape)] = array
    return padded


def padded_levels(roi, family: str, pad: int = 1) -> np.ndarray:
    """``roi.levels`` (int64) cropped to its non-zero voxels and zero-padded by ``pad``, for kernels that step by
    flat offsets of up to ``pad`` voxels per axis without bounds checks. Made once per Roi and ``pad``
    (:meth:`~RadiomicsLabLib.ibsi.roi.Roi.derived`) and shared by the GLCM and GLRLM: read-only."""
    require_levels(roi, family)
    return roi.derived(("padded_levels", int(pad)),
                       lambda: zero_padded(crop_to_roi(roi), int(pad), np.int64))


# --- aggregation over directions and slices (IBSI 1 section 3.6.1) --------------------------------

def directional_aggregates(dimensions, n_slices: int, elements, aggregate) -> dict:
    """The ``_avg`` and ``_comb`` features of every dimension of ``dimensions`` from per-direction elements.

    ``elements(dimension)`` ("2D": the in-plane directions, "3D"): (number of directions, (direction
    number, slice, *data)) with one entry per element (a pair, a run); ``aggregate(suffix, group,
    n_groups, *data)`` averages the features of the matrix of each group of elements (:func:`average_over_matrices`):

    - ``2D_avg``: one matrix per slice and direction; ``2D_comb``: one per slice;
    - ``2_5D_avg``: one per direction; ``2_5D_comb``: one;
    - ``3D_avg``: one per direction; ``3D_comb``: one.
    """
    out = {}
    if "2D" in dimensions or "2.5D" in dimensions:
        n_directions, (number, z, *data) = elements("2D")
        if "2D" in dimensions:
            out.update(aggregate("2D_avg", number * n_slices + z, n_directions * n_slices, *data))
            out.update(aggregate("2D_comb", z, n_slices, *data))
        if "2.5D" in dimensions:
            out.update(aggregate("2_5D_avg", number, n_directions, *data))
            out.update(aggregate("2_5D_comb", np.zeros_like(number), 1, *data))
    if "3D" in dimensions:
        n_directions, (number, _, *data) = elements("3D")
        out.update(aggregate("3D_avg", number, n_directions, *data))
        out.update(aggregate("3D_comb", np.zeros_like(number), 1, *data))
    return out


def average_over_matrices(family, suffix, values: dict, non_empty, notes, undefined=None,
                          empty_reason="every matrix is empty") -> dict:
    """{base tag + ``_`` + suffix: mean over the non-empty matrices of the values where defined}.

    ``values``: base tag -> value per matrix; ``non_empty``: which matrices hold any count. A feature
    undefined (NaN) in some matrices is averaged over the others, with a note; in all of them it is NaN
    with a note (``undefined``: base tag -> why).
    """
    undefined = undefined or {}
    if not np.any(non_empty):
        notes.append(f"{family}: all {suffix} features are NaN: {empty_reason}")
        return {f"{tag}_{suffix}": float("nan") for tag in values}
    out = {}
    tags = list(values)
    table = np.ascontiguousarray(np.array([values[tag] for tag in tags], dtype=np.float64)[:, non_empty])
    means = table.mean(axis=1)              # row by row: the same sums (and bits) as each row's own mean
    partly_nan = np.isnan(means)
    for row, tag in enumerate(tags):
        key = f"{tag}_{suffix}"
        if not partly_nan[row]:
            out[key] = float(means[row])
            continue
        value = table[row]
        defined = value[~np.isnan(value)]
        reason = undefined.get(tag, "undefined")
        if defined.size == 0:
            out[key] = float("nan")
            notes.append(f"{family}: {key} is NaN: {reason}")
        else:
            out[key] = float(defined.mean())
            if defined.size < value.size:
                notes.append(f"{family}: {key} averages the {defined.size} of {value.size} matrices where it is "
                             f"defined; in the others {reason}")
    return out
