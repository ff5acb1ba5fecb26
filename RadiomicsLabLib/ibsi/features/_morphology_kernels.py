"""Compiled loops of the morphology family: the marching-cubes configurations of a mask and its surface's edge
midpoints, the oriented minimum bounding box and the MVEE iterations.

The same formulas and steps as the numpy versions they replace (see
:func:`~RadiomicsLabLib.ibsi.features.morphology.oriented_minimum_bounding_box` and
:func:`~RadiomicsLabLib.ibsi.features.morphology.minimum_volume_enclosing_ellipsoid`), written as numba
loops so that the hundreds of small steps (one minimum-area rectangle per hull face normal, one 4 x 4 solve per
Khachiyan iteration) do not each pay numpy's call overhead. Sums may differ from the numpy ones in
their last bits (another summation order).
"""

import numpy as np

from ...jit import njit


@njit(cache=True, nogil=True)
def hull_edges(facets, n_points):
    """The edges of a triangulated closed surface (``facets``: triangles over ``n_points`` vertices) as rows (a, b,
    f, g): vertices a < b and the two facets f, g on either side; a side without a partner (an open surface) has
    g = -1."""
    n = facets.shape[0]
    keys = np.empty(3 * n, dtype=np.int64)
    for f in range(n):
        for c in range(3):
            a, b = facets[f, c], facets[f, (c + 1) % 3]
            keys[3 * f + c] = (min(a, b) * n_points + max(a, b)) * n + f
    keys.sort()
    edges = np.empty((3 * n, 4), dtype=np.int64)
    count = i = 0
    while i < keys.size:
        pair = keys[i] // n
        edges[count, 0], edges[count, 1], edges[count, 2], edges[count, 3] = pair // n_points, pair % n_points, \
            keys[i] % n, -1
        if i + 1 < keys.size and keys[i + 1] // n == pair:
            edges[count, 3] = keys[i + 1] % n
            i += 1
        count += 1
        i += 1
    return edges[:count]


@njit(cache=True, nogil=True)
def edge_directions(cells, edges):
    """Per edge (a, b, ...) of ``edges`` between the lattice points ``cells`` (n x 3 integers, |coordinate| < 2^15):
    an id that the edges parallel to it share, those of cells[b] - cells[a] divided by the gcd of its components, up
    to sign."""
    n = edges.shape[0]
    keys = np.empty(n, dtype=np.int64)
    for e in range(n):
        a, b = edges[e, 0], edges[e, 1]
        d0, d1, d2 = cells[b, 0] - cells[a, 0], cells[b, 1] - cells[a, 1], cells[b, 2] - cells[a, 2]
        g = _gcd3(d0, d1, d2)
        if g:
            d0, d1, d2 = d0 // g, d1 // g, d2 // g
        if d0 < 0 or (d0 == 0 and (d1 < 0 or (d1 == 0 and d2 < 0))):
            d0, d1, d2 = -d0, -d1, -d2
        keys[e] = ((d0 + (1 << 16)) << 36) | ((d1 + (1 << 16)) << 18) | (d2 + (1 << 16))    # 18 bits each
    order = np.argsort(keys)
    ids = np.empty(n, dtype=np.int64)
    current = -1
    for r in range(n):
        if r == 0 or keys[order[r]] != keys[order[r - 1]]:
            current += 1
        ids[order[r]] = current
    return ids


@njit(cache=True, nogil=True)
def distinct_normals(normals):
    """The first (lowest) index of every set of facets whose unit normals are the same up to sign once rounded to 9
    decimals (numpy's ``np.round``: rint(x 10^9) / 10^9), ascending; the sign makes the largest component (the first
    of equal magnitude) positive."""
    n = normals.shape[0]
    rounded = np.empty((3, n))
    for f in range(n):
        largest = 0
        for k in range(1, 3):
            if abs(normals[f, k]) > abs(normals[f, largest]):
                largest = k
        sign = np.sign(normals[f, largest])
        for k in range(3):
            rounded[k, f] = np.rint(normals[f, k] * sign * 1e9) / 1e9
    order = np.arange(n)
    for k in range(2, -1, -1):    # stable sorts by the last key first: lexicographic order, ties in index order
        order = order[np.argsort(rounded[k][order], kind="mergesort")]
    first = np.empty(n, dtype=np.int64)
    count = 0
    for r in range(n):
        f = order[r]
        if r == 0 or rounded[0, f] != rounded[0, order[r - 1]] or rounded[1, f] != rounded[1, order[r - 1]] or \
                rounded[2, f] != rounded[2, order[r - 1]]:
            first[count] = f
            count += 1
    return np.sort(first[:count])


@njit(cache=True, nogil=True)
def oriented_minimum_bounding_box(points, edges, normals, selected, best, directions):
    """Side lengths of the smallest of the box ``best`` (the AABB) and the boxes with one face orthogonal to
    the facet normal ``normals[k]``, k in ``selected`` (depth: the extent of the hull vertices ``points`` along the
    normal; the other two sides: the minimum-area rectangle of their projection on the normal's plane).
    ``directions``: per edge, an id that parallel edges share (:func:`edge_directions`; all distinct where not
    known): of parallel silhouette edges only the first is taken, their projections give the same rectangle.

    The projection of a convex polytope is the convex polygon bounded by the projections of its silhouette edges:
    the ``edges`` (:func:`hull_edges`) between a facet facing the normal's way (n . n_f >= 0) and one facing the
    other way (n . n_f <= 0), up to 1e-9; the silhouette's vertices are those edges' ends. A minimum-area
    rectangle has a side along an edge of that polygon (Freeman and Shapira), so the smallest of the rectangles
    along the silhouette edges' projections, each spanning the extents of the silhouette vertices, is it.
    Extra directions (an edge inside a projected facet, one without a partner facet) can only give larger
    rectangles; edges shorter than 1e-9 of the projection's size (an edge along the normal) have no direction
    and are skipped. Where no edge has one (a flat projection): (the projection's diagonal, 0).

    Edges between two facets of one plane are left out once; per normal, each other edge's two facets are faced
    with the normal in one branch-free pass over per-edge copies of their normals (no gathers), and the silhouette
    edges are listed by a branch-free compaction, their vertices in edge order. An edge's rectangle is first
    spanned by 8 seed vertices only (the extremes of the projection along u, v, u + v and u - v): its extents only
    grow with more vertices, so where that partial rectangle's area already reaches the smallest of this normal's,
    or its box's volume exceeds the smallest box's by more than 1e-12 (relative: rounding cannot reverse that), the
    edge cannot give the first smallest box and is not spanned in full. The box chosen is the one the full search
    chooses, bit for bit.
    """
    best = best.copy()
    best_volume = best[0] * best[1] * best[2]
    n_points, n_facets, n_edges = points.shape[0], normals.shape[0], edges.shape[0]
    x, y, z = points[:, 0].copy(), points[:, 1].copy(), points[:, 2].copy()
    nx, ny, nz = normals[:, 0].copy(), normals[:, 1].copy(), normals[:, 2].copy()
    # an edge between two facets of one plane lies inside the projection of that plane (or along its edge)
    sides = np.empty(n_edges, dtype=np.bool_)
    for e in range(n_edges):
        f, g = edges[e, 2], edges[e, 3]
        sides[e] = g < 0 or not (nx[f] == nx[g] and ny[f] == ny[g] and nz[f] == nz[g])
    candidates = np.flatnonzero(sides)
    # per candidate edge, the normals of its two facets (no partner: the first's twice; always on the silhouette)
    partner = edges[candidates, 3] >= 0
    f_of, g_of = edges[candidates, 2], np.where(partner, edges[candidates, 3], edges[candidates, 2])
    fx, fy, fz = nx[f_of], ny[f_of], nz[f_of]
    gx, gy, gz = nx[g_of], ny[g_of], nz[g_of]
    on_silhouette = np.empty(candidates.size, dtype=np.bool_)
    slot = np.full(n_points, -1, dtype=np.int64)      # a silhouette vertex's index in pu, pv
    silhouette = np.empty(n_points, dtype=np.int64)
    pu, pv = np.empty(n_points), np.empty(n_points)
    chosen = np.empty(n_edges, dtype=np.int64)
    taken = np.full(n_edges, -1, dtype=np.int64)       # the last normal whose rectangles took each direction
    seeds = np.empty(8, dtype=np.int64)
    diagonal, anti_diagonal = np.empty(n_points), np.empty(n_points)
    for k in selected:
        norm = np.sqrt(nx[k] ** 2 + ny[k] ** 2 + nz[k] ** 2)
        n0, n1, n2 = nx[k] / norm, ny[k] / norm, nz[k] / norm
        smallest = 0
        if abs(n1) < abs(n0):
            smallest = 1
        if abs(n2) < min(abs(n0), abs(n1)):
            smallest = 2
        # u = n x e_smallest, normalised; v = n x u
        if smallest == 0:
            u0, u1, u2 = 0.0, n2, -n1
        elif smallest == 1:
            u0, u1, u2 = -n2, 0.0, n0
        else:
            u0, u1, u2 = n1, -n0, 0.0
        length = np.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
        u0, u1, u2 = u0 / length, u1 / length, u2 / length
        v0, v1, v2 = n1 * u2 - n2 * u1, n2 * u0 - n0 * u2, n0 * u1 - n1 * u0
        for e in range(candidates.size):   # facing the normal's way: n . n_f > -1e-9; the other way: < 1e-9
            facing_f = n0 * fx[e] + n1 * fy[e] + n2 * fz[e]
            facing_g = n0 * gx[e] + n1 * gy[e] + n2 * gz[e]
            on_silhouette[e] = ((facing_f > -1e-9) | (facing_g > -1e-9)) & ((facing_f < 1e-9) | (facing_g < 1e-9)) \
                | (not partner[e])
        c = 0
        for e in range(candidates.size):
            chosen[c] = candidates[e]
            c += on_silhouette[e]
        m = 0
        for i in range(c):
            for end in range(2):
                p = edges[chosen[i], end]
                if slot[p] < 0:
                    slot[p] = m
                    silhouette[m] = p
                    pu[m] = x[p] * u0 + y[p] * u1 + z[p] * u2
                    pv[m] = x[p] * v0 + y[p] * v1 + z[p] * v2
                    m += 1
        low, high = np.inf, -np.inf
        for i in range(n_points):
            pn = x[i] * n0 + y[i] * n1 + z[i] * n2
            low, high = min(low, pn), max(high, pn)
        if m == 0:       # no silhouette (not a closed surface): no box for this normal
            continue
        su, sv = pu[:m], pv[:m]
        depth = high - low
        for j in range(m):
            diagonal[j] = su[j] + sv[j]
            anti_diagonal[j] = su[j] - sv[j]
        seeds[0], seeds[1], seeds[2], seeds[3] = np.argmin(su), np.argmax(su), np.argmin(sv), np.argmax(sv)
        seeds[4], seeds[5] = np.argmin(diagonal[:m]), np.argmax(diagonal[:m])
        seeds[6], seeds[7] = np.argmin(anti_diagonal[:m]), np.argmax(anti_diagonal[:m])
        span_u, span_v = su[seeds[1]] - su[seeds[0]], sv[seeds[3]] - sv[seeds[2]]    # the projection's extents
        slack = 1e-9 * (span_u + span_v)
        area, width, height = np.inf, 0.0, 0.0
        skipped = False
        for i in range(c):
            direction = directions[chosen[i]]
            if taken[direction] == k:
                continue
            taken[direction] = k
            a, b = slot[edges[chosen[i], 0]], slot[edges[chosen[i], 1]]
            ex, ey = pu[b] - pu[a], pv[b] - pv[a]
            length = np.sqrt(ex * ex + ey * ey)
            if not length > slack:
                continue
            ux, uy = ex / length, ey / length
            along_low, along_high, across_low, across_high = np.inf, -np.inf, np.inf, -np.inf
            for j in seeds:
                along = su[j] * ux + sv[j] * uy
                across = sv[j] * ux - su[j] * uy
                along_low, along_high = min(along_low, along), max(along_high, along)
                across_low, across_high = min(across_low, across), max(across_high, across)
            seed_width, seed_height = along_high - along_low, across_high - across_low
            if seed_width * seed_height >= area or depth * seed_width * seed_height > best_volume * (1.0 + 1e-12):
                skipped = True
                continue
            for j in range(m):
                along = su[j] * ux + sv[j] * uy
                across = sv[j] * ux - su[j] * uy
                along_low, along_high = min(along_low, along), max(along_high, along)
                across_low, across_high = min(across_low, across), max(across_high, across)
            if (along_high - along_low) * (across_high - across_low) < area:
                width, height = along_high - along_low, across_high - across_low
                area = width * height
        for i in range(m):
            slot[silhouette[i]] = -1
        if area == np.inf:
            if skipped:    # every edge's box is larger than the smallest one
                continue
            width, height = np.sqrt(span_u ** 2 + span_v ** 2), 0.0
        volume = depth * width * height
        if volume < best_volume:
            best_volume = volume
            best[0], best[1], best[2] = depth, width, height
    return best


@njit(cache=True, nogil=True)
def cube_configurations(padded, lookup):
    """Per marching-cubes configuration c: how many 2 x 2 x 2 cubes of the boolean grid ``padded`` have it and the
    sum of their origins' (z, y, x) indices (exact integers); configurations 0 and 255 (no surface) are not counted.

    A cube's configuration is ``lookup[left | right << 4]``, where left and right are its two x columns' four
    voxels as bits (dz, dy) -> 2 dz + dy: each column's bits are made once and shared by the two cubes beside it.
    """
    nz, ny, nx = padded.shape
    counts = np.zeros(256, dtype=np.int64)
    origins = np.zeros((256, 3), dtype=np.int64)
    columns = np.empty(nx, dtype=np.int64)
    for z in range(nz - 1):
        for y in range(ny - 1):
            a, b, c, d = padded[z, y], padded[z, y + 1], padded[z + 1, y], padded[z + 1, y + 1]
            for x in range(nx):
                columns[x] = a[x] | (b[x] << 1) | (c[x] << 2) | (d[x] << 3)
            for x in range(nx - 1):
                code = columns[x] | (columns[x + 1] << 4)
                if code != 0 and code != 255:
                    configuration = lookup[code]
                    counts[configuration] += 1
                    origins[configuration, 0] += z
                    origins[configuration, 1] += y
                    origins[configuration, 2] += x
    return counts, origins


@njit(cache=True, nogil=True)
def _surface_edges(padded, z, y, x, cells, k):
    """Writes, from row ``k`` of ``cells`` (when it is not empty), the half-voxel cells of the edges from the set
    voxel (z, y, x) to its unset 6-neighbours (order -z, +z, -y, +y, -x, +x); returns the next row."""
    for axis in range(3):
        for step in (-1, 1):
            dz, dy, dx = (step if axis == 0 else 0), (step if axis == 1 else 0), (step if axis == 2 else 0)
            if not padded[z + dz, y + dy, x + dx]:
                if cells.shape[0]:
                    cells[k, 0], cells[k, 1], cells[k, 2] = 2 * z + dz, 2 * y + dy, 2 * x + dx
                k += 1
    return k


@njit(cache=True, nogil=True)
def surface_cells(padded):
    """The midpoints of the edges between a set voxel of the boolean grid ``padded`` (zero on its border) and an
    unset 6-neighbour, on the lattice of half voxels (n x 3 int: twice the index, plus or minus 1 along the edge):
    the vertices of a marching-cubes surface of ``padded`` at level 0.5 (Lewiner's cube-centre vertices aside), in
    (z, y, x) scan order, each edge once. Two passes: the count, then the cells."""
    nz, ny, nx = padded.shape
    cells = np.empty((0, 3), dtype=np.int64)
    for fill in range(2):
        k = 0
        for z in range(1, nz - 1):
            for y in range(1, ny - 1):
                row, below, above = padded[z, y], padded[z, y - 1], padded[z, y + 1]
                front, back = padded[z - 1, y], padded[z + 1, y]
                for x in range(1, nx - 1):
                    if row[x] and not (front[x] and back[x] and below[x] and above[x] and row[x - 1] and row[x + 1]):
                        k = _surface_edges(padded, z, y, x, cells, k)
        if fill == 0:
            cells = np.empty((k, 3), dtype=np.int64)
    return cells


@njit(cache=True, nogil=True)
def _facet_plane(points, a, b, c, normal, offset, f):
    """Outward normal (b - a) x (c - a) and offset n . a of facet f = (a, b, c) (exact integers)."""
    u0, u1, u2 = points[b, 0] - points[a, 0], points[b, 1] - points[a, 1], points[b, 2] - points[a, 2]
    v0, v1, v2 = points[c, 0] - points[a, 0], points[c, 1] - points[a, 1], points[c, 2] - points[a, 2]
    normal[f, 0] = u1 * v2 - u2 * v1
    normal[f, 1] = u2 * v0 - u0 * v2
    normal[f, 2] = u0 * v1 - u1 * v0
    offset[f] = normal[f, 0] * points[a, 0] + normal[f, 1] * points[a, 1] + normal[f, 2] * points[a, 2]


@njit(cache=True, nogil=True)
def _gcd3(a, b, c):
    """The greatest common divisor of |a|, |b| and |c| (Euclid); 0 when all are 0."""
    g = 0
    for x in (abs(a), abs(b), abs(c)):
        while x:
            g, x = x, g % x
    return g


@njit(cache=True, nogil=True)
def lattice_facet_normals(points, facets):
    """(normals, reduced, six_volume, vertices) of the convex polytope triangulated by ``facets`` over the lattice
    ``points`` (exact integers): each facet's outward normal (b - a) x (c - a), the same divided by the gcd of its
    components (coplanar facets: one normal), 6 V = sum_f a . (b x c), and the sorted indices of the points that
    facets use."""
    n, m = points.shape[0], facets.shape[0]
    normals = np.empty((m, 3), dtype=np.int64)
    offsets = np.empty(m, dtype=np.int64)
    reduced = np.empty((m, 3), dtype=np.int64)
    used = np.zeros(n, dtype=np.bool_)
    six_volume = 0
    for f in range(m):
        _facet_plane(points, facets[f, 0], facets[f, 1], facets[f, 2], normals, offsets, f)
        six_volume += offsets[f]                  # n . a = ((b - a) x (c - a)) . a = a . (b x c)
        g = _gcd3(normals[f, 0], normals[f, 1], normals[f, 2])
        for k in range(3):
            reduced[f, k] = normals[f, k] // g if g else 0
            used[facets[f, k]] = True
    return normals, reduced, six_volume, np.flatnonzero(used)


@njit(cache=True, nogil=True)
def _height(points, normal, offset, f, q):
    """n_f . q - offset_f: > 0 when point q is strictly above (outside) facet f."""
    return normal[f, 0] * points[q, 0] + normal[f, 1] * points[q, 1] + normal[f, 2] * points[q, 2] - offset[f]


@njit(cache=True, nogil=True)
def _grown(array, size):
    """``array`` (1D) copied into a longer one."""
    out = np.empty(size, dtype=array.dtype)
    out[:array.shape[0]] = array
    return out


@njit(cache=True, nogil=True)
def _grown_rows(array, size):
    """``array`` (n x 3) copied into one with more rows."""
    out = np.empty((size, 3), dtype=array.dtype)
    out[:array.shape[0]] = array
    return out


@njit(cache=True, nogil=True)
def lattice_convex_hull(points):
    """Triangular facets (F x 3 indices into ``points``, counterclockwise seen from outside) of the convex hull of
    integer points (n x 3, distinct), by quickhull (Barber, Dobkin and Huhdanpaa 1996) in exact integer arithmetic:
    every orientation test is an exact determinant, so coplanar and collinear points (a lattice is full of them)
    need no tolerance. A point on a facet's plane is not outside it: the hull's vertices are its extreme points, a
    flat face may be split into several coplanar triangles. Returns an empty array when the points span no volume
    (fewer than 4, or all on one plane; or, a safeguard, if the horizon were not one cycle). Coordinates up to about
    10^5 keep every product within int64.
    """
    n = points.shape[0]
    empty = np.zeros((0, 3), dtype=np.int64)
    if n < 4:
        return empty
    # initial tetrahedron: the lowest point, the farthest from it, the farthest from their line and from their plane
    p0 = 0
    for i in range(n):
        if points[i, 0] < points[p0, 0] or (points[i, 0] == points[p0, 0] and (
                points[i, 1] < points[p0, 1] or (points[i, 1] == points[p0, 1] and points[i, 2] < points[p0, 2]))):
            p0 = i
    p1, best = -1, 0
    for i in range(n):
        d = (points[i, 0] - points[p0, 0]) ** 2 + (points[i, 1] - points[p0, 1]) ** 2 + (points[i, 2] - points[p0, 2]) ** 2
        if d > best:
            p1, best = i, d
    e0, e1, e2 = points[p1, 0] - points[p0, 0], points[p1, 1] - points[p0, 1], points[p1, 2] - points[p0, 2]
    p2, best = -1, 0
    for i in range(n):
        w0, w1, w2 = points[i, 0] - points[p0, 0], points[i, 1] - points[p0, 1], points[i, 2] - points[p0, 2]
        c0, c1, c2 = e1 * w2 - e2 * w1, e2 * w0 - e0 * w2, e0 * w1 - e1 * w0
        d = c0 * c0 + c1 * c1 + c2 * c2
        if d > best:
            p2, best = i, d
    if p2 < 0:
        return empty
    g0, g1, g2 = points[p2, 0] - points[p0, 0], points[p2, 1] - points[p0, 1], points[p2, 2] - points[p0, 2]
    m0, m1, m2 = e1 * g2 - e2 * g1, e2 * g0 - e0 * g2, e0 * g1 - e1 * g0
    p3, best, side = -1, 0, 0
    for i in range(n):
        d = m0 * (points[i, 0] - points[p0, 0]) + m1 * (points[i, 1] - points[p0, 1]) + m2 * (points[i, 2] - points[p0, 2])
        if abs(d) > best:
            p3, best, side = i, abs(d), d
    if p3 < 0:
        return empty
    if side > 0:          # p3 above (p0, p1, p2): orient the base the other way round so that its normal points out
        p1, p2 = p2, p1

    capacity = 64
    verts = np.empty((capacity, 3), dtype=np.int64)
    normal = np.empty((capacity, 3), dtype=np.int64)
    offset = np.empty(capacity, dtype=np.int64)
    neighbour = np.empty((capacity, 3), dtype=np.int64)   # across edge k: (verts[k], verts[k + 1 mod 3])
    alive = np.zeros(capacity, dtype=np.bool_)
    head = np.full(capacity, -1, dtype=np.int64)          # first point of the facet's outside set
    seen = np.zeros(capacity, dtype=np.int64)             # visibility stamp
    following = np.full(n, -1, dtype=np.int64)           # next point in the same outside set
    # the four faces, each counterclockwise from outside, and their neighbours across each edge
    faces = ((p0, p1, p2), (p0, p3, p1), (p1, p3, p2), (p2, p3, p0))
    for f in range(4):
        verts[f, 0], verts[f, 1], verts[f, 2] = faces[f]
        _facet_plane(points, faces[f][0], faces[f][1], faces[f][2], normal, offset, f)
        alive[f] = True
    for f in range(4):
        for k in range(3):
            a, b = verts[f, k], verts[f, (k + 1) % 3]
            for g in range(4):
                for j in range(3):
                    if g != f and verts[g, j] == b and verts[g, (j + 1) % 3] == a:
                        neighbour[f, k] = g
    count = 4
    for q in range(n):
        if q == p0 or q == p1 or q == p2 or q == p3:
            continue
        for f in range(4):
            if _height(points, normal, offset, f, q) > 0:
                following[q] = head[f]
                head[f] = q
                break

    pending = [0, 1, 2, 3]
    visible = np.empty(16, dtype=np.int64)
    horizon_from = np.empty(16, dtype=np.int64)   # horizon edges (u, v), as in the visible facet, and the facet
    horizon_to = np.empty(16, dtype=np.int64)     # beyond them
    horizon_beyond = np.empty(16, dtype=np.int64)
    starts_at = np.full(n, -1, dtype=np.int64)    # the new facet whose horizon edge starts at a vertex
    stamp = 0
    while pending:
        f = pending.pop()
        if not alive[f] or head[f] < 0:
            continue
        eye, best = -1, -1
        q = head[f]
        while q >= 0:
            h = _height(points, normal, offset, f, q)
            if h > best:
                eye, best = q, h
            q = following[q]
        # the facets the eye sees (connected, from f) and the horizon around them
        stamp += 1
        n_visible, n_horizon = 1, 0
        visible[0] = f
        seen[f] = stamp
        i = 0
        while i < n_visible:
            g = visible[i]
            i += 1
            for k in range(3):
                other = neighbour[g, k]
                if seen[other] == stamp:
                    continue
                if _height(points, normal, offset, other, eye) > 0:
                    seen[other] = stamp
                    if n_visible == visible.shape[0]:
                        visible = _grown(visible, 2 * n_visible)
                    visible[n_visible] = other
                    n_visible += 1
        for i in range(n_visible):
            g = visible[i]
            for k in range(3):
                other = neighbour[g, k]
                if seen[other] != stamp:
                    if n_horizon == horizon_from.shape[0]:
                        horizon_from = _grown(horizon_from, 2 * n_horizon)
                        horizon_to = _grown(horizon_to, 2 * n_horizon)
                        horizon_beyond = _grown(horizon_beyond, 2 * n_horizon)
                    horizon_from[n_horizon] = verts[g, k]
                    horizon_to[n_horizon] = verts[g, (k + 1) % 3]
                    horizon_beyond[n_horizon] = other
                    n_horizon += 1
        # one new facet (u, v, eye) per horizon edge
        if count + n_horizon > capacity:
            capacity = max(2 * capacity, count + n_horizon)
            verts, normal, neighbour = _grown_rows(verts, capacity), _grown_rows(normal, capacity), \
                _grown_rows(neighbour, capacity)
            offset, head, seen = _grown(offset, capacity), _grown(head, capacity), _grown(seen, capacity)
            grown_alive = np.zeros(capacity, dtype=np.bool_)
            grown_alive[:alive.shape[0]] = alive
            alive = grown_alive
        first_new = count
        for e in range(n_horizon):
            g = count
            count += 1
            u, v, beyond = horizon_from[e], horizon_to[e], horizon_beyond[e]
            verts[g, 0], verts[g, 1], verts[g, 2] = u, v, eye
            _facet_plane(points, u, v, eye, normal, offset, g)
            alive[g] = True
            head[g] = -1
            seen[g] = 0
            neighbour[g, 0] = beyond
            for k in range(3):       # the old facet beyond (v, u) now meets the new one
                if verts[beyond, k] == v and verts[beyond, (k + 1) % 3] == u:
                    neighbour[beyond, k] = g
            starts_at[u] = g
        for g in range(first_new, count):
            after = starts_at[verts[g, 1]]            # across (v, eye): the new facet of the horizon edge from v,
            if after < 0:                             # whose edge (eye, v) it is; the horizon is one cycle
                return empty
            neighbour[g, 1] = after
            neighbour[after, 2] = g
        for g in range(first_new, count):
            starts_at[verts[g, 0]] = -1
        # the visible facets go; their outside points move to the first new facet they are above
        for i in range(n_visible):
            g = visible[i]
            alive[g] = False
            q = head[g]
            while q >= 0:
                after = following[q]
                if q != eye:
                    for h in range(first_new, count):
                        if _height(points, normal, offset, h, q) > 0:
                            following[q] = head[h]
                            head[h] = q
                            break
                q = after
            head[g] = -1
        for g in range(first_new, count):
            if head[g] >= 0:
                pending.append(g)
    out = np.empty((int(alive[:count].sum()), 3), dtype=np.int64)
    k = 0
    for f in range(count):
        if alive[f]:
            out[k] = verts[f]
            k += 1
    return out


@njit(cache=True, nogil=True)
def extreme_vertices(points, facets):
    """Mask of the points that are extreme points of the convex polytope triangulated by ``facets`` (from
    :func:`lattice_convex_hull`): those whose facets lie in at least three different planes. A vertex whose facets
    lie in one plane is inside a flat face, in two planes inside an edge (two faces of a convex polytope meet along
    a line, no third can): neither is a vertex of the hull. Exact for coordinates below 2^15 (products of normals
    stay within int64)."""
    n, m = points.shape[0], facets.shape[0]
    normals = np.empty((m, 3), dtype=np.int64)
    offsets = np.empty(m, dtype=np.int64)
    for f in range(m):
        _facet_plane(points, facets[f, 0], facets[f, 1], facets[f, 2], normals, offsets, f)
    planes = np.zeros((n, 2, 3), dtype=np.int64)   # up to two distinct normals seen at each vertex
    found = np.zeros(n, dtype=np.int64)
    for f in range(m):
        for k in range(3):
            v = facets[f, k]
            if found[v] >= 3:
                continue
            new = True
            for j in range(found[v]):
                c0 = planes[v, j, 1] * normals[f, 2] - planes[v, j, 2] * normals[f, 1]
                c1 = planes[v, j, 2] * normals[f, 0] - planes[v, j, 0] * normals[f, 2]
                c2 = planes[v, j, 0] * normals[f, 1] - planes[v, j, 1] * normals[f, 0]
                if c0 == 0 and c1 == 0 and c2 == 0:
                    new = False
                    break
            if new:
                if found[v] < 2:
                    planes[v, found[v]] = normals[f]
                found[v] += 1
    return found >= 3


@njit(cache=True, nogil=True)
def mask_moments(morph_mask, int_mask, image):
    """Moments of two masks on one grid, in one pass: of ``morph_mask`` its voxel count n, the sums of the voxel
    indices S_a and of their products S_ab (exact integers); of ``int_mask`` the sums of the intensities of
    ``image`` and of the intensities times each index (float, in scan order)."""
    n = 0
    sums = np.zeros(3, dtype=np.int64)
    products = np.zeros((3, 3), dtype=np.int64)
    weight = 0.0
    weighted = np.zeros(3)
    nz, ny, nx = morph_mask.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if morph_mask[z, y, x]:
                    n += 1
                    sums[0] += z
                    sums[1] += y
                    sums[2] += x
                    products[0, 0] += z * z
                    products[0, 1] += z * y
                    products[0, 2] += z * x
                    products[1, 1] += y * y
                    products[1, 2] += y * x
                    products[2, 2] += x * x
                if int_mask[z, y, x]:
                    v = image[z, y, x]
                    weight += v
                    weighted[0] += v * z
                    weighted[1] += v * y
                    weighted[2] += v * x
    products[1, 0], products[2, 0], products[2, 1] = products[0, 1], products[0, 2], products[1, 2]
    return n, sums, products, weight, weighted


@njit(cache=True, nogil=True)
def max_squared_distance(points):
    """max over pairs k1 < k2 of sum_a (p_k1,a - p_k2,a)^2 (n x 3 points), without an n x n temporary."""
    best = 0.0
    for i in range(points.shape[0]):
        for j in range(i + 1, points.shape[0]):
            d0 = points[i, 0] - points[j, 0]
            d1 = points[i, 1] - points[j, 1]
            d2 = points[i, 2] - points[j, 2]
            best = max(best, d0 * d0 + d1 * d1 + d2 * d2)
    return best


@njit(cache=True, nogil=True)
def line_extremes(cells):
    """Mask of the points that are the first or last along every line through them parallel to an axis or to a
    face diagonal (9 directions).

    ``cells`` (n x 3, int) are the points' positions on a grid of step h / 2 (marching-cubes vertices lie
    on voxel edges). A point strictly between two others on a line is not a vertex of their convex hull, so the
    hull of the kept points is the hull of all of them; the lines are taken one direction after the other, each over
    the points still kept. On a line of direction e_a + w e_b (w = 0, 1 or -1) the points share the third
    coordinate and x_b - w x_a, and x_a orders them. The diagonals keep about a third of what the axes keep.
    Coordinates below 2^20 (a grid below 2^19 voxels per axis).
    """
    n = cells.shape[0]
    size = np.empty(3, dtype=np.int64)
    for a in range(3):
        size[a] = cells[:, a].max() + 1
    # one table for the lines of every direction, each entry (direction + 1) << 40 | last << 20 | first (coordinates
    # below 2^20): it belongs to the direction that last wrote it
    columns = 2 * size.max()
    table = np.zeros(size.max() * columns, dtype=np.int64)
    active, count = np.arange(n), n            # the points still kept, listed (no branch per point on ``keep``)
    for line in range(9):
        if line < 3:       # along axis a: the points share x_b and x_c
            a, w = line, 0
            b, c = (a + 1) % 3, (a + 2) % 3
        else:              # along e_a + w e_b, in the plane of the axes other than c
            c, w = (line - 3) // 2, 1 if line % 2 == 1 else -1
            a, b = (c + 1) % 3, (c + 2) % 3
        shift = size[a] if w == 1 else 0        # x_b - w x_a >= 0
        mark = (line + 1) << 40
        for k in range(count):
            i = active[k]
            key, v = cells[i, c] * columns + cells[i, b] - w * cells[i, a] + shift, cells[i, a]
            entry = table[key]
            if entry >> 40 != line + 1:
                table[key] = mark | (v << 20) | v
            else:
                table[key] = mark | (max((entry >> 20) & 0xFFFFF, v) << 20) | min(entry & 0xFFFFF, v)
        kept = 0
        for k in range(count):
            i = active[k]
            entry = table[cells[i, c] * columns + cells[i, b] - w * cells[i, a] + shift]
            v = cells[i, a]
            active[kept] = i
            kept += v == entry & 0xFFFFF or v == (entry >> 20) & 0xFFFFF
        count = kept
    keep = np.zeros(n, dtype=np.bool_)
    keep[active[:count]] = True
    return keep


@njit(cache=True, nogil=True)
def _lifted_norms(q, u, inverse, m):
    """X = sum_i u_i q_i q_i^T; ``inverse`` = X^-1 and m_i = q_i^T X^-1 q_i (recomputed from scratch)."""
    n, d1 = q.shape
    x = np.zeros((d1, d1))
    for i in range(n):
        for a in range(d1):
            qa = q[i, a] * u[i]
            for b in range(d1):
                x[a, b] += qa * q[i, b]
    inverse[:, :] = np.linalg.inv(x)
    for i in range(n):
        total = 0.0
        for a in range(d1):
            row = 0.0
            for b in range(d1):
                row += inverse[a, b] * q[i, b]
            total += q[i, a] * row
        m[i] = total


@njit(cache=True, nogil=True)
def khachiyan_weights(q, tolerance, max_iterations, refresh=64):
    """The weights u of Khachiyan's MVEE iterations with away steps on the lifted 3D points ``q`` (n x 4).

    A step u <- (1 - s) u + s e_j changes X = Q U Q^T by a rank-one term, so X^-1 and every m_i follow from
    Sherman-Morrison in O(n d) instead of a new inverse: with v = X^-1 q_j and c = 1 - s + s m_j,
    X'^-1 = (X^-1 - s v v^T / c) / (1 - s) and m_i' = (m_i - s (q_i . v)^2 / c) / (1 - s).
    X^-1 and m are recomputed from scratch every ``refresh`` steps and before stopping (no drift). The m update
    reads q by column (four contiguous arrays), a loop the compiler vectorises. A weight is clamped at 0 where it
    turned negative: only u_j can, unless s >= 1 (m_j < 1, not met on points in general position), where all are
    checked.
    """
    n, d1 = q.shape
    if d1 != 4:
        raise ValueError("khachiyan_weights takes lifted 3D points (n x 4)")
    q0, q1, q2, q3 = q[:, 0].copy(), q[:, 1].copy(), q[:, 2].copy(), q[:, 3].copy()
    u = np.full(n, 1.0 / n)
    target = float(d1)
    inverse = np.empty((d1, d1))
    m = np.empty(n)
    v = np.empty(d1)
    _lifted_norms(q, u, inverse, m)
    fresh = True
    steps = 0
    while True:
        up, down = 0, -1
        for i in range(n):
            if m[i] > m[up]:
                up = i
            if u[i] > 0 and (down < 0 or m[i] < m[down]):
                down = i
        grow, shrink = m[up] / target - 1.0, 1.0 - m[down] / target
        if max(grow, shrink) <= tolerance or steps >= max_iterations:
            if fresh:
                break
            _lifted_norms(q, u, inverse, m)   # confirm on exact m before stopping
            fresh = True
            continue
        j = up if grow >= shrink else down
        step = (m[j] - target) / (target * (m[j] - 1.0))
        if j == down:  # away step: u_j may not become negative
            step = max(step, -u[j] / (1.0 - u[j]))
        for i in range(n):
            u[i] *= 1.0 - step
        u[j] += step
        if step < 1.0:    # the others were scaled by 1 - step > 0: only u_j can have turned negative
            u[j] = 0.0 if u[j] < 0 else u[j]
        else:
            for i in range(n):
                if u[i] < 0:
                    u[i] = 0.0
        steps += 1
        if steps % refresh == 0:
            _lifted_norms(q, u, inverse, m)
            fresh = True
            continue
        for a in range(d1):
            row = 0.0
            for b in range(d1):
                row += inverse[a, b] * q[j, b]
            v[a] = row
        c = 1.0 - step + step * m[j]
        scale = 1.0 / (1.0 - step)
        for a in range(d1):
            for b in range(d1):
                inverse[a, b] = (inverse[a, b] - step * v[a] * v[b] / c) * scale
        v0, v1, v2, v3 = v[0], v[1], v[2], v[3]
        for i in range(n):
            dot = 0.0
            dot += q0[i] * v0
            dot += q1[i] * v1
            dot += q2[i] * v2
            dot += q3[i] * v3
            m[i] = (m[i] - step * dot * dot / c) * scale
        fresh = False
    return u


@njit(cache=True, nogil=True)
def folded_spectral_sums(weights, fold_z, fold_y, m, g, f):
    """Three weighted inner products over half spectra (complex, shape (L_z, L_y, L_x / 2 + 1)) with the real
    weights ``weights[fold_z[i], fold_y[j], k]``: sum W |M|^2, sum W Re(conj(G) M) and sum W |F|^2, in one
    pass (per line: the three sums accumulated side by side)."""
    weight = first = moran = 0.0
    n = m.shape[2]
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            w = weights[fold_z[i], fold_y[j]]
            ml, gl, fl = m[i, j], g[i, j], f[i, j]
            for k in range(n):
                mk, fk, gk = ml[k], fl[k], gl[k]
                weight += w[k] * (mk.real * mk.real + mk.imag * mk.imag)
                first += w[k] * (gk.real * mk.real + gk.imag * mk.imag)
                moran += w[k] * (fk.real * fk.real + fk.imag * fk.imag)
    return weight, first, moran


@njit(cache=True, nogil=True)
def hull_boxes(points, edges, normals, selected, best, directions, q, tolerance, max_iterations):
    """(:func:`oriented_minimum_bounding_box` of its first six arguments, :func:`khachiyan_weights` of the last three):
    the hull's two boxes in one call, so that a background thread computes both without taking the GIL in between
    (:meth:`~RadiomicsLabLib.ibsi.features.morphology.Morphology.start_hull_boxes`)."""
    return (oriented_minimum_bounding_box(points, edges, normals, selected, best, directions),
            khachiyan_weights(q, tolerance, max_iterations))
