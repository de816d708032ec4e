"""Reciprocal rank fusion and MMR on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.fusion import reciprocal_rank_fusion
from retrieval.mmr import mmr_select
from zebra.errors import ConfigError


def test_rrf_exact_order_and_scores() -> None:
    fused = reciprocal_rank_fusion({"dense": ["a", "b", "c"], "bm25": ["c", "a", "d"]}, k=60)
    expected = {
        "a": 1 / 61 + 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "b": 1 / 62,
        "d": 1 / 63,
    }
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    for item, score in fused:
        assert score == pytest.approx(expected[item], abs=1e-12)


def test_rrf_weights_and_k_change_the_order() -> None:
    rankings = {"dense": ["x", "y"], "bm25": ["y", "z"]}
    # equal weights: y is in both lists and wins
    assert reciprocal_rank_fusion(rankings, k=1)[0][0] == "y"
    # y: 1/(1+2) + 1/(1+1) = 0.8333; x: 5/(1+1) = 2.5 with dense weighted 5
    fused = dict(reciprocal_rank_fusion(rankings, k=1, weights={"dense": 5.0}))
    assert fused["x"] == pytest.approx(2.5)
    assert fused["y"] == pytest.approx(5 / 3 + 1 / 2)
    assert fused["z"] == pytest.approx(1 / 3)


def test_rrf_ties_break_by_best_rank_then_first_seen_and_duplicates_count_once() -> None:
    # p is rank 1 in dense, q rank 1 in bm25: equal scores, equal best rank -> dense listed first
    fused = reciprocal_rank_fusion({"dense": ["p", "p", "r"], "bm25": ["q"]}, k=60)
    assert [i for i, _ in fused] == ["p", "q", "r"]
    assert fused[0][1] == pytest.approx(1 / 61)  # the repeated "p" counted once
    assert fused[2][1] == pytest.approx(1 / 63)  # "r" keeps its position 3


def test_rrf_rejects_bad_parameters() -> None:
    with pytest.raises(ConfigError):
        reciprocal_rank_fusion({"a": ["x"]}, k=0)
    with pytest.raises(ConfigError):
        reciprocal_rank_fusion({"a": ["x"]}, weights={"a": -1})


def _unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_mmr_prefers_a_diverse_item_over_a_near_duplicate() -> None:
    vectors = np.stack([_unit(1, 0, 0), _unit(1, 0.01, 0), _unit(0, 1, 0)])
    relevance = np.array([0.9, 0.89, 0.6])
    picks = mmr_select(vectors, relevance, k=2, lambda_=0.5)
    assert [i for i, _ in picks] == [0, 2]
    # second pick score: 0.5 * 0.6 - 0.5 * cos(v2, v0) = 0.3 - 0
    assert picks[1][1] == pytest.approx(0.3, abs=1e-6)
    # lambda = 1 is the plain relevance order (keeps the near duplicate)
    assert [i for i, _ in mmr_select(vectors, relevance, k=2, lambda_=1.0)] == [0, 1]


def test_mmr_validates_inputs() -> None:
    with pytest.raises(ConfigError):
        mmr_select(np.zeros((2, 3)), np.zeros(2), k=1, lambda_=1.5)
    with pytest.raises(ConfigError):
        mmr_select(np.zeros((3, 3)), np.zeros(2), k=1)
    assert mmr_select(np.zeros((0, 3)), np.zeros(0), k=3) == []
