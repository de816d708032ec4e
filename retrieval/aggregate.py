"""Aggregation of retrieved hits into candidate diagnoses with their supporting evidence.

Formula. Let the hits be ranked ``r = 1..n`` with fused scores ``f_r`` (the scores the ranking is based on).
Each hit's score is made relative to the best one, ``s_r = max(f_r, 0) / max_r f_r``, so the formula behaves
the same for cosine, BM25 and RRF scores. A hit contributes

    ``c_r = w(kind_r) * s_r / log2(r + 1)``

(the discounted-cumulative-gain discount: rank 1 counts fully, rank 3 half) to the candidate of its diagnosis
label, and a candidate's score is the sum of its hits' contributions. ``w`` is a per-kind weight (1 unless
given). Hits without a diagnosis label contribute nothing.

Grouping. A hit's label is the first part of its diagnosis string (a composite label such as
``"1. Metastatic breast cancer\\n2. Anaemia"`` stands for its first, primary, item); hits are grouped by
:func:`retrieval.diagnosis.normalize_diagnosis` of that label. With ``merge_similar`` (the default) a group is
then merged into a better-scoring group whose representative label :func:`retrieval.diagnosis.same_diagnosis`
judges the same (``"Meningioma"`` absorbs ``"Atypical meningioma"``); groups are compared with the
representatives only, so merges do not chain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from retrieval.diagnosis import DiagnosisMatcher, diagnosis_parts, normalize_diagnosis
from retrieval.types import CandidateDiagnosis, Citation, Hit

#: Supporting citations kept per candidate.
DEFAULT_MAX_EVIDENCE = 5


def primary_label(label: str | None) -> str:
    """The first item of a composite diagnosis string, without list numbering, bullets or a final period."""
    return next((part for part in diagnosis_parts(label) if normalize_diagnosis(part)), "")


def hit_contribution(fused: float, rank: int, best: float, weight: float = 1.0) -> float:
    """``weight * (max(fused, 0) / best) / log2(rank + 1)``: the contribution of one hit (module docstring)."""
    if best <= 0 or rank < 1:
        return 0.0
    return weight * (max(fused, 0.0) / best) / math.log2(rank + 1)


@dataclass
class _Group:
    key: str
    label: str
    score: float = 0.0
    best_rank: int = 10**9
    n_hits: int = 0
    kinds: list[str] = field(default_factory=list)
    evidence: list[tuple[int, Citation]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def absorb(self, other: _Group) -> None:
        self.score += other.score
        self.best_rank = min(self.best_rank, other.best_rank)
        self.n_hits += other.n_hits
        self.evidence.extend(other.evidence)
        for kind in other.kinds:
            if kind not in self.kinds:
                self.kinds.append(kind)
        for label in other.labels:
            if label not in self.labels:
                self.labels.append(label)


def aggregate_diagnoses(
    hits: Sequence[Hit],
    *,
    top_n: int | None = None,
    kind_weights: Mapping[str, float] | None = None,
    merge_similar: bool = True,
    matcher: DiagnosisMatcher | None = None,
    max_evidence: int = DEFAULT_MAX_EVIDENCE,
) -> list[CandidateDiagnosis]:
    """Turns ranked hits into ranked candidate diagnoses (formula and grouping in the module docstring).

    Args:
        hits: Hits in ranked order (best first); ranks are their positions in this sequence.
        top_n: Keep this many candidates (all when ``None``).
        kind_weights: Weight per document kind (missing kinds weigh 1).
        merge_similar: Merge groups whose labels :class:`DiagnosisMatcher` judges the same.
        matcher: The judge used for merging (a plain lexical one by default).
        max_evidence: Citations kept per candidate, best-ranked first.

    Returns:
        Candidates, best first, with 1-based ``rank``.
    """
    weights = dict(kind_weights or {})
    best = max((max(h.scores.fused, 0.0) for h in hits), default=0.0)
    groups: dict[str, _Group] = {}
    for rank, hit in enumerate(hits, start=1):
        label = primary_label(hit.diagnosis)
        key = normalize_diagnosis(label)
        if not key:
            continue
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(key=key, label=label)
        group.score += hit_contribution(hit.scores.fused, rank, best, weights.get(hit.kind, 1.0))
        group.best_rank = min(group.best_rank, rank)
        group.n_hits += 1
        group.evidence.append((rank, hit.citation))
        if hit.kind not in group.kinds:
            group.kinds.append(hit.kind)
        if label not in group.labels:
            group.labels.append(label)
    ordered = sorted(groups.values(), key=lambda g: (-g.score, g.best_rank))
    if merge_similar:
        matcher = matcher or DiagnosisMatcher()
        merged: list[_Group] = []
        for group in ordered:
            target = next((m for m in merged if matcher.same(m.label, group.label)), None)
            if target is None:
                merged.append(group)
            else:
                target.absorb(group)
        ordered = sorted(merged, key=lambda g: (-g.score, g.best_rank))
    if top_n is not None:
        ordered = ordered[:top_n]
    out: list[CandidateDiagnosis] = []
    for rank, group in enumerate(ordered, start=1):
        evidence = [c for _, c in sorted(group.evidence, key=lambda rc: rc[0])][:max_evidence]
        out.append(
            CandidateDiagnosis(
                label=group.label,
                key=group.key,
                score=group.score,
                rank=rank,
                n_hits=group.n_hits,
                best_rank=group.best_rank,
                evidence_kinds=list(group.kinds),
                evidence=evidence,
                labels=list(group.labels),
            )
        )
    return out
