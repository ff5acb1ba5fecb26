"""Compiled loops of the texture families (numba, cached on disk)."""

import numpy as np
from numba import njit


@njit(cache=True)
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


@njit(cache=True)
def _run_buffers(index):
    """Three int64 buffers with room for one run per ROI voxel (index >= 0)."""
    n = 0
    for level in index.ravel():
        if level >= 0:
            n += 1
    return np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)


@njit(cache=True)
def runs(index, dz, dy, dx):
    """Every run of equal grey level index along (dz, dy, dx) in ``index`` (-1 outside the ROI):
    (slice z of its first voxel, grey level index, length), line by line (:func:`_direction_runs`)."""
    out_z, out_level, out_length = _run_buffers(index)
    k = _direction_runs(index, dz, dy, dx, out_z, out_level, out_length)
    return out_z[:k], out_level[:k], out_length[:k]


@njit(cache=True)
def run_length_counts(index, offsets, n):
    """Run length matrices (len(offsets), n, L + 1) of ``index`` (grey level index 0..n-1, -1 outside), L the
    longest side of the grid: [o, level, length] counts the runs along ``offsets[o]`` (:func:`_direction_runs`)."""
    nz, ny, nx = index.shape
    counts = np.zeros((offsets.shape[0], n, max(nz, ny, nx) + 1), dtype=np.int64)
    out_z, out_level, out_length = _run_buffers(index)
    for o in range(offsets.shape[0]):
        k = _direction_runs(index, offsets[o, 0], offsets[o, 1], offsets[o, 2], out_z, out_level, out_length)
        for r in range(k):
            counts[o, out_level[r], out_length[r]] += 1
    return counts


@njit(cache=True)
def _root(parent, v):
    """The root of ``v``'s tree in the union-find forest ``parent`` (path halving on the way)."""
    while parent[v] != v:
        parent[v] = parent[parent[v]]
        v = parent[v]
    return v


@njit(cache=True)
def zone_labels(levels, in_plane):
    """Connected zones of equal grey level of ``levels`` (0 = outside): 8-connected within a slice when
    ``in_plane``, else 26-connected. Returns (zone label per voxel, -1 outside; number of zones); zones are
    numbered 0, 1, ... in the order of their first voxel in C order.

    Union-find over the voxels in C order: each voxel is joined to its equal neighbours that come before it
    (4 in-plane, 13 in 3D), a tree's root always being its first voxel; the zones are then numbered at
    their roots in C order.
    """
    nz, ny, nx = levels.shape
    flat_levels = levels.ravel()
    parent = np.arange(levels.size)
    reach = 0 if in_plane else 1
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                v = (z * ny + y) * nx + x
                grey = flat_levels[v]
                if grey <= 0:
                    continue
                for dz in range(-reach, 1):
                    qz = z + dz
                    if qz < 0:
                        continue
                    for dy in range(-1, 2):
                        qy = y + dy
                        if qy < 0 or qy >= ny or (dz == 0 and dy == 1):
                            continue
                        for dx in range(-1, 2):
                            qx = x + dx
                            if qx < 0 or qx >= nx or (dz == 0 and dy == 0 and dx >= 0):
                                continue
                            u = (qz * ny + qy) * nx + qx
                            if flat_levels[u] == grey:
                                ru, rv = _root(parent, u), _root(parent, v)
                                if ru < rv:
                                    parent[rv] = ru
                                elif rv < ru:
                                    parent[ru] = rv
    label = np.full(levels.size, -1, dtype=np.int64)
    n_zones = 0
    for v in range(levels.size):
        if flat_levels[v] <= 0:
            continue
        r = _root(parent, v)
        if r == v:
            label[v] = n_zones
            n_zones += 1
        else:
            label[v] = label[r]
    return label.reshape(levels.shape), n_zones


@njit(cache=True)
def cooccurrence_counts(index, offsets, n):
    """Symmetric co-occurrence counts (len(offsets), n, n) of ``index`` (grey level index 0..n-1, -1 outside):
    every pair (v, v + offset) of ROI voxels inside the grid adds 1 to [offset, a, b] and to [offset, b, a]."""
    nz, ny, nx = index.shape
    counts = np.zeros((offsets.shape[0], n, n), dtype=np.int64)
    for o in range(offsets.shape[0]):
        dz, dy, dx = offsets[o, 0], offsets[o, 1], offsets[o, 2]
        for z in range(max(0, -dz), nz - max(0, dz)):
            for y in range(max(0, -dy), ny - max(0, dy)):
                for x in range(max(0, -dx), nx - max(0, dx)):
                    a = index[z, y, x]
                    if a < 0:
                        continue
                    b = index[z + dz, y + dy, x + dx]
                    if b < 0:
                        continue
                    counts[o, a, b] += 1
                    counts[o, b, a] += 1
    return counts



@njit(cache=True)
def dependence_counts(levels, mask, flat_offsets, coarseness):
    """For every voxel of ``mask`` (C order): its dependent neighbours, the voxels ``v + flat_offsets[k]`` (flat
    indices into ``levels``, 0 outside the ROI) with a grey level > 0 within ``coarseness`` of its own (NGLDM).
    ``levels`` is zero-padded enough that every neighbour of a mask voxel lies in the grid."""
    flat_levels = levels.ravel()
    flat_mask = mask.ravel()
    out = np.empty(np.count_nonzero(flat_mask), dtype=np.int64)
    k = 0
    for v in range(flat_levels.size):
        if not flat_mask[v]:
            continue
        centre = flat_levels[v]
        count = 0
        for offset in flat_offsets:
            neighbour = flat_levels[v + offset]
            count += (neighbour > 0) & (abs(neighbour - centre) <= coarseness)   # no branch: fast on noisy data
        out[k] = count
        k += 1
    return out


@njit(cache=True)
def neighbour_sums(levels, mask, flat_offsets):
    """For every voxel of ``mask`` (C order): (sum of the grey levels of its neighbours ``v + flat_offsets[k]`` that
    lie in ``mask``, their number) (NGTDM). ``mask`` is padded enough that every neighbour lies in the grid."""
    flat_levels = levels.ravel()
    flat_mask = mask.ravel()
    n = np.count_nonzero(flat_mask)
    total = np.empty(n)
    count = np.empty(n, dtype=np.int64)
    k = 0
    for v in range(flat_levels.size):
        if not flat_mask[v]:
            continue
        s = 0
        c = 0
        for offset in flat_offsets:
            if flat_mask[v + offset]:
                s += flat_levels[v + offset]
                c += 1
        total[k] = s
        count[k] = c
        k += 1
    return total, count
