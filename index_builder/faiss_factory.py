"""FAISS index choice, building, incremental updates and search-time parameters.

Every index is inner product on L2-normalised vectors, wrapped in ``IndexIDMap2`` so FAISS ids are the
bundle's ``vector_id``s. Factory choice by size, from ``zebra bench ann`` on this project's 2-core machine
(1000-cluster Gaussian mixtures, 384-d, single-query latency; see docs/index_builder.md):

- fewer than :data:`FLAT_MAX` vectors: ``"Flat"`` (exact; a few ms per query at this size);
- up to :data:`HNSW_MAX`: ``"HNSW32,Flat"``, ``efSearch`` 128 set at load time (best recall on hard,
  overlapping data at 100k: 0.995 at p50 1.2 ms; builds in about a minute);
- up to :data:`IVF_FLAT_MAX`: ``"IVF{nlist},Flat"`` with nlist = 4·√n (a power of two), ``nprobe`` 16. At
  1M x 384: recall@10 0.999-1.000 at p50 0.9-1.0 ms, built in 3-4 min, where HNSW32 took 12-30 min for
  recall 0.977 at efSearch 128; IVF also removes vectors without a rebuild;
- beyond: ``"IVF{nlist},PQ{dim/4}"`` (compressed: a flat copy would not fit in memory), ``nprobe`` 32.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from index_builder.errors import GpuUnavailableError

log = logging.getLogger(__name__)

FLAT_MAX = 50_000
HNSW_MAX = 1_000_000
IVF_FLAT_MAX = 8_000_000
#: Search-time defaults stored in the manifest and applied by :func:`set_search_params`.
DEFAULT_EF_SEARCH = 128
DEFAULT_NPROBE = 16
DEFAULT_NPROBE_PQ = 32
#: HNSW graph build effort (faiss' default is 40; more gives better recall at the same efSearch).
DEFAULT_EF_CONSTRUCTION = 80


def _nlist(n: int) -> int:
    return 1 << max(10, round(math.log2(4 * math.sqrt(max(n, 1)))))


def choose_factory(n: int, dim: int) -> str:
    """The default FAISS factory string for ``n`` vectors of dimension ``dim``."""
    if n < FLAT_MAX:
        return "Flat"
    if n < HNSW_MAX:
        return "HNSW32,Flat"
    if n < IVF_FLAT_MAX:
        return f"IVF{_nlist(n)},Flat"
    m = max(d for d in range(1, dim // 4 + 1) if dim % d == 0)
    return f"IVF{_nlist(n)},PQ{m}"


def default_search_params(factory: str) -> dict[str, int]:
    """``{"ef_search": ...}`` or ``{"nprobe": ...}`` for the factory, empty for exact indexes."""
    upper = factory.upper()
    params: dict[str, int] = {}
    if "HNSW" in upper:
        params["ef_search"] = DEFAULT_EF_SEARCH
    if upper.startswith("IVF") or ",IVF" in upper:
        params["nprobe"] = DEFAULT_NPROBE_PQ if "PQ" in upper else DEFAULT_NPROBE
    return params


def _faiss():
    from index_builder.faiss_dist import require_faiss

    return require_faiss()


def check_gpu() -> None:
    """Raises :class:`GpuUnavailableError` unless FAISS sees at least one GPU."""
    faiss = _faiss()
    num = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if num <= 0 or not hasattr(faiss, "index_cpu_to_all_gpus"):
        raise GpuUnavailableError(
            "--gpu was given but FAISS has no GPU support here (faiss-cpu is installed, or no GPU is visible).",
            hint="Install the gpu extra (`pip install 'zebra-dx[gpu]'`, which brings faiss-gpu) on a machine "
            "with a CUDA GPU, or drop --gpu.",
        )


def _train_sample(vectors: np.ndarray, base: Any, seed: int = 0) -> np.ndarray:
    nlist = getattr(_faiss().try_extract_index_ivf(base), "nlist", 0) if _is_ivf(base) else 0
    size = min(len(vectors), max(64 * nlist, 100_000))
    if size >= len(vectors):
        return vectors
    rng = np.random.default_rng(seed)
    return vectors[np.sort(rng.choice(len(vectors), size=size, replace=False))]


def _is_ivf(index: Any) -> bool:
    return _faiss().try_extract_index_ivf(index) is not None


def build_index(
    vectors: np.ndarray,
    ids: np.ndarray,
    factory: str,
    *,
    gpu: bool = False,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
) -> Any:
    """Builds an ``IndexIDMap2`` over ``factory`` holding ``vectors`` under ``ids`` (always a CPU index).

    Args:
        vectors: ``(n, dim)`` float32, L2-normalised.
        ids: ``(n,)`` int64 vector ids.
        factory: FAISS factory string (``"Flat"``, ``"HNSW32,Flat"``, ``"IVF1024,PQ48"`` ...).
        gpu: Train and add on all GPUs (Flat/IVF; HNSW graphs are always built on the CPU).
        ef_construction: HNSW build effort.
    """
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    dim = vectors.shape[1]
    base = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    hnsw = getattr(base, "hnsw", None)
    if hnsw is not None:
        hnsw.efConstruction = ef_construction
    if len(vectors) == 0:
        return faiss.IndexIDMap2(base)
    sample = _train_sample(vectors, base)
    if gpu:
        check_gpu()
        if hnsw is not None:
            log.info("%s graphs are built on the CPU; --gpu has no effect on them", factory)
        else:
            log.info("building %s on %d GPU(s)", factory, faiss.get_num_gpus())
            # The cloners map the IDMap2 wrapper and its Flat/IVF storage to GPU and back.
            work = faiss.index_cpu_to_all_gpus(faiss.IndexIDMap2(base))
            if not work.is_trained:
                work.train(sample)
            work.add_with_ids(vectors, ids)
            return faiss.index_gpu_to_cpu(work)
    index = faiss.IndexIDMap2(base)
    if not index.is_trained:
        index.train(sample)
    index.add_with_ids(vectors, ids)
    return index


def add_vectors(index: Any, vectors: np.ndarray, ids: np.ndarray) -> None:
    """Adds vectors to an existing ``IndexIDMap2`` (any trained factory supports this)."""
    index.add_with_ids(
        np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
    )


def index_vectors(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """All ``(ids, vectors)`` stored in an ``IndexIDMap2`` (exact for Flat/HNSW, decoded for PQ)."""
    faiss = _faiss()
    base = faiss.downcast_index(index.index)
    n = base.ntotal
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    if n == 0:
        return ids, np.zeros((0, base.d), dtype=np.float32)
    ivf = faiss.try_extract_index_ivf(base)
    if ivf is not None:
        ivf.make_direct_map()
    return ids, base.reconstruct_n(0, n)


def remove_vectors(index: Any, ids: np.ndarray, factory: str) -> Any:
    """Removes ``ids``; returns the index to use afterwards (rebuilt when the factory cannot remove)."""
    faiss = _faiss()
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) == 0:
        return index
    base = faiss.downcast_index(index.index)
    if getattr(base, "hnsw", None) is None:
        index.remove_ids(faiss.IDSelectorBatch(ids))
        return index
    # HNSW graphs do not support removal: rebuild from the stored vectors.
    all_ids, vectors = index_vectors(index)
    keep = ~np.isin(all_ids, ids)
    log.info("rebuilding %s without %d vectors", factory, int((~keep).sum()))
    return build_index(vectors[keep], all_ids[keep], factory)


def set_search_params(index: Any, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
    """Sets HNSW ``efSearch`` / IVF ``nprobe`` on an index, looking through ``IndexIDMap`` wrappers."""
    faiss = _faiss()
    inner = index
    while hasattr(inner, "id_map") or isinstance(inner, faiss.IndexRefine | faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.base_index if hasattr(inner, "base_index") else inner.index)
    if ef_search and getattr(inner, "hnsw", None) is not None:
        inner.hnsw.efSearch = int(ef_search)
    if nprobe:
        ivf = faiss.try_extract_index_ivf(inner)
        if ivf is not None:
            ivf.nprobe = int(nprobe)
