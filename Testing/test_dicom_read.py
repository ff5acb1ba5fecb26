"""RTSTRUCT and DICOM SEG masks read onto real image series (issue #19): RadiomicsLabLib.dicom.

Evidence on the shared sarcoma patients (CT and MR T1): each image is written as a DICOM series (Testing/dicom_data.py,
cropped to its GTV plus 3 voxels), its real GTV mask as a SEG by highdicom and as RTSTRUCTs by two independent
writers (rt-utils; plastimatch ``convert --input-ss-img``), then read back by RadiomicsLab and, for RTSTRUCTs,
rasterised by plastimatch too (``plastimatch convert --input rtstruct --referenced-ct``).
"""

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_data import (crop, crop_box, rasterise_with_plastimatch, sts_paths, write_rtstruct_contours,
                        write_rtstruct_independently, write_seg_independently, write_series)
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from RadiomicsLabLib.dicom import Segment, is_dicom_mask, read_dicom_segments
from RadiomicsLabLib.dicom.read import series_grid
from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.imageio import read_image

CASES = [("STS_001", "CT"), ("STS_002", "MR_T1"), ("STS_003", "MR_T1"), ("STS_004", "CT")]
MARGIN = 3
needs_plastimatch = pytest.mark.skipif(shutil.which("plastimatch") is None,
                                       reason="plastimatch is not on PATH (Debian package plastimatch; make test installs it)")
GTV_CODES = (codes.SCT.Tissue, codes.SCT.Neoplasm)


def array(image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def dice(a, b) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module", params=CASES, ids=[f"{p}-{m}" for p, m in CASES])
def case(request, tmp_path_factory, data):
    """A real image written as a DICOM series, its GTV (cropped like it) and the folder to write into."""
    patient, modality = request.param
    image_path, mask_path = sts_paths(patient, modality)
    box = crop_box(mask_path, MARGIN)
    folder = tmp_path_factory.mktemp(f"{patient}_{modality}")
    series = write_series(image_path, folder / "series", "CT" if modality == "CT" else "MR", patient_id=patient, box=box)
    return series, crop(mask_path, box), folder


def test_series_reads_back_on_the_same_grid_with_the_same_values(case):
    series, _, _ = case
    image = read_image(series.folder)
    assert image.GetSize() == series.image.GetSize()
    np.testing.assert_allclose(image.GetOrigin(), series.image.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(image.GetSpacing(), series.image.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), series.image.GetDirection(), atol=1e-6)
    assert np.array_equal(array(image).astype(np.float64), array(series.image).astype(np.float64))


def test_seg_by_highdicom_reads_exactly(case):
    series, gtv, folder = case
    path = write_seg_independently(series, [("GTV", gtv, GTV_CODES)], folder / "gtv_seg.dcm")
    assert is_dicom_mask(path) and not is_dicom_mask(series.files[0])
    (segment,) = read_dicom_segments(path, series.folder)
    assert isinstance(segment, Segment)
    assert (segment.name, segment.number, segment.kind, segment.fraction) == ("GTV", 1, "BINARY", None)
    assert segment.category == ("85756007", "SCT", "Tissue") and segment.type == ("108369006", "SCT", "Neoplasm")
    assert segment.mask.GetPixelID() == sitk.sitkUInt8
    assert segment.mask.GetSize() == series.image.GetSize()
    np.testing.assert_allclose(segment.mask.GetOrigin(), series.image.GetOrigin(), atol=1e-5)
    assert np.array_equal(array(segment.mask), array(gtv))  # voxel for voxel


def test_fractional_seg_with_several_segments(case):
    """A FRACTIONAL SEG (highdicom, PROBABILITY, max 255) of two segments: a fuzzy GTV (the GTV smoothed by a
    Gaussian of variance 1 mm^2) and a 2-voxel ring around it; fractions equal highdicom's own reading, masks are
    fraction >= 0.5, labels kept in order, ``rois=`` picks."""
    import highdicom as hd

    series, gtv, folder = case
    fuzzy = sitk.DiscreteGaussian(sitk.Cast(gtv, sitk.sitkFloat32), 1.0, 32, 0.001, True)
    ring = sitk.And(sitk.BinaryDilate(gtv, [2, 2, 2]), sitk.Not(gtv))
    path = write_seg_independently(series, [("GTV fuzzy", fuzzy, GTV_CODES), ("Ring", sitk.Cast(ring, sitk.sitkFloat32), GTV_CODES)],
                                   folder / "fractional_seg.dcm", fractional=True)
    segments = read_dicom_segments(path, series.folder)
    assert [(s.name, s.number, s.kind) for s in segments] == [("GTV fuzzy", 1, "FRACTIONAL"), ("Ring", 2, "FRACTIONAL")]
    reference = hd.seg.segread(str(path)).get_pixels_by_source_instance(
        source_sop_instance_uids=series.sop_instance_uids, segment_numbers=[1, 2], combine_segments=False,
        rescale_fractional=True)
    for number, segment in enumerate(segments):
        fraction = array(segment.fraction)
        np.testing.assert_allclose(fraction, reference[..., number], atol=1e-6)
        assert np.array_equal(array(segment.mask), (fraction >= 0.5).astype(np.uint8))
    assert np.array_equal(array(segments[1].mask), array(ring))
    assert 0 < array(segments[0].mask).sum() and 0.9 < dice(array(segments[0].mask), array(gtv)) < 1
    (picked,) = read_dicom_segments(path, series.folder, rois=["Ring"])
    assert picked.name == "Ring" and np.array_equal(array(picked.mask), array(ring))


@needs_plastimatch
def test_rtstruct_by_plastimatch_equals_the_source_mask_and_plastimatch(case):
    """plastimatch's contours follow the voxel edges (no voxel centre on a contour): the rasterisation is exact."""
    series, gtv, folder = case
    path = write_rtstruct_independently(series, {"GTV": gtv}, folder / "gtv_rt_plastimatch.dcm", writer="plastimatch")
    (segment,) = read_dicom_segments(path, series.folder)
    ours, theirs = array(segment.mask), array(rasterise_with_plastimatch(path, series, folder / "pm_of_pm")["GTV"])
    assert segment.name == "GTV" and segment.kind == "RTSTRUCT"
    assert int((ours != theirs).sum()) == 0
    assert int((ours != array(gtv)).sum()) == 0
    assert dice(ours, array(gtv)) >= 0.98


@needs_plastimatch
def test_rtstruct_by_rt_utils_against_plastimatch_and_the_source_mask(case):
    """rt-utils draws its contours through the centres of the boundary voxels (OpenCV contours of the mask). Off the
    contour RadiomicsLab and plastimatch give the same voxels; every voxel they differ on has its centre on the
    contour (within 1e-3 voxel), where the half-open rule decides and plastimatch computes in float32 (its vertex
    coordinates off by ~1e-5 voxel fall either side). Under the half-open rule centres on right and upper edges are
    outside, so the mask is the source mask less some boundary voxels: Dice 0.975-0.986 on these four cases
    (plastimatch's float32 luck: 0.980-0.988); the RTSTRUCT on voxel edges above gives Dice 1."""
    series, gtv, folder = case
    path = write_rtstruct_independently(series, {"GTV": gtv}, folder / "gtv_rt_rtutils.dcm", writer="rt-utils")
    (segment,) = read_dicom_segments(path, series.folder)
    theirs = rasterise_with_plastimatch(path, series, folder / "pm_of_rtu")["GTV"]
    ours, theirs, source = (array(image).astype(bool) for image in (segment.mask, theirs, gtv))
    on_contour = contour_voxels(path, series)
    differing = ours != theirs
    assert differing.any() and not (differing & ~on_contour).any()
    assert not (ours & ~source).any()  # nothing added
    assert not ((source & ~ours) & ~on_contour).any()  # only voxels with their centre on the contour left out
    assert dice(ours, source) > 0.97


def contour_voxels(path, series) -> np.ndarray:
    """The voxels whose centre lies within 1e-3 voxel of an edge of the RTSTRUCT's contours."""
    grid = series_grid(series.folder)
    nx, ny, nz = series.image.GetSize()
    on = np.zeros((nz, ny, nx), bool)
    for item in pydicom.dcmread(path).ROIContourSequence:
        for contour in item.ContourSequence:
            index = grid.continuous_index(np.asarray(contour.ContourData, float).reshape(-1, 3))
            k, points = int(round(index[0, 2])), index[:, :2]
            for p, q in zip(points, np.roll(points, -1, axis=0)):
                low, high = np.floor(np.minimum(p, q)).astype(int), np.ceil(np.maximum(p, q)).astype(int) + 1
                i, j = np.meshgrid(np.arange(max(low[0], 0), min(high[0], nx)), np.arange(max(low[1], 0), min(high[1], ny)))
                centre = np.stack([i.ravel(), j.ravel()], axis=1).astype(float)
                d = q - p
                t = np.clip(((centre - p) @ d) / max(d @ d, 1e-12), 0, 1)
                near = np.linalg.norm(p + t[:, None] * d - centre, axis=1) < 1e-3
                on[k, j.ravel()[near], i.ravel()[near]] = True
    return on


# Known-answer geometry: a ring and an island -----------------------------------------------------------------
#: Centre (voxel index) offsets of the ring ROI: outer diamond |dx| + |dy| = 8.5, inner square |dx|, |dy| = 2.5 (on
#: half-voxel lines, so no centre lies on an edge): inside = |dx| + |dy| <= 8 and not (|dx| <= 2 and |dy| <= 2).
OUTER = [(8.5, 0), (0, 8.5), (-8.5, 0), (0, -8.5)]
INNER = [(2.5, 2.5), (-2.5, 2.5), (-2.5, -2.5), (2.5, -2.5)]
ISLAND = [(1.5, 1.5), (-1.5, 1.5), (-1.5, -1.5), (1.5, -1.5)]  # |dx|, |dy| <= 1, inside the hole


@pytest.fixture(scope="module")
def ring(tmp_path_factory, data):
    """A real CT series (STS_002) and an RTSTRUCT with ROIs Ring (outer + inner contour on slices 5-7) and Island."""
    image_path, mask_path = sts_paths("STS_002", "CT")
    folder = tmp_path_factory.mktemp("ring")
    series = write_series(image_path, folder / "series", "CT", box=crop_box(mask_path, MARGIN))
    nx, ny, _ = series.image.GetSize()
    cx, cy = nx // 2, ny // 2
    shift = lambda polygon: [(cx + x, cy + y) for x, y in polygon]  # noqa: E731
    rois = {"Ring": [(k, shift(polygon)) for k in (5, 6, 7) for polygon in (OUTER, INNER)],
            "Island": [(6, shift(ISLAND))]}
    path = write_rtstruct_contours(series, rois, folder / "ring.dcm")
    z, y, x = np.mgrid[: series.image.GetSize()[2], :ny, :nx]
    dx, dy = np.abs(x - cx), np.abs(y - cy)
    on_slices = (z >= 5) & (z <= 7)
    expected = {"Ring": on_slices & (dx + dy <= 8) & ~((dx <= 2) & (dy <= 2)),
                "Island": (z == 6) & (dx <= 1) & (dy <= 1)}
    return series, path, expected, folder


def test_ring_has_its_hole_and_rois_keep_names_and_order(ring):
    series, path, expected, _ = ring
    segments = read_dicom_segments(path, series.folder)
    assert [(s.name, s.number, s.description) for s in segments] == [("Ring", 1, "GTV"), ("Island", 2, "ORGAN")]
    for segment in segments:
        assert np.array_equal(array(segment.mask), expected[segment.name].astype(np.uint8)), segment.name
    assert array(segments[0].mask)[6].sum() == 2 * 8 * 9 + 1 - 25  # diamond of radius 8 less the 5x5 hole
    picked = read_dicom_segments(path, series.folder, rois=["Island", "Ring"])
    assert [s.name for s in picked] == ["Island", "Ring"]


@needs_plastimatch
def test_ring_equals_plastimatch(ring):
    """Equal to ``plastimatch convert --xor-contours``; plastimatch's default (union of the contours) fills the hole."""
    series, path, _, folder = ring
    theirs = rasterise_with_plastimatch(path, series, folder / "pm_ring")
    union = rasterise_with_plastimatch(path, series, folder / "pm_ring_union", xor=False)
    segments = read_dicom_segments(path, series.folder)
    for segment in segments:
        assert int((array(segment.mask) != array(theirs[segment.name])).sum()) == 0, segment.name
    filled = array(union["Ring"]).astype(bool) & ~array(segments[0].mask).astype(bool)
    assert filled.sum() == 3 * 25 and not (array(segments[0].mask).astype(bool) & ~array(union["Ring"]).astype(bool)).any()


# Bad input: one clear line each -----------------------------------------------------------------------------------
def _edit(path, out, change):
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(out)
    return out


def _contour(ds, roi=0, contour=0):
    return ds.ROIContourSequence[roi].ContourSequence[contour]


def _move(ds, dx=0.0, dz=0.0, tilt=False):
    item = _contour(ds)
    points = np.asarray(item.ContourData, float).reshape(-1, 3)
    points += [dx, 0, dz]
    if tilt:
        points[:, 2] += np.arange(len(points)) * 3.0
    item.ContourData = [f"{v:.6f}" for v in points.ravel()]


def _empty(ds):
    del ds.ROIContourSequence[1].ContourSequence


def _open(ds):
    _contour(ds).ContourGeometricType = "OPEN_PLANAR"


def _other_frame(ds):
    uid = generate_uid()
    ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = uid
    for roi in ds.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = uid


def _mixed_frames(ds):
    ds.StructureSetROISequence[1].ReferencedFrameOfReferenceUID = generate_uid()


BAD_RTSTRUCTS = {
    "empty ROI": (_empty, None, r"ROI 'Island' .* has no contours \(an empty ROI\)"),
    "open contour": (_open, None, r"ROI 'Ring' .* has OPEN_PLANAR contours"),
    "contour outside the image": (lambda ds: _move(ds, dx=500.0), None, r"Contour 1 of the ROI 'Ring' .* goes outside the image"),
    "contour between slices": (lambda ds: _move(ds, dz=1.6), None, r"Contour 1 of the ROI 'Ring' .* lies between slices 5 and 6"),
    "contour not in a slice plane": (lambda ds: _move(ds, tilt=True), None, r"does not lie in a slice plane"),
    "other frame of reference": (_other_frame, None, r"is in frame of reference .*, but the series in .* is in "),
    "mixed frames of reference": (_mixed_frames, None, r"mixes frames of reference"),
    "contour image not in the series": (lambda ds: setattr(_contour(ds).ContourImageSequence[0], "ReferencedSOPInstanceUID", generate_uid()),
                                        None, r"Contour 1 of the ROI 'Ring' .* references image .*, which is not in "),
    "unknown ROI name": (lambda ds: None, ["Ring", "Tumour"], r"has no ROI named 'Tumour'; it has 'Ring', 'Island'"),
}


@pytest.mark.parametrize("kind", list(BAD_RTSTRUCTS))
def test_bad_rtstruct_gives_one_clear_line(ring, kind):
    series, path, _, folder = ring
    change, rois, message = BAD_RTSTRUCTS[kind]
    bad = _edit(path, folder / f"bad_{kind.replace(' ', '_')}.dcm", change)
    with pytest.raises(RadiomicsLabError, match=message) as error:
        read_dicom_segments(bad, series.folder, rois=rois)
    assert "\n" not in str(error.value)


def test_mask_on_another_series_is_refused(ring, tmp_path):
    """The same image written again as another series (new SeriesInstanceUID, same study and frame of reference)."""
    series, path, _, folder = ring
    image_path, mask_path = sts_paths("STS_002", "CT")
    other = write_series(image_path, tmp_path / "other", "CT", study_uid=series.study_uid,
                         frame_of_reference_uid=series.frame_of_reference_uid, box=crop_box(mask_path, MARGIN))
    seg = write_seg_independently(series, [("GTV", crop(mask_path, crop_box(mask_path, MARGIN)), GTV_CODES)], tmp_path / "seg.dcm")
    for mask, kind in ((path, "RTSTRUCT"), (seg, "SEG")):
        expected = f"The {kind} '{mask}' references series {series.series_uid}, but the folder '{other.folder}' holds series {other.series_uid}; "
        with pytest.raises(RadiomicsLabError, match="^" + expected.replace("(", r"\(").replace(".", r"\.")):
            read_dicom_segments(mask, other.folder)


def test_a_file_neither_rtstruct_nor_seg_is_refused(ring):
    series, _, _, _ = ring
    with pytest.raises(RadiomicsLabError, match=r"is a DICOM CT, not an RTSTRUCT or SEG"):
        read_dicom_segments(series.files[0], series.folder)
    assert not is_dicom_mask(series.folder) and not is_dicom_mask(sts_paths("STS_002", "CT")[1])
