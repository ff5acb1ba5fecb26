"""End-to-end scenarios shared by pytest (headless scene) and the Slicer module self-test (``slicer.mrmlScene``).

Each function takes the scene and the reference data folder, does what a user would do through
:class:`~RadiomicsLabLib.mrml.ExtractionLogic`, checks the outcome and returns what it made.
A failed check raises ``AssertionError`` with a message saying what differed.
"""

from pathlib import Path

from .extraction import ExtractionLogic
from .tables import FEATURES_KIND, KIND_ATTRIBUTE

SEGMENT = "Label_1"
FEATURE = "original_firstorder_Mean"


def sample_paths(data_dir, case: str = "brain1") -> tuple[Path, Path]:
    folder = Path(data_dir) / "pyradiomics_cases"
    image, label = folder / f"{case}_image.nrrd", folder / f"{case}_label.nrrd"
    assert image.is_file() and label.is_file(), (
        f"Sample case '{case}' not found in {folder}; set RADIOMICSLAB_DATA to the shared data folder."
    )
    return image, label


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


def run_all(scene, data_dir, tmp_dir) -> dict:
    """Every scenario in order (``extract_sample`` starts with ``load_sample``); returns what each produced."""
    table = extract_sample(scene, data_dir)
    reloaded = save_and_reload(scene, data_dir, Path(tmp_dir) / "RadiomicsLab-scenario.mrb")
    return {"table": table, "reloaded_table": reloaded}


def _feature_tables(scene) -> list:
    tables = scene.GetNodesByClass("vtkMRMLTableNode")
    found = [tables.GetItemAsObject(i) for i in range(tables.GetNumberOfItems())]
    return [t for t in found if t.GetAttribute(KIND_ATTRIBUTE) == FEATURES_KIND]
