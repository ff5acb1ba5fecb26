"""One home for the habitats' outputs: ``radiomicslab habitats`` and ``HabitatLogic.save_results`` write the same files
through RadiomicsLabLib.habitats_outputs.write_habitat_outputs.

Real data (../shared/data/sts, README): the sarcoma patients' CT and PET with the GTV (CT_mask), read from files by
the command and loaded as volume and segmentation nodes into a headless scene for the Logic; the channels are
resampled onto the mask's grid in both (the command's --registration resample, the Logic's default).
"""

import pytest

from conftest import run_cli
from test_observers_outputs import files, same_software, without
from test_habitats import cohort_file, load_into_scene, sts_row

CHANNELS = ("CT", "PET")
#: Keys of habitats.provenance.json that differ by design: ``inputs`` (file paths on the command line, scene node ids
#: in the Logic) and ``software`` (compared on the libraries both processes loaded, by same_software).
WHERE = ("inputs", "software")
#: The batch layer's own files, which only the command's --cohort mode writes (its bookkeeping, not habitat results).
BATCH_FILES = ("errors.csv", "provenance.json", "batch.json", ".radiomicslab-batch.lock")


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    path = tmp_path_factory.mktemp("params") / "firstorder.yaml"
    path.write_text("setting:\n  binWidth: 25\nfeatureClass:\n  firstorder: [Mean, Median]\n")
    return path


@pytest.fixture(scope="module")
def logic():
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.habitats import HabitatLogic

    return HabitatLogic(new_headless_app().scene)


def channel_options(folder):
    return [arg for c in CHANNELS for arg in ("--channel", f"{c}={folder / f'{c}_image.nii.gz'}")]


def assert_same_files(cli_out, logic_out, written, names):
    """``names`` (relative to each folder) are the same bytes in both; the provenance equal but for :data:`WHERE`."""
    import json

    assert sorted(written) == sorted(names)
    for name in names:
        ours, theirs = (cli_out / name).read_bytes(), (logic_out / name).read_bytes()
        if name.endswith(".provenance.json"):
            cli, scene = json.loads(ours), json.loads(theirs)
            assert without(cli, WHERE) == without(scene, WHERE)
            same_software(cli["software"], scene["software"])
            assert set(cli["inputs"]) == {"mask", "cohort", "channels", "settings"} and set(scene["inputs"]) == {"nodes"}
        else:
            assert ours == theirs, name


def test_one_patient_with_features_cli_and_logic_write_the_same_files(data, logic, params, tmp_path):
    """STS_002, CT and PET, 3 habitats (seed 5), per-habitat first-order features: habitats.nrrd, the tables, both
    PNGs and the provenance of the command equal the Logic's save_results, byte for byte."""
    folder = data / "sts" / "STS_002"
    cli_out = tmp_path / "cli"
    done = run_cli("habitats", folder / "CT_mask.nii.gz", *channel_options(folder), "-k", "3", "--seed", "5",
                   "--registration", "resample", "--patient", "STS_002", "--features", params, "-o", cli_out)
    assert done.returncode == 0, done.stderr

    segmentation, volumes = load_into_scene(logic, data, "STS_002", CHANNELS)
    nodes = logic.habitats(segmentation, None, volumes, 3, name="STS_002", seed=5, features=str(params))
    written = logic.save_results(nodes, tmp_path / "logic")
    names = ["habitats.nrrd", "habitats.csv", "cohort.csv", "features.csv", "habitat_fractions.png",
             "channel_means.png", "habitats.provenance.json"]
    assert files(cli_out) == files(tmp_path / "logic") == sorted(names)
    assert_same_files(cli_out, tmp_path / "logic", written, names)
    # the scene's fractions chart holds the series habitat_fractions.png draws (the same core series)
    from RadiomicsLabLib.habitats import fraction_series

    series = fraction_series(nodes.results, nodes.model.names)
    table = nodes.fractions_chart.GetNthPlotSeriesNode(0).GetTableNode().GetTable()
    assert [table.GetColumnByName("fraction_1").GetValue(0)] == series["fractions"]["fraction_1"]


def test_two_patients_auto_k_cli_cohort_and_logic_write_the_same_files(data, logic, tmp_path):
    """STS_002 and STS_003, CT and PET, k chosen by silhouette over 2..3 (seed 7): the command's --cohort mode on
    the batch layer (in this process, --workers 0; label maps written by its tasks, the rest from their summaries)
    and the Logic's cohort_habitats write the same habitat files (k_scores.csv and <patient>/habitats.nrrd included);
    the command's other files are the batch layer's bookkeeping only."""
    cohort, _ = cohort_file(tmp_path / "in", [sts_row(data, p, c) for p in ("STS_002", "STS_003") for c in CHANNELS])
    cli_out = tmp_path / "cli"
    done = run_cli("habitats", "--cohort", cohort, "-k", "auto", "--k-range", "2:3", "--registration", "resample",
                   "--seed", "7", "--workers", "0", "-o", cli_out)
    assert done.returncode == 0, done.stderr

    logic.scene.Clear(0)
    patients = []
    for patient in ("STS_002", "STS_003"):
        segmentation, volumes = load_into_scene(logic, data, patient, CHANNELS)
        patients.append({"name": patient, "segmentation": segmentation, "channels": volumes})
    nodes = logic.cohort_habitats(patients, "auto", k_range=(2, 3), seed=7)
    written = logic.save_results(nodes, tmp_path / "logic")
    names = ["STS_002/habitats.nrrd", "STS_003/habitats.nrrd", "habitats.csv", "cohort.csv", "k_scores.csv",
             "habitat_fractions.png", "channel_means.png", "habitats.provenance.json"]
    assert files(tmp_path / "logic") == sorted(names)
    extra = set(files(cli_out)) - set(names)
    assert {name for name in extra if not name.startswith("cases/")} == set(BATCH_FILES)
    assert_same_files(cli_out, tmp_path / "logic", written, names)


def test_save_results_refuses_a_run_less_result_and_an_unwritable_output(data, logic, tmp_path):
    """Nodes without their run (a reloaded scene) say to run again; an output whose name a folder holds is refused
    before anything is written."""
    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.mrml.habitats import HabitatNodes

    with pytest.raises(RadiomicsLabError, match="find the habitats again"):
        logic.save_results(HabitatNodes([], None, None, None, None), tmp_path)
    logic.scene.Clear(0)
    segmentation, volumes = load_into_scene(logic, data, "STS_002", CHANNELS)
    nodes = logic.habitats(segmentation, None, volumes, 2, name="STS_002", seed=1)
    (tmp_path / "out" / "cohort.csv").mkdir(parents=True)  # one output's name taken by a folder
    with pytest.raises(RadiomicsLabError, match="it is a folder"):
        logic.save_results(nodes, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["cohort.csv"]  # nothing written


def test_web_panel_downloads_the_same_files_and_shows_their_plots(tmp_path):
    """The web app's habitats panel on brain1 (its real label, the image as the one channel, 3 habitats): 'All
    results (zip)' holds the files save_results writes, byte for byte, and the plots the panel shows are that zip's
    habitat_fractions.png and channel_means.png."""
    import asyncio
    import base64
    import io
    import zipfile

    from trame.app import get_server

    from RadiomicsLabLib.web.app import RadiomicsLabWebApp

    app = RadiomicsLabWebApp(get_server("radiomicslab-habitats-outputs", client_type="vue3"))
    app.loader.load_sample("brain1")
    app.refresh_panels()
    habitats = app.panels["habitats"]
    assert habitats.results_zip() is None and "No habitats yet" in app.jobs.data.error
    habitats.data.k = 3
    asyncio.run(habitats.run())
    assert app.jobs.data.error == ""
    with zipfile.ZipFile(io.BytesIO(habitats.results_zip())) as archive:
        downloaded = {name: archive.read(name) for name in archive.namelist()}
    written = habitats.logic.save_results(habitats.nodes, tmp_path / "saved")
    assert sorted(downloaded) == sorted(written) and "habitats.nrrd" in downloaded
    for name, path in written.items():
        assert downloaded[name] == path.read_bytes(), name
    for state, name in (("fractions_plot", "habitat_fractions.png"), ("means_plot", "channel_means.png")):
        shown = getattr(habitats.data, state)
        assert base64.b64decode(shown.split(",", 1)[1]) == downloaded[name], name
