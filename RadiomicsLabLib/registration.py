"""Image registration with SimpleITK: rigid, affine and B-spline, Mattes mutual information, multi-resolution.

Conventions (ITK's): a registration transform ``T`` maps points of the *fixed* image's physical
space (LPS, mm) to the *moving* image's space, so ``resample(moving, fixed, T)`` puts the moving
image on the fixed grid, aligned. The metric is Mattes mutual information (Mattes et al., IEEE TMI
22(1), 2003), ``-MI`` as ITK reports it: lower is better, 0 means no shared information.

>>> result = register(ct, mr, kind="rigid", seed=7)
>>> result.metric, result.converged, result.stop_condition
>>> mr_on_ct = resample(mr, ct, result.transform)
"""

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .errors import Cancelled, RadiomicsLabError
from .validation import grid_differences

KINDS = ("rigid", "affine", "bspline")
INTERPOLATORS = {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}


class RegistrationCancelled(Cancelled):
    """The user cancelled a running registration; nothing was changed."""


@dataclass
class RegistrationResult:
    """Outcome of :func:`register`.

    ``transform`` maps fixed-space points to moving-space points (resampling direction);
    ``metric`` is the final Mattes mutual information (``-MI``, lower is better) at the finest
    level; ``converged`` is False when the optimiser stopped on its iteration limit at the finest
    level; ``stop_condition`` is the optimiser's own words.
    """

    kind: str
    transform: sitk.Transform
    metric: float
    converged: bool
    stop_condition: str
    iterations: int
    settings: dict = field(default_factory=dict)

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix (LPS) of a rigid or affine result; see :func:`affine_matrix`."""
        return affine_matrix(self.transform)


def register(fixed: sitk.Image, moving: sitk.Image, kind: str = "rigid", fixed_mask: sitk.Image | None = None,
             seed: int = 1, initial_transform: sitk.Transform | None = None, initialise: str = "none",
             samples: int = 10_000, histogram_bins: int = 50, intensity_percentiles=(0.5, 99.5),
             shrink_factors=(2, 1), smoothing_sigmas_mm=(2.0, 0.0), iterations: int = 300,
             bspline_mesh_mm: float = 50.0, progress=None) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` by maximising Mattes mutual information.

    ``kind``: ``rigid`` (Euler angles + translation, 6 parameters in 3D), ``affine`` (12) or
    ``bspline`` (free-form deformation on a control grid of about ``bspline_mesh_mm`` spacing,
    L-BFGS-B; give the rigid/affine result as ``initial_transform`` to start from it).
    Rigid and affine use regular-step gradient descent with parameter scales from physical shift
    (a unit change of each parameter moves voxels by comparable distances; first step 2, stop when
    the step falls below 0.0001, a tenth of a micrometre of voxel motion), started from the
    identity (``initialise="none"``: images of one patient already share a physical space),
    ``initial_transform``, the image centres (``"geometry"``) or the intensity centroids
    (``"moments"``). Multi-resolution: one level per ``shrink_factors`` entry, Gaussian smoothing
    ``smoothing_sigmas_mm``. The metric uses about ``samples`` random points per level inside
    ``fixed_mask`` (the whole fixed image without one), drawn with ``seed``, so a seed gives
    repeatable results. Intensities are clamped to their ``intensity_percentiles`` inside the
    region (moving: where the region lands under the starting transform), so the 50-bin joint
    histogram resolves the tissue there instead of air and bone.
    ``progress(iteration, max_iterations, message)`` returning ``False`` cancels
    (:class:`RegistrationCancelled`).
    """
    if kind not in KINDS:
        raise RadiomicsLabError(f"Unknown registration kind '{kind}'; choose one of {', '.join(KINDS)}.")
    if initialise not in ("geometry", "moments", "none"):
        raise RadiomicsLabError(f"Unknown initialisation '{initialise}'; choose geometry, moments or none.")
    if fixed.GetDimension() != moving.GetDimension() or fixed.GetDimension() not in (2, 3):
        raise RadiomicsLabError(
            f"Cannot register a {moving.GetDimension()}D image onto a {fixed.GetDimension()}D image; give two 3D (or two 2D) images.")
    if len(shrink_factors) != len(smoothing_sigmas_mm):
        raise RadiomicsLabError("shrink_factors and smoothing_sigmas_mm need one entry per resolution level.")
    if samples < 100:
        raise RadiomicsLabError(f"samples must be at least 100; got {samples}.")
    fixed_f, moving_f = _as_float(fixed, "fixed"), _as_float(moving, "moving")
    region = _mask_on(fixed_mask, fixed) if fixed_mask is not None else None
    region_voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(region))) if region is not None else int(np.prod(fixed.GetSize()))
    if kind == "bspline":
        start = initial_transform
    else:
        transform = start = _linear_start(fixed_f, moving_f, kind, initial_transform, initialise)
    if region is not None:
        fixed_f, moving_f, region = _crop_to_region(fixed_f, moving_f, region, start, max(smoothing_sigmas_mm))
    fixed_f, moving_f = _clamp_to_region(fixed_f, moving_f, region, start, intensity_percentiles)

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(histogram_bins))
    method.SetMetricSamplingStrategy(method.RANDOM)
    # ITK draws percentage x all voxels, then keeps those in the mask: aim at ``samples`` kept per level
    percentages = [min(1.0, samples * s ** fixed.GetDimension() / region_voxels) for s in shrink_factors]
    # SimpleITK reads seed 0 as "use the clock"; 0 is taken as 1 so every seed is repeatable.
    method.SetMetricSamplingPercentagePerLevel(percentages, (int(seed) & 0x7FFFFFFF) or 1)
    method.SetInterpolator(sitk.sitkLinear)
    if region is not None:
        method.SetMetricFixedMask(region)
    method.SetShrinkFactorsPerLevel([int(s) for s in shrink_factors])
    method.SetSmoothingSigmasPerLevel([float(s) for s in smoothing_sigmas_mm])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()

    if kind == "bspline":
        mesh = [max(1, int(round(sz * sp / bspline_mesh_mm))) for sz, sp in zip(fixed.GetSize(), fixed.GetSpacing())]
        transform = sitk.BSplineTransformInitializer(fixed_f, mesh, order=3)
        if initial_transform is not None:
            method.SetMovingInitialTransform(initial_transform)
        method.SetInitialTransform(transform, inPlace=True)
        method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=int(iterations),
                                    maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * int(iterations),
                                    costFunctionConvergenceFactor=1e7)
    else:
        method.SetInitialTransform(transform, inPlace=True)
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4, numberOfIterations=int(iterations),
                                                        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
        method.SetOptimizerScalesFromPhysicalShift()

    cancelled = []
    if progress is not None:
        def report():
            message = f"{kind} registration, level {method.GetCurrentLevel() + 1}/{len(shrink_factors)}, metric {method.GetMetricValue():.4f}"
            if progress(method.GetOptimizerIteration(), int(iterations), message) is False and not cancelled:
                cancelled.append(True)
                method.StopRegistration()
        method.AddCommand(sitk.sitkIterationEvent, report)
    try:
        method.Execute(fixed_f, moving_f)
    except RuntimeError as error:
        raise RadiomicsLabError(
            f"{kind.capitalize()} registration failed: {str(error).strip().splitlines()[-1]} "
            "Check that the images overlap (same patient, same physical space) or start from an initial transform."
        ) from None
    if cancelled:
        raise RegistrationCancelled("Registration cancelled; nothing was changed.")
    stop = method.GetOptimizerStopConditionDescription()
    result_transform = transform
    if kind == "bspline" and initial_transform is not None:
        result_transform = sitk.CompositeTransform([initial_transform, transform])
    settings = {"kind": kind, "seed": int(seed), "initialise": initialise, "samples": samples,
                "histogram_bins": histogram_bins, "intensity_percentiles": list(intensity_percentiles), "shrink_factors": list(shrink_factors),
                "smoothing_sigmas_mm": list(smoothing_sigmas_mm), "iterations": iterations,
                "fixed_mask": fixed_mask is not None}
    if kind == "bspline":
        settings["bspline_mesh_mm"] = bspline_mesh_mm
    return RegistrationResult(kind, result_transform, float(method.GetMetricValue()), _converged(stop),
                              stop, int(method.GetOptimizerIteration()), settings)


#: Room (mm) left around the region's footprint in the moving image when cropping it.
MOVING_MARGIN_MM = 40.0


def _crop_to_region(fixed, moving, region, start, sigma_mm):
    """Fixed image and mask cropped to the mask's bounding box (plus 3 sigma of smoothing), the moving
    image to that box's footprint under ``start`` plus :data:`MOVING_MARGIN_MM`: same result, less work."""
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
    margin = [MOVING_MARGIN_MM / sp for sp in moving.GetSpacing()]
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


def _linear_start(fixed: sitk.Image, moving: sitk.Image, kind: str, initial_transform, initialise: str) -> sitk.Transform:
    """The rigid (Euler) or affine transform to optimise, started from ``initial_transform`` or the image centres."""
    dimension = fixed.GetDimension()
    if kind == "rigid":
        transform = sitk.Euler3DTransform() if dimension == 3 else sitk.Euler2DTransform()
    else:
        transform = sitk.AffineTransform(dimension)
    if initial_transform is not None:
        matrix = affine_matrix(initial_transform)
        centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()])
        transform.SetCenter(centre)
        if kind == "rigid":
            transform.SetMatrix(_nearest_rotation(matrix[:dimension, :dimension]).ravel().tolist())
        else:
            transform.SetMatrix(matrix[:dimension, :dimension].ravel().tolist())
        a = np.array(transform.GetMatrix()).reshape(dimension, dimension)
        transform.SetTranslation((matrix[:dimension, dimension] + a @ centre - np.array(centre)).tolist())
        return transform
    if initialise == "none":
        centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()])
        transform.SetCenter(centre)
        return transform
    mode = sitk.CenteredTransformInitializerFilter.GEOMETRY if initialise == "geometry" else sitk.CenteredTransformInitializerFilter.MOMENTS
    return sitk.CenteredTransformInitializer(fixed, moving, transform, mode)


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
