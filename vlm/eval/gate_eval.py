"""How the input gate does: acceptance on medical sets, rejection of noise, blank images and photographs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from vlm.gate import image_statistics

log = logging.getLogger(__name__)

#: scikit-image sample pictures used as natural photos (when scikit-image is installed).
SKIMAGE_PHOTOS = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text", "horse", "brick",
    "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "retina", "cat", "clock", "logo",
    "colorwheel", "cell",
)  # fmt: skip


def non_medical_inputs(
    seed: int = 0, *, repeats: int = 5, photos: tuple[str, ...] = SKIMAGE_PHOTOS
) -> dict[str, tuple[str, np.ndarray]]:
    """Name -> (category, image): ``noise`` (uniform, Gaussian, salt-and-pepper, colour, float; ``repeats``
    of each), ``blank``, ``photo`` (scikit-image samples as shipped) and ``photo_gray`` (the colour ones in
    grayscale)."""
    rng = np.random.default_rng(seed)
    cases: dict[str, tuple[str, np.ndarray]] = {}
    for i in range(repeats):
        side = 256 + 64 * i
        cases[f"noise_uniform_{i}"] = ("noise", rng.integers(0, 256, (side, side), dtype=np.uint8))
        gauss = np.clip(128 + 40 * rng.standard_normal((320, 320)), 0, 255).astype(np.uint8)
        cases[f"noise_gauss_{i}"] = ("noise", gauss)
        cases[f"noise_rgb_{i}"] = ("noise", rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
        cases[f"noise_saltpepper_{i}"] = ("noise", (rng.random((256, 256)) > 0.5).astype(np.uint8) * 255)
        cases[f"noise_float_{i}"] = ("noise", rng.standard_normal((300, 300)).astype(np.float32))
    for value in (0, 1, 128, 255):
        cases[f"blank_{value}"] = ("blank", np.full((256, 256), value, np.uint8))
    cases["blank_rgb"] = ("blank", np.full((256, 256, 3), 200, np.uint8))
    try:
        import skimage.data as samples
    except ImportError:
        log.warning("scikit-image is not installed: the gate is not checked on natural photos")
        return cases
    luma = np.array([0.299, 0.587, 0.114])
    for name in photos:
        try:
            image = np.asarray(getattr(samples, name)())
        except Exception as exc:  # a sample that needs a download
            log.info("skimage sample %s unavailable: %s", name, exc)
            continue
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.ndim == 3:
            image = image[:, :, :3]
            cases[f"photo_{name}_gray"] = ("photo_gray", (image.astype(np.float64) @ luma).astype(np.uint8))
        cases[f"photo_{name}"] = ("photo", image)
    return cases


def evaluate_gate(backend: Any, roots: list[Path], *, batch_size: int = 16) -> dict[str, Any]:
    """Share of medical images accepted per NOVA set and of non-medical inputs rejected per category.

    Returns:
        ``{set_name: {"n", "share", "what": "accepted", "rejected_files"}, category: {"n", "share",
        "what": "rejected", "accepted_names"}}``.
    """
    from zebra_datasets import read_nova

    report: dict[str, Any] = {}
    for root in roots:
        dataset = read_nova(root)
        rows = [r for r in dataset.records if r.meta.get("label_status") != "unlabelled"]
        rejected = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            raws = backend.predict([np.asarray(dataset.load_image(r)) for r in chunk], batch_size=batch_size)
            for row, raw in zip(chunk, raws, strict=True):
                stats = image_statistics(raw.prepared.gray, raw.prepared.rgb)
                verdict = backend.gate.decide(stats, raw.embedding, raw.trunk)
                if not verdict.accepted:
                    rejected.append(f"{row.filename} ({verdict.kind})")
        report[Path(root).name] = {
            "n": len(rows),
            "share": 1 - len(rejected) / max(1, len(rows)),
            "what": "accepted",
            "rejected_files": rejected,
        }
    by_category: dict[str, list[tuple[str, bool]]] = {}
    for name, (category, image) in non_medical_inputs().items():
        by_category.setdefault(category, []).append((name, backend.analyze_image(image).gate.accepted))
    for category, verdicts in by_category.items():
        report[category] = {
            "n": len(verdicts),
            "share": sum(not ok for _, ok in verdicts) / len(verdicts),
            "what": "rejected",
            "accepted_names": [name for name, ok in verdicts if ok],
        }
    return report
