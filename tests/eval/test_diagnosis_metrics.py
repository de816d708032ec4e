"""Top-k, ECE, reliability data, risk-coverage, AURC and the operating point, hand-computed."""

from __future__ import annotations

import numpy as np
import pytest

from eval.metrics.diagnosis import (
    aurc,
    expected_calibration_error,
    hit_rank,
    operating_point,
    reliability_data,
    risk_coverage,
    topk_accuracy,
)


def test_hit_rank_and_topk() -> None:
    same = lambda a, b: a.lower() == b.lower()  # noqa: E731
    assert hit_rank(["x", "Meningioma", "y"], "meningioma", same) == 2
    assert hit_rank(["x"] * 6 + ["meningioma"], "meningioma", same) is None  # only the top 5 count
    assert hit_rank([], "meningioma", same) is None
    assert topk_accuracy([1, 2, None, 6], 1) == pytest.approx(0.25)
    assert topk_accuracy([1, 2, None, 6], 5) == pytest.approx(0.5)
    assert topk_accuracy([], 1) is None


def test_ece_hand_computed() -> None:
    # bins (15 equal-width): 0.9 -> 13, 0.6 -> 9, 0.3 -> 4
    ece = expected_calibration_error([0.9, 0.9, 0.6, 0.3], [1, 0, 1, 0])
    assert ece == pytest.approx(2 / 4 * 0.4 + 1 / 4 * 0.4 + 1 / 4 * 0.3)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == pytest.approx(0.0)  # 1.0 is in the last bin
    assert expected_calibration_error([], []) is None


def test_reliability_data_bins() -> None:
    bins = reliability_data([0.9, 0.9, 0.6, 1.0], [1, 0, 1, 1])
    assert len(bins) == 15
    assert bins[13]["count"] == 2 and bins[13]["accuracy"] == pytest.approx(0.5)
    assert bins[14]["count"] == 1 and bins[14]["confidence"] == pytest.approx(1.0)
    assert bins[0]["count"] == 0 and bins[0]["accuracy"] is None


def test_risk_coverage_and_aurc() -> None:
    cov, risk = risk_coverage([0.6, 0.9, 0.7, 0.8], [1, 1, 1, 0])
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.5, 1 / 3, 0.25])
    assert aurc([0.6, 0.9, 0.7, 0.8], [1, 1, 1, 0]) == pytest.approx((0 + 0.5 + 1 / 3 + 0.25) / 4)
    # a perfectly ranked predictor has the lower AURC
    assert aurc([0.9, 0.8, 0.7, 0.6], [1, 1, 1, 0]) < aurc([0.6, 0.9, 0.7, 0.8], [1, 1, 1, 0])


def test_operating_point() -> None:
    assert operating_point([False, True, False, True], [1, 0, 0, 1]) == (
        pytest.approx(0.5),
        pytest.approx(0.5),
    )
    assert operating_point([True, True], [1, 0]) == (0.0, None)
    assert operating_point([], []) == (None, None)


def test_region_consistency_of_the_top5_by_hand() -> None:
    """region_consistent_top5: summed over the cases whose prediction names an imaged region."""
    from types import SimpleNamespace

    import numpy as np

    from eval.scoring import _matrix, aggregate, score_case

    rec = [
        SimpleNamespace(
            filename="a.png", final_diagnosis="Meningioma", meta={}, gold_boxes=[], caption_text=""
        )
    ]

    def pred(regions, imaged="head"):
        return {
            "diagnoses": [f"d{i}" for i in range(len(regions))],
            "probabilities": [0.1] * len(regions),
            "abstained": True,
            "extra": {"imaged_region": imaged, "regions": regions},
        }

    same = lambda a, b: a == b  # noqa: E731
    scores = [
        score_case(
            "a",
            pred(["head", "other", "unknown", "head", "head", "other"]),
            rec,
            same=same,
            tasks=["diagnosis"],
        ),
        score_case("b", pred(["head", "systemic"]), rec, same=same, tasks=["diagnosis"]),
        score_case(
            "c", pred(["other"], imaged=None), rec, same=same, tasks=["diagnosis"]
        ),  # no image: not counted
    ]
    out = aggregate(_matrix(scores), ["diagnosis"])
    # top-5 of a: 4 of 5 consistent; b: 2 of 2 -> 6 / 7
    assert np.isclose(out["region_consistent_top5"], 6 / 7)
    assert aggregate(_matrix(scores[2:]), ["diagnosis"])["region_consistent_top5"] is None
