"""Negative examples for the photo gate: augmented natural photographs and procedural synthetic images.

The photographs are scikit-learn's two bundled sample images (``china.jpg``, ``flower.jpg``), which are
no evaluation input: the scikit-image samples used by :mod:`vlm.eval.gate_eval` stay a test set. Every
negative is grayscale (colour pictures are already rejected by the saturation rule), so the classifier has
to learn what a photograph looks like, not that it is coloured.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vlm.train.errors import TrainingDataError

log = logging.getLogger(__name__)


def sample_photos() -> list[np.ndarray]:
    """scikit-learn's bundled sample photographs as ``(H, W, 3)`` uint8 arrays.

    Raises:
        TrainingDataError: When scikit-learn (a dependency of sentence-transformers) is missing.
    """
    try:
        from sklearn.datasets import load_sample_images
    except ImportError as exc:
        raise TrainingDataError(
            "The photo gate's negatives need scikit-learn's sample images, but scikit-learn is missing.",
            hint="Install the project's dependencies (pip install -e '.[dev]') or `pip install scikit-learn`.",
        ) from exc

    return [np.asarray(img, np.uint8) for img in load_sample_images().images]


def _to_gray(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grayscale with random channel weights (around luma, sometimes one channel only)."""
    if rng.random() < 0.15:
        w = np.eye(3)[rng.integers(3)]
    else:
        w = np.array([0.299, 0.587, 0.114]) + rng.normal(0, 0.12, 3)
        w = np.clip(w, 0.02, None)
        w /= w.sum()
    return np.clip(rgb.astype(np.float64) @ w, 0, 255)


def _crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    area = rng.uniform(0.04, 1.0) * h * w
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    ch = int(np.clip(round(np.sqrt(area / aspect)), 24, h))
    cw = int(np.clip(round(np.sqrt(area * aspect)), 24, w))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return img[y : y + ch, x : x + cw]


def augment_photo(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random grayscale variant of a colour photograph as uint8 ``(H, W)``.

    Random crop (4-100% of the area, aspect 1:2 to 2:1), flips and rotations, grayscale with random channel
    weights, gamma and contrast, blur, JPEG-like quantisation, resizing, and sometimes a dark frame
    (letterbox / padding) so a photo on black is covered too.
    """
    gray = _to_gray(_crop(rgb, rng), rng)
    if rng.random() < 0.5:
        gray = gray[:, ::-1]
    gray = np.rot90(gray, int(rng.integers(4)))
    img = Image.fromarray(gray.astype(np.float32), mode="F")
    if rng.random() < 0.3:
        img = img.rotate(float(rng.uniform(-30, 30)), resample=Image.Resampling.BILINEAR, expand=True)
    side = int(rng.integers(96, 640))
    scale = side / max(img.size)
    img = img.resize((max(16, round(img.size[0] * scale)), max(16, round(img.size[1] * scale))))
    x = np.asarray(img, np.float64) / 255.0
    x = np.clip(x, 0, 1) ** np.exp(rng.uniform(-0.7, 0.7))
    lo, hi = np.percentile(x, [rng.uniform(0, 5), rng.uniform(95, 100)])
    if rng.random() < 0.5 and hi - lo > 0.05:
        x = np.clip((x - lo) / (hi - lo), 0, 1)
    out = Image.fromarray((x * 255).astype(np.uint8))
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))
    if rng.random() < 0.3:
        import io

        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=int(rng.integers(10, 60)))
        buf.seek(0)
        with Image.open(buf) as decoded:
            out = decoded.convert("L")
    arr = np.asarray(out, np.uint8)
    if rng.random() < 0.35:
        arr = _dark_frame(arr, rng)
    return arr


def _dark_frame(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pads with a near-black frame (letterbox, or the photo in the middle of a dark canvas)."""
    h, w = arr.shape
    if rng.random() < 0.5:  # letterbox to a square
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        canvas = np.full((side, side), int(rng.integers(0, 12)), np.uint8)
    else:
        pad = [int(rng.uniform(0.1, 0.5) * s) for s in (h, w)]
        canvas = np.full((h + 2 * pad[0], w + 2 * pad[1]), int(rng.integers(0, 12)), np.uint8)
        top, left = pad
    canvas[top : top + h, left : left + w] = arr
    return canvas


def synthetic_image(rng: np.random.Generator) -> np.ndarray:
    """A procedural non-medical grayscale image (uint8): gradients, geometric shapes, text-like strokes."""
    side = int(rng.integers(128, 512))
    h, w = side, int(side * np.exp(rng.uniform(-0.4, 0.4)))
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    base = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(0, 1) + rng.uniform(0, 0.6)
    img = Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 25))):
        kind = rng.integers(4)
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(5, w // 2 + 6)), y0 + int(rng.integers(5, h // 2 + 6))
        fill = int(rng.integers(0, 256))
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind == 2:
            draw.line((x0, y0, x1, y1), fill=fill, width=int(rng.integers(1, 8)))
        else:  # a line of "text": short strokes on a baseline
            size = int(rng.integers(4, 20))
            for k in range(int(rng.integers(3, 30))):
                cx = x0 + k * size
                draw.line((cx, y0, cx + size // 2, y0 + size), fill=fill, width=max(1, size // 5))
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3))))
    return np.asarray(img, np.uint8)


def negative_images(n_photo: int, n_synthetic: int, *, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """Yields ``(source, image)``: ``n_photo`` augmented sample photographs, then ``n_synthetic`` synthetic."""
    rng = np.random.default_rng(seed)
    photos = sample_photos()
    for i in range(n_photo):
        yield "photo", augment_photo(photos[i % len(photos)], rng)
    for _ in range(n_synthetic):
        yield "synthetic", synthetic_image(rng)
