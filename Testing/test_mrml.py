"""Headless MRML layer: loading, exact geometry (LPS vs RAS), segments, .mrb round trip, Logic errors."""

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.mrml import ExtractionLogic
from RadiomicsLabLib.mrml.app import new_headless_app
from RadiomicsLabLib.mrml.convert import ijk_to_ras, segment_ids, segment_name, segment_to_sitk, volume_to_sitk

from conftest import read_sitk


def oblique(image):
    """The real image with a rotated (oblique) direction, as in an angled MR acquisition."""
    rotated = sitk.Image(image)
    rotation = sitk.VersorTransform((0.2, -0.3, 0.9), 0.4).GetMatrix()
    rotated.SetDirection(rotation)
    return rotated


def same_geometry(a, b, exact=True):
    pairs = [(a.GetSize(), b.GetSize()), (a.GetSpacing(), b.GetSpacing()), (a.GetOrigin(), b.GetOrigin()),
             (a.GetDirection(), b.GetDirection())]
    return all(x == y if exact else np.allclose(x, y, rtol=0, atol=1e-9) for x, y in pairs)


@pytest.mark.parametrize("make", [lambda im: im, oblique], ids=["axial", "oblique"])
def test_volume_round_trip_is_exact_and_ras(brain1, scene, make):
    from RadiomicsLabLib.mrml.convert import sitk_to_volume_node

    image = make(read_sitk(brain1[0]))
    node = sitk_to_volume_node(image, "brain1", scene)
    back = volume_to_sitk(node)
    assert same_geometry(image, back) and sitk.Hash(back) == sitk.Hash(image)
    assert back.GetPixelID() == image.GetPixelID()
    # The same voxel lands on the same physical point: ITK's LPS point = diag(-1,-1,1) * MRML's RAS point.
    ijk = (17, 203, 11)
    ras = ijk_to_ras(node) @ np.array([*ijk, 1.0])
    lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
    assert np.allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)


def two_label_mask(label_path):
    """The real brain1 tumour mask split at its middle slice into labels 1 (inferior) and 2 (superior)."""
    mask = read_sitk(label_path)
    array = sitk.GetArrayFromImage(mask)
    middle = int(np.median(np.nonzero(array)[0]))
    split = array.copy()
    split[middle:][array[middle:] == 1] = 2
    result = sitk.GetImageFromArray(split)
    result.CopyInformation(mask)
    return result


def test_label_map_becomes_one_named_segment_per_label(brain1, scene, tmp_path):
    mask = two_label_mask(brain1[1])
    sitk.WriteImage(mask, str(tmp_path / "two.nii.gz"))
    logic = ExtractionLogic(scene)
    volume = logic.load_volume(brain1[0])
    segmentation = logic.load_segmentation(tmp_path / "two.nii.gz", volume)
    ids = segment_ids(segmentation)
    assert [segment_name(segmentation, i) for i in ids] == ["Label_1", "Label_2"]
    assert [segmentation.GetSegmentation().GetSegment(i).GetLabelValue() for i in ids] == [1, 2]
    expected = sitk.GetArrayFromImage(mask)
    for label, segment_id in zip((1, 2), ids):
        exported = segment_to_sitk(segmentation, segment_id, volume)
        assert same_geometry(exported, mask)
        assert np.array_equal(sitk.GetArrayFromImage(exported), (expected == label).astype(np.uint8))


@pytest.mark.parametrize("make", [lambda im: im, oblique], ids=["axial", "oblique"])
def test_a_label_map_is_imported_from_its_labels_box_as_slicer_imports_the_whole_map(brain1, scene, make):
    """``import_label_map`` hands Slicer only the bounding box of the labels where the segmentation has its reference
    geometry (the results of habitats, rings and consensus land that way): its segments are those of Slicer's own
    import of the whole map, voxel for voxel and extent for extent; with ``value``, the one segment of that label;
    without a reference geometry, the whole map goes in (the same segments again)."""
    from vtk.util.numpy_support import vtk_to_numpy

    from RadiomicsLabLib.mrml.convert import (import_label_map, label_map_to_segmentation_node, sitk_to_volume_node,
                                              update_volume_from_sitk)

    image = make(read_sitk(brain1[0]))
    mask = two_label_mask(brain1[1])
    mask.CopyInformation(image)
    expected = sitk.GetArrayFromImage(mask)
    volume = sitk_to_volume_node(image, "brain1", scene)

    def segmentation(geometry: bool = True):
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        if geometry:
            node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        return node

    def labelmaps(node) -> list:
        """Per segment: its label value, its binary labelmap's extent and voxels, and its export on the volume's grid."""
        found = []
        for segment_id in segment_ids(node):
            segment = node.GetSegmentation().GetSegment(segment_id)
            labelmap = segment.GetRepresentation("Binary labelmap")
            found.append((segment.GetLabelValue(), labelmap.GetExtent(),
                          vtk_to_numpy(labelmap.GetPointData().GetScalars()).tobytes(),
                          sitk.GetArrayFromImage(segment_to_sitk(node, segment_id, volume)).tobytes()))
        return found

    slicers = {}
    for geometry in (True, False):
        whole = segmentation(geometry)
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            update_volume_from_sitk(slicer.vtkMRMLLabelMapVolumeNode(), mask), whole)
        slicers[geometry] = labelmaps(whole)
        boxed = segmentation(geometry)
        assert import_label_map(mask, boxed)
        assert len(slicers[geometry]) == 2 and labelmaps(boxed) == slicers[geometry]
        for (_, extent, _, exported), label in zip(labelmaps(boxed), (1, 2)):
            assert exported == (expected == label).astype(np.uint8).tobytes()
            assert extent[1] - extent[0] < image.GetSize()[0] // 2    # Slicer keeps the labels' box
    # a new segmentation without a reference volume is placed on the label map's own grid: the volume's here
    own = label_map_to_segmentation_node(mask, "own grid", scene)
    geometry = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    assert own.GetSegmentation().GetConversionParameter(geometry) == \
        segmentation().GetSegmentation().GetConversionParameter(geometry)
    assert labelmaps(own) == slicers[True]
    one = segmentation()
    assert import_label_map(mask, one, value=2)
    [(_, _, _, exported)] = labelmaps(one)
    assert exported == (expected == 2).astype(np.uint8).tobytes()
    empty = segmentation()
    assert import_label_map(mask * 0, empty) and segment_ids(empty) == []


def test_seg_nrrd_round_trip(brain1, scene, tmp_path):
    logic = ExtractionLogic(scene)
    volume = logic.load_volume(brain1[0])
    segmentation = logic.load_segmentation(brain1[1], volume)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(tmp_path / "tumour.seg.nrrd"))
    assert storage.WriteData(segmentation)
    reloaded = logic.load_segmentation(tmp_path / "tumour.seg.nrrd", volume)
    assert reloaded.GetName() == "tumour"
    assert [segment_name(reloaded, i) for i in segment_ids(reloaded)] == ["Label_1"]
    a = segment_to_sitk(segmentation, segment_ids(segmentation)[0], volume)
    b = segment_to_sitk(reloaded, segment_ids(reloaded)[0], volume)
    assert sitk.Hash(a) == sitk.Hash(b)


def write_dicom_series(image, folder):
    """Write a real volume as an MR DICOM series, one file per slice (SimpleITK/GDCM)."""
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.4242"
    for z in range(image.GetDepth()):
        slice_ = image[:, :, z]
        tags = {
            "0008|0060": "MR", "0020|000e": series_uid, "0020|000d": series_uid + ".1",
            "0008|0018": f"{series_uid}.2.{z + 1}", "0020|0013": str(z + 1),
            "0020|0032": "\\".join(f"{v:.10f}" for v in image.TransformIndexToPhysicalPoint((0, 0, z))),
            "0020|0037": "\\".join(f"{v:.10f}" for v in (*direction[0::3], *direction[1::3])),
            "0018|0050": f"{image.GetSpacing()[2]:.10f}",
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(slice_)


def test_dicom_series_folder_loads_as_volume(brain1, scene, tmp_path):
    image = read_sitk(brain1[0])
    write_dicom_series(image, tmp_path / "series")
    volume = ExtractionLogic(scene).load_volume(tmp_path / "series", name="brain1 DICOM")
    loaded = volume_to_sitk(volume)
    assert volume.IsA("vtkMRMLScalarVolumeNode") and volume.GetName() == "brain1 DICOM"
    # DICOM readers stack slices along the slice normal, so brain1's left-handed voxel order comes
    # back as the right-handed one: the same voxels at the same physical points.
    assert np.allclose(loaded.GetSpacing(), image.GetSpacing(), atol=1e-6)
    on_original_grid = sitk.Resample(loaded, image, sitk.Transform(), sitk.sitkNearestNeighbor)
    assert np.array_equal(sitk.GetArrayFromImage(on_original_grid), sitk.GetArrayFromImage(image))


def test_mrb_round_trip_keeps_voxels_segments_and_table(brain1, tmp_path):
    logic = ExtractionLogic(new_headless_app().scene)
    volume = logic.load_volume(brain1[0])
    segmentation = logic.load_segmentation(two_label_path(brain1, tmp_path), volume)
    table = logic.extract(volume, segmentation)
    logic.save_scene(tmp_path / "study.mrb")

    again = ExtractionLogic(new_headless_app().scene)
    again.load_scene(tmp_path / "study.mrb")
    volume2 = again.scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
    segmentation2 = again.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    table2 = again.scene.GetFirstNodeByClass("vtkMRMLTableNode")
    a, b = volume_to_sitk(volume), volume_to_sitk(volume2)
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)) and a.GetPixelID() == b.GetPixelID()
    # Slicer's NRRD writer rounds the geometry to the last bit or so (it stores spacing x direction).
    assert same_geometry(a, b, exact=False)
    names = [segment_name(segmentation, s) for s in segment_ids(segmentation)]
    assert [segment_name(segmentation2, s) for s in segment_ids(segmentation2)] == names == ["Label_1", "Label_2"]
    for s1, s2 in zip(segment_ids(segmentation), segment_ids(segmentation2)):
        m1, m2 = segment_to_sitk(segmentation, s1, volume), segment_to_sitk(segmentation2, s2, volume2)
        assert np.array_equal(sitk.GetArrayFromImage(m1), sitk.GetArrayFromImage(m2))
    assert again.feature_values(table2) == logic.feature_values(table)  # exact doubles
    assert again.provenance(table2) == logic.provenance(table)
    assert table2.GetName() == table.GetName()


def two_label_path(brain1, tmp_path):
    path = tmp_path / "two_labels.nrrd"
    sitk.WriteImage(two_label_mask(brain1[1]), str(path))
    return path


def test_extraction_records_provenance(brain1, scene):
    logic = ExtractionLogic(scene)
    volume = logic.load_volume(brain1[0])
    table = logic.extract(volume, logic.load_segmentation(brain1[1], volume))
    provenance = logic.provenance(table)
    assert provenance["software"]["pyradiomics-bhklab"] and provenance["software"]["slicer-core"]
    assert provenance["settings"]["source"] == "pyradiomics-default"
    assert provenance["settings"]["effective"]["setting"]["binWidth"] == 25
    assert provenance["image"]["sha1"] == sitk.Hash(read_sitk(brain1[0]))
    assert provenance["image"]["spacing"] == list(read_sitk(brain1[0]).GetSpacing())
    assert provenance["segments"]["Label_1"]["label"] == 1


def node_count(scene):
    return scene.GetNumberOfNodes()


def test_logic_bad_inputs_leave_the_scene_unchanged(brain1, scene):
    logic = ExtractionLogic(scene)
    volume = logic.load_volume(brain1[0])
    segmentation = logic.load_segmentation(brain1[1], volume)
    before = node_count(scene)
    with pytest.raises(RadiomicsLabError, match="must be a vtkMRMLScalarVolumeNode; got nothing"):
        logic.extract(None, segmentation)
    with pytest.raises(RadiomicsLabError, match="must be a vtkMRMLSegmentationNode; got a vtkMRMLScalarVolumeNode"):
        logic.extract(volume, volume)
    with pytest.raises(RadiomicsLabError, match="has no segment Tumour; its segments are: Label_1"):
        logic.extract(volume, segmentation, ["Tumour"])
    with pytest.raises(RadiomicsLabError, match="Unknown setting 'binWidht'"):
        logic.extract(volume, segmentation, settings={"setting": {"binWidht": 3}})
    empty_id = segmentation.GetSegmentation().AddEmptySegment("empty")
    with pytest.raises(RadiomicsLabError, match="no voxels with label 1; labels present: none"):
        logic.extract(volume, segmentation, [empty_id])
    segmentation.GetSegmentation().RemoveSegment(empty_id)
    assert node_count(scene) == before


def test_nan_inside_segment_is_refused(brain1, scene):
    from RadiomicsLabLib.mrml.convert import sitk_to_volume_node

    image = sitk.Cast(read_sitk(brain1[0]), sitk.sitkFloat32)
    mask = sitk.GetArrayFromImage(read_sitk(brain1[1]))
    array = sitk.GetArrayFromImage(image)
    array[tuple(np.argwhere(mask == 1)[0])] = np.nan
    with_nan = sitk.GetImageFromArray(array)
    with_nan.CopyInformation(image)
    logic = ExtractionLogic(scene)
    volume = sitk_to_volume_node(with_nan, "nan", scene)
    segmentation = logic.load_segmentation(brain1[1], volume)
    before = node_count(scene)
    with pytest.raises(RadiomicsLabError, match="1 NaN or infinite voxel"):
        logic.extract(volume, segmentation)
    assert node_count(scene) == before


def test_progress_reports_and_cancel(brain1, scene, tmp_path):
    from RadiomicsLabLib.extraction import ExtractionCancelled

    logic = ExtractionLogic(scene)
    volume = logic.load_volume(brain1[0])
    segmentation = logic.load_segmentation(two_label_path(brain1, tmp_path), volume)
    seen = []
    logic.extract(volume, segmentation, progress=lambda done, total, name: seen.append((done, total, name)))
    assert seen == [(1, 2, "Label_1"), (2, 2, "Label_2")]
    before = node_count(scene)
    with pytest.raises(ExtractionCancelled):
        logic.extract(volume, segmentation, progress=lambda *args: False)
    assert node_count(scene) == before
