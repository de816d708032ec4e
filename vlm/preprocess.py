"""Turning any image into the model's input: grayscale, letterboxed to a square, CLIP-normalised.

Letterboxing (resize the longer side, pad the shorter with black) keeps geometry, so boxes and heatmaps
map back to input pixels exactly with :meth:`Letterbox.to_input` / :meth:`Letterbox.unpad`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vlm.model.config import CLIP_MEAN, CLIP_STD
from zebra.errors import ZebraError


class ImageInputError(ZebraError):
    """The value passed as an image is not an image the VLM can read."""


@dataclass
class Letterbox:
    """Where the input image sits inside the square model input.

    Attributes:
        scale: Model pixels per input pixel.
        pad_x: Left padding in model pixels. pad_y: Top padding in model pixels.
        height: Input image rows. width: Input image columns.
        size: Model input side.
    """

    scale: float
    pad_x: int
    pad_y: int
    height: int
    width: int
    size: int

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        """Maps ``(n, 4)`` model-pixel boxes to input-image pixels, clipped to the image."""
        out = np.asarray(xyxy, dtype=np.float64).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out

    def to_model(self, xyxy: np.ndarray) -> np.ndarray:
        """Maps ``(n, 4)`` input-image boxes to model pixels."""
        out = np.asarray(xyxy, dtype=np.float64).copy().reshape(-1, 4)
        out[:, [0, 2]] = out[:, [0, 2]] * self.scale + self.pad_x
        out[:, [1, 3]] = out[:, [1, 3]] * self.scale + self.pad_y
        return out

    def unpad(self, square: np.ndarray) -> np.ndarray:
        """A ``size x size`` float map cropped to the image area and resized to the input size."""
        inner_h = max(1, round(self.height * self.scale))
        inner_w = max(1, round(self.width * self.scale))
        crop = np.ascontiguousarray(
            square[self.pad_y : self.pad_y + inner_h, self.pad_x : self.pad_x + inner_w]
        )
        img = Image.fromarray(crop.astype(np.float32), mode="F")
        return np.asarray(img.resize((self.width, self.height), Image.Resampling.BILINEAR), dtype=np.float32)


@dataclass
class Prepared:
    """One image ready for the model, plus what the gate and the overlays need.

    Attributes:
        gray: Input-size float32 grayscale in [0, 1].
        rgb: Input-size uint8 colour image when the input was colour, else ``None``.
        square: ``size x size`` float32 letterboxed grayscale in [0, 1].
        box: The letterbox geometry.
    """

    gray: np.ndarray
    rgb: np.ndarray | None
    square: np.ndarray
    box: Letterbox


def to_gray01(image: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Grayscale float32 in [0, 1] and the uint8 RGB original (when colour) of an array or PIL image.

    Non-8-bit arrays (CT in Hounsfield units, 16-bit MR) are windowed between their 0.5th and 99.5th
    percentiles.

    Raises:
        ImageInputError: For anything that is not a 2-D or HxWx{1,3,4} image.
    """
    if isinstance(image, Image.Image):
        if image.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA"):
            image = np.asarray(image.convert("RGB"))
        else:
            image = np.asarray(image.convert("F") if image.mode in ("I", "I;16", "F") else image.convert("L"))
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or min(arr.shape[:2]) < 8:
        raise ImageInputError(
            f"Expected a 2-D or HxWx3 image of at least 8x8 pixels, got an array of shape {arr.shape}.",
            hint="Pass a grayscale slice, an RGB image or a PIL image.",
        )
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    if arr.ndim == 3:
        arr = arr[:, :, :3]
        if arr.dtype == np.uint8:
            return (arr.astype(np.float32) @ luma) / 255.0, arr
        scaled = _window(arr.astype(np.float32))
        return (scaled @ luma).astype(np.float32), (scaled * 255).astype(np.uint8)
    rgb = None
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) / 255.0), rgb
    if arr.dtype == bool:
        return arr.astype(np.float32), rgb
    return _window(arr.astype(np.float32)), rgb


def _window(arr: np.ndarray) -> np.ndarray:
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return np.zeros(arr.shape[:2] if arr.ndim == 2 else arr.shape, np.float32)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.float32)
    return np.clip((np.nan_to_num(arr, nan=lo) - lo) / (hi - lo), 0, 1).astype(np.float32)


def letterbox(gray: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resizes the longer side of ``gray`` (float in [0, 1]) to ``size`` and pads to a square with zeros."""
    h, w = gray.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = Image.fromarray(gray.astype(np.float32), mode="F")
    # Downscaling with a box filter first avoids aliasing from large (512-1024 px) slices.
    resized = np.asarray(
        img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0 if scale < 0.5 else None),
        dtype=np.float32,
    )
    square = np.zeros((size, size), np.float32)
    py, px = (size - nh) // 2, (size - nw) // 2
    square[py : py + nh, px : px + nw] = resized
    return np.clip(square, 0, 1), Letterbox(scale, px, py, h, w, size)


def prepare(image: Any, size: int) -> Prepared:
    """Grayscale + letterbox of any supported image."""
    gray, rgb = to_gray01(image)
    square, box = letterbox(gray, size)
    return Prepared(gray=gray, rgb=rgb, square=square, box=box)


def normalize_batch(squares: Any) -> Any:
    """``(B, S, S)`` float tensor in [0, 1] -> ``(B, 3, S, S)`` CLIP-normalised (grayscale replicated)."""
    import torch

    x = squares.unsqueeze(1).expand(-1, 3, -1, -1)
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def to_model_input(image: Any, size: int = 256) -> Any:
    """The VLM's whole preprocessing of one image as a ``(3, size, size)`` float tensor.

    A drop-in for open_clip's ``preprocess`` transform: with it, the exported encoder
    (``zebra-med-encoder.safetensors``) gives exactly :attr:`vlm.types.ImageAnalysis.embedding`
    (open_clip's own transform centre-crops instead of letterboxing and works on RGB).
    """
    import torch

    return normalize_batch(torch.from_numpy(prepare(image, size).square)[None])[0]
