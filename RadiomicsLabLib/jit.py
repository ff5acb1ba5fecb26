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
"""

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


def njit(*args, **options):
    """:func:`numba.njit` with the same arguments; with ``cache=True``, a kernel that numba cannot cache anywhere is
    cached in :func:`fallback_cache_dir` (or compiled uncached) instead of failing."""
    decorate = numba.njit(*args, **options)
    if args or not options.get("cache"):
        return decorate

    def decorator(function):
        if _fallback.get("folder", "") is not None:    # unless this process already found no folder at all
            try:
                return decorate(function)
            except RuntimeError as error:
                if "no locator available" not in str(error) or "folder" in _fallback:
                    raise
            if fallback_cache_dir() is not None:
                return decorate(function)
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
