"""Intensity histogram features (IBSI 1, section 3.4; tags ``ih_*``).

Computed in 3D on the discretised grey levels ``X_d`` of the ``N_v`` voxels in the ROI intensity
mask (``roi.levels``, 1..N_g; the Roi is discretised with ``settings`` first when it has no levels).
The histogram ``H = {n_1 ... n_Ng}`` counts every level from 1 to ``N_g = roi.n_levels`` (empty bins
kept), ``p_i = n_i / N_v``. Percentiles as in :mod:`.statistics` (linear interpolation, :class:`~.common.Sample`).
"""

from functools import cached_property

import numpy as np

from .. import discretisation
from ..roi import Roi
from .common import Sample, Undefined, all_nan, registry, run

FEATURES, FUNCTIONS, feature = registry()
FAMILY = "Intensity histogram"
_G = "grey level"   # unit of discretised intensities (bin numbers)


class Histogram(Sample):
    """The discretised levels ``X_d`` of the ROI with their histogram over 1..N_g."""

    def __init__(self, levels: np.ndarray, n_levels: int):
        super().__init__(levels)
        levels = np.asarray(levels, dtype=np.int64)
        self.n_g = max(int(n_levels), int(levels.max()))
        self._level_counts = np.bincount(levels, minlength=self.n_g + 1)   # every level from 0
        self.counts = self._level_counts[1:self.n_g + 1].astype(np.float64)
        self.grey_levels = np.arange(1, self.n_g + 1, dtype=np.float64)
        self.p = self.counts / self.n

    @cached_property
    def sorted(self) -> np.ndarray:
        """``X_d`` in ascending order: each level repeated as often as it occurs (no sort needed)."""
        return np.repeat(np.arange(self._level_counts.size, dtype=np.float64), self._level_counts)

    @property
    def gradient(self) -> np.ndarray:
        if self.n_g < 2:
            raise Undefined("the histogram has a single bin, so it has no gradient")
        return np.gradient(self.counts)  # one-sided at both ends, central differences / 2 inside


@feature("ih_mean", "Mean", _G, "Mean discretised intensity.", None, "X6K6")
def mean(h: Histogram) -> float:
    r"""F_ih.mean = 1/N_v \sum_k X_d,k = \sum_i i p_i  (IBSI X6K6)."""
    return h.mean


@feature("ih_var", "Variance", _G + "^2", "Variance of the discretised intensities (no bias correction).", None, "CH89")
def variance(h: Histogram) -> float:
    r"""F_ih.var = \sum_i (i - \mu)^2 p_i  (IBSI CH89)."""
    return h.variance


@feature("ih_skew", "Skewness", "", "Skewness of the discretised intensities (0 when the variance is 0).", None, "88K1")
def skewness(h: Histogram) -> float:
    r"""F_ih.skew = \sum_i (i - \mu)^3 p_i / (\sum_i (i - \mu)^2 p_i)^{3/2}  (IBSI 88K1); 0 when F_ih.var = 0."""
    return h.skewness()


@feature("ih_kurt", "(Excess) kurtosis", "", "Excess kurtosis of the discretised intensities (0 when the variance is 0).",
         None, "C3I7")
def kurtosis(h: Histogram) -> float:
    r"""F_ih.kurt = \sum_i (i - \mu)^4 p_i / (\sum_i (i - \mu)^2 p_i)^2 - 3  (IBSI C3I7); 0 when F_ih.var = 0."""
    return h.kurtosis()


@feature("ih_median", "Median", _G, "Sample median of the discretised intensities.", None, "WIFQ")
def median(h: Histogram) -> float:
    """F_ih.median = sample median of X_d  (IBSI WIFQ)."""
    return h.median


@feature("ih_min", "Minimum", _G, "Lowest discretised intensity.", None, "1PR8")
def minimum(h: Histogram) -> float:
    """F_ih.min = min(X_d)  (IBSI 1PR8); 1 for fixed bin number."""
    return h.sorted[0]


@feature("ih_p10", "10th percentile", _G, "10th percentile of the discretised intensities.", None, "GPMT")
def percentile_10(h: Histogram) -> float:
    """F_ih.P10 = P_10(X_d)  (IBSI GPMT)."""
    return h.percentile(10)


@feature("ih_p90", "90th percentile", _G, "90th percentile of the discretised intensities.", None, "OZ0C")
def percentile_90(h: Histogram) -> float:
    """F_ih.P90 = P_90(X_d)  (IBSI OZ0C)."""
    return h.percentile(90)


@feature("ih_max", "Maximum", _G, "Highest discretised intensity.", None, "3NCY")
def maximum(h: Histogram) -> float:
    """F_ih.max = max(X_d)  (IBSI 3NCY); N_g for fixed bin number."""
    return h.sorted[-1]


@feature("ih_mode", "Mode", _G, "Most frequent discretised intensity (ties: the one closest to the mean, then the lower).",
         None, "AMMC")
def mode(h: Histogram) -> float:
    """F_ih.mode = the i with the highest n_i  (IBSI AMMC).

    Ties: the bin closest to F_ih.mean; two bins equally close: the one left of (below) the mean.
    """
    candidates = h.grey_levels[h.counts == h.counts.max()]
    distance = np.abs(candidates - h.mean)
    return candidates[np.flatnonzero(distance == distance.min())[0]]  # ascending: the lower one wins a tie


@feature("ih_iqr", "Interquartile range", _G, "P75 - P25 of the discretised intensities.", None, "WR0O")
def interquartile_range(h: Histogram) -> float:
    """F_ih.iqr = P_75 - P_25 of X_d  (IBSI WR0O)."""
    return h.interquartile_range()


@feature("ih_range", "Range", _G, "Maximum - minimum discretised intensity.", None, "5Z3W")
def intensity_range(h: Histogram) -> float:
    """F_ih.range = max(X_d) - min(X_d)  (IBSI 5Z3W)."""
    return h.sorted[-1] - h.sorted[0]


@feature("ih_mad", "Mean absolute deviation", _G, "Mean absolute deviation of the discretised intensities from their mean.",
         None, "D2ZX")
def mean_absolute_deviation(h: Histogram) -> float:
    r"""F_ih.mad = 1/N_v \sum_k |X_d,k - \mu|  (IBSI D2ZX)."""
    return h.mean_absolute_deviation()


@feature("ih_rmad", "Robust mean absolute deviation", _G,
         "Mean absolute deviation of the discretised intensities between P10 and P90 from their mean.", None, "WRZB")
def robust_mean_absolute_deviation(h: Histogram) -> float:
    r"""F_ih.rmad = 1/N_{v,10-90} \sum_k |X_d,10-90,k - mean(X_d,10-90)|  (IBSI WRZB)."""
    return h.robust_mean_absolute_deviation()


@feature("ih_medad", "Median absolute deviation", _G,
         "Mean absolute deviation of the discretised intensities from their median.", None, "4RNL")
def median_absolute_deviation(h: Histogram) -> float:
    r"""F_ih.medad = 1/N_v \sum_k |X_d,k - M|, M = F_ih.median  (IBSI 4RNL)."""
    return h.median_absolute_deviation()


@feature("ih_cov", "Coefficient of variation", "", "Standard deviation / mean of the discretised intensities.", None, "CWYJ")
def coefficient_of_variation(h: Histogram) -> float:
    r"""F_ih.cov = \sigma / \mu of X_d  (IBSI CWYJ)."""
    return h.coefficient_of_variation()


@feature("ih_qcod", "Quartile coefficient of dispersion", "", "(P75 - P25) / (P75 + P25) of the discretised intensities.",
         None, "SLWD")
def quartile_coefficient_of_dispersion(h: Histogram) -> float:
    """F_ih.qcod = (P_75 - P_25) / (P_75 + P_25) of X_d  (IBSI SLWD)."""
    return h.quartile_coefficient_of_dispersion()


@feature("ih_entropy", "Entropy", "bits", "Shannon entropy of the grey-level histogram.", "original_firstorder_Entropy",
         "TLU2")
def entropy(h: Histogram) -> float:
    r"""F_ih.entropy = -\sum_i p_i \log_2 p_i  (IBSI TLU2; empty bins contribute 0)."""
    p = h.p[h.p > 0]
    return float(-np.sum(p * np.log2(p)))


@feature("ih_uniformity", "Uniformity", "", "Sum of squared bin probabilities.", "original_firstorder_Uniformity", "BJ5W")
def uniformity(h: Histogram) -> float:
    r"""F_ih.uniformity = \sum_i p_i^2  (IBSI BJ5W)."""
    return float(np.sum(h.p * h.p))     # numpy's sum: BLAS's dot would depend on its thread count


@feature("ih_max_grad", "Maximum histogram gradient", "voxels", "Largest value of the histogram gradient.", None, "12CE")
def maximum_gradient(h: Histogram) -> float:
    r"""F_ih.max.grad = max(H')  (IBSI 12CE), with

    H'_1 = n_2 - n_1,  H'_i = (n_{i+1} - n_{i-1}) / 2 for 1 < i < N_g,  H'_{N_g} = n_{N_g} - n_{N_g - 1}.
    """
    return h.gradient.max()


@feature("ih_max_grad_g", "Maximum histogram gradient intensity", _G, "Grey level where the histogram gradient is largest.",
         None, "8E6O")
def maximum_gradient_level(h: Histogram) -> float:
    """F_ih.max.grad.gl = the i where H' is maximal  (IBSI 8E6O; ties: the lowest i)."""
    return h.grey_levels[np.argmax(h.gradient)]


@feature("ih_min_grad", "Minimum histogram gradient", "voxels", "Smallest value of the histogram gradient.", None, "VQB3")
def minimum_gradient(h: Histogram) -> float:
    """F_ih.min.grad = min(H')  (IBSI VQB3)."""
    return h.gradient.min()


@feature("ih_min_grad_g", "Minimum histogram gradient intensity", _G, "Grey level where the histogram gradient is smallest.",
         None, "RHQZ")
def minimum_gradient_level(h: Histogram) -> float:
    """F_ih.min.grad.gl = the i where H' is minimal  (IBSI RHQZ; ties: the lowest i)."""
    return h.grey_levels[np.argmin(h.gradient)]


def compute(roi: Roi, settings) -> dict:
    """Intensity histogram features of the discretised levels of ``roi`` (3D), keyed by IBSI tag."""
    if not roi.intensity_mask.any():
        return all_nan(FEATURES, roi, FAMILY, "the ROI intensity mask is empty")
    if roi.levels is None:
        roi = discretisation.discretise(roi, settings)
    return run(FUNCTIONS, Histogram(roi.levels[roi.intensity_mask], roi.n_levels), roi, FAMILY)
