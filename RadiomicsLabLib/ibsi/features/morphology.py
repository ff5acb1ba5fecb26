"""IBSI 1 morphological features (section 3.1 of arXiv 1612.07003), tags ``morph_*``.

Geometry comes from the *morphological* mask (the ROI before re-segmentation); the features
that use intensities (centre of mass shift, integrated intensity, Moran's I, Geary's C) take
their intensities from the *intensity* mask, as IBSI prescribes.

Notation (IBSI): ``V`` mesh volume, ``A`` mesh surface area, ``N_v`` number of voxels,
``X_c`` voxel centre positions in mm, ``X_gl`` intensities, ``lambda_major >= lambda_minor >=
lambda_least`` eigenvalues of the covariance matrix of the voxel centres of the morphological mask.

Choices made here (IBSI leaves them open or allows approximation):

- Mesh: marching cubes (Lewiner, as ``skimage.measure.marching_cubes`` makes it) at level 0.5 on the
  morphological mask cropped to its bounding box and padded with one voxel of zeros, vertex
  coordinates in mm. The mesh is closed and consistently oriented, so the signed tetrahedron volumes
  ``a . (b x c) / 6`` of its faces sum (divergence theorem) to +/- V; the absolute value is taken, so
  the orientation convention (and the (z, y, x) axis order, an odd permutation of (x, y, z)) does not
  matter. The mesh is never built: marching cubes triangulates each 2 x 2 x 2 cube from its own eight
  values (Lewiner's face and interior tests included), so on a binary mask V and A are sums over the
  256 cube configurations of per-configuration terms (scikit-image's triangles of the one cube) times
  how many cubes have it (:func:`mesh_volume_area`), and the mesh's vertices that can be on its convex
  hull are the midpoints of the edges between a mask voxel and an outside 6-neighbour.
- Convex hull: those midpoints lie on a lattice of half voxels, so the hull is computed there in exact
  integer arithmetic (quickhull, :class:`LatticeHull`; the vertices, volume and area Qhull gives, to
  rounding, without its tolerances), then scaled to mm.
- Covariance of voxel positions: the sample covariance (``1 / (N_v - 1)``), as MIRP does; the
  digital phantom's minor and least axis lengths fail with ``1 / N_v`` (pyradiomics' choice, so
  pyradiomics' axis lengths are ours times sqrt((N_v - 1) / N_v)).
- Moran's I and Geary's C are computed *exactly* over all voxel pairs (no sub-sampling): the
  inverse-distance weight only depends on the offset between two voxels on the regular grid, so
  every pairwise sum is a correlation of the masked intensity grid with the kernel ``1 / ||d||``,
  computed by FFT: by Parseval's theorem each sum is an inner product of the spectra, so one forward
  FFT per grid and none back; the kernel is even, so its (real) spectrum is a DCT-I of an eighth of the
  grid (0.011 s for 46k voxels at 2 mm on one core; the FFTs are ducc0's, the library scipy >= 1.18 uses). Memory
  is bounded: when the FFT grid would exceed ``MAX_FFT_ELEMENTS`` the bounding box is cut into
  slabs along z and the sums are accumulated over slab pairs (see :func:`moran_geary_sums`).
- OMBB (not standardised by IBSI): the smallest of the AABB and the boxes with one face flush
  with a face of the convex hull (minimum-area rectangle of the projection, along a silhouette edge).
  Exact for boxes; otherwise an upper bound of the true minimum-volume box (O'Rourke).
- MVEE (not standardised by IBSI): Khachiyan's algorithm on the convex hull vertices (relative
  tolerance 1e-4), scaled at the end so that it encloses every hull vertex.
- Ellipsoid surface area (AEE, MVEE): IBSI's Legendre series (nu = 0..20), evaluated by a scaled
  recurrence that stays finite for spheroids. The IBSI reference values follow this series, which
  is not the exact ellipsoid area (e.g. 286.1 instead of 297.4 mm^2 for the digital phantom's AEE;
  with the exact area its ``morph_area_dens_aee`` would be 1.305, outside 1.36 +- 0.01).
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import cached_property

import ducc0
import numpy as np
import scipy.fft
from scipy.spatial import ConvexHull, QhullError

from ...limits import compute_threads, run_in_background
from .._preprocessing_kernels import bounding_box
from . import _morphology_kernels as _kernels
from .common import Undefined, registry, zero_padded

#: IBSI tag -> {"name", "unit", "description", "pyradiomics", "ibsi_id"}; filled by the ``@feature`` decorator.
FEATURES, FUNCTIONS, feature = registry()

#: Largest FFT grid (elements) for Moran's I / Geary's C; larger bounding boxes are cut into z slabs.
#: Peak memory is about 40 bytes per element (~0.6 GB).
MAX_FFT_ELEMENTS = 2 ** 24
#: Elements of one block of the pairwise distance matrix in the blockwise Moran / Geary sum.
PAIR_BLOCK_ELEMENTS = 2 ** 22
#: Moran / Geary FFT: the smallest FFT grid (elements) done in bands (on several threads) and started beside the
#: other families (:func:`_large_grid`), and the y frequencies per band of its last transform and sums.
MORAN_BANDED_ELEMENTS = 2 ** 19
MORAN_BAND_ROWS = 16
#: Khachiyan MVEE: relative tolerance and iteration cap.
MVEE_TOLERANCE = 1e-4
MVEE_MAX_ITERATIONS = 10000


# ----------------------------------------------------------------------------------------------
# Shared geometry (computed once, lazily)
# ----------------------------------------------------------------------------------------------

class Morphology:
    """Lazily computed geometry of one ROI shared by the morphological features."""

    def __init__(self, roi):
        self.roi = roi
        self.spacing = np.asarray(roi.spacing, dtype=np.float64)
        self.offset, self.morph_mask, self.int_mask, self.image = roi.derived("morphology_crops",
                                                                              lambda: _cropped(roi))
        self._started_boxes = None      # :meth:`start_hull_boxes`' Future

    # -- voxel sets --------------------------------------------------------------------------
    @cached_property
    def int_values(self) -> np.ndarray:
        return self.image[self.int_mask]

    @cached_property
    def _moments(self):
        """:func:`._morphology_kernels.mask_moments` of the masks (indices of the cropped grid)."""
        return _kernels.mask_moments(self.morph_mask, self.int_mask, self.image)

    @cached_property
    def centre(self) -> np.ndarray:
        """Mean voxel centre (mm, (z, y, x)) of the morphological mask."""
        n, sums, _, _, _ = self._moments
        return (sums / n + self.offset) * self.spacing

    @cached_property
    def weighted_centre(self) -> np.ndarray:
        """Intensity-weighted mean voxel centre (mm) of the intensity mask (needs a non-zero intensity sum)."""
        _, _, _, weight, weighted = self._moments
        return (weighted / weight + self.offset) * self.spacing

    # -- mesh --------------------------------------------------------------------------------
    @cached_property
    def _padded_mask(self) -> tuple[np.ndarray, np.ndarray]:
        """(the morphological mask cropped to its bounding box and padded with one voxel of zeros, the whole
        grid's index of the padded crop's first voxel)."""
        box = bounding_box(self.morph_mask)
        start = np.array([b.start for b in box], dtype=np.int64) + self.offset - 1
        return zero_padded(self.morph_mask[box], 1), start

    @cached_property
    def _volume_area(self) -> tuple[float, float]:
        padded, _ = self._padded_mask
        counts, origins = _kernels.cube_configurations(padded, cube_lookup())
        return mesh_volume_area(counts, origins, self.spacing, *cube_triangles("lewiner"))

    @cached_property
    def volume(self) -> float:
        """Mesh volume V (mm^3)."""
        return self._volume_area[0]

    @cached_property
    def area(self) -> float:
        """Mesh surface area A (mm^2)."""
        return self._volume_area[1]

    # -- convex hull -------------------------------------------------------------------------
    @cached_property
    def hull(self) -> LatticeHull | ConvexHull:
        """Convex hull of the mesh (:func:`convex_hull`), computed on the mesh vertices that can be its vertices:
        of the surface's edge midpoints (:func:`._morphology_kernels.surface_cells`; Lewiner's cube-centre vertices
        lie inside their cube's surface), those at either end of every line of them parallel to an axis or a face
        diagonal (:func:`._morphology_kernels.line_extremes`; about one in six)."""
        padded, start = self._padded_mask
        cells = _kernels.surface_cells(padded)
        cells = cells[_kernels.line_extremes(cells)]
        return convex_hull(cells, (cells * 0.5 + start) * self.spacing, 0.5 * self.spacing)

    @cached_property
    def hull_points(self) -> np.ndarray:
        """Convex hull vertices (mm), centred on their mean."""
        points = self.hull.points[self.hull.vertices]
        return points - points.mean(axis=0)

    @cached_property
    def ombb_dimensions(self) -> np.ndarray:
        """Side lengths of the oriented minimum bounding box of the hull (see :func:`oriented_minimum_bounding_box`)."""
        return self._hull_boxes[0]

    @cached_property
    def mvee_axes(self) -> np.ndarray:
        """Semi-axes of the hull's minimum volume enclosing ellipsoid (:func:`minimum_volume_enclosing_ellipsoid`)."""
        return _ellipsoid_axes(self.hull_points, self._hull_boxes[1])

    @cached_property
    def _hull_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """(the OMBB's side lengths, the MVEE's Khachiyan weights on :attr:`hull_points`): one call of
        :func:`._morphology_kernels.hull_boxes`, on the background thread where :meth:`start_hull_boxes` started it
        (and the thread has started it), else here."""
        started = self._started_boxes
        if started is not None and not started.cancel():
            return started.result()
        return _kernels.hull_boxes(*_ombb_arguments(self.hull), _lifted(self.hull_points), float(MVEE_TOLERANCE),
                                   int(MVEE_MAX_ITERATIONS))

    def start_hull_boxes(self) -> Future | None:
        """Starts the OMBB search and the MVEE's iterations (:attr:`_hull_boxes`: after Moran's sums the family's
        longest steps on a small ROI, STS_002's 0.36 and 0.32 ms) on the background thread
        (:func:`~RadiomicsLabLib.limits.run_in_background`), so that they run while the caller computes the other
        features: one GIL-free kernel call (a second call, or Python between them, would take the GIL back mid-way,
        and on a kernel that wakes a thread on its waker's CPU the caller waiting for it would then share the worker's
        CPU). Returns the Future (the caller waits for it, or cancels it where it has not started, before returning),
        or None where there is no hull (its error comes from the features that need it)."""
        try:
            hull = self.hull
        except QhullError:
            return None
        self._started_boxes = run_in_background(_kernels.hull_boxes, *_ombb_arguments(hull),
                                                _lifted(self.hull_points), float(MVEE_TOLERANCE),
                                                int(MVEE_MAX_ITERATIONS))
        return self._started_boxes

    # -- PCA ---------------------------------------------------------------------------------
    @cached_property
    def eigenvalues(self) -> np.ndarray:
        """(lambda_major, lambda_minor, lambda_least) of the sample covariance of the voxel centres (mm^2):
        C_ab = h_a h_b (N S_ab - S_a S_b) / (N (N - 1)) from the index sums S (:attr:`_moments`), whose numerator
        is an exact (Python) integer. Its rank, exact from that integer matrix, sets the eigenvalues of voxels on one
        line (rank 1) or one plane (rank 2) to 0 exactly: where the line or plane is oblique, the eigensolver leaves
        rounding noise (about 1e-16 mm^2) that would make axes of 1e-8 mm and AEE densities of 10^7."""
        n, sums, products, _, _ = self._moments
        if n < 2:
            raise Undefined("the covariance of voxel positions needs at least two voxels")
        exact = [[int(n) * int(products[a, b]) - int(sums[a]) * int(sums[b]) for b in range(3)] for a in range(3)]
        covariance = np.array(exact, dtype=np.float64) * np.outer(self.spacing, self.spacing) / (float(n) * (n - 1))
        values = np.clip(np.linalg.eigvalsh(covariance)[::-1], 0.0, None)
        values[_integer_rank(exact):] = 0.0
        return values

    # -- spatial autocorrelation -------------------------------------------------------------
    @cached_property
    def autocorrelation(self) -> tuple[float, float]:
        """(Moran's I, Geary's C) over all voxel pairs of the intensity mask (exact)."""
        n = int(self.int_mask.sum())
        if n < 2:
            raise Undefined("spatial autocorrelation needs at least two voxels in the intensity mask")
        values = self.int_values
        deviation = values - values.mean()
        # numpy's sum, not np.dot: BLAS splits a dot product of 10^4 or more terms over its threads, so its last
        # bits would depend on the thread count (a cohort worker runs BLAS on one thread)
        denominator = float(np.sum(deviation * deviation))
        if denominator <= 1e-12 * max(1.0, float(np.abs(values).max()) ** 2) * n:
            raise Undefined("all intensities in the ROI are equal (zero variance)")
        # started by start_autocorrelation_sums; computed here where the background thread has not started them yet
        # (it is still busy with a whole CT's diagnostics, for one)
        started = self.roi.cache.get("autocorrelation_sums")
        weight_sum, moran_sum, geary_sum = started.result() if started is not None and not started.cancel() else \
            moran_geary_sums(self.int_mask, self.image, self.spacing)
        moran = n * moran_sum / (weight_sum * denominator)
        geary = (n - 1) * geary_sum / (2.0 * weight_sum * denominator)
        return float(moran), float(geary)


def _integer_rank(matrix) -> int:
    """Rank of a symmetric 3 x 3 matrix of Python integers (exact: its determinant and 2 x 2 minors)."""
    (a, b, c), (_, e, f), (_, _, i) = matrix
    if a * (e * i - f * f) - b * (b * i - c * f) + c * (b * f - c * e) != 0:
        return 3
    minors = (a * e - b * b, a * i - c * c, e * i - f * f, a * f - b * c, b * i - c * f, b * f - c * e)
    if any(minors):
        return 2
    return 1 if any(any(row) for row in matrix) else 0


def _cropped(roi) -> tuple:
    """(offset, morphological mask, intensity mask, image): the Roi's masks and image cropped to its masks' bounding
    box (every voxel set lies inside it), as contiguous copies (the compiled kernels then always see the same array
    types: compiled once, at install); ``offset`` is the box's first voxel on the whole grid, added back to voxel
    indices so that positions are the whole grid's (also when the Roi holds only a part of it: ``grid_start``)."""
    box = roi.masks_box()
    offset = np.array([b.start + g for b, g in zip(box, roi.grid_start)], dtype=np.int64)
    return (offset, np.ascontiguousarray(np.asarray(roi.morphological_mask, dtype=bool)[box]),
            np.ascontiguousarray(np.asarray(roi.intensity_mask, dtype=bool)[box]),
            np.ascontiguousarray(np.asarray(roi.image, dtype=np.float64)[box]))


def start_autocorrelation_sums(roi) -> Future | None:
    """Starts the pairwise sums of Moran's I and Geary's C of ``roi`` (:func:`moran_geary_sums`, the family's longest
    step on a large ROI: FFTs that release the GIL) on the process's background thread
    (:func:`~RadiomicsLabLib.limits.run_in_background`; at once where only one thread is allowed), so that they run
    while the caller computes other families; :attr:`Morphology.autocorrelation` of this Roi then waits for them, or
    computes them itself where the background thread has not started them (the same values).
    The same values as computed there. Returns the Future (before returning, also when a family fails, the caller
    waits for it, or cancels it where it has not started), or None, nothing started, where the FFT grid is smaller than :data:`MORAN_BANDED_ELEMENTS` (a
    few ms, which a hand-off to a thread woken after a pause does not win back: measured on the sarcoma CTs) or the
    intensity mask has fewer than two voxels."""
    _, _, int_mask, image = roi.derived("morphology_crops", lambda: _cropped(roi))
    box = bounding_box(int_mask)
    if box is None or np.count_nonzero(int_mask[box]) < 2 or \
            not _large_grid(_fft_plan([b.stop - b.start for b in box])[2]):
        return None
    return roi.derived("autocorrelation_sums", lambda: run_in_background(
        moran_geary_sums, int_mask, image, np.asarray(roi.spacing, dtype=np.float64), all_cpus=True))


# ----------------------------------------------------------------------------------------------
# Algorithms
# ----------------------------------------------------------------------------------------------

#: Lattice coordinates below this bound keep :func:`convex_hull`'s exact integer products within int64.
LATTICE_HULL_LIMIT = 2 ** 15


class LatticeHull:
    """The convex hull of ``points`` (mm) that lie on a lattice, ``points = cells * step + shift`` per axis, with
    the attributes of :class:`scipy.spatial.ConvexHull` that the features read: ``points``, ``vertices`` (sorted
    indices of the extreme points), ``simplices`` (triangles over them, counterclockwise from outside),
    ``equations`` (unit outward normal n and offset c, n . x + c = 0 on the facet), ``volume`` and ``area``; and
    ``cells``, the lattice points (edge directions for the OMBB).
    Built by :func:`._morphology_kernels.lattice_convex_hull` (exact integer quickhull), once on the ``cells`` and
    once more on its extreme points only (:func:`._morphology_kernels.extreme_vertices`), so that no point inside a
    flat face or an edge is a vertex (Qhull leaves them out too). Volume and normals are exact on the lattice, then
    scaled: the volume by prod(step), the normal of a facet by 1 / step per axis.
    """

    def __init__(self, cells: np.ndarray, points: np.ndarray, step, facets: np.ndarray):
        step = np.asarray(step, dtype=np.float64)
        self.cells = cells
        self.points = points
        self.simplices = facets
        # exact, outward; coplanar facets: the same reduced normal (lattice_facet_normals)
        normals, reduced, six_volume, self.vertices = _kernels.lattice_facet_normals(cells, facets)
        scale = np.prod(step) / step    # a lattice normal scaled per axis by the product of the other two steps: mm
        self.area = float(0.5 * np.linalg.norm(normals * scale, axis=1).sum())
        unit = reduced * scale
        unit /= np.linalg.norm(unit, axis=1)[:, None]
        self.equations = np.hstack([unit, -np.einsum("ij,ij->i", unit, points[facets[:, 0]])[:, None]])
        self.volume = abs(int(six_volume)) * float(np.prod(step)) / 6.0


def convex_hull(cells: np.ndarray, points: np.ndarray, step) -> LatticeHull | ConvexHull:
    """Convex hull of ``points`` (mm), which lie on a lattice: ``points`` = ``cells`` (n x 3 int, distinct) times
    ``step`` per axis plus a shift. A :class:`LatticeHull`; Qhull's (``scipy.spatial.ConvexHull``, which raises
    QhullError) where the points span no volume or the lattice is beyond :data:`LATTICE_HULL_LIMIT`."""
    if len(cells) and 0 <= cells.min() and cells.max() < LATTICE_HULL_LIMIT:
        facets = _kernels.lattice_convex_hull(cells)
        if len(facets):
            extreme = np.flatnonzero(_kernels.extreme_vertices(cells, facets))
            facets = _kernels.lattice_convex_hull(cells[extreme])
            if len(facets):
                return LatticeHull(cells, points, step, extreme[facets])
    return ConvexHull(points)


#: Corners of a marching cube as the bits of its configuration number, (dz, dy, dx) from the cube's origin.
CUBE_CORNERS = np.array([(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 0, 0), (1, 0, 1), (1, 1, 1), (1, 1, 0)])


@functools.cache
def cube_lookup() -> np.ndarray:
    """Configuration number (bits: :data:`CUBE_CORNERS`) of a cube whose two x columns hold the bits ``left`` and
    ``right`` (voxel (dz, dy) -> bit 2 dz + dy), indexed by ``left | right << 4`` (see
    :func:`._morphology_kernels.cube_configurations`)."""
    lookup = np.zeros(256, dtype=np.int64)
    for code in range(256):
        for bit, (dz, dy, dx) in enumerate(CUBE_CORNERS):
            lookup[code] |= ((code >> (4 * dx + 2 * dz + dy)) & 1) << bit
    return lookup


@functools.cache
def cube_triangles(method: str) -> tuple[np.ndarray, np.ndarray]:
    """(triangles (T, 3, 3), configuration (T,)) of every marching-cubes configuration 1 .. 254 at level 0.5, in
    voxel units from the cube's origin (bits: :data:`CUBE_CORNERS`): ``skimage.measure.marching_cubes`` with
    ``method`` (``"lewiner"`` or ``"lorensen"``) run on the one cube. Both triangulate a cube from its own eight
    values only, so a binary grid's mesh is the union of its cubes' entries."""
    from skimage.measure import marching_cubes

    triangles, configuration = [], []
    for number in range(1, 255):
        cube = np.zeros((2, 2, 2), dtype=np.float32)
        for bit, corner in enumerate(CUBE_CORNERS):
            if number >> bit & 1:
                cube[tuple(corner)] = 1.0
        vertices, faces, _, _ = marching_cubes(cube, level=0.5, method=method)
        triangles.append(vertices[faces].astype(np.float64))
        configuration += [number] * len(faces)
    return np.concatenate(triangles), np.array(configuration, dtype=np.int64)


def mesh_volume_area(counts, origins, spacing, triangles, configuration, sign=1.0) -> tuple[float, float]:
    """(V, A) of a marching-cubes mesh given per configuration its number of cubes ``counts`` and the sum of their
    origins ``origins`` (:func:`._morphology_kernels.cube_configurations`; ``spacing`` (z, y, x) mm) and its
    ``triangles`` (:func:`cube_triangles`; ``sign`` per triangle: -1 for a reversed one).

    A = sum_t n_c(t) |(b - a) x (c - a)| / 2 over the table's triangles t (n_c: cubes of t's configuration).
    V = |sum over the mesh's triangles of a . (b x c)| / 6, and the triangle a' + o, b' + o, c' + o of a cube at
    o gives a' . (b' x c') + o . (b' x c' + c' x a' + a' x b'), so 6 V = |sum_t n_c(t) a . (b x c) + O_c(t) . (b x
    c + c x a + a x b)|, O_c the sum of the origins of the cubes of configuration c (integers: exact). The
    origin is the grid's first voxel: a closed mesh's V does not depend on it, pyradiomics' (not always closed)
    does, and pyradiomics takes the same one.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    own, shifted, area = _triangle_terms(triangles, configuration, sign, spacing)
    n = counts[configuration].astype(np.float64)
    volume = np.dot(n, own) + np.einsum("ij,ij->", origins[configuration] * spacing, shifted)
    return float(abs(volume) / 6.0), float(0.5 * np.dot(n, area))


#: :func:`_triangle_terms` of the tables and spacings met so far: (table arrays, spacing) -> terms. The arrays
#: themselves are kept with their terms, so that the ids in the key cannot be reused by other arrays.
_TRIANGLE_TERMS: dict = {}


def _triangle_terms(triangles, configuration, sign, spacing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-triangle terms of :func:`mesh_volume_area` that depend on the table and the spacing only (a table is
    used with one spacing for a whole image, or a cohort): a . (b x c), b x c + c x a + a x b (both times ``sign``)
    and |(b - a) x (c - a)|, the vertices in mm. Remembered per table and spacing (up to 64)."""
    key = (id(triangles), id(configuration), id(sign), spacing.tobytes())
    held = _TRIANGLE_TERMS.get(key)
    if held is not None and held[0] is triangles and held[1] is configuration and held[2] is sign:
        return held[3]
    signs = np.broadcast_to(np.asarray(sign, dtype=np.float64), configuration.shape)[:, None]
    a, b, c = (triangles[:, k] * spacing for k in range(3))
    bc = np.cross(b, c)
    terms = (np.einsum("ij,ij->i", a, signs * bc), signs * (bc + np.cross(c, a) + np.cross(a, b)),
             np.linalg.norm(np.cross(b - a, c - a), axis=1))
    if len(_TRIANGLE_TERMS) >= 64:
        _TRIANGLE_TERMS.clear()
    _TRIANGLE_TERMS[key] = (triangles, configuration, sign, terms)
    return terms


def moran_geary_sums(mask: np.ndarray, image: np.ndarray, spacing, method: str = "fft",
                     max_fft_elements: int = MAX_FFT_ELEMENTS) -> tuple[float, float, float]:
    """Exact pairwise sums over ordered pairs k != k' of ``mask`` with w = 1 / ||X_c,k - X_c,k'|| (mm).

    Returns ``(sum w, sum w f_k f_k', sum w (f_k - f_k')^2)``, f = intensity - mean over the mask.

    ``method="fft"`` (default): w depends only on the grid offset d = k' - k, so every sum is a
    correlation with the kernel 1 / ||d||, ``sum_{k,k'} w a_k b_k' = sum_k a_k (w * b)_k``, done by
    FFT over the bounding box (grid of about (2 s - 1) per axis). When that grid would exceed
    ``max_fft_elements`` the bounding box is cut into T slabs along z and the sums are accumulated
    over slab pairs (i, j >= i), each on a grid of (2 t - 1) slices: memory stays at about 40 to 50
    bytes per element of ``max_fft_elements``, time grows as about T^2 slab FFTs. Each sum is an inner
    product of two spectra (Parseval), so there is one forward FFT per grid and no inverse FFT.

    ``method="pairs"``: blockwise pairwise distances (memory bounded by ``PAIR_BLOCK_ELEMENTS``),
    time O(N_v^2); a cross-check of the FFT path.
    """
    mask = np.asarray(mask, dtype=bool)
    image = np.asarray(image, dtype=np.float64)
    spacing = np.asarray(spacing, dtype=np.float64)
    mean = image[mask].mean()
    if method == "pairs":
        return _pairwise_sums(np.argwhere(mask) * spacing, image[mask] - mean, float(spacing.min()))
    if method != "fft":
        raise ValueError(f"Unknown method '{method}' (fft or pairs).")

    box = bounding_box(mask)
    if box is None:
        raise ValueError("Moran's I / Geary's C sums need a non-empty mask.")
    shape = np.array([b.stop - b.start for b in box])
    thickness, n_slabs, fft_shape = _fft_plan(shape, max_fft_elements)

    # m (mask), f (deviation from the mean, 0 outside) and g = f^2 on the bounding box, z padded to
    # n_slabs * thickness and x to the FFT length (so that the first transform needs no padded copy)
    inside = mask[box]
    grids = np.zeros((3, n_slabs * thickness, int(shape[1]), fft_shape[2]))
    grids[0, :shape[0], :, :shape[2]] = inside
    np.subtract(image[box], mean, out=grids[1, :shape[0], :, :shape[2]], where=inside)
    np.square(grids[1], out=grids[2])

    # Every sum is an inner product <a, w * b> = sum_k a_k (w * b)_k of two real grids, which Parseval's
    # theorem turns into (1 / N) Re sum_omega conj(A) W B over the spectra (rfft: the half spectrum, the
    # bins that stand for two counted twice): one forward FFT per grid, no inverse FFT.
    last = fft_shape[-1]
    twice = np.full(last // 2 + 1, 2.0)
    twice[0] = twice[-1] = 1.0                 # even length: bins 0 and L / 2 stand for themselves only
    n_fft = float(np.prod(fft_shape))

    def spectrum(grid):
        """rfftn of one zero-padded grid, one axis at a time so that the all-zero lines of the padding are
        not transformed (the last axis on the slab's lines only, the middle one on its slices only)."""
        out = _fft(_rfft(grid, 2, threads), 1, threads, fft_shape[1])
        return _fft(out, 0, threads, fft_shape[0])

    # pairs within a slab: the kernel is even along every axis, so its spectrum is real (read folded)
    weight_sum = moran_sum = geary_sum = 0.0
    banded = _large_grid(fft_shape)
    # a large grid's FFTs run on the process's cores (one in a cohort worker; the same values on any number)
    threads = compute_threads() if banded else 1
    folded, fold_z, fold_y = _folded_kernel_spectrum(fft_shape, (thickness, *shape[1:]), spacing, threads)
    folded *= twice / n_fft

    def slab_sums(stack):
        """(sum W |M|^2, sum W Re(conj(G) M), sum W |F|^2) of the three grids of ``stack`` (3, t, y, x): transformed
        along x (into a grid zero-padded along y) and y, then along z (zero-padded) and summed. A large grid
        (``MORAN_BANDED_ELEMENTS``) is done in bands of ``MORAN_BAND_ROWS`` y frequencies (a band's spectra stay in
        the cache) on ``threads`` threads, each reusing one buffer for its bands, the bands' sums added in band
        order; a small one at once, in place in one grid zero-padded along z and y."""
        depth, height = stack.shape[1], stack.shape[2]
        if not banded:
            spectra = np.zeros((3, *fft_shape[:2], fft_shape[2] // 2 + 1), dtype=np.complex128)
            _rfft(stack, 3, 1, out=spectra[:, :depth, :height])
            _fft(spectra[:, :depth], 2, 1)
            _fft(spectra, 1, 1)
            return _kernels.folded_spectral_sums(folded, fold_z, fold_y, spectra[0], spectra[2], spectra[1])
        lines = np.zeros((3, depth, fft_shape[1], fft_shape[2] // 2 + 1), dtype=np.complex128)
        _rfft(stack, 3, threads, out=lines[:, :, :height])
        _fft(lines, 2, threads)
        rows = MORAN_BAND_ROWS
        starts = list(range(0, fft_shape[1], rows))
        workers = min(threads, len(starts))

        def bands(first):
            """The sums of the bands first, first + workers, ... in one buffer (contiguous whatever the width)."""
            buffer = np.empty(3 * fft_shape[0] * rows * lines.shape[3], dtype=np.complex128)
            out = []
            for start in starts[first::workers]:
                stop = min(start + rows, fft_shape[1])
                spectra = buffer[:3 * fft_shape[0] * (stop - start) * lines.shape[3]].reshape(
                    3, fft_shape[0], stop - start, lines.shape[3])
                spectra[:, :depth] = lines[:, :, start:stop]
                spectra[:, depth:] = 0.0
                _fft(spectra, 1, 1)
                out.append(_kernels.folded_spectral_sums(folded, fold_z, fold_y[start:stop], spectra[0], spectra[2],
                                                         spectra[1]))
            return out

        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:   # ducc0 and the sums kernel release the GIL
                per_worker = list(pool.map(bands, range(workers)))
        else:
            per_worker = [bands(0)]
        in_order = [per_worker[k % workers][k // workers] for k in range(len(starts))]
        return tuple(sum(values) for values in zip(*in_order))

    for i in range(n_slabs):
        a = grids[:, i * thickness:(i + 1) * thickness]
        if not a[0].any():
            continue
        weight, first, moran = slab_sums(a)
        weight_sum += weight
        moran_sum += moran
        geary_sum += 2.0 * first - 2.0 * moran  # sum w (f_k - f_k')^2 = 2 sum w f_k^2 - 2 sum w f_k f_k'

    # pairs between slabs i and i + shift (z offset shift * t - e_z): not even along z, complex spectrum
    planar = 0.0
    for axis, (s, size, h) in enumerate(zip(shape[1:], fft_shape[1:], spacing[1:])):
        e = np.arange(size)
        offset = np.where(e < s, e, e - size) * h
        offset = np.where((e >= s) & (e <= size - s), np.inf, offset)
        planar = planar + ((offset ** 2)[:, None] if axis == 0 else (offset ** 2)[None, :])
    ez = np.arange(fft_shape[0])
    local_dz = np.where(ez < thickness, ez, ez - fft_shape[0])
    valid_z = (ez < thickness) | (ez > fft_shape[0] - thickness)
    for shift in range(1, n_slabs):
        dz = np.where(valid_z, (shift * thickness - local_dz) * spacing[0], np.inf)
        kernel = dz[:, None, None] ** 2 + planar[None, :, :]
        np.sqrt(kernel, out=kernel)
        np.divide(1.0, kernel, out=kernel)
        weights = ducc0.fft.r2c(kernel, axes=(0, 1, 2), nthreads=threads)   # scipy.fft.rfftn
        del kernel
        weights *= twice / n_fft

        def inner(x, y, weights=weights):
            """Re sum conj(x) w y, by numpy's sums (BLAS's vdot would depend on its thread count)."""
            product = weights * y
            return float(np.sum(x.real * product.real) + np.sum(x.imag * product.imag))
        for i in range(n_slabs - shift):
            a = grids[:, i * thickness:(i + 1) * thickness]
            b = grids[:, (i + shift) * thickness:(i + shift + 1) * thickness]
            if not (a[0].any() and b[0].any()):
                continue
            # spectra made and dropped one or two at a time: at most four live at once (memory)
            a_m, b_m = spectrum(a[0]), spectrum(b[0])
            weight = inner(a_m, b_m)                                  # sum w
            first = inner(spectrum(a[2]), b_m)                        # sum w f_k^2
            second = inner(a_m, spectrum(b[2]))                       # sum w f_k'^2
            del a_m, b_m
            moran = inner(spectrum(a[1]), spectrum(b[1]))             # sum w f_k f_k'
            # the slab pair (i, i + shift) stands for both orders
            weight_sum += 2.0 * weight
            moran_sum += 2.0 * moran
            geary_sum += 2.0 * (first + second - 2.0 * moran)
    return weight_sum, moran_sum, geary_sum


def _fft_plan(shape, max_fft_elements: int = MAX_FFT_ELEMENTS) -> tuple[int, int, tuple]:
    """(slab thickness, number of slabs, FFT grid shape) of :func:`moran_geary_sums` on a bounding box of ``shape``
    (z, y, x): the whole box in one grid of about (2 s - 1) per axis, or cut into z slabs until a slab pair's grid
    holds at most ``max_fft_elements``."""
    plane = [_even_fast_len(2 * int(s) - 1) for s in shape[1:]]
    thickness = int(shape[0])
    while thickness > 1 and _even_fast_len(2 * thickness - 1) * plane[0] * plane[1] > max_fft_elements:
        thickness = (thickness + 1) // 2
    return thickness, -(-int(shape[0]) // thickness), (_even_fast_len(2 * thickness - 1), *plane)


def _large_grid(fft_shape) -> bool:
    """Whether :func:`moran_geary_sums` works on an FFT grid of ``fft_shape`` in bands on the process's threads, and
    :func:`start_autocorrelation_sums` starts it beside the other families: at least :data:`MORAN_BANDED_ELEMENTS`."""
    return math.prod(int(n) for n in fft_shape) >= MORAN_BANDED_ELEMENTS


def _rfft(x: np.ndarray, axis: int, threads: int, out: np.ndarray | None = None) -> np.ndarray:
    """``scipy.fft.rfft(x, axis=axis)``, by ducc0 (the FFT library of scipy >= 1.18; about 1.4x faster than the
    pocketfft of older scipy, the same values to rounding); into ``out`` when given."""
    return ducc0.fft.r2c(x, axes=(axis,), nthreads=threads, out=out)


def _fft(x: np.ndarray, axis: int, threads: int, n: int | None = None) -> np.ndarray:
    """``scipy.fft.fft(x, n, axis=axis)`` of a complex array, zero-padded to ``n`` along ``axis`` first, by ducc0
    (:func:`_rfft`); ``x`` itself is overwritten when it needs no padding."""
    if n is not None and n != x.shape[axis]:
        padded = np.zeros(x.shape[:axis] + (n,) + x.shape[axis + 1:], dtype=np.complex128)
        padded[(slice(None),) * axis + (slice(0, x.shape[axis]),)] = x
        x = padded
    return ducc0.fft.c2c(x, axes=(axis,), nthreads=threads, out=x)


def _even_fast_len(n: int) -> int:
    """The smallest even length >= n that the FFT handles fast (even: see :func:`_folded_kernel_spectrum`)."""
    length = scipy.fft.next_fast_len(n, real=True)
    while length % 2:
        length = scipy.fft.next_fast_len(length + 1, real=True)
    return length


def _folded_kernel_spectrum(fft_shape, extent, spacing, threads=1):
    """Spectrum of the kernel w(d) = 1 / ||d|| (mm; 0 at d = 0 and at offsets beyond ``extent``) on an FFT
    grid of even lengths L, in a folded form.

    The kernel is even along each axis, so its spectrum is real and, per axis, the DCT-I of the kernel's
    offsets 0 .. L / 2: one DCT-I of an eighth of the grid instead of an FFT of all of it. Bin k of the
    spectrum is bin min(k, L - k) of the DCT (the rfft's last axis stops at L / 2 already).
    Returns (DCT, fold along z, fold along y).
    """
    squared = np.zeros((1, 1, 1))
    for axis, (size, reach, h) in enumerate(zip(fft_shape, extent, spacing)):
        e = np.arange(size // 2 + 1, dtype=np.float64)
        d2 = np.where(e < reach, (e * h) ** 2, np.inf)
        squared = squared + d2.reshape([-1 if a == axis else 1 for a in range(3)])
    squared[0, 0, 0] = np.inf
    kernel = 1.0 / np.sqrt(squared)
    spectrum = ducc0.fft.dct(kernel, type=1, axes=(0, 1, 2), nthreads=threads, out=kernel)   # scipy.fft.dctn
    folds = [np.minimum(np.arange(size), size - np.arange(size)) for size in fft_shape[:2]]
    return spectrum, folds[0], folds[1]


def _pairwise_sums(points: np.ndarray, deviation: np.ndarray, min_spacing: float) -> tuple[float, float, float]:
    """Blockwise pairwise version of :func:`moran_geary_sums`: the upper triangle of the pair matrix
    in row blocks (a block's square part holds both orders of its pairs, the rectangle right of it
    one order, counted twice); memory bounded by ``PAIR_BLOCK_ELEMENTS`` doubles per block."""
    points = points - points.mean(axis=0)
    n = len(points)
    squared = np.einsum("ij,ij->i", points, points)
    columns = np.stack([np.ones(n), deviation, deviation ** 2], axis=1)
    threshold = 0.25 * min_spacing ** 2  # below any distance between two distinct voxel centres
    block = max(1, PAIR_BLOCK_ELEMENTS // max(n, 1))
    weight_sum = moran_sum = geary_sum = 0.0
    for start in range(0, n, block):
        stop = min(n, start + block)
        d2 = squared[start:stop, None] + squared[None, start:] - 2.0 * points[start:stop] @ points[start:].T
        near = d2 < threshold            # the voxel itself (distance 0): w = 0
        np.maximum(d2, threshold, out=d2)
        np.sqrt(d2, out=d2)
        np.divide(1.0, d2, out=d2)
        d2[near] = 0.0
        d2[:, stop - start:] *= 2.0
        sums = d2 @ columns[start:]      # per row k: sum w, sum w f_k', sum w f_k'^2
        f = deviation[start:stop]
        weight_sum += float(sums[:, 0].sum())
        moran_sum += float(np.dot(f, sums[:, 1]))
        geary_sum += float(np.dot(f ** 2, sums[:, 0]) - 2.0 * np.dot(f, sums[:, 1]) + sums[:, 2].sum())
    return weight_sum, moran_sum, geary_sum


def _box_dimensions(points: np.ndarray) -> np.ndarray:
    return points.max(axis=0) - points.min(axis=0)


def _box_area(dimensions) -> float:
    a, b, c = dimensions
    return float(2.0 * (a * b + a * c + b * c))


def oriented_minimum_bounding_box(hull: ConvexHull) -> np.ndarray:
    """Side lengths of the smallest box with one face orthogonal to a facet normal of ``hull`` (or the AABB).

    For each distinct normal n (u, v: an orthonormal basis of its plane): depth = extent of the vertices
    along n, and the other sides the minimum-area rectangle of the projection on (u, v) (one side along the
    projection of a silhouette edge of the hull: :func:`._morphology_kernels.oriented_minimum_bounding_box`; of
    parallel edges of a lattice hull only the first, :func:`._morphology_kernels.edge_directions`). The features take
    it with the MVEE's iterations in one kernel call (:attr:`Morphology.ombb_dimensions`): the same values.
    """
    return _kernels.oriented_minimum_bounding_box(*_ombb_arguments(hull))


def _ombb_arguments(hull) -> tuple:
    """The arguments of :func:`._morphology_kernels.oriented_minimum_bounding_box` over all of ``hull``'s distinct
    normals: (vertices centred on their mean, edges, facet normals, the first facet of each distinct normal, the
    AABB, edge directions)."""
    points = hull.points[hull.vertices]
    points = np.ascontiguousarray(points - points.mean(axis=0), dtype=np.float64)
    position = np.full(len(hull.points), -1, dtype=np.int64)
    position[hull.vertices] = np.arange(len(hull.vertices))
    normals = np.ascontiguousarray(hull.equations[:, :3], dtype=np.float64)
    first = _kernels.distinct_normals(normals)
    edges = _kernels.hull_edges(np.ascontiguousarray(position[hull.simplices], dtype=np.int64), len(points))
    directions = _kernels.edge_directions(np.ascontiguousarray(hull.cells[hull.vertices]), edges) \
        if isinstance(hull, LatticeHull) else np.arange(len(edges))
    return points, edges, normals, first, _box_dimensions(points).astype(np.float64), directions


def minimum_volume_enclosing_ellipsoid(points: np.ndarray, tolerance: float = MVEE_TOLERANCE,
                                       max_iterations: int = MVEE_MAX_ITERATIONS) -> np.ndarray:
    """Semi-axis lengths (descending) of the MVEE of ``points`` (n x 3; Khachiyan's algorithm, with away steps).

    Finds weights u on the points such that ``A = (P U P^T - c c^T)^-1 / d`` with ``c = P u``
    defines the ellipsoid ``(x - c)^T A (x - c) <= 1``. Each iteration computes
    ``M_k = q_k^T (Q U Q^T)^-1 q_k``, ``q_k = (p_k, 1)``, and moves weight towards the point with the
    largest M_k (Khachiyan's step) or, when that is better, away from the supporting point with the
    smallest M_k (Todd and Yildirim's away step, which makes the convergence linear). Stops when
    ``max_k M_k <= (d + 1)(1 + tolerance)`` and ``min_{u_k > 0} M_k >= (d + 1)(1 - tolerance)``.
    The result is scaled to enclose every point.
    """
    return _ellipsoid_axes(points, _kernels.khachiyan_weights(_lifted(points), float(tolerance), int(max_iterations)))


def _lifted(points: np.ndarray) -> np.ndarray:
    """``q_k = (p_k, 1)``, the rows of Khachiyan's algorithm (:func:`minimum_volume_enclosing_ellipsoid`)."""
    return np.hstack([points, np.ones((len(points), 1))])


def _ellipsoid_axes(points: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Semi-axis lengths (descending) of the ellipsoid of Khachiyan's weights ``u`` on ``points``, scaled to enclose
    every point (:func:`minimum_volume_enclosing_ellipsoid`)."""
    d = points.shape[1]
    centre = points.T @ u
    scatter = (points * u[:, None]).T @ points - np.outer(centre, centre)
    a = np.linalg.inv(scatter) / d
    offsets = points - centre
    reach = float(np.max(np.einsum("ij,jk,ik->i", offsets, a, offsets)))
    a /= max(reach, 1.0)
    return np.sort(1.0 / np.sqrt(np.linalg.eigvalsh(a)))[::-1]


def ellipsoid_volume(a: float, b: float, c: float) -> float:
    return 4.0 * math.pi * a * b * c / 3.0


def ellipsoid_area(a: float, b: float, c: float, degree: int = 20) -> float:
    """Surface area of an ellipsoid with semi-axes a >= b >= c, as IBSI 1 defines it (Legendre series).

    A = 4 pi a b sum_{nu=0}^{20} (alpha beta)^nu / (1 - 4 nu^2) P_nu((alpha^2 + beta^2) / (2 alpha beta)),
    alpha = sqrt(1 - b^2 / a^2), beta = sqrt(1 - c^2 / a^2).

    The terms T_nu = (alpha beta)^nu P_nu(x) come from Bonnet's recurrence multiplied through by
    (alpha beta)^(nu + 1): (nu + 1) T_nu+1 = (2 nu + 1) s T_nu - nu (alpha beta)^2 T_nu-1 with
    s = (alpha^2 + beta^2) / 2, which stays finite when alpha beta -> 0 (spheroids, spheres).
    Note: this series is IBSI's definition (the reference values follow it); it is not the exact
    ellipsoid area 4 pi abc R_G(a^-2, b^-2, c^-2), from which it differs by a few per cent.
    """
    a, b, c = sorted((float(a), float(b), float(c)), reverse=True)
    if a <= 0.0:
        return 0.0
    alpha2 = max(0.0, 1.0 - (b / a) ** 2)
    beta2 = max(0.0, 1.0 - (c / a) ** 2)
    product2 = alpha2 * beta2                      # (alpha beta)^2
    half_sum = 0.5 * (alpha2 + beta2)              # x alpha beta
    previous, current = 0.0, 1.0                   # T_-1 (unused), T_0
    total = current                                # nu = 0 term: T_0 / (1 - 0)
    for nu in range(degree):
        following = ((2 * nu + 1) * half_sum * current - nu * product2 * previous) / (nu + 1)
        previous, current = current, following
        total += current / (1.0 - 4.0 * (nu + 1) ** 2)
    return float(4.0 * math.pi * a * b * total)


# ----------------------------------------------------------------------------------------------
# Features (one function per IBSI feature; the docstring holds the IBSI formula)
# ----------------------------------------------------------------------------------------------

@feature("morph_volume", "Volume (mesh)", "mm^3", "Volume enclosed by the marching-cubes surface mesh of the ROI.",
          "original_shape_MeshVolume", ibsi_id="RNU0")
def morph_volume(g: Morphology) -> float:
    """F_morph.vol = (1/6) |sum_f a_f . (b_f x c_f)| over mesh faces f with vertices a, b, c (IBSI RNU0)."""
    return g.volume


@feature("morph_vol_approx", "Volume (voxel counting)", "mm^3", "Number of ROI voxels times the voxel volume.",
          "original_shape_VoxelVolume", ibsi_id="YEKZ")
def morph_vol_approx(g: Morphology) -> float:
    """F_morph.approx.vol = sum_k V_k, V_k the volume of voxel k (IBSI YEKZ)."""
    return float(g.morph_mask.sum() * np.prod(g.spacing))


@feature("morph_area_mesh", "Surface area (mesh)", "mm^2", "Area of the marching-cubes surface mesh of the ROI.",
          "original_shape_SurfaceArea", ibsi_id="C0JK")
def morph_area_mesh(g: Morphology) -> float:
    """F_morph.area = sum_f |(b_f - a_f) x (c_f - a_f)| / 2 (IBSI C0JK)."""
    return g.area


@feature("morph_av", "Surface to volume ratio", "mm^-1", "Mesh surface area divided by mesh volume.",
          "original_shape_SurfaceVolumeRatio", ibsi_id="2PR5")
def morph_av(g: Morphology) -> float:
    """F_morph.av = A / V (IBSI 2PR5)."""
    return g.area / g.volume


@feature("morph_comp_1", "Compactness 1", "", "V / (pi^1/2 A^3/2): how sphere-like the ROI is.",
          "original_shape_Compactness1", ibsi_id="SKGS")
def morph_comp_1(g: Morphology) -> float:
    """F_morph.comp.1 = V / (pi^(1/2) A^(3/2)) (IBSI SKGS)."""
    return g.volume / (math.sqrt(math.pi) * g.area ** 1.5)


@feature("morph_comp_2", "Compactness 2", "", "36 pi V^2 / A^3 (1 for a sphere).", "original_shape_Compactness2",
         ibsi_id="BQWJ")
def morph_comp_2(g: Morphology) -> float:
    """F_morph.comp.2 = 36 pi V^2 / A^3 (IBSI BQWJ)."""
    return 36.0 * math.pi * g.volume ** 2 / g.area ** 3


@feature("morph_sph_dispr", "Spherical disproportion", "", "A / (36 pi V^2)^(1/3) (1 for a sphere, larger otherwise).",
          "original_shape_SphericalDisproportion", ibsi_id="KRCK")
def morph_sph_dispr(g: Morphology) -> float:
    """F_morph.sph.dispr = A / (36 pi V^2)^(1/3) (IBSI KRCK)."""
    return g.area / (36.0 * math.pi * g.volume ** 2) ** (1.0 / 3.0)


@feature("morph_sphericity", "Sphericity", "", "(36 pi V^2)^(1/3) / A (1 for a sphere, smaller otherwise).",
          "original_shape_Sphericity", ibsi_id="QCFX")
def morph_sphericity(g: Morphology) -> float:
    """F_morph.sphericity = (36 pi V^2)^(1/3) / A (IBSI QCFX)."""
    return (36.0 * math.pi * g.volume ** 2) ** (1.0 / 3.0) / g.area


@feature("morph_asphericity", "Asphericity", "", "(A^3 / (36 pi V^2))^(1/3) - 1 (0 for a sphere).", ibsi_id="25C7")
def morph_asphericity(g: Morphology) -> float:
    """F_morph.asphericity = (A^3 / (36 pi V^2))^(1/3) - 1 (IBSI 25C7)."""
    return (g.area ** 3 / (36.0 * math.pi * g.volume ** 2)) ** (1.0 / 3.0) - 1.0


@feature("morph_com", "Centre of mass shift", "mm",
          "Distance between the geometric centre of the ROI and its intensity-weighted centre.", ibsi_id="KLMA")
def morph_com(g: Morphology) -> float:
    """F_morph.com = || (1/N_v,m) sum_k X_c,k - sum_k X_gl,k X_c,k / sum_k X_gl,k || (IBSI KLMA).

    The geometric centre uses the morphological mask, the intensity-weighted centre the intensity mask.
    """
    if not g.int_mask.any():
        raise Undefined("the intensity mask is empty")
    if g._moments[3] == 0.0:
        raise Undefined("the intensities in the ROI sum to zero (no intensity-weighted centre)")
    return float(np.linalg.norm(g.centre - g.weighted_centre))


@feature("morph_diam", "Maximum 3D diameter", "mm", "Largest distance between two vertices of the ROI mesh.",
          "original_shape_Maximum3DDiameter", ibsi_id="L0JK")
def morph_diam(g: Morphology) -> float:
    """F_morph.diam = max_{k1,k2} ||X_vx,k1 - X_vx,k2|| over mesh (convex hull) vertices (IBSI L0JK)."""
    return math.sqrt(_kernels.max_squared_distance(np.ascontiguousarray(g.hull_points)))


@feature("morph_pca_maj_axis", "Major axis length", "mm", "4 sqrt(lambda_major) (PCA of voxel positions).",
          "original_shape_MajorAxisLength", ibsi_id="TDIC")
def morph_pca_maj_axis(g: Morphology) -> float:
    """F_morph.pca.major = 4 sqrt(lambda_major) (IBSI TDIC)."""
    return 4.0 * math.sqrt(g.eigenvalues[0])


@feature("morph_pca_min_axis", "Minor axis length", "mm", "4 sqrt(lambda_minor) (PCA of voxel positions).",
          "original_shape_MinorAxisLength", ibsi_id="P9VJ")
def morph_pca_min_axis(g: Morphology) -> float:
    """F_morph.pca.minor = 4 sqrt(lambda_minor) (IBSI P9VJ)."""
    return 4.0 * math.sqrt(g.eigenvalues[1])


@feature("morph_pca_least_axis", "Least axis length", "mm", "4 sqrt(lambda_least) (PCA of voxel positions).",
          "original_shape_LeastAxisLength", ibsi_id="7J51")
def morph_pca_least_axis(g: Morphology) -> float:
    """F_morph.pca.least = 4 sqrt(lambda_least) (IBSI 7J51)."""
    return 4.0 * math.sqrt(g.eigenvalues[2])


@feature("morph_pca_elongation", "Elongation", "", "sqrt(lambda_minor / lambda_major).", "original_shape_Elongation",
         ibsi_id="Q3CK")
def morph_pca_elongation(g: Morphology) -> float:
    """F_morph.pca.elongation = sqrt(lambda_minor / lambda_major) (IBSI Q3CK)."""
    major, minor, _ = g.eigenvalues
    if major <= 0.0:
        raise Undefined("the ROI has no spatial extent (lambda_major = 0)")
    return math.sqrt(minor / major)


@feature("morph_pca_flatness", "Flatness", "", "sqrt(lambda_least / lambda_major).", "original_shape_Flatness",
         ibsi_id="N17B")
def morph_pca_flatness(g: Morphology) -> float:
    """F_morph.pca.flatness = sqrt(lambda_least / lambda_major) (IBSI N17B)."""
    major, _, least = g.eigenvalues
    if major <= 0.0:
        raise Undefined("the ROI has no spatial extent (lambda_major = 0)")
    return math.sqrt(least / major)


@feature("morph_vol_dens_aabb", "Volume density (AABB)", "", "Mesh volume / volume of the axis-aligned bounding box.",
         ibsi_id="PBX1")
def morph_vol_dens_aabb(g: Morphology) -> float:
    """F_morph.v.dens.aabb = V / V_aabb, AABB of the mesh vertices (IBSI PBX1)."""
    return g.volume / float(np.prod(_box_dimensions(g.hull_points)))


@feature("morph_area_dens_aabb", "Area density (AABB)", "",
          "Mesh area / surface area of the axis-aligned bounding box.",
         ibsi_id="R59B")
def morph_area_dens_aabb(g: Morphology) -> float:
    """F_morph.a.dens.aabb = A / A_aabb (IBSI R59B)."""
    return g.area / _box_area(_box_dimensions(g.hull_points))


@feature("morph_vol_dens_ombb", "Volume density (OMBB)", "",
          "Mesh volume / volume of the oriented minimum bounding box (not standardised by IBSI).", ibsi_id="ZH1A")
def morph_vol_dens_ombb(g: Morphology) -> float:
    """F_morph.v.dens.ombb = V / V_ombb (IBSI ZH1A; reference value not standardised)."""
    return g.volume / float(np.prod(g.ombb_dimensions))


@feature("morph_area_dens_ombb", "Area density (OMBB)", "",
          "Mesh area / surface area of the oriented minimum bounding box (not standardised by IBSI).", ibsi_id="IQYR")
def morph_area_dens_ombb(g: Morphology) -> float:
    """F_morph.a.dens.ombb = A / A_ombb (IBSI IQYR; reference value not standardised)."""
    return g.area / _box_area(g.ombb_dimensions)


def _aee_axes(g: Morphology) -> tuple[float, float, float]:
    a, b, c = (2.0 * math.sqrt(value) for value in g.eigenvalues)
    return a, b, c


@feature("morph_vol_dens_aee", "Volume density (AEE)", "",
          "Mesh volume / volume of the approximate enclosing ellipsoid (semi-axes 2 sqrt(lambda)).", ibsi_id="6BDE")
def morph_vol_dens_aee(g: Morphology) -> float:
    """F_morph.v.dens.aee = 3 V / (4 pi a b c), a = 2 sqrt(lambda_major), b = 2 sqrt(lambda_minor),
    c = 2 sqrt(lambda_least) (IBSI 6BDE)."""
    volume = ellipsoid_volume(*_aee_axes(g))
    if volume <= 0.0:
        raise Undefined("the approximate enclosing ellipsoid has zero volume (ROI without extent along a PCA axis)")
    return g.volume / volume


@feature("morph_area_dens_aee", "Area density (AEE)", "",
          "Mesh area / surface area of the approximate enclosing ellipsoid.", ibsi_id="RDD2")
def morph_area_dens_aee(g: Morphology) -> float:
    """F_morph.a.dens.aee = A / A_aee, A_aee = 4 pi a b sum_{nu=0}^{20} (alpha beta)^nu / (1 - 4 nu^2)
    P_nu((alpha^2 + beta^2) / (2 alpha beta)), alpha = sqrt(1 - b^2/a^2), beta = sqrt(1 - c^2/a^2) (IBSI RDD2)."""
    area = ellipsoid_area(*_aee_axes(g))
    if area <= 0.0:
        raise Undefined("the approximate enclosing ellipsoid is degenerate (zero surface area)")
    return g.area / area


@feature("morph_vol_dens_mvee", "Volume density (MVEE)", "",
          "Mesh volume / volume of the minimum volume enclosing ellipsoid (not standardised by IBSI).", ibsi_id="SWZ1")
def morph_vol_dens_mvee(g: Morphology) -> float:
    """F_morph.v.dens.mvee = V / V_mvee, MVEE of the convex hull vertices by Khachiyan's algorithm (IBSI SWZ1)."""
    return g.volume / ellipsoid_volume(*g.mvee_axes)


@feature("morph_area_dens_mvee", "Area density (MVEE)", "",
          "Mesh area / surface area of the minimum volume enclosing ellipsoid (not standardised by IBSI).",
          ibsi_id="BRI8")
def morph_area_dens_mvee(g: Morphology) -> float:
    """F_morph.a.dens.mvee = A / A_mvee (IBSI BRI8)."""
    return g.area / ellipsoid_area(*g.mvee_axes)


@feature("morph_vol_dens_conv_hull", "Volume density (convex hull)", "", "Mesh volume / volume of its convex hull.",
         ibsi_id="R3ER")
def morph_vol_dens_conv_hull(g: Morphology) -> float:
    """F_morph.v.dens.conv.hull = V / V_convex (IBSI R3ER)."""
    return g.volume / float(g.hull.volume)


@feature("morph_area_dens_conv_hull", "Area density (convex hull)", "", "Mesh area / surface area of its convex hull.",
         ibsi_id="7T7F")
def morph_area_dens_conv_hull(g: Morphology) -> float:
    """F_morph.a.dens.conv.hull = A / A_convex (IBSI 7T7F)."""
    return g.area / float(g.hull.area)


@feature("morph_integ_int", "Integrated intensity", "intensity x mm^3",
          "Mesh volume times the mean intensity in the ROI (intensity mask).", ibsi_id="99N0")
def morph_integ_int(g: Morphology) -> float:
    """F_morph.integ.int = V (1/N_v,gl) sum_k X_gl,k (IBSI 99N0)."""
    if not g.int_mask.any():
        raise Undefined("the intensity mask is empty")
    return g.volume * float(g.int_values.mean())


@feature("morph_moran_i", "Moran's I index", "",
          "Spatial autocorrelation of intensities with inverse-distance weights (1: clustered, 0: random).",
          ibsi_id="N365")
def morph_moran_i(g: Morphology) -> float:
    """F_morph.moran.i = N_v / sum_{k1 != k2} w_k1k2 * sum_{k1 != k2} w_k1k2 (X_k1 - mu)(X_k2 - mu)
    / sum_k (X_k - mu)^2, w_k1k2 = 1 / ||X_c,k1 - X_c,k2|| (mm), voxels of the intensity mask (IBSI N365).
    Computed exactly over all pairs."""
    return g.autocorrelation[0]


@feature("morph_geary_c", "Geary's C measure", "",
          "Spatial autocorrelation from squared intensity differences with inverse-distance weights.", ibsi_id="NPT7")
def morph_geary_c(g: Morphology) -> float:
    """F_morph.geary.c = (N_v - 1) / (2 sum_{k1 != k2} w_k1k2) * sum_{k1 != k2} w_k1k2 (X_k1 - X_k2)^2
    / sum_k (X_k - mu)^2, w as for Moran's I (IBSI NPT7). Computed exactly over all pairs."""
    return g.autocorrelation[1]


# ----------------------------------------------------------------------------------------------

#: The features that read the boxes :meth:`Morphology.start_hull_boxes` starts (the OMBB and the MVEE).
_HULL_BOX_TAGS = frozenset({"morph_vol_dens_ombb", "morph_area_dens_ombb", "morph_vol_dens_mvee",
                            "morph_area_dens_mvee"})


def compute(roi, settings=None, tags=None) -> dict:
    """All morphological features of ``roi`` as {IBSI tag: value}; NaN with a note in ``roi.notes`` where undefined.

    ``tags`` restricts the computation to some tags (default: all of :data:`FEATURES`).
    """
    tags = list(FEATURES) if tags is None else [t for t in tags if t in FEATURES]
    if not np.any(roi.morphological_mask):
        roi.notes.append("morphology: the morphological mask is empty; all morph_* features are NaN")
        return {tag: math.nan for tag in tags}
    geometry = Morphology(roi)
    # with two threads and the background thread not busy with Moran's sums (a small ROI), the OMBB and the MVEE are
    # computed there while the other features are computed here, and the features that need them last; the values and
    # notes in ``tags`` order either way
    started, order = None, tags
    if compute_threads() > 1 and roi.cache.get("autocorrelation_sums") is None and _HULL_BOX_TAGS & set(tags):
        started = geometry.start_hull_boxes()
        order = [tag for tag in tags if tag not in _HULL_BOX_TAGS] + [tag for tag in tags if tag in _HULL_BOX_TAGS]
    values, why = {}, {}
    try:
        for tag in order:
            try:
                value = float(FUNCTIONS[tag](geometry))
                if not math.isfinite(value):
                    raise Undefined("the value is not finite")
            except Undefined as reason:
                value, why[tag] = math.nan, str(reason)
            except (QhullError, np.linalg.LinAlgError, ZeroDivisionError) as error:
                value = math.nan
                why[tag] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            values[tag] = value
    finally:    # not needed any more where it has not started yet
        if started is not None and not started.cancel():
            wait([started])
    reasons = {}
    for tag in tags:
        if tag in why:
            reasons.setdefault(why[tag], []).append(tag)
    for reason, undefined in reasons.items():
        roi.notes.append(f"morphology: {', '.join(undefined)} NaN: {reason}")
    return {tag: values[tag] for tag in tags}
