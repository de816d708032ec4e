"""Which images of a study an analyser looks at, and the picture it sees of each.

Shared by triage (what a worker analyses) and the PACS write-back (which original image the results attach
to), so both pick the same image.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pick_images(study: Any, max_images: int = 1) -> list[Any]:
    """Up to ``max_images`` images of the study's largest series, evenly spaced around its middle.

    Returns:
        ``MedicalImage`` objects (empty when the study holds none).
    """
    series = max((s for s in study.series if s.images), key=lambda s: len(s.images), default=None)
    if series is None:
        return []
    images = series.images
    n = max(1, min(int(max_images), len(images)))
    if n == 1:
        return [images[len(images) // 2]]
    idx = np.linspace(0, len(images) - 1, n + 2)[1:-1].round().astype(int)
    return [images[i] for i in dict.fromkeys(idx.tolist())]


def display_array(image: Any) -> np.ndarray:
    """The uint8 picture of a ``MedicalImage`` (its colour pixels when it has them)."""
    return image.rgb if getattr(image, "rgb", None) is not None else image.display
