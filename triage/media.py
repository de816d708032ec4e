"""Small PNG thumbnails and heatmap overlays for the HTML worklist (deterministic bytes, base64 in JSON)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

#: Longest side of thumbnails and overlays, in pixels.
THUMB_SIZE = 112


def _to_rgb(image: np.ndarray) -> Image.Image:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        arr = np.clip((np.nan_to_num(arr, nan=lo) - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return Image.fromarray(arr[..., :3].copy(), mode="RGB")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _fit(img: Image.Image, size: int) -> Image.Image:
    img = img.copy()
    img.thumbnail((size, size), Image.Resampling.BILINEAR)
    return img


def thumbnail_png(image: np.ndarray, size: int = THUMB_SIZE) -> bytes:
    """The image shrunk to ``size`` pixels on its longest side, as PNG bytes (grayscale when it is gray)."""
    img = _fit(_to_rgb(image), size)
    arr = np.asarray(img)
    if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        img = img.convert("L")
    return _png(img)


def overlay_png(image: np.ndarray, heatmap: np.ndarray, size: int = THUMB_SIZE, alpha: float = 0.45) -> bytes:
    """The heatmap (values in [0, 1]) blended in red-yellow over the image, shrunk like the thumbnail."""
    base = _fit(_to_rgb(image), size)
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    heat_img = Image.fromarray((heat * 255).astype(np.uint8), mode="L").resize(
        base.size, Image.Resampling.BILINEAR
    )
    h = np.asarray(heat_img, dtype=np.float32)[..., None] / 255.0
    colour = np.concatenate([np.ones_like(h), h, np.zeros_like(h)], axis=-1) * 255.0
    rgb = np.asarray(base, dtype=np.float32)
    mixed = rgb * (1 - alpha * h) + colour * (alpha * h)
    # A 64-colour palette keeps the overlay small enough to inline hundreds of them in one HTML file.
    return _png(Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8), mode="RGB").quantize(64))


def shrink_png(data: bytes, size: int = THUMB_SIZE) -> bytes:
    """A PNG (e.g. the agent's overlay file) re-encoded at thumbnail size."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return _png(_fit(img.convert("RGB"), size))


def b64(data: bytes | None) -> str | None:
    """Base64 text of ``data`` (``None`` stays ``None``)."""
    return None if data is None else base64.b64encode(data).decode("ascii")
