"""PNG and JPEG pictures via Pillow, with Zebra's own size limits checked before decoding.

Text chunks, EXIF and comments are never read into the result (they may hold identifiers).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from zebra.config import IntakeSettings
from zebra.errors import LimitExceededError, UnsupportedFormatError
from zebra_intake import display as dsp
from zebra_intake.deid import pseudo_uid
from zebra_intake.failures import RASTER_ERRORS, quiet_decoders, translated
from zebra_intake.guard import Budget, check_image_geometry, read_bounded
from zebra_intake.types import MedicalImage, Series, Study

_FORMATS = {"PNG", "JPEG", "MPO"}
#: Pillow plugins allowed to open the file (the JPEG plugin also yields multi-picture "MPO" files).
_OPENERS = ["PNG", "JPEG"]


def _to_arrays(
    image: Image.Image,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[float, float] | None]:
    """(pixels float32, display uint8, rgb uint8 | None, window | None) for a decoded picture."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("1", "L", "LA"):
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return gray.astype(np.float32), gray.copy(), None, None
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float32)
        values, _ = dsp.finite_or_zero(values)
        window = dsp.percentile_window(values)
        return values, dsp.window_to_uint8(values, *window), None, window
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        gray = rgb[..., 0].copy()
        return gray.astype(np.float32), gray, None, None
    luma = dsp.luminance(rgb)
    return luma, np.rint(np.clip(luma, 0, 255)).astype(np.uint8), rgb.copy(), None


def load_raster(path: Path, settings: IntakeSettings, budget: Budget, salt: bytes, notes: list[int]) -> Study:
    """Reads a PNG or JPEG into a single-image :class:`Study`.

    Raises:
        LimitExceededError: When the declared size is over the limits (checked before decoding).
        CorruptFileError: For damaged or truncated files.
        UnsupportedFormatError: For other formats Pillow might recognise.
    """
    name = path.name
    data = read_bounded(path, settings.max_file_bytes)
    budget.add_file(name, len(data))
    warnings_out: list[str] = []
    with quiet_decoders(notes), translated(name, "reading the picture", RASTER_ERRORS):
        with warnings.catch_warnings():
            # Zebra's own limits are checked just below; Pillow's hard limit still raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                probe = Image.open(io.BytesIO(data), formats=_OPENERS)
            except Image.DecompressionBombError as exc:
                raise LimitExceededError(
                    f"{name} declares more pixels than Pillow's safety limit.",
                    hint="Downscale the picture before loading it.",
                ) from exc
        if probe.format not in _FORMATS:
            raise UnsupportedFormatError(f"{name} is a {probe.format} picture.", hint="Use PNG or JPEG.")
        width, height = probe.size
        check_image_geometry(name, settings, rows=height, columns=width)
        budget.add_pixels(name, width * height)
        frames = getattr(probe, "n_frames", 1)
        if frames > 1:
            warnings_out.append(f"{name}: {frames} frames; only the first was read.")
        probe.verify()  # checks chunk CRCs without decoding pixels
        image = Image.open(io.BytesIO(data), formats=_OPENERS)
        image.load()  # a truncated file raises here (LOAD_TRUNCATED_IMAGES stays False)
        image = ImageOps.exif_transpose(image) or image
        pixels, shown, rgb, window = _to_arrays(image)
    if pixels.ndim != 2:
        raise UnsupportedFormatError(f"{name} did not decode to a 2-D image.", hint="Use PNG or JPEG.")
    digest = hashlib.sha256(data).hexdigest()
    picture = MedicalImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        display=np.ascontiguousarray(shown, dtype=np.uint8),
        rgb=rgb,
        window=window,
        meta={
            "modality": "",
            "rows": int(pixels.shape[0]),
            "columns": int(pixels.shape[1]),
            "format": probe.format,
            "mode": image.mode,
            "window_source": "percentile" if window is not None else None,
        },
        source_name=name,
    )
    return Study(
        study_uid=pseudo_uid(f"raster:{digest}", salt),
        patient_pseudo_id=None,
        modality="",
        body_part="",
        description="",
        source_kind="raster",
        series=[Series(series_uid=pseudo_uid(f"raster-series:{digest}", salt), images=[picture])],
        deid=None,
        warnings=warnings_out,
    )
