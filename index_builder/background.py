"""The default knowledge base, built in a background process while the server already serves.

``make run`` must give a browser the page within a minute of the install, yet embedding the default knowledge
base takes minutes on a small CPU. So ``zebra setup --background`` prepares the database (seconds), starts the
build in a separate, detached process and returns; ``zebra serve`` does the same when no bundle is there. The
page shows the progress this module writes, image analysis works meanwhile, diagnosis questions get a clear
"not ready yet" answer, and the agent opens the bundle on the first question after it is published.

Files in the data directory:

* ``kb-build.lock``: held (``flock``) by the one build process for its whole life, so two servers or a
  server and ``zebra setup`` never build at once, and a reader can tell a live build from a dead one;
* ``kb-build.json``: the status (:class:`KbStatus`), replaced atomically at most once a second;
* ``kb-build.log``: the build process's output.

Crash safety comes from the bundle writer (:mod:`index_builder.atomic`): everything is written to a temporary
sibling folder and swapped in last, so a reader never sees a half-built bundle, and a build killed with
``kill -9`` leaves no bundle (or the previous one); the next ``zebra setup``/``zebra serve`` starts a new build
from the beginning (the status says the last one was interrupted).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zebra.config import Settings

log = logging.getLogger(__name__)

STATUS_FILE = "kb-build.json"
LOCK_FILE = "kb-build.lock"
LOG_FILE = "kb-build.log"

#: Share of the build's time per stage (measured on the default bundle with the torch encoder: text
#: embedding dominates; images are about a tenth). Only used to turn stage progress into one percentage.
STAGE_WEIGHTS: dict[str, float] = {"embedding chunks": 0.88, "embedding images": 0.12}


@dataclass
class KbStatus:
    """Where the default knowledge base stands.

    Attributes:
        state: ``ready`` (a bundle is published), ``building`` (a live build process holds the lock),
            ``missing`` (no bundle and no build; ``error`` says why when a build failed or was interrupted).
        fraction: Overall progress of a build, 0-1.
        stage: The build's current stage (``"embedding chunks"`` ...).
        eta_s: Estimated seconds left (``None`` until there is a rate to go by).
        started, updated: Unix times.
        pid: The build process.
        error: Why the last build did not finish.
    """

    state: str = "missing"
    fraction: float = 0.0
    stage: str = ""
    eta_s: float | None = None
    started: float | None = None
    updated: float | None = None
    pid: int | None = None
    error: str | None = None

    @property
    def ready(self) -> bool:
        """Whether the knowledge base can be searched."""
        return self.state == "ready"

    def message(self) -> str:
        """One line for a person: ``"Knowledge base: 43 %, about 6 min left"``."""
        if self.state == "ready":
            return "Knowledge base: ready."
        if self.state == "building":
            text = f"Knowledge base: {self.fraction * 100:.0f} %"
            if self.eta_s is not None:
                minutes = max(1, round(self.eta_s / 60))
                text += f", about {minutes} min left"
            return text + f" ({self.stage})." if self.stage else text + "."
        return "Knowledge base: not built" + (f" ({self.error})." if self.error else ".")

    def progress_words(self) -> str:
        """For an answer: ``"it is being built (43 %, about 6 min left)"`` or why it is missing."""
        if self.state == "building":
            left = f", about {max(1, round(self.eta_s / 60))} min left" if self.eta_s is not None else ""
            return f"it is being built ({self.fraction * 100:.0f} %{left})"
        if self.state == "ready":
            return "it is ready"
        return "it has not been built" + (f" ({self.error})" if self.error else "") + "; run `zebra setup`"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the message."""
        return {**asdict(self), "ready": self.ready, "message": self.message()}


def _paths(settings: Settings) -> tuple[Path, Path, Path]:
    d = settings.data_dir
    return d / STATUS_FILE, d / LOCK_FILE, d / LOG_FILE


def bundle_published(settings: Settings) -> bool:
    """Whether the default bundle's manifest exists (published last by the atomic writer)."""
    return (settings.bundle_dir / "manifest.json").is_file()


def _write(path: Path, status: KbStatus) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(status)), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _read(path: Path) -> KbStatus | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fields = KbStatus.__dataclass_fields__
        return KbStatus(**{k: v for k, v in data.items() if k in fields})
    except (OSError, ValueError, TypeError):
        return None


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    """Yields whether the build lock was taken (released on exit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def build_running(settings: Settings) -> bool:
    """Whether a live build process holds the lock."""
    with _try_lock(_paths(settings)[1]) as taken:
        return not taken


def read_status(settings: Settings) -> KbStatus:
    """The knowledge base's status: published bundle, live build, or neither (and why)."""
    status_path, _, _ = _paths(settings)
    saved = _read(status_path)
    if build_running(settings):
        return saved if saved is not None and saved.state == "building" else KbStatus(state="building")
    if bundle_published(settings):
        return KbStatus(state="ready", fraction=1.0, updated=saved.updated if saved else None)
    if saved is not None and saved.state == "building":
        # the build process is gone without publishing: killed or crashed
        return KbStatus(
            state="missing", error="the last build was interrupted; it starts again with the server"
        )
    return KbStatus(state="missing", error=saved.error if saved else None)


class StatusWriter:
    """The build's progress callback (``show_progress`` of :func:`index_builder.build.build_bundle`): turns stage
    progress into one percentage and an estimate of the time left, written at most every ``interval`` seconds.
    """

    def __init__(self, path: Path, *, interval: float = 1.0, clock: Any = time.time) -> None:
        self.path = path
        self.interval = interval
        self.clock = clock
        self.status = KbStatus(state="building", started=clock(), pid=os.getpid(), stage="reading sources")
        self._last = 0.0
        self._write(force=True)

    def _write(self, *, force: bool = False) -> None:
        now = self.clock()
        if force or now - self._last >= self.interval:
            self.status.updated = now
            _write(self.path, self.status)
            self._last = now

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Progress of one stage: ``done`` of ``total`` items."""
        before = 0.0
        for name, weight in STAGE_WEIGHTS.items():
            if name == stage:
                break
            before += weight
        weight = STAGE_WEIGHTS.get(stage, 0.0)
        fraction = min(1.0, before + weight * (done / total if total else 1.0))
        self.status.stage = stage
        self.status.fraction = round(max(self.status.fraction, fraction), 4)
        elapsed = self.clock() - (self.status.started or self.clock())
        if self.status.fraction >= 0.02 and elapsed > 0:
            self.status.eta_s = round(elapsed * (1 - self.status.fraction) / self.status.fraction, 1)
        self._write(force=done >= total)

    def finish(self, error: str | None = None) -> None:
        """The final status: ``ready`` or ``missing`` with the error."""
        if error is None:
            self.status = KbStatus(state="ready", fraction=1.0, started=self.status.started, pid=os.getpid())
        else:
            self.status.state, self.status.error, self.status.eta_s = "missing", error, None
        self._write(force=True)


def run_build(settings: Settings) -> KbStatus:
    """The build process's body: takes the lock, builds (``index_builder.default_kb.setup``), records the outcome.

    Returns at once, with the current status, when another process holds the lock.
    """
    from index_builder.default_kb import setup
    from zebra.errors import ZebraError

    status_path, lock_path, _ = _paths(settings)
    with _try_lock(lock_path) as taken:
        if not taken:
            log.info("a knowledge-base build is already running")
            return read_status(settings)
        writer = StatusWriter(status_path)
        try:
            setup(settings, show_progress=writer)
        except ZebraError as exc:
            writer.finish(exc.message)
            raise
        except Exception as exc:
            # the message only: tracebacks go to the build log, never to the page
            writer.finish(f"{type(exc).__name__}: {exc}"[:300])
            raise
        writer.finish()
        return writer.status


def start_background_build(settings: Settings) -> KbStatus:
    """Starts the build in a detached process unless a bundle is published or a build is running.

    Returns:
        The status right after (``building`` when a process was started or was running).
    """
    from index_builder.default_kb import bundle_needs_work

    if build_running(settings):
        return read_status(settings)
    reason = bundle_needs_work(settings)
    if reason is None:
        return read_status(settings)
    log.info("default knowledge base: %s; building it in the background", reason)
    status_path, _, log_path = _paths(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Written before the process starts so a page asking at once sees "building", not "missing".
    _write(status_path, KbStatus(state="building", started=time.time(), stage="starting"))
    with open(log_path, "ab") as out:
        os.chmod(log_path, 0o600)
        proc = subprocess.Popen(
            [sys.executable, "-m", "index_builder.background"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the server's Ctrl-C; a new server finds it by its lock
            env={**os.environ, "ZEBRA_DATA_DIR": str(settings.data_dir)},
        )
    log.info("knowledge-base build started in the background (pid %d, log %s)", proc.pid, log_path)
    return KbStatus(state="building", started=time.time(), pid=proc.pid, stage="starting")


def _main() -> int:
    from zebra.config import get_settings
    from zebra.errors import ZebraError
    from zebra.logs import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level)
    try:
        status = run_build(settings)
    except ZebraError as exc:
        log.error("knowledge-base build failed: %s", exc.message)
        return 1
    log.info("knowledge base: %s", status.message())
    return 0


if __name__ == "__main__":
    sys.exit(_main())
