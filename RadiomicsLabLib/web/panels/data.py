"""Data panel: sample cases, the data folder, uploads, the segmentation being edited, exports, the study as .mrb."""

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk
from trame.widgets import html
from trame.widgets.vuetify3 import VAutocomplete, VBtn, VDivider, VSelect, VTooltip
from trame_server.utils.typed_state import TypedState
from undo_stack import Signal

from ..loader import UploadFolder, nodes_of
from .common import (PanelLogic, UploadButton, download_button, kept_or, node_items, panel_header, section_title,
                     segment_items)


@dataclass
class DataPanelState:
    samples: list[str] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)
    image: str | None = None
    segmentation: str | None = None
    data_root: str = ""
    loading: str = ""
    study_name: str = ""
    segmentations: list[dict] = field(default_factory=list)
    edited_segmentation: str | None = None
    segments: list[dict] = field(default_factory=list)
    export_segment: str | None = None


class DataPanelUI(html.Div):
    """The Data panel's widgets; the buttons emit signals handled by :class:`DataPanelLogic`."""

    sample_clicked = Signal(str)
    load_clicked = Signal()
    add_image_clicked = Signal()
    add_segmentation_clicked = Signal()

    def __init__(self, server, max_upload_bytes: int, error_state: str, fetch_label_map, fetch_study, **kwargs):
        super().__init__(**kwargs)
        state = TypedState(server.state, DataPanelState)
        name = state.name
        with self:
            panel_header("Data", "mdi-folder-open-outline", "Open a case, a folder file or an upload")
            with html.Div(classes="px-4"):
                section_title("Sample cases")
                with html.Div(classes="d-flex flex-wrap ga-2"):
                    VBtn(v_for=f"sample in {name.samples}", key="sample", text=("sample",), variant="tonal",
                         color="primary", size="small", prepend_icon="mdi-brain", classes="rl-sample",
                         loading=(f"{name.loading} === sample",),
                         click=f"trigger('{server.trigger_name(self.sample_clicked)}', [sample])")

                section_title("Data folder")
                html.Div("{{ %s }}" % name.data_root, classes="text-caption text-medium-emphasis mb-2 text-truncate")
                VAutocomplete(label="Image, DICOM folder or study (.mrb)", v_model=(name.image,),
                              items=(f"{name.entries}.filter(e => e.kind !== 'segmentation')",),
                              density="compact", variant="outlined", hide_details=True, clearable=True,
                              classes="mb-2 rl-data-image")
                VAutocomplete(label="Segmentation or label map (optional)", v_model=(name.segmentation,),
                              items=(f"{name.entries}.filter(e => e.kind === 'image' || e.kind === 'segmentation')",),
                              density="compact", variant="outlined", hide_details=True, clearable=True,
                              classes="mb-2 rl-data-segmentation")
                with html.Div(classes="d-flex flex-wrap ga-2"):
                    VBtn(text="Open", prepend_icon="mdi-folder-open", size="small", color="primary",
                         disabled=(f"!{name.image}",), click=self.load_clicked, classes="rl-data-open")
                    with VBtn(prepend_icon="mdi-image-plus", size="small", variant="tonal",
                              disabled=(f"!{name.image} || !{name.study_name}",), click=self.add_image_clicked,
                              classes="rl-data-add-image"):
                        html.Span("Add image")
                        VTooltip(text="Add the image to the open study (a channel, a timepoint)", activator="parent")
                    VBtn(text="Add segmentation", prepend_icon="mdi-layers-plus", size="small", variant="tonal",
                         disabled=(f"!{name.segmentation} || !{name.study_name}",),
                         click=self.add_segmentation_clicked, classes="rl-data-add-segmentation")

                section_title("Upload")
                with html.Div(classes="d-flex flex-wrap ga-2"):
                    self.upload_image = UploadButton(
                        "Image", "mdi-file-upload-outline", "rl-upload-image",
                        UploadFolder.accepted_suffixes("image"), max_upload_bytes, error_state, multiple=True)
                    self.upload_segmentation = UploadButton(
                        "Segmentation", "mdi-layers-plus", "rl-upload-segmentation",
                        UploadFolder.accepted_suffixes("segmentation"), max_upload_bytes, error_state, multiple=True,
                        disabled=(f"!{name.study_name}",))
                    self.upload_study = UploadButton(
                        "Study (.mrb)", "mdi-package-up", "rl-upload-study",
                        UploadFolder.accepted_suffixes("study"), max_upload_bytes, error_state)
                    self.upload_dicom = UploadButton(
                        "DICOM folder", "mdi-folder-upload-outline", "rl-upload-dicom", (), max_upload_bytes,
                        error_state, directory=True)

                VDivider(classes="my-4")
                section_title("Segmentation being edited")
                VSelect(items=(name.segmentations,), v_model=(name.edited_segmentation,), density="compact",
                        variant="outlined", hide_details=True, disabled=(f"!{name.segmentations}.length",),
                        classes="mb-2 rl-edited-segmentation")

                section_title("Export")
                VSelect(label="Segment", items=(name.segments,), v_model=(name.export_segment,), density="compact",
                        variant="outlined", hide_details=True, classes="mb-2 rl-export-segment")
                with html.Div(classes="d-flex flex-wrap ga-2 mb-4"):
                    download_button(server, "Label map (.nrrd)", "mdi-download",
                                    (f"({name.segments}.find(s => s.value === {name.export_segment}) || "
                                     "{title: 'segment'}).title + '.nrrd'",),
                                    fetch_label_map, disabled=(f"!{name.export_segment}",), classes="rl-export-mask")
                    download_button(server, "Study (.mrb)", "mdi-content-save-outline",
                                    (f"({name.study_name} || 'study') + '.mrb'",), fetch_study,
                                    disabled=(f"!{name.study_name}",), classes="rl-save-study")


class DataPanelLogic(PanelLogic):
    """Loads studies through :class:`~RadiomicsLabLib.web.loader.StudyLoader`; exports masks and the study."""

    state_type = DataPanelState

    def __init__(self, server, slicer_app, loader, jobs, edit_segmentation, refresh_all):
        super().__init__(server, slicer_app, loader, jobs)
        self._edit_segmentation = edit_segmentation
        self.refresh_all = refresh_all
        self.data.samples = loader.sample_names()
        self.data.data_root = str(loader.data.root)
        self.data.entries = [{"title": e.path, "value": e.path, "kind": e.kind} for e in loader.data.entries()]
        self.typed_state.bind_changes({self.name.edited_segmentation: self._on_edited_changed})
        slicer_app.segmentation_editor.segmentation_modified.connect(self.refresh_segments)

    def set_ui(self, ui: DataPanelUI):
        ui.sample_clicked.connect(self.load_sample)
        ui.load_clicked.connect(self.load_from_data)
        ui.add_image_clicked.connect(self.add_image)
        ui.add_segmentation_clicked.connect(self.add_segmentation)
        ui.upload_image.uploaded.connect(lambda files: self.load_upload(files, "image"))
        ui.upload_dicom.uploaded.connect(lambda files: self.load_upload(files, "image"))
        ui.upload_segmentation.uploaded.connect(lambda files: self.load_upload(files, "segmentation"))
        ui.upload_study.uploaded.connect(lambda files: self.load_upload(files, "study"))

    # Loading ----------------------------------------------------------------------------------
    async def load_sample(self, sample: str):
        await self._load(sample, self.loader.load_sample, sample)

    async def load_from_data(self):
        await self._load(self.data.image, self.loader.load_from_data, self.data.image, self.data.segmentation)

    async def add_image(self):
        await self._load(self.data.image, self._add_image, self.data.image)

    def _add_image(self, image):
        loaded = self.loader.add_volume_from_data(image)
        self.refresh_all()
        return loaded

    async def add_segmentation(self):
        await self._load(self.data.segmentation, self.loader.add_segmentation_from_data, self.data.segmentation)

    async def load_upload(self, files: list, kind: str):
        await self._load(files[0].get("name", kind), self.loader.load_upload, files, kind)

    async def _load(self, what: str, action, *args):
        with self.server.state:
            self.data.loading = what
            self.jobs.data.error = ""
        await asyncio.sleep(0.05)  # show the spinner before the (main-thread) scene work
        try:
            loaded = self.jobs.guard(action, *args)
        finally:
            with self.server.state:
                self.data.loading = ""
        if loaded is not None:
            volume, segmentation = loaded
            if volume is not self.loader.current_volume():
                self.jobs.show_notice(f"Added image {volume.GetName()} to the study.")
            elif segmentation is not None and action in (self.loader.add_segmentation_from_data,):
                self.jobs.show_notice(f"Added segmentation {segmentation.GetName()} to the study.")
            else:
                self.jobs.show_notice(f"Loaded {self.loader.study_name}{self._dicom_segmentations()}.")

    def _dicom_segmentations(self) -> str:
        """`` with RTSTRUCT RS_gtv (GTV, PTV)`` for the DICOM segmentations a study's folder brought, else ""."""
        loaded = []
        for node in nodes_of(self.slicer_app.scene, "vtkMRMLSegmentationNode"):
            modality = node.GetAttribute("RadiomicsLab.DICOMModality")
            if modality:
                segmentation = node.GetSegmentation()
                names = ", ".join(segmentation.GetNthSegment(i).GetName()
                                  for i in range(segmentation.GetNumberOfSegments()))
                loaded.append(f"{modality} {node.GetName()} ({names})")
        return f" with {' and '.join(loaded)}" if loaded else ""

    # Scene lists ------------------------------------------------------------------------------
    def refresh(self):
        """Node lists after the scene changed (a study loaded, a job finished)."""
        with self.server.state:
            self.data.study_name = self.loader.study_name if self.loader.current_volume() is not None else ""
            segmentations = nodes_of(self.slicer_app.scene, "vtkMRMLSegmentationNode")
            self.data.segmentations = node_items(segmentations)
            active = self.slicer_app.segmentation_editor.active_segmentation_node
            self.data.edited_segmentation = active.GetID() if active is not None else None
        self.refresh_segments()

    def refresh_segments(self):
        items = segment_items(self.slicer_app.segmentation_editor.active_segmentation_node)
        with self.server.state:
            self.data.segments = items
            self.data.export_segment = kept_or(self.data.export_segment, items, items[-1]["value"] if items else None)

    def _on_edited_changed(self, node_id):
        node = self.node(node_id)
        if node is not None and node is not self.slicer_app.segmentation_editor.active_segmentation_node:
            self.jobs.guard(self._edit_segmentation, node)
            self.refresh_segments()

    # Exports ----------------------------------------------------------------------------------
    def label_map_bytes(self) -> bytes | None:
        """The chosen segment as a 0/1 label map on the image grid (NRRD), as the extraction sees it."""
        from ...mrml.convert import segment_to_sitk

        node = self.slicer_app.segmentation_editor.active_segmentation_node
        volume = self.loader.current_volume()
        if node is None or volume is None or not self.data.export_segment:
            self.jobs.show_error("Load a study and choose a segment to export.")
            return None
        mask = self.jobs.guard(segment_to_sitk, node, self.data.export_segment, volume)
        if mask is None:
            return None
        with tempfile.TemporaryDirectory(prefix="radiomicslab-export-") as folder:
            path = Path(folder) / "mask.nrrd"
            sitk.WriteImage(mask, str(path), True)
            return path.read_bytes()

    def study_bytes(self) -> bytes | None:
        """The whole study as a Slicer data bundle (``.mrb``; :func:`~RadiomicsLabLib.mrml.scenefiles.save_scene`)."""
        from ...mrml.scenefiles import save_scene

        with tempfile.TemporaryDirectory(prefix="radiomicslab-save-") as folder:
            path = self.jobs.guard(save_scene, self.slicer_app.scene, Path(folder) / "study.mrb")
            return None if path is None else path.read_bytes()
