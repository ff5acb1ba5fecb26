"""The files of a feature extraction: long or wide CSV and its provenance JSON sidecar, each written atomically.

One writer, :func:`write_results`, for every front end: ``radiomicslab extract -o features.csv``, and
:func:`save_extraction_results` (``features.csv`` + ``features.provenance.json`` in a folder), which
:meth:`RadiomicsLabLib.mrml.ExtractionLogic.save_results` (the desktop module's and the web app's "save results")
calls with a feature table's values and provenance, so the same extraction gives the same files byte for byte.
"""

import csv
import io
import json
from pathlib import Path

from .extraction import COLUMNS
from .fileio import write_text_atomic

#: The file names :func:`save_extraction_results` writes in its folder.
FEATURES_FILE = "features.csv"
PROVENANCE_FILE = "features.provenance.json"


def format_value(value: float) -> str:
    """Shortest text that reads back as the identical double (``repr``)."""
    return repr(float(value))


def csv_text(header, rows) -> str:
    """CSV text (``\\n`` line ends) of a header and rows of cells, as Python's csv module writes them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def rows_csv_text(rows: list, columns=None) -> str:
    """CSV of dict rows under ``columns`` (default: every key, in first-seen order); a missing key is an empty
    cell, a float its exact shortest text (:func:`format_value`)."""
    columns = list(columns) if columns is not None else list(dict.fromkeys(c for row in rows for c in row))
    return csv_text(columns, ([format_value(row[c]) if isinstance(row.get(c), float) else row.get(c, "")
                               for c in columns] for row in rows))


def to_csv_text(values, wide: bool = False) -> str:
    """Long format: one row per segment and feature (:data:`COLUMNS`); wide: one row per segment."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not wide:
        writer.writerow(COLUMNS)
        for v in values:
            writer.writerow((*v.row()[:-1], format_value(v.value)))
        return buffer.getvalue()
    features = list(dict.fromkeys(v.feature for v in values))
    by_segment = {}
    for v in values:
        by_segment.setdefault(v.segment, {})[v.feature] = format_value(v.value)
    writer.writerow(["segment", *features])
    for segment, row in by_segment.items():
        writer.writerow([segment, *(row.get(f, "") for f in features)])
    return buffer.getvalue()


def provenance_path(csv_path) -> Path:
    """``features.csv`` -> ``features.provenance.json``."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + ".provenance.json")


def write_results(values, provenance: dict, csv_path, wide: bool = False) -> tuple[Path, Path]:
    """Write the CSV and its provenance sidecar; returns both paths."""
    json_path = provenance_path(csv_path)
    write_text_atomic(json_path, json.dumps(provenance, indent=2, default=str) + "\n")
    write_text_atomic(csv_path, to_csv_text(values, wide))
    return Path(csv_path), json_path


def save_extraction_results(values, provenance: dict, folder, wide: bool = False, inputs=()) -> dict:
    """Write ``features.csv`` (long, or wide) and ``features.provenance.json`` into ``folder`` with
    :func:`write_results` (what ``radiomicslab extract -o FOLDER/features.csv`` writes); returns file name -> path.

    ``folder`` and both files are checked first (writable, none of them one of ``inputs``: (role, path) pairs)."""
    from .fileio import check_output, check_outputs

    inputs = list(inputs)
    folder = check_output(Path(folder), inputs, "folder")
    check_outputs([folder / FEATURES_FILE, folder / PROVENANCE_FILE], inputs)
    csv_path, json_path = write_results(values, provenance, folder / FEATURES_FILE, wide)
    return {FEATURES_FILE: csv_path, PROVENANCE_FILE: json_path}


def file_inputs(image, mask) -> dict:
    """The provenance's ``inputs`` of an image and a mask read from files: each one's path and SHA-256."""
    from .provenance import file_sha256

    def describe(path):
        path = Path(path)
        return {"path": str(path.resolve()), "sha256": file_sha256(path) if path.is_file() else None}

    return {"image_file": describe(image), "mask_file": describe(mask)}
