"""Building and updating index bundles: :func:`build_bundle`, :func:`add_to_bundle`,
:func:`delete_from_bundle`. Every operation writes a complete new folder and swaps it in atomically
(:mod:`index_builder.atomic`), so readers never see a half-written bundle."""

from __future__ import annotations

import collections
import datetime as _dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from index_builder import faiss_factory, layout, scale, tables
from index_builder.atomic import BundleWriter, bundle_lock, recover
from index_builder.bm25 import build_bm25, build_bm25_streaming
from index_builder.chunking import ChunkingConfig
from index_builder.cross_modal import write_cross_modal
from index_builder.documents import Document, ImageItem
from index_builder.embedders import create_image_embedder, create_text_embedder, describe_text_embedder
from index_builder.errors import SourceError
from index_builder.pipeline import Collected, bm25_text, chunk_documents, collect, embed_images, encode_sorted
from index_builder.scale import ShardSet
from index_builder.sources import Source, create_source
from zebra.errors import ConfigError, NotFoundError

log = logging.getLogger(__name__)

#: A bundle manifest (see docs/index_builder.md).
Manifest = dict[str, Any]

DEFAULT_BATCH_SIZE = 64


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


#: ``show_progress`` of the builders: a tqdm bar (``True``), none (``False``), or a callback
#: ``(stage, done, total)`` (the background build's status file, :mod:`index_builder.background`).
Progress = bool | Callable[[str, int, int], None]


class CallbackBar:
    """A progress "bar" that reports ``(stage, done, total)`` to a callback instead of drawing."""

    def __init__(self, total: int, desc: str, callback: Callable[[str, int, int], None]) -> None:
        self.total, self.desc, self.callback, self.n = total, desc, callback, 0
        callback(desc, 0, total)

    def update(self, n: int = 1) -> None:
        self.n = min(self.total, self.n + n)
        self.callback(self.desc, self.n, self.total)

    def __enter__(self) -> CallbackBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(total: int, desc: str, enabled: Progress) -> Any:
    """A tqdm bar over ``total`` items, a :class:`CallbackBar` when ``enabled`` is a callback, or a no-op
    context when disabled or empty."""
    if callable(enabled) and total:
        return CallbackBar(total, desc, enabled)
    if not enabled or total == 0:
        return nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True)


def _sources(sources: Iterable[str | Source], split: str | None) -> list[Source]:
    out = [s if isinstance(s, Source) else create_source(s, split=split) for s in sources]
    if not out:
        raise ConfigError("No sources given.", hint="Pass at least one --source KIND:PATH.")
    return out


class BundleParts:
    """The tables and indexes of a bundle being written."""

    def __init__(self) -> None:
        self.documents: pa.Table = tables.DOCUMENT_SCHEMA.empty_table()
        self.chunks: pa.Table = tables.CHUNK_SCHEMA.empty_table()
        self.images: pa.Table | None = None
        self.text_index: Any = None
        self.image_index: Any = None


def _embed_new_documents(
    docs: Sequence[Document],
    embedder: Any,
    config: ChunkingConfig,
    first_id: int,
    *,
    batch_size: int,
    show_progress: Progress,
) -> tuple[pa.Table, pa.Table, np.ndarray, np.ndarray]:
    """Chunks and embeds ``docs``: ``(documents table, chunks table, vectors, vector ids)``."""
    chunked = chunk_documents(docs, embedder, config)
    log.info("%d documents -> %d chunks", len(chunked.documents), chunked.n_chunks)
    with progress_bar(chunked.n_chunks, "embedding chunks", show_progress) as bar:
        vectors = encode_sorted(embedder, chunked.embed_texts, batch_size=batch_size, progress=bar)
    doc_table = pa.Table.from_pylist(tables.document_rows(chunked.documents), schema=tables.DOCUMENT_SCHEMA)
    chunk_table = pa.Table.from_pylist(
        tables.chunk_rows(chunked.documents, chunked.chunks, first_id), schema=tables.CHUNK_SCHEMA
    )
    ids = np.arange(first_id, first_id + chunked.n_chunks, dtype=np.int64)
    return doc_table, chunk_table, vectors, ids


def _embed_documents_to_shards(
    docs: Sequence[Document],
    embedder: Any,
    spec: str,
    config: ChunkingConfig,
    out: Path,
    *,
    engine: str,
    batch_size: int,
    shard_size: int,
    ray_address: str | None,
    ray_cpus: int | None,
    show_progress: Progress,
) -> tuple[pa.Table, pa.Table, ShardSet, np.ndarray]:
    """:func:`_embed_new_documents` for corpus scale: the vectors go to shards on disk (:mod:`index_builder.scale`),
    embedded in this process or by Ray tasks."""
    chunked = chunk_documents(docs, embedder, config)
    log.info("%d documents -> %d chunks (%s engine)", len(chunked.documents), chunked.n_chunks, engine)
    directory = scale.shard_dir(out)
    try:
        with progress_bar(chunked.n_chunks, "embedding chunks", show_progress) as bar:
            shards = scale.embed_to_shards(
                chunked.embed_texts,
                spec,
                directory,
                int(embedder.dim),
                engine=engine,
                shard_size=shard_size,
                batch_size=batch_size,
                ray_address=ray_address,
                ray_cpus=ray_cpus,
                progress=bar.update if bar is not None else None,
            )
    except BaseException:
        scale.remove_shards(directory)
        raise
    doc_table = pa.Table.from_pylist(tables.document_rows(chunked.documents), schema=tables.DOCUMENT_SCHEMA)
    chunk_table = pa.Table.from_pylist(
        tables.chunk_rows(chunked.documents, chunked.chunks, 0), schema=tables.CHUNK_SCHEMA
    )
    return doc_table, chunk_table, shards, np.arange(chunked.n_chunks, dtype=np.int64)


def _embed_new_images(
    items: Sequence[ImageItem], embedder: Any, first_id: int, *, show_progress: Progress
) -> tuple[pa.Table, np.ndarray, np.ndarray, int]:
    with progress_bar(len(items), "embedding images", show_progress) as bar:
        kept, vectors, skipped = embed_images(items, embedder, progress=bar)
    ids = np.arange(first_id, first_id + len(kept), dtype=np.int64)
    table = pa.Table.from_pylist(tables.image_rows(kept, ids.tolist()), schema=tables.IMAGE_SCHEMA)
    return table, vectors, ids, skipped


def _counts(parts: BundleParts, skipped_images: int = 0) -> dict[str, Any]:
    docs = parts.documents
    chunk_kinds = collections.Counter(parts.chunks.column("kind").to_pylist())
    images = parts.images
    return {
        "documents": docs.num_rows,
        "chunks": parts.chunks.num_rows,
        "images": images.num_rows if images is not None else 0,
        "by_source": dict(sorted(collections.Counter(docs.column("source").to_pylist()).items())),
        "by_kind": dict(sorted(collections.Counter(docs.column("kind").to_pylist()).items())),
        "chunks_by_kind": dict(sorted(chunk_kinds.items())),
        "images_by_source": dict(
            sorted(collections.Counter(images.column("source").to_pylist()).items())
            if images is not None
            else []
        ),
        "images_skipped": skipped_images,
    }


def _index_entry(
    index: Any, factory: str, file: str, dim: int, previous: dict | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = dict(faiss_factory.default_search_params(factory))
    if previous:
        params.update({k: previous[k] for k in ("ef_search", "nprobe", "k_factor") if k in previous})
    if faiss_factory.is_ondisk(factory):
        params["mmap"] = True  # Bundle reads it memory-mapped (faiss_factory.mmap_flags)
    return {
        "factory": factory,
        "metric": "ip",
        "ntotal": int(index.ntotal),
        "dim": dim,
        "file": file,
        **params,
    }


def write_parts(
    writer: BundleWriter,
    parts: BundleParts,
    *,
    write_images: bool = True,
    previous: Path | None = None,
) -> dict[str, Any]:
    """Writes tables, FAISS indexes and BM25 into the writer's folder; returns the BM25 manifest entry."""
    import faiss

    tables.write_table(parts.documents, tables.DOCUMENT_SCHEMA, writer.path(layout.DOCUMENTS))
    tables.write_table(parts.chunks, tables.CHUNK_SCHEMA, writer.path(layout.CHUNKS))
    faiss.write_index(parts.text_index, str(writer.path(layout.TEXT_INDEX)))
    if parts.images is not None:
        if write_images or previous is None:
            tables.write_table(parts.images, tables.IMAGE_SCHEMA, writer.path(layout.IMAGES))
            faiss.write_index(parts.image_index, str(writer.path(layout.IMAGE_INDEX)))
        else:
            writer.link_from(previous, layout.IMAGES)
            writer.link_from(previous, layout.IMAGE_INDEX)
    chunks = parts.chunks
    ids = chunks.column("vector_id").to_numpy()
    if chunks.num_rows >= BM25_STREAM_MIN:
        # corpus scale: bm25s's own index() would hold every chunk's token list as Python objects
        return build_bm25_streaming(_bm25_batches(chunks), ids, writer.path(layout.BM25_DIR))
    texts = [
        bm25_text(t, x)
        for t, x in zip(chunks.column("title").to_pylist(), chunks.column("text").to_pylist(), strict=True)
    ]
    return build_bm25(texts, ids.tolist(), writer.path(layout.BM25_DIR))


#: From this many chunks on, BM25 is built batch by batch (:func:`index_builder.bm25.build_bm25_streaming`).
BM25_STREAM_MIN = 500_000


def _bm25_batches(chunks: pa.Table, size: int = 100_000) -> Iterable[list[str]]:
    for start in range(0, chunks.num_rows, size):
        part = chunks.slice(start, size)
        yield [
            bm25_text(t, x)
            for t, x in zip(part.column("title").to_pylist(), part.column("text").to_pylist(), strict=True)
        ]


def build_bundle(
    out: str | Path,
    sources: Iterable[str | Source],
    *,
    text_embedder: str = "builtin",
    image_embedder: str = "builtin",
    factory: str | None = None,
    image_factory: str | None = None,
    gpu: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    store: Any = None,
    chunking: ChunkingConfig | None = None,
    split: str | None = None,
    show_progress: Progress = False,
    engine: str = "local",
    memory_budget: int | None = None,
    shard_size: int = scale.DEFAULT_SHARD_SIZE,
    ray_address: str | None = None,
    ray_cpus: int | None = None,
) -> Manifest:
    """Builds a bundle at ``out`` from ``sources``, replacing any bundle there atomically.

    Args:
        out: Bundle folder.
        sources: Source specs (``"medpix:/data/medpix-2.0?split=train"``, ``"hpo"``...) or :class:`Source`\\ s.
        text_embedder: Text embedder spec.
        image_embedder: Image embedder spec (used only when a source yields images).
        factory: FAISS factory for the text index (default: by size, see :func:`faiss_factory.choose_factory`).
        image_factory: FAISS factory for the image index (default: by size).
        gpu: Build Flat/IVF indexes on the GPU(s) (needs faiss-gpu); the written index is always CPU.
        batch_size: Encoder batch size.
        store: A ``store.Store`` to register documents and chunks in (optional).
        chunking: Chunk size/overlap (default 200/40 tokens).
        split: ``train``/``dev``/``all`` for sources that take a split and did not set one.
        show_progress: Show tqdm progress bars, or report ``(stage, done, total)`` to this callback.
        engine: ``local`` or ``ray``: with ``ray`` (or with a ``memory_budget``) chunk vectors are embedded in
            shards on disk, by Ray tasks or here, and merged into the index shard by shard
            (:mod:`index_builder.scale`).
        memory_budget: Bytes the text index may hold in memory; above it (a flat float32 copy being larger) the
            default factory is the on-disk one, memory-mapped at search time (:func:`faiss_factory.choose_factory`).
        shard_size: Chunks per shard (one Ray task each).
        ray_address: Ray cluster address (``auto``: the running cluster; default: a local Ray).
        ray_cpus: CPUs of a local Ray (default: all).

    Returns:
        The manifest written.

    Raises:
        ZebraError subclasses for bad specs, unreadable sources, a locked bundle or a missing GPU.
    """
    t0 = time.perf_counter()
    out = Path(out).expanduser().resolve()
    engine = scale.check_engine(engine)
    sharded = engine != "local" or memory_budget is not None
    if gpu:
        faiss_factory.check_gpu()
    srcs = _sources(sources, split)
    temb = create_text_embedder(text_embedder)
    config = (chunking or ChunkingConfig()).validate(temb)
    with bundle_lock(out):
        recover(out)
        got: Collected = collect(srcs)
        if not got.documents and not got.images:
            raise SourceError(
                "The sources yielded no documents and no images.",
                hint="Check the paths and options of --source.",
            )
        parts = BundleParts()
        t_embed = time.perf_counter()
        if sharded:
            parts.documents, parts.chunks, shards, ids = _embed_documents_to_shards(
                got.documents,
                temb,
                text_embedder,
                config,
                out,
                engine=engine,
                batch_size=batch_size,
                shard_size=shard_size,
                ray_address=ray_address,
                ray_cpus=ray_cpus,
                show_progress=show_progress,
            )
            embed_s = time.perf_counter() - t_embed
            text_factory = factory or faiss_factory.choose_factory(len(ids), temb.dim, memory_budget)
            try:
                parts.text_index = scale.index_from_shards(shards, ids, text_factory, gpu=gpu)
            finally:
                scale.remove_shards(shards)
        else:
            parts.documents, parts.chunks, vectors, ids = _embed_new_documents(
                got.documents, temb, config, 0, batch_size=batch_size, show_progress=show_progress
            )
            embed_s = time.perf_counter() - t_embed
            text_factory = factory or faiss_factory.choose_factory(len(ids), temb.dim)
            parts.text_index = faiss_factory.build_index(vectors, ids, text_factory, gpu=gpu)
            del vectors
        image_block, image_entry, skipped, n_img_ids = None, None, 0, 0
        if got.images:
            iemb = create_image_embedder(image_embedder)
            parts.images, ivecs, iids, skipped = _embed_new_images(
                got.images, iemb, 0, show_progress=show_progress
            )
            img_factory = image_factory or faiss_factory.choose_factory(len(iids), iemb.dim)
            parts.image_index = faiss_factory.build_index(ivecs, iids, img_factory, gpu=gpu)
            image_block = describe_image_embedder(iemb, image_embedder)
            image_entry = _index_entry(parts.image_index, img_factory, layout.IMAGE_INDEX, int(iemb.dim))
            n_img_ids = len(iids)
        with BundleWriter(out) as writer:
            bm25_entry = write_parts(writer, parts)
            cross = None
            if image_block is not None:
                cross = write_cross_modal(writer, parts.chunks, parts.images, image_block, lambda: iemb)
            manifest: Manifest = {
                "format_version": layout.FORMAT_VERSION,
                "created_at": _now(),
                "updated_at": _now(),
                "text_embedder": describe_text_embedder(temb, text_embedder),
                "image_embedder": image_block,
                "chunking": {
                    "max_tokens": config.max_tokens,
                    "overlap": config.overlap,
                    "title_prefix": True,
                },
                "text_index": _index_entry(parts.text_index, text_factory, layout.TEXT_INDEX, int(temb.dim)),
                "image_index": image_entry,
                "cross_modal": cross,
                "bm25": bm25_entry,
                "counts": _counts(parts, skipped),
                "sources": [str(s) for s in srcs],
                "next_vector_id": {"text": len(ids), "image": int(n_img_ids)},
                "build": {
                    "seconds": round(time.perf_counter() - t0, 2),
                    "embed_seconds": round(embed_s, 2),
                    "gpu": bool(gpu),
                    "batch_size": batch_size,
                    "engine": engine,
                    **({"shard_size": shard_size} if sharded else {}),
                    **({"memory_budget": int(memory_budget)} if memory_budget is not None else {}),
                },
            }
            manifest = writer.publish(manifest)
    log.info("built %s: %s in %.1f s", out, manifest["counts"], time.perf_counter() - t0)
    if store is not None:
        _register(store, out, manifest, parts)
    return manifest


def describe_image_embedder(embedder: Any, spec: str) -> dict[str, Any]:
    """The manifest's ``image_embedder`` block for ``embedder`` created from ``spec``."""
    describe = getattr(embedder, "describe", None)
    if callable(describe):
        return describe()
    return {
        "spec": spec,
        "name": embedder.name,
        "dim": int(embedder.dim),
        "arch": getattr(embedder, "arch", None),
        "checkpoint_sha256": getattr(embedder, "checkpoint_sha256", None),
        "seeded_random": bool(getattr(embedder, "seeded_random", False)),
    }


def load_parts(bundle: Any) -> BundleParts:
    """The tables and indexes of an open :class:`~index_builder.bundle.Bundle`, to change and write anew."""
    parts = BundleParts()
    parts.documents = tables.read_table(bundle.path / layout.DOCUMENTS)
    parts.chunks = tables.read_table(bundle.path / layout.CHUNKS)
    parts.text_index = bundle.index_copy("text") if _mapped(bundle, "text") else bundle.text_index
    if bundle.manifest.get("image_index"):
        parts.images = tables.read_table(bundle.path / layout.IMAGES)
        parts.image_index = bundle.index_copy("image") if _mapped(bundle, "image") else bundle.image_index
    return parts


def _mapped(bundle: Any, name: str) -> bool:
    return bool((bundle.manifest.get(f"{name}_index") or {}).get("mmap"))


def _filter(table: pa.Table, column: str, drop: set[str]) -> tuple[pa.Table, pa.Table]:
    """``(kept rows, dropped rows)`` of ``table`` by membership of ``column`` in ``drop``."""
    import pyarrow.compute as pc

    mask = pc.is_in(table.column(column), value_set=pa.array(sorted(drop), type=pa.string()))
    return table.filter(pc.invert(mask)), table.filter(mask)


def _next_id(manifest: Manifest, key: str, table: pa.Table | None) -> int:
    stored = int((manifest.get("next_vector_id") or {}).get(key, 0))
    if table is not None and table.num_rows:
        stored = max(stored, int(np.max(table.column("vector_id").to_numpy())) + 1)
    return stored


def add_to_bundle(
    path: str | Path,
    sources: Iterable[str | Source],
    *,
    image_embedder: str = "builtin",
    batch_size: int = DEFAULT_BATCH_SIZE,
    split: str | None = None,
    store: Any = None,
    show_progress: Progress = False,
) -> Manifest:
    """Adds (or replaces, by id) the documents and images of ``sources`` in an existing bundle.

    The bundle's own text embedder, chunking and FAISS factory are kept; new vectors get fresh ids.
    Documents whose ``doc_id`` is already present replace the old ones.

    Raises:
        BundleNotFoundError / IndexIntegrityError: No (valid) bundle at ``path``.
    """
    from index_builder.bundle import Bundle

    t0 = time.perf_counter()
    out = Path(path).expanduser().resolve()
    srcs = _sources(sources, split)
    with bundle_lock(out):
        recover(out)
        bundle = Bundle.open(out)
        manifest = dict(bundle.manifest)
        got = collect(srcs)
        if not got.documents and not got.images:
            raise SourceError(
                "The sources yielded nothing to add.", hint="Check the paths and options of --source."
            )
        parts = load_parts(bundle)
        new_doc_ids = {d.doc_id for d in got.documents}
        parts.documents, _ = _filter(parts.documents, "doc_id", new_doc_ids)
        parts.chunks, replaced = _filter(parts.chunks, "doc_id", new_doc_ids)
        text_factory = manifest["text_index"]["factory"]
        parts.text_index = faiss_factory.remove_vectors(
            parts.text_index, replaced.column("vector_id").to_numpy(), text_factory
        )
        if got.documents:
            temb = bundle.text_embedder()
            c = manifest.get("chunking") or {}
            config = ChunkingConfig(int(c.get("max_tokens", 200)), int(c.get("overlap", 40))).validate(temb)
            first = _next_id(manifest, "text", tables.concat([parts.chunks, replaced], tables.CHUNK_SCHEMA))
            new_docs, new_chunks, vectors, ids = _embed_new_documents(
                got.documents, temb, config, first, batch_size=batch_size, show_progress=show_progress
            )
            faiss_factory.add_vectors(parts.text_index, vectors, ids)
            _record_added_backend(manifest, temb)
            parts.documents = tables.concat([parts.documents, new_docs], tables.DOCUMENT_SCHEMA)
            parts.chunks = tables.concat([parts.chunks, new_chunks], tables.CHUNK_SCHEMA)
            manifest["next_vector_id"] = {**manifest.get("next_vector_id", {}), "text": first + len(ids)}
            if parts.text_index.ntotal >= faiss_factory.FLAT_MAX and text_factory == "Flat":
                log.info(
                    "the text index now holds %d vectors; `zebra index build` would pick an ANN index",
                    parts.text_index.ntotal,
                )
        skipped = int(manifest.get("counts", {}).get("images_skipped", 0))
        if got.images:
            skipped += _add_images(parts, manifest, got.images, image_embedder, show_progress)
        with BundleWriter(out) as writer:
            manifest["bm25"] = write_parts(writer, parts, write_images=bool(got.images), previous=out)
            _write_cross_modal(writer, parts, manifest, bundle)
            refresh_manifest(manifest, parts, skipped, added=[str(s) for s in srcs])
            manifest = writer.publish(manifest)
    log.info("added to %s in %.1f s: %s", out, time.perf_counter() - t0, manifest["counts"])
    if store is not None:
        _register(store, out, manifest, parts)
    return manifest


def _add_images(
    parts: BundleParts,
    manifest: Manifest,
    items: list[ImageItem],
    image_embedder: str,
    show_progress: Progress,
) -> int:
    info = manifest.get("image_embedder") or {}
    iemb = create_image_embedder(info.get("spec") or image_embedder)
    new_ids = {it.image_id for it in items}
    if parts.images is not None:
        parts.images, replaced = _filter(parts.images, "image_id", new_ids)
        factory = manifest["image_index"]["factory"]
        parts.image_index = faiss_factory.remove_vectors(
            parts.image_index, replaced.column("vector_id").to_numpy(), factory
        )
    first = _next_id(manifest, "image", parts.images)
    table, vectors, ids, skipped = _embed_new_images(items, iemb, first, show_progress=show_progress)
    if parts.images is None:
        factory = faiss_factory.choose_factory(len(ids), iemb.dim)
        parts.image_index = faiss_factory.build_index(vectors, ids, factory)
        parts.images = table
        manifest["image_embedder"] = describe_image_embedder(iemb, image_embedder)
        manifest["image_index"] = _index_entry(parts.image_index, factory, layout.IMAGE_INDEX, int(iemb.dim))
    else:
        faiss_factory.add_vectors(parts.image_index, vectors, ids)
        parts.images = tables.concat([parts.images, table], tables.IMAGE_SCHEMA)
    manifest["next_vector_id"] = {**manifest.get("next_vector_id", {}), "image": first + len(ids)}
    return skipped


def _write_cross_modal(writer: BundleWriter, parts: BundleParts, manifest: Manifest, previous: Any) -> None:
    """Refreshes the precomputed cross-modal indexes of an updated bundle (reusing the previous vectors)."""
    block = manifest.get("image_embedder")
    if not block or not manifest.get("image_index") or parts.images is None:
        manifest.pop("cross_modal", None)
        return
    manifest["cross_modal"] = write_cross_modal(
        writer,
        parts.chunks,
        parts.images,
        block,
        lambda: create_image_embedder(block["spec"]),
        previous=previous,
    )


def _record_added_backend(manifest: Manifest, embedder: Any) -> None:
    """Records in the manifest when added vectors come from another backend than the bundle's own (an onnx query
    encoder adding to a torch-built bundle: the two agree to cosine >= 0.99, docs/encoders.md, but the manifest must
    say what computed its vectors)."""
    info = dict(manifest.get("text_embedder") or {})
    backend = str(getattr(embedder, "backend", "torch"))
    if backend == str(info.get("backend", "torch")):
        return
    info["added_with"] = sorted({*info.get("added_with", []), backend})
    manifest["text_embedder"] = info
    log.info(
        "vectors added with the %s backend to a %s bundle (recorded in the manifest)",
        backend,
        info.get("backend", "torch"),
    )


def refresh_manifest(manifest: Manifest, parts: BundleParts, skipped: int, added: Sequence[str] = ()) -> None:
    """Updates the time stamp, counts, index entries and sources of ``manifest`` after a change."""
    manifest["updated_at"] = _now()
    manifest["counts"] = _counts(parts, skipped)
    manifest["text_index"] = _index_entry(
        parts.text_index,
        manifest["text_index"]["factory"],
        layout.TEXT_INDEX,
        int(manifest["text_index"].get("dim") or parts.text_index.d),
        manifest["text_index"],
    )
    if parts.images is not None and manifest.get("image_index"):
        manifest["image_index"] = _index_entry(
            parts.image_index,
            manifest["image_index"]["factory"],
            layout.IMAGE_INDEX,
            int(manifest["image_index"].get("dim") or parts.image_index.d),
            manifest["image_index"],
        )
    manifest["sources"] = list(dict.fromkeys([*manifest.get("sources", []), *added]))


def delete_from_bundle(path: str | Path, doc_ids: Iterable[str], *, store: Any = None) -> Manifest:
    """Removes documents (by ``doc_id``) and images (by ``image_id``) from a bundle.

    Raises:
        NotFoundError: When none of the ids is in the bundle.
    """
    from index_builder.bundle import Bundle

    out = Path(path).expanduser().resolve()
    wanted = {str(d) for d in doc_ids}
    if not wanted:
        raise ConfigError("No ids to delete.", hint="Pass --doc-id ID (repeatable).")
    with bundle_lock(out):
        recover(out)
        bundle = Bundle.open(out)
        manifest = dict(bundle.manifest)
        parts = load_parts(bundle)
        parts.documents, gone_docs = _filter(parts.documents, "doc_id", wanted)
        parts.chunks, gone_chunks = _filter(parts.chunks, "doc_id", wanted)
        parts.text_index = faiss_factory.remove_vectors(
            parts.text_index, gone_chunks.column("vector_id").to_numpy(), manifest["text_index"]["factory"]
        )
        gone_images = 0
        if parts.images is not None:
            parts.images, dropped = _filter(parts.images, "image_id", wanted)
            gone_images = dropped.num_rows
            if gone_images:
                parts.image_index = faiss_factory.remove_vectors(
                    parts.image_index,
                    dropped.column("vector_id").to_numpy(),
                    manifest["image_index"]["factory"],
                )
        found = set(gone_docs.column("doc_id").to_pylist())
        if not found and not gone_images:
            raise NotFoundError(
                f"None of the ids {sorted(wanted)[:5]} is in the bundle {out}.",
                hint="List ids with `zebra index info OUT --ids` or check documents.parquet.",
            )
        missing = wanted - found
        if missing and not gone_images:
            log.warning("ids not in the bundle: %s", sorted(missing)[:10])
        with BundleWriter(out) as writer:
            manifest["bm25"] = write_parts(writer, parts, write_images=bool(gone_images), previous=out)
            _write_cross_modal(writer, parts, manifest, bundle)
            refresh_manifest(manifest, parts, int(manifest.get("counts", {}).get("images_skipped", 0)))
            manifest = writer.publish(manifest)
    log.info("deleted %d documents and %d images from %s", len(found), gone_images, out)
    if store is not None:
        from index_builder.store_sync import unregister_documents

        unregister_documents(store, out, sorted(found))
    return manifest


def _register(store: Any, out: Path, manifest: Manifest, parts: BundleParts) -> None:
    from index_builder.store_sync import register_bundle

    register_bundle(store, out, manifest, parts.documents, parts.chunks)
