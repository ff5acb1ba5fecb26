"""The desktop Slicer module, checked without desktop Slicer.

``RadiomicsLab/RadiomicsLab.py`` needs Qt and ``slicer.ScriptedLoadableModule``, which only the
Slicer application has, so it is checked statically: it compiles, the widget names it uses are in
its .ui file, the widgets bound to the parameter node name real parameters of a type Slicer's
parameter node wrapper can bind, the CMake files list files that exist. The module self-test's
scenarios (``RadiomicsLabLib.mrml.scenarios``) run here for real on a headless scene.
"""

import ast
import os
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
QT_CLASSES = {"QLabel", "QPushButton", "QListWidget", "QComboBox", "QLineEdit", "QProgressBar", "QWidget", "QCheckBox",
              "QSpinBox", "QDoubleSpinBox"}
SECTIONS = ["Inputs", "Segmentation", "Extraction", "Feature maps", "Observers", "Habitats", "Delta", "Cohort", "Study"]


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
    # The self-test runs every scenario pytest runs headless (test_self_test_scenarios_run_headless).
    from RadiomicsLabLib.mrml import scenarios

    self_test = source.split("class RadiomicsLabTest")[1]
    used = set(re.findall(r"scenarios\.(\w+)\b", self_test))
    public = {n for n, f in vars(scenarios).items() if callable(f) and getattr(f, "__module__", "") == scenarios.__name__
              and not n.startswith("_") and n not in {"run_all", "sample_paths"}}
    assert public <= used, f"scenarios the module self-test does not run: {sorted(public - used)}"
    assert used <= public, f"the self-test calls scenarios that do not exist: {sorted(used - public)}"


def test_self_test_uses_the_sample_data_cases_and_installs_nothing(source):
    """RadiomicsLabTest gets its cases through Sample Data (its registered sources and download cache) and passes
    them to the scenarios: no reference data folder, no sarcoma cases, no pip (missing packages: one failure
    message listing them)."""
    self_test = source.split("class RadiomicsLabTest")[1]
    for forbidden in (r"\bdata_dir\b", r"RADIOMICSLAB_DATA", r"shared/data", r"pip_install", r"ensureDependencies",
                      r"\bsts\b", r"STS_\d", r"\bCT\b", r"\bPET\b"):
        assert not re.search(forbidden, self_test, re.IGNORECASE if forbidden == r"\bsts\b" else 0), forbidden
    assert "from SampleData import SampleDataLogic" in self_test and "downloadSamples(" in self_test
    assert "sampledata.slicer_sample_case(" in self_test and "missing_requirements()" in self_test
    assert re.search(r"if missing:\s+self\.fail\(", self_test)


def test_module_imports_only_what_slicer_ships_before_dependencies_are_installed(source):
    """Desktop Slicer loads the module before ensureDependencies() can pip-install pyradiomics, numba, dask...:
    its top-level RadiomicsLabLib imports must work without them."""
    import subprocess
    import sys

    tree = ast.parse(source)
    # Module level, also inside the top-level "if UNSUPPORTED_SLICER is None:" (the supported-Slicer imports).
    top = [*tree.body, *(c for n in tree.body if isinstance(n, ast.If) for c in n.body)]
    modules = sorted({n.module for n in top if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("RadiomicsLabLib")})
    assert "RadiomicsLabLib.mrml.extraction" in modules and "RadiomicsLabLib.dependencies" in modules
    heavy = ["radiomics", "yaml", "numba", "dask", "distributed", "sklearn", "skimage", "pywt", "pyarrow", "matplotlib"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert loaded.strip() == "[]", f"importing {modules} loads {loaded.strip()}, which Slicer does not ship"


# (b) ---------------------------------------------------------------------------------------------
def class_dict(source: str, name: str, attribute: str) -> dict:
    """A dict literal class attribute of a class of RadiomicsLab.py."""
    (cls,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == name]
    (value,) = [n.value for n in cls.body if isinstance(n, ast.Assign) and n.targets[0].id == attribute]
    return ast.literal_eval(value)


def module_constant(source: str, name: str):
    (value,) = [n.value for n in ast.parse(source).body if isinstance(n, ast.Assign) and n.targets[0].id == name]
    return ast.literal_eval(value)


def test_every_ui_attribute_used_is_a_widget_of_the_ui_file(source, ui_root):
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    names = set(ui_widgets(ui_root))
    assert {"applyButton", "progressBar", "cancelButton", "segmentsListWidget", "segmentEditorWidget", "computeMapsButton",
            "analyseObserversButton", "computeHabitatsButton", "computeDeltaButton", "runCohortButton"} <= used
    assert used - names == set(), f"RadiomicsLab.py uses widgets missing from {UI_FILE.name}"
    for widget in {**class_dict(source, "RadiomicsLabWidget", "PATH_WIDGETS"),
                   **class_dict(source, "RadiomicsLabWidget", "NODE_LIST_WIDGETS")}.values():
        assert widget in names, widget
    buttons = {n for n, w in ui_widgets(ui_root).items() if w.get("class") == "QPushButton"}
    connected = set(re.findall(r"self\.ui\.(\w+)\.connect\(\"clicked\(", source))
    assert buttons == connected, f"buttons without a handler: {sorted(buttons - connected)}"


def test_bound_widgets_name_parameters_of_a_bindable_type(source, ui_root):
    fields = parameter_fields(source)
    widgets = ui_widgets(ui_root)
    bound = {string_property(w, PARAMETER_NAME): w for w in ui_root.iter("widget") if string_property(w, PARAMETER_NAME)}
    assert set(bound) - set(fields) == set(), "widgets bound to parameters the parameter node does not have"
    # Slicer's wrapper binds ctkPathLineEdit / ctkDirectoryButton only to pathlib.Path and has no connector for
    # qMRMLCheckableNodeComboBox: those parameters are synchronised by the widget (PATH_WIDGETS, NODE_LIST_WIDGETS).
    paths = class_dict(source, "RadiomicsLabWidget", "PATH_WIDGETS")
    node_lists = class_dict(source, "RadiomicsLabWidget", "NODE_LIST_WIDGETS")
    # The segment checklist (a QListWidget: no connector) keeps the unchecked segment IDs, synchronised by the widget.
    checklist = class_dict(source, "RadiomicsLabWidget", "CHECKLIST_WIDGETS")
    assert set(fields) - set(bound) == set(paths) | set(node_lists) | set(checklist)
    for name, widget in checklist.items():
        assert fields[name] == "list[str]" and widgets[widget].get("class") == "QListWidget", name
    for name, widget in paths.items():
        assert fields[name] == "str" and widgets[widget].get("class") in ("ctkPathLineEdit", "ctkDirectoryButton"), name
    for name, widget in node_lists.items():
        element = re.fullmatch(r"list\[(vtkMRML\w+)\]", fields[name]).group(1)
        assert widgets[widget].get("class") == "qMRMLCheckableNodeComboBox", name
        assert widgets[widget].find("property[@name='nodeTypes']/stringlist/string").text == element, name
    # The connectors of Slicer's Base/Python/slicer/parameterNodeWrapper/guiConnectors.py, by widget class.
    for name, widget in bound.items():
        kind, annotation = widget.get("class"), fields[name]
        if kind == "qMRMLNodeComboBox":  # qMRMLNodeComboBoxToNodeConnector
            assert annotation.startswith("vtkMRML"), (name, annotation)
            assert widget.find("property[@name='nodeTypes']/stringlist/string").text == annotation
        elif kind == "QLineEdit":  # QLineEditToStrConnector
            assert annotation == "str", (name, annotation)
        elif kind == "QComboBox":  # QComboBoxToStringableConnector needs a Choice annotation
            assert re.fullmatch(r"Annotated\[str, Choice\(.+\)\]", annotation), (name, annotation)
        elif kind == "QCheckBox":  # QCheckBoxToBoolConnector
            assert annotation == "bool", (name, annotation)
        elif kind == "QSpinBox":  # QSliderOrSpinBoxToIntConnector
            assert re.fullmatch(r"int|Annotated\[int, WithinRange\(.+\)\]", annotation), (name, annotation)
        elif kind in ("QDoubleSpinBox", "ctkSliderWidget"):  # QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector
            assert re.fullmatch(r"float|Annotated\[float, WithinRange\(.+\)\]", annotation), (name, annotation)
        else:
            pytest.fail(f"no parameter node GUI connector for a {kind} bound to '{name}'")


def test_choices_offered_by_the_gui_are_the_ones_the_logic_accepts(source):
    from RadiomicsLabLib import habitats, registration
    from RadiomicsLabLib.featuremaps import check_definition

    for definition in module_constant(source, "MAP_DEFINITIONS"):
        assert check_definition(definition) == definition
    assert module_constant(source, "HABITAT_METHODS") == list(habitats.METHODS)
    assert module_constant(source, "DELTA_REGISTRATIONS") == ["none", *registration.KINDS]
    fields = parameter_fields(source)
    assert re.search(r'mapDefinition: .* = "ibsi"', source) and "MAP_DEFINITIONS" in fields["mapDefinition"]


def logic_calls(source: str) -> list:
    """(workflow or None, method, keyword names) of every ``self.logic[.workflow].method(...)`` call of the widget."""
    (widget,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "RadiomicsLabWidget"]
    calls = []
    for node in ast.walk(widget):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            chain = ast.unparse(node.func).split(".")
            if chain[:2] == ["self", "logic"] and len(chain) in (3, 4):
                assert not any(k.arg is None for k in node.keywords), f"**kwargs hide the arguments of {ast.unparse(node.func)}"
                calls.append((chain[2] if len(chain) == 4 else None, chain[-1], [k.arg for k in node.keywords],
                              len(node.args)))
    return calls


def test_every_widget_action_is_a_call_of_an_existing_logic_method(source):
    """The thin widget: each button calls a RadiomicsLabLib.mrml Logic method that exists and takes those arguments."""
    import importlib
    import inspect

    from RadiomicsLabLib.mrml.extraction import ExtractionLogic

    (logic,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "RadiomicsLabLogic"]
    workflows = {}
    for node in logic.body:
        if isinstance(node, ast.FunctionDef) and any(ast.unparse(d) == "property" for d in node.decorator_list):
            (call,) = [c for c in ast.walk(node) if isinstance(c, ast.Call) and ast.unparse(c.func) == "self._workflow"]
            module, class_name = (a.value for a in call.args)
            workflows[node.name] = getattr(importlib.import_module(f"RadiomicsLabLib.mrml.{module}"), class_name)
    assert set(workflows) == {"featureMaps", "observers", "habitats", "delta", "cohort", "study"}
    calls = logic_calls(source)
    assert {w for w, *_ in calls} == {None, *workflows}, "a workflow's Logic is not used by the widget"
    for workflow, method, keywords, n_positional in calls:
        if (workflow, method) == (None, "getParameterNode"):
            continue  # Slicer's ScriptedLoadableModuleLogic, wrapped by RadiomicsLabLogic.getParameterNode
        cls = workflows[workflow] if workflow else ExtractionLogic
        assert hasattr(cls, method), f"{cls.__name__} has no method {method}"
        attribute = getattr(cls, method)
        if not callable(attribute):
            continue  # e.g. progress_state is read, not called
        signature = inspect.signature(attribute)
        parameters = list(signature.parameters.values())
        if parameters and parameters[0].name == "self":
            parameters = parameters[1:]
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
        names = {p.name for p in parameters}
        unknown = [k for k in keywords if k not in names and not accepts_any]
        assert not unknown, f"{cls.__name__}.{method} takes no {unknown}"
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert n_positional <= len(positional), f"{cls.__name__}.{method}: {n_positional} positional arguments"


#: Buttons whose work is long: each runs a Logic *_job in the background (RadiomicsLabLib.background).
BACKGROUND_BUTTONS = {"onAddRingButton": "add_ring_job", "onApplyButton": "extract_job",
                      "onComputeMapsButton": "compute_job", "onAnalyseObserversButton": "analyse_job",
                      "onComputeHabitatsButton": "habitats_job", "onComputeDeltaButton": "compute_job",
                      "onRunStudyButton": "run_job", "onApplyStudyModelButton": "predict_job"}


def test_long_work_runs_in_the_background_never_on_the_main_thread(source):
    """Each workflow button prepares a Logic job and hands it to _start (a BackgroundRun polled by a Qt timer); no
    button calls a Logic method that computes on the main thread, and nothing pumps events from a progress callback."""
    (widget,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "RadiomicsLabWidget"]
    methods = {n.name: n for n in widget.body if isinstance(n, ast.FunctionDef)}
    for handler, job_method in BACKGROUND_BUTTONS.items():
        calls = [ast.unparse(c.func) for c in ast.walk(methods[handler]) if isinstance(c, ast.Call)]
        assert "self._start" in calls, f"{handler} does not run its work in the background"
        logic = [c for c in calls if c.startswith("self.logic.")]
        assert any(c.endswith("." + job_method) for c in logic), (handler, logic)
        computing = [c for c in logic if not c.endswith("_job") and c.split(".")[-1] not in ("study_from_nodes",
                                                                                              "segmentations_for")]
        assert not computing, f"{handler} computes on the main thread: {computing}"
    start = ast.unparse(methods["_start"])
    assert "BackgroundRun(makeJob())" in start and "removeNodesAddedSince" in start
    assert "processEvents" not in source
    assert re.search(r"^JOB_POLL_MS = (\d+)$", source, re.M) and int(re.search(r"^JOB_POLL_MS = (\d+)$", source, re.M)[1]) <= 100


def test_every_workflow_result_can_be_saved_to_a_folder_with_the_commands_files(source, ui_root):
    """"Save results to folder": each workflow's run keeps its result (_showResult), and the button writes it with that
    workflow's Logic ``save_results`` (the core writer the command line uses; the same-files tests are
    Testing/test_outputs_*.py and test_observers_outputs.py)."""
    (widget,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "RadiomicsLabWidget"]
    methods = {n.name: n for n in widget.body if isinstance(n, ast.FunctionDef)}
    shown = {c.args[0].value for c in ast.walk(widget) if isinstance(c, ast.Call)
             and ast.unparse(c.func) == "self._showResult"}
    workflows = {"extraction", "maps", "observers", "habitats", "delta", "cohort", "study"}
    assert shown == workflows
    (saves,) = [d for d in ast.walk(methods["onSaveResultsButton"]) if isinstance(d, ast.Dict)]
    calls = {key.value: ast.unparse(value.body.func) for key, value in zip(saves.keys, saves.values)}
    logic = {"extraction": "self.logic", "maps": "self.logic.featureMaps", "observers": "self.logic.observers",
             "habitats": "self.logic.habitats", "delta": "self.logic.delta", "cohort": "self.logic.cohort",
             "study": "self.logic.study"}
    assert calls == {w: f"{logic[w]}.save_results" for w in workflows}
    assert ui_root.find(".//widget[@name='saveResultsButton']") is not None
    assert 'self.ui.saveResultsButton.connect("clicked(bool)", self.onSaveResultsButton)' in source


def test_embedded_segment_editor_follows_slicers_segment_editor_module(source):
    """As Slicer's SegmentEditor.py (Modules/Scripted/SegmentEditor, 583e9b37): effects registered later appear
    (effectRegistered -> updateEffectList, disconnected in cleanup), the editor lets go of the segmentation and the
    views when the scene closes, and follows an imported scene."""
    (widget,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "RadiomicsLabWidget"]
    methods = {n.name: ast.unparse(n) for n in widget.body if isinstance(n, ast.FunctionDef)}
    assert "connect('effectRegistered(QString)', self.ui.segmentEditorWidget.updateEffectList)" in methods["setup"]
    assert "disconnect('effectRegistered(QString)', self.ui.segmentEditorWidget.updateEffectList)" in methods["cleanup"]
    assert "slicer.mrmlScene.EndImportEvent, self.onSceneEndImport" in methods["setup"]
    close = methods["onSceneStartClose"]
    assert "segmentEditorWidget.setSegmentationNode(None)" in close and "segmentEditorWidget.removeViewObservations()" in close
    assert "updateWidgetFromMRML()" in methods["onSceneEndImport"]


def test_each_extraction_makes_a_new_table_unless_one_is_chosen(source):
    """The Extraction section's output table is the user's choice only: a run never stores its table there (which made
    every later run overwrite it)."""
    (widget,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "RadiomicsLabWidget"]
    handler = ast.unparse([n for n in widget.body if isinstance(n, ast.FunctionDef) and n.name == "onApplyButton"][0])
    assert "table_node=p.outputTable" in handler and "p.outputTable =" not in source


def test_cohort_workers_0_runs_in_slicers_process(source, ui_root):
    """Workers: -1 ("all cores") starts one worker process per core, 0 runs the cases in this process, N: N processes."""
    spin = ui_widgets(ui_root)["cohortWorkersSpinBox"]
    assert spin.findtext("property[@name='minimum']/number") == "-1"
    assert spin.findtext("property[@name='specialValueText']/string") == "all cores"
    assert parameter_fields(source)["cohortWorkers"] == "Annotated[int, WithinRange(-1, 256)]"
    assert "workers=None if p.cohortWorkers < 0 else p.cohortWorkers" in source


#: Methods and properties of the widget classes the module touches, as declared in their headers:
#: Slicer 583e9b37 (Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h,
#: Libs/MRML/Widgets/qMRMLCheckableNodeComboBox.h, qMRMLNodeComboBox.h), CTK (ctkPathLineEdit.h,
#: ctkDirectoryButton.h) and Qt 5. "connect" and "blockSignals" are QObject's.
WIDGET_API = {
    "qMRMLSegmentEditorWidget": {"setMaximumNumberOfUndoStates", "setSegmentationNodeSelectorVisible",
                                 "setSourceVolumeNodeSelectorVisible", "mrmlSegmentEditorNode", "setMRMLSegmentEditorNode",
                                 "segmentationNode", "setSegmentationNode", "sourceVolumeNode", "setSourceVolumeNode",
                                 "installKeyboardShortcuts", "uninstallKeyboardShortcuts", "removeViewObservations",
                                 "setActiveEffect", "updateWidgetFromMRML", "updateEffectList"},
    "qMRMLCheckableNodeComboBox": {"checkedNodes", "nodeCount", "nodeFromIndex", "setCheckState", "connect", "blockSignals"},
    "ctkPathLineEdit": {"nameFilters", "currentPath", "connect", "blockSignals"},
    "ctkDirectoryButton": {"directory", "connect", "blockSignals"},
    "QPushButton": {"enabled", "toolTip", "connect"},
    "QListWidget": {"count", "item", "clear", "addItem", "connect", "blockSignals"},
    "QProgressBar": {"maximum", "value"},
    "QLabel": {"text"},
    "QComboBox": {"enabled"},
    "QLineEdit": {"setCompleter"},
}


def test_widget_methods_the_module_calls_exist_in_slicer_ctk_and_qt(source, ui_root):
    classes = {n: w.get("class") for n, w in ui_widgets(ui_root).items()}
    used = set(re.findall(r"self\.ui\.(\w+)\.(\w+)", source))
    dynamic = {  # getattr(self.ui, name) over the PATH_WIDGETS / NODE_LIST_WIDGETS tables
        (w, m) for table, methods in (("PATH_WIDGETS", ("blockSignals", "connect")),
                                      ("NODE_LIST_WIDGETS", ("checkedNodes", "nodeCount", "nodeFromIndex", "setCheckState")))
        for w in class_dict(source, "RadiomicsLabWidget", table).values() for m in methods}
    dynamic |= {(w, "setCompleter") for w in class_dict(source, "RadiomicsLabWidget", "STUDY_COLUMN_WIDGETS")}
    for widget, member in used | dynamic:
        api = WIDGET_API.get(classes[widget])
        assert api is not None, f"{widget} is a {classes[widget]}: record its API in WIDGET_API"
        assert member in api, f"{classes[widget]} {widget} has no {member}"


def test_study_section_reads_the_clinical_header_and_checks_for_scikit_survival(source, ui_root, tmp_path):
    """The Study section: its column line edits (bound to str parameters) complete the clinical CSV's header; a survival
    study without scikit-survival shows how to install it instead of starting; comma-separated names split."""
    import csv as csv_module

    tree = ast.parse(source)
    namespace = {"re": re, "os": os, "csv": csv_module}
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("splitNames", "clinicalColumns")]
    exec(compile(ast.Module(body=functions, type_ignores=[]), str(MODULE_PY), "exec"), namespace)
    assert namespace["splitNames"](" age, sex ,,") == ["age", "sex"] and namespace["splitNames"]("") == []
    clinical = tmp_path / "clinical.csv"
    clinical.write_text("\ufeffid,diagnosis, site\n1,malignant,A\n", encoding="utf-8")
    assert namespace["clinicalColumns"](str(clinical)) == ["id", "diagnosis", "site"]
    assert namespace["clinicalColumns"]("") == [] and namespace["clinicalColumns"](str(tmp_path / "none.csv")) == []
    widgets = ui_widgets(ui_root)
    fields = parameter_fields(source)
    for name in class_dict(source, "RadiomicsLabWidget", "STUDY_COLUMN_WIDGETS"):
        assert widgets[name].get("class") == "QLineEdit" and fields[string_property(widgets[name], PARAMETER_NAME)] == "str"
    (widget,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RadiomicsLabWidget"]
    run = ast.unparse([n for n in widget.body if isinstance(n, ast.FunctionDef) and n.name == "onRunStudyButton"][0])
    assert "find_spec('sksurv') is None" in run and "survivalUnavailableMessage()" in run
    assert run.index("find_spec('sksurv')") < run.index("self._start(")
    assert 'OPTIONAL_IN_SLICER["scikit-survival"]' in source and "pip_install('scikit-survival')" in source
    assert (fields["studyModels"], fields["studySelection"]) == ("str", "str")
    assert re.search(r"studyOuter: .* = 5$", source, re.M) and re.search(r"studyRepeats: .* = 2$", source, re.M)
    assert re.search(r"studyInner: .* = 3$", source, re.M)


def test_dates_typed_in_the_gui_split_into_dates_the_delta_logic_parses(source):
    from RadiomicsLabLib.delta import parse_date

    split = module_function(source, "splitDates")
    assert split("") == []
    assert split("2024-01-10, 2024-03-05") == ["2024-01-10", "2024-03-05"]
    assert [parse_date(d).isoformat() for d in split(" 2024-01-10 ;20240305 ")] == ["2024-01-10", "2024-03-05"]


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
    assert sections == SECTIONS
    combos = {n for n, w in widgets.items() if w.get("class").startswith("qMRML") and w.get("class") != "qMRMLWidget"}
    connected = {
        c.findtext("receiver") for c in ui_root.iter("connection")
        if c.findtext("sender") == "RadiomicsLab" and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    assert combos == connected
    assert {"inputVolumeSelector", "inputSegmentationSelector", "outputTableSelector", "segmentEditorWidget",
            "observerSegmentationsSelector", "channelVolumesSelector", "timepointVolumesSelector",
            "deltaStudySelector"} <= combos
    # every widget of a workflow section sits inside that section's collapsible button
    for title in SECTIONS:
        (button,) = [w for w in widgets.values() if w.get("class") == "ctkCollapsibleButton" and string_property(w, "text") == title]
        assert len(list(button.iter("widget"))) > 2, title
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
    listed = set(re.findall(r"^\s*([\w/]+\.(?:py|ui|png|txt))\s*$", expanded, re.MULTILINE))
    assert listed == {"RadiomicsLab.py", "Resources/UI/RadiomicsLab.ui", "Resources/Icons/RadiomicsLab.png",
                      "Resources/Icons/SampleData/brain1.png", "Resources/Icons/SampleData/brain2.png",
                      "Resources/Icons/SampleData/breast1.png", "Resources/requirements.txt"}
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
    for var in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{var} "[^"]+"\)', top), var
    assert re.search(r'set\(EXTENSION_SCREENSHOTURLS "[^"]*"\)', top)  # none yet (test_extension_build)


def test_icon_is_a_128_pixel_png():
    from PIL import Image

    with Image.open(ICON) as icon:
        assert (icon.format, icon.size) == ("PNG", (128, 128))
        assert len(icon.convert("RGB").getcolors(maxcolors=128 * 128)) > 50  # a picture, not a flat square


def test_presets_offered_by_the_gui_exist():
    assert "pyradiomics-default" in preset_names()


# (e) ---------------------------------------------------------------------------------------------
def test_self_test_scenarios_run_headless(tmp_path, monkeypatch):
    """run_all as the self-test runs it on a build machine: the Sample Data cases from a cache (filled here from the
    reference data's copies with the registered SHA-256; no download: it would fail), RADIOMICSLAB_DATA empty."""
    from RadiomicsLabLib.mrml import sampledata, scenarios
    from RadiomicsLabLib.mrml.app import new_headless_app

    folder = data_dir()
    if not (folder / "pyradiomics_cases").is_dir():
        pytest.fail(f"Reference data not found in {folder}; set RADIOMICSLAB_DATA to the shared data folder.")
    cache = tmp_path / "sample-cache"
    assert len(sampledata.fill_cache(folder / "pyradiomics_cases", cache)) == 6

    def offline(url, destination):
        raise OSError(f"no network in this test ({url})")

    monkeypatch.setattr(sampledata, "_download", offline)
    (tmp_path / "no-reference-data").mkdir()
    monkeypatch.setenv("RADIOMICSLAB_DATA", str(tmp_path / "no-reference-data"))
    cases = sampledata.sample_cases(cache_dir=cache)
    assert {path.parent for pair in cases.values() for path in pair} == {cache}
    scene = new_headless_app().scene
    produced = scenarios.run_all(scene, cases, tmp_path)  # every scenario, one after another in one scene
    assert list(produced) == ["table", "reloaded_table", "feature_maps", "observers", "habitats", "delta", "cohort"]
    assert (tmp_path / "RadiomicsLab-scenario.mrb").is_file()
    table = produced["reloaded_table"]
    assert scene.GetNodeByID(table.GetID()) is table
    rows = scenarios.ExtractionLogic(scene).feature_values(table)
    assert {row.segment for row in rows} == {"Label_1"}
    assert len(rows) == len({row.feature for row in rows}) > 100
    # What the later scenarios made is in the same scene, next to the reloaded study.
    made = [*produced["feature_maps"].maps.values(), *produced["observers"].consensus,
            *produced["habitats"].segmentations, produced["delta"].table, produced["cohort"]["results"]]
    assert all(scene.GetNodeByID(node.GetID()) is node for node in made)
    assert scene.GetNodesByClass("vtkMRMLSequenceBrowserNode").GetNumberOfItems() >= 1
    assert (tmp_path / "cohort" / "out" / "features.csv").is_file()


# (f) ---------------------------------------------------------------------------------------------
SELF_TEST_SCRIPT = """
import sys, traceback
import slicer
status = 1
try:
    import RadiomicsLab
    RadiomicsLab.RadiomicsLabTest().runTest()
    status = 0
except Exception:
    traceback.print_exc()
slicer.util.exit(status)
"""


@pytest.mark.skipif(not os.environ.get("SLICER_EXECUTABLE"), reason="set SLICER_EXECUTABLE to a desktop Slicer to run the "
                    "module self-test in it (desktop Slicer is not installable from a package registry)")
def test_module_self_test_in_desktop_slicer(tmp_path):
    """The issue's optional check: RadiomicsLabTest in a real Slicer, with this checkout's module and the Sample Data
    cases (downloaded into Slicer's cache on first use: needs the network once)."""
    import subprocess

    script = tmp_path / "run_self_test.py"
    script.write_text(SELF_TEST_SCRIPT)
    (tmp_path / "no-reference-data").mkdir()  # the self-test uses Sample Data's cache only
    environment = {**os.environ, "RADIOMICSLAB_DATA": str(tmp_path / "no-reference-data")}
    completed = subprocess.run(
        [os.environ["SLICER_EXECUTABLE"], "--testing", "--no-splash", "--no-main-window",
         "--additional-module-paths", str(MODULE_DIR), "--python-script", str(script)],
        capture_output=True, text=True, env=environment, timeout=3600)
    assert completed.returncode == 0, f"RadiomicsLabTest failed in {os.environ['SLICER_EXECUTABLE']}:\n" \
                                      f"{completed.stdout[-5000:]}\n{completed.stderr[-5000:]}"
