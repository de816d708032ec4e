"""Choosing the box head's test-time settings (:class:`~vlm.backends.builtin.InferenceSettings`) on
training images, never on the validation split.

The network runs once per image and once on its mirror image; every candidate setting is then only a
different decoding of the cached maps, so a grid costs seconds. Settings are compared by per-image mAP under
the ``coco`` protocol (:mod:`vlm.eval.localisation`: images with gold boxes, 101 points): the choice is
about how well boxes fit lesions, so the images without a lesion are left out of it.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlm.eval.metrics import mean_image_ap
from vlm.model.decode import decode_boxes, fuse_flipped
from vlm.preprocess import Letterbox, normalize_batch, prepare

log = logging.getLogger(__name__)

#: The candidate grid (``top_k`` stays 20: more peaks never lower per-image AP).
GRID: dict[str, tuple[Any, ...]] = {
    "flip_tta": (False, True),
    "nms_iou": (0.5, 0.4),
    "size_scale": (0.92, 0.96, 1.0, 1.04, 1.08, 1.12, 1.16),
}
_MAP_KEYS = ("center", "box_size", "offset")


@dataclass
class HeadMaps:
    """Box-head maps of a set of images (and of their mirror images) with the gold boxes."""

    maps: dict[str, torch.Tensor]
    mirrored: dict[str, torch.Tensor]
    golds: list[np.ndarray]
    letterboxes: list[Letterbox]


@torch.inference_mode()
def head_maps(backend: Any, root: Path, *, limit: int = 600, batch_size: int = 16) -> HeadMaps:
    """Runs ``backend``'s network on up to ``limit`` evenly spaced labelled rows of a NOVA set.

    Raises:
        ConfigError: When ``root`` holds rows of a held-out split (``valid``, ``test`` ...).
    """
    from vlm.train.data import HELD_OUT_SPLITS
    from zebra.errors import ConfigError
    from zebra_datasets import read_nova

    dataset = read_nova(root)
    rows = [r for r in dataset.records if r.meta.get("label_status") != "unlabelled"]
    if any(str(r.meta.get("split") or "").lower() in HELD_OUT_SPLITS for r in rows):
        raise ConfigError(
            f"{root} holds validation/test rows; inference settings must not be chosen on them.",
            hint="Tune on a training split (e.g. the tumour train conversion).",
        )
    if limit < len(rows):
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, limit).round().astype(int)]
    size = backend.config.image_size
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in (*_MAP_KEYS, *(f"{k}_m" for k in _MAP_KEYS))}
    golds, boxes = [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        prepared = [prepare(np.asarray(dataset.load_image(r)), size) for r in chunk]
        x = normalize_batch(torch.from_numpy(np.stack([p.square for p in prepared])))
        for suffix, inp in (("", x), ("_m", x.flip(-1))):
            out = backend.model.heads(backend.model.encode(inp, with_embedding=False))
            for key in _MAP_KEYS:
                parts[key + suffix].append(out[key])
        golds += [np.array([b.xyxy() for b in r.gold_boxes], np.float64).reshape(-1, 4) for r in chunk]
        boxes += [p.box for p in prepared]
    maps = {k: torch.cat(parts[k]) for k in _MAP_KEYS}
    mirrored = {k: torch.cat(parts[f"{k}_m"]) for k in _MAP_KEYS}
    return HeadMaps(maps, mirrored, golds, boxes)


def decoded_boxes(
    maps: dict[str, torch.Tensor], letterboxes: list[Letterbox], settings: Any
) -> list[np.ndarray]:
    """Boxes in input pixels for ``settings`` (an :class:`InferenceSettings`), as the backend decodes them."""
    log_size = maps["box_size"] + math.log(settings.size_scale)
    decoded = decode_boxes(
        maps["center"], log_size, maps["offset"], top_k=settings.top_k, iou=settings.nms_iou
    )
    out = []
    for b, box in zip(decoded, letterboxes, strict=True):
        mapped = np.concatenate([box.to_input(b[:, :4]), b[:, 4:5]], axis=1) if len(b) else np.zeros((0, 5))
        out.append(mapped[(mapped[:, 2] - mapped[:, 0] > 1) & (mapped[:, 3] - mapped[:, 1] > 1)])
    return out


def choose_inference(
    head: HeadMaps, grid: dict[str, tuple[Any, ...]] | None = None
) -> tuple[Any, list[dict]]:
    """The grid point with the best mAP@0.5, and every point's scores.

    Ties are broken by the mean mAP at the stricter IoU thresholds 0.55-0.95 (better-fitting boxes), then by
    grid order (the plainer, cheaper setting first).
    """
    from vlm.backends.builtin import InferenceSettings

    grid = grid or GRID
    fused = {**head.maps, **fuse_flipped(head.maps, head.mirrored)}
    names = list(grid)
    table, preds_of = [], []
    for values in itertools.product(*(grid[n] for n in names)):
        settings = InferenceSettings(**dict(zip(names, values, strict=True)))
        preds = decoded_boxes(fused if settings.flip_tta else head.maps, head.letterboxes, settings)
        row = {**settings.to_dict(), "map30": mean_image_ap(preds, head.golds, 0.3, protocol="coco")}
        row["map50"] = mean_image_ap(preds, head.golds, 0.5, protocol="coco")
        table.append(row)
        preds_of.append(preds)
    top = max(row["map50"] for row in table)
    tied = [i for i, row in enumerate(table) if row["map50"] >= top - 1e-9]
    if len(tied) > 1:
        for i in tied:
            strict = [
                mean_image_ap(preds_of[i], head.golds, t, protocol="coco")
                for t in np.arange(0.55, 0.96, 0.05)
            ]
            table[i]["map55_95"] = float(np.mean(strict))
    pick = max(tied, key=lambda i: (table[i].get("map55_95", 0.0), -i))
    best = InferenceSettings(**{n: table[pick][n] for n in InferenceSettings().to_dict()})
    log.info("inference settings %s (mAP@0.5 %.3f on %d tuning images)", best, top, len(head.golds))
    return best, table
