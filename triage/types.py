"""Plain data passed between the worklist readers, the analysers, the priority score and the exports."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Version of the result JSON stored in ``TriageItem.result``.
RESULT_SCHEMA = 1


def short_hash(text: str, n: int = 16) -> str:
    """First ``n`` hex digits of the SHA-256 of ``text`` (stable pseudonymous ids for keys and logs)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


@dataclass(frozen=True)
class WorkItem:
    """One study of a worklist.

    Attributes:
        item_key: Stable key, unique in the worklist, free of identifiers (hashes or data-set case ids).
        accession: Accession number shown in the exports (never a patient name), or ``None``.
        study_path: A file or folder ``load_study`` reads, or a JSON list of files (one DICOM study
            spread over a folder that holds other studies too).
        prior_path: The prior study, same forms, or ``None``.
        history: Clinical history / indication, or ``None``.
    """

    item_key: str
    accession: str | None
    study_path: str
    prior_path: str | None = None
    history: str | None = None

    @property
    def log_id(self) -> str:
        """A pseudonymous id for log lines (hash of the key: keys may embed accession-derived text)."""
        return short_hash(self.item_key, 10)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


@dataclass
class Analysis:
    """What an analyser says about one study, in the shape the priority score and the exports read.

    Attributes:
        differential: ``[{"diagnosis", "probability", "citations"}]``, likeliest first.
        abstained: Whether the analyser declined to commit to a diagnosis. abstain_reason: Why.
        anomaly_score: Highest VLM anomaly score over the analysed images, in [0, 1], or ``None``.
        gate_accepted: Whether the input gate accepted the current image. gate_kind: Its verdict kind.
        ood_score: Out-of-distribution signal of the gate in [0, 1] (0 = typical), or ``None``.
        boxes: Detected findings of the current image, ``{"x1", "y1", "x2", "y2", "score", "label"}``.
        caption: A findings sentence, or ``None``.
        change_label: ``worsening``, ``stable`` or ``improved`` against the prior, or ``None`` without one.
        change_confidence: Probability of ``change_label``. change_statement: One sentence.
        nearest_similarity: Cosine similarity of the current image to the nearest case of the bundle's image
            index (1 = same picture), or ``None`` when the bundle has no image index.
        nearest_diagnosis: That case's diagnosis, when known.
        text_support: How well the text evidence supports the top diagnosis, in [0, 1], or ``None``.
        image: The analysed display image (uint8 2-D or HxWx3) for the thumbnail, or ``None``.
        heatmap: Anomaly heatmap over ``image`` (float 2-D in [0, 1]) or ``None``.
        overlay_png: A ready overlay PNG (when the analyser wrote one), used instead of ``heatmap``.
        analyser: Which analyser produced it (backend specs).
        notes: Things the reader should know (degraded inputs, fallbacks); never identifiers.
        image_index: Which of the study's analysed images ``image``, ``boxes`` and the heatmap belong to (the
            first one the input gate accepted), 0-based in the analyser's order.
        evidence: The evidence items the differential cites, ``{"id", "doc_id", "title"}`` (document ids of
            the knowledge base, e.g. for the DICOM SR), in citation order.
    """

    differential: list[dict[str, Any]] = field(default_factory=list)
    abstained: bool = False
    abstain_reason: str | None = None
    anomaly_score: float | None = None
    gate_accepted: bool = True
    gate_kind: str = "medical"
    ood_score: float | None = None
    boxes: list[dict[str, Any]] = field(default_factory=list)
    caption: str | None = None
    change_label: str | None = None
    change_confidence: float | None = None
    change_statement: str | None = None
    nearest_similarity: float | None = None
    nearest_diagnosis: str | None = None
    text_support: float | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    overlay_png: bytes | None = field(default=None, repr=False)
    analyser: str = ""
    notes: list[str] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    image_index: int = 0

    @property
    def top_probability(self) -> float | None:
        """Probability of the likeliest diagnosis, or ``None`` without a differential."""
        if not self.differential:
            return None
        return float(self.differential[0].get("probability") or 0.0)
