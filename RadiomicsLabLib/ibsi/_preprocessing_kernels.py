"""Compiled trilinear interpolation onto the IBSI grid (numba, cached on disk).

The arithmetic of ``scipy.ndimage.affine_transform(array, step, offset=origin, order=1, mode="nearest")``
with a diagonal matrix (scipy's ``zoom_shift``): per axis the input coordinate of output index k is
``x = (k + origin / step) * step``, its neighbours ``floor(x)`` and ``floor(x) + 1`` (mapped to the grid's
edge when beyond it: mode "nearest") with weights ``w_0 = 1 - (x - floor(x))`` and ``w_1 = 1 - w_0``; the
value is the sum over the 8 neighbours (C order) of ``v * w_z * w_y * w_x``, so the result is scipy's
bit for bit (checked on the sarcoma CTs). Also the bounding box of the non-zero voxels, one-pass intensity
statistics of a grid or of a mask's voxels, and the masked neighbourhood sums of local intensity.
"""

import math

import numpy as np

from ..jit import njit


@njit(cache=True, nogil=True)
def _axis_weights(n_out, n_in, shift, zoom, first, start):
    """Neighbour indices (relative to ``start``, clamped to the ``n_in`` elements held) and weights of the
    output indices first .. first + n_out - 1 along one axis."""
    low = np.empty(n_out, dtype=np.int64)
    high = np.empty(n_out, dtype=np.int64)
    w_low = np.empty(n_out)
    w_high = np.empty(n_out)
    for k in range(n_out):
        x = ((first + k) + shift) * zoom
        base = math.floor(x)
        w_low[k] = 1.0 - (x - base)
        w_high[k] = 1.0 - w_low[k]
        i = int(base) - start
        low[k] = min(max(i, 0), n_in - 1)
        high[k] = min(max(i + 1, 0), n_in - 1)
    return low, high, w_low, w_high


@njit(cache=True, nogil=True)
def _gather_plane(array, z, y_first, x_low, x_high, planes, slot, rounding):
    """``planes[slot, y, 0 | 1, k]`` = ``array[z, y_first + y, x_low | x_high[k]]`` (as float64; ``np.rint`` of it
    with ``rounding``)."""
    for y in range(planes.shape[1]):
        row = array[z, y_first + y]
        out_low = planes[slot, y, 0]
        out_high = planes[slot, y, 1]
        for k in range(x_low.shape[0]):
            low, high = np.float64(row[x_low[k]]), np.float64(row[x_high[k]])
            if rounding:
                low, high = np.rint(low), np.rint(high)
            out_low[k] = low
            out_high[k] = high


@njit(cache=True, nogil=True)
def _plane_slots(held, za, zb):
    """(slot of input plane ``za``, slot of ``zb``, whether each must be filled) in a two-slot cache of planes,
    ``held`` (the plane in each slot, -1: none; updated): a plane already held stays where it is, for output planes
    in order (``za <= zb``, ``zb - za <= 1``)."""
    if held[0] == za:
        sa, fill_a = 0, False
    elif held[1] == za:
        sa, fill_a = 1, False
    else:
        sa, fill_a = (1 if held[0] == zb else 0), True
        held[sa] = za
    if zb == za:
        return sa, sa, fill_a, False
    sb = 1 - sa
    fill_b = held[sb] != zb
    held[sb] = zb
    return sa, sb, fill_a, fill_b


@njit(cache=True, nogil=True)
def trilinear(array, shift, zoom, out_shape, first, start, rounding, source_rounding):
    """``array`` (3D) interpolated linearly at ``(k + shift) * zoom`` per axis for the output indices
    k = first .. first + out_shape - 1 (a box of the output grid, the same values as on the whole grid).

    ``array`` may be a crop of the grid starting at index ``start``: indices beyond the crop are clamped to
    its edge, which gives the whole grid's values when the crop reaches the grid's edge or its edge planes are
    0 wherever the grid is (a mask cropped one voxel beyond its bounding box). ``rounding``: ``np.rint`` of
    each value; ``source_rounding``: of each value of ``array`` first (any real type: read as float64). Each input
    plane's x neighbours are gathered once (two planes kept), so the inner loop reads rows in order; the arithmetic
    per point is unchanged.
    """
    nz, ny, nx = out_shape
    out = np.empty((nz, ny, nx))
    if nz == 0 or ny == 0 or nx == 0:
        return out
    z0, z1, wz0, wz1 = _axis_weights(nz, array.shape[0], shift[0], zoom[0], first[0], start[0])
    y0, y1, wy0, wy1 = _axis_weights(ny, array.shape[1], shift[1], zoom[1], first[1], start[1])
    x0, x1, wx0, wx1 = _axis_weights(nx, array.shape[2], shift[2], zoom[2], first[2], start[2])
    y_first = y0[0]
    gather_low, gather_high = x0.astype(np.uint64), x1.astype(np.uint64)    # unsigned: no wraparound test
    planes = np.empty((2, y1[ny - 1] - y_first + 1, 2, nx))
    held = np.array([-1, -1])          # the input plane in each slot of ``planes``
    for k in range(nz):
        za, zb, ca, cb = z0[k], z1[k], wz0[k], wz1[k]
        sa, sb, fill_a, fill_b = _plane_slots(held, za, zb)
        if fill_a:
            _gather_plane(array, za, y_first, gather_low, gather_high, planes, sa, source_rounding)
        if fill_b:
            _gather_plane(array, zb, y_first, gather_low, gather_high, planes, sb, source_rounding)
        for j in range(ny):
            ya, yb, ba, bb = y0[j] - y_first, y1[j] - y_first, wy0[j], wy1[j]
            p0, q0 = planes[sa, ya, 0], planes[sa, ya, 1]
            p1, q1 = planes[sa, yb, 0], planes[sa, yb, 1]
            p2, q2 = planes[sb, ya, 0], planes[sb, ya, 1]
            p3, q3 = planes[sb, yb, 0], planes[sb, yb, 1]
            row = out[k, j]
            for i in range(nx):
                t = _trilinear_sum(p0[i], q0[i], p1[i], q1[i], p2[i], q2[i], p3[i], q3[i], ca, cb, ba, bb, wx0[i],
                                   wx1[i])
                row[i] = np.rint(t) if rounding else t
    return out


@njit(cache=True, nogil=True)
def trilinear_stats(array, shift, zoom, out_shape, first_plane, source_rounding, counted_planes, low_in, high_in,
                    total_in):
    """(min, max, sum) of :func:`trilinear` with ``rounding`` of the planes ``first_plane`` .. ``first_plane +
    out_shape[0] - 1`` of the whole grid (``first`` (first_plane, 0, 0), ``start`` 0), without keeping its values,
    accumulated per x position like :func:`grid_stats` (the same caveat on the sum). Empty: (inf, -inf, 0).

    The same pass also takes the statistics of ``array``'s own planes ``counted_planes`` (first, stop): each value
    (``np.rint``-ed with ``source_rounding``) goes into the per-x-position accumulators ``low_in``, ``high_in``,
    ``total_in`` (``np.minimum``, ``np.maximum``, sum: :func:`grid_stats`' accumulation, or :func:`short_grid_stats`'
    for int32 / int64 accumulators), once per value: a plane this pass interpolates, whole, just before (the
    interpolation then reads it from the cache), the others apart. Cutting the whole grid into parts whose
    ``counted_planes`` cover the image's planes once, the parts together give the image's statistics without a pass
    of their own over it: for STS_001 pasted into a whole 512 x 512 x 299 int16 CT, the image's own pass took
    13-15 ms and the interpolated grid's 60, counting the image in it adds nothing measurable (the development VM).

    Separably: each input plane is interpolated along y, then x, once (:func:`_plane_along_yx`), and each output
    plane is the blend of two such planes along z: 3 products per point where :func:`trilinear` takes 24. Both
    round the same real trilinear value; their float64 results differ by a few units in the last place of the
    largest neighbour (each of the 7 sums and 24 products adds at most one rounding of the largest magnitude), so
    ``np.rint`` gives the same integer except where the value lies within that of a half-integer: there the point is
    computed as :func:`trilinear` computes it (:func:`_trilinear_point`). The rounded values are then
    :func:`trilinear`'s, except that a value within that of 0 may round to the other zero (-0.0 for +0.0 or the
    reverse), which the sum does not see and the minimum and maximum only in the sign of a zero (numpy's own minimum
    does not say which zero it returns either). Recomputing those points too (a zero background: about half of the
    points of STS_002's PET read rounded) made the pass up to 8 times as long (that PET 7.6 ms, now 0.9; brain1's MR
    2.6 ms, now 1.0)."""
    nz, ny, nx = out_shape
    low = np.full(nx, np.inf)
    high = np.full(nx, -np.inf)
    total = np.zeros(nx)
    counted_first, counted_stop = counted_planes
    counted = np.zeros(max(counted_stop - counted_first, 0), dtype=np.bool_)    # per plane of counted_planes
    if nz == 0 or ny == 0 or nx == 0:
        _count_planes(array, counted_first, counted, source_rounding, low_in, high_in, total_in)
        return np.inf, -np.inf, 0.0
    z0, z1, wz0, wz1 = _axis_weights(nz, array.shape[0], shift[0], zoom[0], first_plane, 0)
    y0, y1, wy0, wy1 = _axis_weights(ny, array.shape[1], shift[1], zoom[1], 0, 0)
    x0, x1, wx0, wx1 = _axis_weights(nx, array.shape[2], shift[2], zoom[2], 0, 0)
    gather_low, gather_high = x0.astype(np.uint64), x1.astype(np.uint64)    # unsigned: no wraparound test
    planes = np.empty((2, ny, nx))
    largest = np.zeros(2)              # per slot: the largest magnitude read for its plane
    held = np.array([-1, -1])          # the input plane in each slot of ``planes``
    along_y, magnitude = np.empty(array.shape[2]), np.empty(array.shape[2])
    values, rounded = np.empty(nx), np.empty(nx)
    for k in range(nz):
        za, zb, ca, cb = z0[k], z1[k], wz0[k], wz1[k]
        sa, sb, fill_a, fill_b = _plane_slots(held, za, zb)
        for fill, z, slot in ((fill_a, za, sa), (fill_b, zb, sb)):
            if fill:
                # the whole plane first, in order (it then stays in the cache for the interpolation)
                _count_plane(array, z, counted_first, counted, source_rounding, low_in, high_in, total_in)
                largest[slot] = _plane_along_yx(array, z, y0, y1, wy0, wy1, gather_low, gather_high, wx0, wx1,
                                                along_y, magnitude, planes[slot], source_rounding)
        # 64 units in the last place of the largest neighbour: well above both results' rounding errors
        margin = 64.0 * np.finfo(np.float64).eps * max(largest[sa], largest[sb], 1.0)
        for j in range(ny):
            a, b = planes[sa, j], planes[sb, j]
            near = 0
            for i in range(nx):
                t = a[i] * ca + b[i] * cb
                r = np.rint(t)
                values[i], rounded[i] = t, r
                near += abs(abs(t - r) - 0.5) < margin
            if near:
                for i in range(nx):
                    t = values[i]
                    if abs(abs(t - rounded[i]) - 0.5) < margin:
                        rounded[i] = np.rint(_trilinear_point(array, za, zb, y0[j], y1[j], x0[i], x1[i], ca, cb,
                                                              wy0[j], wy1[j], wx0[i], wx1[i], source_rounding))
            for i in range(nx):
                low[i] = np.minimum(low[i], rounded[i])
                high[i] = np.maximum(high[i], rounded[i])
                total[i] += rounded[i]
    _count_planes(array, counted_first, counted, source_rounding, low_in, high_in, total_in)
    return low.min(), high.max(), total.sum()


@njit(cache=True, nogil=True)
def _count_planes(array, first, counted, source_rounding, low, high, total):
    """Adds the planes ``first + p`` of ``array`` not ``counted[p]`` yet to the statistics' accumulators
    (:func:`_count_plane`), and marks them counted."""
    for p in range(counted.shape[0]):
        _count_plane(array, first + p, first, counted, source_rounding, low, high, total)


@njit(cache=True, nogil=True)
def _count_plane(array, z, first, counted, source_rounding, low, high, total):
    """Adds plane ``z`` of ``array`` (values ``np.rint``-ed with ``source_rounding``) to the per-x-position (min, max,
    sum) accumulators ``low``, ``high``, ``total`` (float64, or int32, int32, int64 for a 16-bit integer ``array``:
    :func:`grid_stats`' (:func:`short_grid_stats`') values) where it is one of the planes ``first + p`` that
    ``counted`` tracks and not ``counted[p]`` yet, and marks it counted."""
    p = z - first
    if p < 0 or p >= counted.shape[0] or counted[p]:
        return
    counted[p] = True
    for y in range(array.shape[1]):
        row = array[z, y]
        if source_rounding:
            for x in range(row.shape[0]):
                v = np.rint(np.float64(row[x]))
                low[x] = np.minimum(low[x], v)
                high[x] = np.maximum(high[x], v)
                total[x] += v
        else:
            for x in range(row.shape[0]):
                v = row[x]
                low[x] = np.minimum(low[x], v)
                high[x] = np.maximum(high[x], v)
                total[x] += v


@njit(cache=True, nogil=True)
def _plane_along_yx(array, z, y0, y1, wy0, wy1, x0, x1, wx0, wx1, along_y, magnitude, out, source_rounding):
    """``out[j, i]``: plane ``z`` of ``array`` (values ``np.rint``-ed with ``source_rounding``) interpolated along y
    at the output rows j (whole input rows, in order), then along x at the output columns i; returns the largest
    magnitude of the values read. Scratch: ``along_y`` (one input row), ``magnitude`` (one per input column)."""
    magnitude[:] = 0.0
    for j in range(out.shape[0]):
        ra, rb, ba, bb = array[z, y0[j]], array[z, y1[j]], wy0[j], wy1[j]
        for x in range(along_y.shape[0]):
            a, b = np.float64(ra[x]), np.float64(rb[x])
            if source_rounding:
                a, b = np.rint(a), np.rint(b)
            larger = max(abs(a), abs(b))
            magnitude[x] = larger if larger > magnitude[x] else magnitude[x]
            along_y[x] = a * ba + b * bb
        target = out[j]
        for i in range(out.shape[1]):
            target[i] = along_y[x0[i]] * wx0[i] + along_y[x1[i]] * wx1[i]
    return magnitude.max()


@njit(cache=True, nogil=True)
def _trilinear_point(array, za, zb, ya, yb, xa, xb, ca, cb, ba, bb, wa, wb, source_rounding):
    """One value of :func:`trilinear` (before its rounding), in its order of operations."""
    v = np.empty(8)
    for n, (z, y, x) in enumerate(((za, ya, xa), (za, ya, xb), (za, yb, xa), (za, yb, xb),
                                   (zb, ya, xa), (zb, ya, xb), (zb, yb, xa), (zb, yb, xb))):
        v[n] = np.rint(np.float64(array[z, y, x])) if source_rounding else np.float64(array[z, y, x])
    return _trilinear_sum(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], ca, cb, ba, bb, wa, wb)


@njit(cache=True, nogil=True, inline="always")
def _trilinear_sum(p0, q0, p1, q1, p2, q2, p3, q3, ca, cb, ba, bb, wa, wb):
    """The trilinear value of the 8 neighbours (z, y, x) = (a|b, a|b, a|b) in C order, p: x at a, q: x at b, with the
    weights c (z), b (y), w (x): scipy's order of operations, term by term (each ``v * w_z * w_y * w_x``)."""
    t = p0 * ca * ba * wa
    t += q0 * ca * ba * wb
    t += p1 * ca * bb * wa
    t += q1 * ca * bb * wb
    t += p2 * cb * ba * wa
    t += q2 * cb * ba * wb
    t += p3 * cb * bb * wa
    t += q3 * cb * bb * wb
    return t


@njit(cache=True, nogil=True)
def grid_stats(source, out, rounding, write):
    """(min, max, sum) of ``source`` (C order) as float64, each value first rounded (``np.rint``) with
    ``rounding``; with ``write`` the values go to ``out`` (float64, the same shape; may be ``source`` itself), without
    it ``out`` is not written (any float64 array of the same dimension: a (1, ..., 1) one). One
    pass that accumulates per x position (a loop the compiler vectorises): the sum is added in another order than
    numpy's, so it equals numpy's only when exact (integers, see the preprocessing); a NaN makes all three NaN.
    Empty: (inf, -inf, 0)."""
    rows = source.reshape((-1, source.shape[-1]))
    written = out.reshape((-1, out.shape[-1]))
    nx = rows.shape[1]
    low = np.full(nx, np.inf)
    high = np.full(nx, -np.inf)
    total = np.zeros(nx)
    for r in range(rows.shape[0]):
        row = rows[r]
        target = written[r if write else 0]
        for x in range(nx):
            v = np.float64(row[x])
            if rounding:
                v = np.rint(v)
            if write:
                target[x] = v
            low[x] = np.minimum(low[x], v)      # np.minimum and np.maximum (NaN-propagating) vectorise; min, max not
            high[x] = np.maximum(high[x], v)
            total[x] += v
    if nx == 0:
        return np.inf, -np.inf, 0.0
    return low.min(), high.max(), total.sum()


@njit(cache=True, nogil=True)
def short_grid_stats(source, out, write):
    """:func:`grid_stats` of a 16-bit integer ``source`` (CT's int16, MR's uint16; integers need no rounding):
    the minimum and maximum taken on int32, the sum on int64 (exact), each per x position (loops the compiler
    vectorises, about 5x faster than on float64), returned as float64. Empty: (inf, -inf, 0)."""
    rows = source.reshape((-1, source.shape[-1]))
    written = out.reshape((-1, out.shape[-1]))
    nx = rows.shape[1]
    low = np.full(nx, 1 << 17, dtype=np.int32)
    high = np.full(nx, -(1 << 17), dtype=np.int32)
    total = np.zeros(nx, dtype=np.int64)
    for r in range(rows.shape[0]):
        row = rows[r]
        target = written[r if write else 0]
        for x in range(nx):
            v = np.int32(row[x])
            if write:
                target[x] = np.float64(v)
            low[x] = min(low[x], v)
            high[x] = max(high[x], v)
            total[x] += v
    if nx == 0 or rows.shape[0] == 0:
        return np.inf, -np.inf, 0.0
    return np.float64(low.min()), np.float64(high.max()), np.float64(total.sum())


@njit(cache=True, nogil=True)
def masked_stats(image, mask, corner, rounding):
    """(count, min, max, sum) of the intensities of ``image`` (as float64; ``np.rint`` of each with ``rounding``) at
    the voxels of ``mask``, a box of the grid whose first voxel is ``corner`` (z, y, x); none: (0, inf, -inf, 0).
    Accumulated per x position like :func:`grid_stats` (the same caveat on the sum)."""
    nz, ny, nx = mask.shape
    cz, cy, cx = corner
    count = np.zeros(nx, dtype=np.int64)
    low = np.full(nx, np.inf)
    high = np.full(nx, -np.inf)
    total = np.zeros(nx)
    for z in range(nz):
        for y in range(ny):
            inside = mask[z, y]
            row = image[cz + z, cy + y, cx:cx + nx]
            for x in range(nx):
                if inside[x]:
                    v = np.float64(row[x])
                    if rounding:
                        v = np.rint(v)
                    count[x] += 1
                    low[x] = min(low[x], v)
                    high[x] = max(high[x], v)
                    total[x] += v
    if nx == 0:
        return 0, np.inf, -np.inf, 0.0
    return count.sum(), low.min(), high.max(), total.sum()


@njit(cache=True, nogil=True)
def nonzero_box(array):
    """(first, stop) index per axis of the non-zero elements of a 3D C-contiguous array (stop exclusive); all zero:
    first = stop = 0. The bounding box in one pass, without listing the non-zero elements: each z plane is read
    whole, as one row (a loop the compiler vectorises), marking whether it holds a non-zero element and, per (y, x)
    position, whether any plane does; the y and x ranges then come from that projection (one plane's size). Rows
    tested one by one cost a loop exit per row of a small box (3-4x the time of a ROI's box here)."""
    nz, ny, nx = array.shape
    size = ny * nx
    planes = array.reshape(nz, size)
    projection = np.zeros(size, dtype=np.bool_)      # a non-zero element at (y, x) in some plane
    first = np.zeros(3, dtype=np.int64)
    stop = np.zeros(3, dtype=np.int64)
    first_z, last_z = nz, -1
    for z in range(nz):
        plane = planes[z]
        found = False
        for k in range(size):
            nonzero = plane[k] != 0
            found |= nonzero
            projection[k] |= nonzero
        if found:
            first_z = min(first_z, z)
            last_z = z
    if last_z < 0:
        return first, stop
    first[0], stop[0] = first_z, last_z + 1
    first[1], first[2] = ny, nx
    for y in range(ny):
        for x in range(nx):
            if projection[y * nx + x]:
                first[1] = min(first[1], y)
                stop[1] = y + 1
                first[2] = min(first[2], x)
                stop[2] = max(stop[2], x + 1)
    return first, stop


def bounding_box(array) -> tuple:
    """The slices of the bounding box of the non-zero elements of ``array`` (3D: compiled one-pass scan);
    ``None`` when there is none. A boolean or integer array is scanned as bytes (an element is non-zero where one of
    its bytes is), so one compiled scan serves every such type, a label map's read-only view included."""
    array = np.asarray(array)
    if array.ndim == 3 and array.size and array.dtype.kind in "biuf":
        array = np.ascontiguousarray(array)
        width = array.dtype.itemsize if array.dtype.kind in "biu" else 0      # scanned as bytes, or as it is
        first, stop = nonzero_box(array.view(np.uint8) if width else array)
        if stop[0] == 0:
            return None
        if width > 1:
            first[2], stop[2] = first[2] // width, (stop[2] - 1) // width + 1
        return tuple(slice(int(a), int(b)) for a, b in zip(first, stop))
    nonzero = np.nonzero(array)
    if nonzero[0].size == 0:
        return None
    return tuple(slice(int(c.min()), int(c.max()) + 1) for c in nonzero)


@njit(cache=True, nogil=True)
def masked_sums(image, mask, offsets):
    """For every voxel of ``mask`` (C order): the sum of ``image`` over the voxel + ``offsets`` (n x 3, in the
    order given) inside the grid; voxels beyond the grid count as 0 (``ndimage.correlate`` with a 0/1 kernel
    and mode "constant", adding the same terms in the same order)."""
    nz, ny, nx = image.shape
    n = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if mask[z, y, x]:
                    n += 1
    out = np.empty(n)
    flat_image = image.ravel()
    n_offsets = offsets.shape[0]
    flat = np.empty(n_offsets, dtype=np.int64)
    reach = np.zeros(3, dtype=np.int64)
    for o in range(n_offsets):
        flat[o] = (offsets[o, 0] * ny + offsets[o, 1]) * nx + offsets[o, 2]
        for a in range(3):
            reach[a] = max(reach[a], abs(offsets[o, a]))
    k = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if not mask[z, y, x]:
                    continue
                total = 0.0
                if reach[0] <= z < nz - reach[0] and reach[1] <= y < ny - reach[1] and reach[2] <= x < nx - reach[2]:
                    base = (z * ny + y) * nx + x    # the whole neighbourhood inside the grid: no bounds checks
                    for o in range(n_offsets):
                        total += flat_image[base + flat[o]]
                    out[k] = total
                    k += 1
                    continue
                for o in range(n_offsets):
                    qz, qy, qx = z + offsets[o, 0], y + offsets[o, 1], x + offsets[o, 2]
                    if 0 <= qz < nz and 0 <= qy < ny and 0 <= qx < nx:
                        total += image[qz, qy, qx]
                    else:
                        total += 0.0
                out[k] = total
                k += 1
    return out
