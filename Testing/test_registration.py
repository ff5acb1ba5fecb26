"""Registration (RadiomicsLabLib.registration): a real channel moved by a known transform is recovered.

The real MR T1 of sarcoma patient STS_001 is resampled through a known rigid transform (rotation
4, -3, 5 degrees about the tumour centre, translation 6, -4, 3 mm): ``moved(x) = MR(K(x))``. Registering
``moved`` onto the MR must find ``T = K^-1``, so ``K(T(x)) = x``: checked at every tumour voxel
(largest displacement < 1 mm) and as a rotation angle (< 1 degree). The B-spline case warps a real
2D slice by a known smooth displacement field K(x) = x + u(x) and checks K(T(x)) = x the same way.

Known motions on all four patients (CT and MR T1; there is no real second timepoint, so the follow-up
is the real image resampled through a known rigid K, outside filled with the image's minimum): pure
translations of 5 and 20 mm, rotations of about 10 degrees about the GTV centroid or the image centre,
and both together. The metric region is the GTV grown by 20 mm (as delta and habitats use it); the
recovered transform must bring the GTV centroid back within 1 mm (|K(T(c)) - c|) and the rotation
within 0.5 degree. Pairs that cannot be registered (an image against uniform noise, an image against
a 3-slice slab of itself) must be refused, never returned as usable.
"""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.regions import grow
from RadiomicsLabLib.registration import (
    affine_matrix,
    register,
    resample,
    rotation_angle_degrees,
    transform_from_matrix,
)

#: name -> (Euler angles about x, y, z in degrees, translation in mm (LPS), centre of rotation: GTV centroid or image centre)
MOTIONS = {
    "translation 5 mm": ((0, 0, 0), (5.0, 0.0, 0.0), "lesion"),
    "translation 20 mm": ((0, 0, 0), (12.0, -10.0, 12.0), "lesion"),
    "translation 21 mm": ((0, 0, 0), (-14.0, 14.0, -6.0), "lesion"),
    "rotation 10 deg about the lesion": ((6, -5, 6), (0.0, 0.0, 0.0), "lesion"),
    "rotation 10 deg about the image centre": ((-5, 6, -6), (0.0, 0.0, 0.0), "image"),
    "rotation 7.7 deg + 14 mm about the image centre": ((4, -3, 5), (10.0, -8.0, 6.0), "image"),
    "rotation 10 deg + 20 mm about the lesion": ((-6, 5, -5), (-12.0, -12.0, 10.0), "lesion"),
    "rotation 10 deg + 20 mm about the image centre": ((5, 5, -6), (14.0, 8.0, -12.0), "image"),
}
#: One motion per patient and modality: every patient and both modalities, each kind of motion at least once.
KNOWN_MOTION_CASES = [
    ("STS_001", "CT", "rotation 10 deg + 20 mm about the lesion"),
    ("STS_001", "MR_T1", "translation 20 mm"),
    ("STS_002", "CT", "rotation 7.7 deg + 14 mm about the image centre"),
    ("STS_002", "MR_T1", "rotation 10 deg about the lesion"),
    ("STS_003", "CT", "translation 21 mm"),
    ("STS_003", "MR_T1", "rotation 10 deg about the image centre"),
    ("STS_004", "CT", "translation 5 mm"),
    ("STS_004", "MR_T1", "rotation 10 deg + 20 mm about the image centre"),
]


@pytest.fixture(scope="module")
def moved_mr(data):
    folder = data / "sts" / "STS_001"
    mr = sitk.ReadImage(str(folder / "MR_T1_image.nii.gz"))
    mask = resample(sitk.ReadImage(str(folder / "CT_mask.nii.gz")), mr, interpolator="nearest", default_value=0)
    centre = np.argwhere(sitk.GetArrayViewFromImage(mask)).mean(axis=0)[::-1]
    known = sitk.Euler3DTransform()
    known.SetCenter(mr.TransformContinuousIndexToPhysicalPoint(centre.tolist()))
    known.SetRotation(math.radians(4), math.radians(-3), math.radians(5))
    known.SetTranslation((6.0, -4.0, 3.0))
    moved = resample(mr, mr, known, default_value=0.0)
    points = np.array([mr.TransformIndexToPhysicalPoint([int(i) for i in index[::-1]])
                       for index in np.argwhere(sitk.GetArrayViewFromImage(mask))[::7]])
    return mr, moved, mask, known, points


def residual(known, result_matrix, points):
    """Largest |K(T(x)) - x| over the tumour points (mm) and the rotation angle of K o T (degrees)."""
    composite = affine_matrix(known) @ result_matrix
    moved = points @ composite[:3, :3].T + composite[:3, 3]
    return float(np.linalg.norm(moved - points, axis=1).max()), rotation_angle_degrees(composite)


def test_rigid_recovers_a_known_transform(moved_mr):
    mr, moved, mask, known, points = moved_mr
    before = residual(known, np.eye(4), points)
    assert before[0] > 10 and before[1] > 6  # the known transform moves the tumour by more than 1 cm
    result = register(mr, moved, "rigid", fixed_mask=grow(mask, 20.0), seed=11)
    error_mm, angle = residual(known, result.matrix(), points)
    assert error_mm < 1.0 and angle < 1.0, (error_mm, angle, result.stop_condition)
    assert result.converged and result.kind == "rigid" and result.metric < -0.5
    assert "step too small" in result.stop_condition.lower() or "tolerance" in result.stop_condition.lower()
    # resampling the moved image back matches resampling it through the exact inverse K^-1
    back = sitk.GetArrayFromImage(resample(moved, mr, result.transform))
    exact = sitk.GetArrayFromImage(resample(moved, mr, transform_from_matrix(np.linalg.inv(affine_matrix(known)))))
    inside = sitk.GetArrayViewFromImage(mask) > 0
    assert np.corrcoef(back[inside], exact[inside])[0, 1] > 0.99
    # affine, started from the rigid result, keeps it (a rigid motion is an affine one)
    affine = register(mr, moved, "affine", fixed_mask=grow(mask, 20.0), seed=11, initial_transform=result.transform,
                      shrink_factors=(1,), smoothing_sigmas_mm=(0.0,))
    assert affine.kind == "affine" and residual(known, affine.matrix(), points)[0] < 1.0


def test_bspline_recovers_a_smooth_deformation(data):
    """A real MR slice warped by u(x) = (2 sin(2 pi y / 120), 2 cos(2 pi x / 120)) mm (smooth, known)."""
    mr = sitk.ReadImage(str(data / "sts" / "STS_001" / "MR_T1_image.nii.gz"))
    fixed = mr[:, :, mr.GetSize()[2] // 2]
    field = np.zeros((*fixed.GetSize()[::-1], 2))
    ys, xs = np.indices(fixed.GetSize()[::-1])
    px, py = fixed.GetOrigin()[0] + xs * fixed.GetSpacing()[0], fixed.GetOrigin()[1] + ys * fixed.GetSpacing()[1]
    field[..., 0], field[..., 1] = 2 * np.sin(2 * np.pi * py / 120), 2 * np.cos(2 * np.pi * px / 120)
    displacement = sitk.GetImageFromArray(field, isVector=True)
    displacement.CopyInformation(fixed)
    known = sitk.DisplacementFieldTransform(sitk.Cast(displacement, sitk.sitkVectorFloat64))
    moved = resample(fixed, fixed, known, default_value=0.0)
    body = sitk.Cast(fixed > 50, sitk.sitkUInt8)
    result = register(fixed, moved, "bspline", fixed_mask=body, seed=5, bspline_mesh_mm=30.0, iterations=100,
                      samples=5000, shrink_factors=(1,), smoothing_sigmas_mm=(0.0,))
    inside = np.argwhere(sitk.GetArrayFromImage(sitk.BinaryErode(body, [10, 10])))[::25]
    errors, before = [], []
    for y, x in inside:
        point = np.array(fixed.TransformIndexToPhysicalPoint((int(x), int(y))))
        # moved(x) = fixed(K(x)) and moved(T(x)) = fixed(x) give K(T(x)) = x
        errors.append(np.linalg.norm(np.array(known.TransformPoint(result.transform.TransformPoint(point))) - point))
        before.append(np.linalg.norm(np.array(known.TransformPoint(point)) - point))
    assert np.mean(before) > 1.5
    assert np.mean(errors) < 0.5, (np.mean(errors), result.stop_condition)
    assert result.kind == "bspline" and result.converged


def test_matrix_round_trip_and_resample_identity(data):
    transform = sitk.Euler3DTransform((10.0, -5.0, 3.0), 0.1, -0.2, 0.3, (1.0, 2.0, 3.0))
    matrix = affine_matrix(transform)
    point = (12.0, -7.5, 40.0)
    assert np.allclose(matrix[:3, :3] @ point + matrix[:3, 3], transform.TransformPoint(point), atol=1e-12)
    again = transform_from_matrix(matrix)
    assert np.allclose(again.TransformPoint(point), transform.TransformPoint(point), atol=1e-12)
    assert rotation_angle_degrees(affine_matrix(sitk.Euler3DTransform((0, 0, 0), 0, 0, math.radians(30)))) == pytest.approx(30)
    folder = data / "sts" / "STS_002"
    ct, pet = (sitk.ReadImage(str(folder / f"{n}_image.nii.gz")) for n in ("CT", "PET"))
    on_ct = resample(pet, ct)
    expected = sitk.Resample(pet, ct, sitk.Transform(), sitk.sitkLinear, math.nan, sitk.sitkFloat32)
    assert np.array_equal(sitk.GetArrayFromImage(on_ct), sitk.GetArrayFromImage(expected), equal_nan=True)


def test_registration_bad_input(data):
    mr = sitk.ReadImage(str(data / "sts" / "STS_002" / "MR_T1_image.nii.gz"))
    with pytest.raises(RadiomicsLabError, match="Unknown registration kind 'elastic'"):
        register(mr, mr, "elastic")
    constant = sitk.Image(mr.GetSize(), sitk.sitkFloat32) + 7.0
    constant.CopyInformation(mr)
    with pytest.raises(RadiomicsLabError, match="moving image is constant"):
        register(mr, constant)
    broken = sitk.Cast(mr, sitk.sitkFloat32)
    broken[5, 5, 5] = math.nan
    with pytest.raises(RadiomicsLabError, match="NaN"):
        register(broken, mr)
    far = sitk.Image(mr)
    far.SetOrigin([o + 1000.0 for o in mr.GetOrigin()])
    mask = sitk.ReadImage(str(data / "sts" / "STS_002" / "MR_T1_mask.nii.gz"))
    with pytest.raises(RadiomicsLabError, match="does not overlap"):
        register(mr, far, fixed_mask=mask)


# Known motions of the four real patients ---------------------------------------------------------
def known_motion(image, centroid, motion):
    """The Euler transform K of ``MOTIONS[motion]`` (resampling direction: moved(x) = image(K(x)))."""
    angles, translation, about = MOTIONS[motion]
    centre = centroid if about == "lesion" else image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    known = sitk.Euler3DTransform()
    known.SetCenter([float(v) for v in centre])
    known.SetRotation(*(math.radians(a) for a in angles))
    known.SetTranslation(translation)
    return known


def moved_case(data, patient, modality, motion):
    """(image, GTV grown by 20 mm, GTV centroid (LPS mm), K, moved image) of a real image and a known motion."""
    folder = data / "sts" / patient
    image = sitk.ReadImage(str(folder / f"{modality}_image.nii.gz"))
    mask = sitk.ReadImage(str(folder / f"{modality}_mask.nii.gz"))
    centroid = np.array(image.TransformContinuousIndexToPhysicalPoint(
        np.argwhere(sitk.GetArrayViewFromImage(mask)).mean(axis=0)[::-1].tolist()))
    known = known_motion(image, centroid, motion)
    moved = resample(image, image, known, default_value=float(sitk.GetArrayViewFromImage(image).min()))
    return image, grow(mask, 20.0), centroid, known, moved


def centroid_error(known, matrix, centroid):
    """|K(T(c)) - c| (mm) at the GTV centroid and the rotation angle of K o T (degrees)."""
    composite = affine_matrix(known) @ matrix
    return float(np.linalg.norm(composite[:3, :3] @ centroid + composite[:3, 3] - centroid)), rotation_angle_degrees(composite)


@pytest.mark.parametrize("patient, modality, motion", KNOWN_MOTION_CASES, ids=[" ".join(c) for c in KNOWN_MOTION_CASES])
def test_rigid_recovers_known_motions_of_real_images(data, patient, modality, motion):
    image, region, centroid, known, moved = moved_case(data, patient, modality, motion)
    before_mm, before_deg = centroid_error(known, np.eye(4), centroid)
    assert before_mm > 4.5 or before_deg > 9  # the motion moves the lesion (or turns it) a lot
    result = register(image, moved, "rigid", fixed_mask=region, seed=3)
    error_mm, angle = centroid_error(known, result.matrix(), centroid)
    assert error_mm < 1.0 and angle < 0.5, (error_mm, angle, result.stop_condition, result.metrics)
    assert result.converged and result.failure == "" and "refused" not in result.stop_condition
    metrics = result.metrics
    assert metrics["final"] == result.metric < metrics["start"] and metrics["overlap"] > 0.9
    assert [level["shrink"] for level in metrics["levels"]] == [4, 2, 1]
    # slices 3.27 mm apart are never shrunk (the in-plane 0.98 mm voxels are: 3.9, 2.0, 1.0 mm)
    assert {round(level["spacing_mm"][2], 2) for level in metrics["levels"]} == {3.27}


def test_rigid_is_repeatable_bit_for_bit(data):
    """Single-threaded ITK by default: the same call twice gives the same transform, to the last bit."""
    image, region, centroid, known, moved = moved_case(data, "STS_002", "MR_T1", "translation 5 mm")
    first, second = (register(image, moved, "rigid", fixed_mask=region, seed=5, shrink_factors=(4, 1),
                              smoothing_sigmas_mm=(2.0, 0.0)) for _ in range(2))
    assert first.converged and np.array_equal(first.matrix(), second.matrix()) and first.metric == second.metric
    assert centroid_error(known, first.matrix(), centroid)[0] < 1.0


def test_unregistrable_pairs_are_refused(data):
    folder = data / "sts" / "STS_002"
    image, mask = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    region = grow(mask, 20.0)
    # the image against uniform noise on its grid: no shared information at any alignment
    noise = sitk.GetImageFromArray(np.random.default_rng(0).uniform(0, 1000, sitk.GetArrayViewFromImage(image).shape)
                                   .astype(np.float32))
    noise.CopyInformation(image)
    result = register(image, noise, "rigid", fixed_mask=region, iterations=100)
    assert not result.converged and "share almost no information" in result.failure
    assert "refused: " in result.stop_condition and -result.metric < 0.02
    with pytest.raises(RadiomicsLabError, match="Rigid registration refused: .*share almost no information"):
        register(image, noise, "rigid", fixed_mask=region, iterations=100, on_failure="raise")
    # the image against a 3-slice slab of itself at the lesion's lower edge: a tiny overlap
    lowest = int(np.argwhere(sitk.GetArrayViewFromImage(mask))[:, 0].min())
    slab = image[:, :, lowest:lowest + 3]
    result = register(image, slab, "rigid", fixed_mask=region)
    assert not result.converged and "of the metric region lands inside the moving image" in result.failure
    assert result.metrics["overlap"] < 0.5  # a 3-slice slab holds 10 mm of a region 92 mm high


def test_result_worse_than_its_start_is_refused(data):
    """Started at the exact answer with far too few samples for the histogram (100 samples, 200 bins), the
    optimiser wanders off; over the whole region the result is worse than the start, so it is refused."""
    image, region, centroid, known, moved = moved_case(data, "STS_002", "MR_T1", "translation 5 mm")
    exact = transform_from_matrix(np.linalg.inv(affine_matrix(known)))
    result = register(image, moved, "rigid", fixed_mask=region, initial_transform=exact, search_mm=0, samples=100,
                      histogram_bins=200)
    assert centroid_error(known, result.matrix(), centroid)[0] > 1.0
    assert not result.converged and "is worse than the starting alignment's" in result.failure
    assert result.metrics["final"] > result.metrics["start"]
    with pytest.raises(RadiomicsLabError, match="Unknown on_failure 'ignore'"):
        register(image, moved, on_failure="ignore")
    with pytest.raises(RadiomicsLabError, match="search_mm must be a distance"):
        register(image, moved, search_mm=-5)
