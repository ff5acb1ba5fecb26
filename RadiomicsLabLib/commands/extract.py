"""``radiomicslab extract``: features of IMAGE's segments given by MASK (a label map, or a DICOM RTSTRUCT / SEG on
its series), or of a saved --scene; the helpers ``demo`` shares (checks, settings, the report line)."""

import time
from pathlib import Path

import click

from ..settings import ENGINES


@click.command("extract")
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
def command(image, mask, labels, params, engine, image_types, output, scene, segment_names, wide, resample_mask, rois,
            report):
    """Extract features of the segments of IMAGE given by MASK (a label map, or a DICOM RTSTRUCT or SEG with IMAGE
    the folder of its DICOM series), or of a saved --scene."""
    started = time.perf_counter()
    from ..validation import check_label_value

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
        from ..dicom import is_dicom_mask

        if is_dicom_mask(mask):
            values, provenance = _extract_dicom(image, mask, labels, rois, _settings(params, image_types, engine),
                                                resample_mask, scene, report, inputs)
        else:
            if report is not None:
                from ..dicom.sr import check_report_outputs

                check_report_outputs(image, mask, report, inputs)
            from ..dicom.masks import refuse_rois_of_label_map

            refuse_rois_of_label_map(mask, rois)
            values, provenance = _extract_files(image, mask, labels, _settings(params, image_types, engine),
                                                resample_mask, scene)
            if report is not None:
                _write_report(values, provenance, image, mask, report)
    _report(values, provenance, output, wide, scene, time.perf_counter() - started)


# Helpers --------------------------------------------------------------------------------------
def _inputs(**paths) -> dict:
    """{role: path} of a command's input files (``None`` and preset names are left out by the checks)."""
    return {role.replace("_", " "): path for role, path in paths.items() if path is not None}


def _check_outputs(output, inputs=None, kind="csv", option="-o"):
    """Check an output before any work (see :func:`fileio.check_output`); a CSV also checks its provenance
    sidecar. Returns the path, or None for standard output (``-o -``) and no ``-o``."""
    from ..fileio import check_output
    from ..results import provenance_path

    if output is None:
        return None
    path = check_output(output, inputs or {}, kind, option)
    if path is not None and kind == "csv":
        check_output(provenance_path(path), inputs or {}, "file", option)
    return path


def _check_folder(folder, inputs):
    from ..fileio import check_output

    check_output(folder, inputs, "folder", "-o")


def _settings(params, image_types, engine):
    from ..settings import load_settings

    return load_settings(params, image_types, engine)


def _extract_files(image_path, mask_path, labels, settings, resample_mask, scene_path):
    """IMAGE + MASK: straight through the core, or through a headless scene saved as ``scene_path``."""
    from ..extraction import extract_masks, read_label_map_inputs
    from ..results import file_inputs
    from . import progress_steps

    image, mask, segments = read_label_map_inputs(image_path, mask_path, labels, settings, resample_mask)
    if scene_path is not None:
        return _extract_into_new_scene(image, mask, image_path, mask_path, segments, settings, scene_path)
    with progress_steps(unit="segment", leave=False) as progress:
        result = extract_masks(image, [(name, mask, label) for name, label in segments.items()], settings,
                               inputs=file_inputs(image_path, mask_path), progress=progress)
    return result.values, result.provenance


def _extract_dicom(image_path, mask_path, labels, rois, settings, resample_mask, scene_path, report, inputs):
    """IMAGE (a DICOM series folder) + MASK (an RTSTRUCT or SEG): each chosen ROI its own segment, named by the ROI
    (overlapping ROIs, e.g. a GTV inside its PTV, each extracted on its own mask); ``--sr``: the report too."""
    from ..dicom.sr import check_report_outputs
    from ..extraction import extract_masks, read_dicom_inputs
    from ..results import file_inputs
    from . import progress_steps

    if labels or resample_mask:
        raise click.UsageError("--label and --resample-mask are for label maps; a DICOM RTSTRUCT or SEG is read on its "
                               "series' grid: choose its ROIs with --roi.")
    if scene_path is not None:
        raise click.UsageError("--scene with a DICOM RTSTRUCT or SEG: load the series and its segmentation in Slicer "
                               "(or the web GUI) and save the study; then use --scene alone.")
    if report is not None:
        check_report_outputs(image_path, mask_path, report, inputs)
    image, segments = read_dicom_inputs(image_path, mask_path, rois, settings)
    with progress_steps(unit="segment", leave=False) as progress:
        result = extract_masks(image, [(segment.name, segment.mask, 1) for segment in segments], settings,
                               inputs=file_inputs(image_path, mask_path), progress=progress)
    if report is not None:
        _write_report(result.values, result.provenance, image_path, mask_path, report, segments)
    return result.values, result.provenance


def _write_report(values, provenance, image_path, mask_path, report, segments=None) -> None:
    from ..dicom.sr import write_feature_report

    report, seg = write_feature_report(values, provenance, image_path, mask_path, report, segments)
    click.echo(f"DICOM report: {report} (referencing {seg})", err=True)


def _extract_into_new_scene(image, mask, image_path, mask_path, segments, settings, scene_path):
    from ..mrml import ExtractionLogic
    from ..mrml.app import new_headless_app
    from ..mrml.convert import label_map_to_segmentation_node, sitk_to_volume_node
    from ..mrml.scenefiles import node_name_from_path
    from ..results import file_inputs
    from . import progress_steps

    logic = ExtractionLogic(new_headless_app().scene)
    volume = sitk_to_volume_node(image, node_name_from_path(image_path), logic.scene)
    segmentation = label_map_to_segmentation_node(mask, node_name_from_path(mask_path), logic.scene, volume)
    with progress_steps(unit="segment", leave=False) as progress:
        table = logic.extract(volume, segmentation, list(segments), settings, progress=progress)
    table.SetAttribute("RadiomicsLab.InputFiles", str(file_inputs(image_path, mask_path)))
    logic.save_scene(scene_path)
    return logic.feature_values(table), logic.provenance(table)


def _report(values, provenance, output, wide, scene, seconds):
    from ..results import to_csv_text, write_results

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


def _extract_scene(scene_path, segment_names, settings):
    """--scene alone: :meth:`~RadiomicsLabLib.mrml.extraction.ExtractionLogic.extract_saved_scene` in a headless app,
    with a progress bar over every segment."""
    from ..mrml import ExtractionLogic
    from ..mrml.app import new_headless_app
    from . import progress_steps

    with progress_steps(unit="segment", leave=False) as progress:
        return ExtractionLogic(new_headless_app().scene).extract_saved_scene(scene_path, segment_names, settings,
                                                                            progress=progress)
