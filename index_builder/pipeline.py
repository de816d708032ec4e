"""The ingest pipeline's stages: collect documents, chunk, embed (sorted by length, in large batches),
embed images. Kept free of any file writing so benchmarks can time each stage."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from index_builder.chunking import Chunk, ChunkingConfig, chunk_texts
from index_builder.documents import Document, ImageItem
from index_builder.embedders.base import ImageEmbedder, TextEmbedder, token_offsets
from index_builder.sources.base import Source

log = logging.getLogger(__name__)

#: Texts handed to the encoder per call (it sorts by length inside a call; we sort globally first).
ENCODE_BLOCK_BATCHES = 32


@dataclass
class Collected:
    """What the sources yielded, de-duplicated by id (first wins)."""

    documents: list[Document]
    images: list[ImageItem]
    duplicates: int = 0


def collect(sources: Iterable[Source]) -> Collected:
    """Reads every source; later documents/images with an id already seen are dropped with a warning."""
    docs: dict[str, Document] = {}
    images: dict[str, ImageItem] = {}
    dup = 0
    for source in sources:
        n_docs, n_imgs = len(docs), len(images)
        for doc in source.documents():
            if doc.doc_id in docs:
                dup += 1
                continue
            docs[doc.doc_id] = doc
        for item in source.images():
            if item.image_id in images:
                dup += 1
                continue
            images[item.image_id] = item
        log.info("source %s: %d documents, %d images", source, len(docs) - n_docs, len(images) - n_imgs)
    if dup:
        log.warning(
            "%d duplicate document/image ids skipped (give sources distinct ?name= to keep both)", dup
        )
    return Collected(list(docs.values()), list(images.values()), dup)


def needs_title(title: str | None, chunk_text: str) -> bool:
    """Whether a chunk lacks its document's title near its start (continuation chunks usually do)."""
    if not title:
        return False
    return title.strip().lower() not in chunk_text[: len(title) + 32].lower()


def bm25_text(title: str | None, chunk_text: str) -> str:
    """The text BM25 indexes for a chunk: the chunk, preceded by the title when it lacks it."""
    return f"{title}\n{chunk_text}" if needs_title(title, chunk_text) else chunk_text


def title_prefixes(titles: Sequence[str], embedder: TextEmbedder, budget: int) -> dict[str, str]:
    """Each distinct title cut to at most ``budget`` tokens (the room chunks leave in the encoder input)."""
    distinct = sorted({t for t in titles if t})
    if budget <= 0 or not distinct:
        return {}
    out = {}
    for title, offsets in zip(distinct, token_offsets(embedder, distinct), strict=True):
        out[title] = title if len(offsets) <= budget else title[: offsets[budget - 1][1]]
    return out


@dataclass
class ChunkedDocuments:
    """Documents with their chunks and the strings to embed (chunk text, title-prefixed when needed)."""

    documents: list[Document]
    chunks: list[list[Chunk]]
    embed_texts: list[str]

    @property
    def n_chunks(self) -> int:
        return len(self.embed_texts)


def chunk_documents(
    docs: Sequence[Document], embedder: TextEmbedder, config: ChunkingConfig
) -> ChunkedDocuments:
    """Chunks documents; those without any token are dropped with a warning."""
    per_doc = chunk_texts([d.text for d in docs], embedder, config)
    kept = [(d, c) for d, c in zip(docs, per_doc, strict=True) if c]
    if len(kept) < len(docs):
        log.warning("%d documents without text skipped", len(docs) - len(kept))
    budget = embedder.max_tokens - 2 - config.max_tokens
    prefixes = title_prefixes([d.title for d, _ in kept], embedder, budget)
    texts = []
    for doc, chunks in kept:
        prefix = prefixes.get(doc.title)
        for c in chunks:
            # Whole documents longer than a chunk have no room left for a prefix.
            fits = c.n_tokens <= config.max_tokens
            texts.append(
                f"{prefix}\n{c.text}" if prefix and fits and needs_title(doc.title, c.text) else c.text
            )
    return ChunkedDocuments([d for d, _ in kept], [c for _, c in kept], texts)


def encode_sorted(
    embedder: TextEmbedder, texts: Sequence[str], *, batch_size: int = 64, progress: Any = None
) -> np.ndarray:
    """Encodes ``texts`` longest first in large blocks (less padding), returning rows in input order."""
    n = len(texts)
    out = np.zeros((n, embedder.dim), dtype=np.float32)
    if n == 0:
        return out
    order = np.argsort([-len(t) for t in texts], kind="stable")
    block = max(batch_size * ENCODE_BLOCK_BATCHES, batch_size)
    for start in range(0, n, block):
        idx = order[start : start + block]
        out[idx] = embedder.encode([texts[i] for i in idx], batch_size=batch_size)
        if progress is not None:
            progress.update(len(idx))
    return out


def load_image(path: str, size: int = 512) -> Any:
    """Opens an image as RGB (JPEGs decoded at reduced size when much larger than needed)."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (size, size))
        return im.convert("RGB")


def embed_images(
    items: Sequence[ImageItem], embedder: ImageEmbedder, *, batch_size: int = 32, progress: Any = None
) -> tuple[list[ImageItem], np.ndarray, int]:
    """Embeds images that can be decoded.

    Returns:
        ``(kept items, vectors, number skipped)``.
    """
    kept: list[ImageItem] = []
    vectors: list[np.ndarray] = []
    skipped = 0
    for start in range(0, len(items), batch_size):
        batch_items, pics = [], []
        for item in items[start : start + batch_size]:
            try:
                pics.append(load_image(item.path))
                batch_items.append(item)
            except Exception as exc:  # PIL raises many types for broken files
                skipped += 1
                log.warning("skipping image %s: %s", item.path, exc)
        if pics:
            vectors.append(embedder.encode_images(pics))
            kept.extend(batch_items)
        if progress is not None:
            progress.update(min(batch_size, len(items) - start))
    dim = int(embedder.dim)
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
    return kept, np.ascontiguousarray(matrix, dtype=np.float32), skipped
