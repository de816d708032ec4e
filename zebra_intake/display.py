"""Pixel value transforms shared by the readers: windows, LUTs, percentile windows, colour to gray."""

from __future__ import annotations

import numpy as np

#: Percentiles of the robust window used when a source carries none.
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.0
#: At most this many pixels are looked at to estimate percentiles (a strided sample beyond that).
_PERCENTILE_SAMPLE = 1 << 20

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def window_to_uint8(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Applies a DICOM VOI window (PS3.3 C.11.2.1.2) and returns ``uint8`` in [0, 255].

    Args:
        values: Modality values (after rescale).
        center: Window Center.
        width: Window Width (>= 1 for LINEAR, > 0 otherwise).
        function: VOI LUT Function: ``LINEAR``, ``LINEAR_EXACT`` or ``SIGMOID``.
    """
    x = values.astype(np.float64, copy=False)
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        y = 255.0 / (1.0 + np.exp(np.clip(-4.0 * (x - center) / width, -700, 700)))
    elif function == "LINEAR_EXACT":
        y = ((x - center) / width + 0.5) * 255.0
    else:
        if width <= 1.0:
            y = np.where(x <= center - 0.5, 0.0, 255.0)
        else:
            y = ((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
            y = np.where(x <= center - 0.5 - (width - 1.0) / 2.0, 0.0, y)
            y = np.where(x > center - 0.5 + (width - 1.0) / 2.0, 255.0, y)
    return np.rint(np.clip(y, 0.0, 255.0)).astype(np.uint8)


def valid_window(center: float | None, width: float | None, function: str = "LINEAR") -> bool:
    """Whether a window read from a header can be used."""
    if center is None or width is None:
        return False
    if not (np.isfinite(center) and np.isfinite(width)):
        return False
    return width >= 1.0 if (function or "LINEAR").upper() == "LINEAR" else width > 0.0


def percentile_window(values: np.ndarray) -> tuple[float, float]:
    """A robust (center, width) from the 1st and 99th percentiles of the finite values."""
    flat = values.reshape(-1)
    if flat.size > _PERCENTILE_SAMPLE:
        flat = flat[:: flat.size // _PERCENTILE_SAMPLE + 1]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(flat, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
    if hi <= lo:
        return float(lo), 1.0
    # A LINEAR window of this (center, width) maps lo to 0 and hi to 255.
    width = float(hi - lo) + 1.0
    center = float(lo) + 0.5 + (width - 1.0) / 2.0
    return center, width


def lut_to_uint8(values: np.ndarray, descriptor: list[int], table: np.ndarray) -> np.ndarray:
    """Applies a VOI LUT (descriptor: entries, first mapped value, bits per entry) and scales to uint8."""
    entries = int(descriptor[0]) or 65536
    first = int(descriptor[1])
    bits = int(descriptor[2])
    lut = np.asarray(table, dtype=np.float64).reshape(-1)[:entries]
    if lut.size == 0:
        raise ValueError("empty LUT")
    index = np.clip(np.rint(values.astype(np.float64)) - first, 0, lut.size - 1).astype(np.int64)
    top = max(float(2**bits - 1) if 1 <= bits <= 16 else 0.0, float(lut.max()), 1.0)
    return np.rint(np.clip(lut[index] / top * 255.0, 0, 255)).astype(np.uint8)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an (rows, columns, 3) array, as float32."""
    channels = rgb[..., :3].astype(np.float32)
    luma = channels[..., 0] * np.float32(_LUMA[0])
    luma += channels[..., 1] * np.float32(_LUMA[1])
    luma += channels[..., 2] * np.float32(_LUMA[2])
    return luma


def ybr_full_to_rgb(ybr: np.ndarray) -> np.ndarray:
    """8-bit YBR_FULL (JPEG YCbCr, PS3.3 C.7.6.3.1.2) to RGB ``uint8``, using Pillow's C conversion."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(ybr, dtype=np.uint8), mode="YCbCr").convert("RGB"))


def luma_uint8(rgb: np.ndarray) -> np.ndarray:
    """Rounded BT.601 luma of an 8-bit RGB array (Pillow's ``convert("L")``, the same coefficients)."""
    from PIL import Image

    return np.asarray(
        Image.fromarray(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8), mode="RGB").convert("L")
    )


def scale_to_uint8(values: np.ndarray, max_value: float) -> np.ndarray:
    """Linearly maps [0, max_value] to [0, 255] (for colour samples wider than 8 bits)."""
    if max_value <= 0:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = values.astype(np.float64) * (255.0 / max_value)
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


def finite_or_zero(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Replaces NaN and infinities by 0; returns the array and whether anything was replaced."""
    mask = ~np.isfinite(values)
    if mask.any():
        values = values.copy()
        values[mask] = 0
        return values, True
    return values, False
