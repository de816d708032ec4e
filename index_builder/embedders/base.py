"""Embedder protocols and their registries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from zebra.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


@runtime_checkable
class TextEmbedder(Protocol):
    """Turns texts into L2-normalised float32 vectors.

    Attributes:
        name: Model name recorded in manifests.
        dim: Vector dimension.
        max_tokens: Longest input (in the model's tokens, special tokens included) before truncation.
    """

    name: str
    dim: int
    max_tokens: int

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """``(n, dim)`` float32, L2-normalised."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` without special tokens."""
        ...

    def tokenizer(self) -> Any:
        """The tokenizer (a Hugging Face tokenizer for transformer models), used for chunking."""
        ...


@runtime_checkable
class ImageEmbedder(Protocol):
    """Turns images (and texts, through the same CLIP space) into L2-normalised vectors."""

    name: str
    dim: int

    def encode_images(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        """``(n, dim)`` float32, L2-normalised."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 in the image space (CLIP text tower), for cross-modal search."""
        ...


TEXT_EMBEDDERS: Registry[TextEmbedder] = Registry("text embedder")
IMAGE_EMBEDDERS: Registry[ImageEmbedder] = Registry("image embedder")


def token_offsets(embedder: TextEmbedder, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
    """Character spans of each token (no special tokens) of each text, for chunking.

    Uses the embedder's own ``token_offsets`` when it has one, otherwise its Hugging Face fast tokenizer's
    offset mapping.
    """
    own = getattr(embedder, "token_offsets", None)
    if callable(own):
        return own(texts)
    tok = embedder.tokenizer()
    enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [[(int(a), int(b)) for a, b in offsets] for offsets in enc["offset_mapping"]]
