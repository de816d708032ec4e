"""``intake``: starts a turn: numbers it, decides whether it brings a new case or follows up on the last one."""

from __future__ import annotations

from typing import Any

from agent.configuration import Configuration
from agent.images import inputs_digest
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
    that the question itself describes one), unless they are the previous case's again: a chat sends the study
    with every question, and its differential must not change between the turns about it. Images are compared
    by their pixels (:func:`agent.images.inputs_digest`); a turn that repeats the images without the history
    keeps the history given before. Otherwise a turn is a *follow-up* on the previous case when there is one.
    """
    question = (state.get("question") or "").strip()
    history = (state.get("history") or "").strip()
    captions = [c for c in state.get("captions") or [] if c and c.strip()]
    previous = has_previous(state)
    images_key = inputs_digest(ctx.images, ctx.priors) if (ctx.images or ctx.priors) else ""
    same_case = (
        previous
        and images_key == (state.get("case_images_key") or "")
        and history in ("", state.get("case_history") or "")
        and (not captions or captions == (state.get("case_captions") or []))
    )
    if same_case:
        history, captions = state.get("case_history") or "", list(state.get("case_captions") or [])
    # A reply to the questions the agent asked (agent.questions): the message is more clinical text about the
    # same case, and the differential is recomputed with it.
    reply = bool(
        state.get("questions")
        and question
        and not question.rstrip().endswith("?")
        and (same_case or not (ctx.images or ctx.priors or history or captions))
    )
    if reply:
        if not same_case:
            history, captions = state.get("case_history") or "", list(state.get("case_captions") or [])
        # a case told in the question itself (no history) lives in the previous turn's case_text
        history = history or (state.get("case_text") or "").strip()
        history = f"{history}\nReply: {question}" if history else f"Reply: {question}"
    new_case = (bool(ctx.images or ctx.priors or history or captions) and not same_case) or reply
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
        "kb_pending": None,
        "literature": [],
        "answer": {},
        "questions": [],
        "reply": reply,
    }
    if update["followup"]:
        # the previous case's decision stands for questions about it
        decided = state.get("verification") or {}
        update.update(abstained=bool(decided.get("abstained")), abstain_reason=decided.get("abstain_reason"))
    if new_case:
        key = images_key if not (reply and not images_key) else state.get("case_images_key") or ""
        update.update(case_images_key=key, case_history=history, case_captions=captions)
        update.update({k: [] for k in CASE_KEYS})
        update.update({"change": None, "backoff": None, "reasoner": {}, "verification": {}})
    update["case_text"] = ""
    return update
