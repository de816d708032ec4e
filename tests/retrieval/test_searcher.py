"""The Searcher end to end on tiny bundles built with deterministic embedders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrieval.errors import ImageInputError, NoImageIndexError, QueryError
from retrieval.filters import Filters
from retrieval.searcher import Searcher

QUERY = "dural tail extra-axial mass"


@pytest.fixture(scope="module")
def searcher(tiny_bundle: Path) -> Searcher:
    return Searcher(tiny_bundle)


def test_each_mode_ranks_the_matching_case_first(searcher: Searcher) -> None:
    for mode in ("dense", "bm25", "hybrid"):
        hits = searcher.search_text(QUERY, k=3, mode=mode)
        assert [h.doc_id for h in hits][:2] == ["jsonl:c1", "jsonl:d1"], mode
        assert [h.scores.rank for h in hits] == [1, 2, 3]
        fused = [h.scores.fused for h in hits]
        assert fused == sorted(fused, reverse=True)


def test_hybrid_scores_are_rrf_of_the_two_rankings(searcher: Searcher) -> None:
    hits = searcher.search_text(QUERY, k=5, mode="hybrid")
    dense_order = [h.doc_id for h in searcher.search_text(QUERY, k=50, mode="dense")]
    bm25_order = [h.doc_id for h in searcher.search_text(QUERY, k=50, mode="bm25")]
    for hit in hits:
        expected = 0.0
        if hit.doc_id in dense_order:
            assert hit.scores.dense_rank == dense_order.index(hit.doc_id) + 1
            expected += 1 / (60 + hit.scores.dense_rank)
        if hit.doc_id in bm25_order:
            assert hit.scores.bm25_rank == bm25_order.index(hit.doc_id) + 1
            expected += 1 / (60 + hit.scores.bm25_rank)
        assert hit.scores.fused == pytest.approx(expected)
        assert hit.scores.dense is not None  # filled in for every hit
    # BM25 only returns chunks sharing a word with the query
    assert "jsonl:c3" not in bm25_order


def test_citations_quote_the_document_text(searcher: Searcher) -> None:
    docs = searcher.bundle.documents.set_index("doc_id")["text"]
    hits = searcher.search_text(QUERY, k=5)
    for hit in hits:
        cit = hit.citation
        assert docs[cit.doc_id][cit.char_start : cit.char_end] == cit.quote
        assert cit.source == hit.source and cit.kind == hit.kind and cit.title == hit.title
    top = hits[0]
    assert top.citation.quote == "MRI shows a dural based extra-axial mass with a dural tail."
    assert next(h for h in hits if h.doc_id == "jsonl:d1").citation.url == "https://example.org/meningioma"
    data = top.to_dict()
    assert data["citation"]["char_end"] > data["citation"]["char_start"]
    assert data["scores"]["rank"] == 1 and data["modality"] == "MR"


def test_filters_restrict_results(searcher: Searcher) -> None:
    assert [h.doc_id for h in searcher.search_text("mass", k=5, filters=Filters(modality="CT"))] == [
        "jsonl:c3"
    ]
    kinds = {h.kind for h in searcher.search_text(QUERY, k=5, filters=Filters(kind="case_report"))}
    assert kinds == {"case_report"}
    no_dx = searcher.search_text("cerebellar tumours", k=5, filters=Filters(has_diagnosis=False))
    assert [h.doc_id for h in no_dx] == ["jsonl:long"]
    assert searcher.search_text(QUERY, k=5, filters=Filters(source="nowhere")) == []


def test_collapse_keeps_one_chunk_per_document(searcher: Searcher) -> None:
    query = "cerebellar medulloblastoma ependymoma"
    collapsed = searcher.search_text(query, k=5, mode="bm25")
    assert len({h.doc_id for h in collapsed}) == len(collapsed)
    chunks = searcher.search_text(query, k=3, mode="bm25", collapse=False)
    assert [h.doc_id for h in chunks] == ["jsonl:long"] * 3
    assert len({h.vector_id for h in chunks}) == 3
    assert len({h.citation.chunk_index for h in chunks}) == 3


def test_mmr_reorders_for_diversity(searcher: Searcher) -> None:
    # without collapsing, the long review's near-identical chunks crowd the top; MMR lets others in
    query = "cerebellar medulloblastoma mass"
    plain = searcher.search_text(query, k=3, mode="dense", collapse=False)
    diverse = searcher.search_text(query, k=3, mode="dense", collapse=False, mmr=0.3)
    assert [h.doc_id for h in plain] == ["jsonl:long"] * 3
    assert diverse[0].vector_id == plain[0].vector_id
    assert len({h.doc_id for h in diverse}) > 1
    assert all(h.scores.mmr is not None for h in diverse)


def test_diagnose_aggregates_hits(searcher: Searcher) -> None:
    candidates, hits = searcher.diagnose(QUERY, n_hits=5, top_n=3)
    assert candidates[0].label == "Meningioma"
    assert candidates[0].n_hits == 2
    assert set(candidates[0].evidence_kinds) == {"case_report", "disease_discussion"}
    assert len(hits) == 5


def test_bad_queries_raise_typed_errors(searcher: Searcher) -> None:
    with pytest.raises(QueryError):
        searcher.search_text("  ")
    with pytest.raises(QueryError, match="mode"):
        searcher.search_text("x", mode="sparse")
    with pytest.raises(QueryError):
        searcher.search_text("x", k=0)
    with pytest.raises(NoImageIndexError):
        searcher.search_image(np.zeros((8, 8), dtype=np.uint8))


def test_image_to_image_and_filters(image_bundle: Path) -> None:
    s = Searcher(image_bundle)
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    hits = s.search_image(red, k=4)
    assert [h.image_id for h in hits][:2] == ["medpix-images:MPX1_a", "medpix-images:MPX1_b"]
    assert hits[0].scores.fused == pytest.approx(1.0, abs=1e-4)
    assert hits[0].diagnosis == "Meningioma" and hits[0].case_id == "MPX1"
    assert hits[0].citation.kind == "image" and hits[0].citation.quote == "red mass"
    only_mr = s.search_image(red, k=4, filters=Filters(modality="MR"))
    assert [h.image_id for h in only_mr] == ["medpix-images:MPX2_a"]
    # arrays and files are accepted as query images
    arr_hits = s.search_image(np.full((8, 8, 3), (0, 0, 250), dtype=np.uint8), k=1)
    assert arr_hits[0].image_id == "medpix-images:MPX3_a"
    with pytest.raises(ImageInputError):
        s.search_image(Path("/nonexistent.png"))


def test_cross_modal_search(image_bundle: Path) -> None:
    s = Searcher(image_bundle)
    to_images = s.search_text_to_image("green", k=2)
    assert to_images[0].image_id == "medpix-images:MPX2_a"
    assert to_images[0].scores.caption == pytest.approx(1.0, abs=1e-4)
    assert to_images[0].scores.dense == pytest.approx(1.0, abs=1e-2)
    no_captions = s.search_text_to_image("blue", k=1, use_captions=False)
    assert no_captions[0].image_id == "medpix-images:MPX3_a" and no_captions[0].scores.caption is None
    to_text = s.search_image_to_text(Image.new("RGB", (8, 8), (0, 0, 255)), k=2)
    assert to_text[0].doc_id == "medpix:case/MPX3"
    assert to_text[0].kind == "case_report"
