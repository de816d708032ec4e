"""``--engine ray``: the same workers as Ray tasks, claiming items through the same store leases.

Each task runs :func:`triage.worker.worker_loop` (one analyser per task, loaded once) against the run in the
store, so Ray adds scheduling across machines and nothing to the crash-safety design. What crosses the
network is the run's id and the worker's settings: each worker claims an item in the store and reads the study
itself (a file path every node sees, or the DICOMweb server), so no pixels go through the head.

Multi-node clusters:

- The store must be one every node reaches: PostgreSQL (``ZEBRA_STORE__URL``). A SQLite file is refused when
  the cluster has more than one live node (each node would write its own copy).
- A node lost mid-run (machine crash, ``kill -9``) loses only the leases of its workers: they expire after
  ``--lease-seconds`` and the other workers take the items over. Ray reschedules the lost task on another node
  (:data:`TASK_RETRIES` times) when one has room; the engine stops waiting for tasks once the run is finished.
- Results record the node that produced them: a Ray worker's owner id is ``ray@<node id>:<host>:<pid>:...``
  (:func:`triage.queue.producers`, :func:`triage.queue.owner_node`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from triage import queue
from triage.errors import WorkerCrashError
from zebra.config import ray_init_kwargs
from zebra.errors import ConfigError

if TYPE_CHECKING:
    from store import Store
    from triage.options import TriageOptions
    from triage.worker import WorkerConfig

log = logging.getLogger(__name__)


def ray_available() -> bool:
    """Whether ``ray`` can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


#: Times Ray reschedules a task whose process or node died (never for the task's own exceptions).
TASK_RETRIES = 3


def ray_task(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """Body of a Ray triage task: :func:`triage.worker.worker_main` with this node's id in the owner id."""
    import ray

    from triage.worker import worker_main

    return worker_main({**cfg_dict, "node": ray.get_runtime_context().get_node_id()})


def alive_nodes() -> list[dict[str, Any]]:
    """The live nodes of the connected cluster (``ray.nodes()`` entries)."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def check_store_reachable(store: Store, nodes: int) -> None:
    """Refuses a SQLite store for a cluster of more than one node.

    Raises:
        ConfigError: When ``nodes > 1`` and the store is SQLite.
    """
    if nodes > 1 and store.dialect == "sqlite":
        raise ConfigError(
            f"The Ray cluster has {nodes} nodes, but the store is a SQLite file that only this machine sees "
            "(every worker claims its studies in the store).",
            hint="Point ZEBRA_STORE__URL at a PostgreSQL database that every node reaches (run `zebra db "
            "upgrade` once), or use a one-node Ray (no --ray-address). See docs/triage.md.",
        )


def connect(store: Store, options: TriageOptions) -> bool:
    """Connects to the cluster at ``options.ray_address`` (or starts a local Ray) and checks the store suits it.

    Called before the run is created, so a refused configuration leaves nothing behind.

    Returns:
        Whether Ray was initialised here (the caller then shuts it down with :func:`disconnect`).

    Raises:
        ConfigError: When ray is not installed, or the cluster has several nodes and the store is SQLite.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "The Ray engine needs the 'ray' package.", hint="Install it with: pip install 'zebra-dx[ray]'."
        ) from exc
    started_here = False
    if not ray.is_initialized():
        ray.init(**ray_init_kwargs(options.ray_address, options.ray_num_cpus))
        started_here = True
    try:
        nodes = alive_nodes()
        check_store_reachable(store, len(nodes))
    except BaseException:
        disconnect(started_here)
        raise
    log.info("Ray: %d live node(s)", len(nodes))
    return started_here


def disconnect(started_here: bool) -> None:
    """Shuts Ray down if :func:`connect` initialised it."""
    if started_here:
        import ray

        ray.shutdown()


def run_ray(
    store: Store, cfg: WorkerConfig, options: TriageOptions, *, total: int, initial: int
) -> list[dict[str, Any]]:
    """Runs ``options.workers`` Ray tasks on the run and shows progress until the run is finished.

    Needs a connected Ray (:func:`connect`). Tasks are spread over the nodes (``SPREAD``). The loop ends when
    every task returned, or when the run has nothing pending or leased (tasks still queued then, such as one
    rescheduled after a lost node while the others finished the work, are cancelled).

    Returns:
        The statistics of the workers that returned.

    Raises:
        WorkerCrashError: When every task failed with items left.
    """
    import ray

    from triage.options import Progress, has_unfinished

    progress = None
    stats: list[dict[str, Any]] = []
    failures: list[str] = []
    try:
        remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, scheduling_strategy="SPREAD")(ray_task)
        cfg.parent_pid = None  # Ray owns the task processes; the leases protect the run
        progress = Progress(total, initial, options.progress)
        pending = [remote.remote(cfg.to_dict()) for _ in range(options.workers)]

        def collect(timeout: float) -> None:
            nonlocal pending
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=timeout)
            for ref in ready:
                try:
                    stats.append(ray.get(ref))
                except Exception as exc:  # a task's own failure, or its retries used up: the others go on
                    failures.append(type(exc).__name__)
                    log.error("a Ray triage task failed: %s", exc)

        while pending:
            collect(options.poll_s)
            counts = queue.counts(store, cfg.run_id)
            progress.set(counts)
            if pending and not has_unfinished(counts):
                # Finished for good (every item is done or error): running workers return within a poll;
                # a task Ray rescheduled after losing its node may wait for a free CPU forever.
                collect(max(2.0, 4 * options.poll_s))
                if pending:
                    log.info("run finished: cancelling %d Ray task(s) still queued", len(pending))
                    for ref in pending:
                        ray.cancel(ref, force=False)
                break
    finally:
        if progress is not None:
            progress.close()
    left = queue.counts(store, cfg.run_id)
    if failures and not stats and has_unfinished(left):
        raise WorkerCrashError(
            f"All {len(failures)} Ray triage tasks failed ({', '.join(sorted(set(failures)))}).",
            hint="See the log above, then run again with --resume.",
        )
    return stats


__all__ = [
    "TASK_RETRIES",
    "alive_nodes",
    "check_store_reachable",
    "connect",
    "disconnect",
    "ray_available",
    "ray_task",
    "run_ray",
]
