"""Citations: the exact span of a document that supports a hit, and the document's public address.

A chunk can hold some 200 word pieces; the quote of a citation is narrowed to the window of one or two
sentences inside the chunk that shares the most distinct words with the query (the chunk start when nothing is
shared), capped at ``max_chars`` and cut at a word boundary. Offsets are in the document text, so
``document.text[citation.char_start:citation.char_end] == citation.quote``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from retrieval.types import Citation

#: Longest quote, in characters.
DEFAULT_MAX_QUOTE = 320

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_QUERY_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "were",
        "with",
        "without",
        "year",
        "old",
        "male",
        "female",
        "patient",
        "presents",
        "presented",
        "history",
    ]
)


def query_terms(query: str | None) -> set[str]:
    """Distinct lower-case words of at least 3 characters in ``query``, stop words removed."""
    return {w for w in _WORD.findall((query or "").lower()) if len(w) >= 3 and w not in _QUERY_STOPWORDS}


def _sentences(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _trim(text: str, start: int, end: int, max_chars: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end - start > max_chars:
        cut = text.rfind(" ", start, start + max_chars)
        end = cut if cut > start else start + max_chars
        while end > start and text[end - 1].isspace():
            end -= 1
    return start, end


def best_span(text: str, query: str | None, *, max_chars: int = DEFAULT_MAX_QUOTE) -> tuple[int, int]:
    """The ``(start, end)`` of the most query-relevant window of one or two sentences in ``text``.

    Args:
        text: The chunk text.
        query: The query; ``None`` or no shared words gives the start of the text.
        max_chars: Longest span.

    Returns:
        Offsets into ``text`` with no surrounding white space; ``(0, 0)`` for blank text.
    """
    if not text.strip():
        return 0, 0
    sentences = _sentences(text)
    terms = query_terms(query)
    best = (sentences[0][0], sentences[min(1, len(sentences) - 1)][1])
    if terms:
        # most shared words; on a tie the shorter window (a second sentence must add a word)
        best_key = (0, 0)
        for i, (s_start, _s_end) in enumerate(sentences):
            for j in (i, i + 1):
                if j >= len(sentences):
                    continue
                end = sentences[j][1]
                if j > i and end - s_start > max_chars:
                    continue
                window_terms = set(_WORD.findall(text[s_start:end].lower()))
                key = (len(terms & window_terms), -(end - s_start))
                if key[0] > 0 and (best_key[0] == 0 or key > best_key):
                    best_key, best = key, (s_start, end)
    return _trim(text, best[0], best[1], max_chars)


def parse_meta(raw: Any) -> dict[str, Any]:
    """The ``meta`` column as a dict (it is stored as a JSON string); bad or empty values give ``{}``."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _digits(value: Any) -> str | None:
    found = re.search(r"\d+", str(value)) if value is not None else None
    return found.group(0) if found else None


def document_url(source: str, meta: Mapping[str, Any]) -> str | None:
    """A public address for a document: ``meta["url"]`` when set, else the Orphanet or OMIM entry page."""
    url = meta.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return url
    for key in ("orpha_id", "orpha", "orphanet", "orphacode"):
        number = _digits(meta.get(key))
        if number:
            return f"https://www.orpha.net/en/disease/detail/{number}"
    for key in ("omim_id", "omim", "mim"):
        number = _digits(meta.get(key))
        if number:
            return f"https://omim.org/entry/{number}"
    return None


def chunk_citation(
    row: Mapping[str, Any],
    query: str | None = None,
    *,
    max_chars: int = DEFAULT_MAX_QUOTE,
    meta: Mapping[str, Any] | None = None,
) -> Citation:
    """The citation of a chunk row (columns of ``chunks.parquet``), quoting its most query-relevant span.

    Args:
        row: A chunk: ``doc_id``, ``source``, ``kind``, ``title``, ``text``, ``char_start``, ``char_end``,
            ``chunk_index``, ``meta``.
        query: The query used to pick the quoted window.
        max_chars: Longest quote.
        meta: Parsed meta, when the caller already has it.
    """
    text = str(row.get("text") or "")
    local_start, local_end = best_span(text, query, max_chars=max_chars)
    offset = int(row.get("char_start") or 0)
    meta = parse_meta(row.get("meta")) if meta is None else meta
    chunk_index = row.get("chunk_index")
    return Citation(
        source=str(row.get("source") or ""),
        doc_id=str(row.get("doc_id") or ""),
        title=str(row.get("title") or ""),
        kind=str(row.get("kind") or ""),
        char_start=offset + local_start,
        char_end=offset + local_end,
        quote=text[local_start:local_end],
        url=document_url(str(row.get("source") or ""), meta),
        chunk_index=None if chunk_index is None else int(chunk_index),
    )


def image_citation(row: Mapping[str, Any], *, meta: Mapping[str, Any] | None = None) -> Citation:
    """The citation of an image row (columns of ``images.parquet``): kind ``image``, quote = caption."""
    caption = str(row.get("caption") or "")
    meta = parse_meta(row.get("meta")) if meta is None else meta
    image_id = str(row.get("image_id") or "")
    return Citation(
        source=str(row.get("source") or ""),
        doc_id=image_id,
        title=str(row.get("diagnosis") or row.get("case_id") or image_id),
        kind="image",
        char_start=0,
        char_end=len(caption),
        quote=caption,
        url=document_url(str(row.get("source") or ""), meta),
    )
