"""DeltaLogic: a patient's timepoints as Slicer Sequences, and delta-radiomics from and into the scene.

A longitudinal study is a ``vtkMRMLSequenceBrowserNode`` (named after the patient) browsing

- a ``vtkMRMLSequenceNode`` of scalar volumes, one per timepoint (the master sequence),
- a ``vtkMRMLSequenceNode`` of segmentations (one per timepoint that has one; segment names are
  the lesions, matched across timepoints by name),
- after :meth:`DeltaLogic.compute` with difference maps, a sequence of follow-up-minus-baseline
  volumes on the baseline grid.

The index of every sequence is the timepoint's date (``YYYY-MM-DD`` text, index name ``date``);
each data node carries the attributes ``RadiomicsLab.Date`` and ``RadiomicsLab.TimepointLabel``.
Registrations are transform nodes (``vtkMRMLLinearTransformNode`` for rigid and affine,
``vtkMRMLBSplineTransformNode`` for B-spline) whose *from parent* transform is the ITK resampling
transform: put a follow-up volume under it and it lines up with the baseline. Results are a
``vtkMRMLTableNode`` (long format: one row per lesion, feature and timepoint with its deltas, as
exact text) and two ``vtkMRMLPlotChartNode``: trajectories (relative change against days) and
a waterfall of relative change across lesions. Everything is checked and computed before the
scene is touched, and everything survives ``save_scene`` / ``load_scene`` (``.mrb``).

>>> logic = DeltaLogic()
>>> study = logic.load_study([("2021-01-04", "ct0.nii.gz", "gtv0.nii.gz"), ("2021-02-15", "ct1.nii.gz", None)],
...                          name="STS_002", labels=["baseline", "week6"])
>>> nodes = logic.compute(study, settings="my_params.yaml", register="rigid", propagate=True)
>>> nodes.table, nodes.trajectories, nodes.waterfall
"""

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer

from ..background import Job
from ..delta import (
    DELTA_COLUMNS,
    HABITAT_COLUMNS,
    Timepoint,
    check_dates,
    check_inputs,
    check_plot_features,
    check_timepoints,
    default_labels,
    default_plot_features,
    delta_row_from_texts,
    difference_map,
    habitat_fractions,
    parse_date,
    run_studies,
    timepoint_from_files,
    trajectories,
    waterfall,
    write_outputs,
    zero_map,
)
from ..delta_outputs import delta_provenance
from ..errors import RadiomicsLabError
from ..results import format_value
from .app import default_scene
from .charts import numeric_table, plot_chart, plot_series
from .convert import (label_map_to_segmentation_node, segment_ids, segment_name, segment_to_sitk, sitk_to_transform_node,
                      sitk_to_volume_node, transform_node_to_sitk, volume_to_sitk)
from .scenefiles import load_scene, save_scene
from .tables import KIND_ATTRIBUTE, PROVENANCE_ATTRIBUTE, table_provenance, write_text_table

STUDY_KIND = "longitudinal-study"
DELTA_KIND = "delta"
HABITAT_KIND = "habitat-fractions"
DATE_ATTRIBUTE = "RadiomicsLab.Date"
LABEL_ATTRIBUTE = "RadiomicsLab.TimepointLabel"
PATIENT_ATTRIBUTE = "RadiomicsLab.Patient"
PROPAGATED_ATTRIBUTE = "RadiomicsLab.Propagated"
REGISTRATION_ATTRIBUTE = "RadiomicsLab.Registration"
TIMEPOINT_ATTRIBUTE = "RadiomicsLab.Timepoint"
VOLUMES_ROLE = "RadiomicsLab.Volumes"
SEGMENTATIONS_ROLE = "RadiomicsLab.Segmentations"
DIFFERENCES_ROLE = "RadiomicsLab.DifferenceMaps"
TRANSFORM_ROLE = "RadiomicsLab.Transform"
STUDY_ROLE = "RadiomicsLab.Study"
INDEX_NAME = "date"

def ensure_sequences(scene):
    """Refuse a scene without Slicer's Sequences module (desktop Slicer and ``mrml.app.new_headless_app`` have it)."""
    if not scene.IsNodeClassRegistered("vtkMRMLSequenceBrowserNode"):
        raise RadiomicsLabError("This scene has no Sequences module; create it with RadiomicsLabLib.mrml.app.new_headless_app() "
                                "or use desktop Slicer.")


@dataclass
class DeltaNodes:
    """What :meth:`DeltaLogic.compute` added to the scene, and the core results behind it."""

    table: object
    trajectories: object
    waterfall: object
    transforms: dict = field(default_factory=dict)          # (patient, timepoint label) -> transform node
    propagated: dict = field(default_factory=dict)          # (patient, timepoint label) -> segmentation data node
    difference_maps: dict = field(default_factory=dict)     # patient -> sequence node
    results: list = field(default_factory=list)             # RadiomicsLabLib.delta.DeltaResult per patient
    plot_features: list | None = None                       # what the plots show (None: the defaults)
    waterfall_feature: str | None = None

    @property
    def warnings(self) -> list[str]:
        return [w for r in self.results for w in r.warnings]


class DeltaLogic:
    """Longitudinal studies in the scene; every GUI button and console call of the delta workflow goes through here."""

    def __init__(self, scene=None):
        self.scene = scene if scene is not None else default_scene()
        ensure_sequences(self.scene)

    def save_scene(self, path):
        """Save the scene, sequences included, as ``.mrb`` (atomically)."""
        return save_scene(self.scene, path)

    def load_scene(self, path):
        """Replace the scene's content with a saved ``.mrb`` study."""
        return load_scene(self.scene, path)

    # Studies --------------------------------------------------------------------------------
    def create_study(self, timepoints, name: str = "Patient"):
        """A browser node with the volume and segmentation sequences of ``timepoints`` (checked first).

        Follow-ups may come without a mask (to be propagated by :meth:`compute`); lesions of a mask
        become segments ``Label_N``.
        """
        timepoints = check_timepoints(timepoints, propagate=True)
        volumes = self._new_sequence(f"{name} volumes")
        segmentations = self._new_sequence(f"{name} segmentations")
        for tp in timepoints:
            volume = sitk_to_volume_node(tp.image, f"{name} {tp.label}", self.scene, display=False)
            self._add_item(volumes, volume, tp.label, tp.iso_date)
            if tp.mask is not None:
                segmentation = label_map_to_segmentation_node(tp.mask, f"{name} {tp.label} segmentation", self.scene, volume)
                self._add_item(segmentations, segmentation, tp.label, tp.iso_date)
            self.scene.RemoveNode(volume)
        return self._new_browser(name, volumes, segmentations)

    def load_study(self, specs, name: str = "Patient", labels=None):
        """:meth:`create_study` from files: ``specs`` = [(date or "", image path, mask path or None), ...].

        An empty date is read from the image's DICOM StudyDate / AcquisitionDate; ``labels``
        default to baseline, T1, T2, ...
        """
        specs = list(specs)
        labels = list(labels) if labels else default_labels(len(specs))
        if len(labels) != len(specs):
            raise RadiomicsLabError(f"Give one label per timepoint: {len(labels)} labels for {len(specs)} timepoints.")
        timepoints = [timepoint_from_files(date, image, mask, label) for (date, image, mask), label in zip(specs, labels)]
        return self.create_study(timepoints, name)

    def study_from_nodes(self, volume_nodes, segmentation_nodes=None, dates=None, labels=None, name: str = "Patient"):
        """A study from volume nodes (one per timepoint, baseline first) and their segmentation nodes (None where there is none).

        The nodes are copied into the sequences (segment names kept: they are the lesions).
        ``dates`` default to each volume's DICOM StudyDate / AcquisitionDate (:func:`volume_date`);
        ``labels`` to baseline, T1, ...
        """
        volume_nodes = list(volume_nodes)
        segmentation_nodes = list(segmentation_nodes) if segmentation_nodes is not None else [None] * len(volume_nodes)
        labels = list(labels) if labels else default_labels(len(volume_nodes))
        dates = [parse_date(d) for d in dates] if dates is not None else [volume_date(v) for v in volume_nodes]
        if not len(volume_nodes) == len(segmentation_nodes) == len(labels) == len(dates):
            raise RadiomicsLabError(f"Give one segmentation (or None), date and label per volume: {len(volume_nodes)} volumes, "
                                    f"{len(segmentation_nodes)} segmentations, {len(dates)} dates, {len(labels)} labels.")
        for role, nodes, class_name in (("volume", volume_nodes, "vtkMRMLScalarVolumeNode"),
                                        ("segmentation", segmentation_nodes, "vtkMRMLSegmentationNode")):
            for node in nodes:
                if node is not None and not node.IsA(class_name):
                    raise RadiomicsLabError(f"'{node.GetName()}' is a {node.GetClassName()}; the {role}s must be {class_name}s.")
        if volume_nodes and volume_nodes[0] is None:
            raise RadiomicsLabError("No baseline volume given; select one volume per timepoint.")
        check_dates([Timepoint(label, date, None, None, {"image": v.GetName()}) for label, date, v in zip(labels, dates, volume_nodes)])
        volumes = self._new_sequence(f"{name} volumes")
        segmentations = self._new_sequence(f"{name} segmentations")
        for volume, segmentation, label, date in zip(volume_nodes, segmentation_nodes, labels, dates):
            self._add_item(volumes, volume, label, date.isoformat())
            if segmentation is not None:
                self._add_item(segmentations, segmentation, label, date.isoformat())
        return self._new_browser(name, volumes, segmentations)

    @staticmethod
    def segmentations_for(volume_nodes, segmentation_nodes) -> list:
        """Each volume's segmentation (None where there is none), for :meth:`study_from_nodes`.

        A segmentation belongs to the volume it was made on (its reference image geometry, as the
        segment editor sets it); one segmentation without that reference is the baseline's.
        """
        volume_nodes, segmentation_nodes = list(volume_nodes), [s for s in segmentation_nodes or [] if s is not None]
        paired = [None] * len(volume_nodes)
        ids = [v.GetID() for v in volume_nodes]
        for segmentation in segmentation_nodes:
            reference = segmentation.GetNodeReference("referenceImageGeometryRef")
            if reference is None and len(segmentation_nodes) == 1 and volume_nodes:
                index = 0
            elif reference is not None and reference.GetID() in ids:
                index = ids.index(reference.GetID())
            else:
                raise RadiomicsLabError(
                    f"Segmentation '{segmentation.GetName()}' was not made on any of the timepoint images "
                    f"({', '.join(v.GetName() for v in volume_nodes)}); select its image too, or uncheck it.")
            if paired[index] is not None:
                raise RadiomicsLabError(f"Image '{volume_nodes[index].GetName()}' has two segmentations "
                                        f"('{paired[index].GetName()}', '{segmentation.GetName()}'); check only one.")
            paired[index] = segmentation
        return paired

    def open_study(self, volume_sequence, segmentation_sequence=None, dates=None, labels=None, name: str | None = None):
        """A study from sequences already in the scene (e.g. loaded or recorded in Slicer).

        Dates default to the sequence's index values when they are dates, labels to the data nodes'
        ``RadiomicsLab.TimepointLabel`` or baseline, T1, ...; both are written onto the data nodes.
        """
        count = volume_sequence.GetNumberOfDataNodes()
        indices = [volume_sequence.GetNthIndexValue(i) for i in range(count)]
        if dates is None:
            try:
                dates = [parse_date(volume_sequence.GetNthDataNode(i).GetAttribute(DATE_ATTRIBUTE) or indices[i],
                                    f"date of item {i + 1} of '{volume_sequence.GetName()}'") for i in range(count)]
            except RadiomicsLabError as error:
                raise RadiomicsLabError(f"{error} Give the timepoints' dates (dates=[...]).") from None
        dates = [parse_date(d) for d in dates]
        labels = list(labels) if labels else [volume_sequence.GetNthDataNode(i).GetAttribute(LABEL_ATTRIBUTE) or default
                                              for i, default in zip(range(count), default_labels(count))]
        if len(dates) != count or len(labels) != count:
            raise RadiomicsLabError(f"'{volume_sequence.GetName()}' has {count} items; give as many dates and labels.")
        check_dates([Timepoint(label, date, None) for label, date in zip(labels, dates)])
        for i, (label, date) in enumerate(zip(labels, dates)):
            nodes = [volume_sequence.GetNthDataNode(i)]
            if segmentation_sequence is not None:
                nodes.append(segmentation_sequence.GetDataNodeAtValue(indices[i], True))
            for node in filter(None, nodes):
                node.SetAttribute(LABEL_ATTRIBUTE, label)
                node.SetAttribute(DATE_ATTRIBUTE, date.isoformat())
        return self._new_browser(name or volume_sequence.GetName(), volume_sequence, segmentation_sequence)

    def _new_browser(self, name: str, volumes, segmentations):
        """The study's browser: volumes as master sequence, segmentations synchronised, both referenced by role."""
        browser = self.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", self.scene.GenerateUniqueName(name))
        browser.SetAttribute(KIND_ATTRIBUTE, STUDY_KIND)
        browser.SetAttribute(PATIENT_ATTRIBUTE, name)
        browser.SetAndObserveMasterSequenceNodeID(volumes.GetID())
        browser.SetNodeReferenceID(VOLUMES_ROLE, volumes.GetID())
        if segmentations is not None:
            browser.AddSynchronizedSequenceNodeID(segmentations.GetID())
            browser.SetNodeReferenceID(SEGMENTATIONS_ROLE, segmentations.GetID())
        browser.SetSelectedItemNumber(0)
        return browser

    def studies(self) -> list:
        """The longitudinal study browser nodes of the scene."""
        browsers = self.scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
        found = [browsers.GetItemAsObject(i) for i in range(browsers.GetNumberOfItems())]
        return [b for b in found if b.GetAttribute(KIND_ATTRIBUTE) == STUDY_KIND]

    def timepoints(self, study) -> tuple[list[Timepoint], dict[str, int]]:
        """(timepoints read from the study's sequences, lesion name -> label value).

        Lesions are the baseline segmentation's segments (by name, numbered in its order); each
        timepoint's mask is the label map of those segments on its own volume's grid.
        """
        self._check_study(study)
        volumes, segmentations = study.GetNodeReference(VOLUMES_ROLE), study.GetNodeReference(SEGMENTATIONS_ROLE)
        lesions, timepoints = {}, []
        for i in range(volumes.GetNumberOfDataNodes()):
            index, volume = volumes.GetNthIndexValue(i), volumes.GetNthDataNode(i)
            date = parse_date(volume.GetAttribute(DATE_ATTRIBUTE) or index, f"date of '{volume.GetName()}'")
            label = volume.GetAttribute(LABEL_ATTRIBUTE) or default_labels(i + 1)[-1]
            segmentation = segmentations.GetDataNodeAtValue(index, True) if segmentations is not None else None
            mask = None
            if segmentation is not None and segment_ids(segmentation):
                if not lesions:
                    lesions = {segment_name(segmentation, s): n for n, s in enumerate(segment_ids(segmentation), start=1)}
                mask = self._label_map(segmentation, volume, lesions)
            timepoints.append(Timepoint(label, date, volume_to_sitk(volume), mask,
                                        {"volume": volume.GetName(), "segmentation": segmentation.GetName() if segmentation else ""}))
        return timepoints, lesions

    # Delta ----------------------------------------------------------------------------------
    def compute(self, studies, settings=None, lesions=None, register: str | None = None, propagate: bool = False,
                reference: str = "baseline", icc_table=None, icc_threshold: float = 0.75, icc_column: str = "ci_low",
                difference_maps: bool = False, registration_options=None, registration_margin_mm: float = 20.0,
                plot_features=None, waterfall_feature=None, name: str | None = None, progress=None) -> DeltaNodes:
        """Delta features of one study (a browser node) or a cohort (a list of them) into the scene.

        Options are those of :func:`RadiomicsLabLib.delta.run_delta`; ``lesions``: segment names
        (default: all segments of each baseline), or a dict patient -> segment names. Adds the delta table, the trajectory and
        waterfall charts, a transform node per registered follow-up, propagated segmentations
        (into the segmentation sequence, marked ``RadiomicsLab.Propagated``) and, with
        ``difference_maps``, a difference-map sequence synchronised with the browser. Every
        patient is read, checked and computed before the scene is changed.
        """
        return self.compute_job(studies, settings, lesions, register, propagate, reference, icc_table, icc_threshold,
                                icc_column, difference_maps, registration_options, registration_margin_mm, plot_features,
                                waterfall_feature, name).run(progress)

    def compute_job(self, studies, settings=None, lesions=None, register: str | None = None, propagate: bool = False,
                    reference: str = "baseline", icc_table=None, icc_threshold: float = 0.75, icc_column: str = "ci_low",
                    difference_maps: bool = False, registration_options=None, registration_margin_mm: float = 20.0,
                    plot_features=None, waterfall_feature=None, name: str | None = None) -> Job:
        """:meth:`compute` as a :class:`~RadiomicsLabLib.background.Job`: every study's timepoints are read from its
        sequences and checked now; the registrations, propagation, difference maps and features
        (:func:`run_studies_for_the_scene`) are computed by ``job.run()`` here or by a
        :class:`~RadiomicsLabLib.background.BackgroundRun` in a worker process; the table, charts, transforms,
        propagated segmentations and difference maps are made when the job lands."""
        studies = list(studies) if isinstance(studies, (list, tuple)) else [studies]
        if not studies:
            raise RadiomicsLabError("No study given; create or select a longitudinal study first.")
        options = dict(settings=settings, register=register, propagate=propagate, reference=reference,
                       icc_table=icc_table, icc_threshold=icc_threshold, icc_column=icc_column,
                       difference_maps=difference_maps, registration_options=registration_options,
                       registration_margin_mm=registration_margin_mm)
        plans = []
        for study in studies:
            timepoints, names = self.timepoints(study)
            patient = study.GetAttribute(PATIENT_ATTRIBUTE) or study.GetName()
            try:
                chosen = self._chosen_lesions(study, names, lesions.get(patient) if isinstance(lesions, dict) else lesions)
                check_inputs(timepoints, settings, chosen, register, propagate, reference, icc_table, icc_column,
                             difference_maps, registration_options)
            except RadiomicsLabError as error:
                if len(studies) == 1:
                    raise
                raise RadiomicsLabError(f"Study '{patient}': {error}") from None
            plans.append((patient, timepoints, chosen))

        def land(results):
            return self._write_delta_nodes(studies, results, plot_features, waterfall_feature, name)

        title = f"Delta radiomics of {len(plans)} stud{'y' if len(plans) == 1 else 'ies'}"
        return Job(title, run_studies_for_the_scene, (plans,),
                   dict(plot_features=plot_features, waterfall_feature=waterfall_feature, **options), land=land)

    def _write_delta_nodes(self, studies, results, plot_features, waterfall_feature, name) -> DeltaNodes:
        """Every output node of :meth:`compute`, made only now that every patient is computed."""
        rows = [r for result in results for r in result.rows]
        nodes = DeltaNodes(None, None, None, results=results, plot_features=plot_features,
                           waterfall_feature=waterfall_feature)
        for study, result in zip(studies, results):
            self._write_study_outputs(study, result, nodes)
        name = name or (results[0].patient if len(results) == 1 else "Cohort")
        nodes.table = self._new_node("vtkMRMLTableNode", f"{name} delta")
        write_delta_table(nodes.table, rows, delta_provenance(results))
        for study in studies:
            study.AddNodeReferenceID("RadiomicsLab.DeltaTable", nodes.table.GetID())
            nodes.table.AddNodeReferenceID(STUDY_ROLE, study.GetID())
        nodes.trajectories, nodes.waterfall = self.plot(nodes.table, plot_features, waterfall_feature)
        return nodes

    @staticmethod
    def delta_rows(table_node):
        """The :class:`~RadiomicsLabLib.delta.DeltaRow` rows of a delta table."""
        return read_delta_table(table_node)

    @staticmethod
    def provenance(table_node) -> dict:
        """The provenance of a delta table (settings, timepoints, registrations, extraction provenance per timepoint)."""
        return table_provenance(table_node)

    def save_results(self, nodes: DeltaNodes, folder) -> dict:
        """Write the files ``radiomicslab delta`` writes for the same run into ``folder``
        (:func:`~RadiomicsLabLib.delta_outputs.write_delta_outputs`: delta.csv, the plots, the provenance,
        registration.csv, propagated masks and difference maps, byte for byte, but for the provenance's timepoint
        sources, here the scene's volume and segmentation names instead of file paths). Returns name relative to
        the folder -> path."""
        from ..delta_outputs import delta_provenance, output_paths, registered, write_delta_outputs
        from ..fileio import check_output, check_outputs

        if not nodes.results:
            raise RadiomicsLabError("These delta results hold no run (e.g. they were loaded from a saved scene); compute "
                                    "the delta again, then save its results (or export the delta table).")
        check_output(Path(folder), (), "folder")
        check_outputs(output_paths(folder, registered(delta_provenance(nodes.results))))
        return write_delta_outputs(folder, nodes.results, nodes.plot_features, nodes.waterfall_feature)

    def export(self, table_node, folder, features=None, waterfall_feature=None) -> dict:
        """``delta.csv``, ``trajectories.png``, ``waterfall.png`` and ``delta.provenance.json`` of a delta table in ``folder``."""
        from ..fileio import write_text_atomic

        rows = read_delta_table(table_node)
        written = write_outputs(rows, folder, features, waterfall_feature)
        written["delta.provenance.json"] = write_text_atomic(
            Path(folder) / "delta.provenance.json", json.dumps(self.provenance(table_node), indent=2, default=str) + "\n")
        return written

    # Plots ----------------------------------------------------------------------------------
    def plot(self, table_node, features=None, waterfall_feature=None):
        """(trajectory chart, waterfall chart) of a delta table, with their numeric data tables.

        Trajectories: relative change (%) from the reference against days since baseline, one
        series per lesion and feature (default features: :func:`~RadiomicsLabLib.delta.default_plot_features`);
        waterfall: relative change of ``waterfall_feature`` (default: the volume) at each lesion's
        last timepoint, largest increase first.
        """
        rows = read_delta_table(table_node)
        check_plot_features(rows, features, waterfall_feature)
        available = list(dict.fromkeys(r.feature for r in rows))
        features = list(features or default_plot_features(available))
        base = table_node.GetName()
        series = {}
        for feature in features:
            for key, points in trajectories(rows, feature).items():
                series[f"{key} | {feature}"] = points
        length = max((len(p) for p in series.values()), default=0)
        data = {}
        for title, points in series.items():
            padded = points + [(math.nan, math.nan)] * (length - len(points))
            data[f"{title} days"] = [p[0] for p in padded]
            data[title] = [p[1] for p in padded]
        trajectory_table = numeric_table(self.scene, f"{base} trajectories data", data)
        chart = plot_chart(self.scene, f"{base} trajectories",
                           [plot_series(self.scene, trajectory_table, title, f"{title} days", title, marker=True)
                            for title in series], "days since baseline", "relative change (%)", title=f"{base} trajectories")
        feature = waterfall_feature or default_plot_features(available, 1)[0]
        bars = waterfall(rows, feature)
        waterfall_table = numeric_table(self.scene, f"{base} waterfall data",
                                        {"rank": range(1, len(bars) + 1), "delta_rel": [b[1] for b in bars]}, "",
                                        {"lesion": [b[0] for b in bars], "timepoint": [b[2] for b in bars]})
        bar_series = plot_series(self.scene, waterfall_table, feature, "rank", "delta_rel", label="lesion", plot="bar")
        waterfall_chart = plot_chart(self.scene, f"{base} waterfall", [bar_series], "lesion (ranked)",
                                     f"relative change of {feature} (%)", title=f"{base} waterfall")
        for node in (chart, waterfall_chart):
            node.SetNodeReferenceID("RadiomicsLab.DeltaTable", table_node.GetID())
        return chart, waterfall_chart

    # Maps and habitats over time ------------------------------------------------------------
    def feature_map_differences(self, study, map_nodes, name: str | None = None):
        """A sequence of feature-map differences (follow-up map moved onto the baseline map's grid, minus the baseline map).

        ``map_nodes``: one scalar volume (a feature map) per timepoint of the study, baseline
        first. Follow-ups are moved with the study's registration transforms; a study that was
        not registered (or a follow-up whose registration was left out) is an error.
        """
        timepoints, _ = self.timepoints(study)
        map_nodes = list(map_nodes)
        if len(map_nodes) != len(timepoints):
            raise RadiomicsLabError(f"Give one feature map per timepoint: {len(map_nodes)} maps for {len(timepoints)} timepoints.")
        transforms = self.transforms(study)
        missing = [tp.label for tp in timepoints[1:] if tp.label not in transforms]
        if missing:
            raise RadiomicsLabError(f"Timepoint(s) {', '.join(missing)} of '{study.GetName()}' have no registration; "
                                    "compute the study with a registration first (register='rigid', 'affine' or 'bspline').")
        maps = [volume_to_sitk(node) for node in map_nodes]
        differences = [zero_map(maps[0])]
        differences += [difference_map(maps[0], image, transform_node_to_sitk(transforms[tp.label]))
                        for tp, image in zip(timepoints[1:], maps[1:])]
        name = name or f"{study.GetAttribute(PATIENT_ATTRIBUTE) or study.GetName()} {map_nodes[0].GetName()} differences"
        sequence = self._new_sequence(name)
        for tp, image in zip(timepoints, differences):
            node = sitk_to_volume_node(image, f"{name} {tp.label}", self.scene, display=False)
            self._add_item(sequence, node, tp.label, tp.iso_date)
            self.scene.RemoveNode(node)
        study.AddSynchronizedSequenceNodeID(sequence.GetID())
        return sequence

    def habitat_evolution(self, study, label_map_nodes, name: str | None = None):
        """(table, chart) of habitat fractions per timepoint from one habitat label map node per timepoint (baseline first)."""
        timepoints, _ = self.timepoints(study)
        patient = study.GetAttribute(PATIENT_ATTRIBUTE) or study.GetName()
        rows = habitat_fractions([volume_to_sitk(node) for node in label_map_nodes], timepoints, patient)
        name = name or f"{patient} habitats"
        table = self._new_node("vtkMRMLTableNode", name)
        write_text_table(table, HABITAT_COLUMNS, [r.row() for r in rows])
        table.SetAttribute(KIND_ATTRIBUTE, HABITAT_KIND)
        habitats = sorted({r.habitat for r in rows})
        data = {"days": [float(tp_days) for tp_days in dict.fromkeys(r.days for r in rows)]}
        for h in habitats:
            data[f"habitat {h}"] = [r.fraction for r in rows if r.habitat == h]
        data_table = numeric_table(self.scene, f"{name} data", data)
        chart = plot_chart(self.scene, f"{name} evolution",
                           [plot_series(self.scene, data_table, f"habitat {h}", "days", f"habitat {h}", marker=True)
                            for h in habitats], "days since baseline", "fraction of the lesion", title=f"{name} evolution")
        return table, chart

    def transforms(self, study) -> dict:
        """timepoint label -> the transform node of its registration onto the baseline."""
        found = {}
        for i in range(study.GetNumberOfNodeReferences(TRANSFORM_ROLE)):
            node = study.GetNthNodeReference(TRANSFORM_ROLE, i)
            if node is not None:
                found[node.GetAttribute(TIMEPOINT_ATTRIBUTE)] = node
        return found

    # Scene writing --------------------------------------------------------------------------
    def _write_study_outputs(self, study, result, nodes: DeltaNodes):
        """Transforms, propagated segmentations and difference maps of one patient into the scene."""
        volumes, segmentations = study.GetNodeReference(VOLUMES_ROLE), study.GetNodeReference(SEGMENTATIONS_ROLE)
        baseline = result.timepoints[0]
        for label, alignment in result.alignments.items():
            if not alignment.used:
                continue  # a registration that did not converge stays out of the scene (its summary is in the provenance)
            node = sitk_to_transform_node(alignment.result.transform, self.scene.GenerateUniqueName(
                f"{result.patient} {label} to {baseline.label} ({alignment.result.kind})"), self.scene)
            node.SetAttribute(TIMEPOINT_ATTRIBUTE, label)
            node.SetAttribute(REGISTRATION_ATTRIBUTE, json.dumps(alignment.summary()))
            study.AddNodeReferenceID(TRANSFORM_ROLE, node.GetID())
            nodes.transforms[(result.patient, label)] = node
        names = {value: lesion for lesion, value in result.lesions.items()}
        for tp in result.timepoints[1:]:
            if not str(tp.source.get("mask", "")).startswith("propagated"):
                continue
            if segmentations is None:
                segmentations = self._new_sequence(f"{result.patient} segmentations")
                study.AddSynchronizedSequenceNodeID(segmentations.GetID())
                study.SetNodeReferenceID(SEGMENTATIONS_ROLE, segmentations.GetID())
            reference = volumes.GetDataNodeAtValue(tp.iso_date, True)
            segmentation = label_map_to_segmentation_node(tp.mask, f"{result.patient} {tp.label} segmentation (propagated)",
                                                          self.scene)
            for segment_id in segment_ids(segmentation):
                value = int(segment_name(segmentation, segment_id).rsplit("_", 1)[-1])
                segmentation.GetSegmentation().GetSegment(segment_id).SetName(names.get(value, f"Label_{value}"))
            segmentation.SetAttribute(PROPAGATED_ATTRIBUTE, "1")
            if reference is not None:
                segmentation.SetAttribute("RadiomicsLab.ReferenceVolume", reference.GetName())
            self._add_item(segmentations, segmentation, tp.label, tp.iso_date)
            self.scene.RemoveNode(segmentation)
            nodes.propagated[(result.patient, tp.label)] = segmentations.GetDataNodeAtValue(tp.iso_date, True)
        if result.difference_maps:
            sequence = self._new_sequence(f"{result.patient} difference maps")
            by_label = {tp.label: tp for tp in result.timepoints}
            for label, image in result.difference_maps.items():
                node = sitk_to_volume_node(image, f"{result.patient} {label} minus {baseline.label}", self.scene,
                                           display=False)
                self._add_item(sequence, node, label, by_label[label].iso_date)
                self.scene.RemoveNode(node)
            study.AddSynchronizedSequenceNodeID(sequence.GetID())
            study.SetNodeReferenceID(DIFFERENCES_ROLE, sequence.GetID())
            nodes.difference_maps[result.patient] = sequence

    def _new_sequence(self, name: str):
        sequence = self.scene.AddNewNodeByClass("vtkMRMLSequenceNode", self.scene.GenerateUniqueName(name))
        sequence.SetIndexName(INDEX_NAME)
        sequence.SetIndexUnit("")
        sequence.SetIndexType(sequence.TextIndex)
        return sequence

    @staticmethod
    def _add_item(sequence, node, label: str, iso_date: str):
        """Copy ``node`` into ``sequence`` at index ``iso_date``; the copy gets the timepoint's label and date as attributes."""
        copy = sequence.SetDataNodeAtValue(node, iso_date)
        copy.SetAttribute(LABEL_ATTRIBUTE, label)
        copy.SetAttribute(DATE_ATTRIBUTE, iso_date)
        return copy

    def _new_node(self, class_name: str, name: str):
        return self.scene.AddNewNodeByClass(class_name, self.scene.GenerateUniqueName(name))

    # Helpers --------------------------------------------------------------------------------
    def _check_study(self, study):
        if study is None or not study.IsA("vtkMRMLSequenceBrowserNode") or study.GetNodeReference(VOLUMES_ROLE) is None:
            got = "nothing" if study is None else f"'{study.GetName()}' ({study.GetClassName()})"
            raise RadiomicsLabError(f"A longitudinal study (a sequence browser made by create_study or open_study) is needed; got {got}.")

    @staticmethod
    def _chosen_lesions(study, names: dict, lesions):
        if not names:
            raise RadiomicsLabError(f"The baseline of '{study.GetName()}' has no segmentation; segment the lesion(s) at baseline first.")
        if lesions is None:
            return names
        unknown = [n for n in lesions if n not in names]
        if unknown:
            raise RadiomicsLabError(f"The baseline of '{study.GetName()}' has no segment {', '.join(unknown)}; its segments are: {', '.join(names)}.")
        return {n: names[n] for n in lesions}

    @staticmethod
    def _label_map(segmentation, volume, lesions: dict) -> sitk.Image:
        """The segments of ``segmentation`` named in ``lesions`` as one label map on ``volume``'s grid."""
        label_map = None
        for segment_id in segment_ids(segmentation):
            value = lesions.get(segment_name(segmentation, segment_id))
            if value is None:
                continue  # a segment that is not a baseline lesion
            mask = segment_to_sitk(segmentation, segment_id, volume)
            array = sitk.GetArrayViewFromImage(mask)
            if label_map is None:
                label_map = np.zeros(array.shape, np.uint16)
            label_map[array != 0] = value
        if label_map is None:
            reference = volume_to_sitk(volume)
            label_map = np.zeros(sitk.GetArrayViewFromImage(reference).shape, np.uint16)
            image = sitk.GetImageFromArray(label_map)
            image.CopyInformation(reference)
            return image
        image = sitk.GetImageFromArray(label_map)
        image.CopyInformation(mask)
        return image


def run_studies_for_the_scene(plans, progress=None, **options) -> list:
    """:func:`~RadiomicsLabLib.delta.run_studies` less what the scene's results never read, so that a worker process
    does not send it back to Slicer and the results (:class:`DeltaNodes`) do not hold it: each timepoint's image
    (``None``; its features, registration and difference map are computed; the masks stay, propagated ones included).
    Two timepoints of a whole 512 x 512 x 299 CT: 0.94 GB sent back before, 0.31 GB now."""
    results = run_studies(plans, progress=progress, **options)
    for result in results:      # new timepoint objects: the job's own (its arguments) keep their images
        result.timepoints = [dataclasses.replace(tp, image=None) for tp in result.timepoints]
    return results


def volume_date(volume_node):
    """A volume's date: its ``RadiomicsLab.Date`` attribute, else (desktop Slicer, loaded from DICOM) the
    StudyDate, else AcquisitionDate of its first instance in Slicer's DICOM database; None when unknown."""
    text = volume_node.GetAttribute(DATE_ATTRIBUTE) if volume_node is not None else None
    if text:
        return parse_date(text, f"date of '{volume_node.GetName()}'")
    uids = (volume_node.GetAttribute("DICOM.instanceUIDs") or "").split() if volume_node is not None else []
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return None
    for tag in ("0008,0020", "0008,0022"):
        value = database.instanceValue(uids[0], tag)
        if value:
            return parse_date(value, f"DICOM date of '{volume_node.GetName()}'")
    return None


# Tables ---------------------------------------------------------------------------------------
def write_delta_table(table_node, rows, provenance: dict):
    """Fill ``table_node`` with delta rows (:data:`~RadiomicsLabLib.delta.DELTA_COLUMNS`, exact text) and the provenance."""
    texts = [[format_value(v) if isinstance(v, float) else str(v) for v in r.row()] for r in rows]
    write_text_table(table_node, DELTA_COLUMNS, texts)
    table_node.SetAttribute(KIND_ATTRIBUTE, DELTA_KIND)
    table_node.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(provenance, default=str))
    return table_node


def read_delta_table(table_node) -> list:
    """The delta rows of a table written by :func:`write_delta_table`."""
    table = table_node.GetTable() if table_node else None
    if table is None or any(table.GetColumnByName(c) is None for c in DELTA_COLUMNS):
        name = table_node.GetName() if table_node else "None"
        raise RadiomicsLabError(f"Table '{name}' is not a RadiomicsLab delta table (columns {', '.join(DELTA_COLUMNS)}).")
    columns = {c: table.GetColumnByName(c) for c in DELTA_COLUMNS}
    return [delta_row_from_texts({c: columns[c].GetValue(i) for c in DELTA_COLUMNS}) for i in range(table.GetNumberOfRows())]


# Transforms -----------------------------------------------------------------------------------
