"""The Slicer extension build, checked without building it against Slicer.

(a) The extension metadata of the top-level CMakeLists.txt: ``Testing/cmake/CheckExtensionMetadata.cmake``
    run by the real ``cmake -P`` (also registered as a ctest), on the file and on broken copies of it.
(b) The Python packages desktop Slicer has to pip-install (``RadiomicsLab/Resources/requirements.txt`` read by
    ``RadiomicsLabLib.dependencies``) against pyproject.toml and against what the code imports; the Segment
    Statistics plugin registered only once they are there; the minimum Slicer version in CMake; what the
    extension installs into Slicer. (Testing/test_desktop_install.py: wheels and Slicer's Python versions.)
(c) The Sample Data registration (``RadiomicsLabLib.mrml.sampledata``): checksums of the real files,
    arguments Slicer's ``registerCustomSampleDataSource`` accepts, label maps that Slicer's segmentation
    reader loads, thumbnails rendered from the real images.
"""

import ast
import hashlib
import importlib.metadata
import json
import logging
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib import dependencies
from RadiomicsLabLib.mrml import sampledata

ROOT = Path(__file__).resolve().parent.parent
CMAKELISTS = ROOT / "CMakeLists.txt"
CHECK_SCRIPT = ROOT / "Testing" / "cmake" / "CheckExtensionMetadata.cmake"
RAW_URL_PREFIX = "https://raw.githubusercontent.com/RadiomicsLab/RadiomicsLab/main/"


def run_check(cmakelists: Path = CMAKELISTS) -> subprocess.CompletedProcess:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake not found: install it (Debian: apt-get install cmake) to check the extension metadata.")
    return subprocess.run([cmake, f"-DEXTENSION_DIR={ROOT}", f"-DCMAKELISTS={cmakelists}", "-P", str(CHECK_SCRIPT)],
                          capture_output=True, text=True, timeout=60)


def checked_values(output: str) -> dict:
    """EXTENSION_* -> value, as CMake evaluated them (the script's ``-- NAME: value`` lines)."""
    return dict(re.findall(r"^-- (EXTENSION_\w+): (.*)$", output, re.MULTILINE))


# (a) ---------------------------------------------------------------------------------------------
def test_extension_metadata_is_complete():
    result = run_check()
    assert result.returncode == 0, result.stderr
    values = checked_values(result.stdout)
    assert values["EXTENSION_HOMEPAGE"] == "https://github.com/RadiomicsLab/RadiomicsLab"
    assert values["EXTENSION_ICONURL"] == RAW_URL_PREFIX + "RadiomicsLab/Resources/Icons/RadiomicsLab.png"
    assert values["EXTENSION_ENABLED"] == "1" and values["EXTENSION_DEPENDS"] == "NA"
    # One of the categories Slicer's ExtensionsIndex accepts (scripts/check_description_files.py,
    # ACCEPTED_EXTENSION_CATEGORIES), and the module's own category (RadiomicsLab.py).
    assert values["EXTENSION_CATEGORY"] == "Quantification"
    assert 'translate("qSlicerAbstractCoreModule", "Quantification")' in (ROOT / "RadiomicsLab" / "RadiomicsLab.py").read_text()
    # "Firstname1 Lastname1 ([SubOrg1, ]Org1), ..." (SlicerExtensionDescriptionSpec.cmake), also the module's.
    assert re.fullmatch(r"[^(),]+ \([^()]+\)(, [^(),]+ \([^()]+\))*", values["EXTENSION_CONTRIBUTORS"])
    assert f'self.parent.contributors = ["{values["EXTENSION_CONTRIBUTORS"]}"]' in (ROOT / "RadiomicsLab" / "RadiomicsLab.py").read_text()
    # Slicer's extension template and ExtensionsIndex (check_license_file) look for the license at the root.
    assert (ROOT / "LICENSE.txt").is_file()
    if (ROOT / "LICENSE").exists():
        assert (ROOT / "LICENSE").read_text() == (ROOT / "LICENSE.txt").read_text(), "two different licenses"
    # The catalogue's one-line description names every workflow of the module.
    description = values["EXTENSION_DESCRIPTION"]
    for workflow in ("IBSI feature extraction", "feature maps", "multi-observer", "habitats", "delta-radiomics",
                     "cohort"):
        assert workflow in description, workflow
    # No screenshots: the catalogue's must show desktop Slicer, which does not run here (the web GUI's
    # Resources/Screenshots/web_*.png would misrepresent the extension). Any given must be of this repository.
    screenshots = values["EXTENSION_SCREENSHOTURLS"].split()
    assert all(url.startswith(RAW_URL_PREFIX + "Resources/Screenshots/") for url in screenshots)
    assert not any("/web_" in url for url in screenshots), "screenshots of the web GUI are not of the extension"
    for url in [values["EXTENSION_ICONURL"], *screenshots]:
        path = url.removeprefix(RAW_URL_PREFIX)
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode
        assert ignored == 1, f"{path}: git check-ignore says {ignored} (0: ignored, so the URL would not resolve)"


def test_the_check_is_a_ctest_of_the_extension():
    text = CMAKELISTS.read_text()
    assert "-P ${CMAKE_CURRENT_SOURCE_DIR}/Testing/cmake/CheckExtensionMetadata.cmake" in text
    assert re.search(r"if\(BUILD_TESTING\)\s+add_test\(NAME \$\{PROJECT_NAME\}ExtensionMetadata", text)


TEMPLATE_ICON = "https://www.example.com/Slicer/Extensions/TemplateKey.png"  # Slicer's extension template


@pytest.mark.parametrize("broken, message", [  # each breaks one thing; the template icon is also not ours
    (lambda text: re.sub(r"set\(EXTENSION_CATEGORY [^)]*\)\n", "", text),
     "EXTENSION_CATEGORY is not set"),
    (lambda text: re.sub(r"set\(EXTENSION_STATUS [^)]*\)\n", "", text),
     "EXTENSION_STATUS is not set"),
    (lambda text: re.sub(r'set\(EXTENSION_CONTRIBUTORS "[^"]*"\)', 'set(EXTENSION_CONTRIBUTORS "")', text),
     "EXTENSION_CONTRIBUTORS is empty"),
    (lambda text: re.sub(r'set\(EXTENSION_ICONURL "[^"]*"\)', f'set(EXTENSION_ICONURL "{TEMPLATE_ICON}")', text),
     "EXTENSION_ICONURL is a placeholder ('example.com')"),
    (lambda text: re.sub(r'set\(EXTENSION_SCREENSHOTURLS "[^"]*"\)',
                         f'set(EXTENSION_SCREENSHOTURLS "{RAW_URL_PREFIX}Resources/Screenshots/no_such_screenshot.png")', text),
     "names Resources/Screenshots/no_such_screenshot.png, which is not a file"),
    (lambda text: re.sub(r'set\(EXTENSION_SCREENSHOTURLS "[^"]*"\)\n', "", text),
     "EXTENSION_SCREENSHOTURLS is not set"),
    (lambda text: re.sub(r'set\(EXTENSION_CONTRIBUTORS "[^"]*"\)', 'set(EXTENSION_CONTRIBUTORS "RadiomicsLab team")', text),
     "EXTENSION_CONTRIBUTORS must be 'Name (Organization)' entries"),
    (lambda text: text.replace("RadiomicsLab/Resources/Icons/RadiomicsLab.png", "Resources/Screenshots/web_paint.png"),
     "is 1440 x 900 pixels; Slicer expects a 128 x 128 icon"),
    (lambda text: text.replace("set(EXTENSION_ENABLED 1)", "set(EXTENSION_ENABLED yes)"),
     "EXTENSION_ENABLED must be 0 or 1"),
    (lambda text: re.sub(r"(# Extension meta-information[^\n]*\n)", r"\1# TODO: add a logo\n", text, count=1),
     "left to do in the extension meta-information: 'TODO: add a logo'"),
], ids=["no-category", "no-status", "empty-contributors", "template-icon", "missing-screenshot", "no-screenshots-set",
        "contributors-without-organization", "icon-size", "enabled-not-boolean", "todo-left"])
def test_the_check_fails_naming_what_is_missing(tmp_path, broken, message):
    text = CMAKELISTS.read_text()
    copy = tmp_path / "CMakeLists.txt"
    copy.write_text(broken(text))
    assert copy.read_text() != text, "the broken copy must differ from CMakeLists.txt"
    result = run_check(copy)
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr
    problems = re.findall(r"^[ \t]+- (EXTENSION_\w+|left to do)", result.stderr, re.MULTILINE)
    assert len(set(problems)) == 1, f"only the problem made: {result.stderr}"


# (b) ---------------------------------------------------------------------------------------------
#: Import names the desktop code uses that are neither a requirement nor bundled: the Slicer application's
#: own modules, and packages our requirements depend on (requirement, distribution), checked below.
SLICER_APPLICATION = {"slicer", "vtk", "vtkmodules", "qt", "ctk", "SampleData", "SegmentStatistics",
                      "SegmentStatisticsPlugins"}
TRANSITIVE = {"pykwalify": ("pyradiomics-bhklab", "pykwalify"),  # with the optional pyradiomics only
              "threadpoolctl": ("scikit-learn", "threadpoolctl"), "joblib": ("scikit-learn", "joblib"),
              "PIL": ("matplotlib", "pillow")}
#: RadiomicsLabLib files desktop Slicer does not run (the command line, the web GUI) and imports that only the
#: headless runtime reaches (mrml/app.py's new_headless_app; inside Slicer default_scene is slicer.mrmlScene).
NOT_IN_SLICER_FILES = ("cli.py", "commands/", "web/")
HEADLESS_ONLY = {("mrml/app.py", "trame_slicer")}


def canonical(requirement: str) -> str:
    """PEP 503 name of a requirement, extras and versions dropped."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def test_requirements_account_for_every_pyproject_dependency():
    """Each pyproject dependency is installed in Slicer on first use (requirements.txt), ships with Slicer, is optional
    in Slicer (pyradiomics: not installed on first use), or is not used there (web GUI, command line)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    installed = {dependencies.requirement_name(r) for r in dependencies.slicer_requirements()}
    groups = [installed, set(dependencies.BUNDLED_WITH_SLICER), set(dependencies.OPTIONAL_IN_SLICER),
              set(dependencies.NOT_USED_IN_SLICER)]
    assert set.union(*groups) == set(declared), "pyproject.toml and RadiomicsLabLib.dependencies disagree"
    assert sum(map(len, groups)) == len(declared), "a dependency is in more than one group"
    assert set(dependencies.OPTIONAL_IN_SLICER) == {"pyradiomics-bhklab", "scikit-survival"}


def test_requirements_file_is_the_one_list_of_what_slicer_installs(tmp_path):
    path = ROOT / "RadiomicsLab" / "Resources" / "requirements.txt"
    assert dependencies.requirements_file() == path
    requirements = dependencies.slicer_requirements()
    names = [dependencies.requirement_name(r) for r in requirements]
    assert names == list(dependencies.IMPORT_NAMES), "requirements.txt and IMPORT_NAMES name different packages"
    assert "PyWavelets" in names  # the native engine's wavelet image type (pywt)
    for requirement in requirements:  # a lower bound (a release built for numpy 2), no pins: pip resolves beside Slicer's
        assert re.fullmatch(r"[A-Za-z0-9._-]+(\[[a-z,]+\])?>=[0-9.]+", requirement), requirement
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    assert not any(canonical(line) in {"numpy", "scipy", "simpleitk", "vtk", "pyradiomics-bhklab", "pyradiomics"}
                   for line in lines if line), "Slicer's own packages and the optional pyradiomics are not installed"
    # The built extension installs the file beside RadiomicsLabLib (requirements_file()'s second folder).
    assert re.search(r"^\s*Resources/requirements\.txt\s*$", (ROOT / "RadiomicsLab" / "CMakeLists.txt").read_text(), re.M)
    assert dependencies.REQUIREMENTS_FOLDERS[1] == ROOT / "Resources"
    unknown = tmp_path / "requirements.txt"  # a requirement added to the file without its import names
    unknown.write_text(path.read_text() + "pandas>=2\n")
    with pytest.raises(KeyError, match="pandas .* has no import names"):
        dependencies.slicer_requirements(unknown)


def _import_owners() -> dict:
    """Top-level import name -> distributions that install it: ``importlib.metadata.packages_distributions()``,
    plus the single extension modules at the top level of a distribution (``ducc0.cpython-311-*.so``), which Python
    3.11's version leaves out (it infers top-level names from ``.py`` files only)."""
    import importlib.machinery

    owners = {name: list(found) for name, found in importlib.metadata.packages_distributions().items()}
    for distribution in importlib.metadata.distributions():
        for file in distribution.files or []:
            if len(file.parts) == 1:
                for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                    if file.name.endswith(suffix):
                        owners.setdefault(file.name[:-len(suffix)], []).append(distribution.metadata["Name"])
    return owners


def test_import_names_belong_to_the_requirements():
    owners = _import_owners()
    named = {**dependencies.IMPORT_NAMES, **{r: (name,) for r, name in dependencies.BUNDLED_WITH_SLICER.items()},
             **{r: names for r, (names, _) in dependencies.OPTIONAL_IN_SLICER.items()}}
    for requirement, modules in named.items():
        extras = re.search(r"\[(.*)\]", requirement)  # dask[distributed]: the extra is the distributed package
        distributions = {canonical(requirement), *(canonical(e) for e in (extras[1].split(",") if extras else []))}
        for module in modules:
            assert {canonical(d) for d in owners.get(module, [])} & distributions, (requirement, module)
    for module, (requirement, distribution) in TRANSITIVE.items():
        requires = {canonical(r) for r in importlib.metadata.requires(canonical(requirement)) or [] if "extra ==" not in r}
        assert canonical(distribution) in requires, f"{requirement} does not bring {distribution} ({module})"
        assert canonical(distribution) in {canonical(d) for d in owners.get(module, [])}, module


def test_code_run_in_slicer_imports_only_required_bundled_or_slicer_packages():
    package = ROOT / "RadiomicsLabLib"
    known = ({m for modules in dependencies.IMPORT_NAMES.values() for m in modules}
             | {m for names, _ in dependencies.OPTIONAL_IN_SLICER.values() for m in names}
             | set(dependencies.BUNDLED_WITH_SLICER.values()) | SLICER_APPLICATION | set(TRANSITIVE))
    unknown = set()
    for path in package.rglob("*.py"):
        name = path.relative_to(package).as_posix()
        if name.startswith(NOT_IN_SLICER_FILES):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for top in {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"RadiomicsLabLib"}:
                if top not in known and (name, top) not in HEADLESS_ONLY:
                    unknown.add((name, top))
    assert not unknown, f"imports desktop Slicer would lack; add them to RadiomicsLabLib.dependencies: {sorted(unknown)}"


NOT_INSTALLED = """
import importlib, sys
for name in sys.argv[1].split():
    sys.modules[name] = None  # import raises ModuleNotFoundError, importlib.util.find_spec returns None
from RadiomicsLabLib.dependencies import missing_requirements
print(" ".join(missing_requirements()))
for module in sys.argv[2:]:
    importlib.import_module(module)
"""


def test_startup_hooks_work_in_a_slicer_without_the_requirements():
    """At startup (before the module can pip-install anything) RadiomicsLab.py checks the requirements and
    registers its sample data and Segment Statistics plugin: that works in a Python with only what Slicer
    ships, every requirement's (and the command line's and web GUI's) import names absent, and all of the
    requirements are then reported missing. (test_slicer_module checks RadiomicsLab.py's own imports.)"""
    modules = ["RadiomicsLabLib.dependencies", "RadiomicsLabLib.mrml.sampledata", "RadiomicsLabLib.mrml.segmentstatistics"]
    absent = ({m for names in dependencies.IMPORT_NAMES.values() for m in names} | set(TRANSITIVE)
              | {m for names, _ in dependencies.OPTIONAL_IN_SLICER.values() for m in names}
              | {"trame", "trame_slicer", "trame_server", "click", "tqdm"})
    result = subprocess.run([sys.executable, "-c", NOT_INSTALLED, " ".join(sorted(absent)), *modules],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == list(dependencies.slicer_requirements())  # all missing, in file order


def test_nothing_is_missing_here_and_pins_name_the_bundled_versions():
    import scipy

    assert dependencies.missing_requirements() == []
    # Here vtk is the PyPI wheel trame-slicer brings; in Slicer it is Slicer's own (its vtk-*.dist-info).
    assert dependencies.bundled_pins() == [f"numpy=={np.__version__}", f"scipy=={scipy.__version__}",
                                           f"SimpleITK=={sitk.__version__}", f"pydicom=={importlib.metadata.version('pydicom')}",
                                           f"vtk=={importlib.metadata.version('vtk')}"]


#: Stand-ins for Slicer's Segment Statistics module (desktop Slicer's scripted module, not installable here), modelled on
#: Modules/Scripted/SegmentStatistics/SegmentStatistics.py and SegmentStatisticsPlugins/SegmentStatisticsPluginBase.py
#: of Slicer v5.10.0 (a2b6d082): registeredPlugins is a class list, registerPlugin(plugin instance) is a staticmethod
#: that ignores non-SegmentStatisticsPluginBase objects and keeps plugin.__class__ once, warning on a second time.
SEGMENT_STATISTICS_STANDIN = {
    "SegmentStatisticsPlugins/__init__.py": """
class SegmentStatisticsPluginBase:
    @staticmethod
    def createMeasurementInfo(name, title, description, units, quantityDicomCode=None, unitsDicomCode=None,
                              measurementMethodDicomCode=None, derivationDicomCode=None, componentNames=None):
        return {"name": name, "title": title, "description": description, "units": units}

    def __init__(self):
        self.name = ""
        self.title = ""
        self.keys = []
        self.defaultKeys = []
        self.requestedKeysCheckboxes = {}
        self.parameterNode = None
        self.parameterNodeObserver = None


class LabelmapSegmentStatisticsPlugin(SegmentStatisticsPluginBase):
    pass
""",
    "SegmentStatistics.py": """
import logging

from SegmentStatisticsPlugins import LabelmapSegmentStatisticsPlugin, SegmentStatisticsPluginBase


class SegmentStatisticsLogic:
    registeredPlugins = [LabelmapSegmentStatisticsPlugin]

    @staticmethod
    def registerPlugin(plugin):
        if not isinstance(plugin, SegmentStatisticsPluginBase):
            return
        for key in plugin.keys:
            if key.count(".") > 0:
                logging.warning("Plugin keys should not contain extra '.'")
        if plugin.__class__ not in SegmentStatisticsLogic.registeredPlugins:
            SegmentStatisticsLogic.registeredPlugins.append(plugin.__class__)
        else:
            logging.warning("SegmentStatisticsLogic.registerPlugin will not register plugin because another plugin "
                            "with the same name has already been registered")
""",
}

REGISTER_LATER = """
import importlib, io, json, logging, sys
sys.path.insert(0, sys.argv[1])  # the Segment Statistics stand-in
log = io.StringIO()
logging.basicConfig(level=logging.DEBUG, stream=log, format="%(levelname)s:%(name)s:%(message)s")
installed, optional = sys.argv[2].split(), sys.argv[3].split()
for name in installed + optional:
    sys.modules[name] = None  # not installed: import raises ModuleNotFoundError, find_spec returns None
import slicer
slicer.mrmlScene = slicer.vtkMRMLScene()  # desktop Slicer's application scene
from SegmentStatistics import SegmentStatisticsLogic
from RadiomicsLabLib.mrml.segmentstatistics import register_segment_statistics_plugin
steps = {"startup": register_segment_statistics_plugin()}
steps["startup_log"] = log.getvalue()
for name in installed:  # ensureDependencies() installed requirements.txt (the optional pyradiomics stays absent)
    del sys.modules[name]
importlib.invalidate_caches()
steps["installed"] = register_segment_statistics_plugin()
steps["again"] = register_segment_statistics_plugin()
steps["log"] = log.getvalue()[len(steps["startup_log"]):]
steps["plugins"] = [plugin.__name__ for plugin in SegmentStatisticsLogic.registeredPlugins]
print(json.dumps(steps))
"""


def test_segment_statistics_plugin_waits_for_the_packages_then_registers_without_restart(tmp_path):
    """Slicer's startup without RadiomicsLab's packages: one info line, no traceback, not registered; after
    ensureDependencies() installed them, in the same process: registered once (RadiomicsLab.py calls it there)."""
    for name, text in SEGMENT_STATISTICS_STANDIN.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    installed = {m for names in dependencies.IMPORT_NAMES.values() for m in names} | set(TRANSITIVE) - {"pykwalify"}
    optional = {m for names, _ in dependencies.OPTIONAL_IN_SLICER.values() for m in names} | {"pykwalify"}
    result = subprocess.run([sys.executable, "-c", REGISTER_LATER, str(tmp_path), " ".join(sorted(installed)),
                             " ".join(sorted(optional))], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = json.loads(result.stdout.strip().splitlines()[-1])
    from RadiomicsLabLib.mrml.segmentstatistics import PLUGIN_CLASS_NAME, PLUGIN_TITLE

    assert steps["startup"] is False
    ours = [line for line in steps["startup_log"].splitlines() if PLUGIN_TITLE in line]
    assert len(ours) == 1 and ours[0].startswith("INFO:root:"), steps["startup_log"]
    assert "missing: scikit-learn" in ours[0]
    assert "Traceback" not in steps["startup_log"] + result.stderr and "ERROR" not in steps["startup_log"]
    assert steps["installed"] is True and steps["again"] is True, steps["log"][-3000:]
    assert "Traceback" not in steps["log"] and "WARNING" not in steps["log"], steps["log"][-3000:]
    assert steps["plugins"] == ["LabelmapSegmentStatisticsPlugin", PLUGIN_CLASS_NAME]


def test_the_module_registers_the_plugin_at_startup_and_after_installing():
    source = (ROOT / "RadiomicsLab" / "RadiomicsLab.py").read_text()
    functions = {n.name: ast.unparse(n) for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    assert "register_segment_statistics_plugin()" in functions["onStartupCompleted"]
    ensure = functions["ensureDependencies"]
    assert ensure.index("slicer.util.pip_install") < ensure.index("register_segment_statistics_plugin()")
    assert ensure.index("testingEnabled()") < ensure.index("slicer.util.pip_install"), "installs in --testing mode"
    # pip_install(list): the list is the arguments of "pip install" (Slicer v5.10.0 Base/Python/slicer/util.py).
    assert "slicer.util.pip_install(['-r', str(requirements_file()), '-c', str(constraints)])" in ensure
    assert "bundled_pins()" in ensure


def cmake_script(tmp_path, text: str) -> subprocess.CompletedProcess:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake not found: install it (Debian: apt-get install cmake).")
    script = tmp_path / "script.cmake"
    script.write_text(text)
    return subprocess.run([cmake, "-P", str(script)], capture_output=True, text=True, timeout=60)


def test_the_extension_refuses_a_slicer_older_than_the_minimum(tmp_path):
    """The top-level CMakeLists.txt's minimum-version block, run by cmake with Slicer_VERSION as find_package sets it."""
    text = CMAKELISTS.read_text()
    block = re.search(r"^set\(RadiomicsLab_MINIMUM_SLICER_VERSION .*?^endif\(\)$", text, re.S | re.M).group()
    minimum = re.search(r'RadiomicsLab_MINIMUM_SLICER_VERSION "([0-9.]+)"', block)[1]
    assert minimum == "{}.{}".format(*dependencies.MINIMUM_SLICER_VERSION)
    assert text.index(block) < text.index("include(${Slicer_USE_FILE})"), "checked right after find_package(Slicer)"
    for version, accepted in (("5.8", False), ("5.9", False), ("5.10", True), ("5.12", True), ("6.0", True)):
        result = cmake_script(tmp_path, f'set(Slicer_VERSION "{version}")\nset(Slicer_DIR "/slicer-{version}")\n{block}\n')
        assert (result.returncode == 0) == accepted, (version, result.stderr)
        if not accepted:
            assert f"RadiomicsLab needs 3D Slicer 5.10 or newer (Python 3.12), not Slicer {version}" in " ".join(result.stderr.split())


def test_slicer_gets_neither_the_web_gui_nor_the_command_line(tmp_path):
    """RadiomicsLab/CMakeLists.txt's GLOB_RECURSE and filter, run by cmake on this checkout: every RadiomicsLabLib
    module except web/, commands/ and cli.py (which run on the headless runtime only) goes to Slicer."""
    text = (ROOT / "RadiomicsLab" / "CMakeLists.txt").read_text()
    glob = re.search(r"^file\(GLOB_RECURSE RadiomicsLabLib_PYTHON_SCRIPTS.*?^  \)$", text, re.S | re.M).group()
    filters = re.findall(r"^list\(FILTER RadiomicsLabLib_PYTHON_SCRIPTS .*\)$", text, re.M)
    assert filters, "nothing keeps the web GUI and the command line out of Slicer"
    result = cmake_script(tmp_path, f'set(RadiomicsLabLib_SOURCE_ROOT "{ROOT}")\n'
                          + glob.replace("CONFIGURE_DEPENDS", "") + "\n" + "\n".join(filters)
                          + '\nforeach(f IN LISTS RadiomicsLabLib_PYTHON_SCRIPTS)\n  message(STATUS "file: ${f}")\nendforeach()\n')
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^-- file: (.*)$", result.stdout, re.M))
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "RadiomicsLabLib").rglob("*.py")
                if not p.relative_to(ROOT / "RadiomicsLabLib").as_posix().startswith(NOT_IN_SLICER_FILES)}
    assert listed == expected
    assert "RadiomicsLabLib/mrml/app.py" in listed and "RadiomicsLabLib/dependencies.py" in listed


# (c) ---------------------------------------------------------------------------------------------
#: Parameters of SampleData.SampleDataLogic.registerCustomSampleDataSource, read in Slicer's
#: Modules/Scripted/SampleData/SampleData.py at v5.8.1 (11eaf62e5a70b828021ff8beebbdd14d10d4f51c) and
#: main (583e9b37d50ead7daf7b783dce465ccaecec8809): identical. v5.6.2 (f10cd8c2) has loadFileType, no loadFileTypes.
REGISTER_PARAMETERS = {"category", "sampleName", "uris", "fileNames", "nodeNames", "customDownloader",
                       "thumbnailFileName", "loadFileTypes", "loadFiles", "loadFileProperties", "checksums",
                       "loadFileType"}
#: File types of Slicer's readers (qSlicerVolumesReader, qSlicerSegmentationsReader: fileType()).
SLICER_FILE_TYPES = {"VolumeFile", "SegmentationFile"}


@pytest.fixture(scope="module")
def cases_folder(data):
    return data / "pyradiomics_cases"


def test_checksums_match_the_reference_files(cases_folder):
    for case in sampledata.SAMPLE_CASES:
        for name, checksum in zip(case.file_names, case.checksums):
            digest = hashlib.sha256((cases_folder / name).read_bytes()).hexdigest()
            assert checksum == f"SHA256:{digest}", name
    assert re.fullmatch(r"https://raw\.githubusercontent\.com/AIM-Harvard/pyradiomics/[0-9a-f]{40}/data/",
                        sampledata.PYRADIOMICS_DATA_URL)


def test_sources_are_arguments_slicer_accepts():
    sources = sampledata.sample_data_sources()
    assert [s["sampleName"] for s in sources] == ["PyradiomicsBrain1", "PyradiomicsBrain2", "PyradiomicsBreast1"]
    for source in sources:
        assert set(source) <= REGISTER_PARAMETERS, set(source) - REGISTER_PARAMETERS
        assert source["category"] == "RadiomicsLab"
        per_file = ("uris", "fileNames", "nodeNames", "checksums", "loadFileTypes")
        assert len({len(source[key]) for key in per_file}) == 1, "SampleDataSource raises ValueError on unequal lengths"
        assert [uri.rsplit("/", 1)[1] for uri in source["uris"]] == source["fileNames"]
        assert all(re.fullmatch(r"SHA256:[0-9a-f]{64}", c) for c in source["checksums"])
        assert source["loadFileTypes"] == ["VolumeFile", "SegmentationFile"]
        assert set(source["loadFileTypes"]) <= SLICER_FILE_TYPES
        assert Path(source["thumbnailFileName"]).is_file()


def test_thumbnails_are_where_the_extension_installs_them():
    module_cmake = (ROOT / "RadiomicsLab" / "CMakeLists.txt").read_text()
    installed, source = sampledata.THUMBNAIL_FOLDERS
    # Built, the module's resources are in <scripted modules>/Resources/ and RadiomicsLabLib in <scripted modules>/
    # (RadiomicsLab/CMakeLists.txt), as the checkout has RadiomicsLabLib/ in ROOT.
    assert installed == ROOT / "Resources" / "Icons" / "SampleData"
    assert source == ROOT / "RadiomicsLab" / "Resources" / "Icons" / "SampleData"
    assert sampledata.thumbnail_folder() == source  # a source checkout
    for case in sampledata.SAMPLE_CASES:
        assert re.search(rf"^\s*Resources/Icons/SampleData/{case.name}\.png\s*$", module_cmake, re.MULTILINE), case.name


def test_thumbnails_are_renders_of_the_real_cases(cases_folder):
    from PIL import Image

    for case in sampledata.SAMPLE_CASES:
        with Image.open(sampledata.SOURCE_THUMBNAIL_FOLDER / f"{case.name}.png") as picture:
            assert (picture.format, picture.size) == ("PNG", (128, 128))
            stored = np.asarray(picture.convert("RGB")).astype(int)
        image, label = (cases_folder / name for name in case.file_names)
        rendered = sampledata.render_thumbnail(image, label)
        assert rendered.shape == (128, 128, 3)
        assert np.abs(stored - rendered).max() <= 1, case.name
        outline = np.all(stored == (255, 200, 0), axis=2)
        assert 5 < outline.sum() < 0.05 * 128 * 128, case.name  # the lesion's outline, not a flat picture
        assert len(np.unique(stored.reshape(-1, 3), axis=0)) > 50, case.name


def test_label_maps_load_as_segmentations(cases_folder):
    """What Slicer's SegmentationFile reader does with a plain label map: one segment per label value."""
    import slicer
    from vtkmodules.util.numpy_support import vtk_to_numpy

    scene = slicer.vtkMRMLScene()
    for case in sampledata.SAMPLE_CASES:
        path = cases_folder / case.file_names[1]
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        storage = slicer.vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(path))
        assert storage.ReadData(node), path
        segmentation = node.GetSegmentation()
        assert segmentation.GetNumberOfSegments() == 1, path
        labelmap = slicer.vtkOrientedImageData()
        node.GetBinaryLabelmapRepresentation(segmentation.GetNthSegmentID(0), labelmap)
        voxels = int((vtk_to_numpy(labelmap.GetPointData().GetScalars()) > 0).sum())
        assert voxels == int((sitk.GetArrayViewFromImage(sitk.ReadImage(str(path))) > 0).sum()) > 0, path


def test_registration_outside_desktop_slicer_says_why(caplog):
    with caplog.at_level(logging.WARNING):
        assert sampledata.register_sample_data() is False
    assert "only in desktop Slicer's Sample Data module" in caplog.text
