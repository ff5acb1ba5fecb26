"""Tests of RadiomicsLabLib.study.metrics on real data against published numbers and independent code.

Data used (all real, public):
* scikit-learn's breast cancer Wisconsin table (569 patients; positive class = malignant), with
  predictions of two logistic models from 5-fold ``cross_val_predict`` (all 30 features vs 3 features).
* pROC's ``aSAH`` data (Turck et al. 2010, Intensive Care Med 36:107; 113 patients with aneurysmal
  subarachnoid haemorrhage, outcome Good/Poor, WFNS grade, S100B, NDKA), copied below from
  pROC's ``data/aSAH.RData`` (https://github.com/xrobin/pROC), with pROC's own expected values from its
  test suite (``tests/testthat/test-var.R``, ``test-cov.R``, ``test-ci.auc.R``, ``test-roc.test.R``).
* Freireich et al. 1963 (Blood 21:699) 6-MP / placebo leukaemia remission times (42 patients), as
  printed in Klein & Moeschberger, *Survival Analysis* (1997/2003), section 1.2 and table 4.1A,
  and in Cox 1972 (the "gehan" data).
* The bone-marrow-transplant data of Klein & Moeschberger section 1.3 (137 patients, 3 groups:
  disease-free survival in days), copied below from statsmodels' test data
  (``statsmodels/duration/tests/results/bmt.csv``), with the SAS PROC LIFETEST Kaplan-Meier estimates
  and R ``survdiff`` log-rank statistic that statsmodels' tests quote.
* The Stanford heart transplant data shipped with statsmodels (``statsmodels.datasets.heart``; Miller
  1976, Biometrika 63:449; 69 patients, age).

No real censored cohort with a published Harrell/Uno C is available offline, so those are checked
against direct O(n^2) definitions written here, scipy's Somers' D, and a small example worked by hand.
* scikit-survival's WHAS500 (Worcester Heart Attack Study, 500 patients) and GBSG2 (686 breast cancer
  patients), with a Cox elastic-net risk: Harrell's C, Uno's C, the cumulative/dynamic AUC and the integrated
  Brier score equal ``sksurv.metrics``' (see :func:`_sksurv_cohort` for the one change to the data: censoring
  times tied with an event time moved 0.5 day later, where our G(T-) and sksurv's G(T) weights differ).
lifelines parity is pending a lifelines release compatible with the project's pandas.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.study import metrics as M

# --------------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------------

# pROC aSAH (113 patients, in the data set's row order). outcome: 1 = Poor, 0 = Good.
ASAH_OUTCOME = "00001101001011001011101000000000100110110000000001100010001010011101101111000110100000010000000000001111110001000"
ASAH_WFNS = "11113254125255125225211112121134214541425511241125521251222151125214524414121421232421451154221113125225552445111"
ASAH_S100B = """
0.13 0.14 0.1 0.04 0.13 0.1 0.47 0.16 0.18 0.1 0.12 0.1 0.44 0.71 0.04 0.08 0.49 0.04 0.07 0.33 0.09
0.09 0.07 0.11 0.07 0.17 0.07 0.11 0.13 0.19 0.05 0.16 0.41 0.14 0.34 0.35 0.48 0.09 0.96 0.25 0.5
0.46 0.16 0.07 0.43 0.45 0.11 0.08 0.09 0.86 0.52 0.08 0.06 0.13 2.07 0.1 0.14 0.15 0.07 0.06 0.77
0.05 0.09 0.3 0.03 0.09 0.04 0.23 0.7 0.09 0.27 0.71 0.08 0.26 0.08 0.16 0.09 0.13 0.1 0.08 0.11
0.33 0.11 0.28 0.07 0.1 0.32 0.22 0.07 0.05 0.24 0.38 0.1 0.15 0.08 0.14 0.1 0.07 0.04 0.19 0.56
0.14 0.58 0.32 0.82 0.74 0.15 0.47 0.17 0.44 0.15 0.5 0.48
"""
ASAH_NDKA = """
3.01 8.54 8.09 10.42 17.4 12.75 6.0 13.2 15.54 6.01 15.96 17.86 5.18 8.9 13.41 20.75 11.6 16.11
32.37 54.82 32.41 49.94 40.34 9.47 6.29 12.53 6.54 6.3 80.3 12.8 9.8 9.81 9.85 18.21 5.03 14.04
21.93 8.02 7.42 8.38 6.59 9.63 13.12 7.96 14.34 41.43 7.63 7.06 12.59 13.56 3.87 9.44 7.66 12.98
419.19 27.19 22.27 9.95 21.22 11.73 10.4 58.83 6.39 11.09 12.22 13.67 17.21 22.63 12.9 9.7 21.57
8.23 72.57 15.54 10.51 10.6 14.57 5.19 9.63 4.61 21.48 17.3 12.71 9.44 11.07 19.46 10.83 5.37 11.97
7.75 9.83 10.55 28.49 8.53 12.57 12.9 46.83 11.68 12.67 9.01 9.57 34.06 11.72 14.26 47.61 11.67
24.58 10.33 13.87 15.89 22.43 6.79 13.45
"""

# Freireich 1963 remission times in weeks; "+" = censored (still in remission).
FREIREICH_6MP = "6 6 6 6+ 7 9+ 10 10+ 11+ 13 16 17+ 19+ 20+ 22 23 25+ 32+ 32+ 34+ 35+"
FREIREICH_PLACEBO = "1 1 2 2 3 4 4 5 5 8 8 8 8 11 11 12 12 15 17 22 23"

# Klein & Moeschberger BMT data (days of disease-free survival; "+" = censored), per disease group.
BMT = {
    "ALL": "2081+ 1602+ 1496+ 1462+ 1433+ 1377+ 1330+ 996+ 226+ 1199+ 1111+ 530+ 1182+ 1167+ 418 383 276 104 "
           "609 172 487 662 194 230 526 122 129 74 122 86 466 192 109 55 1 107 110 332",
    "AML-Low Risk": "2569+ 2506+ 2409+ 2218+ 1857+ 1829+ 1562+ 1470+ 1363+ 1030+ 860+ 1258+ 2246+ 1870+ 1799+ "
                    "1709+ 1674+ 1568+ 1527+ 1324+ 957+ 932+ 847+ 848+ 1850+ 1843+ 1535+ 1447+ 1384+ 414 2204 "
                    "1063 481 105 641 390 288 421 79 748 486 48 272 1074 381 10 53 80 35 248 704 211 219 606",
    "AML-High Risk": "2640+ 2430+ 2252+ 2140+ 2133+ 1238+ 1631+ 2024+ 1345+ 1136+ 845+ 422 162 84 100 2 47 242 "
                     "456 268 318 32 467 47 390 183 105 115 164 93 120 80 677 64 168 74 16 157 625 48 273 63 76 "
                     "113 363",
}
# SAS PROC LIFETEST Kaplan-Meier estimates and Greenwood SEs for the ALL group (as in statsmodels'
# results/bmt_results.csv): time, S(t), SE.
BMT_ALL_SAS = [
    (1, 0.97368, 0.025967), (55, 0.94737, 0.036224), (74, 0.92105, 0.043744), (86, 0.89474, 0.049784),
    (104, 0.86842, 0.054836), (107, 0.84211, 0.059153), (109, 0.81579, 0.062886), (110, 0.78947, 0.066135),
    (122, 0.73684, 0.071434), (129, 0.71053, 0.073570), (172, 0.68421, 0.075405), (192, 0.65789, 0.076960),
    (194, 0.63158, 0.078252), (230, 0.60412, 0.079522), (276, 0.57666, 0.080509), (332, 0.54920, 0.081223),
    (383, 0.52174, 0.081672), (418, 0.49428, 0.081860), (466, 0.46682, 0.081788), (487, 0.43936, 0.081457),
    (526, 0.41190, 0.080862), (609, 0.38248, 0.080260), (662, 0.35306, 0.079296),
]


def _parse_times(text):
    items = text.split()
    t = np.array([float(x.rstrip("+")) for x in items])
    e = np.array([0 if x.endswith("+") else 1 for x in items])
    return t, e


def _asah():
    y = np.array([int(c) for c in ASAH_OUTCOME])
    wfns = np.array([float(c) for c in ASAH_WFNS])
    s100b = np.array(ASAH_S100B.split(), dtype=float)
    ndka = np.array(ASAH_NDKA.split(), dtype=float)
    assert y.size == wfns.size == s100b.size == ndka.size == 113 and y.sum() == 41
    return y, wfns, s100b, ndka


def _bmt():
    times, events, groups = [], [], []
    for g, text in BMT.items():
        t, e = _parse_times(text)
        times.append(t)
        events.append(e)
        groups += [g] * t.size
    return np.concatenate(times), np.concatenate(events), np.array(groups)


@pytest.fixture(scope="module")
def cancer():
    """Breast cancer Wisconsin: y = 1 for malignant; out-of-fold probabilities of two logistic models."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    X = data.data
    y = 1 - data.target
    three = [list(data.feature_names).index(f) for f in ("mean radius", "mean texture", "mean smoothness")]
    cv = StratifiedKFold(5, shuffle=True, random_state=0)

    def oof(cols):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        return cross_val_predict(model, X[:, cols], y, cv=cv, method="predict_proba")[:, 1]

    return {"X": X, "y": y, "three": three, "p30": oof(list(range(30))), "p3": oof(three)}


# --------------------------------------------------------------------------------------------------
# AUC, DeLong
# --------------------------------------------------------------------------------------------------


def _exact_mann_whitney(y, p):
    pos, neg = p[y == 1], p[y == 0]
    twice = sum(2 * int(np.sum(x > neg)) + int(np.sum(x == neg)) for x in pos)
    return Fraction(twice, 2 * pos.size * neg.size)


def test_auc_equals_sklearn_and_exact_mann_whitney(cancer):
    from sklearn.metrics import roc_auc_score

    y = cancer["y"]
    for p in (cancer["p30"], cancer["p3"], np.round(cancer["p30"], 2), np.round(cancer["p3"], 1)):
        ours = M.roc_auc(y, p)
        # bit for bit the correctly rounded exact Mann-Whitney value
        assert ours == float(_exact_mann_whitney(y, p))
        # sklearn's trapezoid sum rounds differently: equal up to one or two units in the last place
        assert abs(ours - roc_auc_score(y, p)) <= 4e-16
        assert M.auc_delong(y, p).auc == ours
    assert M.roc_auc(y, cancer["p30"]) == pytest.approx(0.99528, abs=1e-5)
    assert M.roc_auc(y, cancer["p3"]) == pytest.approx(0.97947, abs=1e-5)


def test_delong_matches_pROC_on_aSAH():
    """pROC's expected numbers (its test suite) for the aSAH data."""
    y, wfns, s100b, ndka = _asah()
    # var() with method "delong"
    assert M.auc_delong(y, wfns).variance == pytest.approx(0.00146991470882363, rel=1e-10)
    assert M.auc_delong(y, ndka).variance == pytest.approx(0.0031908105493913, rel=1e-10)
    assert M.auc_delong(y, s100b).variance == pytest.approx(0.00266868245717244, rel=1e-10)
    # cov()
    _, cov = M.delong_covariance(y, wfns, ndka, s100b)
    assert cov[0, 1] == pytest.approx(-0.000532967856762438, rel=1e-10)
    assert cov[1, 2] == pytest.approx(-0.000756164938056579, rel=1e-10)
    assert cov[2, 0] == pytest.approx(0.00119615567376754, rel=1e-10)
    # ci.auc(r.ndka)
    r = M.auc_delong(y, ndka)
    assert (r.ci_low, r.auc, r.ci_high) == pytest.approx((0.501244999271703, 0.611957994579946, 0.722670989888189), rel=1e-10)
    # roc.test(r.wfns, r.s100b), (r.wfns, r.ndka), (r.ndka, r.s100b)
    for a, b, z, p, lo, hi in (
        (wfns, s100b, 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
        (wfns, ndka, 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
        (ndka, s100b, -1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
    ):
        t = M.delong_test(y, a, b)
        assert t.z == pytest.approx(z, rel=1e-10)
        assert t.p_value == pytest.approx(p, rel=1e-9)
        assert (t.ci_low, t.ci_high) == pytest.approx((lo, hi), rel=1e-9)
        assert M.delong_test(y, b, a).z == pytest.approx(-z, rel=1e-10)
    same = M.delong_test(y, wfns, wfns)
    assert same.z == 0.0 and same.p_value == 1.0


def test_delong_matches_direct_placement_values(cancer):
    """DeLong 1988 written out with an explicit n_pos x n_neg kernel matrix (O(n^2))."""
    y = cancer["y"]
    scores = [cancer["p30"], cancer["p3"], np.round(cancer["p3"], 1)]  # the last has many ties
    v10, v01, aucs = [], [], []
    for s in scores:
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = int(y.sum()), int((1 - y).sum())
    direct = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    got_aucs, got = M.delong_covariance(y, *scores)
    np.testing.assert_allclose(got_aucs, aucs, rtol=1e-13)
    np.testing.assert_allclose(got, direct, rtol=1e-10, atol=1e-15)
    t = M.delong_test(y, scores[0], scores[1])
    se = np.sqrt(direct[0, 0] + direct[1, 1] - 2 * direct[0, 1])
    assert t.z == pytest.approx((aucs[0] - aucs[1]) / se, rel=1e-9)
    assert t.p_value == pytest.approx(2 * stats.norm.sf(abs(t.z)), rel=1e-12)
    assert t.p_value < 0.001  # 30 features discriminate better than 3 on these patients
    r = M.auc_delong(y, scores[1], confidence=0.9)
    assert r.ci_high - r.auc == pytest.approx(stats.norm.ppf(0.95) * np.sqrt(direct[1, 1]), rel=1e-10)


def test_bootstrap_auc_ci_close_to_delong(cancer):
    y = cancer["y"]
    p = cancer["p3"]
    d = M.auc_delong(y, p)
    b = M.auc_bootstrap(y, p, n_bootstrap=2000, seed=0)
    assert b.auc == d.auc
    assert abs(b.ci_low - d.ci_low) < 0.003 and abs(b.ci_high - d.ci_high) < 0.003
    assert b.se == pytest.approx(d.se, rel=0.15)
    again = M.auc_bootstrap(y, p, n_bootstrap=2000, seed=0)
    assert (again.ci_low, again.ci_high) == (b.ci_low, b.ci_high)
    other = M.auc_bootstrap(y, p, n_bootstrap=2000, seed=1)
    assert (other.ci_low, other.ci_high) != (b.ci_low, b.ci_high)
    # unstratified resampling is also close on aSAH (the generic bootstrap_ci agrees with auc_bootstrap)
    ya, _, _, ndka = _asah()
    da = M.auc_delong(ya, ndka)
    ba = M.auc_bootstrap(ya, ndka, n_bootstrap=2000, seed=0, stratified=False)
    assert abs(ba.ci_low - da.ci_low) < 0.02 and abs(ba.ci_high - da.ci_high) < 0.02
    gen = M.bootstrap_ci(M.roc_auc, ya, ndka, n_bootstrap=300, seed=3, strata=ya)
    spec = M.auc_bootstrap(ya, ndka, n_bootstrap=300, seed=3)
    assert (gen.ci_low, gen.ci_high) == pytest.approx((spec.ci_low, spec.ci_high), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# threshold metrics
# --------------------------------------------------------------------------------------------------


def test_wilson_matches_newcombe_1998_examples():
    """Newcombe 1998 (Stat Med 17:857) table II, method 3 (score interval without continuity correction)."""
    for k, n, lo, hi in ((81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)):
        got = M.wilson_interval(k, n)
        assert got == pytest.approx((lo, hi), abs=5e-5)
    sm = pytest.importorskip("statsmodels.stats.proportion")
    for k, n in ((0, 7), (3, 7), (7, 7), (212, 569)):
        assert M.wilson_interval(k, n, 0.9) == pytest.approx(sm.proportion_confint(k, n, alpha=0.1, method="wilson"), abs=1e-12)


def test_threshold_metrics_by_hand(cancer):
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    y, p = cancer["y"], cancer["p3"]
    for thr in (0.2, 0.5, 0.8):
        tn, fp, fn, tp = confusion_matrix(y, (p >= thr).astype(int)).ravel()
        assert M.confusion_counts(y, p, thr) == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
        r = M.threshold_metrics(y, p, thr)
        assert list(r) == ["balanced_accuracy", "sensitivity", "specificity", "ppv", "npv"]
        assert r["sensitivity"].estimate == tp / (tp + fn)
        assert r["specificity"].estimate == tn / (tn + fp)
        assert r["ppv"].estimate == tp / (tp + fp)
        assert r["npv"].estimate == tn / (tn + fn)
        assert r["balanced_accuracy"].estimate == pytest.approx(balanced_accuracy_score(y, p >= thr), abs=1e-15)
        assert (r["sensitivity"].ci_low, r["sensitivity"].ci_high) == M.wilson_interval(tp, tp + fn)
        assert (r["npv"].ci_low, r["npv"].ci_high) == M.wilson_interval(tn, tn + fn)
        # MOVER balanced-accuracy interval by hand
        se, sp = r["sensitivity"], r["specificity"]
        b = r["balanced_accuracy"]
        assert b.ci_low == pytest.approx(b.estimate - np.hypot(se.estimate - se.ci_low, sp.estimate - sp.ci_low) / 2, abs=1e-15)
        assert b.ci_high == pytest.approx(b.estimate + np.hypot(se.ci_high - se.estimate, sp.ci_high - sp.estimate) / 2, abs=1e-15)
        # the bootstrap intervals are close to the analytic ones for these sample sizes
        rb = M.threshold_metrics(y, p, thr, method="bootstrap", n_bootstrap=2000, seed=0)
        for key in r:
            assert rb[key].estimate == r[key].estimate
            assert abs(rb[key].ci_low - r[key].ci_low) < 0.025 and abs(rb[key].ci_high - r[key].ci_high) < 0.025
    # no positive calls: PPV is undefined
    assert np.isnan(M.threshold_metrics(y, p, 1.01)["ppv"].estimate)


def test_choose_threshold_youden_on_training_predictions(cancer):
    from sklearn.metrics import roc_curve

    y, p = cancer["y"], cancer["p3"]
    train = np.arange(y.size) % 2 == 0
    thr = M.choose_threshold(y[train], p[train])
    fpr, tpr, _ = roc_curve(y[train], p[train])
    c = M.confusion_counts(y[train], p[train], thr)
    j = c["tp"] / (c["tp"] + c["fn"]) + c["tn"] / (c["tn"] + c["fp"]) - 1
    assert j == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    # the threshold lies strictly between two training predictions (a midpoint)
    assert not np.any(p[train] == thr)
    ctl = M.choose_threshold(y[train], p[train], "closest_topleft")
    c = M.confusion_counts(y[train], p[train], ctl)
    d = (1 - c["tp"] / (c["tp"] + c["fn"])) ** 2 + (1 - c["tn"] / (c["tn"] + c["fp"])) ** 2
    assert d == pytest.approx(np.min((1 - tpr) ** 2 + fpr ** 2), abs=1e-12)
    # then applied unchanged to the other half
    assert 0.8 < M.threshold_metrics(y[~train], p[~train], thr)["balanced_accuracy"].estimate < 1.0


# --------------------------------------------------------------------------------------------------
# Brier, calibration
# --------------------------------------------------------------------------------------------------


def test_brier_equals_sklearn(cancer):
    from sklearn.metrics import brier_score_loss

    for p in (cancer["p30"], cancer["p3"]):
        assert M.brier_score(cancer["y"], p) == pytest.approx(brier_score_loss(cancer["y"], p), abs=1e-15)


def test_calibration_identity_for_fitted_logistic_model(cancer):
    """Fitted values of an unpenalised ML logistic model on its own training data: a = 0, b = 1 exactly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    y = cancer["y"]
    X = StandardScaler().fit_transform(cancer["X"][:, cancer["three"]])
    model = LogisticRegression(C=np.inf, solver="newton-cg", tol=1e-12, max_iter=10_000).fit(X, y)
    p = model.predict_proba(X)[:, 1]
    a = M.calibration_intercept(y, p)
    b = M.calibration_slope(y, p)
    assert abs(a.estimate) < 1e-8
    assert abs(b.estimate - 1.0) < 1e-8
    assert a.ci_low < 0 < a.ci_high and b.ci_low < 1 < b.ci_high


def test_calibration_matches_statsmodels_glm(cancer):
    sm = pytest.importorskip("statsmodels.api")
    y = cancer["y"]
    for p in (cancer["p30"], cancer["p3"]):
        q = np.clip(p, 1e-12, 1 - 1e-12)  # the 30-feature model predicts exactly 1.0 for some patients
        lp = np.log(q / (1 - q))
        z = stats.norm.ppf(0.975)
        g = sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=lp).fit(tol=1e-12)
        a = M.calibration_intercept(y, p)
        assert a.estimate == pytest.approx(g.params[0], abs=1e-7)
        assert (a.ci_low, a.ci_high) == pytest.approx((g.params[0] - z * g.bse[0], g.params[0] + z * g.bse[0]), abs=1e-6)
        g = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit(tol=1e-12)
        b = M.calibration_slope(y, p)
        assert b.estimate == pytest.approx(g.params[1], abs=1e-7)
        assert (b.ci_low, b.ci_high) == pytest.approx((g.params[1] - z * g.bse[1], g.params[1] + z * g.bse[1]), abs=1e-6)


def test_calibration_detects_overfitting_and_shift(cancer):
    """Known transformations: logit p / 2 doubles the slope; a shift of the logit moves the intercept back."""
    y = cancer["y"]
    p = cancer["p3"]
    lp = np.log(p / (1 - p))
    b0 = M.calibration_slope(y, p).estimate
    assert M.calibration_slope(y, 1 / (1 + np.exp(-lp / 2))).estimate == pytest.approx(2 * b0, rel=1e-8)
    a0 = M.calibration_intercept(y, p).estimate
    assert M.calibration_intercept(y, 1 / (1 + np.exp(-(lp - 1.0)))).estimate == pytest.approx(a0 + 1.0, abs=1e-8)


# --------------------------------------------------------------------------------------------------
# NRI, IDI, decision curves
# --------------------------------------------------------------------------------------------------


def test_nri_idi_by_hand(cancer):
    y, old, new = cancer["y"], cancer["p3"], cancer["p30"]
    ev, ne = y == 1, y == 0
    # continuous NRI by explicit counting
    up, down = new > old, new < old
    nri_e = (np.sum(up[ev]) - np.sum(down[ev])) / ev.sum()
    nri_ne = (np.sum(down[ne]) - np.sum(up[ne])) / ne.sum()
    r = M.nri(y, old, new, n_bootstrap=500, seed=0)
    assert r.kind == "continuous"
    assert (r.estimate, r.events, r.nonevents) == pytest.approx((nri_e + nri_ne, nri_e, nri_ne), abs=1e-15)
    assert r.ci_low < r.estimate < r.ci_high
    # categorical NRI with cut-offs 10 % and 50 %, categories written out
    def category(p):
        return [0 if q < 0.1 else (1 if q < 0.5 else 2) for q in p]

    co, cn = np.array(category(old)), np.array(category(new))
    nri_cat = (np.sum(cn[ev] > co[ev]) - np.sum(cn[ev] < co[ev])) / ev.sum() + \
              (np.sum(cn[ne] < co[ne]) - np.sum(cn[ne] > co[ne])) / ne.sum()
    rc = M.nri(y, old, new, cutoffs=[0.1, 0.5], n_bootstrap=200)
    assert rc.kind == "categorical" and rc.estimate == pytest.approx(nri_cat, abs=1e-15)
    # IDI = difference of discrimination slopes
    idi = (new[ev].mean() - new[ne].mean()) - (old[ev].mean() - old[ne].mean())
    ri = M.idi(y, old, new, n_bootstrap=500, seed=0)
    assert ri.estimate == pytest.approx(idi, abs=1e-15)
    assert ri.ci_low < ri.estimate < ri.ci_high
    assert ri.ci_low > 0  # 30 features separate the classes better than 3
    # a model against itself
    assert M.nri(y, old, old, n_bootstrap=50).estimate == 0.0
    assert M.idi(y, old, old, n_bootstrap=50).estimate == 0.0
    # deterministic given the seed
    assert M.nri(y, old, new, n_bootstrap=200, seed=5) == M.nri(y, old, new, n_bootstrap=200, seed=5)


def test_net_benefit_by_hand(cancer):
    y, p = cancer["y"], cancer["p3"]
    n = y.size
    for pt in (0.05, 0.1, 0.3, 0.5, 0.9):
        tp = sum(1 for yi, pi in zip(y, p) if pi >= pt and yi == 1)
        fp = sum(1 for yi, pi in zip(y, p) if pi >= pt and yi == 0)
        assert M.net_benefit(y, p, pt)[0] == pytest.approx(tp / n - fp / n * pt / (1 - pt), abs=1e-15)
    dc = M.decision_curve(y, {"three": p, "all30": cancer["p30"]}, thresholds=[0.1, 0.2, 0.5])
    prev = y.mean()
    np.testing.assert_allclose(dc["treat_all"], prev - (1 - prev) * np.array([0.1, 0.2, 0.5]) / np.array([0.9, 0.8, 0.5]))
    np.testing.assert_array_equal(dc["treat_none"], 0.0)
    # treating everyone is the model that calls every patient positive
    assert M.net_benefit(y, np.ones(n), 0.2)[0] == pytest.approx(dc["treat_all"][1], abs=1e-15)
    assert np.all(dc["all30"] >= dc["treat_all"]) and np.all(dc["all30"] > 0)
    assert len(M.decision_curve(y, p)["threshold"]) == 99


# --------------------------------------------------------------------------------------------------
# Kaplan-Meier, log-rank
# --------------------------------------------------------------------------------------------------


def test_kaplan_meier_freireich_published_table():
    """6-MP arm: Klein & Moeschberger table 4.1A (S(t) and Greenwood SE); placebo arm: Stata sts list
    log-log intervals (G. Rodriguez, Princeton WWS 509 notes on the Gehan data)."""
    t, e = _parse_times(FREIREICH_6MP)
    km = M.kaplan_meier(t, e)
    ev = km.n_events > 0
    np.testing.assert_array_equal(km.times[ev], [6, 7, 10, 13, 16, 22, 23])
    np.testing.assert_array_equal(km.n_at_risk[ev], [21, 17, 15, 12, 11, 7, 6])
    np.testing.assert_allclose(km.survival[ev], [0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448], atol=5e-4)
    np.testing.assert_allclose(km.std_error[ev], [0.0764, 0.0869, 0.0963, 0.1068, 0.1141, 0.1282, 0.1346], atol=5e-5)
    assert km.median() == 23.0
    assert km.survival_at([0, 5.9, 6, 9, 35, 100]) == pytest.approx([1, 1, 18 / 21, 0.806723, 0.448179, 0.448179], abs=1e-6)
    tp, ep = _parse_times(FREIREICH_PLACEBO)
    kp = M.kaplan_meier(tp, ep)
    assert kp.median() == 8.0
    np.testing.assert_allclose(kp.survival[:2], [0.9048, 0.8095], atol=5e-5)
    np.testing.assert_allclose(kp.std_error[:2], [0.0641, 0.0857], atol=5e-5)
    np.testing.assert_allclose(kp.ci_low[:2], [0.6700, 0.5689], atol=5e-5)
    np.testing.assert_allclose(kp.ci_high[:2], [0.9753, 0.9239], atol=5e-5)
    assert kp.survival[-1] == 0.0 and np.isnan(kp.ci_low[-1])
    # "log" and "plain" intervals by their formulas
    v = (km.std_error[ev] / km.survival[ev]) ** 2
    z = stats.norm.ppf(0.975)
    kl = M.kaplan_meier(t, e, conf_type="log")
    np.testing.assert_allclose(kl.ci_low[ev], km.survival[ev] * np.exp(-z * np.sqrt(v)), rtol=1e-12)
    kpl = M.kaplan_meier(t, e, conf_type="plain")
    np.testing.assert_allclose(kpl.ci_high[ev], np.minimum(1, km.survival[ev] + z * km.std_error[ev]), rtol=1e-12)


def test_log_rank_freireich():
    """R survival::survdiff on these data: Chisq = 16.8 on 1 df, p = 4.17e-05; O = 21 / 9, E = 10.7 / 19.3."""
    t1, e1 = _parse_times(FREIREICH_6MP)
    t0, e0 = _parse_times(FREIREICH_PLACEBO)
    r = M.log_rank_test(np.r_[t0, t1], np.r_[e0, e1], ["placebo"] * 21 + ["6-MP"] * 21)
    assert r.groups == ("6-MP", "placebo")
    assert r.statistic == pytest.approx(16.7929, abs=5e-5) and r.df == 1
    assert r.p_value == pytest.approx(4.17e-05, abs=5e-8)
    np.testing.assert_array_equal(r.observed, [9, 21])
    np.testing.assert_allclose(r.expected, [19.3, 10.7], atol=0.05)


def test_kaplan_meier_and_log_rank_bmt():
    t, e, g = _bmt()
    all_ = g == "ALL"
    km = M.kaplan_meier(t[all_], e[all_])
    ev = km.n_events > 0
    sas = np.array(BMT_ALL_SAS)
    np.testing.assert_array_equal(km.times[ev], sas[:, 0])
    np.testing.assert_allclose(km.survival[ev], sas[:, 1], atol=1e-5)
    np.testing.assert_allclose(km.std_error[ev], sas[:, 2], atol=1e-6)
    # R survdiff, AML low vs AML high risk (as quoted by statsmodels' tests)
    aml = ~all_
    assert M.log_rank_test(t[aml], e[aml], g[aml]).statistic == pytest.approx(13.44556, abs=1e-4)
    # three groups: same as statsmodels' independent implementation
    r = M.log_rank_test(t, e, g)
    assert r.df == 2 and r.observed.sum() == e.sum()
    assert r.expected.sum() == pytest.approx(e.sum())
    survfunc = pytest.importorskip("statsmodels.duration.survfunc")
    stat, p = survfunc.survdiff(t, e, g)
    assert r.statistic == pytest.approx(stat, rel=1e-10) and r.p_value == pytest.approx(p, rel=1e-9)
    assert r.statistic == pytest.approx(13.80, abs=0.01)


def test_kaplan_meier_matches_statsmodels():
    survfunc = pytest.importorskip("statsmodels.duration.survfunc")
    t, e, _ = _bmt()
    km = M.kaplan_meier(t, e)
    ev = km.n_events > 0
    sf = survfunc.SurvfuncRight(t, e)
    np.testing.assert_allclose(km.times[ev], sf.surv_times)
    np.testing.assert_allclose(km.survival[ev], sf.surv_prob, rtol=1e-12)
    np.testing.assert_allclose(km.std_error[ev], sf.surv_prob_se, rtol=1e-10)
    np.testing.assert_allclose(km.n_at_risk[ev], sf.n_risk)


# --------------------------------------------------------------------------------------------------
# concordance
# --------------------------------------------------------------------------------------------------


# A five-patient example worked by hand (see test_c_index_hand_example for the pair count).
HAND_TIME = np.array([2.0, 4.0, 4.0, 6.0, 8.0])
HAND_EVENT = np.array([1, 1, 0, 1, 0])
HAND_RISK = np.array([0.9, 0.5, 0.7, 0.5, 0.1])


def test_c_index_hand_example():
    """Comparable pairs (i = the event with the shorter time):
    i=1 (t=2, r=.9) vs patients 2,3,4,5 (r=.5,.7,.5,.1): 4 concordant.
    i=2 (t=4, r=.5) vs 3 (t=4 censored: comparable, r=.7 discordant), 4 (r=.5 tied: 1/2), 5 (r=.1 concordant).
    i=4 (t=6, r=.5) vs 5 (r=.1): concordant. Patients 3 and 5 are censored. 8 pairs: C = (6 + 1/2) / 8.
    Uno: censoring KM G (deaths before censorings at t=4): G(4) = 1 - 1/3; weights G(T_i-)^-2 = 1, 1, 9/4:
    C = (4 + 1.5 + 2.25) / (4 + 3 + 2.25) = 31/37."""
    h = M.harrell_c_index(HAND_TIME, HAND_EVENT, HAND_RISK)
    assert (h.estimate, h.concordant, h.discordant, h.tied_risk, h.comparable) == (0.8125, 6, 1, 1, 8)
    assert M.uno_c_index(HAND_TIME, HAND_EVENT, HAND_RISK).estimate == pytest.approx(31 / 37, abs=1e-15)
    # horizon 5: only events before 5 count as the shorter member
    assert M.uno_c_index(HAND_TIME, HAND_EVENT, HAND_RISK, tau=5).estimate == pytest.approx(5.5 / 7, abs=1e-15)
    # cumulative/dynamic AUC at t=5: cases 1, 2 (weights 1), controls 4, 5: (1 + 1 + 0.5 + 1) / 4
    assert M.cumulative_dynamic_auc(HAND_TIME, HAND_EVENT, HAND_RISK, 5) == pytest.approx(0.875, abs=1e-15)


def _harrell_direct(t, e, r):
    num = den = 0.0
    for i in range(t.size):
        if not e[i]:
            continue
        for j in range(t.size):
            if t[i] < t[j] or (t[i] == t[j] and not e[j]):
                den += 1
                num += 1.0 if r[i] > r[j] else (0.5 if r[i] == r[j] else 0.0)
    return num / den


def _censoring_km_direct(t, e):
    """G(s-) by the product-limit formula over censoring times, deaths leaving the risk set first."""
    def g_before(s):
        g = 1.0
        for c in np.unique(t[(e == 0) & (t < s)]):
            at_risk = np.sum(t > c) + np.sum((t == c) & (e == 0))
            g *= 1.0 - np.sum((t == c) & (e == 0)) / at_risk
        return g

    return g_before


def _uno_direct(t, e, r, tau=np.inf):
    g_before = _censoring_km_direct(t, e)
    num = den = 0.0
    for i in range(t.size):
        if not e[i] or t[i] >= tau:
            continue
        w = g_before(t[i]) ** -2
        for j in range(t.size):
            if t[i] < t[j] or (t[i] == t[j] and not e[j]):
                den += w
                num += w * (1.0 if r[i] > r[j] else (0.5 if r[i] == r[j] else 0.0))
    return num / den


def _heart():
    sm = pytest.importorskip("statsmodels.api")
    d = sm.datasets.heart.load_pandas().data
    return d["survival"].to_numpy(float), d["censors"].to_numpy(int), d["age"].to_numpy(float)


def test_harrell_c_matches_direct_definition_on_real_cohorts():
    t, e, g = _bmt()
    risk = np.select([g == "AML-Low Risk", g == "ALL"], [0.0, 1.0], 2.0)  # many tied risks
    assert M.harrell_c_index(t, e, risk).estimate == pytest.approx(_harrell_direct(t, e, risk), abs=1e-14)
    t1, e1 = _parse_times(FREIREICH_6MP)
    t0, e0 = _parse_times(FREIREICH_PLACEBO)
    tt, ee, rr = np.r_[t0, t1], np.r_[e0, e1], np.r_[np.ones(21), np.zeros(21)]
    assert M.harrell_c_index(tt, ee, rr).estimate == pytest.approx(_harrell_direct(tt, ee, rr), abs=1e-14)
    ht, he, age = _heart()
    c = M.harrell_c_index(ht, he, age)
    assert c.estimate == pytest.approx(_harrell_direct(ht, he, age), abs=1e-14)
    # bigger risk = worse: reversing the score mirrors C (no tied risks here apart from exact age ties)
    rev = M.harrell_c_index(ht, he, -age)
    assert rev.concordant == c.discordant and rev.tied_risk == c.tied_risk


def test_harrell_c_equals_somers_d_without_censoring():
    """With every time an event, C = (1 + Somers' D) / 2 where D counts pairs untied in time (scipy)."""
    ht, he, age = _heart()
    ev = he == 1
    t, r = ht[ev], age[ev]
    d = stats.somersd(t, -r).statistic
    assert M.harrell_c_index(t, np.ones(t.size), r).estimate == pytest.approx((1 + d) / 2, abs=1e-13)
    tp, ep = _parse_times(FREIREICH_PLACEBO)  # all relapses, many tied times
    rp = np.arange(tp.size)[::-1] % 5  # an arbitrary score with ties
    d = stats.somersd(tp, -rp).statistic
    assert M.harrell_c_index(tp, ep, rp).estimate == pytest.approx((1 + d) / 2, abs=1e-13)


def test_uno_c_matches_direct_definition():
    t, e, g = _bmt()
    risk = np.select([g == "AML-Low Risk", g == "ALL"], [0.0, 1.0], 2.0)
    for tau in (np.inf, 1000.0, 365.0):
        got = M.uno_c_index(t, e, risk, None if np.isinf(tau) else tau).estimate
        assert got == pytest.approx(_uno_direct(t, e, risk, tau), abs=1e-13)
    ht, he, age = _heart()
    assert M.uno_c_index(ht, he, age, 1000).estimate == pytest.approx(_uno_direct(ht, he, age, 1000), abs=1e-13)
    # censoring distribution from other (training) patients: here the same data passed explicitly
    assert M.uno_c_index(ht, he, age, 1000, train_time=ht, train_event=he).estimate == \
        M.uno_c_index(ht, he, age, 1000).estimate
    # without censoring the weights are all 1 and Uno's C is Harrell's C
    ev = he == 1
    ones = np.ones(ev.sum())
    assert M.uno_c_index(ht[ev], ones, age[ev]).estimate == pytest.approx(
        M.harrell_c_index(ht[ev], ones, age[ev]).estimate, abs=1e-15)


def test_cumulative_dynamic_auc_is_weighted_roc_auc():
    """AUC(t) equals sklearn's ROC AUC of cases (weight 1/G(T_i-)) against controls (weight 1)."""
    from sklearn.metrics import roc_auc_score

    t, e, g = _bmt()
    risk = np.select([g == "AML-Low Risk", g == "ALL"], [0.0, 1.0], 2.0)
    g_before = _censoring_km_direct(t, e)
    for horizon in (100.0, 365.0, 1000.0):
        cases = (t <= horizon) & (e == 1)
        controls = t > horizon
        keep = cases | controls
        w = np.where(cases, [1 / g_before(x) for x in t], 1.0)
        ref = roc_auc_score(cases[keep], risk[keep], sample_weight=w[keep])
        assert M.cumulative_dynamic_auc(t, e, risk, horizon) == pytest.approx(ref, abs=1e-12)


def test_survival_brier_and_integrated_brier():
    from sklearn.metrics import brier_score_loss

    t, e, g = _bmt()
    # a real "model": each patient's group Kaplan-Meier curve
    curves = {k: M.kaplan_meier(t[g == k], e[g == k]) for k in BMT}
    grid = np.array([100.0, 200.0, 365.0, 500.0, 730.0])
    S = np.column_stack([[curves[k].survival_at(x) for k in g] for x in grid])
    # no censoring (the placebo arm of Freireich) -> plain Brier score of the 0/1 status at t
    tp, ep = _parse_times(FREIREICH_PLACEBO)
    kmp = M.kaplan_meier(tp, ep)
    for h in (4.0, 8.0, 12.0):
        s = np.full(tp.size, float(kmp.survival_at(h)))
        assert M.survival_brier_score(tp, ep, s, h) == pytest.approx(brier_score_loss(tp > h, s), abs=1e-15)
    # censored: Graf 1999 written out
    g_before = _censoring_km_direct(t, e)
    bs = []
    for k, h in enumerate(grid):
        g_h = g_before(np.nextafter(h, np.inf))  # G(h) = G(h+)
        terms = [
            (S[i, k] ** 2 / g_before(t[i]) if (t[i] <= h and e[i]) else 0.0) + ((1 - S[i, k]) ** 2 / g_h if t[i] > h else 0.0)
            for i in range(t.size)
        ]
        bs.append(np.mean(terms))
        assert M.survival_brier_score(t, e, S[:, k], h) == pytest.approx(bs[-1], abs=1e-14)
    ibs = M.integrated_brier_score(t, e, S, grid)
    assert ibs == pytest.approx(np.trapezoid(bs, grid) / (grid[-1] - grid[0]), abs=1e-14)
    assert 0 < ibs < 0.25  # better than predicting 0.5 for everyone


# --------------------------------------------------------------------------------------------------
# metric table
# --------------------------------------------------------------------------------------------------


def test_metric_table_binary(cancer):
    y = cancer["y"]
    preds = {"all30": cancer["p30"], "three": cancer["p3"]}
    rows = M.metric_table(preds, y=y, reference="three", thresholds={"all30": 0.5, "three": 0.4}, n_bootstrap=300, seed=7)
    assert all(tuple(r) == M.TABLE_COLUMNS for r in rows)
    got = {(r["model"], r["metric"]): r for r in rows}
    binary = [m for m in M.METRIC_NAMES if not m.startswith("c_index")]
    assert [r["metric"] for r in rows if r["model"] == "all30"] == binary
    assert [r["metric"] for r in rows if r["model"] == "three"] == [m for m in binary if m not in ("nri", "idi")]
    d = M.auc_delong(y, cancer["p30"])
    assert (got["all30", "auc"]["estimate"], got["all30", "auc"]["ci_low"], got["all30", "auc"]["ci_high"]) == (d.auc, d.ci_low, d.ci_high)
    tm = M.threshold_metrics(y, cancer["p3"], 0.4)
    for k, iv in tm.items():
        assert (got["three", k]["estimate"], got["three", k]["ci_low"], got["three", k]["ci_high"]) == (iv.estimate, iv.ci_low, iv.ci_high)
    assert got["three", "brier"]["estimate"] == M.brier_score(y, cancer["p3"])
    s = M.calibration_slope(y, cancer["p3"])
    assert (got["three", "calibration_slope"]["ci_low"], got["three", "calibration_slope"]["ci_high"]) == (s.ci_low, s.ci_high)
    n = M.nri(y, cancer["p3"], cancer["p30"], n_bootstrap=300, seed=7)
    assert (got["all30", "nri"]["estimate"], got["all30", "nri"]["ci_low"], got["all30", "nri"]["ci_high"]) == pytest.approx(
        (n.estimate, n.ci_low, n.ci_high), abs=1e-15)  # same seed, same stratified resamples
    for r in rows:
        assert r["ci_low"] <= r["estimate"] <= r["ci_high"], r
    # deterministic given the seed; another seed moves only bootstrap intervals
    assert rows == M.metric_table(preds, y=y, reference="three", thresholds={"all30": 0.5, "three": 0.4}, n_bootstrap=300, seed=7)
    other = {(r["model"], r["metric"]): r for r in
             M.metric_table(preds, y=y, reference="three", thresholds={"all30": 0.5, "three": 0.4}, n_bootstrap=300, seed=8)}
    assert other["all30", "auc"] == got["all30", "auc"]
    assert other["all30", "brier"]["ci_low"] != got["all30", "brier"]["ci_low"]
    # all-bootstrap intervals
    boot = {(r["model"], r["metric"]): r for r in
            M.metric_table(preds, y=y, n_bootstrap=300, seed=7, ci_method="bootstrap")}
    assert boot["three", "auc"]["estimate"] == got["three", "auc"]["estimate"]
    assert abs(boot["three", "auc"]["ci_low"] - got["three", "auc"]["ci_low"]) < 0.005
    assert abs(boot["three", "calibration_slope"]["ci_high"] - s.ci_high) < 0.15


def test_metric_table_survival():
    t, e, g = _bmt()
    preds = {"group": np.select([g == "AML-Low Risk", g == "ALL"], [0.0, 1.0], 2.0),
             "random": np.random.default_rng(0).random(t.size)}
    rows = M.metric_table(preds, time=t, event=e, tau=1000.0, n_bootstrap=200, seed=1)
    got = {(r["model"], r["metric"]): r for r in rows}
    assert set(got) == {(m, k) for m in preds for k in ("c_index_harrell", "c_index_uno")}
    assert got["group", "c_index_harrell"]["estimate"] == M.harrell_c_index(t, e, preds["group"]).estimate
    assert got["group", "c_index_uno"]["estimate"] == M.uno_c_index(t, e, preds["group"], 1000.0).estimate
    assert got["group", "c_index_harrell"]["ci_low"] > 0.5  # the disease groups carry prognostic information
    assert got["random", "c_index_harrell"]["ci_low"] < 0.5 < got["random", "c_index_harrell"]["ci_high"]
    assert rows == M.metric_table(preds, time=t, event=e, tau=1000.0, n_bootstrap=200, seed=1)


def test_user_errors_raise_project_exception(cancer):
    y, p = cancer["y"], cancer["p3"]
    with pytest.raises(RadiomicsLabError, match="0 and 1"):
        M.roc_auc(y + 1, p)
    with pytest.raises(RadiomicsLabError, match="must match"):
        M.roc_auc(y, p[:-1])
    with pytest.raises(RadiomicsLabError, match="one class"):
        M.auc_delong(np.ones_like(y), p)
    with pytest.raises(RadiomicsLabError, match="probabilities"):
        M.brier_score(y, p * 2)
    with pytest.raises(RadiomicsLabError, match="reference"):
        M.metric_table({"a": p}, y=y, reference="b")
    with pytest.raises(RadiomicsLabError, match="cut-offs"):
        M.nri(y, p, p, cutoffs=[0.5, 0.2])
    with pytest.raises(RadiomicsLabError, match="two groups"):
        M.log_rank_test([1, 2], [1, 1], ["a", "a"])
    with pytest.raises(RadiomicsLabError, match="separate"):
        M.calibration_slope(y, np.where(y == 1, 0.9, 0.1))


# --------------------------------------------------------------------------------------------------
# survival metrics: parity with scikit-survival on real cohorts
# --------------------------------------------------------------------------------------------------
def _sksurv_cohort(name):
    """(time, event, risk, survival function per patient, the shifted tied censorings) of a real sksurv cohort.

    WHAS500 (Worcester Heart Attack Study: 500 patients, death after myocardial infarction, follow-up in days;
    ``sksurv.datasets.load_whas500``) or GBSG2 (German Breast Cancer Study Group 2: 686 patients, recurrence-free
    survival in days; ``load_gbsg2``). The risk is the linear predictor of a CoxnetSurvivalAnalysis (elastic net,
    l1_ratio 0.5, alpha 0.01, baseline kept for survival curves) fitted on the cohort's numeric columns,
    standardised (WHAS500: age, bmi, diasbp, hr, los, sysbp; GBSG2: age, estrec, pnodes, progrec, tsize).

    Both tables have censoring times equal to an event time (WHAS500: 14, GBSG2: 39; times are whole days): only
    there our G(T-) and scikit-survival's G(T) weights differ, so those censoring times are moved 0.5 day later
    (still censored, after the event of that day, as the Kaplan-Meier convention already orders them); every
    other time, event and covariate is the real one.
    """
    from sksurv.datasets import load_gbsg2, load_whas500
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    X, y = {"whas500": load_whas500, "gbsg2": load_gbsg2}[name]()
    event_field, time_field = y.dtype.names
    event, time = y[event_field].astype(bool), y[time_field].astype(float)
    tied = ~event & np.isin(time, time[event])
    shifted = time + 0.5 * tied
    numeric = X.select_dtypes("number").to_numpy(float)
    numeric = (numeric - numeric.mean(axis=0)) / numeric.std(axis=0)
    target = np.empty(time.size, dtype=[("event", bool), ("time", float)])
    target["event"], target["time"] = event, shifted
    model = CoxnetSurvivalAnalysis(l1_ratio=0.5, alphas=[0.01], fit_baseline_model=True).fit(numeric, target)
    return time, shifted, event, model.predict(numeric), model.predict_survival_function(numeric), int(tied.sum())


@pytest.fixture(scope="module", params=["whas500", "gbsg2"])
def sksurv_cohort(request):
    return request.param, _sksurv_cohort(request.param)


def _structured(time, event):
    y = np.empty(time.size, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return y


def test_harrell_c_equals_sksurv_concordance_index_censored(sksurv_cohort):
    """Harrell's C and its pair counts equal scikit-survival's on the real times (ties included: both count a
    censoring tied with an event time as the longer one); the risk is the Cox linear predictor."""
    from sksurv.metrics import concordance_index_censored

    name, (time, shifted, event, risk, _, _) = sksurv_cohort
    for t in (time, shifted):
        ours = M.harrell_c_index(t, event, risk)
        c, concordant, discordant, tied_risk, _ = concordance_index_censored(event, t, risk)
        assert ours.estimate == pytest.approx(c, abs=1e-12), name
        assert (ours.concordant, ours.discordant, ours.tied_risk) == (concordant, discordant, tied_risk)


def test_uno_c_auc_and_ibs_equal_sksurv_without_censoring_event_ties(sksurv_cohort):
    """Uno's C (several tau), the cumulative/dynamic AUC (quartiles of the event times) and the integrated
    Brier score (Cox survival curves on a grid of 20 times) equal scikit-survival's to 1e-10 once no censoring
    time equals an event time (the 0.5-day shift of :func:`_sksurv_cohort`); on the real tied times they differ,
    by our G(T-) against scikit-survival's G(T) (the convention of metrics.uno_c_index)."""
    from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc, integrated_brier_score

    name, (time, shifted, event, risk, curves, n_tied) = sksurv_cohort
    assert n_tied > 0
    y = _structured(shifted, event)
    for tau in (np.quantile(shifted, 0.5), np.quantile(shifted, 0.9)):
        expected = concordance_index_ipcw(y, y, risk, tau=tau)[0]
        assert M.uno_c_index(shifted, event, risk, tau).estimate == pytest.approx(expected, abs=1e-10), (name, tau)
    horizons = np.quantile(shifted[event], [0.25, 0.5, 0.75])
    expected_auc, _ = cumulative_dynamic_auc(y, y, risk, horizons)
    for horizon, expected in zip(horizons, expected_auc):
        assert M.cumulative_dynamic_auc(shifted, event, risk, horizon) == pytest.approx(expected, abs=1e-10)
    grid = np.linspace(np.quantile(shifted, 0.05), np.quantile(shifted, 0.8), 20)
    S = np.vstack([curve(grid) for curve in curves])
    expected_ibs = integrated_brier_score(y, y, S, grid)
    assert M.integrated_brier_score(shifted, event, S, grid) == pytest.approx(expected_ibs, abs=1e-10)
    assert 0 < expected_ibs < 0.25

    # on the real (tied) times the conventions part: G(T-) weights an event tied with a censoring less
    real = _structured(time, event)
    tau = np.quantile(time, 0.9)
    assert abs(M.uno_c_index(time, event, risk, tau).estimate - concordance_index_ipcw(real, real, risk, tau=tau)[0]) > 1e-10
