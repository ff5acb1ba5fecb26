"""RadiomicsLab features as a plugin of Slicer's Segment Statistics module.

Segment Statistics (``Modules/Scripted/SegmentStatistics`` in Slicer) asks each registered plugin
for ``name``, ``title``, ``keys``, ``defaultKeys``, a measurement info per key (name, title,
description, units, DICOM codes: ``SegmentStatisticsPluginBase.createMeasurementInfo``) and, per
segment, ``computeStatistics(segmentID)`` -> {key: value}, the nodes being the ``Segmentation`` and
``ScalarVolume`` node IDs of its parameter node.

:class:`SegmentStatisticsFeatures` is all of that without desktop Slicer: keys are pyradiomics
feature names of the original image (``original_shape_MeshVolume``), values come from the same
extraction path as :class:`~.extraction.ExtractionLogic` (so they equal RadiomicsLab's feature
tables and pyradiomics' ``RadiomicsFeatureExtractor``), and each segment is extracted once with
only the features asked for. Descriptions and units are the IBSI engine's
(:mod:`RadiomicsLabLib.ibsi.features`) for the features sharing an IBSI definition
(:mod:`RadiomicsLabLib.ibsi.names`). :func:`register_segment_statistics_plugin` wraps it in a
``SegmentStatisticsPluginBase`` subclass inside desktop Slicer.
"""

import functools
import inspect
import logging
import re

import slicer

from ..dependencies import missing_requirements
from ..errors import RadiomicsLabError
from ..extraction import extract_masks
from ..settings import ExtractionSettings, load_settings
from .extraction import ExtractionLogic

PLUGIN_CLASS_NAME = "RadiomicsLabSegmentStatisticsPlugin"  # prefix of its parameters: "<class>.<key>.enabled"
PLUGIN_NAME = "RadiomicsLab"
PLUGIN_TITLE = "RadiomicsLab features"

#: pyradiomics feature classes offered, in the order of the ``pyradiomics-default`` preset.
FAMILIES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
FAMILY_TITLES = {"shape": "Shape", "firstorder": "First order", "glcm": "GLCM", "glrlm": "GLRLM",
                 "glszm": "GLSZM", "gldm": "GLDM", "ngtdm": "NGTDM"}
#: Computed unless the user changes the selection: quick, and what a reader looks at first.
DEFAULT_KEYS = ("original_shape_MeshVolume", "original_shape_SurfaceArea", "original_shape_Sphericity",
                "original_shape_Maximum3DDiameter", "original_firstorder_Mean", "original_firstorder_Median",
                "original_firstorder_Entropy")

#: pyradiomics features without an IBSI twin in the engine's registry: (title, unit, description),
#: from pyradiomics' documentation of ``get<Name>FeatureValue``.
_NOT_IN_ENGINE = {
    "original_shape_Maximum2DDiameterSlice": (
        "Maximum 2D diameter (slice)", "mm",
        "Largest distance between surface mesh vertices in the row-column (usually axial) plane."),
    "original_shape_Maximum2DDiameterColumn": (
        "Maximum 2D diameter (column)", "mm",
        "Largest distance between surface mesh vertices in the row-slice (usually coronal) plane."),
    "original_shape_Maximum2DDiameterRow": (
        "Maximum 2D diameter (row)", "mm",
        "Largest distance between surface mesh vertices in the column-slice (usually sagittal) plane."),
    "original_firstorder_Kurtosis": (
        "Kurtosis", "",
        "Fourth standardised moment mu_4 / sigma^4 of the intensities (IBSI's excess kurtosis stat_kurt is this - 3)."),
    "original_firstorder_TotalEnergy": (
        "Total energy", "intensity^2 mm^3",
        "Energy times the voxel volume: V_voxel sum_i (X_i + c)^2, c = voxelArrayShift (not an IBSI feature)."),
    "original_glcm_MCC": (
        "Maximal correlation coefficient", "",
        "sqrt of the second largest eigenvalue of Q(i, j) = sum_k p(i, k) p(j, k) / (p_x(i) p_y(k)); 1 for one grey level."),
}

#: Engine unit -> (displayed units, UCUM code, UCUM meaning), the units Slicer's own plugins use
#: (``LabelmapSegmentStatisticsPlugin``: "mm3" cubic millimeter, "mm2" square millimeter).
_UNITS = {
    "": ("", "1", "no units"),  # dimensionless; texture features are on discretised grey levels (IBSI)
    "mm": ("mm", "mm", "millimeter"),
    "mm^2": ("mm2", "mm2", "square millimeter"),
    "mm^3": ("mm3", "mm3", "cubic millimeter"),
    "mm^-1": ("/mm", "/mm", "per millimeter"),
    "bits": ("bit", "bit", "bit"),
}
#: Intensity unit when the volume declares none (MR and other uncalibrated images).
_ARBITRARY = ("[arb'U]", "UCUM", "arbitrary unit")
#: Quantity (and measurement method) codes, as Slicer's Labelmap / Closed surface plugins give them.
_QUANTITY = {
    "original_shape_MeshVolume": (("118565006", "SCT", "Volume"), None),
    "original_shape_VoxelVolume": (("118565006", "SCT", "Volume"), ("126030", "DCM", "Sum of segmented voxel volumes")),
    "original_shape_SurfaceArea": (("000247", "99CHEMINF", "Surface area"), None),
}
#: Derivation codes of intensity statistics, as Slicer's ScalarVolumeSegmentStatisticsPlugin gives them.
_DERIVATION = {
    "original_firstorder_Minimum": ("255605001", "SCT", "Minimum"),
    "original_firstorder_Maximum": ("56851009", "SCT", "Maximum"),
    "original_firstorder_Mean": ("373098007", "SCT", "Mean"),
    "original_firstorder_Median": ("373099004", "SCT", "Median"),
    "original_firstorder_10Percentile": ("371890005", "SCT", "Tenth percentile"),
    "original_firstorder_90Percentile": ("371887004", "SCT", "Ninetieth percentile"),
}


@functools.cache
def feature_keys() -> tuple[str, ...]:
    """Every non-deprecated pyradiomics feature of :data:`FAMILIES` on the original image, family by family
    (RadiomicsLab's static catalogue of pyradiomics' features: no pyradiomics package needed)."""
    from ..pyradiomics_native import feature_names

    return tuple(f"original_{family}_{name}" for family in FAMILIES for name in feature_names(family))


def feature_description(key: str) -> tuple[str, str, str]:
    """(title, engine unit, description) of a pyradiomics feature key; the IBSI tag closes the description."""
    from ..ibsi.engine import feature_registry
    from ..ibsi.names import ibsi_tag_of_pyradiomics

    family = key.split("_")[1]
    tag = ibsi_tag_of_pyradiomics(key)
    if tag:
        info = feature_registry()[tag]
        title, unit, description = info["name"], info["unit"], f"{info['description']} IBSI: {tag}."
    else:
        title, unit, description = _NOT_IN_ENGINE[key]
    return f"{FAMILY_TITLES[family]}: {title}", unit, description


def _coded(code) -> str:
    """A (value, scheme, meaning) triple as Slicer's coded-entry string (``createCodedEntry(..., True)``)."""
    entry = slicer.vtkCodedEntry()
    entry.SetValueSchemeMeaning(*code)
    return entry.GetAsString()


def _intensity_unit(volume_node):
    """(UCUM-like code, scheme, meaning) of the volume's voxel values (arbitrary units when it declares none)."""
    units = volume_node.GetVoxelValueUnits() if volume_node is not None else None
    if units is None or not (units.GetCodeValue() or units.GetCodeMeaning()):
        return _ARBITRARY
    return units.GetCodeValue(), units.GetCodingSchemeDesignator(), units.GetCodeMeaning() or units.GetCodeValue()


def _units(unit: str, volume_node) -> tuple[str, str | None]:
    """(displayed units, DICOM units code string or None) of an engine unit, intensity resolved on the volume.

    ``intensity`` is the volume's voxel value units (Hounsfield unit, ...); a power of it gets a UCUM
    code only when the volume's unit is one UCUM atom (UCUM exponents apply to atoms, ``[hnsf'U]2``).
    """
    if unit in _UNITS:
        display, code, meaning = _UNITS[unit]
        return display, _coded((code, "UCUM", meaning))
    base, _, rest = unit.partition(" ")  # "intensity", "intensity^2", "intensity^2 mm^3"
    if not base.startswith("intensity"):
        raise KeyError(f"no units defined for the engine unit '{unit}'")
    code, scheme, meaning = _intensity_unit(volume_node)
    power = base.removeprefix("intensity").removeprefix("^")
    if not power and not rest:
        return meaning, _coded((code, scheme, meaning))
    display = f"{meaning}^{power}" + (f" {_UNITS[rest][0]}" if rest else "")
    atom = scheme == "UCUM" and re.fullmatch(r"\[[^\]]+\]|[A-Za-z%]+", code)
    if not atom:
        return display, None
    ucum = f"{code}{power}" + (f".{_UNITS[rest][1]}" if rest else "")
    return display, _coded((ucum, "UCUM", display))


class SegmentStatisticsFeatures(ExtractionLogic):
    """RadiomicsLab features the way Segment Statistics wants them, headless.

    >>> statistics = SegmentStatisticsFeatures()
    >>> statistics.measurement_info("original_shape_MeshVolume")["units"]
    'mm3'
    >>> statistics.compute(segmentation, volume, "Label_1", ["original_firstorder_Mean"])  # {key: value}

    ``settings``: a pyradiomics-style preset, parameter file or dict (default ``pyradiomics-default``), run on
    the pyradiomics package where the tested one is installed, else on the native engine (pyradiomics' features);
    its ``imageType`` and ``featureClass`` are replaced by the original image and the keys asked for.
    """

    def __init__(self, scene=None, settings=None):
        super().__init__(scene)
        self.settings = load_settings(settings)
        if self.settings.engine not in ("pyradiomics", "native"):
            raise RadiomicsLabError(
                f"Segment Statistics keys are pyradiomics feature names, but {self.settings.source} uses the "
                f"{self.settings.engine} engine; choose pyradiomics settings (e.g. the pyradiomics-default preset).")
        self.keys = list(feature_keys())
        self.default_keys = list(DEFAULT_KEYS)

    def measurement_info(self, key: str, volume_node=None) -> dict:
        """The arguments of ``SegmentStatisticsPluginBase.createMeasurementInfo`` for ``key``.

        ``name`` is the pyradiomics key (machine-readable column name), ``title`` the family and
        feature name, ``units`` what Slicer shows (intensity features: the units of ``volume_node``,
        "arbitrary unit" when it declares none; empty for dimensionless) and ``unitsDicomCode`` their
        UCUM code (``1`` for dimensionless), with Slicer's quantity and derivation codes where it has them.
        """
        self._check_keys([key])
        title, unit, description = feature_description(key)
        units, units_code = _units(unit, volume_node)
        info = {"name": key, "title": title, "description": description, "units": units, "unitsDicomCode": units_code}
        quantity, method = _QUANTITY.get(key, (None, None))
        if key in _DERIVATION:
            info["derivationDicomCode"] = _coded(_DERIVATION[key])
            voxel_quantity = volume_node.GetVoxelValueQuantity() if volume_node is not None else None
            if voxel_quantity is not None:
                info["quantityDicomCode"] = voxel_quantity.GetAsString()
        if quantity:
            info["quantityDicomCode"] = _coded(quantity)
        if method:
            info["measurementMethodDicomCode"] = _coded(method)
        return info

    def settings_for(self, keys) -> ExtractionSettings:
        """The settings extracting exactly ``keys``: the original image, only their classes and features."""
        self._check_keys(keys)
        classes = {}
        for key in keys:
            _, family, feature = key.split("_", 2)
            classes.setdefault(family, []).append(feature)
        params = {**self.settings.params, "imageType": {"Original": {}}, "featureClass": classes}
        return ExtractionSettings(f"{self.settings.source} (Segment Statistics keys)", params, self.settings.engine)

    def compute(self, segmentation_node, volume_node, segment_id: str, keys=None) -> dict[str, float]:
        """{key: value} of one segment (ID or name) on ``volume_node``; ``keys`` default to the default keys.

        One pyradiomics run with only the features asked for; the values are those of
        :meth:`ExtractionLogic.extract` with the same settings.
        """
        keys = list(self.default_keys if keys is None else keys)
        if not keys:
            return {}
        settings = self.settings_for(keys)
        image, segment_masks = self.segment_masks(volume_node, segmentation_node, [segment_id], require_voxels=True)
        values = extract_masks(image, segment_masks, settings).as_dict(segment_masks[0][0])
        return {key: values[key] for key in keys}

    def compute_for_parameter_node(self, parameter_node, segment_id: str, keys) -> dict[str, float]:
        """:meth:`compute` on the nodes Segment Statistics names in its parameter node (``Segmentation``, ``ScalarVolume``)."""
        segmentation = self.scene.GetNodeByID(parameter_node.GetParameter("Segmentation"))
        volume = self.scene.GetNodeByID(parameter_node.GetParameter("ScalarVolume"))
        if volume is None:
            raise RadiomicsLabError(f"{PLUGIN_TITLE} need the image: choose a scalar volume in Segment Statistics.")
        return self.compute(segmentation, volume, segment_id, keys)

    def _check_keys(self, keys) -> None:
        unknown = [str(k) for k in keys if k not in self.keys]
        if unknown:
            raise RadiomicsLabError(
                f"Unknown Segment Statistics key(s) {', '.join(unknown)}; keys are pyradiomics feature names of "
                f"the original image, e.g. {', '.join(self.keys[:3])} ({len(self.keys)} in all).")


def register_segment_statistics_plugin() -> bool:
    """Register the RadiomicsLab plugin with desktop Slicer's Segment Statistics (once); False, logged, when it cannot.

    The plugin needs RadiomicsLab's Python packages (:func:`~RadiomicsLabLib.dependencies.missing_requirements`): at
    Slicer's startup they may not be installed yet, which is logged in one line (no traceback); RadiomicsLab.py's
    ``ensureDependencies()`` calls this again once it has installed them.
    """
    try:
        from SegmentStatistics import SegmentStatisticsLogic
        from SegmentStatisticsPlugins import SegmentStatisticsPluginBase
    except ImportError as error:
        logging.warning(f"{PLUGIN_TITLE} are not offered in Segment Statistics: that module is not available ({error}).")
        return False
    if any(plugin.__name__ == PLUGIN_CLASS_NAME for plugin in SegmentStatisticsLogic.registeredPlugins):
        return True
    missing = missing_requirements()
    if missing:
        logging.info(f"{PLUGIN_TITLE} will be offered in Segment Statistics once RadiomicsLab's Python packages are "
                     f"installed (missing: {', '.join(missing)}): open the RadiomicsLab module and run a workflow.")
        return False
    try:
        SegmentStatisticsLogic.registerPlugin(_plugin_class(SegmentStatisticsPluginBase)())
    except Exception:  # a startup hook: never break the RadiomicsLab module
        logging.exception(f"{PLUGIN_TITLE} could not be registered with Segment Statistics.")
        return False
    return True


def _plugin_class(base):
    """The ``SegmentStatisticsPluginBase`` subclass delegating to :class:`SegmentStatisticsFeatures`."""
    title_supported = "title" in inspect.signature(base.createMeasurementInfo).parameters  # Slicer >= 5.6

    class RadiomicsLabSegmentStatisticsPlugin(base):
        """RadiomicsLab (pyradiomics) features of each segment on the selected scalar volume."""

        def __init__(self):
            super().__init__()
            self.features = SegmentStatisticsFeatures(slicer.mrmlScene)
            self.name = PLUGIN_NAME
            self.title = PLUGIN_TITLE
            self.keys = list(self.features.keys)
            self.defaultKeys = list(self.features.default_keys)

        def computeStatistics(self, segmentID):
            requested = self.getRequestedKeys()
            if not requested:
                return {}
            try:
                return self.features.compute_for_parameter_node(self.getParameterNode(), segmentID, requested)
            except RadiomicsLabError as error:  # like Slicer's own plugins: no values, the other plugins go on
                logging.warning(f"{PLUGIN_TITLE}, segment {segmentID}: {error}")
                return {}

        def getMeasurementInfo(self, key):
            if key not in self.keys:
                return None
            parameters = self.getParameterNode()
            volume = slicer.mrmlScene.GetNodeByID(parameters.GetParameter("ScalarVolume")) if parameters else None
            info = self.features.measurement_info(key, volume)
            if not title_supported:
                info.pop("title")
            return self.createMeasurementInfo(**info)

    return RadiomicsLabSegmentStatisticsPlugin
