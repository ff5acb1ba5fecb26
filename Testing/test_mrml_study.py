"""StudyLogic: a radiomics study from and into the scene (tables with the CSV files' exact text, ROC / calibration /
decision-curve / Kaplan-Meier charts), from files and from the scene's own tables, in a background worker, cancel
and bad input leaving the scene as it was, and a saved .mrb restoring the results.

Tables (real data, as in test_study_cli.py): scikit-learn's breast cancer Wisconsin table
(``conftest.breast_cancer_tables``: 569 patients, 29 real features, 'mean radius' as a covariate, a made-up batch
A/B/C and split), and scikit-survival's GBSG2 (686 patients, recurrence-free survival) with its numeric clinical
variables as features. Runs are small (1 repeat, 3 x 3 folds, one worker).
"""

import csv
import tempfile

import numpy as np
import pytest

from RadiomicsLabLib.errors import Cancelled, RadiomicsLabError
from RadiomicsLabLib.mrml.app import new_headless_app
from RadiomicsLabLib.mrml.charts import chart_series, series_points
from RadiomicsLabLib.mrml.study import StudyLogic
from RadiomicsLabLib.mrml.tables import KIND_ATTRIBUTE, write_text_table
from RadiomicsLabLib.study import report
from RadiomicsLabLib.study.inputs import StudyInputError
from RadiomicsLabLib.study.metrics import decision_curve
from RadiomicsLabLib.study.run import _cutoff, run_study

from conftest import breast_cancer_tables, chart_values, start_then_cancel, table_values, write_rows

SMALL = dict(repeats=1, outer=3, inner=3, workers=1, seed=0)
BINARY = dict(outcome="diagnosis", positive="malignant", batch="batch", covariates=["mean radius"], **SMALL)
SURVIVAL = dict(time="days", event="recurrence", models=["cox_ridge"], selection=["none"], horizon=1000, **SMALL)


def csv_cells(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def node_cells(node):
    """[header, *rows] of a text table node (the cells' text)."""
    table = node.GetTable()
    columns = [table.GetColumn(j) for j in range(table.GetNumberOfColumns())]
    return [[c.GetName() for c in columns]] + [[c.GetValue(i) for c in columns] for i in range(table.GetNumberOfRows())]


def node_ids(scene):
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def features_node(scene, path, name):
    """A table node holding a features CSV's text, made with the project's table helper."""
    header, *rows = csv_cells(path)
    return write_text_table(scene.AddNewNodeByClass("vtkMRMLTableNode", name), header, rows)


def series_by_table(chart):
    """Table name -> the first series reading it (the curve; the CI / band series come after it)."""
    found = {}
    for s in chart_series(chart):
        found.setdefault(s.GetTableNode().GetName(), s)
    return found


@pytest.fixture(scope="module")
def breast(tmp_path_factory):
    return breast_cancer_tables(tmp_path_factory.mktemp("breast"))


@pytest.fixture(scope="module")
def core_breast(breast, tmp_path_factory):
    """The core's run_study on the same inputs and seed (its files are what the nodes must hold)."""
    return run_study(breast[0], breast[2], tmp_path_factory.mktemp("core") / "study", **BINARY)


@pytest.fixture(scope="module")
def breast_scene(breast, tmp_path_factory):
    """(logic, results) of StudyLogic.run from the files, in a scene of its own."""
    logic = StudyLogic(new_headless_app().scene)
    return logic, logic.run(breast[0], breast[2], tmp_path_factory.mktemp("logic") / "study", **BINARY)


@pytest.fixture(scope="module")
def gbsg2(tmp_path_factory):
    """GBSG2's features.csv and clinical.csv (RadiomicsLabLib.study.examples); the folder."""
    from RadiomicsLabLib.study.examples import write_gbsg2_example

    return write_gbsg2_example(tmp_path_factory.mktemp("gbsg2"))["features"].parent


# Binary: the nodes hold what the core wrote and what the report draws ----------------------------------------------
def test_binary_study_nodes_equal_the_core_files_and_report_data(breast_scene, core_breast):
    logic, results = breast_scene
    core = core_breast.result
    # Tables: the exact text of the CSV files run_study wrote for the same inputs and seed.
    assert node_cells(results.metrics) == csv_cells(core_breast.files["metrics.csv"])
    assert node_cells(results.metrics) == csv_cells(results.files["metrics.csv"])
    assert node_cells(results.selected) == csv_cells(core_breast.files["selected_features.csv"])
    assert node_cells(results.test_predictions) == csv_cells(core_breast.files["test_predictions.csv"])
    assert results.predictions.GetNumberOfRows() == 456 * 3  # training patients x models (1 repeat)
    assert node_cells(results.predictions) == csv_cells(core_breast.files["predictions.csv"])
    assert results.test_predictions.GetNumberOfRows() == 113 * 3
    assert results.metrics.GetAttribute(KIND_ATTRIBUTE) == "study-metrics"
    assert results.predictions.GetAttribute(KIND_ATTRIBUTE) == "study-predictions"
    provenance = logic.study_provenance(results.metrics)
    assert provenance["folder"] == str(results.folder) and provenance["model_card"]["final_model"] == "clinical+logistic_l1"
    assert provenance["model_card"]["headline"] == core_breast.card["headline"]
    rows = logic.table_rows(results.metrics)
    assert rows[0] == dict(zip(*csv_cells(results.files["metrics.csv"])[:2]))
    for name in ("model.joblib", "model_card.json", "report.html", "roc.png"):
        assert results.files[name].is_file(), name
    assert (results.main_table, results.main_chart) == (results.metrics, results.roc_chart) and results.km_chart is None

    # ROC: each model's series draws report.roc_data's curve points (exact doubles), the primary its band.
    assert results.roc_chart.GetXAxisTitle().startswith("1 - specificity") and results.roc_chart.GetYAxisTitle()
    by_table = series_by_table(results.roc_chart)
    for model in core.models:
        expected = report.roc_data(core.y, core.mean_prediction(model), seed=0)
        x, y = series_points(by_table[f"Study ROC {model}"])
        assert x == expected["fpr"].tolist() and y == expected["tpr"].tolist(), model
    primary_band = [s for s in chart_series(results.roc_chart) if s.GetYColumnName() == "clinical+logistic_l1 band_low"]
    expected = report.roc_data(core.y, core.mean_prediction("clinical+logistic_l1"), seed=0)
    assert series_points(primary_band[0])[1] == expected["band_low"].tolist()
    # Calibration: observed rate against mean prediction per quantile group (report.calibration_data).
    assert results.calibration_chart.GetYAxisTitle() == "observed event rate"
    for model in core.models:
        expected = report.calibration_data(core.y, core.mean_prediction(model))
        series = [s for s in chart_series(results.calibration_chart) if s.GetYColumnName() == f"{model} observed"][0]
        x, y = series_points(series)
        assert x == expected["mean_predicted"].tolist() and y == expected["observed"].tolist()
    # Decision curve: net benefit of every model, treat all, treat none (metrics.decision_curve).
    expected = decision_curve(core.y, {model: core.mean_prediction(model) for model in core.models})
    drawn = {s.GetYColumnName(): series_points(s) for s in chart_series(results.decision_chart)}
    assert set(drawn) == {"treat_none", "treat_all", *core.models}
    for column, (x, y) in drawn.items():
        assert x == expected["threshold"].tolist() and y == expected[column].tolist(), column
    for chart in results.charts():
        assert chart.GetXAxisTitle() and chart.GetYAxisTitle() and chart.GetNumberOfPlotSeriesNodes() >= 3
        for table in results.chart_tables[chart]:
            assert table.GetScene() is logic.scene
    assert all(node.GetScene() is logic.scene for node in results.nodes())


# From the scene's own tables ----------------------------------------------------------------------------------------
def test_from_a_cohort_features_table_node_gives_the_same_study_and_predictions(breast, breast_scene, tmp_path):
    """A cohort-format features table node (id, segment, features as exact text: what CohortLogic.results_table
    makes) made from the features CSV with the project's table helper; the study equals the one from the file."""
    logic, from_file = breast_scene
    header, *rows = csv_cells(breast[0])
    node = logic.scene.AddNewNodeByClass("vtkMRMLTableNode", "breast cohort features")
    write_text_table(node, [header[0], "segment", *header[1:]], [[r[0], "Label_1", *r[1:]] for r in rows])
    node.SetAttribute(KIND_ATTRIBUTE, "cohort-features")
    results = logic.run(node, breast[2], tmp_path / "study", name="From scene", **BINARY)
    assert node_cells(results.metrics) == node_cells(from_file.metrics)
    assert node_cells(results.selected) == node_cells(from_file.selected)
    exported = tmp_path / "study" / "inputs" / "features-breast_cohort_features.csv"
    assert exported.is_file() and results.card["inputs"]["features"]["path"] == str(exported.resolve())
    assert results.metrics.GetNodeReference("RadiomicsLab.StudyFeatures") is node
    assert results.metrics.GetName() == "From scene metrics"
    # The saved model applied to the table node and to the file: the same predictions (exact text).
    model = from_file.files["model.joblib"]
    predicted_node = logic.predict(model, node, breast[2])
    predicted_file = logic.predict(model, breast[0], breast[2])
    assert node_cells(predicted_node) == node_cells(predicted_file) and predicted_node.GetNumberOfRows() == 569
    assert node_cells(predicted_node)[0] == ["id", "model", "prediction", "group"]
    assert {r["group"] for r in logic.table_rows(predicted_node)} == {"positive", "negative"}


def test_observers_icc_table_node_filters_the_features(breast, scene, tmp_path, monkeypatch):
    """An observers ICC table node (ObserverLogic's table: numbers as doubles) as the reproducibility filter. Its
    numbers are made up (the breast cancer table has no repeated segmentations): the first 5 features get a lower
    95 % bound 0.5, the others 0.9; the 5 must never be selected, and the card names the filter."""
    from RadiomicsLabLib.mrml.observers import ObserverLogic
    from RadiomicsLabLib.reproducibility import ICC_COLUMNS

    names = csv_cells(breast[0])[0][1:]
    rows = [{c: (0.5 if k < 5 else 0.9) for c in ICC_COLUMNS} | {"feature": name, "icc_type": "icc2", "robust": ""}
            for k, name in enumerate(names)]
    icc = ObserverLogic(scene).new_table("Observers ICC", rows, ICC_COLUMNS, "observer-icc")
    logic = StudyLogic(scene)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the new temporary output folder is made
    results = logic.run(breast[0], breast[2], None, icc=icc, outcome="diagnosis", positive="malignant", **SMALL)
    assert results.folder.parent == tmp_path and results.folder.name.startswith("radiomicslab-study-")
    assert (results.folder / "metrics.csv").is_file() and logic.study_provenance(results.metrics)["folder"] == str(results.folder)
    assert results.card["selection"][0] == "reproducibility (ICC lower bound >= 0.75)"
    exported = results.folder / "inputs" / "icc-Observers_ICC.csv"
    assert results.card["inputs"]["icc"]["path"] == str(exported.resolve())
    assert [r["ci_low"] for r in csv.DictReader(exported.open())] == ["0.5"] * 5 + ["0.9"] * (len(names) - 5)
    assert results.metrics.GetNodeReference("RadiomicsLab.StudyICC") is icc
    selected = logic.table_rows(results.selected)
    assert {r["feature"] for r in selected if float(r["frequency"]) > 0} <= set(names[5:])
    assert not any(r["final"] == "1" for r in selected if r["feature"] in names[:5])


# Background worker, cancel, bad input ---------------------------------------------------------------------------------
def test_background_study_equals_the_in_thread_call_and_cancel_adds_nothing(breast, breast_scene, tmp_path):
    from RadiomicsLabLib.background import BackgroundRun

    logic, in_thread = breast_scene
    scene = logic.scene
    before = node_ids(scene)
    run = BackgroundRun(logic.run_job(breast[0], breast[2], tmp_path / "background", **BINARY))
    assert node_ids(scene) == before, "nothing may be added before the job lands"
    landed = run.wait(timeout=300)
    assert run.state == "done" and len(node_ids(scene)) > len(before)
    for ours, theirs in zip(landed.tables(), in_thread.tables()):
        assert table_values(ours) == table_values(theirs)
    for ours, theirs in zip(landed.charts(), in_thread.charts()):
        assert chart_values(ours) == chart_values(theirs)

    # Cancel in the worker, and by the progress callback in this thread: no node, no exported input left.
    before = node_ids(scene)
    start_then_cancel(logic.run_job(breast[0], breast[2], tmp_path / "cancelled", **BINARY))
    assert node_ids(scene) == before
    node = features_node(scene, breast[0], "features to cancel")
    before = node_ids(scene)
    with pytest.raises(Cancelled):
        logic.run(breast[0], breast[2], tmp_path / "stopped", progress=lambda done, total, message: False, **BINARY)
    assert node_ids(scene) == before and not (tmp_path / "stopped" / "metrics.csv").exists()
    with pytest.raises(Cancelled):
        logic.run(node, breast[2], tmp_path / "stopped2", progress=lambda *a: False, **BINARY)
    assert node_ids(scene) == before and not (tmp_path / "stopped2").exists()  # the exported input removed


def test_bad_clinical_file_is_one_clear_error_and_leaves_the_scene(breast, scene, tmp_path):
    header, *rows = csv_cells(breast[2])
    rows[3][1] = "unknown"  # a third diagnosis
    rows[7][0] = "P9999"    # an id the features table lacks
    bad = write_rows(tmp_path / "clinical.csv", header, rows)
    logic = StudyLogic(scene)
    features = features_node(scene, breast[0], "features")
    before = node_ids(scene)
    for source in (breast[0], features):
        with pytest.raises(StudyInputError) as error:
            logic.run(source, bad, tmp_path / "out", **BINARY)
        message = str(error.value)
        assert "P9999" in message and "unknown" in message and message.startswith("The study inputs have")
        assert node_ids(scene) == before
        assert not (tmp_path / "out").exists()  # neither the study's files nor the exported input
    with pytest.raises(RadiomicsLabError, match="Unknown study option"):
        logic.run(breast[0], breast[2], tmp_path / "out", repeat=1)
    with pytest.raises(RadiomicsLabError, match="features table must be a vtkMRMLTableNode"):
        logic.run(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "not a table"), breast[2], tmp_path / "out")
    with pytest.raises(RadiomicsLabError, match="model.joblib"):
        logic.predict(tmp_path / "model.joblib", breast[0])
    assert len(node_ids(scene)) == len(before) + 1  # only the volume the test added


# Survival -------------------------------------------------------------------------------------------------------
def test_survival_study_kaplan_meier_chart_of_the_risk_groups(gbsg2, scene, tmp_path):
    logic = StudyLogic(scene)
    results = logic.run(gbsg2 / "features.csv", gbsg2 / "clinical.csv", tmp_path / "logic", **SURVIVAL)
    core = run_study(gbsg2 / "features.csv", gbsg2 / "clinical.csv", tmp_path / "core", **SURVIVAL)
    assert node_cells(results.metrics) == csv_cells(core.files["metrics.csv"])
    assert results.predictions.GetNumberOfRows() == 686
    assert results.roc_chart is None and results.main_chart is results.km_chart
    assert results.km_chart.GetYAxisTitle() == "survival probability" and results.km_chart.GetXAxisTitle() == "time"
    result = core.result
    groups = (result.mean_prediction("cox_ridge") > _cutoff(result, "cox_ridge")).astype(int)
    expected = report.kaplan_meier_data(result.time, result.event, groups)
    by_table = series_by_table(results.km_chart)
    assert len(results.chart_tables[results.km_chart]) == 2
    for group, curve in expected["curves"].items():
        table = next(t for t in results.chart_tables[results.km_chart] if t.GetName() == f"Study Kaplan-Meier {group}")
        x, y = series_points(by_table[table.GetName()])
        own = np.array([table.GetTable().GetColumnByName("event_time").GetValue(i) for i in range(len(x))]) == 1
        assert np.array(x)[own].tolist() == curve.times.tolist() and np.array(y)[own].tolist() == curve.survival.tolist()
        assert (x[0], y[0]) == (0.0, 1.0)
    assert float(results.km_chart.GetAttribute("RadiomicsLab.LogRankP")) == expected["logrank"].p_value
    metrics = {(r["model"], r["metric"]): r for r in logic.table_rows(results.metrics)}
    assert float(metrics[("cox_ridge", "logrank_p")]["estimate"]) == expected["logrank"].p_value


# A saved scene --------------------------------------------------------------------------------------------------------
def test_saved_scene_restores_the_study_tables_and_charts(breast_scene, tmp_path):
    logic, results = breast_scene
    path = tmp_path / "study.mrb"
    logic.save_scene(path)
    again = StudyLogic(new_headless_app().scene)
    again.load_scene(path)
    scene = again.scene
    for table in results.tables():
        reloaded = scene.GetFirstNodeByName(table.GetName())
        assert node_cells(reloaded) == node_cells(table)  # exact text
        assert reloaded.GetAttribute(KIND_ATTRIBUTE) == table.GetAttribute(KIND_ATTRIBUTE)
        assert again.study_provenance(reloaded) == logic.study_provenance(table)
    for chart in results.charts():
        reloaded = scene.GetFirstNodeByName(chart.GetName())
        assert (reloaded.GetXAxisTitle(), reloaded.GetYAxisTitle()) == (chart.GetXAxisTitle(), chart.GetYAxisTitle())
        ours, theirs = chart_series(reloaded), chart_series(chart)
        assert [(s.GetName(), s.GetXColumnName(), s.GetYColumnName(), s.GetTableNode().GetName()) for s in ours] == \
               [(s.GetName(), s.GetXColumnName(), s.GetYColumnName(), s.GetTableNode().GetName()) for s in theirs]
        for a, b in zip(ours, theirs):  # Slicer's table storage keeps 6 significant digits of a plotted column
            assert np.allclose(series_points(a), series_points(b), rtol=1e-5, atol=1e-9, equal_nan=True)
