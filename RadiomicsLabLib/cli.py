"""Command line: ``radiomicslab extract | demo | presets``.

User mistakes (:class:`RadiomicsLabError`) print one line on stderr and exit with status 2,
leaving every output file as it was.
"""

import sys
import time
from pathlib import Path

import click

from . import __version__
from .errors import RadiomicsLabError

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
@click.option("--engine", type=click.Choice(["pyradiomics", "ibsi"]), default=None,
              help="Feature engine: pyradiomics, or RadiomicsLab's IBSI engine (default: what the parameters declare, else pyradiomics).")
@click.option("--image-type", "image_types", multiple=True,
              help="Image type replacing the parameter file's, e.g. Original, 'LoG:sigma=1,3', Wavelet (repeatable).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="CSV file to write (a .provenance.json sidecar is written beside it); default: CSV on stdout.")
@click.option("--scene", type=click.Path(path_type=Path), default=None,
              help="With IMAGE MASK: save the study (image, segments, feature table) as this .mrb. "
                   "Alone: extract the segments of every segmentation in this .mrb and save the tables into it.")
@click.option("--segment", "segment_names", multiple=True, help="With --scene alone: extract only segments of this name (repeatable).")
@click.option("--wide", is_flag=True, help="One row per segment instead of one row per feature.")
@click.option("--resample-mask", is_flag=True, help="Resample the mask onto the image grid (nearest neighbour) when the grids differ.")
def extract(image, mask, labels, params, engine, image_types, output, scene, segment_names, wide, resample_mask):
    """Extract features of the segments of IMAGE given by MASK (a label map), or of a saved --scene."""
    started = time.perf_counter()
    if output is not None:
        _check_outputs(output)
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
        values, provenance = _extract_files(image, mask, labels, _settings(params, image_types, engine), resample_mask, scene)
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
    _check_outputs(csv_path, scene_path)
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
    from .fileio import check_writable
    from .ibsi.compliance import DATASETS, run_compliance, summary

    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise RadiomicsLabError(f"Unknown IBSI data set {', '.join(unknown)}; choose from {', '.join(DATASETS)}.")
    check_writable(output_dir / "ibsi_report.csv")

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
def _check_outputs(*paths):
    from .fileio import check_writable
    from .results import provenance_path

    for path in paths:
        check_writable(path)
        if path.suffix.lower() == ".csv":
            check_writable(provenance_path(path))


def _progress_bar(total: int):
    """A console progress bar for runs of two or more segments (``None`` for one)."""
    if total < 2:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="segment", file=sys.stderr, leave=False)

    def progress(done, _total, name):
        bar.set_postfix_str(name)
        bar.update(1)
        if done == total:
            bar.close()

    return progress


def _file_inputs(image: Path, mask: Path) -> dict:
    from .provenance import file_sha256

    def describe(path):
        return {"path": str(path.resolve()), "sha256": file_sha256(path) if path.is_file() else None}

    return {"image_file": describe(image), "mask_file": describe(mask)}


def _settings(params, image_types, engine):
    from .settings import load_settings

    return load_settings(params, image_types, engine)


def _extract_files(image_path, mask_path, labels, settings, resample_mask, scene_path):
    """IMAGE + MASK: straight through the core, or through a headless scene saved as ``scene_path``."""
    from .extraction import extract, prepare_inputs
    from .imageio import read_image
    from .validation import check_mask_is_label_map, labels_present, segment_name

    image = read_image(image_path, "image")
    mask = check_mask_is_label_map(read_image(mask_path, "mask"), where=f"mask '{mask_path}'")
    chosen = labels or labels_present(mask)
    segments = {segment_name(label): label for label in chosen}
    mask = prepare_inputs(image, mask, segments, resample_mask)
    if scene_path is not None:
        _check_outputs(scene_path)
        return _extract_into_new_scene(image, mask, image_path, mask_path, segments, settings, scene_path)
    result = extract(image, mask, segments, settings, inputs=_file_inputs(image_path, mask_path),
                     progress=_progress_bar(len(segments)))
    return result.values, result.provenance


def _extract_into_new_scene(image, mask, image_path, mask_path, segments, settings, scene_path):
    from .mrml import ExtractionLogic
    from .mrml.app import new_headless_app
    from .mrml.convert import label_map_to_segmentation_node, sitk_to_volume_node
    from .mrml.scenefiles import node_name_from_path

    logic = ExtractionLogic(new_headless_app().scene)
    volume = sitk_to_volume_node(image, node_name_from_path(image_path), logic.scene)
    segmentation = label_map_to_segmentation_node(mask, node_name_from_path(mask_path), logic.scene, volume)
    table = logic.extract(volume, segmentation, list(segments), settings, progress=_progress_bar(len(segments)))
    table.SetAttribute("RadiomicsLab.InputFiles", str(_file_inputs(image_path, mask_path)))
    logic.save_scene(scene_path)
    return logic.feature_values(table), logic.provenance(table)


def _extract_scene(scene_path, segment_names, settings):
    """--scene alone: every segmentation in the study (or the named segments), tables saved into it."""
    from .mrml import ExtractionLogic
    from .mrml.app import new_headless_app
    from .mrml.convert import segment_ids, segment_name

    _check_outputs(scene_path)
    logic = ExtractionLogic(new_headless_app().scene)
    logic.load_scene(scene_path)
    jobs = []
    segmentations = logic.scene.GetNodesByClass("vtkMRMLSegmentationNode")
    for i in range(segmentations.GetNumberOfItems()):
        segmentation = segmentations.GetItemAsObject(i)
        names = [segment_name(segmentation, s) for s in segment_ids(segmentation)]
        chosen = [n for n in names if not segment_names or n in segment_names]
        if chosen:
            jobs.append((segmentation, _reference_volume(logic.scene, segmentation), chosen))
    found = {n for _, _, chosen in jobs for n in chosen}
    missing = [n for n in segment_names if n not in found]
    if missing or not jobs:
        raise RadiomicsLabError(
            f"The scene '{scene_path}' has no segment {', '.join(missing)}." if missing
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


def main(argv=None):
    """Console entry point: user errors are one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="radiomicslab", standalone_mode=False)
    except RadiomicsLabError as error:
        click.echo(f"radiomicslab: error: {error}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.exceptions.Abort:
        click.echo("radiomicslab: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
