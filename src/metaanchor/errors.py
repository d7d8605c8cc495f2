"""Exceptions for user mistakes.

Anything a user can cause (a bad argument, file, record or config value) raises a
``UserError`` subclass whose message names the culprit. The CLI prints it as one
line on stderr and exits with code 2; every other exception is an internal error
(exit code 1).
"""


class UserError(Exception):
    """A mistake in the user's input; the message names what is wrong."""


class AnchorSpecError(UserError, ValueError):
    """A malformed anchor-set SPEC string or file."""


class DataError(UserError):
    """A bad dataset file, image or annotation record."""


class ConfigError(UserError):
    """An unknown config key or a value of the wrong type."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or belongs to another model/version."""
