"""Neighbourhood grey tone difference matrix features (IBSI 1, section 3.10; tags ``ngt_*_2D``, ``ngt_*_2_5D``, ``ngt_*_3D``).

For a voxel of grey level ``X_d(k)``, the neighbourhood average ``A_k`` is the mean grey level of the
voxels of the ROI intensity mask within Chebyshev distance ``delta`` (``settings.ngtdm_distance``),
the voxel itself excluded: in-plane for 2D / 2.5D, in 3D otherwise. Voxels with no neighbour in the ROI
have no valid neighbourhood and are left out. Then, over the voxels with a valid neighbourhood:

- ``n_i``: the number of voxels of grey level ``i``; ``N_v,c = sum_i n_i``; ``p_i = n_i / N_v,c``;
- ``s_i = sum_{k: X_d(k) = i} |i - A_k|``;
- ``N_g,p``: the number of grey levels with ``p_i > 0``. Double sums run over those levels only.

2D: features per slice, averaged; 2.5D: ``n_i`` and ``s_i`` summed over slices; 3D: one volume matrix.
"""

from dataclasses import dataclass

import numpy as np

from ..roi import Roi
from . import _texture_kernels as _kernels
from . import zones
from .common import Undefined

FAMILY = "NGTDM"
PREFIX = "ngt"


@dataclass(frozen=True)
class Ngtdm:
    """The NGTDM of one slice or volume: ``n[i]`` and ``s[i]`` for grey levels ``i = 0..N_g`` (index 0 unused)."""

    n: np.ndarray
    s: np.ndarray

    @classmethod
    def merge(cls, matrices) -> "Ngtdm":
        """2.5D: ``n_i`` and ``s_i`` summed over the slices."""
        matrices = list(matrices)
        return cls(np.sum([m.n for m in matrices], axis=0), np.sum([m.s for m in matrices], axis=0))

    @property
    def n_valid(self) -> float:
        """``N_v,c``: voxels with a valid neighbourhood."""
        return float(self.n.sum())

    def present(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(``i``, ``p_i``, ``s_i``) of the grey levels with ``p_i > 0``."""
        if self.n_valid == 0:
            raise Undefined("no voxel has a neighbour in the ROI")
        i = np.flatnonzero(self.n)
        return i.astype(np.float64), self.n[i] / self.n_valid, self.s[i]


def coarseness(m: Ngtdm) -> float:
    r"""F_ngt.coarseness = 1 / \sum_i p_i s_i  (``ngt_coarseness``).

    Undefined (NaN here; pyradiomics returns 10^6) when every voxel equals its neighbourhood average.
    """
    _, p, s = m.present()
    total = np.sum(p * s)
    if total == 0:
        raise Undefined("sum_i p_i s_i = 0 (no grey tone difference), so its inverse is undefined")
    return 1.0 / total


def contrast(m: Ngtdm) -> float:
    r"""F_ngt.contrast = [1 / (N_g,p (N_g,p - 1)) \sum_i \sum_j p_i p_j (i - j)^2] [1 / N_v,c \sum_i s_i]  (``ngt_contrast``)."""
    i, p, s = m.present()
    if i.size < 2:
        raise Undefined("only one grey level, so N_g,p (N_g,p - 1) = 0")
    pairs = np.sum(np.outer(p, p) * np.subtract.outer(i, i) ** 2)
    return pairs / (i.size * (i.size - 1)) * np.sum(s) / m.n_valid


def busyness(m: Ngtdm) -> float:
    r"""F_ngt.busyness = \sum_i p_i s_i / \sum_i \sum_j |i p_i - j p_j|, for p_i, p_j > 0  (``ngt_busyness``)."""
    i, p, s = m.present()
    denominator = np.sum(np.abs(np.subtract.outer(i * p, i * p)))
    if denominator == 0:
        raise Undefined("sum_i sum_j |i p_i - j p_j| = 0 (a single grey level)")
    return np.sum(p * s) / denominator


def complexity(m: Ngtdm) -> float:
    r"""F_ngt.complexity = 1/N_v,c \sum_i \sum_j |i - j| (p_i s_i + p_j s_j) / (p_i + p_j), for p_i, p_j > 0.

    Tag ``ngt_complexity``.
    """
    i, p, s = m.present()
    ps = p * s
    return np.sum(np.abs(np.subtract.outer(i, i)) * np.add.outer(ps, ps) / np.add.outer(p, p)) / m.n_valid


def strength(m: Ngtdm) -> float:
    r"""F_ngt.strength = \sum_i \sum_j (p_i + p_j)(i - j)^2 / \sum_i s_i, for p_i, p_j > 0  (``ngt_strength``)."""
    i, p, s = m.present()
    if np.sum(s) == 0:
        raise Undefined("sum_i s_i = 0 (no grey tone difference)")
    return np.sum(np.add.outer(p, p) * np.subtract.outer(i, i) ** 2) / np.sum(s)


#: (base tag, formula, name, description, pyradiomics NGTDM feature)
SPECS = (
    ("coarseness", coarseness, "Coarseness", "Inverse of the average grey tone difference; high for uniform texture.",
     "Coarseness"),
    ("contrast", contrast, "Contrast", "Grey level dynamic range times the average grey tone difference.", "Contrast"),
    ("busyness", busyness, "Busyness", "Rapid changes of grey level between neighbouring voxels.", "Busyness"),
    ("complexity", complexity, "Complexity", "Non-uniform, rapid changes of grey level.", "Complexity"),
    ("strength", strength, "Strength", "Large, well-defined texture primitives.", "Strength"),
)
FUNCTIONS = {base: function for base, function, *_ in SPECS}
FEATURES = zones.describe(PREFIX, SPECS, "ngtdm")


def grey_tone_difference_matrices(roi: Roi, settings=None, in_plane: bool = False) -> list[Ngtdm]:
    """The NGTDM of every slice holding ROI voxels (``in_plane``), else a one-element list with the volume's NGTDM."""
    distance = int(getattr(settings, "ngtdm_distance", 1))
    levels, intensity, _ = zones.roi_box(roi, pad=distance)
    if not intensity.any():
        return []
    # per ROI voxel (C order): the sum of its neighbours' grey levels and their number, in one compiled pass
    total, count, _, voxels = zones.neighbourhood_counts(roi, settings, distance, in_plane)
    n, s = _kernels.grey_tone_sums(np.ascontiguousarray(levels, dtype=np.int64), voxels, total, count,
                                   int(levels.max()) + 1, bool(in_plane))
    if not in_plane:
        return [Ngtdm(n[0], s[0])]
    return [Ngtdm(n[z], s[z]) for z in np.flatnonzero(intensity.any(axis=(1, 2)))]


def compute(roi: Roi, settings) -> dict:
    """NGTDM features for each of ``settings.dimensions``, keyed by IBSI tag."""
    return zones.compute_by_dimension(roi, settings, FAMILY, PREFIX, FUNCTIONS, grey_tone_difference_matrices, Ngtdm.merge)
