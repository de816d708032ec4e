"""Comparison of two runs over their shared cases: metric deltas with paired bootstrap intervals.

Both runs' ``case_metrics.jsonl`` are restricted to the case ids they share (sorted), every metric is
re-aggregated on that set for each run (:func:`eval.scoring.aggregate`), and the paired bootstrap
(:func:`eval.bootstrap.paired_bootstrap`) resamples the shared cases identically for both runs to give an
interval of ``A - B``. An interval that excludes 0 means the difference is unlikely to be resampling noise.

Both runs are re-aggregated under the same localisation ``protocol`` (``nova`` or ``coco``) and scoring
``unit`` (``case``, or ``image``: the images of the shared cases are the rows), whatever each run was scored
with: ``case_metrics.jsonl`` keeps both protocols' statistics and the image rows. A run scored before these
existed (no ``n_nova_images`` column or image rows) cannot be re-aggregated and is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, paired_bootstrap
from eval.errors import EvalDataError
from eval.jsonl import read_jsonl
from eval.metrics.localisation import DEFAULT_PROTOCOL
from eval.scoring import (
    DEFAULT_UNIT,
    HEADLINE,
    SECONDARY,
    aggregate,
    has_protocol_columns,
    matrix_from_rows,
)


def _load(run: str | Path) -> tuple[dict[str, dict[str, Any]], list[str], dict[str, Any]]:
    run = Path(run)
    metrics_path, run_path = run / "case_metrics.jsonl", run / "run.json"
    if not metrics_path.is_file():
        raise EvalDataError(
            f"{metrics_path} does not exist.",
            hint="Pass a folder written by `zebra eval nova` (finished run).",
        )
    rows = {str(r["case_id"]): r for r in read_jsonl(metrics_path)}
    old = next((cid for cid, r in rows.items() if not has_protocol_columns(r)), None)
    if old is not None:
        raise EvalDataError(
            f"{metrics_path} was scored before protocols and units were recorded (case {old}).",
            hint=f"Re-score it: run the same `zebra eval nova ... --out {run} --resume` (nothing is predicted again).",
        )
    info = json.loads(run_path.read_text(encoding="utf-8")) if run_path.is_file() else {}
    return rows, list(info.get("tasks") or ["localisation", "captioning", "diagnosis"]), info


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    protocol: str = DEFAULT_PROTOCOL,
    unit: str = DEFAULT_UNIT,
) -> dict[str, Any]:
    """Deltas ``A - B`` over the shared cases (module docstring).

    Args:
        run_a: First run folder.
        run_b: Second run folder.
        n_resamples: Bootstrap resamples.
        seed: Bootstrap seed.
        protocol: Localisation protocol both runs are aggregated under.
        unit: ``case`` or ``image``: the rows of the aggregation and of the paired bootstrap.

    Returns:
        ``{"a", "b", "n_shared", "only_a", "only_b", "protocol", "unit", "metrics": {name: {"a", "b", "delta",
        "ci"}}}`` (``n_shared`` counts cases, or images with ``unit="image"``).

    Raises:
        EvalConfigError: For an unknown protocol or unit.
        EvalDataError: When a run folder lacks ``case_metrics.jsonl``, was scored before protocols were
            recorded, the runs share no case, or (``image``) a shared case's images differ between the runs.
    """
    from eval.harness import check_scoring

    protocol, unit = check_scoring(protocol, unit)
    rows_a, tasks_a, info_a = _load(run_a)
    rows_b, tasks_b, info_b = _load(run_b)
    shared = sorted(set(rows_a) & set(rows_b))
    if not shared:
        raise EvalDataError(
            f"{run_a} and {run_b} share no case.", hint="Compare runs over the same data set."
        )
    if unit == "image":
        for cid in shared:
            names_a = [im["filename"] for im in rows_a[cid]["images"]]
            if names_a != [im["filename"] for im in rows_b[cid]["images"]]:
                raise EvalDataError(
                    f"Case {cid} has other images in {run_a} than in {run_b}.",
                    hint="Compare runs over the same data set, or use --unit case.",
                )
    ma = matrix_from_rows([rows_a[c] for c in shared], unit)
    mb = matrix_from_rows([rows_b[c] for c in shared], unit)
    point_a = aggregate(ma, tasks_a, protocol=protocol)
    point_b = aggregate(mb, tasks_b, protocol=protocol)
    ci = paired_bootstrap(
        len(ma),
        lambda idx: aggregate(ma, tasks_a, idx, protocol=protocol),
        lambda idx: aggregate(mb, tasks_b, idx, protocol=protocol),
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
        "n_shared": len(ma),
        "n_shared_cases": len(shared),
        "protocol": protocol,
        "unit": unit,
        "only_a": len(set(rows_a) - set(rows_b)),
        "only_b": len(set(rows_b) - set(rows_a)),
        "n_resamples": n_resamples,
        "seed": seed,
        "metrics": metrics,
    }
