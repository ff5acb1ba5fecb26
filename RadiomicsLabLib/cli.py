"""Command line: ``radiomicslab extract | demo | presets``.

User mistakes (:class:`RadiomicsLabError`) print one line on stderr and exit with status 2,
leaving every output file as it was.
"""

import sys
import time
import warnings
from pathlib import Path

import click

from . import __version__
from .errors import RadiomicsLabError, RadiomicsLabWarning
from .settings import ENGINES

EXIT_USER_ERROR = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="radiomicslab")
def cli():
    """RadiomicsLab: IBSI-compliant radiomics for 3D Slicer, from the command line."""


@cli.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.argument("mask", required=False, type=click.Path(path_type=Path))
@click.option("--label", "labels", type=int, multiple=True, help="Label value to extract (repeatable; default: every label in the mask).")
@click.option("--params", default=None, help="pyradiomics parameter file (YAML/JSON) or preset name (see `radiomicslab presets`).")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Feature engine: pyradiomics (the package), native (pyradiomics' features computed by RadiomicsLab, no pyradiomics needed) or ibsi (default: what the parameters declare, else pyradiomics where it is installed, else native).")
@click.option("--image-type", "image_types", multiple=True,
              help="Image type replacing the parameter file's, e.g. Original, 'LoG:sigma=1,3', Wavelet (repeatable).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="CSV file to write (a .provenance.json sidecar is written beside it); - or default: CSV on stdout.")
@click.option("--scene", type=click.Path(path_type=Path), default=None,
              help="With IMAGE MASK: save the study (image, segments, feature table) as this .mrb. "
                   "Alone: extract the segments of every segmentation in this .mrb and save the tables into it.")
@click.option("--segment", "segment_names", multiple=True, help="With --scene alone: extract only segments of this name (repeatable).")
@click.option("--wide", is_flag=True, help="One row per segment instead of one row per feature.")
@click.option("--resample-mask", is_flag=True, help="Resample the mask onto the image grid (nearest neighbour) when the grids differ.")
@click.option("--roi", "rois", multiple=True,
              help="With a DICOM RTSTRUCT or SEG as MASK: the ROI / segment to extract (repeatable; default: all, each "
                   "its own segment).")
@click.option("--sr", "report", type=click.Path(path_type=Path), default=None,
              help="Also write a DICOM SR measurement report (TID 1500) of the features (IMAGE must be a DICOM series "
                   "folder); unless MASK is a DICOM SEG, the segments are written beside it as REPORT.seg.dcm, which "
                   "the report references.")
def extract(image, mask, labels, params, engine, image_types, output, scene, segment_names, wide, resample_mask, rois,
            report):
    """Extract features of the segments of IMAGE given by MASK (a label map, or a DICOM RTSTRUCT or SEG with IMAGE
    the folder of its DICOM series), or of a saved --scene."""
    started = time.perf_counter()
    from .validation import check_label_value

    for label in labels:
        check_label_value(label)
    scene_mode = scene is not None and image is None and mask is None
    inputs = _inputs(image=image, mask=mask, parameter_file=params, **({"scene": scene} if scene_mode else {}))
    output = _check_outputs(output, inputs=inputs)
    if scene is not None and not scene_mode:
        _check_outputs(scene, inputs=inputs, kind="scene", option="--scene")
    if report is not None and (scene_mode or image is None or mask is None):
        raise click.UsageError("--sr needs IMAGE (a DICOM series folder) and MASK.")
    if image is None and mask is None:
        if scene is None:
            raise click.UsageError("Give IMAGE and MASK, or --scene STUDY.mrb.")
        if labels or resample_mask:
            raise click.UsageError("--label and --resample-mask need IMAGE and MASK; with --scene alone use --segment.")
        values, provenance = _extract_scene(scene, segment_names, _settings(params, image_types, engine))
    elif image is None or mask is None:
        raise click.UsageError("Give both IMAGE and MASK.")
    else:
        if segment_names:
            raise click.UsageError("--segment is for --scene alone; with IMAGE and MASK choose labels with --label.")
        from .dicom import is_dicom_mask

        if is_dicom_mask(mask):
            values, provenance = _extract_dicom(image, mask, labels, rois, _settings(params, image_types, engine),
                                                resample_mask, scene, report, inputs)
        else:
            if report is not None:
                from .dicom.sr import check_report_outputs

                check_report_outputs(image, mask, report, inputs)
            if rois:
                from .dicom import read_mask

                read_mask(mask, image, rois=rois)  # a label map has no named ROIs: read_mask's one-line error
            values, provenance = _extract_files(image, mask, labels, _settings(params, image_types, engine),
                                                resample_mask, scene)
            if report is not None:
                _write_report(values, provenance, image, mask, report)
    _report(values, provenance, output, wide, scene, time.perf_counter() - started)


@cli.command()
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), default=Path("out/demo"), show_default=True)
@click.option("--case", default="brain1", show_default=True, help="Bundled sample case (brain1, brain2, breast1, prostate_phantom).")
def demo(output_dir, case):
    """Extract features of a bundled real MR case into OUTPUT_DIR (features.csv, study.mrb)."""
    from .data import sample_case

    started = time.perf_counter()
    image, mask = sample_case(case)
    csv_path, scene_path = output_dir / "features.csv", output_dir / "study.mrb"
    inputs = _inputs(image=image, mask=mask)
    _check_folder(output_dir, inputs)
    _check_outputs(csv_path, inputs=inputs)
    _check_outputs(scene_path, inputs=inputs, kind="scene")
    click.echo(f"RadiomicsLab demo: pyradiomics-default features of the '{case}' MR case ({image.name}).", err=True)
    values, provenance = _extract_files(image, mask, (), _settings(None, (), None), False, scene_path)
    _report(values, provenance, csv_path, False, scene_path, time.perf_counter() - started)
    by_name = {v.feature: v.value for v in values}
    click.echo("\nA few of the values:")
    for feature in ("original_shape_MeshVolume", "original_firstorder_Mean", "original_glcm_Contrast", "original_glszm_ZoneEntropy"):
        if feature in by_name:
            click.echo(f"  {feature:<32} {by_name[feature]:.6g}")
    click.echo(f"\nResults are in {output_dir.resolve()}:")
    click.echo(f"  {csv_path.name:<30} features, one row per segment and feature")
    click.echo(f"  {csv_path.stem + '.provenance.json':<30} versions, settings, geometry and hashes")
    click.echo(f"  {scene_path.name:<30} the study: open it in 3D Slicer (File > Add Data, or drag it onto the window)")


@cli.command()
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), default=Path("out/ibsi"), show_default=True)
@click.option("--dataset", "datasets", multiple=True,
              help="Only these data sets (repeatable): digital_phantom, config_A..config_E, ibsi2_phase1, ibsi2_phase2.")
def ibsi(output_dir, datasets):
    """IBSI compliance: run every IBSI reference data set and report pass counts (ibsi_report.csv, .md)."""
    from .fileio import check_outputs
    from .ibsi.compliance import DATASETS, run_compliance, summary

    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise RadiomicsLabError(f"Unknown IBSI data set {', '.join(unknown)}; choose from {', '.join(DATASETS)}.")
    references = _ibsi_reference_folder(datasets or DATASETS)
    _check_folder(output_dir, {"reference data folder": references})
    check_outputs([output_dir / "ibsi_report.csv", output_dir / "ibsi_report.md"])

    def progress(dataset, rows, seconds):
        passed = sum(r.passed for r in rows)
        click.echo(f"{dataset:<16} {passed:>4} / {len(rows):<4} passed  ({seconds:.1f} s)")

    rows = run_compliance(output_dir, datasets or DATASETS, progress)
    passed, total = sum(p for p, _ in summary(rows).values()), len(rows)
    click.echo(f"{'all':<16} {passed:>4} / {total:<4} passed -> {output_dir / 'ibsi_report.csv'}, {output_dir / 'ibsi_report.md'}")
    if passed != total:
        sys.exit(1)


@cli.command()
def presets():
    """List the named settings presets accepted by --params."""
    from .settings import PRESETS_DIR, preset_names

    for name in preset_names():
        first = (PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
        click.echo(f"{name}\t{first}")


# Helpers --------------------------------------------------------------------------------------
def _inputs(**paths) -> dict:
    """{role: path} of a command's input files (``None`` and preset names are left out by the checks)."""
    return {role.replace("_", " "): path for role, path in paths.items() if path is not None}


def _check_outputs(output, inputs=None, kind="csv", option="-o"):
    """Check an output before any work (see :func:`fileio.check_output`); a CSV also checks its provenance
    sidecar. Returns the path, or None for standard output (``-o -``) and no ``-o``."""
    from .fileio import check_output
    from .results import provenance_path

    if output is None:
        return None
    path = check_output(output, inputs or {}, kind, option)
    if path is not None and kind == "csv":
        check_output(provenance_path(path), inputs or {}, "file", option)
    return path


def _check_folder(folder, inputs):
    from .fileio import check_output

    check_output(folder, inputs, "folder", "-o")


def _ibsi_reference_folder(datasets) -> Path:
    """The reference data folder, with the files the chosen IBSI data sets read checked (present, not cut short)."""
    from .data import data_dir
    from .ibsi.reference import CHAPTER1_DATASETS
    from .imageio import verify_file

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
            from .ibsi.filters import PHASE1_CONFIGURATIONS

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


def _progress_bar(total: int):
    """A console progress bar for runs of two or more segments (``None`` for one)."""
    if total < 2:
        return None
    from .commands import progress_bar

    bar = progress_bar(total=total, unit="segment", leave=False)

    def progress(done, _total, name):
        bar.set_postfix_str(name)
        bar.update(1)
        if done == total:
            bar.close()

    return progress


def _settings(params, image_types, engine):
    from .settings import load_settings

    return load_settings(params, image_types, engine)


def _extract_files(image_path, mask_path, labels, settings, resample_mask, scene_path):
    """IMAGE + MASK: straight through the core, or through a headless scene saved as ``scene_path``."""
    from .extraction import extract, prepare_inputs
    from .imageio import read_image
    from .results import file_inputs
    from .validation import check_mask_is_label_map, labels_present, segment_name

    from .validation import check_resampling

    image = read_image(image_path, "image")
    mask = check_mask_is_label_map(read_image(mask_path, "mask"), where=f"mask '{mask_path}'")
    chosen = labels or labels_present(mask)
    segments = {segment_name(label): label for label in chosen}
    mask = prepare_inputs(image, mask, segments, resample_mask)
    check_resampling(image, mask, list(segments.values()), settings.params)
    if scene_path is not None:
        return _extract_into_new_scene(image, mask, image_path, mask_path, segments, settings, scene_path)
    result = extract(image, mask, segments, settings, inputs=file_inputs(image_path, mask_path),
                     progress=_progress_bar(len(segments)))
    return result.values, result.provenance


def _extract_dicom(image_path, mask_path, labels, rois, settings, resample_mask, scene_path, report, inputs):
    """IMAGE (a DICOM series folder) + MASK (an RTSTRUCT or SEG): each chosen ROI its own segment, named by the ROI
    (overlapping ROIs, e.g. a GTV inside its PTV, each extracted on its own mask); ``--sr``: the report too."""
    from .dicom import read_dicom_segments
    from .dicom.sr import check_report_outputs
    from .extraction import extract_masks
    from .imageio import read_image
    from .results import file_inputs
    from .validation import check_resampling

    if labels or resample_mask:
        raise click.UsageError("--label and --resample-mask are for label maps; a DICOM RTSTRUCT or SEG is read on its "
                               "series' grid: choose its ROIs with --roi.")
    if scene_path is not None:
        raise click.UsageError("--scene with a DICOM RTSTRUCT or SEG: load the series and its segmentation in Slicer "
                               "(or the web GUI) and save the study; then use --scene alone.")
    if not Path(image_path).is_dir():
        raise RadiomicsLabError(f"The mask '{mask_path}' is a DICOM segmentation: give IMAGE as the folder of the DICOM "
                                f"series it was drawn on (not the file '{image_path}').")
    if report is not None:
        check_report_outputs(image_path, mask_path, report, inputs)
    segments = read_dicom_segments(mask_path, image_path, rois or None)
    image = read_image(image_path, "image")
    masks = [(segment.name, segment.mask, 1) for segment in segments]
    for _, mask, label in masks:
        check_resampling(image, mask, [label], settings.params)
    result = extract_masks(image, masks, settings, inputs=file_inputs(image_path, mask_path),
                           progress=_progress_bar(len(masks)))
    if report is not None:
        _write_report(result.values, result.provenance, image_path, mask_path, report, segments)
    return result.values, result.provenance


def _write_report(values, provenance, image_path, mask_path, report, segments=None) -> None:
    from .dicom.sr import write_feature_report

    report, seg = write_feature_report(values, provenance, image_path, mask_path, report, segments)
    click.echo(f"DICOM report: {report} (referencing {seg})", err=True)


def _extract_into_new_scene(image, mask, image_path, mask_path, segments, settings, scene_path):
    from .mrml import ExtractionLogic
    from .mrml.app import new_headless_app
    from .mrml.convert import label_map_to_segmentation_node, sitk_to_volume_node
    from .mrml.scenefiles import node_name_from_path
    from .results import file_inputs

    logic = ExtractionLogic(new_headless_app().scene)
    volume = sitk_to_volume_node(image, node_name_from_path(image_path), logic.scene)
    segmentation = label_map_to_segmentation_node(mask, node_name_from_path(mask_path), logic.scene, volume)
    table = logic.extract(volume, segmentation, list(segments), settings, progress=_progress_bar(len(segments)))
    table.SetAttribute("RadiomicsLab.InputFiles", str(file_inputs(image_path, mask_path)))
    logic.save_scene(scene_path)
    return logic.feature_values(table), logic.provenance(table)


def _extract_scene(scene_path, segment_names, settings):
    """--scene alone: every segmentation in the study (or the named segments), tables saved into it."""
    from .mrml import ExtractionLogic
    from .mrml.app import new_headless_app
    from .mrml.convert import segment_ids, segment_name

    from .fileio import check_writable

    check_writable(scene_path)  # the tables are saved into it
    logic = ExtractionLogic(new_headless_app().scene)
    logic.load_scene(scene_path)
    jobs, every_name = [], []
    segmentations = logic.scene.GetNodesByClass("vtkMRMLSegmentationNode")
    for i in range(segmentations.GetNumberOfItems()):
        segmentation = segmentations.GetItemAsObject(i)
        names = [segment_name(segmentation, s) for s in segment_ids(segmentation)]
        every_name += names
        chosen = [n for n in names if not segment_names or n in segment_names]
        if chosen:
            jobs.append((segmentation, _reference_volume(logic.scene, segmentation), chosen))
    found = {n for _, _, chosen in jobs for n in chosen}
    missing = [n for n in segment_names if n not in found]
    if missing or not jobs:
        raise RadiomicsLabError(
            f"The scene '{scene_path}' has no segment {', '.join(missing)}; its segments are: "
            f"{', '.join(dict.fromkeys(every_name)) or 'none'} (choose with --segment)." if missing
            else f"The scene '{scene_path}' has no segmentation with segments; add one in Slicer and save the study."
        )
    values, provenances = [], []
    for segmentation, volume, chosen in jobs:
        table = logic.extract(volume, segmentation, chosen, settings, progress=_progress_bar(len(chosen)))
        values += logic.feature_values(table)
        provenances.append(logic.provenance(table))
    logic.save_scene(scene_path)
    return values, provenances[0] if len(provenances) == 1 else {"tables": provenances}


def _reference_volume(scene, segmentation):
    """The volume a segmentation was drawn on, or the scene's only scalar volume."""
    from .mrml.convert import segmentation_volume

    reference = segmentation_volume(segmentation)
    if reference is not None:
        return reference
    volumes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    if volumes.GetNumberOfItems() == 1:
        return volumes.GetItemAsObject(0)
    raise RadiomicsLabError(
        f"Cannot tell which volume segmentation '{segmentation.GetName()}' belongs to "
        f"({volumes.GetNumberOfItems()} volumes in the scene); set its reference geometry volume in Slicer's "
        "Segment Editor and save the study."
    )


def _report(values, provenance, output, wide, scene, seconds):
    from .results import to_csv_text, write_results

    if output is None:
        click.echo(to_csv_text(values, wide), nl=False)
    else:
        csv_path, json_path = write_results(values, provenance, output, wide)
    segments = list(dict.fromkeys(v.segment for v in values))
    per_segment = len(values) // max(len(segments), 1)
    where = [] if output is None else [f"{csv_path} (+ {json_path.name})"]
    where += [] if scene is None else [str(scene)]
    click.echo(f"Extracted {per_segment} features for {len(segments)} segment(s) ({', '.join(segments)}) "
               f"in {seconds:.1f} s" + (f" -> {', '.join(where)}" if where else ""), err=True)


def _add_workflow_commands():
    from .commands import workflow_commands

    for command in workflow_commands():
        cli.add_command(command)


_add_workflow_commands()


def user_message(error) -> str:
    """One line for the user: ITK/SimpleITK text inside a message (source file names, addresses, several
    lines) is reduced to its reason, with what to change where the reason is a known one."""
    from .imageio import itk_reason

    text = str(error)
    markers = ("Exception thrown in SimpleITK", "ITK ERROR:", "sitk::ERROR:")
    if not any(marker in text for marker in markers):
        return text
    start = min(text.find(marker) for marker in markers if marker in text)
    prefix, reason = text[:start].rstrip(), itk_reason(text[start:])
    advice = next((a for known, a in ITK_ADVICE.items() if known in reason), "check the inputs and settings it names")
    return f"{prefix} {reason}; {advice}." if prefix else f"ITK: {reason}; {advice}."


#: What to change for ITK errors a user can reach (reason text -> advice).
ITK_ADVICE = {
    "is the background label": "label 0 is the background; give the label value of a segment (1 or more)",
    "Failed to allocate memory": "the image grid is too large for this machine's memory; use a coarser "
                                 "resampledPixelSpacing (close to the image's spacing) or a smaller image",
    "spacing": "check resampledPixelSpacing (positive millimetres, close to the image's spacing) and the image's spacing",
}


def _is_itk_error(error) -> bool:
    return any(marker in str(error) for marker in ("Exception thrown in SimpleITK", "ITK ERROR:", "sitk::ERROR:"))


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """RadiomicsLab's warnings (:class:`~RadiomicsLabLib.errors.RadiomicsLabWarning`) as one line on stderr; others
    as Python shows them."""
    if issubclass(category, RadiomicsLabWarning):
        click.echo(f"radiomicslab: warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv=None):
    """Console entry point: user errors are one line on stderr and exit status 2; warnings one line each."""
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="radiomicslab", standalone_mode=False)
    except RadiomicsLabError as error:
        click.echo(f"radiomicslab: error: {user_message(error)}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.exceptions.Abort:
        click.echo("radiomicslab: aborted", err=True)
        sys.exit(130)
    except click.UsageError as error:  # a bad option or argument: one line too, naming the command's --help
        message = " ".join(error.format_message().split()).rstrip(".")
        command = error.ctx.command_path if error.ctx is not None else "radiomicslab"
        click.echo(f"radiomicslab: error: {message}; see '{command} --help'.", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except RuntimeError as error:  # after click's Abort, a RuntimeError too
        if not _is_itk_error(error):
            raise
        click.echo(f"radiomicslab: error: {user_message(error)}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except MemoryError:
        click.echo("radiomicslab: error: out of memory; use a coarser resampledPixelSpacing, fewer features or "
                   "image types, or a smaller image.", err=True)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(0)


if __name__ == "__main__":
    main()
