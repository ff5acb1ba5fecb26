"""Benchmark: voxel-wise feature maps, RadiomicsLab against pyradiomics (voxelBased=True) and flash-radiomics.

Same run, same region, same settings for every tool: a 16 x 16 x 16 crop of the real brain1 MR image (4096
voxels; the mask is the whole crop, so every voxel is a kernel centre), kernel radius 1, bin width 25,

1. the 24 GLCM features,
2. every texture family pyradiomics has (GLCM, GLRLM, GLSZM, GLDM, NGTDM: 75 features),

then RadiomicsLab on the full brain1 ROI (its real label, 4137 voxels), radius 1: all texture families with both
definitions, and the two IBSI local intensity maps (ibsi only; 1 cm^3 sphere means, then the peaks per kernel);
each also with every map built as an image once (as the CLI and the Slicer logic do).

Each measurement runs in a fresh process: the tool is imported and warmed up first (RadiomicsLab: one call that
loads the compiled kernels; flash-radiomics: one call; pyradiomics has nothing to warm and runs once, it is
slow), then the computation is timed (best of ``--repeats``). flash-radiomics is timed on its compute
(``preprocess_case`` + ``extract_from_preprocessed``), without its HDF5 write. The process's peak resident
memory is printed beside each time, and the speed-up of RadiomicsLab over each peer.

    python Testing/benchmarks/bench_featuremaps.py [--repeats 3] [--skip-pyradiomics]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

#: The 16 x 16 x 16 region of brain1 (SimpleITK index x, y, z), inside the head.
REGION_INDEX, REGION_SIZE = (177, 100, 5), (16, 16, 16)
PYRADIOMICS_TEXTURE = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")


def region():
    """(image, mask) of the benchmark region: the brain1 crop and a mask covering all of it."""
    import SimpleITK as sitk

    from RadiomicsLabLib.data import sample_case

    image = sitk.RegionOfInterest(sitk.ReadImage(str(sample_case("brain1")[0])), REGION_SIZE, REGION_INDEX)
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    return image, mask + 1


def full_roi():
    import SimpleITK as sitk

    from RadiomicsLabLib.data import sample_case

    image, label = sample_case("brain1")
    return sitk.ReadImage(str(image)), sitk.ReadImage(str(label))


def feature_names(families) -> dict:
    """{pyradiomics class: [its non-deprecated features]} (what pyradiomics enables by default)."""
    from RadiomicsLabLib.featuremaps import catalogue

    names = {}
    for name, family in catalogue("pyradiomics").items():
        if family in families:
            names.setdefault(family, []).append(name.split("_", 1)[1])
    return names


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------------ workers

def run_radiomicslab(case, families, definition, repeats, build_images=False):
    from RadiomicsLabLib.featuremaps import feature_maps

    image, mask = region() if case == "region" else full_roi()
    features = ",".join(families)
    feature_maps(image, mask, features, radius=1, definition=definition, binWidth=25) if definition == "pyradiomics" \
        else feature_maps(image, mask, features, radius=1, definition=definition, bin_width=25.0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        settings = {"binWidth": 25} if definition == "pyradiomics" else {"bin_width": 25.0}
        maps = feature_maps(image, mask, features, radius=1, definition=definition, **settings)
        if build_images:
            for name in maps:
                maps[name]   # each map as a SimpleITK image on the input grid, one at a time
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "maps": len(maps), "voxels": int(maps.values.shape[0]),
            "estimate_mb": maps.provenance["memory_estimate_bytes"] / 2 ** 20}


def run_pyradiomics(case, families, repeats):
    import logging

    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.CRITICAL)
    image, mask = region() if case == "region" else full_roi()
    extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=25, kernelRadius=1)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(**feature_names(families))
    start = time.perf_counter()
    result = extractor.execute(image, mask, voxelBased=True)
    return {"seconds": time.perf_counter() - start, "maps": sum(1 for v in result.values() if hasattr(v, "GetSize"))}


def run_flash(case, families, repeats):
    import logging

    import SimpleITK as sitk
    from flash_radiomics import featureextractor

    logging.disable(logging.CRITICAL)
    image, mask = region() if case == "region" else full_roi()
    extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=25, kernelRadius=1, additionalInfo=False)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(**feature_names(families))

    def compute():
        prepared = extractor.preprocess_case(image, mask, spatialMode=True)
        return extractor.extract_from_preprocessed(prepared)     # the maps; no HDF5 file written

    compute()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = compute()
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "maps": sum(1 for v in result.values() if isinstance(v, sitk.Image))}


def worker(spec: dict) -> dict:
    tool = spec.pop("tool")
    run = {"radiomicslab": run_radiomicslab, "pyradiomics": run_pyradiomics, "flash": run_flash}[tool]
    result = run(**spec)
    result["peak_mb"] = peak_mb()
    return result


def measure(**spec) -> dict:
    """Run one measurement in a fresh process; its JSON result (or the error)."""
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ report

def line(label, result):
    if "error" in result:
        return f"  {label:<50} failed: {result['error']}"
    return f"  {label:<50} {result['seconds']:9.3f} s  peak {result['peak_mb']:7.0f} MB  {result['maps']:3d} maps"


def compare(ours, peer) -> str:
    if "seconds" not in ours or "seconds" not in peer:
        return "n/a"
    return f"{peer['seconds'] / ours['seconds']:.1f}x"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-pyradiomics", action="store_true", help="Leave out pyradiomics (minutes per run).")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import numba

    print(f"Feature maps benchmark: brain1 region {REGION_SIZE} at {REGION_INDEX} (4096 voxels), radius 1, "
          f"bin width 25; {numba.get_num_threads()} thread(s); best of {args.repeats} (pyradiomics: one run).")
    for title, families in (("24 GLCM features", ("glcm",)), ("all texture families (75 features)", PYRADIOMICS_TEXTURE)):
        print(f"\n{title}")
        ours = measure(tool="radiomicslab", case="region", families=families, definition="pyradiomics",
                       repeats=args.repeats)
        ibsi = measure(tool="radiomicslab", case="region", families=families, definition="ibsi", repeats=args.repeats)
        flash = measure(tool="flash", case="region", families=families, repeats=args.repeats)
        print(line("RadiomicsLab (pyradiomics definition)", ours))
        print(line("RadiomicsLab (ibsi definition)", ibsi))
        print(line("flash-radiomics (compute, no HDF5)", flash))
        if not args.skip_pyradiomics:
            py = measure(tool="pyradiomics", case="region", families=families, repeats=1)
            print(line("pyradiomics voxelBased=True", py))
            print(f"  speed-up: {compare(ours, py)} over pyradiomics, {compare(ours, flash)} over flash-radiomics "
                  f"(ibsi definition: {compare(ibsi, py)}, {compare(ibsi, flash)})")
        else:
            print(f"  speed-up: {compare(ours, flash)} over flash-radiomics (ibsi definition: {compare(ibsi, flash)})")
    print("\nFull brain1 ROI (real label), radius 1")
    texture = PYRADIOMICS_TEXTURE
    for label, definition, families in (("texture", "pyradiomics", texture),
                                        ("texture", "ibsi", ("glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm")),
                                        ("local intensity", "ibsi", ("local_intensity",))):
        result = measure(tool="radiomicslab", case="full", families=families, definition=definition,
                         repeats=args.repeats)
        print(line(f"RadiomicsLab {label} ({definition} definition)", result)
              + (f"  ({result['voxels']} voxels, estimate {result['estimate_mb']:.0f} MB)" if "voxels" in result else ""))
        built = measure(tool="radiomicslab", case="full", families=families, definition=definition,
                        repeats=args.repeats, build_images=True)
        print(line("  + every map built as an image once", built))


if __name__ == "__main__":
    main()
