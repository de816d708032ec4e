"""The graph state: what each node reads and writes, JSON-safe so that checkpoints stay portable.

Images never enter the state (they travel in the run's :class:`agent.resources.AgentContext`); the state holds
what was derived from them (gate verdicts, findings, heatmap file references). Keys accumulate across the
turns of one thread only where a reducer says so (``turns``, ``trace``, ``notes``); every other key holds the
latest value, which is how a follow-up question sees the previous turn's differential and findings.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class IntentInfo(TypedDict, total=False):
    """How the question was routed.

    Attributes:
        name: The intent (``diagnosis``, ``differential``, ``location``, ``change``, ``similar``,
            ``literature``, ``followup``, ``offdomain``).
        score: Cosine similarity to the nearest prototype of that intent.
        nearest: The nearest prototype sentence.
        in_domain_score: Best similarity to any in-domain prototype.
        topic: For ``literature``: the condition named in the question.
    """

    name: str
    score: float
    nearest: str
    in_domain_score: float
    topic: str | None


class AgentState(TypedDict, total=False):
    """State of the diagnostic graph (module docstring).

    Per-turn inputs: ``question``, ``history``, ``captions``, ``image_names``, ``prior_names``.
    Written by the nodes: ``turn``/``followup``/``new_case`` and the current case's inputs
    ``case_images_key``/``case_history``/``case_captions`` (intake), ``intent``/``gate``/``abstained``/
    ``abstain_reason`` (gate), ``findings``/``change`` (perceive), ``queries`` (plan), ``evidence``/
    ``image_evidence`` (retrieve), ``literature`` (literature), ``candidates``/``proposed``/``reasoner`` (reason), ``differential``/
    ``backoff``/``verification`` (verify), ``answer`` and ``questions`` (respond: what it asked the user;
    ``reply`` marks the next turn that answers them, intake). ``turns``, ``trace`` and ``notes`` accumulate.
    """

    question: str
    history: str
    captions: list[str]
    image_names: list[str]
    prior_names: list[str]

    case_text: str
    case_images_key: str
    case_history: str
    case_captions: list[str]
    turn: int
    followup: bool
    new_case: bool
    intent: IntentInfo
    gate: dict[str, Any]
    abstained: bool
    abstain_reason: str | None
    #: Set by ``retrieve`` while the default knowledge base is still being built (its progress, in words).
    kb_pending: str | None

    findings: list[dict[str, Any]]
    change: dict[str, Any] | None
    queries: list[dict[str, Any]]
    evidence: list[dict[str, Any]]
    image_evidence: list[dict[str, Any]]
    literature: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    proposed: list[dict[str, Any]]
    reasoner: dict[str, Any]
    differential: list[dict[str, Any]]
    backoff: dict[str, Any] | None
    verification: dict[str, Any]
    answer: dict[str, Any]
    questions: list[dict[str, str]]
    reply: bool

    turns: Annotated[list[dict[str, Any]], operator.add]
    trace: Annotated[list[dict[str, Any]], operator.add]
    notes: Annotated[list[dict[str, Any]], operator.add]


#: Keys a new case (new images or history) resets; a follow-up keeps them from the previous turn.
CASE_KEYS: tuple[str, ...] = (
    "findings",
    "change",
    "queries",
    "evidence",
    "image_evidence",
    "candidates",
    "proposed",
    "reasoner",
    "differential",
    "backoff",
    "verification",
)


def turn_items(state: AgentState, key: str) -> list[dict[str, Any]]:
    """The entries of an accumulating list (``trace`` or ``notes``) that belong to the current turn."""
    turn = state.get("turn", 0)
    return [item for item in state.get(key) or [] if item.get("turn") == turn]
