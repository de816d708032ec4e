"""Benchmarks behind ``zebra bench ingest`` and ``zebra bench ann`` (both return JSON-ready dicts).

:func:`compare_encoders` puts the torch and onnx text backends side by side in one run (chunks per second,
query-embedding latency, agreement); ``zebra bench ingest`` and ``zebra bench agent`` both report it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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


@contextlib.contextmanager
def text_backend(backend: str) -> Iterator[None]:
    """Sets ``models.text_backend`` for the duration (benchmarks build bundles with each backend)."""
    from zebra.config import get_settings

    models = get_settings().models
    before = models.text_backend
    models.text_backend = backend  # type: ignore[assignment]
    try:
        yield
    finally:
        models.text_backend = before


def _pct_ms(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 2) if len(values) else 0.0


def _overlap(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> float:
    """Mean |top-k(a) ∩ top-k(b)| / |top-k(a)| over the rows (queries) of two id lists."""
    shares = [len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True) if len(x)]
    return float(np.mean(shares)) if shares else 1.0


def _exact_top(queries: np.ndarray, corpus: np.ndarray, k: int) -> list[list[int]]:
    scores = queries @ corpus.T
    k = min(k, corpus.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1).tolist()


def compare_encoders(
    texts: Sequence[str],
    queries: Sequence[str],
    *,
    spec: str = "builtin",
    backends: Sequence[str] = ("torch", "onnx"),
    batch_size: int = 64,
    repeats: int = 2,
    k: int = 10,
    search: Callable[[np.ndarray, int], Sequence[Sequence[int]]] | None = None,
) -> dict[str, Any]:
    """Encodes ``texts`` and ``queries`` with each backend of ``spec`` in the same run and compares them.

    Batches alternate between backends within each repeat, so load from other processes hits both alike;
    the best wall time of ``repeats`` is kept. Both backends sort inputs by length before batching
    (sentence-transformers always does; the onnx backend does the same), so padding is alike.

    Args:
        texts: Chunk texts (throughput, agreement).
        queries: Query texts (single-query latency, top-``k`` overlap).
        spec: Text embedder spec.
        backends: Backends to compare; the first is the reference for agreement and speed-ups.
        batch_size: Encoder batch size.
        repeats: Timed passes over ``texts`` per backend.
        k: Depth of the top-k overlap.
        search: ``search(query vectors, k) -> ids`` in an existing index (a bundle's FAISS index); by
            default each backend's queries are searched exactly among its own ``texts`` vectors.

    Returns:
        ``backends`` (per backend: ``chunks_per_s``, ``encode_s``, ``cpu_s``, ``query_ms_p50``/``p95``,
        ``threads``, or ``error``), ``speedup`` and ``query_speedup`` (vs the first backend),
        ``agreement`` (``mean_cosine``, ``min_cosine`` of chunk vectors, ``query_mean_cosine``,
        ``top10_overlap`` and ``top10_overlap_cross``: the other backend's queries searched among the
        reference's vectors, i.e. a bundle built with one backend queried with the other), ``load_average``.
    """
    from index_builder.embedders import create_text_embedder

    load_before = [round(x, 2) for x in os.getloadavg()]
    embedders: dict[str, Any] = {}
    report: dict[str, Any] = {"spec": spec, "texts": len(texts), "queries": len(queries), "backends": {}}
    for b in backends:
        try:
            embedders[b] = create_text_embedder(spec, backend=b)
        except Exception as exc:  # a missing backend is a result of the benchmark, not a crash
            log.warning("text backend %s unavailable: %s", b, exc)
            report["backends"][b] = {"error": str(exc)}
    for emb in embedders.values():
        emb.encode(list(texts[: batch_size * 2]), batch_size=batch_size)  # warm-up (threads, allocator)
        emb.encode([queries[0] if queries else "warm-up"])
    best: dict[str, tuple[float, float]] = {}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(max(1, repeats)):
        for b, emb in embedders.items():
            wall, cpu, vectors[b] = _timed(lambda emb=emb: emb.encode(list(texts), batch_size=batch_size))
            old = best.get(b)
            best[b] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)
    latency: dict[str, list[float]] = {b: [] for b in embedders}
    qvecs: dict[str, list[np.ndarray]] = {b: [] for b in embedders}
    for q in queries:  # one query at a time, as a question embeds it; backends alternate
        for b, emb in embedders.items():
            t = time.perf_counter()
            vec = emb.encode([q])
            latency[b].append(time.perf_counter() - t)
            qvecs[b].append(vec[0])
    for b, emb in embedders.items():
        wall, cpu = best[b]
        report["backends"][b] = {
            "backend": getattr(emb, "backend", b),
            "chunks_per_s": round(len(texts) / wall, 1) if wall else None,
            "encode_s": round(wall, 3),
            "cpu_s": round(cpu, 2),
            "query_ms_p50": _pct_ms(latency[b], 50),
            "query_ms_p95": _pct_ms(latency[b], 95),
            "threads": getattr(emb, "threads", None) or _torch_threads(),
        }
    names = list(embedders)
    if len(names) >= 2:
        ref, other = names[0], names[1]
        r, o = report["backends"][ref], report["backends"][other]
        report["speedup"] = round(o["chunks_per_s"] / r["chunks_per_s"], 2) if r["chunks_per_s"] else None
        report["query_speedup"] = (
            round(r["query_ms_p50"] / o["query_ms_p50"], 2) if o["query_ms_p50"] else None
        )
        cos = np.sum(vectors[ref] * vectors[other], axis=1) if len(texts) else np.ones(1)
        agreement: dict[str, Any] = {
            "reference": ref,
            "mean_cosine": round(float(cos.mean()), 4),
            "min_cosine": round(float(cos.min()), 4),
        }
        if queries:
            qr, qo = np.stack(qvecs[ref]), np.stack(qvecs[other])
            agreement["query_mean_cosine"] = round(float(np.sum(qr * qo, axis=1).mean()), 4)
            if search is not None:
                top_r, top_o = search(qr, k), search(qo, k)
                agreement[f"top{k}_overlap"] = round(_overlap(top_r, top_o), 4)
                agreement[f"top{k}_overlap_cross"] = agreement[f"top{k}_overlap"]  # one index, both queries
            elif len(texts):
                top_r = _exact_top(qr, vectors[ref], k)
                agreement[f"top{k}_overlap"] = round(_overlap(top_r, _exact_top(qo, vectors[other], k)), 4)
                agreement[f"top{k}_overlap_cross"] = round(
                    _overlap(top_r, _exact_top(qo, vectors[ref], k)), 4
                )
        report["agreement"] = agreement
    report["batch_size"] = batch_size
    report["repeats"] = max(1, repeats)
    report["cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    report["load_average"] = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]}
    return report


def bench_ingest(
    *,
    n: int = 5000,
    sources: Sequence[str] = ("hpo",),
    text_embedder: str = "builtin",
    batch_size: int = 64,
    seed: int = 0,
    repeats: int = 2,
    backends: Sequence[str] = ("torch", "onnx"),
    queries: int = 50,
) -> dict[str, Any]:
    """Raw encoder throughput vs the full ingest pipeline on the same ``n`` documents, per text backend.

    For each backend, three runs per repeat, interleaved so that load from other processes hits them
    alike, best of ``repeats`` kept (wall and CPU time):

    - ``raw``: ``embedder.encode(document texts, batch_size)`` (texts beyond the encoder's limit truncated);
    - ``raw_strings``: the encoder on the exact strings the pipeline embeds (chunks, title-prefixed where
      needed): the same encoder work as the pipeline;
    - ``pipeline``: :func:`index_builder.build.build_bundle` (chunking, encoding sorted by length, FAISS,
      BM25, Parquet, checksums, fsync, atomic swap) into a temporary folder.

    ``ratio`` = raw / pipeline time on documents (what a user sees); ``ratio_same_strings`` isolates the
    pipeline's overhead from the extra vectors chunking creates for long documents. The top-level fields
    are those of the first backend; ``per_backend`` has each backend's, and ``encoders`` the side-by-side
    comparison of :func:`compare_encoders` on the chunk strings (queries: ``queries`` document titles).
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
    embedders: dict[str, Any] = {}
    for b in backends:
        try:
            embedders[b] = create_text_embedder(text_embedder, backend=b)
        except Exception as exc:
            log.warning("text backend %s unavailable: %s", b, exc)
    if not embedders:
        embedders["configured"] = create_text_embedder(text_embedder)
    first = next(iter(embedders.values()))
    strings = chunk_documents(docs, first, ChunkingConfig().validate(first)).embed_texts
    for emb in embedders.values():
        emb.encode(texts[: batch_size * 2], batch_size=batch_size)  # warm-up (threads, allocator)
    tmp = Path(tempfile.mkdtemp(prefix="zebra-bench-ingest-"))
    best: dict[str, tuple[float, float]] = {}
    manifest: dict[str, Any] = {}

    def keep(name: str, wall: float, cpu: float) -> None:
        old = best.get(name)
        best[name] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)

    try:
        for r in range(max(1, repeats)):
            for b, emb in embedders.items():
                wall, cpu, _ = _timed(lambda emb=emb: emb.encode(texts, batch_size=batch_size))
                keep(f"{b}/raw", wall, cpu)
                wall, cpu, _ = _timed(lambda emb=emb: emb.encode(strings, batch_size=batch_size))
                keep(f"{b}/raw_strings", wall, cpu)
                out = tmp / f"bundle-{b}-{r}"
                ctx = text_backend(b) if b in ("torch", "onnx") else contextlib.nullcontext()
                with ctx:
                    wall, cpu, manifest = _timed(
                        lambda out=out: build_bundle(
                            out,
                            [MemorySource(docs, "bench")],
                            text_embedder=text_embedder,
                            batch_size=batch_size,
                        )
                    )
                keep(f"{b}/pipeline", wall, cpu)
                shutil.rmtree(out, ignore_errors=True)
            log.info("ingest repeat %d: %s", r, best)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_docs, n_chunks = len(docs), int(manifest["counts"]["chunks"])
    per_backend = {b: _ingest_numbers(best, b, n_docs, n_chunks) for b in embedders}
    titles = [d.title for d in docs if d.title][: max(0, queries)]
    encoders = compare_encoders(
        strings, titles, spec=text_embedder, backends=list(embedders), batch_size=batch_size, repeats=repeats
    )
    head = per_backend[next(iter(embedders))]
    return {
        "benchmark": "ingest",
        "text_embedder": text_embedder,
        "batch_size": batch_size,
        "repeats": max(1, repeats),
        "documents": n_docs,
        "chunks": n_chunks,
        "mean_chars": round(float(np.mean([len(x) for x in texts])), 1) if texts else 0.0,
        **head,
        "target_ratio": 0.85,
        "per_backend": per_backend,
        "encoders": encoders,
        "target_speedup": 2.5,
        "target_mean_cosine": 0.99,
        "torch_threads": _torch_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _ingest_numbers(
    best: dict[str, tuple[float, float]], b: str, n_docs: int, n_chunks: int
) -> dict[str, Any]:
    raw, raw_strings, pipe = best[f"{b}/raw"], best[f"{b}/raw_strings"], best[f"{b}/pipeline"]
    return {
        "raw_s": round(raw[0], 3),
        "raw_strings_s": round(raw_strings[0], 3),
        "pipeline_s": round(pipe[0], 3),
        "raw_texts_per_s": round(n_docs / raw[0], 1),
        "raw_chunks_per_s": round(n_chunks / raw_strings[0], 1),
        "pipeline_texts_per_s": round(n_docs / pipe[0], 1),
        "pipeline_chunks_per_s": round(n_chunks / pipe[0], 1),
        "ratio": round(raw[0] / pipe[0], 3),
        "ratio_same_strings": round(raw_strings[0] / pipe[0], 3),
        "cpu_s": {
            "raw": round(raw[1], 2),
            "raw_strings": round(raw_strings[1], 2),
            "pipeline": round(pipe[1], 2),
        },
        "ratio_cpu": round(raw[1] / pipe[1], 3) if pipe[1] else None,
        "ratio_same_strings_cpu": round(raw_strings[1] / pipe[1], 3) if pipe[1] else None,
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
