"""Heatmap overlays written as PNG files, referenced from answers (the arrays never enter the state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """An RGB uint8 overlay: the image in gray, the heatmap in red where it is high.

    Args:
        image: 2-D grayscale or HxWx3 array, any dtype.
        heatmap: HxW values in [0, 1] (resized to the image by nearest neighbour when sizes differ).
        alpha: Largest opacity of the red layer.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=2)
    lo, hi = float(img.min()), float(img.max())
    gray = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    if heat.shape != gray.shape:
        rows = (np.arange(gray.shape[0]) * heat.shape[0] // gray.shape[0]).clip(0, heat.shape[0] - 1)
        cols = (np.arange(gray.shape[1]) * heat.shape[1] // gray.shape[1]).clip(0, heat.shape[1] - 1)
        heat = heat[rows][:, cols]
    rgb = np.repeat(gray[..., None], 3, axis=2)
    a = alpha * heat[..., None]
    red = np.zeros_like(rgb)
    red[..., 0] = 1.0
    return (255 * ((1 - a) * rgb + a * red)).round().clip(0, 255).astype(np.uint8)


def save_overlay(image: np.ndarray, heatmap: np.ndarray, path: str | Path) -> Path:
    """Writes :func:`overlay` as a PNG; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, heatmap)).save(path)
    return path
