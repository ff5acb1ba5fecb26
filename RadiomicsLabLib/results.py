"""Writing results: long or wide CSV, and the provenance JSON sidecar, each written atomically."""

import csv
import io
import json
from pathlib import Path

from .extraction import COLUMNS
from .fileio import write_text_atomic


def format_value(value: float) -> str:
    """Shortest text that reads back as the identical double (``repr``)."""
    return repr(float(value))


def rows_csv_text(rows: list, columns=None) -> str:
    """CSV of dict rows under ``columns`` (default: every key, in first-seen order); a missing key is an empty
    cell, a float its exact shortest text (:func:`format_value`)."""
    columns = list(columns) if columns is not None else list(dict.fromkeys(c for row in rows for c in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_value(row[c]) if isinstance(row.get(c), float) else row.get(c, "") for c in columns])
    return buffer.getvalue()


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
