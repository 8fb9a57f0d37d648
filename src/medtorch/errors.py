"""Errors a user can act on.

Anything raised as :class:`MedtorchError` is the user's input being wrong (a missing column,
a config typo, an unreadable file). The CLI prints its message as one line on stderr and
exits with code 2; every other exception is a bug and keeps its traceback.
"""


class MedtorchError(Exception):
    """A problem with the user's input, reported as one clear line."""

    exit_code = 2


class DataError(MedtorchError):
    """The data cannot be read or does not fit the task."""


class ConfigError(MedtorchError):
    """The configuration names an unknown key or an invalid value."""


class LeakageError(DataError):
    """A split would put the same patient (group) on both sides."""


class BundleError(MedtorchError):
    """A bundle folder is missing, incomplete or of an unknown format."""


RETRAIN_HINT = "retrain it with this version, or use the medtorch that wrote it"  # a bundle another medtorch wrote
