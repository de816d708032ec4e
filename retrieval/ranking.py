"""Ranking mechanics behind the searcher: over-fetching with filters, per-document collapsing and fusion."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrieval.fusion import DEFAULT_RRF_K, reciprocal_rank_fusion

#: The index is asked for ``depth * OVERFETCH`` rows when a filter is set (then 4x more each round) ...
OVERFETCH = 4
#: ... and ``depth * COLLAPSE_OVERFETCH`` more when only one chunk per document is kept.
COLLAPSE_OVERFETCH = 8


@dataclass
class Candidate:
    """A ranked candidate (a document when collapsing, else a chunk) and where it ranked.

    Attributes:
        vid: Vector id of the representative chunk (or image).
        fused: The score the order is based on.
        dense: Cosine similarity in the dense ranking.
        bm25: BM25 score.
        dense_rank: 1-based rank in the dense ranking.
        bm25_rank: 1-based rank in the BM25 ranking.
        mmr: MMR score at selection.
        caption: Caption cosine (cross-modal search).
    """

    vid: int
    fused: float
    dense: float | None = None
    bm25: float | None = None
    dense_rank: int | None = None
    bm25_rank: int | None = None
    mmr: float | None = None
    caption: float | None = None


def dedup(
    pairs: Iterable[tuple[int, float]], depth: int, key_of: Callable[[int], str] | None
) -> list[tuple[int, float]]:
    """The first ``depth`` pairs, keeping only the first pair per key when ``key_of`` is given."""
    out: list[tuple[int, float]] = []
    seen: set[str] = set()
    for vid, score in pairs:
        if key_of is not None:
            key = key_of(vid)
            if key in seen:
                continue
            seen.add(key)
        out.append((vid, score))
        if len(out) >= depth:
            break
    return out


def _initial_request(depth: int, ntotal: int, filtered: bool, collapsing: bool) -> int:
    factor = (COLLAPSE_OVERFETCH if collapsing else 1) * (OVERFETCH if filtered else 1)
    return min(ntotal, depth * factor)


def index_ranking(
    index: Any,
    qvec: np.ndarray,
    depth: int,
    *,
    allowed: np.ndarray | None = None,
    key_of: Callable[[int], str] | None = None,
    subset_vectors: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """Top ``depth`` ``(vector_id, inner product)`` pairs of a FAISS index for one query vector.

    Args:
        index: A FAISS index whose ids are vector ids.
        qvec: ``(1, dim)`` L2-normalised query.
        depth: Pairs wanted (distinct keys when ``key_of`` is given).
        allowed: Sorted vector ids that may be returned (``None``: all).
        key_of: Maps a vector id to its document id, to keep the best chunk per document.
        subset_vectors: Vectors of ``allowed`` (same order); when given, the allowed rows are scored exactly
            instead of over-fetching from the index.
    """
    ntotal = int(index.ntotal)
    if ntotal == 0:
        return []
    if subset_vectors is not None and allowed is not None:
        sims = subset_vectors @ qvec[0]
        order = np.argsort(-sims, kind="stable")
        return dedup(((int(allowed[i]), float(sims[i])) for i in order), depth, key_of)
    allowed_set = None if allowed is None else set(allowed.tolist())
    n = _initial_request(depth, ntotal, allowed_set is not None, key_of is not None)
    while True:
        scores, ids = index.search(qvec, n)
        pairs = (
            (int(i), float(s))
            for s, i in zip(scores[0], ids[0], strict=True)
            if i >= 0 and (allowed_set is None or int(i) in allowed_set)
        )
        ranking = dedup(pairs, depth, key_of)
        if len(ranking) >= depth or n >= ntotal:
            return ranking
        n = min(ntotal, n * 4)


def bm25_ranking(
    search: Callable[[str, int], list[tuple[int, float]]],
    query: str,
    depth: int,
    *,
    ntotal: int,
    allowed: np.ndarray | None = None,
    key_of: Callable[[int], str] | None = None,
) -> list[tuple[int, float]]:
    """Top ``depth`` ``(vector_id, BM25 score)`` pairs with a positive score, over-fetching like
    :func:`index_ranking`.

    Args:
        search: ``search(query, k) -> [(vector_id, score)]`` best first (``Bundle.bm25_search``).
        query: The query text.
        depth: Pairs wanted (distinct keys when ``key_of`` is given).
        ntotal: Number of indexed chunks.
        allowed: Sorted vector ids that may be returned (``None``: all).
        key_of: Maps a vector id to its document id.
    """
    if ntotal == 0:
        return []
    allowed_set = None if allowed is None else set(allowed.tolist())
    n = _initial_request(depth, ntotal, allowed_set is not None, key_of is not None)
    while True:
        found = search(query, n)
        pairs = (
            (int(v), float(s)) for v, s in found if s > 0 and (allowed_set is None or int(v) in allowed_set)
        )
        ranking = dedup(pairs, depth, key_of)
        # fewer results than asked for means every matching chunk was returned
        if len(ranking) >= depth or n >= ntotal or len(found) < n:
            return ranking
        n = min(ntotal, n * 4)


def fuse_rankings(
    dense: list[tuple[int, float]],
    bm25: list[tuple[int, float]],
    *,
    mode: str,
    key_of: Callable[[int], str] | None = None,
    rrf_k: float = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
) -> list[Candidate]:
    """Candidates of one mode: the dense or BM25 ranking as is, or their RRF fusion for ``"hybrid"``.

    In hybrid mode items are keyed by document (``key_of``) or by chunk; a document found by both rankings is
    represented by the chunk of the ranking that ranks it best (dense on a tie) and keeps both scores.
    """
    if mode == "dense":
        return [Candidate(vid=v, fused=s, dense=s, dense_rank=r) for r, (v, s) in enumerate(dense, 1)]
    if mode == "bm25":
        return [Candidate(vid=v, fused=s, bm25=s, bm25_rank=r) for r, (v, s) in enumerate(bm25, 1)]

    def key(vid: int) -> Any:
        return key_of(vid) if key_of else vid

    dense_at = {key(v): (r, v, s) for r, (v, s) in enumerate(dense, 1)}
    bm25_at = {key(v): (r, v, s) for r, (v, s) in enumerate(bm25, 1)}
    fused = reciprocal_rank_fusion(
        {"dense": [key(v) for v, _ in dense], "bm25": [key(v) for v, _ in bm25]}, k=rrf_k, weights=weights
    )
    out: list[Candidate] = []
    for item, score in fused:
        d, b = dense_at.get(item), bm25_at.get(item)
        if d is not None and (b is None or d[0] <= b[0]):
            vid = d[1]
        else:
            assert b is not None
            vid = b[1]
        out.append(
            Candidate(
                vid=vid,
                fused=score,
                dense=None if d is None else d[2],
                dense_rank=None if d is None else d[0],
                bm25=None if b is None else b[2],
                bm25_rank=None if b is None else b[0],
            )
        )
    return out
