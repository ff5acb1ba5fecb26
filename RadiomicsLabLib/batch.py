"""Batch runs over a cohort: one task per case on a Dask cluster, resumable, results streamed to disk.

Layout of an output folder ``DIR``::

    DIR/cases/<key>.json      one file per finished case (status done or failed), written atomically
    DIR/features.csv          one row per case and segment: id, [timepoint, observer, channel], segment, features
    DIR/features.parquet      the same table (strings and float64 columns)
    DIR/errors.csv            failed cases and (with keep_going) invalid rows, each with its row and error
    DIR/provenance.json       the run: software, settings, cohort, and each case's hash and provenance
    DIR/batch.json            the task and settings of the latest run (read by :func:`cohort_status`)

A case file holds the case's hash (:func:`~RadiomicsLabLib.cohort.case_hash`: inputs + settings).
A rerun skips a case whose file has the current hash (done, or failed unless ``retry_failed``) and
redoes the rest, so a run stopped in any way (cancel, Ctrl-C, ``kill -9`` of a worker or of the
whole process) resumes where it was: finished cases were renamed into place as they arrived and
nothing half-written is ever read. The cluster is a :class:`distributed.LocalCluster` of worker
*processes* (pyradiomics holds the GIL) bound to 127.0.0.1 with no dashboard, or an existing
scheduler; ``workers=0`` runs every case in this process, one after the other.

Other workflows reuse the batch layer with their own :class:`CaseTask`: a module-level
``function(case, params) -> CaseOutput`` returning table rows (key columns as text, values as
numbers) and a provenance dict. With ``per_patient=True`` the function gets every row of one id
at once (``function([case, ...], params)``: all timepoints, observers or channels of a patient),
and status, results and files are per patient (key = id). A workflow of several stages (habitats:
per-patient data, one model fitted in between, per-patient labels) gives each stage's task its own
``cases_dir`` and passes the earlier stages to the later ones (``earlier``), so errors.csv lists
every stage's failures; ``table=None`` when the workflow writes its own tables instead of features.csv.

Failures: a case that fails while it runs is recorded (errors.csv) and the others go on, always.
``keep_going`` is about problems of the cohort itself (rows that do not validate, found before any
work): without it they are all listed and nothing runs; with it they go to errors.csv and the
valid cases run.
"""

import datetime
import json
import logging
import os
import socket
import sys
import threading
import time
import traceback
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import hashlib

from .background import use_worker_python
from .cohort import (KEY_COLUMNS, Case, Cohort, available_cores, case_hash, cohort_inputs, cost_estimate, join_places,
                     read_cohort)
from .errors import Cancelled, RadiomicsLabError, RadiomicsLabWarning
from .fileio import atomic_output, check_outputs, check_writable, write_text_atomic

DONE, FAILED, PENDING, INVALID = "done", "failed", "pending", "invalid"
CASES_DIR, LOCK_FILE, RUN_FILE = "cases", ".radiomicslab-batch.lock", "batch.json"
OUTPUT_FILES = ("features.csv", "features.parquet", "errors.csv", "provenance.json")


@dataclass
class CaseOutput:
    """What a case task returns: table ``rows`` (dicts: key columns as ``str``, values as numbers,
    e.g. ``{"segment": "Label_1", "original_glcm_Contrast": 47.49}``) and the case's provenance."""

    rows: list
    provenance: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CaseTask:
    """What to do with each case: ``function(case, params) -> CaseOutput`` (module-level, picklable).

    ``fingerprint`` (JSON-able) describes ``params`` for the case hash and the provenance; ``name``
    tells tasks apart (a result of another task is never taken as done); ``per_patient``: the
    function gets the list of every case (row) of one id instead of one case; ``cases_dir``: the
    folder (in the output folder) of the task's case files; ``table``: the name of the table the
    batch writes from the rows (``<table>.csv`` and ``.parquet``), None for none.
    """

    name: str
    function: object
    params: object = None
    fingerprint: object = None
    per_patient: bool = False
    cases_dir: str = CASES_DIR
    table: str | None = "features"


@dataclass(frozen=True)
class WorkUnit:
    """What one task runs on: one case, or every case of one patient (``per_patient`` tasks).

    ``hash``: the case's :func:`~RadiomicsLabLib.cohort.case_hash`, or for a patient the SHA-256 of
    its cases' hashes in cohort order.
    """

    key: str
    cases: tuple
    hash: str
    per_patient: bool = False

    @property
    def id(self) -> str:
        return self.cases[0].id

    @property
    def where(self) -> str:
        return join_places(case.where for case in self.cases)

    @property
    def argument(self):
        """What the task function gets: the case, or the list of the patient's cases."""
        return list(self.cases) if self.per_patient else self.cases[0]

    def key_values(self, key_columns) -> dict:
        """``id`` and the key columns (timepoint, observer, channel) that name this unit's rows."""
        if self.per_patient:
            return {"id": self.id}
        return {"id": self.id, **{column: getattr(self.cases[0], column) for column in key_columns}}

    def inputs(self):
        return [case.inputs() for case in self.cases] if self.per_patient else self.cases[0].inputs()


def work_units(cohort: Cohort, task: CaseTask) -> list[WorkUnit]:
    """The units of work of ``task`` over the valid cases of ``cohort``, in cohort order."""
    hashed = [(case, case_hash(case, task.name, task.fingerprint)) for case in cohort.cases]
    if not task.per_patient:
        return [WorkUnit(case.key, (case,), digest) for case, digest in hashed]
    patients = {}
    for case, digest in hashed:
        patients.setdefault(case.id, []).append((case, digest))
    return [WorkUnit(patient, tuple(c for c, _ in members),
                     hashlib.sha256("".join(d for _, d in members).encode()).hexdigest(), True)
            for patient, members in patients.items()]


@dataclass(frozen=True)
class CaseStatus:
    """Where one case (or patient, for per-patient tasks) stands: ``done``, ``failed``, ``pending``
    (not run, or its inputs or settings changed: ``note`` says so) or ``invalid`` (a problem in the
    cohort file: ``error``). ``key_values``: ``id`` and the key columns naming its table rows."""

    key: str
    id: str
    where: str
    status: str
    error: str = ""
    seconds: float | None = None
    attempts: int = 0
    note: str = ""
    unit: WorkUnit | None = None
    key_values: dict = field(default_factory=dict)


@dataclass
class BatchSummary:
    """Counts and outputs of a finished batch run."""

    out_dir: Path
    total: int
    skipped: int
    computed: int
    failed: int
    invalid: int
    seconds: float
    phases: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

    def __str__(self) -> str:
        failed = self.failed + self.invalid
        return (f"{self.total} case(s): {self.skipped} already done (skipped), {self.computed} computed, "
                f"{failed} with errors, in {self.seconds:.1f} s")


class BatchCancelled(Cancelled):
    """The run was cancelled; finished cases are kept and the next run resumes."""


# Tasks ----------------------------------------------------------------------------------------
def extraction_task(settings=None, image_types=None, engine=None) -> CaseTask:
    """The feature extraction task (settings as :func:`~RadiomicsLabLib.settings.load_settings` takes them)."""
    from .settings import load_settings

    settings = load_settings(settings, image_types, engine)
    fingerprint = {"engine": settings.engine, "params": settings.params}  # content, not where the file was
    return CaseTask("extract", extract_case, settings, fingerprint)


def extract_case(case: Case, settings) -> CaseOutput:
    """Features of every chosen label of one case, one row per segment
    (:func:`RadiomicsLabLib.extraction.extract`, the same numbers as a single extraction). A DICOM RTSTRUCT / SEG
    mask gives its ROI ``case.roi`` or every ROI, each its own segment named by the ROI (overlapping ROIs each on
    its own mask), as ``radiomicslab extract`` does."""
    from .extraction import extract, extract_masks, read_dicom_inputs
    from .imageio import read_image
    from .validation import check_mask_is_label_map, labels_present, segment_name

    if case.dicom_mask:
        image, segments = read_dicom_inputs(case.image, case.mask, [case.roi] if case.roi else (), settings)
        result = extract_masks(image, [(s.name, s.mask, 1) for s in segments], settings, inputs=case.inputs())
    else:
        image = read_image(case.image, "image")
        mask = check_mask_is_label_map(read_image(case.mask, "mask"), where=f"mask '{case.mask}'")
        labels = case.labels or labels_present(mask)
        result = extract(image, mask, {segment_name(label): label for label in labels}, settings, inputs=case.inputs())
    rows = []
    for value in result.values:
        if not rows or rows[-1]["segment"] != value.segment:
            rows.append({"segment": value.segment})
        rows[-1][value.feature] = value.value
    return CaseOutput(rows, result.provenance)


def run_case(function, argument, params) -> dict:
    """Run one case or patient (on a worker): the record to store, ``done`` with rows and provenance,
    or ``failed`` with the error. Errors are results, so a failing case never stops the run."""
    started = time.perf_counter()
    record = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        output = function(argument, params)
        record.update(status=DONE, rows=output.rows, provenance=output.provenance)
    except RadiomicsLabError as error:
        record.update(status=FAILED, error=str(error), error_type=type(error).__name__)
    except Exception as error:  # noqa: BLE001 - any failure of one case is recorded, not raised
        record.update(status=FAILED, error=f"{type(error).__name__}: {error}", error_type=type(error).__name__,
                      traceback=traceback.format_exc())
    record["seconds"] = time.perf_counter() - started
    return record


# Status ---------------------------------------------------------------------------------------
def case_path(out_dir, key: str, folder: str = CASES_DIR) -> Path:
    """``DIR/cases/<key>.json`` (the key percent-encoded where a character cannot be in a file name);
    ``folder``: a task's own case folder (:attr:`CaseTask.cases_dir`) instead of ``cases``."""
    return Path(out_dir) / folder / f"{quote(key, safe='-_.=+,@')}.json"


def output_files(task: "CaseTask") -> tuple:
    """The files :func:`run_batch` writes into the output folder for ``task``."""
    table = (f"{task.table}.csv", f"{task.table}.parquet") if task.table else ()
    return (*table, "errors.csv", "provenance.json")


def read_record(path) -> dict | None:
    """A case file, or None when there is none (or it cannot be read: the case is then redone)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def cohort_status(out_dir, cohort, task: CaseTask | None = None) -> list[CaseStatus]:
    """Per-case status of ``cohort`` (a :class:`Cohort` or a path) in ``out_dir``, in cohort order,
    invalid rows included. Cheap enough to poll while a run is going (one small file read per case).

    ``task``: the task whose results count (default: the one of the latest run in ``out_dir``).
    """
    cohort = cohort if isinstance(cohort, Cohort) else read_cohort(cohort)
    task = task or _latest_task(out_dir)
    key_columns = table_key_columns(cohort, task)
    statuses = []
    for unit in work_units(cohort, task) if task else []:
        record = read_record(case_path(out_dir, unit.key, task.cases_dir))
        common = dict(key=unit.key, id=unit.id, where=unit.where, unit=unit, key_values=unit.key_values(key_columns))
        if record is None:
            statuses.append(CaseStatus(status=PENDING, **common))
        elif record.get("hash") != unit.hash:
            statuses.append(CaseStatus(status=PENDING, note="inputs or settings changed since it was computed", **common))
        else:
            statuses.append(CaseStatus(status=record.get("status", PENDING), error=record.get("error", ""),
                                       seconds=record.get("seconds"), attempts=record.get("attempts", 1), **common))
    if not task:  # never run: every case pending
        statuses = [CaseStatus(case.key, case.id, case.where, PENDING, key_values={"id": case.id, **{
            c: getattr(case, c) for c in key_columns}}) for case in cohort.cases]
    for problem in cohort.problems:
        statuses.append(CaseStatus(key=problem.case_id, id=problem.case_id, where=problem.where, status=INVALID,
                                   error=problem.message, key_values={"id": problem.case_id}))
    return statuses


def table_key_columns(cohort: Cohort, task: CaseTask | None = None) -> list:
    """The key columns (timepoint, observer, channel) the cohort uses, none for per-patient tasks."""
    if task is not None and task.per_patient:
        return []
    return [column for column in KEY_COLUMNS if column in cohort.key_columns]


def status_counts(statuses) -> dict:
    """``{"done": n, "failed": n, "pending": n, "invalid": n}``."""
    counts = dict.fromkeys((DONE, FAILED, PENDING, INVALID), 0)
    for status in statuses:
        counts[status.status] += 1
    return counts


def _latest_task(out_dir) -> CaseTask | None:
    """The task of the latest run in ``out_dir`` (name, fingerprint, per_patient; no function), or None."""
    run = read_record(Path(out_dir) / RUN_FILE) or {}
    if not run.get("task"):
        return None
    return CaseTask(run["task"], None, None, run.get("fingerprint"), bool(run.get("per_patient")),
                    run.get("cases_dir", CASES_DIR), run.get("table", "features"))


# The run --------------------------------------------------------------------------------------
def run_batch(cohort, out_dir, task: CaseTask | None = None, settings=None, workers: int | None = None,
              scheduler: str | None = None, memory_limit="auto", retry_failed: bool = False,
              keep_going: bool = False, progress=None, on_client=None, connect_timeout: float = 10.0,
              cluster: "ClusterStart | None" = None, earlier=()) -> BatchSummary:
    """Run ``task`` (default: feature extraction with ``settings``) on every case of ``cohort``.

    ``cohort``: a :class:`Cohort` or a CSV file / folder (validated first; problems raise unless
    ``keep_going``, then invalid rows go to ``errors.csv``). ``workers``: worker processes of a
    local cluster (default: every core; 0: in this process); ``scheduler``: address of an existing
    Dask scheduler instead; ``memory_limit``: per local worker (``"4GiB"``, a fraction of the
    memory, ``"auto"``, or 0 for none). ``progress(done, total, message)`` is called as each case
    finishes (returning False cancels); ``on_client(client)`` gets the Dask client once connected.
    ``cluster``: a :class:`ClusterStart` the caller began earlier (then ``workers``, ``scheduler``
    and ``memory_limit`` are its own and the caller closes it); otherwise the cluster starts in the
    background while the cohort is read and checked, and is closed while the outputs are written.
    ``earlier``: (task, statuses) of the earlier stages of the same workflow run, whose failed and
    invalid units errors.csv lists before this task's.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    task = task or extraction_task(settings)
    if cluster is not None:
        workers, scheduler, memory_limit = cluster.workers, cluster.scheduler, cluster.memory_limit
    else:
        workers = _check_run_options(workers, scheduler, memory_limit)
    for name in output_files(task):
        check_writable(out_dir / name)
    check_writable(case_path(out_dir, "x", task.cases_dir))
    own_cluster = None
    if cluster is None:  # the options are checked above, once
        cluster = own_cluster = _cluster_start(workers, scheduler, memory_limit, connect_timeout)
    try:
        return _run(cohort, out_dir, task, workers, scheduler, memory_limit, retry_failed, keep_going, progress,
                    on_client, cluster, own_cluster, started, earlier)
    finally:
        if own_cluster is not None:
            own_cluster.close()


def _run(cohort, out_dir, task, workers, scheduler, memory_limit, retry_failed, keep_going, progress, on_client,
         cluster, own_cluster, started, earlier=()) -> BatchSummary:
    """The body of :func:`run_batch` once its options are checked (and its cluster is starting)."""
    cohort = (cohort if isinstance(cohort, Cohort) else read_cohort(cohort)).check(keep_going)
    # no table may replace the cohort file or an image or mask of the cohort (the CLI, desktop and web alike)
    check_outputs([out_dir / name for name in (*output_files(task), RUN_FILE)], cohort_inputs(cohort))
    phases = {"validate": time.perf_counter() - started}
    with _locked(out_dir, task.cases_dir):
        _remove_temporaries(out_dir / task.cases_dir)
        write_text_atomic(out_dir / RUN_FILE, json.dumps(
            {"task": task.name, "fingerprint": task.fingerprint, "per_patient": task.per_patient,
             "cases_dir": task.cases_dir, "table": task.table, "cohort": str(cohort.source),
             "started": _now(), "pid": os.getpid(), "workers": workers, "scheduler": scheduler}, default=str, indent=1))
        statuses = cohort_status(out_dir, cohort, task)
        todo = [s.unit for s in statuses if s.status == PENDING or (s.status == FAILED and retry_failed)]
        units = len(statuses) - len(cohort.problems)
        computed = [0]

        def store(unit, record):
            previous = read_record(case_path(out_dir, unit.key, task.cases_dir)) or {}
            attempts = previous.get("attempts", 1) + 1 if previous.get("hash") == unit.hash else 1
            record = {"key": unit.key, "id": unit.id, "where": unit.where, "hash": unit.hash,
                      "finished": _now(), "attempts": attempts, **record}
            write_text_atomic(case_path(out_dir, unit.key, task.cases_dir), json.dumps(record, indent=1, default=str))
            computed[0] += 1
            if progress is not None and progress(computed[0], len(todo), f"{unit.key} {record['status']}") is False:
                raise BatchCancelled(
                    f"Batch cancelled after {computed[0]} of {len(todo)} cases; the finished ones are kept in "
                    f"'{out_dir / task.cases_dir}'; run it again to resume.")

        if progress is not None and progress(0, len(todo), f"{units - len(todo)} already done") is False:
            raise BatchCancelled("Batch cancelled before it started; nothing was computed.")
        if todo:
            in_process = workers == 0 and not scheduler
            if not in_process:
                waited = time.perf_counter()
                client = cluster.client()
                phases["cluster_start"] = time.perf_counter() - waited  # the part not hidden behind the validation
                if on_client is not None:
                    on_client(client)
            compute_started = time.perf_counter()
            try:
                if in_process:
                    for unit in todo:
                        store(unit, run_case(task.function, unit.argument, task.params))
                else:
                    _run_on_cluster(todo, task, store, client, memory_limit,
                                    None if scheduler else LOCAL_WORKERLESS_TIMEOUT)
            finally:
                phases["compute"] = time.perf_counter() - compute_started
                if own_cluster is not None:
                    own_cluster.close(wait=False)  # workers stop while the outputs are written
        written = time.perf_counter()
        statuses = cohort_status(out_dir, cohort, task)
        counts = status_counts(statuses)
        run = {"workers": workers, "scheduler": scheduler, "memory_limit": memory_limit, "computed": computed[0],
               "skipped": units - len(todo), **counts}
        outputs = write_outputs(out_dir, cohort, task, statuses, run, earlier)
        phases["write"] = time.perf_counter() - written
    return BatchSummary(out_dir, len(statuses), units - len(todo), computed[0], counts[FAILED], counts[INVALID],
                        time.perf_counter() - started, phases, outputs)


def _run_on_cluster(todo, task, store, client, memory_limit, workerless_timeout: float | None = None):
    """Run the units on the cluster, largest first, and store each result as it arrives.

    Only as many units are in flight as the cluster has threads: a worker holds just the case it
    runs, so a worker that dies (crash, memory limit, kill) takes no queued case down with it.
    ``workerless_timeout``: seconds the cluster may have no worker at all before the run stops (a local cluster,
    whose workers Dask restarts again and again when each one is over its memory limit, and then gives up on).
    """
    from distributed import as_completed

    token = os.urandom(4).hex()
    waiting = sorted(todo, key=lambda unit: -sum(map(cost_estimate, unit.cases)))
    futures, arrived = {}, as_completed(loop=client.loop)

    def feed():
        slots = max(1, sum(client.nthreads().values()))
        while waiting and len(futures) < slots:
            unit = waiting.pop(0)
            future = client.submit(run_case_single_threaded, task.function, unit.argument, task.params, pure=False,
                                   key=f"radiomicslab-{token}-{len(waiting)}")
            futures[future] = unit
            arrived.add(future)

    try:
        with _cluster_connection():
            feed()
        workerless_since = None
        while futures:
            with arrived.thread_condition:   # notified as each future arrives (checked under it: no wake-up is lost)
                if not arrived.has_ready():
                    arrived.thread_condition.wait(timeout=WORKERLESS_CHECK_S)
            with _cluster_connection():
                if not arrived.has_ready():
                    if workerless_timeout is None or client.nthreads():
                        workerless_since = None
                    elif workerless_since is None:
                        workerless_since = time.monotonic()
                    elif time.monotonic() - workerless_since > workerless_timeout:
                        raise RadiomicsLabError(
                            f"The Dask cluster has had no worker for {workerless_timeout:g} s: each worker went over "
                            f"its memory limit {memory_limit!r} and was restarted until Dask gave up, or the workers "
                            "were stopped. The finished cases are kept; give the workers more memory (--memory-limit) "
                            "or use fewer, and run the batch again to resume.")
                    continue
                future = next(arrived)
                unit = futures.pop(future)
                feed()  # the next case starts before this one's result is fetched and stored
                record = future.result() if future.status == "finished" else _lost_case_record(future, memory_limit)
                future.release()
            store(unit, record)
    finally:
        if futures:
            client.cancel(list(futures), force=True)


@contextmanager
def _cluster_connection():
    """A lost connection to the cluster's scheduler (an OSError: distributed's CommClosedError is one) as the run's
    error (:func:`_lost_cluster`), not a traceback."""
    try:
        yield
    except OSError as error:
        raise _lost_cluster(f"{type(error).__name__}: {error}") from None


#: Seconds between the checks of :func:`_run_on_cluster` for a cluster without workers, while no case arrives.
WORKERLESS_CHECK_S = 1.0
#: Seconds a local cluster may have no worker before the run stops (its workers restart in a few seconds).
LOCAL_WORKERLESS_TIMEOUT = 60.0


def _lost_cluster(why: str) -> RadiomicsLabError:
    """The error of a run whose cluster lost its tasks (not the cases' own failure): the finished cases are kept."""
    return RadiomicsLabError(f"The Dask cluster lost this run's tasks ({why}): its scheduler restarted or stopped, or "
                             "the connection to it broke. The finished cases are kept; check the cluster and run the "
                             "batch again to resume.")


def _lost_case_record(future, memory_limit) -> dict:
    """The record of a case whose task itself failed on the cluster (its worker died, ...)."""
    import asyncio

    try:
        error = future.exception()
    except (Exception, asyncio.CancelledError) as cancelled:  # a cancelled future may raise instead of returning
        error = cancelled
    if future.status == "cancelled" or error is None or isinstance(error, asyncio.CancelledError):
        raise _lost_cluster(f"the task of case '{future.key}' was cancelled")    # e.g. by a scheduler restart
    if type(error).__name__ == "KilledWorker":
        message = (f"the worker process running this case died each time it was tried (killed, crashed, or over its "
                   f"memory limit {memory_limit!r}); give workers more memory (--memory-limit) or use fewer, "
                   "then run with --retry-failed")
    else:
        message = f"{type(error).__name__}: {error}"
    return {"status": FAILED, "error": message, "error_type": type(error).__name__, "seconds": None}


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, memory_limit="auto",
                connect_timeout: float = 10.0, check_reachable: bool = True):
    """A Dask client: to ``scheduler`` (checked reachable, unless ``check_reachable`` is False because the caller
    checked it, with workers that can import RadiomicsLab), or to a new :class:`~distributed.LocalCluster` of
    ``workers`` single-threaded worker processes on 127.0.0.1 without dashboard. The cluster is closed on the way out."""
    from distributed import Client

    if scheduler:  # an existing cluster, never a local one instead (check_reachable=False: the caller checked it)
        if check_reachable:
            _check_reachable(scheduler, connect_timeout)
        try:
            client = Client(scheduler, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise RadiomicsLabError(f"Cannot connect to the Dask scheduler at '{scheduler}': {error}; check the address "
                                    "and that the scheduler is running, or leave out --scheduler to use this machine.") from None
        try:
            _check_workers(client, scheduler, connect_timeout)
            yield client
        finally:
            client.close()
        return
    workers = workers or available_cores()
    use_worker_python()  # inside desktop Slicer, sys.executable is a launcher that cannot be a worker
    with _environment_kept():
        yield from _local_client(workers, memory_limit)


@contextmanager
def _environment_kept():
    """Give this process's environment back as it was on the way out: Dask's nannies set their ``pre-spawn-environ``
    variables (the workers' thread counts of 1, ``PYTHONHASHSEED``) and ``__DASK_PARENT_PID`` in the process that
    starts them, where every process started later (Slicer's, a notebook's) would take them."""
    kept = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(kept):
            os.environ.pop(name, None)
        os.environ.update({name: value for name, value in kept.items() if os.environ.get(name) != value})


def _local_client(workers: int, memory_limit):
    """:func:`dask_client`'s local cluster (a generator: its client, then the cluster's close)."""
    import dask
    from distributed import Client, LocalCluster

    try:
        # the cluster's scheduler, nannies and workers take the configuration in force when they are made; the
        # nannies set the thread counts in this process's environment before they start a worker (a library reads
        # its count when it loads, in the worker's start-up), as worker_environment() chooses them (the user's own
        # kept), and no malloc setting; _environment_kept() gives the environment back afterwards
        pre_spawn = {name: os.environ.get(name, "1") for name in WORKER_THREAD_VARIABLES}
        with dask.config.set({**LOCAL_CLUSTER_CONFIG, f"distributed.nanny.pre-spawn-environ.{WORKER_MALLOC}": None,
                              **{f"distributed.nanny.pre-spawn-environ.{name}": value
                                 for name, value in pre_spawn.items()}}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   memory_limit=memory_limit_value(memory_limit),
                                   host="127.0.0.1", dashboard_address=None, silence_logs=logging.CRITICAL,
                                   # no dashboard; the scheduler's HTTP routes (health, metrics) on a free loopback port
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                   env=worker_environment(),
                                   preload=[__name__])  # runs dask_setup in each worker process
    except RuntimeError as error:
        raise RadiomicsLabError(
            f"Could not start {workers} local Dask worker process(es) ({error}). From a script, call run_batch under "
            "`if __name__ == '__main__':` (worker processes import the main script again), or use workers=0.") from None
    with cluster, Client(cluster, set_as_default=False) as client:
        try:
            client.wait_for_workers(workers, timeout=LOCAL_WORKERS_TIMEOUT)
        except TimeoutError:
            raise RadiomicsLabError(
                f"The {workers} local Dask worker process(es) did not all start within {LOCAL_WORKERS_TIMEOUT:g} s "
                f"(a worker over its memory limit {memory_limit!r} is restarted again and again, or this machine is "
                "very busy); give the workers more memory (--memory-limit) or use fewer, or workers=0.") from None
        yield client


#: Seconds the local cluster's workers are given to start and register (a few seconds on the development machine).
LOCAL_WORKERS_TIMEOUT = 120.0


#: The glibc malloc setting that Dask's nannies give every worker process they spawn (``distributed.nanny.pre-spawn-
#: environ``) and the local cluster's workers go without. ``MALLOC_TRIM_THRESHOLD_=65536`` (Dask's default, meant to
#: return freed memory to the system at once) also fixes glibc's mmap threshold at 128 KiB, so every array of 128 KiB
#: or more a case allocates is mapped anew and its pages faulted in again: an IBSI extraction of a sarcoma CT ran
#: 1.6-1.7x slower in such a worker than in a plain process. Without it glibc keeps freed memory for reuse up to its
#: own dynamic thresholds (at most 32 MiB mapped per block, 64 MiB kept at the top of the heap), as in any process.
#: A variable set in this environment is still passed on (a user's choice); an existing cluster's workers keep theirs.
WORKER_MALLOC = "MALLOC_TRIM_THRESHOLD_"


#: Dask settings of the local cluster (its worker processes get the configuration of this one): no statistical
#: profiler (it samples each worker's stack every 10 ms for a dashboard the local cluster does not serve), the event
#: loop's tick check every 500 ms instead of 20 ms and the system monitor every 2 s instead of 0.5 s; all of them wake
#: threads that take the GIL or a core from the cases. Two workers on two cores ran the compute phase of a
#: pyradiomics-default cohort (16 real cases, Original + LoG + Wavelet) in 18.9 s instead of 19.8 s (medians of three
#: runs each way, in alternating order; every pair faster). The memory monitor keeps Dask's interval: it enforces the
#: memory limit.
LOCAL_CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "500ms",
                        "distributed.admin.system-monitor.interval": "2s"}


#: Thread-count variables of the libraries a case runs (OpenMP, MKL, OpenBLAS, Accelerate and numexpr
#: under numpy / scipy / PyWavelets, SimpleITK filters and resampling, numba kernels), set to 1 in each
#: worker process: parallelism comes from the workers, so N single-threaded workers use N cores instead of
#: N x cores threads fighting for them. A variable already set in this environment is kept (a user's choice).
WORKER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                           "NUMEXPR_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "NUMBA_NUM_THREADS")


def worker_environment() -> dict:
    """Environment variables of a worker process (see :data:`WORKER_THREAD_VARIABLES`): given to the local
    cluster's worker processes when they start; a process pool started from this process takes them too."""
    return {name: "1" for name in WORKER_THREAD_VARIABLES if name not in os.environ}


def limit_threads():
    """Make this (worker) process's libraries single-threaded from now on, as :func:`worker_environment` does for
    a process about to start: for a worker that was already running (an existing cluster's, whose environment
    this run did not choose). Each variable of :data:`WORKER_THREAD_VARIABLES` the process's environment does not
    set becomes 1 (libraries not loaded yet read it when they load); then the loaded ones are told: SimpleITK's
    default number of threads, the BLAS / OpenMP pools (threadpoolctl), and numba's thread count (per thread, so
    again in each thread that runs a case: :func:`run_case_single_threaded`, which calls this before a worker's
    first case). Returns the numbers now in force."""
    os.environ.update({name: "1" for name in WORKER_THREAD_VARIABLES if name not in os.environ})
    limits = {}
    itk = _threads_from_environment("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
    if itk and "SimpleITK" in sys.modules:
        import SimpleITK as sitk

        if sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() != itk:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk)
        limits["itk"] = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    # numba first: where it was imported before this call, asking its thread count starts its threading layer,
    # whose OpenMP pool (sized when numba was imported) the BLAS / OpenMP limit below then also reaches
    limits["numba"] = _limit_numba_threads()
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn / habitats
        pass
    else:
        blas = _threads_from_environment("OPENBLAS_NUM_THREADS") or 1
        if any(pool.get("num_threads", 1) > blas for pool in threadpool_info()):
            threadpool_limits(blas)  # process-wide, kept (not used as a context manager)
        limits["blas"] = max([pool.get("num_threads", 1) for pool in threadpool_info()], default=1)
    return limits


def _limit_numba_threads():
    """numba's thread count for the calling thread: at most ``NUMBA_NUM_THREADS`` of the environment (numba
    read it when it was imported, possibly before :func:`limit_threads` set it); None when numba is not loaded."""
    numba = sys.modules.get("numba")
    wanted = _threads_from_environment("NUMBA_NUM_THREADS")
    if numba is None or not hasattr(numba, "get_num_threads") or not wanted:
        return None
    if numba.get_num_threads() > wanted:
        numba.set_num_threads(wanted)
    return numba.get_num_threads()


def _threads_from_environment(name: str) -> int | None:
    """The thread count an environment variable sets (a whole number >= 1), or None."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


_LIMITED_IN = [None]  # the process id where limit_threads() ran


def run_case_single_threaded(function, argument, params) -> dict:
    """:func:`run_case` on a cluster's worker (what the batch submits), with single-threaded libraries: a local
    cluster's workers start so (:func:`worker_environment`); any other worker, an existing cluster's whatever its
    environment or a worker that joined late, gets :func:`limit_threads` before its first case; and numba is
    limited in each worker thread that runs a case (its thread count is per thread)."""
    if _LIMITED_IN[0] != os.getpid():
        limit_threads()
        _LIMITED_IN[0] = os.getpid()
    else:
        _limit_numba_threads()
    return run_case(function, argument, params)


def start_cluster(workers: int | None = None, scheduler: str | None = None, memory_limit="auto",
                  connect_timeout: float = 10.0) -> "ClusterStart | None":
    """Check the cluster options (workers, scheduler reachable, memory limit) and start the cluster
    in the background: a :class:`ClusterStart`, or None for ``workers=0`` (cases run in this process)."""
    return _cluster_start(_check_run_options(workers, scheduler, memory_limit), scheduler, memory_limit, connect_timeout)


def _cluster_start(workers: int, scheduler, memory_limit, connect_timeout: float) -> "ClusterStart | None":
    """:func:`start_cluster` once its options are checked (the scheduler's reachability is checked by ClusterStart)."""
    return ClusterStart(workers, scheduler, memory_limit, connect_timeout) if workers or scheduler else None


class ClusterStart:
    """A :func:`dask_client` being set up in a background thread, so that worker processes start
    while this process reads and checks the cohort: ``client()`` waits for it (and raises what the
    start raised), ``close()`` shuts it down. Use it as a context manager, or pass it to
    :func:`run_batch` (``cluster=``) after starting it before a slow step of your own. A ``scheduler`` is checked
    reachable here, in the caller's thread, before anything starts (so a wrong address fails at once)."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None, memory_limit="auto",
                 connect_timeout: float = 10.0):
        if scheduler:
            _check_reachable(scheduler, connect_timeout)
        self.workers, self.scheduler, self.memory_limit = workers, scheduler, memory_limit
        self._stack, self._client, self._error, self._closing = ExitStack(), None, None, None
        self._thread = threading.Thread(target=self._start, args=(workers, scheduler, memory_limit, connect_timeout),
                                        name="radiomicslab-cluster-start", daemon=True)
        self._thread.start()

    def _start(self, *arguments):
        try:
            self._client = self._stack.enter_context(dask_client(*arguments, check_reachable=False))
        except BaseException as error:  # noqa: BLE001 - handed to the thread that asks for the client
            self._error = error

    def client(self):
        """The connected Dask client (waits for the start to finish)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._client

    def close(self, wait: bool = True):
        """Close the client and its cluster (once the start has finished); ``wait=False``: in the
        background (a later ``close()`` waits for it)."""
        if self._closing is None:
            def closing():
                self._thread.join()
                self._stack.close()

            self._closing = threading.Thread(target=closing, name="radiomicslab-cluster-close", daemon=True)
            self._closing.start()
        if wait:
            self._closing.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def dask_setup(worker):
    """Dask preload hook, run in each local worker process: ignore Ctrl-C there (the terminal sends it
    to the whole process group); the main process stops the cluster and the run resumes next time. The
    libraries a case runs are imported in the background meanwhile, while this process's run still reads
    and checks the cohort, rather than in each worker's first case."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_import_case_libraries, name="radiomicslab-imports", daemon=True).start()


def _import_case_libraries():
    import importlib

    try:
        for module in ("RadiomicsLabLib.extraction", "radiomics.featureextractor"):  # in a case's order
            importlib.import_module(module)
    except Exception:  # noqa: BLE001 - the first case imports them again and reports what fails
        pass


def _check_run_options(workers, scheduler, memory_limit) -> int:
    """Workers as an int, after checking the options (before any work)."""
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise RadiomicsLabError(f"The number of workers must be 0 (this process) or more; got {workers!r}.")
    if scheduler and workers:
        raise RadiomicsLabError("Give either a number of workers (a cluster on this machine) or --scheduler "
                                "(an existing cluster, whose workers are its own), not both.")
    memory_limit_value(memory_limit)
    return available_cores() if workers is None and not scheduler else (workers or 0)


def memory_limit_value(memory_limit):
    """``memory_limit`` as LocalCluster takes it: ``"auto"``, None (no limit: 0 or "0"), a fraction of
    the memory (0 < x <= 1, e.g. "0.25"), or bytes (``"4GiB"``, ``"800MB"``, an int > 1; at least
    :data:`MIN_WORKER_MEMORY`)."""
    from dask.utils import parse_bytes

    if memory_limit in ("auto", None):
        return memory_limit
    try:
        number = float(memory_limit)
    except (TypeError, ValueError):
        number = None
    try:
        if number is not None:
            if number == 0:
                return None
            if 0 < number <= 1:
                return number
            if number > 1:
                return _worker_sized(int(number), memory_limit)
        elif isinstance(memory_limit, str) and parse_bytes(memory_limit) > 0:
            return _worker_sized(parse_bytes(memory_limit), memory_limit)
    except ValueError:
        pass
    raise RadiomicsLabError(f"Invalid memory limit '{memory_limit}'; give an amount per worker like 4GiB or "
                            "800MB, a fraction of the memory like 0.25, 'auto', or 0 for none.")


#: The least memory limit in bytes a worker is given: a worker with RadiomicsLab's libraries loaded takes about
#: 200-300 MB before its first case, and Dask restarts one over its limit for ever (the run waited without end).
MIN_WORKER_MEMORY = 512 * 2 ** 20


def _worker_sized(limit: int, given) -> int:
    """``limit`` (bytes), unless it is below :data:`MIN_WORKER_MEMORY`."""
    if limit < MIN_WORKER_MEMORY:
        raise RadiomicsLabError(f"The memory limit '{given}' ({limit} bytes per worker) is too small for a worker, which "
                                f"needs at least {MIN_WORKER_MEMORY // 2 ** 20} MiB; give an amount with its unit, like "
                                "4GiB, a fraction of the memory like 0.25, or 'auto'.")
    return limit


def _check_reachable(address: str, timeout: float):
    """Fail fast, with a clear message, when nothing listens at a tcp/tls scheduler address."""
    protocol, _, rest = address.rpartition("://")
    host, _, port = rest.rpartition(":")
    if protocol not in ("", "tcp", "tls") or not host or not port.isdigit():
        raise RadiomicsLabError(f"Invalid scheduler address '{address}'; give it as tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786).")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise RadiomicsLabError(f"Cannot reach the Dask scheduler at '{address}' ({reason}); check the address and that "
                                "the scheduler is running, or leave out --scheduler to use this machine's cores.") from None


def _check_workers(client, scheduler: str, timeout: float):
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise RadiomicsLabError(f"The Dask scheduler at '{scheduler}' has no workers after {timeout:g} s; start "
                                "`dask worker` processes connected to it.") from None
    try:
        client.run(_worker_versions)
    except Exception as error:  # noqa: BLE001 - any failure here means the workers cannot run the tasks
        raise RadiomicsLabError(f"The workers of the Dask scheduler at '{scheduler}' cannot run RadiomicsLab "
                                f"({type(error).__name__}: {error}); install radiomicslab in their environment.") from None
    trimmed = sorted({value for value in client.run(os.environ.get, WORKER_MALLOC).values() if value})
    if trimmed:
        warnings.warn(f"The workers of the Dask scheduler at '{scheduler}' run with {WORKER_MALLOC}="
                      f"{', '.join(trimmed)} (Dask's default), which makes extractions up to 1.6x slower (every large "
                      f"array is mapped anew); start them with it unset (README, Cohorts).", RadiomicsLabWarning,
                      stacklevel=2)


def _worker_versions() -> dict:
    from .provenance import software_versions

    return software_versions()


@contextmanager
def _locked(out_dir: Path, cases_dir: str = CASES_DIR):
    """Hold ``DIR/.radiomicslab-batch.lock`` so two runs never write one folder (released on any exit, even kill -9)."""
    import fcntl

    try:
        (out_dir / cases_dir).mkdir(parents=True, exist_ok=True)
        handle = open(out_dir / LOCK_FILE, "a+")
    except OSError as error:
        raise RadiomicsLabError(f"Cannot write in '{out_dir}': {error.strerror}; choose another output folder.") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RadiomicsLabError(f"Another batch run ({handle.read().strip() or 'unknown process'}) is writing to "
                                    f"'{out_dir}'; wait for it to finish or choose another output folder.") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield


def _remove_temporaries(folder: Path):
    """Temporary files left by a killed run (never renamed into place, so never results)."""
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# Outputs --------------------------------------------------------------------------------------
def collect_table(out_dir, cohort: Cohort, statuses=None, task: CaseTask | None = None) -> tuple[list, list]:
    """(header, rows) of the finished cases' results, in cohort order: ``id``, the cohort's key
    columns, then each row's own columns (``segment``, features) in first-seen order."""
    task = task or _latest_task(out_dir)
    statuses = statuses if statuses is not None else cohort_status(out_dir, cohort, task)
    header, rows = ["id", *table_key_columns(cohort, task)], []
    seen = set(header)
    for status in statuses:
        if status.status != DONE:
            continue
        record = read_record(case_path(out_dir, status.key, task.cases_dir if task else CASES_DIR)) or {}
        for row in record.get("rows", []):
            for column in row:
                if column not in seen:
                    seen.add(column)
                    header.append(column)
            rows.append({**status.key_values, **row})
    return header, rows


def write_outputs(out_dir, cohort: Cohort, task: CaseTask, statuses, run: dict, earlier=()) -> dict:
    """Write features.csv, features.parquet (the task's ``table``), errors.csv (with the failures of the
    ``earlier`` stages first) and provenance.json, each atomically."""
    from .results import format_value

    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in output_files(task)}
    if task.table:
        header, rows = collect_table(out_dir, cohort, statuses, task)

        def text(value):
            if value is None:
                return ""
            return value if isinstance(value, str) else format_value(value)

        write_text_atomic(paths[f"{task.table}.csv"], _csv_text(header, ([text(row.get(c)) for c in header] for row in rows)))
        _write_parquet(paths[f"{task.table}.parquet"], header, rows)
    key_columns = table_key_columns(cohort, task)
    errors = [row for stage, stage_statuses in [*earlier, (task, statuses)]
              for row in error_rows(stage, stage_statuses, key_columns)]
    write_text_atomic(paths["errors.csv"], _csv_text(["id", *key_columns, "where", "stage", "error"], errors))
    from .provenance import software_versions

    cases = {}
    for status in statuses:
        if status.unit is None:
            continue
        record = read_record(case_path(out_dir, status.key, task.cases_dir)) or {}
        cases[status.key] = {"status": status.status, "where": status.where, "hash": record.get("hash"),
                             "inputs": status.unit.inputs(), "seconds": record.get("seconds"),
                             "finished": record.get("finished"), "provenance": record.get("provenance", {})}
    provenance = {"created": _now(), "software": software_versions(), "task": task.name, "settings": task.fingerprint,
                  "per_patient": task.per_patient,
                  "cohort": {"source": str(cohort.source), "sha256": cohort.source_sha256, "cases": len(cohort.cases),
                             "invalid_rows": len(cohort.problems)},
                  "run": run, "cases": cases}
    write_text_atomic(paths["provenance.json"], json.dumps(provenance, indent=1, default=str) + "\n")
    return paths


def save_outputs(out_dir, folder) -> dict:
    """The files the latest run in ``out_dir`` wrote (:func:`write_outputs`: its task's table as CSV and Parquet,
    errors.csv, provenance.json) written into ``folder``, each atomically and byte for byte: the files of
    ``radiomicslab batch`` wherever a front end saves them. Returns name -> path."""
    import shutil

    out_dir, folder = Path(out_dir), Path(folder)
    task = _latest_task(out_dir)
    names = [name for name in output_files(task) if (out_dir / name).is_file()] if task else []
    if not names:
        raise RadiomicsLabError(f"'{out_dir}' holds no finished cohort run; run the cohort to its end, then save its "
                                "results.")
    for name in names:
        check_writable(folder / name)
    written = {}
    for name in names:
        with atomic_output(folder / name) as tmp:
            shutil.copyfile(out_dir / name, tmp)
        written[name] = folder / name
    return written


def error_rows(task: CaseTask, statuses, key_columns=()) -> list:
    """errors.csv rows (id, key columns, where, stage, error) of the failed and invalid units of one stage."""
    return [[s.id, *(s.key_values.get(c, "") for c in key_columns), s.where,
             "validation" if s.status == INVALID else task.name, s.error]
            for s in statuses if s.status in (FAILED, INVALID)]


def _csv_text(header, rows) -> str:
    from .results import csv_text

    return csv_text(header, rows)


def _write_parquet(path: Path, header, rows):
    """The table as Parquet: a column is float64 when all its values are numbers, text otherwise."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = []
    for column in header:
        values = [row.get(column) for row in rows]
        numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        arrays.append(pa.array([None if v is None else float(v) for v in values], pa.float64()) if numeric
                      else pa.array([None if v is None else str(v) for v in values], pa.string()))
    with atomic_output(path) as tmp:
        pq.write_table(pa.Table.from_arrays(arrays, names=list(header)), tmp)
