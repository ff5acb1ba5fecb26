"""One home for the feature maps' outputs: ``radiomicslab maps``, ``FeatureMapLogic.save_results`` and the web
panel's "All maps (zip)" write the same files (``<feature>.nrrd``, ``summary.csv``, ``maps.json``) through
RadiomicsLabLib.featuremaps.write_feature_maps.

Real data: the brain1 crop of test_featuremaps.py (8 x 8 x 4 voxels of the pyradiomics brain1 MR case, 150 of them
in its real label), radius 1, so every run takes a second.
"""

import io
import json
import zipfile

import pytest
import SimpleITK as sitk

from conftest import run_cli
from test_featuremaps import brain1_crop, brain1_crop_files  # noqa: F401 (fixtures)
from test_observers_outputs import files, same_software, without

#: Keys of maps.json that differ by design between the command line and the Logic: ``inputs`` (the image and mask
#: files with paths and SHA-256 on the command line, the volume and segmentation nodes and the segment's name in
#: the Logic), ``seconds`` (how long the run took) and ``software`` (every loaded library: the Logic's process has
#: Slicer's MRML and VTK loaded too; compared on the libraries both list).
WHERE_AND_WHEN = ("inputs", "seconds", "software")
FEATURES = "glcm_Contrast,firstorder_Mean"


def assert_same_files(cli_out, logic_out, written):
    """The same files; the maps and summary.csv byte for byte; maps.json equal but for where and when."""
    assert files(cli_out) == files(logic_out) == sorted(written) == sorted(
        ["firstorder_Mean.nrrd", "glcm_Contrast.nrrd", "maps.json", "summary.csv"])
    for name in files(cli_out):
        ours, theirs = (cli_out / name).read_bytes(), (logic_out / name).read_bytes()
        if name == "maps.json":
            cli, logic = json.loads(ours), json.loads(theirs)
            assert without(cli, WHERE_AND_WHEN) == without(logic, WHERE_AND_WHEN)
            same_software(cli["software"], logic["software"])
            assert set(cli["inputs"]) == {"image_file", "mask_file"}
            assert logic["inputs"]["segment"] == "Label_1"
        else:
            assert ours == theirs, name


def load_into_scene(scene, image_path, mask_path):
    from RadiomicsLabLib.mrml import ExtractionLogic

    loader = ExtractionLogic(scene)
    volume = loader.load_volume(image_path)
    return volume, loader.load_segmentation(mask_path, volume)


def test_cli_and_logic_write_the_same_files(brain1_crop_files, scene, tmp_path):  # noqa: F811
    """The brain1 crop, two pyradiomics-definition maps of radius 1: every file of the command equals what
    FeatureMapLogic.save_results writes from the Logic's result on the same image and segment in a scene."""
    from RadiomicsLabLib.mrml.featuremaps import FeatureMapLogic

    image_path, mask_path = brain1_crop_files
    cli_out = tmp_path / "cli"
    done = run_cli("maps", image_path, mask_path, "--features", FEATURES, "--radius", "1", "--definition",
                   "pyradiomics", "-o", cli_out)
    assert done.returncode == 0, done.stderr

    logic = FeatureMapLogic(scene)
    volume, segmentation = load_into_scene(scene, image_path, mask_path)
    result = logic.compute(volume, segmentation, "Label_1", features=FEATURES, radius=1, definition="pyradiomics")
    written = logic.save_results(result, tmp_path / "logic")
    assert_same_files(cli_out, tmp_path / "logic", written)
    assert sitk.ReadImage(str(written["glcm_Contrast.nrrd"])).GetSize() == sitk.ReadImage(str(image_path)).GetSize()


def test_save_results_refuses_a_result_without_values_and_a_file_as_folder(brain1_crop_files, scene,  # noqa: F811
                                                                           tmp_path):
    """A result without its computed maps (a reloaded scene) says to compute again; a folder that is a file is
    refused before anything is written."""
    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.mrml.featuremaps import FeatureMapLogic, FeatureMapResult

    logic = FeatureMapLogic(scene)
    with pytest.raises(RadiomicsLabError, match="compute the maps again"):
        logic.save_results(FeatureMapResult(), tmp_path / "out")
    volume, segmentation = load_into_scene(scene, *brain1_crop_files)
    result = logic.compute(volume, segmentation, features="firstorder_Mean", radius=1, definition="pyradiomics")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    with pytest.raises(RadiomicsLabError, match="it is a file"):
        logic.save_results(result, blocker)
    assert blocker.read_text() == "not a folder\n" and not (tmp_path / "out").exists()


def test_web_panel_zip_holds_the_saved_files(brain1_crop_files, tmp_path):  # noqa: F811
    """The web app's feature map panel (no browser: its run and its download function, the bytes the button sends)
    on the brain1 crop: 'All maps (zip)' holds the files save_results writes for that run, byte for byte."""
    import asyncio

    from trame.app import get_server

    from RadiomicsLabLib.web.app import RadiomicsLabWebApp

    app = RadiomicsLabWebApp(get_server("radiomicslab-maps-outputs", client_type="vue3"))
    app.loader.load_study(*brain1_crop_files, "brain1 crop")
    app.refresh_panels()
    panel = app.panels["featuremaps"]
    assert panel.results_zip() is None and "No feature maps yet" in app.jobs.data.error
    panel.data.definition = "pyradiomics"
    panel.data.features = FEATURES.split(",")
    asyncio.run(panel.run())
    assert app.jobs.data.error == ""
    with zipfile.ZipFile(io.BytesIO(panel.results_zip())) as archive:
        downloaded = {name: archive.read(name) for name in archive.namelist()}
    written = panel.logic.save_results(panel.result, tmp_path / "saved")
    assert sorted(downloaded) == sorted(written) == sorted(
        ["firstorder_Mean.nrrd", "glcm_Contrast.nrrd", "maps.json", "summary.csv"])
    for name, path in written.items():
        assert downloaded[name] == path.read_bytes(), name
