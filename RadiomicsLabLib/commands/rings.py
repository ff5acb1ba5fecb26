"""``radiomicslab rings``: a peritumoral or intratumoral ring (shell) around a segment, by signed distance in mm.

Module-level imports stay click + stdlib (the CLI imports every command at start-up).
"""

import time
from pathlib import Path

import click


@click.command("rings")
@click.argument("inputs", nargs=-1, metavar="[IMAGE] MASK", type=click.Path(path_type=Path))
@click.option("--from", "start_mm", type=float, required=True, help="Inner distance in mm (negative = inside the segment).")
@click.option("--to", "stop_mm", type=float, required=True, help="Outer distance in mm (positive = outside the segment).")
@click.option("--clip", type=click.Path(path_type=Path), default=None,
              help="Body or organ mask on MASK's grid (a label map, or a DICOM RTSTRUCT/SEG of IMAGE): keep the ring inside it.")
@click.option("--label", type=int, default=None, help="Label value of the segment in MASK (default: every non-zero voxel).")
@click.option("--clip-label", type=int, default=None, help="Label value in the clip mask (default: every non-zero voxel).")
@click.option("--roi", "rois", multiple=True,
              help="MASK a DICOM RTSTRUCT or SEG: ROI / segment to ring around, by name (repeatable: their union; "
                   "default: all of them).")
@click.option("--clip-roi", "clip_rois", multiple=True,
              help="--clip a DICOM RTSTRUCT or SEG: its ROI / segment to keep the ring inside (repeatable; default: all).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Label map to write (1 = ring): .nrrd, .nii, .nii.gz or .mha, e.g. ring.nrrd.")
@click.option("--seg", type=click.Path(path_type=Path), default=None,
              help="Also (or instead of -o) write the ring as a DICOM SEG (e.g. ring.dcm) referencing IMAGE's DICOM series.")
def command(inputs, start_mm, stop_mm, clip, label, clip_label, rois, clip_rois, output, seg):
    """Write the ring from --from to --to mm around the segment of MASK as a label map on MASK's grid.

    Distances are between voxel centres with the voxel spacing (mm): the segment grown by r mm is
    every voxel within r mm of it (shrunk when r < 0), and the ring is the segment grown by --to
    minus the segment grown by --from; e.g. --from 0 --to 5 is the 5 mm margin around a tumour,
    --from -2 --to 2 the band across its border.

    MASK is a label map, or a DICOM RTSTRUCT or SEG with IMAGE the folder of the DICOM series it was
    drawn on (--roi picks its ROIs). IMAGE is needed only then and for --seg, which writes the ring as a
    DICOM SEG segment ("Ring +0 to +5 mm", coded as tissue) referencing that series; a label-map MASK
    given with IMAGE must lie on IMAGE's grid.
    """
    from ..dicom import is_dicom_mask, read_mask
    from ..dicom.masks import check_seg_output
    from ..errors import RadiomicsLabError
    from ..fileio import check_output, write_image_atomic
    from ..regions import check_ring, reaches_grid_border, ring, volume_mm3
    from ..validation import check_label_value

    started = time.perf_counter()
    if not inputs or len(inputs) > 2:
        raise click.UsageError(f"Give MASK, or IMAGE and MASK (got {len(inputs)} argument(s)).")
    image, mask = (None, *inputs) if len(inputs) == 1 else inputs
    if output is None and seg is None:
        raise click.UsageError("Give the output: -o ring.nrrd (a label map) and/or --seg ring.dcm (a DICOM SEG).")
    check_label_value(label)
    check_label_value(clip_label, "--clip-label")
    check_ring(start_mm, stop_mm)
    read = {"image": image, "mask": mask, "clip mask": clip}
    if output is not None:
        check_output(output, read, "image")
    if seg is not None:
        check_seg_output(seg, image, {**read, "-o output": output})
    if clip_rois and not (clip and is_dicom_mask(clip)):
        raise RadiomicsLabError("--clip-roi picks ROIs of a DICOM RTSTRUCT or SEG given with --clip; "
                                f"{f'the clip mask {str(clip)!r} is a label map: use --clip-label' if clip else 'give --clip'}.")
    segment = read_mask(mask, image, "mask", rois or None)[0]
    clip_mask = read_mask(clip, image, "clip mask", clip_rois or None)[0] if clip else None
    if image is not None and not is_dicom_mask(mask):
        _check_on_image_grid(image, segment, mask)
    region = ring(segment, start_mm, stop_mm, clip_mask, label, clip_label)
    if seg is not None and volume_mm3(region) == 0:
        raise RadiomicsLabError(f"The ring {start_mm:+g} to {stop_mm:+g} mm has no voxels (narrower than the voxel "
                                "spacing, or clipped away), and a DICOM SEG cannot hold an empty segment; widen the ring.")
    written = []
    if output is not None:
        write_image_atomic(region, output)  # the format follows the name: NRRD, NIfTI or MetaImage
        written.append(str(output))
    if seg is not None:
        from ..dicom.write import write_seg

        write_seg([(f"Ring {start_mm:+g} to {stop_mm:+g} mm", region)], image, seg,
                  series_description=f"RadiomicsLab ring {start_mm:+g} to {stop_mm:+g} mm")
        written.append(str(seg))
    click.echo(f"Ring {start_mm:+g} to {stop_mm:+g} mm: {volume_mm3(region):.1f} mm^3 in "
               f"{time.perf_counter() - started:.1f} s -> {', '.join(written)}", err=True)
    if volume_mm3(region) == 0:
        click.echo("radiomicslab: warning: the ring has no voxels (narrower than the voxel spacing, or clipped away).", err=True)
    elif reaches_grid_border(region):
        click.echo("radiomicslab: warning: the ring reaches the edge of the image and is cut there; "
                   "use an image with more margin around the segment for the full ring.", err=True)


def _check_on_image_grid(image, segment, mask) -> None:
    """Refuse a label-map MASK that is not on IMAGE's grid (a DICOM MASK is read onto it)."""
    from ..errors import RadiomicsLabError
    from ..imageio import read_image
    from ..validation import grid_differences

    differences = grid_differences(read_image(image, "image"), segment)
    if differences:
        raise RadiomicsLabError(f"The mask '{mask}' is not on the grid of the image '{image}' ({'; '.join(differences)}); "
                                "give the image it was drawn on, or leave IMAGE out.")
