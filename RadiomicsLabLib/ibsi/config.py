"""Every setting of the IBSI engine, with the meaning IBSI chapter 1 gives it (section numbers of arXiv 1612.07003)."""

from dataclasses import dataclass, replace

DIMENSIONS = ("2D", "2.5D", "3D")
INTERPOLATIONS = ("nearest", "linear", "cubic")
DISCRETISATIONS = ("FBS", "FBN", "none")


@dataclass(frozen=True)
class IbsiSettings:
    """Preprocessing and feature parameters of one IBSI computation.

    Texture aggregation (``dimensions``): "2D" gives ``*_2D_avg`` / ``*_2D_comb`` (by slice),
    "2.5D" ``*_2_5D_avg`` / ``*_2_5D_comb`` (slices merged), "3D" ``*_3D_avg`` / ``*_3D_comb``;
    zone families (GLSZM, GLDZM, NGTDM, NGLDM) give ``*_2D``, ``*_2_5D``, ``*_3D``.
    """

    dimensions: tuple = ("3D",)

    # Interpolation to a new grid (section 2.4). Spacing (x, y, z) in mm; None: no resampling;
    # a None component keeps that axis (2D configurations resample in-plane only).
    new_spacing: tuple | None = None
    interpolation: str = "linear"           # image: nearest | linear | cubic (spline)
    mask_interpolation: str = "linear"      # mask interpolated, then >= mask_threshold is in the ROI
    mask_threshold: float = 0.5
    round_intensities: bool = False         # round interpolated intensities to integers (CT, HU)

    # Re-segmentation (section 2.5): range (lower, upper), either may be None; outliers: mean +- 3 SD.
    resegment_range: tuple | None = None
    resegment_outliers: bool = False

    # Discretisation (section 2.7) for the intensity histogram and texture families.
    discretisation: str = "FBS"             # FBS: fixed bin size, FBN: fixed bin number, none: as they are
    bin_width: float = 25.0
    bin_number: int = 32

    # Intensity-volume histogram discretisation (section 3.5): "none" uses the intensities as they are.
    ivh_discretisation: str = "none"
    ivh_bin_width: float | None = None
    ivh_bin_number: int | None = None

    # Texture parameters (sections 3.6-3.11): Chebyshev distances and NGLDM coarseness alpha.
    glcm_distance: int = 1
    ngtdm_distance: int = 1
    ngldm_distance: int = 1
    ngldm_coarseness: int = 0

    # IBSI chapter 2 filter applied to the interpolated image before the intensity features
    # (a configuration for RadiomicsLabLib.ibsi.filters.apply_filter); None: the original image.
    image_filter: dict | None = None

    # The IBSI diagnostic features (dimensions and intensities of the image and the ROI at each preprocessing step,
    # which the IBSI reference data report to check a preprocessing) in the result. False (pyradiomics'
    # ``additionalInfo: false``) leaves them out, and with them the passes over the whole image and the whole
    # interpolated grid they need.
    diagnostics: bool = True

    def replaced(self, **changes) -> "IbsiSettings":
        return replace(self, **changes)
