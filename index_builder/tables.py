"""Arrow schemas and Parquet I/O for the bundle tables (``documents``, ``chunks``, ``images``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from index_builder.chunking import Chunk
from index_builder.documents import Document, ImageItem

_S, _I = pa.string(), pa.int64()

DOCUMENT_SCHEMA = pa.schema(
    [
        ("doc_id", _S),
        ("source", _S),
        ("kind", _S),
        ("title", _S),
        ("diagnosis", _S),
        ("text", _S),
        ("modality", _S),
        ("body_region", _S),
        ("meta", _S),
    ]
)
CHUNK_SCHEMA = pa.schema(
    [
        ("vector_id", _I),
        ("doc_id", _S),
        ("source", _S),
        ("kind", _S),
        ("title", _S),
        ("diagnosis", _S),
        ("text", _S),
        ("char_start", _I),
        ("char_end", _I),
        ("chunk_index", _I),
        ("n_tokens", _I),
        ("modality", _S),
        ("body_region", _S),
        ("meta", _S),
    ]
)
IMAGE_SCHEMA = pa.schema(
    [
        ("vector_id", _I),
        ("image_id", _S),
        ("path", _S),
        ("case_id", _S),
        ("caption", _S),
        ("diagnosis", _S),
        ("modality", _S),
        ("body_region", _S),
        ("source", _S),
        ("meta", _S),
    ]
)


def meta_json(meta: dict[str, Any]) -> str:
    """``meta`` as compact JSON with sorted keys (non-JSON values become strings)."""
    return json.dumps(meta or {}, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))


def document_rows(docs: Iterable[Document]) -> list[dict[str, Any]]:
    """Rows of ``documents.parquet``."""
    return [
        {
            "doc_id": d.doc_id,
            "source": d.source,
            "kind": d.kind,
            "title": d.title,
            "diagnosis": d.diagnosis,
            "text": d.text,
            "modality": d.modality,
            "body_region": d.body_region,
            "meta": meta_json(d.meta),
        }
        for d in docs
    ]


def chunk_rows(
    docs: Sequence[Document], chunks: Sequence[Sequence[Chunk]], first_id: int
) -> list[dict[str, Any]]:
    """Rows of ``chunks.parquet`` with consecutive ``vector_id`` from ``first_id``, in document order."""
    rows: list[dict[str, Any]] = []
    vid = first_id
    for doc, doc_chunks in zip(docs, chunks, strict=True):
        meta = meta_json(doc.meta)
        for c in doc_chunks:
            rows.append(
                {
                    "vector_id": vid,
                    "doc_id": doc.doc_id,
                    "source": doc.source,
                    "kind": doc.kind,
                    "title": doc.title,
                    "diagnosis": doc.diagnosis,
                    "text": c.text,
                    "char_start": c.char_start,
                    "char_end": c.char_end,
                    "chunk_index": c.chunk_index,
                    "n_tokens": c.n_tokens,
                    "modality": doc.modality,
                    "body_region": doc.body_region,
                    "meta": meta,
                }
            )
            vid += 1
    return rows


def image_rows(items: Sequence[ImageItem], vector_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Rows of ``images.parquet``."""
    return [
        {
            "vector_id": int(vid),
            "image_id": it.image_id,
            "path": it.path,
            "case_id": it.case_id,
            "caption": it.caption,
            "diagnosis": it.diagnosis,
            "modality": it.modality,
            "body_region": it.body_region,
            "source": it.source,
            "meta": meta_json(it.meta),
        }
        for it, vid in zip(items, vector_ids, strict=True)
    ]


def write_table(rows: list[dict[str, Any]] | pa.Table, schema: pa.Schema, path: Path) -> pa.Table:
    """Writes rows (or a table) with ``schema`` to Parquet (zstd); returns the table."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
    table = table.select(schema.names).cast(schema)
    pq.write_table(table, path, compression="zstd")
    return table


def read_table(path: Path) -> pa.Table:
    """Reads a bundle table."""
    return pq.read_table(path)


def concat(tables: Sequence[pa.Table], schema: pa.Schema) -> pa.Table:
    """Concatenates tables of the same schema (an empty table when none)."""
    tables = [t.select(schema.names).cast(schema) for t in tables if t is not None]
    return pa.concat_tables(tables) if tables else schema.empty_table()
