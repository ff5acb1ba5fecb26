"""The one exception type for user mistakes (bad file, bad parameter, empty mask, ...)."""


class RadiomicsLabError(Exception):
    """A problem with the user's input. The message says what is wrong and what to do.

    The CLI prints it on one line without a traceback and exits with status 2; the GUIs show it.
    Code raising it must leave the scene and any output file as they were.
    """


class Cancelled(RadiomicsLabError):
    """The user cancelled running work (progress callback returned ``False``); nothing was written.

    Each workflow raises its own subclass; a GUI catches this one to say "cancelled" instead of an error.
    """


class RadiomicsLabWarning(UserWarning):
    """Something the user should know about a result that was still computed (e.g. CT settings on an MR image).

    Raised with :func:`warnings.warn`; the CLI prints it as one ``radiomicslab: warning: ...`` line, and the
    engine also records it in the result's provenance notes.
    """
