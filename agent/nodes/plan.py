"""``plan``: the text queries of the turn (from history, captions, the image model's description and the
question) and the images to search with."""

from __future__ import annotations

from typing import Any

from agent.configuration import Configuration
from agent.evidence import plan_queries
from agent.nodes.common import traced
from agent.resources import AgentContext
from agent.state import AgentState


@traced("plan", reads=("question", "history", "captions", "case_text", "intent", "findings"))
def plan(state: AgentState, ctx: AgentContext, cfg: Configuration) -> dict[str, Any]:
    """Plans the text queries (:func:`agent.evidence.plan_queries`) and one image query per accepted image."""
    intent = state.get("intent") or {}
    findings = state.get("findings") or []
    queries = plan_queries(
        question=state.get("question") or "",
        intent=str(intent.get("name", "diagnosis")),
        history=state.get("history") or state.get("case_text") or "",
        captions=state.get("captions") or [],
        findings=findings,
        topic=intent.get("topic"),
        findings_query=cfg.findings_query,
    )
    rejected = {
        v["index"]
        for v in (state.get("gate") or {}).get("images") or []
        if v.get("role") == "image" and not v.get("accepted")
    }
    for i, (name, _) in enumerate(ctx.images):
        if i not in rejected:
            queries.append({"image": name, "index": i, "purpose": "similar images"})
    return {"queries": queries}
