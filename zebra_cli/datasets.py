"""``zebra data convert``: public data sets (and synthetic data) to NOVA layout."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import typer

from zebra_cli.app import data_app

log = logging.getLogger(__name__)


@data_app.command("convert")
def convert(
    kind: str = typer.Argument(..., help="Data set kind: medpix, yolo or synthetic."),
    src: str = typer.Argument(..., help="Source folder; for synthetic '-' or a folder of background images."),
    out: Path = typer.Argument(..., help="NOVA data set root to write (e.g. /tmp/nova-medpix)."),
    split: str | None = typer.Option(
        None,
        "--split",
        help="medpix: train|dev|all (default all); yolo: valid|train|test|...|all (default all present).",
    ),
    images: str = typer.Option("copy", "--images", help="copy (portable) or link (symlink to the source)."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Convert at most N rows (synthetic: cases)."
    ),
    cases: int = typer.Option(40, "--cases", min=1, help="synthetic: number of cases."),
    seed: int = typer.Option(0, "--seed", help="synthetic: random seed (same seed, same bytes)."),
    size: int = typer.Option(256, "--size", help="synthetic: image side in pixels."),
    pairs: bool = typer.Option(True, "--pairs/--no-pairs", help="synthetic: make longitudinal pairs."),
) -> None:
    """Convert a data set to NOVA layout (data/nova-v1.parquet + images/) and print a JSON summary."""
    from zebra_datasets.convert import CONVERTERS

    info = CONVERTERS.get_or_raise(kind)
    options: dict[str, object] = {}
    if info.name == "synthetic":
        options = {"cases": cases, "seed": seed, "size": size, "pairs": pairs}
    started = time.perf_counter()
    report = info.func(
        src, out, split=split, images=images, limit=limit, progress=sys.stderr.isatty(), **options
    )
    payload = report.to_dict()
    payload["seconds"] = round(time.perf_counter() - started, 2)
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
