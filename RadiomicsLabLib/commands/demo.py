"""``radiomicslab demo``: the main job on bundled real data (what `make demo` runs), saying where the results are."""

import time
from pathlib import Path

import click

from .extract import _check_folder, _check_outputs, _extract_files, _inputs, _report, _settings


@click.command("demo")
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), default=Path("out/demo"), show_default=True)
@click.option("--case", default="brain1", show_default=True, help="Bundled sample case (brain1, brain2, breast1, prostate_phantom).")
def command(output_dir, case):
    """Extract features of a bundled real MR case into OUTPUT_DIR (features.csv, study.mrb)."""
    from ..data import sample_case

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
