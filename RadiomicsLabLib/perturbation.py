"""Synthetic observers from one segmentation (MIRP-style perturbations), each reproducible from a seed.

When only one segmentation of a lesion exists, feature robustness is assessed on perturbed copies
of it (Zwanenburg et al. 2019, "Assessing robustness of radiomic features by image perturbation",
Sci Rep 9:614; the MIRP package). Each perturbation is written ``kind:key=value,key=value``:

- ``grow:mm=D`` dilates (D > 0) or erodes (D < 0) the mask by D mm with the voxel spacing
  (:func:`RadiomicsLabLib.regions.grow`'s definition): a voxel is added when its centre is within
  D mm of a mask voxel centre, removed when within |D| mm of a background voxel centre (beyond
  the grid counts as background). ``grow:fraction=F`` grows or shrinks the volume by the fraction
  F (e.g. -0.1): the distance whose result comes closest.
- ``supervoxels:volume=V,compactness=C`` (contour randomisation, as MIRP): the image within 10 mm
  of the mask is split into SLIC supervoxels of about V mm^3 (``skimage.segmentation.slic``); each
  supervoxel joins the new mask with probability equal to the fraction of it inside the original
  mask (details in :func:`_supervoxels`).
- ``deform:mm=A,smoothness=L`` (smooth random deformation): one white-noise field per axis (in mm),
  smoothed by a Gaussian of sigma L mm and scaled so the root-mean-square displacement over the
  box around the mask is A mm; the mask is resampled through it (linear interpolation, kept
  where >= 0.5).
- ``shift:mm=T`` (small rigid shift): the mask moved by T mm in a random direction (linear
  interpolation, kept where >= 0.5).
- ``noise:scale=s``: the image gets Gaussian noise of SD s x the image's own noise SD, estimated by
  the wavelet median absolute deviation (Donoho; ``skimage.restoration.estimate_sigma``); the mask
  is unchanged.

Every random draw comes from ``numpy.random.default_rng(seed)`` with the seed recorded, derived
from the plan's master seed, the lesion name and the perturbation's position, so any result can
be reproduced (and does not depend on the order of the lesions).
"""

import math
import zlib
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import RadiomicsLabError
from .regions import bounding_box, grow_array, signed_distance_mm

#: Each kind's parameters and defaults.
KINDS = {
    "grow": {"mm": None, "fraction": None},
    "supervoxels": {"volume": 500.0, "compactness": 0.05},
    "deform": {"mm": 2.0, "smoothness": 10.0},
    "shift": {"mm": 2.0},
    "noise": {"scale": 1.0},
}
#: ``--perturb`` without explicit perturbations.
DEFAULT_PLAN = ("grow:fraction=-0.1", "grow:fraction=0.1", "supervoxels", "deform:mm=2", "shift:mm=2", "noise:scale=1")


@dataclass(frozen=True)
class Perturbation:
    """One perturbation: its kind, all its parameters (defaults filled in) and its position in the plan."""

    kind: str
    params: tuple
    index: int

    @property
    def options(self) -> dict:
        return dict(self.params)

    @property
    def name(self) -> str:
        """Observer name of the perturbed copy: ``p<index>_<kind>``."""
        return f"p{self.index}_{self.kind}"

    def __str__(self):
        return f"{self.kind}:" + ",".join(f"{k}={v:g}" for k, v in self.params)


def parse_perturbation(spec: str, index: int = 1) -> Perturbation:
    """``"grow:mm=-1"`` -> :class:`Perturbation`; unknown kinds, keys and values are errors naming them."""
    kind, _, options = str(spec).strip().partition(":")
    if kind not in KINDS:
        raise RadiomicsLabError(f"Unknown perturbation '{kind}' in '{spec}'; choose one of {', '.join(KINDS)}.")
    params = dict(KINDS[kind])
    for option in filter(None, (o.strip() for o in options.split(","))):
        key, eq, value = option.partition("=")
        key = key.strip()
        if not eq or key not in params:
            raise RadiomicsLabError(f"Perturbation option '{option}' in '{spec}' is not one of "
                                    f"{', '.join(f'{k}=<number>' for k in params)}.")
        try:
            params[key] = float(value)
        except ValueError:
            raise RadiomicsLabError(f"Perturbation option '{option}' in '{spec}' needs a number.") from None
        if not math.isfinite(params[key]):
            raise RadiomicsLabError(f"Perturbation option '{option}' in '{spec}' needs a finite number.")
    if kind == "grow" and (params["mm"] is None) == (params["fraction"] is None):
        raise RadiomicsLabError(f"Perturbation '{spec}' needs exactly one of mm=<distance> or fraction=<volume fraction>.")
    if kind == "grow" and params["fraction"] is not None and params["fraction"] <= -1:
        raise RadiomicsLabError(f"Perturbation '{spec}': a volume fraction must be above -1.")
    positive = {"supervoxels": ("volume", "compactness"), "deform": ("smoothness",), "noise": ("scale",)}
    for key in positive.get(kind, ()):
        if params[key] <= 0:
            raise RadiomicsLabError(f"Perturbation '{spec}': {key} must be positive.")
    return Perturbation(kind, tuple((k, v) for k, v in params.items() if v is not None), index)


def perturbation_plan(specs=None) -> list[Perturbation]:
    """The perturbations to apply, numbered from 1 (default :data:`DEFAULT_PLAN`)."""
    return [parse_perturbation(spec, i) for i, spec in enumerate(specs or DEFAULT_PLAN, start=1)]


def perturbation_seed(master_seed: int, lesion: str, perturbation: Perturbation) -> int:
    """The seed of one perturbation of one lesion: SeedSequence(master, crc32(lesion), index)."""
    if int(master_seed) < 0:
        raise RadiomicsLabError(f"The perturbation seed must be 0 or more; got {master_seed}.")
    sequence = np.random.SeedSequence([int(master_seed), zlib.crc32(lesion.encode()), perturbation.index])
    return int(sequence.generate_state(1, np.uint32)[0])


def apply_perturbation(perturbation: Perturbation, image: sitk.Image, mask: sitk.Image, seed: int) -> tuple:
    """(image, 0/1 UInt8 mask, details) of one perturbation of ``mask`` (and, for noise, ``image``)."""
    array = sitk.GetArrayViewFromImage(mask).astype(bool)
    spacing = np.array(image.GetSpacing()[::-1])
    rng = np.random.default_rng(seed)
    options = perturbation.options
    details = {}
    if perturbation.kind == "noise":
        values = sitk.GetArrayFromImage(image).astype(np.float64)
        from skimage.restoration import estimate_sigma

        sigma = float(estimate_sigma(values, channel_axis=None))
        noisy = sitk.GetImageFromArray((values + rng.normal(0.0, options["scale"] * sigma, values.shape)).astype(np.float32))
        noisy.CopyInformation(image)
        details["estimated_noise_sd"] = sigma
        return noisy, sitk.Image(mask), details
    if perturbation.kind == "grow":
        new = _grow(mask, options, details)
    else:
        margin = {"supervoxels": 10.0, "deform": options.get("mm", 0) + 2 * spacing.max(),
                  "shift": options.get("mm", 0) + 2 * spacing.max()}[perturbation.kind]
        box = bounding_box(array, spacing, margin)
        crop = array[box]
        if perturbation.kind == "supervoxels":
            new_crop = _supervoxels(sitk.GetArrayViewFromImage(image)[box], crop, spacing, options, rng, details)
        elif perturbation.kind == "deform":
            new_crop = _deform(crop, spacing, options, rng, details)
        else:
            new_crop = _shift(crop, spacing, options, rng, details)
        new = np.zeros_like(array)
        new[box] = new_crop
    result = sitk.GetImageFromArray(new.astype(np.uint8))
    result.CopyInformation(mask)
    return image, result, details


def perturb_lesion(lesion, plan, seed: int = 0, source: str | None = None):
    """Add a perturbed copy of observer ``source``'s mask (default: the first) to ``lesion`` for each perturbation.

    The copies are observers named ``p<i>_<kind>``. Every perturbation is recorded in ``lesion.perturbations`` (kind, parameters,
    seed, voxel counts, Dice with the source, details). A copy that comes out empty is an error.
    """
    source = source or lesion.observers[0]
    image, mask = lesion.image_of(source), lesion.masks[source]
    original = sitk.GetArrayViewFromImage(mask).astype(bool)
    for perturbation in plan:
        name = perturbation.name
        if name in lesion.masks:
            raise RadiomicsLabError(f"Lesion '{lesion.name}' already has an observer named '{name}'; rename that observer.")
        used_seed = perturbation_seed(seed, lesion.name, perturbation)
        new_image, new_mask, details = apply_perturbation(perturbation, image, mask, used_seed)
        new = sitk.GetArrayViewFromImage(new_mask).astype(bool)
        if not new.any():
            raise RadiomicsLabError(f"Perturbation '{perturbation}' left nothing of the mask of lesion '{lesion.name}'; "
                                    "use a smaller erosion or shift.")
        lesion.masks[name] = new_mask
        if new_image is not image:
            lesion.images[name] = new_image
        dice = 2.0 * np.count_nonzero(original & new) / (np.count_nonzero(original) + np.count_nonzero(new))
        lesion.perturbations.append({
            "lesion": lesion.name, "observer": name, "source": source, "perturbation": str(perturbation),
            "kind": perturbation.kind, "parameters": perturbation.options, "master_seed": int(seed), "seed": used_seed,
            "voxels_source": int(np.count_nonzero(original)), "voxels": int(np.count_nonzero(new)),
            "dice_to_source": float(dice), "details": details,
        })
    return lesion


# The perturbations -----------------------------------------------------------------------------
def _grow(mask: sitk.Image, options: dict, details: dict) -> np.ndarray:
    """Dilation / erosion by a distance in mm (:func:`RadiomicsLabLib.regions.grow_array` of the signed
    distance map), or by the distance whose result comes closest to the requested volume fraction."""
    fraction = options.get("fraction")
    if fraction is None:
        distance = options["mm"]
        signed = signed_distance_mm(mask, limit_mm=max(distance, 0.0))
    else:
        inside = np.count_nonzero(sitk.GetArrayViewFromImage(mask))
        target = abs(fraction) * inside
        # Outside: only distances up to the limit are exact; it starts at an equivalent-sphere estimate.
        radius = (3 * inside * np.prod(mask.GetSpacing()) / (4 * math.pi)) ** (1 / 3)
        limit = 0.0 if fraction < 0 else 2 * radius * ((1 + fraction) ** (1 / 3) - 1) + max(mask.GetSpacing())
        while True:
            signed = signed_distance_mm(mask, limit_mm=limit)
            if fraction < 0:
                distance = -_closest_distance(-signed[signed < 0], target)
                break
            candidates = signed[(signed > 0) & (signed <= limit)]
            if candidates.size >= target or candidates.size == np.count_nonzero(signed > 0):
                distance = _closest_distance(candidates, target)
                break
            limit *= 2
    new = grow_array(signed, distance)
    details["distance_mm"] = float(distance)
    details["volume_fraction"] = float(np.count_nonzero(new) / np.count_nonzero(signed <= 0) - 1)
    return new


def _closest_distance(distances: np.ndarray, target: float) -> float:
    """The distance d (one of ``distances``) for which count(distances <= d) is closest to ``target``;
    0 (no change) when none comes closer than changing nothing."""
    values = np.sort(distances)
    if values.size == 0 or target <= 0:
        return 0.0
    unique = np.unique(values)
    counts = np.searchsorted(values, unique, side="right")
    best = int(np.argmin(np.abs(counts - target)))
    return float(unique[best]) if abs(counts[best] - target) < target else 0.0


def _supervoxels(image: np.ndarray, mask: np.ndarray, spacing: np.ndarray, options: dict, rng, details: dict) -> np.ndarray:
    """MIRP contour randomisation: SLIC supervoxels kept with probability = their overlap fraction with the mask.

    As MIRP: intensities clipped to the mask's range widened by 10 % on each side and scaled to
    [0, 1]; Gaussian pre-smoothing of sigma = the smallest spacing (mm); supervoxels of ``volume``
    mm^3 but at least 20 voxels; the supervoxel overlapping most and those >= 90 % inside are kept,
    those < 20 % inside dropped; holes closed by a binary closing.
    """
    from skimage.segmentation import slic

    values = np.asarray(image, dtype=np.float64)
    low, high = values[mask].min(), values[mask].max()
    low, high = low - 0.1 * (high - low), high + 0.1 * (high - low)
    scaled = (np.clip(values, low, high) - low) / (high - low) if high > low else np.zeros_like(values)
    voxels_per_segment = max(20.0, options["volume"] / float(np.prod(spacing)))
    labels = slic(scaled, n_segments=max(int(mask.size / voxels_per_segment), 2), compactness=options["compactness"],
                  sigma=float(spacing.min()), spacing=spacing, channel_axis=None, start_label=0, enforce_connectivity=True)
    size = np.bincount(labels.ravel())
    fraction = np.bincount(labels.ravel(), weights=mask.ravel(), minlength=size.size) / np.maximum(size, 1)
    fraction[np.argmax(fraction)] = 1.0
    fraction[fraction >= 0.9] = 1.0
    fraction[fraction < 0.2] = 0.0
    keep = rng.random(fraction.size) < fraction
    new = ndimage.binary_closing(keep[labels], ndimage.generate_binary_structure(mask.ndim, 1))
    details.update(supervoxels=int(size.size), supervoxels_kept=int(np.count_nonzero(keep)),
                   supervoxels_uncertain=int(np.count_nonzero((fraction > 0) & (fraction < 1))))
    return new


def _deform(mask: np.ndarray, spacing: np.ndarray, options: dict, rng, details: dict) -> np.ndarray:
    """Resample the mask through a smooth random displacement field whose RMS magnitude is ``mm``."""
    sigma = options["smoothness"] / spacing
    field_mm = np.stack([ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma, mode="reflect")
                         for _ in range(mask.ndim)])
    magnitude = np.sqrt((field_mm ** 2).sum(axis=0))
    rms = float(np.sqrt(np.mean(magnitude ** 2)))
    scale = options["mm"] / rms if rms > 0 else 0.0
    coordinates = np.indices(mask.shape, dtype=np.float64) + field_mm * scale / spacing.reshape((-1,) + (1,) * mask.ndim)
    details["rms_displacement_mm"] = float(rms * scale)
    details["largest_displacement_mm"] = float(magnitude.max() * scale)
    return ndimage.map_coordinates(mask.astype(np.float32), coordinates, order=1, mode="constant", cval=0.0) >= 0.5


def _shift(mask: np.ndarray, spacing: np.ndarray, options: dict, rng, details: dict) -> np.ndarray:
    """Move the mask by ``mm`` in a uniformly random direction (linear interpolation, threshold 0.5)."""
    direction = rng.standard_normal(mask.ndim)
    direction /= np.linalg.norm(direction)
    shift_mm = direction * options["mm"]
    details["shift_mm_zyx"] = [float(v) for v in shift_mm]
    return ndimage.shift(mask.astype(np.float32), shift_mm / spacing, order=1, mode="constant", cval=0.0) >= 0.5
