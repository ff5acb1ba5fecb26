"""The 3D Slicer RadiomicsLab needs, and the Python packages it installs there beyond those Slicer ships.

Minimum: 3D Slicer 5.10, whose Python is 3.12 (``Slicer_REQUIRED_PYTHON_VERSION "3.12.10"`` in Slicer's
``CMakeLists.txt`` at tag v5.10.0, a2b6d082; 5.0 to 5.8 have 3.9.10). ``RadiomicsLab/RadiomicsLab.py``
imports this module first of all, also in an older Slicer, to tell the user (:func:`unsupported_slicer_message`):
so this module needs only the standard library of Python 3.9 and no newer syntax.

Desktop Slicer has its own Python. Its SuperBuild installs numpy, scipy, SimpleITK, pydicom and VTK
(:data:`SLICER_5_10_VERSIONS`), besides Qt and ``slicer`` itself. What the desktop module needs beyond
them is ``RadiomicsLab/Resources/requirements.txt`` (:func:`requirements_file`; the scripted-module
template's place for it), installed on first use by ``ensureDependencies()`` in RadiomicsLab.py with
``slicer.util.pip_install(["-r", requirements_file(), "-c", <constraints>])``, the constraints being
:func:`bundled_pins` (Slicer's own versions, kept). pyradiomics is optional there (:data:`OPTIONAL_IN_SLICER`).

Only import names are checked (``importlib.util.find_spec``), never versions, and nothing is imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path

#: The oldest Slicer RadiomicsLab runs in (major, minor), and its Python (major, minor).
MINIMUM_SLICER_VERSION = (5, 10)
MINIMUM_SLICER_PYTHON = (3, 12)
SLICER_DOWNLOAD_URL = "https://download.slicer.org"

#: Distribution -> version in Slicer 5.10.0's Python, from its SuperBuild at tag v5.10.0 (a2b6d082):
#: numpy and scipy: the pinned requirements of SuperBuild/External_python-numpy.cmake and External_python-scipy.cmake;
#: SimpleITK: External_SimpleITK.cmake builds Slicer's fork at a2adada3 ("slicer-v2.5.2-2025-06-13-2018b6b") and
#: pip-installs it; vtk: External_VTK.cmake (VTK 9.5 by default, CMakeLists.txt) writes vtk-9.5.2.dist-info "to
#: prevent pip from re-installing vtk package as a wheel"; pydicom: SuperBuild/External_python-dicom-requirements.cmake
#: (Slicer's DICOM module runs on it; Slicer after 5.10 has pydicom 3.0.2 and highdicom 0.27 there).
#: Testing/test_desktop_install.py resolves requirements.txt with these versions pinned.
SLICER_5_10_VERSIONS = {"numpy": "2.0.2", "scipy": "1.13.1", "SimpleITK": "2.5.2", "pydicom": "2.4.4", "vtk": "9.5.2"}

#: Folders where requirements.txt is: a source checkout (RadiomicsLabLib/ beside RadiomicsLab/), then the built or
#: installed extension (RadiomicsLabLib/ and the module's Resources/ both beside RadiomicsLab.py: RadiomicsLab/CMakeLists.txt).
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
REQUIREMENTS_FOLDERS = (_PACKAGE_PARENT / "RadiomicsLab" / "Resources", _PACKAGE_PARENT / "Resources")

#: Requirement of requirements.txt (its name, extras included, without the version range) -> the import names that
#: must all be found.
IMPORT_NAMES = {
    "scikit-learn": ("sklearn",),
    "scikit-image": ("skimage",),
    "PyYAML": ("yaml",),
    "numba": ("numba",),
    "ducc0": ("ducc0",),
    "dask[distributed]": ("dask", "distributed"),
    "pyarrow": ("pyarrow",),
    "matplotlib": ("matplotlib",),
    "PyWavelets": ("pywt",),
    "highdicom": ("highdicom",),
}

#: pyproject dependencies that desktop Slicer already has (see the module docstring) -> import name.
BUNDLED_WITH_SLICER = {"numpy": "numpy", "scipy": "scipy", "SimpleITK": "SimpleITK", "pydicom": "pydicom"}
#: Distributions of Slicer's own that the pip install must keep too (no pyproject dependency): Slicer's VTK.
KEPT_SLICER_DISTRIBUTIONS = ("vtk",)

#: pyproject dependencies the desktop module can use but does not install -> (import names, why).
OPTIONAL_IN_SLICER = {
    "pyradiomics-bhklab": (("radiomics",),
                           "the pyradiomics engine and pyradiomics' parameter-file validation; RadiomicsLab's native "
                           "engine needs no pyradiomics. On PyPI it is a source distribution only (no wheels): "
                           "installing it needs a C compiler, which most Windows and macOS computers lack"),
    "scikit-survival": (("sksurv",),
                        "the study's survival models (penalised Cox, random survival forest); the binary models need "
                        "only scikit-learn. scikit-survival 0.28 needs scikit-learn >= 1.9, whose Linux wheels need "
                        "glibc 2.28 (Slicer supports 2.17), and declares ecos, which has no CPython 3.12 wheel for "
                        "macOS arm64 (only scikit-survival's SVMs import it: `pip install --no-deps scikit-survival "
                        "narwhals` beside scikit-learn 1.9 works there)"),
}

#: pyproject dependencies the desktop module does not use -> why.
NOT_USED_IN_SLICER = {
    "trame-slicer[standalone]": "the web GUI and the headless runtime: its slicer-core wheel is the MRML "
                                "library that desktop Slicer already is, and would shadow it",
    "click": "the radiomicslab command line (RadiomicsLabLib.cli, RadiomicsLabLib.commands), which runs on "
             "the headless runtime, not in Slicer's Python",
    "tqdm": "progress bars of the radiomicslab command line",
}


def unsupported_slicer_message(python_version=None, slicer_version=None) -> str | None:
    """Why RadiomicsLab does not run in this Slicer, or None when it does.

    ``python_version``: ``sys.version_info`` by default; ``slicer_version``: (major, minor) of the Slicer
    application (``slicer.app.majorVersion``, ``minorVersion``), unchecked when None.
    """
    python = tuple((python_version or sys.version_info)[:2])
    slicer = tuple(slicer_version[:2]) if slicer_version else None
    if python >= MINIMUM_SLICER_PYTHON and (slicer is None or slicer >= MINIMUM_SLICER_VERSION):
        return None
    minimum = "{}.{}".format(*MINIMUM_SLICER_VERSION)
    this = "this Slicer ({}.{})".format(*slicer) if slicer else "this Slicer"
    return ("RadiomicsLab needs 3D Slicer {minimum} or newer (Python {python_needed}); {this} runs Python "
            "{python_here}. Install Slicer {minimum} or newer from {url}, then RadiomicsLab from its Extensions "
            "Manager.").format(minimum=minimum, python_needed="{}.{}".format(*MINIMUM_SLICER_PYTHON), this=this,
                               python_here="{}.{}".format(*python), url=SLICER_DOWNLOAD_URL)


def requirements_file() -> Path:
    """``requirements.txt`` of the desktop module (source checkout or built extension)."""
    for folder in REQUIREMENTS_FOLDERS:
        if (folder / "requirements.txt").is_file():
            return folder / "requirements.txt"
    raise FileNotFoundError("RadiomicsLab's requirements.txt is in none of "
                            + ", ".join(str(folder) for folder in REQUIREMENTS_FOLDERS)
                            + ": reinstall the RadiomicsLab extension (or restore RadiomicsLab/Resources/requirements.txt).")


def requirement_name(requirement: str) -> str:
    """``dask[distributed]>=2024.8.0`` -> ``dask[distributed]``: the name and extras, version range and spaces dropped."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(1) + re.sub(r"\s+", "", match.group(2) or "")


def slicer_requirements(path=None) -> dict[str, tuple[str, ...]]:
    """Requirement of requirements.txt (as written, spaces dropped) -> its import names (:data:`IMPORT_NAMES`), in file order."""
    requirements = {}
    for line in Path(path or requirements_file()).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = requirement_name(line)
        if name not in IMPORT_NAMES:
            raise KeyError(f"{name} (requirements.txt) has no import names in RadiomicsLabLib.dependencies.IMPORT_NAMES")
        requirements[re.sub(r"\s+", "", line)] = IMPORT_NAMES[name]
    return requirements


def missing_requirements() -> list[str]:
    """Requirements of requirements.txt (with their version ranges) whose import names this Python cannot find."""
    return [requirement for requirement, modules in slicer_requirements().items()
            if any(importlib.util.find_spec(module) is None for module in modules)]


def bundled_pins() -> list[str]:
    """``name==version`` of the installed :data:`BUNDLED_WITH_SLICER` and :data:`KEPT_SLICER_DISTRIBUTIONS`.

    Given to pip as constraints with requirements.txt, they make pip keep Slicer's own numpy, scipy,
    SimpleITK, pydicom and VTK (or fail, saying which requirement conflicts) instead of replacing them.
    """
    pins = []
    for name in (*BUNDLED_WITH_SLICER, *KEPT_SLICER_DISTRIBUTIONS):
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:  # built from source without package metadata
            continue
    return pins
