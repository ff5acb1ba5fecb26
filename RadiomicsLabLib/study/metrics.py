"""Performance metrics of radiomics models with 95 % confidence intervals (binary and survival outcomes).

Core layer: numpy and scipy only. Every function documents its formula and reference.

Conventions used throughout
---------------------------
* Binary outcomes ``y`` are 0/1 (or bool); 1 is the positive class (event, malignant, ...).
  Scores/probabilities are "higher = more likely positive"; AUC is never flipped automatically.
* Survival outcomes are ``time`` (follow-up) and ``event`` (1 = event observed, 0 = right-censored);
  ``risk`` scores are "higher = shorter expected survival" (e.g. a Cox linear predictor).
* Confidence intervals are two-sided at level ``confidence`` (default 0.95), with
  ``z = Phi^-1(1 - (1 - confidence) / 2)``.
* Bootstrap intervals are percentile intervals (Efron & Tibshirani 1993, ch. 13) over
  ``n_bootstrap`` resamples of patients drawn with replacement from ``numpy.random.default_rng(seed)``;
  binary resampling is stratified by outcome (the number of positives and negatives is kept, as
  pROC's default ``boot.stratified=TRUE``), survival resampling is plain. Resamples where a metric
  is undefined (NaN) are left out of the quantiles. Results are deterministic given ``seed``.
* User mistakes (wrong shapes, non-binary outcomes, ...) raise
  :class:`RadiomicsLabLib.errors.RadiomicsLabError`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import special, stats

from ..errors import RadiomicsLabError, RadiomicsLabWarning

__all__ = [
    "METRIC_NAMES",
    "TABLE_COLUMNS",
    "AUCResult",
    "BootstrapResult",
    "CIndexResult",
    "DeLongTestResult",
    "IDIResult",
    "Interval",
    "KaplanMeierResult",
    "LogRankResult",
    "NRIResult",
    "auc_bootstrap",
    "auc_delong",
    "bootstrap_ci",
    "brier_score",
    "calibration_intercept",
    "calibration_slope",
    "choose_threshold",
    "confusion_counts",
    "cumulative_dynamic_auc",
    "decision_curve",
    "delong_covariance",
    "delong_test",
    "harrell_c_index",
    "integrated_brier_score",
    "idi",
    "kaplan_meier",
    "log_rank_test",
    "metric_table",
    "net_benefit",
    "nri",
    "roc_auc",
    "survival_brier_score",
    "threshold_metrics",
    "uno_c_index",
    "wilson_interval",
]

#: Metric names used in :func:`metric_table` rows (the issue's output format).
METRIC_NAMES = (
    "auc",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "brier",
    "calibration_intercept",
    "calibration_slope",
    "nri",
    "idi",
    "c_index_harrell",
    "c_index_uno",
)

#: Columns of every :func:`metric_table` row, in order.
TABLE_COLUMNS = ("model", "metric", "estimate", "ci_low", "ci_high")

_LOGIT_EPS = 1e-12


# --------------------------------------------------------------------------------------------------
# result types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (``method`` says how the interval was made)."""

    estimate: float
    ci_low: float
    ci_high: float
    method: str = ""


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap interval; ``replicates`` holds the metric in each resample (NaN = undefined)."""

    estimate: float
    ci_low: float
    ci_high: float
    replicates: np.ndarray = field(repr=False)
    n_failed: int = 0


@dataclass(frozen=True)
class AUCResult:
    """AUC with variance, standard error and confidence interval."""

    auc: float
    variance: float
    se: float
    ci_low: float
    ci_high: float
    n_positive: int
    n_negative: int
    method: str = "delong"


@dataclass(frozen=True)
class DeLongTestResult:
    """DeLong test of two correlated AUCs (same patients): ``difference = auc1 - auc2``."""

    auc1: float
    auc2: float
    difference: float
    se: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    covariance: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class NRIResult:
    """Net reclassification improvement, its event and non-event components, bootstrap CI."""

    estimate: float
    events: float
    nonevents: float
    ci_low: float
    ci_high: float
    kind: str  # "continuous" or "categorical"


@dataclass(frozen=True)
class IDIResult:
    """Integrated discrimination improvement with the two discrimination slopes, bootstrap CI."""

    estimate: float
    slope_new: float
    slope_reference: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class CIndexResult:
    """Concordance index with its (weighted) pair counts."""

    estimate: float
    concordant: float
    discordant: float
    tied_risk: float
    comparable: float


@dataclass(frozen=True)
class KaplanMeierResult:
    """Kaplan-Meier table at every distinct observed time (events and censorings).

    ``survival[k]`` is S(t) for ``times[k] <= t < times[k+1]``; ``std_error`` is Greenwood's standard
    error of S; ``ci_low``/``ci_high`` the pointwise interval (``conf_type``); NaN where undefined.
    """

    times: np.ndarray
    n_at_risk: np.ndarray
    n_events: np.ndarray
    n_censored: np.ndarray
    survival: np.ndarray
    std_error: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    conf_type: str

    def survival_at(self, t) -> np.ndarray:
        """S(t) as the right-continuous step function (1 before the first time)."""
        t = np.asarray(t, dtype=float)
        idx = np.searchsorted(self.times, t, side="right") - 1
        out = np.where(idx >= 0, self.survival[np.clip(idx, 0, None)], 1.0)
        return out

    def median(self) -> float:
        """Median survival: the smallest time with S(t) <= 0.5 (NaN if S never reaches 0.5)."""
        hit = np.flatnonzero(self.survival <= 0.5)
        return float(self.times[hit[0]]) if hit.size else float("nan")


@dataclass(frozen=True)
class LogRankResult:
    """Log-rank test: chi-square ``statistic`` on ``df`` degrees of freedom, per-group O and E."""

    statistic: float
    df: int
    p_value: float
    groups: tuple
    observed: np.ndarray
    expected: np.ndarray
    variance: np.ndarray = field(repr=False)


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------


def _z(confidence: float) -> float:
    if not (0.0 < float(confidence) < 1.0):
        raise RadiomicsLabError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}.")
    return float(stats.norm.ppf(1.0 - (1.0 - float(confidence)) / 2.0))


def _binary(y, name: str = "y", need_both: bool = True) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise RadiomicsLabError(f"{name} must be a non-empty 1-D array of 0/1 outcomes, got shape {arr.shape}.")
    if arr.dtype == bool:
        out = arr.astype(np.int8)
    else:
        try:
            f = arr.astype(float)
        except (TypeError, ValueError):
            raise RadiomicsLabError(f"{name} must contain 0/1 outcomes (1 = positive class); got {arr.dtype}.")
        if not np.all(np.isin(f, (0.0, 1.0))):
            bad = np.unique(f[~np.isin(f, (0.0, 1.0))])[:5]
            raise RadiomicsLabError(
                f"{name} must contain only 0 and 1 (1 = positive class); found {bad.tolist()}. "
                "Encode the outcome as 0/1 first."
            )
        out = f.astype(np.int8)
    if need_both and (out.min() == out.max()):
        raise RadiomicsLabError(f"{name} has only one class ({int(out[0])}); this metric needs positives and negatives.")
    return out


def _scores(p, n: int, name: str = "scores") -> np.ndarray:
    arr = np.asarray(p, dtype=float)
    if arr.ndim != 1:
        raise RadiomicsLabError(f"{name} must be a 1-D array, got shape {arr.shape}.")
    if arr.size != n:
        raise RadiomicsLabError(f"{name} has {arr.size} values but the outcome has {n}; they must match patient by patient.")
    if not np.all(np.isfinite(arr)):
        raise RadiomicsLabError(f"{name} contains NaN or infinite values; remove or impute them first.")
    return arr


def _probabilities(p, n: int, name: str = "probabilities") -> np.ndarray:
    arr = _scores(p, n, name)
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise RadiomicsLabError(f"{name} must be predicted probabilities in [0, 1]; found values in [{arr.min()}, {arr.max()}].")
    return arr


def _survival(time, event) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise RadiomicsLabError(f"time must be a non-empty 1-D array, got shape {t.shape}.")
    if not np.all(np.isfinite(t)):
        raise RadiomicsLabError("time contains NaN or infinite values.")
    if t.min() < 0:
        raise RadiomicsLabError("time must be non-negative (follow-up since baseline).")
    e = _binary(event, "event", need_both=False)
    if e.size != t.size:
        raise RadiomicsLabError(f"event has {e.size} values but time has {t.size}.")
    return t, e


def _logit(p: np.ndarray) -> np.ndarray:
    return special.logit(np.clip(p, _LOGIT_EPS, 1.0 - _LOGIT_EPS))


def _percentile(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - float(confidence)
    good = replicates[np.isfinite(replicates)]
    if good.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(good, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------------


def _bootstrap_indices(n: int, n_bootstrap: int, seed, strata: np.ndarray | None) -> np.ndarray:
    """(n_bootstrap, n) resample indices; with ``strata`` each stratum keeps its size."""
    if int(n_bootstrap) < 1:
        raise RadiomicsLabError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}.")
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.integers(0, n, size=(int(n_bootstrap), n))
    strata = np.asarray(strata)
    blocks = []
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        blocks.append(members[rng.integers(0, members.size, size=(int(n_bootstrap), members.size))])
    return np.concatenate(blocks, axis=1)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed=0,
    strata=None,
) -> BootstrapResult:
    """Percentile bootstrap CI of ``statistic(*arrays)`` (Efron & Tibshirani 1993, ch. 13).

    Patients (the rows shared by all ``arrays``) are resampled with replacement ``n_bootstrap``
    times; with ``strata`` (e.g. the binary outcome) each stratum is resampled separately so its
    size is kept. The interval is the ``(1-confidence)/2`` and ``1-(1-confidence)/2`` quantiles of the
    replicates (linear interpolation, NaN replicates left out and counted in ``n_failed``).
    """
    if not arrays:
        raise RadiomicsLabError("bootstrap_ci needs at least one array to resample.")
    arrs = [np.asarray(a) for a in arrays]
    n = arrs[0].shape[0]
    if any(a.shape[0] != n for a in arrs):
        raise RadiomicsLabError("all arrays passed to bootstrap_ci must have the same number of patients.")
    idx = _bootstrap_indices(n, n_bootstrap, seed, None if strata is None else np.asarray(strata))
    return _bootstrap_from_indices(statistic, arrs, idx, confidence)


def _bootstrap_from_indices(statistic, arrs, idx, confidence) -> BootstrapResult:
    estimate = float(statistic(*arrs))
    reps = np.empty(idx.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RadiomicsLabWarning)
        for b in range(idx.shape[0]):
            try:
                reps[b] = statistic(*[a[idx[b]] for a in arrs])
            except (RadiomicsLabError, np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError):
                reps[b] = np.nan
    lo, hi = _percentile(reps, confidence)
    return BootstrapResult(estimate, lo, hi, reps, int(np.sum(~np.isfinite(reps))))


# --------------------------------------------------------------------------------------------------
# AUC and DeLong
# --------------------------------------------------------------------------------------------------


def _fast_delong(y: np.ndarray, scores: np.ndarray):
    """Sun & Xu (2014) midrank form of DeLong's placement values for k score rows.

    Returns (aucs[k], V10[k, m], V01[k, n]) with m positives and n negatives.
    """
    pos = scores[:, y == 1]
    neg = scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    # 2 * (sum of midranks) is an integer: one rounding only, the correctly rounded Mann-Whitney AUC
    aucs = (2.0 * tz[:, :m].sum(axis=1) - m * (m + 1)) / (2.0 * m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def roc_auc(y, scores) -> float:
    """Area under the ROC curve (Mann-Whitney form, ties count 1/2).

    AUC = (1 / (m n)) * sum_{i in positives} sum_{j in negatives} psi(x_i, x_j), with
    psi = 1 if x_i > x_j, 1/2 if x_i == x_j, 0 otherwise; computed with midranks:
    AUC = (sum of positive midranks - m (m + 1) / 2) / (m n)  (Hanley & McNeil 1982, Radiology 143:29).
    """
    y = _binary(y)
    s = _scores(scores, y.size)
    return float(_fast_delong(y, s[None, :])[0][0])


def delong_covariance(y, *score_sets) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for k predictors on the same patients.

    Placement values (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837):
    V10(x_i) = (1/n) sum_j psi(x_i, y_j) for each positive i, V01(y_j) = (1/m) sum_i psi(x_i, y_j)
    for each negative j; S = S10 / m + S01 / n where S10, S01 are the sample covariance matrices
    (denominator m-1, n-1) of the placement values across predictors. Computed in O(N log N) with
    midranks as in Sun & Xu 2014 (IEEE Signal Process Lett 21:1389): V10 = (Tz - Tx) / n,
    V01 = 1 - (Tz - Ty) / m. Same numbers as pROC's ``var``/``cov`` (method "delong").
    """
    y = _binary(y)
    if not score_sets:
        raise RadiomicsLabError("delong_covariance needs at least one score array.")
    s = np.vstack([_scores(x, y.size, f"scores[{k}]") for k, x in enumerate(score_sets)])
    if min(int(y.sum()), int(y.size - y.sum())) < 2:
        raise RadiomicsLabError("DeLong's variance needs at least 2 positives and 2 negatives.")
    aucs, v10, v01 = _fast_delong(y, s)
    m, n = v10.shape[1], v01.shape[1]
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def auc_delong(y, scores, confidence: float = 0.95) -> AUCResult:
    """AUC with DeLong's variance and the normal-theory CI ``AUC -+ z sqrt(var)``, clipped to [0, 1].

    Variance as in :func:`delong_covariance` (DeLong 1988; fast algorithm Sun & Xu 2014); the interval
    is pROC's ``ci.auc(method = "delong")`` (Robin et al. 2011, BMC Bioinformatics 12:77).
    """
    z = _z(confidence)
    y = _binary(y)
    aucs, cov = delong_covariance(y, scores)
    auc, var = float(aucs[0]), float(cov[0, 0])
    se = math.sqrt(max(var, 0.0))
    return AUCResult(auc, var, se, max(0.0, auc - z * se), min(1.0, auc + z * se),
                     int(y.sum()), int(y.size - y.sum()), "delong")


def auc_bootstrap(
    y, scores, *, n_bootstrap: int = 2000, confidence: float = 0.95, seed=0, stratified: bool = True
) -> AUCResult:
    """AUC with a percentile bootstrap CI (pROC ``ci.auc(method = "bootstrap")``).

    Patients are resampled with replacement; ``stratified=True`` keeps the numbers of positives and
    negatives (pROC's default). ``variance``/``se`` are the variance and SD of the bootstrap AUCs.
    """
    y = _binary(y)
    s = _scores(scores, y.size)
    idx = _bootstrap_indices(y.size, n_bootstrap, seed, y if stratified else None)
    yb = y[idx]
    sb = s[idx]
    ranks = stats.rankdata(sb, axis=1)
    m = yb.sum(axis=1).astype(float)
    n = y.size - m
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = ((ranks * yb).sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    reps[(m == 0) | (n == 0)] = np.nan
    lo, hi = _percentile(reps, confidence)
    var = float(np.nanvar(reps, ddof=1))
    return AUCResult(roc_auc(y, s), var, math.sqrt(var), lo, hi, int(y.sum()), int(y.size - y.sum()), "bootstrap")


def delong_test(y, scores1, scores2, confidence: float = 0.95) -> DeLongTestResult:
    """DeLong test for two correlated AUCs measured on the same patients.

    z = (AUC1 - AUC2) / sqrt(V1 + V2 - 2 C12) with the DeLong covariance matrix
    (:func:`delong_covariance`); two-sided p = 2 Phi(-|z|); CI of the difference
    (AUC1 - AUC2) -+ z_{conf} * se. Same as pROC ``roc.test(method = "delong", paired = TRUE)``
    (DeLong et al. 1988, Biometrics 44:837).
    """
    zc = _z(confidence)
    aucs, cov = delong_covariance(y, scores1, scores2)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        z = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    else:
        z = diff / se
    p = float(2.0 * stats.norm.sf(abs(z)))
    return DeLongTestResult(float(aucs[0]), float(aucs[1]), diff, se, float(z), p,
                            diff - zc * se, diff + zc * se, cov)


# --------------------------------------------------------------------------------------------------
# threshold metrics
# --------------------------------------------------------------------------------------------------


def wilson_interval(successes, trials, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (Wilson 1927, JASA 22:209; Newcombe 1998 method 3).

    centre = (p + z^2 / (2n)) / (1 + z^2 / n), half-width = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2)),
    with p = k / n. Returns (NaN, NaN) when n == 0.
    """
    z = _z(confidence)
    k, n = float(successes), float(trials)
    if n <= 0:
        return float("nan"), float("nan")
    if k < 0 or k > n:
        raise RadiomicsLabError(f"successes ({successes}) must be between 0 and trials ({trials}).")
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def confusion_counts(y, probabilities, threshold: float) -> dict[str, int]:
    """True/false positives/negatives when a patient is called positive if ``probability >= threshold``."""
    y = _binary(y, need_both=False)
    p = _scores(probabilities, y.size, "probabilities")
    pred = p >= float(threshold)
    return {
        "tp": int(np.sum(pred & (y == 1))),
        "fp": int(np.sum(pred & (y == 0))),
        "tn": int(np.sum(~pred & (y == 0))),
        "fn": int(np.sum(~pred & (y == 1))),
    }


def _threshold_point(tp, fp, tn, fn) -> dict[str, float]:
    def ratio(a, b):
        return a / b if b > 0 else float("nan")

    se = ratio(tp, tp + fn)
    sp = ratio(tn, tn + fp)
    return {
        "sensitivity": se,
        "specificity": sp,
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "balanced_accuracy": (se + sp) / 2.0,
    }


def threshold_metrics(
    y,
    probabilities,
    threshold: float,
    *,
    confidence: float = 0.95,
    method: str = "wilson",
    n_bootstrap: int = 1000,
    seed=0,
) -> dict[str, Interval]:
    """Sensitivity, specificity, PPV, NPV and balanced accuracy at a fixed threshold, with CIs.

    A patient is called positive when ``probability >= threshold``. With TP, FP, TN, FN:
    sensitivity = TP/(TP+FN), specificity = TN/(TN+FP), PPV = TP/(TP+FP), NPV = TN/(TN+FN),
    balanced accuracy = (sensitivity + specificity)/2 (Brodersen et al. 2010, ICPR).
    ``method="wilson"``: Wilson score intervals (:func:`wilson_interval`) for the four proportions and,
    for balanced accuracy, the MOVER combination of the two independent Wilson intervals
    (Zou & Donner 2008, Stat Med 27:1693; Newcombe 1998, Stat Med 17:873):
    L = B - sqrt((Se - l_Se)^2 + (Sp - l_Sp)^2) / 2, U = B + sqrt((u_Se - Se)^2 + (u_Sp - Sp)^2) / 2.
    ``method="bootstrap"``: outcome-stratified percentile bootstrap. A proportion with an empty
    denominator (e.g. PPV with no positive calls) is NaN.
    The threshold must not be chosen on the data it is evaluated on; see :func:`choose_threshold`.
    """
    y = _binary(y)
    p = _probabilities(probabilities, y.size)
    c = confusion_counts(y, p, threshold)
    point = _threshold_point(c["tp"], c["fp"], c["tn"], c["fn"])
    out: dict[str, Interval] = {}
    if method == "wilson":
        pairs = {
            "sensitivity": (c["tp"], c["tp"] + c["fn"]),
            "specificity": (c["tn"], c["tn"] + c["fp"]),
            "ppv": (c["tp"], c["tp"] + c["fp"]),
            "npv": (c["tn"], c["tn"] + c["fn"]),
        }
        for name, (k, n) in pairs.items():
            lo, hi = wilson_interval(k, n, confidence)
            out[name] = Interval(point[name], lo, hi, "wilson")
        se, sp = point["sensitivity"], point["specificity"]
        l1, u1 = out["sensitivity"].ci_low, out["sensitivity"].ci_high
        l2, u2 = out["specificity"].ci_low, out["specificity"].ci_high
        b = point["balanced_accuracy"]
        lo = b - math.sqrt((se - l1) ** 2 + (sp - l2) ** 2) / 2.0
        hi = b + math.sqrt((u1 - se) ** 2 + (u2 - sp) ** 2) / 2.0
        out["balanced_accuracy"] = Interval(b, lo, hi, "wilson-mover")
    elif method == "bootstrap":
        idx = _bootstrap_indices(y.size, n_bootstrap, seed, y)
        pred = p[idx] >= float(threshold)
        yb = y[idx] == 1
        tp = np.sum(pred & yb, axis=1).astype(float)
        fp = np.sum(pred & ~yb, axis=1).astype(float)
        tn = np.sum(~pred & ~yb, axis=1).astype(float)
        fn = np.sum(~pred & yb, axis=1).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = {
                "sensitivity": tp / (tp + fn),
                "specificity": tn / (tn + fp),
                "ppv": tp / (tp + fp),
                "npv": tn / (tn + fn),
            }
        reps["balanced_accuracy"] = (reps["sensitivity"] + reps["specificity"]) / 2.0
        for name in ("sensitivity", "specificity", "ppv", "npv", "balanced_accuracy"):
            lo, hi = _percentile(reps[name], confidence)
            out[name] = Interval(point[name], lo, hi, "bootstrap")
    else:
        raise RadiomicsLabError(f"method must be 'wilson' or 'bootstrap', got {method!r}.")
    return {k: out[k] for k in ("balanced_accuracy", "sensitivity", "specificity", "ppv", "npv")}


def choose_threshold(y_train, p_train, method: str = "youden") -> float:
    """Probability threshold chosen on *training* predictions, to be applied unchanged to test data.

    Candidate thresholds are the midpoints between consecutive distinct training predictions (as
    pROC's ``coords``), the rule being "positive if p >= threshold".
    ``method="youden"``: maximise Youden's J = sensitivity + specificity - 1 (Youden 1950, Cancer 3:32).
    ``method="closest_topleft"``: minimise (1 - sensitivity)^2 + (1 - specificity)^2 (pROC "closest.topleft").
    Ties are broken by the lowest threshold (highest sensitivity).
    """
    y = _binary(y_train, "y_train")
    p = _scores(p_train, y.size, "p_train")
    u = np.unique(p)
    if u.size < 2:
        raise RadiomicsLabError("p_train has a single distinct value; no threshold separates the patients.")
    cand = (u[:-1] + u[1:]) / 2.0
    pos = np.sort(p[y == 1])
    neg = np.sort(p[y == 0])
    sens = 1.0 - np.searchsorted(pos, cand, side="left") / pos.size
    spec = np.searchsorted(neg, cand, side="left") / neg.size
    if method == "youden":
        k = int(np.argmax(sens + spec - 1.0))
    elif method == "closest_topleft":
        k = int(np.argmin((1.0 - sens) ** 2 + (1.0 - spec) ** 2))
    else:
        raise RadiomicsLabError(f"method must be 'youden' or 'closest_topleft', got {method!r}.")
    return float(cand[k])


# --------------------------------------------------------------------------------------------------
# Brier score and calibration
# --------------------------------------------------------------------------------------------------


def brier_score(y, probabilities) -> float:
    """Brier score (1/N) sum_i (p_i - y_i)^2 (Brier 1950, Monthly Weather Review 78:1); lower is better."""
    y = _binary(y, need_both=False)
    p = _probabilities(probabilities, y.size)
    return float(np.mean((p - y) ** 2))


def _logistic_fit(X: np.ndarray, y: np.ndarray, offset: np.ndarray, max_iter: int = 100, tol: float = 1e-10):
    """Maximum likelihood logistic regression by Newton-Raphson with step halving.

    Returns (beta, covariance = inverse observed information) or raises RadiomicsLabError when the
    fit does not converge (e.g. complete separation).
    """
    beta = np.zeros(X.shape[1])

    def loglik(b):
        eta = offset + X @ b
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    ll = loglik(beta)
    for _ in range(max_iter):
        eta = offset + X @ beta
        mu = special.expit(eta)
        w = mu * (1.0 - mu)
        grad = X.T @ (y - mu)
        info = X.T @ (X * w[:, None])
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            raise RadiomicsLabError("logistic recalibration failed: singular information matrix (constant predictions?).")
        t = 1.0
        while True:
            nb = beta + t * step
            nll = loglik(nb)
            if nll >= ll - 1e-12 or t < 1e-10:
                break
            t /= 2.0
        beta, ll = nb, nll
        if np.max(np.abs(t * step)) < tol:
            break
    else:
        raise RadiomicsLabError("logistic recalibration did not converge (the predictions may separate the outcome perfectly).")
    if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 1e6:
        raise RadiomicsLabError("logistic recalibration diverged (the predictions separate the outcome perfectly).")
    mu = special.expit(offset + X @ beta)
    info = X.T @ (X * (mu * (1.0 - mu))[:, None])
    return beta, np.linalg.inv(info)


def calibration_intercept(y, probabilities, confidence: float = 0.95) -> Interval:
    """Calibration-in-the-large: intercept a of logit P(y=1) = a + offset(logit p).

    Logistic regression of the outcome with the logit of the predictions as offset (slope fixed at 1);
    a = 0 when the mean prediction matches the event rate, a > 0 when predictions are too low.
    Wald CI a -+ z * SE(a) from the observed information (as R's ``glm``). Cox 1958 (Biometrika
    45:562); Van Calster et al. 2019 (BMC Medicine 17:230); Steyerberg, Clinical Prediction Models,
    2nd ed., ch. 15. Predictions are clipped to [1e-12, 1 - 1e-12] before the logit.
    """
    z = _z(confidence)
    y = _binary(y)
    lp = _logit(_probabilities(probabilities, y.size))
    beta, cov = _logistic_fit(np.ones((y.size, 1)), y.astype(float), lp)
    se = math.sqrt(cov[0, 0])
    return Interval(float(beta[0]), float(beta[0] - z * se), float(beta[0] + z * se), "wald")


def calibration_slope(y, probabilities, confidence: float = 0.95) -> Interval:
    """Calibration slope b of logit P(y=1) = a + b logit p (logistic recalibration, Cox 1958).

    b = 1 for well-calibrated spread, b < 1 when predictions are too extreme (overfitting), b > 1 when
    too moderate. Wald CI b -+ z * SE(b) from the observed information. For predictions that are a
    maximum-likelihood logistic model's own fitted values on its training data, a = 0 and b = 1
    exactly (the score equations). References as :func:`calibration_intercept`.
    """
    z = _z(confidence)
    y = _binary(y)
    lp = _logit(_probabilities(probabilities, y.size))
    X = np.column_stack([np.ones(y.size), lp])
    beta, cov = _logistic_fit(X, y.astype(float), np.zeros(y.size))
    se = math.sqrt(cov[1, 1])
    return Interval(float(beta[1]), float(beta[1] - z * se), float(beta[1] + z * se), "wald")


# --------------------------------------------------------------------------------------------------
# reclassification: NRI and IDI
# --------------------------------------------------------------------------------------------------


def _nri_point(y, p_ref, p_new, cutoffs):
    if cutoffs is None:
        up = p_new > p_ref
        down = p_new < p_ref
    else:
        c_ref = np.searchsorted(cutoffs, p_ref, side="right")
        c_new = np.searchsorted(cutoffs, p_new, side="right")
        up = c_new > c_ref
        down = c_new < c_ref
    ev = y == 1
    ne = ~ev
    if not ev.any() or not ne.any():
        return float("nan"), float("nan"), float("nan")
    nri_e = (np.sum(up & ev) - np.sum(down & ev)) / np.sum(ev)
    nri_ne = (np.sum(down & ne) - np.sum(up & ne)) / np.sum(ne)
    return float(nri_e + nri_ne), float(nri_e), float(nri_ne)


def _check_cutoffs(cutoffs):
    if cutoffs is None:
        return None
    c = np.asarray(cutoffs, dtype=float).ravel()
    if c.size == 0 or np.any(c <= 0) or np.any(c >= 1) or np.any(np.diff(c) <= 0):
        raise RadiomicsLabError(f"risk cut-offs must be increasing probabilities strictly between 0 and 1, got {cutoffs!r}.")
    return c


def nri(
    y,
    p_reference,
    p_new,
    cutoffs=None,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed=0,
) -> NRIResult:
    """Net reclassification improvement of a new model over a reference model, with bootstrap CI.

    NRI = [P(up | event) - P(down | event)] + [P(down | non-event) - P(up | non-event)]
    (Pencina et al. 2008, Stat Med 27:157). With ``cutoffs`` (e.g. ``[0.1, 0.2]``) "up"/"down" are moves
    between risk categories [0, c1), [c1, c2), ..., [ck, 1] (categorical NRI); with ``cutoffs=None`` any
    increase/decrease of the predicted risk counts (continuous, category-free NRI>0; Pencina,
    D'Agostino & Steyerberg 2011, Stat Med 30:11). The event and non-event components are reported
    separately as Kerr et al. 2014 (Epidemiology 25:114) recommend; the CI is an outcome-stratified
    percentile bootstrap (no closed-form variance is used, as Kerr et al. advise).
    """
    y = _binary(y)
    a = _probabilities(p_reference, y.size, "p_reference")
    b = _probabilities(p_new, y.size, "p_new")
    c = _check_cutoffs(cutoffs)
    est, ev, ne = _nri_point(y, a, b, c)
    boot = bootstrap_ci(lambda yy, aa, bb: _nri_point(yy, aa, bb, c)[0], y, a, b,
                        n_bootstrap=n_bootstrap, confidence=confidence, seed=seed, strata=y)
    return NRIResult(est, ev, ne, boot.ci_low, boot.ci_high, "continuous" if c is None else "categorical")


def _idi_point(y, p_ref, p_new):
    ev = y == 1
    if not ev.any() or ev.all():
        return float("nan"), float("nan"), float("nan")
    s_new = float(p_new[ev].mean() - p_new[~ev].mean())
    s_ref = float(p_ref[ev].mean() - p_ref[~ev].mean())
    return s_new - s_ref, s_new, s_ref


def idi(y, p_reference, p_new, *, n_bootstrap: int = 1000, confidence: float = 0.95, seed=0) -> IDIResult:
    """Integrated discrimination improvement, with bootstrap CI.

    IDI = (mean p_new | events - mean p_new | non-events) - (mean p_ref | events - mean p_ref | non-events),
    the difference of the discrimination slopes (Pencina et al. 2008, Stat Med 27:157; Yates 1982).
    CI: outcome-stratified percentile bootstrap.
    """
    y = _binary(y)
    a = _probabilities(p_reference, y.size, "p_reference")
    b = _probabilities(p_new, y.size, "p_new")
    est, s_new, s_ref = _idi_point(y, a, b)
    boot = bootstrap_ci(lambda yy, aa, bb: _idi_point(yy, aa, bb)[0], y, a, b,
                        n_bootstrap=n_bootstrap, confidence=confidence, seed=seed, strata=y)
    return IDIResult(est, s_new, s_ref, boot.ci_low, boot.ci_high)


# --------------------------------------------------------------------------------------------------
# decision curves
# --------------------------------------------------------------------------------------------------


def _check_thresholds(thresholds) -> np.ndarray:
    t = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if t.size == 0 or np.any(t <= 0) or np.any(t >= 1):
        raise RadiomicsLabError("decision-curve threshold probabilities must lie strictly between 0 and 1.")
    return t


def net_benefit(y, probabilities, thresholds) -> np.ndarray:
    """Net benefit of treating patients with ``p >= p_t`` at each threshold probability p_t.

    NB(p_t) = TP / N - FP / N * p_t / (1 - p_t) (Vickers & Elkin 2006, Med Decis Making 26:565).
    """
    y = _binary(y, need_both=False)
    p = _probabilities(probabilities, y.size)
    t = _check_thresholds(thresholds)
    pred = p[None, :] >= t[:, None]
    tp = np.sum(pred & (y == 1)[None, :], axis=1)
    fp = np.sum(pred & (y == 0)[None, :], axis=1)
    return tp / y.size - fp / y.size * t / (1.0 - t)


def decision_curve(y, predictions, thresholds=None) -> dict[str, np.ndarray]:
    """Decision curve: net benefit of each model, treat-all and treat-none over threshold probabilities.

    ``predictions``: an array or a mapping model name -> predicted probabilities. Default thresholds
    0.01, 0.02, ..., 0.99. Treat all: NB = prevalence - (1 - prevalence) p_t / (1 - p_t); treat none:
    NB = 0 (Vickers & Elkin 2006, Med Decis Making 26:565).
    Returns {"threshold": t, "treat_all": ..., "treat_none": ..., <model>: ...}.
    """
    y = _binary(y, need_both=False)
    t = _check_thresholds(np.arange(1, 100) / 100.0 if thresholds is None else thresholds)
    if not isinstance(predictions, Mapping):
        predictions = {"model": predictions}
    prev = float(y.mean())
    out = {"threshold": t, "treat_all": prev - (1.0 - prev) * t / (1.0 - t), "treat_none": np.zeros_like(t)}
    for name, p in predictions.items():
        if name in out:
            raise RadiomicsLabError(f"model name {name!r} clashes with a decision-curve column; rename it.")
        out[name] = net_benefit(y, p, t)
    return out


# --------------------------------------------------------------------------------------------------
# survival: Kaplan-Meier, log-rank
# --------------------------------------------------------------------------------------------------


def _counts(time: np.ndarray, event: np.ndarray):
    """Distinct times with numbers at risk (just before), events and censorings."""
    times, inv = np.unique(time, return_inverse=True)
    d = np.bincount(inv, weights=event, minlength=times.size)
    total = np.bincount(inv, minlength=times.size)
    at_risk = time.size - np.concatenate([[0], np.cumsum(total)[:-1]])
    return times, at_risk.astype(float), d, (total - d).astype(float)


def kaplan_meier(time, event, *, confidence: float = 0.95, conf_type: str = "log-log") -> KaplanMeierResult:
    """Kaplan-Meier estimator with Greenwood standard errors and pointwise CIs.

    S(t) = prod_{t_j <= t} (1 - d_j / n_j) (Kaplan & Meier 1958, JASA 53:457); Greenwood (1926):
    Var S(t) = S(t)^2 sum_{t_j <= t} d_j / (n_j (n_j - d_j)). Intervals, with v = sum d_j/(n_j(n_j-d_j)):
    ``"log-log"`` (default; Kalbfleisch & Prentice 2002, Stata ``sts``): S^{exp(-+ z sqrt(v) / log S)};
    ``"log"`` (R ``survfit`` default): S exp(-+ z sqrt(v)), capped at 1; ``"plain"``: S -+ z S sqrt(v).
    Undefined limits (S = 1 for log-log, S = 0, n_j = d_j) are NaN.
    """
    z = _z(confidence)
    t, e = _survival(time, event)
    times, n, d, c = _counts(t, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - d / n)
        v = np.cumsum(np.where(d > 0, d / (n * (n - d)), 0.0))
        se = surv * np.sqrt(v)
        se = np.where(np.isfinite(v), se, np.nan)
        if conf_type == "log-log":
            logs = np.log(surv)
            w = z * np.sqrt(v) / np.abs(logs)
            lo = surv ** np.exp(w)
            hi = surv ** np.exp(-w)
            bad = ~np.isfinite(w) | (surv <= 0) | (surv >= 1)
        elif conf_type == "log":
            lo = surv * np.exp(-z * np.sqrt(v))
            hi = np.minimum(1.0, surv * np.exp(z * np.sqrt(v)))
            bad = ~np.isfinite(v) | (surv <= 0)
        elif conf_type == "plain":
            lo = np.maximum(0.0, surv - z * se)
            hi = np.minimum(1.0, surv + z * se)
            bad = ~np.isfinite(v)
        else:
            raise RadiomicsLabError(f"conf_type must be 'log-log', 'log' or 'plain', got {conf_type!r}.")
    lo = np.where(bad, np.nan, lo)
    hi = np.where(bad, np.nan, hi)
    return KaplanMeierResult(times, n, d, c, surv, se, lo, hi, conf_type)


def log_rank_test(time, event, group) -> LogRankResult:
    """Log-rank (Mantel-Cox) test that two or more groups have the same survival function.

    At each distinct event time t_j with d_j events among n_j at risk (d_gj, n_gj in group g):
    O_g - E_g = sum_j (d_gj - d_j n_gj / n_j);
    V_gh = sum_j d_j (n_j - d_j) / (n_j - 1) * (n_gj / n_j) (delta_gh - n_hj / n_j).
    Statistic U' V^-1 U over the first G-1 groups, chi-square with G-1 degrees of freedom
    (Mantel 1966, Cancer Chemother Rep 50:163; Peto & Peto 1972, JRSS A 135:185). Same as R
    ``survival::survdiff(rho = 0)``.
    """
    t, e = _survival(time, event)
    g = np.asarray(group)
    if g.ndim != 1 or g.size != t.size:
        raise RadiomicsLabError(f"group must be a 1-D array with one label per patient ({t.size}), got shape {g.shape}.")
    labels, gi = np.unique(g, return_inverse=True)
    G = labels.size
    if G < 2:
        raise RadiomicsLabError("log_rank_test needs at least two groups.")
    if e.sum() == 0:
        raise RadiomicsLabError("log_rank_test needs at least one event.")
    times, tinv = np.unique(t, return_inverse=True)
    T = times.size
    # per (time, group): events and total leaving
    d_tg = np.zeros((T, G))
    n_leave = np.zeros((T, G))
    np.add.at(d_tg, (tinv, gi), e)
    np.add.at(n_leave, (tinv, gi), 1.0)
    # at risk just before each time: group size minus those who left at earlier times
    n_tg = np.bincount(gi, minlength=G).astype(float)[None, :] - np.vstack(
        [np.zeros((1, G)), np.cumsum(n_leave, axis=0)[:-1]])
    d_t = d_tg.sum(axis=1)
    n_t = n_tg.sum(axis=1)
    keep = d_t > 0
    d_tg, n_tg, d_t, n_t = d_tg[keep], n_tg[keep], d_t[keep], n_t[keep]
    frac = n_tg / n_t[:, None]
    observed = d_tg.sum(axis=0)
    expected = (d_t[:, None] * frac).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fac = np.where(n_t > 1, d_t * (n_t - d_t) / (n_t - 1.0), 0.0)
    V = np.einsum("t,tg,th->gh", fac, frac, -frac)
    V[np.diag_indices(G)] += (fac[:, None] * frac).sum(axis=0)
    U = observed - expected
    Vr = V[:-1, :-1]
    Ur = U[:-1]
    stat = float(Ur @ np.linalg.pinv(Vr) @ Ur)
    df = int(np.linalg.matrix_rank(Vr))
    p = float(stats.chi2.sf(stat, df)) if df > 0 else float("nan")
    return LogRankResult(stat, df, p, tuple(labels.tolist()), observed, expected, V)


# --------------------------------------------------------------------------------------------------
# survival: concordance, time-dependent AUC, Brier
# --------------------------------------------------------------------------------------------------


class _CensoringKM:
    """Kaplan-Meier estimate G(t) = P(C > t) of the censoring distribution.

    Censorings are the "events"; at a time with both deaths and censorings the deaths are taken to
    happen first, so they leave the censoring risk set (the usual convention, as scikit-survival).
    """

    def __init__(self, time: np.ndarray, event: np.ndarray):
        times, n, d, c = _counts(time, event)
        n_c = n - d
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(c > 0, 1.0 - c / n_c, 1.0)
        self.times = times
        self.G = np.cumprod(factor)

    def at(self, t) -> np.ndarray:
        """G(t), right-continuous."""
        idx = np.searchsorted(self.times, t, side="right") - 1
        return np.where(idx >= 0, self.G[np.clip(idx, 0, None)], 1.0)

    def before(self, t) -> np.ndarray:
        """G(t-), the left limit: probability of being still uncensored just before t. The IPCW weight of an
        event at t is 1/G(t-) (Gerds & Schumacher 2006, Biom J 48:1029, eq. 6: a patient censored at the
        event's own time was still under observation then)."""
        idx = np.searchsorted(self.times, t, side="left") - 1
        return np.where(idx >= 0, self.G[np.clip(idx, 0, None)], 1.0)


def _censoring_model(t, e, train_time, train_event) -> _CensoringKM:
    """Censoring KM from the training patients when given, else from the evaluated patients."""
    if (train_time is None) != (train_event is None):
        raise RadiomicsLabError("give both train_time and train_event, or neither.")
    if train_time is None:
        return _CensoringKM(t, e)
    return _CensoringKM(*_survival(train_time, train_event))


def _concordance(time, event, risk, weights, tau=None, chunk: int | None = None) -> CIndexResult:
    """Weighted concordance over comparable pairs (i has an event and the shorter time)."""
    ev = np.flatnonzero(event == 1)
    if tau is not None:
        ev = ev[time[ev] < tau]
    n = time.size
    chunk = chunk or max(1, 4_000_000 // max(n, 1))
    num = conc = disc = tied = comp = 0.0
    for start in range(0, ev.size, chunk):
        I = ev[start:start + chunk]
        ti = time[I][:, None]
        comparable = (time[None, :] > ti) | ((time[None, :] == ti) & (event[None, :] == 0))
        diff = risk[I][:, None] - risk[None, :]
        w = weights[I]
        c = np.sum(comparable & (diff > 0), axis=1)
        dd = np.sum(comparable & (diff < 0), axis=1)
        tt = np.sum(comparable & (diff == 0), axis=1)
        conc += float(w @ c)
        disc += float(w @ dd)
        tied += float(w @ tt)
        comp += float(w @ np.sum(comparable, axis=1))
    num = conc + 0.5 * tied
    est = num / comp if comp > 0 else float("nan")
    return CIndexResult(float(est), conc, disc, tied, comp)


def harrell_c_index(time, event, risk) -> CIndexResult:
    """Harrell's concordance index for right-censored data (higher risk = shorter survival).

    C = sum over comparable pairs of [1(r_i > r_j) + 1/2 1(r_i = r_j)] / number of comparable pairs,
    where (i, j) is comparable when i had an event and T_i < T_j, or T_i = T_j with j censored (a
    censored time tied with an event time is taken as longer). Pairs whose shorter time is censored and
    pairs with tied event times (both events) are not comparable; tied risk scores (exact equality)
    count 1/2. Harrell et al. 1982 (JAMA 247:2543) and 1996 (Stat Med 15:361); the same rules as
    scikit-survival's ``concordance_index_censored`` (up to its 1e-8 tolerance for tied risks) and
    lifelines' ``concordance_index``.
    """
    t, e = _survival(time, event)
    r = _scores(risk, t.size, "risk")
    if e.sum() == 0:
        raise RadiomicsLabError("Harrell's C needs at least one event.")
    return _concordance(t, e, r, np.ones(t.size))


def uno_c_index(time, event, risk, tau: float | None = None, *, train_time=None, train_event=None) -> CIndexResult:
    """Uno's IPCW concordance index up to a horizon tau (Uno et al. 2011, Stat Med 30:1105).

    C_tau = sum_{i,j} delta_i G(T_i-)^-2 1(T_i < T_j, T_i < tau) [1(r_i > r_j) + 1/2 1(r_i = r_j)]
            / sum_{i,j} delta_i G(T_i-)^-2 1(T_i < T_j, T_i < tau),
    with G the Kaplan-Meier estimate of the censoring survival P(C > t) (from ``train_time``/
    ``train_event`` when given, else from the same data), evaluated just before T_i (left limit; it
    differs from G(T_i) only when a censoring ties with the event time). Pairs and ties follow
    :func:`harrell_c_index` (an event time tied with a censored time is comparable), so with no
    censoring and no tau it equals Harrell's C (scikit-survival's ``concordance_index_ipcw`` uses
    G(T_i) instead of G(T_i-); the two agree unless a censoring time equals an event time).
    ``tau=None`` uses all pairs; choose tau with
    G(tau) > 0 (e.g. a clinically meaningful horizon inside follow-up). Weights are
    censoring-independent only if censoring is independent of the risk score.
    """
    t, e = _survival(time, event)
    r = _scores(risk, t.size, "risk")
    if e.sum() == 0:
        raise RadiomicsLabError("Uno's C needs at least one event.")
    km = _censoring_model(t, e, train_time, train_event)
    g = km.before(t)
    use = e == 1
    if tau is not None:
        use &= t < float(tau)
    if np.any(g[use] <= 0):
        raise RadiomicsLabError("the censoring distribution is zero before some event times; choose a smaller tau.")
    w = np.zeros(t.size)
    w[use] = 1.0 / g[use] ** 2
    return _concordance(t, e, r, w, tau=None if tau is None else float(tau))


def cumulative_dynamic_auc(time, event, risk, horizon: float, *, train_time=None, train_event=None) -> float:
    """Cumulative/dynamic time-dependent AUC at ``horizon`` with IPCW (Uno et al. 2007, JASA 102:527;
    Hung & Chiang 2010, Can J Stat 38:8).

    Cases: event at T_i <= t, weighted w_i = 1 / G(T_i-); controls: T_j > t (weight 1 / G(t), which
    cancels). AUC(t) = sum_i sum_j w_i 1(T_i <= t, delta_i = 1) 1(T_j > t) [1(r_i > r_j) + 1/2 1(r_i = r_j)]
                      / (sum_i w_i 1(T_i <= t, delta_i = 1) * #{j: T_j > t}).
    Patients censored before t are used only through G. Same estimator as scikit-survival's
    ``cumulative_dynamic_auc`` (up to its G(T_i) vs our G(T_i-) when censorings tie with events).
    """
    t, e = _survival(time, event)
    r = _scores(risk, t.size, "risk")
    h = float(horizon)
    km = _censoring_model(t, e, train_time, train_event)
    cases = (t <= h) & (e == 1)
    controls = t > h
    if not cases.any() or not controls.any():
        raise RadiomicsLabError(f"no cases (events by {h}) or no controls (still followed after {h}); pick another horizon.")
    g = km.before(t[cases])
    if np.any(g <= 0):
        raise RadiomicsLabError("the censoring distribution is zero before some case times; pick an earlier horizon.")
    w = 1.0 / g
    rc = r[cases][:, None]
    rn = r[controls][None, :]
    psi = (rc > rn) + 0.5 * (rc == rn)
    return float((w @ psi.sum(axis=1)) / (w.sum() * controls.sum()))


def survival_brier_score(time, event, survival_prob, horizon: float, *, train_time=None, train_event=None) -> float:
    """IPCW Brier score at ``horizon`` for predicted survival probabilities S_i(t) (Graf et al. 1999,
    Stat Med 18:2529).

    BS(t) = (1/N) sum_i [ S_i(t)^2 1(T_i <= t, delta_i = 1) / G(T_i-) + (1 - S_i(t))^2 1(T_i > t) / G(t) ];
    patients censored before t contribute 0 (their weight is carried by G).
    """
    t, e = _survival(time, event)
    s = _probabilities(survival_prob, t.size, "survival_prob")
    h = float(horizon)
    km = _censoring_model(t, e, train_time, train_event)
    died = (t <= h) & (e == 1)
    alive = t > h
    g_h = float(km.at(h))
    g_i = km.before(t)
    if (alive.any() and g_h <= 0) or np.any(g_i[died] <= 0):
        raise RadiomicsLabError("the censoring distribution is zero at the horizon; pick an earlier horizon.")
    term = np.zeros(t.size)
    term[died] = s[died] ** 2 / g_i[died]
    term[alive] = (1.0 - s[alive]) ** 2 / g_h
    return float(term.mean())


def integrated_brier_score(time, event, survival_probs, times, *, train_time=None, train_event=None) -> float:
    """Integrated Brier score over ``times`` (Graf et al. 1999): (1 / (t_K - t_1)) * integral of BS(t) dt,
    by the trapezoidal rule over the given time grid (as scikit-survival).

    ``survival_probs[i, k]`` is patient i's predicted S(times[k]).
    """
    grid = np.asarray(times, dtype=float).ravel()
    if grid.size < 2 or np.any(np.diff(grid) <= 0):
        raise RadiomicsLabError("times must be at least two increasing time points.")
    sp = np.asarray(survival_probs, dtype=float)
    t, e = _survival(time, event)
    if sp.shape != (t.size, grid.size):
        raise RadiomicsLabError(f"survival_probs must have shape (patients, times) = {(t.size, grid.size)}, got {sp.shape}.")
    bs = np.array([survival_brier_score(t, e, sp[:, k], grid[k], train_time=train_time, train_event=train_event)
                   for k in range(grid.size)])
    return float(np.trapezoid(bs, grid) / (grid[-1] - grid[0]))


# --------------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------------


def _row(model, metric, estimate, lo, hi) -> dict:
    return {"model": str(model), "metric": metric, "estimate": float(estimate), "ci_low": float(lo), "ci_high": float(hi)}


def _safe(fn, *args):
    try:
        return fn(*args)
    except RadiomicsLabError:
        return float("nan")


def metric_table(
    predictions: Mapping[str, Sequence[float]],
    *,
    y=None,
    time=None,
    event=None,
    thresholds: float | Mapping[str, float] = 0.5,
    reference: str | None = None,
    nri_cutoffs=None,
    tau: float | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    seed=0,
    ci_method: str = "analytic",
) -> list[dict]:
    """Rows ``{model, metric, estimate, ci_low, ci_high}`` for each model, deterministic given ``seed``.

    ``predictions`` maps model name -> per-patient predictions (same patients, same order).
    Binary outcome ``y`` (predictions = probabilities of class 1): ``auc`` (DeLong CI),
    ``balanced_accuracy``, ``sensitivity``, ``specificity``, ``ppv``, ``npv`` at ``thresholds`` (one value
    or one per model, e.g. from :func:`choose_threshold` on training predictions; Wilson / MOVER-Wilson
    CIs), ``brier`` (bootstrap CI), ``calibration_intercept`` and ``calibration_slope`` (Wald CIs), and,
    when ``reference`` names one of the models, ``nri`` (categorical with ``nri_cutoffs``, else continuous)
    and ``idi`` of every other model against it (bootstrap CIs; no rows for the reference itself).
    Survival outcome ``time``/``event`` (predictions = risk scores): ``c_index_harrell`` and
    ``c_index_uno`` (horizon ``tau``), bootstrap CIs. ``ci_method="bootstrap"`` uses percentile
    bootstrap CIs for every metric. All bootstrap CIs in one call share the same resamples (paired
    across models): binary resamples are stratified by ``y``. Undefined metrics are NaN.
    """
    if not isinstance(predictions, Mapping) or not predictions:
        raise RadiomicsLabError("predictions must be a non-empty mapping: model name -> predictions.")
    if ci_method not in ("analytic", "bootstrap"):
        raise RadiomicsLabError(f"ci_method must be 'analytic' or 'bootstrap', got {ci_method!r}.")
    if y is None and time is None:
        raise RadiomicsLabError("give a binary outcome y, or survival time and event (or both).")
    if (time is None) != (event is None):
        raise RadiomicsLabError("give both time and event for survival metrics.")
    if reference is not None and reference not in predictions:
        raise RadiomicsLabError(f"reference model {reference!r} is not one of the predictions {list(predictions)}.")
    _z(confidence)
    rows: list[dict] = []
    boot = ci_method == "bootstrap"

    if y is not None:
        yb = _binary(y)
        n = yb.size
        probs = {name: _probabilities(p, n, f"predictions[{name!r}]") for name, p in predictions.items()}
        idx = _bootstrap_indices(n, n_bootstrap, seed, yb)
        cut = _check_cutoffs(nri_cutoffs)

        def bci(stat, *arrs):
            return _bootstrap_from_indices(stat, [yb, *arrs], idx, confidence)

        for name, p in probs.items():
            thr = float(thresholds[name]) if isinstance(thresholds, Mapping) else float(thresholds)
            if boot:
                r = bci(lambda yy, pp: roc_auc(yy, pp), p)
                rows.append(_row(name, "auc", r.estimate, r.ci_low, r.ci_high))
            else:
                a = auc_delong(yb, p, confidence)
                rows.append(_row(name, "auc", a.auc, a.ci_low, a.ci_high))
            if boot:
                def tm(yy, pp, _thr=thr):
                    c = confusion_counts(yy, pp, _thr)
                    return _threshold_point(c["tp"], c["fp"], c["tn"], c["fn"])

                point = tm(yb, p)
                reps = [tm(yb[i], p[i]) for i in idx]
                for key in ("balanced_accuracy", "sensitivity", "specificity", "ppv", "npv"):
                    lo, hi = _percentile(np.array([rr[key] for rr in reps], dtype=float), confidence)
                    rows.append(_row(name, key, point[key], lo, hi))
            else:
                for key, iv in threshold_metrics(yb, p, thr, confidence=confidence).items():
                    rows.append(_row(name, key, iv.estimate, iv.ci_low, iv.ci_high))
            r = bci(lambda yy, pp: brier_score(yy, pp), p)
            rows.append(_row(name, "brier", r.estimate, r.ci_low, r.ci_high))
            for key, fn in (("calibration_intercept", calibration_intercept), ("calibration_slope", calibration_slope)):
                if boot:
                    r = bci(lambda yy, pp, _fn=fn: _fn(yy, pp).estimate, p)
                    rows.append(_row(name, key, r.estimate, r.ci_low, r.ci_high))
                else:
                    try:
                        iv = fn(yb, p, confidence)
                        rows.append(_row(name, key, iv.estimate, iv.ci_low, iv.ci_high))
                    except RadiomicsLabError:
                        rows.append(_row(name, key, np.nan, np.nan, np.nan))
            if reference is not None and name != reference:
                ref = probs[reference]
                r = bci(lambda yy, aa, bb: _nri_point(yy, aa, bb, cut)[0], ref, p)
                rows.append(_row(name, "nri", r.estimate, r.ci_low, r.ci_high))
                r = bci(lambda yy, aa, bb: _idi_point(yy, aa, bb)[0], ref, p)
                rows.append(_row(name, "idi", r.estimate, r.ci_low, r.ci_high))

    if time is not None:
        t, e = _survival(time, event)
        risks = {name: _scores(p, t.size, f"predictions[{name!r}]") for name, p in predictions.items()}
        idx = _bootstrap_indices(t.size, n_bootstrap, seed, None)

        def harrell(tt, ee, rr):
            return _safe(lambda: harrell_c_index(tt, ee, rr).estimate)

        def uno(tt, ee, rr):
            return _safe(lambda: uno_c_index(tt, ee, rr, tau).estimate)

        for name, r in risks.items():
            for key, fn in (("c_index_harrell", harrell), ("c_index_uno", uno)):
                b = _bootstrap_from_indices(fn, [t, e, r], idx, confidence)
                rows.append(_row(name, key, b.estimate, b.ci_low, b.ci_high))
    return rows
