"""One home for the study's outputs: ``radiomicslab study``, ``StudyLogic.save_results`` and the web study panel's
downloads give the same files, all written by RadiomicsLabLib.study.run.run_study.

Tables (real data, as in test_study_cli.py): scikit-learn's breast cancer Wisconsin table
(``conftest.breast_cancer_tables``: 569 patients, 29 real features, 'mean radius' as a covariate, a made-up batch
A/B/C and split). One small study (1 repeat, 3 x 3 folds, one worker, seed 7) run by the command and by the Logic
of a web app's scene.
"""

import json
import pickle
import re

import joblib
import pytest

from conftest import breast_cancer_tables, run_cli
from test_observers_outputs import files, same_software, without

#: Keys of the model card (model_card.json, and the card inside model.joblib's metadata) that differ by design:
#: ``created`` (when) and ``software`` (every loaded library: the Logic's process has Slicer's MRML and VTK loaded
#: too; compared on the libraries both list). The inputs are the same files, so their paths and hashes are equal.
WHERE_AND_WHEN = ("created", "software")
#: Files that hold the card (compared by :func:`assert_same_files` as said there); every other file byte for byte.
CARD_FILES = ("model_card.json", "model.joblib", "report.html")
OPTIONS = dict(outcome="diagnosis", positive="malignant", batch="batch", covariates=["mean radius"], split="split",
               models=["logistic_l1"], selection=["correlation"], repeats=1, outer=3, inner=3, workers=1, seed=7)


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """(the command's folder, the web app, its study panel, the Logic's results in the app's scene)."""
    from trame.app import get_server

    from RadiomicsLabLib.web.app import RadiomicsLabWebApp

    features, _, clinical, _ = breast_cancer_tables(tmp_path_factory.mktemp("breast"))
    cli_out = tmp_path_factory.mktemp("cli") / "study"
    done = run_cli("study", features, "--clinical", clinical, "--outcome", "diagnosis", "--positive", "malignant",
                   "--batch", "batch", "--covariate", "mean radius", "--split", "split", "--model", "logistic_l1",
                   "--select", "correlation", "--repeats", "1", "--outer", "3", "--inner", "3", "--workers", "1",
                   "--seed", "7", "-o", cli_out)
    assert done.returncode == 0, done.stderr
    app = RadiomicsLabWebApp(get_server("radiomicslab-study-outputs", client_type="vue3"))
    panel = app.panels["study"]
    results = panel.logic.run(features, clinical, tmp_path_factory.mktemp("logic") / "study", **OPTIONS)
    return cli_out, app, panel, results


def report_text(html: str, card: dict, shown: set) -> str:
    """report.html without its creation time and without the software table's rows of libraries not in ``shown``."""
    html = html.replace(card["created"], "<created>")
    for library in set(card["software"]) - shown:
        html, found = re.subn(rf"<tr><td>{re.escape(library)}</td><td>[^<]*</td></tr>", "", html)
        assert found == 1, library
    return html


def assert_same_files(cli_out, logic_out, written):
    """The same files; the tables and figures byte for byte; the model card equal but for when and the software
    (model_card.json, the card in model.joblib's metadata, the report's header and software table), and the
    fitted model itself the same pickle."""
    assert files(cli_out) == files(logic_out) == sorted(written)
    cli_card, logic_card = (json.loads((folder / "model_card.json").read_text()) for folder in (cli_out, logic_out))
    assert without(cli_card, WHERE_AND_WHEN) == without(logic_card, WHERE_AND_WHEN)
    same_software(cli_card["software"], logic_card["software"])
    shared = set(cli_card["software"]) & set(logic_card["software"])
    assert report_text((cli_out / "report.html").read_text(), cli_card, shared) == \
        report_text((logic_out / "report.html").read_text(), logic_card, shared)
    cli_model, logic_model = (joblib.load(folder / "model.joblib") for folder in (cli_out, logic_out))
    assert pickle.dumps(cli_model["model"]) == pickle.dumps(logic_model["model"])
    assert without(cli_model["metadata"], WHERE_AND_WHEN) == without(logic_model["metadata"], WHERE_AND_WHEN)
    same_software(cli_model["versions"], logic_model["versions"])
    for name in files(cli_out):
        if name not in CARD_FILES:
            assert (cli_out / name).read_bytes() == (logic_out / name).read_bytes(), name


def test_cli_and_logic_write_the_same_files(studies, tmp_path):
    """The command's folder equals what StudyLogic.save_results writes from the Logic's run of the same study."""
    cli_out, _, panel, results = studies
    written = panel.logic.save_results(results, tmp_path / "saved")
    assert_same_files(cli_out, tmp_path / "saved", written)
    assert {"metrics.csv", "predictions.csv", "model.joblib", "model_card.json", "report.html", "roc.png"} <= set(written)
    for name, path in written.items():  # a copy of what the core wrote in the study's own folder
        assert path.read_bytes() == results.files[name].read_bytes(), name


def test_save_results_refuses_missing_files_and_a_file_as_folder(studies, tmp_path):
    """Results whose files are gone say to run again; a folder that is a file is refused, nothing written."""
    import dataclasses

    from RadiomicsLabLib.errors import RadiomicsLabError

    _, _, panel, results = studies
    gone = dataclasses.replace(results, files={"metrics.csv": tmp_path / "gone" / "metrics.csv"})
    with pytest.raises(RadiomicsLabError, match="run the study again"):
        panel.logic.save_results(gone, tmp_path / "out")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    with pytest.raises(RadiomicsLabError, match="it is a file"):
        panel.logic.save_results(results, blocker)
    assert blocker.read_text() == "not a folder\n" and not (tmp_path / "out").exists()


def test_web_panel_downloads_are_the_saved_files(studies, tmp_path):
    """The web study panel (no browser: the function its download buttons call) showing the Logic's study: every
    download is the file save_results writes, byte for byte."""
    from RadiomicsLabLib.web.panels.study import DOWNLOADS

    _, app, panel, results = studies
    with app.server.state:
        panel._show_study(results)
    written = panel.logic.save_results(results, tmp_path / "saved")
    for name in DOWNLOADS:
        assert panel.file_bytes(name) == written[name].read_bytes(), name
