"""Checks on an image and its mask before extraction: same grid, label present, finite voxels."""

import numpy as np
import SimpleITK as sitk

from .errors import RadiomicsLabError
from .limits import available_memory

#: Largest difference (mm, or direction cosine) still taken as the same grid.
GEOMETRY_TOLERANCE = 1e-5


def segment_name(label: int) -> str:
    """Name of the segment holding label value ``label`` (Slicer's own name for imported label maps)."""
    return f"Label_{label}"


#: Label map voxels counted at a time by :func:`labels_present` (``np.bincount`` converts its input to int64).
LABEL_COUNT_CHUNK = 1 << 22


def labels_present(mask: sitk.Image) -> list[int]:
    """The non-zero label values in ``mask``, ascending. A 3D map larger than :data:`LABEL_COUNT_CHUNK` is first cut
    to the slices that hold any label (one pass of ``any`` per slice): a tumour in a whole CT is read a tenth as much."""
    array = sitk.GetArrayViewFromImage(mask)
    if array.ndim == 3 and array.size > LABEL_COUNT_CHUNK:
        labelled = np.flatnonzero(array.reshape(array.shape[0], -1).any(axis=1))
        if not labelled.size:
            return []
        array = array[labelled[0]:labelled[-1] + 1]
    highest = int(array.max()) if np.issubdtype(array.dtype, np.integer) and array.size else None
    if highest is not None and 0 <= array.min() and highest < 1 << 20:
        flat = array.reshape(-1)   # linear time (np.unique sorts), a chunk at a time: no int64 copy of the whole map
        counts = np.zeros(highest + 1, dtype=np.int64)
        for start in range(0, flat.size, LABEL_COUNT_CHUNK):
            counts += np.bincount(flat[start:start + LABEL_COUNT_CHUNK], minlength=counts.size)
        return [int(v) for v in np.flatnonzero(counts) if v != 0]
    return [int(v) for v in np.unique(array) if v != 0]


def check_mask_is_label_map(mask: sitk.Image, where: str = "mask") -> sitk.Image:
    """Return ``mask`` as an integer image; refuse non-integer or negative values."""
    array = sitk.GetArrayViewFromImage(mask)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise RadiomicsLabError(f"The {where} has non-integer values; give a label map (0 = background, 1, 2, ... = segments).")
        mask = sitk.Cast(mask, sitk.sitkUInt32 if array.min() >= 0 else sitk.sitkInt32)
    if sitk.GetArrayViewFromImage(mask).min() < 0:
        raise RadiomicsLabError(f"The {where} has negative label values; give a label map (0 = background, 1, 2, ...).")
    return mask


def grid_differences(image: sitk.Image, mask: sitk.Image, tolerance: float = GEOMETRY_TOLERANCE) -> list[str]:
    """Which of size / spacing / origin / direction differ between two images, each with both values."""
    differences = []
    if image.GetDimension() != mask.GetDimension():
        return [f"dimension (image {image.GetDimension()}D, mask {mask.GetDimension()}D)"]
    for aspect in ("Size", "Spacing", "Origin", "Direction"):
        a, b = getattr(image, f"Get{aspect}")(), getattr(mask, f"Get{aspect}")()
        if not np.allclose(a, b, rtol=0, atol=0 if aspect == "Size" else tolerance):
            fmt = lambda v: "(" + ", ".join(f"{x:.6g}" for x in v) + ")"  # noqa: E731
            differences.append(f"{aspect.lower()} (image {fmt(a)}, mask {fmt(b)})")
    return differences


def match_mask_to_image(image: sitk.Image, mask: sitk.Image, resample_mask: bool = False) -> sitk.Image:
    """Return ``mask`` on ``image``'s grid.

    Identical grids (within :data:`GEOMETRY_TOLERANCE`) get the image's geometry copied exactly;
    different grids are an error unless ``resample_mask``, which resamples the mask with nearest
    neighbour interpolation (labels are kept, never blended).
    """
    differences = grid_differences(image, mask)
    if not differences:
        if mask.GetSpacing() != image.GetSpacing() or mask.GetOrigin() != image.GetOrigin() \
                or mask.GetDirection() != image.GetDirection():
            mask = sitk.Image(mask)
            mask.CopyInformation(image)
        return mask
    if differences[0].startswith("dimension") or not resample_mask:
        raise RadiomicsLabError(
            "Image and mask are on different grids: " + "; ".join(differences)
            + ". Use --resample-mask (resample_mask=True) to resample the mask onto the image grid "
            "with nearest-neighbour interpolation."
        )
    return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())


def check_label(mask: sitk.Image, label: int) -> int:
    """Number of voxels with ``label``; an error listing the labels present when there are none."""
    count = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask) == label))
    if count == 0:
        present = labels_present(mask)
        listing = ", ".join(map(str, present)) if present else "none (the mask is empty)"
        raise RadiomicsLabError(f"The mask has no voxels with label {label}; labels present: {listing}. Choose one of them.")
    return count


def check_finite_in_mask(image: sitk.Image, mask: sitk.Image, label: int, where: str = "") -> None:
    """Refuse NaN or infinite image voxels inside the segment (they would poison every feature)."""
    values = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad = int(np.count_nonzero(~np.isfinite(values[sitk.GetArrayViewFromImage(mask) == label])))
    if bad:
        raise RadiomicsLabError(
            f"The image has {bad} NaN or infinite voxel(s) inside {where or f'label {label}'}; "
            "fix the image or remove those voxels from the segment."
        )


def check_label_value(label, option: str = "--label") -> int:
    """Refuse a label value below 1 (0 is the background of a label map) before anything is read."""
    if label is not None and label < 1:
        raise RadiomicsLabError(
            f"{option} {label}: " + ("0 is the background (outside every segment)" if label == 0 else "label values are not negative")
            + f"; give the label value of a segment, 1 or more (see the mask's labels, or leave {option} out for all of them)."
        )
    return label


#: pyradiomics' default padding (voxels) around a segment's bounding box when it resamples.
RESAMPLING_PAD = 5


def check_resampling(image: sitk.Image, mask: sitk.Image, labels, params: dict) -> None:
    """Refuse a ``resampledPixelSpacing`` whose grid cannot be held in memory, before any feature work.

    Resampling covers each segment's bounding box plus :data:`RESAMPLING_PAD` voxels (pyradiomics; the
    IBSI engine needs at least that much): the voxel count at the new spacing, at 8 bytes a voxel, must fit
    in the memory available now. A negative spacing is refused too (0, or None in an ``ibsi:`` section's
    ``new_spacing``, keeps the axis' spacing).
    """
    key, spacing = "resampledPixelSpacing", None
    if isinstance(params, dict):
        spacing = (params.get("setting") or {}).get(key)
        if not spacing and isinstance(params.get("ibsi"), dict):
            key, spacing = "new_spacing", params["ibsi"].get("new_spacing")
    if not spacing or isinstance(spacing, (str, bytes)):
        return
    try:
        new = [0.0 if v is None else float(v) for v in spacing]
    except (TypeError, ValueError):
        return  # the settings validation reports a malformed value
    if len(new) != image.GetDimension():
        return
    if any(v < 0 for v in new):
        raise RadiomicsLabError(f"{key} {list(spacing)} has a negative value; give positive millimetres "
                                f"(0 keeps an axis' spacing), e.g. {_spacing_text(image.GetSpacing())}.")
    old = image.GetSpacing()
    new = [n if n > 0 else o for n, o in zip(new, old)]
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    available = available_memory()
    for label in labels:
        if not stats.HasLabel(int(label)):
            continue
        box = stats.GetBoundingBox(int(label))
        extent_mm = [box[image.GetDimension() + i] * old[i] for i in range(image.GetDimension())]
        voxels = int(np.prod([np.ceil(e / n) + 2 * RESAMPLING_PAD + 1 for e, n in zip(extent_mm, new)], dtype=float))
        if voxels * 8 > available:
            raise RadiomicsLabError(
                f"{key} {list(spacing)} would resample segment label {label} "
                f"({' x '.join(f'{e:.3g}' for e in extent_mm)} mm) to about {voxels:.3g} voxels ({voxels * 8 / 2**30:.3g} GiB), "
                f"more than the {available / 2**30:.3g} GiB of memory available; use a spacing close to the image's "
                f"({_spacing_text(old)} mm)."
            )


def _spacing_text(spacing) -> str:
    return "[" + ", ".join(f"{s:.3g}" for s in spacing) + "]"


