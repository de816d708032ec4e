"""Fault injection: ``kill -9`` the triage CLI at random (seeded) points, resume, compare to a clean run."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from triage.agent_adapter import AnalyserSpec
from triage.engine import TriageOptions, run_triage

N_ITEMS = 30
SPEC = "fake:fail=ACC0013,delay=0.08"


def _finished(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(
                "SELECT count(*) FROM triage_items WHERE status IN ('done', 'error')"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


def _launch(cli, worklist: Path, out: Path, log: Path, workers: int) -> subprocess.Popen:
    args = [
        "triage",
        str(worklist),
        "--out",
        str(out),
        "--analyser",
        SPEC,
        "--workers",
        str(workers),
        "--resume",
        "--run-name",
        "fi",
        "--no-progress",
        "--max-attempts",
        "5",
    ]
    with log.open("ab") as fh:
        # Its own session: killing the process group is a machine crash (engine and workers at once).
        return subprocess.Popen(
            cli(*args),
            stdout=fh,
            stderr=fh,
            start_new_session=True,
            env={**os.environ, "ZEBRA_LOG_LEVEL": "WARNING"},
        )


def test_kill_9_at_random_points_then_resume_equals_uninterrupted_run(
    zebra_env: Path, tmp_path: Path, snapshot, make_csv_worklist, cli
) -> None:
    from store import Store

    worklist = make_csv_worklist(tmp_path / "wl", N_ITEMS)
    ref_store = Store(f"sqlite:///{tmp_path / 'reference.db'}")
    run_triage(
        worklist,
        out=tmp_path / "ref",
        analyser=AnalyserSpec(analyser=SPEC),
        options=TriageOptions(progress=False),
        run_name="fi",
        store=ref_store,
    )
    reference = snapshot(ref_store.url.render_as_string(hide_password=False), "fi")
    ref_store.dispose()
    assert sum(v[0] == "error" for v in reference.values()) == 1

    db = zebra_env / "zebra.db"  # the settings' default store, which the CLI uses
    rng = random.Random(20261123)
    log = tmp_path / "cli.log"
    killed_mid_run = 0
    # Rounds: an early kill, a crash of engine + 2 workers, a kill of the engine alone (its workers must
    # stop by themselves), a crash of a 1-worker (in-process) run. 1-worker rounds keep the test fast.
    for round_, workers in enumerate((1, 2, 2, 1)):
        proc = _launch(cli, worklist, tmp_path / "out", log, workers)
        if round_ == 0:
            time.sleep(
                rng.uniform(0.5, 2.5)
            )  # early: while starting, reading the worklist or creating the run
        else:
            target = min(N_ITEMS - 2, _finished(db) + rng.randint(1, 6))
            deadline = time.monotonic() + 60
            while _finished(db) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        if proc.poll() is None:
            if round_ == 2:
                os.kill(proc.pid, signal.SIGKILL)  # the engine only: its workers must notice and stop
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        at_kill = _finished(db)
        killed_mid_run += 0 < at_kill < N_ITEMS
    assert killed_mid_run >= 3, log.read_text(errors="replace")[-3000:]

    final = _launch(cli, worklist, tmp_path / "out", log, 1)
    assert final.wait(timeout=120) == 0, log.read_text(errors="replace")[-3000:]
    result = snapshot(f"sqlite:///{db}", "fi")
    assert len(result) == N_ITEMS and set(result) == set(reference)
    assert result == reference  # same statuses, priorities, result JSON and errors; nothing lost or repeated
    csv_lines = (tmp_path / "out" / "triage.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_lines) == N_ITEMS + 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM triage_runs WHERE name = 'fi'").fetchone()[0] == 1
        assert conn.execute("SELECT max(attempts) FROM triage_items WHERE status = 'done'").fetchone()[0] <= 5
