"""Responsiveness of the web GUI on the real brain1 case, measured in a real browser.

Run on purpose: ``.venv/bin/python Testing/benchmarks/bench_web.py [--strokes 7] [--runs 5]``.

1. Paint stroke -> updated view. Real mouse strokes (Paint, sphere brush) in the axial view of
   ``radiomicslab web``, driven by Chromium. The page logs every frame of the axial view (its
   arrival time and the colour at the stroke's point); the latency is from the browser's
   ``pointerup`` to the first frame showing the colour the point finally settles on.
   Peer: the same stroke in process, in the same app's views without server or browser
   (VTK interactor events, then the axial view rendered and read back) = the compute floor.
2. Apply -> results table. Click "Extract features" for brain1's lesion (pyradiomics-default)
   until the table shows the new run's values. Peers: ``ExtractionLogic.extract`` in process (the
   same Logic call) and the ``radiomicslab extract`` command (process start included).

Medians are printed with the ratio to each peer. On a machine where the browser and the server share
the cores (this benchmark, CI), the browser's own work (frame decoding, the progress dialog's
animation, software compositing) competes with the extraction; the server's job time is printed
too, so the two can be told apart.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOG = Path(__file__).resolve().parents[1] / "artifacts" / "web" / "bench_web.server.log"

FRAME_LOGGER = """(point) => {
  const img = [...document.querySelectorAll('img.image-display-area')]
      .filter(i => i.getBoundingClientRect().width > 0)
      .sort((a, b) => b.getBoundingClientRect().width * b.getBoundingClientRect().height
                    - a.getBoundingClientRect().width * a.getBoundingClientRect().height)[0];
  const canvas = document.createElement('canvas');
  const context = canvas.getContext('2d', { willReadFrequently: true });
  window.rlFrames = []; window.rlPointerUp = null; window.rlPoint = point;
  document.addEventListener('pointerup', () => { window.rlPointerUp = performance.now(); }, true);
  const sample = () => {
    const rect = img.getBoundingClientRect();
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    context.drawImage(img, 0, 0);
    const x = Math.round((window.rlPoint[0] - rect.left) * img.naturalWidth / rect.width);
    const y = Math.round((window.rlPoint[1] - rect.top) * img.naturalHeight / rect.height);
    const p = context.getImageData(x, y, 1, 1).data;
    window.rlFrames.push([performance.now(), p[0], p[1], p[2]]);
  };
  img.addEventListener('load', sample);
  return true;
}"""


def settled_latency(frames, pointer_up, tolerance=12):
    """ms from pointer-up to the first later frame whose colour is within ``tolerance`` of the final one."""
    after = [f for f in frames if f[0] >= pointer_up]
    if not after:
        return None
    final = after[-1][1:]
    for frame in after:
        if max(abs(a - b) for a, b in zip(frame[1:], final)) <= tolerance:
            return frame[0] - pointer_up
    return None


def browser_paint(page, strokes):
    """Latencies (s) of ``strokes`` real strokes at different points near the lesion."""
    from RadiomicsLabLib.web.driver import add_segment, axial_view_box, stroke

    add_segment(page, "Bench")
    box = axial_view_box(page)
    latencies = []
    for i in range(strokes):
        x = box["x"] + box["width"] * (0.35 + 0.05 * (i % 4))
        y = box["y"] + box["height"] * (0.35 + 0.08 * (i // 4))
        page.mouse.move(x, y)
        page.wait_for_timeout(400)
        page.evaluate(FRAME_LOGGER, [x + 10, y + 8])
        stroke(page, x, y, steps=3, dx=4, dy=3)
        page.wait_for_timeout(2500)  # let the view settle, then read the log
        frames, pointer_up = page.evaluate("[window.rlFrames, window.rlPointerUp]")
        latency = settled_latency(frames, pointer_up)
        if latency is not None:
            latencies.append(latency / 1000)
    return latencies


def browser_extract(page, runs):
    """Seconds from the click on "Extract features" to the new run's values in the table."""
    from RadiomicsLabLib.web.driver import open_tool

    open_tool(page, "extraction")
    page.locator(".rl-panel-extraction button", has_text="None").click()
    page.locator(".rl-ext-segments .v-list-item", has_text="Label_1").locator("input[type=checkbox]").check()
    times, server_times = [], []
    for run in range(1, runs + 1):
        start = time.perf_counter()
        page.locator(".rl-ext-run").click()
        page.wait_for_function(f"document.querySelector('.rl-ext-summary').innerText.startsWith('Run {run}:')")
        page.wait_for_function("document.querySelectorAll('.rl-ext-table tbody tr').length > 0 && "
                               "document.querySelector('.rl-ext-table').innerText.includes('Label_1')")
        times.append(time.perf_counter() - start)
        summary = page.locator(".rl-ext-summary").inner_text()  # "Run 3: 107 values, 1 segment(s), 0.9 s"
        server_times.append(float(summary.rsplit(",", 1)[1].split()[0]))
        page.wait_for_timeout(500)
    return times, server_times


def in_process_paint(strokes):
    """Compute floor of one stroke: the app's own views in process, from button release to the rendered frame."""
    from slicer import vtkMRMLLayerDisplayableManager
    from trame.app import get_server
    from trame_slicer.segmentation import SegmentationEffectPaint
    from vtkmodules.vtkCommonDataModel import vtkImageData

    from RadiomicsLabLib.web.app import RadiomicsLabWebApp

    app = RadiomicsLabWebApp(get_server("radiomicslab-bench", client_type="vue3"))
    app.loader.load_sample("brain1")
    editor = app.slicer_app.segmentation_editor
    editor.add_empty_segment(segment_name="Bench")
    editor.set_active_effect_type(SegmentationEffectPaint)
    axial = next(v for v in app.slicer_app.view_manager.get_slice_views() if v.get_orientation() == "Axial")
    window, interactor = axial.render_window(), axial.interactor()
    window.SetSize(700, 780)
    interactor.UpdateSize(700, 780)
    interactor.InvokeEvent("WindowResizeEvent")
    times = []
    for i in range(strokes):
        x, y = int(700 * (0.35 + 0.05 * (i % 4))), int(780 * (0.65 - 0.08 * (i // 4)))
        for j, event in enumerate(("MouseMoveEvent", "LeftButtonPressEvent", "MouseMoveEvent", "MouseMoveEvent")):
            interactor.SetEventInformation(x + 4 * j, y + 3 * j)
            interactor.InvokeEvent(event)
        start = time.perf_counter()
        interactor.InvokeEvent("LeftButtonReleaseEvent")
        window.Render()
        vtkMRMLLayerDisplayableManager.RenderWindowBufferToImage(window, vtkImageData())  # as the RCA view does
        times.append(time.perf_counter() - start)
    return times


def in_process_extract(runs):
    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.mrml import ExtractionLogic
    from RadiomicsLabLib.mrml.app import new_headless_app

    logic = ExtractionLogic(new_headless_app().scene)
    image, label = sample_case("brain1")
    volume = logic.load_volume(image)
    segmentation = logic.load_segmentation(label, volume)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        logic.extract(volume, segmentation, ["Label_1"], "pyradiomics-default")
        times.append(time.perf_counter() - start)
    return times


def cli_extract(runs):
    from RadiomicsLabLib.data import sample_case

    image, label = sample_case("brain1")
    command = Path(sys.executable).with_name("radiomicslab")
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([str(command), "extract", str(image), str(label), "-o", f"{folder}/f.csv"], check=True,
                           capture_output=True)
            times.append(time.perf_counter() - start)
    return times


def line(title, ours, peers):
    median = statistics.median(ours)
    text = f"{title}: median {median * 1000:7.0f} ms (best {min(ours) * 1000:.0f}, n={len(ours)})"
    for name, times in peers:
        peer = statistics.median(times)
        text += f"\n    {name}: median {peer * 1000:7.0f} ms (n={len(times)}) | ratio {median / peer:5.2f}"
    print(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=7)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from RadiomicsLabLib.data import data_dir
    from RadiomicsLabLib.web.driver import load_sample, open_app, open_browser, served

    print("brain1 (256 x 256 x 25 MR), layout 'Axial Primary' at 1440 x 900, rendering with EGL (Mesa llvmpipe)\n")
    with served(data_dir(), LOG) as (url, _), sync_playwright() as playwright:
        browser = open_browser(playwright)
        page = open_app(browser, url)
        load_sample(page, "brain1")
        page.wait_for_timeout(1500)
        paint = browser_paint(page, args.strokes)
        extract, extract_server = browser_extract(page, args.runs)
        browser.close()
    line("Paint stroke -> updated axial view (browser, end to end)", paint,
         [("same stroke in process (app views, no server/browser)", in_process_paint(args.strokes))])
    line("Apply -> results table, brain1 Label_1, pyradiomics-default (browser)", extract,
         [("of which the server's job (worker thread, views blocked)", extract_server),
          ("ExtractionLogic.extract in process", in_process_extract(args.runs)),
          ("radiomicslab extract command", cli_extract(args.runs))])


if __name__ == "__main__":
    main()
