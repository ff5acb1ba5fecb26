"""The IBSI engine against pyradiomics on the real brain1 case, in the same run (``make bench``).

1. The feature families both have (3D, fixed bin width 25, distance 1): pyradiomics' default
   extraction (shape, firstorder, glcm, glrlm, glszm, gldm, ngtdm) against the engine's
   preprocessing + statistics, intensity histogram, GLCM, GLRLM, GLSZM, NGLDM, NGTDM and the
   morphology features pyradiomics also has. Target (issue #4): no slower than pyradiomics.
2. The full IBSI feature set (all 11 families, 3D), for reference.
"""

import logging
import math
import statistics
import time

REPEATS = 7
SHARED_FAMILIES = ("statistics", "histogram", "glcm", "glrlm", "glszm", "ngldm", "ngtdm")


def timed(function, repeats=REPEATS):
    function()  # warm up (imports, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main():
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


if __name__ == "__main__":
    main()
