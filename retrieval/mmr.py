"""Maximal marginal relevance (MMR) re-ranking for diverse results.

MMR (Carbonell and Goldstein, SIGIR 1998) picks items greedily: at each step the candidate maximising
``lambda * relevance(d) - (1 - lambda) * max_{s in selected} sim(d, s)``. ``lambda = 1`` keeps the relevance
order; ``lambda = 0`` only seeks novelty. Similarities are cosine similarities of L2-normalised vectors.
"""

from __future__ import annotations

import numpy as np

from zebra.errors import ConfigError


def mmr_select(
    candidate_vectors: np.ndarray,
    relevance: np.ndarray,
    *,
    k: int,
    lambda_: float = 0.5,
) -> list[tuple[int, float]]:
    """Selects up to ``k`` candidates by maximal marginal relevance.

    Args:
        candidate_vectors: ``(n, dim)`` L2-normalised vectors of the candidates.
        relevance: ``(n,)`` relevance of each candidate to the query, higher is better; use values on the
            scale of cosine similarities (e.g. the query-candidate cosine, or scores divided by the maximum).
        k: How many to select.
        lambda_: Trade-off between relevance (1) and diversity (0), in ``[0, 1]``.

    Returns:
        ``(candidate index, mmr score at selection)`` pairs in selection order. The first pick is always the
        most relevant candidate.

    Raises:
        ConfigError: When ``lambda_`` is outside ``[0, 1]`` or the shapes disagree.
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ConfigError(f"MMR lambda must be in [0, 1], got {lambda_}.", hint="Use e.g. 0.5.")
    vectors = np.asarray(candidate_vectors, dtype=np.float32)
    rel = np.asarray(relevance, dtype=np.float64)
    n = len(rel)
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise ConfigError(
            f"MMR needs one vector per candidate, got {vectors.shape} for {n} candidates.",
            hint="Pass an (n, dim) array.",
        )
    if n == 0 or k <= 0:
        return []
    sims = vectors @ vectors.T
    # max similarity of each candidate to anything selected so far
    max_sim = np.full(n, -np.inf)
    chosen = np.zeros(n, dtype=bool)
    picks: list[tuple[int, float]] = []
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        scores = lambda_ * rel - (1.0 - lambda_) * penalty
        scores[chosen] = -np.inf
        best = int(np.argmax(scores))  # argmax keeps the first (most relevant) on ties
        picks.append((best, float(scores[best])))
        chosen[best] = True
        max_sim = np.maximum(max_sim, sims[best])
    return picks
