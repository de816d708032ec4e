"""Top-level commands: version, config, setup."""

from __future__ import annotations

import json
import logging

import typer

from zebra.cli.app import app

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
