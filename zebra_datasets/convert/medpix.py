"""MedPix 2.0 (Siragusa et al., 2025) to NOVA layout: one row per image shipped as PNG under ``images/``.

Source layout: ``Case_topic.json`` (cases: ``U_id``, ``TAC``/``MRI`` image lists, ``Case`` {Title, History,
Exam, Findings, Differential Diagnosis, Case Diagnosis, ...}, ``Topic`` {Title, ACR Code, Category, ...}),
``Descriptions.json`` (images: ``Type``, ``U_id``, ``image``, ``Description`` {Caption, Modality, Plane, Age,
Sex, ACR Codes, ...}, ``Location``, ``Location Category``), ``splits.json`` (``{"train": [U_id...],
"dev": [...]}``) and ``images/<image>.png``. MedPix has no boxes.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from zebra.errors import DatasetError
from zebra_datasets.convert.base import (
    CONVERTERS,
    ConvertReport,
    check_images_mode,
    check_out_dir,
    check_source_dir,
    check_split,
)
from zebra_datasets.nova_write import write_nova
from zebra_datasets.records import NovaRecord
from zebra_datasets.text import clean_text

log = logging.getLogger(__name__)

MEDPIX_SPLITS = ("train", "dev", "test")
LICENCE = (
    "MedPix 2.0 (CHILab1/MedPix-2.0; images and text from the U.S. National Library of Medicine's MedPix). "
    "No licence file is shipped: development and evaluation only, do not redistribute."
)


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"MedPix file {path} is missing.", hint="Pass the MedPix 2.0 folder as SRC.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}.", hint="Re-download the MedPix files.") from exc


def _split_of(splits: dict[str, list[str]]) -> dict[str, str]:
    return {uid: name for name, uids in splits.items() if isinstance(uids, list) for uid in uids}


def _history(case: dict[str, Any]) -> str | None:
    history = clean_text(case.get("History"))
    exam = clean_text(case.get("Exam"))
    if exam:
        return f"{history}\nExam: {exam}" if history else f"Exam: {exam}"
    return history


@CONVERTERS.register(
    "medpix",
    "MedPix 2.0 folder -> one row per PNG image",
    splits=("train", "dev", "test"),
    default_split="all",
)
def convert_medpix(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    images: str = "copy",
    limit: int | None = None,
    progress: bool = False,
) -> ConvertReport:
    """Converts a MedPix 2.0 folder to NOVA layout.

    Rows follow the case order of ``Case_topic.json`` and, within a case, its ``TAC`` then ``MRI`` lists
    (then any further described image of the case). ``case_id`` is ``U_id``, ``scan_id`` the image stem,
    ``caption_text`` the image caption, ``clinical_history`` the case History (plus ``Exam: ...``),
    ``final_diagnosis`` the Case Diagnosis (else the Topic title). Text is cleaned of HTML and whitespace
    noise; "N/A" becomes null. Images without a PNG file and cases without a ``Case`` part are counted in
    the report, never fatal.

    Args:
        src: The MedPix 2.0 folder.
        out: The NOVA data set root to write.
        split: ``train``, ``dev`` (``test`` when present) or ``all`` (default), from ``splits.json``.
        images: ``copy`` or ``link``.
        limit: Stop after this many rows.
        progress: Show a progress bar.

    Raises:
        DatasetError: When the MedPix files are missing or malformed.
    """
    root = check_source_dir(src, what="MedPix 2.0")
    out_path = check_out_dir(out, root)
    mode = check_images_mode(images)
    chosen = check_split(split, MEDPIX_SPLITS, "all")
    cases = _load_json(root / "Case_topic.json")
    descriptions = _load_json(root / "Descriptions.json")
    splits_path = root / "splits.json"
    splits = _load_json(splits_path) if splits_path.is_file() else {}
    if not isinstance(cases, list) or not isinstance(descriptions, list) or not isinstance(splits, dict):
        raise DatasetError(
            f"{root} does not look like MedPix 2.0 (expected lists in Case_topic.json and Descriptions.json).",
            hint="Pass the MedPix 2.0 folder as SRC.",
        )
    if chosen != "all" and chosen not in splits:
        raise DatasetError(
            f"{splits_path} has no {chosen!r} split (it has {', '.join(sorted(splits)) or 'none'}).",
            hint="Choose another --split, or 'all'.",
        )
    split_of = _split_of(splits)
    report = ConvertReport("medpix", str(root), str(out_path), split=chosen)

    by_image: dict[str, dict[str, Any]] = {}
    by_case_images: dict[str, list[str]] = {}
    for entry in descriptions:
        stem = str((entry or {}).get("image") or "").strip()
        if not stem:
            report.skip("description without image name", json.dumps(entry)[:80])
            continue
        by_image[stem] = entry
        by_case_images.setdefault(str(entry.get("U_id") or ""), []).append(stem)

    images_dir = root / "images"
    records: list[NovaRecord] = []
    seen_cases: set[str] = set()
    for case in tqdm(cases, desc="medpix", unit="case", disable=not progress):
        uid = str((case or {}).get("U_id") or "").strip()
        if not uid:
            report.skip("case without U_id", json.dumps(case)[:80])
            continue
        seen_cases.add(uid)
        if limit is not None and len(records) >= limit:
            continue
        case_split = split_of.get(uid)
        if chosen != "all" and case_split != chosen:
            continue
        stems = list(
            dict.fromkeys([*(case.get("TAC") or []), *(case.get("MRI") or []), *by_case_images.get(uid, [])])
        )
        for stem in stems:
            if limit is not None and len(records) >= limit:
                break
            record = _record(images_dir, uid, str(stem), case, by_image.get(str(stem)), case_split, report)
            if record is not None:
                records.append(record)
    # Described images whose case is not in Case_topic.json.
    for uid, stems in by_case_images.items():
        if uid not in seen_cases:
            for stem in stems:
                report.skip("image of a case missing from Case_topic.json", stem)

    if not records:
        raise DatasetError(
            f"No MedPix image of split {chosen!r} was found as a PNG under {images_dir}.",
            hint="Check the images/ folder, or choose another --split.",
        )
    write_nova(
        records,
        out_path,
        images=mode,  # type: ignore[arg-type]
        name=f"medpix-2.0-{chosen}",
        source=str(root),
        licence=LICENCE,
        synthetic=False,
        converter="medpix",
        extra_info={"split": chosen, "skipped": dict(report.skipped)},
    )
    report.rows = len(records)
    report.cases = len({r.case_id for r in records})
    report.extra["source_cases"] = len(cases)
    report.extra["source_images_described"] = len(by_image)
    report.extra["modalities"] = dict(
        sorted(_count(r.meta.get("image_type") or "unknown" for r in records).items())
    )
    return report


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _record(
    images_dir: Path,
    uid: str,
    stem: str,
    case: dict[str, Any],
    entry: dict[str, Any] | None,
    case_split: str | None,
    report: ConvertReport,
) -> NovaRecord | None:
    image_file = images_dir / f"{stem}.png"
    if not image_file.is_file():
        category = (entry or {}).get("Location Category") or "unknown location"
        report.skip(f"no PNG under images/ ({category})", stem)
        return None
    if entry is None:
        report.note("image without a description (empty caption)", stem)
        entry = {}
    case_part = case.get("Case")
    if not isinstance(case_part, dict) or not case_part:
        report.note("case without a Case part (no history/diagnosis text)", uid)
        case_part = {}
    topic = case.get("Topic") if isinstance(case.get("Topic"), dict) else {}
    desc = entry.get("Description") if isinstance(entry.get("Description"), dict) else {}
    diagnosis = clean_text(case_part.get("Case Diagnosis")) or clean_text(topic.get("Title"))
    if diagnosis is None:
        report.note("no diagnosis (neither Case Diagnosis nor Topic title)", stem)
    meta: dict[str, Any] = {
        "clinical_history": _history(case_part),
        "final_diagnosis": diagnosis,
        "findings": clean_text(case_part.get("Findings")),
        "differential_diagnosis": clean_text(case_part.get("Differential Diagnosis")),
        "case_title": clean_text(case_part.get("Title")),
        "diagnosis_by": clean_text(case_part.get("Diagnosis By")),
        "topic_title": clean_text(topic.get("Title")),
        "acr_code": clean_text(topic.get("ACR Code")),
        "category": clean_text(topic.get("Category")),
        "image_type": clean_text(entry.get("Type")),
        "modality": clean_text(desc.get("Modality")),
        "plane": clean_text(desc.get("Plane")),
        "age": clean_text(desc.get("Age")),
        "sex": clean_text(desc.get("Sex")),
        "location": clean_text(entry.get("Location")),
        "location_category": clean_text(entry.get("Location Category")),
        "split": case_split,
        "source": "MedPix 2.0",
        "synthetic": "false",
    }
    return NovaRecord(
        filename=image_file.name,
        image_path=f"images/{image_file.name}",
        case_id=uid,
        scan_id=stem,
        caption_text=clean_text(desc.get("Caption")) or "",
        bboxes=[],
        meta={k: v for k, v in meta.items() if v is not None or k in ("clinical_history", "final_diagnosis")},
        image_source=image_file,
    )
