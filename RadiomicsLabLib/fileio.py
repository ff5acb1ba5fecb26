"""Safe output files: check before the work, write to a temporary file, then rename."""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import RadiomicsLabError


def check_writable(path) -> Path:
    """Fail early, before any work, when ``path`` cannot be written; creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise RadiomicsLabError(f"Cannot write '{path}': it is a folder; give a file name.")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RadiomicsLabError(f"Cannot write '{path}': '{ancestor}' is not a folder; choose another output path.")
    if not os.access(ancestor, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise RadiomicsLabError(f"Cannot write '{path}': permission denied; choose another output path.")
    return path


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure remove it.

    A reader never sees a half-written file and an existing file survives a failed write.
    """
    path = check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise RadiomicsLabError(f"Cannot write '{path}': {error.strerror}; choose another output path.") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as error:
        raise RadiomicsLabError(f"Cannot write '{path}': {error.strerror}; choose another output path.") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_image_atomic(image, path) -> Path:
    """Write a SimpleITK image atomically; the format follows ``path``'s suffix (``.nrrd``, ``.nii.gz``, ...)."""
    import SimpleITK as sitk

    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix
    with atomic_output(path) as tmp:
        named = tmp.with_name(tmp.name + suffix)  # SimpleITK picks the format from the suffix
        try:
            sitk.WriteImage(image, str(named), True)
            named.replace(tmp)
        finally:
            named.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
