"""IBSI chapter 2 convolutional filters against the IBSI 2 phase 1 consensus response maps.

Each of the 33 phase 1 configurations (RadiomicsLabLib.ibsi.filters.PHASE1_CONFIGURATIONS) is applied
to its digital phantom (../shared/data/ibsi2/digital_phantom/<name>/image.nii.gz) and must pass the IBSI
rule: every voxel within 1% of the reference map's range (max - min) of the reference value
(../shared/data/ibsi2/reference_response_maps/<id>-ValidCRM.nii.gz).
"""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib.data import data_dir
from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.ibsi.filters import (
    BOUNDARY_CONDITIONS,
    PHASE1_CONFIGURATIONS,
    PHASE2_FILTERS,
    apply_filter,
    response_map_passes,
    right_angle_rotations,
)


def _ibsi2():
    folder = data_dir() / "ibsi2"
    if not (folder / "reference_response_maps").is_dir():
        pytest.fail(f"IBSI 2 reference data not found in {folder}; set RADIOMICSLAB_DATA to the shared data folder.")
    return folder


_PHANTOMS: dict = {}


def _phantom(name):
    if name not in _PHANTOMS:
        image = sitk.ReadImage(str(_ibsi2() / "digital_phantom" / name / "image.nii.gz"))
        _PHANTOMS[name] = (sitk.GetArrayFromImage(image).astype(np.float64), image.GetSpacing()[::-1])
    return _PHANTOMS[name]


def _reference(config_id):
    path = _ibsi2() / "reference_response_maps" / f"{config_id}-ValidCRM.nii.gz"
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)


def test_phase1_table_covers_every_reference_map():
    ids = sorted(p.name.split("-")[0] for p in (_ibsi2() / "reference_response_maps").glob("*-ValidCRM.nii.gz"))
    assert len(ids) == 33
    assert sorted(PHASE1_CONFIGURATIONS) == ids
    for entry in PHASE1_CONFIGURATIONS.values():
        assert (_ibsi2() / "digital_phantom" / entry["phantom"] / "image.nii.gz").is_file()


@pytest.mark.parametrize("config_id", sorted(PHASE1_CONFIGURATIONS))
def test_phase1_response_map(config_id):
    """One IBSI 2 phase 1 configuration: every voxel within 1% of the reference range of the reference."""
    entry = PHASE1_CONFIGURATIONS[config_id]
    image, spacing = _phantom(entry["phantom"])
    computed = apply_filter(image, spacing, entry["config"])
    assert computed.shape == image.shape and computed.dtype == np.float64
    passed, difference, tolerance = response_map_passes(computed, _reference(config_id))
    assert passed, f"{config_id} on {entry['phantom']}: max|diff| {difference:.4g} > tolerance {tolerance:.4g}"


def test_response_map_passes_rule():
    reference = np.linspace(-50.0, 50.0, 27).reshape(3, 3, 3)
    assert response_map_passes(reference + 0.99, reference)[0]
    passed, difference, tolerance = response_map_passes(reference + 1.01, reference)
    assert not passed and difference == pytest.approx(1.01) and tolerance == pytest.approx(1.0)
    assert not response_map_passes(reference[:2], reference)[0]
    assert not response_map_passes(np.full_like(reference, np.nan), reference)[0]


def test_boundary_mapping_ibsi_mirror_is_scipy_reflect():
    # IBSI "mirror" (d c b a | a b c d) is scipy.ndimage "reflect"; scipy's "mirror" leaves the edge out.
    assert BOUNDARY_CONDITIONS["mirror"] == ("reflect", "symmetric")
    assert BOUNDARY_CONDITIONS["periodic"][0] == "wrap"
    assert BOUNDARY_CONDITIONS["nearest"][0] == "nearest"
    assert BOUNDARY_CONDITIONS["constant"][0] == "constant"
    row = np.zeros((1, 1, 5))
    row[0, 0, :] = [1.0, 2.0, 3.0, 4.0, 5.0]
    # 3-voxel mean at the first voxel: (1 + 1 + 2) / 3 with the edge voxel repeated.
    out = apply_filter(np.repeat(np.repeat(row, 3, axis=0), 3, axis=1), (1, 1, 1),
                       {"filter": "mean", "support": 3, "boundary": "mirror"})
    assert out[1, 1, 0] == pytest.approx(4.0 / 3.0)


def test_right_angle_rotations():
    assert len(right_angle_rotations(3)) == 24
    assert len(right_angle_rotations(2)) == 4
    matrices = set()
    for perm, signs in right_angle_rotations(3):
        matrix = np.zeros((3, 3), dtype=int)
        for i, (p, s) in enumerate(zip(perm, signs)):
            matrix[p, i] = s
        assert round(np.linalg.det(matrix)) == 1
        matrices.add(matrix.tobytes())
    assert len(matrices) == 24


def test_phase2_filters_run_on_an_anisotropic_image():
    """The phase 2 settings (N.A = 2D, N.B = 3D) are complete and run on a CT-like anisotropic grid."""
    assert sorted(PHASE2_FILTERS) == sorted(f"{n}.{v}" for n in range(1, 10) for v in "AB")
    assert PHASE2_FILTERS["1.A"] is None and PHASE2_FILTERS["1.B"] is None
    rng = np.random.default_rng(7)
    image = rng.normal(0.0, 100.0, size=(16, 40, 44))
    for filter_id, config in PHASE2_FILTERS.items():
        if config is None:
            continue
        assert config.get("dimensions") == ("2d" if filter_id.endswith("A") else "3d")
        out = apply_filter(image, (2.0, 0.977, 0.977), config)
        assert out.shape == image.shape and np.isfinite(out).all(), filter_id


def test_mean_filter_of_a_constant_image_is_the_constant():
    image = np.full((9, 9, 9), 7.0)
    for boundary in ("nearest", "periodic", "mirror"):
        out = apply_filter(image, (1, 1, 1), {"filter": "mean", "support": 5, "boundary": boundary})
        assert np.allclose(out, 7.0)


def test_gabor_orientation_pooling_uses_modulus_symmetry():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(4, 24, 24))
    base = {"filter": "gabor", "sigma_mm": 3.0, "lambda_mm": 2.0, "gamma": 1.0, "boundary": "mirror"}
    pooled = apply_filter(image, (1, 1, 1), {**base, "theta_step": math.pi / 2})
    single = [apply_filter(image, (1, 1, 1), {**base, "theta": t}) for t in (0.0, math.pi / 2, math.pi, 1.5 * math.pi)]
    assert np.allclose(pooled, np.mean(single, axis=0))
    assert np.allclose(single[0], single[2])


@pytest.mark.parametrize(
    "config, message",
    [
        ({"filter": "median", "support": 3}, "Unknown filter 'median'"),
        ({"filter": "mean", "support": 3, "boundary": "reflective"}, "Unknown filter boundary condition"),
        ({"filter": "mean", "support": 31}, "larger than the image"),
        ({"filter": "mean", "support": 4}, "odd whole number"),
        ({"filter": "mean"}, "needs the parameter(s) support"),
        ({"filter": "mean", "support": 3, "size": 3}, "Unknown parameter(s) size"),
        ({"filter": "log", "sigma_mm": 20.0}, "larger than the image"),
        ({"filter": "laws", "kernel": "L5E5"}, "must combine 3 1D kernels"),
        ({"filter": "laws", "kernel": "L5E5Q5"}, "Unknown Laws kernel 'Q5'"),
        ({"filter": "laws", "kernel": "L5E5E5", "energy": True, "distance": 20}, "larger than the image"),
        ({"filter": "laws", "kernel": "L5E5E5", "rotation_invariant": True, "pooling": "median"},
         "Unknown pooling method"),
        ({"filter": "wavelet", "wavelet": "db99x", "response": "LLH"}, "Unknown wavelet"),
        ({"filter": "wavelet", "wavelet": "db3", "response": "LLHH"}, "must give L or H"),
        ({"filter": "wavelet", "wavelet": "db3", "response": "LLH", "level": 4}, "larger than the image"),
        ({"filter": "gabor", "sigma_mm": 2, "lambda_mm": 2, "gamma": 1, "theta_step": 1.0}, "divide 2 pi"),
        ({"filter": "riesz_log", "sigma_mm": 1.0}, "needs a 'riesz_order'"),
        ({"filter": "simoncelli", "riesz_order": (1, 0)}, "one whole number >= 0 per filtered axis"),
        ({"filter": "mean", "support": 3, "dimensions": "4d"}, "Unknown filter dimensions"),
    ],
)
def test_bad_input_raises_project_error(config, message):
    image = np.zeros((12, 20, 20))
    with pytest.raises(RadiomicsLabError) as error:
        apply_filter(image, (1.0, 1.0, 1.0), config)
    assert message in str(error.value)
