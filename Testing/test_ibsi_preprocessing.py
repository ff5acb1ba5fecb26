"""IBSI chapter 1 preprocessing (interpolation, rounding, re-segmentation) against the IBSI reference tables.

Real data: the IBSI 1 CT phantom with configurations A-E (every ``Diagnostics-*`` reference row)
and the IBSI 1 digital phantom. Synthetic grids only for the documented grid-alignment example and the half-integer cases of the
whole-grid statistics.
"""

import math
import time

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.limits import run_in_background
from RadiomicsLabLib.ibsi.config import IbsiSettings
from RadiomicsLabLib.ibsi.configurations import CONFIGURATIONS, DIGITAL_PHANTOM
from RadiomicsLabLib.ibsi.preprocessing import (FEATURES, interpolated_geometry, interpolation_grid, prepare_roi)
from RadiomicsLabLib.ibsi.reference import chapter1_reference, digital_phantom_roi, ibsi1_images
from RadiomicsLabLib.ibsi.roi import Roi


@pytest.fixture(scope="module")
def ct_phantom():
    """The IBSI CT phantom, converted to 32-bit float and rounded to integers as IBSI advises for its NIfTI copy."""
    image, mask = ibsi1_images("ct_phantom")
    image = sitk.Round(sitk.Cast(image, sitk.sitkFloat32))
    mask = sitk.Round(sitk.Cast(mask, sitk.sitkFloat32))
    return image, mask


@pytest.fixture(scope="module")
def prepared(ct_phantom):
    """Configuration letter -> (Roi, diagnostics), computed once."""
    return {name: prepare_roi(*ct_phantom, settings) for name, settings in CONFIGURATIONS.items()}


@pytest.fixture(scope="module")
def digital_phantom():
    return ibsi1_images("digital_phantom")


@pytest.mark.parametrize("name", "ABCDE")
def test_ct_phantom_diagnostics(prepared, name):
    _, diagnostics = prepared[name]
    references = [r for r in chapter1_reference(f"config_{name}") if r.family.startswith("Diagnostics")]
    assert len(references) == 60
    missing = [r.tag for r in references if r.tag not in diagnostics]
    assert not missing, f"config {name}: diagnostic tags not computed: {missing}"
    failing = [(r.tag, diagnostics[r.tag], r.reference, r.tolerance) for r in references
               if not r.passes(diagnostics[r.tag])]
    assert not failing, f"config {name}: failing diagnostics (tag, value, reference, tolerance): {failing}"
    assert set(diagnostics) <= set(FEATURES), "every diagnostic tag is described in FEATURES"


def test_ct_phantom_config_c_statistics(prepared):
    roi, _ = prepared["C"]
    values = roi.values()
    computed = {"stat_mean": values.mean(), "stat_min": values.min(), "stat_max": values.max()}
    references = [r for r in chapter1_reference("config_C") if r.tag in computed]
    assert len(references) == 3
    failing = [(r.tag, computed[r.tag], r.reference, r.tolerance) for r in references if not r.passes(computed[r.tag])]
    assert not failing, f"config C statistics failing: {failing}"


def test_roi_geometry_and_masks(prepared):
    roi_b, _ = prepared["B"]
    assert roi_b.spacing == (3.0, 2.0, 2.0)           # 2D configuration: z kept, in-plane 2 mm
    assert roi_b.image.shape == (60, 99, 100)
    roi_e, _ = prepared["E"]
    assert roi_e.spacing == (2.0, 2.0, 2.0) and roi_e.image.shape == (90, 99, 100)
    for roi, _ in prepared.values():
        assert roi.image.dtype == np.float64
        assert not np.any(roi.intensity_mask & ~roi.morphological_mask)   # re-segmentation only removes voxels
    # Rounded CT intensities after interpolation (configurations B-E).
    assert np.array_equal(roi_e.image, np.rint(roi_e.image))


def test_bounding_box_equals_the_extent_of_numpys_nonzero_elements():
    """The compiled one-pass box scan (planes read whole, a (y, x) projection for the other two axes) against
    ``np.nonzero`` on random sparse arrays of every type it reads: empty, one element, elements on the edges, labels
    whose low byte is 0, NaN, infinity and -0.0 (zero)."""
    from RadiomicsLabLib.ibsi._preprocessing_kernels import bounding_box

    rng = np.random.default_rng(7)
    for trial in range(400):
        shape = tuple(int(n) for n in rng.integers(1, 9, 3))
        positions = [tuple(int(rng.integers(0, n)) for n in shape) for _ in range(int(rng.integers(0, 4)))]
        for dtype, value in ((bool, True), (np.uint8, 3), (np.int16, 256), (np.int64, -(1 << 40)), (np.float64, np.nan),
                             (np.float32, -np.inf), (np.float64, 0.25)):
            array = np.zeros(shape, dtype=dtype)
            if dtype == np.float64 and value == 0.25:
                array[...] = -0.0       # negative zeros are zeros
            for position in positions:
                array[position] = value
            nonzero = np.nonzero(array)
            expected = None if not positions else tuple(slice(int(c.min()), int(c.max()) + 1) for c in nonzero)
            assert bounding_box(array) == expected, (shape, dtype, positions)


def test_roi_box_is_the_bounding_box_of_the_masks(prepared):
    """The box prepare_roi hands the families is the morphological mask's bounding box (which holds the intensity
    mask); the box-limited scans give what whole-grid numpy gives."""
    for roi, _ in prepared.values():
        nonzero = np.argwhere(roi.morphological_mask)
        assert roi.box == tuple(slice(int(a), int(b) + 1) for a, b in zip(nonzero.min(axis=0), nonzero.max(axis=0)))
        inside = np.argwhere(roi.intensity_mask)
        assert roi.bounding_box(roi.intensity_mask) == \
            tuple(slice(int(a), int(b) + 1) for a, b in zip(inside.min(axis=0), inside.max(axis=0)))
        assert np.array_equal(roi.values(), roi.image[roi.intensity_mask])
        unknown = Roi(roi.image, roi.morphological_mask, roi.intensity_mask, roi.spacing)   # box found on demand
        assert unknown.box is None and unknown.masks_box() == roi.box
    empty = Roi(np.zeros((2, 3, 4)), np.zeros((2, 3, 4), bool), np.zeros((2, 3, 4), bool), (1.0, 1.0, 1.0))
    assert empty.bounding_box(empty.intensity_mask) is None and empty.values().size == 0


def test_digital_phantom_is_used_as_it_is(digital_phantom):
    roi, diagnostics = prepare_roi(*digital_phantom, DIGITAL_PHANTOM)
    reference = digital_phantom_roi()
    assert np.array_equal(roi.image, reference.image)
    assert np.array_equal(roi.morphological_mask, reference.morphological_mask)
    assert np.array_equal(roi.intensity_mask, reference.intensity_mask)
    assert roi.spacing == reference.spacing == (2.0, 2.0, 2.0)
    assert diagnostics["int_mask_vox_count_reseg_roi"] == 74
    assert (diagnostics["img_dim_x_init_img"], diagnostics["img_dim_y_init_img"], diagnostics["img_dim_z_init_img"]) == (5, 4, 4)


def test_grid_alignment_follows_ibsi_example():
    # IBSI 1, "Interpolation grid": 4 x 4 grid with 3 mm spacing to 2 mm -> 6 x 6, grids centred.
    size, origin = interpolation_grid((4, 4), (3.0, 3.0), (2.0, 2.0))
    assert size == (6, 6)
    assert origin == pytest.approx((0.5 * (3 - 2 / 3 * 5),) * 2)
    image = sitk.Image(4, 4, 4, sitk.sitkFloat32)
    image.SetSpacing((3.0, 3.0, 3.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    size, spacing, world_origin = interpolated_geometry(image, (2.0, 2.0, None))
    assert size == (6, 6, 4) and spacing == (2.0, 2.0, 3.0)
    # x_b,w = x_a,w + (s_a (n_a - 1) - s_b (n_b - 1)) / 2 = x_a,w - 0.5
    assert world_origin == pytest.approx((9.5, 19.5, 30.0))


def test_nearest_interpolation_keeps_original_intensities(digital_phantom):
    settings = IbsiSettings(new_spacing=(1.0, 1.0, 1.0), interpolation="nearest", mask_interpolation="nearest")
    roi, diagnostics = prepare_roi(*digital_phantom, settings)
    original = sitk.GetArrayFromImage(digital_phantom[0])
    assert roi.image.shape == (8, 8, 10)
    assert set(np.unique(roi.image)) <= set(np.unique(original))
    assert diagnostics["int_mask_vox_count_interp_roi"] == 74 * 8       # each 2 mm voxel becomes 8 voxels of 1 mm


# ------------------------------------------------------------------------------------- bad input

def _raises(match, image, mask, **changes):
    with pytest.raises(RadiomicsLabError, match=match):
        prepare_roi(image, mask, IbsiSettings(**changes))


def test_inverted_resegmentation_range(digital_phantom):
    _raises("inverted", *digital_phantom, resegment_range=(400.0, -500.0))


@pytest.mark.parametrize("field", ["interpolation", "mask_interpolation"])
def test_unknown_interpolation(digital_phantom, field):
    _raises("Unknown .*interpolation 'bicubic'", *digital_phantom, new_spacing=(1.0, 1.0, 1.0), **{field: "bicubic"})


@pytest.mark.parametrize("spacing", [(0.0, 2.0, 2.0), (2.0, -1.0, 2.0), (2.0, 2.0, float("nan"))])
def test_non_positive_spacing(digital_phantom, spacing):
    _raises("positive number of mm", *digital_phantom, new_spacing=spacing)


def test_empty_mask(digital_phantom):
    image, mask = digital_phantom
    _raises("mask is empty", image, mask * 0)


def test_mask_empty_after_resegmentation(digital_phantom):
    _raises("empty after re-segmentation", *digital_phantom, resegment_range=(100.0, 200.0))


def test_mask_vanishing_on_interpolation(digital_phantom):
    image, mask = digital_phantom
    single = sitk.Image(mask)
    single[:, :, :] = 0
    single[2, 2, 2] = 1
    _raises("vanished on interpolation", image, single, new_spacing=(20.0, 20.0, 20.0), mask_threshold=0.9)


def test_image_and_mask_on_different_grids(digital_phantom, ct_phantom):
    image, mask = digital_phantom
    _raises("not on the same grid", image, ct_phantom[1])             # different size
    moved = sitk.Image(mask)
    moved.SetOrigin((5.0, 0.0, 0.0))
    _raises("origin differs", image, moved)
    scaled = sitk.Image(mask)
    scaled.SetSpacing((1.0, 2.0, 2.0))
    _raises("spacing differs", image, scaled)


@pytest.mark.parametrize("scale, rounding", [(1.0, True), (1.37, True), (1.37, False)])
def test_diagnostics_are_numpy_statistics(ct_phantom, scale, rounding):
    """The compiled one-pass intensity statistics of the diagnostics equal numpy's min / max / mean exactly, on
    integer intensities (exact sums) and on non-integer ones (numpy's mean)."""
    import dataclasses

    image, mask = ct_phantom
    image = image * scale
    settings = dataclasses.replace(CONFIGURATIONS["C"], round_intensities=rounding)
    roi, diagnostics = prepare_roi(image, mask, settings)
    initial = sitk.GetArrayFromImage(image).astype(np.float64)
    if rounding:
        initial = np.rint(initial)
    initial_roi = initial[sitk.GetArrayViewFromImage(mask) != 0]
    expected = {"init_img": initial, "interp_img": roi.image, "init_roi": initial_roi,
                "interp_roi": roi.image[roi.morphological_mask], "reseg_roi": roi.image[roi.intensity_mask]}
    for stage, values in expected.items():
        prefix = "" if stage.endswith("img") else "int_mask_"
        for key, value in (("mean", values.mean()), ("min", values.min()), ("max", values.max())):
            assert diagnostics[f"{prefix}{key}_int_{stage}"] == float(value), (stage, key)
    for stage, values in (("interp_roi", roi.morphological_mask), ("reseg_roi", roi.intensity_mask)):
        assert diagnostics[f"int_mask_vox_count_{stage}"] == float(values.sum())
        extent = [float(np.ptp(c) + 1) for c in np.nonzero(values)]
        assert [diagnostics[f"int_mask_bb_dim_{axis}_{stage}"] for axis in "zyx"] == extent


def _same(a: dict, b: dict) -> bool:
    """Equal values, NaN equal to NaN."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)


def _edge_case(data):
    """STS_002's CT and GTV cut at the GTV's first slice and the column after its last one: the ROI touches the
    image's edge on two sides, so a crop around it is clipped there (local intensity's spheres leave the grid)."""
    folder = data / "sts" / "STS_002"
    image, mask = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    z, _, x = np.nonzero(sitk.GetArrayViewFromImage(mask))
    return image[:int(x.max()) + 1, :, int(z.min()):], mask[:int(x.max()) + 1, :, int(z.min()):]


@pytest.mark.parametrize("threads", ["1", "2"])
def test_cropped_roi_gives_the_whole_grids_features(data, ct_phantom, monkeypatch, threads):
    """The engine's preprocessing keeps only the ROI's box and the local intensity sphere's radius around it
    (``crop_mm``): every diagnostic, feature value and note is that of the whole grid, bit for bit, the Roi's arrays
    are the whole grid's in the box, on the CT phantom (A-E), a sarcoma CT (B, C) and that CT cut at its GTV, on one
    thread and on two."""
    from RadiomicsLabLib.ibsi.engine import compute_features, features_of_roi
    from RadiomicsLabLib.ibsi.features.local_intensity import RADIUS_MM

    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    folder = data / "sts" / "STS_002"
    sarcoma = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    cases = [(ct_phantom, name) for name in "ABCDE"] + [(sarcoma, "B"), (sarcoma, "C"), (_edge_case(data), "C")]
    for (image, mask), name in cases:
        settings = CONFIGURATIONS[name]
        whole, whole_diagnostics = prepare_roi(image, mask, settings)
        crop, crop_diagnostics = prepare_roi(image, mask, settings, crop_mm=RADIUS_MM)
        assert crop_diagnostics == whole_diagnostics, name
        region = tuple(slice(g, g + n) for g, n in zip(crop.grid_start, crop.image.shape))
        assert crop.image.size < whole.image.size, name
        for array in ("image", "morphological_mask", "intensity_mask"):
            assert np.array_equal(getattr(crop, array), getattr(whole, array)[region]), (name, array)
        assert crop.morphological_mask.sum() == whole.morphological_mask.sum(), name   # the whole ROI
        expected = features_of_roi(whole, settings)
        result = compute_features(image, mask, settings)
        assert _same(result.values, expected.values), name
        assert result.notes == expected.notes and result.diagnostics == whole_diagnostics, name


@pytest.mark.parametrize("threads", ["1", "2"])
def test_cropped_roi_with_inexact_sums(ct_phantom, monkeypatch, threads):
    """Rounded intensities too large for an exact float64 sum over the interpolated grid: the mean is numpy's, as
    without the crop, also when the whole-grid pass ran on the background thread (two threads) and
    ``compute_features`` took the diagnostics after the features."""
    from RadiomicsLabLib.ibsi.engine import compute_features
    from RadiomicsLabLib.ibsi.features.local_intensity import RADIUS_MM

    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    image, mask = ct_phantom
    image = sitk.Cast(image, sitk.sitkFloat64) * 1e12
    settings = CONFIGURATIONS["C"].replaced(resegment_range=None)
    whole, expected = prepare_roi(image, mask, settings)
    crop, diagnostics = prepare_roi(image, mask, settings, crop_mm=RADIUS_MM)
    assert diagnostics == expected
    assert diagnostics["mean_int_interp_img"] == float(whole.image.mean())
    assert abs(diagnostics["mean_int_interp_img"] * whole.image.size) > 2.0 ** 53      # the sum is not exact
    assert compute_features(image, mask, settings, families=("statistics",)).diagnostics == expected


def test_finish_holds_the_image_for_its_inexact_fallback(ct_phantom):
    """start_roi's finish() may be called after the caller let go of the image: where the whole interpolated grid's
    sum is not exact, it interpolates the image again (read in place, a view of its buffer), which it holds."""
    import gc

    from RadiomicsLabLib.ibsi.features.local_intensity import RADIUS_MM
    from RadiomicsLabLib.ibsi.preprocessing import start_roi

    image, mask = ct_phantom
    settings = CONFIGURATIONS["C"].replaced(resegment_range=None)
    _, expected = prepare_roi(sitk.Cast(image, sitk.sitkFloat64) * 1e12, mask, settings, crop_mm=RADIUS_MM)
    _, finish = start_roi(sitk.Cast(image, sitk.sitkFloat64) * 1e12, mask, settings, crop_mm=RADIUS_MM)
    gc.collect()
    reused = [np.full(sitk.GetArrayViewFromImage(image).shape, 7.0) for _ in range(4)]   # memory freed meanwhile
    assert finish() == expected and len(reused) == 4


def _linear_stats_arguments(shape, spacing, new_spacing):
    """(shift, zoom, grid) of the compiled trilinear kernels for an array of ``shape`` onto ``new_spacing``."""
    grid, origin = interpolation_grid(shape, spacing, new_spacing)
    zoom = np.asarray(new_spacing, dtype=np.float64) / np.asarray(spacing, dtype=np.float64)
    return np.asarray(origin, dtype=np.float64) / zoom, zoom, grid


def test_whole_grid_statistics_of_rounded_values_are_those_of_scipy(data):
    """The separable pass for the whole interpolated grid's diagnostics (``trilinear_stats``) gives the (min, max,
    sum) of scipy's order-1 interpolation rounded to integers, bit for bit but for a zero's sign: on the four
    sarcoma CTs onto 2 mm (as they are, and scaled by 1.37 with the source values rounded first, as float CTs are
    read), on images with a zero background (a PET read rounded: about half of its points within rounding of 0,
    which the pass rounds without recomputing them; brain1's MR), and on small grids built to land on half-integers
    (values -3..3, dyadic and other weights, zero backgrounds), where rounding the separable value alone would differ
    at some points (checked here): those points take the 24-product order."""
    from scipy import ndimage

    from RadiomicsLabLib.ibsi import _preprocessing_kernels as kernels, preprocessing

    def expected(array, spacing, new_spacing, source_rounding):
        shift, zoom, grid = _linear_stats_arguments(array.shape, spacing, new_spacing)
        source = np.rint(array.astype(np.float64)) if source_rounding else array.astype(np.float64)
        values = np.rint(ndimage.affine_transform(source, zoom, offset=shift * zoom, output_shape=grid, order=1,
                                                  mode="nearest", output=np.float64))
        return values, (float(values.min()), float(values.max()), float(values.sum()))

    def computed(array, spacing, new_spacing, source_rounding):
        """The whole grid in one pass; the same, combined, from parts of 5 planes (the diagnostics' parts). Both also
        give the (min, max, sum) of ``array``'s own values, as its own statistics pass does: the whole pass counting
        every plane, the parts the planes of :func:`_counted_planes` (each plane once, in any part)."""
        shift, zoom, grid = _linear_stats_arguments(array.shape, spacing, new_spacing)
        own = tuple(float(v) for v in preprocessing._compiled_statistics(np.ascontiguousarray(array), source_rounding))
        whole, whole_own = preprocessing._interpolated_part(array, shift, zoom, grid, 0, source_rounding,
                                                            (0, array.shape[0]))
        whole = tuple(float(v) for v in whole)
        parts = [(first, min(5, grid[0] - first)) for first in range(0, grid[0], 5)]
        counted = preprocessing._counted_planes(parts, shift[0], zoom[0], array.shape[0])
        starts, stops = [start for start, _ in counted], [stop for _, stop in counted]   # every plane, once
        assert starts[0] == 0 and stops[-1] == array.shape[0] and starts[1:] == stops[:-1] and \
            all(start <= stop for start, stop in counted)
        results = [preprocessing._interpolated_part(array, shift, zoom, (planes, *grid[1:]), first, source_rounding,
                                                    planes_counted)
                   for (first, planes), planes_counted in zip(parts, counted)]
        assert preprocessing._combined([interpolated for interpolated, _ in results]) == whole
        assert whole_own == own and preprocessing._combined([image for _, image in results]) == own
        # none counted: the interpolated grid's alone, the image's statistics empty
        assert preprocessing._interpolated_part(array, shift, zoom, grid, 0, source_rounding, (0, 0)) == \
            (whole, (math.inf, -math.inf, 0.0))
        return whole

    zero_background = ("sts/STS_002/PET_image.nii.gz", "pyradiomics_cases/brain1_image.nrrd")   # read rounded
    cts = tuple(f"sts/{case}/CT_image.nii.gz" for case in ("STS_001", "STS_002", "STS_003", "STS_004"))
    for path in cts + zero_background:
        image = sitk.ReadImage(str(data / path))
        spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
        array = sitk.GetArrayFromImage(image)
        variants = ((array, True),) if path in zero_background else \
            ((array, False), (array.astype(np.float64) * 1.37, True))
        for array, source_rounding in variants:
            _, reference = expected(array, spacing, (2.0, 2.0, 2.0), source_rounding)
            assert path in cts or reference[0] == 0.0, path
            assert computed(array, spacing, (2.0, 2.0, 2.0), source_rounding) == reference, path

    rng = np.random.default_rng(7)
    spacings = (0.5, 0.9765625, 1.0, 1.1, 1.25, 2.0, 3.27, 0.7)
    differs = 0
    for _ in range(150):
        shape = tuple(int(n) for n in rng.integers(2, 20, 3))
        spacing = tuple(float(rng.choice(spacings)) for _ in range(3))
        new_spacing = tuple(float(rng.choice((0.5, 1.0, 1.5, 2.0, 3.0))) for _ in range(3))
        array = rng.integers(-3, 4, shape).astype(np.float64)
        array[rng.random(shape) < 0.4] = 0.0
        values, reference = expected(array, spacing, new_spacing, False)
        assert computed(array, spacing, new_spacing, False) == reference, (shape, spacing, new_spacing)
        # the plain separable value (along y, then x, then z), rounded, differs from scipy's at some points
        shift, zoom, grid = _linear_stats_arguments(shape, spacing, new_spacing)
        (z0, z1, wz0, wz1), (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) = (
            kernels._axis_weights(n, m, s, f, 0, 0) for n, m, s, f in zip(grid, shape, shift, zoom))
        along_y = array[:, y0] * wy0[:, None] + array[:, y1] * wy1[:, None]
        along_x = along_y[:, :, x0] * wx0 + along_y[:, :, x1] * wx1
        separable = along_x[z0] * wz0[:, None, None] + along_x[z1] * wz1[:, None, None]
        differs += int(np.sum(np.rint(separable) != values))
    assert differs > 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("failure", ["family", "empty mask"])
def test_a_failed_extraction_drops_the_whole_image_passes_not_started(data, monkeypatch, threads, failure):
    """When a feature family fails (``compute_features``) or the preprocessing itself does (an empty mask, found after
    the whole interpolated grid's pass was started), the parts of that pass not started yet are dropped and the error
    comes out at once: with one thread nothing of it is computed (the parts wait for ``finish()``), with two only the
    part the background thread had started, which ends on its own; the image it reads stays held until then, though
    the caller let go of it (its values those of the same part of an extraction that did not fail)."""
    import gc
    import threading

    from RadiomicsLabLib.ibsi import engine, preprocessing
    from RadiomicsLabLib.limits import compute_threads

    monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
    monkeypatch.setattr(preprocessing, "STATISTICS_PART_VALUES", 2 ** 16)   # STS_002's 2 mm grid: 8 parts
    computed, running = {}, threading.Event()
    real_part, real_mask_array = preprocessing._interpolated_part, preprocessing._mask_array

    def part(*args):      # the first one slowed down, so that the others are still waiting when the error is out
        if not computed:
            running.set()
            time.sleep(0.3)
        computed[args[4]] = real_part(*args)
        return computed[args[4]]

    def started_first():   # with two threads the failure comes once the background thread has started a part
        assert compute_threads() < 2 or running.wait(30)

    monkeypatch.setattr(preprocessing, "_interpolated_part", part)
    folder = data / "sts" / "STS_002"

    def read():
        return sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))

    engine.compute_features(*read(), CONFIGURATIONS["C"])
    complete, computed = dict(computed), {}
    running.clear()
    assert len(complete) == 8
    image, mask = read()
    if failure == "family":
        def failing(*_args, **_kwargs):
            started_first()
            raise RuntimeError("a family failed")

        monkeypatch.setattr(engine, "features_of_roi", failing)
        with pytest.raises(RuntimeError, match="a family failed"):
            engine.compute_features(image, mask, CONFIGURATIONS["C"])
    else:
        monkeypatch.setattr(preprocessing, "_mask_array", lambda *args: (started_first(), real_mask_array(*args))[1])
        with pytest.raises(RadiomicsLabError, match="The mask is empty"):
            engine.compute_features(image, mask * 0, CONFIGURATIONS["C"])
    del image, mask
    gc.collect()
    reused = [np.full((48, 143, 161), 7.0, dtype=np.float32) for _ in range(4)]   # memory freed meanwhile
    run_in_background(lambda: None).result()        # the background thread has ended what it had started
    expected = {1: set(), 2: {0}}[compute_threads()]
    assert set(computed) == expected and len(reused) == 4
    assert all(computed[first] == complete[first] for first in expected)


def test_label_maps_of_any_integer_type_give_the_same_roi(data):
    """A label map is read as SimpleITK's view of its voxels (no boolean copy of the whole grid) and its ROI box found
    by scanning its bytes: every non-zero label is the ROI, whatever the type, also a label of 256 whose low byte is
    0 and a signed negative label; diagnostics, values and notes equal those of the 0/1 uint8 mask."""
    from RadiomicsLabLib.ibsi.engine import compute_features
    from RadiomicsLabLib.ibsi._preprocessing_kernels import bounding_box

    folder = data / "sts" / "STS_002"
    image, mask = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    settings = CONFIGURATIONS["C"]
    expected = compute_features(image, mask, settings)
    ones = sitk.GetArrayViewFromImage(mask) != 0
    for pixel_type, label in ((sitk.sitkInt16, 256), (sitk.sitkUInt16, 7), (sitk.sitkInt32, -3), (sitk.sitkUInt32, 1 << 24),
                              (sitk.sitkInt64, 1 << 40), (sitk.sitkInt8, -1)):
        labels = sitk.Cast(mask, pixel_type) * label
        array = sitk.GetArrayViewFromImage(labels)
        assert np.array_equal(array != 0, ones)
        assert bounding_box(array) == bounding_box(ones)
        result = compute_features(image, labels, settings)
        assert result.diagnostics == expected.diagnostics, pixel_type
        assert _same(result.values, expected.values) and result.notes == expected.notes, pixel_type


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("where", ["outside", "inside"])
def test_engine_refuses_an_image_with_nan_or_infinity(data, monkeypatch, threads, where):
    """The image's own statistics (taken on the background thread with two threads) still refuse a NaN or an
    infinite voxel, outside the ROI or inside it, before any feature is computed; the image is not changed."""
    from RadiomicsLabLib.ibsi.engine import compute_features

    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    folder = data / "sts" / "STS_002"
    image, mask = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    z, y, x = (int(c[len(c) // 2]) for c in np.nonzero(sitk.GetArrayViewFromImage(mask)))
    index = (0, 0, 0) if where == "outside" else (x, y, z)
    for bad in (float("nan"), float("inf")):
        broken = sitk.Image(image)
        broken[index] = bad
        with pytest.raises(RadiomicsLabError, match="The image contains NaN or infinite values"):
            compute_features(broken, mask, CONFIGURATIONS["C"])
        assert math.isnan(broken[index]) or math.isinf(broken[index])


def test_without_diagnostics_the_features_are_the_same_and_no_whole_image_pass_runs(data, ct_phantom, monkeypatch):
    """``diagnostics=False`` (pyradiomics' ``additionalInfo: false``): every value and note as with them, no
    diagnostics, and no statistics of the whole image or the whole interpolated grid are taken, on the CT phantom
    (A-E), a sarcoma CT and that CT cut at its GTV, with linear interpolation rounded or not and without interpolation.
    The passes that remain convert a whole grid to float64: the phantom's float mask (rounded, ``!= 0``) and the image
    that cubic and nearest-neighbour interpolation read."""
    from RadiomicsLabLib.ibsi import _preprocessing_kernels, preprocessing
    from RadiomicsLabLib.ibsi.engine import compute_features

    folder = data / "sts" / "STS_002"
    sarcoma = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    c = CONFIGURATIONS["C"]
    converted = {"linear": ["grid_stats"], "cubic": ["grid_stats"] * 2}   # the phantom's mask (and image)
    cases = [(ct_phantom, CONFIGURATIONS[name], converted[CONFIGURATIONS[name].interpolation]) for name in "ABCDE"] + [
        (sarcoma, c, []), (sarcoma, c.replaced(round_intensities=False), []), (sarcoma, c.replaced(new_spacing=None), []),
        (_edge_case(data), c, []), (_edge_case(data), c.replaced(round_intensities=False), []),
        (sarcoma, c.replaced(interpolation="cubic"), ["grid_stats"]),
        (sarcoma, c.replaced(interpolation="nearest"), ["grid_stats"])]
    expected = [compute_features(image, mask, settings) for (image, mask), settings, _ in cases]
    passes = []
    for name in ("grid_stats", "short_grid_stats", "trilinear_stats"):
        monkeypatch.setattr(_preprocessing_kernels, name, lambda *args, name=name, whole=getattr(
            _preprocessing_kernels, name): (passes.append(name), whole(*args))[1])
    monkeypatch.setattr(preprocessing, "run_parts_in_background", lambda *args, **kwargs: passes.append("background"))
    for ((image, mask), settings, whole_passes), reference in zip(cases, expected):
        assert reference.diagnostics
        passes.clear()
        result = compute_features(image, mask, settings.replaced(diagnostics=False))
        assert _same(result.values, reference.values) and result.notes == reference.notes, settings
        assert result.diagnostics == {} and passes == whole_passes, (settings, passes)


def test_without_diagnostics_only_the_intensities_used_must_be_finite(data):
    """Without diagnostics a NaN far from the ROI changes nothing computed and is not refused; one inside still is."""
    from RadiomicsLabLib.ibsi.engine import compute_features

    folder = data / "sts" / "STS_002"
    image, mask = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    settings = CONFIGURATIONS["C"].replaced(diagnostics=False)
    expected = compute_features(image, mask, settings)
    z, y, x = (int(c[len(c) // 2]) for c in np.nonzero(sitk.GetArrayViewFromImage(mask)))
    outside, inside = sitk.Image(image), sitk.Image(image)
    outside[0, 0, 0] = float("nan")
    inside[x, y, z] = float("nan")
    assert _same(compute_features(outside, mask, settings).values, expected.values)
    with pytest.raises(RadiomicsLabError, match="The image contains NaN or infinite values"):
        compute_features(inside, mask, settings)
    with pytest.raises(RadiomicsLabError, match="The image contains NaN or infinite values"):
        compute_features(outside, mask, settings.replaced(diagnostics=True))


@pytest.mark.parametrize("diagnostics, pixel", [(True, None), (False, None), (True, "int32"), (True, "uint16"),
                                               (False, "uint16")])
def test_an_image_kept_on_its_grid_is_cropped_without_a_whole_copy(data, diagnostics, pixel):
    """Without interpolation the engine's preprocessing reads the image through SimpleITK's view and converts only the
    kept region to float64: its allocations (numpy reports them to tracemalloc) stay well below one float64 copy of
    the whole image, and the Roi, diagnostics and values are the whole grid's. Also for other integer voxel types: the
    CT as int32, which the compiled passes do not read (the whole image's statistics by numpy on the view, exact), and
    as uint16 shifted by 1024 HU, which they read as they read int16."""
    import tracemalloc

    from RadiomicsLabLib.ibsi.engine import features_of_roi
    from RadiomicsLabLib.ibsi.features.local_intensity import RADIUS_MM
    from RadiomicsLabLib.ibsi.preprocessing import start_roi

    folder = data / "sts" / "STS_002"
    image, mask = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    settings = CONFIGURATIONS["C"].replaced(new_spacing=None, diagnostics=diagnostics)
    if pixel == "int32":
        image = sitk.Cast(image, sitk.sitkInt32)
    elif pixel == "uint16":
        image = sitk.Cast(sitk.Clamp(image + 1024, sitk.sitkFloat32, 0, 4095), sitk.sitkUInt16)
        settings = settings.replaced(resegment_range=(24, 1424))
    whole, expected = prepare_roi(image, mask, settings)
    start_roi(image, mask, settings, crop_mm=RADIUS_MM)[1]()   # kernels compiled (a stale cache) before tracing
    tracemalloc.start()
    try:
        crop, finish = start_roi(image, mask, settings, crop_mm=RADIUS_MM)
        diagnostics_found = finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    whole_copy = 8 * image.GetNumberOfPixels()
    assert peak < whole_copy / 4, (peak, whole_copy)
    assert diagnostics_found == (expected if diagnostics else {})
    region = tuple(slice(g, g + n) for g, n in zip(crop.grid_start, crop.image.shape))
    assert crop.image.dtype == np.float64 and np.array_equal(crop.image, whole.image[region])
    assert _same(features_of_roi(crop, settings).values, features_of_roi(whole, settings).values)


def test_an_interpolated_uint16_image_is_read_without_a_whole_copy(data):
    """MR's voxel type, uint16, is read by the compiled passes as it is, as CT's int16 is: interpolating the ROI onto
    configuration C's 2 mm grid, with the diagnostics of the whole interpolated image, allocates well below one
    float64 copy of the whole image (it used to make one), and gives the values and diagnostics of the same image
    converted to float64 first, bit for bit."""
    import tracemalloc

    from RadiomicsLabLib.ibsi.engine import compute_features
    from RadiomicsLabLib.ibsi.features.local_intensity import RADIUS_MM
    from RadiomicsLabLib.ibsi.preprocessing import start_roi

    folder = data / "sts" / "STS_002"
    image, mask = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    image = sitk.Cast(sitk.Clamp(image + 1024, sitk.sitkFloat32, 0, 4095), sitk.sitkUInt16)
    settings = CONFIGURATIONS["C"].replaced(resegment_range=(24, 1424))
    expected = compute_features(sitk.Cast(image, sitk.sitkFloat64), mask, settings)
    found = compute_features(image, mask, settings)
    tracemalloc.start()
    try:
        _, finish = start_roi(image, mask, settings, crop_mm=RADIUS_MM)   # compute_features' preprocessing
        finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    whole_copy = 8 * image.GetNumberOfPixels()
    assert peak < whole_copy / 4, (peak, whole_copy)
    assert found.diagnostics == expected.diagnostics
    assert found.diagnostics["mean_int_interp_img"] == expected.diagnostics["mean_int_interp_img"]
    assert _same(found.values, expected.values)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_16_bit_grid_statistics_are_numpys(dtype):
    """CT's int16 and MR's uint16 are summarised on integers (:func:`short_grid_stats`): the same minimum, maximum and
    (exact) sum as numpy and as the float64 pass, at the type's extremes too, and with ``write`` the float64 copy."""
    from RadiomicsLabLib.ibsi import _preprocessing_kernels as kernels
    from RadiomicsLabLib.ibsi.preprocessing import _grid_statistics

    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    for shape in ((7, 9, 11), (3, 1, 64), (1, 1, 1)):
        array = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        array.flat[0], array.flat[-1] = info.max, info.min
        expected = (float(array.min()), float(array.max()), float(array.sum(dtype=np.int64)))
        assert kernels.short_grid_stats(array, np.empty((1, 1, 1)), False) == expected
        assert kernels.grid_stats(array.astype(np.float64), np.empty((1, 1, 1)), False, False) == expected
        copy = np.empty(shape)
        assert kernels.short_grid_stats(array, copy, True) == expected
        np.testing.assert_array_equal(copy, array.astype(np.float64))
        assert _grid_statistics(np.empty(shape), True, source=array) == (expected[0], expected[1], array.mean())


def test_image_statistics_taken_in_the_interpolation_pass_are_those_of_its_own_pass(data, monkeypatch):
    """The engine's preprocessing (a part of the grid kept around the ROI) takes the image's (min, max, mean)
    diagnostics in the whole interpolated grid's pass where that pass runs (IBSI configuration C: linear onto 2 mm,
    rounded). They and the interpolated grid's equal those of the preprocessing that keeps the whole grid (the whole
    grid interpolated and summarised, the image's statistics by a pass of their own): a float32 CT, a PET (read
    rounded, not integers), the CT as int32 (interpolated from a float64 copy), the CT pasted into a larger int16 grid
    (16-bit accumulation) cut into small parts, the CT
    cropped to the GTV (the part kept is the whole grid: the values interpolated whole, the statistics still from the
    pass), and an image with a NaN (the same error)."""
    from RadiomicsLabLib.ibsi import preprocessing
    from RadiomicsLabLib.ibsi.engine import compute_features
    from RadiomicsLabLib.ibsi.features.local_intensity import RADIUS_MM

    interpolated_region = preprocessing._interpolated_region
    counted = []

    def region(*args):
        result = interpolated_region(*args)
        counted.append(result[2] is not None)
        return result

    monkeypatch.setattr(preprocessing, "_interpolated_region", region)
    folder = data / "sts" / "STS_002"
    ct, mask, pet, pet_mask = (sitk.ReadImage(str(folder / f"{kind}.nii.gz"))
                               for kind in ("CT_image", "CT_mask", "PET_image", "PET_mask"))
    whole = sitk.Cast(sitk.ConstantPad(ct, (20, 20, 6), (20, 20, 6), -1000.0), sitk.sitkInt16)
    whole_mask = sitk.ConstantPad(mask, (20, 20, 6), (20, 20, 6), 0.0)
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
    box = shape.GetBoundingBox(1)
    tight, tight_mask = (sitk.RegionOfInterest(image, box[3:], box[:3]) for image in (ct, mask))
    as_int32 = sitk.Cast(ct, sitk.sitkInt32)
    for image, roi, part_values in ((ct, mask, None), (pet, pet_mask, None), (as_int32, mask, None),
                                    (whole, whole_mask, 2 ** 16), (tight, tight_mask, None)):
        settings = CONFIGURATIONS["C"].replaced(resegment_range=None) if image is pet else CONFIGURATIONS["C"]
        if part_values:
            monkeypatch.setattr(preprocessing, "STATISTICS_PART_VALUES", part_values)
        counted.clear()
        _, finish = preprocessing.start_roi(image, roi, settings, crop_mm=RADIUS_MM)
        diagnostics = finish()
        assert counted == [True]
        _, whole_grid = preprocessing.start_roi(image, roi, settings)
        assert counted == [True, False]
        assert diagnostics == whole_grid() and any("init_img" in name for name in diagnostics), diagnostics
    with_nan = sitk.GetArrayFromImage(ct)
    with_nan[0, 0, 0] = np.nan
    with_nan = sitk.GetImageFromArray(with_nan)
    with_nan.CopyInformation(ct)
    with pytest.raises(RadiomicsLabError, match="image contains NaN"):
        compute_features(with_nan, mask, CONFIGURATIONS["C"])
    assert counted[-1] is True


@pytest.mark.parametrize("background", ["free", "busy"])
def test_whole_image_statistics_in_parts_give_the_one_thread_results(data, monkeypatch, background):
    """STS_001's CT pasted into a larger grid (-1000 HU around it), IBSI configuration C, the whole interpolated grid's
    pass of the diagnostics (the image's own statistics taken in it) cut into many parts (STATISTICS_PART_VALUES
    lowered). With two threads the background thread takes
    the parts while the caller computes the features, and the caller computes what it has not started when it needs
    it: Moran's I sums queued behind the parts, and the parts left at the end. With the background thread kept busy
    by another task the caller computes every part and the sums itself (their tasks cancelled). Values, diagnostics
    and notes equal those of one thread, where every pass runs at once, whole."""
    import threading

    from RadiomicsLabLib.ibsi import preprocessing
    from RadiomicsLabLib.ibsi.engine import compute_features
    from RadiomicsLabLib.ibsi.features import morphology

    folder = data / "sts" / "STS_001"
    crop, crop_mask = (sitk.ReadImage(str(folder / f"CT_{kind}.nii.gz")) for kind in ("image", "mask"))
    image = sitk.ConstantPad(crop, (30, 30, 10), (30, 30, 10), -1000.0)
    mask = sitk.ConstantPad(crop_mask, (30, 30, 10), (30, 30, 10), 0.0)
    settings = CONFIGURATIONS["C"]
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    reference = compute_features(image, mask, settings)

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(preprocessing, "STATISTICS_PART_VALUES", 2 ** 18)
    parts, sums = [], []
    for module, name, record in ((preprocessing, "run_parts_in_background", parts),
                                 (morphology, "start_autocorrelation_sums", sums)):
        monkeypatch.setattr(module, name, lambda *args, start=getattr(module, name), record=record, **kwargs:
                            (record.append(start(*args, **kwargs)), record[-1])[1])
    release = threading.Event()
    busy = run_in_background(release.wait, 60) if background == "busy" else None
    try:
        result = compute_features(image, mask, settings)
    finally:
        release.set()
    # one pass in parts: the whole interpolated grid's, the image's own statistics taken in it; a large ROI: its sums
    # were started
    assert len(parts) == 1 and len(sums) == 1 and sums[0] is not None
    if busy is not None:
        assert busy.result() is True and sums[0].cancelled()
    assert _same(result.values, reference.values) and result.notes == reference.notes
    assert result.diagnostics == reference.diagnostics
