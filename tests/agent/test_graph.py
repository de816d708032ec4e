"""Graph structure: nodes, edges, conditional routes."""

from __future__ import annotations

from agent.graph import NODES, build_graph, mermaid, route_after_verify
from agent.nodes.gate import route_after_gate


def _edges():
    graph = build_graph().get_graph()
    return {(e.source, e.target, e.conditional) for e in graph.edges}, set(graph.nodes)


def test_nodes_and_plain_edges() -> None:
    edges, nodes = _edges()
    assert set(NODES) | {"__start__", "__end__"} == nodes
    for source, target in [
        ("__start__", "intake"),
        ("intake", "gate"),
        ("perceive", "plan"),
        ("plan", "retrieve"),
        ("retrieve", "reason"),
        ("reason", "verify"),
        ("literature", "respond"),
        ("respond", "__end__"),
    ]:
        assert (source, target, False) in edges


def test_conditional_edges() -> None:
    edges, _ = _edges()
    from_gate = {t for s, t, c in edges if s == "gate" and c}
    from_verify = {t for s, t, c in edges if s == "verify" and c}
    assert from_gate == {"respond", "perceive", "literature"}
    assert from_verify == {"respond", "literature"}
    # nothing but conditional edges leave the gate: an abstention can skip the whole pipeline
    assert not [e for e in edges if e[0] == "gate" and not e[2]]


def test_routes() -> None:
    assert route_after_gate({"gate": {"blocked": True}, "new_case": True}) == "respond"
    assert (
        route_after_gate({"gate": {"blocked": False}, "new_case": True, "intent": {"name": "diagnosis"}})
        == "perceive"
    )
    assert route_after_gate({"gate": {}, "new_case": False, "intent": {"name": "literature"}}) == "literature"
    assert (
        route_after_gate({"gate": {}, "new_case": False, "followup": True, "intent": {"name": "location"}})
        == "respond"
    )
    assert route_after_verify({"intent": {"name": "literature"}}) == "literature"
    assert route_after_verify({"intent": {"name": "diagnosis"}}) == "respond"


def test_mermaid_lists_every_node() -> None:
    text = mermaid()
    assert all(name in text for name in NODES)
