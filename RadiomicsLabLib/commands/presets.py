"""``radiomicslab presets``: the named settings presets accepted by --params."""

import click


@click.command("presets")
def command():
    """List the named settings presets accepted by --params."""
    from ..settings import PRESETS_DIR, preset_names

    for name in preset_names():
        first = (PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
        click.echo(f"{name}\t{first}")
