"""``numba.njit`` for RadiomicsLab's kernels: the same decorator, with a cache that still works where numba finds no
writable place for it.

numba keeps a ``cache=True`` kernel's machine code in the first writable of: ``$NUMBA_CACHE_DIR``, ``__pycache__``
beside the kernel's source, and its user-wide cache folder (``~/.cache/numba`` on Linux). Where none is writable (a
read-only installation in a container whose home is read-only too), numba raises "no locator available" when the
kernel is defined, so importing any kernel module failed and with it every workflow. Here the kernels then use a
private folder of this user's temporary directory (:func:`fallback_cache_dir`: every process of the user, worker
processes included, comes to the same one), so that they are compiled once on that machine and loaded from there by
every later process (:mod:`.warmup`); where even that cannot be made, they are compiled without a cache, in every
process. Either way a :class:`~.errors.RadiomicsLabWarning` says so, and how to choose the folder.

Every kernel's cache entries are read and written under a lock shared by all processes (:func:`lock_cache_file`):
numba's own cache is not safe when several processes compile one kernel at once (numba issue #10128).
"""

import contextlib
import errno
import functools
import os
import stat
import tempfile
import warnings
from pathlib import Path

import numba

from .errors import RadiomicsLabWarning

#: The fallback folder's name in the temporary directory; the user's id is appended.
FALLBACK_PREFIX = "radiomicslab-numba-"


#: The folder chosen where numba found none (None: compile uncached), once decided.
_fallback: dict = {}

#: The lock file in each kernel cache folder (:func:`lock_cache_file`).
LOCK_NAME = "radiomicslab-numba.lock"


def njit(*args, **options):
    """:func:`numba.njit` with the same arguments; with ``cache=True``, a kernel that numba cannot cache anywhere is
    cached in :func:`fallback_cache_dir` (or compiled uncached) instead of failing."""
    decorate = numba.njit(*args, **options)
    if args or not options.get("cache"):
        return decorate

    def decorator(function):
        if _fallback.get("folder", "") is not None:    # unless this process already found no folder at all
            try:
                return _locked(decorate(function))
            except RuntimeError as error:
                if "no locator available" not in str(error) or "folder" in _fallback:
                    raise
            if fallback_cache_dir() is not None:
                return _locked(decorate(function))
        return numba.njit(**{**options, "cache": False})(function)

    return decorator


def fallback_cache_dir() -> str | None:
    """The folder numba caches RadiomicsLab's kernels in where it finds none of its own (decided once per process):
    ``<temporary directory>/radiomicslab-numba-<uid>``, made with mode 0700, or a new private folder where that one
    exists but is not this user's alone (another user could have planted compiled code in it; each process then makes
    its own and compiles again); None (compile uncached) where ``$NUMBA_CACHE_DIR`` was set to an unusable folder or
    no folder can be made. Sets numba's own setting, not ``$NUMBA_CACHE_DIR``: the warm-up's stamp
    (:func:`.warmup.stamp`) reads that variable as the user set it, and worker processes come to the same folder.
    Warns once."""
    if "folder" in _fallback:
        return _fallback["folder"]
    folder, why = None, ""
    if numba.config.CACHE_DIR:
        why = f"NUMBA_CACHE_DIR ({numba.config.CACHE_DIR}) is not a writable folder"
    else:
        user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
        try:
            folder = Path(tempfile.gettempdir()) / f"{FALLBACK_PREFIX}{user}"
            folder.mkdir(mode=0o700, exist_ok=True)
            if not _private(folder):
                folder = Path(tempfile.mkdtemp(prefix=FALLBACK_PREFIX))
        except OSError as error:   # gettempdir() too, where no temporary directory is usable
            folder, why = None, f"no private folder could be made in the temporary directory ({error})"
    _fallback["folder"] = None if folder is None else str(folder)
    if folder is None:
        warnings.warn(f"numba found no writable folder for RadiomicsLab's compiled kernels and {why}: they are "
                      f"compiled in every process (seconds per feature family). Set NUMBA_CACHE_DIR to a writable "
                      f"folder to compile them once.", RadiomicsLabWarning, stacklevel=4)
        return None
    numba.config.CACHE_DIR = str(folder)
    warnings.warn(f"numba found no writable folder for RadiomicsLab's compiled kernels (the installation and the "
                  f"user's cache folder are read-only): they are cached in {folder}. Set NUMBA_CACHE_DIR to choose "
                  f"another folder.", RadiomicsLabWarning, stacklevel=4)
    return str(folder)


def _private(folder: Path) -> bool:
    """Whether ``folder`` is a directory of this user that no one else may write to (always true without POSIX
    owners: Windows' temporary directory is the user's own)."""
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode):
        return False
    if not hasattr(os, "getuid"):
        return True
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


# Cache files locked across processes --------------------------------------------------------------------------
def _locked(dispatcher):
    """``dispatcher`` (a cached kernel) with its cache file locked across processes (:func:`lock_cache_file`); as numba
    made it where numba's cache no longer has these parts (``Testing/test_warmup.py`` then fails, so that the lock is
    put back)."""
    files = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if files is not None and hasattr(files, "_cache_path"):
        lock_cache_file(files)
    return dispatcher


def lock_cache_file(files) -> None:
    """Make every read and write of one kernel's cache entries (``files``, numba's ``IndexDataCacheFile``: its index and
    data files) hold an exclusive lock on :data:`LOCK_NAME` in its folder, in every process that uses it.

    numba saves an entry by reading the kernel's index, adding the signature under the first data file name not in it,
    writing the index and then the data file, with nothing between processes. Two processes that compile different
    signatures of one kernel at once (cohort workers on a fresh installation, a desktop job while the warm-up
    compiles) can both take the same file name: one entry is lost, or the index names the other signature's machine
    code, which a later process then runs on arguments of the wrong types (numba issue #10128; three processes saving
    200 entries each at once into one index kept 283 of 600, 109 of them naming another entry's data). Under the lock a
    save and a load each see a whole index and the data it names. Loads hold it for the two file reads only (not while
    the machine code is rebuilt), so processes starting together barely wait."""
    lock = os.path.join(files._cache_path, LOCK_NAME)
    files.save = _holding(lock, files.save)
    files.load = _holding(lock, files.load)


def _holding(lock: str, method):
    """``method`` called while this process holds the lock file ``lock`` (:func:`_file_lock`)."""
    @functools.wraps(method)
    def locked(*args):
        with _file_lock(lock):
            return method(*args)
    return locked


@contextlib.contextmanager
def _file_lock(path: str):
    """An exclusive lock on the file ``path`` (made if missing, with the permissions numba gives its cache files) for
    the ``with`` block, between processes and between threads (``flock`` on POSIX, ``msvcrt.locking`` on Windows). Where
    the file cannot be made (a read-only or missing cache folder: nothing can be written there, and a missing folder
    holds nothing to read) or locked (a file system without locks), the block runs unlocked, as numba alone would.
    Released explicitly, not only by closing the file: an ``flock`` lock lasts while any copy of the descriptor is
    open, and a child forked meanwhile by another thread (a cohort worker) keeps a copy for as long as it runs."""
    try:     # read-only: the lock works on it, also for another user of a shared cache folder
        descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    held = False
    try:
        try:
            _acquire(descriptor)
            held = True
        except OSError:
            pass
        yield
    finally:
        if held:
            _release(descriptor)
        os.close(descriptor)


if os.name == "nt":
    import msvcrt

    def _acquire(descriptor: int) -> None:
        while True:
            try:     # msvcrt tries for 10 s, then raises EDEADLOCK
                msvcrt.locking(descriptor, msvcrt.LK_LOCK, 1)
                return
            except OSError as error:
                if error.errno not in (errno.EDEADLOCK, errno.EACCES):
                    raise

    def _release(descriptor: int) -> None:
        os.lseek(descriptor, 0, os.SEEK_SET)
        msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _acquire(descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_EX)

    def _release(descriptor: int) -> None:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
