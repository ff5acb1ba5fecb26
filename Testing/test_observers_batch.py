"""``radiomicslab observers --cohort`` on the batch layer: one task per lesion, the same outputs as in-process.

Three real STS PET lesions; observers are the real GTV mask ('gtv') and two documented synthetic
observers made from it (dilation 3 mm, 2 mm shift; seed 3), written to files as test_observers.py does.
The reference is the in-process study (``run_study`` on the same lesions) written by the command's writer
(RadiomicsLabLib.observers_outputs.write_observer_outputs).
"""

import json

import SimpleITK as sitk

from RadiomicsLabLib.observers import load_lesion, run_study
from RadiomicsLabLib.observers_outputs import file_inputs, write_observer_outputs
from RadiomicsLabLib.settings import load_settings

from conftest import read_csv, run_cli
from test_observers import real_lesion, sts, write

LESIONS = ("STS_001", "STS_002", "STS_003")
PLAN = ("grow:mm=3", "shift:mm=2")
PARAMS = "setting:\n  binWidth: 0.5\nfeatureClass:\n  firstorder: []\n  shape: []\n"
TABLES = ("agreement.csv", "agreement_summary.csv", "dice_matrix.csv", "staple.csv", "features.csv", "icc.csv",
          "robust_features.txt")


def make_cohort(data, folder, old_format=False, lesions=LESIONS):
    """Mask files of 3 observers per lesion and the cohort CSV naming them; returns (csv, [(lesion, observer, mask)])."""
    folder.mkdir(exist_ok=True)
    entries = []
    for case in lesions:
        lesion = real_lesion(data, case, "PET", PLAN, seed=3)
        for observer, source in (("gtv", "gtv"), ("dilated", "p1_grow"), ("shifted", "p2_shift")):
            entries.append((case, observer, write(lesion.masks[source], folder / f"{case}_{observer}.nrrd")))
    cohort = folder / "cohort.csv"
    header = "lesion,observer,image,mask,reader\n" if old_format else "id,observer,image,mask\n"
    cohort.write_text(header + "".join(
        f"{case},{observer},{sts(data, case, 'PET')[0]},{mask.name}" + (f",{observer}" if old_format else "") + "\n"
        for case, observer, mask in entries))
    return cohort, entries


def reference(data, entries, out, params):
    """The in-process study of the same lesions (``run_study``), written by the command's writer."""
    specs = []
    for case in dict.fromkeys(c for c, _, _ in entries):
        specs.append({"name": case, "image": sts(data, case, "PET")[0], "where": "test", "label": None,
                      "observers": [(o, m, o) for c, o, m in entries if c == case]})
    settings = load_settings(str(params))
    study = run_study([load_lesion(s["name"], s["image"], s["observers"]) for s in specs], settings)
    write_observer_outputs(study, out, file_inputs(specs), settings, "icc2", None)
    return study


def cli(cohort, out, params, *options):
    return run_cli("observers", "--cohort", cohort, "--params", params, "-o", out, *options)


def assert_same_tables(out, expected):
    for name in TABLES:
        assert (out / name).read_text() == (expected / name).read_text(), name


def test_cohort_batch_matches_in_process(data, tmp_path):
    cohort, entries = make_cohort(data, tmp_path / "in")
    params = tmp_path / "pet.yaml"
    params.write_text(PARAMS)
    study = reference(data, entries, tmp_path / "expected", params)
    assert len(study.reproducibility.rows) == 32 and len(study.pairs) == 9  # 18 firstorder + 14 shape

    out = tmp_path / "out0"
    done = cli(cohort, out, params, "--workers", "0")
    assert done.returncode == 0, done.stderr
    assert "3 case(s): 0 already done (skipped), 3 computed, 0 with errors" in done.stderr
    assert_same_tables(out, tmp_path / "expected")
    for case in LESIONS:  # consensus masks written by each lesion's task, identical to the in-process ones
        for kind in ("staple", "majority"):
            written, expected = (sitk.ReadImage(str(folder / case / f"consensus_{kind}.nrrd"))
                                 for folder in (out, tmp_path / "expected"))
            assert sitk.GetArrayViewFromImage(written).tolist() == sitk.GetArrayViewFromImage(expected).tolist()
    assert read_csv(out / "errors.csv") == []
    assert sorted(p.name for p in (out / "cases").iterdir()) == [f"{case}.json" for case in LESIONS]
    provenance = json.loads((out / "observers.provenance.json").read_text())
    assert [i["lesion"] for i in provenance["inputs"]] == list(LESIONS)

    again = cli(cohort, out, params, "--workers", "0")
    assert again.returncode == 0, again.stderr
    assert "3 already done (skipped), 0 computed" in again.stderr
    assert_same_tables(out, tmp_path / "expected")

    cluster = tmp_path / "out2"
    done = cli(cohort, cluster, params, "--workers", "2", "--memory-limit", "0")
    assert done.returncode == 0, done.stderr
    assert "3 computed" in done.stderr
    assert_same_tables(cluster, tmp_path / "expected")


def test_failing_lesion_recorded_and_old_format(data, tmp_path):
    """The old lesion,observer,image,mask,reader file still works; a lesion failing in its task (STS_002) is in
    errors.csv, exit status 1, and the outputs are those of the other two lesions."""
    cohort, entries = make_cohort(data, tmp_path / "in", old_format=True)
    params = tmp_path / "pet.yaml"
    params.write_text(PARAMS)
    # STS_002's 'shifted' observer marks the lesion with label 2 and several labels elsewhere: make_lesion refuses
    # it in the lesion's task (a mask with two labels and no --label), after the cohort was validated.
    mask = sitk.ReadImage(str(tmp_path / "in" / "STS_002_shifted.nrrd"))
    two = mask + 2 * sitk.ReadImage(str(tmp_path / "in" / "STS_002_gtv.nrrd"))
    write(sitk.Cast(two, sitk.sitkUInt8), tmp_path / "in" / "STS_002_shifted.nrrd")
    out = tmp_path / "out"
    done = cli(cohort, out, params, "--workers", "0")
    assert done.returncode == 1, done.stderr
    errors = read_csv(out / "errors.csv")
    assert [(e["id"], e["stage"]) for e in errors] == [("STS_002", "observers")]
    assert "observer 'shifted'" in errors[0]["error"] and "--label" in errors[0]["error"]
    kept = [e for e in entries if e[0] != "STS_002"]
    reference(data, kept, tmp_path / "expected", params)
    assert_same_tables(out, tmp_path / "expected")
    assert {r["lesion"] for r in read_csv(out / "agreement.csv")} == {"STS_001", "STS_003"}


def test_batch_options_need_cohort(data, tmp_path):
    image, mask = sts(data, "STS_001", "PET")
    for option in (("--workers", "2"), ("--scheduler", "tcp://127.0.0.1:1"), ("--memory-limit", "1GiB"),
                   ("--retry-failed",), ("--keep-going",)):
        done = run_cli("observers", image, mask, "--perturb", "-o", tmp_path / "out", *option)
        assert done.returncode == 2 and "give --cohort" in done.stderr, (option, done.stderr)
    assert not (tmp_path / "out").exists()


def test_cohort_problems_listed_at_once_then_keep_going(data, tmp_path):
    """Every bad row or lesion with its row number(s) before any work (exit 2, nothing written); with --keep-going
    each lesion with a problem is left out whole (listed in errors.csv) and the others run (exit 1)."""
    import shutil

    cohort, entries = make_cohort(data, tmp_path / "in", lesions=("STS_001", "STS_002"))  # rows 2-7
    image3, mask3 = sts(data, "STS_003", "PET")
    image4, mask4 = sts(data, "STS_004", "PET")
    copy3 = shutil.copy(image3, tmp_path / "in" / "STS_003_PET_copy.nii.gz")  # the same image under another name
    cohort.write_text(cohort.read_text() + "".join(f"{row}\n" for row in (
        f"STS_003,gtv,{image3},gone.nii.gz",      # row 8: no such mask
        f"STS_003,other,{image3},{mask3}",         # row 9: STS_003's observers (gtv, other) are not the others'
        f"STS_004,gtv,{image4},{mask4}",          # row 10: one observer
        f"STS_005,gtv,{image3},{mask3}",          # row 11
        f"STS_005,dilated,{copy3},{mask3}")))     # row 12: a second image for STS_005
    params = tmp_path / "pet.yaml"
    params.write_text(PARAMS)
    out = tmp_path / "out"
    refused = cli(cohort, out, params, "--workers", "0")
    assert refused.returncode == 2 and "has 4 problems" in refused.stderr and "--keep-going" in refused.stderr, refused.stderr
    for fragment in ("row 8 (id 'STS_003'): cannot read mask", "rows 8, 9 (id 'STS_003'): lesion 'STS_003' has the observers gtv, other",
                     "row 10 (id 'STS_004'): agreement needs at least 2 observers of lesion 'STS_004'; got 1",
                     "row 12 (id 'STS_005'): lesion 'STS_005' has two images"):
        assert fragment in refused.stderr, refused.stderr
    assert not out.exists()

    going = run_cli("observers", "--cohort", cohort, "--no-features", "-o", out, "--workers", "0", "--keep-going")
    assert going.returncode == 1, going.stderr
    assert [(e["id"], e["where"], e["stage"]) for e in read_csv(out / "errors.csv")] == [
        ("STS_003", "row 8", "validation"), ("STS_003", "row 9", "validation"), ("STS_004", "row 10", "validation"),
        ("STS_005", "row 11", "validation"), ("STS_005", "row 12", "validation")]
    assert {r["lesion"] for r in read_csv(out / "agreement.csv")} == {"STS_001", "STS_002"}
    assert sorted(p.name for p in (out / "cases").glob("*.json")) == ["STS_001.json", "STS_002.json"]
