"""Helpers shared by the nodes: the trace wrapper, compact summaries, citable model outputs."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.configuration import Configuration
from agent.resources import AgentContext
from agent.state import AgentState

log = logging.getLogger(__name__)

#: A node: a function of the state, the run context and the configuration returning a state update.
NodeFn = Callable[[AgentState, AgentContext, Configuration], dict[str, Any]]


def summarize(value: Any, depth: int = 0) -> Any:
    """A short JSON-safe description of ``value`` for traces (lists become counts and a first item)."""
    if isinstance(value, str):
        return value if len(value) <= 160 else value[:159] + "…"
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, dict):
        if depth >= 2:
            return f"{{{len(value)} keys}}"
        return {str(k): summarize(v, depth + 1) for k, v in list(value.items())[:12]}
    if isinstance(value, list | tuple):
        if not value:
            return []
        if depth >= 1:
            return f"[{len(value)} items]"
        return {"n": len(value), "first": summarize(value[0], depth + 1)}
    return repr(value)[:160]


def traced(name: str, reads: Sequence[str]) -> Callable[[NodeFn], NodeFn]:
    """Decorates a node so that it appends a trace entry: node name, summaries of the state keys it reads and
    of its update, and the seconds it took."""

    def deco(fn: NodeFn) -> NodeFn:
        @functools.wraps(fn)
        def wrapper(state: AgentState, ctx: AgentContext, cfg: Configuration) -> dict[str, Any]:
            start = time.perf_counter()
            update = dict(fn(state, ctx, cfg) or {})
            seconds = time.perf_counter() - start
            turn = update.get("turn", state.get("turn", 0))
            entry = {
                "turn": turn,
                "node": name,
                "inputs": {k: summarize(state.get(k)) for k in reads if k in state},
                "outputs": {k: summarize(v) for k, v in update.items() if k not in ("trace", "notes")},
                "seconds": round(seconds, 4),
            }
            update["trace"] = [*update.get("trace", []), entry]
            log.debug("node %s took %.3f s", name, seconds)
            return update

        return wrapper

    return deco


def note(state: AgentState, node: str, text: str, turn: int | None = None) -> dict[str, Any]:
    """A note entry for the ``notes`` channel."""
    return {"turn": state.get("turn", 0) if turn is None else turn, "node": node, "text": text}


def model_outputs(findings: Sequence[dict[str, Any]], change: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Citable image-model outputs (``M*``): each accepted image's caption/attributes, and the change."""
    out: list[dict[str, Any]] = []
    for f in findings:
        if not f.get("id") or not f.get("accepted", True):
            continue
        attrs = f.get("attributes") or {}
        desc = ", ".join(f"{k}: {v}" for k, v in attrs.items() if k != "confidences" and v not in (None, ""))
        text = " ".join(p for p in (f.get("caption") or "", f"({desc})" if desc else "") if p)
        if f.get("anomaly_score") is not None:
            text = f"{text} Anomaly score {float(f['anomaly_score']):.2f}.".strip()
        out.append(
            {
                "id": f["id"],
                "kind": "model_output",
                "what": "caption",
                "title": f"Image model on {f.get('image')}",
                "text": text,
                "quote": f.get("caption") or text,
                "model": f.get("model"),
            }
        )
    if change and change.get("id"):
        out.append(
            {
                "id": change["id"],
                "kind": "model_output",
                "what": "change",
                "title": "Change against the prior",
                "text": change.get("statement", ""),
                "quote": change.get("statement", ""),
                "model": change.get("model"),
            }
        )
    return out
