"""Population-level habitats: 1 million voxels x 3 channels, k = 4, over the four real sarcoma patients.

Run on purpose: ``.venv/bin/python Testing/benchmarks/bench_habitats.py``. Target (issue #7): under
10 s on this machine's 2 cores.

Data: STS_001..004, channels CT, MR T1 and PET (co-registered, on three different grids), ROI =
CT_mask. The four tumours hold 254,891 CT voxels; to reach a million, each mask is put on a grid
with four times finer slices (0.98 x 0.98 x 0.82 mm, nearest neighbour), the isotropic-like grid
IBSI-style preprocessing would use: 1,019,564 voxels. Everything from the images in memory to the
label maps and statistics is timed:

- RadiomicsLab: ``fit_habitats(patients, 4, "kmeans", registration="resample", seed=0)``: channels
  resampled onto each mask grid, per-patient z-scores, 50,000 rows pooled (an equal share per
  patient), k-means (4 starts), every voxel labelled, habitats ordered and named, statistics.
- peer: the same written directly with SimpleITK + scikit-learn as a user would: resample, z-score,
  concatenate all voxels, ``KMeans(4, n_init=4).fit_predict`` on all of them (best of 1 and 2 threads).

Both are timed alternately (median of REPEATS); the agreement of the two labellings (clusters matched
by their CT centre) shows what the bounded sample costs in accuracy.
"""

import statistics
import time

import numpy as np
import SimpleITK as sitk

REPEATS = 3
PATIENTS = ("STS_001", "STS_002", "STS_003", "STS_004")
CHANNELS = ("CT", "MR_T1", "PET")
Z_REFINE = 4


def finer_mask(mask: sitk.Image, factor: int) -> sitk.Image:
    """``mask`` on a grid with ``factor`` times as many slices over the same extent (nearest neighbour)."""
    spacing = list(mask.GetSpacing())
    size = list(mask.GetSize())
    spacing[2] /= factor
    size[2] *= factor
    origin = np.array(mask.GetOrigin()) - np.array(mask.GetDirection()).reshape(3, 3) @ [0, 0, (factor - 1) / 2 * spacing[2]]
    return sitk.Resample(mask, size, sitk.Transform(), sitk.sitkNearestNeighbor, origin.tolist(), spacing,
                         mask.GetDirection(), 0, mask.GetPixelID())


def load(data):
    from RadiomicsLabLib.habitats import Patient

    patients = []
    for name in PATIENTS:
        folder = data / "sts" / name
        mask = finer_mask(sitk.ReadImage(str(folder / "CT_mask.nii.gz")), Z_REFINE)
        patients.append(Patient(name, mask, {c: sitk.ReadImage(str(folder / f"{c}_image.nii.gz")) for c in CHANNELS}))
    return patients


def peer(patients, threads):
    """Resample, z-score per patient, k-means on every voxel of the cohort."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    blocks = []
    for patient in patients:
        inside = sitk.GetArrayViewFromImage(patient.mask) > 0
        columns = []
        for image in patient.channels.values():
            on_grid = sitk.Resample(image, patient.mask, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
            values = sitk.GetArrayViewFromImage(on_grid)[inside].astype(np.float64)
            columns.append((values - values.mean()) / values.std())
        blocks.append(np.stack(columns, axis=1))
    features = np.concatenate(blocks)
    with threadpool_limits(threads):
        model = KMeans(4, n_init=4, random_state=0)
        labels = model.fit_predict(features)
    return labels, model.cluster_centers_


def ours(patients):
    from RadiomicsLabLib.habitats import fit_habitats

    return fit_habitats(patients, 4, "kmeans", registration="resample", seed=0)


def main():
    from RadiomicsLabLib.data import data_dir

    patients = load(data_dir())
    voxels = sum(int(np.count_nonzero(sitk.GetArrayViewFromImage(p.mask))) for p in patients)
    print(f"{len(patients)} patients, {voxels:,} voxels x {len(CHANNELS)} channels ({', '.join(CHANNELS)}), k = 4; "
          f"{REPEATS} alternating runs, median\n")
    ours(patients), peer(patients, 1)  # warm up: imports, caches
    peer_threads = min((1, 2), key=lambda t: _time(lambda: peer(patients, t)))
    ours_times, peer_times = [], []
    for _ in range(REPEATS):
        ours_times.append(_time(lambda: ours(patients)))
        peer_times.append(_time(lambda: peer(patients, peer_threads)))
    mine, theirs = statistics.median(ours_times), statistics.median(peer_times)
    print(f"radiomicslab fit_habitats (population, sampled fit)   median {mine:6.2f} s (best {min(ours_times):6.2f})")
    print(f"peer: scikit-learn KMeans on all voxels ({peer_threads} thread{'s' * (peer_threads > 1)})   "
          f"median {theirs:6.2f} s (best {min(peer_times):6.2f})")
    print(f"ratio radiomicslab / peer: {mine / theirs:.3f}; target under 10 s: {'met' if mine < 10 else 'NOT met'}")

    from scipy.optimize import linear_sum_assignment

    model, results = ours(patients)
    labels, centres = peer(patients, peer_threads)
    mine_centres = model.clustering.cluster_centers_
    # peer cluster -> habitat id: the assignment with the smallest total centre distance
    peer_index, habitat_index = linear_sum_assignment(((centres[:, None] - mine_centres[None]) ** 2).sum(axis=2))
    relabel = np.empty(4, int)
    relabel[peer_index] = habitat_index + 1
    mine_labels = np.concatenate([sitk.GetArrayViewFromImage(r.label_map)[sitk.GetArrayViewFromImage(p.mask) > 0]
                                  for p, r in zip(patients, results)])
    agreement = np.mean(mine_labels == relabel[labels])
    print(f"agreement with the peer's labels (clusters matched by centre): {agreement:.4f}; largest centre "
          f"difference {np.abs(mine_centres[habitat_index] - centres[peer_index]).max():.3f} SD")


def _time(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
