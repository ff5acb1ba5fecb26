"""``radiomicslab observers``: multi-observer agreement, consensus and feature reproducibility (ICC).

Module-level imports stay click + stdlib (the CLI imports every command at start-up).
"""

import csv
import io
import json
import math
import sys
import time
from pathlib import Path

import click

from ..errors import RadiomicsLabError
from ..settings import ENGINES
from .batch import cluster_options, refuse_batch_options, run_with_progress

#: Columns of a cohort file: the batch layer's (id = lesion; optional observer, label) or the older lesion,observer,...
COHORT_COLUMNS = ("id", "image", "mask")
OLD_COHORT_COLUMNS = ("lesion", "observer", "image", "mask")


@click.command("observers")
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.argument("masks", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output-dir", required=True, type=click.Path(path_type=Path), help="Folder for the results.")
@click.option("--names", multiple=True,
              help="Observer names in mask order (comma-separated or repeated; default: each file's name without extensions).")
@click.option("--readers", multiple=True,
              help="Reader of each mask, in order (comma-separated or repeated): two masks of one reader are an intra-observer pair.")
@click.option("--lesion", "lesion_name", default=None,
              help="Name of the lesion given by IMAGE and MASKs (default: IMAGE's name without extensions).")
@click.option("--label", type=int, default=None, help="Label value of the lesion in every mask (default: the mask's only label).")
@click.option("--cohort", type=click.Path(path_type=Path), default=None,
              help="CSV of several lesions, one row per lesion and observer: columns id,image,mask (id = lesion; optional "
                   "observer, label, reader) or lesion,observer,image,mask (optional reader, label); paths relative to the "
                   "CSV. Run one task per lesion on the batch layer (resumable: a rerun skips finished lesions; failures "
                   "go to DIR/errors.csv); each lesion's consensus masks are written by its worker, so with --scheduler "
                   "DIR must be a folder the workers can reach.")
@click.option("--perturb", is_flag=True,
              help="Add synthetic observers: MIRP-style perturbations of each lesion's first mask (default plan).")
@click.option("--perturbation", "perturbations", multiple=True,
              help="A perturbation instead of the default plan (repeatable; implies --perturb): grow:mm=-1, grow:fraction=0.1, "
                   "supervoxels:volume=500,compactness=0.05, deform:mm=2,smoothness=10, shift:mm=2, noise:scale=1.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Master seed of the perturbations.")
@click.option("--strict", is_flag=True,
              help="Refuse masks on another grid than the image instead of resampling them (nearest neighbour).")
@click.option("--params", default=None, help="Feature settings: pyradiomics parameter file or preset (see `radiomicslab presets`).")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Feature engine: pyradiomics, native or ibsi (default: what the settings declare, else pyradiomics where it is installed, else native).")
@click.option("--image-type", "image_types", multiple=True,
              help="Image type replacing the settings' (repeatable), e.g. Original, 'LoG:sigma=1,3'.")
@click.option("--robust-rule", default=None, help="Robust-feature rule on icc.csv's columns [default: icc2_ci_low >= 0.75].")
@click.option("--icc-type", type=click.Choice(["icc1", "icc2", "icc3"]), default="icc2", show_default=True,
              help="ICC in icc.csv's icc/ci_low/ci_high columns and the plot: ICC(1,1), ICC(2,1) or ICC(3,1).")
@click.option("--no-features", is_flag=True, help="Agreement and consensus only: no feature extraction, no ICC.")
@cluster_options
def command(image, masks, output_dir, names, readers, lesion_name, label, cohort, perturb, perturbations, seed, strict,
            params, engine, image_types, robust_rule, icc_type, no_features, workers, memory_limit, scheduler,
            retry_failed, keep_going):
    """Agreement of several observers' segmentations (Dice, Jaccard, volumes, Hausdorff, HD95, MSD), STAPLE and
    majority-vote consensus, and feature reproducibility (ICC, CCC, CV, robust features) of one lesion
    (IMAGE MASK1 MASK2 ...) or a --cohort of lesions."""
    from ..perturbation import perturb_lesion, perturbation_plan
    from ..reproducibility import parse_rule
    from ..settings import load_settings

    started = time.perf_counter()
    perturb = perturb or bool(perturbations)
    features = not no_features
    names, readers = _split(names), _split(readers)
    if image is None and cohort is None:
        raise click.UsageError("Give IMAGE and the observers' MASKs, or --cohort cohort.csv.")
    if image is not None and cohort is not None:
        raise click.UsageError("Give either IMAGE and MASKs (one lesion) or --cohort (several lesions), not both; "
                               "add the lesion to the cohort file instead.")
    if cohort is None:
        refuse_batch_options(workers, memory_limit, scheduler, retry_failed, keep_going)
    if image is not None and not masks:
        raise RadiomicsLabError(
            "Give the observers' masks after IMAGE (at least two; or one with --perturb for synthetic observers)."
        )
    if image is None and (names or readers or lesion_name):
        raise click.UsageError("--names, --readers and --lesion describe IMAGE and MASKs; in --cohort use its columns.")
    if image is not None and len(masks) < 2 and not perturb:  # checked before anything is read
        raise RadiomicsLabError(
            f"Agreement needs at least 2 observers; got 1 ({names[0] if names else _stem(masks[0])}). "
            "Give another observer's mask, or use --perturb to make synthetic observers from one mask."
        )
    for option, given in (("--names", names), ("--readers", readers)):
        if given and len(given) != len(masks):
            raise RadiomicsLabError(f"{option} gives {len(given)} name(s) for {len(masks)} mask(s); give one per mask, in order.")
    from ..validation import check_label_value

    check_label_value(label)
    rule = parse_rule(robust_rule) if robust_rule else None
    settings = load_settings(params, image_types, engine) if features else None
    plan = perturbation_plan(perturbations or None) if perturb else []
    if cohort is not None:
        batch = dict(workers=workers, scheduler=scheduler, memory_limit=memory_limit, retry_failed=retry_failed,
                     keep_going=keep_going)
        _run_cohort(cohort, output_dir, label, strict, plan, seed, settings, features, rule, icc_type, batch, started)
        return
    specs = [_positional_lesion(image, masks, names, readers, lesion_name)]
    _check_lesion_names(specs)
    outputs = _output_paths(output_dir, [s["name"] for s in specs], features, bool(plan))
    _check_writable(outputs, output_dir, specs, params)
    lesions = _load_lesions(specs, label, strict, 1 if plan else 2)
    for lesion in lesions:
        if plan:
            click.echo(f"Perturbing lesion '{lesion.name}': {', '.join(map(str, plan))} (seed {seed})", err=True)
            perturb_lesion(lesion, plan, seed)
    study = _run(lesions, settings, features, rule, icc_type)
    _write_outputs(study, outputs, specs, settings, rule, icc_type, seed if plan else None)
    _report(study, output_dir, time.perf_counter() - started)


def _run_cohort(path, output_dir, label, strict, plan, seed, settings, features, rule, icc_type, batch, started):
    """The cohort mode: every row and lesion checked (all problems at once, each with its row; with --keep-going
    a lesion with a problem is left out whole and listed in errors.csv), one batch task per lesion, then the
    study-level outputs from the finished lesions (a failed lesion is in errors.csv and left out of the ICCs;
    exit status 1)."""
    from ..batch import DONE, case_path, cohort_status, read_record
    from ..observers import observers_task, study_from_records

    specs, problems = _read_cohort(path, 1 if plan else 2, [p.name for p in plan] if features else None)
    named = [s for s in specs if _lesion_name_problem(s["name"]) is None]  # a bad name is a problem, not a folder
    outputs = _output_paths(output_dir, [s["name"] for s in named], features, bool(plan))
    _check_writable(outputs, output_dir, specs, settings.source if settings is not None else None, path)
    readers = {s["name"]: {o: r for o, _, r in s["observers"]} for s in specs}
    task = observers_task(output_dir, settings, features, label, strict, plan, seed, readers, single=len(specs) == 1)
    if plan:
        click.echo(f"Perturbing each lesion: {', '.join(map(str, plan))} (seed {seed})", err=True)
    cohorts = []

    def read():
        cohort = _batch_cohort(path).add_problems(problems)
        if batch["keep_going"]:
            cohort.skip_patients_with_problems("lesion")
        cohorts.append(cohort)
        return cohort

    summary = run_with_progress(read, output_dir, task, unit="lesion", **batch)
    click.echo(f"Batch: {summary}", err=True)
    done = [s for s in cohort_status(output_dir, cohorts[0], task) if s.status == DONE]
    errors = output_dir / "errors.csv"
    if not done:
        click.echo(f"radiomicslab: no lesion finished; the errors are listed in {errors}.", err=True)
        sys.exit(1)
    study = study_from_records([read_record(case_path(output_dir, s.key)) for s in done], rule, icc_type, features)
    finished = {s.id for s in done}
    _write_outputs(study, outputs, [s for s in specs if s["name"] in finished], settings, rule, icc_type,
                   seed if plan else None)
    if not features:  # the batch layer's per-observer feature table would only name the observers
        for name in ("features.csv", "features.parquet"):
            (output_dir / name).unlink(missing_ok=True)
    _report(study, output_dir, time.perf_counter() - started)
    if summary.failed or summary.invalid:
        click.echo(f"radiomicslab: {summary.failed + summary.invalid} lesion(s) or row(s) with errors, listed in {errors}; "
                   "the outputs cover the other lesions. Fix them and run again (failed lesions need --retry-failed).",
                   err=True)
        sys.exit(1)


# Inputs -----------------------------------------------------------------------------------------
def _split(values) -> list[str]:
    """``("a,b", "c")`` -> ``["a", "b", "c"]``."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _stem(path: Path) -> str:
    """A file's name without extensions: ``reader1.seg.nrrd`` -> ``reader1``."""
    return Path(path).name.split(".")[0] or Path(path).name  # as RadiomicsLabLib.observers.observer_name


def _positional_lesion(image, masks, names, readers, lesion_name) -> dict:
    names = names or [_stem(m) for m in masks]
    return {"name": lesion_name or _stem(image), "image": Path(image), "where": "the command line",
            "observers": [(n, Path(m), readers[i] if readers else n) for i, (n, m) in enumerate(zip(names, masks))],
            "label": None}


def _cohort_rows(path: Path) -> tuple[list, list]:
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


def _read_cohort(path: Path, min_observers: int = 2, synthetic=None) -> tuple[list[dict], list]:
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

    from ..cohort import CohortProblem, join_places
    from ..observers import check_observer_count

    header, rows = _cohort_rows(path)
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
        observer = (row.get("observer") or "").strip() or _stem(mask)
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
        unusable = _lesion_name_problem(name)
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


def _batch_cohort(path: Path):
    """The cohort read and validated by :func:`RadiomicsLabLib.cohort.read_cohort` (every problem at once).

    A lesion,observer,... file is given to it as a temporary copy with ``id`` for ``lesion`` and absolute
    paths (each row on its own line, so problems name the file's rows).
    """
    import hashlib
    import tempfile

    from ..cohort import read_cohort

    header, rows = _cohort_rows(path)
    if "id" in header:
        return read_cohort(path)
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
        cohort = read_cohort(copy)
    cohort.source, cohort.source_sha256 = path.absolute(), hashlib.sha256(path.read_bytes()).hexdigest()
    return cohort


def _lesion_name_problem(name: str) -> str | None:
    """Why a lesion name cannot name a folder, or None."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        return f"lesion name '{name}' cannot name a folder; use letters, digits, '.', '_' or '-'"
    return None


def _check_lesion_names(specs):
    seen = set()
    for spec in specs:
        name = spec["name"]
        if _lesion_name_problem(name):
            raise RadiomicsLabError(f"Lesion name '{name}' in {spec['where']} cannot name a folder; "
                                    "use letters, digits, '.', '_' or '-'.")
        if name in seen:
            raise RadiomicsLabError(f"Lesion name '{name}' is used twice; "
                                    "give each lesion its own name (--lesion, or the cohort's lesion column).")
        seen.add(name)


def _load_lesions(specs, label, strict, min_observers) -> list:
    """Read every image and mask and check each lesion (all before any work)."""
    from ..observers import load_lesion

    return [load_lesion(spec["name"], spec["image"], spec["observers"],
                        spec["label"] if spec["label"] is not None else label, strict, min_observers) for spec in specs]


# Work -------------------------------------------------------------------------------------------
def _run(lesions, settings, features, rule, icc_type):
    from ..observers import run_study

    bar = None

    def progress(done, total, message):
        nonlocal bar
        if bar is None:
            from . import progress_bar

            bar = progress_bar(total=total, unit="step", leave=False)
        bar.set_postfix_str(message)
        bar.update(1)

    try:
        return run_study(lesions, settings, features, rule, icc_type, progress)
    finally:
        if bar is not None:
            bar.close()


# Outputs ----------------------------------------------------------------------------------------
def _output_paths(output_dir: Path, lesion_names, features: bool, perturbed: bool) -> dict:
    """Every file this run writes: tables, plots, provenance, and each lesion's consensus masks."""
    out = {"agreement": output_dir / "agreement.csv", "summary": output_dir / "agreement_summary.csv",
           "matrix": output_dir / "dice_matrix.csv", "staple": output_dir / "staple.csv",
           "provenance": output_dir / "observers.provenance.json",
           "matrix_png": output_dir / "dice_matrix.png", "bland_altman_png": output_dir / "bland_altman_volumes.png"}
    if features:
        out.update(features=output_dir / "features.csv", icc=output_dir / "icc.csv", robust=output_dir / "robust_features.txt",
                   icc_png=output_dir / "icc.png")
    if perturbed:
        out["perturbations"] = output_dir / "perturbations.csv"
    for name in lesion_names:
        folder = output_dir if len(lesion_names) == 1 else output_dir / name
        out[("staple", name)] = folder / "consensus_staple.nrrd"
        out[("majority", name)] = folder / "consensus_majority.nrrd"
    return out


def _check_writable(outputs: dict, output_dir: Path, specs, params=None, cohort=None):
    """Every output writable and none of them an input (image, mask, cohort or parameter file)."""
    from ..batch import OUTPUT_FILES
    from ..fileio import check_output, check_outputs

    inputs = [("cohort", cohort), ("parameter file", params)]
    for spec in specs:
        inputs += [(f"image of lesion '{spec['name']}'", spec["image"])]
        inputs += [(f"mask of observer '{observer}'", mask) for observer, mask, _ in spec["observers"]]
    check_output(output_dir, inputs, "folder")
    batch_outputs = [output_dir / name for name in OUTPUT_FILES] if cohort is not None else []
    check_outputs([*outputs.values(), *batch_outputs], inputs)


def _cell(value) -> str:
    """CSV text: floats in their shortest exact form (NaN empty), booleans true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else str(value)


def _csv_text(rows, columns) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def _write_outputs(study, outputs, specs, settings, rule, icc_type, seed):
    from dataclasses import replace

    from ..fileio import write_image_atomic, write_text_atomic
    from ..observers import PAIR_COLUMNS, STAPLE_COLUMNS, SUMMARY_COLUMNS, dice_matrix, staple_rows, summary_rows
    from ..provenance import file_sha256, software_versions
    from ..reproducibility import ICC_COLUMNS
    from ..results import to_csv_text

    pairs, matrix = study.pairs, dice_matrix(study.pairs)
    texts = {"agreement": _csv_text(pairs, PAIR_COLUMNS), "summary": _csv_text(summary_rows(study), SUMMARY_COLUMNS),
             "matrix": _csv_text(matrix, list(matrix[0])), "staple": _csv_text(staple_rows(study), STAPLE_COLUMNS)}
    records = [r for result in study.lesions for r in result.lesion.perturbations]
    if "perturbations" in outputs:
        texts["perturbations"] = _csv_text([{**r, "parameters": json.dumps(r["parameters"]), "details": json.dumps(r["details"])}
                                            for r in records],
                                           ("lesion", "observer", "source", "perturbation", "kind", "parameters", "master_seed",
                                            "seed", "voxels_source", "voxels", "dice_to_source", "details"))
    reproducibility = study.reproducibility
    if reproducibility is not None:
        texts["features"] = to_csv_text([replace(v, segment=f"{lesion}/{v.segment}") for lesion, v in study.features])
        texts["icc"] = _csv_text(reproducibility.rows, ICC_COLUMNS)
        texts["robust"] = "".join(f"{f}\n" for f in reproducibility.robust)
    inputs = [{"lesion": s["name"], "image": {"path": str(s["image"].resolve()), "sha256": _sha(s["image"], file_sha256)},
               "masks": {n: {"path": str(m.resolve()), "sha256": _sha(m, file_sha256), "reader": r} for n, m, r in s["observers"]}}
              for s in specs]
    provenance = {"software": software_versions(), "inputs": inputs, "notes": study.notes,
                  "settings": settings.source if settings is not None else None,
                  "robust_rule": str(reproducibility.rule) if reproducibility is not None else None, "icc_type": icc_type,
                  "staple_threshold": study.lesions[0].staple.threshold, "perturbation_seed": seed, "perturbations": records,
                  "extraction": study.provenance}
    texts["provenance"] = json.dumps(provenance, indent=2, default=str) + "\n"
    for key, text in texts.items():
        write_text_atomic(outputs[key], text)
    for result in study.lesions:
        if result.majority is not None:  # in the cohort mode each lesion's task wrote them
            write_image_atomic(result.staple.consensus, outputs[("staple", result.lesion.name)])
            write_image_atomic(result.majority, outputs[("majority", result.lesion.name)])
    _plots(study, outputs)


def _sha(path: Path, file_sha256):
    return file_sha256(path) if path.is_file() else None


def _plots(study, outputs):
    """dice_matrix.png, bland_altman_volumes.png and (with ICCs) icc.png, drawn with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..observers import dice_matrix, volume_bland_altman

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
    _save(figure, outputs["matrix_png"])

    ba = volume_bland_altman(study.pairs)
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
    _save(figure, outputs["bland_altman_png"])

    reproducibility = study.reproducibility
    if reproducibility is None:
        return
    rows = sorted((r for r in reproducibility.rows if math.isfinite(r["icc"])), key=lambda r: r["icc"])
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
        rule = reproducibility.rule
        if rule.column.startswith(reproducibility.icc_type):
            axes.axvline(rule.threshold, color="tab:red", linestyle="--", linewidth=1, label=f"robust: {rule}")
            axes.legend(fontsize=8, loc="lower right")
    else:
        axes.text(0.5, 0.5, "no ICC: it needs at least 2 lesions (use --cohort)", ha="center", va="center", transform=axes.transAxes)
    label = rows[0]["icc_type"] if rows else reproducibility.rows[0]["icc_type"]
    axes.set_xlabel(f"{label} with 95 % CI ({len(reproducibility.lesions)} lesions, {len(reproducibility.observers)} observers)")
    axes.set_title(f"Feature reproducibility: {len(reproducibility.robust)} of {len(reproducibility.rows)} robust")
    _save(figure, outputs["icc_png"])


def _save(figure, path: Path):
    import matplotlib.pyplot as plt

    from ..fileio import atomic_output

    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)


def _report(study, output_dir: Path, seconds: float):
    pairs = study.pairs
    dice = [p["dice"] for p in pairs]
    observers = sorted({o for r in study.lesions for o in r.lesion.observers})
    lines = [f"Agreement of {len(observers)} observers on {len(study.lesions)} lesion(s), {len(pairs)} pair(s): "
             f"Dice mean {sum(dice) / len(dice):.3f} (min {min(dice):.3f}, max {max(dice):.3f}); "
             + ", ".join(f"GCI {r.lesion.name} {r.agreement.generalised_conformity:.3f}" for r in study.lesions[:5])
             + (" ..." if len(study.lesions) > 5 else "")]
    reproducibility = study.reproducibility
    if reproducibility is not None:
        lines.append(f"Features: {len(reproducibility.rows)}; robust ({reproducibility.rule}): {len(reproducibility.robust)}")
    lines += [f"note: {note}" for note in study.notes]
    lines.append(f"Done in {seconds:.1f} s -> {output_dir}")
    click.echo("\n".join(lines), err=True)
