"""What one computation may use: the grey levels a discretisation makes and the texture matrices (sizes
checked before memory is allocated), and the threads (:func:`compute_threads`, :func:`run_in_background`).

A fixed bin width far below the intensity range (``binWidth: 1e-9`` on a CT spanning 1400 HU makes 1.4e12
levels) or an absurd ``binCount`` would make numpy try to allocate terabytes: the bin edges alone, the
first-order histogram, and above all the texture matrices (a GLCM is N_g x N_g per direction, 13 directions
in 3D; pyradiomics' C code fails with "IndexError: Calculation of GLCM Failed"). So the number of levels is
computed from the ROI's intensity range before any array is made:

- more than :data:`MAX_GREY_LEVELS` is refused (a 16-bit image at bin width 1 has at most 65,536 levels;
  radiomics uses 16-256);
- texture matrices of ``N_g^2 x directions`` doubles, with :data:`MATRIX_WORKING_COPIES` same-size temporaries
  for the formulas, must fit in half the memory available now (:func:`available_memory`).

The message names the setting to change and a value that gives a few hundred levels.
"""

import contextvars
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from .errors import RadiomicsLabError

#: Most grey levels any discretisation may make.
MAX_GREY_LEVELS = 65_536
#: A texture family holds its matrices and about this many more arrays of the same size while computing features.
MATRIX_WORKING_COPIES = 4
#: Levels the suggested bin width aims at.
SUGGESTED_LEVELS = 256
#: Texture matrices needing at most this many bytes (working copies included) are not weighed against the memory
#: available (a file read per extraction on Linux): any machine that runs the engine has twice that free.
TEXTURE_MEMORY_UNCHECKED = 64 * 2 ** 20


def compute_threads() -> int:
    """Threads one computation in this process may use (the FFTs of Moran's I / Geary's C and of the IBSI 2
    filters): the CPUs this process may run on, or fewer where ``OMP_NUM_THREADS`` or ``NUMBA_NUM_THREADS`` say
    so. A cohort worker has both at 1 (:func:`~RadiomicsLabLib.batch.worker_environment`,
    :func:`~RadiomicsLabLib.batch.limit_threads`): N workers use N cores, not N x cores threads. On a background thread
    (:func:`run_in_background`), the CPUs it may run on: all but its caller's, unless its task asked for all."""
    try:
        threads = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        threads = os.cpu_count() or 1
    for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            threads = min(threads, int(value))
    return max(threads, 1)


#: The background threads' executor, their native thread ids, the CPUs their creator could run on and those they may
#: run on now (None: not set here).
_background = {"executor": None, "threads": [], "allowed": None, "cpus": None}
_background_lock = threading.Lock()


def _forget_background() -> None:
    """In a forked child: none of the parent's threads exist there, so the next task makes a new one."""
    global _background_lock
    _background.update(executor=None, threads=[], allowed=None, cpus=None)
    _background_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_background)


def run_in_background(function, *args, holding=None, all_cpus: bool = False) -> Future:
    """``function(*args)`` on this process's background threads where :func:`compute_threads` allows more than one
    thread, else at once; the :class:`~concurrent.futures.Future` holds the result (or the exception).

    Meant for one long call of a compiled kernel that releases the GIL (``nogil``), which then runs beside the
    caller's own work: e.g. the whole interpolated image's IBSI statistics, or the FFTs of Moran's I, beside the
    ROI's features. ``holding``: an object kept alive until the call ends (the SimpleITK image whose buffer an
    argument views: a view holds no reference to it). Callers wait for the result before they return, or cancel it
    (:class:`BackgroundTasks`). One thread per core but the caller's (``compute_threads() - 1``; made anew in a forked
    child), tasks started in order, on the CPUs but the caller's (:func:`_keep_background_off`); with ``all_cpus``
    (a task that runs threads of its own, :func:`compute_threads`), on every CPU once it has started."""
    if compute_threads() < 2:
        future = Future()
        try:
            future.set_result(function(*args))
        except Exception as error:
            future.set_exception(error)
        return future
    with _background_lock:
        if _background["executor"] is None:
            _background["executor"] = ThreadPoolExecutor(max_workers=compute_threads() - 1,
                                                          thread_name_prefix="radiomicslab-background",
                                                          initializer=_background_thread_started)
            _background["allowed"] = _affinity()
        _keep_background_off(_current_cpu())
        future = _background["executor"].submit(_background_call, function, args, holding, all_cpus)
    tasks = _started_tasks.get()
    if tasks is not None:
        tasks.append(future)
    return future


def run_parts_in_background(function, parts, holding=None):
    """``function(*part)`` for each of ``parts`` (argument tuples) on the background threads, started in order
    (:func:`run_in_background`); returns a function that returns their results in ``parts`` order. That function
    computes in its own (calling) thread the parts no background thread has started yet, from the last one back, then
    waits for the others: a caller that would otherwise wait shares the work (the whole interpolated CT's IBSI
    statistics: 8 parts of 4 million points). The same results either way. With one thread (:func:`compute_threads`)
    nothing starts here: that function computes every part when first asked, so a caller that fails before it asks
    (an empty mask, found after the parts were started) has not spent their time. It holds ``holding`` meanwhile."""
    started = compute_threads() > 1
    futures = [run_in_background(function, *part, holding=holding) if started else None for part in parts]

    def results() -> list:
        values = [None] * len(futures)
        for index in reversed(range(len(futures))):
            if futures[index] is None or futures[index].cancel():     # not started: computed here
                values[index] = _call(function, parts[index], holding)
        for index, future in enumerate(futures):
            if future is not None and not future.cancelled():
                values[index] = future.result()
        return values

    return results


class BackgroundTasks:
    """The tasks :func:`run_in_background` starts in this thread while the block runs (``with BackgroundTasks() as
    tasks:``), so that a caller that will not need their results (its own work failed) drops those not started yet
    (:meth:`cancel`) instead of leaving them to the background threads; leaving the block by an exception cancels
    them. A task already running ends on its own (its ``holding`` kept until then)."""

    def __init__(self):
        self.futures = []
        self._token = None

    def __enter__(self) -> "BackgroundTasks":
        self._token = _started_tasks.set(self.futures)
        return self

    def __exit__(self, kind, error, trace) -> bool:
        _started_tasks.reset(self._token)
        if kind is not None:
            self.cancel()
        return False

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()


#: The list of the innermost :class:`BackgroundTasks` block of this thread (context), or None.
_started_tasks = contextvars.ContextVar("radiomicslab_started_tasks", default=None)


def _current_cpu() -> int | None:
    """The CPU the calling thread runs on now (glibc's / musl's ``sched_getcpu``), or None where that is not known
    (macOS, Windows)."""
    if _sched_getcpu is None:
        return None
    cpu = _sched_getcpu()
    return cpu if cpu >= 0 else None


def _libc_sched_getcpu():
    """``sched_getcpu`` of the C library (Linux), or None."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        import ctypes

        function = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    function.restype, function.argtypes = ctypes.c_int, []
    return function


_sched_getcpu = _libc_sched_getcpu()


def _keep_background_off(cpu: int | None) -> None:
    """Lets the background threads run on the CPUs their creator could run on except ``cpu``, the submitting
    caller's (Linux; under ``_background_lock``), so that a task woken there runs beside the caller instead of taking
    its CPU: a kernel may place a thread woken after an idle pause on the CPU of the thread that woke it (this
    project's 2-vCPU VM does, its guest kernel's ``sched_vcpu_pack``), and the caller then waits for the task it
    handed off (STS_002 at 2 mm: 1.4-1.7 ms on the run queue per extraction, about the whole-grid pass). Nothing
    where the caller's CPU is not known or no other CPU is allowed; an affinity the system refuses (a CPU set changed
    meanwhile) is left as it is. The caller's own threads are never moved."""
    if cpu is None or not _background["allowed"]:
        return
    cpus = _background["allowed"] - {cpu}
    if not cpus or cpus == _background["cpus"]:
        return
    _background["cpus"] = cpus
    for thread in _background["threads"]:
        try:
            os.sched_setaffinity(thread, cpus)
        except OSError:
            pass


def _affinity() -> set | None:
    """The CPUs the calling thread may run on (Linux), or None."""
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None


def _background_thread_started() -> None:
    """Each background thread, as it starts: its id noted, and the CPUs :func:`_keep_background_off` last chose."""
    with _background_lock:
        _background["threads"].append(threading.get_native_id())
        cpus = _background["cpus"]
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass


def _background_call(function, args: tuple, holding, all_cpus: bool):
    """:func:`_call` on a background thread; with ``all_cpus`` the thread may first run on every CPU its creator
    could (the CPUs but its caller's, :func:`_keep_background_off`, then only chose where it woke), so that the
    threads the task runs of its own (a large grid's FFTs in bands, :func:`compute_threads`) use them all. Only for
    such tasks: on this project's 2-vCPU VM a thread so widened that computes alone made the small crops' extraction
    slower (new processes taking turns: STS_002 11.2 -> 12.1 ms), one kept off made a large crop's Moran sums, one
    thread instead of two, slower (STS_004 24.9 -> 29.2 ms)."""
    if all_cpus:
        with _background_lock:
            _background["cpus"] = None      # the next task keeps the threads off its caller's CPU again
            if _background["allowed"]:
                try:
                    os.sched_setaffinity(0, _background["allowed"])
                except OSError:
                    pass
    return _call(function, args, holding)


def _call(function, args: tuple, _holding):
    """``function(*args)``; ``_holding`` is only referenced, so that it lives until the call ends."""
    return function(*args)


def available_memory() -> int:
    """Memory the system can still give this process (bytes): MemAvailable, else free physical pages."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def fixed_bin_size_levels(low: float, high: float, bin_width: float, origin: float | None = None) -> int:
    """Levels of width ``bin_width`` counted from ``origin`` (default: ``low``) that cover ``[low, high]``."""
    origin = low if origin is None else origin
    return int(math.floor((float(high) - float(origin)) / float(bin_width))) + 1


def _advice(low: float, high: float, bin_width, bin_count) -> str:
    span = float(high) - float(low)
    if bin_count is not None and bin_width is None:
        return f"use a binCount of {SUGGESTED_LEVELS} or less"
    width = f"{span / SUGGESTED_LEVELS:.3g}" if span > 0 else "1"
    return f"use a larger binWidth (e.g. {width}, about {SUGGESTED_LEVELS} levels over this range) or a binCount"


def check_grey_levels(n_levels: int, low: float, high: float, where: str = "the region of interest",
                      bin_width=None, bin_count=None) -> None:
    """Refuse a discretisation into more than :data:`MAX_GREY_LEVELS` levels, before it is made."""
    if n_levels > MAX_GREY_LEVELS:
        setting = f"binCount {bin_count}" if bin_width is None else f"binWidth {bin_width:g}"
        raise RadiomicsLabError(
            f"{setting} gives {n_levels:,} grey levels in {where} (intensities {float(low):g} to {float(high):g}); "
            f"at most {MAX_GREY_LEVELS:,} are allowed: {_advice(low, high, bin_width, bin_count)}.")


def check_texture_memory(n_levels: int, n_matrices: int, where: str = "the region of interest", limit=None) -> None:
    """Refuse texture matrices (``n_matrices`` of ``n_levels^2`` doubles, with their working copies) that would not
    fit in half of the memory available now (or ``limit`` bytes); up to :data:`TEXTURE_MEMORY_UNCHECKED` without
    asking."""
    needed = float(n_levels) ** 2 * n_matrices * 8 * (1 + MATRIX_WORKING_COPIES)
    if limit is None and needed <= TEXTURE_MEMORY_UNCHECKED:
        return
    limit = available_memory() // 2 if limit is None else int(limit)
    if needed > limit:
        raise RadiomicsLabError(
            f"{n_levels:,} grey levels in {where} need about {needed / 2**30:.3g} GiB for the texture matrices "
            f"({n_matrices} of {n_levels:,} x {n_levels:,}), more than the {limit / 2**30:.3g} GiB that can be used "
            f"now: use a larger binWidth or a smaller binCount (radiomics usually uses 16 to 256 levels).")
