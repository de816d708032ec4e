"""Reciprocal rank fusion (RRF) of several rankings.

RRF (Cormack, Clarke and Büttcher, SIGIR 2009) scores an item by the sum, over the rankings that contain it, of
``weight / (k + rank)`` with 1-based ranks. It uses ranks only, so rankings whose raw scores live on different
scales (cosine similarities and BM25 scores) combine without calibration. A large ``k`` flattens the
contribution of the top ranks; ``k = 60`` is the value of the original paper.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from zebra.errors import ConfigError

K = TypeVar("K", bound=Hashable)

#: The ``k`` constant of the original RRF paper.
DEFAULT_RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[K]],
    *,
    k: float = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[K, float]]:
    """Fuses rankings by reciprocal rank.

    ``score(d) = sum over rankings r containing d of weights[r] / (k + rank_r(d))``, ranks starting at 1.
    An item repeated within one ranking counts once, at its best rank. Ties are broken by the best single
    rank of the item, then by the order in which the rankings (in mapping order) first list it, so the result
    is deterministic.

    Args:
        rankings: Ranking name to the items in ranked order (best first).
        k: The RRF constant (> 0).
        weights: Per-ranking weights; missing names weigh 1.

    Returns:
        ``(item, score)`` pairs, best first.

    Raises:
        ConfigError: When ``k`` is not positive or a weight is negative.
    """
    if k <= 0:
        raise ConfigError(f"RRF k must be positive, got {k}.", hint="Use e.g. 60.")
    weights = dict(weights or {})
    if any(w < 0 for w in weights.values()):
        raise ConfigError("RRF weights must not be negative.", hint="Use weights >= 0.")
    scores: dict[K, float] = {}
    best_rank: dict[K, int] = {}
    first_seen: dict[K, int] = {}
    for name, items in rankings.items():
        weight = float(weights.get(name, 1.0))
        seen: set[K] = set()
        for rank, item in enumerate(items, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
            best_rank[item] = min(best_rank.get(item, rank), rank)
            first_seen.setdefault(item, len(first_seen))
    order = sorted(scores, key=lambda item: (-scores[item], best_rank[item], first_seen[item]))
    return [(item, scores[item]) for item in order]
