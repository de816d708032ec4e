"""Corpus-scale indexing: chunk embeddings computed in shards (in this process or as Ray tasks), written as
``.npy`` files, then merged into one FAISS index by streaming the shards (:func:`index_from_shards`).

``zebra index build --engine ray`` uses this: the driver chunks the documents (cheap), cuts the chunk texts
into shards of ``shard_size``, and runs one Ray task per shard (each task creates the text embedder from its
spec once per worker process and encodes its shard longest first). Vectors come back through Ray's object
store, so workers need no shared file system; the driver writes each shard as it arrives, keeping at most
``2 x workers`` shards in flight. Shards live in ``OUT.tmp-shards-<random>`` beside the bundle: removed after
the merge, and by the next build's :func:`index_builder.atomic.recover` when a crash leaves them behind. The
bundle itself is still written by :class:`index_builder.atomic.BundleWriter`, so a crash at any point leaves
the previous bundle in place.

The merge trains the index on a sample drawn from every shard (:func:`ShardSet.sample`), then adds the shards
one after another: memory holds the index being built and one shard.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index_builder import faiss_factory
from zebra.config import ray_init_kwargs
from zebra.errors import ConfigError

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("local", "ray")
#: Chunk texts per shard (one Ray task each).
DEFAULT_SHARD_SIZE = 20_000


@dataclass
class ShardSet:
    """Vector shards on disk, in row order: ``files[i]`` holds rows ``offsets[i] .. offsets[i + 1]``."""

    directory: Path
    dim: int
    files: list[Path] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Rows in all shards."""
        return int(sum(self.sizes))

    def write(self, index: int, vectors: np.ndarray) -> None:
        """Writes shard ``index`` (``.npy``, float32), keeping :attr:`files` in shard order."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"shard {index} has shape {vectors.shape}, expected (*, {self.dim})")
        path = self.directory / f"shard-{index:06d}.npy"
        np.save(path, vectors, allow_pickle=False)
        while len(self.files) <= index:
            self.files.append(Path())
            self.sizes.append(0)
        self.files[index], self.sizes[index] = path, len(vectors)

    def batches(self, ids: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(vectors, ids)`` per shard, ``ids`` cut along the shards."""
        start = 0
        for path, size in zip(self.files, self.sizes, strict=True):
            yield np.load(path, allow_pickle=False), ids[start : start + size]
            start += size

    def sample(self, m: int, seed: int = 0) -> np.ndarray:
        """``m`` rows drawn uniformly from all shards (reading only those rows)."""
        n = self.n
        m = min(m, n)
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
        out = np.empty((m, self.dim), dtype=np.float32)
        start, done = 0, 0
        for path, size in zip(self.files, self.sizes, strict=True):
            lo, hi = np.searchsorted(rows, [start, start + size])
            if hi > lo:
                shard = np.load(path, mmap_mode="r", allow_pickle=False)
                out[done : done + hi - lo] = shard[rows[lo:hi] - start]
                done += hi - lo
            start += size
        return out


def shard_dir(out: Path) -> Path:
    """A fresh scratch folder for the shards of the bundle at ``out`` (``recover`` removes leftovers)."""
    path = out.parent / f"{out.name}.tmp-shards-{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    return path


def _embed_shard(spec: str, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """One shard's vectors (runs in a Ray worker or in this process)."""
    from index_builder.embedders import create_text_embedder
    from index_builder.pipeline import encode_sorted

    return encode_sorted(create_text_embedder(spec), list(texts), batch_size=batch_size)


def check_engine(engine: str) -> str:
    """The engine name, lower-cased.

    Raises:
        ConfigError: For an unknown engine, or ``ray`` when ray is not installed.
    """
    engine = str(engine).strip().lower()
    if engine not in ENGINES:
        raise ConfigError(f"Unknown build engine {engine!r}.", hint=f"Use one of: {', '.join(ENGINES)}.")
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "The Ray build engine needs the 'ray' package.",
                hint="Install it with: pip install 'zebra-dx[ray]', or use --engine local.",
            ) from exc
    return engine


def embed_to_shards(
    texts: Sequence[str],
    spec: str,
    directory: Path,
    dim: int,
    *,
    engine: str = "local",
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 64,
    ray_address: str | None = None,
    ray_cpus: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ShardSet:
    """Embeds ``texts`` with the text embedder ``spec`` into shards under ``directory``.

    Args:
        texts: Chunk texts (as the pipeline embeds them), in row order.
        spec: Text embedder spec, created in each worker.
        directory: Where the shards go (see :func:`shard_dir`).
        dim: The embedder's dimension.
        engine: ``local`` (this process, shard after shard) or ``ray`` (one task per shard).
        shard_size: Texts per shard.
        batch_size: Encoder batch size.
        ray_address: Ray cluster address (``None``: start a local Ray, ``auto``: the running cluster).
        ray_cpus: CPUs of a local Ray (``None``: all).
        progress: Called with the number of texts of each finished shard.
    """
    engine = check_engine(engine)
    shards = ShardSet(Path(directory), int(dim))
    bounds = [(s, min(s + shard_size, len(texts))) for s in range(0, len(texts), max(1, shard_size))]
    t0 = time.perf_counter()
    if engine == "local":
        for i, (lo, hi) in enumerate(bounds):
            shards.write(i, _embed_shard(spec, texts[lo:hi], batch_size))
            if progress:
                progress(hi - lo)
    else:
        _embed_ray(texts, spec, bounds, shards, batch_size, ray_address, ray_cpus, progress)
    log.info(
        "%d texts embedded in %d shards (%s engine) in %.1f s",
        len(texts),
        len(bounds),
        engine,
        time.perf_counter() - t0,
    )
    return shards


def _embed_ray(
    texts: Sequence[str],
    spec: str,
    bounds: list[tuple[int, int]],
    shards: ShardSet,
    batch_size: int,
    ray_address: str | None,
    ray_cpus: int | None,
    progress: Callable[[int], None] | None,
) -> None:
    import ray

    started_here = False
    if not ray.is_initialized():
        # never join a Ray another program started on this machine unless asked to
        ray.init(**ray_init_kwargs(ray_address, ray_cpus, default_address="local"))
        started_here = True
    try:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(num_cpus=1, max_retries=2)(_embed_shard)
        pending: dict[Any, tuple[int, int]] = {}
        todo = list(enumerate(bounds))
        while todo or pending:
            while todo and len(pending) < 2 * workers:
                i, (lo, hi) = todo.pop(0)
                pending[remote.remote(spec, list(texts[lo:hi]), batch_size)] = (i, hi - lo)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i, size = pending.pop(ref)
                shards.write(i, ray.get(ref))
                if progress:
                    progress(size)
    finally:
        if started_here:
            ray.shutdown()


def index_from_shards(
    shards: ShardSet, ids: np.ndarray, factory: str, *, gpu: bool = False, seed: int = 0
) -> Any:
    """Merges the shards into one ``IndexIDMap2`` over ``factory`` (trained on a sample of all shards)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) != shards.n:
        raise ValueError(f"{len(ids)} ids for {shards.n} vectors")
    sample = shards.sample(faiss_factory.train_sample_size(shards.n, factory), seed=seed)
    return faiss_factory.build_index_streaming(sample, shards.batches(ids), factory, gpu=gpu)


def remove_shards(shards: ShardSet | Path | None) -> None:
    """Removes a shard folder (best effort)."""
    if shards is None:
        return
    path = shards.directory if isinstance(shards, ShardSet) else Path(shards)
    shutil.rmtree(path, ignore_errors=True)
