"""Image and heatmap helpers of the ``hf:`` backend: input conversion, patch-grid heatmaps upsampled to the
input size, boxes from heatmap peaks (threshold + connected components) and the change heatmap."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vlm.preprocess import to_gray01
from vlm.types import Box


def to_pil_rgb(image: Any) -> Image.Image:
    """A PIL RGB image from a PIL image or a 2-D / HxWx3 array of any dtype.

    Arrays go through :func:`vlm.preprocess.to_gray01`, so 16-bit and float scans get the same percentile
    window as with the builtin backend; colour inputs keep their colour.

    Raises:
        ImageInputError: When ``image`` is not an image (see :func:`vlm.preprocess.to_gray01`).
    """
    if isinstance(image, Image.Image) and image.mode in ("RGB", "L"):
        return image.convert("RGB")
    gray, rgb = to_gray01(image)
    if rgb is not None:
        return Image.fromarray(np.ascontiguousarray(rgb)).convert("RGB")
    return Image.fromarray((gray * 255.0 + 0.5).astype(np.uint8)).convert("RGB")


def limit_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """Downscales ``image`` (keeping its aspect) so that it has at most ``max_pixels`` pixels."""
    w, h = image.size
    if not max_pixels or w * h <= max_pixels:
        return image
    scale = (max_pixels / (w * h)) ** 0.5
    return image.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BICUBIC)


def upsample(prob_grid: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a ``(rows, cols)`` probability grid to ``size = (height, width)``, float32 in [0, 1]."""
    x = prob_grid.detach().float().cpu()[None, None]
    up = F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0, 0]
    return up.clamp_(0.0, 1.0).numpy().astype(np.float32)


def boxes_from_grid(
    prob_grid: np.ndarray,
    image_size: tuple[int, int],
    *,
    threshold: float = 0.5,
    max_boxes: int = 5,
    label: str = "anomaly",
) -> list[Box]:
    """Boxes around 4-connected groups of patches whose probability reaches ``threshold``, best first.

    Components are found on the patch grid (the heatmap's true resolution) and scaled to image pixels; each
    box's score is its component's peak probability.

    Args:
        prob_grid: ``(rows, cols)`` per-patch probabilities.
        image_size: ``(height, width)`` of the analysed image.
        threshold: Minimum probability of a patch inside a box.
        max_boxes: Most boxes returned.
        label: Label of every box.
    """
    rows, cols = prob_grid.shape
    height, width = image_size
    hot = prob_grid >= threshold
    seen = np.zeros_like(hot)
    boxes: list[Box] = []
    for r0, c0 in zip(*np.nonzero(hot), strict=True):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        queue, cells = deque([(int(r0), int(c0))]), []
        while queue:
            r, c = queue.popleft()
            cells.append((r, c))
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < rows and 0 <= cc < cols and hot[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    queue.append((rr, cc))
        rs = [r for r, _ in cells]
        cs = [c for _, c in cells]
        boxes.append(
            Box(
                x1=min(cs) * width / cols,
                y1=min(rs) * height / rows,
                x2=(max(cs) + 1) * width / cols,
                y2=(max(rs) + 1) * height / rows,
                score=float(max(prob_grid[r, c] for r, c in cells)),
                label=label,
            )
        )
    boxes.sort(key=lambda b: b.score, reverse=True)
    return boxes[:max_boxes]


def resize_map(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes a float heatmap to ``size = (height, width)`` (bilinear)."""
    if heatmap.shape == size:
        return heatmap
    return upsample(torch.from_numpy(heatmap), size)


def change_heatmap(current: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Where the anomaly heatmap changed: ``|current - prior|`` over the current image, float32 in [0, 1]."""
    prior_resized = resize_map(prior, current.shape)
    return np.abs(current - prior_resized).clip(0.0, 1.0).astype(np.float32)


def area_fraction(heatmap: np.ndarray, threshold: float) -> float:
    """Fraction of the image whose heatmap value reaches ``threshold``."""
    return float((heatmap >= threshold).mean()) if heatmap.size else 0.0
