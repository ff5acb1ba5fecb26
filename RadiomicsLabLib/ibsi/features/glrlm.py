"""Grey level run length matrix (GLRLM) features, IBSI 1 section 3.7 (tags ``rlm_*``).

Matrix (section 3.7): ``r_ij`` counts the runs of grey level ``i`` and length ``j`` along one direction,
a run being a maximal line of consecutive ROI voxels with the same grey level (voxels outside the ROI,
grey level 0, end a run and are never part of one). Directions: the 13 unique 3D directions, or the 4
in-plane ones for 2D / 2.5D.

Aggregation as for the GLCM (section 3.6.1, tag suffix ``_<dim>_<avg|comb>``, see :mod:`.glcm`): per slice
and direction (``2D_avg``), per slice (``2D_comb``), per direction (``2_5D_avg``, ``3D_avg``) or all merged
(``2_5D_comb``, ``3D_comb``); :func:`~.common.directional_aggregates`.

Notation (IBSI): ``N_s = sum_i sum_j r_ij`` (number of runs), ``r_i. = sum_j r_ij``, ``r_.j = sum_i r_ij``,
``p_ij = r_ij / N_s``; ``N_v`` the number of voxels the matrix was built from. Each ROI voxel lies in
exactly one run per direction, so ``N_v = sum_j j r_.j``; for merged matrices this is the sum of the
``N_v`` of the merged ones, as IBSI prescribes for the run percentage.

The run detection (:func:`runs`) and the formulas (:class:`GlrlmFeatures`) are separate. As for the
GLCM, the formulas take any number of matrices as a list of their non-zero cells, each tagged with its
matrix (every sum is one ``np.bincount``, :class:`~.common.CellMatrices`); :func:`glrlm_features` takes
dense matrices ``(..., n_g, n_r)``, as voxel-wise feature maps will.
"""

import numpy as np

from .common import (AGGREGATIONS, CellMatrices, average_over_matrices, check_dimensions, dense_cells,
                     dense_matrix_features, describe, directional_aggregates, group_sums, require_levels,
                     texture_grid, texture_keys, unique_counts)
from . import _texture_kernels as _kernels
from . import texture_tables
from .directions import directions

FAMILY = "GLRLM"
PREFIX = "rlm"

#: (base tag, name, IBSI identifier, description, pyradiomics GLRLM feature)
SPECS = (
    ("sre", "Short runs emphasis", "22OV", "Run counts weighted by 1 / j^2: high for fine texture.",
     "ShortRunEmphasis"),
    ("lre", "Long runs emphasis", "W4KF", "Run counts weighted by j^2: high for coarse texture.", "LongRunEmphasis"),
    ("lgre", "Low grey level run emphasis", "V3SW", "Run counts weighted by 1 / i^2.", "LowGrayLevelRunEmphasis"),
    ("hgre", "High grey level run emphasis", "G3QZ", "Run counts weighted by i^2.", "HighGrayLevelRunEmphasis"),
    ("srlge", "Short run low grey level emphasis", "HTZT", "Run counts weighted by 1 / (i^2 j^2).",
     "ShortRunLowGrayLevelEmphasis"),
    ("srhge", "Short run high grey level emphasis", "GD3A", "Run counts weighted by i^2 / j^2.",
     "ShortRunHighGrayLevelEmphasis"),
    ("lrlge", "Long run low grey level emphasis", "IVPO", "Run counts weighted by j^2 / i^2.",
     "LongRunLowGrayLevelEmphasis"),
    ("lrhge", "Long run high grey level emphasis", "3KUM", "Run counts weighted by i^2 j^2.",
     "LongRunHighGrayLevelEmphasis"),
    ("glnu", "Grey level non-uniformity", "R5YN", "How unevenly the runs are distributed over grey levels.",
     "GrayLevelNonUniformity"),
    ("glnu_norm", "Normalised grey level non-uniformity", "OVBL",
     "Grey level non-uniformity divided by the number of runs.", "GrayLevelNonUniformityNormalized"),
    ("rlnu", "Run length non-uniformity", "W92Y", "How unevenly the runs are distributed over run lengths.",
     "RunLengthNonUniformity"),
    ("rlnu_norm", "Normalised run length non-uniformity", "IC23",
     "Run length non-uniformity divided by the number of runs.", "RunLengthNonUniformityNormalized"),
    ("r_perc", "Run percentage", "9ZK5", "Number of runs per voxel (voxels summed over merged matrices).",
     "RunPercentage"),
    ("gl_var", "Grey level variance", "8CE5", "Variance of the grey level of a run.", "GrayLevelVariance"),
    ("rl_var", "Run length variance", "SXLW", "Variance of the length of a run.", "RunVariance"),
    ("rl_entr", "Run entropy", "HJ9O", "Entropy (bits) of the joint grey level / run length distribution.",
     "RunEntropy"),
)

#: Every output tag -> description (all GLRLM features are dimensionless).
FEATURES = describe(PREFIX, SPECS, AGGREGATIONS, "glrlm")
#: The base tags (``rlm_sre``), in IBSI order; :class:`GlrlmFeatures` has a method per base name.
BASE_TAGS = tuple(f"{PREFIX}_{base}" for base, *_ in SPECS)


# --------------------------------------------------------------------------------------------
# Feature formulas on a set of matrices given by their non-zero cells
# --------------------------------------------------------------------------------------------

class GlrlmFeatures(CellMatrices):
    """IBSI GLRLM features of ``n_matrices`` run length matrices given by their non-zero cells.

    Cell ``e`` of matrix ``matrix[e]`` (0..n_matrices-1) counts ``counts[e]`` runs of grey level ``i[e]``
    and length ``j[e]``; cells not listed are zero, and each cell appears at most once per matrix
    (entropies need merged cells). Every method returns an array of length
    ``n_matrices``; an empty matrix gives NaN (see :func:`~.common.matrix_features`).
    """

    def __init__(self, matrix, i, j, counts, n_matrices):
        super().__init__(matrix, i, j, counts, n_matrices)
        self.r = self.count                                                  # r_ij
        self.n_s = self.total                                                # N_s
        self.n_v = self._msum(self.j * self.r)                               # N_v = sum_j j r_.j
        with np.errstate(divide="ignore", invalid="ignore"):
            self.p = self.r / self.n_s[self.m]                               # p_ij
        self.ri_m, _, self.r_i = group_sums(self.m, self.i, self.r)            # r_i.
        self.rj_m, _, self.r_j = group_sums(self.m, self.j, self.r)            # r_.j

    def _emphasis(self, weights):
        """1/N_s sum_i sum_j weights(i, j) r_ij per matrix."""
        return self._msum(weights * self.r) / self.n_s

    def sre(self):
        """Short runs emphasis (rlm_sre, IBSI 22OV): F = 1/N_s sum_i sum_j r_ij / j^2."""
        return self._emphasis(1.0 / self.j ** 2)

    def lre(self):
        """Long runs emphasis (rlm_lre, IBSI W4KF): F = 1/N_s sum_i sum_j j^2 r_ij."""
        return self._emphasis(self.j ** 2)

    def lgre(self):
        """Low grey level run emphasis (rlm_lgre, IBSI V3SW): F = 1/N_s sum_i sum_j r_ij / i^2."""
        return self._emphasis(1.0 / self.i ** 2)

    def hgre(self):
        """High grey level run emphasis (rlm_hgre, IBSI G3QZ): F = 1/N_s sum_i sum_j i^2 r_ij."""
        return self._emphasis(self.i ** 2)

    def srlge(self):
        """Short run low grey level emphasis (rlm_srlge, IBSI HTZT): F = 1/N_s sum_i sum_j r_ij / (i^2 j^2)."""
        return self._emphasis(1.0 / (self.i ** 2 * self.j ** 2))

    def srhge(self):
        """Short run high grey level emphasis (rlm_srhge, IBSI GD3A): F = 1/N_s sum_i sum_j i^2 r_ij / j^2."""
        return self._emphasis(self.i ** 2 / self.j ** 2)

    def lrlge(self):
        """Long run low grey level emphasis (rlm_lrlge, IBSI IVPO): F = 1/N_s sum_i sum_j j^2 r_ij / i^2."""
        return self._emphasis(self.j ** 2 / self.i ** 2)

    def lrhge(self):
        """Long run high grey level emphasis (rlm_lrhge, IBSI 3KUM): F = 1/N_s sum_i sum_j i^2 j^2 r_ij."""
        return self._emphasis(self.i ** 2 * self.j ** 2)

    def glnu(self):
        """Grey level non-uniformity (rlm_glnu, IBSI R5YN): F = 1/N_s sum_i r_i.^2."""
        return self._msum(self.r_i ** 2, self.ri_m) / self.n_s

    def glnu_norm(self):
        """Normalised grey level non-uniformity (rlm_glnu_norm, IBSI OVBL): F = 1/N_s^2 sum_i r_i.^2."""
        return self._msum(self.r_i ** 2, self.ri_m) / self.n_s ** 2

    def rlnu(self):
        """Run length non-uniformity (rlm_rlnu, IBSI W92Y): F = 1/N_s sum_j r_.j^2."""
        return self._msum(self.r_j ** 2, self.rj_m) / self.n_s

    def rlnu_norm(self):
        """Normalised run length non-uniformity (rlm_rlnu_norm, IBSI IC23): F = 1/N_s^2 sum_j r_.j^2."""
        return self._msum(self.r_j ** 2, self.rj_m) / self.n_s ** 2

    def r_perc(self):
        """Run percentage (rlm_r_perc, IBSI 9ZK5): F = N_s / N_v, N_v = sum_j j r_.j (the voxels of the matrix;
        for merged matrices the sum over the merged ones)."""
        return self.n_s / self.n_v

    def gl_var(self):
        """Grey level variance (rlm_gl_var, IBSI 8CE5): F = sum_i sum_j (i - mu)^2 p_ij, mu = sum_i sum_j i p_ij."""
        mu = self._msum(self.i * self.p)
        return self._msum((self.i - mu[self.m]) ** 2 * self.p)

    def rl_var(self):
        """Run length variance (rlm_rl_var, IBSI SXLW): F = sum_i sum_j (j - mu)^2 p_ij, mu = sum_i sum_j j p_ij."""
        mu = self._msum(self.j * self.p)
        return self._msum((self.j - mu[self.m]) ** 2 * self.p)

    def rl_entr(self):
        """Run entropy (rlm_rl_entr, IBSI HJ9O): F = -sum_i sum_j p_ij log2 p_ij."""
        return -self._msum(self.p * np.log2(self.p))


def glrlm_features(matrices, grey, lengths) -> dict:
    """{base tag (``rlm_sre``): array of shape ``matrices.shape[:-2]``} for dense matrices
    ``(..., n_g, n_r)``: row ``a`` stands for grey level ``grey[a]``, column ``b`` for run length ``lengths[b]``."""
    grey, lengths = np.asarray(grey), np.asarray(lengths)
    return dense_matrix_features(matrices, BASE_TAGS, lambda matrix, a, b, counts, n_matrices: GlrlmFeatures(
        matrix, grey[a], lengths[b], counts, n_matrices))


# --------------------------------------------------------------------------------------------
# Run detection
# --------------------------------------------------------------------------------------------

def runs(index: np.ndarray, direction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every run along ``direction`` (dz, dy, dx with components in -1, 0, 1): (slice z of its first voxel,
    grey level index, length).

    ``index``: grey level index 0..n-1 inside the ROI, -1 outside, indexed (z, y, x). Each ROI voxel is
    put on its line ``p = b + t d``: ``t`` is its coordinate along the first axis ``k`` where ``d`` is
    non-zero (times ``d_k``), ``b`` the line's point with ``b_k = 0``. Sorting the ROI voxels by (line, t)
    makes every line contiguous; a run starts where the line changes, ``t`` skips (a voxel outside the ROI)
    or the grey level changes.
    """
    direction = np.asarray(direction, dtype=np.int64)
    if index.ndim == 3 and index.size:
        # the same runs by a compiled walk along the lines (order differs; every use counts them)
        return _kernels.runs(np.ascontiguousarray(index, dtype=np.int64), *(int(d) for d in direction))
    coords = np.nonzero(index >= 0)
    if coords[0].size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    level = index[coords]
    k = int(np.flatnonzero(direction)[0])
    t = coords[k] * direction[k]
    shape = index.shape
    line = np.zeros(coords[0].size, dtype=np.int64)
    for axis in range(3):
        if axis != k:
            base = coords[axis] - t * direction[axis] + shape[k]        # shifted to be >= 0
            line = line * (shape[axis] + 2 * shape[k]) + base
    order = np.lexsort((t, line))
    line, t, level, z = line[order], t[order], level[order], coords[0][order]
    start = np.ones(line.size, dtype=bool)
    start[1:] = (line[1:] != line[:-1]) | (t[1:] != t[:-1] + 1) | (level[1:] != level[:-1])
    first = np.flatnonzero(start)
    return z[first], level[first], np.diff(np.append(first, line.size))


def all_runs(index: np.ndarray, direction_list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`runs` along each direction, concatenated: (direction number, slice z, grey level index, length)."""
    found = [runs(index, d) for d in direction_list]
    numbers = [np.full(f[0].size, o, dtype=np.int64) for o, f in enumerate(found)]
    return (np.concatenate(numbers),) + tuple(np.concatenate([f[c] for f in found]) for c in range(3))


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

def compute(roi, settings) -> dict:
    """GLRLM features of ``roi.levels`` for every dimension in ``settings.dimensions`` (avg and comb)."""
    require_levels(roi, FAMILY)
    check_dimensions(settings.dimensions)
    in_plane = tuple(d for d in settings.dimensions if d != "3D")
    grey, index = texture_grid(roi, FAMILY) if in_plane else (None, None)

    def runs_along(dimension):
        direction_list = directions(dimension)
        return len(direction_list), all_runs(index, direction_list)

    def aggregate(suffix, group, n_groups, level, length):
        """Features of the run length matrix of each group of runs, averaged over the non-empty ones."""
        max_length = int(length.max(initial=0)) + 1
        cells, counts = unique_counts((group * grey.size + level) * max_length + length,
                                      n_groups * grey.size * max_length)
        return aggregate_cells(suffix, n_groups, cells // (grey.size * max_length),
                               grey[(cells // max_length) % grey.size], cells % max_length, counts)

    def aggregate_cells(suffix, n_groups, matrix, level, length, counts):
        """Features of the run length matrices given by their non-zero cells (``level``: the grey level): the
        formulas of :class:`GlrlmFeatures`, compiled (:func:`._texture_kernels.count_matrix_formulas`, whose first
        16 columns are the GLRLM's features in IBSI order; the same values to rounding)."""
        values, filled = _kernels.count_matrix_formulas(
            np.ascontiguousarray(matrix, dtype=np.int64), np.ascontiguousarray(level, dtype=np.int64),
            np.ascontiguousarray(length, dtype=np.int64), np.ascontiguousarray(counts, dtype=np.float64), int(n_groups),
            np.full(int(n_groups), -1.0))
        return average_over_matrices(FAMILY, suffix, {tag: values[:, k] for k, tag in enumerate(BASE_TAGS)}, filled,
                                     roi.notes, empty_reason="the ROI intensity mask is empty, "
                                                             "every run length matrix is empty")

    out = directional_aggregates(in_plane, index.shape[0], runs_along, aggregate) if in_plane else {}
    if "3D" in settings.dimensions:
        # 3D: the dense matrices (direction, grey level, length) of the 13 directions counted in one compiled
        # pass over the zero-padded grey levels; their non-zero cells in C order are the cells (and order) that
        # aggregate gives for the same runs
        dense = texture_tables.run_lengths(roi)
        out.update(aggregate_cells("3D_avg", dense.shape[0], *dense_cells(dense)))
        out.update(aggregate_cells("3D_comb", 1, *dense_cells(dense.sum(axis=0)[np.newaxis])))
    return {key: out[key] for key in keys(settings) if key in out}


def keys(settings) -> dict:
    """{output tag: description} of the tags :func:`compute` gives for ``settings``, in output order."""
    return texture_keys(FEATURES, BASE_TAGS, settings.dimensions)
