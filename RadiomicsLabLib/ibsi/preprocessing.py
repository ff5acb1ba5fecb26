"""IBSI chapter 1 image processing (sections 2.1-2.6 of arXiv 1612.07003): image and mask -> Roi.

Steps, in the order IBSI prescribes them:

1. Data import: image and mask as float64 arrays (z, y, x). The mask is rounded (a float mask that
   says 0.99999 means 1) and ``mask != 0`` is the ROI. With ``round_intensities`` the image is
   rounded as well (IBSI's advice for the CT phantom in NIfTI: convert to float, round to integers).
2. Interpolation (section 2.4, "align grid centers"), per axis with original size ``n_a``,
   spacing ``s_a`` and new spacing ``s_b``::

       n_b     = ceil(n_a s_a / s_b)
       x_{b,g} = (n_a - 1 - (s_b / s_a)(n_b - 1)) / 2          (new origin in grid coordinates)
       x_{b,w} = x_{a,w} + (s_a (n_a - 1) - s_b (n_b - 1)) / 2  (new origin in world coordinates)

   New grid points sit at ``x_{b,g} + k s_b / s_a`` in original grid coordinates. Points outside
   the original grid take the nearest boundary intensity (IBSI: pad with the boundary intensity).
   Image: nearest neighbour, (bi/tri)linear or cubic spline (order 3 B-spline, i.e. IBSI's
   "tricubic spline"); mask: ``mask_interpolation`` of the 0/1 mask, then
   ``R_j = 1 if R_interp,j >= delta`` with ``delta = mask_threshold`` (IBSI partial volume, 0.5).
   A ``None`` spacing component keeps that axis (2D configurations interpolate in-plane only).
3. Rounding of interpolated intensities to the nearest integer (``round_intensities``, CT).
4. Re-segmentation (section 2.5) of the intensity mask; the morphological mask is the interpolated
   mask. Range: voxels outside the closed interval [a, b] leave the intensity mask (``None`` bound:
   half-open). Outliers: voxels outside [mu - 3 sigma, mu + 3 sigma] leave it, with mu and sigma
   (population standard deviation) of the intensities in the interpolated ROI before the range
   step; both filters combined are the intersection of the two intervals (as MIRP does; checked
   against the configuration E diagnostics).

``prepare_roi`` returns the Roi and the IBSI diagnostic features (``img_dim_x_init_img``,
``int_mask_vox_count_reseg_roi``, ...; see :data:`FEATURES`).
"""

import functools
import math
import numbers
import warnings

import numpy as np
import SimpleITK as sitk

from ..errors import RadiomicsLabError, RadiomicsLabWarning
from ..limits import BackgroundTasks, run_parts_in_background
from . import _preprocessing_kernels as _kernels
from .config import INTERPOLATIONS
from .roi import Roi

#: Spline order of each interpolation name.
_ORDERS = {"nearest": 0, "linear": 1, "cubic": 3}
#: Slack on the partial volume threshold, so that 0.4999999999 from rounding counts as 0.5 (IBSI 1, 5.2).
_THRESHOLD_SLACK = 1e-6
#: Relative tolerance on spacing / origin / direction when comparing the image and mask grids.
_GRID_TOLERANCE = 1e-4

_STAGES_IMAGE = {"init_img": "initial image", "interp_img": "interpolated image"}
_STAGES_ROI = {"init_roi": "initial ROI", "interp_roi": "interpolated ROI", "reseg_roi": "re-segmented ROI"}
_PYRADIOMICS_STAGE = {"init": "original", "interp": "interpolated", "reseg": "resegmented"}


def _describe():
    features = {}
    for stage, words in _STAGES_IMAGE.items():
        py = f"diagnostics_Image-{_PYRADIOMICS_STAGE[stage.split('_')[0]]}"
        for axis in "xyz":
            features[f"img_dim_{axis}_{stage}"] = {
                "name": f"Image dimension {axis} ({words})", "unit": "",
                "description": f"Number of voxels along {axis} of the {words}.", "pyradiomics": f"{py}_Size"}
            features[f"vox_dim_{axis}_{stage}"] = {
                "name": f"Voxel dimension {axis} ({words})", "unit": "mm",
                "description": f"Voxel spacing along {axis} of the {words}.", "pyradiomics": f"{py}_Spacing"}
        for key, word in (("mean", "Mean"), ("min", "Minimum"), ("max", "Maximum")):
            features[f"{key}_int_{stage}"] = {
                "name": f"{word} intensity ({words})", "unit": "intensity",
                "description": f"{word} intensity over the whole {words}.", "pyradiomics": f"{py}_{word}"}
    for stage, words in _STAGES_ROI.items():
        py = f"diagnostics_Mask-{_PYRADIOMICS_STAGE[stage.split('_')[0]]}"
        for axis in "xyz":
            features[f"int_mask_dim_{axis}_{stage}"] = {
                "name": f"Int. mask dimension {axis} ({words})", "unit": "",
                "description": f"Number of voxels along {axis} of the grid holding the {words} intensity mask.",
                "pyradiomics": f"{py}_Size"}
            for mask, label in (("int", "intensity"), ("morph", "morphological")):
                features[f"{mask}_mask_bb_dim_{axis}_{stage}"] = {
                    "name": f"{label.capitalize()} mask bounding box dimension {axis} ({words})", "unit": "",
                    "description": f"Extent in voxels along {axis} of the bounding box of the {words} {label} mask.",
                    "pyradiomics": f"{py}_BoundingBox (size part)" if mask == "int" else ""}
        for mask, label in (("int", "intensity"), ("morph", "morphological")):
            features[f"{mask}_mask_vox_count_{stage}"] = {
                "name": f"{label.capitalize()} mask voxel count ({words})", "unit": "",
                "description": f"Number of voxels in the {words} {label} mask.",
                "pyradiomics": f"{py}_VoxelNum" if mask == "int" else ""}
        for key, word in (("mean", "Mean"), ("min", "Minimum"), ("max", "Maximum")):
            features[f"int_mask_{key}_int_{stage}"] = {
                "name": f"Int. mask {word.lower()} intensity ({words})", "unit": "intensity",
                "description": f"{word} intensity inside the {words} intensity mask.",
                "pyradiomics": f"{py}_{word}" if stage != "init_roi" else ""}
    return features


#: IBSI diagnostic features (the ``Diagnostics-*`` rows of the configuration A-E tables):
#: tag -> name, unit, one-line description and the nearest pyradiomics diagnostics key ("" if none).
FEATURES = _describe()


def prepare_roi(image: sitk.Image, mask: sitk.Image, settings, crop_mm: float | None = None) -> tuple[Roi, dict]:
    """Interpolate, round and re-segment ``image`` and the ROI ``mask != 0`` as ``settings`` say.

    Returns the :class:`~RadiomicsLabLib.ibsi.roi.Roi` (arrays (z, y, x), spacing (z, y, x) mm) and
    the IBSI diagnostic features as ``{tag: value}`` ({} without ``settings.diagnostics``). The Roi's arrays hold the whole (interpolated) grid, or with
    ``crop_mm`` only the box of the ROI grown by that many mm (at least one voxel) on every side, clipped to the grid
    (``Roi.grid_start``: the box's first voxel): the features that read only the ROI and neighbours within
    ``crop_mm`` do not change, and the diagnostics never do. Raises
    :class:`~RadiomicsLabLib.errors.RadiomicsLabError` for bad settings, mismatched grids or an
    empty ROI.
    """
    roi, finish = start_roi(image, mask, settings, crop_mm)
    return roi, finish()


def start_roi(image: sitk.Image, mask: sitk.Image, settings, crop_mm: float | None = None):
    """:func:`prepare_roi` as ``(roi, finish)``: ``finish()`` returns the diagnostics. With ``crop_mm`` the image's
    own and the whole interpolated image's (min, max, mean) may still be on their way from the background thread
    (:func:`~RadiomicsLabLib.limits.run_parts_in_background`; with one thread: computed when ``finish()`` asks), so
    the caller can compute features meanwhile (the Roi's intensities are checked finite here); ``finish()`` waits for
    them, and raises RadiomicsLabError for NaN or infinite values anywhere else in the image. Call it before
    returning; where the features failed, ``finish(cancel=True)`` instead. An error here drops them too.

    Without ``settings.diagnostics`` (and with ``crop_mm``) neither is computed (the image's minimum only if the
    CT-range warning needs it), only the intensities the Roi keeps are checked finite, and ``finish()`` returns {}."""
    with BackgroundTasks() as started:   # an error drops the statistics' parts not started yet
        return _start_roi(image, mask, settings, crop_mm, started)


def _start_roi(image: sitk.Image, mask: sitk.Image, settings, crop_mm: float | None, started: BackgroundTasks):
    """:func:`start_roi`; ``started``: the block that holds the tasks it starts (``finish(cancel=True)`` drops them)."""
    check_settings(settings)
    check_same_grid(image, mask)
    whole_image = settings.diagnostics or crop_mm is None    # statistics of the whole image and interpolated grid
    # (the image's own may come from the background thread: ``image_statistics()``), and, where the whole interpolated
    # grid's compiled pass reads the whole image anyway (linearly onto a new grid, rounded, with ``crop_mm``), from
    # that pass, started at once
    as_view = _read_as_view(image, settings, crop_mm is not None)
    in_one_pass = whole_image and crop_mm is not None and as_view and settings.round_intensities and \
        target_spacing(_spacing(image), settings.new_spacing) != _spacing(image)
    image_array, spacing, image_statistics, round_on_read = _image_array(
        image, "image", settings.round_intensities, copy=not as_view, in_background=whole_image and not in_one_pass)
    new_spacing = target_spacing(spacing, settings.new_spacing)
    counting_pass = _whole_grid_pass(image, image_array, spacing, new_spacing, round_on_read, count_source=True) \
        if in_one_pass else None
    roi_mask = _mask_array(mask)
    box = _kernels.bounding_box(roi_mask)
    if box is None:
        raise RadiomicsLabError("The mask is empty: no voxel of the segmentation is set. "
                                "Choose a segment that contains voxels, or draw the region of interest first.")
    integral = settings.round_intensities or sitk.GetArrayViewFromImage(image).dtype.kind in "biu"

    # ROI statistics are taken on ``inside`` = the mask in ``box`` (a box holding every ROI voxel): the same
    # voxels in the same (C) order as on the whole grid, without scanning it.
    inside = roi_mask[box] != 0
    summary = _mask_summary(image_array, box, inside, integral, tight=True, rounding=round_on_read)
    initial_roi = _roi_diagnostics("init_roi", roi_mask.shape, summary, summary)
    initial_shape = image_array.shape

    grid = image_array.shape
    if new_spacing != spacing:
        grid, _ = interpolation_grid(image_array.shape, spacing, new_spacing)
        box, fraction = _interpolate_mask_box(roi_mask, box, spacing, new_spacing, settings.mask_interpolation)
        inside = fraction >= settings.mask_threshold - _THRESHOLD_SLACK
        if not inside.any():
            raise RadiomicsLabError(
                f"The region of interest vanished on interpolation to {_xyz(new_spacing)} mm (no voxel reached the "
                f"partial volume threshold {settings.mask_threshold}). Use a finer spacing or a lower mask threshold.")
        region = _crop_region(grid, box, new_spacing, crop_mm)
        image_values = image_array
        image_array, whole_statistics, counted = _interpolated_region(
            image, image_array, spacing, new_spacing, settings, round_on_read, region, whole_image, counting_pass)
        if counted is not None:     # the image's statistics came with the interpolated grid's
            image_statistics = _counted_statistics(counted, image, image_values, integral, round_on_read)
        box = _within(box, region)
        integral = settings.round_intensities
        summary = _mask_summary(image_array, box, inside, integral)
    else:   # the initial ROI's summary stands
        whole_statistics = image_statistics
        region = _crop_region(grid, box, spacing, crop_mm)
        if crop_mm is not None:
            image_array = _read(image_array[region], round_on_read)
        box = _within(box, region)
    # No intensity decides anything (the re-segmentation, its error, the features) before it is known to be finite:
    # the part of the grid kept here is checked now, the whole image with its statistics (``finish()``).
    if crop_mm is None:
        image_statistics()
    elif not np.isfinite(image_array).all():
        raise _not_finite("image")
    # from here on the arrays hold ``region`` of the grid (the whole grid without ``crop_mm``)
    roi_mask = np.zeros(image_array.shape, dtype=bool)
    roi_mask[box] = inside
    kept = resegment(image_array[box], inside, settings.resegment_range, settings.resegment_outliers,
                     getattr(settings, "outlier_sigma", 3.0))
    if not kept.any():
        raise RadiomicsLabError(
            f"The region of interest is empty after re-segmentation (range {settings.resegment_range}, "
            f"outlier filtering {'on' if settings.resegment_outliers else 'off'}): no ROI intensity lies in the "
            f"accepted range. Widen the re-segmentation range or check the image's intensity units.")
    intensity_mask = np.zeros(roi_mask.shape, dtype=bool)
    intensity_mask[box] = kept
    roi_diagnostics = {**_roi_diagnostics("interp_roi", grid, summary, summary),
                       **_roi_diagnostics("reseg_roi", grid, _mask_summary(image_array, box, kept, integral), summary)}

    # the morphological mask's bounding box (``inside`` is not empty), which the families crop to
    tight = tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, _kernels.bounding_box(inside)))
    roi = Roi(image_array, roi_mask, intensity_mask, new_spacing, box=tight,
              grid_start=tuple(r.start for r in region))
    # a negative value kept here is one of the image's own where the values kept lie within the image's range (linear
    # or nearest interpolation, or none): the whole image's lowest value is then needed only when there is none
    within_range = new_spacing == spacing or _ORDERS[settings.interpolation] <= 1
    hu_warning = ct_range_warning(image_array if within_range else None, roi_mask, intensity_mask,
                                  settings.resegment_range, lambda: _lowest_value(image, image_statistics))
    if hu_warning:
        roi.notes.append(hu_warning)
        warnings.warn(hu_warning, RadiomicsLabWarning, stacklevel=4)

    def finish(cancel: bool = False) -> dict:
        """The diagnostics, once the image's and the whole interpolated image's statistics are in (RadiomicsLabError
        for NaN or infinite values anywhere in the image); {} without ``settings.diagnostics``. With ``cancel``
        (the caller's features failed: it will not read them): {}, their parts not started yet dropped."""
        if cancel:
            started.cancel()
        if cancel or not settings.diagnostics:
            return {}
        return {**_image_diagnostics(initial_shape, spacing, "init_img", image_statistics()), **initial_roi,
                **_image_diagnostics(grid, new_spacing, "interp_img", whole_statistics()), **roi_diagnostics}

    return roi, finish


def _lowest_value(image: sitk.Image, image_statistics) -> float:
    """The image's lowest intensity, for the CT-range warning: its statistics' minimum, or where it holds NaN or
    infinite values (which, outside the part the engine keeps, only the diagnostics reject, in ``finish()``) its
    lowest finite one."""
    try:
        return image_statistics()[0]
    except RadiomicsLabError:
        view = sitk.GetArrayViewFromImage(image)
        return float(np.min(view, where=np.isfinite(view), initial=np.inf))


#: A re-segmentation range whose lower bound is at or below this is a CT range in Hounsfield units (IBSI
#: configurations use -500 and -1000: lung and air); an image without any negative value cannot be a CT in HU.
CT_RANGE_LOWER_HU = -500.0


def ct_range_warning(image_array, roi_mask, intensity_mask, resegment_range, minimum) -> str:
    """A warning when a CT (Hounsfield unit) re-segmentation range is applied to an image that is not a CT in HU
    (no negative intensity anywhere: PET in SUV, MR), saying how much of the ROI it removed; else ``""``.
    ``image_array``: intensities of the image (or None), any negative one of which settles it; ``minimum``: a
    function that returns the image's lowest intensity, called only where ``image_array`` does not settle it."""
    if not resegment_range or resegment_range[0] is None or resegment_range[0] > CT_RANGE_LOWER_HU:
        return ""
    if (image_array is not None and image_array.size and float(np.min(image_array)) < 0) or float(minimum()) < 0:
        return ""
    removed = 1.0 - float(intensity_mask.sum()) / float(roi_mask.sum())
    low, high = resegment_range
    return (f"The settings re-segment to [{low:g}, {'' if high is None else f'{high:g}'}], a CT range in Hounsfield "
            f"units, but this image has no negative intensity (a PET or MR image?): {removed:.0%} of the region of "
            f"interest was left out. For PET or MR use settings without a HU range (e.g. pyradiomics-default, or "
            f"your own re-segmentation range in the image's units).")


# ----------------------------------------------------------------------------------------- checks

def check_settings(settings) -> None:
    """Raise RadiomicsLabError for preprocessing settings that cannot work."""
    for label, name in (("image", settings.interpolation), ("mask", settings.mask_interpolation)):
        if name not in _ORDERS:
            raise RadiomicsLabError(f"Unknown {label} interpolation '{name}'; use one of {', '.join(INTERPOLATIONS)}.")
    if settings.new_spacing is not None:
        values = tuple(settings.new_spacing)
        if len(values) != 3:
            raise RadiomicsLabError(f"The new spacing must have three values (x, y, z) in mm, None to keep an axis "
                                    f"(got {settings.new_spacing}).")
        for axis, value in zip("xyz", values):
            if value is not None and not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
                raise RadiomicsLabError(f"The new spacing along {axis} must be a positive number of mm or None "
                                        f"(got {value}).")
    threshold = settings.mask_threshold
    if not (isinstance(threshold, numbers.Real) and 0 < threshold <= 1):
        raise RadiomicsLabError(f"The mask partial volume threshold must be in (0, 1] (got {threshold}); 0.5 is usual.")
    if settings.resegment_range is not None:
        bounds = tuple(settings.resegment_range)
        if len(bounds) != 2:
            raise RadiomicsLabError(f"The re-segmentation range must be (lower, upper), either may be None "
                                    f"(got {settings.resegment_range}).")
        lower, upper = bounds
        if lower is not None and upper is not None and lower > upper:
            raise RadiomicsLabError(f"The re-segmentation range is inverted: lower bound {lower} is above upper bound "
                                    f"{upper}. Give it as (lower, upper).")
    sigma = getattr(settings, "outlier_sigma", 3.0)
    if settings.resegment_outliers and not (sigma > 0):
        raise RadiomicsLabError(f"The outlier filter width must be a positive number of standard deviations (got {sigma}).")


def check_same_grid(image: sitk.Image, mask: sitk.Image) -> None:
    """Raise RadiomicsLabError unless image and mask share size, spacing, origin and direction."""
    if image.GetDimension() != mask.GetDimension() or image.GetSize() != mask.GetSize():
        raise RadiomicsLabError(f"The image ({_size(image)} voxels) and the mask ({_size(mask)} voxels) are not on the "
                                f"same grid. Resample the mask onto the image grid first.")
    scale = max(max(image.GetSpacing()), 1.0)
    checks = (("spacing", image.GetSpacing(), mask.GetSpacing(), scale),
              ("origin", image.GetOrigin(), mask.GetOrigin(), scale),
              ("direction", image.GetDirection(), mask.GetDirection(), 1.0))
    for what, a, b, unit in checks:
        if not all(x == y or abs(x - y) <= _GRID_TOLERANCE * unit for x, y in zip(a, b)):
            raise RadiomicsLabError(f"The image and the mask are not on the same grid: their {what} differs "
                                    f"({_fmt(a)} vs {_fmt(b)}). Resample the mask onto the image grid first.")


def _spacing(image: sitk.Image) -> tuple:
    """The image's spacing in (z, y, x) order."""
    return tuple(float(s) for s in image.GetSpacing()[::-1])


def _read_as_view(image: sitk.Image, settings, cropped: bool) -> bool:
    """Whether :func:`start_roi` reads the 3D ``image``'s voxels as they are (rounded on read), without a float64 copy
    of the whole image: the compiled trilinear interpolation onto a new grid reads them so, and so does the crop
    (``cropped``) of an image kept on its grid."""
    if image.GetDimension() != 3:
        return False
    spacing = _spacing(image)
    if target_spacing(spacing, settings.new_spacing) == spacing:
        return cropped
    return _ORDERS.get(settings.interpolation) == 1


def _image_array(image: sitk.Image, label: str, rounding: bool = False, copy: bool = True,
                 in_background: bool = True) -> tuple[np.ndarray, tuple, object, bool]:
    """The image as a new float64 (z, y, x) array, rounded to integers (``np.rint``) with ``rounding``, its
    (z, y, x) spacing, a function that returns the (min, max, mean) of its values (finite: NaN or infinity raise
    RadiomicsLabError, here already) and False. Without ``copy``, an image of one of :data:`CONVERTED_TYPES`, or of
    another integer type of at most 32 bits (int32, uint8, ...: statistics by numpy, :func:`_integer_statistics`), comes
    back as SimpleITK's read-only view of its voxels and whether its readers must still round (``np.rint``) each
    value; the statistics of the rounded values are then taken on the background thread
    (:func:`~RadiomicsLabLib.limits.run_parts_in_background`, ``image`` held meanwhile; without ``in_background`` or
    with one thread: on the function's first call, in its caller's thread) and the function waits for them and raises
    for NaN or infinity."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise RadiomicsLabError(f"The {label} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                                f"give a single-channel (scalar) {label}.")
    if image.GetDimension() not in (2, 3):
        raise RadiomicsLabError(f"The {label} is {image.GetDimension()}D; give a 2D or 3D {label}.")
    view = sitk.GetArrayViewFromImage(image)
    spacing = _spacing(image)
    if image.GetDimension() == 2:
        view, spacing = view[np.newaxis], (1.0, *spacing)
    integers = view.dtype.kind in "biu"          # integers need no rounding
    compiled = view.dtype in CONVERTED_TYPES and view.flags.c_contiguous
    if not copy and (compiled or (integers and view.dtype.itemsize <= 4 and view.flags.c_contiguous)):
        # statistics only, the image read in place (the callers convert the part they keep): by the compiled pass,
        # or for another integer type (int32, uint8, ...) by numpy
        round_on_read = rounding and not integers
        if compiled:
            statistics = _read_statistics(view, rounding or integers, round_on_read, image if in_background else None)
        else:
            statistics = functools.partial(_integer_statistics, view)
            if in_background:
                statistics = _first(run_parts_in_background(statistics, [()], holding=image))
        return view, spacing, functools.cache(lambda: _finite(statistics(), label)), round_on_read
    if compiled:   # converted, rounded and summed in one pass
        array = np.empty(view.shape, dtype=np.float64)
        statistics = _grid_statistics(array, rounding or integers, rounding and not integers, source=view)
    else:
        array = view.astype(np.float64)
        statistics = _grid_statistics(array, rounding or integers, rounding and not integers)
    return array, spacing, functools.partial(tuple, _finite(statistics, label)), False


def _first(results):
    """A function returning the first of ``results()``."""
    return lambda: results()[0]


def _finite(statistics: tuple, label: str) -> tuple:
    """``statistics`` (min, max, mean) when finite; RadiomicsLabError for an image with NaN or infinite values."""
    if not (math.isfinite(statistics[0]) and math.isfinite(statistics[1])) or math.isnan(statistics[2]):
        raise _not_finite(label)
    return statistics


def _not_finite(label: str) -> RadiomicsLabError:
    return RadiomicsLabError(f"The {label} contains NaN or infinite values; replace them before extraction.")


def _exact_sum(total: float, count: int, low: float, high: float, integral: bool) -> bool:
    """Whether a float64 sum of ``count`` values in [``low``, ``high``] is exact in any order (so equal to numpy's
    pairwise sum): the values are integers (``integral``) and every partial sum is below 2^53 in magnitude."""
    return integral and count > 0 and math.isfinite(total) and count * max(-low, high) <= 2.0 ** 53


#: Voxel types that the compiled passes read as they are (CT's int16, MR's uint16, float images): :func:`_image_array`
#: converts them to float64 in the pass that takes the statistics, and the trilinear interpolation reads them without
#: a float64 copy of the whole image (their kernels are compiled at install, :mod:`~RadiomicsLabLib.warmup`); others
#: are converted by numpy first.
CONVERTED_TYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int16), np.dtype(np.uint16))


#: The 16-bit integer types of :data:`CONVERTED_TYPES`, summarised on integers
#: (:func:`._preprocessing_kernels.short_grid_stats`).
_SHORT_TYPES = (np.dtype(np.int16), np.dtype(np.uint16))


def _grid_statistics(array: np.ndarray, integral: bool, rounding: bool = False, source=None,
                     write: bool = True) -> tuple:
    """(min, max, mean) of ``array`` (float64, C order), rounded in place first with ``rounding``, as numpy gives
    them, in one compiled pass: the mean is sum / size when that sum is exact (``integral``: every value is an
    integer), else numpy's. A NaN makes the mean NaN (not always the min and max). Empty: (0, 0, NaN).
    ``source``: an array of the same shape (C order) that the pass first copies into ``array``. Without ``write``,
    ``array`` (any of :data:`CONVERTED_TYPES`, C order) is only read, each value rounded with ``rounding``."""
    if array.size == 0:
        if source is not None:
            array[...] = source
        return 0.0, 0.0, float("nan")
    out = array if write else None
    read = array if source is None else source
    write = write and (rounding or source is not None)
    stats = _compiled_statistics(read, rounding, out, write)
    return _statistics(stats, array.size, integral, lambda: array.mean() if write else _read(array, rounding).mean())


def _compiled_statistics(read: np.ndarray, rounding: bool, out: np.ndarray | None = None, write: bool = False) -> tuple:
    """The compiled pass's (min, max, sum) of ``read`` (one of :data:`CONVERTED_TYPES`, C order; 16-bit integers by
    :func:`._preprocessing_kernels.short_grid_stats`), each value rounded with ``rounding``; with ``write`` the values
    go to ``out`` (float64, the same shape), without it nothing is written."""
    out = np.empty((1,) * read.ndim) if out is None else out
    return _kernels.short_grid_stats(read, out, write) if read.dtype in _SHORT_TYPES else \
        _kernels.grid_stats(read, out, rounding, write)


def _statistics(stats, size: int, integral: bool, numpy_mean) -> tuple:
    """(min, max, mean) from a compiled pass's (min, max, sum) of ``size`` values: the mean is sum / size where the sum
    is exact (:func:`_exact_sum`), else ``numpy_mean()``."""
    low, high, total = (float(v) for v in stats)
    if _exact_sum(total, size, low, high, integral):
        return low, high, total / size
    return low, high, float(numpy_mean())


#: Values per part of the passes over a whole image for its statistics (:func:`_read_statistics`, the whole
#: interpolated grid's in :func:`_interpolated_region`): about 8 ms of work each on the development VM.
STATISTICS_PART_VALUES = 2 ** 22


def _parts(shape: tuple) -> list:
    """(first plane, planes) of the consecutive parts of a (z, ...) grid of ``shape`` holding about
    :data:`STATISTICS_PART_VALUES` values each (at least one plane; one part for a grid below that)."""
    planes = max(1, STATISTICS_PART_VALUES // max(1, math.prod(shape[1:])))
    return [(first, min(planes, shape[0] - first)) for first in range(0, shape[0], planes)]


def _combined(parts: list) -> tuple:
    """(min, max, sum) of the parts' (min, max, sum), the sums added in order, a NaN kept (numpy's minimum and
    maximum); (inf, -inf, 0) for none."""
    if not parts:
        return math.inf, -math.inf, 0.0
    low, high, total = np.asarray(parts, dtype=np.float64).T
    return float(low.min()), float(high.max()), float(sum(total.tolist()))


def _read_statistics(view: np.ndarray, integral: bool, rounding: bool, holding=None):
    """A function returning :func:`_grid_statistics` of ``view`` (one of :data:`CONVERTED_TYPES`, C order), only read,
    each value rounded with ``rounding``. With ``holding`` (the image whose buffer ``view`` is, held meanwhile) the
    pass starts now on the background thread in parts of planes (:func:`_parts`,
    :func:`~RadiomicsLabLib.limits.run_parts_in_background`: the caller computes those not started yet when it asks);
    without, it runs when the function is called, in the caller's thread."""
    if holding is None or view.size == 0:
        return functools.partial(_grid_statistics, view, integral, rounding, write=False)
    parts = run_parts_in_background(_compiled_statistics, [(view[first:first + planes], rounding)
                                                           for first, planes in _parts(view.shape)], holding=holding)
    return lambda: _view_statistics(_combined(parts()), view, integral, rounding)


def _view_statistics(sums: tuple, view: np.ndarray, integral: bool, rounding: bool) -> tuple:
    """(min, max, mean) of ``view``'s values, each rounded with ``rounding``, from their (min, max, sum) ``sums``
    (:func:`_statistics`; numpy's mean of the rounded values where the sum is not exact)."""
    return _statistics(sums, view.size, integral, lambda: _read(view, rounding).mean())


def _counted_statistics(counted, owner: sitk.Image, values: np.ndarray, integral: bool, rounding: bool):
    """A function returning the (min, max, mean) of ``values`` (the image's voxels, a view of ``owner``'s buffer, which
    it holds; read rounded with ``rounding``) from ``counted()``, their (min, max, sum) taken in the whole interpolated
    grid's pass (:func:`_interpolated_region`), as :func:`_image_array`'s function gives them (finite: NaN or infinity
    raise RadiomicsLabError)."""
    held = (owner, values)
    return functools.cache(lambda: _finite(_view_statistics(counted(), held[1], integral, rounding), "image"))


def _integer_statistics(values: np.ndarray) -> tuple:
    """(min, max, mean) of an integer array (at most 32 bits) as numpy gives them for its float64 copy, without the
    copy: the mean is the exact integer sum / size where a float64 sum is exact in any order (:func:`_exact_sum`),
    else numpy's mean of the copy. Empty: (0, 0, NaN), as :func:`_grid_statistics`."""
    if values.size == 0:
        return 0.0, 0.0, float("nan")
    low, high = float(values.min()), float(values.max())
    total = float(values.sum(dtype=np.int64))   # exact: |total| < 2^63 for 32-bit values in any image that fits
    if _exact_sum(total, values.size, low, high, True):
        return low, high, total / values.size
    return low, high, float(values.astype(np.float64).mean())


def _read(values: np.ndarray, rounding: bool) -> np.ndarray:
    """``values`` as a new float64 array, each rounded (``np.rint``) with ``rounding``."""
    values = np.asarray(values, dtype=np.float64).copy()
    return np.rint(values, out=values) if rounding else values


def _mask_array(mask: sitk.Image) -> np.ndarray:
    """The mask as a (z, y, x) array whose non-zero voxels are the ROI: an integer mask (label map) as SimpleITK's
    read-only view of its voxels (no copy: the callers read the ROI's box of it; keep ``mask`` alive meanwhile),
    a float mask as ``rint(mask) != 0`` (boolean: the float copy, finiteness check and rounding it needs)."""
    if mask.GetNumberOfComponentsPerPixel() == 1 and mask.GetDimension() in (2, 3) and \
            np.dtype(sitk.GetArrayViewFromImage(mask).dtype).kind in "biu":
        array = sitk.GetArrayViewFromImage(mask)
        return array[np.newaxis] if mask.GetDimension() == 2 else array
    mask_array, _, _, _ = _image_array(mask, "mask", rounding=True)
    return mask_array != 0


# ---------------------------------------------------------------------------------- interpolation

def target_spacing(spacing: tuple, new_spacing_xyz) -> tuple:
    """The (z, y, x) spacing after interpolation: ``new_spacing_xyz`` (x, y, z), None components keep the axis."""
    if new_spacing_xyz is None:
        return tuple(spacing)
    return tuple(float(s) if s is not None else old for s, old in zip(tuple(new_spacing_xyz)[::-1], spacing))


def interpolation_grid(size, spacing, new_spacing) -> tuple[tuple, tuple]:
    """IBSI "align grid centers" (section 2.4): per axis ``n_b = ceil(n_a s_a / s_b)`` and the grid origin
    ``x_{b,g} = (n_a - 1 - (s_b / s_a)(n_b - 1)) / 2`` in original grid coordinates.

    Axes whose spacing does not change keep their size and origin (0). Any axis order, all three in the same.
    """
    new_size, origin = [], []
    for n_a, s_a, s_b in zip(size, spacing, new_spacing):
        if s_b == s_a:
            new_size.append(int(n_a))
            origin.append(0.0)
            continue
        # Round the fraction first so that e.g. 100.00000000001 does not become 101.
        n_b = max(1, int(math.ceil(round(n_a * s_a / s_b, 9))))
        new_size.append(n_b)
        origin.append(0.5 * (n_a - 1 - (s_b / s_a) * (n_b - 1)))
    return tuple(new_size), tuple(origin)


def interpolated_geometry(image: sitk.Image, new_spacing_xyz) -> tuple[tuple, tuple, tuple]:
    """(size, spacing, origin) in SimpleITK (x, y, z) order of the grid ``prepare_roi`` interpolates ``image`` to.

    Use it to write a Roi array back as an image: ``x_{b,w} = x_{a,w} + D (s_a (n_a - 1) - s_b (n_b - 1)) / 2``
    with D the image direction.
    """
    spacing_xyz = tuple(float(s) for s in image.GetSpacing())
    wanted = None if new_spacing_xyz is None else tuple(new_spacing_xyz)[:image.GetDimension()]
    new_xyz = target_spacing(spacing_xyz[::-1], wanted)[::-1]
    size, origin_g = interpolation_grid(image.GetSize(), spacing_xyz, new_xyz)
    shift = np.asarray(origin_g) * np.asarray(spacing_xyz)
    direction = np.asarray(image.GetDirection()).reshape(image.GetDimension(), image.GetDimension())
    origin = tuple(float(v) for v in np.asarray(image.GetOrigin()) + direction @ shift)
    return size, new_xyz, origin


def interpolate(array: np.ndarray, spacing: tuple, new_spacing: tuple, method: str, rounding: bool = False,
                source_rounding: bool = False) -> np.ndarray:
    """``array`` (z, y, x) with ``spacing`` interpolated onto the IBSI grid with ``new_spacing`` (both (z, y, x)).

    ``method``: nearest | linear | cubic (B-spline of order 3 through the voxel values). Outside the
    original grid the nearest boundary value is used (IBSI: pad with the boundary intensity).
    ``rounding``: the interpolated values rounded to the nearest integer (``np.rint``); ``source_rounding``: the
    values of ``array`` rounded first (linear interpolation of a 3D array only).
    """
    order = _ORDERS[method]
    new_size, origin = interpolation_grid(array.shape, spacing, new_spacing)
    step = np.asarray(new_spacing, dtype=np.float64) / np.asarray(spacing, dtype=np.float64)
    if order == 0:
        # Nearest neighbour by explicit index rounding (half away from the grid origin is ambiguous in
        # spline code); separable, so index each axis.
        indices = [np.clip(np.floor(o + np.arange(n) * s + 0.5).astype(np.intp), 0, m - 1)
                   for o, n, s, m in zip(origin, new_size, step, array.shape)]
        result = array[np.ix_(*indices)].astype(np.float64)
    elif order == 1 and array.ndim == 3:
        # scipy's zoom_shift arithmetic, bit for bit, as a compiled loop (see _preprocessing_kernels)
        source, shift, step = _linear_arguments(array, spacing, new_spacing)
        return _kernels.trilinear(source, shift, step, tuple(int(n) for n in new_size), (0, 0, 0), (0, 0, 0),
                                  bool(rounding), bool(source_rounding))
    else:
        from scipy import ndimage   # imported here: ~0.15 s that only spline orders other than 1 need

        result = ndimage.affine_transform(array, step, offset=origin, output_shape=new_size, order=order,
                                          mode="nearest", prefilter=order > 1, output=np.float64)
    return np.rint(result, out=result) if rounding else result


def _linear_arguments(array: np.ndarray, spacing: tuple, new_spacing: tuple) -> tuple:
    """(source, shift, zoom) of :func:`._preprocessing_kernels.trilinear` onto the new grid: ``array`` itself when
    the kernel reads its type (:data:`CONVERTED_TYPES`, C order), else a float64 copy."""
    _, origin = interpolation_grid(array.shape, spacing, new_spacing)
    step = np.asarray(new_spacing, dtype=np.float64) / np.asarray(spacing, dtype=np.float64)
    source = array if array.dtype in CONVERTED_TYPES and array.flags.c_contiguous else \
        np.ascontiguousarray(array, dtype=np.float64)    # read as float64 by the kernel: no copy
    return source, np.asarray(origin, dtype=np.float64) / step, step


def interpolate_mask(mask: np.ndarray, spacing: tuple, new_spacing: tuple, method: str) -> np.ndarray:
    """``interpolate((mask != 0).astype(float64), ...)``, computed only where it can be non-zero.

    With nearest neighbour or linear interpolation a new grid point depends only on the original voxels
    within one voxel of it, so points farther than one voxel from the mask's bounding box are 0; only the
    new grid points inside that margin are interpolated, with the coordinates of the whole grid, so the
    values are those of :func:`interpolate` (on a mask touching the grid's edge the margin runs to the new
    grid's edge, where the boundary value is repeated). Cubic splines (global prefilter) interpolate the
    whole grid.
    """
    new_size, _ = interpolation_grid(mask.shape, spacing, new_spacing)
    present = _kernels.bounding_box(mask)
    if present is None:
        return interpolate(mask.astype(np.float64), spacing, new_spacing, method)
    box, fraction = _interpolate_mask_box(mask, present, spacing, new_spacing, method)
    if fraction.shape == tuple(new_size):
        return fraction
    out = np.zeros(new_size, dtype=np.float64)
    out[box] = fraction
    return out


def _interpolate_mask_box(mask: np.ndarray, present: tuple, spacing: tuple, new_spacing: tuple,
                          method: str) -> tuple[tuple, np.ndarray]:
    """(box, values): :func:`interpolate_mask` in a box of the new grid outside which it is 0 (the whole grid
    for cubic splines or a 2D array). ``mask``: non-zero inside (any type); ``present``: its bounding box (slices)."""
    order = _ORDERS[method]
    new_size, origin = interpolation_grid(mask.shape, spacing, new_spacing)
    if order > 1 or mask.ndim != 3:
        return tuple(slice(0, n) for n in new_size), interpolate((mask != 0).astype(np.float64), spacing, new_spacing,
                                                                 method)
    step = np.asarray(new_spacing, dtype=np.float64) / np.asarray(spacing, dtype=np.float64)
    box = []
    for axis, (o, n_b, s, n_a) in enumerate(zip(origin, new_size, step, mask.shape)):
        low, high = present[axis].start, present[axis].stop - 1
        first = 0 if low == 0 else max(0, int(math.floor((low - 1 - o) / s)))
        last = n_b - 1 if high == n_a - 1 else min(n_b - 1, int(math.ceil((high + 1 - o) / s)))
        box.append(slice(first, last + 1))
    box = tuple(box)
    if order == 0:
        indices = [np.clip(np.floor(o + np.arange(b.start, b.stop) * s + 0.5).astype(np.intp), 0, m - 1)
                   for o, b, s, m in zip(origin, box, step, mask.shape)]
        return box, (mask[np.ix_(*indices)] != 0).astype(np.float64)
    # Only the mask's bounding box and one voxel around it (0 where inside the grid) are read: the kernel
    # clamps indices to this crop, whose edge planes are 0 or the grid's own edge.
    crop = tuple(slice(max(0, p.start - 1), min(n, p.stop + 1)) for p, n in zip(present, mask.shape))
    values = (mask[crop] != 0).view(np.uint8)
    shift = np.asarray(origin, dtype=np.float64) / step
    fraction = _kernels.trilinear(values, shift, step, tuple(b.stop - b.start for b in box),
                                  tuple(b.start for b in box), tuple(c.start for c in crop), False, False)
    return box, fraction


def _crop_region(grid: tuple, box: tuple, spacing: tuple, crop_mm: float | None) -> tuple:
    """The part of a grid of shape ``grid`` (spacing (z, y, x) mm) that :func:`prepare_roi` keeps: the whole grid
    without ``crop_mm``, else ``box`` (slices) grown by floor(crop_mm / spacing) voxels, at least one, per side."""
    if crop_mm is None:
        return tuple(slice(0, n) for n in grid)
    margins = [max(1, int(math.floor(crop_mm / s))) for s in spacing]
    return tuple(slice(max(b.start - m, 0), min(b.stop + m, n)) for b, m, n in zip(box, margins, grid))


def _within(box: tuple, region: tuple) -> tuple:
    """``box`` (slices of a grid) as slices of ``region`` of that grid."""
    return tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region))


def _interpolated_region(owner: sitk.Image, array: np.ndarray, spacing: tuple, new_spacing: tuple, settings,
                         source_rounding: bool, region: tuple, whole_statistics: bool = True, counting_pass=None):
    """(``region`` (slices of the new grid) of ``array`` interpolated as ``settings`` say, a function that returns
    the (min, max, mean) of the whole interpolated image as numpy gives them (None without ``whole_statistics``), and
    with ``counting_pass`` (what :func:`_whole_grid_pass` counting the image returned, started by the caller) a
    function that returns the (min, max, sum) of ``array``'s own values (rounded with ``source_rounding``) taken in
    that pass, else None).

    A part of the grid of a 3D image interpolated linearly is interpolated alone, unless the whole grid's statistics
    are wanted of values not rounded. Those of rounded values come from a compiled pass that keeps no values
    (:func:`_whole_grid_pass`: no whole-grid array to allocate and fill; ``counting_pass`` where given, also when the
    region is the whole grid); should its sum not be exact (:func:`_exact_sum`), the function interpolates the whole
    grid (it holds ``owner``, whose buffer ``array`` may be a view of, for that, so it may be called after the caller
    let go of the image). Otherwise the whole grid is interpolated, cropped and summarised (with ``whole_statistics``)
    at once."""
    grid, _ = interpolation_grid(array.shape, spacing, new_spacing)
    part = any(r.start != 0 or r.stop != n for r, n in zip(region, grid))
    linear = _ORDERS[settings.interpolation] == 1 and array.ndim == 3
    passes, arguments = counting_pass or (None, None)
    if passes is None and whole_statistics and part and linear and settings.round_intensities:
        passes, arguments = _whole_grid_pass(owner, array, spacing, new_spacing, source_rounding, count_source=False)
    if part and linear and (passes is not None or not whole_statistics):
        # the pass's own arguments: one float64 copy of an image of another type (int32, uint8, ...), not two
        source, shift, step = arguments or _linear_arguments(array, spacing, new_spacing)
        values = _kernels.trilinear(source, shift, step, tuple(r.stop - r.start for r in region),
                                    tuple(r.start for r in region), (0, 0, 0), bool(settings.round_intensities),
                                    bool(source_rounding))
    else:
        whole = interpolate(array, spacing, new_spacing, settings.interpolation, settings.round_intensities,
                            source_rounding=source_rounding)
        values = np.ascontiguousarray(whole[region]) if part else whole
        if passes is None and whole_statistics:
            return values, functools.partial(tuple, _grid_statistics(np.ascontiguousarray(whole),
                                                                      settings.round_intensities)), None
    if passes is None:
        return values, None, None
    held = (owner, array)      # the fallback below reads ``array``, which may be a view of ``owner``'s buffer

    def statistics() -> tuple:
        low, high, total = (float(v) for v in _combined([interpolated for interpolated, _ in passes()]))
        size = math.prod(grid)
        if _exact_sum(total, size, low, high, True):
            return low, high, total / size
        whole = interpolate(held[1], spacing, new_spacing, settings.interpolation, True,
                            source_rounding=source_rounding)
        return _grid_statistics(np.ascontiguousarray(whole), True)

    return values, statistics, None if counting_pass is None else lambda: _combined([own for _, own in passes()])


def _whole_grid_pass(owner: sitk.Image, array: np.ndarray, spacing: tuple, new_spacing: tuple, source_rounding: bool,
                     count_source: bool):
    """Starts the compiled pass over the whole grid of the 3D ``array`` interpolated linearly onto ``new_spacing``,
    its values rounded (:func:`_interpolated_part`), in parts of :func:`_parts` on the background threads
    (:func:`~RadiomicsLabLib.limits.run_parts_in_background`; ``owner``, whose buffer ``array`` may be a view of, held
    until they end); with ``count_source`` the parts also take the statistics of the planes of ``array`` each owns
    (:func:`_counted_planes`). Returns (a function (cached) that returns each part's (interpolated grid's (min, max,
    sum), image's (min, max, sum)), computing in the caller the parts not started yet; the pass's
    :func:`_linear_arguments`)."""
    source, shift, step = arguments = _linear_arguments(array, spacing, new_spacing)
    grid, _ = interpolation_grid(array.shape, spacing, new_spacing)
    parts = _parts(grid)
    counted = _counted_planes(parts, shift[0], step[0], array.shape[0]) if count_source else [(0, 0)] * len(parts)
    return functools.cache(run_parts_in_background(_interpolated_part, [
        (source, shift, step, (planes, *grid[1:]), first, bool(source_rounding), planes_counted)
        for (first, planes), planes_counted in zip(parts, counted)], holding=owner)), arguments


def _counted_planes(parts: list, shift: float, zoom: float, planes: int) -> list:
    """Per part of the whole interpolated grid ((first plane, planes), :func:`_parts`), the image's planes (first,
    stop) whose statistics its pass takes: from the first input plane its first output plane reads (the first
    part: from 0) to the next part's (the last part: to the end), so that the parts count every plane once, and
    mostly planes they read anyway (:func:`._preprocessing_kernels.trilinear_stats`)."""
    starts = [0] + [min(max(math.floor((first + shift) * zoom), 0), planes) for first, _ in parts[1:]]
    return list(zip(starts, starts[1:] + [planes]))


def _interpolated_part(source: np.ndarray, shift, zoom, shape: tuple, first: int, source_rounding: bool,
                       counted_planes: tuple) -> tuple:
    """(the (min, max, sum) of the rounded trilinear values of the interpolated grid's planes ``first`` ..
    ``first + shape[0] - 1``, the (min, max, sum) of ``source``'s own planes ``counted_planes``): one pass of
    :func:`._preprocessing_kernels.trilinear_stats`, the image's values accumulated as the statistics pass of its
    type does (:func:`_compiled_statistics`: on integers for 16-bit types); (inf, -inf, 0) where none is counted."""
    width = source.shape[2]
    if source.dtype in _SHORT_TYPES:
        low, high, total = (np.full(width, 1 << 17, dtype=np.int32), np.full(width, -(1 << 17), dtype=np.int32),
                            np.zeros(width, dtype=np.int64))
    else:
        low, high, total = np.full(width, np.inf), np.full(width, -np.inf), np.zeros(width)
    interpolated = _kernels.trilinear_stats(source, shift, zoom, shape, first, source_rounding,
                                            tuple(counted_planes), low, high, total)
    if counted_planes[1] <= counted_planes[0] or low.size == 0 or source.shape[1] == 0:
        return interpolated, (math.inf, -math.inf, 0.0)
    return interpolated, (float(low.min()), float(high.max()), float(total.sum()))


# -------------------------------------------------------------------------------- re-segmentation

def resegment(image: np.ndarray, mask: np.ndarray, value_range=None, outliers: bool = False,
              sigma: float = 3.0) -> np.ndarray:
    """The intensity mask: ``mask`` without voxels outside ``value_range`` and, with ``outliers``, outside
    ``[mu - sigma s, mu + sigma s]`` (mu, s: mean and population SD of the intensities in ``mask``).
    """
    lower, upper = (tuple(value_range) if value_range is not None else (None, None))
    if outliers:
        values = image[mask]
        mu, sd = float(values.mean()), float(values.std())
        lower = mu - sigma * sd if lower is None else max(lower, mu - sigma * sd)
        upper = mu + sigma * sd if upper is None else min(upper, mu + sigma * sd)
    result = mask.copy()
    if lower is not None:
        result &= image >= lower
    if upper is not None:
        result &= image <= upper
    return result


# ------------------------------------------------------------------------------------ diagnostics

def image_diagnostics(image: np.ndarray, spacing: tuple, stage: str, extremes=None) -> dict:
    """Image dimensions, voxel dimensions and mean / min / max intensity of the whole image (``*_{stage}``);
    ``extremes``: (min, max) when already known."""
    low, high = (image.min(), image.max()) if extremes is None else extremes
    return _image_diagnostics(image.shape, spacing, stage, (low, high, image.mean()))


def _image_diagnostics(shape: tuple, spacing: tuple, stage: str, statistics: tuple) -> dict:
    """:func:`image_diagnostics` of an image of ``shape`` whose (min, max, mean) intensity is ``statistics``."""
    out = {}
    for axis, n, s in zip("zyx", shape, spacing):
        out[f"img_dim_{axis}_{stage}"] = float(n)
        out[f"vox_dim_{axis}_{stage}"] = float(s)
    low, high, mean = statistics
    out[f"mean_int_{stage}"] = float(mean)
    out[f"min_int_{stage}"] = float(low)
    out[f"max_int_{stage}"] = float(high)
    return out


def roi_diagnostics(image: np.ndarray, intensity_mask: np.ndarray, morphological_mask: np.ndarray, stage: str) -> dict:
    """Mask grid dimensions, bounding boxes, voxel counts and intensity mask mean / min / max (``*_{stage}``)."""
    whole = tuple(slice(0, n) for n in image.shape)
    image = np.ascontiguousarray(image, dtype=np.float64)
    summaries = [_mask_summary(image, whole, np.ascontiguousarray(mask, dtype=bool), False)
                 for mask in (intensity_mask, morphological_mask)]
    return _roi_diagnostics(stage, intensity_mask.shape, *summaries)


def _mask_summary(image: np.ndarray, box: tuple, mask: np.ndarray, integral: bool, tight: bool = False,
                  rounding: bool = False) -> tuple:
    """(bounding box extent (z, y, x), voxel count, min, max, mean intensity) of the voxels of ``mask`` (bool, C
    order), the box ``box`` (slices) of the grid of ``image`` (3D float64, or another of :data:`CONVERTED_TYPES`, C
    order; each value rounded on read with ``rounding``), as numpy gives them (NaN intensities when empty).
    ``integral``: every value read is an integer (a compiled exact mean); ``tight``: ``box`` is the mask's bounding
    box."""
    if image.dtype not in CONVERTED_TYPES:   # a voxel type read in place (see _image_array): its box as float64
        image, box, rounding = _read(image[box], rounding), tuple(slice(0, b.stop - b.start) for b in box), False
    count, low, high, total = _kernels.masked_stats(image, mask, tuple(b.start for b in box), rounding)
    count = int(count)
    found = box if tight else _kernels.bounding_box(mask)
    extent = tuple(0.0 for _ in range(mask.ndim)) if found is None else tuple(float(b.stop - b.start) for b in found)
    if count == 0:
        return extent, 0.0, float("nan"), float("nan"), float("nan")
    if _exact_sum(total, count, low, high, integral):
        mean = total / count
    else:
        mean = float(_read(image[box][mask], rounding).mean())
    return extent, float(count), float(low), float(high), mean


def _roi_diagnostics(stage: str, shape: tuple, intensity: tuple, morphological: tuple) -> dict:
    """:func:`roi_diagnostics` on a grid of ``shape`` from the :func:`_mask_summary` of the intensity and the
    morphological mask."""
    out = {}
    for i, axis in enumerate("zyx"):
        out[f"int_mask_dim_{axis}_{stage}"] = float(shape[i])
        out[f"int_mask_bb_dim_{axis}_{stage}"] = intensity[0][i]
        out[f"morph_mask_bb_dim_{axis}_{stage}"] = morphological[0][i]
    out[f"int_mask_vox_count_{stage}"] = intensity[1]
    out[f"morph_mask_vox_count_{stage}"] = morphological[1]
    out[f"int_mask_mean_int_{stage}"], out[f"int_mask_min_int_{stage}"], out[f"int_mask_max_int_{stage}"] = \
        intensity[4], intensity[2], intensity[3]
    return out


def _xyz(spacing_zyx) -> str:
    return " x ".join(f"{s:g}" for s in spacing_zyx[::-1])


def _size(image) -> str:
    return " x ".join(str(n) for n in image.GetSize())


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
