"""IBSI 1 grey level co-occurrence (``cm_*``) and run length (``rlm_*``) families against the IBSI reference values.

Every aggregation (2D, 2.5D, 3D; ``_avg`` and ``_comb``) on the IBSI digital phantom (its integer
intensities are the grey levels, no preprocessing) and on the CT phantom with configurations A-E.
The digital phantom table gives every value to 3 significant digits with tolerance 0; the pass rule
is the project's (``ReferenceValue.passes``), which accepts a value that rounds to the reference.

The matrix builders are also checked voxel by voxel against the definitions (a pair / a run counted
by walking the grid) on small random volumes, since the reference values only cover distance 1 and
the phantoms' geometry.
"""

import itertools
import math

import numpy as np
import pytest

from RadiomicsLabLib.ibsi import names
from RadiomicsLabLib.ibsi.config import IbsiSettings
from RadiomicsLabLib.ibsi.features import common, glcm, glrlm
from RadiomicsLabLib.ibsi.features.directions import DIRECTIONS_3D, directions
from RadiomicsLabLib.ibsi.reference import digital_phantom_roi

FAMILIES = {"cm": glcm, "rlm": glrlm}
SETTINGS = IbsiSettings(dimensions=("2D", "2.5D", "3D"), discretisation="none")


def _single_level_roi():
    """The digital phantom's real mask with one grey level everywhere inside it."""
    roi = digital_phantom_roi()
    return roi.with_levels(roi.intensity_mask.astype(np.int64), 1)


def test_single_grey_level_gives_nan_with_notes_where_undefined():
    roi = _single_level_roi()
    values = glcm.compute(roi, SETTINGS)
    for suffix in ("2D_avg", "2D_comb", "2_5D_avg", "2_5D_comb", "3D_avg", "3D_comb"):
        # correlation and information correlation 1 divide by a zero spread: undefined, with a note
        for tag in (f"cm_corr_{suffix}", f"cm_info_corr1_{suffix}"):
            assert math.isnan(values[tag])
            assert any(note.startswith(f"GLCM: {tag} is NaN:") and "single grey level" in note for note in roi.notes)
        # the rest is defined: every pair is (1, 1)
        assert values[f"cm_joint_max_{suffix}"] == 1.0
        assert values[f"cm_energy_{suffix}"] == 1.0
        assert values[f"cm_joint_entr_{suffix}"] == 0.0
        assert values[f"cm_contrast_{suffix}"] == 0.0
        assert values[f"cm_inv_diff_{suffix}"] == 1.0
        assert values[f"cm_info_corr2_{suffix}"] == 0.0
        assert values[f"cm_auto_corr_{suffix}"] == 1.0
    assert sum(math.isnan(v) for v in values.values()) == 12
    runs = glrlm.compute(roi, SETTINGS)
    assert not any(math.isnan(v) for v in runs.values())
    assert runs["rlm_gl_var_3D_comb"] == 0.0 and runs["rlm_lgre_3D_avg"] == 1.0
    assert len(roi.notes) == 12


@pytest.mark.parametrize("levels", [np.zeros((3, 3, 3), dtype=np.int64), np.pad([[[2]]], 1)],
                         ids=["empty ROI", "one voxel"])
def test_degenerate_roi_gives_nan_and_notes_not_exceptions(levels):
    roi = digital_phantom_roi()
    roi = roi.with_levels(np.asarray(levels, dtype=np.int64), 2)
    values = glcm.compute(roi, SETTINGS)
    assert len(values) == 150 and all(math.isnan(v) for v in values.values())
    assert sum(note.startswith("GLCM: all ") for note in roi.notes) == 6
    runs = glrlm.compute(roi, SETTINGS)
    if levels.any():  # one voxel: one run of length 1 in every direction
        assert runs["rlm_sre_3D_avg"] == 1.0 and runs["rlm_r_perc_2D_comb"] == 1.0
    else:
        assert all(math.isnan(v) for v in runs.values())


def _inside(point, shape):
    return all(0 <= p < s for p, s in zip(point, shape))


@pytest.mark.parametrize("seed", range(4))
def test_builders_match_a_walk_over_the_grid(seed):
    """Co-occurrence counts (distances 1 and 2) and runs (every direction, including the diagonals with
    negative components) equal the definitions evaluated voxel by voxel."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(2, 7, 3))
    levels = rng.integers(1, 4, shape) * (rng.random(shape) < 0.8)
    grey, index = common.grey_index(levels)
    voxels = [p for p in itertools.product(*map(range, shape)) if levels[p]]
    for distance in (1, 2):
        offsets = directions("3D", distance)
        counts = glcm.dense_matrices(index, grey.size, offsets)
        for o, d in enumerate(offsets):
            expected = np.zeros((grey.size, grey.size))
            for p in voxels:
                q = tuple(np.add(p, d))
                if _inside(q, shape) and levels[q]:
                    a, b = np.searchsorted(grey, [levels[p], levels[q]])
                    expected[a, b] += 1
                    expected[b, a] += 1
            assert np.array_equal(counts[o], expected), (distance, d)
    for d in DIRECTIONS_3D:
        expected = []
        for p in voxels:
            before = tuple(np.subtract(p, d))
            if _inside(before, shape) and levels[before] == levels[p]:
                continue  # not the first voxel of its run
            length, q = 0, p
            while _inside(q, shape) and levels[q] == levels[p]:
                length, q = length + 1, tuple(np.add(q, d))
            expected.append((p[0], int(levels[p]), length))
        z, g, length = glrlm.runs(index, d)
        assert sorted(zip(z.tolist(), grey[g].tolist(), length.tolist())) == sorted(expected), d


def test_dense_formulas_equal_the_engine():
    """The formulas on dense matrices (what voxel-wise maps use) give the engine's numbers."""
    roi = digital_phantom_roi()
    grey, index = common.grey_index(roi.levels)
    matrices = glcm.dense_matrices(index, grey.size, directions("3D"))
    per_direction = glcm.glcm_features(matrices, grey, roi.n_levels)
    merged = glcm.glcm_features(matrices.sum(axis=0), grey, roi.n_levels)
    values = glcm.compute(roi, SETTINGS.replaced(dimensions=("3D",)))
    for tag in glcm.BASE_TAGS:
        assert per_direction[tag].shape == (13,)
        assert np.mean(per_direction[tag]) == pytest.approx(values[f"{tag}_3D_avg"], rel=1e-12)
        assert float(merged[tag]) == pytest.approx(values[f"{tag}_3D_comb"], rel=1e-12)
    z, level, length = glrlm.runs(index, (0, 0, 1))
    dense = np.zeros((grey.size, length.max() + 1))
    np.add.at(dense, (level, length), 1)
    run_features = glrlm.glrlm_features(dense, grey, np.arange(length.max() + 1))
    cells, counts = np.unique(np.stack([level, length]), axis=1, return_counts=True)
    by_direction = common.matrix_features(glrlm.GlrlmFeatures(np.zeros(counts.size, int), grey[cells[0]], cells[1],
                                                               counts, 1), glrlm.BASE_TAGS)
    for tag in glrlm.BASE_TAGS:
        assert float(run_features[tag]) == pytest.approx(float(by_direction[tag][0]), rel=1e-12)


@pytest.mark.parametrize("prefix", FAMILIES)
def test_features_are_described(prefix):
    module = FAMILIES[prefix]
    assert len(module.FEATURES) == len(module.BASE_TAGS) * 6
    for tag, info in module.FEATURES.items():
        assert tag.startswith(prefix + "_") and tag.endswith(("_2D_avg", "_2D_comb", "_2_5D_avg", "_2_5D_comb",
                                                              "_3D_avg", "_3D_comb"))
        assert info["name"] and info["description"] and info["unit"] == "" and len(info["ibsi_id"]) == 4
        # pyradiomics' default (3D, averaged over directions) is named exactly as the project's name table has it
        if tag.endswith("_3D_avg"):
            assert (info["pyradiomics"] or "") == names.pyradiomics_name_of_ibsi(tag)
    assert list(module.keys(SETTINGS.replaced(dimensions=("3D",)))) == [t for t in module.FEATURES if "_3D_" in t]


def _random_cells(rng, n_matrices, symmetric):
    """Non-zero cells (matrix, i, j, count) of random count matrices, grouped by matrix, one of them empty."""
    cells = []
    for m in range(n_matrices):
        if m == 1:
            continue                                   # an empty matrix
        size = 1 if m == 2 else int(rng.integers(2, 50))     # matrix 2: a single grey level
        levels = np.sort(rng.choice(np.arange(1, 200), size, replace=False))
        dense = np.zeros((200, 200))
        for _ in range(int(rng.integers(1, 300))):
            a, b = rng.choice(levels, 2)
            count = float(rng.integers(1, 10 ** 5))
            dense[a, b] += count
            if symmetric:
                dense[b, a] += count
        i, j = np.nonzero(dense)
        cells.append((np.full(i.size, m), i, j, dense[i, j]))
    return tuple(np.concatenate(column) for column in zip(*cells))


def test_compiled_glcm_and_glrlm_formulas_equal_the_formula_classes():
    """The segment GLCM's compiled formulas (glcm.cell_features, shared with the IBSI GLCM maps) and the GLRLM's
    (count_matrix_formulas) give what GlcmFeatures and GlrlmFeatures give, to rounding, on random matrices with
    large counts, an empty one (NaN, left out) and one of a single grey level (correlation and information
    correlation 1 NaN)."""
    from RadiomicsLabLib.ibsi.features import _texture_kernels

    rng = np.random.default_rng(4)
    for trial in range(10):
        matrix, i, j, counts = _random_cells(rng, 6, symmetric=True)
        compiled, non_empty = glcm.cell_features(matrix, i, j, counts, 6, 37)
        expected_features = glcm.GlcmFeatures(matrix, i, j, counts, 6, 37)
        expected = common.matrix_features(expected_features, glcm.BASE_TAGS)
        assert np.array_equal(non_empty, ~expected_features.empty)
        for tag in glcm.BASE_TAGS:
            np.testing.assert_allclose(compiled[tag], expected[tag], rtol=1e-10, atol=1e-12, err_msg=f"{trial} {tag}")
        assert np.isnan(compiled["cm_corr"][2]) and np.isnan(compiled["cm_info_corr1"][2])
        matrix, i, j, counts = _random_cells(rng, 6, symmetric=False)
        values, filled = _texture_kernels.count_matrix_formulas(matrix, i, j, counts, 6, np.full(6, -1.0))
        expected_features = glrlm.GlrlmFeatures(matrix, i, j, counts, 6)
        expected = common.matrix_features(expected_features, glrlm.BASE_TAGS)
        assert np.array_equal(filled, ~expected_features.empty)
        for k, tag in enumerate(glrlm.BASE_TAGS):
            np.testing.assert_allclose(values[:, k], expected[tag], rtol=1e-12, atol=1e-300, err_msg=f"{trial} {tag}")


def test_dense_cells_are_numpys_nonzero_cells_in_c_order():
    """The compiled listing of dense matrices' non-zero cells (what the 3D GLCM and GLRLM evaluate, in this order)
    against ``np.nonzero``: integer and float matrices, empty and full ones."""
    rng = np.random.default_rng(4)
    for trial in range(100):
        shape = tuple(int(s) for s in rng.integers(1, 10, size=3))
        dense = (rng.random(shape) < [0.0, 0.3, 1.0][trial % 3]) * rng.integers(1, 1000, size=shape)
        if trial % 2:
            dense = dense * 0.5
        matrix, a, b = np.nonzero(dense)
        listed = common.dense_cells(dense)
        for got, expected in zip(listed, (matrix, a, b, dense[matrix, a, b])):
            np.testing.assert_array_equal(got, expected)
        assert listed[3].dtype == dense.dtype
