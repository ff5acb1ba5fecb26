"""Exact conversion between MRML nodes and SimpleITK images (and transforms).

MRML stores geometry in RAS (IJKToRAS matrix, image data at origin 0 with spacing 1); ITK and
SimpleITK use LPS. RAS = diag(-1, -1, 1) * LPS for origin and direction columns; negation is
exact in floating point, so a round trip keeps every bit of the geometry and of the voxels.
"""

import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util.numpy_support import create_vtk_array, get_vtk_array_type, numpy_to_vtk, vtk_to_numpy

from ..errors import RadiomicsLabError

_LPS_RAS = np.diag([-1.0, -1.0, 1.0])


def volume_to_sitk(volume_node) -> sitk.Image:
    """A scalar volume node (or label map node) as a SimpleITK image with the node's geometry in LPS."""
    return _image_on_node_grid(_voxels(volume_node), volume_node)


def _voxels(volume_node) -> np.ndarray:
    """The voxels of a volume node as a (z, y, x) numpy view of its VTK array (no copy)."""
    image_data = volume_node.GetImageData() if volume_node else None
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        name = volume_node.GetName() if volume_node else "None"
        raise RadiomicsLabError(f"Volume '{name}' has no voxels; load an image into it first.")
    return vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(image_data.GetDimensions()[::-1])


def _image_on_node_grid(array: np.ndarray, volume_node) -> sitk.Image:
    """A SimpleITK image of its own (a copy of ``array``, (z, y, x)) with ``volume_node``'s geometry in LPS."""
    image = sitk.GetImageFromArray(array)
    spacing, origin, direction = volume_geometry(volume_node)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def volume_geometry(volume_node) -> tuple:
    """(spacing, origin, direction) of a volume node as SimpleITK sets them (LPS; direction row-major, flat)."""
    directions = np.zeros((3, 3))
    volume_node.GetIJKToRASDirections(directions)
    return (volume_node.GetSpacing(), tuple(_LPS_RAS @ np.array(volume_node.GetOrigin())),
            tuple((_LPS_RAS @ directions).ravel()))


def ijk_to_ras(volume_node) -> np.ndarray:
    """A volume node's IJK-to-RAS matrix (4 x 4)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix_array(matrix)


def matrix_array(matrix) -> np.ndarray:
    """A ``vtkMatrix4x4`` as a 4 x 4 numpy array."""
    return np.array([[matrix.GetElement(i, j) for j in range(4)] for i in range(4)])


def update_volume_from_sitk(volume_node, image: sitk.Image):
    """Put a 3D SimpleITK image's voxels and geometry into ``volume_node`` (any vtkMRMLVolumeNode)."""
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    image_data = _image_data(sitk.GetArrayViewFromImage(image))
    set_volume_geometry(volume_node, image)
    volume_node.SetAndObserveImageData(image_data)
    return volume_node


def _image_data(array: np.ndarray, start=(0, 0, 0)) -> vtk.vtkImageData:
    """Image data holding a copy of the (z, y, x) ``array``, its first voxel at index ``start`` (z, y, x) of its grid:
    the extent ``start`` to ``start + shape - 1``."""
    array = np.ascontiguousarray(array)
    image_data = vtk.vtkImageData()
    image_data.SetExtent(*[i for first, n in zip(start[::-1], array.shape[::-1]) for i in (first, first + n - 1)])
    image_data.GetPointData().SetScalars(numpy_to_vtk(array.ravel(), deep=True,
                                                      array_type=get_vtk_array_type(array.dtype)))
    return image_data


def set_volume_geometry(volume_node, image: sitk.Image, start=(0, 0, 0)) -> None:
    """Give ``volume_node`` the spacing, origin and directions of a SimpleITK image (LPS -> RAS), or of its part that
    begins at voxel index ``start`` (x, y, z); a 2D image is one slice, as :func:`SimpleITK.JoinSeries` makes it
    (spacing 1 and origin 0 along the third axis)."""
    dimension = image.GetDimension()
    spacing, origin, direction = np.ones(3), np.zeros(3), np.eye(3)
    spacing[:dimension] = image.GetSpacing()
    origin[:dimension] = image.TransformIndexToPhysicalPoint(tuple(int(i) for i in start[:dimension])) \
        if any(start) else image.GetOrigin()
    direction[:dimension, :dimension] = np.array(image.GetDirection()).reshape(dimension, dimension)
    volume_node.SetSpacing(tuple(spacing))
    volume_node.SetOrigin(tuple(_LPS_RAS @ origin))
    volume_node.SetIJKToRASDirections(_LPS_RAS @ direction)


def new_image_data(size, dtype) -> tuple[vtk.vtkImageData, np.ndarray]:
    """Image data of ``size`` (x, y, z) voxels whose values are left to the caller: VTK owns them, and the returned
    numpy view (flat, x fastest as in SimpleITK's arrays) writes into them with no copy. Needs no scene, so it can be
    made off the main thread."""
    size = tuple(int(n) for n in size)
    scalars = create_vtk_array(get_vtk_array_type(np.dtype(dtype)))
    scalars.SetNumberOfTuples(int(np.prod(size)))
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(size)
    image_data.GetPointData().SetScalars(scalars)
    return image_data, vtk_to_numpy(scalars)


def sitk_to_volume_node(image: sitk.Image, name: str, scene, class_name: str = "vtkMRMLScalarVolumeNode",
                        display: bool = True):
    """A new volume node in ``scene`` holding ``image``, with default display nodes unless ``display`` is False (a
    node only copied into a sequence: Slicer's default display node computes a histogram of the whole volume, about
    1 s for a 512 x 512 x 300 CT, and the sequence's proxy node gets its own)."""
    node = update_volume_from_sitk(scene.AddNewNodeByClass(class_name, name), image)
    if display:
        node.CreateDefaultDisplayNodes()
    return node


def segment_to_sitk(segmentation_node, segment_id: str, reference_volume_node) -> sitk.Image:
    """One segment as a 0/1 UInt8 mask on the reference volume's grid (Slicer's own export)."""
    segment_ids = vtk.vtkStringArray()
    segment_ids.InsertNextValue(segment_id)
    scene = segmentation_node.GetScene()
    nodes_before = _node_ids(scene)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__RadiomicsLab_export__")  # Slicer needs it in the scene
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, segment_ids, labelmap, reference_volume_node,
            slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY,
        )
        if not ok or labelmap.GetImageData() is None:
            raise RadiomicsLabError(
                f"Segment '{segment_id}' of '{segmentation_node.GetName()}' could not be exported as a label map; "
                "check that it has a binary labelmap or closed surface representation."
            )
        return _image_on_node_grid(np.not_equal(_voxels(labelmap), 0).view(np.uint8), labelmap)
    finally:
        for node_id in _node_ids(scene) - nodes_before:  # the temporary node and its colour table
            scene.RemoveNode(scene.GetNodeByID(node_id))


def _node_ids(scene) -> set:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def label_map_to_segmentation_node(label_map: sitk.Image, name: str, scene, reference_volume_node=None):
    """A new segmentation node with one segment per non-zero label value, named ``Label_N``; its reference geometry
    is the reference volume's grid, else the label map's own (3D)."""
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    if reference_volume_node is not None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    elif label_map.GetDimension() == 3:
        _set_reference_geometry(segmentation_node, label_map)
    if not import_label_map(label_map, segmentation_node):
        scene.RemoveNode(segmentation_node)
        raise RadiomicsLabError(f"The label map for '{name}' could not be imported as segments.")
    segmentation_node.CreateDefaultDisplayNodes()
    return segmentation_node


def _set_reference_geometry(segmentation_node, image: sitk.Image) -> None:
    """The segmentation's reference image geometry: ``image``'s grid, serialised as Slicer serialises a volume's
    (``SetReferenceImageGeometryParameterFromVolumeNode``: IJK-to-RAS matrix and extent)."""
    node = slicer.vtkMRMLLabelMapVolumeNode()
    set_volume_geometry(node, image)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    extent = vtk.vtkImageData()
    extent.SetDimensions(image.GetSize())
    segmentation_node.GetSegmentation().SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
        slicer.vtkSegmentationConverter.SerializeImageGeometry(matrix, extent))


def labels_box(label_map: sitk.Image) -> tuple | None:
    """The bounding box (slices, (z, y, x)) of a label map's non-zero voxels, in one compiled pass; None where it has
    none."""
    from ..ibsi._preprocessing_kernels import bounding_box

    return bounding_box(sitk.GetArrayViewFromImage(label_map))


def import_label_map(label_map: sitk.Image, segmentation_node, value=None, box=None) -> bool:
    """Slicer's ``ImportLabelmapToSegmentationNode``: one new segment per non-zero value of ``label_map`` or, with
    ``value``, one of the voxels equal to it; False where Slicer refuses it.

    Where the segmentation has its reference geometry (the grid its segments are placed on), Slicer is handed only
    ``box`` of the map (slices (z, y, x); default: the bounding box of its non-zero voxels), as image data with that
    extent on the map's grid: the segments it makes of the whole map, voxel for voxel and with the same extent, but
    read from the box (on the main thread: about 1 s per import on a 512 x 512 x 299 CT's grid, a few ms for a
    tumour's box). Without one (or for a 2D map), the whole map."""
    array = sitk.GetArrayViewFromImage(label_map)
    geometry = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    if label_map.GetDimension() != 3 or not segmentation_node.GetSegmentation().GetConversionParameter(geometry):
        box = tuple(slice(0, n) for n in array.shape)
    elif box is None:
        box = labels_box(label_map) or (slice(0, 1),) * 3
    block = array[box] if value is None else (array[box] == value).view(np.uint8)
    if block.ndim == 2:
        block, box = block[np.newaxis], (slice(0, 1), *box)
    labelmap_node = slicer.vtkMRMLLabelMapVolumeNode()
    set_volume_geometry(labelmap_node, label_map)
    labelmap_node.SetAndObserveImageData(_image_data(block, [b.start for b in box]))
    return bool(slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap_node,
                                                                                           segmentation_node))


def segment_ids(segmentation_node) -> list[str]:
    """IDs of all segments, in the segmentation's order."""
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def segment_name(segmentation_node, segment_id: str) -> str:
    return segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()


def segmentation_volume(segmentation_node):
    """The scalar volume a segmentation was made on (its reference image geometry, as the segment editor sets it), or None."""
    reference = segmentation_node.GetNodeReference("referenceImageGeometryRef")
    return reference if reference is not None and reference.IsA("vtkMRMLScalarVolumeNode") else None


def sitk_to_transform_node(transform: sitk.Transform, name: str, scene):
    """A transform node holding a SimpleITK registration transform as its *from parent* (resampling) transform.

    Read through Slicer's own ITK transform reader (an HDF5 file), so the LPS/RAS conversion is
    Slicer's: ``vtkMRMLLinearTransformNode`` for rigid and affine, ``vtkMRMLBSplineTransformNode``
    for B-spline (with its initial linear part, as a composite), a general transform node otherwise.
    """
    from ..registration import affine_matrix

    try:
        affine_matrix(transform)
        class_name = "vtkMRMLLinearTransformNode"
    except RadiomicsLabError:
        class_name = "vtkMRMLBSplineTransformNode" if "BSpline" in _transform_names(transform) else "vtkMRMLTransformNode"
    node = scene.AddNewNodeByClass(class_name, name)
    with tempfile.TemporaryDirectory(prefix="radiomicslab-transform-") as folder:
        path = str(Path(folder) / "transform.h5")
        sitk.WriteTransform(transform, path)
        storage = slicer.vtkMRMLTransformStorageNode()
        storage.SetFileName(path)
        if not storage.ReadData(node):
            scene.RemoveNode(node)
            raise RadiomicsLabError(f"Slicer could not read the {transform.GetName()} of '{name}' as a transform node.")
    node.CreateDefaultDisplayNodes()
    return node


def transform_node_to_sitk(node) -> sitk.Transform:
    """The SimpleITK resampling transform of a transform node (its *from parent* transform), via Slicer's ITK writer."""
    with tempfile.TemporaryDirectory(prefix="radiomicslab-transform-") as folder:
        path = str(Path(folder) / "transform.h5")
        storage = slicer.vtkMRMLTransformStorageNode()
        storage.SetFileName(path)
        if not storage.WriteData(node):
            raise RadiomicsLabError(f"Slicer could not write the transform '{node.GetName()}'.")
        return sitk.ReadTransform(path)


def _transform_names(transform: sitk.Transform) -> str:
    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        return " ".join(composite.GetNthTransform(i).GetName() for i in range(composite.GetNumberOfTransforms()))
    return transform.GetName()



def mask_to_oriented_image(mask: sitk.Image):
    """A 3D 0/1 mask as a ``vtkOrientedImageData`` (a segment's binary labelmap), its geometry kept exactly."""
    labelmap = update_volume_from_sitk(slicer.vtkMRMLLabelMapVolumeNode(), sitk.Cast(mask != 0, sitk.sitkUInt8))
    return slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(labelmap)


def add_segment_from_mask(segmentation_node, mask: sitk.Image, name: str, color=None) -> str:
    """Add a 3D 0/1 mask (on its own grid) as a new segment named ``name``; ``color`` RGB in 0..1 (default:
    the segmentation's next default colour). Returns the new segment's ID."""
    oriented = mask_to_oriented_image(mask)
    if color is None:
        segment_id = segmentation_node.AddSegmentFromBinaryLabelmapRepresentation(oriented, name)
    else:
        segment_id = segmentation_node.AddSegmentFromBinaryLabelmapRepresentation(oriented, name, tuple(color))
    if not segment_id:
        raise RadiomicsLabError(f"The mask of '{name}' could not be added as a segment of "
                                f"'{segmentation_node.GetName()}'.")
    return segment_id
