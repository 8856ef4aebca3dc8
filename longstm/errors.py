"""Errors longstm raises on bad input.

Every error a user can cause derives from `LongstmError`, so the CLI can print the message
(which names the file, column, row or key and says what was expected and what was got)
instead of a stack trace.
"""


class LongstmError(Exception):
    """Base class for errors caused by the user's input or configuration."""


class DataValidationError(LongstmError, ValueError):
    """A data file or array does not have the shape, types or ordering longstm needs."""


class ConfigError(LongstmError, ValueError):
    """A configuration file or argument has an unknown key or a bad value."""


class TrainingError(LongstmError, RuntimeError):
    """Training cannot go on (for example, the loss became NaN or inf)."""
