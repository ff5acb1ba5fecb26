"""Feature results as ``vtkMRMLTableNode`` (long format) with provenance in node attributes.

Values are stored as text with the shortest exact representation (``repr``): Slicer's table
storage writes numeric columns with 6 significant digits, which would not survive a saved scene.
"""

import json

import vtk

from ..errors import RadiomicsLabError
from ..extraction import COLUMNS, FeatureValue
from ..results import format_value

PROVENANCE_ATTRIBUTE = "RadiomicsLab.Provenance"
KIND_ATTRIBUTE = "RadiomicsLab.Kind"
FEATURES_KIND = "features"


def write_text_table(table_node, column_names, rows):
    """Fill ``table_node`` with string columns; floats become their exact decimal text (:func:`format_value`)."""
    columns = []
    for name in column_names:
        column = vtk.vtkStringArray()
        column.SetName(name)
        columns.append(column)
    for row in rows:
        for column, value in zip(columns, row):
            column.InsertNextValue(format_value(value) if isinstance(value, float) else str(value))
    table = vtk.vtkTable()
    for column in columns:
        table.AddColumn(column)
    was_modifying = table_node.StartModify()
    table_node.SetAndObserveTable(table)
    table_node.SetUseColumnTitleAsColumnHeader(True)
    for name in column_names:
        table_node.SetColumnProperty(name, "type", "string")
    table_node.EndModify(was_modifying)
    return table_node


def read_table_rows(table_node, text_columns=None) -> list[dict]:
    """The rows of a table node as dicts: numeric columns as floats, string columns as text.

    With ``text_columns`` (names), the other string columns are parsed as floats: the exact decimal
    text :func:`write_text_table` writes for numbers.
    """
    table = table_node.GetTable()
    columns = [table.GetColumn(i) for i in range(table.GetNumberOfColumns())]
    numeric = [not isinstance(c, vtk.vtkStringArray) or (text_columns is not None and c.GetName() not in text_columns)
               for c in columns]
    return [{c.GetName(): float(c.GetValue(r)) if is_number else c.GetValue(r) for c, is_number in zip(columns, numeric)}
            for r in range(table.GetNumberOfRows())]


def write_feature_table(table_node, values, provenance: dict):
    """Fill ``table_node`` with one row per (segment, feature) and attach the provenance."""
    was_modifying = table_node.StartModify()
    write_text_table(table_node, COLUMNS, [v.row() for v in values])
    table_node.SetColumnDescription("value", "feature value (exact decimal text of the double)")
    table_node.SetAttribute(KIND_ATTRIBUTE, FEATURES_KIND)
    table_node.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(provenance, default=str))
    table_node.EndModify(was_modifying)
    return table_node


def read_feature_table(table_node) -> list[FeatureValue]:
    """The feature values held in a table written by :func:`write_feature_table`."""
    table = table_node.GetTable() if table_node else None
    if table is None or any(table.GetColumnByName(name) is None for name in COLUMNS):
        name = table_node.GetName() if table_node else "None"
        raise RadiomicsLabError(f"Table '{name}' is not a RadiomicsLab feature table (columns {', '.join(COLUMNS)}).")
    columns = [table.GetColumnByName(name) for name in COLUMNS]
    return [
        FeatureValue(*(columns[c].GetValue(row) for c in range(len(COLUMNS) - 1)), float(columns[-1].GetValue(row)))
        for row in range(table.GetNumberOfRows())
    ]


def table_provenance(table_node) -> dict:
    """The provenance attached to a feature table (empty when there is none)."""
    text = table_node.GetAttribute(PROVENANCE_ATTRIBUTE)
    return json.loads(text) if text else {}
