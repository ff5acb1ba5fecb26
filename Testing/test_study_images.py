"""The path from images: features extracted by RadiomicsLab itself from the shared real images, then a study on them.

Eight real patients: the four soft-tissue sarcoma CTs of ``sts/`` (GTV mask) and the four ``pyradiomics_cases``
(MR and a phantom, their label maps), each mask (every labelled voxel) split into two segments by ``two_label_mask`` of
test_study_inputs.py (the tumour voxels above its middle slice relabelled 2), so that ``radiomicslab batch`` writes
two rows per patient (Label_1, Label_2) and the study has to pivot them. The outcome is a PLUMBING label, not a
clinical question: 1 for a sarcoma CT, 0 for a pyradiomics case. The run is tiny (2 outer folds, 1 repeat); it
proves that the batch table, the study, the model file and predict fit together, not any performance.
"""

import csv
import hashlib
import json

from conftest import read_csv, run_cli, write_rows
from test_study_inputs import FAST, two_label_mask

STS = ("STS_001", "STS_002", "STS_003", "STS_004")
PYRADIOMICS = ("brain1", "brain2", "breast1", "prostate_phantom")


def one_label(path, out_path):
    """The mask with every labelled voxel as label 1 (a case's label map may hold more than one label)."""
    import SimpleITK as sitk

    sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(path)) > 0, sitk.sitkUInt8), str(out_path))
    return out_path


def test_batch_features_to_study_to_predict(data, tmp_path):
    import yaml

    rows = []
    for patient in STS:
        folder = data / "sts" / patient
        rows.append((patient, folder / "CT_image.nii.gz", two_label_mask(
            one_label(folder / "CT_mask.nii.gz", tmp_path / f"{patient}_one.nrrd"), tmp_path / f"{patient}_two.nrrd"), 1))
    for case in PYRADIOMICS:
        folder = data / "pyradiomics_cases"
        rows.append((case, folder / f"{case}_image.nrrd", two_label_mask(
            one_label(folder / f"{case}_label.nrrd", tmp_path / f"{case}_one.nrrd"), tmp_path / f"{case}_two.nrrd"), 0))
    write_rows(tmp_path / "cohort.csv", ["id", "image", "mask"], [row[:3] for row in rows])
    write_rows(tmp_path / "clinical.csv", ["id", "sarcoma"], [(row[0], row[3]) for row in rows])
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(FAST))
    run = run_cli("batch", tmp_path / "cohort.csv", "--params", tmp_path / "fast.yaml", "--workers", "0",
                  "-o", tmp_path / "batch")
    assert run.returncode == 0, run.stderr
    features = tmp_path / "batch" / "features.csv"
    with open(features, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 16 and {r["segment"] for r in table} == {"Label_1", "Label_2"}

    out = tmp_path / "study"
    run = run_cli("study", features, "--clinical", tmp_path / "clinical.csv", "--outcome", "sarcoma", "--outer", "2",
                  "--inner", "2", "--repeats", "1", "--workers", "1", "-o", out)
    assert run.returncode == 0, run.stderr
    assert "pivot" in run.stderr and "segment" in run.stderr  # the notes say the table was pivoted, by segment
    predictions = read_csv(out / "predictions.csv")
    assert sorted(r["id"] for r in predictions) == sorted(row[0] for row in rows)
    card = json.loads((out / "model_card.json").read_text())
    assert card["inputs"]["features"]["sha256"] == hashlib.sha256(features.read_bytes()).hexdigest()
    assert all(name.startswith("segment-Label_") for name in card["features_used"])
    for name in ("metrics.csv", "report.html", "roc.png", "model.joblib"):
        assert (out / name).is_file(), name

    run = run_cli("predict", out / "model.joblib", features, "-o", tmp_path / "predicted.csv")
    assert run.returncode == 0, run.stderr
    predicted = read_csv(tmp_path / "predicted.csv")
    assert sorted(r["id"] for r in predicted) == sorted(row[0] for row in rows)
    assert all(0.0 <= float(r["prediction"]) <= 1.0 and r["group"] in ("positive", "negative") for r in predicted)
