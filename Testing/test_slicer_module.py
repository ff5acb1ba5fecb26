"""The desktop Slicer module, checked without desktop Slicer.

``RadiomicsLab/RadiomicsLab.py`` needs Qt and ``slicer.ScriptedLoadableModule``, which only the
Slicer application has, so it is checked statically: it compiles, the widget names it uses are in
its .ui file, the widgets bound to the parameter node name real parameters of a type Slicer's
parameter node wrapper can bind, the CMake files list files that exist. The module self-test's
scenarios (``RadiomicsLabLib.mrml.scenarios``) run here for real on a headless scene.
"""

import ast
import py_compile
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from RadiomicsLabLib.data import data_dir
from RadiomicsLabLib.settings import load_settings, parse_image_types, preset_names

ROOT = Path(__file__).resolve().parent.parent
MODULE_DIR = ROOT / "RadiomicsLab"
MODULE_PY = MODULE_DIR / "RadiomicsLab.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "RadiomicsLab.ui"
ICON = MODULE_DIR / "Resources" / "Icons" / "RadiomicsLab.png"
PARAMETER_NAME = "SlicerParameterName"
QT_CLASSES = {"QLabel", "QPushButton", "QListWidget", "QComboBox", "QLineEdit", "QProgressBar", "QWidget"}


@pytest.fixture(scope="module")
def source() -> str:
    return MODULE_PY.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def ui_root():
    return ET.parse(UI_FILE).getroot()


def ui_widgets(root) -> dict:
    """name -> <widget> element, for every widget in the .ui file."""
    return {w.get("name"): w for w in root.iter("widget")}


def string_property(widget, name):
    prop = widget.find(f"property[@name='{name}']")
    return None if prop is None else prop.findtext("string")


def parameter_fields(source: str) -> dict:
    """Annotated fields of the parameterNodeWrapper class: name -> annotation source text."""
    tree = ast.parse(source)
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RadiomicsLabParameterNode"]
    assert any(ast.unparse(d) == "parameterNodeWrapper" for d in cls.decorator_list), "missing @parameterNodeWrapper"
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body if isinstance(n, ast.AnnAssign)}


def module_function(source: str, name: str):
    """A module-level function of RadiomicsLab.py, compiled alone (the module itself needs desktop Slicer)."""
    tree = ast.parse(source)
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    namespace = {"re": re}
    exec(compile(ast.Module(body=[func], type_ignores=[]), str(MODULE_PY), "exec"), namespace)
    return namespace[name]


# (a) ---------------------------------------------------------------------------------------------
def test_module_compiles_and_has_the_scripted_module_classes(source, tmp_path):
    py_compile.compile(str(MODULE_PY), cfile=str(tmp_path / "RadiomicsLab.pyc"), doraise=True)
    classes = {n.name: [ast.unparse(b) for b in n.bases] for n in ast.parse(source).body if isinstance(n, ast.ClassDef)}
    assert classes["RadiomicsLab"] == ["ScriptedLoadableModule"]
    assert classes["RadiomicsLabWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert classes["RadiomicsLabLogic"] == ["ScriptedLoadableModuleLogic", "ExtractionLogic"]
    assert classes["RadiomicsLabTest"] == ["ScriptedLoadableModuleTest"]
    assert 'self.resourcePath("UI/RadiomicsLab.ui")' in source
    self_test = source.split("class RadiomicsLabTest")[1]
    for scenario in ("load_sample", "extract_sample", "save_and_reload"):
        assert f"scenarios.{scenario}(slicer.mrmlScene" in self_test or f"scenarios.{scenario}(scene" in self_test, scenario


# (b) ---------------------------------------------------------------------------------------------
def test_every_ui_attribute_used_is_a_widget_of_the_ui_file(source, ui_root):
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    names = set(ui_widgets(ui_root))
    assert {"applyButton", "progressBar", "cancelButton", "segmentsListWidget"} <= used
    assert used - names == set(), f"RadiomicsLab.py uses widgets missing from {UI_FILE.name}"


def test_bound_widgets_name_parameters_of_a_bindable_type(source, ui_root):
    fields = parameter_fields(source)
    assert set(fields) == {"inputVolume", "inputSegmentation", "preset", "parameterFile", "imageTypes", "outputTable"}
    bound = {string_property(w, PARAMETER_NAME): w for w in ui_root.iter("widget") if string_property(w, PARAMETER_NAME)}
    assert set(bound) - set(fields) == set(), "widgets bound to parameters the parameter node does not have"
    # parameterFile is a str; Slicer binds ctkPathLineEdit only to pathlib.Path, so the widget syncs it by hand.
    assert set(fields) - set(bound) == {"parameterFile"}
    assert "parameterFilePathLineEdit" in source and "parameterFile" in source
    for name, widget in bound.items():
        kind, annotation = widget.get("class"), fields[name]
        if kind == "qMRMLNodeComboBox":  # Slicer: qMRMLNodeComboBoxToNodeConnector
            assert annotation.startswith("vtkMRML"), (name, annotation)
            assert widget.find("property[@name='nodeTypes']/stringlist/string").text == annotation
        elif kind == "QLineEdit":  # QLineEditToStrConnector
            assert annotation == "str", (name, annotation)
        elif kind == "QComboBox":  # QComboBoxToStringableConnector needs a Choice annotation
            assert re.fullmatch(r"Annotated\[str, Choice\(.+\)\]", annotation), (name, annotation)
        else:
            pytest.fail(f"no parameter node GUI connector for a {kind} bound to '{name}'")


def test_image_types_text_splits_into_specs_pyradiomics_accepts(source):
    split = module_function(source, "splitImageTypes")
    assert split("") == []
    assert split("Original") == ["Original"]
    assert split("Original, LoG:sigma=1,3") == ["Original", "LoG:sigma=1,3"]
    typed = "Original  LoG:sigma=1, 3 Wavelet:wavelet=db2; level=1"
    assert split(typed) == ["Original", "LoG:sigma=1,3", "Wavelet:wavelet=db2;level=1"]
    assert parse_image_types(split(typed)) == {
        "Original": {}, "LoG": {"sigma": [1, 3]}, "Wavelet": {"wavelet": "db2", "level": 1},
    }
    settings = load_settings("pyradiomics-default", split(typed))  # validated by pyradiomics' schema
    assert set(settings.params["imageType"]) == {"Original", "LoG", "Wavelet"}
    default = re.search(r'imageTypes: str = "([^"]*)"', source).group(1)
    assert load_settings(None, split(default)).params["imageType"] == {"Original": {}}


# (c) ---------------------------------------------------------------------------------------------
def test_ui_file_is_a_qmrmlwidget_with_declared_custom_widgets_and_scene_connections(ui_root):
    assert ui_root.tag == "ui" and ui_root.get("version") == "4.0"
    top = ui_root.find("widget")
    assert (top.get("class"), top.get("name")) == ("qMRMLWidget", "RadiomicsLab")
    widgets = ui_widgets(ui_root)
    declared = {c.findtext("class"): c for c in ui_root.iter("customwidget")}
    custom = {w.get("class") for w in widgets.values()} - QT_CLASSES
    assert custom <= set(declared), f"undeclared custom widgets {custom - set(declared)}"
    for cls in custom:
        assert declared[cls].findtext("header") == f"{cls}.h"
    assert declared["qMRMLWidget"].findtext("container") == "1"
    assert declared["ctkCollapsibleButton"].findtext("container") == "1"
    sections = [string_property(w, "text") for w in widgets.values() if w.get("class") == "ctkCollapsibleButton"]
    assert sections == ["Inputs", "Settings", "Output"]
    combos = {n for n, w in widgets.items() if w.get("class") == "qMRMLNodeComboBox"}
    connected = {
        c.findtext("receiver") for c in ui_root.iter("connection")
        if c.findtext("sender") == "RadiomicsLab" and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    assert combos == connected == {"inputVolumeSelector", "inputSegmentationSelector", "outputTableSelector"}
    output = widgets["outputTableSelector"]
    for flag in ("noneEnabled", "addEnabled", "renameEnabled"):
        assert output.findtext(f"property[@name='{flag}']/bool") == "true", flag
    assert string_property(output, "noneDisplay") == "Create new table"


# (d) ---------------------------------------------------------------------------------------------
def test_cmake_files_name_the_module_files_that_exist():
    module_cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    module_name = re.search(r"set\(MODULE_NAME (\w+)\)", module_cmake).group(1)
    assert module_name == "RadiomicsLab"
    expanded = module_cmake.replace("${MODULE_NAME}", module_name)
    listed = set(re.findall(r"^\s*([\w/]+\.(?:py|ui|png))\s*$", expanded, re.MULTILINE))
    assert listed == {"RadiomicsLab.py", "Resources/UI/RadiomicsLab.ui", "Resources/Icons/RadiomicsLab.png"}
    for path in listed:
        assert (MODULE_DIR / path).is_file(), path
    assert "slicerMacroBuildScriptedModule(" in expanded and "WITH_GENERIC_TESTS" in expanded
    # The package is globbed relative to the repository root: the patterns must match real files.
    for pattern in re.findall(r"\$\{RadiomicsLabLib_SOURCE_ROOT\}/(RadiomicsLabLib/[\w/*.]+)", expanded):
        folder, _, glob = pattern.rpartition("/")
        assert list((ROOT / folder).rglob(glob)), pattern
    assert "INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}" in expanded  # installed beside RadiomicsLab.py

    top = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(RadiomicsLab\)", top, re.MULTILINE)
    assert re.search(r"^add_subdirectory\(RadiomicsLab\)", top, re.MULTILINE)
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in top, line
    for var in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{var} "[^"]+"\)', top), var


def test_icon_is_a_128_pixel_png():
    from PIL import Image

    with Image.open(ICON) as icon:
        assert (icon.format, icon.size) == ("PNG", (128, 128))
        assert len(icon.convert("RGB").getcolors(maxcolors=128 * 128)) > 50  # a picture, not a flat square


def test_presets_offered_by_the_gui_exist():
    assert "pyradiomics-default" in preset_names()


# (e) ---------------------------------------------------------------------------------------------
def test_self_test_scenarios_run_headless(tmp_path):
    from RadiomicsLabLib.mrml import scenarios
    from RadiomicsLabLib.mrml.app import new_headless_app

    folder = data_dir()
    if not (folder / "pyradiomics_cases").is_dir():
        pytest.fail(f"Reference data not found in {folder}; set RADIOMICSLAB_DATA to the shared data folder.")
    scene = new_headless_app().scene
    produced = scenarios.run_all(scene, folder, tmp_path)
    assert (tmp_path / "RadiomicsLab-scenario.mrb").is_file()
    table = produced["reloaded_table"]
    assert scene.GetNodeByID(table.GetID()) is table
    rows = scenarios.ExtractionLogic(scene).feature_values(table)
    assert {row.segment for row in rows} == {"Label_1"}
    assert len(rows) == len({row.feature for row in rows}) > 100
