"""Speed of multi-observer agreement: 5 observers on 512 x 512 x 100 masks, against SimpleITK's filters, same run.

Run on purpose: ``.venv/bin/python Testing/benchmarks/bench_observers.py [--repeats N]``.

Observers (documented synthetic observers; the real data has one segmentation per lesion): the
real STS_004 CT GTV mask (../shared/data/sts) and four perturbations of it from
RadiomicsLabLib.perturbation with seed 0 (erosion 1 mm, dilation 2 mm, 2 mm rigid shift,
supervoxel contour randomisation), on two 512 x 512 x 100 grids:

  A. "lesion in a CT": the masks embedded in a 512 x 512 x 100 grid at the CT's spacing
     (0.98 x 0.98 x 3.27 mm), as a lesion in a full CT volume is.
  B. "lesion filling the grid": the same masks resampled (nearest neighbour) onto a 512 x 512 x 100
     grid spanning the lesion's bounding box plus 10 %, the worst case for RadiomicsLab's cropping
     (about 0.2 x 0.2 x 0.6 mm voxels, tens of millions of lesion voxels).

Timed for all 10 pairs (median of --repeats runs, alternating):
  ours      RadiomicsLabLib.observers.agreement: Dice, Jaccard, volumes, Hausdorff, HD95, MSD for every pair
  sitk      LabelOverlapMeasuresImageFilter + HausdorffDistanceImageFilter per pair (Dice, Jaccard,
            volume similarity, Hausdorff; no HD95 / MSD)
  sitk+surf the above plus HD95 and MSD SimpleITK's way (LabelContour + SignedMaurerDistanceMap
            per pair and direction): the like-for-like peer
and, for information, STAPLE (SimpleITK) and majority vote on the full grid. Agreement of the
numbers is printed too (largest |Dice difference|, largest |Hausdorff difference| in mm).
"""

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from RadiomicsLabLib.data import data_dir  # noqa: E402
from RadiomicsLabLib.observers import Lesion, agreement, majority_vote, staple  # noqa: E402
from RadiomicsLabLib.perturbation import perturb_lesion, perturbation_plan  # noqa: E402

SHAPE = (512, 512, 100)  # x, y, z
PLAN = ("grow:mm=-1", "grow:mm=2", "shift:mm=2", "supervoxels")


def observers_512():
    """The five observers of the real STS_004 CT lesion, on grid A and on grid B."""
    case = data_dir() / "sts" / "STS_004"
    image = sitk.ReadImage(str(case / "CT_image.nii.gz"))
    mask = sitk.Cast(sitk.ReadImage(str(case / "CT_mask.nii.gz")) > 0, sitk.sitkUInt8)
    lesion = perturb_lesion(Lesion("STS_004", image, {"gtv": mask}), perturbation_plan(PLAN), seed=0)
    masks = lesion.masks

    # Grid A: pad the CT grid to 512 x 512 x 100 (lesion voxels unchanged).
    size = np.array(image.GetSize())
    low = (np.array(SHAPE) - size) // 2
    high = np.array(SHAPE) - size - low
    grid_a = {n: sitk.ConstantPad(m, [int(v) for v in low], [int(v) for v in high], 0) for n, m in masks.items()}

    # Grid B: the lesion's bounding box + 10 % sampled by 512 x 512 x 100 voxels.
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Maximum(sitk.Maximum(masks["gtv"], masks["p2_grow"]), masks["p4_supervoxels"]))
    x0, y0, z0, sx, sy, sz = stats.GetBoundingBox(1)
    start = np.array(mask.TransformIndexToPhysicalPoint((x0, y0, z0)))
    extent = np.array([sx, sy, sz]) * np.array(mask.GetSpacing())
    spacing = 1.1 * extent / np.array(SHAPE)
    reference = sitk.Image([int(v) for v in SHAPE], sitk.sitkUInt8)
    reference.SetSpacing([float(v) for v in spacing])
    reference.SetOrigin([float(v) for v in start - 0.05 * extent])
    reference.SetDirection(mask.GetDirection())
    grid_b = {n: sitk.Resample(m, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8) for n, m in masks.items()}
    return grid_a, grid_b


def lesion_of(masks):
    first = next(iter(masks.values()))
    image = sitk.Image(first.GetSize(), sitk.sitkInt16)
    image.CopyInformation(first)
    return Lesion("bench", image, dict(masks))


def sitk_filters(masks, surfaces=False):
    """Every pair with SimpleITK's overlap and Hausdorff filters (+ HD95 / MSD from contour distance maps)."""
    results = {}
    for a, b in itertools.combinations(masks, 2):
        overlap = sitk.LabelOverlapMeasuresImageFilter()
        overlap.Execute(masks[a], masks[b])
        hausdorff = sitk.HausdorffDistanceImageFilter()
        hausdorff.Execute(masks[a], masks[b])
        row = {"dice": overlap.GetDiceCoefficient(), "hausdorff_mm": hausdorff.GetHausdorffDistance()}
        if surfaces:
            directed = []
            for x, y in ((a, b), (b, a)):
                contour_y = sitk.LabelContour(masks[y], fullyConnected=False)
                distance = sitk.Abs(sitk.SignedMaurerDistanceMap(contour_y, insideIsPositive=False, squaredDistance=False,
                                                                 useImageSpacing=True))
                on_x = sitk.GetArrayFromImage(sitk.LabelContour(masks[x], fullyConnected=False)).astype(bool)
                directed.append(sitk.GetArrayFromImage(distance)[on_x])
            row["hd95_mm"] = max(np.percentile(d, 95) for d in directed)
            row["msd_mm"] = (directed[0].sum() + directed[1].sum()) / (directed[0].size + directed[1].size)
        results[a, b] = row
    return results


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"SimpleITK {sitk.Version.VersionString()}, {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()} ITK threads")
    for title, masks in zip(("A. lesion in a 512x512x100 CT", "B. lesion filling the 512x512x100 grid"), observers_512()):
        voxels = {n: int(np.count_nonzero(sitk.GetArrayViewFromImage(m))) for n, m in masks.items()}
        spacing = ", ".join(f"{s:.3g}" for s in next(iter(masks.values())).GetSpacing())
        print(f"\n{title}: spacing ({spacing}) mm, lesion voxels per observer {min(voxels.values()):,}-{max(voxels.values()):,}")
        lesion = lesion_of(masks)
        ours_time, ours = timed(lambda: agreement(lesion), args.repeats)
        sitk_time, peer = timed(lambda: sitk_filters(masks), args.repeats)
        surf_time, peer_surf = timed(lambda: sitk_filters(masks, surfaces=True), max(1, args.repeats - 2))
        staple_time, _ = timed(lambda: staple(masks), 1)
        vote_time, _ = timed(lambda: majority_vote(masks), 1)
        ours_pairs = {(p["observer_a"], p["observer_b"]): p for p in ours.pairs}
        dice = max(abs(ours_pairs[k]["dice"] - v["dice"]) for k, v in peer.items())
        hd = max(abs(ours_pairs[k]["hausdorff_mm"] - v["hausdorff_mm"]) for k, v in peer.items())
        hd95 = max(abs(ours_pairs[k]["hd95_mm"] - v["hd95_mm"]) for k, v in peer_surf.items())
        msd = max(abs(ours_pairs[k]["msd_mm"] - v["msd_mm"]) for k, v in peer_surf.items())
        print(f"  ours (all metrics, 10 pairs)              {ours_time:7.2f} s")
        print(f"  SimpleITK overlap + Hausdorff filters      {sitk_time:7.2f} s   ratio ours/sitk {ours_time / sitk_time:6.3f}"
              f"  ({sitk_time / ours_time:.1f}x faster)")
        print(f"  SimpleITK + HD95/MSD (contour distances)   {surf_time:7.2f} s   ratio ours/sitk {ours_time / surf_time:6.3f}"
              f"  ({surf_time / ours_time:.1f}x faster)")
        print(f"  max |difference| ours - SimpleITK: Dice {dice:.1e}, Hausdorff {hd:.3g} mm, HD95 {hd95:.3g} mm, MSD {msd:.3g} mm")
        print(f"  for information: STAPLE (SimpleITK, full grid) {staple_time:.2f} s, majority vote {vote_time:.2f} s")


if __name__ == "__main__":
    main()
