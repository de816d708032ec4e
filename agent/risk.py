"""Risk-controlled abstention: choose the top-1 probability threshold from held-out predictions.

For thresholds ``t`` from high to low, the agent answers the held-out cases whose top-1 probability is at
least ``t``; the selective risk is the error rate of those answers. A threshold is *certified* for a target
risk ``alpha`` when the one-sided Clopper-Pearson upper confidence bound (level ``1 - delta``) of its risk is at
most ``alpha``. Thresholds are tested in a fixed sequence from the highest down (Learn-then-Test), stopping at
the first failure, so the chosen threshold is the lowest certified one before that failure; when none is
certified the agent always abstains (threshold above 1). Thresholds answering too few cases to ever be
certified are skipped at the start of the sequence (:func:`min_answered`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Thresholds tested, from high to low.
GRID: tuple[float, ...] = tuple(round(t, 2) for t in np.arange(0.99, -0.001, -0.01))
#: "Always abstain".
NEVER = 1.01


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """One-sided upper confidence bound of a binomial proportion."""
    if n == 0:
        return 1.0
    if errors >= n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(1.0 - delta, errors + 1, n - errors))


def risk_table(
    top_probs: Sequence[float], correct: Sequence[bool], *, delta: float = 0.1
) -> list[dict[str, Any]]:
    """Coverage, risk and its upper bound per threshold of :data:`GRID` (high to low)."""
    p = np.asarray(top_probs, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    rows = []
    for t in GRID:
        answered = p >= t
        n = int(answered.sum())
        errors = int((answered & ~ok).sum())
        rows.append(
            {
                "threshold": float(t),
                "answered": n,
                "coverage": round(n / len(p), 4) if len(p) else 0.0,
                "risk": round(errors / n, 4) if n else None,
                "risk_ucb": round(clopper_pearson_upper(errors, n, delta), 4),
            }
        )
    return rows


def min_answered(alpha: float, delta: float) -> int:
    """Fewest answered cases whose error-free record certifies ``alpha``: ``ceil(log delta / log(1 - alpha))``."""
    if alpha >= 1.0:
        return 1
    if alpha <= 0.0:
        return 10**9
    return max(1, math.ceil(math.log(delta) / math.log(1.0 - alpha)))


def threshold_for(table: Sequence[dict[str, Any]], alpha: float, delta: float = 0.1) -> float:
    """The lowest certified threshold for target risk ``alpha`` (module docstring); :data:`NEVER` if none.

    The sequence starts at the highest threshold that answers at least :func:`min_answered` cases (fewer can
    never be certified; the count depends on the predictions only, not on the labels, so skipping them keeps
    the fixed-sequence guarantee).
    """
    chosen = NEVER
    floor = min_answered(alpha, delta)
    for row in sorted(table, key=lambda r: -r["threshold"]):
        if row["answered"] < floor:
            continue
        if row["risk_ucb"] > alpha:
            break
        chosen = float(row["threshold"])
    return chosen
