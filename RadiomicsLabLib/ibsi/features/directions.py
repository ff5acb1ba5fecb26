"""Neighbour directions and texture aggregation names shared by the texture families (IBSI 1, section 3.6.1)."""

import numpy as np

#: The 13 unique directions of a 26-connected 3D neighbourhood, as (dz, dy, dx).
DIRECTIONS_3D = tuple(
    (dz, dy, dx)
    for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    if (dz, dy, dx) > (0, 0, 0)
)
#: The 4 unique in-plane directions of an 8-connected 2D neighbourhood, as (0, dy, dx).
DIRECTIONS_2D = tuple(d for d in DIRECTIONS_3D if d[0] == 0)

#: Tag suffix of each aggregation: ``cm_contrast`` + ``_2_5D_comb`` and so on.
SUFFIX = {"2D": "2D", "2.5D": "2_5D", "3D": "3D"}


def directions(dimension: str, distance: int = 1) -> tuple:
    """Offsets (dz, dy, dx) at Chebyshev ``distance`` for "2D"/"2.5D" (in-plane) or "3D"."""
    base = DIRECTIONS_3D if dimension == "3D" else DIRECTIONS_2D
    return tuple(tuple(distance * c for c in d) for d in base)


def shifted_pairs(levels: np.ndarray, offset: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Grey levels of every voxel pair (v, v + offset) with both voxels inside the grid; 0 means outside the ROI."""
    slices_a, slices_b = [], []
    for delta, size in zip(offset, levels.shape):
        slices_a.append(slice(max(0, -delta), size - max(0, delta)))
        slices_b.append(slice(max(0, delta), size - max(0, -delta)))
    return levels[tuple(slices_a)], levels[tuple(slices_b)]
