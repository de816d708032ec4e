"""``--engine ray``: the same workers as Ray tasks, claiming items through the same store leases.

Each task runs :func:`triage.worker.worker_main` (one analyser per task, loaded once) against the run in the
store, so Ray adds scheduling across machines and nothing to the crash-safety design: a task or node that
dies loses only its lease. Every worker must reach the database: a local SQLite file serves a one-machine
Ray; a multi-machine cluster needs PostgreSQL (``ZEBRA_STORE__URL``) and the worklist's files on every node.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from triage import queue
from triage.errors import WorkerCrashError
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


def _zebra_env() -> dict[str, str]:
    # Local Ray workers inherit the environment, but a cluster's do not: pass Zebra's settings explicitly.
    return {k: v for k, v in os.environ.items() if k.startswith("ZEBRA_")}


def run_ray(
    store: Store, cfg: WorkerConfig, options: TriageOptions, *, total: int, initial: int
) -> list[dict[str, Any]]:
    """Runs ``options.workers`` Ray tasks on the run and shows progress until they finish.

    Returns:
        The workers' statistics.

    Raises:
        ConfigError: When ray is not installed.
        WorkerCrashError: When every task failed with items left.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "The Ray engine needs the 'ray' package.", hint="Install it with: pip install 'zebra-dx[ray]'."
        ) from exc
    from triage.options import Progress
    from triage.worker import worker_main

    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "runtime_env": {"env_vars": _zebra_env()},
            "include_dashboard": False,
            "log_to_driver": True,
            "configure_logging": False,
        }
        if options.ray_address:
            kwargs["address"] = options.ray_address
        elif options.ray_num_cpus:
            kwargs["num_cpus"] = int(options.ray_num_cpus)
        ray.init(**kwargs)
        started_here = True
    remote = ray.remote(num_cpus=1, max_retries=0)(worker_main)
    cfg.parent_pid = None  # Ray owns the task processes; the leases protect the run
    progress = Progress(total, initial, options.progress)
    stats: list[dict[str, Any]] = []
    failures: list[str] = []
    try:
        pending = [remote.remote(cfg.to_dict()) for _ in range(options.workers)]
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=options.poll_s)
            for ref in ready:
                try:
                    stats.append(ray.get(ref))
                except Exception as exc:  # a task's own failure: the others go on
                    failures.append(type(exc).__name__)
                    log.error("a Ray triage task failed: %s", exc)
            progress.set(queue.counts(store, cfg.run_id))
            if not ready:
                time.sleep(0)
        progress.set(queue.counts(store, cfg.run_id))
    finally:
        progress.close()
        if started_here:
            ray.shutdown()
    left = queue.counts(store, cfg.run_id)
    if failures and not stats and (left["pending"] or left["leased"]):
        raise WorkerCrashError(
            f"All {len(failures)} Ray triage tasks failed ({', '.join(sorted(set(failures)))}).",
            hint="See the log above, then run again with --resume.",
        )
    return stats


__all__ = ["ray_available", "run_ray"]
