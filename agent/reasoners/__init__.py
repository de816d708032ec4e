"""Reasoner backends: ``builtin`` (fitted evidence-fusion scoring), ``openai:URL`` (OpenAI-compatible chat
server), ``hf:PATH`` (local transformers chat model).

``create_reasoner(spec)`` imports the backend modules on first use and caches one instance per spec and
options, so models load once per process.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from agent.reasoners.base import Reasoner, ReasoningRequest, ReasoningResult
from zebra.registry import BackendSpec, Registry

#: Every reasoner backend, by scheme.
REASONERS: Registry[Reasoner] = Registry("reasoner")

#: Modules whose import registers a backend.
BACKEND_MODULES: tuple[str, ...] = (
    "agent.reasoners.builtin",
    "agent.reasoners.openai",
    "agent.reasoners.hf",
)

_cache: dict[str, Reasoner] = {}
_lock = threading.Lock()

__all__ = ["REASONERS", "Reasoner", "ReasoningRequest", "ReasoningResult", "clear_cache", "create_reasoner"]


def load_backends() -> None:
    """Imports the backend modules so that they register (idempotent)."""
    for name in BACKEND_MODULES:
        importlib.import_module(name)


def create_reasoner(spec: str = "builtin", **options: Any) -> Reasoner:
    """Builds (or returns the cached) reasoner named by ``spec``.

    Args:
        spec: ``builtin``, ``builtin:/path/weights.json``, ``openai:http://host:8000/v1[?model=NAME]`` or
            ``hf:/path/to/model``.
        **options: Backend options (``timeout_s``, ``max_new_tokens``, ``weights`` ...), part of the cache key.

    Raises:
        BackendNotFoundError: Unknown scheme (lists the available ones).
    """
    load_backends()
    parsed = BackendSpec.parse(spec)
    key = f"{parsed}|{sorted((k, repr(v)) for k, v in options.items())}"
    with _lock:
        reasoner = _cache.get(key)
        if reasoner is None:
            reasoner = REASONERS.create(parsed, **options)
            _cache[key] = reasoner
        return reasoner


def clear_cache() -> None:
    """Forgets cached reasoners (tests)."""
    with _lock:
        _cache.clear()
