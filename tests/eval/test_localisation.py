"""Localisation metrics: hand-computed AP/mAP/ACC50 and agreement with pycocotools on random images."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from eval.metrics.localisation import (
    COCO_THRESHOLDS,
    image_ap,
    image_localisation,
    iou_matrix,
    mean_localisation,
    top_box_hit,
)

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]


def test_iou_matrix_hand_computed() -> None:
    ious = iou_matrix([[0, 0, 10, 10], [5, 0, 15, 10]], [[0, 0, 10, 10], [100, 100, 110, 110]])
    assert ious[0, 0] == pytest.approx(1.0)
    assert ious[1, 0] == pytest.approx(50 / 150)
    assert ious[0, 1] == 0.0 and ious[1, 1] == 0.0


def test_ap_perfect_and_missing() -> None:
    assert image_ap([[*A, 0.9]], [A]) == [pytest.approx(1.0)]
    assert image_ap([], [A]) == [0.0]
    with pytest.raises(ValueError):
        image_ap([[*A, 0.9]], [])


def test_ap_false_positive_ranked_first_halves_precision() -> None:
    # recall 1 is reached at precision 1/2; every recall point reads the envelope 0.5
    assert image_ap([[*B, 0.9], [*A, 0.8]], [A]) == [pytest.approx(0.5)]
    # the same boxes with the true positive scored higher: AP 1
    assert image_ap([[*B, 0.7], [*A, 0.8]], [A]) == [pytest.approx(1.0)]


def test_ap_two_gold_boxes_with_interleaved_false_positive() -> None:
    fp = [50.0, 50.0, 60.0, 60.0]
    ap = image_ap([[*A, 0.9], [*fp, 0.8], [*B, 0.7]], [A, B])[0]
    # recall 0.5 at precision 1 (51 recall points 0..0.50), recall 1 at precision 2/3 (50 points)
    assert ap == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)


def test_duplicate_detection_is_a_false_positive() -> None:
    ap = image_ap([[*A, 0.9], [*A, 0.8]], [A])[0]
    assert ap == pytest.approx(1.0)  # the duplicate comes after full recall: precision envelope stays 1
    ap = image_ap([[*A, 0.9], [*A, 0.8], [*B, 0.7]], [A, B])[0]
    # TP, FP (duplicate), TP: same shape as the interleaved case
    assert ap == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_thresholds_and_map_range() -> None:
    half = [0.0, 0.0, 10.0, 5.0, 0.9]  # IoU with A is exactly 0.5
    aps = image_ap([half], [A], (0.3, 0.5, 0.55))
    assert aps == [pytest.approx(1.0), pytest.approx(1.0), 0.0]
    row = image_localisation([half], [A])
    assert row["ap_0.5_0.95"] == pytest.approx(0.1)  # only 0.5 of the ten thresholds is met
    assert row["hit50"] == 1.0


def test_acc50_uses_only_the_top_scoring_box() -> None:
    assert top_box_hit([[*B, 0.9], [*A, 0.8]], [A]) is False
    assert top_box_hit([[*A, 0.9], [*B, 0.8]], [A]) is True
    assert top_box_hit([], [A]) is False


def test_mean_localisation_skips_images_without_gold() -> None:
    out = mean_localisation([([[*A, 0.9]], [A]), ([[*B, 0.9]], [A]), ([[*A, 0.9]], [])])
    assert out["map_0.5"] == pytest.approx(0.5)
    assert out["acc50"] == pytest.approx(0.5)
    assert mean_localisation([([[*A, 0.9]], [])]) == dict.fromkeys(
        ["map_0.3", "map_0.5", "map_0.5_0.95", "acc50"]
    )


def _random_image(rng: np.random.Generator) -> tuple[list[list[float]], list[list[float]]]:
    gold = []
    for _ in range(rng.integers(1, 5)):
        x, y = rng.uniform(0, 150, 2)
        w, h = rng.uniform(8, 50, 2)
        gold.append([x, y, x + w, y + h])
    pred = []
    for _ in range(rng.integers(1, 9)):
        if rng.random() < 0.6:
            g = gold[rng.integers(len(gold))]
            jitter = rng.normal(0, 6, 4)
            box = [g[0] + jitter[0], g[1] + jitter[1], g[2] + jitter[2], g[3] + jitter[3]]
            box = [
                min(box[0], box[2] - 1),
                min(box[1], box[3] - 1),
                max(box[2], box[0] + 1),
                max(box[3], box[1] + 1),
            ]
        else:
            x, y = rng.uniform(0, 150, 2)
            w, h = rng.uniform(8, 50, 2)
            box = [x, y, x + w, y + h]
        pred.append([*box, float(rng.random())])
    return pred, gold


def _coco_ap(pred: list[list[float]], gold: list[list[float]], thresholds: np.ndarray) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b: list[float]) -> list[float]:
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]]

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": 1}],
            "categories": [{"id": 1}],
            "annotations": [
                {
                    "id": i + 1,
                    "image_id": 1,
                    "category_id": 1,
                    "bbox": xywh(g),
                    "area": xywh(g)[2] * xywh(g)[3],
                    "iscrowd": 0,
                }
                for i, g in enumerate(gold)
            ],
        }
        gt.createIndex()
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": xywh(p), "score": p[4]} for p in pred])
        ev = COCOeval(gt, dt, "bbox")
        ev.params.iouThrs = thresholds
        ev.params.maxDets = [100]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, 0, 0, 0]  # [threshold, recall point]
    return precision.mean(axis=1)


def test_per_image_ap_matches_pycocotools_on_random_images() -> None:
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(1234)
    thresholds = np.array([0.3, *COCO_THRESHOLDS])
    n_checked = 0
    for _ in range(60):
        pred, gold = _random_image(rng)
        ours = np.asarray(image_ap(pred, gold, thresholds))
        ref = _coco_ap(pred, gold, thresholds)
        np.testing.assert_allclose(ours, ref, atol=1e-6)
        n_checked += 1
    assert n_checked >= 50
