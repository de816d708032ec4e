"""The worker loop shared by every engine: claim an item, analyse it, score it, commit it; repeat.

A worker builds its analyser once (models load once per process), then claims one item at a time. It stops
when nothing is left to claim and no other worker holds a live lease, when its parent process is gone (an
engine killed with ``kill -9`` must not leave workers running), or when ``stop`` says so. While other
workers hold leases it waits and tries again, so a lease left by a dead worker on another machine is taken
over once it expires.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from triage import media, priority, queue
from triage.agent_adapter import Analyser, AnalyserSpec, create_analyser
from triage.types import RESULT_SCHEMA, Analysis, WorkItem
from zebra.errors import ConfigError, DatasetError, IntakeError, NotFoundError, ZebraError

log = logging.getLogger(__name__)

#: Errors about the input itself: retrying cannot help, the item is marked ``error`` at once.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (IntakeError, NotFoundError, DatasetError)


@dataclass
class WorkerConfig:
    """Everything a worker needs (JSON-safe: it travels to spawned processes and Ray tasks).

    Attributes:
        store_url: Database URL (SQLite file or PostgreSQL; every worker must reach it).
        run_id: The run to work on.
        analyser: :meth:`AnalyserSpec.to_dict`.
        lease_s: Lease length in seconds; an item whose worker dies is claimable again after it.
        max_attempts: Attempts per item before a transient error (or a lost worker) becomes final.
        poll_s: Wait between claims while other workers hold the remaining items.
        owner_prefix: First part of the worker's owner id.
        parent_pid: Stop when the parent process (the engine) is no longer this one; ``None``: never.
        weights: Priority weights (:class:`triage.priority.PriorityWeights` fields), ``None``: defaults.
        threads: Torch / FAISS threads of this worker (``None``: leave the libraries' defaults).
        run_name: The run's name (result UIDs of the DICOMweb write-back derive from it).
        write_back: Store each DICOMweb study's results back to the server (:mod:`pacs.writeback`).
        node: The cluster node the worker runs on, recorded in its owner id (the Ray engine sets it inside
            the task); ``None``: the host is the node.
        require_path: A path the worker must see before it claims anything (the worklist of a file
            worklist): a cluster node without the shared storage stops at once instead of failing every
            study it claims as "not found".
    """

    store_url: str
    run_id: int
    analyser: dict[str, Any]
    lease_s: float = 600.0
    max_attempts: int = 3
    poll_s: float = 0.5
    owner_prefix: str = "local"
    parent_pid: int | None = None
    weights: dict[str, float] | None = None
    threads: int | None = None
    run_name: str | None = None
    write_back: bool = False
    node: str | None = None
    require_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def limit_threads(threads: int | None) -> None:
    """Sets torch's and FAISS's thread counts (two workers on two cores, each using both cores, run
    several times slower than with one thread each). ``None`` leaves them alone. Libraries not imported
    yet are not imported here (the fake analyser needs none): they read ``OMP_NUM_THREADS`` when they load.
    """
    if not threads:
        return
    n = int(threads)
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(n)


@dataclass
class WorkerStats:
    """What a worker did."""

    owner: str
    done: int = 0
    failed: int = 0
    retried: int = 0
    stale: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def build_result(
    item: WorkItem, analysis: Analysis, weights: priority.PriorityWeights | None = None
) -> dict[str, Any]:
    """The result JSON stored for an item (``TriageItem.result``), priority included.

    Deterministic for a deterministic analysis (no timestamps, no timings): a re-run gives equal JSON.
    """
    prio = priority.score(analysis, weights)
    overlay = None
    if analysis.overlay_png is not None:
        overlay = media.shrink_png(analysis.overlay_png)
    elif analysis.image is not None and analysis.heatmap is not None:
        overlay = media.overlay_png(analysis.image, analysis.heatmap)
    return {
        "schema": RESULT_SCHEMA,
        "item_key": item.item_key,
        "priority": prio,
        "differential": analysis.differential,
        "evidence": analysis.evidence,
        "abstained": analysis.abstained,
        "abstain_reason": analysis.abstain_reason,
        "findings": {
            "anomaly_score": analysis.anomaly_score,
            "gate": {
                "accepted": analysis.gate_accepted,
                "kind": analysis.gate_kind,
                "ood": analysis.ood_score,
            },
            "boxes": analysis.boxes,
            "caption": analysis.caption,
        },
        "change": None
        if analysis.change_label is None and not analysis.change_statement
        else {
            "label": analysis.change_label,
            "confidence": analysis.change_confidence,
            "statement": analysis.change_statement,
        },
        "rarity": {
            "nearest_similarity": analysis.nearest_similarity,
            "nearest_diagnosis": analysis.nearest_diagnosis,
            "text_support": analysis.text_support,
        },
        "has_prior": item.prior_path is not None,
        "analyser": analysis.analyser,
        "notes": analysis.notes,
        "media": {
            "thumbnail": media.b64(media.thumbnail_png(analysis.image))
            if analysis.image is not None
            else None,
            "overlay": media.b64(overlay),
        },
    }


def describe_error(exc: BaseException) -> str:
    """The message stored for a failed item: the typed error's message and hint, else the exception type
    and text (intake messages name files by base name only)."""
    if isinstance(exc, ZebraError):
        return f"{type(exc).__name__}: {exc.message}" + (f" {exc.hint}" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"


def process(
    store: Any,
    lease: queue.Lease,
    analyser: Analyser,
    cfg: WorkerConfig,
    stats: WorkerStats,
    weights: priority.PriorityWeights | None,
) -> None:
    """Processes one claimed item and commits its outcome (never raises for an item's own failure).

    A DICOMweb study's results are stored back to the server before the commit when ``cfg.write_back``
    (result UIDs derive from run and study, so a retry replaces what an earlier try stored).

    Raises:
        DicomwebError: With ``stops_run`` (the server is unreachable or refuses the credentials): the item
            goes back to ``pending`` with the reason, and the worker stops; ``--resume`` continues.
    """
    from pacs.source import forget, is_dicomweb

    item = lease.work_item()
    try:
        analysis = analyser.analyse(item)
        result = build_result(item, analysis, weights)
        if cfg.write_back and is_dicomweb(item.study_path):
            from pacs.writeback import write_results

            result["pacs"] = write_results(
                item,
                analysis,
                result,
                run_name=cfg.run_name or str(cfg.run_id),
                bundle=cfg.analyser.get("bundle"),
            )
    except Exception as exc:  # one item's failure must not stop the run
        if getattr(exc, "stops_run", False):
            # Not this study's fault: give it back untouched (attempt not held against it) and stop.
            queue.fail(
                store, lease, error=describe_error(exc), permanent=False, max_attempts=lease.attempts + 1
            )
            log.error("item %s: %s; the worker stops (resume the run later)", item.log_id, type(exc).__name__)
            raise
        permanent = isinstance(exc, PERMANENT_ERRORS)
        status = queue.fail(
            store, lease, error=describe_error(exc), permanent=permanent, max_attempts=cfg.max_attempts
        )
        log.warning(
            "item %s failed (attempt %d, %s): %s",
            item.log_id,
            lease.attempts,
            status or "lease lost",
            type(exc).__name__,
        )
        log.debug("item %s failure", item.log_id, exc_info=True)
        if status == "error":
            stats.failed += 1
            stats.errors.append(type(exc).__name__)
        elif status == "pending":
            stats.retried += 1
        else:
            stats.stale += 1
        return
    finally:
        if is_dicomweb(item.study_path):
            forget(item.study_path)
            if item.prior_path:
                forget(item.prior_path)
    if queue.complete(store, lease, result=result, priority=result["priority"]["score"]):
        stats.done += 1
    else:
        stats.stale += 1


def worker_loop(
    cfg: WorkerConfig,
    *,
    analyser: Analyser | None = None,
    store: Any | None = None,
    stop: Callable[[], bool] | None = None,
    on_item: Callable[[WorkerStats], None] | None = None,
) -> WorkerStats:
    """Runs the worker until the run has nothing left for it (module docstring).

    Args:
        cfg: The worker's configuration.
        analyser: A ready analyser (tests, in-process runs); built from ``cfg.analyser`` when ``None``.
        store: An open store; opened from ``cfg.store_url`` when ``None``.
        stop: Polled between items; ``True`` stops the worker.
        on_item: Called after each item (progress display of in-process runs).

    Returns:
        What the worker did.
    """
    from store import Store

    start = time.monotonic()
    own_store = store is None
    store = store or Store(cfg.store_url)
    stats = WorkerStats(owner=queue.new_owner_id(cfg.owner_prefix, cfg.node))
    weights = priority.PriorityWeights(**cfg.weights) if cfg.weights else None
    try:
        left = queue.counts(store, cfg.run_id)
        if left["pending"] + left["leased"] == 0:
            # A late worker (a Ray task rescheduled after its node died) must not load models for nothing.
            return stats
        if cfg.require_path and not os.path.exists(cfg.require_path):
            # The base name only: paths may name patients, and this message reaches the engine's log.
            raise ConfigError(
                f"This worker's machine does not see the worklist ({os.path.basename(cfg.require_path)}).",
                hint="Mount the studies at the same absolute path on every node of the cluster "
                "(docs/triage.md, multi-node triage).",
            )
        if analyser is None:
            limit_threads(cfg.threads)
            analyser = create_analyser(AnalyserSpec.from_dict(cfg.analyser))
        stats.load_seconds = time.monotonic() - start
        while True:
            if stop is not None and stop():
                break
            if cfg.parent_pid is not None and os.getppid() != cfg.parent_pid:
                log.warning("engine process gone: worker %s stops", stats.owner)
                break
            leases = queue.claim(
                store, cfg.run_id, stats.owner, lease_s=cfg.lease_s, max_attempts=cfg.max_attempts
            )
            if not leases:
                if queue.next_expiry(store, cfg.run_id) is None:
                    break  # nothing pending, nothing leased by anyone: the run is finished
                time.sleep(cfg.poll_s)
                continue
            for lease in leases:
                process(store, lease, analyser, cfg, stats, weights)
                if on_item is not None:
                    on_item(stats)
    finally:
        stats.seconds = time.monotonic() - start
        if own_store:
            store.dispose()
    return stats


def worker_main(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """Entry point of a spawned worker process or a Ray task: sets up logging, runs :func:`worker_loop`."""
    from zebra.config import get_settings
    from zebra.logs import setup_logging

    setup_logging(get_settings().log_level)
    return worker_loop(WorkerConfig(**cfg_dict)).to_dict()
