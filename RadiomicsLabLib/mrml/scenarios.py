"""End-to-end scenarios shared by pytest (headless scene) and the Slicer module self-test (``slicer.mrmlScene``).

They run on RadiomicsLab's Sample Data cases only: pyradiomics' brain1, brain2 and breast1 MR test cases
(image and label map), the files the module registers with Slicer's Sample Data module
(:mod:`RadiomicsLabLib.mrml.sampledata`). Each function takes the scene and the cases the caller got
(``scenario(scene, cases)``; those that write files also a folder for them): a dict ``{case: (image path,
label path)}`` as :func:`RadiomicsLabLib.mrml.sampledata.sample_cases` returns it (desktop Slicer: from Sample
Data's download cache; headless: from RadiomicsLab's sample cache, both checked against the registered
SHA-256), or a folder holding the case files. Nothing here looks anywhere else (no reference data folder, no
environment variable) and nothing is installed.

Each does what a user would do through the Logic classes of :mod:`RadiomicsLabLib.mrml`, checks the outcome
against values computed another way and returns what it made. A failed check raises ``AssertionError`` with
a message saying what differed. :data:`SCENARIOS` lists them in :func:`run_all` order:

- ``load_sample``: brain1 loads as a volume and a segmentation.
- ``extract_sample``: brain1's features with the default preset equal pyradiomics' own extractor on the files
  when ``radiomics`` is importable; without it (desktop Slicer installs no pyradiomics) the table comes from the
  native engine and must agree with the IBSI engine on the 101 features both define the same way (see
  :func:`extract_sample`). The cohort and delta scenarios run on the native engine there too.
- ``save_and_reload``: the study survives an ``.mrb`` round trip.
- ``feature_maps_sample``: IBSI maps of brain1 equal the engine on one voxel's kernel.
- ``observers_sample``: brain1's label twice and eroded by 2 mm (SimpleITK's distance map, overlap measures).
- ``habitats_sample``: two channels, brain1's MR and its gradient magnitude (a derived channel: the cases have one
  modality each); habitats checked in numpy-standardised channels (statistics, nearest-centre assignment, centres
  the means of their voxels); a 0-7 mm ring checked with SimpleITK's distance map.
- ``delta_sample``: brain1 and a follow-up built from it with a known answer (rigid shift, 2 mm erosion, intensity
  drop): the registration recovers the shift, the volume and mean changes are the built ones.
- ``cohort_sample``: brain2 and breast1 as a cohort, equal to single extractions.

The cases have one segmentation per lesion and one timepoint, so the second reader and the follow-up scan are
built from the real data with a known answer (documented in each function).
"""

import csv
import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path

from ..regions import image_on_grid
from .cohort import CohortLogic
from .delta import DeltaLogic
from .extraction import ExtractionLogic
from .featuremaps import FeatureMapLogic, map_on_volume_grid
from .habitats import HabitatLogic
from .observers import MAJORITY_SEGMENT, ObserverLogic
from .tables import FEATURES_KIND, KIND_ATTRIBUTE

SEGMENT = "Label_1"
FEATURE = "original_firstorder_Mean"
#: The case every scenario but the cohort uses.
SAMPLE_CASE = "brain1"
#: Every scenario, in run_all order; all take (scene, cases), save_and_reload and cohort_sample also a path / folder.
SCENARIOS = ("load_sample", "extract_sample", "save_and_reload", "feature_maps_sample", "observers_sample",
             "habitats_sample", "delta_sample", "cohort_sample")

#: extract_sample without pyradiomics: IBSI engine settings equal to the default preset's (3D, bin width 25; the
#: bins are counted from the multiple of 25 below the ROI's minimum, as pyradiomics counts them).
EXTRACT_IBSI_FAMILIES = ("morphology", "statistics", "histogram", "glcm", "glrlm", "glszm", "ngldm", "ngtdm")
#: Documented definitional differences between pyradiomics and IBSI (Testing/test_ibsi_vs_pyradiomics.py): PCA
#: axis lengths (sample vs population covariance: IBSI = pyradiomics x sqrt(N / (N - 1))); mesh-based features
#: (marching cubes resolve ambiguous configurations differently): within 1 %, compactness 2 within 3 %.
PCA_AXES = {"morph_pca_maj_axis", "morph_pca_min_axis", "morph_pca_least_axis"}
MESH_BASED = {"morph_volume", "morph_area_mesh", "morph_av", "morph_sphericity", "morph_comp_1", "morph_comp_2",
              "morph_sph_dispr"}
#: pyradiomics shape features deprecated (not in the default preset's output).
DEPRECATED_SHAPE = {"original_shape_Compactness1", "original_shape_Compactness2", "original_shape_SphericalDisproportion"}
#: feature_maps_sample: IBSI intensity statistics and GLCM maps (base tags: the 3D averaged and merged GLCM), 3 x 3 x 3
#: kernels, bins of 25 counted from 0 (re-segmentation range [0, inf): brain1's MR intensities are all >= 0, so no voxel
#: is removed, and every kernel gets the grey levels the whole ROI gets, so a kernel extracted on its own is comparable).
#: GLCM features normalised by Ng, the ROI's number of grey levels (cm_inv_diff_norm, cm_inv_diff_mom_norm), are left
#: out: a kernel extracted alone has its own Ng.
MAP_FEATURES = ("stat_mean", "stat_var", "stat_skew", "stat_kurt", "stat_median", "stat_p90", "stat_energy",
                "cm_contrast", "cm_joint_entr", "cm_corr", "cm_clust_shade", "cm_inv_diff")
MAP_FAMILIES = ("statistics", "glcm")
MAP_SETTINGS = {"bin_width": 25.0, "resegment_range": (0.0, None)}
#: observers_sample: the third observer is the real label eroded by this many mm (ObserverLogic's ``grow:mm=-2``).
EROSION_MM = 2.0
#: habitats_sample: the channels (brain1's MR image, and its gradient magnitude: SimpleITK's GradientMagnitude,
#: central differences in mm), number of habitats, seed, and the peritumoral ring (mm; brain1's slices are 6.5 mm
#: apart, so 7 mm reaches the slices above and below the tumour).
HABITAT_CHANNELS, N_HABITATS, HABITAT_SEED, RING_MM = ("MR", "MR gradient"), 3, 1, (0.0, 7.0)
#: A converged k-means centre is the mean of its voxels up to the stopping rule: scikit-learn's KMeans stops once the
#: centres move less than sqrt(tol x mean variance) = sqrt(1e-4) = 0.01 SD in total (z-scored channels); measured on
#: brain1 for k 2-4, seeds 0-5: at most 0.0022 SD.
KMEANS_CENTRE_TOLERANCE_SD = 0.01
#: delta_sample: the synthetic follow-up of brain1 (see delta_sample) and how it is computed.
FOLLOWUP_SHIFT_MM = (6.0, -4.0, 3.0)        # rigid translation of the whole scan, LPS mm
FOLLOWUP_EROSION_MM = 2.0                   # the lesion shrinks by 2 mm all round
FOLLOWUP_INTENSITY_DROP = 30.0              # and its remaining voxels get 30 (MR intensity units) darker
DELTA_DATES, DELTA_LABELS = ("2021-01-04", "2021-02-15"), ("baseline", "week6")
DELTA_SETTINGS = {"featureClass": {"firstorder": [], "shape": []}, "setting": {"binWidth": 25}}
#: Rigid registration (RadiomicsLabLib.registration.register's levels) with the metric in the lesion grown by 40 mm:
#: brain1's slices are 6.5 mm apart, and DeltaLogic's default 20 mm leaves too few slices to pin the tilt (seeds 1, 3,
#: 7: 0.27-0.43 degrees off; seed 2: no convergence in 300 iterations); with 40 mm all four are within 0.1 degree.
DELTA_REGISTRATION = {"shrink_factors": (2, 1), "smoothing_sigmas_mm": (2.0, 0.0), "iterations": 300, "seed": 7}
DELTA_MARGIN_MM = 40.0
#: cohort_sample: two small pyradiomics cases, first order + GLCM with 16 bins.
COHORT_CASES = ("brain2", "breast1")
COHORT_SETTINGS = {"featureClass": {"firstorder": [], "glcm": []}, "setting": {"binCount": 16}}


def _has_pyradiomics() -> bool:
    """Whether pyradiomics (``radiomics``) can be imported here (a ``None`` in ``sys.modules`` blocks it)."""
    try:
        return importlib.util.find_spec("radiomics") is not None
    except (ImportError, ValueError):
        return False


def _engine_settings(settings: dict) -> dict:
    """pyradiomics-style ``settings`` as the scenarios run them: on pyradiomics when it is importable, else on
    RadiomicsLab's native engine (the same parameters without pyradiomics)."""
    return settings if _has_pyradiomics() else {**settings, "engine": "native"}


def sample_paths(cases, case: str = SAMPLE_CASE) -> tuple[Path, Path]:
    """(image, label map) of a sample case among ``cases``: a dict ``{case: (image, label)}``
    (:func:`RadiomicsLabLib.mrml.sampledata.sample_cases`), or a folder holding ``<case>_image.nrrd`` and
    ``<case>_label.nrrd`` (a sample cache folder, or a folder whose ``pyradiomics_cases/`` holds them)."""
    if isinstance(cases, Mapping):
        assert case in cases, (f"Sample case '{case}' not given (given: {', '.join(map(str, cases)) or 'none'}); "
                               "get the sample cases with RadiomicsLabLib.mrml.sampledata.sample_cases().")
        image, label = (Path(path) for path in cases[case])
    else:
        folder = Path(cases)
        if (folder / "pyradiomics_cases").is_dir():
            folder = folder / "pyradiomics_cases"
        image, label = folder / f"{case}_image.nrrd", folder / f"{case}_label.nrrd"
    assert image.is_file() and label.is_file(), (
        f"Sample case '{case}' not found ({image}, {label}); get the sample cases with "
        "RadiomicsLabLib.mrml.sampledata.sample_cases() (desktop Slicer: its Sample Data module)."
    )
    return image, label


def load_sample(scene, cases, case: str = SAMPLE_CASE):
    """Load a sample case: (scalar volume node, segmentation node with ``Label_N`` segments)."""
    image, label = sample_paths(cases, case)
    logic = ExtractionLogic(scene)
    volume = logic.load_volume(image)
    segmentation = logic.load_segmentation(label, volume)
    assert volume.IsA("vtkMRMLScalarVolumeNode") and volume.GetImageData() is not None, f"{image} loaded no voxels"
    assert segmentation.GetSegmentation().GetNumberOfSegments() > 0, f"{label} gave no segment"
    return volume, segmentation


def extract_sample(scene, cases, reference: str = "auto"):
    """Extract brain1 with the default preset (pyradiomics' defaults) and check every feature another way.

    ``reference="pyradiomics"`` (what ``"auto"`` means when ``radiomics`` is importable): pyradiomics' own
    ``RadiomicsFeatureExtractor`` on the files gives the same feature names and exactly the same values.

    ``reference="ibsi"`` (what ``"auto"`` means without pyradiomics, when the table comes from RadiomicsLab's
    native engine): the IBSI engine, extracted through :class:`ExtractionLogic` with the default preset's settings
    (3D, bin width 25 counted from the multiple of 25 below the ROI's minimum, as pyradiomics counts bins), gives
    every feature both define the same way (:data:`RadiomicsLabLib.ibsi.names.PYRADIOMICS_TO_IBSI`; all of them but
    pyradiomics' deprecated shape features must be in the table) to 1e-6 relative, save the documented definitional
    differences: PCA axis lengths times sqrt(N / (N - 1)) (1e-9), mesh-based features within 1 % (compactness 2
    within 3 %). The IBSI table is removed from the scene afterwards.
    """
    import numpy as np

    assert reference in ("auto", "pyradiomics", "ibsi"), f"reference '{reference}': use auto, pyradiomics or ibsi"
    if reference == "auto":
        reference = "pyradiomics" if _has_pyradiomics() else "ibsi"
    volume, segmentation = load_sample(scene, cases)
    logic = ExtractionLogic(scene)
    table = logic.extract(volume, segmentation, engine=None if _has_pyradiomics() else "native")
    assert table.IsA("vtkMRMLTableNode") and scene.GetNodeByID(table.GetID()) is table, "no feature table in the scene"
    ours = {v.feature: v.value for v in logic.feature_values(table) if v.segment == SEGMENT}
    assert FEATURE in ours, f"table '{table.GetName()}' has no row {SEGMENT} / {FEATURE}"

    if reference == "pyradiomics":
        from radiomics import featureextractor

        image, label = sample_paths(cases)
        expected = featureextractor.RadiomicsFeatureExtractor().execute(str(image), str(label), label=1)
        expected = {k: float(np.asarray(v)) for k, v in expected.items() if not k.startswith("diagnostics_")}
        assert set(ours) == set(expected), (
            f"feature names differ from pyradiomics: only ours {sorted(set(ours) - set(expected))}, "
            f"only pyradiomics {sorted(set(expected) - set(ours))}"
        )
        different = {k: (ours[k], expected[k]) for k in expected if ours[k] != expected[k]}
        assert not different, f"{len(different)} features differ from pyradiomics (ours, pyradiomics): {different}"
        return table
    _check_against_ibsi_engine(scene, logic, volume, segmentation, ours)
    return table


def _check_against_ibsi_engine(scene, logic, volume, segmentation, ours: dict):
    """extract_sample's second route (see there): ``ours`` (pyradiomics names) against the IBSI engine."""
    import numpy as np
    import SimpleITK as sitk

    from ..ibsi.names import PYRADIOMICS_TO_IBSI
    from .convert import segment_to_sitk, volume_to_sitk

    segment = logic.resolve_segments(segmentation, [SEGMENT])[0]
    inside = sitk.GetArrayFromImage(segment_to_sitk(segmentation, segment, volume)) > 0
    voxels = sitk.GetArrayFromImage(volume_to_sitk(volume))[inside]
    lowest = math.floor(float(voxels.min()) / 25.0) * 25.0
    settings = {"engine": "ibsi", "ibsi": {"dimensions": ["3D"], "families": list(EXTRACT_IBSI_FAMILIES),
                                           "discretisation": "FBS", "bin_width": 25.0, "resegment_range": [lowest, None]}}
    ibsi_table = logic.extract(volume, segmentation, [SEGMENT], settings=settings)
    ibsi = {v.feature: v.value for v in logic.feature_values(ibsi_table)}
    scene.RemoveNode(ibsi_table)
    absent = set(PYRADIOMICS_TO_IBSI) - set(ours)
    assert absent <= DEPRECATED_SHAPE, f"features of both pyradiomics and IBSI missing from the table: {sorted(absent)}"
    compared, different = 0, {}
    for name, tag in PYRADIOMICS_TO_IBSI.items():
        if name in absent:
            continue
        value, expected = ours[name], ibsi[tag]
        if tag in PCA_AXES:
            value *= math.sqrt(inside.sum() / (inside.sum() - 1))
        tolerance = {"morph_comp_2": 0.03}.get(tag, 0.01) if tag in MESH_BASED else (1e-9 if tag in PCA_AXES else 1e-6)
        if not np.isclose(value, expected, rtol=tolerance, atol=1e-12):
            different[name] = (ours[name], tag, expected)
        compared += 1
    assert compared >= len(PYRADIOMICS_TO_IBSI) - len(DEPRECATED_SHAPE) and not different, (
        f"{len(different)} of {compared} features differ from the IBSI engine (ours, IBSI tag, IBSI): {different}")


def save_and_reload(scene, cases, path):
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


def feature_maps_sample(scene, cases):
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

    volume, segmentation = load_sample(scene, cases)
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
    maps = {name: sitk.GetArrayFromImage(map_on_volume_grid(node)) for name, node in result.maps.items()}
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


def observers_sample(scene, cases):
    """Three observers of brain1's tumour through :class:`ObserverLogic`.

    Readers 1 and 2 load the same real label map (a mask compared with itself); the third observer is
    ObserverLogic's documented perturbation ``grow:mm=-2``, the label eroded by 2 mm. Checks: Dice 1 and
    Hausdorff 0 between the identical readers; the eroded observer equal to the label's voxels farther than 2 mm
    from the background by SimpleITK's Maurer distance map; its Dice with reader 1 equal to SimpleITK's
    LabelOverlapMeasures; the majority vote equal to the label (two of the three readers hold exactly it).
    """
    import numpy as np
    import SimpleITK as sitk

    from .convert import segment_ids, segment_to_sitk

    image, mask_path = sample_paths(cases)
    logic = ObserverLogic(scene)
    volume = logic.load_volume(image, scene.GenerateUniqueName(f"{SAMPLE_CASE} MR"))
    readers = [logic.load_segmentation(mask_path, volume, scene.GenerateUniqueName(f"reader {i}")) for i in (1, 2)]
    names = ["reader 1", "reader 2"]
    results = logic.analyse(volume, readers, names=names, lesion=SAMPLE_CASE, features=False,
                            perturbations=[f"grow:mm={-EROSION_MM:g}"])
    pairs = {(row["observer_a"], row["observer_b"]): row for row in logic.table_rows(results.agreement)}
    eroded_name = next(name for name in results.study.lesions[0].lesion.masks if name not in names)
    assert set(pairs) == {tuple(names), (names[0], eroded_name), (names[1], eroded_name)}, (
        f"agreement pairs {sorted(pairs)}; expected every pair of {names + [eroded_name]}")
    same = pairs[tuple(names)]
    assert (same["dice"], same["hausdorff_mm"]) == (1.0, 0.0), (
        f"a mask compared with itself has Dice {same['dice']} and Hausdorff {same['hausdorff_mm']} mm; expected 1 and 0")

    label = segment_to_sitk(readers[0], segment_ids(readers[0])[0], volume)
    inside = sitk.GetArrayFromImage(label) > 0
    expected = inside & (_distance_mm(~inside, label, beyond_grid=True) > EROSION_MM)
    eroded = sitk.GetArrayFromImage(results.study.lesions[0].lesion.masks[eroded_name]) > 0
    assert 0 < expected.sum() < inside.sum(), f"a {EROSION_MM:g} mm erosion of the label leaves {expected.sum()} voxels"
    assert np.array_equal(eroded, expected), (
        f"observer {eroded_name} has {eroded.sum()} voxels, {np.count_nonzero(eroded != expected)} of them differing "
        f"from the label ({inside.sum()} voxels) eroded by {EROSION_MM} mm with SimpleITK's distance map ({expected.sum()})")
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(sitk.Cast(label > 0, sitk.sitkUInt8), image_on_grid(expected, label))
    dice = pairs[(names[0], eroded_name)]["dice"]
    assert abs(dice - overlap.GetDiceCoefficient()) <= 1e-12 and dice < 1.0, (
        f"Dice of reader 1 and the eroded label is {dice}; SimpleITK's LabelOverlapMeasures gives {overlap.GetDiceCoefficient()}")
    majority = sitk.GetArrayFromImage(logic.consensus_mask(results.consensus[0], MAJORITY_SEGMENT, volume)) > 0
    assert np.array_equal(majority, inside), (
        f"the majority vote of two identical readers and an erosion differs from their mask in "
        f"{np.count_nonzero(majority != inside)} voxels")
    return results


def habitats_sample(scene, cases):
    """Habitats of brain1's tumour from two channels, and a 0-7 mm peritumoral ring, through :class:`HabitatLogic`.

    The sample cases have one modality each, so the second channel is derived from the first: the channels are
    brain1's MR image and its gradient magnitude (SimpleITK's ``GradientMagnitude``, central differences in mm),
    made here and added to the scene as a volume on the same grid. k-means, :data:`N_HABITATS` habitats, seed
    :data:`HABITAT_SEED`, each channel z-scored over the tumour (RadiomicsLab's defaults).

    Checks against numpy on the channel arrays: one habitat segmentation whose segments (one per habitat with
    voxels, tagged 1..k) do not overlap and fill the tumour, each with the voxel count of its statistics row;
    fractions summing to 1; each row's raw and normalised channel means equal to the means of that segment's voxels
    (raw, and z-scored with the tumour's mean and standard deviation); habitats numbered by ascending MR centre; the
    partition the k-means assignment: every voxel nearest (Euclidean, z-scored) to its own habitat's centre of the
    fitted model, and each centre the mean of its voxels within :data:`KMEANS_CENTRE_TOLERANCE_SD`.
    The ring segment equals the voxels outside the tumour within 7 mm of it by SimpleITK's Maurer distance map.
    """
    import numpy as np
    import SimpleITK as sitk

    from .convert import sitk_to_volume_node, segment_to_sitk, volume_to_sitk

    image_path, label_path = sample_paths(cases)
    logic = HabitatLogic(scene)
    reference = logic.load_volume(image_path, scene.GenerateUniqueName(f"{SAMPLE_CASE} {HABITAT_CHANNELS[0]}"))
    image = volume_to_sitk(reference)
    gradient_image = sitk.GradientMagnitude(sitk.Cast(image, sitk.sitkFloat64), useImageSpacing=True)
    gradient = sitk_to_volume_node(gradient_image, scene.GenerateUniqueName(f"{SAMPLE_CASE} {HABITAT_CHANNELS[1]}"),
                                   scene)
    channels = dict(zip(HABITAT_CHANNELS, (reference, gradient)))
    tumour = logic.load_segmentation(label_path, reference, scene.GenerateUniqueName(f"{SAMPLE_CASE} tumour"))
    tumour_segment = logic.resolve_segments(tumour)[0]
    nodes = logic.habitats(tumour, tumour_segment, channels, N_HABITATS, name=SAMPLE_CASE, seed=HABITAT_SEED)
    assert len(nodes.segmentations) == 1, f"{len(nodes.segmentations)} habitat segmentations for one patient"
    habitats = nodes.segmentations[0]
    rows = logic.table_rows(nodes.statistics)
    total = sum(row["fraction"] for row in rows)
    assert abs(total - 1.0) <= 1e-9, f"habitat fractions {[row['fraction'] for row in rows]} sum to {total}, not 1"
    present = {int(row["habitat"]): int(row["voxels"]) for row in rows if row["voxels"] > 0}
    segments = logic.habitat_segments(habitats)
    assert sorted(segments) == sorted(present) and len(present) >= 2, (
        f"habitat segments {sorted(segments)}; the statistics table has voxels in habitats {sorted(present)}")

    inside = sitk.GetArrayFromImage(segment_to_sitk(tumour, tumour_segment, reference)) > 0
    raw = np.stack([sitk.GetArrayFromImage(image).astype(np.float64)[inside],
                    sitk.GetArrayFromImage(gradient_image)[inside]], axis=1)
    scaled = (raw - raw.mean(axis=0)) / raw.std(axis=0)
    labels = np.zeros(inside.shape, np.int64)
    for habitat, (segment_id, segment_label) in segments.items():
        voxels = sitk.GetArrayFromImage(segment_to_sitk(habitats, segment_id, reference)) > 0
        assert voxels.sum() == present[habitat], (
            f"segment '{segment_label}' has {voxels.sum()} voxels, its statistics row {present[habitat]}")
        assert not np.any(labels[voxels]), f"segment '{segment_label}' overlaps another habitat"
        labels[voxels] = habitat
    assert np.array_equal(labels > 0, inside), (
        f"the habitat segments do not fill the tumour ({np.count_nonzero((labels > 0) != inside)} voxels differ)")

    labels = labels[inside]
    by_habitat = {int(row["habitat"]): row for row in rows}
    ids = sorted(present)
    centres = np.array([scaled[labels == h].mean(axis=0) for h in ids])
    for h, centre, raw_mean in zip(ids, centres, (raw[labels == h].mean(axis=0) for h in ids)):
        for j, channel in enumerate(HABITAT_CHANNELS):
            row = by_habitat[h]
            assert _same(row[f"mean_{channel}"], raw_mean[j], 1e-9) and abs(row[f"normalised_mean_{channel}"] - centre[j]) <= 1e-9, (
                f"habitat {h} {channel}: statistics row mean {row[f'mean_{channel}']} (z-scored "
                f"{row[f'normalised_mean_{channel}']}); its voxels' mean is {raw_mean[j]} (z-scored {centre[j]})")
    model_centres = np.asarray(nodes.model.clustering.cluster_centers_)  # habitat 1..k, z-scored units
    assert np.all(np.diff(model_centres[:, 0]) > 0), (
        f"habitats are not numbered by ascending {HABITAT_CHANNELS[0]} centre: {model_centres[:, 0]}")
    distances = ((scaled[:, None, :] - model_centres[None]) ** 2).sum(axis=2)
    own = distances[np.arange(len(labels)), labels - 1]
    nearer = np.count_nonzero(own > distances.min(axis=1) + 1e-9)
    assert nearer == 0, (f"{nearer} of {len(labels)} voxels are nearer to another habitat's centre than to their own: "
                         "the habitats are not the k-means assignment of the z-scored channels")
    drift = np.abs(centres - model_centres[np.array(ids) - 1]).max()
    assert drift <= KMEANS_CENTRE_TOLERANCE_SD, (
        f"a habitat's voxels average {drift:.4f} SD away from its k-means centre: not a converged k-means")

    ring_id = logic.add_ring(tumour, tumour_segment, *RING_MM)
    ring = sitk.GetArrayFromImage(segment_to_sitk(tumour, ring_id, reference)) > 0
    mask = segment_to_sitk(tumour, tumour_segment, reference)
    inside = sitk.GetArrayFromImage(mask) > 0
    expected = ~inside & (_distance_mm(inside, mask) <= RING_MM[1])
    assert np.array_equal(ring, expected), (
        f"the {RING_MM[0]:g}-{RING_MM[1]:g} mm ring has {ring.sum()} voxels, {np.count_nonzero(ring != expected)} of them "
        f"differing from SimpleITK's distance map ({expected.sum()} voxels)")
    return nodes


def delta_sample(scene, cases):
    """Delta-radiomics of a baseline and a synthetic follow-up through :class:`DeltaLogic` (Sequences).

    Baseline: brain1's real MR and label. Follow-up, built with a known answer: the label eroded by
    :data:`FOLLOWUP_EROSION_MM` (voxels farther than 2 mm from the background), its remaining voxels
    :data:`FOLLOWUP_INTENSITY_DROP` darker, and the whole scan moved by the rigid translation
    :data:`FOLLOWUP_SHIFT_MM` (its origin moved: the voxels are not resampled). The two become a study
    (volume and segmentation sequences indexed by date, a browser); DeltaLogic registers the follow-up (rigid, the
    metric within :data:`DELTA_MARGIN_MM` of the lesion) and computes the deltas. Checks: the sequences; the
    registration recovers the translation (within 1 mm over the lesion, 0.5 degrees); the volume change is the
    erosion's, 100 (N_eroded - N) / N %, and negative; the follow-up mean is the baseline mean over the eroded
    lesion minus the drop.
    """
    import numpy as np
    import SimpleITK as sitk

    from ..registration import affine_matrix, rotation_angle_degrees
    from .convert import (label_map_to_segmentation_node, segment_ids, segment_name, segment_to_sitk, sitk_to_volume_node,
                          transform_node_to_sitk, volume_to_sitk)

    image_path, mask_path = sample_paths(cases)
    logic = DeltaLogic(scene)
    loader = ExtractionLogic(scene)
    baseline = loader.load_volume(image_path, scene.GenerateUniqueName(f"{SAMPLE_CASE} baseline"))
    baseline_label = loader.load_segmentation(mask_path, baseline, scene.GenerateUniqueName(f"{SAMPLE_CASE} label baseline"))
    image = volume_to_sitk(baseline)
    label = segment_to_sitk(baseline_label, segment_ids(baseline_label)[0], baseline)
    inside = sitk.GetArrayFromImage(label) > 0
    eroded = inside & (_distance_mm(~inside, label, beyond_grid=True) > FOLLOWUP_EROSION_MM)
    voxels = sitk.GetArrayFromImage(image)
    followup_voxels = voxels.copy()
    followup_voxels[eroded] -= np.asarray(FOLLOWUP_INTENSITY_DROP, voxels.dtype)
    followup = image_on_grid(followup_voxels, image)
    followup_mask = image_on_grid(eroded, image)
    for moved in (followup, followup_mask):
        moved.SetOrigin([o + d for o, d in zip(image.GetOrigin(), FOLLOWUP_SHIFT_MM)])
    followup_node = sitk_to_volume_node(followup, scene.GenerateUniqueName(f"{SAMPLE_CASE} week6"), scene)
    followup_label = label_map_to_segmentation_node(followup_mask, scene.GenerateUniqueName(f"{SAMPLE_CASE} label week6"),
                                                    scene, followup_node)
    lesion = segment_name(baseline_label, segment_ids(baseline_label)[0])
    followup_label.GetSegmentation().GetNthSegment(0).SetName(lesion)

    study = logic.study_from_nodes([baseline, followup_node], [baseline_label, followup_label], dates=DELTA_DATES,
                                   labels=DELTA_LABELS, name=SAMPLE_CASE)
    sequence = study.GetMasterSequenceNode()
    indices = [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())]
    assert study.IsA("vtkMRMLSequenceBrowserNode") and indices == list(DELTA_DATES), (
        f"the study's volume sequence is indexed {indices}; expected the dates {list(DELTA_DATES)}")
    nodes = logic.compute(study, _engine_settings(DELTA_SETTINGS), register="rigid",
                          registration_options=DELTA_REGISTRATION, registration_margin_mm=DELTA_MARGIN_MM)

    transform = nodes.transforms.get((SAMPLE_CASE, DELTA_LABELS[1]))
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
        f"follow-up mean {mean.value}; the eroded lesion {FOLLOWUP_INTENSITY_DROP:g} darker has mean {expected_mean}")
    return nodes


def cohort_sample(scene, cases, tmp_dir, workers: int = 1):
    """A two-case cohort (brain2, breast1) run by :class:`CohortLogic` on a Dask LocalCluster of ``workers``
    processes (0: in this process), into ``tmp_dir``/cohort. Checks: both cases done in the status table, and
    every feature of the results table equal to a single extraction of that case through :class:`ExtractionLogic`.
    """
    paths = {case: sample_paths(cases, case) for case in COHORT_CASES}
    folder = Path(tmp_dir) / "cohort"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "cohort.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "mask"])
        writer.writerows([case, image, label] for case, (image, label) in paths.items())
    settings = _engine_settings(COHORT_SETTINGS)
    logic = CohortLogic(scene)
    cohort = logic.load_cohort(folder / "cohort.csv")
    assert not cohort.problems, f"problems in {folder / 'cohort.csv'}: {cohort.problems}"
    out = folder / "out"
    summary = logic.run(cohort, out, settings=settings, workers=workers)
    assert summary.failed == summary.invalid == 0, f"cohort run: {summary}"

    status = logic.status_table(cohort, out)
    states = {_cell(status, r, "id"): _cell(status, r, "status") for r in range(status.GetNumberOfRows())}
    assert states == {case: "done" for case in COHORT_CASES}, f"cohort status {states}; expected every case done"
    results = logic.results_table(cohort, out)
    extraction = ExtractionLogic(scene)
    for r in range(results.GetNumberOfRows()):
        case = _cell(results, r, "id")
        volume = extraction.load_volume(paths[case][0], scene.GenerateUniqueName(f"{case} image"))
        segmentation = extraction.load_segmentation(paths[case][1], volume, scene.GenerateUniqueName(f"{case} label"))
        single = {v.feature: v.value for v in extraction.feature_values(
            extraction.extract(volume, segmentation, [_cell(results, r, "segment")], settings=settings))}
        batch = {name: float(_cell(results, r, name)) for name in single}
        different = {k: (batch[k], single[k]) for k in single if not _same(batch[k], single[k], 0.0)}
        assert single and not different, (
            f"{case}: {len(different)} of {len(single)} cohort features differ from a single extraction (cohort, single): "
            f"{different}")
    return {"status": status, "results": results, "summary": summary}


def run_all(scene, cases, tmp_dir) -> dict:
    """Every scenario in order (``extract_sample`` starts with ``load_sample``); returns what each produced."""
    table = extract_sample(scene, cases)
    reloaded = save_and_reload(scene, cases, Path(tmp_dir) / "RadiomicsLab-scenario.mrb")
    return {"table": table, "reloaded_table": reloaded, "feature_maps": feature_maps_sample(scene, cases),
            "observers": observers_sample(scene, cases), "habitats": habitats_sample(scene, cases),
            "delta": delta_sample(scene, cases), "cohort": cohort_sample(scene, cases, tmp_dir)}


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
