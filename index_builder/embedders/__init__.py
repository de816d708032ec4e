"""Text and image embedders, created on demand from specs (``builtin``, ``st:/path``, ``openclip:ARCH@PATH``).

Models are loaded lazily and cached per process by spec; importing this package loads nothing heavy.
"""

from __future__ import annotations

from index_builder.embedders import image as _image
from index_builder.embedders import text as _text
from index_builder.embedders.base import (
    IMAGE_EMBEDDERS,
    TEXT_EMBEDDERS,
    ImageEmbedder,
    TextEmbedder,
    token_offsets,
)

__all__ = [
    "IMAGE_EMBEDDERS",
    "TEXT_EMBEDDERS",
    "ImageEmbedder",
    "TextEmbedder",
    "create_image_embedder",
    "create_text_embedder",
    "describe_text_embedder",
    "token_offsets",
]

del _image, _text


def create_text_embedder(spec: str = "builtin", **kw: object) -> TextEmbedder:
    """Creates (or returns the cached) text embedder for ``spec``.

    Raises:
        BackendNotFoundError: Unknown scheme; lists the available ones.
    """
    return TEXT_EMBEDDERS.create(spec, **kw)


def create_image_embedder(spec: str = "builtin", **kw: object) -> ImageEmbedder:
    """Creates (or returns the cached) image embedder for ``spec``.

    Raises:
        BackendNotFoundError: Unknown scheme; lists the available ones.
    """
    return IMAGE_EMBEDDERS.create(spec, **kw)


def describe_text_embedder(embedder: TextEmbedder, spec: str) -> dict[str, object]:
    """The manifest block for a text embedder, with the backend that computed the vectors (``torch``,
    ``onnx`` with its export's SHA-256 and agreement to torch, or ``numpy`` for the hashing embedder)."""
    block: dict[str, object] = {
        "spec": spec,
        "name": embedder.name,
        "dim": int(embedder.dim),
        "max_tokens": int(embedder.max_tokens),
        "normalize": True,
        "backend": str(getattr(embedder, "backend", "torch")),
    }
    describe = getattr(embedder, "describe", None)
    if callable(describe):
        block.update(describe())
    return block
