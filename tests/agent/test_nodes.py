"""Each node as a function of (state, context, configuration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.nodes import gate, intake, perceive, plan, reason, respond, retrieve, verify
from agent.resources import AgentContext, Resources

from .conftest import HISTORY, FakeVLM, make_config


@pytest.fixture
def cfg(bundle: Path):
    return make_config(bundle)


@pytest.fixture
def ctx(cfg):
    return AgentContext(resources=Resources(cfg, vlm=FakeVLM()))


def _merge(state: dict, update: dict) -> dict:
    out = dict(state)
    for key, value in update.items():
        if key in ("trace", "notes", "turns"):
            out[key] = [*out.get(key, []), *value]
        else:
            out[key] = value
    return out


def test_intake_new_case_resets_and_followup_keeps(ctx, cfg) -> None:
    old = {
        "turn": 1,
        "differential": [{"diagnosis": "X", "probability": 0.5, "citations": ["E1"]}],
        "evidence": [{"id": "E1"}],
        "verification": {"abstained": True, "abstain_reason": "low"},
    }
    up = intake({**old, "question": "What else could it be?", "history": "", "captions": []}, ctx, cfg)
    assert up["turn"] == 2 and up["followup"] and not up["new_case"]
    assert "differential" not in up  # kept from the previous turn
    assert up["abstained"] is True and up["abstain_reason"] == "low"  # the earlier decision stands
    assert up["trace"][0]["node"] == "intake" and up["trace"][0]["turn"] == 2
    up = intake({**old, "question": "And now?", "history": HISTORY, "captions": []}, ctx, cfg)
    assert up["new_case"] and not up["followup"]
    assert up["differential"] == [] and up["evidence"] == []


def test_gate_question_describing_a_case(ctx, cfg) -> None:
    question = "45-year-old woman with headaches and a dural mass: what is the diagnosis?"
    up = gate({"question": question, "new_case": False, "followup": False}, ctx, cfg)
    assert up["new_case"] and up["case_text"] == question and not up.get("abstained")
    up = gate({"question": "What does the literature say about meningioma?", "new_case": False}, ctx, cfg)
    assert not up.get("new_case") and not up.get("abstained") and up["intent"]["topic"] == "meningioma"


def test_gate_offdomain_question(ctx, cfg) -> None:
    up = gate({"question": "What's the weather like today?", "new_case": True}, ctx, cfg)
    assert up["abstained"] and up["intent"]["name"] == "offdomain"
    assert up["gate"]["blocked"] and "not about medical images" in up["abstain_reason"]


def test_gate_rejects_noise(cfg, noise, scan) -> None:
    ctx = AgentContext(resources=Resources(cfg, vlm=FakeVLM()), images=[("noise.png", noise)])
    up = gate({"question": "What is the most likely diagnosis?", "new_case": True}, ctx, cfg)
    assert up["abstained"] and "noise" in up["abstain_reason"] and up["gate"]["blocked"]
    mixed = AgentContext(
        resources=Resources(cfg, vlm=FakeVLM()), images=[("noise.png", noise), ("scan.png", scan)]
    )
    up = gate({"question": "What is the most likely diagnosis?", "new_case": True}, mixed, cfg)
    assert not up.get("abstained") and up["gate"]["accepted"]
    assert any("noise.png" in n["text"] for n in up["notes"])


def test_gate_without_input_abstains(ctx, cfg) -> None:
    up = gate(
        {"question": "What is the most likely diagnosis?", "new_case": False, "followup": False}, ctx, cfg
    )
    assert up["abstained"] and up["gate"]["blocked"]
    assert "no image, history" in up["abstain_reason"]


def test_perceive_findings_and_change(cfg, scan) -> None:
    prior = (scan // 2).astype(np.uint8)
    ctx = AgentContext(
        resources=Resources(cfg, vlm=FakeVLM()), images=[("s.png", scan)], priors=[("p.png", prior)]
    )
    up = perceive({"turn": 1, "gate": {"images": []}}, ctx, cfg)
    (f,) = up["findings"]
    assert f["id"] == "M1" and f["anomaly_score"] == pytest.approx(0.91)
    assert f["boxes"][0]["x1"] == pytest.approx(16.0) and f["caption"].startswith("Dural")
    assert up["change"]["id"] == "M2" and up["change"]["label"] == "worsening"


def test_perceive_skips_rejected_and_notes_missing_vlm(cfg, scan) -> None:
    ctx = AgentContext(resources=Resources(cfg.replace(use_vlm=False)), images=[("s.png", scan)])
    up = perceive({"turn": 1, "gate": {"images": []}}, ctx, cfg.replace(use_vlm=False))
    assert up["findings"][0]["analysis"] == "unavailable"
    assert any("unavailable" in n["text"] for n in up["notes"])
    ctx = AgentContext(resources=Resources(cfg, vlm=FakeVLM()), images=[("s.png", scan)])
    up = perceive(
        {"turn": 1, "gate": {"images": [{"role": "image", "index": 0, "accepted": False}]}}, ctx, cfg
    )
    assert up["findings"] == []


def test_plan_queries(ctx, cfg) -> None:
    state = {
        "question": "What is it?",
        "history": HISTORY,
        "captions": ["Axial T1 post contrast."],
        "intent": {"name": "diagnosis"},
        "findings": [
            {"id": "M1", "accepted": True, "caption": "Round mass.", "attributes": {"site": "frontal"}}
        ],
    }
    up = plan(state, ctx, cfg)
    by = {q["purpose"]: q for q in up["queries"]}
    assert [q["purpose"] for q in up["queries"]] == ["case", "captions", "discussions", "image findings"]
    assert "Axial T1" in by["case"]["text"] and HISTORY in by["case"]["text"]
    # the captions alone (the history's generic words would dominate), and the case against the discussions
    assert by["captions"]["text"] == "Axial T1 post contrast."
    assert (
        by["discussions"]["text"] == by["case"]["text"] and "disease_discussion" in by["discussions"]["kinds"]
    )
    assert "frontal" in by["image findings"]["text"] and by["image findings"]["weight"] < 1
    # without a history the captions are the case text: no duplicate query
    up = plan({**state, "history": ""}, ctx, cfg)
    assert [q["purpose"] for q in up["queries"]] == ["case", "discussions", "image findings"]


def _pipeline(ctx, cfg, state):
    for node in (plan, retrieve, reason, verify):
        state = _merge(state, node(state, ctx, cfg))
    return state


def test_retrieve_reason_verify(ctx, cfg, bundle_doc_ids) -> None:
    state = {
        "turn": 1,
        "question": "",
        "history": HISTORY,
        "captions": [],
        "intent": {"name": "diagnosis"},
        "findings": [],
    }
    state = _merge(state, plan(state, ctx, cfg))
    state = _merge(state, retrieve(state, ctx, cfg))
    assert state["evidence"] and all(e["doc_id"] in bundle_doc_ids for e in state["evidence"])
    assert [e["id"] for e in state["evidence"][:3]] == ["E1", "E2", "E3"]
    state = _merge(state, reason(state, ctx, cfg))
    probs = [c["probability"] for c in state["candidates"]]
    assert len(state["proposed"]) == 5 and sum(probs) <= 1.0 + 1e-6
    assert state["proposed"][0]["probability"] >= state["proposed"][-1]["probability"]
    state = _merge(state, verify(state, ctx, cfg.replace(abstain_threshold=0.0)))
    assert len(state["differential"]) == 5 and not state.get("abstained")
    state = _merge(state, verify(state, ctx, cfg.replace(abstain_threshold=0.99)))
    assert state["abstained"] and "below the 0.99" in state["abstain_reason"]


def test_discussions_query_is_restricted_and_ranks_become_features(ctx, cfg) -> None:
    state = {
        "turn": 1,
        "question": "",
        "history": HISTORY,
        "captions": ["Dural based mass with a dural tail."],
        "intent": {"name": "diagnosis"},
        "findings": [],
    }
    state = _merge(state, plan(state, ctx, cfg))
    state = _merge(state, retrieve(state, ctx, cfg))
    by_query = {}
    for e in state["evidence"]:
        for purpose, rank in e["query_ranks"].items():
            by_query.setdefault(purpose, []).append((rank, e["kind"]))
    assert set(by_query) == {"case", "captions", "discussions"}
    assert {kind for _, kind in by_query["discussions"]} == {"disease_discussion"}
    assert {kind for _, kind in by_query["case"]} > {"disease_discussion"}  # the case query is unrestricted
    state = _merge(state, reason(state, ctx, cfg))
    features = {c["label"]: c["features"] for c in state["candidates"]}
    assert features["Meningioma"]["qr_discussions"] > 0
    # a diagnosis that has a case report but no discussion is never supported by the discussions query
    assert (
        features["Vestibular schwannoma"]["qr_discussions"]
        == 0
        < features["Vestibular schwannoma"]["qr_case"]
    )


def test_verify_drops_uncited_claims(ctx, cfg) -> None:
    state = {
        "turn": 1,
        "evidence": [{"id": "E1", "doc_id": "d"}],
        "image_evidence": [],
        "findings": [],
        "proposed": [
            {
                "diagnosis": "Meningioma",
                "probability": 0.7,
                "citations": ["E1", "E7"],
                "rationale": "Tail [E1] [E7].",
            },
            {"diagnosis": "hacked", "probability": 0.9, "citations": ["E42"], "rationale": "obey"},
        ],
    }
    up = verify(state, ctx, cfg.replace(abstain_threshold=0.5))
    assert [d["diagnosis"] for d in up["differential"]] == ["Meningioma"]
    assert up["differential"][0]["citations"] == ["E1"] and "[E7]" not in up["differential"][0]["rationale"]
    assert up["verification"]["dropped"] == ["hacked"]


def test_respond_location_and_change(ctx, cfg) -> None:
    state = {
        "turn": 1,
        "question": "Where is the lesion?",
        "intent": {"name": "location"},
        "new_case": True,
        "findings": [
            {
                "id": "M1",
                "image": "s.png",
                "accepted": True,
                "boxes": [{"x1": 10.0, "y1": 12.0, "x2": 30.0, "y2": 33.0, "score": 0.9}],
                "attributes": {"site": "left frontal", "region": "left frontal"},
                "heatmap": "/srv/zebra/heatmaps/h.png",
            }
        ],
        "differential": [],
    }
    up = respond(state, ctx, cfg)
    text = up["answer"]["text"]
    assert "x 10-30, y 12-33" in text and "[M1]" in text
    assert "site: left frontal;" in text  # site and region are not repeated when they agree
    assert "heatmap: h.png" in text and "/srv/zebra" not in text  # no server paths in answers
    # a region inside the site is named once; low-confidence site words are left out, as in the caption
    finding = state["findings"][0]
    finding["attributes"] = {"site": "right frontal lobe", "region": "frontal lobe"}
    assert "site: right frontal lobe;" in respond(state, ctx, cfg)["answer"]["text"]
    finding["attributes"]["confidences"] = {"site": 0.25, "region": 0.25}
    text = respond(state, ctx, cfg)["answer"]["text"]
    assert "site:" not in text and "frontal" not in text and "x 10-30, y 12-33" in text
    # the box's position words (from the image model) are given with their convention
    finding["boxes"][0]["position"] = "midline posterior"
    text = respond(state, ctx, cfg)["answer"]["text"]
    assert "lies in the midline posterior part of the head (side by radiological convention" in text
    assert "x 10-30, y 12-33 px (confidence 0.90)" in text
    state.update(
        intent={"name": "change"}, change={"id": "M2", "statement": "Lesion larger than on the prior."}
    )
    up = respond(state, ctx, cfg)
    assert "Lesion larger" in up["answer"]["text"] and up["answer"]["change"].startswith("Lesion larger")
    assert up["turns"][0]["intent"] == "change"


def test_perception_query_uses_only_confident_attributes() -> None:
    from agent.evidence import perception_text

    finding = {
        "accepted": True,
        "caption": "Focal abnormality.",
        "attributes": {
            "site": "right frontal lobe",
            "signal": "hyperintense",
            "size_mm": 20.0,
            "confidences": {"site": 0.25, "signal": 0.8},
        },
    }
    text = perception_text([finding, {"accepted": False, "caption": "Rejected image."}])
    assert "hyperintense" in text and "Focal abnormality." in text
    assert "frontal" not in text and "Rejected" not in text and "20" not in text
