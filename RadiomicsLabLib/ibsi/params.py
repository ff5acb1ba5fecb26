"""Parameter files for the IBSI engine: an ``ibsi:`` section, or pyradiomics-style keys mapped onto it.

An IBSI preset (``ibsi-A`` ...) holds ``engine: ibsi`` and an ``ibsi:`` mapping of
:class:`~RadiomicsLabLib.ibsi.config.IbsiSettings` fields. A plain pyradiomics parameter file run
with ``--engine ibsi`` is translated: ``binWidth`` -> FBS, ``binCount`` -> FBN,
``resampledPixelSpacing`` + ``interpolator`` -> resampling, ``resegmentRange`` /
``resegmentMode: sigma`` -> re-segmentation, ``force2D`` -> 2D aggregation, ``distances`` ->
texture distances, ``gldm_a`` -> NGLDM coarseness, ``additionalInfo`` -> diagnostics, ``featureClass`` -> families.
"""

import dataclasses
import difflib
import math

from ..errors import RadiomicsLabError
from .config import DIMENSIONS, DISCRETISATIONS, INTERPOLATIONS, IbsiSettings

#: pyradiomics feature class -> IBSI families.
PYRADIOMICS_CLASSES = {
    "shape": ("morphology",), "firstorder": ("statistics", "histogram", "ivh", "local_intensity"),
    "glcm": ("glcm",), "glrlm": ("glrlm",), "glszm": ("glszm", "gldzm"), "gldm": ("ngldm",), "ngtdm": ("ngtdm",),
}
_INTERPOLATORS = {"sitkNearestNeighbor": "nearest", "sitkLinear": "linear", "sitkBSpline": "cubic",
                  1: "nearest", 2: "linear", 3: "cubic"}
#: pyradiomics settings with no meaning for the IBSI engine's result (they change nothing it computes).
_IGNORED = {"label", "label_channel", "geometryTolerance", "correctMask", "minimumROIDimensions",
            "minimumROISize", "padDistance", "preCrop", "voxelArrayShift", "weightingNorm", "force2Ddimension"}


def ibsi_settings_from_params(params: dict, source: str) -> tuple[IbsiSettings, tuple]:
    """(IbsiSettings, families) from a parameter dictionary; every unusable key is an error naming it."""
    from .engine import FAMILIES

    if "ibsi" in params:
        section = params["ibsi"] or {}
        if not isinstance(section, dict):
            raise RadiomicsLabError(f"The 'ibsi' section of {source} must be a mapping of settings (e.g. bin_width: 25); "
                                    f"it holds a {type(section).__name__}.")
        section = dict(section)
        families = section.pop("families", FAMILIES)
        families = (families,) if isinstance(families, str) else families
        if not isinstance(families, (list, tuple)):
            raise RadiomicsLabError(f"Invalid value {families!r} for setting 'families' in section 'ibsi' of {source}: "
                                    "expected a list of family names, e.g. [glcm, glrlm].")
        families = tuple(families)
        return check_settings(_settings_from_section(section, source), source), _check_families(families, source)
    fields = {}
    setting = params.get("setting") or {}
    for key, value in setting.items():
        if key in _IGNORED:
            continue
        if key == "binWidth":
            fields.update(discretisation="FBS", bin_width=float(value))
        elif key == "binCount":
            fields.update(discretisation="FBN", bin_number=int(value))
        elif key == "resampledPixelSpacing":
            if value:  # pyradiomics: a 0 component keeps that axis
                fields["new_spacing"] = tuple(None if v == 0 else float(v) for v in value)
        elif key == "interpolator":
            if value not in _INTERPOLATORS:
                raise RadiomicsLabError(f"Interpolator '{value}' in {source} is not available in the IBSI engine; "
                                        f"use one of {', '.join(k for k in _INTERPOLATORS if isinstance(k, str))}.")
            fields["interpolation"] = _INTERPOLATORS[value]
        elif key == "resegmentRange":
            if value:
                fields["resegment_range"] = (float(value[0]), float(value[1]) if len(value) > 1 else None)
        elif key == "resegmentMode":
            fields["_mode"] = value
        elif key == "force2D":
            fields["dimensions"] = ("2D",) if value else ("3D",)
        elif key == "distances":
            if list(value) != [value[0]]:
                raise RadiomicsLabError(f"The IBSI engine uses one texture distance; {source} lists {value}.")
            fields.update(glcm_distance=int(value[0]), ngtdm_distance=int(value[0]), ngldm_distance=int(value[0]))
        elif key == "gldm_a":
            fields["ngldm_coarseness"] = int(value)
        elif key == "additionalInfo":
            fields["diagnostics"] = bool(value)
        else:
            raise RadiomicsLabError(f"Setting '{key}' in {source} has no equivalent in the IBSI engine; "
                                    "remove it or use --engine pyradiomics.")
    if "new_spacing" in fields:
        fields.setdefault("interpolation", "cubic")  # pyradiomics' default interpolator is sitkBSpline
    mode = fields.pop("_mode", "absolute")
    if mode == "sigma":
        low, high = fields.pop("resegment_range", (-3.0, 3.0))
        if (low, high) != (-3.0, 3.0):
            raise RadiomicsLabError(f"The IBSI engine filters outliers at mean +- 3 SD only; {source} asks {low}..{high} SD.")
        fields["resegment_outliers"] = True
    image_types = params.get("imageType") or {"Original": {}}
    if set(image_types) != {"Original"}:
        raise RadiomicsLabError(f"Image types {', '.join(t for t in image_types if t != 'Original')} in {source} are "
                                "pyradiomics filters; use --engine pyradiomics, or an IBSI filter in an 'ibsi:' section.")
    classes = params.get("featureClass") or {}
    families = tuple(f for name in classes for f in PYRADIOMICS_CLASSES.get(name, ())) or FAMILIES
    return check_settings(IbsiSettings(**fields), source), families


def _settings_from_section(section: dict, source: str) -> IbsiSettings:
    known = {f.name for f in dataclasses.fields(IbsiSettings)}
    for key in section:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(known))}"
            raise RadiomicsLabError(f"Unknown setting '{key}' in section 'ibsi' of {source}; {hint}")
    for key, value in section.items():
        _check_section_value(key, value, source)
    values = {k: (v,) if k == "dimensions" and isinstance(v, str) else tuple(v) if isinstance(v, list) else v
              for k, v in section.items()}
    return IbsiSettings(**values)


#: What each setting of an ``ibsi:`` section holds, for the message refusing a value of the wrong kind
#: (the ranges are checked by :func:`check_settings`); settings that may be null (None) are in _NULLABLE.
_KINDS = {"mask_threshold": "number", "bin_width": "number", "ivh_bin_width": "number",
          "bin_number": "whole", "ivh_bin_number": "whole", "glcm_distance": "whole", "ngtdm_distance": "whole",
          "ngldm_distance": "whole", "ngldm_coarseness": "whole", "round_intensities": "flag",
          "resegment_outliers": "flag", "diagnostics": "flag", "new_spacing": "numbers", "resegment_range": "pair",
          "interpolation": "text", "mask_interpolation": "text", "discretisation": "text", "ivh_discretisation": "text"}
_NULLABLE = {"bin_width", "bin_number", "ivh_bin_width", "ivh_bin_number", "new_spacing", "resegment_range",
             "image_filter"}
_EXPECTED = {"number": "a number", "whole": "a whole number", "flag": "true or false",
             "numbers": "a list of 3 numbers in mm (x, y, z; null keeps an axis)",
             "pair": "a list [lower, upper] (null for an open end)", "text": "a name"}


def _check_section_value(key: str, value, source: str) -> None:
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    kind = _KINDS.get(key)
    if kind is None or (value is None and key in _NULLABLE):
        return
    valid = {"number": lambda: number(value),
             "whole": lambda: number(value) and float(value).is_integer(),
             "flag": lambda: isinstance(value, bool),
             "numbers": lambda: isinstance(value, (list, tuple)) and all(v is None or number(v) for v in value),
             "pair": lambda: isinstance(value, (list, tuple)) and len(value) == 2
                             and all(v is None or number(v) for v in value),
             "text": lambda: isinstance(value, str)}[kind]()
    if not valid:
        raise RadiomicsLabError(f"Invalid value {value!r} for setting '{key}' in section 'ibsi' of {source}: "
                                f"expected {_EXPECTED[kind]}.")


def check_settings(settings: IbsiSettings, source: str = "the settings") -> IbsiSettings:
    """Refuse settings the engine cannot use, with a message naming the setting."""
    def fail(message):
        raise RadiomicsLabError(f"{message} (in {source}).")

    if not settings.dimensions or any(d not in DIMENSIONS for d in settings.dimensions):
        fail(f"dimensions must be some of {', '.join(DIMENSIONS)}; got {settings.dimensions}")
    for name in ("interpolation", "mask_interpolation"):
        if getattr(settings, name) not in INTERPOLATIONS:
            fail(f"Unknown {name} '{getattr(settings, name)}'; use {', '.join(INTERPOLATIONS)}")
    if settings.new_spacing is not None and any(s is not None and not s > 0 for s in settings.new_spacing):
        fail(f"new_spacing must be positive millimetres; got {settings.new_spacing}")
    if settings.discretisation not in DISCRETISATIONS or settings.ivh_discretisation not in DISCRETISATIONS:
        fail(f"discretisation must be one of {', '.join(DISCRETISATIONS)}")
    for mode, width, number, what in ((settings.discretisation, settings.bin_width, settings.bin_number, "bin"),
                                      (settings.ivh_discretisation, settings.ivh_bin_width, settings.ivh_bin_number, "IVH bin")):
        if mode == "FBS" and not (width is not None and width > 0):
            fail(f"The {what} width must be greater than zero; got {width}")
        if mode == "FBN" and not (number is not None and number >= 2):
            fail(f"The {what} number must be 2 or more; got {number}")
    if settings.resegment_range is not None:
        low, high = settings.resegment_range
        if low is not None and high is not None and not low < high:
            fail(f"The re-segmentation range is inverted or empty: [{low}, {high}]; give [lower, upper] with lower < upper")
    if not 0 < settings.mask_threshold <= 1 or math.isnan(settings.mask_threshold):
        fail(f"mask_threshold must be in (0, 1]; got {settings.mask_threshold}")
    for name in ("glcm_distance", "ngtdm_distance", "ngldm_distance"):
        if getattr(settings, name) < 1:
            fail(f"{name} must be 1 or more; got {getattr(settings, name)}")
    return settings


def _check_families(families: tuple, source: str) -> tuple:
    from .engine import FAMILIES

    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise RadiomicsLabError(f"Unknown IBSI families {', '.join(unknown)} in {source}; choose from {', '.join(FAMILIES)}.")
    return tuple(families)
