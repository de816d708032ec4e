"""Tests with real weights (slow) and the real MedPix data (shared_data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.evaluate import evaluate_retrieval, load_medpix_cases
from retrieval.searcher import Searcher


@pytest.mark.slow
def test_minilm_dense_search_finds_paraphrases(tmp_path: Path, zebra_env: Path) -> None:
    from index_builder.build import build_bundle

    docs = [
        {
            "id": "men",
            "text": "Meningioma: an extra-axial tumour arising from the meninges, often with a dural tail.",
            "diagnosis": "Meningioma",
        },
        {
            "id": "app",
            "text": "Appendicitis: inflammation of the vermiform appendix causing right lower quadrant pain.",
            "diagnosis": "Appendicitis",
        },
        {
            "id": "frac",
            "text": "Scaphoid fracture after a fall on the outstretched hand.",
            "diagnosis": "Scaphoid fracture",
        },
    ]
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps(d) for d in docs))
    build_bundle(tmp_path / "b", [f"jsonl:{src}"], text_embedder="builtin")
    s = Searcher(tmp_path / "b")
    # no word in common with the right document
    hits = s.search_text("belly ache near the navel moving to the lower right", k=1, mode="dense")
    assert hits[0].doc_id == "jsonl:app"
    assert hits[0].scores.dense > 0.2
    hits = s.search_text("broken wrist bone", k=3, mode="hybrid", mmr=0.5)
    assert hits[0].doc_id == "jsonl:frac"


@pytest.mark.shared_data
def test_eval_retrieval_smoke_on_medpix_dev(medpix_root: Path, tmp_path: Path) -> None:
    """The protocol on five real dev cases, over the real train cases + discussions (hashing embedder)."""
    from index_builder.build import build_bundle

    build_bundle(tmp_path / "b", [f"medpix:{medpix_root}?split=train"], text_embedder="hash:256")
    searcher = Searcher(tmp_path / "b")
    dev_ids = set(json.loads((medpix_root / "splits.json").read_text())["dev"])
    assert not any(doc.split("/")[-1] in dev_ids for doc in searcher.chunks["doc_id"] if "case/" in doc)
    cases = load_medpix_cases(medpix_root, "dev")[:5]
    assert len(cases) == 5
    result = evaluate_retrieval(searcher, cases, k=5, n_hits=20, details_path=tmp_path / "d.jsonl")
    assert result["n_cases"] == 5
    for mode in ("dense", "bm25", "hybrid"):
        stats = result["modes"][mode]
        assert 0.0 <= stats["top1"] <= stats["top5"] <= 1.0
    # BM25 over real radiology text finds the right diagnosis for some of these cases
    assert result["modes"]["bm25"]["hits_top5"] >= 1
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 5
