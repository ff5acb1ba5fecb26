"""Feature reduction for a radiomics study: scikit-learn selectors that learn on the training rows only.

Each class is a scikit-learn feature selector (``fit`` / ``transform`` / ``get_support()`` /
``get_feature_names_out()``, parameters in ``__init__``, learned state in ``*_`` attributes,
``random_state`` where anything is random), so it works inside a :class:`sklearn.pipeline.Pipeline`
and ``cross_validate`` fits it on each fold's training rows only: no selection sees a test row.

- :class:`ReproducibilityFilter`: keep features whose ICC lower 95 % bound (``icc.csv`` of
  ``radiomicslab observers``) reaches a threshold.
- :class:`NearZeroVariance`: drop (near-)constant features (caret's ``nearZeroVar`` rule).
- :class:`CorrelationClusters`: cluster features by |Spearman rho| and keep one per cluster (the most
  reproducible when ICCs are given, else the most variable).
- :class:`UnivariateFDR`: univariate tests (Mann-Whitney U for a binary outcome, the Cox score /
  log-rank test for survival) with Benjamini-Hochberg false discovery rate control.
- :class:`MRMR`: minimum redundancy maximum relevance (MID or MIQ), mutual information by scikit-learn.
- :class:`PenalizedLogistic`: L1 / elastic-net logistic regression, features with non-zero coefficients.
- :class:`RecursiveElimination`: recursive feature elimination with a logistic regression.
- :func:`selection_frequency`: how often each feature is kept across folds, and Nogueira's stability.

Feature names: a selector takes them from its input when that is a data frame (a
:class:`pyarrow.Table`, e.g. :meth:`RadiomicsLabLib.study.inputs.StudyData.table`, or a pandas
frame), else from its ``feature_names`` parameter, else they are ``x0, x1, ...``. Given a
``pyarrow.Table`` a selector's ``transform`` returns a ``pyarrow.Table`` of the kept columns, so
the names go on to the next selector of the Pipeline; ``get_feature_names_out()`` gives the kept
names in every case.
"""

from __future__ import annotations

import csv
import io
import math
import sys

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import RadiomicsLabError
from .inputs import PIVOT_SEPARATOR

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data

    _FINITE = "ensure_all_finite"
except ImportError:  # scikit-learn 1.5 (desktop Slicer's lower bound)
    def _validate_data(estimator, X, **kwargs):
        return estimator._validate_data(X, **kwargs)

    _FINITE = "force_all_finite"


def _is_arrow(X) -> bool:
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(X, pa.Table)


class _Selector(SelectorMixin, BaseEstimator):
    """Shared parts: input checks, feature names, a ``pyarrow.Table`` in gives one out."""

    _allow_nan = False

    def _check_X(self, X, reset: bool = True) -> np.ndarray:
        X = _validate_data(self, X, reset=reset, dtype=np.float64, **{_FINITE: "allow-nan" if self._allow_nan else True})
        if reset:
            names = getattr(self, "feature_names_in_", None)
            given = getattr(self, "feature_names", None)
            if given is not None:
                given = np.asarray(list(given), dtype=object)
                if given.shape != (X.shape[1],):
                    raise RadiomicsLabError(f"{type(self).__name__}: feature_names has {given.size} names but X has "
                                            f"{X.shape[1]} columns; give one name per column of what this step receives.")
                if names is not None and list(names) != list(given):
                    raise RadiomicsLabError(f"{type(self).__name__}: feature_names differ from the column names of X; "
                                            "give one of them.")
                names = given
            self.feature_names_ = (np.asarray(names, dtype=object) if names is not None
                                   else np.array([f"x{j}" for j in range(X.shape[1])], dtype=object))
        return X

    def _check_y_binary(self, y, n: int) -> np.ndarray:
        if survival_target(y) is not None:
            raise RadiomicsLabError(f"{type(self).__name__} is a classification selector (binary outcome); for a "
                                    "survival outcome use NearZeroVariance, CorrelationClusters or UnivariateFDR "
                                    "(selections nzv, correlation, fdr).")
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n:
            raise RadiomicsLabError(f"{type(self).__name__}: y must be one value per row ({n}); got shape {y.shape}.")
        classes = np.unique(y)
        if classes.size != 2:
            raise RadiomicsLabError(f"{type(self).__name__} needs a binary outcome (two classes); the training rows have "
                                    f"{classes.size} ({', '.join(map(str, classes[:5]))}).")
        self.classes_ = classes
        return (y == classes[1]).astype(int)

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def get_feature_names_out(self, input_features=None):
        """The names of the kept features (``input_features``: the names of the input columns instead of the learned ones)."""
        check_is_fitted(self, "support_")
        names = self.feature_names_ if input_features is None else np.asarray(list(input_features), dtype=object)
        if names.shape != self.support_.shape:
            raise ValueError(f"input_features has {names.size} names; this step was fitted on {self.support_.size} features.")
        return names[self.support_]

    def transform(self, X):
        """The kept columns of ``X``: a ``pyarrow.Table`` for a ``pyarrow.Table``, else an array."""
        check_is_fitted(self, "support_")
        if _is_arrow(X):
            self._check_X(X, reset=False)
            return X.select([int(j) for j in np.flatnonzero(self.support_)])
        X = self._check_X(X, reset=False)
        return X[:, self.support_]


# Reproducibility ------------------------------------------------------------------------------------
def read_icc_table(icc) -> dict:
    """Feature -> row (dict of floats, text kept for ``icc_type`` and ``robust``) of an ICC table.

    ``icc``: the path of an ``icc.csv`` written by ``radiomicslab observers`` (columns
    :data:`RadiomicsLabLib.reproducibility.ICC_COLUMNS`: ``feature, icc, ci_low, ci_high, icc_type,
    icc1 ... icc3_ci_high, ccc ..., cv, n_lesions, n_observers, robust``; an empty cell is NaN), the
    rows of a :class:`~RadiomicsLabLib.reproducibility.Reproducibility` (or the object itself), or a
    mapping feature -> ``{column: value}``.
    """
    from pathlib import Path

    if hasattr(icc, "rows") and not isinstance(icc, dict):
        icc = icc.rows
    if isinstance(icc, dict):
        return {str(feature): dict(row) for feature, row in icc.items()}
    if isinstance(icc, (list, tuple)):
        return {str(row["feature"]): dict(row) for row in icc}
    path = Path(icc)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise RadiomicsLabError(f"Cannot read the ICC table '{path}' ({error}); give the icc.csv written by "
                                "radiomicslab observers.") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "feature" not in reader.fieldnames:
        raise RadiomicsLabError(f"The ICC table '{path}' has no 'feature' column; give the icc.csv written by "
                                "radiomicslab observers.")
    table = {}
    for row in reader:
        table[row["feature"]] = {column: _cell_number(value) if column not in ("feature", "icc_type", "robust") else value
                                 for column, value in row.items()}
    return table


def _cell_number(text):
    try:
        return float(text) if text not in ("", None) else math.nan
    except ValueError:
        return math.nan


def _look_up(table: dict, name: str):
    """The ICC row of ``name``; a pivoted name (``segment-Label_1__<feature>``) falls back to ``<feature>``."""
    row = table.get(name)
    if row is None and PIVOT_SEPARATOR in name:
        row = table.get(name.rsplit(PIVOT_SEPARATOR, 1)[1])
    return row


def _icc_values(table: dict, names, column: str, owner: str) -> np.ndarray:
    if table and column not in next(iter(table.values())):
        raise RadiomicsLabError(f"{owner}: the ICC table has no column '{column}' (columns: "
                                f"{', '.join(next(iter(table.values())))}).")
    values = np.full(len(names), np.nan)
    for j, name in enumerate(names):
        row = _look_up(table, str(name))
        if row is not None:
            values[j] = float(row[column])
    return values


class ReproducibilityFilter(_Selector):
    """Keep the features whose ICC lower 95 % confidence bound is at least ``threshold``.

    Method: a feature is kept when ``column`` of its row in the ICC table (default ``ci_low``, the
    lower 95 % bound of the ICC type chosen when ``icc.csv`` was written, ICC(2,1) by default; or
    e.g. ``icc2_ci_low``, ``icc3_ci_low``) is >= ``threshold``; NaN never passes. ICCs are those of
    :mod:`RadiomicsLabLib.reproducibility` (Shrout & Fleiss 1979; McGraw & Wong 1996); the rule on the
    lower bound and 0.75 ("good") follow Koo & Li 2016 (J Chiropr Med 15:155-163). ``icc``: see
    :func:`read_icc_table`. A feature absent from the table (a pivoted name is also looked up without
    its ``<key>-<value>__`` prefix) is dropped, kept or refused: ``unknown`` = ``"drop"``, ``"keep"``
    or ``"error"``. The data are not looked at (NaN allowed): the filter can come before the imputer.

    Attributes: ``icc_`` (the value of ``column`` per input feature, NaN when unknown),
    ``unknown_features_``, ``support_``, ``feature_names_``.
    """

    _allow_nan = True

    def __init__(self, icc=None, threshold: float = 0.75, column: str = "ci_low", unknown: str = "drop",
                 feature_names=None):
        self.icc = icc
        self.threshold = threshold
        self.column = column
        self.unknown = unknown
        self.feature_names = feature_names

    def fit(self, X, y=None):
        if self.icc is None:
            raise RadiomicsLabError("ReproducibilityFilter needs icc= (the icc.csv of radiomicslab observers, or its rows).")
        if self.unknown not in ("drop", "keep", "error"):
            raise RadiomicsLabError(f"ReproducibilityFilter: unknown='{self.unknown}'; choose 'drop', 'keep' or 'error'.")
        self._check_X(X)
        table = read_icc_table(self.icc)
        self.icc_ = _icc_values(table, self.feature_names_, self.column, type(self).__name__)
        known = np.array([_look_up(table, str(name)) is not None for name in self.feature_names_])
        self.unknown_features_ = list(self.feature_names_[~known])
        if self.unknown == "error" and self.unknown_features_:
            raise RadiomicsLabError(f"{len(self.unknown_features_)} feature(s) are not in the ICC table: "
                                    f"{', '.join(self.unknown_features_[:10])}; use unknown='drop' or 'keep', or an ICC "
                                    "table of the same features (same extraction settings).")
        with np.errstate(invalid="ignore"):
            self.support_ = (self.icc_ >= self.threshold) | (~known & (self.unknown == "keep"))
        return self


# Near-zero variance ---------------------------------------------------------------------------------
class NearZeroVariance(_Selector):
    """Drop zero- and near-zero-variance features (caret's ``nearZeroVar``, Kuhn 2008, J Stat Softw 28(5)).

    Method, per feature on the training rows: the frequency ratio = count of the most common value /
    count of the second most common, and the percentage of distinct values = 100 x distinct / rows.
    A feature is dropped when it has one distinct value (zero variance), or when its frequency ratio
    > ``freq_cut`` (default 95/5 = 19) and its percentage of distinct values <= ``unique_cut``
    (default 10), as caret's defaults. Values are compared exactly.

    Attributes: ``freq_ratio_``, ``percent_unique_``, ``zero_variance_``, ``support_``.
    """

    def __init__(self, freq_cut: float = 95 / 5, unique_cut: float = 10.0, feature_names=None):
        self.freq_cut = freq_cut
        self.unique_cut = unique_cut
        self.feature_names = feature_names

    def fit(self, X, y=None):
        X = self._check_X(X)
        n, p = X.shape
        ratio, unique, zero = np.empty(p), np.empty(p), np.zeros(p, bool)
        for j in range(p):
            _, counts = np.unique(X[:, j], return_counts=True)
            unique[j] = 100.0 * counts.size / n
            if counts.size == 1:
                ratio[j], zero[j] = math.inf, True
            else:
                top = np.sort(counts)[::-1]
                ratio[j] = top[0] / top[1]
        self.freq_ratio_, self.percent_unique_, self.zero_variance_ = ratio, unique, zero
        self.support_ = ~(zero | ((ratio > self.freq_cut) & (unique <= self.unique_cut)))
        return self


# Correlation clusters -------------------------------------------------------------------------------
def spearman_matrix(X) -> np.ndarray:
    """Spearman's rho of every pair of columns: Pearson's correlation of the ranks (ties: mean ranks).

    A constant column correlates with nothing: its row and column are 0 (1 on the diagonal)."""
    ranks = stats.rankdata(np.asarray(X, dtype=float), axis=0)
    ranks -= ranks.mean(axis=0)
    norms = np.sqrt(np.sum(ranks ** 2, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ranks /= norms
    ranks[:, norms == 0] = 0.0
    rho = np.clip(ranks.T @ ranks, -1.0, 1.0)
    np.fill_diagonal(rho, 1.0)
    return rho


class CorrelationClusters(_Selector):
    """Cluster features by |Spearman rho| and keep one feature per cluster.

    Method: on the training rows, Spearman's rho of every pair (:func:`spearman_matrix`), the
    distance 1 - |rho| (rounded to 12 decimals, so that tied distances, frequent with few patients,
    are tied whatever the rounding of rho), agglomerative hierarchical clustering (``linkage``: ``complete`` by default,
    scipy's ``linkage``, Müllner 2011 arXiv:1109.2378) cut at distance 1 - ``threshold``. With
    complete linkage every two features of a cluster have |rho| >= ``threshold``, and any two
    clusters have a pair below it (``single``: connected components of |rho| >= threshold;
    ``average``: mean |rho| >= threshold). Kept per cluster: with ``icc`` (as for
    :class:`ReproducibilityFilter`; ``icc_column`` default ``ci_low``) the most reproducible feature
    (highest value; a feature not in the table ranks last), ties and without ICCs the most variable
    (largest variance of the training values, as they reach this step: put it before any scaler).

    Attributes: ``correlation_`` (rho), ``labels_`` (cluster number of each input feature, 1...),
    ``clusters_`` (lists of feature indices, each with its kept feature first), ``support_``.
    """

    def __init__(self, threshold: float = 0.9, linkage: str = "complete", icc=None, icc_column: str = "ci_low",
                 feature_names=None):
        self.threshold = threshold
        self.linkage = linkage
        self.icc = icc
        self.icc_column = icc_column
        self.feature_names = feature_names

    def fit(self, X, y=None):
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import squareform

        if not 0 < self.threshold <= 1:
            raise RadiomicsLabError(f"CorrelationClusters: threshold must be in (0, 1]; got {self.threshold}.")
        if self.linkage not in ("complete", "average", "single"):
            raise RadiomicsLabError(f"CorrelationClusters: linkage '{self.linkage}'; choose complete, average or single.")
        X = self._check_X(X)
        p = X.shape[1]
        self.correlation_ = rho = spearman_matrix(X)
        if p == 1:
            labels = np.array([1])
        else:
            # Rounded: ties (many with few patients: rho takes few values) then break alike whatever the last bits.
            distance = np.round(1.0 - np.abs(rho), 12)
            np.fill_diagonal(distance, 0.0)
            tree = linkage(squareform(distance, checks=False), method=self.linkage)
            labels = fcluster(tree, t=1.0 - self.threshold, criterion="distance")
        # Renumber clusters by their first feature, so that labels follow the column order.
        renumber = {label: k + 1 for k, label in enumerate(dict.fromkeys(labels))}
        self.labels_ = np.array([renumber[label] for label in labels])
        variance = X.var(axis=0, ddof=1) if X.shape[0] > 1 else np.zeros(p)
        if self.icc is not None:
            values = _icc_values(read_icc_table(self.icc), self.feature_names_, self.icc_column, type(self).__name__)
            self.icc_ = values
            primary = np.where(np.isfinite(values), values, -np.inf)
        else:
            primary = np.zeros(p)
        self.variance_ = variance
        self.support_, self.clusters_ = np.zeros(p, bool), []
        for label in range(1, self.labels_.max() + 1):
            members = np.flatnonzero(self.labels_ == label)
            order = sorted(members, key=lambda j: (-primary[j], -variance[j], j))
            self.support_[order[0]] = True
            self.clusters_.append([int(j) for j in order])
        return self


# Univariate tests with FDR --------------------------------------------------------------------------
def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values): q_(i) = min over j >= i of p_(j) m / j, at most 1
    (Benjamini & Hochberg 1995, J R Stat Soc B 57:289-300). Rejecting q <= alpha controls the FDR at alpha."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="mergesort")
    scaled = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def cox_score_test(X, time, event) -> tuple[np.ndarray, np.ndarray]:
    """(chi-square statistic, p-value) of the Cox proportional-hazards score test of beta = 0, per column of X.

    U = sum over event times of (sum of x of those with the event - d mean of x in the risk set),
    V = sum of d (n - d) / (n - 1) x (variance of x in the risk set, 1/n); chi2 = U^2 / V, 1 degree
    of freedom (Cox 1972). Tied event times take the hypergeometric variance (the n - d / n - 1
    factor), so for a 0/1 feature the test is exactly the log-rank test (Mantel 1966).
    """
    X = np.asarray(X, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    order = np.argsort(-time, kind="mergesort")  # longest first: cumulative sums give the risk sets
    t, e, Xs = time[order], event[order], X[order]
    n_at = np.arange(1, t.size + 1, dtype=float)
    s1, s2 = np.cumsum(Xs, axis=0), np.cumsum(Xs ** 2, axis=0)
    U, V = np.zeros(X.shape[1]), np.zeros(X.shape[1])
    for value in np.unique(t[e]):
        at = np.flatnonzero(t == value)
        last = at.max()  # risk set: everyone with time >= value = the first last+1 rows
        n = n_at[last]
        dying = at[e[at]]
        d = dying.size
        mean = s1[last] / n
        variance = s2[last] / n - mean ** 2
        U += Xs[dying].sum(axis=0) - d * mean
        if n > 1:
            V += d * (n - d) / (n - 1) * variance
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.where(V > 0, U ** 2 / V, 0.0)
    return chi2, stats.chi2.sf(chi2, 1)


def survival_target(y) -> tuple[np.ndarray, np.ndarray] | None:
    """(time, event) of a structured survival ``y`` (fields ``time`` and ``event``), None for other ``y``."""
    y = np.asarray(y)
    if y.dtype.names and {"time", "event"} <= set(y.dtype.names):
        return y["time"].astype(float), y["event"].astype(bool)
    return None


class UnivariateFDR(_Selector):
    """Keep the features associated with the outcome at a Benjamini-Hochberg false discovery rate ``alpha``.

    Method, on the training rows: one test per feature, binary outcome: the two-sided Mann-Whitney U
    test (Mann & Whitney 1947; ``scipy.stats.mannwhitneyu``, its exact or asymptotic p-value as scipy
    chooses); survival outcome (structured ``y`` with ``event`` and ``time``): the Cox score test
    (:func:`cox_score_test`, the log-rank test for a 0/1 feature). The p-values are adjusted by
    :func:`benjamini_hochberg` and a feature is kept when its q-value <= ``alpha``. When none passes
    and ``min_features`` > 0, the ``min_features`` smallest p-values are kept (so a Pipeline still
    has a model to fit); ``min_features=0`` keeps none.

    Attributes: ``statistics_``, ``pvalues_``, ``qvalues_``, ``support_``.
    """

    def __init__(self, alpha: float = 0.05, min_features: int = 1, feature_names=None):
        self.alpha = alpha
        self.min_features = min_features
        self.feature_names = feature_names

    def fit(self, X, y):
        X = self._check_X(X)
        survival = survival_target(y)
        if survival is not None:
            self.test_ = "cox-score"
            self.statistics_, self.pvalues_ = cox_score_test(X, *survival)
        else:
            self.test_ = "mann-whitney"
            y = self._check_y_binary(y, X.shape[0])
            result = stats.mannwhitneyu(X[y == 1], X[y == 0], axis=0, alternative="two-sided")
            self.statistics_, self.pvalues_ = np.asarray(result.statistic, float), np.asarray(result.pvalue, float)
        self.pvalues_ = np.where(np.isnan(self.pvalues_), 1.0, self.pvalues_)  # constant features: no evidence
        self.qvalues_ = benjamini_hochberg(self.pvalues_)
        self.support_ = self.qvalues_ <= self.alpha
        if not self.support_.any() and self.min_features > 0:
            self.support_[np.argsort(self.pvalues_, kind="mergesort")[:self.min_features]] = True
        return self


# mRMR -----------------------------------------------------------------------------------------------
class MRMR(_Selector):
    """Minimum redundancy maximum relevance (Peng, Long & Ding 2005, IEEE TPAMI 27:1226-1238), greedy.

    Method, on the training rows: relevance = I(x_j; y), the mutual information of each feature with
    the class (``sklearn.feature_selection.mutual_info_classif``, Kraskov/Ross nearest-neighbour
    estimate with ``n_neighbors``); redundancy of a candidate = the mean of I(x_j; x_s) over the
    features s already chosen (``mutual_info_regression``). The first feature is the most relevant;
    then each step adds the candidate with the best ``scheme``: ``"MID"`` (mutual information
    difference, relevance - redundancy; the default) or ``"MIQ"`` (quotient, relevance / redundancy,
    a redundancy below 1e-12 counted as 1e-12),
    until ``n_features`` are chosen. ``random_state`` seeds scikit-learn's small noise on the values
    (each estimate gets it as given: an int makes the selection reproducible).

    Attributes: ``relevance_``, ``ranking_`` (input indices in the order chosen), ``scores_`` (the
    criterion when each was chosen; the first: its relevance), ``support_``.
    """

    def __init__(self, n_features: int = 10, scheme: str = "MID", n_neighbors: int = 3, random_state=None,
                 feature_names=None):
        self.n_features = n_features
        self.scheme = scheme
        self.n_neighbors = n_neighbors
        self.random_state = random_state
        self.feature_names = feature_names

    def fit(self, X, y):
        from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

        if self.scheme not in ("MID", "MIQ"):
            raise RadiomicsLabError(f"MRMR: scheme '{self.scheme}'; choose 'MID' (difference) or 'MIQ' (quotient).")
        X = self._check_X(X)
        y = self._check_y_binary(y, X.shape[0])
        p = X.shape[1]
        k = min(int(self.n_features), p)
        seed = self.random_state  # an int makes every estimate, and so the selection, reproducible
        self.relevance_ = relevance = mutual_info_classif(X, y, n_neighbors=self.n_neighbors, random_state=seed)
        chosen = [int(np.argmax(relevance))]
        scores = [float(relevance[chosen[0]])]
        redundancy = np.zeros(p)
        candidates = np.ones(p, bool)
        candidates[chosen[0]] = False
        while len(chosen) < k:
            rest = np.flatnonzero(candidates)
            redundancy[rest] += mutual_info_regression(X[:, rest], X[:, chosen[-1]], n_neighbors=self.n_neighbors,
                                                       random_state=seed)
            mean = redundancy[rest] / len(chosen)
            criterion = relevance[rest] - mean if self.scheme == "MID" else relevance[rest] / np.maximum(mean, 1e-12)
            best = int(rest[np.argmax(criterion)])
            chosen.append(best)
            scores.append(float(criterion.max()))
            candidates[best] = False
        self.ranking_, self.scores_ = np.array(chosen), np.array(scores)
        self.support_ = np.zeros(p, bool)
        self.support_[chosen] = True
        return self


# Penalised logistic regression ----------------------------------------------------------------------
def _logistic(C: float, l1_ratio: float, random_state, max_iter: int, tol: float, warm_start: bool = False):
    """The penalised LogisticRegression, on any scikit-learn >= 1.5: the lasso (l1_ratio = 1) by liblinear's
    coordinate descent (exact zeros, fast; its intercept is penalised too, made negligible by an intercept
    scaling of 100), the elastic net by SAGA."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    new_api = tuple(int(part) for part in sklearn.__version__.split(".")[:2]) >= (1, 8)  # 1.8 deprecated penalty=
    if l1_ratio == 1:
        return LogisticRegression(C=C, solver="liblinear", intercept_scaling=100.0, max_iter=max_iter, tol=tol,
                                  random_state=random_state, warm_start=warm_start,
                                  **({"l1_ratio": 1.0} if new_api else {"penalty": "l1"}))
    return LogisticRegression(C=C, l1_ratio=l1_ratio, solver="saga", max_iter=max_iter, tol=tol,
                              random_state=random_state, warm_start=warm_start,
                              **({} if new_api else {"penalty": "elasticnet"}))


class PenalizedLogistic(_Selector):
    """Keep the features with a non-zero coefficient in an L1 (lasso) or elastic-net logistic regression.

    Method, on the training rows: features standardised (mean 0, SD 1 of the training rows), then
    logistic regression minimising C sum log-loss + l1_ratio |w|_1 + (1 - l1_ratio) |w|^2 / 2
    (``l1_ratio`` = 1: the lasso, Tibshirani 1996; 0 < l1_ratio < 1: the elastic net, Zou & Hastie
    2005); the lasso is solved by liblinear's coordinate descent (Yuan, Ho & Lin 2012; its intercept
    penalty made negligible), the elastic net by SAGA (Defazio et al. 2014); both give exact zeros.
    ``C``: the inverse penalty;
    None chooses it among ``Cs`` (default 10 values 10^-2 ... 10) by an inner stratified ``cv``-fold
    cross-validation on the training rows (``scoring``, default ROC AUC; each fold fits the Cs from
    the strongest penalty up, warm-started; ties go to the stronger penalty), then refits on them all.
    A feature is kept when its coefficient is non-zero.

    Attributes: ``coef_`` (standardised coefficients), ``C_`` (the C used), ``Cs_`` and ``cv_scores_`` (the
    inner cross-validation, when ``C`` is None), ``scaler_``, ``model_``, ``n_iter_``, ``support_``.
    """

    def __init__(self, l1_ratio: float = 1.0, C: float | None = None, Cs=None, cv: int = 5, scoring: str = "roc_auc",
                 random_state=None, max_iter: int = 10000, tol: float = 1e-4, feature_names=None):
        self.l1_ratio = l1_ratio
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.scoring = scoring
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol
        self.feature_names = feature_names

    def fit(self, X, y):
        from sklearn.metrics import get_scorer
        from sklearn.model_selection import StratifiedKFold
        from sklearn.preprocessing import StandardScaler

        if not 0 < self.l1_ratio <= 1:
            raise RadiomicsLabError(f"PenalizedLogistic: l1_ratio must be in (0, 1] (1: lasso); got {self.l1_ratio}.")
        X = self._check_X(X)
        y = self._check_y_binary(y, X.shape[0])
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        if self.C is None:
            Cs = np.sort(np.logspace(-2, 1, 10) if self.Cs is None else np.asarray(self.Cs, dtype=float))
            scorer = get_scorer(self.scoring)
            folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
            scores = np.zeros((self.cv, Cs.size))
            for f, (train, test) in enumerate(folds.split(Z, y)):
                # Along the path from the strongest penalty, each fit starting from the previous solution.
                model = _logistic(Cs[0], self.l1_ratio, self.random_state, self.max_iter, self.tol, warm_start=True)
                for c, C in enumerate(Cs):
                    model.set_params(C=C).fit(Z[train], y[train])
                    scores[f, c] = scorer(model, Z[test], y[test])
            mean = scores.mean(axis=0)
            self.cv_scores_, self.Cs_ = mean, Cs
            self.C_ = float(Cs[np.flatnonzero(mean >= mean.max())[0]])  # ties: the strongest penalty (fewest features)
        else:
            self.C_ = float(self.C)
        self.model_ = _logistic(self.C_, self.l1_ratio, self.random_state, self.max_iter, self.tol).fit(Z, y)
        self.coef_ = self.model_.coef_.ravel().copy()
        self.n_iter_ = self.model_.n_iter_
        self.support_ = self.coef_ != 0
        return self


# Recursive feature elimination ----------------------------------------------------------------------
class RecursiveElimination(_Selector):
    """Recursive feature elimination (Guyon, Weston, Barnhill & Vapnik 2002, Mach Learn 46:389-422).

    Method, on the training rows: features standardised, then ``estimator`` (default: an L2 logistic
    regression, C = ``C``, lbfgs) is fitted, the ``step`` features with the smallest |coefficient| are
    removed, and so on until ``n_features`` remain (``sklearn.feature_selection.RFE``).

    Attributes: ``ranking_`` (1 = kept, 2 = removed last, ...), ``rfe_``, ``scaler_``, ``support_``.
    """

    def __init__(self, n_features: int = 10, step=1, estimator=None, C: float = 1.0, random_state=None,
                 feature_names=None):
        self.n_features = n_features
        self.step = step
        self.estimator = estimator
        self.C = C
        self.random_state = random_state
        self.feature_names = feature_names

    def fit(self, X, y):
        from sklearn.base import clone
        from sklearn.feature_selection import RFE
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        X = self._check_X(X)
        y = self._check_y_binary(y, X.shape[0])
        self.scaler_ = StandardScaler().fit(X)
        estimator = (LogisticRegression(C=self.C, max_iter=10000, random_state=self.random_state)
                     if self.estimator is None else clone(self.estimator))
        self.rfe_ = RFE(estimator, n_features_to_select=min(self.n_features, X.shape[1]), step=self.step)
        self.rfe_.fit(self.scaler_.transform(X), y)
        self.ranking_ = self.rfe_.ranking_
        self.support_ = self.rfe_.support_.copy()
        return self


# Selection stability --------------------------------------------------------------------------------
def pipeline_support(estimator) -> np.ndarray:
    """The input features a fitted selector or Pipeline keeps (boolean, over the Pipeline's input columns).

    The steps with ``get_support`` are composed in order; other steps (scalers, imputers) are taken to
    keep every column, and the final model is skipped."""
    steps = [step for _, step in getattr(estimator, "steps", [(None, estimator)])]
    support = None
    for step in steps:
        if not hasattr(step, "get_support"):
            continue
        mask = np.asarray(step.get_support(), bool)
        if support is None:
            support = mask.copy()
        else:
            if mask.size != support.sum():
                raise RadiomicsLabError(f"{type(step).__name__} was fitted on {mask.size} features but the steps before it "
                                        f"keep {int(support.sum())}; a step between them changes the number of columns.")
            support[np.flatnonzero(support)] = mask
    if support is None:
        raise RadiomicsLabError("No feature selection step (nothing with get_support) in the fitted estimator.")
    return support


def _input_names(estimator):
    for _, step in getattr(estimator, "steps", [(None, estimator)]):
        names = getattr(step, "feature_names_", None)
        if names is None:
            names = getattr(step, "feature_names_in_", None)
        if names is not None:
            return list(names)
    return None


def nogueira_stability(supports) -> float:
    """Nogueira, Sechidis & Brown 2018 (J Mach Learn Res 18(174)) stability of M feature subsets of p features:
    1 - mean_f s_f^2 / (k/p (1 - k/p)), s_f^2 = M/(M-1) h_f (1 - h_f), h_f the frequency of feature f and k the
    mean subset size. 1: always the same subset; about 0: as random subsets of the same sizes. NaN when every
    subset is empty or full."""
    Z = np.asarray(supports, dtype=float)
    M, p = Z.shape
    if M < 2:
        raise RadiomicsLabError("Selection stability needs the subsets of at least 2 folds.")
    h = Z.mean(axis=0)
    k = Z.sum(axis=1).mean()
    denominator = (k / p) * (1 - k / p)
    if denominator == 0:
        return math.nan
    return float(1 - np.mean(M / (M - 1) * h * (1 - h)) / denominator)


class SelectionFrequency:
    """How often each feature was kept across the folds: ``features``, ``supports`` (folds x features),
    ``counts``, ``frequency`` (counts / folds) and ``stability`` (:func:`nogueira_stability`)."""

    def __init__(self, features, supports):
        self.features = list(features)
        self.supports = np.asarray(supports, bool)
        self.folds = self.supports.shape[0]
        self.counts = self.supports.sum(axis=0)
        self.frequency = self.counts / self.folds
        self.stability = nogueira_stability(self.supports) if self.folds > 1 else math.nan

    def rows(self) -> list:
        """``{"feature", "frequency", "count", "folds"}`` per feature, most often kept first (ties: input order)."""
        order = sorted(range(len(self.features)), key=lambda j: (-self.counts[j], j))
        return [{"feature": self.features[j], "frequency": float(self.frequency[j]), "count": int(self.counts[j]),
                 "folds": self.folds} for j in order]

    def csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["feature", "frequency", "count", "folds"])
        for row in self.rows():
            writer.writerow([row["feature"], repr(row["frequency"]), row["count"], row["folds"]])
        return buffer.getvalue()

    def write_csv(self, path):
        """Write :meth:`csv_text` to ``path`` atomically."""
        from ..fileio import write_text_atomic

        return write_text_atomic(path, self.csv_text())


def selection_frequency(fitted, feature_names=None) -> SelectionFrequency:
    """Selection frequency of each input feature over folds.

    ``fitted``: the fitted estimators of the folds (e.g. ``cross_validate(..., return_estimator=True)["estimator"]``:
    selectors or Pipelines, see :func:`pipeline_support`) or their boolean supports. ``feature_names``: the input
    columns' names (default: those the first selection step learned).
    """
    fitted = list(fitted)
    if not fitted:
        raise RadiomicsLabError("No fitted folds to count the selected features of.")
    supports = [np.asarray(f, bool) if isinstance(f, (np.ndarray, list, tuple)) else pipeline_support(f) for f in fitted]
    if len({s.size for s in supports}) != 1:
        raise RadiomicsLabError("The folds were fitted on different numbers of features; give folds of one study.")
    names = feature_names if feature_names is not None else next(
        (n for n in (_input_names(f) for f in fitted if not isinstance(f, (np.ndarray, list, tuple))) if n), None)
    names = list(names) if names is not None else [f"x{j}" for j in range(supports[0].size)]
    if len(names) != supports[0].size:
        raise RadiomicsLabError(f"{len(names)} feature names for {supports[0].size} features.")
    return SelectionFrequency(names, np.vstack(supports))
