"""Metrics (pure NumPy, no model): detection AP two ways, pointing game, AUROC, recall@k.

Detection AP is reported
* per image as in NOVA: the AP of each image that has gold boxes (its predictions ranked by score,
  greedily matched at the IoU threshold, all-point interpolated precision/recall area), averaged over those
  images; an image with gold boxes and no prediction scores 0;
* over the data set (VOC/COCO-style, one class): every prediction of every image (images without gold
  boxes contribute false positives) ranked together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every ``a`` box with every ``b`` box (``x1, y1, x2, y2``)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _match(pred: np.ndarray, gold: np.ndarray, thr: float) -> np.ndarray:
    """True-positive flags of ``pred`` (already sorted by score) by greedy matching."""
    tp = np.zeros(len(pred), bool)
    if len(pred) == 0 or len(gold) == 0:
        return tp
    ious = iou_matrix(pred[:, :4], gold)
    used = np.zeros(len(gold), bool)
    for i in range(len(pred)):
        candidates = np.where(~used & (ious[i] >= thr))[0]
        if len(candidates):
            j = candidates[np.argmax(ious[i, candidates])]
            used[j] = True
            tp[i] = True
    return tp


def _ap_from_flags(tp: np.ndarray, n_gold: int) -> float:
    if n_gold == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_gold
    precision = ctp / np.arange(1, len(tp) + 1)
    # All-point interpolation: precision envelope, area under the recall steps.
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _sorted(pred: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred, np.float64).reshape(-1, 5)
    return pred[np.argsort(-pred[:, 4], kind="stable")]


def image_ap(pred: np.ndarray, gold: np.ndarray, thr: float) -> float:
    """AP of one image (``pred`` ``(n, 5)`` with scores; ``gold`` ``(m, 4)``); NaN when there is no gold box."""
    pred = _sorted(pred)
    gold = np.asarray(gold, np.float64).reshape(-1, 4)
    return _ap_from_flags(_match(pred, gold, thr), len(gold))


def mean_image_ap(preds: Sequence[np.ndarray], golds: Sequence[np.ndarray], thr: float) -> float:
    """NOVA-style mAP: mean of :func:`image_ap` over images with gold boxes (NaN when none has any)."""
    aps = [image_ap(p, g, thr) for p, g in zip(preds, golds, strict=True) if len(g)]
    return float(np.mean(aps)) if aps else float("nan")


def dataset_ap(preds: Sequence[np.ndarray], golds: Sequence[np.ndarray], thr: float) -> float:
    """VOC/COCO-style single-class AP over the whole data set."""
    flags, scores = [], []
    n_gold = 0
    for p, g in zip(preds, golds, strict=True):
        p = _sorted(p)
        g = np.asarray(g, np.float64).reshape(-1, 4)
        n_gold += len(g)
        flags.append(_match(p, g, thr))
        scores.append(p[:, 4])
    if n_gold == 0:
        return float("nan")
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_flags = np.concatenate(flags) if flags else np.zeros(0, bool)
    order = np.argsort(-all_scores, kind="stable")
    return _ap_from_flags(all_flags[order], n_gold)


def pointing_game(heatmaps: Sequence[np.ndarray], golds: Sequence[np.ndarray]) -> float:
    """Share of images with gold boxes whose heatmap maximum falls inside one of them (NaN when none)."""
    hits = []
    for heat, gold in zip(heatmaps, golds, strict=True):
        gold = np.asarray(gold, np.float64).reshape(-1, 4)
        if not len(gold) or heat is None:
            continue
        y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        px, py = x + 0.5, y + 0.5
        hits.append(
            bool(np.any((px >= gold[:, 0]) & (px <= gold[:, 2]) & (py >= gold[:, 1]) & (py <= gold[:, 3])))
        )
    return float(np.mean(hits)) if hits else float("nan")


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count half); NaN without both classes."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def recall_at_k(similarity: np.ndarray, targets: Sequence[int], k: int) -> float:
    """Share of queries (rows) whose target column ranks in the top ``k``."""
    similarity = np.asarray(similarity)
    hits = []
    for i, t in enumerate(targets):
        better = int(np.sum(similarity[i] > similarity[i, t]))
        hits.append(better < k)
    return float(np.mean(hits)) if hits else float("nan")
