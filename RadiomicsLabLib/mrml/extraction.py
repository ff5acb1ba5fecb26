"""ExtractionLogic: features of segments of a volume, from and into the MRML scene."""

from pathlib import Path

import SimpleITK as sitk

from ..background import Job
from ..errors import RadiomicsLabError
from ..extraction import extract_masks, prepare_inputs
from ..results import save_extraction_results, write_results
from ..settings import load_settings, preset_names
from .app import default_scene
from .convert import segment_ids as all_segment_ids
from .convert import segment_name, segment_to_sitk, volume_to_sitk
from .scenefiles import load_scene, load_segmentation, load_volume, save_scene
from .tables import read_feature_table, table_provenance, write_feature_table


class ExtractionLogic:
    """Feature extraction in the scene; every GUI button and console call goes through here.

    >>> logic = ExtractionLogic()                       # headless, or desktop Slicer's scene
    >>> volume = logic.load_volume("brain1_image.nrrd")
    >>> segmentation = logic.load_segmentation("brain1_label.nrrd", volume)
    >>> table = logic.extract(volume, segmentation)     # all segments, pyradiomics-default
    """

    def __init__(self, scene=None):
        self.scene = scene if scene is not None else default_scene()

    # Inputs ---------------------------------------------------------------------------------
    def load_volume(self, path, name: str | None = None):
        """Load an image file or DICOM series folder as a scalar volume node."""
        return load_volume(self.scene, path, name)

    def load_segmentation(self, path, reference_volume_node=None, name: str | None = None):
        """Load a ``.seg.nrrd`` or a label map as a segmentation node (segments ``Label_N``)."""
        return load_segmentation(self.scene, path, name, reference_volume_node)

    def save_scene(self, path):
        """Save the scene as ``.mrb`` (atomically)."""
        return save_scene(self.scene, path)

    def load_scene(self, path):
        """Replace the scene's content with a saved ``.mrb`` study."""
        return load_scene(self.scene, path)

    @staticmethod
    def presets() -> list[str]:
        return preset_names()

    # Extraction -----------------------------------------------------------------------------
    def extract(self, volume_node, segmentation_node, segment_ids=None, settings=None, image_types=None,
                table_node=None, progress=None, engine=None):
        """Extract features of each chosen segment; returns a ``vtkMRMLTableNode`` (long format).

        ``segment_ids``: segment IDs or names (default: all segments); ``settings``: a preset name,
        a pyradiomics parameter file, or a parameter dict; ``image_types``: e.g. ``["Original",
        "LoG:sigma=1,3", "Wavelet"]``; ``engine``: ``"pyradiomics"``, ``"native"`` or ``"ibsi"`` (default:
        what the settings declare); ``progress(done, total, segment)`` returning ``False`` cancels.
        Everything is checked before any work: on an error the scene is unchanged.
        """
        return self.extract_job(volume_node, segmentation_node, segment_ids, settings, image_types, table_node,
                                engine).run(progress)

    def extract_job(self, volume_node, segmentation_node, segment_ids=None, settings=None, image_types=None,
                    table_node=None, engine=None) -> Job:
        """:meth:`extract` as a :class:`~RadiomicsLabLib.background.Job`: inputs checked and read from the scene now,
        the features computed by ``job.run()`` here or by a :class:`~RadiomicsLabLib.background.BackgroundRun` in a
        worker process, the table node made when the job lands."""
        self._check_inputs(volume_node, segmentation_node)
        settings = load_settings(settings, image_types, engine)
        image, segment_masks = self.segment_masks(volume_node, segmentation_node, segment_ids)
        inputs = {"volume": volume_node.GetName(), "segmentation": segmentation_node.GetName(),
                  "volume_node_id": volume_node.GetID(), "segmentation_node_id": segmentation_node.GetID()}

        def land(result):
            node = table_node
            if node is None:
                node = self.scene.AddNewNodeByClass(
                    "vtkMRMLTableNode", self.scene.GenerateUniqueName(f"{segmentation_node.GetName()} features"))
            write_feature_table(node, result.values, result.provenance)
            node.SetNodeReferenceID("RadiomicsLab.Volume", volume_node.GetID())
            node.SetNodeReferenceID("RadiomicsLab.Segmentation", segmentation_node.GetID())
            return node

        return Job(f"Feature extraction of {len(segment_masks)} segment(s)", extract_masks,
                   (image, segment_masks, settings, inputs), land=land)

    def segment_masks(self, volume_node, segmentation_node, segment_ids=None, require_voxels: bool = False):
        """(the volume as a SimpleITK image, [(segment name, its 0/1 mask on the volume's grid checked by
        :func:`~RadiomicsLabLib.extraction.prepare_inputs`, 1)]) of each chosen segment (IDs or names, default all):
        what :func:`~RadiomicsLabLib.extraction.extract_masks` takes. ``require_voxels``: a segment with no voxels
        inside the volume is refused with the Segment Editor's advice (before the mask checks)."""
        self._check_inputs(volume_node, segmentation_node)
        image = volume_to_sitk(volume_node)
        segment_masks = []
        for segment_id in self.resolve_segments(segmentation_node, segment_ids):
            name = segment_name(segmentation_node, segment_id)
            mask = segment_to_sitk(segmentation_node, segment_id, volume_node)
            if require_voxels and not sitk.GetArrayViewFromImage(mask).any():
                raise RadiomicsLabError(
                    f"Segment '{name}' of '{segmentation_node.GetName()}' has no voxels inside volume "
                    f"'{volume_node.GetName()}'; paint it in the Segment Editor or choose another segment or volume.")
            segment_masks.append((name, prepare_inputs(image, mask, {name: 1}), 1))
        return image, segment_masks

    def resolve_segments(self, segmentation_node, segment_ids=None) -> list[str]:
        """Segment IDs for the given IDs or names (all segments when None); unknown ones are an error."""
        available = all_segment_ids(segmentation_node)
        if not available:
            raise RadiomicsLabError(f"Segmentation '{segmentation_node.GetName()}' has no segments; add or load one.")
        if segment_ids is None:
            return available
        by_name = {segment_name(segmentation_node, s): s for s in available}
        resolved, unknown = [], []
        for key in segment_ids:
            if key in available or key in by_name:
                resolved.append(key if key in available else by_name[key])
            else:
                unknown.append(str(key))
        if unknown:
            raise RadiomicsLabError(
                f"Segmentation '{segmentation_node.GetName()}' has no segment {', '.join(unknown)}; "
                f"its segments are: {', '.join(by_name)}."
            )
        return resolved

    # Results --------------------------------------------------------------------------------
    @staticmethod
    def feature_values(table_node):
        """The :class:`~RadiomicsLabLib.extraction.FeatureValue` rows of a feature table."""
        return read_feature_table(table_node)

    @staticmethod
    def provenance(table_node) -> dict:
        return table_provenance(table_node)

    def export_table(self, table_node, csv_path, wide: bool = False) -> tuple[Path, Path]:
        """Write a feature table as CSV (long or wide) with its ``.provenance.json`` sidecar."""
        return write_results(read_feature_table(table_node), table_provenance(table_node), csv_path, wide)

    def save_results(self, table_node, folder, wide: bool = False) -> dict:
        """The files ``radiomicslab extract -o FOLDER/features.csv`` writes, from a feature table node and its
        provenance: ``features.csv`` and ``features.provenance.json`` in ``folder``
        (:func:`~RadiomicsLabLib.results.save_extraction_results`); returns file name -> path."""
        self._check_node(table_node, "vtkMRMLTableNode", "feature table")
        return save_extraction_results(read_feature_table(table_node), table_provenance(table_node), folder, wide)

    def extract_saved_scene(self, scene_path, segment_names=(), settings=None, progress=None):
        """``radiomicslab extract --scene STUDY.mrb`` alone: load the study into this logic's scene, extract every
        segmentation's segments (or those named ``segment_names``) on the volume each was drawn on, and save the
        tables back into the study. Returns ``(values, provenance)`` (``{"tables": [...]}`` for several
        segmentations); ``progress(done, total, segment)`` counts over every segment."""
        from ..fileio import check_writable

        check_writable(scene_path)  # the tables are saved into it
        self.load_scene(scene_path)
        jobs, every_name = [], []
        segmentations = self.scene.GetNodesByClass("vtkMRMLSegmentationNode")
        for i in range(segmentations.GetNumberOfItems()):
            segmentation = segmentations.GetItemAsObject(i)
            names = [segment_name(segmentation, s) for s in all_segment_ids(segmentation)]
            every_name += names
            chosen = [n for n in names if not segment_names or n in segment_names]
            if chosen:
                jobs.append((segmentation, self.reference_volume(segmentation), chosen))
        found = {n for _, _, chosen in jobs for n in chosen}
        missing = [n for n in segment_names if n not in found]
        if missing or not jobs:
            raise RadiomicsLabError(
                f"The scene '{scene_path}' has no segment {', '.join(missing)}; its segments are: "
                f"{', '.join(dict.fromkeys(every_name)) or 'none'} (choose with --segment)." if missing
                else f"The scene '{scene_path}' has no segmentation with segments; add one in Slicer and save the study.")
        values, provenances, total, done = [], [], sum(len(chosen) for *_, chosen in jobs), 0
        for segmentation, volume, chosen in jobs:
            def step(k, _total, name, before=done):
                return progress(before + k, total, name) if progress else True

            table = self.extract(volume, segmentation, chosen, settings, progress=step)
            values += self.feature_values(table)
            provenances.append(self.provenance(table))
            done += len(chosen)
        self.save_scene(scene_path)
        return values, provenances[0] if len(provenances) == 1 else {"tables": provenances}

    def reference_volume(self, segmentation_node):
        """The volume a segmentation was drawn on (its reference geometry), or the scene's only scalar volume."""
        from .convert import segmentation_volume

        reference = segmentation_volume(segmentation_node)
        if reference is not None:
            return reference
        volumes = self.scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
        if volumes.GetNumberOfItems() == 1:
            return volumes.GetItemAsObject(0)
        raise RadiomicsLabError(
            f"Cannot tell which volume segmentation '{segmentation_node.GetName()}' belongs to "
            f"({volumes.GetNumberOfItems()} volumes in the scene); set its reference geometry volume in Slicer's "
            "Segment Editor and save the study.")

    def _check_inputs(self, volume_node, segmentation_node):
        self._check_node(volume_node, "vtkMRMLScalarVolumeNode", "input volume")
        self._check_node(segmentation_node, "vtkMRMLSegmentationNode", "segmentation")

    def _check_node(self, node, class_name: str, role: str):
        if node is None or not node.IsA(class_name):
            got = "nothing" if node is None else f"a {node.GetClassName()}"
            raise RadiomicsLabError(f"The {role} must be a {class_name}; got {got}. Select or load one first.")
        if node.GetScene() is not self.scene and self.scene.GetNodeByID(node.GetID()) is not node:
            raise RadiomicsLabError(f"The {role} '{node.GetName()}' is not in this logic's scene.")
