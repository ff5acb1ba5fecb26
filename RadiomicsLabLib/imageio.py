"""Reading images and label maps (NRRD, NIfTI, MHA, ... or a DICOM series folder) with SimpleITK.

Every read is verified: ITK fills a cut-short NIfTI with zeros and skips an unreadable DICOM slice,
so :func:`read_image` first checks the file against its own header (:func:`verify_file`: the whole
gzip/zlib stream read through to its end and checksum, the size of the data part against the
header's dimensions x voxel type for NIfTI, NRRD and MetaImage) and checks a DICOM folder's files
against the series ITK read. ITK's and GDCM's warnings are silenced around the read; problems are
reported as one :class:`RadiomicsLabError` naming the file and saying what to do.
"""

import bz2
import os
import struct
import sys
import threading
import zlib
from contextlib import contextmanager
from math import prod
from pathlib import Path

import SimpleITK as sitk

from .errors import RadiomicsLabError

FORMATS = "NRRD, NIfTI, MetaImage, or a folder with one DICOM series"
CHUNK = 1 << 20  # bytes read at a time
INFLATE_LIMIT = 8 << 20  # most decompressed bytes held at a time (a 1 MB compressed mask can hold 1 GB of zeros)
#: Largest deviation of the slice positions of a DICOM series, as a fraction of the slice spacing, still
#: taken as evenly spaced (ITK flags far smaller deviations; a missing slice deviates by most of a spacing).
DICOM_SPACING_TOLERANCE = 0.1
AGAIN = "copy or export it again from its source"
#: Endings that mark a DICOM file even when its header is cut before the ``DICM`` preamble.
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
#: Modalities of DICOM files that may sit beside an image series without being slices of it (skipped).
NON_IMAGE_MODALITIES = ("RTSTRUCT", "SEG", "SR")


def read_image(path, what: str = "image") -> sitk.Image:
    """Read a scalar image from a file or a DICOM series folder; ``what`` names it in messages.

    The file is verified first (:func:`verify_file`); a damaged or cut-short file is an error, never an
    image partly filled with zeros.
    """
    path = Path(path)
    if not path.exists():
        raise RadiomicsLabError(f"Cannot read {what} '{path}': no such file or folder; check the path.")
    if not os.access(path, os.R_OK):
        raise RadiomicsLabError(f"Cannot read {what} '{path}': permission denied.")
    image = _read_dicom_folder(path, what) if path.is_dir() else _read_file(path, what)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise RadiomicsLabError(
            f"The {what} '{path}' has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "give a scalar (single-channel) image."
        )
    if image.GetDimension() not in (2, 3):
        raise RadiomicsLabError(f"The {what} '{path}' is {image.GetDimension()}D; give a 2D or 3D image.")
    return image


def _read_file(path: Path, what: str) -> sitk.Image:
    verify_file(path, what)
    try:
        with quiet_itk():
            return sitk.ReadImage(str(path))
    except RuntimeError:
        raise RadiomicsLabError(
            f"The {what} '{path}' is not an image RadiomicsLab can read; use {FORMATS}."
        ) from None


def _read_dicom_folder(path: Path, what: str) -> sitk.Image:
    with quiet_itk():
        found = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
        # An RTSTRUCT / SEG / SR exported beside its image series (the usual PACS export) is not an image series.
        series = [s for s in found if not _series_is_not_image(path, s)]
    if not series:
        raise RadiomicsLabError(
            f"The folder '{path}' given as {what} holds no DICOM series"
            f"{' of images (only segmentations or reports)' if found else ''}; use {FORMATS}.")
    if len(series) > 1:
        raise RadiomicsLabError(
            f"The folder '{path}' holds {len(series)} DICOM series ({', '.join(series)}); "
            "put each series in a folder of its own and give that folder."
        )
    with quiet_itk():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0])
    _check_dicom_files(path, what, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        with quiet_itk():
            image = reader.Execute()
    except RuntimeError as error:
        raise RadiomicsLabError(f"Cannot read the DICOM series in '{path}' given as {what}: {itk_reason(error)}; "
                                f"{AGAIN}.") from None
    if image.HasMetaDataKey("ITK_non_uniform_sampling_deviation") and image.GetDimension() == 3:
        deviation = _slice_deviation(files, image)  # ITK flags 1e-4 of the spacing; measure it
        if deviation > DICOM_SPACING_TOLERANCE * image.GetSpacing()[2]:
            raise RadiomicsLabError(
                f"The DICOM series in '{path}' given as {what} has missing or unevenly spaced slices (positions off by "
                f"up to {deviation:.3g} mm, slice spacing {image.GetSpacing()[2]:.3g} mm); give the complete series."
            )
    return image


def _slice_deviation(files, image: sitk.Image) -> float:
    """Largest distance (mm) of a slice from where the even spacing ITK assumed puts it."""
    import numpy as np

    normal = np.array(image.GetDirection()).reshape(3, 3)[:, 2]
    positions = []
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            with quiet_itk():
                reader.ReadImageInformation()
        except RuntimeError:
            return float("inf")
        positions.append(float(np.dot(reader.GetOrigin(), normal)))
    positions = np.array(positions)
    expected = positions[0] + np.arange(len(positions)) * (positions[-1] - positions[0]) / max(len(positions) - 1, 1)
    return float(np.max(np.abs(positions - expected)))


def _series_is_not_image(folder: Path, series_id: str) -> bool:
    """Whether GDCM's series ``series_id`` in ``folder`` is a segmentation or report (RTSTRUCT, SEG, SR), not images."""
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id)
    return bool(files) and dicom_modality(files[0]) in NON_IMAGE_MODALITIES


def dicom_modality(path) -> str:
    """The Modality of a DICOM file, upper case, from its header read up to (0008,0060) only (so a damaged or
    cut-short file still tells what it is); "" when it cannot be read."""
    try:
        import pydicom

        with open(path, "rb") as handle:
            header = pydicom.filereader.read_partial(handle, stop_when=lambda tag, vr, length: tag > 0x00080060)
        return str(header.get("Modality", "")).strip().upper()
    except Exception:  # noqa: BLE001 - unreadable: not a segmentation or report (the caller reports it)
        return ""


def _check_dicom_files(folder: Path, what: str, files) -> None:
    """Refuse a series folder holding a DICOM slice GDCM could not read (it leaves such a file out silently).

    An RTSTRUCT, SEG or SR file beside the slices (how PACS export a series with its segmentations and
    reports) is not a slice: it is skipped, not reported as damaged.
    """
    used = {os.path.realpath(f) for f in files}
    suffixes = {Path(f).suffix.lower() for f in files} & DICOM_SUFFIXES
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name.upper() == "DICOMDIR" or not entry.is_file():
            continue
        if os.path.realpath(entry.path) in used:
            continue
        if dicom_modality(entry.path) in NON_IMAGE_MODALITIES:
            continue
        if _has_dicom_preamble(entry.path) or Path(entry.name).suffix.lower() in suffixes:
            raise RadiomicsLabError(
                f"The DICOM file '{entry.path}' in the folder given as {what} is not a readable slice of its series "
                f"(cut short or damaged); {AGAIN}, or move it (and any non-image file) out of the folder."
            )


def _has_dicom_preamble(path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


# Verification of single files ----------------------------------------------------------------
class _Problem(Exception):
    """What is wrong with a file, in words that follow "The image 'x' ..."."""


def verify_file(path, what: str = "image") -> None:
    """Check a NIfTI, NRRD or MetaImage file against its header before ITK reads it.

    Compressed data (``.nii.gz``, NRRD ``encoding: gzip``, MetaImage ``CompressedData``) is read
    through to the end of its stream and checksum; the size of the (decompressed) data part must be
    what the header's dimensions and voxel type give: shorter is a cut-short file, longer a damaged
    file or a wrong header. Other formats and encodings (DICOM files, text NRRD, ...) are left to ITK.
    """
    path = Path(path)
    name = path.name.lower()
    try:
        if path.stat().st_size == 0:
            raise _Problem(f"is empty (0 bytes); {AGAIN}.")
        if name.endswith((".nii", ".nii.gz", ".hdr", ".hdr.gz")):
            _verify_nifti(path)
        elif name.endswith((".nrrd", ".nhdr")):
            _verify_nrrd(path)
        elif name.endswith((".mha", ".mhd")):
            _verify_metaimage(path)
    except _Problem as problem:
        raise RadiomicsLabError(f"The {what} '{path}' {problem}") from None
    except OSError as error:
        raise RadiomicsLabError(f"Cannot read {what} '{path}': {error.strerror or error}.") from None


def _cut_short(detail: str) -> _Problem:
    return _Problem(f"is cut short ({detail}), so it is not an image RadiomicsLab can read: the file is incomplete "
                    f"(an interrupted download or copy?); {AGAIN}.")


def _size_problem(found: int, expected: int, layout: str) -> _Problem:
    if found < expected:
        return _cut_short(f"{found} of the {expected} bytes of voxel data its header describes, {layout}")
    return _Problem(f"holds {found - expected} bytes more voxel data than its header describes ({expected} bytes, {layout}): "
                    f"the file is damaged or its header is wrong; {AGAIN}.")


def _inflate(handle, kind: str, keep: int = 0) -> tuple[bytes, int, bool]:
    """Decompress ``handle`` from its position to the end: (first ``keep`` bytes, decompressed length,
    whether the stream ended properly; False: the file is cut short).

    ``kind``: ``gzip`` (one or more members, zero padding allowed after the last), ``zlib`` or ``bzip2``.
    Only :data:`INFLATE_LIMIT` bytes of output are held at a time.
    """
    head, total, ended = bytearray(), 0, False
    new = {"gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), "zlib": lambda: zlib.decompressobj(32 + zlib.MAX_WBITS),
           "bzip2": bz2.BZ2Decompressor}[kind]
    stream = new()
    while chunk := handle.read(CHUNK):
        data = chunk
        while data:
            if ended:
                if kind != "gzip":
                    raise _Problem(f"has data after the end of its {kind} stream: the file is damaged; {AGAIN}.")
                if not data.strip(b"\0"):
                    break  # zero padding after the last gzip member
                if not data.startswith(b"\x1f\x8b"[: len(data)]):
                    raise _Problem(f"has data after the end of its gzip stream: the file is damaged; {AGAIN}.")
                stream, ended = new(), False  # another gzip member
            try:
                if kind == "bzip2":
                    out = stream.decompress(data, INFLATE_LIMIT)
                    data = b""
                    while not stream.eof and not stream.needs_input and len(out) == INFLATE_LIMIT:
                        total, head = total + len(out), _keep(head, out, keep)
                        out = stream.decompress(b"", INFLATE_LIMIT)
                else:
                    out = stream.decompress(data, INFLATE_LIMIT)
                    data = stream.unconsumed_tail
                    while not stream.eof and not data and len(out) == INFLATE_LIMIT:  # output still pending
                        total, head = total + len(out), _keep(head, out, keep)
                        out = stream.decompress(b"", INFLATE_LIMIT)
                        data = stream.unconsumed_tail
            except (zlib.error, OSError, EOFError) as error:
                raise _Problem(f"has damaged {kind} data ({error}); {AGAIN}.") from None
            total, head = total + len(out), _keep(head, out, keep)
            if stream.eof:
                ended, data = True, stream.unused_data
    return bytes(head), total, ended


def _stream_cut_short(kind: str, found: int, expected: int, layout: str) -> _Problem:
    if found >= expected:
        return _cut_short(f"its {kind} stream ends before its closing checksum")
    return _cut_short(f"its {kind} stream ends early, after {found} of the {expected} bytes of voxel data its header "
                      f"describes, {layout}")


def _keep(head: bytearray, out: bytes, keep: int) -> bytearray:
    if len(head) < keep:
        head += out[: keep - len(head)]
    return head


def _compressed(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


# NIfTI -------------------------------------------------------------------------------------
def _verify_nifti(path: Path) -> None:
    complete = True
    if _compressed(path):
        with open(path, "rb") as handle:
            head, total, complete = _inflate(handle, "gzip", keep=540)
    else:
        with open(path, "rb") as handle:
            head = handle.read(540)
        total = path.stat().st_size
    header = _nifti_header(head)
    if header is None:
        if not complete:
            raise _cut_short(f"its gzip stream ends early, after {total} bytes")
        return  # not a NIfTI/Analyze header we know: ITK decides
    offset, data_bytes, single, layout = header
    if not complete:
        raise _stream_cut_short("gzip", max(total - offset, 0), data_bytes, layout)
    if single:
        if total < offset:
            raise _cut_short(f"{total} bytes, but its voxel data starts at byte {offset}")
        if total - offset != data_bytes:
            raise _size_problem(total - offset, data_bytes, layout)
        return
    for data_path in (path.with_name(_stem(path.name) + ".img"), path.with_name(_stem(path.name) + ".img.gz")):
        if data_path.is_file():
            with _in_data_file(data_path, path):
                if _compressed(data_path):
                    with open(data_path, "rb") as handle:
                        _, found, complete = _inflate(handle, "gzip")
                    found -= offset
                    if not complete:
                        raise _stream_cut_short("gzip", found, data_bytes, layout)
                else:
                    found = data_path.stat().st_size - offset
                if found != data_bytes:
                    raise _size_problem(found, data_bytes, layout)
            return


def _stem(name: str) -> str:
    for suffix in (".hdr.gz", ".hdr", ".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _nifti_header(head: bytes):
    """(data offset, data bytes, single file?, layout words) from a NIfTI-1/-2 or Analyze header, or None."""
    if len(head) < 4:
        raise _cut_short(f"its header has {len(head)} of its 348 bytes")
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size in (348, 540):
            break
    else:
        return None
    if len(head) < size:
        raise _cut_short(f"its header has {len(head)} of its {size} bytes")
    if size == 348:
        dims = struct.unpack(order + "8h", head[40:56])
        bitpix = struct.unpack(order + "h", head[72:74])[0]
        offset = struct.unpack(order + "f", head[108:112])[0]
        single = head[344:347] == b"n+1"
    else:
        bitpix = struct.unpack(order + "h", head[14:16])[0]
        dims = struct.unpack(order + "8q", head[16:80])
        offset = struct.unpack(order + "q", head[168:176])[0]
        single = head[4:7] == b"n+2"
    ndim = dims[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dims[1 : ndim + 1]) or bitpix <= 0 or bitpix % 8 or offset < 0:
        return None
    offset = int(offset)
    if single and offset < size:
        return None
    shape = " x ".join(str(d) for d in dims[1 : ndim + 1])
    return offset, prod(dims[1 : ndim + 1]) * bitpix // 8, single, f"{shape} voxels of {bitpix} bits"


# NRRD ---------------------------------------------------------------------------------------
NRRD_TYPES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                     "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                     "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                     "double"), 8),
}
NRRD_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}


def _verify_nrrd(path: Path) -> None:
    fields, data_start = _nrrd_header(path)
    if fields is None:
        return
    data_file = fields.get("data file", fields.get("datafile"))
    if data_start is None and not data_file:
        raise _cut_short("its header ends before the blank line that precedes the voxel data"
                         if path.suffix.lower() == ".nrrd" else "its header ends before 'data file:'")
    try:
        sizes = [int(s) for s in fields["sizes"].split()]
        item = NRRD_TYPES[fields["type"].lower()]
        encoding = NRRD_ENCODINGS[fields.get("encoding", "").lower()]
        skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
        line_skip = int(fields.get("line skip", fields.get("lineskip", "0")))
    except (KeyError, ValueError):
        return  # a header ITK's reader will judge (text or hex encoding, block type, ...)
    if line_skip or any(s < 1 for s in sizes) or (data_file and (data_file.startswith("LIST") or len(data_file.split()) > 1)):
        return
    expected = prod(sizes) * item
    layout = f"{' x '.join(map(str, sizes))} voxels of {fields['type']}"
    if data_file:
        data_path = Path(data_file) if Path(data_file).is_absolute() else path.parent / data_file
        if not data_path.is_file():
            raise _Problem(f"names a data file '{data_file}' that does not exist; put it beside the header or fix 'data file:'.")
        start, source = 0, data_path
    else:
        start, source = data_start, path
    with _in_data_file(source, path):
        if encoding == "raw":
            found = source.stat().st_size - start
            if skip == -1:  # the data are the last bytes of the file
                if found < expected:
                    raise _size_problem(found, expected, layout)
                return
        else:
            with open(source, "rb") as handle:
                handle.seek(start)
                _, found, complete = _inflate(handle, encoding)
            if not complete:
                raise _stream_cut_short(encoding, found - max(skip, 0), expected, layout)
        found -= max(skip, 0)
        if found != expected:
            raise _size_problem(found, expected, layout)


@contextmanager
def _in_data_file(source: Path, path: Path):
    """Problems of a detached data file say which file they are in."""
    try:
        yield
    except _Problem as problem:
        if source == path:
            raise
        raise _Problem(f"has its voxel data in '{source}', which {problem}") from None


def _nrrd_header(path: Path):
    """({field: value}, offset of the data after the blank line or None) of a NRRD file; (None, None) if not NRRD."""
    fields, offset, buffer = {}, 0, b""
    with open(path, "rb") as handle:
        first = True
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                more = handle.read(65536)
                if not more:
                    if first:  # one line only: a cut NRRD magic line is still NRRD
                        return ({} if buffer and (buffer.startswith(b"NRRD") or b"NRRD".startswith(buffer)) else None), None
                    if buffer.strip():
                        _nrrd_field(buffer, fields)
                    return fields, None
                buffer += more
                continue
            line, buffer = buffer[:newline], buffer[newline + 1 :]
            offset += newline + 1
            text = line.rstrip(b"\r")
            if first:
                if not text.startswith(b"NRRD"):
                    return None, None
                fields["magic"] = text.decode("latin-1")
                first = False
                continue
            if not text:
                return fields, offset
            _nrrd_field(text, fields)


def _nrrd_field(line: bytes, fields: dict) -> None:
    text = line.decode("latin-1").strip()
    if text.startswith("#") or ":=" in text or ": " not in text:
        return
    key, _, value = text.partition(": ")
    fields[key.strip().lower()] = value.strip()


# MetaImage -----------------------------------------------------------------------------------
META_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_FLOAT": 4, "MET_DOUBLE": 8, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8}


def _verify_metaimage(path: Path) -> None:
    fields, data_start, text = {}, None, True
    with open(path, "rb") as handle:
        for _ in range(200):  # header lines
            line = handle.readline(65536)
            if not line:
                break
            text = text and b"\0" not in line
            key, sep, value = line.decode("latin-1").partition("=")
            if not sep:
                continue
            fields[key.strip().lower()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                data_start = handle.tell()
                break
    if "elementdatafile" not in fields:
        if text:  # a MetaImage header, cut before its last line
            raise _cut_short("its header ends before 'ElementDataFile'")
        return
    try:
        sizes = [int(s) for s in fields["dimsize"].split()]
        item = META_TYPES[fields["elementtype"].upper()] * int(fields.get("elementnumberofchannels", "1"))
    except (KeyError, ValueError):
        return
    data_file = fields["elementdatafile"]
    if (fields.get("binarydata", "true").lower() != "true" or "headersize" in fields or data_file.upper() == "LIST"
            or "%" in data_file or len(data_file.split()) > 1 or any(s < 1 for s in sizes)):
        return
    expected = prod(sizes) * item
    layout = f"{' x '.join(map(str, sizes))} voxels of {fields['elementtype']}"
    if data_file.upper() == "LOCAL":
        source, start = path, data_start
    else:
        source = Path(data_file) if Path(data_file).is_absolute() else path.parent / data_file
        if not source.is_file():
            raise _Problem(f"names a data file '{data_file}' that does not exist; put it beside the header or fix "
                           "'ElementDataFile'.")
        start = 0
    with _in_data_file(source, path):
        if fields.get("compresseddata", "false").lower() == "true":
            with open(source, "rb") as handle:
                handle.seek(start)
                _, found, complete = _inflate(handle, "zlib")
            if not complete:
                raise _stream_cut_short("zlib", found, expected, layout)
        else:
            found = source.stat().st_size - start
        if found != expected:
            raise _size_problem(found, expected, layout)


# ITK messages --------------------------------------------------------------------------------
_quiet_lock = threading.Lock()
_quiet_depth = [0, None, None]  # nesting depth, saved stderr descriptor, previous warning display


@contextmanager
def quiet_itk():
    """Silence ITK's and GDCM's warnings (and anything C++ prints on standard error) inside the block.

    SimpleITK's global warning display is switched off and file descriptor 2 points to the null device,
    so MetaIO's and GDCM's direct prints vanish too; problems are reported by the caller. Nesting and
    threads are safe: the first entry redirects, the last exit restores.
    """
    with _quiet_lock:
        if _quiet_depth[0] == 0:
            _quiet_depth[2] = sitk.ProcessObject.GetGlobalWarningDisplay()
            sitk.ProcessObject.SetGlobalWarningDisplay(False)
            try:
                sys.stderr.flush()
                saved = os.dup(2)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.close(null)
                _quiet_depth[1] = saved
            except (OSError, ValueError, AttributeError):
                _quiet_depth[1] = None
        _quiet_depth[0] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth[0] -= 1
            if _quiet_depth[0] == 0:
                if _quiet_depth[1] is not None:
                    os.dup2(_quiet_depth[1], 2)
                    os.close(_quiet_depth[1])
                    _quiet_depth[1] = None
                sitk.ProcessObject.SetGlobalWarningDisplay(_quiet_depth[2])


def itk_reason(error) -> str:
    """The reason in an ITK/SimpleITK exception text, on one line, without file names of ITK's sources."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for marker in ("ITK ERROR:", "sitk::ERROR:"):
        for i, line in enumerate(lines):
            if marker in line:
                text = " ".join([line.split(marker, 1)[1]] + lines[i + 1 :]).strip()
                if marker == "ITK ERROR:" and "): " in text:  # "LabelMap(0x55...): Label 0 is ..."
                    text = text.split("): ", 1)[1]
                return text.rstrip(".")
    meaningful = [line for line in lines if not line.startswith(("Exception thrown in SimpleITK", "/"))]
    return (meaningful[-1] if meaningful else lines[-1] if lines else str(error)).rstrip(".")
