"""Top-level commands: version, config, setup."""

from __future__ import annotations

import json
import logging

import typer

from zebra.errors import ConfigError
from zebra_cli.app import app

log = logging.getLogger(__name__)


@app.command()
def version() -> None:
    """Print Zebra's version."""
    from zebra import __version__

    typer.echo(__version__)


@app.command("config")
def show_config() -> None:
    """Print the settings in force (file + ZEBRA_* environment) as JSON."""
    from zebra.config import get_settings, settings_file

    settings = get_settings()
    payload = json.loads(settings.model_dump_json())
    payload["_settings_file"] = str(settings_file() or "")
    payload["_database_url"] = settings.database_url
    typer.echo(json.dumps(payload, indent=2))


@app.command()
def setup(
    rebuild: bool = typer.Option(False, help="Rebuild the default knowledge base even when it verifies."),
    background: bool = typer.Option(
        False,
        "--background",
        help="Prepare the database now and build a missing knowledge base in a background process "
        "(progress: `zebra setup --status`, the page, <data_dir>/kb-build.log).",
    ),
    status: bool = typer.Option(False, "--status", help="Print the knowledge base's build status and exit."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Prepare the data directory, the database and the default knowledge base (idempotent)."""
    from dataclasses import asdict

    from index_builder.background import read_status, start_background_build
    from index_builder.default_kb import setup as run_setup
    from zebra.config import get_settings

    settings = get_settings()
    if status:
        current = read_status(settings)
        typer.echo(json.dumps(current.to_dict(), indent=2) if json_out else current.message())
        return
    if background and rebuild:
        raise ConfigError(
            "--background does not rebuild a bundle that verifies.", hint="Use --rebuild alone."
        )
    report = run_setup(settings, rebuild=rebuild, show_progress=not json_out, knowledge_base=not background)
    if background:
        started = start_background_build(settings)
        report.bundle_action = started.message()
    if json_out:
        typer.echo(json.dumps(asdict(report), indent=2))
        return
    typer.echo(f"data directory : {report.data_dir}")
    typer.echo(f"database       : {report.database} (revision {report.database_revision})")
    typer.echo(f"knowledge base : {report.bundle} ({report.bundle_action}, {report.seconds} s)")
    typer.echo(f"  sources      : {', '.join(report.sources)}")
    typer.echo(f"  counts       : {json.dumps(report.bundle_counts)}")


@app.command()
def demo(json_out: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """A walk-through on real data: a real study in, a cited differential from retrieval out (research use)."""
    from dataclasses import asdict

    from zebra.config import get_settings
    from zebra_cli.demo import run_demo

    result = run_demo(get_settings())
    if json_out:
        typer.echo(json.dumps(asdict(result), indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.rule("Zebra demo (research use only, not for clinical decisions)")
    deid = result.study.get("deid") or {}
    console.print(
        f"Read a real {result.study['modality']} study (pydicom's MR_small.dcm): {result.study['images']} image(s) "
        f"of {result.study['shape']}; de-identified under {deid.get('profile', '-')}: "
        f"{len(deid.get('removed', []))} removed, {len(deid.get('emptied', []))} emptied, "
        f"{len(deid.get('replaced', []))} replaced, {deid.get('private_tags_removed', 0)} private tags dropped; "
        f"stored as study #{result.stored_study_id}."
    )
    console.print(f"\n[bold]Question[/bold] ({result.query_source}):\n{result.query}\n")
    table = Table(title="Candidate diagnoses from the knowledge base", show_lines=True)
    for col in ("#", "diagnosis", "score", "evidence (first citations)"):
        table.add_column(col)
    for cand in result.candidates:
        cites = "; ".join(f"{e['source']}:{e['title']}" for e in cand.get("evidence", [])[:3])
        table.add_row(str(cand["rank"]), cand["label"], f"{cand['score']:.3f}", cites)
    console.print(table)
    if result.truth:
        console.print(f"Teaching-file diagnosis of this case: [bold]{result.truth}[/bold]")
    console.print("This walk-through shows retrieval only; `zebra ask` and `zebra serve` run the full agent.")
