"""Leases: claims, expiry, stale owners, retries, dead local workers, idempotent run creation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from store import TriageItem, utcnow
from triage import queue
from triage.errors import RunExistsError
from triage.types import WorkItem


def _items(n: int) -> list[WorkItem]:
    return [WorkItem(item_key=f"k{i:02d}", accession=f"A{i}", study_path=f"/x/{i}.png") for i in range(n)]


def _open(store, n: int = 3, name: str = "run", resume: bool = False, items=None) -> queue.RunInfo:
    return queue.open_run(
        store, name=name, items=items or _items(n), worklist="wl", bundle=None, config={}, resume=resume
    )


def test_open_run_inserts_once_and_resume_adds_only_missing(store) -> None:
    info = _open(store, 3)
    assert info.created and info.n_items == 3
    with pytest.raises(RunExistsError):
        _open(store, 3)
    again = _open(store, items=_items(5), resume=True)
    assert again.id == info.id and not again.created and again.added == 2 and again.n_items == 5
    assert _open(store, items=_items(5), resume=True).added == 0
    assert queue.counts(store, info.id)["total"] == 5
    # Resume by id works too.
    assert (
        queue.open_run(
            store, name=str(info.id), items=[], worklist="wl", bundle=None, config={}, resume=True
        ).id
        == info.id
    )


def test_claims_are_exclusive_and_ordered(store) -> None:
    run = _open(store, 3).id
    a = queue.claim(store, run, "A", lease_s=60, max_attempts=3)
    b = queue.claim(store, run, "B", lease_s=60, max_attempts=3, limit=5)
    assert [lease.item_key for lease in a] == ["k00"]
    assert [lease.item_key for lease in b] == ["k01", "k02"]
    assert queue.claim(store, run, "C", lease_s=60, max_attempts=3) == []
    assert a[0].attempts == 1 and a[0].owner == "A"
    assert queue.counts(store, run)["leased"] == 3


def _expire(store, item_id: int) -> None:
    with store.session() as s:
        s.execute(
            update(TriageItem)
            .where(TriageItem.id == item_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_expired_lease_is_reclaimed_and_stale_owner_cannot_commit(store) -> None:
    run = _open(store, 1).id
    (old,) = queue.claim(store, run, "old", lease_s=60, max_attempts=3)
    assert queue.claim(store, run, "new", lease_s=60, max_attempts=3) == []  # lease still live
    _expire(store, old.item_id)
    (new,) = queue.claim(store, run, "new", lease_s=60, max_attempts=3)
    assert new.item_id == old.item_id and new.attempts == 2
    # The stale worker finishes late: its result is refused, and so is its failure report.
    assert queue.complete(store, old, result={"by": "old"}, priority=1.0) is False
    assert queue.fail(store, old, error="late", permanent=True, max_attempts=3) is None
    assert queue.complete(store, new, result={"by": "new"}, priority=2.0) is True
    # Idempotent: a second commit of the same lease changes nothing.
    assert queue.complete(store, new, result={"by": "again"}, priority=3.0) is False
    (row,) = queue.items(store, run)
    assert row["status"] == "done" and row["result"] == {"by": "new"} and row["priority"] == 2.0


def test_failures_retry_transient_errors_until_max_attempts(store) -> None:
    run = _open(store, 2).id
    (lease,) = queue.claim(store, run, "w", lease_s=60, max_attempts=2)
    assert queue.fail(store, lease, error="boom", permanent=False, max_attempts=2) == "pending"
    (lease,) = queue.claim(store, run, "w", lease_s=60, max_attempts=2)
    assert lease.item_key == "k00" and lease.attempts == 2
    assert queue.fail(store, lease, error="boom again", permanent=False, max_attempts=2) == "error"
    (other,) = queue.claim(store, run, "w", lease_s=60, max_attempts=2)
    assert queue.fail(store, other, error="bad file", permanent=True, max_attempts=2) == "error"
    rows = {r["item_key"]: r for r in queue.items(store, run)}
    assert rows["k00"]["error"] == "boom again" and rows["k00"]["attempts"] == 2
    assert rows["k01"]["attempts"] == 1 and rows["k01"]["status"] == "error"


def test_lost_worker_uses_up_attempts(store) -> None:
    run = _open(store, 1).id
    for attempt in (1, 2):
        (lease,) = queue.claim(store, run, f"w{attempt}", lease_s=60, max_attempts=2)
        _expire(store, lease.item_id)
    assert queue.claim(store, run, "w3", lease_s=60, max_attempts=2) == []
    (row,) = queue.items(store, run)
    assert row["status"] == "error" and "Gave up after 2" in row["error"]


def test_dead_local_owner_is_released_at_once(store) -> None:
    run = _open(store, 2).id
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(proc.stdout)
    live = queue.new_owner_id("t")
    dead = live.split(":")
    dead[2] = str(dead_pid)
    (a,) = queue.claim(store, run, ":".join(dead), lease_s=3600, max_attempts=3)
    (b,) = queue.claim(store, run, live, lease_s=3600, max_attempts=3)
    assert queue.release_dead_local_leases(store, run, max_attempts=3) == 1
    with store.session() as s:
        status = dict(
            s.execute(select(TriageItem.item_key, TriageItem.status).where(TriageItem.run_id == run)).all()
        )
    assert status == {a.item_key: "pending", b.item_key: "leased"}


def test_a_zombie_owner_counts_as_dead(store) -> None:
    """A killed worker not yet reaped (a zombie) still answers kill(pid, 0); its lease is released anyway."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    run = _open(store, 2).id
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 60
    # Not waited for: once it exits it stays a zombie of this process until wait().
    while not queue._is_zombie(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert queue._is_zombie(child.pid)
        assert not queue._is_zombie(os.getpid())
        owner = queue.new_owner_id("t").split(":")
        owner[2] = str(child.pid)
        queue.claim(store, run, ":".join(owner), lease_s=3600, max_attempts=3)
        assert queue.release_dead_local_leases(store, run, max_attempts=3) == 1
    finally:
        child.wait()


def test_finished_items_keep_the_worker_that_produced_them(store) -> None:
    run = _open(store, 3).id
    node = "94d8044360543e009a3b7a6d77298c0dbc07cae11e12188f6c2af58c"  # a Ray node id: 56 hex digits
    ray_owner = queue.new_owner_id("ray", node)
    assert len(ray_owner) <= 128 and queue.owner_node(ray_owner) == node[: queue.NODE_ID_CHARS]
    local_owner = queue.new_owner_id("local")
    assert queue.owner_node(local_owner) == local_owner.split(":")[1]  # no node: the host is the node
    (a,) = queue.claim(store, run, ray_owner, lease_s=60, max_attempts=1)
    (b,) = queue.claim(store, run, local_owner, lease_s=60, max_attempts=1)
    (c,) = queue.claim(store, run, local_owner, lease_s=60, max_attempts=2)
    assert queue.complete(store, a, result={"x": 1}, priority=1.0)
    assert queue.fail(store, b, error="bad input", permanent=True, max_attempts=1) == "error"
    assert queue.fail(store, c, error="transient", permanent=False, max_attempts=2) == "pending"
    # Done and error keep who produced them; an item handed back for a retry has no owner.
    assert queue.producers(store, run) == {"k00": ray_owner, "k01": local_owner}
    with store.session() as s:
        assert s.scalar(select(TriageItem.lease_owner).where(TriageItem.item_key == "k02")) is None
    assert queue.owner_node(None) is None
