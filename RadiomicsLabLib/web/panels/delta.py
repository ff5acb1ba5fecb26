"""Delta panel: timepoints (image, segmentation, date), run; the trajectories and waterfall plots.

Run is :meth:`~RadiomicsLabLib.mrml.delta.DeltaLogic.study_from_nodes` (the timepoints become a
Slicer sequence study) then :meth:`~RadiomicsLabLib.mrml.delta.DeltaLogic.compute` (registration,
propagation, delta features), in the job runner; the delta table opens in the results pane. The
plots shown are the PNGs the core draws for the result files, and "All results (zip)" holds the files
:meth:`~RadiomicsLabLib.mrml.delta.DeltaLogic.save_results` writes (those of ``radiomicslab delta``).
"""

import datetime
from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn, VCheckbox, VIcon, VImg, VSelect, VTextField

from ...errors import RadiomicsLabError
from ...registration import KINDS
from ...settings import preset_names
from ..loader import nodes_of
from .common import (PanelLogic, PanelUI, download_button, node_items, png_data_url, saved_files_zip, section_title,
                     study_volumes)

KEY = "delta"
TITLE = "Delta radiomics: timepoints of a patient"
ICON = "mdi-chart-timeline-variant"
REGISTRATIONS = [{"title": "None (same grid)", "value": "none"}] + [{"title": k, "value": k} for k in KINDS]


@dataclass
class DeltaState:
    volumes: list[dict] = field(default_factory=list)
    segmentations: list[dict] = field(default_factory=list)
    timepoints: list[dict] = field(default_factory=list)
    patient: str = "Patient"
    preset: str = "pyradiomics-default"
    presets: list[str] = field(default_factory=list)
    register: str = "none"
    propagate: bool = False
    trajectories_plot: str = ""
    waterfall_plot: str = ""
    warnings: list[str] = field(default_factory=list)


class UI(PanelUI):
    state_type = DeltaState

    def __init__(self, server, max_upload_bytes: int, error_state: str, **kwargs):
        super().__init__(server, "Delta radiomics", ICON, "Feature changes between a patient's timepoints", **kwargs)
        self.fetch_zip = lambda: None  # set by the logic: the zip of every result file
        name = self.name
        with self.body:
            VTextField(v_model=(name.patient,), label="Patient", density="compact", variant="outlined",
                       hide_details=True, classes="mb-2")
            section_title("Timepoints (baseline first)")
            with html.Div(v_for=f"(tp, i) in {name.timepoints}", key="i", classes="rl-delta-timepoint mb-2 pa-2",
                          style="border: 1px solid rgba(255,255,255,0.12); border-radius: 6px;"):
                with html.Div(classes="d-flex align-center ga-2 mb-1"):
                    VTextField(v_model=("tp.label",), density="compact", variant="plain", hide_details=True,
                               style="max-width: 100px;")
                    VTextField(v_model=("tp.date",), placeholder="YYYY-MM-DD", density="compact",
                               variant="outlined", hide_details=True, classes="rl-delta-date")
                    VBtn(icon="mdi-close", size="x-small", variant="text",
                         click=f"{name.timepoints} = {name.timepoints}.filter((_, j) => j !== i)")
                VSelect(items=(name.volumes,), v_model=("tp.volume",), density="compact", variant="outlined",
                        hide_details=True, label="Image", classes="mb-1")
                VSelect(items=(name.segmentations,), v_model=("tp.segmentation",), density="compact",
                        variant="outlined", hide_details=True, clearable=True, label="Segmentation")
            with VBtn(size="small", variant="tonal", classes="mb-2",
                      click=f"{name.timepoints} = [...{name.timepoints}, {{label: 'T' + {name.timepoints}.length, "
                            f"date: '', volume: null, segmentation: null}}]"):
                VIcon("mdi-plus", start=True)
                html.Span("Timepoint")
            section_title("Options")
            VSelect(items=(name.presets,), v_model=(name.preset,), density="compact", variant="outlined",
                    hide_details=True, label="Features", classes="mb-2")
            VSelect(items=(REGISTRATIONS,), v_model=(name.register,), density="compact", variant="outlined",
                    hide_details=True, label="Register follow-ups to the baseline", classes="mb-1")
            VCheckbox(v_model=(name.propagate,), density="compact", hide_details=True,
                      label="Propagate the baseline segmentation to follow-ups without one")
            VBtn(text="Compute deltas", prepend_icon="mdi-play", color="primary", block=True,
                 classes="mt-2 rl-delta-run", disabled=(f"{name.timepoints}.length < 2",),
                 # the rows are edited in place (no state change is sent): the run gets them as they are
                 click=f"trigger('{server.trigger_name(self.run_clicked)}', [{name.timepoints}])")
            with html.Div(v_if=(name.trajectories_plot,), classes="rl-delta-results"):
                html.Div("{{ w }}", v_for=f"w in {name.warnings}", key="w", classes="text-caption text-warning mt-2")
                VImg(src=(name.trajectories_plot,), classes="mt-2")
                VImg(v_if=(name.waterfall_plot,), src=(name.waterfall_plot,), classes="mt-2 mb-2")
                download_button(server, "All results (zip)", "mdi-folder-zip-outline", "delta.zip",
                                lambda: self.fetch_zip(), "application/zip", classes="mb-4 rl-delta-download")


class Logic(PanelLogic):
    """Longitudinal studies through :class:`~RadiomicsLabLib.mrml.delta.DeltaLogic`."""

    state_type = DeltaState

    def __init__(self, *args):
        from ...mrml.delta import DeltaLogic

        super().__init__(*args)
        self.logic = DeltaLogic(self.scene)
        self.nodes = None  # the last run's DeltaNodes
        self.data.presets = preset_names()

    def set_ui(self, ui):
        super().set_ui(ui)
        if isinstance(ui, UI):
            ui.fetch_zip = self.results_zip

    def results_zip(self) -> bytes | None:
        """Every file of the last run (:meth:`~RadiomicsLabLib.mrml.delta.DeltaLogic.save_results`) as one zip, or
        None (error shown) when there is none."""
        if self.nodes is None:
            self.jobs.show_error("No delta results yet; compute them first.")
            return None
        return saved_files_zip(self.jobs, self.logic.save_results, self.nodes, prefix="radiomicslab-delta-")

    def refresh(self):
        """Node lists; a first timepoint per study image when none was set up yet."""
        from ...mrml.delta import volume_date

        volumes = [v for v in study_volumes(self.scene) if not v.GetHideFromEditors()]
        segmentations = [s for s in nodes_of(self.scene, "vtkMRMLSegmentationNode") if not s.GetHideFromEditors()]
        ids = {n.GetID() for n in volumes + segmentations}
        with self.server.state:
            self.data.volumes = node_items(volumes)
            self.data.segmentations = node_items(segmentations)
            kept = [tp for tp in self.data.timepoints if tp.get("volume") in ids]
            for tp in kept:
                if tp.get("segmentation") not in ids:
                    tp["segmentation"] = None
            if not kept and volumes:
                kept = []
                for i, volume in enumerate(volumes[:4]):
                    try:
                        date = volume_date(volume)
                    except RadiomicsLabError:
                        date = None
                    kept.append({"label": "baseline" if i == 0 else f"T{i}", "volume": volume.GetID(),
                                 "date": date.isoformat() if isinstance(date, datetime.date) else "",
                                 "segmentation": segmentations[i].GetID() if i < len(segmentations) else None})
            self.data.timepoints = kept
            if self.loader.study_name and self.data.patient == "Patient":
                self.data.patient = self.loader.study_name

    def _request(self) -> dict:
        timepoints = list(self.data.timepoints)
        if len(timepoints) < 2:
            raise RadiomicsLabError("Give at least two timepoints (baseline and a follow-up).")
        volumes, segmentations, dates, labels = [], [], [], []
        for tp in timepoints:
            volume = self.node(tp.get("volume"))
            if volume is None:
                raise RadiomicsLabError(f"Timepoint '{tp.get('label')}' has no image; choose one.")
            if not str(tp.get("date") or "").strip():
                raise RadiomicsLabError(f"Timepoint '{tp.get('label')}' has no date; give it as YYYY-MM-DD.")
            volumes.append(volume)
            segmentations.append(self.node(tp.get("segmentation")))
            dates.append(str(tp["date"]).strip())
            labels.append(str(tp.get("label") or "").strip() or f"T{len(labels)}")
        return {"volumes": volumes, "segmentations": segmentations, "dates": dates, "labels": labels,
                "name": self.data.patient or "Patient", "settings": self.data.preset,
                "register": None if self.data.register == "none" else self.data.register,
                "propagate": bool(self.data.propagate)}

    async def run(self, timepoints=None):
        """Compute the deltas of ``timepoints`` (the page's rows; default: the state's)."""
        if timepoints is not None:
            with self.server.state:
                self.data.timepoints = [dict(tp) for tp in timepoints]
        request = self.jobs.guard(self._request)
        if request is None:
            return

        def work(progress):
            scene = self.scene
            before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
            try:
                study = self.logic.study_from_nodes(request["volumes"], request["segmentations"], request["dates"],
                                                    request["labels"], request["name"])
                return self.logic.compute(study, settings=request["settings"], register=request["register"],
                                          propagate=request["propagate"], progress=progress)
            except Exception:  # the study made for this run goes again: the scene is as it was
                for i in reversed(range(scene.GetNumberOfNodes())):
                    node = scene.GetNthNode(i)
                    if node is not None and node.GetID() not in before:
                        scene.RemoveNode(node)
                raise

        def apply(nodes):
            from ...delta import plot_pngs

            self.nodes = nodes
            pngs = plot_pngs([r for result in nodes.results for r in result.rows], nodes.plot_features,
                             nodes.waterfall_feature)  # the files' plots, drawn by the core
            with self.server.state:
                self.data.trajectories_plot = png_data_url(pngs["trajectories.png"])
                bars = nodes.waterfall.GetNthPlotSeriesNode(0).GetTableNode().GetNumberOfRows()
                self.data.waterfall_plot = png_data_url(pngs["waterfall.png"]) if bars else ""
                self.data.warnings = list(nodes.warnings)
            self._show_results(nodes.table)

        await self.jobs.run(f"Delta features over {len(request['volumes'])} timepoints", work, apply=apply,
                            done_message="Delta features computed.")
