"""Per-image overlays from the agent's VLM output (heatmap PNG + finding JSON), and evidence thumbnails.

Overlays live under ``<data_dir>/web/overlays/<study UID>/<image n>/``: ``heatmap.png`` (RGBA, colour-mapped,
alpha by strength, drawn over the viewer's image) and ``finding.json`` (boxes, score, caption). They are keyed
by the study's UID (unique per uploader), not its database id: a database reset reuses ids, and a stale
overlay would then show one patient's heatmap over another's study. Folders are 0700, files 0600. Thumbnails of
retrieved knowledge-base images live under ``<data_dir>/web/thumbs/<sha256>.png``; their names are
unguessable hashes, and they show teaching-file images, never uploads.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from zebra.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

_THUMB_NAME = re.compile(r"^[0-9a-f]{64}$")
_STUDY_KEY = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.\-]{0,127}$")
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"})
THUMB_SIDE = 160


def colormap(values: np.ndarray) -> np.ndarray:
    """A jet-like map of ``values`` in [0, 1] to uint8 RGB (the same map as ``vlm.overlay``)."""
    v = np.clip(values, 0, 1)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def heatmap_rgba(heatmap: np.ndarray) -> bytes:
    """PNG bytes of a heatmap in [0, 1] as RGBA: colour-mapped, transparent where weak."""
    heat = np.nan_to_num(np.asarray(heatmap, np.float32), nan=0.0)
    if heat.ndim == 3:
        heat = heat[..., 0]
    if heat.max() > 1.0 or heat.min() < 0.0:
        lo, hi = float(heat.min()), float(heat.max())
        heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    alpha = (np.clip((heat - 0.15) / 0.85, 0, 1) * 200).astype(np.uint8)
    rgba = np.concatenate([colormap(heat), alpha[..., None]], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _read_heatmap_file(path: Path) -> tuple[bytes, str] | None:
    """A heatmap file written by the agent: ``.npy`` or PNG. Returns PNG bytes and kind (alpha|blend)."""
    if not path.is_file():
        return None
    if path.suffix == ".npy":
        return heatmap_rgba(np.load(path, allow_pickle=False)), "alpha"
    with Image.open(path) as img:
        img.load()
        if img.mode in ("L", "F", "I", "I;16"):
            arr = np.asarray(img.convert("F"), np.float32)
            return heatmap_rgba(arr / (255.0 if img.mode == "L" else max(float(arr.max()), 1.0))), "alpha"
        buf = io.BytesIO()
        # An RGB file is a finished overlay (image + heatmap blended): shown instead of the image.
        img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB").save(buf, format="PNG")
        return buf.getvalue(), "blend"


class OverlayStore:
    """Overlays per (study, image) and thumbnails of evidence images (module docstring).

    Args:
        root: ``<data_dir>/web``.
        search_roots: Folders relative evidence image paths are resolved against.
        agent_heatmaps: Where the agent writes heatmap files (removed once copied); ``None``: none removed.
    """

    def __init__(
        self, root: Path, search_roots: tuple[Path, ...] = (), agent_heatmaps: Path | None = None
    ) -> None:
        self.root = Path(root)
        self.search_roots = tuple(Path(p) for p in search_roots)
        self.agent_heatmaps = Path(agent_heatmaps) if agent_heatmaps is not None else None

    def study_dir(self, study_uid: str) -> Path:
        """The folder of a study's overlays.

        Raises:
            ValueError: For a key that is not a UID (no path tricks reach the file system).
        """
        if not _STUDY_KEY.match(str(study_uid)) or ".." in str(study_uid):
            raise ValueError("not a study UID")
        return self.root / "overlays" / str(study_uid)

    def _dir(self, study_uid: str, n: int) -> Path:
        return self.study_dir(study_uid) / str(int(n))

    def delete_study(self, study_uid: str) -> None:
        """Removes every overlay of a study."""
        import shutil

        shutil.rmtree(self.study_dir(study_uid), ignore_errors=True)

    def save(self, study_uid: str, n: int, finding: dict[str, Any], heatmap: Any = None) -> dict[str, Any]:
        """Caches one image's finding and heatmap (array, ``.npy`` or PNG path); returns the stored finding.

        A heatmap file the agent wrote under :attr:`agent_heatmaps` is removed once copied: the overlay is
        then the only copy, and goes when the study is deleted.
        """
        folder = self._dir(study_uid, n)
        for part in (self.root, self.root / "overlays", folder.parent, folder):
            part.mkdir(mode=0o700, exist_ok=True)
        stored = dict(finding)
        stored["heatmap_kind"] = None
        png: tuple[bytes, str] | None = None
        try:
            if isinstance(heatmap, np.ndarray) and heatmap.ndim >= 2:
                png = heatmap_rgba(heatmap), "alpha"
            elif isinstance(heatmap, str | Path) and str(heatmap):
                png = _read_heatmap_file(Path(heatmap))
                self._discard_agent_file(Path(heatmap))
        except (OSError, ValueError) as exc:  # a bad heatmap file loses the overlay, not the answer
            log.warning("could not read a heatmap (%s)", type(exc).__name__)
        if png is not None:
            atomic_write_bytes(folder / "heatmap.png", png[0])
            stored["heatmap_kind"] = png[1]
        else:
            (folder / "heatmap.png").unlink(missing_ok=True)
        atomic_write_bytes(folder / "finding.json", json.dumps(stored).encode())
        return stored

    def _discard_agent_file(self, path: Path) -> None:
        if self.agent_heatmaps is None:
            return
        try:
            if path.resolve().is_relative_to(self.agent_heatmaps.resolve()):
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove the agent's heatmap file (%s)", type(exc).__name__)

    def finding(self, study_uid: str, n: int) -> dict[str, Any] | None:
        """The cached finding of an image, or ``None``."""
        path = self._dir(study_uid, n) / "finding.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def heatmap_path(self, study_uid: str, n: int) -> Path | None:
        """The cached heatmap PNG of an image, or ``None``."""
        path = self._dir(study_uid, n) / "heatmap.png"
        return path if path.is_file() else None

    def thumbnail(self, source: str | None) -> str | None:
        """Makes (once) a thumbnail of an evidence image file and returns its name, or ``None``."""
        if not source:
            return None
        path = Path(source)
        candidates = [path] if path.is_absolute() else [root / path for root in self.search_roots]
        for candidate in candidates:
            if candidate.suffix.lower() in _IMAGE_SUFFIXES and candidate.is_file():
                name = hashlib.sha256(str(candidate.resolve()).encode()).hexdigest()
                out = self.root / "thumbs" / f"{name}.png"
                if not out.is_file():
                    try:
                        with Image.open(candidate) as img:
                            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
                            buf = io.BytesIO()
                            img.convert("RGB").save(buf, format="PNG")
                    except (OSError, ValueError, Image.DecompressionBombError):
                        return None
                    atomic_write_bytes(out, buf.getvalue())
                return name
        return None

    def thumbnail_path(self, name: str) -> Path | None:
        """The file of a thumbnail name, or ``None`` (also for names that are not hashes)."""
        if not _THUMB_NAME.match(name):
            return None
        path = self.root / "thumbs" / f"{name}.png"
        return path if path.is_file() else None

    def save_thumbnail_array(self, rgb: np.ndarray) -> str:
        """Stores an in-memory thumbnail (agents that return pixels) and returns its name."""
        img = Image.fromarray(np.asarray(rgb).astype(np.uint8))
        img.thumbnail((THUMB_SIDE, THUMB_SIDE))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG")
        data = buf.getvalue()
        name = hashlib.sha256(data).hexdigest()
        out = self.root / "thumbs" / f"{name}.png"
        if not out.is_file():
            atomic_write_bytes(out, data)
        return name
