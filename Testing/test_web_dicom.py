"""DICOM RTSTRUCT / SEG in the web app (issue #19): a PACS export uploaded through the Data panel, in a real browser.

The export is real data: the shared sarcoma patient STS_001's CT written as a DICOM series (Testing/dicom_data.py,
cropped to its GTV plus 3 voxels) with, in the same folder, an RTSTRUCT of the real GTV and of the GTV dilated by
2 voxels ("GTV+2vox") written by rt-utils and a SEG of the GTV written by highdicom (independent writers). In
Debian's Chromium driven by Playwright (as ``test_web_e2e.py``, whose page helpers are reused): the folder uploaded
with the Data panel's "DICOM folder" button opens the CT with the RTSTRUCT's and the SEG's segments listed by their
ROI names (screenshot in ``Testing/artifacts/web/dicom/``); features extracted from the RTSTRUCT's GTV equal the core
path (``extract_masks`` on the series read from the folder and ``read_dicom_segments``' GTV mask) value for value;
a folder whose RTSTRUCT references another series shows the one-line error and leaves the study as it was.
Without a browser: the same through the app's loader, plus a damaged RTSTRUCT and the data folder's DICOM entry.
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_data import crop, crop_box, sts_paths, write_rtstruct_independently, write_seg_independently, write_series
from pydicom.sr.codedict import codes
from test_web_e2e import ARTIFACTS, page, screenshot, upload, web_app  # noqa: F401 - fixtures reused

from RadiomicsLabLib.errors import RadiomicsLabError

SHOTS = ARTIFACTS / "dicom"
ROIS = ("GTV", "GTV+2vox")


@pytest.fixture(scope="module")
def exports(tmp_path_factory, data):
    """The data folder holding ``export/`` (series + RTSTRUCT + SEG) and ``wrong/`` (the same series with an RTSTRUCT
    drawn on another series of the same CT: new UIDs), and a damaged-RTSTRUCT folder outside it."""
    image_path, mask_path = sts_paths("STS_001", "CT")
    box = crop_box(mask_path, 3)
    root = tmp_path_factory.mktemp("web_dicom")
    work, data_root = root / "work", root / "data"
    series = write_series(image_path, work / "series", "CT", patient_id="STS_001", box=box)
    other = write_series(image_path, work / "other", "CT", patient_id="STS_001", box=box)  # same pixels, other UIDs
    gtv = crop(mask_path, box)
    rtstruct = write_rtstruct_independently(series, {ROIS[0]: gtv, ROIS[1]: sitk.BinaryDilate(gtv, [2, 2, 2])},
                                            work / "rt.dcm")
    other_rtstruct = write_rtstruct_independently(other, {"GTV": gtv}, work / "other_rt.dcm")
    seg = write_seg_independently(series, [("GTV", gtv, (codes.SCT.Tissue, codes.SCT.Neoplasm))], work / "seg.dcm")
    export, wrong, damaged = data_root / "export", data_root / "wrong", root / "damaged"
    for folder, extra in ((export, {"RS_gtv.dcm": rtstruct, "SEG_gtv.dcm": seg}),
                          (wrong, {"RS_other_series.dcm": other_rtstruct}), (damaged, {"RS_gtv.dcm": rtstruct})):
        shutil.copytree(series.folder, folder)
        for name, path in extra.items():
            shutil.copyfile(path, folder / name)
    data = (damaged / "RS_gtv.dcm").read_bytes()
    (damaged / "RS_gtv.dcm").write_bytes(data[: len(data) * 2 // 3])  # cut short inside its contours
    return data_root, export, wrong, damaged


def folder_upload(folder: Path) -> list[dict]:
    """The files of a folder as the browser's directory upload sends them (base names)."""
    return [upload(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]


def segment_names(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def scene_state(app) -> list:
    from RadiomicsLabLib.web.loader import nodes_of

    return [(n.GetClassName(), n.GetName()) for n in nodes_of(app.loader.scene, "vtkMRMLNode")]


def core_features(export: Path, roi: str = "GTV") -> dict:
    """{feature: value} as ``radiomicslab extract`` writes them, from the core path on the same series and ROI."""
    import csv
    import io

    from RadiomicsLabLib.dicom import read_dicom_segments
    from RadiomicsLabLib.extraction import extract_masks
    from RadiomicsLabLib.imageio import read_image
    from RadiomicsLabLib.results import to_csv_text

    (segment,) = read_dicom_segments(export / "RS_gtv.dcm", export, [roi])
    result = extract_masks(read_image(export), [(roi, segment.mask, 1)], "pyradiomics-default")
    return {r["feature"]: r["value"] for r in csv.DictReader(io.StringIO(to_csv_text(result.values)))}


# ---------------------------------------------------------------------------------------------
# Without a browser: the app's loader
# ---------------------------------------------------------------------------------------------
def test_uploaded_pacs_export_loads_volume_and_segmentations(web_app, exports):
    from RadiomicsLabLib.dicom import read_dicom_segments
    from RadiomicsLabLib.imageio import read_image
    from RadiomicsLabLib.mrml.convert import segment_to_sitk, segmentation_volume, volume_to_sitk
    from RadiomicsLabLib.web.loader import nodes_of

    app = web_app
    _, export, _, _ = exports
    volume, segmentation = app.loader.load_upload(folder_upload(export), "image")
    assert volume.GetName() == "CT_image.nii.gz (CT)"  # the series' SeriesDescription, not the server's folder
    assert np.array_equal(sitk.GetArrayFromImage(volume_to_sitk(volume)), sitk.GetArrayFromImage(read_image(export)))
    nodes = {n.GetName(): n for n in nodes_of(app.loader.scene, "vtkMRMLSegmentationNode")}
    assert {name: segment_names(n) for name, n in nodes.items()} == {"RS_gtv": list(ROIS), "SEG_gtv": ["GTV"]}
    assert segmentation is nodes["RS_gtv"]
    assert app.slicer_app.segmentation_editor.active_segmentation_node is segmentation
    for name, node in nodes.items():
        assert segmentation_volume(node) is volume
        for segment, segment_id in zip(read_dicom_segments(export / f"{name}.dcm", export), node.GetSegmentation()
                                       .GetSegmentIDs()):
            assert np.array_equal(sitk.GetArrayFromImage(segment_to_sitk(node, segment_id, volume)),
                                  sitk.GetArrayFromImage(segment.mask))


def test_data_folder_dicom_entry_loads_its_segmentations(web_app, exports, monkeypatch):
    from RadiomicsLabLib.web.loader import DataFolder, nodes_of

    app = web_app
    data_root, _, _, _ = exports
    monkeypatch.setattr(app.loader, "data", DataFolder(data_root))
    assert [(e.path, e.kind) for e in app.loader.data.entries()] == [("export", "dicom"), ("wrong", "dicom")]
    volume, segmentation = app.loader.load_from_data("export")
    assert segment_names(segmentation) == list(ROIS)
    assert len(nodes_of(app.loader.scene, "vtkMRMLSegmentationNode")) == 2


@pytest.mark.parametrize("which, message", [
    ("wrong", r"^The RTSTRUCT 'RS_other_series.dcm' references series [0-9.]+, but the upload holds series "
              r"[0-9.]+; give the folder of the referenced series\.$"),
    ("damaged", r"^The segmentation 'RS_gtv.dcm' is damaged or cut short \(reading it failed: .*\); copy or export "
                r"it again from its source\.$"),
])
def test_bad_dicom_upload_leaves_the_study(web_app, exports, which, message):
    app = web_app
    app.loader.load_sample("brain1")
    before = scene_state(app)
    folder = dict(zip(("data", "export", "wrong", "damaged"), exports))[which]
    with pytest.raises(RadiomicsLabError) as error:
        app.loader.load_upload(folder_upload(folder), "image")
    assert "\n" not in str(error.value) and "radiomicslab-upload-" not in str(error.value)
    assert re.match(message, str(error.value)), str(error.value)
    assert scene_state(app) == before and app.loader.study_name == "brain1"


# ---------------------------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(exports):
    """``radiomicslab web`` serving the data folder of the exports (test_web_e2e's ``page`` fixture uses it)."""
    from RadiomicsLabLib.web.driver import served

    with served(exports[0], SHOTS / "server.log") as (url, port):
        yield url, port


def wait_text(page, selector: str, text: str):
    import json

    page.wait_for_function(f"document.querySelector({json.dumps(selector)}) && "
                           f"document.querySelector({json.dumps(selector)}).innerText.includes({json.dumps(text)})",
                           timeout=120_000)


def test_browser_upload_dicom_folder_lists_roi_segments(page, exports):
    from RadiomicsLabLib.web.driver import open_tool

    _, export, _, _ = exports
    open_tool(page, "data")
    page.set_input_files("#rl-upload-dicom", str(export))
    wait_text(page, ".rl-notice", "with RTSTRUCT RS_gtv (GTV, GTV+2vox) and SEG SEG_gtv (GTV)")
    wait_text(page, ".rl-study-chip", "CT_image.nii.gz (CT)")
    assert "100 x 104 x 37" in page.locator(".rl-status").inner_text()
    open_tool(page, "segment")
    page.wait_for_function("document.querySelectorAll('.rl-panel-segment .v-list-item').length === 2")
    shown = [item.locator("input[type=text]").first.input_value()  # the editor's segment names are text fields
             for item in page.locator(".rl-panel-segment .v-list-item").all()]
    assert shown == list(ROIS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    screenshot(page, "dicom/01_dicom_folder_loaded.png")


def test_browser_rtstruct_features_equal_the_core_path(page, exports, tmp_path):
    from conftest import read_csv
    from RadiomicsLabLib.web.driver import open_tool

    _, export, _, _ = exports
    open_tool(page, "extraction")
    page.wait_for_function("document.querySelectorAll('.rl-ext-segments .v-list-item').length === 2")
    page.locator(".rl-panel-extraction button", has_text="None").click()
    row = page.locator(".rl-ext-segments .v-list-item").filter(has=page.locator(".rl-ext-segment-name", has_text="GTV"))
    row = next(r for r in row.all() if r.locator(".rl-ext-segment-name").inner_text().strip() == "GTV")
    row.locator("input[type=checkbox]").check()
    page.locator(".rl-ext-run").click()
    page.wait_for_function("document.querySelector('.rl-ext-table') && "
                           "document.querySelector('.rl-ext-table').innerText.includes('GTV')", timeout=300_000)
    screenshot(page, "dicom/02_rtstruct_features.png")
    with page.expect_download() as download:
        page.locator(".rl-ext-csv").click()
    path = tmp_path / "web.csv"
    download.value.save_as(path)
    web = {r["feature"]: r["value"] for r in read_csv(path)}
    assert {r["segment"] for r in read_csv(path)} == {"GTV"}
    core = core_features(export)
    assert len(core) == 107 and web == core


def test_browser_rtstruct_of_another_series_shows_error(page, exports):
    from RadiomicsLabLib.web.driver import open_tool

    _, _, wrong, _ = exports
    status = page.locator(".rl-status").inner_text()
    chip = page.locator(".rl-study-chip").inner_text()
    open_tool(page, "data")
    page.set_input_files("#rl-upload-dicom", str(wrong))
    error = page.locator(".rl-error")
    error.wait_for(timeout=120_000)
    text = error.inner_text()
    assert "The RTSTRUCT 'RS_other_series.dcm' references series" in text and "but the upload holds series" in text
    assert "give the folder of the referenced series." in text and "radiomicslab-upload-" not in text
    screenshot(page, "dicom/03_other_series_error.png")
    assert page.locator(".rl-study-chip").inner_text() == chip and page.locator(".rl-status").inner_text() == status
    open_tool(page, "segment")
    assert page.locator(".rl-panel-segment .v-list-item").count() == 2
