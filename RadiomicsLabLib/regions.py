"""Peritumoral and intratumoral regions: rings and shells around a segment by signed distance in mm.

Signed distance (mm, between voxel centres, anisotropic spacing respected through
``scipy.ndimage.distance_transform_edt(sampling=spacing)``):

    sd(x) = +min |x - p| over segment voxels p          for x outside the segment
    sd(x) = -min |x - q| over non-segment voxels q      for x inside the segment

The segment *grown* by ``r`` mm is ``{sd <= r}`` for ``r >= 0`` (a dilation with the closed
ball of radius ``r``) and ``{sd < r}`` for ``r < 0`` (an erosion: voxels whose whole closed ball
of radius ``|r|`` is inside). The ring from ``a`` to ``b`` mm is ``grow(b) - grow(a)``: e.g.
0 to +5 mm is the 5 mm margin outside the tumour, -2 to +2 mm the 4 mm band across its border,
-3 to 0 mm the tumour's outer 3 mm. Voxels beyond the image grid count as outside the segment.
"""

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import RadiomicsLabError
from .validation import grid_differences


def binary_mask(mask: sitk.Image, label: int | None = None, what: str = "mask") -> np.ndarray:
    """The segment as a boolean (z, y, x) array: ``mask == label``, or ``mask != 0`` without a label."""
    array = sitk.GetArrayViewFromImage(mask)
    inside = array != 0 if label is None else array == label
    if not inside.any():
        which = "no non-zero voxels" if label is None else f"no voxels with label {label}"
        raise RadiomicsLabError(f"The {what} has {which}; give a mask with the segment in it.")
    return inside


def spacing_zyx(image: sitk.Image) -> tuple:
    """Voxel spacing in array (z, y, x) order."""
    return tuple(image.GetSpacing()[::-1])


def signed_distance_mm(mask: sitk.Image, label: int | None = None, limit_mm: float | None = None) -> np.ndarray:
    """Signed distance map ``sd`` (mm, float64, (z, y, x)) of the segment; see the module docstring.

    With ``limit_mm``, distances inside the segment and outside up to ``limit_mm`` are exact, farther
    outside voxels hold a value beyond the limit: the work is cropped to the segment's bounding box
    grown by the limit (plus one voxel), which holds every segment voxel and, for every inside voxel,
    a nearest outside voxel (clamping a point onto the box only shortens its distance to the segment).
    """
    inside = binary_mask(mask, label)
    spacing = spacing_zyx(mask)
    box = bounding_box(inside, spacing, limit_mm)
    cropped = np.pad(inside[box], 1)  # one outside voxel all round: beyond the grid counts as outside
    to_segment = ndimage.distance_transform_edt(~cropped, sampling=spacing)
    to_outside = ndimage.distance_transform_edt(cropped, sampling=spacing)
    local = np.where(cropped, -to_outside, to_segment)[(slice(1, -1),) * cropped.ndim]
    if limit_mm is None:
        return local
    far = float(limit_mm) + max(spacing)  # voxels outside the box are farther than the limit
    distance = np.full(inside.shape, far)
    distance[box] = np.minimum(local, far)
    return distance


def bounding_box(inside: np.ndarray, spacing, limit_mm) -> tuple:
    """Slices of the bounding box of ``inside`` grown by ``limit_mm`` (+1 voxel) on each side, clipped to
    the array (the whole array when ``limit_mm`` is None)."""
    if limit_mm is None:
        return tuple(slice(0, n) for n in inside.shape)
    nonzero = np.argwhere(inside)
    pad = [int(np.ceil(max(limit_mm, 0) / sp)) + 1 for sp in spacing]
    return tuple(slice(max(0, lo - p), min(n, hi + 1 + p))
                 for lo, hi, p, n in zip(nonzero.min(axis=0), nonzero.max(axis=0), pad, inside.shape))


def grow(mask: sitk.Image, by_mm: float, label: int | None = None) -> sitk.Image:
    """The segment grown by ``by_mm`` (shrunk when negative) as a 0/1 UInt8 image on the mask's grid."""
    return image_on_grid(grow_array(signed_distance_mm(mask, label, limit_mm=max(by_mm, 0.0)), by_mm), mask)


def image_on_grid(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A (z, y, x) array as an image with ``reference``'s geometry (booleans as a 0/1 UInt8 mask, else its dtype)."""
    image = sitk.GetImageFromArray(array.astype(np.uint8) if array.dtype == bool else array)
    image.CopyInformation(reference)
    return image


def grow_array(distance: np.ndarray, by_mm: float) -> np.ndarray:
    """The segment grown by ``by_mm`` from its signed distance map: ``sd <= r`` (r >= 0) or ``sd < r`` (r < 0)."""
    return distance <= by_mm if by_mm >= 0 else distance < by_mm


def ring_array(distance: np.ndarray, start_mm: float, stop_mm: float) -> np.ndarray:
    """Voxels of ``grow(stop) - grow(start)`` (boolean array)."""
    return grow_array(distance, stop_mm) & ~grow_array(distance, start_mm)


def check_ring(start_mm: float, stop_mm: float) -> None:
    """Refuse empty or reversed distance ranges."""
    if not (np.isfinite(start_mm) and np.isfinite(stop_mm)):
        raise RadiomicsLabError("Ring distances must be finite numbers of millimetres.")
    if start_mm >= stop_mm:
        raise RadiomicsLabError(
            f"The ring from {start_mm:g} mm to {stop_mm:g} mm is empty: --from must be less than --to "
            "(negative = inside the segment, positive = outside; e.g. --from -2 --to 2).")


def ring(mask: sitk.Image, start_mm: float, stop_mm: float, clip: sitk.Image | None = None,
         label: int | None = None, clip_label: int | None = None) -> sitk.Image:
    """The ring from ``start_mm`` to ``stop_mm`` around the segment, as a 0/1 UInt8 image on the mask's grid.

    ``clip``: a body or organ mask on the same grid; the ring is limited to its non-zero voxels
    (or ``clip_label``), e.g. so a peritumoral shell does not extend into air or another organ.
    """
    check_ring(start_mm, stop_mm)
    allowed = None
    if clip is not None:
        differences = grid_differences(mask, clip)
        if differences:
            raise RadiomicsLabError("The clip mask is on a different grid from the mask: "
                                    + "; ".join(d.replace("image", "mask").replace("mask)", "clip)", 1) for d in differences)
                                    + ". Resample it onto the mask's grid first.")
        allowed = binary_mask(clip, clip_label, "clip mask")
    distance = signed_distance_mm(mask, label, limit_mm=max(stop_mm, 0.0))
    region = ring_array(distance, start_mm, stop_mm)
    if allowed is not None:
        region &= allowed
    return image_on_grid(region, mask)


def reaches_grid_border(region: sitk.Image) -> bool:
    """Whether a region touches the outer faces of its grid (a ring there is cut by the image's edge)."""
    array = sitk.GetArrayViewFromImage(region)
    return bool(any(np.take(array, index, axis=axis).any() for axis in range(array.ndim) for index in (0, -1)))


def volume_mm3(region: sitk.Image) -> float:
    """Volume of the non-zero voxels: count x voxel volume (mm^3)."""
    return float(np.count_nonzero(sitk.GetArrayViewFromImage(region)) * np.prod(region.GetSpacing()))
