"""One home for the cohort (batch) outputs: ``radiomicslab batch`` and ``CohortLogic.run`` + ``save_results`` write the
same files through the batch layer's one writer (RadiomicsLabLib.batch.write_outputs, saved by save_outputs).

Real data (../shared/data/sts, README): two sarcoma patients' CT and PET with their GTV masks, first-order features,
and one row naming an image that is not there (left out with --keep-going, listed in errors.csv).
"""

import json
import os
from pathlib import Path

import pytest

from conftest import run_cli
from test_batch import write_cohort
from test_observers_outputs import same_software, without

#: Keys of provenance.json that differ by design between two runs of the same cohort: when the run and each case
#: finished (``created``, ``finished``), how long they took (``seconds``), and the libraries loaded (``software``:
#: compared on the libraries both processes loaded).
WHEN = ("created", "finished", "seconds", "software")
OUTPUTS = ["errors.csv", "features.csv", "features.parquet", "provenance.json"]


@pytest.fixture(scope="module")
def cohort(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    sts = Path(os.path.relpath(data / "sts", folder))
    rows = [(p, sts / p / f"{m}_image.nii.gz", sts / p / f"{m}_mask.nii.gz", m)
            for p in ("STS_001", "STS_002") for m in ("CT", "PET")]
    rows.append(("STS_009", "missing_image.nii.gz", sts / "STS_002" / "CT_mask.nii.gz", "CT"))
    write_cohort(folder / "cohort.csv", ["id", "image", "mask", "channel"], rows)
    (folder / "fast.yaml").write_text("featureClass:\n  firstorder: [Mean, Energy]\nsetting:\n  binCount: 16\n")
    return folder / "cohort.csv", folder / "fast.yaml"


def test_cli_and_logic_write_the_same_files(cohort, scene, tmp_path):
    """features.csv, features.parquet and errors.csv byte for byte, provenance.json equal but for when; the run's
    folder keeps them too."""
    from RadiomicsLabLib.mrml.cohort import CohortLogic

    cohort_path, params = cohort
    done = run_cli("batch", cohort_path, "--params", params, "--workers", "0", "--keep-going", "-o", tmp_path / "cli")
    assert done.returncode == 1 and "1 case(s) with errors" in done.stderr, done.stderr

    logic = CohortLogic(scene)
    summary = logic.run(cohort_path, tmp_path / "run", settings=str(params), workers=0, keep_going=True)
    assert (summary.computed, summary.invalid) == (4, 1)
    written = logic.save_results(summary, tmp_path / "saved")
    assert sorted(written) == OUTPUTS
    for name in OUTPUTS:
        ours, theirs, kept = (tmp_path / d / name for d in ("cli", "saved", "run"))
        assert theirs.read_bytes() == kept.read_bytes(), name
        if name == "provenance.json":
            cli, scene_run = json.loads(ours.read_bytes()), json.loads(theirs.read_bytes())
            assert without(cli, WHEN) == without(scene_run, WHEN)
            same_software(cli["software"], scene_run["software"])
        else:
            assert ours.read_bytes() == theirs.read_bytes(), name
    assert "missing_image.nii.gz" in (tmp_path / "saved" / "errors.csv").read_text()


def test_save_results_refuses_a_folder_without_a_run(scene, tmp_path):
    """A folder no cohort ran into says to run the cohort first; nothing is written."""
    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.mrml.cohort import CohortLogic

    with pytest.raises(RadiomicsLabError, match="holds no finished cohort run"):
        CohortLogic(scene).save_results(tmp_path, tmp_path / "saved")
    assert not (tmp_path / "saved").exists()


def test_a_run_checks_its_cluster_options_and_the_scheduler_once(cohort, tmp_path, monkeypatch):
    """The duplicates the team noted, removed: one run_batch checks the cluster options once (not again when it starts
    its cluster), and a scheduler's reachability once (not again in the background client), still before any work."""
    import RadiomicsLabLib.batch as batch
    from RadiomicsLabLib.errors import RadiomicsLabError

    calls = {"options": 0, "reachable": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(batch, "_check_run_options", counted("options", batch._check_run_options))
    monkeypatch.setattr(batch, "_check_reachable", counted("reachable", batch._check_reachable))
    cohort_path, params = cohort
    summary = batch.run_batch(cohort_path, tmp_path / "w0", settings=str(params), workers=0, keep_going=True)
    assert summary.computed == 4 and calls == {"options": 1, "reachable": 0} and "compute" in summary.phases
    with pytest.raises(RadiomicsLabError, match="Cannot reach the Dask scheduler"):
        batch.run_batch(cohort_path, tmp_path / "remote", settings=str(params), scheduler="tcp://127.0.0.1:1")
    assert calls == {"options": 2, "reachable": 1} and not (tmp_path / "remote" / "cases").exists()
    with pytest.raises(RadiomicsLabError, match="Cannot reach the Dask scheduler"):
        batch.start_cluster(scheduler="tcp://127.0.0.1:1")
    assert calls == {"options": 3, "reachable": 2}
