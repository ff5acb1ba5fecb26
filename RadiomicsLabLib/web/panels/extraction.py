"""Extraction panel: settings (preset or parameter file), segments, run with progress.

Apply is one :meth:`~RadiomicsLabLib.mrml.ExtractionLogic.extract` call, as in the desktop module
(in a worker thread, see :mod:`..jobs`); its table opens in the results pane (:mod:`.results`),
which downloads it with ``ExtractionLogic.save_results`` (the CSV and provenance JSON that
``radiomicslab extract`` writes).
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from trame.widgets import html
from trame.widgets.vuetify3 import (
    Template,
    VBtn,
    VBtnToggle,
    VCheckbox,
    VCombobox,
    VIcon,
    VList,
    VListItem,
    VSelect,
    VSpacer,
    VTooltip,
)
from undo_stack import Signal

from ...errors import RadiomicsLabError
from ...settings import load_settings, preset_names
from ..loader import UploadFolder, nodes_of
from .common import (PanelLogic, PanelUI, UploadButton, hex_colour, kept_or, node_items, node_select,
                     section_title, study_volumes)

#: pyradiomics image types offered as a quick override of the settings' own ``imageType``.
IMAGE_TYPES = ["Original", "LoG:sigma=1,2,3", "Wavelet", "Square", "SquareRoot", "Logarithm", "Exponential",
               "Gradient", "LBP2D", "LBP3D"]
ENGINES = [{"title": "As the settings say", "value": "auto"}, {"title": "pyradiomics", "value": "pyradiomics"},
           {"title": "native (pyradiomics features, no pyradiomics)", "value": "native"},
           {"title": "IBSI engine", "value": "ibsi"}]


@dataclass
class ExtractionPanelState:
    volumes: list[dict] = field(default_factory=list)
    volume: str | None = None
    segmentations: list[dict] = field(default_factory=list)
    segmentation: str | None = None
    segments: list[dict] = field(default_factory=list)
    selected_segments: list[str] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)
    settings_source: str = "preset"
    preset: str = "pyradiomics-default"
    parameter_file: str = ""
    engine: str = "auto"
    image_types: list[str] = field(default_factory=list)
    summary: str = ""


class ExtractionPanelUI(PanelUI):
    state_type = ExtractionPanelState
    center_clicked = Signal(str)

    def __init__(self, server, max_upload_bytes: int, error_state: str, **kwargs):
        super().__init__(server, "Feature extraction", "mdi-table-large", "pyradiomics or IBSI features per segment",
                         **kwargs)
        name = self.name
        with self.body:
            section_title("Inputs")
            node_select("Image", name.volumes, name.volume, classes="mb-2 rl-ext-volume")
            node_select("Segmentation", name.segmentations, name.segmentation, classes="mb-2 rl-ext-segmentation")

            with html.Div(classes="d-flex align-center"):
                section_title("Segments")
                VSpacer()
                VBtn(text="All", size="x-small", variant="text",
                     click=f"{name.selected_segments} = {name.segments}.map(s => s.id)")
                VBtn(text="None", size="x-small", variant="text", click=f"{name.selected_segments} = []")
            with VList(density="compact", classes="py-0 rl-ext-segments", bg_color="transparent"):
                with VListItem(v_for=f"segment in {name.segments}", key="segment.id", classes="px-0",
                               min_height=32):
                    with Template(v_slot_prepend=True):
                        VCheckbox(v_model=(name.selected_segments,), value=("segment.id",), hide_details=True,
                                  density="compact", classes="rl-ext-segment-check")
                        VIcon("mdi-circle", color=("segment.color",), size="small", classes="mr-2")
                    html.Span("{{ segment.name }}", classes="text-body-2 rl-ext-segment-name")
                    with Template(v_slot_append=True):
                        html.Span("{{ segment.volume }}", classes="text-caption text-medium-emphasis mr-1 "
                                                                 "rl-ext-segment-volume")
                        with VBtn(icon=True, size="x-small", variant="text",
                                  click=f"trigger('{server.trigger_name(self.center_clicked)}', [segment.id])"):
                            VIcon("mdi-crosshairs-gps", size="small")
                            VTooltip(text="Centre the views on this segment", activator="parent")
            html.Div("No segment yet: paint one in the segment editor, or load a segmentation.",
                     v_if=(f"!{name.segments}.length",), classes="text-caption text-medium-emphasis")

            section_title("Settings")
            with VBtnToggle(v_model=(name.settings_source,), mandatory=True, density="compact", divided=True,
                            variant="outlined", classes="mb-2"):
                VBtn(text="Preset", value="preset", size="small")
                VBtn(text="Parameter file", value="file", size="small")
            VSelect(v_if=(f"{name.settings_source} === 'preset'",), items=(name.presets,),
                    v_model=(name.preset,), density="compact", variant="outlined", hide_details=True,
                    classes="mb-2 rl-ext-preset")
            with html.Div(v_else=True, classes="d-flex align-center ga-2 mb-2"):
                self.upload_parameters = UploadButton(
                    "Upload", "mdi-file-cog-outline", "rl-upload-parameters",
                    UploadFolder.accepted_suffixes("parameters"), max_upload_bytes, error_state)
                html.Span("{{ %s || 'no file yet' }}" % name.parameter_file, classes="text-body-2 text-truncate")
            VSelect(label="Engine", items=(ENGINES,), v_model=(name.engine,), density="compact",
                    variant="outlined", hide_details=True, classes="mb-2")
            VCombobox(label="Image types (optional override)", items=(IMAGE_TYPES,), v_model=(name.image_types,),
                      multiple=True, chips=True, closable_chips=True, density="compact", variant="outlined",
                      hide_details=True, classes="mb-3")
            VBtn(text="Extract features", prepend_icon="mdi-play", color="primary", block=True,
                 disabled=(f"!{name.selected_segments}.length || !{name.volume}",), click=self.run_clicked,
                 classes="rl-ext-run")
            html.Div("{{ %s }}" % name.summary, classes="text-caption text-medium-emphasis mt-2 rl-ext-summary")


class ExtractionPanelLogic(PanelLogic):
    """State and actions of the extraction panel; the work is :class:`~RadiomicsLabLib.mrml.ExtractionLogic`'s."""

    state_type = ExtractionPanelState

    def __init__(self, *args):
        from ...mrml import ExtractionLogic

        super().__init__(*args)
        self.logic = ExtractionLogic(self.scene)
        self._parameters_folder = tempfile.TemporaryDirectory(prefix="radiomicslab-parameters-")
        self._parameter_settings = None
        self._runs = 0
        self.data.presets = preset_names()
        self.typed_state.bind_changes({self.name.segmentation: lambda *_: self.refresh_segments()})
        self.slicer_app.segmentation_editor.segmentation_modified.connect(self.refresh_segments)

    def set_ui(self, ui: ExtractionPanelUI):
        super().set_ui(ui)
        ui.center_clicked.connect(self.center_on)
        ui.upload_parameters.uploaded.connect(self.upload_parameters)

    # Scene lists ------------------------------------------------------------------------------
    def refresh(self):
        volume = self.loader.current_volume()
        edited = self.slicer_app.segmentation_editor.active_segmentation_node
        segmentations = nodes_of(self.scene, "vtkMRMLSegmentationNode")
        with self.server.state:
            self.data.volumes = node_items(study_volumes(self.scene))
            self.data.volume = kept_or(self.data.volume, self.data.volumes, volume.GetID() if volume else None)
            self.data.segmentations = node_items(segmentations)
            self.data.segmentation = kept_or(self.data.segmentation, self.data.segmentations, edited.GetID() if edited
                                             else (segmentations[0].GetID() if segmentations else None))
        self.refresh_segments()

    def refresh_segments(self):
        """Segments of the chosen segmentation with their volume (mL); new segments start selected."""
        node = self.node(self.data.segmentation)
        volume = self.node(self.data.volume)
        segments = []
        if node is not None:
            segmentation = node.GetSegmentation()
            voxel_ml = _voxel_ml(volume)
            for i in range(segmentation.GetNumberOfSegments()):
                segment_id = segmentation.GetNthSegmentID(i)
                segment = segmentation.GetSegment(segment_id)
                color = hex_colour(segment.GetColor())
                voxels = _segment_voxels(node, segment_id)
                size = f"{voxels * voxel_ml:.2f} mL" if voxel_ml else f"{voxels} voxels"
                segments.append({"id": segment_id, "name": segment.GetName(), "color": color, "voxels": voxels,
                                 "volume": size})
        with self.server.state:
            known = {s["id"] for s in self.data.segments}
            selected = [s for s in self.data.selected_segments if any(x["id"] == s for x in segments)]
            selected += [s["id"] for s in segments if s["id"] not in known and s["id"] not in selected]
            self.data.segments = segments
            self.data.selected_segments = selected

    # Actions ----------------------------------------------------------------------------------
    def center_on(self, segment_id: str):
        node = self.node(self.data.segmentation)
        if node is not None and node.GetSegmentation().GetSegment(segment_id) is not None:
            self.loader.center_on_segment(node, segment_id)

    async def upload_parameters(self, files: list):
        """A pyradiomics / RadiomicsLab parameter file, validated at once (its errors show right away)."""
        settings = self.jobs.guard(self._read_parameters, files)
        if settings is not None:
            with self.server.state:
                self.data.parameter_file = Path(settings.source).name
            self.jobs.show_notice(f"Parameter file {Path(settings.source).name} is valid ({settings.engine} engine).")

    def _read_parameters(self, files):
        with UploadFolder(files, "parameters", self.loader.max_upload_bytes) as uploads:
            if len(uploads) != 1:
                raise RadiomicsLabError("Upload one parameter file (YAML or JSON).")
            kept = Path(self._parameters_folder.name) / uploads[0].name
            kept.write_bytes(uploads[0].path.read_bytes())
        try:
            self._parameter_settings = load_settings(str(kept))
        except RadiomicsLabError:
            kept.unlink(missing_ok=True)
            raise
        return self._parameter_settings

    def settings(self):
        if self.data.settings_source == "file":
            if self._parameter_settings is None:
                raise RadiomicsLabError("Upload a parameter file first, or choose a preset.")
            return self._parameter_settings
        return self.data.preset

    async def run(self):
        """``ExtractionLogic.extract`` for the chosen segments, in the job runner; then the table."""
        inputs = self.jobs.guard(self._inputs)
        if inputs is None:
            return
        volume, segmentation, segment_ids, settings, image_types, engine = inputs

        def work(progress):
            return self.logic.extract(volume, segmentation, segment_ids, settings, image_types, progress=progress,
                                      engine=engine)

        def show(table):
            self._runs += 1
            self.data.summary = (f"Run {self._runs}: {table.GetNumberOfRows()} values, "
                                 f"{len(segment_ids)} segment(s), {self.jobs.data.seconds:.1f} s")
            self._show_results(table)

        await self.jobs.run(
            f"Extracting features of {len(segment_ids)} segment(s)", work, apply=show,
            done_message=lambda t: f"{t.GetName()}: {t.GetNumberOfRows()} values in {self.jobs.data.seconds:.1f} s.")

    def _inputs(self):
        volume, segmentation = self.node(self.data.volume), self.node(self.data.segmentation)
        if volume is None or segmentation is None:
            raise RadiomicsLabError("Choose an image and a segmentation (load a study first).")
        segment_ids = [s["id"] for s in self.data.segments if s["id"] in self.data.selected_segments]
        if not segment_ids:
            raise RadiomicsLabError("Tick at least one segment to extract.")
        empty = [s["name"] for s in self.data.segments if s["id"] in segment_ids and not s["voxels"]]
        if empty:
            raise RadiomicsLabError(f"Segment(s) {', '.join(empty)} are empty; paint them or untick them.")
        engine = None if self.data.engine == "auto" else self.data.engine
        image_types = list(self.data.image_types) or None
        settings = load_settings(self.settings(), image_types, engine)  # every check before any work
        return volume, segmentation, segment_ids, settings, None, None


def _voxel_ml(volume) -> float:
    """Volume of one voxel in mL (spacing product in mm^3 / 1000)."""
    if volume is None:
        return 0.0
    sx, sy, sz = volume.GetSpacing()
    return sx * sy * sz / 1000.0


def _segment_voxels(segmentation_node, segment_id: str) -> int:
    """Voxels of a segment's binary labelmap (its label value in the shared layer)."""
    import numpy as np
    from vtk.util.numpy_support import vtk_to_numpy

    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    labelmap = segment.GetRepresentation("Binary labelmap") if segment else None
    if labelmap is None or labelmap.GetPointData().GetScalars() is None:
        return 0
    return int(np.count_nonzero(vtk_to_numpy(labelmap.GetPointData().GetScalars()) == segment.GetLabelValue()))
