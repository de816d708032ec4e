"""The :class:`Searcher`: text, image and cross-modal search over an index bundle.

Text search (:meth:`Searcher.search_text`):

1. *Candidates.* The dense ranking embeds the query with the bundle's text embedder and searches the FAISS text
   index (cosine = inner product of L2-normalised vectors); the BM25 ranking asks the bundle's BM25 index. Each
   ranking is taken ``fetch_k`` deep. With ``collapse`` (the default) each ranking keeps only the best chunk of
   each document, so ranks count documents and ``fetch_k`` documents are gathered.
2. *Filters* (:class:`retrieval.filters.Filters`) are applied by over-fetching: the indexes are asked for 4x
   more candidates than needed (8x when collapsing) and the request grows 4x at a time until enough rows pass
   or the index is exhausted. When the filter leaves a small part of the index (at most ``EXACT_MAX`` rows and
   under ``EXACT_FRACTION`` of it), the dense ranking instead scores exactly the vectors of the rows that pass,
   read back from the index (a graph index cannot find a small subset by over-fetching).
3. *Fusion.* ``hybrid`` = reciprocal rank fusion (:mod:`retrieval.fusion`) of the two rankings with
   ``rrf_k = 60`` and weights 1 unless given; ``dense`` and ``bm25`` keep one ranking and its raw score.
   A collapsed document is represented by the chunk of the ranking that ranks it best (the dense one on a tie).
4. *Diversity* (optional): ``mmr=lambda`` re-ranks the ``fetch_k`` fused candidates by maximal marginal
   relevance (:mod:`retrieval.mmr`) over the chunks' vectors, read back from the FAISS index (re-embedded when
   the index cannot give them back). Relevance is the query cosine in dense mode and the fused score divided
   by the best fused score otherwise.
5. *Hits* carry a :class:`retrieval.types.Citation` quoting the most query-relevant sentences of the chunk, and
   their dense (in dense and hybrid modes filled in for every hit), BM25, fused scores and rank.

Image and cross-modal search use the bundle's image embedder (an open_clip model, both towers in one space):

- :meth:`Searcher.search_image`: image -> images. The query image's embedding against the image index.
- :meth:`Searcher.search_text_to_image`: text -> images. The query embedded by the image embedder's *text*
  tower against the image index; when the indexed images have captions (and ``use_captions``), a second
  ranking compares the same query vector with the captions embedded by the same text tower, and the two
  rankings are fused by RRF. ``scores.dense`` is the image cosine, ``scores.caption`` the caption cosine.
- :meth:`Searcher.search_image_to_text`: image -> text. The query image's embedding against the bundle's text
  chunks embedded by the image embedder's text tower (truncated to its context, 77 tokens for CLIP-style
  models); by default only chunks of the kinds that describe what images show (``caption``, ``case_report``),
  all chunks when the bundle has none of those.

The chunk and caption vectors in the image embedder's text space come precomputed with the bundle
(:mod:`retrieval.crossmodal`); bundles built before that are embedded on first use (a warning says so) and
cached on the searcher. Query-image embeddings are cached by content (:mod:`retrieval.query_cache`), so
searching one image both ways embeds it once; :meth:`Searcher.embed_query_images` embeds several in one batch.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from index_builder.vectors import normalise
from retrieval.aggregate import aggregate_diagnoses
from retrieval.crossmodal import CrossModalVectors
from retrieval.errors import NoImageIndexError, QueryError
from retrieval.filters import Filters
from retrieval.fusion import DEFAULT_RRF_K, reciprocal_rank_fusion
from retrieval.images import load_query_image
from retrieval.mmr import mmr_select
from retrieval.query_cache import QueryVectorCache, image_key
from retrieval.ranking import Candidate, bm25_ranking, fuse_rankings, index_ranking
from retrieval.results import image_hit, text_hit
from retrieval.types import CandidateDiagnosis, Hit, ImageHit

if TYPE_CHECKING:
    from index_builder.bundle import Bundle

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[str, ...] = ("hybrid", "dense", "bm25")
#: Chunk kinds searched by image -> text search by default.
IMAGE_TO_TEXT_KINDS: tuple[str, ...] = ("caption", "case_report")
#: Filtered dense search scores the passing rows exactly when they are at most this many ...
EXACT_MAX = 20_000
#: ... and under this fraction of the index.
EXACT_FRACTION = 0.25
#: Largest ``k`` / ``fetch_k`` accepted.
MAX_K = 10_000


def _frame_by_vector_id(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    if frame is None:
        return None
    if "vector_id" in frame.columns:
        frame = frame.set_index("vector_id", drop=False)
    return frame


class Searcher:
    """Searches one index bundle by text, image, or across modalities (see the module docstring).

    Args:
        bundle: An open :class:`index_builder.bundle.Bundle` or the path of a bundle folder.
        text_embedder: Overrides the bundle's text embedder (must produce the same vectors, e.g. a test
            embedder); by default the one named in the manifest, created on first use.
        image_embedder: Overrides the bundle's image embedder.
        rrf_k: The RRF constant of hybrid fusion.
        weights: RRF weights of the ``"dense"`` and ``"bm25"`` rankings (1 each unless given).
        verify: When ``bundle`` is a path, verify the SHA-256 of every bundle file on opening.
    """

    def __init__(
        self,
        bundle: Bundle | str | Path,
        *,
        text_embedder: Any | None = None,
        image_embedder: Any | None = None,
        rrf_k: float = DEFAULT_RRF_K,
        weights: Mapping[str, float] | None = None,
        verify: bool = True,
    ) -> None:
        if isinstance(bundle, str | Path):
            from index_builder.bundle import Bundle

            bundle = Bundle.open(bundle, verify=verify)
        self.bundle = bundle
        self.rrf_k = rrf_k
        self.weights = {"dense": 1.0, "bm25": 1.0, **dict(weights or {})}
        self._text_embedder = text_embedder
        self._image_embedder = image_embedder
        self.chunks: pd.DataFrame = _frame_by_vector_id(bundle.chunks)
        self.images: pd.DataFrame | None = _frame_by_vector_id(getattr(bundle, "images", None))
        self._doc_of: dict[int, str] = dict(
            zip(self.chunks.index.astype(int), self.chunks["doc_id"].astype(str), strict=True)
        )
        self._masks: OrderedDict[tuple[str, Filters], np.ndarray] = OrderedDict()
        self._subset_vectors: OrderedDict[tuple[str, Filters], np.ndarray] = OrderedDict()
        #: Chunk and caption vectors in the image embedder's text space (precomputed or embedded once).
        self.cross_modal = CrossModalVectors(bundle, self.chunks, self.images, lambda: self.image_embedder)
        self._query_images = QueryVectorCache(size=32)
        self._query_texts = QueryVectorCache(size=64)

    # ------------------------------------------------------------------ embedders
    @property
    def text_embedder(self) -> Any:
        """The text embedder (created from the manifest on first use)."""
        if self._text_embedder is None:
            self._text_embedder = self.bundle.text_embedder()
        return self._text_embedder

    @property
    def image_embedder(self) -> Any:
        """The image embedder (created from the manifest on first use).

        Raises:
            NoImageIndexError: When the bundle has no image embedder.
        """
        if self._image_embedder is None:
            embedder = self.bundle.image_embedder() if hasattr(self.bundle, "image_embedder") else None
            if embedder is None:
                raise NoImageIndexError(
                    f"The bundle at {getattr(self.bundle, 'path', '?')} has no image embedder.",
                    hint="Build it with an image source (e.g. --source medpix-images:PATH).",
                )
            self._image_embedder = embedder
        return self._image_embedder

    # ------------------------------------------------------------------ text search
    def search_text(
        self,
        query: str,
        *,
        k: int = 10,
        mode: Mode | str = "hybrid",
        filters: Filters | None = None,
        mmr: float | None = None,
        fetch_k: int = 50,
        collapse: bool = True,
    ) -> list[Hit]:
        """Searches the text chunks (pipeline in the module docstring).

        Args:
            query: Free text.
            k: Number of hits.
            mode: ``"hybrid"`` (RRF of dense and BM25), ``"dense"`` or ``"bm25"``.
            filters: Metadata restrictions.
            mmr: MMR trade-off lambda in ``[0, 1]`` (1 = relevance only); ``None`` disables MMR.
            fetch_k: Depth of each ranking (raised to ``k`` when smaller); also the MMR candidate pool.
            collapse: Keep only the best chunk of each document.

        Returns:
            Up to ``k`` hits, best first.

        Raises:
            QueryError: For an empty query, an unknown mode or a bad ``k``.
        """
        query = _check_query(query)
        mode = _check_mode(mode)
        k, fetch_k = _check_k(k, fetch_k)
        allowed = self._allowed("chunks", self.chunks, filters)
        if allowed is not None and len(allowed) == 0:
            return []
        key_of = self._doc_of.__getitem__ if collapse else None
        qvec = None
        dense: list[tuple[int, float]] = []
        bm25: list[tuple[int, float]] = []
        if mode in ("dense", "hybrid"):
            qvec = self._encode_query(query)
            dense = self._index_ranking(
                "text", self.bundle.text_index, qvec, fetch_k, allowed, filters, key_of
            )
        if mode in ("bm25", "hybrid"):
            bm25 = self._bm25_ranking(query, fetch_k, allowed, key_of)
        candidates = self._fuse(dense, bm25, mode, key_of)
        if mmr is not None and candidates:
            candidates = self._mmr(candidates[:fetch_k], k, mmr, mode)
        candidates = candidates[:k]
        self._fill_dense(candidates, qvec)
        return [self._text_hit(c, rank, query) for rank, c in enumerate(candidates, start=1)]

    def diagnose(
        self,
        query: str,
        *,
        n_hits: int = 30,
        top_n: int = 5,
        mode: Mode | str = "hybrid",
        filters: Filters | None = None,
        kind_weights: Mapping[str, float] | None = None,
        fetch_k: int | None = None,
    ) -> tuple[list[CandidateDiagnosis], list[Hit]]:
        """Searches and aggregates the hits into candidate diagnoses (:mod:`retrieval.aggregate`).

        Args:
            query: Free text (history and findings).
            n_hits: Hits aggregated.
            top_n: Candidates returned.
            mode: Search mode.
            filters: Metadata restrictions.
            kind_weights: Per-kind weights of the aggregation.
            fetch_k: Ranking depth (default ``max(50, n_hits)``).

        Returns:
            ``(candidates, hits)``.
        """
        hits = self.search_text(
            query, k=n_hits, mode=mode, filters=filters, fetch_k=fetch_k or max(50, n_hits)
        )
        return aggregate_diagnoses(hits, top_n=top_n, kind_weights=kind_weights), hits

    # ------------------------------------------------------------------ image and cross-modal search
    def search_image(self, image: Any, *, k: int = 10, filters: Filters | None = None) -> list[ImageHit]:
        """Image -> images: nearest indexed images to the query image.

        Args:
            image: PIL image, numpy array or file path (see :func:`retrieval.images.load_query_image`).
            k: Number of hits.
            filters: Restrictions on the images' metadata.

        Raises:
            NoImageIndexError: When the bundle has no image index.
        """
        index = self._require_image_index()
        k, _ = _check_k(k, k)
        qvec = self._encode_image(image)
        allowed = self._allowed("images", self.images, filters)
        if allowed is not None and len(allowed) == 0:
            return []
        ranking = self._index_ranking("image", index, qvec, k, allowed, filters, None)
        candidates = [
            Candidate(vid=v, fused=s, dense=s, dense_rank=r) for r, (v, s) in enumerate(ranking, start=1)
        ]
        return [self._image_hit(c, rank) for rank, c in enumerate(candidates[:k], start=1)]

    def search_text_to_image(
        self,
        query: str,
        *,
        k: int = 10,
        filters: Filters | None = None,
        use_captions: bool = True,
        fetch_k: int = 50,
    ) -> list[ImageHit]:
        """Text -> images via the image embedder's text tower (module docstring).

        Args:
            query: Free text.
            k: Number of hits.
            filters: Restrictions on the images' metadata.
            use_captions: Also rank images by their captions in the same text space and fuse by RRF.
            fetch_k: Depth of each ranking.

        Raises:
            NoImageIndexError: When the bundle has no image index.
        """
        index = self._require_image_index()
        query = _check_query(query)
        k, fetch_k = _check_k(k, fetch_k)
        qvec = normalise(np.asarray(self.image_embedder.encode_texts([query]), dtype=np.float32))
        allowed = self._allowed("images", self.images, filters)
        if allowed is not None and len(allowed) == 0:
            return []
        image_rank = self._index_ranking("image", index, qvec, fetch_k, allowed, filters, None)
        caption_rank: list[tuple[int, float]] = []
        if use_captions:
            vids, vectors = self._caption_vectors()
            if len(vids):
                sims = vectors @ qvec[0]
                keep = np.ones(len(vids), dtype=bool) if allowed is None else np.isin(vids, allowed)
                order = [i for i in np.argsort(-sims, kind="stable") if keep[i]][:fetch_k]
                caption_rank = [(int(vids[i]), float(sims[i])) for i in order]
        if caption_rank:
            fused = reciprocal_rank_fusion(
                {"image": [v for v, _ in image_rank], "caption": [v for v, _ in caption_rank]}, k=self.rrf_k
            )
            img = {v: (r, s) for r, (v, s) in enumerate(image_rank, start=1)}
            cap = {v: s for v, s in caption_rank}
            candidates = [
                Candidate(
                    vid=v,
                    fused=f,
                    dense=img.get(v, (None, None))[1],
                    dense_rank=img.get(v, (None, None))[0],
                    caption=cap.get(v),
                )
                for v, f in fused
            ]
        else:
            candidates = [
                Candidate(vid=v, fused=s, dense=s, dense_rank=r) for r, (v, s) in enumerate(image_rank, 1)
            ]
        return [self._image_hit(c, rank) for rank, c in enumerate(candidates[:k], start=1)]

    def search_image_to_text(
        self,
        image: Any,
        *,
        k: int = 10,
        filters: Filters | None = None,
        kinds: Sequence[str] | None = IMAGE_TO_TEXT_KINDS,
        collapse: bool = True,
    ) -> list[Hit]:
        """Image -> text chunks via the image embedder's text tower (module docstring).

        Args:
            image: PIL image, numpy array or file path.
            k: Number of hits.
            filters: Restrictions on the chunks' metadata.
            kinds: Chunk kinds to search (``None``: all); when the bundle has none of them, all kinds.
            collapse: Keep only the best chunk of each document.

        Raises:
            NoImageIndexError: When the bundle has no image embedder.
        """
        k, _ = _check_k(k, k)
        qvec = self._encode_image(image)
        mask = self._mask("chunks", self.chunks, filters)
        if kinds:
            by_kind = self.chunks["kind"].astype(str).isin(list(kinds)).to_numpy()
            if by_kind.any():
                mask = mask & by_kind
        vids = self.chunks.index.to_numpy(dtype=np.int64)[mask]
        if len(vids) == 0:
            return []
        vectors = self._clip_text_vectors(vids)
        sims = vectors @ qvec[0]
        order = np.argsort(-sims, kind="stable")
        ranking: list[tuple[int, float]] = []
        seen: set[str] = set()
        for i in order:
            vid = int(vids[i])
            if collapse:
                doc = self._doc_of[vid]
                if doc in seen:
                    continue
                seen.add(doc)
            ranking.append((vid, float(sims[i])))
            if len(ranking) >= k:
                break
        candidates = [Candidate(vid=v, fused=s, dense=s, dense_rank=r) for r, (v, s) in enumerate(ranking, 1)]
        return [self._text_hit(c, rank, None) for rank, c in enumerate(candidates, start=1)]

    # ------------------------------------------------------------------ internals: rankings
    def _mask(self, name: str, frame: pd.DataFrame | None, filters: Filters | None) -> np.ndarray:
        size = 0 if frame is None else len(frame)
        if filters is None or not filters.active or frame is None:
            return np.ones(size, dtype=bool)
        key = (name, filters)
        if key not in self._masks:
            self._masks[key] = filters.mask(frame)
            while len(self._masks) > 16:
                self._masks.popitem(last=False)
        return self._masks[key]

    def _allowed(self, name: str, frame: pd.DataFrame | None, filters: Filters | None) -> np.ndarray | None:
        """Sorted vector ids passing ``filters``; ``None`` when nothing is filtered."""
        if filters is None or not filters.active or frame is None:
            return None
        return np.sort(frame.index.to_numpy(dtype=np.int64)[self._mask(name, frame, filters)])

    def _index_ranking(
        self,
        name: str,
        index: Any,
        qvec: np.ndarray,
        depth: int,
        allowed: np.ndarray | None,
        filters: Filters | None,
        key_of: Callable[[int], str] | None,
    ) -> list[tuple[int, float]]:
        """Top ``depth`` (distinct keys when ``key_of``) ``(vector_id, cosine)`` from a FAISS index."""
        subset = None
        if allowed is not None and len(allowed) <= EXACT_MAX and len(allowed) < EXACT_FRACTION * index.ntotal:
            subset = self._vectors_of_subset(name, index, allowed, filters)
        return index_ranking(index, qvec, depth, allowed=allowed, key_of=key_of, subset_vectors=subset)

    def _bm25_ranking(
        self, query: str, depth: int, allowed: np.ndarray | None, key_of: Callable[[int], str] | None
    ) -> list[tuple[int, float]]:
        return bm25_ranking(
            self.bundle.bm25_search, query, depth, ntotal=len(self.chunks), allowed=allowed, key_of=key_of
        )

    def _fuse(
        self,
        dense: list[tuple[int, float]],
        bm25: list[tuple[int, float]],
        mode: str,
        key_of: Callable[[int], str] | None,
    ) -> list[Candidate]:
        return fuse_rankings(dense, bm25, mode=mode, key_of=key_of, rrf_k=self.rrf_k, weights=self.weights)

    def _mmr(self, candidates: list[Candidate], k: int, lambda_: float, mode: str) -> list[Candidate]:
        vectors = self._chunk_vectors([c.vid for c in candidates])
        if mode == "dense":
            relevance = np.array([c.dense or 0.0 for c in candidates])
        else:
            best = max(c.fused for c in candidates) or 1.0
            relevance = np.array([c.fused / best for c in candidates])
        picks = mmr_select(vectors, relevance, k=k, lambda_=lambda_)
        out = []
        for index, score in picks:
            candidates[index].mmr = score
            out.append(candidates[index])
        return out

    def _fill_dense(self, candidates: list[Candidate], qvec: np.ndarray | None) -> None:
        """Dense scores of returned hits the dense ranking did not see (not in BM25 mode: that would cost
        a query embedding for a display-only number)."""
        missing = [c for c in candidates if c.dense is None]
        if not missing or qvec is None:
            return
        try:
            vectors = self._chunk_vectors([c.vid for c in missing], reembed=False)
        except RuntimeError:  # the index cannot give vectors back: leave the scores empty
            log.debug("could not fill in dense scores", exc_info=True)
            return
        for cand, sim in zip(missing, vectors @ qvec[0], strict=True):
            cand.dense = float(sim)

    # ------------------------------------------------------------------ internals: vectors
    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` L2-normalised text-query embeddings, each uncached text encoded once and **alone**.

        Alone, because the int8 ONNX encoder quantises its activations per batch: a text's vector moved with its
        batch companions (cosine 0.993 to itself alone, measured), so answers depended on which queries a turn
        grouped and, through this cache, on what the process had asked before (a dev evaluation run twice gave
        different top-1 counts). Later text searches with the same (stripped) query text reuse the vectors.

        Raises:
            QueryError: For an empty query, or an embedder whose dimension does not fit the bundle.
        """
        texts = [_check_query(q) for q in queries]
        keys = [("text", t) for t in texts]
        rows: list[np.ndarray | None] = [self._query_texts.get(key) for key in keys]
        todo = list(dict.fromkeys(t for t, row in zip(texts, rows, strict=True) if row is None))
        if todo:
            vectors = np.concatenate(
                [np.asarray(self.text_embedder.encode([t]), dtype=np.float32).reshape(1, -1) for t in todo]
            )
            dim = int(self.bundle.text_index.d)
            if vectors.shape[1] != dim:
                raise QueryError(
                    f"The text embedder makes {vectors.shape[1]}-d vectors but the bundle's text index holds "
                    f"{dim}-d ones.",
                    hint="Use the embedder the bundle was built with (see its manifest.json).",
                )
            made = dict(zip(todo, normalise(vectors), strict=True))
            for key in dict.fromkeys(("text", t) for t in todo):
                self._query_texts.put(key, made[key[1]])
            rows = [made[t] if row is None else row for t, row in zip(texts, rows, strict=True)]
        if not rows:
            return np.zeros((0, int(self.bundle.text_index.d)), dtype=np.float32)
        return np.stack([np.asarray(r, dtype=np.float32) for r in rows])

    def _encode_query(self, query: str) -> np.ndarray:
        return self.embed_queries([query])

    def embed_query_images(self, images: Sequence[Any]) -> np.ndarray:
        """``(n, dim)`` L2-normalised embeddings of query images, the uncached ones in one batch.

        Later searches of the same images (by content) reuse them, so calling this first with all images of
        a study batches their image-tower passes.

        Args:
            images: PIL images, arrays or file paths (see :func:`retrieval.images.load_query_image`).

        Raises:
            NoImageIndexError: When the bundle has no image embedder.
            ImageInputError: When an input cannot be read as an image.
        """
        keys = [image_key(im) for im in images]
        rows: list[np.ndarray | None] = [self._query_images.get(key) for key in keys]
        todo = [i for i, row in enumerate(rows) if row is None]
        if todo:
            pils = [load_query_image(images[i]) for i in todo]
            vectors = normalise(np.asarray(self.image_embedder.encode_images(pils), dtype=np.float32))
            for i, vec in zip(todo, vectors, strict=True):
                rows[i] = vec
                self._query_images.put(keys[i], vec)
        if not rows:
            return np.zeros((0, int(getattr(self.image_embedder, "dim", 0))), dtype=np.float32)
        return np.stack([np.asarray(r, dtype=np.float32) for r in rows])

    def _encode_image(self, image: Any) -> np.ndarray:
        return self.embed_query_images([image])

    def _require_image_index(self) -> Any:
        index = getattr(self.bundle, "image_index", None)
        if index is None or self.images is None or len(self.images) == 0:
            raise NoImageIndexError(
                f"The bundle at {getattr(self.bundle, 'path', '?')} has no image index.",
                hint="Build it with an image source (e.g. --source medpix-images:PATH).",
            )
        return index

    def _reconstruct(self, index: Any, vids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(vids, dtype=np.int64)
        try:
            return np.asarray(index.reconstruct_batch(ids), dtype=np.float32)
        except (RuntimeError, AttributeError):
            return np.stack([np.asarray(index.reconstruct(int(i)), dtype=np.float32) for i in ids])

    def _chunk_vectors(self, vids: Sequence[int], *, reembed: bool = True) -> np.ndarray:
        """Chunk vectors, read back from the text index; re-embedded from the text when it cannot."""
        try:
            vectors = self._reconstruct(self.bundle.text_index, vids)
        except RuntimeError:
            if not reembed:
                raise
            log.debug("text index cannot reconstruct vectors; re-embedding %d chunks", len(vids))
            texts = self.chunks.loc[list(vids), "text"].astype(str).tolist()
            vectors = np.asarray(self.text_embedder.encode(texts), dtype=np.float32)
        return normalise(vectors)

    def _vectors_of_subset(
        self, name: str, index: Any, ids: np.ndarray, filters: Filters | None
    ) -> np.ndarray:
        key = (name, filters or Filters())
        if key not in self._subset_vectors:
            if name == "text":
                vectors = self._chunk_vectors(ids.tolist())
            else:
                vectors = normalise(self._reconstruct(index, ids.tolist()))
            self._subset_vectors[key] = vectors
            while len(self._subset_vectors) > 8:
                self._subset_vectors.popitem(last=False)
        return self._subset_vectors[key]

    def _clip_text_vectors(self, vids: np.ndarray) -> np.ndarray:
        return self.cross_modal.chunk_vectors(vids)

    def _caption_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(vector_ids, caption vectors)`` of the images with a caption, in the image embedder's text space."""
        return self.cross_modal.caption_vectors()

    # ------------------------------------------------------------------ internals: results
    def _text_hit(self, cand: Candidate, rank: int, query: str | None) -> Hit:
        return text_hit(self.chunks.loc[cand.vid], cand, rank, query)

    def _image_hit(self, cand: Candidate, rank: int) -> ImageHit:
        assert self.images is not None
        return image_hit(self.images.loc[cand.vid], cand, rank)


def _check_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise QueryError("The query is empty.", hint="Pass some text to search for.")
    return query.strip()


def _check_mode(mode: str) -> str:
    mode = str(mode).lower()
    if mode not in MODES:
        raise QueryError(f"Unknown search mode {mode!r}.", hint=f"Use one of: {', '.join(MODES)}.")
    return mode


def _check_k(k: int, fetch_k: int) -> tuple[int, int]:
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}, got {k!r}.", hint="Use e.g. --k 10.")
    return k, min(max(int(fetch_k), k), MAX_K)
