"""What the graph's nodes use besides the state: backends (cached per process) and the run's images.

:class:`Resources` creates the searcher, VLM, reasoner, builtin scorer and intent router lazily, on the first
node that needs them, and keeps them in process-wide caches (a model never loads twice in one process).
Objects injected at construction (tests, benchmarks) take precedence. :class:`AgentContext` is LangGraph's
run context (``context_schema``): it carries the images, which never enter the checkpointed state.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.configuration import Configuration
from zebra.errors import NotFoundError, ZebraError

log = logging.getLogger(__name__)

_lock = threading.RLock()
_searchers: dict[tuple[str, bool], Any] = {}
_routers: dict[tuple[str, float], Any] = {}


def clear_caches() -> None:
    """Forgets the process-wide searchers and routers (tests)."""
    with _lock:
        _searchers.clear()
        _routers.clear()


def open_searcher(bundle: str | Path, *, verify: bool = True) -> Any:
    """The cached :class:`retrieval.searcher.Searcher` of a bundle folder.

    Raises:
        NotFoundError: When the folder does not exist.
    """
    path = Path(bundle).expanduser().resolve()
    key = (str(path), bool(verify))
    with _lock:
        searcher = _searchers.get(key)
        if searcher is None:
            if not path.is_dir():
                raise NotFoundError(
                    f"Index bundle {path} does not exist.",
                    hint="Build one with `zebra index build` (or `zebra setup`), or pass --bundle DIR.",
                )
            from retrieval.searcher import Searcher

            searcher = _searchers[key] = Searcher(path, verify=verify)
        return searcher


@dataclass
class Resources:
    """Backends of one agent (module docstring).

    Attributes:
        config: The agent's configuration (backend specs).
        searcher, vlm, reasoner, scorer, router: Injected objects, or ``None`` to create them on demand.
    """

    config: Configuration
    searcher: Any = None
    vlm: Any = None
    reasoner: Any = None
    scorer: Any = None
    router: Any = None
    vlm_error: str | None = None
    _vlm_tried: bool = False

    def knowledge_base_pending(self) -> str | None:
        """Progress in words while the default knowledge base is being built (or why it is missing), else
        ``None``.

        Only the settings' default bundle is awaited (``zebra setup --background`` / ``zebra serve`` build it,
        :mod:`index_builder.background`); another configured bundle that does not exist is an error of
        :meth:`get_searcher`. Once the bundle is published the next question opens it: no restart.
        """
        if self.searcher is not None:
            return None
        from zebra.config import get_settings

        settings = get_settings()
        bundle = Path(self.config.bundle).expanduser() if self.config.bundle else settings.bundle_dir
        if (
            bundle / "manifest.json"
        ).is_file() or bundle.resolve() != settings.bundle_dir.expanduser().resolve():
            return None
        from index_builder.background import read_status

        return read_status(settings).progress_words()

    def get_searcher(self) -> Any:
        """The searcher over the configured bundle."""
        if self.searcher is None:
            if not self.config.bundle:
                from zebra.config import get_settings

                self.config.bundle = str(get_settings().bundle_dir)
            self.searcher = open_searcher(self.config.bundle, verify=self.config.verify_bundle)
        return self.searcher

    def get_vlm(self) -> Any | None:
        """The VLM, or ``None`` when it cannot be created (``vlm_error`` says why; answers note it)."""
        if self.vlm is None and not self._vlm_tried and self.config.use_vlm:
            self._vlm_tried = True
            try:
                from vlm.registry import create_vlm

                self.vlm = create_vlm(self.config.vlm)
            except ZebraError as exc:
                self.vlm_error = exc.message
                log.warning("VLM %s unavailable: %s", self.config.vlm, exc)
        return self.vlm

    def get_scorer(self) -> Any:
        """The builtin reasoner (its calibrated scoring and risk table serve every backend)."""
        if self.scorer is None:
            from agent.reasoners import create_reasoner
            from zebra.registry import BackendSpec

            spec = BackendSpec.parse(self.config.reasoner)
            # "builtin:/path/weights.json" names the weights of the scoring too
            weights = self.config.weights or (spec.arg if spec.scheme == "builtin" and spec.arg else None)
            self.scorer = create_reasoner("builtin", weights=weights)
        return self.scorer

    def get_reasoner(self) -> Any:
        """The configured reasoner."""
        if self.reasoner is None:
            from agent.reasoners import create_reasoner
            from zebra.registry import BackendSpec

            spec = BackendSpec.parse(self.config.reasoner)
            if spec.scheme == "builtin":
                self.reasoner = self.get_scorer()
            else:
                self.reasoner = create_reasoner(
                    str(spec),
                    timeout_s=self.config.reasoner_timeout_s,
                    max_new_tokens=self.config.max_new_tokens,
                )
        return self.reasoner

    def get_router(self) -> Any:
        """The intent router."""
        if self.router is None:
            key = (self.config.intent_embedder, float(self.config.offdomain_threshold))
            with _lock:
                router = _routers.get(key)
                if router is None:
                    from agent.intents import IntentRouter
                    from index_builder.embedders import create_text_embedder

                    router = _routers[key] = IntentRouter(
                        QuestionCache(create_text_embedder(self.config.intent_embedder)),
                        threshold=self.config.offdomain_threshold,
                    )
            self.router = router
        return self.router


class QuestionCache:
    """A text embedder whose one-text calls (a routed question) are cached by text.

    Batch triage and evaluations ask the same question of every study; routing it costs a text-encoder
    pass each time otherwise. Other calls go to the wrapped embedder unchanged.

    Args:
        embedder: The text embedder.
        size: Questions kept.
    """

    def __init__(self, embedder: Any, size: int = 256) -> None:
        self.embedder = embedder
        self.size = size
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, texts: Any, **kwargs: Any) -> Any:
        """``embedder.encode(texts)``; a single text is answered from the cache when seen before."""
        import numpy as np

        if kwargs or len(texts) != 1 or not isinstance(texts[0], str):
            return self.embedder.encode(texts, **kwargs)
        key = texts[0]
        with self._lock:
            row = self._cache.get(key)
            if row is not None:
                self._cache.move_to_end(key)
                return row[None, :].copy()
        row = np.asarray(self.embedder.encode([key]), dtype=np.float32)[0].copy()
        with self._lock:
            self._cache[key] = row
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return row[None, :].copy()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.embedder, name)


@dataclass
class AgentContext:
    """LangGraph run context: resources and this turn's images (module docstring).

    Attributes:
        resources: Backends.
        images: ``(name, array)`` of the current study. priors: ``(name, array)`` of the prior study.
        analyses: VLM results per current-image index, filled by the gate and reused by perceive.
        thread_id: The session id (names heatmap files).
    """

    resources: Resources
    images: list[tuple[str, Any]] = field(default_factory=list)
    priors: list[tuple[str, Any]] = field(default_factory=list)
    analyses: dict[int, Any] = field(default_factory=dict)
    thread_id: str = "default"
