"""Segment Statistics plugin: RadiomicsLab features as keys of Slicer's Segment Statistics module.

References: pyradiomics' own ``RadiomicsFeatureExtractor`` on the real brain1 files (values), RadiomicsLab's
``ExtractionLogic`` feature table (same path), dimensional analysis (declared units against how the values
scale when the real image's voxel spacing or intensities are doubled), and the plugin interface of Slicer's
``Modules/Scripted/SegmentStatistics`` (names written down below from its source).
"""

import ast
import inspect
import logging
import math
import re

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.mrml import ExtractionLogic
from RadiomicsLabLib.mrml import segmentstatistics
from RadiomicsLabLib.mrml.app import new_headless_app
from RadiomicsLabLib.mrml.scenarios import SEGMENT, load_sample
from RadiomicsLabLib.mrml.segmentstatistics import (DEFAULT_KEYS, FAMILIES, PLUGIN_CLASS_NAME, SegmentStatisticsFeatures,
                                                    register_segment_statistics_plugin)

from conftest import read_sitk

# Slicer's plugin interface, from github.com/Slicer/Slicer (commit 583e9b37d50ead7daf7b783dce465ccaecec8809):
# Modules/Scripted/SegmentStatistics/SegmentStatisticsPlugins/SegmentStatisticsPluginBase.py
#   "Derived classes should specify: self.name, self.title, self.keys, self.defaultKeys
#    and implement: computeStatistics, getMeasurementInfo"; computeStatistics(self, segmentID), getMeasurementInfo(self, key);
#   base helpers getRequestedKeys(), getParameterNode(), createMeasurementInfo(name, title, description, units,
#   quantityDicomCode, unitsDicomCode, measurementMethodDicomCode, derivationDicomCode, componentNames).
# Modules/Scripted/SegmentStatistics/SegmentStatistics.py: SegmentStatisticsLogic.registerPlugin(plugin instance) keeps
#   plugin.__class__ and later builds every plugin as ``x()``; the nodes are the parameter node's "Segmentation" and
#   "ScalarVolume" node IDs; parameters are "<plugin class name>.<key>.enabled", so keys must not contain '.'.
SLICER_PLUGIN_ATTRIBUTES = {"name", "title", "keys", "defaultKeys"}
SLICER_PLUGIN_METHODS = {"computeStatistics": ["self", "segmentID"], "getMeasurementInfo": ["self", "key"]}
SLICER_BASE_HELPERS = {"getRequestedKeys", "getParameterNode", "createMeasurementInfo", "createCodedEntry",
                       "isValidCodedEntry", "setDefaultParameters", "toLongKey", "toShortKey", "setParameterNode"}
SLICER_MEASUREMENT_ARGUMENTS = {"name", "title", "description", "units", "quantityDicomCode", "unitsDicomCode",
                                "measurementMethodDicomCode", "derivationDicomCode", "componentNames"}
SLICER_PARAMETERS = {"Segmentation", "ScalarVolume"}
SLICER_IMPORTS = {("SegmentStatistics", "SegmentStatisticsLogic"), ("SegmentStatisticsPlugins", "SegmentStatisticsPluginBase")}


@pytest.fixture(scope="module")
def brain1_scene(data):
    """(scene, volume node, segmentation node) of the real brain1 case, loaded once for the module."""
    scene = new_headless_app().scene
    volume, segmentation = load_sample(scene, data)
    return scene, volume, segmentation


@pytest.fixture(scope="module")
def features(brain1_scene):
    return SegmentStatisticsFeatures(brain1_scene[0])


@pytest.fixture(scope="module")
def all_values(brain1_scene, features):
    scene, volume, segmentation = brain1_scene
    return features.compute(segmentation, volume, SEGMENT, features.keys)


def pyradiomics_values(image, label, **settings):
    from radiomics import featureextractor

    result = featureextractor.RadiomicsFeatureExtractor(**settings).execute(str(image), str(label), label=1)
    return {k: float(np.asarray(v)) for k, v in result.items() if not k.startswith("diagnostics_")}


def test_values_equal_pyradiomics_and_the_feature_table(brain1, brain1_scene, features, all_values):
    reference = pyradiomics_values(*brain1)
    assert set(features.keys) == set(reference)  # every pyradiomics default feature is a key, and only those
    assert len(features.keys) == 107
    different = {k: (all_values[k], reference[k]) for k in reference if all_values[k] != reference[k]}
    assert not different, f"differ from pyradiomics (plugin, pyradiomics): {different}"

    scene, volume, segmentation = brain1_scene
    logic = ExtractionLogic(scene)
    table = logic.extract(volume, segmentation, [SEGMENT])
    ours = {v.feature: v.value for v in logic.feature_values(table)}
    scene.RemoveNode(table)
    assert {k: ours[k] for k in features.keys} == all_values
    assert all(type(v) is float for v in all_values.values())  # Segment Statistics makes a vtkDoubleArray column


def test_without_pyradiomics_the_plugin_runs_on_the_native_engine(brain1_scene, all_values):
    """Desktop Slicer installs no pyradiomics (no wheels): the plugin then computes the same keys on the native engine,
    equal to pyradiomics' values (1e-9 relative; 1e-6 where pyradiomics adds eps to small denominators)."""
    from RadiomicsLabLib.settings import load_settings

    scene, volume, segmentation = brain1_scene
    native = SegmentStatisticsFeatures(scene, load_settings("pyradiomics-default", engine="native"))
    assert native.settings_for(["original_glcm_Contrast"]).engine == "native"
    values = native.compute(segmentation, volume, SEGMENT, native.keys)
    assert set(values) == set(all_values) and len(values) == 107
    loose = {"original_glcm_MCC", "original_glcm_Imc1", "original_glcm_Imc2", "original_glcm_Correlation"}
    off = {k: (values[k], v) for k, v in all_values.items()
           if not np.isclose(values[k], v, rtol=1e-6 if k in loose else 1e-9, atol=1e-12)}
    assert not off, off


def test_only_the_features_asked_for_are_extracted(brain1_scene, features, all_values):
    scene, volume, segmentation = brain1_scene
    keys = ["original_firstorder_Mean", "original_shape_MeshVolume", "original_firstorder_Median"]
    settings = features.settings_for(keys)
    assert settings.params["featureClass"] == {"firstorder": ["Mean", "Median"], "shape": ["MeshVolume"]}
    assert settings.params["imageType"] == {"Original": {}}
    assert settings.extractor().enabledFeatures == {"firstorder": ["Mean", "Median"], "shape": ["MeshVolume"]}
    values = features.compute(segmentation, volume, SEGMENT, keys)
    assert list(values) == keys and values == {k: all_values[k] for k in keys}
    # By segment name or ID alike; default keys when none are given.
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(SEGMENT)
    assert features.compute(segmentation, volume, segment_id) == {k: all_values[k] for k in DEFAULT_KEYS}
    assert features.compute(segmentation, volume, SEGMENT, []) == {}


def test_default_keys_are_a_small_subset_of_shape_and_first_order(features):
    assert set(features.default_keys) <= set(features.keys)
    assert 0 < len(features.default_keys) <= 10
    assert {k.split("_")[1] for k in features.default_keys} == {"shape", "firstorder"}
    assert {k.split("_")[1] for k in features.keys} == set(FAMILIES)
    assert not [k for k in features.keys if "." in k]  # "<plugin>.<key>.enabled" parameters


def coded(entry_string):
    entry = slicer.vtkCodedEntry()
    entry.SetFromString(entry_string)
    return entry.GetCodeValue(), entry.GetCodingSchemeDesignator(), entry.GetCodeMeaning()


def ucum_exponents(code: str) -> tuple[int, int]:
    """(power of mm, power of the intensity unit) of a UCUM code such as ``[arb'U]2.mm3`` or ``/mm``."""
    mm = intensity = 0
    for factor in code.split("."):
        match = re.fullmatch(r"(/?)(mm|\[arb'U\]|\[hnsf'U\]|1|bit)(\d*)", factor)
        assert match, f"unexpected UCUM factor '{factor}' in '{code}'"
        power = (-1 if match[1] else 1) * int(match[3] or 1)
        if match[2] == "mm":
            mm += power
        elif match[2].startswith("["):
            intensity += power
    return mm, intensity


def test_every_key_has_a_description_and_explicit_units(brain1_scene, features):
    volume = brain1_scene[1]
    for key in features.keys:
        info = features.measurement_info(key, volume)
        assert set(info) <= SLICER_MEASUREMENT_ARGUMENTS, key  # createMeasurementInfo(**info) is a valid call
        assert info["name"] == key and info["title"] and len(info["description"]) > 15, key
        assert isinstance(info["units"], str), key
        value, scheme, meaning = coded(info["unitsDicomCode"])
        assert scheme == "UCUM" and value and meaning, (key, info["unitsDicomCode"])
        assert (info["units"] == "") == (value == "1"), key  # empty units only for dimensionless features
    infos = {k: features.measurement_info(k, volume) for k in features.keys}
    units = {k: info["units"] for k, info in infos.items()}
    assert units["original_shape_MeshVolume"] == units["original_shape_VoxelVolume"] == "mm3"
    assert units["original_shape_SurfaceArea"] == "mm2"
    assert units["original_shape_SurfaceVolumeRatio"] == "/mm"
    assert {units[f"original_shape_{n}"] for n in ("Maximum3DDiameter", "Maximum2DDiameterSlice", "MajorAxisLength",
                                                   "LeastAxisLength")} == {"mm"}
    assert units["original_shape_Sphericity"] == units["original_firstorder_Kurtosis"] == ""
    assert units["original_firstorder_Mean"] == "arbitrary unit"  # brain1 is MR: no voxel value units
    assert coded(infos["original_firstorder_Variance"]["unitsDicomCode"])[0] == "[arb'U]2"
    assert coded(infos["original_firstorder_TotalEnergy"]["unitsDicomCode"])[0] == "[arb'U]2.mm3"
    assert all(units[k] == "" for k in features.keys if k.split("_")[1] not in ("shape", "firstorder"))
    # Slicer's own codes where its plugins have them (LabelmapSegmentStatisticsPlugin, ScalarVolumeSegmentStatisticsPlugin).
    assert coded(infos["original_shape_MeshVolume"]["quantityDicomCode"]) == ("118565006", "SCT", "Volume")
    assert coded(infos["original_shape_MeshVolume"]["unitsDicomCode"]) == ("mm3", "UCUM", "cubic millimeter")
    assert coded(infos["original_shape_SurfaceArea"]["quantityDicomCode"]) == ("000247", "99CHEMINF", "Surface area")
    assert coded(infos["original_firstorder_Mean"]["derivationDicomCode"]) == ("373098007", "SCT", "Mean")
    assert "IBSI: stat_mean" in infos["original_firstorder_Mean"]["description"]


def test_intensity_units_follow_the_volume(brain1_scene, features):
    """A volume declaring Hounsfield units (as Slicer's DICOM CT import does) gives them to intensity features."""
    scene = brain1_scene[0]
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    try:
        hounsfield, quantity = slicer.vtkCodedEntry(), slicer.vtkCodedEntry()
        hounsfield.SetValueSchemeMeaning("[hnsf'U]", "UCUM", "Hounsfield unit")
        quantity.SetValueSchemeMeaning("112031", "DCM", "Attenuation Coefficient")
        ct.SetVoxelValueUnits(hounsfield)
        ct.SetVoxelValueQuantity(quantity)
        mean = features.measurement_info("original_firstorder_Mean", ct)
        assert mean["units"] == "Hounsfield unit" and coded(mean["unitsDicomCode"])[0] == "[hnsf'U]"
        assert coded(mean["quantityDicomCode"]) == ("112031", "DCM", "Attenuation Coefficient")
        variance = features.measurement_info("original_firstorder_Variance", ct)
        assert variance["units"] == "Hounsfield unit^2" and coded(variance["unitsDicomCode"])[0] == "[hnsf'U]2"
        assert features.measurement_info("original_shape_MeshVolume", ct)["units"] == "mm3"
    finally:
        scene.RemoveNode(ct)


def scaled_case(tmp_path, brain1, spacing=1.0, intensity=1):
    """The real brain1 image and label written with spacing times ``spacing`` and intensities times ``intensity``."""
    image, label = read_sitk(brain1[0]), read_sitk(brain1[1])
    image = sitk.Cast(image, sitk.sitkFloat64) * intensity
    for item in (image, label):
        item.SetSpacing([s * spacing for s in item.GetSpacing()])
    paths = tmp_path / f"image_{spacing}_{intensity}.nrrd", tmp_path / f"label_{spacing}_{intensity}.nrrd"
    sitk.WriteImage(image, str(paths[0]))
    sitk.WriteImage(label, str(paths[1]))
    scene = new_headless_app().scene
    logic = ExtractionLogic(scene)
    volume = logic.load_volume(paths[0])
    return scene, volume, logic.load_segmentation(paths[1], volume)


def test_declared_units_match_how_the_values_scale(tmp_path, brain1, features, all_values):
    """Dimensional analysis of every key: doubling the spacing multiplies a value by 2^(power of mm) of its units;
    doubling the intensities (bin width doubled too, so the grey levels stay the same) by 2^(power of intensity)."""
    exponents = {k: ucum_exponents(coded(features.measurement_info(k)["unitsDicomCode"])[0]) for k in features.keys}
    assert exponents["original_firstorder_TotalEnergy"] == (3, 2) and exponents["original_shape_SurfaceVolumeRatio"] == (-1, 0)

    scene, volume, segmentation = scaled_case(tmp_path, brain1, spacing=2.0)
    spaced = SegmentStatisticsFeatures(scene).compute(segmentation, volume, SEGMENT, features.keys)
    scene, volume, segmentation = scaled_case(tmp_path, brain1, intensity=2)
    brighter = SegmentStatisticsFeatures(scene, {"setting": {"binWidth": 50}}).compute(segmentation, volume, SEGMENT,
                                                                                       features.keys)
    wrong = {}
    for key, (mm, intensity) in exponents.items():
        for values, power in ((spaced, mm), (brighter, intensity)):
            if not math.isclose(values[key], all_values[key] * 2.0 ** power, rel_tol=1e-9, abs_tol=1e-12):
                wrong[key] = (all_values[key], spaced[key], brighter[key], (mm, intensity))
    assert not wrong, f"values do not scale as their units say (value, spacing x2, intensity x2, (mm, I) powers): {wrong}"


def test_parameter_node_as_segment_statistics_fills_it(brain1_scene, features, all_values):
    scene, volume, segmentation = brain1_scene
    parameters = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "SegmentStatistics")
    try:
        parameters.SetParameter("Segmentation", segmentation.GetID())
        parameters.SetParameter("ScalarVolume", volume.GetID())
        segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(SEGMENT)
        keys = ["original_glcm_Contrast", "original_shape_VoxelVolume"]
        assert features.compute_for_parameter_node(parameters, segment_id, keys) == {k: all_values[k] for k in keys}
        parameters.UnsetParameter("ScalarVolume")  # what Segment Statistics does when no scalar volume is chosen
        with pytest.raises(RadiomicsLabError, match="choose a scalar volume in Segment Statistics"):
            features.compute_for_parameter_node(parameters, segment_id, keys)
    finally:
        scene.RemoveNode(parameters)


def test_bad_input_gives_clear_errors(brain1_scene, features):
    scene, volume, segmentation = brain1_scene
    empty = segmentation.GetSegmentation().AddEmptySegment("", "Empty")
    try:
        with pytest.raises(RadiomicsLabError, match="Segment 'Empty' .* has no voxels inside volume .*Segment Editor"):
            features.compute(segmentation, volume, empty, ["original_firstorder_Mean"])
    finally:
        segmentation.GetSegmentation().RemoveSegment(empty)
    with pytest.raises(RadiomicsLabError, match="input volume must be a vtkMRMLScalarVolumeNode; got nothing"):
        features.compute(segmentation, None, SEGMENT, ["original_firstorder_Mean"])
    with pytest.raises(RadiomicsLabError, match="segmentation must be a vtkMRMLSegmentationNode; got a vtkMRMLScalar"):
        features.compute(volume, volume, SEGMENT)
    with pytest.raises(RadiomicsLabError, match="has no segment Label_9; its segments are: Label_1"):
        features.compute(segmentation, volume, "Label_9")
    with pytest.raises(RadiomicsLabError, match="Unknown Segment Statistics key.*original_firstorder_Mode"):
        features.compute(segmentation, volume, SEGMENT, ["original_firstorder_Mode"])
    with pytest.raises(RadiomicsLabError, match="Unknown Segment Statistics key"):
        features.measurement_info("volume_mm3")
    with pytest.raises(RadiomicsLabError, match="uses the ibsi engine; choose pyradiomics settings"):
        SegmentStatisticsFeatures(scene, "ibsi-A")


def test_register_outside_desktop_slicer_returns_false_and_says_why(caplog):
    with caplog.at_level(logging.WARNING):
        assert register_segment_statistics_plugin() is False
    assert "not offered in Segment Statistics: that module is not available" in caplog.text


def test_plugin_follows_slicers_plugin_interface():
    """Static comparison of the plugin class with SegmentStatisticsPluginBase's interface (names above, from Slicer)."""
    tree = ast.parse(inspect.getsource(segmentstatistics))
    plugins = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == PLUGIN_CLASS_NAME]
    assert len(plugins) == 1, f"no class {PLUGIN_CLASS_NAME} in {segmentstatistics.__file__}"
    plugin = plugins[0]
    methods = {f.name: [a.arg for a in f.args.args] for f in plugin.body if isinstance(f, ast.FunctionDef)}
    for name, arguments in SLICER_PLUGIN_METHODS.items():
        assert methods.get(name) == arguments, f"{name}{tuple(arguments)} not overridden as Slicer calls it"
    assert methods["__init__"] == ["self"]  # SegmentStatisticsLogic builds each registered plugin as x()
    init = next(f for f in plugin.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    assigned = {t.attr for n in ast.walk(init) if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    assert SLICER_PLUGIN_ATTRIBUTES <= assigned
    called = {n.func.attr for n in ast.walk(plugin) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
              and isinstance(n.func.value, ast.Name) and n.func.value.id == "self"}
    base_calls = called - set(methods) - {"features"}
    assert base_calls and base_calls <= SLICER_BASE_HELPERS, f"calls no method of Slicer's base: {base_calls - SLICER_BASE_HELPERS}"
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert SLICER_PARAMETERS <= strings
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert SLICER_IMPORTS <= imports
    registers = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "registerPlugin"
                 and isinstance(n.value, ast.Name) and n.value.id == "SegmentStatisticsLogic"]
    assert registers, "the plugin is never given to SegmentStatisticsLogic.registerPlugin"
