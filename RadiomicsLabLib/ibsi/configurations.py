"""The IBSI chapter 1 processing configurations of the CT phantom (A-E) and of the digital phantom.

Source: IBSI reference manual (arXiv 1612.07003), chapter "Reference data sets", section "Lung
cancer CT image", tables "Configuration A" ... "Configuration E" (ibsi.readthedocs.io,
05_Reference_data_sets); summarised:

===================  ==========  ============  ============  ============  ================
parameter            A           B             C             D             E
===================  ==========  ============  ============  ============  ================
approach             2D          2D            3D            3D            3D
interpolation        no          yes           yes           yes           yes
voxel spacing (mm)   --          2 x 2 axial   2 x 2 x 2     2 x 2 x 2     2 x 2 x 2
interp. method       --          bilinear      trilinear     trilinear     tricubic spline
intensity rounding   --          nearest int.  nearest int.  nearest int.  nearest int.
ROI interp. method   --          bilinear      trilinear     trilinear     trilinear
ROI partial volume   --          0.5           0.5           0.5           0.5
re-seg. range (HU)   [-500,400]  [-500,400]    [-1000,400]   no            [-1000,400]
outlier filtering    no          no            no            3 sigma       3 sigma
texture and IH       FBS 25 HU   FBN 32 bins   FBS 25 HU     FBN 32 bins   FBN 32 bins
IVH                  no          no            FBS 2.5 HU    no            FBN 1000 bins
===================  ==========  ============  ============  ============  ================

All: GLCM / NGTDM / NGLDM distance 1, GLSZM / GLDZM linkage distance 1, NGLDM coarseness 0.
"2D" configurations are computed by slice: both the ``*_2D`` and the ``*_2_5D`` tags of the
reference tables belong to them. For configuration E the IVH is re-discretised with 1000 bins
between the ROI's own lowest and highest intensity (IBSI's "arbitrary intensity units" case: the
re-segmentation range is not used for it).

The shipped presets ``ibsi-A`` ... ``ibsi-E`` and ``ibsi-digital-phantom`` hold these settings.
The digital phantom is used as it is: no interpolation, no re-segmentation, no discretisation
(its grey levels 1..6 are the levels), every aggregation (2D, 2.5D, 3D), distance 1, alpha 0.
"""

from ..settings import load_settings


def preset_settings(name: str):
    """The IbsiSettings of a shipped IBSI preset (``ibsi-A`` ... ``ibsi-E``, ``ibsi-digital-phantom``)."""
    return load_settings(name).ibsi()[0]


#: The presets in RadiomicsLabLib/presets are the one source of these settings.
CONFIGURATIONS = {c: preset_settings(f"ibsi-{c}") for c in "ABCDE"}
DIGITAL_PHANTOM = preset_settings("ibsi-digital-phantom")
