"""The default knowledge base built in the background (index_builder.background): status, lock, crash safety."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from index_builder.background import KbStatus, StatusWriter, read_status, start_background_build


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_status_writer_turns_stages_into_one_percentage_and_time_left(tmp_path: Path) -> None:
    clock = _Clock()
    path = tmp_path / "kb-build.json"
    writer = StatusWriter(path, interval=0.0, clock=clock)
    assert json.loads(path.read_text())["state"] == "building"
    clock.t += 60
    writer("embedding chunks", 50, 100)  # half the text stage after a minute: 0.44 of the whole
    status = json.loads(path.read_text())
    assert status["fraction"] == pytest.approx(0.44)
    assert status["eta_s"] == pytest.approx(60 * 0.56 / 0.44, rel=1e-3)
    assert KbStatus(**status).message() == "Knowledge base: 44 %, about 1 min left (embedding chunks)."
    writer("embedding images", 1, 2)
    assert json.loads(path.read_text())["fraction"] == pytest.approx(0.94)
    writer("embedding chunks", 10, 100)  # never goes backwards
    assert json.loads(path.read_text())["fraction"] == pytest.approx(0.94)
    writer.finish()
    assert json.loads(path.read_text())["state"] == "ready"
    writer.finish("boom")
    assert json.loads(path.read_text())["error"] == "boom"


def test_read_status_tells_live_dead_and_published_builds_apart(zebra_env: Path) -> None:
    import fcntl

    from zebra.config import get_settings

    settings = get_settings()
    assert read_status(settings).state == "missing"
    (zebra_env / "kb-build.json").write_text(json.dumps({"state": "building", "fraction": 0.3, "stage": "x"}))
    # no process holds the lock: the build died
    dead = read_status(settings)
    assert dead.state == "missing" and "interrupted" in dead.error
    with open(zebra_env / "kb-build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        live = read_status(settings)
        assert live.state == "building" and live.fraction == 0.3
        # a second build is not started while one holds the lock
        assert start_background_build(settings).state == "building"
        assert not (zebra_env / "kb-build.log").exists()
    bundle = settings.bundle_dir
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_text("{}")
    assert read_status(settings).ready


def _wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_background_build_survives_kill_9_and_publishes_a_verified_bundle(
    zebra_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from index_builder.bundle import Bundle
    from tests.retrieval.conftest import write_medpix
    from zebra.config import get_settings

    monkeypatch.setenv("ZEBRA_KNOWLEDGE__HPO", "false")
    monkeypatch.setenv("ZEBRA_KNOWLEDGE__MEDPIX_PATH", str(write_medpix(tmp_path / "medpix")))
    get_settings.cache_clear()
    settings = get_settings()
    first = start_background_build(settings)
    assert first.state == "building" and first.pid
    # kill -9 as soon as the build embeds (or whenever it gets there first)
    _wait(lambda: "embedding" in (read_status(settings).stage or "") or read_status(settings).ready, 120)
    with contextlib.suppress(ProcessLookupError):
        os.kill(first.pid, signal.SIGKILL)
    _wait(lambda: read_status(settings).state != "building", 30)
    after_kill = read_status(settings)
    if after_kill.ready:  # the build won the race: what it published must verify
        Bundle.open(settings.bundle_dir, verify=True)
    else:
        assert after_kill.state == "missing" and "interrupted" in (after_kill.error or "")
        assert not (settings.bundle_dir / "manifest.json").exists()
    # a restart (what `make run` does again) ends with a complete, verified bundle
    if not after_kill.ready:
        again = start_background_build(settings)
        assert again.state == "building"
    assert _wait(lambda: read_status(settings).ready, 300), (zebra_env / "kb-build.log").read_text()[-2000:]
    bundle = Bundle.open(settings.bundle_dir, verify=True)
    assert bundle.manifest["counts"]["documents"] >= 3
    assert read_status(settings).message() == "Knowledge base: ready."
    assert oct((zebra_env / "kb-build.json").stat().st_mode & 0o777) == "0o600"
