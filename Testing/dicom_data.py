"""Test helpers: real DICOM objects written from the shared sarcoma NIfTI images by independent writers.

* :func:`write_series` writes a NIfTI image as a DICOM CT or MR image series (pydicom, one file per slice,
  CT Image / MR Image IODs) that ``imageio.read_image`` reads back on the same grid with the same values.
* :func:`write_rtstruct_independently` writes an RTSTRUCT of a binary mask with rt-utils (OpenCV contours)
  or plastimatch (``convert --input-ss-img``): not RadiomicsLab's code.
* :func:`write_seg_independently` writes a binary or fractional DICOM SEG with highdicom.
* :func:`crop_box` / :func:`crop` cut a NIfTI to a box around its GTV so the tests stay fast.

Acquisition attributes the NIfTI files do not carry (kVp, echo time, ...) are written empty (type 2) or as
documented placeholders; geometry, pixel values and UIDs are real.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from RadiomicsLabLib.data import data_dir

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
#: CT stored values are HU + 1024 (unsigned), as most scanners write them: RescaleIntercept -1024.
CT_INTERCEPT = -1024
PATIENTS = ("STS_001", "STS_002", "STS_003", "STS_004")


def sts_paths(patient: str, modality: str = "CT") -> tuple[Path, Path]:
    """(image, GTV mask) NIfTI paths of a shared sarcoma patient (``STS_001``..) and modality (``CT``, ``MR_T1``)."""
    folder = data_dir() / "sts" / patient
    return folder / f"{modality}_image.nii.gz", folder / f"{modality}_mask.nii.gz"


def crop_box(mask, margin: int = 5) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(index, size) of the box around the mask's nonzero voxels plus ``margin`` voxels, kept inside the image."""
    mask = _image(mask)
    array = sitk.GetArrayViewFromImage(mask)  # z, y, x
    nonzero = np.argwhere(array)
    low = np.maximum(nonzero.min(axis=0) - margin, 0)
    high = np.minimum(nonzero.max(axis=0) + margin + 1, array.shape)
    return tuple(int(v) for v in low[::-1]), tuple(int(v) for v in (high - low)[::-1])


def crop(image, box) -> sitk.Image:
    """The image (path or SimpleITK image) cut to ``box`` = (index, size) from :func:`crop_box`."""
    image = _image(image)
    return image if box is None else sitk.RegionOfInterest(image, box[1], box[0])


@dataclass
class Series:
    """A DICOM series written by :func:`write_series`."""

    folder: Path
    image: sitk.Image  # what was written (after cropping), as it must read back
    modality: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: list = field(default_factory=list)  # slice order (increasing z index)
    files: list = field(default_factory=list)

    def datasets(self) -> list:
        """The written slices as pydicom datasets, in slice order (what highdicom's writers take)."""
        return [pydicom.dcmread(f) for f in self.files]


def write_series(nifti_path, folder, modality: str = "CT", series_uid: str | None = None, *, study_uid: str | None = None,
                 frame_of_reference_uid: str | None = None, patient_id: str = "STS", box=None,
                 series_number: int = 1) -> Series:
    """Write the NIfTI image (cut to ``box``, see :func:`crop_box`) as a DICOM ``CT`` or ``MR`` series in ``folder``.

    One file per slice, ``slice_0000.dcm``...: ImagePositionPatient of each slice from the image's origin, spacing
    and direction, ImageOrientationPatient from the direction's first two columns, PixelSpacing (row, column
    spacing), SliceThickness = slice spacing. Values must be whole numbers: CT is stored as HU + 1024 (uint16,
    RescaleIntercept -1024, RescaleSlope 1), MR as uint16 unchanged.
    """
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality must be CT or MR, not {modality!r}")
    image = crop(nifti_path, box)
    array = sitk.GetArrayFromImage(image).astype(np.float64)  # z, y, x
    stored = array - (CT_INTERCEPT if modality == "CT" else 0)
    if not np.array_equal(stored, np.round(stored)) or stored.min() < 0 or stored.max() > 65535:
        raise ValueError(f"{nifti_path}: values do not fit uint16 stored values")
    stored = stored.astype(np.uint16)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    series = Series(folder, image, modality, study_uid, series_uid, frame_of_reference_uid)
    for k in range(stored.shape[0]):
        uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_STORAGE if modality == "CT" else MR_STORAGE
        meta.MediaStorageSOPInstanceUID = uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, uid
        # Patient, study, series, equipment
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = f"{patient_id}^", patient_id, "", "O"
        ds.StudyInstanceUID, ds.StudyID, ds.StudyDate, ds.StudyTime = study_uid, "1", "20260101", "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = series_uid, series_number, modality
        ds.SeriesDescription = f"{Path(nifti_path).name} ({modality})"
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_of_reference_uid, ""
        ds.Manufacturer = "RadiomicsLab test data (from TCIA Soft-tissue-Sarcoma NIfTI)"
        # Image plane
        ds.InstanceNumber = k + 1
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.SliceLocation = f"{float(np.dot(position, direction[:, 2])):.6f}"
        # Image pixel
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        if modality == "CT":
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(CT_INTERCEPT), "1", "HU"
            ds.KVP = ""
        else:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
            ds.MRAcquisitionType, ds.EchoTime, ds.EchoTrainLength, ds.RepetitionTime = "2D", "", "", ""
        path = folder / f"slice_{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        series.sop_instance_uids.append(uid)
        series.files.append(path)
    return series


def write_sts_series(folder, patient: str = "STS_001", modality: str = "CT", margin: int = 3, **options):
    """(series, GTV): a shared sarcoma patient's image cut to its GTV's box plus ``margin`` voxels, written as a DICOM
    series in ``folder`` (:func:`write_series`; ``options`` go to it), and the GTV as a UInt8 0/1 mask on its grid."""
    image_path, mask_path = sts_paths(patient, modality)
    box = crop_box(mask_path, margin)
    series = write_series(image_path, folder, "CT" if modality == "CT" else "MR", box=box,
                          **{"patient_id": patient, **options})
    gtv = sitk.Cast(crop(mask_path, box) > 0, sitk.sitkUInt8)
    gtv.CopyInformation(series.image)
    return series, gtv


def write_rtstruct_independently(series: Series, masks, path, writer: str = "rt-utils") -> Path:
    """Write an RTSTRUCT of binary masks on the grid of ``series`` with an independent writer.

    ``masks``: {ROI name: mask (path or SimpleITK image on ``series.image``'s grid)}, written in that order.
    ``writer``: ``rt-utils`` (OpenCV contours through boundary voxel centres) or ``plastimatch``
    (``plastimatch convert --input-ss-img --referenced-ct --output-dicom``: marching-squares contours on the
    half-voxel lines; one ROI per bit of its structure-set image).
    """
    path = Path(path)
    arrays = {name: sitk.GetArrayFromImage(_on_grid(mask, series.image)) > 0 for name, mask in masks.items()}
    if writer == "rt-utils":
        from rt_utils import RTStructBuilder

        with warnings.catch_warnings():  # rt-utils 1.2.7 sets attributes pydicom 3 deprecates
            warnings.simplefilter("ignore", DeprecationWarning)
            rtstruct = RTStructBuilder.create_new(dicom_series_path=str(series.folder))
            # rt-utils wants (rows, columns, slices) in its own slice order: by ImagePositionPatient along the normal
            order = _rt_utils_slice_order(rtstruct, series)
            for name, array in arrays.items():
                rtstruct.add_roi(mask=np.transpose(array, (1, 2, 0))[:, :, order], name=name)
            rtstruct.save(str(path))
        return path
    if writer == "plastimatch":
        if len(arrays) > 31:
            raise ValueError("plastimatch structure-set images hold up to 31 structures here")
        work = path.parent / f"{path.stem}_plastimatch"
        work.mkdir(parents=True, exist_ok=True)
        bits = np.zeros(next(iter(arrays.values())).shape, np.uint32)
        for bit, array in enumerate(arrays.values()):
            bits |= array.astype(np.uint32) << bit
        ss = sitk.GetImageFromArray(bits)
        ss.CopyInformation(series.image)
        sitk.WriteImage(ss, str(work / "ss.nrrd"))
        (work / "ss_list.txt").write_text("".join(f"{i}|255\\0\\0|{name}\n" for i, name in enumerate(arrays)))
        out = work / "dicom"
        _run(["plastimatch", "convert", "--input-ss-img", str(work / "ss.nrrd"), "--input-ss-list",
              str(work / "ss_list.txt"), "--referenced-ct", str(series.folder), "--output-dicom", str(out)])
        written = [f for f in out.iterdir() if pydicom.dcmread(f, stop_before_pixels=True).Modality == "RTSTRUCT"]
        shutil.copyfile(written[0], path)
        return path
    raise ValueError(f"unknown RTSTRUCT writer {writer!r}")


def rasterise_with_plastimatch(rtstruct_path, series: Series, workdir, xor: bool = True) -> dict:
    """{ROI name: UInt8 mask} as plastimatch rasterises the RTSTRUCT onto ``series`` (one image per structure).

    ``xor``: ``--xor-contours`` (contours of a structure on a slice combined by exclusive or: inner contours are
    holes, RadiomicsLab's rule); False: plastimatch's default, their union (inner contours filled).
    """
    workdir = Path(workdir)
    prefix = workdir / "plastimatch_masks"
    _run(["plastimatch", "convert", "--input", str(rtstruct_path), "--referenced-ct", str(series.folder),
          "--output-prefix", str(prefix), "--prefix-format", "nrrd", *(["--xor-contours"] if xor else [])])
    names = [roi.ROIName for roi in pydicom.dcmread(rtstruct_path).StructureSetROISequence]
    return {name: sitk.Cast(sitk.ReadImage(str(prefix / f"{_plastimatch_file_name(name)}.nrrd")), sitk.sitkUInt8)
            for name in names}


def write_seg_independently(series: Series, segments, path, fractional: bool = False) -> Path:
    """Write a DICOM SEG of ``segments`` on the grid of ``series`` with highdicom.

    ``segments``: list of (label, mask or fraction image on ``series.image``'s grid, (category, type) pydicom
    ``Code`` pair). Binary: mask > 0. Fractional (PROBABILITY, max value 255): the image's values in [0, 1].
    Empty frames are kept so frame i is slice i of the series.
    """
    import highdicom as hd

    descriptions, arrays = [], []
    for number, (label, image, (category, kind)) in enumerate(segments, start=1):
        array = sitk.GetArrayFromImage(_on_grid(image, series.image)).astype(np.float32)
        arrays.append(array if fractional else (array > 0).astype(np.uint8))
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
    pixels = np.stack(arrays, axis=-1)  # frames, rows, columns, segments
    seg = hd.seg.Segmentation(
        source_images=series.datasets(), pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=100,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="highdicom (test writer)",
        manufacturer_model_name="highdicom", software_versions=hd.__version__, device_serial_number="0",
        omit_empty_frames=False)
    seg.save_as(Path(path))
    return Path(path)


# helpers -------------------------------------------------------------------------------------------
def _image(image) -> sitk.Image:
    return image if isinstance(image, sitk.Image) else sitk.ReadImage(str(image))


def _on_grid(mask, reference: sitk.Image) -> sitk.Image:
    """The mask cut to ``reference``'s box when it is the uncropped source of the series (same spacing/direction)."""
    mask = _image(mask)
    if mask.GetSize() == reference.GetSize() and np.allclose(mask.GetOrigin(), reference.GetOrigin(), atol=1e-3):
        return mask
    index = mask.TransformPhysicalPointToIndex(reference.GetOrigin())
    out = sitk.RegionOfInterest(mask, reference.GetSize(), index)
    if not np.allclose(out.GetOrigin(), reference.GetOrigin(), atol=1e-3):
        raise ValueError("mask is not on the series' grid")
    return out


def _rt_utils_slice_order(rtstruct, series: Series) -> list:
    """Index into our slice order for each of rt-utils' series slices."""
    position = {uid: k for k, uid in enumerate(series.sop_instance_uids)}
    return [position[ds.SOPInstanceUID] for ds in rtstruct.series_data]


def _plastimatch_file_name(name: str) -> str:
    """The file name plastimatch gives a structure (it replaces characters unsafe in file names by '_')."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _run(command) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-2000:]}")


RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def write_rtstruct_contours(series: Series, rois: dict, path, geometric_type: str = "CLOSED_PLANAR") -> Path:
    """Write an RTSTRUCT with pydicom from contours given in voxel index coordinates of ``series.image``.

    ``rois``: {ROI name: [(slice k, [(i, j), ...]), ...]}, ROIs numbered 1.. in that order; each polygon is
    written at slice k's position (mm, through the image's origin, spacing and direction) with its
    ContourImageSequence naming slice k's instance. Used for known-answer geometry (rings with holes) and, edited
    afterwards, for the bad inputs.
    """
    image = series.image
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = RTSTRUCT_STORAGE, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "RTSTRUCT", "STS^", "STS"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = series.study_uid, generate_uid(), 50
    ds.StructureSetLabel, ds.StructureSetDate, ds.StructureSetTime = "test", "20260101", "120000"
    ds.Manufacturer = "RadiomicsLab test data (pydicom)"
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    contour_images = [_image_reference(series, k) for k in range(len(series.sop_instance_uids))]
    referenced_series = Dataset()
    referenced_series.SeriesInstanceUID, referenced_series.ContourImageSequence = series.series_uid, contour_images
    study = Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", series.study_uid
    study.RTReferencedSeriesSequence = [referenced_series]
    frame = Dataset()
    frame.FrameOfReferenceUID, frame.RTReferencedStudySequence = series.frame_of_reference_uid, [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, (name, polygons) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, series.frame_of_reference_uid, name
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        contours = []
        for k, polygon in polygons:
            contour = Dataset()
            contour.ContourImageSequence = [_image_reference(series, k)]
            contour.ContourGeometricType, contour.NumberOfContourPoints = geometric_type, len(polygon)
            points = [image.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k))) for i, j in polygon]
            contour.ContourData = [f"{v:.6f}" for point in points for v in point]
            contours.append(contour)
        item = Dataset()
        item.ReferencedROINumber, item.ROIDisplayColor, item.ContourSequence = number, [255, 0, 0], contours
        ds.ROIContourSequence.append(item)
        observation = Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = "GTV" if number == 1 else "ORGAN", ""
        ds.RTROIObservationsSequence.append(observation)
    ds.save_as(Path(path), enforce_file_format=True)
    return Path(path)


def _image_reference(series: Series, k: int) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = CT_STORAGE if series.modality == "CT" else MR_STORAGE
    reference.ReferencedSOPInstanceUID = series.sop_instance_uids[k]
    return reference
