"""Shared machinery of the zone-type texture families (IBSI 1, sections 3.8-3.11).

The grey level size zone (GLSZM, ``szm_*``), grey level distance zone (GLDZM, ``dzm_*``) and
neighbouring grey level dependence (NGLDM, ``ngl_*``) matrices are all a count matrix ``s_ij`` over
grey level ``i`` (rows, ``1..N_g``) and a second index ``j`` (columns, starting at 1):

- GLSZM: ``j`` is the zone size (voxels in a connected zone of equal grey level);
- GLDZM: ``j`` is the zone distance (fewest steps from a zone voxel to the ROI edge, 1 at the edge);
- NGLDM: ``j`` is the dependence count plus one (``j = 1``: no dependent neighbour).

Their features use the same formulas on ``s_ij`` (small/large emphasis, grey level and column
non-uniformity, percentage, variances, entropy, energy), so each formula is written once here as a
function of a :class:`CountMatrix`; the family modules only map IBSI tags to these functions.
The neighbourhood grey tone difference family (NGTDM) has its own matrix but shares the aggregation.

Notation (IBSI): ``N_s = sum_ij s_ij`` (number of zones, or of voxels for NGLDM), ``N_v`` the number
of voxels in the ROI intensity mask, ``p_ij = s_ij / N_s``, ``s_i. = sum_j s_ij``, ``s_.j = sum_i s_ij``.

Aggregation (IBSI 1, texture feature aggregation), one tag suffix per dimension:

- ``_2D``: one matrix per slice (in-plane connectivity / neighbourhood), features computed per slice and
  averaged over the slices that contain ROI voxels (a slice where a feature is undefined is skipped);
- ``_2_5D``: the same per-slice matrices summed into one, one feature set;
- ``_3D``: one matrix of the volume (26-connected zones, 3D neighbourhood).
"""

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..roi import Roi
from . import common
from . import _texture_kernels as _kernels
from .common import Undefined, check_dimensions, evaluate
from .directions import SUFFIX, directions, shifted_pairs


# --- the count matrix s_ij (GLSZM, GLDZM, NGLDM) --------------------------------------------------

@dataclass(frozen=True)
class CountMatrix:
    """A grey level x ``j`` count matrix ``s_ij`` in sparse form, with the ROI voxel count ``N_v``.

    ``i``, ``j`` (both >= 1) and ``count`` (> 0) list the non-zero elements, each (i, j) pair once.
    Build one with :meth:`from_pairs` (one (i, j) per zone or voxel), :meth:`merge` (2.5D) or
    :meth:`from_dense` (a dense ``s[i-1, j-1]`` array, e.g. a voxel-wise kernel's matrix).
    """

    i: np.ndarray
    j: np.ndarray
    count: np.ndarray
    n_voxels: int

    @classmethod
    def from_pairs(cls, i, j, n_voxels: int) -> "CountMatrix":
        """The matrix counting each occurrence of (``i[k]``, ``j[k]``)."""
        i = np.asarray(i, dtype=np.int64).ravel()
        j = np.asarray(j, dtype=np.int64).ravel()
        return cls._aggregate(i, j, np.ones(i.size, dtype=np.float64), n_voxels)

    @classmethod
    def merge(cls, matrices) -> "CountMatrix":
        """The sum of several matrices (2.5D: the slices' matrices), ``N_v`` summed too."""
        matrices = list(matrices)
        return cls._aggregate(np.concatenate([m.i for m in matrices]), np.concatenate([m.j for m in matrices]),
                              np.concatenate([m.count for m in matrices]), sum(m.n_voxels for m in matrices))

    @classmethod
    def from_dense(cls, s: np.ndarray, n_voxels: int) -> "CountMatrix":
        """From a dense array ``s[i - 1, j - 1]``."""
        i, j = np.nonzero(s)
        return cls(i + 1, j + 1, np.asarray(s, dtype=np.float64)[i, j], int(n_voxels))

    @classmethod
    def _aggregate(cls, i, j, count, n_voxels) -> "CountMatrix":
        if i.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, np.zeros(0), int(n_voxels))
        width = int(j.max()) + 1
        keys, sums = common.unique_counts(i * width + j, (int(i.max()) + 1) * width, weights=count)
        return cls(keys // width, keys % width, sums, int(n_voxels))

    # N_s, p_ij and the float row and column indices are computed once (read-only)
    @cached_property
    def n_s(self) -> float:
        """``N_s``: the sum of all elements."""
        return float(self.count.sum())

    @cached_property
    def p(self) -> np.ndarray:
        """``p_ij = s_ij / N_s`` of the listed elements."""
        if self.n_s == 0:
            raise Undefined("the matrix is empty")
        return self.count / self.n_s

    @cached_property
    def i_float(self) -> np.ndarray:
        """``i`` of the listed elements, as floats."""
        return self.i.astype(np.float64)

    @cached_property
    def j_float(self) -> np.ndarray:
        """``j`` of the listed elements, as floats."""
        return self.j.astype(np.float64)

    def row_sums(self) -> np.ndarray:
        """``s_i.`` for every grey level present."""
        return np.bincount(self.i, weights=self.count)

    def column_sums(self) -> np.ndarray:
        """``s_.j`` for every column present."""
        return np.bincount(self.j, weights=self.count)

    def dense(self) -> np.ndarray:
        """``s[i - 1, j - 1]`` as a dense array (for inspection; the formulas use the sparse form)."""
        s = np.zeros((int(self.i.max(initial=0)), int(self.j.max(initial=0))))
        s[self.i - 1, self.j - 1] = self.count
        return s


# --- the formulas shared by GLSZM, GLDZM and NGLDM -------------------------------------------------

def small_emphasis(m: CountMatrix) -> float:
    r"""F = 1/N_s \sum_i \sum_j s_ij / j^2.

    Small zone emphasis ``szm_sze``, small distance emphasis ``dzm_sde``, low dependence emphasis ``ngl_lde``.
    """
    return float(np.sum(m.p / m.j_float ** 2))


def large_emphasis(m: CountMatrix) -> float:
    r"""F = 1/N_s \sum_i \sum_j j^2 s_ij.

    Large zone emphasis ``szm_lze``, large distance emphasis ``dzm_lde``, high dependence emphasis ``ngl_hde``.
    """
    return float(np.sum(m.p * m.j_float ** 2))


def low_grey_level_emphasis(m: CountMatrix) -> float:
    r"""F = 1/N_s \sum_i s_i. / i^2.

    Low grey level zone emphasis ``szm_lgze`` / ``dzm_lgze``, low grey level count emphasis ``ngl_lgce``.
    """
    return float(np.sum(m.p / m.i_float ** 2))


def high_grey_level_emphasis(m: CountMatrix) -> float:
    r"""F = 1/N_s \sum_i i^2 s_i.

    High grey level zone emphasis ``szm_hgze`` / ``dzm_hgze``, high grey level count emphasis ``ngl_hgce``.
    """
    return float(np.sum(m.p * m.i_float ** 2))


def small_low_grey_level_emphasis(m: CountMatrix) -> float:
    r"""F = 1/N_s \sum_i \sum_j s_ij / (i^2 j^2).

    ``szm_szlge`` (small zone low grey level emphasis), ``dzm_sdlge``, ``ngl_ldlge``.
    """
    return float(np.sum(m.p / (m.i_float ** 2 * m.j_float ** 2)))


def small_high_grey_level_emphasis(m: CountMatrix) -> float:
    r"""F = 1/N_s \sum_i \sum_j i^2 s_ij / j^2.

    ``szm_szhge`` (small zone high grey level emphasis), ``dzm_sdhge``, ``ngl_ldhge``.
    """
    return float(np.sum(m.p * m.i_float ** 2 / m.j_float ** 2))


def large_low_grey_level_emphasis(m: CountMatrix) -> float:
    r"""F = 1/N_s \sum_i \sum_j j^2 s_ij / i^2.

    ``szm_lzlge`` (large zone low grey level emphasis), ``dzm_ldlge``, ``ngl_hdlge``.
    """
    return float(np.sum(m.p * m.j_float ** 2 / m.i_float ** 2))


def large_high_grey_level_emphasis(m: CountMatrix) -> float:
    r"""F = 1/N_s \sum_i \sum_j i^2 j^2 s_ij.

    ``szm_lzhge`` (large zone high grey level emphasis), ``dzm_ldhge``, ``ngl_hdhge``.
    """
    return float(np.sum(m.p * m.i_float ** 2 * m.j_float ** 2))


def grey_level_non_uniformity(m: CountMatrix) -> float:
    r"""F = 1/N_s \sum_i s_i.^2.

    ``szm_glnu``, ``dzm_glnu``, ``ngl_glnu``.
    """
    return float(np.sum(m.row_sums() ** 2) / m.n_s) if m.n_s else _empty()


def grey_level_non_uniformity_normalised(m: CountMatrix) -> float:
    r"""F = 1/N_s^2 \sum_i s_i.^2.

    ``szm_glnu_norm``, ``dzm_glnu_norm``, ``ngl_glnu_norm``.
    """
    return float(np.sum(m.row_sums() ** 2) / m.n_s ** 2) if m.n_s else _empty()


def column_non_uniformity(m: CountMatrix) -> float:
    r"""F = 1/N_s \sum_j s_.j^2.

    Zone size non-uniformity ``szm_zsnu``, zone distance non-uniformity ``dzm_zdnu``,
    dependence count non-uniformity ``ngl_dcnu``.
    """
    return float(np.sum(m.column_sums() ** 2) / m.n_s) if m.n_s else _empty()


def column_non_uniformity_normalised(m: CountMatrix) -> float:
    r"""F = 1/N_s^2 \sum_j s_.j^2.

    ``szm_zsnu_norm``, ``dzm_zdnu_norm``, ``ngl_dcnu_norm``.
    """
    return float(np.sum(m.column_sums() ** 2) / m.n_s ** 2) if m.n_s else _empty()


def percentage(m: CountMatrix) -> float:
    r"""F = N_s / N_v.

    Zone percentage ``szm_z_perc`` / ``dzm_z_perc``, dependence count percentage ``ngl_dc_perc`` (1 by construction).
    """
    if m.n_voxels == 0:
        raise Undefined("the ROI has no voxels")
    return m.n_s / m.n_voxels


def grey_level_variance(m: CountMatrix) -> float:
    r"""F = \sum_i \sum_j (i - mu)^2 p_ij, with mu = \sum_i \sum_j i p_ij.

    ``szm_gl_var``, ``dzm_gl_var``, ``ngl_gl_var``.
    """
    p, i = m.p, m.i_float
    return float(np.sum((i - np.sum(i * p)) ** 2 * p))


def column_variance(m: CountMatrix) -> float:
    r"""F = \sum_i \sum_j (j - mu)^2 p_ij, with mu = \sum_i \sum_j j p_ij.

    Zone size variance ``szm_zs_var``, zone distance variance ``dzm_zd_var``, dependence count variance ``ngl_dc_var``.
    """
    p, j = m.p, m.j_float
    return float(np.sum((j - np.sum(j * p)) ** 2 * p))


def entropy(m: CountMatrix) -> float:
    r"""F = -\sum_i \sum_j p_ij log2 p_ij.

    Zone size entropy ``szm_zs_entr``, zone distance entropy ``dzm_zd_entr``, dependence count entropy ``ngl_dc_entr``.
    """
    p = m.p
    return float(-np.sum(p * np.log2(p)))


def energy(m: CountMatrix) -> float:
    r"""F = \sum_i \sum_j p_ij^2.

    Dependence count energy ``ngl_dc_energy``.
    """
    return float(np.sum(m.p ** 2))


def _empty():
    raise Undefined("the matrix is empty")


#: The formulas above in the column order of :func:`._texture_kernels.count_matrix_formulas`, which computes them
#: all at once (:func:`matrix_values`).
SHARED_FORMULAS = (small_emphasis, large_emphasis, low_grey_level_emphasis, high_grey_level_emphasis,
                   small_low_grey_level_emphasis, small_high_grey_level_emphasis, large_low_grey_level_emphasis,
                   large_high_grey_level_emphasis, grey_level_non_uniformity, grey_level_non_uniformity_normalised,
                   column_non_uniformity, column_non_uniformity_normalised, percentage, grey_level_variance,
                   column_variance, entropy, energy)
_SHARED_COLUMNS = {function: k for k, function in enumerate(SHARED_FORMULAS)}


def matrix_values(functions: dict, m: CountMatrix) -> tuple[dict, dict]:
    """:func:`.common.evaluate` of ``functions`` (name -> formula) on ``m``: compiled, all at once
    (:func:`._texture_kernels.count_matrix_formulas`; the same values to rounding), when every formula is one of
    :data:`SHARED_FORMULAS` and ``m`` has cells and voxels; else formula by formula (with their reasons for NaN)."""
    if not (all(f in _SHARED_COLUMNS for f in functions.values()) and m.count.size and m.n_voxels > 0):
        return evaluate(functions, m)
    values, _ = _kernels.count_matrix_formulas(np.zeros(m.i.size, dtype=np.int64), np.ascontiguousarray(m.i, np.int64),
                                               np.ascontiguousarray(m.j, np.int64),
                                               np.ascontiguousarray(m.count, np.float64), 1,
                                               np.array([float(m.n_voxels)]))
    return {name: float(values[0, _SHARED_COLUMNS[function]]) for name, function in functions.items()}, {}


# --- feature descriptions ------------------------------------------------------------------------

#: Tag suffix -> (dimension, IBSI aggregation identifier (none here), name, pyradiomics setting or None), as
#: :data:`.common.AGGREGATIONS`: pyradiomics computes the 3D matrix by default and the 2.5D one (slices
#: merged) with ``force2D: true``; it has no per-slice average (2D).
DIMENSIONS = {"2D": ("2D", None, "2D", None), "2_5D": ("2.5D", None, "2.5D", "force2D: true"),
              "3D": ("3D", None, "3D", "")}


def describe(prefix: str, specs, pyradiomics_class: str | None = None) -> dict:
    """``FEATURES`` of a family: every tag (each dimension) -> name, unit, description, pyradiomics, ibsi_id, dimension.

    ``specs`` rows are (base tag, function, name, description, pyradiomics feature name or None); see
    :func:`.common.describe`.
    """
    rows = ((base, name, "", description, pyradiomics) for base, _function, name, description, pyradiomics in specs)
    return common.describe(prefix, rows, DIMENSIONS, pyradiomics_class)


# --- evaluation and aggregation over 2D / 2.5D / 3D ----------------------------------------------

def compute_by_dimension(roi: Roi, settings, family: str, prefix: str, functions: dict, build, merge) -> dict:
    """Every feature of ``functions`` for each dimension of ``settings.dimensions``, keyed by IBSI tag.

    ``build(roi, settings, in_plane)`` returns the matrices: one per slice holding ROI voxels when
    ``in_plane`` (2D, 2.5D), else a list with the one volume matrix (3D); ``merge(list)`` sums per-slice
    matrices (2.5D). NaN values get a note in ``roi.notes``; nothing here raises for an odd ROI.
    """
    result, slice_matrices = {}, None
    dimensions = getattr(settings, "dimensions", ("3D",))
    check_dimensions(dimensions)
    for dimension in dimensions:
        suffix = SUFFIX[dimension]
        if dimension == "3D":
            matrices = build(roi, settings, False)
        else:
            if slice_matrices is None:
                slice_matrices = build(roi, settings, True)
            matrices = slice_matrices
        if not matrices:
            roi.notes.append(f"{family}: all {suffix} features are NaN: the ROI intensity mask is empty")
            result.update({f"{prefix}_{name}_{suffix}": float("nan") for name in functions})
            continue
        if dimension == "2D":
            values = _slice_average(functions, matrices, family, prefix, suffix, roi)
        else:
            values, reasons = matrix_values(functions, merge(matrices) if dimension == "2.5D" else matrices[0])
            for name, reason in reasons.items():
                roi.notes.append(f"{family}: {prefix}_{name}_{suffix} is NaN: {reason}")
        result.update({f"{prefix}_{name}_{suffix}": value for name, value in values.items()})
    return result


def _slice_average(functions, matrices, family, prefix, suffix, roi) -> dict:
    """IBSI 2D: the mean over slices of each feature; slices where it is undefined are left out (with a note)."""
    per_slice = [matrix_values(functions, m) for m in matrices]
    values = {}
    for name in functions:
        defined = [v[name] for v, _ in per_slice if not np.isnan(v[name])]
        reasons = sorted({r[name] for _, r in per_slice if name in r})
        tag = f"{prefix}_{name}_{suffix}"
        if not defined:
            values[name] = float("nan")
            roi.notes.append(f"{family}: {tag} is NaN: undefined in every slice ({'; '.join(reasons)})")
            continue
        values[name] = float(np.mean(defined))
        if len(defined) < len(per_slice):
            roi.notes.append(f"{family}: {tag} averages {len(defined)} of {len(per_slice)} slices; "
                             f"undefined in the others ({'; '.join(reasons)})")
    return values


# --- geometry shared by the builders -------------------------------------------------------------

def roi_box(roi: Roi, pad: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels, intensity mask, morphological mask) cropped to the ROI's bounding box and zero-padded by ``pad``.

    Levels are 0 outside the intensity mask. Padding makes the grid's edge behave as outside the ROI,
    and cropping keeps every builder's cost proportional to the ROI, not to the image. Made once per Roi and
    ``pad`` (:meth:`Roi.derived`) and shared by the families: read-only.
    """
    return roi.derived(("roi_box", int(pad)), lambda: _roi_box(roi, int(pad)))


def _roi_box(roi: Roi, pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`roi_box`, computed."""
    box = roi.masks_box()
    if any(b.start >= b.stop for b in box):
        shape = (1, 1, 1)
        return np.zeros(shape, np.int64), np.zeros(shape, bool), np.zeros(shape, bool)
    intensity = common.zero_padded(roi.intensity_mask[box], pad)
    levels = np.where(intensity, common.zero_padded(np.asarray(roi.levels)[box], pad), 0).astype(np.int64)
    return levels, intensity, common.zero_padded(roi.morphological_mask[box], pad)


def neighbour_offsets(distance: int, in_plane: bool) -> list[tuple]:
    """All offsets (dz, dy, dx) within Chebyshev ``distance`` except (0, 0, 0), in-plane or 3D."""
    r = range(-int(distance), int(distance) + 1)
    return [(dz, dy, dx) for dz in ((0,) if in_plane else r) for dy in r for dx in r if (dz, dy, dx) != (0, 0, 0)]


def neighbourhood_counts(roi: Roi, settings, distance: int, in_plane: bool):
    """For every voxel of :func:`roi_box` ``(roi, pad=distance)``'s intensity mask (C order), over its neighbours
    within Chebyshev ``distance`` (in-plane or 3D): (sum of the grey levels of those in the mask, their number)
    for the NGTDM, and the number of dependent ones (grey level > 0 within ``settings.ngldm_coarseness``) for the
    NGLDM, then those voxels' flat indices into the box; one compiled pass
    (:func:`~._texture_kernels.neighbourhood_counts`), made once per Roi, distance and plane (:meth:`Roi.derived`):
    the NGTDM and NGLDM of one extraction share it when their distances agree."""
    coarseness = dependence_coarseness(settings)
    return roi.derived(neighbourhood_key(distance, in_plane, coarseness), lambda: _kernels.neighbourhood_counts(
        *neighbourhood_arguments(roi, distance, in_plane, coarseness)))


def dependence_coarseness(settings) -> int:
    """The NGLDM's coarseness ``settings.ngldm_coarseness`` as the integer the kernel compares with: grey levels are
    integers, so |i - j| <= alpha exactly when |i - j| <= floor(alpha) (never for a NaN alpha: -1)."""
    alpha = float(getattr(settings, "ngldm_coarseness", 0))
    return int(math.floor(min(max(alpha, -1.0), 2.0 ** 40))) if alpha == alpha else -1


def neighbourhood_key(distance: int, in_plane: bool, coarseness: int) -> tuple:
    """The :meth:`Roi.derived` key of :func:`neighbourhood_counts`."""
    return "neighbourhood", int(distance), bool(in_plane), coarseness


def neighbourhood_arguments(roi: Roi, distance: int, in_plane: bool, coarseness: int) -> tuple:
    """The arguments of :func:`~._texture_kernels.neighbourhood_counts` for :func:`neighbourhood_counts`."""
    levels, intensity, _ = roi_box(roi, pad=distance)
    return (np.ascontiguousarray(levels, dtype=np.int64), np.ascontiguousarray(intensity), int(distance),
            bool(in_plane), coarseness)


@dataclass(frozen=True)
class Zones:
    """Connected zones of equal grey level (IBSI 1, section 3.8): per voxel of the intensity mask and per zone.

    ``voxels``: flat indices of the ROI voxels; ``label``: each voxel's zone (0..n-1);
    ``level``, ``size``, ``slice``: each zone's grey level, voxel count and slice (z index; for in-plane
    zones all voxels share it, for 3D zones it is one of its voxels' slices).
    """

    voxels: np.ndarray
    label: np.ndarray
    level: np.ndarray
    size: np.ndarray
    slice: np.ndarray


def roi_zones(roi: Roi, in_plane: bool) -> Zones:
    """The zones of :func:`roi_box` ``(roi)``'s levels (:func:`label_zones`), labelled once per Roi and
    connectivity (:meth:`Roi.derived`): the GLSZM and GLDZM of one extraction share them. Read-only."""
    return roi.derived(("zones", bool(in_plane)),
                       lambda: _zones(roi_box(roi)[0], *roi_zone_labels(roi, in_plane)))


def roi_zone_labels(roi: Roi, in_plane: bool) -> tuple[np.ndarray, int]:
    """:func:`~._texture_kernels.zone_labels` of :func:`roi_box` ``(roi)``'s levels (zero on the border: padded),
    once per Roi and connectivity: (each ROI voxel's zone in C order, the number of zones)."""
    return roi.derived(zone_labels_key(in_plane), lambda: _kernels.zone_labels(roi_box(roi)[0], bool(in_plane)))


def zone_labels_key(in_plane: bool) -> tuple:
    """The :meth:`Roi.derived` key of :func:`roi_zone_labels`."""
    return "zone_labels", bool(in_plane)


def label_zones(levels: np.ndarray, in_plane: bool) -> Zones:
    """Zones of ``levels`` (0 = outside): 8-connected in-plane when ``in_plane``, else 26-connected.

    3D grids: a compiled union-find (:func:`~._texture_kernels.zone_labels`). Other grids: the connected
    components of a graph whose edges join neighbouring ROI voxels of equal grey level (one edge per unique
    direction: 4 in-plane, 13 in 3D). Both number the zones by their first voxel; in-plane zones never cross slices.
    """
    if levels.ndim == 3:
        # zero-padded so that every neighbour of a ROI voxel lies in the grid (unless its border faces are zero
        # already, as those of roi_box are)
        grid = np.ascontiguousarray(levels, dtype=np.int64)
        if not _zero_border(grid):
            grid = common.zero_padded(grid, 1)
        return _zones(levels, *_kernels.zone_labels(grid, bool(in_plane)))
    mask = levels > 0
    n_voxels = int(np.count_nonzero(mask))
    index = np.full(levels.shape, -1, dtype=np.int64)
    index[mask] = np.arange(n_voxels)
    rows, cols = [], []
    for offset in directions("2D" if in_plane else "3D"):
        a, b = shifted_pairs(levels, offset)
        ia, ib = shifted_pairs(index, offset)
        same = (a == b) & (a > 0)
        rows.append(ia[same])
        cols.append(ib[same])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    from scipy import sparse   # imported here: ~0.1 s that only this path needs
    from scipy.sparse.csgraph import connected_components

    graph = sparse.coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n_voxels, n_voxels))
    n_zones, label = connected_components(graph.tocsr(), directed=False)
    return _zones(levels, label, n_zones)


def _zones(levels: np.ndarray, label: np.ndarray, n_zones: int) -> Zones:
    """The :class:`Zones` of ``levels`` from each ROI voxel's zone (``label``, voxels in C order; ``n_zones``)."""
    voxels = np.flatnonzero(levels > 0)
    level = np.zeros(n_zones, dtype=np.int64)
    level[label] = levels.ravel()[voxels]
    zone_slice = np.zeros(n_zones, dtype=np.int64)
    zone_slice[label] = voxels // max(int(np.prod(levels.shape[1:])), 1)     # first index of a C-order flat index
    return Zones(voxels, label, level, np.bincount(label, minlength=n_zones), zone_slice)


def _zero_border(grid: np.ndarray) -> bool:
    """Whether the six border faces of the 3D ``grid`` are all zero (at least 3 voxels along every axis)."""
    if min(grid.shape) < 3:
        return False
    return not (grid[0].any() or grid[-1].any() or grid[:, 0].any() or grid[:, -1].any()
                or grid[:, :, 0].any() or grid[:, :, -1].any())


def border_distance(mask: np.ndarray, in_plane: bool) -> np.ndarray:
    """Each voxel's distance to the edge of ``mask`` (IBSI 1, section 3.9), 0 outside.

    The fewest 4-connected (in-plane) or 6-connected (3D) steps to a voxel outside the mask, the grid's
    edge counting as outside: 1 for a voxel on the ROI edge. Same as counting the erosions with a cross
    (a compiled city-block distance transform, :func:`~._texture_kernels.city_block_distances`).
    """
    return _kernels.city_block_distances(np.ascontiguousarray(mask, dtype=bool), bool(in_plane))


def count_matrices(level, column, slice_ids, intensity: np.ndarray, in_plane: bool) -> list[CountMatrix]:
    """The :class:`CountMatrix` of (``level[k]``, ``column[k]``) pairs (one per zone or voxel) for every slice
    holding ROI voxels (``in_plane``; ``slice_ids``: each pair's slice), else a one-element list with the
    volume's; ``N_v`` is the number of voxels of the ``intensity`` mask (of the slice).

    In-plane, the pairs of all slices are counted at once by their (slice, level, column) code, whose sorted
    distinct values list each slice's elements in (level, column) order."""
    if not in_plane:
        return [CountMatrix.from_pairs(level, column, intensity.sum())]
    level = np.asarray(level, dtype=np.int64).ravel()
    column = np.asarray(column, dtype=np.int64).ravel()
    if level.size == 0:
        return []
    voxels_per_slice = intensity.sum(axis=(1, 2))
    n_i, n_j = int(level.max()) + 1, int(column.max()) + 1
    cells, counts = common.unique_counts((np.asarray(slice_ids, dtype=np.int64) * n_i + level) * n_j + column,
                                         intensity.shape[0] * n_i * n_j)
    cell_slice = cells // (n_i * n_j)
    starts = np.flatnonzero(np.diff(cell_slice, prepend=-1))
    return [CountMatrix((cells[a:b] // n_j) % n_i, cells[a:b] % n_j, counts[a:b].astype(np.float64),
                        int(voxels_per_slice[cell_slice[a]]))
            for a, b in zip(starts, np.append(starts[1:], cells.size))]
