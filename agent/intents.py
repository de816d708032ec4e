"""Intent routing of free-text questions with a text embedder (nearest prototype in ``prompts/intents.json``).

A question goes to the intent of its most similar prototype sentence (cosine similarity of L2-normalised
embeddings). It is *off-domain* when

- its nearest prototype is an off-domain one (weather, poems, jokes, code ...), or
- no in-domain prototype reaches ``threshold`` and the question has no medical word
  (``_medical_terms`` of the same file), so that an unusual but clinical question is not turned away.

An empty question is a request for the diagnosis.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agent.prompting import read_json_prompt
from agent.state import IntentInfo

log = logging.getLogger(__name__)

#: Intents a question may be routed to (``offdomain`` included).
INTENTS: tuple[str, ...] = (
    "diagnosis",
    "differential",
    "location",
    "change",
    "similar",
    "literature",
    "followup",
    "offdomain",
)
OFFDOMAIN = "offdomain"

_TOPIC_PATTERNS = (
    re.compile(
        r"\b(?:literature|evidence|papers?|references?)\s+(?:say|says|tell|on|about)\s+(?:about\s+)?(.+)",
        re.I,
    ),
    re.compile(r"\b(?:tell me|know|explain|learn)\s+(?:more\s+)?about\s+(.+)", re.I),
    re.compile(
        r"\b(?:features|findings|signs|appearance|prognosis|treatment|management|causes?)\s+of\s+(.+)", re.I
    ),
    re.compile(r"\bwhat\s+is\s+(?:an?\s+|the\s+)?(.+)", re.I),
    re.compile(r"\babout\s+(.+)", re.I),
)
_DEICTIC = re.compile(r"^(?:this|that|it|these|those)\b", re.I)


def literature_topic(question: str) -> str | None:
    """The condition named in a literature question (``"... about meningioma?"`` -> ``"meningioma"``), or
    ``None`` when it names none (``"explain this disease"``)."""
    for pattern in _TOPIC_PATTERNS:
        m = pattern.search(question or "")
        if not m:
            continue
        topic = re.sub(r"[?.!]+$", "", m.group(1)).strip()
        topic = re.sub(r"^(?:the|an?)\s+", "", topic, flags=re.I)
        if topic and not _DEICTIC.match(topic) and len(topic) <= 120:
            return topic
    return None


class IntentRouter:
    """Routes questions to intents (module docstring).

    Args:
        embedder: Text embedder (``encode(texts) -> (n, dim)`` L2-normalised).
        prototypes: Intent -> prototype sentences; default: ``agent/prompts/intents.json``.
        threshold: Least in-domain similarity of a question without medical words.
        medical_terms: Words that make a question clinical; default: the file's ``_medical_terms``.
    """

    def __init__(
        self,
        embedder: Any,
        prototypes: Mapping[str, Sequence[str]] | None = None,
        *,
        threshold: float = 0.45,
        medical_terms: Sequence[str] | None = None,
    ) -> None:
        data = read_json_prompt("intents.json")
        if prototypes is None:
            prototypes = {k: v for k, v in data.items() if not k.startswith("_")}
        if medical_terms is None:
            medical_terms = data.get("_medical_terms", [])
        self.embedder = embedder
        self.threshold = float(threshold)
        self.medical_terms = frozenset(t.lower() for t in medical_terms)
        #: Medical words that any question about a study uses; they do not make a question a case description.
        self.question_terms = frozenset(t.lower() for t in data.get("_question_terms", []))
        self._labels: list[str] = []
        self._texts: list[str] = []
        for intent, sentences in prototypes.items():
            for sentence in sentences:
                self._labels.append(intent)
                self._texts.append(sentence)
        self._vectors: np.ndarray | None = None

    def _prototype_vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = _unit(np.asarray(self.embedder.encode(self._texts), dtype=np.float32))
        return self._vectors

    def is_medical(self, question: str, *, clinical: bool = False) -> bool:
        """Whether ``question`` contains a medical word (with ``clinical``: one that describes a patient, not
        one every question about a study uses, such as "diagnosis" or "lesion")."""
        words = set(re.findall(r"[a-z][a-z\-]*", question.lower()))
        terms = self.medical_terms - self.question_terms if clinical else self.medical_terms
        return bool(words & terms) or bool(re.search(r"\d+\s*-?\s*(?:year|yo\b|y/o)", question.lower()))

    def route(self, question: str) -> IntentInfo:
        """Routes one question.

        Returns:
            ``{"name", "score", "nearest", "in_domain_score", "topic"}``.
        """
        question = (question or "").strip()
        if not question:
            return IntentInfo(name="diagnosis", score=1.0, nearest="", in_domain_score=1.0, topic=None)
        vectors = self._prototype_vectors()
        qvec = _unit(np.asarray(self.embedder.encode([question]), dtype=np.float32))[0]
        sims = vectors @ qvec
        best: dict[str, tuple[float, int]] = {}
        for i, (label, sim) in enumerate(zip(self._labels, sims, strict=True)):
            if label not in best or sim > best[label][0]:
                best[label] = (float(sim), i)
        in_domain = {k: v for k, v in best.items() if k != OFFDOMAIN}
        name, (score, index) = max(in_domain.items(), key=lambda kv: kv[1][0])
        in_score = score
        off_score, off_index = best.get(OFFDOMAIN, (-1.0, -1))
        medical = self.is_medical(question)
        if off_score > in_score and not (medical and off_score - in_score < 0.15):
            name, score, index = OFFDOMAIN, off_score, off_index
        elif in_score < self.threshold and not medical:
            name = OFFDOMAIN
        topic = literature_topic(question) if name == "literature" else None
        info = IntentInfo(
            name=name,
            score=round(float(score), 4),
            nearest=self._texts[index] if index >= 0 else "",
            in_domain_score=round(float(in_score), 4),
            topic=topic,
        )
        log.debug("intent %s", info)
        return info


def _unit(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return v / norms
