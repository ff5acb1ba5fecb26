"""``radiomicslab harmonise``: ComBat on a whole features table, with before/after figures (for exploration).

The work and the files are :func:`RadiomicsLabLib.study.run.harmonise_table`'s.
"""

from pathlib import Path

import click


@click.command("harmonise")
@click.argument("features", type=click.Path(path_type=Path))
@click.option("--clinical", type=click.Path(path_type=Path), required=True,
              help="CSV with the id column, the batch column and any covariate columns.")
@click.option("--id", "id_column", default="id", show_default=True, help="Patient id column (both tables).")
@click.option("--batch", required=True, help="Batch column (scanner, centre).")
@click.option("--covariate", "covariates", multiple=True,
              help="Numeric covariate whose effect ComBat preserves (repeatable), e.g. age.")
@click.option("--non-parametric", is_flag=True, help="Non-parametric empirical Bayes priors instead of parametric.")
@click.option("--reference-batch", default=None, help="Map the other batches onto this one (left unchanged).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Harmonised table to write (CSV); the figures go beside it.")
def command(features, clinical, id_column, batch, covariates, non_parametric, reference_batch, output):
    """Harmonise FEATURES across batches with ComBat fitted on all rows (Johnson, Li and Rabinovic 2007).

    Writes the harmonised table and harmonisation_distributions.png and harmonisation_pca.png beside it.

    For exploring batch effects only: a model must be harmonised inside its cross-validation folds, which
    radiomicslab study --batch does.
    """
    from ..study.run import harmonise_table

    files = harmonise_table(features, clinical, output, id_column=id_column, batch=batch, covariates=covariates,
                            parametric=not non_parametric, reference_batch=reference_batch)
    click.echo(f"Harmonised {features} by '{batch}' -> {output} (figures: "
               f"{', '.join(name for name in files if name.endswith('.png'))})", err=True)
