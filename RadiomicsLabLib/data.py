"""Where the bundled reference data lives (``RADIOMICSLAB_DATA``, default ``../shared/data``)."""

import os
from pathlib import Path

from .errors import RadiomicsLabError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CASES = ("brain1", "brain2", "breast1", "prostate_phantom")


def data_dir() -> Path:
    """The reference data folder: ``$RADIOMICSLAB_DATA`` or ``<project>/../shared/data``."""
    return Path(os.environ.get("RADIOMICSLAB_DATA") or PROJECT_ROOT.parent / "shared" / "data")


def sample_case(name: str) -> tuple[Path, Path]:
    """Image and label map paths of a pyradiomics sample case (``brain1``, ``brain2``, ...)."""
    if name not in SAMPLE_CASES:
        raise RadiomicsLabError(f"Unknown sample case '{name}'; choose one of {', '.join(SAMPLE_CASES)}.")
    folder = data_dir() / "pyradiomics_cases"
    image, label = folder / f"{name}_image.nrrd", folder / f"{name}_label.nrrd"
    if not image.is_file() or not label.is_file():
        raise RadiomicsLabError(
            f"Sample case '{name}' not found in {folder}; set RADIOMICSLAB_DATA to the shared data folder."
        )
    return image, label
