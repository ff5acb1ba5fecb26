"""CohortLogic: batch extraction over a cohort, its per-case status and results as ``vtkMRMLTableNode``s.

A GUI starts a run (:meth:`CohortLogic.start`, in a background thread that touches only files),
then polls :meth:`CohortLogic.status_table` / :attr:`CohortLogic.progress_state` from its own
(main) thread with a timer; MRML nodes are only ever changed on the caller's thread.
"""

import threading

from ..batch import (
    DONE,
    case_path,
    cohort_status,
    collect_table,
    extraction_task,
    read_record,
    run_batch,
    save_outputs,
    status_counts,
    table_key_columns,
)
from ..cohort import Cohort, read_cohort
from ..errors import RadiomicsLabError
from .app import default_scene
from .tables import KIND_ATTRIBUTE, write_text_table

STATUS_KIND, RESULTS_KIND = "cohort-status", "cohort-features"
OUTPUT_DIR_ATTRIBUTE = "RadiomicsLab.CohortOutput"


class CohortLogic:
    """Cohort batch runs from the scene; every cohort button of a GUI is one call here.

    >>> logic = CohortLogic()
    >>> cohort = logic.load_cohort("cohort.csv")            # problems listed in cohort.problems
    >>> logic.start(cohort, "out", settings="pyradiomics-default", workers=4)
    >>> table = logic.status_table(cohort, "out")           # poll: id, ..., status, seconds, error
    >>> summary = logic.wait(); features = logic.results_table(cohort, "out")
    """

    def __init__(self, scene=None):
        self.scene = scene if scene is not None else default_scene()
        self.task = None
        self.progress_state = (0, 0, "")
        self._thread = None
        self._cancel = threading.Event()
        self._outcome = None
        self._segments = {}  # (case key, case hash) -> segments in its finished result

    # Cohort -----------------------------------------------------------------------------------
    @staticmethod
    def load_cohort(path, channels=None, inside=None) -> Cohort:
        """Read and validate a cohort CSV or folder; its problems are in ``cohort.problems`` (not raised).

        ``inside``: a folder every image and mask must be in (a web server's data folder), checked
        before any image is read; a file outside gives a cohort of problems only (one per such file).
        """
        return read_cohort(path, channels, inside)

    # Running ----------------------------------------------------------------------------------
    def run(self, cohort, output_dir, settings=None, image_types=None, engine=None, workers=None, scheduler=None,
            memory_limit="auto", retry_failed=False, keep_going=False, progress=None):
        """Run the batch now (blocking); returns the :class:`~RadiomicsLabLib.batch.BatchSummary`."""
        cohort = self._prepare(cohort, settings, image_types, engine, keep_going)
        return run_batch(cohort, output_dir, self.task, workers=workers, scheduler=scheduler, memory_limit=memory_limit,
                         retry_failed=retry_failed, keep_going=keep_going, progress=progress)

    def start(self, cohort, output_dir, settings=None, image_types=None, engine=None, workers=None, scheduler=None,
              memory_limit="auto", retry_failed=False, keep_going=False):
        """Start the batch in a background thread and return at once (bad input raises here, before it starts).

        Poll :meth:`is_running`, :attr:`progress_state` ``(done, total, message)`` and
        :meth:`status_table`; :meth:`cancel` stops it after the case in progress; :meth:`wait` returns the summary.
        """
        if self.is_running():
            raise RadiomicsLabError("A cohort run is already going; wait for it or cancel it first.")
        cohort = self._prepare(cohort, settings, image_types, engine, keep_going)
        self._cancel.clear()
        self._outcome = None
        self.progress_state = (0, 0, "starting")

        def progress(done, total, message):
            self.progress_state = (done, total, message)
            return not self._cancel.is_set()

        def work():
            try:
                self._outcome = run_batch(cohort, output_dir, self.task, workers=workers, scheduler=scheduler,
                                          memory_limit=memory_limit, retry_failed=retry_failed,
                                          keep_going=keep_going, progress=progress)
            except BaseException as error:  # noqa: BLE001 - handed to the caller by wait()
                self._outcome = error

        self._thread = threading.Thread(target=work, name="RadiomicsLab cohort batch", daemon=True)
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def cancel(self):
        """Ask the running batch to stop after the case in progress (finished cases are kept)."""
        self._cancel.set()

    def wait(self, timeout=None):
        """Wait for the background run; its summary, or its error raised (None while still running)."""
        if self._thread is None:
            return None
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        if isinstance(self._outcome, BaseException):  # BatchCancelled after cancel(), or a user error
            raise self._outcome
        return self._outcome

    @staticmethod
    def save_results(output_dir, folder) -> dict:
        """Write the files ``radiomicslab batch`` writes for the same run into ``folder``: the ones :meth:`run` /
        :meth:`start` wrote into ``output_dir`` through the batch layer's one writer
        (:func:`~RadiomicsLabLib.batch.save_outputs`: features.csv, features.parquet, errors.csv, provenance.json,
        byte for byte). ``output_dir`` may be the run's :class:`~RadiomicsLabLib.batch.BatchSummary`. Returns name ->
        path."""
        return save_outputs(getattr(output_dir, "out_dir", output_dir), folder)

    # Status and results as tables ---------------------------------------------------------------
    def status(self, cohort, output_dir) -> list:
        """Per-case :class:`~RadiomicsLabLib.batch.CaseStatus` (done, failed, pending, invalid)."""
        return cohort_status(output_dir, cohort, self.task)

    def case_rows(self, cohort, output_dir, statuses=None) -> list[dict]:
        """One dict per case, invalid rows included (what a GUI's live table shows): ``id``, key columns,
        ``where``, ``status``, ``segments`` (a finished case: the segments extracted; else the labels the
        cohort asks for, None for all), ``seconds``, ``error``. Cheap enough to poll while a run is going."""
        statuses = statuses if statuses is not None else self.status(cohort, output_dir)
        rows = []
        for s in statuses:
            segments = None
            if s.unit is not None:
                segments = sum(len(case.labels) for case in s.unit.cases) or None
            if s.status == DONE:
                if (s.key, s.unit.hash) not in self._segments:
                    record = read_record(case_path(output_dir, s.key)) or {}
                    self._segments[s.key, s.unit.hash] = len(record.get("rows", []))
                segments = self._segments[s.key, s.unit.hash]
            rows.append({**s.key_values, "where": s.where, "status": s.status, "segments": segments,
                         "seconds": s.seconds, "error": s.error or s.note})
        return rows

    def status_table(self, cohort, output_dir, table_node=None):
        """A table with one row per case: ``id``, key columns, ``where``, ``status``, ``seconds``, ``error``."""
        cohort = cohort if isinstance(cohort, Cohort) else read_cohort(cohort)
        statuses = self.status(cohort, output_dir)
        key_columns = table_key_columns(cohort, self.task)
        header = ["id", *key_columns, "where", "status", "seconds", "error"]
        rows = self.case_rows(cohort, output_dir, statuses)
        node = self._table(table_node, f"{cohort.source.stem} status", header, rows, STATUS_KIND, output_dir)
        node.SetAttribute("RadiomicsLab.CohortCounts", ", ".join(f"{n} {k}" for k, n in status_counts(statuses).items()))
        return node

    def results_table(self, cohort, output_dir, table_node=None):
        """The finished cases' features: ``id``, key columns, ``segment``, one column per feature (exact text)."""
        cohort = cohort if isinstance(cohort, Cohort) else read_cohort(cohort)
        header, rows = collect_table(output_dir, cohort, task=self.task)
        return self._table(table_node, f"{cohort.source.stem} features", header, rows, RESULTS_KIND, output_dir)

    # Helpers ----------------------------------------------------------------------------------
    def _prepare(self, cohort, settings, image_types, engine, keep_going) -> Cohort:
        self.task = extraction_task(settings, image_types, engine)
        cohort = cohort if isinstance(cohort, Cohort) else read_cohort(cohort)
        return cohort.check(keep_going)

    def _table(self, table_node, name, header, rows, kind, output_dir):
        """Fill (or create) a table node with text columns: numbers as their exact shortest decimal."""
        if table_node is None:
            table_node = self.scene.AddNewNodeByClass("vtkMRMLTableNode", self.scene.GenerateUniqueName(name))
        was_modifying = table_node.StartModify()
        write_text_table(table_node, header, [["" if row.get(c) is None else row[c] for c in header] for row in rows])
        table_node.SetAttribute(KIND_ATTRIBUTE, kind)
        table_node.SetAttribute(OUTPUT_DIR_ATTRIBUTE, str(output_dir))
        table_node.EndModify(was_modifying)
        return table_node

