"""Long work off a GUI's main thread, and the Python that worker processes start with.

Desktop Slicer runs its window and its Python on one thread: a feature extraction called from a
button freezes the window until it returns (``processEvents`` in progress callbacks only helps
between callbacks, and Cancel can only be noticed there). So each workflow's Logic call is split
into a :class:`Job`:

1. *prepare*, on the main thread: check the inputs and read them from the scene (volumes and
   segments become SimpleITK images);
2. *compute* (``job.compute(*job.args, progress=..., **job.kwargs)``): a module-level core function
   that knows nothing of the scene, run in a worker process by :class:`BackgroundRun`;
3. *land* (``job.land(result)``), on the main thread again: the result becomes scene nodes. Work on
   the result that needs no scene (e.g. filling the voxel arrays of new volumes) goes into
   ``job.before_land(result)``, which :class:`BackgroundRun` runs on the background thread that
   received the result, so that the window only waits for the scene changes themselves.

``job.run()`` does the three in this thread: the Logic classes' plain methods (console, CLI, tests)
are ``prepare(...).run(progress)``, so there is one code path whether the work runs here or in the
background.

Why a process and not a thread: a thread shares the GIL with the window, and a long call that holds
it (numba compiling a kernel, ~10 s on first use; pyradiomics' C matrices; SimpleITK filters that
do not release it) stalls the window just the same; a thread cannot be stopped inside such a call,
whereas a process is terminated at once (Cancel takes effect within a second), and its memory goes
back to the system when it ends. The price is the start (~1 s to import numpy and SimpleITK) and
copying the inputs and the result through a pipe (~0.1 s per 100 MB), paid by background threads
here, never by the main thread. Desktop Slicer keeps one worker started ahead of the next job
(:func:`keep_worker_ready`, with the compiled kernels loaded), so that a job waits for neither.

Which Python the workers start with (:func:`worker_python`): multiprocessing and Dask's local
workers start ``sys.executable``, which desktop Slicer sets to its ``PythonSlicer`` launcher (the
application itself was started by the ``Slicer`` launcher). A process started through that launcher
dies before it reads its start-up data, and the parent waits for it forever (Slicer issue #7445).
The interpreter behind the launchers is ``bin/python-real`` of the Slicer installation; started
from inside Slicer it inherits the environment the launcher set for the application (library and
module paths), so it works as a worker. ``RADIOMICSLAB_WORKER_PYTHON`` overrides the choice.
"""

import functools
import multiprocessing
import multiprocessing.connection
import multiprocessing.spawn
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Cancelled, RadiomicsLabError

WORKER_PYTHON_VARIABLE = "RADIOMICSLAB_WORKER_PYTHON"
#: Executables of a Slicer installation that are not a plain Python interpreter (lower case, no ``.exe``).
SLICER_LAUNCHERS = ("pythonslicer", "slicer", "slicerapp-real", "slicerpython")
#: The interpreter behind Slicer's launchers, in the installation's ``bin`` folder.
SLICER_PYTHON_NAMES = ("python-real", "python-real.exe")
#: Seconds a terminated worker is given to end before it is killed.
TERMINATE_GRACE_S = 1.0


def _identity(value):
    return value


class JobCancelled(Cancelled):
    """The user cancelled a background job; nothing was added to the scene."""


class WorkerFailed(RadiomicsLabError):
    """The worker process ended without a result (crashed, killed, out of memory, or could not start)."""


@dataclass
class Job:
    """Work prepared on the main thread: ``compute`` runs anywhere, ``land`` puts its result in the scene.

    ``compute`` must be a module-level function (it is pickled into a worker process) taking
    ``progress(done, total, message)`` as a keyword; ``args``/``kwargs`` must be picklable (arrays,
    SimpleITK images, settings, dataclasses: no scene nodes). ``land(result)`` runs on the caller's
    thread and returns what the GUI shows (nodes). ``before_land(result)`` (optional) turns the result into what
    ``land`` takes without touching the scene; a background run calls it off the main thread.
    """

    title: str
    compute: object
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    land: object = _identity
    before_land: object = _identity

    def run(self, progress=None):
        """Compute and land in this thread (the console and command-line path)."""
        return self.land(self.before_land(self.compute(*self.args, progress=progress, **self.kwargs)))


# Worker Python -----------------------------------------------------------------------------------
def _is_slicer_launcher(executable: str) -> bool:
    name = Path(executable).name.lower()
    return name.removesuffix(".exe") in SLICER_LAUNCHERS


def _slicer_python_candidates(executable: str) -> list[Path]:
    """Where ``python-real`` is in a Slicer installation, seen from one of its executables."""
    folder = Path(executable).resolve().parent if executable else Path()
    homes = [folder, folder / "bin", folder.parent / "bin"]
    if os.environ.get("SLICER_HOME"):  # set by Slicer's launcher for the application it starts (no slicer import here)
        homes.insert(0, Path(os.environ["SLICER_HOME"]) / "bin")
    return [home / name for home in homes for name in SLICER_PYTHON_NAMES]


@functools.cache
def _python_version_of(executable: str) -> str | None:
    """``major.minor`` printed by ``executable -c ...``, or None when it is not a working Python."""
    try:
        result = subprocess.run([executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def worker_python() -> str:
    """The Python interpreter worker processes start with (see the module docstring).

    ``$RADIOMICSLAB_WORKER_PYTHON`` if set; else ``sys.executable`` when it is a plain interpreter;
    else (Slicer's launchers) the installation's ``python-real``. Raises :class:`RadiomicsLabError`
    naming what was tried when there is none.
    """
    wanted = f"{sys.version_info[0]}.{sys.version_info[1]}"
    override = os.environ.get(WORKER_PYTHON_VARIABLE)
    if override:
        if _python_version_of(override) != wanted:
            raise RadiomicsLabError(f"{WORKER_PYTHON_VARIABLE} is '{override}', which is not a working Python {wanted}; "
                                    "point it to the Python of this application (Slicer: bin/python-real) or unset it.")
        return override
    if sys.executable and not _is_slicer_launcher(sys.executable):
        return sys.executable
    tried = []
    for candidate in _slicer_python_candidates(sys.executable):
        if candidate.is_file():
            tried.append(str(candidate))
            if _python_version_of(str(candidate)) == wanted:
                return str(candidate)
    raise RadiomicsLabError(
        f"Cannot start worker processes: this Python's executable is '{sys.executable}', a Slicer launcher, and no "
        f"python-real was found beside it{' (tried ' + ', '.join(tried) + ')' if tried else ''}. Set "
        f"{WORKER_PYTHON_VARIABLE} to the Slicer installation's bin/python-real, or run with workers=0.")


def use_worker_python() -> str:
    """Make multiprocessing's spawned processes (ours and Dask's local workers) start :func:`worker_python`."""
    executable = worker_python()
    if os.fsdecode(multiprocessing.spawn.get_executable()) != executable:
        multiprocessing.set_executable(executable)
    return executable


def worker_info(progress=None) -> dict:
    """Which Python a worker process runs (a job's ``compute`` for checking the set-up): its ``executable``,
    ``version``, ``pid`` and ``started_by`` (``$RADIOMICSLAB_STARTED_BY``, set by test launchers)."""
    return {"executable": sys.executable, "version": "%d.%d" % sys.version_info[:2], "pid": os.getpid(),
            "started_by": os.environ.get("RADIOMICSLAB_STARTED_BY", "")}


# Running a job in a worker process ---------------------------------------------------------------
#: Seconds between a worker's checks that the process that started it is still there (:func:`_end_with_parent`).
PARENT_CHECK_S = 0.5


def _end_with_parent(parent_pid: int) -> None:
    """A worker's watch (a daemon thread): end the worker when the process that started it is gone, at once rather
    than at its next progress report: the GUI ended without terminating it (a crash), or the worker's executable is a
    wrapper that runs the interpreter as its child and was terminated on Cancel in its place (its child is then
    handed to another parent)."""
    parent = multiprocessing.parent_process()
    while os.getppid() == parent_pid:
        if parent is not None and multiprocessing.connection.wait([parent.sentinel], timeout=PARENT_CHECK_S):
            break
        if parent is None:
            time.sleep(PARENT_CHECK_S)
    os._exit(1)


def end_with_parent() -> None:
    """In a worker process (a job's, or one of the warm-up's: :func:`.warmup.compile_in_workers`): start the watch
    that ends it as soon as the process that started it is gone (:func:`_end_with_parent`)."""
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True,
                     name="radiomicslab-parent-watch").start()


def _work(connection, prepare=None):
    """Worker process: run ``prepare()`` (a worker started ahead of its job, :func:`keep_worker_ready`), then read the
    job, compute it, send progress and the result (or the error) back.

    The worker is started as a daemon (the GUI's exit ends it) but clears the flag in itself, so that a job may start
    processes of its own (joblib's workers for a study's cross-validation: a daemonic process may have none, and
    joblib would run on one core)."""
    multiprocessing.current_process().daemon = False
    end_with_parent()
    if prepare is not None:
        try:
            prepare()
        except Exception:  # noqa: BLE001 - only a head start: the job does what it needs itself
            traceback.print_exc()
    try:
        compute, args, kwargs = pickle.loads(connection.recv_bytes())

        def progress(done, total, message=""):
            connection.send(("progress", (int(done), int(total), str(message))))
            return True

        value = compute(*args, progress=progress, **kwargs)
        payload = ("done", value)
    except BaseException as error:  # noqa: BLE001 - every failure goes back to the GUI
        payload = ("error", error, traceback.format_exc())
    try:
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # noqa: BLE001 - an unpicklable result or exception
        if payload[0] == "error":   # the job's own error, by its type and message, with its traceback
            failure, trace = payload[1], payload[2]
        else:
            failure, trace = RuntimeError(f"the result could not be sent back: {type(error).__name__}: {error}"), \
                traceback.format_exc()
        data = pickle.dumps(("error", RuntimeError(f"{type(failure).__name__}: {failure}"), trace))
    connection.send_bytes(data)
    connection.close()


@dataclass
class _Worker:
    """A started worker process (:func:`_work`), the parent's end of its pipe, and what it started with."""

    process: multiprocessing.Process
    connection: object
    started_with: tuple


def _start_conditions() -> tuple:
    """What a spawned worker takes from this process when it starts: the executable, ``sys.path``, the working folder
    and the environment."""
    return (os.fsdecode(multiprocessing.spawn.get_executable()), tuple(sys.path), os.getcwd(),
            tuple(sorted(os.environ.items())))


def _start_worker(name: str, prepare=None) -> _Worker:
    use_worker_python()
    context = multiprocessing.get_context("spawn")
    connection, child = context.Pipe(duplex=True)
    process = context.Process(target=_work, args=(child, prepare), name=name, daemon=True)
    process.start()
    child.close()
    return _Worker(process, connection, _start_conditions())


def _stop_worker(worker: _Worker) -> None:
    """Terminate a worker that has no job, and reap it on a background thread."""
    worker.process.terminate()
    worker.connection.close()
    threading.Thread(target=worker.process.join, args=(TERMINATE_GRACE_S,), daemon=True,
                     name="radiomicslab-worker-stop").start()


# The worker kept ready for the next job ------------------------------------------------------------
_ready_lock = threading.Lock()
_ready = None           # the worker started ahead of the next job, or None
_ready_prepare = None   # (prepare,) while a worker is kept ready (keep_worker_ready), else None


def keep_worker_ready(prepare=None) -> None:
    """From now on keep one worker process started ahead of the next job (desktop Slicer does from start-up).

    A job then skips its worker's start: importing numpy, SimpleITK and RadiomicsLab (about 0.8 s), and whatever
    ``prepare()`` (a module-level function) does before the worker waits for its job, such as loading the compiled
    kernels (:func:`RadiomicsLabLib.warmup.load_kernels`, about 2 s). After each job ends a new worker is started.
    The price is one idle process's memory (about 350 MB with every kernel loaded). A worker whose start conditions
    (executable, ``sys.path``, working folder, environment) no longer match this process's is not used."""
    global _ready_prepare
    with _ready_lock:
        _ready_prepare = (prepare,)
    _start_ready_worker()


def stop_keeping_worker_ready() -> None:
    """Stop :func:`keep_worker_ready`: the worker kept ready is terminated; jobs start their own workers again."""
    global _ready, _ready_prepare
    with _ready_lock:
        worker, _ready, _ready_prepare = _ready, None, None
    if worker is not None:
        _stop_worker(worker)


def _start_ready_worker() -> None:
    """Start the worker kept ready, when one is kept and none is alive."""
    global _ready
    with _ready_lock:
        if _ready_prepare is None or (_ready is not None and _ready.process.is_alive()):
            return
        if _ready is not None:   # ended by itself (e.g. killed): its pipe goes too
            _ready.connection.close()
        try:
            _ready = _start_worker("RadiomicsLab: worker ready for the next job", _ready_prepare[0])
        except Exception:  # noqa: BLE001 - e.g. no worker Python: the next job starts its own and reports it
            _ready = None


def _take_ready_worker(name: str) -> _Worker | None:
    """The worker kept ready, renamed ``name``, if it is alive and started as a new worker would; else None."""
    global _ready
    use_worker_python()
    with _ready_lock:
        worker, _ready = _ready, None
    if worker is None:
        return None
    if worker.process.is_alive() and worker.started_with == _start_conditions():
        worker.process.name = name
        return worker
    _stop_worker(worker)
    return None


class BackgroundRun:
    """One :class:`Job` computing in a worker process while the caller's (main) thread goes on.

    The main thread calls :meth:`poll` from its event loop (a Qt timer in Slicer): it takes the
    progress reports, and when the result has arrived it calls ``job.land`` there and keeps what it
    returned in :attr:`value`. Nothing touches the scene until then, so :meth:`cancel` (the worker is
    terminated) leaves the scene as it was. Sending the inputs, receiving the result and ``job.before_land`` happen
    on background threads: the main thread never waits for the worker.

    ``state`` is ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"``; ``progress`` is the last
    ``(done, total, message)``.
    """

    def __init__(self, job: Job):
        self.job = job
        self.state = "running"
        self.progress = (0, 0, "starting")
        self.value = None
        self.error = None
        self.started = time.monotonic()
        payload = pickle.dumps((job.compute, job.args, job.kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        name = f"RadiomicsLab: {job.title}"
        worker = _take_ready_worker(name) or _start_worker(name)
        self._process, self._connection = worker.process, worker.connection
        self._messages = queue.Queue()
        self._reaping = threading.Lock()  # the reader and a cancel both reap the worker: one at a time
        self._sender = threading.Thread(target=self._send, args=(payload,), daemon=True, name="radiomicslab-job-send")
        self._sender.start()
        self._reader = threading.Thread(target=self._receive, daemon=True, name="radiomicslab-job-receive")
        self._reader.start()

    def _send(self, payload: bytes) -> None:
        try:
            self._connection.send_bytes(payload)
        except (OSError, ValueError, TypeError):  # the worker ended or the pipe was closed by a cancel: reported by
            pass                                  # _receive (or the cancel itself)

    def _receive(self) -> None:
        """Reader thread: queue the worker's messages; after the last one, reap the worker process and
        close the pipe. This thread alone closes it, once the sender has returned: a pipe closed by one
        thread while another uses it (or closed twice) can close whatever file took its number meanwhile."""
        while True:
            try:
                message = pickle.loads(self._connection.recv_bytes())
            except (EOFError, OSError, ValueError):
                self._reap()
                message = ("ended",)
            except Exception as error:  # noqa: BLE001 - a result this process cannot unpickle
                message = ("error", error, traceback.format_exc())
            if message[0] == "done":
                try:
                    message = ("done", self.job.before_land(message[1]))
                except Exception as error:  # noqa: BLE001 - shown by the caller through result()
                    message = ("error", error, traceback.format_exc())
            self._messages.put(message)
            if message[0] != "progress":
                break
        self._reap()
        self._sender.join()  # returns: the worker has ended, so a send in progress fails at once
        self._connection.close()
        _start_ready_worker()  # for the next job, now that this one no longer needs the CPU

    def _reap(self, grace: float = 10.0) -> None:
        """Wait up to ``grace`` seconds for the worker process to end, then kill it."""
        with self._reaping:
            self._process.join(grace)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(TERMINATE_GRACE_S)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def poll(self) -> bool:
        """Take the worker's messages; land the result when it has come. True while still running."""
        while self.running:
            try:
                message = self._messages.get_nowait()
            except queue.Empty:
                break
            kind = message[0]
            if kind == "progress":
                self.progress = message[1]
            elif kind == "done":
                try:
                    self.value = self.job.land(message[1])
                    self.state = "done"
                except BaseException as error:  # noqa: BLE001 - shown by the caller through result()
                    self.error, self.state = error, "failed"
            elif kind == "error":
                error = message[1]
                if not isinstance(error, RadiomicsLabError):  # a bug: keep the worker's traceback for the log
                    error = WorkerFailed(f"{self.job.title} failed in the worker process: {type(error).__name__}: "
                                         f"{error}\n{message[2]}")
                self.error, self.state = error, "failed"
            elif kind == "ended":
                self.error = WorkerFailed(
                    f"{self.job.title}: the worker process ended without a result (exit code "
                    f"{self._process.exitcode}); it may have run out of memory, or could not start with "
                    f"'{os.fsdecode(multiprocessing.spawn.get_executable())}' (set {WORKER_PYTHON_VARIABLE}), or a "
                    "script started it without `if __name__ == \"__main__\":` (worker processes import the script).")
                self.state = "failed"
        return self.running

    def cancel(self) -> None:
        """Stop the worker now (terminated; killed if still alive after :data:`TERMINATE_GRACE_S`); nothing lands.

        Returns at once: the worker is reaped by a background thread (:attr:`worker_alive` tells)."""
        if not self.running:
            return
        self.state = "cancelled"
        self.error = JobCancelled(f"{self.job.title} cancelled; nothing was added to the scene.")
        self._process.terminate()
        threading.Thread(target=self._reap, kwargs={"grace": TERMINATE_GRACE_S}, daemon=True,
                         name="radiomicslab-job-cancel").start()

    @property
    def worker_alive(self) -> bool:
        return self._process.is_alive()

    def wait(self, timeout: float | None = None, interval: float = 0.05):
        """Poll until the job ends (or ``timeout`` seconds); :meth:`result`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() and (deadline is None or time.monotonic() < deadline):
            time.sleep(interval)
        return self.result()

    def result(self):
        """What ``job.land`` returned; raises the job's error (:class:`JobCancelled` after a cancel)."""
        if self.error is not None:
            raise self.error
        return self.value
