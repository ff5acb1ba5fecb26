"""RadiomicsLab in the browser: trame-slicer's views and segment editor plus RadiomicsLab's panels.

Built the way trame-slicer's own apps are: one ``SlicerApp`` (scene, logics, views), trame-slicer
logic/UI pairs for what it already does (layouts, segment editor, window-level / volume
rendering), and a logic/UI pair per RadiomicsLab panel (:mod:`.panels`), each calling the same
MRML Logic classes as the desktop module. One study per server (a single-user workstation app;
several tabs show the same study).
"""

import logging
import os
import sys

from trame.app import TrameApp, get_server

from ..errors import RadiomicsLabError
from .jobs import JobRunner
from .layout import RadiomicsLabLayout
from .loader import DEFAULT_MAX_UPLOAD, StudyLoader
from .security import MESSAGE_MARGIN

log = logging.getLogger(__name__)

#: Offscreen rendering: EGL (Mesa's llvmpipe without a GPU); chosen before VTK makes a window.
OPENGL_WINDOW = "vtkEGLRenderWindow"


def configure_rendering():
    """Use VTK's EGL render window unless the user chose another (``VTK_DEFAULT_OPENGL_WINDOW``)."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", OPENGL_WINDOW)


class RadiomicsLabWebApp(TrameApp):
    """The web application: ``app.server.start(...)`` serves it (see :func:`serve`)."""

    def __init__(self, server=None, data_root=None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD, output_root=None):
        configure_rendering()
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.app.logic import LayoutButtonLogic, SegmentEditorLogic, VolumePropertyLogic
        from trame_slicer.rca_view import register_rca_factories

        from ..mrml.app import new_headless_app

        super().__init__(server or get_server("radiomicslab", client_type="vue3"))
        self.server.enable_module(trame_slicer_module)
        self.slicer_app = new_headless_app()  # trame-slicer's SlicerApp with Sequences, VTK chatter kept quiet
        register_rca_factories(self.slicer_app.view_manager, self.server)
        # The views first, then the segment editor's effect logics: their parameter nodes then get
        # pipelines bound to existing views (see the quirk in loader.py).
        self.layout_logic = LayoutButtonLogic(self.server, self.slicer_app)
        self.segment_editor_logic = SegmentEditorLogic(self.server, self.slicer_app)
        self.volume_property_logic = guarded_volume_property_logic(VolumePropertyLogic)(self.server, self.slicer_app)
        self.volume_property_logic.data.preset_3d_name = "MR-Default"

        self.jobs = JobRunner(self.server, self.slicer_app.view_manager)
        self.loader = StudyLoader(self.slicer_app, data_root, max_upload_bytes, output_root)
        self.loader.study_loaded.connect(self._on_study_loaded)
        self.panels = {}
        self._build()

    # Building ----------------------------------------------------------------------------------
    def _build(self):
        from trame_slicer.app.ui import LayoutButton, SegmentEditorUI, SegmentEditorUndoRedoUI

        from .panels.data import DataPanelLogic, DataPanelUI
        from .panels.display import DisplayPanelLogic, DisplayPanelUI
        from .panels.common import download_button
        from .panels.extraction import ExtractionPanelLogic, ExtractionPanelUI
        from .panels.results import ResultsLogic, ResultsUI

        server, jobs = self.server, self.jobs
        data = DataPanelLogic(server, self.slicer_app, self.loader, jobs, self.edit_segmentation, self.refresh_panels)
        extraction = ExtractionPanelLogic(server, self.slicer_app, self.loader, jobs, self.show_results)
        display = DisplayPanelLogic(server, self.slicer_app, self.loader, jobs)
        self.results = ResultsLogic(server, self.slicer_app, self.loader, jobs)
        self.panels.update(data=data, display=display, extraction=extraction, results=self.results)
        for key, module in self._workflow_panels():
            self.panels[key] = module.Logic(server, self.slicer_app, self.loader, jobs, self.show_results)

        self.ui = RadiomicsLabLayout(server, jobs.name)
        error_state = jobs.name.error
        limit = self.loader.max_upload_bytes
        with self.ui:
            data_ui = self.ui.add_tool("data", "Data: open, upload, export, save", "mdi-folder-open-outline",
                                       lambda: DataPanelUI(server, limit, error_state, data.label_map_bytes,
                                                           data.study_bytes), needs_volume=False)
            display_ui = self.ui.add_tool("display", "Display: window / level, volume rendering",
                                          "mdi-tune-variant", lambda: DisplayPanelUI(server))
            self.segment_editor_ui = self.ui.add_tool("segment", "Segment editor", "mdi-brush", SegmentEditorUI)
            extraction_ui = self.ui.add_tool("extraction", "Feature extraction", "mdi-table-large",
                                             lambda: ExtractionPanelUI(server, limit, error_state))
            workflow_uis = {}
            for key, module in self._workflow_panels():
                workflow_uis[key] = self.ui.add_tool(key, module.TITLE, module.ICON,
                                                     lambda module=module: module.UI(server, limit, error_state),
                                                     needs_volume=getattr(module, "NEEDS_VOLUME", True))
            with self.ui.view_overlay:
                for key, module in self._workflow_panels():
                    if hasattr(module, "overlay"):
                        module.overlay(server)
            with self.ui.rail_extra:
                self.layout_button = LayoutButton()
            self.ui.add_rail_button("Results table", "mdi-table-eye", f"{self.ui.name.results_open} = "
                                    f"!{self.ui.name.results_open}",
                                    disabled=(f"!{self.ui.name.volume_loaded} && !{self.results.name.tables}.length",))
            with self.ui.rail_bottom:
                SegmentEditorUndoRedoUI(editor_ui=self.segment_editor_ui, classes="d-flex flex-column align-center")
            with self.ui.appbar_actions:
                download_button(server, "Save study", "mdi-content-save-outline",
                                (f"({self.ui.name.study} || 'study') + '.mrb'",), data.study_bytes,
                                disabled=(f"!{self.ui.name.volume_loaded}",), classes="rl-appbar-save")
            with self.ui.views:
                self.layout_logic.layout_manager.initialize_layout_grid(self.ui)
            with self.ui.results:
                ResultsUI(server, self.results.csv_bytes, self.results.wide_csv_bytes, self.results.provenance_bytes,
                          close=f"{self.ui.name.results_open} = false")

        data.set_ui(data_ui)
        extraction.set_ui(extraction_ui)
        for key, ui in workflow_uis.items():
            self.panels[key].set_ui(ui)
        self.segment_editor_logic.set_ui(self.segment_editor_ui)
        display.set_ui(display_ui)
        self.volume_property_logic.set_ui(display_ui.volume_property)
        self.layout_logic.set_ui(self.layout_button)

    @staticmethod
    def _workflow_panels():
        """The workflow panels whose MRML Logic is available (feature maps, habitats, observers, delta, cohort)."""
        from .panels import workflow_panels

        return workflow_panels()

    # Study events -------------------------------------------------------------------------------
    def _on_study_loaded(self, volume, segmentation):
        if segmentation is not None:
            self.edit_segmentation(segmentation)
        else:  # trame-slicer's choice: the study's first segmentation, or a new empty one
            release_segmentation_observer(self.slicer_app.segmentation_editor)
            self.segment_editor_logic.on_volume_changed(volume)
        self.volume_property_logic.on_volume_changed(volume)
        with self.server.state:
            self.ui.data.volume_loaded = True
            self.ui.data.study = self.loader.study_name
            spacing = " x ".join(f"{s:.3g}" for s in volume.GetSpacing())
            dims = " x ".join(str(d) for d in volume.GetImageData().GetDimensions())
            self.ui.data.status = f"{volume.GetName()}: {dims} voxels of {spacing} mm"
        self.refresh_panels()

    def edit_segmentation(self, segmentation):
        """Make ``segmentation`` the one the segment editor paints into."""
        volume = self.loader.current_volume()
        editor = self.slicer_app.segmentation_editor
        editor.deactivate_effect()
        release_segmentation_observer(editor)
        editor.set_active_segmentation(segmentation, volume)
        self.segment_editor_logic._on_segment_display_changed(self.segment_editor_logic.data.segment_display)

    def refresh_panels(self):
        for panel in self.panels.values():
            panel.refresh()

    def show_results(self, table_node=None):
        """Refresh the panels' lists after a job and open the results pane on ``table_node``."""
        with self.server.state:
            self.ui.data.results_open = True
            if table_node is not None:
                self.results.data.table = table_node.GetID()
        self.refresh_panels()


def guarded_volume_property_logic(base):
    """trame-slicer's ``VolumePropertyLogic`` whose crop toggle waits for a volume.

    trame-slicer 2.0 binds ``_set_volume_crop_active`` to its ``volume_crop_active`` state, and trame
    calls every state-change callback once when the server starts, before any volume is loaded:
    it then calls ``GetROINode`` on the missing volume's display node and trame logs
    "'NoneType' object has no attribute 'GetROINode'" at every start. The other handlers of that
    class return early without a volume; this one now does too.
    """

    class GuardedVolumePropertyLogic(base):
        def _set_volume_crop_active(self, active: bool) -> None:
            volume = self._volume_node
            if volume is None or self._volume_rendering.get_vr_display_node(volume) is None:
                return
            super()._set_volume_crop_active(active)

    return GuardedVolumePropertyLogic


def release_segmentation_observer(editor):
    """Remove the observer trame-slicer's ``Segmentation`` wrapper keeps on the segmentation node being left.

    trame-slicer 2.0 never removes it when the editor moves to another segmentation; the stale
    Python callback then crashes the process when that node is modified later (saving the study
    as .mrb did, reliably).
    """
    segmentation = editor.active_segmentation
    observer = getattr(segmentation, "_node_obs", None)
    if segmentation is not None and observer is not None:
        segmentation.segmentation_node.RemoveObserver(observer)
        segmentation._node_obs = None


def serve(host: str = "127.0.0.1", port: int = 8080, data_root=None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
          announce=print, output_root=None, allowed_origins=()):
    """Build the app and serve it until interrupted (blocking).

    Only pages of this server (``http://127.0.0.1:PORT``, ``http://localhost:PORT``, the ``host``
    when it is one address, and ``allowed_origins``) can open a session, with a secret made for
    this launch (:mod:`.security`).
    """
    from .layout import icon_data_url
    from .security import browser_host, install

    sys_argv, sys.argv = sys.argv, sys.argv[:1]  # trame parses sys.argv; only our arguments count
    started = []
    try:
        app = RadiomicsLabWebApp(data_root=data_root, max_upload_bytes=max_upload_bytes, output_root=output_root)
        install(app.server, host, allowed_origins, max_message_bytes=max_upload_bytes + MESSAGE_MARGIN,
                icon_url=icon_data_url())

        def ready(**_):
            started.append(True)
            announce(f"RadiomicsLab web GUI: http://{browser_host(host)}:{app.server.port}/  (data folder: "
                     f"{app.loader.data.root}; Ctrl-C stops it)")

        app.server.controller.on_server_ready.add(ready)
        try:
            app.server.start(host=host, port=port, open_browser=False, show_connection_info=False, timeout=0,
                             disable_logging=True)
        except OSError as error:
            if started:
                raise
            raise RadiomicsLabError(f"Cannot listen on {host} port {port}: {error.strerror or error}; "
                                    "choose another --host or --port.") from None
    finally:
        sys.argv = sys_argv
