"""Scoring a run: per-case sufficient statistics, aggregation into headline metrics, bootstrap intervals.

Every metric is an aggregate of per-case numbers (:data:`STAT_COLUMNS`), so that a bootstrap resample of
cases, or the shared cases of two runs, can be re-aggregated exactly:

- localisation (images with gold boxes): ``map_0.3``, ``map_0.5``, ``map_0.5_0.95`` are the mean per-image AP
  (:mod:`eval.metrics.localisation`), ``acc50`` the fraction of top boxes that hit;
- captioning (images with a reference caption): ``bleu4`` is corpus BLEU-4 (n-gram statistics summed over
  images), ``rouge_l`` the mean ROUGE-L F, ``term_f1`` the micro-averaged clinical-term F1;
- diagnosis (cases with a gold diagnosis): ``top1``/``top5`` judged accuracy of the ranked list (abstained or
  not), ``ece`` over the top-1 probabilities (top-1 correctness), ``coverage`` = fraction not abstained,
  ``selective_risk`` = top-1 error rate among the answered cases, ``aurc``, ``cae_rate`` (among answered cases
  where both names map to ICD-10; ``cae_mapped_fraction`` says how many did), ``taxonomy_distance`` (mean ICD-10
  distance, answered and mapped cases), ``acr_region_error_rate`` (answered cases where both ACR codes are
  known: the predicted ACR code comes from the prediction's ``extra.acr_codes``), ``region_consistent_top5``
  (over the cases whose prediction names an imaged region, ``extra.imaged_region``: the share of the top-5
  entries whose region, ``extra.regions``, is not known to lie only elsewhere; the agent predictor fills both).

A metric family the predictor does not declare in its ``tasks`` is ``None``; inside a declared family a
missing answer counts (no box = AP 0, no caption = empty caption). Cases are always processed sorted by
``case_id`` and the bootstrap is seeded, so the summary depends on ``predictions.jsonl`` only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from eval.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_ci
from eval.metrics.captioning import bleu_from_stats, bleu_stats, rouge_l, tokenize
from eval.metrics.diagnosis import (
    aurc,
    expected_calibration_error,
    hit_rank,
    reliability_data,
    risk_coverage,
)
from eval.metrics.localisation import image_localisation
from eval.metrics.terms import Vocabulary, extract_terms, f1_from_counts, term_counts
from retrieval.taxonomy import Icd10Index, acr_distance, is_cae, taxonomy_distance

if TYPE_CHECKING:
    from zebra.datasets import NovaRecord

log = logging.getLogger(__name__)

#: Headline metrics, in report order.
HEADLINE: tuple[str, ...] = (
    "map_0.3",
    "map_0.5",
    "map_0.5_0.95",
    "acc50",
    "bleu4",
    "rouge_l",
    "term_f1",
    "top1",
    "top5",
    "cae_rate",
    "ece",
    "coverage",
)
#: Further metrics with intervals.
SECONDARY: tuple[str, ...] = (
    "selective_risk",
    "aurc",
    "cae_mapped_fraction",
    "taxonomy_distance",
    "acr_region_error_rate",
    "region_consistent_top5",
)
#: Per-case statistics; NaN = undefined.
STAT_COLUMNS: tuple[str, ...] = (
    "n_gold_images",
    "ap03_sum",
    "ap05_sum",
    "ap5095_sum",
    "hit50_sum",
    "bleu_m1",
    "bleu_m2",
    "bleu_m3",
    "bleu_m4",
    "bleu_t1",
    "bleu_t2",
    "bleu_t3",
    "bleu_t4",
    "bleu_c",
    "bleu_r",
    "rouge_sum",
    "n_caption_pairs",
    "term_tp",
    "term_fp",
    "term_fn",
    "has_truth",
    "hit_rank",
    "confidence",
    "abstained",
    "cae",
    "taxonomy_distance",
    "acr_error",
    "region_ok",
    "region_n",
)
_COL = {name: i for i, name in enumerate(STAT_COLUMNS)}
_BLEU = [_COL[f"bleu_{k}"] for k in ("m1", "m2", "m3", "m4", "t1", "t2", "t3", "t4", "c", "r")]


def truth_of(records: Sequence[NovaRecord]) -> str:
    """The case's gold diagnosis: the first non-empty ``final_diagnosis`` of its rows."""
    return next((r.final_diagnosis.strip() for r in records if r.final_diagnosis.strip()), "")


def acr_of(records: Sequence[NovaRecord]) -> str | None:
    """The case's ACR code (MedPix conversions), or ``None``."""
    return next((str(r.meta["acr_code"]) for r in records if r.meta.get("acr_code")), None)


@dataclass
class CaseScore:
    """One case's statistics (:data:`STAT_COLUMNS`) and readable details for the report."""

    case_id: str
    stats: dict[str, float | None]
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> list[float]:
        """The statistics as a float row (``None`` -> NaN)."""
        return [math.nan if self.stats.get(c) is None else float(self.stats[c]) for c in STAT_COLUMNS]  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {"case_id": self.case_id, "stats": self.stats, "details": self.details}


def score_case(
    case_id: str,
    prediction: Mapping[str, Any],
    records: Sequence[NovaRecord],
    *,
    same: Callable[[str, str], bool],
    tasks: Iterable[str],
    vocabulary: Vocabulary | None = None,
    index: Icd10Index | None = None,
) -> CaseScore:
    """Statistics of one case (module docstring).

    Args:
        case_id: The case.
        prediction: A row of ``predictions.jsonl``.
        records: The case's gold rows.
        same: The judge's "same condition?" function.
        tasks: Tasks the predictor declared.
        vocabulary: Clinical-term vocabulary (default: radiology + HPO).
        index: ICD-10 index (default: the process-wide one).
    """
    tasks = set(tasks)
    stats: dict[str, float | None] = dict.fromkeys(STAT_COLUMNS)
    details: dict[str, Any] = {}
    boxes = prediction.get("boxes") or {}
    captions = prediction.get("captions") or {}
    if "localisation" in tasks:
        rows = [
            image_localisation(boxes.get(r.filename, []), [b.xyxy() for b in r.gold_boxes])
            for r in records
            if r.gold_boxes
        ]
        stats["n_gold_images"] = len(rows)
        for out, key in (
            ("ap03_sum", "ap_0.3"),
            ("ap05_sum", "ap_0.5"),
            ("ap5095_sum", "ap_0.5_0.95"),
            ("hit50_sum", "hit50"),
        ):
            stats[out] = float(sum(r[key] for r in rows))
        details["ap50"] = (stats["ap05_sum"] / len(rows)) if rows else None  # type: ignore[operator]
    if "captioning" in tasks:
        pairs = [(captions.get(r.filename, ""), r.caption_text) for r in records if r.caption_text.strip()]
        total = [0] * 10
        rouge_total, tp, fp, fn = 0.0, 0, 0, 0
        for cand, ref in pairs:
            total = [
                a + b
                for a, b in zip(total, bleu_stats(tokenize(cand), [tokenize(ref)]).as_list(), strict=True)
            ]
            rouge_total += rouge_l(cand, ref)
            counts = term_counts(extract_terms(cand, vocabulary), extract_terms(ref, vocabulary))
            tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
        for col, value in zip(_BLEU, total, strict=True):
            stats[STAT_COLUMNS[col]] = float(value)
        stats.update(rouge_sum=rouge_total, n_caption_pairs=len(pairs), term_tp=tp, term_fp=fp, term_fn=fn)
        details["bleu4"] = bleu_from_stats(total, smooth=True) if pairs else None
    if "diagnosis" in tasks:
        truth = truth_of(records)
        diagnoses = [str(d) for d in prediction.get("diagnoses") or []]
        probs = prediction.get("probabilities") or []
        abstained = bool(prediction.get("abstained"))
        stats["has_truth"] = 1.0 if truth else 0.0
        stats["abstained"] = 1.0 if abstained else 0.0
        details.update(truth=truth, top1=diagnoses[0] if diagnoses else None, abstained=abstained)
        extra = prediction.get("extra") or {}
        if extra.get("imaged_region") and diagnoses:
            regions = [str(r) for r in (extra.get("regions") or [])[:5]]
            stats["region_n"] = float(len(regions))
            stats["region_ok"] = float(sum(1 for r in regions if r != "other"))
        if truth:
            rank = hit_rank(diagnoses, truth, same, k=5)
            stats["hit_rank"] = rank
            stats["confidence"] = float(probs[0]) if probs and diagnoses else None
            details.update(hit_rank=rank, confidence=stats["confidence"])
            if diagnoses and not abstained:
                top1 = diagnoses[0]
                cae = is_cae(top1, truth, index=index, same=same)
                stats["cae"] = None if cae is None else float(cae)
                stats["taxonomy_distance"] = taxonomy_distance(top1, truth, index=index, same=same)
                acr_truth = acr_of(records)
                if acr_truth is not None:
                    acr_pred = ((prediction.get("extra") or {}).get("acr_codes") or [None])[0]
                    dist = 0 if rank == 1 else acr_distance(acr_pred, acr_truth)
                    stats["acr_error"] = None if dist is None else float(dist == 4)
                details.update(cae=cae, taxonomy_distance=stats["taxonomy_distance"])
    return CaseScore(case_id, stats, details)


def _matrix(scores: Sequence[CaseScore]) -> np.ndarray:
    if not scores:
        return np.zeros((0, len(STAT_COLUMNS)))
    return np.asarray([s.row() for s in scores], dtype=np.float64)


def _mean_where(values: np.ndarray, mask: np.ndarray) -> float | None:
    return float(values[mask].mean()) if mask.any() else None


def aggregate(
    matrix: np.ndarray, tasks: Iterable[str], idx: np.ndarray | None = None
) -> dict[str, float | None]:
    """Every metric of :data:`HEADLINE` and :data:`SECONDARY` over the cases ``idx`` (all when ``None``).

    Args:
        matrix: ``(n_cases, len(STAT_COLUMNS))`` statistics.
        tasks: Tasks the predictor declared.
        idx: Case indices (may repeat, for the bootstrap).
    """
    tasks = set(tasks)
    m = matrix if idx is None else matrix[idx]
    col = lambda name: m[:, _COL[name]]  # noqa: E731
    out: dict[str, float | None] = dict.fromkeys((*HEADLINE, *SECONDARY))
    if "localisation" in tasks and m.size:
        n_gold = np.nansum(col("n_gold_images"))
        if n_gold > 0:
            out["map_0.3"] = float(np.nansum(col("ap03_sum")) / n_gold)
            out["map_0.5"] = float(np.nansum(col("ap05_sum")) / n_gold)
            out["map_0.5_0.95"] = float(np.nansum(col("ap5095_sum")) / n_gold)
            out["acc50"] = float(np.nansum(col("hit50_sum")) / n_gold)
    if "captioning" in tasks and m.size:
        n_pairs = np.nansum(col("n_caption_pairs"))
        if n_pairs > 0:
            out["bleu4"] = bleu_from_stats(np.nansum(m[:, _BLEU], axis=0).tolist())
            out["rouge_l"] = float(np.nansum(col("rouge_sum")) / n_pairs)
            out["term_f1"] = f1_from_counts(
                *(float(np.nansum(col(c))) for c in ("term_tp", "term_fp", "term_fn"))
            )
    if "diagnosis" in tasks and m.size:
        scored = col("has_truth") == 1
        if scored.any():
            ranks = col("hit_rank")[scored]
            correct = np.nan_to_num(ranks, nan=99) <= 1
            out["top1"] = float(correct.mean())
            out["top5"] = float((np.nan_to_num(ranks, nan=99) <= 5).mean())
            conf = col("confidence")[scored]
            has_conf = np.isfinite(conf)
            if has_conf.any():
                out["ece"] = expected_calibration_error(conf[has_conf], correct[has_conf])
            out["aurc"] = aurc(np.nan_to_num(conf, nan=0.0), correct)
            answered = col("abstained")[scored] == 0
            out["coverage"] = float(answered.mean())
            out["selective_risk"] = _mean_where(1.0 - correct, answered)
            cae = col("cae")[scored]
            mapped = answered & np.isfinite(cae)
            out["cae_rate"] = _mean_where(cae, mapped)
            out["cae_mapped_fraction"] = float(mapped.sum() / answered.sum()) if answered.any() else None
            dist = col("taxonomy_distance")[scored]
            out["taxonomy_distance"] = _mean_where(dist, answered & np.isfinite(dist))
            acr = col("acr_error")[scored]
            out["acr_region_error_rate"] = _mean_where(acr, answered & np.isfinite(acr))
            region_n = np.nansum(col("region_n"))
            if region_n > 0:
                out["region_consistent_top5"] = float(np.nansum(col("region_ok")) / region_n)
    return out


def curves(matrix: np.ndarray, tasks: Iterable[str]) -> dict[str, Any]:
    """Reliability-plot data and the risk-coverage curve of the diagnosis task (empty without it)."""
    if "diagnosis" not in set(tasks) or not matrix.size:
        return {}
    scored = matrix[:, _COL["has_truth"]] == 1
    ranks = matrix[scored, _COL["hit_rank"]]
    correct = np.nan_to_num(ranks, nan=99) <= 1
    conf = matrix[scored, _COL["confidence"]]
    has_conf = np.isfinite(conf)
    coverage, risk = risk_coverage(np.nan_to_num(conf, nan=0.0), correct)
    answered = matrix[scored, _COL["abstained"]] == 0
    return {
        "reliability": reliability_data(conf[has_conf], correct[has_conf]),
        "risk_coverage": {
            "coverage": [round(float(c), 6) for c in coverage],
            "risk": [round(float(r), 6) for r in risk],
        },
        "operating_point": {
            "coverage": float(answered.mean()) if answered.size else None,
            "selective_risk": float(1 - correct[answered].mean()) if answered.any() else None,
        },
    }


@dataclass
class ScoredRun:
    """Aggregated scores of a run.

    Attributes:
        cases: Per-case scores, sorted by case id.
        metrics: Point estimates.
        ci: Bootstrap intervals.
        curves: Plot data (:func:`curves`).
    """

    cases: list[CaseScore]
    metrics: dict[str, float | None]
    ci: dict[str, list[float] | None]
    curves: dict[str, Any]


def score_predictions(
    predictions: Sequence[Mapping[str, Any]],
    gold: Mapping[str, Sequence[NovaRecord]],
    *,
    same: Callable[[str, str], bool],
    tasks: Iterable[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    vocabulary: Vocabulary | None = None,
    index: Icd10Index | None = None,
) -> ScoredRun:
    """Scores predictions against the gold rows (sorted by case id; unknown case ids are skipped)."""
    tasks = set(tasks)
    by_id: dict[str, Mapping[str, Any]] = {}
    for row in predictions:
        by_id.setdefault(str(row["case_id"]), row)
    unknown = sorted(set(by_id) - set(gold))
    if unknown:
        log.warning(
            "%d predicted case(s) are not in the data set (e.g. %s); skipped", len(unknown), unknown[0]
        )
    scores = [
        score_case(cid, by_id[cid], gold[cid], same=same, tasks=tasks, vocabulary=vocabulary, index=index)
        for cid in sorted(set(by_id) & set(gold))
    ]
    matrix = _matrix(scores)
    metrics = aggregate(matrix, tasks)
    ci = bootstrap_ci(
        len(scores), lambda idx: aggregate(matrix, tasks, idx), n_resamples=n_resamples, seed=seed
    )
    return ScoredRun(scores, metrics, ci, curves(matrix, tasks))


def matrix_from_rows(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The statistics matrix from ``case_metrics.jsonl`` rows (``{"case_id", "stats", ...}``)."""
    return _matrix([CaseScore(str(r["case_id"]), dict(r["stats"])) for r in rows])
