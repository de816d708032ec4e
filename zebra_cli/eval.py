"""CLI commands of the evaluation harness: ``zebra eval nova`` and ``zebra eval compare``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from zebra_cli.app import eval_app

log = logging.getLogger(__name__)

_HEADLINE_LABELS = {
    "map_0.3": "mAP@0.3",
    "map_0.5": "mAP@0.5",
    "map_0.5_0.95": "mAP@0.5:0.95",
    "acc50": "ACC50",
    "bleu4": "BLEU-4",
    "rouge_l": "ROUGE-L",
    "term_f1": "term F1",
    "top1": "top-1",
    "top5": "top-5",
    "cae_rate": "CAE rate",
    "ece": "ECE",
    "coverage": "coverage",
}


_PROTOCOL_HELP = (
    "Localisation scoring: nova (the NOVA reference harness: per-image 11-point AP over every image, an image "
    "without gold boxes scores 1 only when nothing is predicted) or coco (per-image 101-point AP over images "
    "with gold boxes)."
)
_UNIT_HELP = (
    "Diagnosis scoring unit: case (default) or image (each image against its own diagnosis, as NOVA)."
)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


@eval_app.command("nova")
def nova(
    data: Path = typer.Option(..., "--data", help="NOVA-layout data set (root or data/nova-v1.parquet)."),
    out: Path = typer.Option(
        ..., "--out", help="Output folder (predictions.jsonl, summary.json, report.html)."
    ),
    bundle: Path | None = typer.Option(
        None,
        "--bundle",
        help="Index bundle of the agent and retrieval predictors (default: the settings' bundle).",
    ),
    predictor: str = typer.Option(
        "agent",
        "--predictor",
        help="agent (the product, default), retrieval[:mode=hybrid,n_hits=30,abstain=0] (baseline), or "
        "constant[:NAME].",
    ),
    inputs: str = typer.Option("image,history,caption", "--inputs", help="Inputs given to the predictor."),
    judge: str = typer.Option(
        "offline", "--judge", help="offline, offline:embed, or openai:URL (e.g. http://127.0.0.1:8000/v1)."
    ),
    judge_model: str = typer.Option("default", "--judge-model", help="Model name for an openai: judge."),
    judge_votes: int = typer.Option(
        1, "--judge-votes", min=1, help="Votes per question for an openai: judge."
    ),
    vlm: str | None = typer.Option(None, "--vlm", help="VLM backend spec passed to the agent predictor."),
    reasoner: str | None = typer.Option(
        None, "--reasoner", help="Reasoner backend spec passed to the agent predictor."
    ),
    ablate: str = typer.Option("", "--ablate", help="Comma-separated: image, history, caption, retrieval."),
    workers: int = typer.Option(1, "--workers", min=1, help="Cases predicted concurrently (threads)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N cases (by case id)."),
    resamples: int = typer.Option(1000, "--resamples", min=10, help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    protocol: str = typer.Option("nova", "--protocol", help=_PROTOCOL_HELP),
    unit: str = typer.Option("case", "--unit", help=_UNIT_HELP),
    unseen: bool = typer.Option(
        False,
        "--unseen",
        help="The 'disease in no document' setting: per case, hide from retrieval every document and image "
        "whose diagnosis the offline judge matches to the case's gold diagnosis (counts in summary.json).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of a table."),
) -> None:
    """Run a predictor over a NOVA-layout set and score localisation, captioning and diagnosis."""
    from eval.harness import run_eval
    from zebra.config import get_settings

    options: dict[str, Any] = {
        "bundle": bundle or get_settings().bundle_dir,
        "vlm": vlm,
        "reasoner": reasoner,
    }
    summary = run_eval(
        data,
        out,
        predictor,
        inputs=inputs,
        judge=judge,
        judge_model=judge_model,
        judge_votes=judge_votes,
        workers=workers,
        resume=resume,
        ablate=ablate,
        limit=limit,
        predictor_options=options,
        n_resamples=resamples,
        seed=seed,
        progress=not as_json,
        protocol=protocol,
        unit=unit,
        unseen=unseen,
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['n_cases']} case(s) -> {out}")
    for col in ("metric", "value", "95% CI"):
        table.add_column(col)
    for key, label in _HEADLINE_LABELS.items():
        ci = summary["ci"].get(key)
        table.add_row(label, _fmt(summary.get(key)), "–" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]")
    Console().print(table)
    typer.echo(f"localisation protocol: {summary['protocol']}; scoring unit: {summary['unit']}")
    hidden = summary.get("unseen") or {}
    if hidden.get("enabled"):
        typer.echo(
            f"unseen disease: {hidden['documents_removed_mean']} documents hidden per case on average "
            f"(min {hidden['documents_removed_min']}, max {hidden['documents_removed_max']}); "
            f"{len(hidden['cases_with_nothing_removed'])} case(s) with nothing hidden"
        )
    if summary.get("judge_agreement"):
        agr = summary["judge_agreement"]
        typer.echo(
            f"judge agreement ({' vs '.join(agr['judges'])}): raw {_fmt(agr['raw'])}, kappa {_fmt(agr['kappa'])}"
        )


@eval_app.command("compare")
def compare(
    run_a: Path = typer.Argument(..., help="First run folder (A)."),
    run_b: Path = typer.Argument(..., help="Second run folder (B)."),
    resamples: int = typer.Option(1000, "--resamples", min=10, help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    protocol: str = typer.Option("nova", "--protocol", help=_PROTOCOL_HELP),
    unit: str = typer.Option("case", "--unit", help=_UNIT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Metric deltas A - B over the shared cases (or images), with paired bootstrap 95% intervals; both runs
    are re-aggregated under the same --protocol and --unit."""
    from eval.compare import compare_runs

    result = compare_runs(run_a, run_b, n_resamples=resamples, seed=seed, protocol=protocol, unit=unit)
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"A - B over {result['n_shared']} shared {result['unit']}(s)")
    for col in ("metric", "A", "B", "A - B", "95% CI"):
        table.add_column(col)
    for key, row in result["metrics"].items():
        if row["a"] is None and row["b"] is None:
            continue
        ci = row["ci"]
        table.add_row(
            key,
            _fmt(row["a"]),
            _fmt(row["b"]),
            _fmt(row["delta"]),
            "–" if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]",
        )
    Console().print(table)
    typer.echo(f"localisation protocol: {result['protocol']}; scoring unit: {result['unit']}")
