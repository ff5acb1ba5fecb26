"""FeatureMapLogic: voxel-wise feature maps of a volume inside a segment, as volume nodes shown over the image.

Each map is a ``vtkMRMLScalarVolumeNode`` over the mask's bounding box on the input volume's grid (spacing and
directions exact, the origin at the box's first voxel; pyradiomics' voxel-based maps cover the same box): a map's
defined values all lie in it, and a whole-grid float64 volume per map would hold the scene's memory for nothing
(every map of a 512 x 512 x 300 CT would take 630 MB). :meth:`FeatureMapLogic.save_results` still writes the
whole-grid files, and :func:`map_on_volume_grid` gives a node on the volume's whole grid. Each map has a colour
table (the scene's ``Viridis`` where desktop Slicer has it, else a ``RadiomicsLab Viridis`` table made once from
matplotlib's viridis), a window and threshold set from its values inside the mask (so
NaN voxels outside the mask stay transparent), and the provenance as a node attribute. The first map is
shown as the foreground layer over the input volume in every slice view (headless scenes have no slice
views: only the selection node is set). A ``vtkMRMLTableNode`` holds per-map statistics inside the mask.
Everything is checked and computed before the scene is touched: on an error or a cancel the scene is as
it was. :meth:`FeatureMapLogic.save_results` writes the files ``radiomicslab maps`` writes
(:func:`RadiomicsLabLib.featuremaps.write_feature_maps`).

>>> from RadiomicsLabLib.mrml import ExtractionLogic
>>> loader = ExtractionLogic()                        # the same scene: loading and saving studies
>>> volume = loader.load_volume("brain1_image.nrrd")
>>> segmentation = loader.load_segmentation("brain1_label.nrrd", volume)
>>> logic = FeatureMapLogic(loader.scene)
>>> result = logic.compute(volume, segmentation, "Label_1", features="glcm_Contrast,firstorder_Mean",
...                        radius=1, definition="pyradiomics")
>>> result.maps["glcm_Contrast"], result.table
"""

import json
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import vtk

from ..background import Job
from ..errors import RadiomicsLabError
from ..featuremaps import (check_map_outputs, check_memory, plan_feature_maps, run_plan,
                           write_feature_maps)
from ..results import format_value
from .app import default_scene
from .convert import (ijk_to_ras, new_image_data, segment_name, segment_to_sitk, set_volume_geometry,
                      volume_geometry, volume_to_sitk)
from .tables import KIND_ATTRIBUTE, PROVENANCE_ATTRIBUTE, read_table_rows

MAP_KIND = "feature-map"
SUMMARY_KIND = "feature-map-summary"
FEATURE_ATTRIBUTE = "RadiomicsLab.Feature"
VOLUME_ROLE = "RadiomicsLab.Volume"
SEGMENTATION_ROLE = "RadiomicsLab.Segmentation"
#: Colour tables tried in order; the last is made by :meth:`FeatureMapLogic.colour_node` when missing.
COLOUR_TABLES = ("Viridis", "RadiomicsLab Viridis")


@dataclass
class FeatureMapResult:
    """The volume node of each map (by feature name), the summary table node and the computed maps."""

    maps: dict = field(default_factory=dict)
    table: object = None
    values: object = None


@dataclass
class MapLanding:
    """Computed maps made ready for the scene without touching it (:attr:`Job.before_land
    <RadiomicsLabLib.background.Job>`): each map's voxels as image data over the mask's bounding box
    (:attr:`~RadiomicsLabLib.featuremaps.FeatureMaps.box`), and the per-map summary (whose minimum and maximum set the
    display), so that landing only adds nodes."""

    maps: object
    images: dict
    summary: list

    @classmethod
    def of(cls, maps) -> "MapLanding":
        size = [s.stop - s.start for s in maps.box][::-1]
        images = {}
        for name in maps:
            image_data, voxels = new_image_data(size, maps.dtype)
            maps.fill(name, voxels, box=True)
            images[name] = image_data
        return cls(maps, images, maps.summary())


class FeatureMapLogic:
    """Feature maps in the scene; the module widget's Apply and the console call :meth:`compute`."""

    def __init__(self, scene=None):
        self.scene = scene if scene is not None else default_scene()

    # Computation ----------------------------------------------------------------------------
    def compute(self, volume_node, segmentation_node=None, segment_id=None, features="glcm", radius=1,
                definition: str = "ibsi", progress=None, show: bool = True, opacity: float = 0.5,
                **settings) -> FeatureMapResult:
        """Feature maps of ``volume_node`` inside one segment (or the whole volume without a segmentation).

        ``segment_id``: segment ID or name (may be left out when the segmentation has one segment);
        ``features``, ``radius``, ``definition`` and ``settings``: as :func:`RadiomicsLabLib.featuremaps.feature_maps`;
        ``progress(done, total, message)`` returning False cancels. Returns the map volume nodes, the summary
        table node and the computed :class:`~RadiomicsLabLib.featuremaps.FeatureMaps`.
        """
        return self.compute_job(volume_node, segmentation_node, segment_id, features, radius, definition, show,
                                opacity, **settings).run(progress)

    def compute_job(self, volume_node, segmentation_node=None, segment_id=None, features="glcm", radius=1,
                    definition: str = "ibsi", show: bool = True, opacity: float = 0.5, **settings) -> Job:
        """:meth:`compute` as a :class:`~RadiomicsLabLib.background.Job`: checked and planned now (the memory estimate
        is the job's first progress message), the maps computed by ``job.run()`` or in a worker process, the nodes
        made when the job lands."""
        plan, segment = self._plan(volume_node, segmentation_node, segment_id, features, radius, definition, settings)
        inputs = {"volume": volume_node.GetName(), "volume_node_id": volume_node.GetID()}
        if segmentation_node is not None:
            inputs.update(segmentation=segmentation_node.GetName(), segmentation_node_id=segmentation_node.GetID(),
                          segment=segment_name(segmentation_node, segment))

        def land(landing):
            landing.maps.provenance["inputs"] = inputs
            return self._add_maps(landing, volume_node, segmentation_node, show, opacity)

        return Job(f"Feature maps ({plan.describe()})", run_plan, (plan,), before_land=MapLanding.of, land=land)

    def _add_maps(self, landing: "MapLanding", volume_node, segmentation_node, show, opacity) -> FeatureMapResult:
        """The computed maps as volume nodes over ``volume_node``, and their summary table: only scene changes, the
        voxels and statistics were made before (:class:`MapLanding`, off the main thread in a background run)."""
        maps = landing.maps
        result = FeatureMapResult(values=maps)
        colour = self.colour_node()
        provenance = json.dumps(maps.provenance, default=str)
        for name, summary in zip(maps, landing.summary):
            node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode",
                                                self.scene.GenerateUniqueName(f"{volume_node.GetName()} {name}"))
            set_volume_geometry(node, maps.reference, [s.start for s in maps.box][::-1])
            node.SetAndObserveImageData(landing.images[name])
            node.SetAttribute(KIND_ATTRIBUTE, MAP_KIND)
            node.SetAttribute(FEATURE_ATTRIBUTE, name)
            node.SetAttribute(PROVENANCE_ATTRIBUTE, provenance)
            node.SetNodeReferenceID(VOLUME_ROLE, volume_node.GetID())
            if segmentation_node is not None:
                node.SetNodeReferenceID(SEGMENTATION_ROLE, segmentation_node.GetID())
            self._display(node, summary["min"], summary["max"], colour)
            result.maps[name] = node
        result.table = self.summary_table(maps, f"{volume_node.GetName()} feature maps", rows=landing.summary)
        if show and result.maps:
            self.show(next(iter(result.maps.values())), volume_node, opacity)
        return result

    def estimate(self, volume_node, segmentation_node=None, segment_id=None, features="glcm", radius=1,
                 definition: str = "ibsi", **settings) -> str:
        """Check a request as :meth:`compute` would and describe it with its memory estimate (nothing is computed
        or added to the scene); the widget shows this text before Apply."""
        return self._plan(volume_node, segmentation_node, segment_id, features, radius, definition, settings)[0].describe()

    def _plan(self, volume_node, segmentation_node, segment_id, features, radius, definition, settings):
        """(the checked :class:`~RadiomicsLabLib.featuremaps.MapPlan`, segment ID or None)."""
        self._check_volume(volume_node)
        image = volume_to_sitk(volume_node)
        mask, segment = None, None
        if segmentation_node is not None:
            segment = self._segment(segmentation_node, segment_id)
            mask = segment_to_sitk(segmentation_node, segment, volume_node)
        elif segment_id is not None:
            raise RadiomicsLabError(f"Segment '{segment_id}' was given without a segmentation; select the segmentation.")
        settings = dict(settings)
        memory_limit = settings.pop("memory_limit", None)
        plan = plan_feature_maps(image, mask, features, radius, definition, memory_limit=memory_limit, **settings)
        check_memory(plan.memory, memory_limit, all_maps=True)   # every map becomes a volume node
        return plan, segment

    # Display ---------------------------------------------------------------------------------
    def colour_node(self):
        """The colour table of the maps: the scene's ``Viridis``, else a ``RadiomicsLab Viridis`` table (256 colours of
        matplotlib's viridis) made once and reused."""
        for name in COLOUR_TABLES:
            node = self.scene.GetFirstNodeByName(name)
            if node is not None and node.IsA("vtkMRMLColorNode"):
                return node
        from matplotlib import colormaps

        colours = colormaps["viridis"](np.linspace(0.0, 1.0, 256))
        node = self.scene.AddNewNodeByClass("vtkMRMLColorTableNode", COLOUR_TABLES[-1])
        node.SetTypeToUser()
        node.SetNumberOfColors(256)
        node.SetNamesInitialised(True)
        for index, (r, g, b, a) in enumerate(colours):
            node.SetColor(index, f"viridis {index}", float(r), float(g), float(b), float(a))
        node.SetAttribute("Category", "RadiomicsLab")
        return node

    def _display(self, node, low: float, high: float, colour):
        """A display node: the colour table, window/level over the defined values ``low`` to ``high`` (NaN: none
        defined) and a threshold that hides everything else. Made with automatic window/level off, so no histogram
        of the whole volume is computed (Slicer's default display node does that: ~20 ms per map)."""
        display = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
        display.AutoWindowLevelOff()
        display.SetAndObserveColorNodeID(colour.GetID())
        if np.isfinite(low):
            display.SetWindowLevelMinMax(low, high if high > low else low + 1.0)
            display.SetApplyThreshold(True)
            display.SetThreshold(low, high)
        node.SetAndObserveDisplayNodeID(display.GetID())

    def show(self, map_node, background_node=None, opacity: float = 0.5):
        """Show ``map_node`` as the foreground layer (``opacity``) over ``background_node`` in every slice view.

        Sets the selection node and each slice composite node of the scene (desktop Slicer's slice views);
        a headless scene has no slice views, so only the selection node changes.
        """
        selection = self.scene.GetFirstNodeByClass("vtkMRMLSelectionNode")
        if selection is not None:
            if background_node is not None:
                selection.SetReferenceActiveVolumeID(background_node.GetID())
            selection.SetReferenceSecondaryVolumeID(map_node.GetID())
        composites = self.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        for i in range(composites.GetNumberOfItems()):
            composite = composites.GetItemAsObject(i)
            if background_node is not None:
                composite.SetBackgroundVolumeID(background_node.GetID())
            composite.SetForegroundVolumeID(map_node.GetID())
            composite.SetForegroundOpacity(opacity)

    # Results --------------------------------------------------------------------------------
    def summary_table(self, maps, name: str = "feature maps", table_node=None, rows=None):
        """A table node with one row per map: voxels, undefined voxels, mean, std, min, percentiles, max inside the
        mask (numbers as their exact shortest decimal text), and the maps' provenance. ``rows``: ``maps.summary()``
        when already computed."""
        rows = maps.summary() if rows is None else rows
        header = list(rows[0]) if rows else ["feature"]
        if table_node is None:
            table_node = self.scene.AddNewNodeByClass("vtkMRMLTableNode", self.scene.GenerateUniqueName(name))
        table = vtk.vtkTable()
        for column in header:
            array = vtk.vtkStringArray()
            array.SetName(column)
            for row in rows:
                value = row[column]
                array.InsertNextValue(value if isinstance(value, str) else str(value) if isinstance(value, int)
                                      else format_value(value))
            table.AddColumn(array)
        was_modifying = table_node.StartModify()
        table_node.SetAndObserveTable(table)
        table_node.SetUseColumnTitleAsColumnHeader(True)
        table_node.SetAttribute(KIND_ATTRIBUTE, SUMMARY_KIND)
        table_node.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(maps.provenance, default=str))
        table_node.EndModify(was_modifying)
        return table_node

    def save_results(self, result: FeatureMapResult, folder) -> dict:
        """The files ``radiomicslab maps`` writes, from a :meth:`compute` result: each map as ``<feature>.nrrd``,
        ``summary.csv`` and ``maps.json`` in ``folder`` (:func:`~RadiomicsLabLib.featuremaps.write_feature_maps`,
        inputs described by their nodes); returns file name -> path. The folder and files are checked first."""
        maps = getattr(result, "values", None)
        if maps is None:
            raise RadiomicsLabError("These feature maps have no computed values (a reloaded scene keeps only the "
                                    "map volumes); compute the maps again to save their files.")
        check_map_outputs(folder, list(maps))
        return write_feature_maps(maps, folder)

    @staticmethod
    def summary_rows(table_node) -> list[dict]:
        """The rows of a summary table (numbers back as floats)."""
        return read_table_rows(table_node, text_columns={"feature"})

    @staticmethod
    def provenance(node) -> dict:
        text = node.GetAttribute(PROVENANCE_ATTRIBUTE)
        return json.loads(text) if text else {}

    def map_nodes(self) -> list:
        """Every feature map volume node of the scene."""
        nodes = self.scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
        found = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]
        return [n for n in found if n.GetAttribute(KIND_ATTRIBUTE) == MAP_KIND]

    # Checks ---------------------------------------------------------------------------------
    def _check_volume(self, node):
        if node is None or not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
            got = "nothing" if node is None else f"a {node.GetClassName()}"
            raise RadiomicsLabError(f"The input volume must be a vtkMRMLScalarVolumeNode; got {got}. Select or load one first.")
        if self.scene.GetNodeByID(node.GetID()) is not node:
            raise RadiomicsLabError(f"The input volume '{node.GetName()}' is not in this logic's scene.")

    def _segment(self, segmentation_node, segment_id) -> str:
        from .extraction import ExtractionLogic

        if not segmentation_node.IsA("vtkMRMLSegmentationNode"):
            raise RadiomicsLabError(f"The segmentation must be a vtkMRMLSegmentationNode; got a "
                                    f"{segmentation_node.GetClassName()}.")
        resolver = ExtractionLogic(self.scene)
        if segment_id is None:
            segments = resolver.resolve_segments(segmentation_node)
            if len(segments) > 1:
                names = ", ".join(segment_name(segmentation_node, s) for s in segments)
                raise RadiomicsLabError(f"Segmentation '{segmentation_node.GetName()}' has several segments ({names}); "
                                        "choose the one to make maps of.")
            return segments[0]
        return resolver.resolve_segments(segmentation_node, [segment_id])[0]


def map_on_volume_grid(map_node) -> sitk.Image:
    """A map node's voxels on the whole grid of the volume it was made of, as a SimpleITK image: NaN outside the map's
    box, so exactly the core's map (:class:`~RadiomicsLabLib.featuremaps.FeatureMaps`), indexed like the volume. A map
    node whose volume is no longer in the scene, or which does not lie on that volume's grid, comes as it is."""
    image = volume_to_sitk(map_node)
    volume = map_node.GetNodeReference(VOLUME_ROLE)
    data = volume.GetImageData() if volume is not None else None
    if data is None:
        return image
    grid, box = ijk_to_ras(volume), ijk_to_ras(map_node)
    start = np.linalg.solve(grid, box[:, 3])[:3]       # the box's first voxel, in the volume's (i, j, k)
    lower = np.rint(start).astype(int)
    upper = np.array(data.GetDimensions()) - lower - np.array(image.GetSize())
    if (not np.array_equal(grid[:3, :3], box[:3, :3]) or np.abs(start - lower).max() > 1e-6 or lower.min() < 0
            or upper.min() < 0):
        return image
    whole = sitk.ConstantPad(image, lower.tolist(), upper.tolist(), float("nan"))
    whole.SetOrigin(volume_geometry(volume)[1])   # the volume's own origin, exactly (the pad recomputes it)
    return whole
