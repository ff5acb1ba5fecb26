"""Nested cross-validation of binary-outcome and survival radiomics models, without leakage.

A survival outcome (scikit-survival's structured array, fields ``event`` and ``time``) runs the same
procedure with the survival models of :mod:`RadiomicsLabLib.study.models`: outer folds stratified by the
event indicator, inner search and per-repeat score by Harrell's C (Harrell et al. 1996, Stat Med 15:361),
OOF risk scores and survival curves, the permutation test permuting (time, event) pairs (see :func:`nested_cv`).

:func:`nested_cv` estimates how well a modelling *procedure* (imputation, harmonisation, feature
selection, hyper-parameter search and model, all inside one :class:`~sklearn.pipeline.Pipeline` of
:func:`RadiomicsLabLib.study.models.build_pipeline`) predicts patients it has never seen:

- **Outer loop**: repeated stratified k-fold (default ``repeats=10`` x ``outer=5``). Each repeat
  shuffles the training patients into ``outer`` folds with its own recorded seed, stratified by
  the outcome (and by outcome x batch when a batch column is given and every such group has at
  least ``outer`` patients, so every batch is in every training fold for ComBat). Each fold is
  predicted once by a model that never saw it: the out-of-fold (OOF) predictions of a repeat
  cover every training patient once, and the repeat's AUC is computed on them all.
- **Inner loop**: within each outer training set, a stratified ``inner``-fold (default 5)
  :class:`~sklearn.model_selection.GridSearchCV` over the selection and model hyper-parameters
  (scoring: ROC AUC; ties go to the first setting of the grid), then the best setting is refitted
  on the whole outer training set and predicts the outer test fold. The test fold takes no part
  in imputation, ComBat, selection, scaling, the search or the fit: nothing leaks.
- **Final model**: the same search on *all* training rows (its own recorded inner seed) gives the
  model returned for saving (:meth:`NestedCVResult.save_model`, joblib).
- **External test set** (``split``: True for training rows): never used by the cross-validation;
  predicted once, by the final model, and its AUC reported with DeLong's 95 % CI.
- **Permutation test** (``permutations`` = n > 0): the outcome of the training rows is permuted
  (fixed seed) and the *whole* nested procedure rerun n times; the statistic is the mean over
  repeats of the per-repeat OOF AUC, and p = (1 + #{permuted >= observed}) / (1 + n) (Phipson &
  Smyth 2010, Stat Appl Genet Mol Biol 9:39; Ojala & Garriga 2010, J Mach Learn Res 11:1833).
  It costs n times the nested run.

Seeds: one ``seed`` (default 0; None draws one and records it) feeds a
:class:`numpy.random.SeedSequence` whose children give the outer folds of each repeat, the inner
folds of each (repeat, fold), the final model's inner folds, the models' ``random_state`` and the
permutations; all are recorded in :attr:`NestedCVResult.seeds`. The same seed gives the same
predictions, whatever ``n_jobs`` or scheduler: each (model, repeat, fold) is a task that depends on
its seeds only, run single-threaded (BLAS/OpenMP limited to 1 thread: the parallelism is the tasks').

Parallelism: ``n_jobs`` joblib worker processes (default: every core this process may use), or an
existing Dask cluster (``scheduler="tcp://host:8786"``, connected and checked as
:func:`RadiomicsLabLib.batch.dask_client` does for batch runs, then used through joblib's ``dask``
backend). ``progress(done, total, message)`` is called after each task; returning False cancels
(:class:`ValidationCancelled`) and nothing is returned.

References: Varma & Simon 2006 (BMC Bioinformatics 7:91) for the bias of tuning outside the loop;
Krstajic et al. 2014 (J Cheminform 6:10) for repeated nested cross-validation; Ambroise & McLachlan
2002 (PNAS 99:6562) for selection bias; DeLong et al. 1988 (Biometrics 44:837) for the AUC CI.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import Cancelled, RadiomicsLabError
from ..provenance import json_ready
from .models import build_pipeline, default_grid, grid_size, selected_features

DEFAULT_REPEATS, DEFAULT_OUTER, DEFAULT_INNER = 10, 5, 5
#: Columns of :meth:`NestedCVResult.prediction_rows` (``outcome``: the 0/1 outcome the model was scored on).
#: Columns of :meth:`NestedCVResult.prediction_rows` of a binary outcome (``outcome``: the 0/1 outcome the model
#: was scored on); :func:`prediction_columns` gives those of either kind.
PREDICTION_COLUMNS = ("id", "repeat", "fold", "model", "prediction", "outcome")
#: Columns of :meth:`NestedCVResult.prediction_rows` of a survival outcome (``prediction``: the risk score).
SURVIVAL_PREDICTION_COLUMNS = ("id", "repeat", "fold", "model", "prediction", "time", "event")
#: The survival-time grid of :attr:`NestedCVResult.survival_times`: these percentiles of the training rows'
#: event times (then those past any outer training set's last event time dropped).
SURVIVAL_TIME_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80)


def prediction_columns(outcome_kind: str) -> tuple:
    """The columns of :meth:`NestedCVResult.prediction_rows` for ``"binary"`` or ``"survival"``."""
    return SURVIVAL_PREDICTION_COLUMNS if outcome_kind == "survival" else PREDICTION_COLUMNS


class ValidationCancelled(Cancelled):
    """The nested cross-validation was cancelled (its progress callback returned False); nothing was returned."""


# Result ---------------------------------------------------------------------------------------------
@dataclass
class NestedCVResult:
    """What :func:`nested_cv` found. Rows are the training rows (``ids``, ``y``) unless said otherwise.

    ``outcome_kind``: ``"binary"`` or ``"survival"``; ``score_name``: the per-repeat score, ``"auc"`` (ROC AUC)
    or ``"c_index_harrell"`` (Harrell's C). ``y``: the 0/1 outcome, or for survival the structured array
    (``event``, ``time``) whose fields are also ``event`` and ``time`` (None for binary). ``oof``: model ->
    (repeats x training rows) out-of-fold predictions: probabilities of the positive class, or risk scores
    (higher = higher risk; the models' ``predict``); ``folds``: (repeats x training rows) the outer fold
    (0-based) that predicted each row; ``scores_by_repeat``: model -> per-repeat score of its OOF predictions
    (``auc_by_repeat`` for binary); ``best_params``: one row per (model, repeat, fold) with the setting the inner
    search chose and its inner score (``inner_score``; ``inner_auc`` too for binary); ``supports``: model ->
    (repeats*outer x radiomic features) the features each outer fold's model kept (None when the pipeline
    selects nothing); ``training_cutoffs``: model -> (repeats x outer) the cut-off each outer fold's model
    learned on its own training rows (binary: Youden's threshold of its predicted probabilities,
    :func:`~RadiomicsLabLib.study.metrics.choose_threshold`; survival: the median of its predicted risks;
    NaN when undefined); ``final_cutoffs``: model -> the same rule on all training rows, for the final model;
    ``survival_times`` and ``oof_survival`` (survival): model -> (repeats x rows x times) each row's OOF
    predicted survival probability at ``survival_times`` (see :func:`nested_cv`); ``final_models``: model ->
    the pipeline refitted on all training rows; ``final_params``; ``external``: model -> the predictions of
    the test rows (``external_ids``, ``external_y``, and ``external_time`` / ``external_event``),
    ``external_scores``: model -> :class:`~RadiomicsLabLib.study.metrics.AUCResult` (binary) or
    :class:`~RadiomicsLabLib.study.metrics.CIndexResult` (Harrell's C); ``permutation``: model ->
    ``{"observed", "null", "p_value", "n"}``; ``fitted``: (model, repeat, fold) -> the fold's fitted pipeline
    (``keep_fitted``); ``covariate_names``; ``seeds``, ``settings``, ``notes``, ``seconds``.
    """

    models: list
    ids: list
    y: np.ndarray
    classes: tuple
    feature_names: list
    folds: np.ndarray
    oof: dict
    scores_by_repeat: dict
    best_params: list
    supports: dict
    final_models: dict
    final_params: dict
    seeds: dict
    settings: dict
    outcome_kind: str = "binary"
    score_name: str = "auc"
    training_cutoffs: dict = field(default_factory=dict)
    final_cutoffs: dict = field(default_factory=dict)
    survival_times: np.ndarray | None = None
    oof_survival: dict = field(default_factory=dict)
    covariate_names: list = field(default_factory=list)
    external: dict = field(default_factory=dict)
    external_ids: list = field(default_factory=list)
    external_y: np.ndarray | None = None
    external_scores: dict = field(default_factory=dict)
    permutation: dict = field(default_factory=dict)
    fitted: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def repeats(self) -> int:
        return self.folds.shape[0]

    @property
    def time(self) -> np.ndarray | None:
        """The training rows' survival times (None for a binary outcome)."""
        return None if self.outcome_kind == "binary" else np.asarray(self.y["time"], dtype=float)

    @property
    def event(self) -> np.ndarray | None:
        """The training rows' event indicators (None for a binary outcome)."""
        return None if self.outcome_kind == "binary" else np.asarray(self.y["event"], dtype=bool)

    @property
    def external_time(self) -> np.ndarray | None:
        return None if self.outcome_kind == "binary" or self.external_y is None else self.external_y["time"]

    @property
    def external_event(self) -> np.ndarray | None:
        return None if self.outcome_kind == "binary" or self.external_y is None else self.external_y["event"]

    @property
    def auc_by_repeat(self) -> dict:
        """model -> per-repeat OOF AUC (binary outcome; :attr:`scores_by_repeat`)."""
        self._binary_only("auc_by_repeat")
        return self.scores_by_repeat

    @property
    def external_auc(self) -> dict:
        """model -> the test rows' :class:`~RadiomicsLabLib.study.metrics.AUCResult` (binary outcome)."""
        self._binary_only("external_auc")
        return self.external_scores

    def score(self, model: str) -> float:
        """The nested cross-validated score of ``model`` (:attr:`score_name`): the mean over repeats of the
        per-repeat OOF AUC (binary) or Harrell's C (survival)."""
        return float(np.mean(self._known(model, self.scores_by_repeat)))

    def auc(self, model: str) -> float:
        """The nested cross-validated AUC of ``model`` (binary outcome): :meth:`score`."""
        self._binary_only("auc")
        return self.score(model)

    def mean_prediction(self, model: str) -> np.ndarray:
        """Each training row's OOF prediction averaged over the repeats (still out-of-fold in every repeat)."""
        return self._known(model, self.oof).mean(axis=0)

    def auc_ci(self, model: str, confidence: float = 0.95):
        """DeLong's AUC and CI (:func:`~RadiomicsLabLib.study.metrics.auc_delong`) of :meth:`mean_prediction`."""
        from .metrics import auc_delong

        self._binary_only("auc_ci")
        return auc_delong(self.y, self.mean_prediction(model), confidence)

    def summary(self) -> list:
        """One row per model. Binary: ``auc_mean``, ``auc_sd``, ``auc_min``, ``auc_max`` (over repeats),
        ``auc_pooled``, ``ci_low``, ``ci_high`` (DeLong 95 % CI of the repeat-averaged OOF prediction),
        ``p_permutation``, ``n_permutations``, ``external_auc``, ``external_ci_low``, ``external_ci_high``.
        Survival: the same with ``c_index`` for ``auc`` (``c_index_pooled``: Harrell's C of the repeat-averaged
        risk; no CI here: ``ci_low``/``ci_high`` NaN, see :func:`RadiomicsLabLib.study.run.study_metrics` for
        bootstrap CIs). NaN when not run."""
        from .metrics import harrell_c_index

        name = "auc" if self.outcome_kind == "binary" else "c_index"
        rows = []
        for model in self.models:
            scores = self.scores_by_repeat[model]
            if self.outcome_kind == "binary":
                pooled = self.auc_ci(model)
                pooled = (pooled.auc, pooled.ci_low, pooled.ci_high)
            else:
                pooled = (harrell_c_index(self.time, self.event, self.mean_prediction(model)).estimate, math.nan,
                          math.nan)
            perm = self.permutation.get(model, {})
            ext = self.external_scores.get(model)
            ext = (ext.auc, ext.ci_low, ext.ci_high) if hasattr(ext, "auc") else (
                (ext.estimate, math.nan, math.nan) if ext is not None else (math.nan,) * 3)
            rows.append({"model": model, f"{name}_mean": float(np.mean(scores)),
                         f"{name}_sd": float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan,
                         f"{name}_min": float(np.min(scores)), f"{name}_max": float(np.max(scores)),
                         f"{name}_pooled": pooled[0], "ci_low": pooled[1], "ci_high": pooled[2],
                         "p_permutation": perm.get("p_value", math.nan), "n_permutations": perm.get("n", 0),
                         f"external_{name}": ext[0], "external_ci_low": ext[1], "external_ci_high": ext[2]})
        return rows

    def _outcome_cells(self, y, i) -> dict:
        if self.outcome_kind == "binary":
            return {"outcome": int(y[i])}
        return {"time": float(y["time"][i]), "event": int(y["event"][i])}

    def prediction_rows(self, model: str | None = None) -> list:
        """The OOF predictions as rows (:func:`prediction_columns`): ``{id, repeat, fold, model, prediction,
        outcome}`` (binary) or ``{id, repeat, fold, model, prediction, time, event}`` (survival; prediction: the
        risk score), by model, repeat, fold, then row order."""
        rows = []
        for name in [model] if model is not None else self.models:
            predictions = self._known(name, self.oof)
            for r in range(self.repeats):
                for f in range(int(self.folds[r].max()) + 1):
                    for i in np.flatnonzero(self.folds[r] == f):
                        rows.append({"id": self.ids[i], "repeat": r, "fold": f, "model": name,
                                     "prediction": float(predictions[r, i]), **self._outcome_cells(self.y, i)})
        return rows

    def external_rows(self) -> list:
        """The test rows' predictions ``{id, model, prediction, outcome}`` (binary) or ``{id, model, prediction,
        time, event}`` (survival); empty without a split."""
        return [{"id": self.external_ids[i], "model": model, "prediction": float(p[i]),
                 **self._outcome_cells(self.external_y, i)}
                for model, p in self.external.items() for i in range(len(p))]

    def selected_rows(self) -> list:
        """The radiomic features each outer fold's model kept: ``{model, repeat, fold, features}`` (a list)."""
        rows = []
        for model in self.models:
            support = self.supports.get(model)
            if support is None:
                continue
            outer = support.shape[0] // self.repeats
            for k, mask in enumerate(support):
                rows.append({"model": model, "repeat": k // outer, "fold": k % outer,
                             "features": [self.feature_names[j] for j in np.flatnonzero(mask)]})
        return rows

    def selection_frequency(self, model: str):
        """How often each radiomic feature was kept over the outer folds, and Nogueira's stability
        (:class:`~RadiomicsLabLib.study.selection.SelectionFrequency`)."""
        from .selection import selection_frequency

        support = self._known(model, self.supports)
        if support is None:
            raise RadiomicsLabError(f"Model '{model}' has no feature selection step; every feature was used.")
        return selection_frequency(support, self.feature_names)

    def save_model(self, model: str, path):
        """Save the final ``model`` (refitted on all training rows) with joblib, with its settings, seeds and its
        training cut-off (``cutoff``: the class threshold or the risk-group cut-off of :attr:`final_cutoffs`)."""
        from .models import save_model

        fitted = self._known(model, self.final_models)
        metadata = {"model": model, "params": self.final_params.get(model), "seeds": self.seeds,
                    "settings": self.settings, "classes": self.classes, "outcome_kind": self.outcome_kind,
                    "score_name": self.score_name, "nested_score": self.score(model),
                    "cutoff": self.final_cutoffs.get(model), "feature_names": self.feature_names,
                    "covariate_names": self.covariate_names}
        if self.outcome_kind == "binary":
            metadata["nested_auc"] = self.score(model)
        return save_model(fitted, path, metadata)

    def _known(self, model, table):
        if model not in table:
            raise RadiomicsLabError(f"No model '{model}' in this validation; it has {', '.join(self.models)}.")
        return table[model]

    def _binary_only(self, what: str):
        if self.outcome_kind != "binary":
            raise RadiomicsLabError(f"{what} is for a binary outcome; this validation is of a survival outcome: use "
                                    "score(), scores_by_repeat, external_scores.")


# Helpers ---------------------------------------------------------------------------------------------
def _take(X, rows):
    """Rows of an array or a pandas data frame (positions)."""
    if hasattr(X, "iloc"):
        return X.iloc[rows]
    return X[rows]


def _binary_outcome(y, n: int):
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise RadiomicsLabError(f"y must give one outcome per row of X ({n}); got shape {y.shape}.")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise RadiomicsLabError(f"y has {int(np.sum(~np.isfinite(y)))} missing outcome(s); leave those patients out.")
    classes = np.unique(y)
    if classes.size != 2:
        raise RadiomicsLabError(f"Nested cross-validation of a binary model needs two outcome classes; y has "
                                f"{classes.size} ({', '.join(map(str, classes[:5]))}).")
    return (y == classes[1]).astype(int), tuple(classes.tolist())


def survival_outcome(y, n: int | None = None) -> np.ndarray | None:
    """scikit-survival's structured array (fields ``event`` bool, ``time`` float) of a survival ``y``, None for
    any other ``y``. Taken: a structured array with fields ``event`` and ``time``, or (as scikit-survival
    reads it) any two-field structured array whose first field is the event indicator and second the time.
    Refused: missing or non-positive times, an event indicator other than 0/1."""
    y = np.asarray(y)
    names = y.dtype.names
    if not names:
        return None
    if {"event", "time"} <= set(names):
        event, time = y["event"], y["time"]
    elif len(names) == 2:
        event, time = y[names[0]], y[names[1]]
    else:
        raise RadiomicsLabError(f"A survival outcome is a structured array with fields event and time; y has fields "
                                f"{', '.join(names)}.")
    if y.ndim != 1 or (n is not None and y.shape[0] != n):
        raise RadiomicsLabError(f"y must give one outcome per row of X ({n}); got shape {y.shape}.")
    try:
        time = np.asarray(time, dtype=float)
        values = np.asarray(event)
        if values.dtype != bool and not np.isin(values, (0, 1)).all():
            raise ValueError
    except (TypeError, ValueError):
        raise RadiomicsLabError("The survival outcome needs numeric times and 0/1 (or boolean) events.") from None
    bad = ~np.isfinite(time) | (time <= 0)
    if bad.any():
        raise RadiomicsLabError(f"The survival outcome has {int(bad.sum())} missing or non-positive time(s) (first "
                                f"at row {int(np.argmax(bad))}); times must be > 0: fix or leave those patients out.")
    target = np.empty(y.shape[0], dtype=[("event", bool), ("time", float)])
    target["event"], target["time"] = values.astype(bool), time
    return target


def _labels(y) -> np.ndarray:
    """Stratification labels of an outcome: the 0/1 outcome, or the event indicator of a survival outcome."""
    return y["event"].astype(int) if y.dtype.names else y


def _strata(y, batch_codes, folds: int):
    """Stratification labels: outcome x batch when every such group has at least ``folds`` rows, else the outcome
    (for survival: the event indicator, or nothing when the censored or the events are fewer than ``folds``)."""
    y = _labels(y)
    if np.bincount(y).min() < folds:
        y = np.zeros_like(y)
    if batch_codes is None:
        return y
    combined = y * (int(batch_codes.max()) + 1) + batch_codes
    counts = np.bincount(combined)
    return combined if counts[counts > 0].min() >= folds else y


def _search(pipeline, grid, X, y, batch_codes, inner: int, seed: int):
    """The inner search on (X, y): (the best setting refitted on all of X, that setting, its mean inner score:
    ROC AUC, or for survival Harrell's C, the estimator's own ``score``)."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold

    candidates = list(ParameterGrid(grid))
    if len(candidates) == 1:  # nothing to choose: no inner cross-validation
        return clone(pipeline).set_params(**candidates[0]).fit(X, y), candidates[0], math.nan
    folds = StratifiedKFold(inner, shuffle=True, random_state=seed)
    splits = list(folds.split(np.zeros((len(y), 1)), _strata(y, batch_codes, inner)))
    search = GridSearchCV(clone(pipeline), grid, scoring=None if y.dtype.names else "roc_auc", cv=splits, refit=True,
                          n_jobs=1, error_score="raise")
    search.fit(X, y)
    return search.best_estimator_, dict(search.best_params_), float(search.best_score_)


def _predict(model, X, survival: bool) -> np.ndarray:
    """The probability of the positive class, or for survival the risk score (``predict``)."""
    if survival:
        return np.asarray(model.predict(X), dtype=float)
    classes = list(model.classes_)
    return np.asarray(model.predict_proba(X))[:, classes.index(1)]


def _survival_at(model, X, times) -> np.ndarray:
    """(rows x times) predicted survival probabilities S(t | x) of a fitted survival pipeline."""
    steps = getattr(model, "steps", None)
    if steps is not None:
        X, model = model[:-1].transform(X), steps[-1][1]
    return np.array([fn(times) for fn in model.predict_survival_function(X)], dtype=float).reshape(-1, len(times))


def _cutoff(y, predictions, survival: bool) -> float:
    """The training cut-off: the median predicted risk (survival), or Youden's threshold (binary); NaN if none."""
    if survival:
        return float(np.median(predictions))
    from .metrics import choose_threshold

    try:
        return choose_threshold(y, predictions)
    except RadiomicsLabError:  # a single distinct prediction: no threshold
        return math.nan


def _fit_and_predict(key, pipeline, grid, X, y, batch_codes, train, test, X_external, inner, inner_seed,
                     radiomic_names, keep_model, extras=False, times=None):
    """One task: search and fit on ``X[train]``; predict ``X[test]`` (an outer fold) or ``X_external``. With
    ``extras``: the training cut-off, and (survival) the survival probabilities of the predicted rows at ``times``.

    Runs in a joblib worker (a process, or a Dask worker): single-threaded BLAS/OpenMP, so that N tasks use
    N cores and the result does not depend on the number of threads."""
    from threadpoolctl import threadpool_limits

    survival = y.dtype.names is not None
    with threadpool_limits(limits=1):
        codes = None if batch_codes is None else batch_codes[train]
        X_train, y_train = _take(X, train), y[train]
        model, params, score = _search(pipeline, grid, X_train, y_train, codes, inner, inner_seed)
        target = _take(X, test) if test is not None else X_external
        present = target is not None and len(target)
        prediction = _predict(model, target, survival) if present else np.empty(0)
        support = selected_features(model, radiomic_names) if radiomic_names is not None else None
        cutoff = _cutoff(y_train, _predict(model, X_train, survival), survival) if extras else None
        curves = _survival_at(model, target, times) if extras and survival and present and times is not None \
            and len(times) else None
    return key, {"prediction": prediction, "params": params, "inner_score": score, "support": support,
                 "cutoff": cutoff, "survival": curves, "model": model if keep_model else None}


def _cores() -> int:
    from ..cohort import available_cores

    return available_cores()


def _run_tasks(calls, total: int, n_jobs, scheduler, progress, describe) -> dict:
    """Run the delayed ``calls`` (an iterator) with joblib, reporting progress; {key: result}."""
    from joblib import Parallel, parallel_config

    results = {}

    def consume(parallel):
        outputs = parallel(calls)
        try:
            for key, value in outputs:
                results[key] = value
                if progress is not None and progress(len(results), total, describe(key)) is False:
                    raise ValidationCancelled(f"Nested cross-validation cancelled after {len(results)} of {total} "
                                              "fits; nothing was returned.")
        finally:
            close = getattr(outputs, "close", None)
            if close is not None:
                with warnings.catch_warnings():  # joblib warns that it cancelled the running tasks: we asked it to
                    warnings.simplefilter("ignore", UserWarning)
                    close()  # a generator: stops the tasks still queued or running

    if scheduler:
        from ..batch import dask_client

        with dask_client(scheduler=scheduler) as client, parallel_config(backend="dask", client=client):
            consume(Parallel(n_jobs=-1, return_as="generator_unordered"))
    else:
        consume(Parallel(n_jobs=n_jobs, return_as="generator_unordered"))
    return results


# The nested cross-validation -------------------------------------------------------------------------
def _model_specs(models, selection, batch, covariates, impute, clinical_model, model_seed, feature_names,
                 outcome="binary", protect_covariates=None):
    """{label: Pipeline}: each named model (radiomics only, and clinical + radiomics when covariates are given),
    the clinical-only model, and any pipeline given as it is; each checked against the ``outcome`` kind."""
    from sklearn.base import BaseEstimator

    from .models import check_model_outcome, estimator_outcome

    if isinstance(models, (str, BaseEstimator)):
        models = [models]
    items = list(models.items()) if isinstance(models, dict) else [
        (m if isinstance(m, str) else f"model{k + 1}", m) for k, m in enumerate(models)]
    if not items:
        raise RadiomicsLabError("No model to validate; give models=... (e.g. 'logistic_l2').")
    options = dict(selection=selection, batch=batch, covariates=covariates, impute=impute, random_state=model_seed,
                   feature_names=feature_names, protect_covariates=protect_covariates)
    specs = {}
    if clinical_model == "auto":
        clinical_model = "logistic_l2" if outcome == "binary" else "cox_ridge"
    if covariates and clinical_model:
        if isinstance(clinical_model, str):
            check_model_outcome(clinical_model, outcome)
        specs["clinical"] = build_pipeline(clinical_model, **{**options, "selection": None, "batch": None,
                                                              "protect_covariates": None}, kind="clinical")
    for label, model in items:
        if isinstance(model, str):
            check_model_outcome(model, outcome)
            specs[str(label)] = build_pipeline(model, **options, kind="radiomics")
            if covariates:
                specs[f"clinical+{label}"] = build_pipeline(model, **options, kind="combined")
        elif hasattr(model, "fit") and (hasattr(model, "predict_proba") or hasattr(model, "predict_survival_function")
                                        or hasattr(getattr(model, "steps", [[None, None]])[-1][1],
                                                   "predict_survival_function")):
            if estimator_outcome(model) != outcome:
                raise RadiomicsLabError(f"Model {label!r} is for a {estimator_outcome(model)} outcome but this outcome "
                                        f"is {outcome}.")
            specs[str(label)] = model
        else:
            raise RadiomicsLabError(f"Model {label!r}: {model!r} is neither a model name nor a pipeline with "
                                    "predict_proba (binary) or predict_survival_function (survival).")
    return specs


def _grids(specs, grids) -> dict:
    """{label: param_grid}: the defaults, or the given grid(s), checked against each pipeline's parameters.

    The default for the ``clinical`` model is no search (its model's default penalty): with a handful of
    covariates the penalty barely changes the ranking, so an AUC or C-index search ties and would pick the
    grid's first (most shrunk) setting, giving badly calibrated probabilities."""
    def default(label, pipeline):
        return {} if label == "clinical" else default_grid(pipeline)

    if grids is None:
        chosen = {label: default(label, p) for label, p in specs.items()}
    elif isinstance(grids, dict) and grids and set(grids) <= set(specs):
        chosen = {label: grids.get(label, default(label, p)) for label, p in specs.items()}
    else:
        chosen = {label: grids for label in specs}
    for label, grid in chosen.items():
        params = specs[label].get_params()
        for part in [grid] if isinstance(grid, dict) else list(grid):
            unknown = [key for key in part if key not in params]
            if unknown:
                raise RadiomicsLabError(f"Model '{label}': grid parameter(s) {', '.join(unknown)} are not parameters "
                                        "of its pipeline (step__parameter; e.g. model__C).")
            empty = [key for key, values in part.items() if len(list(values)) == 0]
            if empty:
                raise RadiomicsLabError(f"Model '{label}': grid parameter(s) {', '.join(empty)} have no values.")
    return chosen


def nested_cv(X, y, models="logistic_l2", *, selection=None, batch=None, covariates=(), impute="median",
              clinical_model="auto", grids=None, ids=None, feature_names=None, split=None,
              repeats: int = DEFAULT_REPEATS, outer: int = DEFAULT_OUTER, inner: int = DEFAULT_INNER, seed=0,
              permutations: int = 0, n_jobs=None, scheduler: str | None = None, progress=None,
              keep_fitted: bool = False, protect_covariates=None) -> NestedCVResult:
    """Nested cross-validation of one or more models (see the module docstring); returns :class:`NestedCVResult`.

    ``X``: rows (patients) x columns (an array or a pandas data frame): the radiomic features, and the
    ``batch`` column and ``covariates`` columns when given (positions, or names for a data frame). ``y``: the
    binary outcome (two values; the larger, or the second in sorted order, is the positive class), or a survival
    outcome: scikit-survival's structured array (fields ``event``, ``time``; :func:`survival_outcome`), which
    runs the survival validation (below).
    ``models``: a model name of :data:`~RadiomicsLabLib.study.models.MODELS` (binary) or
    :data:`~RadiomicsLabLib.study.models.SURVIVAL_MODELS` (survival), a pipeline, a list of them, or
    ``{label: name or pipeline}``. Each name is built by :func:`~RadiomicsLabLib.study.models.build_pipeline`
    with ``selection``, ``batch``, ``impute`` and the models' seed; with ``covariates`` three models are
    compared on the same folds: ``clinical`` (``clinical_model`` on the covariates alone; ``"auto"``:
    ``logistic_l2``, or ``cox_ridge`` for survival; None: left out),
    ``<name>`` (radiomics alone) and ``clinical+<name>``. ``grids``: None (each pipeline's
    :func:`~RadiomicsLabLib.study.models.default_grid`), one ``param_grid`` for every model, or ``{label:
    param_grid}``. ``ids``: the rows' ids (default 0, 1, ...); ``feature_names``: the names of X's columns
    (default: the data frame's, else ``x0, x1, ...``). ``split``: a boolean mask, True for the training rows
    (the rest: the external test set, predicted once by the final model). ``repeats``, ``outer``, ``inner``:
    the folds. ``seed``: see the module docstring. ``permutations``: number of permuted-outcome reruns (0:
    none). ``n_jobs``: worker processes (None: every core; 1: this process). ``scheduler``: a Dask scheduler
    address instead. ``progress(done, total, message)``: returning False cancels. ``keep_fitted``: keep
    every outer fold's fitted pipeline (``result.fitted``). ``protect_covariates``: ComBat protects the
    covariates (default when ``batch`` and ``covariates`` are both given; see
    :func:`~RadiomicsLabLib.study.models.build_pipeline`).

    Survival: the outer folds are stratified by the event indicator (x batch, as for binary); the inner
    search maximises Harrell's C (the estimators' ``score``); the OOF predictions are risk scores (the models'
    ``predict``: higher = higher risk) and each repeat's score is their Harrell's C
    (:func:`~RadiomicsLabLib.study.metrics.harrell_c_index`); the permutation test permutes the (time, event)
    pairs across rows. ``survival_times``: the 10th, 20th, ..., 80th percentiles
    (:data:`SURVIVAL_TIME_PERCENTILES`, linear interpolation) of the training rows' event times, without
    duplicates, keeping only those at or before the last event time of every outer training set (so each
    fold's predicted survival function is defined there: scikit-survival's step functions end at the last
    training time); ``oof_survival`` holds each row's OOF S(t) at those times.

    Training cut-offs (both kinds): each outer fold's model, and the final model, also predict their own
    training rows; the cut-off is Youden's threshold of those probabilities (binary) or their median risk
    (survival): ``training_cutoffs``, ``final_cutoffs``. Test rows are never used for them.
    """
    started = time.perf_counter()
    for name, value, low in (("repeats", repeats, 1), ("outer", outer, 2), ("inner", inner, 2),
                             ("permutations", permutations, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise RadiomicsLabError(f"{name} must be an integer >= {low}; got {value!r}.")
    if scheduler and n_jobs not in (None, -1):
        raise RadiomicsLabError("Give either n_jobs (worker processes on this machine) or scheduler (an existing Dask "
                                "cluster, whose workers are its own), not both.")
    if not hasattr(X, "iloc"):
        X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0:
        raise RadiomicsLabError(f"X must be a table of rows (patients) x columns; got shape {X.shape}.")
    n = X.shape[0]
    y_all = survival_outcome(y, n)
    survival = y_all is not None
    outcome_kind = "survival" if survival else "binary"
    y_all, classes = (y_all, ()) if survival else _binary_outcome(y, n)
    ids_all = list(range(n)) if ids is None else list(ids)
    if len(ids_all) != n:
        raise RadiomicsLabError(f"{len(ids_all)} ids for {n} rows.")
    if feature_names is None:
        columns = getattr(X, "columns", None)
        feature_names = [str(c) for c in columns] if columns is not None else [f"x{j}" for j in range(X.shape[1])]
    feature_names = list(feature_names)
    if len(feature_names) != X.shape[1]:
        raise RadiomicsLabError(f"{len(feature_names)} feature names for {X.shape[1]} columns of X.")
    covariates = [covariates] if isinstance(covariates, (str, int, np.integer)) else list(covariates or ())

    from .models import ColumnPicker

    role_columns = ColumnPicker([batch] if batch is not None else [])(X) + ColumnPicker(covariates)(X)
    radiomic_columns = [j for j in range(X.shape[1]) if j not in set(role_columns)]
    radiomic_names = [feature_names[j] for j in radiomic_columns]

    if split is None:
        train_mask = np.ones(n, bool)
    else:
        train_mask = np.asarray(split)
        if train_mask.dtype != bool or train_mask.shape != (n,):
            raise RadiomicsLabError(f"split must be a boolean mask over the {n} rows (True: training row).")
        if train_mask.all():
            split = None
    train_rows = np.flatnonzero(train_mask)
    test_rows = np.flatnonzero(~train_mask)
    X_cv, y_cv = _take(X, train_rows), y_all[train_rows]
    ids_cv = [ids_all[i] for i in train_rows]
    counts = np.bincount(_labels(y_cv), minlength=2)
    if survival:  # events are needed in every fold (Harrell's C); censoring is not
        few, what = int(counts[1]), "event(s)"
    else:
        few, what = int(counts.min()), f"patient(s) of class '{classes[counts.argmin()]}'"
    if few < outer:
        raise RadiomicsLabError(f"The training rows have {few} {what}; {outer}-fold stratified cross-validation needs "
                                f"at least {outer}: use fewer folds.")
    if math.floor(few * (outer - 1) / outer) < inner:
        raise RadiomicsLabError(f"An outer training set holds about {math.floor(few * (outer - 1) / outer)} {what}, "
                                f"fewer than inner={inner} folds need; use fewer inner folds.")
    batch_codes = None
    notes = []
    if batch is not None:
        column = role_columns[0]
        labels = np.asarray(X_cv.iloc[:, column].to_numpy() if hasattr(X_cv, "iloc") else X_cv[:, column])
        try:
            _, batch_codes = np.unique(labels.astype(str), return_inverse=True)
        except TypeError:
            raise RadiomicsLabError("The batch column mixes kinds of labels; give every batch one label.") from None

    # Seeds ---------------------------------------------------------------------------------------
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    root = np.random.SeedSequence(seed)
    outer_ss, inner_ss, model_ss, permutation_ss, final_ss = root.spawn(5)
    outer_seeds = [int(s) for s in outer_ss.generate_state(repeats)]
    inner_seeds = np.asarray(inner_ss.generate_state(repeats * outer), dtype=np.int64).reshape(repeats, outer)
    model_seed = int(model_ss.generate_state(1)[0])
    final_seed = int(final_ss.generate_state(1)[0])
    permutation_seed = int(permutation_ss.generate_state(1)[0])
    rng = np.random.default_rng(permutation_seed)  # permutation p: the p-th rng.permutation(training outcome)
    outcomes = [y_cv] + [rng.permutation(y_cv) for _ in range(permutations)]
    seeds = {"seed": seed, "outer": outer_seeds, "inner": inner_seeds.tolist(), "model_random_state": model_seed,
             "final_inner": final_seed, "permutation": permutation_seed if permutations else None}

    specs = _model_specs(models, selection, batch, covariates, impute, clinical_model, model_seed, radiomic_names,
                         outcome_kind, protect_covariates)
    grids = _grids(specs, grids)
    labels = list(specs)

    # Outer folds of each outcome (observed, then each permutation) and repeat.
    from sklearn.model_selection import StratifiedKFold

    folds = np.empty((len(outcomes), repeats, len(y_cv)), dtype=int)
    stratified_by_batch = False
    for p, outcome in enumerate(outcomes):
        strata = _strata(outcome, batch_codes, outer)
        stratified_by_batch |= p == 0 and batch_codes is not None and not np.array_equal(strata, _labels(outcome))
        for r in range(repeats):
            splitter = StratifiedKFold(outer, shuffle=True, random_state=outer_seeds[r])
            for f, (_, test) in enumerate(splitter.split(np.zeros((len(outcome), 1)), strata)):
                folds[p, r, test] = f
    if batch is not None:
        notes.append("Outer folds stratified by outcome x batch." if stratified_by_batch else
                     f"Outer folds stratified by outcome only: some outcome x batch group has fewer than {outer} "
                     "patients, so a small batch may be missing from a training fold (ComBat then refuses it).")

    # Survival-time grid for the OOF survival curves (see the docstring): inside every outer training set's follow-up.
    survival_times = None
    if survival:
        event_times = y_cv["time"][y_cv["event"]]
        grid = np.unique(np.percentile(event_times, SURVIVAL_TIME_PERCENTILES))
        last = min(float(y_cv["time"][(folds[0, r] != f) & y_cv["event"]].max()) for r in range(repeats)
                   for f in range(outer))
        survival_times = grid[grid <= last]
        if survival_times.size < 2:
            notes.append("Fewer than 2 survival times inside every training fold's follow-up: no OOF survival curves.")

    keys = [("cv", p, label, r, f) for p in range(len(outcomes)) for label in labels for r in range(repeats)
            for f in range(outer)]
    keys += [("final", 0, label, -1, -1) for label in labels]
    X_external = _take(X, test_rows) if split is not None else None

    def calls():
        from joblib import delayed

        for key in keys:
            kind, p, label, r, f = key
            keep = keep_fitted and kind == "cv" and p == 0
            if kind == "cv":
                train, test = np.flatnonzero(folds[p, r] != f), np.flatnonzero(folds[p, r] == f)
                yield delayed(_fit_and_predict)(key, specs[label], grids[label], X_cv, outcomes[p], batch_codes, train,
                                                test, None, inner, int(inner_seeds[r, f]), radiomic_names, keep,
                                                p == 0, survival_times)
            else:
                yield delayed(_fit_and_predict)(key, specs[label], grids[label], X_cv, y_cv, batch_codes,
                                                np.arange(len(y_cv)), None, X_external, inner, final_seed,
                                                radiomic_names, True, True, None)

    def describe(key):
        kind, p, label, r, f = key
        if kind == "final":
            return f"{label}: final model on all {len(y_cv)} training rows" + (" and the test rows" if split is not None
                                                                              else "")
        where = f"{label}: repeat {r + 1}/{repeats}, fold {f + 1}/{outer}"
        return where if p == 0 else f"permutation {p}/{permutations}, {where}"

    total = len(keys)
    if progress is not None and progress(0, total, f"{len(labels)} model(s), {repeats} x {outer} folds, "
                                                   f"{permutations} permutation(s)") is False:
        raise ValidationCancelled("Nested cross-validation cancelled before it started; nothing was computed.")
    jobs = _cores() if n_jobs is None else n_jobs
    results = _run_tasks(calls(), total, jobs, scheduler, progress, describe)

    # Assemble ------------------------------------------------------------------------------------
    def repeat_scores(p, label):
        oof = np.full((repeats, len(y_cv)), np.nan)
        for r in range(repeats):
            for f in range(outer):
                oof[r, folds[p, r] == f] = results[("cv", p, label, r, f)]["prediction"]
        return oof, np.array([_oof_score(outcomes[p], oof[r]) for r in range(repeats)])

    oof, scores_by_repeat, supports, best_params, permutation, fitted = {}, {}, {}, [], {}, {}
    cutoffs, oof_survival = {}, {}
    for label in labels:
        oof[label], scores_by_repeat[label] = repeat_scores(0, label)
        masks = [results[("cv", 0, label, r, f)]["support"] for r in range(repeats) for f in range(outer)]
        supports[label] = None if masks[0] is None else np.vstack(masks)
        cutoffs[label] = np.array([[results[("cv", 0, label, r, f)]["cutoff"] for f in range(outer)]
                                   for r in range(repeats)], dtype=float)
        if survival and survival_times.size >= 2:
            curves = np.full((repeats, len(y_cv), survival_times.size), np.nan)
            for r in range(repeats):
                for f in range(outer):
                    curves[r, folds[0, r] == f] = results[("cv", 0, label, r, f)]["survival"]
            oof_survival[label] = curves
        for r in range(repeats):
            for f in range(outer):
                result = results[("cv", 0, label, r, f)]
                row = {"model": label, "repeat": r, "fold": f, "params": result["params"],
                       "inner_score": result["inner_score"]}
                if not survival:
                    row["inner_auc"] = result["inner_score"]
                best_params.append(row)
                if keep_fitted:
                    fitted[(label, r, f)] = result["model"]
        if permutations:
            observed = float(scores_by_repeat[label].mean())
            null = np.array([repeat_scores(p, label)[1].mean() for p in range(1, len(outcomes))])
            permutation[label] = {"observed": observed, "null": null, "n": permutations,
                                  "p_value": float((1 + np.sum(null >= observed)) / (1 + permutations))}

    final = {label: results[("final", 0, label, -1, -1)] for label in labels}
    external, external_scores = {}, {}
    y_external = y_all[test_rows] if split is not None else None
    if split is not None:
        from .metrics import auc_delong, harrell_c_index

        for label in labels:
            external[label] = final[label]["prediction"]
            if survival and y_external["event"].any():
                external_scores[label] = harrell_c_index(y_external["time"], y_external["event"], external[label])
            elif not survival and np.unique(y_external).size == 2 and min(np.bincount(y_external, minlength=2)) >= 2:
                external_scores[label] = auc_delong(y_external, external[label])
        if not external_scores:
            notes.append("The test rows hold no event: no external C-index." if survival else
                         "The test rows do not hold at least 2 patients of each class: no external AUC.")

    settings = json_ready({"outcome_kind": outcome_kind, "models": {label: repr(p) for label, p in specs.items()},
                       "grids": grids, "selection": selection, "batch": batch, "covariates": covariates,
                       "protect_covariates": bool(batch is not None and covariates) if protect_covariates is None
                       else bool(protect_covariates), "impute": impute,
                       "clinical_model": clinical_model, "repeats": repeats, "outer": outer, "inner": inner,
                       "permutations": permutations, "n_jobs": jobs if not scheduler else None,
                       "scheduler": scheduler, "n_train": len(y_cv), "n_test": len(test_rows),
                       "grid_sizes": {label: grid_size(g) for label, g in grids.items()},
                       "survival_time_percentiles": list(SURVIVAL_TIME_PERCENTILES) if survival else None})
    return NestedCVResult(models=labels, ids=ids_cv, y=y_cv, classes=classes, feature_names=radiomic_names,
                          folds=folds[0], oof=oof, scores_by_repeat=scores_by_repeat, best_params=best_params,
                          supports=supports, final_models={label: final[label]["model"] for label in labels},
                          final_params={label: final[label]["params"] for label in labels}, seeds=seeds,
                          settings=settings, outcome_kind=outcome_kind,
                          score_name="c_index_harrell" if survival else "auc", training_cutoffs=cutoffs,
                          final_cutoffs={label: final[label]["cutoff"] for label in labels},
                          survival_times=survival_times, oof_survival=oof_survival,
                          covariate_names=[feature_names[j] for j in role_columns[1 if batch is not None else 0:]],
                          external=external, external_ids=[ids_all[i] for i in test_rows], external_y=y_external,
                          external_scores=external_scores, permutation=permutation, fitted=fitted, notes=notes,
                          seconds=time.perf_counter() - started)


def _oof_score(y, predictions) -> float:
    """One repeat's score: ROC AUC (binary), or Harrell's C of the risk scores (survival)."""
    if y.dtype.names:
        from .metrics import harrell_c_index

        return harrell_c_index(y["time"], y["event"], predictions).estimate
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, predictions))


def validate_study(study, models="logistic_l2", **options) -> NestedCVResult:
    """:func:`nested_cv` of a :class:`~RadiomicsLabLib.study.inputs.StudyData` (from ``read_study``): its features,
    outcome (binary, or survival: ``study.target``, the structured (event, time) array), ids, split, and its
    batch (harmonised by ComBat inside the folds) and covariates (the
    clinical and clinical + radiomics models) when it has them. ``options`` go to :func:`nested_cv`.

    X is built as [batch | covariates | features] (an object array when there is a batch, so the saved model
    takes the batch labels as written); the final model expects new rows in that layout.
    """
    if study.outcome_kind not in ("binary", "survival"):
        raise RadiomicsLabError("This study has no outcome; give the outcome column (binary) or the time and event "
                                "columns (survival) to read_study.")
    for name in ("X", "y", "ids", "batch", "covariates", "split", "feature_names"):
        if name in options:
            raise RadiomicsLabError(f"validate_study takes {name} from the study; do not pass it.")
    X, batch, covariates, names = study.matrix()
    return nested_cv(X, study.target, models, batch=batch, covariates=covariates, ids=list(study.ids),
                     feature_names=names, split=study.split, **options)
