"""Compiled loops of the morphology family: the marching-cubes configurations of a mask and its surface's edge
midpoints, the oriented minimum bounding box and the MVEE iterations.

The same formulas and steps as the numpy versions they replace (see
:func:`~RadiomicsLabLib.ibsi.features.morphology.oriented_minimum_bounding_box` and
:func:`~RadiomicsLabLib.ibsi.features.morphology.minimum_volume_enclosing_ellipsoid`), written as numba
loops so that the hundreds of small steps (one 2D hull per hull face normal, one 4 x 4 solve per
Khachiyan iteration) do not each pay numpy's call overhead. Sums may differ from the numpy ones in
their last bits (another summation order).
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _cross(ax, ay, bx, by, cx, cy):
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@njit(cache=True, nogil=True)
def _convex_hull_2d(x, y):
    """Indices of the 2D convex hull of (x, y), counterclockwise, without collinear points (monotone chain).

    A turn counts as left only when its cross product exceeds 1e-12 (ptp x + ptp y)^2: points that differ by
    rounding only (one 3D vertex projected twice) or lie on an edge up to rounding are dropped, so the
    polygon is strictly convex, as the rotating calipers of :func:`min_area_rectangle` need.
    """
    # Akl-Toussaint: points strictly inside the quadrilateral of the extreme points (lowest / highest x and y)
    # are not on the hull; dropping them first leaves the same hull (a degenerate quadrilateral drops none)
    a, b, c, d = np.argmin(x), np.argmin(y), np.argmax(x), np.argmax(y)
    quad_x = np.array([x[a], x[b], x[c], x[d]])
    quad_y = np.array([y[a], y[b], y[c], y[d]])
    candidates = np.empty(x.size, dtype=np.int64)
    n = 0
    for i in range(x.size):
        inside = True
        for e in range(4):
            f = (e + 1) % 4
            if not _cross(quad_x[e], quad_y[e], quad_x[f], quad_y[f], x[i], y[i]) > 0.0:
                inside = False
                break
        if not inside:
            candidates[n] = i
            n += 1
    candidates = candidates[:n]
    order = candidates[np.argsort(x[candidates])]  # then equal x by y: lexicographic (x, y)
    start = 0
    for i in range(1, n + 1):
        if i == n or x[order[i]] != x[order[start]]:
            for j in range(start + 1, i):      # insertion sort of the (short) run of equal x by y
                item = order[j]
                k = j - 1
                while k >= start and y[order[k]] > y[item]:
                    order[k + 1] = order[k]
                    k -= 1
                order[k + 1] = item
            start = i
    hull = np.empty(2 * n + 1, dtype=np.int64)
    turn = 1e-12 * (_ptp(x) + _ptp(y)) ** 2
    k = 0
    for i in range(n):                     # lower hull
        p = order[i]
        while k >= 2 and _cross(x[hull[k - 2]], y[hull[k - 2]], x[hull[k - 1]], y[hull[k - 1]], x[p], y[p]) <= turn:
            k -= 1
        hull[k] = p
        k += 1
    lower = k + 1
    for i in range(n - 2, -1, -1):         # upper hull
        p = order[i]
        while k >= lower and _cross(x[hull[k - 2]], y[hull[k - 2]], x[hull[k - 1]], y[hull[k - 1]], x[p], y[p]) <= turn:
            k -= 1
        hull[k] = p
        k += 1
    return hull[:max(k - 1, 0)]


@njit(cache=True, nogil=True)
def _ptp(values):
    return values.max() - values.min()


@njit(cache=True, nogil=True)
def _advance(hx, hy, start, dx, dy, sign, slack):
    """The hull vertex from ``start`` onwards (counterclockwise) with the largest ``sign * (d . p)``: walks on
    while the value does not fall by more than ``slack`` (rounding can make a flat run dip by an ulp)."""
    h = hx.size
    i = peak = start
    best = sign * (hx[i] * dx + hy[i] * dy)
    for _ in range(h):
        j = i + 1 if i + 1 < h else 0
        value = sign * (hx[j] * dx + hy[j] * dy)
        if value < best - slack:
            break
        i = j
        if value > best:
            best, peak = value, j
    return peak


@njit(cache=True, nogil=True)
def min_area_rectangle(x, y):
    """Side lengths (along an edge, across it) of the minimum-area rectangle enclosing (x, y), by rotating
    calipers over the hull edges; (length, 0) when the points are collinear.

    For the edge e -> e + 1 of the counterclockwise hull (direction u, inward normal v), the rectangle
    spans [min u.p, max u.p] x [v.p_e, max v.p]. Along the hull, u.p and v.p are unimodal, so the three
    extreme vertices only move forwards as e turns (Toussaint's rotating calipers): O(h) for all edges.
    Edges shorter than ``slack`` (two projected vertices that differ by rounding) are skipped: their
    direction is noise, and the minimum rectangle has a side on a proper edge.
    """
    hull = _convex_hull_2d(x, y)
    h = hull.size
    if h < 3:  # collinear (up to rounding): a segment
        return np.sqrt(_ptp(x) ** 2 + _ptp(y) ** 2), 0.0
    hx, hy = x[hull], y[hull]
    best_area, best_w, best_h = np.inf, 0.0, 0.0
    slack = 1e-9 * (_ptp(hx) + _ptp(hy))
    right = far = left = -1
    for e in range(h):
        f = e + 1 if e + 1 < h else 0
        ex, ey = hx[f] - hx[e], hy[f] - hy[e]
        length = np.sqrt(ex * ex + ey * ey)
        if not length > slack:  # two vertices that differ by rounding only: no direction (nor a rectangle)
            continue
        ux, uy = ex / length, ey / length
        vx, vy = -uy, ux
        right = _advance(hx, hy, f if right < 0 else right, ux, uy, 1.0, slack)
        far = _advance(hx, hy, right if far < 0 else far, vx, vy, 1.0, slack)
        left = _advance(hx, hy, far if left < 0 else left, ux, uy, -1.0, slack)
        width = (hx[right] - hx[left]) * ux + (hy[right] - hy[left]) * uy
        height = (hx[far] - hx[e]) * vx + (hy[far] - hy[e]) * vy
        if width * height < best_area:
            best_area, best_w, best_h = width * height, width, height
    return best_w, best_h


@njit(cache=True, nogil=True)
def oriented_minimum_bounding_box(points, facets, normals, selected, best):
    """Side lengths of the smallest of the box ``best`` (the AABB) and the boxes with one face orthogonal to
    the facet normal ``normals[k]``, k in ``selected`` (the other two sides: the minimum-area rectangle of the
    projection of the hull vertices ``points`` along the normal; ``facets`` index them).

    Only silhouette vertices can be vertices of the projection's 2D hull: a vertex whose facets all face
    the normal's way (or all the other way) projects inside the projection of those facets. So the 2D
    hull is taken of the vertices that have a facet with n . n_f >= 0 and one with n . n_f <= 0.
    """
    best = best.copy()
    best_volume = best[0] * best[1] * best[2]
    n_points = points.shape[0]
    x, y, z = points[:, 0].copy(), points[:, 1].copy(), points[:, 2].copy()
    pu, pv = np.empty(n_points), np.empty(n_points)
    front, back = np.empty(n_points, dtype=np.bool_), np.empty(n_points, dtype=np.bool_)
    for k in selected:
        norm = np.sqrt(normals[k, 0] ** 2 + normals[k, 1] ** 2 + normals[k, 2] ** 2)
        n0, n1, n2 = normals[k, 0] / norm, normals[k, 1] / norm, normals[k, 2] / norm
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
        front[:] = False
        back[:] = False
        for f in range(facets.shape[0]):
            facing = n0 * normals[f, 0] + n1 * normals[f, 1] + n2 * normals[f, 2]
            for c in range(facets.shape[1]):
                if facing > -1e-9:
                    front[facets[f, c]] = True
                if facing < 1e-9:
                    back[facets[f, c]] = True
        low, high = np.inf, -np.inf
        m = 0
        for i in range(n_points):
            pn = x[i] * n0 + y[i] * n1 + z[i] * n2
            low, high = min(low, pn), max(high, pn)
            if front[i] and back[i]:
                pu[m] = x[i] * u0 + y[i] * u1 + z[i] * u2
                pv[m] = x[i] * v0 + y[i] * v1 + z[i] * v2
                m += 1
        width, height = min_area_rectangle(pu[:m], pv[:m])
        volume = (high - low) * width * height
        if volume < best_volume:
            best_volume = volume
            best[0], best[1], best[2] = high - low, width, height
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
    """Mask of the points that are the first or last along every axis-parallel line through them.

    ``cells`` (n x 3, int) are the points' positions on a grid of step h / 2 (marching-cubes vertices lie
    on voxel edges): point i is kept when, on each axis a, its coordinate is the smallest or the largest
    among the points that share its other two coordinates. A point strictly between two others on a line
    is not a vertex of their convex hull, so the hull of the kept points is the hull of all of them.
    """
    n = cells.shape[0]
    keep = np.ones(n, dtype=np.bool_)
    size = np.empty(3, dtype=np.int64)
    for a in range(3):
        size[a] = cells[:, a].max() + 1
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        low = np.full((size[b], size[c]), np.iinfo(np.int64).max, dtype=np.int64)
        high = np.full((size[b], size[c]), -1, dtype=np.int64)
        for i in range(n):
            p, q, v = cells[i, b], cells[i, c], cells[i, a]
            if v < low[p, q]:
                low[p, q] = v
            if v > high[p, q]:
                high[p, q] = v
        for i in range(n):
            v = cells[i, a]
            if v != low[cells[i, b], cells[i, c]] and v != high[cells[i, b], cells[i, c]]:
                keep[i] = False
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
    """The weights u of Khachiyan's MVEE iterations with away steps on the lifted points ``q`` (n x (d + 1)).

    A step u <- (1 - s) u + s e_j changes X = Q U Q^T by a rank-one term, so X^-1 and every m_i follow from
    Sherman-Morrison in O(n d) instead of a new inverse: with v = X^-1 q_j and c = 1 - s + s m_j,
    X'^-1 = (X^-1 - s v v^T / c) / (1 - s) and m_i' = (m_i - s (q_i . v)^2 / c) / (1 - s).
    X^-1 and m are recomputed from scratch every ``refresh`` steps and before stopping (no drift).
    """
    n, d1 = q.shape
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
        for i in range(n):
            dot = 0.0
            for a in range(d1):
                dot += q[i, a] * v[a]
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
