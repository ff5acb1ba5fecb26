"""MRML layer: Logic classes that read from and write to a Slicer scene (the only code importing ``slicer``).

Usable from desktop Slicer's Python console and headless (``trame_slicer.core.SlicerApp``)::

    from RadiomicsLabLib.mrml import ExtractionLogic
    logic = ExtractionLogic()
"""

from .cohort import CohortLogic
from .delta import DeltaLogic
from .extraction import ExtractionLogic
from .featuremaps import FeatureMapLogic, FeatureMapResult
from .habitats import HabitatLogic, HabitatNodes
from .observers import ObserverLogic

__all__ = ["CohortLogic", "DeltaLogic", "ExtractionLogic", "FeatureMapLogic", "FeatureMapResult", "HabitatLogic",
           "HabitatNodes", "ObserverLogic"]
