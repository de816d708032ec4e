"""Corpus-scale indexing: on-disk (memory-mapped) IVF-PQ + refine against exact search, streamed BM25 against
bm25s, sharded builds (local and Ray) against the in-memory build, and crash safety of the shard folder.
Small seeded data (thousands of vectors); ``zebra bench scale`` measures the millions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index_builder import scale
from index_builder.bench import clustered_vectors
from index_builder.bm25 import BM25Index, build_bm25, build_bm25_streaming
from index_builder.errors import GpuUnavailableError
from index_builder.faiss_factory import (
    FLAT_MAX,
    build_index_streaming,
    choose_factory,
    default_search_params,
    flat_bytes,
    is_ondisk,
    mmap_flags,
    ondisk_factory,
    remove_vectors,
    set_search_params,
)

from .conftest import HASH, write_jsonl

# a small on-disk factory: 32 lists, PQ8 codes, SQ8 refine (ondisk_factory's shape at test size)
SMALL_ONDISK = "IVF32_HNSW32,PQ8,Refine(SQ8)"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base = clustered_vectors(4000, 32, clusters=40, seed=3)
    queries = clustered_vectors(100, 32, clusters=40, seed=4)
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    return base, queries, truth


def _recall(index, queries: np.ndarray, truth: np.ndarray) -> float:
    _, found = index.search(queries, 10)
    return float(
        np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)])
    )


def test_memory_budget_picks_the_ondisk_factory() -> None:
    n = 2_000_000
    assert choose_factory(n, 384) == choose_factory(n, 384, None)  # no budget: the in-memory choice
    assert not is_ondisk(choose_factory(n, 384, flat_bytes(n, 384)))  # exactly fits
    chosen = choose_factory(n, 384, flat_bytes(n, 384) - 1)
    assert chosen == ondisk_factory(n, 384) == "IVF1024_HNSW32,SQ8"  # log2 √2M = 10.5 -> 1024
    assert choose_factory(FLAT_MAX - 1, 384, 1) == "Flat"  # small indexes stay exact
    assert ondisk_factory(10_000_000, 384).startswith("IVF4096_")
    assert default_search_params(chosen) == {"nprobe": 16}
    assert default_search_params(SMALL_ONDISK)["k_factor"] >= 4
    assert is_ondisk(SMALL_ONDISK) and not is_ondisk("IVF4096,Flat") and not is_ondisk("IVF8192,PQ96")


@pytest.mark.parametrize("factory", ["IVF32_HNSW32,SQ8", SMALL_ONDISK])
def test_ondisk_index_is_memory_mapped_and_close_to_exact(data, tmp_path: Path, factory: str) -> None:
    import faiss

    base, queries, truth = data
    ids = np.arange(len(base), dtype=np.int64) + 1000
    batches = [(base[i : i + 1000], ids[i : i + 1000]) for i in range(0, len(base), 1000)]
    index = build_index_streaming(base[:2000], batches, factory)
    path = tmp_path / "text.faiss"
    faiss.write_index(index, str(path))
    loaded = faiss.read_index(str(path))
    mapped = faiss.read_index(str(path), mmap_flags())
    for ix in (index, loaded, mapped):
        set_search_params(ix, nprobe=8, k_factor=16)
    assert _recall(mapped, queries, truth + 1000) >= 0.9
    np.testing.assert_array_equal(mapped.search(queries, 10)[1], loaded.search(queries, 10)[1])
    # vectors read back through the IDMap2 (the searcher's MMR and dense-score fill-in): SQ8, close to exact
    back = mapped.reconstruct_batch(np.array([1000, 1500], dtype=np.int64))
    assert np.abs(back - base[[0, 500]]).max() < 0.02


@pytest.mark.parametrize("factory", ["IVF32_HNSW32,SQ8", SMALL_ONDISK])
def test_ondisk_delete_rebuilds(data, factory: str) -> None:
    base = data[0]
    ids = np.arange(len(base), dtype=np.int64)
    index = build_index_streaming(base[:2000], [(base, ids)], factory)
    after = remove_vectors(index, ids[:100], factory)
    assert after.ntotal == len(base) - 100
    set_search_params(after, nprobe=8, k_factor=16)
    assert not set(after.search(base[:100], 5)[1].ravel().tolist()) & set(range(100))


def test_gpu_build_needs_faiss_gpu(data) -> None:
    import faiss

    base, _, _ = data
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is visible: the GPU path is exercised on GPU machines only")
    with pytest.raises(GpuUnavailableError):
        build_index_streaming(base[:500], [], SMALL_ONDISK, gpu=True)


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = np.array([f"term{i}" for i in range(300)] + ["glioma", "meningioma", "the", "and", "abscess"])
    p = 1 / np.arange(1, len(words) + 1)
    p /= p.sum()
    return [" ".join(rng.choice(words, size=rng.integers(1, 15), p=p)) for _ in range(n)]


def test_streamed_bm25_matches_bm25s(tmp_path: Path) -> None:
    texts = _texts(3000, 0)
    ids = np.arange(3000, dtype=np.int64) * 7
    build_bm25(texts, ids.tolist(), tmp_path / "ref")
    entry = build_bm25_streaming(
        (texts[i : i + 700] for i in range(0, 3000, 700)), ids, tmp_path / "streamed"
    )
    assert entry["ntotal"] == 3000 and not (tmp_path / "streamed" / ".scratch").exists()
    ref = BM25Index(tmp_path / "ref", mmap=False)
    streamed = BM25Index(tmp_path / "streamed", mmap=False)
    mapped = BM25Index(tmp_path / "streamed", mmap=True)
    for query in ["term3 glioma", "term1", "meningioma term250 abscess", "the and", "unknownword"]:
        tokens = ref._retriever.get_tokens_ids([t for t in query.split() if t in ref._retriever.vocab_dict])
        if tokens:
            a = ref._retriever.get_scores_from_ids(tokens)
            b = streamed._retriever.get_scores_from_ids(
                streamed._retriever.get_tokens_ids(
                    [t for t in query.split() if t in streamed._retriever.vocab_dict]
                )
            )
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        want = dict(ref.search(query, 20))
        got = mapped.search(query, 20)
        assert dict(streamed.search(query, 20)).keys() == want.keys() or len(want) == 0
        assert len(got) == len(want)
        if got:
            # same scores; the last place may tie with documents left out, so compare the score multiset
            np.testing.assert_allclose(sorted(s for _, s in got), sorted(want.values()), rtol=1e-5)
            assert all(np.isclose(s, want.get(v, s)) for v, s in got)
    assert mapped.search("", 5) == [] and mapped.search("term1", 0) == []


def _corpus(tmp_path: Path, n: int = 600) -> Path:
    rows = [
        {
            "id": f"d{i}",
            "title": f"Disease {i}",
            "text": f"Finding {i % 17} with marker{i % 5} and sign{i % 11}.",
        }
        for i in range(n)
    ]
    return write_jsonl(tmp_path / "docs.jsonl", rows)


def test_sharded_build_matches_in_memory_build(tmp_path: Path) -> None:
    from index_builder.build import build_bundle
    from index_builder.bundle import Bundle
    from index_builder.faiss_factory import index_vectors

    corpus = _corpus(tmp_path)
    build_bundle(tmp_path / "plain", [f"jsonl:{corpus}"], text_embedder=HASH)
    manifest = build_bundle(
        tmp_path / "sharded",
        [f"jsonl:{corpus}"],
        text_embedder=HASH,
        memory_budget=10**12,
        shard_size=128,
    )
    assert manifest["build"]["engine"] == "local" and manifest["build"]["shard_size"] == 128
    ids_a, vec_a = index_vectors(Bundle.open(tmp_path / "plain").text_index)
    ids_b, vec_b = index_vectors(Bundle.open(tmp_path / "sharded").text_index)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_allclose(vec_a, vec_b, atol=1e-6)
    assert not list(tmp_path.glob("sharded.tmp-*"))  # shards removed


@pytest.mark.parametrize("factory", ["IVF8_HNSW32,SQ8", "IVF8_HNSW32,PQ16,Refine(SQ8)"])
def test_ondisk_bundle_searches_adds_and_deletes(tmp_path: Path, factory: str) -> None:
    from index_builder.build import add_to_bundle, build_bundle, delete_from_bundle
    from index_builder.bundle import Bundle
    from retrieval.searcher import Searcher

    corpus = _corpus(tmp_path)
    out = tmp_path / "kb"
    manifest = build_bundle(out, [f"jsonl:{corpus}"], text_embedder=HASH, factory=factory)
    entry = manifest["text_index"]
    assert entry["mmap"] is True and entry["nprobe"] >= 8
    assert ("k_factor" in entry) == ("Refine" in factory)
    hits = Searcher(out).search_text("Finding 3 with marker3", k=5)
    assert hits and hits[0].scores.dense is not None
    extra = write_jsonl(
        tmp_path / "extra.jsonl", [{"id": "new", "title": "Rare thing", "text": "A zebra finding."}]
    )
    add_to_bundle(out, [f"jsonl:{extra}"])
    assert Bundle.open(out).text_index.ntotal == manifest["text_index"]["ntotal"] + 1
    after = delete_from_bundle(out, ["jsonl:new"])
    assert after["text_index"]["ntotal"] == manifest["text_index"]["ntotal"] and after["text_index"]["mmap"]


def test_crash_during_merge_leaves_previous_bundle_and_no_shards(tmp_path: Path, monkeypatch) -> None:
    from index_builder.build import build_bundle
    from index_builder.bundle import Bundle

    corpus = _corpus(tmp_path, 200)
    out = tmp_path / "kb"
    build_bundle(out, [f"jsonl:{corpus}"], text_embedder=HASH)
    before = (out / "manifest.json").read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("killed during the merge")

    monkeypatch.setattr(scale, "index_from_shards", boom)
    with pytest.raises(RuntimeError):
        build_bundle(out, [f"jsonl:{corpus}"], text_embedder=HASH, memory_budget=1, shard_size=50)
    assert (out / "manifest.json").read_bytes() == before
    assert not list(tmp_path.glob("kb.tmp-*"))
    Bundle.open(out)
    # leftovers of a process killed outright are removed by the next build
    (tmp_path / "kb.tmp-shards-deadbeef").mkdir()
    monkeypatch.undo()
    build_bundle(out, [f"jsonl:{corpus}"], text_embedder=HASH)
    assert not (tmp_path / "kb.tmp-shards-deadbeef").exists()


def test_unknown_engine() -> None:
    from zebra.errors import ConfigError

    with pytest.raises(ConfigError, match="engine"):
        scale.check_engine("spark")


def test_ray_engine_matches_local(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from index_builder.build import build_bundle
    from index_builder.bundle import Bundle
    from index_builder.faiss_factory import index_vectors

    corpus = _corpus(tmp_path, 300)
    local = build_bundle(tmp_path / "local", [f"jsonl:{corpus}"], text_embedder=HASH, memory_budget=10**12)
    ray = build_bundle(
        tmp_path / "ray", [f"jsonl:{corpus}"], text_embedder=HASH, engine="ray", ray_cpus=2, shard_size=64
    )
    assert ray["build"]["engine"] == "ray" and ray["counts"] == local["counts"]
    ids_a, vec_a = index_vectors(Bundle.open(tmp_path / "local").text_index)
    ids_b, vec_b = index_vectors(Bundle.open(tmp_path / "ray").text_index)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_allclose(vec_a, vec_b, atol=1e-6)
    assert json.loads((tmp_path / "ray" / "manifest.json").read_text())["bm25"]["ntotal"] == 300


def test_gpu_refuses_two_faiss_distributions(monkeypatch) -> None:
    from index_builder import faiss_factory

    monkeypatch.setattr(faiss_factory, "faiss_distributions", lambda: ["faiss-cpu", "faiss-gpu"])
    with pytest.raises(GpuUnavailableError, match="overwrite"):
        faiss_factory.check_gpu()
