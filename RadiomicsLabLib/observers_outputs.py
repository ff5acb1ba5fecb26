"""The files of an observer study (:func:`RadiomicsLabLib.observers.run_study`): tables, plots, provenance, consensus masks.

One function writes them, :func:`write_observer_outputs`, for every caller: ``radiomicslab observers``,
:meth:`RadiomicsLabLib.mrml.observers.ObserverLogic.save_results` (the desktop module's and the web app's
"save results"), so the same study gives the same files byte for byte. The plots are drawn once, here, from
the same series the scene's chart nodes show (:func:`bland_altman_points`, :func:`icc_plot_rows`):

- ``agreement.csv`` (one row per pair, :data:`~RadiomicsLabLib.observers.PAIR_COLUMNS`),
  ``agreement_summary.csv``, ``dice_matrix.csv``, ``staple.csv``;
- with features: ``features.csv`` (long, segment ``lesion/observer``), ``icc.csv``, ``robust_features.txt``;
- with perturbations: ``perturbations.csv``;
- ``dice_matrix.png``, ``bland_altman_volumes.png`` and, with features, ``icc.png``;
- ``observers.provenance.json``;
- each lesion's ``consensus_staple.nrrd`` and ``consensus_majority.nrrd`` (in the folder for one lesion,
  in ``<lesion>/`` for several); with ``--seg`` also one lesion's consensus masks as a DICOM SEG
  (:func:`write_consensus_seg`).

Every file is written atomically (:mod:`RadiomicsLabLib.fileio`).
"""

import csv
import io
import json
import math
from pathlib import Path

from .observers import (CONSENSUS_FILES, PAIR_COLUMNS, STAPLE_COLUMNS, SUMMARY_COLUMNS, dice_matrix, staple_rows,
                        summary_rows, volume_bland_altman)

PROVENANCE_FILE = "observers.provenance.json"
#: Columns of ``perturbations.csv``.
PERTURBATION_FILE_COLUMNS = ("lesion", "observer", "source", "perturbation", "kind", "parameters", "master_seed",
                             "seed", "voxels_source", "voxels", "dice_to_source", "details")
#: The PNGs' resolution.
PLOT_DPI = 120


def output_paths(folder, lesion_names, features: bool, perturbed: bool) -> dict:
    """Every file :func:`write_observer_outputs` writes into ``folder`` for these lesions: name relative to the
    folder (``"agreement.csv"``, ``"STS_001/consensus_staple.nrrd"``) -> path."""
    folder = Path(folder)
    names = ["agreement.csv", "agreement_summary.csv", "dice_matrix.csv", "staple.csv", PROVENANCE_FILE,
             "dice_matrix.png", "bland_altman_volumes.png"]
    if features:
        names += ["features.csv", "icc.csv", "robust_features.txt", "icc.png"]
    if perturbed:
        names.append("perturbations.csv")
    lesion_names = list(lesion_names)
    for lesion in lesion_names:
        names += [consensus_name(lesion, kind, len(lesion_names) == 1) for kind in CONSENSUS_FILES]
    return {name: folder / name for name in names}


def consensus_name(lesion: str, kind: str, single: bool) -> str:
    """A lesion's consensus mask relative to the output folder (``kind``: ``staple`` or ``majority``)."""
    return CONSENSUS_FILES[kind] if single else f"{lesion}/{CONSENSUS_FILES[kind]}"


def check_outputs_writable(outputs: dict, folder, inputs=(), extra=()) -> None:
    """Before any work: ``folder`` and every output (``outputs`` of :func:`output_paths`, plus ``extra`` paths)
    writable, and none of them an input (``inputs``: (role, path) pairs, e.g. from :func:`file_inputs`)."""
    from .fileio import check_output, check_outputs

    inputs = list(inputs)
    check_output(Path(folder), inputs, "folder")
    check_outputs([*outputs.values(), *extra], inputs)


def input_roles(specs, params=None, cohort=None) -> list:
    """(role, path) of every file a run reads: the cohort and parameter files, each lesion's image and masks
    (``specs``: ``{"name", "image", "observers": [(observer, mask path, reader)]}``)."""
    inputs = [("cohort", cohort), ("parameter file", params)]
    for spec in specs:
        inputs.append((f"image of lesion '{spec['name']}'", spec["image"]))
        inputs += [(f"mask of observer '{observer}'", mask) for observer, mask, _ in spec["observers"]]
    return inputs


def file_inputs(specs) -> list:
    """The ``inputs`` of the provenance for lesions read from files: each image's and mask's path and SHA-256."""
    from .provenance import file_sha256

    def sha(path):
        return file_sha256(path) if Path(path).is_file() else None

    def roi(spec, observer):
        name = (spec.get("rois") or {}).get(observer)
        return {"roi": name} if name else {}

    return [{"lesion": s["name"], "image": {"path": str(Path(s["image"]).resolve()), "sha256": sha(s["image"])},
             "masks": {n: {"path": str(Path(m).resolve()), "sha256": sha(m), "reader": r, **roi(s, n)}
                       for n, m, r in s["observers"]}}
            for s in specs]


# Tables -----------------------------------------------------------------------------------------
def cell(value) -> str:
    """CSV text: floats in their shortest exact form (NaN empty), booleans true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else str(value)


def csv_text(rows, columns) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def perturbation_records(study) -> list:
    """Every lesion's perturbation records (the synthetic observers), in lesion order."""
    return [r for result in study.lesions for r in result.lesion.perturbations]


def observer_provenance(study, inputs=(), settings=None, icc_type: str | None = None, seed=None) -> dict:
    """``observers.provenance.json``: software, inputs, notes, settings, rule, ICC type, STAPLE threshold,
    perturbations (with their seed) and each observer's extraction provenance."""
    from .provenance import software_versions

    reproducibility = study.reproducibility
    return {"software": software_versions(), "inputs": list(inputs), "notes": study.notes,
            "settings": settings.source if settings is not None else None,
            "robust_rule": str(reproducibility.rule) if reproducibility is not None else None, "icc_type": icc_type,
            "staple_threshold": study.lesions[0].staple.threshold, "perturbation_seed": seed,
            "perturbations": perturbation_records(study), "extraction": study.provenance}


def output_texts(study, inputs=(), settings=None, icc_type: str | None = None, seed=None) -> dict:
    """The text files of a study: file name -> text (``perturbations.csv`` when ``seed`` is not None)."""
    from dataclasses import replace

    from .reproducibility import ICC_COLUMNS
    from .results import to_csv_text

    matrix = dice_matrix(study.pairs)
    texts = {"agreement.csv": csv_text(study.pairs, PAIR_COLUMNS),
             "agreement_summary.csv": csv_text(summary_rows(study), SUMMARY_COLUMNS),
             "dice_matrix.csv": csv_text(matrix, list(matrix[0])), "staple.csv": csv_text(staple_rows(study), STAPLE_COLUMNS)}
    if seed is not None:
        records = perturbation_records(study)
        texts["perturbations.csv"] = csv_text([{**r, "parameters": json.dumps(r["parameters"]),
                                                "details": json.dumps(r["details"])} for r in records],
                                              PERTURBATION_FILE_COLUMNS)
    reproducibility = study.reproducibility
    if reproducibility is not None:
        texts["features.csv"] = to_csv_text([replace(v, segment=f"{lesion}/{v.segment}") for lesion, v in study.features])
        texts["icc.csv"] = csv_text(reproducibility.rows, ICC_COLUMNS)
        texts["robust_features.txt"] = "".join(f"{f}\n" for f in reproducibility.robust)
    provenance = observer_provenance(study, inputs, settings, icc_type, seed)
    texts[PROVENANCE_FILE] = json.dumps(provenance, indent=2, default=str) + "\n"
    return texts


def write_observer_outputs(study, folder, inputs=(), settings=None, icc_type: str | None = None, seed=None,
                           outputs: dict | None = None, seg=None) -> dict:
    """Write every file of an observer study into ``folder`` (see the module), each atomically; returns
    name relative to the folder -> path of what was written.

    ``inputs``: the provenance's ``inputs`` (:func:`file_inputs` for files); ``settings``: the
    :class:`~RadiomicsLabLib.settings.ExtractionSettings` (None without features); ``icc_type``: the ICC asked for;
    ``seed``: the perturbations' master seed (None: no synthetic observers, no ``perturbations.csv``).
    A lesion without images (rebuilt from batch records, whose tasks wrote the consensus masks) gets no masks.
    ``outputs``: :func:`output_paths` when already checked (the files' names are the same).
    ``seg``: ``(path, DICOM series folder)``: also the consensus masks of the one lesion as a DICOM SEG
    (:func:`write_consensus_seg`), keyed ``"seg"`` in the result.
    """
    from .fileio import atomic_output, write_image_atomic, write_text_atomic

    folder = Path(folder)
    outputs = outputs or output_paths(folder, [r.lesion.name for r in study.lesions], study.reproducibility is not None,
                                      seed is not None)
    written = {}
    for name, text in output_texts(study, inputs, settings, icc_type, seed).items():
        written[name] = write_text_atomic(outputs[name], text)
    single = len(study.lesions) == 1
    for result in study.lesions:
        if result.majority is None:  # in the cohort mode each lesion's task wrote them
            continue
        for kind, image in (("staple", result.staple.consensus), ("majority", result.majority)):
            name = consensus_name(result.lesion.name, kind, single)
            written[name] = write_image_atomic(image, outputs.get(name, folder / name))
    for name, png in plot_pngs(study).items():
        with atomic_output(outputs[name]) as tmp:
            tmp.write_bytes(png)
        written[name] = outputs[name]
    if seg is not None:
        written["seg"] = write_consensus_seg(study.lesions[0], *seg)
    return written


#: Segment label of each consensus mask in the DICOM SEG (``observers --seg``).
CONSENSUS_SEGMENTS = {"staple": "Consensus (STAPLE)", "majority": "Consensus (majority vote)"}


def write_consensus_seg(result, path, source_folder):
    """One lesion's consensus masks (STAPLE, majority vote) as a DICOM SEG referencing the series in
    ``source_folder``, coded as a lesion (:data:`~RadiomicsLabLib.dicom.write.LESION`); an empty consensus
    (no voxel chosen) is left out, as a SEG segment cannot be empty."""
    import SimpleITK as sitk

    from .dicom.write import LESION, write_seg
    from .errors import RadiomicsLabError

    masks = {"staple": result.staple.consensus, "majority": result.majority}
    segments = [(CONSENSUS_SEGMENTS[kind], sitk.Cast(mask, sitk.sitkUInt8), *LESION) for kind, mask in masks.items()
                if sitk.GetArrayViewFromImage(mask).any()]
    if not segments:
        raise RadiomicsLabError(f"The consensus masks of lesion '{result.lesion.name}' are empty (the observers share "
                                "no voxel); there is nothing to write with --seg.")
    return write_seg(segments, source_folder, path, series_description=f"RadiomicsLab consensus of {result.lesion.name}"[:64])


# Plots ------------------------------------------------------------------------------------------
def bland_altman_points(pairs) -> dict:
    """The Bland-Altman series of observer volumes, pairs in order of their mean volume: ``pair`` (labels),
    ``mean_mm3`` and ``difference_mm3`` (lists), ``bias_mm3``, ``lower_mm3``, ``upper_mm3`` (numbers).
    Drawn in ``bland_altman_volumes.png`` and the scene's Bland-Altman chart."""
    ba = volume_bland_altman(pairs)
    order = sorted(range(len(pairs)), key=lambda i: ba["mean_mm3"][i])
    return {"pair": [f"{pairs[i]['lesion']}: {pairs[i]['observer_a']} - {pairs[i]['observer_b']}" for i in order],
            "mean_mm3": [float(ba["mean_mm3"][i]) for i in order],
            "difference_mm3": [float(ba["difference_mm3"][i]) for i in order],
            "bias_mm3": ba["bias_mm3"], "lower_mm3": ba["lower_mm3"], "upper_mm3": ba["upper_mm3"]}


def icc_plot_rows(reproducibility) -> list[dict]:
    """The ICC plot's series: each feature with a finite ICC (of the chosen type), ranked from the highest
    (``rank`` 1): ``feature``, ``icc``, ``ci_low``, ``ci_high``, ``robust`` and ``threshold`` (the rule's, NaN when
    the rule is on another column). Drawn in ``icc.png`` and the scene's ICC chart."""
    ranked = sorted((r for r in reproducibility.rows if math.isfinite(r["icc"])), key=lambda r: -r["icc"])
    rule = reproducibility.rule
    threshold = rule.threshold if rule.column.startswith(reproducibility.icc_type) else math.nan
    return [{"rank": i, "feature": r["feature"], "icc": r["icc"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
             "robust": bool(r["robust"]), "threshold": threshold} for i, r in enumerate(ranked, start=1)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def dice_matrix_figure(study):
    """The pairwise Dice matrix (mean over lesions) as a heat map with its values."""
    import numpy as np

    plt = _pyplot()
    matrix = dice_matrix(study.pairs)
    observers = [row["observer"] for row in matrix]
    values = np.array([[row[o] for o in observers] for row in matrix])
    size = 2.5 + 0.6 * len(observers)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    low = max(0.0, float(np.nanmin(values)) - 0.05)
    shown = axes.imshow(values, vmin=low, vmax=1.0, cmap="viridis")
    axes.set_xticks(range(len(observers)), observers, rotation=45, ha="right")
    axes.set_yticks(range(len(observers)), observers)
    for i in range(len(observers)):
        for j in range(len(observers)):
            light = (values[i, j] - low) / (1.0 - low) > 0.6 if low < 1.0 else True  # viridis is light at the top
            axes.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", color="black" if light else "white", fontsize=8)
    figure.colorbar(shown, label="Dice" + (" (mean over lesions)" if len(study.lesions) > 1 else ""))
    axes.set_title("Pairwise Dice")
    return figure


def bland_altman_figure(study):
    """Bland-Altman of observer volumes (:func:`bland_altman_points`): pairs, bias and limits of agreement."""
    plt = _pyplot()
    ba = bland_altman_points(study.pairs)
    figure, axes = plt.subplots(figsize=(7, 5))
    axes.scatter(ba["mean_mm3"], ba["difference_mm3"], s=18, color="tab:blue", label="observer pairs")
    lines = ((ba["bias_mm3"], "-", "bias"), (ba["lower_mm3"], "--", "bias - 1.96 SD"), (ba["upper_mm3"], "--", "bias + 1.96 SD"))
    for y, style, text in lines:
        if math.isfinite(y):
            axes.axhline(y, linestyle=style, color="tab:red" if style == "--" else "black", linewidth=1, label=f"{text} = {y:.4g}")
    axes.set_xlabel("mean volume of the pair (mm³)")
    axes.set_ylabel("volume difference a − b (mm³)")
    axes.set_title("Bland-Altman of observer volumes")
    axes.legend(fontsize=8)
    return figure


def icc_figure(reproducibility):
    """Each feature's ICC with its 95 % CI (:func:`icc_plot_rows`, the highest at the top), robust features in
    green, the rule's threshold."""
    import numpy as np

    plt = _pyplot()
    rows = icc_plot_rows(reproducibility)[::-1]  # the lowest at the bottom
    figure, axes = plt.subplots(figsize=(8, max(3.0, 0.16 * len(rows) + 1.5)))
    if rows:
        y = np.arange(len(rows))
        icc = np.array([r["icc"] for r in rows])
        low, high = np.array([r["ci_low"] for r in rows]), np.array([r["ci_high"] for r in rows])
        colours = ["tab:green" if r["robust"] else "tab:gray" for r in rows]
        # clipped at 0: with few lesions an ICC(2,1) estimate may fall just outside its approximate CI
        xerr = [np.clip(icc - low, 0, None), np.clip(high - icc, 0, None)]
        axes.errorbar(icc, y, xerr=xerr, fmt="none", ecolor="lightgray", elinewidth=1)
        axes.scatter(icc, y, c=colours, s=12, zorder=3)
        axes.set_yticks(y, [r["feature"] for r in rows] if len(rows) <= 120 else [], fontsize=5)
        if math.isfinite(rows[0]["threshold"]):
            axes.axvline(rows[0]["threshold"], color="tab:red", linestyle="--", linewidth=1,
                         label=f"robust: {reproducibility.rule}")
            axes.legend(fontsize=8, loc="lower right")
    else:
        axes.text(0.5, 0.5, "no ICC: it needs at least 2 lesions (use --cohort)", ha="center", va="center", transform=axes.transAxes)
    label = reproducibility.rows[0]["icc_type"]
    axes.set_xlabel(f"{label} with 95 % CI ({len(reproducibility.lesions)} lesions, {len(reproducibility.observers)} observers)")
    axes.set_title(f"Feature reproducibility: {len(reproducibility.robust)} of {len(reproducibility.rows)} robust")
    return figure


def figure_png(figure) -> bytes:
    """A figure as PNG bytes (tight layout, :data:`PLOT_DPI`); the figure is closed."""
    plt = _pyplot()
    try:
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=PLOT_DPI)
        return buffer.getvalue()
    finally:
        plt.close(figure)


def plot_pngs(study) -> dict:
    """The study's plots as PNG bytes: ``dice_matrix.png``, ``bland_altman_volumes.png`` and, with features, ``icc.png``."""
    pngs = {"dice_matrix.png": figure_png(dice_matrix_figure(study)),
            "bland_altman_volumes.png": figure_png(bland_altman_figure(study))}
    if study.reproducibility is not None:
        pngs["icc.png"] = figure_png(icc_figure(study.reproducibility))
    return pngs


def run_observer_cohort(path, output_dir, *, label, strict, plan, seed, settings, features, rule, icc_type,
                        keep_going: bool, run_batch, note=lambda message: None):
    """The observers' cohort mode: every row and lesion of the cohort file ``path`` checked (all problems at once,
    each with its row; ``keep_going``: a lesion with a problem is left out whole and listed in errors.csv), one
    batch task per lesion run by ``run_batch(read_cohort, output_dir, task)`` (returns the batch summary), then the
    study-level outputs (:func:`write_observer_outputs`) from the finished lesions. Returns ``(study or None when no
    lesion finished, batch summary)``; ``note(message)`` reports the perturbation plan."""
    from .batch import DONE, OUTPUT_FILES, case_path, cohort_status, read_record
    from .observers import batch_cohort, lesion_name_problem, observers_task, read_observer_cohort, study_from_records

    specs, problems = read_observer_cohort(path, 1 if plan else 2, [p.name for p in plan] if features else None)
    named = [s for s in specs if lesion_name_problem(s["name"]) is None]  # a bad name is a problem, not a folder
    outputs = output_paths(output_dir, [s["name"] for s in named], features, bool(plan))
    check_outputs_writable(outputs, output_dir, input_roles(specs, settings.source if settings is not None else None, path),
                           [output_dir / name for name in OUTPUT_FILES])
    readers = {s["name"]: {o: r for o, _, r in s["observers"]} for s in specs}
    task = observers_task(output_dir, settings, features, label, strict, plan, seed, readers, single=len(specs) == 1)
    if plan:
        note(f"Perturbing each lesion: {', '.join(map(str, plan))} (seed {seed})")
    cohorts = []

    def read():
        cohort = batch_cohort(path).add_problems(problems)
        if keep_going:
            cohort.skip_patients_with_problems("lesion")
        cohorts.append(cohort)
        return cohort

    summary = run_batch(read, output_dir, task)
    done = [s for s in cohort_status(output_dir, cohorts[0], task) if s.status == DONE]
    if not done:
        return None, summary
    study = study_from_records([read_record(case_path(output_dir, s.key)) for s in done], rule, icc_type, features)
    finished = {s.id for s in done}
    write_observer_outputs(study, output_dir, file_inputs([s for s in specs if s["name"] in finished]), settings, icc_type,
                           seed if plan else None, outputs)
    if not features:  # the batch layer's per-observer feature table would only name the observers
        for name in ("features.csv", "features.parquet"):
            (output_dir / name).unlink(missing_ok=True)
    return study, summary
