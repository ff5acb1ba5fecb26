"""Feature map panel: feature, kernel radius, run; the map over the image with opacity and a colour bar.

Run is one :meth:`~RadiomicsLabLib.mrml.featuremaps.FeatureMapLogic.compute` call (in the job
runner, maps shown afterwards with :meth:`~RadiomicsLabLib.mrml.featuremaps.FeatureMapLogic.show`);
the memory estimate before the run is :meth:`~RadiomicsLabLib.mrml.featuremaps.FeatureMapLogic.estimate`;
"All maps (zip)" holds the files :meth:`~RadiomicsLabLib.mrml.featuremaps.FeatureMapLogic.save_results` writes for
the last run (those of ``radiomicslab maps``).
"""

from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets.vuetify3 import VAutocomplete, VBtn, VBtnToggle, VCheckbox, VImg, VSlider, VSwitch
from trame_server.utils.typed_state import TypedState

from ...errors import RadiomicsLabError
from ..loader import nodes_of
from .common import (LesionState, PanelLogic, PanelUI, dark_figure, download_button, figure_data_url, kept_or,
                     lesion_select, node_items, node_select, saved_files_zip, section_title, study_volumes)

KEY = "featuremaps"
TITLE = "Feature maps: voxel-wise features over the image"
ICON = "mdi-texture-box"
SEGMENT_FILL_OPACITY = 0.5  # Slicer's default 2D fill opacity of segments
DEFAULT_FEATURES = {"ibsi": ["cm_contrast_3D_avg"], "pyradiomics": ["glcm_Contrast"]}


@dataclass
class FeatureMapState(LesionState):
    volumes: list[dict] = field(default_factory=list)
    volume: str | None = None
    definition: str = "ibsi"
    catalogue: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=lambda: list(DEFAULT_FEATURES["ibsi"]))
    radius: int = 1
    in_plane: bool = False
    estimate: str = ""
    maps: list[dict] = field(default_factory=list)
    map: str | None = None
    visible: bool = True
    opacity: float = 0.8
    colour_bar: str = ""
    statistics: list[dict] = field(default_factory=list)


class UI(PanelUI):
    state_type = FeatureMapState

    def __init__(self, server, max_upload_bytes: int, error_state: str, **kwargs):
        super().__init__(server, "Feature maps", ICON, "A feature in every voxel's neighbourhood, over the image",
                         **kwargs)
        self.fetch_zip = lambda: None  # set by the logic: the zip of the last run's files
        name = self.name
        with self.body:
            section_title("Region")
            node_select("Image", name.volumes, name.volume)
            lesion_select(name, "rl-map-segment")
            section_title("Features")
            with VBtnToggle(v_model=(name.definition,), mandatory=True, density="compact", divided=True,
                            variant="outlined", classes="mb-2"):
                VBtn(text="IBSI", value="ibsi", size="small")
                VBtn(text="pyradiomics", value="pyradiomics", size="small")
            VAutocomplete(items=(name.catalogue,), v_model=(name.features,), multiple=True, chips=True,
                          closable_chips=True, density="compact", variant="outlined", hide_details=True,
                          label="Features", classes="mb-2 rl-map-features")
            html.Div("Kernel radius: {{ %s }} voxel(s), a cube of {{ 2 * %s + 1 }} voxels a side"
                     % (name.radius, name.radius), classes="text-caption")
            VSlider(v_model=(name.radius,), min=1, max=5, step=1, show_ticks="always", density="compact",
                    hide_details=True, color="primary", classes="rl-map-radius")
            VCheckbox(v_model=(name.in_plane,), label="In-plane kernel (2D, for thick slices)", density="compact",
                      hide_details=True)
            html.Div("{{ %s }}" % name.estimate, classes="text-caption text-medium-emphasis mb-2 rl-map-estimate")
            VBtn(text="Compute maps", prepend_icon="mdi-play", color="primary", block=True,
                 disabled=(f"!{name.features}.length || !{name.volume}",), click=self.run_clicked,
                 classes="rl-map-run")

            with html.Div(v_if=(f"{name.maps}.length",)):
                section_title("Overlay")
                node_select("Map", name.maps, name.map, classes="mb-1 rl-map-select")
                VSwitch(v_model=(name.visible,), label="Show over the image", density="compact",
                        hide_details=True, color="primary")
                html.Div("Opacity {{ Math.round(100 * %s) }} %%" % name.opacity, classes="text-caption")
                VSlider(v_model=(name.opacity,), min=0, max=1, step=0.05, density="compact", hide_details=True,
                        color="primary", classes="rl-map-opacity")
                VImg(src=(name.colour_bar,), classes="my-2 rl-map-colour-bar", max_height=80)
                with html.Table(classes="text-caption rl-map-statistics", style="width: 100%;"):
                    with html.Tr(v_for=f"row in {name.statistics}", key="row.name"):
                        html.Td("{{ row.name }}", classes="text-medium-emphasis")
                        html.Td("{{ row.value }}", style="text-align: right; font-family: monospace;")
                download_button(server, "All maps (zip)", "mdi-folder-zip-outline", "feature_maps.zip",
                                lambda: self.fetch_zip(), "application/zip", classes="my-2 rl-map-download")


def overlay(server):
    """The colour bar over the views while a map is shown."""
    name = TypedState(server.state, FeatureMapState).name
    with html.Div(v_if=(f"{name.visible} && {name.colour_bar} && {name.maps}.length",),
                  style="background: rgba(33,33,33,0.8); border-radius: 6px; padding: 4px 8px;",
                  classes="rl-map-overlay"):
        html.Img(src=(name.colour_bar,), style="width: 300px; display: block;")


class Logic(PanelLogic):
    """Feature map requests, runs and overlay, through :class:`~RadiomicsLabLib.mrml.featuremaps.FeatureMapLogic`."""

    state_type = FeatureMapState

    def __init__(self, *args):
        from ...mrml.featuremaps import FeatureMapLogic

        super().__init__(*args)
        self.logic = FeatureMapLogic(self.scene)
        self.result = None  # the last run's FeatureMapResult (its files: results_zip)
        name = self.name
        self._set_catalogue(self.data.definition)
        self.typed_state.bind_changes({
            name.definition: self._on_definition,
            name.segmentation: lambda *_: self.refresh_segments(),
            (name.volume, name.segment, name.features, name.radius, name.in_plane): lambda *_: self._estimate(),
            name.map: lambda *_: self._show_map(),
            (name.opacity, name.visible): lambda *_: self._show_map(),
        })

    def set_ui(self, ui):
        super().set_ui(ui)
        if isinstance(ui, UI):
            ui.fetch_zip = self.results_zip

    def results_zip(self) -> bytes | None:
        """The files of the last run (:meth:`~RadiomicsLabLib.mrml.featuremaps.FeatureMapLogic.save_results`: each
        map's NRRD, summary.csv, maps.json) as one zip, or None (error shown) when there is none."""
        if self.result is None:
            self.jobs.show_error("No feature maps yet; compute them first.")
            return None
        return saved_files_zip(self.jobs, self.logic.save_results, self.result, prefix="radiomicslab-maps-")

    def refresh(self):
        current = self.loader.current_volume()
        edited = self.slicer_app.segmentation_editor.active_segmentation_node
        with self.server.state:
            self.data.volumes = node_items(study_volumes(self.scene))
            self.data.volume = kept_or(self.data.volume, self.data.volumes, current.GetID() if current else None)
            self.data.maps = node_items(self.logic.map_nodes())
            self.data.map = kept_or(self.data.map, self.data.maps,
                                    self.data.maps[-1]["value"] if self.data.maps else None)
        self.refresh_lesion(nodes_of(self.scene, "vtkMRMLSegmentationNode"), edited)

    def refresh_segments(self):
        super().refresh_segments()
        self._estimate()

    def _on_definition(self, definition):
        self._set_catalogue(definition)
        with self.server.state:
            self.data.features = [f for f in self.data.features if f in self.data.catalogue] or \
                list(DEFAULT_FEATURES[definition])
        self._estimate()

    def _set_catalogue(self, definition):
        from ...featuremaps import catalogue

        self.data.catalogue = list(catalogue(definition))

    def _request(self) -> dict:
        volume = self.node(self.data.volume)
        if volume is None:
            raise RadiomicsLabError("Choose an image (load a study first).")
        if not self.data.features:
            raise RadiomicsLabError("Choose at least one feature.")
        request = {"volume_node": volume, "segmentation_node": self.node(self.data.segmentation),
                   "segment_id": self.data.segment, "features": ",".join(self.data.features),
                   "radius": int(self.data.radius), "definition": self.data.definition}
        if request["segmentation_node"] is None:
            request["segment_id"] = None
        if self.data.in_plane:
            request["in_plane"] = True
        return request

    def _estimate(self):
        try:
            text = self.logic.estimate(**self._request())
        except RadiomicsLabError as error:
            text = str(error)
        with self.server.state:
            self.data.estimate = text

    async def run(self):
        request = self.jobs.guard(self._request)
        if request is None:
            return

        def work(progress):
            return self.logic.compute(**request, progress=progress, show=False)

        def apply(result):
            self.result = result
            first = next(iter(result.maps.values()), None)
            self.refresh()
            if first is not None:
                self.data.map = first.GetID()
                self.data.visible = True
                self._show_map()
            self._show_results(result.table)

        await self.jobs.run(f"Computing {len(self.data.features)} feature map(s)", work, apply=apply,
                            done_message=lambda r: f"{len(r.maps)} map(s) in {self.jobs.data.seconds:.1f} s.")

    def _show_map(self):
        """The chosen map over its image (or hidden), its colour bar and its statistics."""
        from ...mrml.featuremaps import FEATURE_ATTRIBUTE, VOLUME_ROLE

        node = self.node(self.data.map)
        if node is None:
            return
        background = node.GetNodeReference(VOLUME_ROLE) or self.loader.current_volume()
        if self.data.visible:
            self.logic.show(node, background, float(self.data.opacity))
        else:
            for view in self.slicer_app.view_manager.get_slice_views():
                view.set_foreground_volume_id(None)
        for segmentation in nodes_of(self.slicer_app.scene, "vtkMRMLSegmentationNode"):
            display = segmentation.GetDisplayNode()
            if display is not None:  # outlines only while a map is shown, so the map shows through
                display.SetOpacity2DFill(0.0 if self.data.visible else SEGMENT_FILL_OPACITY)
        for view in self.slicer_app.view_manager.get_slice_views():
            view.schedule_render()
        display = node.GetDisplayNode()
        low, high = display.GetWindowLevelMin(), display.GetWindowLevelMax()
        feature = node.GetAttribute(FEATURE_ATTRIBUTE) or node.GetName()
        with self.server.state:
            self.data.colour_bar = colour_bar(feature, low, high)
            self.data.statistics = self._statistics(node, feature)

    def _statistics(self, node, feature) -> list[dict]:
        """The map's row of the newest summary table that has it (voxels, mean, percentiles, ...)."""
        from ...mrml.featuremaps import SUMMARY_KIND
        from ...mrml.tables import KIND_ATTRIBUTE

        tables = [t for t in nodes_of(self.slicer_app.scene, "vtkMRMLTableNode")
                  if t.GetAttribute(KIND_ATTRIBUTE) == SUMMARY_KIND]
        for table in reversed(tables):
            for row in self.logic.summary_rows(table):
                if row.get("feature") == feature:
                    return [{"name": k, "value": f"{v:.6g}" if isinstance(v, float) else str(v)}
                            for k, v in row.items() if k != "feature"]
        return []


def colour_bar(feature: str, low: float, high: float) -> str:
    """A horizontal viridis colour bar from ``low`` to ``high`` (the map's display window) as a PNG data URL."""
    import matplotlib as mpl

    figure, axes = dark_figure(3.6, 0.75)
    norm = mpl.colors.Normalize(vmin=low, vmax=high)
    bar = figure.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap="viridis"), cax=axes, orientation="horizontal")
    bar.set_label(feature, color="#e0e0e0", fontsize=8)
    bar.outline.set_edgecolor("#9e9e9e")
    return figure_data_url(figure)
