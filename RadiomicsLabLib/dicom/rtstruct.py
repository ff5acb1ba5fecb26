"""RTSTRUCT ROIs rasterised onto the grid of their image series, by the rule of plastimatch and most planning systems.

Rule (plastimatch's ``rasterize_slice.cxx`` with ``convert --xor-contours``; without that option plastimatch
fills inner contours, taking the union):

* each CLOSED_PLANAR contour belongs to the slice its plane lies on (its slice index within
  :data:`SLICE_TOLERANCE` of a whole number; a contour between slices is an error, never interpolated);
* a voxel is inside when its centre is inside the polygon, by the even-odd (crossing) rule applied to all the
  ROI's contours on the slice together, so a contour inside another is a hole;
* a centre exactly on an edge is decided half-open, as a scan line does: scan line ``j`` meets an edge when
  ``y_low <= j < y_high``, and voxel ``i`` is past a crossing at ``x`` when ``i >= x`` (left and lower
  edges in, right and upper edges out, in voxel index coordinates).

Contour points (mm, patient LPS) go to voxel indices through the series' origin, spacing and direction, so any
slice orientation works as long as each contour lies in a slice plane.
"""

from __future__ import annotations

import numpy as np

from ..errors import RadiomicsLabError
from .read import Segment, SeriesGrid, check_references, pick

#: Largest distance (fraction of the slice spacing) of a contour from the slice it is put on.
SLICE_TOLERANCE = 0.1
#: Voxel-index coordinates this close to a whole number are taken as on it: writers round the millimetres (float32
#: keeps 6e-5 mm at 600 mm; DS strings 16 characters), which must not decide a centre lying on an edge.
SNAP = 1e-4
#: How far (voxels) a contour point may lie beyond the outer voxel centres: half a voxel, the image's edge.
EDGE = 0.5 + 1e-3


def rasterise(ds, path, grid: SeriesGrid, rois=None) -> list[Segment]:
    """Segments of the RTSTRUCT dataset ``ds`` (read from ``path``) on ``grid``; ``rois``: names, None = all."""
    structures = list(ds.get("StructureSetROISequence", []))
    names = [str(item.get("ROIName", f"ROI {item.ROINumber}")) for item in structures]
    if not structures:
        raise RadiomicsLabError(f"The RTSTRUCT '{path}' holds no ROIs; export the structure set again with its ROIs.")
    chosen = [structures[i] for i in pick(names, rois, path, "RTSTRUCT")]
    contours = {int(item.ReferencedROINumber): list(item.get("ContourSequence", []))
                for item in ds.get("ROIContourSequence", [])}
    observed = {int(item.ReferencedROINumber): str(item.get("RTROIInterpretedType", ""))
                for item in ds.get("RTROIObservationsSequence", [])}
    referenced = {str(series.SeriesInstanceUID)
                  for frame in ds.get("ReferencedFrameOfReferenceSequence", [])
                  for study in frame.get("RTReferencedStudySequence", [])
                  for series in study.get("RTReferencedSeriesSequence", [])}
    frames = {str(item.ReferencedFrameOfReferenceUID) for item in chosen if item.get("ReferencedFrameOfReferenceUID")}
    check_references(path, "RTSTRUCT", grid, referenced, frames)
    segments = []
    for item in chosen:
        number, name = int(item.ROINumber), str(item.get("ROIName", f"ROI {item.ROINumber}"))
        mask = roi_mask(contours.get(number, []), name, path, grid)
        segments.append(Segment(name=name, mask=grid.new_mask(mask), number=number,
                                description=str(item.get("ROIDescription", "") or observed.get(number, ""))))
    return segments


def roi_mask(contours, name: str, path, grid: SeriesGrid) -> np.ndarray:
    """The (z, y, x) uint8 mask of one ROI's contours (see the module docstring for the rule)."""
    if not contours:
        raise RadiomicsLabError(f"The ROI '{name}' of the RTSTRUCT '{path}' has no contours (an empty ROI); "
                                "pick another ROI with --roi or draw this one first.")
    open_kinds = sorted({str(c.get("ContourGeometricType", "")) for c in contours} - {"CLOSED_PLANAR"})
    if open_kinds:
        raise RadiomicsLabError(f"The ROI '{name}' of the RTSTRUCT '{path}' has {'/'.join(open_kinds)} contours, which "
                                "enclose no area; only CLOSED_PLANAR contours can be rasterised: close them or pick "
                                "another ROI.")
    nx, ny, nz = grid.image.GetSize()
    crossings = np.zeros((nz, ny, nx + 1), np.uint32)
    for number, contour in enumerate(contours, start=1):
        points = np.asarray(contour.ContourData, float).reshape(-1, 3)
        index = grid.continuous_index(points)
        k = _slice_of(index[:, 2], name, number, path, grid)
        outside = (index[:, 0] < -EDGE) | (index[:, 0] > nx - 1 + EDGE) | (index[:, 1] < -EDGE) | (index[:, 1] > ny - 1 + EDGE)
        if outside.any():
            x, y, z = points[np.argmax(outside)]
            raise RadiomicsLabError(f"Contour {number} of the ROI '{name}' in the RTSTRUCT '{path}' goes outside the image "
                                    f"(point {x:.2f}, {y:.2f}, {z:.2f} mm); give the image series it was drawn on.")
        _check_contour_image(contour, k, name, number, path, grid)
        _add_crossings(crossings[k], _snap(index[:, 0]), _snap(index[:, 1]))
    mask = (np.cumsum(crossings[:, :, :nx], axis=2) % 2).astype(np.uint8)
    if not mask.any():
        raise RadiomicsLabError(f"The ROI '{name}' of the RTSTRUCT '{path}' encloses no voxel centre of the image "
                                "(its contours are smaller than a voxel); pick another ROI.")
    return mask


def _slice_of(k: np.ndarray, name, number, path, grid: SeriesGrid) -> int:
    """The slice a contour lies on, from its points' continuous slice indices."""
    if k.max() - k.min() > 2 * SLICE_TOLERANCE:
        raise RadiomicsLabError(f"Contour {number} of the ROI '{name}' in the RTSTRUCT '{path}' does not lie in a slice "
                                "plane of the image (it spans several slices: a non-axial or tilted contour); give "
                                "the image series the contours were drawn on.")
    centre = float(k.mean())
    slice_index = int(round(centre))
    nz = grid.image.GetSize()[2]
    if slice_index < 0 or slice_index >= nz:
        raise RadiomicsLabError(f"Contour {number} of the ROI '{name}' in the RTSTRUCT '{path}' lies outside the image "
                                f"(slice {centre:.2f} of 0..{nz - 1}); give the image series it was drawn on.")
    if abs(centre - slice_index) > SLICE_TOLERANCE:
        spacing = grid.image.GetSpacing()[2]
        raise RadiomicsLabError(f"Contour {number} of the ROI '{name}' in the RTSTRUCT '{path}' lies between slices "
                                f"{int(np.floor(centre))} and {int(np.floor(centre)) + 1} ({abs(centre - slice_index) * spacing:.2f} "
                                "mm from the nearest); give the image series the contours were drawn on.")
    return slice_index


def _check_contour_image(contour, k: int, name, number, path, grid: SeriesGrid) -> None:
    """Refuse a contour whose ContourImageSequence names an image not in the series or on another slice."""
    for image in contour.get("ContourImageSequence", []):
        uid = str(image.get("ReferencedSOPInstanceUID", ""))
        if uid not in grid.slice_of_instance:
            raise RadiomicsLabError(f"Contour {number} of the ROI '{name}' in the RTSTRUCT '{path}' references image {uid}, "
                                    f"which is not in '{grid.folder}'; give the folder of the referenced series.")
        if grid.slice_of_instance[uid] != k:
            raise RadiomicsLabError(f"Contour {number} of the ROI '{name}' in the RTSTRUCT '{path}' lies on slice {k} but "
                                    f"references the image of slice {grid.slice_of_instance[uid]}; the RTSTRUCT does not "
                                    "fit this series: export it again.")


def _snap(values: np.ndarray) -> np.ndarray:
    nearest = np.round(values)
    return np.where(np.abs(values - nearest) < SNAP, nearest, values)


def _add_crossings(crossings: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """Count, for each scan line j (voxel row) of one closed polygon, the first voxel past each edge crossing.

    Half-open rule: an edge from (x_b, y_b) up to (x_a, y_a) meets rows ``y_b <= j < y_a``; the crossing
    at ``x_c`` toggles voxels ``i >= x_c``. The cumulative sum mod 2 along x of all polygons' counts is the
    even-odd inside test of every voxel centre.
    """
    if len(x) > 1 and x[-1] == x[0] and y[-1] == y[0]:
        x, y = x[:-1], y[:-1]
    x0, y0, x1, y1 = x, y, np.roll(x, -1), np.roll(y, -1)
    keep = y0 != y1
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    swap = y0 > y1  # (xb, yb) the lower end
    xb, yb = np.where(swap, x1, x0), np.where(swap, y1, y0)
    xa, ya = np.where(swap, x0, x1), np.where(swap, y0, y1)
    ny = crossings.shape[0]
    first = np.clip(np.ceil(yb), 0, ny).astype(np.int64)
    last = np.clip(np.ceil(ya), 0, ny).astype(np.int64)  # exclusive
    rows = np.maximum(last - first, 0)
    if not rows.any():
        return
    edge = np.repeat(np.arange(len(first)), rows)
    j = np.arange(rows.sum()) - np.repeat(np.cumsum(rows) - rows, rows) + first[edge]
    xc = _snap(xb[edge] + (j - yb[edge]) * (xa[edge] - xb[edge]) / (ya[edge] - yb[edge]))
    start = np.clip(np.ceil(xc), 0, crossings.shape[1] - 1).astype(np.int64)
    np.add.at(crossings, (j, start), 1)
