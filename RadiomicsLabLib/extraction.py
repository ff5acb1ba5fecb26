"""Per-segment feature extraction (pyradiomics, the native engine computing pyradiomics' features without it, or
the IBSI engine), after checking every input up front."""

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import Cancelled, RadiomicsLabError
from .provenance import build_provenance
from .settings import load_settings
from .validation import (
    check_finite_in_mask,
    check_label,
    check_mask_is_label_map,
    labels_present,
    match_mask_to_image,
    segment_name,
)

#: Columns of the long result format (CSV and MRML table alike).
COLUMNS = ("segment", "image_type", "feature_class", "feature", "ibsi_tag", "value")


@dataclass(frozen=True)
class FeatureValue:
    """One feature of one segment.

    ``feature`` is the engine's name: pyradiomics' full name (``original_glcm_Contrast``) or, for
    the IBSI engine, the IBSI tag (``cm_contrast_3D_avg``); ``ibsi_tag`` is the IBSI tag of the
    same definition where there is one (empty otherwise).
    """

    segment: str
    image_type: str
    feature_class: str
    feature: str
    ibsi_tag: str
    value: float

    def row(self) -> tuple:
        return (self.segment, self.image_type, self.feature_class, self.feature, self.ibsi_tag, self.value)


@dataclass
class ExtractionResult:
    """All feature values of a run, in segment order, and the provenance that reproduces them."""

    values: list
    provenance: dict

    def segments(self) -> list[str]:
        return list(dict.fromkeys(v.segment for v in self.values))

    def as_dict(self, segment: str) -> dict[str, float]:
        """Feature name -> value for one segment."""
        return {v.feature: v.value for v in self.values if v.segment == segment}


def split_feature_name(name: str) -> tuple[str, str]:
    """``log-sigma-1-0-mm-3D_glcm_Contrast`` -> (``log-sigma-1-0-mm-3D``, ``glcm``)."""
    image_type, feature_class, _ = name.rsplit("_", 2)
    return image_type, feature_class


class ExtractionCancelled(Cancelled):
    """The user cancelled a running extraction; nothing was written."""


def prepare_inputs(image: sitk.Image, mask: sitk.Image, segments: dict, resample_mask: bool = False) -> sitk.Image:
    """Check image and mask before any work; return the mask on the image grid.

    ``segments`` maps segment name -> label value in ``mask``. Every problem raises
    :class:`RadiomicsLabError` before anything is computed or written.
    """
    if not segments:
        raise RadiomicsLabError("No segment to extract: the mask is empty or no segment was chosen.")
    mask = match_mask_to_image(image, check_mask_is_label_map(mask), resample_mask)
    for name, label in segments.items():
        check_label(mask, label)
        check_finite_in_mask(image, mask, label, where=f"segment '{name}'")
    return mask


def extract(image: sitk.Image, mask: sitk.Image, segments: dict | None = None, settings=None,
            resample_mask: bool = False, inputs: dict | None = None, progress=None) -> ExtractionResult:
    """Extract pyradiomics features for each segment of one label map.

    ``segments`` maps segment name -> label value (default: every label present, named ``Label_N``);
    ``settings`` is anything :func:`~RadiomicsLabLib.settings.load_settings` accepts.
    With the ``pyradiomics`` engine the values are exactly what ``RadiomicsFeatureExtractor.execute``
    returns; the ``native`` engine gives the same names and values without pyradiomics
    (:mod:`~RadiomicsLabLib.pyradiomics_native`); the ``ibsi`` engine IBSI-tagged values.
    """
    settings = load_settings(settings)
    if segments is None:
        segments = {segment_name(label): label for label in labels_present(check_mask_is_label_map(mask))}
    mask = prepare_inputs(image, mask, segments, resample_mask)
    return extract_masks(image, [(name, mask, label) for name, label in segments.items()], settings, inputs, progress)


def read_label_map_inputs(image_path, mask_path, labels=(), settings=None, resample_mask: bool = False) -> tuple:
    """``(image, mask, {segment name: label})`` of an IMAGE file and a label-map MASK file, checked for extraction
    (:func:`prepare_inputs`, and the resampling the settings ask for): ``labels`` (default every label present)."""
    from .imageio import read_image
    from .validation import check_resampling

    settings = load_settings(settings)
    image = read_image(image_path, "image")
    mask = check_mask_is_label_map(read_image(mask_path, "mask"), where=f"mask '{mask_path}'")
    segments = {segment_name(label): label for label in (labels or labels_present(mask))}
    mask = prepare_inputs(image, mask, segments, resample_mask)
    check_resampling(image, mask, list(segments.values()), settings.params)
    return image, mask, segments


def read_dicom_inputs(image_path, mask_path, rois=(), settings=None) -> tuple:
    """``(image, segments)`` of a DICOM series folder and its RTSTRUCT or SEG: each chosen ROI (``rois``, default all)
    a :class:`~RadiomicsLabLib.dicom.Segment` on the series' grid, named by the ROI, checked for extraction (each on
    its own mask: overlapping ROIs, e.g. a GTV inside its PTV, are each extracted whole)."""
    from .dicom import read_dicom_segments
    from .imageio import read_image
    from .validation import check_resampling

    settings = load_settings(settings)
    if not Path(image_path).is_dir():
        raise RadiomicsLabError(f"The mask '{mask_path}' is a DICOM segmentation: give IMAGE as the folder of the DICOM "
                                f"series it was drawn on (not the file '{image_path}').")
    segments = read_dicom_segments(mask_path, image_path, list(rois) or None)
    image = read_image(image_path, "image")
    for segment in segments:
        check_resampling(image, segment.mask, [1], settings.params)
    return image, segments


def extract_masks(image: sitk.Image, segment_masks: list, settings=None, inputs: dict | None = None,
                  progress=None) -> ExtractionResult:
    """Extract features for ``segment_masks``: (name, mask, label) triples already checked by :func:`prepare_inputs`.

    ``progress(done, total, segment_name)`` is called after each segment; returning ``False``
    cancels the run (:class:`ExtractionCancelled`).
    """
    settings = load_settings(settings)
    run_segment, effective = _engine(settings)
    values, diagnostics = [], {}
    for done, (name, mask, label) in enumerate(segment_masks, start=1):
        segment_values, diagnostics[name] = run_segment(image, mask, label, name)
        values += segment_values
        if progress and progress(done, len(segment_masks), name) is False:
            raise ExtractionCancelled(f"Extraction cancelled after {done} of {len(segment_masks)} segments; nothing was written.")
    provenance = build_provenance(settings, effective, image, segment_masks, diagnostics, inputs)
    return ExtractionResult(values, provenance)


def _engine(settings):
    """(function extracting one segment, effective settings for the provenance) of the settings' engine."""
    if settings.engine == "ibsi":
        ibsi_settings, families = settings.ibsi()
        effective = {"ibsi": dataclasses.asdict(ibsi_settings), "families": list(families)}
        return functools.partial(_ibsi_segment, ibsi_settings, families), effective
    if settings.engine == "native":
        plan = settings.native()
        return functools.partial(_native_segment, plan), plan.effective()
    extractor = settings.extractor()
    effective = {"setting": {k: v for k, v in extractor.settings.items() if k != "label"},
                 "imageType": extractor.enabledImagetypes, "featureClass": extractor.enabledFeatures}
    return functools.partial(extract_segment, extractor), effective


def extract_segment(extractor, image: sitk.Image, mask: sitk.Image, label: int, name: str) -> tuple[list, dict]:
    """pyradiomics feature values of one label, and its diagnostics (``diagnostics_*`` keys) for the provenance."""
    from .ibsi.names import ibsi_tag_of_pyradiomics

    check_pyradiomics_sizes(extractor, image, mask, label, name)
    try:
        result = extractor.execute(image, mask, label=int(label))
    except (ValueError, RuntimeError, AssertionError) as error:  # pyradiomics checks some settings with assert
        raise RadiomicsLabError(f"pyradiomics could not process segment '{name}': {error}") from None
    values, diagnostics = [], {}
    for key, value in result.items():
        if key.startswith("diagnostics_"):
            diagnostics[key.removeprefix("diagnostics_")] = value
            continue
        image_type, feature_class = split_feature_name(key)
        tag = ibsi_tag_of_pyradiomics(key) if image_type == "original" else ""
        values.append(FeatureValue(name, image_type, feature_class, key, tag, float(np.asarray(value))))
    return values, diagnostics


def _native_segment(plan, image: sitk.Image, mask: sitk.Image, label: int, name: str) -> tuple[list, dict]:
    """The native engine's values of one label (pyradiomics' names and definitions) and its diagnostics."""
    from .ibsi.names import ibsi_tag_of_pyradiomics
    from .pyradiomics_native import extract_segment as native_extract

    computed, diagnostics = native_extract(plan, image, mask, int(label), name)
    values = []
    for key, value in computed.items():
        image_type, feature_class = split_feature_name(key)
        tag = ibsi_tag_of_pyradiomics(key) if image_type == "original" else ""
        values.append(FeatureValue(name, image_type, feature_class, key, tag, float(value)))
    return values, diagnostics


#: pyradiomics feature classes that build texture matrices (one per direction: 13 in 3D).
TEXTURE_CLASSES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")


def check_pyradiomics_sizes(extractor, image: sitk.Image, mask: sitk.Image, label: int, name: str) -> None:
    """The grey levels pyradiomics would make (see :mod:`.limits`), estimated on the segment's original intensities
    (normalised as the settings ask) before pyradiomics allocates anything: binWidth / binCount of the settings and
    of each image type."""
    from .limits import check_grey_levels, check_texture_memory, fixed_bin_size_levels

    settings = extractor.settings
    values = sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(mask) == label].astype(np.float64)
    if values.size == 0:
        return
    if settings.get("normalize"):
        values = (values - values.mean()) / (values.std() or 1.0) * float(settings.get("normalizeScale") or 1)
    low, high = float(values.min()), float(values.max())
    texture = any(c in TEXTURE_CLASSES for c in extractor.enabledFeatures)
    where = f"segment '{name}'"
    for custom in [{}, *extractor.enabledImagetypes.values()]:
        options = {**settings, **(custom or {})}
        if options.get("binCount"):
            n_levels = int(options["binCount"])
            check_grey_levels(n_levels, low, high, where, bin_count=n_levels)
        else:
            width = float(options.get("binWidth") or 25)
            n_levels = fixed_bin_size_levels(low, high, width, math.floor(low / width) * width)
            check_grey_levels(n_levels, low, high, where, bin_width=width)
        if texture:
            check_texture_memory(n_levels, 4 if options.get("force2D") else 13, where)


def _ibsi_segment(ibsi_settings, families, image: sitk.Image, mask: sitk.Image, label: int, name: str) -> tuple[list, dict]:
    """IBSI engine values of one label; the preprocessing diagnostics and notes go to the provenance."""
    from .ibsi.engine import compute_features

    result = compute_features(image, sitk.Cast(mask == label, sitk.sitkUInt8), ibsi_settings, families)
    values = [FeatureValue(name, "original", result.families[tag], tag, tag, float(value))
              for tag, value in result.values.items()]
    return values, {**result.diagnostics, "notes": list(result.notes)}
