"""The IBSI engine against its peers, in the same run (``make bench``).

pyradiomics, on the real brain1 case:

1. The feature families both have (3D, fixed bin width 25, distance 1): pyradiomics' default
   extraction (shape, firstorder, glcm, glrlm, glszm, gldm, ngtdm) against the engine's
   preprocessing + statistics, intensity histogram, GLCM, GLRLM, GLSZM, NGLDM, NGTDM and the
   morphology features pyradiomics also has. Target (issue #4): no slower than pyradiomics.
2. The full IBSI feature set (all 11 families, 3D), for reference.

pictologics 0.9.0, on the shared sarcoma CTs (``sts/STS_00x/CT_image.nii.gz`` + ``CT_mask.nii.gz``), and on request
on such a crop padded to a whole CT's grid (``--cases STS_001-whole``: 512 x 512 x 299 int16, -1000 HU around it),
where the IBSI diagnostics' passes over the whole image and the whole interpolated grid weigh most:

3. Segment extraction with IBSI configuration C (preset ``ibsi-C``: 2 mm trilinear, rounding,
   re-segmentation [-1000, 400] HU, FBS 25 HU, IVH FBS 2.5 HU), the whole feature set of both
   (pictologics: intensity with Moran's I / Geary's C and local intensity, morphology, texture,
   histogram, IVH; 174 features). Target (issue #21): the engine at least as fast as pictologics.
   pictologics runs its numba kernels on all its default threads (the CPUs of the process) and is
   timed a second time with one thread, in a second process. The engine likewise: with its default threads
   (:func:`RadiomicsLabLib.limits.compute_threads`: the FFTs of Moran's I and the OMBB search) and with one
   (``OMP_NUM_THREADS=1`` for that run). And once more with ``diagnostics: false`` (pyradiomics'
   ``additionalInfo: false``): without the IBSI diagnostic features, which pictologics does not compute, and the passes
   over the whole image and the whole interpolated grid that they need: the same work as pictologics.
   pictologics needs Python >= 3.12, so it runs in its own virtual environment: made on first use
   at ``$RADIOMICSLAB_PICTOLOGICS_VENV`` (default ``~/.cache/radiomicslab/bench-pictologics-0.9.0``)
   with pyenv's Python 3.12 (``~/.pyenv/versions/3.12.*/bin/python``, or ``python3.12`` on PATH)
   and ``pip install pictologics==0.9.0``. It is a subprocess that loads the same NIfTI files and
   times ``RadiomicsPipeline.run`` inside itself (a new pipeline per run, so none of its per-array
   caches is reused; its default threads); it and the engine take turns, case by case, so both see
   the same machine load, and each gets the best of ``--repeats`` runs after a warm-up run. The order of the
   five (pictologics, the engine, pictologics on one thread, the engine on one thread, pictologics again, the engine
   without diagnostics) puts another process's run before each timed run: none finds the caches warm from its own run of the same case (the engine's one-thread
   run used to follow its default run, which made it look about 1 ms faster on the small ROIs); each timed run
   starts 20 ms after the one before, once the other process's idle threads have stopped spinning. The
   engine's time is the wall time of ``compute_features`` (preprocessing included) with a per-step breakdown from
   ``EngineResult.timings``. The values both compute (matched by IBSI feature id, 3D) are
   compared and those more than 1e-6 apart (relative) are listed: a sanity check that both computed
   the same thing. On STS_002 / STS_003 only features the two define differently are listed (OMBB,
   MVEE: not standardised by IBSI; normalised inverse difference (moment); the IVH area, which IBSI
   does not standardise; ``ih_p10``, whose IBSI id in the engine's registry is GPMT, the 90th
   percentile's); on STS_001 / STS_004 the mesh volume also differs by 2 mm^3, and with it the
   mesh-based morphology features (by 1e-5 to 1e-3).
   The first run makes the venv and waits for pictologics' own numba warm-up (several minutes).

``python Testing/benchmarks/bench_ibsi_engine.py [--only pyradiomics|pictologics] [--cases STS_001,STS_004]
[--repeats N]``.
"""

import argparse
import glob
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPEATS = 7
#: Pause before every timed run of the pictologics comparison: the previous run's idle threads (pictologics' OpenMP
#: workers spin for a while after each parallel loop) stop competing for this 2-vCPU machine's cores.
SETTLE_SECONDS = 0.02
SHARED_FAMILIES = ("statistics", "histogram", "glcm", "glrlm", "glszm", "ngldm", "ngtdm")


def timed(function, repeats=REPEATS):
    function()  # warm up (imports, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def pyradiomics_comparison():
    import radiomics
    import SimpleITK as sitk
    from radiomics import featureextractor

    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.ibsi.config import IbsiSettings
    from RadiomicsLabLib.ibsi.engine import FAMILIES, compute_features, features_of_roi
    from RadiomicsLabLib.ibsi.features import morphology
    from RadiomicsLabLib.ibsi.names import PYRADIOMICS_TO_IBSI
    from RadiomicsLabLib.ibsi.preprocessing import prepare_roi

    radiomics.setVerbosity(logging.ERROR)
    image_path, mask_path = sample_case("brain1")
    image, label_map = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    mask = sitk.Cast(label_map == 1, sitk.sitkUInt8)
    lowest = float(sitk.GetArrayFromImage(image)[sitk.GetArrayFromImage(mask) == 1].min())
    settings = IbsiSettings(dimensions=("3D",), discretisation="FBS", bin_width=25.0,
                            resegment_range=(math.floor(lowest / 25) * 25, None))
    shared_shape = [t for n, t in PYRADIOMICS_TO_IBSI.items() if n.startswith("original_shape_")]

    def engine_shared():
        roi, _ = prepare_roi(image, mask, settings)
        morphology.compute(roi, settings, tags=shared_shape)
        features_of_roi(roi, settings, SHARED_FAMILIES)

    def peer():
        featureextractor.RadiomicsFeatureExtractor().execute(image, label_map, label=1)

    print(f"brain1, {int(sitk.GetArrayFromImage(mask).sum())} voxels, pyradiomics {radiomics.__version__}, "
          f"median (best) of {REPEATS} runs\n")
    ours, ours_best = timed(engine_shared)
    theirs, theirs_best = timed(peer)
    print(f"1. families both have:  IBSI engine {ours:6.3f} s ({ours_best:.3f}) | pyradiomics {theirs:6.3f} s "
          f"({theirs_best:.3f}) | ratio {ours / theirs:5.2f} -> {'met' if ours <= theirs else 'NOT met'} (target <= 1)")
    full, full_best = timed(lambda: compute_features(image, mask, settings, FAMILIES), repeats=3)
    print(f"2. full IBSI feature set ({len(FAMILIES)} families, 3D): {full:6.3f} s ({full_best:.3f})")


# ------------------------------------------------------------------------------------------ pictologics

PICTOLOGICS = "pictologics==0.9.0"
#: IBSI configuration C in pictologics' pipeline steps (its IBSI 1 compliance page, without the
#: keep_largest_component step, which configuration C and the engine's ibsi-C preset do not have, and with
#: the trilinear mask interpolation of configuration C: pictologics' default is nearest neighbour).
PICTOLOGICS_CONFIG_C = [
    {"step": "resample", "params": {"new_spacing": [2.0, 2.0, 2.0], "interpolation": "linear",
                                    "mask_interpolation": "linear", "mask_threshold": 0.5,
                                    "round_intensities": True}},
    {"step": "resegment", "params": {"range_min": -1000, "range_max": 400}},
    {"step": "discretise", "params": {"method": "FBS", "bin_width": 25.0, "min_val": -1000}},
    {"step": "extract_features", "params": {
        "families": ["intensity", "morphology", "texture", "histogram", "ivh"],
        "include_spatial_intensity": True, "include_local_intensity": True,
        "ivh_discretisation": {"method": "FBS", "bin_width": 2.5, "min_val": -1000},
        "ivh_params": {"target_range_max": 400}}},
]
#: The peer process: reads a case index per line, answers with one timed run as JSON.
PEER_SCRIPT = r"""
import json, sys, time
import numpy as np
from pictologics import RadiomicsPipeline, get_num_threads, load_image
cases, steps = json.loads(sys.argv[1]), json.loads(sys.argv[2])
loaded = [(load_image(i), load_image(m)) for i, m in cases]
print(json.dumps({"ready": True, "threads": get_num_threads()}), flush=True)
for line in sys.stdin:
    index, want_values = json.loads(line)
    image, mask = loaded[index]
    pipeline = RadiomicsPipeline(load_standard=False)
    pipeline.add_config("ibsi_c", steps)
    start = time.perf_counter()
    series = pipeline.run(image, mask, config_names=["ibsi_c"])["ibsi_c"]
    seconds = time.perf_counter() - start
    values = {k: float(v) for k, v in series.items()} if want_values else None
    print(json.dumps({"seconds": seconds, "values": values}), flush=True)
"""
#: IBSI ids of pictologics' keys -> engine tags, where the engine's registry has no id (zone families, IVH).
_ID_TO_TAG = {
    **{i: f"szm_{t}_3D" for i, t in zip(
        "P001 48P8 XMSY 5GN9 5RAI HW1V YH51 J17V JNSA Y1RO 4JP3 VB3A P30P BYLV 3NSA GU8N".split(),
        "sze lze lgze hgze szlge szhge lzlge lzhge glnu glnu_norm zsnu zsnu_norm z_perc gl_var zs_var "
        "zs_entr".split())},
    **{i: f"dzm_{t}_3D" for i, t in zip(
        "0GBI MB4I S1RA K26C RUVG DKNJ A7WM KLTH VFT7 7HP3 V294 IATH VIWW QK93 7WT1 GBDU".split(),
        "sde lde lgze hgze sdlge sdhge ldlge ldhge glnu glnu_norm zdnu zdnu_norm z_perc gl_var zd_var "
        "zd_entr".split())},
    **{i: f"ngt_{t}_3D" for i, t in zip("QCDE 65HE NQ30 HDEZ 1X9X".split(),
                                          "coarseness contrast busyness complexity strength".split())},
    **{i: f"ngl_{t}_3D" for i, t in zip(
        "SODN IMOQ TL9H OAE7 EQ3F JA6D NBZI 9QMG FP8K 5SPA Z87G OKJI 6XV8 1PFV DNX2 FCBV CAS9".split(),
        "lde hde lgce hgce ldlge ldhge hdlge hdhge glnu glnu_norm dcnu dcnu_norm dc_perc gl_var dc_var dc_entr "
        "dc_energy".split())},
    "BC2M_10": "ivh_v10", "BC2M_90": "ivh_v90", "GBPN_10": "ivh_i10", "GBPN_90": "ivh_i90",
    "DDTU": "ivh_diff_v10_v90", "CNV2": "ivh_diff_i10_i90", "9CMM": "ivh_auc",
}


def pictologics_python() -> Path:
    """The Python of the peer's virtual environment, made (pyenv's 3.12, pip install pictologics) if missing."""
    venv = Path(os.environ.get("RADIOMICSLAB_PICTOLOGICS_VENV",
                               Path.home() / ".cache" / "radiomicslab" / "bench-pictologics-0.9.0"))
    python = venv / "bin" / "python"
    if python.exists():
        return python
    candidates = sorted(glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.12.*" / "bin" / "python")))
    base = candidates[-1] if candidates else shutil.which("python3.12")
    if not base:
        raise SystemExit("pictologics needs Python >= 3.12: install one with pyenv (pyenv install 3.12) or put "
                         "python3.12 on PATH, or point RADIOMICSLAB_PICTOLOGICS_VENV at a venv that has "
                         f"{PICTOLOGICS}.")
    print(f"making the peer's venv {venv} with {base} and {PICTOLOGICS} ...", flush=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", PICTOLOGICS], check=True)
    return python


class Peer:
    """pictologics in its own process, one timed run per request."""

    def __init__(self, cases, threads=None):
        env = dict(os.environ)
        if threads:
            env["PICTOLOGICS_NUM_THREADS"] = str(threads)
        self.process = subprocess.Popen(
            [str(pictologics_python()), "-c", PEER_SCRIPT, json.dumps([[str(i), str(m)] for i, m in cases]),
             json.dumps(PICTOLOGICS_CONFIG_C)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(Path.home()), env=env)
        self.threads = json.loads(self.process.stdout.readline())["threads"]

    def run(self, index, values=False):
        time.sleep(SETTLE_SECONDS)
        self.process.stdin.write(json.dumps([index, values]) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit("the pictologics process ended early (see its error above)")
        return json.loads(answer)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def compare_values(ours: dict, theirs: dict, registry: dict):
    """(matched, [(their key, our tag, ours, theirs, relative difference)] beyond 1e-6) of the values both compute."""
    by_id = {}
    for tag, info in registry.items():
        if info.get("ibsi_id") and info.get("dimension", "3D") == "3D":
            by_id.setdefault(info["ibsi_id"], []).append(tag)
    for ibsi_id, tag in _ID_TO_TAG.items():
        by_id[ibsi_id] = [tag]
    matched, off = 0, []
    for key, value in theirs.items():
        ibsi_id = next((i for i in (key.rsplit("_", 2)[-2] + "_" + key.rsplit("_", 1)[-1], key.rsplit("_", 1)[-1])
                        if i in by_id), None)
        tags = [t for t in by_id.get(ibsi_id, []) if t in ours]
        if not tags:
            continue
        diffs = [(abs(ours[t] - value) / max(abs(value), 1e-12), t) for t in tags
                 if not (math.isnan(ours[t]) and math.isnan(value))]
        matched += 1
        if diffs and min(diffs)[0] > 1e-6:
            rel, tag = min(diffs)
            off.append((key, tag, ours[tag], value, rel))
    return matched, off


#: The grid of a whole CT (SimpleITK's x, y, z) that a ``<case>-whole`` case is padded to.
WHOLE_CT = (512, 512, 299)


def case_files(name: str, folder: Path) -> tuple[Path, Path]:
    """(image, mask) NIfTI paths of a case: ``STS_00x`` (the shared CT crop and GTV), or ``STS_00x-whole``: that crop
    padded to a whole CT's grid (:data:`WHOLE_CT`) with air (-1000 HU) and stored as int16, as CT scanners write,
    the GTV padded with 0, written into ``folder``."""
    import SimpleITK as sitk

    from RadiomicsLabLib.data import data_dir

    case, whole = name.removesuffix("-whole"), name.endswith("-whole")
    paths = data_dir() / "sts" / case / "CT_image.nii.gz", data_dir() / "sts" / case / "CT_mask.nii.gz"
    if not whole:
        return paths
    padded = []
    for path, fill, pixel in zip(paths, (-1000.0, 0.0), (sitk.sitkInt16, sitk.sitkUInt8)):
        crop = sitk.ReadImage(str(path))
        lower = [(n - s) // 2 for n, s in zip(WHOLE_CT, crop.GetSize())]
        upper = [n - s - lo for n, s, lo in zip(WHOLE_CT, crop.GetSize(), lower)]
        padded.append(folder / f"{name}_{path.name}")
        sitk.WriteImage(sitk.Cast(sitk.ConstantPad(crop, lower, upper, fill), pixel), str(padded[-1]), True)
    return tuple(padded)


def pictologics_comparison(case_names, repeats):
    import SimpleITK as sitk

    from RadiomicsLabLib.ibsi.configurations import CONFIGURATIONS
    from RadiomicsLabLib.ibsi.engine import compute_features, feature_registry
    from RadiomicsLabLib.limits import compute_threads

    settings = CONFIGURATIONS["C"]
    lean = settings.replaced(diagnostics=False)   # no IBSI diagnostics, as pictologics (additionalInfo: false)
    folder = tempfile.TemporaryDirectory(prefix="bench-ibsi-engine-")
    paths = [case_files(c, Path(folder.name)) for c in case_names]
    images = [(sitk.ReadImage(str(i)), sitk.ReadImage(str(m))) for i, m in paths]
    peer, single = Peer(paths), Peer(paths, threads=1)
    print(f"3. IBSI configuration C, segment extraction, whole feature set: RadiomicsLab's IBSI engine with its "
          f"default {compute_threads()} threads and with 1 vs {PICTOLOGICS} (Python 3.12 venv) with its default {peer.threads} numba threads and with 1 thread "
          f"(PICTOLOGICS_NUM_THREADS=1), and the engine without its IBSI diagnostics (diagnostics: false, "
          f"pyradiomics' additionalInfo: false; pictologics computes none); best of {repeats} after a warm-up, the "
          f"five taking turns case by case")
    results, theirs, peer_times, single_times, our_times, our_totals, our_single = {}, {}, {}, {}, {}, {}, {}
    our_lean = {}
    for index, (image, mask) in enumerate(images):  # warm-up; keep both sets of values
        results[index] = compute_features(image, mask, settings)
        theirs[index] = peer.run(index, values=True)["values"]
        single.run(index)
    def wall(image, mask, chosen=settings):
        """(seconds of one compute_features call, its EngineResult), after the pause every timed run gets."""
        time.sleep(SETTLE_SECONDS)
        start = time.perf_counter()
        result = compute_features(image, mask, chosen)
        return time.perf_counter() - start, result

    # Each timed run follows a run of another process (pictologics, RadiomicsLab, pictologics' single-thread process,
    # RadiomicsLab on one thread, pictologics again, RadiomicsLab without diagnostics), so none finds the caches warm
    # from its own run of the same case just before (pictologics' best is then of two runs per round).
    for _ in range(repeats):
        for index, (image, mask) in enumerate(images):
            peer_times[index] = min(peer_times.get(index, math.inf), peer.run(index)["seconds"])
            total, result = wall(image, mask)
            if total < our_totals.get(index, math.inf):
                our_times[index], our_totals[index] = result.timings, total
            single_times[index] = min(single_times.get(index, math.inf), single.run(index)["seconds"])
            previous = os.environ.get("OMP_NUM_THREADS")
            os.environ["OMP_NUM_THREADS"] = "1"
            try:
                single_run = wall(image, mask)[0]
            finally:
                if previous is None:
                    os.environ.pop("OMP_NUM_THREADS")
                else:
                    os.environ["OMP_NUM_THREADS"] = previous
            our_single[index] = min(our_single.get(index, math.inf), single_run)
            peer_times[index] = min(peer_times[index], peer.run(index)["seconds"])
            our_lean[index] = min(our_lean.get(index, math.inf), wall(image, mask, lean)[0])
    peer.close()
    single.close()
    folder.cleanup()
    registry = feature_registry()
    steps = list(next(iter(our_times.values())))
    print("\n   milliseconds (best run)" + "".join(f"{c:>10}" for c in case_names))
    voxels = [int(results[i].diagnostics.get("morph_mask_vox_count_interp_roi", 0)) for i in range(len(images))]
    print("   ROI voxels at 2 mm     " + "".join(f"{v:>10}" for v in voxels))

    def row(label, values):
        print(f"   {label:<23}" + "".join(f"{1000 * v:10.1f}" for v in values))
    for step in steps:
        row(step, [our_times[i][step] for i in range(len(images))])
    ours_total = [our_totals[i] for i in range(len(images))]
    row(f"RadiomicsLab, {compute_threads()} threads", ours_total)
    row("RadiomicsLab, 1 thread", [our_single[i] for i in range(len(images))])
    row(f"pictologics, {peer.threads} threads", [peer_times[i] for i in range(len(images))])
    row("pictologics, 1 thread", [single_times[i] for i in range(len(images))])
    row("RadiomicsLab, no diagn.", [our_lean[i] for i in range(len(images))])
    ratios = [ours_total[i] / peer_times[i] for i in range(len(images))]
    print(f"   ratio, default threads " + "".join(f"{r:10.2f}" for r in ratios)
          + f"   -> {'met' if max(ratios) <= 1 else 'NOT met'} (target <= 1)")
    print("   ratio, 1 thread each   " + "".join(f"{our_single[i] / single_times[i]:10.2f}"
                                                   for i in range(len(images))))
    print("   ratio, no diagnostics  " + "".join(f"{our_lean[i] / peer_times[i]:10.2f}" for i in range(len(images)))
          + "   (default threads, the same work as pictologics)")
    print(f"   features: RadiomicsLab {len(results[0].values)}, pictologics {len(theirs[0])}")
    for index, name in enumerate(case_names):
        matched, off = compare_values(results[index].values, theirs[index], registry)
        print(f"   {name}: {matched} values both compute, {len(off)} differ by more than 1e-6 relative")
        for key, tag, a, b, rel in off:
            print(f"      {key} ({tag}): ours {a:.10g}, pictologics {b:.10g}, relative difference {rel:.2e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("pyradiomics", "pictologics"))
    parser.add_argument("--cases", default="STS_001,STS_004", help="sarcoma cases for the pictologics comparison "
                        "(STS_00x; STS_00x-whole: that CT padded to a whole CT's grid, int16)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case for the pictologics comparison")
    args = parser.parse_args()
    if args.only != "pictologics":
        pyradiomics_comparison()
        print()
    if args.only != "pyradiomics":
        pictologics_comparison(args.cases.split(","), args.repeats)


if __name__ == "__main__":
    main()
