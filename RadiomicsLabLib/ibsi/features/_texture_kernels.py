"""Compiled loops of the texture families (numba, cached on disk)."""

import numpy as np
from numba import njit


@njit(cache=True)
def runs(index, dz, dy, dx):
    """Every run of equal grey level index along (dz, dy, dx) in ``index`` (-1 outside the ROI):
    (slice z of its first voxel, grey level index, length), in C order of the first voxels.

    A voxel starts a run when the voxel before it along the direction is outside the grid, outside the
    ROI or of another grey level; the run goes on while the next voxel has the same grey level.
    """
    nz, ny, nx = index.shape
    n = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if index[z, y, x] >= 0:
                    n += 1
    out_z = np.empty(n, dtype=np.int64)
    out_level = np.empty(n, dtype=np.int64)
    out_length = np.empty(n, dtype=np.int64)
    k = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                level = index[z, y, x]
                if level < 0:
                    continue
                pz, py, px = z - dz, y - dy, x - dx
                if 0 <= pz < nz and 0 <= py < ny and 0 <= px < nx and index[pz, py, px] == level:
                    continue
                length = 1
                qz, qy, qx = z + dz, y + dy, x + dx
                while 0 <= qz < nz and 0 <= qy < ny and 0 <= qx < nx and index[qz, qy, qx] == level:
                    length += 1
                    qz += dz
                    qy += dy
                    qx += dx
                out_z[k] = z
                out_level[k] = level
                out_length[k] = length
                k += 1
    return out_z[:k], out_level[:k], out_length[:k]


@njit(cache=True)
def zone_labels(levels, in_plane):
    """Connected zones of equal grey level of ``levels`` (0 = outside): 8-connected within a slice when
    ``in_plane``, else 26-connected. Returns (zone label per voxel, -1 outside; number of zones); zones are
    numbered 0, 1, ... in the order of their first voxel in C order (flood fill from it)."""
    nz, ny, nx = levels.shape
    label = np.full(levels.shape, -1, dtype=np.int64)
    stack = np.empty(levels.size, dtype=np.int64)
    reach = 0 if in_plane else 1
    n_zones = 0
    plane = ny * nx
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                grey = levels[z, y, x]
                if grey <= 0 or label[z, y, x] >= 0:
                    continue
                label[z, y, x] = n_zones
                stack[0] = (z * ny + y) * nx + x
                top = 1
                while top > 0:
                    top -= 1
                    flat = stack[top]
                    cz, rest = flat // plane, flat % plane
                    cy, cx = rest // nx, rest % nx
                    for dz in range(-reach, reach + 1):
                        qz = cz + dz
                        if qz < 0 or qz >= nz:
                            continue
                        for dy in range(-1, 2):
                            qy = cy + dy
                            if qy < 0 or qy >= ny:
                                continue
                            for dx in range(-1, 2):
                                qx = cx + dx
                                if qx < 0 or qx >= nx:
                                    continue
                                if levels[qz, qy, qx] == grey and label[qz, qy, qx] < 0:
                                    label[qz, qy, qx] = n_zones
                                    stack[top] = (qz * ny + qy) * nx + qx
                                    top += 1
                n_zones += 1
    return label, n_zones


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

