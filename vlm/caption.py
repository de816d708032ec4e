"""Templated, honest findings captions composed from the model's outputs.

Nothing is said that the model did not predict with enough confidence: attributes below
:data:`MIN_CONFIDENCE` are left out, and a low anomaly score gives "no focal abnormality detected".
Location words come from the box position inside the head's extent; sides follow the radiological
convention (image left = patient right) and assume an axial slice, which the caption says.
"""

from __future__ import annotations

import numpy as np

from vlm.types import Attributes, Box

#: Attributes below this confidence are not mentioned.
MIN_CONFIDENCE = 0.5
#: Anomaly score from which a finding is described.
ANOMALY_THRESHOLD = 0.5
DISCLAIMER = "Automated description for research use; not a diagnosis."


def head_extent(gray: np.ndarray) -> tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` of the bright foreground (the head), or the whole image when none is found."""
    h, w = gray.shape
    thr = max(0.08, float(np.percentile(gray, 60)) * 0.5)
    fg = gray > thr
    if fg.sum() < 0.02 * h * w:
        return 0.0, 0.0, float(w), float(h)
    ys, xs = np.nonzero(fg)
    return (
        float(np.percentile(xs, 1)),
        float(np.percentile(ys, 1)),
        float(np.percentile(xs, 99)),
        float(np.percentile(ys, 99)),
    )


def location_words(box: Box, extent: tuple[float, float, float, float]) -> str:
    """E.g. ``"right anterior"`` (patient side, radiological convention, axial slice assumed)."""
    x1, y1, x2, y2 = extent
    fx = ((box.x1 + box.x2) / 2 - x1) / max(x2 - x1, 1e-6)
    fy = ((box.y1 + box.y2) / 2 - y1) / max(y2 - y1, 1e-6)
    side = "right" if fx < 0.42 else "left" if fx > 0.58 else "midline"
    depth = "anterior" if fy < 0.38 else "posterior" if fy > 0.62 else "central"
    return f"{side} {depth}" if side != "midline" else f"midline {depth}"


def box_size_mm(box: Box, pixel_spacing: tuple[float, float] | None) -> float | None:
    """Largest box side in mm when the pixel spacing is known."""
    if not pixel_spacing:
        return None
    row, col = pixel_spacing
    return max(box.width * col, box.height * row)


def compose_caption(
    anomaly_score: float,
    boxes: list[Box],
    attributes: Attributes | None,
    gray: np.ndarray,
    *,
    pixel_spacing: tuple[float, float] | None = None,
    findings: str | None = None,
) -> str:
    """The findings sentence(s) for one image.

    Args:
        findings: The finding heads' sentence (:func:`vlm.findings.findings_sentence`). When given, it leads
            the caption and replaces the attribute words (those heads learnt from real captions; the
            attribute heads from synthetic lesions), followed by the anomaly score and the box region.
    """
    strong = [b for b in boxes if b.score >= ANOMALY_THRESHOLD]
    if findings is not None:
        return _caption_with_findings(findings, anomaly_score, strong, boxes, gray, pixel_spacing)
    if anomaly_score < ANOMALY_THRESHOLD and not strong:
        return f"No focal abnormality detected (anomaly score {anomaly_score:.2f}). {DISCLAIMER}"
    conf = attributes.confidences if attributes else {}

    def ok(name: str) -> bool:
        return (
            attributes is not None
            and getattr(attributes, name) is not None
            and conf.get(name, 0.0) >= MIN_CONFIDENCE
        )

    words: list[str] = []
    if ok("multiplicity"):
        words.append(str(attributes.multiplicity))  # type: ignore[union-attr]
    if (
        attributes is not None
        and attributes.size_mm is not None
        and conf.get("size_mm", 0.0) >= MIN_CONFIDENCE
    ):
        words.append(f"about {attributes.size_mm:.0f} mm ({attributes.size_class})")
    for name in ("shape", "margin"):
        if ok(name):
            words.append(str(getattr(attributes, name)))
    if ok("signal"):
        words.append(f"{attributes.signal}")  # type: ignore[union-attr]
    noun = (
        "lesions"
        if attributes is not None and attributes.multiplicity == "multiple" and ok("multiplicity")
        else "lesion"
    )
    sentence = (
        f"Focal abnormality (anomaly score {anomaly_score:.2f}): "
        + (" ".join(words) + " " if words else "")
        + noun
    )
    if ok("site"):
        sentence += f" in the {attributes.site}"  # type: ignore[union-attr]
    extras = []
    if ok("enhancement"):
        extras.append(f"{attributes.enhancement} enhancement pattern")  # type: ignore[union-attr]
    if ok("mass_effect"):
        effect = attributes.mass_effect  # type: ignore[union-attr]
        extras.append("no mass effect" if effect == "none" else f"{effect} mass effect")
    if extras:
        sentence += ", with " + " and ".join(extras)
    sentence += "."
    parts = [sentence]
    parts += _region_sentences(boxes, gray, pixel_spacing)
    parts.append(DISCLAIMER)
    return " ".join(parts)


def _region_sentences(
    boxes: list[Box], gray: np.ndarray, pixel_spacing: tuple[float, float] | None
) -> list[str]:
    if not boxes:
        return ["No region passed the box threshold; see the heatmap."]
    top = boxes[0]
    where = top.position or location_words(top, head_extent(gray))
    size = box_size_mm(top, pixel_spacing)
    size_text = f", box about {size:.0f} mm" if size is not None else ""
    parts = [
        f"Most likely region: {where} (box score {top.score:.2f}{size_text}; side by radiological convention, "
        "axial slice assumed)."
    ]
    if len(boxes) > 1:
        parts.append(f"{len(boxes)} candidate regions outlined.")
    return parts


def _caption_with_findings(
    findings: str,
    anomaly_score: float,
    strong: list[Box],
    boxes: list[Box],
    gray: np.ndarray,
    pixel_spacing: tuple[float, float] | None,
) -> str:
    parts = [findings] if findings else []
    if anomaly_score < ANOMALY_THRESHOLD and not strong:
        parts.append(f"No focal abnormality detected (anomaly score {anomaly_score:.2f}).")
    else:
        parts.append(f"Focal abnormality (anomaly score {anomaly_score:.2f}).")
        parts += _region_sentences(boxes, gray, pixel_spacing)
    parts.append(DISCLAIMER)
    return " ".join(parts)


def change_statement(label: str, confidence: float, area_change: float | None) -> str:
    """One sentence about the change since the prior (``area_change`` as a fraction, e.g. ``0.35``)."""
    pct = f"area {area_change * 100:+.0f}%" if area_change is not None else None
    if label == "worsening":
        text = "Lesion larger than on the prior"
    elif label == "improved":
        text = "Lesion smaller than on the prior"
    else:
        text = "No significant change since the prior"
    detail = ", ".join(x for x in (pct, f"model confidence {confidence:.2f}") if x)
    return f"{text} ({detail})."
