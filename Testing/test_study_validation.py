"""Nested cross-validation (:mod:`RadiomicsLabLib.study.validation`) and the model pipelines
(:mod:`RadiomicsLabLib.study.models`) on real data, with checks that nothing leaks.

Data: scikit-learn's breast cancer Wisconsin table (``sklearn.datasets.load_breast_cancer``, shipped with
scikit-learn): 569 patients x 30 real features of digitised fine-needle aspirate images; the outcome is
malignant (1, 212 patients) vs benign (0, 357).

Made here, each where a case needs a known answer (seeded, so every run sees the same table):

- the leakage test permutes the outcome (so the right answer is AUC 0.5) and adds 1000 columns of independent
  standard normal values beside the 30 real features: a radiomics table has hundreds to thousands of features
  (IBSI families x filters), most of them uninformative, and selection leakage grows with their number (with
  the 30 real features alone, leaky selection only reaches AUC ~0.54, too close to 0.5 to prove anything);
- the ComBat test adds the documented per-site shifts of Testing/test_study_harmonisation.py (three sites,
  additive and multiplicative effects of ComBat's location/scale model, the diagnosis confounded with the
  site);
- the covariate test uses the real feature ``mean radius`` as the clinical covariate (a tumour size).

Run sizes are small (1-3 repeats, 3-5 folds) to keep the suite fast; the library defaults are 10 x 5 x 5.
"""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_breast_cancer
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from RadiomicsLabLib.errors import Cancelled, RadiomicsLabError
from RadiomicsLabLib.study.harmonisation import ComBat
from RadiomicsLabLib.study.metrics import auc_delong
from RadiomicsLabLib.study.models import (MODELS, build_pipeline, default_grid, load_model, make_model,
                                          selected_features)
from RadiomicsLabLib.study.validation import PREDICTION_COLUMNS, ValidationCancelled, nested_cv, validate_study

from conftest import site_effects

LR = "logistic_l2"


@pytest.fixture(scope="module")
def cancer():
    data = load_breast_cancer()
    return data.data, (data.target == 0).astype(int), list(data.feature_names)


def _splits(result, repeat):
    """The outer (train, test) folds of one repeat, from the result's fold assignment."""
    folds = result.folds[repeat]
    return [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(int(folds.max()) + 1)]


def _auc_per_repeat(result, model):
    """Per-repeat AUC recomputed from the prediction rows with scikit-learn (independent of the result's own)."""
    rows = result.prediction_rows(model)
    aucs = []
    for r in range(result.repeats):
        mine = [row for row in rows if row["repeat"] == r]
        assert len(mine) == len(result.y) and len({row["id"] for row in mine}) == len(result.y)  # each row once
        aucs.append(roc_auc_score([row["outcome"] for row in mine], [row["prediction"] for row in mine]))
    return np.array(aucs)


def _plain_lr(C):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=10000))


# (1) the nested AUC of penalised logistic regression, against a plain scikit-learn run ------------------------
def test_nested_auc_of_penalised_logistic_regression(cancer):
    """The nested AUC (C searched by the inner 3-fold CV among 0.01, 0.1, 1, 10) is compared with plain
    ``cross_val_predict`` runs on the same outer folds with C fixed at each grid value.

    Tolerance: tuning only chooses among those C values, fold by fold, so the nested AUC of a repeat must lie
    within the range the fixed-C runs span on the same folds (0.986-0.995 here), widened by 0.003 because
    folds predicted with different C values are pooled into one AUC (their probability scales differ a
    little; measured effect up to 0.0005). A leak (a fold's test rows reaching its fit or the C choice) or a
    fold mix-up would put it outside. Against C = 1 alone we allow 0.005 (about one DeLong SE at AUC 0.99 with
    569 patients)."""
    X, y, _ = cancer
    result = nested_cv(X, y, LR, repeats=3, outer=5, inner=3, seed=0, n_jobs=1)
    aucs = _auc_per_repeat(result, LR)
    np.testing.assert_allclose(aucs, result.auc_by_repeat[LR], rtol=0, atol=1e-15)
    assert aucs.min() > 0.98
    assert result.auc(LR) == pytest.approx(aucs.mean())
    grid = default_grid(build_pipeline(LR))["model__C"]
    assert grid == [0.01, 0.1, 1.0, 10.0]
    for r in range(result.repeats):
        splits = _splits(result, r)
        expected = StratifiedKFold(5, shuffle=True, random_state=result.seeds["outer"][r]).split(X, y)
        assert all(np.array_equal(test, want) for (_, test), (_, want) in zip(splits, expected))  # the recorded seed
        plain = {C: roc_auc_score(y, cross_val_predict(_plain_lr(C), X, y, cv=splits, method="predict_proba")[:, 1])
                 for C in grid}
        assert min(plain.values()) - 0.003 <= aucs[r] <= max(plain.values()) + 0.003, (aucs[r], plain)
        assert abs(aucs[r] - plain[1.0]) <= 0.005
    chosen = {row["params"]["model__C"] for row in result.best_params}
    assert chosen <= set(grid) and len(result.best_params) == 15
    summary = result.summary()[0]
    assert summary["ci_low"] < summary["auc_pooled"] < summary["ci_high"] and summary["auc_mean"] == result.auc(LR)


def test_fixed_hyper_parameters_give_exactly_cross_val_predict(cancer):
    """With one grid point there is nothing to tune: the nested OOF predictions are the plain pipeline's."""
    X, y, _ = cancer
    result = nested_cv(X, y, LR, grids={"model__C": [1.0]}, repeats=2, outer=5, inner=3, seed=3, n_jobs=1)
    for r in range(2):
        plain = cross_val_predict(_plain_lr(1.0), X, y, cv=_splits(result, r), method="predict_proba")[:, 1]
        np.testing.assert_allclose(result.oof[LR][r], plain, rtol=0, atol=1e-9)
    assert all(np.isnan(row["inner_auc"]) for row in result.best_params)  # no inner search was run


# (2) leakage: a permuted outcome gives AUC 0.5, and a leaky procedure is caught -------------------------------
def test_permuted_outcome_gives_chance_auc_and_leaky_selection_does_not(cancer):
    """Outcome permuted (default_rng(2024)), 30 real + 1000 noise features (module docstring). The nested
    procedure selects the 20 best features by ANOVA F inside each fold (scikit-learn's SelectKBest, a step of
    the pipeline) and tunes C: DeLong's 95 % CI of every repeat's AUC, and of the repeat-averaged prediction,
    contains 0.5. The leaky variant selects the same 20 features once on ALL rows with the permuted outcome
    and then cross-validates the model alone on the same folds: its AUC is far above 0.5 (0.73, CI 0.68-0.77),
    so this check does fail when selection leaks. (A CI excludes 0.5 for about 5 % of permutations by
    construction; the seed is fixed, and the first one tried is used.)"""
    X0, y0, _ = cancer
    rng = np.random.default_rng(2024)
    X = np.hstack([X0, rng.normal(size=(len(y0), 1000))])
    y = rng.permutation(y0)
    result = nested_cv(X, y, LR, selection=SelectKBest(f_classif, k=20), repeats=2, outer=5, inner=3, seed=0,
                       n_jobs=1)
    for r in range(2):
        ci = auc_delong(y, result.oof[LR][r])
        assert ci.ci_low <= 0.5 <= ci.ci_high, f"repeat {r}: AUC {ci.auc:.3f} [{ci.ci_low:.3f}, {ci.ci_high:.3f}]"
    pooled = result.auc_ci(LR)
    assert pooled.ci_low <= 0.5 <= pooled.ci_high
    assert abs(result.auc(LR) - 0.5) < 0.05

    leaky_features = SelectKBest(f_classif, k=20).fit(X, y).transform(X)  # the leak: selection on all rows
    leaky = cross_val_predict(_plain_lr(1.0), leaky_features, y, cv=_splits(result, 0), method="predict_proba")[:, 1]
    ci = auc_delong(y, leaky)
    assert ci.auc > 0.65 and ci.ci_low > 0.5, f"leaky AUC {ci.auc:.3f} [{ci.ci_low:.3f}, {ci.ci_high:.3f}]"
    assert ci.auc > result.auc(LR) + 0.15

    # The selection inside the folds really is fitted per fold: the folds keep different features.
    frequency = result.selection_frequency(LR)
    assert result.supports[LR].shape == (10, 1030) and result.supports[LR].sum(axis=1).tolist() == [20] * 10
    assert frequency.stability < 0.9


# (3) reproducibility ------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_predictions(cancer):
    """Same seed: identical predictions, choices and folds, in this process or in 2 worker processes; the seed
    reaches the models (a random forest, one grid point to keep it quick). Another seed: other folds."""
    X, y, _ = cancer
    options = dict(grids={LR: {"model__C": [0.1, 1.0]}, "random_forest": {"model__n_estimators": [40]}},
                   repeats=2, outer=3, inner=3, seed=7)
    first = nested_cv(X, y, [LR, "random_forest"], n_jobs=1, **options)
    second = nested_cv(X, y, [LR, "random_forest"], n_jobs=2, **options)
    for model in first.models:
        assert np.array_equal(first.oof[model], second.oof[model])
    assert [row["params"] for row in first.best_params] == [row["params"] for row in second.best_params]
    np.testing.assert_array_equal([row["inner_auc"] for row in first.best_params],
                                  [row["inner_auc"] for row in second.best_params])  # NaN (no search) equal too
    assert np.array_equal(first.folds, second.folds)
    assert first.seeds == second.seeds and first.seeds["seed"] == 7
    forest = first.final_models["random_forest"].named_steps["model"]
    assert forest.random_state == first.seeds["model_random_state"]
    other = nested_cv(X, y, LR, n_jobs=1, **{**options, "seed": 8, "grids": {"model__C": [1.0]}})
    assert not np.array_equal(other.folds, first.folds)


# (4) external test set: predicted once, by the model refitted on the training rows -----------------------------
LOG = []


class RowSpy(TransformerMixin, BaseEstimator):
    """First step of a test pipeline: logs the ids (column 0) of the rows each fit and each transform saw
    (in this process: run with n_jobs=1), and passes the other columns on."""

    def fit(self, X, y=None):
        LOG.append(("fit", frozenset(np.asarray(X)[:, 0].astype(int).tolist())))
        return self

    def fit_transform(self, X, y=None):
        self.fit(X, y)
        return np.asarray(X)[:, 1:]

    def transform(self, X):
        LOG.append(("transform", frozenset(np.asarray(X)[:, 0].astype(int).tolist())))
        return np.asarray(X)[:, 1:]


def _spied(pipeline):
    return Pipeline([("spy", RowSpy()), *pipeline.steps])


def test_external_split_is_predicted_once_by_the_refitted_model(cancer):
    X, y, _ = cancer
    ids = np.arange(len(y))
    train, test = train_test_split(ids, test_size=0.3, random_state=11, stratify=y)
    split = np.zeros(len(y), bool)
    split[train] = True
    table = np.column_stack([ids, X])
    model = _spied(build_pipeline(LR, random_state=0))
    LOG.clear()
    result = nested_cv(table, y, {"lr": model}, split=split, ids=ids, repeats=2, outer=3, inner=3, seed=5, n_jobs=1)

    # The test rows were never fitted on, and transformed exactly once: the final model's prediction.
    test_ids = set(test.tolist())
    assert not any(kind == "fit" and rows & test_ids for kind, rows in LOG)
    touching = [(kind, rows) for kind, rows in LOG if rows & test_ids]
    assert touching == [("transform", frozenset(test_ids))]
    assert {row["id"] for row in result.prediction_rows()} == set(train.tolist())
    assert sorted(result.external_ids) == sorted(test.tolist()) and len(result.external_rows()) == len(test)

    # By hand: the same search on all training rows (the recorded inner seed), refitted, then one prediction.
    search = GridSearchCV(model, default_grid(model), scoring="roc_auc",
                          cv=StratifiedKFold(3, shuffle=True, random_state=result.seeds["final_inner"]))
    search.fit(table[np.sort(train)], y[np.sort(train)])
    by_hand = search.predict_proba(table[result.external_ids])[:, 1]
    np.testing.assert_allclose(result.external["lr"], by_hand, rtol=0, atol=1e-12)
    assert result.final_params["lr"] == search.best_params_
    again = result.final_models["lr"].predict_proba(table[result.external_ids])[:, 1]
    np.testing.assert_array_equal(again, result.external["lr"])
    expected = auc_delong(y[result.external_ids], by_hand)
    assert result.external_auc["lr"].auc == pytest.approx(expected.auc, abs=1e-12) and expected.auc > 0.97
    assert result.summary()[0]["external_ci_low"] == pytest.approx(expected.ci_low)


# (5) ComBat inside the folds -----------------------------------------------------------------------------------
def test_combat_is_fitted_inside_the_folds(cancer):
    X0, y, _ = cancer
    site, x = site_effects(X0, y == 1)  # conftest: the harmonisation tests' documented site effects
    ids = np.arange(len(y))
    table = np.column_stack([ids, site, x])  # id (read by the spy), site, 30 features
    model = _spied(build_pipeline(LR, batch=0, random_state=0))  # after the spy: site, then the features
    assert [name for name, _ in model.steps] == ["spy", "impute", "combat", "scale", "model"]
    LOG.clear()
    result = nested_cv(table, y, {"combat": model}, batch=1, repeats=1, outer=5, inner=3, seed=2, n_jobs=1,
                       keep_fitted=True)
    assert result.auc("combat") > 0.97
    assert result.notes == ["Outer folds stratified by outcome x batch."]

    # The outer folds' fitted ComBat saw exactly its training rows: the sizes, and the estimates by hand.
    for f, (train, test) in enumerate(_splits(result, 0)):
        combat = result.fitted[("combat", 0, f)].named_steps["combat"]
        assert np.array_equal(combat.batch_sizes_, np.bincount(site[train], minlength=3))
        by_hand = ComBat(batch=0).fit(np.column_stack([site[train], x[train]]))
        np.testing.assert_allclose(combat.grand_mean_, by_hand.grand_mean_, rtol=1e-12)
        np.testing.assert_allclose(combat.gamma_star_, by_hand.gamma_star_, rtol=1e-9, atol=1e-12)

    # Every fit, inner ones included, came before its outer fold's prediction and never held a row of that fold.
    folds = _splits(result, 0)
    current, refits = 0, 0
    for kind, rows in LOG:
        if current == len(folds):
            assert kind == "transform" or rows <= set(ids.tolist())  # the final model: all training rows
            continue
        train, test = (set(part.tolist()) for part in folds[current])
        if kind == "fit":
            assert rows <= train and not rows & test
            refits += rows == train
        elif rows == test:
            current += 1
    assert current == len(folds) and refits == len(folds)


# (6) cancel --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_progress_returning_false_cancels(cancer, n_jobs):
    X, y, _ = cancer
    calls = []

    def progress(done, total, message):
        calls.append((done, total, message))
        return done < 2

    with pytest.raises(ValidationCancelled, match="cancelled after 2 of 9 fits") as raised:
        nested_cv(X, y, LR, grids={"model__C": [1.0]}, repeats=2, outer=4, inner=2, n_jobs=n_jobs,
                  progress=progress)
    assert isinstance(raised.value, Cancelled) and isinstance(raised.value, RadiomicsLabError)
    assert [c[0] for c in calls] == [0, 1, 2] and all(c[1] == 9 for c in calls)
    assert calls[1][2].startswith(LR + ": repeat ")
    with pytest.raises(ValidationCancelled, match="before it started"):
        nested_cv(X, y, LR, repeats=1, outer=3, inner=2, n_jobs=1, progress=lambda *_: False)


# More: permutation test, covariates, saving, Dask, refused input ---------------------------------------------
def test_permutation_test(cancer):
    X, y, _ = cancer
    result = nested_cv(X, y, LR, grids={"model__C": [1.0]}, repeats=1, outer=3, inner=2, permutations=4, seed=1,
                       n_jobs=1)
    perm = result.permutation[LR]
    assert perm["observed"] == result.auc(LR) > 0.98 and perm["n"] == 4
    assert np.all(np.abs(perm["null"] - 0.5) < 0.15)  # the outcome really was permuted through the whole procedure
    assert perm["p_value"] == (1 + np.sum(perm["null"] >= perm["observed"])) / 5 == 0.2
    assert result.summary()[0]["p_permutation"] == 0.2


def test_clinical_radiomics_and_combined_models(cancer, tmp_path):
    """``mean radius`` (column 0) is the clinical covariate: the clinical model uses it alone, the radiomics
    model the 29 other features (after correlation-cluster selection inside the folds), the combined model
    both; all on the same folds."""
    X, y, names = cancer
    result = nested_cv(X, y, LR, covariates=[0], selection="correlation", feature_names=names, repeats=1, outer=3,
                       inner=2, seed=4, n_jobs=1)
    assert result.models == ["clinical", LR, f"clinical+{LR}"]
    assert result.feature_names == names[1:]
    clinical = result.final_models["clinical"]
    assert clinical.named_steps["model"].coef_.shape == (1, 1)
    kept = selected_features(result.final_models[f"clinical+{LR}"], names[1:])
    assert result.final_models[f"clinical+{LR}"].named_steps["model"].coef_.shape == (1, kept.sum() + 1)
    assert 0.85 < result.auc("clinical") < result.auc(f"clinical+{LR}")
    assert result.supports["clinical"] is None and result.supports[LR].shape == (3, 29)
    rows = result.selection_frequency(LR).rows()
    assert rows[0]["frequency"] == 1.0 and {r["feature"] for r in rows} == set(names[1:])
    assert {row["model"] for row in result.selected_rows()} == {LR, f"clinical+{LR}"}

    path = result.save_model(f"clinical+{LR}", tmp_path / "model.joblib")
    saved = load_model(path)
    np.testing.assert_array_equal(saved["model"].predict_proba(X)[:, 1],
                                  result.final_models[f"clinical+{LR}"].predict_proba(X)[:, 1])
    assert saved["metadata"]["seeds"] == result.seeds and "scikit-learn" in str(saved["versions"])


def test_validate_study_from_the_study_tables(cancer, tmp_path):
    """The tables read by ``read_study``: features (29 real ones), clinical (outcome, the documented site as the
    batch, ``mean radius`` as covariate, a seeded 70/30 train/test split): ComBat on the text site labels inside
    the folds, the three models, the external test set, and a saved final model that takes new rows as
    [batch | covariates | features] with the site as written."""
    import csv

    from RadiomicsLabLib.study.inputs import read_study

    X, y, names = cancer
    site, x = site_effects(X, y == 1)
    site = np.array(["A", "B", "C"])[site]
    split = np.where(np.random.default_rng(3).random(len(y)) < 0.7, "train", "test")
    with open(tmp_path / "features.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id"] + [n.replace(" ", "_") for n in names[1:]])
        writer.writerows([f"P{i:03d}"] + [repr(float(v)) for v in x[i, 1:]] for i in range(len(y)))
    with open(tmp_path / "clinical.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "outcome", "batch", "radius", "split"])
        writer.writerows([f"P{i:03d}", y[i], site[i], repr(float(X[i, 0])), split[i]] for i in range(len(y)))
    study = read_study(tmp_path / "features.csv", tmp_path / "clinical.csv", outcome="outcome", batch="batch",
                       covariates=["radius"], split="split")
    result = validate_study(study, LR, repeats=1, outer=3, inner=2, seed=6, n_jobs=1)
    assert result.models == ["clinical", LR, f"clinical+{LR}"]
    assert result.external_ids == [f"P{i:03d}" for i in np.flatnonzero(split == "test")]
    assert all(result.external_auc[m].auc > 0.9 for m in result.models) and result.auc(f"clinical+{LR}") > 0.97
    assert list(result.prediction_rows()[0]) == list(PREDICTION_COLUMNS)
    combat = result.final_models[LR].named_steps["columns"].named_transformers_["radiomics"].named_steps["combat"]
    assert list(combat.batches_) == ["A", "B", "C"] and combat.batch_sizes_.sum() == (split == "train").sum()
    new_rows = np.column_stack([site.astype(object), X[:, :1], x[:, 1:]])[split == "test"]
    np.testing.assert_allclose(result.final_models[LR].predict_proba(new_rows)[:, 1], result.external[LR], rtol=1e-12)
    with pytest.raises(RadiomicsLabError, match="takes batch from the study"):
        validate_study(study, LR, batch=0)


def test_dask_scheduler_gives_the_same_predictions(cancer):
    """An existing Dask scheduler (here an in-process one on 127.0.0.1) runs the fold tasks through joblib's
    dask backend, connected as batch runs connect: same predictions as in this process."""
    import logging

    from distributed import LocalCluster

    X, y, _ = cancer
    options = dict(grids={"model__C": [0.1, 1.0]}, repeats=1, outer=3, inner=2, seed=9)
    local = nested_cv(X, y, LR, n_jobs=1, **options)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.CRITICAL) as cluster:
        remote = nested_cv(X, y, LR, scheduler=cluster.scheduler_address, **options)
    assert np.array_equal(local.oof[LR], remote.oof[LR]) and remote.settings["scheduler"] == cluster.scheduler_address
    with pytest.raises(RadiomicsLabError, match="Cannot reach the Dask scheduler"):
        nested_cv(X, y, LR, scheduler="tcp://127.0.0.1:9", **options)


def test_every_model_runs(cancer):
    """Each named model builds, predicts probabilities and has a default grid (one grid point each here)."""
    X, y, _ = cancer
    for name in MODELS:
        grid = default_grid(build_pipeline(name))
        assert grid and all(key.startswith("model__") for key in grid)
        assert hasattr(make_model(name, random_state=0), "predict_proba")
    models = {name: name for name in MODELS}
    grids = {name: {key: values[:1] for key, values in default_grid(build_pipeline(name)).items()} for name in MODELS}
    grids["random_forest"]["model__n_estimators"] = [30]
    grids["gradient_boosting"]["model__max_iter"] = [30]
    result = nested_cv(X[:, :10], y, models, grids=grids, repeats=1, outer=3, inner=2, n_jobs=1)
    assert all(result.auc(name) > 0.93 for name in MODELS), {name: result.auc(name) for name in MODELS}


def test_refused_input(cancer):
    X, y, _ = cancer
    with pytest.raises(RadiomicsLabError, match="Unknown model 'tree'"):
        nested_cv(X, y, "tree", n_jobs=1)
    with pytest.raises(RadiomicsLabError, match="model__gamma are not parameters"):
        nested_cv(X, y, LR, grids={"model__gamma": [1]}, n_jobs=1)
    with pytest.raises(RadiomicsLabError, match="two outcome classes"):
        nested_cv(X, np.zeros(len(y)), LR, n_jobs=1)
    few = y.copy()
    few[np.flatnonzero(y == 1)[3:]] = 0
    with pytest.raises(RadiomicsLabError, match="needs at least 5"):
        nested_cv(X, few, LR, n_jobs=1)
    with pytest.raises(RadiomicsLabError, match="outer must be an integer >= 2"):
        nested_cv(X, y, LR, outer=1, n_jobs=1)


# Training cut-offs, model weights, ComBat's protected covariates ----------------------------------------------
def test_binary_training_cutoffs_are_youden_thresholds_of_the_training_rows(cancer, tmp_path):
    """Each outer fold's cut-off is choose_threshold (Youden) of ITS model's probabilities on ITS training rows;
    the final cut-off the same on all rows, saved with the model; model_weights gives the logistic
    coefficients, named: the radiomic features kept by selection, then the covariate."""
    from RadiomicsLabLib.study.metrics import choose_threshold
    from RadiomicsLabLib.study.models import model_weights

    X, y, names = cancer
    result = nested_cv(X, y, LR, covariates=[0], selection="correlation", feature_names=names,
                       grids={label: {"model__C": [1.0]} for label in ("clinical", LR, f"clinical+{LR}")},
                       repeats=1, outer=3, inner=2, seed=4, n_jobs=1, keep_fitted=True)
    for model in result.models:
        assert result.training_cutoffs[model].shape == (1, 3)
        for f, (train, _) in enumerate(_splits(result, 0)):
            fitted = result.fitted[(model, 0, f)]
            expected = choose_threshold(y[train], fitted.predict_proba(X[train])[:, 1])
            assert result.training_cutoffs[model][0, f] == expected
        final = result.final_models[model]
        assert result.final_cutoffs[model] == choose_threshold(y, final.predict_proba(X)[:, 1])
    saved = load_model(result.save_model(LR, tmp_path / "model.joblib"))
    assert saved["metadata"]["cutoff"] == result.final_cutoffs[LR] and saved["metadata"]["outcome_kind"] == "binary"

    combined = result.final_models[f"clinical+{LR}"]
    weights = model_weights(combined, result.feature_names, result.covariate_names)
    kept = selected_features(combined, result.feature_names)
    assert result.covariate_names == [names[0]]
    assert weights["kind"] == "coefficient"
    assert weights["names"] == [n for n, k in zip(names[1:], kept) if k] + [names[0]]
    np.testing.assert_array_equal(weights["values"], combined.named_steps["model"].coef_[0])
    assert model_weights(result.final_models["clinical"], result.feature_names)["names"] == ["covariate 1"]
    forest = build_pipeline("random_forest", random_state=0).set_params(model__n_estimators=20).fit(X[:, :5], y)
    assert model_weights(forest, names[:5])["kind"] == "importance"
    assert model_weights(build_pipeline("svm").fit(X[:, :5], y), names[:5]) is None


def test_combat_protects_the_covariates(cancer):
    """Covariate: the real 'mean radius' (no site effect: a clinical measurement); features: the 29 others with
    the documented site effects (conftest.site_effects), whose sites differ in their share of malignant, so of
    large, tumours: radius is associated with both the site and the features. With protect_covariates (the
    default when batch and covariates are given) the pipeline's ComBat is exactly ComBat(batch, covariates) fitted
    alone on the same rows, and the harmonised 'mean perimeter' keeps the site differences that radius explains
    (site-mean spread 13.2 vs radius coefficient x site-mean radius spread 13.5; the real, site-free perimeter's
    spread is 13.0); without protection ComBat removes them (spread 0.8)."""
    X0, y, _ = cancer
    site, x = site_effects(X0, y == 1)
    table = np.column_stack([site, X0[:, 0], x[:, 1:]])

    def combat_of(pipeline):
        return pipeline.named_steps["columns"].named_transformers_["radiomics"].named_steps["combat"]

    protected = build_pipeline(LR, batch=0, covariates=[1], kind="radiomics").fit(table, y)
    plain = build_pipeline(LR, batch=0, covariates=[1], kind="radiomics", protect_covariates=False).fit(table, y)
    alone = ComBat(batch=0, covariates=[1]).fit(table)
    with_cov, without = combat_of(protected), combat_of(plain)
    for name in ("grand_mean_", "covariate_coef_", "var_pooled_", "gamma_star_", "delta_star_"):
        np.testing.assert_array_equal(getattr(with_cov, name), getattr(alone, name))
    assert without.covariate_coef_.shape == (0, 29)
    harmonised = with_cov.transform(table)[:, 1]  # mean perimeter
    removed = without.transform(table[:, [0, *range(2, table.shape[1])]])[:, 1]
    spread = np.ptp([harmonised[site == s].mean() for s in range(3)])
    explained = np.ptp([with_cov.covariate_coef_[0, 1] * X0[site == s, 0].mean() for s in range(3)])
    assert spread == pytest.approx(explained, rel=0.05) and spread > 10
    assert np.ptp([removed[site == s].mean() for s in range(3)]) < 0.1 * spread
    # The model itself ignores the covariate as a predictor (radiomics only): its inputs are the 29 features.
    assert protected.named_steps["model"].coef_.shape == (1, 29)
    result = nested_cv(table, y, LR, batch=0, covariates=[1], grids={"model__C": [1.0]}, repeats=1, outer=3,
                       inner=2, seed=1, n_jobs=1, clinical_model=None)
    assert result.settings["protect_covariates"] is True
    assert result.models == [LR, f"clinical+{LR}"]
