"""What every reasoner gets and returns: :class:`ReasoningRequest`, :class:`ReasoningResult`, :class:`Reasoner`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agent.features import Candidate


@dataclass
class ReasoningRequest:
    """The fused inputs of the reason step.

    Attributes:
        question: The user's question. intent: Its routed intent.
        history: Clinical history. captions: Captions/findings text given by the user.
        evidence: Text evidence items (``E*``). image_evidence: Similar images (``I*``).
        model_outputs: Citable image-model outputs (``M*``: caption, attributes, change statement).
        candidates: Candidates with features, in aggregated order.
        probabilities: Calibrated builtin probabilities of ``candidates`` (same order).
        null_probability: Builtin probability that none of the candidates is right.
        k: Size of the differential. language: Answer language.
    """

    question: str
    intent: str
    history: str
    captions: list[str]
    evidence: list[dict[str, Any]]
    image_evidence: list[dict[str, Any]]
    model_outputs: list[dict[str, Any]]
    candidates: list[Candidate]
    probabilities: list[float]
    null_probability: float
    k: int = 5
    language: str = "en"

    def citable_ids(self) -> set[str]:
        """Every id a claim may cite."""
        return {str(i["id"]) for i in (*self.evidence, *self.image_evidence, *self.model_outputs)}


@dataclass
class ReasoningResult:
    """A proposed differential (verified afterwards by the verify node).

    Attributes:
        differential: ``[{"diagnosis", "probability", "citations", "rationale"}]``, likeliest first.
        backend: Name of the reasoner that produced it.
        null_probability: Probability that none of the proposed diagnoses is right, when known.
        summary: Free-text summary (LLM reasoners), or ``None``.
        notes: What a user should know (fallbacks, dropped claims).
        fallback: Whether the builtin scoring replaced an unusable LLM output.
    """

    differential: list[dict[str, Any]]
    backend: str
    null_probability: float | None = None
    summary: str | None = None
    notes: list[str] = field(default_factory=list)
    fallback: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (without the differential, stored separately in the state)."""
        return {
            "backend": self.backend,
            "null_probability": self.null_probability,
            "summary": self.summary,
            "notes": list(self.notes),
            "fallback": self.fallback,
        }


@runtime_checkable
class Reasoner(Protocol):
    """Turns fused evidence into a differential.

    Attributes:
        name: Backend name shown in answers.
    """

    name: str

    def reason(self, request: ReasoningRequest) -> ReasoningResult:
        """Proposes a differential for ``request``."""
        ...
