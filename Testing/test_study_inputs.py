"""Study inputs (RadiomicsLabLib.study.inputs): real feature tables read, pivoted, joined and checked.

Tables:
- a real ``radiomicslab batch`` output made here by the batch core (``run_batch``, one process) from the
  pyradiomics cases brain1, brain2 and breast1 in ../shared/data, each with a two-label mask made from
  its real label map: the tumour voxels in slices above the tumour's middle slice relabelled 2 (so the
  table has two rows, Label_1 and Label_2, per patient); settings: first order + GLCM, 16 bins;
- scikit-learn's breast cancer table (Wisconsin diagnostic, 569 patients, 30 features) written to CSV
  and Parquet, with its diagnosis as the clinical outcome.
The clinical values of the three MR cases (follow-up times, events) and the batch labels of the breast
cancer patients are made up for the tests (there are none in the data); every bad table below is a real
one with the stated cells changed.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib.batch import run_batch
from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.study.inputs import StudyInputError, read_study

from conftest import breast_cancer_tables, read_csv, write_rows

CASES = ("brain1", "brain2", "breast1")
FAST = {"featureClass": {"firstorder": [], "glcm": []}, "setting": {"binCount": 16}}
N_FEATURES = 18 + 24  # first order + GLCM


def two_label_mask(label_path, out_path):
    """The real label map with the tumour voxels above its middle slice (z index) relabelled 2."""
    mask = sitk.ReadImage(str(label_path))
    array = sitk.GetArrayFromImage(mask)
    slices = np.flatnonzero((array == 1).any(axis=(1, 2)))
    middle = (slices.min() + slices.max() + 1) // 2
    upper = array[middle:]
    upper[upper == 1] = 2
    two = sitk.GetImageFromArray(array)
    two.CopyInformation(mask)
    sitk.WriteImage(two, str(out_path))
    return out_path


def batch_features(data, folder) -> Path:
    """Run the batch core on brain1, brain2, breast1 (two labels each); the output folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = data / "pyradiomics_cases"
    rows = [(name, cases / f"{name}_image.nrrd", two_label_mask(cases / f"{name}_label.nrrd", folder / f"{name}_two.nrrd"))
            for name in CASES]
    with open(folder / "cohort.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "mask"])
        writer.writerows(rows)
    summary = run_batch(folder / "cohort.csv", folder / "out", settings=FAST, workers=0)
    assert (summary.computed + summary.skipped, summary.failed) == (3, 0)
    return folder / "out"


@pytest.fixture(scope="module")
def batch_out(data, tmp_path_factory):
    return batch_features(data, tmp_path_factory.mktemp("study_batch"))


@pytest.fixture
def breast(tmp_path):
    return breast_cancer_tables(tmp_path)


def problems_of(excinfo):
    return [str(p) for p in excinfo.value.problems]


def one(problems, *fragments):
    """The one problem that contains every fragment."""
    found = [p for p in problems if all(f in p for f in fragments)]
    assert len(found) == 1, (fragments, problems)
    return found[0]


# A real batch table ---------------------------------------------------------------------------------
def test_batch_table_pivoted_to_one_row_per_patient(batch_out, tmp_path):
    rows = read_csv(batch_out / "features.csv")
    assert [(r["id"], r["segment"]) for r in rows] == [(c, f"Label_{k}") for c in CASES for k in (1, 2)]
    features = [c for c in rows[0] if c not in ("id", "segment")]
    assert len(features) == N_FEATURES
    clinical = write_rows(tmp_path / "clinical.csv", ["id", "time", "event"],
                          [("breast1", "400", "0"), ("brain2", "210.5", "1"), ("brain1", "95", "1")])
    study = read_study(batch_out / "features.csv", clinical, n_folds=2)
    assert study.pivoted and study.ids == list(CASES) and study.outcome_kind == "survival"
    assert study.feature_names == [f"segment-Label_{k}__{f}" for k in (1, 2) for f in features]
    # Each value is the table's own cell (the shortest repr of the double), row by row.
    for row in rows:
        p = study.ids.index(row["id"])
        for f in features:
            assert study.X[p, study.feature_names.index(f"segment-{row['segment']}__{f}")] == float(row[f])
    assert study.time.tolist() == [95.0, 210.5, 400.0] and study.event.tolist() == [True, True, False]
    assert study.target.dtype.names == ("event", "time") and study.target["time"].tolist() == [95.0, 210.5, 400.0]
    pivot = one(study.notes, "pivoted")
    assert "6 rows were pivoted into 3 rows" in pivot and "by segment" in pivot and "segment-Label_1__<feature>" in pivot
    one(study.notes, f"{2 * N_FEATURES} features for 3 patients: more features than patients")
    # The Parquet table of the same run gives the same study.
    again = read_study(batch_out / "features.parquet", clinical, n_folds=2)
    assert again.feature_names == study.feature_names and np.array_equal(again.X, study.X)
    assert again.ids == study.ids
    # Too few events for 3 folds: the minimum is said.
    with pytest.raises(StudyInputError) as excinfo:
        read_study(batch_out / "features.csv", clinical, n_folds=3)
    assert problems_of(excinfo) == ["clinical.csv: 2 event(s) in the patients; 3-fold cross-validation of a survival model "
                                    "needs at least 3 events (one per fold): use at most 2 folds (--outer) or more patients."]


def test_batch_table_with_a_missing_segment(batch_out, tmp_path):
    """brain2 without its Label_2 row (as when a split leaves a segment empty): refused, or NaN to impute."""
    rows = read_csv(batch_out / "features.csv")
    header = list(rows[0])
    kept = [r for r in rows if (r["id"], r["segment"]) != ("brain2", "Label_2")]
    features = write_rows(tmp_path / "features.csv", header, [[r[c] for c in header] for r in kept])
    clinical = write_rows(tmp_path / "clinical.csv", ["id", "outcome"], [("brain1", "1"), ("brain2", "0"), ("breast1", "1")])
    with pytest.raises(StudyInputError) as excinfo:
        read_study(features, clinical, n_folds=None)
    assert problems_of(excinfo) == [
        f"features.csv row 4: id 'brain2' has no row with segment 'Label_2': its {N_FEATURES} features "
        "'segment-Label_2__...' are missing; fill them in, or use missing='impute' to impute them inside "
        "the cross-validation folds (missing='refuse')."]
    study = read_study(features, clinical, n_folds=None, missing="impute")
    assert study.X.shape == (3, 2 * N_FEATURES)
    missing = np.isnan(study.X)
    assert missing[1, N_FEATURES:].all() and missing.sum() == N_FEATURES
    one(study.notes, f"{N_FEATURES} missing value(s) in {N_FEATURES} feature(s) of 1 patient(s) are left as NaN")
    assert study.y.tolist() == [1, 0, 1] and study.classes == ("0", "1")


# The breast cancer table ----------------------------------------------------------------------------
def test_breast_cancer_csv_and_parquet(breast):
    features_csv, features_parquet, clinical, bunch = breast
    for features in (features_csv, features_parquet):
        study = read_study(features, clinical, outcome="diagnosis", positive="malignant", covariates=["mean radius"])
        assert study.X.shape == (569, 29) and study.feature_names == [str(n) for n in bunch.feature_names[1:]]
        assert np.array_equal(study.X, bunch.data[:, 1:])  # exact doubles through CSV and Parquet
        assert study.ids[:2] == ["P0001", "P0002"] and not study.pivoted
        assert np.array_equal(study.y, 1 - bunch.target) and study.classes == ("benign", "malignant")
        assert study.split.sum() == 569 - 113 and not study.split[4] and study.split[0]
        assert study.batch[:4].tolist() == ["A", "B", "C", "A"]
        assert np.array_equal(study.covariates[:, 0], bunch.data[:, 0]) and study.covariate_names == ["mean radius"]
        one(study.notes, "'split'")
        one(study.notes, "'batch'")
        one(study.notes, "not used: note")
        assert not any("more features than" in note for note in study.notes)
        table = study.table(study.train)
        assert table.column_names == study.feature_names and table.num_rows == 456
    # 0/1 outcome: no positive= needed; the same study otherwise.
    rows = read_csv(clinical)
    coded = write_rows(clinical.with_name("coded.csv"), ["id", "outcome"],
                       [(r["id"], "1" if r["diagnosis"] == "malignant" else "0") for r in rows])
    study = read_study(features_csv, coded)
    assert np.array_equal(study.y, 1 - bunch.target) and study.split is None and study.batch is None
    one(study.notes, "binary outcome is the column 'outcome'")


def test_every_problem_of_a_binary_study_listed_at_once(breast, tmp_path):
    features_csv, _, clinical, bunch = breast
    header, *rows = list(csv.reader(open(features_csv)))
    texture, symmetry, worst_area = header.index("mean texture"), header.index("mean symmetry"), header.index("worst area")
    # File rows once P0001 is deleted (last line): P0002 on row 2, ... P0569 on row 569.
    rows[4][texture] = "abc"                 # P0005, row 5: not a number
    rows[5][worst_area] = ""                 # P0006, row 6: missing
    rows[6][worst_area] = "NA"               # P0007, row 7: missing
    for row in rows:
        row[symmetry] = "0.18"               # constant
    rows.append(list(rows[1]))               # P0002 twice: rows 2 and 570
    rows.append(["X9999", *rows[2][1:]])     # only in the features: row 571
    del rows[0]                              # P0001 only in the clinical table (row 2)
    write_rows(tmp_path / "features.csv", header, rows)
    clinical_rows = read_csv(clinical)
    for r in clinical_rows:
        r["diagnosis"] = "benign"            # one class
    clinical_rows[9]["split"] = "validation"  # P0010, row 11
    clinical_rows[10]["batch"] = "Z"          # P0011, row 12: a batch of one
    clinical_rows[11]["mean radius"] = "large"  # P0012, row 13
    clinical_rows.append(dict(clinical_rows[2]))  # P0003 twice: rows 4 and 571
    columns = list(clinical_rows[0])
    write_rows(tmp_path / "clinical.csv", columns, [[r[c] for c in columns] for r in clinical_rows])
    with pytest.raises(StudyInputError) as excinfo:
        read_study(tmp_path / "features.csv", tmp_path / "clinical.csv", outcome="diagnosis", positive="malignant",
                   covariates=["mean radius"])
    problems = problems_of(excinfo)
    message = str(excinfo.value)
    assert message.startswith(f"The study inputs have {len(problems)} problems; fix them and run again:\n")
    assert all(p in message for p in problems)
    one(problems, "features.csv rows 2, 570", "id 'P0002' appears 2 times")
    one(problems, "features.csv row 5", "feature 'mean texture' is not numeric: 'abc' on row 5")
    one(problems, "clinical.csv rows 4, 571", "id 'P0003' appears 2 times")
    one(problems, "features.csv row 571", "1 id(s) have no row in clinical.csv: 'X9999'")
    one(problems, "clinical.csv row 2", "1 id(s) have no features in features.csv: 'P0001'")
    one(problems, "the outcome 'diagnosis' has one class only ('benign', 568 patients)")  # P0002..P0569
    one(problems, "clinical.csv row 11", "the split 'split' must be 'train' or 'test': 'validation' on row 11")
    one(problems, "clinical.csv row 12", "batch 'Z' has 1 patient")
    one(problems, "clinical.csv row 13", "covariate 'mean radius' is not numeric: 'large' on row 13")
    one(problems, "1 feature(s) have the same value for every patient: 'mean symmetry' (0.18)")
    one(problems, "features.csv rows 6, 7", "feature 'worst area' is missing", "for 2 patient(s): 'P0006', 'P0007'",
        "missing='refuse'")
    assert len(problems) == 11, problems


def test_every_problem_of_a_survival_study_listed_at_once(breast, tmp_path):
    features_csv, _, clinical, _ = breast
    ids = [r["id"] for r in read_csv(clinical)]
    rows = [[i, "100", "0", "A" if k % 2 else "B"] for k, i in enumerate(ids)]
    rows[0][1:3] = ["0", "1"]      # row 2: time 0, an event
    rows[1][1:3] = ["-5", "1"]     # row 3: negative time, an event
    rows[2][1:3] = ["soon", "1"]   # row 4: not a number, an event
    rows[3][1] = ""                # row 5: missing time
    rows[4][2] = "2"               # row 6: event 2
    rows[5][2] = "yes"             # row 7
    rows[6][1:3] = ["30", "1"]     # row 8: the 4th event
    rows[7][3] = "C"               # row 9: batch C has one patient
    write_rows(tmp_path / "clinical.csv", ["id", "months", "dead", "scanner"], rows)
    with pytest.raises(StudyInputError) as excinfo:
        read_study(features_csv, tmp_path / "clinical.csv", time="months", event="dead", batch="scanner")
    problems = problems_of(excinfo)
    one(problems, "clinical.csv row 4", "the time 'months' is not a number: 'soon' on row 4")
    one(problems, "clinical.csv row 5", "the time 'months' is missing")
    one(problems, "clinical.csv rows 2, 3", "the time 'months' must be > 0: 0 on row 2, -5 on row 3")
    one(problems, "clinical.csv rows 6, 7", "the event 'dead' must be 0 (censored) or 1 (event): '2' on row 6, 'yes' on row 7")
    one(problems, "clinical.csv row 9", "batch 'C' has 1 patient")
    one(problems, "4 event(s) in the patients; 5-fold cross-validation of a survival model needs at least 5 events",
        "use at most 4 folds (--outer)")
    assert len(problems) == 6, problems


def test_too_few_of_a_class_and_labels_without_positive(breast, tmp_path):
    features_csv, _, clinical, _ = breast
    rows = read_csv(clinical)
    malignant = [k for k, r in enumerate(rows) if r["diagnosis"] == "malignant"]
    for k in malignant[3:]:
        rows[k]["diagnosis"] = "benign"  # 3 malignant patients left
    test_malignant = sum(rows[k]["split"] == "test" for k in malignant[:3])
    columns = list(rows[0])
    write_rows(tmp_path / "clinical.csv", columns, [[r[c] for c in columns] for r in rows])
    with pytest.raises(StudyInputError) as excinfo:
        read_study(features_csv, tmp_path / "clinical.csv", outcome="diagnosis", covariates=["mean radius"])
    assert problems_of(excinfo) == ["clinical.csv: the outcome 'diagnosis' has the values 'benign' and 'malignant'; say "
                                    "which is the positive class (positive='malignant'), or code it as 0/1."]
    with pytest.raises(StudyInputError) as excinfo:
        read_study(features_csv, tmp_path / "clinical.csv", outcome="diagnosis", positive="malignant",
                   covariates=["mean radius"])
    count = 3 - test_malignant
    assert problems_of(excinfo) == [
        f"clinical.csv: outcome class 'malignant' (1) has {count} patient(s) in the training rows; 5-fold stratified "
        f"cross-validation needs at least 5 of each class (one per fold): use at most {count} folds (--outer) or more patients."]
    study = read_study(features_csv, tmp_path / "clinical.csv", outcome="diagnosis", positive="malignant",
                       covariates=["mean radius"], n_folds=count)
    assert study.y.sum() == 3


def test_bad_arguments_and_files(breast, tmp_path):
    features_csv, _, clinical, _ = breast
    with pytest.raises(RadiomicsLabError, match="missing-value policy 'drop'"):
        read_study(features_csv, clinical, outcome="diagnosis", missing="drop")
    with pytest.raises(RadiomicsLabError, match="either a binary outcome"):
        read_study(features_csv, clinical, outcome="diagnosis", time="t", event="e")
    with pytest.raises(RadiomicsLabError, match="needs both time= and event="):
        read_study(features_csv, clinical, time="t")
    with pytest.raises(StudyInputError) as excinfo:
        read_study(tmp_path / "nothing.csv", clinical, outcome="diagnosis", positive="malignant")
    assert "does not exist" in str(excinfo.value)
    with pytest.raises(StudyInputError) as excinfo:
        read_study(features_csv, clinical, outcome="stage", id_column="id")
    one(problems_of(excinfo), "clinical.csv row 1", "no column 'stage'")
    # Ids that never match (another coding): said as such.
    rows = read_csv(clinical)
    columns = list(rows[0])
    write_rows(tmp_path / "renamed.csv", columns, [[r["id"].lower() if c == "id" else r[c] for c in columns] for r in rows])
    with pytest.raises(StudyInputError) as excinfo:
        read_study(features_csv, tmp_path / "renamed.csv", outcome="diagnosis", positive="malignant")
    one(problems_of(excinfo), "no id matches between the tables")
    # Constant features can be dropped instead (with a note).
    header, *data_rows = list(csv.reader(open(features_csv)))
    for row in data_rows:
        row[1] = "7"
    write_rows(tmp_path / "constant.csv", header, data_rows)
    study = read_study(tmp_path / "constant.csv", clinical, outcome="diagnosis", positive="malignant", drop_constant=True)
    assert study.n_features == 28 and header[1] not in study.feature_names
    one(study.notes, "1 constant feature(s) dropped")
    assert not np.isnan(study.X).any()
