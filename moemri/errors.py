"""Errors a user can act on. The CLI prints their message as one line; the Slicer modules show it.

Exit codes follow BSD sysexits where one fits, so scripts can tell the cases apart.
"""


class MoEMRIError(Exception):
    """Base class: the message is written for the user, not the developer."""

    exit_code = 1


class InputError(MoEMRIError):
    """The input image or an argument cannot be processed as it is (4-D, RGB, constant, NaN, ...)."""

    exit_code = 65  # EX_DATAERR


class OutputError(MoEMRIError):
    """An output file cannot be created where it was asked for (unwritable folder, a folder in the way)."""

    exit_code = 73  # EX_CANTCREAT


class DataFetchError(MoEMRIError):
    """A data package could not be fetched or did not match its checksum."""

    exit_code = 74  # EX_IOERR


class MethodUnavailable(MoEMRIError):
    """A method needs an optional package or weights that are not installed."""

    exit_code = 69  # EX_UNAVAILABLE


class Cancelled(MoEMRIError):
    """The user cancelled; raised from a progress callback."""

    exit_code = 130
