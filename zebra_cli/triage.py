"""``zebra triage``: batch triage of a worklist; ``zebra bench triage``: its throughput."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zebra.errors import ConfigError
from zebra_cli.app import app, bench_app


def _split_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise ConfigError(f"{option} takes comma-separated integers, got {text!r}.", hint="e.g. 1,2") from exc
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{option} needs positive integers, got {text!r}.", hint="e.g. 1,2")
    return values


@app.command("triage")
def triage_cmd(
    worklist: str = typer.Argument(
        ...,
        help="CSV/TSV worklist, DICOM folder tree, NOVA data set, or dicomweb:QUERY (a QIDO-RS search of the "
        "configured PACS, e.g. 'dicomweb:ModalitiesInStudy=MR&StudyDate=20260101-'; see docs/pacs.md).",
    ),
    out: Path = typer.Option(..., "--out", help="Output folder: triage.csv, triage.html, summary.json."),
    bundle: Path | None = typer.Option(None, "--bundle", help="Index bundle folder (default: settings)."),
    workers: int = typer.Option(1, "--workers", min=1, max=256, help="Worker processes (or Ray tasks)."),
    engine: str = typer.Option("local", "--engine", help="local (processes) or ray."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run (by --run-name, else the newest run of this worklist)."
    ),
    run_name: str | None = typer.Option(None, "--run-name", help="Run name (default: <worklist>-<time>)."),
    vlm: str | None = typer.Option(None, "--vlm", help="VLM spec (default: settings)."),
    reasoner: str | None = typer.Option(None, "--reasoner", help="Reasoner spec (default: settings)."),
    analyser: str = typer.Option("agent", "--analyser", help="agent, vlm, or fake[:fail=X,delay=S] (tests)."),
    kind: str = typer.Option("auto", "--kind", help="Worklist kind: auto, csv, dicom, nova."),
    max_images: int = typer.Option(4, "--max-images", min=1, help="Images analysed per study."),
    lease_seconds: float = typer.Option(600.0, "--lease-seconds", min=1.0, help="Lease length per item."),
    max_attempts: int = typer.Option(
        3, "--max-attempts", min=1, help="Attempts per item before it is an error."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster address (default: local Ray)."
    ),
    ray_cpus: int | None = typer.Option(None, "--ray-cpus", min=1, help="CPUs of a local Ray."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Torch threads per worker (default 1)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    write_back: bool | None = typer.Option(
        None,
        "--write-back/--no-write-back",
        help="dicomweb: worklists: store SR + parametric map back to the PACS (default: [dicomweb] write_back).",
    ),
) -> None:
    """Triage a worklist of studies without a person in the loop: prioritised, crash-safe, resumable."""
    from triage.agent_adapter import AnalyserSpec
    from triage.engine import TriageOptions, run_triage

    options = TriageOptions(
        workers=workers,
        engine=engine.strip().lower(),
        lease_s=lease_seconds,
        max_attempts=max_attempts,
        progress=progress,
        kind=kind.strip().lower(),
        ray_address=ray_address,
        ray_num_cpus=ray_cpus,
        threads=threads,
        write_back=write_back,
    )
    spec = AnalyserSpec(
        analyser=analyser,
        vlm=vlm,
        reasoner=reasoner,
        bundle=str(bundle) if bundle else None,
        max_images=max_images,
    )
    summary = run_triage(worklist, out=out, analyser=spec, options=options, run_name=run_name, resume=resume)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    c = summary.counts
    rate = f", {summary.studies_per_minute} studies/min" if summary.studies_per_minute else ""
    typer.echo(
        f"run {summary.run_name} (id {summary.run_id}{', resumed' if summary.resumed else ''}): "
        f"{c['done']} done, {c['error']} error(s) of {c['total']}; {summary.processed} processed now{rate}"
    )
    typer.echo(f"wrote {summary.outputs['csv']}, {summary.outputs['html']}")


@bench_app.command("triage")
def bench_triage_cmd(
    n: int = typer.Option(60, "--n", min=1, help="Synthetic cases in the worklist."),
    workers: str = typer.Option("1,2", "--workers", help="Worker counts, comma-separated."),
    engines: str = typer.Option("local,ray", "--engines", help="Engines, comma-separated: local, ray."),
    analyser: str = typer.Option("agent", "--analyser", help="agent, vlm or fake."),
    vlm: str | None = typer.Option(None, "--vlm", help="VLM spec (default: settings)."),
    reasoner: str | None = typer.Option(None, "--reasoner", help="Reasoner spec (default: settings)."),
    bundle: Path | None = typer.Option(None, "--bundle", help="Index bundle folder (default: settings)."),
    no_fallback: bool = typer.Option(False, "--no-fallback", help="Do not fall back to the fake analyser."),
    seed: int = typer.Option(0, "--seed"),
    worklist: list[Path] = typer.Option(
        [], "--worklist", help="Real worklist(s) to take the first --n studies from (default: synthetic)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Torch threads per worker (default 1)."
    ),
    source: str = typer.Option(
        "files",
        "--source",
        help="files, or dicomweb: the same real studies from files and from the configured PACS, side by "
        "side (local engine; the ratio is the figure; docs/pacs.md).",
    ),
    write_back: bool = typer.Option(False, "--write-back", help="--source dicomweb: also store results."),
) -> None:
    """Studies per minute of local and Ray triage for 1 and 2 workers on a synthetic worklist, JSON."""
    from triage.agent_adapter import AnalyserSpec
    from triage.bench import bench_dicomweb, bench_triage
    from triage.engine import ENGINES

    source = source.strip().lower()
    if source not in ("files", "dicomweb"):
        raise ConfigError(f"Unknown source {source!r}.", hint="Use --source files or --source dicomweb.")
    if source == "dicomweb":
        spec = AnalyserSpec(
            analyser=analyser, vlm=vlm, reasoner=reasoner, bundle=str(bundle) if bundle else None
        )
        report = bench_dicomweb(
            n=n,
            workers=_split_ints(workers, "--workers"),
            analyser=spec,
            fallback=None if no_fallback else "fake",
            threads=threads,
            write_back=write_back,
        )
        typer.echo(json.dumps(report, indent=2))
        return

    engine_list = [e.strip().lower() for e in engines.split(",") if e.strip()]
    unknown = [e for e in engine_list if e not in ENGINES]
    if unknown or not engine_list:
        raise ConfigError(
            f"Unknown engine(s) {', '.join(unknown) or '(none)'}.", hint="Use --engines local,ray."
        )
    spec = AnalyserSpec(analyser=analyser, vlm=vlm, reasoner=reasoner, bundle=str(bundle) if bundle else None)
    report = bench_triage(
        n=n,
        workers=_split_ints(workers, "--workers"),
        engines=engine_list,
        analyser=spec,
        fallback=None if no_fallback else "fake",
        seed=seed,
        worklists=worklist,
        threads=threads,
    )
    typer.echo(json.dumps(report, indent=2))
