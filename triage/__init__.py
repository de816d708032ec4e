"""Batch triage of rare-case worklists: prioritised, crash-safe, resumable, on local processes or Ray.

Pieces, one concern per module:

- :mod:`triage.worklist`: CSV, DICOM-tree and NOVA worklists -> :class:`triage.types.WorkItem` with stable keys;
  :mod:`triage.dicomweb` makes a ``dicomweb:QUERY`` search (:mod:`pacs.source`) a worklist.
- :mod:`triage.queue`: the run and its items in the store; lease claims, fenced result commits, retries.
- :mod:`triage.worker`: the worker loop (claim, analyse, score, commit) shared by every engine.
- :mod:`triage.options`: how a run runs, and its progress bar; :mod:`triage.engine`: the local engine
  (spawned processes); :mod:`triage.ray_engine` runs the same workers as Ray tasks.
- :mod:`triage.agent_adapter`: the one place that talks to the diagnostic agent; :mod:`triage.fake` is a
  deterministic analyser for tests and engine benchmarks.
- :mod:`triage.priority`: the documented priority score and its drivers.
- :mod:`triage.export`: CSV and self-contained HTML worklists sorted by priority.

See ``docs/triage.md``.
"""

from __future__ import annotations

__all__ = ["TriageOptions", "TriageSummary", "read_worklist", "run_triage"]


def __getattr__(name: str):  # -> Any
    # Lazy: importing the package must not import the engine (multiprocessing, store, models).
    if name in ("TriageOptions", "TriageSummary", "run_triage"):
        from triage import engine

        return getattr(engine, name)
    if name == "read_worklist":
        from triage.worklist import read_worklist

        return read_worklist
    raise AttributeError(f"module 'triage' has no attribute {name!r}")
