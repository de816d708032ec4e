"""End to end through the compiled graph: the differential, abstentions, sessions, prompt injection, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import HISTORY, INJECTION


def test_differential_cites_bundle_documents(make_agent, bundle_doc_ids) -> None:
    agent = make_agent(abstain_threshold=0.0)
    answer = agent.ask("What is the most likely diagnosis?", history=HISTORY)
    assert answer.intent == "diagnosis" and not answer.abstained
    assert len(answer.differential) == 5
    probs = [d.probability for d in answer.differential]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    table = {c["id"]: c for c in answer.citations}
    for entry in answer.differential:
        assert entry.citations and all(c in table for c in entry.citations)
        for c in entry.citations:
            assert table[c]["doc_id"] in bundle_doc_ids
            assert table[c]["quote"]
    assert answer.primary.diagnosis in answer.text and "[E" in answer.text
    assert [t["node"] for t in answer.trace] == [
        "intake",
        "gate",
        "perceive",
        "plan",
        "retrieve",
        "reason",
        "verify",
        "respond",
    ]
    assert (
        answer.timings["total"]
        >= sum(v for k, v in answer.timings.items() if k not in ("total", "load_inputs")) - 1e-3
    )
    json.dumps(answer.to_dict())  # JSON-serialisable, trace included


def test_image_findings_reach_the_answer(make_agent, scan) -> None:
    agent = make_agent(abstain_threshold=0.0, save_heatmaps=True)
    answer = agent.ask(
        "What is the most likely diagnosis?", images=[("scan.png", scan)], priors=[scan], history=HISTORY
    )
    (f,) = answer.findings
    assert f["image"] == "scan.png" and f["anomaly_score"] == pytest.approx(0.91)
    assert Path(f["heatmap"]).is_file()
    assert answer.change == "Lesion larger than on the prior (area +35%)."
    assert "[M1]" in answer.text and "[M2]" in answer.text
    assert {c["id"] for c in answer.citations} >= {"M1", "M2"}


def test_noise_image_abstains_with_reason(make_agent, noise) -> None:
    answer = make_agent().ask("What is the most likely diagnosis?", images=[noise], history=HISTORY)
    assert answer.abstained and answer.differential == []
    assert "noise" in answer.abstain_reason and "noise" in answer.text
    assert [t["node"] for t in answer.trace] == ["intake", "gate", "respond"]


def test_offdomain_question_abstains_with_reason(make_agent) -> None:
    answer = make_agent().ask("What's the weather like today?", history=HISTORY)
    assert answer.intent == "offdomain" and answer.abstained
    assert "not about medical images" in answer.abstain_reason
    assert "weather" in answer.text and answer.differential == [] and answer.citations == []


def test_backoff_to_a_parent_category(make_agent) -> None:
    # every candidate is uncertain, but the brain region (ACR 1) holds the mass together
    top = make_agent(abstain_threshold=0.0).ask("", history=HISTORY).primary.probability
    threshold = round(top + 0.02, 2)
    answer = make_agent(abstain_threshold=threshold).ask(
        "What is the most likely diagnosis?", history=HISTORY
    )
    assert answer.abstained and answer.primary.probability < threshold
    assert answer.backoff is not None and answer.backoff["probability"] >= threshold
    assert len(answer.backoff["members"]) >= 2 and answer.backoff["name"] in answer.text


def test_followup_in_the_same_session(make_agent, tmp_path: Path) -> None:
    from agent.checkpoint import sqlite_saver

    agent = make_agent(checkpointer=sqlite_saver(tmp_path / "cp.sqlite"), abstain_threshold=0.0)
    first = agent.ask("What is the most likely diagnosis?", history=HISTORY)
    second = agent.ask("What else could it be?", thread_id=first.thread_id)
    assert second.intent == "differential"
    assert [d.diagnosis for d in second.differential] == [d.diagnosis for d in first.differential]
    assert any("earlier in this session" in n for n in second.notes)
    assert [t["node"] for t in second.trace] == ["intake", "gate", "respond"]
    third = agent.ask("What did you say earlier?", thread_id=first.thread_id)
    assert third.intent == "followup" and "What else could it be?" in third.text
    assert first.primary.diagnosis in third.text
    # a new session knows nothing
    fresh = agent.ask("What else could it be?")
    assert fresh.abstained and fresh.differential == []
    session = agent.session(first.thread_id)
    assert [t["turn"] for t in session["turns"]] == [1, 2, 3]
    # a second agent on the same file sees the stored session (persistence, not memory)
    again = make_agent(checkpointer=sqlite_saver(tmp_path / "cp.sqlite"))
    assert len(again.session(first.thread_id)["turns"]) == 3


def test_literature_question(make_agent) -> None:
    answer = make_agent().ask("What does the literature say about meningioma?")
    assert answer.intent == "literature" and not answer.abstained
    lit = [c for c in answer.citations if c["id"].startswith("L")]
    assert lit and all(c["kind"] in ("disease_discussion", "phenotype_profile") for c in lit)
    assert "meningioma" in answer.text.lower()


def test_prompt_injection_is_never_executed_by_builtin(make_agent) -> None:
    answer = make_agent(abstain_threshold=0.0).ask("What is the most likely diagnosis?", history=HISTORY)
    injected = [c for c in answer.citations if c.get("doc_id") == "jsonl:case-e"]
    assert injected, "the injected document should be retrieved for this query"
    assert all("hacked" not in d.diagnosis.lower() for d in answer.differential)
    assert not answer.text.lower().startswith("hacked")
    # the instruction can only appear inside a quotation of the document
    outside = answer.text
    for d in answer.differential:
        outside = outside.replace(d.rationale, "")
    assert INJECTION not in outside


def test_cli_ask_json(bundle: Path, zebra_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import zebra_cli.agent  # noqa: F401  (registers the commands)
    from zebra_cli import main

    main(
        [
            "ask",
            "--json",
            "--bundle",
            str(bundle),
            "--history",
            HISTORY,
            "--no-session",
            "--threads",
            "0",
            "-o",
            "intent_embedder=hash:256",
            "-o",
            "vlm=testfake",
            "-o",
            "abstain_threshold=0",
            "What is the most likely diagnosis?",
        ]
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["intent"] == "diagnosis" and len(payload["differential"]) == 5
    assert "trace" not in payload and payload["timings"]["total"] > 0


def test_cli_bad_option_is_a_typed_error(
    bundle: Path, zebra_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zebra_cli.agent  # noqa: F401
    from zebra_cli import main

    with pytest.raises(SystemExit) as exc:
        main(["ask", "--bundle", str(bundle), "-o", "nonsense=1", "hi"])
    assert exc.value.code == 2
    assert "Unknown agent option" in capsys.readouterr().err


def test_cli_session_and_trace(bundle: Path, zebra_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import zebra_cli.agent  # noqa: F401
    from zebra_cli import main

    common = [
        "--bundle",
        str(bundle),
        "--threads",
        "0",
        "-o",
        "intent_embedder=hash:256",
        "-o",
        "vlm=testfake",
    ]
    main(
        [
            "ask",
            *common,
            "--json",
            "--history",
            HISTORY,
            "--thread",
            "t-cli",
            "What is the most likely diagnosis?",
        ]
    )
    capsys.readouterr()
    main(["ask", *common, "--json", "--thread", "t-cli", "What else could it be?"])
    second = json.loads(capsys.readouterr().out)
    assert second["intent"] == "differential" and second["differential"]
    assert (zebra_env / "agent" / "checkpoints.sqlite").is_file()
    main(["agent", "trace", "t-cli", "--json"])
    session = json.loads(capsys.readouterr().out)
    assert [t["question"] for t in session["turns"]] == [
        "What is the most likely diagnosis?",
        "What else could it be?",
    ]
    assert {e["turn"] for e in session["trace"]} == {1, 2}
    with pytest.raises(SystemExit):
        main(["agent", "trace", "no-such-thread"])
    assert "No session" in capsys.readouterr().err


def test_a_chat_resending_the_study_keeps_its_differential(make_agent, scan, tmp_path: Path) -> None:
    """A chat sends the study with every question: the same pixels are the same case, not a new one."""
    from agent.checkpoint import sqlite_saver

    agent = make_agent(checkpointer=sqlite_saver(tmp_path / "cp.sqlite"), abstain_threshold=0.0)
    first = agent.ask("What is the most likely diagnosis?", images=[("a.png", scan)], history=HISTORY)
    again = agent.ask("Where is the lesion?", images=[("a.png", scan.copy())], thread_id=first.thread_id)
    assert [t["node"] for t in again.trace] == ["intake", "gate", "respond"]
    assert [d.diagnosis for d in again.differential] == [d.diagnosis for d in first.differential]
    assert [d.probability for d in again.differential] == [d.probability for d in first.differential]
    # another image (or another history) is another case
    other = scan.copy()
    other[: other.shape[0] // 4] = 0
    moved = agent.ask("What is the most likely diagnosis?", images=[other], thread_id=first.thread_id)
    assert "perceive" in [t["node"] for t in moved.trace]
    text = agent.ask(
        "What is the most likely diagnosis?",
        images=[other],
        history="A 3-year-old boy.",
        thread_id=first.thread_id,
    )
    assert "perceive" in [t["node"] for t in text.trace]
