"""DICOM RTSTRUCT and SEG in the scene (issue #19): segmentation nodes from them, and DICOM SEG from a node.

Real data: the shared sarcoma patient STS_001's CT written as a DICOM series (Testing/dicom_data.py, cropped to its
GTV plus 3 voxels), an RTSTRUCT of two ROIs written by rt-utils (an independent writer) from the real GTV and from
the GTV dilated by 2 voxels ("GTV+2vox", overlapping the GTV, as a PTV does), and a SEG of the GTV written by
highdicom (with an orange RecommendedDisplayCIELabValue added), both files placed in the series folder as a PACS
export does. Every segment's labelmap is compared with ``read_dicom_segments``' mask voxel for voxel; a saved
``.mrb`` and a written SEG must give them back.
"""

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_data import crop, crop_box, sts_paths, write_rtstruct_independently, write_seg_independently, write_series
from pydicom.sr.codedict import codes

from RadiomicsLabLib.dicom import read_dicom_segments
from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.imageio import read_image

ROIS = ("GTV", "GTV+2vox")
#: RecommendedDisplayCIELabValue given to the SEG's segment: orange (RGB 255, 165, 0) as DICOM stores it.
SEG_COLOUR_LAB = (49107, 39048, 53188)


def array(image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


@pytest.fixture(scope="module")
def export(tmp_path_factory, data):
    """(series, folder holding the series + RTSTRUCT + SEG, RTSTRUCT path, SEG path, clean series-only folder)."""
    image_path, mask_path = sts_paths("STS_001", "CT")
    box = crop_box(mask_path, 3)
    root = tmp_path_factory.mktemp("dicom_scene")
    series = write_series(image_path, root / "clean", "CT", patient_id="STS_001", box=box)
    gtv = crop(mask_path, box)
    margin = sitk.BinaryDilate(gtv, [2, 2, 2])
    rtstruct = write_rtstruct_independently(series, {ROIS[0]: gtv, ROIS[1]: margin}, root / "gtv_rtstruct.dcm")
    seg = write_seg_independently(series, [("GTV", gtv, (codes.SCT.Tissue, codes.SCT.Neoplasm))], root / "gtv_seg.dcm")
    with_colour = pydicom.dcmread(seg)  # the test writer gives no colour: add the one a PACS viewer would show
    with_colour.SegmentSequence[0].RecommendedDisplayCIELabValue = list(SEG_COLOUR_LAB)
    with_colour.save_as(seg)
    folder = root / "export"
    shutil.copytree(series.folder, folder)
    shutil.copyfile(rtstruct, folder / "RS_gtv.dcm")
    shutil.copyfile(seg, folder / "SEG_gtv.dcm")
    return series, folder, folder / "RS_gtv.dcm", folder / "SEG_gtv.dcm", root / "clean"


def segments_of(node) -> dict:
    segmentation = node.GetSegmentation()
    return {segmentation.GetNthSegment(i).GetName(): segmentation.GetNthSegmentID(i)
            for i in range(segmentation.GetNumberOfSegments())}


def node_count(scene) -> int:
    return scene.GetNumberOfNodes()


def test_series_folder_with_its_rtstruct_and_seg_reads_as_the_series(export):
    """A PACS export (slices + RTSTRUCT + SEG in one folder) reads as the series alone; a damaged slice beside them is
    still refused."""
    series, folder, _, _, clean = export
    image, alone = read_image(folder), read_image(clean)
    assert image.GetSize() == alone.GetSize() == series.image.GetSize()
    assert image.GetOrigin() == alone.GetOrigin() and image.GetSpacing() == alone.GetSpacing()
    assert np.array_equal(array(image), array(alone))
    damaged = folder.parent / "damaged"
    shutil.copytree(folder, damaged)
    data = (damaged / "slice_0010.dcm").read_bytes()
    (damaged / "slice_0010.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(RadiomicsLabError, match="slice_0010.dcm' in the folder given as image is not a readable slice"):
        read_image(damaged)


@pytest.mark.parametrize("kind", ["RTSTRUCT", "SEG"])
def test_dicom_segmentation_node_equals_read_dicom_segments(scene, export, kind):
    from RadiomicsLabLib.mrml.convert import segment_to_sitk, segmentation_volume, volume_to_sitk
    from RadiomicsLabLib.mrml.scenefiles import TERMINOLOGY_TAG, load_dicom_segmentation, segment_tag

    _, folder, rtstruct, seg, _ = export
    path = rtstruct if kind == "RTSTRUCT" else seg
    volume, node = load_dicom_segmentation(scene, path, folder)
    assert np.array_equal(array(volume_to_sitk(volume)), array(read_image(folder)))
    assert segmentation_volume(node) is volume  # the series' volume is the reference geometry
    expected = read_dicom_segments(path, folder)
    ids = segments_of(node)
    assert list(ids) == [s.name for s in expected] == (list(ROIS) if kind == "RTSTRUCT" else ["GTV"])
    for segment in expected:
        mask = segment_to_sitk(node, ids[segment.name], volume)
        assert mask.GetSize() == segment.mask.GetSize()
        assert array(mask).sum() > 1000
        assert np.array_equal(array(mask), array(segment.mask)), segment.name  # voxel for voxel
    header = pydicom.dcmread(path)
    first = node.GetSegmentation().GetSegment(ids["GTV"])
    if kind == "RTSTRUCT":
        colours = {int(c.ReferencedROINumber): [int(v) for v in c.ROIDisplayColor] for c in header.ROIContourSequence}
        for segment in expected:
            got = node.GetSegmentation().GetSegment(ids[segment.name]).GetColor()
            assert [round(255 * c) for c in got] == colours[segment.number]
        assert segment_tag(first, "RadiomicsLab.DICOMKind") == "RTSTRUCT"
    else:
        import highdicom as hd

        assert [int(v) for v in header.SegmentSequence[0].RecommendedDisplayCIELabValue] == list(SEG_COLOUR_LAB)
        assert hd.color.CIELabColor.from_dicom_value(SEG_COLOUR_LAB).to_rgb() == (255, 165, 0)
        assert [round(255 * c) for c in first.GetColor()] == [255, 165, 0]
        assert segment_tag(first, TERMINOLOGY_TAG) == (
            "Segmentation category and type - DICOM master list~SCT^85756007^Tissue~SCT^108369006^Neoplasm"
            "~^^~Anatomic codes - DICOM master list~^^~^^")
        assert segment_tag(first, "RadiomicsLab.DICOMKind") == "BINARY"
        assert segment_tag(first, "RadiomicsLab.DICOMNumber") == "1"


def test_saved_study_restores_the_dicom_segments(scene, export, tmp_path):
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.convert import segment_to_sitk, segmentation_volume
    from RadiomicsLabLib.mrml.scenefiles import (TERMINOLOGY_TAG, load_dicom_segmentation, load_scene, save_scene,
                                                 segment_tag)
    from RadiomicsLabLib.web.loader import nodes_of

    _, folder, rtstruct, seg, _ = export
    volume, rt_node = load_dicom_segmentation(scene, rtstruct, folder, name="RTSTRUCT")
    _, seg_node = load_dicom_segmentation(scene, seg, folder, volume_node=volume, name="SEG")
    colours = {name: node.GetSegmentation().GetSegment(i).GetColor()
               for node in (rt_node, seg_node) for name, i in segments_of(node).items()}
    save_scene(scene, tmp_path / "study.mrb")
    restored = load_scene(new_headless_app().scene, tmp_path / "study.mrb")
    nodes = {n.GetName(): n for n in nodes_of(restored, "vtkMRMLSegmentationNode")}
    assert set(nodes) == {"RTSTRUCT", "SEG"}
    for name, path in (("RTSTRUCT", rtstruct), ("SEG", seg)):
        node = nodes[name]
        ids = segments_of(node)
        reference = segmentation_volume(node)
        assert reference is not None and reference.GetName() == volume.GetName()
        for segment in read_dicom_segments(path, folder):
            assert np.array_equal(array(segment_to_sitk(node, ids[segment.name], reference)), array(segment.mask))
            if name == "SEG":
                assert colours[segment.name] == pytest.approx(node.GetSegmentation().GetSegment(ids["GTV"]).GetColor())
                assert "SCT^108369006^Neoplasm" in segment_tag(node.GetSegmentation().GetSegment(ids["GTV"]),
                                                                TERMINOLOGY_TAG)


def test_segmentation_node_written_as_seg_reads_back_equal(scene, export, tmp_path):
    """The RTSTRUCT's two overlapping ROIs, as a node, written as a DICOM SEG of the series: the SEG reads back with
    the same names, masks (voxel for voxel), colours (within CIELab rounding) and coded properties."""
    from RadiomicsLabLib.mrml.convert import segment_to_sitk
    from RadiomicsLabLib.mrml.scenefiles import load_dicom_segmentation, write_dicom_segmentation

    _, folder, rtstruct, seg, _ = export
    volume, node = load_dicom_segmentation(scene, rtstruct, folder)
    ids = segments_of(node)
    written = write_dicom_segmentation(node, folder, tmp_path / "from_node_seg.dcm")
    back = read_dicom_segments(written, folder)
    assert [s.name for s in back] == list(ROIS)
    for segment in back:
        assert segment.kind == "BINARY"
        assert np.array_equal(array(segment.mask), array(segment_to_sitk(node, ids[segment.name], volume)))
    header = pydicom.dcmread(written, stop_before_pixels=True)
    import highdicom as hd

    for item in header.SegmentSequence:
        got = hd.color.CIELabColor.from_dicom_value(tuple(int(v) for v in item.RecommendedDisplayCIELabValue)).to_rgb()
        want = [round(255 * c) for c in node.GetSegmentation().GetSegment(ids[item.SegmentLabel]).GetColor()]
        assert np.abs(np.subtract(got, want)).max() <= 2, (item.SegmentLabel, got, want)
    # The SEG node keeps its coded type through the round trip; one segment can be picked by name.
    _, seg_node = load_dicom_segmentation(scene, seg, folder, volume_node=volume)
    (again,) = read_dicom_segments(write_dicom_segmentation(seg_node, folder, tmp_path / "again.dcm", volume,
                                                            ["GTV"]), folder)
    assert (again.category, again.type) == (("85756007", "SCT", "Tissue"), ("108369006", "SCT", "Neoplasm"))


def test_dicom_segmentation_errors_leave_the_scene_unchanged(scene, export, tmp_path):
    from RadiomicsLabLib.mrml.scenefiles import load_dicom_segmentation, load_volume, write_dicom_segmentation

    _, folder, rtstruct, _, _ = export
    image_path, mask_path = sts_paths("STS_001", "CT")
    other = write_series(image_path, tmp_path / "other", "CT", box=crop_box(mask_path, 3))  # same pixels, new UIDs
    before = node_count(scene)
    with pytest.raises(RadiomicsLabError, match="references series .* but the folder .* holds series"):
        load_dicom_segmentation(scene, rtstruct, other.folder)
    assert node_count(scene) == before
    with pytest.raises(RadiomicsLabError, match="has no ROI named 'PTV'; it has 'GTV', 'GTV\\+2vox'"):
        load_dicom_segmentation(scene, rtstruct, folder, rois=["PTV"])
    assert node_count(scene) == before
    sitk.WriteImage(sitk.Image(10, 10, 10, sitk.sitkInt16), str(tmp_path / "small.nrrd"))
    small = load_volume(scene, tmp_path / "small.nrrd")
    before = node_count(scene)
    with pytest.raises(RadiomicsLabError, match="The volume 'small' is not the series 'RS_gtv.dcm' was read onto"):
        load_dicom_segmentation(scene, rtstruct, folder, volume_node=small)
    assert node_count(scene) == before
    volume, node = load_dicom_segmentation(scene, rtstruct, folder)
    with pytest.raises(RadiomicsLabError, match="has no segment 'PTV'"):
        write_dicom_segmentation(node, folder, tmp_path / "no.dcm", volume, ["PTV"])
    with pytest.raises(RadiomicsLabError, match="not on the source series' grid"):  # exported on another grid
        write_dicom_segmentation(node, folder, tmp_path / "no.dcm", small)
    assert not (tmp_path / "no.dcm").exists()
