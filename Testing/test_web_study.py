"""The web GUI's Study panel: a radiomics study from the data folder's tables, in a real browser.

The data folder holds the breast cancer example tables (``write_breast_cancer_example``: features.csv,
clinical.csv with diagnosis, site, mean radius, split) and a clinical file with an id the features
table lacks. In Debian's Chromium driven by Playwright (as ``test_web_e2e.py``): bad clinical files
(an unknown id in the data folder, a one-class outcome uploaded) give the study's error message and no
results; then a study (outcome diagnosis, positive malignant, batch site, seed 0, 2 x 3 x 3 folds) whose
metrics shown equal ``run_study`` on the same files with the same options, whose metrics.csv download
equals ``run_study``'s byte for byte, whose ROC is shown (the study folder's roc.png), whose report.html
download is the study folder's file; and its model applied to a features table gives
``predict_table``'s rows. Without a browser: a bad clinical file leaves the scene as it was, and only the
study folder's offered files are served.

The screenshot of the panel with its results goes to ``Testing/artifacts/web/study/`` (git-ignored; the README's
copy in Resources/Screenshots/ is taken from it by hand).
"""

import asyncio
import base64
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "web"
SCREENSHOT = ARTIFACTS / "study" / "web_study.png"  # copied by hand to Resources/Screenshots/ for the README
#: What the panel runs (its defaults and the choices the test makes), as run_study's options.
OPTIONS = {"id_column": "id", "outcome": "diagnosis", "positive": "malignant", "batch": "site", "split": "split",
           "models": ["logistic_l1"], "selection": ["nzv", "correlation"], "repeats": 2, "outer": 3, "inner": 3,
           "seed": 0, "workers": 1}


@pytest.fixture(scope="module")
def study_data(tmp_path_factory):
    """The data folder (example tables, a clinical file with an unknown id) and the server's output folder."""
    from RadiomicsLabLib.study.examples import write_breast_cancer_example

    root = tmp_path_factory.mktemp("study-data")
    tables = write_breast_cancer_example(root)
    clinical = tables["clinical"].read_text()
    (root / "bad_clinical.csv").write_text(clinical + "X9999,benign,A,12.0,train\n")
    lines = clinical.splitlines()
    one_class = [lines[0]] + [line.replace(",benign,", ",malignant,") for line in lines[1:]]
    (tmp_path_factory.getbasetemp() / "one_class.csv").write_text("\n".join(one_class) + "\n")
    return root, tmp_path_factory.mktemp("study-output")


def shown_number(text: str) -> str:
    """A metrics.csv cell as the panel shows it (3 decimals)."""
    return "" if text == "" else f"{float(text):.3f}"


def expected_rows(metrics_csv: Path) -> list[list[str]]:
    from conftest import read_csv

    return [[r["model"], r["metric"], shown_number(r["estimate"]),
             f"{shown_number(r['ci_low'])}–{shown_number(r['ci_high'])}" if r["ci_low"] or r["ci_high"] else ""]
            for r in read_csv(metrics_csv)]


def shown_metrics(page) -> list[list[str]]:
    """(model, metric, estimate, 95 % CI) of each metric the panel shows (the model: its heading row above)."""
    rows, model = [], None
    for row in page.locator(".rl-study-metrics tr").all()[1:]:
        cells = row.locator("td").all_inner_texts()
        if "rl-study-metric-model" in (row.get_attribute("class") or ""):
            model = cells[0]
        else:
            rows.append([model, *cells])
    return rows


# ---------------------------------------------------------------------------------------------
# Without a browser: the panel's logic in the app
# ---------------------------------------------------------------------------------------------
def test_bad_clinical_leaves_scene_and_only_study_files_served(study_data, tmp_path, monkeypatch):
    from trame.app import get_server

    from RadiomicsLabLib.web.app import RadiomicsLabWebApp

    root, _ = study_data
    monkeypatch.setenv("RADIOMICSLAB_WEB_OUTPUT", str(tmp_path / "out"))
    app = RadiomicsLabWebApp(get_server("radiomicslab-study-test", client_type="vue3"), data_root=root)
    panel = app.panels["study"]
    scene = app.slicer_app.scene
    assert {i["title"] for i in panel.data.clinical_files} >= {"clinical.csv", "bad_clinical.csv"}
    panel.data.features = "data:features.csv"
    panel.data.clinical = "data:bad_clinical.csv"
    panel._on_clinical_changed(panel.data.clinical)  # the page's change of the select
    assert panel.data.columns == ["id", "diagnosis", "site", "mean radius", "split"]
    panel.data.outcome, panel.data.positive, panel.data.batch, panel.data.outer = "diagnosis", "malignant", "site", 3
    before = scene.GetNumberOfNodes()
    asyncio.run(panel.run())
    assert "1 id(s) have no features in features.csv: 'X9999'" in app.jobs.data.error
    assert scene.GetNumberOfNodes() == before and not panel.data.has_results
    assert not (tmp_path / "out" / "study" / "metrics.csv").exists()
    # a path outside the data folder, or a file it does not list, is refused before anything is read
    for value in ("data:../secret.csv", "data:/etc/passwd", "upload:never.csv", "node:vtkMRMLScalarVolumeNode1"):
        panel.data.clinical = value
        asyncio.run(panel.run())
        assert "data folder" in app.jobs.data.error or "no longer available" in app.jobs.data.error
    # downloads: nothing before a study; then only the offered files of the study folder
    assert panel.file_bytes("report.html") is None and "run a study first" in app.jobs.data.error
    panel.data.clinical = "data:clinical.csv"

    async def cancelled():  # the job runner's Cancel (the progress dialog's button) during the folds
        task = asyncio.ensure_future(panel.run())
        while not app.jobs.data.done:
            await asyncio.sleep(0.05)
        app.jobs.cancel()
        await task

    panel.data.repeats = 5
    asyncio.run(cancelled())
    assert "ancel" in app.jobs.data.error, app.jobs.data.error
    assert scene.GetNumberOfNodes() == before and not panel.data.has_results
    assert not (tmp_path / "out" / "study" / "metrics.csv").exists()
    panel.data.repeats = 2
    asyncio.run(panel.run())
    assert app.jobs.data.error == "" and panel.data.has_results
    assert scene.GetNumberOfNodes() > before
    folder = tmp_path / "out" / "study"
    assert panel.file_bytes("metrics.csv") == (folder / "metrics.csv").read_bytes()
    for offered in ("predictions.csv", "selected_features.csv", "model_card.json"):
        assert panel.file_bytes(offered) == (folder / offered).read_bytes()
    for other in ("../metrics.csv", "roc.png", "inputs", "nosuch.csv"):  # only the offered files of the folder
        assert panel.file_bytes(other) is None


# ---------------------------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study_page(study_data):
    from playwright.sync_api import sync_playwright

    from RadiomicsLabLib.web.driver import open_app, open_browser, served

    root, output = study_data
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RADIOMICSLAB_WEB_OUTPUT", str(output))
        with served(root, ARTIFACTS / "study.server.log") as (url, _):
            with sync_playwright() as playwright:
                browser = open_browser(playwright)
                yield open_app(browser, url)
                browser.close()


def choose_exact(page, select, item_text):
    """Open a select and click the item whose title is exactly ``item_text``."""
    page.locator(select).click()
    page.locator(".v-overlay--active .v-list-item-title").filter(
        has_text=re.compile(f"^{re.escape(item_text)}$")).first.click()


def set_up_study(page, clinical: str | None):
    """Choose the tables (``clinical`` None: already chosen by an upload) and the study's columns."""
    from RadiomicsLabLib.web.driver import open_tool

    open_tool(page, "study")
    choose_exact(page, ".rl-study-features", "features.csv")
    if clinical:
        choose_exact(page, ".rl-study-clinical", clinical)
    page.wait_for_selector(".rl-study-columns")
    choose_exact(page, ".rl-study-outcome", "diagnosis")
    page.locator(".rl-study-positive input").fill("malignant")
    choose_exact(page, ".rl-study-batch", "site")
    for field, value in (("repeats", 2), ("outer", 3), ("inner", 3), ("seed", 0)):
        page.locator(f".rl-study-{field} input").fill(str(value))


def wait_error(page, text):
    page.wait_for_function(f"document.querySelector('.rl-error') && "
                           f"document.querySelector('.rl-error').innerText.includes({json.dumps(text)})",
                           timeout=120_000)


def test_browser_bad_clinical_shows_error(study_page, study_data):
    page = study_page
    root, output = study_data
    assert page.locator(".rl-tool-study").is_enabled()  # no image needed
    set_up_study(page, "bad_clinical.csv")
    page.locator(".rl-study-run").click()
    wait_error(page, "1 id(s) have no features in features.csv: 'X9999'")
    assert page.locator(".rl-study-results").count() == 0
    page.locator(".rl-error button").first.click()  # close it
    # an uploaded clinical file with one class: refused the same way
    page.set_input_files("#rl-upload-study-clinical", str(root.parent / "one_class.csv"))
    page.wait_for_function("document.querySelector('.rl-study-clinical').innerText.includes('one_class.csv')")
    page.locator(".rl-study-run").click()
    wait_error(page, "the outcome 'diagnosis' has one class only ('malignant', 569 patients)")
    assert page.locator(".rl-study-results").count() == 0
    assert not (output / "study" / "metrics.csv").exists()
    assert (output / "uploaded study tables" / "clinical" / "one_class.csv").is_file()
    page.locator(".rl-error button").first.click()


def test_browser_study_matches_run_study(study_page, study_data, tmp_path):
    import time

    from RadiomicsLabLib.study.run import predict_table, run_study

    page = study_page
    root, output = study_data
    set_up_study(page, "clinical.csv")
    # the panel's own choices: id and split guessed from the header, the default model and selection
    assert page.locator(".rl-study-id").inner_text().endswith("id")
    assert "split" in page.locator(".rl-study-split").inner_text()
    assert page.locator(".rl-study-models .v-chip").all_inner_texts() == ["logistic_l1"]
    assert page.locator(".rl-study-selection .v-chip").all_inner_texts() == ["nzv", "correlation"]
    started = time.perf_counter()
    page.locator(".rl-study-run").click()
    page.wait_for_selector(".rl-study-metric", timeout=300_000)
    seconds = time.perf_counter() - started
    shown = shown_metrics(page)

    reference = run_study(root / "features.csv", root / "clinical.csv", tmp_path / "reference", **OPTIONS)
    expected = expected_rows(reference.files["metrics.csv"])
    assert shown == expected and len(shown) > 10
    assert [r[1] for r in shown][:1] == ["auc"]
    folder = output / "study"
    with page.expect_download() as download:
        page.locator(".rl-study-metrics-csv").click()
    assert download.value.suggested_filename == "metrics.csv"
    assert Path(download.value.path()).read_bytes() == reference.files["metrics.csv"].read_bytes()
    with page.expect_download() as download:
        page.locator(".rl-study-report").click()
    assert download.value.suggested_filename == "report.html"
    assert Path(download.value.path()).read_bytes() == (folder / "report.html").read_bytes()
    with page.expect_download() as download:
        page.locator(".rl-study-model").click()
    assert Path(download.value.path()).read_bytes() == (folder / "model.joblib").read_bytes()

    # the ROC figure of the study folder, displayed
    image = page.locator(".rl-study-main-plot img")
    image.wait_for()
    src = image.get_attribute("src")
    assert src == "data:image/png;base64," + base64.b64encode((folder / "roc.png").read_bytes()).decode()
    page.wait_for_function("document.querySelector('.rl-study-main-plot img').naturalWidth > 100")
    assert page.locator(".rl-study-extra-plot").count() == 2  # harmonisation: PCA and distributions

    # apply the model to a features table (here the same patients), as `radiomicslab predict`
    choose_exact(page, ".rl-study-apply-features", "features.csv")
    choose_exact(page, ".rl-study-apply-clinical", "clinical.csv")
    page.locator(".rl-study-apply").click()
    page.wait_for_selector(".rl-study-prediction", timeout=120_000)
    count = page.locator(".rl-study-prediction-count").inner_text()
    assert "569 patient(s) predicted" in count
    rows = [r.locator("td").all_inner_texts() for r in page.locator(".rl-study-prediction").all()]
    predicted = predict_table(folder / "model.joblib", root / "features.csv", "-", clinical=root / "clinical.csv")
    assert rows == [[r["id"], r["model"], f"{r['prediction']:.3f}", r["group"]] for r in predicted[:5]]

    page.locator(".rl-study-results").scroll_into_view_if_needed()
    page.locator(".rl-panel-study").evaluate("e => e.closest('.rl-panel').scrollTop = "
                                             "document.querySelector('.rl-study-results').offsetTop - 60")
    page.set_viewport_size({"width": 1440, "height": 1500})  # the panel's results, metrics to harmonisation
    page.mouse.move(700, 1495)
    page.wait_for_timeout(800)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    print(f"study in the browser: {seconds:.1f} s")
