"""The real ``radiomicslab`` console script: outputs, scene modes, and every bad-input case of the issue.

Bad input: exit status 2, one line on stderr saying what is wrong and what to do, no traceback,
no partial output file, and an existing output or scene left byte-identical.
"""

import hashlib
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib import __version__

from conftest import read_csv, read_sitk, run_cli


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_version_and_help():
    assert run_cli("--version").stdout.strip() == f"radiomicslab, version {__version__}"
    help_text = run_cli("extract", "--help").stdout
    for option in ("--label", "--params", "--scene", "--wide", "--resample-mask", "-o, --output"):
        assert option in help_text


def test_extract_long_csv_with_provenance(brain1, tmp_path):
    out = tmp_path / "features.csv"
    done = run_cli("extract", *brain1, "-o", out)
    assert done.returncode == 0, done.stderr
    rows = read_csv(out)
    assert list(rows[0]) == ["segment", "image_type", "feature_class", "feature", "ibsi_tag", "value"]
    assert len(rows) == 107 and {r["segment"] for r in rows} == {"Label_1"}
    contrast = next(r for r in rows if r["feature"] == "original_glcm_Contrast")
    assert contrast["ibsi_tag"] == "cm_contrast_3D_avg"
    assert next(r for r in rows if r["feature"] == "original_firstorder_Kurtosis")["ibsi_tag"] == ""  # not excess kurtosis
    # pyradiomics baseline value for brain1 (default settings): 47.492125114429776
    assert float(contrast["value"]) == pytest.approx(47.492125114429776, rel=1e-9)
    provenance = (tmp_path / "features.provenance.json").read_text()
    assert '"sha256"' in provenance and '"binWidth": 25' in provenance
    assert "Extracted 107 features for 1 segment(s)" in done.stderr


def two_label_mask_file(label_path, tmp_path):
    mask = read_sitk(label_path)
    array = sitk.GetArrayFromImage(mask)
    array[array.shape[0] // 2:][array[array.shape[0] // 2:] == 1] = 2
    two = sitk.GetImageFromArray(array)
    two.CopyInformation(mask)
    path = tmp_path / "two.nrrd"
    sitk.WriteImage(two, str(path))
    return path


def test_wide_labels_and_stdout(brain1, tmp_path):
    mask = two_label_mask_file(brain1[1], tmp_path)
    done = run_cli("extract", brain1[0], mask, "--wide", "-o", tmp_path / "wide.csv")
    assert done.returncode == 0, done.stderr
    rows = read_csv(tmp_path / "wide.csv")
    assert [r["segment"] for r in rows] == ["Label_1", "Label_2"]
    assert len(rows[0]) == 1 + 107
    only_two = run_cli("extract", brain1[0], mask, "--label", "2")
    assert only_two.returncode == 0
    assert {line.split(",")[0] for line in only_two.stdout.splitlines()[1:]} == {"Label_2"}


def test_scene_output_then_scene_input(brain1, tmp_path):
    study = tmp_path / "study.mrb"
    first = run_cli("extract", *brain1, "-o", tmp_path / "a.csv", "--scene", study)
    assert first.returncode == 0, first.stderr
    assert study.is_file()
    again = run_cli("extract", "--scene", study, "--segment", "Label_1", "-o", tmp_path / "b.csv", "--params", "pyradiomics-default")
    assert again.returncode == 0, again.stderr
    first_rows, again_rows = read_csv(tmp_path / "a.csv"), read_csv(tmp_path / "b.csv")
    assert [r["feature"] for r in first_rows] == [r["feature"] for r in again_rows]
    # Slicer's NRRD writer rounds spacing/origin in the last bit, so shape features may move by ~1e-16.
    for a, b in zip(first_rows, again_rows):
        assert float(a["value"]) == pytest.approx(float(b["value"]), rel=1e-12, abs=1e-12), a["feature"]
    missing = run_cli("extract", "--scene", study, "--segment", "Tumour")
    assert missing.returncode == 2 and "has no segment Tumour" in missing.stderr


# Bad input ------------------------------------------------------------------------------------
def assert_user_error(done, *fragments):
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    message = [line for line in done.stderr.splitlines() if line.startswith("radiomicslab: error:")]
    assert len(message) == 1, done.stderr
    for fragment in fragments:
        assert fragment in message[0], message[0]


def test_missing_file(brain1, tmp_path):
    out = tmp_path / "f.csv"
    assert_user_error(run_cli("extract", tmp_path / "nope.nrrd", brain1[1], "-o", out), "no such file", "nope.nrrd")
    assert not out.exists()


def test_unreadable_and_not_an_image(brain1, tmp_path):
    truncated = tmp_path / "truncated.nrrd"
    truncated.write_bytes(brain1[0].read_bytes()[:400])
    assert_user_error(run_cli("extract", truncated, brain1[1]), "truncated.nrrd", "not an image")
    text = tmp_path / "notes.csv"
    text.write_text("id,value\n1,2\n")
    assert_user_error(run_cli("extract", brain1[0], text), "mask", "notes.csv", "not an image", "NRRD, NIfTI")


def test_label_without_voxels_lists_labels(brain1, tmp_path):
    assert_user_error(run_cli("extract", *brain1, "--label", "7"), "no voxels with label 7", "labels present: 1")
    empty = sitk.Image(read_sitk(brain1[1]))
    empty *= 0
    sitk.WriteImage(empty, str(tmp_path / "empty.nrrd"))
    assert_user_error(run_cli("extract", brain1[0], tmp_path / "empty.nrrd"), "mask is empty")


@pytest.mark.parametrize("pixel", [sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkInt32, sitk.sitkFloat32])
def test_labels_present_counted_a_chunk_at_a_time(brain1, pixel, monkeypatch):
    """The labels of a label map, also when they lie in different chunks of the count (a chunk of 1000 voxels here:
    brain1's 1.6 M voxels in over a thousand chunks), when the last chunk is a short one, and when they lie in a few
    middle slices (the slices counted) or nowhere."""
    from RadiomicsLabLib import validation

    mask = read_sitk(brain1[1])
    array = sitk.GetArrayFromImage(mask).astype(np.int64)
    array[0, 0, 0], array[-1, -1, -1], array[12, 100, 7] = 3, 9, 250   # first and last voxel, and one between
    labelled = sitk.Cast(sitk.GetImageFromArray(array), pixel)
    middle = np.zeros_like(array)
    middle[12:14] = array[12:14]     # labels in two middle slices only (the count is cut to them)
    middle[13, 0, 0] = 4
    in_middle = sitk.Cast(sitk.GetImageFromArray(middle), pixel)
    monkeypatch.setattr(validation, "LABEL_COUNT_CHUNK", 1000)
    assert array.size % 1000 and validation.labels_present(labelled) == [1, 3, 9, 250]
    assert validation.labels_present(in_middle) == [1, 4, 250]
    assert validation.labels_present(in_middle * 0) == []
    monkeypatch.undo()
    assert validation.labels_present(labelled) == [1, 3, 9, 250]


def test_grid_mismatch_names_the_difference_and_resample_mask_fixes_it(brain1, tmp_path):
    mask = read_sitk(brain1[1])
    shifted = sitk.Image(mask)
    shifted.SetOrigin(tuple(np.array(mask.GetOrigin()) + [0.0, 0.0, 6.5]))  # one slice off
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nrrd"))
    out = tmp_path / "f.csv"
    done = run_cli("extract", brain1[0], tmp_path / "shifted.nrrd", "-o", out)
    assert_user_error(done, "different grids", "origin", "--resample-mask")
    assert "spacing" not in done.stderr and "size" not in done.stderr and not out.exists()
    coarse = sitk.Resample(mask, [128, 128, 25], sitk.Transform(), sitk.sitkNearestNeighbor, mask.GetOrigin(),
                           [s * f for s, f in zip(mask.GetSpacing(), (2, 2, 1))], mask.GetDirection())
    sitk.WriteImage(coarse, str(tmp_path / "coarse.nrrd"))
    assert_user_error(run_cli("extract", brain1[0], tmp_path / "coarse.nrrd"), "size (image (256, 256, 25), mask (128, 128, 25))", "spacing")
    fixed = run_cli("extract", brain1[0], tmp_path / "shifted.nrrd", "--resample-mask", "-o", out)
    assert fixed.returncode == 0, fixed.stderr
    assert out.is_file()


def test_nan_inside_mask(brain1, tmp_path):
    image = sitk.Cast(read_sitk(brain1[0]), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    inside = np.argwhere(sitk.GetArrayFromImage(read_sitk(brain1[1])) == 1)
    array[tuple(inside[0])], array[tuple(inside[1])] = np.nan, np.inf
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    sitk.WriteImage(bad, str(tmp_path / "nan.nrrd"))
    assert_user_error(run_cli("extract", tmp_path / "nan.nrrd", brain1[1]), "2 NaN or infinite voxel(s)", "Label_1")


def test_invalid_yaml_and_unknown_setting(brain1, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("setting:\n  binWidth: [25\n")
    assert_user_error(run_cli("extract", *brain1, "--params", broken), "Invalid YAML", "broken.yaml", "line")
    typo = tmp_path / "typo.yaml"
    typo.write_text("setting:\n  binwidth: 25\n")
    assert_user_error(run_cli("extract", *brain1, "--params", typo), "Unknown setting 'binwidth'", "did you mean 'binWidth'")
    assert_user_error(run_cli("extract", *brain1, "--params", "no-such-preset"), "neither a preset")


def test_unwritable_output(brain1, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert_user_error(run_cli("extract", *brain1, "-o", blocker / "out.csv"), "Cannot write", "not a folder")
    assert_user_error(run_cli("extract", *brain1, "-o", tmp_path), "Cannot write", "is a folder")
    assert_user_error(run_cli("extract", *brain1, "--scene", blocker / "s.mrb"), "Cannot write")


def test_failures_leave_existing_outputs_and_scene_untouched(brain1, tmp_path):
    out, study = tmp_path / "features.csv", tmp_path / "study.mrb"
    assert run_cli("extract", *brain1, "-o", out, "--scene", study).returncode == 0
    before = digest(out), digest(study), digest(tmp_path / "features.provenance.json")
    listing = sorted(p.name for p in tmp_path.iterdir())
    typo = tmp_path / "typo.yaml"
    typo.write_text("setting:\n  binWidht: 25\n")
    assert_user_error(run_cli("extract", *brain1, "--label", "9", "-o", out, "--scene", study), "label 9")
    assert_user_error(run_cli("extract", "--scene", study, "--params", typo, "-o", out), "binWidht")
    assert (digest(out), digest(study), digest(tmp_path / "features.provenance.json")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(listing + ["typo.yaml"])  # no temporary files left


def test_scene_file_that_is_not_a_bundle(brain1, tmp_path):
    fake = tmp_path / "study.mrb"
    shutil.copy(brain1[1], fake)
    assert_user_error(run_cli("extract", "--scene", fake), "not a Slicer data bundle")
    assert fake.read_bytes() == brain1[1].read_bytes()


def test_usage_errors_exit_2(brain1):
    done = run_cli("extract", brain1[0])
    assert done.returncode == 2 and "Give both IMAGE and MASK" in done.stderr and "Traceback" not in done.stderr
    assert run_cli("extract").returncode == 2


def test_demo_writes_results(tmp_path):
    done = run_cli("demo", "-o", tmp_path / "demo")
    assert done.returncode == 0, done.stderr
    for name in ("features.csv", "features.provenance.json", "study.mrb"):
        assert (tmp_path / "demo" / name).is_file()
    assert "original_glcm_Contrast" in done.stdout and "study.mrb" in done.stdout
