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
  (in the batch mode each patient's task wrote them).
"""

import json
from pathlib import Path

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


def write_delta_outputs(folder, results, features=None, waterfall_feature=None) -> dict:
    """Write every file of a delta run into ``folder`` (see the module), each atomically; returns name relative to
    the folder (``"delta.csv"``, ``"maps/STS_002_week6_difference.nii.gz"``) -> path.

    ``results``: the patients' :class:`~RadiomicsLabLib.delta.DeltaResult` (their images written too), or the
    :class:`~RadiomicsLabLib.delta.CohortResults` of the batch mode (whose tasks wrote the images); ``features``,
    ``waterfall_feature``: what the plots show (default: :func:`~RadiomicsLabLib.delta.default_plot_features`).
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
    return written


# The cohort mode ---------------------------------------------------------------------------------
def read_cohort(path, reference: str = "baseline", lesions=(), outputs=(), keep_going: bool = False):
    """A delta cohort file read and checked: the file's problems and the delta's (dates, order, reference, lesions),
    each with its row, all at once (raised unless ``keep_going``: then a patient with a problem is left out whole);
    none of ``outputs`` may be one of its images or masks."""
    from .cohort import cohort_inputs
    from .cohort import read_cohort as read_cohort_file
    from .delta import cohort_problems
    from .fileio import check_outputs

    cohort = read_cohort_file(path)
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
