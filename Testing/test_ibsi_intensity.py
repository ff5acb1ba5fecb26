"""IBSI chapter 1 intensity families: statistics, intensity histogram, intensity-volume histogram, local intensity.

Compliance: every reference row of these families for the IBSI digital phantom (used as it is) and for
configurations A-E of the IBSI CT phantom (preprocessed by :func:`preprocessing.prepare_roi` with the
settings of :mod:`configurations`), with the IBSI pass rule of :mod:`reference`. Undefined and edge
cases on small arrays, with answers from the IBSI definitions computed independently (brute force).
"""

import math

import numpy as np
import pytest
from conftest import failing_reference_rows

from RadiomicsLabLib.ibsi import discretisation, preprocessing, reference
from RadiomicsLabLib.ibsi.config import IbsiSettings
from RadiomicsLabLib.ibsi.configurations import CONFIGURATIONS
from RadiomicsLabLib.ibsi.features import histogram, ivh, local_intensity, statistics
from RadiomicsLabLib.ibsi.roi import Roi

MODULES = (statistics, histogram, ivh, local_intensity)
FAMILIES = ("Statistics", "Intensity histogram", "Intensity volume histogram", "Local intensity")


def compute_all(roi, settings) -> dict:
    values = {}
    for module in MODULES:
        values.update(module.compute(roi, settings))
    return values


def check_reference(dataset, values):
    rows, failing = failing_reference_rows(values, dataset, families=FAMILIES)
    assert rows, f"no reference rows for {dataset}"
    missing = [r.tag for r in rows if r.tag not in values]
    assert not missing, f"{dataset}: tags not computed: {missing}"
    assert not failing, f"{dataset}: {len(failing)} of {len(rows)} fail:\n" + "\n".join(map(str, failing))
    return len(rows)


def test_digital_phantom_reference_values():
    roi = reference.digital_phantom_roi()
    values = compute_all(roi, IbsiSettings(discretisation="none", ivh_discretisation="none"))
    assert check_reference("digital_phantom", values) == 49
    assert roi.notes == []


@pytest.fixture(scope="module")
def ct_phantom():
    return reference.ibsi1_images("ct_phantom")


@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_ct_phantom_configurations(ct_phantom, configuration):
    settings = CONFIGURATIONS[configuration]
    roi, _ = preprocessing.prepare_roi(*ct_phantom, settings)
    values = compute_all(discretisation.discretise(roi, settings), settings)
    assert check_reference(f"config_{configuration}", values) == 49
    assert roi.notes == []


def test_features_describe_every_tag():
    for module in MODULES:
        roi = reference.digital_phantom_roi()
        values = module.compute(roi, IbsiSettings(discretisation="none"))
        assert set(values) == set(module.FEATURES), module.__name__
        for tag, info in module.FEATURES.items():
            assert info["name"] and info["description"] and "unit" in info, tag
            assert module.FUNCTIONS[tag].__doc__, f"{tag} has no formula docstring"


# --- undefined and edge cases --------------------------------------------------------------------

def test_one_voxel_roi_gives_values_or_nan_never_an_exception():
    image = np.arange(27, dtype=np.float64).reshape(3, 3, 3) + 1
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    settings = IbsiSettings(discretisation="FBS", bin_width=25)   # one grey level, one histogram bin
    roi = discretisation.discretise(Roi.from_arrays(image, mask, (1, 1, 1)), settings)
    values = compute_all(roi, settings)
    # IBSI defines skewness and kurtosis as 0 when the variance is 0 (KE2A, IPH6, 88K1, C3I7).
    for tag in ("stat_var", "stat_skew", "stat_kurt", "stat_iqr", "stat_mad", "stat_rmad", "stat_medad",
                "ih_var", "ih_skew", "ih_kurt", "stat_range"):
        assert values[tag] == 0.0, tag
    assert values["stat_mean"] == values["stat_max"] == values["stat_p90"] == 14.0
    assert values["stat_cov"] == 0.0 and values["stat_energy"] == 196.0
    # No histogram gradient with one bin; no intensity fraction when G holds one intensity.
    for tag in ("ih_max_grad", "ih_max_grad_g", "ih_min_grad", "ih_min_grad_g", "ivh_v10", "ivh_v90", "ivh_diff_v10_v90"):
        assert math.isnan(values[tag]), tag
        assert any(tag in note for note in roi.notes), (tag, roi.notes)
    # nu = 1 at the only intensity, so I_x is the next intensity, where nu = 0; AUC = 0 (IBSI 9CMM).
    assert values["ivh_i10"] == values["ivh_i90"] == 15.0 and values["ivh_auc"] == 0.0
    # Local intensity uses the whole grid: the sphere of radius 6.2 mm covers the 3x3x3 image.
    assert values["loc_peak_loc"] == values["loc_peak_glob"] == pytest.approx(image.mean())


def test_zero_mean_and_zero_quartile_sum_are_nan_with_a_note():
    image = np.array([-2.0, -1.0, 1.0, 2.0]).reshape(1, 1, 4)
    roi = Roi.from_arrays(image, np.ones_like(image), (1, 1, 1))
    values = statistics.compute(roi)
    assert math.isnan(values["stat_cov"]) and math.isnan(values["stat_qcod"])
    assert values["stat_skew"] == 0.0 and values["stat_mean"] == 0.0
    assert len(roi.notes) == 2 and "stat_cov" in roi.notes[0] and "stat_qcod" in roi.notes[1]


def test_empty_roi_is_all_nan():
    image = np.ones((2, 2, 2))
    roi = Roi.from_arrays(image, np.zeros_like(image), (1, 1, 1))
    for module in MODULES:
        values = module.compute(roi, IbsiSettings())
        assert values and all(math.isnan(v) for v in values.values()), module.__name__
    assert len(roi.notes) == len(MODULES)


def test_histogram_mode_tie_takes_the_bin_closest_to_the_mean_then_the_lower():
    # Counts 2, 0, 2, 1 over levels 1..4: levels 1 and 3 tie, the mean 2.4 is closer to 3.
    roi = Roi.from_arrays(np.array([1, 1, 3, 3, 4.0]).reshape(1, 1, 5), np.ones((1, 1, 5)), (1, 1, 1))
    roi = discretisation.discretise(roi, IbsiSettings(discretisation="none"))
    assert histogram.compute(roi, IbsiSettings())["ih_mode"] == 3
    # Counts 1, 0, 1 over levels 1..3: mean 2 is equidistant, the lower (left) bin wins.
    roi = Roi.from_arrays(np.array([1, 3.0]).reshape(1, 1, 2), np.ones((1, 1, 2)), (1, 1, 1))
    roi = discretisation.discretise(roi, IbsiSettings(discretisation="none"))
    values = histogram.compute(roi, IbsiSettings())
    assert values["ih_mode"] == 1
    # P10 = 1.2 and P90 = 2.8: no discretised intensity lies between them, so the robust MAD is undefined.
    assert math.isnan(values["ih_rmad"]) and "ih_rmad" in roi.notes[0]


# --- IVH discretisations against a brute-force reading of IBSI section 3.5 ------------------------

def brute_force_ivh(x_dgl, grid):
    """V10, V90, I10, I90 straight from the definitions, looping over the (small) grid."""
    nu = [1 - sum(v < i for v in x_dgl) / len(x_dgl) for i in grid]
    gamma = [(i - grid[0]) / (grid[-1] - grid[0]) for i in grid]
    v = {x: max(n for n, g in zip(nu, gamma) if g >= x / 100) for x in (10, 90)}
    i = {x: min([g for n, g in zip(nu, grid) if n <= x / 100] or [grid[-1] + (grid[1] - grid[0])]) for x in (10, 90)}
    return {"ivh_v10": v[10], "ivh_v90": v[90], "ivh_i10": i[10], "ivh_i90": i[90]}


@pytest.mark.parametrize("case", ["none", "none_range", "FBS", "FBN"])
def test_ivh_discretisations(case):
    rng = np.random.default_rng(7)
    values = np.round(rng.normal(20, 6, 300)).clip(3, 38)
    image = values.reshape(3, 10, 10)
    roi = Roi.from_arrays(image, np.ones_like(image), (1, 1, 1))
    if case == "none":
        settings = IbsiSettings(ivh_discretisation="none")
        x_dgl, grid = values, np.arange(values.min(), values.max() + 1)
    elif case == "none_range":   # G is the re-segmentation range, here half-open: upper bound = max intensity
        settings = IbsiSettings(ivh_discretisation="none", resegment_range=(0, None))
        x_dgl, grid = values, np.arange(0, values.max() + 1)
    elif case == "FBS":          # bin centres X_min + (X_d - 0.5) w_b, X_min = lower re-segmentation bound
        settings = IbsiSettings(ivh_discretisation="FBS", ivh_bin_width=2.5, resegment_range=(0, 40))
        bins = np.floor(values / 2.5) + 1
        x_dgl, grid = (bins - 0.5) * 2.5, (np.arange(1, 18) - 0.5) * 2.5   # 40 / 2.5 + 1 = 17 bins hold [0, 40]
    else:                        # FBN: X_d,gl = X_d in 1..N_g, the re-segmentation range is not used
        settings = IbsiSettings(ivh_discretisation="FBN", ivh_bin_number=10, resegment_range=(0, 40))
        lo, hi = values.min(), values.max()
        x_dgl = np.minimum(np.floor(10 * (values - lo) / (hi - lo)) + 1, 10)
        grid = np.arange(1, 11.0)
    result = ivh.compute(roi, settings)
    expected = brute_force_ivh(list(x_dgl), list(grid))
    for tag, value in expected.items():
        assert result[tag] == pytest.approx(value, abs=1e-12), (case, tag, result[tag], value)
    assert result["ivh_diff_v10_v90"] == pytest.approx(expected["ivh_v10"] - expected["ivh_v90"])
    assert result["ivh_diff_i10_i90"] == pytest.approx(expected["ivh_i10"] - expected["ivh_i90"])


# --- local intensity against a brute-force sphere mean --------------------------------------------

def brute_force_peaks(image, mask, spacing):
    """Mean over every grid voxel with centre within 6.2035 mm of each ROI voxel, distances computed directly."""
    r = (3 / (4 * np.pi)) ** (1 / 3) * 10
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(image.shape, spacing)], indexing="ij"), -1)
    centres = grid[mask]
    flat_points, flat_values = grid.reshape(-1, 3), image.ravel()
    d2 = ((centres[:, None, :] - flat_points[None, :, :]) ** 2).sum(-1)
    inside = d2 <= r * r
    means = (inside * flat_values).sum(1) / inside.sum(1)
    values = image[mask]
    return means[values == values.max()].max(), means.max()


@pytest.mark.parametrize("spacing", [(2.0, 2.0, 2.0), (3.0, 1.0, 1.5), (1.0, 0.5, 0.5)])
def test_local_intensity_matches_brute_force(spacing):
    rng = np.random.default_rng(3)
    image = rng.integers(-50, 50, size=(9, 16, 15)).astype(np.float64)
    mask = np.zeros(image.shape, bool)
    mask[1:6, 2:14, 0:9] = rng.random((5, 12, 9)) < 0.5      # touches the grid border on one side
    image[mask & (image > 40)] = 49                           # several maximum-intensity voxels
    roi = Roi.from_arrays(image, mask, spacing)
    result = local_intensity.compute(roi)
    local, peak = brute_force_peaks(image, mask, spacing)
    assert result["loc_peak_loc"] == pytest.approx(local, abs=1e-9)
    assert result["loc_peak_glob"] == pytest.approx(peak, abs=1e-9)


def test_sphere_kernel_is_one_cubic_centimetre_at_fine_spacing():
    kernel = local_intensity.sphere_kernel((0.25, 0.25, 0.25))
    assert kernel.sum() * 0.25 ** 3 == pytest.approx(1000, rel=0.01)


def test_sample_counting_sort_equals_numpy_sort():
    """Integer samples are sorted by counting: the same order statistics as ``np.sort`` (zeros as +0.0)."""
    from RadiomicsLabLib.ibsi.features.common import Sample, _counting_sort

    rng = np.random.default_rng(7)
    for x in (rng.integers(-60, 120, 5000) * 1.0, np.array([4.0]), rng.integers(0, 3, 50) * 1.0 + 2.0 ** 40):
        assert np.array_equal(Sample(x).sorted, np.sort(x))
    for x in (np.array([0.5, 1.0]), np.array([1e-20, -3.0, 5.0]), np.array([np.nan, 1.0]),
              np.array([0.0, 1e9]), np.array([np.inf, 1.0])):
        assert _counting_sort(x) is None          # not integers, or too wide a range: np.sort
        assert np.array_equal(Sample(x).sorted, np.sort(x), equal_nan=True)
    x = np.array([-0.0, 2.0, 0.0, -1.0])
    assert np.array_equal(Sample(x).sorted, [-1.0, 0.0, 0.0, 2.0])
    assert Sample(x).percentile(50) == np.percentile(x, 50)
