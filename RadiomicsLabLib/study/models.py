"""Binary-outcome models of a radiomics study, each one scikit-learn :class:`~sklearn.pipeline.Pipeline`.

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
Benjamini-Hochberg FDR 0.05), ``mrmr`` (grid n_features 5, 10), ``lasso`` (non-zero L1 logistic
coefficients; grid C 0.1, 1), ``rfe`` (recursive elimination; grid n_features 5, 10); or any
scikit-learn selector instance (with a ``get_support``), or a list of these applied in order.

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
from pathlib import Path

import numpy as np

from ..errors import RadiomicsLabError
from .harmonisation import column_position

#: The binary-outcome models :func:`make_model` builds.
MODELS = ("logistic_l1", "logistic_l2", "logistic_elasticnet", "svm", "random_forest", "gradient_boosting")
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


def make_model(name: str, random_state=None):
    """The estimator of model ``name`` (one of :data:`MODELS`) with its default settings.

    ``random_state`` seeds whatever is random in it (SAGA's sample order, the forest's bootstrap and
    feature draws, the boosting's binning subsample): an int makes it reproducible.
    """
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
    raise RadiomicsLabError(f"Unknown model '{name}'; choose one of {', '.join(MODELS)}.")


def make_selector(name: str, random_state=None, feature_names=None):
    """The feature selector ``name`` (one of :data:`SELECTIONS`) from :mod:`RadiomicsLabLib.study.selection`."""
    from . import selection as sel

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
    from sklearn.impute import KNNImputer, SimpleImputer

    if impute is None or impute == "none":
        return None
    if impute in ("median", "mean"):
        # keep_empty_features: a feature missing in every training row stays a column (of 0), so the columns
        # after imputation are always the input features, in order (names and selections stay aligned).
        return SimpleImputer(strategy=impute, keep_empty_features=True)
    if impute == "knn":
        return KNNImputer(n_neighbors=5, keep_empty_features=True)
    if hasattr(impute, "fit") and hasattr(impute, "transform"):
        return impute
    raise RadiomicsLabError(f"Unknown imputation '{impute}'; choose one of {', '.join(IMPUTERS)}, None, or give a "
                            "scikit-learn imputer.")


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


def _selection_steps(selection, random_state, feature_names) -> list:
    if selection is None or selection == "none":
        return []
    items = [selection] if isinstance(selection, str) or hasattr(selection, "fit") else list(selection)
    steps, used = [], set()
    for k, item in enumerate(items):
        if isinstance(item, str):
            step = make_selector(item, random_state, feature_names if k == 0 else None)
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
                   combat=None, random_state=None, feature_names=None):
    """One :class:`~sklearn.pipeline.Pipeline` from imputation to the model (see the module docstring).

    ``model``: a name of :data:`MODELS` or a classifier with ``predict_proba``. ``selection``: None, a name of
    :data:`SELECTIONS`, a selector instance, or a list of them applied in order. ``batch``: the batch (scanner,
    site) column for ComBat, or None (no harmonisation). ``covariates``: clinical covariate columns (numeric).
    ``impute``: see :data:`IMPUTERS`. ``kind``: ``"radiomics"`` (the radiomic features only; covariate columns,
    if any, are ignored), ``"clinical"`` (the covariates only) or ``"combined"`` (both; the default when
    covariates are given). ``combat``: the :class:`~RadiomicsLabLib.study.harmonisation.ComBat` to use (its
    ``batch`` is set to where this pipeline puts the batch column; default ``ComBat()``, parametric empirical
    Bayes, nothing protected: never protect the outcome). ``feature_names``: the radiomic features' names,
    given to the first selector (the reproducibility filter looks ICCs up by name).

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
    if isinstance(model, str):
        estimator = make_model(model, random_state)
    elif hasattr(model, "fit") and hasattr(model, "predict_proba"):
        from sklearn.base import clone

        estimator = clone(model)
    else:
        raise RadiomicsLabError(f"Model {model!r} is neither one of {', '.join(MODELS)} nor a classifier with "
                                "predict_proba.")

    def radiomics_steps(batch_column, exclude):
        """The radiomic chain without the model; ``batch_column``: where the batch is in its input (or None)."""
        steps = []
        imputer = _imputer(impute)
        if batch_column is not None:
            from .harmonisation import ComBat
            from sklearn.base import clone

            # Batch first (passed through untouched), then the imputed features: ComBat(batch=0) finds it there.
            steps.append(("impute", ColumnTransformer(
                [("batch", "passthrough", ColumnPicker([batch_column])),
                 ("features", imputer if imputer is not None else "passthrough",
                  ColumnPicker(exclude=[batch_column, *exclude], rest=True))],
                verbose_feature_names_out=False)))
            harmoniser = clone(combat) if combat is not None else ComBat()
            steps.append(("combat", harmoniser.set_params(batch=0)))
        elif imputer is not None:
            steps.append(("impute", imputer))
        steps += _selection_steps(selection, random_state, feature_names)
        steps.append(("scale", StandardScaler()))
        return steps

    if kind == "radiomics" and not covariates:
        return Pipeline(radiomics_steps(batch, ()) + [("model", estimator)])

    clinical_imputer = _imputer(impute)
    clinical = Pipeline(([("impute", clinical_imputer)] if clinical_imputer is not None else [])
                        + [("scale", StandardScaler())])
    branches = []
    if kind in ("radiomics", "combined"):
        # The radiomics branch gets the batch column first, then the features (covariates left out).
        first = [batch] if batch is not None else []
        branches.append(("radiomics", Pipeline(radiomics_steps(0 if batch is not None else None, ())),
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
