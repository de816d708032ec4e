"""Reading a query image given as a PIL image, an array or a file path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from retrieval.errors import ImageInputError


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    data = array.astype(np.float32)
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(data, nan=lo) - lo) / (hi - lo) * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray) -> Any:
    from PIL import Image

    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # channels first
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageInputError(
            f"A query image array must be (H, W) or (H, W, 3|4), got shape {array.shape}.",
            hint="Pass a 2-D slice or an RGB image.",
        )
    return Image.fromarray(_to_uint8(array)).convert("RGB")


def _from_dicom(path: Path) -> Any:
    try:
        import pydicom

        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array
    except Exception as exc:
        raise ImageInputError(
            f"Could not read the DICOM image {path}: {exc}.",
            hint="Check the file, or export the slice you want as PNG.",
        ) from exc
    if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
        pixels = pixels[pixels.shape[0] // 2]  # middle frame of a multi-frame series
    return _from_array(pixels)


def load_query_image(image: Any) -> Any:
    """Returns an RGB ``PIL.Image`` for a query image.

    Args:
        image: A ``PIL.Image.Image``, a numpy array (``(H, W)``, ``(H, W, 3|4)`` or channels first), or a
            path to a PNG/JPEG/TIFF/BMP file or a DICOM file (``.dcm``; the middle frame of a multi-frame one).

    Raises:
        ImageInputError: When the input cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, str | Path):
        path = Path(image).expanduser()
        if not path.is_file():
            raise ImageInputError(f"Query image {path} does not exist.", hint="Check the path.")
        if path.suffix.lower() in (".dcm", ".dicom"):
            return _from_dicom(path)
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            if path.suffix == "":
                return _from_dicom(path)
            raise ImageInputError(
                f"Could not read {path} as an image: {exc}.", hint="Use a PNG, JPEG, TIFF or DICOM file."
            ) from exc
    raise ImageInputError(
        f"Unsupported query image type {type(image).__name__}.",
        hint="Pass a PIL image, a numpy array or a file path.",
    )
