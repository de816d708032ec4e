"""``reason``: candidate diagnoses from the fused evidence, scored by the builtin calibrated model, then
ranked and explained by the configured reasoner (falling back to the builtin scoring when an LLM's output
is unusable)."""

from __future__ import annotations

from typing import Any

from agent.configuration import Configuration
from agent.evidence import finding_terms, imaged_region, perception_text, tumour_types
from agent.features import build_candidates
from agent.nodes.common import model_outputs, note, traced
from agent.reasoners.base import ReasoningRequest
from agent.resources import AgentContext
from agent.state import AgentState


def make_request(state: AgentState, ctx: AgentContext, cfg: Configuration) -> ReasoningRequest:
    """Builds the candidates, scores them with the builtin model and packs the reasoning request."""
    evidence = state.get("evidence") or []
    image_evidence = state.get("image_evidence") or []
    findings = state.get("findings") or []
    history = state.get("history") or state.get("case_text") or ""
    captions = list(state.get("captions") or [])
    candidates = build_candidates(
        evidence,
        image_evidence,
        case_text="\n".join([history, *captions]),
        perception=perception_text(findings),
        max_candidates=cfg.max_candidates,
        imaged_region=imaged_region(findings),
        finding_terms=finding_terms(findings),
        tumour_types=tumour_types(findings),
    )
    probs, null = ctx.resources.get_scorer().score(candidates)
    return ReasoningRequest(
        question=state.get("question") or "",
        intent=str((state.get("intent") or {}).get("name", "diagnosis")),
        history=history,
        captions=captions,
        evidence=evidence,
        image_evidence=image_evidence,
        model_outputs=model_outputs(findings, state.get("change")),
        candidates=candidates,
        probabilities=probs,
        null_probability=null,
        k=cfg.k,
        language=cfg.language,
    )


def fill_differential(
    proposed: list[dict[str, Any]], ranked: list[dict[str, Any]], k: int
) -> list[dict[str, Any]]:
    """``proposed`` topped up to ``k`` entries with the builtin-ranked candidates it does not already name.

    An LLM reasoner may propose fewer than ``k`` diagnoses; the rest of the differential then comes from the
    calibrated candidate ranking (marked ``"filled": True``), so a top-5 answer always has five entries when
    the evidence holds five candidates.
    """
    from retrieval.diagnosis import DiagnosisMatcher

    matcher = DiagnosisMatcher()
    out = list(proposed)
    for item in ranked:
        if len(out) >= k:
            break
        if not any(matcher.same(item["diagnosis"], have["diagnosis"]) for have in out):
            out.append({**item, "filled": True})
    return out


@traced("reason", reads=("evidence", "image_evidence", "findings"))
def reason(state: AgentState, ctx: AgentContext, cfg: Configuration) -> dict[str, Any]:
    """Proposes the differential (module docstring)."""
    request = make_request(state, ctx, cfg)
    scorer = ctx.resources.get_scorer()
    candidates = [
        {**c.to_dict(), "probability": round(p, 4)}
        for c, p in zip(request.candidates, request.probabilities, strict=True)
    ]
    if not request.candidates:
        return {
            "candidates": [],
            "proposed": [],
            "reasoner": {"backend": scorer.name, "null_probability": 1.0, "notes": [], "fallback": False},
        }
    reasoner = ctx.resources.get_reasoner()
    result = reasoner.reason(request)
    notes = list(result.notes)
    proposed = result.differential
    info = result.to_dict()
    if result.fallback or not proposed:
        proposed = scorer.differential(request)
        info["null_probability"] = request.null_probability
        info["fallback"] = True
    elif len(proposed) < request.k:
        proposed = fill_differential(proposed, scorer.differential(request), request.k)
        info["filled"] = True
    info["builtin_null_probability"] = round(request.null_probability, 4)
    update: dict[str, Any] = {"candidates": candidates, "proposed": proposed, "reasoner": info}
    if notes:
        update["notes"] = [note(state, "reason", n) for n in notes]
    return update
