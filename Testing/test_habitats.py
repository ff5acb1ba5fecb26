"""Habitats on the four real sarcoma patients (CT, MR T1 and PET, co-registered; ROI = CT_mask).

Through the core, the MRML scene and the real ``radiomicslab habitats`` command: population-level
habitats keep one id per channel profile in every patient and whatever order or seed they are fitted
with; a fixed seed repeats every number; statistics are checked against independent recomputations
(and the per-habitat engine features against them); the estimator works inside a scikit-learn
Pipeline; island clean-up is checked on a synthetic array with a known answer; every bad input of
the issue is refused with one clear line and nothing written.
"""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.habitats import (
    ChannelScaler,
    HabitatClustering,
    Patient,
    cohort_patients,
    fit_habitats,
    habitat_colour,
    remove_islands,
    voxel_data,
)

from conftest import chart_values, read_csv, run_cli, start_then_cancel, table_values
from test_cli import assert_user_error

CHANNELS = ("CT", "MR_T1", "PET")
PATIENTS = ("STS_001", "STS_002", "STS_003", "STS_004")
FIRSTORDER = {"setting": {"binWidth": 25}, "featureClass": {"firstorder": []}}


def load_patient(data, name, channels=CHANNELS) -> Patient:
    folder = data / "sts" / name
    return Patient(name, sitk.ReadImage(str(folder / "CT_mask.nii.gz")),
                   {c: sitk.ReadImage(str(folder / f"{c}_image.nii.gz")) for c in channels})


@pytest.fixture(scope="module")
def patients(data):
    return [load_patient(data, name) for name in PATIENTS]


@pytest.fixture(scope="module")
def population(patients):
    return fit_habitats(patients, 4, "kmeans", registration="resample", seed=7)


def labels_of(result):
    return sitk.GetArrayFromImage(result.label_map)


def test_population_habitats_are_consistent_across_patients(patients, population):
    model, results = population
    centres = model.clustering.cluster_centers_
    assert model.n_habitats == 4 and np.all(np.diff(centres[:, 0]) > 0)  # ordered by the first channel (CT)
    assert model.names[0].startswith("Habitat 1: CT low") and model.names[-1].startswith("Habitat 4: CT high")
    for patient, result in zip(patients, results):
        labels, roi = labels_of(result), sitk.GetArrayViewFromImage(patient.mask) > 0
        assert result.label_map.GetSize() == patient.mask.GetSize() and result.label_map.GetOrigin() == patient.mask.GetOrigin()
        assert not labels[~roi].any() and set(np.unique(labels[roi])) <= {1, 2, 3, 4} and labels[roi].min() >= 1
        assert sum(result.fractions().values()) == pytest.approx(1.0)
        # the same channel profile has the same id: each patient's habitat profile is nearest to that habitat's centre
        data = voxel_data(patient, "resample")
        features = model.normalised(data)
        ids = labels[tuple(data.grid_index.T)]
        for habitat in range(1, 5):
            if np.count_nonzero(ids == habitat) >= 50:
                profile = features[ids == habitat].mean(axis=0)
                assert np.argmin(((centres - profile) ** 2).sum(axis=1)) + 1 == habitat
    # fitted on the patients in reverse order with another seed: the same habitats under the same ids
    other_model, other_results = fit_habitats(patients[::-1], 4, "kmeans", registration="resample", seed=99)
    assert np.allclose(other_model.clustering.cluster_centers_, centres, atol=0.1)
    assert other_model.names == model.names
    by_name = {r.patient: r for r in other_results}
    for result in results:
        roi = sitk.GetArrayViewFromImage(result.label_map) > 0
        agreement = np.mean(labels_of(result)[roi] == labels_of(by_name[result.patient])[roi])
        assert agreement > 0.97, (result.patient, agreement)


def test_deterministic_for_a_fixed_seed(patients, population):
    model, results = population
    again_model, again = fit_habitats(patients, 4, "kmeans", registration="resample", seed=7)
    assert np.array_equal(again_model.clustering.cluster_centers_, model.clustering.cluster_centers_)
    for first, second in zip(results, again):
        assert np.array_equal(labels_of(first), labels_of(second))
        assert first.rows == second.rows


def test_statistics_are_independent_recomputations(patients, population):
    """Volumes, fractions and channel means against numpy on independently resampled channels."""
    _, results = population
    patient, result = patients[1], results[1]
    labels = labels_of(result)
    roi = labels > 0
    voxel_volume = np.prod(patient.mask.GetSpacing())
    for row in result.rows:
        chosen = labels == row["habitat"]
        assert row["voxels"] == np.count_nonzero(chosen)
        assert row["volume_mm3"] == pytest.approx(row["voxels"] * voxel_volume, rel=1e-12)
        assert row["fraction"] == pytest.approx(row["voxels"] / np.count_nonzero(roi), rel=1e-12)
        for channel, image in patient.channels.items():
            on_grid = sitk.GetArrayFromImage(sitk.Resample(image, patient.mask, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                           sitk.sitkFloat32)).astype(np.float64)
            assert row[f"mean_{channel}"] == pytest.approx(on_grid[chosen].mean(), rel=1e-9)
            z = (on_grid[chosen] - on_grid[roi].mean()) / on_grid[roi].std()
            assert row[f"normalised_mean_{channel}"] == pytest.approx(z.mean(), rel=1e-6, abs=1e-9)


def test_channel_scaler_formulas(patients):
    values = voxel_data(patients[2], "resample").values
    assert np.allclose(ChannelScaler("zscore").fit_transform(values), (values - values.mean(0)) / values.std(0))
    low, high = np.percentile(values, [1, 99], axis=0)
    assert np.allclose(ChannelScaler("percentile").fit_transform(values), (values - low) / (high - low))
    assert np.array_equal(ChannelScaler("none").fit_transform(values), values)


def test_estimator_in_a_pipeline(patients):
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.pipeline import Pipeline

    values = voxel_data(patients[2], "resample").values
    pipeline = Pipeline([("scale", ChannelScaler()), ("habitats", HabitatClustering(4, random_state=0))])
    labels = pipeline.fit_predict(values)
    manual = HabitatClustering(4, random_state=0).fit_predict(ChannelScaler().fit_transform(values))
    assert np.array_equal(labels, manual) and set(labels) == {1, 2, 3, 4}
    copy = clone(pipeline)
    assert copy.get_params()["habitats__n_habitats"] == 4 and not hasattr(copy.named_steps["habitats"], "model_")
    # fitted on one half, applied to the other (no state shared between fits: cross-validation cannot leak)
    train, test = values[::2], values[1::2]
    assert set(copy.fit(train).predict(test)) <= {1, 2, 3, 4}
    with pytest.raises(NotFittedError):
        HabitatClustering().predict(values)


def test_other_methods_auto_k_and_supervoxels(patients):
    patient = patients[1]  # STS_002, the smallest tumour
    gmm, (result,) = fit_habitats(patient, 3, "gmm", registration="resample", seed=1)
    assert gmm.n_habitats == 3 and np.all(np.diff(gmm.clustering.cluster_centers_[:, 0]) > 0)
    assert set(np.unique(labels_of(result))) == {0, 1, 2, 3}
    auto, _ = fit_habitats(patient, "auto", "kmeans", registration="resample", seed=1, k_range=(2, 5))
    scores = auto.clustering.scores_
    assert [row["k"] for row in scores] == [2, 3, 4, 5]
    assert auto.n_habitats == max(scores, key=lambda row: row["silhouette"])["k"]
    assert all(-1 <= row["silhouette"] <= 1 and row["calinski_harabasz"] > 0 for row in scores)
    bic, _ = fit_habitats(patient, "auto", "gmm", criterion="bic", registration="resample", seed=1, k_range=(2, 4))
    assert bic.n_habitats == min(bic.clustering.scores_, key=lambda row: row["bic"])["k"]
    # agglomerative on supervoxels: each supervoxel belongs to one habitat (no island clean-up here)
    model, _ = fit_habitats(patient, 4, "agglomerative", registration="resample", seed=1)
    data = voxel_data(patient, "resample")
    labelled = model.label(patient, data)
    ids = labels_of(labelled)[tuple(data.grid_index.T)]
    assert data.supervoxel is not None and data.supervoxel.max() + 1 >= 40
    for supervoxel in np.unique(data.supervoxel):
        assert len(np.unique(ids[data.supervoxel == supervoxel])) == 1
    assert np.all(np.diff(model.clustering.cluster_centers_[:, 0]) > 0)


def test_remove_islands_known_answer():
    """A 1 x 8 x 8 slab (spacing 2 x 1 x 1 mm, voxel 2 mm^3): habitat 1 left, 3 right, and two islands of habitat 2."""
    labels = np.zeros((1, 8, 8), np.uint8)
    labels[0, :, :4], labels[0, :, 4:] = 1, 3
    labels[0, 2, 1] = 2      # one voxel inside habitat 1: 4 faces with habitat 1 -> 1
    labels[0, 5, 4:6] = 2    # two voxels at the border: 1 face with habitat 1, 5 faces with habitat 3 -> 3
    cleaned = remove_islands(labels, (2.0, 1.0, 1.0), min_volume_mm3=5.0, connectivity=1)
    expected = labels.copy()
    expected[0, 2, 1] = 1
    expected[0, 5, 4:6] = 3
    assert np.array_equal(cleaned, expected)
    # islands of at least the volume stay: 2 voxels x 2 mm^3 = 4 mm^3 >= 4 (the 2 mm^3 one still merges)
    kept = remove_islands(labels, (2.0, 1.0, 1.0), min_volume_mm3=4.0, connectivity=1)
    assert list(kept[0, 5, 4:6]) == [2, 2] and kept[0, 2, 1] == 1
    # a separate part of the ROI (no neighbour) is kept whatever its size
    alone = np.zeros((1, 5, 5), np.uint8)
    alone[0, 0, 0], alone[0, 3:, 3:] = 2, 1
    assert np.array_equal(remove_islands(alone, (1, 1, 1), 100.0), alone)


def test_island_clean_up_on_real_habitats(patients):
    patient = patients[2]
    _, (raw,) = fit_habitats(patient, 4, "kmeans", registration="resample", seed=3)
    _, (clean,) = fit_habitats(patient, 4, "kmeans", registration="resample", seed=3, min_island_mm3=200.0)
    labels = labels_of(clean)
    roi = labels > 0
    assert np.array_equal(roi, labels_of(raw) > 0)  # only labels change, never the ROI
    structure = ndimage.generate_binary_structure(3, 3)
    voxel_volume = np.prod(patient.mask.GetSpacing())
    for habitat in range(1, 5):
        pieces, count = ndimage.label(labels == habitat, structure)
        for piece in range(1, count + 1):
            inside = pieces == piece
            touches_other = np.any(ndimage.binary_dilation(inside) & roi & ~inside & (labels != habitat))
            assert np.count_nonzero(inside) * voxel_volume >= 200.0 or not touches_other


def test_smoothing_stays_inside_the_roi(patients):
    patient = patients[1]
    smooth = voxel_data(patient, "resample", smoothing_mm=3.0)
    # independent: Gaussian-weighted mean of ROI voxels only (normalised convolution)
    roi = np.zeros(smooth.box_shape, bool)
    roi[tuple(smooth.index.T)] = True
    sigma = [3.0 / s for s in patient.mask.GetSpacing()[::-1]]
    ct = np.zeros(smooth.box_shape)
    ct[tuple(smooth.index.T)] = smooth.raw[:, 0]
    inside = tuple(smooth.index.T)
    expected = (ndimage.gaussian_filter(ct, sigma, mode="constant")[inside]
                / ndimage.gaussian_filter(roi * 1.0, sigma, mode="constant")[inside])
    assert np.allclose(smooth.values[:, 0], expected)
    # voxels outside the ROI never leak in: set them to 10^6 and nothing changes
    array = sitk.GetArrayFromImage(patient.channels["CT"]).astype(np.float32)
    array[sitk.GetArrayViewFromImage(patient.mask) == 0] = 1e6
    loud = sitk.GetImageFromArray(array)
    loud.CopyInformation(patient.channels["CT"])
    leaked = voxel_data(Patient(patient.name, patient.mask, {**patient.channels, "CT": loud}), "resample", smoothing_mm=3.0)
    assert np.allclose(leaked.values, smooth.values)


def test_bad_input(patients, data, tmp_path):
    patient = patients[1]
    with pytest.raises(RadiomicsLabError, match="'MR_T1' of patient 'STS_002' is on a different grid.*--registration resample"):
        fit_habitats(patient, 4)  # registration off: MR and PET are on other grids
    flat = sitk.Image(patient.channels["PET"].GetSize(), sitk.sitkFloat32) + 2.5
    flat.CopyInformation(patient.channels["PET"])
    with pytest.raises(RadiomicsLabError, match="'PET' of patient 'STS_002' has no variance inside the ROI"):
        fit_habitats(Patient("STS_002", patient.mask, {**patient.channels, "PET": flat}), 4, registration="resample")
    # a ROI of three voxels (three voxels of the real mask) cannot hold four habitats
    tiny = sitk.GetArrayFromImage(patient.mask) * 0
    for z, y, x in np.argwhere(sitk.GetArrayViewFromImage(patient.mask))[:3]:
        tiny[z, y, x] = 1
    tiny_mask = sitk.GetImageFromArray(tiny)
    tiny_mask.CopyInformation(patient.mask)
    with pytest.raises(RadiomicsLabError, match="4 habitats were asked for but the ROI has only 3 voxels"):
        fit_habitats(Patient("STS_002", tiny_mask, patient.channels), 4, registration="resample")
    # NaN voxels: refused, left out, or filled
    ct = sitk.GetArrayFromImage(patient.channels["CT"]).astype(np.float32)
    holes = np.argwhere(sitk.GetArrayViewFromImage(patient.mask))[::1000]
    ct[tuple(holes.T)] = np.nan
    nan_ct = sitk.GetImageFromArray(ct)
    nan_ct.CopyInformation(patient.channels["CT"])
    with_nan = Patient("STS_002", patient.mask, {**patient.channels, "CT": nan_ct})
    with pytest.raises(RadiomicsLabError, match=f"'CT' of patient 'STS_002' has {len(holes)} NaN"):
        fit_habitats(with_nan, 4, registration="resample")
    _, (omitted,) = fit_habitats(with_nan, 4, registration="resample", nan_policy="omit")
    assert omitted.omitted_voxels == len(holes) and not labels_of(omitted)[tuple(holes.T)].any()
    _, (filled,) = fit_habitats(with_nan, 4, registration="resample", nan_policy="fill")
    assert labels_of(filled)[tuple(holes.T)].min() >= 1
    # the ROI beyond a channel's field of view
    pet = patient.channels["PET"]
    cropped = pet[: pet.GetSize()[0] // 2, :, :]
    with pytest.raises(RadiomicsLabError, match="beyond channel 'PET''s field of view"):
        fit_habitats(Patient("STS_002", patient.mask, {**patient.channels, "PET": cropped}), 4, registration="resample")
    # a cohort file naming missing files
    cohort = tmp_path / "cohort.csv"
    folder = data / "sts" / "STS_002"
    cohort.write_text("id,channel,image,mask\n"
                      f"STS_002,CT,{folder / 'CT_image.nii.gz'},{folder / 'CT_mask.nii.gz'}\n"
                      f"STS_002,PET,{folder / 'PET_gone.nii.gz'},{folder / 'PET_mask.nii.gz'}\n")
    with pytest.raises(RadiomicsLabError, match="PET_gone.nii.gz"):
        cohort_patients(cohort)
    with pytest.raises(RadiomicsLabError, match="Unknown clustering method 'dbscan'"):
        fit_habitats(patient, 4, "dbscan", registration="resample")
    with pytest.raises(RadiomicsLabError, match="BIC needs a likelihood"):
        fit_habitats(patient, "auto", "kmeans", criterion="bic", registration="resample")


# Command line ------------------------------------------------------------------------------------
def channel_options(folder, channels=CHANNELS):
    return [arg for c in channels for arg in ("--channel", f"{c}={folder / f'{c}_image.nii.gz'}")]


def test_cli_three_channel_habitats_are_deterministic(data, patients, tmp_path):
    """The command (another process) gives exactly the label map the core gives here with the same seed."""
    folder = data / "sts" / "STS_002"
    first = tmp_path / "first"
    done = run_cli("habitats", folder / "CT_mask.nii.gz", *channel_options(folder), "-k", "4", "--seed", "5",
                   "--registration", "resample", "--min-island", "30", "-o", first)
    assert done.returncode == 0, done.stderr
    assert (first / "habitat_fractions.png").stat().st_size > 1000 and (first / "channel_means.png").stat().st_size > 1000
    written = sitk.ReadImage(str(first / "habitats.nrrd"))
    _, (expected,) = fit_habitats(patients[1], 4, registration="resample", seed=5, min_island_mm3=30.0)
    assert np.array_equal(sitk.GetArrayFromImage(written), labels_of(expected))
    assert written.GetOrigin() == pytest.approx(patients[1].mask.GetOrigin()) and written.GetSize() == patients[1].mask.GetSize()
    rows = read_csv(first / "habitats.csv")
    assert [int(r["habitat"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["fraction"]) for r in rows] == [r["fraction"] for r in expected.rows]
    provenance = json.loads((first / "habitats.provenance.json").read_text())
    assert provenance["options"]["seed"] == 5 and provenance["channels"] == list(CHANNELS)


def test_cli_population_over_the_cohort_folder(data, population, tmp_path):
    out = tmp_path / "cohort"
    done = run_cli("habitats", "--cohort", data / "sts", "--registration", "resample", "--seed", "7", "-o", out)
    assert done.returncode == 0, done.stderr
    _, results = population
    for result in results:
        written = sitk.ReadImage(str(out / result.patient / "habitats.nrrd"))
        assert np.array_equal(sitk.GetArrayFromImage(written), labels_of(result)), result.patient
    with open(out / "cohort.csv", newline="") as handle:
        cohort = list(csv.DictReader(handle))
    assert [row["patient"] for row in cohort] == list(PATIENTS)
    assert float(cohort[0]["fraction_2"]) == results[0].fractions()[2]


def test_cli_bad_input(data, tmp_path):
    folder = data / "sts" / "STS_002"
    out = tmp_path / "out"
    assert_user_error(run_cli("habitats", folder / "CT_mask.nii.gz", *channel_options(folder), "-o", out),
                      "is on a different grid from the mask", "--registration resample")
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("id,channel,image,mask\nSTS_002,CT,CT_image.nii.gz,CT_mask.nii.gz\n")
    missing = run_cli("habitats", "--cohort", cohort, "-o", out)
    assert_user_error(missing, "cohort.csv", "problems")
    assert "CT_image.nii.gz" in missing.stderr and "Traceback" not in missing.stderr
    assert_user_error(run_cli("habitats", folder / "CT_mask.nii.gz", "--channel", "CT", "-o", out), "NAME=IMAGE")
    assert not out.exists()


# MRML scene --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene_logic(data):
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.habitats import HabitatLogic

    return HabitatLogic(new_headless_app().scene)


def load_into_scene(logic, data, name, channels=CHANNELS):
    folder = data / "sts" / name
    volumes = {c: logic.load_volume(folder / f"{c}_image.nii.gz", f"{name} {c}") for c in channels}
    segmentation = logic.load_segmentation(folder / "CT_mask.nii.gz", volumes["CT"], f"{name} GTV")
    return segmentation, volumes


def test_mrml_three_channel_habitats(scene_logic, data, patients, tmp_path):
    from RadiomicsLabLib.mrml.convert import segment_to_sitk

    logic = scene_logic
    segmentation, volumes = load_into_scene(logic, data, "STS_002")
    nodes = logic.habitats(segmentation, None, volumes, 4, name="STS_002", seed=7, min_island_mm3=50.0, features=FIRSTORDER)
    _, (expected,) = fit_habitats(patients[1], 4, registration="resample", seed=7, min_island_mm3=50.0)
    (habitats,) = nodes.segmentations
    segments = logic.habitat_segments(habitats)
    assert sorted(segments) == [1, 2, 3, 4] and [segments[h][1] for h in range(1, 5)] == nodes.model.names
    labels = labels_of(expected)
    for habitat, (segment_id, _) in segments.items():
        exported = sitk.GetArrayFromImage(segment_to_sitk(habitats, segment_id, volumes["CT"]))
        assert np.array_equal(exported > 0, labels == habitat), habitat
        colour = habitats.GetSegmentation().GetSegment(segment_id).GetColor()
        assert colour == pytest.approx(habitat_colour(habitat))
    statistics = logic.table_rows(nodes.statistics)
    for row, core in zip(statistics, expected.rows):
        assert row["voxels"] == core["voxels"] and row["mean_PET"] == pytest.approx(core["mean_PET"], rel=1e-12)
    assert logic.table_rows(nodes.cohort)[0]["fraction_1"] == pytest.approx(expected.rows[0]["fraction"])
    assert nodes.fractions_chart.GetNumberOfPlotSeriesNodes() == 4 and nodes.means_chart.GetNumberOfPlotSeriesNodes() == 3
    # per-habitat features through the engine: pyradiomics' firstorder Mean of each habitat = our channel mean
    for channel in CHANNELS:
        values = logic.feature_values(nodes.features[("STS_002", channel)])
        means = {v.segment: v.value for v in values if v.feature == "original_firstorder_Mean"}
        for core in expected.rows:
            assert means[core["name"]] == pytest.approx(core[f"mean_{channel}"], rel=1e-5), (channel, core["name"])
    # a peritumoral ring as a new segment of the tumour's segmentation
    ring_id = logic.add_ring(segmentation, None, 0, 5)
    from RadiomicsLabLib.regions import ring

    exported = sitk.GetArrayFromImage(segment_to_sitk(segmentation, ring_id, volumes["CT"]))
    assert np.array_equal(exported, sitk.GetArrayFromImage(ring(patients[1].mask, 0, 5)))
    # the study survives a save and reload
    study = tmp_path / "habitats.mrb"
    logic.save_scene(study)
    logic.load_scene(study)
    reloaded = [n for n in logic.scene.GetNodesByClass("vtkMRMLSegmentationNode") if n.GetName() == "STS_002 habitats"]
    assert len(reloaded) == 1 and [v[1] for v in logic.habitat_segments(reloaded[0]).values()] == nodes.model.names


def test_mrml_population_and_registration(scene_logic, data, patients):
    logic = scene_logic
    logic.scene.Clear(0)
    cases = [load_into_scene(logic, data, name) for name in ("STS_002", "STS_003")]
    nodes = logic.cohort_habitats([{"name": n, "segmentation": s, "channels": v} for n, (s, v) in zip(("STS_002", "STS_003"), cases)],
                                  3, seed=2)
    assert len(nodes.segmentations) == 2 and [r["patient"] for r in logic.table_rows(nodes.cohort)] == ["STS_002", "STS_003"]
    _, expected = fit_habitats(patients[1:3], 3, registration="resample", seed=2)
    for result, row in zip(expected, logic.table_rows(nodes.cohort)):
        assert row["fraction_3"] == pytest.approx(result.fractions()[3])
    # registration: the MR moved by a known translation is registered back; the transform node keeps the metric
    mr = cases[0][1]["MR_T1"]
    moved_image = sitk.Image(sitk.ReadImage(str(data / "sts" / "STS_002" / "MR_T1_image.nii.gz")))
    moved_image.SetOrigin([o + d for o, d in zip(moved_image.GetOrigin(), (4.0, -3.0, 2.0))])
    from RadiomicsLabLib.mrml.convert import sitk_to_volume_node

    moved = sitk_to_volume_node(moved_image, "moved MR", logic.scene)
    node = logic.register(mr, moved, "rigid", cases[0][0], seed=4)
    assert node.IsA("vtkMRMLLinearTransformNode") and node.GetAttribute("RadiomicsLab.RegistrationConverged") == "true"
    assert float(node.GetAttribute("RadiomicsLab.RegistrationMetric")) < -0.5
    assert moved.GetParentTransformNode() is node
    # the moved volume under its transform is resampled through it: habitats from it equal those from the MR
    with_moved = logic.habitats(cases[0][0], None, {"CT": cases[0][1]["CT"], "MR_T1": moved, "PET": cases[0][1]["PET"]},
                                3, name="moved", seed=2, min_island_mm3=0.0)
    plain = logic.habitats(cases[0][0], None, cases[0][1], 3, name="plain", seed=2)
    differences = [abs(a["fraction"] - b["fraction"]) for a, b in zip(logic.table_rows(with_moved.statistics),
                                                                      logic.table_rows(plain.statistics))]
    assert max(differences) < 0.01, differences
    summary = logic.registration_summary(node)
    assert summary["kind"] == "rigid" and summary["converged"] is True



def test_background_habitats_and_ring_equal_the_in_thread_calls_and_cancel_adds_nothing(data, scene):
    """HabitatLogic.habitats_job and add_ring_job in a real spawned worker (RadiomicsLabLib.background.BackgroundRun)
    on the real STS_002 CT, MR T1 and PET, the PET under a linear transform in the scene (so it is resampled through
    it in the worker), with per-habitat features: every landed segment, table and chart equals the in-thread call's
    exactly; a cancel right after the start adds no node and the worker is gone within 2 s."""

    from RadiomicsLabLib.background import BackgroundRun
    from RadiomicsLabLib.mrml.convert import segment_to_sitk
    from RadiomicsLabLib.mrml.habitats import HabitatLogic

    logic = HabitatLogic(scene)
    segmentation, volumes = load_into_scene(logic, data, "STS_002")
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "PET shift")
    matrix = vtk_matrix([[1, 0, 0, 2.5], [0, 1, 0, -1.5], [0, 0, 1, 1.0], [0, 0, 0, 1]])
    shift.SetMatrixTransformToParent(matrix)
    volumes["PET"].SetAndObserveTransformNodeID(shift.GetID())
    options = dict(name="STS_002", seed=7, min_island_mm3=50.0, features=FIRSTORDER)
    in_thread = logic.habitats(segmentation, None, volumes, 3, **options)

    def values(nodes):
        (habitats,) = nodes.segmentations
        segments = {h: (name, sitk.GetArrayFromImage(segment_to_sitk(habitats, segment_id, volumes["CT"])).tobytes())
                    for h, (segment_id, name) in logic.habitat_segments(habitats).items()}
        features = {key: table_values(table) for key, table in nodes.features.items()}
        return (segments, table_values(nodes.statistics), table_values(nodes.cohort), features,
                chart_values(nodes.fractions_chart), chart_values(nodes.means_chart), nodes.model.names)

    n_nodes = scene.GetNumberOfNodes()
    run = BackgroundRun(logic.habitats_job(segmentation, None, volumes, 3, **options))
    assert scene.GetNumberOfNodes() == n_nodes, "nothing may be added before the job lands"
    landed = run.wait(timeout=300)
    assert run.state == "done" and scene.GetNumberOfNodes() > n_nodes
    expected = values(in_thread)
    assert values(landed) == expected
    assert len(expected[0]) == 3 and set(landed.features) == {("STS_002", c) for c in CHANNELS}

    ring_in_thread = logic.add_ring(segmentation, None, 0, 5)
    run = BackgroundRun(logic.add_ring_job(segmentation, None, 0, 5))
    ring_landed = run.wait(timeout=120)
    assert run.state == "done" and ring_landed != ring_in_thread
    rings = [sitk.GetArrayFromImage(segment_to_sitk(segmentation, s, volumes["CT"])) for s in (ring_in_thread, ring_landed)]
    assert rings[0].any() and np.array_equal(rings[0], rings[1])

    n_nodes, n_segments = scene.GetNumberOfNodes(), segmentation.GetSegmentation().GetNumberOfSegments()
    start_then_cancel(logic.habitats_job(segmentation, "Label_1", volumes, 3, **options))
    assert scene.GetNumberOfNodes() == n_nodes and segmentation.GetSegmentation().GetNumberOfSegments() == n_segments


def vtk_matrix(rows):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            matrix.SetElement(i, j, float(value))
    return matrix


# Cohort on the batch layer -----------------------------------------------------------------------
BATCH_CHANNELS = ("CT", "PET")
HABITAT_OUTPUTS = ("habitats.csv", "cohort.csv", "features.csv", "habitat_fractions.png", "channel_means.png")


def cohort_file(folder, rows):
    """cohort.csv (id,channel,image,mask) of ``rows`` in ``folder``, with a first-order feature settings file."""
    folder.mkdir(exist_ok=True)
    (folder / "cohort.csv").write_text("id,channel,image,mask\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    (folder / "firstorder.yaml").write_text("featureClass:\n  firstorder: []\nsetting:\n  binWidth: 25\n")
    return folder / "cohort.csv", folder / "firstorder.yaml"


def sts_row(data, patient, channel):
    return patient, channel, data / "sts" / patient / f"{channel}_image.nii.gz", data / "sts" / patient / f"{channel}_mask.nii.gz"


def expected_outputs(patients, folder, k, settings=None):
    """The in-process run: fit_habitats on ``patients``, their per-habitat features, write_outputs."""
    from RadiomicsLabLib.habitats import habitat_features, label_map_path, write_outputs

    model, results = fit_habitats(patients, k, registration="resample", seed=7)
    features = {p.name: habitat_features(p, r, settings) for p, r in zip(patients, results)} if settings else None
    write_outputs(folder, model, results, [label_map_path(folder, r.patient) for r in results], features)
    return results


def test_cohort_on_the_batch_layer_killed_resumed_and_two_workers_equal_the_in_process_run(data, tmp_path):
    """Per-patient tasks (voxel data, then labels and features) around one model fitted in this process: workers 0,
    and a real 2-worker LocalCluster killed (kill -9) after its first labelled patient then resumed, give the bytes
    of fit_habitats + habitat_features + write_outputs in one process."""
    from RadiomicsLabLib.settings import load_settings

    from test_batch import command_stopped_after

    names = PATIENTS[1:]  # STS_002, STS_003, STS_004: three real patients keep it short
    cohort, params = cohort_file(tmp_path / "in", [sts_row(data, p, c) for p in names for c in BATCH_CHANNELS])
    results = expected_outputs([load_patient(data, name, BATCH_CHANNELS) for name in names], tmp_path / "expected", 3,
                               load_settings(str(params)))
    args = ["habitats", "--cohort", cohort, "-k", "3", "--registration", "resample", "--seed", "7", "--features", params]
    single = run_cli(*args, "-o", tmp_path / "w0", "--workers", "0")
    assert single.returncode == 0, single.stderr
    out = tmp_path / "w2"
    code, stderr = command_stopped_after([*args, "-o", out, "--workers", 2], out / "cases", 1)
    assert code == -9, stderr
    labelled = {p.name: p.read_bytes() for p in (out / "cases").glob("*.json")}
    assert 1 <= len(labelled) < 3 and len(list((out / "cases" / "data").glob("*.npy"))) == 3
    assert not (out / "habitats.csv").exists()
    resumed = run_cli(*args, "-o", out, "--workers", "2", "--memory-limit", "0")
    assert resumed.returncode == 0, resumed.stderr
    assert "Habitat data: 3 case(s): 3 already done (skipped), 0 computed" in resumed.stderr
    # the model fitted again is the same, so the patients labelled before the kill are kept
    assert f"Habitat labels: 3 case(s): {len(labelled)} already done (skipped), {3 - len(labelled)} computed" in resumed.stderr
    assert all((out / "cases" / name).read_bytes() == text for name, text in labelled.items())
    for folder in (tmp_path / "w0", out):
        for name in HABITAT_OUTPUTS:
            assert (folder / name).read_bytes() == (tmp_path / "expected" / name).read_bytes(), (folder.name, name)
        for result in results:
            written = sitk.ReadImage(str(folder / result.patient / "habitats.nrrd"))
            assert np.array_equal(sitk.GetArrayFromImage(written), labels_of(result)), (folder.name, result.patient)
    assert read_csv(out / "errors.csv") == []


def test_cohort_problems_listed_at_once_then_keep_going(data, tmp_path):
    """Every bad row with its row number before any work (exit 2, nothing written; the message names --keep-going,
    which exists); with --keep-going the invalid patients and one failing in its task (STS_004 with a PET that is
    constant, 1.0 everywhere: no habitat information, refused) go to errors.csv, and the population model is fitted
    on the others exactly as fit_habitats fits it on them (exit 1)."""
    folder = tmp_path / "in"
    folder.mkdir()
    pet = sitk.ReadImage(str(data / "sts" / "STS_004" / "PET_image.nii.gz"))
    flat = sitk.Image(pet.GetSize(), sitk.sitkFloat32) + 1.0
    flat.CopyInformation(pet)
    sitk.WriteImage(flat, str(folder / "flat_pet.nii.gz"))
    rows = [sts_row(data, p, c) for p in ("STS_002", "STS_003") for c in BATCH_CHANNELS]          # rows 2-5: valid
    rows += [sts_row(data, "STS_004", "CT"), ("STS_004", "PET", "flat_pet.nii.gz", sts_row(data, "STS_004", "PET")[3])]
    rows += [sts_row(data, "STS_001", "CT"), ("STS_001", "PET", folder / "gone.nii.gz", sts_row(data, "STS_001", "PET")[3])]
    rows += [("P5", *sts_row(data, "STS_001", "CT")[1:])]                                             # row 10: P5 has no PET
    rows += [("P6", "", *sts_row(data, "STS_003", "CT")[2:])]                                       # row 11: no channel
    cohort, _ = cohort_file(folder, rows)
    out = tmp_path / "out"
    refused = run_cli("habitats", "--cohort", cohort, "-k", "2", "--registration", "resample", "--seed", "7", "-o", out)
    assert refused.returncode == 2 and "has 3 problems" in refused.stderr and "--keep-going" in refused.stderr, refused.stderr
    for fragment in ("row 9 (id 'STS_001'): cannot read image", "row 10 (id 'P5'): patient 'P5' has no channel PET",
                     "row 11 (id 'P6'): no channel"):
        assert fragment in refused.stderr, refused.stderr
    assert not out.exists()

    going = run_cli("habitats", "--cohort", cohort, "-k", "2", "--registration", "resample", "--seed", "7", "-o", out,
                    "--workers", "0", "--keep-going")
    assert going.returncode == 1, going.stderr
    errors = read_csv(out / "errors.csv")
    assert [(e["id"], e["where"], e["stage"]) for e in errors] == [
        ("STS_004", "rows 6, 7", "habitats-data"), ("STS_001", "row 8", "validation"), ("STS_001", "row 9", "validation"),
        ("P5", "row 10", "validation"), ("P6", "row 11", "validation")]
    assert "Channel 'PET' of patient 'STS_004' has no variance inside the ROI" in errors[0]["error"]
    expected_outputs([load_patient(data, name, BATCH_CHANNELS) for name in ("STS_002", "STS_003")], tmp_path / "expected", 2)
    for name in HABITAT_OUTPUTS[:2]:
        assert (out / name).read_bytes() == (tmp_path / "expected" / name).read_bytes(), name
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["STS_002", "STS_003", "cases"]
    # batch options belong to --cohort
    folder2 = data / "sts" / "STS_002"
    alone = run_cli("habitats", folder2 / "CT_mask.nii.gz", *channel_options(folder2), "-o", tmp_path / "alone", "--workers", "2")
    assert alone.returncode == 2 and "give --cohort" in alone.stderr
