"""``csv:PATH``: a CSV file with a header row, same columns as ``jsonl`` (``text`` required)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator

from index_builder.documents import Document
from index_builder.errors import SourceError
from index_builder.sources.base import Source, register_source
from index_builder.sources.records import TEXT_FIELDS, record_to_document

log = logging.getLogger(__name__)


@register_source
class CsvSource(Source):
    """CSV documents with a header: csv:PATH[?delimiter=;] (columns as for jsonl)."""

    kind = "csv"
    options = {"delimiter": "field separator (default ,)"}

    def documents(self) -> Iterator[Document]:
        assert self.path is not None
        path = self.require_file(self.path, "CSV file")
        delimiter = self.option("delimiter", ",")
        if delimiter in {"tab", "\\t"}:
            delimiter = "\t"
        csv.field_size_limit(1 << 26)
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if not set(fields) & set(TEXT_FIELDS):
                raise SourceError(
                    f"{path} has no text column (columns: {', '.join(fields) or 'none'}).",
                    hint="Add a 'text' column (and optionally id, title, diagnosis, kind).",
                )
            try:
                for rowno, row in enumerate(reader, 2):
                    record = {(k or "").strip().lower(): v for k, v in row.items() if k}
                    doc = record_to_document(record, source=self.name, fallback_id=f"row{rowno}")
                    if doc is not None:
                        yield doc
            except csv.Error as exc:
                raise SourceError(f"{path}: {exc}.", hint="Check the CSV quoting and delimiter.") from exc
