"""Brain-like axial slices (or real background images) on which synthetic lesions are drawn."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from zebra.errors import DatasetError
from zebra_datasets.synth.image_ops import ellipse_radius, gaussian_blur, grid, smooth_noise

#: Synthetic "sequences" and how they are described in captions.
SEQUENCE_NAMES: dict[str, str] = {
    "T1c": "T1-weighted post-contrast-like",
    "T2": "T2-weighted-like",
    "FLAIR": "FLAIR-like",
    "background": "real background image",
}

# Tissue intensities in [0, 1] per sequence: scalp, skull, csf, grey matter, white matter.
_TISSUE: dict[str, dict[str, float]] = {
    "T1c": {"scalp": 0.72, "skull": 0.06, "csf": 0.10, "gm": 0.42, "wm": 0.56},
    "T2": {"scalp": 0.50, "skull": 0.04, "csf": 0.90, "gm": 0.52, "wm": 0.36},
    "FLAIR": {"scalp": 0.55, "skull": 0.04, "csf": 0.07, "gm": 0.50, "wm": 0.36},
}
# Lesion intensities per sequence: enhancing/bright, necrosis/dark, fluid, edema, calcification.
_LESION: dict[str, dict[str, float]] = {
    "T1c": {"bright": 0.92, "dark": 0.20, "fluid": 0.12, "edema": 0.36, "calc": 0.03},
    "T2": {"bright": 0.82, "dark": 0.14, "fluid": 0.92, "edema": 0.74, "calc": 0.02},
    "FLAIR": {"bright": 0.80, "dark": 0.16, "fluid": 0.09, "edema": 0.72, "calc": 0.03},
}


@dataclass
class Anatomy:
    """A noise-free slice plus the masks lesions are placed with.

    Attributes:
        image: Float32 image in [0, 1].
        brain: Where lesions may sit (parenchyma, not ventricles).
        intracranial: Inside the inner table of the skull.
        center: ``(row, col)`` of the head.
        axes: Semi-axes ``(rows, cols)`` of the intracranial ellipse, pixels.
        angle: Rotation of the head ellipse, radians.
        sequence: ``T1c``, ``T2``, ``FLAIR`` or ``background``.
        palette: Lesion intensities (``bright``, ``dark``, ``fluid``, ``edema``, ``calc``).
        background: File name of the real background image, if any.
    """

    image: np.ndarray
    brain: np.ndarray
    intracranial: np.ndarray
    center: tuple[float, float]
    axes: tuple[float, float]
    angle: float
    sequence: str
    palette: dict[str, float] = field(default_factory=dict)
    background: str | None = None


def make_brain(rng: np.random.Generator, size: int, sequence: str) -> Anatomy:
    """Draws a brain-like axial slice: scalp, skull, CSF, cortex with sulci, white matter, deep grey
    nuclei, lateral and third ventricles, a smooth texture. Noise is added later, per scan."""
    tissue = _TISSUE[sequence]
    shape = (size, size)
    yy, xx = grid(shape)
    center = (size / 2 + rng.uniform(-0.03, 0.03) * size, size / 2 + rng.uniform(-0.03, 0.03) * size)
    head_axes = (size * rng.uniform(0.41, 0.45), size * rng.uniform(0.33, 0.37))
    angle = float(rng.uniform(-0.08, 0.08))
    r, _ = ellipse_radius(yy, xx, center, head_axes, angle)
    r = r * (1.0 + 0.006 * smooth_noise(rng, shape, size / 12))

    image = np.zeros(shape, np.float32)
    image[r <= 1.0] = tissue["scalp"]
    image[r <= 0.93] = tissue["skull"]
    image[r <= 0.875] = tissue["csf"]
    brain_edge = 0.85
    inside = r <= brain_edge

    # Cortex: a grey band of varying depth over white matter; sulci where a smooth field crosses zero.
    depth = 0.13 + 0.05 * smooth_noise(rng, shape, size / 30)
    grey = inside & (r > brain_edge - depth)
    image[inside] = tissue["wm"]
    image[grey] = tissue["gm"]
    sulci_field = smooth_noise(rng, shape, size / 28)
    sulci = inside & (r > 0.55) & (np.abs(sulci_field) < 0.09)
    image[sulci] = tissue["csf"]

    # Rotated frame of the head: u across (left-right), v along (anterior-posterior).
    cos, sin = math.cos(angle), math.sin(angle)
    dy, dx = yy - center[0], xx - center[1]
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    ay, ax = head_axes[0] * brain_edge, head_axes[1] * brain_edge
    fissure = inside & (np.abs(u) < max(1.0, size / 256)) & (np.abs(v) > 0.45 * ay)
    image[fissure] = tissue["csf"]

    def local(cu: float, cv: float) -> tuple[float, float]:
        return center[0] + sin * cu + cos * cv, center[1] + cos * cu - sin * cv

    # Deep grey nuclei lateral to the ventricles.
    nuclei = np.zeros(shape, bool)
    for side in (-1, 1):
        rr, _ = ellipse_radius(yy, xx, local(side * 0.24 * ax, 0.02 * ay), (0.13 * ay, 0.07 * ax), angle)
        nuclei |= rr <= 1.0
    image[nuclei & inside] = 0.5 * (tissue["gm"] + tissue["wm"]) + 0.3 * (tissue["gm"] - tissue["wm"])

    # Ventricles: two divergent lateral ventricles and a slit-like third ventricle.
    scale = float(rng.uniform(0.8, 1.35))
    ventricles = np.zeros(shape, bool)
    for side in (-1, 1):
        rr, _ = ellipse_radius(
            yy,
            xx,
            local(side * 0.1 * ax, -0.08 * ay),
            (0.26 * ay * scale, 0.055 * ax * scale),
            angle - side * 0.28,
        )
        ventricles |= rr <= 1.0
    rr, _ = ellipse_radius(yy, xx, local(0.0, 0.12 * ay), (0.07 * ay, 0.012 * ax + 0.6), angle)
    ventricles |= rr <= 1.0
    image[ventricles & inside] = tissue["csf"]

    texture = 1.0 + 0.035 * smooth_noise(rng, shape, size / 70)
    image = np.where(inside, image * texture, image)
    image = gaussian_blur(image, 0.6 * size / 256)
    brain = inside & ~ventricles & (gaussian_blur(ventricles.astype(np.float32), 2.0) < 0.05)
    brain &= r <= brain_edge - 0.03
    return Anatomy(
        image=np.clip(image, 0.0, 1.0),
        brain=brain,
        intracranial=r <= 0.875,
        center=center,
        axes=(head_axes[0] * 0.875, head_axes[1] * 0.875),
        angle=angle,
        sequence=sequence,
        palette=dict(_LESION[sequence]),
    )


def from_background(path: Path, size: int) -> Anatomy:
    """Uses a real image as background: greyscale, centre-cropped, resized; brain mask from a threshold.

    Raises:
        DatasetError: When the file cannot be decoded.
    """
    try:
        with Image.open(path) as img:
            grey = img.convert("L")
    except (OSError, Image.DecompressionBombError) as exc:
        raise DatasetError(
            f"Background image {path} cannot be read: {exc}.", hint="Remove or replace it."
        ) from exc
    w, h = grey.size
    side = min(w, h)
    grey = grey.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    image = np.asarray(grey.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
    shape = image.shape
    threshold = _otsu(image)
    foreground = gaussian_blur((image > threshold).astype(np.float32), size / 64) > 0.5
    interior = gaussian_blur(foreground.astype(np.float32), size / 20) > 0.9
    yy, xx = grid(shape)
    if interior.sum() < 0.05 * size * size:
        # Nothing head-like found: fall back to a central ellipse.
        r, _ = ellipse_radius(yy, xx, (size / 2, size / 2), (0.38 * size, 0.32 * size))
        foreground, interior = r <= 1.0, r <= 0.85
    cy, cx = float(yy[interior].mean()), float(xx[interior].mean())
    ay, ax = 2.0 * float(yy[interior].std()), 2.0 * float(xx[interior].std())
    values = image[interior]
    p1, p50, p99 = (float(np.percentile(values, q)) for q in (1, 50, 99))
    palette = {
        "bright": min(1.0, p99 + 0.1),
        "dark": max(0.0, p1 - 0.02),
        "fluid": max(0.0, 0.5 * p1),
        "edema": min(1.0, 0.5 * (p50 + p99) + 0.05),
        "calc": 0.02,
    }
    return Anatomy(
        image=image,
        brain=interior,
        intracranial=foreground,
        center=(cy, cx),
        axes=(max(ay, 8.0), max(ax, 8.0)),
        angle=0.0,
        sequence="background",
        palette=palette,
        background=path.name,
    )


def _otsu(image: np.ndarray) -> float:
    hist, edges = np.histogram(image, bins=128, range=(0.0, 1.0))
    centers = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist).astype(np.float64)
    total = weight[-1]
    mean = np.cumsum(hist * centers)
    between = (mean[-1] * weight - mean * total) ** 2 / np.maximum(weight * (total - weight), 1e-12)
    return float(centers[int(np.argmax(between))])
