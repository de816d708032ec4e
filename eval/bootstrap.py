"""Case-level bootstrap confidence intervals, plain and paired.

Cases (not images) are the resampling unit, because a case's images are not independent. Each of
``n_resamples`` resamples draws ``n`` case indices with replacement from a ``numpy`` generator seeded with
``seed`` (so the same inputs always give the same intervals); the statistic is recomputed on each resample and
the interval is the ``alpha / 2`` and ``1 - alpha / 2`` percentiles (linear interpolation) of the values that
are defined (a metric can be undefined on a resample, e.g. mAP when no drawn case has gold boxes). An interval
is ``None`` when the metric is undefined on every resample.

The paired bootstrap for comparing two runs draws the *same* indices for both and takes percentiles of the
per-resample differences ``A - B``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

#: Default number of resamples.
DEFAULT_RESAMPLES = 1000
#: Default seed.
DEFAULT_SEED = 0

Statistic = Callable[[np.ndarray], Mapping[str, float | None]]


def resample_indices(n: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """``(n_resamples, n)`` case indices drawn with replacement from a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    if n == 0:
        return np.zeros((n_resamples, 0), dtype=np.int64)
    return rng.integers(0, n, size=(n_resamples, n), dtype=np.int64)


def _interval(values: list[float], alpha: float) -> list[float] | None:
    if not values:
        return None
    lo, hi = np.percentile(np.asarray(values, dtype=np.float64), [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return [float(lo), float(hi)]


def bootstrap_ci(
    n: int,
    statistic: Statistic,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    alpha: float = 0.05,
) -> dict[str, list[float] | None]:
    """Percentile intervals of every key ``statistic`` returns.

    Args:
        n: Number of cases.
        statistic: Maps an index array (cases, possibly repeated) to ``{metric: value or None}``.
        n_resamples: Resamples.
        seed: Generator seed.
        alpha: ``1 - confidence level``.

    Returns:
        ``{metric: [lo, hi]}`` or ``None`` for metrics never defined.
    """
    samples: dict[str, list[float]] = {}
    for idx in resample_indices(n, n_resamples, seed):
        for key, value in statistic(idx).items():
            bucket = samples.setdefault(key, [])
            if value is not None and np.isfinite(value):
                bucket.append(float(value))
    return {key: _interval(values, alpha) for key, values in samples.items()}


def paired_bootstrap(
    n: int,
    statistic_a: Statistic,
    statistic_b: Statistic,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    alpha: float = 0.05,
) -> dict[str, list[float] | None]:
    """Percentile intervals of ``A - B`` with the same resampled cases for both (module docstring)."""
    samples: dict[str, list[float]] = {}
    for idx in resample_indices(n, n_resamples, seed):
        a, b = statistic_a(idx), statistic_b(idx)
        for key in a:
            bucket = samples.setdefault(key, [])
            va, vb = a.get(key), b.get(key)
            if va is not None and vb is not None and np.isfinite(va) and np.isfinite(vb):
                bucket.append(float(va) - float(vb))
    return {key: _interval(values, alpha) for key, values in samples.items()}
