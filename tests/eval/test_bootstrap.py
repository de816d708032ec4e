"""Case-level bootstrap: determinism, sensible intervals, paired deltas."""

from __future__ import annotations

import numpy as np
import pytest

from eval.bootstrap import bootstrap_ci, paired_bootstrap, resample_indices


def _mean(values: np.ndarray):
    return lambda idx: {"mean": float(values[idx].mean()) if len(idx) else None}


def test_same_seed_same_intervals_other_seed_differs() -> None:
    values = np.random.default_rng(0).random(50)
    a = bootstrap_ci(50, _mean(values), n_resamples=300, seed=7)
    b = bootstrap_ci(50, _mean(values), n_resamples=300, seed=7)
    c = bootstrap_ci(50, _mean(values), n_resamples=300, seed=8)
    assert a == b
    assert a != c
    np.testing.assert_array_equal(resample_indices(10, 5, 3), resample_indices(10, 5, 3))


def test_interval_contains_the_mean_and_shrinks_with_more_cases() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.random(20), rng.random(2000)
    ci_small = bootstrap_ci(20, _mean(small), n_resamples=400)["mean"]
    ci_large = bootstrap_ci(2000, _mean(large), n_resamples=400)["mean"]
    assert ci_small[0] <= small.mean() <= ci_small[1]
    assert ci_large[1] - ci_large[0] < ci_small[1] - ci_small[0]


def test_undefined_metric_gives_none() -> None:
    out = bootstrap_ci(5, lambda idx: {"x": None}, n_resamples=20)
    assert out == {"x": None}


def test_paired_bootstrap_detects_a_consistent_difference() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(100)
    b = a - 0.1 + rng.normal(0, 0.01, 100)  # B is A minus 0.1, case by case
    ci = paired_bootstrap(100, _mean(a), _mean(b), n_resamples=300)["mean"]
    assert 0 < ci[0] < 0.1 < ci[1] < 0.2
    assert ci[1] - ci[0] < 0.02  # pairing removes the between-case spread
    with pytest.raises(KeyError):
        paired_bootstrap(10, _mean(a[:10]), _mean(b[:10]), n_resamples=10)["other"]
