"""``radiomicslab delta``: feature change of the same lesions across timepoints (delta-radiomics), with plots.

The options in, one core (or, with ``--scene``, Logic) call out: :func:`RadiomicsLabLib.delta.run_delta` per patient,
or with ``--cohort`` :func:`RadiomicsLabLib.delta_outputs.run_cohort` on the batch layer (one resumable task per
patient, failures in errors.csv); the files are written by :func:`RadiomicsLabLib.delta_outputs.write_delta_outputs`.
"""

import sys
from pathlib import Path

import click

from ..settings import ENGINES
from . import progress_steps
from .batch import BATCH_OPTIONS, cluster_options, refuse_batch_options, run_with_progress


@click.command("delta")
@click.option("--timepoint", "timepoints", multiple=True, metavar="DATE:IMAGE:MASK",
              help="A timepoint, in date order, baseline first (repeatable). DATE is YYYY-MM-DD or YYYYMMDD; leave it "
                   "empty (:IMAGE:MASK) to read the DICOM StudyDate of IMAGE; leave MASK out (DATE:IMAGE) for a follow-up "
                   "whose mask is propagated from the baseline (--propagate).")
@click.option("--roi", "rois", multiple=True,
              help="DICOM RTSTRUCT/SEG masks (IMAGE the DICOM series folder): the ROI / segment to follow, by name "
                   "(repeatable: each a lesion, labelled in this order at every timepoint; default: every ROI).")
@click.option("--seg", type=click.Path(path_type=Path), default=None, metavar="FOLDER_OR_PREFIX",
              help="With --propagate: also write each propagated mask as a DICOM SEG referencing its timepoint's DICOM "
                   "series (IMAGE a series folder): FOLDER/<patient>_<timepoint>_propagated.dcm, or PREFIX_<...>.dcm.")
@click.option("--label", "labels", multiple=True, metavar="NAME",
              help="Name of each timepoint, in the same order (repeatable; default: baseline, T1, T2, ...).")
@click.option("--cohort", type=click.Path(path_type=Path), default=None,
              help="Cohort CSV instead of --timepoint: columns id,image,mask,timepoint (optional label = lesion labels; "
                   "roi = the ROI of a DICOM RTSTRUCT/SEG mask, the image its series folder); "
                   "timepoint is the date (2021-03-04) or NAME@DATE (baseline@2021-03-04); rows of a patient in date order. "
                   "Every row is checked first; then one batch task per patient (resumable: a rerun skips finished "
                   "patients; failures go to DIR/errors.csv). Difference maps are written by the patient's worker, so with "
                   "--scheduler DIR must be a folder the workers can reach.")
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), required=True,
              help="Folder for delta.csv, delta.provenance.json, trajectories.png, waterfall.png (and registration.csv, "
                   "masks/, maps/, delta.mrb; with --cohort errors.csv, provenance.json and the per-patient results, cases/).")
@click.option("--params", default=None, help="Feature settings: pyradiomics parameter file (YAML/JSON) or preset name.")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Feature engine: pyradiomics, native or ibsi (default: what the parameters declare, else pyradiomics where it is installed, else native).")
@click.option("--lesion", "lesions", type=int, multiple=True,
              help="Label value of a lesion to follow (repeatable; default: every label of the baseline mask).")
@click.option("--reference", default="baseline", show_default=True,
              help="Timepoint the changes are measured from: baseline, previous, or a timepoint's name.")
@click.option("--register", type=click.Choice(["rigid", "affine", "bspline"]), default=None,
              help="Register each follow-up onto the baseline (needed by --propagate and --maps).")
@click.option("--propagate", is_flag=True, help="Give follow-ups without a mask the baseline mask, carried over by the registration.")
@click.option("--maps", is_flag=True, help="Write voxel-wise difference maps (follow-up minus baseline, on the baseline grid) to maps/.")
@click.option("--registration-shrink", default=None, metavar="4,2,1",
              help="Shrink factor of each resolution level of the registration (default: 2,1).")
@click.option("--registration-iterations", type=click.IntRange(min=1), default=None,
              help="Optimiser iterations per resolution level (default: 300).")
@click.option("--registration-margin", type=click.FloatRange(min=0), default=20.0, show_default=True,
              help="The registration metric is computed within this distance (mm) of the baseline lesions.")
@click.option("--seed", type=click.IntRange(min=1), default=1, show_default=True,
              help="Seed of the registration's random sampling (the same seed repeats the same registration).")
@click.option("--icc", "icc_table", type=click.Path(path_type=Path), default=None,
              help="ICC table (CSV with feature,icc,ci_low,ci_high) to keep only reproducible features.")
@click.option("--icc-threshold", type=float, default=0.75, show_default=True, help="Keep features whose --icc-column is at least this.")
@click.option("--icc-column", type=click.Choice(["ci_low", "icc", "ci_high"]), default="ci_low", show_default=True,
              help="Column of the ICC table compared with --icc-threshold.")
@click.option("--plot-feature", "plot_features", multiple=True,
              help="Feature drawn in trajectories.png (repeatable; default: volume, mean, contrast, entropy when present).")
@click.option("--waterfall-feature", default=None, help="Feature of waterfall.png (default: the volume).")
@click.option("--patient", default="patient", show_default=True, help="Patient name in the table (without --cohort).")
@click.option("--scene", "with_scene", is_flag=True,
              help="Run through a Slicer scene (timepoints as Sequences) and save it as DIR/delta.mrb "
                   "(in this process: no batch options).")
@cluster_options
def command(timepoints, rois, seg, labels, cohort, output_dir, params, engine, lesions, reference, register, propagate, maps,
            registration_shrink, registration_iterations, registration_margin, seed, icc_table, icc_threshold, icc_column,
            plot_features, waterfall_feature, patient, with_scene, workers, memory_limit, scheduler, retry_failed,
            keep_going):
    """Delta-radiomics: how each lesion's features change from timepoint to timepoint.

    Writes DIR/delta.csv (patient, lesion, feature, timepoint, date, days, value, reference,
    reference_value, delta_abs, delta_rel, delta_per_day, log_ratio, note): delta_abs = v - r,
    delta_rel = 100 (v - r) / r, delta_per_day = (v - r) / days, log_ratio = ln(v / r), where r is
    the value at the reference timepoint. Relative change and log ratio are NaN (with the reason
    in note) when r is 0 or negative. A MASK may be a DICOM RTSTRUCT or SEG with IMAGE its DICOM series
    folder (lesions named by the ROIs; --roi picks them). Exit status: 0, or 1 when a registration did not converge
    and what depended on it was left out (warnings say which) or (--cohort) a patient failed or was
    invalid (listed in DIR/errors.csv), 2 for bad input.
    """
    from RadiomicsLabLib.delta_outputs import (check_seg, output_paths, parse_timepoint, read_cohort_patients,
                                               read_timepoints, registration_options, write_delta_outputs)
    from RadiomicsLabLib.fileio import check_output, check_outputs
    from RadiomicsLabLib.settings import load_settings
    from RadiomicsLabLib.validation import check_label_value

    if bool(timepoints) == bool(cohort):
        raise click.UsageError("Give the timepoints (--timepoint DATE:IMAGE:MASK, at least two) or --cohort FILE, not both.")
    if cohort and (labels or rois or seg):
        raise click.UsageError("--label, --roi and --seg describe --timepoint entries (--seg: their propagated masks); in a "
                               "cohort file write the name in the timepoint column (NAME@DATE) and the ROI in a roi column.")
    batch = dict(workers=workers, memory_limit=memory_limit, scheduler=scheduler, retry_failed=retry_failed,
                 keep_going=keep_going)
    if cohort is None:
        refuse_batch_options(**batch)
    elif with_scene and (workers is not None or scheduler or memory_limit != "auto" or retry_failed or keep_going):
        raise click.UsageError(f"--scene runs the cohort in this process, through one Slicer scene; leave out "
                               f"{', '.join(BATCH_OPTIONS)}, or leave out --scene to run it on the batch layer.")
    options = {"settings": load_settings(params, None, engine), "register": register, "propagate": propagate,
               "reference": reference, "icc_table": icc_table, "icc_threshold": icc_threshold, "icc_column": icc_column, "difference_maps": maps,
               "registration_options": registration_options(registration_shrink, registration_iterations, seed),
               "registration_margin_mm": registration_margin}
    for lesion in lesions:
        check_label_value(lesion, "--lesion")
    inputs = [("cohort", cohort), ("parameter file", params), ("ICC table", icc_table)]
    for spec in timepoints:
        _, image, mask = parse_timepoint(spec)
        inputs += [(f"image of --timepoint '{spec}'", image), (f"mask of --timepoint '{spec}'", mask or None)]
    check_output(output_dir, inputs, "folder")
    outputs = output_paths(output_dir, bool(register), with_scene)
    check_outputs(outputs, inputs)
    if cohort and not with_scene:
        _run_cohort(cohort, output_dir, options, tuple(lesions), outputs, inputs, plot_features, waterfall_feature, batch)
        return
    if cohort:  # through one scene, in this process
        patients = read_cohort_patients(cohort, options["reference"], lesions, outputs)
    else:
        patients = {patient: (read_timepoints(timepoints, labels, rois), tuple(lesions))}
        if seg is not None:
            check_seg(seg, patient, patients[patient][0], propagate, inputs + [("output", p) for p in outputs])
    with progress_steps(unit="step", desc="delta", leave=False, dynamic_ncols=True, ascii=True) as bar:
        results = _run(patients, bool(cohort), options, with_scene, output_dir, plot_features, waterfall_feature, bar)
    written = write_delta_outputs(output_dir, results, plot_features, waterfall_feature, seg)
    unconverged = any(r.left_out or not all(a.used for a in r.alignments.values()) for r in results)
    if _report(written, len(results), sum(len(r.rows) for r in results),
               [(r.patient, warning) for r in results for warning in r.warnings], unconverged):
        sys.exit(1)


def _run_cohort(path, output_dir, options, lesions, outputs, inputs, plot_features, waterfall_feature, batch):
    """The cohort on the batch layer (:func:`~RadiomicsLabLib.delta_outputs.run_cohort`), then its report (a failed or
    invalid patient is in errors.csv and left out of the outputs; exit status 1)."""
    from RadiomicsLabLib.delta_outputs import run_cohort

    def stage(read, task):
        summary = run_with_progress(read, output_dir, task, unit="patient", **batch)
        click.echo(f"Batch: {summary}", err=True)
        return summary

    summary, results, written = run_cohort(path, output_dir, options, stage, lesions, outputs, inputs, batch["keep_going"],
                                           plot_features, waterfall_feature)
    errors = output_dir / "errors.csv"
    if results is None:
        click.echo(f"radiomicslab: no patient finished; the errors are listed in {errors}.", err=True)
        sys.exit(1)
    status = _report(written, results.patients, len(results.rows), results.warnings, results.left_out or results.unused)
    if summary.failed or summary.invalid:
        click.echo(f"radiomicslab: {summary.failed + summary.invalid} patient(s) or row(s) with errors, listed in {errors}; "
                   "the outputs cover the other patients. Fix them and run again (failed patients need --retry-failed).",
                   err=True)
        status = 1
    if status:
        sys.exit(status)


def _report(written: dict, patients: int, rows: int, warnings, unconverged) -> int:
    """The warnings (patient, text), what was written, and whether a registration did not converge (exit status 1)."""
    for patient, warning in warnings:
        click.echo(f"radiomicslab: warning: {patient}: {warning}", err=True)
    click.echo(f"Delta: {patients} patient(s), {rows} rows -> {', '.join(str(p) for p in written.values())}", err=True)
    if unconverged:
        click.echo("radiomicslab: some registrations did not converge; their registered results were left out "
                   "(see the warnings and registration.csv). Try --registration-iterations or another --register.", err=True)
    return 1 if unconverged else 0


def _run(patients, cohort, options, with_scene, output_dir, plot_features, waterfall_feature, progress) -> list:
    """The core on each patient, or (``--scene``) the same through a headless Slicer scene saved as delta.mrb."""
    from RadiomicsLabLib.delta_outputs import run_patients

    if not with_scene:
        return run_patients(patients, cohort, options, progress)
    run_patients(patients, cohort, options, check_only=True)  # every check before the scene is built
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.delta import DeltaLogic

    logic = DeltaLogic(new_headless_app().scene)
    studies = [logic.create_study(tps, patient) for patient, (tps, _) in patients.items()]
    lesion_names = {patient: [f"Label_{n}" for n in labels] or None for patient, (_, labels) in patients.items()}
    nodes = logic.compute(studies, lesions=lesion_names, plot_features=list(plot_features) or None,
                          waterfall_feature=waterfall_feature, progress=progress, **options)
    logic.save_scene(output_dir / "delta.mrb")
    return nodes.results
