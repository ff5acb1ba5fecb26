"""Compiled (numba) kernels of the voxel-wise feature maps (:mod:`RadiomicsLabLib.featuremaps`).

Every kernel works on a chunk of centre voxels at once: blocks of centres run in parallel on all cores
(:func:`in_parallel`, a thread pool over kernels that release the GIL), and inside a block each centre is
handled without any Python call:

1. its *kernel box*, the cube of radius ``r`` voxels around it (one slice when ``in_plane``), is read
   from ``levels`` (discretised grey levels, 0 outside the region of interest; the arrays are padded by
   ``r`` so a box never leaves them);
2. the grey levels present in the box are numbered locally (``0..nl-1``, ``nl <= (2r + 1)^3``), so
   every per-voxel matrix is at most ``nl`` rows however many grey levels the whole ROI has;
3. the texture matrix of the box is built as a list of its non-zero cells (a dense accumulator
   removes duplicates and is cleared through that list, so its cost is the cells, not the matrix size);
4. the features are evaluated on those cells (``pyradiomics`` definition, and the ``ibsi`` definition's GLCM:
   :func:`ibsi_glcm_maps`), or the cells are written out for the IBSI engine's own formula classes (the ``ibsi``
   definition's other texture families, see :mod:`.featuremaps`).

GLCM of consecutive centres (same row, a few voxels apart along x): instead of steps 1-3, the matrices are kept as
dense counts over the whole ROI's grey levels (at most :data:`SLIDING_MAX_LEVELS`) with a bit per non-zero cell in
its row's occupancy word (:func:`_glcm_move`), and only the pairs of the slab of the box that leaves and of the slab
that enters are removed and added: (2r + 1)^2 voxels per step instead of (2r + 1)^3. The cells are read in row-major
order (:func:`_glcm_gather`), whichever way the kernel reached its matrix, so the maps do not depend on the chunks or
the threads. First-order maps keep the kernel's sorted sample the same way (:func:`_first_order_block`).

Matrices (IBSI 1 sections 3.6-3.11 / pyradiomics): one matrix per direction for the GLCM (symmetric
co-occurrence counts of the pairs ``(v, v + d)``) and the GLRLM (runs of equal grey level along ``d``); one
matrix for the GLSZM (connected zones of equal grey level, 26- or in-plane 8-connected), the GLDZM (zones
by their smallest distance to the edge of the kernel's ROI, 6- or 4-connected steps, the box edge counting
as outside), the NGLDM / GLDM (each voxel's number of neighbours within Chebyshev distance ``delta`` whose
grey level differs by at most ``alpha``) and the NGTDM (per grey level: count ``n_i`` and summed absolute
difference ``s_i`` between a voxel and the mean of its neighbours). Everything is confined to the kernel
box: pairs, runs, zones and neighbourhoods never reach outside it, as in pyradiomics' voxel-based mode.

The arrays are indexed (z, y, x). Column values of a cell: GLCM - the local index of the second grey
level; GLRLM - run length; GLSZM - zone size; GLDZM - zone distance; NGLDM - dependence count + 1.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from .jit import njit

#: Matrix kinds of :func:`_matrix_cells` (one builder per texture family).
GLCM, GLRLM, GLSZM, GLDZM, NGLDM = 0, 1, 2, 3, 4
_EPS = np.finfo(np.float64).eps   # pyradiomics' epsilon (numpy.spacing(1)) inside its logarithms


def in_parallel(block, bounds, *args):
    """Run ``block(first, last, *args)`` for every block of centres ``bounds[b]..bounds[b + 1]``, on
    ``numba.get_num_threads()`` threads at once (the block kernels release the GIL; each writes its own rows).

    A thread pool over ``nogil`` kernels rather than ``prange``: the same use of every core, without the parfor
    wrappers that doubled the one-time compilation (about 8 s of CPU each).
    """
    ranges = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    workers = min(len(ranges), numba.get_num_threads())
    if workers <= 1:
        for first, last in ranges:
            block(first, last, *args)
        return
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(block, first, last, *args) for first, last in ranges]:
            future.result()


# --------------------------------------------------------------------------------------------
# Kernel box and local grey levels
# --------------------------------------------------------------------------------------------

@njit(cache=True)
def _read_box(levels, cz, cy, cx, r, in_plane, box):
    """Copy the kernel box of centre (cz, cy, cx) from the padded ``levels`` into ``box`` (flat, (z, y, x) order).

    Returns (bz, by, bx), the box shape: (1, 2r+1, 2r+1) when ``in_plane``, else (2r+1)^3.
    """
    w = 2 * r + 1
    bz = 1 if in_plane else w
    z0 = cz if in_plane else cz - r
    k = 0
    for z in range(bz):
        for y in range(w):
            for x in range(w):
                box[k] = levels[z0 + z, cy - r + y, cx - r + x]
                k += 1
    return bz, w, w


@njit(cache=True)
def _local_levels(box, nk, local, grey):
    """Number the grey levels present in ``box`` (0 = outside the ROI): ``local[k]`` = index 0..nl-1 of voxel k's
    level in the sorted list ``grey[:nl]`` (-1 outside). Returns nl."""
    nl = 0
    for k in range(nk):
        g = box[k]
        if g > 0:
            # insertion into the sorted list of distinct levels (nl is small: at most the box size)
            pos = nl
            found = False
            for t in range(nl):
                if grey[t] == g:
                    found = True
                    break
                if grey[t] > g:
                    pos = t
                    break
            if not found:
                for t in range(nl, pos, -1):
                    grey[t] = grey[t - 1]
                grey[pos] = g
                nl += 1
    for k in range(nk):
        g = box[k]
        if g > 0:
            lo, hi = 0, nl - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if grey[mid] < g:
                    lo = mid + 1
                else:
                    hi = mid
            local[k] = lo
        else:
            local[k] = -1
    return nl


@njit(cache=True)
def _coords(k, by, bx):
    """(z, y, x) of flat index k in a box of rows of ``bx`` voxels and slices of ``by`` rows."""
    z, rest = divmod(k, by * bx)
    y, x = divmod(rest, bx)
    return z, y, x


@njit(cache=True)
def _inside(z, y, x, bz, by, bx):
    return 0 <= z < bz and 0 <= y < by and 0 <= x < bx


@njit(cache=True)
def _box_scratch(radius, in_plane):
    """(nk, box, local, grey_int, grey): the voxel count of a kernel box and the arrays :func:`_centre` fills."""
    w = 2 * radius + 1
    nk = w * w * (1 if in_plane else w)
    return (nk, np.empty(nk, dtype=np.int64), np.empty(nk, dtype=np.int64), np.empty(nk, dtype=np.int64),
            np.empty(nk))


@njit(cache=True)
def _centre(levels, centres, v, radius, in_plane, box, local, grey_int, grey):
    """Read centre v's kernel box and number its grey levels: (bz, by, bx, nl); ``grey[:nl]`` the levels as floats."""
    bz, by, bx = _read_box(levels, centres[v, 0], centres[v, 1], centres[v, 2], radius, in_plane, box)
    nl = _local_levels(box, box.size, local, grey_int)
    for t in range(nl):
        grey[t] = grey_int[t]
    return bz, by, bx, nl


@njit(cache=True)
def _cell_scratch(n_matrices, nk):
    """(ncol, acc, cm, ci, cj, cc, zone, stack, distance): what :func:`_matrix_cells` writes into for one box (the
    accumulator holds one matrix: nk grey levels x nk + 2 columns)."""
    ncol = nk + 2
    size = n_matrices * 2 * nk
    return (ncol, np.zeros(nk * ncol), np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64),
            np.empty(size, dtype=np.int64), np.empty(size), np.empty(nk, dtype=np.int64), np.empty(nk, dtype=np.int64),
            np.zeros(nk, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# Matrix builders: every non-zero cell (matrix a, row i, column j, count) of one kernel box
# --------------------------------------------------------------------------------------------

@njit(cache=True)
def _add(acc, a, i, j, ncol, value, cm, ci, cj, cc, nc):
    """Add ``value`` to cell (i, j) of the dense accumulator of one matrix; a new cell is appended to the cell list
    as belonging to matrix ``a``."""
    key = i * ncol + j
    if acc[key] == 0.0:
        acc[key] = value
        cm[nc] = a
        ci[nc] = i
        cj[nc] = j
        cc[nc] = 0.0
        return nc + 1
    acc[key] += value
    return nc


@njit(cache=True)
def _flush(acc, ci, cj, cc, first, nc, ncol):
    """Read the counts of cells first..nc-1 out of the accumulator and clear it (only the touched cells), so one
    accumulator of one matrix's size serves every matrix in turn."""
    for c in range(first, nc):
        key = ci[c] * ncol + cj[c]
        cc[c] = acc[key]
        acc[key] = 0.0


@njit(cache=True)
def _glcm_cells(local, bz, by, bx, offsets, acc, ncol, cm, ci, cj, cc):
    """Symmetric co-occurrence counts, one matrix per offset: each pair (v, v + d) of ROI voxels in the box adds
    one to (g(v), g(v + d)) and one to (g(v + d), g(v))."""
    nc = 0
    for a in range(offsets.shape[0]):
        dz, dy, dx = offsets[a, 0], offsets[a, 1], offsets[a, 2]
        start = nc
        for k in range(bz * by * bx):
            i = local[k]
            z, y, x = _coords(k, by, bx)
            if i < 0 or not _inside(z + dz, y + dy, x + dx, bz, by, bx):
                continue
            j = local[((z + dz) * by + y + dy) * bx + x + dx]
            if j >= 0:
                nc = _add(acc, a, i, j, ncol, 1.0, cm, ci, cj, cc, nc)
                nc = _add(acc, a, j, i, ncol, 1.0, cm, ci, cj, cc, nc)
        _flush(acc, ci, cj, cc, start, nc, ncol)
    return nc


@njit(cache=True)
def _glrlm_cells(local, bz, by, bx, offsets, drop_flat, acc, ncol, cm, ci, cj, cc):
    """Run lengths, one matrix per direction: a run starts at a ROI voxel whose predecessor (v - d) is outside the
    box, outside the ROI or of another grey level, and continues while the grey level stays the same.

    ``drop_flat`` (pyradiomics): a direction along which no line through the box holds two ROI voxels is left
    out (its matrix emptied), as pyradiomics' ``calculate_glrlm`` does ("segmentation is 2D for this angle").
    """
    nc = 0
    for a in range(offsets.shape[0]):
        dz, dy, dx = offsets[a, 0], offsets[a, 1], offsets[a, 2]
        start = nc
        multi = False
        for k in range(bz * by * bx):
            i = local[k]
            if i < 0:
                continue
            z, y, x = _coords(k, by, bx)
            if drop_flat and not multi:
                zz, yy, xx = z + dz, y + dy, x + dx
                while _inside(zz, yy, xx, bz, by, bx):
                    if local[(zz * by + yy) * bx + xx] >= 0:
                        multi = True
                        break
                    zz, yy, xx = zz + dz, yy + dy, xx + dx
            if _inside(z - dz, y - dy, x - dx, bz, by, bx) and local[((z - dz) * by + y - dy) * bx + x - dx] == i:
                continue
            length = 1
            zz, yy, xx = z + dz, y + dy, x + dx
            while _inside(zz, yy, xx, bz, by, bx) and local[(zz * by + yy) * bx + xx] == i:
                length += 1
                zz, yy, xx = zz + dz, yy + dy, xx + dx
            nc = _add(acc, a, i, length, ncol, 1.0, cm, ci, cj, cc, nc)
        _flush(acc, ci, cj, cc, start, nc, ncol)
        if drop_flat and not multi:
            nc = start
    return nc


@njit(cache=True)
def _zone_cells(local, roi, bz, by, bx, neighbours, steps, by_distance, acc, ncol, cm, ci, cj, cc, zone, stack,
                distance):
    """Zones of equal grey level (flood fill over ``neighbours``), counted by size (GLSZM) or, with
    ``by_distance``, by their smallest distance to the edge of ``roi`` (GLDZM): the fewest ``steps`` (6- or
    4-connected) to a voxel outside ``roi`` or outside the box, 1 on the edge."""
    nk = bz * by * bx
    if by_distance:
        # multi-source breadth-first search from the ROI edge
        head, tail = 0, 0
        for k in range(nk):
            distance[k] = 0
            if not roi[k]:
                continue
            z, y, x = _coords(k, by, bx)
            for s in range(steps.shape[0]):
                zz, yy, xx = z + steps[s, 0], y + steps[s, 1], x + steps[s, 2]
                if not _inside(zz, yy, xx, bz, by, bx) or not roi[(zz * by + yy) * bx + xx]:
                    distance[k] = 1
                    stack[tail] = k
                    tail += 1
                    break
        while head < tail:
            k = stack[head]
            head += 1
            z, y, x = _coords(k, by, bx)
            for s in range(steps.shape[0]):
                zz, yy, xx = z + steps[s, 0], y + steps[s, 1], x + steps[s, 2]
                if _inside(zz, yy, xx, bz, by, bx):
                    q = (zz * by + yy) * bx + xx
                    if roi[q] and distance[q] == 0:
                        distance[q] = distance[k] + 1
                        stack[tail] = q
                        tail += 1
    for k in range(nk):
        zone[k] = 0
    nc = 0
    for start in range(nk):
        i = local[start]
        if i < 0 or zone[start]:
            continue
        zone[start] = 1
        stack[0] = start
        top, size = 1, 0
        nearest = distance[start] if by_distance else 0
        while top > 0:
            top -= 1
            k = stack[top]
            size += 1
            if by_distance and distance[k] < nearest:
                nearest = distance[k]
            z, y, x = _coords(k, by, bx)
            for s in range(neighbours.shape[0]):
                zz, yy, xx = z + neighbours[s, 0], y + neighbours[s, 1], x + neighbours[s, 2]
                if _inside(zz, yy, xx, bz, by, bx):
                    q = (zz * by + yy) * bx + xx
                    if local[q] == i and not zone[q]:
                        zone[q] = 1
                        stack[top] = q
                        top += 1
        nc = _add(acc, 0, i, nearest if by_distance else size, ncol, 1.0, cm, ci, cj, cc, nc)
    _flush(acc, ci, cj, cc, 0, nc, ncol)
    return nc


@njit(cache=True)
def _dependence_cells(local, grey, bz, by, bx, neighbours, alpha, acc, ncol, cm, ci, cj, cc):
    """NGLDM / GLDM: each ROI voxel of the box counted at (its grey level, 1 + the number of its ROI neighbours in
    the box whose grey level differs from its own by at most ``alpha``)."""
    nc = 0
    for k in range(bz * by * bx):
        i = local[k]
        if i < 0:
            continue
        z, y, x = _coords(k, by, bx)
        dependent = 0
        for s in range(neighbours.shape[0]):
            zz, yy, xx = z + neighbours[s, 0], y + neighbours[s, 1], x + neighbours[s, 2]
            if _inside(zz, yy, xx, bz, by, bx):
                j = local[(zz * by + yy) * bx + xx]
                if j >= 0 and abs(grey[j] - grey[i]) <= alpha:
                    dependent += 1
        nc = _add(acc, 0, i, dependent + 1, ncol, 1.0, cm, ci, cj, cc, nc)
    _flush(acc, ci, cj, cc, 0, nc, ncol)
    return nc


@njit(cache=True)
def _matrix_cells(kind, local, roi, grey, bz, by, bx, offsets, neighbours, steps, alpha, pyradiomics, acc, ncol,
                  cm, ci, cj, cc, zone, stack, distance):
    """The non-zero cells of the ``kind`` matrix (GLCM, GLRLM, GLSZM, GLDZM, NGLDM) of one kernel box
    (``pyradiomics``: its GLRLM leaves out directions without any line of two ROI voxels)."""
    if kind == GLCM:
        return _glcm_cells(local, bz, by, bx, offsets, acc, ncol, cm, ci, cj, cc)
    if kind == GLRLM:
        return _glrlm_cells(local, bz, by, bx, offsets, pyradiomics, acc, ncol, cm, ci, cj, cc)
    if kind == NGLDM:
        return _dependence_cells(local, grey, bz, by, bx, neighbours, alpha, acc, ncol, cm, ci, cj, cc)
    return _zone_cells(local, roi, bz, by, bx, neighbours, steps, kind == GLDZM, acc, ncol, cm, ci, cj, cc, zone,
                       stack, distance)


@njit(cache=True)
def _ngtdm(local, grey, bz, by, bx, neighbours, keep_isolated, n, s):
    """NGTDM of one box: per local grey level i, ``n[i]`` voxels and ``s[i] = sum |g - A|``, A the mean grey level of
    the voxel's ROI neighbours in the box. Voxels without a neighbour: left out (IBSI), or counted with
    ``|g - A| = 0`` when ``keep_isolated`` (pyradiomics)."""
    for k in range(bz * by * bx):
        i = local[k]
        if i < 0:
            continue
        z, y, x = _coords(k, by, bx)
        count, total = 0.0, 0.0
        for t in range(neighbours.shape[0]):
            zz, yy, xx = z + neighbours[t, 0], y + neighbours[t, 1], x + neighbours[t, 2]
            if _inside(zz, yy, xx, bz, by, bx) and local[(zz * by + yy) * bx + xx] >= 0:
                count += 1.0
                total += grey[local[(zz * by + yy) * bx + xx]]
        if count > 0.0 or keep_isolated:
            n[i] += 1.0
        if count > 0.0:
            s[i] += abs(grey[i] - total / count)


# --------------------------------------------------------------------------------------------
# Scratch space of one block of centres
# --------------------------------------------------------------------------------------------

def scratch_bytes(radius: int, in_plane: bool, n_matrices: int) -> int:
    """Memory one block of centres allocates for its scratch space (bytes): two one-matrix accumulators, two cell
    lists, the MCC matrix and the per-voxel arrays."""
    w = 2 * radius + 1
    nk = w * w * (1 if in_plane else w)
    cells = max(n_matrices, 1) * 2 * nk
    return 8 * (2 * nk * (nk + 2) + 2 * 4 * cells + nk * nk + 32 * nk)


# --------------------------------------------------------------------------------------------
# pyradiomics formulas (voxel-based definitions of pyradiomics 3.1, without its failures)
# --------------------------------------------------------------------------------------------

#: Index of each pyradiomics GLCM feature in the rows :func:`pyradiomics_texture` returns for GLCM.
PY_GLCM = ("Autocorrelation", "JointAverage", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast",
           "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "JointEnergy",
           "JointEntropy", "Imc1", "Imc2", "Idm", "MCC", "Idmn", "Id", "Idn", "InverseVariance",
           "MaximumProbability", "SumAverage", "SumEntropy", "SumSquares")
#: The formulas shared by pyradiomics' GLRLM, GLSZM and GLDM (row grey level i, column j, N = sum of the matrix).
COUNT_FORMULAS = ("small_emphasis", "large_emphasis", "grey_nonuniformity", "grey_nonuniformity_norm",
                  "column_nonuniformity", "column_nonuniformity_norm", "percentage", "grey_variance",
                  "column_variance", "entropy", "low_grey_emphasis", "high_grey_emphasis", "small_low_grey_emphasis",
                  "small_high_grey_emphasis", "large_low_grey_emphasis", "large_high_grey_emphasis")
#: NGTDM features (pyradiomics and IBSI order).
NGTDM_FEATURES = ("coarseness", "contrast", "busyness", "complexity", "strength")


@njit(cache=True)
def _cell_total(cc, c0, c1):
    """Sum of the counts of cells c0..c1-1 (one matrix)."""
    total = 0.0
    for c in range(c0, c1):
        total += cc[c]
    return total


@njit(cache=True)
def _log2_count(table, n):
    """log2 n of a count n >= 1: ``table[n]`` (log2 of 0, 1, 2, ...) when the table reaches n, else computed."""
    k = int(n)
    return table[k] if k < table.shape[0] else math.log2(n)


@njit(cache=True)
def _add_difference_and_sum(gi, gj, count, pdiff, psum, touched_d, touched_s, nd, ns):
    """Add a cell's ``count`` to the |i - j| and i + j histograms ``pdiff`` / ``psum`` (grey levels ``gi``, ``gj``),
    listing each bin the first time it is used (``touched_d[:nd]`` / ``touched_s[:ns]``, each with room for one entry
    more than its bins); returns the new (nd, ns). Branch-free: the list's next entry is always written, and kept only
    for a new bin (a branch on it was mispredicted about every other cell)."""
    k = int(abs(gi - gj))
    touched_d[nd] = k
    nd += pdiff[k] == 0.0
    pdiff[k] += count
    k = int(gi + gj)
    touched_s[ns] = k
    ns += psum[k] == 0.0
    psum[k] += count
    return nd, ns


@njit(cache=True)
def _add_defined(row, sums, counts, n):
    """Add each defined (not NaN) value of one direction's ``row`` to ``sums``, counting it in ``counts``."""
    for f in range(n):
        if not np.isnan(row[f]):
            sums[f] += row[f]
            counts[f] += 1.0


@njit(cache=True)
def _write_average(out, v, sums, counts, n):
    """``out[v]``: each feature averaged over the directions where it is defined (left as it is where none is)."""
    for f in range(n):
        if counts[f] > 0.0:
            out[v, f] = sums[f] / counts[f]


@njit(cache=True)
def _difference_features(pdiff, touched, n, total, log_total, Ng, log2_count, kappa):
    """The features of the |i - j| histogram p_{x-y}(k) = pdiff(k) / total over its listed bins: (average sum k p,
    entropy -sum p (log2 p + kappa') (``kappa``: pyradiomics' eps term, 0 for IBSI), contrast sum k^2 p, inverse
    difference sum p / (1 + k), normalised sum p / (1 + k / Ng), moment sum p / (1 + k^2), normalised moment
    sum p / (1 + k^2 / Ng^2), inverse variance sum_{k >= 1} p / k^2)."""
    dav = dent = contrast = idf = idn = idm = idmn = ivar = 0.0
    ng2 = Ng * Ng
    for t in range(n):
        k = touched[t]
        p = pdiff[k] / total
        dav += k * p
        dent -= p * (_log2_count(log2_count, pdiff[k]) - log_total) + kappa
        contrast += k * k * p
        idf += p / (1.0 + k)
        idn += p / (1.0 + k / Ng)
        idm += p / (1.0 + k * k)
        idmn += p / (1.0 + (k * k) / ng2)
        if k > 0:
            ivar += p / (k * k)
    return dav, dent, contrast, idf, idn, idm, idmn, ivar


@njit(cache=True)
def _sum_features(psum, touched, n, total, log_total, log2_count, kappa):
    """(average sum k p, entropy) of the i + j histogram p_{x+y}(k) = psum(k) / total over its listed bins."""
    sav = sent = 0.0
    for t in range(n):
        k = touched[t]
        p = psum[k] / total
        sav += k * p
        sent -= p * (_log2_count(log2_count, psum[k]) - log_total) + kappa
    return sav, sent


@njit(cache=True)
def _variance_and_clear(histogram, touched, n, total, mean):
    """sum_k (k - mean)^2 histogram(k) / total over the listed bins ``touched[:n]``, which are set back to 0."""
    variance = 0.0
    for t in range(n):
        k = touched[t]
        variance += (k - mean) ** 2 * (histogram[k] / total)
        histogram[k] = 0.0
    return variance


@njit(cache=True)
def _glcm_angle(ci, cj, cc, c0, c1, grey, nl, Ng, n_roi_levels, want_mcc, log2_count, px, lpx, prob, pdiff, psum,
                touched_d, touched_s, b, rows, tri_d, tri_e, out):
    """pyradiomics' 24 GLCM features of one direction's matrix (cells c0..c1, counts already symmetric) into ``out``.

    With p_ij = P_ij / sum P, p_x / p_y the marginals, mu_x = sum p_ij i, p_{x-y}(k) / p_{x+y}(k) the sums over
    |i - j| = k / i + j = k, HX / HY / HXY the entropies of p_x / p_y / p with log2(. + eps) (pyradiomics' glcm.py):
    Autocorrelation sum p i j; JointAverage mu_x; Cluster{Prominence,Shade,Tendency} sum p (i + j - mu_x - mu_y)^{4,3,2};
    Contrast sum p (i - j)^2; Correlation sum p (i - mu_x)(j - mu_y) / (sigma_x sigma_y + eps), 1 when sigma_x sigma_y = 0;
    DifferenceAverage sum k p_{x-y}; DifferenceEntropy; DifferenceVariance sum (k - DA)^2 p_{x-y}; JointEnergy sum p^2;
    JointEntropy HXY; Imc1 (HXY - HXY1) / max(HX, HY), 0 when the max is 0; Imc2 sqrt(1 - exp(-2 (HXY2 - HXY))), 0 when
    HXY2 = HXY, HXY1 = -sum p_ij log2(p_x(i) p_y(j) + eps), HXY2 = -sum p_x(i) p_y(j) log2(p_x(i) p_y(j) + eps); Idm
    sum p_{x-y} / (1 + k^2); MCC sqrt(second largest eigenvalue of Q_ij = sum_k p_ik p_jk / (p_x(i) p_y(k))) (1 when the
    ROI has one grey level); Idmn / (1 + k^2 / Ng^2); Id / (1 + k); Idn / (1 + k / Ng); InverseVariance
    sum_{k >= 1} p_{x-y} / k^2; MaximumProbability max p; SumAverage sum k p_{x+y}; SumEntropy; SumSquares sum p (i - mu_x)^2.

    Every probability here is a count n over the matrix total N, so log2(n / N + eps) is evaluated as
    log2 n - log2 N + eps N / (n ln 2) with log2 n from the table ``log2_count``: exact to double precision, and no
    logarithm per cell. The counts are symmetric, so the column sums are the row sums ``px`` (integers: exactly) and
    HY = HX; ``prob`` keeps p_ij of each cell for the second pass. Returns False for a matrix without pairs (its
    direction is left out of the average).
    """
    total = _cell_total(cc, c0, c1)
    if total == 0.0:
        return False
    log_total = math.log2(total)
    kappa = _EPS / math.log(2.0)          # p log2(p + eps) = p log2 p + kappa, to double precision
    px[:nl] = 0.0                         # row sums of the counts (= column sums)
    ux = uy = auto = contrast = energy = hxy = maxp = 0.0
    nd = ns = 0
    for c in range(c0, c1):
        count = cc[c]
        p = count / total
        prob[c] = p
        gi, gj = grey[ci[c]], grey[cj[c]]
        px[ci[c]] += count
        ux += p * gi
        uy += p * gj
        auto += p * gi * gj
        contrast += p * (gi - gj) ** 2
        energy += p * p
        hxy -= p * (log2_count[int(count)] - log_total) + kappa
        maxp = max(maxp, p)
        nd, ns = _add_difference_and_sum(gi, gj, count, pdiff, psum, touched_d, touched_s, nd, ns)
    sx = 0.0
    mx = 0
    for a in range(nl):
        lpx[a] = 0.0
        if px[a] > 0.0:
            lpx[a] = log2_count[int(px[a])] - log_total
            sx += px[a] / total * lpx[a]
            mx += 1
    hx = -sx - mx * kappa                 # = HY
    hxy2 = -(sx + sx) - mx * mx * kappa
    prom = shade = tend = varx = vary = corm = hxy1 = 0.0
    for c in range(c0, c1):
        p = prob[c]
        gi, gj = grey[ci[c]], grey[cj[c]]
        d = gi + gj - ux - uy
        tend += p * d * d
        shade += p * d * d * d
        prom += p * d * d * d * d
        varx += p * (gi - ux) ** 2
        vary += p * (gj - uy) ** 2
        corm += p * (gi - ux) * (gj - uy)
        hxy1 -= p * (lpx[ci[c]] + lpx[cj[c]]) + p * kappa * total * total / (px[ci[c]] * px[cj[c]])
    dav, dent, _, idd, idn, idm, idmn, invvar = _difference_features(pdiff, touched_d, nd, total, log_total, Ng,
                                                                      log2_count, kappa)
    dvar = _variance_and_clear(pdiff, touched_d, nd, total, dav)
    sav, sent = _sum_features(psum, touched_s, ns, total, log_total, log2_count, kappa)
    _variance_and_clear(psum, touched_s, ns, total, sav)
    sigma = math.sqrt(varx) * math.sqrt(vary)
    div = hx
    mutual = hxy2 - hxy
    if mutual == 0.0:
        imc2 = 0.0
    else:
        arg = 1.0 - math.exp(-2.0 * mutual)
        imc2 = math.sqrt(arg) if arg >= 0.0 else np.nan
    mcc = _mcc(ci, cj, cc, c0, c1, total, px, nl, n_roi_levels, b, rows, tri_d, tri_e) if want_mcc else np.nan
    values = (auto, ux, prom, shade, tend, contrast, 1.0 if sigma == 0.0 else corm / (sigma + _EPS), dav, dent, dvar,
              energy, hxy, (hxy - hxy1) / div if div != 0.0 else 0.0, imc2, idm, mcc, idmn, idd, idn, invvar, maxp,
              sav, sent, varx)   # in PY_GLCM order
    for f in range(len(values)):
        out[f] = values[f]
    return True


@njit(cache=True)
def _spectral_radius(a, m, d, e, bound=np.inf):
    """max |eigenvalue| of the symmetric ``a[:m, :m]`` (overwritten), whose eigenvalues lie within +-``bound``:
    Householder reduction to tridiagonal form (Golub & Van Loan, section 8.3.1), then Laguerre's iteration for the
    extreme eigenvalues (:func:`_laguerre_spectral_radius`; 1.4x (4 x 4) to 2.2x (11 x 11) faster than QL), or
    the implicit QL algorithm (:func:`_tridiagonal_spectral_radius`) where that does not settle."""
    for k in range(m - 2):
        norm = 0.0
        for i in range(k + 1, m):
            norm += a[i, k] * a[i, k]
        norm = math.sqrt(norm)
        if norm == 0.0:
            e[k] = 0.0
            d[k] = a[k, k]
            continue
        alpha = -norm if a[k + 1, k] > 0.0 else norm
        # v = x - alpha e_1 (stored in column k below the diagonal), H = I - beta v v^T
        a[k + 1, k] -= alpha
        vv = 0.0
        for i in range(k + 1, m):
            vv += a[i, k] * a[i, k]
        beta = 2.0 / vv
        # p = beta A v,  K = beta v^T p / 2,  q = p - K v,  A <- A - v q^T - q v^T (trailing block)
        kk = 0.0
        for i in range(k + 1, m):
            acc = 0.0
            for j in range(k + 1, m):
                acc += a[i, j] * a[j, k]
            e[i] = beta * acc          # e[i] is free scratch for i > k until set below
            kk += a[i, k] * e[i]
        kk *= beta / 2.0
        for i in range(k + 1, m):
            e[i] -= kk * a[i, k]
        for i in range(k + 1, m):
            for j in range(k + 1, i + 1):
                a[i, j] -= a[i, k] * e[j] + e[i] * a[j, k]
                a[j, i] = a[i, j]
        d[k] = a[k, k]
        e[k] = alpha
    if m >= 2:
        d[m - 2] = a[m - 2, m - 2]
        e[m - 2] = a[m - 1, m - 2]
    d[m - 1] = a[m - 1, m - 1]
    radius = _laguerre_spectral_radius(d, e, m, bound)
    return radius if radius >= 0.0 else _tridiagonal_spectral_radius(d, e, m)


@njit(cache=True)
def _laguerre_spectral_radius(d, e, n, bound=np.inf, steps=40):
    """Spectral radius of the symmetric tridiagonal matrix T with diagonal ``d[:n]`` and off-diagonal ``e[:n-1]``
    (unchanged): its largest eigenvalue by Laguerre's method on the characteristic polynomial from the Gershgorin
    bound above, and its smallest from the bound below where that bound leaves it larger in magnitude. All roots of
    det(T - x I) are real, so Laguerre's iteration from beyond the extreme root moves monotonically to it and
    converges cubically to a simple root (T. Y. Li and Z. Zeng, SIAM J. Sci. Comput. 15, 1994; det and its two
    derivatives by the three-term recurrence p_k = (d_k - x) p_k-1 - e_k-1^2 p_k-2, rescaled as it goes). The
    bounds are taken no further out than +-``bound`` (every eigenvalue's, where known). Returns -1 where an iteration
    does not settle within ``steps`` steps to 4 eps ||T|| (not seen on 20,000 random, split and nearly diagonal
    matrices): QL then."""
    upper, lower = -np.inf, np.inf
    for i in range(n):
        reach = (abs(e[i]) if i < n - 1 else 0.0) + (abs(e[i - 1]) if i > 0 else 0.0)
        upper = max(upper, d[i] + reach)
        lower = min(lower, d[i] - reach)
    scale = max(abs(upper), abs(lower))
    if scale == 0.0:
        return 0.0
    upper, lower = min(upper, bound), max(lower, -bound)
    top = _laguerre_extreme_root(d, e, n, upper, scale, steps)
    if not top == top:
        return -1.0
    if lower >= -abs(top):
        return abs(top)
    bottom = _laguerre_extreme_root(d, e, n, lower, scale, steps)
    return max(abs(top), abs(bottom)) if bottom == bottom else -1.0


@njit(cache=True)
def _laguerre_extreme_root(d, e, n, x, scale, steps):
    """The root of det(T - x I) (:func:`_laguerre_spectral_radius`) that Laguerre's iteration reaches from ``x``, a
    bound beyond every root; NaN where it does not settle (step below 4 eps ``scale``, or no longer towards it)."""
    toward = 0.0
    for _iteration in range(steps):
        p0, p1, q0, q1, r0, r1 = 1.0, d[0] - x, 0.0, -1.0, 0.0, 0.0     # p, p', p'' of the leading blocks
        for k in range(1, n):
            t, e2 = d[k] - x, e[k - 1] * e[k - 1]
            p0, p1, q0, q1, r0, r1 = p1, t * p1 - e2 * p0, q1, t * q1 - p1 - e2 * q0, r1, t * r1 - 2.0 * q1 - e2 * r0
            size = max(abs(p0), abs(p1))
            if size < 1e-100 or size > 1e100:     # rescaled (the ratios p' / p, p'' / p stay): no under- or overflow
                size = 1.0 / size if size > 0.0 else 1.0
                p0, p1, q0, q1, r0, r1 = p0 * size, p1 * size, q0 * size, q1 * size, r0 * size, r1 * size
        if p1 == 0.0:
            return x
        g = q1 / p1
        h = g * g - r1 / p1
        root = math.sqrt(max((n - 1) * (n * h - g * g), 0.0))
        denominator = g + root if g >= 0.0 else g - root
        if not (denominator != 0.0 and math.isfinite(denominator)):
            return np.nan
        step = n / denominator
        if toward == 0.0:
            toward = step
        if step * toward <= 0.0:    # rounding at the root: it no longer moves the same way
            return x
        x -= step
        if abs(step) <= 4.0 * _EPS * scale:
            return x
    return np.nan


@njit(cache=True)
def _tridiagonal_spectral_radius(d, e, n):
    """Spectral radius of the symmetric tridiagonal matrix with diagonal ``d[:n]`` and off-diagonal
    ``e[:n-1]`` (eigenvalues into ``d``): the implicit QL algorithm with Wilkinson shifts (Numerical Recipes, ``tqli``).
    An off-diagonal entry counts as 0 once |e_m| <= eps ||T||_1 (the backward error of any eigen-solver, LAPACK's
    included), rather than once negligible beside |d_m| + |d_m+1|: eigenvalues near 0 then need no extra sweeps.
    Returns the spectral radius max |d_l| of the eigenvalues found, stopping (``d[l:]`` left unfinished) once the
    Gershgorin bound max_{i >= l} |d_i| + |e_i-1| + |e_i| of the eigenvalues still to find is no larger."""
    e[n - 1] = 0.0
    norm = 0.0
    for i in range(n):
        norm = max(norm, abs(d[i]) + abs(e[i]) + (abs(e[i - 1]) if i > 0 else 0.0))
    tol = _EPS * norm
    radius = 0.0
    for l in range(n):
        bound = 0.0
        for i in range(l, n):
            bound = max(bound, abs(d[i]) + abs(e[i]) + (abs(e[i - 1]) if i > 0 else 0.0))
        if bound <= radius:
            break
        for _iteration in range(60):
            m = l
            while m < n - 1:
                if abs(e[m]) <= tol:
                    break
                m += 1
            if m == l:
                break
            g = (d[l + 1] - d[l]) / (2.0 * e[l])
            r = math.sqrt(g * g + 1.0)
            g = d[m] - d[l] + e[l] / (g + (r if g >= 0.0 else -r))
            s = c = 1.0
            p = 0.0
            i = m - 1
            deflated = False
            while i >= l:
                f = s * e[i]
                b = c * e[i]
                r = math.sqrt(f * f + g * g)   # the entries are probabilities ratios: no overflow
                e[i + 1] = r
                if r == 0.0:
                    d[i + 1] -= p
                    e[m] = 0.0
                    deflated = True
                    break
                inverse = 1.0 / r
                s = f * inverse
                c = g * inverse
                g = d[i + 1] - p
                r = (d[i] - g) * s + 2.0 * c * b
                p = s * r
                d[i + 1] = g + p
                g = c * r - b
                i -= 1
            if deflated:
                continue
            d[l] -= p
            e[l] = g
            e[m] = 0.0
        radius = max(radius, abs(d[l]))
    return radius


@njit(cache=True)
def _mcc(ci, cj, cc, c0, c1, total, px, nl, n_roi_levels, b, rows, d, e):
    """Maximal correlation coefficient: sqrt of the second largest eigenvalue of Q = D_x^-1 P D_y^-1 P^T.

    For the symmetric GLCM, p_x = p_y and Q is similar to B^2 with the symmetric B = D_x^-1/2 P D_x^-1/2, so the
    eigenvalues of Q are the squares of B's. B's largest eigenvalue is 1 with the unit eigenvector u = sqrt(p_x):
    the Householder reflector H = I - w w^T / (1 + u_1), w = u + e_1, maps u to -e_1, so H B H = [[1, 0], [0, K]]
    and the answer is the spectral radius of the (m - 1) x (m - 1) symmetric K (B's other eigenvalues): in closed form
    for m - 1 <= 3 (:func:`_spectral_radius_3x3`), else by :func:`_spectral_radius`. B is
    restricted to the m grey levels present in the matrix: the ROI's other grey levels only add zero eigenvalues to
    pyradiomics' N_g x N_g Q. 1 when the ROI has a single grey level (pyradiomics). ``px``: the row sums of the
    counts, ``total`` their sum; ``d`` holds u, ``e`` 1 / sqrt(n_i.) and then H's p - K w (scratch).
    """
    if n_roi_levels < 2:
        return 1.0
    m = 0
    for a in range(nl):
        if px[a] > 0.0:
            rows[a] = m
            d[m] = math.sqrt(px[a] / total)
            e[m] = 1.0 / math.sqrt(px[a])
            m += 1
        else:
            rows[a] = -1
    if m < 2:
        return 0.0
    for a in range(m):
        for t in range(m):
            b[a, t] = 0.0
    for c in range(c0, c1):   # with counts: B_ij = n_ij / sqrt(n_i. n_j.)
        i, j = rows[ci[c]], rows[cj[c]]
        b[i, j] += cc[c] * (e[i] * e[j])
    # H B H = B - w q^T - q w^T with beta = 1 / (1 + u_1), p = beta B w = beta (u + B e_1) (B u = u),
    # q = p - (beta w^T p / 2) w, w^T p = beta (1 + 2 u_1 + B_11)
    beta = 1.0 / (1.0 + d[0])
    half = 0.5 * beta * beta * (1.0 + 2.0 * d[0] + b[0, 0])
    for i in range(1, m):
        e[i] = beta * (d[i] + b[i, 0]) - half * d[i]          # q_i (w_i = u_i for i >= 1)
    n = m - 1
    for i in range(1, m):   # K = trailing block, moved to b[:n, :n] (row-major: each entry read before overwritten)
        for j in range(1, m):
            b[i - 1, j - 1] = b[i, j] - (d[i] * e[j] + e[i] * d[j])
    if n == 1:
        return abs(b[0, 0])
    if n == 2:   # eigenvalues mean +- sqrt(half-difference^2 + off-diagonal^2)
        mean = 0.5 * (b[0, 0] + b[1, 1])
        return abs(mean) + math.hypot(0.5 * (b[0, 0] - b[1, 1]), b[0, 1])
    if n == 3:
        radius = _spectral_radius_3x3(b[0, 0], b[1, 1], b[2, 2], b[0, 1], b[0, 2], b[1, 2])
        if radius >= 0.0:
            return radius
    return _spectral_radius(b, n, d, e, 1.0 + 1e-9)


#: :func:`_spectral_radius_3x3` leaves to :func:`_spectral_radius` the matrices with |r| > 1 - this (two eigenvalues
#: nearly equal), where the trigonometric formula amplifies the rounding of r by up to 1 / sqrt(2 * this).
_TRIGONOMETRIC_MARGIN = 1e-3


@njit(cache=True)
def _spectral_radius_3x3(a, b, c, d, e, f):
    """max |eigenvalue| of the symmetric [[a, d, e], [d, b, f], [e, f, c]] by the trigonometric solution of its
    characteristic cubic (Smith 1961): q = tr / 3, p = sqrt(tr((A - q I)^2) / 6), r = det((A - q I) / p) / 2 = cos 3 phi,
    eigenvalues q + 2 p cos(phi + 2 pi k / 3), the largest at k = 0 and the smallest at k = 1. Both are then
    well-conditioned in r (error below ~1e-14 relative) as long as no two eigenvalues nearly coincide; there
    (|r| > 1 - :data:`_TRIGONOMETRIC_MARGIN`) it returns -1 for the caller's general method."""
    off = d * d + e * e + f * f
    q = (a + b + c) / 3.0
    if off == 0.0:
        return max(abs(a), abs(b), abs(c))
    aq, bq, cq = a - q, b - q, c - q
    p = math.sqrt((aq * aq + bq * bq + cq * cq + 2.0 * off) / 6.0)
    aq, bq, cq, d, e, f = aq / p, bq / p, cq / p, d / p, e / p, f / p
    r = 0.5 * (aq * (bq * cq - f * f) - d * (d * cq - f * e) + e * (d * f - bq * e))
    if abs(r) > 1.0 - _TRIGONOMETRIC_MARGIN:
        return -1.0
    phi = math.acos(r) / 3.0
    return max(abs(q + 2.0 * p * math.cos(phi)), abs(q + 2.0 * p * math.cos(phi + 2.0 * math.pi / 3.0)))


@njit(cache=True)
def _count_formulas(ci, cj, cc, c0, c1, grey, nl, ncol, log2_count, rowsum, colsum, touched, out):
    """pyradiomics' formulas shared by GLRLM, GLSZM and GLDM on one matrix M (cells c0..c1: row = local grey level,
    column = run length / zone size / dependence + 1), in :data:`COUNT_FORMULAS` order. N = sum M, r_i = sum_j M_ij,
    c_j = sum_i M_ij, p = M / N: sum_j c_j / j^2 / N; sum_j c_j j^2 / N; sum_i r_i^2 / N; / N^2; sum_j c_j^2 / N; / N^2;
    N / sum_j j c_j; sum_i (r_i / N)(i - mu_i)^2; sum_j (c_j / N)(j - mu_j)^2; -sum p log2(p + eps); sum_i r_i / i^2 / N;
    sum_i r_i i^2 / N; sum M / (i^2 j^2) / N; sum M i^2 / j^2 / N; sum M j^2 / i^2 / N; sum M i^2 j^2 / N.
    The entropy's log2(n / N + eps) is log2 n - log2 N + eps N / (n ln 2), log2 n from the table ``log2_count``.
    Returns False for an empty matrix."""
    total = _cell_total(cc, c0, c1)
    if total == 0.0:
        return False
    rowsum[:nl] = 0.0
    log_total = math.log2(total)
    kappa = _EPS / math.log(2.0)
    nt = 0
    slge = shge = llge = lhge = ent = 0.0
    for c in range(c0, c1):
        g, j, m = grey[ci[c]], float(cj[c]), cc[c]
        rowsum[ci[c]] += m
        if colsum[cj[c]] == 0.0:
            touched[nt] = cj[c]
            nt += 1
        colsum[cj[c]] += m
        slge += m / (g * g * j * j)
        shge += m * g * g / (j * j)
        llge += m * j * j / (g * g)
        lhge += m * g * g * j * j
        ent -= m / total * (log2_count[int(m)] - log_total) + kappa
    se = le = cnu = voxels = uj = 0.0
    for t in range(nt):
        j = touched[t]
        c = colsum[j]
        se += c / (j * j)
        le += c * j * j
        cnu += c * c
        voxels += c * j
        uj += (c / total) * j
    jv = 0.0
    for t in range(nt):
        j = touched[t]
        jv += (colsum[j] / total) * (j - uj) ** 2
        colsum[j] = 0.0
    gnu = lge = hge = ui = 0.0
    for t in range(nl):
        r = rowsum[t]
        g = grey[t]
        gnu += r * r
        lge += r / (g * g)
        hge += r * g * g
        ui += (r / total) * g
    gv = 0.0
    for t in range(nl):
        gv += (rowsum[t] / total) * (grey[t] - ui) ** 2
    n2 = total * total
    values = (se / total, le / total, gnu / total, gnu / n2, cnu / total, cnu / n2, total / voxels, gv, jv, ent,
              lge / total, hge / total, slge / total, shge / total, llge / total, lhge / total)   # COUNT_FORMULAS order
    for f in range(len(values)):
        out[f] = values[f]
    return True


@njit(cache=True)
def ngtdm_formulas(n, s, grey, nl, pyradiomics, out):
    """NGTDM features of one matrix into ``out`` (:data:`NGTDM_FEATURES` order), over the grey levels with n_i > 0,
    p_i = n_i / N_vc, N_vc = sum n_i, N_gp their number (IBSI 1 section 3.10; pyradiomics' ngtdm.py):

    coarseness 1 / sum p_i s_i; contrast [sum_ij p_i p_j (i - j)^2 / (N_gp (N_gp - 1))] sum s_i / N_vc; busyness
    sum p_i s_i / sum_ij |i p_i - j p_j|; complexity sum_ij |i - j| (p_i s_i + p_j s_j) / (p_i + p_j) / N_vc; strength
    sum_ij (p_i + p_j)(i - j)^2 / sum s_i. Where a denominator is 0, IBSI leaves the feature undefined (NaN) and
    pyradiomics returns 1e6 (coarseness) or 0 (the others).
    """
    nvc = 0.0
    ngp = 0
    ssum = ps = 0.0
    for a in range(nl):
        nvc += n[a]
        ssum += s[a]
        if n[a] > 0.0:
            ngp += 1
    if nvc == 0.0:
        for f in range(5):
            out[f] = np.nan
        return
    for a in range(nl):
        ps += (n[a] / nvc) * s[a]
    pairs = busy = complexity = strength = 0.0
    for a in range(nl):
        if n[a] == 0.0:
            continue
        pa = n[a] / nvc
        for b in range(nl):
            if n[b] == 0.0:
                continue
            pb = n[b] / nvc
            d = grey[a] - grey[b]
            pairs += pa * pb * d * d
            busy += abs(grey[a] * pa - grey[b] * pb)
            complexity += abs(d) * (pa * s[a] + pb * s[b]) / (pa + pb)
            strength += (pa + pb) * d * d
    undefined = np.nan
    out[0] = 1.0 / ps if ps != 0.0 else (1e6 if pyradiomics else undefined)
    div = ngp * (ngp - 1)
    out[1] = pairs * ssum / nvc / div if div != 0 else (0.0 if pyradiomics else undefined)
    out[2] = ps / busy if busy != 0.0 else (0.0 if pyradiomics else undefined)
    out[3] = complexity / nvc
    out[4] = strength / ssum if ssum != 0.0 else (0.0 if pyradiomics else undefined)


# --------------------------------------------------------------------------------------------
# Drivers: one call per chunk of centres, parallel over blocks of centres
# --------------------------------------------------------------------------------------------

def pyradiomics_texture(kind, levels, centres, bounds, radius, in_plane, offsets, neighbours, alpha, Ng,
                        n_roi_levels, want_mcc, n_out):
    """pyradiomics' voxel-based features of every centre (rows) for one texture matrix kind.

    GLCM: the 24 features of :data:`PY_GLCM`, each averaged over the directions whose matrix has pairs
    (``nanmean``); GLRLM: :data:`COUNT_FORMULAS` averaged over directions with runs; GLSZM / GLDM
    (``kind`` NGLDM): :data:`COUNT_FORMULAS` of the one matrix. ``bounds``: the blocks of centres run in parallel.
    """
    out = np.full((centres.shape[0], n_out), np.nan)
    # GLCM: the matrices are updated as the kernel slides when the ROI has few enough grey levels
    compact, grey_all, sliding = glcm_state_arrays(levels, SLIDING_MAX_LEVELS if kind == GLCM else 0)
    in_parallel(_pyradiomics_block, bounds, kind, levels, compact, grey_all, bool(sliding), centres, radius, in_plane,
                offsets, neighbours, alpha, float(Ng), int(n_roi_levels), bool(want_mcc), out)
    return out


@njit(cache=True, nogil=True)
def _pyradiomics_block(first, last, kind, levels, compact, grey_all, sliding, centres, radius, in_plane, offsets,
                       neighbours, alpha, Ng, n_roi_levels, want_mcc, out):
    """:func:`pyradiomics_texture` for the centres first..last-1 (one block, with its own scratch space);
    ``sliding`` (GLCM): the matrices are kept as counts over the ROI's grey levels (``compact``, ``grey_all``) and
    updated as the kernel slides (:func:`_glcm_move`)."""
    n_out = out.shape[1]
    n_matrices = offsets.shape[0] if kind == GLCM or kind == GLRLM else 1
    nk, box, local, grey_int, grey = _box_scratch(radius, in_plane)
    ncol, acc, cm, ci, cj, cc, zone, stack, distance = _cell_scratch(n_matrices, nk)
    size = cm.size
    g = grey_all.size if sliding else 1
    cnt = np.zeros((n_matrices + 1) * g * g)
    bits = np.zeros((n_matrices + 1) * g, dtype=np.uint64)
    nm = max(nk, g)
    roi = np.zeros(nk, dtype=np.bool_)
    px = np.empty(nm)
    lpx = np.empty(nm)
    prob = np.empty(size)
    b = np.empty((nm, nm)) if kind == GLCM and want_mcc else np.empty((1, 1))
    rows = np.empty(nm, dtype=np.int64)
    tri_d = np.empty(nm)
    tri_e = np.empty(nm)
    log2_count = np.log2(np.maximum(np.arange(2 * nk + 2), 1.0))   # log2 n of every possible count n of one matrix
    pdiff = np.zeros(int(Ng) + 1)
    psum = np.zeros(2 * int(Ng) + 2)
    touched_d = np.empty(size + 1, dtype=np.int64)
    touched_s = np.empty(size + 1, dtype=np.int64)
    colsum = np.zeros(ncol + 1)
    sums = np.zeros(n_out)
    counts = np.zeros(n_out)
    row = np.empty(n_out)
    for v in range(first, last):
        if sliding:
            _glcm_move(compact, centres, v, first, radius, in_plane, offsets, -1, g, cnt, bits)
            nc = 0
            for a in range(n_matrices):
                c0 = nc
                nc = _glcm_gather(a, g, cnt, bits, ci, cj, cc, nc)
                for c in range(c0, nc):
                    cm[c] = a
            nl = g
            lev = grey_all
        else:
            bz, by, bx, nl = _centre(levels, centres, v, radius, in_plane, box, local, grey_int, grey)
            mcols = nl if kind == GLCM else ncol
            nc = _matrix_cells(kind, local, roi, grey, bz, by, bx, offsets, neighbours, neighbours, alpha, True, acc,
                               mcols, cm, ci, cj, cc, zone, stack, distance)
            lev = grey
        for f in range(n_out):
            sums[f] = 0.0
            counts[f] = 0.0
        # cells are grouped by matrix: GLCM / GLRLM write them direction by direction
        c0 = 0
        while c0 < nc:
            c1 = c0
            while c1 < nc and cm[c1] == cm[c0]:
                c1 += 1
            if kind == GLCM:
                ok = _glcm_angle(ci, cj, cc, c0, c1, lev, nl, Ng, n_roi_levels, want_mcc, log2_count, px, lpx, prob,
                                 pdiff, psum, touched_d, touched_s, b, rows, tri_d, tri_e, row)
            else:
                ok = _count_formulas(ci, cj, cc, c0, c1, grey, nl, ncol, log2_count, px, colsum, touched_d, row)
            if ok:
                _add_defined(row, sums, counts, n_out)
            c0 = c1
        _write_average(out, v, sums, counts, n_out)


def ngtdm_maps(levels, centres, bounds, radius, in_plane, neighbours, pyradiomics):
    """NGTDM features (:data:`NGTDM_FEATURES`) of every centre; ``pyradiomics``: its definition (voxels without a
    neighbour counted, 1e6 / 0 for undefined values), else IBSI's."""
    out = np.full((centres.shape[0], 5), np.nan)
    in_parallel(_ngtdm_block, bounds, levels, centres, radius, in_plane, neighbours, bool(pyradiomics), out)
    return out


@njit(cache=True, nogil=True)
def _ngtdm_block(first, last, levels, centres, radius, in_plane, neighbours, pyradiomics, out):
    """:func:`ngtdm_maps` for the centres first..last-1."""
    nk, box, local, grey_int, grey = _box_scratch(radius, in_plane)
    nn = np.zeros(nk)
    ss = np.zeros(nk)
    row = np.empty(5)
    for v in range(first, last):
        bz, by, bx, nl = _centre(levels, centres, v, radius, in_plane, box, local, grey_int, grey)
        for t in range(nl):
            nn[t] = 0.0
            ss[t] = 0.0
        _ngtdm(local, grey, bz, by, bx, neighbours, pyradiomics, nn, ss)
        ngtdm_formulas(nn, ss, grey, nl, pyradiomics, row)
        for f in range(5):
            out[v, f] = row[f]


def ibsi_cells(kind, levels, roi_mask, centres, bounds, radius, in_plane, offsets, neighbours, steps, alpha,
               first, first_comb, counts_only, cell_count, comb_count, voxels,
               m_out, i_out, j_out, c_out, mc_out, ic_out, jc_out, cc_out):
    """The non-zero cells of every centre's matrices, for the IBSI engine's formula classes.

    Two passes over the same centres: with ``counts_only`` it fills ``cell_count[v]`` (cells of the per-direction
    matrices, or of the one matrix), ``comb_count[v]`` (cells of the directions merged; GLCM / GLRLM) and
    ``voxels[v]`` (ROI voxels of the kernel, N_v); then, with ``first`` / ``first_comb`` the cumulative offsets,
    it writes each cell's matrix number (centre * directions + direction, or the centre), row grey level
    (the level itself), column (GLCM: the second grey level) and count.
    """
    in_parallel(_ibsi_block, bounds, kind, levels, roi_mask, centres, radius, in_plane, offsets, neighbours, steps,
                float(alpha), first, first_comb, bool(counts_only), cell_count, comb_count, voxels,
                m_out, i_out, j_out, c_out, mc_out, ic_out, jc_out, cc_out)


@njit(cache=True, nogil=True)
def _ibsi_block(first_v, last_v, kind, levels, roi_mask, centres, radius, in_plane, offsets, neighbours, steps, alpha,
                first, first_comb, counts_only, cell_count, comb_count, voxels,
                m_out, i_out, j_out, c_out, mc_out, ic_out, jc_out, cc_out):
    """:func:`ibsi_cells` for the centres first_v..last_v-1."""
    n_matrices = offsets.shape[0] if kind == GLCM or kind == GLRLM else 1
    nk, box, local, grey_int, grey = _box_scratch(radius, in_plane)
    ncol, acc, cm, ci, cj, cc, zone, stack, distance = _cell_scratch(n_matrices, nk)
    _, comb, zm, zi, zj, zc, _, _, _ = _cell_scratch(n_matrices, nk)   # the directions merged
    roi_box = np.empty(nk, dtype=np.int64)
    roi = np.zeros(nk, dtype=np.bool_)
    for v in range(first_v, last_v):
        bz, by, bx, nl = _centre(levels, centres, v, radius, in_plane, box, local, grey_int, grey)
        if kind == GLDZM:
            _read_box(roi_mask, centres[v, 0], centres[v, 1], centres[v, 2], radius, in_plane, roi_box)
            for k in range(nk):
                roi[k] = roi_box[k] > 0 or local[k] >= 0
        mcols = nl if kind == GLCM else ncol
        nc = _matrix_cells(kind, local, roi, grey, bz, by, bx, offsets, neighbours, steps, alpha, False, acc,
                           mcols, cm, ci, cj, cc, zone, stack, distance)
        nz = 0
        if n_matrices > 1:   # the directions merged: one more matrix per centre
            for c in range(nc):
                nz = _add(comb, 0, ci[c], cj[c], mcols, cc[c], zm, zi, zj, zc, nz)
            _flush(comb, zi, zj, zc, 0, nz, mcols)
        if counts_only:
            cell_count[v] = nc
            comb_count[v] = nz
            n_voxels = 0
            for k in range(nk):
                if local[k] >= 0:
                    n_voxels += 1
            voxels[v] = n_voxels
            continue
        o = first[v]
        for c in range(nc):
            m_out[o + c] = v * n_matrices + cm[c]
            i_out[o + c] = grey_int[ci[c]]
            j_out[o + c] = grey_int[cj[c]] if kind == GLCM else cj[c]
            c_out[o + c] = cc[c]
        o = first_comb[v]
        for c in range(nz):
            mc_out[o + c] = v
            ic_out[o + c] = grey_int[zi[c]]
            jc_out[o + c] = grey_int[zj[c]] if kind == GLCM else zj[c]
            cc_out[o + c] = zc[c]


# --------------------------------------------------------------------------------------------
# GLCM matrices kept up to date as the kernel slides (radius 1 and more)
# --------------------------------------------------------------------------------------------

#: Most grey levels in the region of interest for which the GLCM maps keep every kernel's matrices as dense
#: counts over the ROI's levels, updated as the kernel slides along x (:func:`glcm_state_arrays`; a row's occupancy
#: is one 64-bit word); above it each kernel's matrices are rebuilt from its box (the same values, more work).
SLIDING_MAX_LEVELS = 64


def glcm_state_arrays(levels, max_levels):
    """(compact, grey, sliding): ``compact`` the ROI's grey levels numbered 0..G-1 in increasing order (-1 outside the
    ROI), ``grey`` the level of each number (float64), ``sliding`` whether G <= ``max_levels`` (else placeholders)."""
    present = np.unique(levels[levels > 0])
    if not 0 < present.size <= min(max_levels, 64):   # a matrix row's occupancy is one 64-bit word
        return np.full((1, 1, 1), -1, dtype=np.int64), np.ones(1), False
    lut = np.full(int(present[-1]) + 1, -1, dtype=np.int64)
    lut[present] = np.arange(present.size)
    return np.ascontiguousarray(lut[levels]), present.astype(np.float64), True


def glcm_state_bytes(n_levels: int, n_directions: int) -> int:
    """Memory of one thread's sliding GLCM state (bytes): counts of every direction's matrix and of their sum, dense
    over the ROI's levels, and their rows' occupancy words."""
    g = min(int(n_levels), SLIDING_MAX_LEVELS)
    return (n_directions + 1) * (g * g * 8 + g * 8)


@njit(cache=True)
def _bump(a, i, j, delta, g, g2, cnt, bits):
    """Add ``delta`` to cell (i, j) of matrix ``a`` of the sliding state, keeping the cell's bit in its row's occupancy
    word (``bits[a * g + i]``, bit j) set while the cell is non-zero."""
    o = a * g2 + i * g + j
    c = cnt[o]
    n = c + delta
    cnt[o] = n
    if c == 0.0:
        bits[a * g + i] |= np.uint64(1) << np.uint64(j)
    elif n == 0.0:
        bits[a * g + i] &= ~(np.uint64(1) << np.uint64(j))


@njit(cache=True)
def _glcm_pairs(compact, offsets, comb, z0, z1, y0, y1, x0, x1, at_x, delta, g, cnt, bits):
    """Add ``delta`` (+1 / -1) for every pair (u, u + d) of ROI voxels with both in the box [z0, z1] x [y0, y1] x
    [x0, x1] (inclusive) and, when ``at_x`` >= 0, the pair's lower (``at_x`` = x0) or upper (``at_x`` = x1) x
    equal to ``at_x``; to (g(u), g(u + d)) and (g(u + d), g(u)) of direction d's matrix, and of matrix ``comb``
    (the directions summed) when ``comb`` >= 0."""
    g2 = g * g
    for a in range(offsets.shape[0]):
        dz, dy, dx = offsets[a, 0], offsets[a, 1], offsets[a, 2]
        xs, xe = max(x0, x0 - dx), min(x1, x1 - dx)
        if at_x >= 0:
            # the pair's x values are u and u + dx: its lower one at x0 / upper one at x1 fixes u
            if at_x == x0:
                u = x0 if dx >= 0 else x0 - dx
            else:
                u = x1 if dx <= 0 else x1 - dx
            xs, xe = max(xs, u), min(xe, u)
        zs, ze = max(z0, z0 - dz), min(z1, z1 - dz)
        ys, ye = max(y0, y0 - dy), min(y1, y1 - dy)
        for z in range(zs, ze + 1):
            for y in range(ys, ye + 1):
                for x in range(xs, xe + 1):
                    i = compact[z, y, x]
                    if i < 0:
                        continue
                    j = compact[z + dz, y + dy, x + dx]
                    if j < 0:
                        continue
                    _bump(a, i, j, delta, g, g2, cnt, bits)
                    _bump(a, j, i, delta, g, g2, cnt, bits)
                    if comb >= 0:
                        _bump(comb, i, j, delta, g, g2, cnt, bits)
                        _bump(comb, j, i, delta, g, g2, cnt, bits)


@njit(cache=True)
def _glcm_move(compact, centres, v, first, radius, in_plane, offsets, comb, g, cnt, bits):
    """Bring the sliding state to centre v's kernel: from the previous centre's (v - 1, same row, at most ``radius``
    voxels before along x) by removing the pairs that leave and adding those that enter at each step, else rebuilt
    (cleared through the occupancy words, then every pair of the box)."""
    g2 = g * g
    cz, cy, cx = centres[v, 0], centres[v, 1], centres[v, 2]
    rz = 0 if in_plane else radius
    z0, z1, y0, y1 = cz - rz, cz + rz, cy - radius, cy + radius
    step = 0
    if v > first and centres[v - 1, 0] == cz and centres[v - 1, 1] == cy:
        step = cx - centres[v - 1, 2]
    if 0 < step <= radius:
        for x in range(centres[v - 1, 2], cx):   # from the kernel at x to the kernel at x + 1
            _glcm_pairs(compact, offsets, comb, z0, z1, y0, y1, x - radius, x + radius, x - radius, -1.0, g, cnt,
                        bits)
            _glcm_pairs(compact, offsets, comb, z0, z1, y0, y1, x + 1 - radius, x + 1 + radius, x + 1 + radius, 1.0,
                        g, cnt, bits)
        return
    for a in range(bits.size // g):   # clear the non-zero cells of every matrix
        for i in range(g):
            if bits[a * g + i] != 0:
                for j in range(g):
                    cnt[a * g2 + i * g + j] = 0.0
                bits[a * g + i] = 0
    _glcm_pairs(compact, offsets, comb, z0, z1, y0, y1, cx - radius, cx + radius, -1, 1.0, g, cnt, bits)


@njit(cache=True)
def _glcm_gather(a, g, cnt, bits, ci, cj, cc, start):
    """Write matrix a's non-zero cells (row, column numbers, count), in row-major order, from index ``start``; returns
    the end. The order depends on the matrix only, so the maps do not depend on the chunks or the threads."""
    g2 = g * g
    c = start
    for i in range(g):
        word = bits[a * g + i]
        while word != 0:
            j = int(trailing_zeros(word))             # the lowest set bit
            ci[c] = i
            cj[c] = j
            cc[c] = cnt[a * g2 + i * g + j]
            c += 1
            word &= word - np.uint64(1)
    return c


# --------------------------------------------------------------------------------------------
# IBSI GLCM features, compiled (the ``ibsi`` definition's GLCM maps)
# --------------------------------------------------------------------------------------------

#: The IBSI GLCM base features :func:`ibsi_glcm_maps` returns, in the order of
#: :data:`RadiomicsLabLib.ibsi.features.glcm.BASE_TAGS` (without the ``cm_`` prefix).
IBSI_GLCM = ("joint_max", "joint_avg", "joint_var", "joint_entr", "diff_avg", "diff_var", "diff_entr", "sum_avg",
             "sum_var", "sum_entr", "energy", "contrast", "dissimilarity", "inv_diff", "inv_diff_norm", "inv_diff_mom",
             "inv_diff_mom_norm", "inv_var", "corr", "auto_corr", "clust_tend", "clust_shade", "clust_prom",
             "info_corr1", "info_corr2")


@njit(cache=True)
def _ibsi_glcm_matrix(ci, cj, cc, c0, c1, grey, Ng, log2_count, px, touched_r, pdiff, psum, touched_d, touched_s,
                      out):
    """IBSI 1 section 3.6 GLCM features of one symmetric matrix (cells c0..c1-1: row and column numbers, counts; the
    grey level of number a is ``grey[a]``) into ``out`` (:data:`IBSI_GLCM` order): the formulas of
    :class:`~RadiomicsLabLib.ibsi.features.glcm.GlcmFeatures`. p_ij = n_ij / N; the marginals p_i. = p_.j (symmetric
    matrix), p_{i-j}(k) and p_{i+j}(k) are sums of counts over N, so every p log2 p is (n / N)(log2 n - log2 N) with
    log2 n from the table ``log2_count`` (:func:`_log2_count`); the features that depend on |i - j| only (contrast, dissimilarity, the
    inverse differences, inverse variance) are sums over p_{i-j}(k). Correlation is NaN where the marginal variance is
    0, information correlation 1 where HX = 0. Returns False for a matrix without pairs (left out of the directional
    average, as the engine's NaN for an empty matrix is). ``px``, ``pdiff``, ``psum`` are zero on entry and on return.
    """
    total = _cell_total(cc, c0, c1)
    if total == 0.0:
        return False
    lt = math.log2(total)
    nr = nd = ns = 0
    maxc = sgi = ent = en = auto = 0.0
    for c in range(c0, c1):
        n = cc[c]
        a = ci[c]
        gi, gj = grey[a], grey[cj[c]]
        if px[a] == 0.0:
            touched_r[nr] = a
            nr += 1
        px[a] += n
        if n > maxc:
            maxc = n
        sgi += n * gi
        ent += n * (_log2_count(log2_count, n) - lt)   # exactly 0 for a single cell
        en += n * n
        auto += n * gi * gj
        nd, ns = _add_difference_and_sum(gi, gj, n, pdiff, psum, touched_d, touched_s, nd, ns)
    javg = sgi / total
    mu = hx = 0.0
    for t in range(nr):
        a = touched_r[t]
        p = px[a] / total
        mu += grey[a] * p
        hx -= p * (_log2_count(log2_count, px[a]) - lt)
    var = 0.0
    for t in range(nr):
        a = touched_r[t]
        var += (grey[a] - mu) ** 2 * (px[a] / total)
        px[a] = 0.0
    jvar = cov = tend = shade = prom = 0.0
    for c in range(c0, c1):
        p = cc[c] / total
        gi, gj = grey[ci[c]], grey[cj[c]]
        jvar += (gi - javg) ** 2 * p
        cov += (gi - mu) * (gj - mu) * p
        s = gi + gj - 2.0 * mu
        s2 = s * s
        tend += s2 * p
        shade += s2 * s * p
        prom += s2 * s2 * p
    dav, dent, contrast, idf, idn, idm, idmn, ivar = _difference_features(pdiff, touched_d, nd, total, lt, Ng,
                                                                           log2_count, 0.0)
    dvar = _variance_and_clear(pdiff, touched_d, nd, total, dav)
    sav, sent = _sum_features(psum, touched_s, ns, total, lt, log2_count, 0.0)
    svar = _variance_and_clear(psum, touched_s, ns, total, sav)
    jentr = -ent / total
    values = (maxc / total, javg, jvar, jentr, dav, dvar, dent, sav, svar, sent, en / (total * total), contrast, dav,
              idf, idn, idm, idmn, ivar, cov / var if var > 0.0 else np.nan, auto / total, tend, shade, prom,
              (jentr - 2.0 * hx) / hx if hx > 0.0 else np.nan,
              math.sqrt(1.0 - math.exp(-2.0 * max(2.0 * hx - jentr, 0.0))))   # in IBSI_GLCM order
    for f in range(len(values)):
        out[f] = values[f]
    return True


@njit(cache=True, nogil=True)
def ibsi_glcm_cell_features(matrix, ci, cj, cc, n_matrices, Ng):
    """IBSI GLCM features (:data:`IBSI_GLCM` columns) of ``n_matrices`` symmetric co-occurrence matrices given by their
    non-zero cells, grouped by matrix (``matrix`` non-decreasing; row and column grey levels ``ci``, ``cj`` >= 0,
    count ``cc``): the IBSI engine's segment GLCM (:func:`RadiomicsLabLib.ibsi.features.glcm.compute`), with the
    per-matrix formulas of the maps (:func:`_ibsi_glcm_matrix`). Returns (features (n_matrices, 25), NaN rows for the
    matrices without pairs; which matrices have pairs)."""
    out = np.full((n_matrices, len(IBSI_GLCM)), np.nan)
    non_empty = np.zeros(n_matrices, dtype=np.bool_)
    n_cells = matrix.shape[0]
    top = 0
    for c in range(n_cells):
        top = max(top, ci[c], cj[c])
    grey = np.arange(top + 1).astype(np.float64)   # the cells' rows and columns are grey levels already
    px = np.zeros(top + 1)
    touched_r = np.empty(top + 1, dtype=np.int64)
    pdiff = np.zeros(top + 1)
    psum = np.zeros(2 * top + 2)
    touched_d = np.empty(top + 2, dtype=np.int64)       # one more than the bins (_add_difference_and_sum)
    touched_s = np.empty(2 * top + 3, dtype=np.int64)
    no_table = np.empty(0)                              # counts of a whole ROI: log2 computed (_log2_count)
    row = np.empty(len(IBSI_GLCM))
    c0 = 0
    while c0 < n_cells:
        c1 = c0
        while c1 < n_cells and matrix[c1] == matrix[c0]:
            c1 += 1
        if _ibsi_glcm_matrix(ci, cj, cc, c0, c1, grey, Ng, no_table, px, touched_r, pdiff, psum, touched_d,
                             touched_s, row):
            out[matrix[c0]] = row
            non_empty[matrix[c0]] = True
        c0 = c1
    return out, non_empty


def ibsi_glcm_maps(levels, centres, bounds, radius, in_plane, offsets, n_levels, want_avg, want_comb,
                   max_levels=None):
    """IBSI GLCM features (:data:`IBSI_GLCM`) of every centre's kernel: (avg, comb), each (centres, 25).

    avg (``_3D_avg`` / ``_2D_avg``): the features of each direction's matrix, averaged over the directions whose
    matrix has pairs (a feature undefined for a matrix is averaged over the others; NaN if none); comb
    (``_3D_comb`` / ``_2D_comb``): the features of the directions' matrices summed. ``n_levels``: N_g of the whole
    ROI's discretisation. An output not wanted is left NaN (and not computed). With at most ``max_levels`` (default
    :data:`SLIDING_MAX_LEVELS`) grey levels in the ROI the matrices are updated as the kernel slides
    (:func:`glcm_state_arrays`), else rebuilt per kernel from its box.
    """
    n = centres.shape[0]
    avg = np.full((n, len(IBSI_GLCM)), np.nan)
    comb = np.full((n, len(IBSI_GLCM)), np.nan)
    max_level = int(levels.max()) if levels.size else 0
    compact, grey_all, sliding = glcm_state_arrays(levels, SLIDING_MAX_LEVELS if max_levels is None else max_levels)
    in_parallel(_ibsi_glcm_block, bounds, levels, compact, grey_all, bool(sliding), centres, radius, in_plane,
                offsets, float(n_levels), max_level, bool(want_avg), bool(want_comb), avg, comb)
    return avg, comb


@njit(cache=True, nogil=True)
def _ibsi_glcm_block(first, last, levels, compact, grey_all, sliding, centres, radius, in_plane, offsets, Ng,
                     max_level, want_avg, want_comb, avg, comb):
    """:func:`ibsi_glcm_maps` for the centres first..last-1."""
    n_out = avg.shape[1]
    nd = offsets.shape[0]
    nk, box, local, grey_int, grey = _box_scratch(radius, in_plane)
    ncol, acc, cm, ci, cj, cc, _, _, _ = _cell_scratch(nd, nk)
    _, merged, zm, zi, zj, zc, _, _, _ = _cell_scratch(nd, nk)   # the directions merged
    g = grey_all.size if sliding else 1
    cnt = np.zeros((nd + 1) * g * g)
    bits = np.zeros((nd + 1) * g, dtype=np.uint64)
    starts = np.zeros(nd + 1, dtype=np.int64)
    px = np.zeros(max(nk, g))
    touched_r = np.empty(max(nk, g), dtype=np.int64)
    log2_count = np.log2(np.maximum(np.arange(2 * nd * nk + 2), 1.0))   # log2 n of every count of a cell or sum
    pdiff = np.zeros(max_level + 1)
    psum = np.zeros(2 * max_level + 2)
    touched_d = np.empty(max_level + 2, dtype=np.int64)   # one more than the bins (_add_difference_and_sum)
    touched_s = np.empty(2 * max_level + 3, dtype=np.int64)
    sums = np.zeros(n_out)
    counts = np.zeros(n_out)
    row = np.empty(n_out)
    nl = 0
    for v in range(first, last):
        if sliding:
            _glcm_move(compact, centres, v, first, radius, in_plane, offsets, nd if want_comb else -1, g, cnt, bits)
            nc = 0
            for a in range(nd):
                starts[a] = nc
                nc = _glcm_gather(a, g, cnt, bits, ci, cj, cc, nc)
            starts[nd] = nc
            lev = grey_all
        else:
            bz, by, bx, nl = _centre(levels, centres, v, radius, in_plane, box, local, grey_int, grey)
            nc = _glcm_cells(local, bz, by, bx, offsets, acc, nl, cm, ci, cj, cc)
            lev = grey
        if want_avg:
            for f in range(n_out):
                sums[f] = 0.0
                counts[f] = 0.0
            c0 = 0
            a = 0
            while c0 < nc:   # the cells are grouped by direction
                c1 = c0
                if sliding:
                    c1 = starts[a + 1]
                    a += 1
                else:
                    while c1 < nc and cm[c1] == cm[c0]:
                        c1 += 1
                if _ibsi_glcm_matrix(ci, cj, cc, c0, c1, lev, Ng, log2_count, px, touched_r, pdiff, psum, touched_d,
                                     touched_s, row):
                    _add_defined(row, sums, counts, n_out)
                c0 = c1
            _write_average(avg, v, sums, counts, n_out)
        if want_comb:
            if sliding:
                nz = _glcm_gather(nd, g, cnt, bits, zi, zj, zc, 0)
            else:
                nz = 0
                for c in range(nc):
                    nz = _add(merged, 0, ci[c], cj[c], nl, cc[c], zm, zi, zj, zc, nz)
                _flush(merged, zi, zj, zc, 0, nz, nl)
            if _ibsi_glcm_matrix(zi, zj, zc, 0, nz, lev, Ng, log2_count, px, touched_r, pdiff, psum, touched_d,
                                 touched_s, row):
                for f in range(n_out):
                    comb[v, f] = row[f]

# --------------------------------------------------------------------------------------------
# First-order statistics (intensity statistics, intensity histogram, pyradiomics firstorder)
# --------------------------------------------------------------------------------------------

#: Columns of :func:`first_order_maps` for one sample X (intensities, or grey levels for the histogram).
SAMPLE_STATS = ("mean", "variance", "skewness", "excess_kurtosis", "median", "minimum", "p10", "p90", "maximum",
                "iqr", "range", "mad", "rmad", "medad", "cov", "qcod", "energy", "rms", "count", "kurtosis")
#: Columns that follow: pyradiomics' own (shifted energy and RMS, median of two middle values, entropy with eps,
#: uniformity), then the IBSI intensity histogram's (over grey levels 1..N_g).
PYRADIOMICS_STATS = ("shifted_energy", "shifted_rms", "nanmedian", "entropy_eps", "uniformity")
HISTOGRAM_STATS = ("mode", "entropy", "uniformity", "max_grad", "max_grad_g", "min_grad", "min_grad_g")


@njit(cache=True)
def _percentile(xs, n, q):
    """numpy.percentile(xs[:n], q) of the sorted ``xs`` (linear interpolation, numpy's lerp)."""
    h = (q / 100.0) * (n - 1)
    lo = int(math.floor(h))
    hi = min(lo + 1, n - 1)
    t = h - lo
    a, b = xs[lo], xs[hi]
    d = b - a
    return b - d * (1.0 - t) if t >= 0.5 else a + d * t


@njit(cache=True)
def _sample_stats(xs, n, out, o):
    """IBSI 1 section 3.3 statistics of the sorted sample ``xs[:n]`` into ``out[o:o + 20]`` (:data:`SAMPLE_STATS`):
    mean; variance m_2 = 1/N sum (x - mu)^2; skewness m_3 / m_2^1.5 and excess kurtosis m_4 / m_2^2 - 3 (both 0 when
    m_2 = 0); median P50; min; P10; P90; max; P75 - P25; max - min; 1/N sum |x - mu|; robust MAD (mean absolute
    deviation of the values in [P10, P90] from their mean, NaN if none); 1/N sum |x - median|; sigma / mu (NaN if
    mu = 0); (P75 - P25) / (P75 + P25) (NaN if the sum is 0); sum x^2; sqrt(sum x^2 / N); N; and the plain kurtosis
    m_4 / m_2^2 (pyradiomics' Kurtosis, 0 when m_2 = 0).

    ``xs`` is sorted, so the values in [P10, P90] are the run xs[lo..hi] (summed in increasing order, as a scan of the
    whole sample would), and the sums that need the median are taken in the same pass as the moments."""
    mean = 0.0
    for k in range(n):
        mean += xs[k]
    mean /= n
    median = _percentile(xs, n, 50.0)
    p10, p90 = _percentile(xs, n, 10.0), _percentile(xs, n, 90.0)
    p25, p75 = _percentile(xs, n, 25.0), _percentile(xs, n, 75.0)
    m2 = m3 = m4 = mad = energy = medad = 0.0
    for k in range(n):
        d = xs[k] - mean
        m2 += d * d
        m3 += d * d * d
        m4 += d * d * d * d
        mad += abs(d)
        energy += xs[k] * xs[k]
        medad += abs(xs[k] - median)
    m2 /= n
    m3 /= n
    m4 /= n
    lo = int(0.1 * (n - 1))            # first index with xs[lo] >= P10
    while lo > 0 and xs[lo - 1] >= p10:
        lo -= 1
    while lo < n and xs[lo] < p10:
        lo += 1
    hi = int(0.9 * (n - 1))            # last index with xs[hi] <= P90
    while hi < n - 1 and xs[hi + 1] <= p90:
        hi += 1
    while hi >= 0 and xs[hi] > p90:
        hi -= 1
    rmad = np.nan
    if hi >= lo:
        inner_mean = 0.0
        for k in range(lo, hi + 1):
            inner_mean += xs[k]
        inner_mean /= hi + 1 - lo
        rmad = 0.0
        for k in range(lo, hi + 1):
            rmad += abs(xs[k] - inner_mean)
        rmad /= hi + 1 - lo
    out[o + 0] = mean
    out[o + 1] = m2
    out[o + 2] = 0.0 if m2 == 0.0 else m3 / m2 ** 1.5
    out[o + 3] = 0.0 if m2 == 0.0 else m4 / m2 ** 2 - 3.0
    out[o + 4] = median
    out[o + 5] = xs[0]
    out[o + 6] = p10
    out[o + 7] = p90
    out[o + 8] = xs[n - 1]
    out[o + 9] = p75 - p25
    out[o + 10] = xs[n - 1] - xs[0]
    out[o + 11] = mad / n
    out[o + 12] = rmad
    out[o + 13] = medad / n
    out[o + 14] = math.sqrt(m2) / mean if mean != 0.0 else np.nan
    out[o + 15] = (p75 - p25) / (p75 + p25) if p75 + p25 != 0.0 else np.nan
    out[o + 16] = energy
    out[o + 17] = math.sqrt(energy / n)
    out[o + 18] = n
    out[o + 19] = 0.0 if m2 == 0.0 else m4 / m2 ** 2


def first_order_maps(image, levels, centres, bounds, radius, in_plane, shift, n_levels, histogram=True):
    """Per centre, over the ROI voxels of its kernel box (``levels > 0``): :data:`SAMPLE_STATS` of the intensities,
    :data:`PYRADIOMICS_STATS`, :data:`SAMPLE_STATS` of the grey levels and :data:`HISTOGRAM_STATS`.

    pyradiomics (firstorder.py): energy sum (x + c)^2 and RMS sqrt(sum (x + c)^2 / N) with c = ``shift``
    (voxelArrayShift); median as numpy.nanmedian (mean of the two middle values); entropy -sum p_i log2(p_i + eps) and
    uniformity sum p_i^2, p_i the fraction of the kernel's voxels in grey level i. IBSI histogram (section 3.4) over the
    levels 1..N_g: mode (ties: closest to the mean, then the lower), entropy -sum p_i log2 p_i, uniformity, and the
    histogram gradient H'_1 = n_2 - n_1, H'_i = (n_{i+1} - n_{i-1}) / 2, H'_Ng = n_Ng - n_{Ng-1}: its maximum, minimum
    and the (lowest) grey levels where they are (NaN for a one-bin histogram). ``histogram`` False: the grey levels'
    :data:`SAMPLE_STATS` and the :data:`HISTOGRAM_STATS` are not computed (left NaN).
    """
    width = 2 * len(SAMPLE_STATS) + len(PYRADIOMICS_STATS) + len(HISTOGRAM_STATS)
    out = np.full((centres.shape[0], width), np.nan)
    in_parallel(_first_order_block, bounds, image, levels, centres, radius, in_plane, float(shift), int(n_levels),
                bool(histogram), out)
    return out


@njit(cache=True)
def _merge_sorted(xs, n, removed, nr, added, na, into):
    """``into[:m]`` = the sorted ``xs[:n]`` without the values ``removed[:nr]`` (sorted, each present) and with the
    values ``added[:na]`` (sorted); returns m."""
    i = r = a = m = 0
    while i < n or a < na:
        if i < n and r < nr and xs[i] == removed[r]:
            i += 1
            r += 1
            continue
        if a < na and (i >= n or added[a] < xs[i]):
            into[m] = added[a]
            a += 1
        else:
            into[m] = xs[i]
            i += 1
        m += 1
    return m


@njit(cache=True)
def _count_level(hist, levels_in, nd, g, delta):
    """Add ``delta`` (+1 / -1) to the histogram bin of grey level ``g``, keeping ``levels_in[:nd]`` the sorted list of
    the levels with a non-zero count; returns the new nd."""
    before = hist[g]
    hist[g] = before + delta
    if before == 0.0:                  # a new level: insert it in order
        t = nd
        while t > 0 and levels_in[t - 1] > g:
            levels_in[t] = levels_in[t - 1]
            t -= 1
        levels_in[t] = g
        return nd + 1
    if hist[g] == 0.0:                 # its last voxel left: remove it
        t = 0
        while levels_in[t] != g:
            t += 1
        for u in range(t, nd - 1):
            levels_in[u] = levels_in[u + 1]
        return nd - 1
    return nd


@njit(cache=True, nogil=True)
def _first_order_block(first, last, image, levels, centres, radius, in_plane, shift, n_levels, histogram, out):
    """:func:`first_order_maps` for the centres first..last-1.

    The kernel's sorted intensities, its histogram and the sorted list of its grey levels are kept up to date as the
    kernel slides along a row (a centre at most ``radius`` voxels after the previous one): the intensities of the slab
    that leaves are taken out and those of the slab that enters merged in, instead of sorting the whole box again. A
    sorted sample is the same whichever way it was reached, so the values are those of the box sorted afresh. The
    sorted grey levels (IBSI histogram statistics) are the histogram read in level order."""
    ns, npy = len(SAMPLE_STATS), len(PYRADIOMICS_STATS)
    w = 2 * radius + 1
    nk = w * w * (1 if in_plane else w)
    rz = 0 if in_plane else radius
    xs = np.empty(nk)
    gs = np.empty(nk)
    xt = np.empty(nk)
    slab = w * (1 if in_plane else w)
    rx = np.empty(slab)
    ax = np.empty(slab)
    hist = np.zeros(n_levels + 2)
    levels_in = np.empty(nk, dtype=np.int64)   # the grey levels present, increasing
    nd = 0
    count = 0
    for v in range(first, last):
        cz, cy, cx = centres[v, 0], centres[v, 1], centres[v, 2]
        step = 0
        if v > first and centres[v - 1, 0] == cz and centres[v - 1, 1] == cy:
            step = cx - centres[v - 1, 2]
        if 0 < step <= radius:
            for x in range(centres[v - 1, 2], cx):   # from the kernel at x to the kernel at x + 1
                nr = na = 0
                for z in range(cz - rz, cz + rz + 1):
                    for y in range(cy - radius, cy + radius + 1):
                        g = levels[z, y, x - radius]
                        if g > 0:
                            rx[nr] = image[z, y, x - radius]
                            nr += 1
                            nd = _count_level(hist, levels_in, nd, g, -1.0)
                        g = levels[z, y, x + 1 + radius]
                        if g > 0:
                            ax[na] = image[z, y, x + 1 + radius]
                            na += 1
                            nd = _count_level(hist, levels_in, nd, g, 1.0)
                if nr == 0 and na == 0:
                    continue
                rx[:nr].sort()
                ax[:na].sort()
                count = _merge_sorted(xs, count, rx, nr, ax, na, xt)
                xs, xt = xt, xs
        else:
            for t in range(nd):
                hist[levels_in[t]] = 0.0
            nd = count = 0
            for z in range(cz - rz, cz + rz + 1):
                for y in range(cy - radius, cy + radius + 1):
                    for x in range(cx - radius, cx + radius + 1):
                        g = levels[z, y, x]
                        if g > 0:
                            xs[count] = image[z, y, x]
                            count += 1
                            nd = _count_level(hist, levels_in, nd, g, 1.0)
            xs[:count].sort()
        if count == 0:
            continue
        _sample_stats(xs, count, out[v], 0)
        energy = 0.0
        for k in range(count):
            energy += (xs[k] + shift) ** 2
        out[v, ns] = energy
        out[v, ns + 1] = math.sqrt(energy / count)
        h = (count - 1) // 2
        out[v, ns + 2] = xs[h] if count % 2 == 1 else (xs[h] + xs[h + 1]) / 2.0
        entropy_eps = entropy = uniformity = 0.0
        for t in range(nd):
            p = hist[levels_in[t]] / count
            entropy_eps -= p * math.log2(p + _EPS)
            entropy -= p * math.log2(p)
            uniformity += p * p
        out[v, ns + 3] = entropy_eps
        out[v, ns + 4] = uniformity
        if not histogram:
            continue
        o = ns + npy
        k = 0
        for t in range(nd):   # the sorted grey levels: each level repeated by its count
            g = levels_in[t]
            for _ in range(int(hist[g])):
                gs[k] = g
                k += 1
        _sample_stats(gs, count, out[v], o)
        mean = out[v, o]
        best, best_count = 0, -1.0
        for t in range(nd):
            g = levels_in[t]
            if hist[g] > best_count or (hist[g] == best_count and abs(g - mean) < abs(best - mean)):
                best, best_count = g, hist[g]
        o += ns
        out[v, o] = best
        out[v, o + 1] = entropy
        out[v, o + 2] = uniformity
        if n_levels >= 2:
            gmax, gmin = -np.inf, np.inf
            lmax = lmin = 0
            for i in range(1, n_levels + 1):
                if i == 1:
                    gradient = hist[2] - hist[1]
                elif i == n_levels:
                    gradient = hist[n_levels] - hist[n_levels - 1]
                else:
                    gradient = (hist[i + 1] - hist[i - 1]) / 2.0
                if gradient > gmax:
                    gmax, lmax = gradient, i
                if gradient < gmin:
                    gmin, lmin = gradient, i
            out[v, o + 3] = gmax
            out[v, o + 4] = lmax
            out[v, o + 5] = gmin
            out[v, o + 6] = lmin


# --------------------------------------------------------------------------------------------
# Local intensity (IBSI 1 section 3.2)
# --------------------------------------------------------------------------------------------

#: Columns of :func:`local_intensity_maps` (IBSI tags).
LOCAL_PEAKS = ("loc_peak_loc", "loc_peak_glob")


def local_intensity_maps(image, levels, means, centres, bounds, radius, in_plane):
    """Per centre, over the ROI voxels of its kernel box (``levels > 0``), from ``means`` (every voxel's mean intensity
    in the 1 cm^3 sphere around it, :class:`~RadiomicsLabLib.ibsi.features.local_intensity.LocalMeans`): the local
    intensity peak, the mean at the maximum-intensity voxel (several: the highest of their means; IBSI VJGA), and the
    global intensity peak, the highest mean (IBSI 0F91). NaN for a kernel without ROI voxels."""
    out = np.full((centres.shape[0], len(LOCAL_PEAKS)), np.nan)
    in_parallel(_local_intensity_block, bounds, image, levels, means, centres, radius, in_plane, out)
    return out


@njit(cache=True, nogil=True)
def _local_intensity_block(first, last, image, levels, means, centres, radius, in_plane, out):
    """:func:`local_intensity_maps` for the centres first..last-1."""
    for v in range(first, last):
        cz, cy, cx = centres[v, 0], centres[v, 1], centres[v, 2]
        z0, z1 = (cz, cz + 1) if in_plane else (cz - radius, cz + radius + 1)
        found = False
        top = local = best = -np.inf
        for z in range(z0, z1):
            for y in range(cy - radius, cy + radius + 1):
                for x in range(cx - radius, cx + radius + 1):
                    if levels[z, y, x] > 0:
                        value, mean = image[z, y, x], means[z, y, x]
                        if not found or value > top or (value == top and mean > local):
                            top, local = value, mean
                        best = max(best, mean)
                        found = True
        if found:
            out[v, 0] = local
            out[v, 1] = best
