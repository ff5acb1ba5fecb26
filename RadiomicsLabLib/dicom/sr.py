"""RadiomicsLab's feature values as a DICOM SR measurement report (TID 1500), and reading one back.

The document is a Comprehensive 3D SR (highdicom ``Comprehensive3DSR``; DICOM PS3.16 TID 1500 "Measurement
Report") as Slicer's Quantitative Reporting (dcmqi ``tid1500writer``) writes one: one TID 1411 volumetric ROI
measurement group per segment, referencing the segment of a DICOM SEG (``ReferencedSegment``) and through it
the source image series, its Tracking Identifier the segment's label, its finding type and category the
segment's coded properties, and one TID 300 measurement per feature:

- concept name: the IBSI identifier of the feature where RadiomicsLab's IBSI engine records one
  (``CodedConcept(<IBSI id>, "IBSI", <feature name>)``, e.g. ``2PR5`` surface to volume ratio; IBSI reference
  manual, arXiv:1612.07003), with the IBSI aggregation identifier as the measurement method (``ITBB`` "3D,
  averaged over directions", ...); otherwise the private scheme ``99RADIOMICSLAB``, code value ``RL`` + the
  first 14 hex digits of the SHA-1 of the feature's name (a stable 16-character Short Code Value: highdicom's
  and other readers expect a Code Value, not a Long Code Value) and the name as meaning;
- the feature's exact RadiomicsLab name (``original_glcm_Contrast``, ``cm_contrast_3D_avg``) as the
  measurement's Tracking Identifier, so a reader gets the same name back;
- the value as Numeric Value (DS) and Floating Point Value (FD): the FD is the float64 itself, so the value
  reads back bit for bit; NaN and infinities have no DS form and are written with an empty Measured Value
  Sequence and the Numeric Value Qualifier (114000 "Not a number", 114001/114002 infinity, DCM, CID 42);
- the unit as UCUM: the engine's unit of the feature (``mm3``, ``/mm``, ``1`` "no units" for dimensionless
  features, which include the texture features on discretised grey levels); intensities in Hounsfield units
  ``[hnsf'U]`` for a CT series' original image, ``[arb'U]`` (arbitrary unit) for other modalities and filtered
  images; ``[arb'U]`` also for the few features whose unit the engine's registry does not record (pyradiomics
  features without an IBSI twin, e.g. ``Kurtosis``, ``Maximum2DDiameterSlice``).

The settings (RadiomicsLab's provenance JSON: versions, every setting, geometry, hashes) are in each group's
Algorithm Identification (TID 4019: name "RadiomicsLab", its version, one Algorithm Parameters TEXT item
holding the JSON), where dcmqi puts ``measurementAlgorithmIdentification``.
"""

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import RadiomicsLabError
from ..fileio import atomic_output, check_output
from . import compat
from .write import read_source_series

#: Private coding scheme of features without an IBSI identifier (code value = RadiomicsLab's feature name).
SCHEME = "99RADIOMICSLAB"
#: UCUM of the engine's units: engine unit -> (UCUM code, meaning).
UNITS = {"": ("1", "no units"), "mm": ("mm", "millimeter"), "mm^2": ("mm2", "square millimeter"),
         "mm^3": ("mm3", "cubic millimeter"), "mm^-1": ("/mm", "per millimeter"), "bits": ("bit", "bit"),
         "voxels": ("{voxels}", "voxels"), "grey level": ("{GreyLevel}", "grey level"),
         "grey level^2": ("{GreyLevel^2}", "grey level squared")}
HOUNSFIELD = ("[hnsf'U]", "Hounsfield unit")
ARBITRARY = ("[arb'U]", "arbitrary unit")
#: Numeric Value Qualifier (DCM, CID 42) of values without a DS form.
NOT_A_NUMBER = {"nan": ("114000", "Not a number"), "-inf": ("114001", "Negative Infinity"),
                "inf": ("114002", "Positive Infinity")}


@dataclass(frozen=True)
class ReportedFeature:
    """One measurement read back from a report: segment label, feature name, value, UCUM unit code."""

    segment: str
    feature: str
    value: float
    unit: str | None


def write_measurement_report(features, seg_path, source_folder, path, provenance: dict | None = None, *,
                             series_description: str = "RadiomicsLab measurement report", series_number: int = 1001,
                             manufacturer: str = "RadiomicsLab") -> Path:
    """Write ``features`` as a TID 1500 measurement report at ``path`` (atomically); returns ``path``.

    ``features``: an :class:`~RadiomicsLabLib.extraction.ExtractionResult` (its provenance is used) or a list of
    :class:`~RadiomicsLabLib.extraction.FeatureValue`; each segment name must be a Segment Label of the DICOM SEG
    ``seg_path``, which must reference the series in ``source_folder``. ``provenance`` (default the result's)
    is stored as the algorithm parameters.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from .. import __version__

    values = list(getattr(features, "values", features))
    provenance = provenance if provenance is not None else getattr(features, "provenance", None) or {}
    series = read_source_series(source_folder)
    path = check_output(path, [("source series folder", series.folder), ("SEG", seg_path),
                               *(("source series file", f) for f in series.files)], kind="file")
    seg = _read_seg(seg_path, series)
    if not values:
        raise RadiomicsLabError("No feature value to report; extract features first.")
    described = {item.SegmentLabel: item for item in seg.SegmentSequence}
    by_segment = {}
    for value in values:
        if value.segment not in described:
            raise RadiomicsLabError(f"Segment '{value.segment}' of the features is not in the SEG '{seg_path}' "
                                    f"(it has {', '.join(described)}); give the SEG of the segments the features were "
                                    "extracted from.")
        by_segment.setdefault(value.segment, []).append(value)
    intensity = _intensity_unit(series.datasets[0], provenance)
    algorithm = hd.sr.AlgorithmIdentification(name="RadiomicsLab", version=__version__,
                                              parameters=[json.dumps(provenance, default=str)])
    groups = []
    for segment, segment_values in by_segment.items():
        item = described[segment]
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=getattr(item, "TrackingUID", None) or hd.UID(),
                                                         identifier=segment),
            referenced_segment=compat.referenced_segment(seg, int(item.SegmentNumber)),
            finding_type=hd.sr.CodedConcept.from_dataset(item.SegmentedPropertyTypeCodeSequence[0]),
            finding_category=hd.sr.CodedConcept.from_dataset(item.SegmentedPropertyCategoryCodeSequence[0]),
            algorithm_id=algorithm, measurements=[_measurement(v, intensity) for v in segment_values]))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="RadiomicsLab", manufacturer_name=manufacturer, model_name=f"RadiomicsLab {__version__}"))
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=observer),
                                     procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups)
    document = hd.sr.Comprehensive3DSR(
        evidence=[*series.datasets, seg], content=report, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=manufacturer, is_complete=True,
        series_description=series_description)
    _qualify(document, [v for segment_values in by_segment.values() for v in segment_values])
    with atomic_output(path) as tmp:
        compat.dcmwrite(tmp, document)
    return Path(path)


def report_seg_path(report) -> Path:
    """Where a report of features extracted from a label map or an RTSTRUCT has its segments written (the SEG it
    references): ``REPORT.seg.dcm`` beside ``REPORT.dcm``."""
    report = Path(report)
    return report.with_name(f"{report.stem}.seg.dcm")


def check_report_outputs(image_path, mask_path, report, inputs, option: str = "--sr") -> None:
    """Before any work: the image is a DICOM series folder, and the report (and :func:`report_seg_path` unless the
    mask is a DICOM SEG, which the report then references) can be written without overwriting an input."""
    from ..imageio import dicom_modality

    if not Path(image_path).is_dir():
        raise RadiomicsLabError(f"{option} writes a DICOM report on the image's DICOM series: give IMAGE as the folder "
                                f"of that series ('{image_path}' is a file).")
    check_output(report, inputs, "file", option)
    if dicom_modality(mask_path) != "SEG":
        check_output(report_seg_path(report), inputs, "file", option)


def write_feature_report(values, provenance, image_path, mask_path, report, segments=None) -> tuple[Path, Path]:
    """``(report, SEG)``: the TID 1500 report of extracted ``values`` (:func:`write_measurement_report`) on the DICOM
    series ``image_path``. It references the mask when that is a DICOM SEG; otherwise the segments are written as
    :func:`report_seg_path` first: ``segments`` (the RTSTRUCT's, read), else the label map's labels (``Label_N``)."""
    from ..imageio import dicom_modality
    from .masks import read_mask
    from .write import write_seg

    if dicom_modality(mask_path) == "SEG":
        seg_path = Path(mask_path)
    else:
        if segments is None:
            label_map, names = read_mask(mask_path, image_path)
            wanted = {v.segment for v in values}
            segments = [(name, label_map == label) for name, label in names.items() if name in wanted]
        seg_path = write_seg(segments, image_path, report_seg_path(report))
    return write_measurement_report(values, seg_path, image_path, report, provenance), seg_path


def read_measurement_report(path) -> list:
    """Every measurement of a TID 1500 report as :class:`ReportedFeature` (segment, feature, value, unit), group by group.

    Parsed with pydicom (highdicom's ``srread`` refuses a NUM item without a value, which a NaN is): each TID
    1411 / 1410 / 1501 measurement group (CONTAINER 125007 "Measurement Group"); the segment is the group's
    Tracking Identifier, the feature the measurement's Tracking Identifier (else its concept name's meaning), the
    value the Floating Point Value (else the Numeric Value; NaN or infinity from the qualifier), the unit the UCUM
    code (None for a value without one).
    """
    import pydicom

    try:
        document = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError) as error:
        raise RadiomicsLabError(f"Cannot read '{path}' as a DICOM SR measurement report ({error}); "
                                "give a TID 1500 report file.") from None
    if _concept(document) != "126000":  # DCM Imaging Measurement Report
        raise RadiomicsLabError(f"'{path}' is not a TID 1500 measurement report; give one (as RadiomicsLab or "
                                "Slicer's Quantitative Reporting write them).")
    features = []
    for group in _walk(document):
        if group.get("ValueType") != "CONTAINER" or _concept(group) != "125007":  # DCM Measurement Group
            continue
        segment = _tracking_identifier(group)
        for item in group.get("ContentSequence", []):
            if item.get("ValueType") == "NUM":
                name = _tracking_identifier(item) or str(item.ConceptNameCodeSequence[0].CodeMeaning)
                features.append(ReportedFeature(segment, name, *_measured(item)))
    return features


def read_report_provenance(path) -> dict:
    """The provenance (settings, versions, ...) stored in the report's first Algorithm Parameters item; {} if none."""
    import pydicom

    dataset = pydicom.dcmread(path)
    for item in _walk(dataset):
        if _concept(item) == "111002" and "TextValue" in item:  # DCM Algorithm Parameters
            return json.loads(item.TextValue)
    return {}


# helpers -------------------------------------------------------------------------------------------
def _read_seg(seg_path, series):
    """The SEG dataset, after checking it is a SEG of the series in ``series``."""
    import pydicom

    seg_path = Path(seg_path)
    try:
        seg = pydicom.dcmread(seg_path)
    except (pydicom.errors.InvalidDicomError, OSError) as error:
        raise RadiomicsLabError(f"Cannot read the SEG '{seg_path}' ({error}); give the DICOM SEG file of the "
                                "segments.") from None
    if seg.get("SOPClassUID") != pydicom.uid.SegmentationStorage:
        raise RadiomicsLabError(f"'{seg_path}' is not a DICOM SEG (SOP class {seg.get('SOPClassUID', 'missing')}); "
                                "give the SEG of the segments the features were extracted from.")
    referenced = {item.SeriesInstanceUID for item in seg.get("ReferencedSeriesSequence", [])}
    source_uid = series.datasets[0].SeriesInstanceUID
    if source_uid not in referenced:
        raise RadiomicsLabError(f"The SEG '{seg_path}' does not reference the series in '{series.folder}'; give the "
                                "series folder the SEG was drawn on.")
    return seg


def _measurement(value, intensity):
    """The TID 300 measurement of one :class:`FeatureValue`."""
    import highdicom as hd

    info = _feature_info(value.ibsi_tag or value.feature)
    ibsi_id = info.get("ibsi_id", "")
    if ibsi_id:
        name = hd.sr.CodedConcept(ibsi_id, "IBSI", info["name"][:64])
    else:
        name = hd.sr.CodedConcept(private_code(value.feature), SCHEME, value.feature[:64])
    aggregation = info.get("aggregation") if ibsi_id else None
    method = hd.sr.CodedConcept(aggregation, "IBSI", _aggregations()[aggregation]) if aggregation else None
    unit = _ucum(info.get("unit"), intensity if value.image_type == "original" else ARBITRARY)
    finite = math.isfinite(value.value)  # a non-finite value is written as 0.0 here, then :func:`_qualify`
    return hd.sr.Measurement(
        name=name, value=float(value.value) if finite else 0.0, unit=hd.sr.CodedConcept(unit[0], "UCUM", unit[1]),
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=value.feature), method=method)


def _qualify(document, values: list) -> None:
    """Give the NUM items of non-finite ``values`` (in document order) an empty Measured Value Sequence and the
    Numeric Value Qualifier saying why (PS3.3 C.18.1.1); done on the built document, whose constructor refuses them."""
    import highdicom as hd

    items = [item for item in _walk(document) if item.get("ValueType") == "NUM"]
    for item, value in zip(items, values):
        if not math.isfinite(value.value):
            code, meaning = NOT_A_NUMBER[repr(value.value)]
            item.MeasuredValueSequence = []
            item.NumericValueQualifierCodeSequence = [hd.sr.CodedConcept(code, "DCM", meaning)]


def private_code(feature: str) -> str:
    """The ``99RADIOMICSLAB`` code value of a feature without an IBSI identifier: ``RL`` + 14 hex digits of SHA-1."""
    return "RL" + hashlib.sha1(feature.encode("utf-8")).hexdigest()[:14].upper()


def _measured(item) -> tuple[float, str | None]:
    """(value, UCUM code) of a NUM content item; one without a number reads as NaN or infinity (its qualifier)."""
    measured = item.get("MeasuredValueSequence")
    if not measured:
        qualifier = item.get("NumericValueQualifierCodeSequence")
        code = qualifier[0].CodeValue if qualifier else NOT_A_NUMBER["nan"][0]
        return float({v[0]: k for k, v in NOT_A_NUMBER.items()}.get(code, "nan")), None
    value = measured[0]
    number = float(value.FloatingPointValue) if "FloatingPointValue" in value else float(value.NumericValue)
    return number, str(value.MeasurementUnitsCodeSequence[0].CodeValue)


def _tracking_identifier(item) -> str | None:
    """The TEXT Tracking Identifier (DCM 112039) among an item's children, or None."""
    for child in item.get("ContentSequence", []):
        if child.get("ValueType") == "TEXT" and _concept(child) == "112039":
            return str(child.TextValue)
    return None


@cache
def _aggregations() -> dict:
    """IBSI aggregation identifier -> its name (GLCM / GLRLM aggregation methods)."""
    from ..ibsi.features.common import AGGREGATIONS

    return {identifier: name for _, identifier, name, _ in AGGREGATIONS.values()}


def _feature_info(tag: str) -> dict:
    """The IBSI engine's description of a feature (:func:`~..ibsi.engine.feature_registry`), {} if none."""
    from ..ibsi.engine import feature_registry

    return feature_registry().get(tag, {})


def _intensity_unit(dataset, provenance: dict) -> tuple[str, str]:
    """UCUM (code, meaning) of the original image's intensities: Hounsfield units for CT (unless an IBSI filter
    changed them), otherwise arbitrary units."""
    effective = provenance.get("settings", {}).get("effective", {}) if isinstance(provenance, dict) else {}
    filtered = bool((effective.get("ibsi") or {}).get("image_filter"))
    return HOUNSFIELD if dataset.get("Modality") == "CT" and not filtered else ARBITRARY


def _ucum(unit: str | None, intensity: tuple[str, str]) -> tuple[str, str]:
    """UCUM (code, meaning) of an engine unit (``mm^3``, ``intensity^2``, ``intensity x mm^3``); unknown: arbitrary."""
    if unit is None:
        return ARBITRARY
    if unit in UNITS:
        return UNITS[unit]
    base, _, rest = unit.partition(" x ")
    if not base.startswith("intensity") or (rest and rest not in UNITS):
        return ARBITRARY
    power = base.removeprefix("intensity").removeprefix("^")
    code, meaning = intensity  # both UCUM atoms, so a power or product of them is a UCUM term
    if rest:
        return f"{code}{power}.{UNITS[rest][0]}", f"{meaning}{'^' + power if power else ''} {UNITS[rest][1]}"
    return f"{code}{power}", f"{meaning}{'^' + power if power else ''}"


def _concept(item) -> str | None:
    """Code value of a content item's concept name."""
    concept = item.get("ConceptNameCodeSequence")
    return str(concept[0].get("CodeValue", "")) if concept else None


def _walk(dataset):
    """Every content item of an SR document, depth first."""
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _walk(item)
