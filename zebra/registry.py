"""One backend registry pattern for embedders, VLMs, reasoners and LLMs.

A backend is named by a *spec*: ``"builtin"``, ``"hf:/path/to/model"``, ``"openai:http://host:8000/v1"``,
``"st:/path"``. The part before the first colon picks the registered factory, the rest is its argument.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from zebra.errors import BackendNotFoundError, ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class BackendSpec:
    """A parsed backend spec.

    Attributes:
        scheme: Registered backend name, e.g. ``"builtin"``, ``"hf"``, ``"openai"``.
        arg: Everything after the first colon (a path or a URL), or ``""``.
    """

    scheme: str
    arg: str = ""

    @classmethod
    def parse(cls, spec: str) -> BackendSpec:
        """Parses ``"scheme"`` or ``"scheme:arg"``.

        Raises:
            ConfigError: When the spec is empty.
        """
        spec = (spec or "").strip()
        if not spec:
            raise ConfigError(
                "Empty backend spec.", hint="Use e.g. 'builtin', 'hf:/path' or 'openai:http://...'."
            )
        scheme, _, arg = spec.partition(":")
        return cls(scheme=scheme.strip().lower(), arg=arg.strip())

    def __str__(self) -> str:
        return f"{self.scheme}:{self.arg}" if self.arg else self.scheme


class Registry(Generic[T]):
    """Maps backend names to factories, with "did you mean" errors.

    Args:
        kind: What this registry holds, used in messages (e.g. ``"text embedder"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory(arg: str, **kwargs) -> T`` under ``name``."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            key = name.lower()
            if key in self._factories:
                raise ValueError(f"{self.kind} backend {name!r} registered twice")
            self._factories[key] = factory
            doc_lines = (factory.__doc__ or "").strip().splitlines()
            self._help[key] = help or (doc_lines[0] if doc_lines else "")
            return factory

        return deco

    def available(self) -> list[str]:
        """Names of the registered backends, sorted."""
        return sorted(self._factories)

    def describe(self) -> dict[str, str]:
        """Backend name to one-line help."""
        return {k: self._help.get(k, "") for k in self.available()}

    def create(self, spec: str | BackendSpec, **kwargs: object) -> T:
        """Builds the backend named by ``spec``.

        Raises:
            BackendNotFoundError: When no backend of that name exists; lists those that do.
        """
        parsed = spec if isinstance(spec, BackendSpec) else BackendSpec.parse(spec)
        factory = self._factories.get(parsed.scheme)
        if factory is None:
            close = difflib.get_close_matches(parsed.scheme, self.available(), n=1)
            did_you_mean = f" Did you mean {close[0]!r}?" if close else ""
            raise BackendNotFoundError(
                f"Unknown {self.kind} backend {parsed.scheme!r}.{did_you_mean}",
                hint=f"Available: {', '.join(self.available()) or '(none)'}.",
            )
        return factory(parsed.arg, **kwargs)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._factories
