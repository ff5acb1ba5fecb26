"""Local intensity features (IBSI 1, section 3.2; tags ``loc_*``).

The mean intensity in a 1 cm^3 sphere: every voxel of the image grid (inside the ROI or not) whose
centre lies within ``r = (3 / (4 pi))^(1/3) cm ~ 6.2 mm`` (world distance, ``roi.spacing``) of the
centre voxel, the centre voxel included. Only voxels of the ROI intensity mask are centre voxels.
Voxels beyond the image grid do not exist and are not counted (the mean is over the voxels that are
there). Always 3D (IBSI DHQ4). The sums over the sphere are a convolution with the spherical kernel
(IBSI's suggestion), done on the ROI's bounding box grown by the kernel's half-size.
"""

import functools
from typing import NamedTuple

import numpy as np

from .. import _preprocessing_kernels as _kernels
from . import _texture_kernels
from .._preprocessing_kernels import bounding_box
from ..roi import Roi
from .common import all_nan, registry, run

FEATURES, FUNCTIONS, feature = registry()
FAMILY = "Local intensity"
RADIUS_MM = (3.0 / (4.0 * np.pi)) ** (1.0 / 3.0) * 10.0   # radius of a 1 cm^3 sphere, mm
_FFT_ABOVE = 2000   # kernel voxels above which the convolution goes through the FFT


def sphere_kernel(spacing, radius: float = RADIUS_MM) -> np.ndarray:
    """Boolean (z, y, x) kernel: the voxel centres within ``radius`` mm of the central voxel."""
    half = [int(np.floor(radius / s)) for s in spacing]
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, spacing)]
    dz, dy, dx = np.meshgrid(*axes, indexing="ij")
    return dz ** 2 + dy ** 2 + dx ** 2 <= radius ** 2


class SphereGeometry(NamedTuple):
    """The 1 cm^3 sphere on a grid of one spacing (:func:`sphere_geometry`), shared: its arrays are not to be written
    (not flagged read-only, which would give the compiled kernels another signature to compile)."""
    kernel: np.ndarray      # boolean (z, y, x), :func:`sphere_kernel`
    offsets: np.ndarray     # (K, 3) int64: its voxels relative to the centre, in C order
    row_dz: np.ndarray      # its rows along x, by (dz, dy) ascending: dz, dy and the half-length dx of each
    row_dy: np.ndarray
    row_dx: np.ndarray


@functools.lru_cache(maxsize=16)
def sphere_geometry(spacing: tuple) -> SphereGeometry:
    """The sphere's kernel, voxel offsets and rows for ``spacing`` (z, y, x) mm: they depend on the spacing only,
    so the families and the maps of every ROI resampled to one spacing share them."""
    kernel = sphere_kernel(spacing)
    offsets = (np.argwhere(kernel) - np.asarray(kernel.shape) // 2).astype(np.int64)
    rows, row = np.unique(offsets[:, :2], axis=0, return_inverse=True)     # the sphere's rows along x, by (dz, dy)
    row_dx = np.zeros(rows.shape[0], dtype=np.int64)
    np.maximum.at(row_dx, row.ravel(), offsets[:, 2])                        # each row covers -row_dx .. row_dx
    return SphereGeometry(kernel, offsets, rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), row_dx)


def _sphere_sum(array: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Sum of ``array`` over the kernel around every voxel, zero beyond the array."""
    from scipy import ndimage, signal   # imported here: scipy.signal imports scipy.stats (~0.4 s in a new process)

    if kernel.sum() > _FFT_ABOVE:
        return signal.fftconvolve(array, kernel.astype(np.float64), mode="same")
    return ndimage.correlate(array, kernel.astype(np.float64), mode="constant", cval=0.0)


class LocalMeans:
    """The ROI voxels' intensities and the mean intensity in the 1 cm^3 sphere around each of them.

    ``peaks_only``: only the voxels that can hold a peak (:func:`peak_candidates`): the same peaks. ``roi_box``:
    the bounding box of ``mask`` when known.
    """

    def __init__(self, image: np.ndarray, mask: np.ndarray, spacing, peaks_only: bool = False, roi_box=None):
        geometry = sphere_geometry(tuple(float(s) for s in spacing))
        kernel = geometry.kernel
        half = [k // 2 for k in kernel.shape]
        roi_box = roi_box or bounding_box(mask)
        box = tuple(slice(max(b.start - h, 0), min(b.stop + h, n)) for b, h, n in zip(roi_box, half, image.shape))
        crop_image, crop_mask = image[box], mask[box]
        if all(b.start - h >= 0 and b.stop + h <= n for b, h, n in zip(roi_box, half, image.shape)):
            # the crop holds every voxel's whole sphere (the box never met the image's edge): N_s everywhere
            counts = np.full(np.count_nonzero(crop_mask), float(np.count_nonzero(kernel)))
        else:
            counts = np.rint(_sphere_sum(np.ones(crop_image.shape), kernel)[crop_mask])   # rint: FFT round-off
        if kernel.sum() > _FFT_ABOVE or image.ndim != 3:
            sums = _sphere_sum(crop_image, kernel)[crop_mask]
        else:
            crop_image = np.ascontiguousarray(crop_image, dtype=np.float64)
            if peaks_only:
                keep = peak_candidates(crop_image, crop_mask, geometry, counts)
                crop_mask, counts = np.zeros_like(crop_mask), counts[keep]
                crop_mask[mask[box]] = keep
            # the correlation at the ROI voxels only (same terms, same order: the kernel's voxels in C order)
            sums = _kernels.masked_sums(crop_image, np.ascontiguousarray(crop_mask), geometry.offsets)
        self.values = crop_image[crop_mask]
        self.means = sums / counts


def peak_candidates(image: np.ndarray, mask: np.ndarray, geometry: SphereGeometry, counts: np.ndarray) -> np.ndarray:
    """Which voxels of ``mask`` (C order; ``counts``: their sphere's voxel numbers; ``geometry``: the sphere's,
    :func:`sphere_geometry`) can hold the local or the global peak, as in pictologics' two-stage peaks: those of
    maximum intensity, and those whose approximate sphere mean (row prefix sums,
    :func:`~._texture_kernels.row_sphere_sums`) is within 2 t of the largest one.

    t bounds |approximate - direct mean| (sequential summation bounds of the prefix sums, their differences, the
    R row sums, the direct sum of the K sphere voxels and both divisions): t = eps A (R (2 L^2 + 2 L + R L) + K^2
    + 2), with eps the machine epsilon, A the largest |intensity| of ``image`` and L the prefix length (x size + 1).
    The voxel of the largest direct mean thus has an approximate mean within 2 t of the largest one. A non-finite
    approximate mean (a NaN, an overflow) keeps every voxel.
    """
    approximate = _texture_kernels.row_sphere_sums(image, np.ascontiguousarray(mask), geometry.row_dz,
                                                   geometry.row_dy, geometry.row_dx) / counts
    if not np.isfinite(approximate).all():
        return np.ones(approximate.size, dtype=bool)
    n_rows, length = geometry.row_dx.shape[0], image.shape[2] + 1
    t = (np.finfo(np.float64).eps * float(np.abs(image).max())
         * (n_rows * (2 * length ** 2 + 2 * length + n_rows * length) + geometry.offsets.shape[0] ** 2 + 2))
    values = image[mask]
    return (approximate >= approximate.max() - 2 * t) | (values == values.max())


@feature("loc_peak_loc", "Local intensity peak", "intensity", "Mean intensity in a 1 cm^3 sphere around the ROI's "
         "maximum-intensity voxel (the highest such mean when the maximum occurs more than once).", None, "VJGA")
def local_peak(m: LocalMeans) -> float:
    """F_loc.peak.local = mean intensity of the voxels within r = (3/(4 pi))^(1/3) cm of the centre of the
    maximum-intensity voxel of the ROI  (IBSI VJGA); with several maximum voxels, the highest of their peaks.
    """
    return float(m.means[m.values == m.values.max()].max())


@feature("loc_peak_glob", "Global intensity peak", "intensity", "Highest mean intensity in a 1 cm^3 sphere centred on "
         "any ROI voxel.", None, "0F91")
def global_peak(m: LocalMeans) -> float:
    """F_loc.peak.global = max over the ROI voxels of the mean intensity within r = (3/(4 pi))^(1/3) cm  (IBSI 0F91).

    Computed as a spherical mean filter (convolution with the sphere's voxel labels / N_s).
    """
    return float(m.means.max())


def compute(roi: Roi, settings=None) -> dict:
    """Local intensity features of ``roi.image`` around the voxels of ``roi.intensity_mask`` (3D), keyed by IBSI tag."""
    if not roi.intensity_mask.any():
        return all_nan(FEATURES, roi, FAMILY, "the ROI intensity mask is empty")
    return run(FUNCTIONS, LocalMeans(roi.image, roi.intensity_mask, roi.spacing, peaks_only=True,
                                       roi_box=roi.bounding_box(roi.intensity_mask)), roi, FAMILY)
