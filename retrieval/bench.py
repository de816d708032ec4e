"""Latency benchmark of text search per mode (``zebra bench retrieval``)."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from retrieval.searcher import MODES, Searcher


def sample_queries(searcher: Searcher, n: int, *, seed: int = 0, words: int = 24) -> list[str]:
    """``n`` reproducible queries: the first ``words`` words of randomly chosen chunks of the bundle.

    Args:
        searcher: Searcher whose chunks are sampled.
        n: Number of queries.
        seed: Random seed.
        words: Words per query.
    """
    texts = searcher.chunks["text"].astype(str).tolist()
    rng = random.Random(seed)
    picks = [texts[rng.randrange(len(texts))] for _ in range(n)] if texts else []
    return [" ".join(re.findall(r"\S+", t)[:words]) or "query" for t in picks]


def bench_retrieval(
    searcher: Searcher,
    queries: Sequence[str],
    *,
    modes: Iterable[str] = ("dense", "bm25", "hybrid"),
    k: int = 10,
) -> dict[str, Any]:
    """Times ``search_text`` one query at a time per mode, after one warm-up query (model loading).

    Returns:
        ``{"n_queries", "k", "chunks", "warmup_s", "modes": {mode: {"p50_ms", "p95_ms", "mean_ms", "max_ms"}},
        "query_embedding": {...}}``; ``query_embedding`` times the text encoder alone.
    """
    modes = [m for m in modes if m in MODES]
    out: dict[str, Any] = {"n_queries": len(queries), "k": k, "chunks": len(searcher.chunks), "modes": {}}
    start = time.perf_counter()
    for mode in modes:
        searcher.search_text("warm up query", k=k, mode=mode)
    out["warmup_s"] = round(time.perf_counter() - start, 3)
    for mode in modes:
        out["modes"][mode] = _timed(lambda q, mode=mode: searcher.search_text(q, k=k, mode=mode), queries)
    # the text encoder alone, to tell model time from search time on a busy machine
    out["query_embedding"] = _timed(lambda q: searcher.text_embedder.encode([q]), queries)
    return out


def _timed(fn: Callable[[str], Any], queries: Sequence[str]) -> dict[str, float]:
    times = []
    for query in queries:
        t0 = time.perf_counter()
        fn(query)
        times.append((time.perf_counter() - t0) * 1000.0)
    arr = np.asarray(times) if times else np.zeros(1)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "max_ms": round(float(arr.max()), 3),
    }
