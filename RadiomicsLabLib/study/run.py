"""A radiomics study end to end, and the files it writes: the one core behind ``radiomicslab study``,
``radiomicslab harmonise`` and ``radiomicslab predict`` (and the GUIs), so every front end writes the same files.

:func:`run_study`: FEATURES + CLINICAL -> checked study (:func:`~RadiomicsLabLib.study.inputs.read_study`, every
problem listed before any work) -> nested cross-validation of the models (:func:`~RadiomicsLabLib.study.validation.
validate_study`: imputation, ComBat, selection, scaling and the model inside the folds) -> metrics with 95 % CIs
on the out-of-fold predictions (:func:`~RadiomicsLabLib.study.metrics.metric_table`, plus the comparison with the
clinical model, the time-dependent AUC, the integrated Brier score and the test set) -> the files of
:data:`STUDY_FILES` in the output folder. Nothing is written until every number is computed; each file is
written atomically, and no output may be one of the inputs.

Which model is "the signature" (``model.joblib``, the headline of the report): the first ``models`` name,
combined with the clinical covariates when ``covariates`` are given (``clinical+<name>``). Every model is
validated on the same folds and reported; choosing afterwards among several by their nested estimates makes
the chosen one's estimate slightly optimistic, which is why the first one given is the primary one.

Cut-offs are learned on training rows only: each outer fold's model sets a threshold on its own training rows
(binary: Youden's J; survival: the median training risk), and the out-of-fold metrics (sensitivity, PPV, the
Kaplan-Meier risk groups) use the median of those fold cut-offs on the repeat-averaged out-of-fold predictions;
the final model's cut-off (same rule on all training rows) is saved with it and used by :func:`predict_table`
and for the test set.
"""

from __future__ import annotations

import json
import math
import time as clock
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import RadiomicsLabError
from ..provenance import json_ready
from ..results import rows_csv_text

#: The files :func:`run_study` writes in its folder, and what each holds (figures only where they apply).
STUDY_FILES = {
    "metrics.csv": "model, metric, estimate, ci_low, ci_high: every metric with its 95 % CI",
    "predictions.csv": "id, repeat, fold, model, prediction and the outcome: the out-of-fold predictions",
    "test_predictions.csv": "id, model, prediction, class or risk group and the outcome of the test rows (--split)",
    "selected_features.csv": "model, feature, frequency (share of outer folds that kept it), final (kept by the "
                             "final model)",
    "model.joblib": "the primary model's pipeline refitted on all training rows (frozen ComBat included)",
    "model_card.json": "input hashes, versions, settings, seeds, features used, headline metric",
    "report.html": "the self-contained report: metrics, figures, TRIPOD+AI and RQS checklists",
    "roc.png": "ROC curves with 95 % CI bands (binary)",
    "calibration.png": "calibration plot (binary)",
    "decision_curve.png": "decision curve: net benefit (binary)",
    "kaplan_meier.png": "Kaplan-Meier curves of the risk groups, log-rank p (survival)",
    "coefficients.png": "the final model's coefficients (or importances.png: its importances)",
    "selection_stability.png": "how often each feature was selected over the outer folds",
    "harmonisation_distributions.png": "per-batch distributions before/after ComBat (with --batch)",
    "harmonisation_pca.png": "PCA coloured by batch before/after ComBat (with --batch)",
}
DEFAULT_MODELS = {"binary": ("logistic_l1",), "survival": ("cox_elasticnet",)}
DEFAULT_SELECTION = ("nzv", "correlation")
METRIC_COLUMNS = ("model", "metric", "estimate", "ci_low", "ci_high")
#: The columns ``predict_table`` writes.
PREDICT_COLUMNS = ("id", "model", "prediction", "group")


@dataclass
class StudyRun:
    """What :func:`run_study` did: the output ``folder`` and ``files`` written (name -> path), the checked
    ``study``, the nested cross-validation ``result``, the ``metrics`` rows, the model ``card``, the primary
    model name and a one-line ``summary``."""

    folder: Path
    files: dict
    study: object
    result: object
    metrics: list
    card: dict
    primary: str
    summary: str
    notes: list = field(default_factory=list)


# Small helpers -----------------------------------------------------------------------------------------
def _file_facts(path) -> dict | None:
    from ..provenance import file_sha256

    if path is None:
        return None
    path = Path(path)
    return {"path": str(path.resolve()), "sha256": file_sha256(path) if path.is_file() else None}


def _layout(study) -> dict:
    """The columns a saved model takes, in order (validate_study's X: [batch | covariates | features])."""
    return {"batch": study.batch is not None, "covariates": list(study.covariate_names),
            "features": list(study.feature_names)}


def _check_folder(output_dir, inputs: dict, names) -> Path:
    from ..fileio import check_output, check_outputs

    folder = check_output(output_dir, inputs, "folder")
    check_outputs([folder / name for name in names], inputs)
    return folder


# The study ---------------------------------------------------------------------------------------------
def run_study(features, clinical, output_dir, *, id_column: str = "id", outcome=None, positive=None, time=None,
              event=None, batch=None, covariates=(), split=None, icc=None, icc_threshold: float = 0.75,
              missing: str = "refuse", models=None, selection=None, outer: int = 5, repeats: int = 10, inner: int = 5,
              permutations: int = 0, seed: int | None = 0, workers=None, scheduler=None, horizon=None,
              risk_cutoffs=None, protect_covariates: bool = True, n_bootstrap: int = 1000,
              progress=None) -> StudyRun:
    """Run a study (see the module docstring) and write its files (:data:`STUDY_FILES`) in ``output_dir``.

    Columns of CLINICAL: ``id_column``, the binary ``outcome`` (``positive``: its label coded 1 when it is text)
    or survival ``time`` + ``event``; optional ``batch`` (ComBat inside the folds), ``covariates`` (clinical
    predictors; a clinical-only and a clinical + radiomics model are added, and ComBat protects them when
    ``protect_covariates``), ``split`` (train/test). ``icc``: an observers ``icc.csv``: a reproducibility filter
    (ICC lower 95 % bound >= ``icc_threshold``) before the other ``selection`` steps. ``models``: names of
    :data:`~RadiomicsLabLib.study.models.MODELS` / survival models (default :data:`DEFAULT_MODELS`);
    ``selection``: names of :data:`~RadiomicsLabLib.study.models.SELECTIONS` in order (default
    :data:`DEFAULT_SELECTION`; ``()`` or ``["none"]`` for none). ``horizon``: survival time for the
    time-dependent AUC (default: the median follow-up of the training rows). ``risk_cutoffs``: probabilities
    for the categorical NRI (default: continuous NRI). ``workers`` / ``scheduler``: as ``nested_cv``'s
    ``n_jobs`` / ``scheduler``. ``progress(done, total, message)``: returning False cancels (nothing written).
    """
    from .inputs import read_study

    started = clock.perf_counter()
    inputs = {"features table": features, "clinical table": clinical, "ICC table": icc}
    folder = _check_folder(output_dir, inputs, STUDY_FILES)
    study = read_study(features, clinical, outcome=outcome, time=time, event=event, positive=positive, batch=batch,
                       covariates=covariates, split=split, id_column=id_column, missing=missing, n_folds=outer)
    kind = study.outcome_kind
    models = list(models) if models else list(DEFAULT_MODELS[kind])
    steps = _selection_steps(study, selection, icc, icc_threshold)
    from .validation import validate_study

    options = dict(selection=steps or None, repeats=repeats, outer=outer, inner=inner, permutations=permutations,
                   seed=seed, n_jobs=workers, scheduler=scheduler, progress=progress)
    if study.batch is not None and study.covariate_names:
        options["protect_covariates"] = protect_covariates
    result = validate_study(study, models, **options)
    primary = f"clinical+{models[0]}" if study.covariate_names else models[0]

    horizon = _horizon(result, horizon) if kind == "survival" else None
    rows, extra = study_metrics(result, horizon=horizon, risk_cutoffs=risk_cutoffs, n_bootstrap=n_bootstrap,
                                seed=result.seeds["seed"])
    fitted = result.final_models[primary]
    extra["frequencies"] = {model: result.selection_frequency(model) for model in result.models
                            if result.supports.get(model) is not None}
    selected = _selected_rows(result, extra["frequencies"])
    # read_study takes the columns named outcome / time, event / batch / split when none is given
    columns = {"id_column": id_column, "outcome": outcome or ("outcome" if kind == "binary" else None),
               "positive": positive, "time": time or ("time" if kind == "survival" else None),
               "event": event or ("event" if kind == "survival" else None),
               "batch": batch or ("batch" if study.batch is not None else None),
               "split": split or ("split" if study.split is not None else None)}
    card = _model_card(study, result, primary, steps, inputs, columns, horizon, rows, fitted)
    texts = {"metrics.csv": rows_csv_text(rows, METRIC_COLUMNS),
             "predictions.csv": rows_csv_text(result.prediction_rows(), _prediction_columns(result)),
             "selected_features.csv": rows_csv_text(selected, ("model", "feature", "frequency", "final")),
             "model_card.json": json.dumps(json_ready(card), indent=2) + "\n"}
    if result.external_ids:
        texts["test_predictions.csv"] = rows_csv_text(_test_rows(result))

    # Everything is computed: write it all in a staging folder beside the output, then move it in (a failure
    # while writing leaves the output folder as it was).
    metadata = {"model": primary, "outcome_kind": kind, "classes": list(study.classes), "layout": _layout(study),
                "id_column": id_column, "batch_column": batch, "cutoff": result.final_cutoffs.get(primary),
                "params": result.final_params.get(primary), "seeds": result.seeds, "card": json_ready(card)}
    files = _write_staged(folder, lambda staging: _write_files(staging, texts, fitted, metadata, study, result,
                                                               primary, extra, card, rows))
    seconds = clock.perf_counter() - started
    head = card["headline"]
    counts = (f"{int(study.event[study.train].sum())} events" if kind == "survival"
              else f"{int(study.y[study.train].sum())} positive")
    summary = (f"Study: {int(study.train.sum())} training patients ({counts}), {study.n_features} features, "
               f"{len(result.models)} model(s), {result.repeats} x {outer} folds; {primary}: {head['metric']} "
               f"{head['estimate']:.3f} (95 % CI {head['ci_low']:.3f}-{head['ci_high']:.3f}) in {seconds:.0f} s "
               f"-> {folder}")
    return StudyRun(folder=folder, files=files, study=study, result=result, metrics=rows, card=card, primary=primary,
                    summary=summary, notes=list(study.notes) + list(result.notes))


def _write_files(staging, texts, fitted, metadata, study, result, primary, extra, card, rows) -> dict:
    """Every file of the study in ``staging``: the tables, the model, the figures, then the report; {name: path}."""
    from ..fileio import write_text_atomic
    from .models import save_model
    from .report import write_report

    files = {name: write_text_atomic(staging / name, text) for name, text in texts.items()}
    files["model.joblib"] = save_model(fitted, staging / "model.joblib", metadata)
    files.update(_figures(staging, study, result, primary, extra))
    figures = {name: path for name, path in files.items() if name.endswith(".png")}
    files["report.html"] = write_report(staging / "report.html", json_ready(card), rows, figures)
    return files


def _write_staged(folder: Path, write) -> dict:
    """``write(staging)`` into a new folder beside ``folder``, then each file moved into ``folder`` (same file
    system: a rename each); on failure the staging folder is removed and ``folder`` is left as it was."""
    import shutil
    import tempfile

    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=parent))
    try:
        written = write(staging)
        folder.mkdir(exist_ok=True)
        return {name: Path(path).replace(folder / name) for name, path in written.items()}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _selection_steps(study, selection, icc, icc_threshold) -> list:
    """The selection steps: the reproducibility filter first when an ICC table is given, then the named ones."""
    from .selection import ReproducibilityFilter, read_icc_table

    names = list(DEFAULT_SELECTION) if selection is None else [s for s in selection if s not in ("none", "")]
    steps = []
    if icc is not None:
        if not 0 <= float(icc_threshold) <= 1:
            raise RadiomicsLabError(f"--icc-threshold must be between 0 and 1; got {float(icc_threshold):g}.")
        table = read_icc_table(icc)  # the rows go into the model, so it does not depend on the file later
        steps.append(ReproducibilityFilter(icc=table, threshold=float(icc_threshold),
                                           feature_names=list(study.feature_names)))
    return steps + names


def _horizon(result, horizon) -> float:
    """The time-dependent AUC's horizon: given, or the median follow-up time of the training rows."""
    times = np.asarray(result.time, dtype=float)
    if horizon is None:
        return float(np.median(times))
    horizon = float(horizon)
    if not (times.min() < horizon < times.max()):
        raise RadiomicsLabError(f"--horizon {horizon:g} is outside the follow-up of the training rows "
                                f"({times.min():g} to {times.max():g}); give a time inside it.")
    return horizon


def _cutoff(result, model) -> float:
    """The median over outer folds of the cut-offs each fold learned on its training rows."""
    return float(np.median(np.asarray(result.training_cutoffs[model], dtype=float)))


# Metrics -----------------------------------------------------------------------------------------------
def study_metrics(result, *, horizon=None, risk_cutoffs=None, n_bootstrap: int = 1000, seed=0):
    """(rows ``{model, metric, estimate, ci_low, ci_high}``, extra) of a nested cross-validation result.

    Binary: :func:`~RadiomicsLabLib.study.metrics.metric_table` of the repeat-averaged OOF probabilities at the
    training cut-offs (NRI and IDI against ``clinical`` when it is there), then per model ``auc_repeat_mean``
    (CI: the 2.5th-97.5th percentiles over repeats, the spread of the estimate over fold assignments, not a
    sampling CI), ``auc_difference`` and ``delong_p`` against ``clinical`` (DeLong's test of correlated AUCs),
    ``p_permutation``; test rows: the same metrics prefixed ``test_`` at the final model's cut-off.
    Survival: ``c_index_harrell``, ``c_index_uno`` (up to the horizon), ``td_auc`` at the horizon,
    ``integrated_brier_score`` (bootstrap CIs), ``logrank_p`` of the risk groups, ``c_index_difference``
    against ``clinical`` (paired bootstrap), ``p_permutation``, and ``test_`` rows.
    ``extra``: what the figures need (groups, cut-offs).
    """
    from . import metrics as m

    rows, extra = [], {}
    reference = "clinical" if "clinical" in result.models else None
    repeat_scores = {model: np.asarray(result.scores_by_repeat[model]) for model in result.models}
    if result.outcome_kind == "binary":
        predictions = {model: result.mean_prediction(model) for model in result.models}
        thresholds = {model: _cutoff(result, model) for model in result.models}
        rows += m.metric_table(predictions, y=result.y, thresholds=thresholds, reference=reference,
                               nri_cutoffs=risk_cutoffs, n_bootstrap=n_bootstrap, seed=seed)
        for model in result.models:
            scores = repeat_scores[model]
            rows.append(m._row(model, "auc_repeat_mean", scores.mean(), *np.percentile(scores, [2.5, 97.5])))
            if reference and model != reference:
                test = m.delong_test(result.y, predictions[model], predictions[reference])
                rows.append(m._row(model, "auc_difference", test.difference, test.ci_low, test.ci_high))
                rows.append(m._row(model, "delong_p", test.p_value, math.nan, math.nan))
        extra.update(predictions=predictions, thresholds=thresholds)
        if result.external_ids and np.unique(result.external_y).size == 2:
            test_thresholds = {model: result.final_cutoffs[model] for model in result.models}
            test_rows = m.metric_table(dict(result.external), y=result.external_y, thresholds=test_thresholds,
                                       reference=reference, nri_cutoffs=risk_cutoffs, n_bootstrap=n_bootstrap,
                                       seed=seed)
            rows += [{**row, "metric": f"test_{row['metric']}"} for row in test_rows]
    else:
        time, event = np.asarray(result.time, float), np.asarray(result.event, bool)
        risks = {model: result.mean_prediction(model) for model in result.models}
        rows += m.metric_table(risks, time=time, event=event, tau=horizon, n_bootstrap=n_bootstrap, seed=seed)
        groups = {model: (risks[model] > _cutoff(result, model)).astype(int) for model in result.models}
        for model in result.models:
            r = risks[model]
            auc = m.bootstrap_ci(lambda t, e, s: m.cumulative_dynamic_auc(t, e, s, horizon, train_time=time,
                                                                          train_event=event),
                                 time, event, r, n_bootstrap=n_bootstrap, seed=seed)
            rows.append(m._row(model, "td_auc", auc.estimate, auc.ci_low, auc.ci_high))
            survival = np.asarray(result.oof_survival[model]).mean(axis=0)
            ibs = m.bootstrap_ci(lambda t, e, s: m.integrated_brier_score(t, e, s, result.survival_times,
                                                                          train_time=time, train_event=event),
                                 time, event, survival, n_bootstrap=min(n_bootstrap, 200), seed=seed)
            rows.append(m._row(model, "integrated_brier_score", ibs.estimate, ibs.ci_low, ibs.ci_high))
            split = groups[model]
            p = m.log_rank_test(time, event, split).p_value if np.unique(split).size == 2 else math.nan
            rows.append(m._row(model, "logrank_p", p, math.nan, math.nan))
            scores = repeat_scores[model]
            rows.append(m._row(model, "c_index_repeat_mean", scores.mean(), *np.percentile(scores, [2.5, 97.5])))
            if reference and model != reference:
                diff = m.bootstrap_ci(lambda t, e, a, b: m.harrell_c_index(t, e, a).estimate
                                      - m.harrell_c_index(t, e, b).estimate,
                                      time, event, r, risks[reference], n_bootstrap=n_bootstrap, seed=seed)
                rows.append(m._row(model, "c_index_difference", diff.estimate, diff.ci_low, diff.ci_high))
        extra.update(predictions=risks, groups=groups)
        if result.external_ids:
            test_rows = m.metric_table(dict(result.external), time=result.external_time,
                                       event=result.external_event, tau=horizon, n_bootstrap=n_bootstrap, seed=seed)
            rows += [{**row, "metric": f"test_{row['metric']}"} for row in test_rows]
    for model, permutation in result.permutation.items():
        rows.append(m._row(model, "p_permutation", permutation["p_value"], math.nan, math.nan))
    return rows, extra


# Rows of the tables ------------------------------------------------------------------------------------
def _prediction_columns(result) -> tuple:
    from .validation import prediction_columns

    return prediction_columns(result.outcome_kind)


def _selected_rows(result, frequencies: dict) -> list:
    """model, feature, frequency over the outer folds (``frequencies``: model -> its selection frequency), and
    whether the final model kept it."""
    from .models import selected_features

    rows = []
    for model, frequency in frequencies.items():
        final = selected_features(result.final_models[model], result.feature_names)
        kept = dict(zip(result.feature_names, final)) if final is not None else {}
        for row in frequency.rows():
            rows.append({"model": model, "feature": row["feature"], "frequency": row["frequency"],
                         "final": int(bool(kept.get(row["feature"], False)))})
    return rows


def _group(kind, value, cutoff) -> str:
    if cutoff is None or not math.isfinite(value):
        return ""
    if kind == "binary":
        return "positive" if value >= cutoff else "negative"
    return "high risk" if value > cutoff else "low risk"


def _test_rows(result) -> list:
    rows = []
    for model, predictions in result.external.items():
        cutoff = result.final_cutoffs.get(model)
        for i, value in enumerate(predictions):
            row = {"id": result.external_ids[i], "model": model, "prediction": float(value),
                   "group": _group(result.outcome_kind, float(value), cutoff)}
            if result.outcome_kind == "binary":
                row["outcome"] = int(result.external_y[i])
            else:
                row["time"], row["event"] = float(result.external_time[i]), int(result.external_event[i])
            rows.append(row)
    return rows


# Figures -----------------------------------------------------------------------------------------------
def _figures(folder, study, result, primary, extra) -> dict:
    """The PNG figures (names of :data:`STUDY_FILES`); {name: path}."""
    from . import report
    from .models import model_weights

    files = {}
    predictions = extra["predictions"]
    if result.outcome_kind == "binary":
        files["roc.png"] = report.roc_figure(folder / "roc.png", result.y, predictions, seed=result.seeds["seed"])
        bins = min(10, max(2, len(result.y) // 10))  # deciles, fewer groups for a small study
        files["calibration.png"] = report.calibration_figure(folder / "calibration.png", result.y, predictions,
                                                             bins=bins)
        files["decision_curve.png"] = report.decision_curve_figure(folder / "decision_curve.png", result.y,
                                                                   predictions)
    else:
        files["kaplan_meier.png"] = report.kaplan_meier_figure(
            folder / "kaplan_meier.png", result.time, result.event, extra["groups"][primary],
            labels=("low risk", "high risk"))
    weights = model_weights(result.final_models[primary], result.feature_names, result.covariate_names)
    if weights is not None:
        name = "coefficients.png" if weights["kind"] == "coefficient" else "importances.png"
        files[name] = report.weights_figure(folder / name, weights["names"], weights["values"], kind=weights["kind"])
    if primary in extra["frequencies"]:
        frequency = extra["frequencies"][primary]
        rows = frequency.rows()
        files["selection_stability.png"] = report.stability_figure(
            folder / "selection_stability.png", [r["feature"] for r in rows], [r["frequency"] for r in rows],
            stability=frequency.stability)
    if study.batch is not None:
        files.update(_harmonisation_figures(folder, study))
    return files


def _harmonisation_figures(folder, study) -> dict:
    """Before/after figures of ComBat fitted on all rows of the study (exploration; the models fit it per fold)."""
    from .harmonisation import harmonisation_plots

    before, after = harmonise_study(study)
    written = harmonisation_plots(before, after, study.batch, folder, feature_names=study.feature_names)
    return {Path(path).name: Path(path) for path in written.values()}


def harmonise_study(study, *, parametric: bool = True, reference_batch=None):
    """(before, after): the study's features and ComBat's harmonised features, ComBat fitted on all rows with
    the study's covariates protected. For exploration and figures: a model must fit ComBat inside its folds."""
    from .harmonisation import ComBat

    if study.batch is None:
        raise RadiomicsLabError("Harmonisation needs a batch column (scanner, centre): give --batch COLUMN.")
    if np.isnan(study.X).any():
        raise RadiomicsLabError("ComBat needs complete features; the table has missing values. Fill them in before "
                                "harmonising (a study imputes them inside its folds).")
    X, batch, covariates, _ = study.matrix()
    combat = ComBat(batch=batch, covariates=covariates, parametric=parametric, reference_batch=reference_batch)
    return study.X, combat.fit_transform(X)


# The model card ----------------------------------------------------------------------------------------
def _model_card(study, result, primary, steps, inputs, columns, horizon, rows, fitted) -> dict:
    """The model card (model_card.json, the report's facts): ``columns`` names the clinical columns used."""
    from ..provenance import software_versions
    from .models import selected_features

    kind = study.outcome_kind
    headline_metric = "auc" if kind == "binary" else "c_index_harrell"
    head = next(r for r in rows if r["model"] == primary and r["metric"] == headline_metric)
    kept = selected_features(fitted, result.feature_names)
    features_used = list(result.feature_names) if kept is None else [
        name for name, k in zip(result.feature_names, kept) if k]
    train = study.train
    study_facts = {"outcome_kind": kind, **columns, "covariates": list(study.covariate_names),
                   "n_patients": study.n_patients, "n_train": int(train.sum()), "n_test": int((~train).sum()),
                   "n_features": study.n_features, "pivoted": study.pivoted, "missing": study.missing,
                   "horizon": horizon}
    if kind == "binary":
        study_facts["class_counts"] = {str(label): int(np.sum(study.y[train] == code))
                                       for code, label in enumerate(study.classes)}
    else:
        study_facts["n_events"] = int(study.event[train].sum())
    settings = result.settings
    card = {
        "title": "RadiomicsLab study",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
        "inputs": {key: _file_facts(path) for key, path in zip(("features", "clinical", "icc"), inputs.values())
                   if path is not None},
        "study": study_facts,
        "validation": {"repeats": settings.get("repeats"), "outer": settings.get("outer"),
                       "inner": settings.get("inner"), "permutations": settings.get("permutations"),
                       "seed": result.seeds.get("seed"), "seeds": result.seeds, "workers": settings.get("n_jobs"),
                       "scheduler": settings.get("scheduler")},
        "models": list(result.models),
        "selection": [s if isinstance(s, str) else f"reproducibility (ICC lower bound >= {s.threshold:g})"
                      for s in steps],
        "harmonisation": ({"method": "ComBat", "parametric": True,
                           "protected": list(study.covariate_names) if settings.get("protect_covariates") else []}
                          if study.batch is not None else None),
        "final_model": primary,
        "final_params": result.final_params.get(primary),
        "features_used": features_used,
        "threshold": result.final_cutoffs.get(primary),
        "headline": {"model": primary, "metric": headline_metric, "estimate": head["estimate"],
                     "ci_low": head["ci_low"], "ci_high": head["ci_high"]},
        "comparison": ({"reference": "clinical", "models": [m for m in result.models if m != "clinical"]}
                       if "clinical" in result.models else None),
        "notes": list(study.notes) + list(result.notes),
        "settings": settings,
    }
    return card


# Harmonise a table -------------------------------------------------------------------------------------
HARMONISE_FIGURES = ("harmonisation_distributions.png", "harmonisation_pca.png")


def harmonise_table(features, clinical, output, *, id_column: str = "id", batch: str = "batch", covariates=(),
                    parametric: bool = True, reference_batch=None, missing: str = "refuse") -> dict:
    """ComBat fitted on ALL rows of FEATURES (batch and protected ``covariates`` from CLINICAL): writes the
    harmonised table ``output`` (CSV: the id column, then the features) and the before/after figures beside
    it; returns {name: path}. For exploring batch effects: a model must harmonise inside its folds
    (:func:`run_study` does)."""
    from ..fileio import check_output, check_outputs, write_text_atomic
    from .harmonisation import harmonisation_plots
    from .inputs import read_study

    inputs = {"features table": features, "clinical table": clinical}
    output = check_output(output, inputs, "csv")
    if output is None:
        raise RadiomicsLabError("-o -: harmonise writes figures beside its table; give a file name such as "
                                "harmonised.csv.")
    folder = output.parent
    check_outputs([folder / name for name in HARMONISE_FIGURES], inputs)
    if not batch:
        raise RadiomicsLabError("Harmonisation needs the batch column (scanner, centre): give --batch COLUMN.")
    study = read_study(features, clinical, batch=batch, covariates=covariates, id_column=id_column, missing=missing,
                       n_folds=None, require_outcome=False)
    before, after = harmonise_study(study, parametric=parametric, reference_batch=reference_batch)
    rows = [{id_column: i, **{name: float(v) for name, v in zip(study.feature_names, values)}}
            for i, values in zip(study.ids, after)]
    files = {"table": write_text_atomic(output, rows_csv_text(rows, [id_column, *study.feature_names]))}
    written = harmonisation_plots(before, after, study.batch, folder, feature_names=study.feature_names)
    files.update({Path(path).name: Path(path) for path in written.values()})
    return files


# Apply a saved model -----------------------------------------------------------------------------------
def predict_table(model_path, features, output, *, clinical=None, id_column: str = "id", batch=None) -> list:
    """Apply a ``model.joblib`` written by :func:`run_study` to the patients of FEATURES (and CLINICAL for the
    batch and covariate columns it needs): rows ``{id, model, prediction, group}`` (probability of the positive
    class or risk score; the group by the model's saved training cut-off), written to ``output`` (CSV; ``-``:
    returned only). A feature the model needs but the table lacks, a missing covariate, or a batch its ComBat
    never saw is a clear error."""
    from ..fileio import check_output, write_text_atomic
    from .inputs import read_features_only, read_study
    from .models import load_model

    inputs = {"model": model_path, "features table": features, "clinical table": clinical}
    output = check_output(output, inputs, "csv")
    _check_model_file(model_path)
    saved = load_model(model_path)
    meta = saved.get("metadata", {})
    layout = meta.get("layout")
    if not layout:
        raise RadiomicsLabError(f"'{model_path}' is not a model written by radiomicslab study (no column layout).")
    needs_clinical = layout["batch"] or layout["covariates"]
    if needs_clinical and clinical is None:
        wanted = (["the batch"] if layout["batch"] else []) + [repr(c) for c in layout["covariates"]]
        raise RadiomicsLabError(f"This model needs {', '.join(wanted)} column(s) of each patient: give --clinical "
                                "CSV with them.")
    batch = batch or meta.get("batch_column") if layout["batch"] else None
    if clinical is not None:
        study = read_study(features, clinical, batch=batch, covariates=layout["covariates"], id_column=id_column,
                           n_folds=None, require_outcome=False, missing="impute")
    else:
        study = read_features_only(features, id_column)
    missing = [name for name in layout["features"] if name not in study.feature_names]
    if missing:
        raise RadiomicsLabError(f"The features table lacks {len(missing)} feature(s) the model needs: "
                                f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; extract them with the "
                                "same settings as the study's table.")
    X = study.matrix(layout["features"])[0]
    model = saved["model"]
    kind = meta.get("outcome_kind", "binary")
    values = model.predict_proba(X)[:, list(model.classes_).index(1)] if kind == "binary" else model.predict(X)
    cutoff = meta.get("cutoff")
    rows = [{"id": i, "model": meta.get("model", ""), "prediction": float(v), "group": _group(kind, float(v), cutoff)}
            for i, v in zip(study.ids, values)]
    if output is not None:
        write_text_atomic(output, rows_csv_text(rows, PREDICT_COLUMNS))
    return rows


def _check_model_file(path) -> None:
    """A missing, empty or text file given as the model: one line saying what to give (before unpickling it)."""
    import codecs

    path = Path(path)
    wanted = "give the model.joblib written by radiomicslab study (MODEL first, then the FEATURES table)"
    if not path.is_file():
        raise RadiomicsLabError(f"No model file '{path}'; {wanted}.")
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head:
        raise RadiomicsLabError(f"The model file '{path}' is empty (0 bytes); {wanted}.")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return  # binary, as a model file is (a pickle starts with byte 0x80)
    if b"\x00" not in head:
        raise RadiomicsLabError(f"'{path}' is a text file, not a model; {wanted}.")
