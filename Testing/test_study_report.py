"""Tests of RadiomicsLabLib.study.report: the study figures, the TRIPOD+AI / RQS checklists and the HTML report.

Real data: scikit-learn's breast cancer Wisconsin table (569 patients, malignant = 1) with 5-fold
cross-validated probabilities of a plain logistic regression (all 30 features, and 3 features), and the
German Breast Cancer Study Group 2 data (scikit-survival's ``load_gbsg2``; 686 patients, recurrence-free
survival) for the Kaplan-Meier figure, grouped by tumour grade and by a median split of a Cox risk.
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
from matplotlib.image import imread
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.study import metrics as M
from RadiomicsLabLib.study import report as R

HOSTILE = "<img src=x onerror=alert(1)>"


# Data -------------------------------------------------------------------------------------------------------------
def _logistic():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


@pytest.fixture(scope="module")
def breast():
    data = load_breast_cancer()
    X, y = data.data, 1 - data.target  # malignant = 1
    p_all = cross_val_predict(_logistic(), X, y, cv=5, method="predict_proba")[:, 1]
    p_3 = cross_val_predict(_logistic(), X[:, [0, 1, 4]], y, cv=5, method="predict_proba")[:, 1]
    coef = _logistic().fit(X, y)[-1].coef_[0]
    return {"y": y, "predictions": {"all 30 features": p_all, "3 features": p_3}, "names": list(data.feature_names),
            "coef": coef}


@pytest.fixture(scope="module")
def gbsg2():
    from sksurv.datasets import load_gbsg2
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    X, y = load_gbsg2()
    numeric = X[["age", "tsize", "pnodes", "progrec", "estrec"]].to_numpy(float)
    risk = CoxPHSurvivalAnalysis().fit(numeric, y).predict(numeric)
    return {"time": y["time"], "event": y["cens"].astype(int), "grade": X["tgrade"].astype(str).to_numpy(),
            "high_risk": (risk > np.median(risk)).astype(int)}


@pytest.fixture(scope="module")
def figures(breast, gbsg2, tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    y, predictions = breast["y"], breast["predictions"]
    frequency = np.clip(np.abs(breast["coef"]) / np.abs(breast["coef"]).max(), 0, 1)
    return {
        "roc.png": R.roc_figure(folder / "roc.png", y, predictions, n_bootstrap=200),
        "calibration.png": R.calibration_figure(folder / "calibration.png", y, predictions),
        "decision_curve.png": R.decision_curve_figure(folder / "decision_curve.png", y, predictions),
        "kaplan_meier.png": R.kaplan_meier_figure(folder / "kaplan_meier.png", gbsg2["time"], gbsg2["event"],
                                                  gbsg2["high_risk"], horizon=1825),
        "coefficients.png": R.weights_figure(folder / "coefficients.png", breast["names"], breast["coef"]),
        "importances.png": R.weights_figure(folder / "importances.png", breast["names"], np.abs(breast["coef"]),
                                            kind="importance", top=10),
        "selection_stability.png": R.stability_figure(folder / "selection_stability.png", breast["names"], frequency,
                                                      stability=0.61),
    }


def _card(**changes) -> dict:
    card = {
        "title": "breast cancer study", "created": "2025-01-01T00:00:00+00:00",
        "software": {"radiomicslab": "1.0", "python": "3.11", "scikit-learn": "1.x"},
        "inputs": {"features": {"path": "/data/features.csv", "sha256": "ab" * 32, "rows": 569, "columns": 31},
                   "clinical": {"path": "/data/clinical.csv", "sha256": "cd" * 32, "rows": 569, "columns": 3}},
        "study": {"outcome_kind": "binary", "outcome": "diagnosis", "positive": "malignant", "id_column": "id",
                  "batch": None, "covariates": [], "split": None, "n_patients": 569, "n_train": 569, "n_test": 0,
                  "n_features": 30, "class_counts": {"benign": 357, "malignant": 212}, "horizon": None,
                  "pivoted": False},
        "validation": {"repeats": 2, "outer": 5, "inner": 3, "permutations": 0, "seed": 7,
                       "seeds": {"seed": 7, "folds": 11}, "workers": None, "scheduler": None},
        "models": ["logistic_l1"], "selection": ["nzv", "correlation"], "harmonisation": None,
        "final_model": "logistic_l1", "features_used": ["worst radius", HOSTILE], "threshold": 0.42,
        "headline": {"model": "logistic_l1", "metric": "auc", "estimate": 0.9941, "ci_low": 0.9893, "ci_high": 0.9989},
        "comparison": None, "notes": ["2 constant features dropped"],
    }
    for key, value in changes.items():
        card[key] = value
    return card


def _rows(breast) -> list:
    rows = M.metric_table(breast["predictions"], y=breast["y"], thresholds=0.5, n_bootstrap=50)
    rows.append({"model": HOSTILE, "metric": "p_permutation", "estimate": 0.0004, "ci_low": math.nan,
                 "ci_high": math.nan})
    return rows


# Figures ----------------------------------------------------------------------------------------------------------
def test_every_figure_is_a_readable_non_blank_png(figures):
    for name, path in figures.items():
        assert path.name == name and path.is_file()
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] >= 500 and image.shape[1] >= 700, (name, image.shape)
        assert float(image[..., :3].var()) > 0.001, name  # not blank
        assert not list(path.parent.glob(f".{name}.*.tmp"))  # atomic write left no temporary file


def test_roc_curve_band_and_auc(breast):
    y = breast["y"]
    for name, p in breast["predictions"].items():
        data = R.roc_data(y, p, n_bootstrap=500, seed=3)
        # the AUC used in the legend is sklearn's, with DeLong's CI
        assert data["auc"].auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        delong = M.auc_delong(y, p)
        assert (data["auc"].ci_low, data["auc"].ci_high) == (delong.ci_low, delong.ci_high)
        # the curve is sklearn's ROC (all thresholds), read on the grid as a step function
        fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
        np.testing.assert_allclose(data["fpr"], fpr)
        np.testing.assert_allclose(data["tpr"], tpr)
        # the pointwise band contains the curve, and is a band
        assert np.all(data["band_low"] <= data["tpr_grid"] + 1e-12)
        assert np.all(data["tpr_grid"] <= data["band_high"] + 1e-12)
        assert np.all(data["band_low"] <= data["band_high"])
        assert data["band_high"][-1] == 1.0 and (data["band_high"] - data["band_low"]).max() > 0.01
        again = R.roc_data(y, p, n_bootstrap=500, seed=3)
        np.testing.assert_array_equal(again["band_low"], data["band_low"])
    figure = R._roc_plot(y, breast["predictions"], n_bootstrap=50)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    for name, p in breast["predictions"].items():
        delong = M.auc_delong(y, p)
        expected = f"{name}: AUC {roc_auc_score(y, p):.3f} (95 % CI {delong.ci_low:.3f}-{delong.ci_high:.3f})"
        assert expected in legend


def test_calibration_numbers_come_from_the_metrics(breast):
    y, p = breast["y"], breast["predictions"]["3 features"]
    data = R.calibration_data(y, p, bins=10)
    assert data["n"].sum() == y.size and data["n"].max() - data["n"].min() <= 1
    order = np.argsort(p, kind="mergesort")
    first = order[: data["n"][0]]
    assert data["observed"][0] == pytest.approx(y[first].mean())
    assert data["mean_predicted"][0] == pytest.approx(p[first].mean())
    assert np.all(np.diff(data["mean_predicted"]) >= 0)
    assert np.all((data["ci_low"] <= data["observed"] + 1e-12) & (data["observed"] <= data["ci_high"] + 1e-12))
    assert data["intercept"] == M.calibration_intercept(y, p)
    assert data["slope"] == M.calibration_slope(y, p)
    # the recalibration line is the logistic fit logit P = a + b logit p: its slope on the logit scale is b
    logit = lambda q: np.log(q / (1 - q))  # noqa: E731
    slope = np.polyfit(logit(data["line_p"]), logit(data["line_observed"]), 1)[0]
    assert slope == pytest.approx(data["slope"].estimate, rel=1e-6)
    figure = R._calibration_plot(y, {"m": p})
    legend = " ".join(t.get_text() for t in figure.axes[0].get_legend().get_texts())
    assert f"slope {data['slope'].estimate:.2f}" in legend and f"intercept {data['intercept'].estimate:.2f}" in legend


def test_decision_curve_draws_the_net_benefit(breast):
    y, predictions = breast["y"], breast["predictions"]
    figure = R._decision_curve_plot(y, predictions)
    curves = M.decision_curve(y, predictions)
    lines = {line.get_gid(): line for line in figure.axes[0].get_lines()}
    for name in predictions:
        np.testing.assert_allclose(lines[f"dca:{name}"].get_ydata(), curves[name])
        np.testing.assert_allclose(lines[f"dca:{name}"].get_xdata(), curves["threshold"])
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert {"treat all", "treat none"} <= set(labels)


@pytest.mark.parametrize("grouping", ["grade", "high_risk"])
def test_kaplan_meier_curves_equal_the_metrics(gbsg2, grouping):
    time, event, groups = gbsg2["time"], gbsg2["event"], gbsg2[grouping]
    figure = R._kaplan_meier_plot(time, event, groups)
    values = np.unique(groups)
    names = ["low risk", "high risk"] if grouping == "high_risk" else [str(v) for v in values]
    lines = {line.get_gid(): line for line in figure.axes[0].get_lines() if line.get_gid()}
    assert set(lines) == {f"km:{n}" for n in names}
    for name, value in zip(names, values):
        km = M.kaplan_meier(time[groups == value], event[groups == value])
        np.testing.assert_allclose(lines[f"km:{name}"].get_ydata(), np.r_[1.0, km.survival])
        np.testing.assert_allclose(lines[f"km:{name}"].get_xdata(), np.r_[0.0, km.times])
    p = M.log_rank_test(time, event, groups).p_value
    title = figure.axes[0].get_title()
    assert ("p < 0.001" in title) if p < 0.001 else (f"p = {p:.3f}" in title)
    # numbers at risk under the plot: patients still followed at each tick
    table = figure.axes[1]
    ticks = figure.axes[0].get_xticks()
    shown = {(round(t.get_position()[0], 6), t.get_text()) for t in table.texts}
    for value in values:
        for x in ticks:
            assert (round(float(x), 6), str(int(np.sum(time[groups == value] >= x)))) in shown


def test_kaplan_meier_data_labels_and_horizon(gbsg2):
    data = R.kaplan_meier_data(gbsg2["time"], gbsg2["event"], gbsg2["high_risk"])
    assert list(data["curves"]) == ["low risk", "high risk"]
    assert data["logrank"].p_value < 0.05  # the Cox risk separates recurrence-free survival
    figure = R._kaplan_meier_plot(gbsg2["time"], gbsg2["event"], gbsg2["high_risk"], horizon=1825)
    legend = " ".join(t.get_text() for t in figure.axes[0].get_legend().get_texts())
    s = data["curves"]["low risk"].survival_at(1825.0)
    assert f"S(1825) = {float(s):.2f}" in legend


def test_weights_and_stability_bars(breast):
    names, coef = breast["names"], breast["coef"]
    figure = R._weights_plot(names, coef, top=8)
    bars = [p for p in figure.axes[0].patches if p.get_height() > 0.5]
    assert len(bars) == 8
    widths = sorted((abs(b.get_width()) for b in bars), reverse=True)
    np.testing.assert_allclose(widths, np.sort(np.abs(coef))[::-1][:8])
    from matplotlib.colors import to_rgba

    figure = R._weights_plot(names, coef, top=20)
    for bar in (p for p in figure.axes[0].patches if p.get_height() > 0.5):
        expected = R.POSITIVE if bar.get_width() > 0 else R.NEGATIVE
        assert bar.get_facecolor() == to_rgba(expected)  # sign-coloured
    sparse = np.where(np.arange(30) < 5, coef, 0.0)
    figure = R._weights_plot(names, sparse, top=20)
    assert "all 5 non-zero" in figure.axes[0].get_title()
    figure = R._stability_plot(names, np.linspace(0, 1, 30), stability=0.5, top=10)
    top = max(figure.axes[0].get_yticklabels(), key=lambda t: t.get_position()[1])
    assert top.get_text() == names[-1]  # the most frequently selected feature is at the top
    assert len(figure.axes[0].get_yticklabels()) == 10
    assert "Nogueira stability = 0.50" in figure.axes[0].get_title()


def test_figure_input_errors(breast, tmp_path):
    y, p = breast["y"], breast["predictions"]["3 features"]
    with pytest.raises(RadiomicsLabError, match="non-empty mapping"):
        R.roc_figure(tmp_path / "a.png", y, {})
    with pytest.raises(RadiomicsLabError, match="probabilities"):
        R.calibration_figure(tmp_path / "a.png", y, {"m": p * 3})
    with pytest.raises(RadiomicsLabError, match="one value per feature"):
        R.weights_figure(tmp_path / "a.png", ["a", "b"], [1.0])
    with pytest.raises(RadiomicsLabError, match="kind"):
        R.weights_figure(tmp_path / "a.png", ["a"], [1.0], kind="weights")
    with pytest.raises(RadiomicsLabError, match="between 0 and 1"):
        R.stability_figure(tmp_path / "a.png", ["a"], [1.5])
    with pytest.raises(RadiomicsLabError, match="one group per patient"):
        R.kaplan_meier_figure(tmp_path / "a.png", [1, 2, 3], [1, 0, 1], [0, 1])
    assert not list(tmp_path.iterdir())


# Checklists -------------------------------------------------------------------------------------------------------
TRIPOD_IDS = ["1", "2", "3a", "3b", "3c", "4", "5a", "5b", "6a", "6b", "6c", "7", "8a", "8b", "8c", "9a", "9b", "9c",
              "10", "11", "12a", "12b", "12c", "12d", "12e", "12f", "12g", "13", "14", "15", "16", "17", "18a", "18b",
              "18c", "18d", "18e", "18f", "19", "20a", "20b", "20c", "21", "22", "23a", "23b", "24", "25", "26",
              "27a", "27b", "27c"]


def test_tripod_ai_checklist_is_complete():
    items = R.tripod_ai_items(_card())
    assert [i["item"] for i in items] == TRIPOD_IDS
    assert all(i["status"] in R.STATUSES and i["topic"] and i["text"] for i in items)
    status = {i["item"]: i["status"] for i in items}
    for unknowable in ("5b", "6a", "6b", "17", "18a", "18b"):  # dates, setting, ethics, funding
        assert status[unknowable] == "for the authors"
    assert status["12c"] == "filled" and status["23a"] == "filled"
    text = {i["item"]: i["text"] for i in items}
    assert "0.994" in text["23a"] and "logistic_l1" in text["12c"] and "0.420" in text["15"]
    survival = _card(study={"outcome_kind": "survival", "time": "rfs", "event": "status", "n_patients": 686,
                            "n_train": 686, "n_test": 0, "n_features": 5, "n_events": 299, "horizon": 1825.0})
    text = {i["item"]: i["text"] for i in R.tripod_ai_items(survival)}
    assert "rfs" in text["8a"] and "1825" in text["8a"] and "299 events" in text["20a"]


def _rqs(card, **kw) -> dict:
    return {i["item"]: i for i in R.rqs_items(card, **kw)}


def test_rqs_counts_only_evidenced_items():
    base = R.rqs_items(_card())
    assert len(base) == 16 and sum(i["max"] for i in base) == R.RQS_MAX
    items = {i["item"]: i for i in base}
    assert items["2"]["status"] == "not evidenced" and items["2"]["points"] == 0  # no ICC table
    assert items["16"]["status"] == "for the authors" and items["16"]["points"] == 0  # open science never claimed
    assert items["12"]["points"] == -5  # cross-validation only
    assert items["5"]["points"] == 3 and items["9"]["points"] == 2 and items["10"]["points"] == 2
    assert items["13"]["points"] == 0 and items["14"]["points"] == 2
    total = R.rqs_total(base)
    assert total["points"] == sum(i["points"] for i in base) and total["max"] == 36

    icc = _card()
    icc["inputs"]["icc"] = {"path": "/data/icc.csv", "sha256": "ef" * 32}
    with_icc = R.rqs_items(icc)
    assert {i["item"]: i for i in with_icc}["2"]["points"] == 1
    assert R.rqs_total(with_icc)["points"] == total["points"] + 1

    richer = _card(comparison={"reference": "clinical", "models": ["clinical+logistic_l1"]},
                   selection=[], features_used=[f"f{i}" for i in range(30)])
    richer["study"] = {**richer["study"], "n_test": 120, "covariates": ["age"]}
    items = _rqs(richer)
    assert items["13"]["points"] == 2 and items["12"]["points"] == 2 and items["6"]["points"] == 1
    assert items["5"]["points"] == -3  # no selection and every feature used: no reduction evidenced
    survival = _card(threshold=None, study={"outcome_kind": "survival", "n_test": 0, "n_features": 10})
    items = _rqs(survival, figures={"kaplan_meier.png": "km.png"})
    assert items["10"]["points"] == 0 and items["14"]["points"] == 0 and items["8"]["points"] == 1


# HTML report ------------------------------------------------------------------------------------------------------
def test_report_is_self_contained_and_escaped(breast, figures, tmp_path):
    card = _card(title=HOSTILE)
    card["notes"] = [f"note with {HOSTILE}"]
    path = R.write_report(tmp_path / "report.html", card, _rows(breast), figures, title=f"Study {HOSTILE}")
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    outside = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)  # base64 may hold "//"
    assert "http" not in outside and "//" not in outside and "url(" not in outside
    assert "<script" not in text.lower() and "<link" not in text.lower() and "onerror=alert(1)>" not in text
    assert HOSTILE not in text and html_escape(HOSTILE) in text
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(uris) == len(figures) == len(re.findall(r"<img ", text))
    import base64

    assert sorted(base64.b64decode(u) for u in uris) == sorted(p.read_bytes() for p in figures.values())
    for caption in ("ROC curves", "Calibration", "Decision curve", "Kaplan-Meier", "Nogueira"):
        assert caption in text
    for section in ("Summary", "Performance metrics", "Figures", "TRIPOD+AI checklist", "Radiomics Quality Score",
                    "Notes", "Software versions", "Input tables"):
        assert f">{section}<" in text
    assert "0.994" in text and "0.989 to 0.999" in text  # headline with 3 decimals
    assert "&lt; 0.001" in text  # the permutation p
    assert ">-</td>" in text  # NaN CIs
    assert "ab" * 32 in text and "1.x" in text  # input hashes and versions
    for item in ("18a", "27c", "Open science and data", "Multiple segmentations"):
        assert f">{item}<" in text
    total = R.rqs_total(R.rqs_items(card, _rows(breast), figures))
    assert f"RQS evidenced by this run: {total['points']} / 36" in text


def html_escape(text):
    import html

    return html.escape(text, quote=True)


def test_report_tolerates_a_minimal_card_and_refuses_bad_figures(tmp_path):
    path = R.write_report(tmp_path / "r.html", {}, [], {})
    text = path.read_text(encoding="utf-8")
    assert "TRIPOD+AI" in text and "No figures." in text
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(RadiomicsLabError, match="not a PNG"):
        R.write_report(tmp_path / "s.html", {}, [], {"fake.png": tmp_path / "fake.png"})
    assert not (tmp_path / "s.html").exists()
    card = copy.deepcopy(_card())
    del card["headline"], card["validation"], card["software"]
    R.write_report(tmp_path / "t.html", card, [], {})
