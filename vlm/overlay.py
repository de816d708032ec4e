"""PNG overlays: heatmap (colour-mapped, alpha by strength) and boxes over a grayscale image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vlm.boxes import Box
from vlm.preprocess import to_gray01

_BOX_COLOURS = ((0, 255, 0), (255, 255, 0), (0, 200, 255), (255, 128, 0), (255, 0, 255))


def colormap(values: np.ndarray) -> np.ndarray:
    """A jet-like map of ``values`` in [0, 1] to uint8 RGB."""
    v = np.clip(values, 0, 1)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def render_overlay(image: np.ndarray, heatmap: np.ndarray | None, boxes: list[Box], path: Path) -> Path:
    """Writes ``image`` with ``heatmap`` blended in and ``boxes`` drawn, as PNG at ``path``."""
    gray, rgb = to_gray01(image)
    base = rgb.astype(np.float32) if rgb is not None else np.repeat((gray * 255)[:, :, None], 3, axis=2)
    if heatmap is not None:
        heat = np.asarray(heatmap, np.float32)
        if heat.shape != gray.shape:
            heat = np.asarray(
                Image.fromarray(heat, mode="F").resize(
                    (gray.shape[1], gray.shape[0]), Image.Resampling.BILINEAR
                )
            )
        # Only the confident part is tinted, so a faint background does not wash out the image.
        alpha = (0.6 * np.clip((heat - 0.15) / 0.85, 0, 1))[:, :, None]
        base = base * (1 - alpha) + colormap(heat).astype(np.float32) * alpha
    canvas = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(max(gray.shape) / 256))
    for i, box in enumerate(boxes):
        colour = _BOX_COLOURS[i % len(_BOX_COLOURS)]
        draw.rectangle([box.x1, box.y1, box.x2, box.y2], outline=colour, width=width)
        draw.text((box.x1 + 2, max(0.0, box.y1 - 11)), f"{box.score:.2f}", fill=colour)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path
