"""Store-specific errors, all :class:`zebra.errors.StoreError` so the CLI reports them cleanly."""

from __future__ import annotations

from zebra.errors import StoreError


class StoreUnreachableError(StoreError):
    """The database server could not be reached or the SQLite file could not be opened."""


class StoreNotMigratedError(StoreError):
    """The database schema is not at the revision this version of Zebra expects."""


class InvalidDatabaseURLError(StoreError):
    """The database URL cannot be parsed or names an unsupported backend."""
