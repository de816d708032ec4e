"""``jsonl:PATH``: one JSON object per line (see :mod:`index_builder.sources.records` for the fields)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from index_builder.documents import Document
from index_builder.errors import SourceError
from index_builder.sources.base import Source, register_source
from index_builder.sources.records import record_to_document

log = logging.getLogger(__name__)


@register_source
class JsonlSource(Source):
    """JSON Lines documents: jsonl:PATH (fields text, id, title, diagnosis, kind, modality, body_region)."""

    kind = "jsonl"

    def documents(self) -> Iterator[Document]:
        assert self.path is not None
        path = self.require_file(self.path, "JSON Lines file")
        skipped = 0
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SourceError(
                        f"{path}:{lineno} is not valid JSON: {exc.msg}.", hint="Fix or remove that line."
                    ) from exc
                if not isinstance(record, dict):
                    raise SourceError(f"{path}:{lineno} is not a JSON object.", hint="One object per line.")
                doc = record_to_document(record, source=self.name, fallback_id=f"line{lineno}")
                if doc is None:
                    skipped += 1
                    continue
                yield doc
        if skipped:
            log.warning("%s: %d lines without text skipped", path, skipped)
