"""Python packages RadiomicsLab needs inside desktop 3D Slicer beyond those Slicer ships.

Desktop Slicer has its own Python. Its SuperBuild installs numpy, scipy and SimpleITK (Slicer
``SuperBuild/External_python-numpy.cmake``, ``External_python-scipy.cmake``, and
``External_SimpleITK.cmake`` up to 5.8 / ``External_python-SimpleITK.cmake`` later; read at
v5.8.1 and at 583e9b37), besides VTK, Qt and ``slicer`` itself. Everything else in
``pyproject.toml``'s ``[project] dependencies`` that the desktop module uses is installed on
first use with ``slicer.util.pip_install(missing_requirements())``, the way SlicerRadiomics
installs pyradiomics' own requirements (``slicer.util.pip_install`` in ``SlicerRadiomics.py``).

Only names are checked (``importlib.util.find_spec``), never versions, and nothing is imported.
"""

import importlib.metadata
import importlib.util

#: pip requirement (as written in pyproject.toml) -> the import names that must all be found.
SLICER_REQUIREMENTS = {
    "scikit-learn": ("sklearn",),
    "scikit-image": ("skimage",),
    "pyradiomics-bhklab": ("radiomics",),
    "PyYAML": ("yaml",),
    "numba": ("numba",),
    "dask[distributed]": ("dask", "distributed"),
    "pyarrow": ("pyarrow",),
    "matplotlib": ("matplotlib",),
}

#: pyproject dependencies that desktop Slicer already has (see the module docstring) -> import name.
BUNDLED_WITH_SLICER = {"numpy": "numpy", "scipy": "scipy", "SimpleITK": "SimpleITK"}

#: pyproject dependencies the desktop module does not use -> why.
NOT_USED_IN_SLICER = {
    "trame-slicer[standalone]": "the web GUI and the headless runtime: its slicer-core wheel is the MRML "
                                "library that desktop Slicer already is, and would shadow it",
    "click": "the radiomicslab command line (RadiomicsLabLib.cli, RadiomicsLabLib.commands), which runs on "
             "the headless runtime, not in Slicer's Python",
    "tqdm": "progress bars of the radiomicslab command line",
}


def missing_requirements() -> list[str]:
    """pip requirements of :data:`SLICER_REQUIREMENTS` whose import names this Python cannot find."""
    return [requirement for requirement, modules in SLICER_REQUIREMENTS.items()
            if any(importlib.util.find_spec(module) is None for module in modules)]


def bundled_pins() -> list[str]:
    """``name==version`` of the installed :data:`BUNDLED_WITH_SLICER` packages.

    Given to pip with the missing requirements, they make pip keep Slicer's own numpy, scipy and
    SimpleITK (or fail, saying which requirement conflicts) instead of replacing them.
    """
    pins = []
    for name in BUNDLED_WITH_SLICER:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:  # built from source without package metadata
            continue
    return pins
