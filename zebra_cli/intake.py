"""CLI commands for intake: ``zebra data inspect`` and ``zebra bench intake-fuzz``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from zebra_cli.app import bench_app, data_app

log = logging.getLogger(__name__)


@data_app.command("inspect")
def inspect_cmd(
    path: Path = typer.Argument(
        ..., help="DICOM file, folder, DICOMDIR, .zip, NIfTI (.nii/.nii.gz), PNG or JPEG."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    allow_nonstandard_preamble: bool = typer.Option(
        False,
        "--allow-nonstandard-preamble",
        help="Accept DICOM files whose 128-byte preamble is neither zeros nor TIFF (it is discarded).",
    ),
) -> None:
    """Read a medical image safely and show what was read and what de-identification did."""
    from zebra.config import get_settings
    from zebra_intake import load_study

    settings = get_settings().intake
    if allow_nonstandard_preamble:
        settings = settings.model_copy(update={"allow_nonstandard_preamble": True})
    study = load_study(path, settings=settings)
    summary = study.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_tables(summary)


def _print_tables(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    head = Table(title="Study", show_header=False)
    for key in ("source_kind", "study_uid", "patient_pseudo_id", "modality", "body_part", "description"):
        head.add_row(key, str(summary.get(key) or ""))
    console.print(head)
    images = Table(title="Images")
    for column in ("series", "#", "source", "frame", "shape", "dtype", "range", "window", "spacing"):
        images.add_column(column)
    for s_index, series in enumerate(summary["series"]):
        for image in series["images"]:
            rng = image["pixel_range"]
            images.add_row(
                f"{s_index} {series['modality']}",
                str(image["slice_index"]),
                image["source_name"],
                str(image["frame_index"]),
                "x".join(str(v) for v in image["shape"]) + (" rgb" if image["rgb"] else ""),
                f"{image['pixels_dtype']}/{image['display_dtype']}",
                f"{rng[0]:.4g}..{rng[1]:.4g}" if rng else "",
                "" if image["window"] is None else f"{image['window'][0]:.4g}/{image['window'][1]:.4g}",
                ""
                if image["pixel_spacing"] is None
                else "x".join(f"{v:.3g}" for v in image["pixel_spacing"]),
            )
    console.print(images)
    deid = summary.get("deid")
    if deid:
        table = Table(title="De-identification", show_header=False)
        table.add_row("profile", deid["profile"])
        table.add_row("removed", ", ".join(deid["removed"]) or "-")
        table.add_row("emptied", ", ".join(deid["emptied"]) or "-")
        table.add_row("replaced", ", ".join(deid["replaced"]) or "-")
        table.add_row("private tags removed", str(deid["private_tags_removed"]))
        table.add_row("burned-in annotation", "YES" if deid["burned_in_annotation"] else "no")
        table.add_row("method", deid["method"])
        console.print(table)
    for warning in summary.get("warnings") or []:
        console.print(f"[yellow]warning:[/yellow] {warning}")


@bench_app.command("intake-fuzz")
def intake_fuzz_cmd(
    cases: int = typer.Option(10_000, "--cases", min=1, help="Number of mutated inputs."),
    seed: int = typer.Option(0, "--seed", help="Fuzz seed; (seed, case) reproduces a case."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes."),
    timeout: float = typer.Option(2.0, "--timeout", min=0.1, help="Per-case time limit in seconds."),
    report: int = typer.Option(20, "--report", min=0, help="Crashes and hangs listed in full."),
    case: int | None = typer.Option(None, "--case", help="Re-run this one case in-process (debugging)."),
) -> None:
    """Fuzz load_study with seeded mutations of pydicom's test files; print JSON with counts."""
    from zebra_intake.fuzz import reproduce, run_fuzz

    if case is not None:
        typer.echo(json.dumps(reproduce(case, seed=seed), indent=2))
        return
    result = run_fuzz(cases, seed=seed, workers=workers, timeout_s=timeout, max_report=report)
    typer.echo(json.dumps(result, indent=2))
