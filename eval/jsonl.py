"""Crash-safe JSON Lines: append with flush + fsync per line, and repair of a torn last line.

A process killed while writing leaves at most one incomplete last line (no trailing newline, or text that is
not JSON); :func:`repair_tail` truncates the file back to the end of the last complete, parsable line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def repair_tail(path: str | Path) -> int:
    """Truncates a torn last line; returns the number of bytes removed (0 when the file was intact)."""
    path = Path(path)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    keep = len(data)
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
    # a complete-looking last line can still be garbage if the crash hit between write and newline flush
    while keep > 0:
        start = data.rfind(b"\n", 0, keep - 1) + 1
        try:
            json.loads(data[start:keep])
            break
        except ValueError:
            keep = start
    removed = len(data) - keep
    if removed:
        with path.open("r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        log.warning("%s: removed a torn last line (%d bytes)", path, removed)
    return removed


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSON Lines file (blank lines skipped)."""
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


class JsonlAppender:
    """Appends one JSON object per line, each flushed and fsynced before :meth:`write` returns; thread-safe.

    Args:
        path: The file (created when missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, row: dict[str, Any]) -> None:
        """Appends ``row`` durably."""
        line = json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Closes the file."""
        with self._lock:
            self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json(path: str | Path, payload: Any) -> None:
    """Writes JSON atomically (temporary file + rename) with sorted keys and a trailing newline."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
