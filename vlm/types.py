"""Result types of the anomaly-aware vision-language model (shared by every VLM backend).

Every type has ``to_dict()`` returning JSON-safe data; numpy arrays (heatmaps, embeddings) are left out of
``to_dict()`` (only their shape is recorded) and written separately by the caller (e.g. ``overlay_png``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlm.boxes import Box, clean_float

#: Attribute names carried by :class:`Attributes` (besides ``confidences``).
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "site",
    "region",
    "size_mm",
    "size_class",
    "shape",
    "margin",
    "signal",
    "enhancement",
    "multiplicity",
    "mass_effect",
)

#: Change labels, in the order of the change head's outputs.
CHANGE_LABELS: tuple[str, ...] = ("worsening", "stable", "improved")

#: Gate kinds.
GATE_KINDS: tuple[str, ...] = ("medical", "noise", "natural_photo", "out_of_domain", "blank")


def _array_info(arr: np.ndarray | None) -> dict[str, Any] | None:
    if arr is None:
        return None
    return {"shape": list(arr.shape), "dtype": str(arr.dtype)}


@dataclass
class Attributes:
    """K2Sight-style structured visual attributes of the main finding; each value has a confidence.

    ``None`` means "not determined" (low confidence or not applicable). ``confidences`` maps attribute
    names to the model's confidence in [0, 1] for the reported value.
    """

    site: str | None = None
    region: str | None = None
    size_mm: float | None = None
    size_class: str | None = None
    shape: str | None = None
    margin: str | None = None
    #: Intensity/density: hyperintense, hypointense, isointense, mixed, hyperdense ...
    signal: str | None = None
    enhancement: str | None = None
    multiplicity: str | None = None
    mass_effect: str | None = None
    confidences: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        out: dict[str, Any] = {name: getattr(self, name) for name in ATTRIBUTE_NAMES}
        out["size_mm"] = clean_float(self.size_mm)
        out["confidences"] = {k: clean_float(v) for k, v in self.confidences.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attributes:
        """Inverse of :meth:`to_dict`."""
        kwargs = {name: data.get(name) for name in ATTRIBUTE_NAMES}
        if kwargs["size_mm"] is not None:
            kwargs["size_mm"] = float(kwargs["size_mm"])
        conf = {k: float(v) for k, v in (data.get("confidences") or {}).items() if v is not None}
        return cls(**kwargs, confidences=conf)


@dataclass
class GateResult:
    """Whether an image is a medical image the model may describe.

    Attributes:
        accepted: ``True`` when the image looks like an in-domain medical image.
        reason: Why it was rejected (``None`` when accepted), in words for a user.
        kind: ``"medical"``, ``"noise"``, ``"natural_photo"``, ``"out_of_domain"`` or ``"blank"``.
        scores: The evidence (image statistics, OOD distance ...).
    """

    accepted: bool
    reason: str | None
    kind: str
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "accepted": bool(self.accepted),
            "reason": self.reason,
            "kind": self.kind,
            "scores": {k: clean_float(v) for k, v in self.scores.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            accepted=bool(data["accepted"]),
            reason=data.get("reason"),
            kind=str(data["kind"]),
            scores={k: float(v) for k, v in (data.get("scores") or {}).items() if v is not None},
        )


@dataclass
class FindingValue:
    """One finding-head prediction: a value with its calibrated probability.

    Attributes:
        value: The predicted class (``"CT"``, ``"axial"``, ``"t2"``) or term (``"extra-axial"``).
        confidence: Calibrated probability in [0, 1].
        group: For terms, the vocabulary group (``"density"``, ``"signal"``, ``"site"`` ...); else the head.
        stated: Whether it is confident enough to be said (above the head's threshold).
        cue: For terms: whether it is likely enough to steer retrieval (above the head's query threshold,
            lower than the stated one); stated terms are cues too.
        prior: For terms: the share of the training images whose caption says it (the base rate the
            probability is to be read against: 0.3 for a term said of 5% of images is six times the usual);
            ``None`` when unknown.
    """

    value: str
    confidence: float
    group: str = ""
    stated: bool = False
    cue: bool = False
    prior: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "value": self.value,
            "confidence": round(float(self.confidence), 4),
            "group": self.group,
            "stated": bool(self.stated),
            "cue": bool(self.cue or self.stated),
            **({"prior": round(float(self.prior), 4)} if self.prior is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FindingValue:
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(data["value"]),
            float(data.get("confidence") or 0.0),
            str(data.get("group") or ""),
            bool(data.get("stated")),
            bool(data.get("cue") or data.get("stated")),
            float(data["prior"]) if data.get("prior") is not None else None,
        )


@dataclass
class Findings:
    """What a radiologist would write first about an image: modality, sequence or phase, plane, and the
    appearance and site of the finding in the captions' own vocabulary (:mod:`vlm.findings`).

    Attributes:
        modality: ``CT`` or ``MR``. sequence: e.g. ``ct_noncontrast``, ``t2``, ``flair``. plane: ``axial``,
            ``coronal`` or ``sagittal`` (each ``None`` when the head is absent).
        terms: Every term head's prediction, most probable first (``stated`` ones are said in the caption).
        header: The caption's lead, e.g. ``"Axial non-contrast CT"`` (only confident parts).
    """

    modality: FindingValue | None = None
    sequence: FindingValue | None = None
    plane: FindingValue | None = None
    terms: list[FindingValue] = field(default_factory=list)
    header: str = ""

    def stated_terms(self, group: str | None = None) -> list[str]:
        """The confident terms (of one group), most probable first."""
        return [t.value for t in self.terms if t.stated and (group is None or t.group == group)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "modality": self.modality.to_dict() if self.modality else None,
            "sequence": self.sequence.to_dict() if self.sequence else None,
            "plane": self.plane.to_dict() if self.plane else None,
            "terms": [t.to_dict() for t in self.terms],
            "header": self.header,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Findings:
        """Inverse of :meth:`to_dict`."""

        def one(key: str) -> FindingValue | None:
            return FindingValue.from_dict(data[key]) if data.get(key) else None

        return cls(
            one("modality"),
            one("sequence"),
            one("plane"),
            [FindingValue.from_dict(t) for t in data.get("terms") or []],
            str(data.get("header") or ""),
        )


@dataclass
class ImageAnalysis:
    """What the VLM says about one image.

    Attributes:
        gate: The input gate's verdict; when not accepted, everything else is empty.
        anomaly_score: Probability-like anomaly score in [0, 1]; ``None`` when gated.
        boxes: Detected findings, in input-image pixels, best first.
        heatmap: float32 HxW in [0, 1], same size as the input image (``None`` when gated).
        attributes: Structured attributes of the main finding (``None`` when gated or nothing found).
        caption: A findings sentence (``None`` when gated).
        embedding: The encoder's image embedding (same space as the retrieval image index).
        model: Backend name + checkpoint id.
        findings: Modality, sequence, plane and appearance/site terms (``None`` when gated or when the
            backend has no finding heads).
    """

    gate: GateResult
    anomaly_score: float | None
    boxes: list[Box]
    heatmap: np.ndarray | None
    attributes: Attributes | None
    caption: str | None
    embedding: np.ndarray | None
    model: str
    findings: Findings | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; arrays are described by shape only."""
        return {
            "gate": self.gate.to_dict(),
            "anomaly_score": clean_float(self.anomaly_score),
            "boxes": [b.to_dict() for b in self.boxes],
            "heatmap": _array_info(self.heatmap),
            "attributes": self.attributes.to_dict() if self.attributes else None,
            "caption": self.caption,
            "embedding": _array_info(self.embedding),
            "model": self.model,
            "findings": self.findings.to_dict() if self.findings else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageAnalysis:
        """Inverse of :meth:`to_dict` (arrays come back as ``None``)."""
        return cls(
            gate=GateResult.from_dict(data["gate"]),
            anomaly_score=clean_float(data.get("anomaly_score")),
            boxes=[Box.from_dict(b) for b in data.get("boxes") or []],
            heatmap=None,
            attributes=Attributes.from_dict(data["attributes"]) if data.get("attributes") else None,
            caption=data.get("caption"),
            embedding=None,
            model=str(data.get("model", "")),
            findings=Findings.from_dict(data["findings"]) if data.get("findings") else None,
        )

    def overlay_png(self, image: np.ndarray, path: Path) -> Path:
        """Writes the heatmap and boxes over ``image`` as a PNG.

        Args:
            image: The analysed image (2-D grayscale or HxWx3), any dtype.
            path: Output PNG file.

        Returns:
            ``path``.
        """
        from vlm.overlay import render_overlay

        return render_overlay(image, self.heatmap, self.boxes, Path(path))


@dataclass
class ChangeAnalysis:
    """Change between a prior and the current study.

    Attributes:
        label: ``"worsening"``, ``"stable"`` or ``"improved"``.
        confidence: Probability of ``label``.
        probabilities: Probability per label.
        diff_heatmap: float32 HxW in [0, 1] over the current image, where it changed (or ``None``).
        statement: One sentence, e.g. ``"Lesion larger than on the prior (area +35%)."``.
    """

    label: str
    confidence: float
    probabilities: dict[str, float]
    diff_heatmap: np.ndarray | None
    statement: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; the heatmap is described by shape only."""
        return {
            "label": self.label,
            "confidence": clean_float(self.confidence),
            "probabilities": {k: clean_float(v) for k, v in self.probabilities.items()},
            "diff_heatmap": _array_info(self.diff_heatmap),
            "statement": self.statement,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeAnalysis:
        """Inverse of :meth:`to_dict` (the heatmap comes back as ``None``)."""
        return cls(
            label=str(data["label"]),
            confidence=float(data.get("confidence") or 0.0),
            probabilities={
                k: float(v) for k, v in (data.get("probabilities") or {}).items() if v is not None
            },
            diff_heatmap=None,
            statement=str(data.get("statement", "")),
        )


@dataclass
class StudyAnalysis:
    """The current image's analysis, the prior's (if any) and the change between them."""

    current: ImageAnalysis
    prior: ImageAnalysis | None = None
    change: ChangeAnalysis | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "current": self.current.to_dict(),
            "prior": self.prior.to_dict() if self.prior else None,
            "change": self.change.to_dict() if self.change else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyAnalysis:
        """Inverse of :meth:`to_dict`."""
        return cls(
            current=ImageAnalysis.from_dict(data["current"]),
            prior=ImageAnalysis.from_dict(data["prior"]) if data.get("prior") else None,
            change=ChangeAnalysis.from_dict(data["change"]) if data.get("change") else None,
        )
