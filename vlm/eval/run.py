"""Evaluations of a VLM backend on NOVA-layout data (``zebra vlm eval``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vlm.eval.localisation import (
    DEFAULT_PROTOCOL,
    PROTOCOL_DEFINITIONS,
    check_protocol,
    dataset_ap,
    mean_localisation,
)
from vlm.eval.metrics import auroc, pointing_game
from vlm.gate import image_statistics
from zebra.errors import ConfigError

log = logging.getLogger(__name__)


def evaluate_detection(
    backend: Any,
    root: Path,
    *,
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
    protocol: str = DEFAULT_PROTOCOL,
) -> dict[str, Any]:
    """Box mAP@0.3/0.5/[.5:.95] and ACC50 under ``protocol``, data-set AP, pointing game, anomaly AUROC, gate
    acceptance.

    Args:
        backend: A :class:`vlm.backends.builtin.BuiltinVLM` (needs ``predict`` and ``gate``).
        root: NOVA data set with gold boxes (e.g. the tumour ``valid`` split).
        limit: Evaluate at most this many rows (evenly spaced).
        batch_size: Images per forward pass.
        progress: Show a progress bar.
        protocol: ``nova`` (the NOVA reference: every image counts, 11-point AP, boxes clamped to the image) or
            ``coco`` (images with gold boxes, 101-point AP); :mod:`vlm.eval.localisation`.

    Rows marked ``label_status == "unlabelled"`` are left out (their boxes are unknown).

    Raises:
        ConfigError: When the backend has no raw prediction API or the protocol is unknown.
    """
    try:
        protocol = check_protocol(protocol)
    except ValueError as exc:
        raise ConfigError(str(exc), hint="Use --protocol nova or --protocol coco.") from exc
    from zebra_datasets import read_nova

    if not hasattr(backend, "predict"):
        raise ConfigError(
            f"Backend {getattr(backend, 'name', backend)!r} has no raw prediction API for box evaluation.",
            hint="Evaluate the builtin backend (--vlm builtin or builtin:/path).",
        )
    dataset = read_nova(root)
    rows = [r for r in dataset.records if r.meta.get("label_status") != "unlabelled"]
    if limit is not None and limit < len(rows):
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, limit).round().astype(int)]
    preds, golds, sizes, heats, scores, labels, accepted = [], [], [], [], [], [], []
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(rows), batch_size), desc="eval", disable=not progress):
        chunk = rows[start : start + batch_size]
        images = [np.asarray(dataset.load_image(r)) for r in chunk]
        for r, image, raw in zip(chunk, images, backend.predict(images, batch_size=batch_size), strict=True):
            gold = np.array([b.xyxy() for b in r.gold_boxes], np.float64).reshape(-1, 4)
            preds.append(raw.boxes)
            golds.append(gold)
            sizes.append((float(image.shape[1]), float(image.shape[0])))  # (width, height), for clamping
            heats.append(raw.heatmap)
            scores.append(raw.anomaly)
            labels.append(
                1 if len(gold) else 0 if r.meta.get("label_status") == "normal" or r.is_synthetic else -1
            )
            stats = image_statistics(raw.prepared.gray, raw.prepared.rgb)
            accepted.append(backend.gate.decide(stats, raw.embedding, raw.trunk).accepted)
    seconds = time.perf_counter() - t0
    known = [i for i, lab in enumerate(labels) if lab >= 0]
    with_gold = sum(1 for g in golds if len(g))
    loc = mean_localisation(list(zip(preds, golds, sizes, strict=True)), protocol=protocol)
    nan = float("nan")
    return {
        "data": str(root),
        "images": len(rows),
        "images_with_boxes": with_gold,
        "protocol": protocol,
        "map30": nan if loc["map_0.3"] is None else loc["map_0.3"],
        "map50": nan if loc["map_0.5"] is None else loc["map_0.5"],
        "map50_95": nan if loc["map_0.5_0.95"] is None else loc["map_0.5_0.95"],
        "acc50": nan if loc["acc50"] is None else loc["acc50"],
        "ap30_dataset": dataset_ap(preds, golds, 0.3),
        "ap50_dataset": dataset_ap(preds, golds, 0.5),
        "pointing_game": pointing_game(heats, golds),
        "anomaly_auroc": auroc([scores[i] for i in known], [labels[i] for i in known]),
        "gate_accept_rate": float(np.mean(accepted)) if accepted else float("nan"),
        "seconds_per_image": seconds / max(1, len(rows)),
        "map_definition": f"map*, acc50 ({protocol}): {PROTOCOL_DEFINITIONS[protocol]}; ap*_dataset: "
        "single-class COCO AP (101 points, at most 100 boxes per image) over all detections of all images.",
    }


def evaluate_pairs(backend: Any, roots: list[Path], *, progress: bool = False) -> dict[str, Any]:
    """Change accuracy on longitudinal pairs (``meta.pair_role``/``prior_scan_id``/``change``)."""
    from vlm.types import CHANGE_LABELS
    from zebra_datasets import read_nova

    golds, preds = [], []
    for root in roots:
        dataset = read_nova(root)
        by_scan = {r.scan_id: r for r in dataset.records}
        currents = [
            r for r in dataset.records if r.meta.get("prior_scan_id") in by_scan and r.meta.get("change")
        ]
        for r in tqdm(currents, desc=f"pairs {Path(root).name}", disable=not progress):
            prior = by_scan[r.meta["prior_scan_id"]]
            result = backend.analyze(
                np.asarray(dataset.load_image(r)), prior=np.asarray(dataset.load_image(prior))
            )
            golds.append(r.meta["change"])
            preds.append(result.change.label if result.change else "gated")
    g, p = np.array(golds), np.array(preds)
    out: dict[str, Any] = {
        "pairs": len(g),
        "change_accuracy": float((g == p).mean()) if len(g) else float("nan"),
        "gated": int((p == "gated").sum()),
    }
    for name in CHANGE_LABELS:
        sel = g == name
        out[f"recall_{name}"] = float((p[sel] == name).mean()) if sel.any() else float("nan")
    out["confusion"] = {
        a: {b: int(((g == a) & (p == b)).sum()) for b in (*CHANGE_LABELS, "gated")} for a in CHANGE_LABELS
    }
    return out


def evaluate_retrieval(
    checkpoint: Path, root: Path, *, cache_dir: Path, k: int = 10, random_seed: int = 20240607
) -> dict[str, Any]:
    """Image-to-caption recall@k on a captioned NOVA set: the trained encoder vs a random one of the same config.

    The trained encoder is the open_clip export named in the checkpoint's JSON (``encoder``).
    """
    import torch

    from vlm.checkpoint import load_state, read_meta
    from vlm.eval.retrieval import image_to_text_recall
    from vlm.model.config import VLMConfig
    from vlm.train.bundle import Bundle
    from vlm.train.data import load_image_set

    meta = read_meta(checkpoint)
    encoder = meta.get("encoder")
    if not encoder or not (checkpoint.parent / encoder).is_file():
        raise ConfigError(
            f"Checkpoint {checkpoint} names no open_clip encoder export beside it.",
            hint="Retrieval evaluation needs the encoder + text tower written by 'zebra vlm build-default'.",
        )
    config = VLMConfig.from_dict(meta["config"])
    data = load_image_set(root, size=config.image_size, cache_dir=cache_dir, heldout=True, progress=False)
    trained = Bundle.fresh(config, 0)
    state = {
        k2: v.float() if v.is_floating_point() else v
        for k2, v in load_state(checkpoint.parent / encoder).items()
    }
    trained.clip.load_state_dict(state, strict=True)
    random_bundle = Bundle.fresh(config, random_seed)
    with torch.inference_mode():
        t = image_to_text_recall(trained, data, k=k)
        r = image_to_text_recall(random_bundle, data, k=k)
    return {"data": str(root), "trained": t, "random_init": r, "k": k}
