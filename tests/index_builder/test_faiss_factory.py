"""FAISS factory choice, approximate vs exact search, incremental updates."""

from __future__ import annotations

import numpy as np
import pytest

from index_builder.bench import clustered_vectors
from index_builder.errors import GpuUnavailableError
from index_builder.faiss_factory import (
    FLAT_MAX,
    HNSW_MAX,
    IVF_FLAT_MAX,
    add_vectors,
    build_index,
    check_gpu,
    choose_factory,
    default_search_params,
    index_vectors,
    remove_vectors,
    set_search_params,
)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base = clustered_vectors(6000, 48, clusters=60, seed=1)
    queries = clustered_vectors(200, 48, clusters=60, seed=2)
    exact = base @ queries.T
    truth = np.argsort(-exact, axis=0)[:10].T
    return base, queries, truth


def _recall(index, queries: np.ndarray, truth: np.ndarray, offset: int = 0) -> float:
    _, found = index.search(queries, 10)
    return float(
        np.mean(
            [
                len(set((f - offset).tolist()) & set(t.tolist())) / 10
                for f, t in zip(found, truth, strict=True)
            ]
        )
    )


def test_choose_factory_by_size() -> None:
    assert choose_factory(10, 384) == "Flat"
    assert choose_factory(FLAT_MAX - 1, 384) == "Flat"
    assert choose_factory(FLAT_MAX, 384) == "HNSW32,Flat"
    assert choose_factory(HNSW_MAX - 1, 384) == "HNSW32,Flat"
    assert choose_factory(HNSW_MAX, 384) == "IVF4096,Flat"  # 4·√1M = 4000 -> 4096
    big = choose_factory(IVF_FLAT_MAX * 2, 384)
    assert big.startswith("IVF") and big.endswith(",PQ96")
    nlist = int(big[3 : big.index(",")])
    assert nlist & (nlist - 1) == 0 and nlist >= 8192
    assert default_search_params("HNSW32,Flat") == {"ef_search": 128}
    assert default_search_params("IVF4096,Flat") == {"nprobe": 16}
    assert default_search_params("IVF1024,PQ48") == {"nprobe": 32}
    assert default_search_params("Flat") == {}


@pytest.mark.parametrize(
    ("factory", "params"),
    # (PQ training is left out: on a busy 2-core machine its k-means takes minutes even at this size.)
    [("HNSW32,Flat", {"ef_search": 64}), ("IVF64,Flat", {"nprobe": 8}), ("HNSW16,Flat", {"ef_search": 32})],
)
def test_approximate_recall_against_exact(data, factory: str, params: dict) -> None:
    base, queries, truth = data
    ids = np.arange(base.shape[0], dtype=np.int64) + 1000
    index = build_index(base, ids, factory)
    set_search_params(index, **params)
    assert index.ntotal == len(base)
    recall = _recall(index, queries, truth, offset=1000)
    assert recall >= 0.9, f"{factory} recall@10 {recall:.3f}"


def test_flat_is_exact_and_ids_are_vector_ids(data) -> None:
    base, queries, truth = data
    ids = np.arange(len(base), dtype=np.int64) * 7
    index = build_index(base, ids, "Flat")
    _, found = index.search(queries, 10)
    assert np.array_equal(found // 7, truth)
    assert set(np.unique(found % 7)) == {0}


@pytest.mark.parametrize("factory", ["Flat", "HNSW32,Flat", "IVF32,Flat"])
def test_remove_and_add(data, factory: str) -> None:
    base, _, _ = data
    base = base[:2000]
    ids = np.arange(len(base), dtype=np.int64)
    index = build_index(base, ids, factory)
    set_search_params(index, ef_search=64, nprobe=32)
    index = remove_vectors(index, np.array([0, 1, 2]), factory)
    set_search_params(index, ef_search=64, nprobe=32)
    assert index.ntotal == len(base) - 3
    _, found = index.search(base[:3], 5)
    assert not set(found.ravel().tolist()) & {0, 1, 2}
    add_vectors(index, base[:3], np.array([9000, 9001, 9002]))
    _, found = index.search(base[:3], 1)
    assert found[:, 0].tolist() == [9000, 9001, 9002]
    stored_ids, vectors = index_vectors(index)
    assert len(stored_ids) == index.ntotal and vectors.shape == (index.ntotal, base.shape[1])


def test_set_search_params_reaches_inner_index(data) -> None:
    import faiss

    base, _, _ = data
    index = build_index(base[:500], np.arange(500), "HNSW16,Flat")
    set_search_params(index, ef_search=77)
    assert faiss.downcast_index(index.index).hnsw.efSearch == 77
    ivf = build_index(base[:2000], np.arange(2000), "IVF16,Flat")
    set_search_params(ivf, nprobe=5)
    assert faiss.extract_index_ivf(ivf).nprobe == 5


def test_gpu_flag_without_gpu_says_what_to_do() -> None:
    import faiss

    if faiss.get_num_gpus() > 0:  # pragma: no cover - GPU machines
        pytest.skip("a GPU is visible")
    with pytest.raises(GpuUnavailableError, match="gpu"):
        check_gpu()
