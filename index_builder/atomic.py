"""Atomic bundle publication: build in ``OUT.tmp-<random>``, then swap it in.

A build holds an exclusive lock (``.OUT.lock`` beside the bundle) so two builds never write the same bundle.
Everything is written to a temporary sibling folder and fsynced, the manifest (with every file's checksum)
comes last, then the folder replaces ``OUT``: with one atomic ``renameat2(RENAME_EXCHANGE)`` where Linux
offers it, else by renaming ``OUT`` to ``OUT.old-<ts>``, the new folder to ``OUT``, then removing the old
one. A build killed at any point leaves the previous bundle loadable (after the two-rename fallback's short
window, the next build or ``Bundle.open``'s hint restores ``OUT.old-*``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from index_builder import layout
from index_builder.errors import BuildLockedError

log = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two paths with renameat2; ``False`` when the platform cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(a))


@contextlib.contextmanager
def bundle_lock(out: Path) -> Iterator[None]:
    """Exclusive, non-blocking lock on the bundle at ``out``.

    Raises:
        BuildLockedError: When another process holds it.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.parent / f".{out.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BuildLockedError(
                f"Another process is building {out}.",
                hint="Wait for it to finish, then run the command again.",
            ) from exc
        yield
    finally:
        os.close(fd)


def recover(out: Path) -> None:
    """Cleans leftovers of interrupted builds (call with the lock held).

    Removes ``OUT.tmp-*`` folders, restores ``OUT.old-*`` when ``OUT`` itself is missing, and removes
    ``OUT.old-*`` otherwise.
    """
    parent = out.parent
    for tmp in parent.glob(f"{out.name}.tmp-*"):
        log.info("removing %s left by an interrupted build", tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    olds = sorted(parent.glob(f"{out.name}.old-*"))
    if olds and not out.exists():
        log.warning("restoring %s from %s (an earlier swap was interrupted)", out, olds[-1])
        os.rename(olds[-1], out)
        olds = olds[:-1]
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


class BundleWriter:
    """A temporary folder that becomes the bundle at ``out`` on :meth:`publish`.

    Use as a context manager inside :func:`bundle_lock`; on an exception the temporary folder is removed
    and ``out`` is untouched.
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.tmp = self.out.parent / f"{self.out.name}.tmp-{secrets.token_hex(4)}"
        self.published = False

    def __enter__(self) -> BundleWriter:
        self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.published:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, rel: str) -> Path:
        """A path inside the temporary folder (parents created)."""
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def link_from(self, src_root: Path, rel: str) -> None:
        """Reuses an unchanged file of the previous bundle (hard link, else copy)."""
        dst = self.path(rel)
        try:
            os.link(src_root / rel, dst)
        except OSError:
            shutil.copy2(src_root / rel, dst)

    def publish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Checksums every file, writes the manifest last, fsyncs and swaps the folder in.

        Returns:
            The manifest as written (with ``files``).
        """
        manifest = dict(manifest)
        manifest["files"] = layout.file_entries(self.tmp)
        (self.tmp / layout.MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=False) + "\n", "utf-8"
        )
        layout.fsync_tree(self.tmp)
        self._swap()
        self.published = True
        return manifest

    def _swap(self) -> None:
        out, tmp = self.out, self.tmp
        if not out.exists():
            os.rename(tmp, out)
        elif _exchange(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)  # ``tmp`` now holds the old bundle
        else:
            old = out.parent / f"{out.name}.old-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        layout.fsync_dir(out.parent)
