"""Peritumoral and intratumoral rings (RadiomicsLabLib.regions and ``radiomicslab rings``).

Known answers:
- an analytic sphere (synthetic, the only way to have an exact shell volume): voxel centres within
  R = 20 mm of a centre placed off the grid, on anisotropic grids; every ring's volume is within
  "voxel tolerance" of the exact shell volume 4/3 pi ((R+b)^3 - (R+a)^3), i.e. within the volume of
  a layer half the largest voxel spacing thick over the ring's two surfaces;
- an independent implementation on the real sarcoma masks: the 0..+r ring equals a binary dilation
  with the closed ellipsoidal ball of radius r mm (structuring element built voxel by voxel from the
  spacing) minus the mask, and the -r..0 ring the mask minus the erosion with that ball.
"""

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.regions import grow, reaches_grid_border, ring, signed_distance_mm, volume_mm3

from conftest import run_cli
from test_cli import assert_user_error


def sphere_mask(spacing, radius=20.0, extent=50.0, centre=(0.13, -0.41, 0.77)):
    """Voxel centres within ``radius`` mm of ``centre`` on a grid of ``spacing`` covering +-extent mm."""
    size = [int(2 * extent / s) for s in spacing]
    image = sitk.Image(size, sitk.sitkUInt8)
    image.SetSpacing(spacing)
    image.SetOrigin((-extent + 0.1, -extent + 0.2, -extent + 0.3))
    z, y, x = np.indices(size[::-1])
    origin = np.array(image.GetOrigin())
    squared = sum((origin[i] + idx * spacing[i] - centre[i]) ** 2 for i, idx in enumerate((x, y, z)))
    mask = sitk.GetImageFromArray((squared <= radius ** 2).astype(np.uint8))
    mask.CopyInformation(image)
    return mask


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.9, 2.0), (0.977, 0.977, 3.27)])
def test_rings_of_an_analytic_sphere(spacing):
    radius = 20.0
    mask = sphere_mask(spacing, radius)
    tolerance_mm = max(spacing) / 2
    for start, stop in [(0, 5), (-2, 2), (-5, -2), (2, 7), (0, 10), (-10, 0)]:
        volume = volume_mm3(ring(mask, start, stop))
        exact = 4 / 3 * math.pi * ((radius + stop) ** 3 - (radius + start) ** 3)
        surfaces = 4 * math.pi * ((radius + start) ** 2 + (radius + stop) ** 2)
        assert abs(volume - exact) <= tolerance_mm * surfaces, (spacing, start, stop, volume, exact)
    # rings tile: -5..0 and 0..5 are disjoint and together the -5..+5 band
    inner, outer, band = (sitk.GetArrayFromImage(ring(mask, a, b)) for a, b in [(-5, 0), (0, 5), (-5, 5)])
    assert not np.any(inner & outer)
    assert np.array_equal(inner | outer, band)


def ball(radius_mm, spacing_zyx):
    """Closed ellipsoidal structuring element: offsets whose physical length is <= radius_mm."""
    half = [int(radius_mm // s) for s in spacing_zyx]
    offsets = np.indices([2 * h + 1 for h in half]) - np.array(half)[:, None, None, None]
    lengths = np.sqrt(sum((o * s) ** 2 for o, s in zip(offsets, spacing_zyx)))
    return lengths <= radius_mm + 1e-9


@pytest.mark.parametrize("patient", ["STS_002", "STS_003"])
def test_rings_equal_dilation_and_erosion_by_a_ball(data, patient):
    mask = sitk.ReadImage(str(data / "sts" / patient / "CT_mask.nii.gz"))
    inside = sitk.GetArrayFromImage(mask) > 0
    spacing = mask.GetSpacing()[::-1]
    for radius in (3.0, 7.5):
        element = ball(radius, spacing)
        dilated = ndimage.binary_dilation(inside, element)
        eroded = ndimage.binary_erosion(inside, element, border_value=0)
        assert np.array_equal(sitk.GetArrayFromImage(ring(mask, 0, radius)) > 0, dilated & ~inside)
        assert np.array_equal(sitk.GetArrayFromImage(ring(mask, -radius, 0)) > 0, inside & ~eroded)
        assert np.array_equal(sitk.GetArrayFromImage(grow(mask, radius)) > 0, dilated)
    # the signed distance of voxels next to the border is one spacing, in mm, on each axis
    distance = signed_distance_mm(mask)
    z, y, x = np.argwhere(inside)[0]
    assert distance[z, y, x] < 0 and distance[z, y, x - 1] == pytest.approx(spacing[2])


def test_clip_to_a_body_mask(data):
    folder = data / "sts" / "STS_002"
    mask = sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    ct = sitk.ReadImage(str(folder / "CT_image.nii.gz"))
    body = sitk.Cast(ct > -500, sitk.sitkUInt8)  # a body mask: soft tissue and bone, not air
    unclipped = sitk.GetArrayFromImage(ring(mask, 0, 30))
    clipped = sitk.GetArrayFromImage(ring(mask, 0, 30, clip=body))
    assert np.array_equal(clipped, unclipped & sitk.GetArrayFromImage(body))
    assert clipped.sum() < unclipped.sum()
    assert sitk.GetArrayFromImage(ct)[clipped > 0].min() > -500


def test_ring_errors(data):
    mask = sitk.ReadImage(str(data / "sts" / "STS_002" / "CT_mask.nii.gz"))
    with pytest.raises(RadiomicsLabError, match="empty: --from must be less than --to"):
        ring(mask, 5, 0)
    with pytest.raises(RadiomicsLabError, match="no voxels with label 3"):
        ring(mask, 0, 5, label=3)
    pet_mask = sitk.ReadImage(str(data / "sts" / "STS_002" / "PET_mask.nii.gz"))
    with pytest.raises(RadiomicsLabError, match="clip mask is on a different grid"):
        ring(mask, 0, 5, clip=pet_mask)


def test_rings_cli(data, tmp_path):
    folder = data / "sts" / "STS_002"
    out = tmp_path / "ring.nrrd"
    done = run_cli("rings", folder / "CT_mask.nii.gz", "--from", "-2", "--to", "5", "-o", out)
    assert done.returncode == 0, done.stderr
    written = sitk.ReadImage(str(out))
    expected = ring(sitk.ReadImage(str(folder / "CT_mask.nii.gz")), -2, 5)
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(expected))
    assert written.GetSpacing() == pytest.approx(expected.GetSpacing()) and written.GetOrigin() == pytest.approx(expected.GetOrigin())
    assert "Ring -2 to +5 mm" in done.stderr and not reaches_grid_border(expected)
    # the CT is cropped 5 cm around the tumour: an 80 mm ring is cut by the image's edge (the command warns)
    assert reaches_grid_border(ring(sitk.ReadImage(str(folder / "CT_mask.nii.gz")), 0, 80))


def test_rings_cli_bad_input(data, tmp_path):
    folder = data / "sts" / "STS_002"
    out = tmp_path / "ring.nrrd"
    assert_user_error(run_cli("rings", folder / "CT_mask.nii.gz", "--from", "3", "--to", "1", "-o", out), "--from must be less than --to")
    assert_user_error(run_cli("rings", folder / "CT_mask.nii.gz", "--from", "0", "--to", "5", "--clip",
                              folder / "PET_mask.nii.gz", "-o", out), "different grid")
    assert not out.exists()
