"""MRML layer: Logic classes that read from and write to a Slicer scene (the only code importing ``slicer``).

Usable from desktop Slicer's Python console and headless (``trame_slicer.core.SlicerApp``)::

    from RadiomicsLabLib.mrml import ExtractionLogic
    logic = ExtractionLogic()

The classes are imported on first use (PEP 562), so ``import RadiomicsLabLib.mrml.extraction`` inside
desktop Slicer does not need the cohort engine's packages (dask) before they are installed.
"""

import importlib

#: exported name -> submodule defining it
_EXPORTS = {
    "CohortLogic": "cohort", "DeltaLogic": "delta", "ExtractionLogic": "extraction",
    "FeatureMapLogic": "featuremaps", "FeatureMapResult": "featuremaps", "HabitatLogic": "habitats",
    "HabitatNodes": "habitats", "ObserverLogic": "observers", "SegmentStatisticsFeatures": "segmentstatistics",
    "StudyLogic": "study", "StudyResults": "study",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__():
    return sorted(list(globals()) + __all__)
