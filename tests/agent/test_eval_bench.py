"""The evaluation harness adapter, the agent evaluation and the benchmark."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from .conftest import HISTORY


@dataclass
class _Record:
    filename: str
    clinical_history: str = ""
    caption_text: str = ""
    meta: dict = field(default_factory=dict)


class _Dataset:
    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def load_image(self, record: _Record):
        from PIL import Image

        return Image.fromarray(self.image)


def test_predict_case_matches_the_harness_protocol(make_agent, scan) -> None:
    agent = make_agent(abstain_threshold=0.0)
    records = [_Record("a.png", HISTORY, "Axial T1 post contrast."), _Record("b.png", HISTORY, "")]
    pred = agent.predict_case("case1", records, _Dataset(scan))
    assert (
        len(pred["diagnoses"]) == 5 == len(pred["probabilities"]) and sum(pred["probabilities"]) <= 1 + 1e-6
    )
    assert set(pred["boxes"]) == {"a.png", "b.png"} and len(pred["boxes"]["a.png"][0]) == 5
    assert pred["captions"]["a.png"].startswith("Dural") and pred["abstained"] is False
    assert len(pred["extra"]["acr_codes"]) == 5 and pred["extra"]["evidence_docs"][0]
    json.dumps(pred)
    empty = agent.predict_case("case2", [_Record("c.png")], None)
    assert empty["abstained"] and "no input" in empty["reason"]


def test_evaluate_reports_agent_and_baseline(make_agent, scan, tmp_path: Path) -> None:
    from agent.evaluate import EvalCase, evaluate

    cases = [
        EvalCase("1", HISTORY, [], "Meningioma", [("s.png", lambda: scan)]),
        EvalCase("2", "Right lower quadrant pain and fever, dilated appendix.", [], "Appendicitis"),
    ]
    out = evaluate(make_agent(), cases, settings=["text", "images"], details_path=tmp_path / "d.jsonl")
    text = out["settings"]["text"]
    assert text["n_cases"] == 2 and out["settings"]["images"]["n_cases"] == 1
    assert text["agent"]["top5"] >= text["agent"]["top1"] and text["agent"]["top5"] == 1.0
    assert text["baseline"]["top5"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["setting"] for r in rows] == ["text", "text", "images"]
    with pytest.raises(Exception, match="Unknown setting"):
        evaluate(make_agent(), cases, settings=["video"])


def test_evaluate_unseen_hides_the_gold_disease_from_agent_and_baseline(make_agent, tmp_path: Path) -> None:
    from agent.evaluate import EvalCase, evaluate

    cases = [
        EvalCase("1", HISTORY, [], "Meningioma"),
        EvalCase("2", "Right lower quadrant pain and fever, dilated appendix.", [], "Appendicitis"),
    ]
    seen = evaluate(make_agent(), cases, settings=["text"])
    unseen = evaluate(make_agent(), cases, settings=["text"], unseen=True, details_path=tmp_path / "u.jsonl")
    assert seen["settings"]["text"]["agent"]["top5"] == 1.0 and "unseen" not in seen["settings"]["text"]
    text = unseen["settings"]["text"]
    assert text["agent"]["top5"] == 0.0 and text["baseline"]["top5"] == 0.0
    assert text["unseen"]["documents_hidden_min"] >= 1 and text["unseen"]["cases_with_nothing_hidden"] == []
    rows = [json.loads(line) for line in (tmp_path / "u.jsonl").read_text().splitlines()]
    assert rows[0]["hidden"]["documents"] == 2  # the meningioma case report and discussion of the test bundle
    assert all("meningioma" not in d.lower() for d in rows[0]["diagnoses"] + rows[0]["baseline"])


def test_bench_reports_percentiles(make_agent) -> None:
    from agent.bench import run_bench

    result = run_bench(make_agent(), 3)
    assert result["n"] == 3 and 0 < result["p50_s"] <= result["p95_s"] <= result["max_s"]
    assert {"retrieve", "reason", "verify"} <= set(result["per_node_p50_s"])


def test_dialogue_setting_replies_with_the_findings_sentences(make_agent, scan) -> None:
    from agent.evaluate import EvalCase, evaluate

    findings = "The mass is extra-axial and dural based with a dural tail. Patient is otherwise well."
    cases = [EvalCase("1", "Headaches.", [], "Meningioma", [("s.png", lambda: scan)], findings)]
    out = evaluate(make_agent(abstain_threshold=1.0), cases, settings=["images", "dialogue"])
    rows = out["_rows"]
    first, talk = rows["images"][0], rows["dialogue"][0]
    assert first["asked"] == [] and not first["replied"]  # only the dialogue setting answers questions
    assert talk["asked"] and talk["replied"]
    assert out["settings"]["dialogue"]["agent"]["asked_rate"] == 1.0
    # the fake VLM's image is of the head: every entry is consistent with it
    assert out["settings"]["images"]["agent"]["region_consistent"] == 1.0
    assert talk["regions"] is not None and "other" not in talk["regions"]


def test_compare_settings_is_paired_on_shared_cases() -> None:
    from zebra_cli.agent import compare_settings

    def row(case: str, rank: int | None) -> dict:
        return {"case_id": case, "agent_rank": rank}

    rows = {
        "history": [row("a", None), row("b", 2), row("c", 1), row("x", 1)],
        "images": [row("a", 3), row("b", 2), row("c", None)],
    }
    out = compare_settings(rows, k=5)["images-history"]
    assert out["n_cases"] == 3  # "x" ran only with history
    # top-5: images hit a, b (2/3); history hit b, c (2/3); top-1: 0/3 vs 1/3
    assert out["difference"] == {"top1": round(-1 / 3, 4), "top5": 0.0}
    lo, hi = out["ci95"]["top1"]
    assert lo <= -1 / 3 <= hi <= 0.0
