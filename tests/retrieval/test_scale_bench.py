"""``zebra bench scale`` at a tiny size: the JSON it reports and the search measured in a fresh process."""

from __future__ import annotations

from pathlib import Path

from retrieval.scale_bench import _vocabulary, bench_scale, query_texts, synthetic_texts


def test_synthetic_texts_are_deterministic_and_synthetic() -> None:
    vocab = _vocabulary()
    assert synthetic_texts(5, 100, 0, vocab) == synthetic_texts(5, 100, 0, vocab)
    assert synthetic_texts(5, 100, 0, vocab) != synthetic_texts(5, 105, 0, vocab)
    words = {w for t in synthetic_texts(200, 0, 0, vocab) + query_texts(20, 0, vocab) for w in t.split()}
    assert words <= set(vocab.tolist()) and all(len(w) >= 6 for w in words)


def test_bench_scale_small(tmp_path: Path) -> None:
    report = bench_scale(
        sizes=[3000],
        dim=32,
        queries=40,
        memory_budget=1,  # the on-disk factory even at this size
        factory="IVF16_HNSW32,PQ8,Refine(SQ8)",
        workdir=tmp_path,
        keep=True,
    )
    assert report["synthetic"] is True and report["benchmark"] == "scale"
    (entry,) = report["results"]
    assert entry["n"] == 3000 and entry["factory"].endswith("Refine(SQ8)")
    assert entry["bytes_on_disk"]["text.faiss"] > 0 and entry["bytes_on_disk"]["bm25"] > 0
    search = entry["search"]
    assert search["recall@10"] >= 0.9
    assert search["hybrid_ms"]["p50"] > 0 and search["rss_mb_after"]["VmRSS"] > 0
    assert (tmp_path / "bundle-3000" / "manifest.json").is_file()
    assert not list(tmp_path.glob("*.tmp-*"))
