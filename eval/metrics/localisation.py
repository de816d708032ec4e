"""Localisation metrics following NOVA's protocol: per-image AP at IoU thresholds, and ACC50.

Boxes are ``[x1, y1, x2, y2]`` in pixels (predictions add a fifth value, the score). IoU is the area of the
intersection over the area of the union, with areas ``(x2 - x1) * (y2 - y1)`` (no ``+1``, as COCO).

AP of one image at threshold ``t`` (COCO matching and 101-point interpolation, one class):

1. Predictions are sorted by score, highest first (stable, so ties keep their given order).
2. Each prediction in turn is matched to the not-yet-matched gold box with the highest IoU, provided that IoU
   is at least ``t`` (a later gold box wins a tie, as in ``pycocotools``); matched = true positive, else false
   positive.
3. Precision and recall after each prediction; precision is made monotone (each value replaced by the
   maximum precision at any higher recall), then read at the 101 recall points ``0, 0.01, ..., 1`` (the first
   prediction whose recall reaches the point; 0 when recall never reaches it); AP is their mean.

An image with gold boxes and no prediction has AP 0. Images without gold boxes are left out (NOVA averages
over images that show an anomaly). ``map_0.5_0.95`` is the mean of the APs at ``0.5, 0.55, ..., 0.95``.

ACC50: over images with gold boxes, the fraction whose single highest-scoring predicted box overlaps some gold
box with IoU >= 0.5 (no prediction = miss). This is the definition in the brief; NOVA's own evaluation code
could not be consulted offline (see ``docs/eval.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The 101 recall points of COCO interpolation.
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
#: IoU thresholds of ``map_0.5_0.95``.
COCO_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))


def _as_boxes(boxes: Sequence[Sequence[float]] | np.ndarray, width: int) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, width), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < width:
        raise ValueError(f"boxes must have shape (n, {width}), got {arr.shape}")
    return arr


def iou_matrix(
    a: Sequence[Sequence[float]] | np.ndarray, b: Sequence[Sequence[float]] | np.ndarray
) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b`` (``[x1, y1, x2, y2, ...]``; extra columns ignored).

    Returns:
        ``(len(a), len(b))`` array; 0 where the union is empty.
    """
    a, b = _as_boxes(a, 4)[:, :4], _as_boxes(b, 4)[:, :4]
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_predictions(ious: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy COCO matching of score-sorted predictions (rows) to gold boxes (columns).

    Returns:
        Boolean array: whether each prediction is a true positive.
    """
    n_pred, n_gold = ious.shape
    taken = np.zeros(n_gold, dtype=bool)
    tp = np.zeros(n_pred, dtype=bool)
    for i in range(n_pred):
        best, best_iou = -1, min(threshold, 1 - 1e-10)
        for j in range(n_gold):
            if taken[j] or ious[i, j] < best_iou:
                continue
            best, best_iou = j, ious[i, j]
        if best >= 0:
            taken[best] = True
            tp[i] = True
    return tp


def interpolated_ap(tp: np.ndarray, n_gold: int) -> float:
    """101-point interpolated AP from true-positive flags of score-sorted predictions."""
    if n_gold == 0:
        raise ValueError("AP is undefined without gold boxes")
    if len(tp) == 0:
        return 0.0
    tps = np.cumsum(tp, dtype=np.float64)
    fps = np.cumsum(~tp, dtype=np.float64)
    recall = tps / n_gold
    precision = tps / (tps + fps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def _sorted_predictions(pred: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    arr = _as_boxes(pred, 5)
    if len(arr) == 0:
        return arr
    return arr[np.argsort(-arr[:, 4], kind="mergesort")]


def image_ap(
    pred: Sequence[Sequence[float]] | np.ndarray,
    gold: Sequence[Sequence[float]] | np.ndarray,
    thresholds: Sequence[float] = (0.5,),
) -> list[float]:
    """AP of one image at each IoU threshold (module docstring).

    Args:
        pred: Predicted boxes ``[x1, y1, x2, y2, score]``.
        gold: Gold boxes ``[x1, y1, x2, y2]`` (at least one).
        thresholds: IoU thresholds.

    Returns:
        One AP per threshold.

    Raises:
        ValueError: When there is no gold box.
    """
    gold_arr = _as_boxes(gold, 4)
    if len(gold_arr) == 0:
        raise ValueError("AP is undefined without gold boxes")
    pred_arr = _sorted_predictions(pred)
    ious = iou_matrix(pred_arr, gold_arr)
    return [interpolated_ap(match_predictions(ious, t), len(gold_arr)) for t in thresholds]


def top_box_hit(
    pred: Sequence[Sequence[float]] | np.ndarray,
    gold: Sequence[Sequence[float]] | np.ndarray,
    threshold: float = 0.5,
) -> bool:
    """Whether the highest-scoring predicted box has IoU >= ``threshold`` with some gold box (ACC50's unit)."""
    pred_arr = _sorted_predictions(pred)
    gold_arr = _as_boxes(gold, 4)
    if len(pred_arr) == 0 or len(gold_arr) == 0:
        return False
    return bool(iou_matrix(pred_arr[:1], gold_arr).max() >= threshold)


def image_localisation(
    pred: Sequence[Sequence[float]] | np.ndarray, gold: Sequence[Sequence[float]] | np.ndarray
) -> dict[str, float]:
    """All per-image localisation numbers of one image with gold boxes.

    Returns:
        ``{"ap_0.3", "ap_0.5", "ap_0.5_0.95", "hit50"}`` (``hit50`` is 0 or 1).
    """
    thresholds = (0.3, *COCO_THRESHOLDS)
    aps = image_ap(pred, gold, thresholds)
    return {
        "ap_0.3": aps[0],
        "ap_0.5": aps[1],
        "ap_0.5_0.95": float(np.mean(aps[1:])),
        "hit50": float(top_box_hit(pred, gold, 0.5)),
    }


def mean_localisation(
    images: Sequence[tuple[Sequence[Sequence[float]], Sequence[Sequence[float]]]],
) -> dict[str, float | None]:
    """``map_0.3``, ``map_0.5``, ``map_0.5_0.95`` and ``acc50`` over ``(pred, gold)`` pairs.

    Images without gold boxes are skipped; every value is ``None`` when none has gold boxes.
    """
    rows = [image_localisation(p, g) for p, g in images if len(g)]
    keys = {"map_0.3": "ap_0.3", "map_0.5": "ap_0.5", "map_0.5_0.95": "ap_0.5_0.95", "acc50": "hit50"}
    if not rows:
        return dict.fromkeys(keys)
    return {out: float(np.mean([r[k] for r in rows])) for out, k in keys.items()}
