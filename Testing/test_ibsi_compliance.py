"""`radiomicslab ibsi`: every IBSI reference value passes (chapter 1: digital phantom and CT phantom
configurations A-E; chapter 2: the 33 phase 1 response maps and the phase 2 filtered-image statistics)."""

import csv

import SimpleITK as sitk

from RadiomicsLabLib.ibsi.reference import chapter1_reference, chapter2_phase2_reference

from conftest import run_cli

EXPECTED_ROWS = {"digital_phantom": 482, "config_A": 406, "config_B": 406, "config_C": 270, "config_D": 270,
                 "config_E": 270, "ibsi2_phase1": 33, "ibsi2_phase2": 323}


def test_ibsi_command_passes_every_reference_value(tmp_path):
    done = run_cli("ibsi", "-o", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(tmp_path / "ibsi_report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["dataset", "tag", "value", "reference", "tolerance", "passed"]
    counts = {}
    for row in rows:
        counts[row["dataset"]] = counts.get(row["dataset"], 0) + 1
    assert counts == EXPECTED_ROWS
    # one row per reference value, with the reference tables' own tags
    for dataset in ("digital_phantom", "config_A", "config_E"):
        assert [r["tag"] for r in rows if r["dataset"] == dataset] == [r.tag for r in chapter1_reference(dataset)]
    assert {r["tag"] for r in rows if r["dataset"] == "ibsi2_phase2"} == {r.tag for r in chapter2_phase2_reference()}
    assert "4.B/stat_mean" in {r["tag"] for r in rows}
    failing = [(r["dataset"], r["tag"], r["value"], r["reference"], r["tolerance"]) for r in rows if r["passed"] != "True"]
    assert not failing, failing
    for dataset, total in EXPECTED_ROWS.items():
        assert f"{dataset:<16} {total:>4} / {total:<4} passed" in done.stdout
    assert "All 2460 reference values pass." in (tmp_path / "ibsi_report.md").read_text()
    # every phase 1 response map is written, on its phantom's grid
    maps = sorted(p.name for p in (tmp_path / "ibsi2_phase1").iterdir())
    assert len(maps) == 33 and "3_a_1.nii.gz" in maps
    response = sitk.ReadImage(str(tmp_path / "ibsi2_phase1" / "3_a_1.nii.gz"))
    assert response.GetSize() == (64, 64, 64)


def test_ibsi_command_rejects_unknown_dataset(tmp_path):
    done = run_cli("ibsi", "-o", tmp_path, "--dataset", "config_F")
    assert done.returncode == 2 and "Unknown IBSI data set config_F" in done.stderr
    assert not (tmp_path / "ibsi_report.csv").exists()
