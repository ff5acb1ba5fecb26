"""One home for the extraction's outputs: ``radiomicslab extract -o DIR/features.csv``,
``ExtractionLogic.save_results(table, DIR)`` and the web app's results pane (its CSV, wide CSV and provenance
downloads) write the same files through RadiomicsLabLib.results.write_results.

Real data: the pyradiomics brain1 MR case (image + label, ../shared/data/pyradiomics_cases), first-order and shape
features only so that each run takes seconds.
"""

import json

import pytest

from conftest import run_cli
from test_observers_outputs import files, same_software, without

#: Keys of features.provenance.json that differ by design between the command line and the Logic:
#: ``inputs`` (image and mask files with their paths and SHA-256 on the command line, the volume and segmentation
#: nodes with their names and IDs in the Logic), ``created`` (when) and ``software`` (every loaded library: the
#: Logic's process has Slicer's MRML and VTK loaded too; compared on the libraries both list).
WHERE_AND_WHEN = ("inputs", "created", "software")
#: Per segment, what differs with the mask's image type: the command line's mask is the label-map file as read
#: (here 32-bit integers), the Logic's the segment's binary labelmap (8-bit), so ``mask_sha1`` (a hash of the image,
#: type included) and ``mask_geometry.pixel_type`` differ; the voxels are the same: the engine's own hash of the mask
#: it measured (pyradiomics' ``Mask-original_Hash`` in ``diagnostics``) is compared and equal, and so is the CSV.
MASK_IMAGE_TYPE = ("mask_sha1", "pixel_type")


def comparable(provenance: dict) -> dict:
    """The provenance without :data:`WHERE_AND_WHEN` and, in each segment, :data:`MASK_IMAGE_TYPE`."""
    provenance = without(provenance, WHERE_AND_WHEN)
    for segment in provenance["segments"].values():
        segment.pop(MASK_IMAGE_TYPE[0])
        segment["mask_geometry"].pop(MASK_IMAGE_TYPE[1])
    return provenance


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text("featureClass:\n  firstorder: []\n  shape: []\n")
    return path


def assert_same_files(cli_out, logic_out, written):
    """The same two files; the CSV byte for byte; the provenance equal but for where and when (and the software on
    the libraries both list)."""
    assert files(cli_out) == files(logic_out) == sorted(written) == ["features.csv", "features.provenance.json"]
    assert (cli_out / "features.csv").read_bytes() == (logic_out / "features.csv").read_bytes()
    cli, logic = (json.loads((folder / "features.provenance.json").read_text()) for folder in (cli_out, logic_out))
    assert comparable(cli) == comparable(logic)
    hashes = [[s["diagnostics"]["Mask-original_Hash"] for s in p["segments"].values()] for p in (cli, logic)]
    assert hashes[0] == hashes[1] and all(hashes[0])
    same_software(cli["software"], logic["software"])
    assert set(cli["inputs"]) == {"image_file", "mask_file"}
    assert {"volume", "segmentation"} <= set(logic["inputs"])


@pytest.mark.parametrize("wide", [False, True], ids=["long", "wide"])
def test_cli_and_logic_write_the_same_files(brain1, scene, tmp_path, params, wide):
    """brain1 image + label, a parameter file: the command's features.csv (long, or --wide) and provenance equal
    what ExtractionLogic.save_results writes from the feature table node of the same extraction in a scene."""
    from RadiomicsLabLib.mrml import ExtractionLogic

    image_path, mask_path = brain1
    cli_out = tmp_path / "cli"
    done = run_cli("extract", image_path, mask_path, "--params", params, "-o", cli_out / "features.csv",
                   *(["--wide"] if wide else []))
    assert done.returncode == 0, done.stderr

    logic = ExtractionLogic(scene)
    volume = logic.load_volume(image_path)
    table = logic.extract(volume, logic.load_segmentation(mask_path, volume), settings=str(params))
    written = logic.save_results(table, tmp_path / "logic", wide=wide)
    assert_same_files(cli_out, tmp_path / "logic", written)
    header = (cli_out / "features.csv").read_text().splitlines()[0]
    assert header.startswith("segment,original_") if wide else header.startswith("segment,")


def test_save_results_refuses_a_file_as_folder_and_a_non_table(brain1, scene, tmp_path, params):
    """A folder that is a file is refused before anything is written; so is a node that is not a table."""
    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.mrml import ExtractionLogic

    logic = ExtractionLogic(scene)
    volume = logic.load_volume(brain1[0])
    table = logic.extract(volume, logic.load_segmentation(brain1[1], volume), settings=str(params))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    with pytest.raises(RadiomicsLabError, match="it is a file"):
        logic.save_results(table, blocker)
    assert blocker.read_text() == "not a folder\n"
    with pytest.raises(RadiomicsLabError, match="feature table must be a vtkMRMLTableNode"):
        logic.save_results(volume, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_web_results_pane_downloads_the_saved_files(brain1, tmp_path, params):
    """The web app's results pane (no browser: its download functions, the bytes the buttons send) on a feature
    table of its scene: 'CSV', 'Wide CSV' and 'Provenance' are the files save_results writes, byte for byte."""
    from trame.app import get_server

    from RadiomicsLabLib.web.app import RadiomicsLabWebApp

    app = RadiomicsLabWebApp(get_server("radiomicslab-extraction-outputs", client_type="vue3"))
    app.loader.load_sample("brain1")
    app.refresh_panels()
    extraction = app.panels["extraction"].logic
    volume = app.loader.current_volume()
    segmentation = app.slicer_app.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    table = extraction.extract(volume, segmentation, settings=str(params))
    app.results.show(table)
    for wide, downloaded in ((False, app.results.csv_bytes()), (True, app.results.wide_csv_bytes())):
        written = extraction.save_results(table, tmp_path / ("wide" if wide else "long"), wide=wide)
        assert downloaded == written["features.csv"].read_bytes()
        if not wide:
            assert app.results.provenance_bytes() == written["features.provenance.json"].read_bytes()
