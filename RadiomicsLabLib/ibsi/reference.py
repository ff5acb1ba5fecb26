"""The IBSI reference tables in the shared data folder, and the IBSI pass rule."""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..data import data_dir
from .roi import Roi

CHAPTER1_DATASETS = ("digital_phantom", "config_A", "config_B", "config_C", "config_D", "config_E")


def ibsi_match(value, reference: float, tolerance: float) -> bool:
    """IBSI pass rule: ``abs(value - reference) <= tolerance``.

    IBSI publishes reference values rounded to 3 significant digits (some with tolerance 0, e.g.
    a voxel spacing of 0.977 for a stored 0.9769999980926514), so the value rounded the same way
    also counts.
    """
    if value is None or math.isnan(value):
        return False
    rounded = float(f"{value:.3g}")
    return abs(value - reference) <= tolerance or abs(rounded - reference) <= tolerance


@dataclass(frozen=True)
class ReferenceValue:
    """One row of an IBSI reference table: pass when ``abs(value - reference) <= tolerance``."""

    dataset: str
    family: str
    feature: str
    tag: str
    reference: float
    tolerance: float

    def passes(self, value) -> bool:
        return ibsi_match(value, self.reference, self.tolerance)


def chapter1_reference(dataset: str) -> list[ReferenceValue]:
    """Consensus reference values of IBSI chapter 1 for ``digital_phantom`` or ``config_A`` ... ``config_E``.

    Rows without a reference value (features IBSI did not standardise, e.g. OMBB, MVEE) are left out.
    """
    path = data_dir() / "ibsi1" / f"reference_values_{dataset}.csv"
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    return [ReferenceValue(dataset, r["family"], r["feature"], r["tag"], float(r["reference value"]),
                           float(r["tolerance"])) for r in rows if r["reference value"].strip()]


def chapter2_phase2_reference() -> list[ReferenceValue]:
    """IBSI chapter 2 phase 2 values on the CT phantom; ``tag`` is ``<filter_id>/<feature_tag>`` (``4.B/stat_mean``)."""
    path = data_dir() / "ibsi2" / "reference_values_phase2.csv"
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    return [ReferenceValue("ibsi2_phase2", r["filter_id"], r["feature"], f"{r['filter_id']}/{r['feature_tag']}",
                           float(r["consensus_value"]), float(r["tolerance"])) for r in rows if r["consensus_value"].strip()]


def ibsi1_images(name: str) -> tuple[sitk.Image, sitk.Image]:
    """(image, mask) of ``digital_phantom`` or ``ct_phantom`` from ../shared/data/ibsi1."""
    folder = Path(data_dir()) / "ibsi1" / name
    return sitk.ReadImage(str(folder / "image.nii.gz")), sitk.ReadImage(str(folder / "mask.nii.gz"))


def digital_phantom_roi() -> Roi:
    """The IBSI 1 digital phantom as a Roi: no preprocessing, its integer intensities are the grey levels."""
    image, mask = ibsi1_images("digital_phantom")
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    roi = Roi.from_arrays(array, sitk.GetArrayFromImage(mask), image.GetSpacing()[::-1])
    levels = np.where(roi.intensity_mask, array, 0).astype(np.int64)
    return roi.with_levels(levels, int(levels.max()))
