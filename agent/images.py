"""Image inputs of the agent: file paths (read through the hardened intake), numpy arrays or PIL images."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import AgentInputError

log = logging.getLogger(__name__)


def _pick(n: int, most: int) -> list[int]:
    """``most`` indices spread evenly over ``range(n)`` (the middle one when ``most == 1``)."""
    if n <= most:
        return list(range(n))
    if most == 1:
        return [n // 2]
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def load_inputs(
    items: Sequence[Any], *, max_images: int = 4, role: str = "image"
) -> list[tuple[str, np.ndarray]]:
    """Turns image inputs into ``(name, uint8 array)`` pairs.

    Items: file paths, numpy arrays, PIL images, or ``(name, any of those)`` pairs.

    A path is read with :func:`zebra_intake.load_study` (DICOM, NIfTI, PNG/JPEG, folders, zips; de-identified);
    a study with more images than ``max_images`` contributes evenly spaced ones. Arrays and PIL images pass
    through (as arrays).

    Raises:
        AgentInputError: For an object that is not an image.
        IntakeError subclasses: For unreadable or unsafe files.
    """
    out: list[tuple[str, np.ndarray]] = []
    for n, item in enumerate(items, start=1):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            # (name, image): the caller names the image (e.g. the data set's file name)
            named = load_inputs([item[1]], max_images=max_images, role=role)
            out += [
                (item[0] if len(named) == 1 else f"{item[0]}#{i}", arr) for i, (_, arr) in enumerate(named)
            ]
        elif isinstance(item, str | Path):
            from zebra_intake import load_study

            path = Path(item).expanduser()
            study = load_study(path)
            images = study.images
            for idx in _pick(len(images), max_images):
                img = images[idx]
                arr = img.rgb if img.rgb is not None else img.display
                name = img.source_name or path.name
                if len(images) > 1:
                    name = f"{name}#{idx}"
                out.append((name, np.asarray(arr)))
        elif isinstance(item, np.ndarray):
            if item.ndim not in (2, 3) or item.size == 0:
                raise AgentInputError(
                    f"{role} {n} is an array of shape {item.shape}, not an image.",
                    hint="Pass a 2-D grayscale or HxWx3 array, a PIL image or a file path.",
                )
            out.append((f"{role}{n}", item))
        elif hasattr(item, "convert") and hasattr(item, "size"):
            mode = "L" if getattr(item, "mode", "") in ("L", "I", "I;16", "F") else "RGB"
            filename = getattr(item, "filename", "") or ""
            out.append((Path(filename).name if filename else f"{role}{n}", np.asarray(item.convert(mode))))
        else:
            raise AgentInputError(
                f"{role} {n} of type {type(item).__name__} is not an image.",
                hint="Pass file paths, numpy arrays or PIL images.",
            )
    if len(out) > max_images:
        log.info("%d %ss given; analysing the first %d", len(out), role, max_images)
    return out[: max(max_images, 1)]


def inputs_digest(images: Sequence[tuple[str, Any]], priors: Sequence[tuple[str, Any]]) -> str:
    """A SHA-256 of the pixels (shape, type and bytes) of the study and prior images, in order.

    Names are left out on purpose: the same pixels sent again under another name are the same study.
    """
    h = hashlib.sha256()
    for role, items in ((b"image", images), (b"prior", priors)):
        for _, image in items:
            arr = np.ascontiguousarray(np.asarray(image))
            h.update(role + repr((arr.shape, arr.dtype.str)).encode())
            h.update(arr.tobytes())
    return h.hexdigest()
