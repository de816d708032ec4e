"""Document sources, one module per kind, registered in :data:`SOURCES`.

Spec syntax: ``KIND:PATH[?key=value&key=value]`` (quote it in a shell). Kinds: ``medpix``,
``medpix-images``, ``hpo``, ``nova``, ``images``, ``jsonl``, ``csv``, ``markdown``, ``text``.
"""

from __future__ import annotations

from index_builder.sources import csvfile, hpo, images, jsonl, medpix, nova, textdir
from index_builder.sources.base import (
    SOURCES,
    Source,
    SourceSpec,
    create_source,
    register_source,
    source_classes,
)

__all__ = [
    "SOURCES",
    "Source",
    "SourceSpec",
    "create_source",
    "describe_sources",
    "register_source",
    "source_classes",
]

del csvfile, hpo, images, jsonl, medpix, nova, textdir


def describe_sources() -> dict[str, str]:
    """Kind to one-line help (with its options)."""
    out = {}
    for kind, cls in sorted(source_classes().items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        opts = ", ".join(sorted({*cls.options, "name"}))
        out[kind] = f"{doc} Options: {opts}."
    return out
