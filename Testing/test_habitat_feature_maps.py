"""Habitats with voxel-wise feature maps as extra channels, on real sarcoma patients (CT; ROI = CT_mask).

A map channel holds exactly what :func:`RadiomicsLabLib.featuremaps.feature_maps` gives inside the ROI (the
IBSI local mean is also recomputed independently with numpy); the same seed repeats every number; channel
means per habitat list the image channels first, then the maps, and equal numpy means of the maps over each
habitat; the real ``radiomicslab habitats --feature-map`` command writes the same result; population-level
habitats over two patients keep one id per channel profile and label a patient again identically; existing
feature-map volume nodes and maps made on the fly give the same habitats in the scene; bad input is refused
with the feature-map error and its closest name.
"""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.featuremaps import feature_maps
from RadiomicsLabLib.habitats import MAP_METADATA, Patient, feature_map_channels, fit_habitats, voxel_data
from RadiomicsLabLib.registration import resample

from conftest import read_csv, run_cli
from test_cli import assert_user_error

CONTRAST = "glcm_Contrast"      # pyradiomics definition: the map keeps pyradiomics' name
MAPS = dict(feature_maps=[CONTRAST], map_radius=1, map_definition="pyradiomics")


def load(data, name, channels=("CT",)) -> Patient:
    folder = data / "sts" / name
    return Patient(name, sitk.ReadImage(str(folder / "CT_mask.nii.gz")),
                   {c: sitk.ReadImage(str(folder / f"{c}_image.nii.gz")) for c in channels})


@pytest.fixture(scope="module")
def sts002(data):
    return load(data, "STS_002")  # the smallest tumour (17090 voxels)


@pytest.fixture(scope="module")
def contrast002(sts002):
    """pyradiomics-definition GLCM Contrast map of STS_002's CT inside the ROI, radius 1, straight from feature_maps."""
    return sitk.GetArrayFromImage(feature_maps(sts002.channels["CT"], sts002.mask, CONTRAST, 1, "pyradiomics")[CONTRAST])


@pytest.fixture(scope="module")
def habitats002(sts002):
    return fit_habitats(sts002, 3, seed=4, **MAPS)


def labels_of(result):
    return sitk.GetArrayFromImage(result.label_map)


def test_map_channel_is_the_feature_map(sts002, contrast002):
    data = voxel_data(sts002, **MAPS)
    assert data.channels == ["CT", f"CT:{CONTRAST}"] and data.omitted_voxels == 0
    inside = tuple(data.grid_index.T)
    assert len(data.raw) == np.count_nonzero(sitk.GetArrayViewFromImage(sts002.mask))
    assert np.array_equal(data.raw[:, 1], contrast002[inside])  # exactly feature_maps' values
    # the IBSI local mean, independently: the mean of the ROI voxels of the 3 x 3 x 3 kernel (no margin: ROI only)
    ibsi = voxel_data(sts002, feature_maps="firstorder_Mean", map_radius=1, map_definition="ibsi")
    assert ibsi.channels == ["CT", "CT:stat_mean"]
    ct = sitk.GetArrayFromImage(sts002.channels["CT"]).astype(np.float64)
    roi = sitk.GetArrayViewFromImage(sts002.mask) > 0
    kernel = np.ones((3, 3, 3))
    inside = tuple(ibsi.grid_index.T)
    local_mean = (ndimage.convolve(np.where(roi, ct, 0.0), kernel, mode="constant")[inside]
                  / ndimage.convolve(roi * 1.0, kernel, mode="constant")[inside])
    assert np.allclose(ibsi.raw[:, 1], local_mean, rtol=1e-12, atol=1e-9)
    # the same maps as channel images: on the mask's grid, NaN outside the ROI, marked as maps
    (name, image), = feature_map_channels(sts002, features=CONTRAST, radius=1, definition="pyradiomics").items()
    assert name == f"CT:{CONTRAST}" and image.GetMetaData(MAP_METADATA) == CONTRAST
    assert image.GetSize() == sts002.mask.GetSize() and image.GetOrigin() == sts002.mask.GetOrigin()
    assert np.array_equal(sitk.GetArrayViewFromImage(image), contrast002, equal_nan=True)
    assert np.isnan(sitk.GetArrayViewFromImage(image)[~roi]).all()
    # put into the patient's channels by hand, it clusters exactly as the maps made by fit_habitats
    by_hand = Patient("STS_002", sts002.mask, {"CT": sts002.channels["CT"], name: image})
    _, (manual,) = fit_habitats(by_hand, 3, seed=4)
    _, (made,) = fit_habitats(sts002, 3, seed=4, **MAPS)
    assert np.array_equal(labels_of(manual), labels_of(made)) and manual.rows == made.rows


def test_deterministic_and_channel_means(sts002, contrast002, habitats002):
    model, (result,) = habitats002
    again_model, (again,) = fit_habitats(sts002, 3, seed=4, **MAPS)
    assert np.array_equal(again_model.clustering.cluster_centers_, model.clustering.cluster_centers_)
    assert np.array_equal(labels_of(result), labels_of(again)) and result.rows == again.rows
    # image channels first, then the maps; habitats ordered by the first channel (CT), named by both
    assert model.channels == ["CT", f"CT:{CONTRAST}"] and model.image_channels == ["CT"]
    assert np.all(np.diff(model.clustering.cluster_centers_[:, 0]) > 0)
    assert all(f"CT:{CONTRAST} " in name for name in model.names)
    columns = list(result.rows[0])
    assert columns[columns.index("mean_CT"):] == ["mean_CT", f"mean_CT:{CONTRAST}", "normalised_mean_CT",
                                                  f"normalised_mean_CT:{CONTRAST}"]
    labels = labels_of(result)
    roi = labels > 0
    ct = sitk.GetArrayFromImage(sts002.channels["CT"]).astype(np.float64)
    for row in result.rows:
        chosen = labels == row["habitat"]
        assert row["voxels"] == np.count_nonzero(chosen) > 0
        assert row[f"mean_CT:{CONTRAST}"] == pytest.approx(contrast002[chosen].mean(), rel=1e-12)
        assert row["mean_CT"] == pytest.approx(ct[chosen].mean(), rel=1e-9)
        z = (contrast002[chosen] - contrast002[roi].mean()) / contrast002[roi].std()
        assert row[f"normalised_mean_CT:{CONTRAST}"] == pytest.approx(z.mean(), rel=1e-9, abs=1e-12)
    assert model.options["feature_maps"] == [f"CT:{CONTRAST}"] and model.options["map_definition"] == "pyradiomics"


def test_cli_writes_the_same_result(data, sts002, habitats002, tmp_path):
    folder = data / "sts" / "STS_002"
    out = tmp_path / "maps"
    done = run_cli("habitats", folder / "CT_mask.nii.gz", "--channel", f"CT={folder / 'CT_image.nii.gz'}",
                   "--feature-map", CONTRAST, "--map-radius", "1", "--map-definition", "pyradiomics", "-k", "3",
                   "--seed", "4", "-o", out)
    assert done.returncode == 0, done.stderr
    model, (expected,) = habitats002
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "habitats.nrrd"))), labels_of(expected))
    rows = read_csv(out / "habitats.csv")
    assert [r["name"] for r in rows] == model.names
    assert [float(r[f"mean_CT:{CONTRAST}"]) for r in rows] == [r[f"mean_CT:{CONTRAST}"] for r in expected.rows]
    provenance = json.loads((out / "habitats.provenance.json").read_text())
    assert provenance["channels"] == ["CT", f"CT:{CONTRAST}"]
    assert provenance["options"]["feature_maps"] == [f"CT:{CONTRAST}"] and provenance["options"]["map_radius"] == 1
    # CHANNEL:FEATURE and a family name, as the core takes them
    again = tmp_path / "again"
    done = run_cli("habitats", folder / "CT_mask.nii.gz", "--channel", f"CT={folder / 'CT_image.nii.gz'}",
                   "--feature-map", f"CT:{CONTRAST}", "--map-definition", "pyradiomics", "-k", "3", "--seed", "4", "-o", again)
    assert done.returncode == 0, done.stderr
    assert (again / "habitats.csv").read_text() == (out / "habitats.csv").read_text()


def test_population_keeps_one_id_per_profile(data, sts002):
    patients = [sts002, load(data, "STS_003")]
    model, results = fit_habitats(patients, 3, seed=2, **MAPS)
    centres = model.clustering.cluster_centers_
    for patient, result in zip(patients, results):
        data_ = voxel_data(patient, **MAPS)
        # the same features for every patient: each patient's map channel is its own feature map
        own = sitk.GetArrayFromImage(feature_maps(patient.channels["CT"], patient.mask, CONTRAST, 1, "pyradiomics")[CONTRAST])
        assert np.array_equal(data_.raw[:, 1], own[tuple(data_.grid_index.T)])
        ids = labels_of(result)[tuple(data_.grid_index.T)]
        features = model.normalised(data_)
        for habitat in range(1, 4):
            assert np.count_nonzero(ids == habitat) >= 50, (patient.name, habitat)
            profile = features[ids == habitat].mean(axis=0)
            assert np.argmin(((centres - profile) ** 2).sum(axis=1)) + 1 == habitat
        # the model makes the maps of a patient it labels again (image channels only): the same habitats
        relabelled = model.label(Patient(patient.name, patient.mask, dict(patient.channels)))
        assert np.array_equal(labels_of(relabelled), labels_of(result))
    # fitted in the other order with another seed: the same habitats under the same ids
    other, other_results = fit_habitats(patients[::-1], 3, seed=9, **MAPS)
    assert other.names == model.names and np.allclose(other.clustering.cluster_centers_, centres, atol=0.1)
    for result, other_result in zip(results, other_results[::-1]):
        roi = labels_of(result) > 0
        assert np.mean(labels_of(result)[roi] == labels_of(other_result)[roi]) > 0.97


def test_maps_of_resampled_channels(data):
    """Maps of PET and MR (on their own grids) are made on each as it lies on the mask's grid, as it is clustered; the
    MR's field of view ends inside the CT's, and the voxels beyond it (NaN, outside the ROI) are never read."""
    patient = load(data, "STS_002", ("CT", "MR_T1", "PET"))
    data_ = voxel_data(patient, "resample", feature_maps="PET:firstorder_Mean,MR_T1:glcm_Contrast", map_definition="ibsi")
    assert data_.channels == ["CT", "MR_T1", "PET", "PET:stat_mean", "MR_T1:cm_contrast_3D_avg"]
    inside = tuple(data_.grid_index.T)
    for column, (channel, feature) in enumerate([("PET", "stat_mean"), ("MR_T1", "cm_contrast_3D_avg")], start=3):
        on_grid = sitk.GetArrayFromImage(resample(patient.channels[channel], patient.mask))
        assert np.array_equal(data_.raw[:, data_.channels.index(channel)], on_grid[inside])
        if channel == "MR_T1":
            assert np.isnan(on_grid).any()  # beyond the MR's field of view
        finite = sitk.GetImageFromArray(np.where(np.isfinite(on_grid), on_grid, 0))
        finite.CopyInformation(patient.mask)
        expected = sitk.GetArrayFromImage(feature_maps(finite, patient.mask, feature, 1, "ibsi")[feature])
        assert np.array_equal(data_.raw[:, column], expected[inside])
    with pytest.raises(RadiomicsLabError, match="Channel 'PET' is on a different grid from the mask.*feature_maps="):
        feature_map_channels(patient, features="firstorder_Mean", source_channel="PET")


def test_undefined_map_voxels_follow_the_nan_policy(sts002):
    """IBSI's quartile coefficient of dispersion (P75 - P25) / (P75 + P25) is 0/0 in one kernel of STS_002's CT."""
    qcod = voxel_data(sts002, feature_maps="stat_qcod", nan_policy="omit")
    undefined = np.isnan(sitk.GetArrayFromImage(feature_maps(sts002.channels["CT"], sts002.mask, "stat_qcod")["stat_qcod"]))
    roi = sitk.GetArrayViewFromImage(sts002.mask) > 0
    count = int(np.count_nonzero(undefined & roi))
    assert count >= 1 and qcod.omitted_voxels == count
    with pytest.raises(RadiomicsLabError, match=rf"Feature map 'CT:stat_qcod' of patient 'STS_002' is undefined \(NaN\) at "
                                                rf"{count} voxel\(s\) inside the ROI.*NaN policy 'omit'"):
        fit_habitats(sts002, 3, feature_maps=["stat_qcod"])
    _, (omitted,) = fit_habitats(sts002, 3, feature_maps=["stat_qcod"], nan_policy="omit", seed=1)
    assert omitted.omitted_voxels == count and not labels_of(omitted)[undefined & roi].any()
    _, (filled,) = fit_habitats(sts002, 3, feature_maps=["stat_qcod"], nan_policy="fill", seed=1)
    assert labels_of(filled)[undefined & roi].min() >= 1 and filled.omitted_voxels == 0


def test_bad_input(data, sts002, tmp_path):
    with pytest.raises(RadiomicsLabError, match="Unknown feature 'glcm_Contrst' for the pyradiomics definition; "
                                                "did you mean 'glcm_Contrast'"):
        fit_habitats(sts002, 3, feature_maps=["glcm_Contrst"], map_definition="pyradiomics")
    with pytest.raises(RadiomicsLabError, match="Feature map 'MR:glcm_Contrast' names channel 'MR'; the channels are CT"):
        fit_habitats(sts002, 3, feature_maps=["MR:glcm_Contrast"])
    with pytest.raises(RadiomicsLabError, match="radius must be 1 or more"):
        fit_habitats(sts002, 3, feature_maps=[CONTRAST], map_radius=0)
    with pytest.raises(RadiomicsLabError, match="Unknown IBSI setting 'bin_widht'.*did you mean 'bin_width'"):
        fit_habitats(sts002, 3, feature_maps=[CONTRAST], map_settings={"bin_widht": 10})
    with pytest.raises(RadiomicsLabError, match="label are fixed for habitats"):
        fit_habitats(sts002, 3, feature_maps=[CONTRAST], map_settings={"label": 2})
    # a bin width wider than the CT range in the ROI: one grey level, a constant contrast map
    with pytest.raises(RadiomicsLabError, match=r"'CT:cm_contrast_3D_avg' of patient 'STS_002' has no variance.*bin width"):
        fit_habitats(sts002, 3, feature_maps=[CONTRAST], map_settings={"bin_width": 1e6})
    model, _ = fit_habitats(sts002, 2, seed=1, feature_maps=["firstorder_Mean"])
    with pytest.raises(RadiomicsLabError, match="fitted on CT .same names, same order. and makes the feature maps itself"):
        model.label(Patient("x", sts002.mask, {"CT": sts002.channels["CT"], "CT:stat_mean": sts002.channels["CT"]}))
    folder = data / "sts" / "STS_002"
    # a map on another grid (PET's, inside the PET mask) cannot be registered by itself
    pet = Patient("STS_002", sitk.ReadImage(str(folder / "PET_mask.nii.gz")),
                  {"PET": sitk.ReadImage(str(folder / "PET_image.nii.gz"))})
    pet_maps = feature_map_channels(pet, features="firstorder_Mean")
    with pytest.raises(RadiomicsLabError, match="'PET:stat_mean' of patient 'STS_002' is not on the mask's grid.*"
                                                "--feature-map CHANNEL:FEATURE"):
        fit_habitats(Patient("STS_002", sts002.mask, {"CT": sts002.channels["CT"], **pet_maps}), 3, registration="rigid")
    out = tmp_path / "out"
    assert_user_error(run_cli("habitats", folder / "CT_mask.nii.gz", "--channel", f"CT={folder / 'CT_image.nii.gz'}",
                              "--feature-map", "glcm_Contrst", "--map-definition", "pyradiomics", "-o", out),
                      "Unknown feature 'glcm_Contrst'", "did you mean 'glcm_Contrast'")
    assert not out.exists()


# MRML scene --------------------------------------------------------------------------------------
def test_mrml_map_nodes_and_maps_on_the_fly(data, sts002, habitats002):
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.featuremaps import FeatureMapLogic
    from RadiomicsLabLib.mrml.habitats import HabitatLogic

    logic = HabitatLogic(new_headless_app().scene)
    folder = data / "sts" / "STS_002"
    ct = logic.load_volume(folder / "CT_image.nii.gz", "STS_002 CT")
    segmentation = logic.load_segmentation(folder / "CT_mask.nii.gz", ct, "STS_002 GTV")
    # maps made on the fly in the same Logic call: the core's habitats
    model, (expected,) = habitats002
    fly = logic.habitats(segmentation, None, {"CT": ct}, 3, name="fly", seed=4, **MAPS)
    assert fly.model.channels == model.channels and fly.model.names == model.names
    statistics = logic.table_rows(fly.statistics)
    assert [r[f"mean_CT:{CONTRAST}"] for r in statistics] == pytest.approx([r[f"mean_CT:{CONTRAST}"] for r in expected.rows],
                                                                            rel=1e-12)
    assert fly.means_chart.GetNumberOfPlotSeriesNodes() == 2
    # an existing feature-map volume node (FeatureMapLogic) as a channel: the same habitats
    map_node = FeatureMapLogic(logic.scene).compute(ct, segmentation, None, CONTRAST, 1, "pyradiomics").maps[CONTRAST]
    assert map_node.IsA("vtkMRMLScalarVolumeNode")
    nodes = logic.habitats(segmentation, None, {"CT": ct, f"CT:{CONTRAST}": map_node}, 3, name="nodes", seed=4)
    assert nodes.model.names == model.names
    for a, b in zip(logic.table_rows(nodes.statistics), statistics):
        assert a["voxels"] == b["voxels"] and a[f"mean_CT:{CONTRAST}"] == pytest.approx(b[f"mean_CT:{CONTRAST}"], rel=1e-12)
    # with a registration kind the map node stays where it is (it is aligned with its volume): no transform node
    registered = logic.habitats(segmentation, None, {"CT": ct, f"CT:{CONTRAST}": map_node}, 3, name="rigid", seed=4,
                                registration="rigid")
    assert registered.transforms == {}
    assert [r["voxels"] for r in logic.table_rows(registered.statistics)] == [r["voxels"] for r in statistics]
