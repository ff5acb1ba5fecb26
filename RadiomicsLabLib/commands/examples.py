"""``radiomicslab examples``: write the example study tables (real public data shipped by scikit-learn and
scikit-survival; :mod:`RadiomicsLabLib.study.examples` says what each holds and what is made)."""

from pathlib import Path

import click


@click.command("examples")
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), default=Path("examples"), show_default=True,
              help="Folder for breast_cancer/ and gbsg2/ (features.csv and clinical.csv each).")
def command(output_dir):
    """Write two example studies: breast_cancer/ (569 patients, 29 image features, malignant vs benign, three
    made imaging sites, 'mean radius' as a covariate, a train/test split) and gbsg2/ (686 patients,
    recurrence-free survival)."""
    from ..fileio import check_output
    from ..study.examples import breast_cancer_tables, gbsg2_tables, write_tables

    folder = check_output(output_dir, kind="folder")
    written = write_tables({**breast_cancer_tables(folder / "breast_cancer"), **gbsg2_tables(folder / "gbsg2")})
    click.echo(f"Wrote {len(written)} tables -> {folder} (breast_cancer/: binary outcome 'diagnosis', batch 'site'; "
               "gbsg2/: survival 'days' and 'recurrence')", err=True)
