from __future__ import annotations

import math

import numpy as np
import pytest

from vlm.align import phase_correlation, shift
from vlm.eval.metrics import auroc, dataset_ap, image_ap, mean_image_ap, pointing_game, recall_at_k


def test_vlm_metrics_are_the_evaluation_packages_single_implementation() -> None:
    import eval.metrics.localisation as loc

    assert (image_ap, mean_image_ap, dataset_ap) == (loc.image_ap, loc.mean_image_ap, loc.dataset_ap)


def test_image_ap_perfect_partial_and_missing() -> None:
    gold = np.array([[10, 10, 50, 50], [60, 60, 90, 90]], float)
    perfect = np.array([[10, 10, 50, 50, 0.9], [60, 60, 90, 90, 0.8]], float)
    assert image_ap(perfect, gold, (0.5,)) == [1.0]
    assert image_ap(perfect, gold, (0.5,), protocol="nova") == [1.0]
    # A confident false positive first, then one hit: precision 1/2 up to recall 1/2.
    partial = np.array([[200, 200, 220, 220, 0.95], [12, 12, 50, 50, 0.5]], float)
    assert math.isclose(image_ap(partial, gold, (0.5,))[0], 51 * 0.5 / 101)  # coco: 51 of 101 points
    assert math.isclose(image_ap(partial, gold, (0.5,), protocol="nova")[0], 6 * 0.5 / 11)  # 6 of 11
    assert image_ap(np.zeros((0, 5)), gold, (0.5,)) == [0.0]
    with pytest.raises(ValueError):
        image_ap(perfect, np.zeros((0, 4)), (0.5,))  # coco: no AP without gold
    assert image_ap(perfect, np.zeros((0, 4)), (0.5,), protocol="nova") == [
        0.0
    ]  # nova: boxes on a normal image
    # A loose box counts at IoU 0.3 but not at 0.5.
    loose = np.array([[0, 0, 60, 70, 0.9]], float)  # IoU 0.38
    gold1 = gold[:1]
    assert image_ap(loose, gold1, (0.3, 0.5)) == [1.0, 0.0]


def test_mean_and_dataset_ap_differ_with_false_positives_on_normals() -> None:
    golds = [np.array([[0, 0, 10, 10]], float), np.zeros((0, 4))]
    preds = [np.array([[0, 0, 10, 10, 0.5]], float), np.array([[0, 0, 10, 10, 0.9]], float)]
    assert mean_image_ap(preds, golds, 0.5) == 1.0  # coco: the normal image is not averaged
    assert mean_image_ap(preds, golds, 0.5, protocol="nova") == 0.5  # nova: it is, and its box costs it
    assert math.isclose(dataset_ap(preds, golds, 0.5), 0.5)  # its false positive ranks first


def test_pointing_auroc_recall() -> None:
    heat = np.zeros((100, 100))
    heat[20, 30] = 1.0
    assert pointing_game([heat], [np.array([[25, 15, 40, 30]])]) == 1.0
    assert pointing_game([heat], [np.array([[50, 50, 60, 60]])]) == 0.0
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    sim = np.array([[0.9, 0.1, 0.2], [0.5, 0.4, 0.3]])
    assert recall_at_k(sim, [0, 1], 1) == 0.5 and recall_at_k(sim, [0, 1], 2) == 1.0


def test_phase_correlation_recovers_translation() -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((128, 128), np.float32)
    img[30:70, 40:90] = 1.0
    img += 0.05 * rng.random(img.shape).astype(np.float32)
    moved = shift(img, 9, -13)
    dy, dx = phase_correlation(img, moved)
    assert (dy, dx) == (-9, 13)
    assert np.abs(shift(moved, dy, dx)[20:100, 20:100] - img[20:100, 20:100]).mean() < 0.02
