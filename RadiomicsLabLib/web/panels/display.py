"""Display panel: volume rendering on / off, then trame-slicer's window-level and rendering presets."""

from dataclasses import dataclass

from trame.widgets import html
from trame.widgets.vuetify3 import VSwitch
from trame_server.utils.typed_state import TypedState

from .common import PanelLogic, panel_header


@dataclass
class DisplayPanelState:
    volume_rendering: bool = False


class DisplayPanelUI(html.Div):
    def __init__(self, server, **kwargs):
        from trame_slicer.app.ui import VolumePropertyUI

        super().__init__(**kwargs)
        name = TypedState(server.state, DisplayPanelState).name
        with self:
            panel_header("Display", "mdi-tune-variant", "Window / level, presets, volume rendering")
            with html.Div(classes="px-4"):
                VSwitch(v_model=(name.volume_rendering,), label="Volume rendering in the 3D view", color="primary",
                        density="compact", hide_details=True, classes="rl-volume-rendering")
                html.Div("Slow without a GPU: each 3D frame is drawn by the CPU.",
                         classes="text-caption text-medium-emphasis mb-2")
            self.volume_property = VolumePropertyUI()


class DisplayPanelLogic(PanelLogic):
    """Shows or hides the current volume's volume rendering (the rest is trame-slicer's VolumePropertyLogic)."""

    state_type = DisplayPanelState

    def __init__(self, *args):
        super().__init__(*args)
        self.typed_state.bind_changes({self.name.volume_rendering: self._on_volume_rendering})

    def _vr_node(self):
        volume = self.loader.current_volume()
        return self.slicer_app.volume_rendering.get_vr_display_node(volume) if volume is not None else None

    def refresh(self):
        node = self._vr_node()
        with self.server.state:
            self.data.volume_rendering = bool(node and node.GetVisibility())

    def _on_volume_rendering(self, visible: bool):
        node = self._vr_node()
        if node is not None and bool(node.GetVisibility()) != bool(visible):
            node.SetVisibility(bool(visible))
