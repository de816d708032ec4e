"""Bundle round trip, integrity checks, incremental add/delete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index_builder import layout
from index_builder.build import add_to_bundle, build_bundle, delete_from_bundle
from index_builder.bundle import Bundle
from index_builder.errors import BundleNotFoundError
from zebra.errors import ConfigError, IndexIntegrityError, NotFoundError

from .conftest import HASH, write_jsonl


def test_round_trip(built: Path) -> None:
    bundle = Bundle.open(built)
    m = bundle.manifest
    assert m["format_version"] == layout.FORMAT_VERSION
    assert m["counts"]["documents"] == 4 and m["counts"]["chunks"] == 4
    assert m["counts"]["by_source"] == {"jsonl": 4} and m["counts"]["by_kind"] == {"text": 4}
    assert m["text_embedder"]["spec"] == HASH and m["text_embedder"]["dim"] == 256
    assert m["text_index"]["factory"] == "Flat" and m["text_index"]["metric"] == "ip"
    assert m["image_index"] is None and bundle.images is None and bundle.image_index is None
    assert set(m["files"]) >= {"chunks.parquet", "documents.parquet", "text.faiss", "bm25/vector_ids.npy"}
    chunks = bundle.chunks
    assert chunks.index.name == "vector_id"
    assert list(chunks.columns) == [c for c in layout.CHUNK_COLUMNS if c != "vector_id"]
    assert bundle.text_index.ntotal == len(chunks) == 4
    assert set(bundle.documents["doc_id"]) == {"jsonl:gbm", "jsonl:men", "jsonl:ms", "jsonl:abs"}
    row = chunks.loc[chunks["doc_id"] == "jsonl:men"].iloc[0]
    doc = bundle.document("jsonl:men")
    assert doc["text"][row.char_start : row.char_end] == row.text
    assert row.diagnosis == "Meningioma" and json.loads(row.meta) == {}


def test_dense_and_bm25_search(built: Path) -> None:
    bundle = Bundle.open(built)
    hits = bundle.bm25_search("dural tail", 3)
    assert hits and bundle.chunks.loc[hits[0][0], "doc_id"] == "jsonl:men"
    assert all(score > 0 for _, score in hits)
    assert bundle.bm25_search("zzzz qqqq", 3) == []
    assert bundle.bm25_search("the of and", 3) == []  # stop words only
    dense = bundle.search_text("periventricular ovoid white matter lesions", 2)
    assert bundle.chunks.loc[dense[0][0], "doc_id"] == "jsonl:ms"
    assert dense[0][1] >= dense[1][1]
    vec = bundle.text_embedder().encode(["smooth enhancing rim restricted diffusion"])
    assert (
        bundle.search_vectors(vec, 1)[0][0][0]
        == bundle.chunks.index[bundle.chunks["doc_id"] == "jsonl:abs"][0]
    )


def test_tampered_file_is_detected(built: Path) -> None:
    path = built / "chunks.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError, match=r"chunks\.parquet.*SHA-256") as info:
        Bundle.open(built)
    assert "zebra index build" in str(info.value)
    Bundle.open(built, verify=False)  # sizes still match: only the checksum catches a flipped byte


def test_truncated_file_is_detected(built: Path) -> None:
    path = built / "text.faiss"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(IndexIntegrityError, match=r"text\.faiss.*truncated"):
        Bundle.open(built, verify=False)


def test_missing_file_and_bad_manifest(built: Path) -> None:
    (built / "bm25" / "vector_ids.npy").unlink()
    with pytest.raises(IndexIntegrityError, match=r"vector_ids\.npy.*missing"):
        Bundle.open(built)
    (built / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(IndexIntegrityError, match=r"manifest\.json"):
        Bundle.open(built)
    manifest = {"format_version": 99, "files": {}}
    (built / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexIntegrityError, match="format_version 99"):
        Bundle.open(built)


def test_no_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleNotFoundError, match="No index bundle"):
        Bundle.open(tmp_path / "nowhere")


def test_rebuild_replaces_bundle(built: Path, corpus: Path, tmp_path: Path) -> None:
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": "x", "text": "Completely different content."}])
    build_bundle(built, [f"jsonl:{other}"], text_embedder=HASH)
    bundle = Bundle.open(built)
    assert bundle.documents["doc_id"].tolist() == ["jsonl:x"]
    assert not list(built.parent.glob("bundle.tmp-*")) and not list(built.parent.glob("bundle.old-*"))


def test_add_and_delete(built: Path, tmp_path: Path, long_corpus: Path) -> None:
    before = Bundle.open(built)
    old_ids = set(before.chunks.index)
    new = write_jsonl(
        tmp_path / "new.jsonl",
        [
            {
                "id": "men",
                "title": "Meningioma",
                "text": "Updated: meningioma calcification and hyperostosis.",
            },
            {"id": "cjd", "title": "CJD", "text": "Creutzfeldt-Jakob disease shows cortical ribboning."},
        ],
    )
    m = add_to_bundle(built, [f"jsonl:{new}", f"jsonl:{long_corpus}?name=long"])
    after = Bundle.open(built)
    assert m["counts"]["documents"] == 4 + 1 + 6
    assert after.text_index.ntotal == len(after.chunks) == m["counts"]["chunks"]
    # The replaced document has new text and fresh vector ids; untouched ones keep theirs.
    men = after.chunks[after.chunks["doc_id"] == "jsonl:men"]
    assert len(men) == 1 and "hyperostosis" in men.iloc[0]["text"]
    assert men.index[0] not in old_ids
    gbm_id = before.chunks.index[before.chunks["doc_id"] == "jsonl:gbm"][0]
    assert after.chunks.loc[gbm_id, "doc_id"] == "jsonl:gbm"
    assert (
        after.bm25_search("cortical ribboning", 1)[0][0]
        == after.chunks.index[after.chunks["doc_id"] == "jsonl:cjd"][0]
    )
    long_chunks = after.chunks[after.chunks["source"] == "long"]
    assert long_chunks.groupby("doc_id").size().min() > 1
    assert m["sources"][-1].startswith("jsonl:") and "name=long" in m["sources"][-1]

    m2 = delete_from_bundle(built, ["jsonl:men", "long:long0"])
    final = Bundle.open(built)
    assert m2["counts"]["documents"] == m["counts"]["documents"] - 2
    assert "jsonl:men" not in set(final.documents["doc_id"]) and "long:long0" not in set(
        final.chunks["doc_id"]
    )
    assert final.text_index.ntotal == len(final.chunks)
    assert all(final.chunks.loc[v, "doc_id"] != "jsonl:men" for v, _ in final.bm25_search("hyperostosis", 5))
    _, found = final.text_index.search(
        final.text_embedder().encode(["meningioma calcification hyperostosis"]), 50
    )
    assert set(found[0][found[0] >= 0].tolist()) <= set(final.chunks.index)
    # Ids are never reused.
    assert m2["next_vector_id"]["text"] == m["next_vector_id"]["text"]
    with pytest.raises(NotFoundError):
        delete_from_bundle(built, ["jsonl:nope"])
    with pytest.raises(ConfigError):
        delete_from_bundle(built, [])


def test_hnsw_bundle_delete_rebuilds_graph(tmp_path: Path, long_corpus: Path, zebra_env: Path) -> None:
    out = tmp_path / "hnsw"
    m = build_bundle(out, [f"jsonl:{long_corpus}"], text_embedder=HASH, factory="HNSW16,Flat")
    assert m["text_index"]["factory"] == "HNSW16,Flat" and m["text_index"]["ef_search"] == 128
    delete_from_bundle(out, ["jsonl:long3"])
    b = Bundle.open(out)
    assert b.text_index.ntotal == len(b.chunks) and "jsonl:long3" not in set(b.chunks["doc_id"])
    ids = b.chunks.index.to_numpy()
    from index_builder.faiss_factory import index_vectors

    stored, _ = index_vectors(b.text_index)
    assert np.array_equal(np.sort(stored), np.sort(ids))


def test_embedder_dimension_mismatch(built: Path) -> None:
    path = built / "manifest.json"
    m = json.loads(path.read_text())
    m["text_embedder"]["dim"] = 99
    path.write_text(json.dumps(m))
    with pytest.raises(IndexIntegrityError, match="dimension 99"):
        Bundle.open(built).text_embedder()


def test_lazy_loads_refuse_a_bundle_swapped_underneath(built: Path, corpus: Path) -> None:
    from index_builder.errors import BundleChangedError

    reader = Bundle.open(built)
    chunks = reader.chunks  # loaded before the rebuild: stays usable
    build_bundle(built, [f"jsonl:{corpus}?name=v2"], text_embedder=HASH)
    with pytest.raises(BundleChangedError, match="Open it again"):
        _ = reader.text_index
    assert len(chunks) == 4 and set(Bundle.open(built).documents["source"]) == {"v2"}


def test_add_records_vectors_of_another_backend(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle keeps saying which backends computed its vectors when `add` runs on another one."""
    bundle = Bundle.open(built)
    own = bundle.text_embedder()
    assert bundle.manifest["text_embedder"]["backend"] == "numpy"

    class _Other:  # the same vectors, reported as another backend
        backend = "onnx"

        def __getattr__(self, name: str):
            return getattr(own, name)

    monkeypatch.setattr(Bundle, "text_embedder", lambda self: _Other())
    new = write_jsonl(
        tmp_path / "n.jsonl", [{"id": "x", "title": "X", "text": "Extra document about ependymoma."}]
    )
    m = add_to_bundle(built, [f"jsonl:{new}"])
    assert m["text_embedder"]["backend"] == "numpy" and m["text_embedder"]["added_with"] == ["onnx"]
    monkeypatch.undo()
    again = add_to_bundle(
        built, [f"jsonl:{write_jsonl(tmp_path / 'm.jsonl', [{'id': 'y', 'title': 'Y', 'text': 'More.'}])}"]
    )
    assert again["text_embedder"]["added_with"] == ["onnx"]  # kept; same-backend adds change nothing
