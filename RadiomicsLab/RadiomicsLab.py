"""RadiomicsLab scripted module: the desktop Slicer GUI over RadiomicsLabLib's MRML logic.

One module, one collapsible section per workflow (Inputs, Segmentation, Extraction, Feature maps,
Observers, Habitats, Delta, Cohort, Study). The widget only turns GUI state (kept in a parameter node, so a
saved scene restores it) into one call of a Logic class of ``RadiomicsLabLib.mrml`` and shows what
it returns (tables, plots, overlays). The console works the same way::

    logic = slicer.util.getModuleLogic("RadiomicsLab")      # an ExtractionLogic on slicer.mrmlScene
    table = logic.extract(volumeNode, segmentationNode, settings="pyradiomics-default")
    maps = logic.featureMaps.compute(volumeNode, segmentationNode, features="glcm_Contrast", radius=1)
    # also logic.observers, logic.habitats, logic.delta, logic.cohort, logic.study (see the README)
"""

import csv
import importlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import qt
import vtk

import slicer
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin


def _makeRadiomicsLabLibImportable():
    """In a development checkout RadiomicsLabLib/ sits beside this module's folder; the built extension installs it next to this file."""
    try:
        import RadiomicsLabLib  # noqa: F401
    except ImportError:
        repositoryRoot = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if repositoryRoot not in sys.path:
            sys.path.append(repositoryRoot)


_makeRadiomicsLabLibImportable()

# First the Slicer version: RadiomicsLabLib.dependencies runs on the Python of any Slicer 5, the rest of
# RadiomicsLab needs Slicer 5.10 (Python 3.12). Above this line only what Slicer 5.0 already has is imported.
from RadiomicsLabLib.dependencies import SLICER_DOWNLOAD_URL, unsupported_slicer_message  # noqa: E402

#: None in a Slicer RadiomicsLab runs in; otherwise why not, which the module shows instead of its GUI (RadiomicsLab
#: class below), setting up nothing else.
UNSUPPORTED_SLICER = unsupported_slicer_message(sys.version_info, (slicer.app.majorVersion, slicer.app.minorVersion))

if UNSUPPORTED_SLICER is None:
    from slicer import (vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLSequenceBrowserNode,
                        vtkMRMLTableNode)
    from slicer.i18n import tr as _
    from slicer.i18n import translate
    from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

    # Only modules that need nothing beyond what Slicer ships are imported here; the workflows' Logic
    # classes (numba, dask, scikit-learn, ...) are imported on first use, after ensureDependencies().
    from RadiomicsLabLib.dependencies import OPTIONAL_IN_SLICER, bundled_pins, missing_requirements, requirements_file
    from RadiomicsLabLib.errors import Cancelled
    from RadiomicsLabLib.mrml.extraction import ExtractionLogic
    from RadiomicsLabLib.settings import DEFAULT_PRESET, preset_names
else:
    # An older Slicer (slicer.i18n and slicer.parameterNodeWrapper came in 5.4): inert stand-ins, so that the
    # definitions below run; nothing uses them, the RadiomicsLab class only shows UNSUPPORTED_SLICER.
    def _(text):
        return text

    def translate(context, text):
        return text

    def parameterNodeWrapper(cls):
        return cls

    def Choice(*args, **kwargs):
        return None

    WithinRange = Choice
    vtkMRMLScalarVolumeNode = vtkMRMLSegmentationNode = vtkMRMLSequenceBrowserNode = vtkMRMLTableNode = object
    Cancelled = Exception
    ExtractionLogic = object
    DEFAULT_PRESET = ""

    def preset_names():
        return []


def unsupportedSlicerHtml() -> str:
    """UNSUPPORTED_SLICER as the rich text of the help and the module panel (the download page a link)."""
    link = f'<a href="{SLICER_DOWNLOAD_URL}">{SLICER_DOWNLOAD_URL}</a>'
    return "<p>" + UNSUPPORTED_SLICER.replace(SLICER_DOWNLOAD_URL, link) + "</p>"


class _UnsupportedSlicerWidget(ScriptedLoadableModuleWidget):
    """The module panel in a Slicer RadiomicsLab does not run in: UNSUPPORTED_SLICER, nothing else."""

    def setup(self):
        label = qt.QLabel(unsupportedSlicerHtml())
        label.wordWrap = True
        label.openExternalLinks = True
        self.layout.addWidget(label)
        self.layout.addStretch(1)


MAP_DEFINITIONS = ["ibsi", "pyradiomics"]
HABITAT_METHODS = ["kmeans", "gmm", "agglomerative"]
DELTA_REGISTRATIONS = ["none", "rigid", "affine", "bspline"]
COHORT_POLL_MS = 1000
#: How often the main thread polls a background job (progress, result); the window never waits for the job.
JOB_POLL_MS = 100
#: Engines offered for pyradiomics-style settings (IBSI settings always run on the IBSI engine).
EXTRACTION_ENGINES = ["native", "pyradiomics"]


def ensureDependencies() -> bool:
    """True when RadiomicsLab's Python packages (``Resources/requirements.txt``) can be imported; otherwise offer to
    pip-install them into Slicer's Python, keeping Slicer's own numpy, scipy, SimpleITK and VTK, and then register the
    Segment Statistics plugin (no restart needed). With ``--testing`` (the module self-test) nothing is installed:
    what is missing is logged and False returned."""
    missing = missing_requirements()
    if not missing:
        return True
    if slicer.app.testingEnabled():
        logging.error(f"RadiomicsLab needs these Python packages, which this Slicer does not have: {', '.join(missing)}. "
                      "Slicer runs in testing mode, so they are not installed; install them first, e.g. in Slicer's "
                      f"Python console: slicer.util.pip_install(['-r', r'{requirements_file()}'])")
        return False
    if not slicer.util.confirmOkCancelDisplay(
            _("RadiomicsLab needs these Python packages: {packages}. Install them now? This may take a few minutes.")
            .format(packages=", ".join(missing)), windowTitle=_("RadiomicsLab")):
        return False
    with tempfile.TemporaryDirectory() as folder:
        # Constraints keep the numpy, scipy, SimpleITK and VTK that Slicer installed (pip fails, naming the conflict,
        # rather than replace them). slicer.util.pip_install passes a list as the arguments of "pip install".
        constraints = Path(folder) / "slicer-constraints.txt"
        constraints.write_text("".join(f"{pin}\n" for pin in bundled_pins()), encoding="utf-8")
        try:
            with slicer.util.tryWithErrorDisplay(_("Installing {packages} failed.").format(packages=", ".join(missing)),
                                                 waitCursor=True):
                slicer.util.pip_install(["-r", str(requirements_file()), "-c", str(constraints)])
        except Exception:  # shown by tryWithErrorDisplay, pip's output is in the log
            return False
    importlib.invalidate_caches()
    if missing_requirements():
        return False
    from RadiomicsLabLib.mrml.segmentstatistics import register_segment_statistics_plugin

    register_segment_statistics_plugin()  # skipped at startup while the packages were missing
    compileKernelsInBackground()  # numba compiles the feature map kernels once, in a worker process
    return True


def onStartupCompleted():
    """Register RadiomicsLab's sample cases (Sample Data module) and its Segment Statistics plugin (which needs
    RadiomicsLab's Python packages: until ensureDependencies() installs them, one line in the log says so); with the
    packages installed, compile the feature map kernels in the background unless already done for this installation."""
    from RadiomicsLabLib.mrml.sampledata import register_sample_data
    from RadiomicsLabLib.mrml.segmentstatistics import register_segment_statistics_plugin

    register_sample_data()
    register_segment_statistics_plugin()
    if not missing_requirements():
        compileKernelsInBackground()


def kernelsReady():
    """Once the kernels are compiled: keep one worker process started ahead of the next job, its imports done and the
    kernels loaded (RadiomicsLabLib.background.keep_worker_ready), so that no job waits for a worker's start; and load
    the feature maps' planning into Slicer's own process on a background thread (RadiomicsLabLib.warmup.load_planning),
    so that the first map's check and estimate on the main thread do not wait for numba's start."""
    from RadiomicsLabLib.background import keep_worker_ready
    from RadiomicsLabLib.warmup import load_kernels, load_planning

    keep_worker_ready(load_kernels)
    threading.Thread(target=load_planning, daemon=True, name="RadiomicsLab planning").start()


#: The background compilation of the kernels (a RadiomicsLabLib.background.BackgroundRun) while it runs.
_kernelCompilation = None


def compileKernelsInBackground():
    """Compile RadiomicsLab's numba kernels (feature maps, observers) in a worker process with
    RadiomicsLabLib.warmup, once per installation, numba version and kernel source: numba caches the machine code
    where later processes find it, so the first feature map does not spend seconds per family compiling. The window
    never waits: a Qt timer polls the worker and logs its outcome. Skipped in testing mode and when already done.
    Once the kernels are compiled, kernelsReady() takes over."""
    global _kernelCompilation
    if _kernelCompilation is not None or slicer.app.testingEnabled():
        return
    from RadiomicsLabLib.warmup import start_in_background

    try:
        run = start_in_background()
    except Exception as error:  # e.g. no worker Python: the first map compiles its kernels instead
        logging.warning(f"RadiomicsLab could not compile its kernels in the background ({error}); the first feature "
                        "map will compile them.")
        return
    if run is None:  # already compiled for this installation
        kernelsReady()
        return
    _kernelCompilation = run
    timer = qt.QTimer()
    timer.setInterval(JOB_POLL_MS * 10)

    def poll():
        global _kernelCompilation
        if run.poll():
            return
        timer.stop()
        _kernelCompilation = None
        try:
            logging.info(run.result())
        except Exception as error:  # noqa: BLE001 - logged; the first map compiles what it needs
            logging.warning(f"RadiomicsLab: compiling the kernels in the background failed ({error}); the first "
                            "feature map will compile them.")
        kernelsReady()

    timer.connect("timeout()", poll)
    run.timer = timer  # kept with the run until it ends
    timer.start()


#
# RadiomicsLab
#


class RadiomicsLab(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("RadiomicsLab")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["RadiomicsLab team (RadiomicsLab)"]
        iconPath = self.resourcePath("Icons/RadiomicsLab.png")
        if os.path.isfile(iconPath):
            self.parent.icon = qt.QIcon(iconPath)
        if UNSUPPORTED_SLICER:
            # Too old a Slicer: the message as help and as the module panel, no startup hooks. Slicer makes the panel
            # from this module's <name>Widget class when the user opens the module (qSlicerScriptedLoadableModuleWidget::
            # setPythonSource, Slicer 5.0 to 5.10), so that class becomes the one showing the message.
            self.parent.helpText = unsupportedSlicerHtml()
            self.parent.acknowledgementText = ""
            globals()["RadiomicsLabWidget"] = _UnsupportedSlicerWidget
            logging.warning(UNSUPPORTED_SLICER)
            return
        self.parent.helpText = _("""
IBSI-compliant radiomics on the segments of a segmentation: feature extraction (pyradiomics-compatible
presets and parameter files, IBSI configurations), voxel-wise feature maps over the image, multi-observer
agreement and feature reproducibility, habitats and peritumoral rings, delta-radiomics across timepoints,
and cohort batches on a Dask cluster. Every result is a node with its provenance and is saved with the scene.
The same logic is available from the Python console: <code>slicer.util.getModuleLogic("RadiomicsLab")</code>.
""") + "<p>" + _("For more information, see the {url_start}RadiomicsLab documentation{url_end}.").format(
            url_start='<a href="https://github.com/RadiomicsLab/RadiomicsLab#readme">', url_end="</a>") + "</p>"
        self.parent.acknowledgementText = _("""
RadiomicsLab builds on 3D Slicer and on pyradiomics (van Griethuysen et al., Cancer Research 2017),
and follows the Image Biomarker Standardisation Initiative (IBSI).
""")
        slicer.app.connect("startupCompleted()", onStartupCompleted)


#
# RadiomicsLabParameterNode
#


@parameterNodeWrapper
class RadiomicsLabParameterNode:
    """
    The GUI state of the module, saved with the scene.

    inputVolume, inputSegmentation - Image and segmentation (regions of interest) of every workflow.
    observerSegmentations - One segmentation per observer (empty: the checked segments are the observers).
    channelVolumes - Habitat channels (empty: inputVolume).
    timepointVolumes, timepointSegmentations, timepointDates - Timepoints of a new delta study.
    ringStartMm, ringStopMm - Peritumoral ring distances from the segment surface.
    preset, parameterFile, imageTypes - Feature settings (parameterFile overrides preset) of every workflow.
    outputTable - Table receiving the features; none: a new table is created.
    mapFeatures, mapRadius, mapDefinition, mapOpacity - Feature maps.
    observerFeatures, observerPerturbations - Observer study options.
    habitatCount (0: automatic), habitatMethod, habitatFeatureMaps (extra channels, made with mapRadius and
        mapDefinition), habitatMinIslandMm3, habitatFeatures - Habitats.
    deltaStudy (none: new from the timepoints), deltaReference, deltaRegistration, deltaPropagate - Delta.
    cohortFile, cohortOutputDirectory, cohortWorkers (-1: one worker process per core, 0: in Slicer's process,
        N: N worker processes), cohortRetryFailed - Cohort batch.
    studyFeaturesTable (none: studyFeaturesFile), studyFeaturesFile, studyClinicalFile, studyOutcome, studyPositive,
        studyTime, studyEvent, studyBatch, studyCovariates (comma-separated), studyIdColumn, studySplit, studyModels
        (comma-separated; empty: the default of the outcome), studySelection, studyOuter, studyRepeats, studyInner,
        studySeed, studyOutputDirectory (empty: a new temporary folder), studyModelFile - Study and Apply model.
    engine - Engine of pyradiomics-style settings: native (RadiomicsLab's own, no pyradiomics needed) or pyradiomics.
    uncheckedSegmentIds - Segments of inputSegmentation left out of every workflow (new segments come checked).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: vtkMRMLSegmentationNode
    observerSegmentations: list[vtkMRMLSegmentationNode]
    channelVolumes: list[vtkMRMLScalarVolumeNode]
    timepointVolumes: list[vtkMRMLScalarVolumeNode]
    timepointSegmentations: list[vtkMRMLSegmentationNode]
    timepointDates: str = ""
    ringStartMm: float = 0.0
    ringStopMm: float = 5.0
    preset: Annotated[str, Choice(preset_names())] = DEFAULT_PRESET
    parameterFile: str = ""
    imageTypes: str = ""
    outputTable: vtkMRMLTableNode
    mapFeatures: str = "glcm_Contrast, firstorder_Mean"
    mapRadius: Annotated[int, WithinRange(1, 10)] = 1
    mapDefinition: Annotated[str, Choice(MAP_DEFINITIONS)] = "ibsi"
    mapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    observerFeatures: bool = True
    observerPerturbations: bool = False
    habitatCount: Annotated[int, WithinRange(0, 12)] = 3
    habitatMethod: Annotated[str, Choice(HABITAT_METHODS)] = "kmeans"
    habitatFeatureMaps: str = ""
    habitatMinIslandMm3: float = 0.0
    habitatFeatures: bool = False
    deltaStudy: vtkMRMLSequenceBrowserNode
    deltaReference: str = "baseline"
    deltaRegistration: Annotated[str, Choice(DELTA_REGISTRATIONS)] = "none"
    deltaPropagate: bool = False
    cohortFile: str = ""
    cohortOutputDirectory: str = ""
    cohortWorkers: Annotated[int, WithinRange(-1, 256)] = -1
    cohortRetryFailed: bool = False
    studyFeaturesTable: vtkMRMLTableNode
    studyFeaturesFile: str = ""
    studyClinicalFile: str = ""
    studyOutcome: str = ""
    studyPositive: str = ""
    studyTime: str = ""
    studyEvent: str = ""
    studyBatch: str = ""
    studyCovariates: str = ""
    studyIdColumn: str = "id"
    studySplit: str = ""
    studyModels: str = ""
    studySelection: str = "nzv,correlation"
    studyOuter: Annotated[int, WithinRange(2, 50)] = 5
    studyRepeats: Annotated[int, WithinRange(1, 100)] = 2
    studyInner: Annotated[int, WithinRange(2, 50)] = 3
    studySeed: Annotated[int, WithinRange(0, 2147483647)] = 0
    studyOutputDirectory: str = ""
    studyModelFile: str = ""
    engine: Annotated[str, Choice(EXTRACTION_ENGINES)] = "native"
    uncheckedSegmentIds: list[str]


#
# RadiomicsLabWidget
#


class RadiomicsLabWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    SEGMENT_EVENTS = (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                      slicer.vtkSegmentation.SegmentModified)

    #: parameter (a str) -> ctk widget bound by hand (the wrapper binds ctkPathLineEdit / ctkDirectoryButton
    #: only to pathlib.Path, where "" would become ".")
    PATH_WIDGETS = {"parameterFile": "parameterFilePathLineEdit", "cohortFile": "cohortFilePathLineEdit",
                    "cohortOutputDirectory": "cohortOutputDirectoryButton", "studyFeaturesFile": "studyFeaturesFilePathLineEdit",
                    "studyClinicalFile": "studyClinicalFilePathLineEdit",
                    "studyOutputDirectory": "studyOutputDirectoryPathLineEdit", "studyModelFile": "studyModelFilePathLineEdit"}
    #: parameter (a list of nodes) -> qMRMLCheckableNodeComboBox bound by hand (the wrapper has no connector for it)
    NODE_LIST_WIDGETS = {"observerSegmentations": "observerSegmentationsSelector", "channelVolumes": "channelVolumesSelector",
                         "timepointVolumes": "timepointVolumesSelector",
                         "timepointSegmentations": "timepointSegmentationsSelector"}
    #: parameter (a list of segment IDs) -> QListWidget of the segments, synchronised by hand (_onSegmentChecked)
    CHECKLIST_WIDGETS = {"uncheckedSegmentIds": "segmentsListWidget"}
    #: Study column line edits: each completes the column names of the clinical CSV's header (_refreshStudyColumns)
    STUDY_COLUMN_WIDGETS = ("studyOutcomeLineEdit", "studyTimeLineEdit", "studyEventLineEdit", "studyBatchLineEdit",
                            "studyCovariatesLineEdit", "studyIdColumnLineEdit", "studySplitLineEdit")

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedSegmentation = None
        self._running = False
        self._job = None  # the RunningJob of the background run, if any
        self._jobTimer = None
        self._effectFactory = None
        self._cohort = None  # (cohort, output folder, status table node) of the running cohort batch
        self._cohortTimer = None
        self._studyColumnsPath = None  # the clinical CSV whose header the study column line edits complete
        self._lastResult = None  # (workflow, result) of the last run, for "Save results to folder"

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadiomicsLab.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # Set scene in MRML widgets. In the .ui file the top-level qMRMLWidget's
        # "mrmlSceneChanged(vtkMRMLScene*)" signal is connected to each MRML widget's
        # "setMRMLScene(vtkMRMLScene*)" slot.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = RadiomicsLabLogic()

        # These connections ensure that we update parameter node when scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)

        # Segment editor on the Inputs' image and segmentation (its own editor node, not Segment Editor's).
        self.ui.segmentEditorWidget.setMaximumNumberOfUndoStates(10)
        self.ui.segmentEditorWidget.setSegmentationNodeSelectorVisible(False)
        self.ui.segmentEditorWidget.setSourceVolumeNodeSelectorVisible(False)
        self._selectSegmentEditorNode()

        self.ui.parameterFilePathLineEdit.nameFilters = [_("Parameter files") + " (*.yaml *.yml *.json)"]
        self.ui.cohortFilePathLineEdit.nameFilters = [_("Cohort files") + " (*.csv)"]
        self.ui.parameterFilePathLineEdit.connect("currentPathChanged(QString)", lambda path: self._setPath("parameterFile", path))
        self.ui.cohortFilePathLineEdit.connect("currentPathChanged(QString)", lambda path: self._setPath("cohortFile", path))
        self.ui.cohortOutputDirectoryButton.connect("directoryChanged(QString)", lambda path: self._setPath("cohortOutputDirectory", path))
        self.ui.studyFeaturesFilePathLineEdit.nameFilters = [_("Features tables") + " (*.csv *.parquet)"]
        self.ui.studyClinicalFilePathLineEdit.nameFilters = [_("Clinical tables") + " (*.csv)"]
        self.ui.studyModelFilePathLineEdit.nameFilters = [_("Study models") + " (*.joblib)"]
        self.ui.studyFeaturesFilePathLineEdit.connect("currentPathChanged(QString)", lambda path: self._setPath("studyFeaturesFile", path))
        self.ui.studyClinicalFilePathLineEdit.connect("currentPathChanged(QString)", lambda path: self._setPath("studyClinicalFile", path))
        self.ui.studyOutputDirectoryPathLineEdit.connect("currentPathChanged(QString)", lambda path: self._setPath("studyOutputDirectory", path))
        self.ui.studyModelFilePathLineEdit.connect("currentPathChanged(QString)", lambda path: self._setPath("studyModelFile", path))
        for name, widgetName in self.NODE_LIST_WIDGETS.items():
            getattr(self.ui, widgetName).connect("checkedNodesChanged()", lambda name=name: self._setNodeList(name))

        self.ui.segmentsListWidget.connect("itemChanged(QListWidgetItem*)", self._onSegmentChecked)
        self.ui.selectAllSegmentsButton.connect("clicked()", lambda: self._setAllSegmentsChecked(True))
        self.ui.selectNoSegmentsButton.connect("clicked()", lambda: self._setAllSegmentsChecked(False))
        self.ui.addRingButton.connect("clicked(bool)", self.onAddRingButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.computeMapsButton.connect("clicked(bool)", self.onComputeMapsButton)
        self.ui.analyseObserversButton.connect("clicked(bool)", self.onAnalyseObserversButton)
        self.ui.computeHabitatsButton.connect("clicked(bool)", self.onComputeHabitatsButton)
        self.ui.computeDeltaButton.connect("clicked(bool)", self.onComputeDeltaButton)
        self.ui.runCohortButton.connect("clicked(bool)", self.onRunCohortButton)
        self.ui.cancelCohortButton.connect("clicked(bool)", self.onCancelCohortButton)
        self.ui.runStudyButton.connect("clicked(bool)", self.onRunStudyButton)
        self.ui.applyStudyModelButton.connect("clicked(bool)", self.onApplyStudyModelButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.saveResultsButton.connect("clicked(bool)", self.onSaveResultsButton)

        self._cohortTimer = qt.QTimer()
        self._cohortTimer.setInterval(COHORT_POLL_MS)
        self._cohortTimer.connect("timeout()", self._onCohortTimer)
        self._jobTimer = qt.QTimer()
        self._jobTimer.setInterval(JOB_POLL_MS)
        self._jobTimer.connect("timeout()", self._onJobTimer)

        # As Segment Editor does: effects registered after this widget was made (e.g. by extensions loaded later)
        # appear in the embedded editor too.
        self._effectFactory = slicer.qSlicerSegmentEditorEffectFactory.instance()
        self._effectFactory.connect("effectRegistered(QString)", self.ui.segmentEditorWidget.updateEffectList)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._cohortTimer.stop()
        self._jobTimer.stop()
        if self._job is not None:
            self._job.run.cancel()
        self._effectFactory.disconnect("effectRegistered(QString)", self.ui.segmentEditorWidget.updateEffectList)
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()
        self._selectSegmentEditorNode()
        self.ui.segmentEditorWidget.installKeyboardShortcuts()
        self.ui.segmentEditorWidget.updateWidgetFromMRML()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.ui.segmentEditorWidget.removeViewObservations()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._observeSegmentation(None, refresh=False)  # the list and its checks stay as they are until enter()

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed: a running job is cancelled (its nodes would have nowhere to go)."""
        if self._job is not None:
            self._job.run.cancel()
        self.setParameterNode(None)
        self.ui.segmentEditorWidget.setSegmentationNode(None)
        self.ui.segmentEditorWidget.removeViewObservations()

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()
            self._selectSegmentEditorNode()

    def onSceneEndImport(self, caller, event) -> None:
        """Called after a scene was imported (File > Add Data of an .mrb): its parameter nodes are used."""
        if self.parent.isEntered:
            self.initializeParameterNode()
            self._selectSegmentEditorNode()
            self.ui.segmentEditorWidget.updateWidgetFromMRML()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed; preselect the first volume and segmentation."""
        self.setParameterNode(self.logic.getParameterNode())

        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode
        if not self._parameterNode.inputSegmentation:
            firstSegmentationNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if firstSegmentationNode:
                self._parameterNode.inputSegmentation = firstSegmentationNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Set and observe the parameter node; the GUI follows it (and it follows the GUI)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # In the .ui file, a Qt dynamic property "SlicerParameterName" is set on each bound widget.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """Widgets bound by hand follow the parameter node; the segment editor edits the Inputs' nodes."""
        parameterNode = self._parameterNode
        for name, widgetName in self.PATH_WIDGETS.items():
            widget, value = getattr(self.ui, widgetName), getattr(parameterNode, name) if parameterNode else ""
            current = widget.directory if widgetName.endswith("Button") else widget.currentPath
            if current != value:
                wasBlocked = widget.blockSignals(True)
                if widgetName.endswith("Button"):
                    widget.directory = value
                else:
                    widget.currentPath = value
                widget.blockSignals(wasBlocked)
        for name, widgetName in self.NODE_LIST_WIDGETS.items():
            widget = getattr(self.ui, widgetName)
            wanted = {node.GetID() for node in (getattr(parameterNode, name) if parameterNode else []) if node}
            wasBlocked = widget.blockSignals(True)
            for index in range(widget.nodeCount()):
                node = widget.nodeFromIndex(index)
                widget.setCheckState(node, qt.Qt.Checked if node.GetID() in wanted else qt.Qt.Unchecked)
            widget.blockSignals(wasBlocked)
        self.ui.presetComboBox.enabled = not (parameterNode and parameterNode.parameterFile)
        editor = self.ui.segmentEditorWidget
        if parameterNode and editor.mrmlSegmentEditorNode():
            if editor.segmentationNode() is not parameterNode.inputSegmentation:
                editor.setSegmentationNode(parameterNode.inputSegmentation)
            if editor.sourceVolumeNode() is not parameterNode.inputVolume:
                editor.setSourceVolumeNode(parameterNode.inputVolume)
        self._observeSegmentation(parameterNode.inputSegmentation if parameterNode else None)
        self._refreshStudyColumns()
        self._updateButtons()

    def _setPath(self, name: str, path: str) -> None:
        if self._parameterNode and getattr(self._parameterNode, name) != path:
            setattr(self._parameterNode, name, path)

    def _setNodeList(self, name: str) -> None:
        if self._parameterNode:
            checked = list(getattr(self.ui, self.NODE_LIST_WIDGETS[name]).checkedNodes())
            if [n.GetID() for n in getattr(self._parameterNode, name) if n] != [n.GetID() for n in checked]:
                setattr(self._parameterNode, name, checked)

    def _selectSegmentEditorNode(self) -> None:
        """The module's own segment editor parameter node (a scene singleton), created once."""
        tag = "RadiomicsLab"
        editorNode = slicer.mrmlScene.GetSingletonNode(tag, "vtkMRMLSegmentEditorNode")
        if editorNode is None:
            editorNode = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            editorNode.UnRegister(None)
            editorNode.SetSingletonTag(tag)
            editorNode = slicer.mrmlScene.AddNode(editorNode)
        if self.ui.segmentEditorWidget.mrmlSegmentEditorNode() is not editorNode:
            self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(editorNode)
        self._onParameterNodeModified()

    # Segment checklist ------------------------------------------------------------------------
    def _observeSegmentation(self, segmentationNode, refresh: bool = True) -> None:
        """Follow the segments of the selected segmentation (added, removed, renamed)."""
        if segmentationNode is not self._observedSegmentation:
            if self._observedSegmentation is not None:
                for event in self.SEGMENT_EVENTS:
                    self.removeObserver(self._observedSegmentation, event, self._onSegmentsModified)
            self._observedSegmentation = segmentationNode
            if segmentationNode is not None:
                for event in self.SEGMENT_EVENTS:
                    self.addObserver(segmentationNode, event, self._onSegmentsModified)
        if refresh:
            self._refreshSegmentsList()

    def _onSegmentsModified(self, caller=None, event=None) -> None:
        self._refreshSegmentsList()
        self._updateButtons()

    def _segmentItems(self) -> list:
        return [self.ui.segmentsListWidget.item(row) for row in range(self.ui.segmentsListWidget.count)]

    def _refreshSegmentsList(self) -> None:
        """One checkable item per segment (text: name, data: segment ID), checked unless the parameter node's
        ``uncheckedSegmentIds`` lists it: the checks are saved with the scene and follow it."""
        segmentationNode = self._observedSegmentation
        segments = []
        if segmentationNode is not None:
            segmentation = segmentationNode.GetSegmentation()
            segments = [(segmentation.GetNthSegmentID(i), segmentation.GetNthSegment(i).GetName())
                        for i in range(segmentation.GetNumberOfSegments())]
        unchecked = set(self._parameterNode.uncheckedSegmentIds) if self._parameterNode else set()
        states = [(segmentId, name, segmentId not in unchecked) for segmentId, name in segments]
        items = self._segmentItems()
        if states == [(item.data(qt.Qt.UserRole), item.text(), item.checkState() == qt.Qt.Checked) for item in items]:
            return
        wasBlocked = self.ui.segmentsListWidget.blockSignals(True)
        self.ui.segmentsListWidget.clear()
        for segmentId, name, checked in states:
            item = qt.QListWidgetItem(name)
            item.setData(qt.Qt.UserRole, segmentId)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked if checked else qt.Qt.Unchecked)
            self.ui.segmentsListWidget.addItem(item)
        self.ui.segmentsListWidget.blockSignals(wasBlocked)

    def _onSegmentChecked(self, item=None) -> None:
        """A check box of the segment list changed: the parameter node keeps the unchecked segments."""
        if self._parameterNode:
            unchecked = [i.data(qt.Qt.UserRole) for i in self._segmentItems() if i.checkState() != qt.Qt.Checked]
            if list(self._parameterNode.uncheckedSegmentIds) != unchecked:
                self._parameterNode.uncheckedSegmentIds = unchecked
        self._updateButtons()

    def _setAllSegmentsChecked(self, checked: bool) -> None:
        wasBlocked = self.ui.segmentsListWidget.blockSignals(True)
        for item in self._segmentItems():
            item.setCheckState(qt.Qt.Checked if checked else qt.Qt.Unchecked)
        self.ui.segmentsListWidget.blockSignals(wasBlocked)
        self._onSegmentChecked()

    def checkedSegmentIds(self) -> list:
        return [item.data(qt.Qt.UserRole) for item in self._segmentItems() if item.checkState() == qt.Qt.Checked]

    def firstCheckedSegmentId(self):
        """The segment that feature maps, habitats and rings work on: the first checked one."""
        segmentIds = self.checkedSegmentIds()
        return segmentIds[0] if segmentIds else None

    # Buttons ----------------------------------------------------------------------------------
    def _updateButtons(self, caller=None, event=None) -> None:
        """Enable each section's button when its inputs are there; its tooltip says what is missing."""
        p = self._parameterNode
        image = bool(p and p.inputVolume)
        segments = bool(p and p.inputSegmentation and self.checkedSegmentIds())
        observers = bool(p and (len(p.observerSegmentations) >= 2 or len(self.checkedSegmentIds()) >= 2
                                or (p.observerPerturbations and (p.observerSegmentations or segments))))
        timepoints = bool(p and (p.deltaStudy or len(p.timepointVolumes) >= 2))
        cohort = bool(p and p.cohortFile and p.cohortOutputDirectory)
        studyFeatures = bool(p and (p.studyFeaturesTable or p.studyFeaturesFile))
        study = bool(studyFeatures and p.studyClinicalFile and (p.studyOutcome or (p.studyTime and p.studyEvent)))
        studyModel = bool(studyFeatures and p.studyModelFile)
        needs = _("Select an image and a segmentation, and check a segment.")
        states = {
            "addRingButton": (image and segments, needs, _("Add the ring around the first checked segment as a new segment.")),
            "applyButton": (image and segments, needs, _("Extract the features of the checked segments.")),
            "computeMapsButton": (image and segments, needs, _("Compute the maps inside the first checked segment.")),
            "analyseObserversButton": (image and observers,
                                       _("Select an image and check two observers' segmentations (or two segments)."),
                                       _("Agreement, consensus and feature reproducibility of the observers.")),
            "computeHabitatsButton": (image and segments, needs, _("Cluster the first checked segment into habitats.")),
            "computeDeltaButton": (timepoints, _("Select a study, or check two or more timepoint images under Inputs."),
                                   _("Features at every timepoint and their change.")),
            "runCohortButton": (cohort, _("Choose a cohort file and an output folder."),
                                _("Extract every case of the cohort; finished cases are skipped.")),
            "runStudyButton": (study, _("Choose the features (a table or a file), the clinical CSV and the outcome column "
                                        "(or the time and event columns of a survival study)."),
                               _("Nested cross-validation of the models: metrics with confidence intervals, the signature model.")),
            "applyStudyModelButton": (studyModel, _("Choose a study's model file (model.joblib) and the features."),
                                      _("Apply the model to the features: one prediction per patient in a new table.")),
        }
        cohortRunning = self._cohort is not None
        for name, (ready, missing, ok) in states.items():
            button = getattr(self.ui, name)
            button.enabled = ready and not self._running and not (name == "runCohortButton" and cohortRunning)
            button.toolTip = ok if ready else missing
        self.ui.cancelCohortButton.enabled = cohortRunning
        self.ui.saveResultsButton.enabled = self._lastResult is not None and not self._running

    def _setRunning(self, running: bool) -> None:
        self._running = running
        self.ui.cancelButton.enabled = running
        if running:
            self.ui.progressBar.maximum = 1
            self.ui.progressBar.value = 0
        self._updateButtons()

    def onCancelButton(self) -> None:
        """Stop the running job: its worker process is terminated at once; nothing is added to the scene."""
        if self._job is not None:
            self._job.run.cancel()

    def _start(self, failure: str, makeJob, onDone=None, onProgress=None) -> None:
        """Run one Logic job in the background (see RadiomicsLabLib.background and the README's "Desktop Slicer").

        ``makeJob()`` checks the inputs and reads them from the scene here, on the main thread (a mistake is shown at
        once); the computation runs in a worker process while the window stays responsive, progress and Cancel work
        at any time, and ``onDone(result)`` gets what the job added to the scene when it is done. Nodes that
        ``makeJob`` itself added (e.g. a new delta study) are removed again when the job fails or is cancelled.
        """
        if self._job is not None or not ensureDependencies():
            return
        from RadiomicsLabLib.background import BackgroundRun

        before = set(sceneNodeIds())
        try:
            with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
                run = BackgroundRun(makeJob())
        except Exception:  # shown by tryWithErrorDisplay
            removeNodesAddedSince(before)
            return
        self._job = RunningJob(run, failure, onDone, onProgress, before)
        self._setRunning(True)
        self._jobTimer.start()

    def _onJobTimer(self) -> None:
        """Poll the running job (every JOB_POLL_MS): progress, then its result or its error."""
        job = self._job
        if job is None:
            self._jobTimer.stop()
            return
        running = job.run.poll()
        done, total, message = job.run.progress
        self.ui.progressBar.maximum = max(total, 1)
        self.ui.progressBar.value = done
        slicer.util.showStatusMessage(f"{job.run.job.title}: {message} ({done}/{total})" if message else job.run.job.title)
        if job.onProgress:
            job.onProgress(done, total, message)
        if running:
            return
        self._jobTimer.stop()
        self._job = None
        self._setRunning(False)
        if job.run.state == "done":
            slicer.util.showStatusMessage(_("{title}: done in {seconds:.1f} s").format(
                title=job.run.job.title, seconds=time.monotonic() - job.run.started), 5000)
            if job.onDone:
                job.onDone(job.run.value)
            return
        removeNodesAddedSince(job.nodesBefore)
        if job.run.state == "cancelled":
            slicer.util.showStatusMessage(str(job.run.error), 5000)
        else:
            slicer.util.errorDisplay(f"{job.failure}\n\n{job.run.error}", windowTitle=_("RadiomicsLab"))

    def _settings(self):
        """The feature settings of every workflow (the parameter file, else the preset), checked: pyradiomics-style
        settings run on the chosen engine (native needs no pyradiomics), IBSI settings on the IBSI engine."""
        from RadiomicsLabLib.settings import load_settings

        p = self._parameterNode
        settings = load_settings(p.parameterFile or p.preset)
        return settings if settings.engine == "ibsi" else load_settings(settings, engine=p.engine)

    # Results ----------------------------------------------------------------------------------
    def _showResult(self, workflow: str, result, table, chart=None) -> None:
        """Show a run's table (and chart) and keep its result for "Save results to folder"."""
        showTable(table)
        if chart is not None:
            showChart(chart)
        self._lastResult = (workflow, result)
        self._updateButtons()

    def onSaveResultsButton(self) -> None:
        """Write the last result's files into a chosen folder: the workflow's Logic ``save_results``, the core writer
        the radiomicslab command uses, so the folder holds the command's files for the same inputs."""
        workflow, result = self._lastResult
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Save results to folder"))
        if not folder:
            return
        saves = {"extraction": lambda: self.logic.save_results(result, folder),
                 "maps": lambda: self.logic.featureMaps.save_results(result, folder),
                 "observers": lambda: self.logic.observers.save_results(result, folder),
                 "habitats": lambda: self.logic.habitats.save_results(result, folder),
                 "delta": lambda: self.logic.delta.save_results(result, folder),
                 "cohort": lambda: self.logic.cohort.save_results(result, folder),
                 "study": lambda: self.logic.study.save_results(result, folder)}
        with slicer.util.tryWithErrorDisplay(_("Saving the results failed."), waitCursor=True):
            written = saves[workflow]()
            slicer.util.showStatusMessage(_("Saved {count} files to {folder}").format(count=len(written), folder=folder), 5000)

    # Segmentation -----------------------------------------------------------------------------
    def onAddRingButton(self) -> None:
        p = self._parameterNode
        self._start(_("Adding the ring failed."), lambda: self.logic.habitats.add_ring_job(
            p.inputSegmentation, self.firstCheckedSegmentId(), p.ringStartMm, p.ringStopMm, reference_volume=p.inputVolume))

    # Extraction -------------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        """Extract the checked segments' features into a new table (or the chosen output table) and show it."""
        p = self._parameterNode
        self._start(_("Feature extraction failed."), lambda: self.logic.extract_job(
            p.inputVolume, p.inputSegmentation, segment_ids=self.checkedSegmentIds(), settings=self._settings(),
            image_types=splitImageTypes(p.imageTypes) or None, table_node=p.outputTable),
            onDone=lambda table: self._showResult("extraction", table, table))

    # Feature maps -----------------------------------------------------------------------------
    def onComputeMapsButton(self) -> None:
        """Maps of the first checked segment, the first shown over the image, the summary in a table."""
        p = self._parameterNode

        def progress(done, total, message=""):
            if done == 0 and message:  # compute's first report: the checked plan and its memory estimate
                self.ui.mapEstimateLabel.text = message

        self._start(_("Feature maps failed."), lambda: self.logic.featureMaps.compute_job(
            p.inputVolume, p.inputSegmentation, self.firstCheckedSegmentId(), features=p.mapFeatures,
            radius=p.mapRadius, definition=p.mapDefinition, opacity=p.mapOpacity),
            onDone=lambda result: self._showResult("maps", result, result.table), onProgress=progress)

    # Observers --------------------------------------------------------------------------------
    def onAnalyseObserversButton(self) -> None:
        """Agreement, consensus and (optionally) feature reproducibility of the observers."""
        p = self._parameterNode
        observers = list(p.observerSegmentations) or [(p.inputSegmentation, s) for s in self.checkedSegmentIds()]

        def show(results):
            self._showResult("observers", results, results.main_table, results.main_chart)

        self._start(_("Observer analysis failed."), lambda: self.logic.observers.analyse_job(
            p.inputVolume, observers, features=p.observerFeatures, settings=self._settings(),
            perturbations=True if p.observerPerturbations else None), onDone=show)

    # Habitats ---------------------------------------------------------------------------------
    def onComputeHabitatsButton(self) -> None:
        """Habitats of the first checked segment from the channels (or the image); statistics and fractions shown."""
        p = self._parameterNode
        channels = list(p.channelVolumes) or [p.inputVolume]

        def show(nodes):
            self._showResult("habitats", nodes, nodes.statistics, nodes.fractions_chart)

        self._start(_("Habitats failed."), lambda: self.logic.habitats.habitats_job(
            p.inputSegmentation, self.firstCheckedSegmentId(), channels, n_habitats=p.habitatCount or "auto",
            method=p.habitatMethod, reference_volume=p.inputVolume, min_island_mm3=p.habitatMinIslandMm3,
            feature_maps=p.habitatFeatureMaps or None, map_radius=p.mapRadius, map_definition=p.mapDefinition,
            features=self._settings() if p.habitatFeatures else None), onDone=show)

    # Delta ------------------------------------------------------------------------------------
    def onComputeDeltaButton(self) -> None:
        """Delta features of the selected study, or of a new study made from the checked timepoints."""
        p = self._parameterNode
        study = p.deltaStudy

        def makeJob():
            nonlocal study
            if study is None:  # a new study is made now; removed again if the job fails or is cancelled
                study = self.logic.delta.study_from_nodes(
                    p.timepointVolumes, self.logic.delta.segmentations_for(p.timepointVolumes, p.timepointSegmentations),
                    dates=splitDates(p.timepointDates) or None)
            return self.logic.delta.compute_job(
                study, settings=self._settings(), register=None if p.deltaRegistration == "none" else p.deltaRegistration,
                propagate=p.deltaPropagate, reference=p.deltaReference or "baseline")

        def show(nodes):
            p.deltaStudy = study
            self._showResult("delta", nodes, nodes.table, nodes.trajectories)

        self._start(_("Delta-radiomics failed."), makeJob, onDone=show)

    # Cohort -----------------------------------------------------------------------------------
    def onRunCohortButton(self) -> None:
        """Start the cohort batch in the background; the status table is refreshed until it ends."""
        if not ensureDependencies():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("The cohort could not start."), waitCursor=True):
            cohort = self.logic.cohort.load_cohort(p.cohortFile)
            self.logic.cohort.start(cohort, p.cohortOutputDirectory, settings=self._settings(),
                                    image_types=splitImageTypes(p.imageTypes) or None, workers=None if p.cohortWorkers < 0 else p.cohortWorkers,
                                    retry_failed=p.cohortRetryFailed)
            table = self.logic.cohort.status_table(cohort, p.cohortOutputDirectory)
            self._cohort = (cohort, p.cohortOutputDirectory, table)
            showTable(table)
            self._cohortTimer.start()
        self._updateButtons()

    def onCancelCohortButton(self) -> None:
        self.logic.cohort.cancel()
        self.ui.cohortStatusLabel.text = _("Stopping after the cases in progress...")

    def _onCohortTimer(self) -> None:
        """Refresh the per-case status; when the batch ended, show its features (or its error)."""
        if self._cohort is None:
            self._cohortTimer.stop()
            return
        cohort, folder, table = self._cohort
        self.logic.cohort.status_table(cohort, folder, table_node=table)
        done, total, message = self.logic.cohort.progress_state
        self.ui.progressBar.maximum = max(total, 1)
        self.ui.progressBar.value = done
        self.ui.cohortStatusLabel.text = f"{table.GetAttribute('RadiomicsLab.CohortCounts') or ''} {message}".strip()
        if self.logic.cohort.is_running():
            return
        self._cohortTimer.stop()
        self._cohort = None
        self._updateButtons()
        try:
            with slicer.util.tryWithErrorDisplay(_("The cohort run ended with an error."), waitCursor=True):
                try:
                    self.logic.cohort.wait()
                except Cancelled as cancelled:
                    slicer.util.showStatusMessage(str(cancelled), 5000)
                self._showResult("cohort", folder, self.logic.cohort.results_table(cohort, folder))
        except Exception:  # shown by tryWithErrorDisplay
            pass

    # Study ------------------------------------------------------------------------------------
    def _studyFeatures(self):
        """The study's features: the chosen table node (e.g. a cohort's features table), else the features file."""
        p = self._parameterNode
        return p.studyFeaturesTable or p.studyFeaturesFile

    def _refreshStudyColumns(self) -> None:
        """When the clinical CSV changes, the column line edits complete its header's column names."""
        path = self._parameterNode.studyClinicalFile if self._parameterNode else ""
        if path == self._studyColumnsPath:
            return
        self._studyColumnsPath = path
        columns = clinicalColumns(path)
        for widgetName in self.STUDY_COLUMN_WIDGETS:
            widget = getattr(self.ui, widgetName)
            completer = qt.QCompleter(columns, widget)  # a child of the line edit: Qt owns it
            completer.setCaseSensitivity(qt.Qt.CaseInsensitive)
            widget.setCompleter(completer)
        self.ui.studyColumnsLabel.text = (_("Columns: {columns}").format(columns=", ".join(columns)) if columns
                                          else _("No columns read from the clinical file.") if path else "")

    def onRunStudyButton(self) -> None:
        """Run the study in the background; the metrics table and the main chart (ROC or Kaplan-Meier) are shown."""
        p = self._parameterNode
        if (p.studyTime or p.studyEvent) and importlib.util.find_spec("sksurv") is None:
            slicer.util.errorDisplay(survivalUnavailableMessage(), windowTitle=_("RadiomicsLab"))
            return

        def show(results):
            self.ui.studyStatusLabel.text = results.summary  # ends with the folder of the study's files
            self._showResult("study", results, results.main_table, results.main_chart)

        self._start(_("The study failed."), lambda: self.logic.study.run_job(
            self._studyFeatures(), p.studyClinicalFile, p.studyOutputDirectory or None, name="Study",
            outcome=p.studyOutcome or None, positive=p.studyPositive or None, time=p.studyTime or None,
            event=p.studyEvent or None, batch=p.studyBatch or None, covariates=splitNames(p.studyCovariates),
            split=p.studySplit or None, id_column=p.studyIdColumn or "id", models=splitNames(p.studyModels) or None,
            selection=splitNames(p.studySelection) or None, outer=p.studyOuter, repeats=p.studyRepeats,
            inner=p.studyInner, seed=p.studySeed), onDone=show)

    def onApplyStudyModelButton(self) -> None:
        """Apply a study's model.joblib to the features (the clinical CSV gives the batch and covariate columns)."""
        p = self._parameterNode
        self._start(_("Applying the model failed."), lambda: self.logic.study.predict_job(
            p.studyModelFile, self._studyFeatures(), p.studyClinicalFile or None, id_column=p.studyIdColumn or "id"),
            onDone=showTable)


def splitNames(text: str) -> list:
    """Names typed in the GUI separated by commas (covariates, models, selection steps): ``"a, b"`` -> ``["a", "b"]``."""
    return [name.strip() for name in text.split(",") if name.strip()]


def clinicalColumns(path: str) -> list:
    """The column names of a CSV file's header row (empty when there is no readable file)."""
    if not path or not os.path.isfile(path):
        return []
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            return [name.strip() for name in next(csv.reader(file), []) if name.strip()]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def survivalUnavailableMessage() -> str:
    """Why a survival study cannot run in this Slicer (no scikit-survival) and how to install it."""
    return _("A survival study (time and event columns) needs the Python package scikit-survival, which RadiomicsLab "
             "does not install into Slicer. It provides {why}.\n\nTo install it, run in Slicer's Python console:\n"
             "slicer.util.pip_install('scikit-survival')\nthen run the study again. A binary outcome needs no extra "
             "package.").format(why=OPTIONAL_IN_SLICER["scikit-survival"][1])


def splitImageTypes(text: str) -> list:
    """The image types typed in the GUI, separated by white space, as a list for ``parse_image_types``.

    ``"Original LoG:sigma=1,3 Wavelet:wavelet=db2;level=1"`` -> ``["Original", "LoG:sigma=1,3",
    "Wavelet:wavelet=db2;level=1"]``. Spaces typed inside one image type's options (``LoG:sigma=1, 3``,
    ``Wavelet:wavelet=db2; level=1``) are tolerated: a word that is not ``Name`` or ``Name:...``
    continues the previous image type. A comma or semicolon left at the end of an image type is dropped.
    """
    specs = []
    for word in text.split():
        if specs and not re.match(r"[A-Za-z]\w*(:|[,;]?$)", word):
            specs[-1] += word
        else:
            specs.append(word)
    return [spec.rstrip(",;") for spec in specs if spec.rstrip(",;")]


def splitDates(text: str) -> list:
    """The timepoint dates typed in the GUI (``2024-01-10, 2024-03-05`` or separated by spaces), in order."""
    return [date for date in re.split(r"[\s,;]+", text) if date]


@dataclass
class RunningJob:
    """The widget's background job: the run, how to report a failure, what to do with the result, and the scene's
    node IDs before the job was prepared (nodes added since are removed when it fails or is cancelled)."""

    run: object
    failure: str
    onDone: object
    onProgress: object
    nodesBefore: set


def sceneNodeIds() -> list:
    scene = slicer.mrmlScene
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def removeNodesAddedSince(nodeIds: set) -> None:
    """Remove the nodes added to the scene since ``nodeIds`` was taken (what a failed or cancelled job prepared)."""
    for nodeId in reversed(sceneNodeIds()):
        node = slicer.mrmlScene.GetNodeByID(nodeId)
        if nodeId not in nodeIds and node is not None:
            slicer.mrmlScene.RemoveNode(node)


def showTable(tableNode) -> None:
    """Switch to a layout with a table view and show ``tableNode`` in it."""
    if tableNode is None:
        return
    slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
    applicationLogic = slicer.app.applicationLogic()
    applicationLogic.GetSelectionNode().SetActiveTableID(tableNode.GetID())
    applicationLogic.PropagateTableSelection()


def showChart(chartNode) -> None:
    """Show a plot chart node in the layout's plot view (Slicer switches to a layout that has one)."""
    if chartNode is not None:
        slicer.modules.plots.logic().ShowChartInLayout(chartNode)


#
# RadiomicsLabLogic
#


class RadiomicsLabLogic(ScriptedLoadableModuleLogic, ExtractionLogic):
    """The module logic: RadiomicsLabLib's ExtractionLogic on the application's scene, plus one Logic per workflow.

    ``slicer.util.getModuleLogic("RadiomicsLab")`` gives it in the console: ``extract``, ``load_volume``,
    ``load_segmentation``, ``export_table``, ``save_scene``, ``load_scene`` (see
    :class:`RadiomicsLabLib.mrml.extraction.ExtractionLogic`), and ``featureMaps``, ``observers``,
    ``habitats``, ``delta``, ``cohort``, ``study`` (the Logic classes of ``RadiomicsLabLib.mrml``, made on first use).
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ExtractionLogic.__init__(self, slicer.mrmlScene)
        self._workflows = {}

    def _workflow(self, module: str, className: str):
        """The workflow's Logic on the application's scene, imported and made on first use."""
        if className not in self._workflows:
            logicClass = getattr(importlib.import_module(f"RadiomicsLabLib.mrml.{module}"), className)
            self._workflows[className] = logicClass(slicer.mrmlScene)
        return self._workflows[className]

    @property
    def featureMaps(self):
        """:class:`RadiomicsLabLib.mrml.featuremaps.FeatureMapLogic`"""
        return self._workflow("featuremaps", "FeatureMapLogic")

    @property
    def observers(self):
        """:class:`RadiomicsLabLib.mrml.observers.ObserverLogic`"""
        return self._workflow("observers", "ObserverLogic")

    @property
    def habitats(self):
        """:class:`RadiomicsLabLib.mrml.habitats.HabitatLogic`"""
        return self._workflow("habitats", "HabitatLogic")

    @property
    def delta(self):
        """:class:`RadiomicsLabLib.mrml.delta.DeltaLogic`"""
        return self._workflow("delta", "DeltaLogic")

    @property
    def cohort(self):
        """:class:`RadiomicsLabLib.mrml.cohort.CohortLogic`"""
        return self._workflow("cohort", "CohortLogic")

    @property
    def study(self):
        """:class:`RadiomicsLabLib.mrml.study.StudyLogic`"""
        return self._workflow("study", "StudyLogic")

    def getParameterNode(self):
        return RadiomicsLabParameterNode(super().getParameterNode())


#
# RadiomicsLabTest
#


class RadiomicsLabTest(ScriptedLoadableModuleTest):
    """Runs the scenarios of RadiomicsLabLib.mrml.scenarios (the ones pytest runs headless) in this Slicer.

    Uses only the cases this module registers with the Sample Data module (pyradiomics' brain1, brain2 and
    breast1 MR test cases, RadiomicsLabLib.mrml.sampledata): Sample Data downloads each file from its registered
    URL into Slicer's download cache (slicer.app.cachePath) on first use and reuses it while its SHA-256
    matches. It needs RadiomicsLab's Python packages and installs nothing: without them it fails, listing them.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RadiomicsLabScenarios()

    def test_RadiomicsLabScenarios(self):
        if UNSUPPORTED_SLICER:
            self.fail(UNSUPPORTED_SLICER)
        missing = missing_requirements()
        if missing:
            self.fail("The RadiomicsLab self-test needs these Python packages, which this Slicer does not have: "
                      f"{', '.join(missing)} (listed in {requirements_file()}). Install them (open the RadiomicsLab "
                      "module and run a workflow: it offers to install them), then run the test again.")
        from SampleData import SampleDataLogic

        from RadiomicsLabLib.mrml import sampledata, scenarios

        scene = slicer.mrmlScene
        self.assertTrue(sampledata.register_sample_data(),
                        "RadiomicsLab's sample cases could not be registered with Sample Data (see the log)")
        first = sampledata.SAMPLE_CASES[0]
        self.delayDisplay(f"Loading {first.name} from the Sample Data module ({first.sample_name})")
        loaded = SampleDataLogic().downloadSamples(first.sample_name)
        self.assertEqual([node.GetClassName() for node in loaded],
                         ["vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode"])
        self.assertGreater(loaded[1].GetSegmentation().GetNumberOfSegments(), 0)
        scene.Clear()
        self.delayDisplay("Getting the sample cases from Sample Data's download cache")
        cases = {case.name: sampledata.slicer_sample_case(case.name) for case in sampledata.SAMPLE_CASES}
        self.delayDisplay(f"Loading the {first.name} sample case")
        scenarios.load_sample(scene, cases)
        scene.Clear()
        self.delayDisplay(f"Extracting {first.name} features and checking them against a second route")
        scenarios.extract_sample(scene, cases)
        with tempfile.TemporaryDirectory() as tmp:
            self.delayDisplay("Saving the scene as .mrb and loading it back")
            scenarios.save_and_reload(scene, cases, Path(tmp) / "RadiomicsLabSelfTest.mrb")
            for title, scenario in (("Feature maps", scenarios.feature_maps_sample),
                                    ("Observers", scenarios.observers_sample),
                                    ("Habitats and rings", scenarios.habitats_sample),
                                    ("Delta-radiomics", scenarios.delta_sample)):
                scene.Clear()
                self.delayDisplay(f"{title} scenario")
                scenario(scene, cases)
            scene.Clear()
            self.delayDisplay("Cohort scenario")
            scenarios.cohort_sample(scene, cases, tmp)
        self.delayDisplay("Test passed")
