"""The learnt photo gate: logistic regression, threshold, JSON round trip, Gate wiring, negatives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlm.gate import Gate
from vlm.gate_photo import STAT_KEYS, PhotoClassifier, fit_photo_classifier, photo_features


def _two_blobs(n: int = 300, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos = rng.normal(0, 1, (n, d)) + np.r_[2.0, np.zeros(d - 1)]
    neg = rng.normal(0, 1, (n, d)) - np.r_[2.0, np.zeros(d - 1)]
    return pos, neg


def test_logistic_regression_separates_and_finds_the_informative_feature() -> None:
    pos, neg = _two_blobs()
    model = PhotoClassifier.fit(np.vstack([pos, neg]), np.r_[np.ones(len(pos)), np.zeros(len(neg))], l2=1.0)
    assert int(np.argmax(np.abs(model.weights))) == 0 and model.weights[0] > 0
    acc = (np.mean(model.probability(pos) > 0.5) + np.mean(model.probability(neg) < 0.5)) / 2
    assert acc > 0.95
    # A stronger penalty shrinks the weights.
    strong = PhotoClassifier.fit(np.vstack([pos, neg]), np.r_[np.ones(len(pos)), np.zeros(len(neg))], l2=1e4)
    assert np.abs(strong.weights).sum() < np.abs(model.weights).sum()


def test_fit_rejects_single_class_labels() -> None:
    with pytest.raises(ValueError):
        PhotoClassifier.fit(np.zeros((4, 2)), np.ones(4))


def test_threshold_accepts_the_requested_share_of_held_out_positives() -> None:
    pos, neg = _two_blobs(n=400, seed=1)
    model = fit_photo_classifier(pos, neg, seed=0, accept=0.99, l2=1.0)
    assert model.info["held_out"] == {"positives": 80, "negatives": 80}
    assert model.info["held_out_accepted"] >= 0.99
    assert model.info["held_out_negatives_rejected"] > 0.8
    assert float(np.mean(~model.rejects(pos))) >= 0.95
    # JSON round trip (what the checkpoint stores) keeps the decisions.
    back = PhotoClassifier.from_dict(json.loads(json.dumps(model.to_dict())))
    assert back.threshold == model.threshold
    assert np.array_equal(back.rejects(neg), model.rejects(neg))


def test_gate_uses_the_photo_classifier_after_the_rules() -> None:
    rng = np.random.default_rng(3)
    emb_dim, trunk_dim = 4, 6
    stats = {k: 0.5 for k in STAT_KEYS} | {
        "std": 0.2,
        "dynamic_range": 0.7,
        "saturation": 0.0,
        "lag1_correlation": 0.95,
        "spectral_flatness": 0.01,
    }
    # Medical = trunk features around +1, photos around -1.
    pos = np.array(
        [photo_features(stats, rng.normal(0, 1, emb_dim), rng.normal(1, 0.3, trunk_dim)) for _ in range(60)]
    )
    neg = np.array(
        [photo_features(stats, rng.normal(0, 1, emb_dim), rng.normal(-1, 0.3, trunk_dim)) for _ in range(60)]
    )
    model = fit_photo_classifier(pos, neg, seed=0, l2=1.0)
    gate = Gate(photo=model)
    medical = gate.decide(stats, rng.normal(0, 1, emb_dim), np.full(trunk_dim, 1.0))
    photo = gate.decide(stats, rng.normal(0, 1, emb_dim), np.full(trunk_dim, -1.0))
    assert medical.accepted and medical.scores["photo_gate_probability"] >= model.threshold
    assert not photo.accepted and photo.kind == "natural_photo"
    # The rules still come first: noise is noise, whatever the classifier says.
    noisy = gate.decide(stats | {"lag1_correlation": 0.1}, None, np.full(trunk_dim, 1.0))
    assert noisy.kind == "noise"


def test_negatives_are_grayscale_varied_and_reproducible() -> None:
    pytest.importorskip("sklearn.datasets")
    from vlm.train.gate_negatives import augment_photo, negative_images, synthetic_image

    first = list(negative_images(6, 2, seed=5))
    again = list(negative_images(6, 2, seed=5))
    assert [s for s, _ in first] == ["photo"] * 6 + ["synthetic"] * 2
    assert all(a.dtype == np.uint8 and a.ndim == 2 for _, a in first)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, again, strict=True))
    assert len({a.shape for _, a in first}) > 3
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    rng = np.random.default_rng(1)
    assert all(augment_photo(rgb, rng).ndim == 2 for _ in range(20))
    assert synthetic_image(np.random.default_rng(2)).std() > 0


def test_refit_gate_writes_a_photo_gate_the_backend_uses(tiny_checkpoint, synthetic_nova, tmp_path) -> None:
    pytest.importorskip("sklearn.datasets")
    import shutil

    from vlm.backends.builtin import BuiltinVLM
    from vlm.checkpoint import read_meta, sidecar
    from vlm.train.finalize import refit_gate

    ckpt = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_checkpoint, ckpt)
    shutil.copy(sidecar(tiny_checkpoint), sidecar(ckpt))
    work = tmp_path / "work"
    work.mkdir()
    for name in ("nova-tumor-train", "nova-medpix"):
        (work / name).symlink_to(synthetic_nova, target_is_directory=True)
    before = read_meta(ckpt)
    block = refit_gate(ckpt, work, per_set=6, n_photo=10, n_synthetic=4)
    meta = read_meta(ckpt)
    assert meta["gate_photo"] == json.loads(json.dumps(block))
    assert {k: v for k, v in meta.items() if k != "gate_photo"} == before
    assert block["info"]["fit"]["negatives"] == 11 and len(block["weights"]) == len(block["mean"])
    backend = BuiltinVLM(ckpt)
    assert backend.gate.photo is not None and backend.gate.photo.threshold == block["threshold"]
    image = np.asarray(np.random.default_rng(0).integers(0, 255, (64, 64)), np.uint8)
    raw = backend.predict([image])[0]
    verdict = backend.gate.decide(
        {k: 0.5 for k in STAT_KEYS}
        | {
            "std": 0.2,
            "dynamic_range": 0.7,
            "saturation": 0.0,
            "lag1_correlation": 0.9,
            "spectral_flatness": 0.01,
        },
        raw.embedding,
        raw.trunk,
    )
    assert "photo_gate_probability" in verdict.scores
