"""Text vectors in the image embedder's space, for cross-modal search.

Image -> text search needs every searched chunk embedded by the image embedder's *text tower*, and text ->
image search the image captions. Bundles written by this version of ``index_builder`` hold both, computed
once at build time (:mod:`index_builder.cross_modal`); :class:`CrossModalVectors` reads them when they were
made by the image embedder in use. Older bundles (or a bundle whose image embedder has changed since) fall
back to embedding on first use, with a logged warning, and cache the vectors for the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from index_builder.vectors import normalise

log = logging.getLogger(__name__)

#: Texts per text-tower call on the run-time path (the build uses the same batches).
BATCH = 256


class CrossModalVectors:
    """Chunk and caption vectors in the image embedder's text space (module docstring).

    Args:
        bundle: The bundle (its ``cross_modal_vectors`` and ``cross_modal_embedder`` are used when present).
        chunks: Chunk table indexed by ``vector_id`` (with a ``text`` column).
        images: Image table indexed by ``vector_id`` (with a ``caption`` column), or ``None``.
        embedder: Returns the image embedder (called on first use).
        precomputed: Use the bundle's precomputed vectors when they fit (``False``: always embed, e.g. to
            check the precomputed ones).
    """

    def __init__(
        self,
        bundle: Any,
        chunks: pd.DataFrame,
        images: pd.DataFrame | None,
        embedder: Callable[[], Any],
        *,
        precomputed: bool = True,
    ) -> None:
        self.bundle = bundle
        self.chunks = chunks
        self.images = images
        self._embedder = embedder
        self.use_precomputed = precomputed
        self._lock = threading.RLock()
        self._stored: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        self._chunk_cache: dict[int, np.ndarray] = {}
        self._captions: tuple[np.ndarray, np.ndarray] | None = None
        #: Where the vectors of each part came from: ``"precomputed"`` or ``"embedded"`` (after first use).
        self.source: dict[str, str] = {}

    # ------------------------------------------------------------------ public
    def chunk_vectors(self, vids: np.ndarray) -> np.ndarray:
        """``(len(vids), dim)`` vectors of the chunks ``vids`` (L2-normalised)."""
        vids = np.asarray(vids, dtype=np.int64)
        stored = self._precomputed("chunks")
        if stored is not None:
            found = _lookup(stored, vids)
            if found is not None:
                return found
            log.warning("precomputed cross-modal chunk vectors miss some chunks; embedding those")
        return self._embedded_chunks(vids)

    def caption_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(vector_ids, vectors)`` of the images with a caption, in the image table's order."""
        with self._lock:
            if self._captions is None:
                vids, texts = _captions(self.images)
                stored = self._precomputed("captions") if len(vids) else None
                found = _lookup(stored, vids) if stored is not None else None
                if found is not None:
                    self._captions = (vids, found)
                elif texts:
                    self.source["captions"] = "embedded"
                    self._captions = (vids, self._embed(texts))
                else:
                    self._captions = (vids, np.zeros((0, 1), dtype=np.float32))
            return self._captions

    # ------------------------------------------------------------------ internals
    def _precomputed(self, part: str) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            if part not in self._stored:
                self._stored[part] = self._load(part)
                self.source[part] = "precomputed" if self._stored[part] is not None else "embedded"
            return self._stored[part]

    def _load(self, part: str) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.use_precomputed:
            return None
        path = getattr(self.bundle, "path", "?")
        made_by = getattr(self.bundle, "cross_modal_embedder", None)
        if not made_by:
            log.warning(
                "bundle %s has no precomputed cross-modal vectors (built before they existed): embedding "
                "the %s with the image embedder's text tower in this process; rebuild the bundle or run "
                "index_builder.cross_modal.add_cross_modal on it to skip this",
                path,
                part,
            )
            return None
        embedder = self._embedder()
        current = (getattr(embedder, "name", None), getattr(embedder, "checkpoint_sha256", None))
        made = (made_by.get("name"), made_by.get("checkpoint_sha256"))
        if made != current or int(made_by.get("dim") or -1) != int(embedder.dim):
            log.warning(
                "bundle %s: the precomputed cross-modal vectors were made by another image embedder "
                "(%s checkpoint %s, now %s checkpoint %s); embedding the %s at run time",
                path,
                *made,
                *current,
                part,
            )
            return None
        return self.bundle.cross_modal_vectors(part)

    def _embed(self, texts: list[str]) -> np.ndarray:
        embedder = self._embedder()
        return normalise(
            np.concatenate(
                [
                    np.asarray(embedder.encode_texts(texts[s : s + BATCH]), dtype=np.float32)
                    for s in range(0, len(texts), BATCH)
                ]
            )
        )

    def _embedded_chunks(self, vids: np.ndarray) -> np.ndarray:
        with self._lock:
            missing = [int(v) for v in vids if int(v) not in self._chunk_cache]
            if missing:
                log.info("embedding %d chunks with the image embedder's text tower (cached)", len(missing))
                texts = self.chunks.loc[missing, "text"].astype(str).tolist()
                for vid, vec in zip(missing, self._embed(texts), strict=True):
                    self._chunk_cache[vid] = vec
            if not len(vids):
                return np.zeros((0, 1), dtype=np.float32)
            return np.stack([self._chunk_cache[int(v)] for v in vids])


def _captions(images: pd.DataFrame | None) -> tuple[np.ndarray, list[str]]:
    """``(vector_ids, stripped captions)`` of the images with a non-blank caption."""
    if images is None or "caption" not in images.columns:
        return np.zeros(0, dtype=np.int64), []
    captions = images["caption"].fillna("").astype(str).str.strip()
    keep = captions.ne("").to_numpy()
    return images.index.to_numpy(dtype=np.int64)[keep], captions[keep].tolist()


def _lookup(stored: tuple[np.ndarray, np.ndarray], vids: np.ndarray) -> np.ndarray | None:
    """Rows of ``stored`` (ids sorted) for ``vids``; ``None`` when one is missing."""
    ids, vectors = stored
    if len(vids) == 0:
        return np.zeros((0, vectors.shape[1]), dtype=np.float32)
    if len(ids) == 0:
        return None
    pos = np.clip(np.searchsorted(ids, vids), 0, len(ids) - 1)
    if not np.array_equal(ids[pos], vids):
        return None
    return vectors[pos]
