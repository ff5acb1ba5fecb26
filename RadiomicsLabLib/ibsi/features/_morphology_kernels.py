"""Compiled loops of the morphology family: the oriented minimum bounding box and the MVEE iterations.

The same formulas and steps as the numpy versions they replace (see
:func:`~RadiomicsLabLib.ibsi.features.morphology.oriented_minimum_bounding_box` and
:func:`~RadiomicsLabLib.ibsi.features.morphology.minimum_volume_enclosing_ellipsoid`), written as numba
loops so that the hundreds of small steps (one 2D hull per hull face normal, one 4 x 4 solve per
Khachiyan iteration) do not each pay numpy's call overhead. Sums may differ from the numpy ones in
their last bits (another summation order).
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _cross(ax, ay, bx, by, cx, cy):
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@njit(cache=True)
def _convex_hull_2d(x, y):
    """Indices of the 2D convex hull of (x, y), counterclockwise, without collinear points (monotone chain)."""
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
    k = 0
    for i in range(n):                     # lower hull
        p = order[i]
        while k >= 2 and _cross(x[hull[k - 2]], y[hull[k - 2]], x[hull[k - 1]], y[hull[k - 1]], x[p], y[p]) <= 0.0:
            k -= 1
        hull[k] = p
        k += 1
    lower = k + 1
    for i in range(n - 2, -1, -1):         # upper hull
        p = order[i]
        while k >= lower and _cross(x[hull[k - 2]], y[hull[k - 2]], x[hull[k - 1]], y[hull[k - 1]], x[p], y[p]) <= 0.0:
            k -= 1
        hull[k] = p
        k += 1
    return hull[:max(k - 1, 0)]


@njit(cache=True)
def _ptp(values):
    return values.max() - values.min()


@njit(cache=True)
def min_area_rectangle(x, y):
    """Side lengths (along an edge, across it) of the minimum-area rectangle enclosing (x, y), by rotating
    calipers over the hull edges; the axis-aligned extents when the points are collinear."""
    hull = _convex_hull_2d(x, y)
    h = hull.size
    if h < 3:
        return _ptp(x), _ptp(y)
    hx, hy = x[hull], y[hull]
    best_area, best_w, best_h = np.inf, 0.0, 0.0
    for e in range(h):
        f = e + 1 if e + 1 < h else 0
        ex, ey = hx[f] - hx[e], hy[f] - hy[e]
        length = np.sqrt(ex * ex + ey * ey)
        if not length > 0.0:
            continue
        ux, uy = ex / length, ey / length
        vx, vy = -uy, ux
        umin = vmin = np.inf
        umax = vmax = -np.inf
        for i in range(h):
            pu = hx[i] * ux + hy[i] * uy
            pv = hx[i] * vx + hy[i] * vy
            umin, umax = min(umin, pu), max(umax, pu)
            vmin, vmax = min(vmin, pv), max(vmax, pv)
        width, height = umax - umin, vmax - vmin
        if width * height < best_area:
            best_area, best_w, best_h = width * height, width, height
    return best_w, best_h


@njit(cache=True)
def oriented_minimum_bounding_box(points, normals, best):
    """Side lengths of the smallest of the box ``best`` (the AABB) and the boxes with one face orthogonal to
    one of ``normals`` (the other two sides: the minimum-area rectangle of the projection)."""
    best = best.copy()
    best_volume = best[0] * best[1] * best[2]
    n_points = points.shape[0]
    x, y, z = points[:, 0].copy(), points[:, 1].copy(), points[:, 2].copy()
    pu, pv, pn = np.empty(n_points), np.empty(n_points), np.empty(n_points)
    for k in range(normals.shape[0]):
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
        for i in range(n_points):
            pn[i] = x[i] * n0 + y[i] * n1 + z[i] * n2
            pu[i] = x[i] * u0 + y[i] * u1 + z[i] * u2
            pv[i] = x[i] * v0 + y[i] * v1 + z[i] * v2
        depth = _ptp(pn)
        width, height = min_area_rectangle(pu, pv)
        volume = depth * width * height
        if volume < best_volume:
            best_volume = volume
            best[0], best[1], best[2] = depth, width, height
    return best


@njit(cache=True)
def khachiyan_weights(q, tolerance, max_iterations):
    """The weights u of Khachiyan's MVEE iterations with away steps on the lifted points ``q`` (n x (d + 1))."""
    n, d1 = q.shape
    u = np.full(n, 1.0 / n)
    target = float(d1)
    x = np.empty((d1, d1))
    m = np.empty(n)
    for _ in range(max_iterations):
        x[:, :] = 0.0
        for i in range(n):
            for a in range(d1):
                qa = q[i, a] * u[i]
                for b in range(d1):
                    x[a, b] += qa * q[i, b]
        inverse = np.linalg.inv(x)
        up, down = 0, -1
        for i in range(n):
            total = 0.0
            for a in range(d1):
                row = 0.0
                for b in range(d1):
                    row += inverse[a, b] * q[i, b]
                total += q[i, a] * row
            m[i] = total
            if m[i] > m[up]:
                up = i
            if u[i] > 0 and (down < 0 or m[i] < m[down]):
                down = i
        grow, shrink = m[up] / target - 1.0, 1.0 - m[down] / target
        if max(grow, shrink) <= tolerance:
            break
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
    return u


@njit(cache=True)
def real_weighted_inner(weights, x, y):
    """sum_k weights_k Re(conj(x_k) y_k) over spectra ``x``, ``y`` (complex, flat) with real ``weights``,
    accumulated in four interleaved partial sums (like a vectorised dot product)."""
    s0 = s1 = s2 = s3 = 0.0
    n = weights.size
    m = n - n % 4
    for k in range(0, m, 4):
        s0 += weights[k] * (x[k].real * y[k].real + x[k].imag * y[k].imag)
        s1 += weights[k + 1] * (x[k + 1].real * y[k + 1].real + x[k + 1].imag * y[k + 1].imag)
        s2 += weights[k + 2] * (x[k + 2].real * y[k + 2].real + x[k + 2].imag * y[k + 2].imag)
        s3 += weights[k + 3] * (x[k + 3].real * y[k + 3].real + x[k + 3].imag * y[k + 3].imag)
    for k in range(m, n):
        s0 += weights[k] * (x[k].real * y[k].real + x[k].imag * y[k].imag)
    return (s0 + s1) + (s2 + s3)
