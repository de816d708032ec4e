"""Scoring a run: per-case sufficient statistics, aggregation into headline metrics, bootstrap intervals.

Every metric is an aggregate of per-case numbers (:data:`STAT_COLUMNS`), so that a bootstrap resample of
cases, or the shared cases of two runs, can be re-aggregated exactly:

- localisation: ``map_0.3``, ``map_0.5``, ``map_0.5_0.95`` are the mean per-image AP and ``acc50`` the share
  of images hit, under the chosen *protocol* (:mod:`eval.metrics.localisation`): ``nova`` (default) averages
  over every image whose boxes are known (``label_status != "unlabelled"``), ``coco`` over images with gold
  boxes. Both protocols' statistics are kept per case, so a run can be re-aggregated under either
  (``zebra eval compare --protocol``). A data set without any gold box has no localisation ground truth:
  every localisation metric is ``None`` there under both protocols;
- captioning (images with a reference caption): ``bleu4`` is sacrebleu corpus BLEU (13a, exponential
  smoothing, 0-1; n-gram statistics summed over images), ``rouge_l`` the mean rouge-score ROUGE-L F1,
  ``term_f1`` the micro-averaged clinical-term F1 (this project's own metric);
- diagnosis (cases with a gold diagnosis): ``top1``/``top5`` judged accuracy of the ranked list (abstained or
  not), ``ece`` over the top-1 probabilities (top-1 correctness), ``coverage`` = fraction not abstained,
  ``selective_risk`` = top-1 error rate among the answered cases, ``aurc``, ``cae_rate`` (among answered cases
  where both names map to ICD-10; ``cae_mapped_fraction`` says how many did), ``taxonomy_distance`` (mean ICD-10
  distance, answered and mapped cases), ``acr_region_error_rate`` (answered cases where both ACR codes are
  known: the predicted ACR code comes from the prediction's ``extra.acr_codes``), ``region_consistent_top5``
  (over the cases whose prediction names an imaged region, ``extra.imaged_region``: the share of the top-5
  entries whose region, ``extra.regions``, is not known to lie only elsewhere; the agent predictor fills both).

The *unit* of scoring is the case (default) or the image (``unit="image"``, as the NOVA reference judges
diagnosis): with ``image`` every image is a row of the statistics matrix, with its own localisation and
caption statistics and the diagnosis statistics of the case's prediction against *that image's*
``final_diagnosis`` (images without one are not scored for diagnosis), and the bootstrap resamples images.
Each case row of ``case_metrics.jsonl`` carries its image rows (``images``), so either unit can be
re-aggregated later.

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
from eval.metrics.captioning import bleu_from_stats, bleu_stats, rouge_l
from eval.metrics.diagnosis import (
    aurc,
    expected_calibration_error,
    hit_rank,
    reliability_data,
    risk_coverage,
)
from eval.metrics.localisation import DEFAULT_PROTOCOL, check_protocol, image_localisation
from eval.metrics.terms import Vocabulary, extract_terms, f1_from_counts, term_counts
from retrieval.taxonomy import Icd10Index, acr_distance, is_cae, taxonomy_distance

if TYPE_CHECKING:
    from zebra_datasets import NovaRecord

log = logging.getLogger(__name__)

#: Scoring units of the diagnosis task (and of the bootstrap): the case (default) or the image.
UNITS: tuple[str, ...] = ("case", "image")
DEFAULT_UNIT = "case"

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
#: Per-unit statistics; NaN = undefined. ``n_gold_images`` .. ``hit50_sum`` are the ``coco`` protocol's,
#: ``n_nova_images`` .. ``nova_hit50_sum`` the ``nova`` protocol's.
STAT_COLUMNS: tuple[str, ...] = (
    "n_gold_images",
    "ap03_sum",
    "ap05_sum",
    "ap5095_sum",
    "hit50_sum",
    "n_nova_images",
    "nova_ap03_sum",
    "nova_ap05_sum",
    "nova_ap5095_sum",
    "nova_hit50_sum",
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
#: Per-image statistics that add up to the case's.
_ADDITIVE: tuple[str, ...] = STAT_COLUMNS[: _COL["term_fn"] + 1]
#: Localisation sums of each protocol: ``(count, ap_0.3, ap_0.5, ap_0.5_0.95, hit50)`` columns.
_LOC_COLUMNS: dict[str, tuple[str, str, str, str, str]] = {
    "coco": ("n_gold_images", "ap03_sum", "ap05_sum", "ap5095_sum", "hit50_sum"),
    "nova": ("n_nova_images", "nova_ap03_sum", "nova_ap05_sum", "nova_ap5095_sum", "nova_hit50_sum"),
}


def check_unit(unit: str) -> str:
    """The unit name, validated.

    Raises:
        ValueError: For a name not in :data:`UNITS`.
    """
    name = str(unit).strip().lower()
    if name not in UNITS:
        raise ValueError(f"unknown scoring unit {unit!r}; use one of {', '.join(UNITS)}")
    return name


def truth_of(records: Sequence[NovaRecord]) -> str:
    """The case's gold diagnosis: the first non-empty ``final_diagnosis`` of its rows."""
    return next((r.final_diagnosis.strip() for r in records if r.final_diagnosis.strip()), "")


def acr_of(records: Sequence[NovaRecord]) -> str | None:
    """The case's ACR code (MedPix conversions), or ``None``."""
    return next((str(r.meta["acr_code"]) for r in records if r.meta.get("acr_code")), None)


def _image_size(record: NovaRecord) -> tuple[float, float] | None:
    """``(width, height)`` from the row's metadata, for the ``nova`` protocol's clamping; ``None`` if unknown."""
    try:
        width, height = float(record.meta["image_width"]), float(record.meta["image_height"])
    except (KeyError, TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def _boxes_known(record: NovaRecord) -> bool:
    """Whether the row's boxes are known (a row marked ``unlabelled`` has unknown boxes, not "no lesion")."""
    return record.meta.get("label_status") != "unlabelled"


@dataclass
class CaseScore:
    """One case's statistics (:data:`STAT_COLUMNS`), its images' statistics and details for the report.

    Attributes:
        case_id: The case.
        stats: The case's statistics (the ``case`` unit).
        details: Readable details for the report.
        images: Per image ``{"filename", "stats"}`` (the ``image`` unit).
    """

    case_id: str
    stats: dict[str, float | None]
    details: dict[str, Any] = field(default_factory=dict)
    images: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> list[float]:
        """The statistics as a float row (``None`` -> NaN)."""
        return _row(self.stats)

    def image_rows(self) -> list[list[float]]:
        """One float row per image."""
        return [_row(image["stats"]) for image in self.images]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {"case_id": self.case_id, "stats": self.stats, "details": self.details, "images": self.images}


def _row(stats: Mapping[str, float | None]) -> list[float]:
    return [math.nan if stats.get(c) is None else float(stats[c]) for c in STAT_COLUMNS]  # type: ignore[arg-type]


def _localisation_stats(pred: Any, record: NovaRecord) -> dict[str, float | None]:
    """One image's localisation statistics under both protocols (zero counts when the image does not count)."""
    gold = [b.xyxy() for b in record.gold_boxes]
    stats: dict[str, float | None] = {}
    for protocol, (count, *sums) in _LOC_COLUMNS.items():
        counted = bool(gold) if protocol == "coco" else _boxes_known(record)
        stats[count] = 1.0 if counted else 0.0
        row = (
            image_localisation(pred or [], gold, protocol=protocol, size=_image_size(record))
            if counted
            else dict.fromkeys(("ap_0.3", "ap_0.5", "ap_0.5_0.95", "hit50"), 0.0)
        )
        for col, key in zip(sums, ("ap_0.3", "ap_0.5", "ap_0.5_0.95", "hit50"), strict=True):
            stats[col] = float(row[key])
    return stats


def _caption_stats(cand: str, ref: str, vocabulary: Vocabulary | None) -> dict[str, float | None]:
    """One captioned image's statistics (BLEU sufficient statistics, ROUGE-L, term counts)."""
    stats: dict[str, float | None] = {
        STAT_COLUMNS[col]: value for col, value in zip(_BLEU, bleu_stats(cand, ref), strict=True)
    }
    tp, fp, fn = term_counts(extract_terms(cand, vocabulary), extract_terms(ref, vocabulary))
    stats.update(rouge_sum=rouge_l(cand, ref), n_caption_pairs=1.0, term_tp=tp, term_fp=fp, term_fn=fn)
    return stats


def _diagnosis_stats(
    prediction: Mapping[str, Any],
    truth: str,
    acr_truth: str | None,
    *,
    same: Callable[[str, str], bool],
    index: Icd10Index | None,
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Diagnosis statistics of a prediction against one gold diagnosis (``""`` = none), and report details."""
    diagnoses = [str(d) for d in prediction.get("diagnoses") or []]
    probs = prediction.get("probabilities") or []
    abstained = bool(prediction.get("abstained"))
    stats: dict[str, float | None] = {
        "has_truth": 1.0 if truth else 0.0,
        "abstained": 1.0 if abstained else 0.0,
    }
    details: dict[str, Any] = {
        "truth": truth,
        "top1": diagnoses[0] if diagnoses else None,
        "abstained": abstained,
    }
    extra = prediction.get("extra") or {}
    if extra.get("imaged_region") and diagnoses:
        regions = [str(r) for r in (extra.get("regions") or [])[:5]]
        stats["region_n"] = float(len(regions))
        stats["region_ok"] = float(sum(1 for r in regions if r != "other"))
    if not truth:
        return stats, details
    rank = hit_rank(diagnoses, truth, same, k=5)
    stats["hit_rank"] = rank
    stats["confidence"] = float(probs[0]) if probs and diagnoses else None
    details.update(hit_rank=rank, confidence=stats["confidence"])
    if diagnoses and not abstained:
        top1 = diagnoses[0]
        cae = is_cae(top1, truth, index=index, same=same)
        stats["cae"] = None if cae is None else float(cae)
        stats["taxonomy_distance"] = taxonomy_distance(top1, truth, index=index, same=same)
        if acr_truth is not None:
            acr_pred = (extra.get("acr_codes") or [None])[0]
            dist = 0 if rank == 1 else acr_distance(acr_pred, acr_truth)
            stats["acr_error"] = None if dist is None else float(dist == 4)
        details.update(cae=cae, taxonomy_distance=stats["taxonomy_distance"])
    return stats, details


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
    """Statistics of one case and of each of its images (module docstring).

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
    boxes = prediction.get("boxes") or {}
    captions = prediction.get("captions") or {}
    images: list[dict[str, float | None]] = []
    for r in records:
        image: dict[str, float | None] = dict.fromkeys(STAT_COLUMNS)
        if "localisation" in tasks:
            image.update(_localisation_stats(boxes.get(r.filename), r))
        if "captioning" in tasks:
            image.update(dict.fromkeys((*(STAT_COLUMNS[c] for c in _BLEU), "rouge_sum"), 0.0))
            image.update(n_caption_pairs=0.0, term_tp=0.0, term_fp=0.0, term_fn=0.0)
            if r.caption_text.strip():
                image.update(_caption_stats(captions.get(r.filename, ""), r.caption_text, vocabulary))
        images.append(image)
    stats: dict[str, float | None] = dict.fromkeys(STAT_COLUMNS)
    for col in _ADDITIVE:
        values = [im[col] for im in images if im[col] is not None]
        if values:
            stats[col] = float(sum(values))  # type: ignore[arg-type]
    details: dict[str, Any] = {}
    if "localisation" in tasks:
        n_gold = stats["n_gold_images"] or 0
        details["ap50"] = (stats["ap05_sum"] / n_gold) if n_gold else None  # type: ignore[operator]
        n_nova = stats["n_nova_images"] or 0
        details["nova_ap50"] = (stats["nova_ap05_sum"] / n_nova) if n_nova else None  # type: ignore[operator]
    if "captioning" in tasks:
        n_pairs = stats["n_caption_pairs"] or 0
        details["bleu4"] = (
            bleu_from_stats([stats[STAT_COLUMNS[c]] or 0.0 for c in _BLEU]) if n_pairs else None
        )
    if "diagnosis" in tasks:
        acr_truth = acr_of(records)
        memo: dict[str, dict[str, float | None]] = {}

        def diagnose(truth: str) -> dict[str, float | None]:
            # one judgement per distinct truth: an LLM judge is asked once, however many images share it
            if truth not in memo:
                memo[truth], found = _diagnosis_stats(prediction, truth, acr_truth, same=same, index=index)
                if truth == case_truth:
                    details.update(found)
            return memo[truth]

        case_truth = truth_of(records)
        stats.update(diagnose(case_truth))
        for r, image in zip(records, images, strict=True):
            image.update(diagnose(r.final_diagnosis.strip()))
    image_rows = [{"filename": r.filename, "stats": s} for r, s in zip(records, images, strict=True)]
    return CaseScore(case_id, stats, details, image_rows)


def _matrix(scores: Sequence[CaseScore], unit: str = DEFAULT_UNIT) -> np.ndarray:
    rows = (
        [s.row() for s in scores]
        if check_unit(unit) == "case"
        else [r for s in scores for r in s.image_rows()]
    )
    if not rows:
        return np.zeros((0, len(STAT_COLUMNS)))
    return np.asarray(rows, dtype=np.float64)


def _mean_where(values: np.ndarray, mask: np.ndarray) -> float | None:
    return float(values[mask].mean()) if mask.any() else None


def aggregate(
    matrix: np.ndarray,
    tasks: Iterable[str],
    idx: np.ndarray | None = None,
    *,
    protocol: str = DEFAULT_PROTOCOL,
) -> dict[str, float | None]:
    """Every metric of :data:`HEADLINE` and :data:`SECONDARY` over the rows ``idx`` (all when ``None``).

    Args:
        matrix: ``(n_units, len(STAT_COLUMNS))`` statistics (rows are cases or images).
        tasks: Tasks the predictor declared.
        idx: Row indices (may repeat, for the bootstrap).
        protocol: Localisation protocol, ``nova`` or ``coco``.
    """
    tasks = set(tasks)
    count_col, *sum_cols = _LOC_COLUMNS[check_protocol(protocol)]
    m = matrix if idx is None else matrix[idx]
    col = lambda name: m[:, _COL[name]]  # noqa: E731
    out: dict[str, float | None] = dict.fromkeys((*HEADLINE, *SECONDARY))
    # whether the data set has localisation ground truth at all is a property of the whole set, not of a resample
    has_boxes = matrix.size and np.nansum(matrix[:, _COL["n_gold_images"]]) > 0
    if "localisation" in tasks and m.size and has_boxes:
        n_images = np.nansum(col(count_col))
        if n_images > 0:
            for key, name in zip(("map_0.3", "map_0.5", "map_0.5_0.95", "acc50"), sum_cols, strict=True):
                out[key] = float(np.nansum(col(name)) / n_images)
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
        cases: Per-case scores (with their images), sorted by case id.
        metrics: Point estimates.
        ci: Bootstrap intervals.
        curves: Plot data (:func:`curves`).
        protocol: Localisation protocol of ``metrics``.
        unit: Scoring unit of ``metrics`` (rows of the bootstrap).
    """

    cases: list[CaseScore]
    metrics: dict[str, float | None]
    ci: dict[str, list[float] | None]
    curves: dict[str, Any]
    protocol: str = DEFAULT_PROTOCOL
    unit: str = DEFAULT_UNIT


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
    protocol: str = DEFAULT_PROTOCOL,
    unit: str = DEFAULT_UNIT,
) -> ScoredRun:
    """Scores predictions against the gold rows (sorted by case id; unknown case ids are skipped).

    Args:
        predictions: Rows of ``predictions.jsonl``.
        gold: Gold rows by case id.
        same: The judge's "same condition?" function.
        tasks: Tasks the predictor declared.
        n_resamples: Bootstrap resamples.
        seed: Bootstrap seed.
        vocabulary: Clinical-term vocabulary.
        index: ICD-10 index.
        protocol: Localisation protocol (``nova`` or ``coco``).
        unit: Scoring unit (``case`` or ``image``).

    Raises:
        ValueError: For an unknown protocol or unit.
    """
    protocol, unit = check_protocol(protocol), check_unit(unit)
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
    matrix = _matrix(scores, unit)
    metrics = aggregate(matrix, tasks, protocol=protocol)
    ci = bootstrap_ci(
        len(matrix),
        lambda idx: aggregate(matrix, tasks, idx, protocol=protocol),
        n_resamples=n_resamples,
        seed=seed,
    )
    return ScoredRun(scores, metrics, ci, curves(matrix, tasks), protocol, unit)


def has_protocol_columns(row: Mapping[str, Any]) -> bool:
    """Whether a ``case_metrics.jsonl`` row was written with both protocols' columns and image rows."""
    return "n_nova_images" in (row.get("stats") or {}) and "images" in row


def matrix_from_rows(rows: Sequence[Mapping[str, Any]], unit: str = DEFAULT_UNIT) -> np.ndarray:
    """The statistics matrix from ``case_metrics.jsonl`` rows (``{"case_id", "stats", "images", ...}``).

    With ``unit="image"`` each case contributes its image rows, in the stored order.
    """
    return _matrix(
        [CaseScore(str(r["case_id"]), dict(r["stats"]), images=list(r.get("images") or [])) for r in rows],
        unit,
    )
