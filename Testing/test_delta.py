"""Delta-radiomics across timepoints: core, MRML Sequences (+ .mrb round trip), CLI, cohort, bad input.

There is no real second timepoint in the shared data, so follow-ups are built from real images
with a known answer (documented in :func:`synthetic_followup`):

- the real soft-tissue sarcoma CT of STS_002 and its GTV mask are the baseline;
- the follow-up lesion is the baseline lesion with the 20 % of its voxels nearest to its surface
  removed (a uniform 20 % erosion by volume), and its voxels darkened by 30 HU (a documented
  treatment-like attenuation drop);
- the whole follow-up image and mask are then moved by a known rigid transform (rotations 0.03,
  -0.02, 0.08 rad about the lesion centroid, translation 6, -4, 3 mm), resampled onto the
  baseline grid (linear for the image, nearest neighbour for the mask).

The registration must recover that transform (within 1 mm over the lesion, 0.5 degrees) and the
deltas must have the expected sign and size (volume -20 %, mean intensity the measured drop).
The cohort test uses the four real sarcoma CTs with follow-up masks eroded or grown by known
voxel fractions, so their volume changes are known exactly.
"""

import datetime
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib.delta import (
    DELTA_COLUMNS,
    DeltaCancelled,
    Timepoint,
    change,
    check_plot_features,
    check_timepoints,
    date_from_dicom,
    delta_rows,
    filter_reproducible,
    habitat_fractions,
    invert_transform,
    parse_date,
    read_delta_csv,
    read_icc_table,
    run_delta,
    timepoint_from_files,
    waterfall,
)
from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.registration import affine_matrix, resample, rotation_angle_degrees

from conftest import chart_values, read_csv, run_cli, start_then_cancel, table_values
from test_cli import assert_user_error

DATES = ("2021-01-04", "2021-02-15")  # 42 days apart
DAYS = 42
ANGLES = (0.03, -0.02, 0.08)          # rad, about the lesion centroid
TRANSLATION = (6.0, -4.0, 3.0)        # mm
HU_DROP = 30.0
SHRINK = 0.20
FAST = {"featureClass": {"firstorder": [], "shape": [], "glcm": []}, "setting": {"binWidth": 25}}
FAST_YAML = "featureClass:\n  firstorder: []\n  shape: []\n  glcm: []\nsetting:\n  binWidth: 25\n"
REG = {"shrink_factors": (4, 2), "smoothing_sigmas_mm": (2.0, 2.0), "iterations": 200, "seed": 7}
CLI_REG = ("--registration-shrink", "4,2", "--registration-iterations", "200", "--seed", "7")
VOLUME, MEAN = "original_shape_VoxelVolume", "original_firstorder_Mean"


# Building follow-ups ---------------------------------------------------------------------------
def resize_mask(mask, fraction):
    """The mask with round(|fraction| N) voxels removed (fraction < 0: those nearest its surface) or added
    (fraction > 0: the outside voxels nearest it), by Euclidean distance in mm; ties in voxel order."""
    inside = sitk.GetArrayFromImage(mask) > 0
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        sitk.Cast(mask > 0, sitk.sitkUInt8), insideIsPositive=True, squaredDistance=False, useImageSpacing=True)).ravel()
    out = inside.ravel().copy()
    count = int(round(abs(fraction) * inside.sum()))
    if fraction < 0:
        candidates = np.flatnonzero(out)
        out[candidates[np.argsort(distance[candidates], kind="stable")[:count]]] = False
    else:
        candidates = np.flatnonzero(~out)
        out[candidates[np.argsort(-distance[candidates], kind="stable")[:count]]] = True
    image = sitk.GetImageFromArray(out.reshape(inside.shape).astype(np.uint8))
    image.CopyInformation(mask)
    return image


def synthetic_followup(image, mask):
    """(follow-up image, follow-up mask, S, shrunk mask on the baseline grid, darkened image) -- see the module docstring.

    ``S`` maps follow-up points to baseline points (the resampling transform used to build it),
    so the registration (baseline -> follow-up points) should find S's inverse.
    """
    shrunk = resize_mask(mask, -SHRINK)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array[sitk.GetArrayViewFromImage(shrunk) > 0] -= HU_DROP
    darkened = sitk.GetImageFromArray(array)
    darkened.CopyInformation(image)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
    s = sitk.Euler3DTransform(stats.GetCentroid(1), *ANGLES, TRANSLATION)
    followup = resample(darkened, image, s, default_value=-1024.0)
    followup_mask = resample(shrunk, image, s, interpolator="nearest", default_value=0)
    return followup, followup_mask, s, shrunk, darkened


@pytest.fixture(scope="module")
def case(data, tmp_path_factory):
    """Real STS_002 CT + GTV as baseline; the synthetic follow-up written next to a fast parameter file."""
    folder = tmp_path_factory.mktemp("delta_case")
    image_path, mask_path = data / "sts" / "STS_002" / "CT_image.nii.gz", data / "sts" / "STS_002" / "CT_mask.nii.gz"
    image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    followup, followup_mask, s, shrunk, darkened = synthetic_followup(image, mask)
    sitk.WriteImage(followup, str(folder / "followup_image.nii.gz"))
    sitk.WriteImage(followup_mask, str(folder / "followup_mask.nii.gz"))
    (folder / "fast.yaml").write_text(FAST_YAML)
    return {"folder": folder, "image_path": image_path, "mask_path": mask_path, "image": image, "mask": mask,
            "followup": followup, "followup_mask": followup_mask, "S": s, "shrunk": shrunk, "darkened": darkened,
            "followup_path": folder / "followup_image.nii.gz", "followup_mask_path": folder / "followup_mask.nii.gz"}


def timepoints_of(case, followup_mask=True):
    return [Timepoint("baseline", parse_date(DATES[0]), case["image"], case["mask"]),
            Timepoint("week6", parse_date(DATES[1]), case["followup"], case["followup_mask"] if followup_mask else None)]


@pytest.fixture(scope="module")
def core_result(case):
    return run_delta(timepoints_of(case), FAST, register="rigid", difference_maps=True, registration_options=REG,
                     patient="STS_002")


def row_of(rows, feature, timepoint="week6", lesion="Label_1"):
    return next(r for r in rows if r.feature == feature and r.timepoint == timepoint and r.lesion == lesion)


def lesion_points(image, mask, step=20):
    return np.array([image.TransformIndexToPhysicalPoint([int(i) for i in index[::-1]])
                     for index in np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[::step]])


def same_rows(a, b):
    """Rows equal field by field, NaN equal to NaN."""
    def key(row):
        return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in row.row())
    return [key(r) for r in a] == [key(r) for r in b]


# Dates -----------------------------------------------------------------------------------------
def test_dates_text_and_dicom(brain1, tmp_path):
    assert parse_date("2021-03-04") == parse_date("20210304") == datetime.date(2021, 3, 4)
    for bad in ("2021-13-01", "04/03/2021", "2021-3-4", "yesterday"):
        with pytest.raises(RadiomicsLabError, match="is not a date; write it as YYYY-MM-DD"):
            parse_date(bad)
    # Three real brain1 slices written as a DICOM series: StudyDate 20210214, AcquisitionDate 20210215.
    image = sitk.ReadImage(str(brain1[0]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.7"
    for k, tags in enumerate(({"0008|0020": "20210214", "0008|0022": "20210215"},) * 3):
        piece = image[:, :, 10 + k]
        direction = image.GetDirection()
        for tag, value in {"0008|0060": "MR", "0020|000d": f"{uid}.1", "0020|000e": f"{uid}.2", "0008|0018": f"{uid}.3.{k}",
                           "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0020|0013": str(k + 1),
                           "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, 10 + k)))),
                           "0020|0037": "\\".join(map(str, direction[0::3][:3] + direction[1::3][:3])), **tags}.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"slice{k}.dcm"))
        writer.Execute(piece)
    assert date_from_dicom(tmp_path) == (datetime.date(2021, 2, 14), "StudyDate")
    timepoint = timepoint_from_files("", tmp_path, None, "week6")
    assert timepoint.date == datetime.date(2021, 2, 14) and timepoint.source["date"] == "DICOM StudyDate"
    assert timepoint_from_files("2021-01-01", tmp_path).date == datetime.date(2021, 1, 1)  # a given date wins
    assert date_from_dicom(brain1[0]) == (None, "")  # NRRD: no DICOM date


# Formulas --------------------------------------------------------------------------------------
def test_change_formulas_and_nan_rules():
    c = change(50.0, 40.0, 10)
    assert (c.delta_abs, c.delta_rel, c.delta_per_day) == (-10.0, -20.0, -1.0) and c.log_ratio == pytest.approx(math.log(0.8))
    assert c.note == ""
    zero = change(0.0, 5.0, 10)
    assert zero.delta_abs == 5.0 and zero.delta_per_day == 0.5
    assert math.isnan(zero.delta_rel) and math.isnan(zero.log_ratio) and "reference value is 0" in zero.note
    negative = change(-2.0, -1.0, 5)
    assert negative.delta_abs == 1.0 and math.isnan(negative.delta_rel) and "negative" in negative.note
    to_zero = change(2.0, 0.0, 5)
    assert to_zero.delta_rel == -100.0 and math.isnan(to_zero.log_ratio) and "log_ratio undefined" in to_zero.note
    same_day = change(2.0, 3.0, 0)
    assert math.isnan(same_day.delta_per_day) and "0 days" in same_day.note and same_day.delta_rel == 50.0
    missing = change(math.nan, 1.0, 3)
    assert all(math.isnan(v) for v in (missing.delta_abs, missing.delta_rel, missing.delta_per_day, missing.log_ratio))
    assert "reference value is NaN" in missing.note


def test_delta_rows_reference_modes_and_absent_lesion():
    tps = [Timepoint(label, parse_date(d), None) for label, d in (("baseline", "2021-01-01"), ("w4", "2021-01-29"), ("w8", "2021-02-26"))]
    values = {"baseline": {"A": {"f": 10.0}, "B": {"f": 0.0}},
              "w4": {"A": {"f": 8.0}, "B": {"f": 3.0}},
              "w8": {"A": {"f": 4.0}, "B": None}}          # lesion B has no voxels at w8
    rows = delta_rows(values, tps, "baseline", "P")
    assert [r.days for r in rows if r.lesion == "A"] == [0, 28, 56]
    a8 = row_of(rows, "f", "w8", "A")
    assert (a8.delta_abs, a8.delta_rel, a8.delta_per_day, a8.reference) == (-6.0, -60.0, -6.0 / 56, "baseline")
    b4 = row_of(rows, "f", "w4", "B")
    assert b4.delta_abs == 3.0 and math.isnan(b4.delta_rel) and "reference value is 0" in b4.note
    b8 = row_of(rows, "f", "w8", "B")
    assert math.isnan(b8.value) and math.isnan(b8.delta_abs) and "no voxels at 'w8'" in b8.note
    previous = delta_rows(values, tps, "previous")
    assert row_of(previous, "f", "w8", "A").delta_rel == -50.0 and row_of(previous, "f", "w8", "A").reference == "w4"
    assert "no previous timepoint" in row_of(previous, "f", "baseline", "A").note
    by_w4 = delta_rows(values, tps, "w4")
    assert row_of(by_w4, "f", "baseline", "A").delta_per_day == 2.0 / -28  # backwards in time: a slope, still
    assert [b[0] for b in waterfall(rows, "f")] == ["P/A"]  # B's last change is NaN: left out of the waterfall
    with pytest.raises(RadiomicsLabError, match="No feature volume to plot; the delta table has e.g. f"):
        check_plot_features(rows, ["f"], "volume")


# Core: registration, deltas, maps --------------------------------------------------------------
def test_registration_recovers_the_known_transform(case, core_result):
    alignment = core_result.alignments["week6"]
    assert alignment.used and alignment.result.converged
    # T (baseline -> follow-up) composed with S (follow-up -> baseline) must be the identity.
    residual = affine_matrix(alignment.result.transform) @ affine_matrix(case["S"])
    points = lesion_points(case["image"], case["mask"])
    moved = points @ residual[:3, :3].T + residual[:3, 3]
    assert np.linalg.norm(moved - points, axis=1).max() < 1.0          # mm, over the lesion (voxels 0.98 x 0.98 x 3.27 mm)
    assert rotation_angle_degrees(residual) < 0.5
    assert rotation_angle_degrees(affine_matrix(case["S"])) > 4.5        # the motion to recover was not small


def test_deltas_have_the_expected_sign_and_size(case, core_result):
    from RadiomicsLabLib.extraction import extract

    rows = core_result.rows
    assert [tp.label for tp in core_result.timepoints] == ["baseline", "week6"] and not core_result.warnings
    volume = row_of(rows, VOLUME)
    assert volume.delta_rel == pytest.approx(-100 * SHRINK, abs=1.0)     # 20 % erosion, resampled by nearest neighbour
    assert volume.log_ratio == pytest.approx(math.log(1 - SHRINK), abs=0.013)
    assert volume.delta_per_day == volume.delta_abs / DAYS and volume.days == DAYS and volume.date == DATES[1]
    # Mean HU: the follow-up lesion is the inner 80 % darkened by 30 HU; linear interpolation blurs its edge a little.
    inner = sitk.GetArrayViewFromImage(case["shrunk"]) > 0
    expected_followup = float(sitk.GetArrayViewFromImage(case["darkened"])[inner].mean())
    mean = row_of(rows, MEAN)
    assert mean.value == pytest.approx(expected_followup, abs=1.5)
    assert mean.delta_abs < -HU_DROP * 0.8 and mean.delta_rel < 0
    # The baseline values are exactly a plain extraction of the real files; every delta is its formula.
    direct = extract(case["image"], case["mask"], {"Label_1": 1}, FAST).as_dict("Label_1")
    assert {r.feature: r.value for r in rows if r.timepoint == "baseline"} == direct
    for r in rows:
        if r.timepoint == "week6":
            assert r.delta_abs == r.value - r.reference_value
            if r.reference_value > 0:
                assert r.delta_rel == 100 * (r.value - r.reference_value) / r.reference_value
            else:
                assert math.isnan(r.delta_rel) and "negative" in r.note
    assert "negative" in row_of(rows, "original_firstorder_Skewness").note  # baseline skewness < 0: NaN with the reason


def test_difference_map_on_the_baseline_grid(case, core_result):
    maps = core_result.difference_maps
    assert list(maps) == ["baseline", "week6"]
    assert not sitk.GetArrayViewFromImage(maps["baseline"]).any()
    week6 = maps["week6"]
    assert week6.GetSize() == case["image"].GetSize() and week6.GetOrigin() == case["image"].GetOrigin()
    diff = sitk.GetArrayViewFromImage(week6)
    core = sitk.GetArrayFromImage(resize_mask(case["shrunk"], -0.5)) > 0   # well inside the darkened lesion
    assert np.nanmean(diff[core]) == pytest.approx(-HU_DROP, abs=4.0)
    region = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.Cast(case["mask"] > 0, sitk.sitkUInt8), [6, 6, 2])) > 0
    outside = region & (sitk.GetArrayViewFromImage(case["mask"]) == 0)
    assert abs(np.nanmedian(diff[outside])) < 3.0     # unchanged tissue around the lesion: aligned, no change


def test_bspline_inverse_for_propagation(case):
    """A known smooth deformation (B-spline, coefficients uniform in +-3 mm, after a small rigid motion) and its inverse."""
    image = case["image"]
    bspline = sitk.BSplineTransformInitializer(image, [4, 4, 3], 3)
    rng = np.random.default_rng(3)
    bspline.SetParameters(rng.uniform(-3, 3, len(bspline.GetParameters())).tolist())
    transform = sitk.CompositeTransform([sitk.Euler3DTransform((0, 0, 0), 0.02, 0, -0.03, (2, 1, -1)), bspline])
    inverse = invert_transform(transform, image, spacing_mm=4.0)
    points = [image.TransformContinuousIndexToPhysicalPoint(rng.uniform([20, 20, 5], [140, 120, 40]).tolist()) for _ in range(300)]
    errors = [np.linalg.norm(np.array(transform.TransformPoint(inverse.TransformPoint(p))) - p) for p in points]
    assert max(errors) < 0.05  # mm; displacements are up to ~14 mm


# Feature filter and habitats ---------------------------------------------------------------
def test_icc_filter_keeps_reproducible_features(case, tmp_path):
    table = tmp_path / "icc.csv"
    table.write_text("feature,icc,ci_low,ci_high,icc_type\n"
                     "original_firstorder_Mean,0.95,0.90,0.98,ICC(2,1)\n"
                     "original_firstorder_Skewness,0.80,0.50,0.90,ICC(2,1)\n"
                     "stat_energy,0.91,0.80,0.96,ICC(2,1)\n")   # by IBSI tag: original_firstorder_Energy
    settings = {"featureClass": {"firstorder": []}, "setting": {"binWidth": 25}}
    result = run_delta(timepoints_of(case), settings, icc_table=table)
    assert result.features() == ["original_firstorder_Energy", "original_firstorder_Mean"]
    assert "15 feature(s) are not in the ICC table" in result.warnings[0]   # 18 first-order features, 3 in the table
    assert result.provenance["icc_filter"]["rule"] == "ci_low >= 0.75"
    everything = run_delta(timepoints_of(case), settings)
    assert len(everything.features()) == 18
    icc = read_icc_table(table)
    _, kept, _ = filter_reproducible(everything.values, everything.ibsi_tags, icc, 0.75, "icc")
    assert kept == ["original_firstorder_Energy", "original_firstorder_Mean", "original_firstorder_Skewness"]
    with pytest.raises(RadiomicsLabError, match="None of the 18 extracted features passes the ICC filter"):
        filter_reproducible(everything.values, everything.ibsi_tags, {"something_else": {"icc": 0.9, "ci_low": 0.8, "ci_high": 1}})
    with pytest.raises(DeltaCancelled, match="cancelled after 1 of 2 steps"):
        run_delta(timepoints_of(case), settings, progress=lambda done, total, message: False)
    table.write_text("feature,icc\nx,0.9\n")
    with pytest.raises(RadiomicsLabError, match="missing ci_low, ci_high"):
        run_delta(timepoints_of(case), settings, icc_table=table)
    table.write_text("feature,icc,ci_low,ci_high\nx,high,0.8,0.9\n")
    with pytest.raises(RadiomicsLabError, match="'high' in column icc on row 2"):
        read_icc_table(table)


def habitat_maps(case):
    """Two habitats inside each timepoint's lesion: 1 below the baseline lesion's median HU, 2 at or above it."""
    median = float(np.median(sitk.GetArrayViewFromImage(case["image"])[sitk.GetArrayViewFromImage(case["mask"]) > 0]))
    maps = []
    for image, mask in ((case["image"], case["mask"]), (case["followup"], case["followup_mask"])):
        inside = sitk.GetArrayViewFromImage(mask) > 0
        labels = np.where(inside, np.where(sitk.GetArrayViewFromImage(image) < median, 1, 2), 0).astype(np.uint8)
        out = sitk.GetImageFromArray(labels)
        out.CopyInformation(image)
        maps.append(out)
    return maps


def test_habitat_fractions_per_timepoint(case):
    maps = habitat_maps(case)
    rows = habitat_fractions(maps, timepoints_of(case), "STS_002")
    for m, tp in zip(maps, ("baseline", "week6")):
        counts = np.bincount(sitk.GetArrayViewFromImage(m).ravel(), minlength=3)
        mine = [r for r in rows if r.timepoint == tp]
        assert [(r.habitat, r.voxels) for r in mine] == [(1, counts[1]), (2, counts[2])]
        assert [r.fraction for r in mine] == [counts[1] / counts[1:].sum(), counts[2] / counts[1:].sum()]
    assert abs(rows[0].fraction - 0.5) < 0.01                  # the baseline median splits the lesion in two halves
    assert rows[2].fraction > rows[0].fraction + 0.2           # darkened by 30 HU: habitat 1 (low HU) grows
    with pytest.raises(RadiomicsLabError, match="one habitat label map per timepoint"):
        habitat_fractions(maps[:1], timepoints_of(case))


# Bad input (core) ------------------------------------------------------------------------------
def test_bad_timepoints_are_clear_errors(case):
    image, mask = case["image"], case["mask"]

    def tp(label, date, with_mask=True):
        return Timepoint(label, parse_date(date) if date else None, image, mask if with_mask else None)

    cases = [
        ([tp("a", "2021-02-01"), tp("b", "2021-01-01")], "out of date order: 'b' (2021-01-01) comes after 'a' (2021-02-01)"),
        ([tp("a", "2021-01-01"), tp("b", "2021-01-01")], "have the same date 2021-01-01"),
        ([tp("a", "2021-01-01"), tp("a", "2021-02-01")], "Two timepoints are labelled 'a'"),
        ([tp("a", "2021-01-01"), tp("b", None)], "Timepoint 'b' has no date"),
        ([tp("a", "2021-01-01")], "at least two timepoints"),
        ([tp("a", "2021-01-01", False), tp("b", "2021-02-01")], "baseline timepoint 'a' has no mask"),
        ([tp("a", "2021-01-01"), tp("b", "2021-02-01", False)], "has no mask and propagation is off"),
    ]
    for timepoints, message in cases:
        with pytest.raises(RadiomicsLabError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_timepoints(timepoints)
    good = [tp("a", "2021-01-01"), tp("b", "2021-02-01", False)]
    for kwargs, message in [({"propagate": True}, "needs a registration"), ({"difference_maps": True}, "Difference maps need"),
                            ({"register": "elastic"}, "Unknown registration 'elastic'"),
                            ({"register": "rigid", "propagate": True, "reference": "week9"}, "Unknown reference timepoint 'week9'"),
                            ({"register": "rigid", "propagate": True, "registration_options": {"iters": 3}}, "Unknown registration option iters"),
                            ({"register": "rigid", "propagate": True, "lesions": [7]}, "no voxels with label 7")]:
        with pytest.raises(RadiomicsLabError, match=message):
            run_delta(good, FAST, **kwargs)


# MRML: Sequences, transforms, table, charts, .mrb ---------------------------------------------
def test_scene_sequences_propagation_and_mrb_round_trip(case, scene, tmp_path):
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.convert import segment_ids, segment_to_sitk, sitk_to_volume_node, volume_to_sitk
    from RadiomicsLabLib.mrml.convert import transform_node_to_sitk
    from RadiomicsLabLib.mrml.delta import DeltaLogic

    logic = DeltaLogic(scene)
    study = logic.load_study([(DATES[0], case["image_path"], case["mask_path"]), (DATES[1], case["followup_path"], None)],
                             name="STS_002", labels=["baseline", "week6"])
    volumes = study.GetNodeReference("RadiomicsLab.Volumes")
    assert study.GetMasterSequenceNode() is volumes and volumes.GetNumberOfDataNodes() == 2
    assert [volumes.GetNthIndexValue(i) for i in range(2)] == list(DATES) and volumes.GetIndexName() == "date"
    assert volumes.GetNthDataNode(1).GetAttribute("RadiomicsLab.TimepointLabel") == "week6"
    assert study.GetNodeReference("RadiomicsLab.Segmentations").GetNumberOfDataNodes() == 1   # the follow-up has none yet

    nodes = logic.compute(study, FAST, register="rigid", propagate=True, difference_maps=True, registration_options=REG)
    # The propagated segmentation is in the sequence, on the follow-up grid, where the baseline lesion moved to.
    propagated = nodes.propagated[("STS_002", "week6")]
    assert propagated.GetAttribute("RadiomicsLab.Propagated") == "1"
    mask = segment_to_sitk(propagated, segment_ids(propagated)[0], volumes.GetNthDataNode(1))
    truth = resample(case["mask"], case["image"], case["S"], interpolator="nearest", default_value=0) > 0
    a, b = sitk.GetArrayViewFromImage(mask) > 0, sitk.GetArrayViewFromImage(truth) > 0
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.95                            # Dice
    rows = logic.delta_rows(nodes.table)
    assert row_of(rows, VOLUME).delta_rel == pytest.approx(0.0, abs=2.0)             # the baseline lesion, carried over
    assert list(rows[0].row()) and nodes.table.GetNumberOfColumns() == len(DELTA_COLUMNS)
    # The transform node holds the registration (Slicer's reader; from-parent = ITK resampling transform).
    transform = nodes.transforms[("STS_002", "week6")]
    assert transform.IsA("vtkMRMLLinearTransformNode")
    core = nodes.results[0].alignments["week6"].result.transform
    assert np.allclose(affine_matrix(transform_node_to_sitk(transform)), affine_matrix(core), atol=1e-9)
    ras = [[transform.GetMatrixTransformFromParent().GetElement(r, c) for c in range(4)] for r in range(4)]
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    assert np.allclose(ras, flip @ affine_matrix(core) @ flip, atol=1e-9)           # LPS -> RAS
    # Charts: a trajectory series per default feature, a waterfall bar series.
    assert nodes.trajectories.GetNumberOfPlotSeriesNodes() == 4 and nodes.waterfall.GetNumberOfPlotSeriesNodes() == 1
    differences = nodes.difference_maps["STS_002"]
    assert differences.GetNumberOfDataNodes() == 2
    # Feature maps (here the images themselves) and habitats over time, through the stored transform.
    b_map, f_map = sitk_to_volume_node(case["image"], "map0", scene), sitk_to_volume_node(case["followup"], "map1", scene)
    map_differences = logic.feature_map_differences(study, [b_map, f_map])
    expected = sitk.GetArrayViewFromImage(nodes.results[0].difference_maps["week6"])
    got = sitk.GetArrayFromImage(volume_to_sitk(map_differences.GetNthDataNode(1)))
    assert np.array_equal(np.isnan(got), np.isnan(expected)) and np.nanmax(np.abs(got - expected)) < 1e-3
    habitat_nodes = [sitk_to_volume_node(m, f"habitats {i}", scene, "vtkMRMLLabelMapVolumeNode") for i, m in enumerate(habitat_maps(case))]
    habitat_table, habitat_chart = logic.habitat_evolution(study, habitat_nodes)
    assert habitat_table.GetNumberOfRows() == 4 and habitat_chart.GetNumberOfPlotSeriesNodes() == 2

    # .mrb round trip into a fresh application: sequences, browser, attributes, transforms, table, charts.
    path = tmp_path / "delta.mrb"
    logic.save_scene(path)
    again = DeltaLogic(new_headless_app().scene)
    again.load_scene(path)
    studies = again.studies()
    assert [s.GetName() for s in studies] == ["STS_002"]
    timepoints, lesions = again.timepoints(studies[0])
    assert [(tp.label, tp.iso_date) for tp in timepoints] == [("baseline", DATES[0]), ("week6", DATES[1])] and lesions == {"Label_1": 1}
    assert np.array_equal(sitk.GetArrayViewFromImage(timepoints[1].image), sitk.GetArrayViewFromImage(case["followup"]))
    assert np.array_equal(sitk.GetArrayViewFromImage(timepoints[1].mask) > 0, a)
    assert np.array_equal(sitk.GetArrayViewFromImage(timepoints[0].mask), sitk.GetArrayViewFromImage(case["mask"]))
    table = again.scene.GetFirstNodeByName("STS_002 delta")
    assert same_rows(again.delta_rows(table), rows) and again.provenance(table)["registration"]["kind"] == "rigid"
    reloaded = again.transforms(studies[0])["week6"]
    assert np.allclose(affine_matrix(transform_node_to_sitk(reloaded)), affine_matrix(core), atol=1e-9)
    assert again.scene.GetFirstNodeByName("STS_002 delta waterfall").GetNumberOfPlotSeriesNodes() == 1
    assert again.scene.GetFirstNodeByName("STS_002 difference maps").GetNumberOfDataNodes() == 2
    segmentations = studies[0].GetNodeReference("RadiomicsLab.Segmentations")
    assert segmentations.GetNthDataNode(1).GetAttribute("RadiomicsLab.Propagated") == "1"
    exported = again.export(table, tmp_path / "export")
    assert same_rows(read_delta_csv(exported["delta.csv"]), rows)
    assert exported["waterfall.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_background_delta_equals_the_in_thread_call_and_cancel_adds_nothing(case, scene, monkeypatch):
    """DeltaLogic.compute_job in a real spawned worker (RadiomicsLabLib.background.BackgroundRun) on two copies of the
    same study (real STS_002 CT + GTV, the synthetic follow-up without a mask): rigid registration, propagation and
    difference maps computed in the worker land as the same table, charts, transform, propagated segmentation and
    difference maps as the in-thread call's, exactly; a cancel right after the start adds no node and the worker is
    gone within 2 s. ITK runs single-threaded here and in the worker (ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1): its
    threaded registration metric sums in a varying order, which moves the transform by ~1e-14 from run to run."""

    from RadiomicsLabLib.background import BackgroundRun
    from RadiomicsLabLib.mrml.convert import segment_ids, segment_to_sitk, volume_to_sitk
    from RadiomicsLabLib.mrml.delta import DeltaLogic

    logic = DeltaLogic(scene)
    specs = [(DATES[0], case["image_path"], case["mask_path"]), (DATES[1], case["followup_path"], None)]
    studies = [logic.load_study(specs, name="STS_002", labels=["baseline", "week6"]) for _ in range(3)]
    options = dict(settings=FAST, register="rigid", propagate=True, difference_maps=True, registration_options=REG)

    def values(nodes, study):
        followup = study.GetNodeReference("RadiomicsLab.Volumes").GetNthDataNode(1)
        propagated = nodes.propagated[("STS_002", "week6")]
        masks = [sitk.GetArrayFromImage(segment_to_sitk(propagated, s, followup)).tobytes() for s in segment_ids(propagated)]
        transform = nodes.transforms[("STS_002", "week6")].GetMatrixTransformFromParent()
        matrix = [transform.GetElement(i, j) for i in range(4) for j in range(4)]
        differences = nodes.difference_maps["STS_002"]
        maps = [sitk.GetArrayFromImage(volume_to_sitk(differences.GetNthDataNode(i))).tobytes()
                for i in range(differences.GetNumberOfDataNodes())]
        return (table_values(nodes.table), chart_values(nodes.trajectories), chart_values(nodes.waterfall), masks,
                matrix, maps, nodes.warnings)

    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")  # the worker's environment
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        in_thread = logic.compute(studies[0], **options)
        n_nodes = scene.GetNumberOfNodes()
        run = BackgroundRun(logic.compute_job(studies[1], **options))
        assert scene.GetNumberOfNodes() == n_nodes, "nothing may be added before the job lands"
        landed = run.wait(timeout=300)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    assert run.state == "done" and scene.GetNumberOfNodes() > n_nodes
    expected = values(in_thread, studies[0])
    assert values(landed, studies[1]) == expected
    assert len(expected[3]) == 1 and len(expected[5]) == 2 and landed.results[0].alignments["week6"].used
    # the results sent back (and kept) hold the timepoints' masks, propagated ones included, not their images
    for nodes in (landed, in_thread):
        assert [tp.image for tp in nodes.results[0].timepoints] == [None, None]
        assert all(tp.mask is not None for tp in nodes.results[0].timepoints)

    n_nodes = scene.GetNumberOfNodes()
    start_then_cancel(logic.compute_job(studies[2], **options))
    assert scene.GetNumberOfNodes() == n_nodes and not logic.transforms(studies[2])


def test_transform_nodes_for_bspline(case, scene):
    from RadiomicsLabLib.mrml.convert import sitk_to_transform_node, transform_node_to_sitk

    bspline = sitk.BSplineTransformInitializer(case["image"], [3, 3, 2], 3)
    bspline.SetParameters(np.random.default_rng(1).uniform(-2, 2, len(bspline.GetParameters())).tolist())
    composite = sitk.CompositeTransform([sitk.Euler3DTransform((0, 0, 0), 0.01, 0.02, 0.0, (1, 2, 3)), bspline])
    node = sitk_to_transform_node(composite, "deformable", scene)
    assert node.IsA("vtkMRMLBSplineTransformNode")
    back = transform_node_to_sitk(node)
    for point in lesion_points(case["image"], case["mask"], 2000):
        assert np.allclose(back.TransformPoint(point), composite.TransformPoint(point), atol=1e-6)
        ras = np.array(node.GetTransformFromParent().TransformPoint(point * [-1, -1, 1]))
        assert np.allclose(ras * [-1, -1, 1], composite.TransformPoint(point), atol=1e-6)


def test_study_from_nodes_and_user_sequences(case, scene):
    from RadiomicsLabLib.mrml.convert import label_map_to_segmentation_node, segment_ids, sitk_to_volume_node
    from RadiomicsLabLib.mrml.delta import DeltaLogic, volume_date

    logic = DeltaLogic(scene)
    volumes = [sitk_to_volume_node(case[key], f"ct{i}", scene) for i, key in enumerate(("image", "followup"))]
    segmentations = []
    for volume, key in zip(volumes, ("mask", "followup_mask")):
        segmentation = label_map_to_segmentation_node(case[key], f"{volume.GetName()} gtv", scene, volume)
        segmentation.GetSegmentation().GetSegment(segment_ids(segmentation)[0]).SetName("Tumour")
        segmentations.append(segmentation)
    # The desktop module's checked segmentations are matched to their images by reference geometry.
    assert logic.segmentations_for(volumes, segmentations[::-1]) == segmentations
    assert logic.segmentations_for(volumes, segmentations[:1]) == [segmentations[0], None]
    assert logic.segmentations_for(volumes, [segmentations[1]]) == [None, segmentations[1]]
    with pytest.raises(RadiomicsLabError, match="was not made on any of the timepoint images"):
        logic.segmentations_for(volumes[:1], segmentations)
    with pytest.raises(RadiomicsLabError, match="has two segmentations"):
        logic.segmentations_for(volumes, [segmentations[0], segmentations[0]])
    assert volume_date(volumes[0]) is None                           # neither given nor from DICOM
    with pytest.raises(RadiomicsLabError, match="Timepoint 'baseline' .*has no date"):
        logic.study_from_nodes(volumes, segmentations)
    volumes[0].SetAttribute("RadiomicsLab.Date", DATES[0])
    assert volume_date(volumes[0]) == parse_date(DATES[0])
    study = logic.study_from_nodes(volumes, segmentations, dates=DATES, labels=["pre", "post"], name="P")
    timepoints, lesions = logic.timepoints(study)
    assert [(tp.label, tp.iso_date) for tp in timepoints] == [("pre", DATES[0]), ("post", DATES[1])] and lesions == {"Tumour": 1}
    for tp, key in zip(timepoints, ("mask", "followup_mask")):
        assert np.array_equal(sitk.GetArrayViewFromImage(tp.mask) > 0, sitk.GetArrayViewFromImage(case[key]) > 0)
    assert volumes[1].GetAttribute("RadiomicsLab.TimepointLabel") is None   # the user's own nodes are left as they were
    before = scene.GetNumberOfNodes()
    with pytest.raises(RadiomicsLabError, match="Unknown reference timepoint 'week9'"):
        logic.compute(study, FAST, reference="week9")
    with pytest.raises(RadiomicsLabError, match="no segment Lesion"):
        logic.compute(study, FAST, lesions=["Lesion"])
    assert scene.GetNumberOfNodes() == before                        # a refused computation adds nothing
    # A sequence recorded elsewhere, indexed by numbers: dates must be given.
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "recorded")
    sequence.SetDataNodeAtValue(volumes[1], "0")
    sequence.SetDataNodeAtValue(volumes[1], "42")
    with pytest.raises(RadiomicsLabError, match="Give the timepoints' dates"):
        logic.open_study(sequence)
    opened = logic.open_study(sequence, dates=DATES)
    assert [tp.label for tp in logic.timepoints(opened)[0]] == ["baseline", "T1"]
    with pytest.raises(RadiomicsLabError, match="has no segmentation"):
        logic.compute(opened, FAST)


# CLI -------------------------------------------------------------------------------------------
def test_cli_through_the_scene_equals_the_core(case, core_result, tmp_path):
    out = tmp_path / "out"
    done = run_cli("delta", "--timepoint", f"{DATES[0]}:{case['image_path']}:{case['mask_path']}",
                   "--timepoint", f"{DATES[1]}:{case['followup_path']}:{case['followup_mask_path']}",
                   "--label", "baseline", "--label", "week6", "--register", "rigid", "--maps", "--scene", *CLI_REG,
                   "--params", case["folder"] / "fast.yaml", "--patient", "STS_002", "-o", out)
    assert done.returncode == 0, done.stderr
    assert set(read_csv(out / "delta.csv")[0]) >= {"feature", "timepoint", "value", "delta_abs", "delta_rel", "delta_per_day"}
    # Same images (the scene conversion is exact), same seed: the very same numbers as the core run.
    assert same_rows(read_delta_csv(out / "delta.csv"), core_result.rows)
    registration = read_csv(out / "registration.csv")
    assert registration[0]["converged"] == "True" and registration[0]["used"] == "True"
    matrix = np.array([float(v) for v in registration[0]["matrix_lps"].split()]).reshape(4, 4)
    # ITK's threaded metric sums in varying order: the same seed gives the same optimisation path up to ~1e-9
    assert np.allclose(matrix, affine_matrix(core_result.alignments["week6"].result.transform), atol=1e-6)
    for name in ("trajectories.png", "waterfall.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["STS_002_baseline_difference.nii.gz", "STS_002_week6_difference.nii.gz"]
    assert (out / "delta.mrb").is_file() and "radiomicslab" in (out / "delta.provenance.json").read_text()


def test_cli_registration_not_converging_is_left_out(case, tmp_path):
    """Two follow-ups, one iteration allowed: both registrations stop on the iteration limit.

    The follow-up without a mask (to be propagated) is left out entirely; the one with its own
    mask keeps its features but gets no difference map. Exit status 1, with warnings."""
    out = tmp_path / "out"
    done = run_cli("delta", "--timepoint", f"{DATES[0]}:{case['image_path']}:{case['mask_path']}",
                   "--timepoint", f"2021-01-25:{case['followup_path']}",
                   "--timepoint", f"{DATES[1]}:{case['followup_path']}:{case['followup_mask_path']}",
                   "--register", "rigid", "--propagate", "--maps", "--registration-shrink", "4", "--registration-iterations", "1",
                   "--params", case["folder"] / "fast.yaml", "-o", out)
    assert done.returncode == 1, done.stderr
    assert "did not converge" in done.stderr and "Traceback" not in done.stderr
    rows = read_csv(out / "delta.csv")
    assert {r["timepoint"] for r in rows} == {"baseline", "T2"}
    assert [(r["timepoint"], r["converged"], r["used"]) for r in read_csv(out / "registration.csv")] == [
        ("T1", "False", "False"), ("T2", "False", "False")]
    assert not (out / "masks").exists() and not (out / "maps").exists()


def test_cli_bad_input(case, tmp_path):
    base = f"{case['image_path']}:{case['mask_path']}"
    follow = f"{case['followup_path']}:{case['followup_mask_path']}"
    out = tmp_path / "out"
    bad = [
        (("--timepoint", f"{DATES[1]}:{base}", "--timepoint", f"{DATES[0]}:{follow}"), ("out of date order",)),
        (("--timepoint", f"{DATES[0]}:{base}", "--timepoint", f"{DATES[0]}:{follow}"), ("same date",)),
        (("--timepoint", f"{DATES[0]}:{base}", "--timepoint", f":{follow}"), ("'T1'", "has no date")),
        (("--timepoint", f"{DATES[0]}:{base}", "--timepoint", f"{DATES[1]}:{case['followup_path']}"),
         ("no mask and propagation is off", "--propagate")),
        (("--timepoint", f"{DATES[0]}:{base}", "--timepoint", f"{DATES[1]}:{follow}", "--propagate"), ("needs a registration",)),
        (("--timepoint", f"2021-02-30:{base}", "--timepoint", f"{DATES[1]}:{follow}"), ("'2021-02-30' is not a date",)),
        (("--timepoint", f"{DATES[0]}:{base}", "--timepoint", f"{DATES[1]}:{follow}", "--icc", tmp_path / "none.csv"),
         ("ICC table", "no such file")),
    ]
    for args, fragments in bad:
        assert_user_error(run_cli("delta", *args, "-o", out), *fragments)
        assert not out.exists()
    out.mkdir()
    (out / "delta.csv").write_text("keep me\n")
    assert_user_error(run_cli("delta", "--timepoint", f"{DATES[0]}:{base}", "--timepoint", f"{DATES[1]}:{follow}",
                              "--label", "only-one", "-o", out), "one --label per --timepoint")
    assert (out / "delta.csv").read_text() == "keep me\n"


# Cohort ----------------------------------------------------------------------------------------
#: Documented follow-up volume changes (fraction of the baseline voxels removed or added).
COHORT_CHANGES = {"STS_001": -0.30, "STS_002": -0.10, "STS_003": 0.15, "STS_004": 0.25}


def test_cohort_of_four_sarcomas(data, tmp_path):
    """Four real sarcoma CTs; follow-up masks eroded / grown by known fractions (same image, 8 or 10 weeks later)."""
    lines, expected = ["id,image,mask,timepoint"], {}
    for number, (patient, fraction) in enumerate(COHORT_CHANGES.items()):
        folder = data / "sts" / patient
        mask = sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
        followup = resize_mask(mask, fraction)
        path = tmp_path / f"{patient}_followup_mask.nii.gz"
        sitk.WriteImage(followup, str(path))
        n0, n1 = int((sitk.GetArrayViewFromImage(mask) > 0).sum()), int(sitk.GetArrayViewFromImage(followup).sum())
        expected[patient] = 100.0 * (n1 - n0) / n0
        second = "2021-03-01" if number % 2 else "2021-03-15"
        lines += [f"{patient},{folder / 'CT_image.nii.gz'},{folder / 'CT_mask.nii.gz'},baseline@2021-01-04",
                  f"{patient},{folder / 'CT_image.nii.gz'},{path},week8@{second}"]
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("\n".join(lines) + "\n")
    (tmp_path / "fast.yaml").write_text("featureClass:\n  firstorder: []\n  shape: []\nsetting:\n  binWidth: 25\n")
    out = tmp_path / "out"
    done = run_cli("delta", "--cohort", cohort, "--params", tmp_path / "fast.yaml", "-o", out)
    assert done.returncode == 0, done.stderr
    rows = read_delta_csv(out / "delta.csv")
    assert {r.patient for r in rows} == set(COHORT_CHANGES)
    for patient, change_percent in expected.items():
        volume = row_of([r for r in rows if r.patient == patient], VOLUME, "week8")
        assert volume.delta_rel == pytest.approx(change_percent, abs=1e-9)          # same grid: voxel counts exactly
        assert abs(change_percent - 100 * COHORT_CHANGES[patient]) < 0.01
        assert volume.days == (56 if patient in ("STS_002", "STS_004") else 70)
    bars = waterfall(rows, VOLUME)
    assert [b[0] for b in bars] == ["STS_004/Label_1", "STS_003/Label_1", "STS_002/Label_1", "STS_001/Label_1"]
    assert (out / "waterfall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(read_csv(out / "delta.csv")) == len(rows)


def test_cohort_rows_out_of_order_are_refused(data, tmp_path):
    folder = data / "sts" / "STS_003"
    image, mask = folder / "CT_image.nii.gz", folder / "CT_mask.nii.gz"
    cohort = tmp_path / "cohort.csv"
    cohort.write_text(f"id,image,mask,timepoint\nSTS_003,{image},{mask},2021-03-01\nSTS_003,{image},{mask},2021-01-04\n")
    done = run_cli("delta", "--cohort", cohort, "-o", tmp_path / "out")
    assert done.returncode == 2 and "out of date order" in done.stderr and "patient 'STS_003'" in done.stderr
    assert not (tmp_path / "out").exists()


# Cohort on the batch layer ----------------------------------------------------------------------
def batch_cohort(data, folder, patients=("STS_004", "STS_003", "STS_002")):
    """A delta cohort of real sarcoma CTs: baseline = the real GTV mask, follow-up 8 weeks later = that mask
    resized by the documented fraction of :data:`COHORT_CHANGES` (same image); returns (cohort.csv, fast.yaml)."""
    folder.mkdir(exist_ok=True)
    lines = ["id,image,mask,timepoint"]
    for patient in patients:
        source = data / "sts" / patient
        followup = folder / f"{patient}_followup_mask.nii.gz"
        sitk.WriteImage(resize_mask(sitk.ReadImage(str(source / "CT_mask.nii.gz")), COHORT_CHANGES[patient]), str(followup))
        lines += [f"{patient},{source / 'CT_image.nii.gz'},{source / 'CT_mask.nii.gz'},baseline@2021-01-04",
                  f"{patient},{source / 'CT_image.nii.gz'},{followup.name},week8@2021-03-01"]
    (folder / "cohort.csv").write_text("\n".join(lines) + "\n")
    (folder / "fast.yaml").write_text("featureClass:\n  firstorder: []\n  shape: []\nsetting:\n  binWidth: 25\n")
    return folder / "cohort.csv", folder / "fast.yaml"


DELTA_OUTPUTS = ("delta.csv", "trajectories.png", "waterfall.png")


def test_cohort_on_the_batch_layer_killed_resumed_and_two_workers_equal_the_in_process_run(data, tmp_path):
    """One task per patient: workers 0 and a real 2-worker LocalCluster killed (kill -9) after its first patient and
    resumed give the bytes of the in-process run (:func:`run_cohort` + :func:`write_outputs`) of the same cohort."""
    from RadiomicsLabLib.cohort import read_cohort
    from RadiomicsLabLib.delta import cohort_timepoints, run_cohort, write_outputs

    from test_batch import command_stopped_after

    cohort, params = batch_cohort(data, tmp_path / "in")
    expected = tmp_path / "expected"
    write_outputs([r for result in run_cohort(cohort_timepoints(read_cohort(cohort)), settings=str(params))
                   for r in result.rows], expected)

    def cli(out, workers):
        return run_cli("delta", "--cohort", cohort, "--params", params, "-o", out, "--workers", workers, "--memory-limit", "0")

    single = cli(tmp_path / "w0", 0)
    assert single.returncode == 0, single.stderr
    assert "3 case(s): 0 already done (skipped), 3 computed, 0 with errors" in single.stderr
    out = tmp_path / "w2"
    code, stderr = command_stopped_after(["delta", "--cohort", cohort, "--params", params, "-o", out, "--workers", 2],
                                         out / "cases", 1)
    assert code == -9, stderr
    first = {p.name: p.read_bytes() for p in (out / "cases").glob("*.json")}
    assert 1 <= len(first) < 3 and not (out / "delta.csv").exists()
    resumed = cli(out, 2)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(first)} already done (skipped), {3 - len(first)} computed" in resumed.stderr
    assert all((out / "cases" / name).read_bytes() == text for name, text in first.items())  # kept, not redone
    for name in DELTA_OUTPUTS:
        assert (tmp_path / "w0" / name).read_bytes() == (expected / name).read_bytes(), name
        assert (out / name).read_bytes() == (expected / name).read_bytes(), name
    rows = read_delta_csv(out / "delta.csv")
    assert [p for p in dict.fromkeys(r.patient for r in rows)] == ["STS_004", "STS_003", "STS_002"]  # cohort order
    assert read_csv(out / "errors.csv") == []
    provenance = json.loads((out / "delta.provenance.json").read_text())
    assert [p["patient"] for p in provenance["patients"]] == ["STS_004", "STS_003", "STS_002"]


def test_cohort_problems_listed_at_once_then_keep_going(data, tmp_path):
    """Every bad row with its row number before any work (exit 2, nothing written); with --keep-going the invalid
    patients and one failing in its task (a one-voxel baseline lesion, which pyradiomics refuses) go to errors.csv
    and the others finish (exit 1)."""
    cohort, params = batch_cohort(data, tmp_path / "in", ("STS_003", "STS_002"))
    mask = sitk.ReadImage(str(data / "sts" / "STS_001" / "CT_mask.nii.gz"))
    array = sitk.GetArrayFromImage(mask)
    first = tuple(np.argwhere(array > 0)[0])
    array[:] = 0
    array[first] = 1
    tiny = sitk.GetImageFromArray(array)
    tiny.CopyInformation(mask)
    sitk.WriteImage(tiny, str(tmp_path / "in" / "tiny.nii.gz"))
    sts = data / "sts"
    bad = [f"STS_001,{sts / 'STS_001' / 'CT_image.nii.gz'},tiny.nii.gz,2021-01-04",                   # row 6: fails in its task
           f"STS_001,{sts / 'STS_001' / 'CT_image.nii.gz'},{sts / 'STS_001' / 'CT_mask.nii.gz'},2021-03-01",
           f"STS_004,{sts / 'STS_004' / 'CT_image.nii.gz'},{sts / 'STS_004' / 'gone.nii.gz'},2021-01-04",  # row 8: no file
           f"STS_004,{sts / 'STS_004' / 'CT_image.nii.gz'},{sts / 'STS_004' / 'CT_mask.nii.gz'},2021-03-01",
           f"P5,{sts / 'STS_004' / 'CT_image.nii.gz'},{sts / 'STS_004' / 'CT_mask.nii.gz'},2021-02-30",    # row 10: no date
           f"P5,{sts / 'STS_004' / 'CT_image.nii.gz'},{sts / 'STS_004' / 'CT_mask.nii.gz'},2021-03-01",
           f"P6,{sts / 'STS_004' / 'CT_image.nii.gz'},{sts / 'STS_004' / 'CT_mask.nii.gz'},2021-03-01",    # rows 12, 13:
           f"P6,{sts / 'STS_004' / 'CT_image.nii.gz'},{sts / 'STS_004' / 'CT_mask.nii.gz'},2021-01-04"]    # out of order
    cohort.write_text(cohort.read_text() + "\n".join(bad) + "\n")
    out = tmp_path / "out"
    refused = run_cli("delta", "--cohort", cohort, "--params", params, "-o", out, "--workers", "0")
    assert refused.returncode == 2 and "has 3 problems" in refused.stderr and "--keep-going" in refused.stderr, refused.stderr
    for fragment in ("row 8 (id 'STS_004'): cannot read mask", "row 10 (id 'P5'): the date '2021-02-30' is not a date",
                     "rows 12, 13 (id 'P6'): patient 'P6': timepoints are out of date order"):
        assert fragment in refused.stderr, refused.stderr
    assert not out.exists()

    going = run_cli("delta", "--cohort", cohort, "--params", params, "-o", out, "--workers", "0", "--keep-going")
    assert going.returncode == 1, going.stderr
    errors = [(e["id"], e["where"], e["stage"]) for e in read_csv(out / "errors.csv")]
    assert errors == [("STS_001", "rows 6, 7", "delta"), ("STS_004", "row 8", "validation"),
                      ("STS_004", "row 9", "validation"), ("P5", "row 10", "validation"), ("P5", "row 11", "validation"),
                      ("P6", "rows 12, 13", "validation")]
    assert "1 segmented voxel" in read_csv(out / "errors.csv")[0]["error"]
    assert {r.patient for r in read_delta_csv(out / "delta.csv")} == {"STS_003", "STS_002"}
    assert "skipping invalid row 9 (id 'STS_004'): skipped with the other rows of patient 'STS_004'" in going.stderr
    # batch options belong to --cohort
    single = run_cli("delta", "--timepoint", f"2021-01-04:{sts / 'STS_002' / 'CT_image.nii.gz'}:{sts / 'STS_002' / 'CT_mask.nii.gz'}",
                     "--timepoint", f"2021-03-01:{sts / 'STS_002' / 'CT_image.nii.gz'}:{sts / 'STS_002' / 'CT_mask.nii.gz'}",
                     "-o", tmp_path / "single", "--keep-going")
    assert single.returncode == 2 and "give --cohort" in single.stderr
