"""Rigid registration: recovery of known motions of the real sarcoma CT and MR T1, RadiomicsLab vs plain SimpleITK.

Run on purpose: ``.venv/bin/python Testing/benchmarks/bench_registration.py [--patients STS_001,...]
[--modalities CT,MR_T1] [--motions NAME,...] [--threads 1]``.

Each of the four patients' CT and MR T1 (``../shared/data/sts``) is moved by each known rigid motion K
(Testing/test_registration.py's ``MOTIONS``: translations of 5, 20 and 21 mm, rotations of about 10
degrees about the GTV centroid or the image centre, and both together), resampled with the image's
minimum outside, plus "origin shift 5 mm": the same voxels with the origin moved 5 mm along x (the
issue's follow-up: no resampling at all). Both registrations get the GTV grown by 20 mm as the
metric region (as delta and habitats do) and seed 1:

  radiomicslab  ``RadiomicsLabLib.registration.register(kind="rigid")`` with its defaults
  plain         the peer: SimpleITK as RadiomicsLab used it before (and as SimpleITK's examples do):
                Mattes MI (50 bins, about 10,000 random samples per level, seed 1) on the same
                intensity-clamped images, ITK's pyramid (shrink 2, 1; smoothing 2, 0 mm), regular-step
                gradient descent (first step 2, minimum step 1e-4, 300 iterations) with scales from
                physical shift, started from the identity, the metric's default moving-image gradient

Per case: the error at the GTV centroid |K(T(c)) - c| (mm), the residual rotation of K o T (degrees),
whether the method said it converged, and seconds. "ok" = error < 1 mm and rotation < 0.5 degree.
A method's "silent failures" are results it called converged that are not ok (the dangerous kind).
Printed: the table, then per method the number ok, the silent failures, the median and worst error,
and the time ratio radiomicslab / plain.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/ (for the motions of the tests)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository (RadiomicsLabLib)

from test_registration import MOTIONS, centroid_error, known_motion  # noqa: E402

from RadiomicsLabLib.data import data_dir  # noqa: E402
from RadiomicsLabLib.regions import grow  # noqa: E402
from RadiomicsLabLib.registration import affine_matrix, register, resample  # noqa: E402

ORIGIN_SHIFT = "origin shift 5 mm"


def load(patient, modality):
    folder = data_dir() / "sts" / patient
    image = sitk.ReadImage(str(folder / f"{modality}_image.nii.gz"))
    mask = sitk.ReadImage(str(folder / f"{modality}_mask.nii.gz"))
    centroid = np.array(image.TransformContinuousIndexToPhysicalPoint(
        np.argwhere(sitk.GetArrayViewFromImage(mask)).mean(axis=0)[::-1].tolist()))
    return image, grow(mask, 20.0), centroid


def moved_pair(image, centroid, motion):
    """(moved image, K) with moved(x) = image(K(x)), K in the resampling direction (follow-up -> baseline points)."""
    if motion == ORIGIN_SHIFT:
        moved = sitk.Image(image)
        moved.SetOrigin([o + d for o, d in zip(image.GetOrigin(), (5.0, 0.0, 0.0))])
        known = sitk.TranslationTransform(3, (-5.0, 0.0, 0.0))  # the voxel at x + 5 shows what image shows at x
        return moved, known
    known = known_motion(image, centroid, motion)
    return resample(image, image, known, default_value=float(sitk.GetArrayViewFromImage(image).min())), known


def plain(fixed, moving, region, seed=1):
    """The peer (see the module docstring); returns (4x4 matrix, converged)."""
    inside = sitk.GetArrayViewFromImage(region).astype(bool)
    clamped = []
    for image in (fixed, moving):
        low, high = np.percentile(sitk.GetArrayViewFromImage(resample(image, fixed))[inside], (0.5, 99.5))
        clamped.append(sitk.Clamp(image, sitk.sitkFloat32, float(low), float(high)))
    transform = sitk.Euler3DTransform()
    transform.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    voxels = int(np.count_nonzero(inside))
    method.SetMetricSamplingPercentagePerLevel([min(1.0, 10_000 * s ** 3 / voxels) for s in (2, 1)], seed)
    method.SetMetricFixedMask(region)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(transform, inPlace=True)
    method.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-4, 300, 0.5, 1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.Execute(*clamped)
    stop = method.GetOptimizerStopConditionDescription().lower()
    return affine_matrix(transform), "step too small" in stop or "tolerance" in stop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", default="STS_001,STS_002,STS_003,STS_004")
    parser.add_argument("--modalities", default="CT,MR_T1")
    parser.add_argument("--motions", default=",".join([ORIGIN_SHIFT, *MOTIONS]))
    parser.add_argument("--threads", type=int, default=1, help="threads of radiomicslab's register (0: all cores)")
    args = parser.parse_args()
    motions = args.motions.split(",")
    rows = []
    print(f"{'patient':8} {'modality':6} {'motion':48} | {'radiomicslab: mm':>16} {'deg':>5} {'conv':>5} {'s':>5} "
          f"| {'plain: mm':>9} {'deg':>5} {'conv':>5} {'s':>5}", flush=True)
    for patient in args.patients.split(","):
        for modality in args.modalities.split(","):
            image, region, centroid = load(patient, modality)
            for motion in motions:
                moved, known = moved_pair(image, centroid, motion)
                row = {"case": (patient, modality, motion)}
                start = time.perf_counter()
                result = register(image, moved, "rigid", fixed_mask=region, seed=1, threads=args.threads or None)
                row["ours"] = (*centroid_error(known, result.matrix(), centroid), result.converged, time.perf_counter() - start)
                start = time.perf_counter()
                matrix, converged = plain(image, moved, region)
                row["plain"] = (*centroid_error(known, matrix, centroid), converged, time.perf_counter() - start)
                rows.append(row)
                cells = " | ".join(f"{e:16.2f} {a:5.2f} {str(c):>5} {t:5.1f}" if i == 0 else f"{e:9.2f} {a:5.2f} {str(c):>5} {t:5.1f}"
                                   for i, (e, a, c, t) in enumerate((row["ours"], row["plain"])))
                print(f"{patient:8} {modality:6} {motion:48} | {cells}", flush=True)
    print()
    for key, name in (("ours", "radiomicslab"), ("plain", "plain SimpleITK")):
        ok = [r for r in rows if r[key][0] < 1.0 and r[key][1] < 0.5]
        silent = [r for r in rows if r[key][2] and not (r[key][0] < 1.0 and r[key][1] < 0.5)]
        refused = [r for r in rows if not r[key][2]]
        errors = [r[key][0] for r in rows]
        print(f"{name:16} ok {len(ok)}/{len(rows)}, refused (converged False) {len(refused)}, silent failures {len(silent)}, "
              f"error median {statistics.median(errors):.3f} mm, worst {max(errors):.2f} mm, "
              f"worst rotation {max(r[key][1] for r in rows):.2f} deg, {sum(r[key][3] for r in rows):.0f} s in all")
    ours, peer = sum(r["ours"][3] for r in rows), sum(r["plain"][3] for r in rows)
    print(f"time ratio radiomicslab / plain: {ours / peer:.2f}")
    return 0 if all(r["ours"][0] < 1.0 and r["ours"][1] < 0.5 or not r["ours"][2] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
