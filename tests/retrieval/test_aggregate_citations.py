"""Aggregation into candidate diagnoses, and citation spans."""

from __future__ import annotations

import json
import math

import pytest

from retrieval.aggregate import aggregate_diagnoses, hit_contribution, primary_label
from retrieval.citations import best_span, chunk_citation, document_url, image_citation
from retrieval.types import Citation, Hit, Scores


def _hit(rank: int, fused: float, diagnosis: str | None, kind: str = "case_report") -> Hit:
    doc_id = f"src:{rank}"
    return Hit(
        vector_id=rank,
        doc_id=doc_id,
        source="src",
        kind=kind,
        title=f"doc {rank}",
        diagnosis=diagnosis,
        text="t",
        citation=Citation("src", doc_id, f"doc {rank}", kind, 0, 1, "t"),
        scores=Scores(fused=fused, rank=rank),
    )


def test_aggregation_formula_on_hand_made_hits() -> None:
    hits = [
        _hit(1, 0.8, "Meningioma"),
        _hit(2, 0.6, "Schwannoma", kind="disease_discussion"),
        _hit(3, 0.4, "meningiomas"),
        _hit(4, 0.4, None),
        _hit(5, 0.2, "Vestibular schwannoma"),
    ]
    cands = aggregate_diagnoses(hits, merge_similar=False)
    by_key = {c.key: c for c in cands}
    expected_men = 1.0 / math.log2(2) + (0.4 / 0.8) / math.log2(4)
    expected_sch = (0.6 / 0.8) / math.log2(3)
    assert by_key["meningioma"].score == pytest.approx(expected_men)
    assert by_key["schwannoma"].score == pytest.approx(expected_sch)
    assert by_key["vestibular schwannoma"].score == pytest.approx((0.2 / 0.8) / math.log2(6))
    assert [c.key for c in cands] == ["meningioma", "schwannoma", "vestibular schwannoma"]
    men = by_key["meningioma"]
    assert (men.rank, men.n_hits, men.best_rank) == (1, 2, 1)
    assert [c.doc_id for c in men.evidence] == ["src:1", "src:3"]
    assert men.labels == ["Meningioma", "meningiomas"]
    assert by_key["schwannoma"].evidence_kinds == ["disease_discussion"]


def test_merging_similar_labels_and_kind_weights() -> None:
    hits = [
        _hit(1, 0.8, "Schwannoma"),
        _hit(2, 0.6, "Meningioma"),
        _hit(3, 0.5, "Vestibular schwannoma", "hpo"),
    ]
    merged = aggregate_diagnoses(hits)
    assert [c.key for c in merged] == ["schwannoma", "meningioma"]
    sch = merged[0]
    assert sch.n_hits == 2 and sch.labels == ["Schwannoma", "Vestibular schwannoma"]
    assert sch.score == pytest.approx(1.0 + (0.5 / 0.8) / 2.0)
    assert sch.evidence_kinds == ["case_report", "hpo"]
    # weighting case reports down: the more specific label now leads and absorbs "Schwannoma"
    weighted = aggregate_diagnoses(hits, kind_weights={"case_report": 0.1}, top_n=1)
    assert len(weighted) == 1 and weighted[0].key == "vestibular schwannoma"
    assert weighted[0].score == pytest.approx((0.5 / 0.8) / 2.0 + 0.1)
    assert weighted[0].labels == ["Vestibular schwannoma", "Schwannoma"]


def test_composite_labels_count_for_their_first_item_and_contribution_edge_cases() -> None:
    assert (
        primary_label("1. Metastatic breast cancer to lungs  \n2. Anemia")
        == "Metastatic breast cancer to lungs"
    )
    assert primary_label("•  Osteomyelitis of the toe\n• Cellulitis") == "Osteomyelitis of the toe"
    assert primary_label(None) == ""
    cands = aggregate_diagnoses([_hit(1, 1.0, "Battered child syndrome. Chronic subdural hematomas.")])
    assert cands[0].label == "Battered child syndrome" and cands[0].key == "battered child"
    assert hit_contribution(-0.5, 1, 1.0) == 0.0  # negative cosines add nothing
    assert hit_contribution(1.0, 1, 0.0) == 0.0
    assert aggregate_diagnoses([]) == []


DOC = (
    "A 45-year-old woman had headaches. MRI showed a dural-based extra-axial mass with a dural tail. "
    "The mass enhanced homogeneously.\nPathology confirmed a meningioma. Follow-up was uneventful."
)


def test_best_span_picks_the_sentences_sharing_most_query_words() -> None:
    start, end = best_span(DOC, "dural tail extra-axial enhancing mass")
    assert DOC[start:end].startswith("MRI showed a dural-based")
    start, end = best_span(DOC, "pathology meningioma")
    assert "Pathology confirmed a meningioma." in DOC[start:end]
    # no shared words: the start of the text
    assert best_span(DOC, "xyzzy")[0] == 0
    start, end = best_span(DOC, None, max_chars=40)
    assert end - start <= 40 and not DOC[start:end].endswith(" ")
    assert best_span("   ", "x") == (0, 0)


def test_chunk_citation_offsets_point_into_the_document() -> None:
    chunk_start = DOC.index("MRI showed")
    chunk_text = DOC[chunk_start:]
    row = {
        "doc_id": "medpix:MPX1",
        "source": "medpix",
        "kind": "case_report",
        "title": "Case 1",
        "text": chunk_text,
        "char_start": chunk_start,
        "char_end": len(DOC),
        "chunk_index": 1,
        "meta": json.dumps({"orpha_id": "ORPHA:2495"}),
    }
    cit = chunk_citation(row, "pathology confirmed meningioma")
    assert DOC[cit.char_start : cit.char_end] == cit.quote
    assert "meningioma" in cit.quote and cit.char_start > chunk_start
    assert cit.url == "https://www.orpha.net/en/disease/detail/2495"
    assert cit.chunk_index == 1
    assert cit.to_dict()["doc_id"] == "medpix:MPX1"


def test_urls_and_image_citation() -> None:
    assert document_url("x", {"url": "https://example.org/a"}) == "https://example.org/a"
    assert document_url("hpo", {"omim_id": "OMIM:162200"}) == "https://omim.org/entry/162200"
    assert document_url("x", {"url": "javascript:alert(1)"}) is None
    cit = image_citation(
        {"image_id": "medpix:MPX1_1", "caption": "Axial T2", "source": "medpix", "diagnosis": "X"}
    )
    assert (cit.kind, cit.quote, cit.char_start, cit.char_end, cit.title) == ("image", "Axial T2", 0, 8, "X")
