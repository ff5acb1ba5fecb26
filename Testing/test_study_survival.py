"""Survival models and survival nested cross-validation (:mod:`RadiomicsLabLib.study.models`,
:mod:`RadiomicsLabLib.study.validation`) and the survival metrics against scikit-survival, on real data.

Data: the German Breast Cancer Study Group 2 trial as shipped by scikit-survival
(``sksurv.datasets.load_gbsg2``): 686 patients, recurrence-free survival in days (299 events). Its numeric
columns (age, estrec, pnodes, progrec, tsize) are used as they are; the categorical ones are one-hot encoded
with the first level dropped (horTh yes, menostat Post, tgrade II and III), giving 9 columns. The validation
tests use "tsize" (tumour size) as the clinical covariate where one is needed.

Made here, where a case needs a known answer: a permuted outcome (seeded: the right C is 0.5), and for the
IPCW metrics a copy in which each censoring time that equals an event time is moved 0.5 day later (see
``test_metrics_equal_scikit_survival``). Run sizes are small (1-2 repeats, 3 folds, small grids).
"""

import csv

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler
from sksurv.datasets import load_gbsg2
from sksurv.linear_model import CoxnetSurvivalAnalysis
from sksurv.metrics import (concordance_index_censored, concordance_index_ipcw, cumulative_dynamic_auc,
                            integrated_brier_score)

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.study import metrics
from RadiomicsLabLib.study.models import SURVIVAL_MODELS, build_pipeline, default_grid, model_weights
from RadiomicsLabLib.study.validation import SURVIVAL_PREDICTION_COLUMNS, nested_cv, validate_study

COX = "cox_lasso"


@pytest.fixture(scope="module")
def gbsg2():
    X, y = load_gbsg2()
    X = pd.get_dummies(X, columns=["horTh", "menostat", "tgrade"], drop_first=True, dtype=float)
    target = np.empty(len(y), dtype=[("event", bool), ("time", float)])
    target["event"], target["time"] = y["cens"], y["time"]
    # C order, as the rows a fold takes (X[rows]) are: a linear predictor X @ coef is summed in an order that depends
    # on the layout (pandas gives Fortran order), so the exact comparisons below compare like with like
    return np.ascontiguousarray(X.to_numpy(float)), target, [str(c) for c in X.columns]


@pytest.fixture(scope="module")
def lasso_run(gbsg2):
    X, y, names = gbsg2
    return nested_cv(X, y, COX, grids={"model__alphas": [[0.003], [0.03]]}, feature_names=names, repeats=2, outer=3,
                     inner=2, seed=0, n_jobs=1, keep_fitted=True)


def test_survival_nested_cv_is_out_of_fold_and_scored_by_harrell_c(gbsg2, lasso_run):
    """Each OOF risk comes from the fold's model, fitted (its scaler's mean and count show it) on the fold's
    training rows only; the per-repeat Harrell's C recomputed by scikit-survival equals the result's; the
    training cut-off is the median risk of the fold's training rows; the OOF survival curves are the fold
    model's, at times inside its follow-up."""
    X, y, _ = gbsg2
    result = lasso_run
    assert result.outcome_kind == "survival" and result.score_name == "c_index_harrell"
    rows = result.prediction_rows()
    assert tuple(rows[0]) == SURVIVAL_PREDICTION_COLUMNS
    for r in range(2):
        mine = [row for row in rows if row["repeat"] == r]
        assert sorted(row["id"] for row in mine) == list(range(len(y)))  # every row once per repeat
        c = concordance_index_censored(np.array([row["event"] == 1 for row in mine]),
                                       np.array([row["time"] for row in mine]),
                                       np.array([row["prediction"] for row in mine]))[0]
        assert c == pytest.approx(result.scores_by_repeat[COX][r], abs=1e-12)
        for f in range(3):
            train, test = np.flatnonzero(result.folds[r] != f), np.flatnonzero(result.folds[r] == f)
            fitted = result.fitted[(COX, r, f)]
            scaler = fitted.named_steps["scale"]
            assert scaler.n_samples_seen_ == len(train)
            np.testing.assert_allclose(scaler.mean_, X[train].mean(axis=0), rtol=1e-12)
            np.testing.assert_array_equal(fitted.predict(X[test]), result.oof[COX][r, test])
            assert result.training_cutoffs[COX][r, f] == np.median(fitted.predict(X[train]))
            times = result.survival_times
            curves = np.array([fn(times) for fn in fitted.predict_survival_function(X[test])])
            np.testing.assert_allclose(result.oof_survival[COX][r, test], curves, rtol=0, atol=1e-12)
            assert times.max() <= y["time"][train][y["event"][train]].max()
    expected = np.percentile(y["time"][y["event"]], [10, 20, 30, 40, 50, 60, 70, 80])
    np.testing.assert_allclose(result.survival_times, expected)
    assert result.score(COX) == pytest.approx(result.scores_by_repeat[COX].mean()) and 0.62 < result.score(COX) < 0.75
    final = result.final_models[COX]
    assert result.final_cutoffs[COX] == np.median(final.predict(X))
    with pytest.raises(RadiomicsLabError, match="is for a binary outcome"):
        result.auc(COX)


def test_metrics_equal_scikit_survival(gbsg2):
    """Our Harrell's C equals ``concordance_index_censored`` on the raw data. The IPCW metrics (Uno's C up to tau,
    the cumulative/dynamic AUC, the integrated Brier score) evaluate the censoring survival G just before an
    event time, G(T_i-), where scikit-survival takes G(T_i) (documented in metrics.py); the two differ only
    when a censoring time equals an event time (35 such times in GBSG2, recorded in days). On a copy where
    those censorings are moved 0.5 day later the definitions coincide and the numbers must agree to 1e-10;
    on the raw data they differ by little (checked to 0.01). Risk: a Cox model's linear predictor (lasso,
    fitted by hand on all rows); survival curves: its Breslow curves."""
    X, y, _ = gbsg2
    tied = np.isin(y["time"], y["time"][y["event"]]) & ~y["event"]
    assert tied.sum() > 0
    moved = y.copy()
    moved["time"][tied] += 0.5
    Z = StandardScaler().fit_transform(X)
    cox = CoxnetSurvivalAnalysis(alphas=[0.01], l1_ratio=1.0, fit_baseline_model=True).fit(Z, moved)
    risk = cox.predict(Z)
    e, t = moved["event"], moved["time"]
    tau = float(np.percentile(t[e], 80))
    times = np.percentile(t[e], [20, 40, 60])

    assert metrics.harrell_c_index(t, e, risk).estimate == pytest.approx(
        concordance_index_censored(e, t, risk)[0], abs=1e-12)
    assert metrics.uno_c_index(t, e, risk, tau).estimate == pytest.approx(
        concordance_index_ipcw(moved, moved, risk, tau=tau)[0], abs=1e-10)
    theirs, _ = cumulative_dynamic_auc(moved, moved, risk, times)
    ours = [metrics.cumulative_dynamic_auc(t, e, risk, h) for h in times]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)
    curves = np.array([fn(times) for fn in cox.predict_survival_function(Z)])
    assert metrics.integrated_brier_score(t, e, curves, times) == pytest.approx(
        integrated_brier_score(moved, moved, curves, times), abs=1e-10)

    # The raw data (censorings tied with events): same Harrell's C; IPCW metrics close but not equal.
    e0, t0 = y["event"], y["time"]
    assert metrics.harrell_c_index(t0, e0, risk).estimate == pytest.approx(
        concordance_index_censored(e0, t0, risk)[0], abs=1e-12)
    assert metrics.uno_c_index(t0, e0, risk, tau).estimate == pytest.approx(
        concordance_index_ipcw(y, y, risk, tau=tau)[0], abs=0.01)
    assert metrics.integrated_brier_score(t0, e0, curves, times) == pytest.approx(
        integrated_brier_score(y, y, curves, times), abs=0.01)


def test_penalised_cox_in_the_pipeline_is_coxnet_on_standardised_features(gbsg2):
    """build_pipeline's elastic-net Cox (impute -> scale -> Coxnet) gives scikit-survival's Coxnet fitted by hand
    on the z-scored features: the same coefficients, risks and survival curves; model_weights reports them."""
    X, y, names = gbsg2
    pipeline = build_pipeline("cox_elasticnet").set_params(model__alphas=[0.02]).fit(X, y)
    Z = StandardScaler().fit_transform(X)
    by_hand = CoxnetSurvivalAnalysis(alphas=[0.02], l1_ratio=0.5, fit_baseline_model=True).fit(Z, y)
    np.testing.assert_allclose(pipeline.named_steps["model"].coef_, by_hand.coef_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pipeline.predict(X), by_hand.predict(Z), rtol=0, atol=1e-12)
    weights = model_weights(pipeline, names)
    assert weights["kind"] == "coefficient" and weights["names"] == names
    np.testing.assert_allclose(weights["values"], by_hand.coef_[:, 0], rtol=0, atol=1e-12)
    assert default_grid(build_pipeline("cox_ridge"))["model__alphas"] == [[0.03], [0.1], [0.3], [1.0]]
    assert build_pipeline("cox_ridge").named_steps["model"].l1_ratio == 1e-4


def test_permuted_survival_outcome_gives_chance_c(gbsg2):
    """(time, event) pairs permuted across rows (inside nested_cv's permutation test, 10 permutations): every
    permuted run's Harrell's C is within 0.07 of 0.5 (3.5 SE: the SE of C is about 0.02 with 686 patients and
    299 events) and their spread includes 0.5 (measured over 20 permutations and two seeds: mean 0.507 and
    0.498, SD 0.017-0.021); the observed C is far above."""
    X, y, _ = gbsg2
    result = nested_cv(X, y, "cox_ridge", grids={"model__alphas": [[0.1]]}, repeats=1, outer=3, inner=2,
                       permutations=10, seed=3, n_jobs=1)
    perm = result.permutation["cox_ridge"]
    assert np.all(np.abs(perm["null"] - 0.5) < 0.07), perm["null"]
    assert perm["null"].min() <= 0.5 <= perm["null"].max(), perm["null"]
    assert perm["observed"] > 0.65 and perm["p_value"] == pytest.approx(1 / 11)


def test_covariates_forest_and_external_split(gbsg2):
    """tsize as clinical covariate: clinical (cox_ridge by default), radiomics-alone and combined survival models
    on the same folds; a random survival forest (no weights); a 25 % external split scored by Harrell's C."""
    X, y, names = gbsg2
    split = np.random.default_rng(5).random(len(y)) < 0.75
    covariate = names.index("tsize")
    grids = {"clinical": {"model__alphas": [[0.1]]}, "random_survival_forest": {"model__n_estimators": [40]},
             "clinical+random_survival_forest": {"model__n_estimators": [40]}}
    result = nested_cv(X, y, "random_survival_forest", covariates=[covariate], feature_names=names, grids=grids,
                       split=split, repeats=1, outer=3, inner=2, seed=1, n_jobs=1)
    assert result.models == ["clinical", "random_survival_forest", "clinical+random_survival_forest"]
    assert result.covariate_names == ["tsize"]
    for model in result.models:
        c = concordance_index_censored(y["event"][~split], y["time"][~split], result.external[model])[0]
        assert result.external_scores[model].estimate == pytest.approx(c, abs=1e-12)
        assert result.final_cutoffs[model] == np.median(result.final_models[model].predict(X[split]))
    assert model_weights(result.final_models["random_survival_forest"], result.feature_names) is None
    weights = model_weights(result.final_models["clinical"], result.feature_names, result.covariate_names)
    assert weights["names"] == ["tsize"] and weights["values"][0] > 0  # larger tumours, higher hazard
    rows = result.external_rows()
    assert set(rows[0]) == {"id", "model", "prediction", "time", "event"}
    assert result.score("clinical+random_survival_forest") > 0.6


def test_validate_study_with_a_survival_outcome(gbsg2, tmp_path):
    """GBSG2 written as the study tables (features: the 9 columns but tsize; clinical: time, event, tsize as
    covariate), read by read_study and validated with its survival target."""
    from RadiomicsLabLib.study.inputs import read_study

    X, y, names = gbsg2
    j = names.index("tsize")
    features = [n for n in names if n != "tsize"]
    with open(tmp_path / "features.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *features])
        writer.writerows([f"P{i:03d}", *[repr(float(v)) for k, v in enumerate(X[i]) if k != j]] for i in range(len(y)))
    with open(tmp_path / "clinical.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "time", "event", "tsize"])
        writer.writerows([f"P{i:03d}", repr(float(y["time"][i])), int(y["event"][i]), repr(float(X[i, j]))]
                         for i in range(len(y)))
    study = read_study(tmp_path / "features.csv", tmp_path / "clinical.csv", time="time", event="event",
                       covariates=["tsize"])
    result = validate_study(study, COX, grids={"model__alphas": [[0.01]]}, repeats=1, outer=3, inner=2, seed=2,
                            n_jobs=1)
    assert result.outcome_kind == "survival" and result.models == ["clinical", COX, f"clinical+{COX}"]
    np.testing.assert_array_equal(result.time, y["time"]) and np.testing.assert_array_equal(result.event, y["event"])
    assert result.score(f"clinical+{COX}") > result.score("clinical") > 0.55
    weights = model_weights(result.final_models[f"clinical+{COX}"], result.feature_names, result.covariate_names)
    assert weights["names"][-1] == "tsize" and set(weights["names"][:-1]) <= set(features)


def test_refused_survival_input(gbsg2):
    X, y, _ = gbsg2
    with pytest.raises(RadiomicsLabError, match="'logistic_l2' is for a binary outcome but this outcome is survival; "
                                                "choose one of cox_lasso"):
        nested_cv(X, y, "logistic_l2", n_jobs=1)
    with pytest.raises(RadiomicsLabError, match="'cox_lasso' is for a survival outcome but this outcome is binary"):
        nested_cv(X, y["event"].astype(int), COX, n_jobs=1)
    with pytest.raises(RadiomicsLabError, match="'mrmr' is for a binary outcome.*choose nzv, correlation, fdr"):
        nested_cv(X, y, COX, selection="mrmr", n_jobs=1)
    with pytest.raises(RadiomicsLabError, match="MRMR is a classification selector"):
        from RadiomicsLabLib.study.selection import MRMR
        MRMR(n_features=2).fit(X, y)
    bad = y.copy()
    bad["time"][[3, 7]] = [0.0, -2.0]
    with pytest.raises(RadiomicsLabError, match="2 missing or non-positive time"):
        nested_cv(X, bad, COX, n_jobs=1)
    few = y.copy()
    few["event"][np.flatnonzero(y["event"])[2:]] = False
    with pytest.raises(RadiomicsLabError, match="2 event\\(s\\); 5-fold"):
        nested_cv(X, few, COX, n_jobs=1)
    assert set(SURVIVAL_MODELS) == {"cox_lasso", "cox_ridge", "cox_elasticnet", "random_survival_forest"}
