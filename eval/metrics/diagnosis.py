"""Diagnosis metrics: top-k accuracy, calibration (ECE, reliability data), risk-coverage and AURC.

- *Top-k*: a case is a top-``k`` hit when one of the first ``k`` predicted diagnoses is judged the same
  condition as the truth (:func:`hit_rank`); an empty list is a miss.
- *ECE* (expected calibration error, Guo et al. 2017) with ``n_bins`` equal-width bins over ``[0, 1]``: a
  confidence ``c`` goes to bin ``min(floor(c * n_bins), n_bins - 1)`` (so 1.0 is in the last bin), and
  ``ECE = sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|``.
- *Risk-coverage*: cases sorted by confidence, highest first (ties keep case order); after the first ``k``
  cases the coverage is ``k / n`` and the selective risk the error rate among them. AURC is the mean of the
  ``n`` risks (area under the step curve).
- *Operating point*: the abstain flags give the coverage actually used (fraction not abstained) and the
  selective risk there (error rate among the cases answered).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: Bins of the ECE.
DEFAULT_BINS = 15


def hit_rank(
    diagnoses: Sequence[str], truth: str, same: Callable[[str, str], bool], k: int = 5
) -> int | None:
    """1-based rank of the first of the top ``k`` diagnoses judged the same as ``truth``; ``None`` if none."""
    for rank, name in enumerate(list(diagnoses)[:k], start=1):
        if name and same(name, truth):
            return rank
    return None


def topk_accuracy(ranks: Sequence[int | None], k: int) -> float | None:
    """Fraction of cases whose hit rank is at most ``k``; ``None`` without cases."""
    if not ranks:
        return None
    return float(np.mean([r is not None and r <= k for r in ranks]))


def _arrays(confidences: Sequence[float], correct: Sequence[bool | float]) -> tuple[np.ndarray, np.ndarray]:
    conf = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, 1.0)
    corr = np.asarray(correct, dtype=np.float64)
    if conf.shape != corr.shape:
        raise ValueError("confidences and correct differ in length")
    return conf, corr


def bin_index(confidences: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Equal-width bin of each confidence (module docstring)."""
    return np.minimum((confidences * n_bins).astype(np.int64), n_bins - 1)


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool | float], n_bins: int = DEFAULT_BINS
) -> float | None:
    """ECE with ``n_bins`` equal-width bins; ``None`` without cases."""
    conf, corr = _arrays(confidences, correct)
    if conf.size == 0:
        return None
    bins = bin_index(conf, n_bins)
    total = 0.0
    for b in np.unique(bins):
        mask = bins == b
        total += mask.sum() / conf.size * abs(corr[mask].mean() - conf[mask].mean())
    return float(total)


def reliability_data(
    confidences: Sequence[float], correct: Sequence[bool | float], n_bins: int = DEFAULT_BINS
) -> list[dict[str, float | int | None]]:
    """Per bin: ``lo``, ``hi``, ``count``, ``accuracy`` and ``confidence`` (``None`` for empty bins)."""
    conf, corr = _arrays(confidences, correct)
    bins = bin_index(conf, n_bins) if conf.size else np.zeros(0, dtype=np.int64)
    out: list[dict[str, float | int | None]] = []
    for b in range(n_bins):
        mask = bins == b
        n = int(mask.sum())
        out.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "count": n,
                "accuracy": float(corr[mask].mean()) if n else None,
                "confidence": float(conf[mask].mean()) if n else None,
            }
        )
    return out


def risk_coverage(
    confidences: Sequence[float], correct: Sequence[bool | float]
) -> tuple[np.ndarray, np.ndarray]:
    """``(coverages, selective_risks)`` after each case in order of decreasing confidence."""
    conf, corr = _arrays(confidences, correct)
    if conf.size == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-conf, kind="mergesort")
    errors = np.cumsum(1.0 - corr[order])
    k = np.arange(1, conf.size + 1, dtype=np.float64)
    return k / conf.size, errors / k


def aurc(confidences: Sequence[float], correct: Sequence[bool | float]) -> float | None:
    """Area under the risk-coverage curve (mean selective risk); ``None`` without cases."""
    _, risks = risk_coverage(confidences, correct)
    return float(risks.mean()) if risks.size else None


def operating_point(
    abstained: Sequence[bool], correct: Sequence[bool | float]
) -> tuple[float | None, float | None]:
    """``(coverage, selective_risk)`` given the abstain flags; risk is ``None`` when everything abstained."""
    abst = np.asarray(abstained, dtype=bool)
    corr = np.asarray(correct, dtype=np.float64)
    if abst.size == 0:
        return None, None
    answered = ~abst
    coverage = float(answered.mean())
    risk = float(1.0 - corr[answered].mean()) if answered.any() else None
    return coverage, risk
