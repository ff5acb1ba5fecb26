"""Grey level co-occurrence matrix (GLCM) features, IBSI 1 section 3.6 (tags ``cm_*``).

Matrix (section 3.6.1): ``M[i, j]`` counts voxel pairs ``(v, v + d)`` with grey levels ``i`` and ``j``, both
inside the ROI, for an offset ``d`` of Chebyshev length ``settings.glcm_distance`` along one of the 13
(3D) or 4 (in-plane) unique directions. The matrix is symmetric: every pair is counted in both
directions (``M + M^T``). Grey level 0 (outside the ROI) never takes part.

Aggregation (section 3.6.1, "aggregating features"), tag suffix ``_<dim>_<avg|comb>``:

- ``2D_avg``:    one matrix per slice and in-plane direction; features of each, averaged.
- ``2D_comb``:   per slice, the 4 direction matrices summed; features per slice, averaged over slices.
- ``2_5D_avg``:  per in-plane direction, the matrices of all slices summed; features averaged over the 4.
- ``2_5D_comb``: all slice and direction matrices summed into one.
- ``3D_avg``:    one matrix per 3D direction (13); features averaged.
- ``3D_comb``:   the 13 direction matrices summed into one.

Matrices without any voxel pair (a slice without ROI, a direction the ROI has no pair along) take no
part in an average. A feature undefined for some matrices (correlation of a slice with one grey
level) is averaged over the others, with a note in ``roi.notes``; undefined for all, it is NaN with a note.

Notation (IBSI): ``p_ij = M_ij / sum M``; ``p_i. = sum_j p_ij``, ``p_.j = sum_i p_ij``;
``p_{i-j}(k) = sum p_ij over |i - j| = k``; ``p_{i+j}(k) = sum p_ij over i + j = k``; ``N_g`` the number of
grey levels of the discretised ROI (``roi.n_levels``). Logarithms are base 2.

The matrix builder (:func:`cooccurrence_cells`) and the formulas (:class:`GlcmFeatures`) are separate.
The formulas take any number of matrices as a list of their non-zero cells, each cell tagged with
the matrix it belongs to (every sum is then one ``np.bincount`` over matrices), so thousands of
per-slice matrices or thousands of grey levels cost only the cells that occur; :func:`glcm_features`
takes dense matrices ``(..., n, n)``, as voxel-wise feature maps will. The cell representation, the
aggregation and the feature descriptions are shared with the GLRLM (:mod:`.common`). A segment's matrices are
evaluated by the compiled version of the same formulas that the IBSI GLCM maps use (:func:`cell_features`), so that
a few hundred numpy calls per aggregation do not dominate small ROIs; :class:`GlcmFeatures` is their reference.
"""

from functools import cached_property

import numpy as np

from ...errors import RadiomicsLabError
from .common import (AGGREGATIONS, CellMatrices, average_over_matrices, check_dimensions, dense_cells,
                     dense_matrix_features, describe, directional_aggregates, group_sums, require_levels,
                     texture_grid, texture_keys, unique_counts)
from . import texture_tables
from .directions import directions, shifted_pairs

FAMILY = "GLCM"
PREFIX = "cm"

#: (base tag, name, IBSI identifier, description, pyradiomics GLCM feature or None)
SPECS = (
    ("joint_max", "Joint maximum", "GYBY", "Probability of the most common grey level pair.", "MaximumProbability"),
    ("joint_avg", "Joint average", "60VM", "Grey level average weighted by the joint probability.", "JointAverage"),
    ("joint_var", "Joint variance", "UR99", "Variance of the first grey level of a pair about the joint average.",
     "SumSquares"),
    ("joint_entr", "Joint entropy", "TU9B", "Entropy (bits) of the joint grey level pair distribution.",
     "JointEntropy"),
    ("diff_avg", "Difference average", "TF7R", "Mean absolute grey level difference of a pair.", "DifferenceAverage"),
    ("diff_var", "Difference variance", "D3YU", "Variance of the absolute grey level difference of a pair.",
     "DifferenceVariance"),
    ("diff_entr", "Difference entropy", "NTRS", "Entropy (bits) of the absolute grey level difference distribution.",
     "DifferenceEntropy"),
    ("sum_avg", "Sum average", "ZGXS", "Mean grey level sum of a pair.", "SumAverage"),
    ("sum_var", "Sum variance", "OEEB", "Variance of the grey level sum of a pair.", None),
    ("sum_entr", "Sum entropy", "P6QZ", "Entropy (bits) of the grey level sum distribution.", "SumEntropy"),
    ("energy", "Angular second moment", "8ZQL", "Sum of squared joint probabilities (uniformity of pairs).",
     "JointEnergy"),
    ("contrast", "Contrast", "ACUI", "Mean squared grey level difference of a pair.", "Contrast"),
    ("dissimilarity", "Dissimilarity", "8S9J", "Mean absolute grey level difference of a pair.", None),
    ("inv_diff", "Inverse difference", "IB1Z", "Joint probability weighted by 1 / (1 + |i - j|) (homogeneity).", "Id"),
    ("inv_diff_norm", "Normalised inverse difference", "NDRX",
     "Inverse difference with |i - j| divided by N_g.", "Idn"),
    ("inv_diff_mom", "Inverse difference moment", "WF0Z", "Joint probability weighted by 1 / (1 + (i - j)^2).", "Idm"),
    ("inv_diff_mom_norm", "Normalised inverse difference moment", "1QCO",
     "Inverse difference moment with (i - j)^2 divided by N_g^2.", "Idmn"),
    ("inv_var", "Inverse variance", "E8JP", "Joint probability of unequal pairs weighted by 1 / (i - j)^2.",
     "InverseVariance"),
    ("corr", "Correlation", "NI2N", "Linear correlation of the grey levels of a pair; undefined for one grey level.",
     "Correlation"),
    ("auto_corr", "Autocorrelation", "QWB0", "Mean product of the grey levels of a pair.", "Autocorrelation"),
    ("clust_tend", "Cluster tendency", "DG8W", "Second moment of i + j about the marginal means.", "ClusterTendency"),
    ("clust_shade", "Cluster shade", "7NFM", "Third moment of i + j about the marginal means.", "ClusterShade"),
    ("clust_prom", "Cluster prominence", "AE86", "Fourth moment of i + j about the marginal means.",
     "ClusterProminence"),
    ("info_corr1", "Information correlation 1", "R8DG",
     "(HXY - HXY1) / max(HX, HY); undefined for a single grey level.", "Imc1"),
    ("info_corr2", "Information correlation 2", "JN9H", "sqrt(1 - exp(-2 (HXY2 - HXY))).", "Imc2"),
)

#: Every output tag -> description (all GLCM features are dimensionless).
FEATURES = describe(PREFIX, SPECS, AGGREGATIONS, "glcm")
#: The base tags (``cm_contrast``), in IBSI order; :class:`GlcmFeatures` has a method per base name.
BASE_TAGS = tuple(f"{PREFIX}_{base}" for base, *_ in SPECS)

#: Why a feature is NaN for a matrix that does hold pairs.
UNDEFINED = {
    "cm_corr": "the marginal grey level distribution has zero variance (a single grey level)",
    "cm_info_corr1": "the marginal entropies HX and HY are zero (a single grey level)",
}


# --------------------------------------------------------------------------------------------
# Feature formulas on a set of matrices given by their non-zero cells
# --------------------------------------------------------------------------------------------

def _plogp(p):
    return p * np.log2(np.where(p > 0, p, 1.0))


class GlcmFeatures(CellMatrices):
    """IBSI GLCM features of ``n_matrices`` co-occurrence matrices given by their non-zero cells.

    Cell ``e`` of matrix ``matrix[e]`` (0..n_matrices-1) has row grey level ``i[e]``, column grey level
    ``j[e]`` and count ``counts[e]``; cells not listed are zero (levels absent from a matrix cost nothing).
    Each cell appears at most once per matrix (maxima and entropies need merged cells).
    ``n_levels`` is ``N_g``. Every method returns an array of length ``n_matrices``; an empty matrix gives
    NaN (see :func:`~.common.matrix_features`).
    """

    def __init__(self, matrix, i, j, counts, n_matrices, n_levels):
        super().__init__(matrix, i, j, counts, n_matrices)
        self.n_levels = float(n_levels)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.p = self.count / self.total[self.m]                        # p_ij
        self.pi_m, self.pi_g, self.p_i = group_sums(self.m, self.i, self.p)   # p_i. (matrix, grey level, value)
        self.pj_m, self.pj_g, self.p_j = group_sums(self.m, self.j, self.p)   # p_.j
        self.mu_i = self._msum(self.pi_g * self.p_i, self.pi_m)
        self.mu_j = self._msum(self.pj_g * self.p_j, self.pj_m)
        self.var_i = self._msum((self.pi_g - self.mu_i[self.pi_m]) ** 2 * self.p_i, self.pi_m)
        self.var_j = self._msum((self.pj_g - self.mu_j[self.pj_m]) ** 2 * self.p_j, self.pj_m)
        self.d_m, self.d_k, self.p_diff = group_sums(self.m, np.abs(self.i - self.j), self.p)   # p_{i-j}(k)
        self.s_m, self.s_k, self.p_sum = group_sums(self.m, self.i + self.j, self.p)            # p_{i+j}(k)

    def _sum(self, weights):
        """sum_i sum_j weights(i, j) p_ij per matrix."""
        return self._msum(weights * self.p)

    # quantities several features share, computed once (read-only)
    @cached_property
    def _abs_diff(self):
        """|i - j| of every cell."""
        return np.abs(self.i - self.j)

    @cached_property
    def _diff2(self):
        """(i - j)^2 of every cell."""
        return (self.i - self.j) ** 2

    @cached_property
    def _mu(self):
        """The joint average, diff average and sum average of every matrix."""
        return (self._sum(self.i), self._msum(self.d_k * self.p_diff, self.d_m),
                self._msum(self.s_k * self.p_sum, self.s_m))

    @cached_property
    def _joint_entropy(self):
        return -self._msum(_plogp(self.p))

    @cached_property
    def _hx_hy(self):
        """HX = -sum_i p_i. log2 p_i. and HY = -sum_j p_.j log2 p_.j of every matrix."""
        return -self._msum(_plogp(self.p_i), self.pi_m), -self._msum(_plogp(self.p_j), self.pj_m)

    @cached_property
    def _cluster_base(self):
        """i + j - mu_i. - mu_.j of every cell."""
        return self.i + self.j - self.mu_i[self.m] - self.mu_j[self.m]

    def joint_max(self):
        """Joint maximum (cm_joint_max, IBSI GYBY): F = max(p_ij)."""
        out = np.zeros(self.n_matrices)
        np.maximum.at(out, self.m, self.p)
        return out

    def joint_avg(self):
        """Joint average (cm_joint_avg, IBSI 60VM): mu = sum_i sum_j i p_ij."""
        return self._mu[0]

    def joint_var(self):
        """Joint variance (cm_joint_var, IBSI UR99): F = sum_i sum_j (i - mu)^2 p_ij, mu the joint average."""
        return self._sum((self.i - self._mu[0][self.m]) ** 2)

    def joint_entr(self):
        """Joint entropy (cm_joint_entr, IBSI TU9B): F = -sum_i sum_j p_ij log2 p_ij."""
        return self._joint_entropy

    def diff_avg(self):
        """Difference average (cm_diff_avg, IBSI TF7R): mu_d = sum_k k p_{i-j}(k), k = 0..N_g-1."""
        return self._mu[1]

    def diff_var(self):
        """Difference variance (cm_diff_var, IBSI D3YU): F = sum_k (k - mu_d)^2 p_{i-j}(k)."""
        return self._msum((self.d_k - self._mu[1][self.d_m]) ** 2 * self.p_diff, self.d_m)

    def diff_entr(self):
        """Difference entropy (cm_diff_entr, IBSI NTRS): F = -sum_k p_{i-j}(k) log2 p_{i-j}(k)."""
        return -self._msum(_plogp(self.p_diff), self.d_m)

    def sum_avg(self):
        """Sum average (cm_sum_avg, IBSI ZGXS): mu_s = sum_k k p_{i+j}(k), k = 2..2 N_g."""
        return self._mu[2]

    def sum_var(self):
        """Sum variance (cm_sum_var, IBSI OEEB): F = sum_k (k - mu_s)^2 p_{i+j}(k)."""
        return self._msum((self.s_k - self._mu[2][self.s_m]) ** 2 * self.p_sum, self.s_m)

    def sum_entr(self):
        """Sum entropy (cm_sum_entr, IBSI P6QZ): F = -sum_k p_{i+j}(k) log2 p_{i+j}(k)."""
        return -self._msum(_plogp(self.p_sum), self.s_m)

    def energy(self):
        """Angular second moment (cm_energy, IBSI 8ZQL): F = sum_i sum_j p_ij^2."""
        return self._sum(self.p)

    def contrast(self):
        """Contrast (cm_contrast, IBSI ACUI): F = sum_i sum_j (i - j)^2 p_ij."""
        return self._sum(self._diff2)

    def dissimilarity(self):
        """Dissimilarity (cm_dissimilarity, IBSI 8S9J): F = sum_i sum_j |i - j| p_ij."""
        return self._sum(self._abs_diff)

    def inv_diff(self):
        """Inverse difference (cm_inv_diff, IBSI IB1Z): F = sum_i sum_j p_ij / (1 + |i - j|)."""
        return self._sum(1.0 / (1.0 + self._abs_diff))

    def inv_diff_norm(self):
        """Normalised inverse difference (cm_inv_diff_norm, IBSI NDRX): F = sum_i sum_j p_ij / (1 + |i - j| / N_g)."""
        return self._sum(1.0 / (1.0 + self._abs_diff / self.n_levels))

    def inv_diff_mom(self):
        """Inverse difference moment (cm_inv_diff_mom, IBSI WF0Z): F = sum_i sum_j p_ij / (1 + (i - j)^2)."""
        return self._sum(1.0 / (1.0 + self._diff2))

    def inv_diff_mom_norm(self):
        """Normalised inverse difference moment (cm_inv_diff_mom_norm, IBSI 1QCO):
        F = sum_i sum_j p_ij / (1 + (i - j)^2 / N_g^2)."""
        return self._sum(1.0 / (1.0 + self._diff2 / self.n_levels ** 2))

    def inv_var(self):
        """Inverse variance (cm_inv_var, IBSI E8JP): F = 2 sum_i sum_{j>i} p_ij / (i - j)^2
        (= the sum over all i != j for a symmetric matrix, which is what is summed here)."""
        diff2 = self._diff2
        return self._sum(np.where(diff2 > 0, 1.0 / np.where(diff2 > 0, diff2, 1.0), 0.0))

    def corr(self):
        """Correlation (cm_corr, IBSI NI2N): F = sum_i sum_j (i - mu_i.)(j - mu_.j) p_ij / (sigma_i. sigma_.j).

        mu_i. = sum_i i p_i., sigma_i.^2 = sum_i (i - mu_i.)^2 p_i. (likewise for j). NaN where a sigma is 0
        (a single grey level).
        """
        cov = self._sum((self.i - self.mu_i[self.m]) * (self.j - self.mu_j[self.m]))
        denom = np.sqrt(self.var_i * self.var_j)
        return np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), np.nan)

    def auto_corr(self):
        """Autocorrelation (cm_auto_corr, IBSI QWB0): F = sum_i sum_j i j p_ij."""
        return self._sum(self.i * self.j)

    def _cluster(self, power):
        return self._sum(self._cluster_base ** power)

    def clust_tend(self):
        """Cluster tendency (cm_clust_tend, IBSI DG8W): F = sum_i sum_j (i + j - mu_i. - mu_.j)^2 p_ij."""
        return self._cluster(2)

    def clust_shade(self):
        """Cluster shade (cm_clust_shade, IBSI 7NFM): F = sum_i sum_j (i + j - mu_i. - mu_.j)^3 p_ij."""
        return self._cluster(3)

    def clust_prom(self):
        """Cluster prominence (cm_clust_prom, IBSI AE86): F = sum_i sum_j (i + j - mu_i. - mu_.j)^4 p_ij."""
        return self._cluster(4)

    def info_corr1(self):
        """Information correlation 1 (cm_info_corr1, IBSI R8DG): F = (HXY - HXY1) / max(HX, HY).

        HXY = joint entropy; HX = -sum_i p_i. log2 p_i., HY = -sum_j p_.j log2 p_.j;
        HXY1 = -sum_i sum_j p_ij log2(p_i. p_.j), which equals HX + HY (sum_j p_ij = p_i.).
        NaN where max(HX, HY) = 0 (a single grey level).
        """
        hx, hy = self._hx_hy
        hmax = np.maximum(hx, hy)
        return np.where(hmax > 0, (self._joint_entropy - (hx + hy)) / np.where(hmax > 0, hmax, 1.0), np.nan)

    def info_corr2(self):
        """Information correlation 2 (cm_info_corr2, IBSI JN9H): F = sqrt(1 - exp(-2 (HXY2 - HXY))).

        HXY2 = -sum_i sum_j p_i. p_.j log2(p_i. p_.j), which equals HX + HY >= HXY (rounding below is clipped).
        """
        hx, hy = self._hx_hy
        return np.sqrt(1.0 - np.exp(-2.0 * np.maximum(hx + hy - self._joint_entropy, 0.0)))


def cell_features(matrix, i, j, counts, n_matrices, n_levels) -> tuple[dict, np.ndarray]:
    """({base tag: array (n_matrices,)}, which matrices have pairs) of symmetric co-occurrence matrices given by their
    non-zero cells grouped by matrix (grey levels ``i``, ``j``): the formulas of :class:`GlcmFeatures`, compiled
    (:func:`RadiomicsLabLib.featuremap_kernels.ibsi_glcm_cell_features`, the per-matrix formulas the IBSI GLCM maps
    use; the same values to rounding). NaN for an empty matrix."""
    from ... import featuremap_kernels

    values, non_empty = featuremap_kernels.ibsi_glcm_cell_features(
        np.ascontiguousarray(matrix, dtype=np.int64), np.ascontiguousarray(i, dtype=np.int64),
        np.ascontiguousarray(j, dtype=np.int64), np.ascontiguousarray(counts, dtype=np.float64), int(n_matrices),
        float(n_levels))
    return {tag: values[:, k] for k, tag in enumerate(BASE_TAGS)}, non_empty


def glcm_features(matrices, grey, n_levels) -> dict:
    """{base tag (``cm_contrast``): array of shape ``matrices.shape[:-2]``} for dense matrices ``(..., n, n)``,
    row and column ``a`` standing for grey level ``grey[a]``."""
    grey = np.asarray(grey)
    return dense_matrix_features(matrices, BASE_TAGS, lambda matrix, a, b, counts, n_matrices: GlcmFeatures(
        matrix, grey[a], grey[b], counts, n_matrices, n_levels))


# --------------------------------------------------------------------------------------------
# Matrix builder
# --------------------------------------------------------------------------------------------

def cooccurrence_pairs(index: np.ndarray, offsets) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every counted neighbour pair, both ways (the matrix is symmetric): (offset number, slice z of the
    first voxel, grey level index of the first voxel, of the second).

    ``index``: grey level index 0..n-1 inside the ROI, -1 outside, indexed (z, y, x).
    """
    numbers, slices, first, second = [], [], [], []
    for o, offset in enumerate(offsets):
        a, b = shifted_pairs(index, offset)
        valid = (a >= 0) & (b >= 0)
        z = np.broadcast_to(np.arange(a.shape[0])[:, None, None], a.shape)[valid] + max(0, -offset[0])
        a, b = a[valid], b[valid]
        numbers.append(np.full(2 * a.size, o, dtype=np.int64))
        slices += [z, z]
        first += [a, b]
        second += [b, a]
    return tuple(np.concatenate(x) if x else np.empty(0, dtype=np.int64) for x in (numbers, slices, first, second))


def cooccurrence_cells(group, a, b, n) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The co-occurrence matrix of each group of pairs (``group``: matrix number of each pair, from 0),
    as its non-zero cells: (matrix, row index a, column index b, count)."""
    size = (int(group.max()) + 1) * n * n if group.size else 0
    cells, counts = unique_counts((group * n + a) * n + b, size)
    return cells // (n * n), (cells // n) % n, cells % n, counts


def dense_matrices(index: np.ndarray, n: int, offsets) -> np.ndarray:
    """Dense symmetric co-occurrence counts ``(len(offsets), n, n)``, one matrix per offset."""
    number, _, a, b = cooccurrence_pairs(index, offsets)
    counts = np.bincount((number * n + a) * n + b, minlength=len(offsets) * n * n)
    return counts.reshape(len(offsets), n, n).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

def compute(roi, settings) -> dict:
    """GLCM features of ``roi.levels`` for every dimension in ``settings.dimensions`` (avg and comb)."""
    require_levels(roi, FAMILY)
    distance = int(getattr(settings, "glcm_distance", 1))
    if distance < 1:
        raise RadiomicsLabError(f"The GLCM distance must be 1 or more (got {distance}).")
    check_dimensions(settings.dimensions)
    in_plane = tuple(d for d in settings.dimensions if d != "3D")
    grey, index = texture_grid(roi, FAMILY) if in_plane else (None, None)
    n_levels = roi.n_levels or max(int(np.max(roi.levels, initial=0)), 1)

    def pairs(dimension):
        offsets = directions(dimension, distance)
        return len(offsets), cooccurrence_pairs(index, offsets)

    def aggregate(suffix, group, n_groups, a, b):
        """Features of the co-occurrence matrix of each group of pairs, averaged over the non-empty ones."""
        matrix, ca, cb, counts = cooccurrence_cells(group, a, b, grey.size)
        return aggregate_cells(suffix, n_groups, matrix, grey[ca], grey[cb], counts)

    def aggregate_cells(suffix, n_groups, matrix, a, b, counts):
        """Features of the co-occurrence matrices given by their non-zero cells (``a``, ``b``: grey levels)."""
        return average_over_matrices(FAMILY, suffix, *cell_features(matrix, a, b, counts, n_groups, n_levels),
                                     roi.notes, UNDEFINED,
                                     "no two ROI voxels are neighbours, every co-occurrence matrix is empty")

    out = directional_aggregates(in_plane, index.shape[0], pairs, aggregate) if in_plane else {}
    if "3D" in settings.dimensions:
        # 3D: the dense matrices (direction, grey level, grey level) of the 13 directions counted in one compiled
        # pass over the zero-padded grey levels; their non-zero cells in C order are the cells (and order) that
        # cooccurrence_cells gives for the same pairs
        dense = texture_tables.cooccurrence(roi, distance)
        out.update(aggregate_cells("3D_avg", dense.shape[0], *dense_cells(dense)))
        out.update(aggregate_cells("3D_comb", 1, *dense_cells(dense.sum(axis=0)[np.newaxis])))
    return {key: out[key] for key in keys(settings) if key in out}


def keys(settings) -> dict:
    """{output tag: description} of the tags :func:`compute` gives for ``settings``, in output order."""
    return texture_keys(FEATURES, BASE_TAGS, settings.dimensions)
