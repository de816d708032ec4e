"""The diagnostic agent: a LangGraph graph that fuses VLM outputs and retrieved evidence into a cited,
calibrated differential diagnosis (research use only). See ``docs/agent.md``.

Nothing heavy is imported here; use :class:`agent.api.Agent` and :func:`agent.graph.build_graph`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Agent", "Answer", "Configuration", "DifferentialEntry", "build_graph"]

_HOMES = {
    "Agent": "agent.api",
    "Answer": "agent.answer",
    "DifferentialEntry": "agent.answer",
    "Configuration": "agent.configuration",
    "build_graph": "agent.graph",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
