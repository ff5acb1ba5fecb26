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
@click.option("--roi", "rois", multiple=True,
              help="MASK a DICOM RTSTRUCT or SEG: the ROI / segment to map, by name (default: the file's only one).")
@click.option("--in-plane", is_flag=True, help="2D kernels in each slice instead of 3D kernels.")
@click.option("--resample-mask", is_flag=True, help="Resample the mask onto the image grid (nearest neighbour) when the grids differ.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Voxel type of the written maps.")
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), default=None,
              help="Folder for <feature>.nrrd, maps.json and summary.csv.")
@click.option("--list-features", is_flag=True, help="List the feature names of --definition and exit.")
def command(image, mask, features, radius, definition, params, label, rois, in_plane, resample_mask, dtype, output_dir,
            list_features):
    """Voxel-wise feature maps: every feature over the kernel around each voxel of MASK.

    MASK is a label map on IMAGE's grid, or a DICOM RTSTRUCT or SEG with IMAGE the folder of the DICOM series
    it was drawn on (--roi NAME picks its ROI); the segment's name (its ROI name, or Label_N) is recorded in
    maps.json's inputs.

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
        raise click.UsageError("Give IMAGE and MASK (a label map on IMAGE's grid, or a DICOM RTSTRUCT/SEG with IMAGE "
                               "its series folder).")
    if not features:
        raise click.UsageError("Give --features, e.g. --features glcm_Contrast,firstorder_Mean or --features glcm "
                               "(see --list-features).")
    if output_dir is None:
        raise click.UsageError("Give the output folder with -o DIR.")
    plan, segment = _plan(image, mask, features, radius, definition, params, label, rois, in_plane, resample_mask,
                          dtype, output_dir)
    click.echo(f"Segment '{segment}': {plan.describe()}", err=True)
    maps = _run(plan)
    from RadiomicsLabLib.featuremaps import write_feature_maps
    from RadiomicsLabLib.results import file_inputs

    maps.provenance["inputs"] = file_inputs(image, mask)
    maps.provenance["inputs"]["mask_file"]["segment"] = segment  # as the Logic's inputs name the segment
    written = list(write_feature_maps(maps, output_dir))
    click.echo(f"Wrote {len(maps)} map(s) of {maps.values.shape[0]} voxels in {maps.provenance['seconds']:.1f} s "
               f"-> {output_dir} ({', '.join(written[-2:])} and {len(written) - 2} NRRD file(s))", err=True)


def _plan(image, mask, features, radius, definition, params, label, rois, in_plane, resample_mask, dtype, output_dir):
    """Read and check everything (inputs, settings, features, memory, output folder) before any map work;
    returns the plan and the mapped segment's name (its ROI name for a DICOM mask, else Label_N)."""
    from RadiomicsLabLib.dicom import is_dicom_mask, read_mask
    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.featuremaps import check_map_outputs, plan_feature_maps
    from RadiomicsLabLib.imageio import read_image
    from RadiomicsLabLib.validation import check_label_value

    check_label_value(label)
    inputs = {"image": image, "mask": mask, "parameter file": params}
    check_map_outputs(output_dir, [], inputs)
    image_sitk = read_image(image, "image")
    mask_sitk, segments = read_mask(mask, image, "mask", rois or None)
    if label is None and len(segments) > 1 and is_dicom_mask(mask):
        raise RadiomicsLabError(f"Maps are of one segment, and the mask '{mask}' gives {len(segments)} "
                                f"({', '.join(repr(n) for n in segments)}); pick one with --roi NAME.")
    plan = plan_feature_maps(image_sitk, mask_sitk, features, radius, definition, label=label,
                             in_plane=True if in_plane else None, params=params, dtype=dtype,
                             resample_mask=resample_mask)
    check_map_outputs(output_dir, plan.features, inputs)
    names = {value: name for name, value in segments.items()}
    return plan, names.get(plan.settings.label, f"Label_{plan.settings.label}")


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
