"""Test-time settings of the box head: flip fusion, decoding options and their choice on training images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vlm.model.decode import decode_boxes, fuse_flipped


def _maps(cell_x: int, off_x: float, width: int = 8) -> dict[str, torch.Tensor]:
    center = torch.full((1, 1, width, width), -8.0)
    center[0, 0, 3, cell_x] = 4.0
    size = torch.zeros(1, 2, width, width)
    size[0, :, 3, cell_x] = torch.log(torch.tensor([2.0, 3.0]))
    offset = torch.zeros(1, 2, width, width)
    offset[0, :, 3, cell_x] = torch.tensor([off_x, -0.2])
    return {"center": center, "box_size": size, "offset": offset, "anomaly": torch.tensor([1.5])}


def test_flip_fusion_maps_the_mirror_image_back() -> None:
    original = _maps(5, 0.3)
    mirrored = _maps(8 - 1 - 5, -0.3)  # the same object seen in the mirror image
    fused = fuse_flipped(original, mirrored)
    expected = decode_boxes(original["center"], original["box_size"], original["offset"])[0]
    got = decode_boxes(fused["center"], fused["box_size"], fused["offset"])[0]
    assert np.allclose(got, expected)
    assert float(fused["anomaly"][0]) == pytest.approx(1.5)
    # Without the sign change of the x offset the fused centre would move.
    wrong = fuse_flipped(original, _maps(2, 0.3))
    moved = decode_boxes(wrong["center"], wrong["box_size"], wrong["offset"])[0]
    assert not np.allclose(moved[0, :4], expected[0, :4])


def test_settings_come_from_the_checkpoint_json(tiny_model, tmp_path, nonsquare_slice) -> None:
    from vlm.backends.builtin import BuiltinVLM, InferenceSettings
    from vlm.checkpoint import save_checkpoint

    ckpt = tmp_path / "tta.safetensors"
    save_checkpoint(
        tiny_model, ckpt, {"name": "tta", "inference": {"flip_tta": True, "size_scale": 1.1, "x": 1}}
    )
    backend = BuiltinVLM(ckpt)
    assert backend.inference == InferenceSettings(flip_tta=True, size_scale=1.1)
    plain = BuiltinVLM(ckpt, inference=InferenceSettings())
    raw_tta, raw_plain = backend.predict([nonsquare_slice])[0], plain.predict([nonsquare_slice])[0]
    assert raw_tta.heatmap.shape == raw_plain.heatmap.shape == nonsquare_slice.shape
    assert not np.allclose(raw_tta.heatmap, raw_plain.heatmap)  # the mirror pass changes the maps
    assert np.allclose(raw_tta.embedding, raw_plain.embedding, atol=1e-5)  # but not the embedding
    study = backend.analyze(nonsquare_slice, prior=nonsquare_slice)
    assert study.change is not None and study.change.label in ("worsening", "stable", "improved")


def test_choice_corrects_systematically_small_boxes() -> None:
    from vlm.eval.tune import HeadMaps, choose_inference
    from vlm.preprocess import Letterbox

    rng = np.random.default_rng(0)
    n, g = 12, 8
    maps = {
        "center": torch.full((n, 1, g, g), -8.0),
        "box_size": torch.zeros(n, 2, g, g),
        "offset": torch.zeros(n, 2, g, g),
    }
    golds = []
    for i in range(n):
        y, x = rng.integers(1, g - 1, 2)
        w, h = rng.uniform(1.0, 2.5, 2)
        maps["center"][i, 0, y, x] = 3.0
        maps["box_size"][i, :, y, x] = torch.tensor([math.log(w), math.log(h)])
        cx, cy = (x + 0.5) * 8, (y + 0.5) * 8
        # Gold boxes are 12% larger than what the head predicts.
        golds.append(np.array([[cx - 4.48 * w, cy - 4.48 * h, cx + 4.48 * w, cy + 4.48 * h]]))
    mirrored = {k: v.flip(-1) for k, v in maps.items()}
    mirrored["offset"] = mirrored["offset"] * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    boxes = [Letterbox(1.0, 0, 0, 64, 64, 64) for _ in range(n)]
    best, table = choose_inference(HeadMaps(maps, mirrored, golds, boxes))
    assert best.size_scale == pytest.approx(1.12)
    assert not best.flip_tta  # the mirror maps add nothing here: the plainer setting wins the tie
    assert len(table) == 2 * 2 * 7 and max(r["map50"] for r in table) == pytest.approx(1.0)


def test_settings_are_chosen_from_a_nova_set(tiny_checkpoint, synthetic_nova) -> None:
    from vlm.backends.builtin import BuiltinVLM, InferenceSettings
    from vlm.eval.tune import choose_inference, head_maps

    head = head_maps(BuiltinVLM(tiny_checkpoint), synthetic_nova, limit=6)
    assert head.maps["center"].shape == head.mirrored["center"].shape == (6, 1, 8, 8)
    assert len(head.golds) == 6 and any(len(g) for g in head.golds)
    best, table = choose_inference(head, {"flip_tta": (False, True), "size_scale": (1.0, 1.1)})
    assert isinstance(best, InferenceSettings) and len(table) == 4
    assert all(0.0 <= row["map50"] <= 1.0 for row in table)
