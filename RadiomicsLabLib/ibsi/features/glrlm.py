"""Grey level run length matrix (GLRLM) features, IBSI 1 section 3.7 (tags ``rlm_*``).

Matrix (section 3.7): ``r_ij`` counts the runs of grey level ``i`` and length ``j`` along one direction,
a run being a maximal line of consecutive ROI voxels with the same grey level (voxels outside the ROI,
grey level 0, end a run and are never part of one). Directions: the 13 unique 3D directions, or the 4
in-plane ones for 2D / 2.5D.

Aggregation (as for the GLCM, section 3.6.1), tag suffix ``_<dim>_<avg|comb>``:

- ``2D_avg``:    one matrix per slice and in-plane direction; features of each, averaged.
- ``2D_comb``:   per slice, the 4 direction matrices summed; features per slice, averaged over slices.
- ``2_5D_avg``:  per in-plane direction, the matrices of all slices summed; features averaged over the 4.
- ``2_5D_comb``: all slice and direction matrices summed into one.
- ``3D_avg``:    one matrix per 3D direction (13); features averaged.
- ``3D_comb``:   the 13 direction matrices summed into one.

Notation (IBSI): ``N_s = sum_i sum_j r_ij`` (number of runs), ``r_i. = sum_j r_ij``, ``r_.j = sum_i r_ij``,
``p_ij = r_ij / N_s``; ``N_v`` the number of voxels the matrix was built from. Each ROI voxel lies in
exactly one run per direction, so ``N_v = sum_j j r_.j``; for merged matrices this is the sum of the
``N_v`` of the merged ones, as IBSI prescribes for the run percentage.

The run detection (:func:`runs`), the matrix builder (:func:`run_length_matrices`) and the formulas
(:class:`GlrlmFeatures`, :func:`glrlm_features`) are separate: the formulas take any stack of matrices
``(..., n_g, n_r)`` so voxel-wise feature maps can reuse them.
"""

import numpy as np

from ...errors import RadiomicsLabError
from .directions import SUFFIX, directions
from .glcm import crop_to_roi, grey_index

#: IBSI tag (without aggregation suffix) -> description. All GLRLM features are dimensionless.
#: ``pyradiomics`` is the name of the same feature in pyradiomics (its default aggregation is 3D_avg).
FEATURES = {
    "rlm_sre": dict(name="Short runs emphasis", unit="", pyradiomics="original_glrlm_ShortRunEmphasis",
                    description="Run counts weighted by 1 / j^2: high for fine texture."),
    "rlm_lre": dict(name="Long runs emphasis", unit="", pyradiomics="original_glrlm_LongRunEmphasis",
                    description="Run counts weighted by j^2: high for coarse texture."),
    "rlm_lgre": dict(name="Low grey level run emphasis", unit="", pyradiomics="original_glrlm_LowGrayLevelRunEmphasis",
                     description="Run counts weighted by 1 / i^2."),
    "rlm_hgre": dict(name="High grey level run emphasis", unit="", pyradiomics="original_glrlm_HighGrayLevelRunEmphasis",
                     description="Run counts weighted by i^2."),
    "rlm_srlge": dict(name="Short run low grey level emphasis", unit="",
                      pyradiomics="original_glrlm_ShortRunLowGrayLevelEmphasis",
                      description="Run counts weighted by 1 / (i^2 j^2)."),
    "rlm_srhge": dict(name="Short run high grey level emphasis", unit="",
                      pyradiomics="original_glrlm_ShortRunHighGrayLevelEmphasis",
                      description="Run counts weighted by i^2 / j^2."),
    "rlm_lrlge": dict(name="Long run low grey level emphasis", unit="",
                      pyradiomics="original_glrlm_LongRunLowGrayLevelEmphasis",
                      description="Run counts weighted by j^2 / i^2."),
    "rlm_lrhge": dict(name="Long run high grey level emphasis", unit="",
                      pyradiomics="original_glrlm_LongRunHighGrayLevelEmphasis",
                      description="Run counts weighted by i^2 j^2."),
    "rlm_glnu": dict(name="Grey level non-uniformity", unit="", pyradiomics="original_glrlm_GrayLevelNonUniformity",
                     description="Sum of squared run counts per grey level over the number of runs."),
    "rlm_glnu_norm": dict(name="Normalised grey level non-uniformity", unit="",
                          pyradiomics="original_glrlm_GrayLevelNonUniformityNormalized",
                          description="Grey level non-uniformity divided by the number of runs."),
    "rlm_rlnu": dict(name="Run length non-uniformity", unit="", pyradiomics="original_glrlm_RunLengthNonUniformity",
                     description="Sum of squared run counts per run length over the number of runs."),
    "rlm_rlnu_norm": dict(name="Normalised run length non-uniformity", unit="",
                          pyradiomics="original_glrlm_RunLengthNonUniformityNormalized",
                          description="Run length non-uniformity divided by the number of runs."),
    "rlm_r_perc": dict(name="Run percentage", unit="", pyradiomics="original_glrlm_RunPercentage",
                       description="Number of runs over the number of voxels (summed over merged matrices)."),
    "rlm_gl_var": dict(name="Grey level variance", unit="", pyradiomics="original_glrlm_GrayLevelVariance",
                       description="Variance of the grey level of a run."),
    "rlm_rl_var": dict(name="Run length variance", unit="", pyradiomics="original_glrlm_RunVariance",
                       description="Variance of the length of a run."),
    "rlm_rl_entr": dict(name="Run entropy", unit="", pyradiomics="original_glrlm_RunEntropy",
                        description="Entropy (bits) of the joint grey level / run length distribution."),
}

_CHUNK_ELEMENTS = 1 << 22   # matrix elements built at once for the per-slice (2D) aggregation


# --------------------------------------------------------------------------------------------
# Feature formulas on a stack of matrices
# --------------------------------------------------------------------------------------------

class GlrlmFeatures:
    """IBSI GLRLM features of a stack of run length matrices.

    ``matrices``: run counts, shape ``(..., n_g, n_r)``; row ``a`` stands for grey level ``grey[a]``
    and column ``b`` for run length ``lengths[b]`` (absent levels and lengths may be left out).
    Every method returns an array of shape ``matrices.shape[:-2]``; an empty matrix gives NaN.
    """

    def __init__(self, matrices, grey, lengths):
        self.r = np.asarray(matrices, dtype=np.float64)
        self.i = np.asarray(grey, dtype=np.float64)[:, None]
        self.j = np.asarray(lengths, dtype=np.float64)[None, :]
        self.n_s = self.r.sum(axis=(-2, -1))
        self.r_i = self.r.sum(axis=-1)     # r_i. (..., n_g)
        self.r_j = self.r.sum(axis=-2)     # r_.j (..., n_r)
        self.n_v = np.sum(self.j[0] * self.r_j, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.p = self.r / self.n_s[..., None, None]

    def _emphasis(self, weights):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(weights * self.r, axis=(-2, -1)) / self.n_s

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
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(self.r_i ** 2, axis=-1) / self.n_s

    def glnu_norm(self):
        """Normalised grey level non-uniformity (rlm_glnu_norm, IBSI OVBL): F = 1/N_s^2 sum_i r_i.^2."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(self.r_i ** 2, axis=-1) / self.n_s ** 2

    def rlnu(self):
        """Run length non-uniformity (rlm_rlnu, IBSI W92Y): F = 1/N_s sum_j r_.j^2."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(self.r_j ** 2, axis=-1) / self.n_s

    def rlnu_norm(self):
        """Normalised run length non-uniformity (rlm_rlnu_norm, IBSI IC23): F = 1/N_s^2 sum_j r_.j^2."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(self.r_j ** 2, axis=-1) / self.n_s ** 2

    def r_perc(self):
        """Run percentage (rlm_r_perc, IBSI 9ZK5): F = N_s / N_v, N_v = sum_j j r_.j (voxels, summed over merged matrices)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.n_s / self.n_v

    def gl_var(self):
        """Grey level variance (rlm_gl_var, IBSI 8CE5): F = sum_i sum_j (i - mu)^2 p_ij, mu = sum_i sum_j i p_ij."""
        mu = np.sum(self.i * self.p, axis=(-2, -1))[..., None, None]
        return np.sum((self.i - mu) ** 2 * self.p, axis=(-2, -1))

    def rl_var(self):
        """Run length variance (rlm_rl_var, IBSI SXLW): F = sum_i sum_j (j - mu)^2 p_ij, mu = sum_i sum_j j p_ij."""
        mu = np.sum(self.j * self.p, axis=(-2, -1))[..., None, None]
        return np.sum((self.j - mu) ** 2 * self.p, axis=(-2, -1))

    def rl_entr(self):
        """Run entropy (rlm_rl_entr, IBSI HJ9O): F = -sum_i sum_j p_ij log2 p_ij."""
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(self.p > 0, self.p * np.log2(np.where(self.p > 0, self.p, 1.0)), 0.0)
        return np.where(self.n_s > 0, -np.sum(terms, axis=(-2, -1)), np.nan)


def glrlm_features(matrices, grey, lengths) -> dict:
    """{IBSI tag without suffix: array of shape ``matrices.shape[:-2]``} for every GLRLM feature."""
    features = GlrlmFeatures(matrices, grey, lengths)
    return {tag: getattr(features, tag[len("rlm_"):])() for tag in FEATURES}


# --------------------------------------------------------------------------------------------
# Run detection and matrix builder
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
        if axis == k:
            continue
        base = coords[axis] - t * direction[axis] + shape[k]        # shifted to be >= 0
        line = line * (shape[axis] + 2 * shape[k]) + base
    order = np.lexsort((t, line))
    line, t, level, z = line[order], t[order], level[order], coords[0][order]
    start = np.ones(line.size, dtype=bool)
    start[1:] = (line[1:] != line[:-1]) | (t[1:] != t[:-1] + 1) | (level[1:] != level[:-1])
    first = np.flatnonzero(start)
    length = np.diff(np.append(first, line.size))
    return z[first], level[first], length


def run_length_matrices(z, level, length_index, n_grey, n_lengths, n_slices=None) -> np.ndarray:
    """Run counts from :func:`runs` output (``length_index`` = column of each run's length).

    Returns ``(n_grey, n_lengths)``, or ``(n_slices, n_grey, n_lengths)`` per slice when ``n_slices``
    is given (``z`` then counts from the first slice of the block).
    """
    code = level * n_lengths + length_index
    if n_slices is None:
        return np.bincount(code, minlength=n_grey * n_lengths).reshape(n_grey, n_lengths).astype(np.float64)
    code = z * (n_grey * n_lengths) + code
    size = n_slices * n_grey * n_lengths
    return np.bincount(code, minlength=size).reshape(n_slices, n_grey, n_lengths).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

class _Collector:
    """Feature values of the non-empty matrices of one aggregation, averaged at the end."""

    def __init__(self):
        self.values = {tag: [] for tag in FEATURES}

    def add(self, matrices, grey, lengths):
        matrices = matrices.reshape((-1,) + matrices.shape[-2:])
        matrices = matrices[matrices.sum(axis=(-2, -1)) > 0]
        if matrices.shape[0]:
            for tag, value in glrlm_features(matrices, grey, lengths).items():
                self.values[tag].append(np.atleast_1d(value))

    def result(self, suffix, notes):
        out = {}
        for tag, chunks in self.values.items():
            key = f"{tag}_{suffix}"
            values = np.concatenate(chunks) if chunks else np.empty(0)
            defined = values[~np.isnan(values)]
            if defined.size == 0:
                out[key] = float("nan")
                notes.append(f"{key}: no voxel in the region of interest, the run length matrix is empty")
            else:
                out[key] = float(defined.mean())
        return out


def compute(roi, settings) -> dict:
    """GLRLM features of ``roi.levels`` for every dimension in ``settings.dimensions`` (avg and comb)."""
    if roi.levels is None:
        raise RadiomicsLabError("The GLRLM needs discretised grey levels; discretise the region of interest first.")
    for dimension in settings.dimensions:
        if dimension not in SUFFIX:
            raise RadiomicsLabError(f"Unknown texture dimension '{dimension}'; use 2D, 2.5D or 3D.")
    grey, index = grey_index(crop_to_roi(np.asarray(roi.levels)))
    if grey.size == 0:
        index, grey = np.full((1, 1, 1), -1, dtype=np.int64), np.array([1])
    n = grey.size
    wanted = set(settings.dimensions)
    out = {}
    if wanted & {"2D", "2.5D"}:
        found = [runs(index, d) for d in directions("2D")]
        lengths = np.unique(np.concatenate([f[2] for f in found]))
        if lengths.size == 0:
            lengths = np.array([1])
        m = lengths.size
        n_z = index.shape[0]
        avg_2d, comb_2d, avg_25d, comb_25d = _Collector(), _Collector(), _Collector(), _Collector()
        per_direction = np.zeros((len(found), n, m))
        step = max(1, _CHUNK_ELEMENTS // (len(found) * n * m))
        for z0 in range(0, n_z, step):
            z1 = min(n_z, z0 + step)
            block = np.stack([
                run_length_matrices(z[sel] - z0, g[sel], np.searchsorted(lengths, length[sel]), n, m, z1 - z0)
                for z, g, length in found for sel in [(z >= z0) & (z < z1)]
            ])                                                           # (dir, z, n, m)
            per_direction += block.sum(axis=1)
            if "2D" in wanted:
                avg_2d.add(block, grey, lengths)
                comb_2d.add(block.sum(axis=0), grey, lengths)
        if "2D" in wanted:
            out.update(avg_2d.result("2D_avg", roi.notes))
            out.update(comb_2d.result("2D_comb", roi.notes))
        if "2.5D" in wanted:
            avg_25d.add(per_direction, grey, lengths)
            comb_25d.add(per_direction.sum(axis=0), grey, lengths)
            out.update(avg_25d.result("2_5D_avg", roi.notes))
            out.update(comb_25d.result("2_5D_comb", roi.notes))
    if "3D" in wanted:
        found = [runs(index, d) for d in directions("3D")]
        lengths = np.unique(np.concatenate([f[2] for f in found]))
        if lengths.size == 0:
            lengths = np.array([1])
        block = np.stack([run_length_matrices(z, g, np.searchsorted(lengths, length), n, lengths.size)
                          for z, g, length in found])
        avg_3d, comb_3d = _Collector(), _Collector()
        avg_3d.add(block, grey, lengths)
        comb_3d.add(block.sum(axis=0), grey, lengths)
        out.update(avg_3d.result("3D_avg", roi.notes))
        out.update(comb_3d.result("3D_comb", roi.notes))
    order = [f"{tag}_{SUFFIX[d]}_{agg}" for d in settings.dimensions for agg in ("avg", "comb") for tag in FEATURES]
    return {key: out[key] for key in order if key in out}


def keys(settings) -> dict:
    """{output tag: description} for ``settings`` (the FEATURES entry of its base tag)."""
    return {f"{tag}_{SUFFIX[d]}_{agg}": FEATURES[tag] for d in settings.dimensions for agg in ("avg", "comb")
            for tag in FEATURES}
