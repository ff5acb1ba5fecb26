"""``radiomicslab warmup``: compile the numba kernels of the feature maps once (:mod:`RadiomicsLabLib.warmup`), so
that no later map run waits for the compiler. ``make venv`` runs it after installing."""

import click


@click.command("warmup")
@click.option("--if-needed", is_flag=True, help="Do nothing when this installation's kernels are already compiled "
              "for the current numba, Python and kernel sources.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes compiling at once (default: one per core, as memory allows; 1: this one only).")
def command(if_needed, workers):
    """Compile (or load from numba's cache) every feature map kernel with the argument types real map runs use, for
    every family of both definitions; the machine code is cached where every later process finds it."""
    from ..warmup import describe, is_warm, warm_up
    from . import progress_steps

    if if_needed and is_warm():
        click.echo("RadiomicsLab kernels already compiled for this installation.", err=True)
        return
    with progress_steps(desc="compiling kernels", unit="run", leave=False) as progress:
        report = warm_up(progress=progress, workers=workers)
    click.echo(describe(report), err=True)
