"""DICOM SEG and SR TID 1500 written by RadiomicsLab, read back by independent readers.

Real data: the CT of sarcoma patient STS_001 (cut to a box around its GTV so the tests stay fast) written as a
DICOM CT series by ``dicom_data.write_series``; segments: its real GTV mask and the 0-3 mm peritumoral ring
RadiomicsLab's :func:`~RadiomicsLabLib.regions.ring` grows around it; features: RadiomicsLab's extraction on the
series as read from DICOM, with shipped presets (pyradiomics-default, IBSI configuration B).

Readers that are not RadiomicsLab's writer: highdicom (``segread`` / ``srread``), plain pydicom frame parsing,
DCMTK (``dcmdump``, ``dsrdump``), and where installed dcmqi, the library Slicer's Quantitative Reporting reads
SEG and SR with (``segimage2itkimage``, ``tid1500reader``; the ``dcmqi`` PyPI package).
"""

import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_data import crop_box, sts_paths, write_series, write_sts_series

from RadiomicsLabLib import __version__
from RadiomicsLabLib.dicom.sr import read_measurement_report, read_report_provenance, write_measurement_report
from RadiomicsLabLib.dicom.write import LESION, TISSUE, write_seg
from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.extraction import extract
from RadiomicsLabLib.imageio import read_image
from RadiomicsLabLib.regions import ring

GTV, RING = "GTV", "Ring 0-3 mm"
PRESETS = ("pyradiomics-default", "ibsi-B")
RED = (230, 25, 75)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The series, the two source masks, the SEG RadiomicsLab wrote of them, and features + SR per preset."""
    root = tmp_path_factory.mktemp("dicom_write")
    series, gtv = write_sts_series(root / "ct", margin=8, patient_id="STS")
    peritumoral = ring(gtv, 0.0, 3.0)
    masks = {GTV: gtv, RING: peritumoral}
    seg_path = write_seg([(GTV, gtv, *LESION, RED), (RING, peritumoral)], series.folder, root / "seg.dcm",
                         series_description="STS_001 GTV and ring")
    image = read_image(series.folder)  # what `radiomicslab extract` reads from the DICOM folder
    results, reports = {}, {}
    for preset in PRESETS:
        results[preset] = extract(image, gtv + 2 * peritumoral, {GTV: 1, RING: 2}, preset)
        reports[preset] = write_measurement_report(results[preset], seg_path, series.folder, root / f"sr_{preset}.dcm")
    return dict(root=root, series=series, masks=masks, seg=seg_path, results=results, reports=reports)


def arrays(case) -> dict:
    return {name: sitk.GetArrayFromImage(mask).astype(bool) for name, mask in case["masks"].items()}


# --- DICOM SEG ----------------------------------------------------------------------------------------------
def test_seg_masks_read_back_exactly_by_highdicom(case):
    import highdicom as hd

    seg = hd.seg.segread(case["seg"])
    assert [seg.get_segment_description(n).SegmentLabel for n in seg.get_segment_numbers()] == [GTV, RING]
    pixels = seg.get_pixels_by_source_instance(case["series"].sop_instance_uids, segment_numbers=[1, 2])
    expected = arrays(case)
    assert pixels.shape == (*expected[GTV].shape, 2)
    for number, name in enumerate((GTV, RING)):
        assert np.array_equal(pixels[..., number].astype(bool), expected[name]), name
    assert expected[GTV].sum() > 1000 and expected[RING].sum() > 1000  # real, non-trivial masks


def test_seg_frames_parsed_with_pydicom_match_source_masks_and_references(case):
    """Plain pydicom: each frame's segment number and source slice (Derivation Image reference) and position."""
    seg = pydicom.dcmread(case["seg"])
    series = case["series"]
    source = pydicom.dcmread(series.files[0])
    slice_of = {uid: k for k, uid in enumerate(series.sop_instance_uids)}
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    rebuilt = {n: np.zeros(sitk.GetArrayViewFromImage(series.image).shape, bool) for n in (1, 2)}
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        derivation = item.DerivationImageSequence[0]
        assert derivation.DerivationCodeSequence[0].CodeValue == "113076"  # Segmentation
        uid = derivation.SourceImageSequence[0].ReferencedSOPInstanceUID
        k = slice_of[uid]
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, series.image.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-4)
        rebuilt[number][k] = frame.astype(bool)
    expected = arrays(case)
    assert np.array_equal(rebuilt[1], expected[GTV]) and np.array_equal(rebuilt[2], expected[RING])
    # the source series' study, frame of reference and patient
    assert seg.StudyInstanceUID == series.study_uid and seg.FrameOfReferenceUID == series.frame_of_reference_uid
    assert (seg.PatientID, str(seg.PatientName)) == (source.PatientID, str(source.PatientName))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_uid
    assert {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} == set(slice_of)
    # segment attributes as Slicer's Quantitative Reporting reads them
    gtv, peritumoral = seg.SegmentSequence
    assert (gtv.SegmentLabel, peritumoral.SegmentLabel) == (GTV, RING)
    assert code(gtv.SegmentedPropertyCategoryCodeSequence[0]) == LESION[0]
    assert code(gtv.SegmentedPropertyTypeCodeSequence[0]) == LESION[1]
    assert code(peritumoral.SegmentedPropertyTypeCodeSequence[0]) == TISSUE[1]
    for item in (gtv, peritumoral):
        assert item.SegmentAlgorithmType == "AUTOMATIC" and item.SegmentAlgorithmName == "RadiomicsLab"
        assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == __version__
    import highdicom as hd

    assert hd.color.CIELabColor.from_dicom_value(gtv.RecommendedDisplayCIELabValue).to_rgb() == RED
    assert seg.SegmentationType == "BINARY" and seg.SoftwareVersions == __version__
    assert seg.SeriesDescription == "STS_001 GTV and ring"


def test_seg_has_the_required_attributes_for_dcmtk(case):
    dump = run(["dcmdump", "-q", str(case["seg"])])
    for attribute in ("SegmentationStorage", "SegmentSequence", "SegmentLabel", "SegmentedPropertyCategoryCodeSequence",
                      "SegmentedPropertyTypeCodeSequence", "RecommendedDisplayCIELabValue", "SegmentAlgorithmType",
                      "ReferencedSeriesSequence", "DerivationImageSequence", "SourceImageSequence",
                      "FrameOfReferenceUID", "DimensionIndexSequence", "PlanePositionSequence",
                      "SharedFunctionalGroupsSequence", "PixelMeasuresSequence", "ContentLabel"):
        assert attribute in dump, attribute
    assert f"[{GTV}]" in dump and f"[{RING}]" in dump and "[AUTOMATIC]" in dump


def test_seg_read_back_by_radiomicslab_reader(case):
    from RadiomicsLabLib.dicom import read_dicom_segments

    segments = read_dicom_segments(case["seg"], case["series"].folder)
    expected = arrays(case)
    assert [s.name for s in segments] == [GTV, RING]
    for segment in segments:
        assert np.array_equal(sitk.GetArrayFromImage(segment.mask).astype(bool), expected[segment.name])
    assert (segments[0].category, segments[0].type) == LESION


def test_seg_read_back_by_dcmqi(case, tmp_path):
    """dcmqi's segimage2itkimage (what Slicer's Quantitative Reporting loads SEG with): masks and attributes."""
    dcmqi = dcmqi_command("segimage2itkimage")
    run([*dcmqi, "--inputDICOM", str(case["seg"]), "--outputDirectory", str(tmp_path), "--outputType", "nrrd"])
    meta = json.loads((tmp_path / "meta.json").read_text())
    attributes = [group[0] for group in meta["segmentAttributes"]]
    assert [a["SegmentLabel"] for a in attributes] == [GTV, RING]
    assert attributes[0]["recommendedDisplayRGBValue"] == list(RED)
    assert code_json(attributes[0]["SegmentedPropertyTypeCodeSequence"]) == LESION[1]
    expected = arrays(case)
    reference = case["series"].image
    for number, name in ((1, GTV), (2, RING)):
        written = sitk.ReadImage(str(tmp_path / f"{number}.nrrd"))  # dcmqi's grid: the frames' extent
        on_grid = sitk.Resample(written, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        assert np.array_equal(sitk.GetArrayFromImage(on_grid) > 0, expected[name]), name


# --- DICOM SR TID 1500 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", PRESETS)
def test_sr_values_read_back_exactly(case, preset):
    """RadiomicsLab's reader and a plain highdicom parse: every value bit for bit (FD), names and segments kept."""
    import highdicom as hd

    values = case["results"][preset].values
    back = read_measurement_report(case["reports"][preset])
    assert [(r.segment, r.feature) for r in back] == [(v.segment, v.feature) for v in values]
    assert all(r.value == v.value for r, v in zip(back, values))  # float64 exact (Floating Point Value, FD)
    document = hd.sr.srread(case["reports"][preset])
    groups = document.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [GTV, RING]
    measured = [m for g in groups for m in g.get_measurements()]
    assert [m.value for m in measured] == [v.value for v in values]
    for m, v in zip(measured, values):  # Numeric Value (DS) agrees to its 16 characters
        assert math.isclose(float(m[0].MeasuredValueSequence[0].NumericValue), v.value, rel_tol=1e-10, abs_tol=1e-300)
    for group, segment_number in zip(groups, (1, 2)):
        assert group.referenced_segment.referenced_segment_numbers == [segment_number]
        assert group.referenced_segment.referenced_sop_instance_uid == pydicom.dcmread(case["seg"]).SOPInstanceUID


def test_sr_codes_and_units(case):
    """IBSI identifiers (scheme IBSI) where the engine records one, RadiomicsLab's private scheme otherwise; UCUM
    units: mm3 for volumes, Hounsfield units for CT intensities, "1" for texture features on grey levels."""
    from RadiomicsLabLib.ibsi.engine import FAMILIES, family_module

    registry = {tag: info for family in FAMILIES for tag, info in family_module(family).FEATURES.items()}
    units, private = {}, {}
    for preset in PRESETS:
        document = pydicom.dcmread(case["reports"][preset])
        items = [i for i in walk(document) if i.ValueType == "NUM"]
        values = case["results"][preset].values
        assert len(items) == len(values)
        for item, value in zip(items, values):
            concept = item.ConceptNameCodeSequence[0]
            ibsi_id = registry.get(value.ibsi_tag, {}).get("ibsi_id")
            if ibsi_id:
                assert (concept.CodeValue, concept.CodingSchemeDesignator) == (ibsi_id, "IBSI")
            else:
                assert concept.CodingSchemeDesignator == "99RADIOMICSLAB" and len(concept.CodeValue) <= 16
                assert concept.CodeMeaning == value.feature[:64]
                private.setdefault(concept.CodeValue, set()).add(value.feature)
            units[value.feature] = code(item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0])
        back = read_measurement_report(case["reports"][preset])
        assert [r.unit for r in back] == [units[v.feature][0] for v in values]
    assert private and all(len(features) == 1 for features in private.values())  # one code per feature
    assert units["original_shape_MeshVolume"] == units["morph_volume"] == ("mm3", "UCUM", "cubic millimeter")
    assert units["original_firstorder_Mean"] == units["stat_mean"] == ("[hnsf'U]", "UCUM", "Hounsfield unit")
    assert units["original_glcm_Contrast"] == ("1", "UCUM", "no units")
    assert units["original_shape_SurfaceVolumeRatio"][0] == "/mm"
    # an IBSI texture feature carries its aggregation as the measurement method (ITBB: 3D, averaged)
    document = pydicom.dcmread(case["reports"]["pyradiomics-default"])
    contrast = next(i for i in walk(document) if i.ValueType == "NUM" and tracking(i) == "original_glcm_Contrast")
    assert code(contrast.ConceptNameCodeSequence[0])[:2] == (registry["cm_contrast_3D_avg"]["ibsi_id"], "IBSI")
    method = next(i for i in contrast.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "370129005")
    assert code(method.ConceptCodeSequence[0])[:2] == ("ITBB", "IBSI")


def test_sr_settings_and_references(case):
    preset = "ibsi-B"
    provenance = json.loads(json.dumps(case["results"][preset].provenance, default=str))
    assert read_report_provenance(case["reports"][preset]) == provenance
    document = pydicom.dcmread(case["reports"][preset])
    series = case["series"]
    assert document.StudyInstanceUID == series.study_uid and document.PatientID == "STS"
    evidence_series = document.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    evidence = {i.ReferencedSOPInstanceUID for s in evidence_series for i in s.ReferencedSOPSequence}
    assert evidence == {*series.sop_instance_uids, pydicom.dcmread(case["seg"]).SOPInstanceUID}
    names = [i.TextValue for i in walk(document)
             if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == "111001"]
    assert names == ["RadiomicsLab", "RadiomicsLab"]  # Algorithm Name of each group


@pytest.mark.parametrize("preset", PRESETS)
def test_sr_parsed_by_dcmtk_dsrdump(case, preset):
    done = subprocess.run(["dsrdump", str(case["reports"][preset])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not re.search(r"^[EW]:", done.stderr, re.M), done.stderr
    assert "Comprehensive 3D SR" in done.stdout and "Imaging Measurement Report" in done.stdout
    assert f'"Tracking Identifier")="{GTV}"' in done.stdout and f'"Tracking Identifier")="{RING}"' in done.stdout
    document = pydicom.dcmread(case["reports"][preset])
    shown = [str(i.MeasuredValueSequence[0].NumericValue) for i in walk(document) if i.ValueType == "NUM"]
    assert re.findall(r'<contains NUM:\(,,"[^"]*"\)="([^"]+)"', done.stdout) == shown
    values = case["results"][preset].values
    assert all(math.isclose(float(s), v.value, rel_tol=1e-10, abs_tol=1e-300) for s, v in zip(shown, values))


def test_sr_read_by_dcmqi(case, tmp_path):
    """dcmqi's tid1500reader (Slicer's Quantitative Reporting): the groups, segments and every value."""
    dcmqi = dcmqi_command("tid1500reader")
    preset = "pyradiomics-default"
    out = tmp_path / "sr.json"
    run([*dcmqi, "--inputDICOM", str(case["reports"][preset]), "--outputMetadata", str(out)])
    groups = json.loads(out.read_text())["Measurements"]
    assert [(g["TrackingIdentifier"], g["ReferencedSegment"]) for g in groups] == [(GTV, 1), (RING, 2)]
    assert groups[0]["measurementAlgorithmIdentification"]["AlgorithmName"] == "RadiomicsLab"
    read = [float(item["value"]) for g in groups for item in g["measurementItems"]]
    values = case["results"][preset].values
    assert len(read) == len(values)
    assert all(math.isclose(r, v.value, rel_tol=1e-10, abs_tol=1e-300) for r, v in zip(read, values))


def test_sr_not_a_number_round_trip(case, tmp_path):
    """NaN (an undefined feature) has no DS form: written as the 'Not a number' qualifier, read back as NaN.
    Made case: one real value replaced by NaN."""
    values = list(case["results"]["ibsi-B"].values)
    values[3] = dataclasses.replace(values[3], value=float("nan"))
    path = write_measurement_report(values, case["seg"], case["series"].folder, tmp_path / "nan.dcm")
    back = read_measurement_report(path)
    assert math.isnan(back[3].value) and back[3].unit is None and back[3].feature == values[3].feature
    assert [b.value for i, b in enumerate(back) if i != 3] == [v.value for i, v in enumerate(values) if i != 3]
    item = [i for i in walk(pydicom.dcmread(path)) if i.ValueType == "NUM"][3]
    assert item.NumericValueQualifierCodeSequence[0].CodeValue == "114000"
    assert subprocess.run(["dsrdump", str(path)], capture_output=True, timeout=120).returncode == 0


# --- bad inputs: one clear line, nothing written --------------------------------------------------------------
def test_bad_inputs_raise_one_line_and_write_nothing(case, tmp_path):
    series, masks = case["series"], case["masks"]
    out = tmp_path / "out.dcm"
    empty = sitk.Image(masks[GTV])
    empty = empty * 0
    shifted = sitk.Image(masks[GTV])
    shifted.SetOrigin([o + 5.0 for o in masks[GTV].GetOrigin()])
    smaller = masks[GTV][:, :, :-1]
    labels = masks[GTV] * 2
    not_dicom = tmp_path / "empty_folder"
    not_dicom.mkdir()
    cases = [
        (lambda: write_seg([(GTV, empty)], series.folder, out), "is empty"),
        (lambda: write_seg([(GTV, shifted)], series.folder, out), "not on the source series' grid"),
        (lambda: write_seg([(GTV, smaller)], series.folder, out), "not on the source series' grid"),
        (lambda: write_seg([(GTV, labels)], series.folder, out), "values other than 0 and 1"),
        (lambda: write_seg([(GTV, masks[GTV]), (GTV, masks[RING])], series.folder, out), "more than once"),
        (lambda: write_seg([(GTV, masks[GTV])], tmp_path / "missing", out), "does not exist or is not a folder"),
        (lambda: write_seg([(GTV, masks[GTV])], not_dicom, out), "no DICOM series"),
        (lambda: write_measurement_report(case["results"]["ibsi-B"], case["seg"], not_dicom, out), "no DICOM series"),
        (lambda: write_measurement_report(case["results"]["ibsi-B"], series.files[0], series.folder, out),
         "not a DICOM SEG"),
        (lambda: write_measurement_report([dataclasses.replace(case["results"]["ibsi-B"].values[0], segment="Liver")],
                                          case["seg"], series.folder, out), "'Liver' of the features is not in the SEG"),
    ]
    for call, message in cases:
        with pytest.raises(RadiomicsLabError, match=re.escape(message)) as error:
            call()
        assert "\n" not in str(error.value)
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty_folder"]  # no temporary file left


def test_output_that_is_an_input_is_refused(case, tmp_path):
    series, masks = case["series"], case["masks"]
    first = series.files[0]
    before, seg_before = first.read_bytes(), case["seg"].read_bytes()
    with pytest.raises(RadiomicsLabError, match="it is the source series file"):
        write_seg([(GTV, masks[GTV])], series.folder, first)
    with pytest.raises(RadiomicsLabError, match="it is the SEG"):
        write_measurement_report(case["results"]["ibsi-B"], case["seg"], series.folder, case["seg"])
    with pytest.raises(RadiomicsLabError, match="it is the source series file"):
        write_measurement_report(case["results"]["ibsi-B"], case["seg"], series.folder, first)
    assert first.read_bytes() == before and case["seg"].read_bytes() == seg_before


def test_seg_of_another_series_is_refused_for_the_report(case, tmp_path):
    other = write_series(sts_paths("STS_002", "CT")[0], tmp_path / "other", "CT",
                         box=crop_box(sts_paths("STS_002", "CT")[1], margin=2))
    with pytest.raises(RadiomicsLabError, match="does not reference the series"):
        write_measurement_report(case["results"]["ibsi-B"], case["seg"], other.folder, tmp_path / "sr.dcm")
    assert not (tmp_path / "sr.dcm").exists()


# --- helpers --------------------------------------------------------------------------------------------------
def code(item) -> tuple:
    return (str(item.get("CodeValue", item.get("LongCodeValue", ""))), item.CodingSchemeDesignator, item.CodeMeaning)


def code_json(item: dict) -> tuple:
    return item["CodeValue"], item["CodingSchemeDesignator"], item["CodeMeaning"]


def walk(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from walk(item)


def tracking(item) -> str | None:
    found = [i.TextValue for i in item.get("ContentSequence", []) if i.ConceptNameCodeSequence[0].CodeValue == "112039"]
    return str(found[0]) if found else None


def run(command) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command[0]} failed: {done.stderr[-2000:]}"
    return done.stdout


def dcmqi_command(tool: str) -> list:
    """The dcmqi tool (the ``dcmqi`` package's own, or one on PATH); skipped with the reason when absent."""
    try:
        import dcmqi  # noqa: F401
    except ImportError:
        path = shutil.which(tool)
        if path is None:
            pytest.skip(f"dcmqi is not installed (pip install dcmqi gives {tool}); Slicer's reader not checked")
        return [path]
    return [sys.executable, "-c", f"import sys; from dcmqi import {tool}; sys.argv[0] = '{tool}'; sys.exit({tool}())",]
