"""A small content-keyed cache of query-image embeddings.

One agent turn searches each image twice (image -> images, image -> text) and triage may search it a third
time for rarity; the image tower is the costly part of each search. Keys are a hash of the pixels (arrays,
PIL images) or of the path, size and modification time (files), so an equal image is embedded once.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np


def image_key(image: Any) -> tuple[Any, ...] | None:
    """A hashable key identifying the image's content, or ``None`` when it cannot be made cheaply."""
    if isinstance(image, np.ndarray):
        data = np.ascontiguousarray(image)
        return ("array", data.shape, data.dtype.str, hashlib.blake2b(data.data, digest_size=16).digest())
    if isinstance(image, str | Path):
        path = Path(image).expanduser()
        try:
            st = path.stat()
        except OSError:
            return None
        return ("file", str(path.resolve()), st.st_size, st.st_mtime_ns)
    tobytes = getattr(image, "tobytes", None)
    if callable(tobytes) and hasattr(image, "mode") and hasattr(image, "size"):  # PIL image
        digest = hashlib.blake2b(tobytes(), digest_size=16).digest()
        return ("pil", image.mode, tuple(image.size), digest)
    return None


class QueryVectorCache:
    """LRU map from :func:`image_key` to an embedding row (thread-safe).

    Args:
        size: Entries kept.
    """

    def __init__(self, size: int = 32) -> None:
        self.size = int(size)
        self._data: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...] | None) -> np.ndarray | None:
        """The cached vector (a copy is not made: callers must not modify it), or ``None``."""
        if key is None:
            return None
        with self._lock:
            vec = self._data.get(key)
            if vec is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return vec

    def put(self, key: tuple[Any, ...] | None, vector: np.ndarray) -> None:
        """Stores ``vector`` under ``key`` (nothing when ``key`` is ``None``)."""
        if key is None or self.size <= 0:
            return
        vector = np.array(vector, dtype=np.float32, copy=True)
        vector.setflags(write=False)
        with self._lock:
            self._data[key] = vector
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
