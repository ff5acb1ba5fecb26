"""The module self-test's scenarios (``RadiomicsLabLib.mrml.scenarios``), one test each, on a fresh headless scene.

Each scenario checks itself against values computed another way (pyradiomics, the engine on a kernel,
SimpleITK's distance map and overlap measures, the documented synthetic follow-up, a single extraction) and
raises AssertionError when they differ; here every one runs on the real data and what it returns must be
nodes of the scene. The desktop module's self-test runs the same functions on ``slicer.mrmlScene``.
"""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from RadiomicsLabLib.mrml import scenarios


def made_nodes(name, produced) -> list:
    """The MRML nodes a scenario returned."""
    if name == "load_sample":
        return list(produced)
    if name in ("extract_sample", "save_and_reload"):
        return [produced]
    if name == "feature_maps_sample":
        return [*produced.maps.values(), produced.table]
    if name == "observers_sample":
        return produced.nodes()
    if name == "habitats_sample":
        return [*produced.segmentations, produced.statistics, produced.cohort, produced.fractions_chart]
    if name == "delta_sample":
        return [produced.table, produced.trajectories, produced.waterfall, *produced.transforms.values()]
    if name == "cohort_sample":
        return [produced["status"], produced["results"]]
    raise AssertionError(f"no test knows what scenario '{name}' makes")


def run(name, scene, data, tmp_path):
    """Call a scenario as the module self-test does (save_and_reload needs a feature table first)."""
    function = getattr(scenarios, name)
    if name == "save_and_reload":
        scenarios.extract_sample(scene, data)
        return function(scene, data, tmp_path / "scenario.mrb")
    if name == "cohort_sample":
        return function(scene, data, tmp_path)
    return function(scene, data)


@pytest.mark.parametrize("name", scenarios.SCENARIOS)
def test_scenario_runs_and_its_nodes_are_in_the_scene(name, data, scene, tmp_path):
    produced = run(name, scene, data, tmp_path)
    nodes = made_nodes(name, produced)
    assert nodes and all(node is not None and scene.GetNodeByID(node.GetID()) is node for node in nodes), name


def test_every_public_scenario_is_listed():
    public = {n for n, f in vars(scenarios).items() if callable(f) and getattr(f, "__module__", "") == scenarios.__name__
              and not n.startswith("_") and n not in {"run_all", "sample_paths"}}
    assert public == set(scenarios.SCENARIOS)


@pytest.mark.parametrize("name", [n for n in scenarios.SCENARIOS if n != "save_and_reload"])
def test_scenario_without_the_data_says_where_to_point(name, scene, tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    before = scene.GetNumberOfNodes()
    with pytest.raises(AssertionError, match="not found in .*set RADIOMICSLAB_DATA to the shared data folder"):
        run(name, scene, empty, tmp_path)
    assert scene.GetNumberOfNodes() == before  # refused before any node was made


def test_save_and_reload_of_an_empty_scene_says_what_to_run_first(data, scene, tmp_path):
    with pytest.raises(AssertionError, match="no feature table .*run extract_sample first"):
        scenarios.save_and_reload(scene, data, tmp_path / "empty.mrb")
    assert not (tmp_path / "empty.mrb").exists()


def test_the_scenarios_distance_map_is_the_euclidean_distance_transform(data):
    """The SimpleITK (Maurer) distances the observer, habitat and delta scenarios check against agree with scipy's
    exact Euclidean distance transform on the real STS_002 GTV, outside (rings) and inside (erosions), to float32."""
    mask = sitk.ReadImage(str(data / "sts" / "STS_002" / "CT_mask.nii.gz"))
    inside = sitk.GetArrayFromImage(mask) > 0
    spacing = mask.GetSpacing()[::-1]
    outside = scenarios._distance_mm(inside, mask)
    assert np.abs(outside - ndimage.distance_transform_edt(~inside, sampling=spacing)).max() < 1e-4
    to_background = scenarios._distance_mm(~inside, mask, beyond_grid=True)
    exact = ndimage.distance_transform_edt(np.pad(inside, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    assert np.abs(to_background[inside] - exact[inside]).max() < 1e-4
    assert np.all(outside[inside] == 0) and np.all(to_background[~inside] == 0)

