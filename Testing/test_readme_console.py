"""The README's "Scripting from the Slicer Python console" examples, run as written.

Every ```python block of that section runs headless: a fresh ``SlicerApp`` whose scene is
``slicer.mrmlScene`` while the block runs (as in desktop Slicer's console; restored afterwards), the block
executed as is, then what it made is checked against values computed another way: pyradiomics on the
files, the documented kernel mean, SimpleITK's overlap measures and distance map, the known synthetic
follow-up of the delta example, pyradiomics on each cohort case.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from RadiomicsLabLib.data import data_dir, sample_case
from RadiomicsLabLib.mrml import scenarios

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Scripting from the Slicer Python console"


def examples() -> dict:
    """Sub-heading -> the one ```python block under it, in the README section."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"{README.name} has no section '{SECTION}'"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found = {}
    for part in section.split("\n### ")[1:]:
        title = part.splitlines()[0].strip()
        blocks = re.findall(r"```python\n(.*?)```", part, re.DOTALL)
        assert len(blocks) == 1, f"README example '{title}' has {len(blocks)} python blocks; give it one"
        found[title] = blocks[0]
    return found


def run_example(title: str) -> tuple:
    """(namespace, scene) of one README example run with ``slicer.mrmlScene`` set to a fresh headless scene."""
    import slicer

    from RadiomicsLabLib.mrml.app import new_headless_app

    if not (data_dir() / "pyradiomics_cases").is_dir():
        pytest.fail(f"Reference data not found in {data_dir()}; set RADIOMICSLAB_DATA to the shared data folder.")
    scene = new_headless_app().scene
    missing = object()
    before = getattr(slicer, "mrmlScene", missing)
    slicer.mrmlScene = scene
    namespace = {"__name__": "__readme_example__"}
    try:
        exec(compile(examples()[title], f"{README.name}: {title}", "exec"), namespace)
    finally:
        if before is missing:
            del slicer.mrmlScene
        else:
            slicer.mrmlScene = before
    return namespace, scene


def in_scene(scene, *nodes) -> bool:
    return all(node is not None and scene.GetNodeByID(node.GetID()) is node for node in nodes)


def pyradiomics_features(image, label, settings=None) -> dict:
    from radiomics import featureextractor

    extractor = featureextractor.RadiomicsFeatureExtractor(settings or {})
    values = extractor.execute(str(image), str(label), label=1)
    return {k: float(np.asarray(v)) for k, v in values.items() if not k.startswith("diagnostics_")}


def mask_array(logic, segmentation, segment, volume) -> np.ndarray:
    from RadiomicsLabLib.mrml.convert import segment_to_sitk

    return sitk.GetArrayFromImage(segment_to_sitk(segmentation, logic.resolve_segments(segmentation, [segment])[0],
                                                  volume)) > 0


# -------------------------------------------------------------------------------------------------
def test_the_section_has_one_example_per_workflow():
    assert list(examples()) == ["Extraction", "Feature maps", "Observers", "Habitats and a peritumoral ring",
                                "Delta-radiomics (two timepoints as Sequences)", "Cohort (batch on a Dask LocalCluster)"]
    text = README.read_text(encoding="utf-8").split(SECTION, 1)[1].split("\n## ", 1)[0]
    assert 'slicer.util.getModuleLogic("RadiomicsLab")' in text
    for code in examples().values():
        assert "slicer.mrmlScene" in code and "RadiomicsLabLib.data import" in code


def test_extraction_example_equals_pyradiomics_on_the_files():
    namespace, scene = run_example("Extraction")
    assert in_scene(scene, namespace["volume"], namespace["segmentation"], namespace["table"])
    image, label = sample_case("brain1")
    assert namespace["result"] == pyradiomics_features(image, label)   # every feature, exactly
    assert namespace["provenance"]["inputs"]["volume"] == namespace["volume"].GetName()


def test_feature_maps_example_are_the_kernel_values():
    """firstorder_Mean at every tumour voxel is the mean of the tumour voxels of its 3 x 3 x 3 cube (pyradiomics'
    masked kernel), computed with scipy; glcm_Contrast has its values inside the tumour and NaN outside."""
    from RadiomicsLabLib.mrml.convert import volume_to_sitk

    namespace, scene = run_example("Feature maps")
    result = namespace["result"]
    assert sorted(result.maps) == ["firstorder_Mean", "glcm_Contrast"] and in_scene(scene, *result.maps.values(), result.table)
    image, label = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))).astype(np.float64) for p in sample_case("brain1"))
    inside = label == 1
    cube = np.ones((3, 3, 3))
    sums = ndimage.convolve(np.where(inside, image, 0.0), cube, mode="constant")
    counts = ndimage.convolve(inside.astype(np.float64), cube, mode="constant")
    mean = sitk.GetArrayFromImage(volume_to_sitk(result.maps["firstorder_Mean"]))
    assert np.allclose(mean[inside], sums[inside] / counts[inside], rtol=1e-12, atol=0)
    contrast = sitk.GetArrayFromImage(volume_to_sitk(namespace["contrast"]))
    assert np.isfinite(contrast[inside]).all() and np.isnan(contrast[~inside]).all() and contrast[inside].max() > 0
    assert namespace["contrast"].GetDisplayNode().GetColorNode() is not None


def test_observers_example_dice_equals_simpleitk():
    namespace, scene = run_example("Observers")
    result, logic = namespace["result"], namespace["logic"]
    masks = result.study.lesions[0].lesion.masks
    assert list(masks) == ["alice", "p1_grow", "p2_shift"]
    rows = logic.table_rows(result.agreement)
    assert len(rows) == 3
    for row in rows:
        overlap = sitk.LabelOverlapMeasuresImageFilter()
        overlap.Execute(masks[row["observer_a"]], masks[row["observer_b"]])
        assert row["dice"] == pytest.approx(overlap.GetDiceCoefficient(), abs=1e-12)
        assert row["jaccard"] == pytest.approx(overlap.GetJaccardCoefficient(), abs=1e-12)
    alice = sitk.GetArrayFromImage(masks["alice"]) > 0
    assert (sitk.GetArrayFromImage(masks["p1_grow"]) > 0).sum() < alice.sum()   # the 2 mm erosion is smaller
    consensus = namespace["consensus"]
    assert in_scene(scene, consensus, result.agreement, result.features, result.icc)
    assert consensus.GetSegmentation().GetNumberOfSegments() == 2


def test_habitats_example_fills_the_tumour_and_the_ring_is_the_5_mm_margin():
    namespace, scene = run_example("Habitats and a peritumoral ring")
    logic, result, gtv, ct = namespace["logic"], namespace["result"], namespace["gtv"], namespace["channels"]["CT"]
    rows = logic.table_rows(result.statistics)
    assert sum(row["fraction"] for row in rows) == pytest.approx(1.0, abs=1e-12)
    (habitats,) = result.segmentations
    assert in_scene(scene, habitats, result.statistics, result.fractions_chart)
    assert sorted(logic.habitat_segments(habitats)) == [int(row["habitat"]) for row in rows if row["voxels"] > 0]
    tumour = mask_array(logic, gtv, "Label_1", ct)
    ring = mask_array(logic, gtv, namespace["ring"], ct)
    reference = sitk.ReadImage(str(data_dir() / "sts" / "STS_003" / "CT_mask.nii.gz"))
    expected = ~tumour & (scenarios._distance_mm(tumour, reference) <= 5.0)   # SimpleITK's distance map
    assert np.array_equal(ring, expected) and ring.sum() > 0
    segments = {v.segment for v in logic.feature_values(namespace["features"])}
    assert segments == {"Label_1", gtv.GetSegmentation().GetSegment(namespace["ring"]).GetName()}


def test_delta_example_volume_change_is_the_erosion_and_the_shift_is_found():
    from RadiomicsLabLib.registration import affine_matrix

    from RadiomicsLabLib.mrml.convert import transform_node_to_sitk

    namespace, scene = run_example("Delta-radiomics (two timepoints as Sequences)")
    study, nodes = namespace["study"], namespace["nodes"]
    assert in_scene(scene, study, nodes.table) and study.GetMasterSequenceNode().GetNumberOfDataNodes() == 2
    mask = sitk.ReadImage(str(data_dir() / "sts" / "STS_002" / "CT_mask.nii.gz"))
    inside = sitk.GetArrayFromImage(mask) > 0
    eroded = inside & (scenarios._distance_mm(~inside, mask, beyond_grid=True) > 2.0)   # SimpleITK, not regions.grow
    volume = next(r for r in namespace["result"] if r.feature == "original_shape_VoxelVolume" and r.timepoint == "week6")
    assert volume.delta_rel == pytest.approx(100.0 * (eroded.sum() - inside.sum()) / inside.sum(), rel=1e-9)
    matrix = affine_matrix(transform_node_to_sitk(nodes.transforms[("STS_002", "week6")]))
    centre = np.array(mask.TransformContinuousIndexToPhysicalPoint(
        [float(c) for c in np.argwhere(inside).mean(axis=0)[::-1]]))
    assert np.linalg.norm(matrix[:3, :3] @ centre + matrix[:3, 3] - (centre + (5.0, 0.0, 0.0))) < 1.0   # mm


def test_cohort_example_equals_pyradiomics_on_each_case():
    namespace, scene = run_example("Cohort (batch on a Dask LocalCluster)")
    summary, status, result = namespace["summary"], namespace["status"], namespace["result"]
    assert (summary.computed, summary.failed, summary.invalid) == (2, 0, 0)
    assert in_scene(scene, status, result) and result.GetNumberOfRows() == 2
    table = result.GetTable()
    for r in range(result.GetNumberOfRows()):
        case = table.GetColumnByName("id").GetValue(r)
        expected = pyradiomics_features(*sample_case(case))
        ours = {name: float(table.GetColumnByName(name).GetValue(r)) for name in expected}
        assert ours == expected, case
