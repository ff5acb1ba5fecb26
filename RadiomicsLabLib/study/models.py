"""Binary-outcome and survival models of a radiomics study, each one scikit-learn :class:`~sklearn.pipeline.Pipeline`.

Every step that learns anything from the data (imputation, ComBat harmonisation, feature selection,
scaling, the model) is a step of ONE Pipeline built by :func:`build_pipeline`. Cross-validation
(:mod:`RadiomicsLabLib.study.validation`) fits a clone of the whole Pipeline on each fold's
training rows and only applies it to the fold's test rows, so no statistic of a test row (its
value in a median, a batch mean, a feature ranking, a standard deviation) reaches the model that
predicts it. Doing any of these steps once on all rows before cross-validation leaks the test rows
into training and makes the cross-validated AUC optimistic (Ambroise & McLachlan 2002, PNAS
99:6562; Varma & Simon 2006, BMC Bioinformatics 7:91; Hastie, Tibshirani & Friedman, *Elements of
Statistical Learning*, 2nd ed., section 7.10.2).

Models (:data:`MODELS`, :func:`make_model`), each with a small default hyper-parameter grid
(:func:`default_grid`; searched by the inner cross-validation):

- ``logistic_l1``: logistic regression with the lasso penalty (liblinear); grid C in 0.03, 0.1, 0.3, 1.
- ``logistic_l2``: logistic regression with the ridge penalty (L-BFGS); grid C in 0.01, 0.1, 1, 10.
- ``logistic_elasticnet``: elastic-net penalty (SAGA); grid C in 0.03, 0.3, 3 x l1_ratio in 0.2, 0.5, 0.8.
- ``svm``: RBF support vector machine, Platt-calibrated (below); grid C in 0.1, 1, 10 x gamma in "scale", 0.01.
- ``random_forest``: 300 trees; grid max_features in "sqrt", 0.5 x min_samples_leaf in 1, 5.
- ``gradient_boosting``: histogram gradient boosting, 200 iterations, no early stopping; grid learning_rate
  in 0.03, 0.1 x max_leaf_nodes in 4, 16.

Survival models (:data:`SURVIVAL_MODELS`; the outcome is scikit-survival's structured array with fields
``event`` (bool) and ``time`` (float); ``predict`` gives a risk score, higher = shorter survival):

- ``cox_lasso``, ``cox_elasticnet``, ``cox_ridge``: penalised Cox proportional-hazards regression
  (scikit-survival's :class:`~sksurv.linear_model.CoxnetSurvivalAnalysis`, glmnet's coordinate descent;
  Simon et al. 2011, J Stat Softw 39(5)): minimises -(1/n) log partial likelihood (Breslow ties)
  + alpha (l1_ratio ||b||_1 + (1 - l1_ratio)/2 ||b||_2^2) on the z-scored features, with l1_ratio 1, 0.5 and
  :data:`RIDGE_L1_RATIO` (1e-4; Coxnet needs l1_ratio > 0: an L1 part that small zeroes only coefficients
  whose gradient is below 1e-4 alpha, so it is ridge in practice). One alpha per grid candidate
  (``alphas=[a]``, searched by the inner cross-validation; grids: lasso 0.003, 0.01, 0.03, 0.1; elastic net
  0.006, 0.02, 0.06, 0.2; ridge 0.03, 0.1, 0.3, 1). ``fit_baseline_model=True``: Breslow's baseline hazard,
  so ``predict_survival_function`` gives each patient's survival curve (the integrated Brier score needs
  it). Ridge is Coxnet too, not :class:`~sksurv.linear_model.CoxPHSurvivalAnalysis` (exact L2 by Newton's
  method): that one builds a dense features x features Hessian in a Python loop over the patients (3 s per
  fit at 300 features and 450 patients, 100 x Coxnet's time, measured), and with Coxnet the three Cox models
  share one penalty scale (the mean log partial likelihood; CoxPH's alpha is on the sum scale).
- ``random_survival_forest``: scikit-survival's :class:`~sksurv.ensemble.RandomSurvivalForest` (Ishwaran et
  al. 2008, Ann Appl Stat 2:841; log-rank splits), 200 trees, ``n_jobs=1`` (the parallelism is the
  cross-validation's), seeded; grid min_samples_leaf in 5, 15 x max_features in "sqrt", 0.5. Its risk score
  is the sum over time points of the ensemble cumulative hazard.

Why scikit-survival: it is maintained, follows the scikit-learn API (``fit(X, y)``, ``predict``, ``score``
= Harrell's C), so a survival model is the last step of the same Pipeline and GridSearchCV as the binary
ones, and it supports pandas 3 and scikit-learn 1.9; lifelines pins pandas < 3 and has its own API.

SVM probabilities: the SVC's decision function is mapped to a probability by Platt scaling
(a logistic fit of the outcome on the decision value; Platt 1999) whose two parameters are fitted
on 3-fold cross-validated decision values of the training rows, and the SVC itself is refitted on
all training rows (:class:`~sklearn.calibration.CalibratedClassifierCV` with ``method="sigmoid"``,
``ensemble=False``: what ``SVC(probability=True)`` did, which scikit-learn 1.9 deprecates; here the
inner folds are fixed, so it is deterministic). The mapping is monotone (increasing whenever the
fitted slope is positive, i.e. for any SVM better than chance), so the AUC is the AUC of the decision
function; the probabilities are calibrated on training rows only (never a test row).

Feature selection (:data:`SELECTIONS`, :func:`make_selector`; the selectors of
:mod:`RadiomicsLabLib.study.selection`): ``nzv`` (near-zero variance), ``correlation`` (one feature
per cluster of |Spearman rho| >= threshold; grid threshold 0.8, 0.9), ``fdr`` (Mann-Whitney U with
Benjamini-Hochberg FDR 0.05; the Cox score test for a survival outcome), ``mrmr`` (grid n_features 5, 10),
``lasso`` (non-zero L1 logistic coefficients; grid C 0.1, 1), ``rfe`` (recursive elimination; grid n_features
5, 10); or any
scikit-learn selector instance (with a ``get_support``), or a list of these applied in order. For a survival
outcome only ``nzv``, ``correlation`` and ``fdr`` (:data:`SURVIVAL_SELECTIONS`): ``mrmr``, ``lasso`` and ``rfe``
are classification selectors (mutual information with a class, logistic regression) and are refused.

Pipeline layout built by :func:`build_pipeline` (names of the steps, so grids and fitted steps can
be addressed):

* radiomics only (the default): ``impute`` -> [``combat``] -> ``select_<name>`` ... -> ``scale`` -> ``model``
* with clinical covariate columns: ``columns`` (a :class:`~sklearn.compose.ColumnTransformer`) whose
  ``radiomics`` branch is the chain above without the model and whose ``clinical`` branch is
  ``impute`` -> ``scale`` of the covariates (never selected away, never harmonised), then ``model``;
  ``kind="clinical"`` keeps only the ``clinical`` branch (the clinical-only model of the comparison).

The columns of ``X``: the batch column (``batch``, when ComBat is used), the covariate columns
(``covariates``) and the radiomic features (every other column), by position or, for a pandas data
frame, by name.
"""

from __future__ import annotations

import numbers
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..errors import RadiomicsLabError
from .harmonisation import column_position

#: The binary-outcome models :func:`make_model` builds.
MODELS = ("logistic_l1", "logistic_l2", "logistic_elasticnet", "svm", "random_forest", "gradient_boosting")
#: The survival models :func:`make_model` builds (outcome: structured array with fields event, time).
SURVIVAL_MODELS = ("cox_lasso", "cox_ridge", "cox_elasticnet", "random_survival_forest")
#: The selections valid for a survival outcome (the others are classification selectors).
SURVIVAL_SELECTIONS = ("nzv", "correlation", "fdr")
#: Coxnet's L1 share for ``cox_ridge`` (Coxnet needs l1_ratio > 0).
RIDGE_L1_RATIO = 1e-4
#: The feature selections :func:`make_selector` builds (see :mod:`RadiomicsLabLib.study.selection`).
SELECTIONS = ("nzv", "correlation", "fdr", "mrmr", "lasso", "rfe")
#: Imputation inside the pipeline: ``median``, ``mean`` (:class:`~sklearn.impute.SimpleImputer`), ``knn``
#: (:class:`~sklearn.impute.KNNImputer`, 5 neighbours), or None (no step: a missing value is an error).
IMPUTERS = ("median", "mean", "knn")
KINDS = ("radiomics", "clinical", "combined")

#: Default grids, per model name (keys: parameters of the ``model`` step).
MODEL_GRIDS = {
    "logistic_l1": {"C": [0.03, 0.1, 0.3, 1.0]},
    "logistic_l2": {"C": [0.01, 0.1, 1.0, 10.0]},
    "logistic_elasticnet": {"C": [0.03, 0.3, 3.0], "l1_ratio": [0.2, 0.5, 0.8]},
    "svm": {"estimator__C": [0.1, 1.0, 10.0], "estimator__gamma": ["scale", 0.01]},
    "random_forest": {"max_features": ["sqrt", 0.5], "min_samples_leaf": [1, 5]},
    "gradient_boosting": {"learning_rate": [0.03, 0.1], "max_leaf_nodes": [4, 16]},
    "cox_lasso": {"alphas": [[0.003], [0.01], [0.03], [0.1]]},
    "cox_elasticnet": {"alphas": [[0.006], [0.02], [0.06], [0.2]]},
    "cox_ridge": {"alphas": [[0.03], [0.1], [0.3], [1.0]]},
    "random_survival_forest": {"min_samples_leaf": [5, 15], "max_features": ["sqrt", 0.5]},
}
#: Default grids, per selection name (keys: parameters of its ``select_<name>`` step).
SELECTION_GRIDS = {
    "nzv": {},
    "correlation": {"threshold": [0.8, 0.9]},
    "fdr": {},
    "mrmr": {"n_features": [5, 10]},
    "lasso": {"C": [0.1, 1.0]},
    "rfe": {"n_features": [5, 10]},
}


# Models ---------------------------------------------------------------------------------------------
def _sklearn_version() -> tuple:
    import sklearn

    return tuple(int(part) for part in sklearn.__version__.split(".")[:2] if part.isdigit())


def _logistic(l1_ratio: float, C: float, random_state, solver: str):
    """LogisticRegression with an elastic-net mix ``l1_ratio`` (0: ridge, 1: lasso) on any scikit-learn >= 1.5."""
    from sklearn.linear_model import LogisticRegression

    extra = {}
    if _sklearn_version() < (1, 8):  # 1.8 deprecated ``penalty``: l1_ratio says it
        extra["penalty"] = {0.0: "l2", 1.0: "l1"}.get(float(l1_ratio), "elasticnet")
    return LogisticRegression(C=C, l1_ratio=l1_ratio, solver=solver, max_iter=10000, random_state=random_state,
                              **extra)


def outcome_of_model(name: str) -> str:
    """``"binary"`` or ``"survival"``: the outcome a model name of :data:`MODELS` / :data:`SURVIVAL_MODELS` is for."""
    if name in MODELS:
        return "binary"
    if name in SURVIVAL_MODELS:
        return "survival"
    raise RadiomicsLabError(f"Unknown model '{name}'; choose one of {', '.join(MODELS)} (binary outcome) or "
                            f"{', '.join(SURVIVAL_MODELS)} (survival outcome).")


def check_model_outcome(name: str, outcome: str) -> None:
    """A clear error when model ``name`` is not for the ``outcome`` kind (``"binary"`` or ``"survival"``)."""
    kind = outcome_of_model(name)
    if kind != outcome:
        right = MODELS if outcome == "binary" else SURVIVAL_MODELS
        raise RadiomicsLabError(f"Model '{name}' is for a {kind} outcome but this outcome is {outcome}; choose one of "
                                f"{', '.join(right)}.")


def estimator_outcome(estimator) -> str:
    """``"survival"`` for a scikit-survival estimator (it predicts survival functions), else ``"binary"``."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return "survival" if hasattr(final, "predict_survival_function") else "binary"


def make_model(name: str, random_state=None):
    """The estimator of model ``name`` (one of :data:`MODELS` or :data:`SURVIVAL_MODELS`) with its default settings.

    ``random_state`` seeds whatever is random in it (SAGA's sample order, the forests' bootstrap and
    feature draws, the boosting's binning subsample): an int makes it reproducible.
    """
    if name in ("cox_lasso", "cox_elasticnet", "cox_ridge"):
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        ratio = {"cox_lasso": 1.0, "cox_elasticnet": 0.5, "cox_ridge": RIDGE_L1_RATIO}[name]
        alpha = MODEL_GRIDS[name]["alphas"][1]
        return CoxnetSurvivalAnalysis(alphas=list(alpha), l1_ratio=ratio, fit_baseline_model=True, max_iter=100000)
    if name == "random_survival_forest":
        from sksurv.ensemble import RandomSurvivalForest

        return RandomSurvivalForest(n_estimators=200, min_samples_leaf=15, max_features="sqrt", n_jobs=1,
                                    random_state=random_state)
    if name == "logistic_l2":
        return _logistic(0.0, 1.0, random_state, "lbfgs")
    if name == "logistic_l1":
        # liblinear: exact zeros and ~100x faster than SAGA on a radiomics-sized table; unlike SAGA it also
        # penalises the intercept (intercept_scaling=1), a small extra shrinkage on z-scored features.
        return _logistic(1.0, 0.3, random_state, "liblinear")
    if name == "logistic_elasticnet":
        return _logistic(0.5, 0.3, random_state, "saga")
    if name == "svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        return CalibratedClassifierCV(SVC(kernel="rbf", C=1.0, gamma="scale", random_state=random_state),
                                      method="sigmoid", cv=3, ensemble=False)
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=300, random_state=random_state, n_jobs=1)
    if name == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=16, early_stopping=False,
                                              random_state=random_state)
    outcome_of_model(name)  # an unknown name: the error lists both kinds


def make_selector(name: str, random_state=None, feature_names=None, outcome: str = "binary"):
    """The feature selector ``name`` (one of :data:`SELECTIONS`) from :mod:`RadiomicsLabLib.study.selection`;
    for ``outcome="survival"`` one of :data:`SURVIVAL_SELECTIONS`."""
    from . import selection as sel

    if outcome == "survival" and name in SELECTIONS and name not in SURVIVAL_SELECTIONS:
        raise RadiomicsLabError(f"Feature selection '{name}' is for a binary outcome (a classification selector); for "
                                f"a survival outcome choose {', '.join(SURVIVAL_SELECTIONS)} or none.")
    if name == "nzv":
        return sel.NearZeroVariance(feature_names=feature_names)
    if name == "correlation":
        return sel.CorrelationClusters(threshold=0.9, feature_names=feature_names)
    if name == "fdr":
        return sel.UnivariateFDR(alpha=0.05, min_features=1, feature_names=feature_names)
    if name == "mrmr":
        return sel.MRMR(n_features=10, random_state=random_state, feature_names=feature_names)
    if name == "lasso":
        # A fixed C (searched by the nested grid), not PenalizedLogistic's own inner CV: that would be a third level.
        return sel.PenalizedLogistic(l1_ratio=1.0, C=1.0, random_state=random_state, feature_names=feature_names)
    if name == "rfe":
        return sel.RecursiveElimination(n_features=10, random_state=random_state, feature_names=feature_names)
    raise RadiomicsLabError(f"Unknown feature selection '{name}'; choose one of {', '.join(SELECTIONS)}, none, or give "
                            "a scikit-learn selector.")


def _imputer(impute):
    from sklearn.impute import KNNImputer

    if impute is None or impute == "none":
        return None
    if impute in ("median", "mean"):
        return ColumnImputer(strategy=impute)
    if impute == "knn":
        return KNNImputer(n_neighbors=5, keep_empty_features=True)
    if hasattr(impute, "fit") and hasattr(impute, "transform"):
        return impute
    raise RadiomicsLabError(f"Unknown imputation '{impute}'; choose one of {', '.join(IMPUTERS)}, None, or give a "
                            "scikit-learn imputer.")


class ColumnImputer(TransformerMixin, BaseEstimator):
    """Each column's missing values (NaN) filled with its training rows' median (or mean).

    What :class:`~sklearn.impute.SimpleImputer` (``keep_empty_features=True``) computes, faster: the median of
    a column without missing values is :func:`numpy.median` (selection, not the masked-array sort SimpleImputer
    uses, which dominated a nested cross-validation's time: Testing/benchmarks/bench_study.py); a column
    missing in every training row gets 0 and stays a column, so the columns out are always the columns in
    (names and selections stay aligned).
    """

    def __init__(self, strategy: str = "median"):
        self.strategy = strategy

    def fit(self, X, y=None):
        if self.strategy not in ("median", "mean"):
            raise RadiomicsLabError(f"ColumnImputer: strategy '{self.strategy}'; choose 'median' or 'mean'.")
        names = getattr(X, "columns", None)
        if names is not None:
            self.feature_names_in_ = np.asarray([str(c) for c in names], dtype=object)
        X = self._values(X, reset=True)
        if not np.isnan(X).any():
            self.statistics_ = np.median(X, axis=0) if self.strategy == "median" else X.mean(axis=0)
            return self
        with warnings.catch_warnings():  # an all-missing column: NaN, then 0
            warnings.simplefilter("ignore", RuntimeWarning)
            statistics = np.nanmedian(X, axis=0) if self.strategy == "median" else np.nanmean(X, axis=0)
        self.statistics_ = np.where(np.isnan(statistics), 0.0, statistics)
        return self

    def transform(self, X):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "statistics_")
        X = self._values(X, reset=False)
        missing = np.isnan(X)
        return np.where(missing, self.statistics_, X) if missing.any() else X

    def _values(self, X, reset: bool) -> np.ndarray:
        """X as a 2D float array (plain numpy checks: this step runs thousands of times in a nested CV)."""
        try:
            values = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X, dtype=np.float64)
        except (TypeError, ValueError):
            raise RadiomicsLabError("Imputation needs numeric feature values; a feature column holds text.") from None
        if values.ndim != 2:
            raise RadiomicsLabError(f"Imputation needs a table (rows x columns); got shape {values.shape}.")
        if np.isinf(values).any():
            raise RadiomicsLabError("A feature value is infinite; give finite numbers (missing values as empty cells).")
        if reset:
            self.n_features_in_ = values.shape[1]
        elif values.shape[1] != self.n_features_in_:
            raise RadiomicsLabError(f"Imputation was fitted on {self.n_features_in_} columns; got {values.shape[1]}.")
        return values

    def get_feature_names_out(self, input_features=None):
        from sklearn.utils.validation import _check_feature_names_in

        return _check_feature_names_in(self, input_features)


class ImputeBesideBatch(TransformerMixin, BaseEstimator):
    """``[batch column | the next n_protected columns imputed | the other columns imputed]``: the batch label
    passed through untouched (text kept) and the covariates and features imputed each by their own clone of
    ``imputer`` (None: passed through). The input must hold the batch column first, then the protected
    covariates, then the features (what :func:`build_pipeline`'s column picking gives); the output is in the
    same order, as ComBat(batch=0, covariates=[1..n_protected]) expects. Same result as a ColumnTransformer of
    three parts, without its per-call overhead (Testing/benchmarks/bench_study.py)."""

    def __init__(self, imputer=None, n_protected: int = 0):
        self.imputer = imputer
        self.n_protected = n_protected

    def _parts(self, X):
        values = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
        if values.ndim != 2 or values.shape[1] < 2 + self.n_protected:
            raise RadiomicsLabError(f"The harmonisation input needs the batch column, {self.n_protected} covariate "
                                    f"column(s) and features; got shape {values.shape}.")
        k = 1 + self.n_protected
        return values[:, :1], values[:, 1:k].astype(np.float64), values[:, k:].astype(np.float64)

    def fit(self, X, y=None):
        from sklearn.base import clone

        batch, covariates, features = self._parts(X)
        self.n_features_in_ = 1 + covariates.shape[1] + features.shape[1]
        fit = (lambda part: clone(self.imputer).fit(part)) if self.imputer is not None else (lambda part: None)
        self.covariate_imputer_ = fit(covariates) if covariates.shape[1] else None
        self.feature_imputer_ = fit(features)
        return self

    def transform(self, X):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_in_")
        batch, covariates, features = self._parts(X)
        if self.covariate_imputer_ is not None:
            covariates = self.covariate_imputer_.transform(covariates)
        if self.feature_imputer_ is not None:
            features = self.feature_imputer_.transform(features)
        if batch.dtype == object:
            return np.hstack([batch, covariates.astype(object), features.astype(object)])
        return np.hstack([batch.astype(np.float64), covariates, features])


class ColumnPicker:
    """Columns of ``X`` for a :class:`~sklearn.compose.ColumnTransformer`, resolved when the pipeline is fitted.

    Returns positions: those of ``first`` (in that order), then, when ``rest`` is true, every other column
    not in ``exclude`` (in input order). Columns are positions (negative counts from the end) or, for a data
    frame, names. A plain class (not a lambda) so that a fitted pipeline pickles (joblib, worker processes).
    """

    def __init__(self, first=(), exclude=(), rest: bool = False):
        self.first = list(first)
        self.exclude = list(exclude)
        self.rest = rest

    def __call__(self, X):
        n = X.shape[1]
        names = getattr(X, "columns", None)
        names = [str(c) for c in names] if names is not None else None

        def position(column):
            return column_position(column, names, n)

        first = [position(c) for c in self.first]
        if not self.rest:
            return first
        skip = set(first) | {position(c) for c in self.exclude}
        others = [j for j in range(n) if j not in skip]
        if not others:
            raise RadiomicsLabError("X has no radiomic feature columns besides the batch and covariate columns.")
        return first + others

    def __repr__(self):
        return f"ColumnPicker(first={self.first!r}, exclude={self.exclude!r}, rest={self.rest!r})"


def _selection_steps(selection, random_state, feature_names, outcome="binary") -> list:
    if selection is None or selection == "none":
        return []
    items = [selection] if isinstance(selection, str) or hasattr(selection, "fit") else list(selection)
    steps, used = [], set()
    for k, item in enumerate(items):
        if isinstance(item, str):
            step = make_selector(item, random_state, feature_names if k == 0 else None, outcome)
            name = f"select_{item}"
        elif hasattr(item, "fit") and hasattr(item, "get_support"):
            from sklearn.base import clone

            step, name = clone(item), f"select_{type(item).__name__.lower()}"
        else:
            raise RadiomicsLabError(f"Feature selection {item!r} is neither one of {', '.join(SELECTIONS)} nor a "
                                    "scikit-learn selector (fit / transform / get_support).")
        if name in used:
            name = f"{name}_{k}"
        used.add(name)
        steps.append((name, step))
    return steps


def build_pipeline(model="logistic_l2", *, selection=None, batch=None, covariates=(), impute="median", kind=None,
                   combat=None, random_state=None, feature_names=None, protect_covariates=None):
    """One :class:`~sklearn.pipeline.Pipeline` from imputation to the model (see the module docstring).

    ``model``: a name of :data:`MODELS` or :data:`SURVIVAL_MODELS`, a classifier with ``predict_proba`` or a
    scikit-survival estimator (``predict_survival_function``); the outcome kind follows from it, and a survival
    model refuses the classification selections (``mrmr``, ``lasso``, ``rfe``). ``selection``: None, a name of
    :data:`SELECTIONS`, a selector instance, or a list of them applied in order. ``batch``: the batch (scanner,
    site) column for ComBat, or None (no harmonisation). ``covariates``: clinical covariate columns (numeric).
    ``impute``: see :data:`IMPUTERS`. ``kind``: ``"radiomics"`` (the radiomic features only; covariate columns,
    if any, are ignored), ``"clinical"`` (the covariates only) or ``"combined"`` (both; the default when
    covariates are given). ``combat``: the :class:`~RadiomicsLabLib.study.harmonisation.ComBat` to use (its
    ``batch`` is set to where this pipeline puts the batch column; default ``ComBat()``, parametric empirical
    Bayes, nothing protected: never protect the outcome). ``feature_names``: the radiomic features' names,
    given to the first selector (the reproducibility filter looks ICCs up by name). ``protect_covariates``
    (default: True when ``batch`` and ``covariates`` are both given): the radiomics branch receives [batch |
    covariates | features] and ComBat protects the covariates (``ComBat(batch=0, covariates=[1..k])``: their
    linear effects on the features are estimated with the batch effects and kept, Johnson et al. 2007), so
    harmonisation does not remove the part of a feature explained by e.g. age or tumour size when those differ
    between sites. ComBat's output is the features only: in the combined model the covariates enter as
    predictors through the clinical branch; the radiomics-only model does not use them as predictors, but its
    ComBat still uses them (so it needs them for new rows). False: ComBat sees [batch | features] only.

    Steps, and why each is inside the pipeline (so it is fitted on each fold's training rows only):

    - ``impute``: the median (mean, k nearest neighbours) of the training rows fills missing values; taken
      from all rows it would carry the test rows' values into training.
    - ``combat``: ComBat's batch means and variances and their empirical Bayes priors, estimated on the
      training rows and applied frozen to the test rows (:mod:`RadiomicsLabLib.study.harmonisation`); a
      batch unseen in training is refused. It consumes the batch column.
    - ``select_<name>``: which features to keep is learned from the training rows' values (and outcome);
      selecting on all rows is the classic leak that makes noise look predictive. Before scaling: the
      selectors are scale-free, and :class:`~RadiomicsLabLib.study.selection.CorrelationClusters` keeps the
      most variable feature of a cluster, which needs the values as they are.
    - ``scale``: z-score with the training rows' mean and SD (the penalised and kernel models need comparable
      scales; harmless for the trees).
    - ``model``: fitted on the training rows; its hyper-parameters are searched by an inner cross-validation.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    covariates = [covariates] if isinstance(covariates, (str, numbers.Integral)) else list(covariates or ())
    kind = kind or ("combined" if covariates else "radiomics")
    if kind not in KINDS:
        raise RadiomicsLabError(f"Unknown model kind '{kind}'; choose radiomics, clinical or combined.")
    if kind in ("clinical", "combined") and not covariates:
        raise RadiomicsLabError(f"A {kind} model needs the clinical covariate columns (covariates=...).")
    if batch is not None and batch in covariates:
        raise RadiomicsLabError(f"The batch column {batch!r} is also given as a covariate; give it once.")
    protect = bool(batch is not None and covariates) if protect_covariates is None else bool(protect_covariates)
    if protect and (batch is None or not covariates):
        raise RadiomicsLabError("protect_covariates needs both a batch column (for ComBat) and covariates.")
    if isinstance(model, str):
        estimator = make_model(model, random_state)
        outcome = outcome_of_model(model)
    elif hasattr(model, "fit") and (hasattr(model, "predict_proba") or hasattr(model, "predict_survival_function")):
        from sklearn.base import clone

        estimator = clone(model)
        outcome = estimator_outcome(estimator)
    else:
        raise RadiomicsLabError(f"Model {model!r} is neither one of {', '.join(MODELS + SURVIVAL_MODELS)} nor a "
                                "classifier with predict_proba or a survival model with predict_survival_function.")

    def radiomics_steps(batch_column, protected):
        """The radiomic chain without the model; ``batch_column``: where the batch is in its input (or None);
        ``protected``: where the covariates ComBat protects are (they follow the batch)."""
        steps = []
        if batch_column is not None:
            from .harmonisation import ComBat
            from sklearn.base import clone

            # Batch first (passed through untouched), then the imputed protected covariates, then the imputed
            # features: ComBat(batch=0, covariates=[1..k]) finds them there.
            if batch_column == 0 and protected == list(range(1, 1 + len(protected))):
                steps.append(("impute", ImputeBesideBatch(_imputer(impute), len(protected))))
            else:  # the batch elsewhere: pick the columns
                parts = [("batch", "passthrough", ColumnPicker([batch_column]))]
                if protected:
                    parts.append(("covariates", _imputer(impute) or "passthrough", ColumnPicker(protected)))
                parts.append(("features", _imputer(impute) or "passthrough",
                              ColumnPicker(exclude=[batch_column, *protected], rest=True)))
                steps.append(("impute", ColumnTransformer(parts, verbose_feature_names_out=False)))
            harmoniser = clone(combat) if combat is not None else ComBat()
            steps.append(("combat", harmoniser.set_params(batch=0, covariates=list(range(1, 1 + len(protected))))))
        elif _imputer(impute) is not None:
            steps.append(("impute", _imputer(impute)))
        steps += _selection_steps(selection, random_state, feature_names, outcome)
        steps.append(("scale", StandardScaler()))
        return steps

    if kind == "radiomics" and not covariates:
        return Pipeline(radiomics_steps(batch, []) + [("model", estimator)])

    clinical_imputer = _imputer(impute)
    clinical = Pipeline(([("impute", clinical_imputer)] if clinical_imputer is not None else [])
                        + [("scale", StandardScaler())])
    branches = []
    if kind in ("radiomics", "combined"):
        # The radiomics branch gets the batch column first, then (protected) the covariates, then the features.
        first = ([batch] + (covariates if protect else [])) if batch is not None else []
        protected = list(range(1, 1 + len(covariates))) if protect else []
        branches.append(("radiomics", Pipeline(radiomics_steps(0 if batch is not None else None, protected)),
                         ColumnPicker(first, exclude=covariates, rest=True)))
    if kind in ("clinical", "combined"):
        branches.append(("clinical", clinical, ColumnPicker(covariates)))
    return Pipeline([("columns", ColumnTransformer(branches, verbose_feature_names_out=False)), ("model", estimator)])


# Where the steps are --------------------------------------------------------------------------------
def radiomics_chain(pipeline):
    """(prefix, steps) of the radiomic chain of a pipeline built by :func:`build_pipeline`: ``prefix`` is what
    its parameters start with (``""`` or ``"columns__radiomics__"``), ``steps`` its (name, step) list (fitted
    steps when the pipeline is fitted). (None, []) for a clinical-only pipeline."""
    steps = getattr(pipeline, "steps", None)
    if steps is None:
        return None, []
    if steps[0][0] == "columns":
        ct = steps[0][1]
        fitted = getattr(ct, "named_transformers_", None)
        if fitted is not None:
            branch = fitted.get("radiomics") if "radiomics" in fitted else None
        else:
            branch = next((t for name, t, _ in ct.transformers if name == "radiomics"), None)
        if branch is None:
            return None, []
        return "columns__radiomics__", list(branch.steps)
    return "", list(steps[:-1])


def _model_grid(estimator) -> dict:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if isinstance(estimator, LogisticRegression):
        penalty = getattr(estimator, "penalty", "deprecated")
        ratio = estimator.l1_ratio
        if penalty == "l1" or (penalty in ("deprecated", "elasticnet") and ratio == 1):
            return MODEL_GRIDS["logistic_l1"]
        if penalty == "l2" or (penalty == "deprecated" and not ratio):
            return MODEL_GRIDS["logistic_l2"]
        return MODEL_GRIDS["logistic_elasticnet"]
    if isinstance(estimator, CalibratedClassifierCV) and type(estimator.estimator).__name__ == "SVC":
        return MODEL_GRIDS["svm"]
    if isinstance(estimator, RandomForestClassifier):
        return MODEL_GRIDS["random_forest"]
    if isinstance(estimator, HistGradientBoostingClassifier):
        return MODEL_GRIDS["gradient_boosting"]
    kind = type(estimator).__name__
    if kind == "CoxnetSurvivalAnalysis":
        ratio = float(estimator.l1_ratio)
        return MODEL_GRIDS["cox_lasso" if ratio == 1 else "cox_ridge" if ratio <= RIDGE_L1_RATIO else "cox_elasticnet"]
    if kind == "RandomSurvivalForest":
        return MODEL_GRIDS["random_survival_forest"]
    return {}


def _selector_grid(step) -> dict:
    from . import selection as sel

    kinds = {sel.NearZeroVariance: "nzv", sel.CorrelationClusters: "correlation", sel.UnivariateFDR: "fdr",
             sel.MRMR: "mrmr", sel.PenalizedLogistic: "lasso", sel.RecursiveElimination: "rfe"}
    for cls, name in kinds.items():
        if type(step) is cls:
            if cls is sel.PenalizedLogistic and step.C is None:
                return {}  # it searches C itself
            return SELECTION_GRIDS[name]
    return {}


def default_grid(pipeline) -> dict:
    """The default hyper-parameter grid of a pipeline built by :func:`build_pipeline` (a ``param_grid`` for
    :class:`~sklearn.model_selection.GridSearchCV`): the model's grid (:data:`MODEL_GRIDS`) and each
    selection step's (:data:`SELECTION_GRIDS`), under their step names. Estimators it does not know
    contribute nothing (give your own grid)."""
    grid = {f"model__{key}": list(values) for key, values in _model_grid(pipeline.steps[-1][1]).items()}
    prefix, steps = radiomics_chain(pipeline)
    for name, step in steps:
        if name.startswith("select"):
            grid.update({f"{prefix}{name}__{key}": list(values) for key, values in _selector_grid(step).items()})
    return grid


def grid_size(grid) -> int:
    """How many candidate settings a ``param_grid`` (a dict, or a list of dicts) holds."""
    grids = [grid] if isinstance(grid, dict) else list(grid)
    return sum(int(np.prod([len(v) for v in g.values()])) if g else 1 for g in grids)


def selected_features(fitted, feature_names) -> np.ndarray | None:
    """Which radiomic features a fitted pipeline's selection kept: a boolean mask over ``feature_names``
    (the radiomic feature columns in input order, batch and covariates excluded); None when the pipeline has
    no selection step (every feature is used) or no radiomic branch."""
    _, steps = radiomics_chain(fitted)
    if not any(name.startswith("select") for name, _ in steps):
        return None
    names = np.asarray(list(feature_names), dtype=object)
    support = np.ones(len(names), bool)
    for name, step in steps:
        if not name.startswith("select"):
            continue
        mask = np.asarray(step.get_support(), bool)
        if mask.size != support.sum():
            raise RadiomicsLabError(f"Step '{name}' was fitted on {mask.size} features but the steps before it give "
                                    f"{int(support.sum())}; feature_names must be the radiomic feature columns.")
        support[np.flatnonzero(support)] = mask
    return support


def model_weights(fitted, feature_names, covariate_names=None) -> dict | None:
    """The final model's weights: ``{"kind", "names", "values"}``, or None when it has none.

    ``kind="coefficient"``: the linear models' coefficients (logistic regression: log-odds per SD of the
    z-scored input; Cox: log hazard ratio per SD; for Coxnet those of the alpha its ``predict`` uses);
    ``kind="importance"``: a random forest's ``feature_importances_`` (mean decrease in impurity). ``names``
    follow the model's input columns: the radiomic features the selection kept (``feature_names``: the
    radiomic feature columns in input order, as for :func:`selected_features`), then, in the combined or
    clinical layout, the covariates (``covariate_names``; default: the names the pipeline was fitted with,
    else ``covariate 1 ...``). None for models with neither (the SVM, gradient boosting, the random survival
    forest: scikit-survival does not define impurity importances for it; use permutation importance).
    """
    model = fitted.steps[-1][1]
    values = getattr(model, "coef_", None)
    kind = "coefficient"
    if values is None:
        try:
            values = getattr(model, "feature_importances_", None)
        except (NotImplementedError, ValueError):
            values = None
        kind = "importance"
    if values is None:
        return None
    values = np.asarray(values, dtype=float)
    if type(model).__name__ == "CoxnetSurvivalAnalysis":
        values = values[:, -1]  # features x alphas: the last alpha is the one predict uses
    values = values.ravel()
    names = []
    prefix, steps = radiomics_chain(fitted)
    if steps:
        mask = selected_features(fitted, feature_names)
        names += [str(n) for n, keep in zip(feature_names, mask if mask is not None else [True] * len(feature_names))
                  if keep]
    if fitted.steps[0][0] == "columns":
        ct = fitted.steps[0][1]
        clinical = [cols for name, _, cols in ct.transformers_ if name == "clinical"]
        if clinical:
            n_covariates = len(clinical[0])
            if covariate_names is None:
                given = getattr(ct, "feature_names_in_", None)
                covariate_names = ([str(given[j]) for j in clinical[0]] if given is not None
                                   else [f"covariate {k + 1}" for k in range(n_covariates)])
            names += [str(n) for n in covariate_names]
    if len(names) != values.size:
        raise RadiomicsLabError(f"The model has {values.size} weights but {len(names)} names; feature_names must be "
                                "the radiomic feature columns and covariate_names the covariates, in input order.")
    return {"kind": kind, "names": names, "values": values.tolist()}


# Saving ---------------------------------------------------------------------------------------------
def save_model(model, path, metadata: dict | None = None) -> Path:
    """Write a fitted pipeline with ``metadata`` and the software versions to ``path`` (joblib), atomically.

    Load it with :func:`load_model` in the same versions of Python, scikit-learn and RadiomicsLab (a pickle
    is not portable across versions, and loading one runs code: load only files you trust)."""
    import joblib

    from ..fileio import atomic_output
    from ..provenance import software_versions

    path = Path(path)
    with atomic_output(path) as tmp:
        joblib.dump({"model": model, "metadata": dict(metadata or {}), "versions": software_versions()}, tmp)
    return path


def load_model(path) -> dict:
    """``{"model", "metadata", "versions"}`` of a file written by :func:`save_model`."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise RadiomicsLabError(f"No model file '{path}'; give a file written by save_model.")
    try:
        saved = joblib.load(path)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means not our file
        raise RadiomicsLabError(f"Cannot read the model file '{path}' ({type(error).__name__}: {error}).") from None
    if not isinstance(saved, dict) or "model" not in saved:
        raise RadiomicsLabError(f"'{path}' is not a model file written by save_model.")
    return saved
