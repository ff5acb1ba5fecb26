"""HabitatLogic: habitats, peritumoral rings and channel registration, from and into the MRML scene.

- Registration (:meth:`HabitatLogic.register`): a transform node (``vtkMRMLLinearTransformNode``
  for rigid and affine, ``vtkMRMLBSplineTransformNode`` for B-spline) whose *from parent* transform
  is the ITK resampling transform, so the moving volume put under it lines up with the fixed one;
  the final Mattes metric, convergence and kind are node attributes.
- Habitats (:meth:`HabitatLogic.habitats`, :meth:`HabitatLogic.cohort_habitats`): per patient a new
  ``vtkMRMLSegmentationNode`` with one segment per habitat (named by its channel profile, coloured
  by habitat id, the same in every patient), a statistics table (volume, fraction, channel means per
  habitat), a cohort table (one row per patient), optional per-habitat feature tables (the engine,
  through :func:`~RadiomicsLabLib.extraction.extract_masks`), and two plot charts (habitat fractions
  per patient, channel means per habitat). Channel volumes under a transform are resampled through
  it first. Everything is computed before the scene is touched.
- Rings (:meth:`HabitatLogic.add_ring`): a new segment holding the ring around a segment.

>>> logic = HabitatLogic()
>>> nodes = logic.habitats(segmentation, "Segment_1", {"CT": ct, "MR": mr, "PET": pet}, n_habitats=4, seed=1)
>>> nodes.segmentations[0], nodes.statistics, nodes.fractions_chart
"""

import json
from dataclasses import dataclass, field

import numpy as np
import vtk

from ..background import Job
from ..errors import RadiomicsLabError
from ..habitats import (
    MAP_METADATA,
    Patient,
    cohort_rows,
    compute_habitats,
    fraction_series,
    grid_of,
    habitat_colour,
    label_habitats,
    register_around,
    ring_region,
)
from ..registration import transform_from_matrix
from .charts import numeric_table, plot_chart, plot_series
from .convert import (import_label_map, labels_box, matrix_array, segment_ids, segment_name, segment_to_sitk,
                      segmentation_volume, sitk_to_transform_node, transform_node_to_sitk, volume_to_sitk)
from .extraction import ExtractionLogic
from .featuremaps import FEATURE_ATTRIBUTE, MAP_KIND, map_on_volume_grid
from .tables import KIND_ATTRIBUTE, PROVENANCE_ATTRIBUTE, read_table_rows, write_feature_table

HABITATS_KIND = "habitats"
HABITAT_STATISTICS_KIND = "habitat-statistics"
HABITAT_COHORT_KIND = "habitat-cohort"
METRIC_ATTRIBUTE = "RadiomicsLab.RegistrationMetric"
CONVERGED_ATTRIBUTE = "RadiomicsLab.RegistrationConverged"
REGISTRATION_KIND_ATTRIBUTE = "RadiomicsLab.RegistrationKind"
REGISTRATION_ATTRIBUTE = "RadiomicsLab.Registration"
HABITAT_TAG = "RadiomicsLab.Habitat"
STATISTICS_ROLE = "RadiomicsLab.HabitatStatistics"
_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class HabitatNodes:
    """What a habitat run put in the scene: one habitat segmentation per patient, the statistics and
    cohort tables, the two charts, the channel transforms and feature tables by (patient, channel), and
    the fitted model (:class:`~RadiomicsLabLib.habitats.HabitatModel`, to label new patients)."""

    segmentations: list
    statistics: object
    cohort: object
    fractions_chart: object
    means_chart: object
    transforms: dict = field(default_factory=dict)
    features: dict = field(default_factory=dict)
    model: object = None
    #: What the files of :meth:`HabitatLogic.save_results` are written from: the core's per-patient
    #: :class:`~RadiomicsLabLib.habitats.PatientHabitats`, their per-habitat features (patient -> channel ->
    #: ExtractionResult) and the provenance's ``inputs`` (the scene's nodes).
    results: list = field(default_factory=list)
    extracted: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)


class HabitatLogic(ExtractionLogic):
    """Habitats, rings and registration in the scene; every GUI button and console call goes through here.

    An :class:`~RadiomicsLabLib.mrml.ExtractionLogic` too (loading volumes and segmentations, scenes,
    features of any segmentation, e.g. of the rings).
    """

    # Registration ----------------------------------------------------------------------------
    def register(self, fixed_volume, moving_volume, kind: str = "rigid", segmentation_node=None, segment_id=None,
                 margin_mm: float = 20.0, seed: int = 0, apply: bool = True, progress=None, **options):
        """Register ``moving_volume`` onto ``fixed_volume`` (Mattes mutual information, multi-resolution).

        With a segment, the metric looks at the segment grown by ``margin_mm``. Returns a new transform
        node (attributes: final metric, converged, kind, and the whole summary as JSON); with ``apply``,
        the moving volume is put under it (displayed aligned; its voxels are not changed).
        ``options`` go to :func:`~RadiomicsLabLib.registration.register`.
        """
        return self.register_job(fixed_volume, moving_volume, kind, segmentation_node, segment_id, margin_mm, seed,
                                 apply, **options).run(progress)

    def register_job(self, fixed_volume, moving_volume, kind: str = "rigid", segmentation_node=None, segment_id=None,
                     margin_mm: float = 20.0, seed: int = 0, apply: bool = True, **options) -> Job:
        """:meth:`register` as a :class:`~RadiomicsLabLib.background.Job`: the volumes (and segment) are read now, the
        registration (:func:`~RadiomicsLabLib.habitats.register_around`) runs in ``job.run()`` or a worker process, the
        transform node is made (and the moving volume put under it) when the job lands."""
        self._check_node(fixed_volume, "vtkMRMLScalarVolumeNode", "fixed volume")
        self._check_node(moving_volume, "vtkMRMLScalarVolumeNode", "moving volume")
        fixed, moving = volume_to_sitk(fixed_volume), volume_to_sitk(moving_volume)
        mask = None
        if segmentation_node is not None:
            mask = segment_to_sitk(segmentation_node, self._segment_id(segmentation_node, segment_id), fixed_volume)
        name = f"{moving_volume.GetName()} to {fixed_volume.GetName()} ({kind})"

        def land(result):
            node = self._transform_node(result, name)
            if apply:
                moving_volume.SetAndObserveTransformNodeID(node.GetID())
            return node

        return Job(f"{kind.capitalize()} registration of {moving_volume.GetName()}", register_around,
                   (fixed, moving, kind, mask, margin_mm, seed), dict(options), land=land)

    def _transform_node(self, result, name: str):
        node = sitk_to_transform_node(result.transform, self.scene.GenerateUniqueName(name), self.scene)
        node.SetAttribute(METRIC_ATTRIBUTE, repr(result.metric))
        node.SetAttribute(CONVERGED_ATTRIBUTE, "true" if result.converged else "false")
        node.SetAttribute(REGISTRATION_KIND_ATTRIBUTE, result.kind)
        node.SetAttribute(REGISTRATION_ATTRIBUTE, json.dumps({
            "kind": result.kind, "metric": result.metric, "converged": result.converged,
            "stop_condition": result.stop_condition, "iterations": result.iterations, "settings": result.settings}, default=str))
        return node

    @staticmethod
    def registration_summary(transform_node) -> dict:
        """The registration summary stored on a transform node made by :meth:`register` (empty if none)."""
        text = transform_node.GetAttribute(REGISTRATION_ATTRIBUTE) if transform_node else None
        return json.loads(text) if text else {}

    # Habitats --------------------------------------------------------------------------------
    def habitats(self, segmentation_node, segment_id, channels, n_habitats=4, method: str = "kmeans",
                 reference_volume=None, name: str | None = None, features=None, progress=None, **options) -> HabitatNodes:
        """Habitats of one segment from channel volumes (a dict name -> volume node, or a list of volume nodes
        named by their node names). ``options``: any of :func:`~RadiomicsLabLib.habitats.fit_habitats`
        (``registration`` defaults to ``"resample"``: volumes in one scene share its world space), e.g.
        ``feature_maps=["glcm_Contrast"], map_radius=1`` adds voxel-wise feature maps of the first channel inside
        the segment as channels (``"PET:firstorder_Mean"`` of another channel); feature-map volume nodes made by
        :class:`~RadiomicsLabLib.mrml.featuremaps.FeatureMapLogic` are channels like any volume (never registered:
        a map of the reference volume is taken as it is); ``features``: settings for per-habitat features of each image channel (a preset,
        parameter file or dict)."""
        return self.habitats_job(segmentation_node, segment_id, channels, n_habitats, method, reference_volume, name,
                                 features, **options).run(progress)

    def habitats_job(self, segmentation_node, segment_id, channels, n_habitats=4, method: str = "kmeans",
                     reference_volume=None, name: str | None = None, features=None, **options) -> Job:
        """:meth:`habitats` as a :class:`~RadiomicsLabLib.background.Job` (see :meth:`cohort_habitats_job`)."""
        patient = {"name": name or segmentation_node.GetName() if segmentation_node else "patient",
                   "segmentation": segmentation_node, "segment": segment_id, "channels": channels,
                   "reference": reference_volume}
        return self.cohort_habitats_job([patient], n_habitats, method, features=features, **options)

    def cohort_habitats(self, patients, n_habitats=4, method: str = "kmeans", features=None, progress=None,
                        **options) -> HabitatNodes:
        """Population-level habitats: one model fitted on the pooled voxels of every patient and applied to each.

        ``patients``: dicts with ``segmentation`` (node), ``segment`` (ID or name; default the only/first
        segment), ``channels`` (dict name -> volume node, same names for all), optional ``name`` and
        ``reference`` (the volume whose grid the habitats are on; default the segmentation's reference
        volume, else the first channel).
        """
        return self.cohort_habitats_job(patients, n_habitats, method, features, **options).run(progress)

    def cohort_habitats_job(self, patients, n_habitats=4, method: str = "kmeans", features=None, **options) -> Job:
        """:meth:`cohort_habitats` as a :class:`~RadiomicsLabLib.background.Job`: each patient's segment and channel
        volumes are read from the scene now; the fit, the labels and the per-habitat features
        (:func:`~RadiomicsLabLib.habitats.compute_habitats`, channels under a transform resampled through it first) are
        computed by ``job.run()`` here or in a worker process; the nodes are made when the job lands."""
        options.setdefault("registration", "resample")
        settings = None
        if features is not None:
            from ..settings import load_settings

            settings = load_settings(features)
        cases, moves = [], {}
        for i, spec in enumerate(patients):
            patient, reference, patient_moves = self._patient_inputs(spec, i)
            cases.append((patient, reference))
            moves.update({(i, channel): move for channel, move in patient_moves.items()})
        inputs = {"nodes": {p.name: ref.GetID() for p, ref in cases}}

        def land(computed):
            model, results, extracted, provenance = computed
            return self._write_nodes(model, results, cases, extracted, provenance)

        return Job(f"Habitats of {len(cases)} patient(s)", compute_habitats,
                   ([patient for patient, _ in cases], n_habitats, method),
                   dict(settings=settings, moves=moves, inputs=inputs, **options), land=land)

    def apply_habitats(self, model, segmentation_node, segment_id, channels, reference_volume=None,
                       name: str | None = None, features=None) -> HabitatNodes:
        """Label a new patient with a fitted model (``HabitatNodes.model`` of an earlier run)."""
        return self.apply_habitats_job(model, segmentation_node, segment_id, channels, reference_volume, name,
                                       features).run()

    def apply_habitats_job(self, model, segmentation_node, segment_id, channels, reference_volume=None,
                           name: str | None = None, features=None) -> Job:
        """:meth:`apply_habitats` as a :class:`~RadiomicsLabLib.background.Job`: the patient is read now, labelled
        (:func:`~RadiomicsLabLib.habitats.label_habitats`) by ``job.run()`` or in a worker process, and its nodes made
        when the job lands."""
        spec = {"name": name or segmentation_node.GetName(), "segmentation": segmentation_node, "segment": segment_id,
                "channels": channels, "reference": reference_volume}
        patient, reference, moves = self._patient_inputs(spec, 0)
        settings = None
        if features is not None:
            from ..settings import load_settings

            settings = load_settings(features)
        inputs = {"nodes": {patient.name: reference.GetID()}}

        def land(computed):
            result, extracted, provenance = computed
            return self._write_nodes(model, [result], [(patient, reference)], extracted, provenance)

        return Job(f"Habitats of {patient.name}", label_habitats, (model, patient),
                   dict(settings=settings, moves={(0, channel): move for channel, move in moves.items()},
                        inputs=inputs), land=land)

    def _patient_inputs(self, spec: dict, index: int):
        """(core Patient, reference volume node, channel -> (grid, transform)) of one patient description: the
        channels under a transform are still to be resampled through it onto the grid
        (:func:`~RadiomicsLabLib.habitats.place_channels`)."""
        segmentation = spec.get("segmentation")
        self._check_node(segmentation, "vtkMRMLSegmentationNode", f"segmentation of patient {index + 1}")
        channels = spec.get("channels")
        if isinstance(channels, (list, tuple)):
            channels = {volume.GetName() if volume else "None": volume for volume in channels}
        if not channels:
            raise RadiomicsLabError(f"No channel volumes for '{segmentation.GetName()}'; choose at least one volume.")
        for channel, volume in channels.items():
            self._check_node(volume, "vtkMRMLScalarVolumeNode", f"channel '{channel}'")
        reference = spec.get("reference") or segmentation_volume(segmentation) or next(iter(channels.values()))
        self._check_node(reference, "vtkMRMLScalarVolumeNode", "reference volume")
        mask = segment_to_sitk(segmentation, self._segment_id(segmentation, spec.get("segment")), reference)
        images, moves, grid = {}, {}, None
        for channel, volume in channels.items():
            images[channel], transform = self._channel_input(volume)
            if transform is not None:
                grid = grid or grid_of(volume_to_sitk(reference))
                moves[channel] = (grid, transform)
        return Patient(spec.get("name") or segmentation.GetName(), mask, images), reference, moves

    @staticmethod
    def _channel_input(volume):
        """(a channel volume as a SimpleITK image, the transform to resample it through onto the reference grid, or None
        when it is under no transform). A feature-map node (:class:`~RadiomicsLabLib.mrml.featuremaps.FeatureMapLogic`) is
        marked so no registration moves it, and taken on the whole grid of the volume it was made of (its node covers
        the mask's box only: :func:`~RadiomicsLabLib.mrml.featuremaps.map_on_volume_grid`)."""
        if volume.GetAttribute(KIND_ATTRIBUTE) == MAP_KIND:
            image = map_on_volume_grid(volume)
            image.SetMetaData(MAP_METADATA, volume.GetAttribute(FEATURE_ATTRIBUTE) or "")
        else:
            image = volume_to_sitk(volume)
        parent = volume.GetParentTransformNode()
        if parent is None:
            return image, None
        if parent.IsTransformToWorldLinear():
            matrix = vtk.vtkMatrix4x4()
            parent.GetMatrixTransformToWorld(matrix)
            to_world = matrix_array(matrix)
            return image, transform_from_matrix(_LPS_RAS @ np.linalg.inv(to_world) @ _LPS_RAS)
        if parent.GetParentTransformNode() is None:
            return image, transform_node_to_sitk(parent)
        raise RadiomicsLabError(f"Volume '{volume.GetName()}' is under nested non-linear transforms; harden them first "
                                "(Data module: right-click the volume > Harden transform).")

    def _write_nodes(self, model, results, cases, extracted, provenance) -> HabitatNodes:
        """Every output node, made only now that everything is computed."""
        nodes = HabitatNodes([], None, None, None, None, model=model, results=list(results), extracted=extracted,
                             inputs=provenance.get("inputs", {}))
        for (patient, reference), result in zip(cases, results):
            segmentation = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                        self.scene.GenerateUniqueName(f"{patient.name} habitats"))
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
            segmentation.CreateDefaultDisplayNodes()
            present = [row for row in result.rows if row["voxels"]]
            self.import_segments(segmentation, result.label_map, {row["habitat"]: row["name"] for row in present})
            segmentation.SetAttribute(KIND_ATTRIBUTE, HABITATS_KIND)
            segmentation.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(provenance, default=str))
            segmentation.SetNodeReferenceID("RadiomicsLab.Volume", reference.GetID())
            nodes.segmentations.append(segmentation)
            for channel, registration in result.registrations.items():
                if registration is not None:
                    nodes.transforms[(patient.name, channel)] = self._transform_node(
                        registration, f"{patient.name} {channel} to {model.channels[0]} ({registration.kind})")
            for channel, extraction in extracted.get(patient.name, {}).items():
                table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", self.scene.GenerateUniqueName(
                    f"{patient.name} habitat features {channel}"))
                write_feature_table(table, extraction.values, extraction.provenance)
                table.SetNodeReferenceID("RadiomicsLab.Segmentation", segmentation.GetID())
                nodes.features[(patient.name, channel)] = table
        rows = [row for result in results for row in result.rows]
        nodes.statistics = self.rows_table("habitat statistics", rows, HABITAT_STATISTICS_KIND, provenance)
        nodes.cohort = self.rows_table("habitat cohort", cohort_rows(results, extracted), HABITAT_COHORT_KIND, provenance)
        for segmentation in nodes.segmentations:
            segmentation.SetNodeReferenceID(STATISTICS_ROLE, nodes.statistics.GetID())
        nodes.fractions_chart = self._fractions_chart(model, results)
        nodes.means_chart = self._means_chart(model)
        return nodes

    def save_results(self, nodes: HabitatNodes, folder) -> dict:
        """Write the files ``radiomicslab habitats`` writes for the same run into ``folder``
        (:func:`~RadiomicsLabLib.habitats_outputs.write_habitat_outputs`: the label maps, tables, plots and provenance,
        byte for byte, but for the provenance's ``inputs``, here the scene's nodes instead of file paths).
        Returns name relative to the folder -> path."""
        from ..habitats_outputs import check_outputs_writable, map_paths, write_habitat_outputs

        if nodes.model is None or not nodes.results:
            raise RadiomicsLabError("These habitat results hold no run (e.g. they were loaded from a saved scene); "
                                    "find the habitats again, then save their results.")
        paths = map_paths(folder, [r.patient for r in nodes.results])
        check_outputs_writable(folder, paths)
        return write_habitat_outputs(folder, nodes.model, nodes.results, nodes.extracted or None, nodes.inputs, paths)

    def import_segments(self, segmentation_node, label_map, names: dict, colours: dict | None = None) -> list:
        """Add one segment per (non-zero) label value in ``names`` (value -> segment name) from a label map; returns the new IDs.

        Each segment gets its name, a colour (``colours`` or the habitat colour of its value) and the tag
        ``RadiomicsLab.Habitat`` = value. Values with no voxels are skipped.
        """
        import SimpleITK as sitk

        added = []
        box = labels_box(label_map)
        present = set(np.unique(sitk.GetArrayViewFromImage(label_map)[box]).tolist()) if box else set()
        for value, segment_label in names.items():
            if value == 0 or value not in present:
                continue
            before = set(segment_ids(segmentation_node))
            if not import_label_map(label_map, segmentation_node, value, box):
                raise RadiomicsLabError(f"Segment '{segment_label}' could not be imported into '{segmentation_node.GetName()}'.")
            new = [s for s in segment_ids(segmentation_node) if s not in before]
            segment = segmentation_node.GetSegmentation().GetSegment(new[0])
            segment.SetName(segment_label)
            segment.SetColor(*(colours or {}).get(value, habitat_colour(int(value))))
            segment.SetTag(HABITAT_TAG, str(value))
            added.append(new[0])
        return added

    # Rings -----------------------------------------------------------------------------------
    def add_ring(self, segmentation_node, segment_id, start_mm: float, stop_mm: float, reference_volume=None,
                 clip=None, name: str | None = None, colour=(0.85, 0.35, 0.75)) -> str:
        """Add the ring from ``start_mm`` to ``stop_mm`` around a segment as a new segment of the same
        segmentation (see :mod:`RadiomicsLabLib.regions`); ``clip``: (segmentation node, segment) of a body or
        organ mask the ring is kept inside. Returns the new segment's ID."""
        return self.add_ring_job(segmentation_node, segment_id, start_mm, stop_mm, reference_volume, clip, name,
                                 colour).run()

    def add_ring_job(self, segmentation_node, segment_id, start_mm: float, stop_mm: float, reference_volume=None,
                     clip=None, name: str | None = None, colour=(0.85, 0.35, 0.75)) -> Job:
        """:meth:`add_ring` as a :class:`~RadiomicsLabLib.background.Job`: the segment (and clip) are read now, the ring
        (:func:`~RadiomicsLabLib.habitats.ring_region`) is computed by ``job.run()`` or in a worker process, the segment
        is added when the job lands."""
        self._check_node(segmentation_node, "vtkMRMLSegmentationNode", "segmentation")
        source = self._segment_id(segmentation_node, segment_id)
        reference = reference_volume or segmentation_volume(segmentation_node)
        if reference is None:
            raise RadiomicsLabError(f"Segmentation '{segmentation_node.GetName()}' has no reference volume; give reference_volume.")
        mask = segment_to_sitk(segmentation_node, source, reference)
        clip_mask = None
        if clip is not None:
            clip_segmentation, clip_segment = clip
            self._check_node(clip_segmentation, "vtkMRMLSegmentationNode", "clip segmentation")
            clip_mask = segment_to_sitk(clip_segmentation, self._segment_id(clip_segmentation, clip_segment), reference)
        label = name or f"{segment_name(segmentation_node, source)} ring {start_mm:+g} to {stop_mm:+g} mm"

        def land(region):
            return self.import_segments(segmentation_node, region, {1: label}, {1: colour})[0]

        return Job(f"Ring around {segment_name(segmentation_node, source)}", ring_region,
                   (mask, start_mm, stop_mm, clip_mask), land=land)

    # Tables and charts -----------------------------------------------------------------------
    def rows_table(self, name: str, rows: list, kind: str, provenance: dict | None = None):
        """A new table node from dict rows: numeric columns as doubles (so plots can use them), text as strings."""
        columns = list(dict.fromkeys(c for row in rows for c in row))
        table = vtk.vtkTable()
        for column in columns:
            values = [row.get(column) for row in rows]
            numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)
            array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
            array.SetName(column)
            for value in values:
                array.InsertNextValue(float(value) if numeric else ("" if value is None else str(value)))
            table.AddColumn(array)
        node = self.scene.AddNewNodeByClass("vtkMRMLTableNode", self.scene.GenerateUniqueName(name))
        node.SetAndObserveTable(table)
        node.SetUseColumnTitleAsColumnHeader(True)
        node.SetAttribute(KIND_ATTRIBUTE, kind)
        if provenance is not None:
            node.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(provenance, default=str))
        return node

    def _fractions_chart(self, model, results):
        """Bar chart of each habitat's fraction per patient: the series habitat_fractions.png draws."""
        series = fraction_series(results, model.names)
        table = numeric_table(self.scene, "habitat fractions", {"index": series["index"], **series["fractions"]},
                              "habitat-fractions-plot", {"patient": series["patient"]})
        bars = [plot_series(self.scene, table, label, "index", column, habitat_colour(habitat), plot="bar")
                for habitat, (column, label) in enumerate(zip(series["fractions"], model.names), start=1)]
        title = "Habitat fractions per patient"
        return plot_chart(self.scene, title, bars, "patient", "fraction of the ROI", title=title)

    def _means_chart(self, model):
        """Bar chart of each habitat's standardised centre per channel: the series channel_means.png draws."""
        centres = model.clustering.standardised_centres()
        table = numeric_table(self.scene, "habitat channel means",
                              {"habitat": range(1, model.n_habitats + 1),
                               **{channel: centres[:, j] for j, channel in enumerate(model.channels)}},
                              "habitat-means-plot", {"name": model.names})
        bars = [plot_series(self.scene, table, channel, "habitat", channel, plot="bar") for channel in model.channels]
        title = "Channel means per habitat"
        return plot_chart(self.scene, title, bars, "habitat", "centre (SD from the mean)", title=title)

    # Helpers ---------------------------------------------------------------------------------
    @staticmethod
    def table_rows(table_node) -> list:
        """The rows of a table made by :meth:`rows_table`, as dicts (numbers as floats)."""
        return read_table_rows(table_node)

    @staticmethod
    def habitat_segments(segmentation_node) -> dict:
        """Habitat id -> (segment ID, name) of a habitat segmentation."""
        found = {}
        for segment_id in segment_ids(segmentation_node):
            segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
            value = vtk.mutable("")
            if segment.GetTag(HABITAT_TAG, value):
                found[int(str(value))] = (segment_id, segment.GetName())
        return found

    def _segment_id(self, segmentation_node, segment) -> str:
        """The ID of a segment given by ID or name; the first segment when None."""
        return self.resolve_segments(segmentation_node, None if segment is None else [segment])[0]

