"""How long desktop Slicer's window is held by each RadiomicsLab job on a whole-size CT (issue #21, first use/desktop).

Desktop Slicer runs every job as :mod:`RadiomicsLabLib.background` runs it: the job is made on the main thread (the
nodes read, the inputs checked), computed in a worker process, and its result landed as nodes on the main thread. The
window freezes while the main thread is busy, so what a user feels is (a) making the job and (b) the longest gap
between two ticks of the main loop while the job runs and lands. Timed here in a headless MRML scene with a 10 ms
tick loop (as the module's Qt timer polls), per job type, on the shared STS_001 CT and GTV placed in a whole CT's
grid (512 x 512 x 299 voxels, the crop at index (100, 100, 50), air (0) around it, written to a temporary folder):

- extraction (IBSI engine, default settings), feature maps (pyradiomics definition, GLCM + first order, radius 1),
  a ring 0 to 10 mm, habitats (the CT alone, 3), observers (two perturbed readers, no features), delta (a follow-up
  made of the same CT lying 5 mm to the side, without a mask: rigid registration, the GTV propagated, first order
  and shape features);
- for each: the same job run on the main thread (``job.run()``: what a module that computes in its Apply handler
  holds the window for);
- the peer: SlicerRadiomics' Apply handler calls pyradiomics' ``featureextractor.execute`` on the main thread
  (``SlicerRadiomicsLogic.run``), so its window is held for pyradiomics' extraction of the same segment (default
  settings, original image; timed here as that call, without SlicerRadiomics' own conversions).

Printed per job: seconds to make the job, the longest stall while it ran and landed, the whole wall time, the time
it holds the main thread when run there, and the ratio of the longest freeze (making or stall, the larger) to
pyradiomics' main-thread extraction.

  .venv/bin/python Testing/benchmarks/bench_desktop_stalls.py [--jobs extraction,maps,ring,habitats,observers,delta]
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

TICK_S = 0.01
WHOLE_CT = (512, 512, 299)
CROP_AT = (100, 100, 50)


def whole_ct(folder: Path) -> tuple[Path, Path, Path]:
    """STS_001's CT crop and GTV pasted into a whole CT's grid (same spacing and direction), as NIfTI in ``folder``,
    and the follow-up CT of the delta job: the same image lying 5 mm to the side (its origin moved)."""
    from RadiomicsLabLib.data import data_dir

    paths = []
    for kind in ("CT_image", "CT_mask"):
        crop = sitk.ReadImage(str(data_dir() / "sts" / "STS_001" / f"{kind}.nii.gz"))
        whole = sitk.Image(list(WHOLE_CT), crop.GetPixelID())
        whole.SetSpacing(crop.GetSpacing())
        whole.SetDirection(crop.GetDirection())
        whole.SetOrigin(crop.TransformIndexToPhysicalPoint([-i for i in CROP_AT]))
        whole = sitk.Paste(whole, crop, crop.GetSize(), [0, 0, 0], list(CROP_AT))
        paths.append(folder / f"{kind}.nii.gz")
        sitk.WriteImage(whole, str(paths[-1]))
        if kind == "CT_image":
            whole.SetOrigin([o + d for o, d in zip(whole.GetOrigin(), (5.0, 0.0, 0.0))])
            followup = folder / "CT_followup.nii.gz"
            sitk.WriteImage(whole, str(followup))
    return paths[0], paths[1], followup


def tick_while(run) -> tuple[float, float]:
    """Tick every 10 ms until the run has landed: (longest stall, wall seconds). A stall is how late a tick ran after
    its due time, the time its ``poll()`` (the landing included) held the loop counted."""
    start = due = time.monotonic()
    worst = 0.0
    while True:
        running = run.poll()
        now = time.monotonic()
        worst = max(worst, now - due)
        if not running:
            return worst, now - start
        time.sleep(TICK_S)
        due = now + TICK_S


def pyradiomics_main_thread(image_path: Path, mask_path: Path) -> float:
    """Seconds of pyradiomics' default extraction of the segment (what SlicerRadiomics' Apply holds the window for)."""
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    extractor = featureextractor.RadiomicsFeatureExtractor()
    start = time.perf_counter()
    extractor.execute(image, mask)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="extraction,maps,ring,habitats,observers,delta")
    args = parser.parse_args()

    from RadiomicsLabLib.background import BackgroundRun
    from RadiomicsLabLib.mrml import ExtractionLogic
    from RadiomicsLabLib.mrml import DeltaLogic
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.featuremaps import FeatureMapLogic
    from RadiomicsLabLib.mrml.habitats import HabitatLogic
    from RadiomicsLabLib.mrml.observers import ObserverLogic

    with tempfile.TemporaryDirectory() as folder:
        image_path, mask_path, followup_path = whole_ct(Path(folder))
        scene = new_headless_app().scene
        loader = ExtractionLogic(scene)
        volume = loader.load_volume(image_path)
        segmentation = loader.load_segmentation(mask_path, volume)
        segment = segmentation.GetSegmentation().GetNthSegmentID(0)
        delta = DeltaLogic(scene)
        study = delta.load_study([("2021-01-04", image_path, mask_path), ("2021-02-15", followup_path, None)],
                                 name="STS_001", labels=["baseline", "week6"])
        makers = {
            "extraction": lambda: loader.extract_job(volume, segmentation, [segment]),
            "maps": lambda: FeatureMapLogic(scene).compute_job(volume, segmentation, segment,
                                                               features="glcm,firstorder", definition="pyradiomics"),
            "ring": lambda: HabitatLogic(scene).add_ring_job(segmentation, segment, 0, 10),
            "habitats": lambda: HabitatLogic(scene).habitats_job(segmentation, segment, {"CT": volume}, n_habitats=3),
            "observers": lambda: ObserverLogic(scene).analyse_job(volume, [(segmentation, segment)], features=False,
                                                                  perturbations=["grow:mm=-1", "grow:mm=1"]),
            "delta": lambda: delta.compute_job(study, settings={"featureClass": {"firstorder": [], "shape": []}},
                                               register="rigid", propagate=True),
        }
        peer = pyradiomics_main_thread(image_path, mask_path)
        print(f"whole CT {WHOLE_CT[0]} x {WHOLE_CT[1]} x {WHOLE_CT[2]} (STS_001 CT and GTV at {CROP_AT}); "
              f"pyradiomics' extraction on the main thread (SlicerRadiomics' Apply): {peer:.2f} s\n")
        print(f"{'job':12s} {'make job':>9s} {'longest stall':>14s} {'whole':>8s} {'on main thread':>15s} "
              f"{'freeze / pyradiomics':>21s}")
        for name in args.jobs.split(","):
            maker = makers[name]
            maker().run()       # once in this thread first: imports and compiled kernels loaded, as in a warm Slicer
            start = time.perf_counter()
            maker().run()
            in_thread = time.perf_counter() - start
            start = time.perf_counter()
            job = maker()
            made = time.perf_counter() - start
            run = BackgroundRun(job)
            stall, whole = tick_while(run)
            if run.state != "done":
                raise SystemExit(f"{name}: the background run ended '{run.state}'")
            print(f"{name:12s} {made:8.2f}s {stall:13.2f}s {whole:7.2f}s {in_thread:14.2f}s "
                  f"{max(made, stall) / peer:20.3f}")


if __name__ == "__main__":
    main()
