"""Candidate diagnoses and their features, computed from the evidence table (shared by inference and fit).

Candidates: the text evidence found by the text queries (``via == "text"``) is aggregated by diagnosis label
with :func:`retrieval.aggregate.aggregate_diagnoses` (DCG-discounted fused scores, similar labels merged);
diagnoses of similar images (and of image -> text chunks) that match no text candidate are added after them.

Features of a candidate (:data:`FEATURES`):

- ``score_rel``, ``score_share``: aggregated retrieval score over the best / the sum of all candidates';
- ``inv_best_rank``: 1 / best rank of a supporting document; ``log_n_hits``: log(1 + supporting documents);
- ``inv_cand_rank``: 1 / rank of the candidate by aggregated score;
- ``dense_best``: best query cosine of a supporting chunk;
- ``kind_case_report``, ``kind_discussion``, ``kind_phenotype``: evidence kinds present;
- ``image_support``: DCG share of the similar images (image -> image) labelled with this diagnosis;
- ``image_text_support``: DCG share of the image -> text chunks labelled with it;
- ``perception_overlap``: fraction of the image model's caption/attribute words found in its evidence;
- ``label_in_query``: fraction of the diagnosis name's content words present in the case text (history);
- ``qr_case``, ``qr_captions``, ``qr_discussions``: 1 / best rank of a supporting document in the ``case``,
  ``captions`` and ``discussions`` queries of :func:`agent.evidence.plan_queries` (0 when that query did not
  find it or did not run);
- ``region_head``: with an accepted image (the imaged region, :mod:`agent.anatomy`), 1 when the candidate
  belongs to that region (0 without an image).

Anatomical consistency is also a rule: with an accepted head image, candidates known to lie only in other
regions (:func:`agent.anatomy.candidate_region` ``"other"``) are not candidates at all (a head CT cannot show
appendicitis), at inference and in the fit alike;
- ``finding_agreement``: share of the image's confident finding terms (appearance, compartment, site:
  :class:`vlm.types.Findings`) that the candidate's evidence text mentions (0 without findings).
- ``image_diagnosis``: the probability the image model gives a tumour type (glioma, meningioma, pituitary
  adenoma: named only inside its domain, docs/vlm.md) when the candidate's name is of that type
  (:func:`agent.evidence.names_tumour_type`); 0 otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from agent.anatomy import candidate_region, consistent_with
from agent.evidence import content_words, mentions, names_tumour_type
from retrieval.aggregate import aggregate_diagnoses, primary_label
from retrieval.diagnosis import DiagnosisMatcher, content_tokens, normalize_diagnosis

FEATURES: tuple[str, ...] = (
    "score_rel",
    "score_share",
    "inv_best_rank",
    "log_n_hits",
    "inv_cand_rank",
    "dense_best",
    "kind_case_report",
    "kind_discussion",
    "kind_phenotype",
    "image_support",
    "image_text_support",
    "perception_overlap",
    "label_in_query",
    "qr_case",
    "qr_captions",
    "qr_discussions",
    "region_head",
    "finding_agreement",
    "image_diagnosis",
)
#: Query purposes whose per-query ranks are features (``qr_<purpose>``).
RANKED_QUERIES: tuple[str, ...] = ("case", "captions", "discussions")


@dataclass
class Candidate:
    """A candidate diagnosis with its evidence and features.

    Attributes:
        label: Display name. key: Normalised name.
        score: Aggregated retrieval score (0 for image-only candidates).
        evidence_ids: Supporting ``E*``/``I*`` ids, best first.
        kinds: Evidence kinds. features: :data:`FEATURES` values.
        acr_codes: ACR codes of the supporting MedPix documents.
    """

    label: str
    key: str
    score: float = 0.0
    n_hits: int = 0
    best_rank: int = 0
    evidence_ids: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    acr_codes: list[str] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)
    region: str = "unknown"
    agreed: list[str] = field(default_factory=list)

    def vector(self) -> np.ndarray:
        """The features in :data:`FEATURES` order."""
        return np.array([self.features.get(name, 0.0) for name in FEATURES], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "label": self.label,
            "key": self.key,
            "score": float(self.score),
            "n_hits": int(self.n_hits),
            "best_rank": int(self.best_rank),
            "evidence_ids": list(self.evidence_ids),
            "kinds": list(self.kinds),
            "acr_codes": list(self.acr_codes),
            "features": {k: round(float(v), 6) for k, v in self.features.items()},
            "region": self.region,
            "agreed": list(self.agreed),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        """Inverse of :meth:`to_dict`."""
        return cls(
            label=str(data["label"]),
            key=str(data.get("key", "")),
            score=float(data.get("score", 0.0)),
            n_hits=int(data.get("n_hits", 0)),
            best_rank=int(data.get("best_rank", 0)),
            evidence_ids=list(data.get("evidence_ids") or []),
            kinds=list(data.get("kinds") or []),
            acr_codes=list(data.get("acr_codes") or []),
            features={k: float(v) for k, v in (data.get("features") or {}).items()},
            region=str(data.get("region") or "unknown"),
            agreed=list(data.get("agreed") or []),
        )


def _dcg_share(items: Sequence[dict[str, Any]], label: str, matcher: DiagnosisMatcher) -> float:
    total = sum(1.0 / math.log2(int(it["rank"]) + 1) for it in items)
    if not total:
        return 0.0
    got = sum(
        1.0 / math.log2(int(it["rank"]) + 1)
        for it in items
        if it.get("diagnosis") and matcher.same(primary_label(it["diagnosis"]), label)
    )
    return got / total


def build_candidates(
    evidence: Sequence[dict[str, Any]],
    image_evidence: Sequence[dict[str, Any]] = (),
    *,
    case_text: str = "",
    perception: str = "",
    max_candidates: int = 20,
    matcher: DiagnosisMatcher | None = None,
    imaged_region: str | None = None,
    finding_terms: Sequence[str] = (),
    tumour_types: Mapping[str, float] | None = None,
) -> list[Candidate]:
    """Candidates with features (module docstring), in aggregated-score order (image-only ones last).

    Args:
        evidence: Text evidence items (:func:`agent.evidence.retrieve`).
        image_evidence: Similar-image items.
        case_text: The clinical history and captions given (for ``label_in_query``).
        perception: The image model's caption and attributes (for ``perception_overlap``).
        max_candidates: Most candidates kept.
        matcher: Diagnosis-name judge (lexical by default).
        imaged_region: Region of the accepted images (``"head"``), ``None`` without one.
        finding_terms: The image's confident finding terms (:func:`agent.evidence.finding_terms`).
        tumour_types: Tumour type -> probability named by the image model (:func:`agent.evidence.tumour_types`).
    """
    matcher = matcher or DiagnosisMatcher()
    text_items = [e for e in evidence if e.get("via", "text") == "text"]
    image_text_items = [e for e in evidence if e.get("via") == "image_text" or e.get("image_rank")]
    image_text_ranked = [{**e, "rank": e.get("image_rank") or e["rank"]} for e in image_text_items]
    by_id = {e["id"]: e for e in evidence}
    proxies = [
        SimpleNamespace(
            diagnosis=e.get("diagnosis"),
            kind=e.get("kind", ""),
            citation=e["id"],
            scores=SimpleNamespace(fused=e["score"]),
        )
        for e in text_items
    ]
    aggregated = aggregate_diagnoses(proxies, top_n=None, matcher=matcher, max_evidence=8)
    candidates: list[Candidate] = []
    for agg in aggregated:
        if len(candidates) >= max_candidates:
            break
        ids = [str(c) for c in agg.evidence]
        cand = Candidate(
            label=" ".join(agg.label.split()),
            key=agg.key,
            score=float(agg.score),
            n_hits=int(agg.n_hits),
            best_rank=int(agg.best_rank),
            evidence_ids=ids,
            kinds=list(agg.evidence_kinds),
        )
        # the anatomy rule acts before the cap: with a head image, the places of the candidates of other
        # regions go to the next head candidates instead of being left empty
        if imaged_region is not None and not consistent_with(_locate(cand, by_id), imaged_region):
            continue
        candidates.append(cand)
    # diagnoses only the images point at
    for items in (image_evidence, image_text_ranked):
        for item in items:
            label = primary_label(item.get("diagnosis"))
            if not label or len(candidates) >= max_candidates:
                continue
            match = next((c for c in candidates if matcher.same(c.label, label)), None)
            if match is None:
                candidates.append(
                    Candidate(
                        label=" ".join(label.split()),
                        key=normalize_diagnosis(label),
                        evidence_ids=[item["id"]],
                    )
                )
            elif item["id"] not in match.evidence_ids:
                match.evidence_ids.append(item["id"])
    scores = [c.score for c in candidates]
    best, total = max(scores, default=0.0), sum(scores)
    query_words = set(normalize_diagnosis(case_text).split())
    seen_words = content_words(perception)
    for rank, cand in enumerate(candidates, start=1):
        items = [by_id[i] for i in cand.evidence_ids if i in by_id]
        dense = [float(e["dense"]) for e in items if e.get("dense") is not None and e.get("via") == "text"]
        label_words = set(content_tokens(cand.key))
        evidence_words = content_words(" ".join(str(e.get("text") or e.get("quote") or "") for e in items))
        kinds = set(cand.kinds)
        cand.features = {
            "score_rel": cand.score / best if best > 0 else 0.0,
            "score_share": cand.score / total if total > 0 else 0.0,
            "inv_best_rank": 1.0 / cand.best_rank if cand.best_rank else 0.0,
            "log_n_hits": math.log1p(cand.n_hits),
            "inv_cand_rank": 1.0 / rank if cand.score > 0 else 0.0,
            "dense_best": max(dense, default=0.0),
            "kind_case_report": float("case_report" in kinds),
            "kind_discussion": float("disease_discussion" in kinds),
            "kind_phenotype": float("phenotype_profile" in kinds),
            "image_support": _dcg_share(image_evidence, cand.label, matcher),
            "image_text_support": _dcg_share(image_text_ranked, cand.label, matcher),
            "perception_overlap": len(seen_words & evidence_words) / len(seen_words) if seen_words else 0.0,
            "label_in_query": len(label_words & query_words) / len(label_words) if label_words else 0.0,
        }
        for purpose in RANKED_QUERIES:
            ranks = [int((e.get("query_ranks") or {}).get(purpose) or 0) for e in items]
            cand.features[f"qr_{purpose}"] = max((1.0 / r for r in ranks if r > 0), default=0.0)
        _locate(cand, by_id)  # again: image evidence may have joined the candidate since
        cand.features["region_head"] = float(imaged_region is not None and cand.region == "head")
        cand.agreed = _agreed(finding_terms, items)
        cand.features["finding_agreement"] = len(cand.agreed) / len(finding_terms) if finding_terms else 0.0
        cand.features["image_diagnosis"] = max(
            (p for kind, p in (tumour_types or {}).items() if names_tumour_type(cand.label, kind)),
            default=0.0,
        )
    if imaged_region is not None:
        candidates = [c for c in candidates if consistent_with(c.region, imaged_region)]
    return candidates


def _locate(cand: Candidate, by_id: dict[str, dict[str, Any]]) -> str:
    """Sets and returns the candidate's region, from the ACR codes of its evidence and its name."""
    items = [by_id[i] for i in cand.evidence_ids if i in by_id]
    cand.acr_codes = list(dict.fromkeys(e["acr_code"] for e in items if e.get("acr_code")))
    cand.region = candidate_region(cand.label, cand.acr_codes)
    return cand.region


def _agreed(terms: Sequence[str], items: Sequence[dict[str, Any]]) -> list[str]:
    """The image's finding terms that the candidate's evidence text mentions (vocabulary terms through its
    spellings and negation rule; others, such as a tumour type, as whole words)."""
    if not terms:
        return []
    from vlm.findings import load_vocabulary

    vocab = load_vocabulary()
    text = " ".join(str(e.get("text") or e.get("quote") or "") for e in items)
    said = vocab.extract(text)
    return [t for t in terms if t in said or (t not in vocab.names and mentions(text, t))]


def feature_matrix(candidates: Sequence[Candidate]) -> np.ndarray:
    """``(n, len(FEATURES))`` float64."""
    if not candidates:
        return np.zeros((0, len(FEATURES)), dtype=np.float64)
    return np.stack([c.vector() for c in candidates])
