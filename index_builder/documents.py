"""The records document sources yield: text :class:`Document` and :class:`ImageItem`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Known document kinds (sources may use others; these are the ones retrieval knows about).
DOCUMENT_KINDS = (
    "case_report",
    "disease_discussion",
    "phenotype_profile",
    "literature",
    "caption",
    "text",
)


@dataclass
class Document:
    """One knowledge document before chunking.

    Attributes:
        doc_id: Globally unique id, ``"{source}:{source_key}"``.
        source: Source name (``medpix``, ``hpo``, ``nova``, ``jsonl`` ...).
        kind: One of :data:`DOCUMENT_KINDS` (or a source-specific kind).
        title: Human-readable title.
        text: Full text; chunk spans refer to it.
        diagnosis: Diagnosis label the document is about, when known.
        modality: Imaging modality (``CT``, ``MR`` ...), when known.
        body_region: Body region, when known.
        meta: JSON-serialisable extras (acr_code, category, orpha/omim ids, url ...).
    """

    doc_id: str
    source: str
    kind: str
    title: str
    text: str
    diagnosis: str | None = None
    modality: str | None = None
    body_region: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageItem:
    """One image to put in the image index (the file is referenced, never copied).

    Attributes:
        image_id: Globally unique id, ``"{source}:{key}"``.
        path: Absolute path to the image file.
        source: Source name.
        case_id: Case the image belongs to, when known.
        caption: Caption text, when known.
        diagnosis: Diagnosis label, when known.
        modality: Imaging modality, when known.
        body_region: Body region, when known.
        meta: JSON-serialisable extras (plane, age, sex ...).
    """

    image_id: str
    path: str
    source: str
    case_id: str | None = None
    caption: str | None = None
    diagnosis: str | None = None
    modality: str | None = None
    body_region: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
