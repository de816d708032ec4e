"""Errors raised by retrieval, subclasses of the :mod:`zebra.errors` types."""

from __future__ import annotations

from zebra.errors import ConfigError, DatasetError, NotFoundError, ZebraError


class RetrievalError(ZebraError):
    """A search could not be run."""


class QueryError(ConfigError):
    """A query or a search option is invalid (empty query, unknown mode, bad k)."""


class NoImageIndexError(NotFoundError):
    """Image or cross-modal search was asked of a bundle without an image index or image embedder."""


class ImageInputError(RetrievalError):
    """A query image could not be read."""


class EvaluationDataError(DatasetError):
    """The evaluation data set is missing parts or has no usable case."""
