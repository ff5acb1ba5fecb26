"""Intensity discretisation (IBSI 1, section 2.7).

Fixed bin number:  x_d = floor(N_g (x - X_min) / (X_max - X_min)) + 1, and x_d = N_g where x = X_max.
Fixed bin size:    x_d = floor((x - X_min) / w_b) + 1, with X_min the lower re-segmentation bound
                   when there is one, else the lowest intensity in the ROI.
Grey levels are 1..N_g inside the mask and 0 outside.
"""

import numpy as np

from ..errors import RadiomicsLabError
from ..limits import check_grey_levels, fixed_bin_size_levels
from ._preprocessing_kernels import bounding_box
from .roi import Roi


def fixed_bin_number(image: np.ndarray, mask: np.ndarray, bin_number: int, box=None) -> tuple[np.ndarray, int]:
    """Grey levels with ``bin_number`` equal bins between the ROI's lowest and highest intensity (``box``: slices
    holding the mask, when known)."""
    if bin_number < 2:
        raise RadiomicsLabError(f"The bin number must be 2 or more (got {bin_number}).")
    box, values = _inside(image, mask, box)
    low, high = values.min(), values.max()
    check_grey_levels(int(bin_number), low, high, bin_count=bin_number)
    levels = np.zeros(image.shape, dtype=np.int64)
    if high == low:
        levels[box][mask[box]] = 1
    else:
        levels[box][mask[box]] = np.minimum(np.floor(bin_number * (values - low) / (high - low)).astype(np.int64) + 1,
                                            bin_number)
    return levels, int(bin_number)


def fixed_bin_size(image: np.ndarray, mask: np.ndarray, bin_width: float, minimum: float | None = None,
                   box=None) -> tuple[np.ndarray, int]:
    """Grey levels of width ``bin_width`` counted from ``minimum`` (default: the ROI's lowest intensity); ``box``:
    slices holding the mask, when known.

    The number of levels is the highest level present in the ROI.
    """
    if not bin_width > 0:
        raise RadiomicsLabError(f"The bin width must be greater than zero (got {bin_width}).")
    box, values = _inside(image, mask, box)
    low = values.min() if minimum is None else minimum
    if values.size:
        check_grey_levels(fixed_bin_size_levels(values.min(), values.max(), bin_width, low), values.min(), values.max(),
                          bin_width=bin_width)
    levels = np.zeros(image.shape, dtype=np.int64)
    if not values.size:
        return levels, 0
    inside = np.floor((values - low) / bin_width).astype(np.int64) + 1
    levels[box][mask[box]] = inside
    highest = int(inside.max())
    # levels.max(): the 0 outside the mask counts when some voxel is outside it
    return levels, highest if values.size == levels.size else max(highest, 0)


def _inside(image: np.ndarray, mask: np.ndarray, box=None) -> tuple:
    """(box, ``image[mask]``): a box holding the mask (``box``, else in 3D its bounding box, so that only the box is
    scanned) and the intensities in it, in the order of ``image[mask]``."""
    box = box or (bounding_box(mask) if mask.ndim == 3 else None)
    box = box or tuple(slice(None) for _ in range(mask.ndim))
    return box, image[box][mask[box]]


def discretise(roi: Roi, settings) -> Roi:
    """The Roi with grey levels for the intensity histogram and texture families."""
    if not roi.intensity_mask.any():
        raise RadiomicsLabError("The region of interest is empty after re-segmentation; widen the re-segmentation range.")
    if settings.discretisation == "FBN":
        levels, n = fixed_bin_number(roi.image, roi.intensity_mask, settings.bin_number, roi.masks_box())
    elif settings.discretisation == "FBS":
        lower = settings.resegment_range[0] if settings.resegment_range else None
        levels, n = fixed_bin_size(roi.image, roi.intensity_mask, settings.bin_width, lower, roi.masks_box())
    elif settings.discretisation == "none":
        values = roi.values()
        if not np.all(values == np.round(values)) or values.min() < 1:
            raise RadiomicsLabError("Discretisation 'none' needs integer intensities of 1 or more; use FBS or FBN.")
        levels = np.where(roi.intensity_mask, roi.image, 0).astype(np.int64)
        n = int(levels.max())
    else:
        raise RadiomicsLabError(f"Unknown discretisation '{settings.discretisation}'; use FBS, FBN or none.")
    return roi.with_levels(levels, n)
