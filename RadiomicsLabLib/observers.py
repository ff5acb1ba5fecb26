"""Multi-observer variability of one lesion or a cohort: agreement, consensus, feature reproducibility.

A :class:`Lesion` is one image and every observer's binary mask of the same lesion (0/1 UInt8 on
the image grid), built and checked by :func:`make_lesion`. On it:

- :func:`agreement`: for every pair of observers, in mm with anisotropic spacing, Dice, Jaccard,
  volume difference (mm^3 and %), Hausdorff distance, HD95 and mean symmetric surface distance;
  a summary over pairs (mean, SD, min, max) and the generalised conformity index.
- :func:`staple` (SimpleITK's ``STAPLEImageFilter``, with each observer's sensitivity and
  specificity) and :func:`majority_vote` consensus masks.
- :func:`run_study`: all of the above for every lesion, features of every observer's mask
  (:func:`RadiomicsLabLib.extraction.extract_masks`, the same settings for all) and per-feature
  reproducibility (:mod:`RadiomicsLabLib.reproducibility`: ICC, CCC, CV, robust features).
- Files: :func:`load_lesion` and :func:`file_lesion` (one lesion), :func:`read_observer_cohort` and
  :func:`batch_cohort` (a cohort CSV, every problem at once) and the per-lesion batch task
  (:func:`observers_task`); the study's output files are written by
  :func:`RadiomicsLabLib.observers_outputs.write_observer_outputs`.

Surface distances: the surface of a mask is its voxels with at least one face neighbour outside
(voxels on the image border count as surface); the distance of a voxel to another observer's
surface is the Euclidean distance between voxel centres in mm
(``scipy.ndimage.distance_transform_edt`` with ``sampling`` = spacing; for boxes of millions of
voxels the same exact transform compiled with numba, :func:`squared_edt`). Everything is computed
inside the bounding box of the union of all observers' masks plus one voxel, which is exact:
every surface voxel lies inside it. The Hausdorff distance is therefore between surfaces, like
HD95 and MSD; SimpleITK's ``HausdorffDistanceImageFilter`` measures between the voxel sets (a voxel
inside the other mask is 0 away), which gives the same value unless one surface runs inside the
other mask (a notch), where the surface distance is the larger.
"""

import csv
import io
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numba import prange
from scipy import ndimage

from .errors import RadiomicsLabError
from .jit import njit
from .validation import check_mask_is_label_map, grid_differences, labels_present, match_mask_to_image

#: Columns of one pair's agreement row (see :func:`agreement`).
PAIR_COLUMNS = ("lesion", "observer_a", "observer_b", "comparison", "dice", "jaccard", "volume_a_mm3", "volume_b_mm3",
                "volume_difference_mm3", "abs_volume_difference_mm3", "volume_difference_pct",
                "hausdorff_mm", "hd95_mm", "msd_mm")
#: Metrics summarised over all pairs of a lesion.
SUMMARY_METRICS = ("dice", "jaccard", "abs_volume_difference_mm3", "volume_difference_pct",
                   "hausdorff_mm", "hd95_mm", "msd_mm")
#: Columns of the per-lesion summary (:func:`summary_rows`) and of STAPLE's observer performance (:func:`staple_rows`).
SUMMARY_COLUMNS = ("lesion", "metric", "n_pairs", "mean", "sd", "min", "max")
STAPLE_COLUMNS = ("lesion", "observer", "sensitivity", "specificity", "iterations")
#: Boxes of more voxels than this use the compiled distance transform (:func:`squared_edt`) instead of
#: scipy's: the same exact distances, several times faster on organ-sized masks.
COMPILED_EDT_VOXELS = 4_000_000
#: STAPLE consensus: voxels whose estimated probability of being foreground is at least this.
STAPLE_THRESHOLD = 0.5


@dataclass
class Lesion:
    """One lesion: the image, every observer's 0/1 UInt8 mask on its grid, and what was done to the inputs.

    ``readers`` maps observer -> reader: pairs of the same reader are intra-observer comparisons
    (repeated readings), the others inter-observer. ``images`` maps observer -> the image its
    features are read from when that is not ``image`` (an image-noise perturbation).
    """

    name: str
    image: sitk.Image
    masks: dict
    readers: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    perturbations: list = field(default_factory=list)

    @property
    def observers(self) -> list[str]:
        return list(self.masks)

    def image_of(self, observer: str) -> sitk.Image:
        return self.images.get(observer, self.image)


def make_lesion(name: str, image: sitk.Image, masks, label: int | None = None, strict: bool = False,
                readers: dict | None = None, min_observers: int = 2) -> Lesion:
    """Check one lesion's observer masks and put them on the image grid as 0/1 UInt8 masks.

    ``masks``: (observer name, label map) pairs in order (or a dict). A mask on another grid than
    the image is resampled onto it with nearest-neighbour interpolation and a note says so, or
    refused when ``strict``. ``label`` picks one label value; without it a mask must hold a single
    label. Raises :class:`RadiomicsLabError` for fewer than ``min_observers`` observers, repeated
    names, an observer with several labels, and an empty observer mask (naming the observer).
    """
    pairs = list(masks.items()) if isinstance(masks, dict) else list(masks)
    where = f" of lesion '{name}'" if name else ""
    check_observer_count(name, [n for n, _ in pairs], min_observers)
    names = [str(n) for n, _ in pairs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RadiomicsLabError(f"Observer name {', '.join(repeated)} is used twice{where.replace(' of ', ' in ', 1)}; "
                                "give each observer its own name (--names).")
    lesion = Lesion(name, image, {}, dict(readers or {}))
    for observer, mask in zip(names, (m for _, m in pairs)):
        what = f"mask of observer '{observer}'{where}"
        mask = check_mask_is_label_map(mask, where=what)
        differences = grid_differences(image, mask)
        if differences:
            if differences[0].startswith("dimension") or strict:
                hint = "resample it onto the image grid first" if strict else "give a mask of the image's dimension"
                again = " or leave out --strict (strict=False) to resample with nearest neighbour." if strict else "."
                raise RadiomicsLabError(f"The {what} is on another grid than the image: {'; '.join(differences)}; {hint}{again}")
            lesion.notes.append(f"The {what} was on another grid ({'; '.join(differences)}); "
                                "resampled onto the image grid with nearest-neighbour interpolation.")
        mask = match_mask_to_image(image, mask, resample_mask=True)
        present = labels_present(mask)
        if label is None and len(present) > 1:
            raise RadiomicsLabError(f"The {what} has labels {', '.join(map(str, present))}; "
                                    "choose the lesion's label with --label (label=...).")
        chosen = label if label is not None else (present[0] if present else 1)
        binary = sitk.Cast(mask == chosen, sitk.sitkUInt8)
        if not np.any(sitk.GetArrayViewFromImage(binary)):
            detail = f"no voxels with label {label}" if label is not None else "no non-zero voxels"
            resampled = " after resampling onto the image grid" if differences else ""
            raise RadiomicsLabError(f"The {what} is empty ({detail}{resampled}); give that observer's segmentation of the lesion.")
        lesion.masks[observer] = binary
    return lesion


def check_observer_count(name: str, observers, min_observers: int = 2):
    """Raise a :class:`RadiomicsLabError` when lesion ``name`` has fewer than ``min_observers`` observers."""
    if len(observers) < min_observers:
        where = f" of lesion '{name}'" if name else ""
        raise RadiomicsLabError(
            f"Agreement needs at least {min_observers} observers{where}; got {len(observers)} "
            f"({', '.join(map(str, observers)) or 'none'}). "
            "Give another observer's mask, or use perturbations (--perturb) to make synthetic observers from one mask."
        )


def load_lesion(name: str, image, observers, label: int | None = None, strict: bool = False,
                min_observers: int = 2, rois: dict | None = None) -> Lesion:
    """Read a lesion from files: ``image`` (a path or an image) and ``observers`` as (name, mask path, reader)
    triples, checked by :func:`make_lesion`.

    A mask may be a DICOM RTSTRUCT or SEG when ``image`` is the path of the DICOM series folder it was drawn on:
    the observer's mask is its ROI ``rois[observer]``, else the file's only ROI, else the ROI named like the
    observer (:func:`RadiomicsLabLib.dicom.masks.read_masks`; several observers may be ROIs of one file).
    """
    from .dicom.masks import read_masks
    from .imageio import read_image

    folder = None if isinstance(image, sitk.Image) else image
    if folder is not None:
        image = read_image(folder, "image")
    rois = rois or {}
    read = read_masks([(f"mask of observer '{observer}'", mask, rois.get(observer), observer)
                       for observer, mask, _ in observers], folder)
    masks = [(observer, mask) for (observer, _, _), mask in zip(observers, read)]
    readers = {observer: reader for observer, _, reader in observers}
    return make_lesion(name, image, masks, label, strict, readers, min_observers)


# Agreement ----------------------------------------------------------------------------------------
@dataclass
class Agreement:
    """Pairwise agreement of one lesion's observers (:data:`PAIR_COLUMNS` rows), its summary and GCI."""

    pairs: list
    summary: dict
    generalised_conformity: float


def array_spacing(image: sitk.Image) -> tuple:
    """Voxel spacing in numpy (z, y, x) axis order, matching ``sitk.GetArrayViewFromImage``."""
    return tuple(image.GetSpacing()[::-1])


def union_box(arrays, margin: int = 1) -> tuple:
    """Slices of the bounding box of the union of boolean ``arrays``, grown by ``margin`` voxels, clipped to the array."""
    union = np.logical_or.reduce(list(arrays))
    box = []
    for axis in range(union.ndim):
        hits = np.flatnonzero(np.any(union, axis=tuple(a for a in range(union.ndim) if a != axis)))
        if hits.size == 0:
            return tuple(slice(0, 0) for _ in range(union.ndim))
        box.append(slice(max(hits[0] - margin, 0), min(hits[-1] + margin + 1, union.shape[axis])))
    return tuple(box)


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: mask voxels with a face neighbour outside the mask (outside the array counts as outside).

    ``mask & ~erode(mask)`` with the face-connected structuring element; the same voxels as
    ITK's ``LabelContourImageFilter`` with ``fullyConnected=False``.
    """
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=0)


def directed_surface_distances(masks: dict, spacing) -> dict:
    """(a, b) -> distances (mm) from each surface voxel of ``masks[a]`` to the nearest surface voxel of ``masks[b]``.

    One Euclidean distance transform per observer: d_b = EDT(not surface_b, sampling=spacing),
    read at the surface voxels of every other observer. ``masks`` are boolean arrays on one grid.
    """
    surfaces = {name: surface(mask) for name, mask in masks.items()}
    indices = {name: np.flatnonzero(s) for name, s in surfaces.items()}
    distances = {}
    for b, surface_b in surfaces.items():
        to_b = distance_to(surface_b, spacing).ravel()
        for a in masks:
            if a != b:
                distances[a, b] = to_b[indices[a]]
    return distances


def distance_to(feature: np.ndarray, spacing) -> np.ndarray:
    """Euclidean distance (mm) from every voxel to the nearest ``True`` voxel of ``feature`` (inf when there is none).

    ``scipy.ndimage.distance_transform_edt(~feature, sampling=spacing)``; arrays of more than
    :data:`COMPILED_EDT_VOXELS` voxels use :func:`squared_edt` (same distances, parallel, compiled).
    """
    if feature.size <= COMPILED_EDT_VOXELS or feature.ndim > 3:
        return ndimage.distance_transform_edt(~feature, sampling=spacing) if feature.any() else np.full(feature.shape, np.inf)
    lead = (1,) * (3 - feature.ndim)
    squared = squared_edt(np.where(feature, 0.0, np.inf).reshape(lead + feature.shape), *((1.0,) * len(lead) + tuple(spacing)))
    return np.sqrt(squared).reshape(feature.shape)


@njit(cache=True)
def _lower_envelope(f, step, out, v, z):
    """out[i] = min over j with finite f[j] of f[j] + (step (i - j))^2: the lower envelope of parabolas
    (Felzenszwalb & Huttenlocher 2012, "Distance transforms of sampled functions"); all inf when f is."""
    n = f.shape[0]
    s2 = step * step
    k = -1
    for q in range(n):
        if f[q] == np.inf:
            continue
        if k < 0:
            k = 0
            v[0], z[0], z[1] = q, -np.inf, np.inf
            continue
        while True:
            p = v[k]
            x = ((f[q] + s2 * q * q) - (f[p] + s2 * p * p)) / (2.0 * s2 * (q - p))
            if x > z[k]:
                break
            k -= 1
        k += 1
        v[k], z[k], z[k + 1] = q, x, np.inf
    if k < 0:
        out[:] = np.inf
        return
    k = 0
    for i in range(n):
        while z[k + 1] < i:
            k += 1
        out[i] = s2 * (i - v[k]) * (i - v[k]) + f[v[k]]


@njit(parallel=True, cache=True)
def squared_edt(f, sz, sy, sx):
    """Exact squared Euclidean distance transform, in place: f = 0 at feature voxels, inf elsewhere, (z, y, x)
    with spacing (sz, sy, sx); one 1D lower-envelope pass along x, then y, then z (separability)."""
    nz, ny, nx = f.shape
    for t in prange(nz * ny):
        a, b = t // ny, t % ny
        out = np.empty(nx)
        _lower_envelope(f[a, b, :].copy(), sx, out, np.empty(nx, np.int64), np.empty(nx + 1))
        f[a, b, :] = out
    for t in prange(nz * nx):
        a, b = t // nx, t % nx
        out = np.empty(ny)
        _lower_envelope(f[a, :, b].copy(), sy, out, np.empty(ny, np.int64), np.empty(ny + 1))
        f[a, :, b] = out
    for t in prange(ny * nx):
        a, b = t // nx, t % nx
        out = np.empty(nz)
        _lower_envelope(f[:, a, b].copy(), sz, out, np.empty(nz, np.int64), np.empty(nz + 1))
        f[:, a, b] = out
    return f


def pair_metrics(a: np.ndarray, b: np.ndarray, d_ab: np.ndarray, d_ba: np.ndarray, voxel_volume: float) -> dict:
    """Overlap, volume and surface-distance metrics of masks ``a`` and ``b`` (boolean arrays on one grid).

    Dice = 2|A n B| / (|A| + |B|); Jaccard = |A n B| / |A u B|; volume difference = V_a - V_b (mm^3),
    in % of the pair's mean volume (= 100 x SimpleITK's VolumeSimilarity); Hausdorff =
    max(max d_ab, max d_ba); HD95 = max of the two directed 95th percentiles (linear
    interpolation; as MONAI); MSD = (sum d_ab + sum d_ba) / (|S_a| + |S_b|), the mean symmetric
    (average symmetric) surface distance of Heimann et al. 2009.
    """
    n_a, n_b = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    both = int(np.count_nonzero(a & b))
    v_a, v_b = n_a * voxel_volume, n_b * voxel_volume
    return {
        "dice": 2.0 * both / (n_a + n_b),
        "jaccard": both / (n_a + n_b - both),
        "volume_a_mm3": v_a,
        "volume_b_mm3": v_b,
        "volume_difference_mm3": v_a - v_b,
        "abs_volume_difference_mm3": abs(v_a - v_b),
        "volume_difference_pct": 100.0 * (n_a - n_b) / ((n_a + n_b) / 2.0),
        "hausdorff_mm": float(max(d_ab.max(), d_ba.max())),
        "hd95_mm": float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))),
        "msd_mm": float((d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size)),
    }


def agreement(lesion: Lesion) -> Agreement:
    """Agreement of every pair of ``lesion``'s observers (in observer order), its summary and the GCI."""
    arrays = {name: sitk.GetArrayViewFromImage(mask).astype(bool) for name, mask in lesion.masks.items()}
    box = union_box(arrays.values())
    cropped = {name: np.ascontiguousarray(array[box]) for name, array in arrays.items()}
    spacing = array_spacing(lesion.image)
    distances = directed_surface_distances(cropped, spacing)
    voxel_volume = float(np.prod(spacing))
    pairs = []
    for a, b in itertools.combinations(cropped, 2):
        reader_a, reader_b = lesion.readers.get(a, a), lesion.readers.get(b, b)
        metrics = pair_metrics(cropped[a], cropped[b], distances[a, b], distances[b, a], voxel_volume)
        pairs.append({"lesion": lesion.name, "observer_a": a, "observer_b": b,
                      "comparison": "intra-observer" if reader_a == reader_b else "inter-observer", **metrics})
    return Agreement(pairs, summarise_pairs(pairs), generalised_conformity(list(cropped.values())))


def summarise_pairs(pairs: list) -> dict:
    """metric -> {n_pairs, mean, sd, min, max} over pairs (SD with n - 1; NaN for one pair)."""
    summary = {}
    for metric in SUMMARY_METRICS:
        values = np.array([p[metric] for p in pairs], dtype=float)
        summary[metric] = {"n_pairs": len(values), "mean": float(values.mean()),
                           "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                           "min": float(values.min()), "max": float(values.max())}
    return summary


def generalised_conformity(masks: list) -> float:
    """Generalised conformity index over all observers (Kouwenhoven et al. 2009).

    CI_gen = sum over pairs |A_i n A_j| / sum over pairs |A_i u A_j|; equals Jaccard for two observers.
    """
    intersections = unions = 0
    for a, b in itertools.combinations(masks, 2):
        both = int(np.count_nonzero(a & b))
        intersections += both
        unions += int(np.count_nonzero(a)) + int(np.count_nonzero(b)) - both
    return intersections / unions


def volume_bland_altman(pairs: list) -> dict:
    """Bland-Altman of observer volumes over ``pairs``: per pair mean (V_a + V_b)/2 and difference V_a - V_b;
    bias = mean difference, limits of agreement = bias -/+ 1.96 SD (SD with n - 1; NaN for one pair)."""
    mean = np.array([(p["volume_a_mm3"] + p["volume_b_mm3"]) / 2 for p in pairs])
    difference = np.array([p["volume_difference_mm3"] for p in pairs])
    bias = float(difference.mean())
    sd = float(difference.std(ddof=1)) if len(difference) > 1 else math.nan
    return {"mean_mm3": mean, "difference_mm3": difference, "bias_mm3": bias, "sd_mm3": sd,
            "lower_mm3": bias - 1.96 * sd, "upper_mm3": bias + 1.96 * sd}


# Consensus ----------------------------------------------------------------------------------------
@dataclass
class Staple:
    """STAPLE result: foreground probability, consensus mask (probability >= threshold), per-observer performance."""

    probability: sitk.Image
    consensus: sitk.Image
    sensitivity: dict
    specificity: dict
    iterations: int
    threshold: float


def staple(masks: dict, threshold: float = STAPLE_THRESHOLD, max_iterations: int | None = None,
           confidence_weight: float = 1.0) -> Staple:
    """STAPLE (Warfield, Zou & Wells 2004) with SimpleITK's ``STAPLEImageFilter`` over the whole grid.

    Each observer's sensitivity p_j and specificity q_j and the foreground probability W are
    estimated by expectation-maximisation; the consensus is W >= ``threshold`` (0.5).
    ``masks``: observer -> 0/1 mask, all on one grid.
    """
    names = list(masks)
    stapler = sitk.STAPLEImageFilter()
    stapler.SetForegroundValue(1.0)
    stapler.SetConfidenceWeight(confidence_weight)
    if max_iterations is not None:
        stapler.SetMaximumIterations(max_iterations)
    probability = stapler.Execute([sitk.Cast(masks[n], sitk.sitkUInt8) for n in names])
    consensus = sitk.Cast(probability >= threshold, sitk.sitkUInt8)
    return Staple(probability, consensus, dict(zip(names, stapler.GetSensitivity())),
                  dict(zip(names, stapler.GetSpecificity())), stapler.GetElapsedIterations(), threshold)


def majority_vote(masks: dict) -> sitk.Image:
    """Voxels marked by more than half of the observers (a tie with an even count is background).

    Equals ITK's ``LabelVotingImageFilter`` on 0/1 masks with the undecided label 0.
    """
    masks = list(masks.values())
    votes = np.zeros(sitk.GetArrayViewFromImage(masks[0]).shape, dtype=np.uint16)
    for mask in masks:
        votes += sitk.GetArrayViewFromImage(mask).astype(bool)
    consensus = sitk.GetImageFromArray((2 * votes > len(masks)).astype(np.uint8))
    consensus.CopyInformation(masks[0])
    return consensus


# Result tables ------------------------------------------------------------------------------------
def dice_matrix(pairs: list) -> list[dict]:
    """Rows of the observer x observer Dice matrix (mean over lesions when there are several; 1 on the diagonal)."""
    observers = list(dict.fromkeys(o for p in pairs for o in (p["observer_a"], p["observer_b"])))
    sums = {}
    for p in pairs:
        for key in ((p["observer_a"], p["observer_b"]), (p["observer_b"], p["observer_a"])):
            sums.setdefault(key, []).append(p["dice"])
    return [{"observer": a, **{b: 1.0 if a == b else sum(sums.get((a, b), [math.nan])) / len(sums.get((a, b), [1]))
                               for b in observers}} for a in observers]


def summary_rows(study) -> list[dict]:
    """Per lesion: each metric's mean, SD, min, max over pairs, and the generalised conformity index."""
    rows = []
    for result in study.lesions:
        for metric, stats in result.agreement.summary.items():
            rows.append({"lesion": result.lesion.name, "metric": metric, **stats})
        gci = result.agreement.generalised_conformity
        rows.append({"lesion": result.lesion.name, "metric": "generalised_conformity_index",
                     "n_pairs": len(result.agreement.pairs), "mean": gci, "sd": math.nan, "min": gci, "max": gci})
    return rows


def staple_rows(study) -> list[dict]:
    """Per lesion and observer: STAPLE's estimated sensitivity and specificity."""
    return [{"lesion": r.lesion.name, "observer": o, "sensitivity": r.staple.sensitivity[o],
             "specificity": r.staple.specificity[o], "iterations": r.staple.iterations}
            for r in study.lesions for o in r.lesion.observers]


# The whole workflow ------------------------------------------------------------------------------
@dataclass
class LesionResult:
    """What :func:`run_study` found for one lesion."""

    lesion: Lesion
    agreement: Agreement
    staple: Staple
    majority: sitk.Image


@dataclass
class StudyResult:
    """Every lesion's agreement and consensus, the features of every observer, and their reproducibility."""

    lesions: list
    features: list = field(default_factory=list)
    reproducibility: object = None
    provenance: list = field(default_factory=list)

    @property
    def pairs(self) -> list:
        return [pair for result in self.lesions for pair in result.agreement.pairs]

    @property
    def notes(self) -> list:
        notes = [note for result in self.lesions for note in result.lesion.notes]
        return notes + (list(self.reproducibility.notes) if self.reproducibility is not None else [])


def run_study(lesions: list, settings=None, features: bool = True, rule: str | None = None,
              icc_type: str | None = None, progress=None) -> StudyResult:
    """Agreement, STAPLE and majority vote for every lesion; with ``features``, the features of every
    observer's mask (one settings for all) and their reproducibility over the lesions.

    ``settings``: anything :func:`~RadiomicsLabLib.settings.load_settings` accepts; ``rule``: the
    robust-feature rule (default lower 95 % CI bound of ICC(2,1) >= 0.75);
    ``progress(done, total, message)`` returning ``False`` cancels
    (:class:`~RadiomicsLabLib.extraction.ExtractionCancelled`, nothing is returned).
    """
    from .extraction import ExtractionCancelled, prepare_inputs
    from .reproducibility import DEFAULT_RULE, check_observer_sets, parse_rule
    from .settings import load_settings

    settings = load_settings(settings) if features else None
    rule = parse_rule(rule or DEFAULT_RULE)
    total = sum(1 + (len(lesion.masks) if features else 0) for lesion in lesions)
    done = 0

    def step(message):
        nonlocal done
        done += 1
        if progress and progress(done, total, message) is False:
            raise ExtractionCancelled(f"Observer analysis cancelled after {done} of {total} steps; nothing was written.")

    if features:  # every check before any work
        check_observer_sets({lesion.name: lesion.observers for lesion in lesions})
        for lesion in lesions:
            for observer, mask in lesion.masks.items():
                prepare_inputs(lesion.image_of(observer), mask, {f"{lesion.name}/{observer}": 1})
    results, values, provenance = [], [], []
    for lesion in lesions:
        result, lesion_values, lesion_provenance = study_lesion(lesion, settings, features, step)
        results.append(result)
        values += lesion_values
        provenance += lesion_provenance
    study = StudyResult(results, values, None, provenance)
    if features:
        study.reproducibility = study_reproducibility(values, rule, icc_type)
    return study


def observer_study(lesions: list, settings=None, features: bool = True, rule: str | None = None,
                   icc_type: str | None = None, perturbations=None, seed: int = 0, progress=None) -> StudyResult:
    """:func:`run_study` after adding each lesion's synthetic observers: ``perturbations`` (a list of
    :class:`~RadiomicsLabLib.perturbation.Perturbation`, e.g. from
    :func:`~RadiomicsLabLib.perturbation.perturbation_plan`) applied to its first observer, reproducible from
    ``seed``. The whole computation of :meth:`RadiomicsLabLib.mrml.observers.ObserverLogic.run` (its job computes it,
    in a worker process under :class:`~RadiomicsLabLib.background.BackgroundRun`, and keeps what the scene reads:
    :func:`~RadiomicsLabLib.mrml.observers.observer_study_for_the_scene`); the given lesions are left as they are (the
    perturbed observers are added to copies)."""
    import dataclasses

    from .perturbation import perturb_lesion

    if perturbations:
        lesions = [perturb_lesion(dataclasses.replace(lesion, masks=dict(lesion.masks), images=dict(lesion.images),
                                                      notes=list(lesion.notes), perturbations=list(lesion.perturbations)),
                                  perturbations, seed) for lesion in lesions]
    return run_study(lesions, settings, features, rule, icc_type, progress)


def study_lesion(lesion: Lesion, settings=None, features: bool = True, step=None) -> tuple:
    """One lesion's part of :func:`run_study`: (:class:`LesionResult`, [(lesion name, FeatureValue)],
    [extraction provenance per observer]); ``step(message)`` after each part."""
    from .extraction import extract_masks

    step = step or (lambda message: None)
    result = LesionResult(lesion, agreement(lesion), staple(lesion.masks), majority_vote(lesion.masks))
    step(f"{lesion.name}: agreement and consensus")
    values, provenance = [], []
    for observer, mask in lesion.masks.items() if features else ():
        extracted = extract_masks(lesion.image_of(observer), [(observer, mask, 1)], settings)
        values += [(lesion.name, v) for v in extracted.values]
        provenance.append({"lesion": lesion.name, "observer": observer, **extracted.provenance})
        step(f"{lesion.name}: features of {observer}")
    return result, values, provenance


def study_reproducibility(values, rule=None, icc_type: str | None = None):
    """The cross-lesion part of :func:`run_study`: ICC, CCC, CV and robust features of ``values``
    ((lesion name, FeatureValue) pairs; every lesion with the same observers)."""
    from .reproducibility import DEFAULT_ICC_TYPE, DEFAULT_RULE, check_observer_sets, feature_reproducibility

    observers = {}
    for name, value in values:
        observers.setdefault(name, {})[value.segment] = None
    check_observer_sets({name: list(seen) for name, seen in observers.items()})
    records = [(name, v.segment, v.feature, v.value) for name, v in values]
    return feature_reproducibility(records, rule=rule or DEFAULT_RULE, icc_type=icc_type or DEFAULT_ICC_TYPE)


# Cohort mode on the batch layer -------------------------------------------------------------------
#: Each lesion's consensus masks (in the output folder for one lesion, else in its ``<lesion>/`` folder).
CONSENSUS_FILES = {"staple": "consensus_staple.nrrd", "majority": "consensus_majority.nrrd"}
#: Name of the per-lesion task of ``radiomicslab observers --cohort`` (:mod:`RadiomicsLabLib.batch`).
TASK_NAME = "observers"


#: Columns of a cohort file: the batch layer's (id = lesion; optional observer, label) or the older lesion,observer,...
COHORT_COLUMNS = ("id", "image", "mask")
OLD_COHORT_COLUMNS = ("lesion", "observer", "image", "mask")


def file_stem(path) -> str:
    """A file's name without extensions: ``reader1.seg.nrrd`` -> ``reader1`` (an observer's default name)."""
    return Path(path).name.split(".")[0] or Path(path).name


def observer_name(case) -> str:
    """A cohort case's observer: its ``observer`` column, else its mask file's name without extensions."""
    return case.observer or file_stem(case.mask)


def file_lesion(image, masks, names=None, readers=None, name: str | None = None, where: str = "") -> dict:
    """A lesion read from files, as :func:`read_observer_cohort` gives each: ``{"name", "image", "where", "label",
    "observers": [(observer, mask path, reader)]}``; observers named after their files and each its own reader
    unless ``names`` / ``readers`` (in mask order) say otherwise; the lesion named after the image unless ``name``."""
    names = list(names or [file_stem(m) for m in masks])
    readers = list(readers or names)
    return {"name": name or file_stem(image), "image": Path(image), "where": where, "label": None,
            "observers": [(n, Path(m), r) for n, m, r in zip(names, masks, readers)]}


def cohort_rows(path: Path) -> tuple[list, list]:
    """(lower-case header, rows as dicts) of a cohort CSV (``,`` ``;`` or tab separated, as read_cohort reads it);
    each row also has ``_line``, its line in the file (as read_cohort numbers rows)."""
    if not path.is_file():
        raise RadiomicsLabError(f"Cannot read cohort '{path}': no such file; check the path.")
    try:
        text = path.read_text(encoding="utf-8-sig")
        first = text.split("\n", 1)[0]
        reader = csv.reader(io.StringIO(text), delimiter=max(",;\t", key=first.count))
        header = [cell.strip().lower() for cell in next(reader, [])]
        rows = [{**dict(zip(header, cells)), "_line": reader.line_num} for cells in reader
                if any(cell.strip() for cell in cells)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RadiomicsLabError(f"Cannot read cohort '{path}': {error}") from None
    return header, rows


def read_observer_cohort(path: Path, min_observers: int = 2, synthetic=None) -> tuple[list[dict], list]:
    """(lesions, problems) of a cohort CSV: lesions in first-seen order, columns id (the lesion), image, mask,
    optional observer (default: the mask's file name), reader, label; or the older lesion, observer, image, mask
    (optional reader, label).

    Problems (:class:`~RadiomicsLabLib.cohort.CohortProblem`, each with its row or a lesion's rows): a row without
    its observer (older format), a lesion with two images or two labels, a lesion name that cannot name a folder,
    fewer than ``min_observers`` observers, and, when ``synthetic`` (the perturbed observers' names, for the ICCs)
    is given, a lesion whose observers differ from most lesions'. Empty cells and labels that are not whole numbers
    are left to :func:`RadiomicsLabLib.cohort.read_cohort`, which lists them too. Only a header without the columns
    (or no row at all) raises.
    """
    from collections import Counter

    from .cohort import CohortProblem, join_places
    
    header, rows = cohort_rows(path)
    columns = COHORT_COLUMNS if "id" in header else OLD_COHORT_COLUMNS
    missing = [c for c in columns if c not in header]
    if not rows or missing:
        raise RadiomicsLabError(f"Cohort '{path}' needs a header and rows with columns id,image,mask (optional observer, "
                                "reader, label) or lesion,observer,image,mask (optional reader, label)"
                                f"{'; missing ' + ', '.join(missing) if rows else '; it has no rows'}.")
    lesions, problems, places = {}, [], {}
    for row in rows:
        where, name = f"row {row['_line']}", (row.get(columns[0]) or "").strip()
        empty = [c for c in columns if not (row.get(c) or "").strip()]
        if empty:
            if empty == ["observer"]:
                problems.append(CohortProblem(where, "the observer is empty; give every row its observer", name))
            continue  # an empty id, image or mask: read_cohort lists it
        mask = path.parent / row["mask"].strip()
        observer = (row.get("observer") or "").strip() or file_stem(mask)
        image = (path.parent / row["image"].strip())
        lesion = lesions.setdefault(name, {"name": name, "image": image, "where": f"cohort '{path}'", "observers": [], "label": None})
        places.setdefault(name, []).append(where)
        if lesion["image"] != image:
            problems.append(CohortProblem(where, f"lesion '{name}' has two images ({lesion['image'].name}, {image.name}); "
                                                 "every observer of a lesion segments the same image", name))
            continue
        label = (row.get("label") or "").strip()
        if label:
            try:
                value = int(label)
            except ValueError:
                continue  # read_cohort lists it
            if lesion["label"] not in (None, value):
                problems.append(CohortProblem(where, f"lesion '{name}' has labels {lesion['label']} and {value}; every "
                                                     "observer of a lesion uses the same label", name))
                continue
            lesion["label"] = value
        lesion["observers"].append((observer, mask, (row.get("reader") or "").strip() or observer))
    specs = list(lesions.values())
    observer_sets = {s["name"]: [o for o, _, _ in s["observers"]] + list(synthetic or []) for s in specs}
    usual = Counter(frozenset(seen) for seen in observer_sets.values()).most_common(1)[0][0] if specs else frozenset()
    with_row_problems = {problem.case_id for problem in problems}  # their observer count says nothing more
    for spec in specs:
        name, where = spec["name"], join_places(places[spec["name"]])
        unusable = lesion_name_problem(name)
        if unusable:
            problems.append(CohortProblem(where, unusable, name))
        if name in with_row_problems:
            continue
        try:
            check_observer_count(name, [o for o, _, _ in spec["observers"]], min_observers)
        except RadiomicsLabError as error:
            problems.append(CohortProblem(where, str(error)[:1].lower() + str(error)[1:], name))
            continue
        seen = observer_sets[name]
        if synthetic is not None and set(seen) != usual:
            problems.append(CohortProblem(where, f"lesion '{name}' has the observers {', '.join(seen)}, the others "
                                                 f"{', '.join(sorted(usual))}; the two-way ICCs need the same observers "
                                                 "for every lesion (name them alike)", name))
    return specs, problems


def batch_cohort(path: Path):
    """The cohort read and validated by :func:`RadiomicsLabLib.cohort.read_cohort` (every problem at once).

    A lesion,observer,... file is given to it as a temporary copy with ``id`` for ``lesion`` and absolute
    paths (each row on its own line, so problems name the file's rows).
    """
    import hashlib
    import tempfile

    from .cohort import read_cohort

    header, rows = cohort_rows(path)
    if "id" in header:
        return read_cohort(path, one_roi=True)
    with tempfile.TemporaryDirectory(prefix="radiomicslab-cohort-") as folder:
        copy = Path(folder) / path.name
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["id" if c == "lesion" else c for c in header])
        line = 1
        for row in rows:
            for _ in range(row["_line"] - line - 1):  # blank lines kept, so the copy's rows are the file's
                writer.writerow([""] * len(header))
            writer.writerow([str((path.parent / row[c].strip()).absolute()) if c in ("image", "mask") and row.get(c, "").strip()
                             else row.get(c, "") for c in header])
            line = row["_line"]
        copy.write_text(buffer.getvalue(), encoding="utf-8")
        cohort = read_cohort(copy, one_roi=True)
    cohort.source, cohort.source_sha256 = path.absolute(), hashlib.sha256(path.read_bytes()).hexdigest()
    return cohort


def lesion_name_problem(name: str) -> str | None:
    """Why a lesion name cannot name a folder, or None."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        return f"lesion name '{name}' cannot name a folder; use letters, digits, '.', '_' or '-'"
    return None


def check_lesion_names(specs):
    seen = set()
    for spec in specs:
        name = spec["name"]
        if lesion_name_problem(name):
            raise RadiomicsLabError(f"Lesion name '{name}' in {spec['where']} cannot name a folder; "
                                    "use letters, digits, '.', '_' or '-'.")
        if name in seen:
            raise RadiomicsLabError(f"Lesion name '{name}' is used twice; "
                                    "give each lesion its own name (--lesion, or the cohort's lesion column).")
        seen.add(name)


def load_lesions(specs, label, strict, min_observers) -> list:
    """Read every image and mask and check each lesion (all before any work)."""
    return [load_lesion(spec["name"], spec["image"], spec["observers"],
                        spec["label"] if spec["label"] is not None else label, strict, min_observers, spec.get("rois"))
            for spec in specs]


def observers_task(out_dir, settings=None, features: bool = True, label: int | None = None, strict: bool = False,
                   plan=(), seed: int = 0, readers: dict | None = None, single: bool = False):
    """The per-lesion :class:`~RadiomicsLabLib.batch.CaseTask` (``per_patient``: every row of one lesion id).

    Each lesion's consensus masks are written into ``out_dir`` (``out_dir/<lesion>/``, or ``out_dir``
    itself when ``single``), which the workers must be able to reach. ``readers``: lesion -> observer
    -> reader; ``plan``/``seed``: perturbations (synthetic observers). The fingerprint holds every
    option that changes a lesion's results (the ICC rule and type act after the batch, not here).
    """
    from .batch import CaseTask
    from .settings import load_settings

    settings = load_settings(settings) if features else None
    plan = list(plan)
    params = {"out_dir": str(Path(out_dir).absolute()), "settings": settings, "features": features, "label": label,
              "strict": strict, "plan": plan, "seed": seed, "readers": dict(readers or {}), "single": single}
    fingerprint = {"settings": {"engine": settings.engine, "params": settings.params} if features else None,
                   "features": features, "label": label, "strict": strict, "perturbations": [str(p) for p in plan],
                   "seed": seed if plan else None, "readers": params["readers"], "single": single}
    return CaseTask(TASK_NAME, lesion_case, params, fingerprint, per_patient=True)


def consensus_paths(out_dir, lesion: str, single: bool) -> dict:
    """``{"staple": path, "majority": path}`` of one lesion's consensus masks."""
    folder = Path(out_dir) if single else Path(out_dir) / lesion
    return {kind: folder / name for kind, name in CONSENSUS_FILES.items()}


def lesion_case(cases, params: dict):
    """Batch task of one lesion (all its cohort rows): load and check it, perturb it (seed from the master
    seed and the lesion's name), agreement, consensus (masks written atomically) and per-observer features.

    Rows: one per observer (``segment`` = observer, then its features); provenance: what
    :func:`study_from_records` needs to rebuild the lesion's results, and where they came from.
    """
    from .batch import CaseOutput
    from .fileio import write_image_atomic
    from .perturbation import perturb_lesion

    name, plan = cases[0].id, params["plan"]
    label = next((case.labels[0] for case in cases if case.labels), params["label"])
    readers = params["readers"].get(name, {})
    observers = [(observer_name(c), c.mask, readers.get(observer_name(c), observer_name(c))) for c in cases]
    lesion = load_lesion(name, cases[0].image, observers, label, params["strict"], 1 if plan else 2,
                         {observer_name(c): c.roi for c in cases if c.roi})
    if plan:
        perturb_lesion(lesion, plan, params["seed"])
    result, values, provenance = study_lesion(lesion, params["settings"], params["features"])
    paths = consensus_paths(params["out_dir"], name, params["single"])
    write_image_atomic(result.staple.consensus, paths["staple"])
    write_image_atomic(result.majority, paths["majority"])
    rows = [{"segment": observer} for observer in lesion.observers]
    for row in rows:
        row.update((v.feature, float(v.value)) for _, v in values if v.segment == row["segment"])
    first = next((v.segment for _, v in values), None)
    result_record = {
        "lesion": name, "observers": lesion.observers, "readers": {o: lesion.readers.get(o, o) for o in lesion.observers},
        "notes": lesion.notes, "perturbations": lesion.perturbations,
        "pairs": result.agreement.pairs, "summary": result.agreement.summary,
        "generalised_conformity": result.agreement.generalised_conformity,
        "staple": {"sensitivity": result.staple.sensitivity, "specificity": result.staple.specificity,
                   "iterations": result.staple.iterations, "threshold": result.staple.threshold},
        "features": [[v.image_type, v.feature_class, v.feature, v.ibsi_tag] for _, v in values if v.segment == first],
        "consensus": {kind: str(path) for kind, path in paths.items()},
    }
    return CaseOutput(rows, {"observers": result_record, "extraction": provenance})


def study_from_records(records, rule=None, icc_type: str | None = None, features: bool = True) -> StudyResult:
    """The :class:`StudyResult` of finished lesions from their batch records (``{"rows", "provenance"}``
    of :func:`lesion_case`, in cohort order): the same tables as :func:`run_study` on those lesions;
    the lesions carry no images (their consensus masks are already written)."""
    from .extraction import FeatureValue

    lesions, values, provenance = [], [], []
    for record in records:
        data = record["provenance"]["observers"]
        name = data["lesion"]
        lesion = Lesion(name, None, dict.fromkeys(data["observers"]), data["readers"], notes=data["notes"],
                        perturbations=data["perturbations"])
        found = Staple(None, None, data["staple"]["sensitivity"], data["staple"]["specificity"],
                       data["staple"]["iterations"], data["staple"]["threshold"])
        agreed = Agreement(data["pairs"], data["summary"], data["generalised_conformity"])
        lesions.append(LesionResult(lesion, agreed, found, None))
        for row in record["rows"] if features else ():
            values += [(name, FeatureValue(row["segment"], image_type, feature_class, feature, tag, row[feature]))
                       for image_type, feature_class, feature, tag in data["features"]]
        provenance += record["provenance"]["extraction"]
    study = StudyResult(lesions, values, None, provenance)
    if features:
        study.reproducibility = study_reproducibility(values, rule, icc_type)
    return study
