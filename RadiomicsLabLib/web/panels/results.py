"""Results pane (under the views): any RadiomicsLab table of the scene, searchable, with CSV and provenance downloads.

Feature tables (extraction, habitat features, observer features) are exported by
:meth:`~RadiomicsLabLib.mrml.ExtractionLogic.save_results`, the files ``radiomicslab extract`` writes (long or
wide CSV and the provenance sidecar); the other tables (map statistics, habitat statistics, agreement, ICC, deltas, ...) as
CSV of their columns with the provenance their node carries.
"""

import csv
import io
import json
import tempfile
from dataclasses import dataclass, field

from trame.widgets import html
from trame.widgets.vuetify3 import VBtn, VChip, VDataTable, VIcon, VSelect, VSpacer, VTextField
from trame_server.utils.typed_state import TypedState

from ..loader import nodes_of
from .common import PanelLogic, download_button, node_items, table_text

#: Column order of feature tables in the pane (the value next to the feature's name).
FEATURE_COLUMNS = ("segment", "feature", "value", "ibsi_tag", "feature_class", "image_type")
TITLES = {"segment": "Segment", "feature": "Feature", "value": "Value", "ibsi_tag": "IBSI tag",
          "feature_class": "Class", "image_type": "Image type"}


@dataclass
class ResultsState:
    tables: list[dict] = field(default_factory=list)
    table: str | None = None
    headers: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    search: str = ""
    is_features: bool = False


class ResultsUI(html.Div):
    def __init__(self, server, fetch_csv, fetch_wide_csv, fetch_provenance, close, **kwargs):
        super().__init__(classes="d-flex flex-column fill-height " + kwargs.pop("classes", ""), **kwargs)
        name = TypedState(server.state, ResultsState).name
        stem = (f"({name.tables}.find(t => t.value === {name.table}) || {{title: 'table'}}).title"
                ".replace(/[^A-Za-z0-9_.-]+/g, '_')")
        with self:
            with html.Div(classes="d-flex align-center ga-2 px-3 py-2 flex-wrap"):
                VIcon("mdi-table-large", size="small", color="primary")
                VSelect(items=(name.tables,), v_model=(name.table,), density="compact", variant="plain",
                        hide_details=True, style="max-width: 340px;", classes="rl-results-select rl-ext-table-select")
                VChip(text=(f"{name.rows}.length + ' rows'",), size="small", variant="tonal")
                VSpacer()
                VTextField(v_model=(name.search,), prepend_inner_icon="mdi-magnify", placeholder="Filter rows",
                           density="compact", variant="outlined", hide_details=True, clearable=True,
                           style="min-width: 220px; max-width: 300px;", classes="rl-ext-search")
                download_button(server, "CSV", "mdi-download", (f"{stem} + '.csv'",), fetch_csv, "text/csv",
                                disabled=(f"!{name.table}",), classes="rl-ext-csv")
                download_button(server, "Wide CSV", "mdi-download", (f"{stem} + '.wide.csv'",), fetch_wide_csv,
                                "text/csv", v_if=(name.is_features,))
                download_button(server, "Provenance", "mdi-code-json", (f"{stem} + '.provenance.json'",),
                                fetch_provenance, "application/json", disabled=(f"!{name.table}",),
                                classes="rl-ext-provenance")
                VBtn(icon="mdi-chevron-down", size="small", variant="text", click=close, classes="ml-1")
            VDataTable(headers=(name.headers,), items=(name.rows,), search=(name.search,), density="compact",
                       fixed_header=True, items_per_page=50, hover=True, classes="flex-grow-1 rl-ext-table",
                       style="overflow: auto; min-height: 0;")


class ResultsLogic(PanelLogic):
    """Which table the pane shows and its rows; downloads."""

    state_type = ResultsState

    def __init__(self, *args):
        from ...mrml import ExtractionLogic

        super().__init__(*args)
        self.extraction = ExtractionLogic(self.scene)
        self.typed_state.bind_changes({self.name.table: self._on_table_changed})

    def tables(self) -> list:
        from ...mrml.tables import KIND_ATTRIBUTE

        return [t for t in nodes_of(self.slicer_app.scene, "vtkMRMLTableNode") if t.GetAttribute(KIND_ATTRIBUTE)]

    def refresh(self):
        tables = self.tables()
        ids = [t.GetID() for t in tables]
        with self.server.state:
            self.data.tables = node_items(tables)
            if self.data.table not in ids:
                self.data.table = ids[-1] if ids else None
            self._on_table_changed(self.data.table)

    def show(self, table_node):
        """Show ``table_node`` in the pane."""
        with self.server.state:
            self.data.table = table_node.GetID()
        self.refresh()

    def _on_table_changed(self, table_id):
        table = self.node(table_id)
        headers, rows, is_features = [], [], False
        if table is not None:
            columns, rows = table_text(table)
            is_features = self._is_features(table)
            if is_features:
                columns = [c for c in FEATURE_COLUMNS if c in columns] + \
                    [c for c in columns if c not in FEATURE_COLUMNS]
            headers = [{"title": TITLES.get(c, c.replace("_", " ")), "key": c,
                        **({"align": "end"} if c == "value" else {})} for c in columns]
        with self.server.state:
            self.data.headers, self.data.rows, self.data.is_features = headers, rows, is_features

    @staticmethod
    def _is_features(table) -> bool:
        from ...mrml.tables import FEATURES_KIND, KIND_ATTRIBUTE

        return table.GetAttribute(KIND_ATTRIBUTE) == FEATURES_KIND

    # Downloads --------------------------------------------------------------------------------
    def _feature_export(self, table, wide: bool, which: int) -> bytes | None:
        """One of the files :meth:`~RadiomicsLabLib.mrml.ExtractionLogic.save_results` writes (what
        ``radiomicslab extract`` writes): ``features.csv`` (``which`` 0) or ``features.provenance.json`` (1)."""
        with tempfile.TemporaryDirectory(prefix="radiomicslab-table-") as folder:
            written = self.jobs.guard(self.extraction.save_results, table, folder, wide)
            return None if written is None else list(written.values())[which].read_bytes()

    def _table(self):
        table = self.node(self.data.table)
        if table is None:
            self.jobs.show_error("No table yet; run an extraction or a workflow first.")
        return table

    def csv_bytes(self) -> bytes | None:
        table = self._table()
        if table is None:
            return None
        if self._is_features(table):
            return self._feature_export(table, False, 0)
        columns, rows = table_text(table)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().encode("utf-8")

    def wide_csv_bytes(self) -> bytes | None:
        table = self._table()
        return None if table is None else self._feature_export(table, True, 0)

    def provenance_bytes(self) -> bytes | None:
        from ...mrml.tables import PROVENANCE_ATTRIBUTE

        table = self._table()
        if table is None:
            return None
        if self._is_features(table):
            return self._feature_export(table, False, 1)
        text = table.GetAttribute(PROVENANCE_ATTRIBUTE) or "{}"
        return (json.dumps(json.loads(text), indent=2, default=str) + "\n").encode("utf-8")
