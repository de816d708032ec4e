"""The agent's typed answer: :class:`Answer` and its :class:`DifferentialEntry` items (JSON round-trip)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DifferentialEntry:
    """One diagnosis of the differential.

    Attributes:
        diagnosis: Diagnosis name.
        probability: Calibrated probability that it is the right diagnosis (entries sum to at most 1).
        citations: Ids of the supporting items of :attr:`Answer.citations` (``E*`` documents, ``I*`` similar
            images, ``M*`` model outputs).
        rationale: Why, in one or two sentences that cite those ids.
        icd10: ICD-10 code of the name when it maps, else ``None``.
    """

    diagnosis: str
    probability: float
    citations: list[str] = field(default_factory=list)
    rationale: str = ""
    icd10: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DifferentialEntry:
        """Inverse of :meth:`to_dict`."""
        return cls(
            diagnosis=str(data.get("diagnosis", "")),
            probability=float(data.get("probability") or 0.0),
            citations=[str(c) for c in data.get("citations") or []],
            rationale=str(data.get("rationale") or ""),
            icd10=data.get("icd10"),
        )


@dataclass
class Answer:
    """What :meth:`agent.api.Agent.ask` returns.

    Attributes:
        text: The answer to the question actually asked, with ``[E1]``-style citation markers.
        question: The question.
        intent: How the question was routed (``diagnosis``, ``differential``, ``location``, ``change``,
            ``similar``, ``literature``, ``followup``, ``offdomain``).
        differential: Primary diagnosis first, then the alternatives (empty when nothing could be proposed).
        abstained: Whether the agent declined to commit to a diagnosis.
        abstain_reason: Why, in words for a user.
        backoff: The safer parent category committed to instead of an uncertain fine-grained call
            (``{"system", "code", "name", "probability", "members"}``), or ``None``.
        findings: Per analysed image: gate verdict, anomaly score, boxes, caption, attributes, heatmap file.
        change: The change statement against the prior, or ``None``.
        citations: Every citable item: retrieved documents (``E*``), similar images (``I*``), model outputs
            (``M*``), with quotes.
        trace: One entry per graph step of this turn (node, inputs and outputs summaries, seconds).
        timings: Seconds per node and ``total``.
        thread_id: The session the turn belongs to.
        reasoner: The reasoner backend that produced the differential.
        notes: Things a user should know (degraded inputs, fallbacks).
        questions: What the agent asks the user to narrow an uncertain differential (``{"topic",
            "question"}``); the next message of the session is read as the reply.
    """

    text: str
    question: str = ""
    intent: str = "diagnosis"
    differential: list[DifferentialEntry] = field(default_factory=list)
    abstained: bool = False
    abstain_reason: str | None = None
    backoff: dict[str, Any] | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    change: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    thread_id: str | None = None
    reasoner: str = ""
    notes: list[str] = field(default_factory=list)
    questions: list[dict[str, str]] = field(default_factory=list)

    @property
    def primary(self) -> DifferentialEntry | None:
        """The likeliest diagnosis, or ``None``."""
        return self.differential[0] if self.differential else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        out = asdict(self)
        out["differential"] = [d.to_dict() for d in self.differential]
        return out

    def to_json(self, **kwargs: Any) -> str:
        """JSON text."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        """Inverse of :meth:`to_dict`."""
        return cls(
            text=str(data.get("text", "")),
            question=str(data.get("question", "")),
            intent=str(data.get("intent", "diagnosis")),
            differential=[DifferentialEntry.from_dict(d) for d in data.get("differential") or []],
            abstained=bool(data.get("abstained", False)),
            abstain_reason=data.get("abstain_reason"),
            backoff=data.get("backoff"),
            findings=list(data.get("findings") or []),
            change=data.get("change"),
            citations=list(data.get("citations") or []),
            trace=list(data.get("trace") or []),
            timings={k: float(v) for k, v in (data.get("timings") or {}).items()},
            thread_id=data.get("thread_id"),
            reasoner=str(data.get("reasoner", "")),
            notes=[str(n) for n in data.get("notes") or []],
            questions=[dict(q) for q in data.get("questions") or []],
        )
