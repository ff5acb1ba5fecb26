"""Voxel-wise feature maps: exactness against pyradiomics' voxel-based mode and against the IBSI engine run on
each voxel's kernel, on real images; names, bad input, chunking, cancel, the CLI and the MRML logic.

Real data: crops of the brain1 MR case (its real label) and of the STS_001 sarcoma CT and PET (their real GTV
masks). Synthetic data only where a known answer is needed: a constant image (every kernel flat).
"""

import json
import math
import logging
import pickle

import numpy as np
import pytest
import SimpleITK as sitk

import test_cli
from conftest import read_csv, run_cli
from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.featuremaps import (FeatureMapsCancelled, catalogue, feature_maps, plan_feature_maps,
                                         resolve_features, run_plan)

#: brain1 crop (SimpleITK index x, y, z and size): 150 of its 256 voxels are in the real label, with ROI borders.
BRAIN1_CROP = ((188, 96, 11), (8, 8, 4))
#: STS_001 CT crop: 124 GTV voxels, some of them outside the re-segmentation range used below.
STS_CROP = ((70, 60, 30), (12, 12, 5))


def crop(image, index_size):
    index, size = index_size
    return sitk.RegionOfInterest(image, size, index)


@pytest.fixture(scope="module")
def brain1_crop(brain1):
    return crop(sitk.ReadImage(str(brain1[0])), BRAIN1_CROP), crop(sitk.ReadImage(str(brain1[1])), BRAIN1_CROP)


@pytest.fixture
def brain1_crop_files(brain1_crop, tmp_path):
    """The brain1 crop written as ``tmp_path/image.nrrd`` and ``tmp_path/mask.nrrd`` (the CLI's inputs)."""
    paths = tmp_path / "image.nrrd", tmp_path / "mask.nrrd"
    for image, path in zip(brain1_crop, paths):
        sitk.WriteImage(image, str(path))
    return paths


@pytest.fixture(scope="module")
def sts_ct(data):
    folder = data / "sts" / "STS_001"
    return (crop(sitk.ReadImage(str(folder / "CT_image.nii.gz")), STS_CROP),
            crop(sitk.ReadImage(str(folder / "CT_mask.nii.gz")), STS_CROP))


def close(ours, reference, rtol=1e-9, atol_scale=1e-12):
    """Floating-point agreement: |a - b| <= rtol |b| + atol_scale * max |b| (of the feature), NaN where NaN."""
    ours, reference = np.asarray(ours, float), np.asarray(reference, float)
    same_nan = np.array_equal(np.isnan(ours), np.isnan(reference))
    finite = ~np.isnan(reference)
    scale = np.max(np.abs(reference[finite]), initial=1.0)
    ok = np.abs(ours[finite] - reference[finite]) <= rtol * np.abs(reference[finite]) + atol_scale * scale
    return same_nan and bool(np.all(ok))


# --------------------------------------------------------------------------------------------
# pyradiomics definition == pyradiomics voxelBased=True
# --------------------------------------------------------------------------------------------

def pyradiomics_maps(image, mask, classes=None, features=None, **settings):
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.CRITICAL)
    extractor = featureextractor.RadiomicsFeatureExtractor(**settings)
    extractor.disableAllFeatures()
    if features:
        extractor.enableFeaturesByName(**features)
    for name in classes or ():
        extractor.enableFeatureClassByName(name)
    result = extractor.execute(image, mask, voxelBased=True)
    roi = sitk.GetArrayFromImage(mask) == 1

    def on_input_grid(value):   # pyradiomics returns maps on the ROI's bounding box grown by the radius
        return sitk.Resample(value, mask, sitk.Transform(), sitk.sitkNearestNeighbor, float("nan"), sitk.sitkFloat64)

    return {key.removeprefix("original_"): sitk.GetArrayFromImage(on_input_grid(value))[roi]
            for key, value in result.items() if isinstance(value, sitk.Image)}


def test_pyradiomics_definition_equals_pyradiomics_voxel_based(brain1_crop):
    """Every voxel, every feature of firstorder, GLCM, GLRLM, GLSZM, GLDM and NGTDM (93 maps), radius 1, bin width 25."""
    image, mask = brain1_crop
    reference = pyradiomics_maps(image, mask, ["firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"],
                                 binWidth=25, kernelRadius=1)
    maps = feature_maps(image, mask, "all", radius=1, definition="pyradiomics", binWidth=25)
    assert sorted(maps) == sorted(reference) and len(maps) == 93
    mismatched = [name for name in maps if name not in ("glcm_MCC", "glcm_JointAverage")
                  and not close(maps.array(name), reference[name])]
    assert mismatched == []
    # Documented pyradiomics failures, not copied: MCC's batched eigvals fails on this batch (a kernel has a
    # direction without pairs) and pyradiomics leaves every voxel at 0; JointAverage is NaN on those kernels.
    assert np.all(reference["glcm_MCC"] == 0) and np.all(maps.array("glcm_MCC") > 0)
    nan = np.isnan(reference["glcm_JointAverage"])
    assert 0 < nan.sum() < nan.size
    assert close(maps.array("glcm_JointAverage")[~nan], reference["glcm_JointAverage"][~nan])
    assert close(maps.array("glcm_JointAverage"), maps.array("glcm_SumAverage") / 2)   # symmetric GLCM: mu_x = SA / 2
    # One voxel per batch, pyradiomics computes both on exactly the directions with pairs, as the maps do.
    single = pyradiomics_maps(image, mask, features={"glcm": ["MCC", "JointAverage"]}, binWidth=25, kernelRadius=1,
                              voxelBatch=1)
    assert close(maps.array("glcm_MCC"), single["glcm_MCC"], atol_scale=1e-12)
    assert close(maps.array("glcm_JointAverage"), single["glcm_JointAverage"])


def test_pyradiomics_definition_in_plane_bin_count_and_alpha(brain1_crop):
    """force2D kernels, fixed bin count, GLDM alpha 1 and a voxel array shift: still pyradiomics' values."""
    image, mask = brain1_crop
    settings = {"binCount": 12, "gldm_a": 1, "force2D": True, "voxelArrayShift": 100}
    reference = pyradiomics_maps(image, mask, ["firstorder", "glrlm", "glszm", "gldm", "ngtdm"], kernelRadius=1,
                                 **settings)
    maps = feature_maps(image, mask, "firstorder,glrlm,glszm,gldm,ngtdm", radius=1, definition="pyradiomics",
                        **settings)
    assert sorted(maps) == sorted(reference)
    assert [name for name in maps if not close(maps.array(name), reference[name])] == []


# --------------------------------------------------------------------------------------------
# ibsi definition == the segment engine on each voxel's kernel
# --------------------------------------------------------------------------------------------

def engine_on_kernels(image, mask, settings, voxels, radius, in_plane, families=None):
    """The IBSI engine's family modules on each voxel's kernel: the ROI discretised as a whole by the engine's own
    preprocessing, then every voxel of the cube (one slice when in-plane) around the voxel. Local intensity gets the
    whole image with the kernel's masks: its 1 cm^3 sphere reaches beyond the kernel, in or out of the ROI."""
    from RadiomicsLabLib.featuremaps import IBSI_FAMILIES
    from RadiomicsLabLib.ibsi.discretisation import discretise
    from RadiomicsLabLib.ibsi.engine import family_module
    from RadiomicsLabLib.ibsi.preprocessing import prepare_roi
    from RadiomicsLabLib.ibsi.roi import Roi

    roi, _ = prepare_roi(image, mask, settings)
    roi = discretise(roi, settings)
    levels = np.where(roi.intensity_mask, roi.levels, 0)
    out = []
    for voxel in voxels:
        reach = (0 if in_plane else radius, radius, radius)
        box = tuple(slice(max(c - r, 0), c + r + 1) for c, r in zip(voxel, reach))
        intensity = roi.intensity_mask[box]
        kernel = Roi(roi.image[box], roi.morphological_mask[box], intensity, roi.spacing, levels[box], roi.n_levels)
        values = {}
        for family in families or IBSI_FAMILIES:
            if family == "local_intensity":
                inside = np.zeros_like(roi.intensity_mask)
                inside[box] = intensity
                values.update(family_module(family).compute(Roi(roi.image, inside, inside, roi.spacing), settings))
            else:
                values.update(family_module(family).compute(kernel, settings))
        out.append(values)
    return out


@pytest.mark.parametrize("case, in_plane, settings", [
    ("brain1", False, {"bin_width": 25.0}),
    ("brain1", True, {"bin_width": 25.0}),
    ("sts_ct", False, {"bin_width": 10.0, "resegment_range": (-30.0, 60.0)}),
])
def test_ibsi_map_voxels_equal_the_engine_on_their_kernel(case, in_plane, settings, brain1_crop, sts_ct):
    """Random voxels of real images: all 179 (3D) or 179 (2D) IBSI map features equal the engine on the kernel."""
    from RadiomicsLabLib.ibsi.config import IbsiSettings

    image, mask = brain1_crop if case == "brain1" else sts_ct
    maps = feature_maps(image, mask, "all", radius=1, definition="ibsi", in_plane=in_plane, **settings)
    assert len(maps) == 179
    roi = np.argwhere(sitk.GetArrayFromImage(mask) == 1)
    picked = np.random.default_rng(20).choice(len(roi), 12, replace=False)
    ibsi = IbsiSettings(dimensions=("2D",) if in_plane else ("3D",), **settings)
    expected = engine_on_kernels(image, mask, ibsi, [tuple(roi[i]) for i in picked], 1, in_plane)
    compared = 0
    for name in maps:
        reference = np.array([values[name] for values in expected])
        assert close(maps.array(name)[picked], reference, rtol=1e-9, atol_scale=1e-10), name
        compared += 1
    assert compared == 179


def test_ibsi_whole_image_fixed_bin_number(data):
    """No mask: every voxel of a real PET crop is a centre; FBN discretisation; the engine agrees on random voxels."""
    from RadiomicsLabLib.ibsi.config import IbsiSettings

    pet = crop(sitk.ReadImage(str(data / "sts" / "STS_001" / "PET_image.nii.gz")), ((14, 14, 20), (8, 8, 4)))
    features = "stat_mean,ih_entropy,cm_contrast_3D_comb,rlm_sre_3D_avg,szm_sze_3D,dzm_sde_3D,ngt_busyness_3D,ngl_hde_3D"
    maps = feature_maps(pet, None, features, radius=1, definition="ibsi", discretisation="FBN", bin_number=16)
    assert maps.values.shape == (8 * 8 * 4, 8) and np.isfinite(maps.array("stat_mean")).all()
    everywhere = sitk.Image(pet.GetSize(), sitk.sitkUInt8)
    everywhere.CopyInformation(pet)
    everywhere += 1
    voxels = [(0, 0, 0), (3, 7, 7), (1, 4, 2), (2, 0, 5)]
    expected = engine_on_kernels(pet, everywhere, IbsiSettings(discretisation="FBN", bin_number=16), voxels, 1, False)
    flat = [np.ravel_multi_index(v, (4, 8, 8)) for v in voxels]
    for name in maps:
        assert close(maps.array(name)[flat], [e[name] for e in expected]), name
    image = maps["cm_contrast_3D_comb"]
    assert image.GetSize() == pet.GetSize() and image.GetOrigin() == pet.GetOrigin()


@pytest.mark.parametrize("definition, features, radius", [
    ("ibsi", "glcm,firstorder,gldzm,local_intensity", 1),
    ("ibsi", "glrlm,ngtdm", 2),
    ("pyradiomics", "glcm,firstorder,glszm", 1),
    ("pyradiomics", "gldm,ngtdm", 2),
])
def test_maps_read_only_the_roi_neighbourhood_of_a_whole_image(brain1, definition, features, radius):
    """The whole brain1 image (its real label) gives, on the ROI, the maps of a crop of the image that holds the ROI,
    the kernel's reach and the local intensity sphere: the preparation reads only that part of a whole image, and
    places the maps back on the whole grid (bit for bit the same values, NaN outside the ROI)."""
    image, mask = (sitk.ReadImage(str(path)) for path in brain1)
    labels = sitk.GetArrayViewFromImage(mask)
    margin = [int(np.ceil(6.2 / s)) + radius + 1 for s in image.GetSpacing()[::-1]]   # (z, y, x) voxels
    region = []
    for coords, size, m in zip(np.nonzero(labels), labels.shape, margin):
        region.append(slice(max(int(coords.min()) - m, 0), min(int(coords.max()) + 1 + m, size)))
    assert any(r.start > 0 or r.stop < n for r, n in zip(region, labels.shape))   # a real crop
    index = [int(r.start) for r in region[::-1]]
    size = [int(r.stop - r.start) for r in region[::-1]]
    whole = feature_maps(image, mask, features, radius=radius, definition=definition)
    cropped = feature_maps(crop(image, (index, size)), crop(mask, (index, size)), features, radius=radius,
                           definition=definition)
    assert whole.names == cropped.names and whole.values.shape == cropped.values.shape
    for name in whole.names:
        on_whole = sitk.GetArrayFromImage(whole[name])
        assert np.all(np.isnan(np.delete(on_whole.ravel(), whole.flat)))     # nothing outside the ROI
        assert np.array_equal(on_whole[tuple(region)], sitk.GetArrayFromImage(cropped[name]), equal_nan=True), name


def test_maps_carry_the_image_geometry_not_its_voxels(brain1):
    """A map result holds the input image's geometry, not its voxels: pickled (as a worker process sends it back to
    desktop Slicer) it is a small part of the image's own bytes, and the unpickled maps equal the originals voxel for
    voxel, on the image's grid (size, origin, spacing and a non-trivial direction)."""
    image, mask = (sitk.ReadImage(str(path)) for path in brain1)
    turned = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)     # 90 degrees about z
    for volume in (image, mask):
        volume.SetDirection(turned)
        volume.SetOrigin((12.5, -30.25, 7.0))
    maps = feature_maps(image, mask, "firstorder_Mean,glcm_Contrast", radius=1, definition="pyradiomics")
    sent = pickle.dumps(maps, protocol=pickle.HIGHEST_PROTOCOL)
    image_bytes = image.GetNumberOfPixels() * image.GetSizeOfPixelComponent()
    assert len(sent) < 0.1 * image_bytes, (len(sent), image_bytes)
    back = pickle.loads(sent)
    for name in maps:
        original, received = maps[name], back[name]
        assert received.GetSize() == image.GetSize()
        assert received.GetOrigin() == image.GetOrigin() and received.GetSpacing() == image.GetSpacing()
        assert received.GetDirection() == turned
        assert np.array_equal(sitk.GetArrayViewFromImage(received), sitk.GetArrayViewFromImage(original),
                              equal_nan=True)


def test_flat_kernels_known_values(brain1_crop):
    """A constant image (synthetic: every kernel holds one grey level): IBSI and pyradiomics' documented values."""
    image = sitk.Image(6, 6, 5, sitk.sitkFloat64)
    image += 700.0
    mask = sitk.Image(6, 6, 5, sitk.sitkUInt8)
    mask += 1
    ibsi = feature_maps(image, mask, "cm_joint_max_3D_avg,cm_contrast_3D_avg,cm_corr_3D_avg,stat_var,stat_kurt,"
                        "ih_entropy,ngt_coarseness_3D,szm_z_perc_3D", radius=1)
    assert np.all(ibsi.array("cm_joint_max_3D_avg") == 1) and np.all(ibsi.array("cm_contrast_3D_avg") == 0)
    assert np.isnan(ibsi.array("cm_corr_3D_avg")).all()          # undefined for one grey level (IBSI)
    assert np.all(ibsi.array("stat_var") == 0) and np.all(ibsi.array("stat_kurt") == 0)
    assert np.all(ibsi.array("ih_entropy") == 0) and np.isnan(ibsi.array("ngt_coarseness_3D")).all()
    corner, centre = 0, np.ravel_multi_index((2, 2, 2), (5, 6, 6))
    assert ibsi.array("szm_z_perc_3D")[corner] == 1 / 8 and ibsi.array("szm_z_perc_3D")[centre] == 1 / 27
    py = feature_maps(image, mask, "glcm_Correlation,glcm_MCC,ngtdm_Coarseness,firstorder_Kurtosis", radius=1,
                      definition="pyradiomics")
    assert np.all(py.array("glcm_Correlation") == 1) and np.all(py.array("ngtdm_Coarseness") == 1e6)
    assert np.all(py.array("glcm_MCC") == 1) and np.all(py.array("firstorder_Kurtosis") == 0)


# --------------------------------------------------------------------------------------------
# Names, chunks, progress
# --------------------------------------------------------------------------------------------

def test_feature_names_both_styles():
    assert len(catalogue("pyradiomics")) == 93 and len(catalogue("ibsi")) == 179
    assert len(resolve_features("glcm", "pyradiomics")) == 24
    assert len(resolve_features("texture", "pyradiomics")) == 75
    assert resolve_features("glcm_Contrast, firstorder_Mean", "ibsi") == ["cm_contrast_3D_avg", "stat_mean"]
    assert resolve_features("original_glcm_Contrast", "ibsi", in_plane=True) == ["cm_contrast_2D_avg"]
    assert resolve_features("cm_contrast", "ibsi") == ["cm_contrast_3D_avg", "cm_contrast_3D_comb"]
    assert resolve_features("cm_contrast_3D_avg,szm_sze_3D", "pyradiomics") == ["glcm_Contrast", "glszm_SmallAreaEmphasis"]
    assert resolve_features(["gldm"], "ibsi") == [n for n, f in catalogue("ibsi").items() if f == "ngldm"]
    with pytest.raises(RadiomicsLabError, match="Unknown feature 'glcm_Contrst'.*did you mean 'glcm_Contrast'"):
        resolve_features("glcm_Contrst", "pyradiomics")
    with pytest.raises(RadiomicsLabError, match="did you mean 'cm_contrast_3D_avg'"):
        resolve_features("cm_contrast_3D_av", "ibsi")


def test_chunks_progress_and_cancel(brain1_crop):
    image, mask = brain1_crop
    whole = feature_maps(image, mask, "glcm,glszm", radius=1, definition="ibsi")
    calls = []
    chunked = feature_maps(image, mask, "glcm,glszm", radius=1, definition="ibsi", working_memory=1,
                           progress=lambda done, total, message: calls.append((done, total, message)))
    assert calls[0][0] == 0 and "Estimated peak memory" in calls[0][2]
    assert calls[-1][0] == calls[-1][1] == 2 * 3           # 150 voxels in chunks of 64, two families
    assert np.array_equal(whole.values, chunked.values, equal_nan=True)
    with pytest.raises(FeatureMapsCancelled, match="cancelled"):
        feature_maps(image, mask, "glcm", radius=1, progress=lambda done, total, message: done == 0)
    summary = whole.summary()
    row = next(r for r in summary if r["feature"] == "cm_contrast_3D_avg")
    values = whole.array("cm_contrast_3D_avg")
    assert row["voxels"] == 150 and row["mean"] == pytest.approx(np.nanmean(values), rel=1e-12)
    assert row["p50"] == pytest.approx(np.nanpercentile(values, 50), rel=1e-12)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

def test_bad_input_is_refused_before_any_work(brain1_crop, brain1):
    image, mask = brain1_crop
    with pytest.raises(RadiomicsLabError, match="radius must be 1 or more"):
        plan_feature_maps(image, mask, "glcm", radius=0)
    with pytest.raises(RadiomicsLabError, match="whole number"):
        plan_feature_maps(image, mask, "glcm", radius=1.5)
    full = sitk.ReadImage(str(brain1[0]))
    with pytest.raises(RadiomicsLabError, match=r"larger than the image along z \(25 voxels\).*in-plane"):
        plan_feature_maps(full, sitk.ReadImage(str(brain1[1])), "glcm", radius=13)
    empty = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(mask)
    with pytest.raises(RadiomicsLabError, match="mask is empty"):
        plan_feature_maps(image, empty, "glcm")
    labels = sitk.GetArrayFromImage(mask)
    labels[2:][labels[2:] == 1] = 2          # the crop's real label split in two by slice
    two = sitk.GetImageFromArray(labels)
    two.CopyInformation(mask)
    with pytest.raises(RadiomicsLabError, match="labels 1, 2; choose one"):
        plan_feature_maps(image, two, "glcm")
    assert plan_feature_maps(image, two, "glcm", label=2).memory.n_voxels == int(np.count_nonzero(labels == 2))
    with pytest.raises(RadiomicsLabError, match=r"need about .* but only 1.0 MB is available.*Reduce it"):
        plan_feature_maps(image, mask, "all", memory_limit=2 ** 20)
    with pytest.raises(RadiomicsLabError, match="did you mean 'binWidth'"):
        plan_feature_maps(image, mask, "glcm", definition="pyradiomics", binWidht=10)
    with pytest.raises(RadiomicsLabError, match="did you mean 'bin_width'"):
        plan_feature_maps(image, mask, "glcm", bin_widht=10)
    with pytest.raises(RadiomicsLabError, match="did you mean 'ibsi'"):
        plan_feature_maps(image, mask, "glcm", definition="ibs")
    with pytest.raises(RadiomicsLabError, match="resampling"):
        plan_feature_maps(image, mask, "glcm", new_spacing=(1.0, 1.0, 1.0))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def test_cli_writes_maps_provenance_and_summary(brain1_crop, brain1_crop_files, tmp_path):
    image, mask = brain1_crop
    out = tmp_path / "maps"
    done = run_cli("maps", tmp_path / "image.nrrd", tmp_path / "mask.nrrd", "--features", "glcm_Contrast,firstorder_Mean",
                   "--radius", "1", "--definition", "pyradiomics", "-o", out)
    assert done.returncode == 0, done.stderr
    assert "Estimated peak memory" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["firstorder_Mean.nrrd", "glcm_Contrast.nrrd", "maps.json",
                                                     "summary.csv"]
    api = feature_maps(image, mask, "glcm_Contrast,firstorder_Mean", radius=1, definition="pyradiomics")
    written = sitk.ReadImage(str(out / "glcm_Contrast.nrrd"))
    assert written.GetSize() == image.GetSize() and written.GetOrigin() == image.GetOrigin()
    assert written.GetDirection() == image.GetDirection() and written.GetSpacing() == image.GetSpacing()
    roi = sitk.GetArrayFromImage(mask) == 1
    assert np.array_equal(sitk.GetArrayFromImage(written)[roi], api.array("glcm_Contrast"))
    assert np.isnan(sitk.GetArrayFromImage(written)[~roi]).all()
    rows = read_csv(out / "summary.csv")
    assert [r["feature"] for r in rows] == ["glcm_Contrast", "firstorder_Mean"] and rows[0]["voxels"] == "150"
    assert float(rows[1]["mean"]) == pytest.approx(np.mean(api.array("firstorder_Mean")), rel=1e-12)
    provenance = json.loads((out / "maps.json").read_text())
    assert provenance["settings"]["definition"] == "pyradiomics" and provenance["settings"]["radius"] == 1
    assert provenance["inputs"]["image_file"]["sha256"] and provenance["files"]["summary"] == "summary.csv"


def test_cli_bad_input_one_line_and_nothing_written(brain1_crop_files, tmp_path):
    out = tmp_path / "maps"
    test_cli.assert_user_error(run_cli("maps", tmp_path / "image.nrrd", tmp_path / "mask.nrrd", "--features",
                                       "glcm_Contrst", "-o", out), "Unknown feature 'glcm_Contrst'",
                               "did you mean 'glcm_Contrast'")
    test_cli.assert_user_error(run_cli("maps", tmp_path / "image.nrrd", tmp_path / "mask.nrrd", "--features", "glcm",
                                       "--radius", "0", "-o", out), "radius must be 1 or more")
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# MRML
# --------------------------------------------------------------------------------------------

def test_logic_maps_become_volume_nodes_over_the_image(brain1_crop, scene, tmp_path):
    from RadiomicsLabLib.mrml.convert import label_map_to_segmentation_node, sitk_to_volume_node, volume_to_sitk
    from RadiomicsLabLib.mrml.featuremaps import FeatureMapLogic, map_on_volume_grid

    image, mask = brain1_crop
    logic = FeatureMapLogic(scene)
    volume = sitk_to_volume_node(image, "brain1 crop", scene)
    segmentation = label_map_to_segmentation_node(mask, "label", scene, volume)
    composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")   # what a slice view of desktop Slicer has
    before = scene.GetNumberOfNodes()
    with pytest.raises(RadiomicsLabError, match="did you mean"):
        logic.compute(volume, segmentation, "Label_1", features="glcm_Contrst", definition="pyradiomics")
    with pytest.raises(FeatureMapsCancelled):
        logic.compute(volume, segmentation, features="glcm", progress=lambda done, total, message: done == 0)
    assert scene.GetNumberOfNodes() == before
    result = logic.compute(volume, segmentation, "Label_1", features="glcm_Contrast,firstorder_Mean", radius=1,
                           definition="pyradiomics")
    api = feature_maps(image, mask, "glcm_Contrast,firstorder_Mean", radius=1, definition="pyradiomics")
    node = result.maps["glcm_Contrast"]
    assert node.IsA("vtkMRMLScalarVolumeNode")
    # The map covers the mask's bounding box of the volume's grid: same spacing and directions, origin at the box
    roi = sitk.GetArrayFromImage(mask) == 1
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(roi))
    assert result.values.box == box and roi[box].shape != roi.shape
    ijk_volume, ijk_map = vtk_matrix(volume), vtk_matrix(node)
    assert np.array_equal(ijk_volume[:3, :3], ijk_map[:3, :3])
    np.testing.assert_allclose(ijk_map[:, 3], ijk_volume @ [*(s.start for s in box[::-1]), 1], rtol=0, atol=1e-9)
    converted = volume_to_sitk(node)
    assert np.array_equal(sitk.GetArrayFromImage(converted)[roi[box]], api.array("glcm_Contrast"))
    assert np.isnan(sitk.GetArrayFromImage(converted)[~roi[box]]).all()
    # ... and on the volume's whole grid it is the core's map, bit for bit, with the volume's geometry
    whole, core = map_on_volume_grid(node), api["glcm_Contrast"]
    assert sitk.GetArrayViewFromImage(whole).tobytes() == sitk.GetArrayViewFromImage(core).tobytes()
    assert (whole.GetSize(), whole.GetSpacing(), whole.GetOrigin(), whole.GetDirection()) == \
        (core.GetSize(), core.GetSpacing(), core.GetOrigin(), core.GetDirection())
    # The scene's memory check counts each map over the box, not the whole grid
    plan = plan_feature_maps(image, mask, "glcm_Contrast,firstorder_Mean", radius=1, definition="pyradiomics")
    assert plan.memory.all_maps == 2 * 8 * roi[box].size < 2 * 8 * roi.size
    display = node.GetDisplayNode()
    assert display.GetColorNode().GetName() in ("Viridis", "RadiomicsLab Viridis") and display.GetApplyThreshold()
    assert composite.GetForegroundVolumeID() == node.GetID() and composite.GetBackgroundVolumeID() == volume.GetID()
    assert scene.GetFirstNodeByClass("vtkMRMLSelectionNode").GetSecondaryVolumeID() == node.GetID()
    rows = logic.summary_rows(result.table)
    assert [r["feature"] for r in rows] == ["glcm_Contrast", "firstorder_Mean"]
    assert rows[0]["mean"] == pytest.approx(np.mean(api.array("glcm_Contrast")), rel=1e-12)
    assert logic.provenance(node)["inputs"]["segment"] == "Label_1"
    assert set(logic.map_nodes()) == set(result.maps.values())
    assert "Estimated peak memory" in logic.estimate(volume, segmentation, features="glcm", definition="pyradiomics")
    # A saved study brings the maps back: values (NaN outside the mask included), colours and provenance.
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.scenefiles import load_scene, save_scene

    save_scene(scene, tmp_path / "maps.mrb")
    reloaded = FeatureMapLogic(new_headless_app().scene)
    load_scene(reloaded.scene, tmp_path / "maps.mrb")
    back = {n.GetAttribute("RadiomicsLab.Feature"): n for n in reloaded.map_nodes()}
    assert sorted(back) == ["firstorder_Mean", "glcm_Contrast"]
    again = sitk.GetArrayFromImage(volume_to_sitk(back["glcm_Contrast"]))
    assert np.array_equal(again[roi[box]], api.array("glcm_Contrast")) and np.isnan(again[~roi[box]]).all()
    assert back["glcm_Contrast"].GetDisplayNode().GetColorNode().GetName() in ("Viridis", "RadiomicsLab Viridis")
    assert reloaded.provenance(back["glcm_Contrast"])["settings"]["definition"] == "pyradiomics"


def vtk_matrix(node) -> np.ndarray:
    from RadiomicsLabLib.mrml.convert import ijk_to_ras

    return ijk_to_ras(node)


def test_plan_reports_memory_before_work(brain1_crop):
    image, mask = brain1_crop
    plan = plan_feature_maps(image, mask, "texture", radius=1, definition="pyradiomics")
    assert plan.memory.n_voxels == 150 and plan.memory.n_features == 75
    assert plan.memory.total < 200 * 2 ** 20 and "Estimated peak memory" in plan.describe()
    maps = run_plan(plan)
    assert maps.provenance["memory_estimate_bytes"] == plan.memory.total


def test_a_mask_on_another_grid_is_refused_or_resampled(brain1_crop, brain1_crop_files, tmp_path):
    """A mask on another grid (its origin half a voxel off) is refused with advice the maps take (--resample-mask,
    resample_mask=True); with it, the mask is resampled onto the image's grid (nearest neighbour), as extraction
    does: the maps of the mask resampled beforehand, in the API and on the command line."""
    image, mask = brain1_crop
    shifted = sitk.Image(mask)
    shifted.SetOrigin(tuple(o + 0.5 * s for o, s in zip(mask.GetOrigin(), mask.GetSpacing())))
    with pytest.raises(RadiomicsLabError, match=r"different grids.*--resample-mask \(resample_mask=True\)"):
        plan_feature_maps(image, shifted, "stat_mean")
    resampled = sitk.Resample(shifted, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, shifted.GetPixelID())
    expected = feature_maps(image, resampled, "stat_mean,cm_contrast_3D_avg")
    maps = feature_maps(image, shifted, "stat_mean,cm_contrast_3D_avg", resample_mask=True)
    for name in expected:
        np.testing.assert_array_equal(maps.array(name), expected.array(name))
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nrrd"))
    refused = run_cli("maps", brain1_crop_files[0], tmp_path / "shifted.nrrd", "--features", "stat_mean",
                      "-o", tmp_path / "refused")
    test_cli.assert_user_error(refused, "--resample-mask")
    done = run_cli("maps", brain1_crop_files[0], tmp_path / "shifted.nrrd", "--features", "stat_mean",
                   "--resample-mask", "-o", tmp_path / "maps")
    assert done.returncode == 0, done.stderr
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "maps" / "stat_mean.nrrd")))
    roi = sitk.GetArrayFromImage(resampled) == 1
    np.testing.assert_array_equal(written[roi], expected.array("stat_mean"))


@pytest.mark.parametrize("definition, feature", [("pyradiomics", "firstorder_Mean"), ("ibsi", "stat_mean")])
def test_memory_estimate_bounds_the_peak_of_a_whole_image_map(data, definition, feature):
    """The estimate that admits a computation bounds its peak (tracemalloc: every numpy allocation) on a whole CT
    (1.1 million voxels, no mask), where the centres' indices weigh most: the preparation made three (n, 3) index
    arrays at once, 80 bytes a voxel against the 32 counted, and went over the estimate."""
    import tracemalloc

    image = sitk.ReadImage(str(data / "sts" / "STS_002" / "CT_image.nii.gz"))
    tracemalloc.start()
    try:
        plan = plan_feature_maps(image, None, feature, radius=1, definition=definition)
        maps = run_plan(plan)
        assert maps[feature].GetSize() == image.GetSize()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert plan.memory.n_voxels == int(np.prod(image.GetSize()))
    assert peak <= plan.memory.total, (peak, plan.memory.total)


@pytest.mark.parametrize("image_filter", [
    {"filter": "gabor", "sigma_mm": 5.0, "lambda_mm": 2.0, "gamma": 1.5, "theta": 0.0, "theta_step": math.pi / 8,
     "pooling": "mean", "orthogonal_planes": True, "boundary": "mirror", "dimensions": "3d"},
    {"filter": "wavelet", "wavelet": "db3", "response": "HHH", "level": 2, "rotation_invariant": True,
     "pooling": "mean", "boundary": "mirror", "dimensions": "3d"},
])
def test_memory_estimate_counts_the_filters_working_memory(data, image_filter):
    """With an IBSI 2 filter the whole grid is filtered first: the estimate counts the filter's own working memory
    (Gabor: complex responses on three planes; a wavelet's grows with its level), which bounds the peak (tracemalloc)
    on a whole CT, where the filter's memory weighs most (the estimate left it out: a third of the Gabor's peak)."""
    import tracemalloc

    folder = data / "sts" / "STS_002"
    image, mask = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    tracemalloc.start()
    try:
        plan = plan_feature_maps(image, mask, "stat_mean", radius=1, image_filter=image_filter)
        run_plan(plan)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= plan.memory.total, (peak, plan.memory.total)


# --------------------------------------------------------------------------------------------
# Local intensity (ibsi only): the 1 cm^3 sphere reaches beyond the kernel
# --------------------------------------------------------------------------------------------

def sphere_mean_brute_force(array, spacing, voxel):
    """IBSI 3.2 by its definition: the mean of every voxel whose centre is within r = (3 / (4 pi))^(1/3) cm of the
    centre of ``voxel`` (world distances with the (z, y, x) ``spacing``), in or out of the ROI, inside the image."""
    radius = (3 / (4 * np.pi)) ** (1 / 3) * 10.0
    grid = np.indices(array.shape)
    distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, voxel, spacing))
    return array[distance2 <= radius ** 2].mean()


@pytest.mark.parametrize("case, radius, in_plane, settings, min_ties", [
    ("brain1_crop", 1, False, {}, 0),                                # 8 x 8 x 4: every sphere clipped by the image
    ("brain1", 2, True, {}, 10),                                     # 0.78 x 0.78 x 6.5 mm: an in-plane disc
    ("sts_ct", 1, False, {"resegment_range": (30.0, 60.0)}, 10),     # 0.98 x 0.98 x 3.27 mm: 3 slices of sphere
])
def test_local_intensity_maps_equal_the_engine_on_their_kernel(case, radius, in_plane, settings, min_ties,
                                                               brain1_crop, brain1, data):
    """Random voxels of real images with anisotropic spacing, and kernels whose maximum intensity occurs more than
    once (the tie rule: the highest of their sphere means): loc_peak_loc / loc_peak_glob equal the engine's local
    intensity run on the voxel's kernel (its ROI voxels as centres, the whole image in the spheres), and the global
    peak equals a brute-force mean over world distances; re-segmented voxels are no centres (NaN when a kernel has
    none); the highest map value of loc_peak_glob is the segment's global peak."""
    from RadiomicsLabLib.ibsi.config import IbsiSettings
    from RadiomicsLabLib.ibsi.engine import family_module
    from RadiomicsLabLib.ibsi.preprocessing import prepare_roi

    if case == "brain1_crop":
        image, mask = brain1_crop
    elif case == "brain1":
        image, mask = sitk.ReadImage(str(brain1[0])), sitk.ReadImage(str(brain1[1]))
    else:
        folder = data / "sts" / "STS_001"
        image, mask = sitk.ReadImage(str(folder / "CT_image.nii.gz")), sitk.ReadImage(str(folder / "CT_mask.nii.gz"))
    maps = feature_maps(image, mask, "local_intensity", radius=radius, in_plane=in_plane, **settings)
    assert list(maps) == ["loc_peak_loc", "loc_peak_glob"]
    ibsi = IbsiSettings(dimensions=("2D",) if in_plane else ("3D",), **settings)
    roi, _ = prepare_roi(image, mask, ibsi)
    roi_voxels = np.argwhere(sitk.GetArrayFromImage(mask) == 1)
    reach = (0 if in_plane else radius, radius, radius)

    def kernel(i):
        box = tuple(slice(max(c - r, 0), c + r + 1) for c, r in zip(roi_voxels[i], reach))
        return box, roi.image[box][roi.intensity_mask[box]]

    order = np.random.default_rng(5).permutation(len(roi_voxels))[:3000]
    tied = [i for i in order[30:] if (values := kernel(i)[1]).size and np.sum(values == values.max()) > 1][:10]
    assert len(tied) >= min_ties
    undefined = np.flatnonzero(np.isnan(maps.array("loc_peak_glob")))   # kernels re-segmented out entirely
    assert (undefined.size > 0) == bool(settings)
    picked = np.concatenate([order[:30], tied, undefined[:5]]).astype(int)
    voxels = [tuple(roi_voxels[i]) for i in picked]
    expected = engine_on_kernels(image, mask, ibsi, voxels, radius, in_plane, families=("local_intensity",))
    for name in maps:
        assert close(maps.array(name)[picked], [e[name] for e in expected], rtol=1e-12), name
    # Independent of the engine: the global peak of a few kernels by brute force over world distances.
    for i in [*order[:2], *tied[:2]]:
        box, values = kernel(i)
        if values.size:
            centres = np.argwhere(roi.intensity_mask[box]) + [b.start for b in box]
            means = [sphere_mean_brute_force(roi.image, roi.spacing, c) for c in centres]
            assert maps.array("loc_peak_glob")[i] == pytest.approx(max(means), rel=1e-12)
    segment = family_module("local_intensity").compute(roi, ibsi)
    assert np.nanmax(maps.array("loc_peak_glob")) == pytest.approx(segment["loc_peak_glob"], rel=1e-12)


def test_local_intensity_names_memory_and_pyradiomics_refusal(brain1_crop):
    """The family and its tags resolve for ibsi (3D and in-plane kernels); its memory estimate counts the sphere
    means; the pyradiomics definition, which has no local intensity, refuses it naming the family."""
    image, mask = brain1_crop
    assert resolve_features("local_intensity") == ["loc_peak_loc", "loc_peak_glob"]
    assert resolve_features("loc_peak_glob", in_plane=True) == ["loc_peak_glob"]
    assert {n for n, f in catalogue("ibsi").items() if f == "local_intensity"} == {"loc_peak_loc", "loc_peak_glob"}
    assert "loc_peak_loc" not in resolve_features("texture") and "loc_peak_loc" in resolve_features("all")
    plain = plan_feature_maps(image, mask, "stat_mean", radius=1)
    local = plan_feature_maps(image, mask, "stat_mean,loc_peak_loc", radius=1)
    assert local.memory.inputs > plain.memory.inputs and local.prepared.means is not None
    assert plain.prepared.means is None
    for token in ("local_intensity", "loc_peak_loc"):
        with pytest.raises(RadiomicsLabError, match=f"'{token}' is an IBSI local intensity feature .*family "
                                                    "local_intensity.*pyradiomics does not have.*--definition ibsi"):
            resolve_features(token, "pyradiomics")


def test_cli_writes_local_intensity_maps(brain1_crop, brain1_crop_files, tmp_path):
    image, mask = brain1_crop
    out = tmp_path / "maps"
    done = run_cli("maps", tmp_path / "image.nrrd", tmp_path / "mask.nrrd", "--features", "local_intensity",
                   "--radius", "1", "-o", out)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["loc_peak_glob.nrrd", "loc_peak_loc.nrrd", "maps.json",
                                                     "summary.csv"]
    api = feature_maps(image, mask, "local_intensity", radius=1)
    roi = sitk.GetArrayFromImage(mask) == 1
    for name in ("loc_peak_loc", "loc_peak_glob"):
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{name}.nrrd")))
        assert np.array_equal(written[roi], api.array(name)) and np.isnan(written[~roi]).all()
    assert [r["feature"] for r in read_csv(out / "summary.csv")] == ["loc_peak_loc", "loc_peak_glob"]
    test_cli.assert_user_error(run_cli("maps", tmp_path / "image.nrrd", tmp_path / "mask.nrrd", "--features",
                                       "local_intensity", "--definition", "pyradiomics", "-o", tmp_path / "py"),
                               "IBSI local intensity feature", "--definition ibsi")
    assert not (tmp_path / "py").exists()


# --------------------------------------------------------------------------------------------
# GLCM matrices updated as the kernel slides (issue #21): the values of matrices rebuilt per kernel
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("radius, in_plane", [(2, False), (3, True)])
def test_glcm_sliding_equals_rebuilt_and_engine(radius, in_plane, sts_ct, monkeypatch):
    """Real CT crop (124 GTV voxels, rows of the ROI with gaps): the GLCM maps of both definitions from matrices
    updated as the kernel slides equal those of matrices rebuilt from every kernel's box, bit for bit whatever the
    chunks, and (ibsi) the engine run on random kernels."""
    from RadiomicsLabLib import featuremap_kernels
    from RadiomicsLabLib.ibsi.config import IbsiSettings

    image, mask = sts_ct
    runs = {"ibsi": {"bin_width": 10.0, "resegment_range": (-30.0, 60.0)}, "pyradiomics": {"binWidth": 10}}
    for definition, settings in runs.items():
        sliding = feature_maps(image, mask, "glcm", radius=radius, definition=definition, in_plane=in_plane, **settings)
        chunked = feature_maps(image, mask, "glcm", radius=radius, definition=definition, in_plane=in_plane,
                               working_memory=1, **settings)
        assert np.array_equal(sliding.values, chunked.values, equal_nan=True), definition
        with monkeypatch.context() as patch:
            patch.setattr(featuremap_kernels, "SLIDING_MAX_LEVELS", 0)    # every kernel's matrices rebuilt
            rebuilt = feature_maps(image, mask, "glcm", radius=radius, definition=definition, in_plane=in_plane,
                                   **settings)
        for name in sliding:
            assert close(sliding.array(name), rebuilt.array(name), rtol=1e-12, atol_scale=1e-13), (definition, name)
    maps = feature_maps(image, mask, "glcm", radius=radius, definition="ibsi", in_plane=in_plane, **runs["ibsi"])
    roi = np.argwhere(sitk.GetArrayFromImage(mask) == 1)
    picked = np.random.default_rng(21).choice(len(roi), 8, replace=False)
    ibsi = IbsiSettings(dimensions=("2D",) if in_plane else ("3D",), **runs["ibsi"])
    expected = engine_on_kernels(image, mask, ibsi, [tuple(roi[i]) for i in picked], radius, in_plane, ["glcm"])
    assert len(maps) == 50
    for name in maps:
        assert close(maps.array(name)[picked], [e[name] for e in expected], rtol=1e-9, atol_scale=1e-10), name


def test_mcc_and_its_closed_3x3_form_equal_eigenvalues():
    """MCC (pyradiomics: sqrt of Q's second largest eigenvalue) of random symmetric count matrices with 2 to 12 grey
    levels present equals numpy's eigenvalues (4 of them present: the 3 x 3 closed form; 5 or more: Laguerre's
    iteration on the tridiagonal form); that closed form of a
    symmetric 3 x 3 matrix's spectral radius equals numpy's to 1e-13, or leaves the nearly degenerate matrices (two
    eigenvalues within its margin, an exact double one included) to the general method (:func:`_spectral_radius`)."""
    from RadiomicsLabLib import featuremap_kernels as kernels

    rng = np.random.default_rng(2106)
    n_levels = 14
    scratch = (np.empty((n_levels, n_levels)), np.empty(n_levels, dtype=np.int64), np.empty(n_levels),
               np.empty(n_levels))
    for present in range(2, 13):
        for _ in range(60):
            levels = rng.choice(n_levels, present, replace=False)
            counts = np.zeros((n_levels, n_levels))
            for a, b in rng.choice(levels, (int(rng.integers(present, 3 * present + 14)), 2)):
                counts[a, b] += 1
                counts[b, a] += 1
            px = counts.sum(axis=1)
            shown = px > 0
            # Q = D^-1 P D^-1 P^T has the squared eigenvalues of the symmetric B = D^-1/2 P D^-1/2 (the largest 1)
            b = counts[np.ix_(shown, shown)] / np.sqrt(np.outer(px[shown], px[shown]))
            expected = np.sort(np.abs(np.linalg.eigvalsh(b)))[-2] if shown.sum() > 1 else 0.0
            i, j = np.nonzero(counts)
            mcc = kernels._mcc(i.astype(np.int64), j.astype(np.int64), counts[i, j], 0, i.size, counts.sum(), px,
                               n_levels, n_levels, *scratch)
            assert mcc == pytest.approx(expected, rel=1e-10, abs=1e-12), present

    def radius(a):
        return kernels._spectral_radius_3x3(a[0, 0], a[1, 1], a[2, 2], a[0, 1], a[0, 2], a[1, 2])

    closed = 0
    for _ in range(2000):
        a = rng.uniform(-1, 1, (3, 3))
        a = a + a.T
        found = radius(a)
        if found >= 0:
            closed += 1
            assert found == pytest.approx(np.abs(np.linalg.eigvalsh(a)).max(), rel=1e-13)
    assert closed > 1900
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    for diagonal in ((0.5, 0.5, -0.2), (0.3, -0.1, -0.1), (0.4, 0.4 + 1e-6, 0.1)):
        assert radius(rotation @ np.diag(diagonal) @ rotation.T) == -1.0     # left to _spectral_radius
    assert radius(np.diag([0.2, -0.7, 0.1])) == 0.7


def _tridiagonal(d, e):
    """The symmetric tridiagonal matrix with diagonal ``d`` and off-diagonal ``e[:n - 1]``."""
    n = d.size
    return np.diag(d) + np.diag(e[:n - 1], 1) + np.diag(e[:n - 1], -1)


def test_laguerre_spectral_radius_equals_eigenvalues_and_ql():
    """The spectral radius of a symmetric tridiagonal matrix by Laguerre's iteration from the Gershgorin bounds equals
    numpy's eigenvalues and the QL algorithm's to 1e-14 of the matrix's norm: random matrices, split ones (a zero
    off-diagonal entry), nearly diagonal ones, equal diagonals, repeated extreme eigenvalues, rounded entries, the
    bound +-1 of the MCC's deflated matrices, 120 to 300 rows of tiny or unit entries (products rescaled); and it
    declines (-1, for QL) where it is given too few steps."""
    from RadiomicsLabLib import featuremap_kernels as kernels

    rng = np.random.default_rng(1206)
    cases = [(np.full(4, 0.5), np.array([0.1, 0.0, 0.1, 0.0])), (np.full(3, 0.3), np.zeros(3)),
             (np.array([0.2, -0.2]), np.zeros(2)), (np.zeros(3), np.zeros(3))]
    for trial in range(3000):
        n = int(rng.integers(2, 14))
        d, e = rng.uniform(-1, 1, n), rng.uniform(-0.5, 0.5, n)
        if trial % 5 == 1:
            e[rng.integers(0, n - 1)] = 0.0
        elif trial % 5 == 2:
            e *= 1e-9
        elif trial % 5 == 3:
            d[:] = d[0]
        elif trial % 5 == 4:
            d, e = np.round(d * 3) / 3, np.round(e * 4) / 4
        cases.append((d, e))
    for d, e in cases:
        n = d.size
        tridiagonal = _tridiagonal(d, e)
        expected = np.abs(np.linalg.eigvalsh(tridiagonal)).max()
        norm = max(np.abs(tridiagonal).sum(axis=1).max(), 1e-300)
        for bound in (np.inf, max(1.0, expected) + 1e-9):
            found = kernels._laguerre_spectral_radius(d.copy(), e.copy(), n, bound)
            assert abs(found - expected) <= 1e-14 * norm, (d, e, found, expected)
        assert abs(kernels._tridiagonal_spectral_radius(d.copy(), e.copy(), n) - expected) <= 1e-14 * norm
    for n, size in ((300, 1e-3), (300, 1.0), (120, 1e-6)):    # products of hundreds of factors: rescaled
        d, e = rng.uniform(-size, size, n), rng.uniform(-size, size, n) / 2
        tridiagonal = _tridiagonal(d, e)
        expected = np.abs(np.linalg.eigvalsh(tridiagonal)).max()
        found = kernels._laguerre_spectral_radius(d, e, n)
        assert abs(found - expected) <= 1e-13 * np.abs(tridiagonal).sum(axis=1).max(), (n, size)
    d, e = rng.uniform(-1, 1, 6), rng.uniform(0.2, 0.5, 6)
    assert kernels._laguerre_spectral_radius(d, e, 6, np.inf, 1) == -1.0


def test_compiled_feature_lists_follow_the_engine():
    """The compiled IBSI GLCM columns are the engine's GLCM base tags in order, and the local intensity tags the
    catalogue names without importing that family (see ``featuremaps._ibsi_catalogue``) are the engine's."""
    from RadiomicsLabLib import featuremap_kernels
    from RadiomicsLabLib.ibsi.engine import family_module
    from RadiomicsLabLib.ibsi.features.glcm import BASE_TAGS

    assert tuple(f"cm_{base}" for base in featuremap_kernels.IBSI_GLCM) == BASE_TAGS
    assert list(family_module("local_intensity").FEATURES) == list(featuremap_kernels.LOCAL_PEAKS)
