"""Observers panel: assign segmentations to observers; agreement, ICC table and plot, consensus segments.

Run is one :meth:`~RadiomicsLabLib.mrml.observers.ObserverLogic.analyse` call (in the job
runner): pairwise agreement, STAPLE and majority-vote consensus (a new segmentation over the
image) and, with features, each feature's reproducibility (the ICC table in the results pane and
its plot here). One lesion per study; synthetic observers (perturbations of the first) make an
ICC possible with a single reader.
"""

from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn, VCheckbox, VImg, VSelect, VTextField

from ...errors import RadiomicsLabError
from ...settings import preset_names
from ..loader import nodes_of
from .common import (PanelLogic, PanelUI, download_button, kept_or, node_items, node_select, png_data_url,
                     saved_files_zip, section_title, study_volumes)

KEY = "observers"
TITLE = "Observers: agreement, consensus and feature reproducibility"
ICON = "mdi-account-group-outline"
SEPARATOR = "|"


@dataclass
class ObserverState:
    volumes: list[dict] = field(default_factory=list)
    volume: str | None = None
    candidates: list[dict] = field(default_factory=list)
    observers: list[dict] = field(default_factory=list)
    lesion: str = "lesion"
    features: bool = True
    preset: str = "pyradiomics-default"
    presets: list[str] = field(default_factory=list)
    perturbations: bool = False
    agreement: list[dict] = field(default_factory=list)
    robust: str = ""
    icc_plot: str = ""
    bland_altman_plot: str = ""


class UI(PanelUI):
    state_type = ObserverState

    def __init__(self, server, max_upload_bytes: int, error_state: str, **kwargs):
        super().__init__(server, "Observers", ICON, "Several readers' segmentations of one lesion", **kwargs)
        self.fetch_zip = lambda: None  # set by the logic: the zip of every result file
        name = self.name
        with self.body:
            section_title("Image and lesion")
            node_select("Image", name.volumes, name.volume)
            VTextField(v_model=(name.lesion,), label="Lesion name", density="compact", variant="outlined",
                       hide_details=True, classes="mb-2")
            section_title("Observers (one segment each)")
            VSelect(items=(name.candidates,), v_model=(name.observers,), multiple=True, chips=True,
                    return_object=True, density="compact", variant="outlined", hide_details=True,
                    label="Segments read by the observers", classes="mb-1 rl-obs-observers")
            html.Div("Load each reader's segmentation with Add segmentation (Data panel), or paint one "
                     "segment per reader.", classes="text-caption text-medium-emphasis mb-2")
            VCheckbox(v_model=(name.perturbations,), density="compact", hide_details=True,
                      label="Add synthetic observers (perturbations of the first)")
            VCheckbox(v_model=(name.features,), density="compact", hide_details=True,
                      label="Feature reproducibility (ICC)")
            VSelect(v_if=(name.features,), items=(name.presets,), v_model=(name.preset,), density="compact",
                    variant="outlined", hide_details=True, classes="mb-2", label="Features")
            VBtn(text="Analyse", prepend_icon="mdi-play", color="primary", block=True, classes="mt-2 rl-obs-run",
                 disabled=(f"!{name.volume} || ({name.observers}.length < 2 && !{name.perturbations})",),
                 click=self.run_clicked)

            with html.Div(v_if=(f"{name.agreement}.length",), classes="rl-obs-results"):
                section_title("Agreement")
                with html.Table(classes="text-caption", style="width: 100%;"):
                    with html.Tr():
                        for title in ("Pair", "Dice", "HD95 mm"):
                            html.Th(title, style="text-align: left;", classes="text-medium-emphasis")
                    with html.Tr(v_for=f"row in {name.agreement}", key="row.pair"):
                        html.Td("{{ row.pair }}")
                        html.Td("{{ row.dice }}", style="font-family: monospace;")
                        html.Td("{{ row.hd95 }}", style="font-family: monospace;")
                html.Div("{{ %s }}" % name.robust, classes="text-caption mt-2")
                VImg(v_if=(name.icc_plot,), src=(name.icc_plot,), classes="mt-2")
                html.Div("An ICC needs several lesions (or synthetic observers): with one lesion and its readers, "
                         "the ICC table holds each feature's coefficient of variation.",
                         v_else=True, classes="text-caption text-medium-emphasis mt-2")
                VImg(src=(name.bland_altman_plot,), classes="mt-2 mb-2")
                download_button(server, "All results (zip)", "mdi-folder-zip-outline", "observers.zip",
                                lambda: self.fetch_zip(), "application/zip", classes="mb-4 rl-obs-download")


class Logic(PanelLogic):
    """Observer studies through :class:`~RadiomicsLabLib.mrml.observers.ObserverLogic`."""

    state_type = ObserverState

    def __init__(self, *args):
        from ...mrml.observers import ObserverLogic

        super().__init__(*args)
        self.logic = ObserverLogic(self.scene)
        self.results = None
        self.data.presets = preset_names()

    def set_ui(self, ui):
        super().set_ui(ui)
        if isinstance(ui, UI):
            ui.fetch_zip = self.results_zip

    def results_zip(self) -> bytes | None:
        """Every file of the last analysis (:meth:`~RadiomicsLabLib.mrml.observers.ObserverLogic.save_results`, the
        files ``radiomicslab observers`` writes) as one zip, or None (error shown) when there is none."""
        if self.results is None:
            self.jobs.show_error("No observer results yet; run the analysis first.")
            return None
        return saved_files_zip(self.jobs, self.logic.save_results, self.results, prefix="radiomicslab-observers-")

    def refresh(self):
        from ...mrml.habitats import HABITATS_KIND
        from ...mrml.tables import KIND_ATTRIBUTE

        volumes = study_volumes(self.scene)
        candidates = []
        for node in nodes_of(self.scene, "vtkMRMLSegmentationNode"):
            if node.GetAttribute(KIND_ATTRIBUTE) == HABITATS_KIND or node.GetNodeReference("RadiomicsLab.Volume"):
                continue  # habitats and consensus results are not readers
            segmentation = node.GetSegmentation()
            for i in range(segmentation.GetNumberOfSegments()):
                segment_id = segmentation.GetNthSegmentID(i)
                title = segmentation.GetSegment(segment_id).GetName()
                candidates.append({"title": f"{node.GetName()} / {title}",
                                   "value": f"{node.GetID()}{SEPARATOR}{segment_id}",
                                   "name": title if segmentation.GetNumberOfSegments() > 1 else node.GetName()})
        current = self.loader.current_volume()
        with self.server.state:
            self.data.volumes = node_items(volumes)
            self.data.volume = kept_or(self.data.volume, self.data.volumes, current.GetID() if current else None)
            values = {c["value"] for c in candidates}
            self.data.candidates = candidates
            self.data.observers = [o for o in self.data.observers if o.get("value") in values]
            if self.loader.study_name and self.data.lesion == "lesion":
                self.data.lesion = self.loader.study_name

    def _request(self) -> dict:
        volume = self.node(self.data.volume)
        if volume is None:
            raise RadiomicsLabError("Choose the image the observers segmented.")
        observers, names = [], []
        for item in self.data.observers:
            node_id, segment_id = item["value"].split(SEPARATOR, 1)
            node = self.node(node_id)
            if node is None:
                raise RadiomicsLabError(f"Observer '{item['title']}' is no longer in the study; choose again.")
            observers.append((node, segment_id))
            names.append(item["name"])
        if len(set(names)) != len(names):
            names = [item["title"] for item in self.data.observers]
        if len(observers) < (1 if self.data.perturbations else 2):
            raise RadiomicsLabError("Choose at least two observers' segments (or one, with synthetic observers).")
        return {"volume_node": volume, "observers": observers, "names": names,
                "lesion": self.data.lesion or volume.GetName(), "features": bool(self.data.features),
                "settings": self.data.preset if self.data.features else None,
                "perturbations": True if self.data.perturbations else None}

    async def run(self):
        request = self.jobs.guard(self._request)
        if request is None:
            return

        def work(progress):
            return self.logic.analyse(**request, progress=progress)

        def apply(results):
            self.show(results)
            self._show_results(results.main_table)

        await self.jobs.run(f"Comparing {len(request['observers'])} observer(s)", work, apply=apply,
                            done_message="Observer agreement computed.")

    def show(self, results):
        from ...observers_outputs import bland_altman_figure, figure_png, icc_figure, icc_plot_rows

        self.results = results
        rows = self.logic.table_rows(results.agreement)
        agreement = [{"pair": f"{r['observer_a']} / {r['observer_b']}", "dice": _fmt(r.get("dice")),
                      "hd95": _fmt(r.get("hd95_mm"))} for r in rows]
        robust = ""
        if results.icc is not None:
            import json

            names = json.loads(results.icc.GetAttribute("RadiomicsLab.RobustFeatures") or "[]")
            robust = (f"{len(names)} of {results.icc.GetNumberOfRows()} features robust "
                      f"({results.icc.GetAttribute('RadiomicsLab.RobustRule')}).")
        for consensus in results.consensus:
            display = consensus.GetDisplayNode()
            if display is not None:
                display.SetOpacity2DFill(0.0)  # consensus as outlines over the readers' segments
        with self.server.state:
            self.data.agreement = agreement
            self.data.robust = robust
            # the plots the saved results hold (icc.png, bland_altman_volumes.png), drawn by the core
            reproducibility = results.study.reproducibility
            self.data.icc_plot = png_data_url(figure_png(icc_figure(reproducibility))) \
                if reproducibility is not None and icc_plot_rows(reproducibility) else ""
            self.data.bland_altman_plot = png_data_url(figure_png(bland_altman_figure(results.study)))


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value if value is not None else "")
