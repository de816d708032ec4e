"""``zebra db``: database migrations (Alembic) for SQLite and PostgreSQL, and the retention purge."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Annotated

import typer

from zebra_cli.app import db_app

if TYPE_CHECKING:
    from store import Store

log = logging.getLogger(__name__)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="SQLAlchemy database URL; default: the settings' store.url, else SQLite at <data_dir>/zebra.db.",
        show_default=False,
    ),
]


def _open(url: str | None) -> Store:
    from store import Store

    return Store(url) if url else Store.from_settings()


@db_app.command("upgrade")
def upgrade(
    url: UrlOption = None,
    revision: Annotated[str, typer.Option("--revision", help="Target revision.")] = "head",
) -> None:
    """Create or migrate the schema up to REVISION (default: the newest). Prints JSON."""
    store = _open(url)
    try:
        before = store.current_revision()
        after = store.upgrade(revision)
        typer.echo(
            json.dumps({"url": store.safe_url, "from": before, "to": after, "changed": before != after})
        )
    finally:
        store.dispose()


@db_app.command("current")
def current(url: UrlOption = None) -> None:
    """Print the database's revision and the newest one this Zebra ships, as JSON."""
    store = _open(url)
    try:
        cur, head = store.current_revision(), store.head_revision()
        typer.echo(
            json.dumps({"url": store.safe_url, "current": cur, "head": head, "up_to_date": cur == head})
        )
    finally:
        store.dispose()


@db_app.command("check")
def check(url: UrlOption = None) -> None:
    """Exit 0 when the schema is at the newest revision, else explain and exit non-zero."""
    store = _open(url)
    try:
        head = store.check()
        typer.echo(f"ok: {store.safe_url} is at revision {head} (head)")
    finally:
        store.dispose()


@db_app.command("purge")
def purge(
    days: Annotated[
        int | None,
        typer.Option(
            "--days", min=1, help="Delete studies older than this (default: server.retention_days)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted.")] = False,
) -> None:
    """Delete studies stored more than N days ago, with their files, overlays and chats. Prints JSON."""
    from zebra.config import get_settings
    from zebra.errors import ConfigError
    from zebra_web.deletion import purge_studies, studies_older_than
    from zebra_web.overlays import OverlayStore

    settings = get_settings()
    days = days or settings.server.retention_days
    if not days:
        raise ConfigError(
            "No retention period is set.", hint="Pass --days N, or set server.retention_days in zebra.toml."
        )
    store = _open(None)
    try:
        store.upgrade()
        if dry_run:
            ids = studies_older_than(store, days)
        else:
            ids = purge_studies(store, settings.data_dir, OverlayStore(settings.data_dir / "web"), days)
        typer.echo(json.dumps({"days": days, "dry_run": dry_run, "studies": len(ids), "ids": ids}))
    finally:
        store.dispose()
