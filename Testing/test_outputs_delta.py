"""One home for the delta outputs: ``radiomicslab delta`` and ``DeltaLogic.save_results`` write the same files through
RadiomicsLabLib.delta_outputs.write_delta_outputs.

Real data with an honest second timepoint (test_delta's ``case``, ../shared/data README): STS_002's CT and GTV as the
baseline and a follow-up made from them by a known rigid motion with the lesion shrunk and darkened; the command reads
the files, the Logic loads the same files into a study (Sequences) in a headless scene.
"""

import json

import pytest
import SimpleITK as sitk

from conftest import run_cli
from test_delta import CLI_REG, DATES, REG, case  # noqa: F401 - the module-scoped fixture of the real case
from test_observers_outputs import files, same_software, without

#: Keys of delta.provenance.json that differ by design, removed at every depth before comparing:
#: - each timepoint's source: ``image``/``mask`` file paths and ``date`` "given" (the date came from the command line)
#:   on the command line, ``volume``/``segmentation`` node names in the scene (whose date is the sequence's index);
#: - each extraction's record of the same: ``inputs`` and ``created`` (when it ran);
#: - ``mask_sha1`` and ``pixel_type`` of each lesion mask: the file's mask is 8-bit, the label map made from the scene's
#:   segments 16-bit (the same voxels: delta.csv's shape features, compared byte for byte, are equal);
#: - the extractions' ``software``: compared on the libraries both processes loaded (same_software).
WHERE = ("image", "mask", "volume", "segmentation", "date", "inputs", "created", "mask_sha1", "pixel_type", "software")


def run_both(case, tmp_path, cli_args, compute):  # noqa: F811 - case is the fixture's value
    """The command with ``cli_args`` into ``tmp_path/cli``; the same timepoints loaded as a study and computed with
    ``compute`` (DeltaLogic.compute's options), saved by save_results into ``tmp_path/logic``."""
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.delta import DeltaLogic

    done = run_cli("delta", "--timepoint", f"{DATES[0]}:{case['image_path']}:{case['mask_path']}",
                   "--timepoint", f"{DATES[1]}:{case['followup_path']}:{case['followup_mask_path']}",
                   "--label", "baseline", "--label", "week6", "--params", case["folder"] / "fast.yaml",
                   "--patient", "STS_002", *cli_args, "-o", tmp_path / "cli")
    assert done.returncode == 0, done.stderr
    logic = DeltaLogic(new_headless_app().scene)
    study = logic.load_study([(DATES[0], case["image_path"], case["mask_path"]),
                              (DATES[1], case["followup_path"], case["followup_mask_path"])],
                             name="STS_002", labels=["baseline", "week6"])
    nodes = logic.compute(study, str(case["folder"] / "fast.yaml"), **compute)
    return nodes, logic.save_results(nodes, tmp_path / "logic")


def assert_same_outputs(cli_out, logic_out, written):
    """The same set of files; every table, plot and image byte for byte; the provenance equal but for :data:`WHERE`."""
    assert files(cli_out) == files(logic_out) == sorted(written)
    cli_files, logic_files = ({name: (folder / name).read_bytes() for name in written} for folder in (cli_out, logic_out))
    cli, scene = (json.loads(texts.pop("delta.provenance.json")) for texts in (cli_files, logic_files))
    assert cli_files == logic_files
    assert [tp["label"] for tp in cli["timepoints"]] == [tp["label"] for tp in scene["timepoints"]]
    assert without(cli, WHERE) == without(scene, WHERE)
    assert cli["software"] == scene["software"]
    for label in cli["extraction"]:
        same_software(cli["extraction"][label]["software"], scene["extraction"][label]["software"])


def test_without_registration_cli_and_logic_write_the_same_files(case, tmp_path):  # noqa: F811
    """Baseline and follow-up with their own masks, no registration: delta.csv, both plots and the provenance."""
    nodes, written = run_both(case, tmp_path, [], {})
    assert sorted(written) == ["delta.csv", "delta.provenance.json", "trajectories.png", "waterfall.png"]
    assert_same_outputs(tmp_path / "cli", tmp_path / "logic", written)
    # the scene's waterfall chart holds the series waterfall.png draws (RadiomicsLabLib.delta.waterfall)
    from RadiomicsLabLib.delta import waterfall
    from RadiomicsLabLib.mrml.charts import chart_series, series_points

    bars = waterfall(nodes.results[0].rows, "original_shape_VoxelVolume")
    assert series_points(chart_series(nodes.waterfall)[0])[1] == [b[1] for b in bars]


def test_with_registration_and_maps_cli_and_logic_write_the_same_files(case, tmp_path, monkeypatch):  # noqa: F811
    """A rigid registration (ITK on one thread both sides, so the same seed gives the same bits) and difference maps:
    registration.csv and maps/ too, byte for byte."""
    monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        _, written = run_both(case, tmp_path, ["--register", "rigid", "--maps", *CLI_REG],
                              dict(register="rigid", difference_maps=True, registration_options=REG))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    assert {"registration.csv", "maps/STS_002_week6_difference.nii.gz"} <= set(written)
    assert_same_outputs(tmp_path / "cli", tmp_path / "logic", written)


def test_save_results_refuses_a_run_less_result(tmp_path):
    """Nodes without their run (a reloaded scene) say to compute again; nothing is written."""
    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.delta import DeltaLogic, DeltaNodes

    with pytest.raises(RadiomicsLabError, match="compute the delta again"):
        DeltaLogic(new_headless_app().scene).save_results(DeltaNodes(None, None, None), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_web_panel_downloads_the_same_files_and_shows_their_plots(tmp_path):
    """The web app's delta panel on brain1 and a follow-up whose lesion is the real label eroded by one voxel in plane
    (as in test_web_e2e): 'All results (zip)' holds the files save_results writes, byte for byte, and the plots the
    panel shows are that zip's trajectories.png and waterfall.png."""
    import asyncio
    import base64
    import io
    import zipfile

    from trame.app import get_server

    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.web.app import RadiomicsLabWebApp

    app = RadiomicsLabWebApp(get_server("radiomicslab-delta-outputs", client_type="vue3"))
    image_path, label_path = sample_case("brain1")
    sitk.WriteImage(sitk.BinaryErode(sitk.ReadImage(str(label_path)) == 1, [1, 1, 0]), str(tmp_path / "followup.nrrd"))
    app.loader.load_sample("brain1")
    app.loader.add_volume(image_path, "brain1 follow-up")
    app.loader.add_segmentation(tmp_path / "followup.nrrd", "follow-up segmentation")
    delta = app.panels["delta"]
    app.refresh_panels()
    assert delta.results_zip() is None and "No delta results yet" in app.jobs.data.error
    volumes = {v["title"]: v["value"] for v in delta.data.volumes}
    segmentations = {s["title"]: s["value"] for s in delta.data.segmentations}
    delta.data.preset = "pyradiomics-default"
    asyncio.run(delta.run([
        {"label": "baseline", "date": "2021-01-04", "volume": volumes["brain1"],
         "segmentation": segmentations["brain1 segmentation"]},
        {"label": "week6", "date": "2021-02-15", "volume": volumes["brain1 follow-up"],
         "segmentation": segmentations["follow-up segmentation"]}]))
    assert app.jobs.data.error == ""
    with zipfile.ZipFile(io.BytesIO(delta.results_zip())) as archive:
        downloaded = {name: archive.read(name) for name in archive.namelist()}
    written = delta.logic.save_results(delta.nodes, tmp_path / "saved")
    assert sorted(downloaded) == sorted(written) == ["delta.csv", "delta.provenance.json", "trajectories.png",
                                                     "waterfall.png"]
    for name, path in written.items():
        assert downloaded[name] == path.read_bytes(), name
    for state, name in (("trajectories_plot", "trajectories.png"), ("waterfall_plot", "waterfall.png")):
        assert base64.b64decode(getattr(delta.data, state).split(",", 1)[1]) == downloaded[name], name
