"""Safe output files: check before the work (writable, not one of the inputs, the right name ending; ``-`` is
standard output), write to a temporary file, then rename."""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import RadiomicsLabError

#: The output name meaning standard output (where one CSV or text table is written).
STDOUT = "-"
#: What each kind of output is: (description, accepted name endings or None, example name).
OUTPUT_KINDS = {
    "csv": ("a CSV table", (".csv",), "features.csv"),
    "image": ("an image (NRRD, NIfTI or MetaImage, by the name's ending)", (".nrrd", ".nii", ".nii.gz", ".mha"), "ring.nrrd"),
    "scene": ("a Slicer study bundle", (".mrb",), "study.mrb"),
    "folder": ("a folder of results", None, "results"),
    "file": ("a file", None, None),
}


def is_stdout(path) -> bool:
    """True for ``-``, the output name meaning standard output."""
    return path is not None and str(path) == STDOUT


def check_output(path, inputs=(), kind: str = "file", option: str = "-o"):
    """Check an output path before any work; creates nothing. Returns the path, or None for standard output.

    Refused, each with one line saying what to give instead: ``-`` (standard output) unless ``kind`` is
    ``csv``; a path that is one of ``inputs`` (the same file or folder after resolving symbolic links and
    ``..``, or the same inode through a hard link), so no command overwrites what it reads; a name whose
    ending does not match what is written (``kind``: ``csv``, ``image``, ``scene``; ``folder`` and ``file``
    take any name); and a path that cannot be written (:func:`check_writable`).

    ``inputs``: ``{role: path}`` or ``[(role, path), ...]`` (role as said in messages, e.g. ``"image"``);
    ``None`` paths are skipped. ``option`` names the output in messages (``-o``, ``--scene``).
    """
    what, endings, example = OUTPUT_KINDS[kind]
    if is_stdout(path):
        if kind == "csv":
            return None
        raise RadiomicsLabError(f"{option} -: standard output takes one CSV table, but {option} here is {what}; "
                                f"give a {'folder' if kind == 'folder' else 'file'} name{f' such as {example}' if example else ''}.")
    path = Path(path)
    role = input_role(path, inputs)
    if role is not None:
        raise RadiomicsLabError(f"Cannot write '{path}': it is the {role} this command reads; "
                                "choose another output path (inputs are never overwritten).")
    if endings and not path.is_dir() and not path.name.lower().endswith(endings):
        listing = endings[0] if len(endings) == 1 else f"{', '.join(endings[:-1])} or {endings[-1]}"
        raise RadiomicsLabError(f"Cannot write '{path}': {option} writes {what}, so its name must end in {listing} "
                                f"(e.g. {example}).")
    if kind == "folder":
        if path.exists() and not path.is_dir():
            raise RadiomicsLabError(f"Cannot write into '{path}': it is a file, and {option} is a folder; give a folder name.")
        ancestor = path
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise RadiomicsLabError(f"Cannot write into '{path}': '{ancestor}' is not a folder; choose another output folder.")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise RadiomicsLabError(f"Cannot write into '{path}': permission denied; choose another output folder.")
    else:
        check_writable(path)
    return path


def check_outputs(paths, inputs=(), kind: str = "file", option: str = "-o") -> None:
    """:func:`check_output` for each of ``paths`` (e.g. the files a command writes into its output folder)."""
    inputs = list(inputs.items()) if isinstance(inputs, dict) else list(inputs)
    for path in paths:
        check_output(path, inputs, kind, option)


def input_role(path, inputs) -> str | None:
    """The role of the input that ``path`` is (same path after resolving links and ``..``, or same inode), or None."""
    items = inputs.items() if isinstance(inputs, dict) else inputs
    for role, source in items:
        if source is not None and str(source) != STDOUT and same_file(path, source):
            return f"{role} '{source}'" if Path(source) != Path(path) else role
    return None


def same_file(a, b) -> bool:
    """Whether two paths name the same existing file or folder (symbolic links, ``..`` and hard links seen through)."""
    try:
        if not os.path.exists(b):
            return False
        return os.path.realpath(a) == os.path.realpath(b) or (os.path.exists(a) and os.path.samefile(a, b))
    except (OSError, ValueError):
        return False


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
