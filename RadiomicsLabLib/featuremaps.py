"""Voxel-wise feature maps: every feature over a sliding cubic kernel, on the input image's grid.

``feature_maps(image, mask, features, radius=1, definition="ibsi")`` computes, for every voxel of the
mask (or of the whole image), the chosen features on the voxels of the region of interest inside the
cube of ``2 radius + 1`` voxels around it (one slice of it with ``in_plane=True``), and returns a
mapping from feature name to a SimpleITK image on the input grid (NaN outside the mask and where a
feature is undefined). Grey levels are discretised once over the whole region of interest, exactly as
for segment extraction, so a map's values are comparable with the segment's.

Two definitions:

- ``ibsi``: RadiomicsLab's IBSI engine. The image and mask are prepared by the engine's preprocessing
  (re-segmentation, rounding, optional IBSI chapter 2 filter; no resampling: maps live on the input grid)
  and discretisation; each kernel is a region of interest of its own: pairs, runs, zones and
  neighbourhoods stay inside the kernel box, the box edge counts as outside the ROI (GLDZM distances).
  The GLCM features are the formulas of the engine's
  :class:`~RadiomicsLabLib.ibsi.features.glcm.GlcmFeatures` compiled per kernel
  (:func:`~.featuremap_kernels.ibsi_glcm_maps`: ``_avg`` averages the features of the directions' matrices, ``_comb``
  takes the features of their sum); the GLRLM features are the engine's own formula class
  (:class:`~RadiomicsLabLib.ibsi.features.glrlm.GlrlmFeatures`) evaluated on every kernel's matrices at once; the
  GLSZM, GLDZM and NGLDM features are the same IBSI formulas as the GLRLM's on their count matrices (see
  :mod:`RadiomicsLabLib.ibsi.features.zones`), so they are evaluated by the same vectorised class. Intensity
  statistics, the intensity histogram and the NGTDM are compiled per-voxel formulas (:mod:`.featuremap_kernels`).
  Local intensity (family ``local_intensity``, ``ibsi`` only: pyradiomics has none): the engine's 1 cm^3 sphere means (every image voxel
  whose centre is within 6.2 mm, in or out of the ROI, always 3D) are computed once for the whole ROI, then each
  kernel takes the mean at its maximum-intensity ROI voxel (ties: the highest mean; ``loc_peak_loc``) and the
  highest mean over its ROI voxels (``loc_peak_glob``). Names are IBSI tags with the
  aggregation of the kernel's dimension: ``cm_contrast_3D_avg``, ``szm_sze_3D``, ``stat_mean``
  (``_2D_*`` for in-plane kernels). A map voxel equals the segment engine run on that voxel's kernel
  (``Testing/test_featuremaps.py`` checks it for random voxels of real images).
- ``pyradiomics``: pyradiomics' ``voxelBased=True`` mode (pyradiomics-bhklab 3.1): its kernel (the cube
  clipped to the image, intersected with the mask), its discretisation over the whole ROI
  (pyradiomics' ``imageoperations.binImage``, done by :func:`~RadiomicsLabLib.pyradiomics_native.pyradiomics_bins`
  without the pyradiomics package: bins aligned on multiples of ``binWidth``), its formulas with their
  ``eps`` inside logarithms and their values for degenerate kernels (GLCM Correlation 1 on flat kernels,
  NGTDM Coarseness 1e6, ...), NGTDM counting voxels without neighbours, GLRLM leaving out a direction along
  which no line of the kernel holds two ROI voxels. Names are pyradiomics' without the image type:
  ``glcm_Contrast``, ``firstorder_Mean``. Checked against pyradiomics' own voxel-based output on real crops,
  every voxel and every feature of firstorder, GLCM, GLRLM, GLSZM, GLDM and NGTDM (``Testing/test_featuremaps.py``).

Known pyradiomics behaviours that are documented here, not copied (the ``pyradiomics`` definition gives the
value pyradiomics' own definition intends):

- **MCC returns zeros** on some kernels: pyradiomics computes the eigenvalues of all kernels' Q matrices
  in one ``numpy.linalg.eigvals`` call; a kernel with a direction without any pair puts NaN into Q, the
  call raises, pyradiomics logs the failure and leaves the whole batch at ``initValue`` (0). Here MCC is
  averaged over the directions that have pairs, like every other GLCM feature; pyradiomics run one voxel
  per batch (``voxelBatch=1``, no direction left empty) gives the same values.
- **JointAverage is NaN** on some kernels: pyradiomics averages it with ``mean`` instead of ``nanmean``, so
  one direction without pairs makes it NaN. Here it is averaged over the directions with pairs (it then
  equals half of SumAverage, as it must for a symmetric GLCM, and pyradiomics' value with ``voxelBatch=1``).
- **Kurtosis is not excess kurtosis**: pyradiomics' ``firstorder_Kurtosis`` is m4 / m2^2 (3 for a normal
  distribution), IBSI's ``stat_kurt`` is m4 / m2^2 - 3. Each definition keeps its own.

pyradiomics returns its maps on the ROI's bounding box grown by the radius; here every map is on the input grid.

Speed and memory: the per-voxel matrices are built by compiled numba kernels, in parallel over blocks
of voxels, without a Python call per voxel; the GLCMs (both definitions, ROIs of at most
:data:`~.featuremap_kernels.SLIDING_MAX_LEVELS` grey levels) are kept up to date as the kernel slides along a row,
removing the pairs of the slab that leaves and adding those of the slab that enters, instead of being rebuilt
(first-order maps keep the kernel's sorted sample the same way); only the ROI's box grown by the kernel's reach
is read and converted (a small ROI in a whole CT costs no float64 copy of the CT); the voxels are processed in
chunks sized so the working memory stays within a budget, and the peak memory is estimated before any work
(:func:`estimate_memory`); a request over the available memory is refused with what to change. The
maps are held as one compact array (voxels x features) and each SimpleITK image is built when it is
read from the returned :class:`FeatureMaps`, so writing maps one by one never holds them all.
"""

import dataclasses
import difflib
import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .errors import RadiomicsLabError
from .limits import available_memory
from .extraction import ExtractionCancelled

DEFINITIONS = ("ibsi", "pyradiomics")

#: Kernel families of each definition, in output order.
IBSI_FAMILIES = ("local_intensity", "statistics", "histogram", "glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm")
PYRADIOMICS_FAMILIES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
#: Family names of the other style accepted as aliases.
_ALIASES = {"ibsi": {"firstorder": ("statistics", "histogram"), "gldm": ("ngldm",)},
            "pyradiomics": {"statistics": ("firstorder",), "histogram": ("firstorder",), "ngldm": ("gldm",)}}
_TEXTURE = {"glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm", "gldm"}

#: Working memory per chunk of voxels (bytes), the default budget.
WORKING_BUDGET = 256 * 2 ** 20
#: Most voxels per chunk, whatever the budget: the compiled families' per-chunk outputs (e.g. 50 GLCM columns) then
#: stay ~10 MB and are reused chunk after chunk, where one chunk of a whole ROI was a new ~50 MB array per family
#: whose first touch the OS pays page by page (STS_001 CT, 117k voxels, IBSI GLCM + first order: the first run in a
#: new process 0.2-0.5 s faster, warm runs no slower, peak memory -90 MB).
MAX_CHUNK_VOXELS = 32768
#: Bytes per matrix cell, and per matrix, while the IBSI formula classes evaluate a chunk (measured with
#: tracemalloc on brain1: about 205 per cell for the GLCM, 170 for the GLRLM; rounded up).
_BYTES_PER_CELL = 256
_BYTES_PER_MATRIX = 512
#: Bytes per voxel of the local intensity convolution's box (the ROI's box grown by the 1 cm^3 sphere, padded by it
#: again; measured with tracemalloc on real CT and MR at their own and at 1 and 0.5 mm spacing: at most 60; doubled).
_BYTES_PER_SPHERE_VOXEL = 128


class FeatureMapsCancelled(ExtractionCancelled):
    """The user cancelled a running feature map computation; nothing was returned or written."""


# --------------------------------------------------------------------------------------------
# Feature catalogue: output name -> (family, how to read it from the family's kernel output)
# --------------------------------------------------------------------------------------------

def _kernels():
    from . import featuremap_kernels

    return featuremap_kernels


@functools.cache
def _ibsi_catalogue(dimension: str) -> dict:
    """{IBSI tag: (family, key)} of every map feature for kernels of ``dimension`` ("3D" or "2D")."""
    from .ibsi.engine import family_module

    k = _kernels()
    stats = {"mean": "mean", "var": "variance", "skew": "skewness", "kurt": "excess_kurtosis", "median": "median",
             "min": "minimum", "p10": "p10", "p90": "p90", "max": "maximum", "iqr": "iqr", "range": "range",
             "mad": "mad", "rmad": "rmad", "medad": "medad", "cov": "cov", "qcod": "qcod", "energy": "energy",
             "rms": "rms"}
    sample = {name: i for i, name in enumerate(k.SAMPLE_STATS)}
    histogram_at = len(k.SAMPLE_STATS) + len(k.PYRADIOMICS_STATS)
    # the local intensity tags are the kernels' LOCAL_PEAKS (the same as the engine family's FEATURES, checked by
    # Testing/test_featuremaps.py): importing that family here would import scipy.signal (~1 s) for every map run
    catalogue = {tag: ("local_intensity", i) for i, tag in enumerate(k.LOCAL_PEAKS)}
    for tag in family_module("statistics").FEATURES:
        catalogue[tag] = ("statistics", sample[stats[tag.removeprefix("stat_")]])
    for tag in family_module("histogram").FEATURES:
        base = tag.removeprefix("ih_")
        if base in stats:
            catalogue[tag] = ("histogram", histogram_at + sample[stats[base]])
        else:
            catalogue[tag] = ("histogram", histogram_at + len(k.SAMPLE_STATS) + k.HISTOGRAM_STATS.index(base))
    for family in ("glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm"):
        for tag, info in family_module(family).FEATURES.items():
            if info.get("dimension") == dimension:
                catalogue[tag] = (family, tag)
    return catalogue


#: The pyradiomics GLRLM, GLSZM and GLDM feature computed by each shared count-matrix formula
#: (:data:`~RadiomicsLabLib.featuremap_kernels.COUNT_FORMULAS`); None where the class has no such feature.
_COUNT_NAMES = (
    ("small_emphasis", "ShortRunEmphasis", "SmallAreaEmphasis", "SmallDependenceEmphasis"),
    ("large_emphasis", "LongRunEmphasis", "LargeAreaEmphasis", "LargeDependenceEmphasis"),
    ("grey_nonuniformity", "GrayLevelNonUniformity", "GrayLevelNonUniformity", "GrayLevelNonUniformity"),
    ("grey_nonuniformity_norm", "GrayLevelNonUniformityNormalized", "GrayLevelNonUniformityNormalized", None),
    ("column_nonuniformity", "RunLengthNonUniformity", "SizeZoneNonUniformity", "DependenceNonUniformity"),
    ("column_nonuniformity_norm", "RunLengthNonUniformityNormalized", "SizeZoneNonUniformityNormalized",
     "DependenceNonUniformityNormalized"),
    ("percentage", "RunPercentage", "ZonePercentage", None),
    ("grey_variance", "GrayLevelVariance", "GrayLevelVariance", "GrayLevelVariance"),
    ("column_variance", "RunVariance", "ZoneVariance", "DependenceVariance"),
    ("entropy", "RunEntropy", "ZoneEntropy", "DependenceEntropy"),
    ("low_grey_emphasis", "LowGrayLevelRunEmphasis", "LowGrayLevelZoneEmphasis", "LowGrayLevelEmphasis"),
    ("high_grey_emphasis", "HighGrayLevelRunEmphasis", "HighGrayLevelZoneEmphasis", "HighGrayLevelEmphasis"),
    ("small_low_grey_emphasis", "ShortRunLowGrayLevelEmphasis", "SmallAreaLowGrayLevelEmphasis",
     "SmallDependenceLowGrayLevelEmphasis"),
    ("small_high_grey_emphasis", "ShortRunHighGrayLevelEmphasis", "SmallAreaHighGrayLevelEmphasis",
     "SmallDependenceHighGrayLevelEmphasis"),
    ("large_low_grey_emphasis", "LongRunLowGrayLevelEmphasis", "LargeAreaLowGrayLevelEmphasis",
     "LargeDependenceLowGrayLevelEmphasis"),
    ("large_high_grey_emphasis", "LongRunHighGrayLevelEmphasis", "LargeAreaHighGrayLevelEmphasis",
     "LargeDependenceHighGrayLevelEmphasis"),
)


@functools.cache
def _pyradiomics_catalogue() -> dict:
    """{``class_Feature``: (family, column)} of every non-deprecated pyradiomics voxel-based feature."""
    from .pyradiomics_native import feature_names

    k = _kernels()
    sample = {name: i for i, name in enumerate(k.SAMPLE_STATS)}
    extra = {name: len(k.SAMPLE_STATS) + i for i, name in enumerate(k.PYRADIOMICS_STATS)}
    first = {"10Percentile": sample["p10"], "90Percentile": sample["p90"], "Energy": extra["shifted_energy"],
             "Entropy": extra["entropy_eps"], "InterquartileRange": sample["iqr"], "Kurtosis": sample["kurtosis"],
             "Maximum": sample["maximum"], "Mean": sample["mean"], "MeanAbsoluteDeviation": sample["mad"],
             "Median": extra["nanmedian"], "Minimum": sample["minimum"], "Range": sample["range"],
             "RobustMeanAbsoluteDeviation": sample["rmad"], "RootMeanSquared": extra["shifted_rms"],
             "Skewness": sample["skewness"], "TotalEnergy": "TotalEnergy", "Uniformity": extra["uniformity"],
             "Variance": sample["variance"]}
    count = {name: i for i, name in enumerate(k.COUNT_FORMULAS)}
    runs, zones, dependence = ({name: count[formula] for formula, *names in _COUNT_NAMES if (name := names[c])}
                               for c in range(3))
    columns = {"firstorder": first, "glcm": {name: i for i, name in enumerate(k.PY_GLCM)}, "glrlm": runs,
               "glszm": zones, "gldm": dependence,
               "ngtdm": {n: i for i, n in enumerate(("Coarseness", "Contrast", "Busyness", "Complexity", "Strength"))}}
    catalogue = {}
    for family, column in columns.items():
        for name in sorted(feature_names(family)):   # pyradiomics' non-deprecated features (static catalogue)
            catalogue[f"{family}_{name}"] = (family, column[name])
    return catalogue


def catalogue(definition: str = "ibsi", in_plane: bool = False) -> dict:
    """{feature name: family} of every feature a map can be made of, in output order."""
    check_definition(definition)
    entries = _ibsi_catalogue("2D" if in_plane else "3D") if definition == "ibsi" else _pyradiomics_catalogue()
    families = IBSI_FAMILIES if definition == "ibsi" else PYRADIOMICS_FAMILIES
    return {name: family for f in families for name, (family, _) in entries.items() if family == f}


def check_definition(definition: str) -> str:
    if definition not in DEFINITIONS:
        close = difflib.get_close_matches(str(definition), DEFINITIONS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "use ibsi or pyradiomics."
        raise RadiomicsLabError(f"Unknown feature map definition '{definition}'; {hint}")
    return definition


def resolve_features(features, definition: str = "ibsi", in_plane: bool = False) -> list[str]:
    """The map feature names asked for: comma-separated text or a list of names in either style
    (``glcm_Contrast``, ``original_glcm_Contrast``, IBSI tags ``cm_contrast_3D_avg`` or base tags ``cm_contrast``),
    family names (``glcm``, ``firstorder``, ``statistics``, ...), ``texture`` or ``all``.

    An unknown name is an error suggesting the closest known one.
    """
    from .ibsi.names import IBSI_TO_PYRADIOMICS, PYRADIOMICS_TO_IBSI

    available = catalogue(definition, in_plane)
    families = IBSI_FAMILIES if definition == "ibsi" else PYRADIOMICS_FAMILIES
    dimension = "2D" if in_plane else "3D"
    tokens = [t.strip() for t in (features.split(",") if isinstance(features, str) else features or [])]
    tokens = [t for t in tokens if t]
    if not tokens:
        raise RadiomicsLabError(f"No feature chosen; give feature names or families ({', '.join(families)}), "
                                "e.g. glcm_Contrast,firstorder_Mean or glcm.")
    lower = {name.lower(): name for name in available}
    chosen = []
    for token in tokens:
        key = token.lower()
        group = _family_group(key, definition, families)
        if group:
            chosen += [n for n, family in available.items() if family in group]
            continue
        if key.startswith("original_"):
            key = key.removeprefix("original_")
        name = lower.get(key)
        if name is None and definition == "ibsi":
            tag = PYRADIOMICS_TO_IBSI.get(f"original_{_pyradiomics_case(token, available)}", "")
            name = tag.replace("_3D", f"_{dimension}") if tag else None
            name = name if name in available else None
            if name is None:   # a base tag: every aggregation of it
                base = [n for n in available if n.lower().startswith(key + "_") and n[len(key) + 1:].split("_")[0]
                        in (dimension, "2D", "3D")]
                if base:
                    chosen += base
                    continue
        if name is None and definition == "pyradiomics":
            py = IBSI_TO_PYRADIOMICS.get(token) or IBSI_TO_PYRADIOMICS.get(f"{token}_3D_avg") or \
                IBSI_TO_PYRADIOMICS.get(f"{token}_3D")
            name = py.removeprefix("original_") if py and py.removeprefix("original_") in available else None
        if name is None:
            raise RadiomicsLabError(_unknown_feature_message(token, definition, available, families))
        chosen.append(name)
    return list(dict.fromkeys(chosen))


def _family_group(key, definition, families):
    if key == "all":
        return set(families)
    if key == "texture":
        return set(families) & _TEXTURE
    if key in families:
        return {key}
    return set(_ALIASES[definition].get(key, ()))


def _pyradiomics_case(token: str, available) -> str:
    """``GLCM_contrast`` -> ``glcm_Contrast``: pyradiomics' spelling of a pyradiomics-style name, if it is one."""
    from .ibsi.names import PYRADIOMICS_TO_IBSI

    lowered = {name.removeprefix("original_").lower(): name.removeprefix("original_") for name in PYRADIOMICS_TO_IBSI}
    return lowered.get(token.lower().removeprefix("original_"), token)


def _unknown_feature_message(token, definition, available, families) -> str:
    from .ibsi.names import PYRADIOMICS_TO_IBSI

    candidates = list(available) + list(families) + ["all", "texture"]
    local = [name for name, family in catalogue("ibsi").items() if family == "local_intensity"]
    if definition == "pyradiomics" and token.lower() in {"local_intensity", *local}:
        return (f"'{token}' is an IBSI local intensity feature (family local_intensity: {', '.join(local)}), which "
                "pyradiomics does not have; make these maps with the ibsi definition (definition='ibsi', "
                "--definition ibsi).")
    if definition == "ibsi":
        if token.lower().removeprefix("original_") in {n.lower() for n in _pyradiomics_catalogue()}:
            return (f"'{token}' has no identical IBSI definition (e.g. pyradiomics' Kurtosis is not excess kurtosis); "
                    "use the pyradiomics definition (--definition pyradiomics) or an IBSI tag (see --list-features).")
        candidates += [name.removeprefix("original_") for name in PYRADIOMICS_TO_IBSI]
    close = difflib.get_close_matches(token, candidates, n=1, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(token.lower(), [c.lower() for c in candidates], n=1, cutoff=0.5)
        close = [next(c for c in candidates if c.lower() == close[0])] if close else []
    hint = f"did you mean '{close[0]}'?" if close else f"choose feature names or a family ({', '.join(families)})."
    return f"Unknown feature '{token}' for the {definition} definition; {hint}"


# --------------------------------------------------------------------------------------------
# Settings of each definition
# --------------------------------------------------------------------------------------------

#: pyradiomics settings the voxel-based maps use, and those that change nothing here.
_PYRADIOMICS_USED = {"binWidth", "binCount", "gldm_a", "voxelArrayShift", "force2D", "force2Ddimension", "distances",
                     "kernelRadius", "label", "maskedKernel", "symmetricalGLCM", "weightingNorm"}
_PYRADIOMICS_IGNORED = {"additionalInfo", "geometryTolerance", "correctMask", "minimumROIDimensions", "minimumROISize",
                        "preCrop", "padDistance", "label_channel", "initValue", "voxelBatch", "enableCExtensions"}


@dataclass(frozen=True)
class MapSettings:
    """Everything one map computation uses (resolved and checked)."""

    definition: str
    radius: int
    in_plane: bool
    ibsi: object = None                  # IbsiSettings for the ibsi definition
    pyradiomics: dict = field(default_factory=dict)   # the pyradiomics settings used
    label: int | None = None

    def effective(self) -> dict:
        """The settings as plain data, for the provenance."""
        out = {"definition": self.definition, "radius": self.radius, "in_plane": self.in_plane, "label": self.label}
        if self.ibsi is not None:
            out["ibsi"] = dataclasses.asdict(self.ibsi)
        else:
            out["pyradiomics"] = dict(self.pyradiomics)
        return out


def map_settings(definition: str = "ibsi", radius=1, in_plane=None, params=None, label=None, **settings) -> MapSettings:
    """Check and resolve the settings of a map computation.

    ``params``: a preset name, parameter file, dict or :class:`~RadiomicsLabLib.settings.ExtractionSettings`
    (for ``ibsi``: an ``ibsi:`` section or pyradiomics-style keys, as ``extract --engine ibsi`` reads them; for
    ``pyradiomics``: its ``setting`` section); ``settings``: single settings overriding them (``ibsi``:
    :class:`~RadiomicsLabLib.ibsi.config.IbsiSettings` fields such as ``bin_width``, ``discretisation``,
    ``resegment_range``, ``ngldm_coarseness``; ``pyradiomics``: ``binWidth``, ``binCount``, ``gldm_a``,
    ``voxelArrayShift``, ``force2D``).
    """
    check_definition(definition)
    radius = _check_radius(radius)
    if definition == "ibsi":
        return _ibsi_map_settings(radius, in_plane, params, label, settings)
    return _pyradiomics_map_settings(radius, in_plane, params, label, settings)


def _check_radius(radius) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer, float)) or radius != int(radius):
        raise RadiomicsLabError(f"The kernel radius must be a whole number of voxels, 1 or more (got {radius!r}).")
    if int(radius) < 1:
        raise RadiomicsLabError(f"The kernel radius must be 1 or more voxels (got {int(radius)}); radius 1 is a "
                                "3 x 3 x 3 kernel.")
    return int(radius)


def _ibsi_map_settings(radius, in_plane, params, label, overrides) -> MapSettings:
    from .ibsi.config import IbsiSettings
    from .ibsi.params import check_settings

    base = IbsiSettings()
    if params is not None:
        from .settings import load_settings

        base, _families = load_settings(params, engine="ibsi").ibsi()
    known = {f.name for f in dataclasses.fields(IbsiSettings)}
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known settings: {', '.join(sorted(known))}"
            raise RadiomicsLabError(f"Unknown IBSI setting '{key}' for feature maps; {hint}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    ibsi = check_settings(base.replaced(**values), "the feature map settings")
    if ibsi.new_spacing is not None:
        raise RadiomicsLabError("Feature maps are computed on the input image's grid, so resampling (new_spacing) "
                                "is not available; resample the image and mask first, or remove new_spacing.")
    if in_plane is None:
        in_plane = "3D" not in ibsi.dimensions
    dimension = "2D" if in_plane else "3D"
    return MapSettings("ibsi", radius, bool(in_plane), ibsi.replaced(dimensions=(dimension,)), label=label)


def _pyradiomics_map_settings(radius, in_plane, params, label, overrides) -> MapSettings:
    setting = {}
    if params is not None:
        from .settings import load_settings

        loaded = load_settings(params)
        if loaded.engine == "ibsi":
            raise RadiomicsLabError(f"{loaded.source} holds IBSI engine settings; make these maps with the ibsi "
                                    "definition (definition='ibsi', --definition ibsi) or give pyradiomics settings.")
        image_types = loaded.pyradiomics_params.get("imageType") or {"Original": {}}
        if set(image_types) != {"Original"}:
            raise RadiomicsLabError(f"Image types {', '.join(t for t in image_types if t != 'Original')} in "
                                    f"{loaded.source} are not available for feature maps; filter the image first.")
        setting.update(loaded.pyradiomics_params.get("setting") or {})
    setting.update(overrides)
    for key, value in setting.items():
        if key in _PYRADIOMICS_IGNORED:
            continue
        if key not in _PYRADIOMICS_USED:
            known = sorted(_PYRADIOMICS_USED - {"kernelRadius", "label"})
            close = difflib.get_close_matches(key, known, n=1)
            hint = (f"did you mean '{close[0]}'?" if close else
                    "feature maps use binWidth, binCount, gldm_a, voxelArrayShift and force2D; resample, normalise, "
                    "filter or re-segment the image before making maps.")
            raise RadiomicsLabError(f"pyradiomics setting '{key}' is not available for feature maps; {hint}")
    checks = {"distances": ([1],), "force2Ddimension": (0,), "maskedKernel": (True,), "symmetricalGLCM": (True,),
              "weightingNorm": (None,)}
    for key, allowed in checks.items():
        if key in setting and setting[key] not in allowed and list(np.atleast_1d(setting[key])) != allowed[0]:
            raise RadiomicsLabError(f"pyradiomics setting {key}: {setting[key]!r} is not available for feature maps "
                                    f"(only {allowed[0]!r}); remove it from the settings.")
    if "kernelRadius" in setting and int(setting["kernelRadius"]) != radius:
        raise RadiomicsLabError(f"The settings ask kernelRadius {setting['kernelRadius']} but the radius is {radius}; "
                                "give one radius (remove kernelRadius from the settings).")
    if "binWidth" in setting and not float(setting["binWidth"]) > 0:
        raise RadiomicsLabError(f"binWidth must be greater than zero (got {setting['binWidth']}).")
    if "binCount" in setting and not int(setting["binCount"]) >= 1:
        raise RadiomicsLabError(f"binCount must be 1 or more (got {setting['binCount']}).")
    if in_plane is None:
        in_plane = bool(setting.get("force2D", False))
    if label is None and "label" in setting:
        label = int(setting["label"])
    used = {k: v for k, v in setting.items() if k in _PYRADIOMICS_USED and k not in ("label", "kernelRadius")}
    if "binCount" not in used:
        used.setdefault("binWidth", 25)
    return MapSettings("pyradiomics", radius, bool(in_plane), pyradiomics=used, label=label)


# --------------------------------------------------------------------------------------------
# Inputs: the region of interest, its grey levels and the centres, cropped and padded
# --------------------------------------------------------------------------------------------

@dataclass
class _Prepared:
    """The arrays the kernels read (cropped to the centres' box plus the radius, zero-padded), and where the
    centres are in the full image."""

    image: np.ndarray          # float64 intensities
    levels: np.ndarray         # int64 grey levels, 0 outside the ROI (intensity mask)
    roi: np.ndarray            # uint8 morphological mask (GLDZM distances)
    centres: np.ndarray        # (n, 3) int64, in the padded crop
    flat: np.ndarray           # (n,) flat indices of the centres in the full (z, y, x) array
    shape: tuple               # full array shape (z, y, x)
    n_levels: int              # N_g (ibsi: the discretisation's number of levels; pyradiomics: max level)
    n_roi_levels: int          # number of distinct grey levels in the ROI
    voxel_volume: float
    notes: list = field(default_factory=list)
    means: np.ndarray | None = None   # float64 1 cm^3 sphere means at the ROI voxels (local intensity), else None


def _mask_array(image: sitk.Image, mask, label, resample_mask: bool = False) -> tuple[np.ndarray, int | None]:
    """The region of interest as a (z, y, x) boolean array, after the usual checks (grid, label, finite voxels);
    ``resample_mask``: a mask on another grid is resampled onto the image's (nearest neighbour), as extraction does."""
    from .validation import (check_finite_in_mask, check_label, check_mask_is_label_map, labels_present,
                             match_mask_to_image)

    if mask is None:
        return np.ones(sitk.GetArrayViewFromImage(image).shape, dtype=bool), None
    mask = match_mask_to_image(image, check_mask_is_label_map(mask), resample_mask)
    if label is None:
        present = labels_present(mask)
        if not present:
            raise RadiomicsLabError("The mask is empty: no voxel has a label. Draw or load the region of interest first, "
                                    "or make maps of the whole image (no mask).")
        if len(present) > 1:
            raise RadiomicsLabError(f"The mask has labels {', '.join(map(str, present))}; choose one (label=N, "
                                    "--label N) for the maps.")
        label = present[0]
    check_label(mask, int(label))
    check_finite_in_mask(image, mask, int(label))
    return sitk.GetArrayViewFromImage(mask) == int(label), int(label)


def _check_kernel_fits(shape, radius: int, in_plane: bool) -> None:
    width = 2 * radius + 1
    for axis, size in zip("zyx", shape):
        if axis == "z" and in_plane:
            continue
        if width > size:
            fix = f"use a radius of at most {(size - 1) // 2}" if size >= 3 else "use a larger image"
            if axis == "z" and not in_plane:
                fix += ", or in-plane kernels (in_plane=True, --in-plane)"
            raise RadiomicsLabError(f"The kernel (radius {radius}: {width} voxels wide) is larger than the image along "
                                    f"{axis} ({size} voxels); {fix}.")


def _mask_box(roi_mask: np.ndarray) -> tuple:
    """The slices of the mask's bounding box (one compiled pass, without listing the voxels); an empty mask is an
    error."""
    from .ibsi._preprocessing_kernels import bounding_box

    tight = bounding_box(roi_mask)
    if tight is None:
        raise RadiomicsLabError("The mask is empty: no voxel has the label. Draw or load the region of interest first.")
    return tight


def _crop(roi_mask: np.ndarray, radius: int, tight: tuple | None = None):
    """The slices of the centres' bounding box (``tight``, else :func:`_mask_box`) grown by ``radius`` (clipped) and
    the zero padding that restores the full margin at the image edge."""
    tight = _mask_box(roi_mask) if tight is None else tight
    box, pad = [], []
    for extent, size in zip(tight, roi_mask.shape):
        lo, hi = extent.start - radius, extent.stop + radius
        box.append(slice(max(lo, 0), min(hi, size)))
        pad.append((max(0, -lo), max(0, hi - size)))
    return tuple(box), pad


def _prepare(image: sitk.Image, roi_mask: np.ndarray, settings: MapSettings, local_means: bool = False) -> _Prepared:
    """Discretise the ROI as the definition does, then crop and pad everything the kernels read; ``local_means``:
    also the mean intensity in the 1 cm^3 sphere around every ROI voxel (IBSI local intensity).

    Only the ROI's box grown by the kernel's reach (and, for local intensity, the sphere's) is read and converted:
    a whole CT is never copied to float64 and int64 for a small ROI. The discretisation reads the ROI's voxels only,
    so the grey levels are those of the whole image."""
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
        roi_mask = roi_mask[np.newaxis]
    notes = []
    if settings.definition == "ibsi":
        image_array, levels, morph, n_levels, notes, grid_start = _ibsi_levels(image, roi_mask, settings, local_means)
    else:
        from .pyradiomics_native import pyradiomics_bins

        region, _ = _crop(roi_mask, settings.radius)
        grid_start = [r.start for r in region]
        morph = roi_mask[region]
        raw = sitk.GetArrayViewFromImage(image)[region]
        levels, _ = pyradiomics_bins(raw, morph, settings.pyradiomics.get("binWidth", 25),
                                     settings.pyradiomics.get("binCount"))   # 0 outside the ROI
        image_array = raw.astype(np.float64)
        n_levels = int(levels.max())
    present = np.unique(levels[levels > 0])
    box, pad = _crop(morph, settings.radius)

    def cut(array, dtype):
        return np.ascontiguousarray(np.pad(array[box].astype(dtype, copy=False), pad))

    starts = np.array([s.start for s in box]) - np.array([p[0] for p in pad])
    centres, flat = _centres(morph, starts, grid_start, roi_mask.shape)
    prepared = _Prepared(cut(image_array, np.float64), cut(levels, np.int64), cut(morph, np.uint8), centres, flat,
                         roi_mask.shape, n_levels, int(present.size), float(np.prod(image.GetSpacing())), notes)
    if local_means:
        prepared.means = _local_means(image_array, levels > 0, image, prepared.levels.shape, starts)
    return prepared


#: Bytes per ROI voxel that :func:`_centres` holds at its peak: the three index columns of ``np.nonzero`` (24), the
#: flat indices (8, made in place) and the centres (24); 32 of them are kept.
_CENTRE_BYTES_PER_VOXEL = 56


def _centres(morph: np.ndarray, starts, grid_start, shape) -> tuple[np.ndarray, np.ndarray]:
    """((n, 3) int64 positions of the voxels of ``morph`` (C order) in the padded crop that starts at ``starts``, their
    (n,) flat indices on the whole grid of ``shape``, where ``morph`` starts at ``grid_start``), made a column at a
    time: at most :data:`_CENTRE_BYTES_PER_VOXEL` bytes per voxel at once."""
    columns = np.nonzero(morph)
    flat = np.zeros(columns[0].size, dtype=np.int64)
    for axis, (column, start) in enumerate(zip(columns, grid_start)):   # C order: ((z) ny + y) nx + x
        flat *= shape[axis]
        flat += column
        flat += start
    centres = np.empty((flat.size, 3), dtype=np.int64)
    for axis in range(3):
        np.subtract(columns[axis], starts[axis], out=centres[:, axis])
    return centres, flat


def _local_means(image_array, intensity_mask, image: sitk.Image, shape, starts) -> np.ndarray:
    """The engine's 1 cm^3 sphere means (:class:`~RadiomicsLabLib.ibsi.features.local_intensity.LocalMeans`: every
    image voxel whose centre is within 6.2 mm, in or out of the ROI), computed once at every voxel of the intensity
    mask of the whole ROI and placed on the padded crop of ``shape`` that starts at ``starts`` (0 elsewhere)."""
    from .ibsi.features.local_intensity import LocalMeans

    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])   # (z, y, x), as the engine reads it
    means = np.zeros(shape)
    means[tuple(c - s for c, s in zip(np.nonzero(intensity_mask), starts))] = \
        LocalMeans(image_array, intensity_mask, spacing).means
    return means


def _ibsi_levels(image: sitk.Image, roi_mask: np.ndarray, settings: MapSettings, local_means: bool):
    """The IBSI engine's preprocessing (no resampling) and discretisation of the whole ROI, on the ROI's box grown
    by the kernel's reach and, for local intensity, by the 1 cm^3 sphere's radius (the whole grid where an IBSI 2
    filter needs it): (intensities, grey levels (0 outside the intensity mask), morphological mask, N_g, notes, the
    box's first voxel on the grid). The diagnostics are not computed: the maps do not report them."""
    from .ibsi.discretisation import discretise
    from .ibsi.features.local_intensity import RADIUS_MM
    from .ibsi.preprocessing import prepare_roi

    ibsi = settings.ibsi
    crop_mm = None
    if ibsi.image_filter is None:
        reach = (settings.radius + 0.5) * max(image.GetSpacing())   # >= radius voxels along every axis
        crop_mm = max(reach, RADIUS_MM) if local_means else reach
    mask = sitk.GetImageFromArray(roi_mask.view(np.uint8))
    mask.CopyInformation(image)
    roi, _diagnostics = prepare_roi(image, mask, ibsi.replaced(diagnostics=False), crop_mm)
    if ibsi.image_filter is not None:
        from .ibsi.filters import filtered_roi

        roi = filtered_roi(roi, ibsi.image_filter)
    roi = discretise(roi, ibsi)
    levels = np.where(roi.intensity_mask, roi.levels, 0)
    return roi.image, levels, roi.morphological_mask, int(roi.n_levels), list(roi.notes), list(roi.grid_start)


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------

def _n_directions(in_plane: bool) -> int:
    return 4 if in_plane else 13


def max_cells(family: str, radius: int, in_plane: bool) -> int:
    """Most non-zero matrix cells one kernel can have (IBSI definition, directions and their merge together).

    GLCM: every pair (v, v + d) inside the box gives at most two cells, and a box of widths w_z, w_y, w_x holds
    prod_i (w_i - |d_i|) pairs along d; the merged matrix has at most as many. GLRLM: each ROI voxel starts at most
    one run per direction; merged: grey levels x run lengths. Zone families: at most one cell per voxel.
    """
    w = 2 * radius + 1
    widths = (1 if in_plane else w, w, w)
    nk = int(np.prod(widths))
    offsets = _offsets(in_plane)
    if family == "glcm":
        pairs = int(sum(np.prod([n - abs(int(d)) for n, d in zip(widths, offset)]) for offset in offsets))
        return 2 * pairs + min(2 * pairs, nk * nk)
    if family == "glrlm":
        return len(offsets) * nk + nk * w
    return nk


def family_bytes_per_voxel(family: str, radius: int, in_plane: bool, definition: str) -> int:
    """Upper bound of the working memory one voxel of a chunk needs for ``family`` (bytes): for the IBSI texture
    families, :func:`max_cells` times the bytes a cell takes while the engine's formula classes run, plus their
    per-matrix arrays; the compiled-only families (the IBSI GLCM included) need only their output rows."""
    if definition == "ibsi" and family == "glcm":
        return 8 * 2 * 25 + 8 * 64   # avg and comb rows of the 25 features, and the chunk's output columns
    if definition == "ibsi" and family in ("glrlm", "glszm", "gldzm", "ngldm"):
        matrices = _n_directions(in_plane) + 1 if family in ("glcm", "glrlm") else 1
        return max_cells(family, radius, in_plane) * _BYTES_PER_CELL + matrices * _BYTES_PER_MATRIX
    return 8 * 64


def local_means_bytes(roi_mask: np.ndarray, spacing) -> int:
    """Working memory of the 1 cm^3 sphere means of the local intensity maps: the box of ``roi_mask`` grown by the
    sphere's half-size (clipped to the image, as the engine crops it), padded by the sphere for the convolution,
    :data:`_BYTES_PER_SPHERE_VOXEL` per voxel. ``spacing``: (z, y, x) mm."""
    from .ibsi.features.local_intensity import sphere_geometry

    kernel = sphere_geometry(tuple(float(s) for s in spacing)).kernel     # the engine's sphere, made once per spacing
    size = 1
    for coords, n, k in zip(np.nonzero(roi_mask), roi_mask.shape, kernel.shape):
        half = k // 2
        size *= min(int(coords.max()) + half + 1, n) - max(int(coords.min()) - half, 0) + k - 1
    return size * _BYTES_PER_SPHERE_VOXEL


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of a map computation, known before it starts (bytes)."""

    inputs: int          # cropped arrays the kernels read, and the full-size input copies
    values: int          # the maps as one array (voxels x features)
    working: int         # one chunk's matrices and formula temporaries
    one_map: int         # one SimpleITK map on the input grid (the maps are built one at a time)
    chunk_voxels: int
    n_voxels: int
    n_features: int
    box_map: int = 0     # one map over the mask's bounding box (FeatureMaps.box: a scene's map volume)

    @property
    def total(self) -> int:
        return self.inputs + self.values + self.working + 2 * self.one_map

    @property
    def all_maps(self) -> int:
        """Memory if every map were held over the mask's box at once (a scene's map volumes)."""
        return self.n_features * self.box_map

    def describe(self) -> str:
        return (f"Estimated peak memory of the computation {_size(self.total)} for {self.n_features} map(s) of "
                f"{self.n_voxels} voxels "
                f"(values {_size(self.values)}, working {_size(self.working)} in chunks of {self.chunk_voxels} voxels, "
                f"inputs {_size(self.inputs)}, {_size(self.one_map)} per map image).")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def estimate_memory(n_voxels: int, families: dict, radius: int, in_plane: bool, definition: str,
                    image_voxels: int, crop_voxels: int, dtype=np.float64, budget: int = WORKING_BUDGET,
                    local_means: int = 0, image_filter: dict | None = None,
                    box_voxels: int | None = None) -> MemoryEstimate:
    """Peak memory estimate. ``families``: family -> number of features of it requested; ``local_means``: the
    sphere means' working memory (:func:`local_means_bytes`) when local intensity maps are asked for;
    ``image_filter``: an IBSI 2 filter's configuration, for which the IBSI preprocessing keeps the whole grid, not only
    the ROI's box, and which needs its own working memory there
    (:func:`~RadiomicsLabLib.ibsi.filters.working_memory_per_voxel`);
    ``box_voxels``: the voxels of the mask's bounding box (default: the whole image).

    Of the whole image the preparation holds the ROI mask and the IBSI preprocessing's mask image (a byte each per
    voxel) and, for the IBSI definition, at most a float64 copy of the image (voxel types it does not read in place);
    the rest (intensities, grey levels, masks, 17 bytes per voxel) only on the ROI's box grown by the kernel
    (``crop_voxels``), or on the whole grid with ``image_filter``."""
    import numba

    per_voxel = max(family_bytes_per_voxel(f, radius, in_plane, definition) for f in families)
    chunk = int(max(64, min(n_voxels, budget // per_voxel, MAX_CHUNK_VOXELS)))
    n_features = sum(families.values())
    k = _kernels()
    scratch = numba.get_num_threads() * k.scratch_bytes(radius, in_plane, _n_directions(in_plane))
    if "glcm" in families:   # the GLCM matrices kept up to date as the kernel slides (at most SLIDING_MAX_LEVELS)
        scratch += numba.get_num_threads() * k.glcm_state_bytes(k.SLIDING_MAX_LEVELS, _n_directions(in_plane))
    working = chunk * per_voxel + chunk * 64 * 8 + scratch
    whole = 2 + (8 if definition == "ibsi" else 0)
    if image_filter is not None:
        from .ibsi.filters import working_memory_per_voxel

        whole += 8 + 8 + 1 + working_memory_per_voxel(image_filter)
    inputs = crop_voxels * (8 + 8 + 1) + image_voxels * whole + n_voxels * _CENTRE_BYTES_PER_VOXEL
    if "local_intensity" in families:
        inputs += crop_voxels * 8 + local_means
    values = n_voxels * n_features * 8
    one_map = image_voxels * np.dtype(dtype).itemsize
    box_map = (image_voxels if box_voxels is None else box_voxels) * np.dtype(dtype).itemsize
    return MemoryEstimate(inputs, values, working, one_map, chunk, n_voxels, n_features, box_map)


def check_memory(estimate: MemoryEstimate, limit: int | None = None, all_maps: bool = False) -> None:
    """Refuse a computation whose estimate exceeds ``limit`` (default: the available memory), saying what it needs
    and how to reduce it. ``all_maps``: every map is held at once over the mask's box (volume nodes of a scene)."""
    limit = available_memory() if limit is None else int(limit)
    needed = estimate.total + (estimate.all_maps if all_maps else 0)
    if needed <= limit:
        return
    per_feature = (estimate.values + (estimate.box_map * estimate.n_features if all_maps else 0)) \
        // max(estimate.n_features, 1)
    raise RadiomicsLabError(
        f"The feature maps need about {_size(needed)} but only {_size(limit)} is available "
        f"({estimate.n_features} map(s) of {estimate.n_voxels} voxels: {_size(per_feature)} per feature, "
        f"{_size(estimate.working)} working memory per chunk). Reduce it: choose fewer features, a smaller mask "
        f"(or a mask instead of the whole image), or a smaller radius.")


# --------------------------------------------------------------------------------------------
# The computation
# --------------------------------------------------------------------------------------------

class FeatureMaps(Mapping):
    """Feature name -> SimpleITK map on the input image's grid (a read-only mapping).

    The values are held once as :attr:`values` (mask voxels x features); ``maps[name]`` builds that map's
    image when it is read (NaN outside the mask, ``float64`` or the requested ``dtype``), so maps can be
    written or converted one at a time. :attr:`provenance` records software versions, settings, geometry and
    hashes; :meth:`summary` gives per-map statistics inside the mask. :attr:`reference` holds only the input
    image's geometry (:func:`geometry_only`): a result sent back from a worker process carries the maps' values,
    not the whole input image again.
    """

    def __init__(self, names, values, flat, shape, reference: sitk.Image, provenance: dict, dtype=np.float64,
                 fill_value=np.nan):
        self.names = list(names)
        self.values = values
        self.flat = flat
        self.shape = shape
        self.reference = geometry_only(reference)
        self.provenance = provenance
        self.dtype = np.dtype(dtype)
        self.fill_value = fill_value
        self._index = {name: i for i, name in enumerate(self.names)}

    def __getitem__(self, name) -> sitk.Image:
        array = self.fill(name, np.empty(int(np.prod(self.shape)), dtype=self.dtype))
        image = sitk.GetImageFromArray(array.reshape(self.shape if self.reference.GetDimension() == 3
                                                     else self.shape[1:]))
        image.SetOrigin(self.reference.GetOrigin())
        image.SetSpacing(self.reference.GetSpacing())
        image.SetDirection(self.reference.GetDirection())
        return image

    def fill(self, name, voxels: np.ndarray, box: bool = False) -> np.ndarray:
        """Write map ``name`` into ``voxels``, a flat array (x fastest) of the whole grid, or with ``box`` of the
        mask's bounding box (:attr:`box`): its values at the mask voxels, ``fill_value`` elsewhere. Returns
        ``voxels``."""
        voxels.fill(self.fill_value)
        voxels[self._box_flat if box else self.flat] = self.values[:, self._index[name]]
        return voxels

    @functools.cached_property
    def box(self) -> tuple:
        """The bounding box of the mask voxels on the (z, y, x) grid :attr:`shape`, as slices: the extent of the
        maps' defined values (pyradiomics' voxel-based maps cover the same box). The whole grid for no voxel."""
        if not len(self.flat):
            return tuple(slice(0, n) for n in self.shape)
        index = np.unravel_index(self.flat, self.shape)
        return tuple(slice(int(i.min()), int(i.max()) + 1) for i in index)

    @functools.cached_property
    def _box_flat(self) -> np.ndarray:
        """The mask voxels' flat indices within :attr:`box`."""
        index = np.unravel_index(self.flat, self.shape)
        return np.ravel_multi_index([i - s.start for i, s in zip(index, self.box)],
                                    [s.stop - s.start for s in self.box])

    def __iter__(self):
        return iter(self.names)

    def __len__(self):
        return len(self.names)

    def array(self, name) -> np.ndarray:
        """The values of one map at the mask voxels (in ``numpy.nonzero`` order of the mask)."""
        return self.values[:, self._index[name]]

    def summary(self, percentiles=(5, 25, 50, 75, 95)) -> list[dict]:
        """Per map, over the mask voxels: voxels, undefined (NaN) voxels, mean, standard deviation, minimum,
        the ``percentiles`` (linear interpolation) and maximum of the defined values."""
        return summarise(self.names, self.values, percentiles)


def geometry_only(image: sitk.Image) -> sitk.Image:
    """A one-voxel image with ``image``'s dimension, origin, spacing and direction: its geometry without its voxels
    (``TransformIndexToPhysicalPoint`` works for every index of the original grid)."""
    geometry = sitk.Image([1] * image.GetDimension(), sitk.sitkUInt8)
    geometry.SetOrigin(image.GetOrigin())
    geometry.SetSpacing(image.GetSpacing())
    geometry.SetDirection(image.GetDirection())
    return geometry


def summarise(names, values: np.ndarray, percentiles=(5, 25, 50, 75, 95)) -> list[dict]:
    """Summary rows of :meth:`FeatureMaps.summary` for ``values`` (voxels x features)."""
    rows = []
    for column, name in enumerate(names):
        v = values[:, column]
        defined = v[np.isfinite(v)]
        row = {"feature": name, "voxels": int(v.size), "undefined": int(v.size - defined.size)}
        if defined.size:
            stats = np.percentile(defined, percentiles)
            row.update(mean=float(defined.mean()), std=float(defined.std()), min=float(defined.min()),
                       **{f"p{p:g}": float(s) for p, s in zip(percentiles, stats)}, max=float(defined.max()))
        else:
            row.update(mean=math.nan, std=math.nan, min=math.nan, **{f"p{p:g}": math.nan for p in percentiles},
                       max=math.nan)
        rows.append(row)
    return rows


@dataclass
class MapPlan:
    """A checked map computation, ready to run: what was asked, the inputs and the memory estimate."""

    image: sitk.Image
    settings: MapSettings
    features: list
    families: dict
    prepared: _Prepared
    memory: MemoryEstimate
    dtype: object = np.float64
    fill_value: float = np.nan

    def describe(self) -> str:
        return (f"{len(self.features)} {self.settings.definition} feature map(s), radius {self.settings.radius} "
                f"({'in-plane' if self.settings.in_plane else '3D'} kernel), {self.memory.n_voxels} voxels. "
                + self.memory.describe())


def plan_feature_maps(image: sitk.Image, mask, features, radius=1, definition: str = "ibsi", *, label=None,
                      in_plane=None, params=None, dtype="float64", fill_value=np.nan, memory_limit=None,
                      working_memory=WORKING_BUDGET, resample_mask: bool = False, **settings) -> MapPlan:
    """Check every input and estimate the memory, before any map work (see :func:`feature_maps`)."""
    if not isinstance(image, sitk.Image):
        raise RadiomicsLabError("The image must be a SimpleITK image; read it with RadiomicsLabLib.imageio.read_image.")
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() not in (2, 3):
        raise RadiomicsLabError("Feature maps need a scalar 2D or 3D image.")
    if np.dtype(dtype) not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise RadiomicsLabError(f"The map voxel type must be float64 or float32 (got {dtype}).")
    resolved = map_settings(definition, radius, in_plane, params, label, **settings)
    if image.GetDimension() == 2 and not resolved.in_plane:
        resolved = dataclasses.replace(resolved, in_plane=True,
                                       ibsi=resolved.ibsi.replaced(dimensions=("2D",)) if resolved.ibsi else None)
    names = resolve_features(features, resolved.definition, resolved.in_plane)
    shape = sitk.GetArrayViewFromImage(image).shape
    _check_kernel_fits(shape if len(shape) == 3 else (1, *shape), resolved.radius, resolved.in_plane)
    roi_mask, used_label = _mask_array(image, mask, resolved.label, resample_mask)
    resolved = dataclasses.replace(resolved, label=used_label)
    families = {}
    available = catalogue(resolved.definition, resolved.in_plane)
    for name in names:
        families[available[name]] = families.get(available[name], 0) + 1
    n_voxels = int(np.count_nonzero(roi_mask))
    tight = _mask_box(roi_mask)
    box, _ = _crop(roi_mask, resolved.radius, tight)
    crop_voxels = int(np.prod([(s.stop - s.start) + 2 * resolved.radius for s in box]))
    spheres = 0
    if "local_intensity" in families:
        spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
        spheres = local_means_bytes(roi_mask, spacing) if len(shape) == 3 else \
            local_means_bytes(roi_mask[np.newaxis], (1.0, *spacing))
    memory = estimate_memory(n_voxels, families, resolved.radius, resolved.in_plane, resolved.definition,
                             int(np.prod(shape)), crop_voxels, dtype, working_memory, spheres,
                             image_filter=resolved.ibsi.image_filter if resolved.ibsi is not None else None,
                             box_voxels=int(np.prod([s.stop - s.start for s in tight])))
    check_memory(memory, memory_limit)
    prepared = _prepare(image, roi_mask, resolved, local_means="local_intensity" in families)
    return MapPlan(image, resolved, names, families, prepared, memory, np.dtype(dtype), fill_value)


def feature_maps(image: sitk.Image, mask, features, radius=1, definition: str = "ibsi", progress=None,
                 **settings) -> FeatureMaps:
    """Feature maps of ``image`` inside ``mask``: {feature name: SimpleITK image on the input grid}.

    ``mask``: a label map on the image grid (``label=N`` picks one label; a mask with one label needs none), or
    None for the whole image. ``features``: names or families (see :func:`resolve_features`), e.g.
    ``"glcm_Contrast,firstorder_Mean"`` or ``["glcm"]``. ``radius``: kernel radius in voxels (1: 3 x 3 x 3).
    ``definition``: ``"ibsi"`` or ``"pyradiomics"`` (see the module docstring). ``progress(done, total, message)``
    is called before the work (``done`` 0, the memory estimate as message) and after each chunk; returning
    False cancels (:class:`FeatureMapsCancelled`). ``settings``: ``in_plane=True`` for 2D kernels, ``params`` (a
    preset or parameter file), single settings of the definition (``bin_width=25``; pyradiomics ``binWidth=25``),
    ``dtype`` of the map images, ``fill_value`` outside the mask (NaN), ``memory_limit`` (bytes; default the
    available memory), ``working_memory`` (bytes per chunk), ``resample_mask=True`` to resample a mask on another
    grid onto the image's (nearest neighbour; without it such a mask is an error).

    Every input is checked before any work: unknown features (with the closest name), a radius below 1 or a
    kernel larger than the image, an empty mask and a memory estimate above the limit raise
    :class:`~RadiomicsLabLib.errors.RadiomicsLabError`.
    """
    plan = plan_feature_maps(image, mask, features, radius, definition, **settings)
    return run_plan(plan, progress)


def run_plan(plan: MapPlan, progress=None) -> FeatureMaps:
    """Compute a :class:`MapPlan` chunk by chunk (see :func:`feature_maps`)."""
    started = time.perf_counter()
    prepared, settings = plan.prepared, plan.settings
    n = prepared.centres.shape[0]
    chunk = plan.memory.chunk_voxels
    starts = list(range(0, n, chunk))
    total = len(starts) * len(plan.families)
    if progress is not None and progress(0, total, plan.describe()) is False:
        raise FeatureMapsCancelled("Feature maps cancelled before they started; nothing was computed.")
    available = catalogue(settings.definition, settings.in_plane)
    entries = _ibsi_catalogue("2D" if settings.in_plane else "3D") if settings.definition == "ibsi" \
        else _pyradiomics_catalogue()
    values = np.full((n, len(plan.features)), np.nan)
    done = 0
    for family in plan.families:
        wanted = [(c, name) for c, name in enumerate(plan.features) if available[name] == family]
        keys = [entries[name][1] for _, name in wanted]
        for start in starts:
            rows = slice(start, min(start + chunk, n))
            block = _family_chunk(family, keys, prepared, settings, prepared.centres[rows])
            values[rows, [c for c, _ in wanted]] = block
            done += 1
            if progress is not None and progress(done, total, f"{family}: {rows.stop} of {n} voxels") is False:
                raise FeatureMapsCancelled(f"Feature maps cancelled ({family}, {rows.stop} of {n} voxels); "
                                           "nothing was returned or written.")
    provenance = _provenance(plan, time.perf_counter() - started)
    return FeatureMaps(plan.features, values, prepared.flat, prepared.shape, plan.image, provenance, plan.dtype,
                       plan.fill_value)


def _blocks(n: int) -> np.ndarray:
    """Boundaries of the blocks of centres run in parallel (several per thread, for balance)."""
    import numba

    count = max(1, min(n, 8 * numba.get_num_threads()))
    return np.linspace(0, n, count + 1).round().astype(np.int64)


def _offsets(in_plane: bool, distance: int = 1) -> np.ndarray:
    from .ibsi.features.directions import directions

    return np.array(directions("2D" if in_plane else "3D", distance), dtype=np.int64).reshape(-1, 3)


def _neighbours(in_plane: bool, distance: int = 1) -> np.ndarray:
    from .ibsi.features.zones import neighbour_offsets

    return np.array(neighbour_offsets(distance, in_plane), dtype=np.int64).reshape(-1, 3)


def _steps(in_plane: bool) -> np.ndarray:
    """The 6 (3D) or 4 (in-plane) face neighbours: the steps of the GLDZM distance to the ROI edge."""
    steps = [(0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)] + ([] if in_plane else [(1, 0, 0), (-1, 0, 0)])
    return np.array(steps, dtype=np.int64)


def _family_chunk(family, keys, prepared: _Prepared, settings: MapSettings, centres) -> np.ndarray:
    """The requested columns (``keys``) of one family for one chunk of centres: (centres, len(keys))."""
    k = _kernels()
    bounds = _blocks(centres.shape[0])
    r, in_plane = settings.radius, settings.in_plane
    if family == "local_intensity":
        return k.local_intensity_maps(prepared.image, prepared.levels, prepared.means, centres, bounds, r,
                                      in_plane)[:, keys]
    if family in ("statistics", "histogram", "firstorder"):
        shift = float(settings.pyradiomics.get("voxelArrayShift", 0)) if settings.definition == "pyradiomics" else 0.0
        histogram_at = len(k.SAMPLE_STATS) + len(k.PYRADIOMICS_STATS)   # the grey levels' columns start here
        histogram = any(not isinstance(key, str) and key >= histogram_at for key in keys)
        out = k.first_order_maps(prepared.image, prepared.levels, centres, bounds, r, in_plane, shift,
                                 max(prepared.n_levels, 1), histogram)
        columns = []
        for key in keys:
            if key == "TotalEnergy":
                columns.append(out[:, len(k.SAMPLE_STATS)] * prepared.voxel_volume)
            else:
                columns.append(out[:, key])
        return np.stack(columns, axis=1)
    if settings.definition == "pyradiomics":
        return _pyradiomics_chunk(family, keys, prepared, settings, centres, bounds)
    return _ibsi_chunk(family, keys, prepared, settings, centres, bounds)


def _pyradiomics_chunk(family, keys, prepared, settings, centres, bounds) -> np.ndarray:
    k = _kernels()
    r, in_plane = settings.radius, settings.in_plane
    if family == "ngtdm":
        out = k.ngtdm_maps(prepared.levels, centres, bounds, r, in_plane, _neighbours(in_plane), True)
        return out[:, keys]
    kind = {"glcm": k.GLCM, "glrlm": k.GLRLM, "glszm": k.GLSZM, "gldm": k.NGLDM}[family]
    width = len(k.PY_GLCM) if family == "glcm" else len(k.COUNT_FORMULAS)
    want_mcc = family == "glcm" and k.PY_GLCM.index("MCC") in keys
    alpha = float(settings.pyradiomics.get("gldm_a", 0))
    out = k.pyradiomics_texture(kind, prepared.levels, centres, bounds, r, in_plane, _offsets(in_plane),
                                _neighbours(in_plane), alpha, float(max(prepared.n_levels, 1)),
                                prepared.n_roi_levels, want_mcc, width)
    return out[:, keys]


def _ibsi_chunk(family, keys, prepared, settings, centres, bounds) -> np.ndarray:
    """IBSI texture features of one chunk: the compiled kernels list every kernel's matrix cells, the engine's
    formula classes evaluate them all at once."""
    k = _kernels()
    ibsi = settings.ibsi
    r, in_plane = settings.radius, settings.in_plane
    n = centres.shape[0]
    if family == "ngtdm":
        out = k.ngtdm_maps(prepared.levels, centres, bounds, r, in_plane,
                           _neighbours(in_plane, ibsi.ngtdm_distance), False)
        bases = [key.split("_")[1] for key in keys]
        return out[:, [k.NGTDM_FEATURES.index(b) for b in bases]]
    if family == "glcm":
        return _ibsi_glcm_chunk(keys, prepared, settings, centres, bounds)
    kind = {"glcm": k.GLCM, "glrlm": k.GLRLM, "glszm": k.GLSZM, "gldzm": k.GLDZM, "ngldm": k.NGLDM}[family]
    offsets = _offsets(in_plane, ibsi.glcm_distance if family == "glcm" else 1)
    distance = ibsi.ngldm_distance if family == "ngldm" else 1
    neighbours = _neighbours(in_plane, distance)
    n_dirs = offsets.shape[0] if family in ("glcm", "glrlm") else 1
    cell_count, comb_count, voxels = (np.zeros(n, dtype=np.int64) for _ in range(3))
    empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0)
    args = (kind, prepared.levels, prepared.roi, centres, bounds, r, in_plane, offsets, neighbours, _steps(in_plane),
            float(ibsi.ngldm_coarseness))
    k.ibsi_cells(*args, empty_i, empty_i, True, cell_count, comb_count, voxels,
                 empty_i, empty_i, empty_i, empty_f, empty_i, empty_i, empty_i, empty_f)
    first = np.concatenate([[0], np.cumsum(cell_count)[:-1]]).astype(np.int64)
    first_comb = np.concatenate([[0], np.cumsum(comb_count)[:-1]]).astype(np.int64)
    cells = [np.empty(int(cell_count.sum()), dtype=np.int64) for _ in range(3)] + [np.empty(int(cell_count.sum()))]
    comb = [np.empty(int(comb_count.sum()), dtype=np.int64) for _ in range(3)] + [np.empty(int(comb_count.sum()))]
    k.ibsi_cells(*args, first, first_comb, False, cell_count, comb_count, voxels, *cells, *comb)
    suffix_of = {key: key.rsplit("_", 1)[1] for key in keys}
    if family in ("glcm", "glrlm"):
        per_direction = _texture_values(family, cells, n * n_dirs, prepared.n_levels)
        merged = _texture_values(family, comb, n, prepared.n_levels)
        columns = []
        for key in keys:
            base = key.rsplit("_", 2)[0]
            if suffix_of[key] == "avg":
                with np.errstate(all="ignore"), _quiet():
                    columns.append(np.nanmean(per_direction[base].reshape(n, n_dirs), axis=1))
            else:
                columns.append(merged[base])
        return np.stack(columns, axis=1)
    values = _zone_values(family, cells, n, voxels)
    return np.stack([values[key.rsplit("_", 1)[0]] for key in keys], axis=1)


def _ibsi_glcm_chunk(keys, prepared, settings, centres, bounds) -> np.ndarray:
    """IBSI GLCM features of one chunk, entirely compiled (:func:`~.featuremap_kernels.ibsi_glcm_maps`: the formulas
    of the engine's :class:`~RadiomicsLabLib.ibsi.features.glcm.GlcmFeatures` on every kernel's matrices)."""
    k = _kernels()
    suffixes = {key.rsplit("_", 1)[1] for key in keys}
    avg, comb = k.ibsi_glcm_maps(prepared.levels, centres, bounds, settings.radius, settings.in_plane,
                                 _offsets(settings.in_plane, settings.ibsi.glcm_distance), max(prepared.n_levels, 1),
                                 "avg" in suffixes, "comb" in suffixes)
    columns = []
    for key in keys:
        base, suffix = key.rsplit("_", 2)[0], key.rsplit("_", 1)[1]
        columns.append((avg if suffix == "avg" else comb)[:, k.IBSI_GLCM.index(base.removeprefix("cm_"))])
    return np.stack(columns, axis=1)


class _quiet:
    """Silence numpy's "Mean of empty slice" warning: a kernel without any pair is NaN, as intended."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def _texture_values(family, cells, n_matrices, n_levels) -> dict:
    """{base tag: value per matrix} from the engine's GLCM / GLRLM formula classes."""
    from .ibsi.features.common import matrix_features

    m, i, j, counts = cells
    if family == "glcm":
        from .ibsi.features.glcm import BASE_TAGS, GlcmFeatures

        features = GlcmFeatures(m, i, j, counts, n_matrices, n_levels)
    else:
        from .ibsi.features.glrlm import BASE_TAGS, GlrlmFeatures

        features = GlrlmFeatures(m, i, j, counts, n_matrices)
    return matrix_features(features, BASE_TAGS)


#: The GLRLM formula class's method for each shared zone formula of :mod:`RadiomicsLabLib.ibsi.features.zones`
#: (IBSI defines the GLSZM, GLDZM and NGLDM features with the GLRLM's formulas on their own count matrix).
_ZONE_METHODS = {"small_emphasis": "sre", "large_emphasis": "lre", "low_grey_level_emphasis": "lgre",
                 "high_grey_level_emphasis": "hgre", "small_low_grey_level_emphasis": "srlge",
                 "small_high_grey_level_emphasis": "srhge", "large_low_grey_level_emphasis": "lrlge",
                 "large_high_grey_level_emphasis": "lrhge", "grey_level_non_uniformity": "glnu",
                 "grey_level_non_uniformity_normalised": "glnu_norm", "column_non_uniformity": "rlnu",
                 "column_non_uniformity_normalised": "rlnu_norm", "grey_level_variance": "gl_var",
                 "column_variance": "rl_var", "entropy": "rl_entr"}


def _zone_values(family, cells, n, voxels) -> dict:
    """{base tag: value per kernel} of a zone family (GLSZM, GLDZM, NGLDM) from its count matrices' cells.

    Each feature of the family's ``SPECS`` is its zone formula (:mod:`~RadiomicsLabLib.ibsi.features.zones`)
    evaluated by the vectorised GLRLM class; the percentage is N_s / N_v with N_v the kernel's ROI voxels and the
    energy sum_ij p_ij^2.
    """
    from .ibsi.engine import family_module
    from .ibsi.features.glrlm import GlrlmFeatures

    module = family_module(family)
    m, i, j, counts = cells
    features = GlrlmFeatures(m, i, j, counts, n)
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for base, function, *_ in module.SPECS:
            name = function.__name__
            if name == "percentage":
                value = np.where(voxels > 0, features.total / np.maximum(voxels, 1), np.nan)
            elif name == "energy":
                value = features._msum(features.p ** 2)
            else:
                value = np.asarray(getattr(features, _ZONE_METHODS[name])(), dtype=np.float64)
            value = np.where(features.empty, np.nan, value)
            out[f"{module.PREFIX}_{base}"] = value
    return out


def _provenance(plan: MapPlan, seconds: float) -> dict:
    from .provenance import image_geometry, image_hash, software_versions

    import numba

    prepared = plan.prepared
    return {
        "kind": "feature_maps",
        "software": {**software_versions(), "numba": numba.__version__},
        "settings": plan.settings.effective(),
        "features": list(plan.features),
        "image": {**image_geometry(plan.image), "sha1": image_hash(plan.image)},
        "voxels": int(prepared.centres.shape[0]),
        "grey_levels": {"n_levels": prepared.n_levels, "present": prepared.n_roi_levels},
        "memory_estimate_bytes": plan.memory.total,
        "chunk_voxels": plan.memory.chunk_voxels,
        "seconds": round(seconds, 3),
        "notes": list(prepared.notes),
    }


# --------------------------------------------------------------------------------------------
# The files
# --------------------------------------------------------------------------------------------

#: The provenance and summary files :func:`write_feature_maps` writes beside ``<feature>.nrrd``.
MAPS_PROVENANCE_FILE = "maps.json"
MAPS_SUMMARY_FILE = "summary.csv"


def map_output_paths(folder, features) -> dict:
    """Every file :func:`write_feature_maps` writes into ``folder`` for ``features``: name -> path."""
    from pathlib import Path

    folder = Path(folder)
    names = [f"{name}.nrrd" for name in features] + [MAPS_SUMMARY_FILE, MAPS_PROVENANCE_FILE]
    return {name: folder / name for name in names}


def check_map_outputs(folder, features, inputs=()) -> dict:
    """Before any work: ``folder`` and every file of :func:`map_output_paths` writable, none of them one of
    ``inputs`` ({role: path} or (role, path) pairs); returns the paths."""
    from .fileio import check_output, check_outputs

    check_output(folder, inputs, "folder")
    outputs = map_output_paths(folder, features)
    check_outputs(outputs.values(), inputs)
    return outputs


def summary_csv_text(maps) -> str:
    """``summary.csv``: :meth:`FeatureMaps.summary`, numbers as their exact shortest text."""
    import csv
    import io

    from .results import format_value

    rows = maps.summary()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: v if isinstance(v, (str, int)) else format_value(v) for k, v in row.items()})
    return buffer.getvalue()


def write_feature_maps(maps, folder) -> dict:
    """Write every map as ``<feature>.nrrd`` (compressed), ``summary.csv`` and ``maps.json`` (provenance and file
    list) into ``folder``: the files of ``radiomicslab maps``, also written by
    :meth:`RadiomicsLabLib.mrml.featuremaps.FeatureMapLogic.save_results`; returns file name -> path.

    Each map's file holds the image's whole grid (NaN, or the fill value, outside the mask), as ``maps[name]``
    written by SimpleITK would, but is written from the mask voxels' values without the whole grid
    (:class:`~RadiomicsLabLib.nrrd.SparseGridWriter`), the maps on the process's threads
    (:func:`~RadiomicsLabLib.limits.compute_threads`).

    All files are first written to a temporary folder beside ``folder`` and then renamed into it, so a failure
    leaves no half-written file and no partial set (files already in ``folder`` with other names are kept).
    """
    import json
    import os
    import shutil
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from .limits import compute_threads
    from .nrrd import SparseGridWriter

    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as error:
        raise RadiomicsLabError(f"Cannot write '{folder}': {error.strerror}; choose another output folder.") from None
    try:
        names = [f"{name}.nrrd" for name in maps]
        writer = SparseGridWriter(maps.reference, maps.shape, maps.flat, maps.dtype, maps.fill_value)
        with ThreadPoolExecutor(compute_threads(), thread_name_prefix="radiomicslab-maps") as pool:   # zlib: no GIL
            for _ in pool.map(lambda name: writer.write(staging / f"{name}.nrrd", maps.array(name)), maps):
                pass
        (staging / MAPS_SUMMARY_FILE).write_text(summary_csv_text(maps), encoding="utf-8")
        record = {**maps.provenance, "files": {"maps": names, "summary": MAPS_SUMMARY_FILE}}
        (staging / MAPS_PROVENANCE_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        written = {}
        for name in names + [MAPS_SUMMARY_FILE, MAPS_PROVENANCE_FILE]:
            os.replace(staging / name, folder / name)
            written[name] = folder / name
        return written
    except (OSError, RuntimeError) as error:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[-1]
        raise RadiomicsLabError(f"Cannot write the maps to '{folder}': {reason}; choose another output folder.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
