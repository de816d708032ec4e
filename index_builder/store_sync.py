"""Registers a bundle's documents and chunks in the database (``store.KnowledgeDocument``/``KnowledgeChunk``).

The bundle's key in the store is its folder name. Syncing is an upsert by ``(bundle, source, doc_key)``
(``doc_key`` is the ``doc_id`` without its ``"{source}:"`` prefix): documents whose content hash changed get
new chunks, unchanged ones only get their ``vector_id`` refreshed, documents no longer in the bundle are
deleted. Only imported when a store is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

log = logging.getLogger(__name__)

_BATCH = 500


def bundle_key(out: Path) -> str:
    """The name a bundle is registered under (its folder name)."""
    return Path(out).name[:128]


def doc_key(doc_id: str, source: str) -> str:
    """``doc_id`` without the ``"{source}:"`` prefix."""
    prefix = f"{source}:"
    return doc_id[len(prefix) :] if doc_id.startswith(prefix) else doc_id


def _doc_sha(row: dict[str, Any]) -> str:
    payload = json.dumps(
        [row["kind"], row["title"], row["diagnosis"], row["text"], row["meta"]], ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def register_bundle(
    store: Any, out: Path, manifest: dict[str, Any], documents: pa.Table, chunks: pa.Table
) -> dict:
    """Upserts every document and chunk of a bundle; returns ``{"inserted", "updated", "unchanged", "deleted"}``.

    Raises:
        StoreError: When the database is unreachable or not migrated.
    """
    from sqlalchemy import delete, select, update

    from store import KnowledgeChunk, KnowledgeDocument

    name = bundle_key(out)
    chunk_map: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in chunks.to_pylist():
        chunk_map[row["doc_id"]].append(row)
    docs = documents.to_pylist()
    stats = {"inserted": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    store.check()
    with store.session() as session:
        existing = {
            (src, key): (pk, sha)
            for pk, src, key, sha in session.execute(
                select(
                    KnowledgeDocument.id,
                    KnowledgeDocument.source,
                    KnowledgeDocument.doc_key,
                    KnowledgeDocument.sha256,
                ).where(KnowledgeDocument.bundle == name)
            )
        }
        seen: set[tuple[str, str]] = set()
        new_chunks: list[dict[str, Any]] = []
        for row in docs:
            key = (row["source"], doc_key(row["doc_id"], row["source"]))
            seen.add(key)
            sha = _doc_sha(row)
            meta = json.loads(row["meta"] or "{}")
            values = {
                "kind": row["kind"],
                "title": row["title"],
                "diagnosis": row["diagnosis"],
                "meta": meta,
                "sha256": sha,
            }
            doc_chunks = sorted(chunk_map.get(row["doc_id"], []), key=lambda c: c["chunk_index"])
            if key in existing and existing[key][1] == sha:
                pk = existing[key][0]
                for c in doc_chunks:
                    session.execute(
                        update(KnowledgeChunk)
                        .where(
                            KnowledgeChunk.document_id == pk, KnowledgeChunk.chunk_index == c["chunk_index"]
                        )
                        .values(vector_id=c["vector_id"])
                    )
                stats["unchanged"] += 1
                continue
            if key in existing:
                pk = existing[key][0]
                session.execute(update(KnowledgeDocument).where(KnowledgeDocument.id == pk).values(**values))
                session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id == pk))
                stats["updated"] += 1
            else:
                doc = KnowledgeDocument(bundle=name, source=key[0], doc_key=key[1][:255], **values)
                session.add(doc)
                session.flush()
                pk = doc.id
                stats["inserted"] += 1
            new_chunks.extend(
                {
                    "document_id": pk,
                    "chunk_index": c["chunk_index"],
                    "vector_id": c["vector_id"],
                    "text": c["text"],
                    "char_start": c["char_start"],
                    "char_end": c["char_end"],
                    "n_tokens": c["n_tokens"],
                }
                for c in doc_chunks
            )
        for start in range(0, len(new_chunks), _BATCH):
            session.execute(KnowledgeChunk.__table__.insert(), new_chunks[start : start + _BATCH])
        stale = [pk for key, (pk, _) in existing.items() if key not in seen]
        for start in range(0, len(stale), _BATCH):
            batch = stale[start : start + _BATCH]
            session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id.in_(batch)))
            session.execute(delete(KnowledgeDocument).where(KnowledgeDocument.id.in_(batch)))
        stats["deleted"] = len(stale)
    log.info("store: bundle %s registered: %s", name, stats)
    return stats


def unregister_documents(store: Any, out: Path, doc_ids: list[str]) -> int:
    """Deletes documents (and their chunks) of a bundle by ``doc_id``; returns how many were deleted."""
    from sqlalchemy import delete, select

    from store import KnowledgeChunk, KnowledgeDocument

    name = bundle_key(out)
    store.check()
    deleted = 0
    with store.session() as session:
        for doc_id in doc_ids:
            source, _, key = doc_id.partition(":")
            pks = list(
                session.scalars(
                    select(KnowledgeDocument.id).where(
                        KnowledgeDocument.bundle == name,
                        KnowledgeDocument.source == source,
                        KnowledgeDocument.doc_key == key,
                    )
                )
            )
            if pks:
                session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.document_id.in_(pks)))
                session.execute(delete(KnowledgeDocument).where(KnowledgeDocument.id.in_(pks)))
                deleted += len(pks)
    return deleted
