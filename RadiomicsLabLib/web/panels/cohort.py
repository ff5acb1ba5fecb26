"""Cohort panel: a cohort file (data folder or upload), its problems, a batch run with per-case status.

The file is read and checked by :meth:`~RadiomicsLabLib.mrml.cohort.CohortLogic.load_cohort` (in
the job runner; every problem listed with its row). Only files inside the server's data folder
are used: a chosen file must be one the data folder lists, and every image and mask the cohort
names must be inside the data folder (checked before any image is read). Run is
:meth:`~RadiomicsLabLib.mrml.cohort.CohortLogic.start`: a Dask LocalCluster of worker processes
writing into a folder under the server's output folder, while the page keeps working; the
per-case table and the progress are polled every :data:`POLL_SECONDS` (files only, off the event
loop). When the run ends, its features table opens in the results pane, and ``features.csv`` and
"All results (zip)" (the files ``radiomicslab batch`` writes, through ``CohortLogic.save_results``) can be
downloaded. A rerun into the same folder skips the finished cases.
"""

import asyncio
import logging
import shutil
from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets.vuetify3 import (VAlert, VAutocomplete, VBtn, VCheckbox, VChip, VIcon, VProgressLinear,
                                    VSelect, VTextField, VTooltip)
from trame_server.utils import asynchronous
from undo_stack import Signal

from ...cohort import KEY_COLUMNS
from ...errors import Cancelled, RadiomicsLabError
from ...settings import preset_names
from ..loader import UploadFolder, safe_file_name
from .common import PanelLogic, PanelUI, UploadButton, download_button, saved_files_zip, section_title

log = logging.getLogger(__name__)

KEY = "cohort"
TITLE = "Cohort: batch extraction over many cases"
ICON = "mdi-table-multiple"
NEEDS_VOLUME = False  # a cohort run reads its own files, not the open study
POLL_SECONDS = 1.0
UPLOADS = "uploaded cohorts"  # folder of the output folder keeping uploaded cohort files
STATUS_COLOURS = {"done": "success", "failed": "error", "pending": "grey", "invalid": "warning"}


@dataclass
class CohortState:
    files: list[str] = field(default_factory=list)
    file: str | None = None
    data_root: str = ""
    source: str = ""
    cases_valid: int = 0
    problems: list[dict] = field(default_factory=list)
    keep_going: bool = False
    presets: list[str] = field(default_factory=list)
    preset: str = "pyradiomics-default"
    worker_choices: list[int] = field(default_factory=list)
    workers: int = 1
    output_name: str = ""
    output_root: str = ""
    cases: list[dict] = field(default_factory=list)
    counts: list[dict] = field(default_factory=list)
    running: bool = False
    cancelling: bool = False
    done: int = 0
    total: int = 0
    message: str = ""
    has_results: bool = False  # some case is done: its features can be shown
    has_csv: bool = False  # this run wrote features.csv (a cancelled run writes none)


class UI(PanelUI):
    """The panel's widgets; ``fetch_features`` and ``fetch_zip`` (set by the logic) give the features.csv and the
    all-results downloads."""

    state_type = CohortState
    cancel_clicked = Signal()
    list_clicked = Signal()
    show_clicked = Signal()

    def __init__(self, server, max_upload_bytes: int, error_state: str, **kwargs):
        super().__init__(server, "Cohort", ICON, "Features of every case of a cohort file", **kwargs)
        name = self.name
        self.fetch_features = lambda: None
        self.fetch_zip = lambda: None
        with self.body:
            section_title("Cohort file")
            html.Div("CSV with columns id, image, mask (optional label, timepoint, observer, channel); paths "
                     "relative to the file.", classes="text-caption text-medium-emphasis mb-2")
            with html.Div(classes="d-flex align-center ga-1 mb-1"):
                VAutocomplete(label="Cohort file of the data folder", items=(name.files,), v_model=(name.file,),
                              density="compact", variant="outlined", hide_details=True, clearable=True,
                              disabled=(name.running,), classes="flex-grow-1 rl-cohort-file")
                with VBtn(icon=True, size="small", variant="text", click=self.list_clicked, disabled=(name.running,)):
                    VIcon("mdi-refresh")
                    VTooltip(text="List the data folder's cohort files again", activator="parent")
            html.Div("{{ %s }}" % name.data_root, classes="text-caption text-medium-emphasis text-truncate mb-2")
            with html.Div(classes="d-flex align-center ga-2 mb-1"):
                self.upload = UploadButton("Cohort CSV", "mdi-file-upload-outline", "rl-upload-cohort",
                                           UploadFolder.accepted_suffixes("cohort"), max_upload_bytes, error_state,
                                           disabled=(name.running,))
                html.Span("paths in an uploaded file: absolute, inside the data folder",
                          classes="text-caption text-medium-emphasis")

            with html.Div(v_if=(name.source,), classes="rl-cohort-checked"):
                html.Div("{{ %s }}: {{ %s }} valid case(s){{ %s.length ? ', ' + %s.length + ' problem(s)' : '' }}"
                         % (name.source, name.cases_valid, name.problems, name.problems),
                         classes="text-body-2 mt-2 rl-cohort-summary")
                with VAlert(v_if=(f"{name.problems}.length",), type="warning", variant="tonal", density="compact",
                            icon=False, classes="mt-2 rl-cohort-problems", style="max-height: 220px; overflow-y: auto;"):
                    with html.Div(v_for=f"p in {name.problems}", key="p.key", classes="text-caption rl-cohort-problem"):
                        html.B("{{ p.where }}{{ p.id ? ' (' + p.id + ')' : '' }}: ")
                        html.Span("{{ p.message }}")
                VCheckbox(v_if=(f"{name.problems}.length && {name.cases_valid}",), v_model=(name.keep_going,),
                          density="compact", hide_details=True, disabled=(name.running,),
                          label="Skip the rows with problems", classes="rl-cohort-keep-going")

                section_title("Run")
                with html.Div(classes="d-flex ga-2 mb-2"):
                    VSelect(items=(name.presets,), v_model=(name.preset,), density="compact", variant="outlined",
                            hide_details=True, label="Features", disabled=(name.running,), classes="rl-cohort-preset")
                    VSelect(items=(name.worker_choices,), v_model=(name.workers,), density="compact",
                            variant="outlined", hide_details=True, label="Workers", disabled=(name.running,),
                            style="max-width: 96px;", classes="rl-cohort-workers")
                VTextField(v_model=(name.output_name,), label="Output folder", density="compact", variant="outlined",
                           hide_details=True, disabled=(name.running,), classes="mb-1 rl-cohort-output")
                html.Div("{{ %s }}/{{ %s }}" % (name.output_root, name.output_name),
                         classes="text-caption text-medium-emphasis text-truncate mb-2")
                with html.Div(classes="d-flex ga-2"):
                    VBtn(text="Run", prepend_icon="mdi-play", color="primary", classes="flex-grow-1 rl-cohort-run",
                         loading=(name.running,),
                         disabled=(f"{name.running} || !{name.cases_valid} || "
                                   f"({name.problems}.length > 0 && !{name.keep_going})",),
                         click=self.run_clicked)
                    VBtn(v_if=(name.running,), text=(f"{name.cancelling} ? 'Stopping…' : 'Cancel'",),
                         prepend_icon="mdi-stop", variant="tonal", disabled=(name.cancelling,),
                         click=self.cancel_clicked, classes="rl-cohort-cancel")

                with html.Div(v_if=(f"{name.running} || {name.total}",), classes="mt-3 rl-cohort-progress"):
                    VProgressLinear(model_value=(f"{name.total} ? 100 * {name.done} / {name.total} : 0",),
                                    indeterminate=(f"{name.running} && !{name.total}",), color="primary", height=6,
                                    rounded=True)
                    html.Div("{{ %s }} of {{ %s }} case(s) computed{{ %s ? ' · ' + %s : '' }}"
                             % (name.done, name.total, name.message, name.message),
                             classes="text-caption text-medium-emphasis mt-1")

                with html.Div(v_if=(f"{name.cases}.length",), classes="rl-cohort-results"):
                    section_title("Cases")
                    with html.Div(classes="d-flex flex-wrap ga-1 mb-2"):
                        VChip(v_for=f"c in {name.counts}", key="c.status", text=("c.status + ' ' + c.count",),
                              color=("c.colour",), size="small", variant="tonal", classes="rl-cohort-count")
                    with html.Table(classes="text-caption rl-cohort-cases", style="width: 100%; border-spacing: 0;"):
                        with html.Tr():
                            for title, align in (("Case", "left"), ("Segments", "right"), ("Status", "left"),
                                                 ("Time", "right")):
                                html.Th(title, style=f"text-align: {align}; padding: 2px 4px;",
                                        classes="text-medium-emphasis")
                        with html.Template(v_for=f"row in {name.cases}", key="row.key"):
                            with html.Tr(classes="rl-cohort-case"):
                                html.Td("{{ row.id || row.where }}", classes="rl-cohort-case-id",
                                        style="padding: 2px 4px;")
                                html.Td("{{ row.segments }}", classes="rl-cohort-case-segments",
                                        style="padding: 2px 4px; text-align: right; font-family: monospace;")
                                with html.Td(style="padding: 2px 4px;"):
                                    VChip(text=("row.status",), color=("row.colour",), size="x-small",
                                          variant="tonal", classes="rl-cohort-case-status")
                                html.Td("{{ row.seconds }}", style="padding: 2px 4px; text-align: right; "
                                                                   "font-family: monospace;")
                            with html.Tr(v_if=("row.error && row.status !== 'invalid'",),
                                         classes="rl-cohort-case-error"):  # invalid rows: listed above
                                html.Td("{{ row.where }}: {{ row.error }}", colspan=4,
                                        classes="text-error", style="padding: 0 4px 4px 12px;")
                    with html.Div(v_if=(name.has_results,), classes="d-flex flex-wrap ga-2 mt-3 mb-4"):
                        download_button(server, "features.csv", "mdi-download",
                                        (f"{name.output_name} + '_features.csv'",), lambda: self.fetch_features(),
                                        "text/csv", v_if=(name.has_csv,), classes="rl-cohort-csv")
                        download_button(server, "All results (zip)", "mdi-folder-zip-outline",
                                        (f"{name.output_name} + '_results.zip'",), lambda: self.fetch_zip(),
                                        "application/zip", v_if=(name.has_csv,), classes="rl-cohort-download")
                        VBtn(text="Show features", prepend_icon="mdi-table-eye", variant="tonal", size="small",
                             click=self.show_clicked, classes="rl-cohort-show")


class Logic(PanelLogic):
    """Cohort batch runs through :class:`~RadiomicsLabLib.mrml.cohort.CohortLogic`."""

    state_type = CohortState

    def __init__(self, *args):
        from ...batch import available_cores
        from ...mrml.cohort import CohortLogic

        super().__init__(*args)
        self.logic = CohortLogic(self.scene)
        self.cohort = None
        self.output_dir = None
        self._written = None  # the output folder whose features.csv the latest finished run wrote
        self._following = None
        self._tables = {}  # (output folder, kind) -> the table node a run filled (filled again by the next run)
        self.data.presets = preset_names()
        self.data.worker_choices = list(range(1, available_cores() + 1))
        self.data.workers = len(self.data.worker_choices)
        self.data.data_root = str(self.loader.data.root)
        self.data.output_root = str(self.loader.output_root)
        self.list_files()
        self.typed_state.bind_changes({self.name.file: self._on_file_changed})

    def set_ui(self, ui: UI):
        super().set_ui(ui)
        ui.cancel_clicked.connect(self.cancel)
        ui.list_clicked.connect(self.list_files)
        ui.show_clicked.connect(self.show_features)
        ui.upload.uploaded.connect(self.load_upload)
        ui.fetch_features = self.features_bytes
        ui.fetch_zip = self.results_zip

    # Choosing the cohort ------------------------------------------------------------------------
    def list_files(self):
        """The data folder's cohort files (``.csv``), by relative path."""
        with self.server.state:
            self.data.files = [e.path for e in self.loader.data.entries(("cohort",))]

    def _on_file_changed(self, relative):
        if relative:
            asynchronous.create_task(self.load_from_data(relative))

    async def load_from_data(self, relative: str):
        path = self.jobs.guard(self.loader.data.path_of, relative, ("cohort",))
        if path is not None:
            await self._check(path, relative)

    async def load_upload(self, files: list):
        path = self.jobs.guard(self._store_upload, files)
        if path is not None:
            with self.server.state:
                self.data.file = None
            await self._check(path, f"{path.name} (uploaded)")

    def _store_upload(self, files: list):
        """The uploaded cohort file (size and type checked), kept in the output folder for the provenance."""
        with UploadFolder(files, "cohort", self.loader.max_upload_bytes) as uploads:
            if len(uploads) != 1:
                raise RadiomicsLabError("Upload one cohort file (.csv) at a time.")
            folder = self.loader.output_root / UPLOADS
            try:
                folder.mkdir(parents=True, exist_ok=True)
                return shutil.copyfile(uploads[0].path, folder / uploads[0].name)
            except OSError as error:
                raise RadiomicsLabError(f"Cannot keep the upload in the output folder '{folder}': {error.strerror}; "
                                        f"start the server with a writable output folder.") from None

    async def _check(self, path, label: str):
        """Read and check the cohort (every image and mask read) in the job runner; show its problems."""
        if self.logic.is_running():
            self.jobs.show_error("A cohort run is going; wait for it or cancel it before choosing another cohort.")
            return
        root = self.loader.data.root

        def work(progress):
            return self.logic.load_cohort(path, inside=root)

        def apply(cohort):
            self.cohort = cohort
            self.data.source = label
            self.data.cases_valid = len(cohort.cases)
            self.data.problems = [{"key": f"{i}", "where": p.where, "id": p.case_id, "message": p.message}
                                  for i, p in enumerate(cohort.problems)]
            self.data.keep_going = False
            self.data.output_name = cohort.source.stem
            self.data.done = self.data.total = 0
            self.data.message = ""

        cohort = await self.jobs.run(f"Checking the cohort {label}", work, apply=apply)
        if cohort is not None:
            await self._update_cases()

    # Running ------------------------------------------------------------------------------------
    def _output_dir(self):
        name = str(self.data.output_name or "").strip()
        if not name or safe_file_name(name) != name:
            raise RadiomicsLabError(f"'{name}' is not a folder name; give the output folder a name (no '/'); it is "
                                    f"made in {self.loader.output_root}.")
        return self.loader.output_root / name

    def _start(self):
        if self.cohort is None:
            raise RadiomicsLabError("Choose a cohort file first (from the data folder, or upload one).")
        workers = self.data.workers
        if workers not in self.data.worker_choices:
            raise RadiomicsLabError(f"Choose 1 to {len(self.data.worker_choices)} workers (this machine's cores).")
        output_dir = self._output_dir()
        self.logic.start(self.cohort, output_dir, settings=self.data.preset, workers=workers,
                         keep_going=bool(self.data.keep_going))
        return output_dir

    async def run(self):
        if self.logic.is_running():
            self.jobs.show_error("The cohort is already running; wait for it or cancel it.")
            return
        self.jobs.clear_messages()
        output_dir = self.jobs.guard(self._start)
        if output_dir is None:
            return
        self.output_dir, self._written = output_dir, None
        with self.server.state:
            self.data.running, self.data.cancelling = True, False
            self.data.done, self.data.total, self.data.message = 0, 0, "starting the workers"
        self._following = asynchronous.create_task(self._follow())

    def cancel(self):
        self.logic.cancel()
        with self.server.state:
            self.data.cancelling = True

    async def _follow(self):
        """Poll the run until it ends, then show its outcome and its features."""
        try:
            while self.logic.is_running():
                try:
                    await self._update_cases()
                except Exception:  # noqa: BLE001 - a bug in the display must not stop following the run
                    log.exception("cohort status could not be read")
                await asyncio.sleep(POLL_SECONDS)
            try:
                summary = self.logic.wait()
                self._written = summary.out_dir
                self.jobs.show_notice(f"Cohort: {summary}.")
            except Cancelled as cancelled:
                self.jobs.show_notice(str(cancelled))
            except RadiomicsLabError as error:
                self.jobs.show_error(str(error))
            except Exception as error:  # a bug: keep the app alive and say so
                log.exception("cohort run failed")
                self.jobs.show_error(f"The cohort run failed unexpectedly ({type(error).__name__}: {error}); "
                                     "see the server log.")
            await self._update_cases()
        finally:
            with self.server.state:
                self.data.running = self.data.cancelling = False
        if self.data.has_results:
            self.show_features()

    async def _update_cases(self):
        """The per-case table, counts and progress from the output folder (read off the event loop)."""
        from ...batch import status_counts

        cohort = self.cohort
        output_dir = self.output_dir if self.logic.is_running() else self.jobs.guard(self._output_dir)
        if cohort is None or output_dir is None:
            return
        def read():
            statuses = self.logic.status(cohort, output_dir)
            return statuses, self.logic.case_rows(cohort, output_dir, statuses)

        statuses, rows = await asyncio.to_thread(read)
        done, total, message = self.logic.progress_state
        counts = status_counts(statuses)
        with self.server.state:
            self.data.cases = [{"key": f"{i}", "id": " / ".join(str(r[c]) for c in ("id", *KEY_COLUMNS) if r.get(c)),
                                "where": r["where"], "status": r["status"], "colour": STATUS_COLOURS[r["status"]],
                                "segments": "" if r["segments"] is None else r["segments"],
                                "seconds": "" if r["seconds"] is None else f"{r['seconds']:.1f} s",
                                "error": r["error"] or ""} for i, r in enumerate(rows)]
            self.data.counts = [{"status": k, "count": n, "colour": STATUS_COLOURS[k]} for k, n in counts.items() if n]
            if self.logic.is_running() or self.data.running:
                self.data.done, self.data.total, self.data.message = done, total, message
            self.data.has_results = counts["done"] > 0
            self.data.has_csv = self._written == output_dir
            self.output_dir = output_dir

    # Results ------------------------------------------------------------------------------------
    def show_features(self):
        """The run's features (and per-case status) as table nodes; the features open in the results pane."""
        if self.cohort is None or self.output_dir is None:
            return
        status = self.jobs.guard(self.logic.status_table, self.cohort, self.output_dir,
                                 self._table_node("status"))
        features = self.jobs.guard(self.logic.results_table, self.cohort, self.output_dir,
                                   self._table_node("features"))
        if status is not None and features is not None:
            self._tables[self.output_dir, "status"], self._tables[self.output_dir, "features"] = status, features
            self._show_results(features)

    def _table_node(self, kind):
        node = self._tables.get((self.output_dir, kind))
        return node if node is not None and self.scene.IsNodePresent(node) else None

    def results_zip(self) -> bytes | None:
        """Every file ``radiomicslab batch`` writes for the latest finished run (features.csv, features.parquet,
        errors.csv, provenance.json: :meth:`~RadiomicsLabLib.mrml.cohort.CohortLogic.save_results`) as one zip."""
        if self._written is None:
            self.jobs.show_error("No results yet; run the cohort to its end (a rerun skips the finished cases).")
            return None
        return saved_files_zip(self.jobs, self.logic.save_results, self._written, prefix="radiomicslab-cohort-")

    def features_bytes(self) -> bytes | None:
        """The ``features.csv`` the latest finished run wrote (as ``radiomicslab batch`` writes it)."""
        path = None if self._written is None else self._written / "features.csv"
        if path is None or not path.is_file():
            self.jobs.show_error("No features.csv yet; run the cohort to its end (a rerun skips the finished cases).")
            return None
        return path.read_bytes()
