"""The one place that handles the differences between the DICOM libraries RadiomicsLab runs on.

Desktop 3D Slicer 5.10 ships pydicom 2.4.4 (its SuperBuild/External_python-dicom-requirements.cmake at tag v5.10.0),
beside which ``RadiomicsLab/Resources/requirements.txt`` can only install highdicom 0.22.0 (every later highdicom
needs pydicom 3); the headless runtime (``.venv``, the CLI, the web GUI) has pydicom 3.0 and highdicom 0.28. The
SEG and SR writers (:mod:`.write`, :mod:`.sr`) call these helpers, never the version-specific API, and the readers
(:mod:`.read`, :mod:`.seg`, :mod:`.rtstruct`, :mod:`.sr`) use only pydicom API that both versions share, so both
pairs write and read the same objects (``Testing/test_dicom_slicer_libraries.py`` runs them with both pairs).

Differences handled here (pydicom 2.4 / highdicom 0.22 vs pydicom 3.0 / highdicom 0.28):

- writing a dataset as a DICOM file (File Meta Information, preamble): ``dcmwrite(..., write_like_original=False)``
  in pydicom 2, ``dcmwrite(..., enforce_file_format=True)`` in pydicom 3 (which deprecates the old keyword):
  :func:`dcmwrite`;
- a segment's Recommended Display CIELab Value: highdicom 0.28's ``SegmentDescription(display_color=...)`` and
  ``CIELabColor.from_rgb`` do not exist in 0.22, whose ``CIELabColor`` truncates where 0.28 rounds:
  :func:`cielab_value` converts sRGB to the DICOM 16-bit CIELab triplet with 0.28's (pixelmed's) formulas and
  rounding, and :func:`segment_description` sets the attribute itself;
- highdicom 0.22 predates numpy 2 (Slicer 5.10's numpy is 2.0.2): ``Segmentation`` compares the array's dtype with
  ``np.float_``, which numpy 2 removed, so every SEG fails with AttributeError (highdicom 0.23 fixed it, but needs
  pydicom 3). :func:`segmentation` gives highdicom 0.22's ``highdicom.seg.sop`` a numpy that still has ``float_``
  (= ``float64``, as in numpy 1) before building the SEG; numpy itself and every other module are left as they are;
- a SEG's layout: highdicom 0.28 puts the Segment Identification of a one-segment SEG in the Shared Functional
  Groups (and writes Dimension Organization Type 3D, frames in another order, a Contributing Equipment Sequence),
  0.22 in every frame's; ``ReferencedSegment.from_segmentation`` of both versions reads it from the frames only, so
  the SR writer failed on a one-segment SEG written with 0.28. :func:`referenced_segment` reads it from either
  place (:mod:`.seg` already does, and puts each frame on the slice at its position, whatever the frame order);
- the rest of what the writers use has the same signature and defaults in both (``Segmentation`` with
  ``omit_empty_frames`` True and ``max_fractional_value`` 255; ``AlgorithmIdentificationSequence``,
  ``hd.sr.Measurement``, ``VolumetricROIMeasurementsAndQualitativeEvaluations``, ``Comprehensive3DSR``,
  ``pydicom.dcmread(path, stop_before_pixels=..., specific_tags=...)``; no ``fsspec`` / ``pydicom.valuerep`` use),
  and the readers parse with plain pydicom, not highdicom's ``segread`` / ``srread`` (whose classes and results
  differ between the two versions).
"""

from __future__ import annotations

import types


def pydicom_major() -> int:
    """The major version of the installed pydicom (2 in desktop Slicer 5.10, 3 in the headless runtime)."""
    import pydicom

    return int(str(pydicom.__version__).split(".")[0])


def dcmwrite(path, dataset) -> None:
    """Write ``dataset`` at ``path`` as a DICOM Part 10 file (preamble, File Meta Information), with either pydicom."""
    import pydicom

    if pydicom_major() >= 3:
        pydicom.dcmwrite(path, dataset, enforce_file_format=True)
    else:
        pydicom.dcmwrite(path, dataset, write_like_original=False)


def cielab_value(rgb) -> list[int]:
    """The DICOM CIELab triplet (three unsigned 16-bit integers, PS3.3 C.10.7.1.1) of an sRGB colour (0-255 each).

    highdicom 0.28's ``CIELabColor.from_rgb(r, g, b).value``: sRGB -> CIE XYZ -> CIELab (D65 white point, the
    formulas of pixelmed's ColorUtilities), then L* 0..100 and a*, b* -128..127 scaled to 0..0xFFFF and rounded.
    """
    r, g, b = (int(c) for c in rgb)
    if not all(0 <= c <= 255 for c in (r, g, b)):
        raise ValueError(f"RGB colour {tuple(rgb)} has a component outside 0..255.")

    def linear(c: float) -> float:
        c = c / 255.0
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92

    r, g, b = (linear(c) * 100 for c in (r, g, b))
    x = (r * 0.4124 + g * 0.3576 + b * 0.1805) / 95.047
    y = (r * 0.2126 + g * 0.7152 + b * 0.0722) / 100.0
    z = (r * 0.0193 + g * 0.1192 + b * 0.9505) / 108.883

    def f(c: float) -> float:
        return c ** (1.0 / 3) if c >= 8.85645167903563082e-3 else (841.0 / 108.0) * c + (4.0 / 29.0)

    x, y, z = f(x), f(y), f(z)
    l_star, a_star, b_star = 116 * y - 16, 500 * (x - y), 200 * (y - z)
    return [round(l_star * 0xFFFF / 100.0), round((a_star + 128.0) * 0xFFFF / 255.0),
            round((b_star + 128.0) * 0xFFFF / 255.0)]


def segment_description(*, color, **arguments):
    """``highdicom.seg.SegmentDescription(**arguments)`` with Recommended Display CIELab Value :func:`cielab_value`
    of the RGB ``color`` (set on the dataset: highdicom 0.22 has no ``display_color`` argument)."""
    import highdicom as hd

    description = hd.seg.SegmentDescription(**arguments)
    description.RecommendedDisplayCIELabValue = cielab_value(color)
    return description


def segmentation(**arguments):
    """``highdicom.seg.Segmentation(**arguments)``, also with highdicom 0.22 beside numpy 2 (module docstring)."""
    import highdicom as hd

    _numpy2_for_highdicom_0_22()
    return hd.seg.Segmentation(**arguments)


class _NumpyWithFloat_(types.ModuleType):
    """numpy as highdicom 0.22 expects it: numpy 2 plus numpy 1's ``float_`` alias of ``float64``."""

    def __getattr__(self, name):
        import numpy

        return numpy.float64 if name == "float_" else getattr(numpy, name)


def _numpy2_for_highdicom_0_22() -> None:
    """Give ``highdicom.seg.sop`` (highdicom 0.22's only user of ``np.float_``) a numpy with ``float_`` if needed."""
    import highdicom
    import numpy
    from highdicom.seg import sop

    if not hasattr(numpy, "float_") and _version(highdicom.__version__) < (0, 23) and sop.np is numpy:
        sop.np = _NumpyWithFloat_("numpy")


def _version(text: str) -> tuple:
    """(major, minor) of a version string ("0.22.0" -> (0, 22))."""
    return tuple(int(part) for part in text.split(".")[:2])


def referenced_segment(seg, segment_number: int):
    """``highdicom.sr.ReferencedSegment`` of segment ``segment_number`` of the SEG dataset ``seg``: the segment and the
    source images of its frames (each frame's Derivation Image / Source Image references, in frame order, without
    repeats), as ``ReferencedSegment.from_segmentation`` gives them, but with the frame's segment number read from
    the frame or else the Shared Functional Groups; the Referenced Series Sequence's instances if no frame has any."""
    import highdicom as hd

    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else None
    sources, seen = [], set()
    for frame in seg.PerFrameFunctionalGroupsSequence:
        group = frame if "SegmentIdentificationSequence" in frame else shared
        if group is None or int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber) != segment_number:
            continue
        for derivation in frame.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                if source.ReferencedSOPInstanceUID not in seen:
                    seen.add(source.ReferencedSOPInstanceUID)
                    frames = source.get("ReferencedFrameNumber")
                    if frames is not None and source["ReferencedFrameNumber"].VM == 1:
                        frames = [frames]
                    sources.append(hd.sr.SourceImageForSegmentation(
                        source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID, frames))
    if not sources:
        sources = [hd.sr.SourceImageForSegmentation(item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID)
                   for series in seg.get("ReferencedSeriesSequence", [])[:1]
                   for item in series.get("ReferencedInstanceSequence", [])]
    return hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                                   segment_number=segment_number, source_images=sources or None)
