"""Comparison of two runs over their shared cases: metric deltas with paired bootstrap intervals.

Both runs' ``case_metrics.jsonl`` are restricted to the case ids they share (sorted), every metric is
re-aggregated on that set for each run (:func:`eval.scoring.aggregate`), and the paired bootstrap
(:func:`eval.bootstrap.paired_bootstrap`) resamples the shared cases identically for both runs to give an
interval of ``A - B``. An interval that excludes 0 means the difference is unlikely to be resampling noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, paired_bootstrap
from eval.errors import EvalDataError
from eval.jsonl import read_jsonl
from eval.scoring import HEADLINE, SECONDARY, aggregate, matrix_from_rows


def _load(run: str | Path) -> tuple[dict[str, dict[str, Any]], list[str], dict[str, Any]]:
    run = Path(run)
    metrics_path, run_path = run / "case_metrics.jsonl", run / "run.json"
    if not metrics_path.is_file():
        raise EvalDataError(
            f"{metrics_path} does not exist.",
            hint="Pass a folder written by `zebra eval nova` (finished run).",
        )
    rows = {str(r["case_id"]): r for r in read_jsonl(metrics_path)}
    info = json.loads(run_path.read_text(encoding="utf-8")) if run_path.is_file() else {}
    return rows, list(info.get("tasks") or ["localisation", "captioning", "diagnosis"]), info


def compare_runs(
    run_a: str | Path, run_b: str | Path, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """Deltas ``A - B`` over the shared cases (module docstring).

    Returns:
        ``{"a", "b", "n_shared", "only_a", "only_b", "metrics": {name: {"a", "b", "delta", "ci"}}}``.

    Raises:
        EvalDataError: When a run folder lacks ``case_metrics.jsonl`` or the runs share no case.
    """
    rows_a, tasks_a, info_a = _load(run_a)
    rows_b, tasks_b, info_b = _load(run_b)
    shared = sorted(set(rows_a) & set(rows_b))
    if not shared:
        raise EvalDataError(
            f"{run_a} and {run_b} share no case.", hint="Compare runs over the same data set."
        )
    ma = matrix_from_rows([rows_a[c] for c in shared])
    mb = matrix_from_rows([rows_b[c] for c in shared])
    point_a, point_b = aggregate(ma, tasks_a), aggregate(mb, tasks_b)
    ci = paired_bootstrap(
        len(shared),
        lambda idx: aggregate(ma, tasks_a, idx),
        lambda idx: aggregate(mb, tasks_b, idx),
        n_resamples=n_resamples,
        seed=seed,
    )
    metrics = {}
    for key in (*HEADLINE, *SECONDARY):
        a, b = point_a.get(key), point_b.get(key)
        metrics[key] = {
            "a": a,
            "b": b,
            "delta": None if a is None or b is None else a - b,
            "ci": ci.get(key),
        }
    return {
        "a": {"path": str(run_a), "predictor": info_a.get("predictor")},
        "b": {"path": str(run_b), "predictor": info_b.get("predictor")},
        "n_shared": len(shared),
        "only_a": len(set(rows_a) - set(rows_b)),
        "only_b": len(set(rows_b) - set(rows_a)),
        "n_resamples": n_resamples,
        "seed": seed,
        "metrics": metrics,
    }
