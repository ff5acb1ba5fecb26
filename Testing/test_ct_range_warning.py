"""A CT preset (a re-segmentation range in Hounsfield units) applied to a PET or MR image is computed, with a warning.

IBSI configurations re-segment CT to [-500, 400] or [-1000, 400] HU. On the sarcoma patients' PET (SUV) and MR, which
have no negative intensity, that range silently leaves out the brighter voxels and bins intensities in HU steps; the
warning says so, how much of the ROI was left out, and what to use instead. CT (with air at about -1000 HU) gets none.
"""

import subprocess
import sys
import warnings

import pytest
import SimpleITK as sitk

from RadiomicsLabLib.errors import RadiomicsLabWarning
from RadiomicsLabLib.extraction import extract


def run(folder, modality, preset="ibsi-C"):
    image = sitk.ReadImage(str(folder / f"{modality}_image.nii.gz"))
    mask = sitk.ReadImage(str(folder / f"{modality}_mask.nii.gz"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = extract(image, mask, {"GTV": 1}, preset)
    return result, [w for w in caught if issubclass(w.category, RadiomicsLabWarning)], image, mask


@pytest.mark.parametrize("modality", ["PET", "MR_T1"])
def test_hu_range_on_pet_and_mr_warns_with_the_share_left_out(data, modality):
    folder = data / "sts" / "STS_002"
    result, caught, _, _ = run(folder, modality)
    assert len(caught) == 1
    # The share of the interpolated ROI (configuration C: 2 mm voxels) that re-segmentation removed, from the
    # engine's IBSI diagnostics (voxel counts of the intensity mask after interpolation and after re-segmentation).
    diagnostics = result.provenance["segments"]["GTV"]["diagnostics"]
    left_out = 1 - diagnostics["int_mask_vox_count_reseg_roi"] / diagnostics["int_mask_vox_count_interp_roi"]
    message = str(caught[0].message)
    assert message.startswith("The settings re-segment to [-1000, 400], a CT range in Hounsfield units, but this "
                              "image has no negative intensity (a PET or MR image?)")
    assert f": {left_out:.0%} of the region of interest was left out." in message
    assert message in result.provenance["segments"]["GTV"]["diagnostics"]["notes"]


def test_hu_range_on_ct_does_not_warn(data):
    _, caught, _, _ = run(data / "sts" / "STS_002", "CT")
    assert caught == []


def test_command_line_prints_one_warning_line_and_writes_the_result(data, tmp_path):
    folder = data / "sts" / "STS_002"
    out = tmp_path / "pet.csv"
    result = subprocess.run([sys.executable, "-m", "RadiomicsLabLib.cli", "extract", str(folder / "PET_image.nii.gz"),
                             str(folder / "PET_mask.nii.gz"), "--params", "ibsi-C", "-o", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and out.is_file()
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("radiomicslab: warning: The settings re-segment to [-1000, 400]")]
    assert "RadiomicsLabWarning" not in result.stderr and "warnings.warn" not in result.stderr


def _engine_warnings(image, mask, settings):
    from RadiomicsLabLib.ibsi.engine import compute_features

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compute_features(image, mask, settings)
    return [str(w.message) for w in caught if issubclass(w.category, RadiomicsLabWarning)], result


def test_the_image_decides_not_the_part_the_engine_keeps(data):
    """The engine keeps only the ROI's neighbourhood; whether the image has a negative intensity is the whole
    image's question: a PET with one negative voxel far from the ROI gets no warning, and a PET whose cubic
    interpolation overshoots below 0 next to the ROI (the image itself has none) still gets it."""
    import numpy as np

    from RadiomicsLabLib.ibsi.configurations import CONFIGURATIONS

    folder = data / "sts" / "STS_002"
    image = sitk.ReadImage(str(folder / "PET_image.nii.gz"))
    mask = sitk.ReadImage(str(folder / "PET_mask.nii.gz"))
    settings = CONFIGURATIONS["C"]
    assert float(sitk.GetArrayViewFromImage(image).min()) >= 0
    caught, _ = _engine_warnings(image, mask, settings)
    assert len(caught) == 1

    far = sitk.Image(image)
    far[0, 0, 0] = -1.0       # a corner, far outside the ROI's neighbourhood
    caught, result = _engine_warnings(far, mask, settings)
    assert caught == [] and result.diagnostics["min_int_init_img"] == -1.0

    # a sharp step inside the ROI: the cubic B-spline rings below 0 there, the image stays >= 0
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.float32)
    z, y, x = (int(c[len(c) // 2]) for c in np.nonzero(sitk.GetArrayViewFromImage(mask)))
    array[:, :, x:] = 50.0
    step = sitk.GetImageFromArray(array)
    step.CopyInformation(image)
    cubic = settings.replaced(interpolation="cubic", round_intensities=False)
    caught, result = _engine_warnings(step, mask, cubic)
    assert result.diagnostics["min_int_interp_img"] < 0 <= result.diagnostics["min_int_init_img"]
    assert len(caught) == 1


def test_without_diagnostics_the_image_still_decides(data):
    """Without diagnostics (no statistics of the whole image are taken otherwise) the image's lowest value is still
    the one asked: the PET warns, the PET with one negative voxel far from the ROI does not, the CT does not."""
    from RadiomicsLabLib.ibsi.configurations import CONFIGURATIONS

    folder = data / "sts" / "STS_002"
    pet = sitk.ReadImage(str(folder / "PET_image.nii.gz")), sitk.ReadImage(str(folder / "PET_mask.nii.gz"))
    settings = CONFIGURATIONS["C"].replaced(diagnostics=False)
    for interpolation in ("linear", "cubic"):
        caught, result = _engine_warnings(*pet, settings.replaced(interpolation=interpolation))
        assert len(caught) == 1 and caught[0] in result.notes and result.diagnostics == {}
    far = sitk.Image(pet[0])
    far[0, 0, 0] = -1.0
    assert _engine_warnings(far, pet[1], settings)[0] == []
    ct = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    assert _engine_warnings(*ct, settings)[0] == []


def test_a_nan_far_from_the_roi_is_the_diagnostics_concern_only(data):
    """Without diagnostics only the intensities the engine keeps must be finite (a CT: see test_ibsi_preprocessing),
    also where the warning needs the whole image's lowest value: a PET (no negative intensity) with a NaN in a far
    corner is computed, the same values, with the warning; with diagnostics it is an error that says what to do."""
    import numpy as np

    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.ibsi.configurations import CONFIGURATIONS

    folder = data / "sts" / "STS_002"
    image, mask = sitk.ReadImage(str(folder / "PET_image.nii.gz")), sitk.ReadImage(str(folder / "PET_mask.nii.gz"))
    corner = sitk.Image(image)
    corner[0, 0, 0] = float("nan")
    lean = CONFIGURATIONS["C"].replaced(diagnostics=False)
    caught, result = _engine_warnings(corner, mask, lean)
    assert len(caught) == 1 and result.notes[0] == caught[0]
    _, clean = _engine_warnings(image, mask, lean)
    np.testing.assert_array_equal(list(result.values.values()), list(clean.values.values()))
    with pytest.raises(RadiomicsLabError, match="NaN or infinite values; replace them"):
        _engine_warnings(corner, mask, CONFIGURATIONS["C"])


def test_the_warning_stays_in_the_notes_with_an_image_filter(data):
    """An IBSI chapter 2 filter is applied after the preprocessing: the preprocessing's note (the CT-range warning)
    is still in the result's notes."""
    from RadiomicsLabLib.ibsi.configurations import CONFIGURATIONS

    folder = data / "sts" / "STS_002"
    pet = sitk.ReadImage(str(folder / "PET_image.nii.gz")), sitk.ReadImage(str(folder / "PET_mask.nii.gz"))
    for image_filter in (None, {"filter": "mean", "support": 3}):
        caught, result = _engine_warnings(*pet, CONFIGURATIONS["C"].replaced(image_filter=image_filter))
        assert len(caught) == 1 and caught[0] in result.notes, image_filter
