"""Errors raised by the data set readers, writers and converters."""

from __future__ import annotations

from zebra.errors import DatasetError, NotFoundError


class MissingColumnsError(DatasetError):
    """A NOVA parquet file lacks columns the reader needs.

    Args:
        path: The parquet file.
        missing: Names of the missing columns.
    """

    def __init__(self, path: str, missing: list[str]) -> None:
        self.missing = list(missing)
        super().__init__(
            f"{path} lacks the column(s) {', '.join(missing)} that a NOVA file must have.",
            hint="Point at a NOVA-layout data set (data/nova-v1.parquet) or re-create it with "
            "'zebra data convert'.",
        )


class UnknownConverterError(NotFoundError):
    """``zebra data convert`` was asked for a data set kind it does not know."""
