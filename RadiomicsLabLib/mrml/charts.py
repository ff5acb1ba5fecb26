"""Plot charts in the scene: a numeric table node, plot series reading its columns, a chart holding them.

One shared helper for the Logic classes' charts (``vtkMRMLPlotChartNode`` + ``vtkMRMLPlotSeriesNode`` + the
``vtkMRMLTableNode`` they read). Plotted columns are ``vtkDoubleArray`` (Slicer's plots read numbers); Slicer's
table storage writes them with 6 significant digits in a saved scene, so the exact numbers belong in the
workflow's text tables or files, and a chart's table is what is drawn.
"""

import slicer
import vtk

from .tables import KIND_ATTRIBUTE

#: Line styles by name.
LINE_STYLES = {"solid": "LineStyleSolid", "dash": "LineStyleDash", "dot": "LineStyleDot", "none": "LineStyleNone"}


def hex_colour(text: str) -> tuple:
    """``"#D55E00"`` -> (r, g, b) in 0..1."""
    text = text.lstrip("#")
    return tuple(int(text[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


def numeric_table(scene, name: str, columns: dict, kind: str = "", text_columns: dict | None = None):
    """A new table node named ``name`` (made unique): ``text_columns`` (name -> values) as text, then ``columns``
    (name -> numbers, all of one length) as ``vtkDoubleArray``; ``kind`` in :data:`KIND_ATTRIBUTE`."""
    table = vtk.vtkTable()
    for title, values in (text_columns or {}).items():
        array = vtk.vtkStringArray()
        array.SetName(title)
        for value in values:
            array.InsertNextValue("" if value is None else str(value))
        table.AddColumn(array)
    for title, values in columns.items():
        array = vtk.vtkDoubleArray()
        array.SetName(title)
        for value in values:
            array.InsertNextValue(float(value))
        table.AddColumn(array)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    node.SetAndObserveTable(table)
    node.SetUseColumnTitleAsColumnHeader(True)
    if kind:
        node.SetAttribute(KIND_ATTRIBUTE, kind)
    return node


def plot_series(scene, table_node, name: str, x: str, y: str, colour=None, line: str = "solid", marker: bool = False,
                label: str | None = None, width: float | None = None, plot: str = "scatter"):
    """A new plot series (``name``, made unique) of columns ``x`` -> ``y`` of ``table_node``.

    ``colour``: (r, g, b) or ``"#RRGGBB"`` (default: a unique colour); ``line``: a key of :data:`LINE_STYLES`;
    ``marker``: circles at the points; ``label``: the column labelling the points (or bars); ``plot``: ``scatter``
    (points and lines) or ``bar`` (``line`` and ``marker`` do not apply)."""
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(name))
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName(x)
    series.SetYColumnName(y)
    if label is not None:
        series.SetLabelColumnName(label)
    if plot == "bar":
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
    else:
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle if marker
                              else slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        series.SetLineStyle(getattr(slicer.vtkMRMLPlotSeriesNode, LINE_STYLES[line]))
    if width is not None:
        series.SetLineWidth(width)
    if colour is None:
        series.SetUniqueColor()
    else:
        series.SetColor(*(hex_colour(colour) if isinstance(colour, str) else colour))
    return series


def plot_chart(scene, name: str, series, x_title: str, y_title: str, kind: str = "", x_range=None, y_range=None,
               title: str | None = None, unique: bool = True):
    """A new chart (``name``, made unique unless ``unique`` is False: a name the caller made unique) showing
    ``series`` with axis titles (and ranges when given); its title is ``title``, by default its name."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(name) if unique else name)
    for s in series:
        chart.AddAndObservePlotSeriesNodeID(s.GetID())
    chart.SetTitle(title or chart.GetName())
    chart.SetXAxisTitle(x_title)
    chart.SetYAxisTitle(y_title)
    if x_range is not None:
        chart.SetXAxisRangeAuto(False)
        chart.SetXAxisRange(*x_range)
    if y_range is not None:
        chart.SetYAxisRangeAuto(False)
        chart.SetYAxisRange(*y_range)
    if kind:
        chart.SetAttribute(KIND_ATTRIBUTE, kind)
    return chart


def chart_series(chart) -> list:
    """The plot series nodes of a chart, in order."""
    return [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]


def series_points(series) -> tuple[list, list]:
    """(x values, y values) a plot series draws, read from its table."""
    table = series.GetTableNode().GetTable()
    x, y = table.GetColumnByName(series.GetXColumnName()), table.GetColumnByName(series.GetYColumnName())
    n = table.GetNumberOfRows()
    return [x.GetValue(i) for i in range(n)], [y.GetValue(i) for i in range(n)]
