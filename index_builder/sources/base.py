"""Document sources: a registry of kinds, each parsing ``KIND:PATH[?key=value&...]``."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from index_builder.documents import Document, ImageItem
from index_builder.errors import SourceError, SourceSpecError
from zebra.registry import Registry

SPLITS = ("train", "dev", "all")


@dataclass
class SourceSpec:
    """A parsed source spec.

    Attributes:
        kind: Registered source kind (``medpix``, ``hpo``, ``jsonl`` ...).
        path: The path part (may be empty for ``hpo``).
        options: ``?key=value`` options.
    """

    kind: str
    path: str = ""
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> SourceSpec:
        """Parses ``KIND``, ``KIND:PATH`` or ``KIND:PATH?key=value&key=value``.

        Raises:
            SourceSpecError: When the spec is empty or an option is malformed.
        """
        spec = (spec or "").strip()
        if not spec:
            raise SourceSpecError("Empty source spec.", hint="Use KIND:PATH, e.g. medpix:/data/medpix-2.0.")
        colon, question = spec.find(":"), spec.find("?")
        if question >= 0 and (colon < 0 or question < colon):  # "hpo?max_phenotypes=30": no path
            kind, path, query = spec[:question], "", spec[question + 1 :]
        else:
            kind, _, rest = spec.partition(":")
            path, _, query = rest.partition("?")
        options: dict[str, str] = {}
        if query:
            for part in query.split("&"):
                key, eq, value = part.partition("=")
                if not key or not eq:
                    raise SourceSpecError(
                        f"Bad option {part!r} in source spec {spec!r}.",
                        hint="Write options as ?key=value&key=value.",
                    )
                options[key.strip().lower()] = urllib.parse.unquote(value.strip())
        return cls(kind.strip().lower(), path.strip(), options)

    def __str__(self) -> str:
        text = f"{self.kind}:{self.path}" if self.path else self.kind
        if self.options:
            text += "?" + "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return text


class Source:
    """Base class of document sources; subclasses set :attr:`kind`, :attr:`options` and override the
    iterators they support.

    Args:
        spec: The parsed spec.
    """

    kind: ClassVar[str] = ""
    #: Allowed ``?key=`` options and a one-line description each (``name`` is always allowed).
    options: ClassVar[dict[str, str]] = {}
    needs_path: ClassVar[bool] = True
    #: Whether the CLI's ``--split`` applies to this source.
    supports_split: ClassVar[bool] = False

    def __init__(self, spec: SourceSpec) -> None:
        unknown = sorted(set(spec.options) - set(self.options) - {"name"})
        if unknown:
            allowed = ", ".join(sorted({*self.options, "name"}))
            raise SourceSpecError(
                f"Source {self.kind!r} has no option {', '.join(unknown)}.", hint=f"Allowed: {allowed}."
            )
        if self.needs_path and not spec.path:
            raise SourceSpecError(f"Source {self.kind!r} needs a path.", hint=f"Use {self.kind}:PATH.")
        self.spec = spec
        self.name = _slug(spec.options.get("name") or self.kind)
        self.path = Path(spec.path).expanduser().resolve() if spec.path else None

    def documents(self) -> Iterator[Document]:
        """Text documents (none by default)."""
        return iter(())

    def images(self) -> Iterator[ImageItem]:
        """Images for the image index (none by default)."""
        return iter(())

    def option(self, key: str, default: str) -> str:
        """An option's value, or ``default``."""
        return self.spec.options.get(key, default)

    def split(self) -> str:
        """The ``split`` option, validated."""
        split = self.option("split", "all").lower()
        if split not in SPLITS:
            raise SourceSpecError(
                f"Unknown split {split!r} for {self.kind}.", hint=f"Use one of {', '.join(SPLITS)}."
            )
        return split

    def require_file(self, path: Path, what: str) -> Path:
        """``path`` when it is a file, else a :class:`SourceError` naming ``what``."""
        if not path.is_file():
            raise SourceError(
                f"{what} not found at {path}.", hint=f"Check the path given to {self.kind}:PATH."
            )
        return path

    def __str__(self) -> str:
        # Record the resolved path so a manifest says exactly what was read.
        return str(SourceSpec(self.spec.kind, str(self.path) if self.path else "", self.spec.options))


SOURCES: Registry[Source] = Registry("document source")


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator registering a :class:`Source` subclass under its :attr:`~Source.kind`."""

    def factory(arg: str, *, source_spec: SourceSpec) -> Source:
        return cls(source_spec)

    factory.__doc__ = (cls.__doc__ or "").strip()
    SOURCES.register(cls.kind)(factory)
    _CLASSES[cls.kind] = cls
    return cls


_CLASSES: dict[str, type[Source]] = {}


def source_classes() -> dict[str, type[Source]]:
    """Registered kinds to their classes."""
    return dict(_CLASSES)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.strip().lower()).strip("-") or "source"


def slug(text: str, max_len: int = 60) -> str:
    """A short URL-safe key made from ``text``."""
    return _slug(text)[:max_len].strip("-") or "x"


def create_source(spec: str | SourceSpec, *, split: str | None = None) -> Source:
    """Builds the source for ``spec``; ``split`` fills the ``split`` option of sources that take one.

    Raises:
        BackendNotFoundError: Unknown kind (with a did-you-mean).
        SourceSpecError: Bad options.
    """
    parsed = spec if isinstance(spec, SourceSpec) else SourceSpec.parse(spec)
    cls = _CLASSES.get(parsed.kind)
    if split and cls is not None and cls.supports_split and "split" not in parsed.options:
        parsed = SourceSpec(parsed.kind, parsed.path, {**parsed.options, "split": split})
    return SOURCES.create(parsed.kind, source_spec=parsed)
