"""The builtin scoring model, its fit and calibration, the risk control, the back-off, the weights file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.features import FEATURES
from agent.reasoners.model import Case, ConditionalLogit, fit_temperature, fit_weights
from agent.risk import NEVER, min_answered, risk_table, threshold_for
from agent.taxonomy import Member, acr_region, backoff_category


def _synthetic_rows(n: int = 120, seed: int = 0) -> list[dict]:
    """Cases whose right candidate has a larger first feature, noisily."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        m = int(rng.integers(3, 8))
        x = rng.normal(size=(m, len(FEATURES)))
        right = int(rng.integers(0, m)) if rng.random() < 0.8 else -1
        if right >= 0:
            x[right, 0] += 2.0
        rows.append(
            {"case_id": str(i), "x": x.tolist(), "correct": [j == right for j in range(m)], "labels": []}
        )
    return rows


def test_fit_learns_the_informative_feature_and_probabilities_sum_below_one() -> None:
    rows = _synthetic_rows()
    cases = [Case(np.asarray(r["x"]), np.asarray(r["correct"])) for r in rows]
    model = fit_weights(cases, FEATURES, l2=1.0)
    assert model.weights[0] > 1.0 and np.all(np.abs(model.weights[1:]) < 0.5)
    probs, null = model.probabilities(cases[0].x)
    assert probs.sum() + null == pytest.approx(1.0) and probs.sum() < 1.0
    again = ConditionalLogit.from_dict(json.loads(json.dumps(model.to_dict())), expected=FEATURES)
    assert np.allclose(again.probabilities(cases[0].x)[0], probs)


def test_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(1)
    logits, targets = [], []
    for _ in range(400):
        z = rng.normal(size=4) * 3.0
        true_p = np.exp(z / 3.0) / np.exp(z / 3.0).sum()  # the truth is 3x less confident
        k = rng.choice(4, p=true_p)
        logits.append(z)
        targets.append(np.arange(4) == k)
    assert fit_temperature(logits, targets) == pytest.approx(3.0, rel=0.3)


def test_fit_from_rows_reports_calibration_and_risk_table() -> None:
    from agent.fit import fit_from_rows

    out = fit_from_rows(_synthetic_rows(150))
    cv = out["cv"]["oof"]
    assert 0.4 < cv["top1"] <= cv["top5"] <= 1.0 and cv["ece_top1"] < 0.15
    table = out["risk_control"]["table"]
    coverage = [r["coverage"] for r in table]
    assert coverage == sorted(coverage)  # thresholds go down, coverage goes up
    thresholds = out["risk_control"]["thresholds"]
    assert thresholds["0.7"] <= thresholds["0.5"] <= thresholds["0.3"]


def test_risk_threshold_is_certified() -> None:
    rng = np.random.default_rng(2)
    p = rng.random(2000)
    correct = rng.random(2000) < p  # perfectly calibrated
    table = risk_table(p, correct, delta=0.1)
    t = threshold_for(table, 0.3, 0.1)
    answered = p >= t
    assert 0.4 < t < 0.6 and (1 - correct[answered].mean()) <= 0.3  # exact risk (1 - t) / 2, plus a margin
    assert threshold_for(table, 0.0001, 0.1) == NEVER
    assert min_answered(0.3, 0.1) == 7


def test_backoff_pools_probability_in_the_deepest_shared_category() -> None:
    members = [
        Member("Glioblastoma", 0.30, "C71.9"),
        Member("Anaplastic astrocytoma", 0.25, "C71.9"),
        Member("Meningioma", 0.10, "D32.9"),
        Member("Abscess", 0.05, "G06.0"),
    ]
    got = backoff_category(members, 0.5)
    assert got["system"] == "icd10" and got["code"] == "C71.9" and got["probability"] == pytest.approx(0.55)
    got = backoff_category(members, 0.6)  # only the neoplasm chapter holds 0.65
    assert got["code"] == "II" and set(got["members"]) == {
        "Glioblastoma",
        "Anaplastic astrocytoma",
        "Meningioma",
    }
    assert backoff_category(members, 0.9) is None
    acr = [Member("A", 0.3, None, ["1.3"]), Member("B", 0.3, None, ["1.1"]), Member("C", 0.3, None, ["7.2"])]
    got = backoff_category(acr, 0.5)
    assert got["system"] == "acr" and got["code"] == "1" and "Skull" in got["name"]
    assert acr_region("7.21") == "7" and acr_region("n/a") is None


def test_committed_weights_file() -> None:
    from agent.reasoners.builtin import DEFAULT_WEIGHTS, BuiltinReasoner

    data = json.loads(Path(DEFAULT_WEIGHTS).read_text())
    assert data["data"]["split"] == "train" and data["data"]["n_cases"] >= 100
    assert data["features"] == list(FEATURES) and "zebra agent fit" in data["command"]
    reasoner = BuiltinReasoner()
    assert 0.0 < reasoner.threshold() <= 1.0
    assert reasoner.threshold(0.7) <= reasoner.threshold(0.4)


def test_missing_weights_is_a_typed_error(tmp_path: Path) -> None:
    from agent.errors import ReasonerWeightsError
    from agent.reasoners.builtin import BuiltinReasoner

    with pytest.raises(ReasonerWeightsError) as exc:
        BuiltinReasoner(tmp_path / "nope.json")
    assert "zebra agent fit" in exc.value.hint
    (tmp_path / "bad.json").write_text('{"model": {"features": ["a"], "mean": [], "std": [], "weights": []}}')
    with pytest.raises(ReasonerWeightsError):
        BuiltinReasoner(tmp_path / "bad.json")


def test_fit_refuses_the_dev_split(tmp_path: Path) -> None:
    from agent.errors import AgentConfigError
    from agent.fit import load_medpix_cases

    with pytest.raises(AgentConfigError, match="dev"):
        load_medpix_cases(tmp_path, "dev")


def test_vectorised_objective_equals_the_per_case_one() -> None:
    from agent.reasoners.model import _case_loss_grad, _Stacked

    rows = _synthetic_rows(40, seed=3)
    cases = [Case(np.asarray(r["x"]), np.asarray(r["correct"], dtype=bool)) for r in rows]
    cases.append(Case(np.zeros((0, len(FEATURES))), np.zeros(0, dtype=bool)))  # no candidate at all
    rng = np.random.default_rng(4)
    w, b = rng.normal(size=len(FEATURES)), 0.3
    loss, grad, grad_b = 0.0, np.zeros(len(FEATURES)), 0.0
    for case in cases:
        li, gi, gbi = _case_loss_grad(w, b, case.x, case.correct)
        loss, grad, grad_b = loss + li, grad + gi, grad_b + gbi
    got = _Stacked([c.x for c in cases], cases, len(FEATURES)).loss_grad(w, b)
    assert got[0] == pytest.approx(loss, rel=1e-12)
    assert np.allclose(got[1], grad, atol=1e-10) and got[2] == pytest.approx(grad_b, abs=1e-10)


def test_fill_differential_tops_up_without_duplicates() -> None:
    from agent.nodes.reason import fill_differential

    proposed = [{"diagnosis": "Meningioma", "probability": 0.5, "citations": ["E1"]}]
    ranked = [
        {"diagnosis": "Atypical meningioma", "probability": 0.4, "citations": ["E1"]},
        {"diagnosis": "Dural metastasis", "probability": 0.2, "citations": ["E2"]},
        {"diagnosis": "Hemangiopericytoma", "probability": 0.1, "citations": ["E3"]},
        {"diagnosis": "Schwannoma", "probability": 0.05, "citations": ["E4"]},
    ]
    out = fill_differential(proposed, ranked, 3)
    assert [d["diagnosis"] for d in out] == ["Meningioma", "Dural metastasis", "Hemangiopericytoma"]
    assert "filled" not in out[0] and out[1]["filled"] is True
    assert fill_differential(proposed, ranked, 1) == proposed
