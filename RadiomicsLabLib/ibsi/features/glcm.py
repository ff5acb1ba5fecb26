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
part in an average.

Notation (IBSI): ``p_ij = M_ij / sum M``; ``p_i. = sum_j p_ij``, ``p_.j = sum_i p_ij``;
``p_{i-j}(k) = sum p_ij over |i - j| = k``; ``p_{i+j}(k) = sum p_ij over i + j = k``; ``N_g`` the number of
grey levels of the discretised ROI (``roi.n_levels``). Logarithms are base 2.

The matrix builders (:func:`cooccurrence_matrices`) and the formulas (:class:`GlcmFeatures`,
:func:`glcm_features`) are separate: the formulas take any stack of matrices ``(..., n, n)`` so
voxel-wise feature maps can reuse them.
"""

import numpy as np
from scipy import sparse

from ...errors import RadiomicsLabError
from .directions import SUFFIX, directions, shifted_pairs

#: IBSI tag (without aggregation suffix) -> description. All GLCM features are dimensionless.
#: ``pyradiomics`` is the name of the same feature in pyradiomics (its default aggregation is 3D_avg).
FEATURES = {
    "cm_joint_max": dict(name="Joint maximum", unit="", pyradiomics="original_glcm_MaximumProbability",
                         description="Probability of the most common grey level pair."),
    "cm_joint_avg": dict(name="Joint average", unit="", pyradiomics="original_glcm_JointAverage",
                         description="Grey level average weighted by the joint probability."),
    "cm_joint_var": dict(name="Joint variance", unit="", pyradiomics="original_glcm_SumSquares",
                         description="Variance of the first grey level of a pair about the joint average."),
    "cm_joint_entr": dict(name="Joint entropy", unit="", pyradiomics="original_glcm_JointEntropy",
                          description="Entropy (bits) of the joint grey level pair distribution."),
    "cm_diff_avg": dict(name="Difference average", unit="", pyradiomics="original_glcm_DifferenceAverage",
                        description="Mean absolute grey level difference of a pair."),
    "cm_diff_var": dict(name="Difference variance", unit="", pyradiomics="original_glcm_DifferenceVariance",
                        description="Variance of the absolute grey level difference of a pair."),
    "cm_diff_entr": dict(name="Difference entropy", unit="", pyradiomics="original_glcm_DifferenceEntropy",
                         description="Entropy (bits) of the absolute grey level difference distribution."),
    "cm_sum_avg": dict(name="Sum average", unit="", pyradiomics="original_glcm_SumAverage",
                       description="Mean grey level sum of a pair."),
    "cm_sum_var": dict(name="Sum variance", unit="", pyradiomics=None,
                       description="Variance of the grey level sum of a pair."),
    "cm_sum_entr": dict(name="Sum entropy", unit="", pyradiomics="original_glcm_SumEntropy",
                        description="Entropy (bits) of the grey level sum distribution."),
    "cm_energy": dict(name="Angular second moment", unit="", pyradiomics="original_glcm_JointEnergy",
                      description="Sum of squared joint probabilities (uniformity of pairs)."),
    "cm_contrast": dict(name="Contrast", unit="", pyradiomics="original_glcm_Contrast",
                        description="Mean squared grey level difference of a pair."),
    "cm_dissimilarity": dict(name="Dissimilarity", unit="", pyradiomics=None,
                             description="Mean absolute grey level difference of a pair (equals difference average)."),
    "cm_inv_diff": dict(name="Inverse difference", unit="", pyradiomics="original_glcm_Id",
                        description="Homogeneity: joint probability weighted by 1 / (1 + |i - j|)."),
    "cm_inv_diff_norm": dict(name="Normalised inverse difference", unit="", pyradiomics="original_glcm_Idn",
                             description="Inverse difference with the difference divided by N_g."),
    "cm_inv_diff_mom": dict(name="Inverse difference moment", unit="", pyradiomics="original_glcm_Idm",
                            description="Joint probability weighted by 1 / (1 + (i - j)^2)."),
    "cm_inv_diff_mom_norm": dict(name="Normalised inverse difference moment", unit="",
                                 pyradiomics="original_glcm_Idmn",
                                 description="Inverse difference moment with (i - j)^2 divided by N_g^2."),
    "cm_inv_var": dict(name="Inverse variance", unit="", pyradiomics="original_glcm_InverseVariance",
                       description="Joint probability of unequal pairs weighted by 1 / (i - j)^2."),
    "cm_corr": dict(name="Correlation", unit="", pyradiomics="original_glcm_Correlation",
                    description="Linear correlation of the grey levels of a pair; undefined for a single grey level."),
    "cm_auto_corr": dict(name="Autocorrelation", unit="", pyradiomics="original_glcm_Autocorrelation",
                         description="Mean product of the grey levels of a pair."),
    "cm_clust_tend": dict(name="Cluster tendency", unit="", pyradiomics="original_glcm_ClusterTendency",
                          description="Second moment of i + j about the marginal means (equals sum variance)."),
    "cm_clust_shade": dict(name="Cluster shade", unit="", pyradiomics="original_glcm_ClusterShade",
                           description="Third moment of i + j about the marginal means (skewness of pairs)."),
    "cm_clust_prom": dict(name="Cluster prominence", unit="", pyradiomics="original_glcm_ClusterProminence",
                          description="Fourth moment of i + j about the marginal means."),
    "cm_info_corr1": dict(name="Information correlation 1", unit="", pyradiomics="original_glcm_Imc1",
                          description="(HXY - HXY1) / max(HX, HY); undefined for a single grey level."),
    "cm_info_corr2": dict(name="Information correlation 2", unit="", pyradiomics="original_glcm_Imc2",
                          description="sqrt(1 - exp(-2 (HXY2 - HXY)))."),
}

#: Why a feature is NaN for a matrix that does hold pairs.
UNDEFINED = {
    "cm_corr": "the marginal grey level distribution has zero variance (a single grey level)",
    "cm_info_corr1": "the marginal entropies HX and HY are zero (a single grey level)",
}

_CHUNK_ELEMENTS = 1 << 22   # matrix elements built at once for the per-slice (2D) aggregation


# --------------------------------------------------------------------------------------------
# Feature formulas on a stack of matrices
# --------------------------------------------------------------------------------------------

def _entropy(p, axes):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=axes)


def _distribution(p, values):
    """Sum of ``p[..., a, b]`` over the cells with equal ``values[a, b]``: (unique values, p(k) (..., K))."""
    uniq, inverse = np.unique(values.ravel(), return_inverse=True)
    n_cells = values.size
    onehot = sparse.csr_matrix((np.ones(n_cells), (np.arange(n_cells), inverse.ravel())), shape=(n_cells, uniq.size))
    flat = p.reshape(-1, n_cells)
    return uniq.astype(np.float64), np.asarray(onehot.T @ flat.T).T.reshape(p.shape[:-2] + (uniq.size,))


class GlcmFeatures:
    """IBSI GLCM features of a stack of co-occurrence matrices.

    ``matrices``: counts or probabilities, shape ``(..., n, n)``; row/column ``a`` stands for grey level
    ``grey[a]`` (levels absent from the ROI may be left out: they have zero probability). ``n_levels``
    is ``N_g``. Every method returns an array of shape ``matrices.shape[:-2]``; an empty matrix gives NaN.
    """

    def __init__(self, matrices, grey, n_levels):
        matrices = np.asarray(matrices, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.p = matrices / matrices.sum(axis=(-2, -1), keepdims=True)
        self.grey = np.asarray(grey, dtype=np.float64)
        self.i = self.grey[:, None]
        self.j = self.grey[None, :]
        self.n_levels = float(n_levels)
        self.p_i = self.p.sum(axis=-1)          # p_i. (..., n), over grey[a]
        self.p_j = self.p.sum(axis=-2)          # p_.j (..., n), over grey[b]
        self.mu_i = np.sum(self.grey * self.p_i, axis=-1)
        self.mu_j = np.sum(self.grey * self.p_j, axis=-1)
        self.var_i = np.sum((self.grey - self.mu_i[..., None]) ** 2 * self.p_i, axis=-1)
        self.var_j = np.sum((self.grey - self.mu_j[..., None]) ** 2 * self.p_j, axis=-1)
        self.k_diff, self.p_diff = _distribution(self.p, np.abs(self.i - self.j))
        self.k_sum, self.p_sum = _distribution(self.p, self.i + self.j)

    def _sum(self, weights):
        return np.sum(weights * self.p, axis=(-2, -1))

    def joint_max(self):
        """Joint maximum (cm_joint_max, IBSI GYBY): F = max(p_ij)."""
        return self.p.max(axis=(-2, -1))

    def joint_avg(self):
        """Joint average (cm_joint_avg, IBSI 60VM): mu = sum_i sum_j i p_ij."""
        return self._sum(self.i)

    def joint_var(self):
        """Joint variance (cm_joint_var, IBSI UR99): F = sum_i sum_j (i - mu)^2 p_ij, mu the joint average."""
        mu = self.joint_avg()[..., None, None]
        return self._sum((self.i - mu) ** 2)

    def joint_entr(self):
        """Joint entropy (cm_joint_entr, IBSI TU9B): F = -sum_i sum_j p_ij log2 p_ij."""
        return _entropy(self.p, (-2, -1))

    def diff_avg(self):
        """Difference average (cm_diff_avg, IBSI TF7R): mu_d = sum_k k p_{i-j}(k), k = 0..N_g-1."""
        return np.sum(self.k_diff * self.p_diff, axis=-1)

    def diff_var(self):
        """Difference variance (cm_diff_var, IBSI D3YU): F = sum_k (k - mu_d)^2 p_{i-j}(k)."""
        mu = self.diff_avg()[..., None]
        return np.sum((self.k_diff - mu) ** 2 * self.p_diff, axis=-1)

    def diff_entr(self):
        """Difference entropy (cm_diff_entr, IBSI NTRS): F = -sum_k p_{i-j}(k) log2 p_{i-j}(k)."""
        return _entropy(self.p_diff, -1)

    def sum_avg(self):
        """Sum average (cm_sum_avg, IBSI ZGXS): mu_s = sum_k k p_{i+j}(k), k = 2..2 N_g."""
        return np.sum(self.k_sum * self.p_sum, axis=-1)

    def sum_var(self):
        """Sum variance (cm_sum_var, IBSI OEEB): F = sum_k (k - mu_s)^2 p_{i+j}(k)."""
        mu = self.sum_avg()[..., None]
        return np.sum((self.k_sum - mu) ** 2 * self.p_sum, axis=-1)

    def sum_entr(self):
        """Sum entropy (cm_sum_entr, IBSI P6QZ): F = -sum_k p_{i+j}(k) log2 p_{i+j}(k)."""
        return _entropy(self.p_sum, -1)

    def energy(self):
        """Angular second moment (cm_energy, IBSI 8ZQL): F = sum_i sum_j p_ij^2."""
        return np.sum(self.p ** 2, axis=(-2, -1))

    def contrast(self):
        """Contrast (cm_contrast, IBSI ACUI): F = sum_i sum_j (i - j)^2 p_ij."""
        return self._sum((self.i - self.j) ** 2)

    def dissimilarity(self):
        """Dissimilarity (cm_dissimilarity, IBSI 8S9J): F = sum_i sum_j |i - j| p_ij."""
        return self._sum(np.abs(self.i - self.j))

    def inv_diff(self):
        """Inverse difference (cm_inv_diff, IBSI IB1Z): F = sum_i sum_j p_ij / (1 + |i - j|)."""
        return self._sum(1.0 / (1.0 + np.abs(self.i - self.j)))

    def inv_diff_norm(self):
        """Normalised inverse difference (cm_inv_diff_norm, IBSI NDRX): F = sum p_ij / (1 + |i - j| / N_g)."""
        return self._sum(1.0 / (1.0 + np.abs(self.i - self.j) / self.n_levels))

    def inv_diff_mom(self):
        """Inverse difference moment (cm_inv_diff_mom, IBSI WF0Z): F = sum p_ij / (1 + (i - j)^2)."""
        return self._sum(1.0 / (1.0 + (self.i - self.j) ** 2))

    def inv_diff_mom_norm(self):
        """Normalised inverse difference moment (cm_inv_diff_mom_norm, IBSI 1QCO): F = sum p_ij / (1 + (i - j)^2 / N_g^2)."""
        return self._sum(1.0 / (1.0 + (self.i - self.j) ** 2 / self.n_levels ** 2))

    def inv_var(self):
        """Inverse variance (cm_inv_var, IBSI E8JP): F = 2 sum_{i>j} p_ij / (i - j)^2 = sum_{i != j} p_ij / (i - j)^2 (symmetric M)."""
        diff2 = (self.i - self.j) ** 2
        with np.errstate(divide="ignore"):
            weights = np.where(diff2 > 0, 1.0 / np.where(diff2 > 0, diff2, 1.0), 0.0)
        return self._sum(weights)

    def corr(self):
        """Correlation (cm_corr, IBSI NI2N): F = (sum_i sum_j (i - mu_i.)(j - mu_.j) p_ij) / (sigma_i. sigma_.j).

        mu_i. = sum_i i p_i., sigma_i.^2 = sum_i (i - mu_i.)^2 p_i. (likewise for j). NaN where a sigma is 0.
        """
        cov = self._sum((self.i - self.mu_i[..., None, None]) * (self.j - self.mu_j[..., None, None]))
        denom = np.sqrt(self.var_i * self.var_j)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), np.nan)

    def auto_corr(self):
        """Autocorrelation (cm_auto_corr, IBSI QWB0): F = sum_i sum_j i j p_ij."""
        return self._sum(self.i * self.j)

    def _cluster(self, power):
        centre = self.mu_i[..., None, None] + self.mu_j[..., None, None]
        return self._sum((self.i + self.j - centre) ** power)

    def clust_tend(self):
        """Cluster tendency (cm_clust_tend, IBSI DG8W): F = sum_i sum_j (i + j - mu_i. - mu_.j)^2 p_ij."""
        return self._cluster(2)

    def clust_shade(self):
        """Cluster shade (cm_clust_shade, IBSI 7NFM): F = sum_i sum_j (i + j - mu_i. - mu_.j)^3 p_ij."""
        return self._cluster(3)

    def clust_prom(self):
        """Cluster prominence (cm_clust_prom, IBSI AE86): F = sum_i sum_j (i + j - mu_i. - mu_.j)^4 p_ij."""
        return self._cluster(4)

    def _marginal_entropies(self):
        hxy = self.joint_entr()
        pipj = self.p_i[..., :, None] * self.p_j[..., None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pipj = np.log2(np.where(pipj > 0, pipj, 1.0))
        hxy1 = -np.sum(np.where(self.p > 0, self.p * log_pipj, 0.0), axis=(-2, -1))
        hxy2 = -np.sum(np.where(pipj > 0, pipj * log_pipj, 0.0), axis=(-2, -1))
        return hxy, hxy1, hxy2

    def info_corr1(self):
        """Information correlation 1 (cm_info_corr1, IBSI R8DG): F = (HXY - HXY1) / max(HX, HY).

        HXY = joint entropy; HXY1 = -sum_i sum_j p_ij log2(p_i. p_.j); HX = -sum_i p_i. log2 p_i.,
        HY = -sum_j p_.j log2 p_.j. NaN where max(HX, HY) = 0 (a single grey level).
        """
        hxy, hxy1, _ = self._marginal_entropies()
        hmax = np.maximum(_entropy(self.p_i, -1), _entropy(self.p_j, -1))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(hmax > 0, (hxy - hxy1) / np.where(hmax > 0, hmax, 1.0), np.nan)

    def info_corr2(self):
        """Information correlation 2 (cm_info_corr2, IBSI JN9H): F = sqrt(1 - exp(-2 (HXY2 - HXY))).

        HXY2 = -sum_i sum_j p_i. p_.j log2(p_i. p_.j); HXY2 >= HXY, rounding below 0 is clipped.
        """
        hxy, _, hxy2 = self._marginal_entropies()
        return np.sqrt(1.0 - np.exp(-2.0 * np.maximum(hxy2 - hxy, 0.0)))


def glcm_features(matrices, grey, n_levels) -> dict:
    """{IBSI tag without suffix: array of shape ``matrices.shape[:-2]``} for every GLCM feature."""
    features = GlcmFeatures(matrices, grey, n_levels)
    return {tag: getattr(features, tag[len("cm_"):])() for tag in FEATURES}


# --------------------------------------------------------------------------------------------
# Matrix builders
# --------------------------------------------------------------------------------------------

def grey_index(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(grey levels present in the ROI (sorted), index array: 0..n-1 inside the ROI, -1 outside)."""
    grey = np.unique(levels[levels > 0])
    lut = np.full(int(levels.max(initial=0)) + 1, -1, dtype=np.int64)
    lut[grey] = np.arange(grey.size)
    return grey, lut[levels]


def crop_to_roi(levels: np.ndarray) -> np.ndarray:
    """The bounding box of the non-zero grey levels (pairs and runs outside it only meet zeros)."""
    nonzero = np.nonzero(levels)
    if nonzero[0].size == 0:
        return levels[tuple(slice(0, 0) for _ in levels.shape)]
    return levels[tuple(slice(int(c.min()), int(c.max()) + 1) for c in nonzero)]


def cooccurrence_matrices(index: np.ndarray, n: int, offsets, by_slice: bool = False) -> np.ndarray:
    """Symmetric co-occurrence counts, one matrix per offset (and per slice with ``by_slice``).

    ``index``: grey level index 0..n-1 inside the ROI, -1 outside, indexed (z, y, x). Returns shape
    ``(len(offsets), n, n)``, or ``(len(offsets), n_z, n, n)`` with ``by_slice`` (in-plane offsets only).
    """
    n_z = index.shape[0]
    rows = n_z if by_slice else 1
    out = np.zeros((len(offsets), rows, n, n), dtype=np.float64)
    for o, offset in enumerate(offsets):
        if by_slice and offset[0] != 0:
            raise ValueError("Per-slice co-occurrence matrices need in-plane offsets.")
        a, b = shifted_pairs(index, offset)
        valid = (a >= 0) & (b >= 0)
        code = a[valid] * n + b[valid]
        if by_slice:
            z = np.broadcast_to(np.arange(a.shape[0])[:, None, None], a.shape)[valid]
            code = z * (n * n) + code
        counts = np.bincount(code, minlength=rows * n * n).reshape(rows, n, n)
        out[o] = counts + counts.transpose(0, 2, 1)
    return out if by_slice else out[:, 0]


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

class _Collector:
    """Feature values of the non-empty matrices of one aggregation, averaged at the end."""

    def __init__(self):
        self.values = {tag: [] for tag in FEATURES}

    def add(self, matrices, grey, n_levels):
        matrices = matrices.reshape((-1,) + matrices.shape[-2:])
        matrices = matrices[matrices.sum(axis=(-2, -1)) > 0]
        if matrices.shape[0]:
            for tag, value in glcm_features(matrices, grey, n_levels).items():
                self.values[tag].append(np.atleast_1d(value))

    def result(self, suffix, notes):
        out = {}
        for tag, chunks in self.values.items():
            key = f"{tag}_{suffix}"
            values = np.concatenate(chunks) if chunks else np.empty(0)
            defined = values[~np.isnan(values)]
            if values.size == 0:
                out[key] = float("nan")
                notes.append(f"{key}: no pair of neighbouring ROI voxels, the co-occurrence matrix is empty")
            elif defined.size == 0:
                out[key] = float("nan")
                notes.append(f"{key}: undefined, {UNDEFINED.get(tag, 'undefined for this matrix')}")
            else:
                out[key] = float(defined.mean())
                if defined.size < values.size:
                    notes.append(f"{key}: averaged over the {defined.size} of {values.size} matrices where it is "
                                 f"defined ({UNDEFINED.get(tag, 'undefined')} in the others)")
        return out


def compute(roi, settings) -> dict:
    """GLCM features of ``roi.levels`` for every dimension in ``settings.dimensions`` (avg and comb)."""
    if roi.levels is None:
        raise RadiomicsLabError("The GLCM needs discretised grey levels; discretise the region of interest first.")
    distance = int(getattr(settings, "glcm_distance", 1))
    if distance < 1:
        raise RadiomicsLabError(f"The GLCM distance must be 1 or more (got {distance}).")
    grey, index = grey_index(crop_to_roi(np.asarray(roi.levels)))
    n, n_levels = grey.size, roi.n_levels or (int(grey.max()) if grey.size else 1)
    out = {}
    for dimension in settings.dimensions:
        if dimension not in SUFFIX:
            raise RadiomicsLabError(f"Unknown texture dimension '{dimension}'; use 2D, 2.5D or 3D.")
    wanted = set(settings.dimensions)
    if n == 0:
        index = np.full((1, 1, 1), -1, dtype=np.int64)
        n = 1
        grey = np.array([1])
    if wanted & {"2D", "2.5D"}:
        offsets = directions("2D", distance)
        avg_2d, comb_2d, avg_25d, comb_25d = _Collector(), _Collector(), _Collector(), _Collector()
        per_direction = np.zeros((len(offsets), n, n))
        step = max(1, _CHUNK_ELEMENTS // (len(offsets) * n * n))
        for z0 in range(0, index.shape[0], step):
            m = cooccurrence_matrices(index[z0:z0 + step], n, offsets, by_slice=True)   # (dir, z, n, n)
            per_direction += m.sum(axis=1)
            if "2D" in wanted:
                avg_2d.add(m, grey, n_levels)
                comb_2d.add(m.sum(axis=0), grey, n_levels)
        if "2D" in wanted:
            out.update(avg_2d.result("2D_avg", roi.notes))
            out.update(comb_2d.result("2D_comb", roi.notes))
        if "2.5D" in wanted:
            avg_25d.add(per_direction, grey, n_levels)
            comb_25d.add(per_direction.sum(axis=0), grey, n_levels)
            out.update(avg_25d.result("2_5D_avg", roi.notes))
            out.update(comb_25d.result("2_5D_comb", roi.notes))
    if "3D" in wanted:
        m = cooccurrence_matrices(index, n, directions("3D", distance))
        avg_3d, comb_3d = _Collector(), _Collector()
        avg_3d.add(m, grey, n_levels)
        comb_3d.add(m.sum(axis=0), grey, n_levels)
        out.update(avg_3d.result("3D_avg", roi.notes))
        out.update(comb_3d.result("3D_comb", roi.notes))
    return {key: out[key] for key in _ordered_keys(settings.dimensions) if key in out}


def _ordered_keys(dimensions):
    return [f"{tag}_{SUFFIX[d]}_{agg}" for d in dimensions for agg in ("avg", "comb") for tag in FEATURES]


def keys(settings) -> dict:
    """{output tag: description} for ``settings`` (the FEATURES entry of its base tag)."""
    return {f"{tag}_{SUFFIX[d]}_{agg}": FEATURES[tag] for d in settings.dimensions for agg in ("avg", "comb")
            for tag in FEATURES}
