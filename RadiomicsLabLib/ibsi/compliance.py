"""IBSI compliance run: every reference value of IBSI chapter 1 and chapter 2, one report.

Data sets (``dataset`` column of the report):
``digital_phantom``, ``config_A`` ... ``config_E`` (IBSI 1 CT phantom), ``ibsi2_phase1`` (filter
response maps on the IBSI 2 digital phantoms, pass when every voxel is within 1 % of the
reference map's range), ``ibsi2_phase2`` (statistics of filtered CT phantom images).
"""

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..data import data_dir
from ..fileio import atomic_output, write_text_atomic
from .reference import CHAPTER1_DATASETS, chapter1_reference, chapter2_phase2_reference, ibsi1_images, ibsi_match

REPORT_COLUMNS = ("dataset", "tag", "value", "reference", "tolerance", "passed")
DATASETS = (*CHAPTER1_DATASETS, "ibsi2_phase1", "ibsi2_phase2")


@dataclass(frozen=True)
class ReportRow:
    dataset: str
    tag: str
    value: float
    reference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return ibsi_match(self.value, self.reference, self.tolerance)


def chapter1_rows(dataset: str) -> list[ReportRow]:
    """Compute one IBSI 1 data set with its configuration and compare every reference value."""
    from .configurations import CONFIGURATIONS, DIGITAL_PHANTOM
    from .engine import compute_features

    if dataset == "digital_phantom":
        image, mask = ibsi1_images("digital_phantom")
        settings = DIGITAL_PHANTOM
    else:
        image, mask = ibsi1_images("ct_phantom")
        image = sitk.Round(sitk.Cast(image, sitk.sitkFloat32))  # IBSI's advice for the phantom's NIfTI copy
        settings = CONFIGURATIONS[dataset.removeprefix("config_")]
    result = compute_features(image, mask, settings)
    computed = {**result.diagnostics, **result.values}
    return [ReportRow(dataset, r.tag, float(computed.get(r.tag, math.nan)), r.reference, r.tolerance)
            for r in chapter1_reference(dataset)]


def phase1_rows(output_dir: Path | None = None) -> list[ReportRow]:
    """IBSI 2 phase 1: each response map against its reference map; maps written to ``output_dir``."""
    from .filters import PHASE1_CONFIGURATIONS, phase1_response_map, response_map_passes

    folder = data_dir() / "ibsi2" / "reference_response_maps"
    rows = []
    for map_id in sorted(PHASE1_CONFIGURATIONS, key=_natural_key):
        reference = sitk.ReadImage(str(folder / f"{map_id}-ValidCRM.nii.gz"))
        computed = phase1_response_map(map_id)
        _, max_difference, tolerance = response_map_passes(sitk.GetArrayFromImage(computed), sitk.GetArrayFromImage(reference))
        rows.append(ReportRow("ibsi2_phase1", map_id, float(max_difference), 0.0, float(tolerance)))
        if output_dir is not None:
            with atomic_output(Path(output_dir) / f"{map_id}.nii.gz") as tmp:
                sitk.WriteImage(computed, str(tmp.with_suffix(".nii.gz")))
                tmp.with_suffix(".nii.gz").replace(tmp)
    return rows


def phase2_rows() -> list[ReportRow]:
    """IBSI 2 phase 2: intensity statistics of the filtered CT phantom for every filter configuration."""
    from .filters import phase2_features

    references = chapter2_phase2_reference()
    computed = {}
    for filter_id in sorted({r.family for r in references}, key=_natural_key):
        for tag, value in phase2_features(filter_id).items():
            computed[f"{filter_id}/{tag}"] = value
    return [ReportRow("ibsi2_phase2", r.tag, float(computed.get(r.tag, math.nan)), r.reference, r.tolerance)
            for r in references]


def run_compliance(output_dir, datasets=DATASETS, progress=None) -> list[ReportRow]:
    """Run the chosen data sets, write ``ibsi_report.csv`` and ``ibsi_report.md`` in ``output_dir``."""
    output_dir = Path(output_dir)
    rows, timings = [], {}
    for dataset in datasets:
        started = time.perf_counter()
        if dataset in CHAPTER1_DATASETS:
            rows += chapter1_rows(dataset)
        elif dataset == "ibsi2_phase1":
            rows += phase1_rows(output_dir / "ibsi2_phase1")
        elif dataset == "ibsi2_phase2":
            rows += phase2_rows()
        else:
            raise ValueError(f"Unknown IBSI data set '{dataset}'; choose from {', '.join(DATASETS)}.")
        timings[dataset] = time.perf_counter() - started
        if progress:
            progress(dataset, [r for r in rows if r.dataset == dataset], timings[dataset])
    write_text_atomic(output_dir / "ibsi_report.csv", report_csv(rows))
    write_text_atomic(output_dir / "ibsi_report.md", report_markdown(rows, timings))
    return rows


def summary(rows) -> dict:
    """dataset -> (passed, total)."""
    counts = {}
    for row in rows:
        passed, total = counts.get(row.dataset, (0, 0))
        counts[row.dataset] = (passed + row.passed, total + 1)
    return counts


def report_csv(rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for r in rows:
        writer.writerow((r.dataset, r.tag, repr(r.value), repr(r.reference), repr(r.tolerance), r.passed))
    return buffer.getvalue()


def report_markdown(rows, timings: dict | None = None) -> str:
    """A readable report: pass counts per data set, then every failing value."""
    lines = ["# IBSI compliance report", "", "| data set | passed | total | pass rate | time (s) |", "|---|---:|---:|---:|---:|"]
    for dataset, (passed, total) in summary(rows).items():
        seconds = f"{timings[dataset]:.1f}" if timings and dataset in timings else ""
        lines.append(f"| {dataset} | {passed} | {total} | {100 * passed / total:.1f} % | {seconds} |")
    failing = [r for r in rows if not r.passed]
    lines += ["", f"All {len(rows)} reference values pass." if not failing else f"## {len(failing)} failing values", ""]
    if failing:
        lines += ["| data set | tag | value | reference | tolerance |", "|---|---|---:|---:|---:|"]
        lines += [f"| {r.dataset} | {r.tag} | {r.value:.6g} | {r.reference:.6g} | {r.tolerance:.3g} |" for r in failing]
    return "\n".join(lines) + "\n"


def _natural_key(identifier: str):
    return [int(part) if part.isdigit() else part for part in identifier.replace(".", "_").split("_")]

