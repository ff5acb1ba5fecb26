"""Multi-observer variability: agreement metrics, consensus, ICC / CCC / CV, perturbations, MRML and CLI.

References: analytic two-sphere cases; SimpleITK's LabelOverlapMeasures, HausdorffDistance,
LabelContour + SignedMaurerDistanceMap, LabelVoting and STAPLE filters; pingouin's
``intraclass_corr`` (to 1e-8) on features extracted from the real sarcoma cases; the worked
example of Shrout & Fleiss (1979).

The real data has one segmentation per lesion (../shared/data/sts, README), so the other
observers here are documented synthetic observers: perturbations of the real GTV mask made by
RadiomicsLabLib.perturbation with a fixed seed (erosion / dilation by a distance in mm, a rigid
shift, supervoxel contour randomisation), or a crop of the real mask (another grid).
"""

import itertools
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.observers import (Lesion, agreement, generalised_conformity, make_lesion, majority_vote, run_study,
                                       staple, volume_bland_altman)
from RadiomicsLabLib.perturbation import apply_perturbation, parse_perturbation, perturb_lesion, perturbation_plan
from RadiomicsLabLib.reproducibility import coefficient_of_variation, feature_reproducibility, icc, lins_ccc, parse_rule

from conftest import chart_values, read_csv, run_cli, start_then_cancel, table_values
from test_cli import assert_user_error

CASES = ("STS_001", "STS_002", "STS_003", "STS_004")
FAST_SETTINGS = {"featureClass": {"firstorder": [], "shape": [], "glcm": []}}
PET_SETTINGS = {"setting": {"binWidth": 0.5}}  # pyradiomics defaults, but bins of 0.5 SUV (25 would leave one grey level)


def sts(data, case, modality="CT"):
    folder = data / "sts" / case
    return folder / f"{modality}_image.nii.gz", folder / f"{modality}_mask.nii.gz"


def read(path):
    return sitk.ReadImage(str(path))


def array(image):
    return sitk.GetArrayFromImage(image)


def real_lesion(data, case, modality, plan, seed=0, name=None):
    """The real GTV mask as observer 'gtv' plus the perturbations ``plan`` (seed ``seed``) as synthetic observers."""
    image_path, mask_path = sts(data, case, modality)
    lesion = make_lesion(name or case, read(image_path), [("gtv", read(mask_path))], min_observers=1)
    return perturb_lesion(lesion, perturbation_plan(plan), seed)


# Agreement ------------------------------------------------------------------------------------
def ball_masks(spacing, radii, centres, size=(70, 60, 40)):
    """Digital balls: voxels whose centre lies within radius r (mm) of the centre (mm), on one anisotropic grid."""
    reference = sitk.Image(list(size), sitk.sitkUInt8)
    reference.SetSpacing(spacing)
    reference.SetOrigin((-size[0] * spacing[0] / 2, -size[1] * spacing[1] / 2, -size[2] * spacing[2] / 2))
    z, y, x = np.indices(size[::-1], dtype=float)
    origin = np.array(reference.GetOrigin())
    points = [x * spacing[0] + origin[0], y * spacing[1] + origin[1], z * spacing[2] + origin[2]]
    masks = {}
    for name, (r, c) in zip("ab", zip(radii, centres)):
        inside = sum((p - ci) ** 2 for p, ci in zip(points, c)) <= r * r
        mask = sitk.GetImageFromArray(inside.astype(np.uint8))
        mask.CopyInformation(reference)
        masks[name] = mask
    return Lesion("balls", sitk.Cast(reference, sitk.sitkInt16), masks)


def lens_volume(r1, r2, d):
    """Volume of the intersection of two balls with radii r1, r2 and centres d apart (d <= r1 + r2)."""
    return math.pi * (r1 + r2 - d) ** 2 * (d * d + 2 * d * r2 - 3 * r2 * r2 + 2 * d * r1 + 6 * r1 * r2 - 3 * r1 * r1) / (12 * d)


def test_two_concentric_spheres_analytic():
    spacing = (0.6, 0.8, 1.2)  # anisotropic
    lesion = ball_masks(spacing, (12.0, 9.0), ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    pair = agreement(lesion).pairs[0]
    v1, v2 = 4 / 3 * math.pi * 12 ** 3, 4 / 3 * math.pi * 9 ** 3
    # digitisation: voxel counts within 2 % of the ball volumes (radius 10-20 voxels)
    assert pair["volume_a_mm3"] == pytest.approx(v1, rel=0.02) and pair["volume_b_mm3"] == pytest.approx(v2, rel=0.02)
    assert pair["dice"] == pytest.approx(2 * v2 / (v1 + v2), abs=0.01)
    assert pair["jaccard"] == pytest.approx(v2 / v1, abs=0.01)
    assert pair["volume_difference_pct"] == pytest.approx(100 * (v1 - v2) / ((v1 + v2) / 2), abs=2.0)
    # Every surface point of one sphere is |r1 - r2| = 3 mm from the other: HD = HD95 = MSD = 3 mm.
    voxel = max(spacing)
    for metric in ("hausdorff_mm", "hd95_mm", "msd_mm"):
        assert abs(pair[metric] - 3.0) <= voxel, (metric, pair[metric])
    assert abs(pair["msd_mm"] - 3.0) <= voxel / 2


def test_two_offset_spheres_analytic():
    spacing, r, offset = (0.7, 0.5, 1.1), 10.0, np.array([2.0, 2.0, 2.0])  # d = 3.46 mm, diagonal
    d = float(np.linalg.norm(offset))
    lesion = ball_masks(spacing, (r, r), (tuple(-offset / 2), tuple(offset / 2)))
    pair = agreement(lesion).pairs[0]
    assert pair["dice"] == pytest.approx(lens_volume(r, r, d) / (4 / 3 * math.pi * r ** 3), abs=0.01)
    # Distance of a point of sphere 1 (polar cosine t to the offset, uniform in [-1, 1] over the surface) to sphere 2.
    t = np.linspace(-1, 1, 2_000_001)
    distance = np.abs(np.sqrt(r * r + d * d - 2 * r * d * t) - r)
    assert abs(pair["hausdorff_mm"] - d) <= max(spacing)  # |r1 - r2| + d
    assert abs(pair["hd95_mm"] - np.percentile(distance, 95)) <= max(spacing)
    assert abs(pair["msd_mm"] - distance.mean()) <= max(spacing) / 2


@pytest.fixture(scope="module")
def sts3(data):
    """STS_003 CT: the real mask and four synthetic observers (erosion 1 mm, dilation 2 mm, 2 mm shift, supervoxels)."""
    return real_lesion(data, "STS_003", "CT", ("grow:mm=-1", "grow:mm=2", "shift:mm=2", "supervoxels"), seed=7)


def contour_distances(x, y):
    """SimpleITK's way: distances from the contour voxels of x to the contour of y (LabelContour + SignedMaurerDistanceMap)."""
    contour_y = sitk.LabelContour(y, fullyConnected=False)
    distance = sitk.Abs(sitk.SignedMaurerDistanceMap(contour_y, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))
    return array(distance)[array(sitk.LabelContour(x, fullyConnected=False)).astype(bool)]


def test_agreement_matches_simpleitk_filters_on_real_masks(sts3):
    result = agreement(sts3)
    assert len(result.pairs) == 10 and {p["comparison"] for p in result.pairs} == {"inter-observer"}
    worst = {"hausdorff": 0.0, "hd95": 0.0, "msd": 0.0}
    # SimpleITK on the union's bounding box + 2 voxels (the same values as on the whole grid, faster).
    union = sitk.GetArrayFromImage(sum(sitk.Cast(m, sitk.sitkUInt16) for m in sts3.masks.values())) > 0
    low = np.argwhere(union).min(axis=0)[::-1] - 2
    high = np.argwhere(union).max(axis=0)[::-1] + 3
    crop = {n: sitk.RegionOfInterest(m, [int(v) for v in high - low], [int(v) for v in low]) for n, m in sts3.masks.items()}
    for pair in result.pairs:
        a, b = crop[pair["observer_a"]], crop[pair["observer_b"]]
        overlap = sitk.LabelOverlapMeasuresImageFilter()
        overlap.Execute(a, b)
        assert pair["dice"] == pytest.approx(overlap.GetDiceCoefficient(), abs=1e-12)
        assert pair["jaccard"] == pytest.approx(overlap.GetJaccardCoefficient(), abs=1e-12)
        assert pair["volume_difference_pct"] == pytest.approx(100 * overlap.GetVolumeSimilarity(), abs=1e-9)
        hausdorff = sitk.HausdorffDistanceImageFilter()
        hausdorff.Execute(a, b)
        if "p4_supervoxels" in (pair["observer_a"], pair["observer_b"]):
            # ITK measures between the voxel sets (a voxel inside the other mask is 0 away), ours between the surfaces:
            # they differ where a surface runs inside the other mask (the notches of supervoxel contours), ours larger.
            assert pair["hausdorff_mm"] >= hausdorff.GetHausdorffDistance() - 1e-9
        else:
            worst["hausdorff"] = max(worst["hausdorff"], abs(pair["hausdorff_mm"] - hausdorff.GetHausdorffDistance()))
        d_ab, d_ba = contour_distances(a, b), contour_distances(b, a)
        worst["hd95"] = max(worst["hd95"], abs(pair["hd95_mm"] - max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))))
        worst["msd"] = max(worst["msd"], abs(pair["msd_mm"] - (d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size)))
    assert worst["hausdorff"] <= 1e-9, worst  # eroded, dilated, shifted: the same Hausdorff distance
    assert worst["hd95"] <= 1e-4 and worst["msd"] <= 1e-4, worst  # same surfaces, ITK's float32 distances
    dice = [p["dice"] for p in result.pairs]
    assert result.summary["dice"]["mean"] == pytest.approx(np.mean(dice))
    assert result.summary["dice"]["sd"] == pytest.approx(np.std(dice, ddof=1))
    assert (result.summary["dice"]["min"], result.summary["dice"]["max"]) == (min(dice), max(dice))
    arrays = [array(m).astype(bool) for m in sts3.masks.values()]
    inter = sum(np.count_nonzero(a & b) for a, b in itertools.combinations(arrays, 2))
    union = sum(np.count_nonzero(a | b) for a, b in itertools.combinations(arrays, 2))
    assert result.generalised_conformity == pytest.approx(inter / union, abs=1e-15)
    assert generalised_conformity(arrays[:2]) == pytest.approx(result.pairs[0]["jaccard"], abs=1e-15)


def test_intra_observer_pairs_and_bland_altman(data):
    lesion = real_lesion(data, "STS_002", "CT", ("grow:mm=1", "shift:mm=2"))
    lesion.readers = {"gtv": "alice", "p1_grow": "alice", "p2_shift": "bob"}  # alice read twice
    pairs = agreement(lesion).pairs
    assert [p["comparison"] for p in pairs] == ["intra-observer", "inter-observer", "inter-observer"]
    ba = volume_bland_altman(pairs)
    differences = [p["volume_a_mm3"] - p["volume_b_mm3"] for p in pairs]
    assert ba["bias_mm3"] == pytest.approx(np.mean(differences))
    assert ba["upper_mm3"] - ba["bias_mm3"] == pytest.approx(1.96 * np.std(differences, ddof=1))


def test_staple_and_majority_match_simpleitk(sts3):
    masks = sts3.masks
    ours = staple(masks)
    stapler = sitk.STAPLEImageFilter()
    stapler.SetForegroundValue(1.0)
    reference = stapler.Execute(list(masks.values()))
    assert np.array_equal(array(ours.probability), array(reference))
    assert list(ours.sensitivity.values()) == list(stapler.GetSensitivity())
    assert list(ours.specificity.values()) == list(stapler.GetSpecificity())
    assert np.array_equal(array(ours.consensus), (array(reference) >= 0.5).astype(np.uint8))
    # The dilated observer misses nothing; the eroded one adds nothing.
    assert ours.sensitivity["p2_grow"] > 0.999 and ours.specificity["p1_grow"] > 0.9999
    assert ours.sensitivity["p1_grow"] < 0.95 and ours.specificity["p2_grow"] < 0.9995
    voting = sitk.LabelVoting(list(masks.values()), 0)  # undecided (a tie) -> background
    assert np.array_equal(array(majority_vote(masks)), array(voting))
    four = dict(list(masks.items())[:4])  # an even count: ties are background
    assert np.array_equal(array(majority_vote(four)), array(sitk.LabelVoting(list(four.values()), 0)))
    same = staple({"a": masks["gtv"], "b": masks["gtv"], "c": masks["gtv"]})
    assert np.array_equal(array(same.consensus), array(masks["gtv"]))
    assert set(same.sensitivity.values()) == {1.0} and set(same.specificity.values()) == {1.0}


def test_compiled_distance_transform_matches_scipy(sts3, monkeypatch):
    """The compiled EDT used for big boxes gives scipy's distances, and the same agreement rows."""
    from scipy import ndimage

    from RadiomicsLabLib import observers
    from RadiomicsLabLib.observers import distance_to, surface

    feature = surface(array(sts3.masks["gtv"]).astype(bool))
    spacing = sts3.image.GetSpacing()[::-1]
    expected = ndimage.distance_transform_edt(~feature, sampling=spacing)
    scipy_rows = agreement(sts3).pairs
    monkeypatch.setattr(observers, "COMPILED_EDT_VOXELS", 0)
    assert np.allclose(distance_to(feature, spacing), expected, rtol=1e-13, atol=1e-12)
    middle = feature[np.argmax(feature.sum(axis=(1, 2)))]  # 2D: the slice with the most surface voxels
    assert np.allclose(distance_to(middle, spacing[1:]), ndimage.distance_transform_edt(~middle, sampling=spacing[1:]),
                       rtol=1e-13, atol=1e-12)
    for ours, reference in zip(agreement(sts3).pairs, scipy_rows):
        for metric in ("hausdorff_mm", "hd95_mm", "msd_mm"):
            assert ours[metric] == pytest.approx(reference[metric], rel=1e-12), metric


# Reproducibility ----------------------------------------------------------------------------------
def test_icc_shrout_fleiss_worked_example():
    """Shrout & Fleiss (1979) table 2: 6 targets x 4 judges; ICC(1,1) .17, ICC(2,1) .29, ICC(3,1) .71;
    95 % CIs as R psych::ICC prints them: [-0.13, 0.72], [0.019, 0.76], [0.34, 0.95]."""
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
    values = {k: float(v) for k, v in icc(ratings).items()}
    assert [round(values[k], 2) for k in ("icc1", "icc2", "icc3")] == [0.17, 0.29, 0.71]
    assert [round(values[k], 2) for k in ("icc1_ci_low", "icc1_ci_high", "icc3_ci_low", "icc3_ci_high")] == [-0.13, 0.72, 0.34, 0.95]
    assert (round(values["icc2_ci_low"], 3), round(values["icc2_ci_high"], 2)) == (0.019, 0.76)


@pytest.fixture(scope="module")
def pet_cohort(data):
    """The four real STS PET lesions, each with the real mask and 3 synthetic observers (dilation 5 mm, 3 mm shift, supervoxels)."""
    return [real_lesion(data, case, "PET", ("grow:mm=5", "shift:mm=3", "supervoxels"), seed=11) for case in CASES]


@pytest.fixture(scope="module")
def pet_study(pet_cohort):
    return run_study(pet_cohort, PET_SETTINGS)


def test_icc_matches_pingouin_on_real_features(pet_study):
    import pandas as pd
    import pingouin

    records = [(lesion, v.segment, v.feature, v.value) for lesion, v in pet_study.features]
    frame = pd.DataFrame(records, columns=["lesion", "observer", "feature", "value"])
    rows = {r["feature"]: r for r in pet_study.reproducibility.rows}
    assert len(rows) == 107 and {r["n_lesions"] for r in rows.values()} == {4} and {r["n_observers"] for r in rows.values()} == {4}
    names = {"ICC(1,1)": "icc1", "ICC(A,1)": "icc2", "ICC(C,1)": "icc3"}
    compared, worst = 0, 0.0
    rounding = pingouin.options.get("round.column.CI95")
    pingouin.options["round.column.CI95"] = None  # pingouin rounds CIs to 2 decimals by default
    try:
        for feature, group in frame.groupby("feature", sort=False):
            reference = pingouin.intraclass_corr(group, targets="lesion", raters="observer", ratings="value").set_index("Type")
            for kind, ours in names.items():
                expected = [reference.at[kind, "ICC"], *reference.at[kind, "CI95"]]
                got = [rows[feature][ours], rows[feature][f"{ours}_ci_low"], rows[feature][f"{ours}_ci_high"]]
                for e, g in zip(expected, got):
                    if np.isfinite(e):
                        worst = max(worst, abs(e - g))
                        compared += 1
                    else:
                        assert not np.isfinite(g), (feature, kind, e, g)
    finally:
        pingouin.options["round.column.CI95"] = rounding
    assert compared >= 0.95 * 107 * 9
    assert worst <= 1e-8, worst
    # The robust list applies the default rule: lower 95 % CI bound of ICC(2,1) >= 0.75.
    robust = pet_study.reproducibility.robust
    assert robust == [f for f, r in rows.items() if r["icc2_ci_low"] >= 0.75] and 0 < len(robust) < 107
    assert rows["original_shape_VoxelVolume"]["icc"] == rows["original_shape_VoxelVolume"]["icc2"]


def test_ccc_cv_and_rules():
    x = np.array([3.0, 5.0, 7.5, 9.0, 12.0, 15.5])
    assert lins_ccc(x, x)[0] == pytest.approx(1.0)
    s2 = x.var()  # Lin's 1/n variance
    assert lins_ccc(x, x + 2.0)[0] == pytest.approx(2 * s2 / (2 * s2 + 4.0), abs=1e-15)
    a = 1.3
    assert lins_ccc(x, a * x)[0] == pytest.approx(2 * a * s2 / (s2 + a * a * s2 + (x.mean() - a * x.mean()) ** 2), abs=1e-15)
    rho, low, high = lins_ccc(x, x + np.array([0.3, -0.2, 0.5, -0.4, 0.1, 0.2]))
    assert -1 < low < rho < high < 1
    assert np.arctanh(rho) - np.arctanh(low) == pytest.approx(np.arctanh(high) - np.arctanh(rho))  # symmetric in z
    ratings = np.array([[10.0, 12.0], [20.0, 20.0], [5.0, 6.0]])
    per_lesion = ratings.std(axis=1, ddof=1) / ratings.mean(axis=1)
    assert coefficient_of_variation(ratings) == pytest.approx(np.sqrt(np.mean(per_lesion ** 2)))
    rule = parse_rule("icc3 > 0.9")
    assert rule({"icc3": 0.95}) and not rule({"icc3": 0.9}) and not rule({"icc3": math.nan})
    with pytest.raises(RadiomicsLabError, match="not of the form"):
        parse_rule("icc9 >= 1")
    # Two observers of three lesions: CCC given, and it is ICC(3,1)'s cousin: both near 1 here.
    records = [(f"L{i}", o, "f", v) for i, row in enumerate(ratings) for o, v in zip("ab", row)]
    row = feature_reproducibility(records).rows[0]
    assert row["ccc"] == pytest.approx(lins_ccc(ratings[:, 0], ratings[:, 1])[0]) and row["icc3"] > 0.9


def test_one_lesion_gives_cv_and_a_note():
    records = [("L1", o, "f", v) for o, v in zip("abc", (1.0, 1.1, 0.9))]
    result = feature_reproducibility(records)
    assert math.isnan(result.rows[0]["icc"]) and result.robust == []
    assert result.rows[0]["cv"] == pytest.approx(0.1)
    assert "ICC needs at least 2 lesions" in result.notes[0]


# Perturbations -----------------------------------------------------------------------------------
def test_perturbations_reproducible_and_documented(data):
    plan = ("grow:fraction=-0.1", "grow:fraction=0.15", "supervoxels", "deform:mm=2", "shift:mm=2", "noise:scale=1")
    one = real_lesion(data, "STS_002", "CT", plan, seed=3)
    two = real_lesion(data, "STS_002", "CT", plan, seed=3)
    other = real_lesion(data, "STS_002", "CT", plan, seed=4)
    for name in one.masks:
        assert np.array_equal(array(one.masks[name]), array(two.masks[name])), name
    assert np.array_equal(array(one.images["p6_noise"]), array(two.images["p6_noise"]))
    for name in ("p3_supervoxels", "p4_deform", "p5_shift"):
        assert not np.array_equal(array(one.masks[name]), array(other.masks[name])), name
    records = {r["observer"]: r for r in one.perturbations}
    assert [r["perturbation"] for r in one.perturbations] == [str(p) for p in perturbation_plan(plan)]
    for record in records.values():
        assert {"kind", "parameters", "seed", "master_seed", "voxels", "dice_to_source", "details"} <= set(record)
        json.dumps(record)  # every record can be written out
    # Volume fractions: the distance whose result is closest to the requested fraction.
    assert records["p1_grow"]["details"]["volume_fraction"] == pytest.approx(-0.1, abs=0.05)
    assert records["p2_grow"]["details"]["volume_fraction"] == pytest.approx(0.15, abs=0.05)
    assert 0.8 < records["p3_supervoxels"]["dice_to_source"] < 1.0
    assert records["p4_deform"]["details"]["rms_displacement_mm"] == pytest.approx(2.0)
    assert np.linalg.norm(records["p5_shift"]["details"]["shift_mm_zyx"]) == pytest.approx(2.0)
    # Noise changes the image by scale x the estimated noise SD, not the mask.
    assert np.array_equal(array(one.masks["p6_noise"]), array(one.masks["gtv"]))
    difference = array(one.images["p6_noise"]).astype(float) - array(one.image)
    assert difference.std() == pytest.approx(records["p6_noise"]["details"]["estimated_noise_sd"], rel=0.01)


def test_grow_by_mm_is_an_exact_euclidean_ball():
    """A one-voxel mask dilated by 3 mm on a 0.8 x 1.0 x 2.5 mm grid: every voxel centre within 3 mm, counted directly."""
    image = sitk.Image([31, 31, 15], sitk.sitkInt16)
    image.SetSpacing((0.8, 1.0, 2.5))
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    mask[15, 15, 7] = 1
    _, grown, details = apply_perturbation(parse_perturbation("grow:mm=3"), image, mask, seed=0)
    k, j, i = np.indices(array(grown).shape)
    expected = ((i - 15) * 0.8) ** 2 + ((j - 15) * 1.0) ** 2 + ((k - 7) * 2.5) ** 2 <= 9.0
    assert np.array_equal(array(grown).astype(bool), expected) and details["distance_mm"] == 3.0
    _, shrunk, _ = apply_perturbation(parse_perturbation("grow:mm=-3"), image, grown, seed=0)
    points = np.stack([i * 0.8, j * 1.0, k * 2.5], axis=-1)
    inside, outside = points[expected], points[~expected]
    nearest_outside = np.sqrt(((inside[:, None, :] - outside[None, :, :]) ** 2).sum(axis=-1)).min(axis=1)
    kept = np.zeros_like(expected)
    kept[expected] = nearest_outside > 3.0  # erosion: voxels farther than 3 mm from every background voxel
    assert np.array_equal(array(shrunk).astype(bool), kept) and kept[7, 15, 15]


# Bad input -----------------------------------------------------------------------------------------
def test_bad_input_core(data):
    image_path, mask_path = sts(data, "STS_002", "PET")
    image, mask = read(image_path), read(mask_path)
    with pytest.raises(RadiomicsLabError, match=r"at least 2 observers of lesion 'L'; got 1 \(alice\)"):
        make_lesion("L", image, [("alice", mask)])
    empty = sitk.Image(mask.GetSize(), mask.GetPixelID())
    empty.CopyInformation(mask)
    with pytest.raises(RadiomicsLabError, match="mask of observer 'bob' of lesion 'L' is empty"):
        make_lesion("L", image, [("alice", mask), ("bob", empty)])
    with pytest.raises(RadiomicsLabError, match="alice is used twice"):
        make_lesion("L", image, [("alice", mask), ("alice", mask)])
    two_labels = sitk.Cast(mask, sitk.sitkUInt8) + sitk.Cast(mask, sitk.sitkUInt8)
    two_labels[0, 0, 0] = 1
    with pytest.raises(RadiomicsLabError, match="has labels 1, 2; choose"):
        make_lesion("L", image, [("alice", mask), ("bob", two_labels)])
    with pytest.raises(RadiomicsLabError, match=r"observer 'alice' of lesion 'L' is empty \(no voxels with label 2\)"):
        make_lesion("L", image, [("alice", mask), ("bob", two_labels)], label=2)
    # Another grid (a crop of the real mask): resampled with nearest neighbour and said so, or refused when strict.
    cropped = sitk.RegionOfInterest(mask, [20, 18, 30], [5, 5, 10])
    lesion = make_lesion("L", image, [("alice", mask), ("crop", cropped)])
    assert "resampled onto the image grid with nearest-neighbour interpolation" in lesion.notes[0] and "crop" in lesion.notes[0]
    assert np.array_equal(array(lesion.masks["crop"]), array(mask))  # the crop held the whole lesion
    with pytest.raises(RadiomicsLabError, match="another grid than the image: size"):
        make_lesion("L", image, [("alice", mask), ("crop", cropped)], strict=True)
    # Reproducibility: a lesion with one observer, and lesions read by different observers.
    with pytest.raises(RadiomicsLabError, match="Lesion 'L2' has 1 observer"):
        feature_reproducibility([("L1", "a", "f", 1.0), ("L1", "b", "f", 2.0), ("L2", "a", "f", 1.0)])
    with pytest.raises(RadiomicsLabError, match="Lesion 'L2' has no observer 'b'"):
        feature_reproducibility([("L1", "a", "f", 1.0), ("L1", "b", "f", 2.0), ("L2", "a", "f", 1.0), ("L2", "c", "f", 1.0)])
    with pytest.raises(RadiomicsLabError, match="Unknown perturbation 'blur'"):
        parse_perturbation("blur:mm=2")
    with pytest.raises(RadiomicsLabError, match="exactly one of mm"):
        parse_perturbation("grow")


# MRML --------------------------------------------------------------------------------------------
def test_mrml_workflow_on_real_sarcoma_cases(data, scene, pet_cohort, tmp_path):
    """ObserverLogic on a headless scene: 4 real STS PET lesions, each with the real mask and the same 3 synthetic
    observers as segments of one segmentation (segments named per observer); STS_001's observers as separate nodes."""
    from RadiomicsLabLib.mrml.convert import label_map_to_segmentation_node, sitk_to_volume_node
    from RadiomicsLabLib.mrml.observers import MAJORITY_SEGMENT, STAPLE_SEGMENT, ObserverLogic

    logic = ObserverLogic(scene)
    lesions = []
    for lesion in pet_cohort:
        volume = sitk_to_volume_node(lesion.image, lesion.name, scene)
        if lesion.name == "STS_001":
            nodes = [label_map_to_segmentation_node(m, name, scene, volume) for name, m in lesion.masks.items()]
            lesions.append((lesion.name, volume, nodes))
        else:
            segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{lesion.name} observers")
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
            for name, mask in lesion.masks.items():
                one = label_map_to_segmentation_node(mask, name, scene, volume)
                source = one.GetSegmentation()
                source.GetNthSegment(0).SetName(name)
                segmentation.GetSegmentation().CopySegmentFromSegmentation(source, source.GetNthSegmentID(0))
                scene.RemoveNode(one)
            lesions.append((lesion.name, volume, segmentation))
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(RadiomicsLabError, match="Robust-feature rule"):
        logic.run(lesions, settings=FAST_SETTINGS, rule="icc >= high")
    assert scene.GetNumberOfNodes() == nodes_before  # nothing added on an error

    results = logic.run(lesions, settings=FAST_SETTINGS)
    core = run_study(pet_cohort, FAST_SETTINGS)
    agreement_rows = logic.table_rows(results.agreement)
    assert len(agreement_rows) == 4 * 6
    for ours, expected in zip(agreement_rows, core.pairs):
        key = ("lesion", "observer_a", "observer_b")
        assert [ours[k] for k in key] == [expected[k] for k in key]
        for metric in ("dice", "jaccard", "hausdorff_mm", "hd95_mm", "msd_mm", "volume_difference_mm3"):
            assert ours[metric] == pytest.approx(expected[metric], abs=1e-12), metric
    icc_rows = logic.table_rows(results.icc)
    assert [r["feature"] for r in icc_rows] == [r["feature"] for r in core.reproducibility.rows]
    for ours, expected in zip(icc_rows, core.reproducibility.rows):
        for column in ("icc1", "icc2_ci_low", "icc3_ci_high", "cv"):
            assert ours[column] == pytest.approx(expected[column], abs=1e-12, nan_ok=True)
    assert json.loads(results.icc.GetAttribute("RadiomicsLab.RobustFeatures")) == core.reproducibility.robust
    matrix = logic.table_rows(results.matrix)
    assert [r["observer"] for r in matrix] == ["gtv", "p1_grow", "p2_shift", "p3_supervoxels"] and matrix[0]["gtv"] == 1.0
    staple_rows = logic.table_rows(results.staple)
    assert staple_rows[1]["sensitivity"] == pytest.approx(core.lesions[0].staple.sensitivity["p1_grow"])
    # What a GUI shows first: the ICC (four lesions), but for one lesion the agreement (its ICC table has no ICC).
    assert (results.main_table, results.main_chart) == (results.icc, results.icc_chart)
    one = logic.analyse(lesions[0][1], lesions[0][2], settings=FAST_SETTINGS, lesion="one")
    assert one.icc is not None and (one.main_table, one.main_chart) == (one.agreement, one.bland_altman_chart)
    # Plots: each series reads numeric (vtkDoubleArray) columns of a table in the scene.
    for chart in (results.icc_chart, results.bland_altman_chart):
        assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() >= 3
        for i in range(chart.GetNumberOfPlotSeriesNodes()):
            series = chart.GetNthPlotSeriesNode(i)
            table = series.GetTableNode().GetTable()
            for column in (series.GetXColumnName(), series.GetYColumnName()):
                assert table.GetColumnByName(column).IsA("vtkDoubleArray"), column
    # Consensus segments equal the core's STAPLE and majority-vote masks.
    for node, expected in zip(results.consensus, core.lesions):
        assert node.GetSegmentation().GetNumberOfSegments() == 2
        assert np.array_equal(array(logic.consensus_mask(node, STAPLE_SEGMENT)), array(expected.staple.consensus))
        assert np.array_equal(array(logic.consensus_mask(node, MAJORITY_SEGMENT)), array(expected.majority))
    study = tmp_path / "observers.mrb"
    logic.save_scene(study)
    logic.load_scene(study)
    names = {scene.GetNthNode(i).GetName() for i in range(scene.GetNumberOfNodes())}
    assert {"Observers agreement", "Observers ICC", "Observers ICC per feature", "STS_004 consensus"} <= names



def test_background_observers_equal_the_in_thread_call_and_cancel_adds_nothing(data, scene):
    """ObserverLogic.run_job / analyse_job in a real spawned worker (RadiomicsLabLib.background.BackgroundRun): two real
    STS PET lesions, each the real mask plus two perturbations made in the worker (seed 11). Every landed table, chart
    and consensus equals the in-thread call's exactly; a cancel right after the start adds no node and the worker is
    gone within 2 s."""

    from RadiomicsLabLib.background import BackgroundRun
    from RadiomicsLabLib.mrml.convert import label_map_to_segmentation_node, sitk_to_volume_node
    from RadiomicsLabLib.mrml.observers import MAJORITY_SEGMENT, STAPLE_SEGMENT, ObserverLogic

    logic = ObserverLogic(scene)
    lesions = []
    for case in ("STS_001", "STS_002"):
        image_path, mask_path = sts(data, case, "PET")
        volume = sitk_to_volume_node(read(image_path), case, scene)
        lesions.append((case, volume, [label_map_to_segmentation_node(read(mask_path), "gtv", scene, volume)]))
    options = dict(settings=PET_SETTINGS, perturbations=["grow:mm=5", "shift:mm=3"], seed=11)
    in_thread = logic.run(lesions, **options)

    def values(results):
        tables = [table_values(n) for n in (results.agreement, results.matrix, results.summary, results.staple,
                                            results.features, results.icc, results.perturbations)]
        charts = [chart_values(c) for c in (results.icc_chart, results.bland_altman_chart)]
        consensus = [[array(logic.consensus_mask(n, which)).tobytes() for which in (STAPLE_SEGMENT, MAJORITY_SEGMENT)]
                     + [n.GetAttribute("RadiomicsLab.StapleSensitivity"), n.GetAttribute("RadiomicsLab.StapleSpecificity")]
                     for n in results.consensus]
        return tables, charts, consensus, results.icc.GetAttribute("RadiomicsLab.RobustFeatures")

    n_nodes = scene.GetNumberOfNodes()
    run = BackgroundRun(logic.run_job(lesions, **options))
    assert scene.GetNumberOfNodes() == n_nodes, "nothing may be added before the job lands"
    landed = run.wait(timeout=300)
    assert run.state == "done" and scene.GetNumberOfNodes() > n_nodes
    assert values(landed) == values(in_thread)
    assert len(logic.table_rows(landed.agreement)) == 2 * 3 and len(landed.consensus) == 2
    # the study sent back (and kept by the results) holds the masks the scene reads, not the images or STAPLE's
    # probability map; the job's own lesions keep their images
    for result, (_, volume, _) in zip(landed.study.lesions, lesions):
        assert result.lesion.image is None and result.lesion.images == {} and result.staple.probability is None
        assert len(result.lesion.masks) == 3 and result.staple.consensus.GetSize() == volume.GetImageData().GetDimensions()
    assert all(r.lesion.image is None for r in in_thread.study.lesions)

    n_nodes = scene.GetNumberOfNodes()
    start_then_cancel(logic.analyse_job(lesions[0][1], lesions[0][2], lesion="one", **options))
    assert scene.GetNumberOfNodes() == n_nodes


# CLI ---------------------------------------------------------------------------------------------
def write(image, path):
    sitk.WriteImage(image, str(path))
    return path


def test_cli_one_lesion_three_observers(data, tmp_path):
    """STS_002 CT: the real mask (alice), alice's second reading = the real mask dilated by 1 mm, bob = the real mask
    shifted by 2 mm (seed 5); bob's mask is written as a crop (another grid), so it is resampled and the run says so."""
    lesion = real_lesion(data, "STS_002", "CT", ("grow:mm=1", "shift:mm=2"), seed=5)
    image_path = sts(data, "STS_002", "CT")[0]
    first = write(lesion.masks["gtv"], tmp_path / "alice_1.nii.gz")
    second = write(lesion.masks["p1_grow"], tmp_path / "alice_2.seg.nrrd")
    bob = write(sitk.RegionOfInterest(lesion.masks["p2_shift"], [120, 110, 30], [20, 15, 10]), tmp_path / "bob.nrrd")
    params = tmp_path / "params.yaml"
    params.write_text("featureClass:\n  firstorder: []\n  shape: []\n")
    out = tmp_path / "out"
    done = run_cli("observers", image_path, first, second, bob, "--readers", "alice,alice,bob", "--params", params, "-o", out)
    assert done.returncode == 0, done.stderr
    assert "mask of observer 'bob'" in done.stderr and "nearest-neighbour" in done.stderr
    assert "ICC needs at least 2 lesions" in done.stderr
    rows = read_csv(out / "agreement.csv")
    assert [(r["observer_a"], r["observer_b"], r["comparison"]) for r in rows] == [
        ("alice_1", "alice_2", "intra-observer"), ("alice_1", "bob", "inter-observer"), ("alice_2", "bob", "inter-observer")]
    expected = agreement(lesion).pairs
    for row, pair in zip(rows, expected):
        for metric in ("dice", "jaccard", "hausdorff_mm", "hd95_mm", "msd_mm"):
            assert float(row[metric]) == pytest.approx(pair[metric], abs=1e-12), metric
    icc_rows = read_csv(out / "icc.csv")
    assert {"feature", "icc", "ci_low", "ci_high", "cv"} <= set(icc_rows[0]) and icc_rows[0]["icc"] == ""
    staple_mask = read(out / "consensus_staple.nrrd")
    assert staple_mask.GetSize() == read(image_path).GetSize()
    assert np.array_equal(array(staple_mask), array(staple(lesion.masks).consensus))
    assert np.array_equal(array(read(out / "consensus_majority.nrrd")), array(majority_vote(lesion.masks)))
    for png in ("dice_matrix.png", "bland_altman_volumes.png", "icc.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_cli_cohort_with_perturbations(data, tmp_path, pet_study):
    """The four real STS PET lesions, one real mask each, observers made by --perturbation (the fixture's plan and seed)."""
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("lesion,observer,image,mask\n" + "".join(
        f"{case},gtv,{sts(data, case, 'PET')[0]},{sts(data, case, 'PET')[1]}\n" for case in CASES))
    params = tmp_path / "pet.yaml"
    params.write_text("setting:\n  binWidth: 0.5\n")
    out = tmp_path / "out"
    done = run_cli("observers", "--cohort", cohort, "--perturbation", "grow:mm=5", "--perturbation", "shift:mm=3",
                   "--perturbation", "supervoxels", "--seed", "11", "--params", params, "-o", out)
    assert done.returncode == 0, done.stderr
    icc_rows = {r["feature"]: r for r in read_csv(out / "icc.csv")}
    expected = {r["feature"]: r for r in pet_study.reproducibility.rows}
    assert set(icc_rows) == set(expected)
    for feature, row in icc_rows.items():
        for column in ("icc", "ci_low", "ci_high", "icc1", "icc3", "cv"):
            assert float(row[column] or "nan") == pytest.approx(expected[feature][column], abs=1e-12, nan_ok=True)
    assert (out / "robust_features.txt").read_text().split() == pet_study.reproducibility.robust
    perturbations = read_csv(out / "perturbations.csv")
    assert len(perturbations) == 12 and {r["master_seed"] for r in perturbations} == {"11"}
    for case in CASES:
        assert (out / case / "consensus_staple.nrrd").is_file() and (out / case / "consensus_majority.nrrd").is_file()
    assert len(read_csv(out / "agreement.csv")) == 4 * 6
    provenance = json.loads((out / "observers.provenance.json").read_text())
    assert provenance["perturbation_seed"] == 11 and len(provenance["inputs"]) == 4


def test_cli_bad_input(data, tmp_path):
    """Exit status 2 and one line for each case of the issue; repeated names, unlike observer sets and bad rules
    are the same core errors (test_bad_input_core)."""
    image, mask = sts(data, "STS_002", "PET")
    out = tmp_path / "out"
    out.mkdir()
    (out / "agreement.csv").write_text("previous results\n")
    assert_user_error(run_cli("observers", image, mask, "-o", out), "at least 2 observers", "got 1 (PET_mask)", "--perturb")
    empty = sitk.Image(read(mask).GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(read(mask))
    empty_path = write(empty, tmp_path / "carol.nrrd")
    assert_user_error(run_cli("observers", image, mask, empty_path, "-o", out), "observer 'carol'", "is empty")
    cropped = write(sitk.RegionOfInterest(read(mask), [20, 18, 30], [5, 5, 10]), tmp_path / "dave.nrrd")
    assert_user_error(run_cli("observers", image, mask, cropped, "--strict", "-o", out), "observer 'dave'", "another grid", "--strict")
    cohort = tmp_path / "cohort.csv"
    cohort.write_text(f"lesion,observer,image,mask\nA,alice,{image},{mask}\nA,bob,{image},{cropped}\nB,alice,{image},{mask}\n")
    # A cohort's problems are all listed at once, one per line under the error line (as batch cohorts do).
    done = run_cli("observers", "--cohort", cohort, "-o", out)
    assert_user_error(done, "has 2 problems", "--keep-going")
    assert "lesion 'B'" in done.stderr and "at least 2 observers" in done.stderr
    assert [p.name for p in out.iterdir()] == ["agreement.csv"] and (out / "agreement.csv").read_text() == "previous results\n"
