"""``radiomicslab habitats``: multi-channel habitats of a tumour, or population-level habitats of a cohort.

The options in, one core call out: :func:`RadiomicsLabLib.habitats.fit_habitats` for MASK, or with ``--cohort``
:func:`RadiomicsLabLib.habitats_outputs.run_cohort` on the batch layer (both task stages resumable, failures in
DIR/errors.csv); the files are written by :func:`RadiomicsLabLib.habitats_outputs.write_habitat_outputs`.

Module-level imports stay click + stdlib (the CLI imports every command at start-up).
"""

import sys
import time
from pathlib import Path

import click

from ..errors import RadiomicsLabError
from . import progress_steps
from .batch import cluster_options, refuse_batch_options, run_with_progress


@click.command("habitats")
@click.argument("mask", required=False, type=click.Path(path_type=Path))
@click.option("--channel", "channels", multiple=True, metavar="NAME=IMAGE",
              help="A channel: its name and image file (repeatable, in order; e.g. --channel CT=ct.nii.gz --channel PET=pet.nii.gz).")
@click.option("-k", "--habitats", "k", default="4", show_default=True, help="Number of habitats, or 'auto' (chosen by --criterion over --k-range).")
@click.option("--method", type=click.Choice(["kmeans", "gmm", "agglomerative"]), default="kmeans", show_default=True,
              help="k-means, Gaussian mixture, or Ward agglomerative clustering on supervoxels.")
@click.option("--criterion", type=click.Choice(["silhouette", "calinski-harabasz", "bic"]), default="silhouette", show_default=True,
              help="With -k auto: the score that picks k (bic needs --method gmm).")
@click.option("--k-range", default="2:8", show_default=True, help="With -k auto: the k tried, LOW:HIGH.")
@click.option("--cohort", type=click.Path(path_type=Path), default=None,
              help="Cohort CSV (columns id,image,mask,channel, optional roi naming the ROI of a DICOM RTSTRUCT/SEG mask: "
                   "one row per patient and channel, paths relative to it) or a "
                   "folder of patients (<channel>_image / <channel>_mask files): fit population-level habitats on all its "
                   "patients pooled; without MASK every patient is labelled, with MASK only MASK's patient. Every row is "
                   "checked first; the per-patient steps run as batch tasks (resumable: a rerun skips finished patients; "
                   "failures go to DIR/errors.csv) and write into DIR, so with --scheduler DIR must be a folder the "
                   "workers can reach.")
@click.option("--mask-channel", default=None, help="With --cohort: the channel whose mask is the ROI (default: the first channel).")
@click.option("--registration", type=click.Choice(["off", "resample", "rigid", "affine", "bspline"]), default="off", show_default=True,
              help="How channels reach the mask's grid: off (they must be on it), resample (already aligned in physical "
                   "space), or register onto the first channel (Mattes mutual information).")
@click.option("--normalise", type=click.Choice(["zscore", "percentile", "none"]), default="zscore", show_default=True,
              help="Per-channel normalisation inside the ROI.")
@click.option("--scope", type=click.Choice(["patient", "cohort"]), default="patient", show_default=True,
              help="Normalise with each patient's ROI statistics, or with the pooled cohort's.")
@click.option("--smooth", "smoothing_mm", type=float, default=0.0, show_default=True, help="Gaussian smoothing inside the ROI, sigma in mm (0 = none).")
@click.option("--min-island", "min_island_mm3", type=float, default=0.0, show_default=True,
              help="Merge habitat pieces smaller than this volume (mm^3) into their neighbouring habitat (0 = keep all).")
@click.option("--nan", "nan_policy", type=click.Choice(["error", "omit", "fill"]), default="error", show_default=True,
              help="NaN voxels in the ROI: refuse, leave them out (label 0), or fill with the channel's median.")
@click.option("--supervoxels", default=None, help="Cluster SLIC supervoxels instead of voxels: 'auto' or a number per patient "
                                                  "(default: auto for agglomerative, voxels otherwise).")
@click.option("--order-by", default=None, help="Channel whose level orders the habitats (default: the first channel).")
@click.option("--feature-map", "feature_maps", multiple=True, metavar="[CHANNEL:]FEATURE",
              help="Also cluster a voxel-wise feature map made inside the ROI, as channel CHANNEL:FEATURE (repeatable, after "
                   "the image channels; FEATURE alone: a map of the first channel; e.g. --feature-map glcm_Contrast "
                   "--feature-map PET:firstorder_Mean; names or families as in 'radiomicslab maps').")
@click.option("--map-radius", type=int, default=1, show_default=True, help="Kernel radius of the --feature-map maps in voxels (1: 3 x 3 x 3).")
@click.option("--map-definition", type=click.Choice(["ibsi", "pyradiomics"]), default="ibsi", show_default=True,
              help="Definition of the --feature-map maps: RadiomicsLab's IBSI engine or pyradiomics' voxel-based mode.")
@click.option("--map-params", default=None,
              help="Settings of the --feature-map maps (e.g. the bin width): a preset name or parameter file, as 'radiomicslab maps --params'.")
@click.option("--label", type=int, default=None, help="Label value of the ROI in MASK (default: every non-zero voxel).")
@click.option("--roi", default=None, help="MASK a DICOM RTSTRUCT or SEG (drawn on the first channel, given as its DICOM "
                                          "series folder): the ROI / segment to cluster, by name (default: its only one).")
@click.option("--seg", type=click.Path(path_type=Path), default=None,
              help="Also write MASK's patient's habitats as a DICOM SEG (e.g. habitats.dcm; one segment per habitat, "
                   "'Habitat 1', ...) referencing the first channel's DICOM series.")
@click.option("--patient", "patient_name", default=None, help="Name of MASK's patient in the tables (default: MASK's file name).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed: the same seed gives the same habitats.")
@click.option("--max-samples", type=int, default=50_000, show_default=True, help="Most rows (voxels or supervoxels) the model is fitted on.")
@click.option("--features", "params", default=None,
              help="Also extract radiomic features of every habitat in every channel with these settings (preset or parameter file).")
@click.option("-o", "--output-dir", required=True, type=click.Path(path_type=Path), help="Folder for the results.")
@cluster_options
def command(mask, channels, k, method, criterion, k_range, cohort, mask_channel, registration, normalise, scope, smoothing_mm,
            min_island_mm3, nan_policy, supervoxels, order_by, feature_maps, map_radius, map_definition, map_params, label,
            roi, seg, patient_name, seed, max_samples, params, output_dir, workers, memory_limit, scheduler, retry_failed,
            keep_going):
    """Habitats of a tumour: cluster the ROI of MASK by the values of several co-registered channels.

    Writes DIR/habitats.nrrd (a label map on MASK's grid: 0 outside the ROI, habitats 1..k inside,
    ordered by the first channel), DIR/habitats.csv (volume, fraction and channel means per habitat:
    the image channels, then the --feature-map channels), DIR/cohort.csv, DIR/habitat_fractions.png,
    DIR/channel_means.png and DIR/habitats.provenance.json; with --cohort and no MASK,
    DIR/<patient>/habitats.nrrd for every patient (and the batch's DIR/errors.csv, DIR/provenance.json
    and per-patient results, DIR/cases/). MASK may be a DICOM RTSTRUCT or SEG drawn on the first channel, given
    as its DICOM series folder (--roi picks the ROI); --seg FILE.dcm also writes the habitats as a DICOM SEG on
    that series. Exit status: 0, 1 when (--cohort) a patient failed or was
    invalid (listed in DIR/errors.csv; the outputs cover the others), 2 for bad input.
    """
    started = time.perf_counter()
    if mask is None and cohort is None:
        raise click.UsageError("Give MASK and --channel NAME=IMAGE options, or --cohort cohort.csv.")
    batch = dict(workers=workers, memory_limit=memory_limit, scheduler=scheduler, retry_failed=retry_failed,
                 keep_going=keep_going)
    if cohort is None:
        refuse_batch_options(**batch)
    from ..habitats_outputs import (check_patient_inputs, file_inputs, file_patient_name, parse_channels, parse_count,
                                    parse_range, run_patient)
    from ..validation import check_label_value

    named = parse_channels(channels)
    if mask is not None and not named:
        raise RadiomicsLabError("Give at least one channel: --channel NAME=IMAGE (repeatable, e.g. --channel CT=ct.nii.gz).")
    if mask is None and (named or label is not None or patient_name or roi or seg):
        raise click.UsageError("--channel, --label, --roi, --seg and --patient describe MASK; with --cohort alone use the "
                               "cohort file's columns.")
    check_label_value(label)
    n_habitats, k_low_high, supervoxels = parse_count(k, "-k", "a number of habitats"), parse_range(k_range), \
        parse_count(supervoxels, "--supervoxels", "a number of supervoxels")
    settings = None
    if params is not None:
        from ..settings import load_settings

        settings = load_settings(params)
    if mask is not None:
        check_patient_inputs(mask, named)
    map_settings = None
    if map_params:  # a parameter file by its full path in the provenance, or a preset name
        map_settings = {"params": str(Path(map_params).resolve()) if Path(map_params).is_file() else map_params}
    options = dict(criterion=criterion.replace("-", "_"), k_range=k_low_high, normalisation=normalise,
                   scope=scope, smoothing_mm=smoothing_mm, registration=registration, nan_policy=nan_policy,
                   min_island_mm3=min_island_mm3, supervoxels=supervoxels, max_samples=max_samples,
                   order_by=order_by, seed=seed, feature_maps=list(feature_maps) or None, map_radius=map_radius,
                   map_definition=map_definition, map_settings=map_settings)
    target_name = patient_name or file_patient_name(mask) if mask is not None else None
    inputs = [("mask", mask), ("cohort", cohort), ("feature-map parameter file", map_params), ("parameter file", params)]
    inputs += [(f"channel '{name}'", path) for name, path in named.items()]
    provenance_inputs = file_inputs(mask, cohort, named, params, roi)
    target = dict(name=target_name, mask=mask, channels=named, label=label, roi=roi) if mask is not None else None
    if cohort is not None:
        _run_cohort(cohort, target, list(named) or None, mask_channel, n_habitats, method, options, settings, inputs,
                    provenance_inputs, output_dir, batch, started, seg)
        return
    with progress_steps(unit="step", leave=False) as bar:
        model, results = run_patient(output_dir, target, n_habitats, method, options, settings, inputs,
                                     provenance_inputs, seg, bar)
    _report(model, results, output_dir, time.perf_counter() - started, seg)


def _run_cohort(cohort_path, target, channels, mask_channel, n_habitats, method, options, settings, inputs,
                provenance_inputs, output_dir, batch, started, seg):
    """The cohort mode on the batch layer (:func:`~RadiomicsLabLib.habitats_outputs.run_cohort`), on one cluster
    started while the cohort is read, each stage with its progress bar."""
    from ..batch import start_cluster
    from ..habitats_outputs import run_cohort

    cluster = start_cluster(batch["workers"], batch["scheduler"], batch["memory_limit"])

    def stage(what, cases, task, earlier):
        summary = run_with_progress(cases, output_dir, task, unit="patient", earlier=earlier, cluster=cluster, **batch)
        click.echo(f"{what}: {summary}", err=True)
        return summary

    try:
        with progress_steps(unit="step", leave=False) as bar:
            run = run_cohort(cohort_path, output_dir, n_habitats, method, options, stage, settings, mask_channel,
                             channels, target, inputs, provenance_inputs, batch["keep_going"], bar, seg)
    finally:
        if cluster is not None:
            cluster.close()
    errors = output_dir / "errors.csv"
    if not run.results:
        click.echo(f"radiomicslab: {run.empty}; the errors are listed in {errors}.", err=True)
        sys.exit(1)
    _report(run.model, run.results, output_dir, time.perf_counter() - started, seg)
    if run.failed:
        click.echo(f"radiomicslab: {run.failed} patient(s) or row(s) with errors, listed in {errors}; the outputs cover the "
                   "other patients. Fix them and run again (failed patients need --retry-failed).", err=True)
        sys.exit(1)


def _report(model, results, output_dir: Path, seconds: float, seg=None):
    k = model.n_habitats
    chosen = f" (chosen by {model.options['criterion']})" if model.options["n_habitats"] == "auto" else ""
    click.echo(f"{k} habitats{chosen} of {len(results)} patient(s) from {', '.join(model.channels)} in {seconds:.1f} s "
               f"-> {output_dir}{f' and {seg}' if seg else ''}", err=True)
    for name in model.names:
        click.echo(f"  {name}", err=True)
    for result in results:
        fractions = ", ".join(f"{h}: {f:.2f}" for h, f in result.fractions().items())
        click.echo(f"  {result.patient}: fractions {fractions}", err=True)
