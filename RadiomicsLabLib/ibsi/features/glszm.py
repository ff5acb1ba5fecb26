"""Grey level size zone matrix features (IBSI 1, section 3.8; tags ``szm_*_2D``, ``szm_*_2_5D``, ``szm_*_3D``).

A zone is a set of connected voxels with the same grey level: 8-connected in-plane (2D, 2.5D) or
26-connected (3D). Element ``s_ij`` of the GLSZM counts the zones of grey level ``i`` and size ``j``
voxels; ``N_v`` is the number of voxels in the ROI intensity mask (of the slice, for 2D).
The feature formulas are shared with the GLDZM and NGLDM families (:mod:`.zones`).
"""

from ..roi import Roi
from . import zones
from .zones import CountMatrix

FAMILY = "GLSZM"
PREFIX = "szm"

#: (base tag, formula, name, description, pyradiomics GLSZM feature)
SPECS = (
    ("sze", zones.small_emphasis, "Small zone emphasis", "Emphasises small zones.", "SmallAreaEmphasis"),
    ("lze", zones.large_emphasis, "Large zone emphasis", "Emphasises large zones.", "LargeAreaEmphasis"),
    ("lgze", zones.low_grey_level_emphasis, "Low grey level zone emphasis",
     "Emphasises zones of low grey level.", "LowGrayLevelZoneEmphasis"),
    ("hgze", zones.high_grey_level_emphasis, "High grey level zone emphasis",
     "Emphasises zones of high grey level.", "HighGrayLevelZoneEmphasis"),
    ("szlge", zones.small_low_grey_level_emphasis, "Small zone low grey level emphasis",
     "Emphasises small zones of low grey level.", "SmallAreaLowGrayLevelEmphasis"),
    ("szhge", zones.small_high_grey_level_emphasis, "Small zone high grey level emphasis",
     "Emphasises small zones of high grey level.", "SmallAreaHighGrayLevelEmphasis"),
    ("lzlge", zones.large_low_grey_level_emphasis, "Large zone low grey level emphasis",
     "Emphasises large zones of low grey level.", "LargeAreaLowGrayLevelEmphasis"),
    ("lzhge", zones.large_high_grey_level_emphasis, "Large zone high grey level emphasis",
     "Emphasises large zones of high grey level.", "LargeAreaHighGrayLevelEmphasis"),
    ("glnu", zones.grey_level_non_uniformity, "Grey level non-uniformity",
     "How unevenly the zones are distributed over grey levels.", "GrayLevelNonUniformity"),
    ("glnu_norm", zones.grey_level_non_uniformity_normalised, "Normalised grey level non-uniformity",
     "Grey level non-uniformity divided by the number of zones.", "GrayLevelNonUniformityNormalized"),
    ("zsnu", zones.column_non_uniformity, "Zone size non-uniformity",
     "How unevenly the zones are distributed over sizes.", "SizeZoneNonUniformity"),
    ("zsnu_norm", zones.column_non_uniformity_normalised, "Normalised zone size non-uniformity",
     "Zone size non-uniformity divided by the number of zones.", "SizeZoneNonUniformityNormalized"),
    ("z_perc", zones.percentage, "Zone percentage", "Number of zones per ROI voxel.", "ZonePercentage"),
    ("gl_var", zones.grey_level_variance, "Grey level variance", "Variance of the zones' grey levels.",
     "GrayLevelVariance"),
    ("zs_var", zones.column_variance, "Zone size variance", "Variance of the zone sizes.", "ZoneVariance"),
    ("zs_entr", zones.entropy, "Zone size entropy", "Entropy (bits) of the joint grey level / zone size distribution.",
     "ZoneEntropy"),
)
FUNCTIONS = {base: function for base, function, *_ in SPECS}
FEATURES = zones.describe(PREFIX, SPECS, "glszm")


def size_zone_matrices(roi: Roi, settings=None, in_plane: bool = False) -> list[CountMatrix]:
    """The GLSZM of every slice holding ROI voxels (``in_plane``), else a one-element list with the volume's GLSZM."""
    _, intensity, _ = zones.roi_box(roi)
    if not intensity.any():
        return []
    z = zones.roi_zones(roi, in_plane)
    return zones.count_matrices(z.level, z.size, z.slice, intensity, in_plane)


def compute(roi: Roi, settings) -> dict:
    """GLSZM features for each of ``settings.dimensions``, keyed by IBSI tag."""
    return zones.compute_by_dimension(roi, settings, FAMILY, PREFIX, FUNCTIONS, size_zone_matrices, CountMatrix.merge)

