"""Installing RadiomicsLab in desktop 3D Slicer, checked without desktop Slicer.

(a) Wheels: ``RadiomicsLab/Resources/requirements.txt`` (what the module pip-installs into Slicer's Python on first
    use) resolves to wheels only, for CPython 3.12 on Windows x86-64, macOS arm64, macOS x86-64 and Linux x86-64,
    beside the numpy, scipy, SimpleITK and VTK of Slicer 5.10 (pinned as constraints, as ``ensureDependencies()``
    pins the running Slicer's): ``pip install --dry-run --only-binary=:all:`` against PyPI. Slicer users on Windows
    and macOS have no C compiler, so a requirement without a wheel (e.g. ``pyradiomics-bhklab``, a source
    distribution only) would make the first-use install fail there: the check fails naming it.
(b) Slicer's Python: RadiomicsLab.py run by a Python 3.9 (the Python of Slicer 5.0 to 5.8) tells the user which Slicer
    to install instead of failing with a traceback; a Python 3.12 virtual environment (``.venv-slicer312``, made here
    and kept while current) with requirements.txt and Slicer 5.10's numpy, scipy and SimpleITK imports every
    RadiomicsLabLib module the desktop module uses.

Desktop Slicer itself cannot be installed from a package registry, so (b) runs RadiomicsLab.py with minimal
stand-in ``slicer`` (application object, ``ScriptedLoadableModule`` classes), ``qt``, ``vtk`` and ``ctk`` modules
that only record what the module does with them; the Python 3.12 environment uses PyPI's ``slicer-core`` (the
headless MRML library of DESIGN.md, with PyPI's VTK 9.6, not Slicer 5.10's VTK 9.5.2) for ``slicer``.
Needs PyPI (a, b) and Python 3.9 and 3.12 interpreters (b: ``python3.9`` / ``python3.12`` on PATH or pyenv's).
"""

import concurrent.futures
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from RadiomicsLabLib import dependencies

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "RadiomicsLab" / "Resources" / "requirements.txt"
MODULE_PY = ROOT / "RadiomicsLab" / "RadiomicsLab.py"

#: pip --platform tags of the oldest systems Slicer 5.10 supports (its Docs/user_guide/getting_started.md at v5.10.0:
#: "macOS Ventura (13) or later (both Intel and ARM based systems)", Windows 10, "CentOS 7 or later" = glibc 2.17;
#: CMake/SlicerInitializeOSXVariables.cmake requires CMAKE_OSX_DEPLOYMENT_TARGET 13.0). pip expands a macosx_13_0 tag to
#: every macOS tag a 13.0 system accepts (older macosx_*, universal2, ...), but not manylinux_2_17: for Linux the
#: tags a glibc 2.17 system accepts are listed, as packaging.tags gives them (manylinux_2_17 .. 2_5 and the legacy
#: manylinux2014/2010/1 aliases).
PLATFORMS = {
    "Windows x86-64": ["win_amd64"],
    "macOS arm64": ["macosx_13_0_arm64"],
    "macOS x86-64": ["macosx_13_0_x86_64"],
    "Linux x86-64": [f"manylinux_2_{minor}_x86_64" for minor in range(17, 4, -1)]
                    + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"],
}
PYTHON = "{}.{}".format(*dependencies.MINIMUM_SLICER_PYTHON)


def slicer_constraints(path: Path) -> Path:
    """Slicer 5.10's own versions (RadiomicsLabLib.dependencies.SLICER_5_10_VERSIONS) as a pip constraints file."""
    path.write_text("".join(f"{name}=={version}\n" for name, version in dependencies.SLICER_5_10_VERSIONS.items()))
    return path


def resolve(requirements: Path, platforms: list, folder: Path) -> dict:
    """pip's wheel-only resolution of ``requirements`` for CPython 3.12 on ``platforms``: returncode, the JSON
    report (what would be installed), the requirements pip found no wheel for, and pip's messages."""
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-input",
               "--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp",
               *(option for tag in platforms for option in ("--platform", tag)),
               "--target", str(folder / "target"), "--report", str(report),
               "-r", str(requirements), "-c", str(slicer_constraints(folder / "slicer-constraints.txt"))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    messages = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("WARNING: Location"))
    return {"returncode": result.returncode, "messages": messages,
            "report": json.loads(report.read_text(encoding="utf-8")) if result.returncode == 0 else None,
            "no_wheel": re.findall(r"No matching distribution found for (\S+)", messages)}


def check_wheels(resolution: dict, platform: str) -> None:
    """Fail, naming the requirements without a wheel, unless the resolution installs wheels only."""
    if resolution["returncode"] != 0:
        named = ", ".join(resolution["no_wheel"]) or "see pip's messages"
        pytest.fail(f"{platform}: no CPython {PYTHON} wheel for {named} beside Slicer's numpy/scipy/SimpleITK/VTK; "
                    f"Slicer users there could not install RadiomicsLab's requirements.\n{resolution['messages'][-3000:]}")


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory):
    """Each platform's resolution of requirements.txt, and requirements.txt + pyradiomics-bhklab on Windows
    (pip runs in parallel: each mostly waits for PyPI)."""
    folder = tmp_path_factory.mktemp("wheels")
    with_pyradiomics = folder / "with-pyradiomics.txt"
    with_pyradiomics.write_text(REQUIREMENTS.read_text() + "pyradiomics-bhklab\n")
    lowest = folder / "lower-bounds.txt"  # each requirement at its lower bound
    lowest.write_text("".join(r.replace(">=", "==") + "\n" for r in dependencies.slicer_requirements()))
    jobs = {**{platform: (REQUIREMENTS, tags) for platform, tags in PLATFORMS.items()},
            **{f"lowest {platform}": (lowest, tags) for platform, tags in PLATFORMS.items()},
            "pyradiomics": (with_pyradiomics, PLATFORMS["Windows x86-64"])}
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(resolve, requirements, tags, folder / re.sub(r"\W+", "-", name))
                   for name, (requirements, tags) in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


# (a) ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_requirements_have_wheels_beside_slicers_packages(resolutions, platform):
    resolution = resolutions[platform]
    check_wheels(resolution, platform)
    installed = {dependencies.requirement_name(item["metadata"]["name"]).lower(): item
                 for item in resolution["report"]["install"]}
    for requirement in dependencies.slicer_requirements():
        name = re.sub(r"\[.*\]", "", dependencies.requirement_name(requirement)).lower()
        assert name in installed, f"{platform}: {requirement} is not in pip's resolution"
    for item in installed.values():
        url = item["download_info"]["url"]
        assert url.endswith(".whl"), f"{platform}: {item['metadata']['name']} would be built from {url}"
        assert re.search(r"-(cp312-cp312|cp3\d+-abi3|py3-none|py2\.py3-none)-", url.rsplit("/", 1)[1]), url
    # Slicer's own numpy and scipy stay (nothing asks pip for SimpleITK or VTK, which would be pinned too).
    for name in ("numpy", "scipy"):
        assert installed[name]["metadata"]["version"] == dependencies.SLICER_5_10_VERSIONS[name], (platform, name)
    assert "vtk" not in installed and "simpleitk" not in installed, f"{platform}: a requirement wants Slicer's VTK or SimpleITK"


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_lower_bounds_have_wheels_beside_slicers_packages(resolutions, platform):
    """A Slicer whose Python already has a requirement at its lower bound keeps it: that release must have a
    CPython 3.12 wheel that pip accepts beside Slicer 5.10's numpy and scipy (its declared dependencies)."""
    check_wheels(resolutions[f"lowest {platform}"], f"{platform}, lower bounds")


def test_a_source_only_requirement_fails_the_check_naming_it(resolutions):
    """pyradiomics-bhklab has no wheel (a source distribution only): the check fails and names it, and only it."""
    resolution = resolutions["pyradiomics"]
    assert resolution["returncode"] != 0 and resolution["no_wheel"] == ["pyradiomics-bhklab"], resolution["messages"]
    with pytest.raises(pytest.fail.Exception, match="no CPython 3.12 wheel for pyradiomics-bhklab"):
        check_wheels(resolution, "Windows x86-64")


def test_minimum_versions_are_slicer_5_10s():
    assert dependencies.MINIMUM_SLICER_VERSION == (5, 10) and dependencies.MINIMUM_SLICER_PYTHON == (3, 12)
    assert dependencies.unsupported_slicer_message((3, 12, 10), (5, 10)) is None
    assert dependencies.unsupported_slicer_message((3, 13, 1), (6, 0)) is None
    assert dependencies.unsupported_slicer_message((3, 12, 4)) is None  # Slicer version unknown: Python decides
    assert dependencies.unsupported_slicer_message((3, 9, 10), (5, 8)) == (
        "RadiomicsLab needs 3D Slicer 5.10 or newer (Python 3.12); this Slicer (5.8) runs Python 3.9. Install Slicer "
        "5.10 or newer from https://download.slicer.org, then RadiomicsLab from its Extensions Manager.")
    assert "this Slicer (5.9) runs Python 3.12" in dependencies.unsupported_slicer_message((3, 12, 10), (5, 9))


# (b) ---------------------------------------------------------------------------------------------
def find_python(minor: int) -> str:
    """A CPython 3.<minor> interpreter that runs: pyenv's newest 3.<minor>.*, else python3.<minor> on PATH."""
    candidates = [*sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/3.{minor}.*/bin/python")), reverse=True),
                  *filter(None, [shutil.which(f"python3.{minor}")])]
    found = next((c for c in candidates if subprocess.run(
        [c, "-c", f"import sys; sys.exit(sys.version_info[:2] != (3, {minor}))"], capture_output=True).returncode == 0), None)
    if found is None:
        pytest.fail(f"No Python 3.{minor} here: install one (e.g. pyenv install 3.{minor}) to check RadiomicsLab.py "
                    f"on the Python of {'Slicer 5.0 to 5.8' if minor == 9 else 'Slicer 5.10'}.")
    return found


#: Stand-ins for what RadiomicsLab.py touches of desktop Slicer, Qt, VTK and CTK while it loads and shows the module:
#: they record, nothing more. Names follow Slicer's Base/Python/slicer/ScriptedLoadableModule.py (v5.8.1).
STANDIN_QT = '''
class _Anything:
    """Any class or constant of the real module: calls and attributes give more stand-ins."""
    def __init__(self, *args, **kwargs):
        self.args = args
    def __call__(self, *args, **kwargs):
        return _Anything(*args)
    def __getattr__(self, name):
        return _Anything()


class QLabel:
    def __init__(self, text=""):
        self.text = text
        self.wordWrap = False
        self.openExternalLinks = False


class QIcon:
    def __init__(self, path):
        self.path = path


def __getattr__(name):
    return _Anything
'''
STANDIN_APPLICATION = '''
import os


class Application:
    """slicer.app: the Slicer version (STANDIN_SLICER_VERSION), signal connections recorded."""
    majorVersion, minorVersion = (int(v) for v in os.environ["STANDIN_SLICER_VERSION"].split("."))

    def __init__(self):
        self.connections = []

    def connect(self, signal, slot):
        self.connections.append(signal)

    def testingEnabled(self):
        return False
'''
STANDIN_SLICER = '''
from qt import _Anything
from standin_application import Application

app = Application()


def __getattr__(name):  # the MRML, segmentation and widget classes every Slicer 5 has
    if name.startswith(("vtk", "qMRML", "qSlicer")):
        return _Anything()
    raise AttributeError(name)
'''
STANDIN_SCRIPTED_MODULE = '''
import os
import unittest


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title, parent.categories, parent.contributors = "", [], []
        parent.helpText = parent.acknowledgementText = ""

    def resourcePath(self, filename):
        return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)


class _Layout:
    def __init__(self):
        self.widgets = []
    def addWidget(self, widget):
        self.widgets.append(widget)
    def addStretch(self, stretch=0):
        self.widgets.append("stretch")


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent
        self.layout = _Layout()
    def setup(self):
        self.layout.widgets.append("developer area")


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        pass


class ScriptedLoadableModuleTest(unittest.TestCase):
    pass
'''
STANDIN_SLICER_UTIL = '''
class VTKObservationMixin:
    def __init__(self):
        self.Observations = []
'''
#: Loads RadiomicsLab.py as Slicer does (qSlicerScriptedUtils::loadSourceAsModule: the file run as module
#: "RadiomicsLab", in sys.modules; Slicer 5.8 uses imp.load_source), makes the module class, then the widget class the
#: module has by then (qSlicerScriptedLoadableModuleWidget::setPythonSource looks it up at that time) and sets it up;
#: prints what the user would see.
LOAD_MODULE = '''
import importlib.util, json, sys


class Parent:
    path = sys.argv[1]


spec = importlib.util.spec_from_file_location("RadiomicsLab", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["RadiomicsLab"] = module
spec.loader.exec_module(module)
parent = Parent()
module.RadiomicsLab(parent)
widgetClass = getattr(sys.modules["RadiomicsLab"], "RadiomicsLabWidget")
shown = {"helpText": parent.helpText, "categories": parent.categories, "contributors": parent.contributors,
         "icon": getattr(getattr(parent, "icon", None), "path", None), "widgetClass": widgetClass.__name__,
         "connections": __import__("slicer").app.connections,
         "RadiomicsLabLib": sorted(m for m in sys.modules if m.startswith("RadiomicsLabLib"))}
if sys.argv[2] == "setup":
    widget = widgetClass(None)
    widget.setup()
    shown["panel"] = [w if isinstance(w, str) else {"text": w.text, "wordWrap": w.wordWrap, "links": w.openExternalLinks}
                      for w in widget.layout.widgets]
print(json.dumps(shown))
'''


def write_standins(folder: Path, slicer_package: bool) -> Path:
    """qt, ctk, the application object and the scripted-module classes; with ``slicer_package`` also vtk and slicer
    (else the real ones: PyPI's vtk and slicer-core)."""
    files = {"qt.py": STANDIN_QT, "ctk.py": "def __getattr__(name):\n    raise AttributeError(name)\n",
             "standin_application.py": STANDIN_APPLICATION, "standin_scripted_module.py": STANDIN_SCRIPTED_MODULE}
    if slicer_package:
        files |= {"vtk.py": "def __getattr__(name):\n    raise AttributeError(name)\n",
                  "slicer/__init__.py": STANDIN_SLICER, "slicer/ScriptedLoadableModule.py": "from standin_scripted_module import *\n",
                  "slicer/util.py": STANDIN_SLICER_UTIL}
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def load_module(python: str, standins: Path, slicer_version: str, setup: bool, prelude: str = "") -> dict:
    env = {**os.environ, "PYTHONPATH": str(standins), "STANDIN_SLICER_VERSION": slicer_version,
           "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([python, "-c", prelude + LOAD_MODULE, str(MODULE_PY), "setup" if setup else "no-setup"],
                            capture_output=True, text=True, env=env, cwd=standins, timeout=300)
    assert result.returncode == 0, f"RadiomicsLab.py failed to load:\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_in_an_older_slicer_the_module_says_which_slicer_it_needs(tmp_path):
    """Python 3.9 as in Slicer 5.0 to 5.8 (Slicer_REQUIRED_PYTHON_VERSION 3.9.10), Slicer 5.8 without slicer.i18n and
    slicer.parameterNodeWrapper (they came in 5.4; 5.0 and 5.2 lack them): the module loads, its help and its panel give
    the message, and nothing else is set up (no startup hooks, no RadiomicsLabLib module but dependencies)."""
    python = find_python(9)
    shown = load_module(python, write_standins(tmp_path, slicer_package=True), "5.8", setup=True)
    message = ("RadiomicsLab needs 3D Slicer 5.10 or newer (Python 3.12); this Slicer (5.8) runs Python 3.9. Install "
               "Slicer 5.10 or newer from <a href=\"https://download.slicer.org\">https://download.slicer.org</a>, "
               "then RadiomicsLab from its Extensions Manager.")
    assert shown["helpText"] == f"<p>{message}</p>"
    assert shown["panel"] == [{"text": f"<p>{message}</p>", "wordWrap": True, "links": True}, "stretch"]
    assert shown["widgetClass"] == "_UnsupportedSlicerWidget" and shown["connections"] == []
    assert shown["RadiomicsLabLib"] == ["RadiomicsLabLib", "RadiomicsLabLib.dependencies"]
    assert shown["categories"] == ["Quantification"] and shown["icon"].endswith("Icons/RadiomicsLab.png")


SLICER312 = ROOT / ".venv-slicer312"


def slicer_core_version() -> str:
    """slicer-core of requirements.lock: the project's headless MRML library (DESIGN.md), here standing for Slicer's."""
    return re.search(r"^slicer-core==(\S+)$", (ROOT / "requirements.lock").read_text(), re.M)[1]


@pytest.fixture(scope="module")
def slicer312_python():
    """Python 3.12 with requirements.txt installed by pip beside Slicer 5.10's numpy, scipy and SimpleITK: made in
    .venv-slicer312 (git-ignored), remade only when the interpreter, requirements.txt or those versions change."""
    base = find_python(12)
    bundled = {name: version for name, version in dependencies.SLICER_5_10_VERSIONS.items() if name != "vtk"}
    pins = [f"{name}=={version}" for name, version in bundled.items()] + [f"slicer-core=={slicer_core_version()}"]
    key = hashlib.sha256(json.dumps([os.path.realpath(base), REQUIREMENTS.read_text(), pins]).encode()).hexdigest()
    python, stamp = SLICER312 / "bin" / "python", SLICER312 / ".radiomicslab-stamp"
    if not (python.exists() and stamp.exists() and stamp.read_text() == key):
        shutil.rmtree(SLICER312, ignore_errors=True)
        subprocess.run([base, "-m", "venv", str(SLICER312)], check=True, timeout=300)
        constraints = SLICER312 / "slicer-constraints.txt"
        constraints.write_text("".join(f"{pin}\n" for pin in pins))
        result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--only-binary=:all:",
                                 "-r", str(REQUIREMENTS), "-c", str(constraints), *pins],
                                capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, f"pip install into {SLICER312} failed:\n{result.stderr[-4000:]}"
        stamp.write_text(key)
    return str(python)


#: RadiomicsLabLib files the desktop module never runs (test_extension_build.NOT_IN_SLICER_FILES; not installed).
NOT_IN_SLICER = ("cli.py", "commands/", "web/")
IMPORT_ALL = '''
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
for name in ("RadiomicsLabLib.cli", "RadiomicsLabLib.commands", "RadiomicsLabLib.web"):
    sys.modules[name] = None  # not installed into Slicer (RadiomicsLab/CMakeLists.txt): importing them fails
imported = []
for name in sys.argv[2:]:
    importlib.import_module(name)
    imported.append(name)
import numpy, scipy, SimpleITK
print(json.dumps({"imported": imported, "python": list(sys.version_info[:2]), "numpy": numpy.__version__,
                  "scipy": scipy.__version__, "SimpleITK": SimpleITK.__version__,
                  "trame": [m for m in sys.modules if m.startswith("trame")]}))
'''


def test_every_desktop_module_imports_on_slicer_5_10s_python_and_packages(slicer312_python):
    package = ROOT / "RadiomicsLabLib"
    modules = sorted(".".join(("RadiomicsLabLib", *path.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
                     for path in package.rglob("*.py")
                     if not path.relative_to(package).as_posix().startswith(NOT_IN_SLICER))
    imports = sorted({m for names in dependencies.IMPORT_NAMES.values() for m in names})
    assert "RadiomicsLabLib.mrml.app" in modules and len(modules) > 30
    result = subprocess.run([slicer312_python, "-c", IMPORT_ALL, str(ROOT), *imports, *modules],
                            capture_output=True, text=True, timeout=600, cwd=ROOT.parent)
    assert result.returncode == 0, result.stderr[-4000:]
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown["imported"] == imports + modules
    assert shown["python"] == list(dependencies.MINIMUM_SLICER_PYTHON)
    for name in ("numpy", "scipy", "SimpleITK"):
        assert shown[name] == dependencies.SLICER_5_10_VERSIONS[name], name
    assert shown["trame"] == [], "mrml/app.py's trame part is imported without a headless app"


#: The parts of desktop Slicer that slicer-core lacks (DESIGN.md), as stand-ins on top of the real ``slicer`` package.
DESKTOP_PARTS = '''
import sys, types
import slicer
from standin_application import Application
slicer.app = Application()
modules = {"slicer.ScriptedLoadableModule": "from standin_scripted_module import *\\n",
           "slicer.i18n": "def tr(text):\\n    return text\\ndef translate(context, text):\\n    return text\\n",
           "slicer.parameterNodeWrapper": "def parameterNodeWrapper(cls):\\n    return cls\\n"
                                          "def Choice(*a, **k):\\n    return None\\nWithinRange = Choice\\n"}
for name, text in modules.items():
    sys.modules[name] = types.ModuleType(name)
    exec(text, sys.modules[name].__dict__)
'''


def test_in_slicer_5_10_the_module_sets_itself_up(tmp_path, slicer312_python):
    """Python 3.12 with the real MRML library (slicer-core) and stand-ins for the rest of the application: the module
    class gets its help (with a link to the documentation), its category, and connects its startup hooks."""
    standins = write_standins(tmp_path, slicer_package=False)
    shown = load_module(slicer312_python, standins, "5.10", setup=False, prelude=DESKTOP_PARTS)
    assert shown["widgetClass"] == "RadiomicsLabWidget" and shown["connections"] == ["startupCompleted()"]
    assert '<a href="https://github.com/RadiomicsLab/RadiomicsLab#readme">RadiomicsLab documentation</a>' in shown["helpText"]
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', (ROOT / "CMakeLists.txt").read_text())[1]
    assert f'href="{homepage}#readme"' in shown["helpText"]
    assert shown["categories"] == ["Quantification"] and shown["contributors"] == ["RadiomicsLab team (RadiomicsLab)"]
    assert "RadiomicsLabLib.mrml.extraction" in shown["RadiomicsLabLib"]
