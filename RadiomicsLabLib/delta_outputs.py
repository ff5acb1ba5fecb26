"""The files of a delta run (:mod:`RadiomicsLabLib.delta`): table, plots, provenance, registrations, images.

One function writes them, :func:`write_delta_outputs`, for every caller: ``radiomicslab delta`` (one patient, an
in-process cohort, ``--scene`` and the cohort on the batch layer) and
:meth:`RadiomicsLabLib.mrml.delta.DeltaLogic.save_results` (the desktop module's and the web app's "save results"),
so the same run gives the same files byte for byte:

- ``delta.csv``, ``trajectories.png`` and ``waterfall.png`` (:func:`~RadiomicsLabLib.delta.write_outputs`; the
  plots drawn from :func:`~RadiomicsLabLib.delta.trajectories` and :func:`~RadiomicsLabLib.delta.waterfall`, the
  series the scene's charts show);
- ``delta.provenance.json`` (one patient's provenance, or ``{"patients": [...]}``);
- with a registration, ``registration.csv``;
- the propagated masks (``masks/``) and difference maps (``maps/``) of :func:`~RadiomicsLabLib.delta.result_images`
  (in the batch mode each patient's task wrote them); with ``seg`` (``--seg FOLDER_OR_PREFIX``) each propagated
  mask also as a DICOM SEG referencing its timepoint's DICOM series (:func:`seg_path`, :func:`check_seg`).

Here too what a run of ``--timepoint`` options reads (:func:`parse_timepoint`, :func:`read_timepoints`) and runs
(:func:`run_patients`).
"""

import json
from pathlib import Path

from .errors import RadiomicsLabError

#: What every run writes into its output folder (besides registration.csv, masks/, maps/).
OUTPUT_FILES = ("delta.csv", "delta.provenance.json", "trajectories.png", "waterfall.png")


def output_paths(folder, register: bool = False, scene: bool = False) -> list:
    """The files of :data:`OUTPUT_FILES` in ``folder``, with ``registration.csv`` (``register``) and ``delta.mrb``
    (``scene``: the command's --scene)."""
    names = OUTPUT_FILES + (("registration.csv",) if register else ()) + (("delta.mrb",) if scene else ())
    return [Path(folder) / name for name in names]


def delta_provenance(results) -> dict:
    """``delta.provenance.json`` of :class:`~RadiomicsLabLib.delta.DeltaResult` s: one patient's provenance, or
    ``{"patients": [...]}``."""
    return results[0].provenance if len(results) == 1 else {"patients": [r.provenance for r in results]}


def registered(provenance: dict) -> bool:
    """Whether a run's provenance (:func:`delta_provenance`) has a registration (then registration.csv is written)."""
    patients = provenance.get("patients", [provenance])
    return any(p.get("registration") is not None for p in patients)


def write_delta_outputs(folder, results, features=None, waterfall_feature=None, seg=None) -> dict:
    """Write every file of a delta run into ``folder`` (see the module), each atomically; returns name relative to
    the folder (``"delta.csv"``, ``"maps/STS_002_week6_difference.nii.gz"``) -> path.

    ``results``: the patients' :class:`~RadiomicsLabLib.delta.DeltaResult` (their images written too), or the
    :class:`~RadiomicsLabLib.delta.CohortResults` of the batch mode (whose tasks wrote the images); ``features``,
    ``waterfall_feature``: what the plots show (default: :func:`~RadiomicsLabLib.delta.default_plot_features`);
    ``seg``: also each propagated mask as a DICOM SEG (:func:`seg_path`; checked before the run by :func:`check_seg`).
    Every image path is checked (none may be an input) before the first file is written."""
    from .delta import (CohortResults, registration_csv_text, registration_rows, result_images,
                        write_outputs)
    from .fileio import check_outputs, write_image_atomic, write_text_atomic

    folder = Path(folder)
    if isinstance(results, CohortResults):
        rows, provenance, registration, images = results.rows, results.provenance, results.registration, []
    else:
        rows = [r for result in results for r in result.rows]
        provenance = delta_provenance(results)
        registration = [row for result in results for row in registration_rows(result)]
        images = [image for result in results for image in result_images(result, folder)]
        sources = [(f"{key} of timepoint '{tp.label}'", value) for result in results for tp in result.timepoints
                   for key, value in tp.source.items() if key in ("image", "mask") and value and Path(str(value)).exists()]
        check_outputs([path for path, _ in images], sources)
    written = write_outputs(rows, folder, list(features or []) or None, waterfall_feature)
    written["delta.provenance.json"] = write_text_atomic(folder / "delta.provenance.json",
                                                         json.dumps(provenance, indent=2, default=str) + "\n")
    if registered(provenance):
        written["registration.csv"] = write_text_atomic(folder / "registration.csv", registration_csv_text(registration))
    for path, image in images:
        written[path.relative_to(folder).as_posix()] = write_image_atomic(image, path)
    if seg is not None and not isinstance(results, CohortResults):
        for result in results:
            written.update(write_propagated_segs(result, seg))
    return written


# Propagated masks as DICOM SEG ---------------------------------------------------------------------
def seg_path(seg, patient: str, timepoint: str) -> Path:
    """Where ``--seg FOLDER_OR_PREFIX`` puts a propagated mask: ``FOLDER/<patient>_<timepoint>_propagated.dcm`` for
    an existing folder (or a name ending in /), else ``PREFIX_<patient>_<timepoint>_propagated.dcm``."""
    from .habitats import safe_name

    name = f"{safe_name(patient)}_{safe_name(timepoint)}_propagated.dcm"
    text = str(seg)
    if Path(seg).is_dir() or text.endswith(("/", "\\")):
        return Path(seg) / name
    return Path(text + ("" if text.endswith(("_", "-", ".")) else "_") + name)


def check_seg(seg, patient: str, timepoints, propagate: bool, inputs=()) -> dict:
    """``--seg`` checked before any work: propagation on, at least one follow-up without a mask, each such follow-up's
    image a DICOM series folder and its SEG writable (:func:`~RadiomicsLabLib.dicom.masks.check_seg_output`).
    ``timepoints``: the :class:`~RadiomicsLabLib.delta.Timepoint` s read. Returns timepoint label -> SEG path."""
    from .dicom.masks import check_seg_output

    followups = [tp for tp in timepoints[1:] if tp.mask is None]
    if not propagate or not followups:
        raise RadiomicsLabError("--seg writes the masks delta propagates to follow-ups given without a mask; give "
                                "--propagate (with --register) and a follow-up as DATE:IMAGE, or leave out --seg.")
    paths = {}
    for tp in followups:
        path = seg_path(seg, patient, tp.label)
        check_seg_output(path, tp.source["image"], [*inputs, *(("--seg output", p) for p in paths.values())],
                         image_role=f"the image of timepoint '{tp.label}'")
        paths[tp.label] = path
    return paths


def write_propagated_segs(result, seg) -> dict:
    """Each propagated mask of a :class:`~RadiomicsLabLib.delta.DeltaResult` as a DICOM SEG on its timepoint's series
    (one segment per lesion present, named as in delta.csv, coded as a lesion); returns file name -> path."""
    import numpy as np
    import SimpleITK as sitk

    from .delta import propagated_timepoints
    from .dicom.write import LESION, SegmentToWrite, write_seg

    written = {}
    for tp in propagated_timepoints(result):
        labels = sitk.GetArrayViewFromImage(tp.mask)
        segments = []
        for name, label in result.lesions.items():
            if np.any(labels == label):
                mask = sitk.GetImageFromArray((labels == label).astype(np.uint8))
                mask.CopyInformation(tp.mask)
                segments.append(SegmentToWrite(name, mask, *LESION))
        if segments:
            path = seg_path(seg, result.patient, tp.label)
            written[path.name] = write_seg(segments, tp.source["image"], path,
                                           series_description=f"RadiomicsLab propagated mask ({tp.source['mask']})")
    return written


# Timepoints from the command line ----------------------------------------------------------------
def parse_timepoint(spec: str) -> tuple[str, str, str]:
    """``DATE:IMAGE:MASK`` -> (date, image, mask); ``DATE:IMAGE`` and ``DATE:IMAGE:`` have no mask; DATE may be empty."""
    date, colon, rest = spec.partition(":")
    if not colon or not rest:
        raise RadiomicsLabError(f"--timepoint '{spec}' must be DATE:IMAGE:MASK (e.g. 2021-03-04:ct.nii.gz:gtv.nii.gz).")
    image, _, mask = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not image:
        raise RadiomicsLabError(f"--timepoint '{spec}' has no image; write DATE:IMAGE:MASK.")
    return date.strip(), image, mask


def registration_options(shrink=None, iterations=None, seed=1) -> dict:
    """:func:`~RadiomicsLabLib.registration.register` options of ``--registration-shrink 4,2,1``,
    ``--registration-iterations`` and ``--seed``."""
    options = {"seed": seed}
    if shrink:
        try:
            factors = tuple(int(s) for s in shrink.split(","))
        except ValueError:
            raise RadiomicsLabError(f"--registration-shrink '{shrink}' must be whole numbers separated by commas, e.g. 4,2,1.") from None
        if not factors or min(factors) < 1:
            raise RadiomicsLabError(f"--registration-shrink '{shrink}' needs factors of at least 1, e.g. 4,2,1.")
        options["shrink_factors"] = factors
        options["smoothing_sigmas_mm"] = tuple(2.0 if f > 1 else 0.0 for f in factors)  # 2 mm on shrunk levels, none at full resolution
    if iterations:
        options["iterations"] = iterations
    return options


def read_timepoints(specs, labels=(), rois=()) -> list:
    """The timepoints of ``--timepoint`` texts (:func:`parse_timepoint`), named by ``labels`` (default baseline, T1,
    ...); ``rois``: the ROIs of the DICOM masks to follow (default all; label-map masks of other timepoints are read
    as they are)."""
    from .cohort import is_dicom_file
    from .delta import default_labels, timepoint_from_files

    if labels and len(labels) != len(specs):
        raise RadiomicsLabError(f"Give one --label per --timepoint: {len(labels)} labels for {len(specs)} timepoints.")
    names = list(labels) or default_labels(len(specs))
    parsed = [parse_timepoint(spec) for spec in specs]
    dicom = any(is_dicom_file(mask) for _, _, mask in parsed if mask)
    return [timepoint_from_files(date, image, mask or None, name, rois if is_dicom_file(mask) or not dicom else None)
            for (date, image, mask), name in zip(parsed, names)]


def run_patients(patients: dict, cohort: bool, options: dict, progress=None, check_only: bool = False):
    """The core on each patient (patient -> (timepoints, lesion labels)): :func:`~RadiomicsLabLib.delta.run_delta` for
    one patient given by ``--timepoint``, :func:`~RadiomicsLabLib.delta.run_cohort` for an in-process cohort; with
    ``check_only`` (before a scene is built) every check and no work. Returns the results (None with ``check_only``)."""
    from .delta import check_cohort, check_inputs, run_cohort, run_delta

    if cohort:
        return check_cohort(patients, **options) if check_only else run_cohort(patients, progress=progress, **options)
    (patient, (tps, labels)), = patients.items()
    if check_only:
        return check_inputs(tps, options["settings"], labels or None, options["register"], options["propagate"],
                            options["reference"], options["icc_table"], options["icc_column"],
                            options["difference_maps"], options["registration_options"])
    return [run_delta(tps, lesions=labels or None, patient=patient, progress=progress, **options)]


def read_cohort_patients(path, reference: str = "baseline", lesions=(), outputs=()) -> dict:
    """patient -> (timepoints, lesion labels: ``lesions`` or the patient's label column) of a cohort file run in
    this process (``--cohort --scene``), every row checked first (:func:`read_cohort`)."""
    from .delta import cohort_timepoints

    patients = cohort_timepoints(read_cohort(path, reference, tuple(lesions), outputs))
    return {p: (tps, tuple(lesions) or labels) for p, (tps, labels) in patients.items()}


# The cohort mode ---------------------------------------------------------------------------------
def read_cohort(path, reference: str = "baseline", lesions=(), outputs=(), keep_going: bool = False):
    """A delta cohort file read and checked: the file's problems and the delta's (dates, order, reference, lesions),
    each with its row, all at once (raised unless ``keep_going``: then a patient with a problem is left out whole);
    none of ``outputs`` may be one of its images or masks."""
    from .cohort import cohort_inputs
    from .cohort import read_cohort as read_cohort_file
    from .delta import cohort_problems
    from .fileio import check_outputs

    cohort = read_cohort_file(path, one_roi=True)
    check_outputs(outputs, cohort_inputs(cohort))
    cohort.add_problems(cohort_problems(cohort, reference, lesions))
    if keep_going:
        cohort.skip_patients_with_problems()
    return cohort.check(keep_going)


def run_cohort(path, folder, options: dict, run_stage, lesions=(), outputs=(), inputs=(), keep_going: bool = False,
               plot_features=None, waterfall_feature=None) -> tuple:
    """A delta cohort on the batch layer (``radiomicslab delta --cohort``): the options checked once, one task per
    patient (:func:`~RadiomicsLabLib.delta.delta_task`, which writes the patient's images) run by
    ``run_stage(read, task)`` (:func:`~RadiomicsLabLib.batch.run_batch` on the cohort ``read()`` returns, e.g. with a
    progress bar), then :func:`write_delta_outputs` from the finished patients. ``options``: :func:`run_delta`'s;
    ``outputs``: the files checked writable besides the batch's, none an input (``inputs``, the cohort's images and
    masks). Returns (the :class:`~RadiomicsLabLib.batch.BatchSummary`, the
    :class:`~RadiomicsLabLib.delta.CohortResults` or None when no patient finished, name -> path written)."""
    from .batch import DONE, case_path, cohort_status, output_files, read_record
    from .delta import check_options, cohort_results, delta_task
    from .fileio import check_outputs

    folder = Path(folder)
    check_options(**options)  # settings, registration, ICC table: once, before any patient
    task = delta_task(folder, lesions, **options)
    outputs = list(outputs) + [folder / name for name in output_files(task)]
    check_outputs(outputs, inputs)
    cohorts = []

    def read():
        cohorts.append(read_cohort(path, options["reference"], lesions, outputs, keep_going))
        return cohorts[0]

    summary = run_stage(read, task)
    done = [s for s in cohort_status(folder, cohorts[0], task) if s.status == DONE]
    if not done:
        return summary, None, {}
    results = cohort_results([read_record(case_path(folder, s.key, task.cases_dir)) for s in done])
    return summary, results, write_delta_outputs(folder, results, plot_features, waterfall_feature)
