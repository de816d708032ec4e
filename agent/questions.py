"""Asking for what the image cannot tell: targeted questions that split the current top candidates.

When the agent would abstain and the inputs hold few findings (fewer than :data:`FEW_FINDINGS` terms of the
finding vocabulary, :mod:`vlm.findings`, in the history, captions and the image model's confident findings),
the answer ends with one to :data:`MAX_QUESTIONS` questions (``prompts/questions.json``). Each topic (location,
appearance, enhancement, features, side) is scored by how differently the evidence of the top candidates
describes it: the number of distinct sets of that topic's vocabulary words found in each candidate's evidence
text, minus one, counting only candidates whose evidence says something about it. Topics the inputs already
answer are not asked. The age question takes one of the places when the history gives no age. The next turn of the session
takes the user's reply as more clinical text (:func:`agent.nodes.intake.intake`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

#: Inputs with fewer finding terms than this count as "few findings".
FEW_FINDINGS = 4
MAX_QUESTIONS = 3
#: Top candidates whose evidence the questions should tell apart.
TOP_CANDIDATES = 5
_AGE = re.compile(
    r"\b\d{1,3}[- ]?(?:year|yr|y/?o|month|mo|week|wk|day)s?\b|\b(?:infant|newborn|neonat\w*)\b", re.I
)


@functools.lru_cache(maxsize=4)
def question_templates(language: str = "en") -> dict[str, Any]:
    """The question topics of ``prompts/questions.json`` for ``language`` (English when absent)."""
    data = json.loads(
        resources.files("agent").joinpath("prompts", "questions.json").read_text(encoding="utf-8")
    )
    return data.get(language) or data["en"]


def input_terms(history: str, captions: Sequence[str], image_terms: Sequence[str]) -> set[str]:
    """Finding-vocabulary terms the inputs already give (an image term outside the vocabulary, such as a tumour
    type, answers none of the questions)."""
    from vlm.findings import load_vocabulary

    vocab = load_vocabulary()
    return vocab.extract("\n".join([history, *captions])) | {t for t in image_terms if t in vocab.names}


def choose_questions(
    candidates: Sequence[Mapping[str, Any]],
    evidence: Sequence[Mapping[str, Any]],
    *,
    history: str,
    captions: Sequence[str] = (),
    image_terms: Sequence[str] = (),
    language: str = "en",
) -> list[dict[str, str]]:
    """The questions to ask (module docstring), best first: ``[{"topic", "question"}]``, possibly empty."""
    from vlm.findings import load_vocabulary

    vocab = load_vocabulary()
    t = question_templates(language)
    given = input_terms(history, captions, image_terms)
    if len(given) >= FEW_FINDINGS:
        return []
    by_id = {str(e.get("id")): e for e in evidence}
    said: list[set[str]] = []
    for cand in list(candidates)[:TOP_CANDIDATES]:
        text = " ".join(
            str(by_id[i].get("text") or by_id[i].get("quote") or "")
            for i in cand.get("evidence_ids") or []
            if i in by_id
        )
        said.append(vocab.extract(text))
    scored = []
    for topic, spec in t["topics"].items():
        groups = set(spec["groups"])
        if any(vocab.group_of(term) in groups for term in given):
            continue  # the inputs already answer it
        signatures = [frozenset(w for w in s if vocab.group_of(w) in groups) for s in said]
        signatures = [s for s in signatures if s]
        score = len(set(signatures)) - 1
        if score > 0:
            scored.append((score, len(signatures), topic, spec["question"]))
    scored.sort(key=lambda x: (-x[0], -x[1]))
    ask_age = bool(said) and not _AGE.search(history or "")
    out = [{"topic": topic, "question": q} for _, _, topic, q in scored[: MAX_QUESTIONS - ask_age]]
    if ask_age:
        out.append({"topic": "age", "question": t["age_question"]})
    return out


def topic_groups(topic: str, language: str = "en") -> tuple[str, ...]:
    """The vocabulary groups a question topic asks about (``()`` for the age question)."""
    spec = question_templates(language)["topics"].get(topic)
    return tuple(spec["groups"]) if spec else ()


def simulated_reply(findings_text: str, topics: Sequence[str]) -> str:
    """The sentences of a report's Findings that answer the asked topics (the simulated dialogue of
    ``zebra agent eval --settings dialogue``): each sentence that mentions a word of an asked topic's groups."""
    from vlm.findings import load_vocabulary

    vocab = load_vocabulary()
    groups = {g for topic in topics for g in topic_groups(topic)}
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", findings_text or "") if s.strip()]
    picked = [s for s in sentences if any(vocab.group_of(w) in groups for w in vocab.extract(s))]
    return " ".join(dict.fromkeys(picked))
