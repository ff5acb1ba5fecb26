"""DICOM masks: RTSTRUCT contours and DICOM SEG segments read onto the grid of the image series they reference.

:func:`read_dicom_segments` reads either kind into :class:`Segment` objects (a binary SimpleITK mask on the
series' grid plus the segment's name, number and coded properties); :func:`is_dicom_mask` tells an RTSTRUCT or
SEG file from other inputs by its header; :func:`read_mask` reads any MASK argument (a label map or a
DICOM segmentation) as a label map and its segment names. Core code: pydicom and highdicom, no Slicer.
"""

from .masks import read_mask
from .read import Segment, is_dicom_mask, read_dicom_segments

__all__ = ["Segment", "is_dicom_mask", "read_dicom_segments", "read_mask"]
