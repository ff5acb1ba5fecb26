"""Loading images, label maps, segmentations and DICOM RTSTRUCT / SEG into a scene; writing DICOM SEG; saving and
loading ``.mrb`` studies."""

import os
import tempfile
import zipfile
from pathlib import Path

import slicer

from ..errors import RadiomicsLabError
from ..fileio import atomic_output
from ..imageio import read_image
from ..validation import check_mask_is_label_map
from .convert import (add_segment_from_mask, label_map_to_segmentation_node, segment_ids, segment_to_sitk,
                      segmentation_volume, sitk_to_volume_node)

#: Segment tag holding a segment's coded category and type, as Slicer's terminologies and its DICOM SEG plugin
#: (Quantitative Reporting) write it: ``context~scheme^value^meaning (category)~scheme^value^meaning (type)~...``.
TERMINOLOGY_TAG = "TerminologyEntry"
#: Terminology context of codes read from a DICOM file (Slicer's name for the DICOM codes).
DICOM_TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
#: Other segment tags a DICOM segmentation's segments get: ROINumber / SegmentNumber, the file's kind of
#: segment (RTSTRUCT, BINARY, FRACTIONAL) and its ROI / segment description.
DICOM_NUMBER_TAG, DICOM_KIND_TAG, DICOM_DESCRIPTION_TAG = ("RadiomicsLab.DICOMNumber", "RadiomicsLab.DICOMKind",
                                                           "RadiomicsLab.DICOMDescription")


def node_name_from_path(path) -> str:
    """``/x/brain1_image.nii.gz`` -> ``brain1_image``; ``case.seg.nrrd`` -> ``case``."""
    name = Path(path).name
    for suffix in (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".mhd", ".nhdr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def load_volume(scene, path, name: str | None = None):
    """Load an image file or DICOM series folder as a ``vtkMRMLScalarVolumeNode``.

    Read with SimpleITK, the same reader the core and pyradiomics use, so geometry is identical
    whichever way an image enters the extraction.
    """
    image = read_image(path, "image")
    return sitk_to_volume_node(image, name or node_name_from_path(path), scene)


def load_segmentation(scene, path, name: str | None = None, reference_volume_node=None):
    """Load a ``.seg.nrrd`` segmentation, or a label map file (one segment ``Label_N`` per label value)."""
    path = Path(path)
    name = name or node_name_from_path(path)
    if path.name.lower().endswith(".seg.nrrd") and path.is_file():
        return _read_seg_nrrd(scene, path, name, reference_volume_node)
    label_map = check_mask_is_label_map(read_image(path, "label map"), where=f"label map '{path}'")
    return label_map_to_segmentation_node(label_map, name, scene, reference_volume_node)


def _read_seg_nrrd(scene, path: Path, name: str, reference_volume_node):
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        raise RadiomicsLabError(f"'{path}' is not a segmentation Slicer can read; give a .seg.nrrd or a label map.")
    if reference_volume_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    node.CreateDefaultDisplayNodes()
    return node


def load_dicom_segmentation(scene, mask_path, image_folder, volume_node=None, rois=None, name: str | None = None):
    """An RTSTRUCT or DICOM SEG as a ``vtkMRMLSegmentationNode``: one segment per ROI / segment (``rois``: the
    names to take, default all), named by its ROIName / SegmentLabel, coloured by the file's ROIDisplayColor /
    RecommendedDisplayCIELabValue, with the coded category and type in the ``TerminologyEntry`` tag (SEG) and
    :data:`DICOM_NUMBER_TAG`, :data:`DICOM_KIND_TAG`, :data:`DICOM_DESCRIPTION_TAG`.

    ``image_folder``: the folder of the DICOM series the file references. ``volume_node``: that series' volume
    node (the segmentation's reference geometry); None loads the folder as a new volume node. Everything is read
    and checked before the scene is touched; returns (volume node, segmentation node).
    """
    segmentation = read_dicom_segmentation(mask_path, image_folder, rois)
    if volume_node is not None:
        _check_volume_is_series(volume_node, segmentation)
    added = []
    try:
        if volume_node is None:
            volume_node = load_volume(scene, image_folder)
            added.append(volume_node)
        node = add_dicom_segmentation(scene, segmentation, volume_node, name)
    except Exception:
        for node in added:
            scene.RemoveNode(node)
        raise
    return volume_node, node


class DicomSegmentation:
    """An RTSTRUCT or SEG read onto its series (:func:`read_dicom_segmentation`), ready to become a node."""

    def __init__(self, path, segments: list, colors: dict, modality: str):
        self.path, self.segments, self.colors, self.modality = Path(path), segments, colors, modality


def read_dicom_segmentation(mask_path, image_folder, rois=None, what: str = "segmentation") -> DicomSegmentation:
    """Read an RTSTRUCT / SEG onto the series in ``image_folder`` (:func:`~RadiomicsLabLib.dicom.read_dicom_segments`)
    with each segment's colour from the file (RGB 0..1 by ROINumber / SegmentNumber); no scene involved."""
    from ..dicom import read_dicom_segments
    from ..dicom.read import damaged_file

    segments = read_dicom_segments(mask_path, image_folder, rois, what)
    with damaged_file(mask_path, what):
        modality, colors = _dicom_colors(mask_path)
    return DicomSegmentation(mask_path, segments, colors, modality)


def add_dicom_segmentation(scene, segmentation: DicomSegmentation, volume_node, name: str | None = None):
    """A new segmentation node of :func:`read_dicom_segmentation`'s segments on ``volume_node``'s geometry."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or node_name_from_path(segmentation.path))
    try:
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        node.SetAttribute("RadiomicsLab.DICOMModality", segmentation.modality)
        for item in segmentation.segments:
            segment_id = add_segment_from_mask(node, item.mask, item.name, segmentation.colors.get(item.number))
            segment = node.GetSegmentation().GetSegment(segment_id)
            segment.SetNameAutoGenerated(False)
            segment.SetTag(DICOM_NUMBER_TAG, str(item.number))
            segment.SetTag(DICOM_KIND_TAG, item.kind)
            if item.description:
                segment.SetTag(DICOM_DESCRIPTION_TAG, item.description)
            if item.category and item.type:
                segment.SetTag(TERMINOLOGY_TAG, terminology_entry(item.category, item.type))
        node.CreateDefaultDisplayNodes()
    except Exception:
        scene.RemoveNode(node)
        raise
    return node


def segment_tag(segment, key: str) -> str:
    """A ``vtkSegment``'s tag (``""`` if it has none)."""
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(key, value) else ""


def terminology_entry(category, kind) -> str:
    """Slicer's ``TerminologyEntry`` tag of coded (value, scheme, meaning) category and type."""
    code = lambda c: f"{c[1]}^{c[0]}^{c[2]}"  # noqa: E731 - Slicer writes scheme^value^meaning
    return f"{DICOM_TERMINOLOGY_CONTEXT}~{code(category)}~{code(kind)}~^^~Anatomic codes - DICOM master list~^^~^^"


def terminology_codes(entry: str) -> tuple:
    """(category, type) as (value, scheme, meaning) triples of a ``TerminologyEntry`` tag; (None, None) if it
    holds none."""
    parts = (entry or "").split("~")
    codes = []
    for part in parts[1:3]:
        fields = part.split("^")
        codes.append((fields[1], fields[0], fields[2]) if len(fields) == 3 and all(fields) else None)
    return tuple(codes) if len(codes) == 2 and all(codes) else (None, None)


def _dicom_colors(path) -> tuple[str, dict]:
    """(Modality, {ROINumber / SegmentNumber: RGB 0..1}) of the colours an RTSTRUCT / SEG recommends."""
    import highdicom as hd
    import pydicom

    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    modality, colors = str(ds.get("Modality", "")).upper(), {}
    if modality == "RTSTRUCT":
        for item in ds.get("ROIContourSequence", []):
            rgb = item.get("ROIDisplayColor")
            if rgb is not None and len(rgb) == 3 and "ReferencedROINumber" in item:
                colors[int(item.ReferencedROINumber)] = tuple(min(max(float(c), 0.0), 255.0) / 255 for c in rgb)
    else:
        for item in ds.get("SegmentSequence", []):
            lab = item.get("RecommendedDisplayCIELabValue")
            if lab is not None and len(lab) == 3 and "SegmentNumber" in item:
                try:
                    rgb = hd.color.CIELabColor.from_dicom_value(tuple(int(v) for v in lab)).to_rgb()
                except ValueError:
                    continue
                colors[int(item.SegmentNumber)] = tuple(c / 255 for c in rgb)
    return modality, colors


def _check_volume_is_series(volume_node, segmentation: DicomSegmentation):
    from ..validation import grid_differences
    from .convert import volume_to_sitk

    differences = grid_differences(volume_to_sitk(volume_node), segmentation.segments[0].mask)
    if differences:
        raise RadiomicsLabError(
            f"The volume '{volume_node.GetName()}' is not the series '{segmentation.path.name}' was read onto "
            f"({'; '.join(differences)}); give the volume loaded from that series' folder.")


def write_dicom_segmentation(segmentation_node, source_folder, path, volume_node=None, segment_ids_or_names=None,
                             **options) -> Path:
    """Write a segmentation node's segments as one DICOM SEG of the DICOM series in ``source_folder``
    (:func:`~RadiomicsLabLib.dicom.write.write_seg`): each segment exported on ``volume_node``'s grid (default the
    segmentation's reference volume; it must be the series read from that folder), with its name, colour and the
    category / type of its ``TerminologyEntry`` tag (else SCT Tissue). ``segment_ids_or_names``: the segments to
    write (default all). ``options`` go to ``write_seg``. Nothing is written on an error."""
    from ..dicom.write import SegmentToWrite, write_seg

    volume_node = volume_node or segmentation_volume(segmentation_node)
    if volume_node is None:
        raise RadiomicsLabError(f"The segmentation '{segmentation_node.GetName()}' has no reference volume; give the "
                                "volume loaded from the DICOM series folder.")
    segmentation = segmentation_node.GetSegmentation()
    ids = segment_ids(segmentation_node)
    if segment_ids_or_names is not None:
        names = {segmentation.GetSegment(i).GetName(): i for i in ids}
        wanted = [segment_ids_or_names] if isinstance(segment_ids_or_names, str) else list(segment_ids_or_names)
        unknown = [w for w in wanted if w not in ids and w not in names]
        if unknown:
            raise RadiomicsLabError(f"The segmentation '{segmentation_node.GetName()}' has no segment "
                                    f"{', '.join(repr(u) for u in unknown)}; it has "
                                    f"{', '.join(repr(n) for n in names)}.")
        ids = [w if w in ids else names[w] for w in wanted]
    if not ids:
        raise RadiomicsLabError(f"The segmentation '{segmentation_node.GetName()}' has no segments to write.")
    segments = []
    for segment_id in ids:
        segment = segmentation.GetSegment(segment_id)
        category, kind = terminology_codes(segment_tag(segment, TERMINOLOGY_TAG))
        color = tuple(int(round(255 * c)) for c in segment.GetColor())
        segments.append(SegmentToWrite(segment.GetName(), segment_to_sitk(segmentation_node, segment_id, volume_node),
                                       category, kind, color))
    return write_seg(segments, source_folder, path, **options)


def save_scene(scene, path) -> Path:
    """Save the whole scene as a Slicer data bundle (``.mrb``); an existing file is replaced only on success.

    Volumes are stored with their voxel order as it is (no flip to a right-handed IJK system on
    reload), so a saved and reloaded study has the same voxel arrays.
    """
    path = Path(path)
    if path.suffix.lower() != ".mrb":
        raise RadiomicsLabError(f"Scene file '{path}' must end in .mrb (a Slicer data bundle).")
    _keep_voxel_order_on_reload(scene)
    url, root = scene.GetURL(), scene.GetRootDirectory()
    with atomic_output(path) as tmp, tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".mrb-") as folder:
        bundle = Path(folder) / path.name  # Slicer names the bundle's inner folder after the file
        try:
            if not scene.WriteToMRB(str(bundle)):
                raise RadiomicsLabError(f"Slicer could not write the scene to '{path}'; check free disk space.")
        finally:
            scene.SetURL(url)
            scene.SetRootDirectory(root)
        os.replace(bundle, tmp)
    return path


def _keep_voxel_order_on_reload(scene):
    volumes = scene.GetNodesByClass("vtkMRMLVolumeNode")
    for i in range(volumes.GetNumberOfItems()):
        volume = volumes.GetItemAsObject(i)
        if volume.GetStorageNode() is None:
            volume.AddDefaultStorageNode()
        storage = volume.GetStorageNode()
        if hasattr(storage, "SetForceRightHandedIJKCoordinateSystem"):
            storage.SetForceRightHandedIJKCoordinateSystem(False)


def load_scene(scene, path, clear: bool = True):
    """Load a ``.mrb`` study into ``scene`` (cleared first unless ``clear=False``)."""
    path = Path(path)
    if not path.is_file():
        raise RadiomicsLabError(f"Cannot read scene '{path}': no such file; check the path.")
    if not zipfile.is_zipfile(path):
        raise RadiomicsLabError(f"'{path}' is not a Slicer data bundle (.mrb); save the study from Slicer as .mrb.")
    if clear:
        scene.Clear(0)
    if not scene.ReadFromMRB(str(path.resolve()), not clear):
        raise RadiomicsLabError(f"Slicer could not load the scene '{path}'; the file may be damaged.")
    return scene
