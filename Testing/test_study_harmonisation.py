"""ComBat harmonisation (:mod:`RadiomicsLabLib.study.harmonisation`) on real features with documented site effects.

Data: scikit-learn's breast cancer Wisconsin table (``sklearn.datasets.load_breast_cancer``, shipped with
scikit-learn): 569 patients x 30 real features computed from digitised images of fine-needle aspirates (nuclear
size, shape and texture), and the diagnosis (212 malignant, 357 benign).

Batch effects, made here (seeded, so every run sees the same table):

- 3 sites A, B, C (codes 0, 1, 2). A patient goes to a site with probabilities (0.20, 0.30, 0.50) when malignant
  and (0.45, 0.35, 0.20) when benign, so the share of malignant tumours differs by site (22 %, 37 %, 59 %): the
  diagnosis is confounded with the site, as in real multi-centre cohorts, and must be protected.
- Feature v of a patient with diagnosis d at site s becomes ``mu_dv + a_sv + b_sv (x_v - mu_dv)``, ``mu_dv`` the
  real mean of feature v over diagnosis d: an additive site effect ``a_sv = SD_v * N(m_s, 0.25)`` with
  ``m = (0, 0.8, -0.5)`` and a multiplicative one ``b_sv = exp(N(log l_s, 0.1))`` with ``l = (1, 1.5, 0.7)``.
  This is ComBat's location/scale model, and the diagnosis difference of every feature is the real one.

The diagnosis is the protected covariate (categorical, or numeric 0/1). The peer is neuroCombat 0.2.12
(Fortin's Python ComBat). Its reference-batch branch calls ``np.int``, which numpy 2 removed: the tests put
``np.int = int`` back for the duration of that call.
"""

import contextlib
import io
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, cross_validate, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from RadiomicsLabLib.errors import RadiomicsLabError, RadiomicsLabWarning
from RadiomicsLabLib.study.harmonisation import ComBat, harmonisation_plots

from conftest import site_effects

SITES = np.array(["A", "B", "C"])
#: Agreement with neuroCombat asked for: 1e-6 of each feature's SD.
PARITY = 1e-6


def _site_table():
    data = load_breast_cancer()
    x0, y = data.data, data.target  # target: 0 malignant, 1 benign
    malignant = y == 0
    site, x = site_effects(x0, malignant)
    dx = malignant.astype(float)  # 1 = malignant
    return SimpleNamespace(x0=x0, x=x, site=site, dx=dx, malignant=malignant, names=list(data.feature_names),
                           with_dx=np.column_stack([site, dx, x]),  # columns: site, diagnosis, 30 features
                           without_dx=np.column_stack([site, x]))   # columns: site, 30 features


@pytest.fixture(scope="module")
def study():
    return _site_table()


def neurocombat(features, site, dx, **options):
    """neuroCombat's harmonised rows x features and its estimates (its progress messages silenced)."""
    import pandas as pd
    from neuroCombat import neuroCombat

    covars = pd.DataFrame({"site": site, "dx": dx})
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()), \
            np.errstate(divide="ignore", invalid="ignore"):  # its stopping rule divides by a reference gamma of 0
        patch.setattr(np, "int", int, raising=False)  # neuroCombat 0.2.12 uses np.int (ref_batch branch)
        result = neuroCombat(np.array(features, dtype=np.float64).T, covars, "site", **options)
    return result["data"].T, result["estimates"]


CASES = {  # id: (ComBat options, neuroCombat options, the table with the diagnosis column)
    "parametric": ({}, {}, False),
    "nonparametric": ({"parametric": False}, {"parametric": False}, False),
    "parametric_dx": ({"categorical_covariates": [1]}, {"categorical_cols": ["dx"]}, True),
    "nonparametric_dx": ({"categorical_covariates": [1], "parametric": False},
                         {"categorical_cols": ["dx"], "parametric": False}, True),
    "parametric_dx_numeric": ({"covariates": [1]}, {"continuous_cols": ["dx"]}, True),
    "reference": ({"reference_batch": 1}, {"ref_batch": 1}, False),
    "reference_dx": ({"categorical_covariates": [1], "reference_batch": 1},
                     {"categorical_cols": ["dx"], "ref_batch": 1}, True),
    "reference_dx_nonparametric": ({"categorical_covariates": [1], "reference_batch": 1, "parametric": False},
                                   {"categorical_cols": ["dx"], "ref_batch": 1, "parametric": False}, True),
    "no_eb_dx": ({"categorical_covariates": [1], "eb": False}, {"categorical_cols": ["dx"], "eb": False}, True),
}


def _check_estimates(model, estimates):
    np.testing.assert_allclose(model.grand_mean_, estimates["stand.mean"][:, 0], rtol=1e-9)
    np.testing.assert_allclose(model.var_pooled_, estimates["var.pooled"][:, 0], rtol=1e-9)
    np.testing.assert_allclose(model.gamma_star_, estimates["gamma.star"], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(model.delta_star_, estimates["delta.star"], rtol=1e-7, atol=1e-10)


# (1) parity with neuroCombat, fitted on all rows --------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_matches_neurocombat(study, case):
    options, peer_options, with_dx = CASES[case]
    table = study.with_dx if with_dx else study.without_dx
    model = ComBat(batch=0, **options).fit(table)
    ours = model.transform(table)
    theirs, estimates = neurocombat(study.x, study.site, study.dx, **peer_options)
    error = np.abs(ours - theirs).max(axis=0) / study.x.std(axis=0)
    assert error.max() < PARITY, f"{case}: worst feature differs by {error.max():.2e} SD"
    _check_estimates(model, estimates)
    if "reference_batch" in options:
        rows = study.site == 1
        assert np.array_equal(ours[rows], study.x[rows])  # the reference batch is left exactly as it was
        assert not np.allclose(ours[~rows], study.x[~rows])


# (2) fit on training rows, transform new rows with the frozen parameters --------------------------------------
def _by_hand(model, features, site_codes, dx):
    """The documented adjustment, from the fitted attributes: y* = sd/delta* (z - gamma*) + alpha + x beta."""
    mean = model.grand_mean_ + dx[:, None] * model.covariate_coef_[0]
    sd = np.sqrt(model.var_pooled_)
    z = (features - mean) / sd
    return (z - model.gamma_star_[site_codes]) / np.sqrt(model.delta_star_[site_codes]) * sd + mean


@pytest.mark.parametrize("parametric", [True, False], ids=["parametric", "nonparametric"])
def test_new_rows_use_the_frozen_training_parameters(study, parametric):
    train, test = train_test_split(np.arange(len(study.x)), test_size=0.3, random_state=0,
                                   stratify=study.site * 2 + study.dx)
    table = study.with_dx
    model = ComBat(batch=0, categorical_covariates=[1], parametric=parametric).fit(table[train])
    assert model.batch_sizes_.sum() == len(train)

    # The training estimates are neuroCombat's on the same rows, and so is the training rows' output.
    theirs, estimates = neurocombat(study.x[train], study.site[train], study.dx[train],
                                    categorical_cols=["dx"], parametric=parametric)
    _check_estimates(model, estimates)
    sd = study.x.std(axis=0)
    assert (np.abs(model.transform(table[train]) - theirs).max(axis=0) / sd).max() < PARITY

    # New rows: exactly the frozen formula, row by row (no statistic of the new rows enters).
    new = model.transform(table[test])
    expected = _by_hand(model, study.x[test], study.site[test], study.dx[test])
    assert (np.abs(new - expected).max(axis=0) / sd).max() < 1e-12
    one_by_one = np.vstack([model.transform(table[[i]]) for i in test[:20]])
    np.testing.assert_allclose(one_by_one, new[:20], rtol=0, atol=1e-12 * sd.max())

    # Refitting on all rows (test rows included) gives other numbers for the test rows: the split does not leak.
    refit = ComBat(batch=0, categorical_covariates=[1], parametric=parametric).fit(table).transform(table[test])
    assert (np.abs(refit - new).max(axis=0) / sd).max() > 1e-3


def test_new_rows_of_the_reference_batch_are_unchanged(study):
    train, test = train_test_split(np.arange(len(study.x)), test_size=0.3, random_state=1, stratify=study.site)
    model = ComBat(batch=0, categorical_covariates=[1], reference_batch=1).fit(study.with_dx[train])
    new = model.transform(study.with_dx[test])
    reference = study.site[test] == 1
    assert np.array_equal(new[reference], study.x[test][reference])
    others = _by_hand(model, study.x[test], study.site[test], study.dx[test])
    np.testing.assert_allclose(new[~reference], others[~reference], rtol=1e-12)


# (3) refused inputs and handled edge cases ------------------------------------------------------------------
def _labelled(study, sites=None):
    """Object table: site label (text), diagnosis, features."""
    table = study.with_dx.astype(object)
    table[:, 0] = SITES[study.site] if sites is None else sites
    return table


def test_unseen_batch_at_transform_is_named(study):
    model = ComBat(batch=0, categorical_covariates=[1]).fit(_labelled(study))
    new = _labelled(study)[:5]
    new[2, 0] = "D"
    with pytest.raises(RadiomicsLabError, match=r"not fitted on rows of batch\(es\) 'D'; it knows the batches 'A', 'B', 'C'"):
        model.transform(new)
    new[2, 1] = 7.0  # an unseen diagnosis level is named too
    new[2, 0] = "A"
    with pytest.raises(RadiomicsLabError, match="level\\(s\\) 7.0 not seen in fit; it knows 0.0, 1.0"):
        model.transform(new)


def test_one_row_batch_is_refused(study):
    sites = SITES[study.site].astype(object)
    sites[10] = "D"
    with pytest.raises(RadiomicsLabError, match="Batch\\(es\\) 'D' have fewer than 2 rows"):
        ComBat(batch=0).fit(_labelled(study, sites))


@pytest.mark.parametrize("options, message", [
    ({"reference_batch": "Z"}, "reference_batch 'Z'"),
    ({"batch": 40}, "batch column 40 is not a column"),
    ({"batch": "site"}, "given by name, but X has no column names"),
    ({"covariates": [0]}, "must all differ"),
])
def test_bad_parameters_are_refused(study, options, message):
    with pytest.raises(RadiomicsLabError, match=message):
        ComBat(**{"batch": 0, **options}).fit(_labelled(study))


def test_single_batch_confounded_covariate_and_nan_are_refused(study):
    with pytest.raises(RadiomicsLabError, match="at least 2 batches"):
        ComBat(batch=0).fit(_labelled(study, np.full(len(study.x), "A", dtype=object)))
    confounded = np.column_stack([study.site, study.site * 2.0 + 1, study.x])  # a covariate that is the site
    with pytest.raises(RadiomicsLabError, match="confounded with the batch"):
        ComBat(batch=0, covariates=[1]).fit(confounded)
    holes = study.without_dx.copy()
    holes[3, 5] = np.nan
    with pytest.raises(RadiomicsLabError, match="1 row\\(s\\) have NaN"):
        ComBat(batch=0).fit(holes)


def test_constant_features_pass_through_unchanged(study):
    """A feature constant within a batch (here: everywhere, and within site B only) is not adjusted (as sva's
    ComBat); it stays as it was and the other features are harmonised as if it were not there."""
    constant = np.full(len(study.x), 3.5)
    flat_in_b = study.x[:, 0].copy()
    flat_in_b[study.site == 1] = 1.0
    table = np.column_stack([study.without_dx[:, :1], constant, flat_in_b, study.x])
    with pytest.warns(RadiomicsLabWarning, match="leaves 2 feature\\(s\\) unchanged: column 1, column 2"):
        model = ComBat(batch=0).fit(table)
    out = model.transform(table)
    assert list(model.adjusted_features_[:2]) == [False, False] and model.adjusted_features_[2:].all()
    assert np.array_equal(out[:, 0], constant) and np.array_equal(out[:, 1], flat_in_b)
    np.testing.assert_allclose(out[:, 2:], ComBat(batch=0).fit_transform(study.without_dx), rtol=1e-12)


def test_fitted_state_is_only_in_underscore_attributes(study):
    model = ComBat(batch=0, categorical_covariates=[1])
    before = dict(vars(model))
    model.fit(study.with_dx)
    added = set(vars(model)) - set(before)
    assert added and all(name.endswith("_") for name in added)
    assert {k: vars(model)[k] for k in before} == before  # the parameters are untouched
    again = clone(model).fit(study.with_dx)  # deterministic: no random_state
    assert np.array_equal(again.transform(study.with_dx), model.transform(study.with_dx))


# (4) inside a Pipeline under cross-validation -----------------------------------------------------------------
def test_pipeline_cross_validation_fits_combat_on_training_folds_only(study):
    """The site is column 0 of X; ComBat consumes it and hands the classifier the 30 harmonised features.
    (The diagnosis is the target here, so it is not protected: it would hand the model the label.)"""
    pipeline = Pipeline([("combat", ComBat(batch=0)), ("scale", StandardScaler()),
                         ("model", LogisticRegression(max_iter=5000))])
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = cross_val_score(pipeline, study.without_dx, study.dx, cv=folds, scoring="roc_auc")
    assert scores.shape == (5,) and np.all(scores > 0.95)
    result = cross_validate(pipeline, study.without_dx, study.dx, cv=folds, return_estimator=True,
                            return_indices=True)
    for estimator, train in zip(result["estimator"], result["indices"]["train"]):
        combat = estimator.named_steps["combat"]
        assert np.array_equal(combat.batch_sizes_, np.bincount(study.site[train]))
        assert estimator.named_steps["model"].coef_.shape == (1, 30)


def test_data_frame_columns_by_name(study):
    import pandas as pd

    frame = pd.DataFrame(study.x, columns=study.names)
    frame.insert(0, "diagnosis", np.where(study.malignant, "malignant", "benign"))
    frame.insert(0, "site", SITES[study.site])
    model = ComBat(batch="site", categorical_covariates=["diagnosis"]).set_output(transform="pandas")
    out = model.fit_transform(frame)
    assert list(out.columns) == study.names
    positional = ComBat(batch=0, categorical_covariates=[1]).fit_transform(study.with_dx)
    np.testing.assert_allclose(out.to_numpy(), positional, rtol=1e-12)
    assert list(model.batches_) == ["A", "B", "C"]


# (5) the batch effect goes, the covariate effect stays ----------------------------------------------------------
def _site_offsets(study, features):
    """Per feature: the largest deviation of a site's diagnosis-adjusted mean from the mean of the three, in
    standard errors of a site mean (residual SD / sqrt(rows of the smallest site)). Least squares of each feature
    on [site indicators, diagnosis]."""
    design = np.column_stack([(study.site[:, None] == np.arange(3)).astype(float), study.dx])
    coef = np.linalg.lstsq(design, features, rcond=None)[0]
    residual_sd = (features - design @ coef).std(axis=0, ddof=design.shape[1])
    standard_error = residual_sd / np.sqrt(np.bincount(study.site).min())
    return np.abs(coef[:3] - coef[:3].mean(axis=0)).max(axis=0) / standard_error


def _diagnosis_error(study, features):
    """Per feature: |malignant - benign mean difference - the real one (before site effects)| in standard
    errors of that difference."""
    x0, m = study.x0, study.malignant
    real = x0[m].mean(axis=0) - x0[~m].mean(axis=0)
    standard_error = np.sqrt(x0[m].var(axis=0, ddof=1) / m.sum() + x0[~m].var(axis=0, ddof=1) / (~m).sum())
    return np.abs(features[m].mean(axis=0) - features[~m].mean(axis=0) - real) / standard_error


def test_batch_effect_removed_and_diagnosis_effect_preserved(study):
    """Tolerances. Site offsets are measured in standard errors (SE) of a site mean: the real features, split
    into sites at random, already differ by up to ~1.8 SE by chance; the made site effects put the sites 11 SE
    apart (median feature). With eb=False ComBat removes the offsets exactly (up to the small mismatch of the
    refitted diagnosis slope); empirical Bayes shrinks each site's estimate toward the mean of all features, so
    a fraction delta*/(n tau^2 + delta*) of the offset stays: below 1 SE (chance level) for the parametric
    solution. The non-parametric prior shrinks harder (a few features keep up to ~2.5 SE); we ask that its
    median is below 1 SE. The diagnosis effect: the malignant-benign difference of every feature after
    harmonisation with the diagnosis protected stays within 2 SE of the real difference (median below 0.5 SE),
    and closer than without protecting it (then part of the diagnosis effect is removed as a site effect,
    because the sites differ in their share of malignant tumours)."""
    raw = _site_offsets(study, study.x)
    assert np.median(raw) > 5

    protected = ComBat(batch=0, categorical_covariates=[1]).fit_transform(study.with_dx)
    assert _site_offsets(study, protected).max() < 1.0
    no_eb = ComBat(batch=0, categorical_covariates=[1], eb=False).fit_transform(study.with_dx)
    assert _site_offsets(study, no_eb).max() < 0.25
    nonparametric = ComBat(batch=0, categorical_covariates=[1], parametric=False).fit_transform(study.with_dx)
    assert np.median(_site_offsets(study, nonparametric)) < 1.0

    kept = _diagnosis_error(study, protected)
    assert kept.max() < 2.0 and np.median(kept) < 0.5
    unprotected = ComBat(batch=0).fit_transform(study.without_dx)
    assert np.median(_diagnosis_error(study, unprotected)) > 1.5 * np.median(kept)
    assert np.median(_diagnosis_error(study, study.x)) > 1.0  # the site effects did distort it


# plots -----------------------------------------------------------------------------------------------------------
def test_harmonisation_plots(study, tmp_path):
    from matplotlib.image import imread

    after = ComBat(batch=0, categorical_covariates=[1]).fit_transform(study.with_dx)
    written = harmonisation_plots(study.x, after, SITES[study.site], tmp_path / "plots", feature_names=study.names)
    assert set(written) == {"harmonisation_distributions.png", "harmonisation_pca.png"}
    for path in written.values():
        image = imread(path)
        assert image.shape[0] > 400 and image.shape[1] > 800
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(written)  # no temporary files left
    with pytest.raises(RadiomicsLabError, match="same shape"):
        harmonisation_plots(study.x, after[:, :3], study.site, tmp_path)
    with pytest.raises(RadiomicsLabError, match="No feature named 'nope'"):
        harmonisation_plots(study.x, after, study.site, tmp_path, features=["nope"], feature_names=study.names)


def test_no_warnings_on_clean_data(study):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ComBat(batch=0, categorical_covariates=[1]).fit_transform(study.with_dx)
