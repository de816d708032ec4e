"""Metrics (pure NumPy, no model): pointing game, AUROC, recall@k; detection AP comes from the evaluation package.

Detection AP and IoU have one implementation in the project, :mod:`vlm.eval.localisation` (protocols
``nova`` and ``coco``, per-image and data-set AP); it imports nothing but NumPy, so importing it here creates
no cycle (the evaluation package never imports :mod:`vlm` at module level). The names below are re-exported
for the VLM's training and evaluation code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlm.eval.localisation import dataset_ap, image_ap, iou_matrix, mean_image_ap

__all__ = [
    "auroc",
    "dataset_ap",
    "image_ap",
    "iou_matrix",
    "mean_image_ap",
    "pointing_game",
    "recall_at_k",
]


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
