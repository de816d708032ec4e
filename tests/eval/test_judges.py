"""Judges: the offline judge's synonym sources, the LLM judge over a loopback HTTP server, agreement."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from eval.errors import EvalConfigError, JudgeError
from eval.judges import (
    LLMJudge,
    OfflineJudge,
    agreement,
    cohen_kappa,
    icd_alias_groups,
    load_prompt,
    make_judge,
    parse_answer,
)


def _server_module():
    path = Path(__file__).with_name("llm_server.py")
    spec = importlib.util.spec_from_file_location("eval_test_llm_server", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


chat_server = _server_module().chat_server


def test_offline_judge_with_explicit_synonyms() -> None:
    judge = OfflineJudge(synonyms=[["Tumefactive demyelination", "Tumefactive multiple sclerosis"]])
    assert judge.reason("tumefactive multiple sclerosis", "Tumefactive demyelination") == "synonym"
    assert judge.reason("Meningioma", "Atypical meningioma") == "containment"
    assert judge.same("PRES", "Posterior reversible encephalopathy syndrome")
    assert not judge.same("Meningioma", "Schwannoma")
    assert not judge.same("", "Meningioma")


def test_offline_judge_default_synonyms_from_icd_and_hpo() -> None:
    judge = OfflineJudge()
    assert judge.reason("Hansen disease", "Leprosy") == "synonym"  # ICD-10 "Leprosy [Hansen disease]"
    assert judge.reason("Chickenpox", "Varicella") == "synonym"  # ICD-10 "Varicella [chickenpox]"
    assert judge.reason("Glioblastoma", "Glioblastoma multiforme") in ("synonym", "containment")
    assert judge.reason("Meningioma, familial, susceptibility to", "Meningioma") is not None
    assert not judge.same("Glioblastoma", "Meningioma")
    assert ["Leprosy", "Hansen disease"] in icd_alias_groups()


def test_make_judge_specs() -> None:
    assert isinstance(make_judge("offline"), OfflineJudge)
    assert make_judge("offline:embed").name == "offline+embed"
    assert isinstance(make_judge("openai:http://127.0.0.1:9/v1"), LLMJudge)
    with pytest.raises(EvalConfigError):
        make_judge("sometimes")
    with pytest.raises(EvalConfigError):
        make_judge("openai:ftp://x")
    with pytest.raises(EvalConfigError):
        LLMJudge("http://127.0.0.1:9", votes=0)


def test_prompt_file_and_answer_parsing() -> None:
    system, user = load_prompt()
    assert "radiologist" in system and "{prediction}" in user and "{truth}" in user
    assert parse_answer("Yes.") is True
    assert parse_answer("**No**, they differ") is False
    assert parse_answer("I cannot tell") is None


def test_llm_judge_over_loopback_http(tmp_path: Path) -> None:
    log = tmp_path / "judgments.jsonl"
    with chat_server() as server:
        judge = LLMJudge(server["url"], model="tiny", votes=3, log_path=log)
        assert judge.same("Meningioma, atypical", "Meningioma") is True
        assert judge.same("Schwannoma", "Meningioma") is False
        assert judge.same("Schwannoma", "Meningioma") is False  # cached: no new request
        assert len(server["requests"]) == 6  # 2 questions x 3 votes
        body = server["requests"][0]["body"]
        assert server["requests"][0]["path"] == "/v1/chat/completions"
        assert body["model"] == "tiny" and body["temperature"] == pytest.approx(0.7)
        assert body["messages"][0]["role"] == "system"
        assert "Predicted diagnosis: Meningioma, atypical" in body["messages"][1]["content"]
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        assert [r["verdict"] for r in rows] == [True, False]
        assert rows[0]["answers"] == ["Yes."] * 3 and rows[0]["model"] == "tiny"
        # a new judge with the same log reuses the logged verdicts instead of asking again
        again = LLMJudge(server["url"], model="tiny", votes=3, log_path=log)
        assert again.same("Schwannoma", "Meningioma") is False
        assert len(server["requests"]) == 6
        # another model is not served from this model's log
        LLMJudge(server["url"], model="other", votes=1, log_path=log).same("Schwannoma", "Meningioma")
        assert len(server["requests"]) == 7
        assert server["requests"][-1]["body"]["temperature"] == 0.0


def test_llm_judge_majority_vote() -> None:
    answers = iter(["yes", "no", "yes", "no", "no", "yes"])
    with chat_server(answer=lambda _: next(answers)) as server:
        judge = LLMJudge(server["url"], votes=3)
        assert judge.same("a", "b") is True  # yes, no, yes
        assert judge.same("c", "d") is False  # no, no, yes


def test_llm_judge_server_error_is_a_judge_error() -> None:
    with chat_server(status=500) as server, pytest.raises(JudgeError, match="failed"):
        LLMJudge(server["url"]).same("a", "b")
    with pytest.raises(JudgeError):
        LLMJudge("http://127.0.0.1:9/v1", timeout=2).same("a", "b")


def test_cohen_kappa_and_agreement() -> None:
    assert cohen_kappa([True, True, False, False], [True, False, False, False]) == pytest.approx(0.5)
    assert cohen_kappa([True, False], [True, False]) == pytest.approx(1.0)
    assert cohen_kappa([], []) is None
    with chat_server() as server:
        pairs = [("Meningioma", "Meningioma"), ("Meningioma grade 2", "Meningioma"), ("Glioma", "Meningioma")]
        result = agreement(pairs, LLMJudge(server["url"]), OfflineJudge(synonyms=[]))
    assert result["n"] == 3 and result["raw"] == pytest.approx(1.0) and result["kappa"] == pytest.approx(1.0)
