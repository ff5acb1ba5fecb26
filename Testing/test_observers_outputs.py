"""One home for the observers' outputs: ``radiomicslab observers`` and ``ObserverLogic.save_results`` write the same
files through RadiomicsLabLib.observers_outputs.write_observer_outputs.

The real data has one segmentation per lesion (../shared/data/sts, README), so the other observers are the
documented synthetic observers of test_observers.py: perturbations of the real GTV mask (RadiomicsLabLib.perturbation,
fixed seed), written as files for the command line and loaded as segmentations into a headless scene for the Logic.
"""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import run_cli
from test_observers import real_lesion, sts

#: Keys of the provenance that differ by design: where the inputs came from (files with paths and hashes on the
#: command line, scene nodes in the Logic), when each observer's features were extracted, and the software: it
#: lists every loaded library that can change a number, and the Logic's process has Slicer's MRML (VTK) and
#: whatever else the process imported loaded, the command line only what it needed (compared on their shared part).
WHERE_AND_WHEN = ("inputs", "created", "software")


def without(value, keys=WHERE_AND_WHEN):
    """``value`` (parsed JSON) with ``keys`` removed at every depth."""
    if isinstance(value, dict):
        return {k: without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without(v, keys) for v in value]
    return value


def same_software(cli: dict, logic: dict):
    """The libraries both list have the same versions; Python, RadiomicsLab and the platform included."""
    shared = set(cli) & set(logic)
    assert {"radiomicslab", "python", "platform"} <= shared
    assert {k: cli[k] for k in shared} == {k: logic[k] for k in shared}


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_same_outputs(cli_out, logic_out, written):
    """The same set of files; every table byte for byte; the provenance equal but for where and when; the
    consensus masks byte for byte; the PNGs byte for byte."""
    assert files(cli_out) == files(logic_out) == sorted(written)
    for name in files(cli_out):
        ours, theirs = (cli_out / name).read_bytes(), (logic_out / name).read_bytes()
        if name.endswith(".provenance.json"):
            cli, logic = json.loads(ours), json.loads(theirs)
            assert [i["lesion"] for i in cli["inputs"]] == [i["lesion"] for i in logic["inputs"]]
            assert [list(i["masks"]) for i in cli["inputs"]] == [list(i["masks"]) for i in logic["inputs"]]
            assert without(cli) == without(logic)
            same_software(cli["software"], logic["software"])
            for cli_extraction, logic_extraction in zip(cli["extraction"], logic["extraction"]):
                same_software(cli_extraction["software"], logic_extraction["software"])
        else:
            assert ours == theirs, name


def load_into_scene(scene, image_path, masks):
    """A volume node of the image and one segmentation node per observer mask (named after the observer)."""
    from RadiomicsLabLib.mrml.convert import label_map_to_segmentation_node, sitk_to_volume_node

    volume = sitk_to_volume_node(sitk.ReadImage(str(image_path)), "STS_002", scene)
    nodes = [label_map_to_segmentation_node(sitk.ReadImage(str(path)), name, scene, volume) for name, path in masks]
    return volume, nodes


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text("featureClass:\n  firstorder: []\n  shape: []\n")
    return path


def test_cli_and_logic_write_the_same_files_three_readers(data, scene, tmp_path, params):
    """STS_002 CT: the real mask (alice_1), alice's second reading = the real mask dilated by 1 mm (alice_2), bob = the
    real mask shifted by 2 mm (seed 5), all on the image grid; readers alice, alice, bob; features with one settings
    file. Every output file of the command equals the Logic's."""
    from RadiomicsLabLib.mrml.observers import ObserverLogic

    lesion = real_lesion(data, "STS_002", "CT", ("grow:mm=1", "shift:mm=2"), seed=5)
    image_path = sts(data, "STS_002", "CT")[0]
    masks = []
    for name, observer in (("alice_1", "gtv"), ("alice_2", "p1_grow"), ("bob", "p2_shift")):
        sitk.WriteImage(lesion.masks[observer], str(tmp_path / f"{name}.nrrd"))
        masks.append((name, tmp_path / f"{name}.nrrd"))
    cli_out = tmp_path / "cli"
    done = run_cli("observers", image_path, *[p for _, p in masks], "--readers", "alice,alice,bob", "--lesion", "STS_002",
                   "--params", params, "-o", cli_out)
    assert done.returncode == 0, done.stderr

    logic = ObserverLogic(scene)
    volume, nodes = load_into_scene(scene, image_path, masks)
    results = logic.run([("STS_002", volume, nodes)], settings=str(params),
                        readers={"alice_1": "alice", "alice_2": "alice", "bob": "bob"})
    written = logic.save_results(results, tmp_path / "logic")
    assert_same_outputs(cli_out, tmp_path / "logic", written)
    assert {"agreement.csv", "icc.csv", "icc.png", "dice_matrix.png", "bland_altman_volumes.png",
            "observers.provenance.json", "consensus_staple.nrrd", "consensus_majority.nrrd"} <= set(written)
    comparisons = [line.split(",")[3] for line in (cli_out / "agreement.csv").read_text().splitlines()[1:]]
    assert comparisons == ["intra-observer", "inter-observer", "inter-observer"]


def test_cli_and_logic_write_the_same_files_with_perturbations(data, scene, tmp_path):
    """STS_002 PET: the real mask and two synthetic observers made by each (grow 1 mm, shift 2 mm, seed 5), no
    features: the same files, perturbations.csv included, and the same consensus masks; the PNGs the web panel
    shows are these files' bytes."""
    from RadiomicsLabLib.mrml.observers import ObserverLogic
    from RadiomicsLabLib.observers_outputs import bland_altman_figure, figure_png

    image_path, mask_path = sts(data, "STS_002", "PET")
    cli_out = tmp_path / "cli"
    done = run_cli("observers", image_path, mask_path, "--names", "gtv", "--lesion", "STS_002", "--perturbation",
                   "grow:mm=1", "--perturbation", "shift:mm=2", "--seed", "5", "--no-features", "-o", cli_out)
    assert done.returncode == 0, done.stderr

    logic = ObserverLogic(scene)
    volume, nodes = load_into_scene(scene, image_path, [("gtv", mask_path)])
    results = logic.analyse(volume, nodes, lesion="STS_002", features=False, perturbations=["grow:mm=1", "shift:mm=2"],
                            seed=5)
    written = logic.save_results(results, tmp_path / "logic")
    assert_same_outputs(cli_out, tmp_path / "logic", written)
    assert "perturbations.csv" in written and "icc.csv" not in written
    assert len((cli_out / "perturbations.csv").read_text().splitlines()) == 1 + 2
    staple = sitk.ReadImage(str(cli_out / "consensus_staple.nrrd"))
    assert np.array_equal(sitk.GetArrayFromImage(staple), sitk.GetArrayFromImage(results.study.lesions[0].staple.consensus))
    assert figure_png(bland_altman_figure(results.study)) == (cli_out / "bland_altman_volumes.png").read_bytes()


def test_save_results_refuses_a_study_less_result_and_an_input_folder(data, scene, tmp_path):
    """Results without their study (a reloaded scene) say to run again; an output that is a file is refused before
    anything is written."""
    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.mrml.observers import ObserverLogic, ObserverResults

    logic = ObserverLogic(scene)
    with pytest.raises(RadiomicsLabError, match="run the observer analysis again"):
        logic.save_results(ObserverResults(None, None, None, None, []), tmp_path)
    image_path, mask_path = sts(data, "STS_002", "PET")
    volume, nodes = load_into_scene(scene, image_path, [("gtv", mask_path)])
    results = logic.analyse(volume, nodes, features=False, perturbations=["grow:mm=1"], seed=5)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    with pytest.raises(RadiomicsLabError, match="it is a file"):
        logic.save_results(results, blocker)
    assert blocker.read_text() == "not a folder\n"


def test_web_panel_downloads_the_same_files_and_shows_their_plot(tmp_path):
    """The web app's observers panel on brain1 and a second reader (the real label dilated by one voxel, as in
    test_web_e2e): 'All results (zip)' holds the files save_results writes, byte for byte, and the Bland-Altman plot
    the panel shows is that zip's bland_altman_volumes.png."""
    import asyncio
    import base64
    import io
    import zipfile

    from trame.app import get_server

    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.web.app import RadiomicsLabWebApp

    app = RadiomicsLabWebApp(get_server("radiomicslab-observers-outputs", client_type="vue3"))
    label = sitk.ReadImage(str(sample_case("brain1")[1])) == 1
    sitk.WriteImage(sitk.BinaryDilate(label, [1, 1, 1]), str(tmp_path / "reader2.nrrd"))
    app.loader.load_sample("brain1")
    app.loader.add_segmentation(tmp_path / "reader2.nrrd")
    app.refresh_panels()
    observers = app.panels["observers"]
    assert observers.results_zip() is None and "No observer results yet" in app.jobs.data.error
    observers.data.observers = observers.data.candidates
    observers.data.features = False
    asyncio.run(observers.run())
    assert app.jobs.data.error == ""
    with zipfile.ZipFile(io.BytesIO(observers.results_zip())) as archive:
        downloaded = {name: archive.read(name) for name in archive.namelist()}
    written = observers.logic.save_results(observers.results, tmp_path / "saved")
    assert sorted(downloaded) == sorted(written)
    for name, path in written.items():
        assert downloaded[name] == path.read_bytes(), name
    shown = observers.data.bland_altman_plot
    assert base64.b64decode(shown.split(",", 1)[1]) == downloaded["bland_altman_volumes.png"]
