"""Rigid (translation) alignment of a prior image to the current one by phase correlation."""

from __future__ import annotations

import numpy as np


def phase_correlation(
    reference: np.ndarray, moving: np.ndarray, *, max_shift: float = 0.25
) -> tuple[int, int]:
    """The integer ``(dy, dx)`` that, applied to ``moving`` with :func:`shift`, best aligns it to ``reference``.

    Both are same-shape 2-D float arrays. A Hann window suppresses border effects; shifts larger than
    ``max_shift`` of the side are rejected (returns ``(0, 0)``) because they are almost always wrong.
    """
    if reference.shape != moving.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {moving.shape}")
    h, w = reference.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    a = np.fft.rfft2((reference - reference.mean()) * window)
    b = np.fft.rfft2((moving - moving.mean()) * window)
    cross = a * np.conj(b)
    cross /= np.abs(cross) + 1e-9
    corr = np.fft.irfft2(cross, s=(h, w))
    dy, dx = np.unravel_index(int(np.argmax(corr)), corr.shape)
    dy = dy - h if dy > h // 2 else dy
    dx = dx - w if dx > w // 2 else dx
    if abs(dy) > max_shift * h or abs(dx) > max_shift * w:
        return 0, 0
    return int(dy), int(dx)


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` moved by ``(dy, dx)`` pixels, zero-filled (no wrap-around)."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = image[ys, xs]
    return out


def align_to(reference: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """``moving`` translated onto ``reference`` and the shift used."""
    dy, dx = phase_correlation(reference, moving)
    return shift(moving, dy, dx), (dy, dx)
