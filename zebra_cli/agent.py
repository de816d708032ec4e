"""CLI commands of the diagnostic agent: ``zebra ask``, ``zebra bench agent``, ``zebra agent fit|eval|trace|graph``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from zebra_cli.app import app, bench_app

log = logging.getLogger(__name__)

agent_app = typer.Typer(
    help="The diagnostic agent: fit its reasoner, evaluate it, inspect sessions.", no_args_is_help=True
)
app.add_typer(agent_app, name="agent")


def _set_threads(threads: int | None) -> None:
    # on a small shared machine one torch thread is far faster than contended ones
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _config(extra: list[str] | None = None, **options: Any) -> Any:
    """Settings defaults, then the command's options, then ``--option KEY=VALUE`` pairs."""
    from agent.configuration import Configuration
    from agent.errors import AgentConfigError

    for item in extra or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise AgentConfigError(f"--option {item!r} is not KEY=VALUE.", hint="Use e.g. --option k=5.")
        options[key.strip()] = value.strip()
    return Configuration.from_settings(**options)


_OPTION_HELP = "Any agent option as KEY=VALUE (repeatable), e.g. k=5, n_hits=50, intent_embedder=builtin."


def _print_answer(answer: Any, *, show_trace: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(answer.text, markup=False, highlight=False)
    if answer.differential:
        table = Table(title="Differential" + (" (abstained)" if answer.abstained else ""))
        for col in ("#", "diagnosis", "probability", "citations"):
            table.add_column(col, overflow="fold")
        for i, d in enumerate(answer.differential, start=1):
            table.add_row(str(i), d.diagnosis, f"{d.probability:.3f}", ", ".join(d.citations))
        console.print(table)
    if answer.citations:
        table = Table(title="Citations")
        for col in ("id", "kind", "source", "quote"):
            table.add_column(col, overflow="fold")
        for c in answer.citations:
            quote = " ".join(str(c.get("quote") or "").split())
            table.add_row(
                c["id"],
                str(c.get("kind", "")),
                str(c.get("doc_id") or c.get("image_id") or c.get("model") or ""),
                quote[:160],
            )
        console.print(table)
    for n in answer.notes:
        console.print(f"note: {n}", markup=False, highlight=False)
    console.print(f"session: {answer.thread_id}  ({answer.timings.get('total', 0):.2f} s)", markup=False)
    if show_trace:
        _print_trace(answer.trace)


def _print_trace(trace: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Trace")
    for col in ("turn", "node", "seconds", "outputs"):
        table.add_column(col, overflow="fold")
    for e in trace:
        table.add_row(
            str(e.get("turn")),
            e["node"],
            f"{e['seconds']:.3f}",
            json.dumps(e.get("outputs"), ensure_ascii=False)[:300],
        )
    Console().print(table)


@app.command("ask")
def ask(
    question: str = typer.Argument("", help="The question (empty: the likeliest diagnosis)."),
    image: list[Path] | None = typer.Option(
        None, "--image", help="Current study: file or folder (repeatable)."
    ),
    prior: list[Path] | None = typer.Option(
        None, "--prior", help="Prior study of the same patient (repeatable)."
    ),
    history: str | None = typer.Option(None, "--history", help="Clinical history."),
    caption: list[str] | None = typer.Option(
        None, "--caption", help="Findings text / image caption (repeatable)."
    ),
    bundle: Path | None = typer.Option(None, "--bundle", help="Index bundle (default: the configured one)."),
    vlm: str | None = typer.Option(None, "--vlm", help="VLM spec (builtin, hf:/path)."),
    reasoner: str | None = typer.Option(
        None, "--reasoner", help="Reasoner spec (builtin, openai:URL, hf:/path)."
    ),
    thread: str | None = typer.Option(None, "--thread", help="Session id: follow-ups in the same session."),
    risk: float | None = typer.Option(
        None, "--risk", min=0.0, max=1.0, help="Target error rate of committed answers."
    ),
    heatmaps: bool = typer.Option(
        True, "--heatmaps/--no-heatmaps", help="Write heatmap PNGs and reference them."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    trace: bool = typer.Option(False, "--trace", help="Print the trace of every step."),
    no_session: bool = typer.Option(False, "--no-session", help="Keep no session (no checkpoint)."),
    threads: int | None = typer.Option(1, "--threads", min=0, help="Torch CPU threads (0: leave as is)."),
    option: list[str] | None = typer.Option(None, "--option", "-o", help=_OPTION_HELP),
) -> None:
    """Ask the diagnostic agent a question about a study (research use only)."""
    from agent.api import Agent

    _set_threads(threads)
    config = _config(
        option,
        bundle=str(bundle) if bundle else None,
        vlm=vlm,
        reasoner=reasoner,
        risk=risk,
        save_heatmaps=heatmaps,
    )
    agent = Agent(config, checkpointer=None if no_session else True)
    answer = agent.ask(
        question,
        images=[str(p) for p in image or []],
        priors=[str(p) for p in prior or []],
        history=history,
        captions=caption or [],
        thread_id=thread,
    )
    if as_json:
        payload = answer.to_dict()
        if not trace:
            payload.pop("trace", None)
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        _print_answer(answer, show_trace=trace)


@bench_app.command("agent")
def bench_agent(
    n: int = typer.Option(20, "--n", min=1, max=10_000, help="Questions timed (after one warm-up)."),
    bundle: Path | None = typer.Option(None, "--bundle", help="Index bundle (default: the configured one)."),
    vlm: str | None = typer.Option(None, "--vlm", help="VLM spec."),
    reasoner: str | None = typer.Option(None, "--reasoner", help="Reasoner spec."),
    image: list[Path] | None = typer.Option(None, "--image", help="Image sent with every question."),
    threads: int | None = typer.Option(1, "--threads", min=0, help="Torch CPU threads (0: leave as is)."),
    option: list[str] | None = typer.Option(None, "--option", "-o", help=_OPTION_HELP),
    backends: bool = typer.Option(
        True,
        "--backends/--no-backends",
        help="Also compare the torch and onnx text encoders on the bundle (speed, query latency, agreement).",
    ),
    backend_chunks: int = typer.Option(
        512, "--backend-chunks", min=8, help="Bundle chunks encoded by each text backend in the comparison."
    ),
) -> None:
    """End-to-end answer latency (p50/p95) with the builtin backends by default, and the torch and onnx
    text encoders side by side; prints JSON."""
    from agent.api import Agent
    from agent.bench import compare_text_backends, run_bench

    _set_threads(threads)
    config = _config(
        option, bundle=str(bundle) if bundle else None, vlm=vlm, reasoner=reasoner, save_heatmaps=False
    )
    agent = Agent(config, checkpointer=True)
    result = run_bench(agent, n, images=[str(p) for p in image or []])
    result["torch_threads"] = threads or None
    emb = agent.resources.get_searcher().text_embedder
    result["text_backend"] = getattr(emb, "backend", None)
    if backends:
        result["text_encoders"] = compare_text_backends(agent, chunks=backend_chunks)
    typer.echo(json.dumps(result, indent=2))


@agent_app.command("fit")
def fit_cmd(
    bundle: Path = typer.Option(..., "--bundle", help="Index bundle (train cases + discussions + hpo)."),
    medpix: Path = typer.Option(..., "--medpix", help="MedPix 2.0 folder."),
    split: str = typer.Option("train", "--split", help="Training split (never dev)."),
    out: Path = typer.Option(
        Path("agent/weights/builtin_reasoner.json"), "--out", help="Weights JSON to write."
    ),
    cache: Path | None = typer.Option(None, "--cache", help="JSONL cache of per-case features (resumable)."),
    limit: int | None = typer.Option(None, "--limit", min=10, help="Use only the first N cases."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="SHA-256-check the bundle files."),
    threads: int | None = typer.Option(1, "--threads", min=0, help="Torch CPU threads (0: leave as is)."),
    settings: str = typer.Option(
        "text,history,image",
        "--settings",
        help="Input settings of the rows: text (history + captions), history, image (history + images).",
    ),
    vlm: str = typer.Option("builtin", "--vlm", help="VLM spec for the image setting."),
    tumor: Path | None = typer.Option(
        None, "--tumor", help="Brain-tumour YOLO folder: image-only rows of its train split (tumour types)."
    ),
    tumor_per_class: int = typer.Option(60, "--tumor-per-class", min=1, help="Tumour images per class."),
) -> None:
    """Fit and calibrate the builtin reasoner on a training split (leave-one-out retrieval); prints a summary."""
    from agent.fit import FIT_SETTINGS, fit

    chosen = tuple(s.strip() for s in settings.split(",") if s.strip())
    if not chosen or set(chosen) - set(FIT_SETTINGS):
        raise typer.BadParameter(f"settings must be among {', '.join(FIT_SETTINGS)}", param_hint="--settings")

    _set_threads(threads)
    command = f"zebra agent fit --bundle {bundle} --medpix {medpix} --split {split} --out {out} --settings {settings}"
    if tumor is not None:
        command += f" --tumor {tumor} --tumor-per-class {tumor_per_class}"
    payload = fit(
        bundle,
        medpix,
        out,
        split=split,
        cache=cache,
        limit=limit,
        progress=True,
        command=command,
        verify=verify,
        settings=chosen,
        vlm_spec=vlm,
        tumour=tumor,
        tumour_per_class=tumor_per_class,
    )
    summary = {
        "out": str(out),
        "n_cases": payload["data"]["n_cases"],
        "cv": payload["cv"],
        "weights": dict(zip(payload["model"]["features"], payload["model"]["weights"], strict=True)),
        "risk_thresholds": payload["risk_control"]["thresholds"],
    }
    typer.echo(json.dumps(summary, indent=2))


@agent_app.command("eval")
def eval_cmd(
    bundle: Path | None = typer.Option(
        None, "--bundle", help="Index bundle (train cases + discussions + hpo)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="NOVA data set (e.g. the converted MedPix dev split)."
    ),
    medpix: Path | None = typer.Option(None, "--medpix", help="MedPix 2.0 folder (every case of --split)."),
    split: str = typer.Option("dev", "--split", help="MedPix split with --medpix."),
    settings: str = typer.Option(
        "text,images,all",
        "--settings",
        help="Input settings: history, text, images, dialogue (images + one simulated reply), all, report.",
    ),
    vlm: str | None = typer.Option(None, "--vlm", help="VLM spec."),
    reasoner: str | None = typer.Option(None, "--reasoner", help="Reasoner spec."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate only the first N cases."),
    details: Path | None = typer.Option(None, "--details", help="Per-case JSONL."),
    threads: int | None = typer.Option(1, "--threads", min=0, help="Torch CPU threads (0: leave as is)."),
    option: list[str] | None = typer.Option(None, "--option", "-o", help=_OPTION_HELP),
    unseen: bool = typer.Option(
        False,
        "--unseen",
        help="The 'disease in no document' setting: per case, hide every document and image of its gold "
        "diagnosis from the agent and the baseline.",
    ),
    leave_case_out: bool = typer.Option(
        False,
        "--leave-case-out",
        help="Hide each case's own case report and images (as the reasoner's fit does), e.g. for --split train.",
    ),
) -> None:
    """Top-1/top-5 diagnosis accuracy of the agent vs the retrieval-only baseline; prints JSON."""
    from agent.api import Agent
    from agent.errors import AgentConfigError
    from agent.evaluate import cases_from_medpix, cases_from_nova, evaluate

    if (data is None) == (medpix is None):
        raise AgentConfigError(
            "Give exactly one of --data and --medpix.", hint="E.g. --data /tmp/nova-medpix-dev."
        )
    _set_threads(threads)
    cases = cases_from_nova(data) if data is not None else cases_from_medpix(medpix, split)  # type: ignore[arg-type]
    if limit:
        cases = cases[:limit]
    config = _config(
        option, bundle=str(bundle) if bundle else None, vlm=vlm, reasoner=reasoner, save_heatmaps=False
    )
    agent = Agent(config, checkpointer=None)
    result = evaluate(
        agent,
        cases,
        settings=[s.strip() for s in settings.split(",") if s.strip()],
        details_path=details,
        progress=True,
        unseen=unseen,
        leave_case_out=leave_case_out,
    )
    rows = result.pop("_rows", {})
    result["comparisons"] = compare_settings(rows, k=int(result.get("k", 5)))
    result.update(
        {
            "source": str(data or medpix),
            "split": split if medpix else None,
            "bundle": config.bundle,
            "vlm": config.vlm,
            "vlm_available": agent.resources.vlm is not None,
            "vlm_error": agent.resources.vlm_error,
            "reasoner": config.reasoner,
            "literature": "the disease is in no document (--unseen)"
            if unseen
            else "the literature covers the disease",
        }
    )
    typer.echo(json.dumps(result, indent=2))


#: Setting pairs compared case by case (A, B): what adding the image, and the reply, changes.
COMPARED: tuple[tuple[str, str], ...] = (("images", "history"), ("dialogue", "images"), ("all", "text"))


def compare_settings(rows: dict[str, list[dict[str, Any]]], *, k: int = 5) -> dict[str, Any]:
    """Paired case-level bootstrap (eval.bootstrap) of top-1 / top-k differences between settings, on the cases
    both settings ran."""
    import numpy as np

    from eval.bootstrap import paired_bootstrap

    out: dict[str, Any] = {}
    for a, b in COMPARED:
        if a not in rows or b not in rows:
            continue
        rb = {r["case_id"]: r for r in rows[b]}
        pairs = [(r, rb[r["case_id"]]) for r in rows[a] if r["case_id"] in rb]
        if not pairs:
            continue

        def stat(side: int, pairs: list = pairs) -> Any:
            def f(idx: np.ndarray) -> dict[str, float]:
                picked = [pairs[i][side] for i in idx]
                hit = [(r["agent_rank"] or 10**9) for r in picked]
                return {
                    "top1": float(np.mean([h <= 1 for h in hit])),
                    f"top{k}": float(np.mean([h <= k for h in hit])),
                }

            return f

        full = np.arange(len(pairs))
        diff = {key: round(stat(0)(full)[key] - stat(1)(full)[key], 4) for key in ("top1", f"top{k}")}
        ci = paired_bootstrap(len(pairs), stat(0), stat(1))
        out[f"{a}-{b}"] = {
            "n_cases": len(pairs),
            "difference": diff,
            "ci95": {key: [round(v, 4) for v in val] if val else None for key, val in ci.items()},
        }
    return out


@agent_app.command("trace")
def trace_cmd(
    thread: str = typer.Argument(..., help="Session id printed by zebra ask."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a stored session: its turns and the trace of every step."""
    from agent.api import Agent

    agent = Agent(_config(), checkpointer=True)
    session = agent.session(thread)
    if as_json:
        typer.echo(json.dumps(session, indent=2, ensure_ascii=False))
        return
    for turn in session["turns"]:
        typer.echo(f"[{turn['turn']}] Q: {turn['question']}\n    A: {turn['text']}")
    _print_trace(session["trace"])


@agent_app.command("graph")
def graph_cmd() -> None:
    """Print the agent's graph as a mermaid diagram."""
    from agent.graph import mermaid

    typer.echo(mermaid())
