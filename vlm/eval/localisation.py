"""Localisation metrics, the project's one AP/IoU implementation, under two protocols.

Boxes are ``[x1, y1, x2, y2]`` in pixels (predictions add a fifth value, the score). IoU is the area of the
intersection over the area of the union, with areas ``(x2 - x1) * (y2 - y1)`` (no ``+1``, as COCO). The VLM's
evaluation (:mod:`vlm.eval.run`, which training calls) and the harness (:mod:`eval.scoring`, through
:mod:`eval.metrics.localisation`) both call this module. It lives in :mod:`vlm` because :mod:`vlm` sits below
:mod:`eval` (docs/architecture.md) and imports nothing but NumPy.

Matching (both protocols): predictions sorted by score, highest first (stable, so tied scores keep their
given order); each in turn takes the not-yet-matched gold box with the highest IoU, provided that IoU is at
least ``t`` (a later gold box wins an IoU tie, as in ``pycocotools``); matched = true positive. Precision and
recall after each prediction; precision made monotone (each value replaced by the maximum precision at any
higher recall) and read at fixed recall points (the first prediction whose recall reaches the point; 0 when
recall never reaches it); AP is the mean over the points.

``nova`` (the default; the NOVA reference harness as issue 13 describes it):

- every image counts (rows whose boxes are unknown, ``label_status == "unlabelled"``, are left out by the
  callers); an image without gold boxes scores AP 1 when nothing is predicted on it and 0 otherwise, at every
  threshold; an image with gold boxes and no prediction scores 0;
- 11-point interpolation (PASCAL VOC 2007): recall points ``0, 0.1, ..., 1`` (``k / 10``);
- every prediction counts (no cap on the number of boxes);
- boxes are clamped to the image (``[0, width] x [0, height]``) before IoU, when the image size is known;
- ACC50: the share of images where *any* predicted box reaches IoU >= 0.5 with a gold box; an image with
  neither gold nor predicted boxes is a hit, one without gold but with predictions a miss.

``coco`` (the harness's behaviour before issue 13; agrees with ``pycocotools`` run on one image at a time):

- only images with gold boxes are averaged;
- 101-point interpolation, recall points ``np.linspace(0, 1, 101)`` exactly as ``pycocotools``;
- at most the 100 highest-scoring predictions of an image count (``maxDets = 100``);
- no clamping;
- ACC50: over images with gold boxes, the share whose single highest-scoring box has IoU >= 0.5 with a gold
  box (no prediction = miss).

``map_0.5_0.95`` is, per image, the mean of the APs at ``0.50, 0.55, ..., 0.95``, then averaged like the
others. :func:`dataset_ap` pools the predictions of all images into one ranking (one class, COCO 101-point,
``maxDets = 100``), which equals ``pycocotools`` run on the whole set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

#: Scoring protocols: ``nova`` (the reference harness, the default) and ``coco``.
PROTOCOLS: tuple[str, ...] = ("nova", "coco")
#: The protocol used when none is given.
DEFAULT_PROTOCOL = "nova"
Protocol = Literal["nova", "coco"]

#: The 101 recall points of COCO interpolation (computed as ``pycocotools`` does, float error included).
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
#: The 11 recall points of PASCAL VOC interpolation (``k / 10``, so that a recall of 3/10 reaches 0.3).
VOC_RECALL_POINTS = np.array([k / 10 for k in range(11)])
#: IoU thresholds of ``map_0.5_0.95`` (``0.5 + 0.05 k``).
COCO_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
#: Predictions per image that ``coco`` keeps (``pycocotools``' ``maxDets``).
COCO_MAX_DETS = 100

Boxes = Sequence[Sequence[float]] | np.ndarray

#: One-line definitions written into summaries and reports.
PROTOCOL_DEFINITIONS: dict[str, str] = {
    "nova": "NOVA reference: per-image AP (11-point PASCAL VOC interpolation) averaged over every image; an "
    "image without gold boxes scores 1 when nothing is predicted on it, else 0; ACC50 = share of images where "
    "any box reaches IoU >= 0.5 (no gold and no box = hit); boxes clamped to the image; "
    "mAP@[.5:.95] = mean over IoU 0.50:0.05:0.95",
    "coco": "COCO per image: per-image AP (101-point interpolation, at most 100 boxes) averaged over images "
    "with gold boxes; ACC50 = share of those images whose top-scoring box reaches IoU >= 0.5",
}


def check_protocol(protocol: str) -> Protocol:
    """The protocol name, validated.

    Raises:
        ValueError: For a name not in :data:`PROTOCOLS`.
    """
    name = str(protocol).strip().lower()
    if name not in PROTOCOLS:
        raise ValueError(f"unknown localisation protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    return name  # type: ignore[return-value]


def _as_boxes(boxes: Boxes, width: int) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, width), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < width:
        raise ValueError(f"boxes must have shape (n, {width}), got {arr.shape}")
    return arr


def clamp_boxes(boxes: Boxes, width: float, height: float) -> np.ndarray:
    """Boxes with corners ordered and clamped to ``[0, width] x [0, height]`` (extra columns kept)."""
    arr = _as_boxes(boxes, 4).copy()
    if len(arr) == 0:
        return arr
    x1, x2 = np.minimum(arr[:, 0], arr[:, 2]), np.maximum(arr[:, 0], arr[:, 2])
    y1, y2 = np.minimum(arr[:, 1], arr[:, 3]), np.maximum(arr[:, 1], arr[:, 3])
    arr[:, 0], arr[:, 2] = np.clip(x1, 0.0, width), np.clip(x2, 0.0, width)
    arr[:, 1], arr[:, 3] = np.clip(y1, 0.0, height), np.clip(y2, 0.0, height)
    return arr


def iou_matrix(a: Boxes, b: Boxes) -> np.ndarray:
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
    """Greedy matching of score-sorted predictions (rows) to gold boxes (columns) (module docstring).

    Returns:
        Boolean array: whether each prediction is a true positive.
    """
    n_pred, n_gold = ious.shape
    taken = np.zeros(n_gold, dtype=bool)
    tp = np.zeros(n_pred, dtype=bool)
    floor = min(threshold, 1 - 1e-10)  # as pycocotools: an IoU of exactly 1 still matches at t = 1
    for i in range(n_pred):
        best, best_iou = -1, floor
        for j in range(n_gold):
            if taken[j] or ious[i, j] < best_iou:
                continue
            best, best_iou = j, ious[i, j]
        if best >= 0:
            taken[best] = True
            tp[i] = True
    return tp


def interpolated_ap(tp: np.ndarray, n_gold: int, points: np.ndarray = RECALL_POINTS) -> float:
    """Interpolated AP from true-positive flags of score-sorted predictions, read at recall ``points``.

    Raises:
        ValueError: Without gold boxes (AP is undefined there; the protocols decide what such an image scores).
    """
    if n_gold == 0:
        raise ValueError("AP is undefined without gold boxes")
    if len(tp) == 0:
        return 0.0
    tps = np.cumsum(tp, dtype=np.float64)
    fps = np.cumsum(~tp, dtype=np.float64)
    recall = tps / n_gold
    precision = tps / (tps + fps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, points, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def _sorted_predictions(pred: Boxes, cap: int | None = None) -> np.ndarray:
    arr = _as_boxes(pred, 5)
    if len(arr) == 0:
        return arr
    arr = arr[np.argsort(-arr[:, 4], kind="mergesort")]
    return arr if cap is None else arr[:cap]


def _prepare(
    pred: Boxes, gold: Boxes, protocol: Protocol, size: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Score-sorted predictions and gold boxes as the protocol sees them (cap, clamping)."""
    pred_arr = _sorted_predictions(pred, COCO_MAX_DETS if protocol == "coco" else None)
    gold_arr = _as_boxes(gold, 4)[:, :4]
    if protocol == "nova" and size is not None:
        pred_arr, gold_arr = clamp_boxes(pred_arr, *size), clamp_boxes(gold_arr, *size)
    return pred_arr, gold_arr


def image_ap(
    pred: Boxes,
    gold: Boxes,
    thresholds: Sequence[float] = (0.5,),
    *,
    protocol: str = "coco",
    size: tuple[float, float] | None = None,
) -> list[float]:
    """AP of one image at each IoU threshold (module docstring).

    Args:
        pred: Predicted boxes ``[x1, y1, x2, y2, score]``.
        gold: Gold boxes ``[x1, y1, x2, y2]``.
        thresholds: IoU thresholds.
        protocol: ``nova`` or ``coco``.
        size: ``(width, height)`` of the image, for ``nova``'s clamping (none when ``None``).

    Returns:
        One AP per threshold.

    Raises:
        ValueError: Under ``coco`` when there is no gold box (the image is not averaged); for an unknown protocol.
    """
    proto = check_protocol(protocol)
    pred_arr, gold_arr = _prepare(pred, gold, proto, size)
    if len(gold_arr) == 0:
        if proto == "coco":
            raise ValueError("AP is undefined without gold boxes under the coco protocol")
        return [1.0 if len(pred_arr) == 0 else 0.0 for _ in thresholds]
    points = VOC_RECALL_POINTS if proto == "nova" else RECALL_POINTS
    ious = iou_matrix(pred_arr, gold_arr)
    return [interpolated_ap(match_predictions(ious, t), len(gold_arr), points) for t in thresholds]


def top_box_hit(pred: Boxes, gold: Boxes, threshold: float = 0.5) -> bool:
    """Whether the highest-scoring predicted box has IoU >= ``threshold`` with some gold box (``coco`` ACC50)."""
    pred_arr = _sorted_predictions(pred)
    gold_arr = _as_boxes(gold, 4)
    if len(pred_arr) == 0 or len(gold_arr) == 0:
        return False
    return bool(iou_matrix(pred_arr[:1], gold_arr).max() >= threshold)


def any_box_hit(pred: Boxes, gold: Boxes, threshold: float = 0.5) -> bool:
    """``nova`` ACC50's unit: some predicted box reaches IoU >= ``threshold`` with some gold box; with no gold
    box, a hit exactly when nothing is predicted."""
    pred_arr, gold_arr = _as_boxes(pred, 4), _as_boxes(gold, 4)
    if len(gold_arr) == 0:
        return len(pred_arr) == 0
    if len(pred_arr) == 0:
        return False
    return bool(iou_matrix(pred_arr, gold_arr).max() >= threshold)


def counts_image(gold: Boxes, protocol: str) -> bool:
    """Whether an image with these gold boxes enters the protocol's averages (``coco``: only with gold)."""
    return check_protocol(protocol) == "nova" or len(_as_boxes(gold, 4)) > 0


def image_localisation(
    pred: Boxes, gold: Boxes, *, protocol: str = "coco", size: tuple[float, float] | None = None
) -> dict[str, float]:
    """All per-image localisation numbers of one image under ``protocol``.

    Args:
        pred: Predicted boxes ``[x1, y1, x2, y2, score]``.
        gold: Gold boxes (at least one under ``coco``).
        protocol: ``nova`` or ``coco``.
        size: ``(width, height)`` for ``nova``'s clamping.

    Returns:
        ``{"ap_0.3", "ap_0.5", "ap_0.5_0.95", "hit50"}`` (``hit50`` is 0 or 1).
    """
    proto = check_protocol(protocol)
    aps = image_ap(pred, gold, (0.3, *COCO_THRESHOLDS), protocol=proto, size=size)
    if proto == "nova":
        pred_arr, gold_arr = _prepare(pred, gold, proto, size)
        hit = any_box_hit(pred_arr, gold_arr, 0.5)
    else:
        hit = top_box_hit(pred, gold, 0.5)
    return {
        "ap_0.3": aps[0],
        "ap_0.5": aps[1],
        "ap_0.5_0.95": float(np.mean(aps[1:])),
        "hit50": float(hit),
    }


def mean_localisation(
    images: Sequence[tuple[Boxes, Boxes]] | Sequence[tuple[Boxes, Boxes, tuple[float, float] | None]],
    *,
    protocol: str = "coco",
) -> dict[str, float | None]:
    """``map_0.3``, ``map_0.5``, ``map_0.5_0.95`` and ``acc50`` over ``(pred, gold[, size])`` images.

    Under ``coco`` images without gold boxes are skipped; every value is ``None`` when no image counts.
    """
    proto = check_protocol(protocol)
    rows = []
    for item in images:
        pred, gold = item[0], item[1]
        size = item[2] if len(item) > 2 else None  # type: ignore[misc]
        if counts_image(gold, proto):
            rows.append(image_localisation(pred, gold, protocol=proto, size=size))
    keys = {"map_0.3": "ap_0.3", "map_0.5": "ap_0.5", "map_0.5_0.95": "ap_0.5_0.95", "acc50": "hit50"}
    if not rows:
        return dict.fromkeys(keys)
    return {out: float(np.mean([r[k] for r in rows])) for out, k in keys.items()}


def mean_image_ap(
    preds: Sequence[Boxes],
    golds: Sequence[Boxes],
    thr: float,
    *,
    protocol: str = "coco",
    sizes: Sequence[tuple[float, float] | None] | None = None,
) -> float:
    """Mean per-image AP at one threshold under ``protocol``; NaN when no image counts.

    Args:
        preds: Per image, ``(n, 5)`` predictions with scores.
        golds: Per image, ``(m, 4)`` gold boxes.
        thr: IoU threshold.
        protocol: ``nova`` or ``coco`` (the default here: callers that pick settings on labelled images only).
        sizes: Per image ``(width, height)`` for ``nova``'s clamping.
    """
    proto = check_protocol(protocol)
    size_list = list(sizes) if sizes is not None else [None] * len(preds)
    aps = [
        image_ap(p, g, (thr,), protocol=proto, size=s)[0]
        for p, g, s in zip(preds, golds, size_list, strict=True)
        if counts_image(g, proto)
    ]
    return float(np.mean(aps)) if aps else float("nan")


def dataset_ap(preds: Sequence[Boxes], golds: Sequence[Boxes], thr: float) -> float:
    """Single-class AP over the whole data set (COCO: 101 points, at most 100 boxes per image, predictions on
    images without gold boxes are false positives); NaN without any gold box."""
    flags, scores = [], []
    n_gold = 0
    for p, g in zip(preds, golds, strict=True):
        pred_arr = _sorted_predictions(p, COCO_MAX_DETS)
        gold_arr = _as_boxes(g, 4)
        n_gold += len(gold_arr)
        flags.append(match_predictions(iou_matrix(pred_arr, gold_arr), thr))
        scores.append(pred_arr[:, 4])
    if n_gold == 0:
        return float("nan")
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_flags = np.concatenate(flags) if flags else np.zeros(0, dtype=bool)
    order = np.argsort(-all_scores, kind="mergesort")
    return interpolated_ap(all_flags[order], n_gold)
