"""The "disease in no document" setting (zebra eval nova --unseen): hidden per case, counted, never seen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.errors import EvalConfigError
from eval.harness import run_eval
from eval.judges import OfflineJudge
from eval.unseen import UnseenHider
from zebra_datasets import read_nova


def test_hider_matches_by_the_offline_judge() -> None:
    hider = UnseenHider(["Glioblastoma multiforme", "GBM", "Meningioma", "Moyamoya disease 2", ""])
    assert hider.hidden_for("glioblastoma") == ["Glioblastoma multiforme"]
    assert hider.hidden_for(["Meningioma", "moyamoya disease"]) == ["Meningioma", "Moyamoya disease 2"]
    assert hider.hidden_for("") == [] and hider.hidden_for([]) == []


def _run(synth: Path, bundle: Path, out: Path, *, unseen: bool) -> dict:
    return run_eval(
        synth,
        out,
        "retrieval",
        inputs="history,caption",
        predictor_options={"bundle": bundle, "verify": False},
        n_resamples=20,
        report=False,
        unseen=unseen,
    )


def test_unseen_hides_the_gold_disease_from_every_case(
    synth: Path, synth_bundle: Path, tmp_path: Path
) -> None:
    seen = _run(synth, synth_bundle, tmp_path / "seen", unseen=False)
    unseen = _run(synth, synth_bundle, tmp_path / "unseen", unseen=True)
    assert seen["unseen"] == {"enabled": False} and seen["top5"] > 0
    assert unseen["unseen"]["enabled"] and unseen["unseen"]["documents_removed_min"] >= 1
    assert unseen["unseen"]["cases_with_nothing_removed"] == []
    gold = {cid: rows[0].final_diagnosis for cid, rows in read_nova(synth).by_case().items()}
    judge = OfflineJudge()
    rows = [json.loads(line) for line in (tmp_path / "unseen" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(gold)
    for row in rows:
        assert row["unseen"]["documents"] >= 1 and row["unseen"]["hidden_labels"] >= 1
        # nothing of the gold disease reached the predictor, so it cannot name it
        assert not any(judge.same(d, gold[row["case_id"]]) for d in row["diagnoses"]), row
    assert unseen["top5"] == 0.0 < seen["top5"]


def test_unseen_is_refused_for_a_predictor_that_does_not_retrieve(synth: Path, tmp_path: Path) -> None:
    with pytest.raises(EvalConfigError, match="--unseen"):
        run_eval(synth, tmp_path / "c", "constant:x", unseen=True, report=False, n_resamples=20)


def test_a_seen_run_cannot_be_resumed_as_unseen(synth: Path, synth_bundle: Path, tmp_path: Path) -> None:
    common = {"predictor_options": {"bundle": synth_bundle}, "limit": 2, "report": False, "n_resamples": 20}
    run_eval(synth, tmp_path / "r", "retrieval", **common)
    with pytest.raises(EvalConfigError, match="unseen"):
        run_eval(synth, tmp_path / "r", "retrieval", resume=True, unseen=True, **common)


def test_hide_adds_the_case_s_linked_documents_and_images() -> None:
    hider = UnseenHider(
        ["Odontogenic keratocyst", "Dentigerous cyst"], linked={"MPX1472": {"medpix:topic/dentigerous"}}
    )
    hidden = hider.hide("MPX1472", "Odontogenic Keratocyst")
    assert hidden.labels == ("Odontogenic keratocyst",)
    assert hidden.doc_ids == ("medpix:topic/dentigerous",) and hidden.case_ids == ("MPX1472",)
    assert hider.hide("OTHER", "x").doc_ids == ()
