"""``zebra bench triage``: studies per minute of the triage engines on a synthetic or a real worklist.

Besides the rates, the report holds the load average of the machine during each run (the machine may be
shared) and, for the agent, the seconds per agent node of a few studies analysed in this process after the
first one (models loaded), so it says where a study's time goes.
"""

from __future__ import annotations

import csv
import logging
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
    worklists: Sequence[str | os.PathLike[str]] = (),
    profile_n: int = 4,
    threads: int | None = None,
) -> dict[str, Any]:
    """Triages a worklist of ``n`` studies with every engine x worker count; returns JSON data.

    Each configuration gets a fresh SQLite database. ``studies_per_minute`` counts from the workers' start
    (model loading included) to the last item; ``steady_studies_per_minute`` from the first item committed
    to the last (models loaded, workers busy); ``studies_per_minute_total`` also counts reading the
    worklist, creating the run and writing the exports.

    Args:
        n: Studies in the worklist (synthetic: about half have a prior).
        workers: Worker counts to measure.
        engines: ``local`` and/or ``ray`` (Ray is skipped with a note when not installed).
        analyser: The analyser (default: the agent with the settings' backends).
        fallback: Analyser used when ``analyser`` cannot be built here (e.g. the built-in weights are not
            installed), so the engine itself is still measured; ``None`` reports the failure only.
        seed: Seed of the synthetic data.
        work_dir: Scratch folder (default: a temporary folder, deleted after).
        worklists: Real worklists (CSV, DICOM tree, NOVA); their first ``n`` studies, in the order given, are
            measured instead of a synthetic data set.
        profile_n: Studies analysed in this process after the smoke-check study to time the agent's nodes
            (``node_seconds``: mean seconds per study); 0 skips it.
        threads: Threads per worker (:attr:`triage.engine.TriageOptions.threads`; also used by the smoke
            check and the profile, which run in this process).
    """
    from store import Store
    from triage.engine import TriageOptions, run_triage
    from triage.ray_engine import ray_available
    from triage.worker import limit_threads
    from triage.worklist import read_worklist
    from zebra_datasets import generate_synthetic

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
        if worklists:
            worklist = _real_worklist(worklists, n, root / "worklist.csv")
            report["worklists"] = [str(Path(w).expanduser().resolve()) for w in worklists]
        else:
            worklist = root / "worklist"
            generate_synthetic(worklist, n_cases=n, seed=seed)
        items = read_worklist(worklist)
        report["studies"] = len(items)
        report["generate_s"] = round(time.monotonic() - t0, 2)
        # Smoke check: build the analyser and run it on one study, so a missing model or bundle is reported
        # once (and the fallback measured) instead of as n item errors.
        t0 = time.monotonic()
        limit_threads(TriageOptions(threads=threads).worker_threads())
        try:
            built = create_analyser(analyser)
            report["analyser_load_s"] = round(time.monotonic() - t0, 2)
            t0 = time.monotonic()
            built.analyse(items[0])
            report["first_study_s"] = round(time.monotonic() - t0, 2)
            if profile_n > 0 and len(items) > 1:
                report["profile"] = _profile(built, items[1 : 1 + profile_n])
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
                    workers=int(w),
                    engine=engine,
                    progress=False,
                    ray_num_cpus=max(int(x) for x in workers),
                    threads=threads,
                )
                entry: dict[str, Any] = {"engine": engine, "workers": int(w)}
                try:
                    with _load_sampler() as load:
                        summary = run_triage(
                            worklist,
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
                        load_average=load,
                    )
                except ZebraError as exc:
                    entry["error"] = exc.message
                finally:
                    store.dispose()
                log.info("bench %s x%d: %s", engine, w, entry)
                report["results"].append(entry)
    return report


def _real_worklist(sources: Sequence[str | os.PathLike[str]], n: int, dest: Path) -> Path:
    """A CSV worklist of the first ``n`` studies of ``sources`` (each read like ``zebra triage`` reads it)."""
    from triage.worklist import read_worklist

    rows: list[dict[str, str]] = []
    for source in sources:
        for item in read_worklist(Path(source).expanduser()):
            rows.append(
                {
                    "accession": item.accession or item.item_key,
                    "study_path": item.study_path,
                    "prior_path": item.prior_path or "",
                    "history": item.history or "",
                }
            )
            if len(rows) >= n:
                break
        if len(rows) >= n:
            break
    with dest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["accession", "study_path", "prior_path", "history"])
        writer.writeheader()
        writer.writerows(rows)
    return dest


def _profile(analyser: Any, items: Sequence[Any]) -> dict[str, Any]:
    """Mean seconds per study of each agent node over ``items`` (the analyser's ``last_timings``)."""
    totals: dict[str, float] = {}
    walls: list[float] = []
    for item in items:
        t0 = time.monotonic()
        analyser.analyse(item)
        walls.append(time.monotonic() - t0)
        for node, seconds in (getattr(analyser, "last_timings", None) or {}).items():
            totals[node] = totals.get(node, 0.0) + float(seconds)
    n = max(len(walls), 1)
    return {
        "studies": len(walls),
        "study_seconds": round(sum(walls) / n, 3),
        "node_seconds": {k: round(v / n, 3) for k, v in totals.items()},
        "load_average": round(os.getloadavg()[0], 2),
    }


@contextmanager
def _load_sampler(every_s: float = 5.0) -> Iterator[dict[str, float]]:
    """Samples the 1-minute load average while the block runs: ``{"start", "mean", "max", "end"}``."""
    out: dict[str, float] = {"start": round(os.getloadavg()[0], 2)}
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            samples.append(os.getloadavg()[0])

    thread = threading.Thread(target=sample, name="bench-load", daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join(timeout=every_s)
        end = os.getloadavg()[0]
        samples.append(end)
        out.update(mean=round(sum(samples) / len(samples), 2), max=round(max(samples), 2), end=round(end, 2))


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


def bench_dicomweb(
    *,
    n: int = 24,
    workers: Sequence[int] = (1, 2),
    analyser: AnalyserSpec | None = None,
    fallback: str | None = "fake",
    slices: int = 3,
    threads: int | None = None,
    write_back: bool = False,
    work_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Studies per minute of DICOMweb triage against the same studies read from files, side by side.

    ``n`` real studies (pydicom's MR and CT images as ``slices``-image series, :mod:`pacs.samples`) are
    written as a DICOM folder tree and stored (STOW-RS) into the configured server under a fresh accession
    prefix. For each worker count, the folder tree and ``dicomweb:AccessionNumber=<prefix>*`` are triaged
    one after the other (order alternating between worker counts) on the local engine, each with a fresh
    SQLite database, after one warm-up study in this process; ``ratio`` is DICOMweb over files (the issue's
    figure: at least 0.8), ``steady_ratio`` the same between first and last commit. The studies stay on
    the server (DICOMweb has no portable delete); their accession prefix is in the report.

    Raises:
        DicomwebNotConfiguredError, DicomwebError: When the server is not configured or not usable.
    """
    from pacs.client import DicomwebClient
    from pacs.samples import sample_studies, write_tree
    from store import Store
    from triage.engine import TriageOptions, run_triage
    from triage.worker import limit_threads

    analyser = analyser or AnalyserSpec()
    client = DicomwebClient.from_settings()
    prefix = f"ZB{os.urandom(4).hex().upper()}"
    report: dict[str, Any] = {
        "source": "dicomweb",
        "n": n,
        "slices_per_study": slices,
        "accession_prefix": prefix,
        "write_back": write_back,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "notes": [],
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="zebra-bench-dicomweb-", dir=work_dir) as tmp:
        root = Path(tmp)
        studies = sample_studies(prefix, n, slices=slices)
        tree = write_tree(studies, root / "tree")
        t0 = time.monotonic()
        for study in studies:
            client.store(study)
        report["upload_s"] = round(time.monotonic() - t0, 2)
        query = f"dicomweb:AccessionNumber={prefix}*"
        limit_threads(TriageOptions(threads=threads).worker_threads())
        try:
            # Warm-up in this process (models load once): the first measured source must not pay for it.
            from triage.worklist import read_worklist

            t0 = time.monotonic()
            create_analyser(analyser).analyse(read_worklist(tree, kind="dicom")[0])
            report["warm_up_s"] = round(time.monotonic() - t0, 2)
        except ZebraError as exc:
            report["notes"].append(f"analyser {analyser.analyser!r} unavailable: {exc.message}")
            if fallback is None:
                report["error"] = exc.message
                return report
            analyser = AnalyserSpec(**{**analyser.to_dict(), "analyser": fallback})
            report["notes"].append(f"measured with the {fallback!r} analyser instead")
        report["analyser"] = analyser.analyser
        for k, w in enumerate(workers):
            entry: dict[str, Any] = {"workers": int(w)}
            order = ("files", "dicomweb") if k % 2 == 0 else ("dicomweb", "files")
            for source in order:
                store = Store(f"sqlite:///{root / f'{source}-{w}.db'}")
                options = TriageOptions(
                    workers=int(w), progress=False, threads=threads, write_back=write_back, kind="auto"
                )
                try:
                    with _load_sampler() as load:
                        summary = run_triage(
                            tree if source == "files" else query,
                            out=root / f"out-{source}-{w}",
                            analyser=analyser,
                            options=options,
                            store=store,
                        )
                    entry[source] = {
                        "done": summary.counts["done"],
                        "errors": summary.counts["error"],
                        "work_s": summary.work_s,
                        "studies_per_minute": summary.studies_per_minute,
                        "steady_studies_per_minute": _steady_rate(store, summary.run_id),
                        "load_average": load,
                    }
                except ZebraError as exc:
                    entry[source] = {"error": exc.message}
                finally:
                    store.dispose()
            files = (entry.get("files") or {}).get("studies_per_minute")
            web = (entry.get("dicomweb") or {}).get("studies_per_minute")
            entry["ratio"] = round(web / files, 3) if files and web else None
            files_s = (entry.get("files") or {}).get("steady_studies_per_minute")
            web_s = (entry.get("dicomweb") or {}).get("steady_studies_per_minute")
            entry["steady_ratio"] = round(web_s / files_s, 3) if files_s and web_s else None
            log.info("bench dicomweb x%d: %s", w, entry)
            report["results"].append(entry)
    return report
