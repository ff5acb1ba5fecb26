"""RadiomicsLab scripted module: the desktop Slicer GUI over RadiomicsLabLib's MRML logic.

The widget only turns GUI state (kept in a parameter node) into one Logic call. The Logic is
:class:`RadiomicsLabLib.mrml.extraction.ExtractionLogic` on ``slicer.mrmlScene``, so the console
works the same way::

    logic = slicer.util.getModuleLogic("RadiomicsLab")
    table = logic.extract(volumeNode, segmentationNode, settings="pyradiomics-default")
"""

import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
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

from RadiomicsLabLib.extraction import ExtractionCancelled  # noqa: E402
from RadiomicsLabLib.mrml.extraction import ExtractionLogic  # noqa: E402
from RadiomicsLabLib.settings import DEFAULT_PRESET, preset_names  # noqa: E402

#: Python packages RadiomicsLab needs beyond what Slicer ships: import name -> pip requirement.
REQUIRED_PACKAGES = {"radiomics": "pyradiomics-bhklab", "yaml": "PyYAML"}


def ensureDependencies() -> bool:
    """True when pyradiomics (and PyYAML) can be imported; otherwise offer to pip-install them."""
    missing = [requirement for module, requirement in REQUIRED_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(
            _("RadiomicsLab needs these Python packages: {packages}. Install them now? This may take a minute.")
            .format(packages=", ".join(missing)), windowTitle=_("RadiomicsLab")):
        return False
    with slicer.util.tryWithErrorDisplay(_("Installing {packages} failed.").format(packages=", ".join(missing)), waitCursor=True):
        slicer.util.pip_install(" ".join(missing))
    importlib.invalidate_caches()
    return all(importlib.util.find_spec(module) is not None for module in REQUIRED_PACKAGES)


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
        self.parent.categories = ["Radiomics"]
        self.parent.dependencies = []
        self.parent.contributors = ["RadiomicsLab contributors"]
        self.parent.helpText = _("""
Extracts radiomics features of the checked segments of a segmentation over a scalar volume, with
pyradiomics-compatible settings (a preset or a pyradiomics parameter file) and optional filtered
image types. Results go to a table node (one row per segment and feature) that carries the
provenance of the run, and are saved with the scene.
The same logic is available from the Python console: <code>slicer.util.getModuleLogic("RadiomicsLab")</code>.
""")
        self.parent.acknowledgementText = _("""
RadiomicsLab builds on 3D Slicer and on pyradiomics (van Griethuysen et al., Cancer Research 2017),
and follows the Image Biomarker Standardisation Initiative (IBSI).
""")
        iconPath = self.resourcePath("Icons/RadiomicsLab.png")
        if os.path.isfile(iconPath):
            self.parent.icon = qt.QIcon(iconPath)


#
# RadiomicsLabParameterNode
#


@parameterNodeWrapper
class RadiomicsLabParameterNode:
    """
    The GUI state of the module, saved with the scene.

    inputVolume - Image whose features are extracted.
    inputSegmentation - Segmentation holding the segments (regions of interest).
    preset - Shipped extraction settings, used when parameterFile is empty.
    parameterFile - Path of a pyradiomics parameter file (YAML/JSON); empty: use the preset.
    imageTypes - Image types separated by white space (see splitImageTypes); empty: those of the settings.
    outputTable - Table receiving the features; none: a new table is created.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: vtkMRMLSegmentationNode
    preset: Annotated[str, Choice(preset_names())] = DEFAULT_PRESET
    parameterFile: str = ""
    imageTypes: str = ""
    outputTable: vtkMRMLTableNode


#
# RadiomicsLabWidget
#


class RadiomicsLabWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    SEGMENT_EVENTS = (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                      slicer.vtkSegmentation.SegmentModified)

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedSegmentation = None
        self._listedSegmentation = None
        self._running = False
        self._cancelRequested = False

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

        # The parameter file is a str in the parameter node; the parameter node wrapper binds
        # ctkPathLineEdit only to pathlib.Path (where "" would become "."), so it is synchronized here.
        self.ui.parameterFilePathLineEdit.nameFilters = [_("Parameter files") + " (*.yaml *.yml *.json)"]
        self.ui.parameterFilePathLineEdit.connect("currentPathChanged(QString)", self.onParameterFileChanged)

        self.ui.segmentsListWidget.connect("itemChanged(QListWidgetItem*)", self._checkCanApply)
        self.ui.selectAllSegmentsButton.connect("clicked()", lambda: self._setAllSegmentsChecked(True))
        self.ui.selectNoSegmentsButton.connect("clicked()", lambda: self._setAllSegmentsChecked(False))
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._observeSegmentation(None, refresh=False)  # the list and its checks stay as they are until enter()

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

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
        parameterNode = self._parameterNode
        parameterFile = parameterNode.parameterFile if parameterNode else ""
        if self.ui.parameterFilePathLineEdit.currentPath != parameterFile:
            wasBlocked = self.ui.parameterFilePathLineEdit.blockSignals(True)
            self.ui.parameterFilePathLineEdit.currentPath = parameterFile
            self.ui.parameterFilePathLineEdit.blockSignals(wasBlocked)
        self.ui.presetComboBox.enabled = not parameterFile
        self._observeSegmentation(parameterNode.inputSegmentation if parameterNode else None)
        self._checkCanApply()

    def onParameterFileChanged(self, path) -> None:
        if self._parameterNode and self._parameterNode.parameterFile != path:
            self._parameterNode.parameterFile = path

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
        self._checkCanApply()

    def _segmentItems(self) -> list:
        return [self.ui.segmentsListWidget.item(row) for row in range(self.ui.segmentsListWidget.count)]

    def _refreshSegmentsList(self) -> None:
        """One checkable item per segment (text: name, data: segment ID); checks are kept for known segments."""
        segmentationNode = self._observedSegmentation
        segments = []
        if segmentationNode is not None:
            segmentation = segmentationNode.GetSegmentation()
            segments = [(segmentation.GetNthSegmentID(i), segmentation.GetNthSegment(i).GetName())
                        for i in range(segmentation.GetNumberOfSegments())]
        items = self._segmentItems()
        if segmentationNode is self._listedSegmentation and segments == [(item.data(qt.Qt.UserRole), item.text()) for item in items]:
            return
        unchecked = set()
        if segmentationNode is self._listedSegmentation:
            unchecked = {item.data(qt.Qt.UserRole) for item in items if item.checkState() != qt.Qt.Checked}
        wasBlocked = self.ui.segmentsListWidget.blockSignals(True)
        self.ui.segmentsListWidget.clear()
        for segmentId, name in segments:
            item = qt.QListWidgetItem(name)
            item.setData(qt.Qt.UserRole, segmentId)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Unchecked if segmentId in unchecked else qt.Qt.Checked)
            self.ui.segmentsListWidget.addItem(item)
        self.ui.segmentsListWidget.blockSignals(wasBlocked)
        self._listedSegmentation = segmentationNode

    def _setAllSegmentsChecked(self, checked: bool) -> None:
        for item in self._segmentItems():
            item.setCheckState(qt.Qt.Checked if checked else qt.Qt.Unchecked)
        self._checkCanApply()

    def checkedSegmentIds(self) -> list:
        return [item.data(qt.Qt.UserRole) for item in self._segmentItems() if item.checkState() == qt.Qt.Checked]

    # Apply ------------------------------------------------------------------------------------
    def _checkCanApply(self, caller=None, event=None) -> None:
        parameterNode = self._parameterNode
        if self._running:
            self.ui.applyButton.enabled = False
        elif not parameterNode or not parameterNode.inputVolume or not parameterNode.inputSegmentation:
            self.ui.applyButton.toolTip = _("Select an input volume and a segmentation.")
            self.ui.applyButton.enabled = False
        elif not self.checkedSegmentIds():
            self.ui.applyButton.toolTip = _("Check at least one segment.")
            self.ui.applyButton.enabled = False
        else:
            self.ui.applyButton.toolTip = _("Extract the features of the checked segments.")
            self.ui.applyButton.enabled = True

    def _setRunning(self, running: bool, total: int = 0) -> None:
        self._running = running
        self._cancelRequested = False
        self.ui.cancelButton.enabled = running
        if running:
            self.ui.progressBar.maximum = max(total, 1)
            self.ui.progressBar.value = 0
        self._checkCanApply()

    def _onProgress(self, done: int, total: int, segment: str) -> bool:
        """Progress callback of ExtractionLogic.extract: False cancels the run."""
        self.ui.progressBar.maximum = total
        self.ui.progressBar.value = done
        slicer.util.showStatusMessage(_("Extracted segment {segment} ({done}/{total})").format(segment=segment, done=done, total=total))
        slicer.app.processEvents()
        return not self._cancelRequested

    def onCancelButton(self) -> None:
        self._cancelRequested = True

    def onApplyButton(self) -> None:
        """Run the extraction when the user clicks "Apply"."""
        if not ensureDependencies():
            return
        parameterNode = self._parameterNode
        segmentIds = self.checkedSegmentIds()
        self._setRunning(True, len(segmentIds))
        try:
            with slicer.util.tryWithErrorDisplay(_("Feature extraction failed."), waitCursor=True):
                try:
                    table = self.logic.extract(
                        parameterNode.inputVolume,
                        parameterNode.inputSegmentation,
                        segment_ids=segmentIds,
                        settings=parameterNode.parameterFile or parameterNode.preset,
                        image_types=splitImageTypes(parameterNode.imageTypes) or None,
                        table_node=parameterNode.outputTable,
                        progress=self._onProgress,
                    )
                except ExtractionCancelled as cancelled:
                    slicer.util.showStatusMessage(str(cancelled), 5000)
                    return
                parameterNode.outputTable = table
                self._showTable(table)
        finally:
            self._setRunning(False)

    @staticmethod
    def _showTable(tableNode) -> None:
        """Switch to a layout with a table view and show ``tableNode`` in it."""
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
        applicationLogic = slicer.app.applicationLogic()
        applicationLogic.GetSelectionNode().SetActiveTableID(tableNode.GetID())
        applicationLogic.PropagateTableSelection()


#
# RadiomicsLabLogic
#


class RadiomicsLabLogic(ScriptedLoadableModuleLogic, ExtractionLogic):
    """The module logic is RadiomicsLabLib's ExtractionLogic on the application's scene.

    Usable without the widget: ``slicer.util.getModuleLogic("RadiomicsLab").extract(volume, segmentation)``.
    See :class:`RadiomicsLabLib.mrml.extraction.ExtractionLogic` for ``load_volume``,
    ``load_segmentation``, ``extract``, ``export_table``, ``save_scene``, ``load_scene``.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ExtractionLogic.__init__(self, slicer.mrmlScene)

    def getParameterNode(self):
        return RadiomicsLabParameterNode(super().getParameterNode())


#
# RadiomicsLabTest
#


class RadiomicsLabTest(ScriptedLoadableModuleTest):
    """Runs the scenarios of RadiomicsLabLib.mrml.scenarios (the ones pytest runs headless) in this Slicer.

    Needs the reference data: set RADIOMICSLAB_DATA to the shared data folder (with pyradiomics_cases/).
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RadiomicsLabScenarios()

    def test_RadiomicsLabScenarios(self):
        self.assertTrue(ensureDependencies(), "pyradiomics-bhklab and PyYAML are needed to run the RadiomicsLab test")
        from RadiomicsLabLib.data import data_dir
        from RadiomicsLabLib.mrml import scenarios

        scene, folder = slicer.mrmlScene, data_dir()
        self.delayDisplay(f"Loading the brain1 sample case from {folder}")
        scenarios.load_sample(scene, folder)
        scene.Clear()
        self.delayDisplay("Extracting brain1 features and comparing them with pyradiomics")
        scenarios.extract_sample(scene, folder)
        self.delayDisplay("Saving the scene as .mrb and loading it back")
        with tempfile.TemporaryDirectory() as tmp:
            scenarios.save_and_reload(scene, folder, Path(tmp) / "RadiomicsLabSelfTest.mrb")
        self.delayDisplay("Test passed")
