"""Provenance of a result: software versions, the engine and whose definitions it computes, all settings,
image/mask geometry and hashes."""

import datetime
import functools
import hashlib
import math
import os
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__

#: Distribution name of each module whose version can change a number (recorded when it is loaded).
_PACKAGES = {"radiomics": "pyradiomics-bhklab", "numpy": "numpy", "SimpleITK": "SimpleITK", "scipy": "scipy",
             "pywt": "PyWavelets", "sklearn": "scikit-learn", "skimage": "scikit-image", "numba": "numba",
             "slicer": "slicer-core", "vtkmodules": "vtk", "sksurv": "scikit-survival", "joblib": "joblib"}


def software_versions() -> dict:
    """Versions of Python, RadiomicsLab and every loaded library that can change a number."""
    system = os.uname()
    versions = {"radiomicslab": __version__, "python": sys.version.split()[0],
                "platform": f"{system.sysname}-{system.release}-{system.machine}"}
    installed = _installed_distributions()
    for module, package in _PACKAGES.items():
        if module in sys.modules:
            versions[package] = installed.get(_normalise(package)) or _metadata_version(package)
    return versions


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


@functools.cache
def _installed_distributions() -> dict:
    """Installed distribution versions read from ``<name>-<version>.dist-info`` folder names (one listdir per path)."""
    found = {}
    for folder in map(Path, sys.path):
        try:
            entries = [entry.name for entry in os.scandir(folder) if entry.name.endswith(".dist-info")]
        except OSError:
            continue
        for entry in entries:
            name, _, version = entry[: -len(".dist-info")].partition("-")
            found.setdefault(_normalise(name), version)
    return found


def _metadata_version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def image_geometry(image: sitk.Image) -> dict:
    """Size, spacing, origin (LPS, mm), direction cosines and voxel type of an image."""
    return {
        "size": list(image.GetSize()),
        "spacing": list(image.GetSpacing()),
        "origin": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
        "pixel_type": image.GetPixelIDTypeAsString(),
    }


def image_hash(image: sitk.Image) -> str:
    """SHA-1 of the voxel buffer: the value of ``sitk.Hash`` and pyradiomics' ``diagnostics_*_Hash``."""
    return hashlib.sha1(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)).tobytes()).hexdigest()


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_provenance(settings, effective: dict, image: sitk.Image, segment_masks: list, diagnostics: dict,
                     inputs: dict | None = None) -> dict:
    """Everything needed to reproduce an extraction.

    ``settings`` is the :class:`~RadiomicsLabLib.settings.ExtractionSettings`, ``effective`` every
    setting the engine used (defaults included), ``segment_masks`` the (name, mask, label) triples,
    ``diagnostics`` the engine's per-segment diagnostics (ROI size, bounding box, preprocessing),
    ``inputs`` where image and mask came from.
    """
    configuration = ("Versions_", "Configuration_")  # already recorded under software / settings
    segments = {}
    for name, mask, label in segment_masks:
        details = {k: json_ready(v) for k, v in diagnostics.get(name, {}).items() if not k.startswith(configuration)}
        segments[name] = {"label": int(label), "mask_sha1": image_hash(mask), "mask_geometry": image_geometry(mask),
                          "diagnostics": details}
    image_sha1 = next((d["Image-original_Hash"] for d in diagnostics.values() if "Image-original_Hash" in d), None)
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
        "engine": settings.engine,
        "engine_details": engine_details(settings.engine),
        "settings": {"source": settings.source, "parameters": settings.params, "effective": effective},
        "image": {**image_geometry(image), "sha1": image_sha1 or image_hash(image)},  # pyradiomics hashed it already
        "segments": segments,
        "inputs": inputs or {},
    }


def engine_details(engine: str) -> dict:
    """Which engine produced the values, its implementation and version, and whose feature definitions it follows."""
    if engine == "pyradiomics":
        version = _installed_distributions().get("pyradiomics_bhklab") or _metadata_version("pyradiomics-bhklab")
        return {"name": "pyradiomics", "implementation": f"pyradiomics-bhklab {version}",
                "definitions": f"pyradiomics {version}"}
    if engine == "native":
        from .pyradiomics_native import DEFINITIONS

        return {"name": "native", "implementation": f"RadiomicsLab {__version__}", "definitions": DEFINITIONS}
    return {"name": engine, "implementation": f"RadiomicsLab {__version__}",
            "definitions": "IBSI chapter 1 (arXiv:1612.07003) and chapter 2 filters (arXiv:2006.05470)"}


def json_ready(value):
    """``value`` as JSON-friendly Python values: dict keys as text, tuples and arrays as lists, numpy scalars as
    Python numbers, NaN and infinities as None (JSON has no such numbers), anything else as its text."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
