"""Planning queries and turning retrieval results into the agent's evidence table.

Text retrieval runs each planned text query through :meth:`retrieval.searcher.Searcher.search_text`; several
queries are fused by weighted reciprocal rank fusion over documents (one query keeps its own ranking and
scores). Image retrieval (image -> images and image -> text) runs when the bundle has an image index. Every
item gets a citable id: ``E1``... for text chunks, ``I1``... for similar images. ``exclude_doc_ids`` and
``exclude_case_ids`` drop the query case's own documents (leave-one-out when fitting on indexed cases).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from vlm.findings import TUMOUR_GROUP
from vlm.types import ATTRIBUTE_NAMES

log = logging.getLogger(__name__)

#: RRF constant used to fuse several text queries.
QUERY_RRF_K = 60.0
#: Document kinds searched by the ``discussions`` query of a case (one document per disease: the disease
#: discussions). Searching them apart keeps the many phenotype profiles and single case reports from crowding
#: the per-disease knowledge out of the candidates.
LITERATURE_QUERY_KINDS: tuple[str, ...] = ("disease_discussion", "literature")
#: Characters of chunk text kept per evidence item (LLM prompts quote them).
TEXT_CHARS = 1200


#: Attribute values below this confidence are not used (the VLM's captioner leaves them out too).
ATTRIBUTE_MIN_CONFIDENCE = 0.5


def confident_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    """The attribute values whose confidence (``attrs["confidences"]``, 1 when absent) reaches the minimum."""
    confidences = attrs.get("confidences") or {}
    return {
        n: attrs[n]
        for n in ATTRIBUTE_NAMES
        if attrs.get(n) and float(confidences.get(n, 1.0)) >= ATTRIBUTE_MIN_CONFIDENCE
    }


#: Finding-term groups that describe the finding itself (sides are left out: they rarely name a disease), and the
#: tumour type the image model names inside its domain (``vlm.findings.TUMOUR_GROUP``).
FINDING_GROUPS: tuple[str, ...] = (
    "density",
    "signal",
    "enhancement",
    "appearance",
    "compartment",
    "site",
    TUMOUR_GROUP,
)


def finding_terms(
    findings: Sequence[dict[str, Any]],
    *,
    stated_only: bool = False,
    groups: Sequence[str] | None = FINDING_GROUPS,
) -> list[str]:
    """The finding terms of the accepted images (:class:`vlm.types.Findings`), most probable first.

    Args:
        findings: ``perceive`` entries.
        stated_only: Only the terms the image model states; by default also its retrieval cues (terms above the
            head's query threshold).
        groups: Vocabulary groups kept (``None``: all, sides included).
    """
    out: list[str] = []
    for f in findings:
        if not f.get("accepted", True):
            continue
        for t in (f.get("findings") or {}).get("terms") or []:
            said = t.get("stated") or (not stated_only and t.get("cue"))
            if said and (groups is None or t.get("group") in groups):
                out.append(str(t["value"]))
    return list(dict.fromkeys(out))


#: Words by which a candidate's name shows it is of a tumour type the image model names (a glioblastoma and an
#: astrocytoma are gliomas; a macroadenoma of the pituitary is a pituitary adenoma).
TUMOUR_TYPE_WORDS: dict[str, tuple[str, ...]] = {
    "glioma": ("glioma", "glioblastoma", "astrocytoma", "oligodendroglioma"),
    "meningioma": ("meningioma",),
    "pituitary adenoma": ("pituitary", "macroadenoma", "microadenoma"),
}


def tumour_types(findings: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Tumour type -> its highest probability among the accepted images that name it (stated or cue)."""
    out: dict[str, float] = {}
    for f in findings:
        if not f.get("accepted", True):
            continue
        for t in (f.get("findings") or {}).get("terms") or []:
            if t.get("group") == TUMOUR_GROUP and (t.get("stated") or t.get("cue")):
                out[str(t["value"])] = max(out.get(str(t["value"]), 0.0), float(t.get("confidence") or 0.0))
    return out


def mentions(text: str, word: str) -> bool:
    """Whether ``text`` holds ``word`` (or its plural) as whole words, ignoring case."""
    return re.search(rf"\b{re.escape(word.lower())}s?\b", text.lower()) is not None


def names_tumour_type(label: str, kind: str) -> bool:
    """Whether a diagnosis name is of tumour type ``kind`` (:data:`TUMOUR_TYPE_WORDS`, whole words)."""
    return any(mentions(label, w) for w in TUMOUR_TYPE_WORDS.get(kind, (kind,)))


def imaged_region(findings: Sequence[dict[str, Any]]) -> str | None:
    """``"head"`` when an image was accepted and analysed by the image model (which reads head CT/MR only)."""
    ok = [f for f in findings if f.get("accepted", True) and f.get("id") and f.get("gate")]
    return "head" if ok else None


def perception_text(findings: Sequence[dict[str, Any]], *, stated_only: bool = False) -> str:
    """What the image model saw in the accepted images, as one query text: the finding terms (modality,
    sequence, appearance, site; retrieval cues too unless ``stated_only``) when the model has finding heads, else
    its caption and confident attribute values."""
    parts: list[str] = []
    for f in findings:
        if not f.get("accepted", True):
            continue
        data = f.get("findings") or {}
        if data:
            terms = finding_terms([f], groups=None, stated_only=stated_only)
            text = " ".join([str(data.get("header") or ""), *terms]).strip()
            if text:
                parts.append(text)
            continue
        attrs = confident_attributes(f.get("attributes") or {})
        words = [str(v) for n, v in attrs.items() if n != "size_mm"]
        if f.get("caption"):
            parts.append(str(f["caption"]))
        if words:
            parts.append(" ".join(words))
    return "\n".join(dict.fromkeys(p.strip() for p in parts if p and p.strip()))


def plan_queries(
    *,
    question: str,
    intent: str,
    history: str,
    captions: Sequence[str],
    findings: Sequence[dict[str, Any]],
    topic: str | None = None,
    findings_query: str = "cues",
) -> list[dict[str, Any]]:
    """The text queries of one turn.

    - ``case``: clinical history and the given captions (the question stands in for the history when none is
      given and it is not a literature question);
    - ``captions``: the captions alone, when a history is given too (the history's generic words otherwise
      dominate the query, and the dense embedder reads only its first 256 tokens);
    - ``discussions``: the case text again, restricted to :data:`LITERATURE_QUERY_KINDS` (``kinds``);
    - ``image findings``: the VLM's caption and attributes, weighted 0.5 (the image model is less reliable
      than the narrative); ``findings_query`` (:attr:`agent.configuration.Configuration.findings_query`) says
      whether the cue terms go in too, or whether there is no such query;
    - ``literature``: the condition named by a literature question.

    The ``captions`` and ``discussions`` queries raised the out-of-fold top-5 accuracy of the fitted reasoner on
    the MedPix train cases from 0.55 to 0.61 (``docs/agent.md``).

    Returns:
        ``[{"text", "purpose", "weight"}]`` (``"kinds"`` too when restricted), possibly empty.
    """
    queries: list[dict[str, Any]] = []
    case_parts = [history.strip()] if history and history.strip() else []
    case_parts += [c.strip() for c in captions if c and c.strip()]
    if not case_parts and question.strip() and intent not in ("literature", "offdomain", "followup"):
        case_parts.append(question.strip())
    if case_parts:
        case_text = "\n".join(dict.fromkeys(case_parts))
        queries.append({"text": case_text, "purpose": "case", "weight": 1.0})
        caption_text = "\n".join(dict.fromkeys(c.strip() for c in captions if c and c.strip()))
        if caption_text and caption_text != case_text:
            queries.append({"text": caption_text, "purpose": "captions", "weight": 1.0})
        queries.append(
            {
                "text": case_text,
                "purpose": "discussions",
                "weight": 1.0,
                "kinds": list(LITERATURE_QUERY_KINDS),
            }
        )
    seen = (
        perception_text(findings, stated_only=findings_query == "stated") if findings_query != "off" else ""
    )
    if seen:
        queries.append({"text": seen, "purpose": "image findings", "weight": 0.5})
        # a named tumour type is a diagnosis, not a finding word: alone, generic words cannot drown it
        for kind in finding_terms(findings, groups=(TUMOUR_GROUP,)):
            queries.append({"text": kind, "purpose": "image findings", "weight": 0.5})
    if intent == "literature" and topic:
        queries.append({"text": topic, "purpose": "literature", "weight": 1.0})
    return queries


def fuse_text_queries(
    results: Sequence[tuple[dict[str, Any], Sequence[Any]]], *, k: int, exclude_doc_ids: Iterable[str] = ()
) -> list[tuple[Any, float, list[str]]]:
    """Fuses per-query hit lists into one ranking of documents.

    Args:
        results: ``(query, hits)`` pairs; hits are :class:`retrieval.types.Hit` objects, best first.
        k: Documents kept.
        exclude_doc_ids: Documents dropped before fusion.

    Returns:
        ``(hit, fused score, {purpose: rank})`` triples, best first; one query keeps its own fused scores.
    """
    excluded = set(exclude_doc_ids)
    ranked: list[tuple[dict[str, Any], list[Any]]] = [
        (q, [h for h in hits if h.doc_id not in excluded]) for q, hits in results
    ]
    ranked = [(q, hits) for q, hits in ranked if hits]
    if not ranked:
        return []
    if len(ranked) == 1:
        q, hits = ranked[0]
        return [(h, float(h.scores.fused), {q["purpose"]: r}) for r, h in enumerate(hits[:k], start=1)]
    scores: dict[str, float] = {}
    best: dict[str, Any] = {}
    ranks: dict[str, dict[str, int]] = {}
    for q, hits in ranked:
        for rank, hit in enumerate(hits, start=1):
            scores[hit.doc_id] = scores.get(hit.doc_id, 0.0) + float(q.get("weight", 1.0)) / (
                QUERY_RRF_K + rank
            )
            # keep the chunk with the best dense similarity (its quote is the most relevant one)
            known = best.get(hit.doc_id)
            if known is None or (hit.scores.dense or 0.0) > (known.scores.dense or 0.0):
                best[hit.doc_id] = hit
            ranks.setdefault(hit.doc_id, {}).setdefault(q["purpose"], rank)
    order = sorted(scores, key=lambda d: -scores[d])[:k]
    return [(best[d], scores[d], ranks[d]) for d in order]


def text_item(
    item_id: str,
    hit: Any,
    score: float,
    rank: int,
    purposes: Sequence[str] | dict[str, int],
    via: str,
) -> dict[str, Any]:
    """A JSON-safe evidence item for one text hit.

    Args:
        purposes: The queries that found it, or ``{purpose: rank in that query}``.
    """
    c = hit.citation
    meta = hit.meta or {}
    return {
        "id": item_id,
        "via": via,
        "doc_id": hit.doc_id,
        "source": hit.source,
        "kind": hit.kind,
        "title": hit.title,
        "diagnosis": hit.diagnosis,
        "quote": c.quote,
        "char_start": int(c.char_start),
        "char_end": int(c.char_end),
        "url": c.url,
        "chunk_index": c.chunk_index,
        "text": (hit.text or "")[:TEXT_CHARS],
        "score": float(score),
        "dense": None if hit.scores.dense is None else float(hit.scores.dense),
        "rank": int(rank),
        "acr_code": _str_or_none(meta.get("acr_code")),
        "case_id": _str_or_none(meta.get("case_id")),
        "queries": list(purposes),
        "query_ranks": {str(k): int(v) for k, v in purposes.items()} if isinstance(purposes, dict) else {},
    }


def image_item(item_id: str, hit: Any, rank: int, via: str) -> dict[str, Any]:
    """A JSON-safe evidence item for one image hit."""
    meta = hit.meta or {}
    return {
        "id": item_id,
        "via": via,
        "image_id": hit.image_id,
        "doc_id": hit.citation.doc_id,
        "case_id": hit.case_id,
        "source": hit.source,
        "kind": "image",
        "title": hit.citation.title,
        "caption": hit.caption,
        "quote": hit.caption or "",
        "diagnosis": hit.diagnosis,
        "modality": hit.modality,
        "path": hit.path,
        "score": float(hit.scores.fused),
        "rank": int(rank),
        "acr_code": _str_or_none(meta.get("acr_codes") or meta.get("acr_code")),
    }


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def retrieve(
    searcher: Any,
    queries: Sequence[dict[str, Any]],
    images: Sequence[Any] = (),
    *,
    n_hits: int = 30,
    image_k: int = 10,
    mode: str = "hybrid",
    exclude_doc_ids: Iterable[str] = (),
    exclude_case_ids: Iterable[str] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Runs the text and image retrievals of one turn.

    Args:
        searcher: A :class:`retrieval.searcher.Searcher`.
        queries: Planned text queries (:func:`plan_queries`).
        images: Query images (arrays or PIL images); used only when the bundle has an image index.
        n_hits: Documents per text query (and kept after fusion).
        image_k: Images (and image -> text chunks) per query image.
        mode: Text search mode.
        exclude_doc_ids: Documents never returned (leave-one-out).
        exclude_case_ids: Cases whose images and documents are never returned (leave-one-out).

    Returns:
        ``(evidence, image_evidence, notes)``: text items (``E*``, ``via`` = ``text`` or ``image_text``),
        image items (``I*``), and notes on what could not be searched.
    """
    excluded_docs = set(exclude_doc_ids)
    excluded_cases = {str(c) for c in exclude_case_ids}
    notes: list[str] = []
    extra = len(excluded_docs) + (10 if excluded_cases else 0)
    per_query = []
    for q in queries:
        options: dict[str, Any] = {}
        if q.get("kinds"):
            from retrieval.filters import Filters

            options["filters"] = Filters(kind=tuple(q["kinds"]))
        hits = searcher.search_text(
            q["text"], k=n_hits + extra, mode=mode, fetch_k=max(50, n_hits + extra), **options
        )
        if excluded_cases:
            hits = [h for h in hits if str((h.meta or {}).get("case_id") or "") not in excluded_cases]
        per_query.append((q, hits))
    fused = fuse_text_queries(per_query, k=n_hits, exclude_doc_ids=excluded_docs)
    evidence = [
        text_item(f"E{i}", hit, score, i, purposes, "text")
        for i, (hit, score, purposes) in enumerate(fused, 1)
    ]
    image_evidence: list[dict[str, Any]] = []
    if images:
        has_index = getattr(searcher.bundle, "image_index", None) is not None
        if not has_index:
            notes.append("The index bundle has no image index: no image-based retrieval.")
        else:
            next_e = len(evidence) + 1
            by_doc = {e["doc_id"]: e for e in evidence}
            for image in images:
                for rank, hit in enumerate(
                    (
                        h
                        for h in searcher.search_image(image, k=image_k + len(excluded_cases) * 4)
                        if str(h.case_id or "") not in excluded_cases
                    ),
                    start=1,
                ):
                    if rank > image_k:
                        break
                    image_evidence.append(image_item(f"I{len(image_evidence) + 1}", hit, rank, "image"))
                text_hits = [
                    h
                    for h in searcher.search_image_to_text(image, k=image_k + len(excluded_docs))
                    if h.doc_id not in excluded_docs
                    and str((h.meta or {}).get("case_id") or "") not in excluded_cases
                ][:image_k]
                for rank, hit in enumerate(text_hits, start=1):
                    known = by_doc.get(hit.doc_id)
                    if known is not None:
                        # found by the text queries too: remember the image agrees
                        known.setdefault("image_rank", rank)
                        continue
                    item = text_item(
                        f"E{next_e}", hit, float(hit.scores.fused), rank, ["image"], "image_text"
                    )
                    item["image_rank"] = rank
                    by_doc[hit.doc_id] = item
                    evidence.append(item)
                    next_e += 1
    return evidence, image_evidence, notes


_WORD = re.compile(r"[a-z][a-z0-9\-]+")


def content_words(text: str) -> set[str]:
    """Lower-case words of at least 4 letters (crude content terms for overlap features)."""
    return {w for w in _WORD.findall((text or "").lower()) if len(w) >= 4}
