"""Benchmarks behind ``zebra bench ingest`` and ``zebra bench ann`` (both return JSON-ready dicts)."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from index_builder.documents import Document
from index_builder.sources.base import Source, SourceSpec

log = logging.getLogger(__name__)


class MemorySource(Source):
    """Documents already in memory (benchmarks, tests)."""

    kind = "memory"
    needs_path = False

    def __init__(self, docs: Sequence[Document], name: str = "memory") -> None:
        super().__init__(SourceSpec("memory", "", {"name": name}))
        self._docs = list(docs)

    def documents(self) -> Iterator[Document]:
        return iter(self._docs)


def _rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- ingest -----------------------------------------------------------------------------------------
def _timed(fn: Any) -> tuple[float, float, Any]:
    """``(wall seconds, CPU seconds of this process, result)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def bench_ingest(
    *,
    n: int = 5000,
    sources: Sequence[str] = ("hpo",),
    text_embedder: str = "builtin",
    batch_size: int = 64,
    seed: int = 0,
    repeats: int = 2,
) -> dict[str, Any]:
    """Raw encoder throughput vs the full ingest pipeline on the same ``n`` documents.

    Three runs per repeat, interleaved so that load from other processes hits them alike, best of
    ``repeats`` kept (wall and CPU time):

    - ``raw``: ``embedder.encode(document texts, batch_size)`` (texts beyond the encoder's limit truncated);
    - ``raw_strings``: the encoder on the exact strings the pipeline embeds (chunks, title-prefixed where
      needed): the same encoder work as the pipeline;
    - ``pipeline``: :func:`index_builder.build.build_bundle` (chunking, encoding sorted by length, FAISS,
      BM25, Parquet, checksums, fsync, atomic swap) into a temporary folder.

    ``ratio`` = raw / pipeline time on documents (what a user sees); ``ratio_same_strings`` isolates the
    pipeline's overhead from the extra vectors chunking creates for long documents.
    """
    from index_builder.build import build_bundle
    from index_builder.chunking import ChunkingConfig
    from index_builder.embedders import create_text_embedder
    from index_builder.pipeline import chunk_documents, collect
    from index_builder.sources import create_source

    got = collect([create_source(s) for s in sources])
    docs = got.documents
    if len(docs) > n:
        rng = np.random.default_rng(seed)
        docs = [docs[i] for i in sorted(rng.choice(len(docs), size=n, replace=False))]
    texts = [d.text for d in docs]
    embedder = create_text_embedder(text_embedder)
    embedder.encode(texts[: batch_size * 2], batch_size=batch_size)  # warm-up (threads, allocator)
    strings = chunk_documents(docs, embedder, ChunkingConfig().validate(embedder)).embed_texts
    tmp = Path(tempfile.mkdtemp(prefix="zebra-bench-ingest-"))
    best: dict[str, tuple[float, float]] = {}
    manifest: dict[str, Any] = {}

    def keep(name: str, wall: float, cpu: float) -> None:
        old = best.get(name)
        best[name] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)

    try:
        for r in range(max(1, repeats)):
            wall, cpu, _ = _timed(lambda: embedder.encode(texts, batch_size=batch_size))
            keep("raw", wall, cpu)
            wall, cpu, _ = _timed(lambda: embedder.encode(strings, batch_size=batch_size))
            keep("raw_strings", wall, cpu)
            out = tmp / f"bundle{r}"
            wall, cpu, manifest = _timed(
                lambda out=out: build_bundle(
                    out, [MemorySource(docs, "bench")], text_embedder=text_embedder, batch_size=batch_size
                )
            )
            keep("pipeline", wall, cpu)
            log.info("ingest repeat %d: %s", r, best)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_docs = len(docs)
    raw, raw_strings, pipe = best["raw"], best["raw_strings"], best["pipeline"]
    return {
        "benchmark": "ingest",
        "text_embedder": text_embedder,
        "batch_size": batch_size,
        "repeats": max(1, repeats),
        "documents": n_docs,
        "chunks": int(manifest["counts"]["chunks"]),
        "mean_chars": round(float(np.mean([len(x) for x in texts])), 1) if texts else 0.0,
        "raw_s": round(raw[0], 3),
        "raw_strings_s": round(raw_strings[0], 3),
        "pipeline_s": round(pipe[0], 3),
        "raw_texts_per_s": round(n_docs / raw[0], 1),
        "pipeline_texts_per_s": round(n_docs / pipe[0], 1),
        "ratio": round(raw[0] / pipe[0], 3),
        "ratio_same_strings": round(raw_strings[0] / pipe[0], 3),
        "cpu_s": {
            "raw": round(raw[1], 2),
            "raw_strings": round(raw_strings[1], 2),
            "pipeline": round(pipe[1], 2),
        },
        "ratio_cpu": round(raw[1] / pipe[1], 3) if pipe[1] else None,
        "ratio_same_strings_cpu": round(raw_strings[1] / pipe[1], 3) if pipe[1] else None,
        "target_ratio": 0.85,
        "torch_threads": _torch_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _torch_threads() -> int | None:
    try:
        import torch

        return int(torch.get_num_threads())
    except Exception:  # pragma: no cover
        return None


# --- ANN --------------------------------------------------------------------------------------------
def clustered_vectors(
    n: int, dim: int, *, clusters: int = 1000, spread: float = 1.0, seed: int = 0, centers_seed: int = 12345
) -> np.ndarray:
    """``n`` L2-normalised vectors from a Gaussian mixture of ``clusters`` unit centres (float32).

    ``spread`` is the noise norm relative to the centre (1.0 puts points at cosine ~0.7 to their centre).
    The centres depend only on ``centers_seed`` so data and queries share them.
    """
    centers = np.random.default_rng(centers_seed).standard_normal((clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        m = min(step, n - start)
        labels = rng.integers(0, clusters, size=m)
        noise = rng.standard_normal((m, dim), dtype=np.float32) * (spread / np.sqrt(dim))
        block = centers[labels] + noise
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


def _single_query_latency(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Searches one query at a time; returns (ids (q, k), latencies in ms)."""
    ids = np.empty((len(queries), k), dtype=np.int64)
    lat = np.empty(len(queries), dtype=np.float64)
    for i in range(len(queries)):
        q = queries[i : i + 1]
        t = time.perf_counter()
        _, found = index.search(q, k)
        lat[i] = (time.perf_counter() - t) * 1000
        ids[i] = found[0]
    return ids, lat


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def bench_ann(
    *,
    n: int = 1_000_000,
    dim: int = 384,
    factories: Sequence[str] = ("HNSW32,Flat",),
    queries: int = 1000,
    k: int = 10,
    ef_search: Sequence[int] = (16, 32, 64, 128, 256),
    nprobe: Sequence[int] = (8, 16, 32, 64, 128),
    ef_construction: int = 80,
    clusters: int = 1000,
    spread: float = 1.0,
    seed: int = 0,
    search_threads: int = 1,
    target_recall: float = 0.95,
    target_p50_ms: float = 2.0,
) -> dict[str, Any]:
    """Builds each factory on seeded clustered vectors and measures recall@k and single-query latency.

    Ground truth is exact search (``IndexFlatIP``). Searches run one query at a time with
    ``search_threads`` OpenMP threads (1 by default: a single query does not parallelise well).
    """
    import faiss

    from index_builder.faiss_factory import build_index, set_search_params

    build_threads = os.cpu_count() or 1
    t = time.perf_counter()
    data = clustered_vectors(n, dim, clusters=clusters, spread=spread, seed=seed)
    qs = clustered_vectors(queries, dim, clusters=clusters, spread=spread, seed=seed + 1)
    gen_s = time.perf_counter() - t
    ids = np.arange(n, dtype=np.int64)
    faiss.omp_set_num_threads(build_threads)
    t = time.perf_counter()
    exact = faiss.IndexFlatIP(dim)
    exact.add(data)
    _, truth = exact.search(qs, k)
    truth_s = time.perf_counter() - t
    del exact
    report: dict[str, Any] = {
        "benchmark": "ann",
        "n": n,
        "dim": dim,
        "clusters": clusters,
        "spread": spread,
        "queries": queries,
        "k": k,
        "build_threads": build_threads,
        "search_threads": search_threads,
        "data_gen_s": round(gen_s, 2),
        "ground_truth_s": round(truth_s, 2),
        "results": [],
    }
    candidates = []
    for factory in factories:
        faiss.omp_set_num_threads(build_threads)
        rss0 = _rss_mb()
        t = time.perf_counter()
        index = build_index(data, ids, factory, ef_construction=ef_construction)
        build_s = time.perf_counter() - t
        entry: dict[str, Any] = {
            "factory": factory,
            "build_s": round(build_s, 2),
            "index_rss_mb": round(_rss_mb() - rss0, 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "params": [],
        }
        upper = factory.upper()
        if "HNSW" in upper:
            sweep = [{"ef_search": e} for e in ef_search]
        elif "IVF" in upper:
            sweep = [{"nprobe": p} for p in nprobe]
        else:
            sweep = [{}]
        faiss.omp_set_num_threads(search_threads)
        for params in sweep:
            set_search_params(index, **params)
            index.search(qs[:10], k)  # warm-up
            found, lat = _single_query_latency(index, qs, k)
            row = {
                **params,
                "recall@10" if k == 10 else f"recall@{k}": round(_recall(found, truth), 4),
                "p50_ms": round(float(np.percentile(lat, 50)), 3),
                "p95_ms": round(float(np.percentile(lat, 95)), 3),
                "mean_ms": round(float(lat.mean()), 3),
            }
            entry["params"].append(row)
            log.info("%s %s: %s", factory, params, row)
            candidates.append((factory, row))
        report["results"].append(entry)
        del index
    faiss.omp_set_num_threads(build_threads)
    rkey = "recall@10" if k == 10 else f"recall@{k}"
    ok = [(f, r) for f, r in candidates if r[rkey] >= target_recall]
    best = (
        min(ok, key=lambda fr: fr[1]["p50_ms"])
        if ok
        else max(candidates, key=lambda fr: fr[1][rkey], default=None)
    )
    if best is not None:
        report["recommendation"] = {
            "factory": best[0],
            **best[1],
            "meets_target": bool(best[1][rkey] >= target_recall and best[1]["p50_ms"] <= target_p50_ms),
            "target": {"recall": target_recall, "p50_ms": target_p50_ms},
        }
    report["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return report
