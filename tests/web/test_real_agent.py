"""The web app with the real diagnostic agent (``agent.api.Agent``) on a tiny hashed bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zebra_web.sse import parse_sse

pytestmark = pytest.mark.slow

DOCS = [
    {
        "id": "case-a",
        "kind": "case_report",
        "title": "Case A",
        "diagnosis": "Meningioma",
        "case_id": "A",
        "text": "45-year-old woman with headaches. CT shows a dural based extra-axial mass with a dural tail.",
    },
    {
        "id": "disc-gbm",
        "kind": "disease_discussion",
        "title": "Glioblastoma",
        "diagnosis": "Glioblastoma",
        "text": "Glioblastoma is an intra-axial mass with ring enhancement and necrosis.",
    },
    {
        "id": "case-d",
        "kind": "case_report",
        "title": "Case D",
        "diagnosis": "Appendicitis",
        "case_id": "D",
        "text": "CT shows a dilated appendix with periappendiceal fat stranding.",
    },
]


@pytest.fixture
def real_agent_app(make_app, tmp_path: Path):
    pytest.importorskip("agent.api")
    from agent.api import Agent
    from agent.configuration import Configuration
    from index_builder.build import build_bundle

    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    build_bundle(tmp_path / "bundle", [f"jsonl:{src}"], text_embedder="hash:64")

    def factory():
        config = Configuration.from_dict(
            {
                "bundle": str(tmp_path / "bundle"),
                "intent_embedder": "hash:256",
                "reasoner": "builtin",
                "verify_bundle": False,
                "save_heatmaps": True,
                "heatmap_dir": str(tmp_path / "heatmaps"),
            }
        )
        return Agent(config, checkpointer=None)

    return make_app(agent_factory=factory)


def test_real_agent_answers_through_the_web(real_agent_app, users, web, ct_small):
    with web.sign_in(real_agent_app, "bob") as c:
        study = web.upload(c, [("a.dcm", ct_small.read_bytes())]).json()
        s = c.post("/api/sessions", json={"study_id": study["id"]}).json()
        with c.stream(
            "POST",
            f"/api/sessions/{s['id']}/messages",
            json={"question": "What is the most likely diagnosis?", "image_index": 0, "history": "headaches"},
        ) as r:
            events = parse_sse("".join(r.iter_text()))
        assert events[-1][0] == "final", events[-1]
        answer = events[-1][1]["answer"]
        assert answer["text"] and "".join(d["text"] for k, d in events if k == "delta") == answer["text"]
        assert {d["diagnosis"] for d in answer["differential"]} <= {
            "Meningioma",
            "Glioblastoma",
            "Appendicitis",
        }
        assert all(0.0 <= d["probability"] <= 1.0 for d in answer["differential"])
        cited = {c["id"] for c in answer["citations"]}
        assert all(set(d["citations"]) <= cited for d in answer["differential"])
        assert all(c["doc_id"].startswith("jsonl:") for c in answer["evidence"]["documents"])
        history = c.get(f"/api/sessions/{s['id']}").json()["messages"]
        assert [m["role"] for m in history] == ["user", "assistant"]
