"""``intake``: starts a turn: numbers it, decides whether it brings a new case or follows up on the last one."""

from __future__ import annotations

from typing import Any

from agent.configuration import Configuration
from agent.nodes.common import traced
from agent.resources import AgentContext
from agent.state import CASE_KEYS, AgentState


def has_previous(state: AgentState) -> bool:
    """Whether an earlier turn of the thread left a case (findings, evidence or a differential)."""
    return bool(state.get("differential") or state.get("evidence") or state.get("findings"))


@traced("intake", reads=("question", "history", "captions", "turn"))
def intake(state: AgentState, ctx: AgentContext, cfg: Configuration) -> dict[str, Any]:
    """Numbers the turn, records the inputs' names, and resets the case when new inputs arrive.

    A turn brings a *new case* when it has images, priors, a history or captions (the gate may still decide
    that the question itself describes one). Otherwise it is a *follow-up* on the previous case when there is one.
    """
    question = (state.get("question") or "").strip()
    history = (state.get("history") or "").strip()
    captions = [c for c in state.get("captions") or [] if c and c.strip()]
    previous = has_previous(state)
    new_case = bool(ctx.images or ctx.priors or history or captions)
    update: dict[str, Any] = {
        "turn": int(state.get("turn", 0)) + 1,
        "question": question,
        "history": history,
        "captions": captions,
        "image_names": [name for name, _ in ctx.images],
        "prior_names": [name for name, _ in ctx.priors],
        "new_case": new_case,
        "followup": (not new_case) and previous,
        "abstained": False,
        "abstain_reason": None,
        "literature": [],
        "answer": {},
    }
    if update["followup"]:
        # the previous case's decision stands for questions about it
        decided = state.get("verification") or {}
        update.update(abstained=bool(decided.get("abstained")), abstain_reason=decided.get("abstain_reason"))
    if new_case:
        update.update({k: [] for k in CASE_KEYS})
        update.update({"change": None, "backoff": None, "reasoner": {}, "verification": {}})
    update["case_text"] = ""
    return update
