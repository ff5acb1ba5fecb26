"""DICOM SEG segments (BINARY, FRACTIONAL, LABELMAP) read onto the grid of their image series.

Read with pydicom (highdicom's reader drops the per-frame Segment Identification this needs); pydicom unpacks
BINARY's 1-bit frames and decodes the compressed transfer syntaxes it has decoders for.

Each frame is put on the series slice at its ImagePositionPatient (Plane Position Sequence, present in every
SEG with a frame of reference), so frames omitted as empty and frames in any order are handled, and the SEG's
per-frame source-image references are not needed. The frames must lie on the series' grid (same rows, columns,
pixel spacing, orientation, and positions on slices): a SEG on another grid is an error, never resampled.
FRACTIONAL: fraction = stored value / MaximumFractionalValue; the mask is fraction >= 0.5 (PS3.3 C.8.20.2.3).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import RadiomicsLabError
from .read import Segment, SeriesGrid, check_references, coded, pick

#: Tolerances: positions (fraction of a voxel), spacing and orientation (relative / absolute).
POSITION_TOLERANCE = 0.1
GEOMETRY_TOLERANCE = 1e-3


def segments(path, grid: SeriesGrid, rois=None) -> list[Segment]:
    """Segments of the SEG file ``path`` on ``grid``; ``rois``: segment labels, None = all in file order."""
    import pydicom

    try:
        seg = pydicom.dcmread(str(path))
        frames = seg.pixel_array.reshape(int(seg.get("NumberOfFrames", 1)), int(seg.Rows), int(seg.Columns))
    except Exception as error:  # noqa: BLE001 - pydicom raises many kinds on a malformed or undecodable SEG
        raise RadiomicsLabError(f"Cannot read the SEG '{path}' ({error}); export the segmentation again.") from None
    descriptions = list(seg.SegmentSequence)
    names = [str(d.get("SegmentLabel", f"Segment {d.SegmentNumber}")) for d in descriptions]
    chosen = [descriptions[i] for i in pick(names, rois, path, "SEG")]
    referenced = {str(s.SeriesInstanceUID) for s in seg.get("ReferencedSeriesSequence", [])}
    frame_uid = str(seg.get("FrameOfReferenceUID", ""))
    check_references(path, "SEG", grid, referenced, {frame_uid} if frame_uid else set())
    kind = str(seg.SegmentationType).upper()
    slices, numbers = _frame_slices(seg, path, grid)
    maximum = float(seg.get("MaximumFractionalValue", 1)) if kind == "FRACTIONAL" else 1.0
    nx, ny, nz = grid.image.GetSize()
    out = []
    for description in chosen:
        number = int(description.SegmentNumber)
        values = np.zeros((nz, ny, nx), np.float32)
        for frame, k, frame_number in zip(frames, slices, numbers):
            if kind == "LABELMAP":
                values[k] = frame == number
            elif frame_number == number:
                values[k] = frame
        fraction = values / maximum
        mask = (fraction >= 0.5).astype(np.uint8)
        name = str(description.get("SegmentLabel", f"Segment {number}"))
        if not mask.any():
            raise RadiomicsLabError(f"The segment '{name}' of the SEG '{path}' is empty (no voxel at or above half its "
                                    "maximum); pick another segment.")
        out.append(Segment(
            name=name, mask=grid.new_mask(mask), number=number, description=str(description.get("SegmentDescription", "")),
            category=coded(description, "SegmentedPropertyCategoryCodeSequence"),
            type=coded(description, "SegmentedPropertyTypeCodeSequence"), kind=kind,
            fraction=grid.new_mask(fraction, pixel=sitk.sitkFloat32) if kind == "FRACTIONAL" else None))
    return out


def _frame_slices(seg, path, grid: SeriesGrid) -> tuple[list, list]:
    """(slice index, referenced segment number or None) of each frame, after checking it lies on the grid."""
    image = grid.image
    nx, ny, nz = image.GetSize()
    if (int(seg.Columns), int(seg.Rows)) != (nx, ny):
        raise RadiomicsLabError(f"The SEG '{path}' has {seg.Columns}x{seg.Rows} frames but the series in '{grid.folder}' "
                                f"has {nx}x{ny} pixel slices; give the image series the SEG was made on.")
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else None
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    slices, numbers = [], []
    for number, frame in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        position = _functional(frame, shared, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _functional(frame, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        pixel_spacing = _functional(frame, shared, "PixelMeasuresSequence", "PixelSpacing")
        if position is None:
            raise RadiomicsLabError(f"The SEG '{path}' has frames without a position (Plane Position Sequence); "
                                    "export it again with its frame of reference.")
        if orientation is not None and not np.allclose(np.asarray(orientation, float),
                                                       np.r_[direction[:, 0], direction[:, 1]], atol=GEOMETRY_TOLERANCE):
            raise RadiomicsLabError(f"The SEG '{path}' is oriented differently from the series in '{grid.folder}'; "
                                    "give the image series the SEG was made on.")
        if pixel_spacing is not None and not np.allclose([float(pixel_spacing[1]), float(pixel_spacing[0])], spacing[:2],
                                                         rtol=GEOMETRY_TOLERANCE):
            raise RadiomicsLabError(f"The SEG '{path}' has pixel spacing {float(pixel_spacing[0]):g} x "
                                    f"{float(pixel_spacing[1]):g} mm but the series in '{grid.folder}' has "
                                    f"{spacing[1]:g} x {spacing[0]:g} mm; give the image series the SEG was made on.")
        index = grid.continuous_index([[float(v) for v in position]])[0]
        k = int(round(index[2]))
        if np.abs(index - [0, 0, k]).max() > POSITION_TOLERANCE or not 0 <= k < nz:
            raise RadiomicsLabError(f"Frame {number} of the SEG '{path}' (at {', '.join(f'{float(v):.2f}' for v in position)} "
                                    f"mm) is not on a slice of the series in '{grid.folder}'; give the image series the "
                                    "SEG was made on.")
        segment = _functional(frame, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        slices.append(k)
        numbers.append(None if segment is None else int(segment))
    return slices, numbers


def _functional(frame, shared, sequence: str, keyword: str):
    """``keyword`` of the per-frame functional group ``sequence``, else of the shared one, else None."""
    for group in (frame, shared):
        if group is not None and sequence in group and keyword in group[sequence].value[0]:
            return group[sequence].value[0].get(keyword)
    return None
