"""Stored pixel arrays, kept in memory while a viewer drags the window, and dropped when a study is deleted."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np


class PixelCache:
    """Recently windowed pixel arrays, bounded by bytes (dragging the window re-renders the same image)."""

    def __init__(self, budget_bytes: int = 256 * 1024 * 1024) -> None:
        self._budget = budget_bytes
        self._items: OrderedDict[tuple[str, float], np.ndarray] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, path: Path) -> np.ndarray:
        key = (str(path), path.stat().st_mtime)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        array = np.load(path, allow_pickle=False)
        with self._lock:
            if array.nbytes <= self._budget // 4 and key not in self._items:
                self._items[key] = array
                self._used += array.nbytes
                while self._used > self._budget:
                    _, old = self._items.popitem(last=False)
                    self._used -= old.nbytes
        return array

    def forget(self, path: Path) -> None:
        """Drops the cached pixels of ``path`` (its study was deleted)."""
        target = Path(path).resolve()
        with self._lock:
            for key in [k for k in self._items if Path(k[0]).resolve() == target]:
                self._used -= self._items.pop(key).nbytes


#: The process's cache (one per server).
PIXELS = PixelCache()


def forget_pixels(path: Path) -> None:
    """Drops the cached pixels of a stored ``.npy`` file."""
    PIXELS.forget(path)
