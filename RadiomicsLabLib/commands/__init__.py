"""Workflow subcommands of ``radiomicslab`` (maps, observers, habitats, delta, batch, ...).

Each module here defines ``command``, a ``click.Command``; :mod:`RadiomicsLabLib.cli` adds every
one to the ``radiomicslab`` group. Keep module-level imports to ``click`` (and the standard
library): the CLI imports all of them at start-up, and heavy work belongs inside the command.
"""

import importlib
import pkgutil
from contextlib import contextmanager


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


@contextmanager
def progress_steps(**options):
    """A :func:`progress_bar` as the ``progress(done, total, message)`` callback the core and the Logic classes take
    (made at the first call, ``total`` and the message following each call), closed on the way out.
    ``options`` are :func:`progress_bar`'s."""
    bar = None

    def progress(done, total, message):
        nonlocal bar
        bar = bar or progress_bar(total=total, **options)
        bar.total = total
        bar.set_postfix_str(message[:60], refresh=False)
        bar.n = done
        bar.refresh()

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()
