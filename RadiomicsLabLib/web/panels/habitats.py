"""Habitats panel: channels, k, run; the habitat segments over the image and the fractions plot.

Run is one :meth:`~RadiomicsLabLib.mrml.habitats.HabitatLogic.habitats` call (in the job runner):
a new segmentation with one segment per habitat, the statistics table (opened in the results
pane) and the fractions and channel-means charts. The plots shown are the PNGs the core draws for the
result files, and "All results (zip)" holds the files
:meth:`~RadiomicsLabLib.mrml.habitats.HabitatLogic.save_results` writes (those of ``radiomicslab habitats``).
"""

from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn, VCheckbox, VIcon, VImg, VSelect, VSlider, VTextField

from ...errors import RadiomicsLabError
from ..loader import nodes_of
from .common import (LesionState, PanelLogic, PanelUI, download_button, hex_colour, lesion_select, node_items,
                     png_data_url, saved_files_zip, section_title, study_volumes)

KEY = "habitats"
TITLE = "Habitats: sub-regions of a lesion from its voxels' channels"
ICON = "mdi-chart-scatter-plot"
METHODS = [{"title": "k-means", "value": "kmeans"}, {"title": "Gaussian mixture", "value": "gmm"},
           {"title": "Agglomerative (supervoxels)", "value": "agglomerative"}]


@dataclass
class HabitatState(LesionState):
    volumes: list[dict] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    k: int = 3
    auto_k: bool = False
    method: str = "kmeans"
    feature_maps: str = ""
    habitats: list[dict] = field(default_factory=list)
    fractions_plot: str = ""
    means_plot: str = ""


class UI(PanelUI):
    state_type = HabitatState

    def __init__(self, server, max_upload_bytes: int, error_state: str, **kwargs):
        super().__init__(server, "Habitats", ICON, "Cluster the lesion's voxels on one or more images", **kwargs)
        self.fetch_zip = lambda: None  # set by the logic: the zip of every result file
        name = self.name
        with self.body:
            section_title("Lesion")
            lesion_select(name, "rl-hab-segment")
            section_title("Channels (co-registered images)")
            VSelect(items=(name.volumes,), v_model=(name.channels,), multiple=True, chips=True,
                    density="compact", variant="outlined", hide_details=True, classes="mb-1 rl-hab-channels")
            html.Div("Add more images from the Data panel (Add image).",
                     classes="text-caption text-medium-emphasis mb-2")
            VTextField(v_model=(name.feature_maps,), label="Feature-map channels (optional)",
                       placeholder="glcm_Contrast, firstorder_Mean", density="compact", variant="outlined",
                       hide_details=True, classes="mb-1 rl-hab-maps")
            html.Div("Voxel-wise maps (kernel radius 1) of the first channel, or CHANNEL:FEATURE, made inside the "
                     "lesion and clustered with the images.", classes="text-caption text-medium-emphasis mb-2")
            section_title("Clustering")
            VSelect(items=(METHODS,), v_model=(name.method,), density="compact", variant="outlined",
                    hide_details=True, classes="mb-2")
            html.Div("{{ %s ? 'k chosen by silhouette (2 to 8)' : 'k = ' + %s + ' habitats' }}"
                     % (name.auto_k, name.k), classes="text-caption")
            VSlider(v_model=(name.k,), min=2, max=8, step=1, show_ticks="always", density="compact",
                    hide_details=True, color="primary", disabled=(name.auto_k,), classes="rl-hab-k")
            VCheckbox(v_model=(name.auto_k,), label="Choose k automatically", density="compact",
                      hide_details=True)
            VBtn(text="Find habitats", prepend_icon="mdi-play", color="primary", block=True, classes="mt-2 rl-hab-run",
                 disabled=(f"!{name.channels}.length || !{name.segment}",), click=self.run_clicked)

            with html.Div(v_if=(f"{name.habitats}.length",), classes="rl-hab-results"):
                section_title("Habitats")
                with html.Div(v_for=f"h in {name.habitats}", key="h.name",
                              classes="d-flex align-center text-body-2 rl-hab-item"):
                    VIcon("mdi-square-rounded", color=("h.color",), size="small", classes="mr-2")
                    html.Span("{{ h.name }}", classes="flex-grow-1")
                    html.Span("{{ h.fraction }}", classes="text-medium-emphasis")
                VImg(src=(name.fractions_plot,), classes="mt-2 rl-hab-fractions")
                VImg(src=(name.means_plot,), classes="mt-2 mb-2")
                download_button(server, "All results (zip)", "mdi-folder-zip-outline", "habitats.zip",
                                lambda: self.fetch_zip(), "application/zip", classes="mb-4 rl-hab-download")


class Logic(PanelLogic):
    """Habitat runs through :class:`~RadiomicsLabLib.mrml.habitats.HabitatLogic`."""

    state_type = HabitatState

    def __init__(self, *args):
        from ...mrml.habitats import HabitatLogic

        super().__init__(*args)
        self.logic = HabitatLogic(self.scene)
        self.nodes = None  # the last run's HabitatNodes
        self.typed_state.bind_changes({self.name.segmentation: lambda *_: self.refresh_segments()})

    def set_ui(self, ui):
        super().set_ui(ui)
        if isinstance(ui, UI):
            ui.fetch_zip = self.results_zip

    def results_zip(self) -> bytes | None:
        """Every file of the last run (:meth:`~RadiomicsLabLib.mrml.habitats.HabitatLogic.save_results`) as one zip,
        or None (error shown) when there is none."""
        if self.nodes is None:
            self.jobs.show_error("No habitats yet; find them first.")
            return None
        return saved_files_zip(self.jobs, self.logic.save_results, self.nodes, prefix="radiomicslab-habitats-")

    def refresh(self):
        from ...mrml.habitats import HABITATS_KIND
        from ...mrml.tables import KIND_ATTRIBUTE

        volumes = study_volumes(self.scene)
        segmentations = [s for s in nodes_of(self.scene, "vtkMRMLSegmentationNode")
                         if s.GetAttribute(KIND_ATTRIBUTE) != HABITATS_KIND]
        current = self.loader.current_volume()
        with self.server.state:
            self.data.volumes = node_items(volumes)
            channels = [c for c in self.data.channels if c in [v.GetID() for v in volumes]]
            self.data.channels = channels or ([current.GetID()] if current is not None else [])
        self.refresh_lesion(segmentations)

    def _request(self) -> dict:
        segmentation = self.node(self.data.segmentation)
        if segmentation is None or not self.data.segment:
            raise RadiomicsLabError("Choose the lesion: a segmentation and one of its segments.")
        channels = {}
        for node_id in self.data.channels:
            node = self.node(node_id)
            if node is not None:
                channels[node.GetName()] = node
        if not channels:
            raise RadiomicsLabError("Choose at least one channel image.")
        request = {"segmentation_node": segmentation, "segment_id": self.data.segment, "channels": channels,
                   "n_habitats": "auto" if self.data.auto_k else int(self.data.k), "method": self.data.method}
        if self.data.feature_maps.strip():
            request.update(feature_maps=self.data.feature_maps, map_radius=1)
        return request

    async def run(self):
        request = self.jobs.guard(self._request)
        if request is None:
            return

        def work(progress):
            return self.logic.habitats(**request, progress=progress)

        def apply(nodes):
            self.show(nodes)
            self._show_results(nodes.statistics)

        await self.jobs.run(f"Finding habitats on {len(request['channels'])} channel(s)", work, apply=apply,
                            done_message=lambda n: f"{len(self.data.habitats)} habitats in "
                                                   f"{self.jobs.data.seconds:.1f} s.")

    def show(self, nodes):
        """The habitat segments over the image (the lesion as an outline), their legend and the plots (the core's
        habitat_fractions.png and channel_means.png)."""
        from ...habitats import plot_pngs

        self.nodes = nodes
        habitat_node = nodes.segmentations[0]
        lesion = self.node(self.data.segmentation)
        if lesion is not None and lesion.GetDisplayNode() is not None:
            lesion.GetDisplayNode().SetOpacity2DFill(0.0)
        fractions = {row.get("name"): row.get("fraction") for row in self.logic.table_rows(nodes.statistics)}
        segmentation = habitat_node.GetSegmentation()
        legend = []
        for i in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(i)
            fraction = fractions.get(segment.GetName())
            legend.append({"name": segment.GetName(),
                           "color": hex_colour(segment.GetColor()),
                           "fraction": f"{100 * fraction:.1f} %" if isinstance(fraction, float) else ""})
        with self.server.state:
            self.data.habitats = legend
            pngs = plot_pngs(nodes.model, nodes.results)
            self.data.fractions_plot = png_data_url(pngs["habitat_fractions.png"])
            self.data.means_plot = png_data_url(pngs["channel_means.png"])
