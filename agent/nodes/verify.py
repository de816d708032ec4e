"""``verify``: every claim cites something that exists; abstain below the risk-controlled threshold; back off
to a safer parent category when a fine-grained call is uncertain.

1. Citations are checked against the turn's citable ids (retrieved documents ``E*``, similar images ``I*``,
   model outputs ``M*``); unknown ids are removed from the citations and from ``[..]`` markers of the
   rationale, and a diagnosis left without any citation is dropped.
2. Probabilities are clipped to [0, 1] and scaled so that they sum to at most 1.
3. The top-1 probability is compared with the threshold certified for the target risk (``risk`` option, see
   :mod:`agent.risk`; or an explicit ``abstain_threshold``). Below it the agent abstains from the fine-grained
   call, and :func:`agent.taxonomy.backoff_category` looks for a parent category (ICD-10 ancestor, then ACR
   region) whose pooled probability reaches the threshold.
"""

from __future__ import annotations

import re
from typing import Any

from agent.configuration import Configuration
from agent.nodes.common import model_outputs, traced
from agent.resources import AgentContext
from agent.state import AgentState
from agent.taxonomy import Member, backoff_category, icd_code

_MARK = re.compile(r"\[([EIML]\d{1,4}(?:\s*,\s*[EIML]\d{1,4})*)\]")


def citable_ids(state: AgentState) -> set[str]:
    """Ids the differential may cite."""
    items = [
        *(state.get("evidence") or []),
        *(state.get("image_evidence") or []),
        *model_outputs(state.get("findings") or [], state.get("change")),
    ]
    return {str(i["id"]) for i in items}


def clean_rationale(text: str, valid: set[str]) -> str:
    """``text`` without citation markers of ids outside ``valid``."""

    def keep(m: re.Match[str]) -> str:
        ids = [i.strip() for i in m.group(1).split(",") if i.strip() in valid]
        return f"[{', '.join(ids)}]" if ids else ""

    return " ".join(_MARK.sub(keep, text or "").split())


@traced("verify", reads=("proposed", "evidence", "image_evidence"))
def verify(state: AgentState, ctx: AgentContext, cfg: Configuration) -> dict[str, Any]:
    """Checks, then decides between committing, backing off and abstaining (module docstring)."""
    valid = citable_ids(state)
    kept: list[dict[str, Any]] = []
    dropped: list[str] = []
    for item in state.get("proposed") or []:
        cites = [c for c in dict.fromkeys(item.get("citations") or []) if c in valid]
        if not cites:
            dropped.append(str(item.get("diagnosis")))
            continue
        prob = min(max(float(item.get("probability") or 0.0), 0.0), 1.0)
        kept.append(
            {
                "diagnosis": str(item["diagnosis"]),
                "probability": prob,
                "citations": cites,
                "rationale": clean_rationale(str(item.get("rationale") or ""), valid),
                "acr_codes": list(item.get("acr_codes") or []),
                "icd10": None,
            }
        )
    kept = kept[: cfg.k]
    total = sum(d["probability"] for d in kept)
    if total > 1.0:
        for d in kept:
            d["probability"] /= total
    for d in kept:
        d["probability"] = round(d["probability"], 4)
    scorer = ctx.resources.get_scorer()
    threshold = (
        float(cfg.abstain_threshold) if cfg.abstain_threshold is not None else scorer.threshold(cfg.risk)
    )
    top = kept[0]["probability"] if kept else 0.0
    verification: dict[str, Any] = {
        "threshold": round(threshold, 4),
        "risk": cfg.risk if cfg.risk is not None else scorer.risk_control.get("default_risk"),
        "top_probability": top,
        "checked_citations": sum(len(d["citations"]) for d in kept),
        "dropped": dropped,
    }
    update: dict[str, Any] = {"differential": kept, "verification": verification, "backoff": None}
    if not kept:
        why = "the retrieved evidence does not support any diagnosis"
        if dropped:
            why = "no proposed diagnosis cited existing evidence"
        if not state.get("evidence") and not state.get("image_evidence"):
            why = "no evidence was retrieved"
            if state.get("kb_pending"):
                why = (
                    f"the knowledge base a differential needs is not ready yet: {state['kb_pending']}; what the "
                    "image shows does not need it, and a question asked again when it is ready gets a differential"
                )
        update.update(abstained=True, abstain_reason=f"I cannot propose a diagnosis: {why}.")
        verification.update(abstained=True, abstain_reason=update["abstain_reason"])
        return update
    if top >= threshold:
        verification.update(abstained=False, abstain_reason=None)
        return update
    members = []
    for d in kept:
        d["icd10"] = icd_code(d["diagnosis"])
        members.append(Member(d["diagnosis"], d["probability"], d["icd10"], d["acr_codes"]))
    backoff = backoff_category(members, threshold)
    if threshold > 1.0:
        reason = (
            "no confidence level certifies the target error rate on the calibration data, so I do not commit "
            f"to a single diagnosis (the likeliest, {kept[0]['diagnosis']}, has probability {top:.2f})."
        )
    else:
        reason = (
            f"the likeliest diagnosis ({kept[0]['diagnosis']}) has probability {top:.2f}, below the "
            f"{threshold:.2f} needed for the target error rate."
        )
    update.update(abstained=True, abstain_reason=reason[0].upper() + reason[1:], backoff=backoff)
    verification.update(abstained=True, abstain_reason=update["abstain_reason"])
    return update
