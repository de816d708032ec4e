"""The VLM backend registry: ``create_vlm("builtin")``, ``create_vlm("builtin:/path/ckpt.safetensors")``,
``create_vlm("hf:/path/to/model")``.

Backends register lazily: importing this module loads no model; :func:`create_vlm` imports the backend
modules on first use and caches one instance per ``(spec, device)``.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from vlm.backends.base import VLMBackend
from zebra.registry import BackendSpec, Registry

log = logging.getLogger(__name__)

#: Every VLM backend, by scheme. ``builtin`` is registered by :mod:`vlm.backends.builtin`, ``hf`` by
#: :mod:`vlm.backends.hf`.
VLMS: Registry[VLMBackend] = Registry("VLM")

#: Modules whose import registers a backend (missing ones are skipped with a debug log).
BACKEND_MODULES: tuple[str, ...] = ("vlm.backends.builtin", "vlm.backends.hf")

_cache: dict[tuple[str, str], VLMBackend] = {}
_lock = threading.Lock()
_loaded = False


def load_backends() -> None:
    """Imports the backend modules so that they register (idempotent)."""
    global _loaded
    if _loaded:
        return
    for name in BACKEND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            log.debug("VLM backend module %s not present", name)
    _loaded = True


def create_vlm(spec: str = "builtin", **kw: Any) -> VLMBackend:
    """Builds (or returns the cached) VLM backend named by ``spec``.

    Args:
        spec: ``"builtin"``, ``"builtin:/path/to/ckpt.safetensors"`` or ``"hf:/path/to/model"``.
        **kw: Backend options; ``device`` (default ``"cpu"``) is part of the cache key.

    Raises:
        BackendNotFoundError: When ``spec`` names no registered backend.
        ModelError: When the backend's weights cannot be loaded.
    """
    load_backends()
    parsed = BackendSpec.parse(spec)
    device = str(kw.get("device", "cpu"))
    extra = tuple(sorted((k, repr(v)) for k, v in kw.items() if k != "device"))
    key = (str(parsed) + (repr(extra) if extra else ""), device)
    with _lock:
        backend = _cache.get(key)
        if backend is None:
            backend = VLMS.create(parsed, **kw)
            _cache[key] = backend
        return backend


def clear_cache() -> None:
    """Forgets cached backends (tests)."""
    with _lock:
        _cache.clear()
