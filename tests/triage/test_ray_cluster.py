"""Multi-node triage on a real Ray cluster: a head and two worker nodes as separate processes
(``.ci/ray_cluster.sh``) with the store on PostgreSQL (``.ci/postgres.sh``).

Each test runs the real CLI (``zebra triage --engine ray --ray-address ...``) in a subprocess, as a user would
on a cluster's head. The fake analyser's ``hold=``/``gate=`` options keep one chosen study in flight until the
test creates the gate file, so which node has what in flight is known before anything is asserted or killed.

Skipped when ZEBRA_TEST_RAY_ADDRESS (and the cluster's dir and token) or ZEBRA_TEST_PG_URL is unset; with
``CI`` set they fail instead (``.ci/run`` starts both, so CI always runs them).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from triage.agent_adapter import AnalyserSpec
from triage.engine import TriageOptions, run_triage

pytestmark = pytest.mark.postgres

ADDRESS_ENV, DIR_ENV, TOKEN_ENV = "ZEBRA_TEST_RAY_ADDRESS", "ZEBRA_TEST_RAY_DIR", "ZEBRA_TEST_RAY_TOKEN_PATH"
PG_ENV = "ZEBRA_TEST_PG_URL"
SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "ray_cluster.sh"
#: Generous waits: the shared CI machine is slow, and a Ray worker process takes seconds to start.
WAIT_S = 240.0

# Prints {node name: [node ids]} of the live nodes (names from the zebra_node_<name> resources of the script).
_PROBE = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False, include_dashboard=False)
out = {}
for n in ray.nodes():
    if n["Alive"]:
        for key in n["Resources"]:
            if key.startswith("zebra_node_"):
                out.setdefault(key[len("zebra_node_"):], []).append(n["NodeID"])
print("ZEBRA_NODES " + json.dumps(out))
"""


def _require_services() -> None:
    missing = [name for name in (ADDRESS_ENV, DIR_ENV, TOKEN_ENV, PG_ENV) if not os.environ.get(name)]
    if not missing:
        return
    message = (
        f"{', '.join(missing)} not set: the multi-node tests need the Ray cluster of .ci/ray_cluster.sh and the "
        "PostgreSQL of .ci/postgres.sh (.ci/run starts both)"
    )
    if os.environ.get("CI"):
        pytest.fail(message + "; in CI they must run, not skip")
    pytest.skip(message)


@dataclass
class Cluster:
    """The test cluster: its address, the script's folder (node pid files) and the driver's environment."""

    address: str
    dir: Path
    env: dict[str, str]

    def nodes(self) -> dict[str, list[str]]:
        """Live nodes by name (``head``, ``w1``, ``w2``) -> their Ray node ids."""
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, self.address],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        # Ray may print warnings ("raylet has lagging heartbeats ...") on stdout too: read the marked line.
        marked = [line for line in out.stdout.splitlines() if line.startswith("ZEBRA_NODES ")]
        assert marked, out.stdout[-2000:] + out.stderr[-2000:]
        return json.loads(marked[-1].removeprefix("ZEBRA_NODES "))

    def node_ids(self) -> dict[str, str]:
        """``name -> node id`` of a healthy cluster (exactly one live node per name)."""
        nodes = self.nodes()
        assert sorted(nodes) == ["head", "w1", "w2"] and all(len(v) == 1 for v in nodes.values()), nodes
        return {name: ids[0] for name, ids in nodes.items()}

    def script(self, function: str, node: str) -> None:
        """Runs a node function of ``.ci/ray_cluster.sh`` on this cluster."""
        subprocess.run(
            ["bash", "-c", 'source "$1" && "$2" "$3"', "ray_cluster", str(SCRIPT), function, node],
            env={**os.environ, "RAY_CI_DIR": str(self.dir)},
            check=True,
            timeout=120,
        )

    def process_group(self, name: str) -> int:
        """The process group of a node (its ``ray start --block`` runs in its own session)."""
        return int((self.dir / name / "pid").read_text().strip())


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    _require_services()
    token = os.environ[TOKEN_ENV]
    return Cluster(
        address=os.environ[ADDRESS_ENV],
        dir=Path(os.environ[DIR_ENV]),
        env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token},
    )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server, migrated; dropped afterwards."""
    _require_services()
    from store import Store, normalise_url

    schema = f"zt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(os.environ[PG_ENV]))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = normalise_url(os.environ[PG_ENV]).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    store = Store(rendered)
    store.upgrade()
    store.dispose()
    try:
        yield rendered
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _item_rows(store_url: str, run_name: str) -> dict[str, dict[str, Any]]:
    """``accession -> {status, attempts, owner}`` of a run."""
    from store import Store, TriageItem, TriageRun

    store = Store(store_url)
    try:
        with store.session() as s:
            run_id = s.scalar(select(TriageRun.id).where(TriageRun.name == run_name))
            if run_id is None:
                return {}
            rows = s.execute(
                select(
                    TriageItem.accession, TriageItem.status, TriageItem.attempts, TriageItem.lease_owner
                ).where(TriageItem.run_id == run_id)
            ).all()
    finally:
        store.dispose()
    return {acc: {"status": st, "attempts": at, "owner": ow} for acc, st, at, ow in rows}


def _wait_for(
    what: str, check: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = WAIT_S
) -> None:
    """Polls ``check`` until true; fails with the CLI's log if the CLI exits first or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"the triage CLI exited ({proc.returncode}) before {what}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s:\n{_tail(log)}")
        time.sleep(0.1)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def _launch(
    cli, cluster: Cluster, pg_url: str, worklist: Path, out: Path, log: Path, spec: str, *extra: str
) -> subprocess.Popen:
    args = [
        *("triage", str(worklist), "--out", str(out), "--analyser", spec, "--engine", "ray"),
        *("--ray-address", cluster.address, "--workers", "2", "--no-progress", "--max-attempts", "3"),
        *extra,
    ]
    env = {**os.environ, **cluster.env, "ZEBRA_STORE__URL": pg_url, "ZEBRA_LOG_LEVEL": "INFO"}
    with log.open("ab") as fh:
        return subprocess.Popen(cli(*args), stdout=fh, stderr=fh, env=env, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _local_run(worklist: Path, out: Path, spec: str, store: Any) -> str:
    """The same worklist through the local engine (one in-process worker) on SQLite; returns the store URL."""
    summary = run_triage(
        worklist,
        out=out,
        analyser=AnalyserSpec(analyser=spec),
        options=TriageOptions(progress=False, max_attempts=3),
        run_name="local",
        store=store,
    )
    assert summary.complete
    return store.url.render_as_string(hide_password=False)


def _csv_without(path: Path, column: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    for row in rows:
        row.pop(column)
    return rows


# ---------------------------------------------------------------------------------------------------- tests
def test_sqlite_store_with_a_multi_node_cluster_is_refused_before_the_run_exists(
    cluster: Cluster, zebra_env: Path, tmp_path: Path, make_csv_worklist, cli
) -> None:
    worklist = make_csv_worklist(tmp_path / "wl", 3)
    env = {**os.environ, **cluster.env}
    env.pop("ZEBRA_STORE__URL", None)  # the default store: SQLite in the data directory
    args = [
        *("triage", str(worklist), "--out", str(tmp_path / "out"), "--analyser", "fake"),
        *("--engine", "ray", "--ray-address", cluster.address, "--no-progress"),
    ]
    done = subprocess.run(cli(*args), env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert "SQLite" in output and "PostgreSQL" in output and "3 nodes" in output, output[-3000:]
    import sqlite3

    with sqlite3.connect(zebra_env / "zebra.db") as conn:
        assert conn.execute("SELECT count(*) FROM triage_runs").fetchone()[0] == 0


def test_run_spreads_over_both_worker_nodes_and_equals_the_local_engine(
    cluster: Cluster, pg_url: str, zebra_env: Path, tmp_path: Path, store, snapshot, make_csv_worklist, cli
) -> None:
    ids = cluster.node_ids()
    worklist = make_csv_worklist(tmp_path / "wl", 12)
    gate = tmp_path / "go"
    # ACC0000 (claimed first) waits for the gate: its worker's node holds it while the other node does the
    # rest, so both nodes produce results whatever the order the two tasks started in.
    spec = f"fake:fail=ACC0005,delay=0.05,hold=ACC0000,gate={gate}"
    log = tmp_path / "cli.log"
    proc = _launch(cli, cluster, pg_url, worklist, tmp_path / "ray", log, spec, "--run-name", "spread")
    try:

        def rest_finished_while_held() -> bool:
            rows = _item_rows(pg_url, "spread")
            return (
                len(rows) == 12
                and rows["ACC0000"]["status"] == "leased"
                and all(r["status"] in ("done", "error") for acc, r in rows.items() if acc != "ACC0000")
            )

        _wait_for(
            "the other node finishing every study but the held one", rest_finished_while_held, proc, log
        )
        gate.touch()
        assert proc.wait(timeout=WAIT_S) == 0, _tail(log)
    finally:
        _stop(proc)

    rows = _item_rows(pg_url, "spread")
    from triage.queue import owner_node

    nodes = {acc: owner_node(r["owner"]) for acc, r in rows.items()}
    worker_ids = {ids["w1"][:16], ids["w2"][:16]}
    assert set(nodes.values()) == worker_ids, nodes  # both worker nodes, never the head (it has no CPU)
    assert all(nodes[acc] != nodes["ACC0000"] for acc in rows if acc != "ACC0000"), nodes
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["complete"] and summary["counts"]["done"] == 11 and summary["counts"]["error"] == 1
    assert sorted(summary["nodes"].values()) == [1, 11] and set(summary["nodes"]) == worker_ids

    local_url = _local_run(worklist, tmp_path / "local", spec, store)
    assert snapshot(pg_url, "spread") == snapshot(local_url, "local")
    assert (tmp_path / "ray" / "triage.csv").read_text() == (tmp_path / "local" / "triage.csv").read_text()


def test_worker_node_killed_mid_run_loses_nothing_and_does_nothing_twice(
    cluster: Cluster, pg_url: str, zebra_env: Path, tmp_path: Path, store, snapshot, make_csv_worklist, cli
) -> None:
    ids = cluster.node_ids()
    n = 20
    worklist = make_csv_worklist(tmp_path / "wl", n)
    gate = tmp_path / "go"
    spec = f"fake:delay=0.2,hold=ACC0008,gate={gate}"
    log = tmp_path / "cli.log"
    # A short explicit lease: the killed node's lease on ACC0008 expires seconds later, not after 600 s.
    proc = _launch(
        cli,
        cluster,
        pg_url,
        worklist,
        tmp_path / "ray",
        log,
        spec,
        "--run-name",
        "k9",
        "--lease-seconds",
        "6",
    )
    victim = None
    try:
        _wait_for(
            "ACC0008 in flight",
            lambda: _item_rows(pg_url, "k9").get("ACC0008", {}).get("status") == "leased",
            proc,
            log,
        )
        from triage.queue import owner_node

        at_kill = _item_rows(pg_url, "k9")
        held_by = owner_node(at_kill["ACC0008"]["owner"])
        victim = next(name for name in ("w1", "w2") if ids[name][:16] == held_by)
        survivor = "w2" if victim == "w1" else "w1"
        worker_pid = int(at_kill["ACC0008"]["owner"].split(":")[2])
        group = cluster.process_group(victim)
        cluster.script("ray_cluster_node_kill", victim)  # kill -9 of the whole node: raylet, agents, workers
        deadline = time.monotonic() + 60
        while _alive(group, group=True) or _alive(worker_pid):
            assert time.monotonic() < deadline, f"node {victim} still running after kill -9"
            time.sleep(0.1)
        after_kill = _item_rows(pg_url, "k9")
        lost = {
            a for a, r in after_kill.items() if r["status"] == "leased" and owner_node(r["owner"]) == held_by
        }
        assert lost == {"ACC0008"}  # one worker per node, one item at a time: the held one
        gate.touch()
        assert proc.wait(timeout=WAIT_S) == 0, _tail(log)
    finally:
        _stop(proc)
        if victim is not None:
            _restore(cluster, victim, ids[victim])

    rows = _item_rows(pg_url, "k9")
    assert len(rows) == n and all(r["status"] == "done" for r in rows.values()), rows
    # Done exactly once: the lost item took a second attempt, on the survivor; nothing else was redone.
    assert rows["ACC0008"]["attempts"] == 2 and owner_node(rows["ACC0008"]["owner"]) == ids[survivor][:16]
    assert {acc for acc, r in rows.items() if r["attempts"] != 1} == {"ACC0008"}, rows
    assert {owner_node(r["owner"]) for r in rows.values()} <= {ids["w1"][:16], ids["w2"][:16]}

    local_url = _local_run(worklist, tmp_path / "local", spec, store)
    assert snapshot(pg_url, "k9") == snapshot(local_url, "local")
    # The exports are equal but for the attempts column (2 for the item the lost node held).
    assert _csv_without(tmp_path / "ray" / "triage.csv", "attempts") == _csv_without(
        tmp_path / "local" / "triage.csv", "attempts"
    )


def _alive(pid: int, *, group: bool = False) -> bool:
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _restore(cluster: Cluster, name: str, old_id: str) -> None:
    """Starts the killed node again (same ports and resources) and waits until it has replaced the old one."""
    cluster.script("ray_cluster_node_restart", name)
    deadline = time.monotonic() + WAIT_S
    while True:
        ids = cluster.nodes().get(name, [])
        if len(ids) == 1 and ids[0] != old_id:
            return
        assert time.monotonic() < deadline, f"node {name} did not come back: {ids}"
        time.sleep(2)
