"""The ``native`` engine (:mod:`RadiomicsLabLib.pyradiomics_native`): pyradiomics' features without pyradiomics.

(a) pyradiomics' own baselines (../shared/data/pyradiomics_cases/baseline), every column of brain1, brain2 and
    breast1 (default, ``_2d``, ``_FBN``, ``_combined``, ``_flatRegion``, ``_normalization``, ``_resampling``,
    ``_resegmentation``), computed in a subprocess where ``import radiomics`` and ``import pykwalify`` fail, as
    in desktop Slicer: every baseline feature present, relative difference below 3 % (pyradiomics' own rule,
    :mod:`test_parity`).
(b) The real pyradiomics in the same run, on the real cases: the same feature names in the same order and the
    same values, for the default settings, every implemented image type and the settings the engine reads.
    Tolerance: 1e-9 relative (absolute 1e-12 for values that are 0 up to rounding), the same definitions
    evaluated in another order (measured: at most 1e-14 outside the GLCM, the mesh features included: the
    engine triangulates the cubes as pyradiomics does); 1e-6 for MCC, Imc1, Imc2 and Correlation, where
    pyradiomics adds eps to logarithms and denominators of small probabilities (measured: at most 2e-10).
(c) What the engine does not compute, wrong settings and ROIs failing pyradiomics' checks: one
    RadiomicsLabError each, on one line, naming the setting and what to do.
(d) The provenance names the engine, its implementation and whose definitions it computes.
"""

import ast
import csv
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from RadiomicsLabLib import __version__
from RadiomicsLabLib.data import sample_case
from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.extraction import extract
from RadiomicsLabLib.pyradiomics_native import (DEFAULT_SETTINGS, FEATURE_CLASSES, IMAGE_TYPES, SETTING_SCHEMA,
                                                VOXEL_SETTING_SCHEMA, pyradiomics_angles, pyradiomics_bins)
from RadiomicsLabLib.settings import load_settings

from conftest import read_sitk
from test_parity import (CASES, FEATURE_CLASSES as BASELINE_CLASSES, PYRADIOMICS_TOLERANCE, baseline_params,
                         load_baseline, relative_difference)

#: Baseline columns per case (``<case><suffix>``); each lives in the class files that computed it.
COLUMN_SUFFIXES = ("", "_2d", "_FBN", "_combined", "_flatRegion", "_normalization", "_resampling", "_resegmentation")
RTOL, RTOL_EPS, ATOL = 1e-9, 1e-6, 1e-12
EPS_FEATURES = ("_glcm_MCC", "_glcm_Imc1", "_glcm_Imc2", "_glcm_Correlation")
FIRST_ORDER_AND_TEXTURE = {c: None for c in ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}
ALL_3D = {c: None for c in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}


def load_column(data, column):
    """({feature: value}, settings) of one baseline column: the plain case columns through test_parity's
    :func:`load_baseline`, the others from the class files holding that column."""
    if column in CASES:
        values, settings, _ = load_baseline(data, column)
        return values, settings
    values, settings = {}, None
    for feature_class in BASELINE_CLASSES:
        with open(data / "pyradiomics_cases" / "baseline" / f"baseline_{feature_class}.csv", newline="") as handle:
            rows = list(csv.reader(handle))
        if column not in rows[0]:
            continue
        index = rows[0].index(column)
        for row in rows[1:]:
            if row[0] == "diagnostics_Configuration_Settings":
                settings = ast.literal_eval(row[index])
            elif not row[0].startswith("diagnostics_"):
                values[row[0]] = float(row[index])
    return values, settings


# --------------------------------------------------------------------------------------------
# (a) without pyradiomics: a subprocess in which radiomics and pykwalify cannot be imported
# --------------------------------------------------------------------------------------------

_WITHOUT_PYRADIOMICS = textwrap.dedent('''
    import json, sys
    sys.modules["radiomics"] = None      # as in desktop Slicer: neither package can be imported
    sys.modules["pykwalify"] = None
    import SimpleITK as sitk
    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.extraction import extract
    from RadiomicsLabLib.settings import load_settings

    jobs = json.loads(sys.argv[1])
    out = {"columns": {}, "errors": {}}
    for column, job in jobs["columns"].items():
        image_path, mask_path = sample_case(job["case"])
        result = extract(sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path)), {"L": job["label"]},
                         load_settings(job["params"], engine="native"))
        out["columns"][column] = {"values": result.as_dict("L"), "engine": result.provenance["engine"],
                                  "image_sha1": result.provenance["image"]["sha1"]}
    for name, params in jobs["bad"].items():
        try:
            load_settings(params)
            out["errors"][name] = None
        except RadiomicsLabError as error:
            out["errors"][name] = str(error)
    try:
        load_settings(None, engine="pyradiomics")
    except RadiomicsLabError as error:
        out["pyradiomics_engine"] = str(error)
    out["default_engine"] = load_settings(None).engine
    from RadiomicsLabLib.featuremaps import catalogue
    from RadiomicsLabLib.mrml.segmentstatistics import feature_keys
    out["map_catalogue"] = list(catalogue("pyradiomics"))
    out["segment_statistics_keys"] = list(feature_keys())
    out["loaded"] = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in
                           ("radiomics", "pykwalify"))
    print(json.dumps(out))
''')

#: Parameter files the native schema table must refuse with pyradiomics' messages (as test_settings checks them
#: with pykwalify): (parameters, the text the one-line message holds).
BAD_PARAMETERS = {
    "misspelt": ({"setting": {"binWidht": 25}}, "Unknown setting 'binWidht' in section 'setting'"),
    "suggestion": ({"setting": {"binWidht": 25}}, "did you mean 'binWidth'?"),
    "unknown_key": ({"setting": {"binWidth": 25, "bogusKey": 1}}, "'bogusKey'"),
    "top_level": ({"bogus": 1}, "Unknown setting 'bogus' in the top level"),
    "type": ({"setting": {"binWidth": "abc"}}, "Invalid value 'abc' for setting 'binWidth'"),
    "int_type": ({"setting": {"binCount": 2.5}}, "Invalid value '2.5' for setting 'binCount'"),
    "range": ({"setting": {"binWidth": 0}}, "Invalid value '0' for setting 'binWidth'"),
    "enum": ({"setting": {"resegmentMode": "percent"}}, "expected one of absolute, relative, sigma"),
    "list": ({"setting": {"distances": 3}}, "expected a list of int"),
    "image_type": ({"imageType": {"Foo": {}}}, "Image Type Foo is not recognized"),
    "image_type_setting": ({"imageType": {"LoG": {"sigmaa": [1.0]}}},
                           "Unknown setting 'sigmaa' in section 'imageType/LoG'"),
    "feature": ({"featureClass": {"glcm": ["Nope"]}}, "unrecognized features: {'Nope'}"),
    "feature_class": ({"featureClass": {"glcn": None}}, "Feature Class glcn is not recognized"),
    "interpolator": ({"setting": {"interpolator": "sitkCubic"}}, "Invalid value 'sitkCubic' for setting 'interpolator'"),
    "wavelet": ({"imageType": {"Wavelet": {"wavelet": "coif99"}}}, "Invalid value 'coif99' for setting 'wavelet'"),
    "section": ({"setting": None}, "section 'setting' must be a mapping"),
}


@pytest.fixture(scope="module")
def without_pyradiomics(data):
    """The native engine's results and messages in a Python where radiomics and pykwalify cannot be imported."""
    columns, baselines = {}, {}
    for case in CASES:
        for suffix in COLUMN_SUFFIXES:
            values, settings = load_column(data, case + suffix)
            baselines[case + suffix] = values
            columns[case + suffix] = {"case": case, "label": settings["label"], "params": baseline_params(settings)}
    jobs = {"columns": columns, "bad": {name: params for name, (params, _) in BAD_PARAMETERS.items()}}
    run = subprocess.run([sys.executable, "-c", _WITHOUT_PYRADIOMICS, json.dumps(jobs)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout)
    out["baselines"] = baselines
    return out


def test_nothing_of_pyradiomics_is_loaded(without_pyradiomics):
    assert without_pyradiomics["loaded"] == []
    assert without_pyradiomics["default_engine"] == "native"   # no engine named: the one that can run
    message = without_pyradiomics["pyradiomics_engine"]
    assert "needs the pyradiomics package" in message and "choose engine native" in message


@pytest.mark.parametrize("column", [case + suffix for case in CASES for suffix in COLUMN_SUFFIXES])
def test_matches_pyradiomics_baseline_without_pyradiomics(without_pyradiomics, column):
    baseline = without_pyradiomics["baselines"][column]
    result = without_pyradiomics["columns"][column]
    values = result["values"]
    assert result["engine"] == "native"
    missing = sorted(set(baseline) - set(values))
    assert not missing, f"features in the baseline but not extracted: {missing}"
    off = {k: (values[k], v) for k, v in baseline.items() if relative_difference(values[k], v) >= PYRADIOMICS_TOLERANCE}
    assert not off, f"{len(off)} of {len(baseline)} features differ by 3% or more: {off}"
    assert len(baseline) >= (40 if column.endswith("_combined") else 75)


@pytest.mark.parametrize("case", CASES)
def test_native_provenance_hashes_the_same_voxels_as_the_baseline(data, without_pyradiomics, case):
    _, _, hashes = load_baseline(data, case)
    assert without_pyradiomics["columns"][case]["image_sha1"] == hashes["diagnostics_Image-original_Hash"]


def test_catalogues_without_pyradiomics(without_pyradiomics):
    keys = without_pyradiomics["segment_statistics_keys"]
    assert len(keys) == 107 and keys[0] == "original_shape_Elongation" and "original_glcm_MCC" in keys
    maps = without_pyradiomics["map_catalogue"]
    assert len(maps) == 93 and maps[0] == "firstorder_10Percentile" and "ngtdm_Strength" in maps


@pytest.mark.parametrize("name", sorted(BAD_PARAMETERS))
def test_native_validation_gives_pyradiomics_messages(without_pyradiomics, name):
    message = without_pyradiomics["errors"][name]
    assert message is not None, f"{BAD_PARAMETERS[name][0]} was accepted"
    assert BAD_PARAMETERS[name][1] in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------------
# (b) native == pyradiomics, in the same run
# --------------------------------------------------------------------------------------------

def both_engines(case, params, segments=None):
    """(native values, pyradiomics values) of one real case through :func:`extract`, in output order."""
    image_path, mask_path = sample_case(case)
    image, mask = read_sitk(image_path), read_sitk(mask_path)
    segments = segments or {"L": 1}
    native = extract(image, mask, segments, load_settings(params, engine="native"))
    reference = extract(image, mask, segments, load_settings(params, engine="pyradiomics"))
    return native, reference


def assert_same_features(native, reference):
    ours, theirs = native.as_dict("L"), reference.as_dict("L")
    assert list(ours) == list(theirs)   # same names, same order
    assert len(ours) > 0
    off = []
    for name, expected in theirs.items():
        rtol = RTOL_EPS if name.endswith(EPS_FEATURES) else RTOL
        if not (np.isclose(ours[name], expected, rtol=rtol, atol=ATOL) or (math.isnan(ours[name]) and math.isnan(expected))):
            off.append((name, ours[name], expected))
    assert not off, off


@pytest.mark.parametrize("case", CASES)
def test_default_settings_equal_pyradiomics(case):
    native, reference = both_engines(case, "pyradiomics-default")
    assert len(native.values) == 107
    assert_same_features(native, reference)


IMAGE_TYPES_TESTED = {
    "Square": {}, "SquareRoot": {}, "Logarithm": {}, "Exponential": {}, "LoG": {"sigma": [1.0, 3]},
    "Wavelet": {}, "Gradient": {}, "LBP2D": {"binWidth": 1},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("image_type", sorted(IMAGE_TYPES_TESTED))
def test_each_image_type_equals_pyradiomics(case, image_type):
    params = {"imageType": {image_type: IMAGE_TYPES_TESTED[image_type]}, "featureClass": FIRST_ORDER_AND_TEXTURE}
    native, reference = both_engines(case, params)
    expected = {"LoG": 2 * 93, "Wavelet": 8 * 93}.get(image_type, 93)
    assert len(native.values) == expected
    assert_same_features(native, reference)


#: Settings the engine reads, each checked on the small real cases (brain2, breast1) against pyradiomics.
SETTING_VARIANTS = {
    "bin_count": {"setting": {"binCount": 64}},
    "resample_bspline": {"setting": {"resampledPixelSpacing": [2, 2, 2], "interpolator": "sitkBSpline"}},
    "resample_in_plane_linear": {"setting": {"resampledPixelSpacing": [1, 1, 0], "interpolator": "sitkLinear",
                                             "padDistance": 3}},
    "resegment_sigma": {"setting": {"resegmentRange": [-2, 2], "resegmentMode": "sigma"}},
    "resegment_relative_shape": {"setting": {"resegmentRange": [0.4], "resegmentMode": "relative",
                                             "resegmentShape": True}},
    "normalize_outliers": {"setting": {"normalize": True, "normalizeScale": 100, "removeOutliers": 2,
                                       "binWidth": 5}},
    "force2d": {"setting": {"force2D": True}},
    "force2d_dimension": {"setting": {"force2D": True, "force2Ddimension": 1}},
    "distance_2": {"setting": {"distances": [2]}},
    "distance_3_in_plane": {"setting": {"distances": [3], "force2D": True}},
    "weighting_euclidean": {"setting": {"weightingNorm": "euclidean"}},
    "weighting_manhattan": {"setting": {"weightingNorm": "manhattan"}},
    "weighting_infinity": {"setting": {"weightingNorm": "infinity"}},
    "gldm_a_shift": {"setting": {"gldm_a": 2, "voxelArrayShift": 300}},
    "asymmetric_glcm": {"setting": {"symmetricalGLCM": False}},
    "pre_crop": {"setting": {"preCrop": True}},
    "filters_with_preprocessing": {"imageType": {"LoG": {"sigma": [2.0]}, "Square": {}, "Original": {}},
                                   "setting": {"resampledPixelSpacing": [1.5, 1.5, 1.5], "normalize": True,
                                               "binWidth": 0.5}},
    "wavelet_options_in_plane": {"imageType": {"Wavelet": {"wavelet": "db2", "level": 2, "start_level": 1}},
                                 "setting": {"force2D": True, "binCount": 32}},
    "per_image_type_settings": {"imageType": {"Original": {}, "LoG": {"sigma": [1.5], "binWidth": 10, "distances": [2]},
                                              "LBP2D": {"lbp2DRadius": 2, "lbp2DSamples": 12,
                                                        "lbp2DMethod": "default", "binWidth": 40}}},
    "named_and_deprecated_features": {"featureClass": {
        "shape": ["MeshVolume", "Compactness1", "Compactness2", "SphericalDisproportion"],
        "firstorder": ["StandardDeviation", "Kurtosis", "TotalEnergy"], "glcm": ["Dissimilarity", "MCC", "Idmn"],
        "gldm": ["DependencePercentage", "GrayLevelVariance"]}},
}


@pytest.mark.parametrize("case", ("brain2", "breast1"))
@pytest.mark.parametrize("variant", sorted(SETTING_VARIANTS))
def test_settings_equal_pyradiomics(case, variant):
    params = dict(SETTING_VARIANTS[variant])
    params.setdefault("featureClass", ALL_3D)
    native, reference = both_engines(case, params)
    assert_same_features(native, reference)


def test_deprecated_features_are_returned_as_pyradiomics_returns_them():
    native, _ = both_engines("breast1", SETTING_VARIANTS["named_and_deprecated_features"])
    names = [v.feature for v in native.values]
    # pyradiomics computes Compactness1/2, SphericalDisproportion, StandardDeviation; Dissimilarity and
    # DependencePercentage raise its DeprecationWarning and give no value.
    assert names == ["original_shape_MeshVolume", "original_shape_Compactness1", "original_shape_Compactness2",
                     "original_shape_SphericalDisproportion", "original_firstorder_StandardDeviation",
                     "original_firstorder_Kurtosis", "original_firstorder_TotalEnergy", "original_glcm_MCC",
                     "original_glcm_Idmn", "original_gldm_GrayLevelVariance"]


def test_binning_is_pyradiomics_bin_image():
    """pyradiomics_bins == radiomics.imageoperations.binImage on real images: integer MR (int16), the float32
    LoG image, a fixed bin count and a flat region."""
    from radiomics.imageoperations import binImage

    image_path, mask_path = sample_case("breast1")
    image = read_sitk(image_path)
    roi = sitk.GetArrayFromImage(read_sitk(mask_path)) == 1
    log = sitk.GetArrayFromImage(sitk.LaplacianRecursiveGaussian(image, 1.0))
    raw = sitk.GetArrayFromImage(image)
    for array, options in ((raw, {"binWidth": 25}), (raw, {"binWidth": 3.7}), (raw, {"binCount": 16}),
                           (log, {"binWidth": 0.5}), (log, {"binCount": 64}), (raw, {"binWidth": 5000})):
        ours, our_edges = pyradiomics_bins(array, roi, options.get("binWidth", 25), options.get("binCount"))
        theirs, their_edges = binImage(array, roi, **options)
        assert np.array_equal(ours, theirs) and np.array_equal(our_edges, their_edges), options
    assert ours[roi].min() == ours[roi].max() == 1   # the flat region: one bin


@pytest.mark.parametrize("size", [(10, 10, 10), (1, 10, 10), (2, 10, 3)])
@pytest.mark.parametrize("distances, bidirectional, force2d, dimension",
                         [([1], False, False, 0), ([2], False, False, 0), ([1], True, False, 0), ([1], False, True, 0),
                          ([1], False, True, 2), ([2], True, True, 1)])
def test_angles_are_pyradiomics_angles(size, distances, bidirectional, force2d, dimension):
    from radiomics import cMatrices

    theirs = cMatrices.generate_angles(np.array(size), np.array(distances), bidirectional, force2d, dimension)
    ours = pyradiomics_angles(size, distances, bidirectional, force2d, dimension)
    assert sorted(map(tuple, ours)) == sorted(map(tuple, theirs))


def test_static_catalogue_and_schema_are_pyradiomics_own():
    """The feature catalogue, image types, extractor defaults and the validation table are pyradiomics' own
    (so the native engine and its validation stay correct without the package)."""
    import radiomics
    from radiomics import featureextractor

    classes = radiomics.getFeatureClasses()
    assert list(FEATURE_CLASSES) == list(classes)
    for name, feature_class in classes.items():
        assert list(FEATURE_CLASSES[name].items()) == list(feature_class.getFeatureNames().items())
    assert IMAGE_TYPES == tuple(radiomics.getImageTypes())
    assert DEFAULT_SETTINGS == featureextractor.RadiomicsFeatureExtractor._getDefaultSettings()
    schema = yaml.safe_load(open(radiomics.getParameterValidationFiles()[0]).read())["mapping"]
    for section, table in (("setting", SETTING_SCHEMA), ("voxelSetting", VOXEL_SETTING_SCHEMA)):
        assert set(schema[section]["mapping"]) == set(table), section
        for key, rule in schema[section]["mapping"].items():
            kind = rule["seq"][0] if "seq" in rule else rule
            ours = table[key]
            assert ours["seq"] == ("seq" in rule), key
            assert ours["type"] == kind["type"], key
            bounds = kind.get("range", {})
            assert ours["min"] == bounds.get("min", bounds.get("min-ex")), key
            assert ours["min_exclusive"] == ("min-ex" in bounds), key
            assert ours["max"] == bounds.get("max"), key
            assert (ours["enum"] and list(ours["enum"])) == kind.get("enum"), key


# --------------------------------------------------------------------------------------------
# (c) one clear error
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("params, expected", [
    ({"imageType": {"LBP3D": {}}}, "Image type 'LBP3D'"),
    ({"setting": {"force2D": True}}, "Feature class 'shape2D'"),
    ({"featureClass": {"shape2D": None}, "setting": {"force2D": True}}, "Feature class 'shape2D'"),
    ({"setting": {"distances": [1, 2]}}, "distances [1, 2]"),
    ({"imageType": {"LoG": {"sigma": [1.0], "distances": [1, 3]}}}, "distances [1, 3]"),
    ({"setting": {"resegmentRange": [1, 2, 3]}}, "resegmentRange"),
    ({"setting": {"resampledPixelSpacing": [1, 1]}}, "resampledPixelSpacing"),
    ({"ibsi": {"bin_width": 25}}, "'ibsi' section"),
])
def test_what_the_native_engine_does_not_compute_is_refused_up_front(params, expected):
    with pytest.raises(RadiomicsLabError) as error:
        load_settings(params, engine="native")   # before any image is read
    message = str(error.value)
    assert expected in message and "\n" not in message
    if "'ibsi' section" not in message and "resegmentRange" not in message and "resampledPixelSpacing" not in message:
        assert "engine pyradiomics" in message   # says what to do


def test_unknown_engine_lists_native():
    with pytest.raises(RadiomicsLabError, match="use pyradiomics, ibsi or native"):
        load_settings(None, engine="pyradomics")


def _single_slice_mask():
    """brain1's real mask reduced to its largest axial slice (a documented cut of real data: a 2D ROI)."""
    image_path, mask_path = sample_case("brain1")
    mask = read_sitk(mask_path)
    array = sitk.GetArrayFromImage(mask)
    keep = int(np.argmax((array == 1).sum(axis=(1, 2))))
    array[np.arange(array.shape[0]) != keep] = 0
    single = sitk.GetImageFromArray(array)
    single.CopyInformation(mask)
    return read_sitk(image_path), single


@pytest.mark.parametrize("setting, expected", [
    ({"minimumROIDimensions": 3}, "spans 2 dimension(s), fewer than minimumROIDimensions (3)"),
    ({"minimumROISize": 100000}, "not more than minimumROISize (100000)"),
    ({"resegmentRange": [100000]}, "keeps 0 voxel(s); widen resegmentRange"),
])
def test_rois_failing_pyradiomics_checks_give_one_error(setting, expected):
    image, mask = _single_slice_mask()
    params = {"setting": setting, "featureClass": {"firstorder": None}}
    with pytest.raises(RadiomicsLabError) as error:
        extract(image, mask, {"Tumour": 1}, load_settings(params, engine="native"))
    message = str(error.value)
    assert message.startswith("Segment 'Tumour':") and expected in message and "\n" not in message
    with pytest.raises(RadiomicsLabError, match="pyradiomics could not process segment 'Tumour'"):
        extract(image, mask, {"Tumour": 1}, load_settings(params, engine="pyradiomics"))   # the same checks there


def test_single_slice_roi_is_computed_as_pyradiomics_does():
    """A 2D ROI in a 3D image (directions leaving the slice are dropped for the GLRLM, as in pyradiomics)."""
    image, mask = _single_slice_mask()
    params = {"featureClass": FIRST_ORDER_AND_TEXTURE}
    native = extract(image, mask, {"L": 1}, load_settings(params, engine="native"))
    reference = extract(image, mask, {"L": 1}, load_settings(params, engine="pyradiomics"))
    assert_same_features(native, reference)


# --------------------------------------------------------------------------------------------
# (d) provenance
# --------------------------------------------------------------------------------------------

def test_provenance_names_the_engine_and_its_definitions():
    image_path, mask_path = sample_case("breast1")
    image, mask = read_sitk(image_path), read_sitk(mask_path)
    native = extract(image, mask, {"L": 1}, load_settings("pyradiomics-default", engine="native")).provenance
    assert native["engine"] == "native"
    assert native["engine_details"] == {"name": "native", "implementation": f"RadiomicsLab {__version__}",
                                        "definitions": "pyradiomics 3.1 (pyradiomics-bhklab 3.1.4)"}
    assert native["settings"]["effective"]["setting"]["binWidth"] == 25
    assert native["settings"]["effective"]["imageType"] == {"Original": {}}
    assert native["segments"]["L"]["diagnostics"]["Mask-original_VoxelNum"] == 143
    reference = extract(image, mask, {"L": 1}, load_settings("pyradiomics-default", engine="pyradiomics")).provenance
    assert reference["engine"] == "pyradiomics"
    assert reference["engine_details"] == {"name": "pyradiomics", "implementation": "pyradiomics-bhklab 3.1.4",
                                           "definitions": "pyradiomics 3.1.4"}
    ibsi = extract(image, mask, {"L": 1}, load_settings("ibsi-A")).provenance
    assert ibsi["engine"] == "ibsi" and ibsi["engine_details"]["name"] == "ibsi"
    assert ibsi["engine_details"]["implementation"] == f"RadiomicsLab {__version__}"
