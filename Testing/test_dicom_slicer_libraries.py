"""The DICOM SEG and SR writers and the DICOM readers with desktop Slicer 5.10's DICOM libraries (issue #19).

Desktop Slicer 5.10 ships pydicom 2.4.4, so RadiomicsLab's requirements.txt installs highdicom 0.22.0 there (every
later highdicom needs pydicom 3); the headless runtime (.venv) has pydicom 3.0 and highdicom 0.28.
``RadiomicsLabLib/dicom/compat.py`` handles their differences. Here the same script (:data:`SCRIPT`, RadiomicsLabLib
imported from this source tree) runs in both environments:

- ``.venv`` (pydicom 3, highdicom 0.28, Python 3.11) and ``.venv-slicer312`` (test_desktop_install's fixture: Python
  3.12, Slicer 5.10's numpy 2.0.2 / scipy 1.13.1 / SimpleITK 2.5.2 / pydicom 2.4.4, then requirements.txt, which
  resolves to highdicom 0.22.0) each write a SEG of the real GTV of sarcoma patient STS_001 on its CT written as a
  DICOM series (``dicom_data.write_series``, in .venv) and a TID 1500 SR of real feature values of it (RadiomicsLab's
  extraction, pyradiomics-default and IBSI configuration B, plus a NaN);
- each environment reads back both SEGs, both SRs and an RTSTRUCT with RadiomicsLab's readers: masks must equal the
  GTV voxel for voxel, values the extracted ones bit for bit, and the two SRs' content trees must match (UIDs and
  times aside).

Unproven here: desktop Slicer itself (not installable from a registry): its Python is stood in for by Python 3.12
with Slicer 5.10's pinned numpy, scipy, SimpleITK and pydicom from PyPI (Slicer builds its own SimpleITK fork and VTK
9.5.2; slicer-core from PyPI brings VTK 9.6), and Slicer's own DICOM browser / Quantitative Reporting are not run
on these files: dcmqi, the library Quantitative Reporting reads SEG and SR with, reads both environments' files
(from PyPI, where installed; not the dcmqi build inside Slicer's extension).
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_data import write_rtstruct_contours, write_sts_series
from test_desktop_install import slicer312_python  # noqa: F401 - the fixture, reused: .venv-slicer312

from RadiomicsLabLib import dependencies
from RadiomicsLabLib.dicom.write import DEFAULT_COLORS, LESION
from RadiomicsLabLib.extraction import extract

ROOT = Path(__file__).resolve().parent.parent
GTV = "GTV"
RED = (230, 25, 75)
#: Reported besides the first three of each feature class: a volume (mm3) and a CT intensity (Hounsfield units).
NAMED = ("original_shape_MeshVolume", "original_firstorder_Mean", "morph_volume", "stat_mean")
#: The highdicom requirements.txt resolves to beside Slicer 5.10's pydicom 2.4.4 (test_desktop_install checks it).
SLICER_HIGHDICOM = "0.22.0"

#: Run as ``python SCRIPT ROOT CASE write NAME`` (write CASE/NAME/seg.dcm and sr.dcm) or ``... read NAME`` (read
#: every CASE/*/seg.dcm, sr.dcm and CASE/rtstruct.dcm with RadiomicsLab's readers into CASE/read-NAME/).
SCRIPT = r'''
import json, sys
from pathlib import Path
root, case, mode, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
sys.path.insert(0, str(root))
import numpy, pydicom, highdicom, scipy, SimpleITK as sitk
import RadiomicsLabLib
assert Path(RadiomicsLabLib.__file__).resolve().parent == root / "RadiomicsLabLib", RadiomicsLabLib.__file__
from RadiomicsLabLib.dicom import read_dicom_segments
from RadiomicsLabLib.dicom.sr import read_measurement_report, read_report_provenance, write_measurement_report
from RadiomicsLabLib.dicom.write import LESION, write_seg
from RadiomicsLabLib.extraction import FeatureValue

shown = {"python": list(sys.version_info[:2]), "numpy": numpy.__version__, "scipy": scipy.__version__,
         "SimpleITK": sitk.Version.VersionString(), "pydicom": pydicom.__version__, "highdicom": highdicom.__version__}
series = case / "ct"
if mode == "write":
    out = case / name
    out.mkdir()
    gtv = sitk.ReadImage(str(case / "gtv.nrrd"))
    seg = write_seg([("GTV", gtv, *LESION, (230, 25, 75))], series, out / "seg.dcm", series_description="STS_001 GTV")
    features = json.loads((case / "features.json").read_text())
    for preset, rows in features["values"].items():
        values = [FeatureValue(*row[:5], float.fromhex(row[5])) for row in rows]
        write_measurement_report(values, seg, series, out / f"sr_{preset}.dcm", features["provenance"][preset])
else:
    out = case / f"read-{name}"
    out.mkdir()
    read = {}
    for folder in sorted(p for p in case.iterdir() if p.is_dir() and (p / "seg.dcm").is_file()):
        segments = read_dicom_segments(folder / "seg.dcm", series)
        for s in segments:
            numpy.save(out / f"{folder.name}-seg-{s.number}.npy", sitk.GetArrayFromImage(s.mask))
        read[folder.name] = {
            "segments": [[s.name, s.number, s.category, s.type, s.kind] for s in segments],
            "reports": {p.name: {"features": [[f.segment, f.feature, float.hex(f.value), f.unit]
                                              for f in read_measurement_report(p)],
                                 "provenance": read_report_provenance(p)}
                        for p in sorted(folder.glob("sr_*.dcm"))}}
    rois = read_dicom_segments(case / "rtstruct.dcm", series)
    for s in rois:
        numpy.save(out / f"rtstruct-{s.number}.npy", sitk.GetArrayFromImage(s.mask))
    shown |= {"read": read, "rtstruct": [s.name for s in rois]}
shown["numpy_float_"] = hasattr(numpy, "float_")  # numpy itself is left as it is
print(json.dumps(shown))
'''


def run_script(python: str, case: Path, mode: str, name: str) -> dict:
    result = subprocess.run([python, "-c", SCRIPT, str(ROOT), str(case), mode, name], capture_output=True, text=True,
                            timeout=600, cwd=case)
    assert result.returncode == 0, f"{name} ({mode}) failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def case(tmp_path_factory, slicer312_python):  # noqa: F811 - the imported fixture
    """STS_001's CT as a DICOM series, its GTV, an RTSTRUCT and real features, written in .venv; SEG + SR written
    by .venv (pydicom 3 + highdicom 0.28) and by .venv-slicer312 (Slicer 5.10's pydicom 2.4.4 + highdicom 0.22);
    then each environment reads all of them."""
    root = tmp_path_factory.mktemp("dicom_slicer")
    series, gtv = write_sts_series(root / "ct", margin=4, patient_id="STS")
    sitk.WriteImage(gtv, str(root / "gtv.nrrd"))
    # RTSTRUCT: a rectangle on three slices, in voxel index coordinates (the reader fills voxel centres inside)
    size = gtv.GetSize()
    k0 = size[2] // 2
    square = [(2, 3), (size[0] - 4, 3), (size[0] - 4, size[1] - 5), (2, size[1] - 5)]
    write_rtstruct_contours(series, {"Box": [(k, square) for k in (k0 - 1, k0, k0 + 1)]}, root / "rtstruct.dcm")
    values, provenance = {}, {}
    for preset in ("pyradiomics-default", "ibsi-B"):
        result = extract(series.image, gtv, {GTV: 1}, preset)
        by_class = {}
        for v in result.values:  # a few real values of every feature class
            by_class.setdefault(v.feature_class, []).append(v)
        chosen = [v for group in by_class.values() for v in group[:3]]
        chosen += [v for v in result.values if v.feature in NAMED and v not in chosen]
        values[preset] = [[*v.row()[:5], float.hex(float(v.value))] for v in chosen]
        provenance[preset] = json.loads(json.dumps(result.provenance, default=str))
    values["pyradiomics-default"].append([GTV, "original", "firstorder", "original_firstorder_Kurtosis", "",
                                          float.hex(math.nan)])  # a value without a DS form (qualifier 114000)
    (root / "features.json").write_text(json.dumps({"values": values, "provenance": provenance}))
    written = {"venv": run_script(sys.executable, root, "write", "venv"),
               "slicer": run_script(slicer312_python, root, "write", "slicer")}
    read = {"slicer": run_script(slicer312_python, root, "read", "slicer"),
            "venv": run_script(sys.executable, root, "read", "venv")}
    return dict(root=root, series=series, gtv=sitk.GetArrayFromImage(gtv), values=values, provenance=provenance,
                written=written, read=read)


def test_the_environments_have_the_libraries_compared(case):
    slicer, venv = case["read"]["slicer"], case["read"]["venv"]
    assert slicer["python"] == list(dependencies.MINIMUM_SLICER_PYTHON)
    for name in ("numpy", "scipy", "SimpleITK", "pydicom"):
        assert slicer[name] == dependencies.SLICER_5_10_VERSIONS[name], name
    assert slicer["highdicom"] == SLICER_HIGHDICOM
    assert int(venv["pydicom"].split(".")[0]) == 3 and tuple(map(int, venv["highdicom"].split(".")[:2])) >= (0, 28)
    # highdicom 0.22's numpy-1 alias is given to highdicom.seg.sop only: numpy 2 stays without float_
    assert not any(run["numpy_float_"] for runs in (case["written"], case["read"]) for run in runs.values())


@pytest.mark.parametrize("reader", ["slicer", "venv"])
@pytest.mark.parametrize("writer", ["slicer", "venv"])
def test_seg_masks_read_back_voxel_for_voxel(case, writer, reader):
    read = case["read"][reader]["read"][writer]
    assert read["segments"] == [[GTV, 1, list(LESION[0]), list(LESION[1]), "BINARY"]]
    mask = np.load(case["root"] / f"read-{reader}" / f"{writer}-seg-1.npy")
    assert mask.shape == case["gtv"].shape and case["gtv"].sum() > 1000
    assert np.array_equal(mask, case["gtv"]), (writer, reader)


@pytest.mark.parametrize("reader", ["slicer", "venv"])
@pytest.mark.parametrize("writer", ["slicer", "venv"])
@pytest.mark.parametrize("preset", ["pyradiomics-default", "ibsi-B"])
def test_sr_values_read_back_exactly(case, preset, writer, reader):
    report = case["read"][reader]["read"][writer]["reports"][f"sr_{preset}.dcm"]
    written = case["values"][preset]
    assert [f[:2] for f in report["features"]] == [[v[0], v[3]] for v in written]
    assert [f[2] for f in report["features"]] == [v[5] for v in written]  # float.hex: bit for bit, NaN kept
    assert report["provenance"] == case["provenance"][preset]
    units = {f[1]: f[3] for f in report["features"]}
    if preset == "pyradiomics-default":
        assert units["original_shape_MeshVolume"] == "mm3" and units["original_firstorder_Kurtosis"] is None
        assert units["original_firstorder_Mean"] == "[hnsf'U]"
    else:
        assert units["morph_volume"] == "mm3" and units["stat_mean"] == "[hnsf'U]"
    reference = case["read"]["venv"]["read"]["venv"]["reports"][f"sr_{preset}.dcm"]
    assert report["features"] == reference["features"]  # units too


def test_rtstruct_reads_the_same_with_both_libraries(case):
    slicer, venv = (np.load(case["root"] / f"read-{r}" / "rtstruct-1.npy") for r in ("slicer", "venv"))
    assert case["read"]["slicer"]["rtstruct"] == case["read"]["venv"]["rtstruct"] == ["Box"]
    assert slicer.sum() > 100 and np.count_nonzero(slicer.any(axis=(1, 2))) == 3
    assert np.array_equal(slicer, venv)


def test_seg_attributes_are_the_same_from_both_libraries(case):
    """Segment description, references and frames of the two SEGs (UIDs of the SEGs themselves aside)."""
    import pydicom

    slicer, venv = (pydicom.dcmread(case["root"] / w / "seg.dcm") for w in ("slicer", "venv"))
    assert normalised(slicer.SegmentSequence[0]) == normalised(venv.SegmentSequence[0])
    assert list(slicer.SegmentSequence[0].RecommendedDisplayCIELabValue) == list(
        venv.SegmentSequence[0].RecommendedDisplayCIELabValue)
    for attribute in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "SegmentationType", "Rows", "Columns",
                      "NumberOfFrames", "ContentLabel", "SeriesDescription", "SOPClassUID"):
        assert slicer.get(attribute) == venv.get(attribute), attribute
    assert referenced_instances(slicer) == referenced_instances(venv) == set(case["series"].sop_instance_uids)
    assert frames_by_source(slicer) == frames_by_source(venv)


def test_sr_documents_are_the_same_from_both_libraries(case):
    """The TID 1500 content trees (concepts, codes, units, values, references) are the same, UIDs and times aside;
    the referenced segment's source images are the same instances."""
    import pydicom

    for preset in ("pyradiomics-default", "ibsi-B"):
        slicer, venv = (pydicom.dcmread(case["root"] / w / f"sr_{preset}.dcm") for w in ("slicer", "venv"))
        assert normalised(slicer, content=True) == normalised(venv, content=True)
        segs = {w: pydicom.dcmread(case["root"] / w / "seg.dcm").SOPInstanceUID for w in ("slicer", "venv")}
        assert source_images(slicer) == {segs["slicer"], *source_images(venv)} - {segs["venv"]}
        sources = source_images(venv) - {segs["venv"]}  # the CT slices holding the GTV
        assert segs["venv"] in source_images(venv) and sources <= set(case["series"].sop_instance_uids)
        assert len(sources) == np.count_nonzero(case["gtv"].any(axis=(1, 2)))
        for attribute in ("SOPClassUID", "StudyInstanceUID", "CompletionFlag", "VerificationFlag", "Modality"):
            assert slicer.get(attribute) == venv.get(attribute), attribute


@pytest.mark.parametrize("writer", ["slicer", "venv"])
def test_dcmqi_reads_the_seg_and_sr_of_both_libraries(case, writer, tmp_path):
    """dcmqi (what Slicer's Quantitative Reporting reads SEG and SR with): the one-segment SEG (per-frame segment
    identification from highdicom 0.22, shared from 0.28) gives the GTV, the SR the values (DS, 16 characters)."""
    from test_dicom_write import dcmqi_command, run

    run([*dcmqi_command("segimage2itkimage"), "--inputDICOM", str(case["root"] / writer / "seg.dcm"),
         "--outputDirectory", str(tmp_path), "--outputType", "nrrd"])
    reference = sitk.ReadImage(str(case["root"] / "gtv.nrrd"))
    written = sitk.ReadImage(str(tmp_path / "1.nrrd"))  # dcmqi's grid: the frames' extent
    on_grid = sitk.Resample(written, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert np.array_equal(sitk.GetArrayFromImage(on_grid) > 0, case["gtv"] > 0)
    out = tmp_path / "sr.json"
    run([*dcmqi_command("tid1500reader"), "--inputDICOM", str(case["root"] / writer / "sr_ibsi-B.dcm"),
         "--outputMetadata", str(out)])
    groups = json.loads(out.read_text())["Measurements"]
    assert [(g["TrackingIdentifier"], g["ReferencedSegment"]) for g in groups] == [(GTV, 1)]
    read = [float(item["value"]) for g in groups for item in g["measurementItems"]]
    values = [float.fromhex(v[5]) for v in case["values"]["ibsi-B"]]
    assert len(read) == len(values)
    assert all(math.isclose(r, v, rel_tol=1e-10, abs_tol=1e-300) for r, v in zip(read, values))


def test_cielab_of_rgb_is_highdicom_0_28s():
    """compat.cielab_value (used with either highdicom) gives highdicom 0.28's CIELabColor.from_rgb values."""
    import highdicom as hd

    from RadiomicsLabLib.dicom.compat import cielab_value

    grid = range(0, 256, 15)
    colors = [*DEFAULT_COLORS, RED, *((r, g, b) for r in grid for g in grid for b in grid)]
    for color in colors:
        assert cielab_value(color) == list(hd.color.CIELabColor.from_rgb(*color).value), color


# helpers --------------------------------------------------------------------------------------------------------
def normalised(dataset, content: bool = False):
    """A dataset as nested plain values, without UIDs, dates and times (different in every file); ``content``: only
    the SR content tree (ConceptNameCodeSequence, ContentSequence, ...), not the modules around it."""
    from pydicom.multival import MultiValue

    keep = None
    if content:
        keep = {"ConceptNameCodeSequence", "ContentSequence", "ValueType", "ContinuityOfContent",
                "ContentTemplateSequence"}
    out = {}
    for element in dataset:
        keyword = element.keyword or str(element.tag)
        if (keep is not None and keyword not in keep) or "UID" in keyword or keyword.endswith(("Date", "Time")):
            continue
        if element.VR == "SQ":
            out[keyword] = [normalised(item) for item in element.value]
        else:
            value = element.value
            out[keyword] = [str(v) for v in value] if isinstance(value, (list, tuple, MultiValue)) else str(value)
    return out


def referenced_instances(seg) -> set:
    return {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}


def frames_by_source(seg) -> dict:
    """Source instance UID -> (frame bytes) of each frame: the same frames, whatever their order in the file."""
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    sources = [item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
               for item in seg.PerFrameFunctionalGroupsSequence]
    return {uid: frame.astype(bool).tobytes() for uid, frame in zip(sources, frames)}


def source_images(document) -> set:
    """The SOP Instance UIDs of the source images (IMAGE items) referenced under the measurement groups."""
    found = set()

    def walk(item):
        for child in item.get("ContentSequence", []):
            if child.get("ValueType") == "IMAGE":
                found.update(str(r.ReferencedSOPInstanceUID) for r in child.ReferencedSOPSequence)
            walk(child)

    walk(document)
    return found
