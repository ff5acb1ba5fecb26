"""Provenance of a result: software versions, all settings, image/mask geometry and hashes."""

import datetime
import functools
import hashlib
import platform
import sys
from importlib import metadata

import numpy as np
import SimpleITK as sitk

from . import __version__

#: Distribution name of each module whose version can change a number (recorded when it is loaded).
_PACKAGES = {"radiomics": "pyradiomics-bhklab", "numpy": "numpy", "SimpleITK": "SimpleITK", "scipy": "scipy",
             "pywt": "PyWavelets", "sklearn": "scikit-learn", "slicer": "slicer-core", "vtkmodules": "vtk"}


def software_versions() -> dict:
    """Versions of Python, RadiomicsLab and every loaded library that can change a number."""
    versions = {"radiomicslab": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for module, package in _PACKAGES.items():
        if module in sys.modules:
            versions[package] = _version(package)
    return versions


@functools.cache
def _version(package: str) -> str:
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


def build_provenance(settings, extractor, image: sitk.Image, segment_masks: list, inputs: dict | None = None) -> dict:
    """Everything needed to reproduce an extraction.

    ``settings`` is the :class:`~RadiomicsLabLib.settings.ExtractionSettings`, ``extractor`` the
    configured pyradiomics extractor (its effective settings are recorded, defaults included),
    ``segment_masks`` the (name, mask, label) triples, ``inputs`` where image and mask came from.
    """
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
        "engine": "pyradiomics",
        "settings": {
            "source": settings.source,
            "parameters": settings.params,
            "effective": {
                "setting": {k: v for k, v in extractor.settings.items() if k != "label"},
                "imageType": extractor.enabledImagetypes,
                "featureClass": extractor.enabledFeatures,
            },
        },
        "image": {**image_geometry(image), "sha1": image_hash(image)},
        "segments": {
            name: {"label": int(label), "mask_sha1": image_hash(mask), "mask_geometry": image_geometry(mask)}
            for name, mask, label in segment_masks
        },
        "inputs": inputs or {},
    }
