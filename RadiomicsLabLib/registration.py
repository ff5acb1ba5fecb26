"""Image registration with SimpleITK: rigid, affine and B-spline, Mattes mutual information, multi-resolution.

Conventions (ITK's): a registration transform ``T`` maps points of the *fixed* image's physical
space (LPS, mm) to the *moving* image's space, so ``resample(moving, fixed, T)`` puts the moving
image on the fixed grid, aligned. The metric is Mattes mutual information (Mattes et al., IEEE TMI
22(1), 2003), ``-MI`` as ITK reports it: lower is better, 0 means no shared information.

>>> result = register(ct, mr, kind="rigid", seed=7)
>>> result.metric, result.converged, result.stop_condition, result.failure
>>> mr_on_ct = resample(mr, ct, result.transform)

How a rigid or affine registration is made robust (see :func:`register`):

- the metric's derivative is computed from the moving image itself (central differences at each
  sample), not from ITK's default pre-computed gradient image: that image is made with a recursive
  Gaussian of about one millimetre, far below the 3 mm slice spacing of typical CT and MR, and its
  through-plane derivatives are wrong enough to push the optimiser *away* from the true alignment
  (measured on the sarcoma CTs: started at the exact answer, the optimiser walked 34 mm off);
- a multi-resolution pyramid made here, shrinking each axis to about ``factor x`` the finest
  spacing (an axis already that coarse, e.g. 3 mm slices, is left alone) after Gaussian
  smoothing in millimetres;
- an exhaustive search of translations (``search_mm`` each way, 5 mm steps) at the coarsest level
  around the starting alignment, which gives the gradient descent a start within its capture range;
- a check of the result: the final metric (over every voxel of the region at the finest level) must
  not be worse than the starting alignment's or the identity's, the images must share information,
  and the metric region must land inside the moving image. A result that fails is *refused*:
  ``converged`` is False and ``failure`` says why (``on_failure="raise"`` raises
  :class:`~RadiomicsLabLib.errors.RadiomicsLabError` instead).

Repeatability: the metric samples are drawn with ``seed`` (ITK's Mersenne twister), the search is
exhaustive and the optimiser deterministic, but ITK's Mattes metric is not repeatable when it runs on
several threads (measured here: the same call twice differs by a few micrometres, so a propagated mask
could gain or lose a voxel). :func:`register` therefore runs ITK single-threaded by default
(``threads=1``): the same call then gives bit-identical results. ``threads=None`` uses all cores
(faster on many cores; results repeatable to a few micrometres).
"""

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .errors import Cancelled, RadiomicsLabError
from .validation import grid_differences

KINDS = ("rigid", "affine", "bspline")
INITIALISATIONS = ("none", "geometry", "moments", "auto")
ON_FAILURE = ("report", "raise")
INTERPOLATORS = {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}

#: Step (mm) of the coarse translation search.
SEARCH_STEP_MM = 5.0
#: A final metric worse than the best of the starting and identity alignments' by more than this
#: fraction of it (e.g. -0.97 against -1.00) refuses the result. An image registered onto itself from
#: the exact alignment ends within 0.2 % of it (sub-voxel sampling noise); a diverged or misled
#: optimiser ends tens of per cent worse.
METRIC_TOLERANCE = 0.02
#: Mutual information (nats) below which two images are taken to share no usable information (an
#: image against uniform noise: at most 0.005; the weakest real pair seen, CT against PET: 0.06).
MIN_INFORMATION = 0.02
#: Smallest fraction of the metric region that must land inside the moving image at the result.
MIN_OVERLAP = 0.5


class RegistrationCancelled(Cancelled):
    """The user cancelled a running registration; nothing was changed."""


@dataclass
class RegistrationResult:
    """Outcome of :func:`register`.

    ``transform`` maps fixed-space points to moving-space points (resampling direction);
    ``metric`` is the final Mattes mutual information (``-MI``, lower is better), evaluated over
    every voxel of the metric region at the finest level; ``converged`` is True only when the
    optimiser stopped on a convergence criterion at the finest level *and* the result passed the
    checks (see :func:`register`); ``stop_condition`` is the optimiser's own words, followed by
    ``"; refused: <why>"`` when a check refused the result; ``failure`` is that reason ("" when
    the result is usable); ``iterations`` counts the finest level's iterations; ``metrics`` holds
    the evidence: ``identity``, ``start`` and ``final`` metric, the ``initialisation`` chosen, the
    ``search_offset_mm`` the coarse search found, ``overlap`` (fraction of the region inside the
    moving image) and per-level ``levels``.
    """

    kind: str
    transform: sitk.Transform
    metric: float
    converged: bool
    stop_condition: str
    iterations: int
    settings: dict = field(default_factory=dict)
    failure: str = ""
    metrics: dict = field(default_factory=dict)

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix (LPS) of a rigid or affine result; see :func:`affine_matrix`."""
        return affine_matrix(self.transform)


def register(fixed: sitk.Image, moving: sitk.Image, kind: str = "rigid", fixed_mask: sitk.Image | None = None,
             seed: int = 1, initial_transform: sitk.Transform | None = None, initialise: str = "none",
             samples: int = 10_000, histogram_bins: int = 50, intensity_percentiles=(0.5, 99.5),
             shrink_factors=(4, 2, 1), smoothing_sigmas_mm=(2.0, 1.0, 0.0), iterations: int = 300,
             bspline_mesh_mm: float = 50.0, progress=None, search_mm: float = 20.0, on_failure: str = "report",
             threads: int | None = 1) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` by maximising Mattes mutual information.

    ``kind``: ``rigid`` (Euler angles + translation, 6 parameters in 3D), ``affine`` (12) or
    ``bspline`` (free-form deformation on a control grid of about ``bspline_mesh_mm`` spacing,
    L-BFGS-B; give the rigid/affine result as ``initial_transform`` to start from it).

    Rigid and affine: the start is the identity (``initialise="none"``: images of one patient
    already share a physical space) or ``initial_transform``; ``"geometry"`` / ``"moments"`` centre
    the images (``sitk.CenteredTransformInitializer``; moments of the clamped intensities above their
    minimum, so CT air weighs nothing); ``"auto"`` tries the identity (or ``initial_transform``),
    geometry and moments and keeps the one whose coarse search reaches the best metric.
    Multi-resolution: one level per ``shrink_factors`` entry, each axis shrunk to about
    ``factor x`` the fixed image's finest spacing (an axis that is already as coarse keeps its
    voxels) after Gaussian smoothing of ``smoothing_sigmas_mm``. At the coarsest level every
    translation within ``search_mm`` of the start (steps of :data:`SEARCH_STEP_MM`, 0 turns it
    off) is tried and the best kept; then each level runs regular-step gradient descent with
    parameter scales from physical shift (a unit change of each parameter moves voxels by
    comparable distances; first step 2, stop when the step falls below 0.0001).

    The metric uses about ``samples`` random points per level inside ``fixed_mask`` (the whole
    fixed image without one), drawn with ``seed``, so a seed gives repeatable results. Intensities
    are clamped to their ``intensity_percentiles`` inside the region (moving: where the region
    lands under the starting transform), so the ``histogram_bins``-bin joint histogram resolves
    the tissue there instead of air and bone.

    Checks (all kinds): the result is refused (``converged`` False, ``failure`` says why) when the
    finest level stopped on its iteration limit; when its metric, over every region voxel at the
    finest level, is worse than the starting alignment's or the identity's by more than
    :data:`METRIC_TOLERANCE`; when the images share less than :data:`MIN_INFORMATION` nats of
    mutual information there; or when less than :data:`MIN_OVERLAP` of the region lands inside the
    moving image. ``on_failure="raise"`` raises :class:`~RadiomicsLabLib.errors.RadiomicsLabError`
    with that reason instead of returning a refused result.

    ``threads``: ITK threads while registering (ITK's global default is set for the call and
    restored). The default 1 makes repeated calls bit-identical; ITK's multi-threaded Mattes metric
    is not (differences of a few micrometres, enough to move a propagated mask's edge voxel);
    None uses SimpleITK's default (all cores). ``progress(iteration, max_iterations, message)``
    returning ``False`` cancels (:class:`RegistrationCancelled`).
    """
    if kind not in KINDS:
        raise RadiomicsLabError(f"Unknown registration kind '{kind}'; choose one of {', '.join(KINDS)}.")
    if initialise not in INITIALISATIONS:
        raise RadiomicsLabError(f"Unknown initialisation '{initialise}'; choose one of {', '.join(INITIALISATIONS)}.")
    if on_failure not in ON_FAILURE:
        raise RadiomicsLabError(f"Unknown on_failure '{on_failure}'; choose report or raise.")
    if fixed.GetDimension() != moving.GetDimension() or fixed.GetDimension() not in (2, 3):
        raise RadiomicsLabError(
            f"Cannot register a {moving.GetDimension()}D image onto a {fixed.GetDimension()}D image; give two 3D (or two 2D) images.")
    if len(shrink_factors) != len(smoothing_sigmas_mm) or not len(shrink_factors):
        raise RadiomicsLabError("shrink_factors and smoothing_sigmas_mm need one entry per resolution level.")
    if any(int(s) < 1 for s in shrink_factors) or any(not (float(s) >= 0) for s in smoothing_sigmas_mm):
        raise RadiomicsLabError("shrink_factors must be whole numbers >= 1 and smoothing_sigmas_mm numbers >= 0.")
    if samples < 100:
        raise RadiomicsLabError(f"samples must be at least 100; got {samples}.")
    if not (math.isfinite(float(search_mm)) and float(search_mm) >= 0):
        raise RadiomicsLabError(f"search_mm must be a distance >= 0 (mm); got {search_mm}.")
    if threads is not None and int(threads) < 1:
        raise RadiomicsLabError(f"threads must be at least 1 (or None for all cores); got {threads}.")
    fixed_f, moving_f = _as_float(fixed, "fixed"), _as_float(moving, "moving")
    region = _mask_on(fixed_mask, fixed) if fixed_mask is not None else None
    settings = {"kind": kind, "seed": int(seed), "initialise": initialise, "samples": samples, "histogram_bins": histogram_bins,
                "intensity_percentiles": None if intensity_percentiles is None else list(intensity_percentiles),
                "shrink_factors": list(shrink_factors), "smoothing_sigmas_mm": list(smoothing_sigmas_mm),
                "iterations": iterations, "fixed_mask": fixed_mask is not None, "threads": threads}
    config = _Config(int(histogram_bins), int(samples), (int(seed) & 0x7FFFFFFF) or 1, threads, int(iterations),
                     _Progress(progress, int(iterations), kind))
    with _itk_threads(threads):
        if kind == "bspline":
            settings["bspline_mesh_mm"] = bspline_mesh_mm
            result = _register_bspline(fixed_f, moving_f, region, initial_transform, intensity_percentiles,
                                       shrink_factors, smoothing_sigmas_mm, bspline_mesh_mm, config, settings)
        else:
            settings["search_mm"] = float(search_mm)
            result = _register_linear(fixed_f, moving_f, region, kind, initial_transform, initialise, intensity_percentiles,
                                      shrink_factors, smoothing_sigmas_mm, float(search_mm), config, settings)
    if result.failure and on_failure == "raise":
        raise RadiomicsLabError(f"{kind.capitalize()} registration refused: {result.failure}. Check that the images show "
                                "the same region, give a mask around it, or start from an initial transform.")
    return result


@contextmanager
def _itk_threads(threads):
    """ITK's global default number of threads set to ``threads`` for the block (None: left alone), then restored.

    Measured with SimpleITK 2.5: ``ImageRegistrationMethod.SetNumberOfThreads(1)`` alone still leaves repeated
    registrations differing in their last digits; with the global default at 1 they are bit-identical.
    (Only the thread count of ITK filters made meanwhile, in any Python thread, is affected.)"""
    if threads is None:
        yield
        return
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


@dataclass
class _Config:
    bins: int
    samples: int
    seed: int
    threads: int | None
    iterations: int
    progress: object


class _Progress:
    """Adapter from ITK iteration events to ``progress(iteration, max_iterations, message)``; cancels on False."""

    def __init__(self, callback, iterations: int, kind: str):
        self.callback, self.iterations, self.kind, self.cancelled = callback, iterations, kind, False

    def watch(self, method: sitk.ImageRegistrationMethod, stage: str, total: int | None = None, every: int = 1):
        if self.callback is None:
            return

        def report():
            iteration = method.GetOptimizerIteration()
            if iteration % every:
                return
            message = f"{self.kind} registration, {stage}, metric {method.GetMetricValue():.4f}"
            if self.callback(iteration, total or self.iterations, message) is False and not self.cancelled:
                self.cancelled = True
                method.StopRegistration()
        method.AddCommand(sitk.sitkIterationEvent, report)

    def check(self):
        if self.cancelled:
            raise RegistrationCancelled("Registration cancelled; nothing was changed.")


def _method(config: _Config, mask, percentage: float | None) -> sitk.ImageRegistrationMethod:
    """A registration method with the metric set up: Mattes MI, random samples (``percentage`` of the
    fixed level's voxels, drawn with the seed; all voxels when None), linear interpolation, the
    derivative from the moving image's own central differences (see the module docstring)."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.bins)
    if percentage is None:
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        # SimpleITK reads seed 0 as "use the clock"; 0 is taken as 1 so every seed is repeatable.
        method.SetMetricSamplingPercentage(float(percentage), config.seed)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetInterpolator(sitk.sitkLinear)
    if mask is not None:
        method.SetMetricFixedMask(mask)
    if config.threads is not None:
        method.SetNumberOfThreads(int(config.threads))
    return method


def _execute(method, fixed, moving, kind: str):
    try:
        method.Execute(fixed, moving)
    except RuntimeError as error:
        raise RadiomicsLabError(
            f"{kind.capitalize()} registration failed: {str(error).strip().splitlines()[-1]} "
            "Check that the images overlap (same patient, same physical space) or start from an initial transform."
        ) from None


@dataclass
class _Level:
    fixed: sitk.Image
    moving: sitk.Image
    mask: sitk.Image | None
    voxels: int


def _level(fixed, moving, region, factor: int, sigma_mm: float, finest_mm: float) -> _Level:
    """Both images smoothed by ``sigma_mm`` and shrunk to about ``factor x finest_mm`` per axis; the region on the fixed level's grid."""
    fixed_l, moving_l = (_smooth_shrink(image, factor, sigma_mm, finest_mm) for image in (fixed, moving))
    mask = region
    if region is not None and grid_differences(fixed_l, region):
        # a level voxel is in the region when any full-resolution region voxel touches it (never empty)
        mask = sitk.Cast(sitk.Resample(sitk.Cast(region, sitk.sitkFloat32), fixed_l, sitk.Transform(), sitk.sitkLinear,
                                       0.0, sitk.sitkFloat32) > 0, sitk.sitkUInt8)
    voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask))) if mask is not None else int(np.prod(fixed_l.GetSize()))
    return _Level(fixed_l, moving_l, mask, voxels)


def _smooth_shrink(image: sitk.Image, factor: int, sigma_mm: float, finest_mm: float) -> sitk.Image:
    if sigma_mm > 0:
        image = sitk.DiscreteGaussian(image, [float(sigma_mm) ** 2] * image.GetDimension(), 64, 0.01, True)
    shrink = [max(1, int(round(int(factor) * finest_mm / spacing))) for spacing in image.GetSpacing()]
    return sitk.Shrink(image, shrink) if max(shrink) > 1 else image


def _percentage(level: _Level, samples: int) -> float:
    # ITK draws percentage x all voxels of the level, then keeps those in the mask: aim at ``samples`` kept
    return min(1.0, samples / max(1, level.voxels))


def _register_linear(fixed_f, moving_f, region, kind, initial_transform, initialise, percentiles, shrink_factors,
                     sigmas, search_mm, config: _Config, settings: dict) -> RegistrationResult:
    finest = min(fixed_f.GetSpacing())
    candidates = _start_candidates(fixed_f, moving_f, kind, initial_transform, initialise)
    best = None
    for name, start in candidates:
        prepared = _prepare(fixed_f, moving_f, region, start, percentiles, max(sigmas), search_mm)
        coarse = _level(*prepared, shrink_factors[0], sigmas[0], finest)
        transform = _copy(start)
        value = _search(coarse, transform, search_mm, config, kind)
        if best is None or value < best[0]:
            best = (value, name, start, transform, prepared, coarse)
    _, name, start, transform, (fixed_c, moving_c, region_c), coarse = best
    searched = _copy(transform)
    levels, stop, iterations = [], "", 0
    for i, (factor, sigma) in enumerate(zip(shrink_factors, sigmas)):
        level = coarse if i == 0 else _level(fixed_c, moving_c, region_c, factor, sigma, finest)
        method = _method(config, level.mask, _percentage(level, config.samples))
        method.SetInitialTransform(transform, inPlace=True)
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4, numberOfIterations=config.iterations,
                                                        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
        method.SetOptimizerScalesFromPhysicalShift()
        config.progress.watch(method, f"level {i + 1}/{len(shrink_factors)}")
        _execute(method, level.fixed, level.moving, kind)
        config.progress.check()
        stop, iterations = method.GetOptimizerStopConditionDescription(), int(method.GetOptimizerIteration())
        levels.append({"shrink": int(factor), "sigma_mm": float(sigma), "spacing_mm": list(level.fixed.GetSpacing()),
                       "samples": level.voxels if _percentage(level, config.samples) >= 1 else config.samples,
                       "iterations": iterations, "metric": float(method.GetMetricValue()), "stop_condition": stop})
    finest_level = level if shrink_factors[-1] == 1 and sigmas[-1] == 0 else _level(fixed_c, moving_c, region_c, 1, 0.0, finest)
    offset = np.array(searched.GetParameters()[-fixed_f.GetDimension():]) - np.array(start.GetParameters()[-fixed_f.GetDimension():])
    metrics = {"initialisation": name, "search_offset_mm": offset.round(6).tolist(), "levels": levels}
    return _checked(kind, transform, start, finest_level, moving_f, stop, iterations, config, settings, metrics)


def _register_bspline(fixed_f, moving_f, region, initial_transform, percentiles, shrink_factors, sigmas, mesh_mm,
                      config: _Config, settings: dict) -> RegistrationResult:
    """B-spline free-form deformation (ITK's own pyramid: the control grid lives on the fixed image's domain)."""
    start = initial_transform
    fixed_c, moving_c, region_c = _prepare(fixed_f, moving_f, region, start, percentiles, max(sigmas), 0.0)
    voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(region_c))) if region_c is not None else int(np.prod(fixed_c.GetSize()))
    method = _method(config, region_c, None)
    method.SetMetricSamplingStrategy(method.RANDOM)
    dimension = fixed_c.GetDimension()
    percentages = [min(1.0, config.samples * s ** dimension / voxels) for s in shrink_factors]
    method.SetMetricSamplingPercentagePerLevel(percentages, config.seed)
    method.SetShrinkFactorsPerLevel([int(s) for s in shrink_factors])
    method.SetSmoothingSigmasPerLevel([float(s) for s in sigmas])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    mesh = [max(1, int(round(sz * sp / mesh_mm))) for sz, sp in zip(fixed_f.GetSize(), fixed_f.GetSpacing())]
    transform = sitk.BSplineTransformInitializer(fixed_c, mesh, order=3)
    if initial_transform is not None:
        method.SetMovingInitialTransform(initial_transform)
    method.SetInitialTransform(transform, inPlace=True)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=config.iterations,
                                maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * config.iterations,
                                costFunctionConvergenceFactor=1e7)
    config.progress.watch(method, "B-spline")
    _execute(method, fixed_c, moving_c, "bspline")
    config.progress.check()
    stop = method.GetOptimizerStopConditionDescription()
    result_transform = transform if initial_transform is None else sitk.CompositeTransform([initial_transform, transform])
    finest_level = _level(fixed_c, moving_c, region_c, 1, 0.0, min(fixed_f.GetSpacing()))
    identity_start = start if start is not None else sitk.Transform(dimension, sitk.sitkIdentity)
    return _checked("bspline", result_transform, identity_start, finest_level, moving_f, stop,
                    int(method.GetOptimizerIteration()), config, settings, {"initialisation": "initial_transform" if start else "none"})


def _checked(kind, transform, start, level: _Level, moving_full, stop, iterations, config, settings, metrics) -> RegistrationResult:
    """The result, with the checks of :func:`register` applied (metric vs start and identity, information, overlap)."""
    dimension = level.fixed.GetDimension()
    identity = sitk.Transform(dimension, sitk.sitkIdentity)
    final = _dense_metric(level, transform, config)
    at_start = _dense_metric(level, start, config)
    at_identity = _dense_metric(level, identity, config)
    overlap = _overlap(level, moving_full, transform)
    metrics.update({"identity": at_identity, "start": at_start, "final": final, "overlap": overlap})
    reasons = []
    references = [v for v in (at_start, at_identity) if v is not None]
    if final is None:
        reasons.append("no sample of the metric region lands inside the moving image at the result")
    else:
        if overlap < MIN_OVERLAP:
            reasons.append(f"only {100 * overlap:.0f}% of the metric region lands inside the moving image at the result "
                           f"(at least {100 * MIN_OVERLAP:.0f}% needed)")
        if -final < MIN_INFORMATION:
            reasons.append(f"the images share almost no information at the result (mutual information {-final:.3f} nats, "
                           f"at least {MIN_INFORMATION} needed)")
        if references and final > min(references) + METRIC_TOLERANCE * abs(min(references)):
            which = "the starting alignment's" if at_start is not None and min(references) == at_start else "the identity's"
            reasons.append(f"the final metric {final:.4f} is worse than {which} {min(references):.4f}")
    if not _converged(stop):
        reasons.append(f"the optimiser stopped on its iteration limit ({iterations} iterations at the finest level)")
    failure = "; ".join(reasons)
    if failure:
        stop = f"{stop.strip()}; refused: {failure}"
    converged = not failure
    metric = final if final is not None else float("nan")
    return RegistrationResult(kind, transform, float(metric), converged, stop, int(iterations), settings, failure, metrics)


def _dense_metric(level: _Level, transform, config: _Config) -> float | None:
    """Mattes MI over every region voxel of ``level`` under ``transform``; None when nothing lands in the moving image."""
    method = _method(config, level.mask, None)
    method.SetInitialTransform(transform, inPlace=False)
    try:
        value = method.MetricEvaluate(level.fixed, level.moving)
    except RuntimeError:
        return None
    return float(value) if math.isfinite(value) and abs(value) < 1e30 else None


def _overlap(level: _Level, moving_full: sitk.Image, transform) -> float:
    """Fraction of the level's region voxels that ``transform`` maps inside the (uncropped) moving image."""
    ones = sitk.Image(moving_full.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving_full)
    inside = sitk.GetArrayFromImage(sitk.Resample(ones, level.fixed, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    region = sitk.GetArrayViewFromImage(level.mask).astype(bool) if level.mask is not None else np.ones(inside.shape, bool)
    return float(np.count_nonzero(inside[region])) / max(1, int(np.count_nonzero(region)))


def _search(level: _Level, transform, search_mm: float, config: _Config, kind: str) -> float:
    """Exhaustive search of translations within ``search_mm`` of ``transform`` (steps of :data:`SEARCH_STEP_MM`) at
    ``level``; ``transform`` is moved to the best and that metric (sampled, lower is better) is returned."""
    steps = int(round(search_mm / SEARCH_STEP_MM))
    dimension = level.fixed.GetDimension()
    n = transform.GetNumberOfParameters()
    method = _method(config, level.mask, _percentage(level, config.samples))
    method.SetInitialTransform(transform, inPlace=True)
    method.SetOptimizerAsExhaustive([0] * (n - dimension) + [steps] * dimension, SEARCH_STEP_MM)
    method.SetOptimizerScales([1.0] * n)
    values = []
    method.AddCommand(sitk.sitkIterationEvent, lambda: values.append((method.GetMetricValue(), method.GetOptimizerPosition())))
    config.progress.watch(method, "translation search", (2 * steps + 1) ** dimension, every=50)
    _execute(method, level.fixed, level.moving, kind)
    config.progress.check()
    valid = [v for v in values if math.isfinite(v[0]) and abs(v[0]) < 1e30]
    if not valid:
        raise RadiomicsLabError(f"{kind.capitalize()} registration failed: no sample of the metric region lands inside the "
                                "moving image near the start. Check that the images overlap or start from an initial transform.")
    value, position = min(valid)
    transform.SetParameters(position)
    return float(value)


def _copy(transform):
    copied = sitk.Transform(transform)
    return copied.Downcast() if hasattr(copied, "Downcast") else copied


def _prepare(fixed_f, moving_f, region, start, percentiles, sigma_mm, search_mm):
    """Fixed and moving cropped to the region (when there is one) and clamped to its intensity percentiles."""
    if region is not None:
        fixed_f, moving_f, region = _crop_to_region(fixed_f, moving_f, region, start, sigma_mm, MOVING_MARGIN_MM + search_mm)
    fixed_f, moving_f = _clamp_to_region(fixed_f, moving_f, region, start, percentiles)
    return fixed_f, moving_f, region


#: Room (mm) left around the region's footprint in the moving image when cropping it (plus the search distance).
MOVING_MARGIN_MM = 40.0


def _crop_to_region(fixed, moving, region, start, sigma_mm, margin_mm=MOVING_MARGIN_MM):
    """Fixed image and mask cropped to the mask's bounding box (plus 3 sigma of smoothing), the moving
    image to that box's footprint under ``start`` plus ``margin_mm``: same result, less work."""
    array = sitk.GetArrayViewFromImage(region)
    nonzero = np.argwhere(array)
    pad = [int(np.ceil(3 * sigma_mm / sp)) + 2 for sp in fixed.GetSpacing()]
    low = [max(0, int(v) - p) for v, p in zip(nonzero.min(axis=0)[::-1], pad)]
    high = [min(size, int(v) + 1 + p) for v, p, size in zip(nonzero.max(axis=0)[::-1], pad, fixed.GetSize())]
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
    fixed, region = fixed[box], region[box]
    corners = np.array(np.meshgrid(*[(0, s - 1) for s in fixed.GetSize()], indexing="ij")).reshape(fixed.GetDimension(), -1).T
    points = [fixed.TransformIndexToPhysicalPoint([int(i) for i in c]) for c in corners]
    if start is not None:
        points = [start.TransformPoint(p) for p in points]
    indices = np.array([moving.TransformPhysicalPointToContinuousIndex(p) for p in points])
    margin = [margin_mm / sp for sp in moving.GetSpacing()]
    low = [max(0, int(np.floor(v - m))) for v, m in zip(indices.min(axis=0), margin)]
    high = [min(size, int(np.ceil(v + m)) + 1) for v, m, size in zip(indices.max(axis=0), margin, moving.GetSize())]
    if any(hi <= lo for lo, hi in zip(low, high)):
        raise RadiomicsLabError("The moving image does not overlap the fixed image's registration region; "
                                "start from an initial transform or check that both images show the same patient.")
    return fixed, moving[tuple(slice(lo, hi) for lo, hi in zip(low, high))], region


def _clamp_to_region(fixed: sitk.Image, moving: sitk.Image, region, start, percentiles) -> tuple[sitk.Image, sitk.Image]:
    """Both images clamped to their ``percentiles`` (e.g. 0.5 and 99.5) inside the registration region.

    The fixed image's region is ``region`` (all voxels without one); the moving image's is where
    the region's voxel centres land under the starting transform ``start``.
    """
    if percentiles is None:
        return fixed, moving
    inside = sitk.GetArrayViewFromImage(region).astype(bool) if region is not None else slice(None)
    landed = resample(moving, fixed, start)
    clamped = []
    for image, values in ((fixed, sitk.GetArrayViewFromImage(fixed)[inside]), (moving, sitk.GetArrayViewFromImage(landed)[inside])):
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise RadiomicsLabError("The moving image does not overlap the fixed image's registration region; "
                                    "start from an initial transform or check that both images show the same patient.")
        low, high = np.percentile(values, percentiles)
        clamped.append(sitk.Clamp(image, sitk.sitkFloat32, float(low), float(high)) if high > low else image)
    return clamped[0], clamped[1]


def _converged(stop_condition: str) -> bool:
    """Whether the optimiser stopped on a convergence criterion (step, gradient or cost tolerance) rather
    than on its iteration or evaluation limit (which L-BFGS-B reports as 'User requested')."""
    text = stop_condition.lower()
    return any(reason in text for reason in ("step too small", "tolerance", "convergence checker passed", "converged"))


def _start_candidates(fixed, moving, kind, initial_transform, initialise) -> list:
    """(name, transform) starts to try: one for none/geometry/moments, up to three (duplicates dropped) for auto."""
    if initialise != "auto":
        return [(initialise if initial_transform is None else "initial_transform",
                 _linear_start(fixed, moving, kind, initial_transform, initialise))]
    first = _linear_start(fixed, moving, kind, initial_transform, "none")
    candidates = [("initial_transform" if initial_transform is not None else "none", first)]
    if initial_transform is not None:
        return candidates
    for mode in ("geometry", "moments"):
        transform = _linear_start(fixed, moving, kind, None, mode)
        shift = np.array(transform.GetParameters()[-fixed.GetDimension():])
        if all(np.linalg.norm(shift - np.array(t.GetParameters()[-fixed.GetDimension():])) > SEARCH_STEP_MM / 2
               for _, t in candidates):
            candidates.append((mode, transform))
    return candidates


def _linear_start(fixed: sitk.Image, moving: sitk.Image, kind: str, initial_transform, initialise: str) -> sitk.Transform:
    """The rigid (Euler) or affine transform to optimise, started from ``initial_transform``, the identity or the
    image centres (geometry: the images' centres; moments: the centroids of the intensities above their minimum)."""
    dimension = fixed.GetDimension()
    if kind == "rigid":
        transform = sitk.Euler3DTransform() if dimension == 3 else sitk.Euler2DTransform()
    else:
        transform = sitk.AffineTransform(dimension)
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()])
    if initial_transform is not None:
        matrix = affine_matrix(initial_transform)
        transform.SetCenter(centre)
        if kind == "rigid":
            transform.SetMatrix(_nearest_rotation(matrix[:dimension, :dimension]).ravel().tolist())
        else:
            transform.SetMatrix(matrix[:dimension, :dimension].ravel().tolist())
        a = np.array(transform.GetMatrix()).reshape(dimension, dimension)
        transform.SetTranslation((matrix[:dimension, dimension] + a @ centre - np.array(centre)).tolist())
        return transform
    if initialise == "none":
        transform.SetCenter(centre)
        return transform
    if initialise == "geometry":
        return sitk.CenteredTransformInitializer(fixed, moving, transform, sitk.CenteredTransformInitializerFilter.GEOMETRY)
    # moments of intensity masses: CT air (-1000 HU) must weigh nothing, not negatively
    weights = [image - float(sitk.GetArrayViewFromImage(image).min()) for image in (fixed, moving)]
    return sitk.CenteredTransformInitializer(*weights, transform, sitk.CenteredTransformInitializerFilter.MOMENTS)


def _nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The rotation closest to ``matrix`` (polar decomposition by SVD: R = U V^T with det +1)."""
    u, _, vt = np.linalg.svd(matrix)
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        u[:, -1] *= -1
        rotation = u @ vt
    return rotation


def _as_float(image: sitk.Image, role: str) -> sitk.Image:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise RadiomicsLabError(f"The {role} image has several components per voxel; give a scalar image.")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise RadiomicsLabError(f"The {role} image has NaN or infinite voxels; replace them before registering.")
    if float(array.min()) == float(array.max()):
        raise RadiomicsLabError(f"The {role} image is constant ({float(array.min()):g} everywhere); nothing to register.")
    return sitk.Cast(image, sitk.sitkFloat32)


def _mask_on(mask: sitk.Image, image: sitk.Image) -> sitk.Image:
    """``mask`` as a 0/1 UInt8 image on ``image``'s grid (nearest neighbour when the grids differ)."""
    binary = sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)
    if grid_differences(image, binary):
        binary = sitk.Resample(binary, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    else:
        binary.CopyInformation(image)
    if not sitk.GetArrayViewFromImage(binary).any():
        raise RadiomicsLabError("The registration mask is empty on the fixed image's grid; give a mask that overlaps the fixed image.")
    return binary


def resample(moving: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None = None,
             interpolator: str = "linear", default_value: float = float("nan"), pixel_type=None) -> sitk.Image:
    """``moving`` on ``reference``'s grid: ``out(x) = moving(T(x))`` for each reference voxel centre ``x``.

    ``transform`` defaults to the identity (images already in the same physical space);
    points outside the moving image get ``default_value`` (NaN by default, so they can be found);
    the output is Float32 unless ``pixel_type`` says otherwise (nearest neighbour keeps the input type).
    """
    if interpolator not in INTERPOLATORS:
        raise RadiomicsLabError(f"Unknown interpolator '{interpolator}'; choose one of {', '.join(INTERPOLATORS)}.")
    if pixel_type is None:
        pixel_type = moving.GetPixelID() if interpolator == "nearest" else sitk.sitkFloat32
    return sitk.Resample(moving, reference, transform or sitk.Transform(reference.GetDimension(), sitk.sitkIdentity),
                         INTERPOLATORS[interpolator], float(default_value), pixel_type)


def affine_matrix(transform: sitk.Transform) -> np.ndarray:
    """Homogeneous matrix ``M`` (LPS, mm) with ``T(x) = M[:d, :d] x + M[:d, d]`` of a linear transform.

    For matrix-offset transforms ``T(x) = A (x - c) + c + t``, so the offset is ``t + c - A c``;
    composite transforms multiply (the last added is applied first, ITK's order).
    """
    dimension = transform.GetDimension()
    name = transform.GetName()
    if name == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        matrix = np.eye(dimension + 1)
        for i in range(composite.GetNumberOfTransforms()):
            matrix = matrix @ affine_matrix(composite.GetNthTransform(i))
        return matrix
    matrix = np.eye(dimension + 1)
    if name == "IdentityTransform":
        return matrix
    if name == "TranslationTransform":
        matrix[:dimension, dimension] = sitk.TranslationTransform(transform).GetOffset()
        return matrix
    typed = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if not all(hasattr(typed, m) for m in ("GetMatrix", "GetTranslation", "GetCenter")):
        raise RadiomicsLabError(f"A {name} is not a linear transform; only rigid and affine transforms have a matrix.")
    a = np.array(typed.GetMatrix()).reshape(dimension, dimension)
    c, t = np.array(typed.GetCenter()), np.array(typed.GetTranslation())
    matrix[:dimension, :dimension] = a
    matrix[:dimension, dimension] = t + c - a @ c
    return matrix


def transform_from_matrix(matrix) -> sitk.AffineTransform:
    """The ``sitk.AffineTransform`` of a homogeneous matrix (inverse of :func:`affine_matrix`)."""
    matrix = np.asarray(matrix, dtype=float)
    dimension = matrix.shape[0] - 1
    transform = sitk.AffineTransform(dimension)
    transform.SetMatrix(matrix[:dimension, :dimension].ravel().tolist())
    transform.SetTranslation(matrix[:dimension, dimension].tolist())
    return transform


def rotation_angle_degrees(matrix) -> float:
    """Angle of the rotation part of a rigid 3D matrix: ``acos((trace(R) - 1) / 2)`` in degrees."""
    rotation = np.asarray(matrix, dtype=float)[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0))))
