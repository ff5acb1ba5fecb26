"""``radiomicslab study``: from a features table and a clinical table to a validated signature.

The work and every file are :func:`RadiomicsLabLib.study.run.run_study`'s; this module only reads the options.
"""

from pathlib import Path

import click

MODEL_HELP = ("Model (repeatable): logistic_l1, logistic_l2, logistic_elasticnet, svm, random_forest, "
              "gradient_boosting; survival: cox_lasso, cox_ridge, cox_elasticnet, random_survival_forest "
              "(default: logistic_l1, or cox_elasticnet for survival). The first is the signature (model.joblib).")
SELECT_HELP = ("Feature selection step (repeatable, applied in order): nzv, correlation, fdr, mrmr, lasso, rfe, or "
               "none (default: nzv then correlation).")


@click.command("study")
@click.argument("features", type=click.Path(path_type=Path))
@click.option("--clinical", type=click.Path(path_type=Path), required=True,
              help="Clinical CSV: the id column, the outcome (or time and event), and optional batch, covariate and "
                   "split columns.")
@click.option("--id", "id_column", default="id", show_default=True, help="Patient id column (both tables).")
@click.option("--outcome", default=None, help="Binary outcome column (0/1, or two labels with --positive).")
@click.option("--positive", default=None, help="The outcome label coded 1 when the outcome is text.")
@click.option("--time", "time_column", default=None, help="Survival: follow-up time column (> 0).")
@click.option("--event", "event_column", default=None, help="Survival: event column (1 event, 0 censored).")
@click.option("--batch", default=None, help="Batch column (scanner, centre): ComBat harmonisation inside the folds.")
@click.option("--covariate", "covariates", multiple=True,
              help="Clinical covariate column (repeatable, numeric): a clinical and a clinical + radiomics model are "
                   "added, and ComBat preserves its effect.")
@click.option("--split", default=None, help="Column of train/test: the test rows are an external set, predicted once.")
@click.option("--icc", type=click.Path(path_type=Path), default=None,
              help="icc.csv of radiomicslab observers: keep features whose ICC lower 95 % bound >= --icc-threshold.")
@click.option("--icc-threshold", type=float, default=0.75, show_default=True)
@click.option("--missing", type=click.Choice(["refuse", "impute"]), default="refuse", show_default=True,
              help="Missing feature values: refuse them, or impute them inside the folds (median).")
@click.option("--model", "models", multiple=True, help=MODEL_HELP)
@click.option("--select", "selection", multiple=True, help=SELECT_HELP)
@click.option("--outer", type=click.IntRange(min=2), default=5, show_default=True, help="Outer folds.")
@click.option("--repeats", type=click.IntRange(min=1), default=10, show_default=True, help="Repeats of the outer folds.")
@click.option("--inner", type=click.IntRange(min=2), default=5, show_default=True,
              help="Inner folds (hyper-parameter search).")
@click.option("--permutations", type=click.IntRange(min=0), default=0, show_default=True,
              help="Permutation test: reruns with the outcome permuted (each costs a whole run).")
@click.option("--horizon", type=float, default=None,
              help="Survival: time for the time-dependent AUC (default: median follow-up).")
@click.option("--risk-cutoffs", default=None,
              help="Comma-separated risk probabilities for the categorical NRI, e.g. 0.1,0.3 (default: continuous NRI).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every fold, model and resample.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: one per core).")
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler (tcp://HOST:PORT).")
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), required=True, help="Folder for the results.")
def command(features, clinical, id_column, outcome, positive, time_column, event_column, batch, covariates, split,
            icc, icc_threshold, missing, models, selection, outer, repeats, inner, permutations, horizon, risk_cutoffs,
            seed, workers, scheduler, output_dir):
    """Nested cross-validated radiomics study of FEATURES (CSV or Parquet; radiomicslab batch output is pivoted
    to one row per patient) against the outcome in --clinical.

    Writes in DIR: metrics.csv (model, metric, estimate, ci_low, ci_high), predictions.csv (out-of-fold),
    selected_features.csv, model.joblib (apply it with radiomicslab predict), model_card.json, report.html
    (TRIPOD+AI and RQS checklists, figures) and the PNG figures.
    """
    from ..study.run import run_study
    from . import progress_bar

    cutoffs = _cutoffs(risk_cutoffs)
    if workers is not None and scheduler:
        raise click.UsageError("Give --workers (processes on this machine) or --scheduler (a Dask cluster), not both.")
    with progress_bar(unit="fit", desc="study") as bar:
        def progress(done, total, message):
            bar.total = total
            bar.n = done
            bar.set_postfix_str(message[:60], refresh=True)

        run = run_study(features, clinical, output_dir, id_column=id_column, outcome=outcome, positive=positive,
                        time=time_column, event=event_column, batch=batch, covariates=covariates, split=split,
                        icc=icc, icc_threshold=icc_threshold, missing=missing, models=models or None,
                        selection=selection or None, outer=outer, repeats=repeats, inner=inner,
                        permutations=permutations, seed=seed, workers=workers, scheduler=scheduler,
                        horizon=horizon, risk_cutoffs=cutoffs, progress=progress)
    for note in run.notes:
        click.echo(f"radiomicslab: note: {note}", err=True)
    click.echo(run.summary, err=True)


def _cutoffs(text):
    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a comma-separated list of probabilities, e.g. 0.1,0.3.",
                                 param_hint="--risk-cutoffs") from None
    if any(not 0 < v < 1 for v in values) or sorted(values) != values:
        raise click.BadParameter("give increasing probabilities between 0 and 1, e.g. 0.1,0.3.", param_hint="--risk-cutoffs")
    return values
