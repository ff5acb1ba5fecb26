"""End-to-end scenarios shared by pytest (headless scene) and the Slicer module self-test (``slicer.mrmlScene``).

Each function takes the scene and the reference data folder (``scenario(scene, data_dir)``; those that
write files also a folder for them), does what a user would do through the Logic classes of
:mod:`RadiomicsLabLib.mrml`, checks the outcome against values computed another way and returns what
it made. A failed check raises ``AssertionError`` with a message saying what differed.

:data:`SCENARIOS` lists them in :func:`run_all` order. The shared data has one segmentation per
lesion and one timepoint, so the second reader and the follow-up scan are built from the real data
with a known answer (documented in each function).
"""

import csv
import math
from pathlib import Path

from ..regions import image_on_grid
from .cohort import CohortLogic
from .delta import DeltaLogic
from .extraction import ExtractionLogic
from .featuremaps import FeatureMapLogic
from .habitats import HabitatLogic
from .observers import MAJORITY_SEGMENT, ObserverLogic
from .tables import FEATURES_KIND, KIND_ATTRIBUTE

SEGMENT = "Label_1"
FEATURE = "original_firstorder_Mean"
#: Every scenario, in run_all order; all take (scene, data_dir), save_and_reload and cohort_sample also a path / folder.
SCENARIOS = ("load_sample", "extract_sample", "save_and_reload", "feature_maps_sample", "observers_sample",
             "habitats_sample", "delta_sample", "cohort_sample")

#: feature_maps_sample: IBSI intensity statistics and GLCM maps (base tags: the 3D averaged and merged GLCM), 3 x 3 x 3
#: kernels, bins of 25 counted from 0 (re-segmentation range [0, inf): brain1's MR intensities are all >= 0, so no voxel
#: is removed, and every kernel gets the grey levels the whole ROI gets, so a kernel extracted on its own is comparable).
#: GLCM features normalised by Ng, the ROI's number of grey levels (cm_inv_diff_norm, cm_inv_diff_mom_norm), are left
#: out: a kernel extracted alone has its own Ng.
MAP_FEATURES = ("stat_mean", "stat_var", "stat_skew", "stat_kurt", "stat_median", "stat_p90", "stat_energy",
                "cm_contrast", "cm_joint_entr", "cm_corr", "cm_clust_shade", "cm_inv_diff")
MAP_FAMILIES = ("statistics", "glcm")
MAP_SETTINGS = {"bin_width": 25.0, "resegment_range": (0.0, None)}
#: observers_sample: the third observer is the real GTV eroded by this many mm (ObserverLogic's ``grow:mm=-2``).
EROSION_MM = 2.0
#: habitats_sample: channels of the sarcoma patient, number of habitats, seed, and the peritumoral ring (mm).
HABITAT_CASE, HABITAT_CHANNELS, N_HABITATS, HABITAT_SEED, RING_MM = "STS_002", ("CT", "MR_T1", "PET"), 3, 1, (0.0, 5.0)
#: delta_sample: the synthetic follow-up of STS_002's CT (see delta_sample) and how it is computed.
FOLLOWUP_SHIFT_MM = (6.0, -4.0, 3.0)        # rigid translation of the whole scan, LPS mm
FOLLOWUP_EROSION_MM = 2.0                   # the lesion shrinks by 2 mm all round
FOLLOWUP_HU_DROP = 30.0                     # and its remaining voxels get 30 HU darker
DELTA_DATES, DELTA_LABELS = ("2021-01-04", "2021-02-15"), ("baseline", "week6")
DELTA_SETTINGS = {"featureClass": {"firstorder": [], "shape": []}, "setting": {"binWidth": 25}}
DELTA_REGISTRATION = {"shrink_factors": (4, 2), "smoothing_sigmas_mm": (2.0, 2.0), "iterations": 200, "seed": 7}
#: cohort_sample: two small pyradiomics cases, first order + GLCM with 16 bins.
COHORT_CASES = ("brain2", "breast1")
COHORT_SETTINGS = {"featureClass": {"firstorder": [], "glcm": []}, "setting": {"binCount": 16}}


def sample_paths(data_dir, case: str = "brain1") -> tuple[Path, Path]:
    folder = Path(data_dir) / "pyradiomics_cases"
    image, label = folder / f"{case}_image.nrrd", folder / f"{case}_label.nrrd"
    assert image.is_file() and label.is_file(), (
        f"Sample case '{case}' not found in {folder}; set RADIOMICSLAB_DATA to the shared data folder."
    )
    return image, label


def _sts_paths(data_dir, case: str, modality: str = "CT") -> tuple[Path, Path]:
    """Image and GTV mask of one modality of a soft-tissue sarcoma patient (``STS_001`` ... ``STS_004``)."""
    folder = Path(data_dir) / "sts" / case
    image, mask = folder / f"{modality}_image.nii.gz", folder / f"{modality}_mask.nii.gz"
    assert image.is_file() and mask.is_file(), (
        f"Sarcoma case '{case}' ({modality}) not found in {folder}; set RADIOMICSLAB_DATA to the shared data folder."
    )
    return image, mask


def load_sample(scene, data_dir, case: str = "brain1"):
    """Load a pyradiomics sample case: (scalar volume node, segmentation node with ``Label_N`` segments)."""
    image, label = sample_paths(data_dir, case)
    logic = ExtractionLogic(scene)
    volume = logic.load_volume(image)
    segmentation = logic.load_segmentation(label, volume)
    assert volume.IsA("vtkMRMLScalarVolumeNode") and volume.GetImageData() is not None, f"{image} loaded no voxels"
    assert segmentation.GetSegmentation().GetNumberOfSegments() > 0, f"{label} gave no segment"
    return volume, segmentation


def extract_sample(scene, data_dir):
    """Extract brain1 with the default preset; every feature must equal pyradiomics' own result on the files."""
    import numpy as np
    from radiomics import featureextractor

    volume, segmentation = load_sample(scene, data_dir)
    logic = ExtractionLogic(scene)
    table = logic.extract(volume, segmentation)
    assert table.IsA("vtkMRMLTableNode") and scene.GetNodeByID(table.GetID()) is table, "no feature table in the scene"
    ours = {v.feature: v.value for v in logic.feature_values(table) if v.segment == SEGMENT}
    assert FEATURE in ours, f"table '{table.GetName()}' has no row {SEGMENT} / {FEATURE}"

    image, label = sample_paths(data_dir)
    reference = featureextractor.RadiomicsFeatureExtractor().execute(str(image), str(label), label=1)
    reference = {k: float(np.asarray(v)) for k, v in reference.items() if not k.startswith("diagnostics_")}
    assert set(ours) == set(reference), (
        f"feature names differ from pyradiomics: only ours {sorted(set(ours) - set(reference))}, "
        f"only pyradiomics {sorted(set(reference) - set(ours))}"
    )
    different = {k: (ours[k], reference[k]) for k in reference if ours[k] != reference[k]}
    assert not different, f"{len(different)} features differ from pyradiomics (ours, pyradiomics): {different}"
    return table


def save_and_reload(scene, data_dir, path):
    """Save the scene as ``.mrb``, load it back into the same scene; volume, segmentation and features must survive."""
    logic = ExtractionLogic(scene)
    tables = _feature_tables(scene)
    assert tables, "nothing to save: the scene has no feature table (run extract_sample first)"
    before = logic.feature_values(tables[0])
    logic.save_scene(path)
    assert Path(path).is_file(), f"save_scene wrote no file {path}"
    logic.load_scene(path)
    for class_name in ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode"):
        assert scene.GetFirstNodeByClass(class_name) is not None, f"no {class_name} after reloading {path}"
    tables = _feature_tables(scene)
    assert tables, f"no feature table after reloading {path}"
    after = logic.feature_values(tables[0])
    assert after == before, f"feature table changed by save and reload ({len(before)} rows before, {len(after)} after)"
    assert logic.provenance(tables[0]), "the reloaded feature table lost its provenance"
    return tables[0]


def feature_maps_sample(scene, data_dir):
    """IBSI intensity statistics and GLCM maps (:data:`MAP_FEATURES`, radius 1) of brain1's tumour through
    :class:`FeatureMapLogic`.

    The voxel nearest the tumour's centroid is checked against the engine on its kernel: the ROI voxels of the
    3 x 3 x 3 cube around it become a segment, extracted by :class:`ExtractionLogic` with the same IBSI settings;
    every map must equal that extraction there (relative 1e-9). The summary table's mean of each map must be the
    mean of the map node's voxels inside the tumour.
    """
    import numpy as np
    import SimpleITK as sitk

    from .convert import label_map_to_segmentation_node, segment_to_sitk, volume_to_sitk

    volume, segmentation = load_sample(scene, data_dir)
    extraction = ExtractionLogic(scene)
    segment = extraction.resolve_segments(segmentation, [SEGMENT])[0]
    logic = FeatureMapLogic(scene)
    result = logic.compute(volume, segmentation, segment, features=",".join(MAP_FEATURES), radius=1,
                           definition="ibsi", **MAP_SETTINGS)
    assert result.maps, "FeatureMapLogic.compute made no map"
    missing = [name for name, node in result.maps.items() if scene.GetNodeByID(node.GetID()) is not node]
    assert not missing, f"map volume nodes not in the scene: {missing}"

    mask = segment_to_sitk(segmentation, segment, volume)
    inside = sitk.GetArrayFromImage(mask) > 0
    voxels = np.argwhere(inside)
    centre = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
    cube = tuple(slice(max(c - 1, 0), c + 2) for c in centre)
    kernel = np.zeros(inside.shape, np.uint8)
    kernel[cube] = inside[cube]
    kernel_image = sitk.GetImageFromArray(kernel)
    kernel_image.CopyInformation(mask)
    kernel_node = label_map_to_segmentation_node(kernel_image, scene.GenerateUniqueName("brain1 kernel"), scene, volume)
    settings = {"engine": "ibsi", "ibsi": {"dimensions": ["3D"], "families": list(MAP_FAMILIES),
                                           "bin_width": MAP_SETTINGS["bin_width"],
                                           "resegment_range": list(MAP_SETTINGS["resegment_range"])}}
    table = extraction.extract(volume, kernel_node, settings=settings)
    engine = {v.feature: v.value for v in extraction.feature_values(table)}

    where = tuple(int(c) for c in centre)
    maps = {name: sitk.GetArrayFromImage(volume_to_sitk(node)) for name, node in result.maps.items()}
    unknown = sorted(set(maps) - set(engine))
    assert not unknown, f"maps {unknown} have no feature of that name in the engine's extraction of the kernel"
    different = {name: (float(array[where]), engine[name]) for name, array in maps.items()
                 if not _same(float(array[where]), engine[name], 1e-9)}
    assert not different, (f"{len(different)} of {len(maps)} maps differ at voxel (z, y, x) {where} from the engine on "
                           f"its kernel (map, engine): {different}")
    for row in logic.summary_rows(result.table):
        mean = float(np.nanmean(maps[row["feature"]][inside]))
        assert _same(row["mean"], mean, 1e-12), (
            f"summary mean of {row['feature']} is {row['mean']}, the map's voxels in {SEGMENT} average {mean}")
    return result


def observers_sample(scene, data_dir):
    """Three observers of STS_002's CT tumour through :class:`ObserverLogic`.

    Readers 1 and 2 load the same real GTV file (a mask compared with itself); the third observer is
    ObserverLogic's documented perturbation ``grow:mm=-2``, the GTV eroded by 2 mm. Checks: Dice 1 and
    Hausdorff 0 between the identical readers; the eroded observer equal to the GTV voxels farther than 2 mm
    from the background by SimpleITK's Maurer distance map; its Dice with reader 1 equal to SimpleITK's
    LabelOverlapMeasures; the majority vote equal to the GTV (two of the three readers hold exactly it).
    """
    import numpy as np
    import SimpleITK as sitk

    from .convert import segment_ids, segment_to_sitk

    image, mask_path = _sts_paths(data_dir, "STS_002", "CT")
    logic = ObserverLogic(scene)
    volume = logic.load_volume(image, scene.GenerateUniqueName("STS_002 CT"))
    readers = [logic.load_segmentation(mask_path, volume, scene.GenerateUniqueName(f"reader {i}")) for i in (1, 2)]
    names = ["reader 1", "reader 2"]
    results = logic.analyse(volume, readers, names=names, lesion="STS_002", features=False,
                            perturbations=[f"grow:mm={-EROSION_MM:g}"])
    pairs = {(row["observer_a"], row["observer_b"]): row for row in logic.table_rows(results.agreement)}
    eroded_name = next(name for name in results.study.lesions[0].lesion.masks if name not in names)
    assert set(pairs) == {tuple(names), (names[0], eroded_name), (names[1], eroded_name)}, (
        f"agreement pairs {sorted(pairs)}; expected every pair of {names + [eroded_name]}")
    same = pairs[tuple(names)]
    assert (same["dice"], same["hausdorff_mm"]) == (1.0, 0.0), (
        f"a mask compared with itself has Dice {same['dice']} and Hausdorff {same['hausdorff_mm']} mm; expected 1 and 0")

    gtv = segment_to_sitk(readers[0], segment_ids(readers[0])[0], volume)
    inside = sitk.GetArrayFromImage(gtv) > 0
    expected = inside & (_distance_mm(~inside, gtv, beyond_grid=True) > EROSION_MM)
    eroded = sitk.GetArrayFromImage(results.study.lesions[0].lesion.masks[eroded_name]) > 0
    assert np.array_equal(eroded, expected), (
        f"observer {eroded_name} has {eroded.sum()} voxels, {np.count_nonzero(eroded != expected)} of them differing "
        f"from the GTV ({inside.sum()} voxels) eroded by {EROSION_MM} mm with SimpleITK's distance map ({expected.sum()})")
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(sitk.Cast(gtv > 0, sitk.sitkUInt8), image_on_grid(expected, gtv))
    dice = pairs[(names[0], eroded_name)]["dice"]
    assert abs(dice - overlap.GetDiceCoefficient()) <= 1e-12 and dice < 1.0, (
        f"Dice of reader 1 and the eroded GTV is {dice}; SimpleITK's LabelOverlapMeasures gives {overlap.GetDiceCoefficient()}")
    majority = sitk.GetArrayFromImage(logic.consensus_mask(results.consensus[0], MAJORITY_SEGMENT, volume)) > 0
    assert np.array_equal(majority, inside), (
        f"the majority vote of two identical readers and an erosion differs from their mask in "
        f"{np.count_nonzero(majority != inside)} voxels")
    return results


def habitats_sample(scene, data_dir):
    """Habitats of a sarcoma (STS_002: CT, MR T1 and PET, co-registered; ROI = the CT GTV) and a 0-5 mm
    peritumoral ring through :class:`HabitatLogic`.

    Checks: one habitat segmentation whose segments (one per habitat with voxels, tagged 1..k) do not overlap
    and fill the GTV, each with the voxel count of its statistics row; fractions summing to 1; the ring segment
    equal to the voxels outside the GTV within 5 mm of it by SimpleITK's Maurer distance map.
    """
    import numpy as np
    import SimpleITK as sitk

    from .convert import segment_to_sitk

    logic = HabitatLogic(scene)
    channels = {}
    for channel in HABITAT_CHANNELS:
        image, _ = _sts_paths(data_dir, HABITAT_CASE, channel)
        channels[channel] = logic.load_volume(image, scene.GenerateUniqueName(f"{HABITAT_CASE} {channel}"))
    reference = channels[HABITAT_CHANNELS[0]]
    _, mask_path = _sts_paths(data_dir, HABITAT_CASE, HABITAT_CHANNELS[0])
    gtv = logic.load_segmentation(mask_path, reference, scene.GenerateUniqueName(f"{HABITAT_CASE} GTV"))
    gtv_segment = logic.resolve_segments(gtv)[0]
    nodes = logic.habitats(gtv, gtv_segment, channels, N_HABITATS, name=HABITAT_CASE, seed=HABITAT_SEED)
    assert len(nodes.segmentations) == 1, f"{len(nodes.segmentations)} habitat segmentations for one patient"
    habitats = nodes.segmentations[0]
    rows = logic.table_rows(nodes.statistics)
    total = sum(row["fraction"] for row in rows)
    assert abs(total - 1.0) <= 1e-9, f"habitat fractions {[row['fraction'] for row in rows]} sum to {total}, not 1"
    present = {int(row["habitat"]): int(row["voxels"]) for row in rows if row["voxels"] > 0}
    segments = logic.habitat_segments(habitats)
    assert sorted(segments) == sorted(present) and len(present) >= 2, (
        f"habitat segments {sorted(segments)}; the statistics table has voxels in habitats {sorted(present)}")

    inside = sitk.GetArrayFromImage(segment_to_sitk(gtv, gtv_segment, reference)) > 0
    covered = np.zeros(inside.shape, np.int64)
    for habitat, (segment_id, segment_label) in segments.items():
        voxels = sitk.GetArrayFromImage(segment_to_sitk(habitats, segment_id, reference)) > 0
        assert voxels.sum() == present[habitat], (
            f"segment '{segment_label}' has {voxels.sum()} voxels, its statistics row {present[habitat]}")
        covered += voxels
    assert covered.max() == 1 and np.array_equal(covered > 0, inside), (
        f"habitat segments overlap ({np.count_nonzero(covered > 1)} voxels) or do not fill the GTV "
        f"({np.count_nonzero((covered > 0) != inside)} voxels differ)")

    ring_id = logic.add_ring(gtv, gtv_segment, *RING_MM)
    ring = sitk.GetArrayFromImage(segment_to_sitk(gtv, ring_id, reference)) > 0
    mask = segment_to_sitk(gtv, gtv_segment, reference)
    expected = ~inside & (_distance_mm(inside, mask) <= RING_MM[1])
    assert np.array_equal(ring, expected), (
        f"the {RING_MM[0]:g}-{RING_MM[1]:g} mm ring has {ring.sum()} voxels, {np.count_nonzero(ring != expected)} of them "
        f"differing from SimpleITK's distance map ({expected.sum()} voxels)")
    return nodes


def delta_sample(scene, data_dir):
    """Delta-radiomics of a baseline and a synthetic follow-up through :class:`DeltaLogic` (Sequences).

    Baseline: STS_002's real CT and GTV. Follow-up, built with a known answer: the GTV eroded by
    :data:`FOLLOWUP_EROSION_MM` (voxels farther than 2 mm from the background), its remaining voxels
    :data:`FOLLOWUP_HU_DROP` HU darker, and the whole scan moved by the rigid translation
    :data:`FOLLOWUP_SHIFT_MM` (its origin moved: the voxels are not resampled). The two become a study
    (volume and segmentation sequences indexed by date, a browser); DeltaLogic registers the follow-up (rigid)
    and computes the deltas. Checks: the sequences; the registration recovers the translation (within 1 mm
    over the lesion, 0.5 degrees); the volume change is the erosion's, 100 (N_eroded - N) / N %, and negative;
    the follow-up mean is the baseline mean over the eroded lesion minus the drop.
    """
    import numpy as np
    import SimpleITK as sitk

    from ..registration import affine_matrix, rotation_angle_degrees
    from .convert import (label_map_to_segmentation_node, segment_ids, segment_name, segment_to_sitk, sitk_to_volume_node,
                          transform_node_to_sitk, volume_to_sitk)

    image_path, mask_path = _sts_paths(data_dir, "STS_002", "CT")
    logic = DeltaLogic(scene)
    loader = ExtractionLogic(scene)
    baseline = loader.load_volume(image_path, scene.GenerateUniqueName("STS_002 CT baseline"))
    baseline_gtv = loader.load_segmentation(mask_path, baseline, scene.GenerateUniqueName("STS_002 GTV baseline"))
    image = volume_to_sitk(baseline)
    gtv = segment_to_sitk(baseline_gtv, segment_ids(baseline_gtv)[0], baseline)
    inside = sitk.GetArrayFromImage(gtv) > 0
    eroded = inside & (_distance_mm(~inside, gtv, beyond_grid=True) > FOLLOWUP_EROSION_MM)
    voxels = sitk.GetArrayFromImage(image)
    followup_voxels = voxels.copy()
    followup_voxels[eroded] -= np.asarray(FOLLOWUP_HU_DROP, voxels.dtype)
    followup = image_on_grid(followup_voxels, image)
    followup_mask = image_on_grid(eroded, image)
    for moved in (followup, followup_mask):
        moved.SetOrigin([o + d for o, d in zip(image.GetOrigin(), FOLLOWUP_SHIFT_MM)])
    followup_node = sitk_to_volume_node(followup, scene.GenerateUniqueName("STS_002 CT week6"), scene)
    followup_gtv = label_map_to_segmentation_node(followup_mask, scene.GenerateUniqueName("STS_002 GTV week6"), scene,
                                                  followup_node)
    lesion = segment_name(baseline_gtv, segment_ids(baseline_gtv)[0])
    followup_gtv.GetSegmentation().GetNthSegment(0).SetName(lesion)

    study = logic.study_from_nodes([baseline, followup_node], [baseline_gtv, followup_gtv], dates=DELTA_DATES,
                                   labels=DELTA_LABELS, name="STS_002")
    sequence = study.GetMasterSequenceNode()
    indices = [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())]
    assert study.IsA("vtkMRMLSequenceBrowserNode") and indices == list(DELTA_DATES), (
        f"the study's volume sequence is indexed {indices}; expected the dates {list(DELTA_DATES)}")
    nodes = logic.compute(study, DELTA_SETTINGS, register="rigid", registration_options=DELTA_REGISTRATION)

    transform = nodes.transforms.get(("STS_002", DELTA_LABELS[1]))
    assert transform is not None, f"no registration transform node for {DELTA_LABELS[1]}: {nodes.warnings}"
    matrix = affine_matrix(transform_node_to_sitk(transform))
    points = np.array([image.TransformIndexToPhysicalPoint([int(i) for i in index[::-1]])
                       for index in np.argwhere(inside)[::20]])
    error = np.linalg.norm(points @ matrix[:3, :3].T + matrix[:3, 3] - (points + FOLLOWUP_SHIFT_MM), axis=1).max()
    angle = rotation_angle_degrees(matrix)
    assert error < 1.0 and angle < 0.5, (
        f"the registration is {error:.2f} mm (rotation {angle:.2f} degrees) from the known shift {FOLLOWUP_SHIFT_MM} mm")

    rows = {(r.feature, r.timepoint): r for r in logic.delta_rows(nodes.table) if r.lesion == lesion}
    volume = rows[("original_shape_VoxelVolume", DELTA_LABELS[1])]
    expected = 100.0 * (eroded.sum() - inside.sum()) / inside.sum()
    assert volume.delta_rel < 0 and _same(volume.delta_rel, expected, 1e-9), (
        f"volume change {volume.delta_rel} %; the {FOLLOWUP_EROSION_MM:g} mm erosion removed "
        f"{inside.sum() - eroded.sum()} of {inside.sum()} voxels: {expected} %")
    mean = rows[("original_firstorder_Mean", DELTA_LABELS[1])]
    expected_mean = float(followup_voxels[eroded].astype(np.float64).mean())
    assert _same(mean.value, expected_mean, 1e-6), (
        f"follow-up mean {mean.value}; the eroded lesion {FOLLOWUP_HU_DROP:g} HU darker has mean {expected_mean}")
    return nodes


def cohort_sample(scene, data_dir, tmp_dir, workers: int = 1):
    """A two-case cohort (brain2, breast1) run by :class:`CohortLogic` on a Dask LocalCluster of ``workers``
    processes (0: in this process), into ``tmp_dir``/cohort. Checks: both cases done in the status table, and
    every feature of the results table equal to a single extraction of that case through :class:`ExtractionLogic`.
    """
    folder = Path(tmp_dir) / "cohort"
    folder.mkdir(parents=True, exist_ok=True)
    cases = {case: sample_paths(data_dir, case) for case in COHORT_CASES}
    with open(folder / "cohort.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "mask"])
        writer.writerows([case, image, label] for case, (image, label) in cases.items())
    logic = CohortLogic(scene)
    cohort = logic.load_cohort(folder / "cohort.csv")
    assert not cohort.problems, f"problems in {folder / 'cohort.csv'}: {cohort.problems}"
    out = folder / "out"
    summary = logic.run(cohort, out, settings=COHORT_SETTINGS, workers=workers)
    assert summary.failed == summary.invalid == 0, f"cohort run: {summary}"

    status = logic.status_table(cohort, out)
    states = {_cell(status, r, "id"): _cell(status, r, "status") for r in range(status.GetNumberOfRows())}
    assert states == {case: "done" for case in COHORT_CASES}, f"cohort status {states}; expected every case done"
    results = logic.results_table(cohort, out)
    extraction = ExtractionLogic(scene)
    for r in range(results.GetNumberOfRows()):
        case = _cell(results, r, "id")
        volume = extraction.load_volume(cases[case][0], scene.GenerateUniqueName(f"{case} image"))
        segmentation = extraction.load_segmentation(cases[case][1], volume, scene.GenerateUniqueName(f"{case} label"))
        single = {v.feature: v.value for v in extraction.feature_values(
            extraction.extract(volume, segmentation, [_cell(results, r, "segment")], settings=COHORT_SETTINGS))}
        batch = {name: float(_cell(results, r, name)) for name in single}
        different = {k: (batch[k], single[k]) for k in single if not _same(batch[k], single[k], 0.0)}
        assert single and not different, (
            f"{case}: {len(different)} of {len(single)} cohort features differ from a single extraction (cohort, single): "
            f"{different}")
    return {"status": status, "results": results, "summary": summary}


def run_all(scene, data_dir, tmp_dir) -> dict:
    """Every scenario in order (``extract_sample`` starts with ``load_sample``); returns what each produced."""
    table = extract_sample(scene, data_dir)
    reloaded = save_and_reload(scene, data_dir, Path(tmp_dir) / "RadiomicsLab-scenario.mrb")
    return {"table": table, "reloaded_table": reloaded, "feature_maps": feature_maps_sample(scene, data_dir),
            "observers": observers_sample(scene, data_dir), "habitats": habitats_sample(scene, data_dir),
            "delta": delta_sample(scene, data_dir), "cohort": cohort_sample(scene, data_dir, tmp_dir)}


def _feature_tables(scene) -> list:
    tables = scene.GetNodesByClass("vtkMRMLTableNode")
    found = [tables.GetItemAsObject(i) for i in range(tables.GetNumberOfItems())]
    return [t for t in found if t.GetAttribute(KIND_ATTRIBUTE) == FEATURES_KIND]


def _cell(table_node, row: int, column: str) -> str:
    """The text of one cell of a table node, by column name."""
    table = table_node.GetTable()
    assert table.GetColumnByName(column) is not None, f"table '{table_node.GetName()}' has no column '{column}'"
    return table.GetColumnByName(column).GetValue(row)


def _same(a: float, b: float, rel: float) -> bool:
    """a equals b within ``rel`` relative difference (NaN equals NaN)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


def _distance_mm(region, reference, beyond_grid: bool = False):
    """Distance (mm, voxel spacing) from every voxel centre to the nearest voxel centre of ``region`` (a boolean
    (z, y, x) array on ``reference``'s grid), 0 inside it, from SimpleITK's signed Maurer distance map: an
    independent check of :mod:`RadiomicsLabLib.regions` (scipy). ``beyond_grid``: the voxels just outside the
    grid belong to ``region`` (as background does for an erosion).

    Outside ``region`` Maurer's distance to the region's contour is the distance to its nearest voxel: a nearest
    voxel always has a face neighbour outside the region, one step closer otherwise.
    """
    import numpy as np
    import SimpleITK as sitk

    padded = sitk.ConstantPad(image_on_grid(region, reference), [1, 1, 1], [1, 1, 1], 1 if beyond_grid else 0)
    distance = sitk.SignedMaurerDistanceMap(padded, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(distance)[1:-1, 1:-1, 1:-1].astype(np.float64), 0.0)
