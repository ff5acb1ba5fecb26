"""``radiomicslab maps``: voxel-wise feature maps of an image inside a mask, one NRRD per feature."""

from pathlib import Path

import click


@click.command("maps")
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.argument("mask", required=False, type=click.Path(path_type=Path))
@click.option("-f", "--features", default=None,
              help="Comma-separated features: pyradiomics-style names (glcm_Contrast, firstorder_Mean), IBSI tags "
                   "(cm_contrast_3D_avg), families (glcm, glrlm, glszm, gldzm, gldm/ngldm, ngtdm, firstorder, "
                   "statistics, histogram, local_intensity (ibsi only)), texture or all.")
@click.option("-r", "--radius", type=int, default=1, show_default=True,
              help="Kernel radius in voxels (1: a 3 x 3 x 3 kernel).")
@click.option("--definition", type=click.Choice(["ibsi", "pyradiomics"]), default="ibsi", show_default=True,
              help="ibsi: RadiomicsLab's IBSI engine on each kernel; pyradiomics: pyradiomics' voxelBased mode.")
@click.option("--params", default=None,
              help="Settings: a preset name or parameter file (YAML/JSON; pyradiomics keys or an ibsi: section).")
@click.option("--label", type=int, default=None, help="Label value of MASK to use (default: its only label).")
@click.option("--in-plane", is_flag=True, help="2D kernels in each slice instead of 3D kernels.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Voxel type of the written maps.")
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), default=None,
              help="Folder for <feature>.nrrd, maps.json and summary.csv.")
@click.option("--list-features", is_flag=True, help="List the feature names of --definition and exit.")
def command(image, mask, features, radius, definition, params, label, in_plane, dtype, output_dir, list_features):
    """Voxel-wise feature maps: every feature over the kernel around each voxel of MASK.

    Writes DIR/<feature>.nrrd (on IMAGE's grid, NaN outside the mask and where a feature is undefined),
    DIR/maps.json (provenance: versions, settings, geometry, hashes, files) and DIR/summary.csv (per map
    inside the mask: voxels, undefined, mean, std, min, p5, p25, p50, p75, p95, max). The memory estimate
    is printed before the work; a request above the available memory is refused.
    """
    from RadiomicsLabLib.featuremaps import catalogue

    if list_features:
        for name, family in catalogue(definition, in_plane).items():
            click.echo(f"{name}\t{family}")
        return
    if image is None or mask is None:
        raise click.UsageError("Give IMAGE and MASK (a label map on IMAGE's grid).")
    if not features:
        raise click.UsageError("Give --features, e.g. --features glcm_Contrast,firstorder_Mean or --features glcm "
                               "(see --list-features).")
    if output_dir is None:
        raise click.UsageError("Give the output folder with -o DIR.")
    plan = _plan(image, mask, features, radius, definition, params, label, in_plane, dtype, output_dir)
    click.echo(plan.describe(), err=True)
    maps = _run(plan)
    maps.provenance["inputs"] = _inputs(image, mask)
    written = write_maps(maps, output_dir)
    click.echo(f"Wrote {len(maps)} map(s) of {maps.values.shape[0]} voxels in {maps.provenance['seconds']:.1f} s "
               f"-> {output_dir} ({', '.join(p.name for p in written[-2:])} and {len(written) - 2} NRRD file(s))",
               err=True)


def _plan(image, mask, features, radius, definition, params, label, in_plane, dtype, output_dir):
    """Read and check everything (inputs, settings, features, memory, output folder) before any map work."""
    from RadiomicsLabLib.featuremaps import plan_feature_maps
    from RadiomicsLabLib.fileio import check_output, check_outputs
    from RadiomicsLabLib.imageio import read_image
    from RadiomicsLabLib.validation import check_label_value, check_mask_is_label_map

    check_label_value(label)
    inputs = {"image": image, "mask": mask, "parameter file": params}
    check_output(output_dir, inputs, "folder")
    check_outputs([output_dir / "maps.json", output_dir / "summary.csv"], inputs)
    image_sitk = read_image(image, "image")
    mask_sitk = check_mask_is_label_map(read_image(mask, "mask"), where=f"mask '{mask}'")
    plan = plan_feature_maps(image_sitk, mask_sitk, features, radius, definition, label=label,
                             in_plane=True if in_plane else None, params=params, dtype=dtype)
    check_outputs([output_dir / f"{name}.nrrd" for name in plan.features], inputs)
    return plan


def _run(plan):
    from RadiomicsLabLib.featuremaps import run_plan

    from . import progress_bar

    bar = None

    def progress(done, total, message):
        nonlocal bar
        if bar is None:
            bar = progress_bar(total=total, unit="chunk", leave=False)
            return True
        bar.set_postfix_str(message)
        bar.update(done - bar.n)
        return True

    try:
        return run_plan(plan, progress)
    finally:
        if bar is not None:
            bar.close()


def _inputs(image: Path, mask: Path) -> dict:
    from RadiomicsLabLib.provenance import file_sha256

    def describe(path):
        return {"path": str(path.resolve()), "sha256": file_sha256(path) if path.is_file() else None}

    return {"image_file": describe(image), "mask_file": describe(mask)}


def write_maps(maps, output_dir: Path) -> list:
    """Write every map as ``<feature>.nrrd``, ``maps.json`` (provenance and file list) and ``summary.csv``.

    All files are first written to a temporary folder beside ``output_dir`` and then renamed into it, so a
    failure leaves no half-written file and no partial set (files already in ``output_dir`` with other names
    are kept).
    """
    import csv
    import io
    import json
    import os
    import shutil
    import tempfile

    import SimpleITK as sitk

    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.results import format_value

    output_dir = Path(output_dir)
    created = not output_dir.exists()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    except OSError as error:
        raise RadiomicsLabError(f"Cannot write '{output_dir}': {error.strerror}; choose another output folder.") from None
    try:
        names = []
        for name in maps:
            path = staging / f"{name}.nrrd"
            sitk.WriteImage(maps[name], str(path), True)
            names.append(path.name)
        rows = maps.summary()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v if isinstance(v, (str, int)) else format_value(v) for k, v in row.items()})
        (staging / "summary.csv").write_text(buffer.getvalue(), encoding="utf-8")
        record = {**maps.provenance, "files": {"maps": names, "summary": "summary.csv"}}
        (staging / "maps.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        written = []
        for name in names + ["summary.csv", "maps.json"]:
            os.replace(staging / name, output_dir / name)
            written.append(output_dir / name)
        return written
    except (OSError, RuntimeError) as error:
        if created:
            shutil.rmtree(output_dir, ignore_errors=True)
        reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[-1]
        raise RadiomicsLabError(f"Cannot write the maps to '{output_dir}': {reason}; choose another output folder.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)

