"""The run and its items in the store: creation/resumption, lease claims, fenced commits, retries.

Crash safety rests on four rules:

1. Items are inserted once, with the run, in one transaction; ``(run_id, item_key)`` is unique, so a resumed
   run can only add what is missing, never a duplicate.
2. A worker *claims* an item in its own write transaction (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR
   UPDATE SKIP LOCKED`` on PostgreSQL): status ``leased``, ``lease_owner`` = the worker's id,
   ``lease_expires_at`` = now + lease, ``attempts + 1``. Pending items and items whose lease expired are
   claimable; a worker killed mid-item therefore loses only its lease, which expires (or is released at
   once by :func:`release_dead_local_leases` when its process is gone).
3. A result is committed by one conditional ``UPDATE ... WHERE status = 'leased' AND lease_owner = :me AND
   attempts = :my_attempt``: a stale worker whose lease was taken over cannot overwrite the new owner's work,
   and a commit happens at most once (idempotent).
4. A failure records the message and either returns the item to ``pending`` (transient errors, while
   ``attempts < max_attempts``) or marks it ``error`` (input errors, or attempts used up); the run goes on.

A finished item keeps in ``lease_owner`` the worker that committed its outcome (:func:`producers`), so a run
spread over a cluster records which node produced each result (the Ray engine's owner ids name the node).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from store import ItemStatus, RunStatus, Store, TriageItem, TriageRun, utcnow
from triage.errors import RunExistsError
from triage.types import WorkItem

log = logging.getLogger(__name__)

#: Longest error message kept per item.
MAX_ERROR_CHARS = 2000
#: Items inserted per statement batch when a run is created.
_INSERT_BATCH = 500
#: Characters of a node id kept in a worker id (Ray's are 56 hex digits; 16 are unique in any cluster and keep
#: the id within the 128 characters of ``lease_owner``).
NODE_ID_CHARS = 16


@dataclass(frozen=True)
class RunInfo:
    """A run as the engine needs it."""

    id: int
    name: str
    created: bool
    n_items: int
    added: int = 0


@dataclass(frozen=True)
class Lease:
    """A claimed item: what the worker needs to process it and to commit its result."""

    item_id: int
    run_id: int
    item_key: str
    accession: str | None
    study_path: str | None
    prior_path: str | None
    history: str | None
    owner: str
    attempts: int
    expires_at: datetime

    def work_item(self) -> WorkItem:
        """The item as the analysers see it."""
        return WorkItem(
            item_key=self.item_key,
            accession=self.accession,
            study_path=self.study_path or "",
            prior_path=self.prior_path,
            history=self.history,
        )


def new_owner_id(prefix: str = "w", node: str | None = None) -> str:
    """A unique worker id ``<prefix>[@<node>]:<host>:<pid>:<random>``; host and pid let a restarted engine on
    the same machine release the leases of its dead workers at once.

    Args:
        prefix: The engine (``local``, ``ray``).
        node: The cluster node the worker runs on (the Ray engine gives its node id, cut to
            :data:`NODE_ID_CHARS`); ``None``: the host name is the node.
    """
    head = f"{prefix}@{node[:NODE_ID_CHARS]}" if node else prefix
    return f"{head}:{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_node(owner: str | None) -> str | None:
    """The node of a worker id (:func:`new_owner_id`): its ``@<node>`` part, else its host."""
    if not owner:
        return None
    parts = owner.split(":")
    first = parts[0]
    if "@" in first:
        return first.split("@", 1)[1]
    return parts[1] if len(parts) > 1 else None


def _owner_pid_on_this_host(owner: str) -> int | None:
    parts = owner.split(":")
    if len(parts) < 4 or parts[1] != socket.gethostname()[:60]:
        return None
    try:
        return int(parts[2])
    except ValueError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed worker whose parent died too waits as a zombie until init reaps it; ``kill(pid, 0)`` still
    succeeds on it, but it holds no lease any more (seen in containers whose init reaps late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux): trust kill(pid, 0)
    # The state follows the command name, which is in parentheses and may itself hold spaces or ')'.
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "Z"


# ---------------------------------------------------------------------------------------------------- runs
def open_run(
    store: Store,
    *,
    name: str,
    items: Sequence[WorkItem],
    worklist: str,
    bundle: str | None,
    config: dict[str, Any],
    resume: bool,
) -> RunInfo:
    """Creates the run with its items, or (``resume``) reopens the newest run of that name.

    A resumed run gets the worklist's items it does not have yet (a worklist that grew); items it has are
    left as they are, whatever their state.

    Raises:
        RunExistsError: When a run of that name exists and ``resume`` is false.

    ``resume`` of an unknown name creates the run (so one command line serves the first run and every
    restart); ``name`` may also be the id of an existing run when resuming.
    """
    with store.session(immediate=True) as s:
        run = s.scalar(select(TriageRun).where(TriageRun.name == name).order_by(TriageRun.id.desc()).limit(1))
        if run is None and resume and name.isdigit():
            run = s.get(TriageRun, int(name))
        if run is not None and not resume:
            raise RunExistsError(
                f"A triage run named {name!r} exists already (run {run.id}).",
                hint="Pass --resume to continue it, or --run-name with a new name.",
            )
        created = run is None
        if run is None:
            run = TriageRun(
                name=name, worklist=worklist, bundle=bundle, config=config, status=RunStatus.PENDING.value
            )
            s.add(run)
            s.flush()
        have = set(s.scalars(select(TriageItem.item_key).where(TriageItem.run_id == run.id)))
        missing = [it for it in items if it.item_key not in have]
        for start in range(0, len(missing), _INSERT_BATCH):
            s.execute(
                TriageItem.__table__.insert(),
                [
                    {
                        "run_id": run.id,
                        "item_key": it.item_key,
                        "accession": it.accession,
                        "study_path": it.study_path,
                        "prior_path": it.prior_path,
                        "history": it.history,
                        "status": ItemStatus.PENDING.value,
                        "attempts": 0,
                        "updated_at": utcnow(),
                    }
                    for it in missing[start : start + _INSERT_BATCH]
                ],
            )
        if resume and not created:
            run.status = RunStatus.RUNNING.value
            run.finished_at = None
        n_items = s.scalar(select(func.count()).where(TriageItem.run_id == run.id)) or 0
        info = RunInfo(id=run.id, name=run.name, created=created, n_items=int(n_items), added=len(missing))
    log.info(
        "triage run %d %s: %d item(s), %d new",
        info.id,
        "created" if created else "resumed",
        n_items,
        len(missing),
    )
    return info


def set_run_status(store: Store, run_id: int, status: RunStatus) -> None:
    """Sets the run's status (and ``finished_at`` when done or failed)."""
    with store.session() as s:
        values: dict[str, Any] = {"status": status.value}
        values["finished_at"] = utcnow() if status in (RunStatus.DONE, RunStatus.FAILED) else None
        s.execute(update(TriageRun).where(TriageRun.id == run_id).values(**values))


def counts(store: Store, run_id: int) -> dict[str, int]:
    """Items of the run per status (every status present, 0 when none) and ``total``."""
    with store.session() as s:
        rows = s.execute(
            select(TriageItem.status, func.count())
            .where(TriageItem.run_id == run_id)
            .group_by(TriageItem.status)
        ).all()
    out = {status.value: 0 for status in ItemStatus}
    for status, n in rows:
        out[str(status)] = int(n)
    out["total"] = sum(out[s.value] for s in ItemStatus)
    return out


# ---------------------------------------------------------------------------------------------------- leases
def claim(
    store: Store, run_id: int, owner: str, *, lease_s: float, max_attempts: int, limit: int = 1
) -> list[Lease]:
    """Claims up to ``limit`` claimable items of the run for ``owner`` (see the module docstring).

    Expired leases whose item has used up its attempts are marked ``error`` instead of being claimed again
    (an item that kills its worker every time must not stall the run).
    """
    now = utcnow()
    expires = now + timedelta(seconds=float(lease_s))
    with store.session(immediate=True) as s:
        exhausted = s.execute(
            update(TriageItem)
            .where(
                TriageItem.run_id == run_id,
                TriageItem.status == ItemStatus.LEASED.value,
                TriageItem.lease_expires_at < now,
                TriageItem.attempts >= max_attempts,
            )
            .values(
                status=ItemStatus.ERROR.value,
                error=f"Gave up after {max_attempts} attempt(s): the worker stopped (killed or crashed) while "
                "processing this item.",
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
        )
        if exhausted.rowcount:
            log.warning(
                "%d item(s) gave up after their worker was lost %d time(s)", exhausted.rowcount, max_attempts
            )
        query = (
            select(TriageItem)
            .where(
                TriageItem.run_id == run_id,
                (TriageItem.status == ItemStatus.PENDING.value)
                | ((TriageItem.status == ItemStatus.LEASED.value) & (TriageItem.lease_expires_at < now)),
            )
            .order_by(TriageItem.id)
            .limit(max(1, int(limit)))
        )
        if store.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(s.scalars(query))
        leases = []
        for row in rows:
            row.status = ItemStatus.LEASED.value
            row.lease_owner = owner
            row.lease_expires_at = expires
            row.attempts = int(row.attempts or 0) + 1
            row.updated_at = now
            leases.append(
                Lease(
                    item_id=row.id,
                    run_id=run_id,
                    item_key=row.item_key,
                    accession=row.accession,
                    study_path=row.study_path,
                    prior_path=row.prior_path,
                    history=row.history,
                    owner=owner,
                    attempts=row.attempts,
                    expires_at=expires,
                )
            )
    return leases


def complete(store: Store, lease: Lease, *, result: dict[str, Any], priority: float | None) -> bool:
    """Commits the item's result if ``lease`` still holds it; returns whether it did.

    ``False`` means the lease was lost (expired and taken over, or the item already finished): the result
    is discarded and nothing changes.
    """
    with store.session() as s:
        res = s.execute(
            update(TriageItem)
            .where(*_held_by(lease))
            .values(
                status=ItemStatus.DONE.value,
                result=result,
                priority=priority,
                error=None,
                lease_owner=lease.owner,  # kept: who produced the result (module docstring)
                lease_expires_at=None,
                updated_at=utcnow(),
            )
        )
        ok = res.rowcount == 1
    if not ok:
        log.warning("stale lease on item %d: result discarded (another worker owns it now)", lease.item_id)
    return ok


def fail(store: Store, lease: Lease, *, error: str, permanent: bool, max_attempts: int) -> str | None:
    """Records a failure of ``lease``'s item; returns its new status, or ``None`` when the lease was lost.

    Args:
        error: The message (cut to :data:`MAX_ERROR_CHARS`); never put identifiers in it.
        permanent: The input itself is at fault (unreadable file ...): no retry.
        max_attempts: Attempts after which a transient error becomes final.
    """
    final = permanent or lease.attempts >= max_attempts
    status = ItemStatus.ERROR if final else ItemStatus.PENDING
    with store.session() as s:
        res = s.execute(
            update(TriageItem)
            .where(*_held_by(lease))
            .values(
                status=status.value,
                error=error[:MAX_ERROR_CHARS],
                lease_owner=lease.owner if final else None,
                lease_expires_at=None,
                updated_at=utcnow(),
            )
        )
        ok = res.rowcount == 1
    return status.value if ok else None


def _held_by(lease: Lease) -> tuple[Any, ...]:
    return (
        TriageItem.id == lease.item_id,
        TriageItem.status == ItemStatus.LEASED.value,
        TriageItem.lease_owner == lease.owner,
        TriageItem.attempts == lease.attempts,
    )


def release_dead_local_leases(store: Store, run_id: int, *, max_attempts: int) -> int:
    """Returns to ``pending`` the leases of workers that ran on this machine and whose process is gone.

    Leases of other machines, and of live processes here, are left to expire. The lost attempt stays counted:
    an item whose attempts are used up becomes ``error`` instead.
    """
    with store.session(immediate=True) as s:
        rows = s.execute(
            select(TriageItem.id, TriageItem.lease_owner, TriageItem.attempts).where(
                TriageItem.run_id == run_id, TriageItem.status == ItemStatus.LEASED.value
            )
        ).all()
        dead = [
            (item_id, attempts)
            for item_id, owner, attempts in rows
            if owner and (pid := _owner_pid_on_this_host(owner)) is not None and not _pid_alive(pid)
        ]
        retry = [i for i, attempts in dead if attempts < max_attempts]
        give_up = [i for i, attempts in dead if attempts >= max_attempts]
        now = utcnow()
        for ids, values in (
            (retry, {"status": ItemStatus.PENDING.value}),
            (
                give_up,
                {
                    "status": ItemStatus.ERROR.value,
                    "error": f"Gave up after {max_attempts} attempt(s): the worker stopped (killed or crashed) "
                    "while processing this item.",
                },
            ),
        ):
            if ids:
                s.execute(
                    update(TriageItem)
                    .where(TriageItem.id.in_(ids), TriageItem.status == ItemStatus.LEASED.value)
                    .values(**values, lease_owner=None, lease_expires_at=None, updated_at=now)
                )
    if dead:
        log.info("released %d lease(s) of dead local workers", len(dead))
    return len(dead)


def next_expiry(store: Store, run_id: int) -> datetime | None:
    """The earliest expiry of a live lease of the run, or ``None`` when nothing is leased."""
    with store.session() as s:
        return s.scalar(
            select(func.min(TriageItem.lease_expires_at)).where(
                TriageItem.run_id == run_id, TriageItem.status == ItemStatus.LEASED.value
            )
        )


def producers(store: Store, run_id: int) -> dict[str, str | None]:
    """``item_key -> worker id`` of the worker that committed each finished item's outcome (``None`` for items
    not finished, or given up after their worker was lost)."""
    with store.session() as s:
        rows = s.execute(
            select(TriageItem.item_key, TriageItem.lease_owner).where(
                TriageItem.run_id == run_id,
                TriageItem.status.in_((ItemStatus.DONE.value, ItemStatus.ERROR.value)),
            )
        ).all()
    return {key: owner for key, owner in rows}


def items(store: Store, run_id: int) -> list[dict[str, Any]]:
    """Every item of the run as a plain dictionary (for the exports), in id order."""
    with store.session() as s:
        rows = s.scalars(select(TriageItem).where(TriageItem.run_id == run_id).order_by(TriageItem.id)).all()
        return [
            {
                "item_key": r.item_key,
                "accession": r.accession,
                "status": r.status,
                "priority": r.priority,
                "attempts": r.attempts,
                "result": r.result,
                "error": r.error,
            }
            for r in rows
        ]


def ensure_schema(store: Store) -> None:
    """Migrates a SQLite database (idempotent); checks a PostgreSQL one is at head.

    Raises:
        StoreNotMigratedError: PostgreSQL behind; the hint says to run ``zebra db upgrade``.
    """
    if store.dialect == "sqlite":
        try:
            store.upgrade()
        except IntegrityError as exc:  # two engines migrating at once: the other one won
            log.debug("concurrent migration: %s", exc)
        return
    store.check()


__all__ = [
    "Lease",
    "RunInfo",
    "claim",
    "complete",
    "counts",
    "ensure_schema",
    "fail",
    "items",
    "new_owner_id",
    "next_expiry",
    "open_run",
    "owner_node",
    "producers",
    "release_dead_local_leases",
    "set_run_status",
]
