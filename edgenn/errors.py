"""Domain errors. Each class carries its exit code; the CLI maps them to messages in one place."""

from __future__ import annotations


class EdgennError(Exception):
    """Base of every error edgenn raises on purpose.

    Parameters
    ----------
    message
        What went wrong, including the value received.
    hint
        How to fix it; appended to the message as one line.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message and the fix on one line, as the CLI prints it."""
        text = self.message.rstrip(". ")
        if self.hint:
            text = f"{text}: {self.hint.rstrip('.')}"
        return " ".join(text.split())


class UsageError(EdgennError):
    """Bad input or usage (exit 2): a path, a file, a flag or data the user can fix."""

    exit_code = 2


class InputFileError(UsageError):
    """An input file is missing, empty, truncated or not what it claims to be."""


class UnsafeModelError(UsageError):
    """The model would run code from the file (Lambda, custom objects) and --allow-unsafe is off."""


class DataError(UsageError):
    """The dataset is missing, malformed, or does not fit the model."""


class ConfigError(UsageError):
    """A recipe, device profile or config file is invalid."""


class MissingDependencyError(UsageError):
    """An optional dependency (extra) is not installed."""


class ConversionError(EdgennError):
    """A conversion, bridging or runtime step failed (exit 3)."""

    exit_code = 3


class BridgeError(ConversionError):
    """A Keras 3 model could not be translated into an equivalent tf_keras model."""


class RuntimeFailure(ConversionError):
    """The on-device runtime failed to load or run a model."""


class ConstraintError(EdgennError):
    """A recipe or device constraint was not met (exit 4)."""

    exit_code = 4


class ResultFailure(EdgennError):
    """A command ran and its result says it failed (its exit code comes from the result)."""

    def __init__(self, exit_code: int, message: str, hint: str | None = None):
        self.exit_code = exit_code
        super().__init__(message, hint)
