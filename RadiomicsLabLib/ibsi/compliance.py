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
from ..errors import RadiomicsLabError
from ..fileio import write_image_atomic, write_text_atomic
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


def ct_phantom() -> tuple[sitk.Image, sitk.Image]:
    """The IBSI CT phantom, converted to float and rounded to integers as IBSI advises for its NIfTI copy."""
    image, mask = ibsi1_images("ct_phantom")
    return sitk.Round(sitk.Cast(image, sitk.sitkFloat32)), mask


def chapter1_rows(dataset: str) -> list[ReportRow]:
    """Compute one IBSI 1 data set with its configuration and compare every reference value."""
    from .configurations import CONFIGURATIONS, DIGITAL_PHANTOM
    from .engine import compute_features

    if dataset == "digital_phantom":
        image, mask = ibsi1_images("digital_phantom")
        settings = DIGITAL_PHANTOM
    else:
        image, mask = ct_phantom()
        settings = CONFIGURATIONS[dataset.removeprefix("config_")]
    result = compute_features(image, mask, settings)
    computed = {**result.diagnostics, **result.values}
    return [ReportRow(dataset, r.tag, float(computed.get(r.tag, math.nan)), r.reference, r.tolerance)
            for r in chapter1_reference(dataset)]


def phase1_response_map(map_id: str) -> sitk.Image:
    """The response map of one IBSI 2 phase 1 configuration, on its digital phantom's grid."""
    from .filters import PHASE1_CONFIGURATIONS, apply_filter

    case = PHASE1_CONFIGURATIONS[map_id]
    phantom = sitk.ReadImage(str(data_dir() / "ibsi2" / "digital_phantom" / case["phantom"] / "image.nii.gz"))
    array = sitk.GetArrayFromImage(phantom).astype("float64")
    response = sitk.GetImageFromArray(apply_filter(array, phantom.GetSpacing()[::-1], case["config"]))
    response.CopyInformation(phantom)
    return response


def phase1_rows(output_dir: Path | None = None) -> list[ReportRow]:
    """IBSI 2 phase 1: each response map against its reference map; maps written to ``output_dir``.

    A row's value is the largest voxel difference, its reference 0 and its tolerance 1 % of the
    reference map's range, so the IBSI rule reads as for every other row.
    """
    from .filters import PHASE1_CONFIGURATIONS, response_map_passes

    folder = data_dir() / "ibsi2" / "reference_response_maps"
    rows = []
    for map_id in sorted(PHASE1_CONFIGURATIONS, key=_natural_key):
        reference = sitk.ReadImage(str(folder / f"{map_id}-ValidCRM.nii.gz"))
        computed = phase1_response_map(map_id)
        _, max_difference, tolerance = response_map_passes(sitk.GetArrayFromImage(computed), sitk.GetArrayFromImage(reference))
        rows.append(ReportRow("ibsi2_phase1", map_id, float(max_difference), 0.0, float(tolerance)))
        if output_dir is not None:
            write_image_atomic(computed, Path(output_dir) / f"{map_id}.nii.gz")
    return rows


def phase2_rows() -> list[ReportRow]:
    """IBSI 2 phase 2: intensity statistics of the CT phantom filtered by each filter id (``4.B``).

    N.A uses preset ``ibsi2-phase2-A`` (2D, no interpolation), N.B ``ibsi2-phase2-B`` (1 mm
    tricubic); each is preprocessed once and every filter of its column runs on that Roi.
    """
    from .configurations import preset_settings
    from .engine import features_of_roi
    from .filters import PHASE2_FILTERS
    from .preprocessing import prepare_roi

    references = chapter2_phase2_reference()
    image, mask = ct_phantom()
    computed = {}
    for column in ("A", "B"):
        settings = preset_settings(f"ibsi2-phase2-{column}")
        roi, _ = prepare_roi(image, mask, settings)
        for filter_id in sorted((f for f in PHASE2_FILTERS if f.endswith(f".{column}")), key=_natural_key):
            values = features_of_roi(roi, settings.replaced(image_filter=PHASE2_FILTERS[filter_id]), ("statistics",)).values
            computed.update({f"{filter_id}/{tag}": value for tag, value in values.items()})
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


def reference_folder(datasets) -> Path:
    """The reference data folder, with the files the chosen IBSI data sets read checked (present, not cut short)."""
    from ..data import data_dir
    from ..imageio import verify_file
    from .reference import CHAPTER1_DATASETS

    folder = data_dir()
    fix = ("set RADIOMICSLAB_DATA to the reference data folder (the one holding ibsi1/ and ibsi2/, "
           "see the README)")
    if not folder.exists():
        raise RadiomicsLabError(f"The reference data folder '{folder}' does not exist; {fix}.")
    if not folder.is_dir():
        raise RadiomicsLabError(f"The reference data folder '{folder}' is a file, not a folder; {fix}.")
    files = []
    for dataset in datasets:
        if dataset in CHAPTER1_DATASETS:
            phantom = "digital_phantom" if dataset == "digital_phantom" else "ct_phantom"
            files += [f"ibsi1/{phantom}/image.nii.gz", f"ibsi1/{phantom}/mask.nii.gz", f"ibsi1/reference_values_{dataset}.csv"]
        elif dataset == "ibsi2_phase1":
            from .filters import PHASE1_CONFIGURATIONS

            files += [f"ibsi2/digital_phantom/{c['phantom']}/image.nii.gz" for c in PHASE1_CONFIGURATIONS.values()]
            files += [f"ibsi2/reference_response_maps/{map_id}-ValidCRM.nii.gz" for map_id in PHASE1_CONFIGURATIONS]
        else:
            files += ["ibsi1/ct_phantom/image.nii.gz", "ibsi1/ct_phantom/mask.nii.gz", "ibsi2/reference_values_phase2.csv"]
    files = list(dict.fromkeys(files))
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more reference file(s))" if len(missing) > 1 else ""
        raise RadiomicsLabError(f"The reference data folder '{folder}' has no {missing[0]}{more}; {fix}.")
    for name in files:
        if name.endswith(".nii.gz"):
            verify_file(folder / name, "IBSI reference image")
    return folder
