"""The graph's nodes, one module per step: each is a function ``node(state, ctx, cfg) -> update`` of the state,
the run context (:class:`agent.resources.AgentContext`) and the configuration."""

from __future__ import annotations

from agent.nodes.gate import gate, route_after_gate
from agent.nodes.intake import intake
from agent.nodes.perceive import perceive
from agent.nodes.plan import plan
from agent.nodes.reason import reason
from agent.nodes.respond import respond
from agent.nodes.retrieve import literature, retrieve
from agent.nodes.verify import verify

__all__ = [
    "gate",
    "intake",
    "literature",
    "perceive",
    "plan",
    "reason",
    "respond",
    "retrieve",
    "route_after_gate",
    "verify",
]
