"""CenterNet-style training targets: centre heatmaps, sizes and offsets at stride 8."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vlm.model.network import STRIDE


@dataclass
class BoxTargets:
    """Targets of one batch.

    Attributes:
        heat: ``(B, 1, H, W)`` Gaussian centre maps in [0, 1], exactly 1 at the centres.
        index: ``(B, K)`` flat cell index of each object (0 where unused).
        size: ``(B, K, 2)`` log width/height in stride units.
        offset: ``(B, K, 2)`` centre offset inside the cell (x, y), in cells, in [-0.5, 0.5).
        mask: ``(B, K)`` 1 for real objects.
    """

    heat: torch.Tensor
    index: torch.Tensor
    size: torch.Tensor
    offset: torch.Tensor
    mask: torch.Tensor


def box_targets(
    boxes: list[np.ndarray], image_size: int, max_objects: int, stride: int = STRIDE
) -> BoxTargets:
    """Builds :class:`BoxTargets` from per-image model-pixel boxes (largest first when over ``max_objects``)."""
    b = len(boxes)
    g = image_size // stride
    heat = np.zeros((b, 1, g, g), np.float32)
    index = np.zeros((b, max_objects), np.int64)
    size = np.zeros((b, max_objects, 2), np.float32)
    offset = np.zeros((b, max_objects, 2), np.float32)
    mask = np.zeros((b, max_objects), np.float32)
    yy, xx = np.mgrid[0:g, 0:g].astype(np.float32)
    for i, bx in enumerate(boxes):
        if len(bx) == 0:
            continue
        areas = (bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])
        for k, j in enumerate(np.argsort(-areas)[:max_objects]):
            x1, y1, x2, y2 = (float(v) / stride for v in bx[j])
            w, h = max(x2 - x1, 0.25), max(y2 - y1, 0.25)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            ix, iy = min(max(int(cx), 0), g - 1), min(max(int(cy), 0), g - 1)
            sx, sy = max(0.5, w / 6), max(0.5, h / 6)
            blob = np.exp(-((xx - ix) ** 2) / (2 * sx * sx) - ((yy - iy) ** 2) / (2 * sy * sy))
            heat[i, 0] = np.maximum(heat[i, 0], blob)
            heat[i, 0, iy, ix] = 1.0
            index[i, k] = iy * g + ix
            size[i, k] = (np.log(w), np.log(h))
            offset[i, k] = (cx - ix - 0.5, cy - iy - 0.5)
            mask[i, k] = 1.0
    return BoxTargets(*(torch.from_numpy(a) for a in (heat, index, size, offset, mask)))
