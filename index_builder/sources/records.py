"""Shared mapping of a flat record (JSON object or CSV row) to a :class:`Document`.

Fields: ``text`` (required; ``body``/``content``/``abstract`` accepted), ``id`` (or ``doc_id``; default: the
line/row number), ``title``, ``diagnosis``, ``kind`` (default ``text``), ``modality``, ``body_region``,
``url``; every other non-empty field goes to ``meta``.
"""

from __future__ import annotations

from typing import Any

from index_builder.documents import Document

TEXT_FIELDS = ("text", "body", "content", "abstract")
ID_FIELDS = ("id", "doc_id")
KNOWN = {*TEXT_FIELDS, *ID_FIELDS, "title", "diagnosis", "kind", "modality", "body_region"}


def _str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def record_to_document(record: dict[str, Any], *, source: str, fallback_id: str) -> Document | None:
    """The document for one record, or ``None`` when it has no text."""
    text = next((t for f in TEXT_FIELDS if (t := _str(record.get(f)))), None)
    if text is None:
        return None
    key = next((k for f in ID_FIELDS if (k := _str(record.get(f)))), None) or fallback_id
    title = _str(record.get("title")) or text.split("\n", 1)[0][:120]
    meta = {k: v for k, v in record.items() if k not in KNOWN and v not in (None, "", [], {})}
    return Document(
        doc_id=f"{source}:{key}",
        source=source,
        kind=_str(record.get("kind")) or "text",
        title=title,
        text=text,
        diagnosis=_str(record.get("diagnosis")),
        modality=_str(record.get("modality")),
        body_region=_str(record.get("body_region")),
        meta=meta,
    )
