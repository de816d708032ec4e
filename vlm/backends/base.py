"""The protocol every VLM backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from vlm.types import ImageAnalysis, StudyAnalysis

if TYPE_CHECKING:
    from PIL import Image

#: What backends accept as an image: a 2-D grayscale / HxWx3 array (any dtype) or a PIL image.
ImageInput = Any  # np.ndarray | PIL.Image.Image


@runtime_checkable
class VLMBackend(Protocol):
    """An anomaly-aware vision-language model.

    Attributes:
        name: Backend name + checkpoint id, copied into :attr:`ImageAnalysis.model`.
    """

    name: str

    def analyze_image(self, image: np.ndarray | Image.Image) -> ImageAnalysis:
        """Gates, then detects, localises, describes and embeds one image."""
        ...

    def analyze(self, image: np.ndarray | Image.Image, *, prior: Any = None) -> StudyAnalysis:
        """Analyses ``image`` and, when ``prior`` is given, the prior and the change since it."""
        ...

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalised image embeddings, float32 ``(n, dim)``."""
        ...
