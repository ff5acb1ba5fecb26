"""Neighbouring grey level dependence matrix features (IBSI 1, section 3.11; tags ``ngl_*_2D``, ``ngl_*_2_5D``, ``ngl_*_3D``).

A neighbour of voxel ``k`` is a voxel of the ROI intensity mask within Chebyshev distance ``delta``
(``settings.ngldm_distance``; in-plane for 2D / 2.5D, 3D otherwise). It is *dependent* when its grey
level differs from ``k``'s by at most the coarseness ``alpha`` (``settings.ngldm_coarseness``).
Element ``s_ij`` counts the ROI voxels of grey level ``i`` with ``j - 1`` dependent neighbours, so
``j = 1`` means none; every ROI voxel is counted once, hence ``N_s = N_v``.

2D: features per slice, averaged; 2.5D: the slices' matrices summed; 3D: one volume matrix.
The feature formulas are shared with GLSZM and GLDZM (:mod:`.zones`).
"""

import numpy as np

from ..roi import Roi
from . import zones
from .zones import CountMatrix

FAMILY = "NGLDM"
PREFIX = "ngl"

#: (base tag, formula, name, description, pyradiomics GLDM feature). pyradiomics' GLDM is this matrix
#: with delta = 1 (``gldm_a`` = alpha); DependencePercentage and GrayLevelNonUniformityNormalized are
#: deprecated there.
SPECS = (
    ("lde", zones.small_emphasis, "Low dependence emphasis", "Emphasises voxels with few dependent neighbours.",
     "SmallDependenceEmphasis"),
    ("hde", zones.large_emphasis, "High dependence emphasis", "Emphasises voxels with many dependent neighbours.",
     "LargeDependenceEmphasis"),
    ("lgce", zones.low_grey_level_emphasis, "Low grey level count emphasis", "Emphasises low grey levels.",
     "LowGrayLevelEmphasis"),
    ("hgce", zones.high_grey_level_emphasis, "High grey level count emphasis", "Emphasises high grey levels.",
     "HighGrayLevelEmphasis"),
    ("ldlge", zones.small_low_grey_level_emphasis, "Low dependence low grey level emphasis",
     "Emphasises low grey levels with few dependent neighbours.", "SmallDependenceLowGrayLevelEmphasis"),
    ("ldhge", zones.small_high_grey_level_emphasis, "Low dependence high grey level emphasis",
     "Emphasises high grey levels with few dependent neighbours.", "SmallDependenceHighGrayLevelEmphasis"),
    ("hdlge", zones.large_low_grey_level_emphasis, "High dependence low grey level emphasis",
     "Emphasises low grey levels with many dependent neighbours.", "LargeDependenceLowGrayLevelEmphasis"),
    ("hdhge", zones.large_high_grey_level_emphasis, "High dependence high grey level emphasis",
     "Emphasises high grey levels with many dependent neighbours.", "LargeDependenceHighGrayLevelEmphasis"),
    ("glnu", zones.grey_level_non_uniformity, "Grey level non-uniformity",
     "How unevenly the voxels are distributed over grey levels.", "GrayLevelNonUniformity"),
    ("glnu_norm", zones.grey_level_non_uniformity_normalised, "Normalised grey level non-uniformity",
     "Grey level non-uniformity divided by the number of voxels.", "GrayLevelNonUniformityNormalized"),
    ("dcnu", zones.column_non_uniformity, "Dependence count non-uniformity",
     "How unevenly the voxels are distributed over dependence counts.", "DependenceNonUniformity"),
    ("dcnu_norm", zones.column_non_uniformity_normalised, "Normalised dependence count non-uniformity",
     "Dependence count non-uniformity divided by the number of voxels.", "DependenceNonUniformityNormalized"),
    ("dc_perc", zones.percentage, "Dependence count percentage", "Counted voxels per ROI voxel (1 by construction).",
     "DependencePercentage"),
    ("gl_var", zones.grey_level_variance, "Grey level variance", "Variance of the grey levels.", "GrayLevelVariance"),
    ("dc_var", zones.column_variance, "Dependence count variance", "Variance of the dependence counts.",
     "DependenceVariance"),
    ("dc_entr", zones.entropy, "Dependence count entropy",
     "Entropy (bits) of the joint grey level / dependence count distribution.", "DependenceEntropy"),
    ("dc_energy", zones.energy, "Dependence count energy",
     "Sum of squares of the joint grey level / dependence count distribution.", None),
)
FUNCTIONS = {base: function for base, function, *_ in SPECS}
FEATURES = zones.describe(PREFIX, SPECS, "gldm")


def dependence_matrices(roi: Roi, settings=None, in_plane: bool = False) -> list[CountMatrix]:
    """The NGLDM of every slice holding ROI voxels (``in_plane``), else a one-element list with the volume's NGLDM."""
    distance = int(getattr(settings, "ngldm_distance", 1))
    levels, intensity, _ = zones.roi_box(roi, pad=distance)
    if not intensity.any():
        return []
    counts = zones.neighbourhood_counts(roi, settings, distance, in_plane)[2]   # shared with the NGTDM
    slice_ids = np.nonzero(intensity)[0] - distance if in_plane else None
    core = tuple(slice(distance, n - distance) for n in levels.shape)
    return zones.count_matrices(levels[intensity], counts + 1, slice_ids, intensity[core], in_plane)


def compute(roi: Roi, settings) -> dict:
    """NGLDM features for each of ``settings.dimensions``, keyed by IBSI tag."""
    return zones.compute_by_dimension(roi, settings, FAMILY, PREFIX, FUNCTIONS, dependence_matrices, CountMatrix.merge)
