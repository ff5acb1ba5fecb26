"""DICOM RTSTRUCT and SEG masks on the command line (issue #19): ``maps``, ``rings`` and ``observers`` take them
wherever a MASK is accepted (IMAGE the DICOM series folder, ``--roi`` picks ROIs), and ``rings`` / ``observers``
write their masks as DICOM SEG with ``--seg``.

Real data (Testing/dicom_data.py): the CT of sarcoma patient STS_001 (maps, rings) and the MR T1 of STS_002
(observers), each cut to its GTV's box plus 5 voxels and written as a DICOM series; the same cut image and GTV
are written as NIfTI files, so every DICOM run has a label-map twin. The GTV is written as an RTSTRUCT by
plastimatch (``convert --input-ss-img``: contours on the voxel edges, read back exactly) and as a SEG by highdicom.
There is no second reader in the shared data: the two "readers" of the observer tests are the real GTV eroded and
dilated by one voxel (6-connected structuring element, scipy.ndimage), said so here.
Every command runs in this process through ``RadiomicsLabLib.cli.main`` (what the console script calls).
"""

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_data import crop, crop_box, sts_paths, write_rtstruct_independently, write_seg_independently, write_series
from pydicom.sr.codedict import codes
from scipy import ndimage
from test_bad_inputs import run_in_process
from test_bad_inputs_files import snapshot

from RadiomicsLabLib.dicom import read_dicom_segments
from RadiomicsLabLib.dicom.write import LESION, TISSUE

pytestmark = pytest.mark.skipif(shutil.which("plastimatch") is None,
                                reason="plastimatch is not on PATH (Debian package plastimatch; make test installs it)")
MARGIN = 5
MAP_FEATURES = "firstorder_Mean,firstorder_Variance,firstorder_Entropy"
AGREEMENT = ("dice", "jaccard", "volume_a_mm3", "volume_b_mm3", "hausdorff_mm", "hd95_mm", "msd_mm")


def array(image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def on_grid(array_zyx, reference) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def write_case(root, patient, modality, rois):
    """The series (DICOM), the same cut image as NIfTI, and each ROI as a NIfTI label map, one plastimatch RTSTRUCT
    per ROI, one RTSTRUCT holding them all and a highdicom SEG of the first. ``rois``: name -> function of the GTV
    array."""
    image_path, mask_path = sts_paths(patient, modality)
    box = crop_box(mask_path, MARGIN)
    series = write_series(image_path, root / "series", "CT" if modality == "CT" else "MR", patient_id=patient, box=box)
    sitk.WriteImage(crop(image_path, box), str(root / "image.nii.gz"))
    gtv = array(crop(mask_path, box)) > 0
    masks = {name: on_grid(make(gtv), series.image) for name, make in rois.items()}
    files = {}
    for name, mask in masks.items():
        sitk.WriteImage(mask, str(root / f"{name}.nii.gz"))
        files[name] = write_rtstruct_independently(series, {name: mask}, root / f"{name}_rt.dcm", writer="plastimatch")
    files["all"] = write_rtstruct_independently(series, masks, root / "all_rt.dcm", writer="plastimatch")
    first = next(iter(masks))
    files["seg"] = write_seg_independently(series, [(first, masks[first], (codes.SCT.Tissue, codes.SCT.Neoplasm))],
                                           root / f"{first}_seg.dcm")
    for name, mask in masks.items():  # the RTSTRUCTs are exact, so the DICOM and label-map runs see one mask
        assert np.array_equal(array(read_dicom_segments(files[name], series.folder)[0].mask), array(mask))
    return series, masks, files


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_cli_ct")
    series, masks, files = write_case(root, "STS_001", "CT", {"GTV": lambda gtv: gtv,
                                                              "GTV_grown": lambda gtv: ndimage.binary_dilation(gtv)})
    return root, series, masks, files


@pytest.fixture(scope="module")
def mr(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_cli_mr")
    series, masks, files = write_case(root, "STS_002", "MR_T1", {"reader_eroded": ndimage.binary_erosion,
                                                                 "reader_dilated": ndimage.binary_dilation})
    return root, series, masks, files


def ok(argv, capfd) -> str:
    code, out, err = run_in_process(argv, capfd)
    assert code == 0, err
    return err


def refused(argv, capfd, cwd, *fragments):
    """Exit 2, one error line naming the problem, nothing written in ``cwd`` (where the outputs would go)."""
    before = snapshot(cwd)
    code, out, err = run_in_process(argv, capfd)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("radiomicslab: error: "), err
    assert all(f in lines[0] for f in fragments), (fragments, lines[0])
    assert snapshot(cwd) == before, "something was written"


def read_map(folder, name) -> np.ndarray:
    return array(sitk.ReadImage(str(folder / name)))


# maps ----------------------------------------------------------------------------------------------
def test_maps_of_rtstruct_and_seg_equal_the_label_map_maps(ct, capfd, tmp_path):
    root, series, _, files = ct
    common = ["-f", MAP_FEATURES]
    ok(["maps", root / "image.nii.gz", root / "GTV.nii.gz", *common, "-o", tmp_path / "labelmap"], capfd)
    ok(["maps", series.folder, files["GTV"], *common, "-o", tmp_path / "rtstruct"], capfd)
    err = ok(["maps", series.folder, files["all"], "--roi", "GTV", *common, "-o", tmp_path / "roi"], capfd)
    assert "Segment 'GTV'" in err
    ok(["maps", series.folder, files["seg"], *common, "-o", tmp_path / "seg"], capfd)
    names = sorted(p.name for p in (tmp_path / "labelmap").glob("*.nrrd"))
    assert names == ["ih_entropy.nrrd", "stat_mean.nrrd", "stat_var.nrrd"]
    gtv = array(ct[2]["GTV"]).astype(bool)
    for name in names:
        reference = read_map(tmp_path / "labelmap", name)
        assert np.isfinite(reference[gtv]).all() and np.isnan(reference[~gtv]).all()
        for run in ("rtstruct", "roi", "seg"):
            np.testing.assert_array_equal(read_map(tmp_path / run, name), reference)  # voxel for voxel
    for run, segment in (("labelmap", "Label_1"), ("rtstruct", "GTV"), ("roi", "GTV"), ("seg", "GTV")):
        provenance = json.loads((tmp_path / run / "maps.json").read_text())
        assert provenance["inputs"]["mask_file"]["segment"] == segment and provenance["settings"]["label"] == 1
    with open(tmp_path / "rtstruct" / "summary.csv") as dicom, open(tmp_path / "labelmap" / "summary.csv") as labels:
        assert list(csv.DictReader(dicom)) == list(csv.DictReader(labels))


# rings ---------------------------------------------------------------------------------------------
def test_rings_of_rtstruct_equal_rings_of_the_label_map_and_seg_reads_back(ct, capfd, tmp_path):
    root, series, masks, files = ct
    ok(["rings", root / "GTV.nii.gz", "--from", "-2", "--to", "5", "-o", tmp_path / "labelmap.nrrd"], capfd)
    ok(["rings", series.folder, files["all"], "--roi", "GTV", "--from", "-2", "--to", "5", "-o", tmp_path / "dicom.nrrd",
        "--seg", tmp_path / "ring.dcm"], capfd)
    ring = read_map(tmp_path, "labelmap.nrrd")
    gtv = array(masks["GTV"]).astype(bool)
    assert ring.sum() > 0 and ring[gtv].any() and ring[~gtv].any()  # across the border
    np.testing.assert_array_equal(read_map(tmp_path, "dicom.nrrd"), ring)
    (segment,) = read_dicom_segments(tmp_path / "ring.dcm", series.folder)
    assert segment.name == "Ring -2 to +5 mm" and (segment.category, segment.type) == TISSUE
    np.testing.assert_array_equal(array(segment.mask), ring)
    # a SEG in, only --seg out, clipped by the grown GTV of the RTSTRUCT
    ok(["rings", series.folder, files["seg"], "--from", "0", "--to", "5", "--clip", files["all"], "--clip-roi",
        "GTV_grown", "--seg", tmp_path / "clipped.dcm"], capfd)
    ok(["rings", root / "GTV.nii.gz", "--from", "0", "--to", "5", "--clip", root / "GTV_grown.nii.gz",
        "-o", tmp_path / "clipped.nrrd"], capfd)
    (clipped,) = read_dicom_segments(tmp_path / "clipped.dcm", series.folder)
    expected = read_map(tmp_path, "clipped.nrrd")
    assert expected.sum() == (array(masks["GTV_grown"]).astype(bool) & ~gtv).sum()  # the 1-voxel shell
    np.testing.assert_array_equal(array(clipped.mask), expected)


# observers -----------------------------------------------------------------------------------------
def agreement_rows(folder) -> list:
    with open(folder / "agreement.csv") as handle:
        return [{k: row[k] for k in ("observer_a", "observer_b", *AGREEMENT)} for row in csv.DictReader(handle)]


def assert_same_numbers(rows, expected, exact=()):
    """Equal rows: text columns and ``exact`` columns as written, numbers within 1e-6 relative. The DICOM series
    stores the spacing with 6 decimals (0.976562 mm for the NIfTI's 0.9765620231628418 mm), so volumes and
    distances in mm differ from the label maps' by ~1e-7 relative; voxel counts, Dice and Jaccard do not."""
    assert [list(r) for r in rows] == [list(r) for r in expected]
    for row, reference in zip(rows, expected):
        for key, value in reference.items():
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is None or key in exact:
                assert row[key] == value, key
            else:
                assert float(row[key]) == pytest.approx(number, rel=1e-6, abs=1e-12), key


def csv_rows(path) -> list:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_observers_of_rtstructs_equal_the_label_maps(mr, capfd, tmp_path):
    """Agreement of the eroded and dilated GTV (two made readers, see the module) from two RTSTRUCTs, from two
    ROIs of one RTSTRUCT and from label maps: the same numbers; the consensus SEG reads back as the consensus
    label maps, voxel for voxel."""
    root, series, masks, files = mr
    ok(["observers", root / "image.nii.gz", root / "reader_eroded.nii.gz", root / "reader_dilated.nii.gz",
        "--lesion", "STS_002", "-o", tmp_path / "labelmaps"], capfd)
    # an RTSTRUCT per reader
    ok(["observers", series.folder, files["reader_eroded"], files["reader_dilated"], "--names", "reader_eroded,reader_dilated",
        "--lesion", "STS_002", "-o", tmp_path / "per_reader", "--seg", tmp_path / "consensus.dcm"], capfd)
    # the readers' ROIs of one RTSTRUCT, named after their ROIs
    ok(["observers", series.folder, files["all"], "--roi", "reader_eroded", "--roi", "reader_dilated", "--no-features",
        "-o", tmp_path / "one_file"], capfd)
    expected = agreement_rows(tmp_path / "labelmaps")
    eroded, dilated = (array(masks[n]).astype(bool) for n in ("reader_eroded", "reader_dilated"))
    assert float(expected[0]["dice"]) == pytest.approx(2 * eroded.sum() / (eroded.sum() + dilated.sum()))
    for run in ("per_reader", "one_file"):
        assert_same_numbers(agreement_rows(tmp_path / run), expected, exact=("dice", "jaccard"))
    features = csv_rows(tmp_path / "labelmaps" / "features.csv")
    assert len(features) > 100
    assert_same_numbers(csv_rows(tmp_path / "per_reader" / "features.csv"), features)
    provenance = json.loads((tmp_path / "one_file" / "observers.provenance.json").read_text())
    masks_in = provenance["inputs"][0]["masks"]
    assert {n: m["roi"] for n, m in masks_in.items()} == {"reader_eroded": "reader_eroded", "reader_dilated": "reader_dilated"}
    segments = {s.name: s for s in read_dicom_segments(tmp_path / "consensus.dcm", series.folder)}
    assert list(segments) == ["Consensus (STAPLE)", "Consensus (majority vote)"]
    for name, file in (("Consensus (STAPLE)", "consensus_staple.nrrd"), ("Consensus (majority vote)", "consensus_majority.nrrd")):
        assert (segments[name].category, segments[name].type) == LESION
        np.testing.assert_array_equal(array(segments[name].mask), read_map(tmp_path / "labelmaps", file))


# bad inputs ----------------------------------------------------------------------------------------
def test_bad_dicom_inputs_exit_2_with_one_line_and_write_nothing(ct, capfd, tmp_path, monkeypatch):
    root, series, _, files = ct
    monkeypatch.chdir(tmp_path)
    maps = ["-f", "firstorder_Mean", "-o", "maps"]
    refused(["maps", root / "image.nii.gz", files["GTV"], *maps], capfd, tmp_path,
            "is a DICOM segmentation", "folder of the DICOM series")
    refused(["maps", series.folder, files["all"], "--roi", "Tumour", *maps], capfd, tmp_path,
            "has no ROI named 'Tumour'", "'GTV', 'GTV_grown'")
    refused(["maps", root / "image.nii.gz", root / "GTV.nii.gz", "--roi", "GTV", *maps], capfd, tmp_path,
            "--roi picks ROIs of a DICOM RTSTRUCT or SEG", "--label")
    refused(["maps", series.folder, files["all"], *maps], capfd, tmp_path, "'GTV' and 'GTV_grown'", "overlap", "--roi")
    refused(["rings", series.folder, files["all"], "--from", "0", "--to", "2", "-o", "ring.nrrd"], capfd, tmp_path,
            "overlap", "pick one of them with --roi")
    refused(["rings", root / "GTV.nii.gz", "--from", "0", "--to", "2", "--seg", "ring.dcm"], capfd, tmp_path,
            "--seg writes a DICOM SEG", "give IMAGE as the folder")
    refused(["rings", root / "image.nii.gz", root / "GTV.nii.gz", "--from", "0", "--to", "2", "--seg", "ring.dcm"],
            capfd, tmp_path, "--seg writes a DICOM SEG", "image.nii.gz")
    refused(["rings", series.folder, files["GTV"], "--from", "0", "--to", "2", "--seg", series.files[0]], capfd, tmp_path,
            "it is the source series file")
    refused(["observers", root / "image.nii.gz", root / "GTV.nii.gz", root / "GTV_grown.nii.gz", "--no-features",
             "-o", "agreement", "--seg", "consensus.dcm"], capfd, tmp_path, "--seg writes a DICOM SEG")
    refused(["observers", series.folder, files["all"], "--roi", "GTV", "--roi", "Tumour", "--no-features", "-o", "agreement"],
            capfd, tmp_path, "has no ROI named 'Tumour'")
    refused(["observers", series.folder, files["GTV"], files["GTV_grown"], files["seg"], "--roi", "GTV", "--roi", "GTV",
             "--no-features", "-o", "agreement"], capfd, tmp_path, "--roi gives 2 ROI names for 3 masks")
