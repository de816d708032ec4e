"""In-memory rows of a NOVA-layout data set: :class:`BBox` and :class:`NovaRecord`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zebra_datasets.schema import GOLD, REQUIRED_META

_TRUE = {"true", "1", "yes", "y"}


@dataclass
class BBox:
    """An axis-aligned box in pixels.

    Attributes:
        x: Left edge (top-left corner), pixels.
        y: Top edge, pixels.
        width: Width in pixels.
        height: Height in pixels.
        source: ``"gold"`` for reference boxes; NOVA names individual raters otherwise.
        label: What the box shows (a class name), when the data set says; stored in
            ``meta["box_labels"]`` because NOVA's box struct has no such field.
    """

    x: float
    y: float
    width: float
    height: float
    source: str = GOLD
    label: str | None = None

    def xyxy(self) -> tuple[float, float, float, float]:
        """``(x1, y1, x2, y2)``: top-left and bottom-right corners."""
        return (self.x, self.y, self.x + self.width, self.y + self.height)

    @classmethod
    def from_xyxy(
        cls, x1: float, y1: float, x2: float, y2: float, *, source: str = GOLD, label: str | None = None
    ) -> BBox:
        """Builds a box from its corners (in any order)."""
        left, right = sorted((float(x1), float(x2)))
        top, bottom = sorted((float(y1), float(y2)))
        return cls(left, top, right - left, bottom - top, source=source, label=label)

    @property
    def area(self) -> float:
        """Width times height, pixels²."""
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def is_gold(self) -> bool:
        """Whether this is a reference box."""
        return self.source == GOLD

    def within(self, width: float, height: float, *, tol: float = 1e-6) -> bool:
        """Whether the box lies inside an image of ``width`` x ``height`` pixels."""
        x1, y1, x2, y2 = self.xyxy()
        return x1 >= -tol and y1 >= -tol and x2 <= width + tol and y2 <= height + tol and self.area >= 0


@dataclass
class NovaRecord:
    """One image row of a NOVA-layout data set.

    Attributes:
        filename: Image file name (``"case0001_001.png"``).
        image_path: Image path relative to the data set root, as stored (``"images/case0001_001.png"``).
        case_id: The case (patient/study) this image belongs to.
        scan_id: The scan (series/time point) this image belongs to.
        caption_text: Radiology caption of this image ("" when none).
        bboxes: Boxes, gold and rater boxes alike; see :attr:`gold_boxes`.
        meta: At least ``clinical_history`` and ``final_diagnosis`` (``None`` when unknown); converters add
            more string fields (e.g. ``synthetic``, ``split``, ``modality``).
        image_source: Where the image currently is, for :func:`~zebra_datasets.nova.write_nova` to copy or
            link from. Not written to the file.
        image_bytes: Encoded image bytes when the file embeds them (Hugging Face ``Image`` struct). Not
            written to the parquet file; ``write_nova`` writes them out as an image file.
    """

    filename: str
    image_path: str
    case_id: str
    scan_id: str
    caption_text: str = ""
    bboxes: list[BBox] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    image_source: Path | None = field(default=None, compare=False, repr=False)
    image_bytes: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for key in REQUIRED_META:
            self.meta.setdefault(key, None)

    @property
    def clinical_history(self) -> str:
        """``meta["clinical_history"]`` or ``""``."""
        return self.meta.get("clinical_history") or ""

    @property
    def final_diagnosis(self) -> str:
        """``meta["final_diagnosis"]`` or ``""``."""
        return self.meta.get("final_diagnosis") or ""

    @property
    def gold_boxes(self) -> list[BBox]:
        """The reference boxes (``source == "gold"``)."""
        return [b for b in self.bboxes if b.is_gold]

    @property
    def is_synthetic(self) -> bool:
        """Whether ``meta["synthetic"]`` says the row was generated, not taken from a real patient."""
        value = self.meta.get("synthetic")
        return value is True or str(value).strip().lower() in _TRUE
