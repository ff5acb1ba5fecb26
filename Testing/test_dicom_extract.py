"""``radiomicslab extract`` on DICOM: IMAGE a DICOM series folder, MASK an RTSTRUCT or a SEG (issue #19).

Real sarcoma CTs written as DICOM series (Testing/dicom_data.py), their GTV written as an RTSTRUCT by plastimatch
(contours on the voxel edges: rasterised back exactly) and as a SEG by highdicom, a second overlapping ROI (the GTV
dilated by one voxel) beside it. The features from the DICOM path equal those from the label-map path when the masks
are equal; ``--sr`` writes a TID 1500 report whose values read back (RadiomicsLab's reader and dcmqi's) as the CSV's.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import read_csv, run_cli
from pydicom.sr.codedict import codes
from dicom_data import write_rtstruct_independently, write_seg_independently, write_sts_series

from RadiomicsLabLib.dicom.sr import read_measurement_report
from RadiomicsLabLib.imageio import read_image

PARAMS = "pyradiomics-default"
needs_plastimatch = pytest.mark.skipif(shutil.which("plastimatch") is None,
                                       reason="plastimatch is not on PATH (Debian package plastimatch; make test installs it)")


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory, data):
    """STS_001's CT as a DICOM series, its GTV as NIfTI label map, RTSTRUCT (GTV + GTV dilated, overlapping) and SEG."""
    folder = tmp_path_factory.mktemp("sts001_dicom")
    series, gtv = write_sts_series(folder / "series")
    read_back = read_image(series.folder)  # the geometry as DICOM's decimal strings give it
    gtv.CopyInformation(read_back)
    dilated = sitk.BinaryDilate(gtv, [1, 1, 1])
    sitk.WriteImage(gtv, str(folder / "gtv.nrrd"))
    sitk.WriteImage(read_back, str(folder / "image.nrrd"))
    rtstruct = write_rtstruct_independently(series, {"GTV": gtv, "GTV+1": dilated}, folder / "rtstruct.dcm",
                                            writer="plastimatch") if shutil.which("plastimatch") else None
    seg = write_seg_independently(series, [("GTV", gtv, (codes.SCT.Tissue, codes.SCT.Neoplasm))], folder / "seg.dcm")
    return {"folder": folder, "series": series.folder, "gtv": gtv, "dilated": dilated, "rtstruct": rtstruct,
            "seg": seg, "image": folder / "image.nrrd", "label_map": folder / "gtv.nrrd"}


def values_of(csv_path, segment):
    return {r["feature"]: float(r["value"]) for r in read_csv(csv_path) if r["segment"] == segment}


@needs_plastimatch
def test_rtstruct_rois_extract_as_the_label_map_does_each_on_its_own_mask(dicom_case, tmp_path):
    """Both ROIs (overlapping) extracted, each named by its ROI; the GTV's features equal the label map's (same
    voxels, same image values: the series reads back as the NIfTI it was written from)."""
    out = tmp_path / "rt.csv"
    run = run_cli("extract", dicom_case["series"], dicom_case["rtstruct"], "--params", PARAMS, "-o", out)
    assert run.returncode == 0, run.stderr
    assert {r["segment"] for r in read_csv(out)} == {"GTV", "GTV+1"}
    reference = tmp_path / "nifti.csv"
    assert run_cli("extract", dicom_case["image"], dicom_case["label_map"], "--params", PARAMS, "-o", reference).returncode == 0
    ours, theirs = values_of(out, "GTV"), values_of(reference, "Label_1")
    assert ours.keys() == theirs.keys() and len(ours) > 100
    assert ours == theirs  # exactly: same voxels, same values
    dilated = values_of(out, "GTV+1")
    assert dilated["original_shape_VoxelVolume"] == pytest.approx(
        np.count_nonzero(sitk.GetArrayViewFromImage(dicom_case["dilated"])) * np.prod(dicom_case["gtv"].GetSpacing()))
    picked = tmp_path / "picked.csv"
    assert run_cli("extract", dicom_case["series"], dicom_case["rtstruct"], "--roi", "GTV+1", "--params", PARAMS,
                   "-o", picked).returncode == 0
    assert {r["segment"] for r in read_csv(picked)} == {"GTV+1"} and values_of(picked, "GTV+1") == dilated


def test_seg_extracts_as_the_label_map_and_the_report_references_it(dicom_case, tmp_path):
    """A SEG as MASK: the same features as the label map; --sr reports every value exactly (float64) and
    references the SEG given (no new SEG written)."""
    out, report = tmp_path / "seg.csv", tmp_path / "report.dcm"
    run = run_cli("extract", dicom_case["series"], dicom_case["seg"], "--params", PARAMS, "-o", out, "--sr", report)
    assert run.returncode == 0, run.stderr
    reference = tmp_path / "nifti.csv"
    assert run_cli("extract", dicom_case["image"], dicom_case["label_map"], "--params", PARAMS, "-o", reference).returncode == 0
    assert values_of(out, "GTV") == values_of(reference, "Label_1")
    assert not (tmp_path / "report.seg.dcm").exists()
    reported = {(m.segment, m.feature): m.value for m in read_measurement_report(report)}
    csv_values = {("GTV", f): v for f, v in values_of(out, "GTV").items()}
    assert reported.keys() == csv_values.keys()
    assert all(reported[k] == v or (np.isnan(reported[k]) and np.isnan(v)) for k, v in csv_values.items())


@needs_plastimatch
def test_report_of_rtstruct_features_writes_their_seg_and_dcmqi_reads_the_values(dicom_case, tmp_path):
    """--sr with an RTSTRUCT: REPORT.seg.dcm holds the rasterised ROIs (read back equal to the masks), the report
    references it, and dcmqi's tid1500reader (Slicer's Quantitative Reporting reader) gives the same values."""
    from RadiomicsLabLib.dicom import read_dicom_segments

    out, report = tmp_path / "rt.csv", tmp_path / "report.dcm"
    run = run_cli("extract", dicom_case["series"], dicom_case["rtstruct"], "--params", PARAMS, "-o", out, "--sr", report)
    assert run.returncode == 0, run.stderr
    seg = tmp_path / "report.seg.dcm"
    for segment, source in zip(read_dicom_segments(seg, dicom_case["series"]), (dicom_case["gtv"], dicom_case["dilated"])):
        assert np.array_equal(sitk.GetArrayFromImage(segment.mask), sitk.GetArrayFromImage(source) > 0), segment.name
    reported = {(m.segment, m.feature): m.value for m in read_measurement_report(report)}
    assert reported == {(r["segment"], r["feature"]): float(r["value"]) for r in read_csv(out)}
    reader = Path(sys.executable).with_name("tid1500reader")
    if not reader.exists():
        pytest.skip("dcmqi's tid1500reader is not installed (pip package dcmqi, in requirements.lock)")
    result = subprocess.run([str(reader), "--inputDICOM", str(report), "--outputMetadata", str(tmp_path / "sr.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    groups = json.loads((tmp_path / "sr.json").read_text())["Measurements"]
    dcmqi_values = sorted(float(item["value"]) for group in groups for item in group["measurementItems"])
    assert dcmqi_values == pytest.approx(sorted(reported.values()), rel=1e-12)


def test_report_of_label_map_features_on_a_dicom_series(dicom_case, tmp_path):
    """A label map drawn on the DICOM series' grid: its labels become SEG segments Label_N, reported exactly."""
    out, report = tmp_path / "lm.csv", tmp_path / "report.dcm"
    run = run_cli("extract", dicom_case["series"], dicom_case["label_map"], "--params", PARAMS, "-o", out, "--sr", report)
    assert run.returncode == 0, run.stderr
    reported = {(m.segment, m.feature): m.value for m in read_measurement_report(report)}
    assert reported == {(r["segment"], r["feature"]): float(r["value"]) for r in read_csv(out)}
    assert (tmp_path / "report.seg.dcm").is_file()


@pytest.mark.parametrize("case, expected", [
    ("nifti image", "give IMAGE as the folder of the DICOM series it was drawn on"),
    ("unknown roi", "PTV"),
    ("roi with label map", "--roi picks ROIs of a DICOM RTSTRUCT or SEG"),
    ("label with dicom", "--label and --resample-mask are for label maps"),
    ("sr without series", "--sr writes a DICOM report on the image's DICOM series"),
    ("sr onto the seg", "it is the mask this command reads"),
])
def test_bad_dicom_extraction_is_one_line_and_writes_nothing(dicom_case, tmp_path, case, expected):
    c = dicom_case
    out = tmp_path / "out.csv"
    arguments = {
        "nifti image": (c["image"], c["seg"]),
        "unknown roi": (c["series"], c["seg"], "--roi", "PTV"),
        "roi with label map": (c["image"], c["label_map"], "--roi", "GTV"),
        "label with dicom": (c["series"], c["seg"], "--label", "1"),
        "sr without series": (c["image"], c["label_map"], "--sr", tmp_path / "r.dcm"),
        "sr onto the seg": (c["series"], c["seg"], "--sr", c["seg"]),
    }[case]
    before = c["seg"].read_bytes()
    run = run_cli("extract", *arguments, "--params", PARAMS, "-o", out)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert expected in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not out.exists() and not (tmp_path / "r.dcm").exists() and c["seg"].read_bytes() == before
