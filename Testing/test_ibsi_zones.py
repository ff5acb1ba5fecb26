"""IBSI 1 zone-type texture families against the IBSI reference values.

GLSZM (``szm_*``), GLDZM (``dzm_*``), NGTDM (``ngt_*``) and NGLDM (``ngl_*``), each in 2D, 2.5D and
3D, on the IBSI digital phantom (its integer intensities are the grey levels, no preprocessing) and on
the CT phantom with configurations A-E.

The digital phantom table gives every value to 3 significant digits with tolerance 0; the pass rule
is the project's (``ReferenceValue.passes``), which accepts a value that rounds to the reference.
"""

import math

import numpy as np
import pytest

from RadiomicsLabLib.ibsi.config import IbsiSettings
from RadiomicsLabLib.ibsi.features import gldzm, glszm, ngldm, ngtdm
from RadiomicsLabLib.ibsi.reference import digital_phantom_roi

FAMILIES = {"szm": glszm, "dzm": gldzm, "ngt": ngtdm, "ngl": ngldm}
SETTINGS = IbsiSettings(dimensions=("2D", "2.5D", "3D"), discretisation="none")


@pytest.mark.parametrize("prefix", FAMILIES)
def test_features_are_described(prefix):
    module = FAMILIES[prefix]
    for tag, info in module.FEATURES.items():
        assert tag.startswith(prefix + "_") and tag.endswith(("_2D", "_2_5D", "_3D"))
        assert info["name"] and info["description"] and info["unit"] == ""
    if prefix != "dzm":  # pyradiomics has no GLDZM
        assert module.FEATURES[f"{prefix}_glnu_3D" if prefix != "ngt" else "ngt_busyness_3D"]["pyradiomics"]


def test_single_grey_level_gives_nan_with_notes():
    """One grey level: NGTDM coarseness, contrast, busyness and strength are undefined; the rest is defined."""
    roi = digital_phantom_roi()
    roi = roi.with_levels(roi.intensity_mask.astype(np.int64), 1)
    values = {}
    for module in FAMILIES.values():
        values.update(module.compute(roi, SETTINGS))
    undefined = {f"ngt_{name}_{suffix}" for name in ("coarseness", "contrast", "busyness", "strength")
                 for suffix in ("2D", "2_5D", "3D")}
    assert {tag for tag, value in values.items() if math.isnan(value)} == undefined
    for tag in undefined:
        assert any(tag in note for note in roi.notes), (tag, roi.notes)
    assert values["ngt_complexity_3D"] == 0.0
    assert values["szm_gl_var_3D"] == 0.0 and values["szm_glnu_norm_3D"] == 1.0
    assert values["ngl_dc_perc_2D"] == 1.0


def test_isolated_voxels_and_empty_roi():
    """A slice of single voxels has no NGTDM neighbourhood (that slice is left out of the 2D mean, with a
    note); an empty ROI gives NaN everywhere with a note, never an exception."""
    roi = digital_phantom_roi()
    levels = roi.levels.copy()
    levels[0] = 0
    levels[0, 0, 0] = 2  # slice 0 keeps one voxel
    roi.intensity_mask[:] = levels > 0
    roi = roi.with_levels(levels, int(levels.max()))
    values = ngtdm.compute(roi, SETTINGS)
    assert not math.isnan(values["ngt_coarseness_2D"])
    assert any("ngt_coarseness_2D averages 3 of 4 slices" in note for note in roi.notes), roi.notes

    roi.intensity_mask[:] = False
    roi = roi.with_levels(np.zeros_like(levels), 0)
    for module in FAMILIES.values():
        assert all(math.isnan(v) for v in module.compute(roi, SETTINGS).values())
    assert any("intensity mask is empty" in note for note in roi.notes)


def test_gldzm_distance_uses_the_morphological_mask():
    """A hole cut by re-segmentation (outside the intensity mask, inside the morphological mask) is no ROI edge."""
    from RadiomicsLabLib.ibsi.roi import Roi

    levels = np.ones((1, 5, 5), dtype=np.int64)
    levels[0, 1:4, 1:4] = 2  # a ring of level 2 at distance 2 from the edge, around the centre voxel
    levels[0, 2, 2] = 0
    morphological = np.ones(levels.shape, bool)
    roi = Roi(levels.astype(float), morphological, levels > 0, (1.0, 1.0, 1.0), levels, 2)
    (matrix,) = gldzm.distance_zone_matrices(roi, SETTINGS, in_plane=True)
    assert sorted(zip(matrix.i.tolist(), matrix.j.tolist(), matrix.count.tolist())) == [(1, 1, 1.0), (2, 2, 1.0)]
    assert matrix.n_voxels == 24


def test_neighbourhood_counts_match_a_direct_count():
    """The fused NGTDM / NGLDM pass (dense cube sums and shifted comparisons): neighbour sums, their number and the
    dependent neighbours of every mask voxel equal a direct count over the neighbours, for integer, fractional and
    negative coarseness, distances 1 and 2, in-plane and 3D, and grey levels too large for its int32 arithmetic."""
    from RadiomicsLabLib.ibsi.features import _texture_kernels, zones

    rng = np.random.default_rng(3)
    for distance in (1, 2):
        for scale in (1, 1 << 33):
            levels = np.pad(rng.integers(0, 5, (6, 7, 8)), distance) * scale
            mask = levels > 0
            mask[2, 3, 4] = False                         # a voxel with a grey level outside the mask
            levels[2, 3, 4] = 3 * scale
            for in_plane in (False, True):
                offsets = zones.neighbour_offsets(distance, in_plane)
                for alpha, limit in ((0.0, 0), (1.5 * scale, scale + scale // 2), (-0.5, -1)):
                    total, count, dependent, voxels = _texture_kernels.neighbourhood_counts(
                        levels, mask, distance, in_plane, limit)
                    assert np.array_equal(voxels, np.flatnonzero(mask))
                    for k, (z, y, x) in enumerate(np.argwhere(mask)):
                        around = [(z + a, y + b, x + c) for a, b, c in offsets]
                        assert total[k] == sum(levels[v] for v in around if mask[v])
                        assert count[k] == sum(bool(mask[v]) for v in around)
                        assert dependent[k] == sum(levels[v] > 0 and abs(levels[v] - levels[z, y, x]) <= alpha
                                                   for v in around)


def test_label_zones_padded_or_not():
    """Zones of a grid with zero border faces are labelled in place: the same as after padding it."""
    from RadiomicsLabLib.ibsi.features import zones

    rng = np.random.default_rng(5)
    inner = rng.integers(0, 3, (5, 6, 7))
    for in_plane in (False, True):
        padded, bare = zones.label_zones(np.pad(inner, 1), in_plane), zones.label_zones(inner, in_plane)
        assert np.array_equal(padded.label, bare.label)
        assert np.array_equal(padded.size, bare.size) and np.array_equal(padded.level, bare.level)


def test_compiled_shared_formulas_equal_the_formula_functions():
    """zones.matrix_values (the shared formulas compiled, all at once) gives what the formula functions give one by
    one, to rounding, on random count matrices (wide grey level and column ranges, counts of 1 to thousands); an empty
    matrix falls back to the functions, with their reasons."""
    from RadiomicsLabLib.ibsi.features import common, zones

    functions = {function.__name__: function for function in zones.SHARED_FORMULAS}
    rng = np.random.default_rng(11)
    for trial in range(40):
        n = int(rng.integers(1, 400))
        i = rng.integers(1, int(rng.integers(2, 60)), n)
        j = rng.integers(1, int(rng.integers(2, 3000)), n)
        counts = rng.integers(1, 5000, n).astype(np.float64)
        matrix = zones.CountMatrix._aggregate(i, j, counts, int(rng.integers(1, 10 ** 6)))
        compiled, reasons = zones.matrix_values(functions, matrix)
        expected, _ = common.evaluate(functions, matrix)
        assert reasons == {}
        for name, value in expected.items():
            assert compiled[name] == pytest.approx(value, rel=1e-12, abs=1e-300), (trial, name)
    empty = zones.CountMatrix._aggregate(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 5)
    values, reasons = zones.matrix_values(functions, empty)
    assert math.isnan(values["small_emphasis"]) and reasons["small_emphasis"] == "the matrix is empty"
    assert values["percentage"] == 0.0            # N_s / N_v of an empty matrix, as the function gives it
