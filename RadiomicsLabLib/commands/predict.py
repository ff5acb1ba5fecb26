"""``radiomicslab predict``: apply a model written by ``radiomicslab study`` to a new features table.

The work and the file are :func:`RadiomicsLabLib.study.run.predict_table`'s.
"""

from pathlib import Path

import click


@click.command("predict")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("features", type=click.Path(path_type=Path))
@click.option("--clinical", type=click.Path(path_type=Path), default=None,
              help="CSV with the id column and the batch and covariate columns the model needs.")
@click.option("--id", "id_column", default="id", show_default=True, help="Patient id column.")
@click.option("--batch", default=None, help="Batch column of --clinical (default: the study's name for it).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Predictions CSV (id, model, prediction, group), or - for standard output.")
def command(model, features, clinical, id_column, batch, output):
    """Predict each patient of FEATURES with MODEL (a model.joblib of radiomicslab study): the probability of
    the positive class (or the risk score) and the group by the study's training cut-off.

    A model file runs code when loaded: use only model files you trust.
    """
    from ..fileio import is_stdout
    from ..results import rows_csv_text
    from ..study.run import PREDICT_COLUMNS, predict_table

    rows = predict_table(model, features, output, clinical=clinical, id_column=id_column, batch=batch)
    if is_stdout(output):
        click.echo(rows_csv_text(rows, PREDICT_COLUMNS), nl=False)
    else:
        click.echo(f"Predicted {len(rows)} patient(s) -> {output}", err=True)
