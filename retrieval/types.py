"""Result types of retrieval: hits, image hits, citations and candidate diagnoses.

Every type is a dataclass with a ``to_dict()`` that returns plain JSON-serialisable values.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def _clean(value: Any) -> Any:
    """Turns NaN into ``None`` and numpy scalars into Python ones, recursively."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@dataclass
class Citation:
    """Where a piece of evidence comes from, precisely enough to quote it.

    Attributes:
        source: Source name of the document (``"medpix"``, ``"hpo"``, ...).
        doc_id: Globally unique document id (``"{source}:{source_key}"``) or image id for image evidence.
        title: Document title.
        kind: Document kind (``case_report``, ``disease_discussion``, ``phenotype_profile``, ``caption``,
            ``image`` ...).
        char_start: Start of the quoted span in the document text (inclusive).
        char_end: End of the quoted span in the document text (exclusive).
        quote: The quoted text, exactly ``document.text[char_start:char_end]``.
        url: A public address of the document, when the source has one.
        chunk_index: Index of the chunk the quote lies in, when it comes from a text chunk.
    """

    source: str
    doc_id: str
    title: str
    kind: str
    char_start: int
    char_end: int
    quote: str
    url: str | None = None
    chunk_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return _clean(asdict(self))


@dataclass
class Scores:
    """The scores behind a hit.

    Attributes:
        fused: The score the final order is based on: the RRF score in hybrid mode, the cosine similarity in
            dense mode, the BM25 score in BM25 mode.
        rank: 1-based rank in the returned list.
        dense: Cosine similarity between the query and the chunk (in dense and hybrid modes filled in for
            every returned text hit, when the chunk's vector can be read back from the index).
        bm25: BM25 score, when the BM25 ranking saw the chunk.
        dense_rank: 1-based rank of the chunk in the dense ranking (before collapsing), or ``None``.
        bm25_rank: 1-based rank of the chunk in the BM25 ranking (before collapsing), or ``None``.
        mmr: The maximal-marginal-relevance score at selection time, when MMR re-ranking was used.
        caption: Cross-modal searches: cosine similarity between the query and the image's caption, both
            embedded by the image embedder's text tower.
    """

    fused: float
    rank: int
    dense: float | None = None
    bm25: float | None = None
    dense_rank: int | None = None
    bm25_rank: int | None = None
    mmr: float | None = None
    caption: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return _clean(asdict(self))


@dataclass
class Hit:
    """One retrieved text chunk (the best chunk of its document when chunks are collapsed).

    Attributes:
        vector_id: Id of the chunk in the text index and BM25 index.
        doc_id: Id of the document the chunk belongs to.
        source: Source name.
        kind: Document kind.
        title: Document title.
        diagnosis: Diagnosis label of the document, or ``None``.
        text: The chunk text.
        citation: Where the evidence lies; its quote is the most query-relevant part of the chunk.
        scores: Dense, BM25 and fused scores and the rank.
        modality: Imaging modality recorded for the document, or ``None``.
        body_region: Body region recorded for the document, or ``None``.
        meta: Source-specific metadata (ACR code, ORPHA/OMIM ids, ...).
    """

    vector_id: int
    doc_id: str
    source: str
    kind: str
    title: str
    diagnosis: str | None
    text: str
    citation: Citation
    scores: Scores
    modality: str | None = None
    body_region: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return _clean(asdict(self))


@dataclass
class ImageHit:
    """One retrieved image.

    Attributes:
        vector_id: Id of the image in the image index.
        image_id: Image id.
        path: Image file path as recorded in the bundle (absolute or relative to the source root).
        case_id: Case the image belongs to, or ``None``.
        caption: Caption, or ``None``.
        diagnosis: Diagnosis label, or ``None``.
        modality: Imaging modality, or ``None``.
        body_region: Body region, or ``None``.
        source: Source name.
        citation: Citation of the image (kind ``"image"``, quote = caption).
        scores: ``fused`` is the final score (cosine similarity, or RRF when several rankings are fused);
            ``dense`` is the image-vector cosine similarity when computed.
        meta: Source-specific metadata.
    """

    vector_id: int
    image_id: str
    path: str
    case_id: str | None
    caption: str | None
    diagnosis: str | None
    modality: str | None
    body_region: str | None
    source: str
    citation: Citation
    scores: Scores
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return _clean(asdict(self))


@dataclass
class CandidateDiagnosis:
    """A diagnosis suggested by the retrieved evidence.

    Attributes:
        label: Display label (the label of the best-ranked supporting hit).
        key: Normalised label used for grouping (:func:`retrieval.diagnosis.normalize_diagnosis`).
        score: Aggregated score (see :mod:`retrieval.aggregate` for the formula).
        rank: 1-based rank among the candidates.
        n_hits: Number of supporting hits.
        best_rank: Best rank among the supporting hits.
        evidence_kinds: Document kinds among the supporting hits, best-ranked first.
        evidence: Citations of the supporting hits, best-ranked first.
        labels: Every distinct label merged into this candidate.
    """

    label: str
    key: str
    score: float
    rank: int
    n_hits: int
    best_rank: int
    evidence_kinds: list[str]
    evidence: list[Citation]
    labels: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return _clean(asdict(self))
