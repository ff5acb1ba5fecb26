"""Delta-radiomics: feature change of the same lesions across imaging timepoints.

A patient's study is a list of :class:`Timepoint` records (label, date, image, lesion mask), the
first one being the baseline. :func:`run_delta` checks them (date order, duplicates, missing
dates, masks), optionally registers every follow-up onto the baseline
(:mod:`RadiomicsLabLib.registration`: rigid, affine or B-spline), carries the baseline mask over to
follow-ups that have none (*propagation*), extracts the features of every lesion at every
timepoint (:func:`RadiomicsLabLib.extraction.extract`) and computes, per lesion and feature, the
change from a reference timepoint (:func:`change`):

    delta_abs     = v - r
    delta_rel     = 100 (v - r) / r                 [%]      only for r > 0
    delta_per_day = (v - r) / (t - t_r)             [1/day]  only for t != t_r
    log_ratio     = ln(v / r)                                only for v > 0 and r > 0

with ``v`` the value at the timepoint, ``r`` the value at the reference timepoint (the baseline,
any other timepoint, or the previous one) and ``t`` dates in days. Rule for zero and negative
references: relative change and log ratio are NaN, with the reason in the row's ``note``
(``r = 0`` has no relative change; for ``r < 0`` the sign of a relative change is ambiguous, e.g.
for skewness or a mean in HU of fat, so use ``delta_abs``). Any NaN input gives NaN outputs with
the reason, and so does a lesion that has no voxels at a timepoint.

Registration conventions are ITK's (see :mod:`RadiomicsLabLib.registration`): the transform ``T``
of a follow-up maps baseline points (LPS, mm) to follow-up points, so ``resample(followup,
baseline, T)`` puts the follow-up on the baseline grid (voxel-wise :func:`difference_map`), and
the baseline mask reaches the follow-up grid through ``T``'s inverse (:func:`propagate_mask`).
A registration that does not converge is reported, and nothing computed from it (propagated mask,
difference map) is kept.

Also here: dates from text (ISO ``YYYY-MM-DD``, DICOM ``YYYYMMDD``) and from DICOM StudyDate /
AcquisitionDate; an optional filter to features found reproducible in an ICC table (columns
``feature, icc, ci_low, ci_high``, as written by the multi-observer workflow); habitat fractions
per timepoint from habitat label maps; cohorts (one study per patient); CSV and PNG outputs.

Cohorts on the batch layer (:mod:`RadiomicsLabLib.batch`, ``radiomicslab delta --cohort``): the cohort
file is checked first, every problem with its row (:func:`cohort_problems`: dates, labels, order,
the reference, the lesions); then one task per patient (:func:`delta_task`, :func:`delta_case`: all
its timepoints, registrations, extractions and difference maps, written by the task) and, once,
the cohort's outputs from the finished patients (:func:`cohort_results`: delta.csv and the plots,
the same bytes as :func:`run_cohort` in one process on the same patients).
"""

import csv
import datetime
import io
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import Cancelled, RadiomicsLabError
from .fileio import atomic_output, write_text_atomic
from .results import format_value
from .validation import check_label, check_mask_is_label_map, labels_present, match_mask_to_image, segment_name

#: DICOM tags holding a timepoint's date, in the order they are tried (SimpleITK metadata keys).
DICOM_DATE_TAGS = (("0008|0020", "StudyDate"), ("0008|0022", "AcquisitionDate"))
#: Columns of the delta table (CSV and MRML table alike).
DELTA_COLUMNS = ("patient", "lesion", "feature", "timepoint", "date", "days", "value", "reference",
                 "reference_value", "delta_abs", "delta_rel", "delta_per_day", "log_ratio", "note")
#: Columns of the ICC table accepted by :func:`read_icc_table` (extra columns are ignored).
ICC_TABLE_COLUMNS = ("feature", "icc", "ci_low", "ci_high")
#: Columns of the habitat fraction table.
HABITAT_COLUMNS = ("patient", "timepoint", "date", "days", "habitat", "voxels", "volume_mm3", "fraction")
#: Default plot features: the first present of each group (volume, mean, contrast, entropy; pyradiomics names, IBSI tags).
PLOT_FEATURE_PREFERENCE = (("original_shape_VoxelVolume", "original_shape_MeshVolume", "morph_volume", "morph_vol_approx"),
                           ("original_firstorder_Mean", "stat_mean"),
                           ("original_glcm_Contrast", "cm_contrast_3D_avg", "cm_contrast_3D_comb"),
                           ("original_firstorder_Entropy", "ih_entropy"))
REFERENCES = ("baseline", "previous")


class DeltaCancelled(Cancelled):
    """The user cancelled a running delta computation; nothing was written."""


# Timepoints and dates ---------------------------------------------------------------------------
@dataclass
class Timepoint:
    """One imaging timepoint of a patient.

    ``label`` names it (``baseline``, ``week 6``); ``date`` is a :class:`datetime.date` (None until
    known); ``mask`` is a label map on the image's grid (0 = background, one value per lesion), or
    None for a follow-up whose mask is to be propagated from the baseline; ``source`` says where
    image, mask and date came from (paths, ``"propagated"``, the DICOM tag), for the provenance.
    """

    label: str
    date: datetime.date | None
    image: sitk.Image
    mask: sitk.Image | None = None
    source: dict = field(default_factory=dict)

    @property
    def iso_date(self) -> str:
        return self.date.isoformat() if self.date else ""


def parse_date(text, what: str = "date") -> datetime.date:
    """A date from ``YYYY-MM-DD`` (ISO 8601) or ``YYYYMMDD`` (DICOM DA) text."""
    if isinstance(text, datetime.datetime):
        return text.date()
    if isinstance(text, datetime.date):
        return text
    value = str(text).strip()
    try:
        if re.fullmatch(r"\d{8}", value):
            return datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.date.fromisoformat(value)
    except ValueError:
        pass
    raise RadiomicsLabError(f"The {what} '{value}' is not a date; write it as YYYY-MM-DD (e.g. 2021-03-04) or YYYYMMDD.")


def date_from_metadata(image) -> tuple[datetime.date | None, str]:
    """(date, tag name) from DICOM metadata (of a ``sitk.Image`` or ``sitk.ImageFileReader``):
    StudyDate (0008,0020), else AcquisitionDate (0008,0022); (None, "") when neither is a valid date."""
    for key, name in DICOM_DATE_TAGS:
        if image.HasMetaDataKey(key) and image.GetMetaData(key).strip():
            try:
                return parse_date(image.GetMetaData(key), f"DICOM {name}"), name
            except RadiomicsLabError:
                continue
    return None, ""


def date_from_dicom(path) -> tuple[datetime.date | None, str]:
    """(date, tag name) of a DICOM file, or of the first file of the one series in a folder; (None, "") otherwise."""
    path = Path(path)
    if path.is_dir():
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0]) if len(series) == 1 else ()
        if not files:
            return None, ""
        path = Path(files[0])
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None, ""
    return date_from_metadata(reader)


def timepoint_from_files(date, image_path, mask_path=None, label: str = "", rois=None) -> Timepoint:
    """Read a timepoint from files; an empty ``date`` is taken from the image's DICOM StudyDate / AcquisitionDate.

    ``mask_path`` may be None (a follow-up whose mask is to be propagated), or a DICOM RTSTRUCT / SEG with
    ``image_path`` the folder of the DICOM series it was drawn on: its ROIs ``rois`` (default all; labels 1, 2, ...
    in that order) become the lesions, named by the ROIs (``source["segments"]``). The date stays None
    when it is neither given nor in the image (:func:`check_timepoints` then says so).
    """
    from .cohort import is_dicom_file
    from .dicom import read_mask
    from .imageio import read_image

    given = parse_date(date) if date not in (None, "") else None
    image = read_image(image_path, "image")
    mask, segments = (None, {}) if not mask_path else read_mask(mask_path, image_path, "mask", list(rois or []) or None)
    source = {"image": str(image_path), "mask": str(mask_path) if mask_path else ""}
    if mask_path and is_dicom_file(mask_path):
        source["segments"] = segments  # the ROI names
    if given is not None:
        when, source["date"] = given, "given"
    else:
        when, tag = date_from_dicom(image_path)
        if when is None:
            when, tag = date_from_metadata(image)
        source["date"] = f"DICOM {tag}" if when else ""
    return Timepoint(label or "", when, image, mask, source)


def default_labels(count: int) -> list[str]:
    """``baseline``, ``T1``, ``T2``, ...: labels for timepoints given without one."""
    return ["baseline"] + [f"T{i}" for i in range(1, count)]


def check_timepoints(timepoints, propagate: bool = False) -> list[Timepoint]:
    """Refuse what makes a longitudinal study meaningless; return the timepoints with masks checked.

    At least two timepoints; every one labelled (labels unique) and dated; dates distinct and
    increasing (baseline first); the baseline with a mask; each follow-up with a mask unless
    ``propagate``; masks label maps on their image's grid.
    """
    timepoints = check_dates(timepoints)
    checked = []
    for i, tp in enumerate(timepoints):
        if tp.mask is None:
            if i == 0:
                raise RadiomicsLabError(f"The baseline timepoint '{tp.label}' has no mask; give the baseline's lesion mask.")
            if not propagate:
                raise RadiomicsLabError(
                    f"The follow-up timepoint '{tp.label}' has no mask and propagation is off; give its mask "
                    "(DATE:IMAGE:MASK), or turn propagation on (--propagate with --register) to carry the "
                    "baseline mask over by registration.")
            checked.append(tp)
            continue
        mask = match_mask_to_image(tp.image, check_mask_is_label_map(tp.mask, where=f"mask of timepoint '{tp.label}'"))
        checked.append(replace(tp, mask=mask))
    return checked


def check_dates(timepoints) -> list:
    """At least two timepoints, each with a unique label and a date; dates distinct and increasing (baseline first)."""
    timepoints = list(timepoints)
    if len(timepoints) < 2:
        raise RadiomicsLabError(f"A delta needs at least two timepoints (baseline and follow-up); got {len(timepoints)}.")
    labels = [tp.label for tp in timepoints]
    for i, tp in enumerate(timepoints, start=1):
        if not str(tp.label).strip():
            raise RadiomicsLabError(f"Timepoint {i} has no label; give each timepoint a name (e.g. baseline, week6).")
        if labels.count(tp.label) > 1:
            raise RadiomicsLabError(f"Two timepoints are labelled '{tp.label}'; give each timepoint its own label.")
        if tp.date is None:
            where = f" ({tp.source['image']})" if tp.source.get("image") else ""
            raise RadiomicsLabError(
                f"Timepoint '{tp.label}'{where} has no date; give it (DATE:IMAGE:MASK with DATE as YYYY-MM-DD) "
                "or load a DICOM series that has StudyDate or AcquisitionDate.")
    for before, after in zip(timepoints, timepoints[1:]):
        if after.date == before.date:
            raise RadiomicsLabError(
                f"Timepoints '{before.label}' and '{after.label}' have the same date {after.iso_date}; "
                "each timepoint needs its own date (remove the duplicate).")
        if after.date < before.date:
            raise RadiomicsLabError(
                f"Timepoints are out of date order: '{after.label}' ({after.iso_date}) comes after "
                f"'{before.label}' ({before.iso_date}); give them in date order, baseline first.")
    return timepoints


def resolve_lesions(baseline: Timepoint, labels=None) -> dict[str, int]:
    """Lesion name -> label value: every label of the baseline mask (``Label_N``), the chosen ``labels``,
    or ``labels`` given as a dict name -> label value (e.g. segment names)."""
    if isinstance(labels, dict):
        for label in labels.values():
            check_label(baseline.mask, int(label))
        return {str(name): int(label) for name, label in labels.items()}
    names = {label: name for name, label in baseline.source.get("segments", {}).items()}  # a DICOM mask's ROIs
    if labels:
        for label in labels:
            check_label(baseline.mask, int(label))
        chosen = [int(label) for label in labels]
    else:
        chosen = labels_present(baseline.mask)
        if not chosen:
            raise RadiomicsLabError(f"The baseline mask of '{baseline.label}' is empty; segment the lesion(s) first.")
    return {names.get(label, segment_name(label)): label for label in chosen}


# Change between two values ----------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """The change from a reference value to a value (see the module docstring); ``note`` says why a field is NaN."""

    delta_abs: float
    delta_rel: float
    delta_per_day: float
    log_ratio: float
    note: str = ""


def change(reference_value: float, value: float, days: float) -> Change:
    """Absolute, relative (%), per-day change and log ratio from ``reference_value`` to ``value`` over ``days``.

    ``delta_rel = 100 (v - r) / r`` and ``log_ratio = ln(v / r)`` need ``r > 0`` (and ``v > 0``
    for the log); ``delta_per_day = (v - r) / days`` needs ``days != 0``. Undefined fields are NaN
    and ``note`` gives the reason.
    """
    r, v, nan = float(reference_value), float(value), math.nan
    if math.isnan(v) or math.isnan(r):
        which = "value" if math.isnan(v) else "reference value"
        return Change(nan, nan, nan, nan, f"{which} is NaN: no change computed")
    notes = []
    delta_abs = v - r
    if days == 0:
        delta_per_day = nan
        notes.append("delta_per_day undefined: 0 days from the reference")
    else:
        delta_per_day = delta_abs / days
    if r > 0:
        delta_rel = 100.0 * delta_abs / r
        if v > 0:
            log_ratio = math.log(v / r)
        else:
            log_ratio = nan
            notes.append(f"log_ratio undefined: value {v:g} is not > 0")
    else:
        delta_rel = log_ratio = nan
        if r == 0:
            notes.append("delta_rel and log_ratio undefined: reference value is 0")
        else:
            notes.append(f"delta_rel and log_ratio undefined: reference value {r:g} is negative (use delta_abs)")
    return Change(delta_abs, delta_rel, delta_per_day, log_ratio, "; ".join(notes))


@dataclass(frozen=True)
class DeltaRow:
    """One lesion's feature at one timepoint with its change from the reference timepoint (:data:`DELTA_COLUMNS`).

    ``days``: days since the patient's first (baseline) timepoint.
    """

    patient: str
    lesion: str
    feature: str
    timepoint: str
    date: str
    days: int
    value: float
    reference: str
    reference_value: float
    delta_abs: float
    delta_rel: float
    delta_per_day: float
    log_ratio: float
    note: str = ""

    def row(self) -> tuple:
        return tuple(getattr(self, name) for name in DELTA_COLUMNS)


def delta_between(values_a: dict, values_b: dict, date_a, date_b) -> dict[str, Change]:
    """Per feature, the :class:`Change` from timepoint A (``values_a``: feature -> value) to timepoint B."""
    days = (parse_date(date_b) - parse_date(date_a)).days
    return {feature: change(values_a[feature], values_b[feature], days) for feature in values_a if feature in values_b}


def delta_rows(values: dict, timepoints, reference: str = "baseline", patient: str = "") -> list[DeltaRow]:
    """Rows of every lesion, feature and timepoint with their change from ``reference``.

    ``values[timepoint label][lesion]`` is a dict feature -> value, or None when the lesion has no
    voxels at that timepoint; ``timepoints`` are in date order (the first is the baseline);
    ``reference`` is ``"baseline"``, ``"previous"`` (each timepoint against the one before) or a
    timepoint label.
    """
    timepoints = list(timepoints)
    labels = [tp.label for tp in timepoints]
    if reference not in REFERENCES and reference not in labels:
        raise RadiomicsLabError(f"Unknown reference timepoint '{reference}'; choose baseline, previous or one of {', '.join(labels)}.")
    start = timepoints[0].date
    lesions = list(dict.fromkeys(lesion for by_lesion in values.values() for lesion in by_lesion))
    features = list(dict.fromkeys(f for by_lesion in values.values() for fv in by_lesion.values() if fv for f in fv))
    rows, nan = [], math.nan
    for lesion in lesions:
        for feature in features:
            for i, tp in enumerate(timepoints):
                ref = None if reference == "previous" and i == 0 else (
                    timepoints[i - 1] if reference == "previous" else
                    timepoints[0] if reference == "baseline" else timepoints[labels.index(reference)])
                value, note_value = _value_of(values, tp.label, lesion, feature)
                if ref is None:
                    rows.append(DeltaRow(patient, lesion, feature, tp.label, tp.iso_date, (tp.date - start).days, value,
                                         "", nan, nan, nan, nan, nan, "first timepoint: no previous timepoint"))
                    continue
                ref_value, note_ref = _value_of(values, ref.label, lesion, feature)
                delta = change(ref_value, value, (tp.date - ref.date).days)
                note = note_value or (f"reference {note_ref}" if note_ref else "") or delta.note
                rows.append(DeltaRow(patient, lesion, feature, tp.label, tp.iso_date, (tp.date - start).days, value,
                                     ref.label, ref_value, delta.delta_abs, delta.delta_rel, delta.delta_per_day,
                                     delta.log_ratio, note))
    return rows


def _value_of(values, timepoint: str, lesion: str, feature: str) -> tuple[float, str]:
    by_feature = values.get(timepoint, {}).get(lesion)
    if by_feature is None:
        return math.nan, f"lesion {lesion} has no voxels at '{timepoint}'"
    return float(by_feature.get(feature, math.nan)), ""


# ICC filter ------------------------------------------------------------------------------------
def read_icc_table(source) -> dict[str, dict]:
    """feature -> {icc, ci_low, ci_high} from a CSV file (columns :data:`ICC_TABLE_COLUMNS`, more allowed) or rows (dicts)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise RadiomicsLabError(f"Cannot read the ICC table '{path}': no such file; give the CSV written by the observers workflow.")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            raise RadiomicsLabError(f"Cannot read the ICC table '{path}'; give a UTF-8 CSV file.") from None
        rows, where = list(csv.DictReader(io.StringIO(text))), f"'{path}'"
    else:
        rows, where = [dict(r) for r in source], "the ICC table"
    columns = set(rows[0]) if rows else set()
    missing = [c for c in ICC_TABLE_COLUMNS if c not in columns]
    if not rows or missing:
        raise RadiomicsLabError(f"The ICC table {where} needs the columns {', '.join(ICC_TABLE_COLUMNS)}"
                                + (f"; missing {', '.join(missing)}." if rows else "; it has no rows."))
    table = {}
    for number, row in enumerate(rows, start=2):
        entry = {}
        for column in ICC_TABLE_COLUMNS[1:]:
            text = str(row[column]).strip()
            try:
                entry[column] = float(text) if text else math.nan
            except ValueError:
                raise RadiomicsLabError(f"The ICC table {where} has '{text}' in column {column} on row {number}; give numbers.") from None
        table[str(row["feature"]).strip()] = entry
    return table


def reproducible_features(icc_table: dict, threshold: float = 0.75, column: str = "ci_low") -> set[str]:
    """Features whose ``column`` (``ci_low`` by default: the lower 95 % bound) is at least ``threshold``.

    0.75 is "good" reliability (Koo & Li, J Chiropr Med 15(2), 2016); judging by the lower bound of
    the confidence interval keeps only features whose reliability is good with 95 % confidence.
    """
    if column not in ICC_TABLE_COLUMNS[1:]:
        raise RadiomicsLabError(f"Unknown ICC column '{column}'; choose one of {', '.join(ICC_TABLE_COLUMNS[1:])}.")
    return {f for f, entry in icc_table.items() if entry[column] >= threshold}


# Registration, propagation, maps ---------------------------------------------------------------
@dataclass
class Alignment:
    """A follow-up's registration onto the baseline: the result, whether it is used, and why not."""

    timepoint: str
    result: object  # RegistrationResult
    used: bool
    note: str = ""

    def summary(self) -> dict:
        r = self.result
        return {"timepoint": self.timepoint, "kind": r.kind, "metric": r.metric, "converged": r.converged,
                "iterations": r.iterations, "stop_condition": r.stop_condition, "used": self.used, "note": self.note}


def registration_region(mask: sitk.Image, margin_mm: float) -> sitk.Image:
    """The lesions (non-zero voxels of ``mask``) grown by ``margin_mm`` (Euclidean distance in mm): the registration's metric region."""
    binary = sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)
    distance = sitk.SignedMaurerDistanceMap(binary, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return sitk.Cast(sitk.LessEqual(distance, float(margin_mm)), sitk.sitkUInt8)


def align(baseline: Timepoint, followup: Timepoint, kind: str, margin_mm: float = 20.0, options=None, progress=None) -> Alignment:
    """Register ``followup`` onto ``baseline`` (fixed) with the metric in :func:`registration_region` of the baseline lesions.

    A result that did not converge (iteration limit) is kept for the record but not used.
    """
    from .registration import register

    options = dict(options or {})
    options.setdefault("seed", 1)  # SimpleITK takes seed 0 as "the wall clock": a fixed default keeps runs repeatable
    region = registration_region(baseline.mask, margin_mm) if margin_mm is not None else None
    result = register(baseline.image, followup.image, kind=kind, fixed_mask=region, progress=progress, **options)
    if result.converged:
        return Alignment(followup.label, result, True)
    note = (f"{kind} registration of '{followup.label}' did not converge ({result.stop_condition.strip()}); "
            "its registered results are left out")
    return Alignment(followup.label, result, False, note)


def invert_transform(transform: sitk.Transform, grid: sitk.Image, spacing_mm: float = 2.0) -> sitk.Transform:
    """The inverse of a registration transform, for mapping baseline data onto ``grid`` (a follow-up image).

    Rigid and affine transforms are inverted exactly (matrix inverse). Others (B-spline, composite)
    are sampled as a displacement field on ``grid``'s extent at a spacing of at least
    ``spacing_mm`` and inverted iteratively (``sitk.InvertDisplacementField``, fixed-point
    iteration ``u(y) = -d(y + u(y))``).
    """
    from .registration import affine_matrix, transform_from_matrix

    try:
        return transform_from_matrix(np.linalg.inv(affine_matrix(transform)))
    except RadiomicsLabError:
        pass
    spacing = [max(float(s), spacing_mm) for s in grid.GetSpacing()]
    size = [max(2, int(math.ceil(n * s / t))) for n, s, t in zip(grid.GetSize(), grid.GetSpacing(), spacing)]
    field_image = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, size, grid.GetOrigin(), spacing,
                                                    grid.GetDirection())
    inverse = sitk.InvertDisplacementField(field_image, maximumNumberOfIterations=50, maxErrorToleranceThreshold=0.01,
                                           meanErrorToleranceThreshold=0.001, enforceBoundaryCondition=False)
    return sitk.DisplacementFieldTransform(inverse)


def propagate_mask(mask: sitk.Image, target: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """The baseline ``mask`` carried onto the follow-up image ``target``: ``out(y) = mask(T^-1(y))``, nearest neighbour.

    ``transform`` is the registration result (baseline -> follow-up points); labels are kept, never blended.
    """
    from .registration import resample

    return resample(mask, target, invert_transform(transform, target), interpolator="nearest", default_value=0)


def difference_map(reference: sitk.Image, image: sitk.Image, transform: sitk.Transform | None = None) -> sitk.Image:
    """Voxel-wise change on the reference grid: ``D(x) = image(T(x)) - reference(x)`` (Float32).

    ``reference`` / ``image``: the baseline and follow-up images, or feature maps of them;
    ``transform``: the follow-up's registration (baseline -> follow-up points; identity when None).
    Voxels whose ``T(x)`` falls outside ``image`` are NaN.
    """
    from .registration import resample

    moved = resample(image, reference, transform, interpolator="linear", default_value=math.nan)
    return sitk.Subtract(moved, sitk.Cast(reference, sitk.sitkFloat32))


def zero_map(reference: sitk.Image) -> sitk.Image:
    """The baseline's own difference map: 0 everywhere on its grid (Float32)."""
    zeros = sitk.Image(reference.GetSize(), sitk.sitkFloat32)
    zeros.CopyInformation(reference)
    return zeros


# Habitats over time ----------------------------------------------------------------------------
@dataclass(frozen=True)
class HabitatFraction:
    """Share of a lesion's labelled voxels in one habitat at one timepoint (:data:`HABITAT_COLUMNS`)."""

    patient: str
    timepoint: str
    date: str
    days: int
    habitat: int
    voxels: int
    volume_mm3: float
    fraction: float

    def row(self) -> tuple:
        return tuple(getattr(self, name) for name in HABITAT_COLUMNS)


def habitat_fractions(label_maps, timepoints, patient: str = "") -> list[HabitatFraction]:
    """Per timepoint and habitat: voxels, volume (mm³) and fraction ``n_h / sum_k n_k`` of the labelled voxels.

    ``label_maps``: one habitat label map per timepoint, in the order of ``timepoints`` (0 =
    outside the lesion, 1..K = habitats, e.g. from a population habitat model). A habitat absent
    at a timepoint has fraction 0.
    """
    timepoints, label_maps = list(timepoints), list(label_maps)
    if len(label_maps) != len(timepoints):
        raise RadiomicsLabError(f"Give one habitat label map per timepoint: {len(label_maps)} maps for {len(timepoints)} timepoints.")
    counts = []
    for tp, label_map in zip(timepoints, label_maps):
        array = sitk.GetArrayFromImage(check_mask_is_label_map(label_map, where=f"habitat map of '{tp.label}'"))
        present = np.bincount(array.ravel().astype(np.int64))
        if present[1:].sum() == 0:
            raise RadiomicsLabError(f"The habitat map of '{tp.label}' has no labelled voxel; give the habitat label map of the lesion.")
        counts.append((present, float(np.prod(label_map.GetSpacing()))))
    habitats = sorted({h for present, _ in counts for h in np.flatnonzero(present) if h})
    start, rows = timepoints[0].date, []
    for tp, (present, voxel_volume) in zip(timepoints, counts):
        total = int(present[1:].sum())
        for h in habitats:
            n = int(present[h]) if h < present.size else 0
            days = (tp.date - start).days if tp.date and start else 0
            rows.append(HabitatFraction(patient, tp.label, tp.iso_date, days, int(h), n, n * voxel_volume, n / total))
    return rows


# The whole computation -------------------------------------------------------------------------
@dataclass
class DeltaResult:
    """Everything :func:`run_delta` made for one patient.

    ``timepoints``: those kept (follow-ups left out are in ``left_out`` with the reason), with the
    masks used (propagated ones included); ``values[timepoint][lesion]``: feature -> value (None:
    no voxels); ``alignments``: follow-up label -> :class:`Alignment`; ``difference_maps``:
    follow-up label -> image on the baseline grid; ``ibsi_tags``: feature -> IBSI tag (empty when none).
    """

    patient: str
    timepoints: list
    lesions: dict
    values: dict
    rows: list
    reference: str
    alignments: dict = field(default_factory=dict)
    difference_maps: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    ibsi_tags: dict = field(default_factory=dict)

    def features(self) -> list[str]:
        return list(dict.fromkeys(r.feature for r in self.rows))


def run_delta(timepoints, settings=None, lesions=None, register: str | None = None, propagate: bool = False,
              reference: str = "baseline", icc_table=None, icc_threshold: float = 0.75, icc_column: str = "ci_low",
              difference_maps: bool = False, registration_options=None, registration_margin_mm: float = 20.0,
              patient: str = "", progress=None) -> DeltaResult:
    """Delta features of one patient's timepoints (see the module docstring).

    ``settings``: feature settings (preset name, parameter file, dict; see
    :func:`~RadiomicsLabLib.settings.load_settings`); ``lesions``: label values to use, or a dict
    lesion name -> label value (default: every label of the baseline mask, named ``Label_N``); ``register``: ``rigid``, ``affine``, ``bspline`` or None;
    ``propagate``: give follow-ups without a mask the registered baseline mask; ``reference``:
    ``baseline``, ``previous`` or a timepoint label; ``icc_table``: CSV path or rows to keep only
    features with ``icc_column >= icc_threshold``; ``difference_maps``: voxel-wise follow-up minus
    baseline on the baseline grid (needs ``register``); ``registration_options``: keyword
    arguments of :func:`~RadiomicsLabLib.registration.register` (``shrink_factors``,
    ``iterations``, ``samples``, ``seed``, ...). ``progress(done, total, message)`` returning
    False cancels (:class:`DeltaCancelled`). Every input is checked before any work.
    """
    from .settings import load_settings

    plan = _plan(timepoints, settings, lesions, register, propagate, reference, icc_table, icc_column,
                 difference_maps, registration_options)
    settings, timepoints, lesion_map, icc = load_settings(settings), plan["timepoints"], plan["lesions"], plan["icc"]
    steps = _Steps(progress, (len(timepoints) - 1 if register else 0) + len(timepoints))
    baseline, result = timepoints[0], DeltaResult(patient, [], lesion_map, {}, [], reference)

    kept = [baseline]
    for followup in timepoints[1:]:
        if register:
            alignment = align(baseline, followup, register, registration_margin_mm, registration_options,
                              steps.inner(f"'{followup.label}': "))
            result.alignments[followup.label] = alignment
            steps.advance(f"registered '{followup.label}'")
            if not alignment.used:
                result.warnings.append(alignment.note)
        else:
            alignment = None
        if followup.mask is None:
            if not alignment.used:
                result.left_out[followup.label] = f"no mask and its registration did not converge ({alignment.result.stop_condition.strip()})"
                continue
            baseline_lesions = _only_labels(baseline.mask, lesion_map.values())
            propagated = propagate_mask(baseline_lesions, followup.image, alignment.result.transform)
            followup = replace(followup, mask=propagated, source={**followup.source, "mask": "propagated from " + baseline.label})
        if difference_maps and alignment.used:
            result.difference_maps[followup.label] = difference_map(baseline.image, followup.image, alignment.result.transform)
        kept.append(followup)
    if len(kept) < 2:
        raise RadiomicsLabError("No follow-up is left to compare with the baseline: " + "; ".join(
            f"'{k}': {v}" for k, v in result.left_out.items()) + ". Try more registration iterations or give the masks.")
    if reference not in REFERENCES and reference not in [tp.label for tp in kept]:
        raise RadiomicsLabError(f"The reference timepoint '{reference}' was left out ({result.left_out[reference]}); choose another reference.")
    if result.difference_maps:  # with the baseline's own (zero) map, so the maps line up with the timepoints
        result.difference_maps = {baseline.label: zero_map(baseline.image), **result.difference_maps}

    extraction_provenance, tags = {}, {}
    for tp in kept:
        result.values[tp.label], extraction_provenance[tp.label] = _extract_lesions(tp, lesion_map, settings, tags)
        steps.advance(f"features of '{tp.label}'")
    result.ibsi_tags = tags
    if icc is not None:
        result.values, reproducible, absent = filter_reproducible(result.values, tags, icc, icc_threshold, icc_column)
        result.provenance["icc_filter"] = {"kept": reproducible, "not_in_table": absent}
        if absent:
            result.warnings.append(f"{len(absent)} feature(s) are not in the ICC table and were left out (e.g. {absent[0]})")
    result.timepoints = kept
    result.rows = delta_rows(result.values, kept, reference, patient)
    result.provenance = _provenance(result, settings, register, propagate, registration_options, registration_margin_mm,
                                    extraction_provenance, icc_table, icc_threshold, icc_column)
    return result


def check_inputs(timepoints, settings=None, lesions=None, register=None, propagate=False, reference="baseline",
                 icc_table=None, icc_column="ci_low", difference_maps=False, registration_options=None):
    """Every check of :func:`run_delta` without the work; returns the checked timepoints."""
    return _plan(timepoints, settings, lesions, register, propagate, reference, icc_table, icc_column,
                 difference_maps, registration_options)["timepoints"]


def _plan(timepoints, settings, lesions, register, propagate, reference, icc_table, icc_column, difference_maps,
          registration_options):
    check_options(settings, register, propagate, difference_maps, registration_options)
    timepoints = check_timepoints(timepoints, propagate)
    labels = [tp.label for tp in timepoints]
    if reference not in REFERENCES and reference not in labels:
        raise RadiomicsLabError(f"Unknown reference timepoint '{reference}'; choose baseline, previous or one of {', '.join(labels)}.")
    icc = None
    if icc_table is not None:
        icc = read_icc_table(icc_table)
        reproducible_features(icc, 0.0, icc_column)  # checks the column name
    return {"timepoints": timepoints, "lesions": resolve_lesions(timepoints[0], lesions), "icc": icc}


def check_options(settings=None, register=None, propagate=False, difference_maps=False, registration_options=None,
                  icc_table=None, icc_column="ci_low", **_ignored):
    """The checks of :func:`run_delta` that concern no timepoint (settings, registration, ICC table): a cohort
    checks them once, before any patient. Takes :func:`run_delta`'s keyword arguments."""
    from .registration import KINDS
    from .settings import load_settings

    if register is not None and register not in KINDS:
        raise RadiomicsLabError(f"Unknown registration '{register}'; choose one of {', '.join(KINDS)}.")
    if propagate and register is None:
        raise RadiomicsLabError("Propagating the baseline mask needs a registration; choose one (--register rigid|affine|bspline).")
    if difference_maps and register is None:
        raise RadiomicsLabError("Difference maps need the images registered; choose a registration (--register rigid|affine|bspline).")
    unknown = sorted(set(registration_options or {}) - {"seed", "initial_transform", "initialise", "samples", "histogram_bins",
                                                        "intensity_percentiles", "shrink_factors", "smoothing_sigmas_mm",
                                                        "iterations", "bspline_mesh_mm"})
    if unknown:
        raise RadiomicsLabError(f"Unknown registration option {', '.join(unknown)}.")
    load_settings(settings)
    if icc_table is not None:
        reproducible_features(read_icc_table(icc_table), 0.0, icc_column)  # checks the file and the column name


class _Steps:
    """Counts finished steps for ``progress(done, total, message)``; a False answer cancels."""

    def __init__(self, progress, total):
        self.progress, self.total, self.done = progress, total, 0

    def advance(self, message):
        self.done += 1
        self._report(message)

    def _report(self, message):
        if self.progress is not None and self.progress(self.done, self.total, message) is False:
            raise DeltaCancelled(f"Delta computation cancelled after {self.done} of {self.total} steps; nothing was written.")

    def inner(self, prefix):
        """A registration progress callback reporting through this counter (cancelling included)."""
        if self.progress is None:
            return None

        def report(_iteration, _iterations, message):
            return self.progress(self.done, self.total, prefix + message) is not False
        return report


def _only_labels(mask: sitk.Image, labels) -> sitk.Image:
    """``mask`` with every label not in ``labels`` set to 0."""
    array = sitk.GetArrayFromImage(mask)
    array[~np.isin(array, list(labels))] = 0
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(mask)
    return out


def _extract_lesions(tp: Timepoint, lesion_map: dict, settings, tags: dict):
    """(lesion -> {feature: value} or None when absent, extraction provenance) of one timepoint."""
    from .extraction import extract

    present = set(labels_present(tp.mask))
    segments = {name: label for name, label in lesion_map.items() if label in present}
    by_lesion = {name: None for name in lesion_map}
    if not segments:
        return by_lesion, {}
    result = extract(tp.image, tp.mask, segments, settings, inputs={"timepoint": tp.label, "date": tp.iso_date, **tp.source})
    for v in result.values:
        if by_lesion[v.segment] is None:
            by_lesion[v.segment] = {}
        by_lesion[v.segment][v.feature] = v.value
        tags[v.feature] = v.ibsi_tag
    return by_lesion, result.provenance


def filter_reproducible(values: dict, ibsi_tags: dict, icc_table: dict, threshold: float = 0.75, column: str = "ci_low"):
    """(values with only reproducible features, features kept, features not in the ICC table).

    ``values[timepoint][lesion]``: feature -> value (or None); a feature is kept when its name or
    its IBSI tag (``ibsi_tags``: feature -> tag) is in :func:`reproducible_features`. Features
    missing from the table are dropped too. No feature left is an error.
    """
    keep_names = reproducible_features(icc_table, threshold, column)
    features = list(dict.fromkeys(f for by_lesion in values.values() for fv in by_lesion.values() if fv for f in fv))
    kept = [f for f in features if f in keep_names or ibsi_tags.get(f) in keep_names]
    absent = [f for f in features if f not in icc_table and ibsi_tags.get(f) not in icc_table]
    if not kept:
        example = ", ".join(list(icc_table)[:3])
        raise RadiomicsLabError(
            f"None of the {len(features)} extracted features passes the ICC filter ({column} >= {threshold:g}): "
            f"{len(features) - len(absent)} are below it, {len(absent)} are not in the ICC table (it has e.g. {example}); "
            "make the ICC table with the same feature settings, or lower the threshold.")
    keep = set(kept)
    filtered = {tp: {lesion: None if fv is None else {f: v for f, v in fv.items() if f in keep} for lesion, fv in by_lesion.items()}
                for tp, by_lesion in values.items()}
    return filtered, kept, absent


def _provenance(result, settings, register, propagate, registration_options, margin, extraction, icc_table,
                icc_threshold, icc_column) -> dict:
    from . import __version__

    icc = result.provenance.get("icc_filter")
    if icc is not None:
        icc = {"table": str(icc_table) if isinstance(icc_table, (str, Path)) else "given as rows",
               "rule": f"{icc_column} >= {icc_threshold:g}", **icc}
    options = {k: (str(v) if k == "initial_transform" else v) for k, v in (registration_options or {}).items()}
    return {
        "software": {"radiomicslab": __version__, "simpleitk": sitk.Version_VersionString()},
        "patient": result.patient,
        "timepoints": [{"label": tp.label, "date": tp.iso_date, **tp.source} for tp in result.timepoints],
        "left_out": result.left_out,
        "lesions": result.lesions,
        "reference": result.reference,
        "formulas": {"delta_abs": "v - r", "delta_rel": "100 (v - r) / r, r > 0", "delta_per_day": "(v - r) / days",
                     "log_ratio": "ln(v / r), v > 0 and r > 0"},
        "settings_source": settings.source,
        "registration": None if register is None else {
            "kind": register, "propagate": propagate, "options": options, "metric_region_margin_mm": margin,
            "results": [a.summary() for a in result.alignments.values()]},
        "icc_filter": icc,
        "extraction": extraction,
        "warnings": result.warnings,
    }


# Cohorts ---------------------------------------------------------------------------------------
def parse_timepoint_key(text: str) -> tuple[str, str]:
    """A cohort file's ``timepoint`` cell -> (label, date text): ``2021-03-04``, or ``baseline@2021-03-04``."""
    value = str(text or "").strip()
    label, at, date = value.rpartition("@")
    if at:
        return label.strip(), date.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{8}", value):
        return "", value
    return value, ""


def cohort_timepoints(cohort) -> dict[str, tuple[list, tuple]]:
    """patient id -> (timepoints in file order, lesion labels) of a :class:`~RadiomicsLabLib.cohort.Cohort`.

    The ``timepoint`` column gives each row's date, optionally with a label: ``2021-03-04`` or
    ``baseline@2021-03-04`` (an empty date is read from the image's DICOM StudyDate). Labels
    default to ``baseline``, ``T1``, ... per patient. Every problem is collected and raised at once.
    """
    grouped, problems = {}, []
    for case in cohort.cases:
        label, date = parse_timepoint_key(case.timepoint)
        try:
            tp = timepoint_from_files(date, case.image, case.mask, label, [case.roi] if case.roi else None)
        except RadiomicsLabError as error:
            problems.append(f"{case.where} (id '{case.id}'): {error}")
            continue
        grouped.setdefault(case.id, ([], case.labels))[0].append(tp)
    for patient, (tps, _) in grouped.items():
        for tp, name in zip(tps, default_labels(len(tps))):
            tp.label = tp.label or name
    if problems:
        raise RadiomicsLabError(f"The cohort '{cohort.source}' has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return grouped


def patient_timepoints(cases) -> tuple[list, tuple]:
    """(timepoints in file order, lesion labels) of one patient's cohort rows (:func:`cohort_timepoints` of one id)."""
    timepoints = []
    for case in cases:
        label, date = parse_timepoint_key(case.timepoint)
        timepoints.append(timepoint_from_files(date, case.image, case.mask, label, [case.roi] if case.roi else None))
    for tp, name in zip(timepoints, default_labels(len(timepoints))):
        tp.label = tp.label or name
    return timepoints, cases[0].labels


def cohort_problems(cohort, reference: str = "baseline", lesions=()) -> list:
    """Every problem of a delta cohort that the file shows, before any image is read again, each with its row(s)
    (:class:`~RadiomicsLabLib.cohort.CohortProblem`): a timepoint cell that is not ``DATE`` or ``NAME@DATE``, a
    date that is not one (or, left empty, not in the image's DICOM header), and per patient: fewer than two
    timepoints, labels given twice, dates repeated or out of order, an unknown ``reference`` timepoint, and
    ``lesions`` (label values asked for every patient) absent from the patient's baseline mask. The per-patient
    checks are left out for a patient that already has a problem in the file (a row that did not validate).
    """
    from .cohort import CohortProblem, case_mask, rows_where

    problems, broken = [], {problem.case_id for problem in cohort.problems}  # a row missing: no per-patient check
    for patient, cases in cohort.patients().items():
        timepoints, bad = [], patient in broken
        for case in cases:
            label, date = parse_timepoint_key(case.timepoint)
            try:
                given = parse_date(date) if date else None
                when = given if given is not None else date_from_dicom(case.image)[0]
            except RadiomicsLabError as error:
                problems.append(CohortProblem(case.where, _lower_first(str(error)), patient))
                bad = True
                continue
            timepoints.append(Timepoint(label, when, None, None, {"image": str(case.image)}))
        if bad:
            continue
        for tp, name in zip(timepoints, default_labels(len(timepoints))):
            tp.label = tp.label or name
        where = rows_where(cases)
        try:
            check_dates(timepoints)
            labels = [tp.label for tp in timepoints]
            if reference not in REFERENCES and reference not in labels:
                raise RadiomicsLabError(f"the reference timepoint '{reference}' is not one of its timepoints "
                                        f"({', '.join(labels)}); choose baseline, previous or a timepoint every patient has.")
        except RadiomicsLabError as error:
            problems.append(CohortProblem(where, f"patient '{patient}': {_lower_first(str(error))}", patient))
            continue
        if lesions:
            present = labels_present(case_mask(cases[0])[0])
            absent = [label for label in lesions if label not in present]
            if absent:
                problems.append(CohortProblem(cases[0].where, f"patient '{patient}': the baseline mask has no lesion "
                                              f"{', '.join(map(str, absent))} (--lesion); labels present: "
                                              f"{', '.join(map(str, present)) or 'none'}", patient))
    return problems


def _lower_first(message: str) -> str:
    return message[:1].lower() + message[1:]


#: Name of the per-patient task of ``radiomicslab delta --cohort`` (:mod:`RadiomicsLabLib.batch`).
TASK_NAME = "delta"


def delta_task(out_dir, lesions=(), **options):
    """The per-patient :class:`~RadiomicsLabLib.batch.CaseTask` of a delta cohort (``per_patient``: every row of
    one id, its timepoints). ``options``: :func:`run_delta`'s (settings, register, reference, icc_table, ...);
    ``lesions``: label values used for every patient instead of each patient's ``label`` column. Difference maps
    (and propagated masks) are written by the task into ``out_dir/maps`` (``out_dir/masks``), which the workers
    must be able to reach. The fingerprint holds every option that changes a patient's results (the ICC table
    by its content); the plots are drawn once, from the collected rows."""
    from .batch import CaseTask
    from .settings import load_settings

    settings = load_settings(options.get("settings"))
    options = {**options, "settings": settings}
    icc = options.get("icc_table")
    fingerprint = {
        "settings": {"engine": settings.engine, "params": settings.params},
        **{key: value for key, value in options.items() if key not in ("settings", "icc_table", "registration_options")},
        "registration_options": {k: str(v) for k, v in (options.get("registration_options") or {}).items()},
        "icc_table": read_icc_table(icc) if icc is not None else None, "lesions": list(lesions)}
    params = {"out_dir": str(Path(out_dir).absolute()), "options": options, "lesions": tuple(lesions)}
    return CaseTask(TASK_NAME, delta_case, params, fingerprint, per_patient=True, table=None)


def delta_case(cases, params: dict):
    """Batch task of one patient (all its cohort rows): :func:`run_delta` on its timepoints, its difference maps
    and propagated masks written (atomically, never over an input), and what :func:`cohort_results` needs.

    Rows: the patient's delta rows (:data:`DELTA_COLUMNS`); provenance: ``delta`` (the patient's provenance),
    ``registration`` (its registration.csv rows), ``warnings``, ``left_out``, ``unused`` (registrations not used)."""
    from .batch import CaseOutput
    from .fileio import check_outputs, write_image_atomic

    timepoints, labels = patient_timepoints(cases)
    patient = cases[0].id
    result = run_delta(timepoints, lesions=list(params["lesions"] or labels) or None, patient=patient, **params["options"])
    images = result_images(result, params["out_dir"])
    sources = [(f"{key} of timepoint '{tp.label}'", value) for tp in result.timepoints
               for key, value in tp.source.items() if key in ("image", "mask") and value and Path(str(value)).exists()]
    check_outputs([path for path, _ in images], sources)
    for path, image in images:
        write_image_atomic(image, path)
    rows = [dict(zip(DELTA_COLUMNS, row.row())) for row in result.rows]
    return CaseOutput(rows, {"delta": result.provenance, "registration": registration_rows(result),
                             "warnings": result.warnings, "left_out": result.left_out,
                             "unused": [label for label, a in result.alignments.items() if not a.used],
                             "images": [str(path) for path, _ in images]})


def propagated_timepoints(result) -> list:
    """The timepoints of a :class:`DeltaResult` whose mask was propagated from the baseline by registration."""
    return [tp for tp in result.timepoints if str(tp.source.get("mask", "")).startswith("propagated")]


def result_images(result, folder) -> list:
    """(path, image) of a patient's propagated masks (``masks/<patient>_<timepoint>_propagated.nii.gz``) and
    difference maps (``maps/<patient>_<timepoint>_difference.nii.gz``) in ``folder``."""
    folder = Path(folder)
    images = [(folder / "masks" / f"{result.patient}_{tp.label}_propagated.nii.gz", tp.mask)
              for tp in propagated_timepoints(result)]
    images += [(folder / "maps" / f"{result.patient}_{label}_difference.nii.gz", image)
               for label, image in result.difference_maps.items()]
    return images


REGISTRATION_COLUMNS = ("patient", "timepoint", "kind", "converged", "used", "metric", "iterations", "stop_condition",
                        "matrix_lps")


def registration_rows(result) -> list:
    """registration.csv rows of one patient (:data:`REGISTRATION_COLUMNS`, as text): one per registered follow-up."""
    from .registration import affine_matrix

    rows = []
    for label, alignment in result.alignments.items():
        r = alignment.result
        try:
            matrix = " ".join(repr(float(v)) for v in affine_matrix(r.transform).ravel())
        except RadiomicsLabError:
            matrix = ""
        rows.append([str(v) for v in (result.patient, label, r.kind, r.converged, alignment.used, repr(r.metric),
                                      r.iterations, r.stop_condition.strip(), matrix)])
    return rows


def registration_csv_text(rows) -> str:
    """registration.csv of :func:`registration_rows` (all patients)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REGISTRATION_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


@dataclass
class CohortResults:
    """What the finished patients of a cohort run give: the delta rows, the provenance (one patient's, or
    ``{"patients": [...]}``), registration.csv rows, warnings as (patient, text), timepoints left out as
    (patient, timepoint, why), and whether a registration was not used."""

    rows: list
    provenance: dict
    registration: list
    warnings: list
    left_out: list
    unused: bool
    patients: int


def cohort_results(records) -> CohortResults:
    """The collected outputs of finished :func:`delta_case` records (``{"rows", "provenance"}``, in cohort order):
    the same rows and provenance as :func:`run_cohort` on those patients in one process."""
    rows, provenances, registration, warnings, left_out, unused = [], [], [], [], [], False
    for record in records:
        data = record["provenance"]
        rows += [DeltaRow(**row) for row in record["rows"]]
        provenances.append(data["delta"])
        registration += data["registration"]
        patient = data["delta"]["patient"]
        warnings += [(patient, warning) for warning in data["warnings"]]
        left_out += [(patient, label, why) for label, why in data["left_out"].items()]
        unused = unused or bool(data["unused"])
    provenance = provenances[0] if len(provenances) == 1 else {"patients": provenances}
    return CohortResults(rows, provenance, registration, warnings, left_out, unused, len(records))


def check_cohort(patients: dict, **options) -> None:
    """Every check of :func:`run_delta` for each patient (id -> (timepoints, lesion labels)); all problems at once."""
    problems = []
    for patient, (tps, labels) in patients.items():
        try:
            check_inputs(tps, options.get("settings"), labels or None, options.get("register"), options.get("propagate", False),
                         options.get("reference", "baseline"), options.get("icc_table"), options.get("icc_column", "ci_low"),
                         options.get("difference_maps", False), options.get("registration_options"))
        except RadiomicsLabError as error:
            problems.append(f"patient '{patient}': {error}")
    if len(problems) == 1:
        raise RadiomicsLabError(f"In the cohort, {problems[0]}")
    if problems:
        raise RadiomicsLabError(f"{len(problems)} patients of the cohort have problems:\n  " + "\n  ".join(problems))


def run_cohort(patients: dict, progress=None, **options) -> list[DeltaResult]:
    """:func:`run_delta` for each patient (id -> (timepoints, lesion labels)); every patient is checked before any work."""
    check_cohort(patients, **options)
    results = []
    for done, (patient, (tps, labels)) in enumerate(patients.items()):
        def inner(step, total, message, done=done, patient=patient):
            return progress(done * total + step, len(patients) * total, f"{patient}: {message}") if progress else None
        results.append(run_delta(tps, lesions=labels or None, patient=patient, progress=inner, **options))
    return results


def run_studies(plans, plot_features=None, waterfall_feature=None, progress=None, **options) -> list[DeltaResult]:
    """:func:`run_delta` for each (patient, timepoints, lesions) of ``plans`` in order (checked by the caller;
    patients may repeat), progress counted over all of them; then the plot features are checked against the rows.
    The computation of :meth:`RadiomicsLabLib.mrml.delta.DeltaLogic.compute` (its job's compute)."""
    results = []
    for done, (patient, timepoints, lesions) in enumerate(plans):
        def inner(step, total, message, done=done, patient=patient):
            if progress is None:
                return None
            return progress(done * total + step, len(plans) * total, f"{patient}: {message}")
        results.append(run_delta(timepoints, lesions=lesions, patient=patient, progress=inner, **options))
    check_plot_features([r for result in results for r in result.rows], plot_features, waterfall_feature)
    return results


# Outputs --------------------------------------------------------------------------------------
def csv_text(columns, rows) -> str:
    """CSV of ``rows`` (objects with ``row()``) under ``columns``; numbers in their shortest exact form, NaN as ``nan``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([format_value(v) if isinstance(v, float) else v for v in r.row()])
    return buffer.getvalue()


def delta_csv_text(rows) -> str:
    """The delta table as CSV (:data:`DELTA_COLUMNS`)."""
    return csv_text(DELTA_COLUMNS, rows)


def read_delta_csv(path) -> list[DeltaRow]:
    """Rows of a CSV written by :func:`delta_csv_text`."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [delta_row_from_texts(row) for row in csv.DictReader(handle)]


def delta_row_from_texts(texts: dict) -> DeltaRow:
    """A :class:`DeltaRow` from column name -> text (a CSV or MRML table row)."""
    numbers = {"value", "reference_value", "delta_abs", "delta_rel", "delta_per_day", "log_ratio"}
    fields = {c: float(texts[c]) if c in numbers else int(texts[c]) if c == "days" else texts[c] for c in DELTA_COLUMNS}
    return DeltaRow(**fields)


def default_plot_features(features, count: int = 4) -> list[str]:
    """Up to ``count`` features to plot: volume, mean, contrast, entropy when present (:data:`PLOT_FEATURE_PREFERENCE`), else the first ones."""
    features = list(features)
    chosen = [next(f for f in group if f in features) for group in PLOT_FEATURE_PREFERENCE if any(f in features for f in group)]
    chosen += [f for f in features if f not in chosen]
    return chosen[:count]


def lesion_key(row: DeltaRow) -> str:
    """``patient/lesion`` (or ``lesion`` for a single unnamed patient): the name of a trajectory or waterfall bar."""
    return f"{row.patient}/{row.lesion}" if row.patient else row.lesion


def trajectories(rows, feature: str) -> dict[str, list[tuple[int, float]]]:
    """lesion key -> [(days since baseline, relative change %)] of ``feature`` (NaN points kept)."""
    series = {}
    for r in rows:
        if r.feature == feature:
            series.setdefault(lesion_key(r), []).append((r.days, r.delta_rel))
    return series


def waterfall(rows, feature: str) -> list[tuple[str, float, str]]:
    """[(lesion key, relative change %, timepoint)] at each lesion's last timepoint, largest increase first; NaN left out."""
    last = {}
    for r in rows:
        if r.feature == feature and r.reference and r.timepoint != r.reference:
            key = lesion_key(r)
            if key not in last or r.days > last[key].days:
                last[key] = r
    bars = [(key, r.delta_rel, r.timepoint) for key, r in last.items() if not math.isnan(r.delta_rel)]
    return sorted(bars, key=lambda bar: -bar[1])


def trajectories_figure(rows, features=None):
    """One panel per feature, relative change (%) from the reference against days since baseline, one line per lesion
    (:func:`trajectories`, the series of the scene's trajectory chart)."""
    features = list(features or default_plot_features(dict.fromkeys(r.feature for r in rows)))
    plt = _pyplot()
    columns = min(2, len(features))
    lines = (len(features) + columns - 1) // columns
    figure, axes = plt.subplots(lines, columns, figsize=(5.5 * columns, 3.6 * lines), squeeze=False)
    for ax, feature in zip(axes.ravel(), features):
        for key, points in trajectories(rows, feature).items():
            days, rel = zip(*points)
            ax.plot(days, rel, marker="o", label=key)
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.set_title(feature, fontsize=9)
        ax.set_xlabel("days since baseline")
        ax.set_ylabel("relative change (%)")
        if len(trajectories(rows, feature)) <= 12:
            ax.legend(fontsize=7)
    for ax in axes.ravel()[len(features):]:
        ax.set_visible(False)
    figure.suptitle("Feature trajectories")
    return figure


def waterfall_figure(rows, feature: str | None = None):
    """Waterfall of ``feature``'s relative change (%) at each lesion's last timepoint, largest increase first
    (:func:`waterfall`, the series of the scene's waterfall chart)."""
    feature = feature or default_plot_features(dict.fromkeys(r.feature for r in rows), 1)[0]
    bars = waterfall(rows, feature)
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(bars) + 2), 4))
    ax.bar(range(len(bars)), [b[1] for b in bars], color=["#c0392b" if b[1] > 0 else "#2e86c1" for b in bars])
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=60, ha="right", fontsize=7)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_ylabel("relative change (%)")
    ax.set_title(f"Waterfall: {feature}", fontsize=10)
    return figure


def plot_pngs(rows, features=None, waterfall_feature=None) -> dict:
    """The plots of delta rows as PNG bytes: ``trajectories.png`` (:func:`trajectories_figure`) and ``waterfall.png``
    (:func:`waterfall_figure`)."""
    check_plot_features(rows, features, waterfall_feature)
    return {"trajectories.png": figure_png(trajectories_figure(rows, features)),
            "waterfall.png": figure_png(waterfall_figure(rows, waterfall_feature))}


def check_plot_features(rows, features=None, waterfall_feature=None) -> None:
    """Refuse plot features that are not in the delta rows (a typo would give an empty plot)."""
    available = list(dict.fromkeys(r.feature for r in rows))
    unknown = [f for f in list(features or []) + ([waterfall_feature] if waterfall_feature else []) if f not in available]
    if unknown:
        raise RadiomicsLabError(f"No feature {', '.join(unknown)} to plot; the delta table has e.g. {', '.join(available[:4])}.")


def write_outputs(rows, folder, features=None, waterfall_feature=None, habitats=None) -> dict[str, Path]:
    """``delta.csv``, ``trajectories.png``, ``waterfall.png`` (and ``habitats.csv``) in ``folder``, each written atomically."""
    pngs = plot_pngs(rows, features, waterfall_feature)
    folder = Path(folder)
    written = {"delta.csv": write_text_atomic(folder / "delta.csv", delta_csv_text(rows))}
    for name, png in pngs.items():
        with atomic_output(folder / name) as tmp:
            tmp.write_bytes(png)
        written[name] = folder / name
    if habitats:
        written["habitats.csv"] = write_text_atomic(folder / "habitats.csv", csv_text(HABITAT_COLUMNS, habitats))
    return written


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(figure) -> bytes:
    """A figure as PNG bytes (tight layout, 110 dpi); the figure is closed."""
    plt = _pyplot()
    try:
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()
    finally:
        plt.close(figure)
