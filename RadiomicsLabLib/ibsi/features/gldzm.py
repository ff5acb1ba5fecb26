"""Grey level distance zone matrix features (IBSI 1, section 3.9; tags ``dzm_*_2D``, ``dzm_*_2_5D``, ``dzm_*_3D``).

Zones are those of the GLSZM (8-connected in-plane for 2D / 2.5D, 26-connected in 3D). A voxel's
distance to the ROI edge is the fewest 4-connected (in-plane) or 6-connected (3D) steps to a voxel
outside the ROI, so a voxel on the edge has distance 1; a zone's distance is the smallest distance of
its voxels. Element ``s_ij`` counts the zones of grey level ``i`` at distance ``j``.

Which mask defines the edge: the distance map is computed on the ROI *morphological* mask (as IBSI and
MIRP do), so holes that re-segmentation cut into the intensity mask do not create an edge; zones are
formed from intensity-mask voxels only. (Should an intensity-mask voxel lie outside the morphological
mask, the union of both masks is used, so every zone voxel has a distance of at least 1.)
The grid's edge counts as outside the ROI. ``N_v`` is the number of intensity-mask voxels.
The feature formulas are shared with GLSZM and NGLDM (:mod:`.zones`).
"""

from ..roi import Roi
from . import _texture_kernels as _kernels
from . import zones
from .zones import CountMatrix

FAMILY = "GLDZM"
PREFIX = "dzm"

#: (base tag, formula, name, description, pyradiomics feature); pyradiomics has no GLDZM.
SPECS = (
    ("sde", zones.small_emphasis, "Small distance emphasis", "Emphasises zones close to the ROI edge.", None),
    ("lde", zones.large_emphasis, "Large distance emphasis", "Emphasises zones far from the ROI edge.", None),
    ("lgze", zones.low_grey_level_emphasis, "Low grey level zone emphasis",
     "Emphasises zones of low grey level.", None),
    ("hgze", zones.high_grey_level_emphasis, "High grey level zone emphasis",
     "Emphasises zones of high grey level.", None),
    ("sdlge", zones.small_low_grey_level_emphasis, "Small distance low grey level emphasis",
     "Emphasises zones of low grey level close to the edge.", None),
    ("sdhge", zones.small_high_grey_level_emphasis, "Small distance high grey level emphasis",
     "Emphasises zones of high grey level close to the edge.", None),
    ("ldlge", zones.large_low_grey_level_emphasis, "Large distance low grey level emphasis",
     "Emphasises zones of low grey level far from the edge.", None),
    ("ldhge", zones.large_high_grey_level_emphasis, "Large distance high grey level emphasis",
     "Emphasises zones of high grey level far from the edge.", None),
    ("glnu", zones.grey_level_non_uniformity, "Grey level non-uniformity",
     "How unevenly the zones are distributed over grey levels.", None),
    ("glnu_norm", zones.grey_level_non_uniformity_normalised, "Normalised grey level non-uniformity",
     "Grey level non-uniformity divided by the number of zones.", None),
    ("zdnu", zones.column_non_uniformity, "Zone distance non-uniformity",
     "How unevenly the zones are distributed over distances.", None),
    ("zdnu_norm", zones.column_non_uniformity_normalised, "Normalised zone distance non-uniformity",
     "Zone distance non-uniformity divided by the number of zones.", None),
    ("z_perc", zones.percentage, "Zone percentage", "Number of zones per ROI voxel.", None),
    ("gl_var", zones.grey_level_variance, "Grey level variance", "Variance of the zones' grey levels.", None),
    ("zd_var", zones.column_variance, "Zone distance variance", "Variance of the zone distances.", None),
    ("zd_entr", zones.entropy, "Zone distance entropy",
     "Entropy (bits) of the joint grey level / zone distance distribution.", None),
)
FUNCTIONS = {base: function for base, function, *_ in SPECS}
FEATURES = zones.describe(PREFIX, SPECS)


def distance_zone_matrices(roi: Roi, settings=None, in_plane: bool = False) -> list[CountMatrix]:
    """The GLDZM of every slice holding ROI voxels (``in_plane``), else a one-element list with the volume's GLDZM."""
    _, intensity, morphological = zones.roi_box(roi)
    if not intensity.any():
        return []
    z = zones.roi_zones(roi, in_plane)
    distance = zones.border_distance(morphological | intensity, in_plane).ravel()[z.voxels]
    zone_distance = _kernels.group_minimum(z.label, distance, z.level.size)   # each zone's smallest distance
    return zones.count_matrices(z.level, zone_distance, z.slice, intensity, in_plane)


def compute(roi: Roi, settings) -> dict:
    """GLDZM features for each of ``settings.dimensions``, keyed by IBSI tag."""
    return zones.compute_by_dimension(roi, settings, FAMILY, PREFIX, FUNCTIONS, distance_zone_matrices, CountMatrix.merge)
