"""A detected box (:class:`Box`), on its own so that drawing code can use it without the analysis types."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def clean_float(value: float | None) -> float | None:
    """JSON has no NaN/inf: those become ``None``."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Box:
    """An axis-aligned box in input-image pixels.

    Attributes:
        x1: Left edge. y1: Top edge. x2: Right edge. y2: Bottom edge (all in pixels of the analysed image).
        score: Detection confidence in [0, 1].
        label: Optional class name (e.g. ``"lesion"``).
        position: Where the box lies in words (``"right anterior"``: patient side by radiological convention,
            axial slice assumed; relative to the head's extent), ``None`` when not computed.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    label: str | None = None
    position: str | None = None

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return max(0.0, self.y2 - self.y1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "x1": float(self.x1),
            "y1": float(self.y1),
            "x2": float(self.x2),
            "y2": float(self.y2),
            "score": clean_float(self.score),
            "label": self.label,
            "position": self.position,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Box:
        """Inverse of :meth:`to_dict`."""
        return cls(
            x1=float(data["x1"]),
            y1=float(data["y1"]),
            x2=float(data["x2"]),
            y2=float(data["y2"]),
            score=float(data.get("score") or 0.0),
            label=data.get("label"),
            position=data.get("position"),
        )
