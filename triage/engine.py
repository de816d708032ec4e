"""Runs a triage: the run in the store, the workers (local processes or Ray), the progress bar, the exports.

``run_triage`` is idempotent and resumable: run it again with ``resume=True`` after any crash (even
``kill -9`` of the engine or a worker) and it finishes the items left, reusing every committed result.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from store import RunStatus, Store, TriageRun
from triage import queue
from triage.agent_adapter import AnalyserSpec
from triage.errors import WorkerCrashError
from triage.options import ENGINES, Progress, TriageOptions, finished_count, has_unfinished
from triage.worker import WorkerConfig, worker_loop, worker_main
from triage.worklist import read_worklist

log = logging.getLogger(__name__)


@dataclass
class TriageSummary:
    """What a triage call did.

    Attributes:
        run_id, run_name: The run. resumed: Whether an existing run was continued.
        counts: Items per status at the end (``done``, ``error``, ``pending``, ``leased``, ``total``).
        processed: Items finished (done or error) by this call.
        elapsed_s: Wall time of this call (worklist reading and exports included).
        work_s: Wall time from starting the workers to the last item finished.
        studies_per_minute: ``processed / work_s * 60``.
        outputs: Paths of the CSV, HTML and summary JSON.
        nodes: Items finished per node (the host, or the Ray node id) over the whole run.
    """

    run_id: int
    run_name: str
    resumed: bool
    engine: str
    workers: int
    analyser: str
    counts: dict[str, int]
    processed: int
    elapsed_s: float
    work_s: float
    studies_per_minute: float | None
    outputs: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every item is done or in error."""
        return self.counts.get("pending", 0) == 0 and self.counts.get("leased", 0) == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {**asdict(self), "complete": self.complete}


def open_store(store: Store | None = None) -> Store:
    """The store from the settings, with its schema ready (SQLite is migrated; PostgreSQL is checked)."""
    store = store or Store.from_settings()
    queue.ensure_schema(store)
    return store


def default_run_name(worklist: Path) -> str:
    """``<worklist name>-<UTC time>``."""
    return f"{worklist.stem or worklist.name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _latest_run_for(store: Store, worklist: str) -> str | None:
    from sqlalchemy import select

    with store.session() as s:
        return s.scalar(
            select(TriageRun.name)
            .where(TriageRun.worklist == worklist)
            .order_by(TriageRun.id.desc())
            .limit(1)
        )


def run_triage(
    worklist: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    analyser: AnalyserSpec | None = None,
    options: TriageOptions | None = None,
    run_name: str | None = None,
    resume: bool = False,
    store: Store | None = None,
) -> TriageSummary:
    """Triages a worklist: creates (or resumes) the run, processes every item, writes the exports.

    Args:
        worklist: CSV/TSV file, DICOM folder tree, NOVA data set, or ``dicomweb:QUERY`` (docs/pacs.md).
        out: Output folder (``triage.csv``, ``triage.html``, ``summary.json``).
        analyser: Which analyser the workers build (default: the agent with the settings' backends).
        options: Engine options.
        run_name: Name of the run; default ``<worklist name>-<time>``, or with ``resume`` the newest run of
            the same worklist.
        resume: Continue the run of that name (or create it when there is none).
        store: The store (default: from the settings).

    Raises:
        WorklistError: Bad worklist. RunExistsError: Name taken without ``resume``.
        WorkerCrashError: Every worker stopped while items were left (resume to continue).
    """
    started = time.monotonic()
    options = (options or TriageOptions()).validate()
    analyser = analyser or AnalyserSpec()
    from pacs.source import is_dicomweb

    dicomweb = is_dicomweb(str(worklist))
    # A DICOMweb query is not a path: it is searched as given (and its run named ``dicomweb-<time>``).
    source: Any = str(worklist) if dicomweb else Path(worklist).expanduser().resolve()
    items = read_worklist(source, kind=options.kind)  # type: ignore[arg-type]
    store = open_store(store)
    stack_has_ray = False
    with ExitStack() as stack:
        if options.engine == "ray" and options.ray_address:
            from triage import ray_engine

            # Before the run exists: a cluster the store does not suit (SQLite, several nodes) leaves nothing.
            stack.callback(ray_engine.disconnect, ray_engine.connect(store, options))
            stack_has_ray = True
        if run_name is None and resume:
            run_name = _latest_run_for(store, str(source))
        name = run_name or default_run_name(Path("dicomweb") if dicomweb else source)
        write_back = options.write_back
        if write_back is None:
            from zebra.config import get_settings

            write_back = bool(get_settings().dicomweb.write_back)
        config = {
            "analyser": analyser.to_dict(),
            "engine": options.engine,
            "max_attempts": options.max_attempts,
        }
        info = queue.open_run(
            store,
            name=name,
            items=items,
            worklist=str(source),
            bundle=analyser.bundle,
            config=config,
            resume=resume,
        )
        queue.release_dead_local_leases(store, info.id, max_attempts=options.max_attempts)
        queue.set_run_status(store, info.id, RunStatus.RUNNING)
        before = queue.counts(store, info.id)
        cfg = WorkerConfig(
            store_url=store.url.render_as_string(hide_password=False),
            run_id=info.id,
            analyser=analyser.to_dict(),
            lease_s=options.lease_s,
            max_attempts=options.max_attempts,
            poll_s=options.poll_s,
            owner_prefix=options.engine,
            weights=options.weights,
            threads=options.worker_threads(),
            run_name=info.name,
            write_back=bool(write_back and dicomweb),
            require_path=None if dicomweb else str(source),
        )
        work_start = time.monotonic()
        if has_unfinished(before):
            if options.engine == "ray":
                from triage import ray_engine

                if not stack_has_ray:
                    stack.callback(ray_engine.disconnect, ray_engine.connect(store, options))
                    stack_has_ray = True
                ray_engine.run_ray(store, cfg, options, total=before["total"], initial=finished_count(before))
            elif options.workers == 1:
                _run_in_process(store, cfg, options, before)
            else:
                _run_processes(store, cfg, options, before)
        work_s = time.monotonic() - work_start
        after = queue.counts(store, info.id)
        finished = not has_unfinished(after)
        queue.set_run_status(store, info.id, RunStatus.DONE if finished else RunStatus.RUNNING)
        from triage.export import write_exports

        outputs = write_exports(queue.items(store, info.id), Path(out), run_name=info.name)
        processed = finished_count(after) - finished_count(before)
        summary = TriageSummary(
            run_id=info.id,
            run_name=info.name,
            resumed=not info.created,
            engine=options.engine,
            workers=options.workers,
            analyser=analyser.analyser,
            counts=after,
            processed=processed,
            elapsed_s=round(time.monotonic() - started, 3),
            work_s=round(work_s, 3),
            studies_per_minute=round(processed / work_s * 60, 2) if processed and work_s > 0 else None,
            outputs={k: str(v) for k, v in outputs.items()},
            nodes=_per_node(store, info.id),
        )
        summary_path = Path(out) / "summary.json"
        summary.outputs["summary"] = str(summary_path)
        summary_path.write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
        if not finished:
            raise WorkerCrashError(
                f"Triage run {info.name!r} stopped with {after['pending'] + after['leased']} item(s) left.",
                hint="See the log for why the workers stopped, then run again with --resume.",
            )
        return summary


def _per_node(store: Store, run_id: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for owner in queue.producers(store, run_id).values():
        node = queue.owner_node(owner)
        if node:
            out[node] = out.get(node, 0) + 1
    return dict(sorted(out.items()))


def _run_in_process(store: Store, cfg: WorkerConfig, options: TriageOptions, before: dict[str, int]) -> None:
    progress = Progress(before["total"], finished_count(before), options.progress)
    try:
        stats = worker_loop(
            cfg, store=store, on_item=lambda _s: progress.set(queue.counts(store, cfg.run_id))
        )
    finally:
        progress.close()
    log.info("worker %s: %d done, %d errors, %.1f s", stats.owner, stats.done, stats.failed, stats.seconds)


def _run_processes(store: Store, cfg: WorkerConfig, options: TriageOptions, before: dict[str, int]) -> None:
    ctx = mp.get_context("spawn")  # fresh interpreters: intake is not thread-safe, torch does not like fork
    cfg.parent_pid = os.getpid()
    procs = [
        ctx.Process(target=worker_main, args=(cfg.to_dict(),), name=f"triage-worker-{i}", daemon=True)
        for i in range(options.workers)
    ]
    progress = Progress(before["total"], finished_count(before), options.progress)
    try:
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(timeout=options.poll_s / len(procs))
            progress.set(queue.counts(store, cfg.run_id))
        progress.set(queue.counts(store, cfg.run_id))
    except BaseException:
        # Ctrl-C or an engine error: stop the workers; their leases are released as dead on the next resume.
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10)
        raise
    finally:
        progress.close()
    codes = [p.exitcode for p in procs]
    if all(code != 0 for code in codes) and has_unfinished(queue.counts(store, cfg.run_id)):
        raise WorkerCrashError(
            f"All {len(procs)} triage workers stopped (exit codes {codes}) with items left.",
            hint="See the log above (the analyser may not load: try --analyser fake to check the pipeline), "
            "then run again with --resume.",
        )
    if any(code != 0 for code in codes):
        log.warning("some triage workers stopped early (exit codes %s)", codes)


__all__ = ["ENGINES", "TriageOptions", "TriageSummary", "open_store", "run_triage"]
