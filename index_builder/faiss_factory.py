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

Corpus scale (:func:`choose_factory` with a ``memory_budget``): when a flat copy of the vectors would exceed the
budget, the on-disk factory :func:`ondisk_factory`, ``"IVF{nlist}_HNSW32,SQ8"``: 8-bit scalar-quantised vectors
(dim bytes each, a quarter of float32, nearly exact inner products on L2-normalised vectors) in inverted lists, an
HNSW coarse quantizer so that assigning millions of vectors to lists stays fast. The bundle reads it with
:func:`mmap_flags`: the lists stay in the file, memory-mapped, and only the pages that queries touch become
resident. IVF-PQ with a refine step (``"IVF{nlist}_HNSW32,PQ48,Refine(SQ8)"``, also read memory-mapped, with a
``k_factor``) was measured first and lost: on clustered data whose neighbours are nearly tied (200k vectors in
20 clusters, 64 lists, 4 probed) PQ48 + SQ8 refine reached recall@10 0.64-0.87 (k_factor 16-64) at 15-23 ms
for the 400 rows a collapsed hybrid query asks for, PQ96 0.94-0.95 at 18-40 ms, IVF-SQ8 0.965 at 3 ms, and
builds 5x faster (no PQ training); its lists hold dim/8 + dim bytes per vector against SQ8's dim.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from index_builder.errors import GpuUnavailableError
from zebra.errors import ConfigError

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
#: On-disk (memory-mapped) indexes: IVF lists probed, and the refine step's candidates per result (refine factories).
DEFAULT_NPROBE_ONDISK = 16
DEFAULT_K_FACTOR = 16
#: Training vectors per IVF list of an on-disk index (faiss warns below 39).
ONDISK_TRAIN_PER_LIST = 40


def mmap_flags() -> int:
    """``faiss.read_index`` flags that memory-map an index file instead of reading it: ``IO_FLAG_MMAP_IFC``
    (faiss >= 1.11) maps the whole file, inverted lists and flat/SQ refine codes alike (only the IDMap2 id
    table and the coarse quantizer are copied to memory); older faiss maps the inverted lists only
    (``IO_FLAG_MMAP``). The two cannot be combined (faiss then refuses the file)."""
    faiss = _faiss()
    return int(getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP))


def _nlist(n: int) -> int:
    return 1 << max(10, round(math.log2(4 * math.sqrt(max(n, 1)))))


def ondisk_nlist(n: int) -> int:
    """IVF lists of an on-disk index: √n rounded to a power of two, at least 256 (k-means stays affordable
    on a few cores; PQ codes make scanning longer lists cheap)."""
    return 1 << max(8, round(math.log2(math.sqrt(max(n, 1)))))


def ondisk_factory(n: int, dim: int) -> str:
    """The on-disk (memory-mapped) factory for ``n`` vectors of dimension ``dim`` (module docstring)."""
    return f"IVF{ondisk_nlist(n)}_HNSW32,SQ8"


def is_ondisk(factory: str) -> bool:
    """Whether ``factory`` is read memory-mapped: IVF with scalar-quantised lists or with a refine step."""
    upper = factory.upper().replace(" ", "")
    return upper.startswith("IVF") and (",SQ" in upper or "REFINE(" in upper)


def flat_bytes(n: int, dim: int) -> int:
    """Bytes of a flat float32 copy of ``n`` vectors of dimension ``dim``."""
    return int(n) * int(dim) * 4


def choose_factory(n: int, dim: int, memory_budget: int | None = None) -> str:
    """The default FAISS factory string for ``n`` vectors of dimension ``dim``.

    Args:
        n: Vectors.
        dim: Dimension.
        memory_budget: Bytes the index may keep in memory; when a flat copy of the vectors exceeds it (and
            ``n >= FLAT_MAX``), the on-disk factory. ``None``: no budget (the in-memory choices only).
    """
    if memory_budget is not None and n >= FLAT_MAX and flat_bytes(n, dim) > memory_budget:
        return ondisk_factory(n, dim)
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
    if "HNSW" in upper and not upper.startswith("IVF"):  # IVF..._HNSW: the coarse quantizer's, faiss' default
        params["ef_search"] = DEFAULT_EF_SEARCH
    if upper.startswith("IVF") or ",IVF" in upper:
        params["nprobe"] = DEFAULT_NPROBE_PQ if "PQ" in upper else DEFAULT_NPROBE
    if is_ondisk(factory):
        params["nprobe"] = DEFAULT_NPROBE_ONDISK
        if "REFINE(" in upper:
            params["k_factor"] = DEFAULT_K_FACTOR
    return params


def _faiss():
    from index_builder.faiss_dist import require_faiss

    return require_faiss()


def faiss_distributions() -> list[str]:
    """The installed distributions that provide the ``faiss`` module (:func:`index_builder.faiss_dist.installed_faiss`)."""
    from index_builder.faiss_dist import installed_faiss

    return [pin.split("==")[0] for pin in installed_faiss()]


def check_gpu() -> None:
    """Raises :class:`GpuUnavailableError` unless FAISS sees at least one GPU (and only one faiss is installed:
    faiss-cpu and faiss-gpu both write the ``faiss`` module, so whichever was installed last wins)."""
    dists = faiss_distributions()
    if "faiss-cpu" in dists and len(dists) > 1:
        raise GpuUnavailableError(
            f"Both {' and '.join(dists)} are installed; they overwrite each other's `faiss` module.",
            hint="pip uninstall -y " + " ".join(dists) + " && pip install 'zebra-dx[gpu]'.",
        )
    faiss = _faiss()
    num = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if num <= 0 or not hasattr(faiss, "index_cpu_to_all_gpus"):
        raise GpuUnavailableError(
            "--gpu was given but FAISS has no GPU support here (faiss-cpu is installed, or no GPU is visible).",
            hint="Install the gpu extra (`pip install 'zebra-dx[gpu]'`, which brings faiss-gpu) on a machine "
            "with a CUDA GPU, or drop --gpu.",
        )


def _configure(base: Any) -> Any:
    """Turns off IVF-PQ's polysemous training (simulated annealing of the code order, minutes at PQ48 and
    only useful to Hamming-filtered search, which Zebra does not use); returns the IVF part or ``None``."""
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(base)
    if ivf is None:
        return None
    ivf = faiss.downcast_index(ivf)
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False
    return ivf


def _finish(index: Any, factory: str) -> Any:
    """Gives on-disk IVF indexes a direct map (an id array, 8 bytes per vector, written with the index), so the
    searcher can read vectors back by id (MMR, dense scores of BM25-only hits)."""
    if is_ondisk(factory):
        ivf = _faiss().try_extract_index_ivf(index)
        if ivf is not None and ivf.ntotal:
            ivf.make_direct_map(True)
    return index


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
    _configure(base)
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
    return _finish(index, factory)


def train_sample_size(n: int, factory: str) -> int:
    """Training vectors :func:`build_index_streaming` wants for ``n`` vectors under ``factory``."""
    if is_ondisk(factory):
        nlist = int(factory[3:].split(",")[0].split("_")[0])
        return min(n, max(ONDISK_TRAIN_PER_LIST * nlist, 65_536))
    return n if not factory.upper().startswith("IVF") else min(n, max(64 * _nlist(n), 100_000))


def build_index_streaming(
    sample: np.ndarray,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    factory: str,
    *,
    gpu: bool = False,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
) -> Any:
    """Builds an ``IndexIDMap2`` over ``factory`` from vectors arriving in batches (the merge of embedded
    shards): trains on ``sample`` (:func:`train_sample_size` rows drawn from the whole corpus), then adds each
    ``(vectors, ids)`` batch, so only the index and one batch are in memory.

    Args:
        sample: ``(m, dim)`` float32 training vectors, L2-normalised.
        batches: ``(vectors, ids)`` pairs, float32 ``(b, dim)`` and int64 ``(b,)``.
        factory: FAISS factory string (usually :func:`choose_factory`'s).
        gpu: Train (k-means) and assign vectors to lists on the GPU(s); needs faiss-gpu (the ``gpu`` extra).
        ef_construction: HNSW build effort (HNSW factories).

    Returns:
        A CPU index (write it with ``faiss.write_index``).
    """
    faiss = _faiss()
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    dim = sample.shape[1]
    base = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    hnsw = getattr(base, "hnsw", None)
    if hnsw is not None:
        hnsw.efConstruction = ef_construction
    ivf = _configure(base)
    if gpu:
        check_gpu()
        if ivf is None or hnsw is not None:
            raise ConfigError(
                f"--gpu builds IVF indexes; {factory} is not one.",
                hint="Drop --gpu or pass an IVF --factory.",
            )
        return _finish(_build_ivf_gpu(base, ivf, sample, batches), factory)
    index = faiss.IndexIDMap2(base)
    t = time.perf_counter()
    if not index.is_trained:
        index.train(sample)
    log.info("trained %s on %d vectors in %.1f s", factory, len(sample), time.perf_counter() - t)
    for vectors, ids in batches:
        add_vectors(index, vectors, ids)
        log.info("%s: %d vectors added", factory, index.ntotal)
    return _finish(index, factory)


def _build_ivf_gpu(
    base: Any, ivf: Any, sample: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]]
) -> Any:
    """GPU side of :func:`build_index_streaming`: coarse k-means and list assignment on the GPU(s), codes on
    the CPU (faiss clones neither refine wrappers nor HNSW quantizers to the GPU). Needs faiss-gpu; not run
    by the test suite (no GPU in CI)."""
    faiss = _faiss()
    dim = sample.shape[1]
    ngpu = faiss.get_num_gpus()
    log.info("training %d IVF centroids on %d GPU(s)", ivf.nlist, ngpu)
    kmeans = faiss.Kmeans(
        dim, ivf.nlist, niter=ivf.cp.niter, gpu=ngpu, spherical=bool(ivf.cp.spherical), seed=1234
    )
    kmeans.train(sample)
    centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
    ivf.quantizer.add(centroids)  # a trained quantizer holding nlist points: ``train`` keeps it
    base.train(sample)  # the PQ/SQ codebooks (and refine codes), on the CPU
    assign = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(dim))
    assign.add(centroids)
    refine = faiss.downcast_index(base) if isinstance(faiss.downcast_index(base), faiss.IndexRefine) else None
    all_ids: list[np.ndarray] = []
    for vectors, ids in batches:
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        _, lists = assign.search(x, 1)
        lists = np.ascontiguousarray(lists[:, 0], dtype=np.int64)
        seq = np.arange(ivf.ntotal, ivf.ntotal + len(x), dtype=np.int64)
        ivf.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(seq), faiss.swig_ptr(lists))
        if refine is not None:
            refine.refine_index.add(x)
            refine.ntotal = ivf.ntotal
        all_ids.append(np.asarray(ids, dtype=np.int64))
        log.info("GPU assignment: %d vectors added", ivf.ntotal)
    return _wrap_ids(base, np.concatenate(all_ids) if all_ids else np.zeros(0, dtype=np.int64))


def _wrap_ids(base: Any, ids: np.ndarray) -> Any:
    """An ``IndexIDMap2`` over an already filled ``base`` whose rows carry ``ids``."""
    faiss = _faiss()
    ntotal = base.ntotal
    base.ntotal = 0  # the wrapper's constructor wants an empty index
    index = faiss.IndexIDMap2(base)
    base.ntotal = ntotal
    faiss.copy_array_to_vector(np.ascontiguousarray(ids, dtype=np.int64), index.id_map)
    index.ntotal = ntotal
    index.construct_rev_map()
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
    if getattr(base, "hnsw", None) is None and not is_ondisk(factory):
        index.remove_ids(faiss.IDSelectorBatch(ids))
        return index
    # HNSW graphs and on-disk indexes (a refine step cannot remove; SQ8 lists keep a direct map) are rebuilt
    # from the stored vectors (SQ8 copies for on-disk indexes: within 1/255 of each component's range).
    all_ids, vectors = index_vectors(index)
    keep = ~np.isin(all_ids, ids)
    log.info("rebuilding %s without %d vectors", factory, int((~keep).sum()))
    return build_index(vectors[keep], all_ids[keep], factory)


def set_search_params(
    index: Any, *, ef_search: int | None = None, nprobe: int | None = None, k_factor: float | None = None
) -> None:
    """Sets HNSW ``efSearch`` / IVF ``nprobe`` / refine ``k_factor`` on an index, looking through
    ``IndexIDMap`` and refine wrappers."""
    faiss = _faiss()
    inner = faiss.downcast_index(index) if not hasattr(index, "id_map") else index
    while hasattr(inner, "id_map") or isinstance(inner, faiss.IndexRefine | faiss.IndexPreTransform):
        if k_factor and isinstance(inner, faiss.IndexRefine):
            inner.k_factor = float(k_factor)
        inner = faiss.downcast_index(inner.base_index if hasattr(inner, "base_index") else inner.index)
    if ef_search and getattr(inner, "hnsw", None) is not None:
        inner.hnsw.efSearch = int(ef_search)
    if nprobe:
        ivf = faiss.try_extract_index_ivf(inner)
        if ivf is not None:
            ivf.nprobe = int(nprobe)
