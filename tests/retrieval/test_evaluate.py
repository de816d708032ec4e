"""The MedPix retrieval evaluation protocol on a synthetic MedPix folder and a stub searcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.errors import EvaluationDataError
from retrieval.evaluate import evaluate_retrieval, load_medpix_cases
from retrieval.types import CandidateDiagnosis


def _case(uid: str, history: str, findings: str, diagnosis: str, topic: str, ddx: str = "Secret DDX") -> dict:
    return {
        "U_id": uid,
        "Case": {
            "Title": f"Title {diagnosis}",
            "History": history,
            "Exam": "Exam text",
            "Findings": findings,
            "Differential Diagnosis": ddx,
            "Case Diagnosis": diagnosis,
        },
        "Topic": {
            "Title": topic,
            "Disease Discussion": "Discussion text",
            "ACR Code": "1.1",
            "Category": "x",
        },
    }


@pytest.fixture
def medpix_dir(tmp_path: Path) -> Path:
    cases = [
        _case("MPX1", "45 yo woman with headaches", "Dural based mass", "Meningioma", "Meningioma topic"),
        _case("MPX2", "Child with ataxia", "Cerebellar cyst with nodule", "N/A", "Pilocytic astrocytoma"),
        _case("MPX3", "N/A", "N/A", "Appendicitis", "Appendicitis"),  # no query: skipped
        _case("MPX4", "Train case", "Findings", "Glioma", "Glioma"),
    ]
    (tmp_path / "Case_topic.json").write_text(json.dumps(cases))
    (tmp_path / "splits.json").write_text(
        json.dumps({"dev": ["MPX1", "MPX2", "MPX3", "MPX9"], "train": ["MPX4"]})
    )
    return tmp_path


def test_queries_use_history_and_findings_only(medpix_dir: Path) -> None:
    cases = load_medpix_cases(medpix_dir, "dev")
    assert [c.case_id for c in cases] == ["MPX1", "MPX2"]
    first = cases[0]
    assert first.query == "45 yo woman with headaches\nDural based mass"
    for case in cases:
        for leaked in ("Secret DDX", "Title", "Exam text", "Discussion text", "topic"):
            assert leaked not in case.query
        assert case.diagnosis not in case.query
    # "N/A" case diagnosis falls back to the topic title
    assert cases[1].diagnosis == "Pilocytic astrocytoma"
    assert [c.case_id for c in load_medpix_cases(medpix_dir, "all")] == ["MPX1", "MPX2", "MPX4"]


def test_bad_split_or_folder_is_a_typed_error(medpix_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(EvaluationDataError, match="test"):
        load_medpix_cases(medpix_dir, "test")
    with pytest.raises(EvaluationDataError, match="does not exist"):
        load_medpix_cases(tmp_path / "nowhere", "dev")


class _StubSearcher:
    """Returns fixed candidate labels per (query, mode)."""

    def __init__(self, table: dict[tuple[str, str], list[str]]) -> None:
        self.table = table
        self.queries: list[str] = []

    def diagnose(self, query: str, *, n_hits: int, top_n: int, mode: str):
        self.queries.append(query)
        labels = self.table[(query.split("\n")[0], mode)][:top_n]
        cands = [
            CandidateDiagnosis(lab, lab.lower(), 1.0 / r, r, 1, r, ["case_report"], [])
            for r, lab in enumerate(labels, 1)
        ]
        return cands, []


def test_hit_rates_and_details(medpix_dir: Path, tmp_path: Path) -> None:
    cases = load_medpix_cases(medpix_dir, "dev")
    stub = _StubSearcher(
        {
            ("45 yo woman with headaches", "dense"): ["Schwannoma", "Atypical meningioma"],
            ("45 yo woman with headaches", "bm25"): ["Meningiomas"],
            ("Child with ataxia", "dense"): ["Medulloblastoma", "Ependymoma"],
            ("Child with ataxia", "bm25"): [
                "Hemangioblastoma",
                "x",
                "y",
                "z",
                "w",
                "Juvenile pilocytic astrocytoma",
            ],
        }
    )
    details = tmp_path / "details.jsonl"
    result = evaluate_retrieval(stub, cases, modes=("dense", "bm25"), k=5, details_path=details)  # type: ignore[arg-type]
    assert result["n_cases"] == 2
    assert result["modes"]["dense"] == {"top1": 0.0, "top5": 0.5, "hits_top1": 0, "hits_top5": 1}
    # bm25: case 1 at rank 1; case 2's match is at rank 6, outside the top 5
    assert result["modes"]["bm25"] == {"top1": 0.5, "top5": 0.5, "hits_top1": 1, "hits_top5": 1}
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    assert rows[0]["modes"]["dense"]["hit_rank"] == 2 and rows[0]["modes"]["dense"]["match"] == "containment"
    assert rows[1]["modes"]["bm25"]["hit_rank"] is None
    assert all("Meningioma" not in q and "Pilocytic" not in q for q in stub.queries)
