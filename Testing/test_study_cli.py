"""``radiomicslab study``, ``harmonise`` and ``predict`` run as a user runs them (the installed console script).

Tables (real data; what is made up is said):
- scikit-learn's breast cancer Wisconsin table (569 patients, 30 real features of digitised images; outcome
  malignant vs benign) written by ``conftest.breast_cancer_tables``: ids P0001.., the real 'mean radius' moved
  to the clinical table as a covariate, a made-up batch (A, B, C in turn) and split (every 5th patient test);
  for the harmonisation tests the batch is given real ComBat-model site effects by ``conftest.site_effects``
  (documented there);
- scikit-survival's GBSG2 (686 breast cancer patients of the German Breast Cancer Study Group 2: recurrence-free
  survival time in days and event) with its numeric clinical variables as features (age, tumour size, number of
  positive nodes, progesterone and oestrogen receptors) and menopausal status as covariate.
Runs are small (1-2 repeats, 3 folds) to keep the suite fast; the defaults are 10 x 5 x 5.
"""

import csv
import hashlib
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from RadiomicsLabLib.study.harmonisation import ComBat

from conftest import breast_cancer_tables, read_csv, run_cli, site_effects, write_rows

SMALL = ("--repeats", "1", "--outer", "3", "--inner", "3", "--workers", "1")


@pytest.fixture(scope="module")
def breast(tmp_path_factory):
    return breast_cancer_tables(tmp_path_factory.mktemp("breast"))


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """The breast cancer features with real site effects (conftest.site_effects), and a clinical table with the
    site, the diagnosis and 'mean radius'."""
    from sklearn.datasets import load_breast_cancer

    folder = tmp_path_factory.mktemp("sites")
    bunch = load_breast_cancer()
    malignant = bunch.target == 0
    site, shifted = site_effects(bunch.data, malignant)
    ids = [f"P{i + 1:04d}" for i in range(len(site))]
    names = [str(n) for n in bunch.feature_names]
    write_rows(folder / "features.csv", ["id", *names[1:]], [[i, *map(repr, row[1:].tolist())] for i, row in zip(ids, shifted)])
    write_rows(folder / "clinical.csv", ["id", "site", "malignant", "radius"],
               [[i, "ABC"[s], int(m), repr(float(r))] for i, s, m, r in zip(ids, site, malignant, bunch.data[:, 0])])
    return folder, shifted[:, 1:], site, bunch.data[:, 0]


@pytest.fixture(scope="module")
def gbsg2(tmp_path_factory):
    """(folder of GBSG2's features.csv and clinical.csv (RadiomicsLabLib.study.examples), sksurv's outcome)."""
    from sksurv.datasets import load_gbsg2

    from RadiomicsLabLib.study.examples import write_gbsg2_example

    folder = write_gbsg2_example(tmp_path_factory.mktemp("gbsg2"))["features"].parent
    return folder, load_gbsg2()[1]


def _metrics(folder):
    return {(r["model"], r["metric"]): r for r in read_csv(folder / "metrics.csv")}


def _snapshot(*paths):
    return {str(p): p.read_bytes() for p in paths}


# harmonise ------------------------------------------------------------------------------------------------
def test_harmonise_writes_comBat_of_all_rows_and_figures(sites, tmp_path):
    folder, shifted, site, radius = sites
    before = _snapshot(folder / "features.csv", folder / "clinical.csv")
    out = tmp_path / "harmonised.csv"
    run = run_cli("harmonise", folder / "features.csv", "--clinical", folder / "clinical.csv", "--batch", "site",
                  "--covariate", "radius", "-o", out)
    assert run.returncode == 0, run.stderr
    rows = read_csv(out)
    assert [r["id"] for r in rows][:2] == ["P0001", "P0002"] and len(rows) == 569
    written = np.array([[float(v) for k, v in r.items() if k != "id"] for r in rows])
    X = np.hstack([np.array(["ABC"[s] for s in site], dtype=object)[:, None], radius[:, None].astype(object),
                   shifted.astype(object)])
    expected = ComBat(batch=0, covariates=[1]).fit_transform(X)
    assert np.array_equal(written, expected)  # exact: the CSV holds each double's shortest exact text
    for name in ("harmonisation_distributions.png", "harmonisation_pca.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert _snapshot(folder / "features.csv", folder / "clinical.csv") == before


def test_harmonise_refuses_bad_input_and_writes_nothing(sites, tmp_path):
    folder = sites[0]
    out = tmp_path / "h" / "harmonised.csv"
    run = run_cli("harmonise", folder / "features.csv", "--clinical", folder / "clinical.csv", "--batch", "nosuch",
                  "-o", out)
    assert run.returncode == 2 and "no column 'nosuch'" in run.stderr and "Traceback" not in run.stderr
    assert not out.parent.exists()
    run = run_cli("harmonise", folder / "features.csv", "--clinical", folder / "clinical.csv", "--batch", "site",
                  "-o", folder / "features.csv")
    assert run.returncode == 2 and "never overwritten" in run.stderr


# study, binary ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def binary_study(breast, tmp_path_factory):
    features, _, clinical, _ = breast
    out = tmp_path_factory.mktemp("study") / "out"
    run = run_cli("study", features, "--clinical", clinical, "--outcome", "diagnosis", "--positive", "malignant",
                  "--batch", "batch", "--covariate", "mean radius", "--split", "split", "--model", "logistic_l1",
                  "--select", "correlation", *SMALL, "--seed", "7", "-o", out)
    assert run.returncode == 0, run.stderr
    return out, run, breast


def test_study_writes_every_file_and_a_summary(binary_study):
    out, run, _ = binary_study
    for name in ("metrics.csv", "predictions.csv", "test_predictions.csv", "selected_features.csv", "model.joblib",
                 "model_card.json", "report.html", "roc.png", "calibration.png", "decision_curve.png",
                 "coefficients.png", "selection_stability.png", "harmonisation_distributions.png",
                 "harmonisation_pca.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert "Study: 456 training patients" in run.stderr and "clinical+logistic_l1: auc" in run.stderr
    header = next(csv.reader(open(out / "metrics.csv")))
    assert header == ["model", "metric", "estimate", "ci_low", "ci_high"]


def test_study_metrics_equal_independent_computations(binary_study):
    out, _, _ = binary_study
    metrics = _metrics(out)
    predictions = read_csv(out / "predictions.csv")
    for model in ("clinical", "logistic_l1", "clinical+logistic_l1"):
        rows = [r for r in predictions if r["model"] == model]
        assert len(rows) == 456  # 1 repeat x the training rows
        y = np.array([int(r["outcome"]) for r in rows])
        p = np.array([float(r["prediction"]) for r in rows])
        assert float(metrics[(model, "auc")]["estimate"]) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        low, high = float(metrics[(model, "auc")]["ci_low"]), float(metrics[(model, "auc")]["ci_high"])
        assert low < roc_auc_score(y, p) < high
    for metric in ("nri", "idi", "auc_difference", "delong_p"):
        assert ("clinical+logistic_l1", metric) in metrics and ("clinical", metric) not in metrics
    test = [r for r in read_csv(out / "test_predictions.csv") if r["model"] == "clinical+logistic_l1"]
    assert len(test) == 113
    y = np.array([int(r["outcome"]) for r in test])
    p = np.array([float(r["prediction"]) for r in test])
    assert float(metrics[("clinical+logistic_l1", "test_auc")]["estimate"]) == pytest.approx(roc_auc_score(y, p),
                                                                                             abs=1e-12)
    assert float(metrics[("clinical+logistic_l1", "auc")]["estimate"]) > 0.9  # a real, strong signal


def test_model_card_and_report(binary_study):
    out, _, (features, _, clinical, _) = binary_study
    card = json.loads((out / "model_card.json").read_text())
    assert card["inputs"]["features"]["sha256"] == hashlib.sha256(features.read_bytes()).hexdigest()
    assert card["inputs"]["clinical"]["sha256"] == hashlib.sha256(clinical.read_bytes()).hexdigest()
    assert card["final_model"] == "clinical+logistic_l1" and card["validation"]["seed"] == 7
    assert card["harmonisation"]["protected"] == ["mean radius"]
    assert card["features_used"] and set(card["features_used"]) <= set(read_csv(features)[0]) - {"id"}
    html = (out / "report.html").read_text()
    assert "TRIPOD" in html and "RQS" in html and "data:image/png;base64," in html and "http://" not in html


def test_predict_applies_the_saved_model(binary_study, tmp_path):
    out, _, (features, _, clinical, _) = binary_study
    run = run_cli("predict", out / "model.joblib", features, "--clinical", clinical, "-o", tmp_path / "p.csv")
    assert run.returncode == 0, run.stderr
    predicted = {r["id"]: r for r in read_csv(tmp_path / "p.csv")}
    assert len(predicted) == 569
    test = {r["id"]: r for r in read_csv(out / "test_predictions.csv") if r["model"] == "clinical+logistic_l1"}
    for i, row in test.items():  # the test rows were predicted by the same final model
        assert float(predicted[i]["prediction"]) == pytest.approx(float(row["prediction"]), abs=1e-12)
        assert predicted[i]["group"] == row["group"]


def test_predict_refuses_a_missing_feature_and_an_unseen_batch(binary_study, tmp_path):
    out, _, (features, _, clinical, _) = binary_study
    rows = read_csv(features)
    header = [c for c in rows[0] if c != "mean texture"]
    write_rows(tmp_path / "less.csv", header, [[r[c] for c in header] for r in rows])
    run = run_cli("predict", out / "model.joblib", tmp_path / "less.csv", "--clinical", clinical, "-o", tmp_path / "p.csv")
    assert run.returncode == 2 and "lacks 1 feature(s) the model needs: mean texture" in run.stderr
    clinical_rows = read_csv(clinical)
    for r in clinical_rows:
        r["batch"] = "Z" if r["batch"] == "A" else r["batch"]
    write_rows(tmp_path / "clinical_z.csv", list(clinical_rows[0]), [list(r.values()) for r in clinical_rows])
    run = run_cli("predict", out / "model.joblib", features, "--clinical", tmp_path / "clinical_z.csv",
                  "-o", tmp_path / "p.csv")
    assert run.returncode == 2 and "'Z'" in run.stderr and "Traceback" not in run.stderr
    run = run_cli("predict", out / "model.joblib", features, "-o", tmp_path / "p.csv")
    assert run.returncode == 2 and "--clinical" in run.stderr
    assert not (tmp_path / "p.csv").exists()


def test_study_bad_input_lists_problems_and_writes_nothing(breast, tmp_path):
    features, _, clinical, _ = breast
    rows = read_csv(clinical)
    rows[3]["diagnosis"] = ""
    rows[7]["id"] = rows[6]["id"]
    write_rows(tmp_path / "bad.csv", list(rows[0]), [list(r.values()) for r in rows])
    out = tmp_path / "out"
    run = run_cli("study", features, "--clinical", tmp_path / "bad.csv", "--outcome", "diagnosis", "--positive",
                  "malignant", *SMALL, "-o", out)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "row 5" in run.stderr and "missing" in run.stderr and "appears 2 times" in run.stderr
    assert not out.exists()


# study, survival ----------------------------------------------------------------------------------------------
def test_survival_study_c_index_equals_scikit_survival(gbsg2, tmp_path):
    from sksurv.metrics import concordance_index_censored

    folder, y = gbsg2
    out = tmp_path / "out"
    run = run_cli("study", folder / "features.csv", "--clinical", folder / "clinical.csv", "--time", "days",
                  "--event", "recurrence", "--model", "cox_ridge", "--select", "none", "--horizon", "1000",
                  *SMALL, "-o", out)
    assert run.returncode == 0, run.stderr
    metrics = _metrics(out)
    rows = [r for r in read_csv(out / "predictions.csv") if r["model"] == "cox_ridge"]
    assert len(rows) == 686
    time = np.array([float(r["time"]) for r in rows])
    event = np.array([r["event"] in ("1", "True") for r in rows])
    risk = np.array([float(r["prediction"]) for r in rows])
    expected = concordance_index_censored(event, time, risk)[0]
    assert float(metrics[("cox_ridge", "c_index_harrell")]["estimate"]) == pytest.approx(expected, abs=1e-12)
    for metric in ("c_index_uno", "td_auc", "integrated_brier_score", "logrank_p"):
        assert np.isfinite(float(metrics[("cox_ridge", metric)]["estimate"])), metric
    assert 0.6 < expected < 0.8  # GBSG2's clinical variables carry a known, moderate signal
    for name in ("kaplan_meier.png", "coefficients.png", "report.html", "model.joblib"):
        assert (out / name).is_file(), name


def test_examples_writes_the_two_real_tables(tmp_path):
    run = run_cli("examples", "-o", tmp_path / "ex")
    assert run.returncode == 0, run.stderr
    clinical = read_csv(tmp_path / "ex" / "breast_cancer" / "clinical.csv")
    assert len(clinical) == 569 and sum(r["diagnosis"] == "malignant" for r in clinical) == 212
    assert {r["site"] for r in clinical} == {"A", "B", "C"} and sum(r["split"] == "test" for r in clinical) == 113
    survival = read_csv(tmp_path / "ex" / "gbsg2" / "clinical.csv")
    assert len(survival) == 686 and sum(r["recurrence"] == "1" for r in survival) == 299
    features = read_csv(tmp_path / "ex" / "breast_cancer" / "features.csv")
    assert len(features[0]) == 30 and "mean radius" not in features[0]


def test_examples_again_keep_the_tables_and_never_replace_an_edited_one(tmp_path):
    """Writing the examples twice leaves the same bytes; an edited table is refused by name, nothing written."""
    assert run_cli("examples", "-o", tmp_path / "ex").returncode == 0
    files = sorted((tmp_path / "ex").rglob("*.csv"))
    before = {path: path.read_bytes() for path in files}
    again = run_cli("examples", "-o", tmp_path / "ex")
    assert again.returncode == 0, again.stderr
    assert {path: path.read_bytes() for path in files} == before
    edited = tmp_path / "ex" / "gbsg2" / "clinical.csv"
    edited.write_text("id,days,recurrence\nG0001,10,1\n")
    (tmp_path / "ex" / "breast_cancer" / "features.csv").unlink()
    refused = run_cli("examples", "-o", tmp_path / "ex")
    assert refused.returncode == 2
    assert f"'{edited}' exists and is not this example's table" in refused.stderr
    assert edited.read_text() == "id,days,recurrence\nG0001,10,1\n"
    assert not (tmp_path / "ex" / "breast_cancer" / "features.csv").exists()  # checked before any file is written


def test_a_failure_while_writing_leaves_the_output_folder_as_it_was(breast, tmp_path, monkeypatch):
    """Everything is written in a staging folder and moved in at the end: a figure that fails writes nothing."""
    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.study import report
    from RadiomicsLabLib.study.run import run_study

    features, _, clinical, _ = breast
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.csv").write_text("an earlier result\n")

    def broken(*args, **kwargs):
        raise RadiomicsLabError("the decision curve failed")

    monkeypatch.setattr(report, "decision_curve_figure", broken)
    with pytest.raises(RadiomicsLabError, match="decision curve failed"):
        run_study(features, clinical, out, outcome="diagnosis", positive="malignant", repeats=1, outer=3, inner=3,
                  workers=1)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == ["metrics.csv"]
    assert (out / "metrics.csv").read_text() == "an earlier result\n"
