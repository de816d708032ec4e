"""``zebra bench scale``: corpus-scale indexing and hybrid search on SYNTHETIC data, as JSON.

For each size ``n`` (1M, 5M, 10M by default):

1. *Data* (not timed as build): ``n`` seeded clustered 384-d vectors (:func:`index_builder.bench.clustered_vectors`,
   one seed per shard, shared centres) written as shards, exactly like the embed step of
   ``zebra index build --engine ray`` writes them (:class:`index_builder.scale.ShardSet`), and one synthetic text
   per vector (pseudo-words from a Zipf-distributed vocabulary; no medical content). Exact top-k of the queries
   is computed shard by shard (``queries @ shard.T``) while the shards are written.
2. *Build* (timed): the index merged from the shards (:func:`index_builder.scale.index_from_shards`, factory by
   :func:`faiss_factory.choose_factory` under ``memory_budget``), BM25 built batch by batch
   (:func:`index_builder.bm25.build_bm25_streaming`), the chunk table, then published atomically like any bundle
   (:class:`index_builder.atomic.BundleWriter`: checksums, fsync, swap).
3. *Search* (a fresh process, so resident memory is the searcher's alone): the bundle opened as the searcher
   opens it (memory-mapped index, memory-mapped BM25), then per query the full hybrid ranking of
   :meth:`retrieval.searcher.Searcher.search_text` with its defaults (``fetch_k`` 50, one chunk per document):
   :func:`retrieval.ranking.index_ranking` (FAISS, over-fetching 8x for the per-document collapse),
   :func:`retrieval.ranking.bm25_ranking` and :func:`retrieval.ranking.fuse_rankings` (RRF). Query vectors are
   given (synthetic), so the encoder's time (about 5-15 ms for MiniLM on this machine, independent of corpus
   size) is not in the latency; nor are citations, which read only the top ``k`` rows.

Recall@10 is FAISS ``search(q, 10)`` against the exact top-10 (the harder case: the hybrid query asks the index
for 400 rows, which refines more candidates).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_SIZES: tuple[int, ...] = (1_000_000, 5_000_000, 10_000_000)
#: Vectors generated (and one shard written) at a time.
GEN_BLOCK = 250_000
#: Synthetic chunks per synthetic document (the per-document collapse has something to do).
CHUNKS_PER_DOC = 4
VOCAB = 50_000
WORDS_PER_TEXT = (8, 24)
ZIPF_A = 1.2
_SYLLABLES = [
    "ka",
    "ri",
    "mo",
    "te",
    "lu",
    "sa",
    "ven",
    "dor",
    "pal",
    "qui",
    "zet",
    "bra",
    "nox",
    "fil",
    "gum",
    "hex",
    "jor",
    "lam",
    "mip",
    "nut",
    "orv",
    "pes",
    "rak",
    "sul",
    "tib",
    "umb",
    "vor",
    "wix",
    "yel",
    "zan",
]


def _vocabulary(size: int = VOCAB) -> np.ndarray:
    """``size`` distinct pseudo-words (three syllables, SYNTHETIC: never English words or stop words)."""
    s = _SYLLABLES
    words = [a + b + c for a in s for b in s for c in s]
    rng = np.random.default_rng(20240607)
    return np.asarray(words, dtype=object)[rng.permutation(len(words))[:size]]


def synthetic_texts(n: int, first: int, seed: int, vocab: np.ndarray) -> list[str]:
    """Texts ``first .. first + n`` (deterministic per block): Zipf-distributed pseudo-words."""
    rng = np.random.default_rng([seed, first])
    lengths = rng.integers(WORDS_PER_TEXT[0], WORDS_PER_TEXT[1] + 1, size=n)
    ranks = np.minimum(rng.zipf(ZIPF_A, size=int(lengths.sum())) - 1, len(vocab) - 1)
    words = vocab[ranks]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [" ".join(words[bounds[i] : bounds[i + 1]]) for i in range(n)]


def query_texts(count: int, seed: int, vocab: np.ndarray) -> list[str]:
    """Query texts: two to four pseudo-words of middle frequency (ranks 10-5000), as a user types a few terms."""
    rng = np.random.default_rng([seed, 7])
    return [" ".join(vocab[rng.integers(10, 5000, size=rng.integers(2, 5))]) for _ in range(count)]


def _rss() -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and VmHWM of this process in MiB (/proc/self/status)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key = line.split(":")[0]
                if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                    out[key] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        out["VmHWM"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _dir_bytes(path: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            top = p.relative_to(path).parts[0]
            sizes[top] = sizes.get(top, 0) + p.stat().st_size
    sizes["total"] = sum(sizes.values())
    return sizes


def _merge_top(
    best_s: np.ndarray, best_i: np.ndarray, scores: np.ndarray, offset: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    s = np.concatenate([best_s, np.take_along_axis(scores, top, axis=1)], axis=1)
    i = np.concatenate([best_i, top + offset], axis=1)
    keep = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, keep, axis=1), np.take_along_axis(i, keep, axis=1)


def generate(
    n: int, dim: int, shards: Any, queries: np.ndarray, k: int, *, clusters: int, spread: float, seed: int
) -> tuple[np.ndarray, float]:
    """Writes ``n`` clustered vectors as shards; returns the exact top-``k`` ids of ``queries`` and the seconds."""
    from index_builder.bench import clustered_vectors

    t = time.perf_counter()
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for i, start in enumerate(range(0, n, GEN_BLOCK)):
        m = min(GEN_BLOCK, n - start)
        block = clustered_vectors(m, dim, clusters=clusters, spread=spread, seed=seed * 100_003 + i + 1)
        best_s, best_i = _merge_top(best_s, best_i, queries @ block.T, start, k)
        shards.write(i, block)
        log.info("generated %d / %d vectors", start + m, n)
    return best_i, time.perf_counter() - t


def _text_batches(n: int, seed: int, vocab: np.ndarray, size: int = 200_000) -> Iterator[list[str]]:
    for start in range(0, n, size):
        yield synthetic_texts(min(size, n - start), start, seed, vocab)


def _write_chunks(path: Path, n: int, seed: int, vocab: np.ndarray, size: int = 500_000) -> None:
    """The chunk table (tables.CHUNK_SCHEMA), written in row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from index_builder import tables

    schema = tables.CHUNK_SCHEMA
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, n, size):
            m = min(size, n - start)
            vid = np.arange(start, start + m, dtype=np.int64)
            doc = [f"synthetic:{v // CHUNKS_PER_DOC}" for v in vid.tolist()]
            texts = synthetic_texts(m, start, seed, vocab)
            cols: dict[str, Any] = {}
            for f in schema:
                if f.name == "vector_id":
                    cols[f.name] = pa.array(vid)
                elif f.name == "doc_id":
                    cols[f.name] = pa.array(doc, type=f.type)
                elif f.name == "text":
                    cols[f.name] = pa.array(texts, type=f.type)
                elif f.name == "chunk_index":
                    cols[f.name] = pa.array(vid % CHUNKS_PER_DOC, type=f.type)
                elif f.name in ("source", "kind"):
                    cols[f.name] = pa.array(["synthetic"] * m, type=f.type)
                elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
                    cols[f.name] = pa.nulls(m, type=f.type) if f.nullable else pa.array([""] * m, type=f.type)
                else:
                    cols[f.name] = (
                        pa.nulls(m, type=f.type) if f.nullable else pa.array(np.zeros(m), type=f.type)
                    )
            writer.write_table(pa.table(cols, schema=schema))


def build_synthetic_bundle(
    out: Path,
    n: int,
    dim: int,
    queries: np.ndarray,
    *,
    k: int,
    clusters: int,
    spread: float,
    seed: int,
    memory_budget: int | None,
    factory: str | None,
    gpu: bool = False,
) -> tuple[dict[str, Any], np.ndarray]:
    """Generates the data and builds the bundle at ``out``; returns ``(build report, exact top-k)``."""
    from index_builder import faiss_factory, scale
    from index_builder.atomic import bundle_lock, recover

    out = out.resolve()
    vocab = _vocabulary()
    report: dict[str, Any] = {"n": n}
    with bundle_lock(out):
        recover(out)  # before the shards: it removes OUT.tmp-* folders
        shards = scale.ShardSet(scale.shard_dir(out), dim)
        try:
            truth, gen_s = generate(n, dim, shards, queries, k, clusters=clusters, spread=spread, seed=seed)
            report["data_gen_s"] = round(gen_s, 1)
            chosen = factory or faiss_factory.choose_factory(n, dim, memory_budget)
            report["factory"] = chosen
            ids = np.arange(n, dtype=np.int64)
            t0 = time.perf_counter()
            index = scale.index_from_shards(shards, ids, chosen, gpu=gpu)
            report["index_s"] = round(time.perf_counter() - t0, 1)
            report["build_peak_rss_mb"] = _rss().get("VmHWM")
            scale.remove_shards(shards)
            _publish(out, index, chosen, n, dim, seed, vocab, ids, report)
            report["build_s"] = round(time.perf_counter() - t0, 1)
        finally:
            scale.remove_shards(shards)
    report["bytes_on_disk"] = _dir_bytes(out)
    return report, truth


def _publish(
    out: Path,
    index: Any,
    chosen: str,
    n: int,
    dim: int,
    seed: int,
    vocab: np.ndarray,
    ids: np.ndarray,
    report: dict,
) -> None:
    """Writes the index, BM25, tables and manifest through a :class:`BundleWriter` (atomic swap)."""
    import faiss

    from index_builder import faiss_factory, layout, tables
    from index_builder.atomic import BundleWriter
    from index_builder.bm25 import build_bm25_streaming

    with BundleWriter(out) as writer:
        t = time.perf_counter()
        faiss.write_index(index, str(writer.path(layout.TEXT_INDEX)))
        del index
        report["write_index_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        bm25 = build_bm25_streaming(_text_batches(n, seed, vocab), ids, writer.path(layout.BM25_DIR))
        report["bm25_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        _write_chunks(writer.path(layout.CHUNKS), n, seed, vocab)
        tables.write_table(
            tables.DOCUMENT_SCHEMA.empty_table(), tables.DOCUMENT_SCHEMA, writer.path(layout.DOCUMENTS)
        )
        report["tables_s"] = round(time.perf_counter() - t, 1)
        entry = {
            "factory": chosen,
            "metric": "ip",
            "ntotal": n,
            "dim": dim,
            "file": layout.TEXT_INDEX,
            **faiss_factory.default_search_params(chosen),
            **({"mmap": True} if faiss_factory.is_ondisk(chosen) else {}),
        }
        t = time.perf_counter()
        writer.publish(
            {
                "format_version": layout.FORMAT_VERSION,
                "synthetic": True,
                "text_embedder": {"spec": f"synthetic:{dim}", "name": "synthetic", "dim": dim},
                "image_embedder": None,
                "text_index": entry,
                "image_index": None,
                "cross_modal": None,
                "bm25": bm25,
                "counts": {"documents": 0, "chunks": n, "images": 0},
                "sources": ["synthetic"],
                "next_vector_id": {"text": n, "image": 0},
            }
        )
        report["publish_s"] = round(time.perf_counter() - t, 1)


def search_bundle(
    bundle_path: Path,
    queries: np.ndarray,
    texts: Sequence[str],
    truth: np.ndarray,
    *,
    k: int = 10,
    fetch_k: int = 50,
    warmup: int = 20,
    threads: int = 1,
) -> dict[str, Any]:
    """Opens the bundle and times the full hybrid ranking per query (run in a fresh process; module docstring)."""
    import faiss

    from index_builder.bundle import Bundle
    from retrieval.ranking import bm25_ranking, fuse_rankings, index_ranking

    faiss.omp_set_num_threads(threads)
    report: dict[str, Any] = {"rss_mb_start": _rss()}
    t = time.perf_counter()
    bundle = Bundle.open(bundle_path, verify=False)
    index = bundle.text_index
    bm25 = bundle.bm25
    report["open_s"] = round(time.perf_counter() - t, 2)
    report["rss_mb_loaded"] = _rss()
    ntotal = int(index.ntotal)

    def key_of(vid: int) -> int:
        return vid // CHUNKS_PER_DOC

    def hybrid(i: int) -> list[int]:
        dense = index_ranking(index, queries[i : i + 1], fetch_k, key_of=key_of)
        keyword = bm25_ranking(bm25.search, texts[i], fetch_k, ntotal=ntotal, key_of=key_of)
        fused = fuse_rankings(dense, keyword, mode="hybrid", key_of=key_of)
        return [c.vid for c in fused[:k]]

    order = list(range(len(queries)))
    for i in order[:warmup]:
        hybrid(i)
    lat, dense_ms, bm25_ms = [], [], []
    for i in order:
        t = time.perf_counter()
        hybrid(i)
        lat.append(time.perf_counter() - t)
    for i in order:  # the parts alone, for the record
        t = time.perf_counter()
        index_ranking(index, queries[i : i + 1], fetch_k, key_of=key_of)
        dense_ms.append(time.perf_counter() - t)
        t = time.perf_counter()
        bm25_ranking(bm25.search, texts[i], fetch_k, ntotal=ntotal, key_of=key_of)
        bm25_ms.append(time.perf_counter() - t)
    found = np.stack([index.search(queries[i : i + 1], k)[1][0] for i in order])
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    report["sweep"] = _sweep(index, bundle.manifest["text_index"], queries, truth, k, fetch_k)
    report.update(
        {
            "queries": len(order),
            "recall@10" if k == 10 else f"recall@{k}": round(hits / truth.size, 4),
            "hybrid_ms": _ms(lat),
            "dense_ms": _ms(dense_ms),
            "bm25_ms": _ms(bm25_ms),
            "rss_mb_after": _rss(),
            "search_threads": threads,
            "bm25_mmap": bool(getattr(bm25, "mmap", False)),
        }
    )
    return report


def _sweep(
    index: Any,
    entry: dict[str, Any],
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    fetch_k: int,
    n: int = 200,
) -> list[dict[str, Any]]:
    """Recall@k and dense-ranking latency around the manifest's ``nprobe``/``k_factor`` (first ``n`` queries),
    so the defaults can be checked at each size; the index is left as the manifest sets it."""
    from index_builder.faiss_factory import set_search_params
    from retrieval.ranking import index_ranking

    nprobe = int(entry.get("nprobe") or 0)
    if not nprobe:
        return []
    kf = entry.get("k_factor")
    grid = [{"nprobe": p} for p in (nprobe // 2, nprobe, nprobe * 2)]
    if kf:
        grid = [{"nprobe": nprobe, "k_factor": f} for f in (kf / 2, kf * 2, kf * 4)] + grid
    rows = []
    for params in grid:
        set_search_params(index, **params)
        found, lat = [], []
        for i in range(min(n, len(queries))):
            found.append(index.search(queries[i : i + 1], k)[1][0])
            t = time.perf_counter()
            index_ranking(index, queries[i : i + 1], fetch_k, key_of=lambda v: v // CHUNKS_PER_DOC)
            lat.append(time.perf_counter() - t)
        hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=False))
        rows.append({**params, f"recall@{k}": round(hits / (len(found) * k), 4), "dense_ms": _ms(lat)})
    set_search_params(index, nprobe=nprobe, k_factor=kf)
    return rows


def _ms(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "mean": round(float(a.mean()), 2),
    }


def bench_scale(
    *,
    sizes: Sequence[int] = DEFAULT_SIZES,
    dim: int = 384,
    queries: int = 500,
    k: int = 10,
    clusters: int = 1000,
    spread: float = 1.0,
    seed: int = 0,
    memory_budget: int | None = 2**30,
    factory: str | None = None,
    workdir: Path | None = None,
    keep: bool = False,
    threads: int = 1,
    max_build_s: float = 2400.0,
    target_recall: float = 0.90,
    target_p50_ms: float = 50.0,
    target_rss_gb: float = 8.0,
) -> dict[str, Any]:
    """Builds and searches a synthetic bundle per size, smallest first (module docstring).

    Stops before a size whose projected build time (from the previous size, linear) exceeds ``max_build_s``
    or whose flat float32 shards would not fit on the work folder's disk, and says so in ``stopped``.
    """
    from index_builder.bench import clustered_vectors

    base = Path(workdir or tempfile.mkdtemp(prefix="zebra-bench-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    qs = clustered_vectors(queries, dim, clusters=clusters, spread=spread, seed=seed + 1)
    texts = query_texts(queries, seed, _vocabulary())
    report: dict[str, Any] = {
        "benchmark": "scale",
        "synthetic": True,
        "dim": dim,
        "clusters": clusters,
        "spread": spread,
        "queries": queries,
        "k": k,
        "memory_budget": memory_budget,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "results": [],
        "targets": {"recall@10": target_recall, "hybrid_p50_ms": target_p50_ms, "rss_gb": target_rss_gb},
    }
    previous: tuple[int, float] | None = None
    for n in sorted(sizes):
        free = shutil.disk_usage(base).free
        if free < n * dim * 4 * 1.6:
            report["stopped"] = (
                f"before {n:,}: {free / 2**30:.1f} GiB free on {base}, the shards need {n * dim * 4 * 1.6 / 2**30:.1f}"
            )
            break
        if previous is not None and previous[1] * n / previous[0] > max_build_s:
            report["stopped"] = (
                f"before {n:,}: projected build {previous[1] * n / previous[0]:.0f} s > {max_build_s:.0f} s"
            )
            break
        out = base / f"bundle-{n}"
        t = time.perf_counter()
        built, truth = build_synthetic_bundle(
            out,
            n,
            dim,
            qs,
            k=k,
            clusters=clusters,
            spread=spread,
            seed=seed,
            memory_budget=memory_budget,
            factory=factory,
        )
        previous = (n, time.perf_counter() - t)
        searched = _search_subprocess(out, qs, texts, truth, k=k, threads=threads, scratch=base)
        entry = {**built, "search": searched}
        rkey = "recall@10" if k == 10 else f"recall@{k}"
        rss_gb = searched["rss_mb_after"].get("VmRSS", 0) / 1024
        entry["meets_target"] = bool(
            searched[rkey] >= target_recall
            and searched["hybrid_ms"]["p50"] <= target_p50_ms
            and rss_gb <= target_rss_gb
        )
        report["results"].append(entry)
        log.info("scale %d: %s", n, json.dumps(entry))
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    report["growth"] = _growth(report["results"])
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if not keep and workdir is None:
        shutil.rmtree(base, ignore_errors=True)
    return report


def _growth(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-measure ratio between consecutive sizes, next to the size ratio (1.0 per size ratio = linear)."""
    rows = []
    for a, b in itertools.pairwise(results):
        size = b["n"] / a["n"]
        sa, sb = a["search"], b["search"]

        def ratio(x: float, y: float) -> float | None:
            return round(y / x, 2) if x else None

        rows.append(
            {
                "from": a["n"],
                "to": b["n"],
                "size_x": round(size, 2),
                "build_x": ratio(a["build_s"], b["build_s"]),
                "disk_x": ratio(a["bytes_on_disk"]["total"], b["bytes_on_disk"]["total"]),
                "rss_x": ratio(sa["rss_mb_after"].get("VmRSS", 0), sb["rss_mb_after"].get("VmRSS", 0)),
                "hybrid_p50_x": ratio(sa["hybrid_ms"]["p50"], sb["hybrid_ms"]["p50"]),
                "dense_p50_x": ratio(sa["dense_ms"]["p50"], sb["dense_ms"]["p50"]),
                "bm25_p50_x": ratio(sa["bm25_ms"]["p50"], sb["bm25_ms"]["p50"]),
            }
        )
    return {"steps": rows}


def _search_subprocess(
    out: Path,
    queries: np.ndarray,
    texts: Sequence[str],
    truth: np.ndarray,
    *,
    k: int,
    threads: int,
    scratch: Path,
) -> dict[str, Any]:
    """:func:`search_bundle` in a fresh Python process (same interpreter and ``sys.path``)."""
    work = Path(tempfile.mkdtemp(prefix="search-", dir=scratch))
    try:
        np.save(work / "queries.npy", queries, allow_pickle=False)
        np.save(work / "truth.npy", truth, allow_pickle=False)
        (work / "texts.json").write_text(json.dumps(list(texts)), "utf-8")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        cmd = [sys.executable, "-m", "retrieval.scale_bench", str(out), str(work), str(k), str(threads)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"search process failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _main(argv: Sequence[str]) -> None:
    bundle, work, k, threads = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    queries = np.load(work / "queries.npy", allow_pickle=False)
    truth = np.load(work / "truth.npy", allow_pickle=False)
    texts = json.loads((work / "texts.json").read_text("utf-8"))
    print(json.dumps(search_bundle(bundle, queries, texts, truth, k=k, threads=threads)))


if __name__ == "__main__":
    _main(sys.argv[1:])
