"""Widgets and helpers the panels share: headers, uploads, downloads, node pickers, plots, table text."""

import base64
import io
import json
from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn, VIcon, VSelect, VTooltip
from undo_stack import Signal


def panel_header(title: str, icon: str, subtitle: str = ""):
    """The title row every panel starts with."""
    with html.Div(classes="d-flex align-center px-4 pt-4 pb-2"):
        VIcon(icon, size="small", classes="mr-3", color="primary")
        with html.Div():
            html.Div(title, classes="text-subtitle-1 font-weight-medium")
            if subtitle:
                html.Div(subtitle, classes="text-caption text-medium-emphasis")


def section_title(text: str, **kwargs):
    html.Div(text, classes="text-overline text-medium-emphasis mt-3 mb-1 " + kwargs.pop("classes", ""), **kwargs)


def node_select(label: str, items: str, model: str, **kwargs):
    """A select of scene nodes; ``items`` holds ``{title, value}`` dicts (value: node ID)."""
    kwargs.setdefault("classes", "mb-2")
    return VSelect(label=label, items=(items,), v_model=(model,), density="compact", variant="outlined",
                   hide_details=True, **kwargs)


class PanelUI(html.Div):
    """A panel's widgets: its header, then its body (``with self.body:``); ``self.name`` holds the state
    names of ``state_type``; ``run_clicked`` is the signal of its Run button."""

    run_clicked = Signal()
    state_type = None

    def __init__(self, server, title: str, icon: str, subtitle: str = "", **kwargs):
        from trame_server.utils.typed_state import TypedState

        super().__init__(**kwargs)
        self.name = TypedState(server.state, self.state_type).name
        with self:
            panel_header(title, icon, subtitle)
            self.body = html.Div(classes="px-4")


class UploadButton(html.Div):
    """A button opening the browser's file chooser; the files come to the server in chunks.

    ``uploaded(files)`` receives trame file dicts (``name``, ``size``, ``content``). The browser
    refuses uploads over ``max_bytes`` before sending anything and offers only the ``accept``
    suffixes; the server never trusts either. It counts the bytes as the chunks arrive: the chunk
    that takes the upload over ``max_bytes`` is refused at once, what was received is dropped, the
    error is shown, and the rest of that upload is ignored until its end (an empty chunk). The
    type is checked again when the upload is read (:class:`~RadiomicsLabLib.web.loader.UploadFolder`).
    """

    uploaded = Signal(list)

    def __init__(self, text: str, icon: str, input_id: str, accept: tuple, max_bytes: int, error_state: str,
                 multiple: bool = False, directory: bool = False, **kwargs):
        super().__init__(classes="d-inline-block " + kwargs.pop("classes", ""))
        self._files = []
        self._received = 0  # bytes of the upload in progress held in self._files
        self._refused = False  # the upload in progress went over the limit: drop its chunks until its end
        self._max_bytes = max_bytes
        self._error_state = error_state
        trigger = self.server.trigger_name(self._on_chunk)
        busy = f"{input_id.replace('-', '_')}_busy"
        self.server.state.setdefault(busy, False)
        limit_mb = max_bytes / 2**20
        change = (
            "const files = $event.target.files; let total = 0; for (const f of files) { total += f.size; }"
            f"if (!files.length) {{ return; }}"
            f"if (total > {max_bytes}) {{ {error_state} = `The upload is ${{Math.round(total / 1048576)}} MB, "
            f"more than the limit of {limit_mb:.0f} MB; put the file in the data folder instead.`; "
            "$event.target.value = ''; return; }"
            f"{busy} = true;"
            f"window.load_files_by_chunks(files, {{ trigger_name: '{trigger}' }})"
            f".finally(() => {{ {busy} = false; $event.target.value = ''; }});"
        )
        with self:
            options = {"raw_attrs": ["webkitdirectory"]} if directory else {"accept": ",".join(accept)}
            html.Input(type="file", id=input_id, multiple=multiple or directory, style="display: none;",
                       change=change, **options)
            with VBtn(prepend_icon=icon, variant="tonal", size="small", loading=(busy,),
                      click=f"document.getElementById('{input_id}').click()", **kwargs):
                html.Span(text)
                VTooltip(text=f"Upload {text.lower()} (up to {limit_mb:.0f} MB)", activator="parent",
                         location="bottom")

    @property
    def received_bytes(self) -> int:
        """Bytes of the upload in progress held in memory."""
        return self._received

    async def _on_chunk(self, files):
        """One chunk of files (trame's chunk loader), or the end of the upload (an empty list).

        Returns ``{"received": bytes held, "accepted": bool}`` for the chunk (the page ignores it).
        """
        from ..loader import content_size, upload_too_large

        if files:
            if self._refused:
                return {"received": 0, "accepted": False}
            files = list(files) if isinstance(files, (list, tuple)) else [files]
            total = self._received + sum(content_size(f) for f in files)
            if total > self._max_bytes:
                self._files, self._received, self._refused = [], 0, True  # free what was received
                self.server.state[self._error_state] = upload_too_large(total, self._max_bytes, at_least=True)
                return {"received": 0, "accepted": False}
            self._files.extend(files)
            self._received = total
            return {"received": total, "accepted": True}
        files, self._files = self._files, []
        refused, self._refused, self._received = self._refused, False, 0
        if files and not refused:
            await self.uploaded.async_emit(files)
        return {"received": 0, "accepted": not refused}


def download_button(server, text: str, icon: str, file_name, fetch, mime: str = "application/octet-stream",
                    **kwargs):
    """A button downloading what ``fetch()`` returns (bytes, or None after an error) as ``file_name``
    (a JS expression when given as a one-element tuple)."""

    def attachment():
        content = fetch()
        return None if content is None else server.protocol.addAttachment(content)

    trigger = server.trigger_name(attachment)
    # a plain name as a single-quoted JS string: the click handler stands in a double-quoted HTML attribute
    name = file_name[0] if isinstance(file_name, tuple) else \
        "'" + json.dumps(file_name)[1:-1].replace("'", "\\'").replace('\\"', "\\x22") + "'"
    return VBtn(text=text, prepend_icon=icon, variant="tonal", size="small",
                click=f"trigger('{trigger}').then((data) => data && utils.download({name}, data, '{mime}'))",
                **kwargs)


def saved_files_zip(jobs, save, *args, prefix: str = "radiomicslab-results-") -> bytes | None:
    """The files a Logic's ``save_results`` writes (``save(*args, folder)`` -> {name: path}, into a temporary
    folder) as one zip, names as the keys; None when it raised a user error (shown by ``jobs``)."""
    import tempfile
    import zipfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        written = jobs.guard(save, *args, folder)
        if written is None:
            return None
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(written):
                archive.write(Path(written[name]), name)
        return buffer.getvalue()


def figure_data_url(figure) -> str:
    """A matplotlib figure as a PNG ``data:`` URL (closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", facecolor=figure.get_facecolor())
    plt.close(figure)
    return png_data_url(buffer.getvalue())


def png_data_url(png: bytes) -> str:
    """PNG bytes (e.g. a plot a workflow's core draws for its result files) as a ``data:`` URL."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def dark_figure(width: float = 4.2, height: float = 2.8):
    """A matplotlib figure styled for the app's dark theme."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(width, height))
    figure.patch.set_facecolor("#212121")
    axes.set_facecolor("#212121")
    for spine in axes.spines.values():
        spine.set_color("#9e9e9e")
    axes.tick_params(colors="#e0e0e0", labelsize=8)
    axes.xaxis.label.set_color("#e0e0e0")
    axes.yaxis.label.set_color("#e0e0e0")
    axes.title.set_color("#e0e0e0")
    return figure, axes


def chart_data_url(chart_node, width: float = 4.2, height: float = 2.8) -> str:
    """A ``vtkMRMLPlotChartNode`` drawn with matplotlib: its bar, line and scatter series with their
    colours, names, markers and line styles, axis titles and title (as Slicer's plot view shows it);
    empty text when its tables have no rows."""
    import numpy as np
    import slicer

    series = [chart_node.GetNthPlotSeriesNode(i) for i in range(chart_node.GetNumberOfPlotSeriesNodes())]
    series = [s for s in series if s is not None and s.GetTableNode() is not None]
    if not any(s.GetTableNode().GetNumberOfRows() for s in series):
        return ""  # nothing to draw
    figure, axes = dark_figure(width, height)
    bars = [s for s in series if s.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeBar]
    categories = {}
    for s in series:
        _, rows = table_text(s.GetTableNode())
        xs = [r.get(s.GetXColumnName(), "") for r in rows]
        ys = np.array([_number(r.get(s.GetYColumnName(), "")) for r in rows])
        if s.GetLabelColumnName() and all(_number(x) != _number(x) for x in xs):  # text x: categories
            xs = [r.get(s.GetLabelColumnName(), x) for r, x in zip(rows, xs)]
        if all(_number(x) == _number(x) for x in xs):
            positions = np.array([_number(x) for x in xs])
        else:
            positions = np.array([categories.setdefault(x, len(categories)) for x in xs], dtype=float)
        colour = tuple(s.GetColor())
        if max(colour) == 0:  # no colour set (black would vanish on the dark theme): matplotlib's cycle
            colour = f"C{series.index(s) % 10}"
        if s in bars:
            width_bar = 0.8 / len(bars)
            offset = (bars.index(s) - (len(bars) - 1) / 2) * width_bar
            axes.bar(positions + offset, ys, width=width_bar, color=colour, label=s.GetName())
            continue
        marker = "o" if s.GetMarkerStyle() != slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone else None
        line = {slicer.vtkMRMLPlotSeriesNode.LineStyleNone: "", slicer.vtkMRMLPlotSeriesNode.LineStyleDash: "--"}.get(
            s.GetLineStyle(), "-")
        if s.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter and not line and marker is None:
            marker = "o"
        axes.plot(positions, ys, linestyle=line or "none", marker=marker, markersize=3, color=colour,
                  label=s.GetName(), linewidth=1.2)
    if categories:
        axes.set_xticks(list(categories.values()), list(categories), rotation=30, ha="right")
    elif bars:
        ticks = sorted({p for line in axes.containers for p in (round(b.get_x() + b.get_width() / 2) for b in line)})
        axes.set_xticks(ticks)
    axes.set_title(chart_node.GetTitle() or chart_node.GetName(), fontsize=9)
    axes.set_xlabel(chart_node.GetXAxisTitle() or "", fontsize=8)
    axes.set_ylabel(chart_node.GetYAxisTitle() or "", fontsize=8)
    if 1 < len(series) <= 12:
        legend = axes.legend(fontsize=6, frameon=False, labelcolor="#e0e0e0", ncol=2 if len(series) > 6 else 1)
        legend.set_in_layout(True)
    return figure_data_url(figure)


def table_text(table_node) -> tuple[list[str], list[dict]]:
    """(column names, rows as {column: text}) of a table node; numbers as their shortest exact text."""
    from ...results import format_value

    table = table_node.GetTable()
    if table is None:
        return [], []
    columns = [table.GetColumn(i) for i in range(table.GetNumberOfColumns())]
    names = [c.GetName() for c in columns]

    def text(column, row):
        value = column.GetValue(row)
        if isinstance(value, float):
            return format_value(value)
        return str(value)

    return names, [{n: text(c, r) for n, c in zip(names, columns)} for r in range(table.GetNumberOfRows())]


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def node_items(nodes) -> list[dict]:
    """``{title, value}`` items (name, ID) for a select of nodes."""
    return [{"title": n.GetName(), "value": n.GetID()} for n in nodes]


def hex_colour(rgb) -> str:
    """``(r, g, b)`` in 0..1 as ``#rrggbb``."""
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb[:3])


def segment_items(segmentation_node) -> list[dict]:
    """``{title, value}`` items (name, ID) of a segmentation node's segments, in order."""
    segmentation = segmentation_node.GetSegmentation() if segmentation_node is not None else None
    count = segmentation.GetNumberOfSegments() if segmentation is not None else 0
    return [{"title": segmentation.GetNthSegment(i).GetName(), "value": segmentation.GetNthSegmentID(i)}
            for i in range(count)]


def kept_or(current, items: list[dict], default=None):
    """``current`` when it is still one of the items' values, else ``default``."""
    return current if current in [item["value"] for item in items] else default


def study_volumes(scene) -> list:
    """The scene's images a panel may take as input: scalar volumes, not label maps nor computed maps."""
    from ...mrml.tables import KIND_ATTRIBUTE
    from ..loader import nodes_of

    return [v for v in nodes_of(scene, "vtkMRMLScalarVolumeNode")
            if not v.IsA("vtkMRMLLabelMapVolumeNode") and not v.GetAttribute(KIND_ATTRIBUTE)]


@dataclass
class LesionState:
    """The segment a panel works on; a base of panel state dataclasses (with :func:`lesion_select` and
    :meth:`PanelLogic.refresh_lesion`)."""

    segmentations: list[dict] = field(default_factory=list)
    segmentation: str | None = None
    segments: list[dict] = field(default_factory=list)
    segment: str | None = None


def lesion_select(name, classes: str = ""):
    """Selects of the segmentation and its segment (state names of a :class:`LesionState`)."""
    node_select("Segmentation", name.segmentations, name.segmentation)
    node_select("Segment", name.segments, name.segment, classes=f"mb-2 {classes}")


class PanelLogic:
    """What every panel's logic shares: the server, the app's scene, the study loader, the job runner,
    the panel's typed state (``state_type``), and the results pane opener.

    ``set_ui`` connects the UI's ``run_clicked`` signal to :meth:`run` when the panel has one;
    ``refresh`` updates the panel's lists after the scene changed.
    """

    state_type = None

    def __init__(self, server, slicer_app, loader, jobs, show_results=None):
        from trame_server.utils.typed_state import TypedState

        self.server = server
        self.slicer_app = slicer_app
        self.loader = loader
        self.jobs = jobs
        self._show_results = show_results
        self.typed_state = TypedState(server.state, self.state_type)
        self.data = self.typed_state.data
        self.name = self.typed_state.name

    @property
    def scene(self):
        return self.slicer_app.scene

    def node(self, node_id):
        """The scene's node with this ID (None for none or a node gone)."""
        return self.scene.GetNodeByID(node_id) if node_id else None

    def set_ui(self, ui):
        if isinstance(ui, PanelUI) and hasattr(self, "run"):
            ui.run_clicked.connect(self.run)

    def refresh(self):
        pass

    def refresh_lesion(self, segmentations, default=None):
        """Offer ``segmentations`` (a :class:`LesionState` panel), keeping the chosen one if still there."""
        with self.server.state:
            self.data.segmentations = node_items(segmentations)
            fallback = default.GetID() if default is not None else (segmentations[0].GetID() if segmentations else None)
            self.data.segmentation = kept_or(self.data.segmentation, self.data.segmentations, fallback)
        self.refresh_segments()

    def refresh_segments(self):
        """The chosen segmentation's segments, keeping the chosen segment if still there (else the first)."""
        with self.server.state:
            self.data.segments = segment_items(self.node(self.data.segmentation))
            self.data.segment = kept_or(self.data.segment, self.data.segments,
                                        self.data.segments[0]["value"] if self.data.segments else None)
