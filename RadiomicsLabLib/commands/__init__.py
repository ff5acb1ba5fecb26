"""Workflow subcommands of ``radiomicslab`` (maps, observers, habitats, delta, batch, ...).

Each module here defines ``command``, a ``click.Command``; :mod:`RadiomicsLabLib.cli` adds every
one to the ``radiomicslab`` group. Keep module-level imports to ``click`` (and the standard
library): the CLI imports all of them at start-up, and heavy work belongs inside the command.
"""

import importlib
import pkgutil


def workflow_commands() -> list:
    """The ``command`` of every module in this package, in name order."""
    return [importlib.import_module(f"{__name__}.{info.name}").command
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name)]


def progress_bar(**options):
    """The command line's progress bar: tqdm on standard error, drawn only when standard error is a terminal.

    A log file or pipe gets no bar lines (tqdm ``disable=not isatty``); every command makes its bars here.
    ``options`` are tqdm's (``total``, ``unit``, ``leave``, ``desc``, ...).
    """
    import sys

    from tqdm import tqdm

    stream = options.pop("file", None) or sys.stderr
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        terminal = False
    return tqdm(file=stream, disable=not terminal, **options)
