"""The region of interest after IBSI preprocessing: what every feature family computes on."""

from dataclasses import dataclass, field

import numpy as np


_MISSING = object()


class _StartedCall:
    """One call started on the background thread by :meth:`Roi.start_derived`."""

    def __init__(self, future, function, args):
        self.future, self._function, self._args, self._here = future, function, args, None

    def results(self) -> tuple:
        """The call's results: the background thread's, or computed here (once) where it has not started the call
        (the Future is then cancelled)."""
        if not self.future.cancel():
            return self.future.result()
        if self._here is None:
            self._here = self._function(*self._args)
        return self._here


@dataclass(frozen=True)
class _Started:
    """A key of :attr:`Roi.cache` whose value is result ``index`` of a started call."""

    call: _StartedCall
    index: int


@dataclass
class Roi:
    """An image and its ROI masks after preprocessing (IBSI 1, sections 2.1-2.7).

    Arrays are indexed (z, y, x); ``spacing`` is (z, y, x) in mm.

    - ``image``: intensities (float64) after interpolation and rounding, on the whole grid.
    - ``morphological_mask``: the ROI before re-segmentation (morphology, GLDZM distances).
    - ``intensity_mask``: the ROI after re-segmentation (all intensity and texture features).
    - ``levels``: discretised grey levels 1..``n_levels`` inside the intensity mask, 0 outside
      (None until discretised; see :mod:`~RadiomicsLabLib.ibsi.discretisation`).
    - ``notes``: why a feature came back as NaN, filled by the families.
    - ``box``: the bounding box (slices) of the morphological mask, which holds the intensity mask, when the
      maker knows it (:func:`~RadiomicsLabLib.ibsi.preprocessing.prepare_roi`); else :meth:`masks_box` finds it.
    - ``grid_start``: the index on the preprocessed image's grid of the arrays' first voxel: (0, 0, 0) unless they
      hold only a box of it (:func:`~RadiomicsLabLib.ibsi.preprocessing.prepare_roi` with ``crop_mm``); positions
      (morphology) are those of the whole grid either way.
    - ``cache``: arrays the families derive from this Roi and share (the cropped grid, the zones), made on
      first use by :meth:`derived`. Every Roi starts with an empty one (:meth:`with_levels` and
      ``dataclasses.replace`` too), so change a Roi's arrays only before use.
    """

    image: np.ndarray
    morphological_mask: np.ndarray
    intensity_mask: np.ndarray
    spacing: tuple
    levels: np.ndarray | None = None
    n_levels: int | None = None
    notes: list = field(default_factory=list)
    box: tuple | None = None
    grid_start: tuple = (0, 0, 0)
    cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_arrays(cls, image, mask, spacing):
        """A Roi without re-segmentation: both masks are ``mask != 0``."""
        mask = np.asarray(mask) != 0
        return cls(np.asarray(image, dtype=np.float64), mask, mask.copy(), tuple(float(s) for s in spacing))

    def derived(self, key, make):
        """What ``make()`` derives from this Roi, made on the first request for ``key`` and shared by every later
        one (``cache``): read-only for the callers. A key :meth:`start_derived` started takes its value from there."""
        value = self.cache.get(key, _MISSING)
        if value is _MISSING:
            value = self.cache[key] = make()
        elif isinstance(value, _Started):
            value = self.cache[key] = value.call.results()[value.index]
        return value

    def start_derived(self, keys, function, *args, here: bool = False):
        """Starts ``function(*args)`` (one call of a compiled kernel that releases the GIL, returning a tuple) on the
        background thread (:func:`~RadiomicsLabLib.limits.run_in_background`; at once with one thread, or ``here``),
        its results the values of ``keys`` in order (None: a result no key takes): :meth:`derived` of such a key
        then returns the background thread's result, or computes the call itself (once) where the thread has not
        started it. The same values as the key's ``make()``, which must compute the same thing. Returns the Future
        (the caller waits for it, or cancels it where it has not started, before it returns); None ``here``."""
        from ..limits import run_in_background

        if here:
            for key, value in zip(keys, function(*args)):
                if key is not None:
                    self.cache[key] = value
            return None
        call = _StartedCall(run_in_background(function, *args), function, args)
        for index, key in enumerate(keys):
            if key is not None:
                self.cache[key] = _Started(call, index)
        return call.future

    def masks_box(self) -> tuple:
        """The bounding box (slices) of both masks: ``box``, or found once (:meth:`derived`); empty slices for an
        empty ROI. Cropping to it leaves every ROI voxel, in the same (C) order."""
        if self.box is not None:
            return self.box
        from ._preprocessing_kernels import bounding_box   # here: importing this module does not import numba

        return self.derived("masks_box", lambda: bounding_box(np.logical_or(self.morphological_mask,
                                                                           self.intensity_mask))
                            or tuple(slice(0, 0) for _ in self.morphological_mask.shape))

    def bounding_box(self, array: np.ndarray) -> tuple | None:
        """The bounding box (slices) of the non-zero voxels of ``array``, an array on the Roi's grid that is zero
        outside the masks (the intensity mask, the grey levels), scanning :meth:`masks_box` only; None if empty."""
        from ._preprocessing_kernels import bounding_box

        box = self.masks_box()
        inner = bounding_box(array[box])
        if inner is None:
            return None
        return tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner))

    def values(self) -> np.ndarray:
        """Intensities inside the intensity mask (1D, float64, C order)."""
        box = self.masks_box()
        return self.image[box][self.intensity_mask[box]]

    def with_levels(self, levels: np.ndarray, n_levels: int) -> "Roi":
        """A copy sharing the arrays, with discretised grey levels attached."""
        return Roi(self.image, self.morphological_mask, self.intensity_mask, self.spacing, levels, int(n_levels),
                   self.notes, self.box, self.grid_start)
