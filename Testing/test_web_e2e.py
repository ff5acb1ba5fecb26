"""The web GUI end to end in a real browser (Debian's Chromium driven by Playwright), plus its loader's safety.

The server is the real ``radiomicslab web`` on a free loopback port, rendering offscreen with EGL
(Mesa). The browser session does what a radiologist does: open brain1, paint a new segment over the
lesion with real mouse events in the axial view, extract features and read them in the table, check
them against ``radiomicslab extract`` on the painted mask exported from the page, then upload a
corrupt file and see the error with the study unchanged. A screenshot of each step is kept in
``Testing/artifacts/web/``.

Without the browser: the Paint quirk (see ``RadiomicsLabLib/web/loader.py``) reproduced and fixed,
and the loader's refusals (path traversal, size and type of uploads, corrupt files).
"""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.web.driver import add_segment, axial_view_box, listening_addresses, load_sample, open_tool, stroke

from conftest import read_csv, run_cli

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "web"
FEATURES_TO_READ = ("original_firstorder_Mean", "original_shape_VoxelVolume", "original_glcm_Contrast",
                    "original_glszm_ZoneEntropy")


# ---------------------------------------------------------------------------------------------
# Without a browser: the loader
# ---------------------------------------------------------------------------------------------
def upload(name, content: bytes) -> dict:
    """A file as the browser sends it (trame's file dict)."""
    return {"name": name, "size": len(content), "type": "", "content": content}


def test_data_folder_refuses_paths_outside(tmp_path):
    from RadiomicsLabLib.web.loader import DataFolder

    root = tmp_path / "data"
    (root / "case").mkdir(parents=True)
    image = sitk.Image(4, 4, 2, sitk.sitkInt16)
    sitk.WriteImage(image, str(root / "case" / "ct.nrrd"))
    sitk.WriteImage(image, str(tmp_path / "secret.nrrd"))
    (root / "escape.nrrd").symlink_to(tmp_path / "secret.nrrd")
    folder = DataFolder(root)
    assert [(e.path, e.kind) for e in folder.entries()] == [("case/ct.nrrd", "image")]  # the link is not listed
    assert folder.path_of("case/ct.nrrd") == (root / "case" / "ct.nrrd").resolve()
    for bad in ("../secret.nrrd", "case/../../secret.nrrd", str(tmp_path / "secret.nrrd"), "/etc/passwd",
                "escape.nrrd", "C:\\Windows\\win.ini", "", "case/missing.nrrd"):
        with pytest.raises(RadiomicsLabError, match="data folder"):
            folder.path_of(bad)


def test_upload_checks_size_type_and_name(tmp_path):
    from RadiomicsLabLib.web.loader import UploadFolder

    with pytest.raises(RadiomicsLabError, match="more than the limit of 1 MB"):
        with UploadFolder([upload("big.nrrd", b"x" * (2**20 + 1))], "image", max_bytes=2**20):
            pass
    with pytest.raises(RadiomicsLabError, match="not a file type accepted here"):
        with UploadFolder([upload("run.sh", b"#!/bin/sh\n")], "image"):
            pass
    with pytest.raises(RadiomicsLabError, match="not a file type accepted here"):
        with UploadFolder([upload("study.mrb", b"PK")], "parameters"):
            pass
    with UploadFolder([upload("../../etc/evil.nrrd", b"data")], "image") as uploads:
        folder = uploads[0].path.parent
        assert uploads[0].name == "evil.nrrd" and folder.name.startswith("radiomicslab-upload-")
        assert uploads[0].path.read_bytes() == b"data"
    assert not folder.exists()  # removed with its files


@pytest.fixture(scope="module")
def web_app():
    """The real app object (views included), not served: what the browser drives, in process."""
    from RadiomicsLabLib.web.app import RadiomicsLabWebApp
    from trame.app import get_server

    return RadiomicsLabWebApp(get_server("radiomicslab-test", client_type="vue3"))


def paint_stroke(view, fractions=((0.5, 0.5), (0.53, 0.52), (0.56, 0.54))):
    """Press, move and release the left button in a slice view through VTK's interactor (display fractions)."""
    interactor = view.interactor()
    width, height = view.render_window().GetSize()
    points = [(int(fx * width), int(fy * height)) for fx, fy in fractions]
    interactor.SetEventInformation(*points[0])
    interactor.InvokeEvent("MouseMoveEvent")
    interactor.InvokeEvent("LeftButtonPressEvent")
    for x, y in points[1:]:
        interactor.SetEventInformation(x, y)
        interactor.InvokeEvent("MouseMoveEvent")
    interactor.InvokeEvent("LeftButtonReleaseEvent")


def painted_mask(app, segment_id):
    from RadiomicsLabLib.mrml.convert import segment_to_sitk

    editor = app.slicer_app.segmentation_editor
    return segment_to_sitk(editor.active_segmentation_node, segment_id, app.loader.current_volume())


def centroid(mask) -> tuple:
    """Physical (LPS, mm) centre of a 0/1 mask."""
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(sitk.Cast(mask, sitk.sitkUInt8))
    return statistics.GetCentroid(1)


def test_paint_quirk_reproduced_in_trame_slicers_order():
    """The quirk: effect parameters added before the views (trame-slicer's app order) + a volume
    loaded from Python without clearing the scene = Paint cannot even be switched on."""
    from trame_slicer.core import SlicerApp
    from trame_slicer.segmentation import SegmentationEffectPaint
    from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition

    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.mrml import ExtractionLogic

    app = SlicerApp()
    app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    app.segmentation_editor.get_effect(SegmentationEffectPaint)  # what trame-slicer's effect logics do first
    app.view_manager.create_view(ViewLayoutDefinition.axial_view())
    logic = ExtractionLogic(app.scene)
    volume = logic.load_volume(sample_case("brain1")[0])
    app.segmentation_editor.set_active_segmentation(app.segmentation_editor.create_empty_segmentation_node(), volume)
    with pytest.raises(AttributeError, match="paint_interaction_stopped"):
        app.segmentation_editor.set_active_effect_type(SegmentationEffectPaint)


def test_loading_from_python_first_then_paint(web_app):
    """The app's loader (a sample case loaded from Python before any interaction): Paint works, and a
    stroke through VTK's interactor paints the new segment and nothing outside the stroke's slices."""
    from trame_slicer.segmentation import SegmentationEffectPaint

    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.web.loader import nodes_of

    app = web_app
    volume, segmentation = app.loader.load_sample("brain1")
    assert app.loader.paint_ready()
    editor = app.slicer_app.segmentation_editor
    assert editor.active_segmentation_node is segmentation
    segment_id = editor.add_empty_segment(segment_name="Painted")
    editor.set_active_effect_type(SegmentationEffectPaint)
    axial = next(v for v in app.slicer_app.view_manager.get_slice_views() if v.get_orientation() == "Axial")
    axial.render_window().SetSize(400, 400)
    axial.update_size(400, 400)
    axial.interactor().InvokeEvent("WindowResizeEvent")  # as trame-slicer's RcaWindow does for the browser's size
    paint_stroke(axial)
    editor.deactivate_effect()
    painted = painted_mask(app, segment_id)
    assert sitk.GetArrayViewFromImage(painted).sum() > 50, "the stroke painted nothing"
    # The views are centred on the lesion and the stroke starts at the view's centre.
    lesion = sitk.ReadImage(str(sample_case("brain1")[1])) == 1
    distance = np.linalg.norm(np.subtract(centroid(painted), centroid(lesion)))
    assert distance < 15, f"the stroke painted {distance:.1f} mm away from the lesion's centre"
    # A second study replaces the first and painting still works (the scene is cleared each time).
    app.loader.load_sample("brain2")
    assert app.loader.paint_ready()
    assert app.loader.study_name == "brain2"
    assert [v.GetName() for v in nodes_of(app.loader.scene, "vtkMRMLScalarVolumeNode")] == ["brain2"]


def test_web_command_warns_off_loopback_and_refuses_missing_data():
    from RadiomicsLabLib.commands.web import is_loopback

    done = run_cli("web", "--host", "0.0.0.0", "--data", "/nonexistent-radiomicslab-data")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("radiomicslab: warning: listening on 0.0.0.0: any machine that can reach it")
    assert lines[-1] == ("radiomicslab: error: Data folder '/nonexistent-radiomicslab-data' does not exist; "
                         "give an existing folder with --data.")
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.1.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "example.org"))


def test_uploads_and_study_round_trip(web_app):
    """Valid uploads: an image starts a study, a label map joins it; the study downloaded as .mrb (the Data
    panel's button) and uploaded again gives back the same image voxels and segments."""
    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.mrml.convert import volume_to_sitk

    app = web_app
    image_path, label_path = sample_case("brain2")
    volume, _ = app.loader.load_upload([upload(image_path.name, image_path.read_bytes())], "image")
    assert app.loader.study_name == "brain2_image" and volume.GetName() == "brain2_image"
    _, segmentation = app.loader.load_upload([upload(label_path.name, label_path.read_bytes())], "segmentation")
    assert segmentation.GetSegmentation().GetNumberOfSegments() >= 1
    app.refresh_panels()
    study = app.panels["data"].study_bytes()
    assert study[:2] == b"PK" and app.jobs.data.error == ""
    before = sitk.GetArrayFromImage(volume_to_sitk(app.loader.current_volume()))
    app.loader.load_sample("brain1")
    reloaded, reloaded_segmentation = app.loader.load_upload([upload("brain2 study.mrb", study)], "study")
    assert reloaded.GetName() == "brain2_image" and app.loader.study_name == "brain2 study"
    assert np.array_equal(sitk.GetArrayFromImage(volume_to_sitk(reloaded)), before)
    assert reloaded_segmentation.GetName() == segmentation.GetName()
    assert app.loader.paint_ready()


def test_job_runner_progress_cancel_and_errors(web_app):
    """Long work runs in the worker thread with the views' rendering blocked; progress reaches the page
    state, Cancel stops it (the Logic's cancel exception becomes the message), a bug becomes a message."""
    import asyncio
    import time

    from RadiomicsLabLib.extraction import ExtractionCancelled

    jobs, views = web_app.jobs, web_app.slicer_app.view_manager.get_views()

    def work(progress):
        for step in range(1, 400):
            if progress(step, 400, f"step {step}") is False:
                raise ExtractionCancelled(f"Cancelled after {step} steps; nothing was written.")
            time.sleep(0.005)
        return "finished"

    def broken(progress):
        raise ValueError("boom")

    async def scenario():
        task = asyncio.ensure_future(jobs.run("Test job", work))
        await asyncio.sleep(0.4)
        assert jobs.data.busy and all(v.is_render_blocked for v in views)
        assert 0 < jobs.data.done < 400 and jobs.data.total == 400 and jobs.data.message.startswith("step ")
        jobs.cancel()
        assert await task is None
        assert jobs.data.error.startswith("Cancelled after") and not jobs.data.busy
        assert not any(v.is_render_blocked for v in views)
        assert await jobs.run("Broken job", broken) is None
        assert jobs.data.error == "Broken job failed unexpectedly (ValueError: boom); see the server log."
        assert await jobs.run("Quick job", lambda progress: 42) == 42 and jobs.data.error == ""

    asyncio.run(scenario())


def test_corrupt_upload_leaves_study(web_app, tmp_path):
    app = web_app
    app.loader.load_sample("brain1")
    before = [app.loader.scene.GetNthNode(i).GetID() for i in range(app.loader.scene.GetNumberOfNodes())]
    corrupt = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 64 64 64\nencoding: raw\n\n" + b"\0" * 100
    for files, kind, message in (
            ([upload("corrupt.nrrd", corrupt)], "image", "not an image RadiomicsLab can read"),
            ([upload("corrupt.nrrd", corrupt)], "segmentation", "not an image RadiomicsLab can read"),
            ([upload("broken.mrb", b"PK\x03\x04 not really a zip")], "study", "not a Slicer study"),
            ([upload("notes.txt", b"hello")], "image", "not a file type accepted here")):
        with pytest.raises(RadiomicsLabError, match=message):
            app.loader.load_upload(files, kind)
        after = [app.loader.scene.GetNthNode(i).GetID() for i in range(app.loader.scene.GetNumberOfNodes())]
        assert after == before, f"a refused {kind} upload changed the scene"
    assert app.loader.study_name == "brain1"


def test_observer_and_delta_panels(web_app, tmp_path):
    """The observers and delta panels' runs through the job runner on brain1. A second reader is built from
    the real mask (dilated by 1 voxel); the follow-up is the same image with the mask eroded by 1 voxel in
    plane, dated 42 days later. Expected values come straight from the masks."""
    import asyncio

    from RadiomicsLabLib.data import sample_case

    app = web_app
    image_path, label_path = sample_case("brain1")
    label = sitk.ReadImage(str(label_path)) == 1
    reader2 = sitk.BinaryDilate(label, [1, 1, 1])
    followup = sitk.BinaryErode(label, [1, 1, 0])
    sitk.WriteImage(reader2, str(tmp_path / "reader2.nrrd"))
    sitk.WriteImage(followup, str(tmp_path / "followup.nrrd"))
    app.loader.load_sample("brain1")
    app.loader.add_segmentation(tmp_path / "reader2.nrrd")
    app.refresh_panels()

    observers = app.panels["observers"]
    assert [c["title"] for c in observers.data.candidates] == ["brain1 segmentation / Label_1", "reader2 / Label_1"]
    observers.data.observers = observers.data.candidates
    observers.data.features = False
    asyncio.run(observers.run())
    assert app.jobs.data.error == ""
    a, b = sitk.GetArrayFromImage(label).astype(bool), sitk.GetArrayFromImage(reader2).astype(bool)
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert observers.data.agreement == [{"pair": "brain1 segmentation / reader2", "dice": f"{dice:.3f}",
                                         "hd95": observers.data.agreement[0]["hd95"]}]
    assert observers.data.bland_altman_plot.startswith("data:image/png;base64,")

    app.loader.add_volume(image_path, "brain1 follow-up")
    app.loader.add_segmentation(tmp_path / "followup.nrrd", "follow-up segmentation")
    delta = app.panels["delta"]
    delta.data.timepoints = []
    app.refresh_panels()
    volumes = {v["title"]: v["value"] for v in delta.data.volumes}
    segmentations = {s["title"]: s["value"] for s in delta.data.segmentations}
    delta.data.timepoints = [
        {"label": "baseline", "date": "2021-01-04", "volume": volumes["brain1"],
         "segmentation": segmentations["brain1 segmentation"]},
        {"label": "week6", "date": "2021-02-15", "volume": volumes["brain1 follow-up"],
         "segmentation": segmentations["follow-up segmentation"]}]
    asyncio.run(delta.run())
    assert app.jobs.data.error == "" and delta.data.trajectories_plot.startswith("data:image/png;base64,")
    rows = app.results.data.rows  # the delta table, opened in the results pane
    volume_row = next(r for r in rows if r["feature"] == "original_shape_VoxelVolume" and r["timepoint"] == "week6")
    expected = 100 * (sitk.GetArrayViewFromImage(followup).sum() / a.sum() - 1)
    assert volume_row["days"] == "42" or float(volume_row["days"]) == 42
    assert float(volume_row["delta_rel"]) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(data):
    from RadiomicsLabLib.web.driver import served

    with served(data, ARTIFACTS / "server.log") as (url, port):
        yield url, port


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    from RadiomicsLabLib.web.driver import open_app, open_browser

    with sync_playwright() as playwright:
        browser = open_browser(playwright)
        yield open_app(browser, server[0])
        browser.close()


def screenshot(page, name):
    page.mouse.move(700, 895)  # off the buttons (no tooltip) and off the views
    page.wait_for_timeout(800)  # the views' next frames
    page.screenshot(path=str(ARTIFACTS / name))


def segment_volume(page, name) -> str:
    row = page.locator(".rl-ext-segments .v-list-item", has_text=name)
    return row.locator(".rl-ext-segment-volume").inner_text() if row.count() else ""


def test_browser_server_on_loopback_only(server):
    assert listening_addresses(server[1]) == {"127.0.0.1"}


def test_browser_load_sample(page):
    assert page.title() == "RadiomicsLab"
    load_sample(page, "brain1")
    page.wait_for_function("document.querySelector('.rl-status').innerText.includes('256 x 256 x 25')")
    assert "0.781 x 0.781 x 6.5 mm" in page.locator(".rl-status").inner_text()
    screenshot(page, "01_brain1_loaded.png")


def test_browser_paint_new_segment(page):
    add_segment(page, "Painted")
    box = axial_view_box(page)
    stroke(page, box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # the views are centred on the lesion
    open_tool(page, "extraction")
    page.wait_for_function(
        "[...document.querySelectorAll('.rl-ext-segments .v-list-item')].some(r => "
        "r.querySelector('.rl-ext-segment-name').innerText === 'Painted' && "
        "parseFloat(r.querySelector('.rl-ext-segment-volume').innerText) > 0)")
    assert float(segment_volume(page, "Painted").split()[0]) > 0.1
    screenshot(page, "02_painted_segment.png")


def test_browser_extraction_matches_cli(page, brain1, tmp_path):
    open_tool(page, "extraction")
    page.locator(".rl-panel-extraction button", has_text="None").click()
    row = page.locator(".rl-ext-segments .v-list-item", has_text="Painted")
    row.locator("input[type=checkbox]").check()
    page.locator(".rl-ext-run").click()
    page.wait_for_selector(".rl-ext-table tbody tr td")
    page.wait_for_function("document.querySelector('.rl-ext-table').innerText.includes('Painted')")
    screenshot(page, "03_features_table.png")

    # The painted mask, exported from the page, through the real CLI.
    open_tool(page, "data")
    choose(page, ".rl-export-segment", "Painted")
    with page.expect_download() as download:
        page.locator(".rl-export-mask").click()
    mask = tmp_path / "painted.nrrd"
    download.value.save_as(mask)
    assert download.value.suggested_filename == "Painted.nrrd"
    cli_csv = tmp_path / "cli.csv"
    done = run_cli("extract", brain1[0], mask, "-o", cli_csv)
    assert done.returncode == 0, done.stderr
    cli = {r["feature"]: r["value"] for r in read_csv(cli_csv)}
    assert len(cli) == 107

    # Values read in the table equal the CLI's, to the last digit.
    search = page.locator(".rl-ext-search input")
    for feature in FEATURES_TO_READ:
        search.fill(feature)
        page.wait_for_function(
            f"[...document.querySelectorAll('.rl-ext-table tbody tr')].every(r => r.innerText.includes('{feature}'))")
        rows = [r.locator("td").all_inner_texts() for r in page.locator(".rl-ext-table tbody tr").all()]
        cells = next(r for r in rows if r[1] == feature)  # Segment, Feature, Value, IBSI tag, Class, Image type
        assert cells[0] == "Painted"
        assert cells[2] == cli[feature], f"{feature}: table {cells[2]}, CLI {cli[feature]}"
    search.fill("")

    # The whole table through its CSV download: every value identical to the CLI's.
    with page.expect_download() as download:
        page.locator(".rl-ext-csv").click()
    web_csv = tmp_path / "web.csv"
    download.value.save_as(web_csv)
    web = {r["feature"]: r["value"] for r in read_csv(web_csv)}
    assert web == cli
    with page.expect_download() as download:
        page.locator(".rl-ext-provenance").click()
    path = tmp_path / "web.provenance.json"
    download.value.save_as(path)
    provenance = json.loads(path.read_text())
    assert provenance["inputs"]["volume"] == "brain1" and list(provenance["segments"]) == ["Painted"]
    assert provenance["image"]["sha1"] and provenance["engine"] == "pyradiomics"


def axial_image(page):
    boxes = [(i, img.bounding_box()) for i, img in enumerate(page.locator("img.image-display-area").all())]
    index = max((b for b in boxes if b[1]), key=lambda b: b[1]["width"] * b[1]["height"])[0]
    return page.locator("img.image-display-area").nth(index)


def lesion_region(page, img) -> np.ndarray:
    """Central part of the axial view (the views are centred on the lesion) as RGB."""
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(img.screenshot())).convert("RGB"), dtype=float)
    h, w = pixels.shape[:2]
    return pixels[int(0.4 * h):int(0.6 * h), int(0.4 * w):int(0.6 * w)]


def choose(page, select_class, item_text):
    page.locator(select_class).click()
    page.locator(".v-overlay .v-list-item", has_text=item_text).click()


def test_browser_feature_map_overlaid(page):
    open_tool(page, "featuremaps")
    choose(page, ".rl-map-segment", "Painted")
    page.wait_for_function("document.querySelector('.rl-map-estimate').innerText.includes('Estimated peak memory')")
    page.locator(".rl-map-run").click()
    page.wait_for_selector(".rl-map-overlay")  # the colour bar over the views
    statistics = dict(row.split("\t") for row in page.locator(".rl-map-statistics").inner_text().splitlines())
    assert int(statistics["voxels"]) > 1000 and float(statistics["min"]) <= float(statistics["max"])
    page.wait_for_function("document.querySelector('.rl-ext-table').innerText.includes('cm_contrast_3D_avg')")
    screenshot(page, "04_feature_map.png")
    axial = axial_image(page)
    with_map = lesion_region(page, axial)
    page.locator(".rl-panel-featuremaps .v-switch input").uncheck()
    page.wait_for_selector(".rl-map-overlay", state="detached")
    page.wait_for_timeout(1500)
    without_map = lesion_region(page, axial)
    changed = np.abs(with_map - without_map).max(axis=2) > 30
    assert changed.sum() > 200, f"the map changed only {changed.sum()} pixels of the lesion region"


def test_browser_habitats_over_the_image(page):
    open_tool(page, "habitats")
    choose(page, ".rl-hab-segment", "Painted")
    page.locator(".rl-hab-run").click()
    page.wait_for_function("document.querySelectorAll('.rl-hab-item').length === 3")
    fractions = [float(t.split()[-2]) for t in page.locator(".rl-hab-item").all_inner_texts()]
    assert sum(fractions) == pytest.approx(100, abs=0.2)
    page.wait_for_function("document.querySelector('.rl-ext-table').innerText.includes('Habitat 3')")
    assert page.locator(".rl-hab-fractions img").count() == 1
    screenshot(page, "05_habitats.png")
    # A feature map as an extra channel: its mean per habitat appears in the statistics table.
    page.locator(".rl-hab-maps input").fill("glcm_Contrast")
    page.locator(".rl-hab-run").click()
    page.wait_for_function("document.querySelector('.rl-ext-table').innerText.includes(':cm_contrast_3D_avg')")
    assert page.locator(".rl-hab-item").count() == 3
    page.locator(".rl-hab-maps input").fill("")


def test_browser_corrupt_upload_shows_error(page, tmp_path):
    open_tool(page, "data")
    status = page.locator(".rl-status").inner_text()
    corrupt = tmp_path / "corrupt_scan.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream, nor a NIfTI image" * 10)
    page.set_input_files("#rl-upload-image", str(corrupt))
    error = page.locator(".rl-error")
    error.wait_for()
    # The reader checks the gzip stream before ITK reads it (RadiomicsLabLib.imageio.verify_file).
    assert "corrupt_scan.nii.gz" in error.inner_text() and "has damaged gzip data" in error.inner_text()
    assert "copy or export it again from its source" in error.inner_text()
    screenshot(page, "06_corrupt_upload_error.png")
    # The study is as it was: same chip, same status, the painted segment still there.
    assert page.locator(".rl-study-chip").inner_text() == "brain1"
    assert page.locator(".rl-status").inner_text() == status
    open_tool(page, "extraction")
    assert float(segment_volume(page, "Painted").split()[0]) > 0.1


def test_browser_save_study(page, tmp_path):
    """The app bar's Save study downloads the study as .mrb; it loads in a fresh scene with the painted segment,
    the feature tables and the map."""
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.scenefiles import load_scene
    from RadiomicsLabLib.web.loader import nodes_of

    with page.expect_download() as download:
        page.locator(".rl-appbar-save").click()
    assert download.value.suggested_filename == "brain1.mrb"
    path = tmp_path / "brain1.mrb"
    download.value.save_as(path)
    scene = load_scene(new_headless_app().scene, path)
    segments = {s.GetSegmentation().GetNthSegment(i).GetName() for s in nodes_of(scene, "vtkMRMLSegmentationNode")
                for i in range(s.GetSegmentation().GetNumberOfSegments())}
    assert {"Label_1", "Painted", "Habitat 1: brain1 low"} <= segments
    kinds = {t.GetAttribute("RadiomicsLab.Kind") for t in nodes_of(scene, "vtkMRMLTableNode")}
    assert {"features", "feature-map-summary", "habitat-statistics"} <= kinds
    assert any(v.GetAttribute("RadiomicsLab.Kind") == "feature-map" for v in nodes_of(scene, "vtkMRMLScalarVolumeNode"))


def test_browser_artifacts_kept():
    """Screenshots of every step are test artefacts (Testing/artifacts/web/, git-ignored)."""
    shots = sorted(p.name for p in ARTIFACTS.glob("*.png"))
    assert shots == ["01_brain1_loaded.png", "02_painted_segment.png", "03_features_table.png",
                     "04_feature_map.png", "05_habitats.png", "06_corrupt_upload_error.png"]
    assert all((ARTIFACTS / s).stat().st_size > 20_000 for s in shots)
    log = (ARTIFACTS / "server.log").read_text()
    assert "GetROINode" not in log, log[-2000:]  # trame-slicer's crop toggle before any volume (app.py)


# ---------------------------------------------------------------------------------------------
# In the browser: the observers, delta and cohort panels (screenshots in artifacts/web/workflows/)
# ---------------------------------------------------------------------------------------------
def choose_exact(page, select, item_text):
    """Open a select (a locator or a CSS selector) and click the item whose title is exactly ``item_text``."""
    import re

    (page.locator(select) if isinstance(select, str) else select).click()
    page.locator(".v-overlay--active .v-list-item-title").filter(
        has_text=re.compile(f"^{re.escape(item_text)}$")).first.click()


def wait_notice(page, text):
    page.wait_for_function(f"document.querySelector('.rl-notice') && "
                           f"document.querySelector('.rl-notice').innerText.includes({json.dumps(text)})")


def wait_edited_segmentation(page, name):
    """Wait until the Data panel's segmentation being edited is ``name`` (an added segmentation becomes it)."""
    page.wait_for_function(f"document.querySelector('.rl-edited-segmentation').innerText.includes({json.dumps(name)})")


def results_rows(page) -> list[dict]:
    """The rows the results pane shows (its current page), as {column title: cell text}."""
    titles = page.locator(".rl-ext-table thead th").all_inner_texts()
    return [dict(zip(titles, row.locator("td").all_inner_texts()))
            for row in page.locator(".rl-ext-table tbody tr").all()]


def test_browser_observers_agreement(page, tmp_path):
    """Two readers of brain1's lesion: the sample's label and, uploaded as a second segmentation, the same
    label dilated by one voxel (the data set has no second reader; a documented perturbation of the real
    mask). The agreement table shows the Dice and HD95 the core computes for these two masks, and the Dice
    is 2|A n B| / (|A| + |B|) counted on the arrays."""
    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.observers import agreement, make_lesion

    image_path, label_path = sample_case("brain1")
    label = sitk.ReadImage(str(label_path)) == 1
    reader2 = sitk.BinaryDilate(label, [1, 1, 1])
    sitk.WriteImage(reader2, str(tmp_path / "reader2.nrrd"))
    open_tool(page, "data")
    load_sample(page, "brain1")
    page.set_input_files("#rl-upload-segmentation", str(tmp_path / "reader2.nrrd"))
    wait_edited_segmentation(page, "reader2")

    open_tool(page, "observers")
    page.locator(".rl-obs-observers").click()  # one multiple select: tick both readers' segments
    for candidate in ("brain1 segmentation / Label_1", "reader2 / Label_1"):
        item = page.locator(".v-overlay--active .v-list-item", has_text=candidate)
        if "v-list-item--active" not in (item.get_attribute("class") or ""):
            item.click()
    page.keyboard.press("Escape")
    assert page.locator(".rl-obs-observers .v-chip").all_inner_texts() == ["brain1 segmentation / Label_1",
                                                                         "reader2 / Label_1"]
    page.locator(".rl-obs-run").click()
    page.wait_for_selector(".rl-obs-results table tr:nth-child(2)", timeout=180_000)
    rows = [r.locator("td").all_inner_texts() for r in page.locator(".rl-obs-results table tr").all()[1:]]

    expected = agreement(make_lesion("brain1", sitk.ReadImage(str(image_path)),
                                     [("brain1", label), ("reader2", reader2)])).pairs[0]
    a, b = sitk.GetArrayFromImage(label).astype(bool), sitk.GetArrayFromImage(reader2).astype(bool)
    assert expected["dice"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()), rel=1e-12)
    assert rows == [["brain1 segmentation / reader2", f"{expected['dice']:.3f}", f"{expected['hd95_mm']:.3f}"]]
    page.wait_for_function("document.querySelector('.rl-ext-table tbody td')")  # the ICC / CV table opened
    screenshot(page, "workflows/07_observers.png")


def test_browser_delta_volume_falls(page, tmp_path):
    """Baseline brain1 and a follow-up 42 days later: the same image (added from the data folder) with the
    lesion eroded by one voxel in plane (uploaded). The trajectories plot shows, and the delta table's
    VoxelVolume change is 100 (N_follow-up / N_baseline - 1) %: negative, equal to the voxel counts."""
    from RadiomicsLabLib.data import sample_case

    _, label_path = sample_case("brain1")
    label = sitk.ReadImage(str(label_path)) == 1
    followup = sitk.BinaryErode(label, [1, 1, 0])
    sitk.WriteImage(followup, str(tmp_path / "followup.nrrd"))
    open_tool(page, "data")
    load_sample(page, "brain1")
    choose_exact(page, ".rl-data-image", "pyradiomics_cases/brain1_image.nrrd")
    page.locator(".rl-data-add-image").click()
    wait_notice(page, "Added image")
    page.set_input_files("#rl-upload-segmentation", str(tmp_path / "followup.nrrd"))
    wait_edited_segmentation(page, "followup")

    open_tool(page, "delta")
    rows = page.locator(".rl-delta-timepoint")
    while rows.count() > 2:
        rows.last.locator("button:has(.mdi-close)").click()
    while rows.count() < 2:
        page.locator(".rl-panel-delta button:has(.mdi-plus)").click()
        page.wait_for_timeout(200)
    for row, (tag, date, volume, segmentation) in zip(rows.all(), (
            ("baseline", "2021-01-04", "brain1", "brain1 segmentation"),
            ("week6", "2021-02-15", "brain1_image", "followup"))):
        row.locator("input").first.fill(tag)
        row.locator(".rl-delta-date input").fill(date)
        choose_exact(page, row.locator(".v-select").nth(0), volume)
        choose_exact(page, row.locator(".v-select").nth(1), segmentation)
    page.locator(".rl-delta-run").click()
    page.wait_for_selector(".rl-delta-results img", timeout=180_000)
    page.wait_for_function("document.querySelector('.rl-ext-table').innerText.includes('delta')")
    page.locator(".rl-ext-search input").fill("original_shape_VoxelVolume")
    page.wait_for_function("[...document.querySelectorAll('.rl-ext-table tbody tr')].every(r => "
                           "r.innerText.includes('original_shape_VoxelVolume'))")
    row = next(r for r in results_rows(page) if r.get("timepoint") == "week6")
    n_baseline, n_followup = (int(sitk.GetArrayViewFromImage(m).sum()) for m in (label, followup))
    assert float(row["days"]) == 42
    assert float(row["delta rel"]) == pytest.approx(100 * (n_followup / n_baseline - 1), rel=1e-9)
    assert float(row["delta rel"]) < 0
    page.locator(".rl-delta-results img").first.scroll_into_view_if_needed()
    screenshot(page, "workflows/08_delta.png")
    page.locator(".rl-ext-search input").fill("")


COHORT_CASES = ("brain1", "brain2", "breast1")


@pytest.fixture(scope="module")
def cohort_data(tmp_path_factory):
    """A data folder as a user has one: three real cases (copied from the shared data), a cohort file naming
    them by relative path, and a cohort file with a problem on each of its rows but the first; plus the
    server's output folder."""
    import shutil

    from RadiomicsLabLib.data import sample_case

    root = tmp_path_factory.mktemp("cohort-data")
    (root / "cases").mkdir()
    for name in COHORT_CASES:
        for path in sample_case(name):
            shutil.copy(path, root / "cases" / path.name)
    lines = ["id,image,mask"] + [f"{n},cases/{n}_image.nrrd,cases/{n}_label.nrrd" for n in COHORT_CASES]
    (root / "cohort.csv").write_text("\n".join(lines) + "\n")
    (root / "bad_cohort.csv").write_text(
        "id,image,mask,label\n"
        "brain1,cases/brain1_image.nrrd,cases/brain1_label.nrrd,1\n"
        "brain2,cases/missing_image.nrrd,cases/brain2_label.nrrd,\n"      # no such file
        "breast1,cases/breast1_image.nrrd,cases/breast1_label.nrrd,7\n"  # a label the mask does not have
        "brain1,cases/brain2_image.nrrd,cases/brain2_label.nrrd,\n"      # the id again
        "brain3,cases/brain2_image.nrrd,cases/brain1_label.nrrd,\n")     # a mask on another grid
    return root, tmp_path_factory.mktemp("cohort-output")


@pytest.fixture(scope="module")
def cohort_page(page, cohort_data):
    """A second server, on the cohort data folder and its own output folder, and a page of it (in the
    browser of ``page``: one Playwright per thread)."""
    from RadiomicsLabLib.web.driver import open_app, served

    root, output = cohort_data
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RADIOMICSLAB_WEB_OUTPUT", str(output))
        with served(root, ARTIFACTS / "cohort.server.log") as (url, _):
            cohort = open_app(page.context.browser, url)
            yield cohort
            cohort.context.close()


def cohort_cases(page) -> list[list[str]]:
    """(case, segments, status, time) of each row of the cohort panel's case table."""
    return [r.locator("td").all_inner_texts() for r in page.locator(".rl-cohort-case").all()]


def test_browser_cohort_run_matches_batch(cohort_page, cohort_data, tmp_path):
    """Choose the cohort file from the data folder, run it on one worker: every case done, and the
    features (the panel's features.csv download, the output folder's file and the results pane) equal
    `radiomicslab batch` on the same file, to the last digit."""
    page = cohort_page
    root, output = cohort_data
    assert page.locator(".rl-tool-cohort").is_enabled()  # no study needed, unlike the study's panels
    assert page.locator(".rl-tool-observers").is_disabled()
    open_tool(page, "cohort")
    assert page.locator(".rl-cohort-run").count() == 0  # nothing to run before a cohort is chosen
    open_tool(page, "data")
    load_sample(page, "brain1")  # an open study (the screenshot's views) does not change the run
    open_tool(page, "cohort")
    choose_exact(page, ".rl-cohort-file", "cohort.csv")
    page.wait_for_function("document.querySelector('.rl-cohort-summary') && "
                           "document.querySelector('.rl-cohort-summary').innerText.includes('3 valid case(s)')")
    assert page.locator(".rl-cohort-problems").count() == 0
    # the summary comes from the check, the case table from the status read after it: wait for its rows
    page.wait_for_function(f"document.querySelectorAll('.rl-cohort-case').length === {len(COHORT_CASES)}")
    assert [(c[0], c[2]) for c in cohort_cases(page)] == [(n, "pending") for n in COHORT_CASES]
    choose_exact(page, ".rl-cohort-workers", "1")
    assert page.locator(".rl-cohort-output input").input_value() == "cohort"
    page.locator(".rl-cohort-run").click()
    page.wait_for_function("[...document.querySelectorAll('.rl-cohort-case-status')].map(s => s.innerText)"
                           ".join() === 'done,done,done'", timeout=300_000)
    page.wait_for_selector(".rl-cohort-csv")
    page.wait_for_function("document.querySelector('.rl-ext-table').innerText.includes('original shape Elongation')")

    done = run_cli("batch", root / "cohort.csv", "-o", tmp_path / "cli", "--workers", "0",
                   "--params", "pyradiomics-default")
    assert done.returncode == 0, done.stderr
    cli = read_csv(tmp_path / "cli" / "features.csv")
    assert [r["id"] for r in cli] == list(COHORT_CASES) and len(cli[0]) == 2 + 107
    with page.expect_download() as download:
        page.locator(".rl-cohort-csv").click()
    assert download.value.suggested_filename == "cohort_features.csv"
    download.value.save_as(tmp_path / "web.csv")
    assert read_csv(tmp_path / "web.csv") == cli
    assert read_csv(output / "cohort" / "features.csv") == cli
    with page.expect_download() as download:  # every file of the run, as CohortLogic.save_results writes them
        page.locator(".rl-cohort-download").click()
    assert download.value.suggested_filename == "cohort_results.zip"
    download.value.save_as(tmp_path / "web.zip")
    with zipfile.ZipFile(tmp_path / "web.zip") as archive:
        assert sorted(archive.namelist()) == ["errors.csv", "features.csv", "features.parquet", "provenance.json"]
        for name in archive.namelist():
            assert archive.read(name) == (output / "cohort" / name).read_bytes(), name
    with page.expect_download() as download:  # the results pane's CSV of the cohort features table
        page.locator(".rl-ext-csv").click()
    assert download.value.suggested_filename == "cohort_features.csv"
    download.value.save_as(tmp_path / "pane.csv")
    assert read_csv(tmp_path / "pane.csv") == cli
    segments = {r["id"]: sum(c["id"] == r["id"] for c in cli) for r in cli}
    assert [(c[0], c[1], c[2]) for c in cohort_cases(page)] == [(n, str(segments[n]), "done") for n in COHORT_CASES]
    assert page.locator(".rl-cohort-count").all_inner_texts() == ["done 3"]

    # The results pane: the cohort's features table (column titles with spaces), values as `radiomicslab batch`.
    shown = {r["id"]: r for r in results_rows(page)}
    assert list(shown) == list(COHORT_CASES)
    for row in cli:
        assert shown[row["id"]]["original shape Elongation"] == row["original_shape_Elongation"]
    screenshot(page, "workflows/09_cohort.png")


def test_browser_cohort_problems_listed(cohort_page, cohort_data, tmp_path):
    """A cohort file with problems: every problem shows with its row, as CohortLogic reports them, and Run
    waits for the choice to skip them. An uploaded cohort naming a file outside the data folder is refused
    before anything is read; an upload of another type is refused."""
    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.mrml.cohort import CohortLogic

    page = cohort_page
    root, _ = cohort_data
    open_tool(page, "cohort")
    choose_exact(page, ".rl-cohort-file", "bad_cohort.csv")
    page.wait_for_selector(".rl-cohort-problem")
    expected = CohortLogic.load_cohort(root / "bad_cohort.csv", inside=root).problems
    assert [p.where for p in expected] == ["row 3", "row 4", "row 5", "row 6"]
    shown = page.locator(".rl-cohort-problem").all_inner_texts()
    assert shown == [f"{p.where} ({p.case_id}): {p.message}" for p in expected]
    assert "1 valid case(s), 4 problem(s)" in page.locator(".rl-cohort-summary").inner_text()
    assert page.locator(".rl-cohort-run").is_disabled()
    page.locator(".rl-cohort-keep-going input").check()
    assert page.locator(".rl-cohort-run").is_enabled()
    page.wait_for_function("[...document.querySelectorAll('.rl-cohort-case')].filter("
                           "r => r.innerText.includes('invalid')).length === 4")
    statuses = [c[2] for c in cohort_cases(page)]
    assert statuses.count("invalid") == 4
    screenshot(page, "workflows/10_cohort_problems.png")

    outside = tmp_path / "outside.csv"
    image, label = sample_case("brain1")  # the shared data folder: outside this server's data folder
    outside.write_text(f"id,image,mask\nbrain1,{image},{label}\n")
    page.set_input_files("#rl-upload-cohort", str(outside))
    page.wait_for_function("document.querySelector('.rl-cohort-summary').innerText.includes('outside.csv')")
    problems = page.locator(".rl-cohort-problem").all_inner_texts()
    assert problems == [f"row 2 (brain1): the {role} '{path}' is outside the data folder '{root.resolve()}'; "
                        "only files inside it can be used here" for role, path in (("image", image), ("mask", label))]
    notes = tmp_path / "cohort.txt"
    notes.write_text("id,image,mask\n")
    page.set_input_files("#rl-upload-cohort", str(notes))
    page.locator(".rl-error").wait_for()
    assert "'cohort.txt' is not a file type accepted here; use one of .csv." in page.locator(".rl-error").inner_text()
