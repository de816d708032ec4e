"""Precomputed cross-modal vectors (index_builder.cross_modal) equal the on-the-fly path; old bundles fall back;
updates keep them consistent; query-image embeddings are cached and batched."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index_builder import layout
from index_builder.bundle import Bundle
from retrieval.filters import Filters
from retrieval.searcher import Searcher


def _color_embedder() -> type:
    """The conftest's ColorEmbedder class (registered as ``d2color`` by the ``image_bundle`` fixture)."""
    from index_builder.embedders import create_image_embedder

    return type(create_image_embedder("d2color"))


QUERY_COLOURS = [(250, 0, 0), (0, 240, 0), (0, 0, 240), (120, 120, 0), (30, 60, 200)]


def _strip_cross_modal(src: Path, dst: Path) -> Path:
    """A copy of ``src`` as written before the cross-modal files existed."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / layout.MANIFEST).read_text())
    for name in (layout.CLIP_TEXT_INDEX, layout.CLIP_CAPTION_INDEX):
        (dst / name).unlink()
        manifest["files"].pop(name)
    manifest.pop("cross_modal")
    (dst / layout.MANIFEST).write_text(json.dumps(manifest))
    return dst


def _hits(searcher: Searcher) -> list[tuple]:
    out = []
    for rgb in QUERY_COLOURS:
        img = Image.new("RGB", (8, 8), rgb)
        for kinds in (("caption", "case_report"), None):
            for h in searcher.search_image_to_text(img, k=5, kinds=kinds):
                out.append(("i2t", rgb, kinds, h.vector_id, h.doc_id, round(float(h.scores.fused), 5)))
        hits = searcher.search_image_to_text(img, k=3, kinds=None, filters=Filters(kind="disease_discussion"))
        out += [("i2t-f", rgb, h.vector_id, round(float(h.scores.fused), 5)) for h in hits]
    for query in ("red", "green mass", "blue blue appendix", "dark red"):
        for h in searcher.search_text_to_image(query, k=4):
            out.append(
                ("t2i", query, h.image_id, round(float(h.scores.fused), 5), round(h.scores.caption or 0, 5))
            )
    return out


def test_build_writes_precomputed_vectors_equal_to_the_text_tower(image_bundle: Path) -> None:
    bundle = Bundle.open(image_bundle)
    block = bundle.manifest["cross_modal"]
    assert block["embedder"]["spec"] == "d2color"
    for name in (layout.CLIP_TEXT_INDEX, layout.CLIP_CAPTION_INDEX):
        assert len(bundle.manifest["files"][name]["sha256"]) == 64
    ids, vectors = bundle.cross_modal_vectors("chunks")
    assert ids.tolist() == sorted(bundle.chunks.index.tolist()) and block["chunks"]["ntotal"] == len(ids)
    texts = bundle.chunks.loc[ids, "text"].tolist()
    np.testing.assert_allclose(vectors, _color_embedder()().encode_texts(texts), atol=1e-6)
    cap_ids, cap_vectors = bundle.cross_modal_vectors("captions")
    assert sorted(cap_ids.tolist()) == sorted(bundle.images.index.tolist())  # every test image has a caption
    captions = bundle.images.loc[cap_ids, "caption"].tolist()
    np.testing.assert_allclose(cap_vectors, _color_embedder()().encode_texts(captions), atol=1e-6)


def test_precomputed_path_equals_on_the_fly_path(image_bundle: Path) -> None:
    fast = Searcher(image_bundle)
    slow = Searcher(image_bundle)
    slow.cross_modal.use_precomputed = False
    assert _hits(fast) == _hits(slow)
    assert fast.cross_modal.source == {"chunks": "precomputed", "captions": "precomputed"}
    assert slow.cross_modal.source == {"chunks": "embedded", "captions": "embedded"}


def test_old_bundle_falls_back_with_a_warning_and_upgrades(
    image_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from index_builder.cross_modal import add_cross_modal

    old = _strip_cross_modal(image_bundle, tmp_path / "old")
    expected = _hits(Searcher(image_bundle))
    with caplog.at_level(logging.WARNING, logger="retrieval.crossmodal"):
        searcher = Searcher(old)
        assert _hits(searcher) == expected
    assert searcher.cross_modal.source["chunks"] == "embedded"
    assert any("no precomputed cross-modal vectors" in r.getMessage() for r in caplog.records)

    manifest = add_cross_modal(old)
    assert manifest["cross_modal"]["chunks"]["ntotal"] == len(Bundle.open(old).chunks)
    upgraded = Searcher(old)  # Bundle.open verifies every SHA-256, the new files included
    assert _hits(upgraded) == expected
    assert upgraded.cross_modal.source["chunks"] == "precomputed"


def test_changed_image_embedder_falls_back(image_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Retrained(_color_embedder()):  # type: ignore[misc]
        checkpoint_sha256 = "f" * 64

    with caplog.at_level(logging.WARNING, logger="retrieval.crossmodal"):
        searcher = Searcher(image_bundle, image_embedder=Retrained())
        searcher.search_image_to_text(Image.new("RGB", (8, 8), (255, 0, 0)), k=2)
    assert searcher.cross_modal.source["chunks"] == "embedded"
    assert any("another image embedder" in r.getMessage() for r in caplog.records)


def test_add_and_delete_keep_the_precomputed_vectors_consistent(image_bundle: Path, tmp_path: Path) -> None:
    from index_builder.build import add_to_bundle, delete_from_bundle

    path = tmp_path / "b"
    shutil.copytree(image_bundle, path)
    before = Bundle.open(path).cross_modal_vectors("chunks")
    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        json.dumps(
            {"id": "x1", "kind": "case_report", "text": "A red and green lesion.", "diagnosis": "Yellowoma"}
        )
        + "\n"
    )
    add_to_bundle(path, [f"jsonl:{extra}?name=extra"])
    bundle = Bundle.open(path)
    ids, vectors = bundle.cross_modal_vectors("chunks")
    assert ids.tolist() == sorted(bundle.chunks.index.tolist())
    np.testing.assert_allclose(vectors[: len(before[0])], before[1])  # old vectors reused as they were
    new = bundle.chunks.index[bundle.chunks["doc_id"] == "extra:x1"].tolist()
    np.testing.assert_allclose(
        vectors[np.isin(ids, new)],
        _color_embedder()().encode_texts(bundle.chunks.loc[new, "text"].tolist()),
        atol=1e-6,
    )
    hit = Searcher(path).search_image_to_text(Image.new("RGB", (8, 8), (255, 255, 0)), k=1)[0]
    assert hit.doc_id == "extra:x1"

    delete_from_bundle(path, ["extra:x1", "medpix-images:MPX1_b"])
    bundle = Bundle.open(path)
    ids, _ = bundle.cross_modal_vectors("chunks")
    cap_ids, _ = bundle.cross_modal_vectors("captions")
    assert ids.tolist() == sorted(bundle.chunks.index.tolist()) and not set(new) & set(ids.tolist())
    assert sorted(cap_ids.tolist()) == sorted(bundle.images.index.tolist()) and len(cap_ids) == 3


def test_text_only_bundle_has_no_cross_modal_block(tiny_bundle: Path) -> None:
    bundle = Bundle.open(tiny_bundle)
    assert not bundle.manifest.get("cross_modal") and bundle.cross_modal_index("chunks") is None


def test_query_images_are_embedded_once_and_in_one_batch(image_bundle: Path) -> None:
    class Counting(_color_embedder()):  # type: ignore[misc]
        batches: list[int] = []

        def encode_images(self, images, **kw):  # type: ignore[no-untyped-def]
            self.batches.append(len(images))
            return super().encode_images(images, **kw)

    emb = Counting()
    s = Searcher(image_bundle, image_embedder=emb)
    red = np.full((8, 8, 3), (250, 0, 0), dtype=np.uint8)
    blue = np.full((8, 8, 3), (0, 0, 250), dtype=np.uint8)
    first = s.search_image(red, k=2)
    s.search_image_to_text(red.copy(), k=2)  # equal content, another array: no second pass
    assert emb.batches == [1]
    vectors = s.embed_query_images([red, blue, Image.new("RGB", (8, 8), (0, 240, 0))])
    assert emb.batches == [1, 2] and vectors.shape == (3, 4)
    assert s.search_image_to_text(blue, k=1)[0].doc_id == "medpix:case/MPX3" and emb.batches == [1, 2]
    assert [h.image_id for h in s.search_image(red, k=2)] == [h.image_id for h in first]


def test_text_queries_are_embedded_once_and_each_alone(tiny_bundle: Path) -> None:
    real = Bundle.open(tiny_bundle).text_embedder()
    calls: list[int] = []

    class Spy:
        dim = real.dim

        def encode(self, texts, **kw):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return real.encode(texts, **kw)

    queries = ["dural tail mass", "enhancing mass in the internal auditory canal"]
    spied = Searcher(tiny_bundle, text_embedder=Spy())
    vectors = spied.embed_queries([*queries, queries[0]])
    assert calls == [1, 1] and vectors.shape == (3, real.dim)  # once per text, never batched together
    np.testing.assert_array_equal(vectors[0], vectors[2])
    plain = Searcher(tiny_bundle)
    for q in queries:
        got = [(h.vector_id, round(h.scores.fused, 6)) for h in spied.search_text(f"  {q} ", k=4)]
        assert got == [(h.vector_id, round(h.scores.fused, 6)) for h in plain.search_text(q, k=4)]
    assert calls == [1, 1]  # the searches reused the vectors


def test_a_query_vector_does_not_depend_on_the_queries_beside_it(tiny_bundle: Path) -> None:
    """An encoder whose output depends on its batch (as int8 dynamic quantisation does): the vector of a query
    is the same whether it comes alone, with others, or after them (from the cache)."""
    real = Bundle.open(tiny_bundle).text_embedder()

    class BatchDependent:
        dim = real.dim

        def encode(self, texts, **kw):  # type: ignore[no-untyped-def]
            vectors = np.asarray(real.encode(texts, **kw), dtype=np.float32)
            vectors[:, 0] += 0.1 * (len(texts) - 1)  # the batch shifts every vector
            return vectors

    alone = Searcher(tiny_bundle, text_embedder=BatchDependent()).embed_queries(["dural tail mass"])[0]
    together = Searcher(tiny_bundle, text_embedder=BatchDependent()).embed_queries(
        ["enhancing mass in the internal auditory canal", "dural tail mass", "pituitary mass"]
    )[1]
    np.testing.assert_array_equal(alone, together)
