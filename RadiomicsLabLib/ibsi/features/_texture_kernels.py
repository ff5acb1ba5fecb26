"""Compiled loops of the texture families and the local intensity peaks (numba, cached on disk)."""

import numpy as np

from ...jit import njit


@njit(cache=True, nogil=True)
def _direction_runs(index, dz, dy, dx, out_z, out_level, out_length):
    """Writes every run of equal grey level index along (dz, dy, dx) in ``index`` (-1 outside the ROI) to the
    buffers (slice z of its first voxel, grey level index, length; room for one run per ROI voxel) and returns
    their number.

    Every line of the grid along the direction is walked once from its first voxel (the one whose predecessor
    lies outside the grid); a run ends where the grey level changes, at a voxel outside the ROI or at the
    grid's edge.
    """
    nz, ny, nx = index.shape
    flat = index.ravel()
    stride = (dz * ny + dy) * nx + dx
    k = 0
    for z in range(nz):
        for y in range(ny):
            x0, x1 = 0, nx                              # every voxel of the row starts a line ...
            if 0 <= z - dz < nz and 0 <= y - dy < ny:   # ... unless its predecessors are in the grid
                if dx == 0:
                    continue
                x0 = 0 if dx > 0 else nx - 1
                x1 = x0 + 1
            for x in range(x0, x1):
                # the line's voxels: (z, y, x) + t (dz, dy, dx) for t < steps, flat index start + t * stride
                steps = max(nz, ny, nx)
                for c, d, size in ((z, dz, nz), (y, dy, ny), (x, dx, nx)):
                    if d > 0:
                        steps = min(steps, size - c)
                    elif d < 0:
                        steps = min(steps, c + 1)
                start = (z * ny + y) * nx + x
                previous, length, first = -1, 0, 0
                for t in range(steps):
                    level = flat[start + t * stride]
                    if level != previous:
                        if previous >= 0:
                            out_z[k], out_level[k], out_length[k] = z + first * dz, previous, length
                            k += 1
                        previous, length, first = level, 0, t
                    length += 1
                if previous >= 0:
                    out_z[k], out_level[k], out_length[k] = z + first * dz, previous, length
                    k += 1
    return k


@njit(cache=True, nogil=True)
def _run_buffers(index):
    """Three int64 buffers with room for one run per ROI voxel (index >= 0)."""
    n = 0
    for level in index.ravel():
        if level >= 0:
            n += 1
    return np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)


@njit(cache=True, nogil=True)
def runs(index, dz, dy, dx):
    """Every run of equal grey level index along (dz, dy, dx) in ``index`` (-1 outside the ROI):
    (slice z of its first voxel, grey level index, length), line by line (:func:`_direction_runs`)."""
    out_z, out_level, out_length = _run_buffers(index)
    k = _direction_runs(index, dz, dy, dx, out_z, out_level, out_length)
    return out_z[:k], out_level[:k], out_length[:k]


@njit(cache=True, nogil=True)
def run_length_counts(levels, offsets):
    """Run length matrices (len(offsets), G + 1, L + 1) of ``levels`` (grey levels 1..G, 0 outside the ROI, zero
    on the grid's border faces: pad by one), L the longest side of the grid: [o, g, j] counts the runs of grey
    level g and length j along ``offsets[o]``.

    One pass over the ROI voxels in C order per direction, taken with a positive flat stride s (a direction and
    its opposite have the same runs), so that a voxel's predecessor v - s comes before it: the run through v
    has ``length[v] = length[v - s] + 1`` voxels up to v when the predecessor has the same grey level, else 1,
    and ends at v when the successor v + s has another grey level (branch-free). Along x (s = 1) the predecessor
    is the voxel just before (or outside the ROI), so the length is carried in a register instead of read back
    from memory just written. Indices are unsigned (numba then adds no wraparound test for negative ones).
    """
    nz, ny, nx = levels.shape
    flat = levels.ravel()
    voxels = np.flatnonzero(flat)
    width = max(nz, ny, nx) + 1
    counts = np.zeros((offsets.shape[0], flat.max() + 1 if flat.size else 1, width), dtype=np.int64)
    length = np.zeros(flat.size, dtype=np.int64)
    row = np.empty(voxels.size, dtype=np.uint64)        # each voxel's row of a direction's matrix (flat)
    for k in range(voxels.size):
        row[k] = flat[voxels[k]] * width
    for o in range(offsets.shape[0]):
        s = np.uint64(abs((offsets[o, 0] * ny + offsets[o, 1]) * nx + offsets[o, 2]))
        table = counts[o].ravel()
        run = 0
        for k in range(voxels.size):
            v = np.uint64(voxels[k])
            grey = flat[v]
            if s == 1:
                run = (flat[v - s] == grey) * run + 1
            else:
                run = (flat[v - s] == grey) * length[v - s] + 1
                length[v] = run
            table[row[k] + np.uint64(run)] += flat[v + s] != grey
    return counts


@njit(cache=True, nogil=True)
def _root(parent, v):
    """The root of ``v``'s tree in the union-find forest ``parent`` (path halving on the way)."""
    while parent[v] != v:
        parent[v] = parent[parent[v]]
        v = parent[v]
    return v


@njit(cache=True, nogil=True)
def zone_labels(levels, in_plane):
    """Connected zones of equal grey level of ``levels`` (0 = outside, zero on the grid's border faces: pad by
    one): 8-connected within a slice when ``in_plane``, else 26-connected. Returns (the zone label of every voxel
    with a grey level > 0, in C order; number of zones); zones are numbered 0, 1, ... in the order of their
    first voxel in C order.

    Union-find over the voxels in C order: each voxel is joined to its equal neighbours that come before it
    (4 in-plane, 13 in 3D; flat offsets, the zero border keeping them in the grid), a tree's root always being
    its first voxel; the zones are then numbered at their roots in C order. Two adjacent equal neighbours are
    already in one tree (the later one was joined to the earlier), so once a neighbour is joined, those adjacent
    to it are skipped (``covers``); the face neighbours come first, as they cover the most.
    """
    nz, ny, nx = levels.shape
    flat_levels = levels.ravel()
    before = [(0, -1, 0), (0, 0, -1), (0, -1, -1), (0, -1, 1)]
    if not in_plane:
        before = ([(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-1, -1, 0), (-1, 1, 0), (-1, 0, -1), (-1, 0, 1),
                   (0, -1, -1), (0, -1, 1)] + [(-1, dy, dx) for dy in (-1, 1) for dx in (-1, 1)])
    n = len(before)
    offsets = np.empty(n, dtype=np.int64)
    covers = np.zeros(n, dtype=np.int64)            # bit b of covers[a]: neighbours a and b are adjacent
    for a in range(n):
        za, ya, xa = before[a]
        offsets[a] = (za * ny + ya) * nx + xa
        for b in range(n):
            zb, yb, xb = before[b]
            if max(abs(za - zb), abs(ya - yb), abs(xa - xb)) <= 1:
                covers[a] |= 1 << b
    parent = np.arange(levels.size)
    n_voxels = 0
    for v in range(levels.size):
        grey = flat_levels[v]
        if grey <= 0:
            continue
        n_voxels += 1
        root = v                                        # v's root, kept up to date as its tree is joined
        covered = 0
        for k in range(n):
            if covered >> k & 1:
                continue
            u = v + offsets[k]
            if flat_levels[u] == grey:
                covered |= covers[k]
                ru = _root(parent, u)
                if ru < root:
                    parent[root] = ru
                    root = ru
                elif ru > root:
                    parent[ru] = root
    label = np.empty(levels.size, dtype=np.int64)      # zone number, at the voxels visited so far
    out = np.empty(n_voxels, dtype=np.int64)
    n_zones, k = 0, 0
    for v in range(levels.size):
        if flat_levels[v] <= 0:
            continue
        r = _root(parent, v)
        if r == v:
            label[v] = n_zones
            n_zones += 1
        else:
            label[v] = label[r]
        out[k] = label[v]
        k += 1
    return out, n_zones


@njit(cache=True, nogil=True)
def city_block_distances(mask, in_plane):
    """Each voxel's fewest 6-connected (4-connected within a slice when ``in_plane``) steps to a voxel outside
    ``mask``, the grid's edge counting as outside; 0 outside. The two raster passes of Rosenfeld & Pfaltz (1966),
    exact for the city-block distance: forward from the neighbours before a voxel, backward from those after it."""
    nz, ny, nx = mask.shape
    d = np.zeros(mask.shape, dtype=np.int64)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if mask[z, y, x]:
                    best = 0
                    if x > 0 and y > 0 and (in_plane or z > 0):
                        best = min(d[z, y, x - 1], d[z, y - 1, x])
                        if not in_plane:
                            best = min(best, d[z - 1, y, x])
                    d[z, y, x] = best + 1
    for z in range(nz - 1, -1, -1):
        for y in range(ny - 1, -1, -1):
            for x in range(nx - 1, -1, -1):
                if d[z, y, x] > 1:
                    if x == nx - 1 or y == ny - 1 or (not in_plane and z == nz - 1):
                        d[z, y, x] = 1
                        continue
                    best = min(d[z, y, x + 1], d[z, y + 1, x])
                    if not in_plane:
                        best = min(best, d[z + 1, y, x])
                    d[z, y, x] = min(d[z, y, x], best + 1)
    return d


@njit(cache=True, nogil=True)
def group_minimum(group, values, n_groups):
    """The smallest of ``values[k]`` over the k with ``group[k] == g``, for g = 0..n_groups-1 (the int64 maximum
    for an empty group); ``np.minimum.at`` in one compiled pass."""
    out = np.full(n_groups, np.iinfo(np.int64).max)
    for k in range(group.size):
        out[group[k]] = min(out[group[k]], values[k])
    return out


@njit(cache=True, nogil=True)
def cooccurrence_counts(levels, offsets):
    """Symmetric co-occurrence counts (len(offsets), G + 1, G + 1) of ``levels`` (grey levels 1..G, 0 outside the
    ROI, zero-padded by at least the offsets' reach): every pair (v, v + offset) of ROI voxels adds 1 to
    [offset, a, b] and to [offset, b, a]. One pass over the ROI voxels per offset (flat strides, branch-free: the
    pairs with an outside voxel land in row and column 0, which are cleared), counting [a, b] only; the
    transpose is added at the end. Each voxel's row of the matrix is found once for all offsets, and indices are
    unsigned (numba then adds no wraparound test for negative ones)."""
    nz, ny, nx = levels.shape
    flat = levels.ravel()
    voxels = np.flatnonzero(flat)
    n = flat.max() + 1 if flat.size else 1
    counts = np.zeros((offsets.shape[0], n, n), dtype=np.int64)
    row = np.empty(voxels.size, dtype=np.uint64)        # each voxel's row of a matrix (flat)
    for k in range(voxels.size):
        row[k] = flat[voxels[k]] * n
    for o in range(offsets.shape[0]):
        stride = (offsets[o, 0] * ny + offsets[o, 1]) * nx + offsets[o, 2]
        table = counts[o].ravel()
        for k in range(voxels.size):
            table[row[k] + np.uint64(flat[np.uint64(voxels[k] + stride)])] += 1
        counts[o, :, 0] = 0
        counts[o] += counts[o].T.copy()
    return counts


@njit(cache=True, nogil=True)
def neighbourhood_counts(levels, mask, distance, in_plane, coarseness):
    """For every voxel of ``mask`` (C order), over its neighbours within Chebyshev ``distance`` (in-plane or 3D; the
    grid zero-padded by ``distance``, so that every neighbour of a mask voxel lies in it): (the sum of the grey
    levels of the neighbours that lie in ``mask``, their number) (NGTDM), and its dependent neighbours, those with a
    grey level > 0 within the integer ``coarseness`` of its own (NGLDM); and the voxels' flat indices.

    Dense, over the flat span from the first to the last mask voxel, in loops the compiler vectorises (whole
    shifted copies of the grid, no per-voxel neighbour list): the sums and numbers as separable cube sums of the
    masked levels and of the mask (:func:`_cube_sums`) less the voxel's own, the dependent neighbours one
    neighbour offset at a time (:func:`_dependent_counts`). In int32 where the sums fit (twice the lanes of int64),
    else int64; integer arithmetic either way, so the same counts as a neighbour-by-neighbour loop (2x as fast on
    the sarcoma CTs' ROIs, 26 neighbours)."""
    nz, ny, nx = levels.shape
    flat_levels = levels.ravel()
    flat_mask = mask.ravel()
    voxels = np.flatnonzero(flat_mask)
    total = np.empty(voxels.size)
    count = np.empty(voxels.size, dtype=np.int64)
    dependent = np.empty(voxels.size, dtype=np.int64)
    if voxels.size == 0:
        return total, count, dependent, voxels
    reach = range(-distance, distance + 1)
    offsets = np.array([(dz * ny + dy) * nx + dx for dz in (range(0, 1) if in_plane else reach) for dy in reach
                        for dx in reach if dz != 0 or dy != 0 or dx != 0], dtype=np.int64)
    if flat_levels.max() < (2 ** 31 - 1) // (offsets.size + 1) and flat_levels.min() >= 0:   # sums fit in int32
        narrow = flat_levels.astype(np.int32)
        _neighbourhood_sums(narrow, flat_mask.astype(np.int32), levels.shape, distance, in_plane, offsets,
                            np.int32(min(max(coarseness, -1), 2 ** 31 - 1)), voxels, total, count, dependent)
    else:
        _neighbourhood_sums(flat_levels, flat_mask.astype(np.int64), levels.shape, distance, in_plane, offsets,
                            coarseness, voxels, total, count, dependent)
    return total, count, dependent, voxels


@njit(cache=True, nogil=True)
def grey_tone_sums(levels, voxels, total, count, n_levels, in_plane):
    """The NGTDM's ``n_i`` and ``s_i`` (float64, (slices, n_levels)) from :func:`neighbourhood_counts`' ``total``,
    ``count`` and ``voxels`` (flat indices into ``levels``, C order): over the voxels with a neighbour in the ROI
    (count > 0), n_i counts those of grey level i = ``levels[v]`` and s_i adds |i - total / count|, in voxel order (so
    the sums are ``np.bincount``'s); one row per z slice of the grid when ``in_plane``, else one row."""
    nz, ny, nx = levels.shape
    flat_levels = levels.ravel()
    rows = nz if in_plane else 1
    n = np.zeros((rows, n_levels))
    s = np.zeros((rows, n_levels))
    plane = ny * nx
    for k in range(voxels.size):
        if count[k] > 0:
            v = voxels[k]
            level = flat_levels[v]
            row = v // plane if in_plane else 0
            n[row, level] += 1.0
            s[row, level] += abs(level - total[k] / count[k])
    return n, s


@njit(cache=True, nogil=True)
def _neighbourhood_sums(flat_levels, flat_mask, shape, distance, in_plane, offsets, coarseness, voxels, total, count,
                        dependent):
    """:func:`neighbourhood_counts` of ``voxels`` (flat indices) into ``total``, ``count``, ``dependent``, with
    ``flat_levels`` and ``flat_mask`` (0 / 1) of one integer type."""
    first, stop = voxels[0], voxels[-1] + 1
    sums = _cube_sums(flat_levels * flat_mask, shape, distance, in_plane, first, stop)
    inside = _cube_sums(flat_mask, shape, distance, in_plane, first, stop)
    similar = _dependent_counts(flat_levels, offsets, first, stop, coarseness)
    for k in range(voxels.size):
        v = voxels[k]
        total[k] = sums[v - first] - flat_levels[v]
        count[k] = inside[v - first] - 1
        dependent[k] = similar[v - first]


@njit(cache=True, nogil=True)
def _shifted_sums(values, stride, distance, first, stop):
    """``out[v - first] = sum_{d = -distance..distance} values[v + d stride]`` for v = first .. stop - 1 (1D)."""
    n = stop - first
    out = np.zeros(n, dtype=values.dtype)
    for d in range(-distance, distance + 1):
        source = values[first + d * stride:stop + d * stride]
        for i in range(n):
            out[i] += source[i]
    return out


@njit(cache=True, nogil=True)
def _cube_sums(flat, shape, distance, in_plane, first, stop):
    """The sums of the grid ``flat`` (C order, of ``shape``) over each element's Chebyshev neighbourhood of
    ``distance``, itself included (in-plane: a square), for the flat indices first .. stop - 1 (index v at v -
    first); separably: along x, then y, then z, each a sum of shifted flat copies. An element within ``distance``
    of a face gets a meaningless sum (the flat shifts wrap into the next row or plane), which is never read for
    the mask's voxels: they lie ``distance`` from every face."""
    nz, ny, nx = shape
    plane = ny * nx
    reach_z = 0 if in_plane else distance * plane
    reach = reach_z + distance * nx             # along x over first - reach .. stop + reach, y over +- reach_z
    along_x = _shifted_sums(flat, 1, distance, first - reach, stop + reach)
    along_y = _shifted_sums(along_x, nx, distance, distance * nx, along_x.size - distance * nx)
    if in_plane:
        return along_y
    return _shifted_sums(along_y, plane, distance, distance * plane, along_y.size - distance * plane)


@njit(cache=True, nogil=True)
def _dependent_counts(flat_levels, offsets, first, stop, coarseness):
    """Per flat index v = first .. stop - 1 (at v - first): the neighbours ``v + offsets[o]`` with a grey level > 0
    within ``coarseness`` of v's, one offset at a time over the whole span."""
    n = stop - first
    similar = np.zeros(n, dtype=flat_levels.dtype)
    centre = flat_levels[first:stop]
    for o in range(offsets.size):
        neighbour = flat_levels[first + offsets[o]:stop + offsets[o]]
        for i in range(n):
            difference = neighbour[i] - centre[i]
            similar[i] += (neighbour[i] > 0) & (difference <= coarseness) & (difference >= -coarseness)
    return similar


@njit(cache=True, nogil=True)
def row_sphere_sums(image, mask, row_dz, row_dy, row_dx):
    """For every voxel of ``mask`` (C order): the sum of ``image`` over the sphere around it, clipped to the grid,
    the sphere given as rows along x (voxel + (row_dz[r], row_dy[r], -row_dx[r] .. row_dx[r])). Each row's sum is a
    difference of two prefix sums along x: R subtractions per voxel instead of one addition per sphere voxel, so
    the result differs from the voxel-by-voxel sum by round-off (see :func:`~.local_intensity.peak_candidates`).
    Computed for a whole stretch of x at a time: from the first to the last mask voxel of each grid row."""
    nz, ny, nx = image.shape
    pad = max(row_dx.max(), 0)
    width = nx + 1 + 2 * pad
    # prefix[(z * ny + y) * width + pad + j] = sum of image[z, y, :j] for j = 0..nx, held constant beyond both
    # ends (so a row is clipped to the grid for free)
    prefix = np.zeros(nz * ny * width)
    for z in range(nz):
        for y in range(ny):
            start = (z * ny + y) * width + pad
            running = 0.0
            for x in range(nx):
                running += image[z, y, x]
                prefix[start + x + 1] = running
            prefix[start + nx + 1:start - pad + width] = running
    out = np.empty(np.count_nonzero(mask))
    k = 0
    for z in range(nz):
        for y in range(ny):
            inside = np.flatnonzero(mask[z, y])
            if inside.size == 0:
                continue
            x0, n = inside[0], inside[-1] + 1 - inside[0]
            total = np.zeros(n)
            for r in range(row_dz.shape[0]):
                zz, yy, a = z + row_dz[r], y + row_dy[r], row_dx[r]
                if zz < 0 or zz >= nz or yy < 0 or yy >= ny:
                    continue
                start = (zz * ny + yy) * width + pad + x0
                high, low = prefix[start + a + 1:start + a + 1 + n], prefix[start - a:start - a + n]
                for i in range(n):                      # slices indexed from 0: vectorised
                    total[i] += high[i] - low[i]
            for x in inside:
                out[k] = total[x - x0]
                k += 1
    return out


@njit(cache=True, nogil=True)
def count_matrix_formulas(matrix, i, j, count, n_matrices, n_voxels):
    """The formulas the GLRLM, GLSZM, GLDZM and NGLDM share (:data:`~.zones.SHARED_FORMULAS`, in that order) of
    ``n_matrices`` count matrices s_ij given by their non-zero cells, grouped by matrix (``matrix`` non-decreasing;
    row i >= 1 a grey level, column j >= 1 a run length, zone size, distance or dependence count + 1, ``count`` > 0).
    With N_s = sum s_ij, p_ij = s_ij / N_s, s_i. and s_.j the row and column sums and ``n_voxels[m]`` the matrix's
    N_v (or, where it is < 0, sum_ij j s_ij: the voxels of a run length matrix):

    sum p / j^2, sum p j^2, sum p / i^2, sum p i^2, sum p / (i^2 j^2), sum p i^2 / j^2, sum p j^2 / i^2,
    sum p i^2 j^2, sum_i s_i.^2 / N_s, / N_s^2, sum_j s_.j^2 / N_s, / N_s^2, N_s / N_v, sum (i - mu_i)^2 p,
    sum (j - mu_j)^2 p (mu: the p-weighted means), -sum p log2 p, sum p^2.

    Returns (values (n_matrices, 17), which matrices have cells); a matrix without cells or voxels is left NaN
    (the callers' formula functions say why)."""
    out = np.full((n_matrices, 17), np.nan)
    filled = np.zeros(n_matrices, dtype=np.bool_)
    n_cells = matrix.shape[0]
    top_i = 1
    top_j = 1
    for c in range(n_cells):
        top_i = max(top_i, i[c])
        top_j = max(top_j, j[c])
    rows = np.zeros(top_i + 1)
    columns = np.zeros(top_j + 1)
    listed_i = np.empty(n_cells, dtype=np.int64)
    listed_j = np.empty(n_cells, dtype=np.int64)
    c0 = 0
    while c0 < n_cells:
        c1 = c0
        while c1 < n_cells and matrix[c1] == matrix[c0]:
            c1 += 1
        m = matrix[c0]
        total = 0.0
        voxels = 0.0
        for c in range(c0, c1):
            total += count[c]
            voxels += j[c] * count[c]
        if n_voxels[m] >= 0:
            voxels = n_voxels[m]
        ni = nj = 0
        sums = np.zeros(17)
        mean_i = mean_j = 0.0
        for c in range(c0, c1):
            p = count[c] / total
            a, b = float(i[c]), float(j[c])
            a2, b2 = a * a, b * b
            sums[0] += p / b2
            sums[1] += p * b2
            sums[2] += p / a2
            sums[3] += p * a2
            sums[4] += p / (a2 * b2)
            sums[5] += p * a2 / b2
            sums[6] += p * b2 / a2
            sums[7] += p * a2 * b2
            sums[15] -= p * np.log2(p)
            sums[16] += p * p
            mean_i += a * p
            mean_j += b * p
            if rows[i[c]] == 0.0:
                listed_i[ni] = i[c]
                ni += 1
            rows[i[c]] += count[c]
            if columns[j[c]] == 0.0:
                listed_j[nj] = j[c]
                nj += 1
            columns[j[c]] += count[c]
        for c in range(c0, c1):
            p = count[c] / total
            sums[13] += (i[c] - mean_i) ** 2 * p
            sums[14] += (j[c] - mean_j) ** 2 * p
        for t in range(ni):
            sums[8] += rows[listed_i[t]] ** 2
            rows[listed_i[t]] = 0.0
        for t in range(nj):
            sums[10] += columns[listed_j[t]] ** 2
            columns[listed_j[t]] = 0.0
        if total > 0.0 and voxels > 0.0:
            sums[9] = sums[8] / (total * total)
            sums[8] /= total
            sums[11] = sums[10] / (total * total)
            sums[10] /= total
            sums[12] = total / voxels
            out[m] = sums
            filled[m] = True
        c0 = c1
    return out, filled


@njit(cache=True, nogil=True)
def nonzero_cells(dense):
    """(matrix, row, column, count) of the non-zero cells of dense matrices (m, rows, columns), in C order:
    ``np.nonzero(dense)`` and the values there, in one pass to count them and one to list them."""
    m, rows, columns = dense.shape
    flat = dense.ravel()
    n = 0
    for k in range(flat.size):
        if flat[k] != 0:
            n += 1
    matrix = np.empty(n, dtype=np.int64)
    row = np.empty(n, dtype=np.int64)
    column = np.empty(n, dtype=np.int64)
    count = np.empty(n, dtype=dense.dtype)
    n = 0
    for k in range(flat.size):
        if flat[k] != 0:
            matrix[n], rest = divmod(k, rows * columns)
            row[n], column[n] = divmod(rest, columns)
            count[n] = flat[k]
            n += 1
    return matrix, row, column, count


@njit(cache=True, nogil=True)
def texture_tables(cooccurrence_levels, cooccurrence_offsets, run_levels, run_offsets, zone_levels, neighbour_levels,
                   neighbour_mask, neighbour_distance, coarseness):
    """(:func:`cooccurrence_counts`, :func:`run_length_counts`, :func:`zone_labels` in 3D, :func:`neighbourhood_counts`
    in 3D) of their arguments in one call, so that a background thread counts a 3D extraction's texture tables without
    taking the GIL in between (:func:`~RadiomicsLabLib.ibsi.features.texture_tables.start`)."""
    return (cooccurrence_counts(cooccurrence_levels, cooccurrence_offsets),
            run_length_counts(run_levels, run_offsets),
            zone_labels(zone_levels, False),
            neighbourhood_counts(neighbour_levels, neighbour_mask, neighbour_distance, False, coarseness))
