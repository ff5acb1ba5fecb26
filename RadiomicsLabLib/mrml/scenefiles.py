"""Loading images, label maps and segmentations into a scene; saving and loading ``.mrb`` studies."""

import os
import tempfile
import zipfile
from pathlib import Path

import slicer

from ..errors import RadiomicsLabError
from ..fileio import atomic_output
from ..imageio import read_image
from ..validation import check_mask_is_label_map
from .convert import label_map_to_segmentation_node, sitk_to_volume_node


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
