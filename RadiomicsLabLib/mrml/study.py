"""StudyLogic: a radiomics study (nested cross-validation, metrics with CIs, the signature model) from and into the scene.

The study is the core's :func:`~RadiomicsLabLib.study.run.run_study`: the same files as ``radiomicslab study``
(metrics.csv, predictions.csv, selected_features.csv, model.joblib, model_card.json, report.html, figures) are
written in the output folder, and the results become nodes: table nodes holding the CSV files' exact text
(metrics, out-of-fold predictions, test-set predictions, selected features), and plot chart nodes, each with the
table node(s) its series read: ROC curves (binary; :func:`~RadiomicsLabLib.study.report.roc_data`), calibration
(:func:`~RadiomicsLabLib.study.report.calibration_data`), the decision curve
(:func:`~RadiomicsLabLib.study.metrics.decision_curve`) and the Kaplan-Meier curves of the primary model's risk
groups (survival; :func:`~RadiomicsLabLib.study.report.kaplan_meier_data`): the numbers the report's figures draw.

Inputs are files or the scene's own table nodes (a cohort's features table, an observers ICC table): a node is
written as a CSV file in ``<output folder>/inputs/`` (so the model card's input hashes name what was used) and
the core reads that file. Everything is computed (in a worker process when run as a background job) before the
first node is added: an error or a cancel leaves the scene as it was, and the exported inputs are removed again
when the study fails (a terminated worker cannot remove them). :meth:`StudyLogic.save_results` copies the files the
core wrote into another folder (the desktop module's "save results"); the web panel serves the same files.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import vtk

from ..background import Job
from ..errors import RadiomicsLabError
from ..results import format_value
from .charts import chart_series, numeric_table, plot_chart, plot_series
from .extraction import ExtractionLogic
from .tables import KIND_ATTRIBUTE, PROVENANCE_ATTRIBUTE, read_table_rows, write_text_table

#: The CSV files of a study that become table nodes: file -> (node name suffix, kind).
TABLE_FILES = {
    "metrics.csv": ("metrics", "study-metrics"),
    "predictions.csv": ("predictions", "study-predictions"),
    "test_predictions.csv": ("test predictions", "study-test-predictions"),
    "selected_features.csv": ("selected features", "study-selected-features"),
}
PREDICT_KIND = "study-prediction"
FOLDER_ATTRIBUTE = "RadiomicsLab.StudyFolder"
#: Node reference roles from a metrics table to the scene tables the study read.
FEATURES_ROLE, ICC_ROLE = "RadiomicsLab.StudyFeatures", "RadiomicsLab.StudyICC"
#: Okabe-Ito colours (the report's palette without its pale yellow), one per model / group.
COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#000000")
GREY = (0.45, 0.45, 0.45)


@dataclass
class StudyResults:
    """The nodes one :meth:`StudyLogic.run` made (``None`` where that part does not apply), and the study's files.

    ``chart_tables``: chart node -> the table nodes its series read (ROC: one table per model's curve plus one of
    the bootstrap bands; Kaplan-Meier: one per risk group; calibration and decision curve: one table each).
    """

    metrics: object
    predictions: object
    selected: object
    test_predictions: object = None
    roc_chart: object = None
    calibration_chart: object = None
    decision_chart: object = None
    km_chart: object = None
    chart_tables: dict = field(default_factory=dict)
    folder: Path | None = None
    files: dict = field(default_factory=dict)
    card: dict = field(default_factory=dict, repr=False)
    outcome_kind: str = ""
    primary: str = ""
    summary: str = ""
    notes: list = field(default_factory=list)

    @property
    def main_table(self):
        """The table a GUI shows first: the metrics."""
        return self.metrics

    @property
    def main_chart(self):
        """The chart a GUI shows first: the ROC curves (binary) or the Kaplan-Meier curves (survival)."""
        return self.roc_chart if self.outcome_kind == "binary" else self.km_chart

    def charts(self) -> list:
        return [c for c in (self.roc_chart, self.calibration_chart, self.decision_chart, self.km_chart) if c is not None]

    def tables(self) -> list:
        return [t for t in (self.metrics, self.predictions, self.test_predictions, self.selected) if t is not None]

    def nodes(self) -> list:
        """Every node made: the tables, the charts, their tables and their plot series."""
        nodes = self.tables() + self.charts()
        for chart in self.charts():
            nodes += list(self.chart_tables.get(chart, [])) + chart_series(chart)
        return nodes


# The work (worker-safe: paths and plain options in, plain data out) -------------------------------------------
def compute_study(features, clinical, output_dir, options: dict, created=(), progress=None) -> dict:
    """Run :func:`~RadiomicsLabLib.study.run.run_study` and gather what the nodes show (plain, picklable data).

    ``created``: files and folders made for this run (exported inputs, a new output folder), removed again
    (folders only when empty) when the study fails or is cancelled.
    """
    from ..study.run import run_study

    try:
        run = run_study(features, clinical, output_dir, progress=progress, **options)
        tables = {name: _csv_cells(run.files[name]) for name in TABLE_FILES if name in run.files}
        charts = study_chart_data(run)
    except BaseException:
        _remove(created)
        raise
    card = json.loads(Path(run.files["model_card.json"]).read_text(encoding="utf-8"))
    return {"folder": str(run.folder), "files": {name: str(path) for name, path in run.files.items()}, "card": card,
            "tables": tables, "charts": charts, "outcome_kind": run.result.outcome_kind, "primary": run.primary,
            "summary": run.summary, "notes": list(run.notes)}


def study_chart_data(run) -> dict:
    """The numbers of the charts, from a :class:`~RadiomicsLabLib.study.run.StudyRun` (lists of floats).

    Binary: per model the ROC curve (``fpr``, ``tpr``: :func:`~RadiomicsLabLib.study.report.roc_data` of the
    repeat-averaged out-of-fold probabilities, its bootstrap band with the study's seed, as ``roc.png``), the
    calibration groups (10 quantile groups) and the decision curve. Survival: the Kaplan-Meier curves of the
    primary model's risk groups (risk above the median of the training folds' cut-offs, as ``kaplan_meier.png``).
    """
    from ..study import report
    from ..study.metrics import decision_curve
    from ..study.run import _cutoff

    result = run.result
    data = {}
    if result.outcome_kind == "binary":
        predictions = {model: result.mean_prediction(model) for model in result.models}
        roc, calibration = {}, {}
        for model, p in predictions.items():
            r = report.roc_data(result.y, p, seed=result.seeds["seed"])
            roc[model] = {"fpr": _floats(r["fpr"]), "tpr": _floats(r["tpr"]), "grid": _floats(r["grid"]),
                          "band_low": _floats(r["band_low"]), "band_high": _floats(r["band_high"]),
                          "auc": [float(r["auc"].auc), float(r["auc"].ci_low), float(r["auc"].ci_high)]}
            c = report.calibration_data(result.y, p)
            calibration[model] = {key: _floats(c[key]) for key in ("mean_predicted", "observed", "ci_low", "ci_high", "n")}
        curves = decision_curve(result.y, predictions)
        data.update(roc=roc, calibration=calibration, decision={key: _floats(v) for key, v in curves.items()})
    else:
        risk = result.mean_prediction(run.primary)
        groups = (risk > _cutoff(result, run.primary)).astype(int)
        km = report.kaplan_meier_data(result.time, result.event, groups)
        data["kaplan_meier"] = {name: {"times": _floats(c.times), "survival": _floats(c.survival),
                                       "ci_low": _floats(c.ci_low), "ci_high": _floats(c.ci_high),
                                       "n_at_risk": _floats(c.n_at_risk), "n": int(km["groups"][name].sum()),
                                       "events": int(np.sum(c.n_events))}
                                for name, c in km["curves"].items()}
        data["logrank_p"] = float(km["logrank"].p_value) if km["logrank"] is not None else math.nan
    return data


def compute_prediction(model_path, features, clinical, id_column, created=(), progress=None) -> list:
    """:func:`~RadiomicsLabLib.study.run.predict_table` rows (no file written); ``created`` removed afterwards."""
    from ..study.run import predict_table

    try:
        return predict_table(model_path, features, "-", clinical=clinical, id_column=id_column)
    finally:
        _remove(created)


def _floats(values) -> list:
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def _csv_cells(path) -> tuple[list, list]:
    """(header, rows of text cells) of a CSV file written by the core: the exact text."""
    reader = csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"), newline=""))
    header = next(reader)
    return header, [row for row in reader]


def _remove(paths) -> None:
    for path in map(Path, paths):  # files first, then the folders they were in (when empty)
        if path.is_file():
            path.unlink(missing_ok=True)
    for path in map(Path, reversed(list(paths))):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


# Tables of the scene as the files the core reads -------------------------------------------------------------
_INTEGER_TYPES = {vtk.VTK_CHAR, vtk.VTK_SIGNED_CHAR, vtk.VTK_UNSIGNED_CHAR, vtk.VTK_SHORT, vtk.VTK_UNSIGNED_SHORT,
                  vtk.VTK_INT, vtk.VTK_UNSIGNED_INT, vtk.VTK_LONG, vtk.VTK_UNSIGNED_LONG, vtk.VTK_LONG_LONG,
                  vtk.VTK_UNSIGNED_LONG_LONG, vtk.VTK_ID_TYPE, vtk.VTK_BIT}


def table_node_csv_text(table_node) -> str:
    """A table node as CSV text: text columns as they are (a cohort's features table holds exact decimal text),
    integer columns as integers, other numbers as their exact shortest decimal, NaN as an empty (missing) cell."""
    table = table_node.GetTable()
    columns = [table.GetColumn(j) for j in range(table.GetNumberOfColumns())]

    def cell(column, row):
        if isinstance(column, vtk.vtkStringArray):
            return column.GetValue(row)
        if isinstance(column, vtk.vtkDataArray):
            value = column.GetTuple1(row)
            if column.GetDataType() in _INTEGER_TYPES:
                return str(int(value))
            return format_value(value) if math.isfinite(value) else ""
        return str(column.GetVariantValue(row).ToString())

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.GetName() for c in columns])
    for row in range(table.GetNumberOfRows()):
        writer.writerow([cell(c, row) for c in columns])
    return buffer.getvalue()


def _file_name(role: str, node) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", node.GetName() or node.GetID()).strip("._") or "table"
    return f"{role}-{safe}.csv"


def _is_node(value) -> bool:
    return hasattr(value, "IsA") and hasattr(value, "GetID")


def _study_options() -> set:
    from ..study.run import run_study

    return {name for name, p in inspect.signature(run_study).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "progress"}


# The Logic ---------------------------------------------------------------------------------------------------
class StudyLogic(ExtractionLogic):
    """A radiomics study in the scene; every study button of a GUI and console call goes through here.

    >>> import tempfile
    >>> from RadiomicsLabLib.mrml.study import StudyLogic
    >>> from RadiomicsLabLib.study.examples import write_breast_cancer_example
    >>> tables = write_breast_cancer_example(tempfile.mkdtemp())   # the breast cancer table (binary)
    >>> logic = StudyLogic()                                       # headless, or desktop Slicer's scene
    >>> results = logic.run(tables["features"], tables["clinical"], outcome="diagnosis", positive="malignant",
    ...                     batch="site", covariates=["mean radius"], repeats=1, outer=3, inner=3, workers=1)
    >>> print(results.summary)                                     # the files are in results.folder
    >>> logic.table_rows(results.metrics)[0]                       # {'model': 'clinical', 'metric': 'auc', ...}
    >>> results.main_chart.GetName()                               # 'Study ROC' (survival: 'Study Kaplan-Meier')
    >>> predicted = logic.predict(results.files["model.joblib"], tables["features"], tables["clinical"])
    >>> predicted.GetNumberOfRows()                                # 569: id, model, prediction, group

    ``features`` may be a table node of the scene (a cohort's features table: ``CohortLogic.results_table``).
    """

    # The study ---------------------------------------------------------------------------------------------------
    def run(self, features, clinical, output_dir=None, name: str = "Study", progress=None, **options) -> StudyResults:
        """Run a study and put its results in the scene (see the module docstring).

        ``features``: a CSV / Parquet path or a table node (a cohort's features table: ``id``, key columns,
        features; or any table with an id column and numeric columns); ``clinical``: a CSV path; ``output_dir``:
        the folder of the study's files (None: a new temporary folder, kept; its path is in the provenance).
        ``options``: those of :func:`~RadiomicsLabLib.study.run.run_study` (``outcome``, ``positive``, ``time``,
        ``event``, ``batch``, ``covariates``, ``split``, ``id_column``, ``icc`` (a path or an observers ICC table
        node), ``icc_threshold``, ``missing``, ``models``, ``selection``, ``outer``, ``repeats``, ``inner``,
        ``permutations``, ``seed``, ``workers``, ``horizon``, ...). ``progress(done, total, message)`` returning
        ``False`` cancels. Nothing is added to the scene unless the whole study succeeded.
        """
        return self.run_job(features, clinical, output_dir, name=name, **options).run(progress)

    def run_job(self, features, clinical, output_dir=None, name: str = "Study", **options) -> Job:
        """:meth:`run` as a :class:`~RadiomicsLabLib.background.Job`: the options and nodes are checked and the
        scene's tables written as the files the core reads now; the study (:func:`compute_study`) is computed by
        ``job.run()`` here or by a :class:`~RadiomicsLabLib.background.BackgroundRun` in a worker process; the nodes
        are made when the job lands."""
        unknown = sorted(set(options) - _study_options())
        if unknown:
            raise RadiomicsLabError(f"Unknown study option(s) {', '.join(unknown)}; the options are: "
                                    f"{', '.join(sorted(_study_options()))}.")
        if clinical is None or _is_node(clinical):
            raise RadiomicsLabError("The clinical table must be the path of a CSV file (id, outcome or time and "
                                    "event, optional batch, covariates, split).")
        nodes = {}
        for role, value, kind in (("features", features, "features table"), ("icc", options.get("icc"), "ICC table")):
            if value is not None and _is_node(value):
                self._check_node(value, "vtkMRMLTableNode", kind)
                nodes[role] = value
            elif value is None and role == "features":
                raise RadiomicsLabError("No features table given; give a CSV / Parquet file or a features table node.")
        created = []
        if output_dir is None:
            folder = Path(tempfile.mkdtemp(prefix="radiomicslab-study-"))
            created.append(folder)
        else:
            folder = Path(output_dir)
        if nodes:
            from ..fileio import write_text_atomic

            inputs = folder / "inputs"
            for path in (folder, inputs):
                if not path.exists():
                    created.append(path)
            inputs.mkdir(parents=True, exist_ok=True)
            for role, node in nodes.items():
                path = inputs / _file_name(role, node)
                if not path.exists():
                    created.append(path)
                write_text_atomic(path, table_node_csv_text(node))
                if role == "features":
                    features = path
                else:
                    options["icc"] = path
        features = str(features)
        if options.get("icc") is not None:
            options["icc"] = str(options["icc"])

        def land(outcome):
            return self._write_results(outcome, name, nodes)

        return Job(f"Radiomics study of '{Path(features).name}'", compute_study,
                   (features, str(clinical), str(folder), options, tuple(map(str, created))), land=land)

    # Applying a saved model ----------------------------------------------------------------------------------------
    def predict(self, model_path, features, clinical=None, id_column: str = "id", name: str | None = None,
                progress=None):
        """Apply a ``model.joblib`` of a study to FEATURES (a path or a table node; CLINICAL: a CSV with the batch
        and covariate columns the model needs): a new table node ``id, model, prediction, group`` (exact text)."""
        return self.predict_job(model_path, features, clinical, id_column, name).run(progress)

    def predict_job(self, model_path, features, clinical=None, id_column: str = "id", name: str | None = None) -> Job:
        """:meth:`predict` as a :class:`~RadiomicsLabLib.background.Job` (a features node is written to a temporary
        file now, removed when the prediction ends)."""
        created = []
        source = features
        if _is_node(features):
            self._check_node(features, "vtkMRMLTableNode", "features table")
            from ..fileio import write_text_atomic

            folder = Path(tempfile.mkdtemp(prefix="radiomicslab-predict-"))
            path = write_text_atomic(folder / _file_name("features", features), table_node_csv_text(features))
            created += [folder, path]
            source = features.GetName()
            features = path
        if _is_node(clinical):
            raise RadiomicsLabError("The clinical table must be the path of a CSV file (id, batch, covariates).")
        model_path = Path(model_path)

        def land(rows):
            from ..provenance import file_sha256, software_versions
            from ..study.run import PREDICT_COLUMNS

            node = self.scene.AddNewNodeByClass("vtkMRMLTableNode", self.scene.GenerateUniqueName(
                name or f"{model_path.stem} predictions"))
            write_text_table(node, PREDICT_COLUMNS, [[row[c] for c in PREDICT_COLUMNS] for row in rows])
            node.SetAttribute(KIND_ATTRIBUTE, PREDICT_KIND)
            node.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps({
                "model": str(model_path.resolve()), "model_sha256": file_sha256(model_path),
                "features": str(source), "clinical": None if clinical is None else str(clinical),
                "id_column": id_column, "software": software_versions()}, default=str))
            return node

        return Job(f"Prediction with '{model_path.name}'", compute_prediction,
                   (str(model_path), str(features), None if clinical is None else str(clinical), id_column,
                    tuple(map(str, created))), land=land)

    # Results -------------------------------------------------------------------------------------------------------
    @staticmethod
    def table_rows(table_node) -> list[dict]:
        """The rows of a study table node as dicts of text (the CSV file's cells)."""
        return read_table_rows(table_node)

    @staticmethod
    def study_provenance(node) -> dict:
        """The provenance of a study table: ``{"model_card": ..., "folder": ..., "files": ...}`` (empty if none)."""
        text = node.GetAttribute(PROVENANCE_ATTRIBUTE)
        return json.loads(text) if text else {}

    def save_results(self, results: StudyResults, folder) -> dict:
        """The files ``radiomicslab study`` writes, from a :meth:`run`: the core
        (:func:`~RadiomicsLabLib.study.run.run_study`) wrote them in ``results.folder``; they are copied into
        ``folder`` byte for byte, each atomically (the folder and files checked first); returns file name -> path."""
        import shutil

        from ..fileio import atomic_output, check_output, check_outputs

        files = {name: Path(path) for name, path in (results.files or {}).items()}
        missing = [name for name, path in files.items() if not path.is_file()]
        if not files or missing:
            raise RadiomicsLabError(f"The study's files are not in '{results.folder}' any more "
                                    f"({', '.join(missing) or 'none recorded'}); run the study again to save them.")
        folder = Path(folder)
        if folder.exists() and results.folder is not None and folder.resolve() == Path(results.folder).resolve():
            return files
        inputs = [(f"the study's {name}", path) for name, path in files.items()]
        check_output(folder, inputs, "folder")
        check_outputs([folder / name for name in files], inputs)
        written = {}
        for name, path in files.items():
            with atomic_output(folder / name) as tmp:
                shutil.copyfile(path, tmp)
            written[name] = folder / name
        return written

    def _write_results(self, outcome: dict, name: str, inputs: dict) -> StudyResults:
        scene = self.scene
        provenance = json.dumps({"model_card": outcome["card"], "folder": outcome["folder"],
                                 "files": outcome["files"]}, default=str)
        made = {}
        for file_name, (suffix, kind) in TABLE_FILES.items():
            if file_name not in outcome["tables"]:
                continue
            header, rows = outcome["tables"][file_name]
            node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{name} {suffix}"))
            write_text_table(node, header, rows)
            node.SetAttribute(KIND_ATTRIBUTE, kind)
            node.SetAttribute(PROVENANCE_ATTRIBUTE, provenance)
            node.SetAttribute(FOLDER_ATTRIBUTE, outcome["folder"])
            made[file_name] = node
        results = StudyResults(metrics=made["metrics.csv"], predictions=made["predictions.csv"],
                               selected=made.get("selected_features.csv"),
                               test_predictions=made.get("test_predictions.csv"), folder=Path(outcome["folder"]),
                               files={k: Path(v) for k, v in outcome["files"].items()}, card=outcome["card"],
                               outcome_kind=outcome["outcome_kind"], primary=outcome["primary"],
                               summary=outcome["summary"], notes=outcome["notes"])
        charts = outcome["charts"]
        if "roc" in charts:
            self._roc_chart(results, name, charts["roc"])
            self._calibration_chart(results, name, charts["calibration"])
            self._decision_chart(results, name, charts["decision"])
        if "kaplan_meier" in charts:
            self._km_chart(results, name, charts["kaplan_meier"], charts["logrank_p"])
        for chart in results.charts():
            chart.SetAttribute(FOLDER_ATTRIBUTE, outcome["folder"])
        for role, node in ((FEATURES_ROLE, inputs.get("features")), (ICC_ROLE, inputs.get("icc"))):
            if node is not None:
                results.metrics.SetNodeReferenceID(role, node.GetID())
        return results

    # Charts --------------------------------------------------------------------------------------------------------
    def _roc_chart(self, results, name, roc):
        scene, tables, series = self.scene, [], []
        bands = {"false_positive_rate": next(iter(roc.values()))["grid"]}
        for model, data in roc.items():
            bands[f"{model} band_low"], bands[f"{model} band_high"] = data["band_low"], data["band_high"]
        band_table = numeric_table(scene, f"{name} ROC bands", bands, "study-roc-plot")
        band_table.SetAttribute("RadiomicsLab.Band", "95 % pointwise bootstrap band (stratified resamples), per model")
        series.append(plot_series(scene, band_table, "chance (AUC 0.5)", "false_positive_rate", "false_positive_rate",
                                  GREY, "dash"))
        for k, (model, data) in enumerate(roc.items()):
            colour = COLOURS[k % len(COLOURS)]
            table = numeric_table(scene, f"{name} ROC {model}", {"false_positive_rate": data["fpr"],
                                                                 "true_positive_rate": data["tpr"]}, "study-roc-plot")
            auc, low, high = data["auc"]
            table.SetAttribute("RadiomicsLab.AUC", f"{format_value(auc)} ({format_value(low)}-{format_value(high)})")
            tables.append(table)
            series.append(plot_series(scene, table, f"{model}: AUC {auc:.3f} ({low:.3f}-{high:.3f})",
                                      "false_positive_rate", "true_positive_rate", colour, width=2))
            if model == results.primary:
                series += [plot_series(scene, band_table, f"{model} 95% band {side}", "false_positive_rate",
                                       f"{model} band_{side}", colour, "dot") for side in ("low", "high")]
        results.roc_chart = plot_chart(scene, f"{name} ROC", series, "1 - specificity (false-positive rate)",
                                       "sensitivity (true-positive rate)", "study-roc", (0, 1), (0, 1))
        results.chart_tables[results.roc_chart] = tables + [band_table]

    def _calibration_chart(self, results, name, calibration):
        scene, columns, series = self.scene, {}, []
        n_bins = len(next(iter(calibration.values()))["observed"])
        columns["ideal"] = [i / (n_bins - 1) for i in range(n_bins)]
        for model, data in calibration.items():
            for key in ("mean_predicted", "observed", "ci_low", "ci_high", "n"):
                columns[f"{model} {key}"] = data[key]
        table = numeric_table(scene, f"{name} calibration table", columns, "study-calibration-plot",
                              {"group": [str(i + 1) for i in range(n_bins)]})
        series.append(plot_series(scene, table, "ideal calibration", "ideal", "ideal", GREY, "dash"))
        for k, model in enumerate(calibration):
            series.append(plot_series(scene, table, f"{model} (calibration)", f"{model} mean_predicted", f"{model} observed",
                                      COLOURS[k % len(COLOURS)], marker=True, label="group"))
        results.calibration_chart = plot_chart(scene, f"{name} calibration", series,
                                               "mean predicted probability (quantile group)", "observed event rate",
                                               "study-calibration", (0, 1), (0, 1))
        results.chart_tables[results.calibration_chart] = [table]

    def _decision_chart(self, results, name, curves):
        scene = self.scene
        table = numeric_table(scene, f"{name} decision curve table", curves, "study-decision-curve-plot")
        series = [plot_series(scene, table, "treat none", "threshold", "treat_none", (0, 0, 0)),
                  plot_series(scene, table, "treat all", "threshold", "treat_all", GREY, "dash")]
        models = [c for c in curves if c not in ("threshold", "treat_all", "treat_none")]
        series += [plot_series(scene, table, f"{model} (net benefit)", "threshold", model, COLOURS[k % len(COLOURS)], width=2)
                   for k, model in enumerate(models)]
        top = max([max(curves["treat_all"])] + [max(curves[m]) for m in models])
        results.decision_chart = plot_chart(scene, f"{name} decision curve", series,
                                            "threshold probability (treat when predicted risk >= threshold)",
                                            "net benefit (true positives per patient)", "study-decision-curve",
                                            (0, 1), (-0.05 * max(top, 0.1) - 0.02, top * 1.08 + 0.01))
        results.chart_tables[results.decision_chart] = [table]

    def _km_chart(self, results, name, curves, logrank_p):
        """One table per risk group: the step function drawn by straight lines (each time twice: S just before
        it and S from it on, starting at (0, 1)); ``event_time`` is 1 on the rows of the curve's own times."""
        scene, tables, series = self.scene, [], []
        for k, (group, c) in enumerate(curves.items()):
            time, survival, low, high, own = [0.0], [1.0], [1.0], [1.0], [0.0]
            for t, s, lo, hi in zip(c["times"], c["survival"], c["ci_low"], c["ci_high"]):
                time += [t, t]
                survival += [survival[-1], s]
                low += [low[-1], lo]
                high += [high[-1], hi]
                own += [0.0, 1.0]
            table = numeric_table(scene, f"{name} Kaplan-Meier {group}", {"time": time, "survival": survival,
                                                                          "ci_low": low, "ci_high": high,
                                                                          "event_time": own},
                                  "study-kaplan-meier-plot")
            table.SetAttribute("RadiomicsLab.Group", json.dumps({"group": group, "n": c["n"], "events": c["events"]}))
            tables.append(table)
            colour = COLOURS[k % len(COLOURS)]
            series.append(plot_series(scene, table, f"{group} (n = {c['n']}, {c['events']} events)", "time", "survival",
                                      colour, width=2))
            series += [plot_series(scene, table, f"{group} 95% CI {side}", "time", f"ci_{side}", colour, "dot")
                       for side in ("low", "high")]
        p = "-" if not math.isfinite(logrank_p) else ("< 0.001" if logrank_p < 0.001 else f"= {logrank_p:.3f}")
        results.km_chart = plot_chart(scene, f"{name} Kaplan-Meier", series, "time", "survival probability",
                                      "study-kaplan-meier", y_range=(0, 1.02))
        results.km_chart.SetAttribute("RadiomicsLab.LogRankP", format_value(logrank_p))
        results.km_chart.SetTitle(f"{results.km_chart.GetName()} ({results.primary} risk groups; log-rank p {p})")
        results.chart_tables[results.km_chart] = tables


__all__ = ["StudyLogic", "StudyResults", "compute_prediction", "compute_study", "study_chart_data",
           "table_node_csv_text"]
