"""Runs :func:`zebra_intake.load_study` in a child process with a timeout.

Intake is not thread-safe, and a hostile file must not be able to hang or crash the server: each upload is
parsed in its own process (started from a ``forkserver`` that has the intake modules imported already, so a
start costs milliseconds), which is killed when it runs past the timeout. As with any ``multiprocessing``
use, a script that starts the server must guard its entry point with ``if __name__ == "__main__":``
(``zebra serve`` and ``python -m zebra_web`` do).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from pathlib import Path
from typing import Any

from zebra.config import IntakeSettings
from zebra.errors import ZebraError
from zebra_intake.types import Study
from zebra_web.errors import UploadTimeoutError

log = logging.getLogger(__name__)

_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()


def _context() -> Any:
    global _CONTEXT  # one forkserver per server process, started on first use
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            if method == "forkserver":
                ctx.set_forkserver_preload(["zebra_intake", "zebra_web.intake_worker"])
            _CONTEXT = ctx
        return _CONTEXT


def _child(path: str, settings: dict[str, Any], salt: bytes, out: Any, tmp_dir: str | None = None) -> None:
    import os
    import tempfile

    from zebra_intake import load_study

    if tmp_dir:
        # Whatever intake unpacks goes under the upload's own folder (removed by the server even if this
        # process is killed), never the system temp folder.
        os.environ["TMPDIR"] = tmp_dir
        tempfile.tempdir = tmp_dir
    try:
        study = load_study(Path(path), settings=IntakeSettings(**settings), salt=salt)
        out.put(("ok", study))
    except ZebraError as exc:
        out.put(("error", (type(exc).__module__, type(exc).__qualname__, exc.message, exc.hint)))
    except Exception as exc:  # a decoder bug: report its kind only (messages may quote header values)
        out.put(("crash", type(exc).__name__))


def _rebuild_error(module: str, qualname: str, message: str, hint: str | None) -> ZebraError:
    import importlib

    try:
        cls = getattr(importlib.import_module(module), qualname)
        if isinstance(cls, type) and issubclass(cls, ZebraError):
            return cls(message, hint=hint)
    except (ImportError, AttributeError):
        pass
    return ZebraError(message, hint=hint)


def load_study_isolated(
    path: Path,
    settings: IntakeSettings,
    salt: bytes,
    *,
    timeout_s: float = 120.0,
    tmp_dir: Path | None = None,
) -> Study:
    """Parses ``path`` with ``load_study`` in a child process; blocking (call from a worker thread).

    ``tmp_dir`` is where the child's temporary files go (an unpacked zip); the system temp folder when
    ``None``.

    Raises:
        UploadTimeoutError: When parsing takes longer than ``timeout_s`` (the child is killed).
        ZebraError: What ``load_study`` raised (same type, message and hint).
        CorruptFileError: When the child crashed.
    """
    from zebra.errors import CorruptFileError

    ctx = _context()
    out = ctx.Queue(maxsize=1)
    args = (str(path), settings.model_dump(), bytes(salt), out, str(tmp_dir) if tmp_dir else None)
    proc = ctx.Process(target=_child, args=args, daemon=True)
    start = time.monotonic()
    proc.start()
    try:
        # Read before join: a large result fills the pipe and the child only exits once it is drained.
        try:
            status, payload = out.get(timeout=timeout_s)
        except queue.Empty:
            if proc.is_alive():
                raise UploadTimeoutError(
                    f"Reading the upload took longer than {timeout_s:.0f} s.",
                    hint="Upload fewer or smaller images.",
                ) from None
            raise CorruptFileError(
                "The image reader stopped unexpectedly on this upload.",
                hint="The file may be damaged; try exporting it again.",
            ) from None
    finally:
        if proc.is_alive():
            proc.join(timeout=1.0)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5.0)
        out.close()
    log.debug("intake child finished in %.2f s", time.monotonic() - start)
    if status == "ok":
        return payload
    if status == "error":
        raise _rebuild_error(*payload)
    raise CorruptFileError(
        f"The image reader failed on this upload ({payload}).",
        hint="The file may be damaged or use an unusual encoding; try exporting it again.",
    )
