"""Last step of the default build: gate statistics, shipped files, evaluation and the model card."""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlm.checkpoint import (
    DEFAULT_NAME,
    encoder_path,
    read_meta,
    save_checkpoint,
    sidecar,
    write_json,
)
from vlm.export import export_open_clip
from vlm.gate import EmbeddingStats
from vlm.gate_photo import PhotoClassifier, fit_photo_classifier, photo_features
from vlm.preprocess import normalize_batch
from vlm.train.bundle import Bundle

log = logging.getLogger(__name__)

TUNING_NOTE = (
    "best mAP@0.5 over vlm.eval.tune.GRID on 600 evenly spaced tumour train images (seen in training; "
    "the valid split is never used for choices)"
)


@torch.inference_mode()
def training_features(bundle: Bundle, roots: list[Path], per_set: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and pooled trunk features of (at most ``per_set``, evenly spaced) training images per set.

    Images are read from the NOVA sets and preprocessed exactly as at inference (held-out rows skipped).
    """
    from vlm.preprocess import prepare
    from vlm.train.data import HELD_OUT_SPLITS
    from zebra_datasets import read_nova

    bundle.vlm.eval()
    embeddings, trunks = [], []
    size = bundle.vlm.config.image_size
    for root in roots:
        dataset = read_nova(root)
        rows = [r for r in dataset.records if str(r.meta.get("split") or "").lower() not in HELD_OUT_SPLITS]
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, min(per_set, len(rows))).round().astype(int)]
        for start in range(0, len(rows), 32):
            prepared = [prepare(dataset.load_image(r), size) for r in rows[start : start + 32]]
            feats = bundle.vlm.encode(
                normalize_batch(torch.from_numpy(np.stack([p.square for p in prepared])))
            )
            embeddings.append(torch.nn.functional.normalize(feats.embedding, dim=-1).numpy())
            trunks.append(feats.trunk.numpy())
    return np.concatenate(embeddings), np.concatenate(trunks)


def fit_gate(bundle: Bundle, roots: list[Path]) -> tuple[EmbeddingStats, EmbeddingStats]:
    """Gate statistics of the embedding (threshold 1.3 x p99.5) and of the trunk features (threshold 2.5 x
    p99.5; photo-like images: 0.85 x p99.5) from training images."""
    embeddings, trunks = training_features(bundle, roots)
    emb = EmbeddingStats.fit(embeddings, margin=1.3)
    trunk = EmbeddingStats.fit(trunks, margin=2.5)
    trunk.fit_photo_threshold(0.85)
    log.info(
        "gate: %d images; embedding threshold %.3f; trunk threshold %.3f, photo-like %.3f",
        len(embeddings), emb.threshold, trunk.threshold, trunk.photo_threshold,
    )  # fmt: skip
    return emb, trunk


#: Where the photo gate's negatives come from (recorded in the checkpoint JSON).
PHOTO_GATE_NOTE = (
    "logistic regression on trunk + embedding + image statistics; positives: up to 600 evenly spaced "
    "training images of each of tumour train and MedPix train; negatives: augmented grayscale crops of "
    "scikit-learn's china.jpg / flower.jpg and procedural synthetic images; threshold: 0.5th percentile of "
    "P(medical) on a held-out 20% of the positives (no valid / dev / scikit-image test image used)"
)


def _training_images(roots: list[Path], per_set: int) -> list[Any]:
    """At most ``per_set`` evenly spaced non-held-out images per NOVA set (as in :func:`training_features`)."""
    from vlm.train.data import HELD_OUT_SPLITS
    from zebra_datasets import read_nova

    images = []
    for root in roots:
        dataset = read_nova(root)
        rows = [r for r in dataset.records if str(r.meta.get("split") or "").lower() not in HELD_OUT_SPLITS]
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, min(per_set, len(rows))).round().astype(int)]
        images += [dataset.load_image(r) for r in rows]
    return images


def gate_photo_features(backend: Any, images: list[Any], *, batch_size: int = 32) -> np.ndarray:
    """``(n, D)`` photo-gate features of ``images``, computed exactly as the gate sees them at inference."""
    from vlm.gate import image_statistics

    rows = []
    for start in range(0, len(images), batch_size):
        for raw in backend.predict(images[start : start + batch_size], batch_size=batch_size):
            stats = image_statistics(raw.prepared.gray, raw.prepared.rgb)
            rows.append(photo_features(stats, raw.embedding, raw.trunk))
    return np.asarray(rows, np.float64)


def fit_photo_gate(
    checkpoint: Path,
    roots: list[Path],
    *,
    per_set: int = 600,
    n_photo: int = 1200,
    n_synthetic: int = 300,
    seed: int = 0,
) -> PhotoClassifier:
    """Fits the photo gate of ``checkpoint`` (see :data:`PHOTO_GATE_NOTE`); ``roots``: medical training sets."""
    from vlm.backends.builtin import BuiltinVLM, InferenceSettings
    from vlm.train.gate_negatives import negative_images

    # Features need no test-time augmentation of the box head.
    backend = BuiltinVLM(checkpoint, inference=InferenceSettings())
    positives = gate_photo_features(backend, _training_images(roots, per_set))
    negatives = gate_photo_features(
        backend, [im for _, im in negative_images(n_photo, n_synthetic, seed=seed)]
    )
    model = fit_photo_classifier(positives, negatives, seed=seed)
    model.info["data"] = PHOTO_GATE_NOTE
    log.info("photo gate: threshold %.4f, %s", model.threshold, model.info)
    return model


def refit_gate(checkpoint: Path, work: Path, *, seed: int = 0, **options: int) -> dict[str, Any]:
    """Refits only the photo gate (``gate_photo``) of an existing checkpoint and rewrites its JSON.

    Args:
        checkpoint: The ``.safetensors`` checkpoint (its JSON beside it is updated in place).
        work: The build's work folder holding ``nova-tumor-train`` and ``nova-medpix``.
        seed: Seed of the negatives and of the held-out split.
        **options: ``per_set``, ``n_photo``, ``n_synthetic`` of :func:`fit_photo_gate` (defaults: shipped).

    Returns:
        The new ``gate_photo`` block.
    """
    model = fit_photo_gate(
        checkpoint, [work / "nova-tumor-train", work / "nova-medpix"], seed=seed, **options
    )
    block = model.to_dict()
    write_json(sidecar(checkpoint), {**read_meta(checkpoint), "gate_photo": block})
    return block


def _stage_metrics(work: Path) -> dict[str, Any]:
    metrics = {}
    for folder in sorted(work.glob("stage-*")):
        lines = (
            (folder / "metrics.jsonl").read_text().splitlines()
            if (folder / "metrics.jsonl").is_file()
            else []
        )
        if lines:
            metrics[folder.name.removeprefix("stage-")] = {
                "epochs": len(lines),
                "last": json.loads(lines[-1]),
            }
    return metrics


def finalize(plan: Any, *, evaluate: bool = True) -> dict[str, Any]:
    """Writes ``zebra-vlm-v1.safetensors`` + ``.json``, ``zebra-med-encoder.safetensors`` and ``MODEL_CARD.md``.

    Args:
        plan: The :class:`vlm.train.build.BuildPlan`.
        evaluate: Run the evaluations (tumour valid, held-out pairs, MedPix dev retrieval) into the JSON/card.
    """
    from vlm.backends.builtin import BuiltinVLM
    from vlm.eval.gate_eval import evaluate_gate
    from vlm.eval.run import evaluate_detection, evaluate_pairs, evaluate_retrieval
    from vlm.eval.tune import choose_inference, head_maps

    work, out = plan.work, plan.out
    cache = work / "cache"
    bundle = Bundle.load(work / "stage-lit")
    stats, trunk_stats = fit_gate(
        bundle, [work / "nova-tumor-train", work / "nova-medpix", work / "syn-ano-bg", work / "syn-ano-brain"]
    )
    ckpt = out / f"{DEFAULT_NAME}.safetensors"
    encoder = encoder_path(out)
    meta: dict[str, Any] = {
        "name": DEFAULT_NAME,
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d"),
        "encoder": encoder.name,
        "encoder_arch": bundle.vlm.config.arch,
        "gate": stats.to_dict(),
        "gate_trunk": trunk_stats.to_dict(),
        "gate_fit_images": "up to 600 evenly spaced training images of each of: tumour train, MedPix train, "
        "synthetic (backgrounds), synthetic (brains)",
        "training": {
            "stages": _stage_metrics(work),
            "seed": plan.seed,
            "data": {
                "clip": "MedPix 2.0 train split (head images + captions)",
                "ano": "brain-tumour YOLO train split + synthetic lesions on MedPix-train / No_Tumor-train "
                "backgrounds (seed 1) and on synthetic brains (seed 2)",
                "diff": "synthetic longitudinal pairs (seeds 3, 4) with registration and intensity jitter",
                "explain": "same as ano (attribute labels from the synthetic generator)",
                "validation": "brain-tumour YOLO valid split (never trained on); held-out synthetic pairs "
                "(seeds 98, 99); MedPix dev split",
            },
        },
    }
    save_checkpoint(bundle.vlm, ckpt, meta)
    # From the file just written (not the live model) and verified through open_clip: the export cannot drift.
    export_open_clip(ckpt, bundle.text_state(), encoder)
    # Test-time settings of the box head, chosen on tumour *train* images (never on valid).
    settings, _ = choose_inference(head_maps(BuiltinVLM(ckpt), work / "nova-tumor-train", limit=600))
    meta["inference"] = {**settings.to_dict(), "chosen_on": TUNING_NOTE}
    write_json(sidecar(ckpt), {**read_meta(ckpt), "inference": meta["inference"]})
    refit_gate(ckpt, work, seed=plan.seed)
    if evaluate:
        backend = BuiltinVLM(ckpt)
        meta["metrics"] = {
            "tumour_valid": evaluate_detection(backend, work / "nova-tumor-valid", progress=plan.progress),
            "gate": evaluate_gate(backend, [work / "nova-tumor-valid", work / "nova-medpix-dev"]),
            "held_out_pairs": evaluate_pairs(
                backend, [work / "syn-pairs-val-bg", work / "syn-pairs-val-brain"], progress=plan.progress
            ),
            "medpix_dev_retrieval": evaluate_retrieval(ckpt, work / "nova-medpix-dev", cache_dir=cache),
        }
        write_json(sidecar(ckpt), {**read_meta(ckpt), "metrics": meta["metrics"]})
    from vlm.train.model_card import write_model_card

    write_model_card(out / "MODEL_CARD.md", read_meta(ckpt), ckpt, encoder)
    return {"checkpoint": str(ckpt), "encoder": str(encoder), "metrics": meta.get("metrics", {})}
