"""Retrieval evaluation on MedPix 2.0: does the retrieved evidence point at the case's diagnosis?

Protocol (``zebra eval retrieval``):

- Cases: the ``dev`` (or given) split of ``splits.json``; the bundle is meant to hold the *train* cases' narratives
  plus the disease discussions, so a dev case is never in the index itself.
- Query: the case's ``History`` and ``Findings`` only (``"N/A"`` parts dropped). The ``Case Diagnosis``,
  ``Differential Diagnosis``, case title, ``Exam`` and the whole ``Topic`` are never part of the query.
- Gold label: ``Case["Case Diagnosis"]``, or ``Topic["Title"]`` when the former is missing or ``"N/A"``.
- For each mode (``dense``, ``bm25``, ``hybrid``) the top ``n_hits`` documents are aggregated into candidate
  diagnoses (:mod:`retrieval.aggregate`); a case is a top-``j`` hit when one of the first ``j`` candidates'
  labels is :func:`retrieval.diagnosis.same_diagnosis` as the gold label.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.diagnosis import DiagnosisMatcher
from retrieval.errors import EvaluationDataError
from retrieval.searcher import MODES, Searcher

log = logging.getLogger(__name__)

_MISSING = {"", "n/a", "na", "none", "unknown", "-"}


@dataclass(frozen=True)
class EvalCase:
    """One MedPix case as the evaluation sees it.

    Attributes:
        case_id: MedPix ``U_id``.
        history: ``Case.History`` (may be empty).
        findings: ``Case.Findings`` (may be empty).
        diagnosis: Gold label (``Case Diagnosis``, falling back to ``Topic.Title``).
    """

    case_id: str
    history: str
    findings: str
    diagnosis: str

    @property
    def query(self) -> str:
        """History and findings, the only fields used as the query."""
        return "\n".join(part for part in (self.history, self.findings) if part)


def _field(value: Any) -> str:
    text = str(value or "").strip()
    return "" if text.lower() in _MISSING else text


def load_medpix_cases(root: str | Path, split: str = "dev") -> list[EvalCase]:
    """Reads the cases of one split of MedPix 2.0.

    Args:
        root: Folder with ``Case_topic.json`` and ``splits.json``.
        split: A split name in ``splits.json`` (``dev`` or ``train`` here), or ``all``.

    Returns:
        The split's cases with a query and a gold label, in the order of ``splits.json``.

    Raises:
        EvaluationDataError: When files are missing or malformed, or the split is unknown or empty.
    """
    root = Path(root).expanduser()
    cases_file, splits_file = root / "Case_topic.json", root / "splits.json"
    for path in (cases_file, splits_file):
        if not path.is_file():
            raise EvaluationDataError(
                f"{path} does not exist.",
                hint="Pass the MedPix 2.0 folder with --medpix (Case_topic.json, splits.json).",
            )
    try:
        records = json.loads(cases_file.read_text(encoding="utf-8"))
        splits = json.loads(splits_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationDataError(
            f"Could not read MedPix JSON under {root}: {exc}.", hint="Check the files."
        ) from exc
    if not isinstance(records, list) or not isinstance(splits, dict):
        raise EvaluationDataError(
            f"Unexpected MedPix layout under {root}.",
            hint="Case_topic.json must be a list, splits.json an object.",
        )
    if split == "all":
        wanted = [uid for ids in splits.values() for uid in ids]
    elif split in splits:
        wanted = list(splits[split])
    else:
        raise EvaluationDataError(
            f"Split {split!r} is not in {splits_file}.", hint=f"Use one of: {', '.join(sorted(splits))}, all."
        )
    by_id = {str(r.get("U_id")): r for r in records if isinstance(r, dict)}
    cases: list[EvalCase] = []
    for uid in wanted:
        record = by_id.get(str(uid))
        if record is None:
            log.warning("case %s of split %s is not in Case_topic.json", uid, split)
            continue
        case = record.get("Case") or {}
        topic = record.get("Topic") or {}
        gold = _field(case.get("Case Diagnosis")) or _field(topic.get("Title"))
        history, findings = _field(case.get("History")), _field(case.get("Findings"))
        if not gold or not (history or findings):
            log.info("case %s skipped: no diagnosis or no history/findings", uid)
            continue
        cases.append(EvalCase(str(uid), history, findings, gold))
    if not cases:
        raise EvaluationDataError(
            f"No usable case in split {split!r} under {root}.", hint="Check the data set."
        )
    return cases


def evaluate_retrieval(
    searcher: Searcher,
    cases: Sequence[EvalCase],
    *,
    modes: Iterable[str] = ("dense", "bm25", "hybrid"),
    k: int = 5,
    n_hits: int = 30,
    details_path: str | Path | None = None,
    matcher: DiagnosisMatcher | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Runs the protocol of the module docstring.

    Args:
        searcher: Searcher over the evaluation bundle.
        cases: Cases to query.
        modes: Search modes to compare.
        k: Candidates considered for the top-``k`` rate (the top-1 rate is always reported).
        n_hits: Documents retrieved and aggregated per query.
        details_path: When set, one JSON line per case is written there (candidates and hit rank per mode).
        matcher: The judge (default: lexical :class:`DiagnosisMatcher`).
        progress: Show a progress bar.

    Returns:
        ``{"n_cases", "k", "n_hits", "modes": {mode: {"top1", "top{k}", "hits_top1", "hits_top{k}"}}}``.
    """
    modes = [m for m in modes if m in MODES]
    matcher = matcher or DiagnosisMatcher()
    top1 = dict.fromkeys(modes, 0)
    topk = dict.fromkeys(modes, 0)
    details = open(details_path, "w", encoding="utf-8") if details_path else None  # noqa: SIM115
    iterator: Iterable[EvalCase] = cases
    if progress:
        from tqdm import tqdm

        iterator = tqdm(cases, desc="eval retrieval", unit="case")
    try:
        for case in iterator:
            row: dict[str, Any] = {"case_id": case.case_id, "gold": case.diagnosis, "modes": {}}
            for mode in modes:
                candidates, hits = searcher.diagnose(case.query, n_hits=n_hits, top_n=k, mode=mode)
                hit_rank, reason = None, None
                for cand in candidates:
                    reason = matcher.reason(cand.label, case.diagnosis)
                    if reason:
                        hit_rank = cand.rank
                        break
                if hit_rank == 1:
                    top1[mode] += 1
                if hit_rank is not None:
                    topk[mode] += 1
                row["modes"][mode] = {
                    "hit_rank": hit_rank,
                    "match": reason,
                    "candidates": [{"label": c.label, "score": round(c.score, 4)} for c in candidates],
                    "top_docs": [h.doc_id for h in hits[:5]],
                }
            if details:
                details.write(json.dumps(row) + "\n")
    finally:
        if details:
            details.close()
    n = len(cases)
    return {
        "n_cases": n,
        "k": k,
        "n_hits": n_hits,
        "modes": {
            mode: {
                "top1": top1[mode] / n if n else 0.0,
                f"top{k}": topk[mode] / n if n else 0.0,
                "hits_top1": top1[mode],
                f"hits_top{k}": topk[mode],
            }
            for mode in modes
        },
    }
