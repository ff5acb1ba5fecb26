"""ObserverLogic: multi-observer agreement, consensus and feature reproducibility, from and into the MRML scene.

Observers are segmentation nodes (one segment each) or segments (one per observer); results
become nodes: table nodes (pairwise agreement, Dice matrix, summary, STAPLE performance,
features, per-feature ICC, perturbations), plot chart nodes (ICC per feature with its 95 % CI;
Bland-Altman of observer volumes) and a segmentation node per lesion with the consensus segments
("STAPLE consensus", "Majority vote"). Everything is computed before the first node is added, so
an error or a cancel leaves the scene as it was. :meth:`ObserverLogic.save_results` writes the files
``radiomicslab observers`` writes (:func:`RadiomicsLabLib.observers_outputs.write_observer_outputs`); the charts
show the series its plots draw.
"""

import dataclasses
import json
import math
from dataclasses import dataclass, field

import vtk

from ..background import Job
from ..errors import RadiomicsLabError
from ..observers import (PAIR_COLUMNS, STAPLE_COLUMNS, SUMMARY_COLUMNS, dice_matrix, make_lesion, observer_study,
                         staple_rows, summary_rows)
from ..observers_outputs import bland_altman_points, icc_plot_rows
from ..perturbation import perturbation_plan
from ..provenance import software_versions
from ..reproducibility import DEFAULT_ICC_TYPE, DEFAULT_RULE, ICC_COLUMNS, ICC_TYPES, parse_rule
from ..settings import load_settings
from .charts import plot_chart, plot_series
from .convert import segment_ids as all_segment_ids
from .convert import import_label_map, label_map_to_segmentation_node, segment_name, segment_to_sitk, volume_to_sitk
from .extraction import ExtractionLogic
from .tables import KIND_ATTRIBUTE, PROVENANCE_ATTRIBUTE, read_table_rows, write_feature_table

STAPLE_SEGMENT = "STAPLE consensus"
MAJORITY_SEGMENT = "Majority vote"
PERTURBATION_COLUMNS = ("lesion", "observer", "source", "perturbation", "seed", "voxels_source", "voxels",
                        "dice_to_source", "details")


def observer_study_for_the_scene(*args, progress=None, **kwargs):
    """:func:`~RadiomicsLabLib.observers.observer_study` less what the scene's results never read, so that a worker
    process does not send it back to Slicer and :attr:`ObserverResults.study` does not hold it: each lesion's image
    and perturbed images (``None`` and ``{}``; the features are computed) and STAPLE's probability map (``None``; its
    consensus mask stays). On a whole 512 x 512 x 299 CT with three observers the study sent back went from 1.33 GB
    (7.6 s to unpickle) to the masks' 0.39 GB (0.6 s)."""
    study = observer_study(*args, progress=progress, **kwargs)
    for result in study.lesions:     # new objects: the job's own lesions (its arguments) stay as they are
        result.lesion = dataclasses.replace(result.lesion, image=None, images={})
        result.staple = dataclasses.replace(result.staple, probability=None)
    return study


@dataclass
class ObserverResults:
    """The nodes one :meth:`ObserverLogic.run` made (``None`` where that part was not asked for)."""

    agreement: object
    matrix: object
    summary: object
    staple: object
    consensus: list
    features: object = None
    icc: object = None
    icc_chart: object = None
    bland_altman_chart: object = None
    perturbations: object = None
    study: object = field(default=None, repr=False)
    #: What :meth:`ObserverLogic.save_results` needs besides the study: settings, icc_type, seed, volumes (names).
    options: dict = field(default_factory=dict, repr=False)

    @property
    def main_table(self):
        """The table a GUI shows first: the ICC table when there is an ICC (several lesions), else the agreement."""
        if self.icc is not None and self.study is not None and len(self.study.lesions) > 1:
            return self.icc
        return self.agreement

    @property
    def main_chart(self):
        """The chart a GUI shows first: ICC per feature with its CI when there is an ICC, else Bland-Altman of volumes."""
        return self.icc_chart if self.main_table is self.icc else self.bland_altman_chart

    def nodes(self) -> list:
        single = [self.agreement, self.matrix, self.summary, self.staple, self.features, self.icc,
                  self.icc_chart, self.bland_altman_chart, self.perturbations]
        return [n for n in single if n is not None] + list(self.consensus)


class ObserverLogic(ExtractionLogic):
    """Multi-observer variability in the scene; every GUI button and console call goes through here.

    >>> logic = ObserverLogic()                                     # headless, or desktop Slicer's scene
    >>> results = logic.analyse(volume, [seg_alice, seg_bob, seg_carol])         # one lesion
    >>> results = logic.run([("case1", volume1, segmentation1),                  # a cohort: every
    ...                      ("case2", volume2, segmentation2)], settings="pyradiomics-default")  # segment an observer
    >>> results.icc, results.icc_chart, results.consensus[0]
    """

    # Observers -------------------------------------------------------------------------------------
    def observer_masks(self, volume_node, observers, names=None) -> list:
        """(name, 0/1 SimpleITK mask on the volume's grid) for each observer.

        ``observers``: a segmentation node whose segments are the observers (named after the
        segments); or a list whose items are segmentation nodes holding one segment (named after
        the node) or (segmentation node, segment ID or name) pairs (named after the segment).
        ``names`` replaces the names, in order.
        """
        self._check_node(volume_node, "vtkMRMLScalarVolumeNode", "input volume")
        if observers is not None and not isinstance(observers, (list, tuple)):
            self._check_node(observers, "vtkMRMLSegmentationNode", "observers' segmentation")
            chosen = [(observers, s, segment_name(observers, s)) for s in self.resolve_segments(observers)]
        else:
            chosen = []
            for item in observers or []:
                node, segment = item if isinstance(item, (list, tuple)) else (item, None)
                self._check_node(node, "vtkMRMLSegmentationNode", "observer segmentation")
                if segment is None:
                    ids = self.resolve_segments(node)
                    if len(ids) != 1:
                        raise RadiomicsLabError(
                            f"Segmentation '{node.GetName()}' has {len(ids)} segments; give (segmentation, segment) "
                            "to say which one is the observer's, or use one segmentation node per observer."
                        )
                    chosen.append((node, ids[0], node.GetName()))
                else:
                    segment_id = self.resolve_segments(node, [segment])[0]
                    chosen.append((node, segment_id, segment_name(node, segment_id)))
        if names is not None:
            names = list(names)
            if len(names) != len(chosen):
                raise RadiomicsLabError(f"{len(names)} observer names for {len(chosen)} observers; give one name per observer.")
        else:
            names = [name for _, _, name in chosen]
        return [(name, segment_to_sitk(node, segment_id, volume_node)) for name, (node, segment_id, _) in zip(names, chosen)]

    def make_lesion(self, name, volume_node, observers, names=None, readers=None, min_observers: int = 2):
        """A checked :class:`~RadiomicsLabLib.observers.Lesion` from nodes (see :meth:`observer_masks`)."""
        return make_lesion(name, volume_to_sitk(volume_node), self.observer_masks(volume_node, observers, names),
                           readers=readers, min_observers=min_observers)

    # The workflow ----------------------------------------------------------------------------------
    def analyse(self, volume_node, observers, names=None, lesion: str | None = None, **options) -> ObserverResults:
        """One lesion: agreement, consensus, and (``features=True``) the features of every observer.

        A single lesion gives no ICC (that needs several lesions: :meth:`run`); the ICC table then
        holds each feature's coefficient of variation. ``options`` as for :meth:`run`.
        """
        progress = options.pop("progress", None)
        return self.analyse_job(volume_node, observers, names, lesion, **options).run(progress)

    def analyse_job(self, volume_node, observers, names=None, lesion: str | None = None, **options) -> Job:
        """:meth:`analyse` as a :class:`~RadiomicsLabLib.background.Job` (see :meth:`run_job`)."""
        self._check_node(volume_node, "vtkMRMLScalarVolumeNode", "input volume")
        return self.run_job([(lesion or volume_node.GetName(), volume_node, observers, names)], **options)

    def run(self, lesions, settings=None, image_types=None, engine=None, features: bool = True, rule=None,
            icc_type: str | None = None, perturbations=None, seed: int = 0, readers=None, name: str = "Observers",
            progress=None) -> ObserverResults:
        """Agreement, STAPLE and majority-vote consensus for every lesion; feature reproducibility over them.

        ``lesions``: (name, volume node, observers[, names]) items (observers as in
        :meth:`observer_masks`); every lesion should be read by the same observers (names).
        ``settings`` / ``image_types`` / ``engine`` as in :meth:`extract`; ``rule``: robust-feature
        rule (default ``icc2_ci_low >= 0.75``); ``icc_type``: the ICC of the plot and the ``icc``
        column (``icc1``, ``icc2``, ``icc3``). ``perturbations``: perturbation specs (e.g.
        ``["grow:mm=-1", "supervoxels"]``, or ``True`` for the default plan) adding synthetic
        observers from each lesion's first observer, reproducible from ``seed``. ``readers``:
        observer -> reader, for intra-observer pairs. ``progress(done, total, message)`` returning
        ``False`` cancels. Nothing is added to the scene before all the work succeeded.
        """
        return self.run_job(lesions, settings, image_types, engine, features, rule, icc_type, perturbations, seed,
                            readers, name).run(progress)

    def run_job(self, lesions, settings=None, image_types=None, engine=None, features: bool = True, rule=None,
                icc_type: str | None = None, perturbations=None, seed: int = 0, readers=None,
                name: str = "Observers") -> Job:
        """:meth:`run` as a :class:`~RadiomicsLabLib.background.Job`: every lesion's observer masks are read from the
        scene and checked now (with the settings, rule and ICC type); the perturbations, agreement, consensus, features
        and reproducibility (:func:`~RadiomicsLabLib.observers.observer_study`) are computed by ``job.run()`` here or
        by a :class:`~RadiomicsLabLib.background.BackgroundRun` in a worker process; the nodes are made when the job
        lands."""
        settings = load_settings(settings, image_types, engine) if features else None
        parse_rule(rule or DEFAULT_RULE)
        if features and icc_type is not None and icc_type not in ICC_TYPES:
            raise RadiomicsLabError(f"Unknown ICC type '{icc_type}'; choose one of {', '.join(ICC_TYPES)} "
                                    f"({', '.join(ICC_TYPES.values())}).")
        plan = perturbation_plan(None if perturbations is True else perturbations) if perturbations else []
        built, volumes, names_seen = [], [], set()
        for item in lesions:
            lesion_name, volume_node, observers, *rest = item
            if lesion_name in names_seen:
                raise RadiomicsLabError(f"Lesion name '{lesion_name}' is used twice; give each lesion its own name.")
            names_seen.add(lesion_name)
            lesion = self.make_lesion(lesion_name, volume_node, observers, rest[0] if rest else None, readers,
                                      min_observers=1 if plan else 2)
            built.append(lesion)
            volumes.append(volume_node)
        if not built:
            raise RadiomicsLabError("No lesion given; give a volume and its observers' segmentations.")

        def land(study):
            results = self._write_results(study, volumes, name, seed if plan else None)
            results.options = {"settings": settings, "icc_type": icc_type or DEFAULT_ICC_TYPE,
                               "seed": seed if plan else None, "volumes": [v.GetName() for v in volumes]}
            return results

        return Job(f"Observer analysis of {len(built)} lesion(s)", observer_study_for_the_scene,
                   (built, settings, features, rule, icc_type, plan, seed), land=land)

    # Results ---------------------------------------------------------------------------------------
    def save_results(self, results: ObserverResults, folder) -> dict:
        """Write the files ``radiomicslab observers`` writes for the same study into ``folder``
        (:func:`~RadiomicsLabLib.observers_outputs.write_observer_outputs`: the same tables, plots, consensus
        masks and provenance, byte for byte, but for the provenance's ``inputs``, here the scene's volume and
        observer names instead of file paths and hashes). Returns name relative to the folder -> path."""
        from ..observers_outputs import check_outputs_writable, output_paths, write_observer_outputs

        study = results.study
        if study is None:
            raise RadiomicsLabError("These observer results hold no study (e.g. they were loaded from a saved scene); "
                                    "run the observer analysis again, then save its results.")
        options = results.options
        seed = options.get("seed")
        outputs = output_paths(folder, [r.lesion.name for r in study.lesions], study.reproducibility is not None,
                               seed is not None)
        check_outputs_writable(outputs, folder)
        volumes = options.get("volumes") or [None] * len(study.lesions)
        inputs = []
        for result, volume in zip(study.lesions, volumes):  # the observers read from the scene, not the synthetic ones
            lesion, synthetic = result.lesion, {p["observer"] for p in result.lesion.perturbations}
            inputs.append({"lesion": lesion.name, "image": {"node": volume},
                           "masks": {o: {"reader": lesion.readers.get(o, o)} for o in lesion.observers if o not in synthetic}})
        return write_observer_outputs(study, folder, inputs, options.get("settings"),
                                      options.get("icc_type", DEFAULT_ICC_TYPE), seed, outputs)

    def _write_results(self, study, volumes, name, seed) -> ObserverResults:
        scene = self.scene
        unique = scene.GenerateUniqueName
        provenance = {"software": software_versions(), "notes": study.notes, "lesions": [r.lesion.name for r in study.lesions],
                      "observers": {r.lesion.name: r.lesion.observers for r in study.lesions}, "perturbation_seed": seed,
                      "staple_threshold": study.lesions[0].staple.threshold}
        agreement = self.new_table(unique(f"{name} agreement"), study.pairs, PAIR_COLUMNS, "observer-agreement")
        agreement.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(provenance, default=str))
        matrix = self.new_table(unique(f"{name} Dice matrix"), dice_matrix(study.pairs), None, "observer-dice-matrix")
        summary = self.new_table(unique(f"{name} summary"), summary_rows(study), SUMMARY_COLUMNS, "observer-summary")
        staple = self.new_table(unique(f"{name} STAPLE"), staple_rows(study), STAPLE_COLUMNS, "observer-staple")
        consensus = [self.consensus_segmentation(result, volume, unique(f"{result.lesion.name} consensus"))
                     for result, volume in zip(study.lesions, volumes)]
        results = ObserverResults(agreement, matrix, summary, staple, consensus, study=study)
        results.bland_altman_chart = self.bland_altman_chart(study.pairs, unique(f"{name} Bland-Altman volumes"))
        if study.reproducibility is not None:
            values = [dataclasses.replace(v, segment=f"{lesion}/{v.segment}") for lesion, v in study.features]
            results.features = write_feature_table(
                scene.AddNewNodeByClass("vtkMRMLTableNode", unique(f"{name} features")), values,
                {"observers": provenance, "extraction": study.provenance})
            reproducibility = study.reproducibility
            results.icc = self.new_table(unique(f"{name} ICC"), reproducibility.rows, ICC_COLUMNS, "observer-icc")
            results.icc.SetAttribute("RadiomicsLab.RobustRule", str(reproducibility.rule))
            results.icc.SetAttribute("RadiomicsLab.RobustFeatures", json.dumps(reproducibility.robust))
            results.icc_chart = self.icc_chart(reproducibility, unique(f"{name} ICC per feature"))
        records = [{**r, "details": json.dumps(r["details"])} for result in study.lesions for r in result.lesion.perturbations]
        if records:
            results.perturbations = self.new_table(unique(f"{name} perturbations"), records, PERTURBATION_COLUMNS,
                                                   "observer-perturbations")
        for node in results.nodes():  # each consensus references its own volume, the tables every lesion's
            for volume in ([volumes[results.consensus.index(node)]] if node in results.consensus else volumes):
                node.AddNodeReferenceID("RadiomicsLab.Volume", volume.GetID())
        return results

    def new_table(self, name: str, rows: list, columns=None, kind: str = ""):
        """A new table node with ``rows`` (dicts): numeric columns as vtkDoubleArray (plots need them), others as text."""
        columns = list(columns or (rows[0] if rows else []))
        table = vtk.vtkTable()
        for column in columns:
            values = [row.get(column) for row in rows]
            numeric = all(isinstance(v, (int, float)) for v in values)
            array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
            array.SetName(column)
            for value in values:
                if numeric:
                    array.InsertNextValue(float(value))
                else:
                    array.InsertNextValue("" if value is None else str(value))
            table.AddColumn(array)
        node = self.scene.AddNewNodeByClass("vtkMRMLTableNode", name)
        node.SetAndObserveTable(table)
        node.SetUseColumnTitleAsColumnHeader(True)
        if kind:
            node.SetAttribute(KIND_ATTRIBUTE, kind)
        return node

    @staticmethod
    def table_rows(table_node) -> list[dict]:
        """The rows of a table node as dicts (numbers as floats, text as str)."""
        return read_table_rows(table_node)

    def consensus_segmentation(self, result, volume_node, name: str):
        """A new segmentation node with the lesion's STAPLE and majority-vote consensus as two segments."""
        node = label_map_to_segmentation_node(result.staple.consensus, name, self.scene, volume_node)
        if not all_segment_ids(node):  # an empty consensus still gets its (empty) segment
            node.GetSegmentation().AddEmptySegment("", STAPLE_SEGMENT)
        self._name_new_segment(node, [], STAPLE_SEGMENT, (0.2, 0.8, 0.2))
        before = all_segment_ids(node)
        import_label_map(result.majority, node)
        if all_segment_ids(node) == before:
            node.GetSegmentation().AddEmptySegment("", MAJORITY_SEGMENT)
        self._name_new_segment(node, before, MAJORITY_SEGMENT, (0.9, 0.8, 0.1))
        node.SetAttribute(KIND_ATTRIBUTE, "observer-consensus")
        node.SetAttribute("RadiomicsLab.StapleSensitivity", json.dumps(result.staple.sensitivity))
        node.SetAttribute("RadiomicsLab.StapleSpecificity", json.dumps(result.staple.specificity))
        return node

    @staticmethod
    def _name_new_segment(node, before, name, color):
        new = [s for s in all_segment_ids(node) if s not in before][0]
        segment = node.GetSegmentation().GetSegment(new)
        segment.SetName(name)
        segment.SetColor(*color)

    def consensus_mask(self, consensus_node, which: str = STAPLE_SEGMENT, volume_node=None):
        """A consensus segment as a 0/1 SimpleITK mask on the volume's grid (default: the node's reference volume)."""
        volume_node = volume_node or consensus_node.GetNodeReference("referenceImageGeometryRef")
        return segment_to_sitk(consensus_node, self.resolve_segments(consensus_node, [which])[0], volume_node)

    # Plots -----------------------------------------------------------------------------------------
    def icc_chart(self, reproducibility, name: str):
        """Plot chart: each feature's ICC (the chosen type) with its 95 % CI, features ranked by ICC; the rule's threshold."""
        rows = icc_plot_rows(reproducibility)  # the series icc.png draws
        threshold = rows[0]["threshold"] if rows else math.nan
        rule = reproducibility.rule
        table = self.new_table(f"{name} table", rows, ("rank", "feature", "icc", "ci_low", "ci_high", "threshold"),
                               "observer-icc-plot")
        label = ICC_TYPES[reproducibility.icc_type]
        series = [self._series(table, label, "rank", "icc", (0.1, 0.3, 0.8), marker=True),
                  self._series(table, "95% CI lower", "rank", "ci_low", (0.5, 0.6, 0.9), dashed=True),
                  self._series(table, "95% CI upper", "rank", "ci_high", (0.5, 0.6, 0.9), dashed=True)]
        if math.isfinite(threshold):
            series.append(self._series(table, f"robust: {rule}", "rank", "threshold", (0.8, 0.1, 0.1), dashed=True))
        return self._chart(name, series, "feature rank (by ICC)", label)

    def bland_altman_chart(self, pairs, name: str):
        """Plot chart: Bland-Altman of observer volumes (difference a - b against mean, bias, limits of agreement)."""
        ba = bland_altman_points(pairs)  # the series bland_altman_volumes.png draws
        rows = [{"pair": label, "mean_mm3": mean, "difference_mm3": difference, "bias_mm3": ba["bias_mm3"],
                 "lower_mm3": ba["lower_mm3"], "upper_mm3": ba["upper_mm3"]}
                for label, mean, difference in zip(ba["pair"], ba["mean_mm3"], ba["difference_mm3"])]
        table = self.new_table(f"{name} table", rows, None, "observer-bland-altman")
        series = [self._series(table, "pairs", "mean_mm3", "difference_mm3", (0.1, 0.3, 0.8), marker=True, label="pair"),
                  self._series(table, "bias", "mean_mm3", "bias_mm3", (0.2, 0.2, 0.2)),
                  self._series(table, "bias - 1.96 SD", "mean_mm3", "lower_mm3", (0.8, 0.1, 0.1), dashed=True),
                  self._series(table, "bias + 1.96 SD", "mean_mm3", "upper_mm3", (0.8, 0.1, 0.1), dashed=True)]
        return self._chart(name, series, "mean volume of the pair (mm^3)", "volume difference a - b (mm^3)")

    def _series(self, table, name, x, y, color, marker=False, dashed=False, label="feature"):
        """A series of ``table``'s columns (:func:`~RadiomicsLabLib.mrml.charts.plot_series`): points without lines
        (``marker``), a dashed or a solid line; the ``label`` column labels the points when the table has it."""
        has_label = table.GetTable().GetColumnByName(label) is not None
        return plot_series(self.scene, table, f"{table.GetName()} {name}", x, y, color, marker=marker,
                           line="none" if marker else "dash" if dashed else "solid", label=label if has_label else None)

    def _chart(self, name, series, x_title, y_title):
        return plot_chart(self.scene, name, series, x_title, y_title, kind="observer-plot", unique=False)
