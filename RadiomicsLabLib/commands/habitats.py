"""``radiomicslab habitats``: multi-channel habitats of a tumour, or population-level habitats of a cohort.

Module-level imports stay click + stdlib (the CLI imports every command at start-up).
"""

import time
from pathlib import Path

import click

from ..errors import RadiomicsLabError

MASK_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".mhd", ".nhdr")
#: The files a run writes into its output folder besides the habitat maps (RadiomicsLabLib.habitats.write_outputs).
OUTPUT_FILES = ("habitats.csv", "cohort.csv", "features.csv", "k_scores.csv", "habitats.provenance.json",
                "habitat_fractions.png", "channel_means.png")


@click.command("habitats")
@click.argument("mask", required=False, type=click.Path(path_type=Path))
@click.option("--channel", "channels", multiple=True, metavar="NAME=IMAGE",
              help="A channel: its name and image file (repeatable, in order; e.g. --channel CT=ct.nii.gz --channel PET=pet.nii.gz).")
@click.option("-k", "--habitats", "k", default="4", show_default=True, help="Number of habitats, or 'auto' (chosen by --criterion over --k-range).")
@click.option("--method", type=click.Choice(["kmeans", "gmm", "agglomerative"]), default="kmeans", show_default=True,
              help="k-means, Gaussian mixture, or Ward agglomerative clustering on supervoxels.")
@click.option("--criterion", type=click.Choice(["silhouette", "calinski-harabasz", "bic"]), default="silhouette", show_default=True,
              help="With -k auto: the score that picks k (bic needs --method gmm).")
@click.option("--k-range", default="2:8", show_default=True, help="With -k auto: the k tried, LOW:HIGH.")
@click.option("--cohort", type=click.Path(path_type=Path), default=None,
              help="Cohort CSV (columns id,image,mask,channel: one row per patient and channel, paths relative to it) or a "
                   "folder of patients (<channel>_image / <channel>_mask files): fit population-level habitats on all its "
                   "patients pooled; without MASK every patient is labelled, with MASK only MASK's patient.")
@click.option("--mask-channel", default=None, help="With --cohort: the channel whose mask is the ROI (default: the first channel).")
@click.option("--registration", type=click.Choice(["off", "resample", "rigid", "affine", "bspline"]), default="off", show_default=True,
              help="How channels reach the mask's grid: off (they must be on it), resample (already aligned in physical "
                   "space), or register onto the first channel (Mattes mutual information).")
@click.option("--normalise", type=click.Choice(["zscore", "percentile", "none"]), default="zscore", show_default=True,
              help="Per-channel normalisation inside the ROI.")
@click.option("--scope", type=click.Choice(["patient", "cohort"]), default="patient", show_default=True,
              help="Normalise with each patient's ROI statistics, or with the pooled cohort's.")
@click.option("--smooth", "smoothing_mm", type=float, default=0.0, show_default=True, help="Gaussian smoothing inside the ROI, sigma in mm (0 = none).")
@click.option("--min-island", "min_island_mm3", type=float, default=0.0, show_default=True,
              help="Merge habitat pieces smaller than this volume (mm^3) into their neighbouring habitat (0 = keep all).")
@click.option("--nan", "nan_policy", type=click.Choice(["error", "omit", "fill"]), default="error", show_default=True,
              help="NaN voxels in the ROI: refuse, leave them out (label 0), or fill with the channel's median.")
@click.option("--supervoxels", default=None, help="Cluster SLIC supervoxels instead of voxels: 'auto' or a number per patient "
                                                  "(default: auto for agglomerative, voxels otherwise).")
@click.option("--order-by", default=None, help="Channel whose level orders the habitats (default: the first channel).")
@click.option("--feature-map", "feature_maps", multiple=True, metavar="[CHANNEL:]FEATURE",
              help="Also cluster a voxel-wise feature map made inside the ROI, as channel CHANNEL:FEATURE (repeatable, after "
                   "the image channels; FEATURE alone: a map of the first channel; e.g. --feature-map glcm_Contrast "
                   "--feature-map PET:firstorder_Mean; names or families as in 'radiomicslab maps').")
@click.option("--map-radius", type=int, default=1, show_default=True, help="Kernel radius of the --feature-map maps in voxels (1: 3 x 3 x 3).")
@click.option("--map-definition", type=click.Choice(["ibsi", "pyradiomics"]), default="ibsi", show_default=True,
              help="Definition of the --feature-map maps: RadiomicsLab's IBSI engine or pyradiomics' voxel-based mode.")
@click.option("--map-params", default=None,
              help="Settings of the --feature-map maps (e.g. the bin width): a preset name or parameter file, as 'radiomicslab maps --params'.")
@click.option("--label", type=int, default=None, help="Label value of the ROI in MASK (default: every non-zero voxel).")
@click.option("--patient", "patient_name", default=None, help="Name of MASK's patient in the tables (default: MASK's file name).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: the same seed gives the same habitats.")
@click.option("--max-samples", type=int, default=50_000, show_default=True, help="Most rows (voxels or supervoxels) the model is fitted on.")
@click.option("--features", "params", default=None,
              help="Also extract radiomic features of every habitat in every channel with these settings (preset or parameter file).")
@click.option("-o", "--output-dir", required=True, type=click.Path(path_type=Path), help="Folder for the results.")
def command(mask, channels, k, method, criterion, k_range, cohort, mask_channel, registration, normalise, scope, smoothing_mm,
            min_island_mm3, nan_policy, supervoxels, order_by, feature_maps, map_radius, map_definition, map_params, label,
            patient_name, seed, max_samples, params, output_dir):
    """Habitats of a tumour: cluster the ROI of MASK by the values of several co-registered channels.

    Writes DIR/habitats.nrrd (a label map on MASK's grid: 0 outside the ROI, habitats 1..k inside,
    ordered by the first channel), DIR/habitats.csv (volume, fraction and channel means per habitat:
    the image channels, then the --feature-map channels), DIR/cohort.csv, DIR/habitat_fractions.png,
    DIR/channel_means.png and DIR/habitats.provenance.json; with --cohort and no MASK,
    DIR/<patient>/habitats.nrrd for every patient.
    """
    started = time.perf_counter()
    if mask is None and cohort is None:
        raise click.UsageError("Give MASK and --channel NAME=IMAGE options, or --cohort cohort.csv.")
    named = _parse_channels(channels)
    if mask is not None and not named:
        raise RadiomicsLabError("Give at least one channel: --channel NAME=IMAGE (repeatable, e.g. --channel CT=ct.nii.gz).")
    if mask is None and (named or label is not None or patient_name):
        raise click.UsageError("--channel, --label and --patient describe MASK; with --cohort alone use the cohort file's columns.")
    from ..validation import check_label_value

    check_label_value(label)
    n_habitats = _parse_k(k)
    k_low_high = _parse_range(k_range)
    supervoxels = _parse_supervoxels(supervoxels)

    from ..fileio import check_output, check_outputs
    from ..habitats import Patient, cohort_patients, feature_map_names, fit_habitats, write_outputs
    from ..imageio import read_image
    settings = None
    if params is not None:
        from ..settings import load_settings

        settings = load_settings(params)
    if mask is not None:
        for path in [mask, *named.values()]:
            if not Path(path).exists():
                raise RadiomicsLabError(f"Cannot read '{path}': no such file or folder; check the path.")
    cohort_files = cohort_patients(cohort, mask_channel, list(named) or None) if cohort is not None else []
    map_settings = None
    if map_params:  # a parameter file by its full path in the provenance, or a preset name
        map_settings = {"params": str(Path(map_params).resolve()) if Path(map_params).is_file() else map_params}
    feature_map_names(feature_maps, list(named) or list(cohort_files[0].channels), map_radius, map_definition, map_settings)
    target_name = patient_name or _stem(mask) if mask is not None else None
    if mask is not None and target_name in {f.name for f in cohort_files}:
        raise RadiomicsLabError(f"Patient '{target_name}' is also in the cohort file; give MASK's patient another name with --patient.")
    map_paths = ([output_dir / "habitats.nrrd"] if mask is not None
                 else [output_dir / _safe(f.name) / "habitats.nrrd" for f in cohort_files])
    inputs = [("mask", mask), ("cohort", cohort), ("feature-map parameter file", map_params), ("parameter file", params)]
    inputs += [(f"channel '{name}'", path) for name, path in named.items()]
    for files in cohort_files:
        inputs += [(f"mask of patient '{files.name}'", files.mask)]
        inputs += [(f"channel '{c}' of patient '{files.name}'", path) for c, path in files.channels.items()]
    check_output(output_dir, inputs, "folder")
    check_outputs([*map_paths, *(output_dir / name for name in OUTPUT_FILES)], inputs)

    bar = _progress_bar()
    patients = [files.load() for files in cohort_files]
    target = None
    if mask is not None:
        target = Patient(target_name, read_image(mask, "mask"),
                         {name: read_image(path, f"channel '{name}'") for name, path in named.items()}, label)
    options = dict(criterion=criterion.replace("-", "_"), k_range=k_low_high, normalisation=normalise, scope=scope,
                   smoothing_mm=smoothing_mm, registration=registration, nan_policy=nan_policy,
                   min_island_mm3=min_island_mm3, supervoxels=supervoxels, max_samples=max_samples,
                   order_by=order_by, seed=seed, feature_maps=list(feature_maps) or None, map_radius=map_radius,
                   map_definition=map_definition, map_settings=map_settings, progress=bar)
    try:
        model, results = fit_habitats(patients or [target], n_habitats, method, **options)
        if target is not None and patients:
            results = [model.label(target)]
    finally:
        bar.close()
    labelled = [target] if target is not None else patients
    features = None
    if settings is not None:
        from ..habitats import habitat_features

        bar = _progress_bar()
        try:
            features = {p.name: habitat_features(p, r, settings, progress=lambda done, total, segment, name=p.name:
                                                 bar(done, total, f"{name} features: {segment}"))
                        for p, r in zip(labelled, results)}
        finally:
            bar.close()
    inputs = {"mask": str(mask.resolve()) if mask is not None else None, "cohort": str(cohort.resolve()) if cohort else None,
              "channels": {n: str(Path(p).resolve()) for n, p in named.items()}, "settings": params}
    write_outputs(output_dir, model, results, map_paths, features, inputs)
    _report(model, results, output_dir, time.perf_counter() - started)


def _parse_channels(channels) -> dict:
    named = {}
    for text in channels:
        name, sep, path = text.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise RadiomicsLabError(f"--channel '{text}' is not NAME=IMAGE; write e.g. --channel CT=ct.nii.gz.")
        if name in named:
            raise RadiomicsLabError(f"Channel name '{name}' is given twice; give each channel its own name.")
        named[name] = Path(path)
    return named


def _parse_k(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        k = int(text)
    except ValueError:
        raise RadiomicsLabError(f"-k '{text}' is not a number of habitats; give a whole number >= 1 or 'auto'.") from None
    if k < 1:
        raise RadiomicsLabError(f"-k {k}: the number of habitats must be at least 1.")
    return k


def _parse_range(text: str) -> tuple:
    try:
        low, high = (int(v) for v in text.split(":"))
    except ValueError:
        raise RadiomicsLabError(f"--k-range '{text}' is not LOW:HIGH (e.g. 2:8).") from None
    if not 2 <= low <= high:
        raise RadiomicsLabError(f"--k-range {text}: need 2 <= LOW <= HIGH.")
    return low, high


def _parse_supervoxels(text):
    if text is None or text == "auto":
        return text
    try:
        count = int(text)
    except ValueError:
        raise RadiomicsLabError(f"--supervoxels '{text}' is not 'auto' or a number.") from None
    if count < 1:
        raise RadiomicsLabError("--supervoxels must be at least 1.")
    return count


def _stem(path: Path) -> str:
    name = path.name
    for suffix in MASK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _safe(name: str) -> str:
    """A patient name usable as a folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "patient"


def _progress_bar():
    from . import progress_bar

    bar = progress_bar(total=1, unit="step", leave=False)

    def progress(done, total, message):
        bar.total = total
        bar.set_postfix_str(message[:60])
        bar.n = done
        bar.refresh()

    progress.close = bar.close
    return progress


def _report(model, results, output_dir: Path, seconds: float):
    k = model.n_habitats
    chosen = f" (chosen by {model.options['criterion']})" if model.options["n_habitats"] == "auto" else ""
    click.echo(f"{k} habitats{chosen} of {len(results)} patient(s) from {', '.join(model.channels)} in {seconds:.1f} s -> {output_dir}", err=True)
    for name in model.names:
        click.echo(f"  {name}", err=True)
    for result in results:
        fractions = ", ".join(f"{h}: {f:.2f}" for h, f in result.fractions().items())
        click.echo(f"  {result.patient}: fractions {fractions}", err=True)
