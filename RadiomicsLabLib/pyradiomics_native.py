"""The ``native`` engine: pyradiomics' features computed by RadiomicsLab, without the pyradiomics package.

What it computes: every non-deprecated feature of pyradiomics' classes ``shape``, ``firstorder``, ``glcm``,
``glrlm``, ``glszm``, ``gldm`` and ``ngtdm`` under pyradiomics' names (``original_glcm_Contrast``,
``log-sigma-2-0-mm-3D_firstorder_Mean``), with pyradiomics' definitions and the settings of its parameter
files: ``binWidth`` / ``binCount`` (bins aligned on multiples of the width, counted from the minimum of the
re-segmented ROI), ``resegmentRange`` / ``resegmentMode`` / ``resegmentShape``, ``normalize`` /
``normalizeScale`` / ``removeOutliers``, ``resampledPixelSpacing`` / ``interpolator`` / ``padDistance`` (its
resampling grid), ``preCrop``, ``minimumROIDimensions`` / ``minimumROISize``, ``distances`` (one),
``force2D`` / ``force2Ddimension``, ``gldm_a``, ``voxelArrayShift``, ``weightingNorm``, ``symmetricalGLCM``,
and the image types Original, Square, SquareRoot, Logarithm, Exponential, LoG, Wavelet, Gradient and LBP2D
with their own settings. Deprecated features named explicitly in ``featureClass`` are computed where
pyradiomics computes them (and left out where pyradiomics raises its DeprecationWarning).

How: pyradiomics' preprocessing order (normalise, resample or pre-crop, check the mask, re-segment, shape
on the mask before re-segmentation (unless ``resegmentShape``) cropped to the final bounding box, filter the
whole image, crop to the ROI's bounding box) with plain SimpleITK / numpy / PyWavelets / scikit-image calls,
pyradiomics' discretisation (:func:`pyradiomics_bins`), pyradiomics' neighbourhoods
(:func:`pyradiomics_angles`: offsets of the given Chebyshev distance, directions along an axis of the ROI's
box one voxel thick left out, in-plane only with ``force2D``), then the formulas of RadiomicsLab's IBSI
engine (:mod:`RadiomicsLabLib.ibsi.features`; the pairs are :data:`RadiomicsLabLib.ibsi.names.PYRADIOMICS_TO_IBSI`)
on the matrices of each direction, averaged over the directions that hold any count as pyradiomics does,
and the GLCM maximal correlation coefficient of :mod:`RadiomicsLabLib.featuremap_kernels`. The mesh
(:func:`pyradiomics_mesh`) is the classic marching cubes triangulation with pyradiomics' rule for the
complementary half of the cube configurations, so mesh volume and area are pyradiomics' to rounding.

References: pyradiomics-bhklab 3.1.4 (``radiomics/imageoperations.py``, ``firstorder.py``, ``shape.py``,
``glcm.py``, ``glrlm.py``, ``glszm.py``, ``gldm.py``, ``ngtdm.py`` and its documentation); van Griethuysen
et al., Cancer Research 77(21) e104, 2017; IBSI chapter 1 (Zwanenburg et al., arXiv:1612.07003); Lorensen &
Cline, SIGGRAPH 1987 (marching cubes).

Documented differences from the IBSI engine's definitions, applied here so the values are pyradiomics'
(``Testing/test_native_engine.py`` checks every feature against pyradiomics itself: 1e-9 relative, 1e-6 for
the features below with eps; measured at most 2e-10, in MCC):

- PCA axis lengths use the population covariance (pyradiomics), i.e. the IBSI engine's sample-covariance
  eigenvalues times (N - 1) / N.
- Kurtosis is m4 / m2^2 (IBSI's excess kurtosis + 3), 0 for a flat region; TotalEnergy is the voxel volume
  times Energy; Energy and RootMeanSquared use the intensities plus ``voxelArrayShift``.
- Entropies are pyradiomics' -sum p log2(p + eps) (the IBSI value minus eps / ln 2 per non-zero p).
- Where IBSI leaves a feature undefined for one grey level, pyradiomics' value: GLCM Correlation 1, Imc1 0,
  MCC 1; NGTDM Coarseness 10^6, Contrast, Busyness and Strength 0.
- NGTDM counts ROI voxels without a neighbour in the ROI in n_i (IBSI leaves them out).
- Remaining rounding: pyradiomics adds eps to the denominators of Correlation and MCC and inside the
  logarithms of Imc1 / Imc2; left out here (measured at most 2e-10 relative on the real cases).

Not available here (a :class:`~RadiomicsLabLib.errors.RadiomicsLabError` before any work, saying so):
the ``shape2D`` class with ``force2D: true``, the ``LBP3D`` image type, several ``distances``. Use the
``pyradiomics`` engine for those.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .errors import RadiomicsLabError
from .limits import check_grey_levels, check_texture_memory, fixed_bin_size_levels

#: Whose definitions the engine computes.
DEFINITIONS = "pyradiomics 3.1 (pyradiomics-bhklab 3.1.4)"

#: pyradiomics' feature classes, in ``radiomics.getFeatureClasses()`` order: feature -> deprecated, in the order
#: pyradiomics enables them (its ``getFeatureNames``: sorted by method name ``get<Feature>FeatureValue``).
FEATURE_CLASSES = {
    "firstorder": dict.fromkeys(
        ("10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis", "Maximum", "Mean",
         "MeanAbsoluteDeviation", "Median", "Minimum", "Range", "RobustMeanAbsoluteDeviation", "RootMeanSquared",
         "Skewness", "StandardDeviation", "TotalEnergy", "Uniformity", "Variance"), False),
    "glcm": dict.fromkeys(
        ("Autocorrelation", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast", "Correlation",
         "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "Dissimilarity", "Homogeneity1",
         "Homogeneity2", "Id", "Idm", "Idmn", "Idn", "Imc1", "Imc2", "InverseVariance", "JointAverage",
         "JointEnergy", "JointEntropy", "MCC", "MaximumProbability", "SumAverage", "SumEntropy", "SumSquares",
         "SumVariance"), False),
    "gldm": dict.fromkeys(
        ("DependenceEntropy", "DependenceNonUniformity", "DependenceNonUniformityNormalized", "DependencePercentage",
         "DependenceVariance", "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
         "HighGrayLevelEmphasis", "LargeDependenceEmphasis", "LargeDependenceHighGrayLevelEmphasis",
         "LargeDependenceLowGrayLevelEmphasis", "LowGrayLevelEmphasis", "SmallDependenceEmphasis",
         "SmallDependenceHighGrayLevelEmphasis", "SmallDependenceLowGrayLevelEmphasis"), False),
    "glrlm": dict.fromkeys(
        ("GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance", "HighGrayLevelRunEmphasis",
         "LongRunEmphasis", "LongRunHighGrayLevelEmphasis", "LongRunLowGrayLevelEmphasis", "LowGrayLevelRunEmphasis",
         "RunEntropy", "RunLengthNonUniformity", "RunLengthNonUniformityNormalized", "RunPercentage", "RunVariance",
         "ShortRunEmphasis", "ShortRunHighGrayLevelEmphasis", "ShortRunLowGrayLevelEmphasis"), False),
    "glszm": dict.fromkeys(
        ("GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance", "HighGrayLevelZoneEmphasis",
         "LargeAreaEmphasis", "LargeAreaHighGrayLevelEmphasis", "LargeAreaLowGrayLevelEmphasis",
         "LowGrayLevelZoneEmphasis", "SizeZoneNonUniformity", "SizeZoneNonUniformityNormalized", "SmallAreaEmphasis",
         "SmallAreaHighGrayLevelEmphasis", "SmallAreaLowGrayLevelEmphasis", "ZoneEntropy", "ZonePercentage",
         "ZoneVariance"), False),
    "ngtdm": dict.fromkeys(("Busyness", "Coarseness", "Complexity", "Contrast", "Strength"), False),
    "shape": dict.fromkeys(
        ("Compactness1", "Compactness2", "Elongation", "Flatness", "LeastAxisLength", "MajorAxisLength",
         "Maximum2DDiameterColumn", "Maximum2DDiameterRow", "Maximum2DDiameterSlice", "Maximum3DDiameter",
         "MeshVolume", "MinorAxisLength", "SphericalDisproportion", "Sphericity", "SurfaceArea", "SurfaceVolumeRatio",
         "VoxelVolume"), False),
    "shape2D": dict.fromkeys(
        ("Elongation", "MajorAxisLength", "MaximumDiameter", "MeshSurface", "MinorAxisLength", "Perimeter",
         "PerimeterSurfaceRatio", "PixelSurface", "SphericalDisproportion", "Sphericity"), False),
}
FEATURE_CLASSES = {cls: dict(sorted(names.items(), key=lambda item: f"get{item[0]}FeatureValue"))
                   for cls, names in FEATURE_CLASSES.items()}
for _cls, _name in (("firstorder", "StandardDeviation"), ("glcm", "Dissimilarity"), ("glcm", "Homogeneity1"),
                    ("glcm", "Homogeneity2"), ("glcm", "SumVariance"), ("gldm", "DependencePercentage"),
                    ("gldm", "GrayLevelNonUniformityNormalized"), ("shape", "Compactness1"),
                    ("shape", "Compactness2"), ("shape", "SphericalDisproportion"), ("shape2D", "SphericalDisproportion")):
    FEATURE_CLASSES[_cls][_name] = True
#: Deprecated features pyradiomics never returns a value for (it raises a DeprecationWarning instead).
NO_VALUE = {("glcm", "Dissimilarity"), ("glcm", "Homogeneity1"), ("glcm", "Homogeneity2"), ("glcm", "SumVariance"),
            ("gldm", "DependencePercentage"), ("gldm", "GrayLevelNonUniformityNormalized")}
#: pyradiomics' image types (``radiomics.getImageTypes()``), and those computed here.
IMAGE_TYPES = ("Exponential", "Gradient", "LBP2D", "LBP3D", "LoG", "Logarithm", "Original", "Square", "SquareRoot",
               "Wavelet")
NATIVE_IMAGE_TYPES = ("Original", "Square", "SquareRoot", "Logarithm", "Exponential", "LoG", "Wavelet", "Gradient",
                      "LBP2D")
#: The settings of pyradiomics' ``RadiomicsFeatureExtractor`` when a parameter file does not give them.
DEFAULT_SETTINGS = {"minimumROIDimensions": 2, "minimumROISize": None, "normalize": False, "normalizeScale": 1,
                    "removeOutliers": None, "resampledPixelSpacing": None, "interpolator": "sitkBSpline",
                    "preCrop": False, "padDistance": 5, "distances": [1], "force2D": False, "force2Ddimension": 0,
                    "resegmentRange": None, "label": 1, "additionalInfo": True}
#: pyradiomics writes every entropy as -sum p log2(p + eps): for p >> eps that is the entropy minus eps / ln 2
#: per non-zero probability, the correction applied here (it makes a flat region's entropy -3.2e-16, as there).
_KAPPA = float(np.spacing(1)) / math.log(2.0)
_REFUSE_HINT = "install pyradiomics (pyradiomics-bhklab) and choose engine pyradiomics, or remove it"


def feature_names(feature_class: str, deprecated: bool = False) -> list[str]:
    """pyradiomics' feature names of one class (``glcm`` -> ``Autocorrelation``, ...), deprecated ones on request."""
    return [name for name, old in FEATURE_CLASSES[feature_class].items() if deprecated or not old]


# --------------------------------------------------------------------------------------------
# pyradiomics' parameter schema (radiomics/schemas/paramSchema.yaml), for validation without pykwalify
# --------------------------------------------------------------------------------------------

def _rule(kind, low=None, high=None, low_exclusive=False, enum=None, check=None, seq=False):
    return {"type": kind, "min": low, "max": high, "min_exclusive": low_exclusive, "enum": enum, "check": check,
            "seq": seq}


_INTERPOLATORS = ("sitkNearestNeighbor", "sitkLinear", "sitkBSpline", "sitkGaussian", "sitkLabelGaussian",
                  "sitkHammingWindowedSinc", "sitkCosineWindowedSinc", "sitkWelchWindowedSinc",
                  "sitkLanczosWindowedSinc", "sitkBlackmanWindowedSinc")
_WEIGHTING = ("euclidean", "manhattan", "infinity", "no_weighting")

#: The ``setting`` section (also every ``imageType`` entry's custom settings): key -> rule.
SETTING_SCHEMA = {
    "minimumROIDimensions": _rule("int", 1, 3), "minimumROISize": _rule("int", 0, low_exclusive=True),
    "geometryTolerance": _rule("float", 0, low_exclusive=True), "correctMask": _rule("bool"),
    "additionalInfo": _rule("bool"), "label": _rule("int", 0, low_exclusive=True), "label_channel": _rule("int", 0),
    "binWidth": _rule("float", 0, low_exclusive=True), "binCount": _rule("int", 0, low_exclusive=True),
    "normalize": _rule("bool"), "normalizeScale": _rule("float", 0, low_exclusive=True),
    "removeOutliers": _rule("float", 0, low_exclusive=True), "resampledPixelSpacing": _rule("float", 0, seq=True),
    "interpolator": _rule("any", check="interpolator"), "padDistance": _rule("int", 0),
    "distances": _rule("int", 0, low_exclusive=True, seq=True), "force2D": _rule("bool"),
    "force2Ddimension": _rule("int", 0, 2), "resegmentRange": _rule("float", seq=True),
    "resegmentMode": _rule("str", enum=("absolute", "relative", "sigma")), "resegmentShape": _rule("bool"),
    "preCrop": _rule("bool"), "sigma": _rule("float", 0, low_exclusive=True, seq=True), "start_level": _rule("int", 0),
    "level": _rule("int", 0, low_exclusive=True), "wavelet": _rule("str", check="wavelet"),
    "gradientUseSpacing": _rule("bool"), "lbp2DRadius": _rule("float", 0, low_exclusive=True),
    "lbp2DSamples": _rule("int", 1), "lbp2DMethod": _rule("str", enum=("default", "ror", "uniform", "var")),
    "lbp3DLevels": _rule("int", 1), "lbp3DIcosphereRadius": _rule("float", 0, low_exclusive=True),
    "lbp3DIcosphereSubdivision": _rule("int", 0), "voxelArrayShift": _rule("int"), "symmetricalGLCM": _rule("bool"),
    "weightingNorm": _rule("any", check="weighting"), "gldm_a": _rule("int", 0),
}
#: The ``voxelSetting`` section (voxel-based extraction only).
VOXEL_SETTING_SCHEMA = {"kernelRadius": _rule("int", 0, low_exclusive=True), "maskedKernel": _rule("bool"),
                        "initValue": _rule("float"), "voxelBatch": _rule("int", 0, low_exclusive=True)}
#: Top-level sections.
SECTIONS = ("setting", "voxelSetting", "featureClass", "imageType")


def validate_params(params: dict, source: str) -> dict:
    """Check pyradiomics-style parameters against pyradiomics' schema, without pykwalify; returns ``params``.

    The messages are those of :func:`RadiomicsLabLib.settings.load_settings` with pyradiomics installed:
    an unknown key is named with a "did you mean", a wrong type or value names the setting and what it expects.
    """
    import difflib

    def unknown(key, known, where):
        close = difflib.get_close_matches(str(key), list(known), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(known))}"
        return RadiomicsLabError(f"Unknown setting '{key}' in {where} of {source}; {hint}")

    def section(name, value):
        if not isinstance(value, dict):
            raise RadiomicsLabError(f"Invalid parameters in {source}: section '{name}' must be a mapping, "
                                    f"not {value!r}.")
        return value

    for key in params:
        if key not in SECTIONS:
            raise unknown(key, SECTIONS, "the top level")
    if "setting" in params:
        _check_settings(section("setting", params["setting"]), SETTING_SCHEMA, "setting", source, unknown)
    if "voxelSetting" in params:
        _check_settings(section("voxelSetting", params["voxelSetting"]), VOXEL_SETTING_SCHEMA, "voxelSetting", source,
                        unknown)
    if "featureClass" in params:
        for name, features in section("featureClass", params["featureClass"]).items():
            if name not in FEATURE_CLASSES:
                raise RadiomicsLabError(f"Invalid parameters in {source}: Feature Class {name} is not recognized. "
                                        f"Available feature classes are {list(FEATURE_CLASSES)}")
            if features is None:
                continue
            if not isinstance(features, list):
                raise RadiomicsLabError(f"Invalid parameters in {source}: Value of feature class {name} not expected "
                                        "type (list)")
            unrecognised = set(features) - set(FEATURE_CLASSES[name])
            if unrecognised:
                raise RadiomicsLabError(f"Invalid parameters in {source}: Feature Class {name} contains unrecognized "
                                        f"features: {unrecognised}")
    if "imageType" in params:
        for name, custom in section("imageType", params["imageType"]).items():
            if name not in IMAGE_TYPES:
                raise RadiomicsLabError(f"Invalid parameters in {source}: Image Type {name} is not recognized. "
                                        f"Available image types are {list(IMAGE_TYPES)}")
            _check_settings(section(f"imageType/{name}", custom), SETTING_SCHEMA, f"imageType/{name}", source, unknown)
    return params


def _check_settings(values: dict, schema: dict, where: str, source: str, unknown) -> None:
    for key, value in values.items():
        if key not in schema:
            raise unknown(key, schema, f"section '{where}'")
        if value is None:
            continue  # pyradiomics' schema: every setting may be null (its default)
        rule = schema[key]
        if rule["seq"]:
            if not isinstance(value, list):
                _bad(key, value, source, f"expected a list of {rule['type']}")
            for item in value:
                if item is not None:
                    _check_value(key, item, rule, source)
        else:
            _check_value(key, value, rule, source)


def _bad(key, value, source, what):
    raise RadiomicsLabError(f"Invalid value '{value}' for setting '{key}' in {source}: {what}.")


def _check_value(key, value, rule, source) -> None:
    kind = rule["type"]
    is_bool = isinstance(value, bool)
    if kind == "int" and (is_bool or not isinstance(value, int)):
        _bad(key, value, source, "expected int")
    if kind == "float":
        try:
            float(value)
        except (TypeError, ValueError):
            _bad(key, value, source, "expected float")
        if is_bool:
            _bad(key, value, source, "expected float")
    if kind == "bool" and not is_bool:
        _bad(key, value, source, "expected bool")
    if kind == "str" and not isinstance(value, str):
        _bad(key, value, source, "expected str")
    if rule["enum"] is not None and value not in rule["enum"]:
        _bad(key, value, source, f"expected one of {', '.join(rule['enum'])}")
    if kind in ("int", "float") and (rule["min"] is not None or rule["max"] is not None):
        number = float(value)
        if rule["min"] is not None:
            if rule["min_exclusive"] and not number > rule["min"]:
                _bad(key, value, source, f"must be greater than {rule['min']}")
            if not rule["min_exclusive"] and not number >= rule["min"]:
                _bad(key, value, source, f"must be {rule['min']} or more")
        if rule["max"] is not None and not number <= rule["max"]:
            _bad(key, value, source, f"must be {rule['max']} or less")
    check = rule["check"]
    if check == "interpolator":
        if isinstance(value, str):
            if value not in _INTERPOLATORS:
                _bad(key, value, source, f"expected one of {', '.join(_INTERPOLATORS)}")
        elif is_bool or not isinstance(value, int):
            _bad(key, value, source, "expected a SimpleITK interpolator name or number")
        elif not 1 <= value <= 10:
            _bad(key, value, source, "must be a SimpleITK interpolator number from 1 to 10")
    elif check == "weighting" and value not in _WEIGHTING:
        _bad(key, value, source, f"expected one of {', '.join(_WEIGHTING)} or null")
    elif check == "wavelet":
        import pywt

        if value not in pywt.wavelist():
            _bad(key, value, source, "not a PyWavelets wavelet (see pywt.wavelist())")


# --------------------------------------------------------------------------------------------
# The plan: what one set of parameters asks for, every refusal raised before any work
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NativePlan:
    """Settings (pyradiomics' defaults updated with the file's), image types (name, custom settings) in order,
    and feature classes (class -> feature names asked for, or None: every non-deprecated feature)."""

    settings: dict
    image_types: tuple
    classes: dict = field(default_factory=dict)

    def effective(self) -> dict:
        """The settings as the provenance records them (pyradiomics' layout, the label chosen per segment)."""
        return {"setting": {k: v for k, v in self.settings.items() if k != "label"},
                "imageType": {name: dict(custom) for name, custom in self.image_types},
                "featureClass": {name: (list(names) if names is not None else None)
                                 for name, names in self.classes.items()}}


def plan_extraction(params: dict, source: str = "the settings") -> NativePlan:
    """The :class:`NativePlan` of pyradiomics-style ``params`` (already schema-checked); anything the native
    engine does not compute is refused here, naming the setting, image type or class and what to do."""
    settings = dict(DEFAULT_SETTINGS)
    settings.update(params.get("setting") or {})
    image_types = tuple((name, dict(custom or {})) for name, custom in (params.get("imageType") or {"Original": {}}).items())
    requested = params.get("featureClass") or {name: [] for name in FEATURE_CLASSES}
    classes = {name: (list(names) if names else None) for name, names in requested.items()}
    for name, custom in image_types:
        if name not in NATIVE_IMAGE_TYPES:
            why = (" (pyradiomics' own LBP3D needs the trimesh package and scipy.special.sph_harm)"
                   if name == "LBP3D" else "")
            raise RadiomicsLabError(f"Image type '{name}' in {source} is not available in the native engine{why}; "
                                    f"{_REFUSE_HINT}.")
        _check_run_settings({**settings, **custom}, f"{source}" + (f" (image type {name})" if custom else ""))
    if "shape2D" in classes and settings.get("force2D"):
        raise RadiomicsLabError(
            f"Feature class 'shape2D' (enabled with force2D: true in {source}) is not available in the native engine; "
            f"{_REFUSE_HINT} (list the feature classes you want under featureClass, without shape2D).")
    if settings.get("resegmentRange") is not None and len(settings["resegmentRange"]) not in (1, 2):
        raise RadiomicsLabError(f"resegmentRange in {source} must hold 1 or 2 thresholds; got "
                                f"{settings['resegmentRange']}.")
    spacing = settings.get("resampledPixelSpacing")
    if spacing is not None and settings.get("interpolator") is not None and len(spacing) != 3:
        raise RadiomicsLabError(f"resampledPixelSpacing in {source} must give 3 spacings (x, y, z); got {spacing}.")
    return NativePlan(settings, image_types, classes)


def _check_run_settings(args: dict, source: str) -> None:
    distances = args.get("distances") or [1]
    if len(distances) != 1:
        raise RadiomicsLabError(f"distances {distances} in {source}: the native engine uses one texture distance; "
                                f"give one (e.g. distances: [{distances[0]}]), or {_REFUSE_HINT}.")
    if args.get("binCount") is not None and int(args["binCount"]) < 1:
        raise RadiomicsLabError(f"binCount in {source} must be 1 or more.")


# --------------------------------------------------------------------------------------------
# pyradiomics' discretisation and neighbourhoods
# --------------------------------------------------------------------------------------------

def pyradiomics_bins(image: np.ndarray, mask: np.ndarray | None = None, bin_width=25, bin_count=None):
    """(grey levels, bin edges): pyradiomics' discretisation of ``image`` inside ``mask`` (0 outside; all of
    ``image`` when ``mask`` is None).

    Fixed bin width ``w``: edges ``floor(min / w) * w + k w`` up to ``max + 2 w`` (bins aligned on multiples
    of ``w``, the lowest holding the ROI's minimum), level = the edge index from ``numpy.digitize`` (so the
    lowest level is 1). Fixed bin count ``N``: ``numpy.histogram``'s ``N`` equal bins between minimum and
    maximum, the last edge raised by 1 so the maximum falls in bin ``N``. The arithmetic runs in the image's
    own data type, as pyradiomics' ``imageoperations.getBinEdges`` / ``binImage`` do.
    """
    values = image[mask] if mask is not None else image.ravel()
    if bin_count is not None:
        check_grey_levels(int(bin_count), values.min(), values.max(), bin_count=bin_count)
        edges = np.histogram(values, int(bin_count))[1]
        edges[-1] += 1
    else:
        minimum, maximum = values.min(), values.max()
        low = minimum - (minimum % bin_width)
        check_grey_levels(fixed_bin_size_levels(minimum, maximum, bin_width, low), minimum, maximum, bin_width=bin_width)
        edges = np.arange(low, maximum + 2 * bin_width, bin_width)
        if len(edges) == 1:  # a flat region: one bin
            edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    levels = np.zeros(image.shape, dtype=np.int64)
    if mask is None:
        levels[...] = np.digitize(image, edges)
    else:
        levels[mask] = np.digitize(values, edges)
    return levels, edges


def pyradiomics_angles(size, distances=(1,), bidirectional=False, force2d=False, force2d_dimension=0) -> np.ndarray:
    """pyradiomics' neighbour offsets (dz, dy, dx): every offset whose Chebyshev length is one of ``distances``,
    none of whose components reaches the size of its axis (``size``: the ROI's bounding box), in-plane
    (zero along ``force2d_dimension``) with ``force2d``, and one of each +- pair unless ``bidirectional``."""
    reach = max(int(d) for d in distances)
    wanted = {int(d) for d in distances}
    out = []
    for offset in itertools.product(range(reach, -reach - 1, -1), repeat=3):
        if max(abs(c) for c in offset) not in wanted:
            continue
        if any(abs(c) >= s for c, s in zip(offset, size)):
            continue
        if force2d and offset[force2d_dimension] != 0:
            continue
        if not bidirectional and next(c for c in offset if c != 0) < 0:
            continue
        out.append(offset)
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def _shift(array: np.ndarray, offset, fill=0) -> np.ndarray:
    """``out[v] = array[v + offset]``, ``fill`` where ``v + offset`` is outside the grid."""
    out = np.full(array.shape, fill, dtype=array.dtype)
    target, source = [], []
    for delta, size in zip(offset, array.shape):
        target.append(slice(max(0, -delta), size - max(0, delta)))
        source.append(slice(max(0, delta), size - max(0, -delta)))
    out[tuple(target)] = array[tuple(source)]
    return out


# --------------------------------------------------------------------------------------------
# Preprocessing (pyradiomics' imageoperations, with SimpleITK)
# --------------------------------------------------------------------------------------------

def normalize_image(image: sitk.Image, scale=1, outliers=None) -> sitk.Image:
    """pyradiomics' ``normalizeImage``: (x - mean) / sd over the whole image, values beyond +- ``outliers`` SD
    clipped, then times ``scale``."""
    image = sitk.Normalize(image)
    if outliers is not None:
        array = sitk.GetArrayFromImage(image)
        array[array > outliers] = outliers
        array[array < -outliers] = -outliers
        clipped = sitk.GetImageFromArray(array)
        clipped.CopyInformation(image)
        image = clipped
    return image * scale


def _label_box(mask: sitk.Image, label: int) -> np.ndarray:
    """(x, y, z) lower index then (x, y, z) size of the label's bounding box (LabelShapeStatistics)."""
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(mask)
    if label not in statistics.GetLabels():
        raise RadiomicsLabError(f"Label {label} is not in the mask.")
    return np.array(statistics.GetBoundingBox(label))


def crop(image: sitk.Image, mask: sitk.Image, box_low, box_high, pad: int = 0):
    """Image and mask cropped to the (x, y, z) index box ``box_low..box_high`` grown by ``pad`` (pyradiomics'
    ``cropToTumorMask``)."""
    size = np.array(mask.GetSize())
    lower = np.maximum(np.asarray(box_low) - pad, 0)
    upper = np.maximum(size - np.asarray(box_high) - pad - 1, 0)
    cropper = sitk.CropImageFilter()
    cropper.SetLowerBoundaryCropSize([int(v) for v in lower])
    cropper.SetUpperBoundaryCropSize([int(v) for v in upper])
    return cropper.Execute(image), cropper.Execute(mask)


def resample(image: sitk.Image, mask: sitk.Image, spacing, interpolator, pad: int, label: int):
    """pyradiomics' ``resampleImage``: a grid of ``spacing`` mm aligned to the mask's origin (a 0 component
    keeps that axis, an axis the ROI spans one voxel of too), covering the ROI's box grown by ``pad`` voxels
    of the new grid; the image interpolated with ``interpolator`` (its voxel type kept), the mask with
    nearest neighbour."""
    mask_spacing = np.array(mask.GetSpacing())
    spacing = np.where(np.array(spacing, dtype=np.float64) == 0, mask_spacing, np.array(spacing, dtype=np.float64))
    box = _label_box(mask, label)
    dims = mask.GetDimension()
    spacing = np.where(box[dims:] != 1, spacing, mask_spacing)
    if np.allclose(np.array(image.GetSpacing()), spacing):
        resampler = sitk.ResampleImageFilter()
        resampler.SetReferenceImage(image)
        resampler.SetInterpolator(sitk.sitkNearestNeighbor)
        mask = resampler.Execute(mask)
        box = _label_box(mask, label)
        return crop(image, mask, box[:dims], box[:dims] + box[dims:] - 1, pad)
    ratio = mask_spacing / spacing
    low = np.floor((box[:dims] - 0.5) * ratio - pad)
    high = np.ceil((box[:dims] + box[dims:] - 0.5) * ratio + pad)
    highest = np.ceil(np.array(mask.GetSize()) * ratio) - 1
    low = np.where(low < 0, 0, low)
    high = np.where(high > highest, highest, high)
    size = np.array(high - low + 1, dtype=int).tolist()
    origin_index = 0.5 * (spacing - mask_spacing) / mask_spacing + low / ratio
    origin = mask.TransformContinuousIndexToPhysicalPoint(origin_index.tolist())
    if isinstance(interpolator, str):
        interpolator = getattr(sitk, interpolator)
    resampler = sitk.ResampleImageFilter()
    resampler.SetOutputSpacing(spacing.tolist())
    resampler.SetOutputDirection(mask.GetDirection())
    resampler.SetSize(size)
    resampler.SetOutputOrigin(origin)
    resampler.SetOutputPixelType(image.GetPixelID())
    resampler.SetInterpolator(interpolator)
    resampled_image = resampler.Execute(image)
    resampler.SetOutputPixelType(mask.GetPixelID())
    resampler.SetInterpolator(sitk.sitkNearestNeighbor)
    return resampled_image, resampler.Execute(mask)


def _box_of(roi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) (z, y, x) index of the ROI."""
    where = np.nonzero(roi)
    return np.array([a.min() for a in where]), np.array([a.max() for a in where])


def check_roi(roi: np.ndarray, settings: dict, name: str, what: str = "mask") -> tuple[np.ndarray, np.ndarray]:
    """pyradiomics' ``checkMask``: the ROI's bounding box, after refusing an ROI of fewer dimensions than
    ``minimumROIDimensions`` or of no more voxels than ``minimumROISize``."""
    if not roi.any():
        raise RadiomicsLabError(f"Segment '{name}': the {what} is empty; check the segmentation and its label.")
    low, high = _box_of(roi)
    dimensions = int(np.sum(high - low + 1 > 1))
    wanted = settings.get("minimumROIDimensions") or 1
    if dimensions == 0:
        raise RadiomicsLabError(f"Segment '{name}': the {what} holds a single voxel; features need more voxels.")
    if dimensions < wanted:
        raise RadiomicsLabError(
            f"Segment '{name}': the {what} spans {dimensions} dimension(s), fewer than minimumROIDimensions "
            f"({wanted}); lower minimumROIDimensions or check the segmentation.")
    size = settings.get("minimumROISize")
    if size is not None and roi.sum() <= size:
        raise RadiomicsLabError(f"Segment '{name}': the {what} has {int(roi.sum())} voxels, not more than "
                                f"minimumROISize ({size}); lower minimumROISize or check the segmentation.")
    return low, high


def resegment(image: np.ndarray, roi: np.ndarray, settings: dict, name: str) -> np.ndarray:
    """pyradiomics' ``resegmentMask``: the ROI voxels within the thresholds (absolute, relative to the ROI's
    maximum, or mean + k SD), ``>=`` the lower and ``<=`` the upper."""
    mode = settings.get("resegmentMode") or "absolute"
    bounds = sorted(settings["resegmentRange"])
    values = image[roi]
    if mode == "relative":
        top = np.max(values)
        bounds = [top * b for b in bounds]
    elif mode == "sigma":
        mean, sd = np.mean(values), np.std(values)
        bounds = [mean + sd * b for b in bounds]
    out = roi.copy()
    out[out] = image[out] >= bounds[0]
    if len(bounds) == 2:
        out[out] = image[out] <= bounds[1]
    if out.sum() <= 1:
        raise RadiomicsLabError(f"Segment '{name}': re-segmentation ({mode} range {settings['resegmentRange']}) "
                                f"keeps {int(out.sum())} voxel(s); widen resegmentRange.")
    return out


# --------------------------------------------------------------------------------------------
# Image types (pyradiomics' filters, applied to the whole preprocessed image)
# --------------------------------------------------------------------------------------------

def _from_array(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like)
    return image


def filtered_images(image: sitk.Image, image_type: str, args: dict):
    """Yield (filtered image, pyradiomics image type name) of one image type, as pyradiomics'
    ``imageoperations.get<Type>Image`` does."""
    if image_type == "Original":
        yield image, "original"
        return
    if image_type in ("Square", "SquareRoot", "Logarithm", "Exponential"):
        a = sitk.GetArrayFromImage(image).astype("float64")
        top = np.max(np.abs(a))
        if image_type == "Square":            # (x / sqrt(max|x|))^2
            a = (a / np.sqrt(top)) ** 2
        elif image_type == "SquareRoot":      # sign(x) sqrt(|x| max|x|)
            a[a > 0] = np.sqrt(a[a > 0] * top)
            a[a < 0] = -np.sqrt(-a[a < 0] * top)
        elif image_type == "Logarithm":       # sign(x) log(|x| + 1), rescaled to max|x|
            a[a > 0] = np.log(a[a > 0] + 1)
            a[a < 0] = -np.log(-(a[a < 0] - 1))
            a = a * (top / np.max(np.abs(a)))
        else:                                 # exp(x log(max|x|) / max|x|)
            a = np.exp(np.log(top) / top * a)
        yield _from_array(a, image), image_type.lower()
        return
    if image_type == "LoG":
        size, spacing = np.array(image.GetSize()), np.array(image.GetSpacing())
        if np.min(size) < 4:
            return  # pyradiomics: image too small for its LoG filter, no LoG image
        for sigma in args.get("sigma") or []:
            if sigma > 0 and np.all(size >= np.ceil(sigma / spacing) + 1):
                log = sitk.LaplacianRecursiveGaussianImageFilter()
                log.SetNormalizeAcrossScale(True)
                log.SetSigma(sigma)
                yield log.Execute(image), "log-sigma-%s-mm-3D" % str(sigma).replace(".", "-")
        return
    if image_type == "Wavelet":
        yield from _wavelet_images(image, args)
        return
    if image_type == "Gradient":
        gradient = sitk.GradientMagnitudeImageFilter()
        gradient.SetUseImageSpacing(args.get("gradientUseSpacing", True))
        yield gradient.Execute(image), "gradient"
        return
    if image_type == "LBP2D":
        from skimage.feature import local_binary_pattern

        a = sitk.GetArrayFromImage(image)
        axis = args.get("force2Ddimension", 0)
        view = a.swapaxes(0, axis)   # written in place, in the image's own voxel type, as pyradiomics does
        for index in range(view.shape[0]):
            view[index, ...] = local_binary_pattern(view[index, ...], P=args.get("lbp2DSamples", 8),
                                                    R=args.get("lbp2DRadius", 1), method=args.get("lbp2DMethod", "uniform"))
        yield _from_array(a, image), "lbp-2D"
        return
    raise RadiomicsLabError(f"Image type '{image_type}' is not available in the native engine; {_REFUSE_HINT}.")


def _wavelet_images(image: sitk.Image, args: dict):
    """pyradiomics' stationary wavelet decomposition: ``level`` levels from ``start_level`` along every axis
    (not ``force2Ddimension`` with ``force2D``), odd sizes padded by one wrapped voxel; each level's detail
    images (``wavelet-LLH`` ... ``wavelet2-...``), then the last approximation."""
    import pywt

    dims = image.GetDimension()
    axes = list(range(dims - 1, -1, -1))
    if args.get("force2D", False):
        axes.remove(args.get("force2Ddimension", 0))
    axes = tuple(axes)
    wavelet = pywt.Wavelet(args.get("wavelet", "coif1"))
    level, start = args.get("level", 1), args.get("start_level", 0)
    array = np.asarray(sitk.GetArrayFromImage(image))
    shape = array.shape
    data = np.pad(array.copy(), tuple((0, 1 if n % 2 else 0) for n in shape), "wrap")
    unpad = tuple(slice(None, -1 if n % 2 else None) for n in shape)
    approximation = "a" * len(axes)
    for _ in range(start):
        data = pywt.swtn(data, wavelet, level=1, start_level=0, axes=axes)[0][approximation].copy()
    levels = []
    for _ in range(start, start + level):
        decomposition = pywt.swtn(data, wavelet, level=1, start_level=0, axes=axes)[0]
        data = decomposition[approximation].copy()
        levels.append({key.replace("a", "L").replace("d", "H"): _from_array(value.copy()[unpad], image)
                       for key, value in decomposition.items() if key != approximation})
    for number, details in enumerate(levels, start=1):
        for key, detail in details.items():
            yield detail, f"wavelet-{key}" if number == 1 else f"wavelet{number}-{key}"
    last = "L" * len(axes)
    yield _from_array(data[unpad], image), f"wavelet-{last}" if len(levels) == 1 else f"wavelet{len(levels)}-{last}"


# --------------------------------------------------------------------------------------------
# One segment
# --------------------------------------------------------------------------------------------

def extract_segment(plan: NativePlan, image: sitk.Image, mask: sitk.Image, label: int, name: str) -> tuple[dict, dict]:
    """({pyradiomics feature name: value} in pyradiomics' order, diagnostics) of label ``label`` of ``mask``."""
    settings = dict(plan.settings, label=int(label))
    mask = sitk.Cast(mask, sitk.sitkUInt32)
    diagnostics = {"Image-original_Spacing": list(image.GetSpacing()), "Image-original_Size": list(image.GetSize()),
                   "Mask-original_VoxelNum": int(np.sum(sitk.GetArrayViewFromImage(mask) == label))}
    if settings.get("normalize"):
        image = normalize_image(image, settings.get("normalizeScale", 1), settings.get("removeOutliers"))
    if settings.get("interpolator") is not None and settings.get("resampledPixelSpacing") is not None:
        image, mask = resample(image, mask, settings["resampledPixelSpacing"], settings["interpolator"],
                               int(settings.get("padDistance", 5)), int(label))
        diagnostics.update({"Image-interpolated_Spacing": list(image.GetSpacing()),
                            "Image-interpolated_Size": list(image.GetSize()),
                            "Mask-interpolated_VoxelNum": int(np.sum(sitk.GetArrayViewFromImage(mask) == label))})
    elif settings.get("preCrop"):
        low, high = check_roi(sitk.GetArrayViewFromImage(mask) == label, settings, name)
        image, mask = crop(image, mask, low[::-1], high[::-1], int(settings.get("padDistance", 5)))
    roi = sitk.GetArrayFromImage(mask) == label
    low, high = check_roi(roi, settings, name)
    shape_roi = roi
    if settings.get("resegmentRange") is not None:
        roi = resegment(sitk.GetArrayViewFromImage(image), roi, settings, name)
        low, high = check_roi(roi, settings, name, "re-segmented mask")
        diagnostics["Mask-resegmented_VoxelNum"] = int(roi.sum())
        if settings.get("resegmentShape"):
            shape_roi = roi
    diagnostics["Mask-BoundingBox"] = [int(v) for v in [*low[::-1], *(high - low + 1)[::-1]]]
    box = tuple(slice(int(a), int(b) + 1) for a, b in zip(low, high))
    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
    values = {}
    if "shape" in plan.classes:
        values.update(_named("original", "shape", shape_features(shape_roi[box], spacing, plan.classes["shape"])))
    for image_type, custom in plan.image_types:
        args = {**settings, **custom}
        for filtered, type_name in filtered_images(image, image_type, args):
            array = np.asarray(sitk.GetArrayViewFromImage(filtered))[box]
            spacing_here = tuple(float(s) for s in filtered.GetSpacing()[::-1])
            for feature_class, names in plan.classes.items():
                if feature_class.startswith("shape"):
                    continue
                computed = class_features(feature_class, array, roi[box], spacing_here, args, names,
                                          f"{type_name} image of segment '{name}'")
                values.update(_named(type_name, feature_class, computed))
    return values, diagnostics


def _named(image_type, feature_class, computed: dict) -> dict:
    return {f"{image_type}_{feature_class}_{name}": value for name, value in computed.items()}


def _wanted(feature_class: str, names) -> list[str]:
    """The features of a class pyradiomics returns for ``names`` (None: every non-deprecated one)."""
    chosen = feature_names(feature_class) if names is None else list(dict.fromkeys(names))
    return [n for n in chosen if (feature_class, n) not in NO_VALUE]


# --------------------------------------------------------------------------------------------
# Feature classes
# --------------------------------------------------------------------------------------------

def _ibsi_bases(feature_class: str) -> dict:
    """{pyradiomics feature: IBSI base tag} of a class, from :data:`~RadiomicsLabLib.ibsi.names.PYRADIOMICS_TO_IBSI`."""
    from .ibsi.names import PYRADIOMICS_TO_IBSI

    prefix = f"original_{feature_class}_"
    out = {}
    for name, tag in PYRADIOMICS_TO_IBSI.items():
        if name.startswith(prefix):
            for suffix in ("_3D_avg", "_3D"):
                if tag.endswith(suffix) and feature_class not in ("shape", "firstorder"):
                    tag = tag[: -len(suffix)]
                    break
            out[name[len(prefix):]] = tag
    return out


@functools.cache
def _cube_triangles() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(triangles, configuration, sign) of pyradiomics' marching cubes: the classic triangulation (Lorensen &
    Cline 1987; :func:`~.ibsi.features.morphology.cube_triangles` ``"lorensen"``), except that a configuration
    whose corner 7 ((dz, dy, dx) = (1, 1, 0)) is inside takes the triangles of its complement, counted with the
    opposite orientation (pyradiomics' ``_cshape``: the isosurface is symmetric, so its table has 128 entries)."""
    from .ibsi.features.morphology import cube_triangles

    triangles, configuration = cube_triangles("lorensen")
    rows, numbers, signs = [], [], []
    for number in range(1, 255):
        flipped = bool(number & 0x80)
        of = np.flatnonzero(configuration == (number ^ 0xFF if flipped else number))
        rows.append(of)
        numbers += [number] * len(of)
        signs += [-1.0 if flipped else 1.0] * len(of)
    return triangles[np.concatenate(rows)], np.array(numbers, dtype=np.int64), np.array(signs)


def pyradiomics_mesh(roi: np.ndarray, spacing) -> tuple[float, float, np.ndarray]:
    """(volume mm^3, surface area mm^2, vertices (n, 3) mm) of pyradiomics' marching-cubes mesh of ``roi``.

    Every 2x2x2 cube of the zero-padded mask is triangulated with pyradiomics' table (:func:`_cube_triangles`);
    volume and area are sums over the cube configurations (:func:`~.ibsi.features.morphology.mesh_volume_area`),
    the vertices the distinct edge midpoints of the mesh (every edge between a voxel inside and one outside).
    """
    from .ibsi.features._morphology_kernels import cube_configurations, surface_cells
    from .ibsi.features.morphology import cube_lookup, mesh_volume_area

    padded = np.pad(np.asarray(roi, dtype=bool), 1)
    counts, origins = cube_configurations(padded, cube_lookup())
    volume, area = mesh_volume_area(counts, origins, spacing, *_cube_triangles())
    lattice = np.unique(surface_cells(padded), axis=0)   # half-voxel lattice
    # padded index i is ROI-box index i - 1
    return volume, area, (lattice / 2.0 - 1.0) * np.asarray(spacing, dtype=np.float64)


def shape_features(roi: np.ndarray, spacing, names=None) -> dict:
    """pyradiomics' ``shape`` features of the ROI (cropped to its box; ``spacing`` (z, y, x) mm).

    Mesh: :func:`pyradiomics_mesh`. Maximum 3D diameter: the largest distance between mesh vertices;
    2D diameters: the same within one axial plane (Slice: equal z), one coronal plane (Column: equal y),
    one sagittal plane (Row: equal x). PCA: the IBSI engine's eigenvalues of the covariance of the voxel
    centres (:class:`~RadiomicsLabLib.ibsi.features.morphology.Morphology`), rescaled to pyradiomics'
    population covariance by (N - 1) / N.
    """
    from .ibsi.features.morphology import Morphology
    from .ibsi.roi import Roi

    wanted = _wanted("shape", names)
    n = int(roi.sum())
    volume, area, vertices = pyradiomics_mesh(roi, spacing)
    if {"MajorAxisLength", "MinorAxisLength", "LeastAxisLength", "Elongation", "Flatness"} & set(wanted):
        eigenvalues = Morphology(Roi(roi.astype(np.float64), roi, roi, tuple(spacing))).eigenvalues
        least, minor, major = np.sort(eigenvalues * (n - 1) / n)
    out = {}
    for name in wanted:
        if name == "MeshVolume":
            out[name] = volume
        elif name == "VoxelVolume":
            out[name] = n * float(np.prod(spacing))
        elif name == "SurfaceArea":
            out[name] = area
        elif name == "SurfaceVolumeRatio":
            out[name] = area / volume
        elif name == "Sphericity":
            out[name] = (36 * math.pi * volume ** 2) ** (1.0 / 3.0) / area
        elif name == "Compactness1":
            out[name] = volume / (area ** 1.5 * math.sqrt(math.pi))
        elif name == "Compactness2":
            out[name] = 36.0 * math.pi * volume ** 2 / area ** 3
        elif name == "SphericalDisproportion":
            out[name] = area / (36 * math.pi * volume ** 2) ** (1.0 / 3.0)
        elif name == "Maximum3DDiameter":
            out[name] = _max_distance(vertices)
        elif name.startswith("Maximum2DDiameter"):
            axis = {"Slice": 0, "Column": 1, "Row": 2}[name.removeprefix("Maximum2DDiameter")]
            out[name] = _max_planar_distance(vertices, axis, spacing[axis])
        elif name == "MajorAxisLength":
            out[name] = 4.0 * math.sqrt(major)
        elif name == "MinorAxisLength":
            out[name] = 4.0 * math.sqrt(minor)
        elif name == "LeastAxisLength":
            out[name] = 4.0 * math.sqrt(least)
        elif name == "Elongation":
            out[name] = math.sqrt(minor / major) if major > 0 else math.nan
        elif name == "Flatness":
            out[name] = math.sqrt(least / major) if major > 0 else math.nan
    return {k: float(v) for k, v in out.items()}


def _max_distance(points: np.ndarray) -> float:
    """Largest distance between two of ``points`` (those on their convex hull, compared in blocks)."""
    from scipy.spatial import ConvexHull, QhullError

    if len(points) > 4:
        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:  # a flat point set: all points
            pass
    best = 0.0
    for start in range(0, len(points), 2048):
        block = points[start:start + 2048]
        best = max(best, float(np.max(np.sum((block[:, None, :] - points[None, start:, :]) ** 2, axis=-1))))
    return math.sqrt(best)


def _max_planar_distance(points: np.ndarray, axis: int, step: float) -> float:
    """Largest distance between two mesh vertices with the same coordinate along ``axis`` (vertices lie on a
    half-voxel lattice, so equal coordinates are equal multiples of ``step / 2``)."""
    from scipy.spatial import ConvexHull, QhullError

    plane = np.round(points[:, axis] / (step / 2.0)).astype(np.int64)
    best = 0.0
    other = [a for a in range(3) if a != axis]
    for key in np.unique(plane):
        group = points[plane == key]
        if len(group) < 2:
            continue
        if len(group) > 3:
            try:
                group = group[ConvexHull(group[:, other]).vertices]
            except QhullError:
                pass
        best = max(best, float(np.max(np.sum((group[:, None, :] - group[None, :, :]) ** 2, axis=-1))))
    return math.sqrt(best)


def class_features(feature_class: str, image: np.ndarray, roi: np.ndarray, spacing, args: dict, names=None,
                   where: str = "image") -> dict:
    """pyradiomics' features of one class (not shape) of ``image`` (cropped to the ROI's box, the image's own
    voxel type) inside ``roi``, with the image type's settings ``args``."""
    wanted = _wanted(feature_class, names)
    if not wanted:
        return {}
    width = args.get("binWidth")
    width = 25 if width is None else (float(width) if isinstance(width, str) else width)
    levels, _ = pyradiomics_bins(image, roi, width, args.get("binCount"))
    if feature_class != "firstorder":  # texture matrices: one per direction (13 in 3D)
        check_texture_memory(int(levels[roi].max()), 4 if args.get("force2D") else 13, where)
    if levels[roi].min() < 1:
        raise RadiomicsLabError(
            f"The {where} cannot be discretised with binWidth {width} / binCount {args.get('binCount')}: its values "
            f"overflow the image's voxel type ({image.dtype}); choose other settings for it.")
    compute = {"firstorder": _firstorder, "glcm": _glcm, "glrlm": _glrlm, "glszm": _glszm, "gldm": _gldm,
               "ngtdm": _ngtdm}[feature_class]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = compute(image, levels, roi, spacing, args, wanted)
    return {name: float(values[name]) for name in wanted}


def _roi(image, levels, roi, spacing):
    from .ibsi.roi import Roi

    return Roi(np.asarray(image, dtype=np.float64), roi, roi, tuple(spacing), levels, int(levels[roi].max()))


def _firstorder(image, levels, roi, spacing, args, wanted) -> dict:
    """IBSI intensity statistics and histogram (``stat_*``, ``ih_*``) under pyradiomics' names, plus Energy,
    TotalEnergy and RootMeanSquared of the intensities shifted by ``voxelArrayShift``, Kurtosis (m4 / m2^2, 0
    for a flat region as pyradiomics gives) and StandardDeviation."""
    from .ibsi.engine import family_module

    region = _roi(image, levels, roi, spacing)
    tags = {**family_module("statistics").compute(region), **family_module("histogram").compute(region, None)}
    bases = _ibsi_bases("firstorder")
    values = region.values()
    shifted = values + args.get("voxelArrayShift", 0)
    energy = float(np.sum(shifted ** 2))
    out = {name: tags[bases[name]] for name in wanted if name in bases}
    variance = tags["stat_var"]
    if "Entropy" in out:
        out["Entropy"] -= _KAPPA * np.unique(levels[roi]).size
    out.update(Energy=energy, TotalEnergy=energy * float(np.prod(spacing)),
               RootMeanSquared=math.sqrt(energy / values.size),
               Kurtosis=tags["stat_kurt"] + 3.0 if variance != 0 else 0.0, StandardDeviation=math.sqrt(variance))
    return out


def _weights(angles: np.ndarray, spacing, norm, kind: str) -> np.ndarray | None:
    """pyradiomics' direction weights of ``weightingNorm`` (None: no weighting, features averaged over
    directions). GLCM: exp(-||d||^2) of the offset in mm; GLRLM: ||d|| itself."""
    if norm is None:
        return None
    d = np.abs(angles) * np.asarray(spacing)[None, :]
    if norm == "no_weighting":
        return np.ones(len(angles))
    if norm == "infinity":
        length = d.max(axis=1)
        return np.exp(-length ** 2) if kind == "glcm" else length
    if norm == "euclidean":
        squared = np.sum(d ** 2, axis=1)
        return np.exp(-squared) if kind == "glcm" else np.sqrt(squared)
    if norm == "manhattan":
        length = d.sum(axis=1)
        return np.exp(-length ** 2) if kind == "glcm" else length
    return np.ones(len(angles))


def _cells(group, a, b, n_b, weights=None):
    """Non-zero cells (matrix, a, b, count) of the matrices counting each (group, a, b); with ``weights``
    (one per group) every count is weighted and all groups merged into one matrix."""
    if weights is not None:
        codes = a * n_b + b
        unique, inverse = np.unique(codes, return_inverse=True)
        counts = np.bincount(inverse.ravel(), weights=weights[group])
        return np.zeros(unique.size, dtype=np.int64), unique // n_b, unique % n_b, counts
    unique, counts = np.unique((group * (int(a.max(initial=0)) + 1) + a) * n_b + b, return_counts=True)
    n_a = int(a.max(initial=0)) + 1
    return unique // (n_a * n_b), (unique // n_b) % n_a, unique % n_b, counts.astype(np.float64)


def _average(per_matrix: dict, non_empty: np.ndarray, tags: dict, wanted) -> dict:
    """pyradiomics' nanmean over the matrices holding any count (``tags``: pyradiomics name -> base tag)."""
    out = {}
    for name in wanted:
        tag = tags.get(name)
        if tag is None:
            continue
        value = per_matrix[tag][non_empty]
        out[name] = float(np.nanmean(value)) if np.any(~np.isnan(value)) else math.nan
    return out


def _texture_index(levels, roi):
    """(grey levels present, index 0..n-1 of each ROI voxel's grey level, -1 outside)."""
    grey = np.unique(levels[roi])
    lut = np.full(int(grey.max()) + 1, -1, dtype=np.int64)
    lut[grey] = np.arange(grey.size)
    return grey, np.where(roi, lut[levels], -1)


def _glcm(image, levels, roi, spacing, args, wanted) -> dict:
    """pyradiomics' GLCM: one matrix per direction (:func:`pyradiomics_angles`, the distance of ``distances``),
    symmetric unless ``symmetricalGLCM: false``, features of each (the IBSI engine's formulas; Correlation 1
    and Imc1 0 where pyradiomics sets them for a matrix of one grey level) averaged over the directions with
    pairs, or of the weighted sum of the matrices with ``weightingNorm``. MCC: the IBSI engine's kernel."""
    from .ibsi.features import glcm
    from .ibsi.features.common import matrix_features
    from .ibsi.features.directions import shifted_pairs

    grey, index = _texture_index(levels, roi)
    n_g = int(grey.max())
    angles = pyradiomics_angles(index.shape, args.get("distances") or [1], False, args.get("force2D", False),
                                args.get("force2Ddimension", 0))
    symmetric = args.get("symmetricalGLCM", True) is not False
    numbers, first, second = [], [], []
    for number, offset in enumerate(angles):
        a, b = shifted_pairs(index, tuple(offset))
        valid = (a >= 0) & (b >= 0)
        a, b = a[valid], b[valid]
        numbers.append(np.full(a.size * (2 if symmetric else 1), number, dtype=np.int64))
        first += [a, b] if symmetric else [a]
        second += [b, a] if symmetric else [b]
    group = np.concatenate(numbers) if numbers else np.zeros(0, dtype=np.int64)
    a = np.concatenate(first) if first else np.zeros(0, dtype=np.int64)
    b = np.concatenate(second) if second else np.zeros(0, dtype=np.int64)
    weights = _weights(angles, spacing, args.get("weightingNorm"), "glcm")
    n_matrices = 1 if weights is not None else len(angles)
    matrix, ca, cb, counts = _cells(group, a, b, grey.size, weights)
    features = glcm.GlcmFeatures(matrix, grey[ca], grey[cb], counts, n_matrices, n_g)
    per_matrix = matrix_features(features, glcm.BASE_TAGS)
    non_empty = ~features.empty
    per_matrix["cm_corr"] = np.where(np.isnan(per_matrix["cm_corr"]) & non_empty, 1.0, per_matrix["cm_corr"])
    per_matrix["cm_info_corr1"] = np.where(np.isnan(per_matrix["cm_info_corr1"]) & non_empty, 0.0,
                                           per_matrix["cm_info_corr1"])
    for tag, groups in (("cm_joint_entr", features.m), ("cm_diff_entr", features.d_m), ("cm_sum_entr", features.s_m)):
        per_matrix[tag] = per_matrix[tag] - _KAPPA * np.bincount(groups, minlength=n_matrices)
    if "MCC" in wanted:
        per_matrix["MCC"] = _mcc_per_matrix(matrix, ca, cb, counts, n_matrices, grey.size, symmetric)
    names = {**_ibsi_bases("glcm"), "MCC": "MCC"}
    return _average(per_matrix, non_empty, names, wanted)


def _mcc_per_matrix(matrix, ca, cb, counts, n_matrices, n_levels, symmetric) -> np.ndarray:
    """pyradiomics' maximal correlation coefficient of every matrix (NaN for an empty one): sqrt of the second
    largest eigenvalue of Q_ij = sum_k p_ik p_jk / (p_x(i) p_y(k)); 1 when the ROI has one grey level."""
    out = np.full(n_matrices, np.nan)
    if symmetric:
        from .featuremap_kernels import _mcc

        ci, cj, cc = ca.astype(np.int64), cb.astype(np.int64), counts.astype(np.float64)
        px = np.empty(n_levels)
        scratch = (np.empty((n_levels, n_levels)), np.empty(n_levels, dtype=np.int64), np.empty(n_levels),
                   np.empty(n_levels))
        starts = np.searchsorted(matrix, np.arange(n_matrices + 1))
        for m in range(n_matrices):
            c0, c1 = int(starts[m]), int(starts[m + 1])
            if c1 > c0:
                px[:] = np.bincount(ci[c0:c1], weights=cc[c0:c1], minlength=n_levels)
                out[m] = _mcc(ci, cj, cc, c0, c1, float(cc[c0:c1].sum()), px, n_levels, n_levels, *scratch)
        return out
    for m in range(n_matrices):   # an asymmetric matrix: Q from the dense matrix, its eigenvalues by numpy
        sel = matrix == m
        if not sel.any():
            continue
        if n_levels < 2:
            out[m] = 1.0
            continue
        p = np.zeros((n_levels, n_levels))
        p[ca[sel], cb[sel]] = counts[sel]
        p /= p.sum()
        px, py = p.sum(axis=1), p.sum(axis=0)
        px, py = np.where(px > 0, px, 1.0), np.where(py > 0, py, 1.0)   # p is 0 in those rows / columns
        q = (p / px[:, None]) @ (p / py[None, :]).T
        eigenvalues = np.sort_complex(np.linalg.eigvals(q))
        out[m] = float(np.sqrt(eigenvalues[-2]).real)
    return out


def _glrlm(image, levels, roi, spacing, args, wanted) -> dict:
    """pyradiomics' GLRLM: one run length matrix per direction (distance 1; a direction along an axis of the
    box one voxel thick is left out, as pyradiomics does), the IBSI engine's formulas averaged over the
    directions, or of the weighted sum with ``weightingNorm``."""
    from .ibsi.features import glrlm
    from .ibsi.features.common import matrix_features

    grey, index = _texture_index(levels, roi)
    angles = pyradiomics_angles(index.shape, [1], False, args.get("force2D", False), args.get("force2Ddimension", 0))
    number, _, level, length = glrlm.all_runs(index, [tuple(d) for d in angles])
    weights = _weights(angles, spacing, args.get("weightingNorm"), "glrlm")
    n_matrices = 1 if weights is not None else len(angles)
    max_length = int(length.max(initial=0)) + 1
    matrix, cl, cr, counts = _cells(number, level, length, max_length, weights)
    features = glrlm.GlrlmFeatures(matrix, grey[cl], cr, counts, n_matrices)
    per_matrix = matrix_features(features, glrlm.BASE_TAGS)
    per_matrix["rlm_rl_entr"] = per_matrix["rlm_rl_entr"] - _KAPPA * np.bincount(features.m, minlength=n_matrices)
    if grey.size == 1:   # one grey level: 0 exactly, as pyradiomics' sum over the grey level marginal gives
        per_matrix["rlm_gl_var"] = np.where(features.empty, np.nan, 0.0)
    return _average(per_matrix, ~features.empty, _ibsi_bases("glrlm"), wanted)


def _evaluate(functions: dict, matrix, bases: dict, wanted, entropy: str | None = None) -> dict:
    """The IBSI engine's formulas on one matrix (``functions`` keyed by base name without prefix) under
    pyradiomics' names; ``entropy``: the base name of the entropy, corrected to pyradiomics' log2(p + eps)."""
    from .ibsi.features.common import evaluate

    values, _ = evaluate(functions, matrix)
    if entropy is not None:
        values[entropy] -= _KAPPA * matrix.count.size
    return {name: values[bases[name].split("_", 1)[1]] for name in wanted if name in bases}


def _in_plane(array, args):
    """``array`` with the axis ``force2Ddimension`` first (the IBSI engine's slices are along axis 0)."""
    return np.moveaxis(array, args.get("force2Ddimension", 0), 0)


def _glszm(image, levels, roi, spacing, args, wanted) -> dict:
    """pyradiomics' GLSZM: zones 26-connected, or 8-connected in-plane with ``force2D`` (all slices' zones in
    one matrix: the IBSI engine's 2.5D); the IBSI engine's formulas."""
    from .ibsi.features import glszm, zones

    labelled = np.where(roi, levels, 0)
    if args.get("force2D", False):
        labelled, mask = _in_plane(labelled, args), _in_plane(roi, args)
        z = zones.label_zones(labelled, True)
        matrix = zones.CountMatrix.merge(zones.count_matrices(z.level, z.size, z.slice, mask, True))
    else:
        z = zones.label_zones(labelled, False)
        matrix = zones.CountMatrix.from_pairs(z.level, z.size, int(roi.sum()))
    return _evaluate(glszm.FUNCTIONS, matrix, _ibsi_bases("glszm"), wanted, "zs_entr")


def _neighbour_sums(levels, roi, args):
    """For every voxel: the neighbours' grey levels (0 outside the ROI) along pyradiomics' bidirectional
    offsets of the distance of ``distances``, as a list of arrays."""
    angles = pyradiomics_angles(levels.shape, args.get("distances") or [1], True, args.get("force2D", False),
                                args.get("force2Ddimension", 0))
    labelled = np.where(roi, levels, 0)
    return labelled, [_shift(labelled, tuple(offset)) for offset in angles]


def _gldm(image, levels, roi, spacing, args, wanted) -> dict:
    """pyradiomics' GLDM: per ROI voxel, the neighbours (pyradiomics' offsets of the distance) in the ROI
    whose grey level differs by at most ``gldm_a``; the IBSI engine's NGLDM formulas on (grey level,
    dependence + 1)."""
    from .ibsi.features import ngldm, zones

    labelled, neighbours = _neighbour_sums(levels, roi, args)
    alpha = args.get("gldm_a", 0)
    dependence = np.zeros(levels.shape, dtype=np.int64)
    for neighbour in neighbours:
        dependence += (neighbour > 0) & (np.abs(neighbour - labelled) <= alpha)
    matrix = zones.CountMatrix.from_pairs(labelled[roi], dependence[roi] + 1, int(roi.sum()))
    return _evaluate(ngldm.FUNCTIONS, matrix, _ibsi_bases("gldm"), wanted, "dc_entr")


def _ngtdm(image, levels, roi, spacing, args, wanted) -> dict:
    """pyradiomics' NGTDM: s_i sums |i - A| over the ROI voxels of grey level i, A the mean grey level of the
    voxel's neighbours in the ROI (pyradiomics' offsets of the distance); n_i counts every ROI voxel of grey
    level i, a voxel without a neighbour in the ROI included (adding 0 to s_i), as pyradiomics' matrix does
    (IBSI leaves such voxels out). The IBSI engine's formulas, and pyradiomics' values where they are
    undefined for one grey level or no grey tone difference (Coarseness 10^6, Contrast, Busyness, Strength 0)."""
    from .ibsi.features import ngtdm

    labelled, neighbours = _neighbour_sums(levels, roi, args)
    total = np.zeros(levels.shape, dtype=np.float64)
    count = np.zeros(levels.shape, dtype=np.float64)
    for neighbour in neighbours:
        total += neighbour
        count += neighbour > 0
    valid = roi & (count > 0)
    size = int(labelled.max()) + 1
    difference = np.abs(labelled[valid] - total[valid] / count[valid])
    matrix = ngtdm.Ngtdm(np.bincount(labelled[roi], minlength=size).astype(np.float64),
                         np.bincount(labelled[valid], weights=difference, minlength=size))
    out = _evaluate(ngtdm.FUNCTIONS, matrix, _ibsi_bases("ngtdm"), wanted)
    if matrix.n_valid > 0:
        fallback = {"Coarseness": 1e6, "Contrast": 0.0, "Busyness": 0.0, "Strength": 0.0}
        out = {name: fallback.get(name, value) if math.isnan(value) else value for name, value in out.items()}
    return out
