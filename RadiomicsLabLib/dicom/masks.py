"""A MASK argument of any kind: a label map file, or a DICOM RTSTRUCT / SEG read onto its image series.

Every command and Logic that takes a mask file calls :func:`read_mask`, so a DICOM segmentation is accepted
wherever a label map is. A label map keeps its label values (segments named ``Label_N`` as Slicer names an
imported label map); DICOM segments become labels 1, 2, ... in the order read, named by their ROIName /
SegmentLabel. One label map cannot hold overlapping segments (an RTSTRUCT's GTV inside its PTV): asking for
overlapping ones together is an error that says to pick them one at a time with ``--roi``; callers that take
each segment on its own (extraction) use :func:`read_dicom_segments` directly; :func:`read_masks` reads several
masks each on its own (observers: readers' ROIs of one RTSTRUCT overlap by nature). :func:`check_seg_output`
checks a ``--seg FILE.dcm`` output (rings, observers) before any work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import RadiomicsLabError
from .read import is_dicom_mask, read_dicom_segments


def read_mask(mask_path, image_path=None, what: str = "mask", rois=None) -> tuple[sitk.Image, dict]:
    """``(label map, {segment name: label})`` of a mask file.

    A DICOM RTSTRUCT or SEG (:func:`is_dicom_mask`) needs ``image_path``, the folder of the DICOM series it
    references; ``rois``: the ROI / segment names to take (default all). A label map file is read with
    :func:`~RadiomicsLabLib.imageio.read_image`; ``rois`` is then an error (label maps have label values, not
    names: choose them with ``--label``).
    """
    from ..imageio import read_image
    from ..validation import check_mask_is_label_map, labels_present, segment_name

    if mask_path is not None and Path(mask_path).is_file() and is_dicom_mask(mask_path):
        check_series_folder(mask_path, image_path, what)
        segments = read_dicom_segments(mask_path, image_path, rois, what)
        return label_map_of(segments, mask_path, what), {s.name: i for i, s in enumerate(segments, start=1)}
    refuse_rois_of_label_map(mask_path, rois, what)
    mask = check_mask_is_label_map(read_image(mask_path, what), where=f"{what} '{mask_path}'")
    return mask, {segment_name(label): label for label in labels_present(mask)}


def check_series_folder(mask_path, image_path, what: str = "mask") -> None:
    """Refuse a DICOM ``mask_path`` whose image is not given as a folder (the DICOM series it was drawn on)."""
    if image_path is None or not Path(image_path).is_dir():
        raise RadiomicsLabError(
            f"The {what} '{mask_path}' is a DICOM segmentation: give the image as the folder of the DICOM "
            f"series it was drawn on{f' (not {str(image_path)!r})' if image_path is not None else ''}.")


def roi_names(mask_path, what: str = "mask") -> list[str]:
    """The ROI names of an RTSTRUCT or the segment labels of a SEG, in file order (header only, nothing rasterised);
    names as :func:`read_dicom_segments` gives them."""
    from .read import _dcmread

    header = _dcmread(mask_path, what)
    if str(header.get("Modality", "")).upper() == "RTSTRUCT":
        return [str(item.get("ROIName", f"ROI {item.ROINumber}")) for item in header.get("StructureSetROISequence", [])]
    return [str(item.get("SegmentLabel", f"Segment {item.SegmentNumber}")) for item in header.get("SegmentSequence", [])]


def refuse_rois_of_label_map(mask_path, rois, what: str = "mask") -> None:
    """``--roi`` names ROIs of a DICOM RTSTRUCT / SEG; given with a label map file it is an error (one line)."""
    if rois:
        raise RadiomicsLabError(f"--roi picks ROIs of a DICOM RTSTRUCT or SEG; the {what} '{mask_path}' is a label "
                                "map: choose its segments with --label.")


def read_masks(requests, image_path=None) -> list[sitk.Image]:
    """One mask per request ``(what, path, roi, fallback)``, each on its own (they may overlap).

    A label map file is read as it is (``roi`` must be None; the caller checks its labels). A DICOM RTSTRUCT or SEG gives its ROI
    ``roi`` as a 0/1 mask on the series in ``image_path``; without ``roi``, the file's only ROI, else the ROI named
    ``fallback`` (an observer named after its ROI), else an error listing the ROIs. Each DICOM file is read once.
    """
    from ..imageio import read_image

    masks = [None] * len(requests)
    wanted = {}  # DICOM file -> [(request index, ROI name)]
    for index, (what, path, roi, fallback) in enumerate(requests):
        if not is_dicom_mask(path):
            refuse_rois_of_label_map(path, [roi] if roi else None, what)
            masks[index] = read_image(path, what)
            continue
        check_series_folder(path, image_path, what)
        if roi is None:
            roi = only_roi(path, fallback, what, "pick one with --roi (or name the observer after its ROI)")
        wanted.setdefault(str(path), []).append((index, roi, what))
    for path, picks in wanted.items():
        rois = list(dict.fromkeys(roi for _, roi, _ in picks))
        segments = {s.name: s.mask for s in read_dicom_segments(path, image_path, rois, picks[0][2])}
        for index, roi, _ in picks:
            masks[index] = segments[roi]
    return masks


def only_roi(mask_path, fallback=None, what: str = "mask", how: str = "pick one with --roi") -> str:
    """The ROI to take from a DICOM ``mask_path`` when none is named: the file's only ROI, else the one named
    ``fallback`` (e.g. an observer named after its ROI), else an error listing the ROIs and saying ``how`` to pick."""
    names = roi_names(mask_path, what)
    if len(names) == 1:
        return names[0]
    if fallback is not None and fallback in names:
        return fallback
    raise RadiomicsLabError(f"The {what} '{mask_path}' holds the ROIs {', '.join(repr(n) for n in names)}; {how}.")


def check_seg_output(path, image_path, inputs=(), option: str = "--seg", image_role: str = "IMAGE"):
    """Check a DICOM SEG output before any work: ``image_path`` must be the folder of one complete DICOM series
    (the SEG references it), and ``path`` must end in ``.dcm``, be writable and be neither an input (``inputs``:
    (role, path) pairs) nor a file of the series. ``image_role`` names the image in the message (e.g. "the first
    --channel"). Returns the path."""
    from ..fileio import check_output
    from .write import _series_inputs, read_source_series

    if image_path is None or not Path(image_path).is_dir():
        given = f" (not '{image_path}')" if image_path is not None else ""
        raise RadiomicsLabError(f"{option} writes a DICOM SEG referencing the image's DICOM series: give {image_role} as the "
                                f"folder of that series{given}, or leave out {option}.")
    if not str(path).lower().endswith(".dcm"):
        raise RadiomicsLabError(f"Cannot write '{path}': {option} writes a DICOM SEG, so its name must end in .dcm "
                                "(e.g. seg.dcm).")
    series = read_source_series(image_path)
    inputs = list(inputs.items()) if isinstance(inputs, dict) else list(inputs)
    return check_output(path, [*inputs, *_series_inputs(series)], kind="file", option=option)


def label_map_of(segments: list, path, what: str = "mask") -> sitk.Image:
    """Segments (binary masks on one grid) as one label map, segment i -> label i (from 1); overlapping
    segments are refused, naming them."""
    first = segments[0].mask
    labels = np.zeros(sitk.GetArrayViewFromImage(first).shape, np.uint16)
    for label, segment in enumerate(segments, start=1):
        inside = sitk.GetArrayViewFromImage(segment.mask) > 0
        taken = np.unique(labels[inside & (labels > 0)])
        if taken.size:
            other = segments[int(taken[0]) - 1].name
            raise RadiomicsLabError(
                f"The ROIs '{other}' and '{segment.name}' of the {what} '{path}' overlap, and one mask holds each "
                f"voxel once: pick one of them with --roi (e.g. --roi '{segment.name}').")
        labels[inside] = label
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(first)
    return image


def observer_rois(masks, rois, names) -> tuple[list, list, list]:
    """(masks, ROI of each mask or None, names) after --roi: one DICOM MASK becomes one observer per ROI (the
    --roi names, default every ROI of the file), named after its ROI unless --names; with several MASKs --roi
    gives the ROI of every file (once for all, or once per MASK)."""
    masks, rois = list(masks), list(rois)
    if len(masks) == 1 and is_dicom_mask(masks[0]):
        rois = rois or roi_names(masks[0])
        return masks * len(rois), rois, names or rois
    if len(rois) > 1 and len(rois) != len(masks):
        raise RadiomicsLabError(f"--roi gives {len(rois)} ROI names for {len(masks)} masks; give one --roi for all "
                                "masks or one per mask in order (or a single MASK with one --roi per reader's ROI).")
    return masks, rois * len(masks) if len(rois) == 1 else rois or [None] * len(masks), names
