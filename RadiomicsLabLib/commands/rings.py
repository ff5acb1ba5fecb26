"""``radiomicslab rings``: a peritumoral or intratumoral ring (shell) around a segment, by signed distance in mm.

Module-level imports stay click + stdlib (the CLI imports every command at start-up).
"""

import time
from pathlib import Path

import click


@click.command("rings")
@click.argument("mask", type=click.Path(path_type=Path))
@click.option("--from", "start_mm", type=float, required=True, help="Inner distance in mm (negative = inside the segment).")
@click.option("--to", "stop_mm", type=float, required=True, help="Outer distance in mm (positive = outside the segment).")
@click.option("--clip", type=click.Path(path_type=Path), default=None, help="Body or organ mask on MASK's grid: keep the ring inside it.")
@click.option("--label", type=int, default=None, help="Label value of the segment in MASK (default: every non-zero voxel).")
@click.option("--clip-label", type=int, default=None, help="Label value in the clip mask (default: every non-zero voxel).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Label map to write (1 = ring): .nrrd, .nii, .nii.gz or .mha, e.g. ring.nrrd.")
def command(mask, start_mm, stop_mm, clip, label, clip_label, output):
    """Write the ring from --from to --to mm around the segment of MASK as a label map on MASK's grid.

    Distances are between voxel centres with the voxel spacing (mm): the segment grown by r mm is
    every voxel within r mm of it (shrunk when r < 0), and the ring is the segment grown by --to
    minus the segment grown by --from; e.g. --from 0 --to 5 is the 5 mm margin around a tumour,
    --from -2 --to 2 the band across its border.
    """
    from ..fileio import check_output, write_image_atomic
    from ..imageio import read_image
    from ..regions import check_ring, reaches_grid_border, ring, volume_mm3
    from ..validation import check_label_value, check_mask_is_label_map

    started = time.perf_counter()
    check_label_value(label)
    check_label_value(clip_label, "--clip-label")
    check_ring(start_mm, stop_mm)
    check_output(output, {"mask": mask, "clip mask": clip}, "image")
    segment = check_mask_is_label_map(read_image(mask, "mask"), where=f"mask '{mask}'")
    clip_mask = check_mask_is_label_map(read_image(clip, "clip mask"), where=f"clip mask '{clip}'") if clip else None
    region = ring(segment, start_mm, stop_mm, clip_mask, label, clip_label)
    write_image_atomic(region, output)  # the format follows the name: NRRD, NIfTI or MetaImage
    click.echo(f"Ring {start_mm:+g} to {stop_mm:+g} mm: {volume_mm3(region):.1f} mm^3 in "
               f"{time.perf_counter() - started:.1f} s -> {output}", err=True)
    if volume_mm3(region) == 0:
        click.echo("radiomicslab: warning: the ring has no voxels (narrower than the voxel spacing, or clipped away).", err=True)
    elif reaches_grid_border(region):
        click.echo("radiomicslab: warning: the ring reaches the edge of the image and is cut there; "
                   "use an image with more margin around the segment for the full ring.", err=True)
