"""The diagnostic graph (LangGraph ``StateGraph``), built by :func:`build_graph`, never at import time.

::

    START -> intake -> gate -(blocked: off-domain question, rejected images, nothing to reason from)-> respond
                           -(new case)-> perceive -> plan -> retrieve -> reason -> verify -(literature)-> literature
                           -(literature question on the earlier case)-> literature                         |
                           -(follow-up on the earlier case)-> respond <------------------------------------+
    respond -> END

Each node is a function of the state, the run context and the configuration (see :mod:`agent.nodes`); the
adapters here read the configuration from ``RunnableConfig["configurable"]`` and the context from LangGraph's
runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from agent.configuration import Configuration
from agent.nodes import (
    gate,
    intake,
    literature,
    perceive,
    plan,
    reason,
    respond,
    retrieve,
    route_after_gate,
    verify,
)
from agent.nodes.common import NodeFn
from agent.resources import AgentContext, Resources
from agent.state import AgentState

#: Node names in pipeline order.
NODES: tuple[str, ...] = (
    "intake",
    "gate",
    "perceive",
    "plan",
    "retrieve",
    "reason",
    "verify",
    "literature",
    "respond",
)


def _adapt(fn: NodeFn, default: Configuration | None) -> Callable[..., dict[str, Any]]:
    """A LangGraph node calling ``fn(state, ctx, cfg)``."""

    def node(state: AgentState, config: RunnableConfig, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        configurable = (config or {}).get("configurable") or {}
        names = set(Configuration.field_names())
        if default is not None and not (names & set(configurable)):
            cfg = default
        else:
            cfg = Configuration.from_runnable_config(config)
        ctx = runtime.context
        if ctx is None:
            ctx = AgentContext(resources=Resources(cfg))
        return fn(state, ctx, cfg)

    node.__name__ = getattr(fn, "__name__", "node")
    return node


def route_after_verify(state: AgentState) -> str:
    """``literature`` for a literature question, else ``respond``."""
    return "literature" if (state.get("intent") or {}).get("name") == "literature" else "respond"


def build_graph(config: Configuration | None = None, *, checkpointer: Any = None) -> CompiledStateGraph:
    """Builds and compiles the graph of the module docstring.

    Args:
        config: Options used when a run's ``configurable`` holds none (runs may still pass their own).
        checkpointer: A LangGraph checkpointer (e.g. :func:`agent.checkpoint.sqlite_saver`) for sessions;
            ``None`` keeps no memory between runs.

    Returns:
        The compiled graph; invoke it with ``context=AgentContext(...)``.
    """
    graph = StateGraph(AgentState, context_schema=AgentContext)
    for name, fn in (
        ("intake", intake),
        ("gate", gate),
        ("perceive", perceive),
        ("plan", plan),
        ("retrieve", retrieve),
        ("reason", reason),
        ("verify", verify),
        ("literature", literature),
        ("respond", respond),
    ):
        graph.add_node(name, _adapt(fn, config))
    graph.add_edge(START, "intake")
    graph.add_edge("intake", "gate")
    graph.add_conditional_edges(
        "gate", route_after_gate, {"respond": "respond", "perceive": "perceive", "literature": "literature"}
    )
    graph.add_edge("perceive", "plan")
    graph.add_edge("plan", "retrieve")
    graph.add_edge("retrieve", "reason")
    graph.add_edge("reason", "verify")
    graph.add_conditional_edges(
        "verify", route_after_verify, {"literature": "literature", "respond": "respond"}
    )
    graph.add_edge("literature", "respond")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer, name="zebra-diagnostic-agent")


def mermaid(graph: CompiledStateGraph | None = None) -> str:
    """The graph as a mermaid diagram."""
    return (graph or build_graph()).get_graph().draw_mermaid()
