"""Typed errors. Every user-facing failure is a :class:`ZebraError` whose message says what to do."""

from __future__ import annotations


class ZebraError(Exception):
    """Base class of every error Zebra raises on purpose.

    Args:
        message: What went wrong, in words a user understands.
        hint: What to do about it. Shown after the message.
    """

    #: Exit code used by the CLI for this kind of error.
    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}" if hint else message)


class ConfigError(ZebraError):
    """Invalid settings file, environment variable or option."""


class NotFoundError(ZebraError):
    """A named thing (backend, file, record, dataset) does not exist."""


class BackendNotFoundError(NotFoundError):
    """A backend spec names no registered backend."""


class IntakeError(ZebraError):
    """A medical image could not be read safely."""


class UnsupportedFormatError(IntakeError):
    """The file is not a format Zebra reads."""


class CorruptFileError(IntakeError):
    """The file claims a format but its content is broken or truncated."""


class UnsafeFileError(IntakeError):
    """The file looks hostile (polyglot preamble, path escape, decompression bomb)."""


class LimitExceededError(IntakeError):
    """The input is larger than the configured limits (bytes, pixels, frames, files)."""


class MissingCodecError(IntakeError):
    """The pixel data uses a transfer syntax whose decoder is not installed."""


class DatasetError(ZebraError):
    """A data set (NOVA layout, MedPix, YOLO) is missing parts or malformed."""


class StoreError(ZebraError):
    """The database could not be reached or is in an unexpected state."""


class IndexIntegrityError(ZebraError):
    """An index bundle is truncated, tampered with or incomplete."""


class ModelError(ZebraError):
    """A model could not be loaded or run."""
