"""The image informs the diagnosis: findings reach the candidates, anatomy filters them, model citations need
support, out-of-domain images leave a text-only answer, and the agent asks for what the image cannot tell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import HISTORY, FakeVLM


class FindingsVLM(FakeVLM):
    """The fake VLM with finding heads: axial post-contrast T1 MR, an enhancing extra-axial lesion."""

    name = "fake-findings-vlm"

    def analyze_image(self, image: np.ndarray):
        from vlm.types import Findings, FindingValue

        analysis = super().analyze_image(image)
        if analysis.gate.accepted:
            analysis.findings = Findings(
                modality=FindingValue("MR", 0.96, "modality", True),
                sequence=FindingValue("t1c", 0.8, "sequence", True),
                plane=FindingValue("axial", 0.9, "plane", True),
                terms=[
                    FindingValue("extra-axial", 0.6, "compartment", True),
                    FindingValue("enhancement", 0.5, "enhancement", True),
                    FindingValue("appendix", 0.0, "site", False),
                ],
                header="Axial post-contrast T1-weighted MR",
            )
            analysis.caption = "Axial post-contrast T1-weighted MR: extra-axial finding, with enhancement."
        return analysis


class OutOfDomainVLM(FakeVLM):
    """A VLM whose gate refuses everything as another body region."""

    def gate(self, image: np.ndarray):
        from vlm.types import GateResult

        return GateResult(
            False,
            "The DICOM header says this MR image shows the shoulder, not the head; the built-in model reads "
            "head CT and MR only.",
            "out_of_domain",
            {},
        )


# ------------------------------------------------------------------------------------------- anatomy
@pytest.mark.parametrize(
    ("name", "region"),
    [
        ("Acute appendicitis", "other"),
        ("Pancreatic mucinous cystadenoma", "other"),
        ("Pyogenic liver abscess", "other"),
        ("Subdural hematoma", "head"),
        ("Postpartum cerebral angiopathy", "head"),
        ("Encephalitis lethargica", "head"),
        ("Metastatic breast cancer to brain", "systemic"),
    ],
)
def test_region_of_name(name: str, region: str) -> None:
    from agent.anatomy import region_of_name

    assert region_of_name(name) == region


def test_acr_codes_come_first_and_consistency() -> None:
    from agent.anatomy import candidate_region, consistent_with, region_of_acr

    assert region_of_acr(["1.3", "7.2"]) == "systemic" and region_of_acr(["9.1"]) == "unknown"
    assert candidate_region("Some rare syndrome", ["7.4"]) == "other"
    assert candidate_region("Acute appendicitis", ["1.2"]) == "head"  # the case's own ACR code wins
    assert not consistent_with("other", "head") and consistent_with("unknown", "head")
    assert consistent_with("other", None)  # no image, no constraint


# ------------------------------------------------------------------------------------------- candidates
def _evidence() -> list[dict]:
    return [
        {
            "id": "E1",
            "via": "text",
            "kind": "case_report",
            "diagnosis": "Meningioma",
            "text": "Dural based extra-axial mass with homogeneous enhancement.",
            "score": 1.0,
            "rank": 1,
            "acr_code": "1.3",
        },
        {
            "id": "E2",
            "via": "text",
            "kind": "case_report",
            "diagnosis": "Appendicitis",
            "text": "Dilated appendix with enhancement of its wall.",
            "score": 0.9,
            "rank": 2,
            "acr_code": "7.2",
        },
        {
            "id": "E3",
            "via": "text",
            "kind": "disease_discussion",
            "diagnosis": "Glioblastoma",
            "text": "Intra-axial mass with ring enhancement and necrosis.",
            "score": 0.8,
            "rank": 3,
            "acr_code": "1.3",
        },
    ]


def test_head_image_removes_other_regions_and_scores_agreement() -> None:
    from agent.features import build_candidates

    without = build_candidates(_evidence())
    assert {c.label for c in without} == {"Meningioma", "Appendicitis", "Glioblastoma"}
    assert all(c.features["region_head"] == 0 and c.features["finding_agreement"] == 0 for c in without)
    with_image = build_candidates(
        _evidence(), imaged_region="head", finding_terms=["extra-axial", "enhancement"]
    )
    by = {c.label: c for c in with_image}
    assert set(by) == {"Meningioma", "Glioblastoma"}  # appendicitis cannot be on a head image
    assert by["Meningioma"].features["region_head"] == 1.0
    assert by["Meningioma"].agreed == ["extra-axial", "enhancement"]
    assert by["Meningioma"].features["finding_agreement"] == 1.0
    assert by["Glioblastoma"].agreed == []  # "ring enhancement" is not "enhancement"


def test_the_anatomy_rule_acts_before_the_candidate_cap() -> None:
    """With two places and a head image, appendicitis (ranked second) gives its place to glioblastoma (third):
    the rule removes candidates of other regions before the cap, not after it."""
    from agent.features import build_candidates

    capped = build_candidates(_evidence(), max_candidates=2)
    assert [c.label for c in capped] == ["Meningioma", "Appendicitis"]
    with_image = build_candidates(_evidence(), max_candidates=2, imaged_region="head")
    assert [c.label for c in with_image] == ["Meningioma", "Glioblastoma"]
    # ranks and shares are among the head candidates kept
    assert with_image[1].features["inv_cand_rank"] == 0.5
    assert abs(sum(c.features["score_share"] for c in with_image) - 1.0) < 1e-9


def _request(candidates, caption: str):
    """A reasoning request over :func:`_evidence` whose image model said ``caption`` (M1)."""
    from agent.reasoners.base import ReasoningRequest

    return ReasoningRequest(
        question="",
        intent="diagnosis",
        history="",
        captions=[],
        evidence=_evidence(),
        image_evidence=[],
        model_outputs=[{"id": "M1", "what": "caption", "quote": caption}],
        candidates=candidates,
        probabilities=[0.3] * len(candidates),
        null_probability=0.1,
    )


def test_model_citation_only_where_the_finding_supports_it() -> None:
    from agent.features import build_candidates
    from agent.reasoners.builtin import BuiltinReasoner

    candidates = build_candidates(_evidence(), finding_terms=["extra-axial"])  # no image region: all kept
    request = _request(candidates, "Axial MR: extra-axial finding.")
    reasoner = BuiltinReasoner()
    cited = {c.label: reasoner.rationale(c, request)[1] for c in candidates}
    assert "M1" in cited["Meningioma"]
    assert "M1" not in cited["Appendicitis"] and "M1" not in cited["Glioblastoma"]
    text, _ = reasoner.rationale(candidates[0], request)
    assert "extra-axial" in text
    # a term the caption does not state (a cue below the stated threshold) cannot be cited to it
    request.model_outputs = [{"id": "M1", "what": "caption", "quote": "Axial MR. Focal abnormality."}]
    assert all("M1" not in reasoner.rationale(c, request)[1] for c in candidates)


# ------------------------------------------------------------------------------------------- the agent
def test_answer_says_what_the_image_shows_first(make_agent, scan) -> None:
    answer = make_agent(vlm=FindingsVLM()).ask(
        "What is the most likely diagnosis?", images=[scan], history=HISTORY
    )
    assert answer.text.startswith("What the image shows: Axial post-contrast T1-weighted MR")
    assert "Appendicitis" not in [d.diagnosis for d in answer.differential]
    assert answer.findings[0]["findings"]["header"] == "Axial post-contrast T1-weighted MR"


def test_out_of_domain_image_leaves_a_text_only_answer(make_agent, scan) -> None:
    answer = make_agent(vlm=OutOfDomainVLM()).ask(
        "What is the most likely diagnosis?", images=[scan], history=HISTORY
    )
    assert "I reason from the clinical text only" in answer.text
    assert "shows the shoulder" in answer.text
    assert answer.differential  # the history still gives a differential
    assert not any(c["id"].startswith("M") for c in answer.citations)


def test_out_of_domain_image_without_text_abstains(make_agent, scan) -> None:
    answer = make_agent(vlm=OutOfDomainVLM()).ask("What is the most likely diagnosis?", images=[scan])
    assert answer.abstained and answer.differential == [] and "shoulder" in answer.text


def test_agent_asks_then_uses_the_reply(make_agent, tmp_path: Path) -> None:
    from agent.checkpoint import sqlite_saver

    agent = make_agent(checkpointer=sqlite_saver(tmp_path / "cp.sqlite"), abstain_threshold=1.0)
    first = agent.ask("What is the most likely diagnosis?", history="Headaches for two weeks.")
    assert first.abstained and 1 <= len(first.questions) <= 3
    assert "could you tell me" in first.text and first.questions[0]["question"] in first.text
    assert any(q["topic"] == "age" for q in first.questions)  # the history gives no age
    second = agent.ask("The mass is extra-axial, dural based, with a dural tail.", thread_id=first.thread_id)
    assert second.intent == "diagnosis"

    def history() -> str:
        return agent.graph.get_state({"configurable": {"thread_id": first.thread_id}}).values["history"]

    assert "Reply: The mass is extra-axial" in history()
    assert second.differential and second.differential[0].diagnosis in (
        "Meningioma",
        "Dural lymphoma",
        "Hemangiopericytoma",
        "Dural metastasis",
    )
    # a question after the questions is a question, not a reply
    agent.ask("Where is it?", thread_id=first.thread_id)
    assert "Reply: Where" not in history()


def test_no_questions_when_the_inputs_hold_findings(make_agent) -> None:
    answer = make_agent(abstain_threshold=1.0).ask("What is the most likely diagnosis?", history=HISTORY)
    assert answer.abstained and answer.questions == []


def test_choose_questions_splits_the_candidates() -> None:
    from agent.questions import choose_questions

    candidates = [{"evidence_ids": ["E1"]}, {"evidence_ids": ["E3"]}]
    qs = choose_questions(candidates, _evidence(), history="A 40-year-old man with headaches.")
    topics = [q["topic"] for q in qs]
    assert "location" in topics or "enhancement" in topics
    assert "age" not in topics  # the history gives the age
    given = choose_questions(
        candidates,
        _evidence(),
        history="40-year-old. Extra-axial ring-enhancing hyperdense mass, frontal lobe.",
    )
    assert given == []  # enough findings: nothing to ask


def test_simulated_reply_takes_the_sentences_that_answer() -> None:
    from agent.questions import simulated_reply

    findings = "Bilateral subdural collections over the frontal convexities. The ventricles are normal in size. No enhancement."
    reply = simulated_reply(findings, ["location"])
    assert reply.startswith("Bilateral subdural collections") and "ventricles" in reply
    assert "No enhancement" not in reply
    assert simulated_reply(findings, ["age"]) == ""


# ------------------------------------------------------------------------------------------- real image
MPX1770 = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "medpix-2.0"
    / "images"
    / "MPX1770_synpic23443.png"
)
LETHARGY_DOCS = [
    (
        "Acute subdural hematoma",
        "1.4",
        "Infant with lethargy and vomiting. CT shows extra-axial subdural blood.",
    ),
    ("Encephalitis lethargica", None, "Encephalitis lethargica: lethargy, somnolence, ophthalmoplegia."),
    (
        "Non-accidental head trauma",
        "1.4",
        "Lethargic infant; bilateral subdural collections of different ages.",
    ),
    (
        "Acute appendicitis",
        "7.2",
        "Child with lethargy, fever and right lower quadrant pain; dilated appendix.",
    ),
    (
        "Pancreatic mucinous cystadenoma",
        "7.5",
        "Lethargy and weight loss; cystic mass of the pancreatic tail.",
    ),
    ("Pyogenic liver abscess", "7.4", "Fever and lethargy; a rim-enhancing hepatic collection."),
]


def test_mpx1770_gives_intracranial_diagnoses_only(tmp_path: Path, zebra_env: Path) -> None:
    """The issue's example: an infant's head CT and a question about lethargy. The image was read as a head
    image, so abdominal diagnoses that share the word "lethargy" never enter the differential."""
    if not MPX1770.is_file():
        pytest.skip("MedPix 2.0 images not available")
    import json

    from agent.anatomy import candidate_region
    from agent.api import Agent
    from index_builder.build import build_bundle
    from zebra_intake import load_study

    from .conftest import make_config

    src = tmp_path / "docs.jsonl"
    src.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"d{i}",
                    "kind": "case_report",
                    "title": name,
                    "text": text,
                    "diagnosis": name,
                    **({"acr_code": acr} if acr else {}),
                }
            )
            + "\n"
            for i, (name, acr, text) in enumerate(LETHARGY_DOCS)
        ),
        encoding="utf-8",
    )
    build_bundle(tmp_path / "bundle", [f"jsonl:{src}"], text_embedder="hash:64")
    agent = Agent(make_config(tmp_path / "bundle", vlm="builtin"), checkpointer=None)
    image = load_study(str(MPX1770)).images[0].display
    answer = agent.ask(
        "5-month-old girl brought to the ER with lethargy. What is the most likely diagnosis and why? "
        "What else could it be?",
        images=[image],
    )
    assert answer.findings and answer.findings[0]["accepted"]
    assert answer.text.startswith("What the image shows:")
    names = [d.diagnosis for d in answer.differential]
    assert names, answer.text
    assert set(names) <= {"Acute subdural hematoma", "Encephalitis lethargica", "Non-accidental head trauma"}
    assert all(candidate_region(n) != "other" for n in names)
    for d in answer.differential:  # a model citation only where the finding supports the entry
        if "M1" in d.citations:
            assert "image model saw" in d.rationale


def test_no_age_question_when_the_question_gives_the_age(make_agent, scan) -> None:
    answer = make_agent(abstain_threshold=1.0).ask(
        "5-month-old girl brought to the ER with lethargy. What is the most likely diagnosis?", images=[scan]
    )
    assert answer.abstained
    assert all(q["topic"] != "age" for q in answer.questions)


def test_a_reply_keeps_a_case_told_in_the_question(make_agent, tmp_path: Path) -> None:
    from agent.checkpoint import sqlite_saver

    agent = make_agent(checkpointer=sqlite_saver(tmp_path / "cp.sqlite"), abstain_threshold=1.0)
    first = agent.ask("Woman with headaches for two weeks, what is the most likely diagnosis?")
    assert first.questions
    agent.ask("The mass is extra-axial with a dural tail.", thread_id=first.thread_id)
    history = agent.graph.get_state({"configurable": {"thread_id": first.thread_id}}).values["history"]
    assert history.startswith("Woman with headaches") and "Reply: The mass is extra-axial" in history


def test_hidden_labels_never_reach_the_agent(make_agent, bundle_doc_ids) -> None:
    """The "unseen disease" setting: no document of a hidden diagnosis is evidence or candidate."""
    from tests.agent.conftest import DOCS, HISTORY

    agent = make_agent()
    _, seen_state = agent.run("What is the diagnosis?", history=HISTORY)
    seen = {c["label"] for c in seen_state.get("candidates") or []}
    assert "Meningioma" in seen
    answer, state = agent.run("What is the diagnosis?", history=HISTORY, hidden=["meningioma"])
    hidden_ids = {d["id"] for d in DOCS if d["diagnosis"] == "Meningioma"}
    evidence = state.get("evidence") or []
    assert evidence, "the run still found other evidence"
    assert not any(str(e.get("doc_id", "")).endswith(tuple(hidden_ids)) for e in evidence), evidence
    assert all((e.get("diagnosis") or "").lower() != "meningioma" for e in evidence)
    assert "Meningioma" not in {c["label"] for c in state.get("candidates") or []}
    assert all(
        "Meningioma" not in (d.get("diagnosis"), d.get("label")) for d in answer.to_dict()["differential"]
    )
    # the next run without hiding sees it again (the view is per run)
    _, again = agent.run("What is the diagnosis?", history=HISTORY)
    assert "Meningioma" in {c["label"] for c in again.get("candidates") or []}


def test_a_named_tumour_type_is_cited_on_the_candidates_of_that_type_only() -> None:
    from agent.features import build_candidates
    from agent.reasoners.builtin import BuiltinReasoner

    candidates = build_candidates(_evidence(), tumour_types={"glioma": 0.95})
    request = _request(candidates, "Axial MR. Appearance of a glioma (tumour-type head, probability 0.95).")
    reasoner = BuiltinReasoner()
    said = {c.label: reasoner.rationale(c, request) for c in candidates}
    assert "M1" in said["Glioblastoma"][1] and "names its type (glioma) [M1]" in said["Glioblastoma"][0]
    assert "M1" not in said["Meningioma"][1] and "M1" not in said["Appendicitis"][1]
    by_label = {c.label: c.features["image_diagnosis"] for c in candidates}
    assert by_label == {"Meningioma": 0.0, "Appendicitis": 0.0, "Glioblastoma": 0.95}
