"""Precomputed cross-modal vectors: the bundle's text chunks and image captions embedded by the image
embedder's *text tower* (``clip_text.faiss``, ``clip_captions.faiss``).

Image -> text search compares a query image with the chunks in the image embedder's space, and text ->
image search ranks images by their captions in that space. Those text vectors are a function of the bundle
only, so :func:`build_bundle <index_builder.build.build_bundle>`, ``add_to_bundle`` and
``delete_from_bundle`` compute them once (only for chunks and captions that are new) instead of every
search process embedding the corpus at its first cross-modal query. :func:`add_cross_modal` upgrades a
bundle written before these files existed.

Both files are ``IndexIDMap2`` over ``Flat`` (inner product of L2-normalised vectors), ids = chunk / image
``vector_id``, listed in the manifest's ``files`` with their SHA-256 like every other bundle file. The
manifest block ``cross_modal`` records the files and the image embedder (spec, checkpoint SHA-256) they
were made with. Readers (:meth:`index_builder.bundle.Bundle.cross_modal_vectors`) fall back to embedding at
run time, with a logged warning, when the block is missing or the image embedder has changed since.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from index_builder import faiss_factory, layout
from index_builder.vectors import normalise

log = logging.getLogger(__name__)

#: Texts per text-tower call (the reader's on-the-fly path uses the same batches).
BATCH = 256
#: Manifest block name.
MANIFEST_KEY = "cross_modal"
#: ``kind`` -> (file, table it indexes).
PARTS: dict[str, tuple[str, str]] = {
    "chunks": (layout.CLIP_TEXT_INDEX, "chunks"),
    "captions": (layout.CLIP_CAPTION_INDEX, "images"),
}


def embed_texts(embedder: Any, texts: Sequence[str], *, batch_size: int = BATCH) -> np.ndarray:
    """``(n, dim)`` L2-normalised text-tower vectors of ``texts``, in batches of ``batch_size``."""
    dim = int(embedder.dim)
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    return normalise(
        np.concatenate(
            [
                np.asarray(embedder.encode_texts(list(texts[s : s + batch_size])), dtype=np.float32)
                for s in range(0, len(texts), batch_size)
            ]
        )
    )


def chunk_texts(chunks: Any) -> tuple[np.ndarray, list[str]]:
    """``(vector_ids, texts)`` of the chunks (a pyarrow table or a DataFrame): the stored chunk text,
    which is what the image -> text search embeds."""
    ids, texts = _columns(chunks, "text")
    return ids, ["" if t is None else str(t) for t in texts]


def caption_texts(images: Any) -> tuple[np.ndarray, list[str]]:
    """``(vector_ids, captions)`` of the images with a non-blank caption (stripped)."""
    if images is None:
        return np.zeros(0, dtype=np.int64), []
    ids, caps = _columns(images, "caption")
    stripped = ["" if c is None else str(c).strip() for c in caps]
    keep = [i for i, c in enumerate(stripped) if c]
    return ids[keep], [stripped[i] for i in keep]


def _columns(table: Any, column: str) -> tuple[np.ndarray, list[Any]]:
    if hasattr(table, "column_names"):  # pyarrow
        if column not in table.column_names:
            return np.zeros(0, dtype=np.int64), []
        ids = np.asarray(table.column("vector_id").to_numpy(), dtype=np.int64)
        return ids, table.column(column).to_pylist()
    if column not in table.columns:
        return np.zeros(0, dtype=np.int64), []
    ids = (
        table["vector_id"].to_numpy(dtype=np.int64)
        if "vector_id" in table.columns
        else table.index.to_numpy(dtype=np.int64)
    )
    return ids, table[column].tolist()


def refresh_index(
    previous: Any | None,
    ids: np.ndarray,
    texts: Sequence[str],
    embedder: Callable[[], Any],
    dim: int,
) -> tuple[Any, int]:
    """An ``IndexIDMap2,Flat`` holding a vector for every id of ``ids``, in that order.

    Vectors already in ``previous`` are reused (a vector id never changes its text: a replaced document
    gets fresh ids); the others are embedded with ``embedder()`` (called only when something is missing).
    ``dim`` is the embedder's dimension.

    Returns:
        ``(index, number of texts embedded)``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    have = np.zeros(len(ids), dtype=bool)
    reused: np.ndarray | None = None
    if previous is not None and previous.ntotal and len(ids):
        old_ids, old_vectors = faiss_factory.index_vectors(previous)
        order = np.argsort(old_ids, kind="stable")
        sorted_ids = old_ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
        have = sorted_ids[pos] == ids
        reused = old_vectors[order][pos[have]]
    missing = np.flatnonzero(~have)
    vectors = np.zeros((len(ids), int(dim)), dtype=np.float32)
    if reused is not None and len(reused):
        vectors[have] = reused
    if len(missing):
        vectors[missing] = embed_texts(embedder(), [texts[i] for i in missing])
    return faiss_factory.build_index(vectors, ids, "Flat"), len(missing)


def write_cross_modal(
    writer: Any,
    chunks: Any,
    images: Any,
    image_block: dict[str, Any],
    embedder: Callable[[], Any],
    *,
    previous: Any | None = None,
) -> dict[str, Any]:
    """Computes (or refreshes) both indexes and writes them into a :class:`~index_builder.atomic.BundleWriter`.

    Args:
        writer: The bundle writer.
        chunks: The bundle's chunk table. images: Its image table (``None``: no captions).
        image_block: The manifest's ``image_embedder`` block (recorded, to detect a changed embedder).
        embedder: Returns the image embedder (called only when something must be embedded).
        previous: The previous bundle (:class:`~index_builder.bundle.Bundle`), whose vectors are reused when
            its block was made by the same image embedder.

    Returns:
        The manifest block ``cross_modal``.
    """
    import faiss

    t0 = time.perf_counter()
    before = previous.manifest.get(MANIFEST_KEY) if previous is not None else None
    reuse = same_embedder(before, image_block)
    made_by = dict(before["embedder"]) if reuse and before else describe(None, image_block)
    used: list[Any] = []

    def get_embedder() -> Any:
        if not used:
            used.append(embedder())
        return used[0]

    block: dict[str, Any] = {
        "embedder": made_by,
        "text": "chunk text as stored (no title prefix); captions stripped",
    }
    embedded = 0
    for part, (file, table) in PARTS.items():
        ids, texts = chunk_texts(chunks) if table == "chunks" else caption_texts(images)
        old = previous.cross_modal_index(part) if reuse else None
        index, n_new = refresh_index(old, ids, texts, get_embedder, int(image_block["dim"]))
        embedded += n_new
        faiss.write_index(index, str(writer.path(file)))
        block[part] = {
            "file": file,
            "factory": "Flat",
            "metric": "ip",
            "ntotal": int(index.ntotal),
            "dim": int(index.d),
        }
    if used:  # record the model that actually made the vectors
        block["embedder"] = describe(used[0], image_block)
    block["seconds"] = round(time.perf_counter() - t0, 2)
    log.info("cross-modal vectors: %d texts embedded in %.1f s", embedded, block["seconds"])
    return block


def describe(embedder: Any | None, image_block: dict[str, Any]) -> dict[str, Any]:
    """What identifies the model that made the vectors: ``spec`` (the bundle's), ``name``, ``dim`` and
    ``checkpoint_sha256`` of ``embedder`` (of ``image_block`` when ``None``)."""
    if embedder is None:
        return {k: image_block.get(k) for k in ("spec", "name", "dim", "checkpoint_sha256")}
    return {
        "spec": image_block.get("spec"),
        "name": getattr(embedder, "name", None),
        "dim": int(embedder.dim),
        "checkpoint_sha256": getattr(embedder, "checkpoint_sha256", None),
    }


def same_embedder(block: dict[str, Any] | None, image_block: dict[str, Any] | None) -> bool:
    """Whether a ``cross_modal`` block was made by the image embedder ``image_block`` describes."""
    if not block or not image_block:
        return False
    made = block.get("embedder") or {}
    return (
        made.get("spec") == image_block.get("spec")
        and made.get("name") == image_block.get("name")
        and made.get("checkpoint_sha256") == image_block.get("checkpoint_sha256")
        and int(made.get("dim") or -1) == int(image_block.get("dim") or -2)
    )


def add_cross_modal(path: str | Path, *, image_embedder: Any | None = None) -> dict[str, Any]:
    """Adds the precomputed cross-modal indexes to an existing bundle (one written before they existed, or
    whose image embedder changed), atomically: every other file is hard-linked into the new folder.

    Args:
        path: The bundle folder.
        image_embedder: An image embedder to use instead of the manifest's spec (it must be the same model).

    Returns:
        The new manifest.

    Raises:
        BundleNotFoundError / IndexIntegrityError: No (valid) bundle at ``path``.
        NoImageEmbedderError: The bundle has no image index (nothing is cross-modal).
    """
    from index_builder.atomic import BundleWriter, bundle_lock, recover
    from index_builder.bundle import Bundle
    from index_builder.errors import NoImageEmbedderError

    out = Path(path).expanduser().resolve()
    with bundle_lock(out):
        recover(out)
        bundle = Bundle.open(out)
        manifest = dict(bundle.manifest)
        image_block = manifest.get("image_embedder")
        if not image_block or not manifest.get("image_index"):
            raise NoImageEmbedderError(
                f"The bundle at {out} has no image index, so it has no cross-modal search to speed up.",
                hint="Build it with an image source (e.g. --source medpix-images:PATH).",
            )

        def get_embedder() -> Any:
            return image_embedder if image_embedder is not None else bundle.image_embedder()

        with BundleWriter(out) as writer:
            own = {entry[0] for entry in PARTS.values()}
            for rel in manifest["files"]:
                if rel not in own:
                    writer.link_from(out, rel)
            manifest[MANIFEST_KEY] = write_cross_modal(
                writer, bundle.chunks, bundle.images, image_block, get_embedder
            )
            return writer.publish(manifest)
