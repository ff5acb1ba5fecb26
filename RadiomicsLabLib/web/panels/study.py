"""Study panel: a radiomics study (nested cross-validation) from a features table and a clinical CSV.

The tables come from the data folder (CSV / Parquet features, CSV clinical; a chosen file must be one
the data folder lists), from an upload (size and type checked, kept in the server's output folder),
or, for the features, from a cohort's features table of the scene. The clinical file's header (read
alone) fills the column choices. Run is :meth:`~RadiomicsLabLib.mrml.study.StudyLogic.run_job`: the
study is computed in the job runner (progress, Cancel), its nodes are added when it lands; an error or
a cancel leaves the scene as it was. The study's files are written to a folder of the server's output
folder; the panel shows the metrics (estimate, 95 % CI), the ROC (or Kaplan-Meier) and harmonisation
figures of that folder, offers report.html, model.joblib, the tables and the model card (only files of the latest
study's folder), and applies the study's model to another features table
(:meth:`~RadiomicsLabLib.mrml.study.StudyLogic.predict_job`).
"""

import csv
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from trame.widgets import html
from trame.widgets.vuetify3 import VAlert, VBtn, VBtnToggle, VIcon, VImg, VSelect, VTextField, VTooltip
from undo_stack import Signal

from ...errors import RadiomicsLabError
from ..loader import MAX_LISTED_FILES, MAX_LISTING_DEPTH, UploadFolder, odd_characters, resolve_inside, \
    safe_file_name
from .common import PanelLogic, PanelUI, UploadButton, download_button, png_data_url, section_title

KEY = "study"
TITLE = "Study: model, validation, metrics"
ICON = "mdi-chart-bell-curve-cumulative"
NEEDS_VOLUME = False  # a study reads tables, not the open image
UPLOADS = "uploaded study tables"  # folder of the output folder keeping uploaded tables
FEATURE_SUFFIXES = (".csv", ".parquet")
CLINICAL_SUFFIXES = (".csv",)
#: The files of a study folder the panel offers for download.
DOWNLOADS = {"report.html": "rl-study-report", "model.joblib": "rl-study-model", "metrics.csv": "rl-study-metrics-csv",
             "predictions.csv": "rl-study-predictions-csv", "selected_features.csv": "rl-study-selected-csv",
             "model_card.json": "rl-study-card"}  # file -> its button's class
DOWNLOAD_TYPES = {"report.html": "text/html", "metrics.csv": "text/csv", "predictions.csv": "text/csv",
                  "selected_features.csv": "text/csv", "model_card.json": "application/json"}
#: Figures shown (when the study wrote them): main (ROC or Kaplan-Meier), then the harmonisation ones.
MAIN_FIGURES = {"roc.png": "ROC curves (out-of-fold, 95 % band)",
                "kaplan_meier.png": "Kaplan-Meier curves of the risk groups"}
HARMONISATION_FIGURES = {"harmonisation_pca.png": "Harmonisation: PCA by batch, before / after ComBat",
                         "harmonisation_distributions.png": "Harmonisation: distributions per batch"}
PREVIEW_ROWS = 5


def text(value) -> str:
    """A number as shown in the panel (3 decimals; the files keep every digit); other text as it is."""
    if value in ("", None):
        return ""
    try:
        return f"{float(value):.3f}"
    except (TypeError, ValueError):
        return str(value)


class StudyUploads(UploadFolder):
    """Uploads of study tables: features (CSV / Parquet) and clinical (CSV); the usual size and type checks."""

    ACCEPT = {**UploadFolder.ACCEPT, "features": FEATURE_SUFFIXES, "clinical": CLINICAL_SUFFIXES}


@dataclass
class StudyState:
    data_root: str = ""
    output_root: str = ""
    feature_sources: list[dict] = field(default_factory=list)
    features: str | None = None
    clinical_files: list[dict] = field(default_factory=list)
    clinical: str | None = None
    columns: list[str] = field(default_factory=list)
    id_column: str | None = None
    kind: str = "binary"
    outcome: str | None = None
    positive: str = ""
    time: str | None = None
    event: str | None = None
    batch: str | None = None
    covariates: list[str] = field(default_factory=list)
    split: str | None = None
    model_choices: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    selection_choices: list[str] = field(default_factory=list)
    selection: list[str] = field(default_factory=list)
    repeats: int = 2
    outer: int = 5
    inner: int = 3
    seed: int = 0
    output_name: str = "study"
    has_results: bool = False
    summary: str = ""
    notes: list[str] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    main_plot: str = ""
    main_plot_title: str = ""
    extra_plots: list[dict] = field(default_factory=list)
    folder: str = ""
    apply_features: str | None = None
    apply_clinical: str | None = None
    prediction_count: int = -1
    prediction_rows: list[dict] = field(default_factory=list)
    prediction_title: str = ""


def _select(label, items, model, classes, **kwargs):
    return VSelect(label=label, items=(items,), v_model=(model,), density="compact", variant="outlined",
                   hide_details=True, classes=f"mb-2 {classes}", **kwargs)


def _number_field(label, model, classes, **kwargs):
    return VTextField(label=label, v_model=(model,), type="number", density="compact", variant="outlined",
                      hide_details=True, classes=classes, **kwargs)


class UI(PanelUI):
    """The panel's widgets; ``fetch_file(name)`` (set by the logic) gives a download of the study folder."""

    state_type = StudyState
    list_clicked = Signal()
    apply_clicked = Signal()

    def __init__(self, server, max_upload_bytes: int, error_state: str, **kwargs):
        super().__init__(server, "Radiomics study", ICON, "Nested cross-validation: metrics with 95 % CIs, "
                                                            "the signature model", **kwargs)
        name = self.name
        self.fetch_file = lambda file_name: None
        with self.body:
            with html.Div(classes="d-flex align-center"):
                section_title("Tables", classes="flex-grow-1")
                with VBtn(icon=True, size="x-small", variant="text", click=self.list_clicked,
                          classes="rl-study-list"):
                    VIcon("mdi-refresh", size="small")
                    VTooltip(text="List the data folder's tables and the scene's feature tables again",
                             activator="parent")
            _select("Features table (one row per patient)", name.feature_sources, name.features,
                    "rl-study-features", clearable=True)
            _select("Clinical CSV (id, outcome, batch, ...)", name.clinical_files, name.clinical,
                    "rl-study-clinical", clearable=True)
            with html.Div(classes="d-flex flex-wrap align-center ga-2 mb-1"):
                self.features_upload = UploadButton("Features table", "mdi-file-upload-outline",
                                                    "rl-upload-study-features", FEATURE_SUFFIXES, max_upload_bytes,
                                                    error_state)
                self.clinical_upload = UploadButton("Clinical CSV", "mdi-file-upload-outline",
                                                    "rl-upload-study-clinical", CLINICAL_SUFFIXES, max_upload_bytes,
                                                    error_state)
            html.Div("Files of the data folder {{ %s }}, uploads, or a cohort's features table of the scene."
                     % name.data_root, classes="text-caption text-medium-emphasis mb-2")

            with html.Div(v_if=(f"{name.columns}.length",), classes="rl-study-columns"):
                section_title("Columns of the clinical file")
                _select("Patient id", name.columns, name.id_column, "rl-study-id")
                with VBtnToggle(v_model=(name.kind,), mandatory=True, density="compact", variant="outlined",
                                divided=True, color="primary", classes="mb-2 rl-study-kind"):
                    VBtn(text="Binary outcome", value="binary", size="small")
                    VBtn(text="Survival", value="survival", size="small")
                with html.Div(v_if=(f"{name.kind} === 'binary'",), classes="d-flex ga-2"):
                    _select("Outcome", name.columns, name.outcome, "flex-grow-1 rl-study-outcome")
                    VTextField(label="Positive label", v_model=(name.positive,), density="compact",
                               variant="outlined", hide_details=True, placeholder="e.g. malignant",
                               classes="mb-2 rl-study-positive", style="max-width: 140px;")
                with html.Div(v_if=(f"{name.kind} === 'survival'",), classes="d-flex ga-2"):
                    _select("Time", name.columns, name.time, "flex-grow-1 rl-study-time")
                    _select("Event (0/1)", name.columns, name.event, "flex-grow-1 rl-study-event")
                _select("Batch (ComBat in the folds)", name.columns, name.batch, "rl-study-batch", clearable=True)
                _select("Clinical covariates", name.columns, name.covariates, "rl-study-covariates", multiple=True,
                        chips=True, closable_chips=True, clearable=True)
                _select("Train / test split", name.columns, name.split, "rl-study-split", clearable=True)

                section_title("Model and validation")
                _select("Models (the first is the signature)", name.model_choices, name.models, "rl-study-models",
                        multiple=True, chips=True, closable_chips=True)
                _select("Feature selection (in order)", name.selection_choices, name.selection, "rl-study-selection",
                        multiple=True, chips=True, closable_chips=True, clearable=True)
                with html.Div(classes="d-flex ga-2 mb-2"):
                    _number_field("Repeats", name.repeats, "rl-study-repeats", min=1)
                    _number_field("Outer folds", name.outer, "rl-study-outer", min=2)
                    _number_field("Inner folds", name.inner, "rl-study-inner", min=2)
                    _number_field("Seed", name.seed, "rl-study-seed", min=0)
                VTextField(v_model=(name.output_name,), label="Output folder", density="compact", variant="outlined",
                           hide_details=True, classes="mb-1 rl-study-output")
                html.Div("{{ %s }}/{{ %s }}" % (name.output_root, name.output_name),
                         classes="text-caption text-medium-emphasis text-truncate mb-2")
                VBtn(text="Run study", prepend_icon="mdi-play", color="primary", block=True, classes="rl-study-run",
                     disabled=(f"!{name.features} || !{name.clinical}",), click=self.run_clicked)

            with html.Div(v_if=(name.has_results,), classes="rl-study-results mt-3 mb-4"):
                section_title("Results")
                html.Div("{{ %s }}" % name.summary, classes="text-caption mb-2 rl-study-summary",
                         style="overflow-wrap: anywhere;")
                with VAlert(v_if=(f"{name.notes}.length",), type="info", variant="tonal", density="compact",
                            icon=False, classes="mb-2 text-caption rl-study-notes"):
                    html.Div("{{ n }}", v_for=f"n in {name.notes}", key="n")
                with html.Div(style="max-height: 300px; overflow-y: auto;", classes="mb-2"):
                    with html.Table(classes="text-caption rl-study-metrics", style="width: 100%; border-spacing: 0;"):
                        with html.Tr():
                            for title, align in (("Metric", "left"), ("Estimate", "right"), ("95 % CI", "right")):
                                html.Th(title, style=f"text-align: {align}; padding: 2px 4px;",
                                        classes="text-medium-emphasis")
                        with html.Template(v_for=f"m in {name.metrics}", key="m.key"):
                            with html.Tr(v_if=("m.first",), classes="rl-study-metric-model"):
                                html.Td("{{ m.model }}", colspan=3, classes="font-weight-medium text-primary",
                                        style="padding: 4px 4px 1px 4px;")
                            with html.Tr(classes="rl-study-metric"):
                                html.Td("{{ m.metric }}", style="padding: 1px 4px 1px 10px; overflow-wrap: anywhere;")
                                html.Td("{{ m.estimate }}", style="padding: 1px 4px; text-align: right; "
                                                                  "font-family: monospace;")
                                html.Td("{{ m.ci }}", style="padding: 1px 4px; text-align: right; "
                                                            "font-family: monospace; white-space: nowrap;")
                with html.Div(classes="d-flex flex-wrap ga-2 mb-3"):
                    for file_name, classes in DOWNLOADS.items():
                        download_button(server, file_name, "mdi-download", file_name,
                                        lambda file_name=file_name: self.fetch_file(file_name),
                                        DOWNLOAD_TYPES.get(file_name, "application/octet-stream"), classes=classes)
                with html.Div(v_if=(name.main_plot,), classes="rl-study-main-plot"):
                    html.Div("{{ %s }}" % name.main_plot_title, classes="text-caption text-medium-emphasis")
                    VImg(src=(name.main_plot,), classes="mb-2 rl-study-plot", style="background: white;")
                with html.Div(v_for=f"p in {name.extra_plots}", key="p.title", classes="rl-study-extra-plot"):
                    html.Div("{{ p.title }}", classes="text-caption text-medium-emphasis")
                    VImg(src=("p.src",), classes="mb-2", style="background: white;")
                html.Div("All files (report, predictions, model card, figures): {{ %s }}" % name.folder,
                         classes="text-caption text-medium-emphasis mb-2", style="overflow-wrap: anywhere;")

                section_title("Apply the model to another table")
                _select("Features table", name.feature_sources, name.apply_features, "rl-study-apply-features",
                        clearable=True)
                _select("Clinical CSV (batch / covariate columns; optional)", name.clinical_files,
                        name.apply_clinical, "rl-study-apply-clinical", clearable=True)
                VBtn(text="Apply model", prepend_icon="mdi-play-box-outline", variant="tonal", block=True,
                     classes="rl-study-apply", disabled=(f"!{name.apply_features}",), click=self.apply_clicked)
                with html.Div(v_if=(f"{name.prediction_count} >= 0",), classes="mt-2 rl-study-predictions"):
                    html.Div("{{ %s }}: {{ %s }} patient(s) predicted" % (name.prediction_title,
                                                                          name.prediction_count),
                             classes="text-caption mb-1 rl-study-prediction-count")
                    with html.Table(classes="text-caption rl-study-prediction-table",
                                    style="width: 100%; border-spacing: 0;"):
                        with html.Tr():
                            for title in ("id", "model", "prediction", "group"):
                                html.Th(title, style="text-align: left; padding: 2px 4px;",
                                        classes="text-medium-emphasis")
                        with html.Tr(v_for=f"r in {name.prediction_rows}", key="r.id", classes="rl-study-prediction"):
                            for column in ("id", "model", "prediction", "group"):
                                html.Td("{{ r['%s'] }}" % column, style="padding: 1px 4px;")


class Logic(PanelLogic):
    """Studies through :class:`~RadiomicsLabLib.mrml.study.StudyLogic`."""

    state_type = StudyState

    def __init__(self, *args):
        from ...mrml.study import StudyLogic
        from ...study.models import MODELS, SELECTIONS
        from ...study.run import DEFAULT_MODELS, DEFAULT_SELECTION

        super().__init__(*args)
        self.logic = StudyLogic(self.scene)
        self._uploads = {"features": {}, "clinical": {}}  # kind -> {shown name: path kept in the output folder}
        self._files = {}  # the latest study's files (name -> path)
        self._folder = None
        self.data.data_root = str(self.loader.data.root)
        self.data.output_root = str(self.loader.output_root)
        self.data.model_choices = list(MODELS)
        self.data.models = list(DEFAULT_MODELS["binary"])
        self.data.selection_choices = list(SELECTIONS)
        self.data.selection = list(DEFAULT_SELECTION)
        self.list_files()
        self.typed_state.bind_changes({self.name.clinical: self._on_clinical_changed,
                                       self.name.kind: self._on_kind_changed})

    def set_ui(self, ui: UI):
        super().set_ui(ui)
        ui.list_clicked.connect(self.list_files)
        ui.apply_clicked.connect(self.apply_model)
        ui.features_upload.uploaded.connect(lambda files: self.load_upload(files, "features"))
        ui.clinical_upload.uploaded.connect(lambda files: self.load_upload(files, "clinical"))
        ui.fetch_file = self.file_bytes

    def refresh(self):
        self.list_files()

    # Choosing the tables -------------------------------------------------------------------------
    def _data_tables(self, suffixes) -> list[str]:
        """Relative paths of the data folder's files with these suffixes (no hidden ones, no links out)."""
        root = self.loader.data.root
        if not root.is_dir():
            return []
        root = root.resolve()
        found = []
        for folder, dirs, files in os.walk(root):
            depth = len(Path(folder).relative_to(root).parts)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and depth + 1 < MAX_LISTING_DEPTH)
            for name in sorted(files):
                if name.startswith(".") or odd_characters(name) or not name.lower().endswith(suffixes):
                    continue
                path = Path(folder) / name
                if path.resolve().is_relative_to(root):
                    found.append(path.relative_to(root).as_posix())
                if len(found) >= MAX_LISTED_FILES:
                    return sorted(found)
        return sorted(found)

    def _feature_nodes(self) -> list:
        from ...mrml.cohort import RESULTS_KIND
        from ...mrml.tables import KIND_ATTRIBUTE
        from ..loader import nodes_of

        return [n for n in nodes_of(self.scene, "vtkMRMLTableNode") if n.GetAttribute(KIND_ATTRIBUTE) == RESULTS_KIND]

    def list_files(self):
        """The choices: data folder tables, uploads, and the scene's cohort features tables."""
        features = ([{"title": p, "value": f"data:{p}"} for p in self._data_tables(FEATURE_SUFFIXES)]
                    + [{"title": f"{n} (uploaded)", "value": f"upload:{n}"} for n in self._uploads["features"]]
                    + [{"title": f"{n.GetName()} (scene)", "value": f"node:{n.GetID()}"}
                       for n in self._feature_nodes()])
        clinical = ([{"title": p, "value": f"data:{p}"} for p in self._data_tables(CLINICAL_SUFFIXES)]
                    + [{"title": f"{n} (uploaded)", "value": f"upload:{n}"} for n in self._uploads["clinical"]])
        values = {"features": {i["value"] for i in features}, "clinical": {i["value"] for i in clinical}}
        with self.server.state:
            self.data.feature_sources, self.data.clinical_files = features, clinical
            for key, kind in (("features", "features"), ("apply_features", "features"), ("clinical", "clinical"),
                              ("apply_clinical", "clinical")):
                if getattr(self.data, key) not in values[kind]:
                    setattr(self.data, key, None)

    def _source(self, value, kind: str):
        """The path (or scene node, for features) a choice names; only data folder files, this session's uploads
        and the scene's cohort features tables."""
        what = "features table" if kind == "features" else "clinical CSV"
        if not value:
            raise RadiomicsLabError(f"Choose the {what} first (from the data folder, or upload one).")
        origin, _, rest = str(value).partition(":")
        suffixes = FEATURE_SUFFIXES if kind == "features" else CLINICAL_SUFFIXES
        if origin == "data":
            path = resolve_inside(self.loader.data.root, rest)
            if rest not in self._data_tables(suffixes) or not path.is_file():
                raise RadiomicsLabError(f"'{rest}' is not a {what} of the data folder; choose one from the list.")
            return path
        if origin == "upload" and rest in self._uploads[kind]:
            return self._uploads[kind][rest]
        if origin == "node" and kind == "features":
            node = self.node(rest)
            if node is not None and node in self._feature_nodes():
                return node
        raise RadiomicsLabError(f"The chosen {what} is no longer available; choose it again.")

    async def load_upload(self, files: list, kind: str):
        path = self.jobs.guard(self._store_upload, files, kind)
        if path is None:
            return
        self.list_files()
        with self.server.state:
            setattr(self.data, kind, f"upload:{path.name}")

    def _store_upload(self, files: list, kind: str) -> Path:
        """The uploaded table (size and type checked), kept in the output folder for the model card's hashes."""
        what = "features table (.csv, .parquet)" if kind == "features" else "clinical table (.csv)"
        with StudyUploads(files, kind, self.loader.max_upload_bytes) as uploads:
            if len(uploads) != 1:
                raise RadiomicsLabError(f"Upload one {what} at a time.")
            folder = self.loader.output_root / UPLOADS / kind
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path = Path(shutil.copyfile(uploads[0].path, folder / uploads[0].name))
            except OSError as error:
                raise RadiomicsLabError(f"Cannot keep the upload in the output folder '{folder}': {error.strerror}; "
                                        f"start the server with a writable output folder.") from None
        self._uploads[kind][path.name] = path
        return path

    def _on_clinical_changed(self, value):
        columns = self.jobs.guard(self._header, value) if value else []
        columns = columns or []
        with self.server.state:
            self.data.columns = columns

            def pick(current, *guesses):
                if current in columns:
                    return current
                return next((g for g in guesses if g in columns), None)

            first = columns[0] if columns else None
            self.data.id_column = pick(self.data.id_column, "id", "ID", "patient_id") or first
            self.data.outcome = pick(self.data.outcome, "outcome")
            self.data.time = pick(self.data.time, "time")
            self.data.event = pick(self.data.event, "event")
            self.data.batch = pick(self.data.batch, "batch")
            self.data.split = pick(self.data.split, "split")
            self.data.covariates = [c for c in self.data.covariates if c in columns]

    def _header(self, value) -> list[str]:
        """The clinical CSV's column names: its first line only."""
        path = self._source(value, "clinical")
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                header = next(csv.reader([handle.readline()]), [])
        except (OSError, UnicodeDecodeError) as error:
            raise RadiomicsLabError(f"Cannot read the header of '{path.name}': {error}; give a UTF-8 CSV file.") \
                from None
        header = [h.strip() for h in header if h.strip()]
        if len(header) < 2:
            raise RadiomicsLabError(f"'{path.name}' has no CSV header with columns (id, outcome, ...) on its first "
                                    "line.")
        return header

    def _on_kind_changed(self, kind):
        from ...study.models import MODELS, SELECTIONS, SURVIVAL_MODELS, SURVIVAL_SELECTIONS
        from ...study.run import DEFAULT_MODELS

        choices = list(SURVIVAL_MODELS if kind == "survival" else MODELS)
        selections = list(SURVIVAL_SELECTIONS if kind == "survival" else SELECTIONS)
        with self.server.state:
            if self.data.model_choices != choices:
                self.data.model_choices = choices
                self.data.models = list(DEFAULT_MODELS["survival" if kind == "survival" else "binary"])
            self.data.selection_choices = selections
            self.data.selection = [s for s in self.data.selection if s in selections]

    # Running ---------------------------------------------------------------------------------------
    def _int(self, label, value, low) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = None
        if number is None or number < low or str(value).strip() != str(number):
            raise RadiomicsLabError(f"{label} must be a whole number of at least {low} (it is '{value}').")
        return number

    def _output_dir(self) -> Path:
        name = str(self.data.output_name or "").strip()
        try:
            ok = bool(name) and safe_file_name(name) == name
        except RadiomicsLabError:
            ok = False
        if not ok:
            raise RadiomicsLabError(f"'{name}' is not a folder name; give the output folder a name (no '/'); it is "
                                    f"made in {self.loader.output_root}.")
        return self.loader.output_root / name

    def options(self) -> dict:
        """The study options from the panel (what :func:`~RadiomicsLabLib.study.run.run_study` takes)."""
        data = self.data
        columns = list(data.columns)
        if not data.id_column:
            raise RadiomicsLabError("Choose the clinical file's patient id column.")
        options = {"id_column": data.id_column}
        if data.kind == "survival":
            if not data.time or not data.event:
                raise RadiomicsLabError("Choose the time and event columns of the survival outcome.")
            options.update(time=data.time, event=data.event)
        else:
            if not data.outcome:
                raise RadiomicsLabError("Choose the outcome column (the binary outcome to predict).")
            options["outcome"] = data.outcome
            if str(data.positive or "").strip():
                options["positive"] = str(data.positive).strip()
        for key in ("batch", "split"):
            if getattr(data, key):
                options[key] = getattr(data, key)
        if data.covariates:
            options["covariates"] = list(data.covariates)
        used = [v for v in options.values() if isinstance(v, str)] + list(data.covariates)
        unknown = [c for c in used if c not in columns and c not in (options.get("positive"),)]
        if unknown:
            raise RadiomicsLabError(f"The clinical file has no column {', '.join(map(repr, unknown))}; choose the "
                                    "columns again.")
        if not data.models:
            raise RadiomicsLabError("Choose at least one model.")
        options.update(models=list(data.models), selection=list(data.selection) or ["none"],
                       repeats=self._int("Repeats", data.repeats, 1), outer=self._int("Outer folds", data.outer, 2),
                       inner=self._int("Inner folds", data.inner, 2), seed=self._int("Seed", data.seed, 0),
                       workers=1)
        return options

    def _prepare(self):
        features = self._source(self.data.features, "features")
        clinical = self._source(self.data.clinical, "clinical")
        options = self.options()
        output_dir = self._output_dir()
        return self.logic.run_job(features, clinical, output_dir, name="Study", **options)

    async def run(self):
        if self.jobs.busy:
            self.jobs.show_error(f"'{self.jobs.data.title}' is still running; wait for it or cancel it.")
            return
        job = self.jobs.guard(self._prepare)
        if job is None:
            return

        def work(progress):
            return job.compute(*job.args, progress=progress, **job.kwargs)

        def apply(outcome):
            self._show_study(job.land(outcome))

        results = await self.jobs.run(job.title, work, apply=apply,
                                      done_message=lambda _: "Study done: metrics, figures and model below.")
        if results is not None and self._show_results is not None:
            self._show_results(self._metrics_node)

    def _show_study(self, results):
        rows = self.logic.table_rows(results.metrics)
        self._metrics_node = results.metrics
        self._files = dict(results.files)
        self._folder = Path(results.folder).resolve()
        main = next(((f, t) for f, t in MAIN_FIGURES.items() if f in self._files), (None, ""))
        data = self.data
        data.metrics = [{"key": f"{i}", "model": r["model"], "first": i == 0 or rows[i - 1]["model"] != r["model"],
                         "metric": r["metric"], "estimate": text(r["estimate"]),
                         "ci": f"{text(r['ci_low'])}–{text(r['ci_high'])}" if r["ci_low"] or r["ci_high"] else ""}
                        for i, r in enumerate(rows)]
        data.main_plot = png_data_url(Path(self._files[main[0]]).read_bytes()) if main[0] else ""
        data.main_plot_title = main[1]
        data.extra_plots = [{"title": t, "src": png_data_url(Path(self._files[f]).read_bytes())}
                            for f, t in HARMONISATION_FIGURES.items() if f in self._files]
        data.summary = results.summary
        data.notes = [str(n) for n in results.notes]
        data.folder = str(self._folder)
        data.has_results = True
        data.prediction_count, data.prediction_rows = -1, []

    def file_bytes(self, file_name: str) -> bytes | None:
        """One of :data:`DOWNLOADS` of the latest study's folder (nothing else is served)."""
        path = self._files.get(file_name) if file_name in DOWNLOADS else None
        if path is None or self._folder is None or Path(path).resolve().parent != self._folder \
                or not Path(path).is_file():
            self.jobs.show_error(f"No {file_name} yet; run a study first.")
            return None
        return Path(path).read_bytes()

    # Applying the model ----------------------------------------------------------------------------
    def _prepare_prediction(self):
        model = self._files.get("model.joblib")
        if model is None or not Path(model).is_file():
            raise RadiomicsLabError("No model yet; run a study first (its model.joblib is applied).")
        features = self._source(self.data.apply_features, "features")
        clinical = self._source(self.data.apply_clinical, "clinical") if self.data.apply_clinical else None
        return self.logic.predict_job(model, features, clinical, self.data.id_column or "id")

    async def apply_model(self):
        if self.jobs.busy:
            self.jobs.show_error(f"'{self.jobs.data.title}' is still running; wait for it or cancel it.")
            return
        job = self.jobs.guard(self._prepare_prediction)
        if job is None:
            return

        def work(progress):
            return job.compute(*job.args, progress=progress, **job.kwargs)

        def apply(rows):
            node = job.land(rows)
            shown = self.logic.table_rows(node)[:PREVIEW_ROWS]
            self.data.prediction_title = node.GetName()
            self.data.prediction_count = node.GetNumberOfRows()
            self.data.prediction_rows = [{**{k: str(v) for k, v in r.items()}, "prediction": text(r["prediction"])}
                                         for r in shown]
            self._prediction_node = node

        rows = await self.jobs.run(job.title, work, apply=apply,
                                   done_message=lambda rows: f"Model applied to {len(rows)} patient(s).")
        if rows is not None and self._show_results is not None:
            self._show_results(self._prediction_node)
