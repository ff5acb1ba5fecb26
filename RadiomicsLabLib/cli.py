"""Command line: the ``radiomicslab`` group; its commands are the modules of :mod:`RadiomicsLabLib.commands`.

User mistakes (:class:`RadiomicsLabError`) print one line on stderr and exit with status 2,
leaving every output file as it was.
"""

import sys
import warnings

import click

from . import __version__
from .errors import RadiomicsLabError, RadiomicsLabWarning

EXIT_USER_ERROR = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="radiomicslab")
def cli():
    """RadiomicsLab: IBSI-compliant radiomics for 3D Slicer, from the command line."""


def _add_workflow_commands():
    from .commands import workflow_commands

    for command in workflow_commands():
        cli.add_command(command)


_add_workflow_commands()


def user_message(error) -> str:
    """One line for the user: ITK/SimpleITK text inside a message (source file names, addresses, several
    lines) is reduced to its reason, with what to change where the reason is a known one."""
    from .imageio import itk_reason

    text = str(error)
    markers = ("Exception thrown in SimpleITK", "ITK ERROR:", "sitk::ERROR:")
    if not any(marker in text for marker in markers):
        return text
    start = min(text.find(marker) for marker in markers if marker in text)
    prefix, reason = text[:start].rstrip(), itk_reason(text[start:])
    advice = next((a for known, a in ITK_ADVICE.items() if known in reason), "check the inputs and settings it names")
    return f"{prefix} {reason}; {advice}." if prefix else f"ITK: {reason}; {advice}."


#: What to change for ITK errors a user can reach (reason text -> advice).
ITK_ADVICE = {
    "is the background label": "label 0 is the background; give the label value of a segment (1 or more)",
    "Failed to allocate memory": "the image grid is too large for this machine's memory; use a coarser "
                                 "resampledPixelSpacing (close to the image's spacing) or a smaller image",
    "spacing": "check resampledPixelSpacing (positive millimetres, close to the image's spacing) and the image's spacing",
}


def _is_itk_error(error) -> bool:
    return any(marker in str(error) for marker in ("Exception thrown in SimpleITK", "ITK ERROR:", "sitk::ERROR:"))


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """RadiomicsLab's warnings (:class:`~RadiomicsLabLib.errors.RadiomicsLabWarning`) as one line on stderr; others
    as Python shows them."""
    if issubclass(category, RadiomicsLabWarning):
        click.echo(f"radiomicslab: warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv=None):
    """Console entry point: user errors are one line on stderr and exit status 2; warnings one line each."""
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="radiomicslab", standalone_mode=False)
    except RadiomicsLabError as error:
        click.echo(f"radiomicslab: error: {user_message(error)}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.exceptions.Abort:
        click.echo("radiomicslab: aborted", err=True)
        sys.exit(130)
    except click.UsageError as error:  # a bad option or argument: one line too, naming the command's --help
        message = " ".join(error.format_message().split()).rstrip(".")
        command = error.ctx.command_path if error.ctx is not None else "radiomicslab"
        click.echo(f"radiomicslab: error: {message}; see '{command} --help'.", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except RuntimeError as error:  # after click's Abort, a RuntimeError too
        if not _is_itk_error(error):
            raise
        click.echo(f"radiomicslab: error: {user_message(error)}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except MemoryError:
        click.echo("radiomicslab: error: out of memory; use a coarser resampledPixelSpacing, fewer features or "
                   "image types, or a smaller image.", err=True)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(0)


if __name__ == "__main__":
    main()
