"""Intensity-volume histogram features (IBSI 1, section 3.5; tags ``ivh_*``).

The IVH has its own discretisation (``settings.ivh_discretisation``), independent of the one used by
the intensity histogram and texture families. IBSI distinguishes three cases:

- ``"none"`` (calibrated, discrete intensities such as CT): ``X_d,gl = X_gl``; the total range ``G`` is
  the re-segmentation range (a missing bound is the ROI's min / max intensity), else
  ``[min X_gl, max X_gl]``; discretisation interval ``w_d = 1``.
- ``"FBS"`` (calibrated, continuous intensities such as PET): fixed bin size ``w_b = ivh_bin_width``
  from ``X_min`` = the lower re-segmentation bound (else ``min X_gl``) up to ``X_max`` = the upper
  bound (else ``max X_gl``); bin numbers are replaced by bin centres ``X_min + (X_d - 0.5) w_b``;
  ``G`` runs from the first to the last bin centre, ``w_d = w_b``.
- ``"FBN"`` (arbitrary intensity units such as MR): fixed bin number ``N_g = ivh_bin_number``
  (IBSI recommends 1000, the default here) between the ROI's min and max (the re-segmentation range is
  not used); ``X_d,gl = X_d``, ``G = [1, N_g]``, ``w_d = 1``.

The IVH is evaluated at every discretised intensity ``i`` of ``G`` in steps of ``w_d``, present in the
ROI or not:  ``nu_i = 1 - 1/N_v sum_k [X_d,gl,k < i]`` (volume fraction with intensity >= i) and
``gamma_i = (i - min G) / (max G - min G)`` (intensity fraction).
"""

import math

import numpy as np

from ..discretisation import fixed_bin_number, fixed_bin_size
from ...errors import RadiomicsLabError
from ..roi import Roi
from .common import Undefined, all_nan, registry, run

FEATURES, FUNCTIONS, feature = registry()
FAMILY = "Intensity volume histogram"
DEFAULT_IVH_BIN_NUMBER = 1000     # IBSI's recommendation for arbitrary intensity units
MAX_IVH_POINTS = 10_000_000       # beyond this, "none" on a huge intensity range is a settings mistake


class Ivh:
    """The cumulative intensity-volume histogram evaluated on the grid ``i_k = i_0 + k w_d`` over ``G``.

    ``count_ge[k]`` is the number of voxels with ``X_d,gl >= i_k``; ``gamma[k] = k / (K - 1)``.
    """

    def __init__(self, grid: np.ndarray, count_ge: np.ndarray, n_voxels: int, step: float):
        self.intensity = grid
        self.count_ge = count_ge
        self.n = n_voxels
        self.step = step
        self.nu = count_ge / n_voxels
        self.gamma = np.arange(grid.size) / (grid.size - 1) if grid.size > 1 else np.full(1, np.nan)

    def volume_at(self, percent: float) -> float:
        """V_x: the largest nu_i with gamma_i >= x %."""
        if self.intensity.size < 2:
            raise Undefined("the IVH range G holds a single intensity, so the intensity fraction is undefined")
        return float(self.nu[self.gamma >= percent / 100].max())

    def intensity_at(self, percent: float) -> float:
        """I_x: the lowest i with nu_i <= x %; max(G) + w_d (where nu = 0) when no i of G qualifies."""
        hits = np.flatnonzero(self.count_ge / self.n <= percent / 100)
        return float(self.intensity[hits[0]]) if hits.size else float(self.intensity[-1] + self.step)


def _range(values: np.ndarray, settings) -> tuple[float, float]:
    """``(X_min, X_max)``: the re-segmentation range where set, each missing bound from the ROI."""
    bounds = getattr(settings, "resegment_range", None) or (None, None)
    lower = float(values.min()) if bounds[0] is None else float(bounds[0])
    upper = float(values.max()) if bounds[1] is None else float(bounds[1])
    return lower, upper


def _counts_on_bins(levels: np.ndarray, n_bins: int) -> np.ndarray:
    """Number of voxels with level >= k for k = 1..n_bins."""
    histogram = np.bincount(levels, minlength=n_bins + 1)[1:n_bins + 1]
    return np.cumsum(histogram[::-1])[::-1].astype(np.float64)


def build_ivh(values: np.ndarray, settings, notes: list) -> Ivh:
    """The IVH of the ROI intensities ``values`` under ``settings.ivh_*`` (see the module docstring)."""
    method = getattr(settings, "ivh_discretisation", "none") or "none"
    n = values.size
    everything = np.ones(n, dtype=bool)
    if method == "none":
        lower, upper = _range(values, settings)
        if not np.all(values == np.round(values)):
            notes.append(f"{FAMILY}: 'none' on non-integer intensities evaluates the IVH at unit steps; "
                         "FBS (calibrated) or FBN (arbitrary units) is what IBSI recommends for them")
        n_points = int(math.floor(upper - lower)) + 1
        if n_points > MAX_IVH_POINTS:
            raise RadiomicsLabError(f"The IVH range [{lower}, {upper}] is too wide for ivh_discretisation 'none' "
                                    "(one point per unit); use FBS with ivh_bin_width or FBN with ivh_bin_number.")
        grid = lower + np.arange(max(n_points, 1), dtype=np.float64)
        count_ge = n - np.searchsorted(np.sort(values), grid, side="left")
        return Ivh(grid, count_ge.astype(np.float64), n, 1.0)
    if method == "FBS":
        width = getattr(settings, "ivh_bin_width", None)
        if width is None:
            raise RadiomicsLabError("ivh_discretisation 'FBS' needs ivh_bin_width (e.g. 2.5 HU for CT, 0.1 SUV for PET).")
        lower, upper = _range(values, settings)
        levels, highest = fixed_bin_size(values, everything, float(width), lower)
        if levels.min() < 1:
            notes.append(f"{FAMILY}: intensities below the re-segmentation bound {lower} were put in the first IVH bin")
            levels = np.maximum(levels, 1)
        # Bins 1..n_bins hold every intensity of [X_min, X_max] (the bin of X_max itself included).
        n_bins = max(int(math.floor((upper - lower) / width)) + 1, highest)
        grid = lower + (np.arange(1, n_bins + 1) - 0.5) * width
        return Ivh(grid, _counts_on_bins(levels, n_bins), n, float(width))
    if method == "FBN":
        bins = getattr(settings, "ivh_bin_number", None) or DEFAULT_IVH_BIN_NUMBER
        levels, n_bins = fixed_bin_number(values, everything, int(bins))
        grid = np.arange(1, n_bins + 1, dtype=np.float64)
        return Ivh(grid, _counts_on_bins(levels, n_bins), n, 1.0)
    raise RadiomicsLabError(f"Unknown ivh_discretisation '{method}'; use none, FBS or FBN.")


@feature("ivh_v10", "Volume fraction at 10% intensity", "", "Largest volume fraction with intensity fraction >= 10%.",
         None, "NK6P")
def volume_fraction_10(h: Ivh) -> float:
    r"""F_ivh.V10 = max{\nu_i : \gamma_i >= 0.10}  (IBSI BC2M / NK6P)."""
    return h.volume_at(10)


@feature("ivh_v90", "Volume fraction at 90% intensity", "", "Largest volume fraction with intensity fraction >= 90%.",
         None, "4279")
def volume_fraction_90(h: Ivh) -> float:
    r"""F_ivh.V90 = max{\nu_i : \gamma_i >= 0.90}  (IBSI BC2M / 4279)."""
    return h.volume_at(90)


@feature("ivh_i10", "Intensity at 10% volume", "intensity", "Lowest discretised intensity present in at most 10% of the volume.",
         None, "PWN1")
def intensity_10(h: Ivh) -> float:
    r"""F_ivh.I10 = min{i : \nu_i <= 0.10}  (IBSI GBPN / PWN1)."""
    return h.intensity_at(10)


@feature("ivh_i90", "Intensity at 90% volume", "intensity", "Lowest discretised intensity present in at most 90% of the volume.",
         None, "BOHI")
def intensity_90(h: Ivh) -> float:
    r"""F_ivh.I90 = min{i : \nu_i <= 0.90}  (IBSI GBPN / BOHI)."""
    return h.intensity_at(90)


@feature("ivh_diff_v10_v90", "Volume fraction difference between 10% and 90% intensity", "", "V10 - V90.", None, "WITY")
def volume_fraction_difference(h: Ivh) -> float:
    """F_ivh.V10minusV90 = V_10 - V_90  (IBSI DDTU / WITY)."""
    return h.volume_at(10) - h.volume_at(90)


@feature("ivh_diff_i10_i90", "Intensity difference between 10% and 90% volume", "intensity", "I10 - I90.", None, "JXJA")
def intensity_difference(h: Ivh) -> float:
    """F_ivh.I10minusI90 = I_10 - I_90  (IBSI CNV2 / JXJA)."""
    return h.intensity_at(10) - h.intensity_at(90)


@feature("ivh_auc", "Area under the IVH curve", "", "Trapezoidal area under nu(gamma); not standardised by IBSI "
         "(no reference value).", None, "9CMM")
def area_under_curve(h: Ivh) -> float:
    r"""F_ivh.auc = \int \nu d\gamma by the trapezoidal rule  (IBSI 9CMM; no reference value, not standardised).

    IBSI: 0 when there is only one discretised intensity.
    """
    if h.intensity.size < 2:
        return 0.0
    return float(np.sum((h.nu[1:] + h.nu[:-1]) * np.diff(h.gamma)) / 2)


def compute(roi: Roi, settings) -> dict:
    """Intensity-volume histogram features of ``roi.values()`` (3D), keyed by IBSI tag."""
    values = roi.values()
    if values.size == 0:
        return all_nan(FEATURES, roi, FAMILY, "the ROI intensity mask is empty")
    return run(FUNCTIONS, build_ivh(values, settings, roi.notes), roi, FAMILY)
