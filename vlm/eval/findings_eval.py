"""Evaluation of the finding heads and captions on real MedPix images (``zebra vlm eval --findings``).

For every shipped image of the MedPix cases of one split (``dev`` by default), the VLM analyses the image as a
user's upload would be analysed; its :class:`~vlm.types.Findings` are compared with the image's own
``Descriptions.json`` record:

- ``modality``, ``sequence``, ``plane``: accuracy of the head's top value over the accepted images that have
  a label (``accuracy``), and over the values it states (``stated_accuracy``, with ``stated_share``);
- ``terms``: micro precision / recall / F1 of the stated terms against the terms the real caption mentions
  (this package's vocabulary, :data:`vlm.findings.TERMS_FILE`), and per-term F1 for terms with support.

The caption's clinical-term F1 against the real captions (the evaluation package's vocabulary) is computed by
the caller from ``pairs`` (:func:`caption_pairs`), since that vocabulary belongs to the evaluation layer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _accuracy(rows: Sequence[tuple[str | None, str | None, bool]]) -> dict[str, Any]:
    labelled = [(p, y, s) for p, y, s in rows if y is not None and p is not None]
    stated = [(p, y) for p, y, s in labelled if s]
    return {
        "n": len(labelled),
        "accuracy": round(sum(p == y for p, y, _ in labelled) / len(labelled), 4) if labelled else None,
        "stated_share": round(len(stated) / len(labelled), 4) if labelled else None,
        "stated_accuracy": round(sum(p == y for p, y in stated) / len(stated), 4) if stated else None,
    }


def evaluate_findings(
    vlm: Any, medpix: str | Path, *, split: str = "dev", limit: int | None = None, progress: bool = False
) -> dict[str, Any]:
    """Runs the protocol of the module docstring.

    Returns:
        ``{"split", "n_images", "n_accepted", "modality", "sequence", "plane", "terms", "pairs"}``; ``pairs``
        holds ``{"image", "prediction", "reference"}`` captions of the accepted images.
    """
    from vlm.findings import load_vocabulary
    from vlm.train.findings import read_medpix_images
    from zebra_intake import load_study

    images = read_medpix_images(medpix, [split])
    if limit:
        images = images[:limit]
    iterator: Any = images
    if progress:
        from tqdm import tqdm

        iterator = tqdm(images, desc=f"findings ({split})", unit="image")
    heads: dict[str, list[tuple[str | None, str | None, bool]]] = {
        "modality": [],
        "sequence": [],
        "plane": [],
    }
    tp = fp = fn = 0
    per_term: dict[str, list[int]] = {}
    pairs = []
    accepted = 0
    vocab_names = set(load_vocabulary().names)
    for im in iterator:
        analysis = vlm.analyze_image(load_study(str(im.path)).images[0].display)
        if not analysis.gate.accepted:
            continue
        accepted += 1
        pairs.append({"image": im.path.stem, "prediction": analysis.caption or "", "reference": im.caption})
        f = analysis.findings
        if f is None:
            continue
        for name, label in (("modality", im.modality), ("sequence", im.sequence), ("plane", im.plane)):
            value = getattr(f, name)
            heads[name].append((value.value if value else None, label, bool(value and value.stated)))
        predicted = {t for t in f.stated_terms() if t in vocab_names}
        gold = set(im.terms)
        tp += len(predicted & gold)
        fp += len(predicted - gold)
        fn += len(gold - predicted)
        for t in predicted | gold:
            c = per_term.setdefault(t, [0, 0, 0])
            c[0] += t in predicted and t in gold
            c[1] += t in predicted and t not in gold
            c[2] += t in gold and t not in predicted
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "split": split,
        "n_images": len(images),
        "n_accepted": accepted,
        **{name: _accuracy(rows) for name, rows in heads.items()},
        "terms": {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else None,
            "per_term_f1": {
                t: round(2 * c[0] / (2 * c[0] + c[1] + c[2]), 3)
                for t, c in sorted(per_term.items(), key=lambda kv: -(kv[1][0] + kv[1][2]))
                if c[0] + c[2] >= 3
            },
        },
        "pairs": pairs,
    }


def caption_pairs(report: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(predictions, references)`` of a :func:`evaluate_findings` report."""
    pairs = report.get("pairs") or []
    return [p["prediction"] for p in pairs], [p["reference"] for p in pairs]
