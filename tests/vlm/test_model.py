from __future__ import annotations

import numpy as np
import torch

from vlm.model.decode import decode_boxes
from vlm.preprocess import letterbox, normalize_batch, prepare


def test_forward_shapes(tiny_model, tiny_config) -> None:
    x = normalize_batch(torch.rand(3, 64, 64))
    with torch.no_grad():
        out = tiny_model(x)
    assert out["center"].shape == (3, 1, 8, 8)
    assert out["box_size"].shape == (3, 2, 8, 8) and out["offset"].shape == (3, 2, 8, 8)
    assert out["tokens"].shape == (3, tiny_config.n_ano_tokens, tiny_config.dim)
    assert out["anomaly"].shape == (3,)
    assert out["embedding"].shape == (3, 32)
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(3), atol=1e-5)
    assert set(out["attributes"]) == set(tiny_config.attributes)
    for key, logits in out["attributes"].items():
        assert logits.shape == (3, len(tiny_config.attributes[key]))
    feats = out["features"]
    with torch.no_grad():
        change = tiny_model.change(feats, feats, out, out)
    assert change["change"].shape == (3, 3) and change["diff_heat"].shape == (3, 1, 8, 8)


def test_letterbox_maps_boxes_back() -> None:
    gray = np.zeros((100, 200), np.float32)
    square, box = letterbox(gray, 64)
    assert square.shape == (64, 64) and box.pad_y == 16 and box.pad_x == 0
    original = np.array([[20.0, 10.0, 120.0, 90.0]])
    assert np.allclose(box.to_input(box.to_model(original)), original)
    heat = np.ones((64, 64), np.float32)
    assert box.unpad(heat).shape == (100, 200)


def test_decode_boxes_from_a_peak() -> None:
    center = torch.full((1, 1, 8, 8), -10.0)
    center[0, 0, 3, 5] = 5.0
    size = torch.zeros(1, 2, 8, 8)
    size[0, :, 3, 5] = torch.log(torch.tensor([2.0, 3.0]))  # 16 x 24 px at stride 8
    boxes = decode_boxes(center, size, torch.zeros(1, 2, 8, 8))[0]
    assert len(boxes) == 1
    x1, y1, x2, y2, score = boxes[0]
    assert np.allclose([x1, y1, x2, y2], [44 - 8, 28 - 12, 44 + 8, 28 + 12]) and score > 0.99


def test_backend_outputs_fit_the_input(tiny_checkpoint, nonsquare_slice) -> None:
    from vlm.backends.builtin import BuiltinVLM

    backend = BuiltinVLM(tiny_checkpoint)
    image = nonsquare_slice
    raw = backend.predict([image])[0]
    h, w = image.shape
    assert raw.heatmap.shape == (h, w) and raw.heatmap.dtype == np.float32
    assert raw.heatmap.min() >= 0.0 and raw.heatmap.max() <= 1.0
    assert len(raw.boxes) > 0  # an untrained model still proposes low-score peaks
    assert (raw.boxes[:, 0] >= 0).all() and (raw.boxes[:, 2] <= w).all()
    assert (raw.boxes[:, 1] >= 0).all() and (raw.boxes[:, 3] <= h).all()
    analysis = backend.analyze_image(image)
    assert analysis.gate.accepted, analysis.gate
    assert analysis.heatmap.shape == (h, w) and 0 <= analysis.anomaly_score <= 1
    assert analysis.caption and analysis.model.startswith("builtin:tiny@")
    assert prepare(image, 64).square.shape == (64, 64)
