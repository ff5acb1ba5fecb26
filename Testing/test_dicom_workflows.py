"""DICOM RTSTRUCT / SEG masks in ``habitats``, ``delta`` and cohort files (``batch``, ``observers --cohort``,
``habitats --cohort``), and ``habitats`` / ``delta`` masks out as DICOM SEG (issue #19).

Real data (Testing/dicom_data.py): sarcoma patient STS_001's CT cut to its GTV's box plus 3 voxels (habitats,
batch, observers) and STS_002's CT cut to its GTV's box plus 12 voxels (delta, so the registration has some
anatomy around the lesion), each written as a DICOM CT series by pydicom. Each GTV (and the GTV grown by one voxel,
6-connected, scipy.ndimage: a second, overlapping ROI; there is no second real segmentation in the shared data)
is written as an RTSTRUCT by plastimatch (contours on the voxel edges, read back exactly: checked here) and the GTV
as a SEG by highdicom, both independent of RadiomicsLab's code.

Twins, and why the comparisons are exact: every DICOM run has a label-map twin whose image is the DICOM series
*as RadiomicsLab reads it*, written as MetaImage, and whose mask is the same GTV on that grid. MetaImage keeps the
double spacing, origin and direction exactly (checked by :func:`twin`); NRRD stores direction times spacing and
reads a direction of 0.9999999999999999 back for 1, and NIfTI rounds the spacing to float32, while the series
stores it as a 6-decimal string (0.976562 mm for the NIfTI's 0.9765620231628418 mm). The two runs then see the
same voxels on the same grid, so their outputs are compared exactly (equal arrays, equal table text), not to the
~1e-7 relative that the decimal spacing would otherwise leave in mm-based values. The habitats' PET channel (SUV,
not whole numbers, so not written as a DICOM CT/MR series) is the shared NIfTI in both runs, resampled onto the
mask's grid.

Delta's follow-up is made as in Testing/test_delta.py (:func:`test_delta.synthetic_followup`: the real baseline
with its GTV shrunk by 20 % and darkened by 30 HU, moved by a known rigid transform), its values rounded to whole
HU so it can be stored as a DICOM CT series too. Every command runs in this process (``RadiomicsLabLib.cli.main``).
"""

import csv
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_data import write_rtstruct_independently, write_seg_independently, write_series, write_sts_series
from pydicom.sr.codedict import codes
from scipy import ndimage
from test_delta import CLI_REG, DATES, FAST_YAML, synthetic_followup
from test_dicom_cli import ok, refused

from RadiomicsLabLib.dicom import read_dicom_segments
from RadiomicsLabLib.dicom.write import LESION, TISSUE
from RadiomicsLabLib.imageio import read_image

pytestmark = pytest.mark.skipif(shutil.which("plastimatch") is None,
                                reason="plastimatch is not on PATH (Debian package plastimatch; make test installs it)")


def array(image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def read(path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def twin(image: sitk.Image, path) -> sitk.Image:
    """Write ``image`` as MetaImage (geometry kept exactly) and check it reads back on the same grid with the same voxels."""
    sitk.WriteImage(image, str(path), True)
    back = read(path)
    assert back.GetSpacing() == image.GetSpacing() and back.GetOrigin() == image.GetOrigin()
    assert back.GetDirection() == image.GetDirection() and np.array_equal(array(back), array(image))
    return back


def on_grid(mask_array, reference) -> sitk.Image:
    image = sitk.GetImageFromArray(mask_array.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def write_dicom_case(root, patient, margin):
    """The DICOM series of a patient's CT, its MetaImage twin, the GTV and grown GTV as MetaImage twins, one plastimatch
    RTSTRUCT holding both ROIs (they overlap) and a highdicom SEG of the GTV."""
    series, gtv = write_sts_series(root / "series", patient, "CT", margin=margin)
    image = read_image(series.folder)
    files = {"series": series.folder, "image": root / "image.mha"}
    twin(image, files["image"])
    masks = {"GTV": on_grid(array(gtv) > 0, image), "GTV_grown": on_grid(ndimage.binary_dilation(array(gtv) > 0), image)}
    for name, mask in masks.items():
        files[name] = root / f"{name}.mha"
        twin(mask, files[name])
    files["rt"] = write_rtstruct_independently(series, {n: on_grid(array(m), series.image) for n, m in masks.items()},
                                               root / "gtv_rt.dcm", writer="plastimatch")
    files["seg"] = write_seg_independently(series, [("GTV", on_grid(array(masks["GTV"]), series.image),
                                                     (codes.SCT.Tissue, codes.SCT.Neoplasm))], root / "gtv_seg.dcm")
    for segment in read_dicom_segments(files["rt"], series.folder):  # exact: the DICOM runs see the twins' masks
        assert np.array_equal(array(segment.mask), array(masks[segment.name])), segment.name
    return series, masks, files


@pytest.fixture(scope="module")
def sts1(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_workflows_sts1")
    (root / "fast.yaml").write_text(FAST_YAML)
    return (root, *write_dicom_case(root, "STS_001", 3))


def csv_text(path) -> str:
    return path.read_text()


def csv_rows(path) -> list:
    with open(path) as handle:
        return list(csv.DictReader(handle))


# habitats ------------------------------------------------------------------------------------------
HABITATS = ("-k", "3", "--registration", "resample", "--seed", "3", "--patient", "STS_001")


def test_habitats_of_rtstruct_and_seg_equal_the_label_map_habitats_and_seg_reads_back(data, sts1, capfd, tmp_path):
    root, series, masks, files = sts1
    pet = f"PET={data / 'sts' / 'STS_001' / 'PET_image.nii.gz'}"
    ok(["habitats", files["GTV"], "--channel", f"CT={files['image']}", "--channel", pet, *HABITATS,
        "-o", tmp_path / "labelmap"], capfd)
    err = ok(["habitats", files["rt"], "--roi", "GTV", "--channel", f"CT={series.folder}", "--channel", pet, *HABITATS,
              "-o", tmp_path / "rtstruct", "--seg", tmp_path / "habitats.dcm"], capfd)
    assert str(tmp_path / "habitats.dcm") in err
    ok(["habitats", files["seg"], "--channel", f"CT={series.folder}", "--channel", pet, *HABITATS,
        "-o", tmp_path / "seg"], capfd)
    labels = array(read(tmp_path / "labelmap" / "habitats.nrrd"))
    gtv = array(masks["GTV"]).astype(bool)
    assert set(np.unique(labels[gtv])) == {1, 2, 3} and not labels[~gtv].any()
    for run in ("rtstruct", "seg"):
        np.testing.assert_array_equal(array(read(tmp_path / run / "habitats.nrrd")), labels)  # voxel for voxel
        for name in ("habitats.csv", "cohort.csv"):
            assert csv_text(tmp_path / run / name) == csv_text(tmp_path / "labelmap" / name), (run, name)
    segments = read_dicom_segments(tmp_path / "habitats.dcm", series.folder)
    assert [s.name for s in segments] == ["Habitat 1", "Habitat 2", "Habitat 3"]
    for habitat, segment in enumerate(segments, start=1):
        assert (segment.category, segment.type) == TISSUE
        np.testing.assert_array_equal(array(segment.mask), (labels == habitat).astype(np.uint8))


def test_habitats_cohort_with_a_dicom_mask_equals_the_label_map_cohort(data, sts1, capfd, tmp_path):
    """A cohort row may give the mask channel's mask as an RTSTRUCT (roi column) on its DICOM series folder."""
    root, series, _, files = sts1
    pet = data / "sts" / "STS_001"
    header = "id,image,mask,channel,roi\n"
    pet_row = f"STS_001,{pet / 'PET_image.nii.gz'},{pet / 'PET_mask.nii.gz'},PET,\n"
    (tmp_path / "labelmap.csv").write_text(header + f"STS_001,{files['image']},{files['GTV']},CT,\n" + pet_row)
    (tmp_path / "dicom.csv").write_text(header + f"STS_001,{series.folder},{files['rt']},CT,GTV\n" + pet_row)
    common = ["-k", "3", "--registration", "resample", "--seed", "3", "--workers", "0"]
    ok(["habitats", "--cohort", tmp_path / "labelmap.csv", *common, "-o", tmp_path / "labelmap"], capfd)
    ok(["habitats", "--cohort", tmp_path / "dicom.csv", *common, "-o", tmp_path / "dicom"], capfd)
    expected = array(read(tmp_path / "labelmap" / "STS_001" / "habitats.nrrd"))
    assert set(np.unique(expected)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(array(read(tmp_path / "dicom" / "STS_001" / "habitats.nrrd")), expected)
    assert csv_text(tmp_path / "dicom" / "habitats.csv") == csv_text(tmp_path / "labelmap" / "habitats.csv")


# batch and observers cohorts ------------------------------------------------------------------------
def test_batch_cohort_with_dicom_rows_equals_extract(sts1, capfd, tmp_path):
    """Row 'both': no roi, so every ROI of the RTSTRUCT (GTV and GTV_grown, overlapping) is its own segment named by
    the ROI, as ``extract`` gives them; row 'grown': the roi column picks one. Values equal extract's."""
    root, series, _, files = sts1
    (tmp_path / "cohort.csv").write_text(f"id,image,mask,roi\nboth,{series.folder},{files['rt']},\n"
                                         f"grown,{series.folder},{files['rt']},GTV_grown\n")
    params = ["--params", root / "fast.yaml"]
    ok(["extract", series.folder, files["rt"], *params, "--wide", "-o", tmp_path / "extract.csv"], capfd)
    ok(["batch", tmp_path / "cohort.csv", *params, "--workers", "0", "-o", tmp_path / "batch"], capfd)
    expected = {row.pop("segment"): row for row in csv_rows(tmp_path / "extract.csv")}
    assert list(expected) == ["GTV", "GTV_grown"]
    assert float(expected["GTV"]["original_shape_VoxelVolume"]) < float(expected["GTV_grown"]["original_shape_VoxelVolume"])
    rows = csv_rows(tmp_path / "batch" / "features.csv")
    assert [(r["id"], r["segment"]) for r in rows] == [("both", "GTV"), ("both", "GTV_grown"), ("grown", "GTV_grown")]
    for row in rows:
        reference = expected[row["segment"]]
        assert len(reference) > 20
        for feature, value in reference.items():
            assert float(row[feature]) == float(value), (row["id"], feature)  # the same computation: equal


def test_observers_cohort_with_rtstruct_rows_equals_the_label_maps(sts1, capfd, tmp_path):
    """Two readers' ROIs of one RTSTRUCT (roi column) give the agreement of the two label maps."""
    root, series, _, files = sts1
    head = "id,image,mask,observer,roi\n"
    (tmp_path / "labelmaps.csv").write_text(head + f"L1,{files['image']},{files['GTV']},a,\n"
                                                   f"L1,{files['image']},{files['GTV_grown']},b,\n")
    (tmp_path / "dicom.csv").write_text(head + f"L1,{series.folder},{files['rt']},a,GTV\n"
                                               f"L1,{series.folder},{files['rt']},b,GTV_grown\n")
    for run in ("labelmaps", "dicom"):
        ok(["observers", "--cohort", tmp_path / f"{run}.csv", "--no-features", "--workers", "0", "-o", tmp_path / run],
           capfd)
    assert csv_text(tmp_path / "dicom" / "agreement.csv") == csv_text(tmp_path / "labelmaps" / "agreement.csv")
    assert float(csv_rows(tmp_path / "dicom" / "agreement.csv")[0]["dice"]) < 1


# delta ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def delta_case(tmp_path_factory):
    """Baseline: STS_002's CT series and GTV RTSTRUCT; follow-up: the synthetic follow-up (see the module) as a
    second DICOM series; MetaImage twins of both as read."""
    root = tmp_path_factory.mktemp("dicom_workflows_delta")
    (root / "fast.yaml").write_text(FAST_YAML)
    series, masks, files = write_dicom_case(root, "STS_002", 12)
    followup, followup_mask, *_ = synthetic_followup(read(files["image"]), masks["GTV"])
    rounded = sitk.GetImageFromArray(np.round(array(followup)).astype(np.float32))
    rounded.CopyInformation(followup)
    sitk.WriteImage(rounded, str(root / "followup_written.nrrd"))
    second = write_series(root / "followup_written.nrrd", root / "followup_series", "CT", patient_id="STS_002",
                          study_uid=series.study_uid, frame_of_reference_uid=series.frame_of_reference_uid, series_number=2)
    files["followup_series"], files["followup"] = second.folder, root / "followup.mha"
    twin(read_image(second.folder), files["followup"])
    return root, series, second, masks, files


def test_delta_of_dicom_timepoints_equals_the_label_maps_and_propagated_seg_reads_back(delta_case, capfd, tmp_path):
    root, series, second, masks, files = delta_case
    common = ["--register", "rigid", "--propagate", "--params", root / "fast.yaml", *CLI_REG]
    ok(["delta", "--timepoint", f"{DATES[0]}:{files['image']}:{files['GTV']}", "--timepoint",
        f"{DATES[1]}:{files['followup']}", *common, "-o", tmp_path / "labelmap"], capfd)
    (tmp_path / "segs").mkdir()
    ok(["delta", "--timepoint", f"{DATES[0]}:{series.folder}:{files['rt']}", "--roi", "GTV", "--timepoint",
        f"{DATES[1]}:{second.folder}", *common, "--seg", tmp_path / "segs", "-o", tmp_path / "dicom"], capfd)
    propagated = "masks/patient_T1_propagated.nii.gz"
    expected = array(read(tmp_path / "labelmap" / propagated))
    assert expected.sum() > 100
    np.testing.assert_array_equal(array(read(tmp_path / "dicom" / propagated)), expected)
    assert csv_text(tmp_path / "dicom" / "registration.csv") == csv_text(tmp_path / "labelmap" / "registration.csv")
    rows, reference = csv_rows(tmp_path / "dicom" / "delta.csv"), csv_rows(tmp_path / "labelmap" / "delta.csv")
    assert len(rows) == len(reference) > 20
    assert {r["lesion"] for r in rows} == {"GTV"} and {r["lesion"] for r in reference} == {"Label_1"}  # ROI names kept
    for row, ref in zip(rows, reference):
        assert {**row, "lesion": ""} == {**ref, "lesion": ""}
    (segment,) = read_dicom_segments(tmp_path / "segs" / "patient_T1_propagated.dcm", second.folder)
    assert segment.name == "GTV" and (segment.category, segment.type) == LESION
    np.testing.assert_array_equal(array(segment.mask), expected)


# bad inputs ----------------------------------------------------------------------------------------
def test_bad_dicom_workflow_inputs_exit_2_with_one_line_and_write_nothing(sts1, delta_case, capfd, tmp_path, monkeypatch):
    root, series, masks, files = sts1
    monkeypatch.chdir(tmp_path)
    ct = f"CT={series.folder}"
    refused(["habitats", files["rt"], "--roi", "GTV", "--channel", f"CT={files['image']}", "-o", "out"], capfd, tmp_path,
            "is a DICOM segmentation", "folder of the DICOM series")
    refused(["habitats", files["rt"], "--roi", "Tumour", "--channel", ct, "-o", "out"], capfd, tmp_path,
            "has no ROI named 'Tumour'", "'GTV', 'GTV_grown'")
    refused(["habitats", files["rt"], "--channel", ct, "-o", "out"], capfd, tmp_path, "holds the ROIs", "--roi")
    refused(["habitats", files["GTV"], "--channel", f"CT={files['image']}", "-o", "out", "--seg", "habitats.dcm"], capfd,
            tmp_path, "--seg writes a DICOM SEG", "the first --channel")
    refused(["habitats", files["GTV"], "--channel", ct, "-o", "out", "--seg", "habitats.nrrd"], capfd, tmp_path,
            "must end in .dcm")
    base, followup = delta_case[4]["image"], delta_case[4]["followup"]
    dicom_base = f"{DATES[0]}:{delta_case[1].folder}:{delta_case[4]['rt']}"
    refused(["delta", "--timepoint", f"{DATES[0]}:{base}:{delta_case[4]['rt']}", "--timepoint", f"{DATES[1]}:{followup}",
             "--register", "rigid", "--propagate", "-o", "out"], capfd, tmp_path, "is a DICOM segmentation")
    refused(["delta", "--timepoint", dicom_base, "--roi", "Tumour", "--timepoint", f"{DATES[1]}:{followup}",
             "--register", "rigid", "--propagate", "-o", "out"], capfd, tmp_path, "has no ROI named 'Tumour'")
    refused(["delta", "--timepoint", dicom_base, "--roi", "GTV", "--timepoint", f"{DATES[1]}:{followup}", "--register",
             "rigid", "--propagate", "--seg", "segs_", "-o", "out"], capfd, tmp_path,
            "--seg writes a DICOM SEG", "the image of timepoint 'T1'")
    refused(["delta", "--timepoint", dicom_base, "--roi", "GTV", "--timepoint", f"{DATES[1]}:{followup}:{delta_case[4]['GTV']}",
             "--seg", "segs_", "-o", "out"], capfd, tmp_path, "--seg writes the masks delta propagates")
    (root / "bad_cohorts").mkdir(exist_ok=True)
    for name, text, fragment in (
            ("nifti_image.csv", f"id,image,mask\np1,{files['image']},{files['rt']}\n", "is a DICOM segmentation"),
            ("unknown_roi.csv", f"id,image,mask,roi\np1,{series.folder},{files['rt']},Tumour\n", "has no ROI named 'Tumour'"),
            ("roi_of_label_map.csv", f"id,image,mask,roi\np1,{files['image']},{files['GTV']},GTV\n", "is a label map")):
        (root / "bad_cohorts" / name).write_text(text)
        code, _, err = run_in_process_lines(["batch", root / "bad_cohorts" / name, "--workers", "0", "-o", "batch"], capfd)
        assert code == 2 and "has 1 problem" in err[0] and fragment in err[1] and len(err) == 2, err
        assert not (tmp_path / "batch").exists()
    (root / "bad_cohorts" / "two_rois.csv").write_text(
        f"id,image,mask,channel\np1,{series.folder},{files['rt']},CT\n")
    code, _, err = run_in_process_lines(["habitats", "--cohort", root / "bad_cohorts" / "two_rois.csv", "--workers", "0",
                                         "-o", "hab"], capfd)
    assert code == 2 and "holds the ROIs 'GTV', 'GTV_grown'" in err[1] and "roi column" in err[1], err
    assert list(tmp_path.iterdir()) == []


def run_in_process_lines(argv, capfd):
    from test_bad_inputs import run_in_process

    code, out, err = run_in_process(argv, capfd)
    return code, out, err.strip().splitlines()
