"""Knowledge index bundles: document sources, chunking, embedders, FAISS + BM25 indexes, and the default
knowledge base (:mod:`index_builder.default_kb`, ``zebra setup``) with its crash-safe background build
(:mod:`index_builder.background`).

Public API (imported lazily, so ``import index_builder`` loads no model and no FAISS)::

    from index_builder import Bundle, build_bundle, add_to_bundle, delete_from_bundle
    from index_builder import create_text_embedder, create_image_embedder, create_source

See ``docs/index_builder.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Bundle": "index_builder.bundle",
    "build_bundle": "index_builder.build",
    "add_to_bundle": "index_builder.build",
    "delete_from_bundle": "index_builder.build",
    "Manifest": "index_builder.build",
    "ChunkingConfig": "index_builder.chunking",
    "Document": "index_builder.documents",
    "ImageItem": "index_builder.documents",
    "create_text_embedder": "index_builder.embedders",
    "create_image_embedder": "index_builder.embedders",
    "TEXT_EMBEDDERS": "index_builder.embedders",
    "IMAGE_EMBEDDERS": "index_builder.embedders",
    "TextEmbedder": "index_builder.embedders",
    "ImageEmbedder": "index_builder.embedders",
    "create_source": "index_builder.sources",
    "SOURCES": "index_builder.sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'index_builder' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
