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

The digital phantom is used as it is: no interpolation, no re-segmentation, no discretisation
(its grey levels 1..6 are the levels), every aggregation (2D, 2.5D, 3D), distance 1, alpha 0.
"""

from .config import IbsiSettings

_TEXTURE = dict(glcm_distance=1, ngtdm_distance=1, ngldm_distance=1, ngldm_coarseness=0)

CONFIGURATIONS = {
    "A": IbsiSettings(
        dimensions=("2D", "2.5D"),
        new_spacing=None,
        round_intensities=False,
        resegment_range=(-500.0, 400.0), resegment_outliers=False,
        discretisation="FBS", bin_width=25.0,
        ivh_discretisation="none",
        **_TEXTURE),
    "B": IbsiSettings(
        dimensions=("2D", "2.5D"),
        new_spacing=(2.0, 2.0, None), interpolation="linear",
        mask_interpolation="linear", mask_threshold=0.5, round_intensities=True,
        resegment_range=(-500.0, 400.0), resegment_outliers=False,
        discretisation="FBN", bin_number=32,
        ivh_discretisation="none",
        **_TEXTURE),
    "C": IbsiSettings(
        dimensions=("3D",),
        new_spacing=(2.0, 2.0, 2.0), interpolation="linear",
        mask_interpolation="linear", mask_threshold=0.5, round_intensities=True,
        resegment_range=(-1000.0, 400.0), resegment_outliers=False,
        discretisation="FBS", bin_width=25.0,
        ivh_discretisation="FBS", ivh_bin_width=2.5,
        **_TEXTURE),
    "D": IbsiSettings(
        dimensions=("3D",),
        new_spacing=(2.0, 2.0, 2.0), interpolation="linear",
        mask_interpolation="linear", mask_threshold=0.5, round_intensities=True,
        resegment_range=None, resegment_outliers=True,
        discretisation="FBN", bin_number=32,
        ivh_discretisation="none",
        **_TEXTURE),
    "E": IbsiSettings(
        dimensions=("3D",),
        new_spacing=(2.0, 2.0, 2.0), interpolation="cubic",
        mask_interpolation="linear", mask_threshold=0.5, round_intensities=True,
        resegment_range=(-1000.0, 400.0), resegment_outliers=True,
        discretisation="FBN", bin_number=32,
        ivh_discretisation="FBN", ivh_bin_number=1000,
        **_TEXTURE),
}

DIGITAL_PHANTOM = IbsiSettings(
    dimensions=("2D", "2.5D", "3D"),
    new_spacing=None,
    round_intensities=False,
    resegment_range=None, resegment_outliers=False,
    discretisation="none",
    ivh_discretisation="none",
    **_TEXTURE)
