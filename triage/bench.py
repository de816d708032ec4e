"""``zebra bench triage``: studies per minute of the triage engines on a generated synthetic worklist."""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from triage.agent_adapter import AnalyserSpec, create_analyser
from zebra.errors import ZebraError

log = logging.getLogger(__name__)


def bench_triage(
    *,
    n: int = 60,
    workers: Sequence[int] = (1, 2),
    engines: Sequence[str] = ("local", "ray"),
    analyser: AnalyserSpec | None = None,
    fallback: str | None = "fake",
    seed: int = 0,
    work_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Triages a synthetic NOVA worklist of ``n`` cases with every engine x worker count; returns JSON data.

    Each configuration gets a fresh SQLite database. ``studies_per_minute`` counts from the workers' start
    (model loading included) to the last item; ``steady_studies_per_minute`` from the first item committed
    to the last (models loaded, workers busy); ``studies_per_minute_total`` also counts reading the
    worklist, creating the run and writing the exports.

    Args:
        n: Cases in the worklist (about half have a prior).
        workers: Worker counts to measure.
        engines: ``local`` and/or ``ray`` (Ray is skipped with a note when not installed).
        analyser: The analyser (default: the agent with the settings' backends).
        fallback: Analyser used when ``analyser`` cannot be built here (e.g. the built-in weights are not
            installed), so the engine itself is still measured; ``None`` reports the failure only.
        seed: Seed of the synthetic data.
        work_dir: Scratch folder (default: a temporary folder, deleted after).
    """
    from store import Store
    from triage.engine import TriageOptions, run_triage
    from triage.ray_engine import ray_available
    from triage.worklist import read_worklist
    from zebra.datasets import generate_synthetic

    analyser = analyser or AnalyserSpec()
    report: dict[str, Any] = {
        "n": n,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "requested_analyser": analyser.analyser,
        "notes": [],
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="zebra-bench-triage-", dir=work_dir) as tmp:
        root = Path(tmp)
        t0 = time.monotonic()
        generate_synthetic(root / "worklist", n_cases=n, seed=seed)
        report["generate_s"] = round(time.monotonic() - t0, 2)
        # Smoke check: build the analyser and run it on one study, so a missing model or bundle is reported
        # once (and the fallback measured) instead of as n item errors.
        t0 = time.monotonic()
        try:
            built = create_analyser(analyser)
            report["analyser_load_s"] = round(time.monotonic() - t0, 2)
            t0 = time.monotonic()
            built.analyse(read_worklist(root / "worklist")[0])
            report["first_study_s"] = round(time.monotonic() - t0, 2)
            del built
        except ZebraError as exc:
            report["notes"].append(f"analyser {analyser.analyser!r} unavailable: {exc.message}")
            if fallback is None:
                report["error"] = exc.message
                return report
            analyser = AnalyserSpec(**{**analyser.to_dict(), "analyser": fallback})
            report["notes"].append(
                f"measured with the {fallback!r} analyser instead (engine throughput only)"
            )
        report["analyser"] = analyser.analyser
        for engine in engines:
            if engine == "ray" and not ray_available():
                report["notes"].append(
                    "ray is not installed: Ray engine skipped (pip install 'zebra-dx[ray]')"
                )
                continue
            for w in workers:
                store = Store(f"sqlite:///{root / f'{engine}-{w}.db'}")
                options = TriageOptions(
                    workers=int(w), engine=engine, progress=False, ray_num_cpus=max(int(x) for x in workers)
                )
                entry: dict[str, Any] = {"engine": engine, "workers": int(w)}
                try:
                    summary = run_triage(
                        root / "worklist",
                        out=root / f"out-{engine}-{w}",
                        analyser=analyser,
                        options=options,
                        store=store,
                    )
                    entry.update(
                        processed=summary.processed,
                        done=summary.counts["done"],
                        errors=summary.counts["error"],
                        work_s=summary.work_s,
                        elapsed_s=summary.elapsed_s,
                        studies_per_minute=summary.studies_per_minute,
                        steady_studies_per_minute=_steady_rate(store, summary.run_id),
                        studies_per_minute_total=round(summary.processed / summary.elapsed_s * 60, 2)
                        if summary.elapsed_s > 0
                        else None,
                    )
                except ZebraError as exc:
                    entry["error"] = exc.message
                finally:
                    store.dispose()
                log.info("bench %s x%d: %s", engine, w, entry)
                report["results"].append(entry)
    return report


def _steady_rate(store: Any, run_id: int) -> float | None:
    """Items per minute between the first and the last commit of the run."""
    from sqlalchemy import func, select

    from store import TriageItem

    with store.session() as s:
        first, last, n = s.execute(
            select(func.min(TriageItem.updated_at), func.max(TriageItem.updated_at), func.count()).where(
                TriageItem.run_id == run_id, TriageItem.status == "done"
            )
        ).one()
    if not n or n < 2 or first is None or last is None or last <= first:
        return None
    return round((n - 1) / (last - first).total_seconds() * 60, 2)
