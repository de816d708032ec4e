from __future__ import annotations

import numpy as np
import pytest

from vlm.gate import EmbeddingStats, Gate, image_statistics
from vlm.preprocess import to_gray01


def _stats(image) -> dict[str, float]:
    gray, rgb = to_gray01(image)
    return image_statistics(gray, rgb)


def test_statistics_gate_rejects_noise_blank_and_colour_photos(brain_slice) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    gate = Gate()
    rng = np.random.default_rng(0)
    assert gate.check_statistics(_stats(rng.random((200, 220)))).kind == "noise"
    assert gate.check_statistics(_stats(rng.normal(500, 80, (128, 128)).astype(np.int16))).kind == "noise"
    assert gate.check_statistics(_stats(np.full((64, 64), 7, np.uint8))).kind == "blank"
    photo = gate.check_statistics(_stats(skimage_data.astronaut()))
    assert photo is not None and photo.kind == "natural_photo" and not photo.accepted
    assert gate.check_statistics(_stats(brain_slice)) is None


def test_embedding_ood_score() -> None:
    rng = np.random.default_rng(1)
    train = rng.normal(0, 1, (400, 16)) * np.linspace(2, 0.2, 16)
    stats = EmbeddingStats.fit(train, k=8)
    inside = stats.score(train[:50])
    outside = stats.score(rng.normal(0, 1, (50, 16)) * 3 + 4)
    assert np.median(inside) < 2 and (outside > stats.threshold).all()
    back = EmbeddingStats.from_dict(stats.to_dict())
    assert np.allclose(back.score(train[:5]), stats.score(train[:5]), rtol=1e-3)
    gate = Gate(stats)
    s = {
        "std": 0.2,
        "dynamic_range": 0.7,
        "saturation": 0.0,
        "lag1_correlation": 0.95,
        "spectral_flatness": 0.01,
    }
    assert gate.decide(s, train[:1]).accepted
    verdict = gate.decide(s, np.full((1, 16), 9.0))
    assert (
        not verdict.accepted
        and verdict.kind == "out_of_domain"
        and verdict.scores["ood_score"] > verdict.scores["ood_threshold"]
    )


def test_gated_images_are_never_described(tiny_checkpoint) -> None:
    from vlm.backends.builtin import BuiltinVLM

    backend = BuiltinVLM(tiny_checkpoint)
    noise = np.random.default_rng(2).integers(0, 255, (128, 128), dtype=np.uint8)
    result = backend.analyze_image(noise)
    assert not result.gate.accepted and result.gate.kind == "noise"
    assert (
        result.caption is None
        and result.boxes == []
        and result.heatmap is None
        and result.anomaly_score is None
    )


def test_photo_like_images_face_the_stricter_trunk_threshold() -> None:
    rng = np.random.default_rng(3)
    trunk = EmbeddingStats.fit(rng.normal(0, 1, (300, 12)), k=6, margin=2.5)
    trunk.fit_photo_threshold(0.85)
    assert trunk.photo_threshold < trunk.threshold
    gate = Gate(None, trunk)
    probe = np.full((1, 12), 1.6)
    value = float(trunk.score(probe)[0])
    assert trunk.photo_threshold < value < trunk.threshold  # between the two thresholds
    base = {
        "std": 0.2,
        "dynamic_range": 0.7,
        "saturation": 0.0,
        "lag1_correlation": 0.95,
        "spectral_flatness": 0.01,
    }
    photo = gate.decide({**base, "border_dark": 0.05, "dark_fraction": 0.02}, None, probe)
    assert not photo.accepted and photo.kind == "natural_photo"
    slice_like = gate.decide({**base, "border_dark": 0.9, "dark_fraction": 0.4}, None, probe)
    assert slice_like.accepted and slice_like.kind == "medical"


def test_gate_report_covers_medical_sets_and_non_medical_inputs(tiny_checkpoint, synthetic_nova) -> None:
    from vlm.backends.builtin import BuiltinVLM
    from vlm.eval.gate_eval import evaluate_gate

    report = evaluate_gate(BuiltinVLM(tiny_checkpoint), [synthetic_nova])
    medical = report[synthetic_nova.name]
    assert medical["what"] == "accepted" and medical["n"] > 0 and 0.0 <= medical["share"] <= 1.0
    # Image statistics alone (the tiny checkpoint has no feature statistics) reject every noise and blank input.
    assert report["noise"] == {"n": 25, "share": 1.0, "what": "rejected", "accepted_names": []}
    assert report["blank"]["share"] == 1.0
