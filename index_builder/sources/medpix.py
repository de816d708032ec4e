"""MedPix 2.0 (``Case_topic.json``, ``Descriptions.json``, ``splits.json``): case narratives, disease
discussions and image captions.

``medpix:PATH[?split=train|dev|all&parts=cases,discussions]``

- ``case_report`` documents: Title, History, Exam, Findings, Differential Diagnosis and Case Diagnosis of each
  case in the split; ``diagnosis`` is the Case Diagnosis.
- ``disease_discussion`` documents: Topic Title + Disease Discussion; ``diagnosis`` is the Topic Title;
  ``acr_code``, ``category`` and the ids of the cases sharing it in ``meta``. The split does NOT restrict
  discussions (the evaluation protocol indexes the train split's cases plus every discussion); identical
  discussions shared by several cases become one document.

``medpix-images:PATH[?split=...]`` yields the PNG images present under ``images/`` with their captions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from index_builder.documents import Document, ImageItem
from index_builder.errors import SourceError, SourceSpecError
from index_builder.sources.base import Source, register_source, slug

log = logging.getLogger(__name__)

CASE_FIELDS = ("History", "Exam", "Findings", "Differential Diagnosis", "Case Diagnosis")
PARTS = ("cases", "discussions")
_EMPTY = {"", "n/a", "na", "none", "null", "-"}


def _clean(value: Any) -> str:
    text = str(value or "").replace("\r\n", "\n").strip()
    return "" if text.lower() in _EMPTY else text


class _MedPixData:
    """The three MedPix JSON files, read once per source."""

    def __init__(self, source: Source) -> None:
        root = source.path
        assert root is not None
        if root.is_file():
            root = root.parent
        self.root = root
        self.cases = self._load(source, "Case_topic.json", required=True)
        self.descriptions = self._load(source, "Descriptions.json", required=False) or []
        self.splits = self._load(source, "splits.json", required=False)
        if not isinstance(self.cases, list):
            raise SourceError(
                f"{root / 'Case_topic.json'} is not a list of cases.", hint="Use MedPix 2.0's file."
            )

    def _load(self, source: Source, name: str, *, required: bool) -> Any:
        path = self.root / name
        if not path.is_file():
            if required:
                raise SourceError(
                    f"MedPix file {name} not found in {self.root}.",
                    hint="Point medpix:PATH at the MedPix 2.0 folder (Case_topic.json, Descriptions.json).",
                )
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(
                f"{path} is not readable JSON: {exc}.", hint="Replace it with an intact copy."
            ) from exc

    def case_ids(self, split: str) -> set[str] | None:
        """Case ids of ``split`` (``None`` = every case)."""
        if split == "all":
            return None
        if not isinstance(self.splits, dict) or split not in self.splits:
            raise SourceError(
                f"split={split} needs splits.json with a {split!r} list in {self.root}.",
                hint="Use split=all, or add the dataset's splits.json.",
            )
        return {str(x) for x in self.splits[split]}

    def image_info(self) -> dict[str, dict[str, Any]]:
        """Per case: modalities and the most common location of its images."""
        info: dict[str, dict[str, Any]] = {}
        locations: dict[str, Counter[str]] = {}
        categories: dict[str, Counter[str]] = {}
        for d in self.descriptions:
            uid = str(d.get("U_id") or "")
            if not uid:
                continue
            entry = info.setdefault(uid, {"modalities": set()})
            if d.get("Type"):
                entry["modalities"].add(str(d["Type"]).strip())
            if d.get("Location"):
                locations.setdefault(uid, Counter())[str(d["Location"]).strip()] += 1
            if d.get("Location Category"):
                categories.setdefault(uid, Counter())[str(d["Location Category"]).strip()] += 1
        for uid, entry in info.items():
            entry["location"] = locations[uid].most_common(1)[0][0] if uid in locations else None
            entry["location_category"] = categories[uid].most_common(1)[0][0] if uid in categories else None
        return info


def _case_modalities(case: dict[str, Any], info: dict[str, Any]) -> list[str]:
    mods = set(info.get("modalities", set()))
    if case.get("TAC"):
        mods.add("CT")
    if case.get("MRI"):
        mods.add("MR")
    return sorted(mods)


@register_source
class MedPixSource(Source):
    """MedPix 2.0 case narratives and disease discussions: medpix:PATH[?split=train|dev|all&parts=...]."""

    kind = "medpix"
    options = {
        "split": "train, dev or all (default): restricts case narratives, never discussions",
        "parts": "comma list of cases, discussions (default both)",
    }
    supports_split = True

    def parts(self) -> set[str]:
        parts = {p.strip().lower() for p in self.option("parts", ",".join(PARTS)).split(",") if p.strip()}
        bad = parts - set(PARTS)
        if bad or not parts:
            raise SourceSpecError(f"Unknown MedPix parts {sorted(bad)}.", hint="Use parts=cases,discussions.")
        return parts

    def documents(self) -> Iterator[Document]:
        parts, split = self.parts(), self.split()
        data = _MedPixData(self)
        wanted = data.case_ids(split)
        info = data.image_info()
        if "cases" in parts:
            n = 0
            for entry in data.cases:
                uid = str(entry.get("U_id") or "")
                if not uid or (wanted is not None and uid not in wanted):
                    continue
                doc = self._case_document(uid, entry, info.get(uid, {}))
                if doc is not None:
                    n += 1
                    yield doc
            log.info("medpix: %d case narratives (split=%s)", n, split)
        if "discussions" in parts:
            yield from self._discussions(data, info)

    def _case_document(self, uid: str, entry: dict[str, Any], info: dict[str, Any]) -> Document | None:
        case = entry.get("Case") or {}
        if not isinstance(case, dict):
            return None
        title = _clean(case.get("Title"))
        sections = [f"{name}: {value}" for name in CASE_FIELDS if (value := _clean(case.get(name)))]
        if not sections:
            return None
        text = "\n".join(([title] if title else []) + sections)
        mods = _case_modalities(entry, info)
        topic = entry.get("Topic") or {}
        return Document(
            doc_id=f"{self.name}:case/{uid}",
            source=self.name,
            kind="case_report",
            title=title or uid,
            text=text,
            diagnosis=_clean(case.get("Case Diagnosis")) or None,
            modality=",".join(mods) or None,
            body_region=info.get("location"),
            meta={
                "case_id": uid,
                "acr_code": _clean(topic.get("ACR Code")) or None,
                "category": _clean(topic.get("Category")) or None,
                "location_category": info.get("location_category"),
                "modalities": mods,
                "images": list(entry.get("TAC") or []) + list(entry.get("MRI") or []),
            },
        )

    def _discussions(self, data: _MedPixData, info: dict[str, dict[str, Any]]) -> Iterator[Document]:
        merged: dict[str, dict[str, Any]] = {}
        for entry in data.cases:
            topic = entry.get("Topic") or {}
            if not isinstance(topic, dict):
                continue
            title, body = _clean(topic.get("Title")), _clean(topic.get("Disease Discussion"))
            if not body:
                continue
            digest = hashlib.sha256(f"{title}\n{body}".encode()).hexdigest()
            uid = str(entry.get("U_id") or "")
            slot = merged.get(digest)
            if slot is None:
                slot = merged[digest] = {
                    "title": title,
                    "body": body,
                    "digest": digest,
                    "topic": topic,
                    "case_ids": [],
                    "regions": Counter(),
                    "mods": set(),
                }
            if uid:
                slot["case_ids"].append(uid)
                case_info = info.get(uid, {})
                if case_info.get("location"):
                    slot["regions"][case_info["location"]] += 1
                slot["mods"].update(_case_modalities(entry, case_info))
        for slot in merged.values():
            title, topic = slot["title"], slot["topic"]
            meta = {
                "acr_code": _clean(topic.get("ACR Code")) or None,
                "category": _clean(topic.get("Category")) or None,
                "keywords": _clean(topic.get("Keywords")) or None,
                "case_ids": slot["case_ids"],
            }
            links = _clean(topic.get("External Links"))
            if links:
                meta["external_links"] = links
            yield Document(
                doc_id=f"{self.name}:topic/{slug(title or 'untitled', 50)}-{slot['digest'][:10]}",
                source=self.name,
                kind="disease_discussion",
                title=title or "(untitled discussion)",
                text=f"{title}\n{slot['body']}" if title else slot["body"],
                diagnosis=title or None,
                modality=",".join(sorted(slot["mods"])) or None,
                body_region=slot["regions"].most_common(1)[0][0] if slot["regions"] else None,
                meta=meta,
            )
        log.info("medpix: %d distinct disease discussions", len(merged))


@register_source
class MedPixImageSource(Source):
    """MedPix 2.0 images present under images/ with captions: medpix-images:PATH[?split=...]."""

    kind = "medpix-images"
    options = {"split": "train, dev or all (default): restricts images to the split's cases"}
    supports_split = True

    def images(self) -> Iterator[ImageItem]:
        data = _MedPixData(self)
        wanted = data.case_ids(self.split())
        diagnoses = {
            str(e.get("U_id")): _clean((e.get("Case") or {}).get("Case Diagnosis")) or None
            for e in data.cases
        }
        image_dir = data.root / "images"
        present = {p.stem: p for p in image_dir.glob("*.png")} if image_dir.is_dir() else {}
        n = 0
        for d in data.descriptions:
            uid, stem = str(d.get("U_id") or ""), str(d.get("image") or "")
            path = present.get(stem)
            if path is None or (wanted is not None and uid not in wanted):
                continue
            desc = d.get("Description") or {}
            n += 1
            yield ImageItem(
                image_id=f"{self.name}:{stem}",
                path=str(path),
                source=self.name,
                case_id=uid or None,
                caption=_clean(desc.get("Caption")) or None,
                diagnosis=diagnoses.get(uid),
                modality=_clean(d.get("Type")) or None,
                body_region=_clean(d.get("Location")) or None,
                meta={
                    "modality_detail": _clean(desc.get("Modality")) or None,
                    "plane": _clean(desc.get("Plane")) or None,
                    "age": _clean(desc.get("Age")) or None,
                    "sex": _clean(desc.get("Sex")) or None,
                    "acr_codes": _clean(desc.get("ACR Codes")) or None,
                    "location_category": _clean(d.get("Location Category")) or None,
                },
            )
        if not n:
            log.warning("medpix-images: no PNG under %s matched Descriptions.json", image_dir)
        log.info("medpix-images: %d images", n)


def medpix_root(path: Path) -> Path:
    """The MedPix folder for a path that may point at ``Case_topic.json`` itself."""
    return path.parent if path.is_file() else path
