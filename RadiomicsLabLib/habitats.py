"""Habitats: subregions of a tumour with similar multi-channel behaviour, per patient or across a cohort.

Steps (each a function of its own, all usable alone):

1. Channels onto one grid (:func:`voxel_data`): every channel (a CT, an MR sequence, a PET, a
   voxel-wise feature map: any scalar SimpleITK image) is put on the ROI mask's grid, as it is
   (``registration="off"``: the grids must match), by resampling (``"resample"``: the images already
   share a physical space), or after registering it onto the first channel (``"rigid"``,
   ``"affine"``, ``"bspline"``; :mod:`RadiomicsLabLib.registration`, Mattes mutual information in
   the ROI grown by :data:`REGISTRATION_MARGIN_MM`). Optional extra channels: voxel-wise feature maps
   (:func:`feature_map_names`, :func:`feature_map_channels`) of a channel as it lies on the mask's grid,
   computed inside the ROI only, appended after the image channels.
2. Voxel features: the ROI's voxels as rows, channels as columns; NaN voxels refused, left out or
   filled with the channel's median; optional Gaussian smoothing inside the ROI (normalised
   convolution ``G*(x m) / G*m``, so voxels outside the ROI never leak in); per-channel
   normalisation inside the ROI (:class:`ChannelScaler`: z-score ``(x - mean) / sd``, or percentile
   scaling ``(x - P1) / (P99 - P1)``), per patient or with cohort statistics.
3. Clustering (:class:`HabitatClustering`, a scikit-learn estimator): k-means, Gaussian mixture, or
   Ward agglomerative clustering (on supervoxels, :func:`supervoxels`, so it scales); ``k`` given or
   chosen by silhouette, Calinski-Harabasz or BIC with every score kept. Habitats are ordered by
   their centre in one channel (the first by default) and named by their level in each channel,
   so habitat 1 is always the lowest in that channel, whatever ids the algorithm drew.
4. Population level (:func:`fit_habitats` with several patients): one model is fitted on voxels
   pooled from the cohort (at most ``max_samples``, an equal share per patient, so memory stays
   bounded) and applied to every patient, so habitat 2 means the same channel profile everywhere.
5. Clean-up (:func:`remove_islands`): connected pieces of a habitat smaller than a volume merge into
   the neighbouring habitat they share most faces with.

Cohorts on the batch layer (:mod:`RadiomicsLabLib.batch`, ``radiomicslab habitats --cohort``): the cohort
file is checked first, every problem with its row (:func:`habitat_cohort`); then three steps:

- per patient, one task each (:func:`data_task`, :func:`pool_case`): the patient's channels onto its mask's
  grid (resampling, registration, feature maps, smoothing, supervoxels: the expensive part) and the rows it
  brings to the pool, saved as ``DIR/cases/data/<patient>.npy``;
- once, in the main process (:func:`fit_pooled`): the equal share of every finished patient's rows, drawn
  in cohort order with ``seed`` exactly as :func:`fit_habitats` draws them, and the one population model
  fitted on the pool (it needs every patient's rows, so it is a single step, not a task);
- per patient again (:func:`label_task`, :func:`label_case`): the fitted model applied to the patient (its
  voxel data computed again in the worker), its label map written by the task
  (``DIR/<patient>/habitats.nrrd``) and, with feature settings, its per-habitat features; the task returns
  a :class:`HabitatSummary`, from which the tables, plots and provenance are written once
  (:func:`write_summaries`: the same bytes as :func:`write_outputs` after :func:`fit_habitats` in one process).

Both per-patient steps are resumable: a rerun skips what is done and still up to date (the labels of a
patient are redone when the fitted model changed, e.g. a patient was added to the cohort).
"""

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from .errors import Cancelled, RadiomicsLabError
from .regions import binary_mask, bounding_box, grow, image_on_grid, spacing_zyx
from .registration import KINDS as REGISTRATION_KINDS
from .registration import register, resample
from .validation import check_mask_is_label_map, grid_differences

METHODS = ("kmeans", "gmm", "agglomerative")
CRITERIA = ("silhouette", "calinski_harabasz", "bic")
NORMALISATIONS = ("zscore", "percentile", "none")
REGISTRATIONS = ("off", "resample", *REGISTRATION_KINDS)
NAN_POLICIES = ("error", "omit", "fill")
SCOPES = ("patient", "cohort")
#: Ward clustering builds a full distance tree: at most this many rows (sampled with the seed).
AGGLOMERATIVE_MAX_ROWS = 4000
#: Rows used for the silhouette score (it costs n^2).
SILHOUETTE_ROWS = 5000
#: With ``n_habitats="auto"`` each candidate k is fitted and scored on at most this many rows; the
#: chosen k is then fitted on all the sampled rows.
AUTO_ROWS = 20_000
#: The registration metric looks at the ROI grown by this much (mm).
REGISTRATION_MARGIN_MM = 20.0
#: Pass 1 keeps patients' voxel data for pass 2 while it holds fewer values than this.
CACHE_VALUES = 20_000_000
#: Threads for clustering and scoring (OpenMP / BLAS). The fits run on bounded samples, where one
#: thread loses little; more threads spin-wait on a busy machine and can be ten times slower.
THREADS = 1
#: Metadata key marking a feature-map channel on the mask's grid (value: its feature); a registration never moves it.
MAP_METADATA = "RadiomicsLab.FeatureMap"
#: Separator of a feature-map channel's name: ``<source channel>:<feature>``.
MAP_SEPARATOR = ":"
#: A standardised habitat centre below -LEVEL is "low" in that channel, above +LEVEL "high", else "mid".
LEVEL = 0.5
#: Colours by habitat id (1-based), RGB in 0..1 (Okabe-Ito colour-blind-safe palette, then Tableau).
PALETTE = [(0.902, 0.624, 0.0), (0.337, 0.706, 0.914), (0.0, 0.620, 0.451), (0.941, 0.894, 0.259),
           (0.0, 0.447, 0.698), (0.835, 0.369, 0.0), (0.800, 0.475, 0.655), (0.6, 0.6, 0.6),
           (0.580, 0.404, 0.741), (0.549, 0.337, 0.294), (0.737, 0.741, 0.133), (0.090, 0.745, 0.812)]


class HabitatsCancelled(Cancelled):
    """The user cancelled a running habitat computation; nothing was written."""


def habitat_colour(habitat: int) -> tuple:
    """RGB (0..1) of habitat ``habitat`` (1-based), the same in every patient, plot and segmentation."""
    return PALETTE[(habitat - 1) % len(PALETTE)]


# Inputs -----------------------------------------------------------------------------------------
@dataclass
class Patient:
    """One patient: an ROI mask and named channels (any scalar SimpleITK images, e.g. CT, MR, PET or a
    voxel-wise feature map). The ROI is ``mask != 0``, or ``mask == label``; outputs are on the mask's grid."""

    name: str
    mask: sitk.Image
    channels: dict
    label: int | None = None


@dataclass
class VoxelData:
    """The ROI voxels of one patient on the mask's grid, cropped to the ROI's box.

    ``raw``: channel values (n voxels x c channels) as resampled; ``values``: the clustering input
    before normalisation (``raw`` smoothed when asked); ``index``: (z, y, x) of each row in the box;
    ``box``: array slices of the box in the mask's grid; ``supervoxel``: supervoxel id of each row
    (filled by :meth:`HabitatModel.rows_of` when the model clusters supervoxels).
    """

    patient: str
    channels: list
    raw: np.ndarray
    values: np.ndarray
    index: np.ndarray
    box: tuple
    box_shape: tuple
    mask: sitk.Image
    roi_voxels: int
    omitted_voxels: int = 0
    registrations: dict = field(default_factory=dict)
    supervoxel: np.ndarray | None = None

    @property
    def spacing(self) -> tuple:
        return spacing_zyx(self.mask)

    @property
    def grid_index(self) -> np.ndarray:
        """(z, y, x) of each row in the mask's full grid."""
        return self.index + np.array([s.start for s in self.box])


def check_choice(value, choices, what: str) -> None:
    """Refuse ``value`` unless it is one of ``choices``, naming them."""
    if value not in choices:
        raise RadiomicsLabError(f"Unknown {what} '{value}'; choose one of {', '.join(map(str, choices))}.")


def voxel_data(patient: Patient, registration: str = "off", smoothing_mm: float = 0.0, nan_policy: str = "error",
               seed: int = 0, progress=None, feature_maps=None, map_radius: int = 1, map_definition: str = "ibsi",
               map_settings: dict | None = None) -> VoxelData:
    """Channels of ``patient`` on its mask's grid, as rows of ROI voxels (see :class:`VoxelData`).

    Checked before any work: the mask is a non-empty label map; each channel is a 3D scalar image;
    with ``registration="off"`` each channel is on the mask's grid; the feature maps asked for
    (:func:`feature_map_names`). Then: the ROI must lie inside every channel's field of view, NaN voxels
    follow ``nan_policy``, and every channel must vary inside the ROI (a constant channel carries no
    habitat information and cannot be normalised). Feature-map channels are computed once their source
    channel is on the mask's grid (:func:`_map_arrays`) and come after the image channels, in the order
    asked; a map voxel where the feature is undefined (NaN) follows ``nan_policy`` like any NaN voxel.
    """
    check_choice(registration, REGISTRATIONS, "registration")
    check_choice(nan_policy, NAN_POLICIES, "NaN policy")
    if not (smoothing_mm >= 0 and math.isfinite(smoothing_mm)):
        raise RadiomicsLabError(f"Smoothing must be 0 (none) or a positive, finite sigma in mm; got {smoothing_mm}.")
    who = f"patient '{patient.name}'"
    if not patient.channels:
        raise RadiomicsLabError(f"No channels for {who}; give at least one image (e.g. --channel CT=ct.nii.gz).")
    mask = check_mask_is_label_map(patient.mask, where=f"mask of {who}")
    if mask.GetDimension() != 3:
        raise RadiomicsLabError(f"The mask of {who} is {mask.GetDimension()}D; habitats need 3D images.")
    inside = binary_mask(mask, patient.label, f"mask of {who}")
    requests = feature_map_names(feature_maps, list(patient.channels), map_radius, map_definition, map_settings)
    for name, image in patient.channels.items():
        if not isinstance(image, sitk.Image) or image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
            raise RadiomicsLabError(f"Channel '{name}' of {who} is not a 3D scalar image.")
        if registration == "off":
            differences = grid_differences(mask, image)
            if differences:
                raise RadiomicsLabError(
                    f"Channel '{name}' of {who} is on a different grid from the mask: "
                    + "; ".join(d.replace("(image ", "(mask ").replace(", mask ", f", {name} ") for d in differences)
                    + ". If the images are already aligned in physical space use registration 'resample' "
                    "(--registration resample); to align them use 'rigid' or 'affine'.")
    spacing = spacing_zyx(mask)
    box = bounding_box(inside, spacing, 3 * smoothing_mm)
    roi = inside[box]
    arrays, registrations = _channels_on_box(patient, mask, box, registration, seed, progress)
    names = list(patient.channels)
    usable = roi.copy()
    defined = {}
    for name, array in zip(names, arrays):
        defined[name] = roi & np.isfinite(array)
        count = int(np.count_nonzero(roi & ~defined[name]))
        if not count:
            continue
        source = sitk.GetArrayViewFromImage(patient.channels[name])
        if registration != "off" and (not np.issubdtype(source.dtype, np.floating) or np.isfinite(source).all()):
            raise RadiomicsLabError(
                f"The ROI of {who} extends beyond channel '{name}''s field of view ({count} voxels); "
                "give an image that covers the whole ROI, or check the registration.")
        _apply_nan_policy(array, roi, usable, nan_policy, f"Channel '{name}' of {who}",
                          f"has {count} NaN or infinite voxel(s) inside the ROI; fix the image, ")
    if requests:
        maps = _map_arrays(patient, mask, box, registrations, defined, requests, map_radius, map_definition,
                           map_settings, progress)
        for name, array in maps.items():
            count = int(np.count_nonzero(roi & ~np.isfinite(array)))
            if count:
                _apply_nan_policy(array, roi, usable, nan_policy, f"Feature map '{name}' of {who}",
                                  f"is undefined (NaN) at {count} voxel(s) inside the ROI, where its kernel gives the feature "
                                  "no value (e.g. 0/0 on a flat kernel); make maps of another feature or radius, ")
        names += list(maps)
        arrays += list(maps.values())
    if not usable.any():
        raise RadiomicsLabError(f"Every ROI voxel of {who} has a NaN in some channel; nothing is left to cluster.")
    index = np.argwhere(usable)
    raw = np.stack([a[usable] for a in arrays], axis=1).astype(np.float64)
    for j, name in enumerate(names):
        if raw[:, j].min() == raw[:, j].max():
            check = ("check the map settings (e.g. a bin width wider than the channel's range in the ROI gives one grey "
                     "level)" if name in requests else "check the image")
            raise RadiomicsLabError(
                f"Channel '{name}' of {who} has no variance inside the ROI (every voxel is {raw[0, j]:g}); "
                f"it cannot separate habitats: remove it or {check}.")
    values = raw
    if smoothing_mm > 0:
        sigma = [smoothing_mm / s for s in spacing]
        weight = ndimage.gaussian_filter(usable.astype(np.float64), sigma, mode="constant")
        values = np.stack([ndimage.gaussian_filter(np.where(usable, a, 0.0), sigma, mode="constant")[usable]
                           for a in arrays], axis=1) / weight[usable][:, None]
    return VoxelData(patient.name, names, raw, values, index, box, roi.shape, mask, int(np.count_nonzero(roi)),
                     int(np.count_nonzero(roi & ~usable)), registrations)


def _apply_nan_policy(array: np.ndarray, roi: np.ndarray, usable: np.ndarray, nan_policy: str, what: str,
                      problem: str) -> None:
    """Apply ``nan_policy`` to the NaN voxels of one channel's box array inside the ROI, in place: refuse (``what``
    ``problem`` says why and what to do), leave them out of ``usable``, or fill them with the channel's median in the ROI."""
    bad = roi & ~np.isfinite(array)
    if nan_policy == "error":
        raise RadiomicsLabError(f"{what} {problem}or choose the NaN policy 'omit' (leave those voxels out) or 'fill' "
                                "(use the channel's median in the ROI).")
    if nan_policy == "fill":
        finite = array[roi & np.isfinite(array)]
        if finite.size == 0:
            raise RadiomicsLabError(f"{what} has no finite voxel inside the ROI; check the image.")
        array[bad] = np.median(finite)
    else:
        usable &= ~bad


def _channels_on_box(patient: Patient, mask: sitk.Image, box: tuple, registration: str, seed: int, progress):
    """Each channel's values (float64 arrays) on the box of the mask's grid, and its registration (or None).

    A feature-map channel (:data:`MAP_METADATA`, e.g. from :func:`feature_map_channels`) is never registered: on the
    mask's grid it is aligned with the channel it was made of and taken as it is; elsewhere a registration refuses it."""
    grid = mask[tuple(box[::-1])]  # SimpleITK slices in (x, y, z) order
    names = list(patient.channels)
    first = patient.channels[names[0]]
    region = None
    arrays, registrations = [], {}
    for i, name in enumerate(names):
        image = patient.channels[name]
        result = None
        on_grid = not grid_differences(mask, image)
        is_map = image.HasMetaDataKey(MAP_METADATA)
        if registration in REGISTRATION_KINDS and i > 0 and is_map and not on_grid:
            raise RadiomicsLabError(
                f"Feature-map channel '{name}' of patient '{patient.name}' is not on the mask's grid, and a map cannot be "
                f"registered by itself; ask for it as a map of its channel (feature_maps=['CHANNEL{MAP_SEPARATOR}FEATURE'], "
                "--feature-map CHANNEL:FEATURE): it is then made after that channel is registered.")
        if registration in REGISTRATION_KINDS and i > 0 and not is_map:
            if region is None:
                region = grow(mask, REGISTRATION_MARGIN_MM, patient.label)
            result = _register_channel(first, image, registration, region, seed)
        if result is None and on_grid:  # on the mask's grid: its voxels as they are
            array = sitk.GetArrayViewFromImage(image)[box].astype(np.float64)
        else:
            array = sitk.GetArrayFromImage(resample(image, grid, result.transform if result else None)).astype(np.float64)
        arrays.append(array)
        registrations[name] = result
        if progress and progress(i + 1, len(names), f"{patient.name}: channel {name}") is False:
            raise HabitatsCancelled("Habitats cancelled; nothing was written.")
    return arrays, registrations


def _register_channel(fixed: sitk.Image, moving: sitk.Image, kind: str, region: sitk.Image, seed: int):
    """Registration of a channel onto the first channel; B-spline starts from a rigid result. A registration the
    convergence check refuses is an error naming why (never used silently)."""
    if kind != "bspline":
        return register(fixed, moving, kind, fixed_mask=region, seed=seed, on_failure="raise")
    rigid = register(fixed, moving, "rigid", fixed_mask=region, seed=seed, on_failure="raise")
    return register(fixed, moving, "bspline", fixed_mask=region, seed=seed, initial_transform=rigid.transform,
                    on_failure="raise")


# Feature-map channels ---------------------------------------------------------------------------
def feature_map_names(feature_maps, channels, radius: int = 1, definition: str = "ibsi", settings=None) -> dict:
    """The feature-map channels asked for, checked before any work: {``<channel>:<feature>``: (source channel, feature)}.

    ``feature_maps``: entries ``FEATURE`` (a map of the first channel) or ``CHANNEL:FEATURE`` (a list, or text
    separated by commas); a FEATURE is any name or family :func:`~RadiomicsLabLib.featuremaps.resolve_features`
    accepts (``glcm_Contrast``, ``cm_contrast``, ``firstorder``) and each map is named as its ``definition`` names
    it (pyradiomics ``glcm_Contrast``; IBSI ``cm_contrast_3D_avg``). Order: as asked, a family in catalogue order,
    repeats dropped. ``radius``, ``definition`` and ``settings`` (as :func:`~RadiomicsLabLib.featuremaps.feature_maps`
    takes them: ``params``, ``in_plane``, ``bin_width``...) are checked too. Unknown features (with the closest name),
    channels and settings raise :class:`~RadiomicsLabLib.errors.RadiomicsLabError`; None or empty gives ``{}``.
    """
    from .featuremaps import resolve_features

    entries = feature_maps.split(",") if isinstance(feature_maps, str) else list(feature_maps or [])
    entries = [str(e).strip() for e in entries if str(e).strip()]
    if not entries:
        return {}
    if not channels:
        raise RadiomicsLabError("Feature maps are made of channels; give at least one image channel.")
    in_plane = _map_settings(radius, definition, settings).in_plane
    requests = {}
    for entry in entries:
        source, _, feature = entry.rpartition(MAP_SEPARATOR)
        source = source.strip() or channels[0]
        if source not in channels:
            raise RadiomicsLabError(f"Feature map '{entry}' names channel '{source}'; the channels are {', '.join(channels)}. "
                                    f"Write CHANNEL{MAP_SEPARATOR}FEATURE with one of them, or FEATURE alone for a map of "
                                    f"the first channel ({channels[0]}).")
        for name in resolve_features(feature.strip(), definition, in_plane):
            requests.setdefault(f"{source}{MAP_SEPARATOR}{name}", (source, name))
    clashes = [name for name in requests if name in channels]
    if clashes:
        raise RadiomicsLabError(f"Feature map channel(s) {', '.join(clashes)} would have the name of an image channel; "
                                "rename that channel.")
    return requests


def _map_settings(radius, definition, settings):
    """The checked :class:`~RadiomicsLabLib.featuremaps.MapSettings` of habitat feature maps (the ROI, the voxel type
    and the value outside are the habitats' own)."""
    from .featuremaps import map_settings

    settings = dict(settings or {})
    fixed = [key for key in ("label", "dtype", "fill_value") if key in settings]
    if fixed:
        raise RadiomicsLabError(f"Feature-map setting(s) {', '.join(fixed)} are fixed for habitats (the ROI's voxels, "
                                "float64 maps, NaN outside the ROI); remove them from the map settings.")
    rest = {k: v for k, v in settings.items() if k not in ("in_plane", "params", "memory_limit", "working_memory")}
    return map_settings(definition, radius, settings.get("in_plane"), settings.get("params"), **rest)


def feature_map_channels(source, mask: sitk.Image | None = None, features="glcm", radius: int = 1,
                         definition: str = "ibsi", *, source_channel: str | None = None, label: int | None = None,
                         progress=None, **settings) -> dict:
    """Voxel-wise feature maps of one channel inside the ROI, as extra habitat channels: {``<channel>:<feature>``: image}.

    ``source``: a :class:`Patient` (its mask and label; ``source_channel`` picks the channel, default the first) or
    a scalar image with ``mask`` (and ``label``; ``source_channel`` names it, default ``image``); the image must be
    on the mask's grid. Each map is :func:`RadiomicsLabLib.featuremaps.feature_maps` of the image with the habitat
    ROI (``mask != 0``, or ``mask == label``) as its mask: a kernel holds ROI voxels only, so tissue around the
    tumour never enters a tumour habitat (at the border the kernel holds fewer voxels; no margin is added), and
    grey levels are discretised over the ROI. The images are float64 on the mask's grid, NaN outside the ROI and
    where the feature is undefined, marked with :data:`MAP_METADATA` so a registration never moves them; put them
    in :attr:`Patient.channels`, or let :func:`fit_habitats` make them (``feature_maps=``), which also handles
    channels that need resampling or registration. ``features``, ``radius``, ``definition``, ``progress`` and
    ``settings``: as :func:`~RadiomicsLabLib.featuremaps.feature_maps`.
    """
    if isinstance(source, Patient):
        if mask is not None or label is not None:
            raise RadiomicsLabError("A patient brings its own mask and label; give mask and label only with an image.")
        if not source.channels:
            raise RadiomicsLabError(f"Patient '{source.name}' has no channels to make feature maps of.")
        channel = source_channel or next(iter(source.channels))
        if channel not in source.channels:
            raise RadiomicsLabError(f"Patient '{source.name}' has no channel '{channel}'; the channels are "
                                    f"{', '.join(source.channels)}.")
        image, mask, label, where = source.channels[channel], source.mask, source.label, f"mask of patient '{source.name}'"
    else:
        if not isinstance(source, sitk.Image) or not isinstance(mask, sitk.Image):
            raise RadiomicsLabError("Give a Patient, or a SimpleITK image and its mask, to make feature-map channels.")
        image, channel, where = source, source_channel or "image", "mask"
    mask = check_mask_is_label_map(mask, where=where)
    differences = grid_differences(mask, image)
    if differences:
        raise RadiomicsLabError(f"Channel '{channel}' is on a different grid from the {where} ({'; '.join(differences)}); "
                                "feature maps are made on the mask's grid: resample the channel onto it first, or ask "
                                "fit_habitats for the maps (feature_maps=...), which resamples or registers it.")
    requests = feature_map_names(features, [channel], radius, definition, settings)
    maps = _roi_feature_maps(image, binary_mask(mask, label, where), [f for _, f in requests.values()],
                             radius, definition, settings, progress)
    out = {}
    for name, (_, feature) in requests.items():
        out[name] = maps[feature]
        out[name].SetMetaData(MAP_METADATA, feature)
    return out


def _roi_feature_maps(image: sitk.Image, roi: np.ndarray, features: list, radius: int, definition: str, settings,
                      progress=None):
    """:func:`~RadiomicsLabLib.featuremaps.feature_maps` of ``image`` with the boolean (z, y, x) ``roi`` as its mask."""
    from .featuremaps import FeatureMapsCancelled
    from .featuremaps import feature_maps as compute

    try:
        return compute(image, image_on_grid(roi.astype(np.uint8), image), features, radius, definition, label=1,
                       progress=progress, **dict(settings or {}))
    except FeatureMapsCancelled as error:
        raise HabitatsCancelled(f"Habitats cancelled while making feature maps; nothing was written. ({error})") from None


def _map_arrays(patient: Patient, mask: sitk.Image, box: tuple, registrations: dict, defined: dict, requests: dict,
                radius: int, definition: str, settings, progress) -> dict:
    """Box arrays (float64) of the feature-map channels ``requests`` (:func:`feature_map_names`), in their order.

    Each source channel is taken as it lies on the mask's grid, as clustered: as it is, or resampled (linear)
    through its registration; its maps are made on the ROI voxels where it is finite (its NaN voxels, left out or
    filled by the NaN policy, enter no kernel) by :func:`_roi_feature_maps`. Non-finite voxels outside that ROI (beyond
    the field of view after resampling) are set to 0 first: the kernels never read them, and the IBSI preprocessing
    refuses NaN anywhere in the image.
    """
    by_source = {}
    for source, feature in requests.values():
        by_source.setdefault(source, []).append(feature)
    shape = sitk.GetArrayViewFromImage(mask).shape
    columns = {}
    for source, features in by_source.items():
        image = patient.channels[source]
        registration = registrations.get(source)
        if registration is not None or grid_differences(mask, image):
            image = resample(image, mask, registration.transform if registration else None)
        array = sitk.GetArrayViewFromImage(image)
        if not np.isfinite(array).all():  # beyond the field of view, or NaN voxels: outside the maps' ROI, never read
            image = image_on_grid(np.where(np.isfinite(array), array, 0), image)
        roi = np.zeros(shape, dtype=bool)
        roi[box] = defined[source]
        if not roi.any():
            raise RadiomicsLabError(f"Channel '{source}' of patient '{patient.name}' has no finite voxel inside the ROI; "
                                    "no feature map can be made of it.")
        report = (lambda done, total, message, source=source:
                  progress(done, total, f"{patient.name}: maps of {source}: {message}")) if progress else None
        maps = _roi_feature_maps(image, roi, features, radius, definition, settings, report)
        for feature in features:
            full = np.full(int(np.prod(shape)), np.nan)
            full[maps.flat] = maps.array(feature)
            columns[(source, feature)] = full.reshape(shape)[box]
    return {name: columns[key] for name, key in requests.items()}


# Normalisation and clustering ------------------------------------------------------------------
class ChannelScaler(TransformerMixin, BaseEstimator):
    """Per-channel normalisation: ``(x - centre) / scale``, fitted on the rows it is given.

    ``method="zscore"``: centre = mean, scale = standard deviation (ddof 0);
    ``"percentile"``: centre = P_low, scale = P_high - P_low (``percentiles``, default 1 and 99),
    so the central 98 % of the ROI maps onto [0, 1]; ``"none"``: unchanged.
    """

    def __init__(self, method: str = "zscore", percentiles=(1.0, 99.0)):
        self.method = method
        self.percentiles = percentiles

    def fit(self, X, y=None):
        check_choice(self.method, NORMALISATIONS, "normalisation")
        X = validate_data(self, X, dtype=np.float64)
        if self.method == "zscore":
            self.centre_, self.scale_ = X.mean(axis=0), X.std(axis=0)
        elif self.method == "percentile":
            low, high = self.percentiles
            if not 0 <= low < high <= 100:
                raise RadiomicsLabError(f"Percentiles must satisfy 0 <= low < high <= 100; got {low}, {high}.")
            self.centre_, upper = np.percentile(X, [low, high], axis=0)
            self.scale_ = upper - self.centre_
        else:
            self.centre_, self.scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])
        flat = np.flatnonzero(~(self.scale_ > 0))
        if flat.size:
            names = getattr(self, "feature_names_in_", None)
            which = ", ".join(str(names[j]) if names is not None else f"column {j + 1}" for j in flat)
            raise RadiomicsLabError(f"No spread to normalise in {which} ({self.method}); remove constant channels.")
        return self

    def transform(self, X):
        check_is_fitted(self, "scale_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return (X - self.centre_) / self.scale_


class HabitatClustering(ClusterMixin, BaseEstimator):
    """Habitats by clustering rows (voxels or supervoxels) of channel values; a scikit-learn estimator.

    ``method``: ``kmeans`` (Lloyd, k-means++ starts, ``n_init`` runs), ``gmm`` (Gaussian mixture,
    ``covariance_type``), ``agglomerative`` (Ward linkage on at most :data:`AGGLOMERATIVE_MAX_ROWS`
    rows; new rows go to the nearest habitat centre). ``n_habitats``: k, or ``"auto"``: every k in
    ``k_range`` is fitted and scored on up to :data:`AUTO_ROWS` rows (silhouette on up to
    :data:`SILHOUETTE_ROWS` of them, Calinski-Harabasz, and BIC for ``gmm``), the best by
    ``criterion`` is chosen and fitted on all rows; ``scores_`` holds one dict per k (empty for a
    given k). At most ``max_samples`` rows are used to fit, drawn with ``random_state``.

    Labels are habitat ids 1..k ordered by the habitat centre in column ``order_by`` (index, or name
    in ``channel_names``), ascending, later columns breaking ties; ``habitat_names_`` describe each
    habitat's level in every channel (``low`` / ``mid`` / ``high``: standardised centre below
    -:data:`LEVEL`, between, above). All fitted state is in attributes ending in ``_``.
    """

    def __init__(self, n_habitats=4, method: str = "kmeans", random_state=None, criterion: str = "silhouette",
                 k_range=(2, 8), max_samples: int = 50_000, order_by=0, channel_names=None, n_init: int = 4,
                 covariance_type: str = "full"):
        self.n_habitats = n_habitats
        self.method = method
        self.random_state = random_state
        self.criterion = criterion
        self.k_range = k_range
        self.max_samples = max_samples
        self.order_by = order_by
        self.channel_names = channel_names
        self.n_init = n_init
        self.covariance_type = covariance_type

    # scikit-learn API --------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Fit on ``X`` (rows x channels, finite); see the class docstring."""
        with threadpool_limits(THREADS):
            return self._fit(X)

    def _fit(self, X):
        self._check_params()
        X = self._check_rows(X, reset=True)
        rng = check_random_state(self.random_state)
        cap = min(self.max_samples, AGGLOMERATIVE_MAX_ROWS) if self.method == "agglomerative" else self.max_samples
        sample = X if len(X) <= cap else X[np.sort(rng.choice(len(X), cap, replace=False))]
        seed = int(rng.randint(np.iinfo(np.int32).max))
        distinct = len(np.unique(sample, axis=0))
        names = self._names(X.shape[1])
        if self.n_habitats == "auto":
            low, high = self.k_range
            if distinct < 3 or low > distinct - 1:
                raise RadiomicsLabError(
                    f"Too few distinct voxels ({distinct}) to choose the number of habitats automatically "
                    f"from {low} to {high}; give a larger ROI or a fixed number of habitats.")
            candidates = list(range(max(2, low), min(high, distinct - 1) + 1))
            trial = sample if len(sample) <= AUTO_ROWS else sample[np.sort(rng.choice(len(sample), AUTO_ROWS, replace=False))]
            self.scores_ = []
            for k in candidates:
                model, labels, _ = self._fit_one(trial, k, seed)
                self.scores_.append({"k": k, **self._scores(trial, model, labels, seed)})
            best = (min if self.criterion == "bic" else max)(self.scores_, key=lambda row: row[self.criterion])
            k = best["k"]
            model, labels, centres = self._fit_one(sample, k, seed)
        else:
            k = int(self.n_habitats)
            if k > len(X):
                raise RadiomicsLabError(f"{k} habitats were asked for but the ROI has only {len(X)} voxels; "
                                        "choose fewer habitats or a larger ROI.")
            if k > distinct:
                raise RadiomicsLabError(f"{k} habitats were asked for but the ROI has only {distinct} distinct voxel "
                                        "values; choose fewer habitats.")
            model, labels, centres = self._fit_one(sample, k, seed)
            self.scores_ = []
        order_column = self._order_column(names)
        columns = [order_column] + [j for j in range(X.shape[1]) if j != order_column]
        order = np.lexsort(tuple(centres[:, j] for j in reversed(columns)))
        self.model_ = model
        self.raw_centres_ = centres
        self.relabel_ = np.empty(k, dtype=np.int64)
        self.relabel_[order] = np.arange(1, k + 1)
        self.cluster_centers_ = centres[order]
        self.n_habitats_ = k
        self.feature_mean_, self.feature_std_ = sample.mean(axis=0), sample.std(axis=0)
        self.levels_ = [[_level(z) for z in row] for row in self.standardised_centres()]
        self.habitat_names_ = [f"Habitat {i + 1}: " + ", ".join(f"{n} {lv}" for n, lv in zip(names, levels))
                               for i, levels in enumerate(self.levels_)]
        self.n_fit_rows_ = len(sample)
        return self

    def predict(self, X):
        """Habitat id (1..k) of each row."""
        check_is_fitted(self, "model_")
        X = self._check_rows(X, reset=False)
        with threadpool_limits(THREADS):
            raw = _nearest(X, self.raw_centres_) if self.method == "agglomerative" else self.model_.predict(X)
        return self.relabel_[raw]

    def fit_predict(self, X, y=None):
        """``fit(X).predict(X)``: the labels ``predict`` would give, so the two always agree."""
        return self.fit(X).predict(X)

    def standardised_centres(self) -> np.ndarray:
        """Habitat centres in units of the fitted rows' standard deviation from their mean (k x channels)."""
        check_is_fitted(self, "cluster_centers_")
        std = np.where(self.feature_std_ > 0, self.feature_std_, 1.0)
        return (self.cluster_centers_ - self.feature_mean_) / std

    # internals ---------------------------------------------------------------------------------
    def _check_params(self):
        check_choice(self.method, METHODS, "clustering method")
        check_choice(self.criterion, CRITERIA, "criterion for the number of habitats")
        if self.n_habitats == "auto":
            low, high = self.k_range
            if not (isinstance(low, (int, np.integer)) and isinstance(high, (int, np.integer)) and 2 <= low <= high):
                raise RadiomicsLabError(f"k_range must be two whole numbers 2 <= low <= high; got {self.k_range}.")
            if self.criterion == "bic" and self.method != "gmm":
                raise RadiomicsLabError("BIC needs a likelihood: use it with method 'gmm', or choose silhouette "
                                        "or calinski_harabasz.")
        elif not (isinstance(self.n_habitats, (int, np.integer)) and not isinstance(self.n_habitats, bool)
                  and self.n_habitats >= 1):
            raise RadiomicsLabError(f"The number of habitats must be a whole number >= 1 or 'auto'; got {self.n_habitats!r}.")
        if not (isinstance(self.max_samples, (int, np.integer)) and self.max_samples >= 2):
            raise RadiomicsLabError(f"max_samples must be a whole number >= 2; got {self.max_samples!r}.")

    def _check_rows(self, X, reset: bool) -> np.ndarray:
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite=False, reset=reset)
        if not np.isfinite(X).all():
            raise RadiomicsLabError(f"{int(np.count_nonzero(~np.isfinite(X).all(axis=1)))} row(s) have NaN or infinite "
                                    "values; leave those voxels out or fill them before clustering.")
        return X

    def _names(self, n: int) -> list:
        if self.channel_names is not None:
            if len(self.channel_names) != n:
                raise RadiomicsLabError(f"{len(self.channel_names)} channel names for {n} columns.")
            return [str(c) for c in self.channel_names]
        names = getattr(self, "feature_names_in_", None)
        return [str(c) for c in names] if names is not None else [f"channel {j + 1}" for j in range(n)]

    def _order_column(self, names: list) -> int:
        if isinstance(self.order_by, (int, np.integer)) and not isinstance(self.order_by, bool):
            if not 0 <= self.order_by < len(names):
                raise RadiomicsLabError(f"order_by {self.order_by} is not a column (0..{len(names) - 1}).")
            return int(self.order_by)
        if self.order_by not in names:
            raise RadiomicsLabError(f"Cannot order habitats by '{self.order_by}': the channels are {', '.join(names)}.")
        return names.index(self.order_by)

    def _fit_one(self, X: np.ndarray, k: int, seed: int):
        """(fitted model, raw labels of X, raw centres) for ``k`` clusters."""
        if self.method == "kmeans":
            from sklearn.cluster import KMeans

            model = KMeans(n_clusters=k, n_init=self.n_init, random_state=seed).fit(X)
            return model, model.labels_, model.cluster_centers_
        if self.method == "gmm":
            from sklearn.mixture import GaussianMixture

            model = GaussianMixture(n_components=k, covariance_type=self.covariance_type, n_init=1,
                                    reg_covar=1e-6, random_state=seed).fit(X)
            return model, model.predict(X), model.means_
        from sklearn.cluster import AgglomerativeClustering

        model = AgglomerativeClustering(n_clusters=k, linkage="ward").fit(X)
        centres = np.stack([X[model.labels_ == c].mean(axis=0) for c in range(k)])
        return model, model.labels_, centres

    def _scores(self, X: np.ndarray, model, labels: np.ndarray, seed: int) -> dict:
        from sklearn.metrics import calinski_harabasz_score, silhouette_score

        scores = {"silhouette": math.nan, "calinski_harabasz": math.nan, "bic": math.nan}
        if 2 <= len(np.unique(labels)) <= len(X) - 1:
            scores["silhouette"] = float(silhouette_score(X, labels, sample_size=min(len(X), SILHOUETTE_ROWS),
                                                          random_state=seed))
            scores["calinski_harabasz"] = float(calinski_harabasz_score(X, labels))
        if self.method == "gmm":
            scores["bic"] = float(model.bic(X))
        return scores


def _level(z: float) -> str:
    return "low" if z < -LEVEL else "high" if z > LEVEL else "mid"


def _nearest(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) for each row, in blocks to bound memory."""
    out = np.empty(len(X), dtype=np.int64)
    for start in range(0, len(X), 65536):
        block = X[start:start + 65536]
        out[start:start + 65536] = np.argmin(((block[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    return out


# Supervoxels and islands -----------------------------------------------------------------------
def supervoxels(data: VoxelData, features: np.ndarray, n_supervoxels: int, compactness: float = 0.5) -> tuple:
    """SLIC supervoxels of the ROI; returns (supervoxel id of each row 0..S-1, mean features of each supervoxel).

    ``skimage.segmentation.slic`` (Achanta et al., IEEE TPAMI 34(11), 2012) runs on the stacked
    ``features`` (normalised channels) of the ROI's box with the voxel spacing, seeds on a regular
    grid (about ``n_supervoxels`` of them inside the ROI); voxels outside the ROI are set far away in
    feature space (10 units below the lowest value), so supervoxels do not cross the ROI's border,
    and any that still do are cut by it. ``compactness`` weighs space against feature differences.
    (slic's own ``mask=`` mode places seeds by k-means over the ROI's coordinates, which takes
    seconds on a large ROI; the regular grid takes milliseconds.)
    """
    from skimage.segmentation import slic

    z, y, x = data.index.T
    stack = np.full((*data.box_shape, features.shape[1]), float(features.min()) - 10.0)
    stack[z, y, x] = features
    seeds = max(1, int(round(n_supervoxels * np.prod(data.box_shape) / len(features))))
    labels = slic(stack, n_segments=seeds, compactness=float(compactness), channel_axis=-1, spacing=np.asarray(data.spacing),
                  start_label=1, enforce_connectivity=True, convert2lab=False)
    _, ids = np.unique(labels[z, y, x], return_inverse=True)
    counts = np.bincount(ids)
    means = np.stack([np.bincount(ids, weights=features[:, j]) for j in range(features.shape[1])], axis=1) / counts[:, None]
    return ids, means


def remove_islands(labels: np.ndarray, spacing, min_volume_mm3: float, connectivity: int = 3,
                   max_rounds: int = 50) -> np.ndarray:
    """Merge connected pieces of each habitat smaller than ``min_volume_mm3`` into a neighbouring habitat.

    ``labels``: habitat ids (0 = outside the ROI). A piece (connected component of one id, with
    ``connectivity`` 1 = faces, 2 = +edges, 3 = +corners) of fewer than ``min_volume_mm3 / voxel
    volume`` voxels takes the id of the neighbouring piece it shares most faces with, preferring pieces
    that are large enough and otherwise larger pieces (ties: the larger, then the lower id), so merging
    never swaps two islands. Repeated until no small piece has a neighbour. Pieces with no neighbour (a
    separate part of the ROI) are kept.
    """
    if min_volume_mm3 <= 0:
        return labels
    labels = labels.copy()
    min_voxels = min_volume_mm3 / float(np.prod(spacing))
    structure = ndimage.generate_binary_structure(labels.ndim, connectivity)
    for _ in range(max_rounds):
        pieces, piece_label, sizes = _pieces(labels, structure)
        small = sizes < min_voxels
        small[0] = False
        if not small.any():
            break
        a, b = _face_contacts(pieces, labels)
        keep = small[a]
        a, b = a[keep], b[keep]
        if a.size == 0:
            break
        pairs, counts = np.unique(np.stack([a, b], axis=1), axis=0, return_counts=True)
        pa, pb = pairs[:, 0], pairs[:, 1]
        larger = (sizes[pb] > sizes[pa]) | ((sizes[pb] == sizes[pa]) & (pb < pa))
        eligible = ~small[pb] | larger
        pa, pb, counts = pa[eligible], pb[eligible], counts[eligible]
        if pa.size == 0:
            break
        # best neighbour per small piece: large pieces first, then most shared faces, then larger, then lower id
        order = np.lexsort((pb, -sizes[pb], -counts, small[pb].astype(int), pa))
        first = np.ones(order.size, dtype=bool)
        first[1:] = pa[order][1:] != pa[order][:-1]
        chosen = order[first]
        target = np.arange(len(sizes))
        target[pa[chosen]] = pb[chosen]
        labels = np.where(pieces > 0, piece_label[target[pieces]], 0).astype(labels.dtype)
    return labels


def _pieces(labels: np.ndarray, structure) -> tuple:
    """(piece id array, habitat id of each piece, voxel count of each piece); piece 0 = outside."""
    pieces = np.zeros(labels.shape, dtype=np.int64)
    piece_label = [0]
    for value in np.unique(labels[labels > 0]):
        component, count = ndimage.label(labels == value, structure)
        pieces[component > 0] = component[component > 0] + len(piece_label) - 1
        piece_label += [int(value)] * count
    sizes = np.bincount(pieces.ravel(), minlength=len(piece_label))
    return pieces, np.asarray(piece_label), sizes


def _face_contacts(pieces: np.ndarray, labels: np.ndarray) -> tuple:
    """Pieces (a, b) touching across each voxel face, both directions, between different habitats."""
    firsts, seconds = [], []
    for axis in range(pieces.ndim):
        lower = [slice(None)] * pieces.ndim
        upper = [slice(None)] * pieces.ndim
        lower[axis], upper[axis] = slice(None, -1), slice(1, None)
        p, q = pieces[tuple(lower)], pieces[tuple(upper)]
        touching = (p > 0) & (q > 0) & (labels[tuple(lower)] != labels[tuple(upper)])
        firsts += [p[touching], q[touching]]
        seconds += [q[touching], p[touching]]
    return np.concatenate(firsts), np.concatenate(seconds)


# Patients and cohorts --------------------------------------------------------------------------
@dataclass
class PatientHabitats:
    """Habitats of one patient: ``label_map`` on the mask's full grid (0 outside the ROI and at left-out
    NaN voxels, 1..k inside), one statistics row per habitat (``rows``), and the channel registrations."""

    patient: str
    label_map: sitk.Image
    rows: list
    registrations: dict
    omitted_voxels: int = 0

    def fractions(self) -> dict:
        return {row["habitat"]: row["fraction"] for row in self.rows}


@dataclass
class HabitatModel:
    """A fitted habitat model: the clustering, the cohort scaler (``scope="cohort"``) and every option,
    so :meth:`label` applies it to any patient with the same channels, e.g. a new one."""

    clustering: HabitatClustering
    channels: list
    options: dict
    scaler: ChannelScaler | None = None

    @property
    def names(self) -> list:
        return list(self.clustering.habitat_names_)

    @property
    def n_habitats(self) -> int:
        return int(self.clustering.n_habitats_)

    @property
    def image_channels(self) -> list:
        """The channels a patient brings (``channels`` less the feature maps the model makes itself)."""
        maps = set(self.options.get("feature_maps") or ())
        return [c for c in self.channels if c not in maps]

    def normalised(self, data: VoxelData) -> np.ndarray:
        """A patient's voxel features normalised as the options say (its own ROI, or the cohort scaler)."""
        if self.options["scope"] == "patient":
            return ChannelScaler(self.options["normalisation"], self.options["percentiles"]).fit_transform(data.values)
        return self.scaler.transform(data.values)

    def rows_of(self, data: VoxelData, features: np.ndarray) -> np.ndarray:
        """Clustering rows of a patient: its voxels' ``features``, or their means over its supervoxels
        (computed once per patient, on its z-scored channels, and kept in ``data.supervoxel``)."""
        if not self.options["supervoxels"]:
            return features
        if data.supervoxel is None:
            n_habitats = self.options["n_habitats"]
            k = n_habitats if isinstance(n_habitats, (int, np.integer)) else self.options["k_range"][1]
            count = _supervoxel_count(self.options["supervoxels"], len(features), k)
            data.supervoxel, _ = supervoxels(data, ChannelScaler("zscore").fit_transform(data.values), count,
                                             self.options["compactness"])
        counts = np.bincount(data.supervoxel)
        sums = np.stack([np.bincount(data.supervoxel, weights=features[:, j]) for j in range(features.shape[1])], axis=1)
        return sums / counts[:, None]

    def pool_rows(self, data: VoxelData) -> np.ndarray:
        """A patient's candidate rows for the population pool: its normalised voxel features (``scope="patient"``)
        or its channel values (``"cohort"``: the scaler is fitted on the pool), as voxels or supervoxel means."""
        return self.rows_of(data, self.normalised(data) if self.options["scope"] == "patient" else data.values)

    def fit_pool(self, pooled: np.ndarray) -> "HabitatModel":
        """Fit the model on the pooled rows (with ``scope="cohort"`` the cohort scaler first, on the same rows)."""
        if self.options["scope"] == "cohort":
            self.scaler = ChannelScaler(self.options["normalisation"], self.options["percentiles"]).fit(pooled)
            pooled = self.scaler.transform(pooled)
        self.clustering.fit(pooled)
        return self

    def label(self, patient, data: VoxelData | None = None, progress=None) -> PatientHabitats:
        """Habitats of ``patient`` (a :class:`Patient` with the model's image channels; the model makes its feature maps)."""
        if list(patient.channels) != self.image_channels:
            maps = " and makes the feature maps itself" if len(self.image_channels) < len(self.channels) else ""
            raise RadiomicsLabError(f"Patient '{patient.name}' has channels {', '.join(patient.channels)}; the habitat "
                                    f"model was fitted on {', '.join(self.image_channels)} (same names, same order){maps}.")
        if data is None:
            data = self._voxel_data(patient, progress)
        features = self.normalised(data)
        labels = self.clustering.predict(self.rows_of(data, features))
        if data.supervoxel is not None:
            labels = labels[data.supervoxel]
        box_labels = np.zeros(data.box_shape, dtype=np.uint8 if self.n_habitats < 256 else np.uint16)
        box_labels[tuple(data.index.T)] = labels
        box_labels = remove_islands(box_labels, data.spacing, self.options["min_island_mm3"])
        labels = box_labels[tuple(data.index.T)]
        full = np.zeros(sitk.GetArrayViewFromImage(data.mask).shape, dtype=box_labels.dtype)
        full[data.box] = box_labels
        label_map = sitk.GetImageFromArray(full)
        label_map.CopyInformation(data.mask)
        rows = habitat_rows(data, labels, features, self.names)
        return PatientHabitats(patient.name, label_map, rows, data.registrations, data.omitted_voxels)

    def _voxel_data(self, patient, progress=None) -> VoxelData:
        o = self.options
        return voxel_data(patient, o["registration"], o["smoothing_mm"], o["nan_policy"], o["seed"], progress,
                          o.get("feature_maps"), o.get("map_radius", 1), o.get("map_definition", "ibsi"),
                          o.get("map_settings"))


def _supervoxel_count(option, n_rows: int, k: int) -> int:
    """Supervoxels per patient: the option's number, or about one per 50 voxels (at least 10 per habitat,
    at most 2000) for ``"auto"``; never more than the voxels."""
    if option == "auto":
        option = min(2000, max(10 * k, n_rows // 50))
    return int(max(1, min(int(option), n_rows)))


def habitat_rows(data: VoxelData, labels: np.ndarray, features: np.ndarray, names: list) -> list:
    """One dict per habitat (all k, absent ones with 0 voxels): id, name, voxels, volume (mm^3), fraction of the
    labelled ROI voxels, and per channel the mean raw value (``mean_<channel>``, resampled, unsmoothed, in the
    channel's units) and the mean normalised value (``normalised_mean_<channel>``); NaN means for absent ones."""
    voxel_volume = float(np.prod(data.spacing))
    k = len(names)
    counts = np.bincount(labels, minlength=k + 1)
    rows = []
    for habitat in range(1, k + 1):
        chosen = labels == habitat
        row = {"patient": data.patient, "habitat": habitat, "name": names[habitat - 1], "voxels": int(counts[habitat]),
               "volume_mm3": counts[habitat] * voxel_volume, "fraction": counts[habitat] / len(labels)}
        for j, channel in enumerate(data.channels):
            row[f"mean_{channel}"] = float(data.raw[chosen, j].mean()) if counts[habitat] else math.nan
        for j, channel in enumerate(data.channels):
            row[f"normalised_mean_{channel}"] = float(features[chosen, j].mean()) if counts[habitat] else math.nan
        rows.append(row)
    return rows


def fit_habitats(patients, n_habitats=4, method: str = "kmeans", *, criterion: str = "silhouette", k_range=(2, 8),
                 normalisation: str = "zscore", percentiles=(1.0, 99.0), scope: str = "patient", smoothing_mm: float = 0.0,
                 registration: str = "off", nan_policy: str = "error", min_island_mm3: float = 0.0, supervoxels=None,
                 compactness: float = 0.5, max_samples: int = 50_000, order_by=None, seed: int = 0,
                 feature_maps=None, map_radius: int = 1, map_definition: str = "ibsi", map_settings: dict | None = None,
                 progress=None) -> tuple:
    """Fit habitats on one patient or a cohort (pooled) and label every patient; returns
    (:class:`HabitatModel`, [:class:`PatientHabitats`, ...]).

    ``patients``: a :class:`Patient` or a list of them, with the same channel names in the same order.
    Pass 1 reads each patient (:func:`voxel_data`) and keeps an equal share of at most ``max_samples``
    rows, drawn with ``seed``; the model is fitted on the pooled rows; pass 2 labels each patient
    (reusing pass 1's data and supervoxels while they are small, :data:`CACHE_VALUES`). ``scope``: normalise each patient
    with its own ROI statistics (``"patient"``) or with statistics of the pooled cohort rows
    (``"cohort"``, keeps differences between patients, e.g. SUV levels). ``supervoxels``: None (voxels;
    ``"auto"`` for agglomerative), ``"auto"``, or a number per patient. ``order_by``: the channel that
    orders the habitats (default the first). ``feature_maps``: extra channels, voxel-wise feature maps made
    inside each patient's ROI (:func:`feature_map_names`: ``"glcm_Contrast"`` of the first channel,
    ``"PET:firstorder_Mean"`` of another; kernel radius ``map_radius``, ``map_definition`` ``"ibsi"`` or
    ``"pyradiomics"``, ``map_settings`` as :func:`~RadiomicsLabLib.featuremaps.feature_maps` takes them, e.g.
    ``{"bin_width": 0.5}``): the same maps for every patient, each made on its channel as it lies on the mask's
    grid (after resampling or registration), named ``<channel>:<feature>`` and placed after the image channels in
    the order asked, so the model's ``channels``, the habitat names and the ``mean_<channel>`` columns list the
    image channels first, then the maps. ``progress(done, total, message)`` returning ``False``
    cancels (:class:`HabitatsCancelled`). Every option is checked before any work.
    """
    patients = [patients] if isinstance(patients, Patient) else list(patients)
    if not patients:
        raise RadiomicsLabError("No patients given; give at least one mask with its channels.")
    channels = list(patients[0].channels)
    names = [p.name for p in patients]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RadiomicsLabError(f"Patient names must be unique; repeated: {', '.join(duplicates)}.")
    for patient in patients[1:]:
        if list(patient.channels) != channels:
            raise RadiomicsLabError(f"Patient '{patient.name}' has channels {', '.join(patient.channels) or 'none'}; "
                                    f"patient '{patients[0].name}' has {', '.join(channels)}. Give every patient the same channels.")
    model = habitat_model(channels, n_habitats, method, criterion=criterion, k_range=k_range, normalisation=normalisation,
                          percentiles=percentiles, scope=scope, smoothing_mm=smoothing_mm, registration=registration,
                          nan_policy=nan_policy, min_island_mm3=min_island_mm3, supervoxels=supervoxels,
                          compactness=compactness, max_samples=max_samples, order_by=order_by, seed=seed,
                          feature_maps=feature_maps, map_radius=map_radius, map_definition=map_definition,
                          map_settings=map_settings)
    total = 2 * len(patients) + 1
    step = _Steps(progress, total)

    rng = np.random.default_rng(seed)
    share = pool_share(max_samples, len(patients))
    pooled, cache, cached_values = [], {}, 0
    for patient in patients:
        data = model._voxel_data(patient)
        rows = model.pool_rows(data)
        take = sample_pool(rng, rows, share)
        pooled.append(take)
        if cached_values + data.values.size <= CACHE_VALUES:
            cache[patient.name] = data
            cached_values += data.values.size
        step(f"{patient.name}: {len(rows)} rows, {len(take)} pooled")
    pooled = np.concatenate(pooled)
    model.fit_pool(pooled)
    step(f"fitted {model.clustering.n_habitats_} habitats on {len(pooled)} rows")
    results = []
    for patient in patients:
        results.append(model.label(patient, cache.pop(patient.name, None)))
        step(f"{patient.name}: labelled")
    return model, results


def habitat_model(channels, n_habitats=4, method: str = "kmeans", *, criterion: str = "silhouette", k_range=(2, 8),
                  normalisation: str = "zscore", percentiles=(1.0, 99.0), scope: str = "patient", smoothing_mm: float = 0.0,
                  registration: str = "off", nan_policy: str = "error", min_island_mm3: float = 0.0, supervoxels=None,
                  compactness: float = 0.5, max_samples: int = 50_000, order_by=None, seed: int = 0,
                  feature_maps=None, map_radius: int = 1, map_definition: str = "ibsi",
                  map_settings: dict | None = None) -> "HabitatModel":
    """The model :func:`fit_habitats` fits, not fitted yet: every option checked (see there), for patients with
    the image ``channels`` (names, in order); its ``channels`` are those followed by the feature maps."""
    channels = list(channels)
    maps = list(feature_map_names(feature_maps, channels, map_radius, map_definition, map_settings))
    channels += maps
    check_choice(normalisation, NORMALISATIONS, "normalisation")
    check_choice(scope, SCOPES, "normalisation scope")
    check_choice(registration, REGISTRATIONS, "registration")
    check_choice(nan_policy, NAN_POLICIES, "NaN policy")
    if supervoxels is None and method == "agglomerative":
        supervoxels = "auto"
    if supervoxels not in (None, 0, "auto") and not (isinstance(supervoxels, (int, np.integer)) and supervoxels > 0):
        raise RadiomicsLabError(f"supervoxels must be None, 'auto' or a positive number; got {supervoxels!r}.")
    if not min_island_mm3 >= 0:
        raise RadiomicsLabError(f"The island size must be 0 (no clean-up) or a volume in mm^3; got {min_island_mm3}.")
    if order_by is not None and order_by not in channels:
        raise RadiomicsLabError(f"Cannot order habitats by '{order_by}': the channels are {', '.join(channels)}.")
    clustering = HabitatClustering(n_habitats, method, random_state=seed, criterion=criterion, k_range=tuple(k_range),
                                   max_samples=max_samples, order_by=channels.index(order_by) if order_by else 0,
                                   channel_names=channels)
    clustering._check_params()
    options = {"normalisation": normalisation, "percentiles": tuple(percentiles), "scope": scope,
               "smoothing_mm": float(smoothing_mm), "registration": registration, "nan_policy": nan_policy,
               "min_island_mm3": float(min_island_mm3), "supervoxels": supervoxels or None,
               "compactness": float(compactness), "seed": int(seed), "method": method, "n_habitats": n_habitats,
               "criterion": criterion, "k_range": list(k_range), "max_samples": int(max_samples),
               "feature_maps": maps, "map_radius": map_radius, "map_definition": map_definition,
               "map_settings": dict(map_settings or {})}
    return HabitatModel(clustering, channels, options)


def pool_share(max_samples: int, patients: int) -> int:
    """Rows each patient brings to the pool at most: an equal share of ``max_samples``."""
    return max(1, -(-max_samples // patients))


def sample_pool(rng, rows: np.ndarray, share: int) -> np.ndarray:
    """A patient's rows in the pool: all of them, or ``share`` drawn with ``rng`` (in their order). The draws of a
    cohort are made patient after patient from one generator, so they depend on the order and row counts only."""
    return rows if len(rows) <= share else rows[np.sort(rng.choice(len(rows), share, replace=False))]


class _Steps:
    """Counts steps for a ``progress(done, total, message)`` callback; ``False`` from it cancels."""

    def __init__(self, progress, total):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, message):
        self.done += 1
        if self.progress and self.progress(self.done, self.total, message) is False:
            raise HabitatsCancelled(f"Habitats cancelled after step {self.done} of {self.total}; nothing was written.")


def channel_images_on_mask(patient: Patient, result: PatientHabitats) -> dict:
    """Each channel on the mask's full grid (linear interpolation, through its registration when it has one),
    e.g. for per-habitat features of each channel."""
    images = {}
    for name, image in patient.channels.items():
        if not grid_differences(patient.mask, image):
            images[name] = image
            continue
        registration = result.registrations.get(name)
        images[name] = resample(image, patient.mask, registration.transform if registration else None)
    return images


def habitat_features(patient: Patient, result: PatientHabitats, settings=None, progress=None) -> dict:
    """Radiomic features of each habitat present (at least 2 voxels), for each channel: channel name ->
    :class:`~RadiomicsLabLib.extraction.ExtractionResult` (segments named by the habitat names)."""
    from .extraction import extract_masks

    labels = sitk.GetArrayViewFromImage(result.label_map)
    counts = np.bincount(labels.ravel())
    segments = [(row["name"], result.label_map, row["habitat"]) for row in result.rows
                if row["habitat"] < len(counts) and counts[row["habitat"]] >= 2]
    from .validation import check_finite_in_mask

    out = {}
    for name, image in channel_images_on_mask(patient, result).items():
        if np.issubdtype(sitk.GetArrayViewFromImage(image).dtype, np.floating):
            image = sitk.Mask(image, sitk.Cast(result.label_map > 0, sitk.sitkUInt8), outsideValue=0)  # NaN-free outside
            for segment, label_map, habitat in segments:  # e.g. NaN voxels filled for clustering, still NaN in the image
                check_finite_in_mask(image, label_map, habitat, where=f"'{segment}' of channel '{name}' ({patient.name})")
        out[name] = extract_masks(image, segments, settings, inputs={"patient": patient.name, "channel": name}, progress=progress)
    return out


# Whole computations of the scene workflows (run in a worker process by RadiomicsLabLib.background) ------
def place_channels(patients, moves=None) -> list:
    """The patients with each channel named in ``moves`` resampled (linear) through its transform onto a grid.

    ``moves``: (patient index, channel) -> (grid, transform), ``grid`` as (size, origin, spacing, direction) of the
    patient's reference volume: a channel volume that lies under a transform in the scene. Returns new
    :class:`Patient` objects (the given ones are left as they are), channels in the same order.
    """
    if not moves:
        return list(patients)
    placed = []
    for index, patient in enumerate(patients):
        channels = {}
        for name, image in patient.channels.items():
            if (index, name) in moves:
                (size, origin, spacing, direction), transform = moves[index, name]
                grid = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
                grid.SetOrigin(origin)
                grid.SetSpacing(spacing)
                grid.SetDirection(direction)
                image = resample(image, grid, transform)
            channels[name] = image
        placed.append(Patient(patient.name, patient.mask, channels, patient.label))
    return placed


def grid_of(image: sitk.Image) -> tuple:
    """(size, origin, spacing, direction) of an image: a grid for :func:`place_channels`."""
    return tuple(image.GetSize()), tuple(image.GetOrigin()), tuple(image.GetSpacing()), tuple(image.GetDirection())


def compute_habitats(patients, n_habitats=4, method: str = "kmeans", settings=None, moves=None, inputs=None,
                     progress=None, **options) -> tuple:
    """:func:`fit_habitats` of the patients (channels first placed by :func:`place_channels`), then with ``settings``
    the per-habitat features of each patient's channels (:func:`habitat_features`); returns (model, results,
    features by patient name, :func:`habitat_provenance` with ``inputs``). The computation of
    :meth:`RadiomicsLabLib.mrml.habitats.HabitatLogic.cohort_habitats`."""
    patients = place_channels(patients, moves)
    model, results = fit_habitats(patients, n_habitats, method, progress=progress, **options)
    extracted = {}
    if settings is not None:
        extracted = {patient.name: habitat_features(patient, result, settings) for patient, result in zip(patients, results)}
    return model, results, extracted, habitat_provenance(model, results, inputs)


def label_habitats(model, patient: Patient, settings=None, moves=None, inputs=None, progress=None) -> tuple:
    """A fitted model applied to a new patient (channels placed by :func:`place_channels`) and, with ``settings``, its
    per-habitat features; returns (result, features by patient name, provenance). The computation of
    :meth:`RadiomicsLabLib.mrml.habitats.HabitatLogic.apply_habitats`."""
    (patient,) = place_channels([patient], moves)
    result = model.label(patient, progress=progress)
    extracted = {patient.name: habitat_features(patient, result, settings)} if settings is not None else {}
    return result, extracted, habitat_provenance(model, [result], inputs)


def register_around(fixed: sitk.Image, moving: sitk.Image, kind: str = "rigid", mask: sitk.Image | None = None,
                    margin_mm: float = REGISTRATION_MARGIN_MM, seed: int = 0, progress=None, **options):
    """:func:`~RadiomicsLabLib.registration.register` with the metric inside ``mask`` grown by ``margin_mm`` (the
    whole fixed image without a mask). The computation of :meth:`RadiomicsLabLib.mrml.habitats.HabitatLogic.register`."""
    region = grow(mask, margin_mm) if mask is not None else None
    return register(fixed, moving, kind, fixed_mask=region, seed=seed, progress=progress, **options)


def ring_region(mask: sitk.Image, start_mm: float, stop_mm: float, clip_mask: sitk.Image | None = None,
                progress=None) -> sitk.Image:
    """The ring from ``start_mm`` to ``stop_mm`` around ``mask`` (:func:`RadiomicsLabLib.regions.ring`), kept inside
    ``clip_mask``; a ring without voxels is an error. The computation of
    :meth:`RadiomicsLabLib.mrml.habitats.HabitatLogic.add_ring`."""
    from .regions import ring

    region = ring(mask, start_mm, stop_mm, clip_mask)
    if not sitk.GetArrayViewFromImage(region).any():
        raise RadiomicsLabError(f"The ring from {start_mm:g} to {stop_mm:g} mm has no voxels (narrower than the voxel "
                                "spacing, or clipped away); widen it.")
    return region


# Files: cohort table in, CSV and plots out ------------------------------------------------------
@dataclass
class PatientFiles:
    """One patient of a cohort: name, ROI mask file and label, channel name -> image file; a DICOM RTSTRUCT / SEG
    mask is read on ``series``, the DICOM series folder it was drawn on (its ROI ``roi``, default its only one)."""

    name: str
    mask: Path
    channels: dict
    label: int | None = None
    roi: str | None = None
    series: Path | None = None

    def load(self) -> Patient:
        from .imageio import read_image

        mask = read_roi_mask(self.mask, self.series, self.roi, f"mask of patient '{self.name}'")
        channels = {c: read_image(p, f"channel '{c}' of patient '{self.name}'") for c, p in self.channels.items()}
        return Patient(self.name, mask, channels, self.label)


def read_roi_mask(mask, series=None, roi: str | None = None, what: str = "mask") -> sitk.Image:
    """A patient's ROI mask file: a label map as it is, or the ROI ``roi`` (default: the file's only one) of a DICOM
    RTSTRUCT / SEG rasterised on the DICOM series folder ``series`` (:func:`RadiomicsLabLib.dicom.read_mask`)."""
    from .cohort import is_dicom_file
    from .dicom import read_mask
    from .dicom.masks import check_series_folder, only_roi, refuse_rois_of_label_map
    from .imageio import read_image

    if not is_dicom_file(mask):
        refuse_rois_of_label_map(mask, [roi] if roi else None, what)
        return read_image(mask, what)
    check_series_folder(mask, series, what)
    return read_mask(mask, series, what, [roi or only_roi(mask, None, what)])[0]


def cohort_patients(source, mask_channel: str | None = None, channels=None) -> list:
    """The patients of a cohort (:func:`RadiomicsLabLib.cohort.read_cohort`: a CSV ``id,image,mask,channel``
    with one row per patient and channel, paths relative to it, or a folder of ``<channel>_image`` /
    ``<channel>_mask`` pairs per patient) as :class:`PatientFiles`.

    Every case is checked first (files present and readable, masks on their images' grids, the checks of
    :func:`habitat_cohort`) and all problems are reported at once, each with its row. The ROI of a patient is
    the mask of ``mask_channel`` (default: the first channel listed) with that row's label; ``channels`` picks
    and orders the channels (default: all, in the order of the first patient). Every patient must have every channel.
    """
    cohort, channels, mask_channel = habitat_cohort(source, mask_channel, channels)
    cohort.check()
    return [patient_files(cases, mask_channel, channels) for cases in cohort.patients().values()]


def habitat_cohort(source, mask_channel: str | None = None, channels=None) -> tuple:
    """(:class:`~RadiomicsLabLib.cohort.Cohort`, channels, mask channel) of a habitat cohort, not yet checked: the
    file's problems and the habitats' own added, each with its row(s) (a row without a channel or with a timepoint
    or observer, a patient without one of the channels, an ROI with several labels); only the rows of the channels
    used stay as cases. Call :meth:`~RadiomicsLabLib.cohort.Cohort.check` (after
    :meth:`~RadiomicsLabLib.cohort.Cohort.skip_patients_with_problems` to run the valid patients)."""
    from .cohort import CohortProblem, read_cohort, rows_where

    cohort = read_cohort(source, one_roi=True)
    problems = []
    for case in cohort.cases:
        if not case.channel:
            problems.append(CohortProblem(case.where, "no channel; habitats need one row per patient and channel: "
                                                      "columns id,image,mask,channel", case.id))
        elif case.timepoint or case.observer:
            problems.append(CohortProblem(case.where, "a timepoint or observer; habitats need one row per patient and "
                                                      "channel", case.id))
    broken = {problem.case_id for problem in [*cohort.problems, *problems]}  # a bad row says what the patient lacks
    patients = cohort.patients()
    first = next((cases for patient, cases in patients.items() if patient not in broken), next(iter(patients.values()), []))
    names = list(channels) if channels else list(dict.fromkeys(case.channel for case in first if case.channel))
    mask_channel = mask_channel or (names[0] if names else None)
    needed = list(dict.fromkeys([*names, *([mask_channel] if mask_channel else [])]))
    for patient, cases in patients.items():
        missing = [c for c in needed if c not in {case.channel for case in cases}]
        if missing and patient not in broken:  # with a row that did not validate, that row's problem says it
            problems.append(CohortProblem(rows_where(cases), f"patient '{patient}' has no channel {', '.join(missing)}; "
                                          f"every patient needs the channels {', '.join(needed)}", patient))
        roi = next((case for case in cases if case.channel == mask_channel), None)
        if roi is not None and len(roi.labels) > 1:
            problems.append(CohortProblem(roi.where, f"patient '{patient}' has several labels "
                                          f"({', '.join(map(str, roi.labels))}) in its ROI; habitats need one ROI: give one label",
                                          patient))
    cohort.add_problems(problems)
    cohort.cases = [case for case in cohort.cases if case.channel in needed]
    return cohort, names, mask_channel


def patient_files(cases, mask_channel: str, channels) -> PatientFiles:
    """The :class:`PatientFiles` of one patient's cohort rows (checked by :func:`habitat_cohort`)."""
    by_channel = {case.channel: case for case in cases}
    labels = by_channel[mask_channel].labels
    return PatientFiles(cases[0].id, by_channel[mask_channel].mask, {c: by_channel[c].image for c in channels},
                        labels[0] if labels else None, by_channel[mask_channel].roi or None,
                        by_channel[mask_channel].image)


def safe_name(name: str) -> str:
    """A patient name usable as a folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "patient"


# Cohort on the batch layer ----------------------------------------------------------------------
#: The two per-patient tasks of ``radiomicslab habitats --cohort`` and the case folder of the first.
DATA_TASK, LABEL_TASK, DATA_DIR = "habitats-data", "habitats", "cases/data"


def data_task(model: HabitatModel, out_dir, mask_channel: str, channels):
    """The first per-patient :class:`~RadiomicsLabLib.batch.CaseTask`: each patient's pool candidates
    (:func:`pool_case`), saved in ``out_dir/cases/data`` (which the workers must be able to reach)."""
    from .batch import CaseTask

    params = {"model": model, "out_dir": str(Path(out_dir).absolute()), "mask_channel": mask_channel,
              "channels": list(channels)}
    fingerprint = {"channels": model.channels, "mask_channel": mask_channel,
                   "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.options.items()}}
    return CaseTask(DATA_TASK, pool_case, params, fingerprint, per_patient=True, cases_dir=DATA_DIR, table=None)


def pool_path(out_dir, patient: str) -> Path:
    """``out_dir/cases/data/<patient>.npy``: a patient's pool candidates."""
    from .batch import case_path

    return case_path(out_dir, patient, DATA_DIR).with_suffix(".npy")


def pool_case(cases, params: dict):
    """Batch task of one patient (its rows, one per channel): its voxel data and pool candidate rows
    (:meth:`HabitatModel.pool_rows`), written atomically as ``.npy``; provenance: the file, its row count and SHA-256."""
    from .batch import CaseOutput
    from .fileio import atomic_output
    from .provenance import file_sha256

    model = params["model"]
    data = model._voxel_data(patient_files(cases, params["mask_channel"], params["channels"]).load())
    rows = np.ascontiguousarray(model.pool_rows(data), dtype=np.float64)
    path = pool_path(params["out_dir"], cases[0].id)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, rows, allow_pickle=False)
        digest = file_sha256(tmp)
    return CaseOutput([], {"pool": {"file": path.name, "rows": len(rows), "sha256": digest},
                           "roi_voxels": data.roi_voxels, "omitted_voxels": data.omitted_voxels})


def fit_pooled(model: HabitatModel, pools) -> HabitatModel:
    """Fit ``model`` on the pool of the finished patients: ``pools`` as (patient, .npy path, SHA-256) in cohort
    order; each patient's share is drawn as :func:`fit_habitats` draws it (same generator, same order), so the
    model equals the one :func:`fit_habitats` fits on those patients in one process."""
    from .provenance import file_sha256

    rng = np.random.default_rng(model.options["seed"])
    share = pool_share(model.options["max_samples"], len(pools))
    pooled = []
    for patient, path, digest in pools:
        if not Path(path).is_file() or file_sha256(path) != digest:
            raise RadiomicsLabError(f"The pool file of patient '{patient}' ({path}) is missing or was changed after its "
                                    f"task finished; delete {Path(path).with_suffix('.json')} and run again to recompute it.")
        rows = np.load(path, mmap_mode="r", allow_pickle=False)
        pooled.append(np.array(sample_pool(rng, rows, share)))
    return model.fit_pool(np.concatenate(pooled))


def label_task(model: HabitatModel, out_dir, mask_channel: str, channels, settings=None):
    """The second per-patient :class:`~RadiomicsLabLib.batch.CaseTask`: the fitted ``model`` applied to each patient
    (:func:`label_case`), with ``settings`` its per-habitat features. The fingerprint holds the model (SHA-256 of
    its pickle), so a refitted model that differs relabels every patient."""
    import hashlib
    import pickle

    from .batch import CaseTask

    params = {"model": model, "out_dir": str(Path(out_dir).absolute()), "mask_channel": mask_channel,
              "channels": list(channels), "settings": settings}
    fingerprint = {"model": hashlib.sha256(pickle.dumps(model)).hexdigest(), "mask_channel": mask_channel,
                   "features": None if settings is None else {"engine": settings.engine, "params": settings.params}}
    return CaseTask(LABEL_TASK, label_case, params, fingerprint, per_patient=True, table=None)


def label_map_path(out_dir, patient: str) -> Path:
    """``out_dir/<patient>/habitats.nrrd``: a cohort patient's label map."""
    return Path(out_dir) / safe_name(patient) / "habitats.nrrd"


def label_case(cases, params: dict):
    """Batch task of one patient: :meth:`HabitatModel.label` (voxel data computed again), the label map written
    atomically, with ``settings`` the per-habitat features; the :class:`HabitatSummary` as provenance."""
    from dataclasses import asdict

    from .batch import CaseOutput

    patient = patient_files(cases, params["mask_channel"], params["channels"]).load()
    result = params["model"].label(patient)
    write_label_map(result.label_map, label_map_path(params["out_dir"], patient.name))
    features = habitat_features(patient, result, params["settings"]) if params["settings"] is not None else None
    return CaseOutput([], {"summary": asdict(summarise(result, features))})


@dataclass
class HabitatSummary:
    """What the tables, plots and provenance need of one patient's habitats (JSON-able, so a batch task returns
    it): the habitat rows (:func:`habitat_rows`), the patient's cohort.csv row, its features.csv rows and its
    entry in the provenance."""

    patient: str
    rows: list
    cohort_row: dict
    feature_rows: list
    provenance: dict

    def fractions(self) -> dict:
        return {row["habitat"]: row["fraction"] for row in self.rows}


def summarise(result: PatientHabitats, features: dict | None = None) -> HabitatSummary:
    """The :class:`HabitatSummary` of one patient; ``features``: its channel -> ExtractionResult (or None)."""
    by_patient = {result.patient: features} if features is not None else None
    feature_rows = [{"patient": result.patient, "channel": channel, "habitat": value.segment, "feature": value.feature,
                     "ibsi_tag": value.ibsi_tag, "value": value.value}
                    for channel, extraction in (features or {}).items() for value in extraction.values]
    return HabitatSummary(result.patient, result.rows, cohort_rows([result], by_patient)[0], feature_rows,
                          patient_provenance(result))


def habitats_csv_text(results: list) -> str:
    """``habitats.csv``: one row per patient and habitat (:func:`habitat_rows`' columns), exact decimal values."""
    from .results import format_value

    rows = [row for result in results for row in result.rows]
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_value(v) if isinstance(v, float) else v for v in (row[c] for c in columns)])
    return buffer.getvalue()


def cohort_rows(results: list, features: dict | None = None) -> list:
    """One dict per patient: ROI voxels labelled, fraction of each habitat (``fraction_<id>``), and, when
    ``features`` (patient -> channel -> ExtractionResult) is given, every per-habitat feature as
    ``H<id>_<channel>_<feature>``."""
    table = []
    for result in results:
        row = {"patient": result.patient, "voxels": sum(r["voxels"] for r in result.rows),
               "omitted_voxels": result.omitted_voxels}
        row.update({f"fraction_{r['habitat']}": r["fraction"] for r in result.rows})
        ids = {r["name"]: r["habitat"] for r in result.rows}
        for channel, extraction in ((features or {}).get(result.patient) or {}).items():
            for value in extraction.values:
                row[f"H{ids[value.segment]}_{channel}_{value.feature}"] = value.value
        table.append(row)
    return table


def table_csv_text(rows: list) -> str:
    """CSV of dict rows (columns: union in first-seen order; missing = empty), exact decimal values."""
    from .results import rows_csv_text

    return rows_csv_text(rows)


def scores_rows(clustering: HabitatClustering) -> list:
    """The k-selection scores (one dict per k tried) with the chosen k marked."""
    return [{**row, "chosen": row["k"] == clustering.n_habitats_} for row in clustering.scores_]


def fraction_series(results: list, names: list) -> dict:
    """The habitat-fractions plot's series: ``patient`` (names), ``index`` (1, 2, ...) and ``fractions``
    (``fraction_<id>`` -> each patient's fraction of that habitat). Drawn in habitat_fractions.png and the scene's chart."""
    return {"patient": [r.patient for r in results], "index": list(range(1, len(results) + 1)),
            "fractions": {f"fraction_{h}": [r.fractions()[h] for r in results] for h in range(1, len(names) + 1)}}


def fractions_figure(results: list, names: list):
    """Stacked bars: the fraction of each habitat per patient (:func:`fraction_series`; matplotlib Figure, no display
    needed)."""
    from matplotlib.figure import Figure

    series = fraction_series(results, names)
    figure = Figure(figsize=(max(4.0, 0.9 * len(results) + 2.5), 4.0), layout="constrained")
    axes = figure.add_subplot()
    bottom = np.zeros(len(results))
    for habitat, (name, fractions) in enumerate(zip(names, series["fractions"].values()), start=1):
        heights = np.array(fractions)
        axes.bar(series["patient"], heights, bottom=bottom, color=habitat_colour(habitat), label=name)
        bottom += heights
    axes.set_ylabel("fraction of the ROI")
    axes.set_ylim(0, 1)
    axes.set_title("Habitat fractions per patient")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.tick_params(axis="x", labelrotation=45 if len(results) > 6 else 0)
    return figure


def channel_means_figure(model: HabitatModel):
    """Grouped bars: each habitat's centre in each channel (standardised), the habitats' profiles."""
    from matplotlib.figure import Figure

    centres = model.clustering.standardised_centres()
    k, c = centres.shape
    figure = Figure(figsize=(max(4.0, 1.2 * c + 3.0), 4.0), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / k
    for habitat in range(1, k + 1):
        axes.bar(np.arange(c) + (habitat - 1 - (k - 1) / 2) * width, centres[habitat - 1], width,
                 color=habitat_colour(habitat), label=model.names[habitat - 1])
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xticks(np.arange(c), model.channels)
    axes.set_ylabel("habitat centre (SD from the mean)")
    axes.set_title("Channel means per habitat")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def write_label_map(image: sitk.Image, path) -> Path:
    """Write a label map as NRRD (gzip) atomically."""
    from .fileio import atomic_output

    with atomic_output(path) as tmp:
        writer = sitk.ImageFileWriter()
        writer.SetImageIO("NrrdImageIO")
        writer.SetFileName(str(tmp))
        writer.UseCompressionOn()
        writer.Execute(image)
    return Path(path)


def figure_png(figure) -> bytes:
    """A matplotlib Figure as PNG bytes (120 dpi): what :func:`write_figure` writes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def plot_pngs(model: HabitatModel, results: list) -> dict:
    """The run's plots as PNG bytes: ``habitat_fractions.png`` (:func:`fractions_figure` of ``results``, patients'
    :class:`PatientHabitats` or :class:`HabitatSummary`) and ``channel_means.png`` (:func:`channel_means_figure`)."""
    return {"habitat_fractions.png": figure_png(fractions_figure(results, model.names)),
            "channel_means.png": figure_png(channel_means_figure(model))}


def write_figure(figure, path) -> Path:
    """Save a matplotlib Figure (or PNG bytes of :func:`figure_png`) as PNG atomically."""
    from .fileio import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_bytes(figure if isinstance(figure, bytes) else figure_png(figure))
    return Path(path)


def habitat_provenance(model: HabitatModel, results: list, inputs: dict | None = None) -> dict:
    """What reproduces a habitat run: software versions, every option, the habitats (names, centres in the
    clustering's units and standardised), the k scores, each patient's mask geometry and hash and each
    channel registration (kind, final metric, convergence, matrix when linear)."""
    return model_provenance(model, {r.patient: patient_provenance(r) for r in results}, inputs)


def patient_provenance(result: PatientHabitats) -> dict:
    """One patient's entry in :func:`habitat_provenance`: its label map's geometry and hash, the voxels left
    out, and each channel registration."""
    from .provenance import image_geometry, image_hash
    from .registration import affine_matrix

    def registration(found):
        if found is None:
            return None
        entry = {"kind": found.kind, "metric": found.metric, "converged": found.converged,
                 "stop_condition": found.stop_condition, "iterations": found.iterations}
        try:
            entry["matrix_lps"] = affine_matrix(found.transform).tolist()
        except RadiomicsLabError:
            entry["transform"] = found.transform.GetName()
        return entry

    return {"label_map": image_geometry(result.label_map), "label_map_sha1": image_hash(result.label_map),
            "omitted_voxels": result.omitted_voxels,
            "registrations": {c: registration(x) for c, x in result.registrations.items()}}


def model_provenance(model: HabitatModel, patients: dict, inputs: dict | None = None) -> dict:
    """:func:`habitat_provenance` from the model and the patients' entries (patient -> :func:`patient_provenance`)."""
    from .provenance import software_versions

    clustering = model.clustering
    return {
        "software": software_versions(),
        "channels": model.channels,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.options.items()},
        "habitats": [{"habitat": i + 1, "name": name, "centre": clustering.cluster_centers_[i].tolist(),
                      "standardised_centre": clustering.standardised_centres()[i].tolist(),
                      "colour": list(habitat_colour(i + 1))} for i, name in enumerate(model.names)],
        "k_scores": clustering.scores_, "fitted_rows": int(clustering.n_fit_rows_),
        "cohort_scaler": None if model.scaler is None else {"centre": model.scaler.centre_.tolist(),
                                                             "scale": model.scaler.scale_.tolist()},
        "patients": patients,
        "inputs": inputs or {},
    }


def write_outputs(folder, model: HabitatModel, results: list, map_paths: list, features: dict | None = None,
                  inputs: dict | None = None) -> list:
    """Write a habitat run into ``folder``, each file atomically: the label maps (``map_paths``, one per
    result), ``habitats.csv`` (one row per patient and habitat), ``cohort.csv`` (one row per patient:
    fractions and, with ``features``, per-habitat features), ``features.csv`` (long: patient, channel,
    habitat, feature, value), ``k_scores.csv`` (``n_habitats="auto"``), ``habitat_fractions.png``,
    ``channel_means.png`` and ``habitats.provenance.json``. Returns the paths written."""
    summaries = [summarise(result, (features or {}).get(result.patient)) if features else summarise(result)
                 for result in results]
    written = [write_label_map(result.label_map, path) for result, path in zip(results, map_paths)]
    return written + write_summaries(folder, model, summaries, inputs, bool(features))


def write_summaries(folder, model: HabitatModel, summaries: list, inputs: dict | None = None,
                    features: bool = False) -> list:
    """Everything of :func:`write_outputs` but the label maps, from the patients' :class:`HabitatSummary`
    (in order); ``features``: write features.csv. Returns the paths written."""
    import json

    from .fileio import write_text_atomic

    folder = Path(folder)
    texts = {"habitats.csv": habitats_csv_text(summaries),
             "cohort.csv": table_csv_text([summary.cohort_row for summary in summaries])}
    if features:
        texts["features.csv"] = table_csv_text([row for summary in summaries for row in summary.feature_rows])
    if model.clustering.scores_ and model.options["n_habitats"] == "auto":
        texts["k_scores.csv"] = table_csv_text(scores_rows(model.clustering))
    provenance = model_provenance(model, {summary.patient: summary.provenance for summary in summaries}, inputs)
    texts["habitats.provenance.json"] = json.dumps(provenance, indent=2, default=str) + "\n"
    written = [write_text_atomic(folder / name, text) for name, text in texts.items()]
    written += [write_figure(png, folder / name) for name, png in plot_pngs(model, summaries).items()]
    return written
