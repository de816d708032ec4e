"""From head outputs to boxes and heatmaps (model-input pixels; map back with :class:`Letterbox`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from vlm.model.network import STRIDE


def decode_boxes(
    center: torch.Tensor,
    box_size: torch.Tensor,
    offset: torch.Tensor,
    *,
    top_k: int = 20,
    min_score: float = 0.02,
    iou: float = 0.5,
    stride: int = STRIDE,
) -> list[np.ndarray]:
    """CenterNet decoding: 3x3 peak picking on the centre map, size and offset read at the peaks, NMS.

    Args:
        center: ``(B, 1, H, W)`` centre-ness logits.
        box_size: ``(B, 2, H, W)`` log width/height in stride units.
        offset: ``(B, 2, H, W)`` sub-cell centre offsets (x, y) in stride units.
        top_k: Peaks kept per image before NMS.
        min_score: Peaks below this score are dropped.
        iou: NMS overlap threshold.
        stride: Pixels per cell.

    Returns:
        Per image a ``(n, 5)`` float array ``x1, y1, x2, y2, score`` in model pixels, best first.
    """
    heat = torch.sigmoid(center.float())
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    b, _, h, w = heat.shape
    scores, idx = peaks.flatten(1).topk(min(top_k, h * w), dim=1)
    out = []
    for i in range(b):
        keep = scores[i] >= min_score
        s, k = scores[i][keep], idx[i][keep]
        ys, xs = (k // w), (k % w)
        off = offset[i, :, ys, xs].float()
        wh = box_size[i, :, ys, xs].float().clamp(-3.0, 6.0).exp() * stride
        cx = (xs.float() + 0.5 + off[0].clamp(-1, 1)) * stride
        cy = (ys.float() + 0.5 + off[1].clamp(-1, 1)) * stride
        boxes = torch.stack([cx - wh[0] / 2, cy - wh[1] / 2, cx + wh[0] / 2, cy + wh[1] / 2], dim=1)
        if len(s):
            order = nms(boxes, s, iou)
            boxes, s = boxes[order], s[order]
        out.append(torch.cat([boxes, s[:, None]], dim=1).cpu().numpy().astype(np.float64))
    return out


def upsample_heat(logits: torch.Tensor, size: int) -> np.ndarray:
    """``(B, 1, h, w)`` logits -> ``(B, size, size)`` float32 probabilities in [0, 1]."""
    heat = torch.sigmoid(
        F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False)
    )
    return heat[:, 0].clamp(0, 1).cpu().numpy().astype(np.float32)


def fuse_flipped(maps: dict[str, torch.Tensor], flipped: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Horizontal-flip test-time augmentation: the box-head maps of an image and of its mirror image, fused.

    ``flipped`` holds the outputs for ``x.flip(-1)``; they are mirrored back and averaged with ``maps``:
    centre logits and log sizes as they are, the x offset with its sign changed (a centre ``d`` cells right
    of a cell's middle in the mirror image is ``d`` cells left of it in the original). The anomaly logit is
    averaged too (it does not depend on the side).

    Returns:
        ``center``, ``box_size``, ``offset`` and ``anomaly`` (only the keys present in both).
    """
    out: dict[str, torch.Tensor] = {}
    if "center" in maps and "center" in flipped:
        out["center"] = (maps["center"] + flipped["center"].flip(-1)) / 2
    if "box_size" in maps and "box_size" in flipped:
        out["box_size"] = (maps["box_size"] + flipped["box_size"].flip(-1)) / 2
    if "offset" in maps and "offset" in flipped:
        mirrored = flipped["offset"].flip(-1) * torch.tensor([-1.0, 1.0], dtype=maps["offset"].dtype).view(
            1, 2, 1, 1
        )
        out["offset"] = (maps["offset"] + mirrored) / 2
    if "anomaly" in maps and "anomaly" in flipped:
        out["anomaly"] = (maps["anomaly"] + flipped["anomaly"]) / 2
    return out
