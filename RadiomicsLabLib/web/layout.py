"""The page: app bar, tool rail, the active tool's panel, the slice / 3D views, the results pane.

The views come from trame-slicer's layout manager (axial / sagittal / coronal / 3D, window-level
by dragging, slice sliders); the panels are built by the callables the app registers with
:meth:`RadiomicsLabLayout.add_tool`.
"""

import base64
from dataclasses import dataclass
from pathlib import Path

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets.vuetify3 import (
    VAlert,
    VAppBar,
    VBtn,
    VCard,
    VCardActions,
    VCardText,
    VCardTitle,
    VChip,
    VDialog,
    VDivider,
    VFooter,
    VIcon,
    VMain,
    VNavigationDrawer,
    VProgressCircular,
    VProgressLinear,
    VSnackbar,
    VSpacer,
    VToolbarTitle,
    VTooltip,
)
from trame_server.utils.typed_state import TypedState

from .. import __version__

ICON = Path(__file__).resolve().parents[2] / "RadiomicsLab" / "Resources" / "Icons" / "RadiomicsLab.png"

STYLE = """
html { overflow-y: hidden; }
.rl-rail .v-btn.rl-tool-active { background: rgba(var(--v-theme-primary), 0.22); }
.rl-panel { overflow-y: auto; height: 100%; }
.rl-results { border-top: 1px solid rgba(255,255,255,0.12); background: rgb(var(--v-theme-surface)); }
.rl-views { position: relative; min-height: 0; }
.rl-ext-table td { font-family: ui-monospace, monospace; font-size: 12px; white-space: nowrap; }
.rl-ext-table th { white-space: nowrap; }
"""


@dataclass
class LayoutState:
    active_tool: str = "data"
    drawer_open: bool = True
    results_open: bool = False
    volume_loaded: bool = False
    study: str = ""
    status: str = "Open a sample case or a file to start."


def icon_data_url() -> str:
    """The module icon as a ``data:`` URL (no request leaves the workstation)."""
    if not ICON.is_file():
        return ""
    return "data:image/png;base64," + base64.b64encode(ICON.read_bytes()).decode("ascii")


class RadiomicsLabLayout(VAppLayout):
    def __init__(self, server, job_state):
        super().__init__(server, template_name="main")
        self.typed_state = TypedState(self.state, LayoutState, namespace="rl")
        self.job = job_state
        self.root.theme = "dark"
        self._tools = []
        icon = icon_data_url()
        self.state["trame__title"] = "RadiomicsLab"
        if icon:
            self.state["trame__favicon"] = icon
        name = self.typed_state.name
        with self:
            client.Style(STYLE)
            with VAppBar(density="compact", flat=True, border="b"):
                if icon:
                    html.Img(src=icon, style="height: 30px; width: 30px;", classes="ml-3")
                VToolbarTitle("RadiomicsLab", classes="font-weight-medium", style="flex: 0 0 auto;")
                VChip(v_if=(name.study,), text=(name.study,), prepend_icon="mdi-account-box-outline", size="small",
                      variant="tonal", color="primary", classes="ml-4 rl-study-chip")
                VSpacer()
                self.appbar_actions = html.Div(classes="d-flex align-center ga-2 mr-3")

            with VNavigationDrawer(permanent=True, rail=True, rail_width=52, location="left", classes="rl-rail"):
                with html.Div(classes="d-flex flex-column align-center fill-height py-2"):
                    self.rail = html.Div(classes="d-flex flex-column align-center ga-1")
                    VDivider(classes="my-2", style="width: 60%;")
                    self.rail_extra = html.Div(classes="d-flex flex-column align-center ga-1")
                    VSpacer()
                    self.rail_bottom = html.Div(classes="d-flex flex-column align-center ga-1")

            with VNavigationDrawer(permanent=True, location="left", width=380, v_model=(name.drawer_open,)):
                self.drawer = html.Div(classes="rl-panel")

            with VMain(style="height: 100vh;"):
                with html.Div(classes="d-flex flex-column", style="height: 100%;"):
                    with html.Div(classes="px-3 pt-2", v_if=(job_state.error,)):
                        VAlert(type="error", variant="tonal", density="compact", closable=True,
                               text=(job_state.error,), classes="rl-error", click_close=f"{job_state.error} = ''")
                    with html.Div(classes="d-flex rl-views", style="flex: 1 1 auto;"):
                        self.views = html.Div(classes="d-flex", style="flex: 1 1 auto;")
                        self.view_overlay = html.Div(style="position: absolute; right: 14px; bottom: 34px; "
                                                           "z-index: 5; pointer-events: none;")
                    self.results = html.Div(v_show=(name.results_open,), classes="rl-results",
                                            style="flex: 0 0 38%; min-height: 0;")

            with VFooter(app=True, border="t", height=26, classes="py-0 px-3 text-caption"):
                VProgressCircular(indeterminate=("!!trame__busy",), color="primary", size=14, width=2, classes="mr-2")
                html.Span("{{ %s }}" % name.status, classes="text-medium-emphasis rl-status")
                VSpacer()
                html.Span(f"RadiomicsLab {__version__} · 3D Slicer libraries via trame-slicer",
                          classes="text-medium-emphasis")

            VSnackbar(model_value=(f"!!{job_state.notice}",), text=(job_state.notice,), timeout=4000,
                      color="success", variant="tonal", location="top right", classes="rl-notice",
                      update_modelValue=f"{job_state.notice} = $event ? {job_state.notice} : ''")

            with VDialog(model_value=(job_state.busy,), persistent=True, width=460):
                with VCard(classes="rl-job"):
                    VCardTitle("{{ %s }}" % job_state.title, classes="text-subtitle-1")
                    with VCardText():
                        VProgressLinear(model_value=(f"{job_state.total} ? 100 * {job_state.done} / {job_state.total}"
                                                     " : 0",),
                                        indeterminate=(f"!{job_state.total}",), color="primary", height=8,
                                        rounded=True)
                        html.Div("{{ %s }}{{ %s ? ' (' + %s + ' of ' + %s + ')' : '' }}" % (
                            job_state.message, job_state.total, job_state.done, job_state.total),
                            classes="text-caption text-medium-emphasis mt-2")
                    with VCardActions():
                        VSpacer()
                        VBtn(text=(f"{job_state.cancelling} ? 'Cancelling…' : 'Cancel'",), variant="text",
                             disabled=(job_state.cancelling,), click=self.server.controller.job_cancel,
                             classes="rl-job-cancel")

    @property
    def data(self) -> LayoutState:
        return self.typed_state.data

    @property
    def name(self) -> LayoutState:
        return self.typed_state.name

    def add_tool(self, key: str, title: str, icon: str, build, needs_volume: bool = True):
        """A rail button opening the panel ``build()`` creates (inside the drawer)."""
        name = self.name
        active = f"{name.active_tool} === '{key}' && {name.drawer_open}"
        with self.rail:
            with VBtn(icon=True, variant="text", size="small", rounded="lg",
                      classes=(f"{active} ? 'rl-tool rl-tool-active rl-tool-{key}' : 'rl-tool rl-tool-{key}'",),
                      disabled=(f"!{name.volume_loaded}",) if needs_volume else False,
                      click=f"{name.drawer_open} = !({active}); {name.active_tool} = '{key}';"):
                VIcon(icon)
                VTooltip(text=title, activator="parent", location="end")
        with self.drawer:
            with html.Div(v_if=(f"{name.active_tool} === '{key}'",), classes=f"rl-panel-{key}"):
                ui = build()
        self._tools.append(key)
        return ui

    def add_rail_button(self, title: str, icon: str, click, bottom: bool = False, **kwargs):
        with self.rail_bottom if bottom else self.rail_extra:
            with VBtn(icon=True, variant="text", size="small", rounded="lg", click=click, **kwargs):
                VIcon(icon)
                VTooltip(text=title, activator="parent", location="end")
