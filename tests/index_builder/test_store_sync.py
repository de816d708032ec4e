"""Registering bundles in the database (SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from index_builder.build import add_to_bundle, build_bundle, delete_from_bundle
from index_builder.bundle import Bundle

from .conftest import HASH, write_jsonl

store_mod = pytest.importorskip("store")


@pytest.fixture
def store(tmp_path: Path):
    s = store_mod.Store(f"sqlite:///{tmp_path / 'zebra.db'}")
    s.upgrade()
    yield s
    s.dispose()


def _rows(store) -> dict[str, list[tuple[int, int | None]]]:
    from sqlalchemy import select

    from store import KnowledgeChunk, KnowledgeDocument

    with store.session() as session:
        out: dict[str, list] = {}
        for doc in session.scalars(select(KnowledgeDocument)):
            key = f"{doc.source}:{doc.doc_key}"
            out[key] = [
                (c.chunk_index, c.vector_id)
                for c in session.scalars(select(KnowledgeChunk).where(KnowledgeChunk.document_id == doc.id))
            ]
        return out


def test_build_add_delete_sync_store(
    tmp_path: Path, corpus: Path, long_corpus: Path, store, zebra_env
) -> None:
    out = tmp_path / "kb"
    build_bundle(out, [f"jsonl:{corpus}"], text_embedder=HASH, store=store)
    rows = _rows(store)
    bundle = Bundle.open(out)
    assert set(rows) == set(bundle.documents["doc_id"])
    for doc_id, chunks in rows.items():
        expected = sorted(
            zip(
                bundle.chunks.loc[bundle.chunks["doc_id"] == doc_id, "chunk_index"],
                bundle.chunks.index[bundle.chunks["doc_id"] == doc_id],
                strict=True,
            )
        )
        assert sorted(chunks) == [(int(a), int(b)) for a, b in expected]
    from sqlalchemy import select

    from store import KnowledgeDocument

    with store.session() as s:
        doc = s.scalar(select(KnowledgeDocument).where(KnowledgeDocument.doc_key == "men"))
        assert (
            doc.bundle == "kb"
            and doc.diagnosis == "Meningioma"
            and doc.kind == "text"
            and len(doc.sha256) == 64
        )
    changed = write_jsonl(
        tmp_path / "c.jsonl", [{"id": "men", "title": "Meningioma", "text": "New meningioma text."}]
    )
    add_to_bundle(out, [f"jsonl:{changed}", f"jsonl:{long_corpus}?name=long"], store=store)
    rows = _rows(store)
    assert len(rows) == 4 + 6 and len(rows["long:long0"]) > 1
    delete_from_bundle(out, ["jsonl:men"], store=store)
    assert "jsonl:men" not in _rows(store)
    # A rebuild with fewer documents removes the stale ones.
    build_bundle(out, [f"jsonl:{corpus}"], text_embedder=HASH, store=store)
    assert set(_rows(store)) == {"jsonl:gbm", "jsonl:men", "jsonl:ms", "jsonl:abs"}
