"""Registration (RadiomicsLabLib.registration): a real channel moved by a known transform is recovered.

The real MR T1 of sarcoma patient STS_001 is resampled through a known rigid transform (rotation
4, -3, 5 degrees about the tumour centre, translation 6, -4, 3 mm): ``moved(x) = MR(K(x))``. Registering
``moved`` onto the MR must find ``T = K^-1``, so ``K(T(x)) = x``: checked at every tumour voxel
(largest displacement < 1 mm) and as a rotation angle (< 1 degree). The B-spline case warps a real
2D slice by a known smooth displacement field K(x) = x + u(x) and checks K(T(x)) = x the same way.
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
