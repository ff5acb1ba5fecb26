"""Writing RadiomicsLab's masks (habitats, consensus, rings, propagated masks) as a DICOM Segmentation (SEG).

One binary SEG per call, one segment per mask, referencing the source image series it was drawn on: the
SEG shares the series' Study Instance UID, Frame of Reference UID and patient module, lists the series in
its Referenced Series Sequence and gives every frame a Derivation Image / Source Image reference to its
slice (DICOM PS3.3 A.51 Segmentation IOD, C.8.20). Written with highdicom (``highdicom.seg.Segmentation``,
Herrmann et al., J Digit Imaging 2022), the way Slicer's Quantitative Reporting (dcmqi) reads it back:
Segment Label = the segment's name, coded category and type, Recommended Display CIELab Value, algorithm
type AUTOMATIC with algorithm name "RadiomicsLab" and RadiomicsLab's version.

Default coded properties (Slicer's generic terminology): a segment RadiomicsLab knows nothing more about is
SCT "Tissue" / "Tissue" (what Slicer gives a new segment; right for habitats and rings); pass
:data:`LESION` (SCT "Morphologically Altered Structure" / "Mass", the category and type Quantitative
Reporting's examples give a tumour) for a tumour or a consensus tumour mask.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import RadiomicsLabError
from ..fileio import atomic_output, check_output
from . import compat

#: SCT "Tissue": category and type of a segment without coded properties (Slicer's default terminology).
TISSUE = (("85756007", "SCT", "Tissue"), ("85756007", "SCT", "Tissue"))
#: SCT "Morphologically Altered Structure" / "Mass": a tumour (Quantitative Reporting's examples).
LESION = (("49755003", "SCT", "Morphologically Altered Structure"), ("4147007", "SCT", "Mass"))
#: Colours (RGB) of segments without one: Slicer's GenericAnatomyColors 1, 2, 3, ... (tissue, bone, ...).
DEFAULT_COLORS = ((128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79),
                  (221, 130, 101), (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0))
#: DCM "Segmentation" (CID 7162): the algorithm family named in each segment's algorithm identification.
ALGORITHM_FAMILY = ("113076", "DCM", "Segmentation")
#: Longest Segment Label (VR LO).
MAX_LABEL = 64


@dataclass(frozen=True)
class SegmentToWrite:
    """One segment to write: ``mask`` a binary (0/1) SimpleITK image on the source series' grid;
    ``category`` / ``type`` (code value, scheme, meaning) triples (default :data:`TISSUE`); ``color`` RGB 0-255."""

    name: str
    mask: sitk.Image
    category: tuple | None = None
    type: tuple | None = None
    color: tuple | None = None


@dataclass(frozen=True)
class SourceSeries:
    """A DICOM image series: its grid (SimpleITK image as RadiomicsLab reads the folder) and its pydicom
    headers (no pixel data), one per slice, in the grid's slice order."""

    folder: Path
    image: sitk.Image
    datasets: list

    @property
    def files(self) -> list:
        return [Path(d.filename) for d in self.datasets]


def read_source_series(folder) -> SourceSeries:
    """The series in ``folder`` (:func:`~RadiomicsLabLib.dicom.read.series_grid`: one series, evenly spaced
    slices) with its headers in the grid's slice order; a folder that is not one DICOM series raises."""
    import pydicom

    from .read import series_grid

    if not Path(folder).is_dir():
        raise RadiomicsLabError(f"The source series folder '{folder}' does not exist or is not a folder; give the "
                                "folder of the DICOM image series the segments were drawn on.")
    grid = series_grid(folder, "source series")
    datasets = [None] * grid.image.GetSize()[2]
    for path in sorted(p for p in grid.folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError):
            continue
        k = grid.slice_of_instance.get(str(dataset.get("SOPInstanceUID", "")))
        if k is not None and 0 <= k < len(datasets) and dataset.get("SeriesInstanceUID") == grid.series_uid:
            datasets[k] = dataset
    if any(d is None for d in datasets) or len(grid.slice_of_instance) != len(datasets):
        raise RadiomicsLabError(f"The folder '{grid.folder}' does not hold one image file per slice of its series "
                                f"({len(grid.slice_of_instance)} files, {len(datasets)} slices); give a folder holding "
                                "exactly one complete image series.")
    return SourceSeries(grid.folder, grid.image, datasets)


def write_seg(segments, source_folder, path, *, series_description: str = "RadiomicsLab segmentation",
              content_label: str = "RADIOMICSLAB", series_number: int = 1000, manufacturer: str = "RadiomicsLab",
              manufacturer_model_name: str = "RadiomicsLab", device_serial_number: str = "0") -> Path:
    """Write ``segments`` as one binary DICOM SEG at ``path`` referencing the series in ``source_folder``.

    ``segments``: ``(name, mask[, category[, type[, color]]])`` tuples or objects with those attributes
    (:class:`SegmentToWrite`, or the segments :func:`~RadiomicsLabLib.dicom.read_dicom_segments` reads); codes
    are (value, scheme, meaning) triples or pydicom / highdicom codes. Every mask is
    checked before anything is written (on the source grid, binary, not empty, names unique); the file is
    written atomically and never over one of the series' files. Returns ``path``.
    """
    import highdicom as hd

    from .. import __version__

    if not re.fullmatch(r"[A-Z0-9_]{1,16}", content_label):
        raise RadiomicsLabError(f"Content label '{content_label}' is not a DICOM code string; give up to 16 capital "
                                "letters, digits or underscores (e.g. RADIOMICSLAB).")
    segments = [SegmentToWrite(*s) if isinstance(s, (tuple, list)) else s for s in segments]
    series = read_source_series(source_folder)
    path = check_output(path, _series_inputs(series), kind="file")
    stack = np.stack([segment_array(s, series.image) for s in _checked_names(segments)], axis=-1)
    algorithm = hd.AlgorithmIdentificationSequence(name="RadiomicsLab", version=__version__,
                                                   family=hd.sr.CodedConcept(*ALGORITHM_FAMILY))
    descriptions = []
    for number, segment in enumerate(segments, start=1):
        category = _code(getattr(segment, "category", None) or TISSUE[0])
        kind = _code(getattr(segment, "type", None) or TISSUE[1])
        color = getattr(segment, "color", None) or DEFAULT_COLORS[(number - 1) % len(DEFAULT_COLORS)]
        descriptions.append(compat.segment_description(
            segment_number=number, segment_label=segment.name,
            segmented_property_category=category, segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            tracking_uid=hd.UID(), tracking_id=segment.name, color=color))
    seg = compat.segmentation(
        source_images=series.datasets, pixel_array=stack, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=manufacturer,
        manufacturer_model_name=manufacturer_model_name, software_versions=__version__,
        device_serial_number=device_serial_number, content_label=content_label,
        content_description=series_description[:64], series_description=series_description)
    with atomic_output(path) as tmp:
        compat.dcmwrite(tmp, seg)
    return Path(path)


def segment_array(segment, grid: sitk.Image) -> np.ndarray:
    """The segment's mask as a boolean (slices, rows, columns) array, after checking it lies on ``grid``,
    holds only 0 and 1, and is not empty."""
    from ..validation import grid_differences

    mask = segment.mask
    if not isinstance(mask, sitk.Image) or mask.GetDimension() != 3 or mask.GetNumberOfComponentsPerPixel() != 1:
        raise RadiomicsLabError(f"Segment '{segment.name}': its mask is not a 3D scalar image; give one binary "
                                "mask per segment on the source series' grid.")
    differences = grid_differences(grid, mask)
    if differences:
        raise RadiomicsLabError(f"Segment '{segment.name}' is not on the source series' grid ({'; '.join(differences)}); "
                                "resample it onto the series (or give the series it was drawn on).")
    array = sitk.GetArrayViewFromImage(mask)
    values = np.unique(array)
    if not set(values.tolist()) <= {0, 1}:
        raise RadiomicsLabError(f"Segment '{segment.name}': its mask holds values other than 0 and 1 "
                                f"({', '.join(map(str, values[:5]))}...); give one binary mask per segment (mask == label).")
    if not values.max(initial=0):
        raise RadiomicsLabError(f"Segment '{segment.name}' is empty (no voxel inside); leave it out or give its mask.")
    return array.astype(bool)


def _code(code):
    """A highdicom CodedConcept of a (value, scheme, meaning) triple or a pydicom / highdicom code."""
    import highdicom as hd

    if isinstance(code, (tuple, list)):
        return hd.sr.CodedConcept(*code)
    return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning)


def _checked_names(segments: list) -> list:
    """``segments`` after refusing none at all, empty, too long or repeated names."""
    if not segments:
        raise RadiomicsLabError("No segment to write; give at least one (name, mask).")
    names = [s.name for s in segments]
    for name in names:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_LABEL or "\\" in name:
            raise RadiomicsLabError(f"Segment name {name!r} cannot be a DICOM Segment Label; give a name of 1 to "
                                    f"{MAX_LABEL} characters without a backslash.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RadiomicsLabError(f"Segment name '{repeated[0]}' is given more than once; give each segment its own name.")
    return segments


def _series_inputs(series: SourceSeries) -> list:
    """(role, path) of the source folder and each of its files, so no output overwrites them."""
    return [("source series folder", series.folder), *(("source series file", f) for f in series.files)]
