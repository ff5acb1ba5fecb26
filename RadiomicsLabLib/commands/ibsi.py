"""``radiomicslab ibsi``: IBSI compliance on the reference data sets, with pass counts."""

import sys
from pathlib import Path

import click

from ..errors import RadiomicsLabError


@click.command("ibsi")
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), default=Path("out/ibsi"), show_default=True)
@click.option("--dataset", "datasets", multiple=True,
              help="Only these data sets (repeatable): digital_phantom, config_A..config_E, ibsi2_phase1, ibsi2_phase2.")
def command(output_dir, datasets):
    """IBSI compliance: run every IBSI reference data set and report pass counts (ibsi_report.csv, .md)."""
    from ..fileio import check_output, check_outputs
    from ..ibsi.compliance import DATASETS, reference_folder, run_compliance, summary

    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise RadiomicsLabError(f"Unknown IBSI data set {', '.join(unknown)}; choose from {', '.join(DATASETS)}.")
    references = reference_folder(datasets or DATASETS)
    check_output(output_dir, {"reference data folder": references}, "folder", "-o")
    check_outputs([output_dir / "ibsi_report.csv", output_dir / "ibsi_report.md"])

    def progress(dataset, rows, seconds):
        passed = sum(r.passed for r in rows)
        click.echo(f"{dataset:<16} {passed:>4} / {len(rows):<4} passed  ({seconds:.1f} s)")

    rows = run_compliance(output_dir, datasets or DATASETS, progress)
    passed, total = sum(p for p, _ in summary(rows).values()), len(rows)
    click.echo(f"{'all':<16} {passed:>4} / {total:<4} passed -> {output_dir / 'ibsi_report.csv'}, {output_dir / 'ibsi_report.md'}")
    if passed != total:
        sys.exit(1)
