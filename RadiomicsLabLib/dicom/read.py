"""Reading an RTSTRUCT or SEG file into binary masks on the grid of its image series (see :mod:`.rtstruct`, :mod:`.seg`).

The image series is the folder ``imageio.read_image`` reads; the mask file must reference that series
(its SeriesInstanceUID) and share its Frame of Reference, so a mask is never put on an image it was not drawn on.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import RadiomicsLabError
from ..imageio import dicom_modality, read_image

#: Modality of each DICOM mask kind this package reads.
MASK_MODALITIES = ("RTSTRUCT", "SEG")


@dataclass
class Segment:
    """One ROI of an RTSTRUCT or one segment of a SEG, as a binary mask on the image series' grid.

    ``mask``: SimpleITK UInt8 image (0/1) with the series' size, origin, spacing and direction.
    ``number``: ROINumber (RTSTRUCT) or SegmentNumber (SEG). ``description``: ROIDescription or the
    RTROIInterpretedType (RTSTRUCT), SegmentDescription (SEG), "" if none. ``category`` / ``type``: the coded
    segmented property category and type as (CodeValue, CodingSchemeDesignator, CodeMeaning), None where the
    file has none (RTSTRUCT ROIs usually). ``kind``: "RTSTRUCT", "BINARY" or "FRACTIONAL" (SEG).
    ``fraction``: for a FRACTIONAL segment the stored fractions as a Float32 image in [0, 1] (the mask is
    fraction >= 0.5), else None.
    """

    name: str
    mask: sitk.Image
    number: int
    description: str = ""
    category: tuple | None = None
    type: tuple | None = None
    kind: str = "RTSTRUCT"
    fraction: sitk.Image | None = None


@dataclass
class SeriesGrid:
    """The image series a mask is read onto: its image (grid), UIDs, and each instance's slice index."""

    folder: Path
    image: sitk.Image
    series_uid: str
    frame_of_reference_uid: str
    slice_of_instance: dict  # SOPInstanceUID -> slice index k

    def continuous_index(self, points) -> np.ndarray:
        """(n, 3) patient coordinates (mm, LPS) -> (n, 3) continuous voxel indices (i, j, k) of the grid."""
        image = self.image
        matrix = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
        return np.linalg.solve(matrix, (np.asarray(points, float) - np.array(image.GetOrigin())).T).T

    def new_mask(self, array: np.ndarray, pixel=sitk.sitkUInt8) -> sitk.Image:
        """A SimpleITK image of ``array`` (z, y, x) on this grid."""
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(self.image)
        return sitk.Cast(out, pixel) if out.GetPixelID() != pixel else out


def _dcmread(path, what: str, header_only: bool = True):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=header_only)
    except InvalidDicomError as error:
        raise RadiomicsLabError(f"Cannot read the {what} '{path}' as DICOM ({error}); give an RTSTRUCT or SEG file.") from None
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError):
        with damaged_file(path, what):
            raise


def is_dicom_mask(path) -> bool:
    """Whether ``path`` is a DICOM file with Modality RTSTRUCT or SEG (its header up to the Modality only: a damaged
    or cut-short RTSTRUCT is still one, and reading it says so)."""
    return Path(path).is_file() and dicom_modality(path) in MASK_MODALITIES


def series_grid(image_folder, what: str = "image") -> SeriesGrid:
    """Read the image series in ``image_folder`` (:func:`imageio.read_image`) and index its instances by slice."""
    import pydicom

    folder = Path(image_folder)
    if not folder.is_dir():
        raise RadiomicsLabError(f"The {what} '{folder}' given with a DICOM mask is not a folder; give the folder of "
                                "the DICOM image series the RTSTRUCT or SEG was drawn on.")
    image = read_image(folder, what)
    if image.GetDimension() != 3:
        raise RadiomicsLabError(f"The DICOM series in '{folder}' is {image.GetDimension()}D; give a 3D image series.")
    series_uid = frame_uid = None
    slices = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        try:
            ds = pydicom.dcmread(entry.path, stop_before_pixels=True,
                                 specific_tags=["SOPInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
                                                "ImagePositionPatient"])
        except Exception:  # noqa: BLE001 - imageio already refused damaged slices; skip non-DICOM files
            continue
        if "ImagePositionPatient" not in ds:
            continue
        series_uid, frame_uid = str(ds.SeriesInstanceUID), str(ds.get("FrameOfReferenceUID", ""))
        index = image.TransformPhysicalPointToContinuousIndex([float(v) for v in ds.ImagePositionPatient])
        slices[str(ds.SOPInstanceUID)] = int(round(index[2]))
    if series_uid is None:
        raise RadiomicsLabError(f"The DICOM files in '{folder}' have no ImagePositionPatient; give a 3D image series.")
    return SeriesGrid(folder, image, series_uid, frame_uid, slices)


def read_dicom_segments(mask_path, image_folder, rois=None, what: str = "mask") -> list[Segment]:
    """The ROIs of an RTSTRUCT or the segments of a SEG as binary masks on the grid of the series in ``image_folder``.

    ``rois``: names to read (ROIName / SegmentLabel), in the order given; None: all, in file order. An unknown
    name is an error listing the file's names. RTSTRUCT: :func:`.rtstruct.rasterise`; SEG: :func:`.seg.segments`.
    """
    path = Path(mask_path)
    if not path.is_file():
        raise RadiomicsLabError(f"Cannot read {what} '{path}': no such file; check the path.")
    header = _dcmread(path, what)
    modality = str(header.get("Modality", "")).upper()
    if modality not in MASK_MODALITIES:
        raise RadiomicsLabError(
            f"The {what} '{path}' is a DICOM {modality or 'file without Modality'}, not an RTSTRUCT or SEG; "
            "give the RTSTRUCT or SEG file of the segmentation (or a label map).")
    grid = series_grid(image_folder, "image series")
    with damaged_file(path, what):
        if modality == "RTSTRUCT":
            from .rtstruct import rasterise

            return rasterise(_dcmread(path, what, header_only=False), path, grid, rois)
        from .seg import segments

        return segments(path, grid, rois)


@contextmanager
def damaged_file(path, what: str = "mask"):
    """Turn what a damaged or cut-short DICOM file raises into one line: pydicom reads a cut-short file up to where
    it ends, and what is missing then fails where it is used (an attribute, a sequence item, the pixel data)."""
    try:
        yield
    except (AttributeError, KeyError, IndexError, TypeError, ValueError, EOFError, OSError) as error:
        raise RadiomicsLabError(
            f"The {what} '{path}' is damaged or cut short (reading it failed: {type(error).__name__}: "
            f"{' '.join(str(error).split())[:120]}); copy or export it again from its source.") from None


def pick(names: list, rois, path, kind: str) -> list[int]:
    """Positions in ``names`` (the file's ROI / segment names, in file order) of the requested ``rois``."""
    if rois is None:
        return list(range(len(names)))
    rois = [rois] if isinstance(rois, str) else list(rois)
    unknown = [r for r in rois if r not in names]
    if unknown:
        raise RadiomicsLabError(f"The {kind} '{path}' has no {'ROI' if kind == 'RTSTRUCT' else 'segment'} named "
                                f"{', '.join(repr(u) for u in unknown)}; it has {', '.join(repr(n) for n in names)}.")
    return [names.index(r) for r in rois]


def check_references(path, kind: str, grid: SeriesGrid, referenced_series: set, frames: set) -> None:
    """Refuse a mask whose referenced series or frame of reference is not the folder's (one line each)."""
    if referenced_series and grid.series_uid not in referenced_series:
        raise RadiomicsLabError(
            f"The {kind} '{path}' references series {', '.join(sorted(referenced_series))}, but the folder "
            f"'{grid.folder}' holds series {grid.series_uid}; give the folder of the referenced series.")
    if len(frames) > 1:
        raise RadiomicsLabError(f"The {kind} '{path}' mixes frames of reference ({', '.join(sorted(frames))}); "
                                "export each frame of reference's structures in a file of its own.")
    if frames and grid.frame_of_reference_uid not in frames:
        raise RadiomicsLabError(
            f"The {kind} '{path}' is in frame of reference {next(iter(frames))}, but the series in '{grid.folder}' is "
            f"in {grid.frame_of_reference_uid or 'none'}; give the image series the {kind} was drawn on.")


def coded(item, keyword: str):
    """(CodeValue, CodingSchemeDesignator, CodeMeaning) of the first item of ``item.<keyword>``, None if absent."""
    sequence = item.get(keyword)
    if not sequence:
        return None
    code = sequence[0]
    return (str(code.get("CodeValue", code.get("LongCodeValue", code.get("URNCodeValue", "")))),
            str(code.get("CodingSchemeDesignator", "")), str(code.get("CodeMeaning", "")))
