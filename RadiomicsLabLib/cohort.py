"""Cohorts: which image and mask make up each case, read from a CSV file or discovered in a folder.

A cohort file is a CSV (``,`` ``;`` or tab separated, UTF-8) with the columns ``id,image,mask``
and optionally ``label`` (one label value, or several as ``1;2``, ``1+2`` or ``1 2``; empty: every label),
``timepoint``, ``observer``, ``channel`` and ``roi``; other columns are ignored. The mask may be a DICOM
RTSTRUCT or SEG (``.dcm``) with the image the folder of the DICOM series it was drawn on; ``roi`` then names
the ROI / segment to take (empty: every ROI, each its own segment, for extraction; the file's only ROI for the
workflows that take one mask per row, :func:`read_cohort`'s ``one_roi``). Paths are relative to the
file. A case is identified by its *key*: the id plus whichever of timepoint / observer / channel it
has, so one patient may appear once per timepoint, observer or channel, but never twice the same.

A folder is discovered instead: one sub-folder per patient (the folder name is the id) holding
image/mask pairs named ``<name>_image.<ext>`` / ``<name>_mask.<ext>`` (also ``label``, ``labels``,
``seg``, ``segmentation`` for the mask, ``img`` for the image); when a patient has several pairs
(``CT_image`` + ``CT_mask``, ``PET_image`` + ``PET_mask``) the ``<name>`` part is the channel. A
folder without patient sub-folders is one flat list of pairs whose ``<name>`` is the id
(``brain1_image.nrrd`` + ``brain1_label.nrrd``).

Every row is validated before any work: columns, ids, files present and readable as images (every
voxel is read), mask a label map on the image's grid, requested labels present. All problems are
collected, each with its row (the line of the file, header = row 1) or folder, and reported at once.
Each valid case carries the SHA-256 of its image and mask files, from which :func:`case_hash` makes
the hash that tells a batch run whether a finished case is still up to date.
"""

import csv
import difflib
import hashlib
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import RadiomicsLabError
from .imageio import read_image
from .provenance import file_sha256
from .validation import check_mask_is_label_map, grid_differences, labels_present

REQUIRED_COLUMNS = ("id", "image", "mask")
OPTIONAL_COLUMNS = ("label", "timepoint", "observer", "channel", "roi")
#: Optional columns that are part of a case's identity (a patient may appear once per value).
KEY_COLUMNS = ("timepoint", "observer", "channel")
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".img.gz", ".img", ".tif", ".tiff")
MASK_WORDS = ("mask", "label", "labels", "labelmap", "seg", "segmentation")
IMAGE_WORDS = ("image", "img")


@dataclass(frozen=True)
class Case:
    """One case of a cohort: image, mask, the labels to use (empty: all) and its identity.

    ``where`` is the row (``row 4``) or folder it came from; ``image_sha256`` / ``mask_sha256`` are
    the SHA-256 of the files (for a DICOM folder: of its files' names and contents); ``roi_voxels``
    counts the mask voxels of the chosen labels, ``image_voxels`` the image's voxels and ``segments`` the number of
    labels extracted (what :func:`cost_estimate` makes the estimate from that orders the work, largest first).
    ``roi``: with a DICOM RTSTRUCT / SEG mask, the ROI taken ("": every ROI); read the mask with
    :func:`case_mask`, or each ROI on its own with :func:`RadiomicsLabLib.extraction.read_dicom_inputs`.
    """

    id: str
    image: Path
    mask: Path
    labels: tuple = ()
    timepoint: str = ""
    observer: str = ""
    channel: str = ""
    where: str = ""
    image_sha256: str = ""
    mask_sha256: str = ""
    roi_voxels: int = 0
    roi: str = ""
    image_voxels: int = 0
    segments: int = 1

    @property
    def key(self) -> str:
        """The case's identity: ``id``, or ``id__timepoint-T1__channel-CT`` when it has key columns."""
        parts = [self.id] + [f"{column}-{getattr(self, column)}" for column in KEY_COLUMNS if getattr(self, column)]
        return "__".join(parts)

    def key_values(self) -> dict:
        """``{"id": ..., "timepoint": ..., "observer": ..., "channel": ...}``."""
        return {"id": self.id, **{column: getattr(self, column) for column in KEY_COLUMNS}}

    def inputs(self) -> dict:
        """Where the case's data came from, for the provenance."""
        return {"image_file": {"path": str(self.image), "sha256": self.image_sha256},
                "mask_file": {"path": str(self.mask), "sha256": self.mask_sha256},
                "labels": list(self.labels), **{k: v for k, v in self.key_values().items() if v},
                **({"roi": self.roi} if self.roi else {})}

    @property
    def dicom_mask(self) -> bool:
        """Whether the mask is a DICOM RTSTRUCT or SEG (read on the image's series)."""
        return is_dicom_file(self.mask)


def is_dicom_file(path) -> bool:
    """Whether ``path`` is a DICOM RTSTRUCT or SEG file."""
    from .dicom import is_dicom_mask

    return bool(path) and Path(path).is_file() and is_dicom_mask(path)


def case_mask(case: Case, what: str = "mask") -> tuple:
    """``(label map, {segment name: label})`` of a case's mask (:func:`RadiomicsLabLib.dicom.read_mask`): a label
    map file as it is, or a DICOM RTSTRUCT / SEG's ROI ``case.roi`` (default every ROI) on the image's series."""
    from .dicom import read_mask

    return read_mask(case.mask, case.image, what, [case.roi] if case.roi else None)


@dataclass(frozen=True)
class CohortProblem:
    """One problem of a cohort file, with the row (or folder) where it is."""

    where: str
    message: str
    case_id: str = ""

    def __str__(self) -> str:
        who = f" (id '{self.case_id}')" if self.case_id else ""
        return f"{self.where}{who}: {self.message}"


@dataclass
class Cohort:
    """The valid cases of a cohort file or folder, and every problem found in it."""

    source: Path
    cases: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    key_columns: tuple = ()
    source_sha256: str = ""

    def problem_report(self) -> str:
        """Every problem, one per line, each with its row."""
        return "\n".join(f"  {problem}" for problem in self.problems)

    def check(self, keep_going: bool = False) -> "Cohort":
        """Raise a :class:`RadiomicsLabError` listing every problem, unless ``keep_going`` (then only when no case is valid)."""
        if self.problems and (not keep_going or not self.cases):
            count = f"{len(self.problems)} problem{'s' if len(self.problems) > 1 else ''}"
            what = ("fix them, or use --keep-going (keep_going=True) to run the valid cases"
                    if self.cases else "no case is valid; fix them")
            raise RadiomicsLabError(f"The cohort '{self.source}' has {count}; {what}:\n{self.problem_report()}")
        if not self.cases:
            raise RadiomicsLabError(f"The cohort '{self.source}' has no cases; add rows id,image,mask.")
        return self

    def add_problems(self, problems) -> "Cohort":
        """Add problems a workflow found in the cohort (e.g. dates out of order, a lesion with one observer),
        each with its row(s), so that :meth:`check` lists them with the file's own problems, in row order."""
        self.problems = sorted([*self.problems, *problems], key=_row_order)  # stable: same rows keep their order
        return self

    def skip_patients_with_problems(self, what: str = "patient") -> "Cohort":
        """Leave out every case of an id that has a problem: per-patient workflows (delta, habitats, observers)
        run a patient with all its rows or not at all. Each valid row left out becomes a problem too (it is
        listed in errors.csv), unless a problem already names its row. ``what`` names an id in messages."""
        bad = {problem.case_id for problem in self.problems if problem.case_id}
        named = {row for problem in self.problems for row in problem_rows(problem.where)}
        self.problems += [CohortProblem(case.where, f"skipped with the other rows of {what} '{case.id}', which has a "
                                                    "problem", case.id)
                          for case in self.cases if case.id in bad and case.where not in named]
        self.problems.sort(key=_row_order)
        self.cases = [case for case in self.cases if case.id not in bad]
        return self

    def patients(self) -> dict:
        """id -> [its cases, in file order], ids in order of first appearance."""
        grouped = {}
        for case in self.cases:
            grouped.setdefault(case.id, []).append(case)
        return grouped


def cohort_inputs(cohort: Cohort) -> list:
    """(role, path) of every file a cohort names (its source and each case's image and mask), for
    :func:`RadiomicsLabLib.fileio.check_outputs`: no output may be one of them."""
    inputs = [("cohort", cohort.source)]
    for case in cohort.cases:
        inputs += [(f"image of case '{case.id}'", case.image), (f"mask of case '{case.id}'", case.mask)]
    return inputs


def rows_where(cases) -> str:
    """Where a problem of several cases is: ``rows 2, 3`` for rows of a file, else their places joined."""
    return join_places(case.where for case in cases)


def join_places(places) -> str:
    """``row 2``, ``row 3`` -> ``rows 2, 3``; other places (folders) joined with commas."""
    places = list(dict.fromkeys(places))
    if len(places) > 1 and all(re.fullmatch(r"row \d+", place) for place in places):
        return "rows " + ", ".join(place[4:] for place in places)
    return ", ".join(places)


def problem_rows(where: str) -> set:
    """The single places (``row 3``) that a problem's ``where`` (``rows 2, 3`` or ``row 3``) names."""
    match = re.fullmatch(r"rows ([\d, ]+)", where)
    if match:
        return {f"row {number}" for number in re.findall(r"\d+", match.group(1))}
    return {where}


def _row_order(problem) -> float:
    """Sort key of a problem: its (first) row number; problems without one keep their order, after them."""
    match = re.match(r"rows? (\d+)", problem.where)
    return int(match.group(1)) if match else float("inf")


def _split_outside(entries, root: Path, source: Path) -> tuple[list, list]:
    """(entries whose image and mask are inside ``root``, a problem for each file of the others)."""
    kept, problems = [], []
    for where, fields in entries:
        outside = [(role, fields[role]) for role in ("image", "mask")
                   if fields.get(role) and not Path(fields[role]).resolve().is_relative_to(root)]
        for role, file in outside:
            shown = file.relative_to(source.parent) if file.is_relative_to(source.parent) else file
            problems.append(CohortProblem(where, f"the {role} '{shown}' is outside the data folder '{root}'; "
                                                 "only files inside it can be used here", fields.get("id", "")))
        if not outside:
            kept.append((where, fields))
    return kept, problems


def read_cohort(path, channels=None, inside=None, one_roi: bool = False) -> Cohort:
    """Read and validate a cohort CSV file or discover one in a folder (see the module docstring).

    ``channels``: keep only cases of these channels. ``inside``: a folder every image and mask must be
    in (links and ``..`` resolved; e.g. a web server's data folder); a row naming a file outside it is a
    problem and none of its files is read. ``one_roi``: each row is one mask (habitats, delta, observers): a
    DICOM mask without ``roi`` gives its only ROI (or the ROI named like the row's observer), else a problem
    listing its ROIs; otherwise (extraction) every ROI. Problems are collected, never raised; call
    :meth:`Cohort.check` to refuse a cohort with problems.
    """
    path = Path(path).expanduser().absolute()  # workers may run elsewhere: every path absolute
    if not path.exists():
        raise RadiomicsLabError(f"Cannot read cohort '{path}': no such file or folder; give a CSV file or a folder of cases.")
    if path.is_dir():
        entries, problems, key_columns, digest = _discover(path)
    else:
        entries, problems, key_columns, digest = _parse_csv(path)
    if inside is not None:
        entries, outside = _split_outside(entries, Path(inside).resolve(), path)
        problems += outside
    if channels:
        entries = [e for e in entries if e[1].get("channel", "") in set(channels)]
        if not entries and not problems:
            problems.append(CohortProblem(str(path), f"no case has channel {', '.join(channels)}"))
    checked, seen = [], {}  # per entry in file order: its duplicate problem, or its validation
    for where, fields in entries:
        key = _entry_key(fields)
        if fields.get("id") and key in seen:
            extra = [f"{c} '{fields[c]}'" for c in KEY_COLUMNS if fields.get(c)]
            what = f"id '{fields['id']}'" + (f" with {', '.join(extra)}" if extra else "")
            checked.append((None, [CohortProblem(where, f"duplicate case: {what} is also on {seen[key]}; give each "
                                                        "case its own id", fields["id"])]))
        else:
            seen.setdefault(key, where)
            checked.append((where, fields))
    # Validation reads every image (SimpleITK releases the GIL while reading): one thread per core.
    with ThreadPoolExecutor(max(1, min(available_cores(), len(checked)))) as pool:
        validated = [pool.submit(_validate_entry, *entry, one_roi) if entry[0] is not None else None for entry in checked]
        cases = []
        for entry, future in zip(checked, validated):
            case, case_problems = future.result() if future is not None else entry
            problems += case_problems
            if case is not None:
                cases.append(case)
    return Cohort(path, cases, problems, key_columns, digest)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


#: Weights of :func:`cost_estimate`, in ROI-voxel equivalents, fitted to the per-case seconds of real cases (brain,
#: breast, prostate phantom, sarcoma CT / MR / PET) with pyradiomics' filters: a segment's fixed cost, and the
#: voxels of the whole image per ROI voxel (pyradiomics filters the whole image, once per segment, without preCrop).
SEGMENT_COST, IMAGE_VOXELS_PER_ROI_VOXEL = 7000, 30


def cost_estimate(case: Case) -> float:
    """The relative cost of a case, to run the largest first (the last to finish are then the smallest, so workers
    end together): ROI voxels, plus per segment a fixed cost and its share of the whole image (filters and
    resampling work on the image, texture on the ROI). A case with a small ROI in a large image (a brain lesion) is
    no small case once the image is filtered."""
    return case.roi_voxels + case.segments * (SEGMENT_COST + case.image_voxels / IMAGE_VOXELS_PER_ROI_VOXEL)


def case_hash(case: Case, task_name: str, fingerprint) -> str:
    """SHA-256 identifying a case's result: the task, its settings (``fingerprint``, JSON-able),
    the image and mask contents and the case's labels and key. Paths are left out, so moving the
    data keeps finished results valid; changing a file, a label or a setting invalidates them."""
    content = {"task": task_name, "settings": fingerprint, "image_sha256": case.image_sha256,
               "mask_sha256": case.mask_sha256, "labels": list(case.labels), "key": case.key,
               **({"roi": case.roi} if case.roi else {})}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def path_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode() + b"\0" + bytes.fromhex(file_sha256(item)))
    return digest.hexdigest()


# CSV ------------------------------------------------------------------------------------------
def _parse_csv(path: Path):
    """(entries, problems, key columns, file SHA-256); an entry is (where, {column: text})."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as error:
        raise RadiomicsLabError(f"Cannot read cohort file '{path}': {error.strerror}.") from None
    except UnicodeDecodeError:
        raise RadiomicsLabError(f"The cohort file '{path}' is not UTF-8 text; save it as CSV (UTF-8).") from None
    digest = hashlib.sha256(raw).hexdigest()
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count) if any(d in first for d in ",;\t") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        return [], [CohortProblem("row 1", "the file is empty; the first row must name the columns id,image,mask")], (), digest
    columns = [cell.strip().lower() for cell in header]
    problems = []
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    for column in sorted(set(columns) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS) - {""}):
        close = difflib.get_close_matches(column, REQUIRED_COLUMNS + OPTIONAL_COLUMNS, n=1, cutoff=0.75)
        if close and close[0] not in columns:
            problems.append(CohortProblem("row 1", f"unknown column '{column}'; did you mean '{close[0]}'?"))
    if missing:
        problems.insert(0, CohortProblem(
            "row 1", f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; the first row must name "
                     f"the columns id,image,mask (optional: {','.join(OPTIONAL_COLUMNS)}), found {','.join(columns)}"))
        return [], problems, (), digest
    duplicated = sorted({c for c in columns if c and columns.count(c) > 1})
    if duplicated:
        problems.append(CohortProblem("row 1", f"column{'s' if len(duplicated) > 1 else ''} {', '.join(duplicated)} appear twice; keep one of each"))
        return [], problems, (), digest
    entries = []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        where = f"row {reader.line_num}"
        if len(cells) > len(columns):
            problems.append(CohortProblem(where, f"{len(cells)} cells but the header has {len(columns)} columns; "
                                                 "quote paths that contain the separator"))
            continue
        fields = {c: v.strip() for c, v in zip(columns, cells) if c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
        for column, value in fields.items():
            if column in ("image", "mask") and value:
                fields[column] = path.parent / Path(value).expanduser()
        entries.append((where, fields))
    key_columns = tuple(c for c in KEY_COLUMNS if c in columns and any(f.get(c) for _, f in entries))
    return entries, problems, key_columns, digest


# Folder discovery -----------------------------------------------------------------------------
def _discover(folder: Path):
    """Entries of a folder of patients (or one flat folder of pairs); see the module docstring."""
    problems, entries = [], []
    patients = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_patient = []
    for patient in patients:
        pairs, unpaired = _pairs_in(patient)
        if not pairs:
            problems.append(CohortProblem(f"folder '{patient.name}'", "no image/mask pair found (expected files like "
                                          "CT_image.nii.gz + CT_mask.nii.gz, or image.nrrd + mask.nrrd)", patient.name))
        per_patient.append((patient, pairs, unpaired))
    flat_pairs, flat_unpaired = _pairs_in(folder)
    if flat_pairs and not any(pairs for _, pairs, _ in per_patient):
        problems = []
        for name, image, mask in flat_pairs:
            entries.append((f"file '{mask.name}'", {"id": name, "image": image, "mask": mask}))
        unpaired_lists = [(folder, flat_unpaired)]
    else:
        with_channels = any(len(pairs) > 1 for _, pairs, _ in per_patient)
        for patient, pairs, _ in per_patient:
            for name, image, mask in pairs:
                fields = {"id": patient.name, "image": image, "mask": mask}
                if with_channels:
                    fields["channel"] = name
                entries.append((f"folder '{patient.name}'", fields))
        unpaired_lists = [(patient, unpaired) for patient, pairs, unpaired in per_patient if pairs]
    for where, unpaired in unpaired_lists:
        for item in unpaired:
            problems.append(CohortProblem(f"folder '{where.name}'", f"'{item.name}' has no matching image or mask "
                                          "(pairs are named <name>_image.<ext> and <name>_mask.<ext>)"))
    if not entries and not problems:
        problems.append(CohortProblem(f"folder '{folder.name}'", "no patient folders or image/mask pairs found"))
    key_columns = ("channel",) if any("channel" in f for _, f in entries) else ()
    listing = "\n".join(f"{w}\t{f['image']}\t{f['mask']}" for w, f in entries)
    return entries, problems, key_columns, hashlib.sha256(listing.encode()).hexdigest()


def _pairs_in(folder: Path):
    """([(name, image, mask)], [image files left unpaired]) in one folder (not recursive).

    A mask is a file whose name has a mask word as a ``_``/``-``/``.`` separated token
    (``CT_mask``); its image has that token replaced by ``image`` / ``img`` (``CT_image``) or
    removed (``CT``); ``name`` is the rest of the name (``CT``).
    """
    files, stems = {}, {}
    for item in sorted(folder.iterdir()):
        extension = next((e for e in IMAGE_EXTENSIONS if item.name.lower().endswith(e)), None)
        if item.is_file() and extension and not item.name.startswith("."):
            stems[item.name[: -len(extension)].lower()] = item.name[: -len(extension)]
            files[item.name[: -len(extension)].lower()] = item
    pairs, used = [], set()
    for stem, mask in files.items():
        tokens = re.split(r"([_\-. ])", stem)
        words = [i for i, token in enumerate(tokens) if token in MASK_WORDS]
        if not words or stem in used:
            continue
        i = words[-1]
        without = slice(max(i - 1, 0), i + 1) if i else slice(0, 2)  # the word and one separator next to it
        rest = tokens[:without.start] + tokens[without.stop:]
        candidates = ["".join(tokens[:i] + [word] + tokens[i + 1:]) for word in IMAGE_WORDS] + ["".join(rest)]
        found = next((c for c in candidates if c in files and c != stem and c not in used), None)
        if found is not None:
            original = re.split(r"([_\-. ])", stems[stem])
            pairs.append(("".join(original[:without.start] + original[without.stop:]).strip("_-. "), files[found], mask))
            used.update({stem, found})
    unpaired = [files[s] for s in files if s not in used]
    return pairs, unpaired


# Validation of one entry -------------------------------------------------------------------
def _validate_entry(where: str, fields: dict, one_roi: bool = False):
    """(Case or None, problems) for one row or discovered pair: every check, every problem."""
    case_id = str(fields.get("id", ""))
    problems = []

    def problem(message):
        problems.append(CohortProblem(where, message, case_id))

    if not case_id:
        problem("the id is empty; give every case an id")
    labels = ()
    label_text = str(fields.get("label", "") or "")
    if label_text:
        parts = [p for p in re.split(r"[;+ ]+", label_text) if p]
        if all(re.fullmatch(r"\d+", p) and int(p) > 0 for p in parts):
            labels = tuple(dict.fromkeys(int(p) for p in parts))
        else:
            problem(f"label '{label_text}' is not a positive whole number; write e.g. 1, or 1;2 for several labels")
    roi = str(fields.get("roi", "") or "")
    if is_dicom_file(fields.get("mask")):
        return _validate_dicom_entry(where, fields, labels, roi, one_roi, problems)
    if roi:
        problem(f"roi '{roi}' names an ROI of a DICOM RTSTRUCT or SEG, and the mask '{fields.get('mask')}' is a label "
                "map; choose its labels in the label column")
    images = {}
    for role in ("image", "mask"):
        value = fields.get(role)
        if not value:
            problem(f"the {role} is empty; give the {role} file")
            continue
        try:
            images[role] = read_image(value, role)
        except RadiomicsLabError as error:
            problem(_lower_first(str(error)))
    if "mask" in images:
        try:
            images["mask"] = check_mask_is_label_map(images["mask"], where=f"mask '{fields['mask']}'")
        except RadiomicsLabError as error:
            problem(_lower_first(str(error)))
            del images["mask"]
    if len(images) == 2:
        differences = grid_differences(images["image"], images["mask"])
        if differences:
            problem("image and mask are on different grids: " + "; ".join(differences)
                    + "; resample the mask onto the image grid")
    roi_voxels = 0
    if "mask" in images and not problems:
        present = labels_present(images["mask"])
        array = sitk.GetArrayViewFromImage(images["mask"])
        roi_voxels = int(np.count_nonzero(np.isin(array, labels)) if labels else np.count_nonzero(array))
        segments = len(labels) if labels else len(present)
        absent = [label for label in labels if label not in present]
        if not present:
            problem(f"the mask '{fields['mask']}' is empty (no label); segment the case or remove the row")
        elif absent:
            problem(f"the mask has no voxels with label {', '.join(map(str, absent))}; labels present: "
                    f"{', '.join(map(str, present))}")
    if problems:
        return None, problems
    key = {column: str(fields.get(column, "") or "") for column in KEY_COLUMNS}
    case = Case(case_id, Path(fields["image"]), Path(fields["mask"]), labels, where=where,
                image_sha256=path_sha256(fields["image"]), mask_sha256=path_sha256(fields["mask"]), roi_voxels=roi_voxels,
                image_voxels=int(np.prod(images["image"].GetSize(), dtype=np.int64)), segments=max(1, segments), **key)
    return case, []


def _validate_dicom_entry(where: str, fields: dict, labels: tuple, roi: str, one_roi: bool, problems: list):
    """(Case or None, problems) of a row whose mask is a DICOM RTSTRUCT or SEG: the image its series folder, the
    ROI (``roi``, or with ``one_roi`` the file's only one) in the file, every ROI taken rasterised on the series."""
    from .dicom import read_dicom_segments
    from .dicom.masks import check_series_folder, only_roi

    case_id, mask = str(fields.get("id", "")), Path(fields["mask"])
    if labels:
        problems.append(CohortProblem(where, f"label picks label values of a label map, and the mask '{mask}' is a "
                                             "DICOM RTSTRUCT or SEG; name its ROI in the roi column", case_id))
    try:
        if not fields.get("image"):
            raise RadiomicsLabError("the image is empty; give the folder of the DICOM series the mask was drawn on")
        check_series_folder(mask, fields["image"])
        if not roi and one_roi:
            roi = only_roi(mask, str(fields.get("observer", "") or "") or None, "mask", "name one in the roi column")
        segments = read_dicom_segments(mask, fields["image"], [roi] if roi else None)
    except RadiomicsLabError as error:
        problems.append(CohortProblem(where, _lower_first(str(error)), case_id))
    if problems:
        return None, problems
    voxels = sum(int(np.count_nonzero(sitk.GetArrayViewFromImage(s.mask))) for s in segments)
    key = {column: str(fields.get(column, "") or "") for column in KEY_COLUMNS}
    return Case(case_id, Path(fields["image"]), mask, (), where=where, image_sha256=path_sha256(fields["image"]),
                mask_sha256=path_sha256(mask), roi_voxels=voxels, roi=roi, **key), []


def _entry_key(fields: dict) -> tuple:
    return (str(fields.get("id", "")), *(str(fields.get(column, "") or "") for column in KEY_COLUMNS))


def _lower_first(message: str) -> str:
    return message[:1].lower() + message[1:]
