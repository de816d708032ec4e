"""Small, deterministic numpy image operations for the synthetic generator (no scipy needed).

Coordinates are ``(row, col)`` = ``(y, x)`` in pixels; images are float32 arrays.
"""

from __future__ import annotations

import math

import numpy as np


def _fast_len(n: int) -> int:
    """Smallest 2-3-5-smooth integer >= ``n`` (FFT sizes that pocketfft handles fast)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _fft_blur(array: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian blur of ``array`` (float64) in the Fourier domain."""
    h, w = array.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    transfer = np.exp(-2.0 * (math.pi**2) * (sigma**2) * (fy**2 + fx**2))
    return np.fft.irfft2(np.fft.rfft2(array) * transfer, s=(h, w))


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur through the FFT, with reflected borders (no wrap-around)."""
    if sigma <= 0:
        return image.astype(np.float32, copy=True)
    h, w = image.shape
    pad = min(math.ceil(3 * sigma), min(h, w) - 1)
    ph, pw = _fast_len(h + 2 * pad), _fast_len(w + 2 * pad)
    padded = np.pad(image.astype(np.float64), ((pad, ph - h - pad), (pad, pw - w - pad)), mode="reflect")
    return _fft_blur(padded, sigma)[pad : pad + h, pad : pad + w].astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance smooth random field (white noise blurred periodically: noise has no edges)."""
    ph, pw = _fast_len(shape[0]), _fast_len(shape[1])
    field = _fft_blur(rng.standard_normal((ph, pw)), sigma)[: shape[0], : shape[1]].astype(np.float32)
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinate arrays of an image of ``shape``."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return yy, xx


def sample(image: np.ndarray, src_y: np.ndarray, src_x: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Bilinear sampling of ``image`` at ``(src_y, src_x)``; outside the image gives ``fill``."""
    h, w = image.shape
    y0 = np.floor(src_y).astype(np.int64)
    x0 = np.floor(src_x).astype(np.int64)
    wy = (src_y - y0).astype(np.float32)
    wx = (src_x - x0).astype(np.float32)
    padded = np.pad(image.astype(np.float32), 1, constant_values=fill)
    # Shift by one for the padding; clip so that far-away samples read the fill border.
    y0p = np.clip(y0 + 1, 0, h + 1)
    x0p = np.clip(x0 + 1, 0, w + 1)
    y1p = np.clip(y0 + 2, 0, h + 1)
    x1p = np.clip(x0 + 2, 0, w + 1)
    top = padded[y0p, x0p] * (1 - wx) + padded[y0p, x1p] * wx
    bottom = padded[y1p, x0p] * (1 - wx) + padded[y1p, x1p] * wx
    out = top * (1 - wy) + bottom * wy
    outside = (src_y < -1) | (src_y > h) | (src_x < -1) | (src_x > w)
    out[outside] = fill
    return out.astype(np.float32)


def rigid_map(
    shape: tuple[int, int], *, angle_deg: float = 0.0, shift: tuple[float, float] = (0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates of a rotation about the centre followed by a shift ``(dy, dx)``."""
    yy, xx = grid(shape)
    cy, cx = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    theta = math.radians(angle_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    # Inverse mapping: output -> input.
    dy, dx = yy - cy - shift[0], xx - cx - shift[1]
    src_y = cy + cos * dy - sin * dx
    src_x = cx + sin * dy + cos * dx
    return src_y.astype(np.float32), src_x.astype(np.float32)


def elastic_offsets(
    rng: np.random.Generator, shape: tuple[int, int], *, amplitude: float, smoothness: float
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random displacement field whose largest displacement is ``amplitude`` pixels."""
    dy = smooth_noise(rng, shape, smoothness)
    dx = smooth_noise(rng, shape, smoothness)
    peak = float(max(np.abs(dy).max(), np.abs(dx).max(), 1e-6))
    return dy * (amplitude / peak), dx * (amplitude / peak)


def push_map(
    shape: tuple[int, int], center: tuple[float, float], radius: float, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates that push tissue away from ``center`` (mass effect).

    Each output pixel reads from a point pulled towards the centre by a factor that fades with distance
    (Gaussian of width ``1.6 * radius``), so surrounding structures appear displaced outwards.
    """
    yy, xx = grid(shape)
    dy, dx = yy - center[0], xx - center[1]
    d2 = dy * dy + dx * dx
    factor = 1.0 - strength * np.exp(-d2 / (2.0 * (1.6 * radius) ** 2))
    return (center[0] + dy * factor).astype(np.float32), (center[1] + dx * factor).astype(np.float32)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 (at ``edge0``) to 1 (at ``edge1``); ``edge0 > edge1`` gives a falling step."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def ellipse_radius(
    yy: np.ndarray,
    xx: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    angle_rad: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised elliptical radius (1 on the boundary) and polar angle of each pixel.

    Args:
        yy: Row coordinates.
        xx: Column coordinates.
        center: ``(row, col)`` centre.
        axes: Semi-axes ``(along rows, along columns)`` before rotation.
        angle_rad: Rotation of the ellipse.
    """
    dy, dx = yy - center[0], xx - center[1]
    cos, sin = math.cos(angle_rad), math.sin(angle_rad)
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    r = np.sqrt((v / axes[0]) ** 2 + (u / axes[1]) ** 2)
    return r.astype(np.float32), np.arctan2(v, u).astype(np.float32)
