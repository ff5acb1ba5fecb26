"""``radiomicslab observers``: multi-observer agreement, consensus and feature reproducibility (ICC).

Module-level imports stay click + stdlib (the CLI imports every command at start-up).
"""

import sys
import time
from pathlib import Path

import click

from ..errors import RadiomicsLabError
from ..settings import ENGINES
from .batch import cluster_options, refuse_batch_options, run_with_progress

@click.command("observers")
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.argument("masks", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output-dir", required=True, type=click.Path(path_type=Path), help="Folder for the results.")
@click.option("--names", multiple=True,
              help="Observer names in mask order (comma-separated or repeated; default: each file's name without extensions).")
@click.option("--readers", multiple=True,
              help="Reader of each mask, in order (comma-separated or repeated): two masks of one reader are an intra-observer pair.")
@click.option("--lesion", "lesion_name", default=None,
              help="Name of the lesion given by IMAGE and MASKs (default: IMAGE's name without extensions).")
@click.option("--label", type=int, default=None, help="Label value of the lesion in every mask (default: the mask's only label).")
@click.option("--roi", "rois", multiple=True,
              help="DICOM RTSTRUCT/SEG masks: with one MASK, each --roi names a reader's ROI in it (one observer per "
                   "ROI, named after it; default: every ROI of the file); with several MASKs, the lesion's ROI in "
                   "each file (one --roi for all, or one per MASK in order; default: each file's only ROI).")
@click.option("--seg", type=click.Path(path_type=Path), default=None,
              help="Also write the consensus masks (STAPLE, majority vote) as one DICOM SEG (e.g. consensus.dcm) "
                   "referencing IMAGE's DICOM series (IMAGE must be a DICOM series folder; not with --cohort).")
@click.option("--cohort", type=click.Path(path_type=Path), default=None,
              help="CSV of several lesions, one row per lesion and observer: columns id,image,mask (id = lesion; optional "
                   "observer, label, reader) or lesion,observer,image,mask (optional reader, label); paths relative to the "
                   "CSV. Run one task per lesion on the batch layer (resumable: a rerun skips finished lesions; failures "
                   "go to DIR/errors.csv); each lesion's consensus masks are written by its worker, so with --scheduler "
                   "DIR must be a folder the workers can reach.")
@click.option("--perturb", is_flag=True,
              help="Add synthetic observers: MIRP-style perturbations of each lesion's first mask (default plan).")
@click.option("--perturbation", "perturbations", multiple=True,
              help="A perturbation instead of the default plan (repeatable; implies --perturb): grow:mm=-1, grow:fraction=0.1, "
                   "supervoxels:volume=500,compactness=0.05, deform:mm=2,smoothness=10, shift:mm=2, noise:scale=1.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Master seed of the perturbations.")
@click.option("--strict", is_flag=True,
              help="Refuse masks on another grid than the image instead of resampling them (nearest neighbour).")
@click.option("--params", default=None, help="Feature settings: pyradiomics parameter file or preset (see `radiomicslab presets`).")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Feature engine: pyradiomics, native or ibsi (default: what the settings declare, else pyradiomics where it is installed, else native).")
@click.option("--image-type", "image_types", multiple=True,
              help="Image type replacing the settings' (repeatable), e.g. Original, 'LoG:sigma=1,3'.")
@click.option("--robust-rule", default=None, help="Robust-feature rule on icc.csv's columns [default: icc2_ci_low >= 0.75].")
@click.option("--icc-type", type=click.Choice(["icc1", "icc2", "icc3"]), default="icc2", show_default=True,
              help="ICC in icc.csv's icc/ci_low/ci_high columns and the plot: ICC(1,1), ICC(2,1) or ICC(3,1).")
@click.option("--no-features", is_flag=True, help="Agreement and consensus only: no feature extraction, no ICC.")
@cluster_options
def command(image, masks, output_dir, names, readers, lesion_name, label, rois, seg, cohort, perturb, perturbations, seed,
            strict, params, engine, image_types, robust_rule, icc_type, no_features, workers, memory_limit, scheduler,
            retry_failed, keep_going):
    """Agreement of several observers' segmentations (Dice, Jaccard, volumes, Hausdorff, HD95, MSD), STAPLE and
    majority-vote consensus, and feature reproducibility (ICC, CCC, CV, robust features) of one lesion
    (IMAGE MASK1 MASK2 ...) or a --cohort of lesions.

    A MASK may be a DICOM RTSTRUCT or SEG, with IMAGE the folder of the DICOM series it was drawn on: an
    RTSTRUCT per reader (IMAGE rs_reader1.dcm rs_reader2.dcm [--roi GTV]), or the readers' ROIs of one
    file (IMAGE rs.dcm --roi GTV_reader1 --roi GTV_reader2; observers named after the ROIs unless --names).
    --seg FILE.dcm also writes the consensus masks as a DICOM SEG on that series."""
    from ..perturbation import perturb_lesion, perturbation_plan
    from ..reproducibility import parse_rule
    from ..settings import load_settings

    started = time.perf_counter()
    perturb = perturb or bool(perturbations)
    features = not no_features
    names, readers = _split(names), _split(readers)
    if image is None and cohort is None:
        raise click.UsageError("Give IMAGE and the observers' MASKs, or --cohort cohort.csv.")
    if image is not None and cohort is not None:
        raise click.UsageError("Give either IMAGE and MASKs (one lesion) or --cohort (several lesions), not both; "
                               "add the lesion to the cohort file instead.")
    if cohort is None:
        refuse_batch_options(workers, memory_limit, scheduler, retry_failed, keep_going)
    if image is not None and not masks:
        raise RadiomicsLabError(
            "Give the observers' masks after IMAGE (at least two; or one with --perturb for synthetic observers)."
        )
    if image is None and (names or readers or lesion_name or rois):
        raise click.UsageError("--names, --readers, --lesion and --roi describe IMAGE and MASKs; in --cohort use its columns.")
    if cohort is not None and seg is not None:
        raise click.UsageError("--seg writes one lesion's consensus masks; give IMAGE and MASKs instead of --cohort "
                               "(each lesion's consensus masks are in DIR/<lesion>/).")
    from ..dicom.masks import observer_rois

    masks, roi_of, names = observer_rois(masks, rois, names)
    if image is not None and len(masks) < 2 and not perturb:  # checked before anything is read
        raise RadiomicsLabError(
            f"Agreement needs at least 2 observers; got 1 ({names[0] if names else Path(masks[0]).name.split('.')[0]}). "
            "Give another observer's mask, or use --perturb to make synthetic observers from one mask."
        )
    for option, given in (("--names", names), ("--readers", readers)):
        if given and len(given) != len(masks):
            raise RadiomicsLabError(f"{option} gives {len(given)} name(s) for {len(masks)} mask(s); give one per mask, in order.")
    from ..validation import check_label_value

    check_label_value(label)
    rule = parse_rule(robust_rule) if robust_rule else None
    settings = load_settings(params, image_types, engine) if features else None
    plan = perturbation_plan(perturbations or None) if perturb else []
    if cohort is not None:
        batch = dict(workers=workers, scheduler=scheduler, memory_limit=memory_limit, retry_failed=retry_failed,
                     keep_going=keep_going)
        _run_cohort(cohort, output_dir, label, strict, plan, seed, settings, features, rule, icc_type, batch, started)
        return
    from ..observers import check_lesion_names, file_lesion, load_lesions
    from ..observers_outputs import check_outputs_writable, file_inputs, input_roles, output_paths, write_observer_outputs

    specs = [file_lesion(image, masks, names, readers, lesion_name, "the command line")]
    specs[0]["rois"] = dict(zip((o for o, _, _ in specs[0]["observers"]), roi_of))
    check_lesion_names(specs)
    outputs = output_paths(output_dir, [s["name"] for s in specs], features, bool(plan))
    check_outputs_writable(outputs, output_dir, input_roles(specs, params))
    if seg is not None:
        from ..dicom.masks import check_seg_output

        check_seg_output(seg, image, [*input_roles(specs, params), *(("output", p) for p in outputs.values())])
    lesions = load_lesions(specs, label, strict, 1 if plan else 2)
    for lesion in lesions:
        if plan:
            click.echo(f"Perturbing lesion '{lesion.name}': {', '.join(map(str, plan))} (seed {seed})", err=True)
            perturb_lesion(lesion, plan, seed)
    study = _run(lesions, settings, features, rule, icc_type)
    write_observer_outputs(study, output_dir, file_inputs(specs), settings, icc_type, seed if plan else None, outputs,
                           seg=(seg, image) if seg is not None else None)
    _report(study, output_dir, time.perf_counter() - started)


def _run_cohort(path, output_dir, label, strict, plan, seed, settings, features, rule, icc_type, batch, started):
    """The cohort mode (:func:`~RadiomicsLabLib.observers_outputs.run_observer_cohort`) with a progress bar; a lesion
    with errors (in errors.csv, left out of the outputs) makes the exit status 1."""
    from ..observers_outputs import run_observer_cohort

    study, summary = run_observer_cohort(
        path, output_dir, label=label, strict=strict, plan=plan, seed=seed, settings=settings, features=features,
        rule=rule, icc_type=icc_type, keep_going=batch["keep_going"],
        run_batch=lambda read, folder, task: run_with_progress(read, folder, task, unit="lesion", **batch),
        note=lambda message: click.echo(message, err=True))
    click.echo(f"Batch: {summary}", err=True)
    errors = output_dir / "errors.csv"
    if study is None:
        click.echo(f"radiomicslab: no lesion finished; the errors are listed in {errors}.", err=True)
        sys.exit(1)
    _report(study, output_dir, time.perf_counter() - started)
    if summary.failed or summary.invalid:
        click.echo(f"radiomicslab: {summary.failed + summary.invalid} lesion(s) or row(s) with errors, listed in {errors}; "
                   "the outputs cover the other lesions. Fix them and run again (failed lesions need --retry-failed).",
                   err=True)
        sys.exit(1)


def _split(values) -> list[str]:
    """``("a,b", "c")`` -> ``["a", "b", "c"]``."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _run(lesions, settings, features, rule, icc_type):
    from ..observers import run_study
    from . import progress_steps

    with progress_steps(unit="step", leave=False) as progress:
        return run_study(lesions, settings, features, rule, icc_type, progress)


def _report(study, output_dir: Path, seconds: float):
    pairs = study.pairs
    dice = [p["dice"] for p in pairs]
    observers = sorted({o for r in study.lesions for o in r.lesion.observers})
    lines = [f"Agreement of {len(observers)} observers on {len(study.lesions)} lesion(s), {len(pairs)} pair(s): "
             f"Dice mean {sum(dice) / len(dice):.3f} (min {min(dice):.3f}, max {max(dice):.3f}); "
             + ", ".join(f"GCI {r.lesion.name} {r.agreement.generalised_conformity:.3f}" for r in study.lesions[:5])
             + (" ..." if len(study.lesions) > 5 else "")]
    reproducibility = study.reproducibility
    if reproducibility is not None:
        lines.append(f"Features: {len(reproducibility.rows)}; robust ({reproducibility.rule}): {len(reproducibility.robust)}")
    lines += [f"note: {note}" for note in study.notes]
    lines.append(f"Done in {seconds:.1f} s -> {output_dir}")
    click.echo("\n".join(lines), err=True)
