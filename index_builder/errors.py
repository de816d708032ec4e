"""Errors raised by the index builder, all subclasses of :mod:`zebra.errors` types."""

from __future__ import annotations

from zebra.errors import ConfigError, DatasetError, IndexIntegrityError, NotFoundError, ZebraError

REBUILD_HINT = "Rebuild it with `zebra index build`."


class BundleNotFoundError(NotFoundError):
    """No index bundle exists at the given path."""


class BundleIntegrityError(IndexIntegrityError):
    """A bundle file is missing, truncated or altered (same as :class:`IndexIntegrityError`)."""


class BundleChangedError(IndexIntegrityError):
    """The bundle folder was replaced (rebuilt or updated) after it was opened."""


class SourceError(DatasetError):
    """A document source spec is invalid or its data cannot be read."""


class SourceSpecError(ConfigError):
    """A ``KIND:PATH`` source spec names no known kind or has bad options."""


class GpuUnavailableError(ZebraError):
    """``--gpu`` was asked for but FAISS has no GPU support here."""


class BuildLockedError(ZebraError):
    """Another build is writing the same bundle."""


class NoImageEmbedderError(NotFoundError):
    """An operation on image or cross-modal vectors was asked of a bundle without an image index."""
