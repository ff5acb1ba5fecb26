"""Intensity-based statistical features (IBSI 1, section 3.3; tags ``stat_*``).

Computed in 3D on the intensities ``X_gl = {X_gl,1 ... X_gl,Nv}`` of the ``N_v`` voxels in the ROI
intensity mask (``roi.values()``), without discretisation. Percentiles are sample percentiles with
linear interpolation between order statistics (``numpy.percentile``'s default), which gives the IBSI
digital phantom's ``P90 = 4``.

Each feature is one function whose docstring holds the IBSI formula; a feature is added by writing
one more function with the :func:`feature` decorator. The registry, the runner and :class:`~.common.Sample`
(with the statistics this family shares with the intensity histogram) are in :mod:`.common`.
"""

import numpy as np

from ..roi import Roi
from .common import Sample, all_nan, registry, run

FEATURES, FUNCTIONS, feature = registry()
FAMILY = "Statistics"
_I = "intensity"  # unit: the image's intensity unit (HU, SUV, ...)


@feature("stat_mean", "Mean", _I, "Mean intensity in the ROI.", "original_firstorder_Mean", "Q4LE")
def mean(s: Sample) -> float:
    r"""F_stat.mean = 1/N_v \sum_k X_gl,k  (IBSI Q4LE)."""
    return s.mean


@feature("stat_var", "Variance", _I + "^2", "Intensity variance (no bias correction).",
         "original_firstorder_Variance", "ECT3")
def variance(s: Sample) -> float:
    r"""F_stat.var = 1/N_v \sum_k (X_gl,k - \mu)^2  (IBSI ECT3; no bias correction)."""
    return s.variance


@feature("stat_skew", "Skewness", "", "Skewness of the intensity distribution (0 when the variance is 0).",
         "original_firstorder_Skewness", "KE2A")
def skewness(s: Sample) -> float:
    r"""F_stat.skew = [1/N_v \sum_k (X_gl,k - \mu)^3] / [1/N_v \sum_k (X_gl,k - \mu)^2]^{3/2}  (IBSI KE2A).

    IBSI: F_stat.skew = 0 when F_stat.var = 0 (e.g. a one-voxel ROI).
    """
    return s.skewness()


@feature("stat_kurt", "(Excess) kurtosis", "", "Excess kurtosis (Fisher, -3) of the intensity distribution "
         "(0 when the variance is 0).", "original_firstorder_Kurtosis (pyradiomics does not subtract 3)", "IPH6")
def kurtosis(s: Sample) -> float:
    r"""F_stat.kurt = [1/N_v \sum_k (X_gl,k - \mu)^4] / [1/N_v \sum_k (X_gl,k - \mu)^2]^2 - 3  (IBSI IPH6).

    IBSI: F_stat.kurt = 0 when F_stat.var = 0.
    """
    return s.kurtosis()


@feature("stat_median", "Median", _I, "Sample median intensity.", "original_firstorder_Median", "Y12H")
def median(s: Sample) -> float:
    """F_stat.median = sample median of X_gl  (IBSI Y12H)."""
    return s.median


@feature("stat_min", "Minimum", _I, "Lowest intensity in the ROI.", "original_firstorder_Minimum", "1GSF")
def minimum(s: Sample) -> float:
    """F_stat.min = min(X_gl)  (IBSI 1GSF)."""
    return s.sorted[0]


@feature("stat_p10", "10th percentile", _I, "10th intensity percentile.", "original_firstorder_10Percentile", "QG58")
def percentile_10(s: Sample) -> float:
    """F_stat.P10 = P_10(X_gl)  (IBSI QG58)."""
    return s.percentile(10)


@feature("stat_p90", "90th percentile", _I, "90th intensity percentile.", "original_firstorder_90Percentile", "8DWT")
def percentile_90(s: Sample) -> float:
    """F_stat.P90 = P_90(X_gl)  (IBSI 8DWT)."""
    return s.percentile(90)


@feature("stat_max", "Maximum", _I, "Highest intensity in the ROI.", "original_firstorder_Maximum", "84IY")
def maximum(s: Sample) -> float:
    """F_stat.max = max(X_gl)  (IBSI 84IY)."""
    return s.sorted[-1]


@feature("stat_iqr", "Interquartile range", _I, "P75 - P25 of the intensities.",
         "original_firstorder_InterquartileRange", "SALO")
def interquartile_range(s: Sample) -> float:
    """F_stat.iqr = P_75 - P_25  (IBSI SALO)."""
    return s.interquartile_range()


@feature("stat_range", "Range", _I, "Maximum - minimum intensity.", "original_firstorder_Range", "2OJQ")
def intensity_range(s: Sample) -> float:
    """F_stat.range = max(X_gl) - min(X_gl)  (IBSI 2OJQ)."""
    return s.sorted[-1] - s.sorted[0]


@feature("stat_mad", "Mean absolute deviation", _I, "Mean absolute deviation from the mean.",
         "original_firstorder_MeanAbsoluteDeviation", "4FUA")
def mean_absolute_deviation(s: Sample) -> float:
    r"""F_stat.mad = 1/N_v \sum_k |X_gl,k - \mu|  (IBSI 4FUA)."""
    return s.mean_absolute_deviation()


@feature("stat_rmad", "Robust mean absolute deviation", _I,
         "Mean absolute deviation from their mean of the intensities between P10 and P90 (inclusive).",
         "original_firstorder_RobustMeanAbsoluteDeviation", "1128")
def robust_mean_absolute_deviation(s: Sample) -> float:
    r"""F_stat.rmad = 1/N_{v,10-90} \sum_k |X_gl,10-90,k - mean(X_gl,10-90)|  (IBSI 1128).

    X_gl,10-90 = {x in X_gl | P_10 <= x <= P_90}.
    """
    return s.robust_mean_absolute_deviation()


@feature("stat_medad", "Median absolute deviation", _I, "Mean absolute deviation from the median.", None, "N72L")
def median_absolute_deviation(s: Sample) -> float:
    r"""F_stat.medad = 1/N_v \sum_k |X_gl,k - M|, M the median  (IBSI N72L)."""
    return s.median_absolute_deviation()


@feature("stat_cov", "Coefficient of variation", "", "Standard deviation / mean (NaN when the mean is 0).", None, "7TET")
def coefficient_of_variation(s: Sample) -> float:
    r"""F_stat.cov = \sigma / \mu, \sigma = F_stat.var^{1/2}  (IBSI 7TET); undefined when \mu = 0."""
    return s.coefficient_of_variation()


@feature("stat_qcod", "Quartile coefficient of dispersion", "", "(P75 - P25) / (P75 + P25) (NaN when P75 + P25 = 0).",
         None, "9S40")
def quartile_coefficient_of_dispersion(s: Sample) -> float:
    """F_stat.qcod = (P_75 - P_25) / (P_75 + P_25)  (IBSI 9S40); undefined when P_75 + P_25 = 0."""
    return s.quartile_coefficient_of_dispersion()


@feature("stat_energy", "Energy", _I + "^2", "Sum of squared intensities.",
         "original_firstorder_Energy (with voxelArrayShift 0)", "N8CA")
def energy(s: Sample) -> float:
    r"""F_stat.energy = \sum_k X_gl,k^2  (IBSI N8CA)."""
    return float(np.einsum("i,i->", s.x, s.x))


@feature("stat_rms", "Root mean square", _I, "Quadratic mean of the intensities.",
         "original_firstorder_RootMeanSquared (with voxelArrayShift 0)", "5ZWQ")
def root_mean_square(s: Sample) -> float:
    r"""F_stat.rms = sqrt(\sum_k X_gl,k^2 / N_v)  (IBSI 5ZWQ)."""
    return float(np.sqrt(np.einsum("i,i->", s.x, s.x) / s.n))


def compute(roi: Roi, settings=None) -> dict:
    """Intensity-based statistical features of ``roi.values()`` (3D), keyed by IBSI tag."""
    values = roi.values()
    if values.size == 0:
        return all_nan(FEATURES, roi, FAMILY, "the ROI intensity mask is empty")
    return run(FUNCTIONS, Sample(values), roi, FAMILY)
