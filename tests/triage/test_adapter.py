"""The agent adapter: mapping the agent's Answer, analyser specs, the deterministic fake analyser."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.agent_adapter import AnalyserSpec, analysis_from_answer, create_analyser, parse_change
from triage.errors import AnalyserError
from triage.types import WorkItem
from zebra.errors import BackendNotFoundError, NotFoundError


def test_answer_maps_onto_analysis(tmp_path: Path) -> None:
    from agent.answer import Answer, DifferentialEntry

    overlay = tmp_path / "heat.png"
    overlay.write_bytes(b"\x89PNG fake")
    answer = Answer(
        text="...",
        differential=[
            DifferentialEntry("Hemangioblastoma", 0.61, ["E1", "I2"]),
            DifferentialEntry("Ependymoma", 0.2),
        ],
        abstained=False,
        findings=[
            {
                "gate": {
                    "accepted": True,
                    "kind": "medical",
                    "scores": {"ood_score": 1.4, "ood_threshold": 2.0},
                },
                "anomaly_score": 0.4,
                "boxes": [{"x1": 1, "y1": 2, "x2": 3, "y2": 4, "score": 0.9}],
                "caption": "Cystic lesion.",
                "heatmap": str(overlay),
                "change": {"confidence": 0.83},
            },
            {"gate": {"accepted": True, "kind": "medical", "scores": {}}, "anomaly_score": 0.9},
        ],
        change="Lesion larger than on the prior (area +35%).",
        citations=[
            {"id": "I1", "score": 0.71},
            {"id": "E1", "score": 0.99},
            {"id": "I2", "scores": {"dense": 0.88}},
        ],
    )
    a = analysis_from_answer(answer)
    assert a.differential[0] == {
        "diagnosis": "Hemangioblastoma",
        "probability": 0.61,
        "citations": ["E1", "I2"],
    }
    assert a.top_probability == pytest.approx(0.61)
    assert a.anomaly_score == pytest.approx(0.9) and a.ood_score == pytest.approx(0.7)
    assert a.boxes[0]["score"] == 0.9 and a.caption == "Cystic lesion."
    assert (a.change_label, a.change_confidence) == ("worsening", pytest.approx(0.83))
    assert a.nearest_similarity == pytest.approx(0.88)  # image citations only, best one
    assert a.overlay_png == overlay.read_bytes()
    # The dictionary form maps the same way.
    assert analysis_from_answer(answer.to_dict()).differential == a.differential
    # The graph state's structured change and image evidence win over the answer's sentence and citations.
    state = {
        "change": {"label": "stable", "confidence": 0.66, "statement": "Unchanged."},
        "image_evidence": [
            {"id": "I1", "via": "image", "score": 0.93, "diagnosis": "Hemangioblastoma"},
            {"id": "I2", "via": "image_text", "score": 0.99, "diagnosis": "Other"},
        ],
        "candidates": [
            {"label": "Ependymoma", "features": {"dense_best": 0.9}},
            {"label": "hemangioblastoma", "features": {"dense_best": 0.42}},
        ],
    }
    b = analysis_from_answer(answer, state)
    assert (b.change_label, b.change_confidence, b.change_statement) == ("stable", 0.66, "Unchanged.")
    assert b.nearest_similarity == pytest.approx(0.93) and b.nearest_diagnosis == "Hemangioblastoma"
    assert b.text_support == pytest.approx(0.42) and a.text_support is None


def test_gate_ood_is_distance_over_threshold() -> None:
    from triage.agent_adapter import gate_ood

    assert gate_ood({"ood_score": 3.0, "ood_threshold": 4.0}) == pytest.approx(0.75)
    assert gate_ood({"ood_score": 9.0, "ood_threshold": 4.0}) == 1.0
    assert gate_ood({"lag1_correlation": 0.9}) is None


def test_gate_rejection_and_change_forms() -> None:
    a = analysis_from_answer(
        {
            "findings": [{"gate": {"accepted": False, "kind": "natural_photo"}}],
            "abstained": True,
            "abstain_reason": "Not a medical image.",
        }
    )
    assert not a.gate_accepted and a.gate_kind == "natural_photo" and a.abstained and a.differential == []
    assert parse_change({"label": "improved", "confidence": 0.7, "statement": "Smaller."}) == (
        "improved",
        0.7,
        "Smaller.",
    )
    assert parse_change("No significant change since the prior.")[0] == "stable"
    assert parse_change("The lesion decreased in size.")[0] == "improved"
    assert parse_change(None) == (None, None, None)


def test_unknown_analyser_and_bad_fake_options() -> None:
    with pytest.raises(BackendNotFoundError, match="Did you mean 'fake'"):
        create_analyser(AnalyserSpec(analyser="fak"))
    with pytest.raises(AnalyserError):
        create_analyser(AnalyserSpec(analyser="fake:explode=1"))


def test_fake_analyser_is_deterministic_and_reads_through_intake(csv_worklist: Path, zebra_env: Path) -> None:
    from triage.worklist import read_worklist

    items = read_worklist(csv_worklist)
    one, two = create_analyser(AnalyserSpec(analyser="fake")), create_analyser(AnalyserSpec(analyser="fake"))
    first, second = one.analyse(items[0]), two.analyse(items[0])
    assert first.differential == second.differential and first.anomaly_score == second.anomaly_score
    assert first.change_label in ("worsening", "stable", "improved")  # item 0 has a prior
    assert one.analyse(items[1]).change_label is None
    assert (
        first.image is not None and first.heatmap is not None and first.heatmap.shape == first.image.shape[:2]
    )
    failing = create_analyser(AnalyserSpec(analyser="fake:fail=ACC0001"))
    with pytest.raises(AnalyserError):
        failing.analyse(items[1])
    with pytest.raises(NotFoundError):
        one.analyse(
            WorkItem(item_key="x", accession=None, study_path=str(csv_worklist.parent / "missing.png"))
        )
