"""The ``nova`` protocol on hand-computed images (golden values), and ``coco`` against pycocotools."""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace

import numpy as np
import pytest

from eval.metrics.localisation import (
    COCO_THRESHOLDS,
    any_box_hit,
    clamp_boxes,
    dataset_ap,
    image_ap,
    image_localisation,
    mean_image_ap,
    mean_localisation,
)

SIZE = (100.0, 100.0)
A = [10.0, 10.0, 30.0, 30.0]
B = [60.0, 60.0, 80.0, 80.0]
FAR = [40.0, 70.0, 50.0, 90.0]  # overlaps neither A nor B
CORNER = [80.0, 80.0, 100.0, 100.0]
#: 102 false boxes, best scores first, then A as the 103rd prediction.
MANY = [[60.0, 10.0, 70.0 + k * 0.1, 20.0, 0.99 - k * 0.001] for k in range(102)] + [[*A, 0.5]]

#: (name, predictions, gold, per-image AP@0.3, AP@0.5, AP@[.5:.95], ACC50 hit), by hand:
#: 11-point AP = mean over recall points 0, 0.1, ..., 1 of the best precision at a recall >= the point.
GOLDEN: list[tuple[str, list[list[float]], list[list[float]], float, float, float, float]] = [
    # no gold and nothing predicted: 1 everywhere, a hit
    ("normal, silent", [], [], 1.0, 1.0, 1.0, 1.0),
    # no gold, one box drawn: 0 everywhere, a miss
    ("normal, boxed", [[*A, 0.9]], [], 0.0, 0.0, 0.0, 0.0),
    # no gold, three boxes: still 0
    ("normal, three boxes", [[*A, 0.9], [*B, 0.8], [*FAR, 0.1]], [], 0.0, 0.0, 0.0, 0.0),
    # the gold box exactly
    ("exact", [[*A, 0.9]], [A], 1.0, 1.0, 1.0, 1.0),
    # gold but nothing predicted
    ("missed", [], [A], 0.0, 0.0, 0.0, 0.0),
    # two gold boxes, one found: precision 1 up to recall 0.5 (6 of 11 points), nothing beyond
    ("two gold, one found", [[*A, 0.8]], [A, B], 6 / 11, 6 / 11, 6 / 11, 1.0),
    # tied scores keep the given order: the false box ranks first, precision 1/2 at recall 1 everywhere
    ("tied scores", [[*FAR, 0.7], [*A, 0.7]], [A], 0.5, 0.5, 0.5, 1.0),
    # IoU 0.4 (a 20x8 box inside the 20x20 gold box): matched at 0.3, not at 0.5
    ("loose box", [[10.0, 10.0, 30.0, 18.0, 0.9]], [A], 1.0, 0.0, 0.0, 0.0),
    # IoU 0.72: matched at 0.50, 0.55, 0.60, 0.65, 0.70 (5 of 10 thresholds)
    ("IoU 0.72", [[10.0, 10.0, 30.0, 24.4, 0.9]], [A], 1.0, 1.0, 0.5, 1.0),
    # hit, miss, hit: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> (6 * 1 + 5 * 2/3) / 11 = 28/33
    ("two gold, both found", [[*A, 0.9], [*FAR, 0.8], [*B, 0.7]], [A, B], 28 / 33, 28 / 33, 28 / 33, 1.0),
    # a box reaching past the image is clamped to it: [80,80,120,120] -> the gold box itself (IoU 0.25 unclamped)
    ("clamped", [[80.0, 80.0, 120.0, 120.0, 0.9]], [CORNER], 1.0, 1.0, 1.0, 1.0),
    # 103 predictions, the gold box found by the last: precision 1/103 at recall 1 (no cap under nova)
    ("103 predictions", MANY, [A], 1 / 103, 1 / 103, 1 / 103, 1.0),
]


@pytest.mark.parametrize(("name", "pred", "gold", "ap03", "ap05", "ap5095", "hit"), GOLDEN)
def test_nova_per_image_golden(
    name: str, pred: list, gold: list, ap03: float, ap05: float, ap5095: float, hit: float
) -> None:
    row = image_localisation(pred, gold, protocol="nova", size=SIZE)
    assert row["ap_0.3"] == pytest.approx(ap03, abs=1e-9), name
    assert row["ap_0.5"] == pytest.approx(ap05, abs=1e-9), name
    assert row["ap_0.5_0.95"] == pytest.approx(ap5095, abs=1e-9), name
    assert row["hit50"] == hit, name


def test_nova_means_over_every_image_golden() -> None:
    images = [(pred, gold, SIZE) for _, pred, gold, *_ in GOLDEN]
    out = mean_localisation(images, protocol="nova")
    n = len(GOLDEN)
    # by hand: AP@0.3 sums 1+0+0+1+0+6/11+1/2+1+1+28/33+1+1/103; at 0.5 the loose box scores 0 instead of 1;
    # over 0.5:0.95 the IoU-0.72 box scores 1/2
    map03 = (5 + 6 / 11 + 0.5 + 28 / 33 + 1 / 103) / n
    map05 = (4 + 6 / 11 + 0.5 + 28 / 33 + 1 / 103) / n
    map5095 = (3 + 6 / 11 + 0.5 + 0.5 + 28 / 33 + 1 / 103) / n
    assert out["map_0.3"] == pytest.approx(map03, abs=1e-9)
    assert out["map_0.5"] == pytest.approx(map05, abs=1e-9)
    assert out["map_0.5_0.95"] == pytest.approx(map5095, abs=1e-9)
    assert out["acc50"] == pytest.approx(8 / 12, abs=1e-9)
    assert mean_image_ap(
        [p for _, p, *_ in GOLDEN], [g for _, _, g, *_ in GOLDEN], 0.3, protocol="nova", sizes=[SIZE] * n
    ) == pytest.approx(map03, abs=1e-9)


def test_coco_differs_where_the_protocols_disagree() -> None:
    # coco: no clamping (IoU 0.25), a cap of 100 boxes (the 103rd is never seen), 101 points, no-gold images skipped
    assert image_localisation([[80.0, 80.0, 120.0, 120.0, 0.9]], [CORNER])["ap_0.3"] == 0.0
    assert image_ap(MANY, [A], (0.5,)) == [0.0]
    assert image_ap([[*A, 0.8]], [A, B], (0.5,)) == [pytest.approx(51 / 101)]
    # coco's ACC50 looks at the top-scoring box only; nova's at any box
    assert image_localisation([[*FAR, 0.9], [*A, 0.8]], [A])["hit50"] == 0.0
    assert image_localisation([[*FAR, 0.9], [*A, 0.8]], [A], protocol="nova")["hit50"] == 1.0
    out = mean_localisation([(pred, gold) for _, pred, gold, *_ in GOLDEN])
    # 9 images with gold; the top box misses on: missed, tied (the false box ranks first), loose, clamped, 103
    assert out["acc50"] == pytest.approx(4 / 9)
    with pytest.raises(ValueError, match="protocol"):
        image_ap([], [A], protocol="voc")


def test_clamping_and_any_box_hit() -> None:
    clamped = clamp_boxes([[120.0, -5.0, 80.0, 50.0, 0.3]], 100.0, 100.0)
    np.testing.assert_allclose(clamped, [[80.0, 0.0, 100.0, 50.0, 0.3]])
    assert any_box_hit([], []) is True
    assert any_box_hit([[*A, 0.1]], []) is False
    assert any_box_hit([[*FAR, 0.9], [*A, 0.1]], [A]) is True


def test_harness_scores_the_golden_images_under_both_protocols() -> None:
    """The same images through eval.scoring (one case per image): the summary numbers equal the golden means."""
    from eval.scoring import score_predictions

    gold_rows, preds = {}, []
    for i, (_, pred, gold, *_) in enumerate(GOLDEN):
        boxes = [SimpleNamespace(xyxy=lambda g=g: tuple(g)) for g in gold]
        rec = SimpleNamespace(
            filename=f"i{i}.png",
            gold_boxes=boxes,
            meta={
                "image_width": "100",
                "image_height": "100",
                "label_status": "labelled" if gold else "normal",
            },
            caption_text="",
            final_diagnosis="",
        )
        gold_rows[f"c{i:02d}"] = [rec]
        preds.append({"case_id": f"c{i:02d}", "boxes": {f"i{i}.png": pred} if pred else {}})
    # an unlabelled image (boxes unknown) counts under neither protocol, whatever is drawn on it
    unknown = SimpleNamespace(
        filename="u.png",
        gold_boxes=[],
        meta={"label_status": "unlabelled"},
        caption_text="",
        final_diagnosis="",
    )
    gold_rows["c99"] = [unknown]
    preds.append({"case_id": "c99", "boxes": {"u.png": [[*A, 0.9]]}})
    same = lambda a, b: a == b  # noqa: E731
    nova = score_predictions(preds, gold_rows, same=same, tasks=["localisation"], n_resamples=20)
    expected = mean_localisation([(p, g, SIZE) for _, p, g, *_ in GOLDEN], protocol="nova")
    for key, value in expected.items():
        assert nova.metrics[key] == pytest.approx(value, abs=1e-9), key
    assert nova.protocol == "nova"
    coco = score_predictions(
        preds, gold_rows, same=same, tasks=["localisation"], n_resamples=20, protocol="coco"
    )
    expected = mean_localisation([(p, g) for _, p, g, *_ in GOLDEN], protocol="coco")
    for key, value in expected.items():
        assert coco.metrics[key] == pytest.approx(value, abs=1e-9), key
    assert coco.metrics["map_0.5"] != pytest.approx(nova.metrics["map_0.5"])


# ---------------------------------------------------------------- coco against pycocotools


def _random_set(
    rng: np.random.Generator, n_images: int
) -> tuple[list[list[list[float]]], list[list[list[float]]]]:
    """Images with 0-4 gold boxes and 0-8 predictions; one in ten has 101-140 predictions."""
    preds, golds = [], []
    for _ in range(n_images):
        gold = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.uniform(0, 150, 2)
            w, h = rng.uniform(8, 50, 2)
            gold.append([float(x), float(y), float(x + w), float(y + h)])
        n_pred = int(rng.integers(101, 141)) if rng.random() < 0.1 else int(rng.integers(0, 9))
        pred = []
        for _ in range(n_pred):
            if gold and rng.random() < 0.5:
                g = gold[int(rng.integers(len(gold)))]
                j = rng.normal(0, 6, 4)
                box = [g[0] + j[0], g[1] + j[1], g[2] + j[2], g[3] + j[3]]
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
            pred.append([float(v) for v in box] + [float(rng.random())])
        preds.append(pred)
        golds.append(gold)
    return preds, golds


def _xywh(b: list[float]) -> list[float]:
    return [b[0], b[1], b[2] - b[0], b[3] - b[1]]


def _cocoeval(preds: list, golds: list, thresholds: np.ndarray):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        anns, ann_id = [], 1
        for i, gold in enumerate(golds):
            for g in gold:
                anns.append(
                    {
                        "id": ann_id,
                        "image_id": i + 1,
                        "category_id": 1,
                        "bbox": _xywh(g),
                        "area": _xywh(g)[2] * _xywh(g)[3],
                        "iscrowd": 0,
                    }
                )
                ann_id += 1
        gt.dataset = {
            "images": [{"id": i + 1} for i in range(len(golds))],
            "categories": [{"id": 1}],
            "annotations": anns,
        }
        gt.createIndex()
        dets = [
            {"image_id": i + 1, "category_id": 1, "bbox": _xywh(p), "score": p[4]}
            for i, pred in enumerate(preds)
            for p in pred
        ]
        ev = COCOeval(gt, gt.loadRes(dets) if dets else COCO(), "bbox")
        ev.params.iouThrs = thresholds
        ev.params.maxDets = [100]
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, 0, 0, 0]  # [threshold, recall point]; -1 where undefined


def test_coco_per_image_ap_matches_pycocotools_with_empty_and_crowded_images() -> None:
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(20261202)
    thresholds = np.array([0.3, *COCO_THRESHOLDS])
    preds, golds = _random_set(rng, 120)
    checked = crowded = empty = 0
    for pred, gold in zip(preds, golds, strict=True):
        if not gold:
            continue  # undefined under coco (pycocotools reports -1), skipped by the harness
        ref = _cocoeval([pred], [gold], thresholds).mean(axis=1)
        ours = np.asarray(image_ap(pred, gold, thresholds, protocol="coco"))
        np.testing.assert_allclose(ours, ref, atol=1e-9)
        checked += 1
        crowded += len(pred) > 100
        empty += not pred
    assert checked >= 60 and crowded >= 3 and empty >= 3


def test_coco_dataset_ap_matches_pycocotools_on_seeded_sets() -> None:
    pytest.importorskip("pycocotools")
    thresholds = np.array([0.3, 0.5, 0.75])
    crowded = empty = normal_boxed = 0
    for seed in (1, 2, 3):
        preds, golds = _random_set(np.random.default_rng(seed), 40)
        ref = _cocoeval(preds, golds, thresholds).mean(axis=1)
        ours = [dataset_ap(preds, golds, float(t)) for t in thresholds]
        np.testing.assert_allclose(ours, ref, atol=1e-9)
        crowded += sum(len(p) > 100 for p in preds)
        empty += sum(not p for p in preds)
        normal_boxed += sum(bool(p) and not g for p, g in zip(preds, golds, strict=True))
    # the sets exercise the cap, images without predictions and false positives on images without gold
    assert crowded >= 3 and empty >= 3 and normal_boxed >= 3
