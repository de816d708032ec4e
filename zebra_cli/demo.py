"""``zebra demo``: a command-line walk-through on real data (the main job is ``zebra serve``).

It reads a real MR study shipped by pydicom (de-identifying it on the way in), keeps it in the store, and
answers a real MedPix teaching case's history and findings (dev split, which the default knowledge base never
saw) from the default knowledge base, with citations. Without MedPix on the machine it asks a rare-disease
question of the HPO/Orphanet knowledge instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zebra.config import Settings

log = logging.getLogger(__name__)

#: Used when MedPix is absent: a description of a rare neurological syndrome (no diagnosis named).
FALLBACK_QUERY = (
    "Child with seizures, facial port-wine stain and leptomeningeal enhancement with cortical calcification "
    "over one cerebral hemisphere."
)


@dataclass
class DemoResult:
    """What the demo did, JSON-ready."""

    study: dict[str, Any] = field(default_factory=dict)
    stored_study_id: int | None = None
    query_source: str = ""
    query: str = ""
    truth: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    bundle: str = ""


def _demo_dicom() -> str:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("MR_small.dcm")
    if path is None:  # pragma: no cover - pydicom always ships it
        raise FileNotFoundError("pydicom's MR_small.dcm")
    return str(path)


def _dev_case(medpix: Path) -> tuple[str, str] | None:
    """(history + findings, diagnosis) of the first dev-split case that has both."""
    cases = json.loads((medpix / "Case_topic.json").read_text(encoding="utf-8"))
    splits = json.loads((medpix / "splits.json").read_text(encoding="utf-8"))
    dev = {str(x) for x in splits.get("dev", [])}
    for case in cases:
        if str(case.get("U_id")) not in dev or not isinstance(case.get("Case"), dict):
            continue
        part = case["Case"]
        history, findings = (part.get("History") or "").strip(), (part.get("Findings") or "").strip()
        if history and findings:
            return f"{history}\n{findings}", (part.get("Case Diagnosis") or "").strip() or None
    return None


def run_demo(settings: Settings, *, top_n: int = 5) -> DemoResult:
    """Runs the demo and returns what it found."""
    from index_builder.default_kb import find_medpix
    from retrieval.searcher import Searcher
    from store import Store
    from zebra_intake import load_study
    from zebra_web.persist import save_study

    result = DemoResult(bundle=str(settings.bundle_dir))
    study = load_study(_demo_dicom())
    result.study = {
        "modality": study.modality,
        "images": len(study.images),
        "shape": list(study.images[0].shape),
        "deid": None if study.deid is None else study.deid.to_dict(),
    }
    db = Store(settings.database_url)
    try:
        with db.session() as session:
            result.stored_study_id = save_study(session, study, settings.data_dir).id
    finally:
        db.dispose()

    medpix = find_medpix(settings)
    case = _dev_case(medpix) if medpix else None
    if case:
        result.query_source, (result.query, result.truth) = "MedPix 2.0 dev case (history + findings)", case
    else:
        result.query_source, result.query = "built-in rare-disease question", FALLBACK_QUERY
    searcher = Searcher(settings.bundle_dir)
    candidates, _ = searcher.diagnose(result.query, top_n=top_n)
    result.candidates = [c.to_dict() for c in candidates]
    return result
