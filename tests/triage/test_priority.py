"""The priority formula on hand-made analyses."""

from __future__ import annotations

import pytest

from triage.priority import PriorityWeights, components, drivers_text, rarity_from_similarity, score, sort_key
from triage.types import Analysis


def _analysis(**kw) -> Analysis:
    base = {
        "differential": [{"diagnosis": "A", "probability": 0.8}],
        "anomaly_score": 0.5,
        "nearest_similarity": 0.95,
        "ood_score": 0.0,
    }
    base.update(kw)
    return Analysis(**base)


def test_formula_matches_the_documented_weights() -> None:
    a = _analysis(
        anomaly_score=0.9,
        nearest_similarity=0.725,
        change_label="worsening",
        change_confidence=0.8,
        ood_score=0.2,
    )
    comps = components(a)
    assert comps == pytest.approx(
        {"anomaly": 0.9, "change": 0.8, "rarity": 0.5, "uncertainty": 0.2, "ood": 0.2}
    )
    expected = 100 * (0.30 * 0.9 + 0.25 * 0.8 + 0.20 * 0.5 + 0.15 * 0.2 + 0.10 * 0.2)
    result = score(a)
    assert result["score"] == pytest.approx(expected, abs=1e-3)
    names = [d["name"] for d in result["drivers"]]
    assert names == ["anomaly", "change", "rarity", "uncertainty", "ood"]
    points = [d["points"] for d in result["drivers"]]
    assert points == sorted(points, reverse=True) and sum(points) == pytest.approx(expected, abs=1e-2)
    assert drivers_text(result).startswith("anomaly 27.0; change 20.0")


def test_worsening_outranks_stable_and_improved() -> None:
    worse = score(_analysis(change_label="worsening", change_confidence=0.9))["score"]
    stable = score(_analysis(change_label="stable", change_confidence=0.9))["score"]
    improved = score(_analysis(change_label="improved", change_confidence=0.9))["score"]
    no_prior = score(_analysis())["score"]
    assert worse > stable == improved == no_prior
    assert worse - stable == pytest.approx(100 * 0.25 * 0.9, abs=1e-3)


def test_low_confidence_and_abstention_raise_priority() -> None:
    confident = score(_analysis(differential=[{"diagnosis": "A", "probability": 0.95}]))["score"]
    unsure = score(_analysis(differential=[{"diagnosis": "A", "probability": 0.30}]))["score"]
    abstained = score(_analysis(differential=[{"diagnosis": "A", "probability": 0.95}], abstained=True))[
        "score"
    ]
    nothing = score(_analysis(differential=[]))["score"]
    assert confident < unsure < abstained == nothing


def test_rarity_from_image_similarity_and_text_support() -> None:
    assert rarity_from_similarity(0.99) == 0.0
    assert rarity_from_similarity(0.50) == 1.0
    assert rarity_from_similarity(0.725) == pytest.approx(0.5)
    assert rarity_from_similarity(None) is None and rarity_from_similarity(float("nan")) is None
    # The larger of image and text rarity counts.
    assert components(_analysis(nearest_similarity=0.95, text_support=0.3))["rarity"] == pytest.approx(0.7)
    assert components(_analysis(nearest_similarity=None, text_support=None))["rarity"] is None


def test_gate_rejection_is_full_ood_and_missing_components_add_nothing() -> None:
    rejected = _analysis(
        gate_accepted=False,
        gate_kind="natural_photo",
        anomaly_score=None,
        differential=[],
        nearest_similarity=None,
    )
    result = score(rejected)
    assert result["components"]["ood"] == 1.0 and result["components"]["anomaly"] is None
    assert result["score"] == pytest.approx(100 * (0.15 + 0.10))
    assert {d["name"] for d in result["drivers"]} == {"uncertainty", "ood"}


def test_custom_weights_and_validation() -> None:
    only_anomaly = PriorityWeights(anomaly=1, change=0, rarity=0, uncertainty=0, ood=0)
    assert score(_analysis(anomaly_score=0.42), only_anomaly)["score"] == pytest.approx(42.0)
    with pytest.raises(ValueError):
        PriorityWeights(anomaly=-1)
    with pytest.raises(ValueError):
        PriorityWeights(anomaly=0, change=0, rarity=0, uncertainty=0, ood=0)


def test_sort_key_orders_by_score_then_worsening_then_key() -> None:
    rows = [
        (50.0, "stable", "b"),
        (50.0, "worsening", "c"),
        (70.0, None, "z"),
        (None, None, "a"),
        (50.0, None, "a"),
    ]
    ordered = sorted(rows, key=lambda r: sort_key(*r))
    assert ordered == [
        (70.0, None, "z"),
        (50.0, "worsening", "c"),
        (50.0, None, "a"),
        (50.0, "stable", "b"),
        (None, None, "a"),
    ]
